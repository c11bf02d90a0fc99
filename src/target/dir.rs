//! The directory target: one YAML file per object, laid out as DESIGN.md pins:
//! `D/<namespace or _cluster>/<kind, lower case>[.<group>]/<name>.yaml`.
//!
//! Writes are atomic (temp file, fsync, rename, fsync of the directory), so a killed run
//! leaves either the old file or the new one. Files dcm did not write are read like any
//! live object; deciding what may be deleted is the plan's job, not this module's.

use super::{ReadItem, Target, TargetError};
use crate::object::ObjRef;
use async_trait::async_trait;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct DirTarget {
    root: PathBuf,
}

impl DirTarget {
    pub fn new(root: PathBuf) -> Self {
        DirTarget { root }
    }

    /// The file that holds object `id`.
    pub fn path_of(&self, id: &ObjRef) -> PathBuf {
        let ns = if id.namespace.is_empty() {
            "_cluster"
        } else {
            &id.namespace
        };
        let kind = if id.group.is_empty() {
            id.kind.to_lowercase()
        } else {
            format!("{}.{}", id.kind.to_lowercase(), id.group)
        };
        self.root
            .join(ns)
            .join(kind)
            .join(format!("{}.yaml", id.name))
    }

    fn read_one(&self, id: &ObjRef) -> Result<Option<Value>, TargetError> {
        let path = self.path_of(id);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            // A file where a directory of the path should be also means "no such object".
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(None)
            }
            Err(source) => return Err(io_err(&path, source)),
        };
        let value: Value =
            serde_yaml_ng::from_str(&text).map_err(|e| TargetError::InvalidLive {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        let name = value.pointer("/metadata/name").and_then(Value::as_str);
        let kind = value.get("kind").and_then(Value::as_str);
        if name != Some(id.name.as_str()) || kind != Some(id.kind.as_str()) {
            return Err(TargetError::InvalidLive {
                path: path.display().to_string(),
                message: format!("expected {} `{}` in this file", id.kind, id.name),
            });
        }
        Ok(Some(value))
    }
}

fn io_err(path: &Path, source: std::io::Error) -> TargetError {
    TargetError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `bytes` to `path` so that readers see the old file or the new one, never part.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp_prefix = format!(".{file_name}.tmp-");
    let tmp = dir.join(format!("{tmp_prefix}{}", std::process::id()));
    // A run killed mid-write leaves its temp file; the next write of the same file
    // sweeps it, so the directory holds only objects.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&tmp_prefix))
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // Make the rename itself durable.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[async_trait]
impl Target for DirTarget {
    async fn read(&self, items: &[ReadItem]) -> Result<BTreeMap<ObjRef, Value>, TargetError> {
        let mut out = BTreeMap::new();
        for item in items {
            if let Some(v) = self.read_one(&item.id)? {
                out.insert(item.id.clone(), v);
            }
        }
        Ok(out)
    }

    async fn apply(&self, id: &ObjRef, object: &Value) -> Result<Option<String>, TargetError> {
        let path = self.path_of(id);
        let yaml = serde_yaml_ng::to_string(object).map_err(|e| TargetError::InvalidLive {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        write_atomically(&path, yaml.as_bytes()).map_err(|e| io_err(&path, e))?;
        Ok(None)
    }

    async fn list_kind(&self, api_version: &str, kind: &str) -> Result<Vec<Value>, TargetError> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let kind_dir = self
            .path_of(&ObjRef {
                cluster: String::new(),
                group: group.to_string(),
                kind: kind.to_string(),
                namespace: String::new(),
                name: "x".into(),
            })
            .parent()
            .and_then(Path::file_name)
            .map(PathBuf::from)
            .unwrap_or_default();
        let namespaces = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.root, e)),
        };
        let mut files: Vec<PathBuf> = Vec::new();
        for ns in namespaces.flatten() {
            let Ok(entries) = std::fs::read_dir(ns.path().join(&kind_dir)) else {
                continue;
            };
            files.extend(
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "yaml")),
            );
        }
        files.sort();
        let mut out = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|e| io_err(&path, e))?;
            let value: Value =
                serde_yaml_ng::from_str(&text).map_err(|e| TargetError::InvalidLive {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
            if value.get("kind").and_then(Value::as_str) == Some(kind) {
                out.push(value);
            }
        }
        Ok(out)
    }

    async fn delete(&self, id: &ObjRef) -> Result<(), TargetError> {
        let path = self.path_of(id);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path, e)),
        }
        // Tidy the kind and namespace directories if they are now empty.
        let mut dir = path.parent();
        for _ in 0..2 {
            match dir {
                Some(d) if d != self.root && std::fs::remove_dir(d).is_ok() => dir = d.parent(),
                _ => break,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(id: &ObjRef) -> ReadItem {
        ReadItem {
            id: id.clone(),
            api_version: "v1".into(),
            desired: None,
            whole: false,
        }
    }

    fn id(group: &str, kind: &str, ns: &str, name: &str) -> ObjRef {
        ObjRef {
            cluster: "c1".into(),
            group: group.into(),
            kind: kind.into(),
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn layout_matches_the_design() {
        let t = DirTarget::new(PathBuf::from("D"));
        assert_eq!(
            t.path_of(&id("", "ConfigMap", "kube-system", "coredns")),
            PathBuf::from("D/kube-system/configmap/coredns.yaml")
        );
        assert_eq!(
            t.path_of(&id(
                "networking.istio.io",
                "ServiceEntry",
                "default",
                "reviews-default-lc1"
            )),
            PathBuf::from("D/default/serviceentry.networking.istio.io/reviews-default-lc1.yaml")
        );
        assert_eq!(
            t.path_of(&id("", "Namespace", "", "istio-lc1")),
            PathBuf::from("D/_cluster/namespace/istio-lc1.yaml")
        );
    }

    #[tokio::test]
    async fn write_read_delete_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let t = DirTarget::new(dir.path().to_path_buf());
        let cm = id("", "ConfigMap", "default", "x");
        let obj = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"default"},"data":{"on":"yes","n":"1.0","multi":"a\nb\n"}});
        t.apply(&cm, &obj).await.unwrap();
        let live = t.read(&[item(&cm)]).await.unwrap();
        assert_eq!(
            live[&cm], obj,
            "YAML must round-trip exactly, quoting included"
        );
        t.delete(&cm).await.unwrap();
        assert!(t.read(&[item(&cm)]).await.unwrap().is_empty());
        assert!(
            !dir.path().join("default").exists(),
            "empty directories are tidied"
        );
        t.delete(&cm).await.unwrap();
    }

    #[test]
    fn a_write_sweeps_temp_files_left_by_a_killed_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.yaml");
        std::fs::write(dir.path().join(".x.yaml.tmp-99999"), "half").unwrap();
        std::fs::write(dir.path().join(".other.yaml.tmp-1"), "not ours").unwrap();
        write_atomically(&path, b"whole").unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [".other.yaml.tmp-1", "x.yaml"]);
    }

    #[tokio::test]
    async fn listing_a_kind_reads_it_in_every_namespace_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let t = DirTarget::new(dir.path().to_path_buf());
        let se = |ns: &str, name: &str| {
            json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                   "metadata": {"name": name, "namespace": ns}, "spec": {"hosts": ["x"]}})
        };
        for (ns, name) in [("b", "two"), ("a", "one")] {
            let obj = se(ns, name);
            t.apply(&id("networking.istio.io", "ServiceEntry", ns, name), &obj)
                .await
                .unwrap();
        }
        let cm =
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"one","namespace":"a"}});
        t.apply(&id("", "ConfigMap", "a", "one"), &cm)
            .await
            .unwrap();
        let listed = t
            .list_kind("networking.istio.io/v1", "ServiceEntry")
            .await
            .unwrap();
        assert_eq!(listed, vec![se("a", "one"), se("b", "two")]);
        let none = tempfile::tempdir().unwrap().path().join("gone");
        let empty = DirTarget::new(none).list_kind("v1", "ConfigMap").await;
        assert!(empty.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_file_holding_another_object_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let t = DirTarget::new(dir.path().to_path_buf());
        let cm = id("", "ConfigMap", "default", "x");
        write_atomically(
            &t.path_of(&cm),
            b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: y}\n",
        )
        .unwrap();
        let err = t.read(&[item(&cm)]).await.unwrap_err().to_string();
        assert!(err.contains("expected ConfigMap `x`"), "{err}");
    }
}
