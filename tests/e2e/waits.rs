//! `wait = true` on workloads, what waits print while they wait, and who drift says
//! changed an object: dcm against emulated clusters over HTTP.

use super::harness::{Project, Run};
use k8s_emulator::harness::Clusters;
use k8s_emulator::{Options, Request};
use serde_json::json;
use std::time::{Duration, Instant};

const FILE: &str = r#"
[clusters.cluster1]
context = "cluster1"

[[resources]]
name = "namespace"
clusters = ["cluster1"]
manifest = { apiVersion = "v1", kind = "Namespace", metadata = { name = "shop" } }

[[resources]]
name = "workloads"
clusters = ["cluster1"]
file = "workloads.yaml"
wait = true
depends_on = ["resources.namespace"]

[[resources]]
name = "after"
clusters = ["cluster1"]
manifest = { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "after", namespace = "shop" }, data = { ready = "yes" } }
depends_on = ["resources.workloads"]
"#;

const WORKLOADS: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  namespace: shop
spec:
  serviceName: db
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
      - name: db
        image: postgres:17
---
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  namespace: shop
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: migrate
        image: migrate:1
";

struct World {
    p: Project,
    clusters: Clusters,
}

impl World {
    fn new(workloads: &str, configure: impl Fn(&mut Options)) -> World {
        let p = Project::new();
        p.write("dcm.toml", FILE);
        p.write("workloads.yaml", workloads);
        let clusters = Clusters::start_with(1, p.dir.path(), |_, o| configure(o))
            .expect("start emulated clusters");
        World { p, clusters }
    }

    fn dcm(&self, args: &[&str]) -> Run {
        let kubeconfig = self.clusters.kubeconfig.display().to_string();
        let mut all = vec!["--kubeconfig", kubeconfig.as_str()];
        all.extend_from_slice(args);
        self.p.dcm(&all)
    }

    fn cluster(&self) -> &k8s_emulator::Emulator {
        self.clusters.get("cluster1").expect("cluster")
    }
}

/// Position of the first request matching `method` whose path ends with `path_end`.
fn first(e: &k8s_emulator::Emulator, method: &str, path_end: &str) -> Option<usize> {
    e.requests()
        .iter()
        .position(|r| r.method == method && r.path.ends_with(path_end))
}

#[test]
fn wait_true_holds_dependents_until_deployments_statefulsets_and_jobs_are_up() {
    let w = World::new(WORKLOADS, |o| {
        o.workload_ready_delay = Some(Duration::from_millis(2500));
    });
    let run = w.dcm(&["apply", "--auto-approve"]).expect(0);
    let c = w.cluster();
    let d = c.object("apps", "Deployment", "shop", "web").unwrap();
    assert_eq!(d["status"]["availableReplicas"], 2, "{d}");
    let s = c.object("apps", "StatefulSet", "shop", "db").unwrap();
    assert_eq!(s["status"]["readyReplicas"], 1, "{s}");
    let j = c.object("batch", "Job", "shop", "migrate").unwrap();
    assert_eq!(j["status"]["succeeded"], 1, "{j}");
    assert!(c.object("", "ConfigMap", "shop", "after").is_some());

    // The ConfigMap was written only after the workloads were read, again and again.
    let requests = c.requests();
    let wrote_web = first(c, "PATCH", "/deployments/web").expect("deployment written");
    let wrote_after = first(c, "PATCH", "/configmaps/after").expect("configmap written");
    let polls = requests[wrote_web..wrote_after]
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/deployments"))
        .count();
    assert!(
        polls >= 5,
        "{polls} reads of the Deployment before its dependent"
    );
    // A wait past 2 s says what it waits for, on stderr.
    assert!(
        run.stderr
            .contains("waiting for cluster1/apps/Deployment/shop/web to be available"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("waiting for"), "{}", run.stdout);
    w.dcm(&["plan", "--detailed-exitcode"]).expect(0);

    // A Job that fails fails the apply at once, with the cluster's words, and what
    // depends on it is not written.
    let failing = WORKLOADS.replace(
        "name: migrate\n  namespace: shop\nspec:\n  template:\n",
        "name: migrate-v2\n  namespace: shop\nspec:\n  template:\n    metadata:\n      annotations: {emulator.dcm.io/fail: \"true\"}\n",
    );
    assert_ne!(failing, WORKLOADS);
    w.p.write("workloads.yaml", &failing);
    w.p.edit("dcm.toml", "ready = \"yes\"", "ready = \"again\"");
    let started = Instant::now();
    let failed = w
        .dcm(&["apply", "--auto-approve", "--wait-timeout", "5m"])
        .expect(1);
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(
        failed.stderr.contains(
            "cluster1/batch/Job/shop/migrate-v2 will never be complete: the Job failed: Job has reached the specified backoff limit"
        ),
        "{}",
        failed.stderr
    );
    let after = c.object("", "ConfigMap", "shop", "after").unwrap();
    assert_eq!(after["data"]["ready"], "yes");
}

#[test]
fn a_deployment_that_never_becomes_available_is_named_when_apply_gives_up() {
    let w = World::new(WORKLOADS, |o| o.workload_ready_delay = None);
    let failed = w
        .dcm(&["apply", "--auto-approve", "--wait-timeout", "3s"])
        .expect(1);
    assert!(
        failed.stderr.lines().any(|l| l
            .starts_with("waiting for cluster1/apps/Deployment/shop/web to be available")
            && l.ends_with("(2s of 3s)…")),
        "{}",
        failed.stderr
    );
    assert!(
        failed.stderr.contains(
            "gave up after 3s waiting for cluster1/apps/Deployment/shop/web to be available"
        ),
        "{}",
        failed.stderr
    );
    assert!(w
        .cluster()
        .object("", "ConfigMap", "shop", "after")
        .is_none());
}

#[test]
fn drift_names_the_field_manager_that_changed_an_object() {
    let w = World::new("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: shop\ndata:\n  greeting: hello\n", |_| {});
    w.dcm(&["apply", "--auto-approve"]).expect(0);
    let resp = w.cluster().handle(&Request {
        method: "PATCH".into(),
        path: "/api/v1/namespaces/shop/configmaps/settings".into(),
        content_type: "application/merge-patch+json".into(),
        user_agent: "kubectl-edit/v1.32.0".into(),
        body: json!({"data": {"greeting": "hacked"}})
            .to_string()
            .into_bytes(),
        ..Default::default()
    });
    assert_eq!(resp.status, 200, "{}", resp.body);

    let text = w.dcm(&["drift"]).expect(2);
    assert!(
        text.stdout
            .contains("cluster1/core/ConfigMap/shop/settings: changed by kubectl-edit"),
        "{}",
        text.stdout
    );
    let json = w.dcm(&["drift", "--json"]).expect(2);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("drift JSON");
    assert_eq!(doc["format_version"], 1);
    let objects = doc["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 1, "{doc}");
    assert_eq!(
        objects[0]["address"],
        "cluster1/core/ConfigMap/shop/settings"
    );
    assert_eq!(objects[0]["changed_by"], json!(["kubectl-edit"]));
}
