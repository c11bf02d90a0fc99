use super::*;
use crate::config;
use std::path::Path;

fn model_in(dir: &Path, toml: &str) -> Result<Model, Diagnostics> {
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
        TargetSpec::Dir(dir.path().join("out/c1"))
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
