//! Logical clouds compiled to objects, applied on directory targets.

use super::harness::Project;

/// Two directory-target clusters in cloud lc1, exporting reviews and ratings, in the
/// legacy-global profile (stub domains in CoreDNS, istiocoredns).
pub const CLOUD: &str = r#"
[istio]
version = "1.8.6"

[ca]
root_cert = "certs/root-cert.pem"
ca_cert = "certs/ca-cert.pem"
ca_key = "certs/ca-key.pem"
cert_chain = "certs/cert-chain.pem"

[clusters.cluster1]
dir = "out/cluster1"
secrets = "plaintext"
pod_cidr = "10.1.0.0/16"
service_cidr = "10.96.0.0/16"
gateway = "192.0.2.10:15443"

[clusters.cluster2]
dir = "out/cluster2"
secrets = "plaintext"
pod_cidr = "10.2.0.0/16"
service_cidr = "10.97.0.0/16"
gateway = "192.0.2.20:15443"

[logical_clouds.lc1]
profile = "legacy-global"
clusters = ["cluster1", "cluster2"]
injection_namespaces = ["default"]
dns_forward = { cluster1 = "10.96.0.53", cluster2 = "10.97.0.53" }

[[logical_clouds.lc1.services]]
name = "reviews"
clusters = ["cluster2"]
ports = [{ name = "http1", number = 9080, protocol = "HTTP" }]

[[logical_clouds.lc1.services]]
name = "ratings"
clusters = ["cluster2"]
ports = [{ name = "http1", number = 9080, protocol = "HTTP" }]
"#;

/// CoreDNS's ConfigMap as a cluster ships it (dcm edits it; it never owns it).
pub const STOCK_COREDNS: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: coredns\n  namespace: kube-system\ndata:\n  Corefile: |\n    .:53 {\n        errors\n        health {\n           lameduck 5s\n        }\n        kubernetes cluster.local in-addr.arpa ip6.arpa {\n           pods insecure\n           fallthrough in-addr.arpa ip6.arpa\n        }\n        forward . /etc/resolv.conf\n        cache 30\n    }\n";

fn cloud_project() -> Project {
    let p = Project::new();
    p.write("dcm.toml", CLOUD);
    for c in ["cluster1", "cluster2"] {
        p.write(
            &format!("out/{c}/kube-system/configmap/coredns.yaml"),
            STOCK_COREDNS,
        );
    }
    super::harness::copy_test_certs(&p);
    p
}

fn address_of(p: &Project, name: &str) -> String {
    let yaml = p.read(&format!(
        "out/cluster1/default/serviceentry.networking.istio.io/{name}-default-lc1.yaml"
    ));
    let v: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    v["spec"]["addresses"][0].as_str().unwrap().to_string()
}

#[test]
fn service_entry_addresses_never_change_once_allocated() {
    let p = cloud_project();
    p.dcm(&["apply", "--auto-approve"]).expect(0);
    let ratings = address_of(&p, "ratings");
    let reviews = address_of(&p, "reviews");
    assert_eq!(
        (ratings.as_str(), reviews.as_str()),
        ("127.255.0.1", "127.255.0.2")
    );
    let state = p.state();
    let e = state["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "reviews-default-lc1" && e["kind"] == "ServiceEntry")
        .unwrap();
    assert_eq!(e["allocated"]["address"], "127.255.0.2");

    // A new service that sorts first, and the old ones reordered: nobody is renumbered.
    let reordered = CLOUD.replace(
        "[[logical_clouds.lc1.services]]\nname = \"reviews\"",
        "[[logical_clouds.lc1.services]]\nname = \"details\"\nclusters = [\"cluster2\"]\nports = [{ number = 9080, protocol = \"HTTP\" }]\n\n[[logical_clouds.lc1.services]]\nname = \"reviews\"",
    );
    p.write("dcm.toml", &reordered);
    let plan = p.dcm(&["plan"]).expect(0);
    assert!(
        plan.stdout
            .contains("Plan: 2 to add, 0 to change, 0 to destroy."),
        "{}",
        plan.stdout
    );
    p.dcm(&["apply", "--auto-approve"]).expect(0);
    assert_eq!(address_of(&p, "details"), "127.255.0.3");
    assert_eq!(
        (address_of(&p, "ratings"), address_of(&p, "reviews")),
        (ratings, reviews.clone())
    );

    // Removing a service frees nothing that others depend on; the rest stays put.
    p.write("dcm.toml", &reordered.replace("name = \"ratings\"", "name = \"ratings\"\n# gone").replacen("[[logical_clouds.lc1.services]]\nname = \"ratings\"\n# gone\nclusters = [\"cluster2\"]\nports = [{ name = \"http1\", number = 9080, protocol = \"HTTP\" }]\n", "", 1));
    let plan = p.dcm(&["plan"]).expect(0);
    assert!(
        plan.stdout.contains("0 to add, 0 to change, 2 to destroy."),
        "{}",
        plan.stdout
    );
    p.dcm(&["apply", "--auto-approve"]).expect(0);
    assert_eq!(address_of(&p, "reviews"), reviews);
    p.dcm(&["plan", "--detailed-exitcode"]).expect(0);
}

#[test]
fn service_entry_addresses_avoid_those_the_file_and_the_live_cluster_already_use() {
    let p = cloud_project();
    // In cluster1 (where the cloud names are served from cluster2) the file's own
    // ServiceEntry holds .1, and someone else's live ServiceEntry (in neither the file
    // nor the state) holds .2 and .4.
    p.write(
        "dcm.toml",
        &format!(
            "{CLOUD}\n[[resources]]\nname = \"egress\"\nclusters = [\"cluster1\"]\nmanifest = {{ apiVersion = \"networking.istio.io/v1\", kind = \"ServiceEntry\", metadata = {{ name = \"egress\", namespace = \"default\" }}, spec = {{ hosts = [\"api.example.com\"], addresses = [\"127.255.0.1\"], resolution = \"DNS\", ports = [{{ number = 443, name = \"tls\", protocol = \"TLS\" }}] }} }}\n"
        ),
    );
    p.write(
        "out/cluster1/team-b/serviceentry.networking.istio.io/theirs.yaml",
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: theirs\n  namespace: team-b\nspec:\n  hosts: [db.team-b.internal]\n  addresses: [127.255.0.2/32, 127.255.0.4]\n  resolution: STATIC\n",
    );
    p.dcm(&["apply", "--auto-approve"]).expect(0);
    assert_eq!(
        (address_of(&p, "ratings"), address_of(&p, "reviews")),
        ("127.255.0.3".to_string(), "127.255.0.5".to_string())
    );
    // Theirs is untouched, and a re-plan (addresses now in the state) is clean.
    assert!(p
        .read("out/cluster1/team-b/serviceentry.networking.istio.io/theirs.yaml")
        .contains("127.255.0.4"));
    p.dcm(&["plan", "--detailed-exitcode"]).expect(0);
}

#[test]
fn ca_keys_never_appear_in_plans_or_state() {
    let p = cloud_project();
    let key_body: String = p
        .read("certs/ca-key.pem")
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    let mut seen = p.dcm(&["plan"]).expect(0).stdout;
    seen.push_str(&p.dcm(&["plan", "--json"]).expect(0).stdout);
    seen.push_str(&p.dcm(&["plan", "--markdown"]).expect(0).stdout);
    assert!(
        seen.contains("ca-key.pem: (sensitive, value "),
        "the Secret is shown, redacted"
    );
    seen.push_str(&p.dcm(&["apply", "--auto-approve"]).expect(0).stdout);
    seen.push_str(&p.read("state/dcm.state.json"));
    assert!(
        !seen.contains("PRIVATE KEY")
            && !seen.contains(&key_body)
            && !seen.contains("LS0tLS1CRUdJTi"),
        "a CA key leaked"
    );
    // The cacerts Secret in the cluster holds it, base64-encoded, as Istio expects.
    let secret = p.read("out/cluster1/istio-lc1/secret/cacerts.yaml");
    assert!(secret.contains("ca-key.pem: LS0tLS1CRUdJTi"), "{secret}");
}

fn corefile(p: &Project, cluster: &str) -> String {
    let yaml = p.read(&format!("out/{cluster}/kube-system/configmap/coredns.yaml"));
    let v: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    v["data"]["Corefile"].as_str().unwrap().to_string()
}

#[test]
fn two_projects_share_coredns_and_never_touch_each_other_s_stub_domains() {
    let p = cloud_project();
    let original = corefile(&p, "cluster1");
    // Project B: another cloud (suffix lc9) on the same clusters, with its own state.
    let b = CLOUD
        .replace("lc1", "lc9")
        .replace(
            "injection_namespaces = [\"default\"]",
            "injection_namespaces = [\"shop9\"]",
        )
        .replace("10.96.0.53", "10.96.0.59")
        .replace("10.97.0.53", "10.97.0.59");
    p.write("b.toml", &b);
    p.dcm(&["apply", "--auto-approve"]).expect(0);
    p.dcm(&[
        "--state",
        "b.json",
        "apply",
        "--auto-approve",
        "-f",
        "b.toml",
    ])
    .expect(0);
    let both = corefile(&p, "cluster1");
    assert!(both.contains("lc1:53") && both.contains("lc9:53"), "{both}");
    // A changes its stub domain: B's region keeps its bytes and its place.
    p.write("dcm.toml", &CLOUD.replace("10.96.0.53", "10.96.0.63"));
    p.dcm(&["apply", "--auto-approve"]).expect(0);
    let changed = corefile(&p, "cluster1");
    assert_eq!(changed, both.replace("10.96.0.53", "10.96.0.63"));
    // B is destroyed: A's region is exactly as A wrote it, and so is the rest.
    p.dcm(&[
        "--state",
        "b.json",
        "destroy",
        "--auto-approve",
        "-f",
        "b.toml",
    ])
    .expect(0);
    let only_a = corefile(&p, "cluster1");
    assert!(only_a.starts_with(&original) && only_a.contains("forward . 10.96.0.63:53"));
    assert!(!only_a.contains("lc9"), "{only_a}");
    p.dcm(&["plan", "--detailed-exitcode"]).expect(0);
    p.dcm(&["drift"]).expect(0);
    p.dcm(&["destroy", "--auto-approve"]).expect(0);
    assert_eq!(corefile(&p, "cluster1"), original);

    // A project whose cloud has the suffix another project's region already uses is
    // refused: it never takes that region over.
    p.dcm(&[
        "--state",
        "b.json",
        "apply",
        "--auto-approve",
        "-f",
        "b.toml",
    ])
    .expect(0);
    p.write("c.toml", &b);
    let refused = p
        .dcm(&["--state", "c.json", "plan", "-f", "c.toml"])
        .expect(1);
    assert!(
        refused
            .stderr
            .contains("region for `lc9` that this state did not write"),
        "{}",
        refused.stderr
    );
}

#[test]
fn stub_domains_are_a_surgical_edit_of_the_corefile() {
    let p = cloud_project();
    let original = corefile(&p, "cluster1");
    let with_lc2 = format!(
        "{CLOUD}\n[logical_clouds.lc2]\nprofile = \"legacy-global\"\nclusters = [\"cluster1\", \"cluster2\"]\ndns_forward = {{ cluster1 = \"10.96.0.54\", cluster2 = \"10.97.0.54\" }}\n"
    );
    p.write("dcm.toml", &with_lc2);
    let plan = p.dcm(&["plan"]).expect(0);
    assert!(
        plan.stdout
            .contains("~ cluster1/core/ConfigMap/kube-system/coredns will be updated in place"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("dcm changes only its own part of this object"),
        "{}",
        plan.stdout
    );
    p.dcm(&["apply", "--auto-approve"]).expect(0);
    let edited = corefile(&p, "cluster1");
    assert!(
        edited.starts_with(&original),
        "every byte before dcm's region is kept:\n{edited}"
    );
    assert!(
        edited.contains("lc1:53 {\n    errors\n    cache 30\n    forward . 10.96.0.53:53\n}\n"),
        "{edited}"
    );
    assert!(
        edited.contains("lc2:53 {\n    errors\n    cache 30\n    forward . 10.96.0.54:53\n}\n"),
        "{edited}"
    );
    let state = p.state();
    let entry = state["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["address"] == "cluster1/core/ConfigMap/kube-system/coredns")
        .unwrap();
    assert_eq!(
        entry["origin"], "edited",
        "recorded as an edit, not a creation"
    );
    p.dcm(&["plan", "--detailed-exitcode"]).expect(0);

    // Someone else edits the rest of the Corefile: not drift, and dcm keeps their change.
    let path = "out/cluster1/kube-system/configmap/coredns.yaml";
    p.edit(path, "cache 30\n    }", "cache 60\n    }");
    p.dcm(&["drift"]).expect(0);
    p.dcm(&["plan", "--detailed-exitcode"]).expect(0);

    // Removing a cloud removes exactly its block.
    p.write("dcm.toml", CLOUD);
    p.dcm(&["apply", "--auto-approve"]).expect(0);
    let after = corefile(&p, "cluster1");
    assert!(
        after.contains("lc1:53") && !after.contains("lc2:53"),
        "{after}"
    );
    assert!(after.contains("cache 60"), "the other edit survives");

    // Destroy takes dcm's part back out and never deletes the ConfigMap.
    p.dcm(&["destroy", "--auto-approve"]).expect(0);
    assert_eq!(
        corefile(&p, "cluster1"),
        original.replace("cache 30\n}", "cache 60\n}")
    );
    assert_eq!(corefile(&p, "cluster2"), original, "byte for byte");
    assert!(p.state_addresses().is_empty());
}

#[test]
fn custom_dns_mode_writes_coredns_custom_keys_and_keeps_foreign_ones() {
    let p = cloud_project();
    p.write(
        "dcm.toml",
        &CLOUD.replace(
            "gateway = \"192.0.2.10:15443\"",
            "gateway = \"192.0.2.10:15443\"\ndns = \"custom\"",
        ),
    );
    p.write(
        "out/cluster1/kube-system/configmap/coredns-custom.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: coredns-custom\n  namespace: kube-system\ndata:\n  log.override: |\n    log\n",
    );
    p.dcm(&["apply", "--auto-approve"]).expect(0);
    let yaml = p.read("out/cluster1/kube-system/configmap/coredns-custom.yaml");
    assert!(
        yaml.contains("lc1.server: |") && yaml.contains("forward . 10.96.0.53:53"),
        "{yaml}"
    );
    assert!(yaml.contains("log.override"), "{yaml}");
    assert!(
        !p.read("out/cluster1/kube-system/configmap/coredns.yaml")
            .contains("lc1:53"),
        "corefile mode is per cluster"
    );
    p.dcm(&["plan", "--detailed-exitcode"]).expect(0);
    p.dcm(&["destroy", "--auto-approve"]).expect(0);
    let yaml = p.read("out/cluster1/kube-system/configmap/coredns-custom.yaml");
    assert!(
        yaml.contains("log.override") && !yaml.contains("lc1.server"),
        "{yaml}"
    );
}

#[test]
fn a_missing_coredns_configmap_is_a_clear_error() {
    let p = cloud_project();
    std::fs::remove_file(p.path("out/cluster2/kube-system/configmap/coredns.yaml")).unwrap();
    let r = p.dcm(&["plan"]).expect(1);
    assert!(r.stderr.contains("cannot edit cluster2/core/ConfigMap/kube-system/coredns in cluster `cluster2`: there is no ConfigMap kube-system/coredns"), "{}", r.stderr);
}
