//! The emulator's contract: kubectl, a client we did not write, behaves against it as
//! against a real cluster. Skipped, with the reason printed, where kubectl is absent.

use k8s_emulator::harness::Clusters;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

struct Kubectl {
    _dir: tempfile::TempDir,
    clusters: Clusters,
}

fn kubectl_path() -> Option<String> {
    let candidates = ["/usr/bin/kubectl", "/usr/local/bin/kubectl"];
    if let Some(p) = candidates.iter().find(|p| Path::new(p).exists()) {
        return Some(p.to_string());
    }
    Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "kubectl".to_string())
}

fn start() -> Option<Kubectl> {
    start_with(|_| {})
}

/// As `start`, with the cluster's options changed by `configure` first.
fn start_with(configure: impl Fn(&mut k8s_emulator::Options)) -> Option<Kubectl> {
    if kubectl_path().is_none() {
        eprintln!("SKIPPED: kubectl is not installed on this machine");
        return None;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let clusters =
        Clusters::start_with(1, dir.path(), |_, o| configure(o)).expect("start emulator");
    clusters.seed_coredns().expect("seed");
    Some(Kubectl {
        _dir: dir,
        clusters,
    })
}

impl Kubectl {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut cmd = Command::new(kubectl_path().unwrap_or_default());
        cmd.args(args)
            .env("KUBECONFIG", &self.clusters.kubeconfig)
            .env("HOME", self._dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("run kubectl");
        if let Some(mut input) = child.stdin.take() {
            input
                .write_all(stdin.unwrap_or("").as_bytes())
                .expect("write stdin");
        }
        child.wait_with_output().expect("kubectl output")
    }

    /// Runs kubectl and expects success; returns stdout.
    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all, None)).expect("kubectl printed JSON")
    }

    fn emulator(&self) -> &k8s_emulator::Emulator {
        &self.clusters.clusters[0].1
    }
}

/// Polls `f` until it gives a value (every 50 ms, for up to 10 s).
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "timed out waiting until {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

const CONFIGMAP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: demo
  namespace: default
  labels:
    app: demo
data:
  key: one
";

#[test]
fn client_side_apply_then_get_round_trips_and_reapply_changes_nothing() {
    let Some(k) = start() else { return };
    let out = k.ok(&["apply", "-f", "-"], Some(CONFIGMAP));
    assert!(out.contains("configmap/demo created"), "{out}");
    let cm = k.json(&["get", "configmap", "demo", "-n", "default"]);
    assert_eq!(cm["data"]["key"], "one");
    assert_eq!(cm["metadata"]["labels"]["app"], "demo");
    assert!(cm["metadata"]["uid"]
        .as_str()
        .is_some_and(|u| u.len() == 36));
    assert!(cm["metadata"]["creationTimestamp"].is_string());
    let rv = cm["metadata"]["resourceVersion"].clone();

    let again = k.ok(&["apply", "-f", "-"], Some(CONFIGMAP));
    assert!(again.contains("configmap/demo unchanged"), "{again}");
    let cm = k.json(&["get", "configmap", "demo"]);
    assert_eq!(
        cm["metadata"]["resourceVersion"], rv,
        "a no-op apply must not write"
    );

    let changed = k.ok(
        &["apply", "-f", "-"],
        Some(&CONFIGMAP.replace("key: one", "key: two")),
    );
    assert!(changed.contains("configmap/demo configured"), "{changed}");
    assert_eq!(k.json(&["get", "cm", "demo"])["data"]["key"], "two");

    // Label selectors.
    let listed = k.json(&["get", "cm", "-A", "-l", "app=demo"]);
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
    let none = k.json(&["get", "cm", "-A", "-l", "app in (other)"]);
    assert_eq!(none["items"].as_array().map(Vec::len), Some(0));
    // The default table view prints names.
    let table = k.ok(&["get", "cm", "-n", "kube-system"], None);
    assert!(
        table.contains("NAME") && table.contains("coredns"),
        "{table}"
    );
}

/// A server-side apply of stdin by field manager `other`.
const APPLY_AS_OTHER: &[&str] = &[
    "apply",
    "--server-side",
    "--field-manager",
    "other",
    "-f",
    "-",
];

#[test]
fn server_side_apply_conflicts_with_another_field_manager_unless_forced() {
    let Some(k) = start() else { return };
    let out = k.ok(&["apply", "--server-side", "-f", "-"], Some(CONFIGMAP));
    assert!(out.contains("serverside-applied"), "{out}");
    let other = CONFIGMAP.replace("key: one", "key: two");
    let conflict = k.run(APPLY_AS_OTHER, Some(&other));
    assert!(!conflict.status.success());
    let err = String::from_utf8_lossy(&conflict.stderr);
    assert!(
        err.contains("conflict with \"kubectl\"") && err.contains(".data.key"),
        "{err}"
    );
    assert_eq!(k.json(&["get", "cm", "demo"])["data"]["key"], "one");

    // Applying the same value is co-ownership, not a conflict.
    k.ok(APPLY_AS_OTHER, Some(CONFIGMAP));
    k.ok(
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "other",
            "--force-conflicts",
            "-f",
            "-",
        ],
        Some(&other),
    );
    let cm = k.json(&["get", "cm", "demo", "--show-managed-fields"]);
    assert_eq!(cm["data"]["key"], "two");
    let managers: Vec<(String, bool)> = cm["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .map(|m| {
            (
                m["manager"].as_str().unwrap_or_default().to_string(),
                m["fieldsV1"]["f:data"]["f:key"].is_object(),
            )
        })
        .collect();
    assert!(managers.contains(&("other".into(), true)), "{managers:?}");
    assert!(
        managers.contains(&("kubectl".into(), false)),
        "{managers:?}"
    );

    // A field `other` stops applying stays while another manager (kubectl) still owns it.
    let without_label = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\n  namespace: default\ndata:\n  key: two\n";
    k.ok(APPLY_AS_OTHER, Some(without_label));
    // kubectl still owns the label, so it stays.
    assert_eq!(
        k.json(&["get", "cm", "demo"])["metadata"]["labels"]["app"],
        "demo"
    );
}

#[test]
fn kubectl_diff_shows_a_change_and_nothing_when_equal() {
    let Some(k) = start() else { return };
    k.ok(&["apply", "-f", "-"], Some(CONFIGMAP));
    let same = k.run(&["diff", "-f", "-"], Some(CONFIGMAP));
    assert_eq!(
        same.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&same.stderr)
    );
    let changed = k.run(
        &["diff", "-f", "-"],
        Some(&CONFIGMAP.replace("key: one", "key: two")),
    );
    assert_eq!(
        changed.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&changed.stderr)
    );
    let out = String::from_utf8_lossy(&changed.stdout);
    assert!(
        out.contains("-  key: one") && out.contains("+  key: two"),
        "{out}"
    );
    // The diff was a dry run: nothing changed.
    assert_eq!(k.json(&["get", "cm", "demo"])["data"]["key"], "one");
    let sides = k.run(
        &["diff", "--server-side", "--force-conflicts", "-f", "-"],
        Some(&CONFIGMAP.replace("key: one", "key: three")),
    );
    assert_eq!(sides.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&sides.stdout).contains("+  key: three"));
}

#[test]
fn delete_makes_get_return_not_found_and_namespaces_take_their_objects() {
    let Some(k) = start() else { return };
    k.ok(&["apply", "-f", "-"], Some(CONFIGMAP));
    let out = k.ok(&["delete", "configmap", "demo"], None);
    assert!(out.contains("configmap \"demo\" deleted"), "{out}");
    let gone = k.run(&["get", "configmap", "demo"], None);
    assert!(!gone.status.success());
    let err = String::from_utf8_lossy(&gone.stderr);
    assert!(
        err.contains("NotFound") && err.contains("configmaps \"demo\" not found"),
        "{err}"
    );

    let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n";
    k.ok(&["apply", "-f", "-"], Some(ns));
    k.ok(
        &["apply", "-f", "-"],
        Some(&CONFIGMAP.replace("namespace: default", "namespace: team")),
    );
    let ns_obj = k.json(&["get", "ns", "team"]);
    assert_eq!(
        ns_obj["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "team"
    );
    assert_eq!(ns_obj["status"]["phase"], "Active");
    k.ok(&["delete", "namespace", "team"], None);
    assert!(k
        .emulator()
        .object("", "ConfigMap", "team", "demo")
        .is_none());
    // Writing into a namespace that does not exist is NotFound.
    let missing = k.run(
        &["apply", "-f", "-"],
        Some(&CONFIGMAP.replace("namespace: default", "namespace: nowhere")),
    );
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("namespaces \"nowhere\" not found"));
}

#[test]
fn patch_merge_strategic_and_json() {
    let Some(k) = start() else { return };
    k.ok(&["apply", "-f", "-"], Some(CONFIGMAP));
    k.ok(
        &[
            "patch",
            "cm",
            "demo",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"a":"1"}}"#,
        ],
        None,
    );
    k.ok(
        &["patch", "cm", "demo", "-p", r#"{"data":{"b":"2"}}"#],
        None,
    );
    k.ok(
        &[
            "patch",
            "cm",
            "demo",
            "--type",
            "json",
            "-p",
            r#"[{"op":"remove","path":"/data/key"}]"#,
        ],
        None,
    );
    let cm = k.json(&["get", "cm", "demo"]);
    assert_eq!(cm["data"], serde_json::json!({"a": "1", "b": "2"}));
    let bad = k.run(
        &[
            "patch",
            "cm",
            "demo",
            "--type",
            "json",
            "-p",
            r#"[{"op":"remove","path":"/data/nope"}]"#,
        ],
        None,
    );
    assert!(!bad.status.success());

    let deployment = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
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
        image: nginx:1
      - name: sidecar
        image: envoy:1
";
    k.ok(&["apply", "-f", "-"], Some(deployment));
    let d = k.json(&["get", "deploy", "web"]);
    assert_eq!(d["metadata"]["generation"], 1);
    // Strategic merge patch merges containers by name.
    k.ok(
        &[
            "patch",
            "deploy",
            "web",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:2"}]}}}}"#,
        ],
        None,
    );
    let d = k.json(&["get", "deploy", "web"]);
    let images: Vec<&str> = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .filter_map(|c| c["image"].as_str())
        .collect();
    assert_eq!(images, vec!["nginx:2", "envoy:1"]);
    assert_eq!(
        d["metadata"]["generation"], 2,
        "a spec change bumps generation"
    );
    k.ok(&["label", "deploy", "web", "tier=front"], None);
    let d = k.json(&["get", "deploy", "web"]);
    assert_eq!(d["metadata"]["generation"], 2, "a label change does not");
}

#[test]
fn crds_make_their_kind_served_and_istio_kinds_are_there() {
    let Some(k) = start() else { return };
    let crd = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
";
    let before = k.run(&["get", "widgets"], None);
    assert!(!before.status.success());
    k.ok(&["apply", "-f", "-"], Some(crd));
    // The kind is served once the CRD is established, a moment later.
    eventually("the CRD is established", || {
        let crd_obj = k.json(&["get", "crd", "widgets.example.com"]);
        crd_obj["status"]["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
            .then_some(())
    });
    let widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: default\nspec:\n  size: 3\n";
    k.ok(&["apply", "-f", "-"], Some(widget));
    assert_eq!(k.json(&["get", "widget", "w1"])["spec"]["size"], 3);
    k.ok(&["delete", "crd", "widgets.example.com"], None);
    assert!(!k.run(&["get", "widgets"], None).status.success());

    let se = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: reviews
  namespace: default
spec:
  hosts: [reviews.default.lc1]
  location: MESH_INTERNAL
  resolution: DNS
";
    k.ok(&["apply", "--server-side", "-f", "-"], Some(se));
    let old_version = k.json(&[
        "get",
        "serviceentries.v1alpha3.networking.istio.io",
        "reviews",
    ]);
    assert_eq!(old_version["apiVersion"], "networking.istio.io/v1alpha3");
    assert_eq!(old_version["spec"]["hosts"][0], "reviews.default.lc1");
    let iop = "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nmetadata:\n  name: cp\n  namespace: default\nspec:\n  revision: lc1\n";
    k.ok(&["apply", "-f", "-"], Some(iop));
    assert_eq!(
        k.json(&["get", "istiooperator", "cp"])["spec"]["revision"],
        "lc1"
    );
}

#[test]
fn services_get_a_cluster_ip_and_dry_run_changes_nothing() {
    let Some(k) = start() else { return };
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\nspec:\n  ports:\n  - port: 80\n";
    let dry = k.ok(&["apply", "--dry-run=server", "-f", "-"], Some(svc));
    assert!(dry.contains("(server dry run)"), "{dry}");
    assert!(!k.run(&["get", "svc", "web"], None).status.success());
    k.ok(&["apply", "-f", "-"], Some(svc));
    let s = k.json(&["get", "svc", "web"]);
    let ip = s["spec"]["clusterIP"].as_str().expect("clusterIP");
    assert!(ip.starts_with("10.96."), "{ip}");
    assert_eq!(s["spec"]["ports"][0]["protocol"], "TCP");
    let kubernetes = k.json(&["get", "svc", "kubernetes"]);
    assert_ne!(kubernetes["spec"]["clusterIP"].as_str(), Some(ip));
}

#[test]
fn replace_with_a_stale_resource_version_conflicts() {
    let Some(k) = start() else { return };
    k.ok(&["apply", "-f", "-"], Some(CONFIGMAP));
    let mut cm = k.json(&["get", "cm", "demo"]);
    k.ok(
        &[
            "patch",
            "cm",
            "demo",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"key":"moved"}}"#,
        ],
        None,
    );
    cm["data"]["key"] = "stale".into();
    let stale = k.run(&["replace", "-f", "-"], Some(&cm.to_string()));
    assert!(!stale.status.success());
    let err = String::from_utf8_lossy(&stale.stderr);
    assert!(err.contains("the object has been modified"), "{err}");
    assert_eq!(k.json(&["get", "cm", "demo"])["data"]["key"], "moved");
}

/// A Namespace manifest.
fn namespace(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
}

const LB_SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: gateway
  namespace: default
spec:
  type: LoadBalancer
  selector: {app: gateway}
  ports:
  - {name: tls, port: 15443}
";

#[test]
fn load_balancer_services_get_an_ingress_address_that_applies_keep() {
    let Some(k) = start() else { return };
    k.ok(&["apply", "--server-side", "-f", "-"], Some(LB_SERVICE));
    let ip = |k: &Kubectl| {
        k.ok(
            &[
                "get",
                "svc",
                "gateway",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}",
            ],
            None,
        )
    };
    // cluster1 of the harness hands out 198.51.100.10-19.
    let first = eventually("the Service has an ingress address", || {
        Some(ip(&k)).filter(|s| !s.is_empty())
    });
    assert_eq!(first, "198.51.100.10");
    let all = k.ok(&["get", "svc", "-A"], None);
    let row = all
        .lines()
        .find(|l| l.contains("gateway"))
        .unwrap_or_else(|| panic!("{all}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        (cells[0], cells[2], cells[4], cells[5]),
        ("default", "LoadBalancer", "198.51.100.10", "15443/TCP"),
        "{all}"
    );
    assert!(
        all.lines()
            .next()
            .is_some_and(|h| h.contains("EXTERNAL-IP")),
        "{all}"
    );
    let kubernetes = all
        .lines()
        .find(|l| l.contains(" kubernetes "))
        .unwrap_or_else(|| panic!("{all}"));
    assert!(
        kubernetes.contains("ClusterIP") && kubernetes.contains("<none>"),
        "{kubernetes}"
    );

    // The status is the cluster's: applying the spec again, server- or client-side,
    // leaves it alone.
    k.ok(
        &["apply", "--server-side", "-f", "-"],
        Some(&LB_SERVICE.replace(
            "port: 15443",
            "port: 15443}\n  - {name: status, port: 15021",
        )),
    );
    k.ok(
        &["apply", "-f", "-"],
        Some(&LB_SERVICE.replace("app: gateway", "app: gw2")),
    );
    let svc = k.json(&["get", "svc", "gateway"]);
    assert_eq!(svc["spec"]["selector"]["app"], "gw2");
    assert_eq!(
        svc["status"]["loadBalancer"]["ingress"],
        serde_json::json!([{"ip": "198.51.100.10", "ipMode": "VIP"}])
    );
    // A second LoadBalancer gets the next address.
    k.ok(
        &["apply", "-f", "-"],
        Some(&LB_SERVICE.replace("name: gateway", "name: second")),
    );
    let second = eventually("the second Service has an address", || {
        let s = k.json(&["get", "svc", "second"]);
        s["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()
            .map(str::to_string)
    });
    assert_eq!(second, "198.51.100.11");
}

#[test]
fn token_secrets_get_a_token_once_their_service_account_exists() {
    let Some(k) = start() else { return };
    k.ok(&["apply", "-f", "-"], Some(&namespace("remote")));
    let secret = "apiVersion: v1
kind: Secret
metadata:
  name: reader-token
  namespace: remote
  annotations:
    kubernetes.io/service-account.name: reader
type: kubernetes.io/service-account-token
";
    k.ok(&["apply", "--server-side", "-f", "-"], Some(secret));
    let token = |k: &Kubectl| {
        k.ok(
            &[
                "get",
                "secret",
                "-n",
                "remote",
                "reader-token",
                "-o",
                "jsonpath={.data.token}",
            ],
            None,
        )
    };
    // No ServiceAccount, no token.
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert_eq!(token(&k), "");

    let sa =
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: reader\n  namespace: remote\n";
    k.ok(&["apply", "-f", "-"], Some(sa));
    let issued = eventually("the token is issued", || {
        Some(token(&k)).filter(|t| !t.is_empty())
    });
    let jwt =
        String::from_utf8(k8s_emulator::base64_decode(&issued).expect("base64")).expect("utf-8");
    assert_eq!(jwt.split('.').count(), 3, "{jwt}");
    let claims = jwt.split('.').nth(1).expect("claims");
    let claims: Value = serde_json::from_slice(
        &k8s_emulator::base64_decode(&claims.replace('-', "+").replace('_', "/"))
            .expect("base64url"),
    )
    .expect("claims are JSON");
    assert_eq!(claims["sub"], "system:serviceaccount:remote:reader");

    let s = k.json(&["get", "secret", "-n", "remote", "reader-token"]);
    let decoded = |key: &str| {
        String::from_utf8(
            k8s_emulator::base64_decode(s["data"][key].as_str().expect("data key"))
                .expect("base64"),
        )
        .expect("utf-8")
    };
    assert_eq!(decoded("ca.crt"), k8s_emulator::CLUSTER_CA_PEM);
    assert!(decoded("ca.crt").starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(decoded("namespace"), "remote");
    let sa = k.json(&["get", "sa", "-n", "remote", "reader"]);
    assert_eq!(
        s["metadata"]["annotations"]["kubernetes.io/service-account.uid"],
        sa["metadata"]["uid"]
    );

    // Applying the Secret again (it has no data) keeps what the controller issued:
    // kube-controller-manager owns those keys.
    k.ok(
        &["apply", "--server-side", "-f", "-"],
        Some(&secret.replace("  annotations:", "  labels: {team: mesh}\n  annotations:")),
    );
    assert_eq!(token(&k), issued);
    let s = k.json(&[
        "get",
        "secret",
        "-n",
        "remote",
        "reader-token",
        "--show-managed-fields",
    ]);
    assert_eq!(s["metadata"]["labels"]["team"], "mesh");
    let controller = s["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .find(|m| m["manager"] == "kube-controller-manager")
        .cloned()
        .expect("the token controller's entry");
    assert!(controller["fieldsV1"]["f:data"]["f:token"].is_object());
    assert!(controller["fieldsV1"]["f:data"]["f:ca.crt"].is_object());
}

const ISTIO: &str = "apiVersion: sailoperator.io/v1
kind: Istio
metadata:
  name: default
spec:
  namespace: istio-system
  version: v1.26.0
  values:
    global:
      meshID: mesh1
";

#[test]
fn sail_istio_objects_become_healthy_and_kubectl_prints_their_columns() {
    let Some(k) = start() else { return };
    let resources = k.ok(&["api-resources", "--api-group", "sailoperator.io"], None);
    let istios = resources
        .lines()
        .find(|l| l.starts_with("istios "))
        .unwrap_or_else(|| panic!("{resources}"));
    assert!(
        istios.contains("sailoperator.io/v1") && istios.contains("false"),
        "Istio is cluster-scoped: {istios}"
    );
    k.ok(&["apply", "-f", "-"], Some(&namespace("istio-system")));
    k.ok(&["apply", "--server-side", "-f", "-"], Some(ISTIO));
    let istio = eventually("the Istio is ready", || {
        let o = k.json(&["get", "istios.sailoperator.io", "default"]);
        o["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
            .then_some(o)
    });
    assert_eq!(istio["status"]["state"], "Healthy");
    let types: Vec<&str> = istio["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .filter_map(|c| c["type"].as_str())
        .collect();
    assert_eq!(types, vec!["Reconciled", "Ready", "DependenciesHealthy"]);
    assert_eq!(istio["status"]["activeRevisionName"], "default");
    assert_eq!(
        istio["status"]["revisions"],
        serde_json::json!({"total": 1, "ready": 1, "inUse": 0})
    );

    let table = k.ok(&["get", "istios.sailoperator.io"], None);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        vec![
            "NAME",
            "NAMESPACE",
            "PROFILE",
            "REVISIONS",
            "READY",
            "IN",
            "USE",
            "ACTIVE",
            "REVISION",
            "STATUS",
            "VERSION",
            "AGE"
        ],
        "{table}"
    );
    let row = table.lines().nth(1).unwrap_or("");
    assert!(
        row.starts_with("default ")
            && row.contains("istio-system")
            && row.contains("Healthy")
            && row.contains("v1.26.0"),
        "{table}"
    );
    let revisions = k.ok(&["get", "istiorev"], None);
    assert!(
        revisions
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("default ")
                && l.contains("True")
                && l.contains("Healthy")),
        "{revisions}"
    );

    // Applying the spec again keeps the status; a changed spec is reported on again.
    k.ok(
        &["apply", "--server-side", "-f", "-"],
        Some(&ISTIO.replace("v1.26.0", "v1.26.1")),
    );
    let istio = k.json(&["get", "istio", "default"]);
    assert_eq!(istio["status"]["state"], "Healthy");
    eventually("the new generation is observed", || {
        let o = k.json(&["get", "istio", "default"]);
        (o["status"]["observedGeneration"] == 2).then_some(())
    });
}

#[test]
fn istio_kinds_print_the_columns_of_their_crds() {
    let Some(k) = start() else { return };
    let vs = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts: [reviews.default.svc.cluster.local]
  gateways: [mesh]
";
    k.ok(&["apply", "-f", "-"], Some(vs));
    let table = k.ok(&["get", "vs"], None);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(header, vec!["NAME", "GATEWAYS", "HOSTS", "AGE"], "{table}");
    assert!(
        table.contains(r#"["mesh"]"#) && table.contains(r#"["reviews.default.svc.cluster.local"]"#),
        "{table}"
    );
    // The preferred version is v1, as on a cluster with Istio 1.31's CRDs.
    assert_eq!(
        k.json(&["get", "vs", "reviews"])["apiVersion"],
        "networking.istio.io/v1"
    );
    let pa = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: default
spec:
  mtls: {mode: STRICT}
";
    k.ok(&["apply", "-f", "-"], Some(pa));
    let table = k.ok(&["get", "pa"], None);
    assert!(
        table.lines().next().is_some_and(|h| h.contains("MODE"))
            && table.lines().nth(1).is_some_and(|r| r.contains("STRICT")),
        "{table}"
    );
    let scopes = k.ok(&["api-resources", "--api-group", "sailoperator.io"], None);
    for plural in ["istios", "istiorevisions", "istiocnis", "istiorevisiontags"] {
        let line = scopes
            .lines()
            .find(|l| l.starts_with(&format!("{plural} ")))
            .unwrap_or_else(|| panic!("{scopes}"));
        assert!(
            line.contains(" false "),
            "{plural} is cluster-scoped: {line}"
        );
    }
}

#[test]
fn a_deleted_namespace_shows_terminating_and_refuses_new_content() {
    let Some(k) = start_with(|o| {
        o.namespace_finalize_delay = Some(std::time::Duration::from_secs(3));
    }) else {
        return;
    };
    k.ok(&["apply", "-f", "-"], Some(&namespace("team")));
    let in_team = CONFIGMAP.replace("namespace: default", "namespace: team");
    k.ok(&["apply", "-f", "-"], Some(&in_team));

    let out = k.ok(&["delete", "ns", "team", "--wait=false"], None);
    assert!(out.contains("namespace \"team\" deleted"), "{out}");
    let table = k.ok(&["get", "ns", "team"], None);
    let row = table.lines().nth(1).unwrap_or_default().to_string();
    assert!(
        table.starts_with("NAME") && table.contains("STATUS"),
        "{table}"
    );
    assert_eq!(
        row.split_whitespace().take(2).collect::<Vec<_>>(),
        vec!["team", "Terminating"],
        "{table}"
    );
    let ns = k.json(&["get", "ns", "team"]);
    assert!(ns["metadata"]["deletionTimestamp"].is_string(), "{ns}");
    // What is in it is still there for now; nothing new goes in.
    assert_eq!(
        k.json(&["get", "cm", "demo", "-n", "team"])["data"]["key"],
        "one"
    );
    let late = k.run(
        &["apply", "-f", "-"],
        Some(&in_team.replace("name: demo", "name: late")),
    );
    assert!(!late.status.success());
    let err = String::from_utf8_lossy(&late.stderr);
    assert!(
        err.contains("Error from server (Forbidden)")
            && err.contains("configmaps \"late\" is forbidden: unable to create new content in namespace team because it is being terminated"),
        "{err}"
    );
    // Deleting it again is fine, and waiting for it ends when it is gone.
    k.ok(&["delete", "ns", "team", "--wait=false"], None);
    k.ok(&["delete", "ns", "team", "--ignore-not-found"], None);
    eventually("the namespace is gone", || {
        (!k.run(&["get", "ns", "team"], None).status.success()).then_some(())
    });
    assert!(k
        .emulator()
        .object("", "ConfigMap", "team", "demo")
        .is_none());
}

const APP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: app
  namespace: default
data:
  mode: blue
---
apiVersion: v1
kind: Service
metadata:
  name: app
  namespace: default
spec:
  selector: {app: app}
  ports:
  - {name: http, port: 80}
";

#[test]
fn create_replace_and_delete_from_files_use_json() {
    let Some(k) = start() else { return };
    k.emulator().clear_requests();
    let out = k.ok(&["create", "-f", "-"], Some(APP));
    assert!(
        out.contains("configmap/app created") && out.contains("service/app created"),
        "{out}"
    );
    // kubectl sends the objects of files as JSON (only its typed clients, as in
    // `kubectl create namespace x`, send protobuf).
    let posts: Vec<String> = k
        .emulator()
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.content_type)
        .collect();
    assert_eq!(posts, vec!["application/json", "application/json"]);
    let table = k.ok(&["get", "cm,svc", "app"], None);
    assert!(
        table.contains("configmap/app") && table.contains("service/app"),
        "{table}"
    );
    assert!(table.contains("80/TCP"), "{table}");
    let again = k.run(&["create", "-f", "-"], Some(APP));
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("AlreadyExists"));

    let out = k.ok(&["replace", "-f", "-"], Some(&APP.replace("blue", "green")));
    assert!(out.contains("configmap/app replaced"), "{out}");
    assert_eq!(k.json(&["get", "cm", "app"])["data"]["mode"], "green");

    let out = k.ok(&["delete", "-f", "-"], Some(APP));
    assert!(
        out.contains("configmap \"app\" deleted") && out.contains("service \"app\" deleted"),
        "{out}"
    );
    assert!(!k.run(&["get", "svc", "app"], None).status.success());
}

#[test]
fn bad_types_and_values_fail_as_a_real_server_words_them() {
    let Some(k) = start() else { return };
    let svc = "apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
spec:
  ports:
  - port: eighty
";
    let created = k.run(&["create", "-f", "-"], Some(svc));
    assert!(!created.status.success());
    let err = String::from_utf8_lossy(&created.stderr);
    assert!(
        err.contains("Error from server (BadRequest)")
            && err.contains("Service in version \"v1\" cannot be handled as a Service: json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port of type int32"),
        "{err}"
    );
    let applied = k.run(
        &["apply", "--server-side", "--dry-run=server", "-f", "-"],
        Some(svc),
    );
    assert!(!applied.status.success());
    let err = String::from_utf8_lossy(&applied.stderr);
    assert!(
        err.contains("failed to create typed patch object (default/web; /v1, Kind=Service): .spec.ports[0].port: expected numeric (int or float), got string"),
        "{err}"
    );

    let deploy = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: -1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - {name: web, image: nginx:1}
";
    let invalid = k.run(&["apply", "-f", "-"], Some(deploy));
    assert!(!invalid.status.success());
    let err = String::from_utf8_lossy(&invalid.stderr);
    assert!(
        err.contains("The Deployment \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
        "{err}"
    );
    let bad_name = k.run(&["apply", "-f", "-"], Some(&namespace("Team_A")));
    assert!(!bad_name.status.success());
    let err = String::from_utf8_lossy(&bad_name.stderr);
    assert!(
        err.contains("The Namespace \"Team_A\" is invalid: metadata.name: Invalid value: \"Team_A\": a lowercase RFC 1123 label"),
        "{err}"
    );
}

#[test]
fn create_subcommands_send_protobuf_that_the_emulator_reads_for_core_kinds() {
    let Some(k) = start() else { return };
    k.emulator().clear_requests();
    k.ok(&["create", "namespace", "team"], None);
    k.ok(
        &[
            "create",
            "configmap",
            "conf",
            "-n",
            "team",
            "--from-literal=mode=blue",
        ],
        None,
    );
    k.ok(
        &[
            "create",
            "secret",
            "generic",
            "pw",
            "-n",
            "team",
            "--from-literal=p=q",
        ],
        None,
    );
    k.ok(
        &[
            "create",
            "service",
            "clusterip",
            "web",
            "-n",
            "team",
            "--tcp=80:8080",
        ],
        None,
    );
    k.ok(&["create", "serviceaccount", "robot", "-n", "team"], None);
    let posts: Vec<String> = k
        .emulator()
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.content_type)
        .collect();
    assert_eq!(posts.len(), 5);
    assert!(
        posts
            .iter()
            .all(|c| c == "application/vnd.kubernetes.protobuf"),
        "{posts:?}"
    );
    assert_eq!(k.json(&["get", "ns", "team"])["status"]["phase"], "Active");
    assert_eq!(
        k.json(&["get", "cm", "conf", "-n", "team"])["data"]["mode"],
        "blue"
    );
    assert_eq!(
        k.json(&["get", "secret", "pw", "-n", "team"])["data"]["p"],
        k8s_emulator::base64(b"q")
    );
    let svc = k.json(&["get", "svc", "web", "-n", "team"]);
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(svc["spec"]["selector"]["app"], "web");
    assert!(svc["spec"]["clusterIP"]
        .as_str()
        .is_some_and(|ip| ip.starts_with("10.96.")));
    let cm = k.json(&["get", "cm", "conf", "-n", "team", "--show-managed-fields"]);
    assert_eq!(
        cm["metadata"]["managedFields"][0]["manager"],
        "kubectl-create"
    );
    // Other kinds' protobuf is refused, saying so.
    let deploy = k.run(&["create", "deployment", "d", "--image=nginx"], None);
    assert!(!deploy.status.success());
    let err = String::from_utf8_lossy(&deploy.stderr);
    assert!(err.contains("not apps/v1 Deployment"), "{err}");
}
