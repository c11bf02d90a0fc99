//! Bad input: each gets a clear message on stderr starting with `error:`, exit 1, and
//! nothing written (no cluster file, no state change).

use super::harness::{Project, TWO_CLUSTERS};

/// Runs `apply --auto-approve` (the command with the most to lose) and checks the failure.
fn refused(p: &Project, wants: &[&str]) -> String {
    let before = p.snapshot();
    let run = p.dcm(&["apply", "--auto-approve"]).expect(1);
    // Warnings about the file (TWO_CLUSTERS writes its Secret in plaintext) may come first.
    let from_error = run.stderr.find("error:").map_or("", |i| &run.stderr[i..]);
    assert!(
        run.stderr.starts_with("error:") || run.stderr.starts_with("warning:"),
        "{}",
        run.stderr
    );
    assert!(from_error.starts_with("error:"), "{}", run.stderr);
    for w in wants {
        assert!(run.stderr.contains(w), "missing {w:?} in:\n{}", run.stderr);
    }
    assert_eq!(p.snapshot(), before, "nothing may be written");
    // validate agrees about the file (state problems are not its business).
    run.stderr
}

fn with_toml(text: &str) -> Project {
    let p = Project::two_clusters();
    p.write("dcm.toml", text);
    p
}

#[test]
fn malformed_toml_points_at_the_place() {
    let p = with_toml(&TWO_CLUSTERS.replace("dir = \"out/cluster2\"", "dir = \"out/cluster2"));
    refused(
        &p,
        &[
            "invalid TOML",
            "dcm.toml:7:",
            "7 | dir = \"out/cluster2",
            "^",
        ],
    );
    p.dcm(&["validate"]).expect(1);
}

#[test]
fn unknown_keys_and_wrong_types_are_all_reported() {
    let p = with_toml(
        &TWO_CLUSTERS
            .replace(
                "dir = \"out/cluster1\"",
                "dri = \"out/cluster1\"\nnetwork = 7",
            )
            .replace("depends_on =", "depend_on ="),
    );
    let err = refused(
        &p,
        &[
            "unknown key `dri` in [clusters.cluster1]",
            "did you mean `dir`?",
            "dcm.toml:3:1",
            "`clusters.cluster1.network` must be a string, found integer",
            "unknown key `depend_on` in [resources[1]]",
            "did you mean `depends_on`?",
        ],
    );
    assert!(err.contains("3 problems found"), "{err}");
}

#[test]
fn duplicate_object_addresses_name_both_blocks() {
    let p = Project::two_clusters();
    p.write(
        "dcm.toml",
        &format!("{TWO_CLUSTERS}\n[[resources]]\nclusters = [\"cluster1\"]\nmanifest = {{ apiVersion = \"v1\", kind = \"ConfigMap\", metadata = {{ name = \"settings\", namespace = \"bookinfo\" }} }}\n"),
    );
    refused(&p, &["object cluster1/core/ConfigMap/bookinfo/settings is declared twice (resources.app and inline manifest)", "first declared here"]);
}

#[test]
fn dangling_depends_on() {
    let p = with_toml(&TWO_CLUSTERS.replace(
        "[\"resources.namespace\"]",
        "[\"resources.namespaces\", \"logical_clouds.lc1\"]",
    ));
    refused(
        &p,
        &[
            "resource `namespaces`",
            "did you mean `resources.namespace`?",
            "logical cloud `lc1`, which is not defined",
            "dcm.toml:18:15",
        ],
    );
}

#[test]
fn dependency_cycles_name_every_member() {
    let p = with_toml(&TWO_CLUSTERS.replace(
        "manifest = { apiVersion = \"v1\", kind = \"Namespace\"",
        "depends_on = [\"resources.app\"]\nmanifest = { apiVersion = \"v1\", kind = \"Namespace\"",
    ));
    refused(
        &p,
        &[
            "dependency cycle between 3 objects:",
            "cluster1/core/ConfigMap/bookinfo/settings",
            "cluster1/core/Namespace/_cluster/bookinfo",
            "cluster1/core/Secret/bookinfo/db",
            "dcm.toml:12:15",
            "dcm.toml:19:15",
        ],
    );
}

#[test]
fn invalid_kubernetes_names() {
    let p = Project::two_clusters();
    p.edit("manifests/app.yaml", "name: settings", "name: Settings_1");
    refused(
        &p,
        &[
            "invalid name `Settings_1` for a ConfigMap",
            "manifests/app.yaml (document 1)",
        ],
    );
    let p = with_toml(&TWO_CLUSTERS.replace("[clusters.cluster2]", "[clusters.Cluster2]"));
    refused(&p, &["invalid cluster name `Cluster2`"]);
}

#[test]
fn missing_or_invalid_manifests() {
    let p = Project::two_clusters();
    std::fs::remove_file(p.path("manifests/app.yaml")).unwrap();
    refused(
        &p,
        &["cannot read manifest file", "app.yaml", "dcm.toml:17:8"],
    );

    let p = Project::two_clusters();
    p.write(
        "manifests/app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n   bad: indent\n",
    );
    refused(
        &p,
        &[
            "invalid YAML in `manifests/app.yaml`",
            "--> manifests/app.yaml:5:",
        ],
    );

    let p = Project::two_clusters();
    p.write("manifests/app.yaml", "kind: ConfigMap\nmetadata: {}\n");
    refused(
        &p,
        &["manifests/app.yaml (document 1): the object has no apiVersion, metadata.name"],
    );
}

#[test]
fn a_cluster_needs_exactly_one_target() {
    let p = with_toml(
        &TWO_CLUSTERS
            .replace(
                "dir = \"out/cluster1\"",
                "dir = \"out/cluster1\"\ncontext = \"kind-c1\"",
            )
            .replace("dir = \"out/cluster2\"", ""),
    );
    refused(
        &p,
        &[
            "cluster `cluster1` sets both `dir` and `context`",
            "cluster `cluster2` needs a target: set `dir` or `context`",
        ],
    );
}

#[test]
fn a_corrupt_or_newer_state_is_refused_and_kept() {
    let p = Project::two_clusters();
    p.write("state/dcm.state.json", "{\"version\": 1, \"lineage\": ");
    refused(
        &p,
        &[
            "the state file state/dcm.state.json is corrupt",
            "left unchanged",
            "dcm.state.json.backup",
        ],
    );
    p.dcm(&["plan"]).expect(1);
    p.write(
        "state/dcm.state.json",
        "{\"version\": 7, \"lineage\": \"x\", \"serial\": 3, \"objects\": []}",
    );
    refused(
        &p,
        &["has format version 7, newer than this dcm understands"],
    );
}

#[test]
fn a_held_lock_refuses_a_second_writer() {
    let p = Project::two_clusters();
    std::fs::create_dir_all(p.path("state")).unwrap();
    let mut holder = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(p.path("state/dcm.state.json.lock"))
        .unwrap();
    holder.try_lock().unwrap();
    use std::io::Write;
    holder
        .write_all(br#"{"ID":"abc123","operation":"apply","who":"ci","pid":4242,"host":"runner-7","created":"2026-11-21T10:00:00Z"}"#)
        .unwrap();
    refused(&p, &["the state is locked: apply by ci (pid 4242 on runner-7) since 2026-11-21T10:00:00Z, lock ID abc123", "dcm force-unlock abc123"]);
    p.dcm(&["destroy", "--auto-approve"]).expect(1);
    p.dcm(&["state", "rm", "x/core/A/b/c"]).expect(1);

    let wrong = p.dcm(&["force-unlock", "zzz"]).expect(1);
    assert!(
        wrong
            .stderr
            .contains("does not match the lock held now (ID abc123)"),
        "{}",
        wrong.stderr
    );
    p.dcm(&["force-unlock", "abc123"]).expect(0);
    p.dcm(&["apply", "--auto-approve"]).expect(0);
    drop(holder);
}

#[test]
fn apply_without_approval_refuses_when_it_cannot_ask() {
    let p = Project::two_clusters();
    let before = p.snapshot();
    for cmd in ["apply", "destroy"] {
        let run = p.dcm(&[cmd]).expect(1);
        assert!(run.stderr.starts_with("error:"), "{}", run.stderr);
        assert!(
            run.stderr
                .contains("needs confirmation, but standard input is not a terminal"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("--auto-approve"), "{}", run.stderr);
    }
    assert_eq!(p.snapshot(), before);
}

#[test]
fn bad_flags_exit_1_not_2() {
    let p = Project::two_clusters();
    let r = p.dcm(&["plan", "--parallelism", "0"]).expect(1);
    assert!(r.stderr.contains("error:"), "{}", r.stderr);
    p.dcm(&["plan", "--no-such-flag"]).expect(1);
}

#[test]
fn a_kind_or_api_version_that_names_a_path_is_refused() {
    let p = Project::two_clusters();
    p.write(
        "manifests/app.yaml",
        "apiVersion: v1\nkind: ../../../escaped\nmetadata:\n  name: x\n",
    );
    refused(
        &p,
        &["manifests/app.yaml (document 1): kind `../../../escaped` must be letters and digits"],
    );
    assert!(!p.path("../escaped").exists());
    let p = Project::two_clusters();
    p.write(
        "manifests/app.yaml",
        "apiVersion: ../v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
    );
    refused(&p, &["apiVersion `../v1` has an invalid group `..`"]);
}

#[test]
fn clusters_dcm_cannot_reach_are_named() {
    let p = Project::two_clusters();
    p.dcm(&["apply", "--auto-approve"]).expect(0);
    // cluster2 leaves the file while the state still has its objects.
    p.write(
        "dcm.toml",
        &TWO_CLUSTERS
            .replace("[clusters.cluster2]\ndir = \"out/cluster2\"\n", "")
            .replace("[\"cluster1\", \"cluster2\"]", "[\"cluster1\"]"),
    );
    let r = refused(
        &p,
        &[
            "the state records objects in cluster `cluster2`, which the file no longer defines",
            "dcm state rm",
        ],
    );
    assert!(!r.contains("panicked"));

    // A kubeconfig context with no kubeconfig to find it in, said plainly.
    let p = Project::two_clusters();
    p.write(
        "dcm.toml",
        &TWO_CLUSTERS.replace("dir = \"out/cluster2\"", "context = \"kind-cluster2\""),
    );
    refused(
        &p,
        &[
            "no kubeconfig",
            "cluster `cluster2`, which uses context `kind-cluster2`",
        ],
    );
}

/// The primary-remote example with one remote's token file missing and the other's API
/// server not https: both reported at their lines, nothing written.
#[test]
fn a_remote_the_primary_cannot_reach_is_refused_before_anything_is_written() {
    let toml = "primary-remote.toml";
    let p = super::examples::example_project(toml);
    p.edit(
        toml,
        "certs/remotes/cluster2.token",
        "certs/remotes/missing.token",
    );
    p.edit(toml, "https://192.0.2.31:6443", "http://192.0.2.31:6443");
    let before = p.snapshot();
    let run = p.dcm(&["apply", "--auto-approve", "-f", toml]).expect(1);
    for want in [
        "cannot read `token_file` file",
        "missing.token",
        "primary-remote.toml:38:14",
        "invalid `api_server` `http://192.0.2.31:6443`: must be an https URL",
        "primary-remote.toml:47:14",
    ] {
        assert!(
            run.stderr.contains(want),
            "missing {want:?} in:\n{}",
            run.stderr
        );
    }
    assert_eq!(p.snapshot(), before, "nothing may be written");
}

/// A route to a subset nobody declared, with a "did you mean".
#[test]
fn a_route_to_an_unknown_subset_is_refused_with_a_hint() {
    let toml = "two-clusters-bookinfo.toml";
    let p = super::examples::example_project(toml);
    p.edit(
        toml,
        "{ subset = \"v3\", weight = 50 }",
        "{ subset = \"v4\", weight = 50 }",
    );
    let before = p.snapshot();
    let run = p.dcm(&["plan", "-f", toml]).expect(1);
    for want in [
        "error: service `reviews.bookinfo` has no subset `v4`",
        "two-clusters-bookinfo.toml:77:100",
        "did you mean `v1`?",
    ] {
        assert!(
            run.stderr.contains(want),
            "missing {want:?} in:\n{}",
            run.stderr
        );
    }
    assert_eq!(p.snapshot(), before);
}
