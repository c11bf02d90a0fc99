//! A Kubernetes API server emulator, for tests only.
//!
//! No kube-apiserver can run on the machines dcm is tested on, so this crate serves the
//! real protocol (JSON over HTTP on 127.0.0.1) well enough that kubectl, a client we did
//! not write, works against it: discovery, OpenAPI v3, CRUD, label and field selectors,
//! optimistic concurrency, JSON merge / strategic merge / JSON patch, server-side apply
//! with managed fields and conflicts, `dryRun=All` (a dry-run apply answers the merged
//! object, managed fields included, and stores nothing), server-set fields, ClusterIP
//! allocation, CRDs that make their kind served, the `Table` columns kubectl prints
//! (CRDs' `additionalPrinterColumns` included), and `Status` errors. Answers are JSON;
//! request bodies are JSON or YAML, or protobuf for v1 Namespace, ConfigMap, Secret,
//! Service and ServiceAccount (what `kubectl create namespace|configmap|...` sends:
//! client-go's typed clients always send protobuf; other kinds' protobuf is 415).
//!
//! It fails as a real cluster does:
//!
//! - Deleting a Namespace answers 200 with it `Terminating` (`deletionTimestamp` set,
//!   `status.phase: Terminating`; deleting it again answers the same); new objects in it
//!   are 403 Forbidden (`configmaps "x" is forbidden: unable to create new content in
//!   namespace ns because it is being terminated`) while existing ones can still be
//!   written; after [`Options::namespace_finalize_delay`] its objects are deleted, then
//!   the Namespace.
//! - A value of the wrong type in a core kind (a table of their typed fields:
//!   `spec.ports[0].port: "eighty"`, `spec.replicas: "two"`, a string `containerPort`,
//!   a number in a ConfigMap's `data`) fails as decoding into the Go types does: 400
//!   BadRequest on create and update (`Service in version "v1" cannot be handled as a
//!   Service: json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port
//!   of type int32`), 422 with the `patch` field for a patch, and 500 without a reason
//!   for a server-side apply (`failed to create typed patch object (...): .spec.ports[0].port:
//!   expected numeric (int or float), got string`), `dryRun=All` or not.
//! - Invalid values are 422 Invalid with the server's wording and one `details.causes[]`
//!   entry (`field`, `message`, `reason: FieldValueInvalid|FieldValueRequired`) each:
//!   names (DNS-1123 subdomain of at most 253 characters; DNS-1123 label of 63 for
//!   Namespaces, DNS-1035 label for Services; path segments for RBAC kinds), label keys
//!   and values, annotation keys, port ranges, negative counts, a Deployment's selector
//!   and containers.
//! - Tests can inject faults ([`Fault`]: latency, 429, 500, 503, a dropped connection,
//!   or [`FaultKind::Hang`], a request read and never answered) or start a cluster that
//!   answers nothing at all ([`Options::silent`], [`Emulator::start_silent`]), and read a
//!   log of every request. Dropping an [`Emulator`] closes hung connections; it never
//!   waits for them.
//!
//! The cluster comes with Istio 1.31's CRDs (networking.istio.io, security.istio.io),
//! the Sail Operator's (sailoperator.io/v1 `Istio`, `IstioRevision`, `IstioCNI`,
//! `IstioRevisionTag`, all cluster-scoped) and the legacy `IstioOperator`, and with
//! controllers that act a little after a write, as a real control plane's do (each
//! delay is an [`Options`] field; `None` turns the controller off):
//!
//! - LoadBalancer Services get `status.loadBalancer.ingress` (`ip` from
//!   [`Options::lb_pool`], or a `hostname`); the pool can run out, and a Service waits.
//! - `kubernetes.io/service-account-token` Secrets get `token` (a JWT-shaped string),
//!   `ca.crt` ([`CLUSTER_CA_PEM`]) and `namespace` once their ServiceAccount exists,
//!   written by field manager `kube-controller-manager`.
//! - Sail `Istio` objects get an `IstioRevision` and a status (`Reconciled`, `Ready`,
//!   `DependenciesHealthy`, `state: Healthy`, `revisions`) once `spec.namespace`
//!   exists, `ReconcileError` until then; `IstioCNI` likewise.
//! - A CRD a client creates is `Established`, and its kind served, only after a delay.
//! - Deployments and StatefulSets report their replicas updated, ready and available
//!   (`observedGeneration`, `Available`/`Progressing` conditions, StatefulSet revisions),
//!   and Jobs `Complete`, or `Failed` when their pod template is annotated
//!   `emulator.dcm.io/fail: "true"`. No pods are made.
//!
//! Status is the server's: clients' writes of the main resource neither set nor change
//! it (seeds may bring one). Watches are not served, so clients poll.

mod fields;
mod protobuf;
mod store;
mod table;
mod types;
mod util;
mod validation;

pub mod harness;

pub use store::{Request, Response, CLUSTER_CA_PEM};
pub use util::{base64, base64_decode};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How an emulated cluster is set up. Build it with `..Options::default()` so that new
/// fields keep their defaults.
///
/// The delays are how long the cluster's controllers take to act after a write; `None`
/// is a controller that never acts (a cluster without a load balancer, an Istio that
/// never becomes ready, a CRD that is never established).
#[derive(Debug, Clone)]
pub struct Options {
    /// Where Service ClusterIPs come from.
    pub service_cidr: String,
    /// Where LoadBalancer ingress addresses come from: a CIDR (without its network and
    /// broadcast addresses) or a range `first-last`. Default `198.51.100.0/24`
    /// (TEST-NET-2); `harness::Clusters` gives each cluster its own part of it.
    pub lb_pool: String,
    /// How long until a LoadBalancer Service gets `status.loadBalancer.ingress`.
    /// Default 200 ms.
    pub lb_delay: Option<Duration>,
    /// When set, LoadBalancer Services get a `hostname` (`<service>-<namespace>.<domain>`)
    /// instead of an `ip`, as on clouds whose load balancers have DNS names.
    pub lb_hostname_domain: Option<String>,
    /// How long until a `kubernetes.io/service-account-token` Secret whose ServiceAccount
    /// exists gets its `token`, `ca.crt` and `namespace`. Default 100 ms.
    pub token_delay: Option<Duration>,
    /// How long until the emulated Sail Operator reports an `Istio` or `IstioCNI`
    /// (sailoperator.io/v1) `Healthy` with `Reconciled` and `Ready` conditions. Default
    /// 200 ms.
    pub istio_ready_delay: Option<Duration>,
    /// How long until a CustomResourceDefinition a client creates is `Established` and
    /// its kind served (404 until then). Default 100 ms. CRDs seeded with
    /// `Emulator::seed` are established at once.
    pub crd_established_delay: Option<Duration>,
    /// How long a deleted Namespace stays `Terminating` (with `deletionTimestamp` set)
    /// before the namespace controller deletes the objects in it and then the
    /// Namespace itself. Default 200 ms; `None` is a namespace that never finishes
    /// terminating (as when a finalizer is stuck).
    pub namespace_finalize_delay: Option<Duration>,
    /// How long until the workload controllers report on a Deployment, StatefulSet
    /// (apps/v1) or Job (batch/v1) written: all replicas updated, ready and available,
    /// or the Job `Complete` (`Failed` when its pod template has the annotation
    /// `emulator.dcm.io/fail: "true"`). Default 200 ms; `None` is a workload that never
    /// becomes ready (an image that cannot be pulled).
    pub workload_ready_delay: Option<Duration>,
    /// A cluster that accepts connections and reads requests but never answers any
    /// (as a hung API server or a black-holed load balancer does), so that clients'
    /// timeouts can be tested. Default false. See also [`FaultKind::Hang`].
    pub silent: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            service_cidr: "10.96.0.0/16".into(),
            lb_pool: "198.51.100.0/24".into(),
            lb_delay: Some(Duration::from_millis(200)),
            lb_hostname_domain: None,
            token_delay: Some(Duration::from_millis(100)),
            istio_ready_delay: Some(Duration::from_millis(200)),
            crd_established_delay: Some(Duration::from_millis(100)),
            namespace_finalize_delay: Some(Duration::from_millis(200)),
            workload_ready_delay: Some(Duration::from_millis(200)),
            silent: false,
        }
    }
}

impl Options {
    /// A cluster whose controllers act at once (no delays).
    pub fn immediate() -> Options {
        let now = Some(Duration::ZERO);
        Options {
            lb_delay: now,
            token_delay: now,
            istio_ready_delay: now,
            crd_established_delay: now,
            namespace_finalize_delay: now,
            workload_ready_delay: now,
            ..Options::default()
        }
    }
}

/// What a fault does to a request it hits.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Waits this long before answering normally.
    Latency(Duration),
    /// Answers 429 TooManyRequests with `Retry-After: <secs>`.
    TooManyRequests { retry_after_secs: u64 },
    /// Answers 500 InternalError.
    InternalError,
    /// Answers 503 ServiceUnavailable.
    Unavailable,
    /// Closes the connection without an answer.
    Drop,
    /// Reads the request and never answers: the connection stays open until the
    /// client gives up or the emulator is dropped. The log records it with status 0.
    Hang,
}

/// Which requests a fault hits.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultWhen {
    /// An evenly spread share (0.0..=1.0) of the matching requests.
    Share(f64),
    /// Every matching request after the first `n`.
    AfterRequests(u64),
    /// The next `n` matching requests only.
    Next(u64),
}

/// A fault for a chosen share of requests; `method` and `path_contains` narrow it down.
#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: FaultKind,
    pub when: FaultWhen,
    pub method: Option<String>,
    pub path_contains: Option<String>,
    seen: u64,
}

impl Fault {
    pub fn new(kind: FaultKind, when: FaultWhen) -> Fault {
        Fault {
            kind,
            when,
            method: None,
            path_contains: None,
            seen: 0,
        }
    }

    pub fn on_method(mut self, method: &str) -> Fault {
        self.method = Some(method.to_string());
        self
    }

    pub fn on_path(mut self, part: &str) -> Fault {
        self.path_contains = Some(part.to_string());
        self
    }

    /// Whether this (matching) request is hit; counts it.
    fn hits(&mut self) -> bool {
        self.seen += 1;
        let n = self.seen;
        match self.when {
            FaultWhen::Share(s) => {
                let s = s.clamp(0.0, 1.0);
                (n as f64 * s).floor() > ((n - 1) as f64 * s).floor()
            }
            FaultWhen::AfterRequests(after) => n > after,
            FaultWhen::Next(count) => n <= count,
        }
    }
}

/// One request as the log keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    pub content_type: String,
    /// What the client asked the answer to be (`as=PartialObjectMetadataList`: names and
    /// labels only).
    pub accept: String,
    /// When the request came in (its headers read).
    pub received: std::time::Instant,
    /// When its answer was ready (injected latency included).
    pub answered: std::time::Instant,
}

struct Shared {
    silent: bool,
    store: Mutex<store::Store>,
    faults: Mutex<Vec<Fault>>,
    log: Mutex<Vec<RequestRecord>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One emulated cluster, serving on 127.0.0.1 until dropped.
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Emulator {
    /// Starts a cluster on a free port, on its own thread.
    pub fn start(options: Options) -> std::io::Result<Emulator> {
        let shared = Arc::new(Shared {
            silent: options.silent,
            store: Mutex::new(store::Store::new(&options)),
            faults: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("emulator-{}", addr.port()))
            .spawn(move || runtime.block_on(serve(listener, for_thread, stopped)))?;
        Ok(Emulator {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// A cluster that never answers (see [`Options::silent`]): every request hangs.
    pub fn start_silent() -> std::io::Result<Emulator> {
        Emulator::start(Options {
            silent: true,
            ..Options::default()
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates an object directly, as the cluster's own components would.
    pub fn seed(&self, object: Value) -> Result<Value, String> {
        lock(&self.shared.store).seed(object)
    }

    /// An object as stored (group "" for core), for assertions; the cluster's
    /// controllers catch up first, as for a request.
    pub fn object(&self, group: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let mut store = lock(&self.shared.store);
        store.tick();
        store.get(group, kind, namespace, name)
    }

    /// Handles a request without HTTP (for unit tests of the protocol logic).
    pub fn handle(&self, req: &Request) -> Response {
        lock(&self.shared.store).handle(req)
    }

    pub fn add_fault(&self, fault: Fault) {
        lock(&self.shared.faults).push(fault);
    }

    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Every request served so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.log).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.log).clear();
    }

    /// Requests counted by method (`GET`, `PATCH`, ...).
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for r in lock(&self.shared.log).iter() {
            *out.entry(r.method.clone()).or_insert(0) += 1;
        }
        out
    }

    /// The current resourceVersion; it goes up on every write that changed something.
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.store).resource_version()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    // The cluster's controllers act as time passes, whether or not anyone asks.
    let mut ticks = tokio::time::interval(Duration::from_millis(10));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = ticks.tick() => lock(&shared.store).tick(),
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle_http(req, shared.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by a fault")
    }
}

impl std::error::Error for Dropped {}

async fn handle_http(
    req: hyper::Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<hyper::Response<Full<Bytes>>, Dropped> {
    let received = std::time::Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or_default().to_string();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (content_type, accept, user_agent) = (
        header("content-type"),
        header("accept"),
        header("user-agent"),
    );
    let fault = {
        let mut faults = lock(&shared.faults);
        faults
            .iter_mut()
            .filter(|f| f.method.as_ref().is_none_or(|m| *m == method))
            .filter(|f| f.path_contains.as_ref().is_none_or(|p| path.contains(p)))
            .find_map(|f| f.hits().then(|| f.kind.clone()))
    };
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => Vec::new(),
    };
    let record = |status: u16| RequestRecord {
        method: method.clone(),
        path: path.clone(),
        query: raw_query.clone(),
        status,
        content_type: content_type.clone(),
        accept: accept.clone(),
        received,
        answered: std::time::Instant::now(),
    };
    if shared.silent || fault == Some(FaultKind::Hang) {
        lock(&shared.log).push(record(0));
        // No answer, ever: the task ends when the client goes away or the runtime
        // (the emulator) is dropped, which cancels it.
        std::future::pending::<()>().await;
    }
    let injected = match fault {
        Some(FaultKind::Hang) => None,
        Some(FaultKind::Latency(d)) => {
            tokio::time::sleep(d).await;
            None
        }
        Some(FaultKind::Drop) => {
            lock(&shared.log).push(record(0));
            return Err(Dropped);
        }
        Some(FaultKind::TooManyRequests { retry_after_secs }) => {
            let mut r = store::status_error(
                429,
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later",
                Some(serde_json::json!({"retryAfterSeconds": retry_after_secs})),
            );
            r.headers
                .push(("Retry-After".into(), retry_after_secs.to_string()));
            Some(r)
        }
        Some(FaultKind::InternalError) => Some(store::status_error(
            500,
            "InternalError",
            "Internal error occurred: injected by the emulator",
            None,
        )),
        Some(FaultKind::Unavailable) => Some(store::status_error(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
            None,
        )),
        None => None,
    };
    let response = match injected {
        Some(r) => r,
        None => {
            let query = parse_query(&raw_query);
            let request = Request {
                method: method.clone(),
                path: path.clone(),
                query,
                content_type: content_type.clone(),
                accept: accept.clone(),
                user_agent,
                body,
            };
            lock(&shared.store).handle(&request)
        }
    };
    lock(&shared.log).push(record(response.status));
    let bytes = serde_json::to_vec(&response.body).unwrap_or_default();
    let mut builder = hyper::Response::builder()
        .status(response.status)
        .header("content-type", "application/json")
        .header("audit-id", util::uid());
    for (k, v) in &response.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    builder
        .body(Full::new(Bytes::from(bytes)))
        .map_err(|_| Dropped)
}

fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
