//! Self-contained saved plans, and the Terraform verbs: `plan --destroy -o`, `--target`,
//! `--refresh-only`. Every refusal of a saved plan names the check that failed and what to
//! run, and writes nothing.

use super::harness::{Project, Run};

const KEY: &str = "test-only-plan-key-verbs";
const SECRET: &str = "hunter2-very-secret";

/// Runs dcm with `DCM_PLAN_KEY` set (the project writes a Secret before any state exists)
/// in `dir` (the project's directory when None).
fn run_in(p: &Project, dir: Option<&std::path::Path>, args: &[&str]) -> Run {
    let mut c = p.command(args);
    c.env("DCM_PLAN_KEY", KEY);
    if let Some(d) = dir {
        c.current_dir(d);
    }
    Run::from_output(c.output().expect("run dcm"))
}

fn dcm(p: &Project, args: &[&str]) -> Run {
    run_in(p, None, args)
}

/// Asserts that `r` refused a saved plan for failing `check`, with `why` in the message
/// and a help line that says what to run.
fn assert_refused(r: &Run, check: &str, why: &str, help: &str) {
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!("fails the {check} check")),
        "check {check}: {}",
        r.stderr
    );
    assert!(r.stderr.contains(why), "why {why:?}: {}", r.stderr);
    assert!(r.stderr.contains("nothing was applied"), "{}", r.stderr);
    let after = &r.stderr[r.stderr.find("fails the").unwrap_or(0)..];
    let help_line = after
        .lines()
        .find(|l| l.trim_start().starts_with("= help:"))
        .unwrap_or_else(|| panic!("no help line: {}", r.stderr));
    assert!(help_line.contains(help), "help {help:?}: {help_line}");
}

#[test]
fn a_saved_plan_applies_from_any_directory_with_its_own_state_and_config() {
    let p = Project::two_clusters();
    dcm(
        &p,
        &["plan", "--state", "st/main.json", "-o", "plans/p.json"],
    )
    .expect(0);
    let plan_text = p.read("plans/p.json");
    // Secrets stay out of the plan, plain or base64.
    for leak in [SECRET, "aHVudGVyMi12ZXJ5LXNlY3JldA", KEY] {
        assert!(!plan_text.contains(leak), "{leak} is in the plan file");
    }
    let saved: serde_json::Value = serde_json::from_str(&plan_text).unwrap();
    assert_eq!(saved["binding"]["config_relative"], "../dcm.toml");
    assert!(saved["binding"]["state_location"]
        .as_str()
        .unwrap()
        .ends_with("st/main.json"));
    assert!(plan_text.contains("\"password\": \"(sensitive)\""));

    // From another directory, by a relative path, without -f or --state.
    let elsewhere = tempfile::tempdir().unwrap();
    let rel = pathdiff(elsewhere.path(), &p.path("plans/p.json"));
    let r = run_in(&p, Some(elsewhere.path()), &["apply", &rel]).expect(0);
    assert!(r.stdout.contains("4 added"), "{}", r.stdout);
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    assert!(p.exists("out/cluster1/bookinfo/secret/db.yaml"));
    assert!(p.exists("st/main.json") && !p.exists("state/dcm.state.json"));

    // A plan moved away from its config finds it by its absolute path; -f with the same
    // content elsewhere is accepted too.
    p.edit("manifests/app.yaml", "greeting: hello", "greeting: hi");
    dcm(
        &p,
        &["plan", "--state", "st/main.json", "-o", "plans/q.json"],
    )
    .expect(0);
    let moved = elsewhere.path().join("q.json");
    std::fs::copy(p.path("plans/q.json"), &moved).unwrap();
    std::fs::copy(p.path("dcm.toml"), elsewhere.path().join("dcm.toml")).unwrap();
    let r = run_in(&p, Some(elsewhere.path()), &["apply", "q.json"]).expect(0);
    assert!(r.stdout.contains("1 changed"), "{}", r.stdout);
    assert!(p
        .read("out/cluster1/bookinfo/configmap/settings.yaml")
        .contains("greeting: hi"));
}

/// `to` relative to `from` (both absolute), for a relative path on the command line.
fn pathdiff(from: &std::path::Path, to: &std::path::Path) -> String {
    let from = std::fs::canonicalize(from).unwrap();
    let to = std::fs::canonicalize(to).unwrap();
    let a: Vec<_> = from.components().collect();
    let b: Vec<_> = to.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = std::path::PathBuf::new();
    for _ in common..a.len() {
        out.push("..");
    }
    for c in &b[common..] {
        out.push(c.as_os_str());
    }
    out.display().to_string()
}

#[test]
fn every_refusal_of_a_saved_plan_names_its_check_and_what_to_run() {
    let p = Project::two_clusters();
    dcm(&p, &["apply", "--auto-approve"]).expect(0);
    p.edit("manifests/app.yaml", "greeting: hello", "greeting: hi");
    dcm(&p, &["plan", "-o", "plan.json"]).expect(0);
    let replan = "make a new plan with `dcm plan -f ";
    let before = p.snapshot();

    // The config file changed.
    p.write("dcm.toml", &format!("# edited\n{}", p.read("dcm.toml")));
    let r = dcm(&p, &["apply", "plan.json"]);
    assert_refused(
        &r,
        "config file",
        "is not the one the plan was made from: it changed since",
        replan,
    );
    p.write("dcm.toml", super::harness::TWO_CLUSTERS);

    // A file the config reads changed: the object is named.
    p.edit("manifests/app.yaml", "greeting: hi", "greeting: hey");
    let r = dcm(&p, &["apply", "plan.json"]);
    assert_refused(
        &r,
        "inputs",
        "cluster1/core/ConfigMap/bookinfo/settings is not what it was",
        replan,
    );
    // Only a Secret's value changed: named without showing it.
    p.edit("manifests/app.yaml", "greeting: hey", "greeting: hi");
    p.edit("manifests/app.yaml", SECRET, "another-password");
    let r = dcm(&p, &["apply", "plan.json"]);
    assert_refused(
        &r,
        "inputs",
        "a Secret value of cluster1/core/Secret/bookinfo/db changed",
        replan,
    );
    assert!(!r.stderr.contains("another-password"));
    p.edit("manifests/app.yaml", "another-password", SECRET);
    assert_eq!(p.snapshot(), before);

    // -f and --state that disagree with the plan: both named.
    p.write(
        "other.toml",
        &super::harness::TWO_CLUSTERS.replace("out/cluster2", "out/c2"),
    );
    let before = p.snapshot();
    let r = dcm(&p, &["apply", "-f", "other.toml", "plan.json"]);
    assert_refused(
        &r,
        "config file",
        "-f names the config file \"other.toml\", but the plan was made from the config file",
        "leave -f out",
    );
    assert!(r.stderr.contains("dcm.toml\""), "{}", r.stderr);
    let r = dcm(&p, &["apply", "--state", "elsewhere.json", "plan.json"]);
    assert_refused(
        &r,
        "state location",
        "--state names the state ",
        "leave --state out",
    );
    assert!(
        r.stderr
            .contains("elsewhere.json, but the plan was made against the state "),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("state/dcm.state.json"), "{}", r.stderr);
    assert_eq!(p.snapshot(), before);

    // The config is nowhere the plan records: say so, and how to give it.
    std::fs::rename(p.path("dcm.toml"), p.path("moved.toml")).unwrap();
    let r = dcm(&p, &["apply", "plan.json"]);
    assert_refused(
        &r,
        "config file",
        "cannot find the config file it was made from",
        "pass the config file the plan was made from with -f",
    );

    // A plan that does not record where it was made (an older dcm's).
    let mut old: serde_json::Value = serde_json::from_str(&p.read("plan.json")).unwrap();
    for k in [
        "state_location",
        "config_relative",
        "config_absolute",
        "objects",
    ] {
        old["binding"].as_object_mut().unwrap().remove(k);
    }
    use sha2::Digest;
    let body =
        serde_json::to_vec(&serde_json::json!({"binding": old["binding"], "plan": old["plan"]}))
            .unwrap();
    old["checksum"] = serde_json::json!(hex::encode(sha2::Sha256::digest(&body)));
    old.as_object_mut().unwrap().remove("signature");
    p.write("old.json", &serde_json::to_string_pretty(&old).unwrap());
    let out = p
        .command(&["apply", "-f", "moved.toml", "old.json"])
        .output()
        .unwrap();
    let r = Run::from_output(out);
    assert_refused(
        &r,
        "format",
        "made by an older dcm",
        "make a new plan with `dcm plan -o PLAN`",
    );

    // A damaged plan, and a plan signed with another key.
    p.write(
        "damaged.json",
        &p.read("plan.json")
            .replacen("greeting: hi", "greeting: ho", 1),
    );
    let r = dcm(&p, &["apply", "-f", "moved.toml", "damaged.json"]).expect(1);
    assert!(
        r.stderr.contains("fails the checksum check"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("= help: make a new plan with `dcm plan -o PLAN`"),
        "{}",
        r.stderr
    );
    let out = p
        .command(&["apply", "-f", "moved.toml", "plan.json"])
        .env("DCM_PLAN_KEY", "another-key")
        .output()
        .unwrap();
    let r = Run::from_output(out).expect(1);
    assert!(
        r.stderr.contains("fails the signature check"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("= help: make the plan again"),
        "{}",
        r.stderr
    );

    // Given with -f (same content), it applies; the same plan again is stale.
    dcm(
        &p,
        &[
            "apply",
            "-f",
            "moved.toml",
            "--state",
            "./state/../state/dcm.state.json",
            "plan.json",
        ],
    )
    .expect(0);
    std::fs::rename(p.path("moved.toml"), p.path("dcm.toml")).unwrap();
    let before = p.snapshot();
    let r = dcm(&p, &["apply", "plan.json"]);
    assert_refused(
        &r,
        "state serial",
        "changed since the plan was made (serial",
        replan,
    );
    assert!(r.stderr.contains("--state"), "{}", r.stderr);
    assert_eq!(p.snapshot(), before);

    // Another state at the plan's state location.
    p.edit("manifests/app.yaml", "greeting: hi", "greeting: hello");
    dcm(&p, &["plan", "-o", "plan2.json"]).expect(0);
    let other = Project::two_clusters();
    dcm(&other, &["apply", "--auto-approve"]).expect(0);
    std::fs::copy(
        other.path("state/dcm.state.json"),
        p.path("state/dcm.state.json"),
    )
    .unwrap();
    let before = p.snapshot();
    let r = dcm(&p, &["apply", "plan2.json"]);
    assert_refused(&r, "state lineage", "is another state (lineage", replan);
    assert_eq!(p.snapshot(), before);
    // And no state at all where the plan's was.
    std::fs::remove_file(p.path("state/dcm.state.json")).unwrap();
    let r = dcm(&p, &["apply", "plan2.json"]);
    assert_refused(
        &r,
        "state lineage",
        "there is no state at",
        "restore that state, or make a new plan",
    );
}

#[test]
fn plan_destroy_saves_a_plan_that_apply_carries_out() {
    let p = Project::two_clusters();
    dcm(&p, &["apply", "--auto-approve"]).expect(0);
    // Unattended destroy points at the reviewed way.
    let r = p.dcm(&["destroy"]).expect(1);
    assert!(
        r.stderr.contains("`dcm plan --destroy -o PLAN`") && r.stderr.contains("`dcm apply PLAN`"),
        "{}",
        r.stderr
    );
    let before = p.snapshot();
    let plan = dcm(
        &p,
        &[
            "plan",
            "--destroy",
            "-o",
            "destroy.json",
            "--detailed-exitcode",
        ],
    )
    .expect(2);
    assert!(plan.stdout.contains("(destroy)"), "{}", plan.stdout);
    assert!(
        plan.stdout.contains("0 to add, 0 to change, 4 to destroy"),
        "{}",
        plan.stdout
    );
    let mut after_plan = p.snapshot();
    after_plan.retain(|(n, _)| n != "destroy.json");
    assert_eq!(after_plan, before, "planning changed nothing");
    let r = dcm(&p, &["apply", "destroy.json"]).expect(0);
    assert!(
        r.stdout
            .contains("Destroy complete! Resources: 0 added, 0 changed, 4 destroyed."),
        "{}",
        r.stdout
    );
    assert!(p.files("out").is_empty(), "{:?}", p.files("out"));
    assert!(p.state_addresses().is_empty());
}

#[test]
fn target_plans_only_the_matches_and_what_they_need() {
    let p = Project::two_clusters();
    let r = dcm(
        &p,
        &["plan", "--target", "cluster1/*/ConfigMap/*", "-o", "t.json"],
    )
    .expect(0);
    assert!(
        r.stdout
            .contains("this plan is partial (--target cluster1/*/ConfigMap/*)"),
        "{}",
        r.stdout
    );
    // The ConfigMap and its namespace; not the Secret beside it, nor the other cluster.
    assert!(r.stdout.contains("Plan: 2 to add"), "{}", r.stdout);
    assert!(r
        .stdout
        .contains("cluster1/core/Namespace/_cluster/bookinfo will be created"));
    assert!(
        !r.stdout.contains("Secret") && !r.stdout.contains("cluster2"),
        "{}",
        r.stdout
    );
    let shown = p.dcm(&["show", "t.json"]).expect(0);
    assert!(
        shown.stdout.contains("this plan is partial"),
        "{}",
        shown.stdout
    );
    let saved: serde_json::Value = serde_json::from_str(&p.read("t.json")).unwrap();
    assert_eq!(
        saved["plan"]["targets"],
        serde_json::json!(["cluster1/*/ConfigMap/*"])
    );
    let json = dcm(
        &p,
        &["plan", "--json", "--target", "cluster1/*/ConfigMap/*"],
    )
    .expect(0);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("one JSON document");
    assert_eq!(
        doc["targets"],
        serde_json::json!(["cluster1/*/ConfigMap/*"])
    );
    assert!(
        json.stderr.contains("this plan is partial"),
        "{}",
        json.stderr
    );

    // A saved partial plan applies as it is; --target with a saved plan is refused.
    let r = dcm(&p, &["apply", "t.json", "--target", "x"]).expect(1);
    assert!(
        r.stderr.contains("already records what it does"),
        "{}",
        r.stderr
    );
    let r = dcm(&p, &["apply", "t.json"]).expect(0);
    assert!(r.stdout.contains("this plan is partial"), "{}", r.stdout);
    assert_eq!(
        p.files("out"),
        [
            "cluster1/_cluster/namespace/bookinfo.yaml",
            "cluster1/bookinfo/configmap/settings.yaml"
        ]
    );

    // A glob that matches nothing is an error, and changes nothing.
    let before = p.snapshot();
    let r = dcm(&p, &["plan", "--target", "cluster3/*"]).expect(1);
    assert!(
        r.stderr.contains("--target cluster3/* matches no object"),
        "{}",
        r.stderr
    );
    let r = dcm(
        &p,
        &[
            "apply",
            "--auto-approve",
            "--target",
            "c?uster1/core/Secret/nope",
        ],
    )
    .expect(1);
    assert!(r.stderr.contains("matches no object"), "{}", r.stderr);
    assert_eq!(p.snapshot(), before);

    // apply --target with repeated globs.
    let r = dcm(
        &p,
        &[
            "apply",
            "--auto-approve",
            "--target",
            "*/Secret/*",
            "--target",
            "cluster2/*",
        ],
    )
    .expect(0);
    assert!(r.stdout.contains("2 added"), "{}", r.stdout);
    assert_eq!(p.files("out").len(), 4);

    // Deletes of objects outside the targets stay out of the plan.
    let whole = p.read("dcm.toml");
    let without_app = whole
        .split("[[resources]]\nname = \"app\"")
        .next()
        .unwrap()
        .to_string();
    p.write("dcm.toml", &without_app);
    let r = dcm(&p, &["plan", "--target", "cluster2/*"]).expect(0);
    assert!(r.stdout.contains("No changes."), "{}", r.stdout);
    let r = dcm(&p, &["plan", "--target", "cluster1/core/Secret/*"]).expect(0);
    assert!(
        r.stdout
            .contains("Plan: 0 to add, 0 to change, 1 to destroy."),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("ConfigMap"), "{}", r.stdout);
    p.write("dcm.toml", &whole);

    // destroy --target: the target and what depends on it (what is in the namespace).
    let r = dcm(
        &p,
        &[
            "destroy",
            "--auto-approve",
            "--target",
            "cluster1/core/Namespace/_cluster/bookinfo",
        ],
    )
    .expect(0);
    assert!(r.stdout.contains("3 destroyed"), "{}", r.stdout);
    assert!(r.stdout.contains("this plan is partial"), "{}", r.stdout);
    assert_eq!(
        p.files("out"),
        ["cluster2/_cluster/namespace/bookinfo.yaml"]
    );
    assert_eq!(
        p.state_addresses(),
        ["cluster2/core/Namespace/_cluster/bookinfo"]
    );
}

#[test]
fn refresh_only_records_live_values_and_writes_no_cluster() {
    let p = Project::two_clusters();
    dcm(&p, &["apply", "--auto-approve"]).expect(0);
    // Changed and deleted outside dcm.
    p.edit(
        "out/cluster1/bookinfo/configmap/settings.yaml",
        "greeting: hello",
        "greeting: edited",
    );
    std::fs::remove_file(p.path("out/cluster2/_cluster/namespace/bookinfo.yaml")).unwrap();
    p.dcm(&["drift"]).expect(2);

    // Unattended, refresh-only asks for a reviewed plan too.
    let r = p.dcm(&["apply", "--refresh-only"]).expect(1);
    assert!(
        r.stderr.contains("`dcm plan --refresh-only -o PLAN`"),
        "{}",
        r.stderr
    );

    let out_before = p.files("out");
    let bytes_before: Vec<Vec<u8>> = out_before
        .iter()
        .map(|f| std::fs::read(p.path(&format!("out/{f}"))).unwrap())
        .collect();
    let r = dcm(
        &p,
        &[
            "plan",
            "--refresh-only",
            "-o",
            "refresh.json",
            "--detailed-exitcode",
        ],
    )
    .expect(2);
    assert!(
        r.stdout
            .contains("cluster1/core/ConfigMap/bookinfo/settings"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("the state will record its live value"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("+   greeting: edited"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("cluster2/core/Namespace/_cluster/bookinfo will be removed from the state"),
        "{}",
        r.stdout
    );
    let r = dcm(&p, &["apply", "refresh.json"]).expect(0);
    assert!(
        r.stdout
            .contains("1 recorded, 1 forgotten; no cluster was changed"),
        "{}",
        r.stdout
    );

    // No cluster was written: every file is byte for byte what it was.
    assert_eq!(p.files("out"), out_before);
    for (f, b) in out_before.iter().zip(&bytes_before) {
        assert_eq!(
            &std::fs::read(p.path(&format!("out/{f}"))).unwrap(),
            b,
            "{f}"
        );
    }
    let r = p.dcm(&["drift"]).expect(0);
    assert!(r.stdout.contains("No drift"), "{}", r.stdout);
    assert!(!p
        .state_addresses()
        .contains(&"cluster2/core/Namespace/_cluster/bookinfo".to_string()));
    // The next plan puts back what the file wants.
    let r = p.dcm(&["plan"]).expect(0);
    assert!(
        r.stdout
            .contains("Plan: 1 to add, 1 to change, 0 to destroy."),
        "{}",
        r.stdout
    );

    // A refresh with nothing to record; and --refresh-only --auto-approve in one step.
    p.edit(
        "out/cluster1/bookinfo/configmap/settings.yaml",
        "greeting: edited",
        "greeting: again",
    );
    let r = dcm(&p, &["apply", "--refresh-only", "--auto-approve"]).expect(0);
    assert!(r.stdout.contains("1 recorded, 0 forgotten"), "{}", r.stdout);
    p.dcm(&["drift"]).expect(0);
    assert!(p
        .read("out/cluster1/bookinfo/configmap/settings.yaml")
        .contains("greeting: again"));
}

#[test]
fn a_saved_plan_holds_no_ca_key_and_no_token_and_applies_from_elsewhere() {
    let p = super::examples::example_project("primary-remote.toml");
    dcm(
        &p,
        &["plan", "-f", "primary-remote.toml", "-o", "plan.json"],
    )
    .expect(0);
    let plan = p.read("plan.json");
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    // Every token and private key the example reads: whole (as a Secret's data holds them,
    // base64), and each line of a key's body.
    let mut secrets: Vec<String> = Vec::new();
    for f in p.files("certs") {
        if f.ends_with("key.pem") || f.ends_with(".token") {
            let bytes = std::fs::read(p.path(&format!("certs/{f}"))).unwrap();
            secrets.push(b64(&bytes)[..40].to_string());
            let text = String::from_utf8_lossy(&bytes).into_owned();
            secrets.push(b64(text.trim().as_bytes())[..20].to_string());
            secrets.extend(
                text.lines()
                    .filter(|l| !l.starts_with("-----") && l.trim().len() > 20)
                    .map(str::to_string),
            );
        }
    }
    assert!(secrets.len() > 8, "{secrets:?}");
    for s in &secrets {
        assert!(!plan.contains(s.as_str()), "a secret is in the plan: {s}");
    }
    let elsewhere = tempfile::tempdir().unwrap();
    let path = p.path("plan.json").display().to_string();
    run_in(&p, Some(elsewhere.path()), &["apply", &path]).expect(0);
    p.dcm(&["plan", "-f", "primary-remote.toml", "--detailed-exitcode"])
        .expect(0);
    // The values looked for are real: the clusters got them.
    let written: String = p
        .files("out")
        .iter()
        .map(|f| p.read(&format!("out/{f}")))
        .collect();
    let found = secrets
        .iter()
        .filter(|s| written.contains(s.as_str()))
        .count();
    assert!(found >= 2, "{found} of {} found in out/", secrets.len());
}
