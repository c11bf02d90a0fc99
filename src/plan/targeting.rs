//! `--target ADDRESS_GLOB`: a partial plan, restricted to the objects whose address
//! matches one of the globs and to what they need.
//!
//! - Creates and updates bring what they depend on (its namespace, its CRD, what the file
//!   says it depends on), so the partial plan can be applied by itself.
//! - Deletions bring what depends on them and is deleted too (the objects in a namespace
//!   that goes, what recorded the target as a dependency), so nothing is left pointing at
//!   an object that is gone. In a destroy plan this is the whole rule.
//! - Nothing else is in the plan: a delete of an object outside the targets waits for a
//!   whole plan.

use super::{Action, Plan, Summary};
use crate::compile::Desired;
use crate::graph::Graph;
use crate::state::State;
use std::collections::{BTreeMap, BTreeSet};

/// Whether `text` matches `glob`: `*` stands for any characters (`/` included), `?` for
/// one; everything else stands for itself.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let g: Vec<char> = glob.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut gi, mut ti) = (0, 0);
    // Where the last `*` was, and how much of the text it has taken.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match g.get(gi) {
            Some('*') => {
                star = Some((gi, ti));
                gi += 1;
            }
            Some(c) if *c == '?' || *c == t[ti] => {
                gi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sg, st)) => {
                    gi = sg + 1;
                    ti = st + 1;
                    star = Some((sg, st + 1));
                }
                None => return false,
            },
        }
    }
    g[gi..].iter().all(|c| *c == '*')
}

/// A `--target` that matches nothing.
#[derive(Debug, thiserror::Error)]
#[error("--target {glob} matches no object the file declares or the state records; nothing was changed\n  = help: addresses look like cluster/group/Kind/namespace/name (e.g. {example}); `*` stands for any characters and `?` for one; `dcm plan` lists the addresses of what it changes and `dcm state list` of what the state records")]
pub struct NoMatch {
    pub glob: String,
    pub example: String,
}

/// Restricts `plan` to the changes of the objects `globs` match and what they need (see
/// the module's doc), records the globs in it and recounts it. Every glob must match an
/// object the file declares (`desired`) or the state records.
pub fn restrict(
    plan: &mut Plan,
    globs: &[String],
    desired: &Desired,
    graph: &Graph,
    state: Option<&State>,
) -> Result<(), NoMatch> {
    if globs.is_empty() {
        return Ok(());
    }
    let mut known: BTreeSet<String> = desired
        .objects
        .iter()
        .chain(&desired.reverts)
        .map(|o| o.id.address())
        .collect();
    if let Some(s) = state {
        known.extend(s.objects.iter().map(|e| e.address.clone()));
    }
    let mut chosen: BTreeSet<String> = BTreeSet::new();
    for glob in globs {
        let mut any = false;
        for a in known.iter().filter(|a| glob_match(glob, a)) {
            any = true;
            chosen.insert(a.clone());
        }
        if !any {
            return Err(NoMatch {
                glob: glob.clone(),
                example: known
                    .iter()
                    .next()
                    .cloned()
                    .unwrap_or_else(|| "c1/core/ConfigMap/default/settings".into()),
            });
        }
    }
    let actions: BTreeMap<&str, Action> = plan
        .changes
        .iter()
        .map(|c| (c.address.as_str(), c.action))
        .collect();
    let going = |a: &str| matches!(actions.get(a), Some(Action::Delete | Action::Forget));

    // What each object needs first (creates and updates), from the graph.
    let index: BTreeMap<String, usize> = desired
        .objects
        .iter()
        .enumerate()
        .map(|(i, o)| (o.id.address(), i))
        .collect();
    // What must go before each object that goes: what recorded it as a dependency, and
    // the objects in a namespace.
    let mut dependents: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if let Some(s) = state {
        for e in &s.objects {
            for d in &e.depends_on {
                dependents
                    .entry(d.clone())
                    .or_default()
                    .insert(e.address.clone());
            }
            let id = e.id();
            if !id.namespace.is_empty() {
                let ns = format!("{}/core/Namespace/_cluster/{}", id.cluster, id.namespace);
                dependents.entry(ns).or_default().insert(e.address.clone());
            }
        }
    }
    let mut todo: Vec<String> = chosen.iter().cloned().collect();
    while let Some(a) = todo.pop() {
        let mut next: Vec<String> = Vec::new();
        if going(&a) {
            next.extend(
                dependents
                    .get(&a)
                    .into_iter()
                    .flatten()
                    .filter(|d| going(d))
                    .cloned(),
            );
        } else if let Some(&i) = index.get(&a) {
            next.extend(
                graph.deps[i]
                    .iter()
                    .map(|&j| desired.objects[j].id.address()),
            );
        }
        for n in next {
            if chosen.insert(n.clone()) {
                todo.push(n);
            }
        }
    }
    plan.changes.retain(|c| chosen.contains(&c.address));
    let present: BTreeSet<String> = plan.changes.iter().map(|c| c.address.clone()).collect();
    for c in &mut plan.changes {
        c.depends_on.retain(|a| present.contains(a.as_ref()));
    }
    plan.summary = Summary::of(&plan.changes);
    let mut targets: Vec<String> = globs.to_vec();
    targets.sort();
    targets.dedup();
    plan.targets = targets;
    Ok(())
}

/// The warning a partial plan is shown with.
pub fn partial_warning(plan: &Plan) -> Option<String> {
    if plan.targets.is_empty() {
        return None;
    }
    let with = match plan.operation.as_str() {
        "destroy" => "and what depends on them",
        "refresh-only" => "and nothing else",
        _ => "and what they depend on",
    };
    Some(format!(
        "Warning: this plan is partial (--target {}): it holds only the changes of the objects that match, {with}. Other changes the file or the state call for are left out; run the plan without --target to see them.",
        plan.targets.join(" --target ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Change, PlannedState};
    use crate::state::{Origin, StateEntry};

    fn entry(address: &str, depends_on: &[&str]) -> StateEntry {
        let id = crate::object::ObjRef::parse_address(address).unwrap();
        StateEntry {
            address: address.into(),
            cluster: id.cluster.clone(),
            api_version: "v1".into(),
            kind: id.kind.clone(),
            namespace: id.namespace.clone(),
            name: id.name.clone(),
            sha256: "x".into(),
            origin: Origin::Created,
            pending: false,
            depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
            allocated: Default::default(),
            uid: None,
        }
    }

    fn delete(address: &str) -> Change {
        Change {
            address: address.into(),
            action: Action::Delete,
            reason: String::new(),
            before: None,
            after: None,
            depends_on: vec![],
            before_sha256: Some("x".into()),
            after_sha256: None,
            origin: None,
            record: false,
            forget_after: false,
            notes: vec![],
            diff: crate::diff::Diff::None,
            conflicts: None,
        }
    }

    #[test]
    fn a_targeted_destroy_takes_what_depends_on_the_target_and_nothing_it_depends_on() {
        let (ns, cm, user, other) = (
            "c/core/Namespace/_cluster/shop",
            "c/core/ConfigMap/shop/base",
            "c/core/ConfigMap/default/user",
            "c/core/ConfigMap/default/other",
        );
        let mut state = State::new();
        state.upsert(entry(ns, &[]));
        state.upsert(entry(cm, &[ns]));
        state.upsert(entry(user, &[cm]));
        state.upsert(entry(other, &[]));
        let mut plan = Plan {
            format_version: 1,
            dcm_version: "t".into(),
            operation: "destroy".into(),
            config: "t.toml".into(),
            state: PlannedState {
                lineage: None,
                serial: 1,
            },
            summary: Summary::default(),
            changes: [ns, cm, user, other].into_iter().map(delete).collect(),
            targets: vec![],
        };
        let graph = Graph {
            deps: vec![],
            order: vec![],
        };
        let mut p = plan.clone();
        restrict(
            &mut p,
            &[cm.into()],
            &Desired::default(),
            &graph,
            Some(&state),
        )
        .unwrap();
        let kept: Vec<&str> = p.changes.iter().map(|c| c.address.as_str()).collect();
        assert_eq!(
            kept,
            [cm, user],
            "not the namespace it is in, not the other"
        );
        assert_eq!(p.summary.destroy, 2);
        assert_eq!(p.targets, [cm]);
        // The namespace brings what is in it, and what depends on that.
        restrict(
            &mut plan,
            &["*/Namespace/*".into()],
            &Desired::default(),
            &graph,
            Some(&state),
        )
        .unwrap();
        assert_eq!(plan.changes.len(), 3);
        let err = restrict(
            &mut plan,
            &["x/*".into()],
            &Desired::default(),
            &graph,
            Some(&state),
        )
        .unwrap_err();
        assert!(err.to_string().contains("--target x/* matches no object"));
    }

    #[test]
    fn globs_match_whole_addresses() {
        let a = "c1/core/ConfigMap/default/settings";
        assert!(glob_match(a, a));
        assert!(glob_match("c1/*", a));
        assert!(glob_match("*/ConfigMap/*", a));
        assert!(glob_match("c?/core/ConfigMap/default/setting?", a));
        assert!(!glob_match("c1/core/ConfigMap/default/set", a));
        assert!(!glob_match("c2/*", a));
        assert!(!glob_match("*/Secret/*", a));
        assert!(glob_match("*", ""));
        assert!(!glob_match("?", ""));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
    }
}
