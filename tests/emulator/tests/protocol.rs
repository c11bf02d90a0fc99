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

/// Polls `f` until it gives a value (every 20 ms, for up to 5 s).
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "timed out waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
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
    let list = eventually("the CRD's kind is served", || {
        let (s, list) = get(&e, "/apis/example.com/v1");
        (s == 200).then_some(list)
    });
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

fn send(e: &Emulator, method: &str, path: &str, content_type: &str, body: &Value) -> (u16, Value) {
    let body = match body {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let (s, _, b) = http(e, method, path, content_type, &body).expect("answer");
    (s, b)
}

fn lb_service(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "tls", "port": 15443}]}
    })
}

const SERVICES: &str = "/api/v1/namespaces/default/services";

fn ingress(e: &Emulator, name: &str) -> Value {
    get(e, &format!("{SERVICES}/{name}")).1["status"]["loadBalancer"]["ingress"].clone()
}

#[test]
fn load_balancers_get_an_address_from_the_pool_after_the_delay() {
    let e = Emulator::start(Options {
        lb_pool: "203.0.113.5-203.0.113.6".into(),
        lb_delay: Some(Duration::from_millis(500)),
        ..Options::default()
    })
    .expect("start");
    let (s, created) = post(&e, SERVICES, lb_service("a"));
    assert_eq!(s, 201);
    assert!(created["status"]["loadBalancer"]["ingress"].is_null());
    assert!(ingress(&e, "a").is_null(), "not before the delay");
    let rv = e.resource_version();
    // Nobody asks for the Service while the load balancer is set up.
    std::thread::sleep(Duration::from_millis(700));
    assert!(e.resource_version() > rv, "the controller wrote on its own");
    let (_, list) = get(&e, "/api/v1/services");
    let a = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|s| s["metadata"]["name"] == "a")
        .cloned()
        .expect("a is listed");
    assert_eq!(
        a["status"]["loadBalancer"]["ingress"],
        json!([{"ip": "203.0.113.5", "ipMode": "VIP"}])
    );

    // The next one gets the next address; the one after waits for a free one.
    post(&e, SERVICES, lb_service("b"));
    post(&e, SERVICES, lb_service("c"));
    eventually("b has an address", || {
        ingress(&e, "b")[0]["ip"].as_str().map(str::to_string)
    });
    assert_eq!(ingress(&e, "b")[0]["ip"], "203.0.113.6");
    std::thread::sleep(Duration::from_millis(400));
    assert!(ingress(&e, "c").is_null(), "the pool is used up");
    assert_eq!(
        send(
            &e,
            "DELETE",
            &format!("{SERVICES}/a"),
            "application/json",
            &json!({})
        )
        .0,
        200
    );
    eventually("c has a's address", || {
        (ingress(&e, "c")[0]["ip"] == "203.0.113.5").then_some(())
    });

    // Clients cannot write the status, and writing the spec keeps it.
    let (s, patched) = send(
        &e,
        "PATCH",
        &format!("{SERVICES}/b"),
        "application/merge-patch+json",
        &json!({"spec": {"selector": {"app": "b"}}, "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.99"}]}}}),
    );
    assert_eq!(s, 200, "{patched}");
    assert_eq!(patched["spec"]["selector"]["app"], "b");
    assert_eq!(ingress(&e, "b")[0]["ip"], "203.0.113.6");
    let mut applied = lb_service("b");
    applied["spec"]["ports"][0]["port"] = json!(443);
    let (s, _) = send(
        &e,
        "PATCH",
        &format!("{SERVICES}/b?fieldManager=dcm&force=true"),
        "application/apply-patch+yaml",
        &applied,
    );
    assert_eq!(s, 200);
    let b = get(&e, &format!("{SERVICES}/b")).1;
    assert_eq!(b["spec"]["ports"][0]["port"], 443);
    assert_eq!(
        b["status"]["loadBalancer"]["ingress"][0]["ip"],
        "203.0.113.6"
    );
    let mut replaced = b.clone();
    replaced["status"] = json!({});
    assert_eq!(
        send(
            &e,
            "PUT",
            &format!("{SERVICES}/b"),
            "application/json",
            &replaced
        )
        .0,
        200
    );
    assert_eq!(ingress(&e, "b")[0]["ip"], "203.0.113.6", "PUT keeps it too");

    // A Service that stops being a LoadBalancer loses its load balancer, and its
    // address goes to one that waits.
    post(&e, SERVICES, lb_service("d"));
    send(
        &e,
        "PATCH",
        &format!("{SERVICES}/b"),
        "application/merge-patch+json",
        &json!({"spec": {"type": "ClusterIP"}}),
    );
    eventually("b's load balancer is gone", || {
        ingress(&e, "b").is_null().then_some(())
    });
    eventually("d has b's address", || {
        (ingress(&e, "d")[0]["ip"] == "203.0.113.6").then_some(())
    });
}

#[test]
fn load_balancers_can_have_hostnames_or_never_come() {
    let e = Emulator::start(Options {
        lb_hostname_domain: Some("lb.cluster1.example".into()),
        ..Options::immediate()
    })
    .expect("start");
    post(&e, SERVICES, lb_service("gw"));
    assert_eq!(
        ingress(&e, "gw"),
        json!([{"hostname": "gw-default.lb.cluster1.example"}]),
        "no delay: the next read has it"
    );

    let none = Emulator::start(Options {
        lb_delay: None,
        ..Options::default()
    })
    .expect("start");
    post(&none, SERVICES, lb_service("gw"));
    std::thread::sleep(Duration::from_millis(400));
    assert!(
        ingress(&none, "gw").is_null(),
        "no load balancer controller"
    );
}

#[test]
fn each_cluster_of_the_harness_has_its_own_load_balancer_addresses() {
    use k8s_emulator::harness::{lb_pool, Clusters};
    assert_eq!(lb_pool(1), "198.51.100.10-198.51.100.19");
    assert_eq!(lb_pool(25), "198.51.100.250-198.51.100.254");
    assert_eq!(lb_pool(26), "203.0.113.10-203.0.113.19");
    assert_eq!(lb_pool(51), "192.0.2.10-192.0.2.19");
    let dir = tempfile::tempdir().expect("temp dir");
    let clusters = Clusters::start(2, dir.path()).expect("start");
    for (name, want) in [("cluster1", "198.51.100.10"), ("cluster2", "198.51.100.20")] {
        let e = clusters.get(name).expect("cluster");
        post(e, SERVICES, lb_service("eastwest"));
        let ip = eventually("an address", || {
            ingress(e, "eastwest")[0]["ip"].as_str().map(str::to_string)
        });
        assert_eq!(ip, want, "{name}");
    }
    let named = Clusters::start_with(1, dir.path(), |name, o| {
        o.lb_hostname_domain = Some(format!("lb.{name}.example"));
    })
    .expect("start");
    let e = named.get("cluster1").expect("cluster1");
    post(e, SERVICES, lb_service("eastwest"));
    let host = eventually("a hostname", || {
        ingress(e, "eastwest")[0]["hostname"]
            .as_str()
            .map(str::to_string)
    });
    assert_eq!(host, "eastwest-default.lb.cluster1.example");
}

const SECRETS: &str = "/api/v1/namespaces/default/secrets";

fn token_secret(sa: Option<&str>) -> Value {
    let mut s = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
        "metadata": {"name": "remote-reader"}
    });
    if let Some(sa) = sa {
        s["metadata"]["annotations"] = json!({"kubernetes.io/service-account.name": sa});
    }
    s
}

#[test]
fn the_token_controller_fills_token_secrets_of_existing_service_accounts() {
    let e = Emulator::start(Options::default()).expect("start");
    let (s, b) = post(&e, SECRETS, token_secret(None));
    assert_eq!((s, b["reason"].as_str()), (422, Some("Invalid")));
    assert_eq!(
        b["details"]["causes"][0]["field"],
        "metadata.annotations[kubernetes.io/service-account.name]"
    );

    assert_eq!(post(&e, SECRETS, token_secret(Some("reader"))).0, 201);
    std::thread::sleep(Duration::from_millis(300));
    let secret = |e: &Emulator| get(e, &format!("{SECRETS}/remote-reader")).1;
    assert!(secret(&e)["data"].is_null(), "no ServiceAccount, no token");
    let (_, sa) = post(
        &e,
        "/api/v1/namespaces/default/serviceaccounts",
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}}),
    );
    let filled = eventually("the token is issued", || {
        let s = secret(&e);
        s["data"]["token"].is_string().then_some(s)
    });
    for key in ["token", "ca.crt", "namespace"] {
        assert!(filled["data"][key].is_string(), "{key}: {filled}");
    }
    assert_eq!(
        filled["metadata"]["annotations"]["kubernetes.io/service-account.uid"],
        sa["metadata"]["uid"]
    );
    let ca = k8s_emulator::base64_decode(filled["data"]["ca.crt"].as_str().unwrap_or_default())
        .expect("base64");
    assert_eq!(String::from_utf8_lossy(&ca), k8s_emulator::CLUSTER_CA_PEM);
    let managed = &filled["metadata"]["managedFields"];
    let controller = managed
        .as_array()
        .expect("managedFields")
        .iter()
        .find(|m| m["manager"] == "kube-controller-manager")
        .expect("the controller owns what it wrote");
    assert_eq!(controller["operation"], "Update");
    assert!(controller["fieldsV1"]["f:metadata"]["f:annotations"]
        ["f:kubernetes.io/service-account.uid"]
        .is_object());

    // A client that replaces the Secret without its data gets the data back, with the
    // same CA but a new token.
    let mut replaced = filled.clone();
    replaced.as_object_mut().expect("object").remove("data");
    let (s, b) = send(
        &e,
        "PUT",
        &format!("{SECRETS}/remote-reader"),
        "application/json",
        &replaced,
    );
    assert_eq!(s, 200, "{b}");
    assert!(b["data"].is_null());
    let refilled = eventually("the token is issued again", || {
        let s = secret(&e);
        s["data"]["token"].is_string().then_some(s)
    });
    assert_eq!(refilled["data"]["ca.crt"], filled["data"]["ca.crt"]);

    let never = Emulator::start(Options {
        token_delay: None,
        ..Options::default()
    })
    .expect("start");
    post(
        &never,
        "/api/v1/namespaces/default/serviceaccounts",
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}}),
    );
    post(&never, SECRETS, token_secret(Some("reader")));
    std::thread::sleep(Duration::from_millis(300));
    assert!(secret(&never)["data"].is_null());
}

const ISTIOS: &str = "/apis/sailoperator.io/v1/istios";

fn istio(version: &str) -> Value {
    json!({
        "apiVersion": "sailoperator.io/v1", "kind": "Istio",
        "metadata": {"name": "default"},
        "spec": {"version": version, "values": {"global": {"meshID": "mesh1"}}}
    })
}

fn conditions(o: &Value) -> Vec<(String, String)> {
    o["status"]["conditions"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c["type"].as_str().unwrap_or_default().to_string(),
                        c["status"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn the_sail_operator_reports_istios_healthy_once_their_namespace_exists() {
    let e = Emulator::start(Options::default()).expect("start");
    let (s, created) = post(&e, ISTIOS, {
        let mut i = istio("v1.26.0");
        i["status"] = json!({"state": "Healthy"});
        i
    });
    assert_eq!(s, 201, "{created}");
    assert!(
        created["status"].is_null(),
        "a client cannot set the status"
    );
    assert_eq!(
        created["spec"]["namespace"], "istio-system",
        "the CRD's default"
    );
    assert_eq!(created["spec"]["updateStrategy"]["type"], "InPlace");

    // istio-system does not exist yet: the revision cannot be installed.
    let failing = eventually("the Istio is reported on", || {
        let (_, o) = get(&e, &format!("{ISTIOS}/default"));
        o["status"]["state"].is_string().then_some(o)
    });
    assert_eq!(failing["status"]["state"], "ReconcileError");
    assert_eq!(
        conditions(&failing),
        pairs(&[("Reconciled", "False"), ("Ready", "Unknown")])
    );
    assert_eq!(
        failing["status"]["conditions"][0]["message"],
        "namespace \"istio-system\" doesn't exist"
    );

    post(
        &e,
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}}),
    );
    let healthy = eventually("the Istio is healthy", || {
        let (_, o) = get(&e, &format!("{ISTIOS}/default"));
        (o["status"]["state"] == "Healthy").then_some(o)
    });
    assert_eq!(
        conditions(&healthy),
        pairs(&[
            ("Reconciled", "True"),
            ("Ready", "True"),
            ("DependenciesHealthy", "True")
        ])
    );
    assert_eq!(healthy["status"]["observedGeneration"], 1);
    assert_eq!(healthy["status"]["activeRevisionName"], "default");
    assert_eq!(
        healthy["status"]["revisions"],
        json!({"total": 1, "ready": 1, "inUse": 0})
    );
    let (s, rev) = get(&e, "/apis/sailoperator.io/v1/istiorevisions/default");
    assert_eq!(s, 200);
    assert_eq!(rev["spec"]["version"], "v1.26.0");
    assert_eq!(rev["spec"]["values"]["global"]["meshID"], "mesh1");
    assert_eq!(
        rev["metadata"]["ownerReferences"][0]["uid"],
        healthy["metadata"]["uid"]
    );

    // A new spec is a new generation; its status follows, the old one stays meanwhile.
    let (s, _) = send(
        &e,
        "PATCH",
        &format!("{ISTIOS}/default?fieldManager=dcm&force=true"),
        "application/apply-patch+yaml",
        &istio("v1.26.1"),
    );
    assert_eq!(s, 200);
    let (_, now) = get(&e, &format!("{ISTIOS}/default"));
    assert_eq!(
        (
            now["metadata"]["generation"].as_i64(),
            now["status"]["state"].as_str()
        ),
        (Some(2), Some("Healthy"))
    );
    eventually("generation 2 is observed", || {
        let (_, o) = get(&e, &format!("{ISTIOS}/default"));
        (o["status"]["observedGeneration"] == 2).then_some(())
    });
    let (_, rev) = get(&e, "/apis/sailoperator.io/v1/istiorevisions/default");
    assert_eq!(rev["spec"]["version"], "v1.26.1");

    // Deleting the Istio takes its revision with it.
    send(
        &e,
        "DELETE",
        &format!("{ISTIOS}/default"),
        "application/json",
        &json!({}),
    );
    assert_eq!(
        get(&e, "/apis/sailoperator.io/v1/istiorevisions/default").0,
        404
    );
}

#[test]
fn an_istio_that_never_gets_ready_stays_without_status_and_seeds_keep_theirs() {
    let e = Emulator::start(Options {
        istio_ready_delay: None,
        ..Options::default()
    })
    .expect("start");
    post(
        &e,
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}}),
    );
    post(&e, ISTIOS, istio("v1.26.0"));
    std::thread::sleep(Duration::from_millis(400));
    let (_, o) = get(&e, &format!("{ISTIOS}/default"));
    assert!(o["status"].is_null(), "{o}");

    // A test can seed an Istio as the operator left it.
    let mut seeded = istio("v1.26.0");
    seeded["metadata"]["name"] = json!("other");
    seeded["status"] =
        json!({"state": "Healthy", "conditions": [{"type": "Ready", "status": "True"}]});
    e.seed(seeded).expect("seed");
    let (_, o) = get(&e, &format!("{ISTIOS}/other"));
    assert_eq!(o["status"]["state"], "Healthy");
}

fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"kind": "Widget", "plural": "widgets"},
                 "versions": [{"name": "v1", "served": true, "storage": true}]}
    })
}

fn widget() -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
}

const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
const WIDGETS: &str = "/apis/example.com/v1/namespaces/default/widgets";

#[test]
fn a_new_crd_is_served_only_once_established() {
    let e = Emulator::start(Options {
        crd_established_delay: Some(Duration::from_millis(500)),
        ..Options::default()
    })
    .expect("start");
    let (s, created) = post(&e, CRDS, widget_crd());
    assert_eq!(s, 201);
    assert_eq!(
        conditions(&created),
        pairs(&[("NamesAccepted", "True"), ("Established", "False")])
    );
    assert_eq!(get(&e, "/apis/example.com/v1").0, 404);
    let (s, b) = post(&e, WIDGETS, widget());
    assert_eq!((s, b["reason"].as_str()), (404, Some("NotFound")));
    eventually("the kind is served", || {
        (get(&e, "/apis/example.com/v1").0 == 200).then_some(())
    });
    let (_, crd) = get(&e, &format!("{CRDS}/widgets.example.com"));
    assert_eq!(
        conditions(&crd),
        pairs(&[("NamesAccepted", "True"), ("Established", "True")])
    );
    assert_eq!(post(&e, WIDGETS, widget()).0, 201);
    // Updating an established CRD keeps it served.
    let mut changed = crd.clone();
    changed["spec"]["names"]["shortNames"] = json!(["wd"]);
    assert_eq!(
        send(
            &e,
            "PUT",
            &format!("{CRDS}/widgets.example.com"),
            "application/json",
            &changed
        )
        .0,
        200
    );
    assert_eq!(get(&e, WIDGETS).0, 200);

    let never = Emulator::start(Options {
        crd_established_delay: None,
        ..Options::default()
    })
    .expect("start");
    post(&never, CRDS, widget_crd());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(&never, "/apis/example.com/v1").0, 404);
    // What the cluster itself installs (a seed) is served at once.
    let mut gadgets = widget_crd();
    gadgets["metadata"]["name"] = json!("gadgets.example.com");
    gadgets["spec"]["names"] = json!({"kind": "Gadget", "plural": "gadgets"});
    never.seed(gadgets).expect("seed");
    assert_eq!(get(&never, "/apis/example.com/v1/gadgets").0, 200);
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

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn delete(e: &Emulator, path: &str) -> (u16, Value) {
    let (s, _, b) = http(e, "DELETE", path, "application/json", "").expect("answer");
    (s, b)
}

fn apply(e: &Emulator, path: &str, body: &Value) -> (u16, Value) {
    send(e, "PATCH", path, "application/apply-patch+yaml", body)
}

#[test]
fn a_deleted_namespace_terminates_then_takes_its_objects_with_it() {
    let e = Emulator::start(Options::default()).expect("start");
    assert_eq!(post(&e, "/api/v1/namespaces", namespace("team")).0, 201);
    assert_eq!(
        post(&e, "/api/v1/namespaces/team/configmaps", cm("kept")).0,
        201
    );

    // DELETE answers 200 with the Namespace, now terminating.
    let (s, ns) = delete(&e, "/api/v1/namespaces/team");
    assert_eq!((s, ns["kind"].as_str()), (200, Some("Namespace")));
    assert_eq!(ns["status"]["phase"], "Terminating");
    let since = ns["metadata"]["deletionTimestamp"].clone();
    assert!(since.is_string(), "{ns}");
    let (s, got) = get(&e, "/api/v1/namespaces/team");
    assert_eq!(
        (s, got["status"]["phase"].as_str()),
        (200, Some("Terminating"))
    );

    // Nothing new goes into it; what is there can still be written.
    let (s, b) = post(&e, "/api/v1/namespaces/team/configmaps", cm("late"));
    assert_eq!((s, b["reason"].as_str()), (403, Some("Forbidden")));
    assert_eq!(
        b["message"],
        "configmaps \"late\" is forbidden: unable to create new content in namespace team because it is being terminated"
    );
    assert_eq!(b["details"]["causes"][0]["reason"], "NamespaceTerminating");
    let (s, b) = apply(
        &e,
        "/apis/apps/v1/namespaces/team/deployments/web?fieldManager=t",
        &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}),
    );
    assert_eq!(s, 403, "{b}");
    assert!(b["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("deployments.apps \"web\" is forbidden")));
    let (s, _) = send(
        &e,
        "PATCH",
        "/api/v1/namespaces/team/configmaps/kept",
        "application/merge-patch+json",
        &json!({"data": {"k": "w"}}),
    );
    assert_eq!(s, 200);

    // Deleting it again answers the same; it keeps its first deletionTimestamp.
    let (s, again) = delete(&e, "/api/v1/namespaces/team");
    assert_eq!(
        (s, again["status"]["phase"].as_str()),
        (200, Some("Terminating"))
    );
    assert_eq!(again["metadata"]["deletionTimestamp"], since);
    assert_eq!(get(&e, "/api/v1/namespaces/team/configmaps/kept").0, 200);

    // The namespace controller then deletes its objects, and the namespace.
    eventually("the namespace is gone", || {
        (get(&e, "/api/v1/namespaces/team").0 == 404).then_some(())
    });
    assert_eq!(get(&e, "/api/v1/namespaces/team/configmaps/kept").0, 404);
    assert!(e.object("", "ConfigMap", "team", "kept").is_none());
    // A namespace of the same name can then be made again, empty.
    assert_eq!(post(&e, "/api/v1/namespaces", namespace("team")).0, 201);
    let (_, list) = get(&e, "/api/v1/namespaces/team/configmaps");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0));

    // An empty namespace terminates too, briefly.
    assert_eq!(post(&e, "/api/v1/namespaces", namespace("empty")).0, 201);
    let (s, ns) = delete(&e, "/api/v1/namespaces/empty");
    assert_eq!(
        (s, ns["status"]["phase"].as_str()),
        (200, Some("Terminating"))
    );
    eventually("the empty namespace is gone", || {
        (get(&e, "/api/v1/namespaces/empty").0 == 404).then_some(())
    });
    // dryRun=All shows the terminating namespace and changes nothing.
    let (s, ns) = delete(&e, "/api/v1/namespaces/team?dryRun=All");
    assert_eq!(
        (s, ns["status"]["phase"].as_str()),
        (200, Some("Terminating"))
    );
    let (_, live) = get(&e, "/api/v1/namespaces/team");
    assert_eq!(live["status"]["phase"], "Active");
    assert!(live["metadata"].get("deletionTimestamp").is_none());
}

#[test]
fn namespaces_terminate_at_once_or_never_as_the_options_say() {
    let now = Emulator::start(Options::immediate()).expect("start");
    assert_eq!(post(&now, "/api/v1/namespaces", namespace("a")).0, 201);
    assert_eq!(
        post(&now, "/api/v1/namespaces/a/configmaps", cm("c")).0,
        201
    );
    let (s, ns) = delete(&now, "/api/v1/namespaces/a");
    assert_eq!(
        (s, ns["status"]["phase"].as_str()),
        (200, Some("Terminating"))
    );
    assert_eq!(get(&now, "/api/v1/namespaces/a").0, 404);
    assert_eq!(get(&now, "/api/v1/namespaces/a/configmaps/c").0, 404);

    let stuck = Emulator::start(Options {
        namespace_finalize_delay: None,
        ..Options::default()
    })
    .expect("start");
    assert_eq!(post(&stuck, "/api/v1/namespaces", namespace("a")).0, 201);
    assert_eq!(delete(&stuck, "/api/v1/namespaces/a").0, 200);
    std::thread::sleep(Duration::from_millis(300));
    let (s, ns) = get(&stuck, "/api/v1/namespaces/a");
    assert_eq!(
        (s, ns["status"]["phase"].as_str()),
        (200, Some("Terminating"))
    );
    // A client's write of a terminating namespace does not revive it.
    let (s, ns) = send(
        &stuck,
        "PATCH",
        "/api/v1/namespaces/a",
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"x": "y"}}}),
    );
    assert_eq!(
        (s, ns["status"]["phase"].as_str()),
        (200, Some("Terminating"))
    );
    assert!(ns["metadata"]["deletionTimestamp"].is_string());
}

/// Sends a request and reads until the answer ends or `timeout` passes without a byte.
fn raw(e: &Emulator, path: &str, timeout: Duration) -> (TcpStream, std::io::Result<Vec<u8>>) {
    let addr = e.url().trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(timeout)).expect("timeout");
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    let read = s.read_to_end(&mut raw).map(|_| raw);
    (s, read)
}

fn timed_out(r: &std::io::Result<Vec<u8>>) -> bool {
    matches!(r, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

#[test]
fn a_hang_fault_reads_the_request_and_never_answers() {
    let e = Emulator::start(Options::default()).expect("start");
    e.add_fault(Fault::new(FaultKind::Hang, FaultWhen::Next(1)).on_path("/configmaps"));
    let started = Instant::now();
    let (hung, answer) = raw(&e, "/api/v1/configmaps", Duration::from_millis(300));
    assert!(timed_out(&answer), "{answer:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The cluster still answers other requests, and the next one to that path.
    assert_eq!(get(&e, "/api/v1/configmaps").0, 200);
    let log = e.requests();
    assert_eq!(
        (log[0].path.as_str(), log[0].status),
        ("/api/v1/configmaps", 0),
        "logged without an answer"
    );
    // Dropping the emulator does not wait for the hung connection, which it closes.
    let started = Instant::now();
    drop(e);
    assert!(started.elapsed() < Duration::from_secs(2));
    let mut hung = hung;
    hung.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut rest = Vec::new();
    assert!(matches!(hung.read_to_end(&mut rest), Ok(0) | Err(_)));
    assert!(rest.is_empty());
}

#[test]
fn a_silent_cluster_accepts_connections_and_answers_nothing() {
    let e = Emulator::start_silent().expect("start");
    let mut open = Vec::new();
    for path in ["/version", "/api/v1/namespaces"] {
        let (conn, answer) = raw(&e, path, Duration::from_millis(200));
        assert!(timed_out(&answer), "{path}: {answer:?}");
        open.push(conn);
    }
    assert_eq!(e.requests().len(), 2);
    assert!(e.requests().iter().all(|r| r.status == 0));
    let started = Instant::now();
    drop(e);
    assert!(started.elapsed() < Duration::from_secs(2));
}

fn service(port: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"ports": [{"name": "http", "port": port}]}})
}

fn deployment(name: &str, replicas: Value, container_port: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "web", "image": "nginx:1",
                                                          "ports": [{"containerPort": container_port}]}]}}}})
}

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

#[test]
fn values_of_the_wrong_type_fail_decoding_as_on_a_real_server() {
    let e = Emulator::start(Options::default()).expect("start");
    let bad_port = "Service in version \"v1\" cannot be handled as a Service: json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port of type int32";
    for query in ["", "?dryRun=All"] {
        let (s, b) = post(&e, &format!("{SERVICES}{query}"), service(json!("eighty")));
        assert_eq!((s, b["reason"].as_str()), (400, Some("BadRequest")), "{b}");
        assert_eq!(b["message"], bad_port);
    }
    assert_eq!(get(&e, &format!("{SERVICES}/web")).0, 404);

    let (s, b) = post(&e, DEPLOYMENTS, deployment("web", json!("two"), json!(80)));
    assert_eq!(s, 400);
    assert_eq!(b["message"], "Deployment in version \"v1\" cannot be handled as a Deployment: json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32");
    let (s, b) = post(&e, DEPLOYMENTS, deployment("web", json!(2), json!("http")));
    assert_eq!(s, 400);
    assert!(b["message"].as_str().is_some_and(|m| m.ends_with(
        "Go struct field ContainerPort.spec.template.spec.containers.ports.containerPort of type int32"
    )));
    let (s, b) = post(
        &e,
        "/api/v1/namespaces/default/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"n": 1}}),
    );
    assert_eq!(s, 400);
    assert!(b["message"].as_str().is_some_and(|m| m
        .ends_with("cannot unmarshal number into Go struct field ConfigMap.data of type string")));

    // An update decodes the same way.
    let (s, live) = post(&e, SERVICES, service(json!(80)));
    assert_eq!(s, 201);
    let mut changed = live.clone();
    changed["spec"]["ports"][0]["port"] = json!("eighty");
    let (s, b) = send(
        &e,
        "PUT",
        &format!("{SERVICES}/web"),
        "application/json",
        &changed,
    );
    assert_eq!((s, b["message"].as_str()), (400, Some(bad_port)));

    // A patch whose result does not decode is an invalid patch.
    let (s, b) = send(
        &e,
        "PATCH",
        &format!("{SERVICES}/web"),
        "application/merge-patch+json",
        &json!({"spec": {"publishNotReadyAddresses": "yes"}}),
    );
    assert_eq!((s, b["reason"].as_str()), (422, Some("Invalid")), "{b}");
    assert_eq!(b["details"]["causes"][0]["field"], "patch");
    assert!(b["message"].as_str().is_some_and(|m| m.ends_with(
        "json: cannot unmarshal string into Go struct field ServiceSpec.spec.publishNotReadyAddresses of type bool"
    )));

    // Server-side apply fails building its typed patch object: 500 without a reason.
    for query in ["", "&dryRun=All"] {
        let (s, b) = apply(
            &e,
            &format!("{SERVICES}/web?fieldManager=t{query}"),
            &service(json!("eighty")),
        );
        assert_eq!(s, 500, "{b}");
        assert!(b.get("reason").is_none(), "{b}");
        assert_eq!(
            b["message"],
            "failed to create typed patch object (default/web; /v1, Kind=Service): .spec.ports[0].port: expected numeric (int or float), got string"
        );
    }
    let (s, b) = apply(
        &e,
        &format!("{DEPLOYMENTS}/web?fieldManager=t"),
        &deployment("web", json!(1), json!(true)),
    );
    assert_eq!(s, 500);
    assert!(b["message"].as_str().is_some_and(|m| m.contains(
        "(default/web; apps/v1, Kind=Deployment): .spec.template.spec.containers[name=\"web\"].ports[0].containerPort: expected numeric"
    )), "{b}");
    let (_, live) = get(&e, &format!("{SERVICES}/web"));
    assert_eq!(live["spec"]["ports"][0]["port"], 80);
}

#[test]
fn invalid_values_are_422_with_a_cause_for_each() {
    let e = Emulator::start(Options::default()).expect("start");
    let (s, b) = post(
        &e,
        SERVICES,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "1web"}, "spec": {"ports": [{"port": 80}]}}),
    );
    assert_eq!(
        (s, b["reason"].as_str(), b["code"].as_i64()),
        (422, Some("Invalid"), Some(422))
    );
    assert_eq!(b["status"], "Failure");
    assert_eq!(
        b["message"],
        "Service \"1web\" is invalid: metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
    );
    assert_eq!(
        b["details"],
        json!({"name": "1web", "group": "", "kind": "Service", "causes": [{
            "reason": "FieldValueInvalid", "field": "metadata.name",
            "message": "Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
        }]})
    );

    // Names: 63 characters at most for a Namespace or Service, 253 for most kinds.
    let long = "a".repeat(64);
    let (s, b) = post(&e, "/api/v1/namespaces", namespace(&long));
    assert_eq!(s, 422);
    assert_eq!(
        b["details"]["causes"][0]["message"],
        format!("Invalid value: \"{long}\": must be no more than 63 characters")
    );
    assert_eq!(
        post(&e, "/api/v1/namespaces/default/configmaps", cm(&long)).0,
        201
    );
    let (s, b) = post(
        &e,
        "/api/v1/namespaces/default/configmaps",
        cm(&"a".repeat(254)),
    );
    assert_eq!(s, 422);
    assert!(b["message"]
        .as_str()
        .is_some_and(|m| m.ends_with("must be no more than 253 characters")));
    // RBAC names are path segments.
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "system:aggregate-to-edit"}, "rules": []});
    assert_eq!(
        post(&e, "/apis/rbac.authorization.k8s.io/v1/clusterroles", role).0,
        201
    );

    // Labels.
    let mut labelled = cm("labelled");
    labelled["metadata"]["labels"] = json!({"app": "has space", "bad key!": "v"});
    let (s, b) = post(&e, "/api/v1/namespaces/default/configmaps", labelled);
    assert_eq!(s, 422);
    let causes = b["details"]["causes"].as_array().expect("causes");
    assert_eq!(causes.len(), 2);
    assert!(causes.iter().all(|c| c["field"] == "metadata.labels"));
    assert!(b["message"].as_str().is_some_and(|m| m.starts_with("ConfigMap \"labelled\" is invalid: [metadata.labels: Invalid value: \"has space\": a valid label must be an empty string")), "{b}");

    // Ranges and required fields, on every kind of write, dry run or not.
    let (s, b) = post(&e, DEPLOYMENTS, deployment("web", json!(-1), json!(80)));
    assert_eq!(s, 422);
    assert_eq!(
        b["message"],
        "Deployment.apps \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    );
    let mut no_selector = deployment("web", json!(1), json!(70000));
    no_selector["spec"]
        .as_object_mut()
        .map(|s| s.remove("selector"));
    for query in ["", "&dryRun=All"] {
        let (s, b) = apply(
            &e,
            &format!("{DEPLOYMENTS}/web?fieldManager=t{query}"),
            &no_selector,
        );
        assert_eq!(s, 422, "{b}");
        let causes: Vec<(&str, &str)> = b["details"]["causes"]
            .as_array()
            .expect("causes")
            .iter()
            .map(|c| {
                (
                    c["field"].as_str().unwrap_or(""),
                    c["reason"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            causes,
            vec![
                (
                    "spec.template.spec.containers[0].ports[0].containerPort",
                    "FieldValueInvalid"
                ),
                ("spec.selector", "FieldValueRequired"),
            ]
        );
        assert!(b["message"].as_str().is_some_and(|m| m.contains("[spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive, spec.selector: Required value]")), "{b}");
    }
    assert_eq!(get(&e, &format!("{DEPLOYMENTS}/web")).0, 404);
    let (s, b) = post(&e, SERVICES, service(json!(0)));
    assert_eq!(s, 422);
    assert_eq!(b["details"]["causes"][0]["field"], "spec.ports[0].port");
}

#[test]
fn a_dry_run_server_side_apply_returns_the_merged_object_and_stores_nothing() {
    let e = Emulator::start(Options::default()).expect("start");
    let path = "/api/v1/namespaces/default/configmaps/c";
    let (s, live) = apply(&e, &format!("{path}?fieldManager=a"), &cm("c"));
    assert_eq!(s, 201);
    let rv = live["metadata"]["resourceVersion"].clone();
    let mut more = cm("c");
    more["data"] = json!({"other": "x"});
    let (s, merged) = apply(&e, &format!("{path}?fieldManager=b&dryRun=All"), &more);
    assert_eq!(s, 200);
    assert_eq!(merged["data"], json!({"k": "v", "other": "x"}));
    let mut managers: Vec<&str> = merged["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    managers.sort();
    assert_eq!(managers, vec!["a", "b"]);
    assert_eq!(merged["metadata"]["uid"], live["metadata"]["uid"]);
    let (_, after) = get(&e, path);
    assert_eq!(after["data"], json!({"k": "v"}));
    assert_eq!(after["metadata"]["resourceVersion"], rv);
    assert_eq!(
        after["metadata"]["managedFields"].as_array().map(Vec::len),
        Some(1)
    );
}

fn lease(name: &str, holder: &str, seconds: i64) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": seconds,
                 "acquireTime": "2026-01-01T00:00:00.000000Z", "renewTime": "2026-01-01T00:00:00.000000Z"}
    })
}

#[test]
fn leases_are_served_validated_and_updated_only_at_the_version_read() {
    let e = Emulator::start(Options::default()).expect("start");
    let path = "/apis/coordination.k8s.io/v1/namespaces/default/leases";
    let (code, discovery) = get(&e, "/apis/coordination.k8s.io/v1");
    assert_eq!(code, 200);
    assert!(discovery["resources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "leases" && r["kind"] == "Lease" && r["namespaced"] == true));

    let (code, bad) = post(&e, path, lease("l0", "a", 0));
    assert_eq!(code, 422, "{bad}");
    assert_eq!(
        bad["message"],
        "Lease.coordination.k8s.io \"l0\" is invalid: spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"
    );

    let (code, created) = post(&e, path, lease("l1", "a", 15));
    assert_eq!(code, 201, "{created}");
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    // Two writers read the same version; the first update wins, the second is refused.
    let mut first = created.clone();
    first["spec"]["holderIdentity"] = json!("b");
    let (code, updated) = send(&e, "PUT", &format!("{path}/l1"), "application/json", &first);
    assert_eq!(code, 200, "{updated}");
    assert_ne!(updated["metadata"]["resourceVersion"], json!(rv));
    let mut second = created.clone();
    second["spec"]["holderIdentity"] = json!("c");
    let (code, refused) = send(
        &e,
        "PUT",
        &format!("{path}/l1"),
        "application/json",
        &second,
    );
    assert_eq!(code, 409, "{refused}");
    assert_eq!(refused["reason"], "Conflict");
    assert_eq!(
        refused["message"],
        "Operation cannot be fulfilled on leases.coordination.k8s.io \"l1\": the object has been modified; please apply your changes to the latest version and try again"
    );
    let (_, now) = get(&e, &format!("{path}/l1"));
    assert_eq!(now["spec"]["holderIdentity"], "b");
}

#[test]
fn secrets_hold_at_most_one_mebibyte_of_data() {
    let e = Emulator::start(Options::default()).expect("start");
    let path = "/api/v1/namespaces/default/secrets";
    let secret = |name: &str, bytes: usize| {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
               "data": {"blob": k8s_emulator::base64(&vec![7u8; bytes])}})
    };
    let (code, ok) = post(&e, path, secret("fits", 1024 * 1024));
    assert_eq!(code, 201, "{}", ok["message"]);
    let (code, big) = post(&e, path, secret("big", 1024 * 1024 + 1));
    assert_eq!(code, 422);
    assert_eq!(
        big["message"],
        "Secret \"big\" is invalid: data: Too long: must have at most 1048576 bytes"
    );
}
