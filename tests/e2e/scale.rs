//! Requests that do not grow with objects: a no-change plan reads each kind once per
//! namespace (or once per cluster when it is spread over many namespaces), whatever the
//! number of objects.
//!
//! The estate has `DCM_SCALE_OBJECTS` ConfigMaps (default 1800; CI also runs 10000 in
//! release mode, see `.ci/run`) over three emulated clusters.

use super::harness::Project;
use k8s_emulator::harness::Clusters;
use std::collections::BTreeSet;

/// cluster → how many namespaces its ConfigMaps are spread over. Few namespaces are
/// listed one by one; many, once over the whole cluster.
const SPREAD: [(&str, usize); 3] = [("cluster1", 1), ("cluster2", 3), ("cluster3", 12)];

fn objects() -> usize {
    std::env::var("DCM_SCALE_OBJECTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1800)
}

/// The project: per cluster its namespaces and `per_cluster` ConfigMaps spread over them.
fn estate(p: &Project, per_cluster: usize) -> BTreeSet<(String, String, String)> {
    let mut toml = String::new();
    let mut triples = BTreeSet::new();
    for (cluster, spread) in SPREAD {
        toml.push_str(&format!(
            "[clusters.{cluster}]\ncontext = \"{cluster}\"\n\n"
        ));
        let mut yaml = String::new();
        for n in 0..spread {
            yaml.push_str(&format!(
                "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: team{n}\n"
            ));
            triples.insert((cluster.to_string(), "Namespace".to_string(), String::new()));
        }
        for i in 0..per_cluster {
            let ns = format!("team{}", i % spread);
            yaml.push_str(&format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings-{i}\n  namespace: {ns}\ndata:\n  index: \"{i}\"\n"
            ));
            triples.insert((cluster.to_string(), "ConfigMap".to_string(), ns));
        }
        p.write(&format!("{cluster}.yaml"), &yaml);
        toml.push_str(&format!(
            "[[resources]]\nname = \"{cluster}\"\nclusters = [\"{cluster}\"]\nfile = \"{cluster}.yaml\"\n\n"
        ));
    }
    p.write("dcm.toml", &toml);
    triples
}

fn dcm(p: &Project, clusters: &Clusters, args: &[&str]) -> super::harness::Run {
    let kubeconfig = clusters.kubeconfig.display().to_string();
    let mut all = vec!["--kubeconfig", kubeconfig.as_str(), "--parallelism", "30"];
    all.extend_from_slice(args);
    p.dcm(&all)
}

/// The requests a no-change plan of `per_cluster` objects per cluster makes, per cluster.
fn no_change_plan_requests(per_cluster: usize) -> (Vec<String>, usize) {
    let p = Project::new();
    let triples = estate(&p, per_cluster);
    let clusters = Clusters::start(SPREAD.len(), p.dir.path()).expect("start emulated clusters");
    dcm(&p, &clusters, &["apply", "--auto-approve"]).expect(0);
    for (name, _) in SPREAD {
        clusters.get(name).expect("cluster").clear_requests();
    }
    let plan = dcm(&p, &clusters, &["plan", "--detailed-exitcode"]).expect(0);
    assert!(plan.stdout.contains("No changes"), "{}", plan.stdout);
    let mut requests = Vec::new();
    for (name, _) in SPREAD {
        for r in clusters.get(name).expect("cluster").requests() {
            requests.push(format!("{name} {} {}?{}", r.method, r.path, r.query));
        }
    }
    (requests, triples.len())
}

#[test]
fn a_no_change_plan_makes_no_more_requests_than_kinds_times_namespaces_whatever_the_objects() {
    let n = objects() / SPREAD.len();
    let (requests, triples) = no_change_plan_requests(n);
    assert!(
        requests.len() <= triples,
        "{} requests for {triples} (cluster, kind, namespace) triples and {} objects:\n{}",
        requests.len(),
        n * SPREAD.len(),
        requests.join("\n")
    );
    // Nothing is read object by object.
    let by_name: Vec<&String> = requests
        .iter()
        .filter(|r| r.contains("/configmaps/settings-"))
        .collect();
    assert!(by_name.is_empty(), "{by_name:#?}");
    // The cluster whose ConfigMaps are spread over 12 namespaces lists them once.
    let cluster3_lists: Vec<&String> = requests
        .iter()
        .filter(|r| r.starts_with("cluster3 GET") && r.contains("configmaps"))
        .collect();
    assert_eq!(cluster3_lists.len(), 1, "{cluster3_lists:#?}");

    // A tenth of the objects: the same requests (pages of one LIST aside).
    let (fewer, _) = no_change_plan_requests((n / 10).max(SPREAD[2].1));
    let shape = |rs: &[String]| -> BTreeSet<String> {
        rs.iter()
            .map(|r| r.split('?').next().unwrap_or(r).to_string())
            .collect()
    };
    assert_eq!(shape(&fewer), shape(&requests));
}

/// The requests of an apply and then a destroy of `per_cluster` objects per cluster, per
/// cluster, as `METHOD path?query`.
type PerCluster = Vec<(String, Vec<String>)>;

fn apply_and_destroy_requests(per_cluster: usize) -> (PerCluster, PerCluster) {
    let p = Project::new();
    estate(&p, per_cluster);
    let clusters = Clusters::start(SPREAD.len(), p.dir.path()).expect("start emulated clusters");
    let mut phases = Vec::new();
    for verb in ["apply", "destroy"] {
        for (name, _) in SPREAD {
            clusters.get(name).expect("cluster").clear_requests();
        }
        dcm(&p, &clusters, &[verb, "--auto-approve"]).expect(0);
        let mut per_cluster = Vec::new();
        for (name, _) in SPREAD {
            let requests = clusters
                .get(name)
                .expect("cluster")
                .requests()
                .into_iter()
                .map(|r| format!("{} {}?{}", r.method, r.path, r.query))
                .collect();
            per_cluster.push((name.to_string(), requests));
        }
        phases.push(per_cluster);
    }
    let destroy = phases.pop().unwrap_or_default();
    let apply = phases.pop().unwrap_or_default();
    (apply, destroy)
}

fn is_discovery(r: &str) -> bool {
    let path = r.split(['?', ' ']).nth(1).unwrap_or_default();
    let segments = path.split('/').filter(|s| !s.is_empty()).count();
    path.starts_with("/openapi")
        || path == "/version"
        || (path.starts_with("/api/") || path == "/api") && segments <= 2
        || (path.starts_with("/apis/") || path == "/apis") && segments <= 3
}

/// A GET of a collection: `/api/v1/configmaps`, `/api/v1/namespaces/a/configmaps`.
fn is_list(r: &str) -> bool {
    let Some(path) = r.strip_prefix("GET ") else {
        return false;
    };
    let path = path.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segments.as_slice() {
        ["api", _, rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        _ => return false,
    };
    matches!(rest, [_] | ["namespaces", _, _])
}

fn count(rs: &[String], what: impl Fn(&String) -> bool) -> usize {
    rs.iter().filter(|r| what(r)).count()
}

#[test]
fn apply_and_destroy_make_one_write_per_object_and_discover_once_whatever_the_objects() {
    let n = objects() / SPREAD.len() / 2;
    let (apply, destroy) = apply_and_destroy_requests(n);
    for (cluster, rs) in &apply {
        // One server-side apply per object (the namespaces included); no object is read
        // back one by one.
        let spread = SPREAD.iter().find(|(c, _)| c == cluster).map_or(0, |s| s.1);
        let writes = count(rs, |r| r.starts_with("PATCH") && !r.contains("dryRun=All"));
        assert_eq!(writes, n + spread, "{cluster}:\n{}", rs.join("\n"));
        let by_name = count(rs, |r| {
            r.starts_with("GET") && r.contains("/configmaps/settings-")
        });
        assert_eq!(by_name, 0, "{cluster}:\n{}", rs.join("\n"));
        // Discovery once per cluster per run, shared by the plan and the apply: no
        // discovery request twice.
        let discovery: Vec<&String> = rs.iter().filter(|r| is_discovery(r)).collect();
        let distinct: BTreeSet<&&String> = discovery.iter().collect();
        assert_eq!(discovery.len(), distinct.len(), "{cluster}: {discovery:#?}");
    }
    for (cluster, rs) in &destroy {
        let spread = SPREAD.iter().find(|(c, _)| c == cluster).map_or(0, |s| s.1);
        let deletes = count(rs, |r| r.starts_with("DELETE"));
        assert_eq!(deletes, n + spread, "{cluster}:\n{}", rs.join("\n"));
        // An object the server says is gone is not read again to see that it is.
        let by_name = count(rs, |r| {
            r.starts_with("GET") && r.contains("/configmaps/settings-")
        });
        assert_eq!(by_name, 0, "{cluster}:\n{}", rs.join("\n"));
    }
    // What the namespaces hold is listed once per kind, not once per kind and namespace:
    // the cluster with 12 namespaces lists about as much as the one with a single one.
    let lists = |phase: &PerCluster, cluster: &str| {
        phase
            .iter()
            .find(|(c, _)| c == cluster)
            .map_or(0, |(_, rs)| count(rs, |r| is_list(r)))
    };
    let (one, twelve) = (lists(&destroy, "cluster1"), lists(&destroy, "cluster3"));
    assert!(
        twelve <= one + 5,
        "LISTs: {one} with 1 namespace, {twelve} with 12"
    );

    // A tenth of the objects: as many discovery requests and LISTs.
    let (fewer_apply, fewer_destroy) = apply_and_destroy_requests((n / 10).max(SPREAD[2].1));
    for (phase, fewer, name) in [
        (&apply, &fewer_apply, "apply"),
        (&destroy, &fewer_destroy, "destroy"),
    ] {
        for ((cluster, rs), (_, few)) in phase.iter().zip(fewer.iter()) {
            let d = |rs: &[String]| count(rs, |r| is_discovery(r));
            assert_eq!(d(rs), d(few), "{name} {cluster}: discovery requests");
            assert_eq!(
                lists(phase, cluster),
                lists(fewer, cluster),
                "{name} {cluster}: LISTs"
            );
        }
    }
}
