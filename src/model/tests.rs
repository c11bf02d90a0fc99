use super::*;
use crate::config;
use std::path::Path;

/// Builds the model of `toml` as written in the `legacy-global` profile on Istio 1.8 (the
/// rules these tests were written for; the current profile's are tested with
/// [`current_model_in`]).
fn model_in(dir: &Path, toml: &str) -> Result<Model, Diagnostics> {
    let mut legacy = String::new();
    for line in toml.lines() {
        legacy.push_str(line);
        legacy.push('\n');
        let t = line.trim();
        if t.starts_with("[logical_clouds.")
            && t.ends_with(']')
            && !t[1..].contains('[')
            && t.matches('.').count() == 1
        {
            legacy.push_str("profile = \"legacy-global\"\n");
        }
    }
    legacy.push_str("[istio]\nversion = \"1.8.6\"\n");
    current_model_in(dir, &legacy)
}

/// Builds the model of `toml` as written.
fn current_model_in(dir: &Path, toml: &str) -> Result<Model, Diagnostics> {
    let path = dir.join("dcm.toml");
    std::fs::write(&path, toml).unwrap();
    let raw = config::load(&path).map_err(|e| match e {
        config::LoadError::Invalid(d) => d,
        other => panic!("{other}"),
    })?;
    build(raw)
}

#[test]
fn resources_read_multi_document_files_relative_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("m")).unwrap();
    std::fs::write(
        dir.path().join("m/app.yaml"),
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n# nothing\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n",
    )
    .unwrap();
    let m = model_in(
        dir.path(),
        "[clusters.c1]\ndir = \"out/c1\"\n[[resources]]\nclusters = [\"c1\"]\nfile = \"m/app.yaml\"\n",
    )
    .unwrap();
    let names: Vec<_> = m.resources[0]
        .manifests
        .iter()
        .map(|m| m.object["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(
        m.clusters["c1"].target,
        TargetSpec::Dir {
            path: dir.path().join("out/c1"),
            secrets: None
        }
    );
}

#[test]
fn every_semantic_problem_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [oops\n",
    )
    .unwrap();
    let err = model_in(
        dir.path(),
        r#"
[clusters.Bad_Name]
dir = "x"
context = "y"
[clusters.c2]
pod_cidr = "10.0.0.1/8"
[[resources]]
clusters = ["c3"]
manifest = { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "UPPER" } }
depends_on = ["resources.nope", "logical_clouds.lc9", "not-an-address"]
[[resources]]
clusters = ["c2"]
file = "missing.yaml"
[[resources]]
clusters = ["c2"]
file = "bad.yaml"
[[resources]]
clusters = ["c2"]
manifest = { kind = "ConfigMap" }
"#,
    )
    .unwrap_err();
    let text = err.to_string();
    for want in [
        "invalid cluster name `Bad_Name`",
        "sets both `dir` and `context`",
        "cluster `c2` needs a target",
        "invalid `pod_cidr` `10.0.0.1/8`",
        "names cluster `c3`, which is not defined",
        "invalid name `UPPER` for a ConfigMap",
        "resource `nope`",
        "logical cloud `lc9`",
        "`not-an-address` is not a dependency address",
        "cannot read manifest file",
        "invalid YAML in `bad.yaml`",
        "bad.yaml:5:",
        "no apiVersion, metadata.name",
        "12 problems found",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

/// Copies the test-only certificates next to the file.
fn with_certs(dir: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/certs");
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    for f in [
        "root-cert.pem",
        "ca-cert.pem",
        "ca-key.pem",
        "cert-chain.pem",
    ] {
        std::fs::copy(src.join(f), dir.join("certs").join(f)).unwrap();
    }
}

const CA: &str = r#"
[ca]
root_cert = "certs/root-cert.pem"
ca_cert = "certs/ca-cert.pem"
ca_key = "certs/ca-key.pem"
cert_chain = "certs/cert-chain.pem"
"#;

const TWO: &str = r#"
[clusters.cluster1]
dir = "out/c1"
pod_cidr = "10.1.0.0/16"
service_cidr = "10.96.0.0/16"
gateway = "192.0.2.10:15443"
[clusters.cluster2]
dir = "out/c2"
pod_cidr = "10.2.0.0/16"
service_cidr = "10.97.0.0/16"
gateway = "192.0.2.20:15443"
"#;

#[test]
fn a_logical_cloud_gets_its_defaults() {
    let dir = tempfile::tempdir().unwrap();
    with_certs(dir.path());
    let m = model_in(
        dir.path(),
        &format!(
            "{CA}{TWO}[logical_clouds.lc1]\nclusters = [\"cluster1\", \"cluster2\"]\ndns_forward = {{ cluster1 = \"10.96.0.53\", cluster2 = \"10.97.0.53\" }}\n[[logical_clouds.lc1.services]]\nname = \"reviews\"\nclusters = [\"cluster2\"]\nports = [{{ number = 9080, protocol = \"http\" }}]\n"
        ),
    )
    .unwrap();
    let lc = &m.logical_clouds["lc1"];
    assert_eq!(
        (lc.suffix.as_str(), lc.istio_namespace.as_str()),
        ("lc1", "istio-lc1")
    );
    let s = &lc.services[0];
    assert_eq!(
        (
            s.namespace.as_str(),
            s.ports[0].name.as_str(),
            s.ports[0].protocol.as_str()
        ),
        ("default", "http-9080", "HTTP")
    );
    assert!(m.ca.as_ref().unwrap().ca_key.contains("PRIVATE KEY"));
    assert!(
        !format!("{:?}", m.ca).contains("PRIVATE KEY"),
        "the key never reaches Debug output"
    );
}

#[test]
fn every_logical_cloud_rule_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    with_certs(dir.path());
    std::fs::write(dir.path().join("certs/ca-cert.pem"), "not a pem").unwrap();
    let text = format!(
        r#"{}{}
[clusters.cluster3]
dir = "out/c3"
cluster_domain = "corp.example"
pod_cidr = "10.1.128.0/17"
[logical_clouds.lc1]
clusters = ["cluster1", "cluster2", "cluster3", "clusterX"]
suffix = "svc"
dns_forward = {{ cluster1 = "10.96.0.53", cluster2 = "nope" }}
[[logical_clouds.lc1.services]]
name = "reviews"
clusters = ["cluster9"]
ports = [{{ number = 70000 }}, {{ number = 80, protocol = "SCTP" }}]
[logical_clouds.lc2]
clusters = ["cluster1"]
istio_namespace = "istio-lc1"
suffix = "lc3"
dns_forward = {{ cluster1 = "10.96.0.54" }}
[[logical_clouds.lc2.services]]
name = "ratings"
clusters = ["cluster1"]
ports = [{{ number = 9080 }}]
[logical_clouds.lc3]
clusters = ["cluster1"]
dns_forward = {{ cluster1 = "10.96.0.55" }}
"#,
        CA.replace("certs/root-cert.pem", "certs/missing.pem"),
        TWO
    );
    let err = model_in(dir.path(), &text).unwrap_err().to_string();
    for want in [
        "cannot read `root_cert` file",
        "`ca_cert` file `certs/ca-cert.pem` is not PEM",
        "names cluster `clusterX`, which is not defined",
        "suffix `svc` is reserved",
        "must share one cluster_domain: `cluster1` has `cluster.local`, `cluster3` has `corp.example`",
        "dns_forward address `nope` is not an IPv4 address",
        "needs `dns_forward.cluster3`",
        "clusters `cluster1` and `cluster3` are on network `default` but their ranges overlap: `cluster1` pod_cidr 10.1.0.0/16 and `cluster3` pod_cidr 10.1.128.0/17",
        "runs in cluster `cluster9`, which is not a member",
        "port 70000 is out of range",
        "unknown protocol `SCTP`",
        "logical cloud `lc2` exports services but has 1 cluster",
        "istio_namespace `istio-lc1` is used by two logical clouds",
        "suffix `lc3` is used by two logical clouds",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

#[test]
fn pem_types_are_checked() {
    let cert = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/certs/ca-cert.pem"),
    )
    .unwrap();
    let key = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/certs/ca-key.pem"),
    )
    .unwrap();
    assert!(check_pem(&cert, false).is_ok());
    assert!(check_pem(&key, true).is_ok());
    assert!(check_pem(&key, false)
        .unwrap_err()
        .contains("only certificates"));
    assert!(check_pem(&cert, true)
        .unwrap_err()
        .contains("one private key"));
    assert!(check_pem(
        "-----BEGIN CERTIFICATE-----\n@@@\n-----END CERTIFICATE-----\n",
        false
    )
    .is_err());
}

/// The two-cluster Bookinfo cloud: reviews exported from cluster2 (v2, v3), v1 local in
/// cluster1, and `routes` appended by each test.
const BOOKINFO: &str = r#"
[logical_clouds.lc1]
clusters = ["cluster1", "cluster2"]
dns_forward = { cluster1 = "10.96.0.53", cluster2 = "10.97.0.53" }
[[logical_clouds.lc1.services]]
name = "reviews"
namespace = "bookinfo"
clusters = ["cluster2"]
ports = [{ number = 9080, protocol = "HTTP" }]
subsets = [
  { name = "v1", cluster = "cluster1", labels = { version = "v1" } },
  { name = "v2", cluster = "cluster2", labels = { version = "v2" } },
  { name = "v3", cluster = "cluster2", labels = { version = "v3" } },
]
"#;

#[test]
fn a_route_reads_header_matches_weights_and_subsets() {
    let dir = tempfile::tempdir().unwrap();
    with_certs(dir.path());
    let m = model_in(
        dir.path(),
        &format!(
            r#"{CA}{TWO}{BOOKINFO}
[[logical_clouds.lc1.routes]]
service = "reviews"
clusters = ["cluster1"]
http = [
  {{ headers = {{ end-user = {{ exact = "jason" }} }}, to = [{{ subset = "v2", weight = 50 }}, {{ subset = "v3", weight = 50 }}] }},
  {{ to = [{{ subset = "v1" }}] }},
]
"#
        ),
    )
    .unwrap();
    let lc = &m.logical_clouds["lc1"];
    assert_eq!(lc.services[0].subsets[1].labels["version"], "v2");
    let r = &lc.routes[0];
    assert_eq!(
        (r.service.as_str(), r.namespace.as_str(), r.clusters.clone()),
        ("reviews", "bookinfo", vec!["cluster1".to_string()])
    );
    assert_eq!(
        r.http[0].headers,
        [HeaderMatch {
            name: "end-user".into(),
            kind: "exact",
            value: "jason".into()
        }]
    );
    assert_eq!(
        r.http[0].to,
        [
            Destination {
                subset: "v2".into(),
                weight: Some(50)
            },
            Destination {
                subset: "v3".into(),
                weight: Some(50)
            }
        ]
    );
    assert!(r.http[1].headers.is_empty());
    assert_eq!(lc.topology, Topology::MultiPrimary);
}

#[test]
fn every_route_rule_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    with_certs(dir.path());
    let err = model_in(
        dir.path(),
        &format!(
            r#"{CA}{TWO}{BOOKINFO}
[[logical_clouds.lc1.routes]]
service = "reviewz.bookinfo"
http = [{{ to = [{{ subset = "v1" }}] }}]
[[logical_clouds.lc1.routes]]
service = "reviews.bookinfo"
clusters = ["cluster1", "cluster7"]
http = [
  {{ headers = {{ End_User = {{ exact = "jason", prefix = "j" }} }}, to = [{{ subset = "v2", weight = 60 }}, {{ subset = "v4", weight = 50 }}] }},
  {{ to = [{{ subset = "v2" }}, {{ subset = "v3", weight = 101 }}] }},
  {{ to = [{{ subset = "v1" }}] }},
]
[[logical_clouds.lc1.routes]]
service = "reviews"
http = [
  {{ headers = {{ end-user = {{ exact = "jason" }} }}, to = [{{ subset = "v1", weight = 40 }}, {{ subset = "v3", weight = 50 }}] }},
]
"#
        ),
    )
    .unwrap_err()
    .to_string();
    for want in [
        "route service `reviewz.bookinfo` is not a service of logical cloud `lc1`",
        "did you mean `reviews.bookinfo`?",
        "route names cluster `cluster7`, which is not a member",
        "invalid header name `End_User`",
        "header `End_User` needs exactly one of `exact`, `prefix` or `regex`",
        "service `reviews.bookinfo` has no subset `v4`",
        "the weights of this rule sum to 110; they must sum to 100",
        "a rule with several destinations needs a `weight` on each",
        "weight 101 is out of range",
        "this rule of the route for `reviews.bookinfo` is never used",
        "service `reviews.bookinfo` has two routes in cluster `cluster1`",
        "the weights of this rule sum to 90",
        "has no rule for requests that match no header, so they would get 404",
        "clients in cluster `cluster2` cannot reach subset `v1`: it is in cluster `cluster1`, which does not export `reviews.bookinfo`",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

#[test]
fn subsets_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    with_certs(dir.path());
    let err = model_in(
        dir.path(),
        &format!(
            r#"{CA}{TWO}
[logical_clouds.lc1]
clusters = ["cluster1", "cluster2"]
dns_forward = {{ cluster1 = "10.96.0.53", cluster2 = "10.97.0.53" }}
[[logical_clouds.lc1.services]]
name = "reviews"
clusters = ["cluster2"]
ports = [{{ number = 9080 }}]
subsets = [
  {{ name = "v1", cluster = "clusterr1", labels = {{ version = "v1" }} }},
  {{ name = "v2", cluster = "cluster2", labels = {{ version = "v2" }} }},
  {{ name = "v2", cluster = "cluster2", labels = {{ version = "-bad" }} }},
  {{ name = "cluster2", cluster = "cluster2", labels = {{ version = "v9" }} }},
  {{ name = "v5", cluster = "cluster2" }},
  {{ name = "v6" }},
]
"#
        ),
    )
    .unwrap_err()
    .to_string();
    for want in [
        "subset `v1` of service `reviews` is in cluster `clusterr1`, which is not a member of logical cloud `lc1`",
        "did you mean `cluster1`?",
        "service `reviews` has two subsets named `v2`",
        "invalid label value `-bad`",
        "subset `cluster2` of service `reviews` has the name of a member cluster",
        "subset `v5` of service `reviews` needs `labels`",
        "subset `v6` of service `reviews` needs `cluster`",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

/// Writes a token and an API-server CA for a remote next to the file.
fn with_remote_access(dir: &Path, cluster: &str) -> String {
    let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/certs/root-cert.pem");
    std::fs::copy(ca, dir.join(format!("certs/{cluster}-ca.pem"))).unwrap();
    std::fs::write(dir.join(format!("certs/{cluster}.token")), "tok-123\n").unwrap();
    format!("api_server = \"https://192.0.2.99:6443\"\ntoken_file = \"certs/{cluster}.token\"\nca_file = \"certs/{cluster}-ca.pem\"\n")
}

#[test]
fn a_primary_remote_cloud_reads_its_primary_and_the_remote_access() {
    let dir = tempfile::tempdir().unwrap();
    with_certs(dir.path());
    let access = with_remote_access(dir.path(), "cluster2");
    let two = TWO.replace(
        "gateway = \"192.0.2.20:15443\"\n",
        &format!("gateway = \"192.0.2.20:15443\"\n{access}"),
    );
    let m = model_in(
        dir.path(),
        &format!("{CA}{two}[logical_clouds.lc1]\ntopology = \"primary-remote\"\nprimary = \"cluster1\"\nclusters = [\"cluster1\", \"cluster2\"]\ndns_forward = {{ cluster1 = \"10.96.0.53\", cluster2 = \"10.97.0.53\" }}\n"),
    )
    .unwrap();
    let lc = &m.logical_clouds["lc1"];
    assert_eq!(lc.primary(), Some("cluster1"));
    assert!(lc.runs_control_plane("cluster1") && !lc.runs_control_plane("cluster2"));
    assert_eq!(lc.remotes().collect::<Vec<_>>(), ["cluster2"]);
    let access = &m.clusters["cluster2"].access;
    assert_eq!(
        (access.api_server.as_deref(), access.token.as_deref()),
        (Some("https://192.0.2.99:6443"), Some("tok-123"))
    );
    assert!(
        !format!("{:?}", m.clusters["cluster2"]).contains("tok-123"),
        "the token never reaches Debug output"
    );
}

#[test]
fn every_topology_rule_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    with_certs(dir.path());
    std::fs::write(dir.path().join("certs/empty.token"), "  \n").unwrap();
    let err = model_in(
        dir.path(),
        &format!(
            r#"{CA}{TWO}
[clusters.cluster3]
dir = "out/c3"
pod_cidr = "10.3.0.0/16"
api_server = "http://192.0.2.31:6443"
token_file = "certs/empty.token"
ca_file = "certs/ca-key.pem"
[clusters.cluster4]
dir = "out/c4"
pod_cidr = "10.4.0.0/16"
api_server = "https://192.0.2.41:6443"
[logical_clouds.lc1]
topology = "primary-remote"
primary = "cluster9"
clusters = ["cluster1", "cluster2"]
dns_forward = {{ cluster1 = "10.96.0.53", cluster2 = "10.97.0.53" }}
[logical_clouds.lc2]
topology = "primary-remote"
clusters = ["cluster1"]
dns_forward = {{ cluster1 = "10.96.0.54" }}
[logical_clouds.lc3]
topology = "hub-spoke"
clusters = ["cluster1"]
dns_forward = {{ cluster1 = "10.96.0.55" }}
[logical_clouds.lc4]
primary = "cluster1"
clusters = ["cluster1"]
dns_forward = {{ cluster1 = "10.96.0.56" }}
[logical_clouds.lc5]
topology = "primary-remote"
primary = "cluster1"
clusters = ["cluster1", "cluster2"]
dns_forward = {{ cluster1 = "10.96.0.57", cluster2 = "10.97.0.57" }}
[logical_clouds.lc6]
topology = "primary-remote"
primary = "cluster1"
clusters = ["cluster1", "cluster3"]
dns_forward = {{ cluster1 = "10.96.0.58", cluster3 = "10.97.0.58" }}
"#
        ),
    )
    .unwrap_err()
    .to_string();
    for want in [
        "invalid `api_server` `http://192.0.2.31:6443`: must be an https URL",
        "`token_file` `certs/empty.token` must hold one token on one line",
        "`ca_file` `certs/ca-key.pem` must hold only certificates",
        "primary `cluster9` is not a member of logical cloud `lc1`",
        "logical cloud `lc2` is primary-remote and needs `primary`",
        "unknown topology `hub-spoke`: must be \"multi-primary\" or \"primary-remote\"",
        "logical cloud `lc4` sets `primary` but its topology is multi-primary",
        "cluster `cluster2` is a remote of logical cloud `lc5`, so another control plane must reach its API server",
        "= help: add `api_server`, `token_file` and `ca_file` to [clusters.cluster2]",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(
        !err.contains("cluster `cluster3` is a remote"),
        "cluster3 has the keys (wrong ones, reported above): {err}"
    );
    assert!(
        !err.contains("of logical cloud `lc1`, so another"),
        "lc1's primary is not a member: no remote can be told apart: {err}"
    );
    assert!(
        !err.contains("cluster4"),
        "an api_server alone is a valid override: {err}"
    );
}

#[test]
fn a_primary_remote_cloud_routes_in_its_primary_and_refuses_route_clusters() {
    let dir = tempfile::tempdir().unwrap();
    with_certs(dir.path());
    let access = with_remote_access(dir.path(), "cluster2");
    let two = TWO.replace(
        "gateway = \"192.0.2.20:15443\"\n",
        &format!("gateway = \"192.0.2.20:15443\"\n{access}"),
    );
    let cloud = BOOKINFO.replace(
        "[logical_clouds.lc1]\n",
        "[logical_clouds.lc1]\ntopology = \"primary-remote\"\nprimary = \"cluster1\"\n",
    );
    let route = "[[logical_clouds.lc1.routes]]\nservice = \"reviews\"\nhttp = [{ to = [{ subset = \"v1\" }] }]\n";
    let m = model_in(dir.path(), &format!("{CA}{two}{cloud}{route}")).unwrap();
    assert_eq!(m.logical_clouds["lc1"].routes[0].clusters, ["cluster1"]);
    let err = model_in(
        dir.path(),
        &format!(
            "{CA}{two}{cloud}{}",
            route.replace("http", "clusters = [\"cluster2\"]\nhttp")
        ),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("logical cloud `lc1` is primary-remote: its routes are configured once, in the primary, for every member; remove `clusters`"),
        "{err}"
    );
}

/// The current profile's rules, each a clear error at its key, all reported at once.
#[test]
fn every_current_profile_rule_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    with_certs(dir.path());
    let other = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/certs/other-root/cluster3");
    std::fs::create_dir_all(dir.path().join("certs/other")).unwrap();
    for f in [
        "root-cert.pem",
        "ca-cert.pem",
        "ca-key.pem",
        "cert-chain.pem",
    ] {
        std::fs::copy(other.join(f), dir.path().join("certs/other").join(f)).unwrap();
    }
    let text = format!(
        r#"{CA}{TWO}
[istio]
version = "1.31.0"
install = "helm"

[clusters.cluster2.ca]
root_cert = "certs/root-cert.pem"
ca_cert = "certs/other/ca-cert.pem"
ca_key = "certs/other/ca-key.pem"
cert_chain = "certs/other/ca-cert.pem"

[clusters.cluster3]
dir = "out/c3"
cluster_domain = "corp.example"

[logical_clouds.old]
profile = "legacy-global"
clusters = ["cluster1"]

[logical_clouds.lc1]
clusters = ["cluster1", "cluster2"]
revision = "shared"
dns_forward = {{ cluster1 = "10.96.0.53" }}

[logical_clouds.lc2]
clusters = ["cluster1"]
revision = "shared"

[logical_clouds.lc3]
clusters = ["cluster3"]
suffix = "corp.example"

[logical_clouds.lc4]
profile = "newest"
clusters = ["cluster1"]
"#
    );
    let err = current_model_in(dir.path(), &text).unwrap_err().to_string();
    for want in [
        "unknown `install` `helm`: must be \"sail\"",
        "logical cloud `old` uses profile `legacy-global`, which needs Istio 1.8 or older (istiocoredns was removed in 1.9), but [istio] version is 1.31.0",
        "the CA of [clusters.cluster2.ca] does not lead to its root",
        "revision `shared` is used by two logical clouds",
        "suffix `corp.example` is the cluster domain of `cluster3`",
        "unknown profile `newest`",
        "which has no istiocoredns to forward to",
        // Directory targets: dcm can read neither the API servers nor issue tokens.
        "cluster `cluster1` is a member of logical cloud `lc1`, whose other control planes discover its endpoints, so another control plane must reach its API server, but it is a directory target",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

/// Overlapping ranges across networks warn; a shared intermediate warns, naming Istio's
/// guidance; neither stops the file (seed 001's identical CIDRs on separate networks).
#[test]
fn overlaps_across_networks_and_a_shared_intermediate_are_warnings() {
    let dir = tempfile::tempdir().unwrap();
    with_certs(dir.path());
    let access = |c: &str| with_remote_access(dir.path(), c);
    let (a1, a2) = (access("cluster1"), access("cluster2"));
    let two = TWO
        .replace(
            "gateway = \"192.0.2.10:15443\"\n",
            &format!("gateway = \"192.0.2.10:15443\"\nnetwork = \"net1\"\n{a1}"),
        )
        .replace(
            "gateway = \"192.0.2.20:15443\"\n",
            &format!("gateway = \"192.0.2.20:15443\"\nnetwork = \"net2\"\n{a2}"),
        )
        .replace("10.2.0.0/16", "10.1.0.0/16");
    let m = current_model_in(
        dir.path(),
        &format!("{CA}{two}[logical_clouds.lc1]\nclusters = [\"cluster1\", \"cluster2\"]\n"),
    )
    .unwrap();
    let warnings: Vec<String> = m.warnings.iter().map(|w| w.to_string()).collect();
    let all = warnings.join("\n");
    assert!(warnings.iter().all(|w| w.starts_with("warning: ")), "{all}");
    assert!(
        all.contains("across networks this is acceptable but not recommended"),
        "{all}"
    );
    assert!(all.contains("share one intermediate CA ([ca]); Istio's plug-in CA guidance is one intermediate per cluster"), "{all}");
    assert_eq!(m.logical_clouds["lc1"].profile, Profile::Current);
}

#[test]
fn the_project_is_named_by_its_table_or_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = "[clusters.c]\ndir = \"out/c\"\n";
    let m = current_model_in(dir.path(), cluster).unwrap();
    assert_eq!(m.project, "dcm", "dcm.toml is project `dcm`");
    let named = format!("[project]\nname = \"shop-prod\"\n{cluster}");
    assert_eq!(
        current_model_in(dir.path(), &named).unwrap().project,
        "shop-prod"
    );
    // A name that could end the marker's HTML comment, or break its line, is refused.
    for bad in ["a-->b", "a b", "", "-a", "a>b"] {
        let toml = format!("[project]\nname = \"{bad}\"\n{cluster}");
        let err = current_model_in(dir.path(), &toml).unwrap_err().to_string();
        assert!(err.contains("is not a valid project name"), "{bad}: {err}");
        assert!(err.contains("dcm.toml:2:8"), "{err}");
    }
    // Without a table, characters a name may not hold become `-`.
    let path = dir.path().join("my shop (prod).toml");
    std::fs::write(&path, cluster).unwrap();
    let raw = config::load(&path).unwrap();
    assert_eq!(build(raw).unwrap().project, "my-shop-prod");
}
