//! Logical clouds compiled to objects, applied on directory targets.

use super::harness::Project;

const CLOUD: &str = r#"
[ca]
root_cert = "certs/root-cert.pem"
ca_cert = "certs/ca-cert.pem"
ca_key = "certs/ca-key.pem"
cert_chain = "certs/cert-chain.pem"

[clusters.cluster1]
dir = "out/cluster1"
pod_cidr = "10.1.0.0/16"
service_cidr = "10.96.0.0/16"
gateway = "192.0.2.10:15443"

[clusters.cluster2]
dir = "out/cluster2"
pod_cidr = "10.2.0.0/16"
service_cidr = "10.97.0.0/16"
gateway = "192.0.2.20:15443"

[logical_clouds.lc1]
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

fn cloud_project() -> Project {
    let p = Project::new();
    p.write("dcm.toml", CLOUD);
    let certs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/certs");
    for f in [
        "root-cert.pem",
        "ca-cert.pem",
        "ca-key.pem",
        "cert-chain.pem",
    ] {
        p.write(
            &format!("certs/{f}"),
            &std::fs::read_to_string(certs.join(f)).unwrap(),
        );
    }
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
        seen.contains("ca-key.pem: (sensitive, sha256:"),
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
