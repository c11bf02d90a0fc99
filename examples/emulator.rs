//! Starts emulated Kubernetes clusters for trying dcm by hand and for benchmarks.
//!
//! `cargo run --example emulator -- --clusters 2 [--dir DIR] [--latency-ms N]` starts
//! `cluster1`..`clusterN` on 127.0.0.1, seeds each with a stock `kube-system/coredns`
//! ConfigMap, writes a kubeconfig with one context per cluster, prints its path, and
//! serves until stopped. The clusters act like real control planes a moment after a
//! write: LoadBalancer Services get an address (cluster N <= 25 from 198.51.100.N0-N9),
//! token Secrets a token, Sail `Istio` objects a Healthy status, new CRDs are established.
//!
//! `--latency-ms N` delays every answer by N ms, as a distant API server would (the
//! emulator's `Latency` fault on every request; requests still run concurrently).
//!
//! For benchmarks, a second line on stdout, `control: http://127.0.0.1:PORT`, names a
//! small test-only control server, separate from the emulated API servers (which serve
//! only the Kubernetes API):
//!
//! - `GET /requests`: the requests each cluster served since the last reset, as JSON
//!   `{"cluster1": {"total": 12, "verbs": {"list": 5, ...}, "resources": {"configmaps": 3, ...}}, ...}`.
//!   Verbs are the API server's (`get`, `list`, `create`, `update`, `patch`, `apply` for a
//!   server-side apply patch, `delete`, `deletecollection`), `apply (dry run)` for a
//!   server-side apply with `dryRun=All` (and `dry run` for other writes with it), or
//!   `discovery` for `/api`, `/apis`, `/openapi` and `/version`.
//! - `GET /timeline`: every request since the last reset, in the order they came in, as
//!   `[cluster, verb, resource, received ms, answered ms]` rows (milliseconds since the
//!   first one): how many requests a client kept in flight, and when.
//! - `POST /reset`: forgets the requests served so far.

/// The allocator dcm itself uses: on the two cores a benchmark shares with dcm, the
/// emulator's own malloc and free would otherwise be a fifth of its work per request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use k8s_emulator::harness::Clusters;
use k8s_emulator::{Fault, FaultKind, FaultWhen, RequestRecord};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

fn main() {
    let mut clusters = 2usize;
    let mut dir: Option<PathBuf> = None;
    let mut latency_ms = 0u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--clusters" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => clusters = n,
                _ => fail("--clusters needs a number above 0"),
            },
            "--dir" => match args.next() {
                Some(d) => dir = Some(PathBuf::from(d)),
                None => fail("--dir needs a directory"),
            },
            "--latency-ms" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) => latency_ms = n,
                None => fail("--latency-ms needs a number of milliseconds"),
            },
            "-h" | "--help" => {
                println!("usage: emulator [--clusters N] [--dir DIR] [--latency-ms N]");
                return;
            }
            other => fail(&format!("unknown argument {other:?}")),
        }
    }
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("dcm-emulator-{}", std::process::id()))
    });
    if let Err(e) = std::fs::create_dir_all(&dir) {
        fail(&format!("cannot create {}: {e}", dir.display()));
    }
    let started = match Clusters::start(clusters, &dir) {
        Ok(c) => c,
        Err(e) => fail(&format!("cannot start the clusters: {e}")),
    };
    if let Err(e) = started.seed_coredns() {
        fail(&format!("cannot seed coredns: {e}"));
    }
    for (name, e) in &started.clusters {
        if latency_ms > 0 {
            e.add_fault(Fault::new(
                FaultKind::Latency(Duration::from_millis(latency_ms)),
                FaultWhen::Share(1.0),
            ));
        }
        eprintln!("{name}: {}", e.url());
    }
    let control = match TcpListener::bind("127.0.0.1:0").and_then(|l| Ok((l.local_addr()?, l))) {
        Ok(c) => c,
        Err(e) => fail(&format!("cannot start the control server: {e}")),
    };
    println!("{}", started.kubeconfig.display());
    println!("control: http://{}", control.0);
    eprintln!("serving until stopped (Ctrl-C)");
    for stream in control.1.incoming().flatten() {
        serve_control(stream, &started);
    }
}

/// Answers one request of the control server (one request per connection).
fn serve_control(stream: TcpStream, clusters: &Clusters) {
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Skip the headers; the control requests have no body.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line.trim_end() != "" {
        line.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = match (method, path) {
        ("GET", "/requests") => ("200 OK", requests_json(clusters)),
        ("GET", "/timeline") => ("200 OK", timeline_json(clusters)),
        ("POST", "/reset") => {
            for (_, e) in &clusters.clusters {
                e.clear_requests();
            }
            ("200 OK", "{}".to_string())
        }
        _ => (
            "404 Not Found",
            r#"{"error":"GET /requests, GET /timeline or POST /reset"}"#.into(),
        ),
    };
    let _ = write!(
        &stream,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn requests_json(clusters: &Clusters) -> String {
    let mut out = serde_json::Map::new();
    for (name, e) in &clusters.clusters {
        let log = e.requests();
        let mut verbs: BTreeMap<String, usize> = BTreeMap::new();
        let mut resources: BTreeMap<String, usize> = BTreeMap::new();
        for r in &log {
            let (verb, resource) = classify(r);
            *verbs.entry(verb.to_string()).or_default() += 1;
            if let Some(resource) = resource {
                *resources.entry(resource).or_default() += 1;
            }
        }
        out.insert(
            name.clone(),
            serde_json::json!({"total": log.len(), "verbs": verbs, "resources": resources}),
        );
    }
    serde_json::Value::Object(out).to_string()
}

/// Every request since the last reset, in the order they came in, as
/// `[cluster, verb, resource, received ms, answered ms]` (milliseconds since the first
/// one came in, to any cluster): how many were in flight when, for benchmarks.
fn timeline_json(clusters: &Clusters) -> String {
    let mut all = Vec::new();
    for (name, e) in &clusters.clusters {
        for r in e.requests() {
            all.push((name.clone(), r));
        }
    }
    let Some(first) = all.iter().map(|(_, r)| r.received).min() else {
        return "[]".into();
    };
    all.sort_by_key(|(_, r)| r.received);
    let ms = |t: std::time::Instant| t.duration_since(first).as_secs_f64() * 1000.0;
    let rows: Vec<serde_json::Value> = all
        .iter()
        .map(|(name, r)| {
            let (verb, resource) = classify(r);
            serde_json::json!([name, verb, resource, ms(r.received), ms(r.answered)])
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

/// The API server's verb for a request, and the resource (plural) it is about.
fn classify(r: &RequestRecord) -> (&'static str, Option<String>) {
    let segments: Vec<&str> = r.path.split('/').filter(|s| !s.is_empty()).collect();
    // What follows the group version: /api/v1/... or /apis/<group>/<version>/...
    let rest = match segments.as_slice() {
        ["api", _version, rest @ ..] if !rest.is_empty() => rest,
        ["apis", _group, _version, rest @ ..] if !rest.is_empty() => rest,
        _ => return ("discovery", None),
    };
    let (resource, named) = match rest {
        ["namespaces", _ns, "status" | "finalize"] => ("namespaces", true),
        ["namespaces", _ns, resource, rest @ ..] => (*resource, !rest.is_empty()),
        ["namespaces", rest @ ..] => ("namespaces", !rest.is_empty()),
        [resource, rest @ ..] => (*resource, !rest.is_empty()),
        [] => return ("discovery", None),
    };
    let dry_run = r.query.split('&').any(|p| p == "dryRun=All");
    let apply = r.content_type.starts_with("application/apply-patch");
    let verb = match (r.method.as_str(), named) {
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("PATCH", _) if apply && dry_run => "apply (dry run)",
        ("PATCH", _) if apply => "apply",
        (_, _) if dry_run => "dry run",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "other",
    };
    (verb, Some(resource.to_string()))
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(method: &str, path: &str, content_type: &str) -> RequestRecord {
        RequestRecord {
            method: method.into(),
            path: path.into(),
            query: String::new(),
            status: 200,
            content_type: content_type.into(),
            accept: String::new(),
            received: std::time::Instant::now(),
            answered: std::time::Instant::now(),
        }
    }

    #[test]
    fn requests_are_counted_by_the_api_servers_verbs() {
        let verb = |m, p, ct| {
            let (v, r) = classify(&record(m, p, ct));
            (v, r.unwrap_or_default())
        };
        assert_eq!(verb("GET", "/api/v1", ""), ("discovery", String::new()));
        assert_eq!(verb("GET", "/apis", ""), ("discovery", String::new()));
        assert_eq!(verb("GET", "/openapi/v3", ""), ("discovery", String::new()));
        assert_eq!(
            verb("GET", "/apis/apps/v1", ""),
            ("discovery", String::new())
        );
        assert_eq!(
            verb("GET", "/api/v1/namespaces", ""),
            ("list", "namespaces".into())
        );
        assert_eq!(
            verb("GET", "/api/v1/namespaces/a", ""),
            ("get", "namespaces".into())
        );
        assert_eq!(
            verb("PUT", "/api/v1/namespaces/a/finalize", "application/json"),
            ("update", "namespaces".into())
        );
        assert_eq!(
            verb("GET", "/api/v1/namespaces/a/configmaps", ""),
            ("list", "configmaps".into())
        );
        assert_eq!(
            verb(
                "PATCH",
                "/apis/apps/v1/namespaces/a/deployments/web",
                "application/apply-patch+yaml"
            ),
            ("apply", "deployments".into())
        );
        assert_eq!(
            verb(
                "PATCH",
                "/apis/apps/v1/namespaces/a/deployments/web",
                "application/merge-patch+json"
            ),
            ("patch", "deployments".into())
        );
        let mut dry = record(
            "PATCH",
            "/api/v1/namespaces/a/configmaps/c",
            "application/apply-patch+yaml",
        );
        dry.query = "dryRun=All&fieldManager=kubectl".into();
        assert_eq!(classify(&dry).0, "apply (dry run)");
        assert_eq!(
            verb("DELETE", "/apis/sailoperator.io/v1/istios/lc1", ""),
            ("delete", "istios".into())
        );
        assert_eq!(
            verb("POST", "/api/v1/namespaces/a/secrets", "application/json"),
            ("create", "secrets".into())
        );
    }
}
