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
