//! Hostile plans and directory targets: saved plans that are swapped, signed or aimed at
//! the state; directories that reach outside themselves; secret fingerprints that could
//! be reversed. Each refusal exits 1, says why, and writes nothing.

use super::harness::{Project, Run};
use sha2::{Digest, Sha256};

const KEY: &str = "test-only-plan-key-0123456789";

fn with_key(p: &Project, args: &[&str]) -> Run {
    let out = p
        .command(args)
        .env("DCM_PLAN_KEY", KEY)
        .output()
        .expect("run dcm");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const ONE_CLUSTER: &str = r#"
[clusters.c1]
dir = "out/c1"

[[resources]]
name = "ns"
clusters = ["c1"]
manifest = { apiVersion = "v1", kind = "Namespace", metadata = { name = "shop" } }
"#;

const ADMIN_BINDING: &str = r#"
[[resources]]
name = "admin"
clusters = ["c1"]
manifest = { apiVersion = "rbac.authorization.k8s.io/v1", kind = "ClusterRoleBinding", metadata = { name = "pwned" }, roleRef = { apiGroup = "rbac.authorization.k8s.io", kind = "ClusterRole", name = "cluster-admin" }, subjects = [{ kind = "User", name = "attacker", apiGroup = "rbac.authorization.k8s.io" }] }
"#;

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Replaces the plan inside `file` by `other`'s, recomputing the plain checksum as an
/// attacker would (over the body the checksum covers).
fn splice(p: &Project, file: &str, other: &str, config: Option<&str>) {
    let mut a: serde_json::Value = serde_json::from_str(&p.read(file)).unwrap();
    let b: serde_json::Value = serde_json::from_str(&p.read(other)).unwrap();
    a["plan"] = b["plan"].clone();
    a["binding"] = b["binding"].clone();
    if let Some(c) = config {
        a["plan"]["config"] = serde_json::json!(c);
    }
    let body = serde_json::to_vec(&serde_json::json!({"binding": a["binding"], "plan": a["plan"]}))
        .unwrap();
    a["checksum"] = serde_json::json!(sha256_hex(&body));
    p.write(file, &serde_json::to_string_pretty(&a).unwrap());
}

#[test]
fn a_swapped_plan_body_is_refused_and_nothing_is_written() {
    let p = Project::new();
    p.write("a.toml", ONE_CLUSTER);
    p.write("b.toml", &format!("{ONE_CLUSTER}{ADMIN_BINDING}"));
    p.dcm(&["plan", "-f", "a.toml", "-o", "A.json"]).expect(0);
    p.dcm(&["plan", "-f", "b.toml", "-o", "B.json"]).expect(0);
    splice(&p, "A.json", "B.json", None);
    let before = p.snapshot();
    // The plan names b.toml; the user applies with a.toml.
    let r = p.dcm(&["apply", "-f", "a.toml", "A.json"]).expect(1);
    assert!(
        r.stderr.contains("fails the config file check: -f names the config file \"a.toml\", but the plan was made from the config file")
            && r.stderr.contains("b.toml\""),
        "{}",
        r.stderr
    );
    assert_eq!(p.snapshot(), before);
    // And with the plan's records rewritten to a.toml: the content is not a.toml's.
    splice(&p, "A.json", "B.json", Some("a.toml"));
    let mut a: serde_json::Value = serde_json::from_str(&p.read("A.json")).unwrap();
    a["binding"]["config_relative"] = serde_json::json!("a.toml");
    a["binding"]["config_absolute"] = serde_json::json!(p.path("a.toml").display().to_string());
    p.write("A.json", &serde_json::to_string_pretty(&a).unwrap());
    splice(&p, "A.json", "A.json", None);
    let before = p.snapshot();
    for args in [
        &["apply", "-f", "a.toml", "A.json"][..],
        &["apply", "A.json"],
    ] {
        let r = p.dcm(args).expect(1);
        assert!(
            r.stderr.contains("fails the config file check"),
            "{}",
            r.stderr
        );
    }
    assert_eq!(p.snapshot(), before);
    assert!(!p.exists("out"));
    assert!(!p.exists("state/dcm.state.json"));
}

#[test]
fn a_plan_is_checked_against_the_files_on_disk() {
    let p = Project::new();
    p.write("dcm.toml", ONE_CLUSTER);
    p.write("manifests/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: default}\ndata: {k: v}\n");
    p.edit(
        "dcm.toml",
        "[[resources]]",
        "[[resources]]\nname = \"cm\"\nclusters = [\"c1\"]\nfile = \"manifests/cm.yaml\"\n\n[[resources]]",
    );
    p.dcm(&["plan", "-o", "plan.json"]).expect(0);
    // A comment in the config: the file is not the one planned.
    p.write("dcm.toml", &format!("# edited\n{}", p.read("dcm.toml")));
    let before = p.snapshot();
    let r = p.dcm(&["apply", "plan.json"]).expect(1);
    assert!(
        r.stderr.contains("fails the config file check: the config file ./dcm.toml is not the one the plan was made from: it changed since"),
        "{}",
        r.stderr
    );
    assert_eq!(p.snapshot(), before);
}

#[test]
fn with_a_plan_key_unsigned_and_wrongly_signed_plans_are_refused() {
    let p = Project::new();
    p.write("dcm.toml", ONE_CLUSTER);
    p.dcm(&["plan", "-o", "unsigned.json"]).expect(0);
    let before = p.snapshot();
    let r = with_key(&p, &["apply", "unsigned.json"]).expect(1);
    assert!(
        r.stderr.contains("is not signed, and DCM_PLAN_KEY is set"),
        "{}",
        r.stderr
    );
    assert_eq!(p.snapshot(), before);

    with_key(&p, &["plan", "-o", "signed.json"]).expect(0);
    let signed = p.read("signed.json");
    assert!(signed.contains("\"signature\": \"hmac-sha256:"), "{signed}");
    assert!(!signed.contains(KEY));
    // Another key: wrongly signed.
    let before = p.snapshot();
    let out = p
        .command(&["apply", "signed.json"])
        .env("DCM_PLAN_KEY", "another-key")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has a wrong signature"));
    assert_eq!(p.snapshot(), before);
    // A swapped body with a recomputed checksum keeps the old signature: refused.
    p.write("b.toml", &format!("{ONE_CLUSTER}{ADMIN_BINDING}"));
    with_key(&p, &["plan", "-f", "b.toml", "-o", "b.json"]).expect(0);
    splice(&p, "signed.json", "b.json", Some("dcm.toml"));
    let before = p.snapshot();
    let r = with_key(&p, &["apply", "signed.json"]).expect(1);
    assert!(r.stderr.contains("has a wrong signature"), "{}", r.stderr);
    assert_eq!(p.snapshot(), before);
    // The right key applies it.
    with_key(&p, &["plan", "-o", "good.json"]).expect(0);
    with_key(&p, &["apply", "good.json"]).expect(0);
    assert!(p.exists("out/c1/_cluster/namespace/shop.yaml"));
}

#[test]
fn plan_out_never_writes_over_the_state_or_a_file_that_is_not_a_plan() {
    let p = Project::new();
    p.write("dcm.toml", ONE_CLUSTER);
    p.dcm(&["apply", "--auto-approve"]).expect(0);
    p.write("notes.txt", "mine\n");
    std::fs::copy(
        p.path("state/dcm.state.json"),
        p.path("state/dcm.state.json.backup"),
    )
    .unwrap();
    for out in [
        "state/dcm.state.json",
        "./state/../state/dcm.state.json",
        "state/dcm.state.json.backup",
        "notes.txt",
        "dcm.toml",
    ] {
        let before = p.snapshot();
        let r = p.dcm(&["plan", "-o", out]).expect(1);
        assert!(
            r.stderr
                .contains(&format!("refusing to write the plan to {out}")),
            "{out}: {}",
            r.stderr
        );
        assert_eq!(p.snapshot(), before, "{out}");
    }
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(p.path("state/dcm.state.json"), p.path("link.json")).unwrap();
        let before = p.snapshot();
        let r = p.dcm(&["plan", "-o", "link.json"]).expect(1);
        assert!(r.stderr.contains("it is the state file"), "{}", r.stderr);
        assert_eq!(p.snapshot(), before);
    }
    // An older plan may be replaced.
    p.dcm(&["plan", "-o", "plan.json"]).expect(0);
    p.dcm(&["plan", "-o", "plan.json"]).expect(0);
}

#[cfg(unix)]
#[test]
fn a_symlinked_folder_or_file_in_a_directory_target_is_refused() {
    let p = Project::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("keep.txt"), "outside").unwrap();
    p.write("dcm.toml", ONE_CLUSTER);
    std::fs::create_dir_all(p.path("out/c1")).unwrap();
    std::os::unix::fs::symlink(outside.path(), p.path("out/c1/_cluster")).unwrap();
    let before = p.snapshot();
    for args in [&["plan"][..], &["apply", "--auto-approve"]] {
        let r = p.dcm(args).expect(1);
        assert!(r.stderr.contains("is a symbolic link"), "{}", r.stderr);
    }
    assert_eq!(p.snapshot(), before);
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);

    // Applied, then the file is swapped for a link to a file outside: destroy deletes
    // nothing through it.
    std::fs::remove_file(p.path("out/c1/_cluster")).unwrap();
    p.dcm(&["apply", "--auto-approve"]).expect(0);
    let file = p.path("out/c1/_cluster/namespace/shop.yaml");
    std::fs::copy(&file, outside.path().join("shop.yaml")).unwrap();
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(outside.path().join("shop.yaml"), &file).unwrap();
    let before = p.snapshot();
    let r = p.dcm(&["destroy", "--auto-approve"]).expect(1);
    assert!(r.stderr.contains("is a symbolic link"), "{}", r.stderr);
    assert_eq!(p.snapshot(), before);
    assert!(outside.path().join("shop.yaml").exists());
}

#[test]
fn a_file_edited_by_hand_is_left_by_destroy() {
    let p = Project::new();
    p.write("dcm.toml", ONE_CLUSTER);
    p.dcm(&["apply", "--auto-approve"]).expect(0);
    let rel = "out/c1/_cluster/namespace/shop.yaml";
    assert!(p.state()["objects"][0]["allocated"]["file_sha256"].is_string());
    p.write(rel, &format!("# kept by hand\n{}", p.read(rel)));
    let r = p.dcm(&["destroy", "--auto-approve"]).expect(0);
    assert!(
        r.stdout.contains("edited by hand since dcm wrote it"),
        "{}",
        r.stdout
    );
    assert!(p.read(rel).starts_with("# kept by hand"));
}

#[test]
fn directory_targets_must_be_their_own() {
    for (dir2, why) in [
        ("/", "is the root of the file system"),
        ("", "it is empty"),
        (".", "is the directory of the config file"),
        ("..", "or holds it"),
        ("out/c1", "is shared with cluster `c1`"),
        ("out/c1/inner", "is shared with cluster `c1`"),
        ("out", "is shared with cluster `c1`"),
    ] {
        let p = Project::new();
        p.write(
            "dcm.toml",
            &format!("{ONE_CLUSTER}\n[clusters.c2]\ndir = \"{dir2}\"\n"),
        );
        let before = p.snapshot();
        let r = p.dcm(&["validate"]).expect(1);
        assert!(
            r.stderr.contains("invalid `dir` of cluster `c2`") && r.stderr.contains(why),
            "{dir2}: {}",
            r.stderr
        );
        assert!(r.stderr.contains("dcm.toml:"), "{dir2}: {}", r.stderr);
        assert_eq!(p.snapshot(), before);
    }
}

const PIN_SECRET: &str = r#"
[clusters.c1]
dir = "out/c1"
secrets = "plaintext"

[[resources]]
name = "pin"
clusters = ["c1"]
manifest = { apiVersion = "v1", kind = "Secret", metadata = { name = "pin", namespace = "default" }, stringData = { pin = "4821" } }
"#;

/// Every run of hex digits of 12 or more in `text`.
fn hex_runs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for ch in text.chars().chain(std::iter::once(' ')) {
        if ch.is_ascii_hexdigit() {
            cur.push(ch.to_ascii_lowercase());
        } else {
            if cur.len() >= 12 {
                out.push(std::mem::take(&mut cur));
            }
            cur.clear();
        }
    }
    out
}

#[test]
fn a_secret_pin_cannot_be_brute_forced_from_plans_or_the_state() {
    let p = Project::new();
    p.write("dcm.toml", PIN_SECRET);
    let mut seen = String::new();
    let mut run = |p: &Project, args: &[&str]| {
        let r = with_key(p, args).expect(0);
        seen.push_str(&r.stdout);
        seen.push_str(&r.stderr);
    };
    for args in [
        &["plan"][..],
        &["plan", "--json"],
        &["plan", "--markdown"],
        &["plan", "-o", "p.json"],
    ] {
        run(&p, args);
    }
    run(&p, &["apply", "p.json"]);
    p.edit("dcm.toml", "4821", "4822");
    for args in [
        &["plan"][..],
        &["plan", "--json"],
        &["plan", "--markdown"],
        &["plan", "-o", "q.json"],
        &["drift", "--json"],
    ] {
        let r = with_key(&p, args);
        seen.push_str(&r.stdout);
        seen.push_str(&r.stderr);
    }
    seen.push_str(&p.read("p.json"));
    seen.push_str(&p.read("q.json"));
    seen.push_str(&p.read("state/dcm.state.json"));
    assert!(seen.contains("(sensitive, hmac:"), "{seen}");
    let b64 = "NDgyMQ==";
    assert!(!seen.contains("4821") && !seen.contains(b64) && !seen.contains("NDgyMQ"));

    // Every hash shown: none is a plain sha256 of any PIN, of its base64, or of the
    // Secret object holding it (nor a prefix of one).
    let runs = hex_runs(&seen);
    assert!(!runs.is_empty());
    let object = |pin: &str, b64: &str| {
        let _ = pin;
        serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "pin", "namespace": "default"}, "data": {"pin": b64}})
    };
    for n in 0..10_000 {
        let pin = format!("{n:04}");
        let enc = base64(pin.as_bytes());
        let candidates = [
            sha256_hex(pin.as_bytes()),
            sha256_hex(enc.as_bytes()),
            sha256_hex(&serde_json::to_vec(&object(&pin, &enc)).unwrap()),
            sha256_hex(format!("dcm-secret\0default\0pin\0pin\0{enc}").as_bytes()),
        ];
        for c in &candidates {
            for r in &runs {
                assert!(
                    !c.starts_with(r.as_str()) && !r.contains(c.as_str()),
                    "PIN {pin} is found from {r}"
                );
            }
        }
    }
}

#[test]
fn a_first_plan_without_a_key_shows_no_secret_hash_and_cannot_be_applied_saved() {
    let p = Project::new();
    p.write("dcm.toml", PIN_SECRET);
    let r = p.dcm(&["plan", "-o", "p.json"]).expect(0);
    assert!(
        r.stdout.contains("pin: (sensitive, value 1)"),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("made without a key"), "{}", r.stderr);
    let saved = p.read("p.json");
    let doc: serde_json::Value = serde_json::from_str(&saved).unwrap();
    let secret = doc["plan"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "c1/core/Secret/default/pin")
        .expect("the Secret is planned");
    assert!(secret["after_sha256"].is_null(), "{secret}");
    assert!(doc["binding"]["secrets_unbound"] == true, "{doc}");
    let before = p.snapshot();
    let r = p.dcm(&["apply", "p.json"]).expect(1);
    assert!(r.stderr.contains("set DCM_PLAN_KEY"), "{}", r.stderr);
    assert_eq!(p.snapshot(), before);
    // Deterministic: the same inputs give the same plan, byte for byte.
    let a = p.dcm(&["plan", "--json"]).expect(0).stdout;
    let b = p.dcm(&["plan", "--json"]).expect(0).stdout;
    assert_eq!(a, b);
    let a = with_key(&p, &["plan", "--json"]).stdout;
    let b = with_key(&p, &["plan", "--json"]).stdout;
    assert_eq!(a, b);
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
