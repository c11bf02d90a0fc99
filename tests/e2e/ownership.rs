//! Whose an object is: dcm's marks on what it creates, two projects on one cluster, a
//! pre-existing object, an object someone else made again, and a lost state.

use super::harness::{Project, Run};
use k8s_emulator::harness::Clusters;
use k8s_emulator::Request;
use serde_json::{json, Value};

const SHOP: &str = r#"
[clusters.cluster1]
context = "cluster1"

[[resources]]
name = "namespace"
clusters = ["cluster1"]
manifest = { apiVersion = "v1", kind = "Namespace", metadata = { name = "shop" } }

[[resources]]
name = "settings"
clusters = ["cluster1"]
manifest = { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "settings", namespace = "shop" }, data = { greeting = "hello" } }
depends_on = ["resources.namespace"]
"#;

/// SHOP without its ConfigMap.
const NAMESPACE_ONLY: &str = r#"
[clusters.cluster1]
context = "cluster1"

[[resources]]
name = "namespace"
clusters = ["cluster1"]
manifest = { apiVersion = "v1", kind = "Namespace", metadata = { name = "shop" } }
"#;

/// SHOP's ConfigMap alone (its namespace is someone else's).
const SETTINGS_ONLY: &str = r#"
[clusters.cluster1]
context = "cluster1"

[[resources]]
name = "settings"
clusters = ["cluster1"]
manifest = { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "settings", namespace = "shop" }, data = { greeting = "hello" } }
"#;

/// A project beside an emulated cluster; `state` names its state file.
struct Team {
    p: Project,
    clusters: Clusters,
}

impl Team {
    fn new(file: &str) -> Team {
        let p = Project::new();
        p.write("dcm.toml", file);
        let clusters = Clusters::start(1, p.dir.path()).expect("start an emulated cluster");
        Team { p, clusters }
    }

    fn dcm(&self, state: &str, args: &[&str]) -> Run {
        let kubeconfig = self.clusters.kubeconfig.display().to_string();
        let mut all = vec!["--kubeconfig", kubeconfig.as_str(), "--state", state];
        all.extend_from_slice(args);
        self.p.dcm(&all)
    }

    fn cluster(&self) -> &k8s_emulator::Emulator {
        self.clusters.get("cluster1").expect("cluster1")
    }

    fn settings(&self) -> Option<Value> {
        self.cluster().object("", "ConfigMap", "shop", "settings")
    }

    fn lineage(&self, state: &str) -> String {
        let s: Value = serde_json::from_str(&self.p.read(state)).expect("a state");
        s["lineage"].as_str().expect("lineage").to_string()
    }
}

fn request(e: &k8s_emulator::Emulator, method: &str, path: &str, body: Value) -> Value {
    let resp = e.handle(&Request {
        method: method.into(),
        path: path.into(),
        content_type: "application/json".into(),
        user_agent: "kubectl/v1.32.0".into(),
        body: body.to_string().into_bytes(),
        ..Default::default()
    });
    assert!(resp.status < 300, "{method} {path}: {}", resp.body);
    resp.body
}

#[test]
fn what_dcm_creates_carries_its_marks_and_kubectl_finds_it_by_them() {
    let t = Team::new(SHOP);
    t.dcm("a.json", &["apply", "--auto-approve"]).expect(0);
    let lineage = t.lineage("a.json");
    let cm = t.settings().expect("settings");
    assert_eq!(
        cm["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "dcm"
    );
    assert_eq!(cm["metadata"]["labels"]["dcm.io/lineage"], lineage.as_str());
    assert_eq!(
        cm["metadata"]["annotations"]["dcm.io/address"],
        "cluster1/core/ConfigMap/shop/settings"
    );
    let state: Value = serde_json::from_str(&t.p.read("a.json")).unwrap();
    let entry = state["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "settings")
        .unwrap()
        .clone();
    assert_eq!(entry["uid"], cm["metadata"]["uid"]);
    // A client dcm did not write sees them.
    let out = std::process::Command::new("/usr/bin/kubectl")
        .args([
            "--kubeconfig",
            &t.clusters.kubeconfig.display().to_string(),
            "--context",
            "cluster1",
            "get",
            "configmaps,namespaces",
            "-A",
            "-l",
            &format!("dcm.io/lineage={lineage}"),
            "-o",
            "name",
        ])
        .output()
        .expect("run kubectl");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        ["configmap/settings", "namespace/shop"],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The marks are not differences: a re-plan is clean.
    t.dcm("a.json", &["plan", "--detailed-exitcode"]).expect(0);
}

#[test]
fn two_projects_on_one_cluster_never_take_each_other_s_objects() {
    let t = Team::new(SHOP);
    t.dcm("a.json", &["apply", "--auto-approve"]).expect(0);
    let a = t.lineage("a.json");
    // Project B declares the same namespace and ConfigMap, with its own state.
    let before = t.cluster().resource_version();
    let plan = t.dcm("b.json", &["plan"]).expect(1);
    assert!(
        plan.stderr
            .contains("cluster1/core/ConfigMap/shop/settings")
            && plan
                .stderr
                .contains(&format!("another dcm state (lineage {a})"))
            && plan
                .stderr
                .contains("--take-over cluster1/core/ConfigMap/shop/settings"),
        "{}",
        plan.stderr
    );
    t.dcm("b.json", &["apply", "--auto-approve"]).expect(1);
    assert_eq!(t.cluster().resource_version(), before, "B wrote nothing");
    assert!(!t.p.exists("b.json"), "B recorded nothing");

    // B takes the ConfigMap over, on purpose; A then sees it is no longer its own.
    t.p.write("b.toml", SETTINGS_ONLY);
    let b_file = ["-f", "b.toml"];
    let take = [
        "apply",
        "--auto-approve",
        "--take-over",
        "cluster1/core/ConfigMap/shop/settings",
    ];
    let args: Vec<&str> = take.iter().chain(&b_file).copied().collect();
    t.dcm("b.json", &args).expect(0);
    let b = t.lineage("b.json");
    assert_eq!(
        t.settings().unwrap()["metadata"]["labels"]["dcm.io/lineage"],
        b.as_str()
    );
    let plan = t.dcm("a.json", &["plan"]).expect(1);
    assert!(
        plan.stderr.contains(&format!(
            "another dcm state (lineage {b}) has taken it over"
        )),
        "{}",
        plan.stderr
    );
    // A dropping it from its file forgets it; B's object is never deleted by A.
    t.p.write("dcm.toml", NAMESPACE_ONLY);
    let plan = t.dcm("a.json", &["plan"]).expect(0);
    assert!(
        plan.stdout.contains(
            "cluster1/core/ConfigMap/shop/settings will be removed from the state (it stays in the cluster)"
        ),
        "{}",
        plan.stdout
    );
    t.dcm("a.json", &["apply", "--auto-approve"]).expect(0);
    assert!(t.settings().is_some());
    t.dcm("b.json", &["plan", "--detailed-exitcode", "-f", "b.toml"])
        .expect(0);
}

#[test]
fn an_object_someone_else_made_again_is_never_changed_or_deleted() {
    let t = Team::new(SHOP);
    t.dcm("a.json", &["apply", "--auto-approve"]).expect(0);
    let e = t.cluster();
    let old = t.settings().unwrap();
    // Someone deletes it and makes one of the same name, copying every label.
    request(
        e,
        "DELETE",
        "/api/v1/namespaces/shop/configmaps/settings",
        json!({}),
    );
    let mut copy = old.clone();
    for f in [
        "uid",
        "resourceVersion",
        "managedFields",
        "creationTimestamp",
    ] {
        copy["metadata"].as_object_mut().unwrap().remove(f);
    }
    copy["data"]["greeting"] = json!("theirs");
    request(e, "POST", "/api/v1/namespaces/shop/configmaps", copy);
    let plan = t.dcm("a.json", &["plan"]).expect(1);
    assert!(
        plan.stderr.contains("deleted and made again outside dcm"),
        "{}",
        plan.stderr
    );
    t.p.write("dcm.toml", NAMESPACE_ONLY);
    t.dcm("a.json", &["apply", "--auto-approve"]).expect(0);
    assert_eq!(
        t.settings().expect("theirs stays")["data"]["greeting"],
        "theirs"
    );
}

#[test]
fn a_pre_existing_object_is_refused_then_imported_and_keeps_what_others_set() {
    let t = Team::new(SHOP);
    let e = t.cluster();
    request(
        e,
        "POST",
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"team": "payments"}}}),
    );
    let plan = t.dcm("a.json", &["plan"]).expect(1);
    assert!(
        plan.stdout
            .contains("! cluster1/core/Namespace/_cluster/shop exists and is not dcm's to change")
            && plan
                .stderr
                .contains("dcm import cluster1/core/Namespace/_cluster/shop"),
        "{}\n{}",
        plan.stdout,
        plan.stderr
    );
    t.dcm(
        "a.json",
        &["import", "cluster1/core/Namespace/_cluster/shop"],
    )
    .expect(0);
    t.dcm("a.json", &["apply", "--auto-approve"]).expect(0);
    let ns = e.object("", "Namespace", "", "shop").unwrap();
    assert_eq!(ns["metadata"]["labels"]["team"], "payments");
    assert_eq!(
        ns["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "dcm"
    );
    // A lost state comes back with the namespace still imported, not created.
    std::fs::remove_file(t.p.path("a.json")).unwrap();
    t.dcm("a.json", &["state", "recover"]).expect(0);
    let state: Value = serde_json::from_str(&t.p.read("a.json")).unwrap();
    let ns_entry = state["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "Namespace")
        .unwrap()
        .clone();
    assert_eq!(ns_entry["origin"], "adopted", "{ns_entry}");
    // Imported, it is forgotten rather than deleted when dcm lets go of it.
    t.dcm("a.json", &["destroy", "--auto-approve"]).expect(0);
    assert!(e.object("", "Namespace", "", "shop").is_some());
    assert!(t.settings().is_none());
}

#[test]
fn a_lost_state_is_recovered_from_the_marks_and_destroy_works_again() {
    let t = Team::new(SHOP);
    t.dcm("a.json", &["apply", "--auto-approve"]).expect(0);
    let lineage = t.lineage("a.json");
    std::fs::remove_file(t.p.path("a.json")).unwrap();
    // Without its state, dcm does not know these are its own: it refuses, and says how
    // to get the state back.
    let plan = t.dcm("a.json", &["plan"]).expect(1);
    assert!(plan.stderr.contains("dcm state recover"), "{}", plan.stderr);
    let recovered = t.dcm("a.json", &["state", "recover"]).expect(0);
    assert!(
        recovered
            .stdout
            .contains(&format!("Recovered 2 objects of lineage {lineage}")),
        "{}",
        recovered.stdout
    );
    assert_eq!(t.lineage("a.json"), lineage);
    t.dcm("a.json", &["plan", "--detailed-exitcode"]).expect(0);
    // A second recover never replaces the state.
    t.dcm("a.json", &["state", "recover"]).expect(1);
    t.dcm("a.json", &["destroy", "--auto-approve"]).expect(0);
    assert!(t.settings().is_none());
    assert!(t.cluster().object("", "Namespace", "", "shop").is_none());
}

#[test]
fn other_applications_secrets_are_never_read() {
    let t = Team::new(&format!(
        "{SHOP}\n[[resources]]\nname = \"db\"\nclusters = [\"cluster1\"]\nmanifest = {{ apiVersion = \"v1\", kind = \"Secret\", metadata = {{ name = \"db\", namespace = \"shop\" }}, stringData = {{ password = \"ours\" }} }}\ndepends_on = [\"resources.namespace\"]\n"
    ));
    t.dcm("a.json", &["apply", "--auto-approve"]).expect(0);
    let e = t.cluster();
    // Another application's Secret beside dcm's, and one that takes a name the file
    // wants next.
    for name in ["other-app-db", "cache"] {
        request(
            e,
            "POST",
            "/api/v1/namespaces/shop/secrets",
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                   "stringData": {"password": "THEIR-SECRET-VALUE"}}),
        );
    }
    t.p.write(
        "dcm.toml",
        &format!(
            "{}\n[[resources]]\nname = \"cache\"\nclusters = [\"cluster1\"]\nmanifest = {{ apiVersion = \"v1\", kind = \"Secret\", metadata = {{ name = \"cache\", namespace = \"shop\" }}, stringData = {{ password = \"ours-too\" }} }}\n",
            t.p.read("dcm.toml")
        ),
    );
    e.clear_requests();
    let plan = t.dcm("a.json", &["plan"]).expect(1);
    assert!(
        plan.stdout
            .contains("! cluster1/core/Secret/shop/cache exists and is not dcm's to change"),
        "{}",
        plan.stdout
    );
    let secret_reads: Vec<_> = e
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.contains("/secrets"))
        .collect();
    assert!(!secret_reads.is_empty());
    for r in &secret_reads {
        let labelled = r.query.contains("labelSelector=app.kubernetes.io")
            || r.query.contains("labelSelector=dcm.io");
        let metadata_only = r.accept.contains("as=PartialObjectMetadata");
        assert!(
            labelled || metadata_only,
            "a read of Secrets that could return another application's data: {r:?}"
        );
    }
}

#[test]
fn a_context_that_now_reaches_another_cluster_is_refused_before_any_write() {
    let t = Team::new(SHOP);
    t.dcm("a.json", &["apply", "--auto-approve"]).expect(0);
    let state: Value = serde_json::from_str(&t.p.read("a.json")).unwrap();
    let recorded = state["clusters"]["cluster1"]["kube_system_uid"]
        .as_str()
        .expect("the cluster's identity is recorded")
        .to_string();
    // The same context name, another cluster (a rebuilt one, or a kubeconfig mix-up).
    let elsewhere = tempfile::tempdir().unwrap();
    let other = Clusters::start(1, elsewhere.path()).expect("start another cluster");
    let kubeconfig = other.kubeconfig.display().to_string();
    let plan =
        t.p.dcm(&["--kubeconfig", &kubeconfig, "--state", "a.json", "plan"]);
    let plan = plan.expect(1);
    assert!(
        plan.stderr.contains("cluster `cluster1` is now")
            && plan.stderr.contains(&recorded)
            && plan.stderr.contains("nothing was changed"),
        "{}",
        plan.stderr
    );
    let e = other.get("cluster1").unwrap();
    let before = e.resource_version();
    t.p.dcm(&[
        "--kubeconfig",
        &kubeconfig,
        "--state",
        "a.json",
        "apply",
        "--auto-approve",
    ])
    .expect(1);
    assert_eq!(e.resource_version(), before, "nothing was written there");
    assert!(e.object("", "Namespace", "", "shop").is_none());
    // The cluster it was stays fine.
    t.dcm("a.json", &["plan", "--detailed-exitcode"]).expect(0);
}

#[test]
fn an_import_with_take_over_holds_and_wrong_take_over_or_managed_by_is_refused() {
    let t = Team::new(SHOP);
    t.dcm("a.json", &["apply", "--auto-approve"]).expect(0);
    // C imports A's objects on purpose; its next plan and apply take them over quietly.
    t.dcm(
        "c.json",
        &[
            "import",
            "cluster1/core/Namespace/_cluster/shop",
            "cluster1/core/ConfigMap/shop/settings",
        ],
    )
    .expect(1);
    t.dcm(
        "c.json",
        &[
            "import",
            "--take-over",
            "cluster1/core/Namespace/_cluster/shop",
            "cluster1/core/ConfigMap/shop/settings",
        ],
    )
    .expect(0);
    t.dcm("c.json", &["apply", "--auto-approve"]).expect(0);
    let c = t.lineage("c.json");
    assert_eq!(
        t.settings().unwrap()["metadata"]["labels"]["dcm.io/lineage"],
        c.as_str()
    );
    t.dcm("c.json", &["plan", "--detailed-exitcode"]).expect(0);

    // A --take-over of an address the file does not declare is a mistake, not a no-op.
    let wrong = t
        .dcm(
            "a.json",
            &[
                "plan",
                "--take-over",
                "cluster1/core/ConfigMap/shop/setings",
            ],
        )
        .expect(1);
    assert!(
        wrong.stderr.contains("--take-over names"),
        "{}",
        wrong.stderr
    );

    // A manifest may not claim another tool manages what dcm is asked to manage.
    t.p.write(
        "dcm.toml",
        &SHOP.replace(
            "metadata = { name = \"settings\", namespace = \"shop\" }",
            "metadata = { name = \"settings\", namespace = \"shop\", labels = { \"app.kubernetes.io/managed-by\" = \"Helm\" } }",
        ),
    );
    let bad = t.dcm("a.json", &["validate"]).expect(1);
    assert!(
        bad.stderr.contains("app.kubernetes.io/managed-by: Helm"),
        "{}",
        bad.stderr
    );
}
