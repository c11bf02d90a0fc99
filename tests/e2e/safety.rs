//! Safety: never delete what dcm did not create, never leak secrets, survive failures and
//! kills.

use super::harness::Project;
use std::time::{Duration, Instant};

#[test]
fn files_dcm_did_not_write_are_read_but_never_deleted() {
    let p = Project::two_clusters();
    // A live object the file does not mention.
    p.write("out/cluster1/kube-system/configmap/coredns.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: coredns\n  namespace: kube-system\ndata:\n  Corefile: '.:53 {}'\n");
    // A live object the file does mention, with other content: adopted, not created.
    p.write("out/cluster2/_cluster/namespace/bookinfo.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bookinfo\n  labels:\n    team: payments\n");

    // An object dcm did not create is refused, with what to do; nothing is written.
    let before = p.snapshot();
    let plan = p.dcm(&["plan"]).expect(1);
    assert!(
        plan.stdout.contains(
            "! cluster2/core/Namespace/_cluster/bookinfo exists and is not dcm's to change"
        ) && plan.stdout.contains("Refused: 1 object"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stderr
            .contains("dcm import cluster2/core/Namespace/_cluster/bookinfo"),
        "{}",
        plan.stderr
    );
    p.dcm(&["apply", "--auto-approve"]).expect(1);
    assert_eq!(p.snapshot(), before, "a refused plan writes nothing");

    // Imported, it is dcm's to change.
    let imported = p
        .dcm(&["import", "cluster2/core/Namespace/_cluster/bookinfo"])
        .expect(0);
    assert!(imported.stdout.contains("imported"), "{}", imported.stdout);
    let plan = p.dcm(&["plan"]).expect(0);
    assert!(
        plan.stdout
            .contains("Plan: 3 to add, 1 to change, 0 to destroy."),
        "{}",
        plan.stdout
    );
    p.dcm(&["apply", "--auto-approve"]).expect(0);
    let state = p.state();
    let adopted = state["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["cluster"] == "cluster2")
        .unwrap();
    assert_eq!(adopted["origin"], "adopted");

    // Leaving the file: the adopted namespace is forgotten, not deleted.
    p.edit(
        "dcm.toml",
        "clusters = [\"cluster1\", \"cluster2\"]",
        "clusters = [\"cluster1\"]",
    );
    let plan = p.dcm(&["plan"]).expect(0);
    assert!(plan.stdout.contains("cluster2/core/Namespace/_cluster/bookinfo will be removed from the state (it stays in the cluster)"), "{}", plan.stdout);
    p.dcm(&["apply", "--auto-approve"]).expect(0);
    assert!(p.exists("out/cluster2/_cluster/namespace/bookinfo.yaml"));

    p.dcm(&["destroy", "--auto-approve"]).expect(0);
    assert_eq!(
        p.files("out"),
        [
            "cluster1/kube-system/configmap/coredns.yaml",
            "cluster2/_cluster/namespace/bookinfo.yaml"
        ]
    );
}

#[test]
fn secret_values_never_appear_in_output_plans_or_state() {
    let p = Project::two_clusters();
    let secret = "hunter2-very-secret";
    let mut seen = String::new();
    for args in [
        &["plan"][..],
        &["plan", "--json"],
        &["plan", "--markdown"],
        &["plan", "-o", "p.json"],
        &["show", "p.json"],
    ] {
        let r = p.dcm(args).expect(0);
        seen.push_str(&r.stdout);
        seen.push_str(&r.stderr);
    }
    // No state yet, no key: no hash of the value at all.
    assert!(seen.contains("password: (sensitive, value 1)"), "{seen}");
    assert!(!seen.contains("(sensitive, sha256:"), "{seen}");
    seen.push_str(&p.read("p.json"));
    let r = p.dcm(&["apply", "--auto-approve"]).expect(0);
    seen.push_str(&r.stdout);
    seen.push_str(&r.stderr);

    // Change the secret: the plan shows that it changed (different keyed hash), not how.
    p.edit("manifests/app.yaml", secret, "correct-horse-battery");
    let r = p.dcm(&["plan"]).expect(0);
    assert!(
        r.stdout
            .contains("~ cluster1/core/Secret/bookinfo/db will be updated in place"),
        "{}",
        r.stdout
    );
    let hashes: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.contains("password:"))
        .collect();
    assert_eq!(hashes.len(), 2, "{}", r.stdout);
    assert!(
        hashes.iter().all(|h| h.contains("(sensitive, hmac:")),
        "{hashes:?}"
    );
    assert_ne!(
        hashes[0].split("hmac:").nth(1),
        hashes[1].split("hmac:").nth(1)
    );
    seen.push_str(&r.stdout);
    for args in [
        &["state", "show", "cluster1/core/Secret/bookinfo/db"][..],
        &["show"],
        &["drift"],
    ] {
        seen.push_str(&p.dcm(args).stdout);
    }
    seen.push_str(&p.read("state/dcm.state.json"));
    let encoded = super::harness::base64(secret.as_bytes());
    assert!(
        !seen.contains(secret)
            && !seen.contains("correct-horse-battery")
            && !seen.contains(&encoded),
        "a secret leaked"
    );
    // The applied object itself is the live Secret, so it holds the value (as a cluster
    // stores it: stringData folded into base64 data).
    assert!(p
        .read("out/cluster1/bookinfo/secret/db.yaml")
        .contains(&encoded));
}

#[test]
fn a_failed_object_skips_its_dependents_and_the_rest_finishes() {
    let p = Project::two_clusters();
    // A file where cluster1's `bookinfo` namespace directory must go: writes under it fail.
    p.write("out/cluster1/bookinfo", "not a directory");
    let r = p
        .dcm(&["apply", "--auto-approve", "--parallelism", "1"])
        .expect(1);
    assert!(
        r.stdout
            .contains("cluster1/core/Namespace/_cluster/bookinfo: created"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("cluster2/core/Namespace/_cluster/bookinfo: created"),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("error: apply failed: 2 of 4 changes done (2 added, 0 changed, 0 destroyed), 2 failed, 0 skipped"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("failed:  cluster1/core/ConfigMap/bookinfo/settings"),
        "{}",
        r.stderr
    );
    assert_eq!(
        p.state_addresses().len(),
        4 - 2 + 2,
        "pending entries are recorded for the failed writes"
    );

    // Fixing the cause and re-running converges.
    std::fs::remove_file(p.path("out/cluster1/bookinfo")).unwrap();
    let plan = p.dcm(&["plan"]).expect(0);
    assert!(
        plan.stdout
            .contains("Plan: 2 to add, 0 to change, 0 to destroy."),
        "{}",
        plan.stdout
    );
    p.dcm(&["apply", "--auto-approve"]).expect(0);
    p.dcm(&["plan", "--detailed-exitcode"]).expect(0);
}

#[test]
fn dependents_of_a_failure_are_skipped() {
    let p = Project::two_clusters();
    // cluster1's Namespace cannot be written: everything in it waits, cluster2 proceeds.
    p.write("out/cluster1/_cluster/namespace", "not a directory");
    let r = p.dcm(&["apply", "--auto-approve"]).expect(1);
    assert!(
        r.stderr
            .contains("1 of 4 changes done (1 added, 0 changed, 0 destroyed), 1 failed, 2 skipped"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(
            "skipped: cluster1/core/ConfigMap/bookinfo/settings (waits on a failed change)"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("skipped: cluster1/core/Secret/bookinfo/db"),
        "{}",
        r.stderr
    );
    assert!(!p.exists("out/cluster1/bookinfo"));
    assert!(p.exists("out/cluster2/_cluster/namespace/bookinfo.yaml"));
}

#[test]
fn a_killed_apply_leaves_a_valid_state_and_the_next_apply_converges() {
    let p = Project::new();
    let mut toml = String::from("[clusters.c1]\ndir = \"out/c1\"\n[clusters.c2]\ndir = \"out/c2\"\n[[resources]]\nclusters = [\"c1\", \"c2\"]\nfile = \"many.yaml\"\n");
    toml.push('\n');
    p.write("dcm.toml", &toml);
    let docs: Vec<String> = (0..400)
        .map(|i| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:04}\ndata:\n  n: \"{i}\"\n"))
        .collect();
    p.write("many.yaml", &docs.join("---\n"));

    let mut child = p
        .command(&["apply", "--auto-approve", "--parallelism", "4"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it part-way: once the state's journal records some objects, well before 800.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let records = std::fs::read_to_string(p.path("state/dcm.state.json.journal"))
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if records >= 40 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // The state (the file and its journal) is whole and readable; the lock died with the
    // process.
    let listed = p.dcm(&["state", "list"]).expect(0).stdout;
    let recorded = listed.lines().count();
    assert!(
        recorded > 0 && recorded < 800,
        "killed part-way: {recorded} recorded"
    );

    let r = p.dcm(&["apply", "--auto-approve"]).expect(0);
    assert!(r.stdout.contains("Apply complete!"), "{}", r.stdout);
    assert_eq!(p.state_addresses().len(), 800);
    assert_eq!(p.files("out").len(), 800);
    assert!(p.state()["objects"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["pending"].is_null() && e["origin"] == "created"));
    p.dcm(&["plan", "--detailed-exitcode"]).expect(0);
}

#[test]
fn applies_killed_at_random_points_always_leave_a_state_that_converges() {
    let p = Project::new();
    p.write(
        "dcm.toml",
        "[clusters.c1]\ndir = \"out/c1\"\n[[resources]]\nclusters = [\"c1\"]\nfile = \"many.yaml\"\n",
    );
    let docs: Vec<String> = (0..2000)
        .map(|i| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:04}\ndata:\n  n: \"{i}\"\n"))
        .collect();
    p.write("many.yaml", &docs.join("---\n"));
    // Kill points spread over a run (a fixed sequence, so a failure can be replayed).
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..6 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let after = Duration::from_millis(30 + (seed >> 33) % 400);
        let mut child = p
            .command(&["apply", "--auto-approve", "--parallelism", "8"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(after);
        let _ = child.kill();
        child.wait().unwrap();
        // Whatever the moment, the state reads whole.
        let listed = p.dcm(&["state", "list"]).expect(0).stdout;
        assert!(listed.lines().count() <= 2000, "round {round}");
    }
    let r = p.dcm(&["apply", "--auto-approve"]).expect(0);
    assert!(r.stdout.contains("Apply complete!"), "{}", r.stdout);
    assert_eq!(p.state_addresses().len(), 2000);
    assert_eq!(p.files("out").len(), 2000);
    p.dcm(&["plan", "--detailed-exitcode"]).expect(0);
}
