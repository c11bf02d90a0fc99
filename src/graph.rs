//! The dependency graph of desired objects, and the order to create them in.
//!
//! Edges are added in small steps, each a rule a Kubernetes user already knows:
//! 1. a Namespace before the objects in it (same cluster);
//! 2. a CustomResourceDefinition before the objects of the kind it serves (same cluster);
//! 3. `depends_on` from the file: a block (resource or logical cloud) before the dependent
//!    objects in the same cluster, or in every cluster when it has none in that one;
//! 4. an object after the objects, in any cluster, whose fields it is known after.
//!
//! Ordering is deterministic: among objects that are ready at the same time, the smaller
//! address comes first. A cycle is an error naming every object on it.

use crate::compile::{crd_info, Desired};
use crate::diag::{Diagnostic, Diagnostics};
use crate::model::DependencyTarget;
use crate::object::ObjRef;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

/// Dependencies among a set of objects, by index into that set.
#[derive(Debug, Clone)]
pub struct Graph {
    /// `deps[i]`: the objects that must exist before object `i`, sorted.
    pub deps: Vec<Vec<usize>>,
    /// Every index, dependencies first; ties broken by address.
    pub order: Vec<usize>,
}

/// Builds the graph of the desired objects, or reports dangling object references and
/// cycles.
pub fn build(desired: &Desired) -> Result<Graph, Diagnostics> {
    let objs = &desired.objects;
    // `objs` are ordered by identity, so an object is found by binary search.
    let index = |id: &ObjRef| objs.binary_search_by(|o| o.id.cmp(id)).ok();
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); objs.len()];
    let mut diags = Vec::new();

    // 1. Namespaces before their contents.
    let namespaces: HashMap<(&str, &str), usize> = objs
        .iter()
        .enumerate()
        .filter(|(_, o)| o.id.group.is_empty() && o.id.kind == "Namespace")
        .map(|(i, o)| ((o.id.cluster.as_str(), o.id.name.as_str()), i))
        .collect();
    for (i, o) in objs.iter().enumerate() {
        if o.id.namespace.is_empty() {
            continue;
        }
        if let Some(&n) = namespaces.get(&(o.id.cluster.as_str(), o.id.namespace.as_str())) {
            deps[i].push(n);
        }
    }

    // 2. CRDs before their custom resources.
    let crd_kinds: Vec<(usize, String, String)> = objs
        .iter()
        .enumerate()
        .filter_map(|(i, o)| crd_info(&o.object).map(|(group, kind, _)| (i, group, kind)))
        .collect();
    let crds: HashMap<(&str, &str, &str), usize> = crd_kinds
        .iter()
        .map(|(i, group, kind)| {
            (
                (objs[*i].id.cluster.as_str(), group.as_str(), kind.as_str()),
                *i,
            )
        })
        .collect();
    for (i, o) in objs.iter().enumerate() {
        let key = (
            o.id.cluster.as_str(),
            o.id.group.as_str(),
            o.id.kind.as_str(),
        );
        if let Some(&c) = crds.get(&key) {
            deps[i].push(c);
        }
    }

    // 3. Explicit `depends_on`, resolved against the blocks objects came from.
    let mut by_source: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, o) in objs.iter().enumerate() {
        by_source.entry(o.source.as_str()).or_default().push(i);
    }
    let mut reported = BTreeSet::new();
    for (i, o) in objs.iter().enumerate() {
        for dep in &o.depends_on {
            let block = match &dep.target {
                DependencyTarget::Object(r) => {
                    match index(r) {
                        Some(n) => {
                            deps[i].push(n);
                        }
                        None => {
                            if reported.insert((dep.location.line, dep.location.col)) {
                                diags.push(
                                    Diagnostic::new(format!(
                                        "`depends_on` names object {r}, which no block in the file declares"
                                    ))
                                    .at(dep.location.clone()),
                                );
                            }
                        }
                    }
                    continue;
                }
                DependencyTarget::Resource(name) => format!("resources.{name}"),
                DependencyTarget::LogicalCloud(name) => format!("logical_clouds.{name}"),
            };
            let members = by_source
                .get(block.as_str())
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let same_cluster: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&m| objs[m].id.cluster == o.id.cluster)
                .collect();
            let chosen = if same_cluster.is_empty() {
                members.to_vec()
            } else {
                same_cluster
            };
            deps[i].extend(chosen);
        }
    }
    // 4. An object waits for the objects (in any cluster) whose fields it is known after.
    for (i, o) in objs.iter().enumerate() {
        for k in &o.known_after_apply {
            if let Some(n) = k.source_object().and_then(|(id, _)| index(id)) {
                deps[i].push(n);
            }
        }
    }
    if !diags.is_empty() {
        return Err(Diagnostics(diags));
    }
    for d in &mut deps {
        d.sort_unstable();
        d.dedup();
    }
    let ids: Vec<&ObjRef> = objs.iter().map(|o| &o.id).collect();
    let order = toposort(&ids, &deps).map_err(|cycles| {
        Diagnostics(
            cycles
                .into_iter()
                .map(|members| {
                    let list: Vec<String> = members.iter().map(|&m| objs[m].id.address()).collect();
                    let mut d = Diagnostic::new(format!(
                        "dependency cycle between {} objects: {}",
                        list.len(),
                        cycle_text(&list)
                    ));
                    let mut seen = BTreeSet::new();
                    for &m in &members {
                        for dep in &objs[m].depends_on {
                            if seen.insert((dep.location.line, dep.location.col)) {
                                d = d.note(
                                    format!("{} declares a dependency here", objs[m].source),
                                    Some(dep.location.clone()),
                                );
                            }
                        }
                    }
                    d.help("remove one of the `depends_on` entries on the cycle")
                })
                .collect(),
        )
    })?;
    Ok(Graph { deps, order })
}

fn cycle_text(members: &[String]) -> String {
    let mut parts = members.to_vec();
    if let Some(first) = members.first() {
        parts.push(first.clone());
    }
    parts.join(" -> ")
}

/// Kahn's algorithm with a min-heap on address, so the order does not depend on hashing or
/// insertion order. On a cycle, returns every strongly connected component that is one,
/// each in dependency order where possible.
pub fn toposort(ids: &[&ObjRef], deps: &[Vec<usize>]) -> Result<Vec<usize>, Vec<Vec<usize>>> {
    let n = ids.len();
    let mut indegree: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    // Each index's place in address order (the heap compares numbers, not addresses).
    let mut by_address: Vec<usize> = (0..n).collect();
    if !ids.windows(2).all(|w| w[0] <= w[1]) {
        by_address.sort_by(|&a, &b| ids[a].cmp(ids[b]));
    }
    let mut rank = vec![0; n];
    for (r, &i) in by_address.iter().enumerate() {
        rank[i] = r;
    }
    let mut ready: BinaryHeap<Reverse<(usize, usize)>> = (0..n)
        .filter(|&i| indegree[i] == 0)
        .map(|i| Reverse((rank[i], i)))
        .collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse((_, i))) = ready.pop() {
        order.push(i);
        for &d in &dependents[i] {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                ready.push(Reverse((rank[d], d)));
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    let mut g: DiGraph<usize, ()> = DiGraph::new();
    let nodes: Vec<NodeIndex> = (0..n).map(|i| g.add_node(i)).collect();
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            g.add_edge(nodes[d], nodes[i], ());
        }
    }
    let mut cycles: Vec<Vec<usize>> = tarjan_scc(&g)
        .into_iter()
        .filter(|c| c.len() > 1 || deps[g[c[0]]].contains(&g[c[0]]))
        .map(|c| {
            let mut members: Vec<usize> = c.into_iter().map(|x| g[x]).collect();
            members.sort_by_key(|&m| ids[m]);
            members
        })
        .collect();
    cycles.sort_by_key(|c| ids[c[0]]);
    Err(cycles)
}

/// The graph in DOT. Edges point from an object to what it depends on, as in Terraform.
pub fn to_dot(desired: &Desired, graph: &Graph) -> String {
    let mut out = String::from("digraph dcm {\n  rankdir = \"RL\";\n  node [shape = box];\n");
    for o in &desired.objects {
        out.push_str(&format!("  \"{}\";\n", o.id));
    }
    for (i, ds) in graph.deps.iter().enumerate() {
        for &d in ds {
            out.push_str(&format!(
                "  \"{}\" -> \"{}\";\n",
                desired.objects[i].id, desired.objects[d].id
            ));
        }
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{compile, config, model};

    fn desired(toml: &str) -> Desired {
        let src = crate::diag::SourceFile::new("t.toml", toml.to_string());
        let raw = config::parse(src, ".".into()).unwrap();
        compile::compile(
            &model::build(raw).unwrap(),
            &compile::Allocations::default(),
        )
        .unwrap()
    }

    const BASE: &str = r#"
[clusters.a]
dir = "a"
[clusters.b]
dir = "b"
[[resources]]
name = "ns"
clusters = ["a", "b"]
manifest = { apiVersion = "v1", kind = "Namespace", metadata = { name = "app" } }
[[resources]]
name = "crd"
clusters = ["a"]
manifest = { apiVersion = "apiextensions.k8s.io/v1", kind = "CustomResourceDefinition", metadata = { name = "widgets.example.com" }, spec = { group = "example.com", scope = "Namespaced", names = { kind = "Widget", plural = "widgets" } } }
[[resources]]
name = "w"
clusters = ["a"]
manifest = { apiVersion = "example.com/v1", kind = "Widget", metadata = { name = "w", namespace = "app" } }
[[resources]]
name = "z"
clusters = ["a", "b"]
manifest = { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "aaa", namespace = "default" } }
depends_on = ["resources.w"]
"#;

    #[test]
    fn implicit_and_explicit_edges_order_the_objects() {
        let d = desired(BASE);
        let g = build(&d).unwrap();
        let order: Vec<String> = g.order.iter().map(|&i| d.objects[i].id.address()).collect();
        let pos = |a: &str| order.iter().position(|x| x == a).unwrap();
        assert!(pos("a/core/Namespace/_cluster/app") < pos("a/example.com/Widget/app/w"));
        assert!(
            pos("a/apiextensions.k8s.io/CustomResourceDefinition/_cluster/widgets.example.com")
                < pos("a/example.com/Widget/app/w")
        );
        assert!(pos("a/example.com/Widget/app/w") < pos("a/core/ConfigMap/default/aaa"));
        // b has no Widget: its ConfigMap waits for the one in a.
        assert!(pos("a/example.com/Widget/app/w") < pos("b/core/ConfigMap/default/aaa"));
        // Same inputs, same order.
        assert_eq!(build(&desired(BASE)).unwrap().order, g.order);
        let dot = to_dot(&d, &g);
        assert!(
            dot.contains("\"a/example.com/Widget/app/w\" -> \"a/core/Namespace/_cluster/app\";"),
            "{dot}"
        );
    }

    #[test]
    fn a_cycle_names_every_member() {
        let text = BASE.replace(
            "name = \"w\"\nclusters = [\"a\"]",
            "name = \"w\"\nclusters = [\"a\"]\ndepends_on = [\"resources.z\"]",
        );
        let err = build(&desired(&text)).unwrap_err().to_string();
        assert!(
            err.contains("dependency cycle between 2 objects: a/core/ConfigMap/default/aaa -> a/example.com/Widget/app/w -> a/core/ConfigMap/default/aaa"),
            "{err}"
        );
        assert!(
            err.contains("t.toml:17:15") && err.contains("t.toml:23:15"),
            "{err}"
        );
    }

    #[test]
    fn depends_on_an_object_nobody_declares_is_an_error() {
        let text = BASE.replace(
            "depends_on = [\"resources.w\"]",
            "depends_on = [\"a/core/Secret/default/nope\"]",
        );
        let err = build(&desired(&text)).unwrap_err().to_string();
        assert!(
            err.contains(
                "names object a/core/Secret/default/nope, which no block in the file declares"
            ),
            "{err}"
        );
    }
}
