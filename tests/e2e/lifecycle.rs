//! The whole life of a configuration: plan, apply, edit, remove, destroy.

use super::harness::Project;

#[test]
fn plan_apply_edit_remove_converge() {
    let p = Project::two_clusters();

    // A first plan creates everything, and changes nothing on disk.
    let plan = p.dcm(&["plan", "--detailed-exitcode"]).expect(2);
    assert!(
        plan.stdout
            .contains("Plan: 4 to add, 0 to change, 0 to destroy."),
        "{}",
        plan.stdout
    );
    assert!(!p.exists("out") && !p.exists("state/dcm.state.json"));

    // Apply writes one file per object, in the design's layout, and records each in the state.
    let apply = p.dcm(&["apply", "--auto-approve"]).expect(0);
    assert!(
        apply
            .stdout
            .contains("Apply complete! Resources: 4 added, 0 changed, 0 destroyed."),
        "{}",
        apply.stdout
    );
    assert_eq!(
        p.files("out"),
        [
            "cluster1/_cluster/namespace/bookinfo.yaml",
            "cluster1/bookinfo/configmap/settings.yaml",
            "cluster1/bookinfo/secret/db.yaml",
            "cluster2/_cluster/namespace/bookinfo.yaml",
        ]
    );
    // The namespace was created before the objects in it.
    let ns_line = apply
        .stdout
        .find("cluster1/core/Namespace/_cluster/bookinfo: created")
        .unwrap();
    let cm_line = apply
        .stdout
        .find("cluster1/core/ConfigMap/bookinfo/settings: created")
        .unwrap();
    assert!(ns_line < cm_line, "{}", apply.stdout);
    assert_eq!(
        p.state_addresses(),
        [
            "cluster1/core/ConfigMap/bookinfo/settings",
            "cluster1/core/Namespace/_cluster/bookinfo",
            "cluster1/core/Secret/bookinfo/db",
            "cluster2/core/Namespace/_cluster/bookinfo",
        ]
    );

    // Idempotence: nothing left to do, and --detailed-exitcode says so with 0.
    let again = p.dcm(&["plan", "--detailed-exitcode"]).expect(0);
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);

    // An edit shows exactly that change.
    p.edit("manifests/app.yaml", "greeting: hello", "greeting: bonjour");
    let edit = p.dcm(&["plan", "--detailed-exitcode"]).expect(2);
    assert!(
        edit.stdout
            .contains("Plan: 0 to add, 1 to change, 0 to destroy."),
        "{}",
        edit.stdout
    );
    assert!(edit
        .stdout
        .contains("~ cluster1/core/ConfigMap/bookinfo/settings will be updated in place"));
    let changed: Vec<&str> = edit
        .stdout
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("- ") || l.starts_with("+ "))
        .collect();
    assert_eq!(
        changed,
        ["-   greeting: hello", "+   greeting: bonjour"],
        "{}",
        edit.stdout
    );

    // Removing an object from the file plans its deletion.
    let edited = super::harness::APP_YAML.replace("greeting: hello", "greeting: bonjour");
    p.write("manifests/app.yaml", edited.split("---").next().unwrap());
    let remove = p.dcm(&["plan", "--detailed-exitcode"]).expect(2);
    assert!(
        remove
            .stdout
            .contains("Plan: 0 to add, 1 to change, 1 to destroy."),
        "{}",
        remove.stdout
    );
    assert!(
        remove
            .stdout
            .contains("- cluster1/core/Secret/bookinfo/db will be destroyed"),
        "{}",
        remove.stdout
    );

    p.dcm(&["apply", "--auto-approve"]).expect(0);
    assert!(
        !p.exists("out/cluster1/bookinfo/secret"),
        "the Secret's file and empty kind directory are gone"
    );
    assert!(p
        .read("out/cluster1/bookinfo/configmap/settings.yaml")
        .contains("greeting: bonjour"));
    assert!(!p.state_addresses().iter().any(|a| a.contains("Secret")));
    p.dcm(&["plan", "--detailed-exitcode"]).expect(0);

    // Destroy removes what dcm created, dependents before the namespace they live in.
    let destroy = p.dcm(&["destroy", "--auto-approve"]).expect(0);
    let cm = destroy
        .stdout
        .find("cluster1/core/ConfigMap/bookinfo/settings: destroyed")
        .unwrap();
    let ns = destroy
        .stdout
        .find("cluster1/core/Namespace/_cluster/bookinfo: destroyed")
        .unwrap();
    assert!(cm < ns, "{}", destroy.stdout);
    assert!(p.files("out").is_empty(), "{:?}", p.files("out"));
    assert!(p.state_addresses().is_empty());
}

#[test]
fn plans_are_byte_identical_in_every_format() {
    let p = Project::two_clusters();
    for args in [&["plan"][..], &["plan", "--json"], &["plan", "--markdown"]] {
        let a = p.dcm(args).expect(0).stdout;
        let b = p.dcm(args).expect(0).stdout;
        assert_eq!(a, b, "{args:?}");
    }
    let json: serde_json::Value = serde_json::from_str(&p.dcm(&["plan", "--json"]).stdout).unwrap();
    assert_eq!(json["summary"]["add"], 4);
    let addrs: Vec<&str> = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["address"].as_str().unwrap())
        .collect();
    let mut sorted = addrs.clone();
    sorted.sort();
    assert_eq!(addrs, sorted, "changes are listed in address order");
    let md = p.dcm(&["plan", "--markdown"]).stdout;
    assert!(
        md.contains("**Plan: 4 to add, 0 to change, 0 to destroy.**") && md.contains("```diff"),
        "{md}"
    );
}

#[test]
fn saved_plans_apply_exactly_and_refuse_when_stale_or_tampered() {
    let p = Project::two_clusters();
    // The project writes a Secret before any state exists: a saved plan binds its value
    // with a key only (see docs/formats.md).
    let dcm = |args: &[&str]| {
        let out = p
            .command(args)
            .env("DCM_PLAN_KEY", "test-only-plan-key")
            .output()
            .expect("run dcm");
        super::harness::Run::from_output(out)
    };
    dcm(&["plan", "-o", "plan.json"]).expect(0);
    dcm(&["show", "plan.json"])
        .expect(0)
        .stdout
        .contains("Plan: 4 to add");

    // The world moved: the file now wants something else.
    p.edit("manifests/app.yaml", "greeting: hello", "greeting: hi");
    let stale = dcm(&["apply", "plan.json"]).expect(1);
    assert!(stale.stderr.contains("the saved plan plan.json fails the inputs check: the config file or a file it reads (manifests, certificates, tokens) changed since it was made: cluster1/core/ConfigMap/bookinfo/settings is not what it was"), "{}", stale.stderr);
    assert!(!p.exists("out"));
    p.edit("manifests/app.yaml", "greeting: hi", "greeting: hello");

    // A hand-edited plan is refused.
    let text = p.read("plan.json");
    p.write(
        "tampered.json",
        &text.replacen("\"create\"", "\"delete\"", 1),
    );
    let bad = dcm(&["apply", "tampered.json"]).expect(1);
    assert!(
        bad.stderr.contains("was modified after it was saved"),
        "{}",
        bad.stderr
    );

    // Exactly as planned: applies without asking, even with stdin closed.
    let ok = dcm(&["apply", "plan.json"]).expect(0);
    assert!(ok.stdout.contains("4 added"), "{}", ok.stdout);

    // The same plan again is stale: the state moved on.
    let twice = dcm(&["apply", "plan.json"]).expect(1);
    assert!(
        twice
            .stderr
            .contains("fails the state serial check: the state")
            && twice
                .stderr
                .contains("changed since the plan was made (serial 0 then"),
        "{}",
        twice.stderr
    );
}

#[test]
fn drift_reports_changed_and_deleted_objects() {
    let p = Project::two_clusters();
    p.dcm(&["drift"]).expect(0); // no state yet: nothing to drift
    p.dcm(&["apply", "--auto-approve"]).expect(0);
    p.dcm(&["drift"]).expect(0);

    p.edit(
        "out/cluster1/bookinfo/configmap/settings.yaml",
        "greeting: hello",
        "greeting: tampered",
    );
    std::fs::remove_file(p.path("out/cluster2/_cluster/namespace/bookinfo.yaml")).unwrap();
    let d = p.dcm(&["drift"]).expect(2);
    assert!(d.stdout.contains("Drift in 2 of 4 objects"), "{}", d.stdout);
    assert!(d
        .stdout
        .contains("cluster1/core/ConfigMap/bookinfo/settings changed outside dcm"));
    assert!(d.stdout.contains("+   greeting: tampered"), "{}", d.stdout);
    assert!(d
        .stdout
        .contains("cluster2/core/Namespace/_cluster/bookinfo was deleted outside dcm"));
    let j: serde_json::Value =
        serde_json::from_str(&p.dcm(&["drift", "--json"]).expect(2).stdout).unwrap();
    assert_eq!(j["objects"].as_array().unwrap().len(), 2);

    // The plan explains and repairs it.
    let plan = p.dcm(&["plan"]).expect(0);
    assert!(
        plan.stdout
            .contains("Plan: 1 to add, 1 to change, 0 to destroy."),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("it was deleted outside dcm"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("it changed outside dcm since the last apply"),
        "{}",
        plan.stdout
    );
    p.dcm(&["apply", "--auto-approve"]).expect(0);
    p.dcm(&["drift"]).expect(0);
}

#[test]
fn graph_validate_state_commands_and_completions() {
    let p = Project::two_clusters();
    let v = p.dcm(&["validate"]).expect(0);
    assert!(v.stdout.contains("2 clusters, 4 objects"), "{}", v.stdout);

    let dot = p.dcm(&["graph"]).expect(0).stdout;
    assert!(dot.starts_with("digraph dcm {"), "{dot}");
    assert!(dot.contains("\"cluster1/core/ConfigMap/bookinfo/settings\" -> \"cluster1/core/Namespace/_cluster/bookinfo\";"), "{dot}");

    p.dcm(&["apply", "--auto-approve"]).expect(0);
    let list = p.dcm(&["state", "list"]).expect(0).stdout;
    assert_eq!(list.lines().count(), 4);
    let show = p
        .dcm(&["state", "show", "cluster1/core/Secret/bookinfo/db"])
        .expect(0)
        .stdout;
    assert!(
        show.contains("\"sha256\"") && !show.contains("hunter2"),
        "{show}"
    );
    let missing = p
        .dcm(&["state", "show", "cluster1/core/Secret/bookinfo/dbx"])
        .expect(1);
    assert!(
        missing
            .stderr
            .contains("did you mean cluster1/core/Secret/bookinfo/db?"),
        "{}",
        missing.stderr
    );
    assert!(p.dcm(&["show"]).expect(0).stdout.contains("4 objects"));

    // `state rm` forgets: the object stays, and a later removal from the file leaves it alone.
    p.dcm(&["state", "rm", "cluster2/core/Namespace/_cluster/bookinfo"])
        .expect(0);
    assert!(p.exists("out/cluster2/_cluster/namespace/bookinfo.yaml"));
    assert_eq!(p.state_addresses().len(), 3);

    for shell in ["bash", "zsh", "fish"] {
        let c = p.dcm(&["completions", shell]).expect(0);
        assert!(c.stdout.contains("force-unlock"), "{shell}");
    }
    let help = p.dcm(&["apply", "--help"]).expect(0).stdout;
    assert!(
        help.contains("--auto-approve") && help.contains("saved plan"),
        "{help}"
    );
}
