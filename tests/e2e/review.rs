//! Review output: Markdown plans and drift reports that fit a pull-request comment, and
//! JSON documents that match the schemas shipped in `docs/schema/`.

use super::harness::Project;
use serde_json::Value;
use std::process::Command;

/// A project of `clusters` clusters with the same `objects` ConfigMaps (and their
/// namespace) in each, from one `[[resources]]` manifest.
fn estate(clusters: usize, objects: usize) -> Project {
    let p = Project::new();
    let names: Vec<String> = (1..=clusters).map(|i| format!("c{i:02}")).collect();
    let mut toml = String::from("[project]\nname = \"estate\"\n\n");
    for n in &names {
        toml.push_str(&format!("[clusters.{n}]\ndir = \"out/{n}\"\n\n"));
    }
    toml.push_str(&format!(
        "[[resources]]\nclusters = [{}]\nfile = \"manifests/estate.yaml\"\n",
        names
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    p.write("dcm.toml", &toml);
    let mut yaml = String::from("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n");
    for i in 0..objects {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings-{i:04}\n  namespace: shop\ndata:\n  color: blue\n  size: \"{i}\"\n  owner: team-{}\n",
            i % 7
        ));
    }
    p.write("manifests/estate.yaml", &yaml);
    p
}

/// Whether no `<details>` or code block is left open.
fn balanced(md: &str) -> bool {
    md.matches("<details>").count() == md.matches("</details>").count()
        && md.lines().filter(|l| l.starts_with("```")).count() % 2 == 0
}

#[test]
fn a_large_estate_s_markdown_plan_fits_a_comment_and_carries_its_marker() {
    let p = estate(20, 150);
    let md = p.dcm(&["plan", "--markdown"]).expect(0).stdout;
    assert!(md.len() <= 60_000, "{} bytes", md.len());
    assert!(
        md.starts_with("<!-- dcm:plan:estate -->\n### dcm plan: `estate`\n"),
        "{}",
        &md[..200]
    );
    assert!(md.contains("**Plan: 3020 to add, 0 to change, 0 to destroy.**"));
    for i in 1..=20 {
        assert!(
            md.contains(&format!("| `c{i:02}` | 151 |")),
            "row of c{i:02}"
        );
    }
    assert!(md.contains("| **all** | **3020** |"));
    assert!(balanced(&md), "{md}");
    let shown = md.matches("<details>").count() + md.matches("\n- `c").count();
    assert!(shown > 10, "{shown} changes shown");
    assert!(
        md.contains(&format!("**… {} more changes not shown", 3020 - shown)),
        "{}",
        &md[md.len() - 400..]
    );
    assert!(md.contains("`dcm plan -o PLAN`"), "a hint to the full plan");

    // With a saved plan, the hint names it; a smaller limit holds too.
    let md = p
        .dcm(&[
            "plan",
            "--markdown",
            "--max-bytes",
            "20000",
            "-o",
            "plan.json",
        ])
        .expect(0)
        .stdout;
    assert!(md.len() <= 20_000 && balanced(&md), "{} bytes", md.len());
    assert!(
        md.trim_end()
            .ends_with("The full plan: `dcm show plan.json`."),
        "{md}"
    );
    // Small enough, the comment is the summary and the table.
    let md = p
        .dcm(&["plan", "--markdown", "--max-bytes", "850"])
        .expect(0)
        .stdout;
    assert!(md.len() <= 850 && md.contains("| `c20` | 151 |"), "{md}");
    assert!(!md.contains("<details>"), "{md}");
    let too_small = p
        .dcm(&["plan", "--markdown", "--max-bytes", "100"])
        .expect(1);
    assert!(
        too_small.stderr.contains("--max-bytes 100 is too small"),
        "{}",
        too_small.stderr
    );
}

#[test]
fn a_small_plan_is_shown_whole_and_a_change_without_a_diff_takes_one_line() {
    let p = Project::two_clusters();
    let first = p.dcm(&["plan", "--markdown"]).expect(0).stdout;
    assert!(first.starts_with("<!-- dcm:plan:dcm -->\n"), "{first}");
    assert!(!first.contains("not shown") && balanced(&first), "{first}");
    assert_eq!(first.matches("<details>").count(), 4, "{first}");
    p.dcm(&["apply", "--auto-approve"]).expect(0);

    // A change with a diff, and a state-only one (an apply interrupted after a write).
    p.edit("manifests/app.yaml", "greeting: hello", "greeting: hi");
    let mut state = p.state();
    for e in state["objects"].as_array_mut().unwrap() {
        if e["address"] == "cluster2/core/Namespace/_cluster/bookinfo" {
            e["pending"] = Value::Bool(true);
        }
    }
    p.write(
        "state/dcm.state.json",
        &serde_json::to_string_pretty(&state).unwrap(),
    );
    let md = p.dcm(&["plan", "--markdown"]).expect(0).stdout;
    assert!(!md.contains("not shown") && balanced(&md), "{md}");
    assert!(
        md.contains("| `cluster1` | 1 | 0 |\n| `cluster2` | 0 | 1 |"),
        "{md}"
    );
    assert_eq!(md.matches("<details>").count(), 1, "{md}");
    assert!(
        md.contains("<details><summary><code>cluster1/core/ConfigMap/bookinfo/settings</code> will be updated in place</summary>\n\n**Why:** it differs from the file in `data.greeting`\n\n```diff\n"),
        "{md}"
    );
    assert!(
        md.contains("\n- `cluster2/core/Namespace/_cluster/bookinfo` already matches; it will be recorded in the state: an apply was interrupted after writing it"),
        "{md}"
    );
    assert!(
        !md.contains("<details></details>") && !md.contains("\n\n\n"),
        "{md}"
    );
}

#[test]
fn drift_in_markdown_names_each_object_and_carries_its_marker() {
    let p = Project::two_clusters();
    p.dcm(&["apply", "--auto-approve"]).expect(0);
    p.edit(
        "out/cluster1/bookinfo/configmap/settings.yaml",
        "greeting: hello",
        "greeting: tampered",
    );
    std::fs::remove_file(p.path("out/cluster2/_cluster/namespace/bookinfo.yaml")).unwrap();
    let md = p.dcm(&["drift", "--markdown"]).expect(2).stdout;
    assert!(
        md.starts_with(
            "<!-- dcm:drift:dcm -->\n### dcm drift: `dcm`\n\n**Drift in 2 of 4 objects.**"
        ),
        "{md}"
    );
    assert!(md.contains("| cluster | changed | deleted |"), "{md}");
    assert!(md.contains("+  greeting: tampered"), "{md}");
    assert!(
        md.contains("- `cluster2/core/Namespace/_cluster/bookinfo` was deleted outside dcm"),
        "{md}"
    );
    assert!(balanced(&md) && md.len() <= 60_000);
    let clean = Project::two_clusters();
    clean.dcm(&["apply", "--auto-approve"]).expect(0);
    let md = clean.dcm(&["drift", "--markdown"]).expect(0).stdout;
    assert!(md.contains("**No drift.** All 4 objects match"), "{md}");
    assert!(!md.contains('|'), "no empty table: {md}");
}

/// Validates documents against a schema of `docs/schema/` with the tool in
/// `tools/schema-check` (ajv): the exit code and the report, or None where node is missing
/// (outside CI).
fn validate(p: &Project, schema: &str, docs: &[(&str, &str)]) -> Option<(Option<i32>, String)> {
    let script = super::examples::schema_check_script()?;
    let tool = script.parent().unwrap().join("validate.mjs");
    let schema = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/schema")
        .join(schema);
    let mut cmd = Command::new("node");
    cmd.arg(tool).arg(schema);
    for (name, text) in docs {
        p.write(name, text);
        cmd.arg(p.path(name));
    }
    let out = cmd.output().unwrap();
    Some((
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

#[test]
fn plan_show_and_drift_json_match_their_schemas() {
    let p = Project::two_clusters();
    let dcm = |args: &[&str]| {
        let out = p
            .command(args)
            .env("DCM_PLAN_KEY", "test-only-plan-key")
            .output()
            .unwrap();
        super::harness::Run::from_output(out)
    };
    let created = dcm(&["plan", "--json"]).expect(0).stdout;
    dcm(&["apply", "--auto-approve"]).expect(0);
    p.edit(
        "manifests/app.yaml",
        "hunter2-very-secret",
        "another-secret",
    );
    p.edit("manifests/app.yaml", "greeting: hello", "greeting: hi");
    p.edit(
        "dcm.toml",
        "clusters = [\"cluster1\", \"cluster2\"]",
        "clusters = [\"cluster1\"]",
    );
    let updated = dcm(&["plan", "--json", "-o", "plan.json"]).expect(0).stdout;
    let shown = dcm(&["show", "plan.json", "--json"]).expect(0).stdout;
    assert_eq!(
        shown, updated,
        "show --json prints the saved plan as plan --json did"
    );
    let state = dcm(&["show", "--json"]).expect(0).stdout;
    let drift = dcm(&["drift", "--json"]).expect(0).stdout;

    // What the documents say, as docs/json-format.md describes it.
    let plan: Value = serde_json::from_str(&updated).unwrap();
    assert_eq!(plan["format_version"], 2);
    let change = |addr: &str| -> &Value {
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["address"] == addr)
            .unwrap_or_else(|| panic!("{addr} in {plan:#}"))
    };
    let secret = change("cluster1/core/Secret/bookinfo/db");
    let (before, after) = (
        &secret["before"]["data"]["password"]["sensitive"],
        &secret["after"]["data"]["password"]["sensitive"],
    );
    assert!(
        before.as_str().unwrap().starts_with("hmac:") && before != after,
        "{secret:#}"
    );
    assert!(!updated.contains("another-secret") && !updated.contains("hunter2"));
    let cm = change("cluster1/core/ConfigMap/bookinfo/settings");
    assert_eq!(cm["before"]["data"]["greeting"], "hello");
    assert_eq!(cm["after"]["data"]["greeting"], "hi");
    assert_eq!(cm["reason"], "it differs from the file in `data.greeting`");
    let gone = change("cluster2/core/Namespace/_cluster/bookinfo");
    assert_eq!(gone["action"], "delete");
    assert_eq!(gone["after"], Value::Null);
    assert_eq!(
        gone["reason"],
        "the file no longer declares it, and dcm created it"
    );
    let first: Value = serde_json::from_str(&created).unwrap();
    let settings = first["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "cluster1/core/ConfigMap/bookinfo/settings")
        .unwrap();
    assert_eq!(
        settings["depends_on"],
        serde_json::json!(["cluster1/core/Namespace/_cluster/bookinfo"])
    );
    assert!(!state.contains("secrets_hmac_key"), "{state}");

    let Some((code, report)) = validate(
        &p,
        "plan.schema.json",
        &[
            ("doc/created.json", &created),
            ("doc/updated.json", &updated),
        ],
    ) else {
        return;
    };
    assert_eq!(code, Some(0), "{report}");
    let (code, report) = validate(&p, "state.schema.json", &[("doc/state.json", &state)]).unwrap();
    assert_eq!(code, Some(0), "{report}");
    let (code, report) = validate(&p, "drift.schema.json", &[("doc/drift.json", &drift)]).unwrap();
    assert_eq!(code, Some(0), "{report}");
    // The schema holds: a Secret value in the clear, or an unknown field, is refused.
    let mut leaked: Value = serde_json::from_str(&updated).unwrap();
    for c in leaked["changes"].as_array_mut().unwrap() {
        if c["address"] == "cluster1/core/Secret/bookinfo/db" {
            c["after"]["data"]["password"] = Value::String("YW5vdGhlcg==".into());
        }
    }
    let leaked = serde_json::to_string_pretty(&leaked).unwrap();
    let renamed = updated.replacen("\"depends_on\"", "\"after_all\"", 1);
    let (code, report) = validate(
        &p,
        "plan.schema.json",
        &[("doc/leaked.json", &leaked), ("doc/renamed.json", &renamed)],
    )
    .unwrap();
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("0 valid, 2 invalid"), "{report}");
}
