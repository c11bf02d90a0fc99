//! The Kubernetes state backend: the state in Secrets of a namespace of a management
//! cluster, locked by a `coordination.k8s.io/v1` Lease.
//!
//! - The index Secret `<name>` holds a small manifest (`manifest.json`: lineage, serial,
//!   the sha256 and size of the gzip-compressed state, the chunks it is cut into, the
//!   current journal's id) and, when the compressed state fits in one Secret, the state
//!   itself (`state.json.gz`). A bigger state is cut into chunk Secrets
//!   `<name>-c-<generation>-<i>` of at most [`CHUNK_SIZE`] bytes. A write puts new chunks
//!   under new names first, then switches the index (an update guarded by its
//!   resourceVersion), then deletes what the index no longer names: a reader never sees
//!   half a write, and a second writer is detected, never overwritten.
//! - Each finished object of an apply is made durable as a journal Secret
//!   `<name>-j-<journal>-<seq>` (records that finish while a write is in flight go
//!   together into the next one: group commit). Only the journal the index names is read;
//!   it is folded into the state at the end of the run and when the next run opens it.
//! - The Lease `<name>-lock` names its holder (`holderIdentity`, the lock ID, and who and
//!   what in an annotation); the holder renews it in the background every third of
//!   `leaseDurationSeconds`. An expired Lease is taken over with an update guarded by its
//!   resourceVersion; a live one is never broken. A run that cannot renew for a whole lease
//!   (or finds the Lease taken) stops writing and says so.
//!
//! Every object carries `app.kubernetes.io/managed-by=dcm` and `dcm.io/state=<name>`; a
//! Secret or Lease of the same name without them is not dcm's and is never touched.

use super::location::KubeLocation;
use super::lock::{LockError, LockInfo};
use super::{Access, JournalOp, State};
use crate::target::net::{describe, retry, NetSettings, RetryError};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, watch};

/// The label every state object carries, with the state's name.
pub const STATE_LABEL: &str = "dcm.io/state";
/// What part of the state an object is: `index`, `chunk`, `journal` or `lock`.
pub const PART_LABEL: &str = "dcm.io/state-part";
const GENERATION_LABEL: &str = "dcm.io/state-generation";
const JOURNAL_LABEL: &str = "dcm.io/state-journal";
const SEQUENCE_ANNOTATION: &str = "dcm.io/state-sequence";
/// Who holds the Lease: [`LockInfo`] as JSON.
pub const LOCK_INFO_ANNOTATION: &str = "dcm.io/lock-info";
const MANIFEST_KEY: &str = "manifest.json";
const INLINE_KEY: &str = "state.json.gz";
const CHUNK_KEY: &str = "chunk";
const RECORDS_KEY: &str = "records.json";
const MANIFEST_FORMAT: u32 = 1;

/// A Secret holds at most 1 MiB (1,048,576 bytes) of data: the compressed state is cut
/// into pieces of this size, leaving room for the manifest.
pub const CHUNK_SIZE: usize = 1_000_000;
/// The most bytes of records one journal Secret holds.
const JOURNAL_BYTES: usize = 512 * 1024;
/// After this many journal Secrets, the next write folds them into the state.
const COMPACT_AFTER: u64 = 100;
/// A decompressed state larger than this is refused (a hostile or broken Secret).
const MAX_STATE_BYTES: u64 = 1 << 30;
/// The lease of the lock when neither `[state] lock_lease` nor `DCM_LOCK_LEASE` sets it.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// The shortest lease: renewals come every third of it.
pub const MIN_LEASE: Duration = Duration::from_secs(3);
/// The longest lease.
pub const MAX_LEASE: Duration = Duration::from_secs(3600);

/// Why the Kubernetes backend failed. Clone: the writer hands it to every waiter.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KubeStateError {
    #[error("the state at {location}: {message}")]
    Failed { location: String, message: String },
    #[error("the state at {location} was changed by another writer since this run read it ({what}); nothing was overwritten\n  = help: another dcm run, or someone else, wrote it without holding its lock; check what changed with `dcm state pull`, then run the command again")]
    Conflict { location: String, what: String },
    #[error("this run no longer holds the lock of the state at {location} ({why}); it stopped writing the state, which holds everything recorded until now\n  = help: run the same command again; it goes on from what the state records")]
    LockLost { location: String, why: String },
    #[error("the state at {location} is corrupt ({message}); it was left unchanged\n  = help: restore a good copy with `dcm state push --force FILE`")]
    Corrupt { location: String, message: String },
    #[error("the {what} {name} in namespace {namespace} (context {context}) is not dcm's: it lacks the labels app.kubernetes.io/managed-by=dcm and {STATE_LABEL}={state}; it was left alone\n  = help: choose another state name, or delete that object if it is left over")]
    NotOurs {
        what: &'static str,
        name: String,
        namespace: String,
        context: String,
        state: String,
    },
}

/// What the index Secret's `manifest.json` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    lineage: String,
    serial: u64,
    /// sha256 of the compressed state (all chunks, in order).
    sha256: String,
    size: usize,
    /// Names of the chunk Secrets, in order; empty when the state is inline.
    #[serde(default)]
    chunks: Vec<String>,
    #[serde(default)]
    generation: String,
    /// The journal whose records belong to this state.
    journal: String,
}

/// A tokio runtime of the backend's own, so that it works from synchronous code and from
/// within another runtime alike.
pub struct Runtime {
    rt: Option<tokio::runtime::Runtime>,
}

impl Runtime {
    pub fn new() -> Result<Runtime, String> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("dcm-state")
            .enable_all()
            .build()
            .map(|rt| Runtime { rt: Some(rt) })
            .map_err(|e| format!("cannot start the async runtime: {e}"))
    }

    fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.rt.as_ref().map(|rt| rt.handle())
    }

    /// Runs `fut` on the backend's runtime and waits for it (blocking this thread).
    pub fn block<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.handle()?.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().ok()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            // Safe in any context, unlike dropping the runtime.
            rt.shutdown_background();
        }
    }
}

/// A client for the state's namespace.
#[derive(Clone)]
pub struct Conn {
    client: kube::Client,
    loc: KubeLocation,
    net: NetSettings,
}

fn status(e: &RetryError) -> Option<u16> {
    e.status_code()
}

impl Conn {
    fn location(&self) -> String {
        self.loc.to_string()
    }

    fn failed(&self, doing: &str, e: &RetryError) -> KubeStateError {
        KubeStateError::Failed {
            location: self.location(),
            message: format!("{doing}: {}", describe(e)),
        }
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.loc.namespace)
    }

    fn leases(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), &self.loc.namespace)
    }

    fn index_name(&self) -> String {
        self.loc.name.clone()
    }

    fn lease_name(&self) -> String {
        format!("{}-lock", self.loc.name)
    }

    fn labels(&self, part: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                crate::ownership::MANAGED_BY_LABEL.to_string(),
                crate::ownership::MANAGED_BY.to_string(),
            ),
            (STATE_LABEL.to_string(), self.loc.name.clone()),
            (PART_LABEL.to_string(), part.to_string()),
        ])
    }

    fn ours(&self, meta: &ObjectMeta) -> bool {
        let labels = meta.labels.as_ref();
        let get = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
        get(crate::ownership::MANAGED_BY_LABEL) == Some(crate::ownership::MANAGED_BY)
            && get(STATE_LABEL) == Some(self.loc.name.as_str())
    }

    fn not_ours(&self, what: &'static str, name: &str) -> KubeStateError {
        KubeStateError::NotOurs {
            what,
            name: name.to_string(),
            namespace: self.loc.namespace.clone(),
            context: self.loc.context.clone(),
            state: self.loc.name.clone(),
        }
    }

    async fn get_secret(&self, name: &str) -> Result<Option<Secret>, RetryError> {
        let api = self.secrets();
        retry(&self.net, || {
            let api = api.clone();
            let name = name.to_string();
            async move { api.get_opt(&name).await }
        })
        .await
    }

    async fn create_secret(&self, s: &Secret) -> Result<Secret, RetryError> {
        let api = self.secrets();
        retry(&self.net, || {
            let api = api.clone();
            let s = s.clone();
            async move { api.create(&PostParams::default(), &s).await }
        })
        .await
    }

    async fn replace_secret(&self, name: &str, s: &Secret) -> Result<Secret, RetryError> {
        let api = self.secrets();
        retry(&self.net, || {
            let api = api.clone();
            let s = s.clone();
            let name = name.to_string();
            async move { api.replace(&name, &PostParams::default(), &s).await }
        })
        .await
    }

    async fn delete_secret(&self, name: &str) -> Result<(), RetryError> {
        let api = self.secrets();
        let r = retry(&self.net, || {
            let api = api.clone();
            let name = name.to_string();
            async move { api.delete(&name, &DeleteParams::default()).await }
        })
        .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The state's Secrets of one part (all parts with None), with `extra` labels.
    async fn list_secrets(&self, part: &str, extra: &str) -> Result<Vec<Secret>, RetryError> {
        let api = self.secrets();
        let mut selector = format!("{STATE_LABEL}={},{PART_LABEL}={part}", self.loc.name);
        if !extra.is_empty() {
            selector.push(',');
            selector.push_str(extra);
        }
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut lp = ListParams::default().labels(&selector).limit(500);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = retry(&self.net, || {
                let api = api.clone();
                let lp = lp.clone();
                async move { api.list(&lp).await }
            })
            .await?;
            out.extend(page.items);
            match page.metadata.continue_ {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    fn secret(&self, name: String, part: &str, data: BTreeMap<String, Vec<u8>>) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(self.loc.namespace.clone()),
                labels: Some(self.labels(part)),
                ..Default::default()
            },
            data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
            type_: Some("Opaque".into()),
            ..Default::default()
        }
    }

    /// Creates `s`; when it exists already (a retried create that had gone through), it
    /// counts as created only if it holds the same data.
    async fn create_exactly(&self, s: &Secret) -> Result<Secret, KubeStateError> {
        let name = s.metadata.name.clone().unwrap_or_default();
        match self.create_secret(s).await {
            Ok(c) => Ok(c),
            Err(e) if status(&e) == Some(409) => match self.get_secret(&name).await {
                Ok(Some(found)) if found.data == s.data && self.ours(&found.metadata) => Ok(found),
                Ok(_) => Err(KubeStateError::Conflict {
                    location: self.location(),
                    what: format!("the Secret {name} was written by someone else"),
                }),
                Err(e) => Err(self.failed(&format!("cannot read Secret {name}"), &e)),
            },
            Err(e) if status(&e) == Some(404) => Err(KubeStateError::Failed {
                location: self.location(),
                message: format!(
                    "cannot create Secret {name}: {}\n  = help: the namespace `{}` must exist in context `{}`; create it first",
                    describe(&e),
                    self.loc.namespace,
                    self.loc.context
                ),
            }),
            Err(e) => Err(self.failed(&format!("cannot create Secret {name}"), &e)),
        }
    }
}

/// Reads the kubeconfig and makes a client for the state's context.
pub async fn connect(loc: &KubeLocation, access: &Access) -> Result<Conn, KubeStateError> {
    let fail = |message: String| KubeStateError::Failed {
        location: loc.to_string(),
        message,
    };
    let paths = crate::target::kube::kubeconfig_paths(access.kubeconfig.as_deref());
    let (kubeconfig, shown) = crate::target::kube::read_kubeconfig(&paths)
        .map_err(|e| fail(e.to_string()))?
        .ok_or_else(|| {
            fail(format!(
                "no kubeconfig to reach context `{}`: set --kubeconfig or KUBECONFIG, or create ~/.kube/config",
                loc.context
            ))
        })?;
    if !kubeconfig.contexts.iter().any(|c| c.name == loc.context) {
        let names: Vec<&str> = kubeconfig
            .contexts
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        let hint = crate::diag::did_you_mean(&loc.context, names.iter().copied())
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        return Err(fail(format!(
            "kubeconfig context `{}` does not exist in {shown}{hint}",
            loc.context
        )));
    }
    let client = crate::target::kube::make_client(&kubeconfig, &loc.context, &access.net)
        .await
        .map_err(fail)?;
    Ok(Conn {
        client,
        loc: loc.clone(),
        net: access.net,
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes)?;
    enc.finish()
}

fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_STATE_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot decompress it: {e}"))?;
    if out.len() as u64 > MAX_STATE_BYTES {
        return Err(format!(
            "it decompresses to more than {MAX_STATE_BYTES} bytes"
        ));
    }
    Ok(out)
}

fn data_of<'a>(s: &'a Secret, key: &str) -> Option<&'a [u8]> {
    s.data.as_ref()?.get(key).map(|b| b.0.as_slice())
}

/// A state as the cluster holds it.
pub struct Loaded {
    /// With the journal's records.
    pub state: State,
    /// The index Secret read (its resourceVersion guards the next write).
    index: Secret,
    journal: String,
    /// Journal Secrets read.
    journals: u64,
}

impl Loaded {
    /// Whether a journal (a killed run's) was read into the state.
    pub fn journaled(&self) -> bool {
        self.journals > 0
    }
}

/// Reads the state (None when there is none), retrying while a writer switches it.
pub async fn read(conn: &Conn) -> Result<Option<Loaded>, super::StateError> {
    let name = conn.index_name();
    let corrupt = |message: String| KubeStateError::Corrupt {
        location: conn.location(),
        message,
    };
    let read_failed = |what: &str, e: &RetryError| conn.failed(&format!("cannot read {what}"), e);
    'attempt: for attempt in 0..5 {
        let Some(index) = conn
            .get_secret(&name)
            .await
            .map_err(|e| read_failed(&format!("Secret {name}"), &e))?
        else {
            return Ok(None);
        };
        if !conn.ours(&index.metadata) {
            return Err(conn.not_ours("Secret", &name).into());
        }
        let manifest: Manifest = data_of(&index, MANIFEST_KEY)
            .ok_or_else(|| format!("the Secret {name} has no {MANIFEST_KEY}"))
            .and_then(|b| serde_json::from_slice(b).map_err(|e| format!("its {MANIFEST_KEY}: {e}")))
            .map_err(corrupt)?;
        if manifest.format > MANIFEST_FORMAT {
            return Err(corrupt(format!(
                "its layout has format {}, newer than this dcm understands ({MANIFEST_FORMAT}); use a newer dcm",
                manifest.format
            ))
            .into());
        }
        let mut blob = Vec::with_capacity(manifest.size);
        if manifest.chunks.is_empty() {
            blob.extend_from_slice(
                data_of(&index, INLINE_KEY)
                    .ok_or_else(|| corrupt(format!("the Secret {name} has no {INLINE_KEY}")))?,
            );
        } else {
            for c in &manifest.chunks {
                let found = conn
                    .get_secret(c)
                    .await
                    .map_err(|e| read_failed(&format!("Secret {c}"), &e))?;
                match found.as_ref().and_then(|s| data_of(s, CHUNK_KEY)) {
                    Some(b) => blob.extend_from_slice(b),
                    // A writer switched the index and deleted this chunk: read again.
                    None if attempt < 4 => continue 'attempt,
                    None => return Err(corrupt(format!("its chunk Secret {c} is missing")).into()),
                }
            }
        }
        if sha256_hex(&blob) != manifest.sha256 {
            if attempt < 4 && !manifest.chunks.is_empty() {
                continue;
            }
            return Err(corrupt("its sha256 does not match its manifest".into()).into());
        }
        let json = gunzip(&blob).map_err(corrupt)?;
        let text = String::from_utf8(json).map_err(|_| corrupt("not UTF-8 text".into()))?;
        let mut state = super::parse_state(&text).map_err(|p| match p {
            super::Problem::Corrupt(m) => super::StateError::from(corrupt(m)),
            super::Problem::TooNew(found) => super::StateError::TooNew {
                path: conn.location(),
                found,
            },
        })?;
        if state.lineage != manifest.lineage || state.serial != manifest.serial {
            return Err(corrupt("its manifest does not match the state it holds".into()).into());
        }
        let mut records = conn
            .list_secrets("journal", &format!("{JOURNAL_LABEL}={}", manifest.journal))
            .await
            .map_err(|e| read_failed("the state's journal", &e))?;
        let seq = |s: &Secret| -> Option<u64> {
            s.metadata
                .annotations
                .as_ref()?
                .get(SEQUENCE_ANNOTATION)?
                .parse()
                .ok()
        };
        records.sort_by_key(|s| seq(s).unwrap_or(u64::MAX));
        let mut journals = 0;
        for (i, r) in records.iter().enumerate() {
            let ops = (seq(r) == Some(i as u64))
                .then(|| data_of(r, RECORDS_KEY))
                .flatten()
                .and_then(|b| serde_json::from_slice::<Vec<JournalOp>>(b).ok());
            let Some(ops) = ops else {
                crate::errln!(
                    "warning: the journal of the state at {} breaks off at record {i} (a Secret is missing or unreadable); what follows is ignored",
                    conn.location()
                );
                break;
            };
            for op in ops {
                op.apply_to(&mut state);
            }
            journals += 1;
        }
        // The index must not have moved meanwhile (its journal may be gone then).
        let again = conn
            .get_secret(&name)
            .await
            .map_err(|e| read_failed(&format!("Secret {name}"), &e))?;
        if again.and_then(|s| s.metadata.resource_version) != index.metadata.resource_version {
            continue;
        }
        return Ok(Some(Loaded {
            state,
            index,
            journal: manifest.journal,
            journals,
        }));
    }
    Err(KubeStateError::Failed {
        location: conn.location(),
        message: "it kept changing while dcm read it (another writer?); try again".into(),
    }
    .into())
}

// ---------------------------------------------------------------------------------------
// The lock.

fn now_micro() -> Option<MicroTime> {
    k8s_openapi::jiff::Timestamp::try_from(SystemTime::now())
        .ok()
        .map(MicroTime)
}

fn lease_info(l: &Lease) -> LockInfo {
    let holder = l
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .unwrap_or_default();
    l.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LOCK_INFO_ANNOTATION))
        .and_then(|t| serde_json::from_str::<LockInfo>(t).ok())
        .filter(|i| i.id == holder)
        .unwrap_or_else(|| LockInfo {
            id: holder,
            operation: "another run".into(),
            who: "unknown".into(),
            pid: 0,
            host: "unknown".into(),
            created: l
                .spec
                .as_ref()
                .and_then(|s| s.acquire_time.as_ref())
                .map(|t| t.0.to_string())
                .unwrap_or_else(|| "unknown".into()),
        })
}

fn holder(l: &Lease) -> Option<&str> {
    l.spec
        .as_ref()?
        .holder_identity
        .as_deref()
        .filter(|h| !h.is_empty())
}

/// When the Lease expires (None: it names no time, so it cannot be trusted to be live).
fn expiry(l: &Lease) -> Option<SystemTime> {
    let spec = l.spec.as_ref()?;
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?;
    let secs = u64::try_from(spec.lease_duration_seconds?).ok()?;
    Some(SystemTime::from(renewed.0) + Duration::from_secs(secs))
}

/// The lock, held; renewed in the background until released.
pub struct LeaseLock {
    pub id: String,
    lease: Duration,
    /// Why the lock was lost, once it was.
    lost: Arc<Mutex<Option<String>>>,
    /// When the Lease was last renewed (acquired).
    renewed: Arc<Mutex<Instant>>,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl LeaseLock {
    /// Whether this run may still write: it holds a Lease renewed less than a lease ago.
    fn check(&self, location: &str) -> Result<(), KubeStateError> {
        let lost = |why: String| KubeStateError::LockLost {
            location: location.to_string(),
            why,
        };
        if let Some(why) = self.lost.lock().ok().and_then(|l| l.clone()) {
            return Err(lost(why));
        }
        let since = self
            .renewed
            .lock()
            .map(|r| r.elapsed())
            .unwrap_or(Duration::MAX);
        if since >= self.lease {
            return Err(lost(format!(
                "its Lease was not renewed for {} (lock_lease {})",
                humantime::format_duration(Duration::from_secs(since.as_secs())),
                humantime::format_duration(self.lease)
            )));
        }
        Ok(())
    }
}

fn lease_object(conn: &Conn, info: &LockInfo, lease: Duration, transitions: i32) -> Lease {
    let now = now_micro();
    Lease {
        metadata: ObjectMeta {
            name: Some(conn.lease_name()),
            namespace: Some(conn.loc.namespace.clone()),
            labels: Some(conn.labels("lock")),
            annotations: Some(BTreeMap::from([(
                LOCK_INFO_ANNOTATION.to_string(),
                serde_json::to_string(info).unwrap_or_default(),
            )])),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(info.id.clone()),
            lease_duration_seconds: Some(lease.as_secs().min(i32::MAX as u64) as i32),
            acquire_time: now.clone(),
            renew_time: now,
            lease_transitions: Some(transitions),
            ..Default::default()
        }),
    }
}

/// Takes the Lease for `operation`, waiting up to `timeout` for a live holder to let go.
pub async fn acquire(
    conn: &Conn,
    operation: &str,
    lease: Duration,
    timeout: Duration,
) -> Result<LeaseLock, super::StateError> {
    let info = super::lock::new_info(operation);
    let api = conn.leases();
    let name = conn.lease_name();
    let start = Instant::now();
    let mut told = false;
    loop {
        let found = retry(&conn.net, || {
            let api = api.clone();
            let name = name.clone();
            async move { api.get_opt(&name).await }
        })
        .await
        .map_err(|e| conn.failed(&format!("cannot read the lock Lease {name}"), &e))?;
        let attempt = match &found {
            None => {
                let l = lease_object(conn, &info, lease, 0);
                let api = api.clone();
                retry(&conn.net, || {
                    let api = api.clone();
                    let l = l.clone();
                    async move { api.create(&PostParams::default(), &l).await }
                })
                .await
            }
            Some(l) if !conn.ours(&l.metadata) => {
                return Err(conn.not_ours("Lease", &name).into());
            }
            Some(l) if holder(l).is_none() || expiry(l).is_none_or(|t| t <= SystemTime::now()) => {
                if holder(l).is_some() {
                    let old = lease_info(l);
                    crate::errln!(
                        "note: the lock of the state at {} expired ({} by {} pid {} on {}, lock ID {}); taking it over",
                        conn.location(),
                        old.operation,
                        old.who,
                        old.pid,
                        old.host,
                        old.id
                    );
                }
                let transitions = l
                    .spec
                    .as_ref()
                    .and_then(|s| s.lease_transitions)
                    .unwrap_or(0)
                    .saturating_add(1);
                let mut new = lease_object(conn, &info, lease, transitions);
                new.metadata.resource_version = l.metadata.resource_version.clone();
                let api = api.clone();
                let name = name.clone();
                retry(&conn.net, || {
                    let api = api.clone();
                    let new = new.clone();
                    let name = name.clone();
                    async move { api.replace(&name, &PostParams::default(), &new).await }
                })
                .await
            }
            Some(l) => {
                let held = lease_info(l);
                let waited = start.elapsed();
                if waited >= timeout {
                    return Err(if timeout.is_zero() {
                        LockError::Held(Box::new(held))
                    } else {
                        LockError::StillHeld(Box::new(held), timeout)
                    }
                    .into());
                }
                if !told {
                    crate::errln!(
                        "waiting for the state lock: {} by {} (pid {} on {}) since {} holds it (--lock-timeout {})",
                        held.operation,
                        held.who,
                        held.pid,
                        held.host,
                        held.created,
                        humantime::format_duration(timeout)
                    );
                    told = true;
                }
                let until_expiry = expiry(l)
                    .and_then(|t| t.duration_since(SystemTime::now()).ok())
                    .unwrap_or_default();
                let pause = Duration::from_millis(500)
                    .min(timeout - waited)
                    .min(until_expiry + Duration::from_millis(20));
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        match attempt {
            Ok(got) => {
                let lost = Arc::new(Mutex::new(None));
                let renewed = Arc::new(Mutex::new(Instant::now()));
                let renewer = tokio::spawn(renew(
                    conn.clone(),
                    info.id.clone(),
                    lease,
                    got,
                    lost.clone(),
                    renewed.clone(),
                ));
                return Ok(LeaseLock {
                    id: info.id,
                    lease,
                    lost,
                    renewed,
                    renewer: Some(renewer),
                });
            }
            // Someone else moved first: look again.
            Err(e) if status(&e) == Some(409) => continue,
            Err(e) if status(&e) == Some(404) && found.is_none() => {
                return Err(KubeStateError::Failed {
                    location: conn.location(),
                    message: format!(
                        "cannot create the lock Lease {name}: {}\n  = help: the namespace `{}` must exist in context `{}`; create it first",
                        describe(&e),
                        conn.loc.namespace,
                        conn.loc.context
                    ),
                }
                .into())
            }
            Err(e) => {
                return Err(conn
                    .failed(&format!("cannot take the lock Lease {name}"), &e)
                    .into())
            }
        }
    }
}

/// Renews the Lease every third of its duration until aborted or lost.
async fn renew(
    conn: Conn,
    id: String,
    lease: Duration,
    mut current: Lease,
    lost: Arc<Mutex<Option<String>>>,
    renewed: Arc<Mutex<Instant>>,
) {
    let every = lease / 3;
    // A renewal must not outlast the time it has.
    let net = NetSettings {
        request_timeout: conn.net.request_timeout.min(every),
        retry_budget: conn.net.retry_budget.min(every),
        connect_timeout: conn.net.connect_timeout.min(every),
        ..conn.net
    };
    let api = conn.leases();
    let name = conn.lease_name();
    let lose = |why: String| {
        crate::errln!(
            "error: this run lost the lock of the state at {} ({why}); it stops writing the state",
            conn.location()
        );
        if let Ok(mut l) = lost.lock() {
            *l = Some(why);
        }
    };
    let mut last_error = String::new();
    loop {
        tokio::time::sleep(every).await;
        let started = Instant::now();
        let mut next = current.clone();
        if let Some(spec) = next.spec.as_mut() {
            spec.renew_time = now_micro();
        }
        let r = retry(&net, || {
            let api = api.clone();
            let next = next.clone();
            let name = name.clone();
            async move { api.replace(&name, &PostParams::default(), &next).await }
        })
        .await;
        match r {
            Ok(l) => {
                current = l;
                if let Ok(mut r) = renewed.lock() {
                    *r = started;
                }
            }
            Err(e) if matches!(status(&e), Some(409) | Some(404)) => {
                let found = retry(&net, || {
                    let api = api.clone();
                    let name = name.clone();
                    async move { api.get_opt(&name).await }
                })
                .await;
                match found {
                    Ok(Some(l)) if holder(&l) == Some(id.as_str()) => current = l,
                    Ok(Some(l)) => {
                        let by = holder(&l)
                            .map(|h| format!("it is held by lock ID {h} now"))
                            .unwrap_or_else(|| "it was released by `dcm force-unlock`".into());
                        return lose(by);
                    }
                    Ok(None) => return lose("its Lease was deleted".into()),
                    Err(e) => last_error = describe(&e),
                }
            }
            Err(e) => last_error = describe(&e),
        }
        let since = renewed.lock().map(|r| r.elapsed()).unwrap_or(Duration::MAX);
        if since >= lease {
            return lose(format!(
                "its Lease could not be renewed for {}: {last_error}",
                humantime::format_duration(lease)
            ));
        }
    }
}

/// Releases the Lease, if this run still holds it.
async fn release(conn: &Conn, mut lock: LeaseLock) {
    if let Some(r) = lock.renewer.take() {
        r.abort();
    }
    let api = conn.leases();
    let name = conn.lease_name();
    let Ok(Some(mut l)) = api.get_opt(&name).await else {
        return;
    };
    if holder(&l) != Some(lock.id.as_str()) {
        return;
    }
    clear_holder(&mut l);
    // A conflict means someone took it meanwhile: then it is not ours to release.
    let _ = api.replace(&name, &PostParams::default(), &l).await;
}

fn clear_holder(l: &mut Lease) {
    if let Some(spec) = l.spec.as_mut() {
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
    }
    if let Some(a) = l.metadata.annotations.as_mut() {
        a.remove(LOCK_INFO_ANNOTATION);
    }
}

/// `dcm force-unlock ID` for a Lease: clears the holder if it is `id`.
pub async fn force_unlock(conn: &Conn, id: &str) -> Result<LockInfo, super::StateError> {
    let api = conn.leases();
    let name = conn.lease_name();
    let found = retry(&conn.net, || {
        let api = api.clone();
        let name = name.clone();
        async move { api.get_opt(&name).await }
    })
    .await
    .map_err(|e| conn.failed(&format!("cannot read the lock Lease {name}"), &e))?;
    let Some(mut l) = found else {
        return Err(LockError::NotLocked.into());
    };
    if !conn.ours(&l.metadata) {
        return Err(conn.not_ours("Lease", &name).into());
    }
    let Some(h) = holder(&l) else {
        return Err(LockError::NotLocked.into());
    };
    if h != id {
        return Err(LockError::WrongId {
            given: id.to_string(),
            held: h.to_string(),
        }
        .into());
    }
    let info = lease_info(&l);
    clear_holder(&mut l);
    api.replace(&name, &PostParams::default(), &l)
        .await
        .map_err(|e| {
            conn.failed(
                &format!("cannot release the lock Lease {name} (it changed meanwhile? try again)"),
                &RetryError::from(e),
            )
        })?;
    Ok(info)
}

// ---------------------------------------------------------------------------------------
// Writing.

/// The name of the state that keeps `name`'s state from before its last run.
pub fn backup_name(name: &str) -> String {
    format!("{name}-backup")
}

/// How far the writer got.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Every command up to this sequence number is durable.
    pub done: u64,
    /// The serial of the state as written last.
    pub serial: u64,
    /// Set when a write failed: nothing after it is written.
    pub error: Option<KubeStateError>,
}

enum Cmd {
    Op(u64, JournalOp),
    /// The whole state; its serial is at least one above what was written before.
    Snapshot(u64, Box<State>),
}

impl Cmd {
    fn seq(&self) -> u64 {
        match self {
            Cmd::Op(s, _) | Cmd::Snapshot(s, _) => *s,
        }
    }
}

/// What the cluster holds, as the writer knows it.
struct Writer {
    conn: Conn,
    lock: Arc<LeaseLock>,
    /// The index Secret last read or written; None before the state's first write.
    index: Option<Secret>,
    journal: String,
    next_seq: u64,
    /// The state as durable in the cluster (journal included).
    state: State,
    /// Set while the state from before the run is still to be kept as the backup (the
    /// state `<name>-backup`), which the run's first whole write does.
    backup_due: bool,
}

impl Writer {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Cmd>,
        progress: watch::Sender<Progress>,
    ) {
        while let Some(first) = rx.recv().await {
            // Group commit: everything queued while the last write was in flight.
            let mut batch = vec![first];
            while let Ok(c) = rx.try_recv() {
                batch.push(c);
            }
            if progress.borrow().error.is_some() {
                continue;
            }
            let last = batch.last().map(Cmd::seq).unwrap_or_default();
            let r = self.write(batch).await;
            let serial = self.state.serial;
            progress.send_modify(|p| match r {
                Ok(()) => {
                    p.done = last;
                    p.serial = serial;
                }
                Err(e) => p.error = Some(e),
            });
        }
    }

    async fn write(&mut self, batch: Vec<Cmd>) -> Result<(), KubeStateError> {
        let last_snapshot = batch.iter().rposition(|c| matches!(c, Cmd::Snapshot(..)));
        let mut base = None;
        let mut ops = Vec::new();
        for (i, c) in batch.into_iter().enumerate() {
            match c {
                Cmd::Snapshot(_, s) if Some(i) == last_snapshot => base = Some(*s),
                Cmd::Snapshot(..) => {}
                // Ops before the last snapshot are in it.
                Cmd::Op(..) if last_snapshot.is_some_and(|l| i < l) => {}
                Cmd::Op(_, op) => ops.push(op),
            }
        }
        let journals = self.next_seq;
        match base {
            Some(mut s) => {
                for op in ops {
                    op.apply_to(&mut s);
                }
                self.snapshot(s).await
            }
            None if journals >= COMPACT_AFTER => {
                let mut s = self.state.clone();
                for op in ops {
                    op.apply_to(&mut s);
                }
                self.snapshot(s).await
            }
            None => self.append(ops).await,
        }
    }

    fn location(&self) -> String {
        self.conn.location()
    }

    /// Writes the whole state: chunks (if any) under new names, then the index, then
    /// the chunks and journal it no longer names go.
    async fn snapshot(&mut self, mut s: State) -> Result<(), KubeStateError> {
        self.lock.check(&self.location())?;
        if std::mem::take(&mut self.backup_due) {
            self.keep_backup().await?;
        }
        s.serial = s.serial.max(self.state.serial + 1);
        let failed = |message: String| KubeStateError::Failed {
            location: self.location(),
            message,
        };
        let mut json = serde_json::to_vec_pretty(&s).map_err(|e| failed(e.to_string()))?;
        json.push(b'\n');
        let blob = gzip(&json).map_err(|e| failed(format!("cannot compress it: {e}")))?;
        let generation = super::lock::new_id();
        let journal = super::lock::new_id();
        let mut chunks = Vec::new();
        if blob.len() > CHUNK_SIZE {
            for (i, piece) in blob.chunks(CHUNK_SIZE).enumerate() {
                let name = format!("{}-c-{generation}-{i}", self.conn.loc.name);
                let mut secret = self.conn.secret(
                    name.clone(),
                    "chunk",
                    BTreeMap::from([(CHUNK_KEY.to_string(), piece.to_vec())]),
                );
                if let Some(l) = secret.metadata.labels.as_mut() {
                    l.insert(GENERATION_LABEL.into(), generation.clone());
                }
                self.lock.check(&self.location())?;
                self.conn.create_exactly(&secret).await?;
                chunks.push(name);
            }
        }
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            lineage: s.lineage.clone(),
            serial: s.serial,
            sha256: sha256_hex(&blob),
            size: blob.len(),
            chunks: chunks.clone(),
            generation: if chunks.is_empty() {
                String::new()
            } else {
                generation.clone()
            },
            journal: journal.clone(),
        };
        let mut data = BTreeMap::from([(
            MANIFEST_KEY.to_string(),
            serde_json::to_vec_pretty(&manifest).map_err(|e| failed(e.to_string()))?,
        )]);
        if chunks.is_empty() {
            data.insert(INLINE_KEY.to_string(), blob);
        }
        let name = self.conn.index_name();
        let mut index = self.conn.secret(name.clone(), "index", data);
        self.lock.check(&self.location())?;
        let written = match &self.index {
            None => self
                .conn
                .create_exactly(&index)
                .await
                .map_err(|e| match e {
                    KubeStateError::Conflict { location, .. } => KubeStateError::Conflict {
                        location,
                        what: "it was created by another writer meanwhile".into(),
                    },
                    other => other,
                })?,
            Some(old) => {
                index.metadata.resource_version = old.metadata.resource_version.clone();
                match self.conn.replace_secret(&name, &index).await {
                    Ok(w) => w,
                    Err(e) if matches!(status(&e), Some(409) | Some(404)) => {
                        let now = self.conn.get_secret(&name).await.map_err(|e| {
                            self.conn.failed(&format!("cannot read Secret {name}"), &e)
                        })?;
                        match now {
                            // A retried update that had gone through.
                            Some(n) if n.data == index.data => n,
                            Some(n) => {
                                return Err(KubeStateError::Conflict {
                                    location: self.location(),
                                    what: format!(
                                        "its index Secret {name} has resourceVersion {} now, {} when this run read it",
                                        n.metadata.resource_version.unwrap_or_default(),
                                        old.metadata.resource_version.clone().unwrap_or_default()
                                    ),
                                })
                            }
                            None => {
                                return Err(KubeStateError::Conflict {
                                    location: self.location(),
                                    what: format!("its index Secret {name} was deleted"),
                                })
                            }
                        }
                    }
                    Err(e) => {
                        return Err(self.conn.failed(&format!("cannot write Secret {name}"), &e))
                    }
                }
            }
        };
        self.index = Some(written);
        self.state = s;
        self.journal = journal;
        self.next_seq = 0;
        self.collect_garbage(&manifest).await;
        Ok(())
    }

    /// Writes the state as it is now (from before the run's first whole write) as the
    /// state `<name>-backup`, replacing the one there: `dcm --state
    /// k8s://CONTEXT/NAMESPACE/NAME-backup state pull` shows it.
    async fn keep_backup(&self) -> Result<(), KubeStateError> {
        let mut loc = self.conn.loc.clone();
        loc.name = backup_name(&loc.name);
        let conn = Conn {
            loc,
            ..self.conn.clone()
        };
        let name = conn.index_name();
        let index = conn
            .get_secret(&name)
            .await
            .map_err(|e| conn.failed(&format!("cannot read Secret {name}"), &e))?;
        if index.as_ref().is_some_and(|i| !conn.ours(&i.metadata)) {
            return Err(conn.not_ours("Secret", &name));
        }
        let mut backup = Writer {
            conn,
            lock: self.lock.clone(),
            index,
            journal: String::new(),
            next_seq: 0,
            // Below any serial, so the backup keeps the state's own.
            state: State {
                serial: 0,
                ..State::new()
            },
            backup_due: false,
        };
        let old = self.state.clone();
        Box::pin(backup.snapshot(old)).await
    }

    /// Deletes chunks and journal records the index no longer names. A failure leaves
    /// them for the next write: they are never read.
    async fn collect_garbage(&self, manifest: &Manifest) {
        let mut stale = Vec::new();
        match self.conn.list_secrets("chunk", "").await {
            Ok(all) => stale.extend(all.into_iter().filter(|s| {
                !s.metadata
                    .name
                    .as_ref()
                    .is_some_and(|n| manifest.chunks.contains(n))
            })),
            Err(_) => return,
        }
        match self.conn.list_secrets("journal", "").await {
            Ok(all) => stale.extend(all.into_iter().filter(|s| {
                s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(JOURNAL_LABEL))
                    != Some(&manifest.journal)
            })),
            Err(_) => return,
        }
        for s in stale {
            if let Some(n) = s.metadata.name {
                if self.conn.delete_secret(&n).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Appends `ops` to the journal, as few Secrets as their size allows.
    async fn append(&mut self, ops: Vec<JournalOp>) -> Result<(), KubeStateError> {
        let location = self.location();
        let failed = |message: String| KubeStateError::Failed {
            location: location.clone(),
            message,
        };
        let mut pieces: Vec<Vec<JournalOp>> = Vec::new();
        let mut size = 0;
        for op in ops {
            let len = serde_json::to_vec(&op).map(|v| v.len()).unwrap_or(0);
            match pieces.last_mut() {
                Some(p) if size + len <= JOURNAL_BYTES => p.push(op),
                _ => {
                    size = 0;
                    pieces.push(vec![op]);
                }
            }
            size += len;
        }
        for piece in pieces {
            let seq = self.next_seq;
            let name = format!("{}-j-{}-{seq:06}", self.conn.loc.name, self.journal);
            let bytes = serde_json::to_vec(&piece).map_err(|e| failed(e.to_string()))?;
            let mut secret = self.conn.secret(
                name,
                "journal",
                BTreeMap::from([(RECORDS_KEY.to_string(), bytes)]),
            );
            if let Some(l) = secret.metadata.labels.as_mut() {
                l.insert(JOURNAL_LABEL.into(), self.journal.clone());
            }
            secret.metadata.annotations = Some(BTreeMap::from([(
                SEQUENCE_ANNOTATION.to_string(),
                seq.to_string(),
            )]));
            self.lock.check(&self.location())?;
            self.conn.create_exactly(&secret).await?;
            self.next_seq += 1;
            for op in piece {
                op.apply_to(&mut self.state);
            }
        }
        Ok(())
    }
}

/// A run's hold on a Kubernetes state: the lock, and a writer.
pub struct KubeStore {
    rt: Runtime,
    conn: Conn,
    lock: Option<Arc<LeaseLock>>,
    tx: Option<mpsc::UnboundedSender<Cmd>>,
    progress: watch::Receiver<Progress>,
    seq: u64,
}

/// The result of opening: the store, the state (`fresh` when there was none), whether
/// there was one, and whether a journal was read into it.
pub type Opened = (KubeStore, State, bool, bool);

impl KubeStore {
    /// Locks the state at `loc` for `operation` and reads it; `fresh` is the state to
    /// start from when there is none.
    pub fn open(
        loc: &KubeLocation,
        access: &Access,
        operation: &str,
        fresh: impl FnOnce() -> State,
    ) -> Result<Opened, super::StateError> {
        let max = super::location::MAX_WRITTEN_NAME;
        if loc.name.len() > max {
            return Err(KubeStateError::Failed {
                location: loc.to_string(),
                message: format!(
                    "a state dcm writes needs a name of at most {max} characters, to name its backup `<name>-backup` (`{}` has {}); it can only be read",
                    loc.name,
                    loc.name.len()
                ),
            }
            .into());
        }
        let rt = Runtime::new().map_err(|message| KubeStateError::Failed {
            location: loc.to_string(),
            message,
        })?;
        let (l, a, op) = (loc.clone(), access.clone(), operation.to_string());
        let opened = rt
            .block(async move {
                let conn = connect(&l, &a).await?;
                let lock = acquire(&conn, &op, a.lease, a.lock_timeout).await?;
                match read(&conn).await {
                    Ok(found) => Ok((conn, lock, found)),
                    Err(e) => {
                        release(&conn, lock).await;
                        Err(e)
                    }
                }
            })
            .ok_or_else(|| KubeStateError::Failed {
                location: loc.to_string(),
                message: "the async runtime stopped".into(),
            })??;
        let (conn, lock, found) = opened;
        let lock = Arc::new(lock);
        let (existed, journaled) = (
            found.is_some(),
            found.as_ref().is_some_and(Loaded::journaled),
        );
        let (state, index, journal, next_seq) = match found {
            Some(l) => (l.state, Some(l.index), l.journal, l.journals),
            None => (fresh(), None, String::new(), 0),
        };
        let writer = Writer {
            conn: conn.clone(),
            lock: lock.clone(),
            index,
            journal,
            next_seq,
            state: state.clone(),
            backup_due: existed,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let (ptx, progress) = watch::channel(Progress {
            done: 0,
            serial: state.serial,
            error: None,
        });
        if let Some(h) = rt.handle() {
            h.spawn(writer.run(rx, ptx));
        }
        let store = KubeStore {
            rt,
            conn,
            lock: Some(lock),
            tx: Some(tx),
            progress,
            seq: 0,
        };
        Ok((store, state, existed, journaled))
    }

    fn send(&mut self, make: impl FnOnce(u64) -> Cmd) -> super::Durable {
        self.seq += 1;
        let seq = self.seq;
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send(make(seq)).is_ok());
        super::Durable::kube(
            self.progress.clone(),
            if sent { seq } else { u64::MAX },
            self.rt.handle().cloned(),
        )
    }

    /// Queues one record.
    pub fn op(&mut self, op: JournalOp) -> super::Durable {
        self.send(|seq| Cmd::Op(seq, op))
    }

    /// Queues the whole state.
    pub fn snapshot(&mut self, state: &State) -> super::Durable {
        let s = Box::new(state.clone());
        self.send(|seq| Cmd::Snapshot(seq, s))
    }

    /// The serial the writer wrote last.
    pub fn serial(&self) -> u64 {
        self.progress.borrow().serial
    }

    pub fn lock_id(&self) -> Option<&str> {
        self.lock.as_deref().map(|l| l.id.as_str())
    }
}

impl Drop for KubeStore {
    fn drop(&mut self) {
        // The writer ends once its queue is closed and drained.
        self.tx.take();
        let Some(lock) = self.lock.take() else { return };
        let conn = self.conn.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(h) = self.rt.handle() {
            h.spawn(async move {
                // Wait for the writer to let go of the lock, then release it.
                let mut lock = lock;
                for _ in 0..200 {
                    match Arc::try_unwrap(lock) {
                        Ok(l) => {
                            release(&conn, l).await;
                            break;
                        }
                        Err(l) => {
                            lock = l;
                            tokio::time::sleep(Duration::from_millis(25)).await;
                        }
                    }
                }
                let _ = tx.send(());
            });
            let _ = rx.recv_timeout(Duration::from_secs(10));
        }
    }
}

/// Reads the state at `loc` without locking it.
pub fn read_unlocked(
    loc: &KubeLocation,
    access: &Access,
) -> Result<Option<State>, super::StateError> {
    let rt = Runtime::new().map_err(|message| KubeStateError::Failed {
        location: loc.to_string(),
        message,
    })?;
    let (l, a) = (loc.clone(), access.clone());
    rt.block(async move {
        let conn = connect(&l, &a).await?;
        Ok(read(&conn).await?.map(|l| l.state))
    })
    .unwrap_or_else(|| {
        Err(KubeStateError::Failed {
            location: loc.to_string(),
            message: "the async runtime stopped".into(),
        }
        .into())
    })
}

/// `dcm force-unlock ID` for a Kubernetes state.
pub fn force_unlock_at(
    loc: &KubeLocation,
    access: &Access,
    id: &str,
) -> Result<LockInfo, super::StateError> {
    let rt = Runtime::new().map_err(|message| KubeStateError::Failed {
        location: loc.to_string(),
        message,
    })?;
    let (l, a, id) = (loc.clone(), access.clone(), id.to_string());
    rt.block(async move {
        let conn = connect(&l, &a).await?;
        force_unlock(&conn, &id).await
    })
    .unwrap_or_else(|| {
        Err(KubeStateError::Failed {
            location: loc.to_string(),
            message: "the async runtime stopped".into(),
        }
        .into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_round_trips_and_refuses_garbage() {
        let text = b"{\"version\": 1}".repeat(1000);
        let z = gzip(&text).unwrap();
        assert!(z.len() < text.len() / 10);
        assert_eq!(gunzip(&z).unwrap(), text);
        assert!(gunzip(b"not gzip").unwrap_err().contains("decompress"));
    }

    #[test]
    fn a_lease_without_times_counts_as_expired_and_one_renewed_now_as_live() {
        let mut l = Lease::default();
        assert_eq!(expiry(&l), None);
        l.spec = Some(LeaseSpec {
            holder_identity: Some("abc".into()),
            lease_duration_seconds: Some(15),
            renew_time: now_micro(),
            ..Default::default()
        });
        let t = expiry(&l).unwrap();
        assert!(t > SystemTime::now() + Duration::from_secs(14));
        assert!(t <= SystemTime::now() + Duration::from_secs(15));
        assert_eq!(lease_info(&l).id, "abc");
    }
}
