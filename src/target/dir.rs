//! The directory target: one YAML file per object, laid out as DESIGN.md pins:
//! `D/<namespace or _cluster>/<kind, lower case>[.<group>]/<name>.yaml`.
//!
//! Writes are atomic (temp file, fsync, rename, fsync of the directory), so a killed run
//! leaves either the old file or the new one. Files dcm did not write are read like any
//! live object; deciding what may be deleted is the plan's job, not this module's.
//!
//! With sops ([`SopsSettings`]), a Secret that holds data is written encrypted: the real
//! `sops` binary encrypts its `data`/`stringData` values to the age recipients (metadata
//! stays readable), so Flux or `sops -d` can read it. Plans never decrypt: dcm marks the
//! file with `dcm.io/plaintext-hmac`, an HMAC-SHA256 (keyed by the state's
//! `secrets_hmac_key`, which is not in the directory) of the hash of the plaintext
//! object. Reading it back, the file stands for exactly the object the plan wants when
//! that mark matches it and the file is encrypted to the same recipients; otherwise it
//! reads as what it is (ciphertext), which differs, so apply writes it again.

use super::{ReadItem, Target, TargetError};
use crate::keyed::{constant_time_eq, hmac_sha256};
use crate::object::{has_secret_data, object_sha256, ObjRef};
use async_trait::async_trait;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The annotation that says which plaintext an encrypted Secret holds, without saying
/// anything about it to whoever lacks the key.
pub const PLAINTEXT_HMAC_ANNOTATION: &str = "dcm.io/plaintext-hmac";

/// The key of a state entry's `allocated` that records the sha256 of the file dcm wrote
/// for the object: a delete removes the file only while it still holds exactly that.
pub const FILE_SHA_KEY: &str = "file_sha256";

/// The annotation a Secret read back unencrypted carries while sops is asked for, so the
/// plan shows it must be written again (never written to a file).
pub const NOT_ENCRYPTED_ANNOTATION: &str = "dcm.io/sops";

/// How a directory target encrypts Secrets (`secrets = "sops"`).
#[derive(Clone)]
pub struct SopsSettings {
    /// The age recipients (public keys) each Secret is encrypted to.
    pub age_recipients: Vec<String>,
    /// The state's `secrets_hmac_key`. None without a state: then no encrypted file is
    /// recognised as up to date, and none can be written.
    pub hmac_key: Option<Vec<u8>>,
}

pub struct DirTarget {
    root: PathBuf,
    sops: Option<SopsSettings>,
}

impl DirTarget {
    pub fn new(root: PathBuf) -> Self {
        DirTarget { root, sops: None }
    }

    /// A directory target that encrypts Secrets with sops.
    pub fn with_sops(root: PathBuf, sops: SopsSettings) -> Self {
        DirTarget {
            root,
            sops: Some(sops),
        }
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

    fn read_one(&self, item: &ReadItem) -> Result<Option<Value>, TargetError> {
        let Some(value) = self.read_file(&item.id)? else {
            return Ok(None);
        };
        Ok(Some(self.as_live(value, item.desired.as_deref())))
    }

    /// What a file stands for. A file that sops encrypted loses its sops metadata and
    /// dcm's mark; when the mark says it holds exactly `desired` (and it is encrypted to
    /// the recipients asked for), it is `desired`. With sops asked for, a Secret with
    /// data that is not encrypted is marked so that it differs from what is wanted.
    fn as_live(&self, mut value: Value, desired: Option<&Value>) -> Value {
        let meta = match value.as_object_mut() {
            Some(m) if m.get("sops").is_some_and(is_sops_metadata) => m.remove("sops"),
            _ => None,
        };
        let mark = take_annotation(&mut value, PLAINTEXT_HMAC_ANNOTATION);
        match (&self.sops, meta) {
            (Some(s), Some(meta)) => {
                if let (Some(key), Some(d), Some(mark)) = (&s.hmac_key, desired, mark) {
                    let wanted: BTreeSet<&str> =
                        s.age_recipients.iter().map(String::as_str).collect();
                    if age_recipients(&meta) == wanted
                        && has_secret_data(d)
                        && constant_time_eq(mark.as_bytes(), plaintext_hmac(key, d).as_bytes())
                    {
                        // The file's ownership marks are plain metadata: they stay.
                        let mut same = d.clone();
                        if let Some(lineage) = crate::ownership::Marks::of(&value).lineage {
                            let address = value
                                .pointer("/metadata/annotations/dcm.io~1address")
                                .and_then(Value::as_str)
                                .unwrap_or_default();
                            crate::ownership::stamp(&mut same, &lineage, address);
                        }
                        return same;
                    }
                }
                value
            }
            (Some(_), None) if has_secret_data(&value) => {
                set_annotation(&mut value, NOT_ENCRYPTED_ANNOTATION, "not encrypted");
                value
            }
            _ => value,
        }
    }

    /// What dcm writes for `object` at `path`: YAML, Secrets with data encrypted when
    /// sops is asked for.
    fn render(&self, path: &Path, object: &Value) -> Result<Vec<u8>, TargetError> {
        let invalid = |message: String| TargetError::InvalidLive {
            path: path.display().to_string(),
            message,
        };
        let sops = match &self.sops {
            Some(s) if has_secret_data(object) => s,
            _ => {
                let yaml = serde_yaml_ng::to_string(object).map_err(|e| invalid(e.to_string()))?;
                return Ok(yaml.into_bytes());
            }
        };
        let sops_err = |message: String| TargetError::Sops {
            path: path.display().to_string(),
            message,
        };
        let key = sops.hmac_key.as_deref().ok_or_else(|| {
            sops_err("the state has no `secrets_hmac_key` to mark the file with".into())
        })?;
        let mut marked = object.clone();
        set_annotation(
            &mut marked,
            PLAINTEXT_HMAC_ANNOTATION,
            &plaintext_hmac(key, object),
        );
        let yaml = serde_yaml_ng::to_string(&marked).map_err(|e| invalid(e.to_string()))?;
        let out = sops_encrypt(&sops.age_recipients, path, yaml.as_bytes()).map_err(sops_err)?;
        check_encrypted(&out).map_err(sops_err)?;
        Ok(out)
    }

    /// Refuses `path` (under the root) when any part of it below the root is a symbolic
    /// link, or is not a plain name: nothing is read, written or deleted through one, so
    /// no file outside the directory can be reached from it.
    fn check_sealed(&self, path: &Path) -> Result<(), TargetError> {
        let refuse = |message: String| TargetError::Unsealed {
            path: path.display().to_string(),
            message,
        };
        let rel = path
            .strip_prefix(&self.root)
            .map_err(|_| refuse("it is not inside the directory target".into()))?;
        let mut at = self.root.clone();
        for part in rel.components() {
            match part {
                std::path::Component::Normal(name) => at.push(name),
                _ => return Err(refuse("its path leaves the directory target".into())),
            }
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(refuse(format!(
                        "{} is a symbolic link; dcm never reads, writes or deletes through one inside a directory target (remove it)",
                        at.display()
                    )))
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                    ) =>
                {
                    break
                }
                Err(e) => return Err(io_err(&at, e)),
            }
        }
        Ok(())
    }

    /// Refuses a file of an object that is not a regular file (a FIFO would hang a read).
    fn check_regular(path: &Path) -> Result<(), TargetError> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if !m.is_file() => Err(TargetError::Unsealed {
                path: path.display().to_string(),
                message: "it is not a regular file".into(),
            }),
            _ => Ok(()),
        }
    }

    /// sha256 of the bytes of the file that holds `id`, when there is one.
    fn file_sha256(&self, id: &ObjRef) -> Result<Option<String>, TargetError> {
        let path = self.path_of(id);
        self.check_sealed(&path)?;
        Self::check_regular(&path)?;
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(hex::encode(Sha256::digest(&bytes)))),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(io_err(&path, e)),
        }
    }

    fn read_file(&self, id: &ObjRef) -> Result<Option<Value>, TargetError> {
        let path = self.path_of(id);
        self.check_sealed(&path)?;
        Self::check_regular(&path)?;
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

/// Whether a top-level `sops` field is sops' metadata (not a field of the object).
fn is_sops_metadata(v: &Value) -> bool {
    v.get("mac").is_some() && v.get("version").is_some()
}

/// The age recipients sops' metadata says the file is encrypted to.
fn age_recipients(meta: &Value) -> BTreeSet<&str> {
    meta.get("age")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| a.get("recipient").and_then(Value::as_str))
        .collect()
}

fn take_annotation(object: &mut Value, key: &str) -> Option<String> {
    let meta = object.get_mut("metadata")?.as_object_mut()?;
    let ann = meta.get_mut("annotations")?.as_object_mut()?;
    let v = ann.remove(key)?;
    if ann.is_empty() {
        meta.remove("annotations");
    }
    v.as_str().map(str::to_string)
}

fn set_annotation(object: &mut Value, key: &str, value: &str) {
    let Some(obj) = object.as_object_mut() else {
        return;
    };
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    let ann = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(ann) = ann.as_object_mut() {
        ann.insert(key.to_string(), Value::String(value.to_string()));
    }
}

/// The mark of an encrypted Secret: the HMAC of the sha256 dcm records for the plaintext
/// object (the object as the plan and the state see it, without the mark).
fn plaintext_hmac(key: &[u8], object: &Value) -> String {
    // Of the object as the file wants it: without dcm's ownership marks, which apply adds.
    let mut unmarked = object.clone();
    crate::ownership::strip(&mut unmarked);
    let message = format!(
        "{PLAINTEXT_HMAC_ANNOTATION} v1\0{}",
        object_sha256(&unmarked)
    );
    format!("v1:{}", hex::encode(hmac_sha256(key, message.as_bytes())))
}

/// Runs `sops encrypt` on `plaintext` (YAML, on stdin: it never touches the disk).
/// Only `data` and `stringData` values are encrypted. `.sops.yaml` files are ignored:
/// everything sops needs is given here.
fn sops_encrypt(recipients: &[String], path: &Path, plaintext: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = std::process::Command::new("sops")
        .args(["--config", "/dev/null", "encrypt", "--age"])
        .arg(recipients.join(","))
        .args([
            "--encrypted-regex",
            "^(data|stringData)$",
            "--input-type",
            "yaml",
            "--output-type",
            "yaml",
            "--filename-override",
        ])
        .arg(path)
        .env("SOPS_DISABLE_VERSION_CHECK", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("cannot run `sops` ({e}); install sops (https://github.com/getsops/sops), or choose `secrets = \"plaintext\"`")
        })?;
    let written = match child.stdin.take() {
        Some(mut stdin) => stdin.write_all(plaintext),
        None => Err(std::io::Error::other("no stdin")),
    };
    let out = child
        .wait_with_output()
        .map_err(|e| format!("`sops` did not finish: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(5)
            .collect();
        return Err(format!(
            "`sops encrypt` failed ({}): {}",
            out.status,
            why.join("; ")
        ));
    }
    written.map_err(|e| format!("cannot give the object to `sops`: {e}"))?;
    Ok(out.stdout)
}

/// Whether `sops` can be run, before an apply that needs it writes anything.
pub fn check_sops() -> Result<(), String> {
    let run = std::process::Command::new("sops")
        .args(["--disable-version-check", "--version"])
        .env("SOPS_DISABLE_VERSION_CHECK", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match run {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("`sops --version` failed ({s})")),
        Err(e) => Err(format!("cannot run `sops` ({e})")),
    }
}

/// Checks what sops wrote before it replaces anything: sops' metadata is there and every
/// `data`/`stringData` value is ciphertext.
fn check_encrypted(out: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(out).map_err(|_| "`sops` wrote something that is not text")?;
    let v: Value = serde_yaml_ng::from_str(text)
        .map_err(|_| "`sops` wrote something that is not YAML".to_string())?;
    if !v.get("sops").is_some_and(is_sops_metadata) {
        return Err("`sops` wrote a file without its metadata".into());
    }
    for f in ["data", "stringData"] {
        if let Some(map) = v.get(f).and_then(Value::as_object) {
            if map
                .values()
                .any(|x| !x.as_str().is_some_and(|s| s.starts_with("ENC[")))
            {
                return Err(format!("`sops` left a value of `{f}` unencrypted"));
            }
        }
    }
    Ok(())
}

fn io_err(path: &Path, source: std::io::Error) -> TargetError {
    TargetError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The temp files (`.<name>.tmp-<pid>`) a killed run left in `dir` that start with
/// `prefix`, taken out of the list made the first time this run wrote to `dir`.
fn stale_temp_files(dir: &Path, prefix: &str) -> Vec<String> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static LEFT: OnceLock<Mutex<HashMap<PathBuf, Vec<String>>>> = OnceLock::new();
    let mut left = LEFT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let names = left.entry(dir.to_path_buf()).or_insert_with(|| {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n.starts_with('.') && n.contains(".tmp-"))
                    .collect()
            })
            .unwrap_or_default()
    });
    let (mine, rest): (Vec<String>, Vec<String>) =
        names.drain(..).partition(|n| n.starts_with(prefix));
    *names = rest;
    mine
}

/// Writes `bytes` to `path` so that readers see the old file or the new one, never part.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp_prefix = format!(".{file_name}.tmp-");
    let tmp = dir.join(format!("{tmp_prefix}{}", std::process::id()));
    // A run killed mid-write leaves its temp file; the next write of the same file
    // sweeps it, so the directory holds only objects. The directory is listed once per
    // run (listing it for every write made writing N files cost N²).
    for stale in stale_temp_files(dir, &tmp_prefix) {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    {
        // A new file, never one that is there (nor a symbolic link's target).
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
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
        // Folders (a namespace's, a kind's) found missing during this read: the objects
        // they would hold are absent, with no more look-ups (a first plan reads 100k
        // objects from folders that do not exist yet).
        let mut missing: std::collections::HashSet<PathBuf> = Default::default();
        for item in items {
            let path = self.path_of(&item.id);
            let folders = || {
                path.ancestors()
                    .skip(1)
                    .take_while(|a| *a != self.root.as_path())
            };
            if folders().any(|f| missing.contains(f)) {
                continue;
            }
            match self.read_one(item)? {
                Some(v) => {
                    out.insert(item.id.clone(), v);
                }
                None => {
                    if let Some(gone) = folders()
                        .filter(|f| {
                            matches!(std::fs::symlink_metadata(f), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
                        })
                        .last()
                    {
                        missing.insert(gone.to_path_buf());
                    }
                }
            }
        }
        Ok(out)
    }

    async fn apply(
        &self,
        id: &ObjRef,
        object: &Value,
        _force: bool,
    ) -> Result<Option<String>, TargetError> {
        let path = self.path_of(id);
        super::blocking(|| {
            self.check_sealed(&path)?;
            let bytes = self.render(&path, object)?;
            write_atomically(&path, &bytes).map_err(|e| io_err(&path, e))
        })?;
        Ok(None)
    }

    fn written_sha256(&self, id: &ObjRef) -> Result<Option<String>, TargetError> {
        self.file_sha256(id)
    }

    async fn namespace_contents(&self, namespace: &str) -> Result<Vec<ObjRef>, TargetError> {
        let dir = self.root.join(namespace);
        self.check_sealed(&dir)?;
        let kinds = match std::fs::read_dir(&dir) {
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir, e)),
        };
        let mut out = Vec::new();
        for kind_dir in kinds.flatten() {
            self.check_sealed(&kind_dir.path())?;
            let Ok(files) = std::fs::read_dir(kind_dir.path()) else {
                continue;
            };
            for f in files.flatten() {
                let path = f.path();
                if path.extension().is_none_or(|x| x != "yaml") {
                    continue;
                }
                self.check_sealed(&path)?;
                let text = std::fs::read_to_string(&path).map_err(|e| io_err(&path, e))?;
                let Ok(v) = serde_yaml_ng::from_str::<Value>(&text) else {
                    continue;
                };
                let kind = v.get("kind").and_then(Value::as_str).unwrap_or_default();
                let name = v.pointer("/metadata/name").and_then(Value::as_str);
                let group = v
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .and_then(|a| a.rsplit_once('/'))
                    .map_or("", |(g, _)| g);
                if let Some(name) = name {
                    let meta = v.get("metadata").cloned().unwrap_or_default();
                    if !super::made_by_the_cluster(group, kind, name, &meta) {
                        out.push(ObjRef {
                            cluster: String::new(),
                            group: group.to_string(),
                            kind: kind.to_string(),
                            namespace: namespace.to_string(),
                            name: name.to_string(),
                        });
                    }
                }
            }
        }
        out.sort();
        Ok(out)
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
            self.check_sealed(&ns.path().join(&kind_dir))?;
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
            self.check_sealed(&path)?;
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

    async fn delete(&self, id: &ObjRef) -> Result<super::Deleted, TargetError> {
        let path = self.path_of(id);
        self.check_sealed(&path)?;
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
        Ok(super::Deleted::Gone)
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
            owned: true,
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
        t.apply(&cm, &obj, false).await.unwrap();
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

    #[tokio::test]
    async fn one_read_skips_folders_it_found_missing_and_reads_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let t = DirTarget::new(dir.path().to_path_buf());
        let cm = |ns: &str, name: &str| {
            let o = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":name,"namespace":ns}});
            (id("", "ConfigMap", ns, name), o)
        };
        let (present, obj) = cm("a", "x");
        t.apply(&present, &obj, false).await.unwrap();
        let other_kind = id("", "Secret", "a", "s");
        let (gone1, _) = cm("b", "y");
        let (gone2, _) = cm("b", "z");
        let (present2, obj2) = cm("c", "w");
        t.apply(&present2, &obj2, false).await.unwrap();
        let items: Vec<ReadItem> = [&other_kind, &gone1, &gone2, &present, &present2]
            .into_iter()
            .map(item)
            .collect();
        let live = t.read(&items).await.unwrap();
        assert_eq!(live.keys().collect::<Vec<_>>(), [&present, &present2]);

        // A folder swapped for a link is still refused, after a missing one was skipped.
        std::os::unix::fs::symlink(dir.path().join("a"), dir.path().join("d")).unwrap();
        let (linked, _) = cm("d", "x");
        let err = t.read(&[item(&gone1), item(&linked)]).await.unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
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
            t.apply(
                &id("networking.istio.io", "ServiceEntry", ns, name),
                &obj,
                false,
            )
            .await
            .unwrap();
        }
        let cm =
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"one","namespace":"a"}});
        t.apply(&id("", "ConfigMap", "a", "one"), &cm, false)
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

    fn sops_target(key: Option<&[u8]>) -> DirTarget {
        DirTarget::with_sops(
            PathBuf::from("D"),
            SopsSettings {
                age_recipients: vec!["age1a".into(), "age1b".into()],
                hmac_key: key.map(<[u8]>::to_vec),
            },
        )
    }

    /// A file as sops leaves it: ciphertext values, the mark, sops' metadata.
    fn encrypted_file(mark: &str, recipients: &[&str]) -> Value {
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "s", "namespace": "ns",
                            "annotations": {PLAINTEXT_HMAC_ANNOTATION: mark}},
               "data": {"k": "ENC[AES256_GCM,data:xyz,type:str]"},
               "sops": {"age": recipients.iter().map(|r| json!({"recipient": r, "enc": "..."})).collect::<Vec<_>>(),
                        "mac": "ENC[...]", "version": "3.11.0"}})
    }

    #[test]
    fn an_encrypted_file_stands_for_the_object_its_mark_names() {
        let desired = json!({"apiVersion": "v1", "kind": "Secret",
                             "metadata": {"name": "s", "namespace": "ns"},
                             "data": {"k": "c2VjcmV0"}});
        let t = sops_target(Some(b"0123456789abcdef0123456789abcdef"));
        let mark = plaintext_hmac(b"0123456789abcdef0123456789abcdef", &desired);
        assert!(mark.starts_with("v1:") && !mark.contains(&object_sha256(&desired)));
        let file = encrypted_file(&mark, &["age1b", "age1a"]);
        assert_eq!(t.as_live(file.clone(), Some(&desired)), desired);

        // Anything else reads as the ciphertext, without sops' metadata or the mark.
        let ciphertext = json!({"apiVersion": "v1", "kind": "Secret",
                                "metadata": {"name": "s", "namespace": "ns"},
                                "data": {"k": "ENC[AES256_GCM,data:xyz,type:str]"}});
        let mut other = desired.clone();
        other["data"]["k"] = json!("b3RoZXI=");
        assert_eq!(t.as_live(file.clone(), Some(&other)), ciphertext);
        assert_eq!(t.as_live(file.clone(), None), ciphertext);
        let other_key = sops_target(Some(b"another key, another hash value!"));
        assert_eq!(other_key.as_live(file.clone(), Some(&desired)), ciphertext);
        assert_eq!(
            sops_target(None).as_live(file.clone(), Some(&desired)),
            ciphertext
        );
        let fewer = encrypted_file(&mark, &["age1a"]);
        assert_eq!(t.as_live(fewer, Some(&desired)), ciphertext);
        // Without sops (plaintext chosen now), an encrypted file differs from any plaintext.
        assert_eq!(
            DirTarget::new(PathBuf::from("D")).as_live(file, Some(&desired)),
            ciphertext
        );
        // A plaintext Secret where sops is asked for is marked, so it differs too.
        let plain = t.as_live(desired.clone(), Some(&desired));
        assert_ne!(plain, desired);
        assert_eq!(
            plain["metadata"]["annotations"][NOT_ENCRYPTED_ANNOTATION],
            "not encrypted"
        );
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}});
        assert_eq!(t.as_live(cm.clone(), Some(&cm)), cm);
    }

    #[test]
    fn only_ciphertext_passes_the_check_of_what_sops_wrote() {
        let ok = "kind: Secret\ndata:\n  k: ENC[AES256_GCM,data:x,type:str]\nsops:\n  mac: ENC[x]\n  version: 3.11.0\n";
        assert!(check_encrypted(ok.as_bytes()).is_ok());
        let plain = "kind: Secret\ndata:\n  k: c2VjcmV0\nsops:\n  mac: ENC[x]\n  version: 3.11.0\n";
        assert!(check_encrypted(plain.as_bytes()).is_err());
        assert!(check_encrypted(b"kind: Secret\ndata: {}\n").is_err());
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
