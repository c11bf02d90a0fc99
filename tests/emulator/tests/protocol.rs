//! The emulator's protocol over real HTTP: errors, discovery, faults and the request log.

use k8s_emulator::{Emulator, Fault, FaultKind, FaultWhen, Options};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Status, headers (lower-cased names) and JSON body of an answer.
type Answer = (u16, Vec<(String, String)>, Value);

/// A minimal HTTP/1.1 client: status, headers (lower-cased names) and JSON body; None when
/// the connection was dropped without an answer.
fn http(e: &Emulator, method: &str, path: &str, content_type: &str, body: &str) -> Option<Answer> {
    let addr = e.url().trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nUser-Agent: protocol-test/1.0\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    Some((
        status,
        headers,
        serde_json::from_str(body).unwrap_or(Value::Null),
    ))
}

fn get(e: &Emulator, path: &str) -> (u16, Value) {
    let (s, _, b) = http(e, "GET", path, "application/json", "").expect("answer");
    (s, b)
}

fn post(e: &Emulator, path: &str, body: Value) -> (u16, Value) {
    let (s, _, b) = http(e, "POST", path, "application/json", &body.to_string()).expect("answer");
    (s, b)
}

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
}

#[test]
fn errors_are_status_objects_with_real_reasons_and_codes() {
    let e = Emulator::start(Options::default()).expect("start");
    let (s, b) = get(&e, "/api/v1/namespaces/default/configmaps/nope");
    assert_eq!(
        (s, b["kind"].as_str(), b["reason"].as_str()),
        (404, Some("Status"), Some("NotFound"))
    );
    assert_eq!(b["message"], "configmaps \"nope\" not found");

    assert_eq!(
        post(&e, "/api/v1/namespaces/default/configmaps", cm("a")).0,
        201
    );
    let (s, b) = post(&e, "/api/v1/namespaces/default/configmaps", cm("a"));
    assert_eq!((s, b["reason"].as_str()), (409, Some("AlreadyExists")));

    let (s, b) = post(&e, "/api/v1/namespaces/default/configmaps", cm("Bad_Name"));
    assert_eq!((s, b["reason"].as_str()), (422, Some("Invalid")));
    assert_eq!(b["details"]["causes"][0]["field"], "metadata.name");

    let (s, _, b) = http(
        &e,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        "{not json",
    )
    .expect("answer");
    assert_eq!((s, b["reason"].as_str()), (400, Some("BadRequest")));

    // Optimistic concurrency.
    let (_, live) = get(&e, "/api/v1/namespaces/default/configmaps/a");
    let mut stale = live.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    let (s, _, b) = http(
        &e,
        "PUT",
        "/api/v1/namespaces/default/configmaps/a",
        "application/json",
        &stale.to_string(),
    )
    .expect("answer");
    assert_eq!((s, b["reason"].as_str()), (409, Some("Conflict")));
    let mut fresh = live.clone();
    fresh["data"]["k"] = json!("w");
    let (s, _, b) = http(
        &e,
        "PUT",
        "/api/v1/namespaces/default/configmaps/a",
        "application/json",
        &fresh.to_string(),
    )
    .expect("answer");
    assert_eq!(s, 200);
    assert_ne!(
        b["metadata"]["resourceVersion"],
        live["metadata"]["resourceVersion"]
    );

    // Server-side apply needs a field manager; YAML bodies are accepted.
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\ndata:\n  k: v\n";
    let (s, _, _) = http(
        &e,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/b",
        "application/apply-patch+yaml",
        yaml,
    )
    .expect("answer");
    assert_eq!(s, 400);
    let (s, _, b) = http(
        &e,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/b?fieldManager=t",
        "application/apply-patch+yaml",
        yaml,
    )
    .expect("answer");
    assert_eq!(s, 201);
    assert_eq!(b["metadata"]["managedFields"][0]["manager"], "t");
    // dryRun=All on a write stores nothing.
    let (s, _, _) = http(
        &e,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/c?fieldManager=t&dryRun=All",
        "application/apply-patch+yaml",
        &yaml.replace("name: b", "name: c"),
    )
    .expect("answer");
    assert_eq!(s, 201);
    assert_eq!(get(&e, "/api/v1/namespaces/default/configmaps/c").0, 404);
}

#[test]
fn discovery_lists_builtin_istio_and_crd_kinds() {
    let e = Emulator::start(Options::default()).expect("start");
    let (_, groups) = get(&e, "/apis");
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    for g in [
        "apps",
        "apiextensions.k8s.io",
        "networking.istio.io",
        "install.istio.io",
    ] {
        assert!(names.contains(&g), "{names:?}");
    }
    let istio = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["name"] == "networking.istio.io")
        .cloned()
        .expect("istio");
    assert_eq!(
        istio["preferredVersion"]["version"], "v1",
        "the highest-priority version is preferred, as for Istio 1.31's CRDs"
    );
    let versions: Vec<&str> = istio["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter_map(|v| v["version"].as_str())
        .collect();
    assert_eq!(versions, vec!["v1", "v1beta1", "v1alpha3"]);
    let (_, v1) = get(&e, "/apis/networking.istio.io/v1");
    let kinds: Vec<&str> = v1["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"VirtualService") && !kinds.contains(&"EnvoyFilter"),
        "{kinds:?}"
    );
    assert_eq!(get(&e, "/apis/example.com/v1").0, 404);
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.com"},
        "spec": {"group": "example.com", "scope": "Cluster",
                 "names": {"kind": "Thing", "plural": "things"},
                 "versions": [{"name": "v1", "served": true, "storage": true}]}
    });
    assert_eq!(
        post(
            &e,
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            crd
        )
        .0,
        201
    );
    let (s, list) = get(&e, "/apis/example.com/v1");
    assert_eq!(s, 200);
    assert_eq!(list["resources"][0]["namespaced"], false);
    let (_, openapi) = get(&e, "/openapi/v3");
    assert!(openapi["paths"]["apis/example.com/v1"]["serverRelativeURL"].is_string());
}

#[test]
fn faults_hit_the_chosen_share_and_the_log_counts_every_request() {
    let e = Emulator::start(Options::default()).expect("start");
    e.add_fault(
        Fault::new(
            FaultKind::TooManyRequests {
                retry_after_secs: 2,
            },
            FaultWhen::Share(0.5),
        )
        .on_method("GET"),
    );
    let mut limited = 0;
    for _ in 0..10 {
        let (s, headers, b) =
            http(&e, "GET", "/api/v1/namespaces", "application/json", "").expect("answer");
        if s == 429 {
            limited += 1;
            assert_eq!(b["reason"], "TooManyRequests");
            assert!(headers.contains(&("retry-after".to_string(), "2".to_string())));
        }
    }
    assert_eq!(limited, 5);
    e.clear_faults();

    e.add_fault(Fault::new(FaultKind::Drop, FaultWhen::Next(1)).on_path("/configmaps"));
    assert!(
        http(&e, "GET", "/api/v1/configmaps", "application/json", "").is_none(),
        "dropped"
    );
    assert_eq!(get(&e, "/api/v1/configmaps").0, 200, "only the next one");
    e.clear_faults();

    e.add_fault(Fault::new(
        FaultKind::Unavailable,
        FaultWhen::AfterRequests(2),
    ));
    assert_eq!(get(&e, "/version").0, 200);
    assert_eq!(get(&e, "/version").0, 200);
    assert_eq!(get(&e, "/version").0, 503);
    e.clear_faults();
    e.add_fault(Fault::new(FaultKind::InternalError, FaultWhen::Share(1.0)).on_method("POST"));
    assert_eq!(
        post(&e, "/api/v1/namespaces/default/configmaps", cm("x")).0,
        500
    );
    e.clear_faults();

    e.add_fault(Fault::new(
        FaultKind::Latency(Duration::from_millis(300)),
        FaultWhen::Next(1),
    ));
    let t = Instant::now();
    assert_eq!(get(&e, "/version").0, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    let log = e.requests();
    assert_eq!(log.len(), 10 + 2 + 3 + 1 + 1);
    assert_eq!(log.iter().filter(|r| r.status == 429).count(), 5);
    assert_eq!(
        log.iter().filter(|r| r.status == 0).count(),
        1,
        "the dropped one"
    );
    assert_eq!(e.counts().get("POST"), Some(&1));
}

#[test]
fn list_pages_with_limit_and_continue() {
    let e = Emulator::start(Options::default()).expect("start");
    for i in 0..5 {
        assert_eq!(
            post(
                &e,
                "/api/v1/namespaces/default/configmaps",
                cm(&format!("c{i}"))
            )
            .0,
            201
        );
    }
    let (_, page) = get(&e, "/api/v1/namespaces/default/configmaps?limit=2");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    let token = page["metadata"]["continue"]
        .as_str()
        .expect("continue")
        .to_string();
    assert_eq!(page["metadata"]["remainingItemCount"], 3);
    let (_, rest) = get(
        &e,
        &format!("/api/v1/namespaces/default/configmaps?limit=10&continue={token}"),
    );
    assert_eq!(rest["items"].as_array().map(Vec::len), Some(3));
    assert!(rest["metadata"].get("continue").is_none());
    let (_, named) = get(&e, "/api/v1/configmaps?fieldSelector=metadata.name%3Dc3");
    assert_eq!(named["items"][0]["metadata"]["name"], "c3");
}

#[test]
fn istio_security_and_sail_kinds_are_served_as_their_crds_say() {
    let e = Emulator::start(Options::default()).expect("start");
    let resources = |gv: &str| -> Vec<(String, bool)> {
        let (s, list) = get(&e, &format!("/apis/{gv}"));
        assert_eq!(s, 200, "{gv}");
        list["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .map(|r| {
                (
                    r["kind"].as_str().unwrap_or_default().to_string(),
                    r["namespaced"].as_bool().unwrap_or(true),
                )
            })
            .collect()
    };
    let sail = resources("sailoperator.io/v1");
    for kind in ["Istio", "IstioRevision", "IstioCNI", "IstioRevisionTag"] {
        assert!(
            sail.contains(&(kind.to_string(), false)),
            "{kind} is cluster-scoped: {sail:?}"
        );
    }
    for gv in [
        "networking.istio.io/v1alpha3",
        "networking.istio.io/v1beta1",
        "networking.istio.io/v1",
    ] {
        let kinds = resources(gv);
        for kind in ["Sidecar", "WorkloadEntry", "ServiceEntry"] {
            assert!(kinds.contains(&(kind.to_string(), true)), "{gv} {kind}");
        }
    }
    for gv in ["security.istio.io/v1beta1", "security.istio.io/v1"] {
        let kinds = resources(gv);
        for kind in ["PeerAuthentication", "AuthorizationPolicy"] {
            assert!(kinds.contains(&(kind.to_string(), true)), "{gv} {kind}");
        }
    }
    assert_eq!(get(&e, "/apis/security.istio.io/v1alpha1").0, 404);
    assert!(resources("install.istio.io/v1alpha1").contains(&("IstioOperator".to_string(), true)));
    let (_, istios) = get(&e, "/apis/sailoperator.io/v1");
    let entry = istios["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "istiorevisions")
        .cloned()
        .expect("istiorevisions");
    assert_eq!(entry["shortNames"], json!(["istiorev"]));
    assert_eq!(entry["categories"], json!(["istio-io"]));
}
