//! dcm against API servers that answer slowly, never, with 429 and 503, or speak another
//! protocol: time limits, retries within a budget, and errors that say what failed.

use super::harness::{Project, Run};
use k8s_emulator::harness::Clusters;
use k8s_emulator::{Fault, FaultKind, FaultWhen};
use std::time::{Duration, Instant};

const FILE: &str = r#"
[clusters.cluster1]
context = "cluster1"

[clusters.cluster2]
context = "cluster2"

[clusters.cluster3]
context = "cluster3"

[[resources]]
name = "namespace"
clusters = ["cluster1", "cluster2", "cluster3"]
manifest = { apiVersion = "v1", kind = "Namespace", metadata = { name = "shop" } }

[[resources]]
name = "settings"
clusters = ["cluster1", "cluster2", "cluster3"]
depends_on = ["resources.namespace"]
manifest = { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "settings", namespace = "shop" }, data = { greeting = "hello" } }
"#;

struct World {
    p: Project,
    clusters: Clusters,
}

impl World {
    /// Three clusters; `configure` changes a cluster's options by name.
    fn new(configure: impl Fn(&str, &mut k8s_emulator::Options)) -> World {
        let p = Project::new();
        p.write("dcm.toml", FILE);
        let clusters = Clusters::start_with(3, p.dir.path(), configure).expect("start clusters");
        World { p, clusters }
    }

    fn url(&self, name: &str) -> String {
        self.clusters.get(name).expect("cluster").url()
    }

    /// Points the kubeconfig's cluster `name` at `server`.
    fn set_server(&self, name: &str, server: &str) {
        let path = self.clusters.kubeconfig.clone();
        let text = std::fs::read_to_string(&path).unwrap();
        let from = format!("server: {}\n", self.url(name));
        assert!(text.contains(&from));
        std::fs::write(&path, text.replace(&from, &format!("server: {server}\n"))).unwrap();
    }

    /// Runs dcm and measures how long it took.
    fn dcm(&self, args: &[&str]) -> (Run, Duration) {
        let kubeconfig = self.clusters.kubeconfig.display().to_string();
        let mut all = vec!["--kubeconfig", kubeconfig.as_str()];
        all.extend_from_slice(args);
        let start = Instant::now();
        let run = self.p.dcm(&all);
        (run, start.elapsed())
    }
}

/// A local port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The error lines about one cluster.
fn about(stderr: &str, cluster: &str) -> String {
    stderr
        .lines()
        .filter(|l| l.contains(&format!("cluster `{cluster}`")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_cluster_that_never_answers_times_out_naming_it_and_every_unreachable_cluster_is_reported() {
    let w = World::new(|name, o| o.silent = name == "cluster2");
    let port = closed_port();
    w.set_server("cluster3", &format!("http://127.0.0.1:{port}"));
    let (run, took) = w.dcm(&["plan", "--request-timeout", "2s"]);
    let run = run.expect(1);
    // The old limits (60 s per read, 6 tries) took minutes here.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let silent = about(&run.stderr, "cluster2");
    assert!(
        silent.contains("timeout") && silent.contains(&w.url("cluster2")),
        "{}",
        run.stderr
    );
    assert!(silent.contains("2s"), "{}", run.stderr);
    // The other unreachable cluster, in the same run.
    let refused = about(&run.stderr, "cluster3");
    assert!(
        refused.contains("connection refused")
            && refused.contains(&format!("127.0.0.1:{port}"))
            && !refused.contains("TLS"),
        "{}",
        run.stderr
    );
    // The healthy one is not an error.
    assert!(about(&run.stderr, "cluster1").is_empty(), "{}", run.stderr);
    assert!(w.clusters.get("cluster2").unwrap().requests().len() <= 2);

    // The time limits can come from the environment.
    let kubeconfig = w.clusters.kubeconfig.display().to_string();
    let start = Instant::now();
    let out =
        w.p.command(&["--kubeconfig", &kubeconfig, "plan"])
            .env("DCM_REQUEST_TIMEOUT", "1s")
            .output()
            .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(start.elapsed() < Duration::from_secs(15));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no answer within 1s"), "{stderr}");

    // A time limit of nothing is a usage error.
    let (run, _) = w.dcm(&["plan", "--request-timeout", "0s"]);
    let run = run.expect(1);
    assert!(run.stderr.contains("--request-timeout"), "{}", run.stderr);
}

#[test]
fn https_to_an_http_server_is_a_tls_error_that_says_so() {
    let w = World::new(|_, _| {});
    let http = w.url("cluster2");
    let https = http.replace("http://", "https://");
    w.set_server("cluster2", &https);
    let (run, took) = w.dcm(&["plan"]);
    let run = run.expect(1);
    let line = about(&run.stderr, "cluster2");
    assert!(line.contains("TLS"), "{}", run.stderr);
    assert!(
        line.contains("does not speak TLS") && line.contains("wrong protocol"),
        "{}",
        run.stderr
    );
    assert!(line.contains(&https), "{}", run.stderr);
    assert!(!line.contains("connection refused"), "{}", run.stderr);
    // Not retried: retrying cannot change the protocol.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(about(&run.stderr, "cluster1").is_empty(), "{}", run.stderr);
}

#[test]
fn a_429_with_retry_after_is_waited_out_and_the_apply_converges() {
    let w = World::new(|_, _| {});
    let c1 = w.clusters.get("cluster1").unwrap();
    c1.add_fault(Fault::new(
        FaultKind::TooManyRequests {
            retry_after_secs: 1,
        },
        FaultWhen::Next(3),
    ));
    let (run, took) = w.dcm(&["apply", "--auto-approve"]);
    run.expect(0);
    assert_eq!(
        c1.requests().iter().filter(|r| r.status == 429).count(),
        3,
        "the faults hit"
    );
    // Three waits of a second each, not minutes.
    assert!(took >= Duration::from_secs(3), "took {took:?}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let (run, _) = w.dcm(&["plan", "--detailed-exitcode"]);
    run.expect(0);
}

#[test]
fn a_cluster_that_keeps_answering_503_is_given_up_on_within_the_budget() {
    let w = World::new(|_, _| {});
    w.clusters
        .get("cluster2")
        .unwrap()
        .add_fault(Fault::new(FaultKind::Unavailable, FaultWhen::Share(1.0)));
    let (run, took) = w.dcm(&["plan", "--retry-budget", "3s"]);
    let run = run.expect(1);
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let line = about(&run.stderr, "cluster2");
    assert!(
        line.contains("gave up after")
            && line.contains("tries")
            && line.contains("retry budget 3s")
            && line.contains("503"),
        "{}",
        run.stderr
    );
    let tries = w.clusters.get("cluster2").unwrap().requests().len();
    assert!((3..=12).contains(&tries), "{tries} tries");
}
