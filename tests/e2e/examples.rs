//! The examples in `examples/`, applied on directory targets as the README says: they
//! converge, their compiled objects match the golden files in `tests/golden/`, every object
//! validates against the upstream schemas, and the set-ups they show (the jason route, the
//! primary-remote mesh) come out as Istio needs them.

use super::harness::{base64_decode, Project};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Copies a directory tree.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// The example files, sorted.
fn examples() -> Vec<String> {
    let mut tomls: Vec<String> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    tomls.sort();
    tomls
}

/// A project laid out like `examples/`, with `live/` (the stock CoreDNS ConfigMaps) copied
/// to the example's own output directory `out/<example>/`, as the README's first command
/// does.
pub fn example_project(toml: &str) -> Project {
    let root = repo().join("examples");
    let mut p = Project::new();
    p.out = format!("out/{}", toml.trim_end_matches(".toml"));
    for dir in ["manifests", "certs"] {
        copy_tree(&root.join(dir), &p.path(dir));
    }
    copy_tree(&root.join("live"), &p.path(&p.out));
    std::fs::copy(root.join(toml), p.path(toml)).unwrap();
    p
}

fn yaml(p: &Project, rel: &str) -> Value {
    serde_yaml_ng::from_str(&p.read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn every_example_applies_and_converges() {
    let tomls = examples();
    for want in [
        "logical-clouds.toml",
        "primary-remote.toml",
        "two-clusters-bookinfo.toml",
    ] {
        assert!(tomls.iter().any(|t| t == want), "{want} in {tomls:?}");
    }
    for toml in tomls {
        let p = example_project(&toml);
        p.dcm(&["validate", "-f", &toml]).expect(0);
        p.dcm(&["apply", "--auto-approve", "-f", &toml]).expect(0);
        p.dcm(&["plan", "--detailed-exitcode", "-f", &toml])
            .expect(0);
        p.dcm(&["drift", "-f", &toml]).expect(0);
    }
}

/// All objects of an applied example as one text: each file under its `out/<example>/`
/// with its path.
/// Secret values are replaced by a short hash, so the golden files hold no key material
/// but still change when a Secret does; the state's lineage (random) by `(lineage)`.
fn rendered(p: &Project) -> String {
    let mut out = String::new();
    for rel in p.files(&p.out) {
        let mut text: String = p
            .read(&format!("{}/{rel}", p.out))
            .lines()
            .map(|l| match l.split_once("dcm.io/lineage: ") {
                Some((indent, _)) => format!("{indent}dcm.io/lineage: (lineage)\n"),
                None => format!("{l}\n"),
            })
            .collect();
        let mut v: Value = serde_yaml_ng::from_str(&text).unwrap();
        if v["kind"] == "Secret" {
            if let Some(data) = v["data"].as_object_mut() {
                for value in data.values_mut() {
                    let sha = hex_sha256(value.as_str().unwrap_or_default().as_bytes());
                    *value = Value::String(format!("(redacted, sha256:{})", &sha[..12]));
                }
            }
            text = serde_yaml_ng::to_string(&v).unwrap();
        }
        out.push_str(&format!("# {rel}\n{text}---\n"));
    }
    out
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Golden tests: what each example compiles to. When a change to the compiler is meant,
/// re-run with `DCM_UPDATE_GOLDEN=1` and review the diff of `tests/golden/`.
#[test]
fn compiled_objects_of_every_example_match_the_golden_files() {
    let update = std::env::var_os("DCM_UPDATE_GOLDEN").is_some();
    let mut stale = Vec::new();
    for toml in examples() {
        let p = example_project(&toml);
        p.dcm(&["apply", "--auto-approve", "-f", &toml]).expect(0);
        let got = rendered(&p);
        let golden = repo()
            .join("tests/golden")
            .join(toml.replace(".toml", ".yaml"));
        if update {
            std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        if got != want {
            let diff = similar::TextDiff::from_lines(&want, &got)
                .unified_diff()
                .header("golden", "compiled")
                .to_string();
            stale.push(format!("{}:\n{diff}", golden.display()));
        }
    }
    assert!(
        stale.is_empty(),
        "compiled objects differ from the golden files (DCM_UPDATE_GOLDEN=1 rewrites them):\n{}",
        stale.join("\n")
    );
}

/// Core kinds, strictly: the object survives a round trip through k8s-openapi's types
/// (generated from Kubernetes' OpenAPI schema) unchanged, so it has no unknown or
/// misplaced field and every value has the schema's type.
fn strict_core_check(object: &Value) -> Option<Result<(), String>> {
    use k8s_openapi::api::{apps::v1 as apps, core::v1 as core};
    fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(
        object: &Value,
    ) -> Result<(), String> {
        let typed: T = serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
        let back = serde_json::to_value(typed).map_err(|e| e.to_string())?;
        if &back == object {
            Ok(())
        } else {
            Err(format!(
                "not as the schema has it; after a round trip through the typed object:\n{}",
                serde_yaml_ng::to_string(&back).unwrap_or_default()
            ))
        }
    }
    let api_version = object["apiVersion"].as_str()?;
    let kind = object["kind"].as_str()?;
    Some(match (api_version, kind) {
        ("v1", "Namespace") => round_trip::<core::Namespace>(object),
        ("v1", "Secret") => round_trip::<core::Secret>(object),
        ("v1", "ConfigMap") => round_trip::<core::ConfigMap>(object),
        ("v1", "Service") => round_trip::<core::Service>(object),
        ("apps/v1", "Deployment") => round_trip::<apps::Deployment>(object),
        _ => return None,
    })
}

/// The schema check in `tools/schema-check`: the Istio and Sail Operator kinds against the
/// CRDs of the Istio release dcm targets (`istio_crds`), the other kinds against Kubernetes'
/// OpenAPI schema and the older Istio schemas of the kubernetes-models packages. Its packages
/// are installed once from the lock file when missing. Without node and npm the check is
/// skipped with a note (`None`), except in CI, where that fails.
pub(super) fn schema_check_script() -> Option<PathBuf> {
    static INSTALLED: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let tool = repo().join("tools/schema-check");
            let have = |cmd: &str| {
                Command::new(cmd)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            };
            if !have("node") || !have("npm") {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI needs node and npm for the schema check (.ci/run installs them)"
                );
                eprintln!("note: node or npm is missing; skipping the upstream schema check");
                return None;
            }
            if !tool.join("node_modules").exists() {
                let out = Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                    .current_dir(&tool)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "npm ci in tools/schema-check failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Some(tool.join("check.mjs"))
        })
        .clone()
}

/// The CRDs of the Istio release dcm targets, outside the repository: `shared/` lies beside
/// the checkout (CI clones it so). Without them the check is skipped with a note (`None`),
/// except in CI, where that fails.
fn istio_crds() -> Option<PathBuf> {
    let dir = repo().join("../shared/schemas/istio-1.31");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI needs the Istio CRDs for the schema check at {}",
        dir.display()
    );
    eprintln!(
        "note: no Istio CRDs at {}; skipping the upstream schema check",
        dir.display()
    );
    None
}

/// Runs the schema check on directories: its exit code and report.
fn upstream_schema_check(dirs: &[PathBuf]) -> Option<(Option<i32>, String)> {
    let script = schema_check_script()?;
    let crds = istio_crds()?;
    let out = Command::new("node")
        .arg(script)
        .arg("--crds")
        .arg(crds)
        .args(dirs)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.code(), report))
}

#[test]
fn every_generated_object_validates_against_the_upstream_schemas() {
    let mut projects = Vec::new();
    let mut dirs = Vec::new();
    let mut objects = 0;
    let mut strict = 0;
    for toml in examples() {
        let p = example_project(&toml);
        p.dcm(&["apply", "--auto-approve", "-f", &toml]).expect(0);
        for cluster in std::fs::read_dir(p.path(&p.out)).unwrap().flatten() {
            let name = cluster.file_name().to_string_lossy().to_string();
            for rel in p.files(&format!("{}/{name}", p.out)) {
                let v = yaml(&p, &format!("{}/{name}/{rel}", p.out));
                objects += 1;
                if let Some(result) = strict_core_check(&v) {
                    strict += 1;
                    if let Err(why) = result {
                        panic!("{toml}: {name}/{rel}: {why}");
                    }
                }
            }
            dirs.push(cluster.path());
        }
        projects.push(p);
    }
    assert!(
        objects > 100 && strict > 20,
        "{objects} objects, {strict} core"
    );
    if let Some((code, report)) = upstream_schema_check(&dirs) {
        assert!(
            code == Some(0) && report.contains(&format!("{objects} objects valid, 0 invalid")),
            "objects fail the upstream schemas:\n{report}"
        );
    }
}

#[test]
fn the_schema_check_rejects_what_the_schemas_forbid() {
    let p = Project::new();
    // Checked against the CRDs in shared/schemas/istio-1.31.
    p.write(
        "bad/sail-istio.yaml",
        "apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata: {name: lc1}\nspec:\n  version: v1.31-latest\n  namespace: istio-lc1\n  values:\n    global: {meshId: mesh1}\n",
    );
    // The CRD's spec.version enum has v1.31-latest and v1.31.0-beta.1, not v1.31.0.
    p.write(
        "bad/sail-version.yaml",
        "apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata: {name: lc1}\nspec: {version: v1.31.0, namespace: istio-lc1}\n",
    );
    p.write(
        "bad/dr.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: a\n  trafficPolicy:\n    connectionPool: {tcp: {maxConnections: 5}}\n    loadBalancr: {simple: ROUND_ROBIN}\n",
    );
    p.write(
        "bad/dr-tls.yaml",
        "apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: a\n  trafficPolicy: {tls: {mode: MUTUALLY}}\n",
    );
    p.write(
        "bad/gw.yaml",
        "apiVersion: networking.istio.io/v1alpha2\nkind: Gateway\nmetadata: {name: g}\nspec:\n  selector: {istio: ingressgateway}\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [\"*\"]}]\n",
    );
    p.write(
        "bad/vs.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec:\n  hosts: [a]\n  http: [{route: [{destination: {host: a}, weight: \"50\"}]}]\n",
    );
    // A oneOf (one match kind), a maximum, a nullable field, a map's values, a label's type.
    p.write(
        "bad/vs-match.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, labels: {app.kubernetes.io/name: 5}}\nspec:\n  hosts: [a]\n  http: [{match: [{uri: {exact: /a, prefix: /b}}], route: [{destination: {host: a, port: {number: 4294967296}}}]}]\n",
    );
    p.write(
        "bad/dr-locality.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: a\n  trafficPolicy:\n    loadBalancer:\n      localityLbSetting: {enabled: null, distribute: [{from: a, to: {b: x}}]}\n",
    );
    // Not in the CRD directory: the packaged schemas.
    p.write(
        "bad/secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {a: 5}\n",
    );
    p.write(
        "bad/thing.yaml",
        "apiVersion: example.com/v1\nkind: Thing\nmetadata: {name: t}\n",
    );
    p.write(
        "good/sail-istio.yaml",
        "apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata: {name: lc1}\nspec:\n  version: v1.31-latest\n  namespace: istio-lc1\n  values:\n    global:\n      meshID: mesh1\n      multiCluster: {clusterName: cluster1}\n      network: network1\n    meshConfig:\n      discoverySelectors: [{matchLabels: {dcm.io/logical-cloud: lc1}}]\n    pilot: {resources: {requests: {cpu: 500m, memory: 2Gi}, limits: {cpu: 1}}}\n",
    );
    p.write(
        "good/gateway.yaml",
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: cross-network-gateway, namespace: istio-lc1}\nspec:\n  selector: {istio: eastwestgateway}\n  servers:\n  - port: {number: 15443, name: tls, protocol: TLS}\n    tls: {mode: AUTO_PASSTHROUGH}\n    hosts: [\"*.local\"]\n",
    );
    p.write(
        "good/dr.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: a\n  trafficPolicy:\n    loadBalancer:\n      consistentHash: {httpHeaderName: x, ringHash: {minimumRingSize: 1024}}\n      localityLbSetting: {enabled: null, distribute: [{from: a, to: {b: 80}}]}\n",
    );
    p.write(
        "good/istio-operator.yaml",
        "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nmetadata: {name: lc1}\nspec: {profile: minimal, values: {global: {meshID: mesh1}}}\n",
    );
    let bad_namespace = serde_json::json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "n" }, "spec": { "finalizerz": [] } });
    assert!(strict_core_check(&bad_namespace).unwrap().is_err());
    let Some((code, stdout)) = upstream_schema_check(&[p.path("good")]) else {
        return;
    };
    assert!(
        code == Some(0) && stdout.contains("4 objects valid, 0 invalid"),
        "{stdout}"
    );
    let (code, stdout) = upstream_schema_check(&[p.path("bad")]).unwrap();
    assert_eq!(code, Some(1), "{stdout}");
    for want in [
        "sail-istio.yaml: sailoperator.io/v1 Istio: spec.values.global.meshId: unknown field",
        "sail-version.yaml: sailoperator.io/v1 Istio: spec.version: must be one of \"v1.31-latest\", \"v1.31.0-beta.1\",",
        "dr.yaml: networking.istio.io/v1 DestinationRule: spec.trafficPolicy.loadBalancr: unknown field",
        "dr-tls.yaml: networking.istio.io/v1beta1 DestinationRule: spec.trafficPolicy.tls.mode: must be one of \"DISABLE\", \"SIMPLE\", \"MUTUAL\", \"ISTIO_MUTUAL\"",
        "gw.yaml: networking.istio.io/v1alpha2 Gateway: version v1alpha2 is not served by the Gateway CRD, which serves v1, v1alpha3, v1beta1",
        "vs.yaml: networking.istio.io/v1 VirtualService: spec.http[0].route[0].weight: must be integer",
        "spec.http[0].match[0].uri: at most one of exact, prefix, regex may be set",
        "spec.http[0].route[0].destination.port.number: must be <= 4294967295",
        "metadata.labels[\"app.kubernetes.io/name\"]: must be string",
        "dr-locality.yaml: networking.istio.io/v1 DestinationRule: spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to.b: must be integer",
        "secret.yaml: v1 Secret: data.a: must be string",
        "thing.yaml: no upstream schema for example.com/v1 Thing",
        "CEL rules (x-kubernetes-validations) are not checked",
        "0 objects valid, 10 invalid",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    assert!(
        !stdout.contains("enabled"),
        "a nullable field may be null:\n{stdout}"
    );
}

#[test]
fn the_jason_route_sends_jason_to_v2_and_v3_in_cluster2_and_the_rest_to_local_v1() {
    let toml = "two-clusters-bookinfo.toml";
    let p = example_project(toml);
    p.dcm(&["apply", "--auto-approve", "-f", toml]).expect(0);
    let vs = yaml(
        &p,
        "out/two-clusters-bookinfo/cluster1/bookinfo/virtualservice.networking.istio.io/reviews-bookinfo-lc1.yaml",
    );
    // The route holds for the service's own name and for its cloud name.
    assert_eq!(
        vs["spec"]["hosts"],
        serde_json::json!(["reviews.bookinfo.svc.cluster.local", "reviews.bookinfo.lc1"])
    );
    assert_eq!(vs["metadata"]["labels"]["istio.io/rev"], "lc1");
    let http = &vs["spec"]["http"];
    assert_eq!(
        http[0]["match"],
        serde_json::json!([{ "headers": { "end-user": { "exact": "jason" } } }])
    );
    assert_eq!(
        http[0]["route"],
        serde_json::json!([
            { "destination": { "host": "reviews.bookinfo.svc.cluster.local", "subset": "v2" }, "weight": 50 },
            { "destination": { "host": "reviews.bookinfo.svc.cluster.local", "subset": "v3" }, "weight": 50 }
        ])
    );
    assert_eq!(
        http[1],
        serde_json::json!({ "route": [{ "destination": { "host": "reviews.bookinfo.svc.cluster.local", "subset": "v1" } }] })
    );
    // Both control planes discover both clusters' endpoints, so a subset is the service's
    // pods with its labels in its cluster; the rule is in both clusters, since cluster2's
    // east-west gateway resolves the subset in the SNI with it.
    let want = serde_json::json!([
        { "name": "v1", "labels": { "version": "v1", "topology.istio.io/cluster": "cluster1" } },
        { "name": "v2", "labels": { "version": "v2", "topology.istio.io/cluster": "cluster2" } },
        { "name": "v3", "labels": { "version": "v3", "topology.istio.io/cluster": "cluster2" } }
    ]);
    for c in ["cluster1", "cluster2"] {
        let rule = yaml(
            &p,
            &format!("out/two-clusters-bookinfo/{c}/bookinfo/destinationrule.networking.istio.io/reviews-bookinfo-lc1-subsets.yaml"),
        );
        assert_eq!(rule["spec"]["host"], "reviews.bookinfo.svc.cluster.local");
        assert_eq!(rule["spec"]["subsets"], want, "{c}");
    }
    // The cloud name resolves everywhere: the local service where it runs, the other
    // cluster's east-west gateway otherwise.
    let se = yaml(
        &p,
        "out/two-clusters-bookinfo/cluster1/bookinfo/serviceentry.networking.istio.io/reviews-bookinfo-lc1.yaml",
    );
    assert_eq!(
        se["spec"]["hosts"],
        serde_json::json!(["reviews.bookinfo.lc1"])
    );
    assert_eq!(
        se["spec"]["endpoints"],
        serde_json::json!([
            { "address": "reviews.bookinfo.svc.cluster.local", "ports": { "http": 9080 }, "labels": { "dcm.io/cluster": "cluster1" } },
            { "address": "192.0.2.20", "ports": { "http": 15443 }, "labels": { "dcm.io/cluster": "cluster2" } }
        ])
    );
    // The route is for cluster1's clients only.
    assert!(
        !p.exists("out/two-clusters-bookinfo/cluster2/bookinfo/virtualservice.networking.istio.io")
    );

    // Shifting the weights changes the VirtualService and nothing else.
    p.edit(
        toml,
        "weight = 50 }, { subset = \"v3\", weight = 50",
        "weight = 80 }, { subset = \"v3\", weight = 20",
    );
    let plan = p
        .dcm(&["plan", "--detailed-exitcode", "-f", toml])
        .expect(2);
    assert!(
        plan.stdout.contains("Plan: 0 to add, 1 to change, 0 to destroy.")
            && plan.stdout.contains(
                "~ cluster1/networking.istio.io/VirtualService/bookinfo/reviews-bookinfo-lc1 will be updated in place"
            ),
        "{}",
        plan.stdout
    );
    p.dcm(&["apply", "--auto-approve", "-f", toml]).expect(0);
    p.dcm(&["plan", "--detailed-exitcode", "-f", toml])
        .expect(0);

    // Weights that do not add up are refused before anything is touched.
    p.edit(toml, "weight = 80 }", "weight = 70 }");
    let before = p.snapshot();
    let err = p.dcm(&["plan", "-f", toml]).expect(1);
    assert!(
        err.stderr
            .contains("the weights of this rule sum to 90; they must sum to 100")
            && err.stderr.contains("two-clusters-bookinfo.toml:"),
        "{}",
        err.stderr
    );
    assert_eq!(p.snapshot(), before);
}

#[test]
fn a_primary_remote_mesh_gives_the_primary_remote_secrets_and_the_remotes_the_remote_install() {
    let toml = "primary-remote.toml";
    let p = example_project(toml);
    let token = p.read("certs/remotes/cluster2.token").trim().to_string();
    let mut seen = p.dcm(&["plan", "-f", toml]).expect(0).stdout;
    seen.push_str(&p.dcm(&["plan", "--json", "-f", toml]).expect(0).stdout);
    seen.push_str(
        &p.dcm(&["apply", "--auto-approve", "-f", toml])
            .expect(0)
            .stdout,
    );
    seen.push_str(&p.read("state/dcm.state.json"));

    // The primary: one remote secret per remote, as istiod looks for them.
    for remote in ["cluster2", "cluster3"] {
        let secret = yaml(
            &p,
            &format!(
                "out/primary-remote/cluster1/istio-mesh/secret/istio-remote-secret-{remote}.yaml"
            ),
        );
        assert_eq!(secret["metadata"]["labels"]["istio/multiCluster"], "true");
        assert_eq!(
            secret["metadata"]["annotations"]["networking.istio.io/cluster"],
            remote
        );
        let kubeconfig = base64_decode(secret["data"][remote].as_str().unwrap());
        let kubeconfig: Value = serde_yaml_ng::from_slice(&kubeconfig).unwrap();
        let want_server = if remote == "cluster2" {
            "https://192.0.2.21:6443"
        } else {
            "https://192.0.2.31:6443"
        };
        assert_eq!(kubeconfig["clusters"][0]["cluster"]["server"], want_server);
        assert_eq!(kubeconfig["current-context"], remote);
        let ca = base64_decode(
            kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"]
                .as_str()
                .unwrap(),
        );
        assert_eq!(
            String::from_utf8(ca).unwrap(),
            p.read(&format!("certs/remotes/{remote}-api-ca.pem"))
        );
        assert_eq!(
            kubeconfig["users"][0]["user"]["token"],
            p.read(&format!("certs/remotes/{remote}.token")).trim()
        );
    }
    assert!(
        !seen.contains(&token),
        "a remote's token leaked into the plan or state"
    );
    let primary = yaml(
        &p,
        "out/primary-remote/cluster1/_cluster/istio.sailoperator.io/mesh.yaml",
    );
    assert_eq!(primary["spec"]["namespace"], "istio-mesh");
    assert_eq!(primary["spec"]["values"]["global"]["externalIstiod"], true);
    assert!(p.exists(
        "out/primary-remote/cluster1/istio-mesh/gateway.networking.istio.io/istiod-gateway.yaml"
    ));
    assert!(
        p.exists("out/primary-remote/cluster1/istio-mesh/virtualservice.networking.istio.io/istiod-vs-mesh.yaml")
    );
    assert!(p.exists("out/primary-remote/cluster1/istio-mesh/secret/cacerts.yaml"));

    // The remotes: Istio's remote profile pointed at the primary's gateway, and no CA key,
    // mesh configuration or remote secret of their own.
    for remote in ["cluster2", "cluster3"] {
        let op = yaml(
            &p,
            &format!("out/primary-remote/{remote}/_cluster/istio.sailoperator.io/mesh.yaml"),
        );
        assert_eq!(op["spec"]["profile"], "remote");
        assert_eq!(
            op["spec"]["values"]["istiodRemote"]["injectionPath"],
            format!("/inject/cluster/{remote}/net/net1")
        );
        // Without this annotation the primary's istiod never manages the remote.
        let ns = yaml(
            &p,
            &format!("out/primary-remote/{remote}/_cluster/namespace/istio-mesh.yaml"),
        );
        assert_eq!(
            ns["metadata"]["annotations"]["topology.istio.io/controlPlaneClusters"],
            "cluster1"
        );
        assert_eq!(
            op["spec"]["values"]["global"]["remotePilotAddress"],
            "192.0.2.10"
        );
        assert_eq!(
            op["spec"]["values"]["global"]["multiCluster"]["clusterName"],
            remote
        );
        // No CA key, mesh configuration or remote secret of their own: only the east-west
        // gateway (both serve checkout).
        let kinds: Vec<String> =
            std::fs::read_dir(p.path(&format!("out/primary-remote/{remote}/istio-mesh")))
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect();
        let mut kinds = kinds;
        kinds.sort();
        assert_eq!(
            kinds,
            [
                "deployment.apps",
                "role.rbac.authorization.k8s.io",
                "rolebinding.rbac.authorization.k8s.io",
                "service",
                "serviceaccount"
            ],
            "{remote}"
        );
    }
    // The mesh configuration lives in the primary: the route is one VirtualService there,
    // its subsets pinned to their clusters by Istio's topology label.
    let rule = yaml(
        &p,
        "out/primary-remote/cluster1/shop/destinationrule.networking.istio.io/checkout-shop-mesh-subsets.yaml",
    );
    assert_eq!(
        rule["spec"]["subsets"][1],
        serde_json::json!({ "name": "canary", "labels": { "version": "v2", "topology.istio.io/cluster": "cluster3" } })
    );
    assert!(
        p.exists("out/primary-remote/cluster1/shop/virtualservice.networking.istio.io/checkout-shop-mesh.yaml")
    );
    assert!(!p.exists("out/primary-remote/cluster2/shop/virtualservice.networking.istio.io"));

    // Dropping a remote removes its remote secret and its install, and nothing else.
    p.edit(
        toml,
        "clusters = [\"cluster1\", \"cluster2\", \"cluster3\"]\ninjection",
        "clusters = [\"cluster1\", \"cluster2\"]\ninjection",
    );
    p.edit(
        toml,
        "  { name = \"canary\", cluster = \"cluster3\", labels = { version = \"v2\" } },\n",
        "",
    );
    p.edit(
        toml,
        "clusters = [\"cluster2\", \"cluster3\"]\nports",
        "clusters = [\"cluster2\"]\nports",
    );
    p.edit(toml, "{ subset = \"canary\" }", "{ subset = \"v1\" }");
    p.edit(
        toml,
        "{ subset = \"v1\", weight = 90 }, { subset = \"canary\", weight = 10 }",
        "{ subset = \"v1\" }",
    );
    let plan = p.dcm(&["plan", "-f", toml]).expect(0).stdout;
    for want in [
        "- cluster1/core/Secret/istio-mesh/istio-remote-secret-cluster3 will be destroyed",
        "- cluster3/sailoperator.io/Istio/_cluster/mesh will be destroyed",
    ] {
        assert!(plan.contains(want), "missing {want:?} in:\n{plan}");
    }
    assert!(
        !plan.contains("istio-remote-secret-cluster2 will"),
        "{plan}"
    );
    p.dcm(&["apply", "--auto-approve", "-f", toml]).expect(0);
    assert!(!p
        .exists("out/primary-remote/cluster1/istio-mesh/secret/istio-remote-secret-cluster3.yaml"));
    p.dcm(&["plan", "--detailed-exitcode", "-f", toml])
        .expect(0);
}

/// Every object a directory target holds, parsed.
fn objects_under(p: &Project, dir: &str) -> Vec<Value> {
    p.files(dir)
        .iter()
        .filter(|f| f.ends_with(".yaml"))
        .map(|f| yaml(p, &format!("{dir}/{f}")))
        .collect()
}

#[test]
fn two_clouds_on_the_same_clusters_route_cart_their_own_way_and_never_read_each_other() {
    let toml = "two-clouds.toml";
    let p = example_project(toml);
    p.dcm(&["apply", "--auto-approve", "-f", toml]).expect(0);
    for cluster in ["cluster1", "cluster2", "cluster3"] {
        let objects = objects_under(&p, &format!("out/two-clouds/{cluster}"));
        let labels_of_namespace = |ns: &str| {
            objects
                .iter()
                .find(|o| o["kind"] == "Namespace" && o["metadata"]["name"] == ns)
                .map(|o| o["metadata"]["labels"].clone())
                .unwrap_or_else(|| panic!("{cluster}: no namespace {ns}"))
        };
        // Which control planes see a namespace: those whose discoverySelectors match it.
        let seen_by = |ns: &str| -> Vec<String> {
            let labels = labels_of_namespace(ns);
            objects
                .iter()
                .filter(|o| o["kind"] == "Istio")
                .filter(|istio| {
                    let selectors = istio["spec"]["values"]["meshConfig"]["discoverySelectors"]
                        .as_array()
                        .expect("discoverySelectors");
                    selectors.iter().any(|s| {
                        s["matchLabels"]
                            .as_object()
                            .expect("matchLabels")
                            .iter()
                            .all(|(k, v)| labels[k] == *v)
                    })
                })
                .map(|istio| istio["metadata"]["name"].as_str().unwrap().to_string())
                .collect()
        };
        let mut config = 0;
        for o in objects.iter().filter(|o| {
            o["apiVersion"]
                .as_str()
                .is_some_and(|a| a.starts_with("networking.istio.io/"))
        }) {
            let cloud = o["metadata"]["labels"]["dcm.io/logical-cloud"]
                .as_str()
                .unwrap_or_else(|| panic!("{cluster}: unlabelled {o}"));
            // The revision label makes every other istiod skip it, and its namespace is
            // discovered by its own cloud's istiod only.
            assert_eq!(o["metadata"]["labels"]["istio.io/rev"], cloud, "{o}");
            let ns = o["metadata"]["namespace"].as_str().unwrap();
            assert_eq!(seen_by(ns), [cloud], "{cluster}: {ns}");
            config += 1;
        }
        assert!(config >= 6, "{cluster}: {config} Istio config objects");
        for cloud in ["blue", "green"] {
            assert_eq!(seen_by(&format!("shop-{cloud}")), [cloud]);
            assert_eq!(
                labels_of_namespace(&format!("shop-{cloud}"))["istio.io/rev"],
                cloud
            );
        }
    }
    // The same service, routed two ways: blue splits by weight for every client; green
    // sends beta testers (in cluster1 only) to its beta.
    let blue = yaml(
        &p,
        "out/two-clouds/cluster1/shop-blue/virtualservice.networking.istio.io/cart-shop-blue-blue.yaml",
    );
    let weights: Vec<&Value> = blue["spec"]["http"][0]["route"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["weight"])
        .collect();
    assert_eq!(weights, [&json!(90), &json!(10)]);
    assert!(blue["spec"]["http"][0].get("match").is_none());
    let green = yaml(
        &p,
        "out/two-clouds/cluster1/shop-green/virtualservice.networking.istio.io/cart-shop-green-green.yaml",
    );
    assert_eq!(
        green["spec"]["http"][0]["match"],
        json!([{ "headers": { "x-beta": { "exact": "yes" } } }])
    );
    assert_eq!(
        green["spec"]["http"][0]["route"][0]["destination"]["subset"],
        "beta"
    );
    assert!(p.exists(
        "out/two-clouds/cluster2/shop-blue/virtualservice.networking.istio.io/cart-shop-blue-blue.yaml"
    ));
    assert!(!p.exists(
        "out/two-clouds/cluster2/shop-green/virtualservice.networking.istio.io/cart-shop-green-green.yaml"
    ));
}
