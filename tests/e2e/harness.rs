//! A temporary project directory and a way to run `dcm` in it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct Project {
    pub dir: tempfile::TempDir,
    /// Where its directory targets are (`out`; an example's own `out/<example>`).
    pub out: String,
}

/// What one run of dcm did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// What a finished `Command` did.
    pub fn from_output(out: Output) -> Run {
        Run::from(out)
    }

    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts the exit code, showing the output when it is wrong.
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

pub const TWO_CLUSTERS: &str = r#"
[clusters.cluster1]
dir = "out/cluster1"
secrets = "plaintext"

[clusters.cluster2]
dir = "out/cluster2"

[[resources]]
name = "namespace"
clusters = ["cluster1", "cluster2"]
manifest = { apiVersion = "v1", kind = "Namespace", metadata = { name = "bookinfo" } }

[[resources]]
name = "app"
clusters = ["cluster1"]
file = "manifests/app.yaml"
depends_on = ["resources.namespace"]
"#;

pub const APP_YAML: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: bookinfo
data:
  greeting: hello
  replicas: "3"
---
apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: bookinfo
stringData:
  password: hunter2-very-secret
"#;

impl Project {
    pub fn new() -> Project {
        Project {
            dir: tempfile::tempdir().expect("temp dir"),
            out: "out".to_string(),
        }
    }

    /// The two-cluster example: a namespace in both clusters, a ConfigMap and a Secret in one.
    pub fn two_clusters() -> Project {
        let p = Project::new();
        p.write("dcm.toml", TWO_CLUSTERS);
        p.write("manifests/app.yaml", APP_YAML);
        p
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    pub fn edit(&self, rel: &str, from: &str, to: &str) {
        let text = self.read(rel);
        assert!(text.contains(from), "{rel} does not contain {from:?}");
        self.write(rel, &text.replacen(from, to, 1));
    }

    /// Replaces every occurrence (possibly none).
    pub fn edit_all(&self, rel: &str, from: &str, to: &str) {
        let text = self.read(rel);
        self.write(rel, &text.replace(from, to));
    }

    /// Removes every line that starts with `prefix` (e.g. a key a cluster table no longer
    /// takes once it is a context).
    pub fn remove_lines(&self, rel: &str, prefix: &str) {
        let text = self.read(rel);
        let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with(prefix)).collect();
        self.write(rel, &(kept.join("\n") + "\n"));
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dcm"));
        c.args(args)
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env_remove("KUBECONFIG")
            .env("HOME", self.dir.path())
            .stdin(Stdio::null());
        c
    }

    /// Runs dcm with `args` in the project directory, stdin closed (as in CI).
    pub fn dcm(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run dcm"))
    }

    /// Every file under `rel`, relative to it, sorted.
    pub fn files(&self, rel: &str) -> Vec<String> {
        let root = self.path(rel);
        let mut out = Vec::new();
        walk(&root, &root, &mut out);
        out.sort();
        out
    }

    /// A snapshot of every file in the project (path and bytes), to show nothing changed.
    /// An empty lock file is the lock mechanism at rest, not data, and is left out.
    pub fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        let root = self.dir.path();
        let mut names = Vec::new();
        walk(root, root, &mut names);
        names.sort();
        names
            .into_iter()
            .map(|n| {
                let bytes = std::fs::read(root.join(&n)).unwrap();
                (n, bytes)
            })
            .filter(|(n, b)| !(n.ends_with(".lock") && b.is_empty()))
            .collect()
    }

    pub fn state(&self) -> serde_json::Value {
        serde_json::from_str(&self.read("state/dcm.state.json")).expect("state is JSON")
    }

    pub fn state_addresses(&self) -> Vec<String> {
        self.state()["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["address"].as_str().unwrap().to_string())
            .collect()
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, out);
        } else {
            out.push(p.strip_prefix(root).unwrap().display().to_string());
        }
    }
}

pub use k8s_emulator::base64;

/// Copies the test-only certificates into `certs/` of the project.
pub fn copy_test_certs(p: &Project) {
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/certs");
    for f in [
        "root-cert.pem",
        "ca-cert.pem",
        "ca-key.pem",
        "cert-chain.pem",
    ] {
        let text = std::fs::read_to_string(certs.join(f)).expect("test certificate");
        p.write(&format!("certs/{f}"), &text);
    }
}

/// Decodes standard base64 (what Secret data holds).
pub fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c:?}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    let mut out = Vec::new();
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, d)| n | u32::from(*d) << (18 - 6 * i));
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_decode_reverses_base64() {
    for text in ["", "a", "hi", "hi!", "hello, world"] {
        assert_eq!(base64_decode(&base64(text.as_bytes())), text.as_bytes());
    }
}
