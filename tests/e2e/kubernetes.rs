//! dcm against Kubernetes API servers (the emulator in tests/emulator) over real HTTP,
//! through a kubeconfig with one context per cluster, as users run it.

use super::harness::Project;
use k8s_emulator::harness::{Clusters, STOCK_COREFILE};
use k8s_emulator::{Fault, FaultKind, FaultWhen, Request};
use serde_json::{json, Value};

const FILE: &str = r#"
[clusters.cluster1]
context = "cluster1"

[clusters.cluster2]
context = "cluster2"

[[resources]]
name = "namespace"
clusters = ["cluster1", "cluster2"]
manifest = { apiVersion = "v1", kind = "Namespace", metadata = { name = "shop" } }

[[resources]]
name = "app"
clusters = ["cluster1"]
file = "app.yaml"
depends_on = ["resources.namespace"]
"#;

const APP: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
  labels:
    app: shop
data:
  greeting: hello
---
apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: shop
stringData:
  password: hunter2-very-secret
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: payments
  namespace: shop
spec:
  hosts: [payments.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
  - {number: 443, name: https, protocol: TLS}
"#;

struct World {
    p: Project,
    clusters: Clusters,
}

impl World {
    fn new() -> World {
        let p = Project::new();
        p.write("dcm.toml", FILE);
        p.write("app.yaml", APP);
        let clusters = Clusters::start(2, p.dir.path()).expect("start emulated clusters");
        clusters.seed_coredns().expect("seed coredns");
        World { p, clusters }
    }

    fn dcm(&self, args: &[&str]) -> super::harness::Run {
        let kubeconfig = self.clusters.kubeconfig.display().to_string();
        let mut all = vec!["--kubeconfig", kubeconfig.as_str()];
        all.extend_from_slice(args);
        self.p.dcm(&all)
    }

    fn cluster(&self, name: &str) -> &k8s_emulator::Emulator {
        self.clusters.get(name).expect("cluster")
    }
}

/// Changes an object the way `kubectl edit` would (a merge patch by another manager).
fn edit_as_someone_else(e: &k8s_emulator::Emulator, path: &str, patch: Value) {
    let resp = e.handle(&Request {
        method: "PATCH".into(),
        path: path.into(),
        content_type: "application/merge-patch+json".into(),
        user_agent: "kubectl-edit/v1.32.0".into(),
        body: patch.to_string().into_bytes(),
        ..Default::default()
    });
    assert_eq!(resp.status, 200, "{}", resp.body);
}

/// Whether a plan's diff has a line added (`+`) or removed (`-`) that holds `text`.
fn diff_line(plan: &str, sign: char, text: &str) -> bool {
    plan.lines()
        .any(|l| l.trim_start().starts_with(sign) && l.contains(text))
}

#[test]
fn applies_to_clusters_over_http_and_a_second_plan_shows_no_changes() {
    let w = World::new();
    let plan = w.dcm(&["plan", "--detailed-exitcode"]).expect(2);
    assert!(
        plan.stdout
            .contains("Plan: 6 to add, 0 to change, 0 to destroy."),
        "{}",
        plan.stdout
    );
    w.dcm(&["apply", "--auto-approve"]).expect(0);

    let c1 = w.cluster("cluster1");
    let cm = c1
        .object("", "ConfigMap", "shop", "settings")
        .expect("configmap applied");
    assert_eq!(cm["data"]["greeting"], "hello");
    assert_eq!(cm["metadata"]["managedFields"][0]["manager"], "dcm");
    assert_eq!(cm["metadata"]["managedFields"][0]["operation"], "Apply");
    let svc = c1
        .object("", "Service", "shop", "web")
        .expect("service applied");
    assert!(svc["spec"]["clusterIP"]
        .as_str()
        .is_some_and(|ip| ip.starts_with("10.96.")));
    let se = c1
        .object("networking.istio.io", "ServiceEntry", "shop", "payments")
        .expect("service entry applied");
    assert_eq!(se["apiVersion"], "networking.istio.io/v1");
    assert!(w
        .cluster("cluster2")
        .object("", "Namespace", "", "shop")
        .is_some());
    assert!(w
        .cluster("cluster2")
        .object("", "ConfigMap", "shop", "settings")
        .is_none());

    // The server's defaults (ClusterIP, port protocol and targetPort, Secret type) are
    // not differences: they are not dcm's fields.
    let again = w.dcm(&["plan", "--detailed-exitcode"]).expect(0);
    assert!(again.stdout.contains("No changes"), "{}", again.stdout);
    w.dcm(&["drift"]).expect(0);

    // The secret's value reached the cluster but not the state or the output.
    let secret = c1.object("", "Secret", "shop", "db").expect("secret");
    assert_eq!(secret["data"]["password"], "aHVudGVyMi12ZXJ5LXNlY3JldA==");
    let state = w.p.read("state/dcm.state.json");
    assert!(!state.contains("hunter2") && !state.contains("aHVudGVyMi12ZXJ5LXNlY3JldA"));
}

#[test]
fn changes_by_another_manager_are_drift_and_conflicts_that_apply_takes_back_only_when_forced() {
    let w = World::new();
    w.dcm(&["apply", "--auto-approve"]).expect(0);
    let c1 = w.cluster("cluster1");
    edit_as_someone_else(
        c1,
        "/api/v1/namespaces/shop/configmaps/settings",
        json!({"data": {"greeting": "hacked"}}),
    );
    let drift = w.dcm(&["drift"]).expect(2);
    assert!(drift.stdout.contains("settings"), "{}", drift.stdout);
    let plan = w.dcm(&["plan", "--detailed-exitcode"]).expect(2);
    assert!(
        diff_line(&plan.stdout, '+', "greeting: hello")
            && plan.stdout.contains("conflict with \"kubectl-edit\"")
            && plan.stdout.contains("--force-conflicts"),
        "{}",
        plan.stdout
    );
    // As `kubectl apply --server-side`: the other manager's field is not taken unasked.
    let refused = w.dcm(&["apply", "--auto-approve"]).expect(1);
    assert!(
        refused.stderr.contains("kubectl-edit") && refused.stderr.contains("nothing was changed"),
        "{}",
        refused.stderr
    );
    let cm = c1.object("", "ConfigMap", "shop", "settings").unwrap();
    assert_eq!(cm["data"]["greeting"], "hacked");
    w.dcm(&["apply", "--auto-approve", "--force-conflicts"])
        .expect(0);
    let cm = c1
        .object("", "ConfigMap", "shop", "settings")
        .expect("configmap");
    assert_eq!(cm["data"]["greeting"], "hello");
    w.dcm(&["plan", "--detailed-exitcode"]).expect(0);

    // A field dcm does not set is someone else's: not drift, and never removed.
    edit_as_someone_else(
        c1,
        "/api/v1/namespaces/shop/configmaps/settings",
        json!({"metadata": {"labels": {"team": "payments"}}, "data": {"extra": "theirs"}}),
    );
    w.dcm(&["drift"]).expect(0);
    w.dcm(&["plan", "--detailed-exitcode"]).expect(0);
    w.p.edit("app.yaml", "greeting: hello", "greeting: hi");
    w.dcm(&["apply", "--auto-approve"]).expect(0);
    let cm = c1
        .object("", "ConfigMap", "shop", "settings")
        .expect("configmap");
    assert_eq!(cm["data"]["greeting"], "hi");
    assert_eq!(cm["data"]["extra"], "theirs");
    assert_eq!(cm["metadata"]["labels"]["team"], "payments");

    // A key dcm set and no longer wants is removed.
    w.p.edit("app.yaml", "  labels:\n    app: shop\n", "");
    let plan = w.dcm(&["plan", "--detailed-exitcode"]).expect(2);
    assert!(diff_line(&plan.stdout, '-', "app: shop"), "{}", plan.stdout);
    w.dcm(&["apply", "--auto-approve"]).expect(0);
    let cm = c1
        .object("", "ConfigMap", "shop", "settings")
        .expect("configmap");
    assert!(cm["metadata"]["labels"].get("app").is_none(), "{cm}");
    assert_eq!(cm["metadata"]["labels"]["team"], "payments");
}

#[test]
fn destroy_deletes_what_dcm_created_and_nothing_else() {
    let w = World::new();
    w.dcm(&["apply", "--auto-approve"]).expect(0);
    let c1 = w.cluster("cluster1");
    w.dcm(&["destroy", "--auto-approve"]).expect(0);
    assert!(c1.object("", "Namespace", "", "shop").is_none());
    assert!(c1.object("", "ConfigMap", "shop", "settings").is_none());
    assert!(w
        .cluster("cluster2")
        .object("", "Namespace", "", "shop")
        .is_none());
    assert!(c1
        .object("", "ConfigMap", "kube-system", "coredns")
        .is_some());
    assert!(c1.object("", "Namespace", "", "default").is_some());
    let plan = w.dcm(&["plan", "--detailed-exitcode"]).expect(2);
    assert!(plan.stdout.contains("Plan: 6 to add"), "{}", plan.stdout);
}

#[test]
fn passing_failures_are_retried_and_the_apply_converges() {
    let w = World::new();
    let c1 = w.cluster("cluster1");
    c1.add_fault(Fault::new(
        FaultKind::TooManyRequests {
            retry_after_secs: 1,
        },
        FaultWhen::Share(0.3),
    ));
    c1.add_fault(Fault::new(FaultKind::Unavailable, FaultWhen::Next(2)).on_method("PATCH"));
    c1.add_fault(Fault::new(FaultKind::Drop, FaultWhen::Next(1)).on_method("GET"));
    w.dcm(&["apply", "--auto-approve"]).expect(0);
    let log = c1.requests();
    assert!(log.iter().any(|r| r.status == 429), "the faults hit");
    assert!(log.iter().any(|r| r.status == 503));
    assert!(log.iter().any(|r| r.status == 0), "a dropped connection");
    c1.clear_faults();
    w.dcm(&["plan", "--detailed-exitcode"]).expect(0);
    // Reads are one request per kind and namespace (a LIST, or a GET when the namespace
    // holds one object of the kind, as here), not one per object.
    c1.clear_requests();
    w.dcm(&["plan"]).expect(0);
    let reads = c1
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/configmaps"))
        .count();
    assert_eq!(reads, 1);
}

#[test]
fn a_cluster_that_keeps_failing_or_cannot_be_reached_is_a_clear_error() {
    let w = World::new();
    w.cluster("cluster2")
        .add_fault(Fault::new(FaultKind::InternalError, FaultWhen::Share(1.0)));
    let run = w.dcm(&["plan"]).expect(1);
    assert!(
        run.stderr.contains("cluster `cluster2` cannot be reached"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("500"), "{}", run.stderr);

    // A context that is not in the kubeconfig: named, with a hint, before any request.
    w.p.edit(
        "dcm.toml",
        "context = \"cluster2\"",
        "context = \"clustr2\"",
    );
    w.cluster("cluster1").clear_requests();
    let run = w.dcm(&["plan"]).expect(1);
    assert!(
        run.stderr.contains("context `clustr2` does not exist")
            && run.stderr.contains("did you mean `cluster2`"),
        "{}",
        run.stderr
    );
    assert!(w.cluster("cluster1").requests().is_empty());

    // No kubeconfig at all.
    let run = w.p.dcm(&["plan"]).expect(1);
    assert!(run.stderr.contains("kubeconfig"), "{}", run.stderr);

    // A kubeconfig that is not one, named.
    w.p.write("broken-kubeconfig", "clusters: [not: {a: kubeconfig");
    let run =
        w.p.dcm(&["--kubeconfig", "broken-kubeconfig", "plan"])
            .expect(1);
    assert!(
        run.stderr
            .contains("cannot read kubeconfig broken-kubeconfig"),
        "{}",
        run.stderr
    );
}

#[test]
fn kubeconfig_comes_from_the_kubeconfig_variable_as_a_path_list() {
    let w = World::new();
    // Like kubectl: a list of files, missing ones skipped, entries merged.
    let list = format!(
        "{}:{}",
        w.p.path("missing/config").display(),
        w.clusters.kubeconfig.display()
    );
    let out =
        w.p.command(&["plan", "--detailed-exitcode"])
            .env("KUBECONFIG", list)
            .output()
            .expect("run dcm");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Plan: 6 to add"), "{stdout}");
}

fn cloud_world() -> World {
    let w = World::new();
    // The directory-target cloud of logical_clouds.rs, on Kubernetes targets instead.
    let file = super::logical_clouds::CLOUD
        .replace("dir = \"out/cluster1\"", "context = \"cluster1\"")
        .replace("dir = \"out/cluster2\"", "context = \"cluster2\"")
        .replace("secrets = \"plaintext\"\n", "");
    // Every cluster has a `default` namespace, which the cloud labels for injection: the
    // file imports it (dcm never takes over what it did not create unasked).
    let imports = "import = [\"cluster1/core/Namespace/_cluster/default\", \"cluster2/core/Namespace/_cluster/default\"]\n";
    w.p.write("dcm.toml", &format!("{imports}{file}"));
    super::harness::copy_test_certs(&w.p);
    w
}

#[test]
fn a_logical_cloud_on_clusters_edits_coredns_and_destroy_puts_it_back() {
    let w = cloud_world();
    w.dcm(&["apply", "--auto-approve"]).expect(0);
    for c in ["cluster1", "cluster2"] {
        let e = w.cluster(c);
        assert!(e.object("", "Namespace", "", "istio-lc1").is_some());
        assert!(e.object("", "Secret", "istio-lc1", "cacerts").is_some());
        assert!(e
            .object(
                "install.istio.io",
                "IstioOperator",
                "istio-lc1",
                "lc1-control-plane"
            )
            .is_some());
        let corefile = e
            .object("", "ConfigMap", "kube-system", "coredns")
            .expect("coredns")["data"]["Corefile"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(corefile.starts_with(STOCK_COREFILE), "{corefile}");
        assert!(corefile.contains("lc1:53 {"), "{corefile}");
    }
    assert!(w
        .cluster("cluster1")
        .object(
            "networking.istio.io",
            "ServiceEntry",
            "default",
            "reviews-default-lc1"
        )
        .is_some());
    w.dcm(&["plan", "--detailed-exitcode"]).expect(0);

    // Someone else edits the Corefile outside dcm's block: not drift, and kept.
    let c1 = w.cluster("cluster1");
    let theirs = c1
        .object("", "ConfigMap", "kube-system", "coredns")
        .expect("coredns")["data"]["Corefile"]
        .as_str()
        .unwrap_or_default()
        .replace("cache 30\n    loop", "cache 60\n    loop");
    edit_as_someone_else(
        c1,
        "/api/v1/namespaces/kube-system/configmaps/coredns",
        json!({"data": {"Corefile": theirs}}),
    );
    w.dcm(&["drift"]).expect(0);
    w.dcm(&["plan", "--detailed-exitcode"]).expect(0);

    w.dcm(&["destroy", "--auto-approve"]).expect(0);
    let after = c1
        .object("", "ConfigMap", "kube-system", "coredns")
        .expect("coredns kept");
    assert_eq!(
        after["data"]["Corefile"].as_str(),
        Some(
            STOCK_COREFILE
                .replace("cache 30\n    loop", "cache 60\n    loop")
                .as_str()
        )
    );
    assert_eq!(after["metadata"]["labels"]["k8s-app"], "kube-dns");
    assert!(c1.object("", "Namespace", "", "istio-lc1").is_none());
}

/// Stands in for the Istio operator: once the control plane's namespace exists in a
/// cluster, creates its `istiocoredns` Service there (the cluster gives it a ClusterIP).
fn operator_creates_istiocoredns(e: &k8s_emulator::Emulator) {
    for _ in 0..400 {
        if e.object("", "Namespace", "", "istio-lc1").is_some() {
            e.seed(json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "istiocoredns", "namespace": "istio-lc1"},
                "spec": {"ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}
            }))
            .expect("create istiocoredns");
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("the control plane namespace never appeared");
}

#[test]
fn the_istiocoredns_address_is_known_after_apply_and_read_from_the_cluster() {
    let w = cloud_world();
    w.p.edit(
        "dcm.toml",
        "dns_forward = { cluster1 = \"10.96.0.53\", cluster2 = \"10.97.0.53\" }\n",
        "",
    );
    let plan = w.dcm(&["plan"]).expect(0);
    assert!(
        plan.stdout
            .contains("forward . (known after apply: ClusterIP of istio-lc1/istiocoredns):53"),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains(
        "apply waits for cluster1/core/Service/istio-lc1/istiocoredns to have spec.clusterIP"
    ));

    // Without the Service, apply waits (here briefly), says why it failed, and applies
    // everything else.
    let run = w
        .dcm(&["apply", "--auto-approve", "--wait-timeout", "1s"])
        .expect(1);
    assert!(
        run.stderr.contains(
            "gave up after 1s waiting for ClusterIP of istio-lc1/istiocoredns: apply waits for cluster1/core/Service/istio-lc1/istiocoredns to have spec.clusterIP"
        ),
        "{}",
        run.stderr
    );
    let c1 = w.cluster("cluster1");
    let untouched = c1
        .object("", "ConfigMap", "kube-system", "coredns")
        .expect("coredns");
    assert_eq!(untouched["data"]["Corefile"].as_str(), Some(STOCK_COREFILE));
    assert!(c1
        .object(
            "install.istio.io",
            "IstioOperator",
            "istio-lc1",
            "lc1-control-plane"
        )
        .is_some());

    // Once the control plane has made its Service, the plan knows the address.
    operator_creates_istiocoredns(c1);
    let ip = c1
        .object("", "Service", "istio-lc1", "istiocoredns")
        .expect("svc")["spec"]["clusterIP"]
        .as_str()
        .expect("a ClusterIP")
        .to_string();
    let plan = w.dcm(&["plan"]).expect(0);
    assert!(
        plan.stdout.contains(&format!("forward . {ip}:53")),
        "{}",
        plan.stdout
    );

    // And apply waits for a Service that appears while it runs.
    std::thread::scope(|s| {
        s.spawn(|| operator_creates_istiocoredns(w.cluster("cluster2")));
        w.dcm(&["apply", "--auto-approve"]).expect(0);
    });
    for c in ["cluster1", "cluster2"] {
        let e = w.cluster(c);
        let ip = e
            .object("", "Service", "istio-lc1", "istiocoredns")
            .expect("svc")["spec"]["clusterIP"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let corefile = e
            .object("", "ConfigMap", "kube-system", "coredns")
            .expect("coredns")["data"]["Corefile"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            corefile.contains(&format!(
                "lc1:53 {{\n    errors\n    cache 30\n    forward . {ip}:53\n}}"
            )),
            "{corefile}"
        );
    }
    w.dcm(&["plan", "--detailed-exitcode"]).expect(0);
    w.dcm(&["drift"]).expect(0);
}

/// The mesh examples on three emulated clusters instead of directories: the routes, remote
/// secrets and remote installs go over the API, a second plan is empty despite server
/// defaults, and destroy leaves only what was there before.
#[test]
fn the_mesh_examples_apply_to_clusters_converge_and_destroy_cleanly() {
    for toml in ["two-clusters-bookinfo.toml", "primary-remote.toml"] {
        let p = super::examples::example_project(toml);
        for c in ["cluster1", "cluster2", "cluster3"] {
            p.edit_all(
                toml,
                &format!("dir = \"{}/{c}\"", p.out),
                &format!("context = \"{c}\""),
            );
        }
        p.remove_lines(toml, "secrets = ");
        // The control planes are installed by others here: these emulated clusters run
        // no Sail Operator.
        p.edit_all(toml, "install = \"sail\"", "# sail");
        p.edit_all(
            toml,
            "version = \"1.31.0\"",
            "version = \"1.31.0\"\ninstall = \"none\"",
        );
        let clusters = Clusters::start(3, p.dir.path()).expect("start emulated clusters");
        clusters.seed_coredns().expect("seed coredns");
        let kubeconfig = clusters.kubeconfig.display().to_string();
        let dcm = |args: &[&str]| {
            let mut all = vec!["--kubeconfig", kubeconfig.as_str(), "-f", toml];
            all.splice(2..2, args.iter().copied());
            p.dcm(&all)
        };
        dcm(&["apply", "--auto-approve"]).expect(0);
        dcm(&["plan", "--detailed-exitcode"]).expect(0);
        let c1 = clusters.get("cluster1").unwrap();
        if toml == "two-clusters-bookinfo.toml" {
            let vs = c1
                .object(
                    "networking.istio.io",
                    "VirtualService",
                    "bookinfo",
                    "reviews-bookinfo-lc1",
                )
                .expect("the jason route");
            assert_eq!(vs["spec"]["http"][0]["route"][1]["weight"], 50);
            assert_eq!(vs["metadata"]["managedFields"][0]["manager"], "dcm", "{vs}");
        } else {
            let secret = c1
                .object("", "Secret", "istio-mesh", "istio-remote-secret-cluster3")
                .expect("remote secret");
            assert_eq!(secret["metadata"]["labels"]["istio/multiCluster"], "true");
            let remote = clusters.get("cluster3").unwrap();
            assert!(remote
                .object("", "Secret", "istio-mesh", "cacerts")
                .is_none());
            let ns = remote
                .object("", "Namespace", "", "istio-mesh")
                .expect("the remote's istio namespace");
            assert_eq!(
                ns["metadata"]["annotations"]["topology.istio.io/controlPlaneClusters"],
                "cluster1"
            );
        }
        dcm(&["destroy", "--auto-approve"]).expect(0);
        for (name, e) in &clusters.clusters {
            let corefile = e.object("", "ConfigMap", "kube-system", "coredns").unwrap();
            assert_eq!(
                corefile["data"]["Corefile"], STOCK_COREFILE,
                "{toml} {name}"
            );
            assert!(
                e.object("", "Namespace", "", "istio-lc1").is_none()
                    && e.object("", "Namespace", "", "istio-mesh").is_none(),
                "{toml} {name}"
            );
        }
    }
}

/// An example made to run on emulated clusters with nothing pinned: the clusters are
/// contexts, and the gateway addresses, API servers and reader tokens are what the
/// clusters hand out after apply (known after apply), as on real clusters.
fn unpinned_example(toml: &str) -> Project {
    let p = super::examples::example_project(toml);
    let text = p.read(toml);
    let mut out = String::new();
    for line in text.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        if ["gateway", "api_server", "token_file", "ca_file", "secrets"].contains(&key) {
            continue;
        }
        match line.strip_prefix("dir = \"") {
            Some(rest) => {
                let dir = rest.split('"').next().unwrap_or("");
                let name = dir.rsplit('/').next().unwrap_or(dir);
                out.push_str(&format!("context = \"{name}\"\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    p.write(toml, &out);
    p
}

/// An example run on emulated clusters with nothing pinned (see `unpinned_example`).
struct Mesh {
    p: Project,
    clusters: Clusters,
    toml: &'static str,
}

impl Mesh {
    /// `n` clusters, each's options changed by `configure(name, &mut options)` first.
    fn start(
        toml: &'static str,
        n: usize,
        configure: impl Fn(&str, &mut k8s_emulator::Options),
    ) -> Mesh {
        let p = unpinned_example(toml);
        let clusters =
            Clusters::start_with(n, p.dir.path(), configure).expect("start emulated clusters");
        clusters.seed_coredns().expect("seed coredns");
        Mesh { p, clusters, toml }
    }

    /// dcm with the clusters' kubeconfig and the example's file.
    fn dcm(&self, args: &[&str]) -> super::harness::Run {
        let kubeconfig = self.clusters.kubeconfig.display().to_string();
        let mut all = vec!["--kubeconfig", kubeconfig.as_str(), "-f", self.toml];
        all.splice(2..2, args.iter().copied());
        self.p.dcm(&all)
    }
}

/// Every object of `cluster` whose metadata names `needle` (in its name or namespace),
/// as `Kind/namespace/name`, read over the API as any client would.
fn objects_naming(e: &k8s_emulator::Emulator, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for path in [
        "/api/v1/namespaces",
        "/api/v1/configmaps",
        "/api/v1/secrets",
        "/api/v1/services",
        "/api/v1/serviceaccounts",
        "/apis/apps/v1/deployments",
        "/apis/rbac.authorization.k8s.io/v1/roles",
        "/apis/rbac.authorization.k8s.io/v1/rolebindings",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        "/apis/networking.istio.io/v1/gateways",
        "/apis/networking.istio.io/v1/serviceentries",
        "/apis/networking.istio.io/v1/destinationrules",
        "/apis/networking.istio.io/v1/virtualservices",
        "/apis/sailoperator.io/v1/istios",
    ] {
        let resp = e.handle(&Request {
            method: "GET".into(),
            path: path.into(),
            ..Default::default()
        });
        assert_eq!(resp.status, 200, "{path}: {}", resp.body);
        for item in resp.body["items"].as_array().into_iter().flatten() {
            let name = item["metadata"]["name"].as_str().unwrap_or("");
            let ns = item["metadata"]["namespace"].as_str().unwrap_or("");
            if name.contains(needle) || ns.contains(needle) {
                found.push(format!(
                    "{}/{ns}/{name}",
                    item["kind"].as_str().unwrap_or("")
                ));
            }
        }
    }
    found.sort();
    found
}

/// The kubeconfig inside a remote secret, as istiod reads it.
fn remote_kubeconfig(secret: &Value, cluster: &str) -> Value {
    let text = match secret["data"][cluster].as_str() {
        Some(b64) => String::from_utf8(super::harness::base64_decode(b64)).unwrap(),
        None => secret["stringData"][cluster]
            .as_str()
            .expect("kubeconfig")
            .to_string(),
    };
    serde_yaml_ng::from_str(&text).expect("a kubeconfig")
}

#[test]
fn a_sail_installed_mesh_fills_in_what_the_clusters_hand_out_and_a_removed_cloud_leaves_no_trace() {
    let toml = "two-clouds.toml";
    let m = Mesh::start(toml, 3, |_, _| {});
    let (p, clusters, dcm) = (&m.p, &m.clusters, |a: &[&str]| m.dcm(a));
    let plan = dcm(&["plan", "--no-color"]).expect(0).stdout;
    assert!(
        plan.contains("(known after apply: cluster3/core/Service/istio-blue/istio-eastwestgateway.status.loadBalancer.ingress[0])"),
        "{plan}"
    );
    assert!(plan.contains("(known after apply"), "{plan}");
    dcm(&["apply", "--auto-approve"]).expect(0);

    let c1 = clusters.get("cluster1").unwrap();
    let c2 = clusters.get("cluster2").unwrap();
    let c3 = clusters.get("cluster3").unwrap();
    // A Sail control plane per cloud and cluster, reconciled and Ready.
    for (_, e) in &clusters.clusters {
        for cloud in ["blue", "green"] {
            let istio = e
                .object("sailoperator.io", "Istio", "", cloud)
                .expect("a Sail Istio per cloud");
            assert_eq!(istio["spec"]["namespace"], format!("istio-{cloud}"));
            assert_eq!(istio["status"]["state"], "Healthy", "{istio}");
        }
    }
    // Each primary reads the others with the token their cluster issued, at the server
    // its kubeconfig context names.
    let issued = c2
        .object("", "Secret", "istio-blue", "dcm-istio-reader-token")
        .expect("the reader token Secret");
    let token = String::from_utf8(super::harness::base64_decode(
        issued["data"]["token"].as_str().expect("an issued token"),
    ))
    .unwrap();
    let secret = c1
        .object("", "Secret", "istio-blue", "istio-remote-secret-cluster2")
        .expect("cluster1's remote secret for cluster2");
    let kc = remote_kubeconfig(&secret, "cluster2");
    assert_eq!(kc["users"][0]["user"]["token"], token.as_str());
    assert_eq!(kc["clusters"][0]["cluster"]["server"], c2.url());
    assert!(!plan.contains(&token));
    let state = p.read("state/dcm.state.json");
    assert!(!state.contains(&token), "the token reached the state");

    // Cloud names resolve to the other clusters' east-west gateways, at the addresses
    // their load balancers were given.
    let gateway_ip = |e: &k8s_emulator::Emulator, cloud: &str| {
        let svc = e
            .object(
                "",
                "Service",
                &format!("istio-{cloud}"),
                "istio-eastwestgateway",
            )
            .expect("the east-west gateway Service");
        svc["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()
            .expect("an ingress address")
            .to_string()
    };
    let c3_blue = gateway_ip(c3, "blue");
    assert!(c3_blue.starts_with("198.51.100.3"), "{c3_blue}");
    let entries = c2
        .handle(&Request {
            method: "GET".into(),
            path: "/apis/networking.istio.io/v1/namespaces/shop-blue/serviceentries".into(),
            ..Default::default()
        })
        .body
        .to_string();
    assert!(entries.contains(&c3_blue), "{entries}");
    assert!(!entries.contains(&gateway_ip(c3, "green")), "{entries}");

    // Nothing left to do, and nothing is reported as drift.
    dcm(&["plan", "--detailed-exitcode"]).expect(0);
    dcm(&["drift"]).expect(0);

    // Removing a cloud removes exactly its objects: blue is untouched, byte for byte.
    let blue_before: Vec<_> = clusters
        .clusters
        .iter()
        .map(|(_, e)| objects_naming(e, "blue"))
        .collect();
    let blue_istio_before = c1.object("sailoperator.io", "Istio", "", "blue").unwrap();
    assert!(!objects_naming(c1, "green").is_empty());
    let text = p.read(toml);
    let cut = text
        .find("[logical_clouds.green]")
        .expect("the green cloud");
    p.write(toml, &text[..cut]);
    let plan = dcm(&["plan", "--no-color"]).expect(0).stdout;
    assert!(plan.contains("Plan: 0 to add, 0 to change, "), "{plan}");
    for line in plan
        .lines()
        .filter(|l| l.trim_start().starts_with("- ") || l.contains(" will be "))
    {
        if line.contains("will be") {
            assert!(
                line.contains("green") && line.contains("destroyed"),
                "{line}\n{plan}"
            );
        }
    }
    dcm(&["apply", "--auto-approve"]).expect(0);
    for (i, (name, e)) in clusters.clusters.iter().enumerate() {
        assert_eq!(objects_naming(e, "green"), Vec::<String>::new(), "{name}");
        assert_eq!(objects_naming(e, "blue"), blue_before[i], "{name}");
    }
    let blue_istio_after = c1.object("sailoperator.io", "Istio", "", "blue").unwrap();
    assert_eq!(
        blue_istio_before["metadata"]["resourceVersion"],
        blue_istio_after["metadata"]["resourceVersion"]
    );
    dcm(&["plan", "--detailed-exitcode"]).expect(0);
    dcm(&["destroy", "--auto-approve"]).expect(0);
    for (name, e) in &clusters.clusters {
        assert_eq!(objects_naming(e, "blue"), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn apply_waits_for_the_control_plane_to_be_ready_and_names_it_when_it_never_is() {
    // cluster2's Sail Operator never reports its control plane Ready.
    let m = Mesh::start("two-clusters-bookinfo.toml", 2, |name, o| {
        if name == "cluster2" {
            o.istio_ready_delay = None;
        }
    });
    let (clusters, dcm) = (&m.clusters, |a: &[&str]| m.dcm(a));
    let failed = dcm(&["apply", "--auto-approve", "--wait-timeout", "2s"]).expect(1);
    assert!(
        failed
            .stderr
            .contains("cluster2/sailoperator.io/Istio/_cluster/lc1")
            && failed.stderr.contains("Ready")
            && failed.stderr.contains("gave up after 2s"),
        "{}",
        failed.stderr
    );
    let c1 = clusters.get("cluster1").unwrap();
    let c2 = clusters.get("cluster2").unwrap();
    // What needs cluster2's revision waits; cluster1 is not held back.
    assert!(c2.object("", "Namespace", "", "bookinfo").is_none());
    assert!(c1.object("", "Namespace", "", "bookinfo").is_some());
    assert!(c1
        .object(
            "networking.istio.io",
            "VirtualService",
            "bookinfo",
            "reviews-bookinfo-lc1"
        )
        .is_some());
}

#[test]
fn a_remote_finds_its_primary_at_the_address_the_primary_s_load_balancer_was_given() {
    let m = Mesh::start("primary-remote.toml", 3, |_, _| {});
    let (clusters, dcm) = (&m.clusters, |a: &[&str]| m.dcm(a));
    dcm(&["apply", "--auto-approve"]).expect(0);
    let primary = clusters.get("cluster1").unwrap();
    let gateway = primary
        .object("", "Service", "istio-mesh", "istio-eastwestgateway")
        .expect("the primary's east-west gateway");
    let address = gateway["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .expect("an ingress address");
    for remote in ["cluster2", "cluster3"] {
        let e = clusters.get(remote).unwrap();
        let istio = e
            .object("sailoperator.io", "Istio", "", "mesh")
            .expect("the remote's Istio");
        assert_eq!(istio["spec"]["profile"], "remote", "{istio}");
        assert_eq!(
            istio["spec"]["values"]["global"]["remotePilotAddress"], address,
            "{istio}"
        );
        // The primary reads each remote with a token the remote issued.
        let secret = primary
            .object(
                "",
                "Secret",
                "istio-mesh",
                &format!("istio-remote-secret-{remote}"),
            )
            .expect("a remote secret");
        let kc = remote_kubeconfig(&secret, remote);
        assert_eq!(kc["clusters"][0]["cluster"]["server"], e.url());
        assert!(kc["users"][0]["user"]["token"]
            .as_str()
            .is_some_and(|t| !t.is_empty() && !t.contains("known after apply")));
    }
    dcm(&["plan", "--detailed-exitcode"]).expect(0);
}

#[test]
fn the_server_checks_every_planned_write_and_its_refusal_fails_the_plan_with_its_words() {
    let w = World::new();
    w.dcm(&["apply", "--auto-approve"]).expect(0);
    let c1 = w.cluster("cluster1");
    let before = c1.resource_version();

    // A value of the wrong type: the real API server's server-side apply refuses it.
    w.p.write("app.yaml", &APP.replace("    port: 80", "    port: eighty"));
    let plan = w.dcm(&["plan"]).expect(1);
    assert!(
        plan.stderr
            .contains("cluster1/core/Service/shop/web: the server rejects it")
            && plan.stderr.contains("expected numeric")
            && !plan.stderr.contains("cannot be reached"),
        "{}",
        plan.stderr
    );
    w.dcm(&["apply", "--auto-approve"]).expect(1);
    assert_eq!(c1.resource_version(), before, "nothing was written");

    // A kind the cluster does not serve (no CRD for it in the cluster or the file).
    w.p.write(
        "app.yaml",
        &format!(
            "{APP}---\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n  namespace: shop\nspec: {{}}\n"
        ),
    );
    let plan = w.dcm(&["plan"]).expect(1);
    assert!(
        plan.stderr.contains("cluster1/example.com/Widget/shop/w")
            && plan
                .stderr
                .contains("does not serve kind Widget in example.com/v1"),
        "{}",
        plan.stderr
    );
    assert_eq!(c1.resource_version(), before, "nothing was written");
}

#[test]
fn a_crd_and_its_objects_apply_together_once_the_crd_is_established() {
    let p = Project::new();
    p.write(
        "dcm.toml",
        r#"
[clusters.cluster1]
context = "cluster1"

[[resources]]
name = "widgets"
clusters = ["cluster1"]
file = "widgets.yaml"
"#,
    );
    p.write(
        "widgets.yaml",
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
---
apiVersion: example.com/v1
kind: Widget
metadata:
  name: w
  namespace: default
spec:
  size: 3
",
    );
    // The API server takes a moment to serve a new kind.
    let clusters = Clusters::start_with(1, p.dir.path(), |_, o| {
        o.crd_established_delay = Some(std::time::Duration::from_millis(1500));
    })
    .expect("start emulated clusters");
    let kubeconfig = clusters.kubeconfig.display().to_string();
    let plan = p.dcm(&["--kubeconfig", &kubeconfig, "plan"]).expect(0);
    assert!(
        plan.stdout.contains("Plan: 2 to add")
            && plan.stdout.contains("its kind is known after apply"),
        "{}",
        plan.stdout
    );
    p.dcm(&["--kubeconfig", &kubeconfig, "apply", "--auto-approve"])
        .expect(0);
    let e = clusters.get("cluster1").unwrap();
    let w = e
        .object("example.com", "Widget", "default", "w")
        .expect("the widget");
    assert_eq!(w["spec"]["size"], 3);
    p.dcm(&["--kubeconfig", &kubeconfig, "plan", "--detailed-exitcode"])
        .expect(0);
}

/// Sets replicas as a HorizontalPodAutoscaler does (an update by its own field manager).
fn autoscale(e: &k8s_emulator::Emulator, replicas: u32) {
    let resp = e.handle(&Request {
        method: "PATCH".into(),
        path: "/apis/apps/v1/namespaces/shop/deployments/web".into(),
        content_type: "application/merge-patch+json".into(),
        user_agent: "horizontal-pod-autoscaler/v1.31.0".into(),
        body: json!({"spec": {"replicas": replicas}})
            .to_string()
            .into_bytes(),
        ..Default::default()
    });
    assert_eq!(resp.status, 200, "{}", resp.body);
}

#[test]
fn replicas_an_autoscaler_owns_are_a_conflict_until_an_ignore_rule_leaves_them_to_it() {
    let w = World::new();
    w.p.write(
        "app.yaml",
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
",
    );
    w.dcm(&["apply", "--auto-approve"]).expect(0);
    let c1 = w.cluster("cluster1");
    autoscale(c1, 5);
    let plan = w.dcm(&["plan", "--detailed-exitcode"]).expect(2);
    assert!(
        plan.stdout
            .contains("conflict with \"horizontal-pod-autoscaler\""),
        "{}",
        plan.stdout
    );
    w.dcm(&["apply", "--auto-approve"]).expect(1);

    // Leave replicas to the autoscaler, as Argo CD's ignoreDifferences does.
    let toml = w.p.read("dcm.toml");
    w.p.write(
        "dcm.toml",
        &format!(
            "{toml}\n[[ignore_differences]]\nkind = \"Deployment\"\nname = \"web\"\njson_pointers = [\"/spec/replicas\"]\n"
        ),
    );
    // Nothing changes in the cluster; the state records what dcm now wants.
    let plan = w.dcm(&["plan"]).expect(0);
    assert!(
        !plan.stdout.contains("replicas")
            && plan
                .stdout
                .contains("Plan: 0 to add, 0 to change, 0 to destroy."),
        "{}",
        plan.stdout
    );
    w.dcm(&["apply", "--auto-approve"]).expect(0);
    w.dcm(&["plan", "--detailed-exitcode"]).expect(0);
    autoscale(c1, 7);
    w.dcm(&["drift"]).expect(0);
    // dcm's other fields are still its own: a new image is applied, replicas stay.
    w.p.edit("app.yaml", "nginx:1.27", "nginx:1.28");
    w.dcm(&["apply", "--auto-approve"]).expect(0);
    let d = c1.object("apps", "Deployment", "shop", "web").unwrap();
    assert_eq!(d["spec"]["replicas"], 7);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.28"
    );
}

#[test]
fn a_namespace_holding_others_objects_is_destroyed_only_with_cascade_and_deletes_show_it_all() {
    let w = World::new();
    w.dcm(&["apply", "--auto-approve"]).expect(0);
    let c1 = w.cluster("cluster1");
    // Another team's ConfigMap in dcm's namespace, and a key someone added to dcm's.
    let resp = c1.handle(&Request {
        method: "POST".into(),
        path: "/api/v1/namespaces/shop/configmaps".into(),
        content_type: "application/json".into(),
        user_agent: "kubectl/v1.32.0".into(),
        body: json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "theirs"}, "data": {"k": "v"}})
            .to_string()
            .into_bytes(),
        ..Default::default()
    });
    assert_eq!(resp.status, 201, "{}", resp.body);
    edit_as_someone_else(
        c1,
        "/api/v1/namespaces/shop/configmaps/settings",
        json!({"data": {"extra": "added-by-hand"}}),
    );
    let before = c1.resource_version();
    let refused = w.dcm(&["destroy", "--auto-approve"]).expect(1);
    assert!(
        refused.stdout.contains("ConfigMap/theirs")
            && refused.stdout.contains("--cascade")
            && refused
                .stderr
                .contains("cluster1/core/Namespace/_cluster/shop"),
        "{}\n{}",
        refused.stdout,
        refused.stderr
    );
    assert_eq!(c1.resource_version(), before, "nothing was deleted");
    // The delete shows the whole object that goes, the other manager's key included.
    assert!(
        diff_line(&refused.stdout, '-', "extra: added-by-hand"),
        "{}",
        refused.stdout
    );
    let done = w.dcm(&["destroy", "--auto-approve", "--cascade"]).expect(0);
    assert!(
        done.stdout
            .contains("cluster1/core/Namespace/_cluster/shop: destroyed"),
        "{}",
        done.stdout
    );
    assert!(c1.object("", "Namespace", "", "shop").is_none());
    assert!(c1.object("", "ConfigMap", "shop", "theirs").is_none());
}

#[test]
fn refresh_only_records_what_others_changed_without_writing_to_a_cluster() {
    let w = World::new();
    w.dcm(&["apply", "--auto-approve"]).expect(0);
    let c1 = w.cluster("cluster1");
    edit_as_someone_else(
        c1,
        "/api/v1/namespaces/shop/configmaps/settings",
        json!({"data": {"greeting": "theirs"}}),
    );
    // A Secret's new value: recorded by its keyed hash only.
    edit_as_someone_else(
        c1,
        "/api/v1/namespaces/shop/secrets/db",
        json!({"data": {"password": "bmV3LXNlY3JldC12YWx1ZQ=="}}),
    );
    let drift = w.dcm(&["drift"]).expect(2);
    assert!(drift.stdout.contains("Drift in 2 of"), "{}", drift.stdout);
    let version = |kind: &str, name: &str| {
        c1.object("", kind, "shop", name).unwrap()["metadata"]["resourceVersion"].clone()
    };
    let before = (version("ConfigMap", "settings"), version("Secret", "db"));

    let plan = w
        .dcm(&[
            "plan",
            "--refresh-only",
            "-o",
            "refresh.json",
            "--detailed-exitcode",
        ])
        .expect(2);
    assert!(
        plan.stdout.contains("State only: 2 objects"),
        "{}",
        plan.stdout
    );
    assert!(!w.p.read("refresh.json").contains("new-secret-value"));
    w.dcm(&["apply", "refresh.json"]).expect(0);
    assert_eq!(
        (version("ConfigMap", "settings"), version("Secret", "db")),
        before,
        "no object was written"
    );
    assert_eq!(
        c1.object("", "ConfigMap", "shop", "settings").unwrap()["data"]["greeting"],
        "theirs"
    );
    w.dcm(&["drift"]).expect(0);
    let state = w.p.read("state/dcm.state.json");
    assert!(!state.contains("new-secret-value") && !state.contains("bmV3LXNlY3JldC12YWx1ZQ"));
    // The next plan takes the file's values back.
    let plan = w.dcm(&["plan"]).expect(0);
    assert!(
        diff_line(&plan.stdout, '+', "greeting: hello"),
        "{}",
        plan.stdout
    );
}
