//! The state file: which objects dcm created or edits, and what it applied to them.
//!
//! JSON with `version`, `lineage` (fixed at creation), `serial` (up on every write) and one
//! entry per object. It records hashes, never object contents, so Secret data cannot leak
//! into it. [`StateStore`] writes it atomically (temp, fsync, rename), keeps the version
//! from before the run as `<path>.backup`, and is guarded by a [`lock`].
//!
//! During an apply, each finished object costs one appended, fsynced line in
//! `<path>.journal` instead of a rewrite of the whole state (which made applies
//! quadratic); the journal is folded into the state file at the end of the run, and by the
//! next run (or read) when a killed run left one behind. Each line carries a checksum: a
//! torn last line is ignored with a warning.

pub mod entries;
pub mod kube;
pub mod location;
pub mod lock;

pub use entries::Entries;
pub use location::{KubeLocation, StateLocation};

use crate::object::{split_api_version, ObjRef};
use crate::target::dir::write_atomically;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The state format this build reads and writes.
pub const STATE_VERSION: u32 = 1;

/// How dcm came to manage an object; it decides what `destroy` and removal from the file do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// dcm created it: removing it from the file deletes it.
    Created,
    /// It existed before dcm applied it: removing it from the file only forgets it.
    Adopted,
    /// dcm edits only its own part of it (e.g. stub domains in CoreDNS's Corefile); its
    /// hash is of that part, and removal takes that part back out.
    Edited,
}

/// One object in the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateEntry {
    pub address: String,
    pub cluster: String,
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
    /// sha256 of the object as applied (Secret data included in the hash, never stored).
    pub sha256: String,
    pub origin: Origin,
    /// Set while a write is in flight: a run killed then left the object in an unknown
    /// state, and the next plan looks at the live object to decide.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
    /// Addresses of the objects this one depended on when applied (for delete order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Values dcm chose for this object and must keep (e.g. ServiceEntry addresses).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allocated: BTreeMap<String, String>,
    /// The UID the cluster gave the object when dcm wrote it. An object of the same name
    /// with another UID was made by someone else: it is not dcm's to change or delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

impl StateEntry {
    pub fn id(&self) -> ObjRef {
        ObjRef {
            cluster: self.cluster.clone(),
            group: split_api_version(&self.api_version).0.to_string(),
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// The whole state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct State {
    pub version: u32,
    pub lineage: String,
    pub serial: u64,
    /// Keys the hashes a directory target stores next to Secrets it encrypts with sops
    /// (`dcm.io/plaintext-hmac`), so that they say nothing to whoever reads the directory.
    #[serde(default, skip_serializing_if = "SecretsKey::is_empty")]
    pub secrets_hmac_key: SecretsKey,
    /// Which cluster each of the file's clusters was when dcm last wrote to it, so a
    /// context that now points at another cluster is refused before any write.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clusters: BTreeMap<String, ClusterIdentity>,
    /// One entry per object, in [`ObjRef`] order.
    pub objects: Entries,
}

/// A state's JSON as it is read: [`State`] with its entries as listed, to be checked
/// (order, duplicates, identities) before they become [`Entries`]. Named `State` for the
/// messages of serde, which name it.
#[derive(Deserialize)]
#[serde(rename = "State", deny_unknown_fields)]
struct StateFile {
    version: u32,
    lineage: String,
    serial: u64,
    #[serde(default)]
    secrets_hmac_key: SecretsKey,
    #[serde(default)]
    clusters: BTreeMap<String, ClusterIdentity>,
    objects: Vec<StateEntry>,
}

/// What tells one Kubernetes cluster from another: its API server, and the UID of its
/// `kube-system` namespace (fixed for the cluster's life, whatever its address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterIdentity {
    pub server: String,
    pub kube_system_uid: String,
}

/// A random 256-bit key, in hex; never shown (Debug hides it).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretsKey(String);

impl SecretsKey {
    /// A fresh key; empty when the system has no entropy source (then nothing encrypted
    /// can be recognised again, and every plan rewrites encrypted Secrets).
    pub fn generate() -> SecretsKey {
        let mut b = [0u8; 32];
        match getrandom::fill(&mut b) {
            Ok(()) => SecretsKey(hex::encode(b)),
            Err(_) => SecretsKey::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The key's bytes, when it is a valid key.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        hex::decode(&self.0).ok().filter(|b| b.len() >= 16)
    }
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(..)")
    }
}

impl State {
    pub fn new() -> State {
        State {
            version: STATE_VERSION,
            lineage: new_lineage(),
            serial: 0,
            secrets_hmac_key: SecretsKey::generate(),
            clusters: BTreeMap::new(),
            objects: Entries::new(),
        }
    }

    /// The entry of object `id`.
    pub fn get(&self, id: &ObjRef) -> Option<&StateEntry> {
        self.objects.get(id)
    }

    /// The entry whose address is `address`.
    pub fn get_address(&self, address: &str) -> Option<&StateEntry> {
        self.objects.get_address(address)
    }

    /// Adds or replaces the entry for the same object.
    pub fn upsert(&mut self, entry: StateEntry) {
        self.objects.upsert(entry)
    }

    /// Removes an object's entry; returns whether it was there.
    pub fn remove(&mut self, address: &str) -> bool {
        self.objects.remove(address)
    }
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

/// A random id in UUID form, fixed when a state is created.
fn new_lineage() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No entropy source: fall back to time and pid, which is still unique enough here.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        b = (t ^ ((std::process::id() as u128) << 64)).to_le_bytes();
    }
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the state file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the state file {path} is corrupt ({message}); it was left unchanged. Restore it from {path}.backup, or fix it by hand")]
    Corrupt { path: String, message: String },
    #[error("the state file {path} has format version {found}, newer than this dcm understands ({STATE_VERSION}); it was left unchanged. Use a newer dcm")]
    TooNew { path: String, found: u64 },
    #[error("cannot write the state file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error(transparent)]
    Kube(#[from] kube::KubeStateError),
}

/// How to reach a state and how long to wait for its lock (what `--state`, `[state]` and
/// the global flags say).
#[derive(Debug, Clone)]
pub struct Access {
    /// The kubeconfig for a Kubernetes state (None: $KUBECONFIG's default, ~/.kube/config).
    pub kubeconfig: Option<PathBuf>,
    pub net: crate::target::NetSettings,
    /// How long to wait for a lock another run holds (`--lock-timeout`; zero: fail at once).
    pub lock_timeout: std::time::Duration,
    /// The lease of a Kubernetes state's lock.
    pub lease: std::time::Duration,
}

impl Default for Access {
    fn default() -> Access {
        Access {
            kubeconfig: None,
            net: crate::target::NetSettings::default(),
            lock_timeout: std::time::Duration::ZERO,
            lease: kube::DEFAULT_LEASE,
        }
    }
}

/// One change to the state, as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalOp {
    Upsert(Box<StateEntry>),
    Remove(String),
}

impl JournalOp {
    pub(crate) fn apply_to(self, state: &mut State) {
        match self {
            JournalOp::Upsert(e) => state.upsert(*e),
            JournalOp::Remove(a) => {
                state.remove(&a);
            }
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

pub fn journal_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".journal");
    PathBuf::from(s)
}

/// A journal line: the sha256 of the record, a space, the record (JSON), a newline.
fn journal_line(op: &JournalOp) -> Result<String, serde_json::Error> {
    let record = serde_json::to_string(op)?;
    Ok(format!("{} {record}\n", sha256_hex(record.as_bytes())))
}

/// The records of the journal beside `path` (none when there is none). A line that does
/// not check out ends the journal: a run killed while appending tore it, so it and
/// anything after it are ignored, with a warning.
fn read_journal(path: &Path) -> Result<Vec<JournalOp>, StateError> {
    let jpath = journal_path(path);
    let text = match std::fs::read_to_string(&jpath) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StateError::Read {
                path: jpath.display().to_string(),
                source,
            })
        }
    };
    let mut ops = Vec::new();
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let (line, next) = match rest.split_once('\n') {
            Some((l, n)) => (Some(l), n),
            None => (None, ""),
        };
        let op = line.and_then(|l| {
            let (sum, record) = l.split_once(' ')?;
            (sha256_hex(record.as_bytes()) == sum)
                .then(|| serde_json::from_str::<JournalOp>(record).ok())
                .flatten()
        });
        match op {
            Some(op) => ops.push(op),
            None => {
                crate::errln!(
                    "warning: the last record of {} is torn (a run was killed while writing it); it is ignored",
                    jpath.display()
                );
                break;
            }
        }
        rest = next;
    }
    Ok(ops)
}

/// Reads the state at `path` (with what a killed run's journal adds); a missing file is
/// an empty, new state.
pub fn read(path: &Path) -> Result<Option<State>, StateError> {
    let Some(mut state) = read_file(path)? else {
        return Ok(None);
    };
    for op in read_journal(path)? {
        op.apply_to(&mut state);
    }
    Ok(Some(state))
}

/// The state file alone.
fn read_file(path: &Path) -> Result<Option<State>, StateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Err(StateError::Corrupt {
                path: path.display().to_string(),
                message: "not UTF-8 text".into(),
            })
        }
        Err(source) => {
            return Err(StateError::Read {
                path: path.display().to_string(),
                source,
            })
        }
    };
    parse_state(&text)
        .map(Some)
        .map_err(|p| p.at(&path.display().to_string()))
}

/// What is wrong with a state's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Corrupt(String),
    TooNew(u64),
}

impl Problem {
    /// The error for the state file at `path`.
    pub fn at(self, path: &str) -> StateError {
        match self {
            Problem::Corrupt(message) => StateError::Corrupt {
                path: path.to_string(),
                message,
            },
            Problem::TooNew(found) => StateError::TooNew {
                path: path.to_string(),
                found,
            },
        }
    }
}

/// Parses and checks a state's JSON (a file's, a cluster's, or one to push).
pub fn parse_state(text: &str) -> Result<State, Problem> {
    let corrupt = Problem::Corrupt;
    // Look at the version first, so a newer format is reported as such, not as corrupt.
    let raw: serde_json::Value = serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
    let version = raw.get("version");
    match version.and_then(serde_json::Value::as_u64) {
        Some(v) if v > STATE_VERSION as u64 => return Err(Problem::TooNew(v)),
        Some(0) => return Err(corrupt("`version` 0 is not a state format".into())),
        Some(_) => {}
        None if version.is_none() => return Err(corrupt("no `version` field".into())),
        None => {
            return Err(corrupt(format!(
                "`version` must be a positive integer, found {}",
                version.map(|v| v.to_string()).unwrap_or_default()
            )))
        }
    }
    match raw.get("serial").and_then(serde_json::Value::as_u64) {
        Some(s) if s >= 1 << 63 => {
            return Err(corrupt(format!(
                "`serial` {s} is out of range (at most 2^63 - 1)"
            )))
        }
        Some(_) => {}
        None => {
            return Err(corrupt(
                "`serial` must be an integer from 0 to 2^63 - 1".into(),
            ))
        }
    }
    let file: StateFile = serde_json::from_value(raw).map_err(|e| corrupt(e.to_string()))?;
    // A file edited by hand may be out of order: sorted (stably) as it is written.
    let mut objects: Vec<(ObjRef, StateEntry)> =
        file.objects.into_iter().map(|e| (e.id(), e)).collect();
    objects.sort_by(|a, b| a.0.cmp(&b.0));
    if objects.windows(2).any(|w| w[0].1.address == w[1].1.address) {
        return Err(corrupt("an object is listed twice".into()));
    }
    for (id, e) in &objects {
        if id.address() != e.address {
            return Err(corrupt(format!(
                "entry `{}` does not match its own fields",
                e.address
            )));
        }
        // Entries name files to delete: refuse anything that is not a Kubernetes identity.
        let (group, _) = split_api_version(&e.api_version);
        let valid = crate::object::check_type(&e.api_version, &e.kind)
            .and_then(|_| crate::object::check_dns_label(&e.cluster))
            .and_then(|_| crate::object::check_object_name(group, &e.kind, &e.name))
            .and_then(|_| match e.namespace.as_str() {
                "" => Ok(()),
                ns => crate::object::check_dns_label(ns),
            });
        if let Err(why) = valid {
            return Err(corrupt(format!(
                "entry `{}` is not a valid object: {why}",
                e.address
            )));
        }
    }
    // Sorted, and one entry per id: equal ids have equal addresses once each entry's
    // address is its id's, and equal addresses were refused above.
    Ok(State {
        version: file.version,
        lineage: file.lineage,
        serial: file.serial,
        secrets_hmac_key: file.secrets_hmac_key,
        clusters: file.clusters,
        objects: Entries::from_sorted(objects),
    })
}

/// Reads the state at `location` without locking it (a read may run beside a writer);
/// None when there is none.
pub fn read_at(location: &StateLocation, access: &Access) -> Result<Option<State>, StateError> {
    match location {
        StateLocation::Local(p) => read(p),
        StateLocation::Kubernetes(k) => kube::read_unlocked(k, access),
    }
}

/// `dcm force-unlock ID`: removes the lock `id` of the state at `location`.
pub fn force_unlock_at(
    location: &StateLocation,
    access: &Access,
    id: &str,
) -> Result<lock::LockInfo, StateError> {
    match location {
        StateLocation::Local(p) => Ok(lock::force_unlock(p, id)?),
        StateLocation::Kubernetes(k) => kube::force_unlock_at(k, access, id),
    }
}

/// A change on its way to being durable; `wait` for it before relying on it.
#[must_use]
pub struct Durable {
    /// The writer's progress and the sequence number to wait for (None: durable already).
    pending: Option<(tokio::sync::watch::Receiver<kube::Progress>, u64)>,
    handle: Option<tokio::runtime::Handle>,
    /// A line of a local journal and the group commit that makes it durable.
    local: Option<(Arc<GroupSync>, u64)>,
}

impl Durable {
    fn done() -> Durable {
        Durable {
            pending: None,
            handle: None,
            local: None,
        }
    }

    fn local(group: Arc<GroupSync>, seq: u64) -> Durable {
        Durable {
            pending: None,
            handle: None,
            local: Some((group, seq)),
        }
    }

    fn kube(
        progress: tokio::sync::watch::Receiver<kube::Progress>,
        seq: u64,
        handle: Option<tokio::runtime::Handle>,
    ) -> Durable {
        Durable {
            pending: Some((progress, seq)),
            handle,
            local: None,
        }
    }

    /// Waits until the change is durable (or its write failed).
    pub async fn wait(self) -> Result<(), StateError> {
        if let Some((group, seq)) = self.local {
            return group.sync_through_async(seq).await;
        }
        let Some((mut rx, seq)) = self.pending else {
            return Ok(());
        };
        let waited = rx
            .wait_for(|p| p.done >= seq || p.error.is_some())
            .await
            .map(|p| p.clone());
        let p = match waited {
            Ok(p) => p,
            // The writer is gone: whatever it got to is all there is.
            Err(_) => {
                let p = rx.borrow().clone();
                if p.done >= seq {
                    return Ok(());
                }
                return Err(p
                    .error
                    .map(StateError::from)
                    .unwrap_or_else(|| StateError::Write {
                        path: "the state".into(),
                        source: std::io::Error::other("the state's writer stopped"),
                    }));
            }
        };
        match p.error {
            Some(e) if p.done < seq => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// As [`Durable::wait`], blocking this thread.
    pub fn wait_blocking(self) -> Result<(), StateError> {
        if let Some((group, seq)) = &self.local {
            return group.sync_through(*seq);
        }
        let Some(handle) = self.handle.clone() else {
            return Ok(());
        };
        if self.pending.is_none() {
            return Ok(());
        }
        let (tx, rx) = std::sync::mpsc::channel();
        handle.spawn(async move {
            let _ = tx.send(self.wait().await);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(StateError::Write {
                path: "the state".into(),
                source: std::io::Error::other("the state's writer stopped"),
            })
        })
    }
}

/// The state of one run that writes it: the lock, and durable, atomic writes, wherever
/// the state lives.
pub struct StateStore {
    pub state: State,
    /// Whether the state existed when the run started (so there is something to back up).
    existed: bool,
    backend: Backend,
}

/// Where a [`StateStore`] writes.
enum Backend {
    Local(Local),
    Kubernetes(Box<Kube>),
}

/// A state file, its journal, backup and lock.
struct Local {
    path: PathBuf,
    backed_up: bool,
    /// The journal this run appends to, once the state file holds what came before.
    journal: Option<std::fs::File>,
    /// The fsyncs of that journal, shared by the changes waiting on them.
    group: Option<Arc<GroupSync>>,
    _lock: lock::Lock,
}

/// Group commit for a local journal: a change waits until an fsync that started after its
/// line was written has finished. While one fsync is in flight, the lines written meanwhile
/// wait together for the next one, so one fsync covers them all.
struct GroupSync {
    file: std::fs::File,
    path: PathBuf,
    progress: std::sync::Mutex<SyncProgress>,
    done: std::sync::Condvar,
    /// The same news for those that wait asynchronously.
    done_async: tokio::sync::Notify,
}

#[derive(Default)]
struct SyncProgress {
    /// Lines written to the journal (not yet all durable).
    written: u64,
    /// Lines made durable by a finished fsync.
    synced: u64,
    /// Whether an fsync is in flight.
    syncing: bool,
    /// The error of the last fsync, which every change it should have covered gets.
    failed: Option<String>,
}

impl GroupSync {
    fn new(journal: &std::fs::File, path: PathBuf) -> std::io::Result<Arc<GroupSync>> {
        Ok(Arc::new(GroupSync {
            file: journal.try_clone()?,
            path,
            progress: Default::default(),
            done: std::sync::Condvar::new(),
            done_async: tokio::sync::Notify::new(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SyncProgress> {
        self.progress
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One more line written; its number, to wait for.
    fn written(&self) -> u64 {
        let mut p = self.lock();
        p.written += 1;
        p.written
    }

    /// What a waiter for line `seq` learns from `p`: durable, the fsync failed, or
    /// (None) not yet.
    fn outcome(&self, p: &SyncProgress, seq: u64) -> Option<Result<(), StateError>> {
        if p.synced >= seq {
            return Some(Ok(()));
        }
        p.failed.as_ref().map(|why| {
            Err(StateError::Write {
                path: self.path.display().to_string(),
                source: std::io::Error::other(why.clone()),
            })
        })
    }

    /// Returns once line `seq` is durable: this caller runs the fsync when none is in
    /// flight, else waits for the one in flight (and, if that started before `seq` was
    /// written, for the next).
    fn sync_through(&self, seq: u64) -> Result<(), StateError> {
        let mut p = self.lock();
        loop {
            if let Some(outcome) = self.outcome(&p, seq) {
                return outcome;
            }
            if p.syncing {
                p = self
                    .done
                    .wait(p)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                continue;
            }
            p.syncing = true;
            drop(p);
            self.sync_now();
            p = self.lock();
        }
    }

    /// Runs one fsync (the caller set `syncing`), covering every line written before it
    /// started, and tells every waiter.
    fn sync_now(&self) {
        let covers = self.lock().written;
        let result = self.file.sync_data();
        let mut p = self.lock();
        p.syncing = false;
        match result {
            Ok(()) => p.synced = p.synced.max(covers),
            Err(e) => p.failed = Some(e.to_string()),
        }
        drop(p);
        self.done.notify_all();
        self.done_async.notify_waiters();
    }

    /// As [`GroupSync::sync_through`], for async callers: the fsync runs on a blocking
    /// thread (a runtime thread would hold the requests of other changes meanwhile), and
    /// the changes it covers wait for it without a thread each.
    async fn sync_through_async(self: Arc<Self>, seq: u64) -> Result<(), StateError> {
        loop {
            let notified = self.done_async.notified();
            tokio::pin!(notified);
            {
                let mut p = self.lock();
                if let Some(outcome) = self.outcome(&p, seq) {
                    return outcome;
                }
                // Registered before the lock goes, so that the news of the fsync in
                // flight (or of the one started here) cannot be missed.
                notified.as_mut().enable();
                if !p.syncing {
                    p.syncing = true;
                    let group = self.clone();
                    // On its own task, so that it finishes (and tells the others) even
                    // if this caller stops waiting.
                    tokio::task::spawn_blocking(move || group.sync_now());
                }
            }
            notified.await;
        }
    }
}

/// Secrets and a Lease in a cluster.
struct Kube {
    store: kube::KubeStore,
    location: KubeLocation,
    /// Whether this run wrote the whole state yet (its first change does).
    snapshotted: bool,
    /// Whether records went to the journal since the last whole write.
    journaled: bool,
}

impl StateStore {
    /// Locks the state file at `path` for `operation` (failing at once if another run holds
    /// it) and reads it.
    pub fn open(path: &Path, operation: &str) -> Result<StateStore, StateError> {
        StateStore::open_at(
            &StateLocation::Local(path.to_path_buf()),
            &Access::default(),
            operation,
        )
    }

    /// Locks the state at `location` for `operation` (waiting up to `access.lock_timeout`)
    /// and reads it; a killed run's journal is folded in first.
    pub fn open_at(
        location: &StateLocation,
        access: &Access,
        operation: &str,
    ) -> Result<StateStore, StateError> {
        let (backend, mut state, existed, journaled) = match location {
            StateLocation::Local(path) => {
                let lock = lock::Lock::acquire_waiting(path, operation, access.lock_timeout)?;
                let found = read(path)?;
                let existed = found.is_some();
                let journaled = existed && journal_path(path).exists();
                let local = Local {
                    path: path.clone(),
                    backed_up: false,
                    journal: None,
                    group: None,
                    _lock: lock,
                };
                let state = found.unwrap_or_default();
                (Backend::Local(local), state, existed, journaled)
            }
            StateLocation::Kubernetes(k) => {
                let (store, state, existed, journaled) =
                    kube::KubeStore::open(k, access, operation, State::new)?;
                let kube = Kube {
                    store,
                    location: k.clone(),
                    snapshotted: false,
                    journaled: false,
                };
                (
                    Backend::Kubernetes(Box::new(kube)),
                    state,
                    existed,
                    journaled,
                )
            }
        };
        if state.secrets_hmac_key.bytes().is_none() {
            // A state from before the key existed (or a mangled key): saved with the next write.
            state.secrets_hmac_key = SecretsKey::generate();
        }
        let mut store = StateStore {
            existed,
            state,
            backend,
        };
        // A killed run's journal (already read into the state) is folded in first.
        if journaled {
            store.persist()?;
        }
        Ok(store)
    }

    /// Whether a state existed when this run started.
    pub fn existed(&self) -> bool {
        self.existed
    }

    /// Where the state lives.
    pub fn location(&self) -> StateLocation {
        match &self.backend {
            Backend::Local(l) => StateLocation::Local(l.path.clone()),
            Backend::Kubernetes(k) => StateLocation::Kubernetes(k.location.clone()),
        }
    }

    /// Records one change and waits until it is durable.
    pub fn record(&mut self, op: JournalOp) -> Result<(), StateError> {
        self.submit(op)?.wait_blocking()
    }

    /// Records one change: applies it, and starts making it durable (a local state at the
    /// cost of one appended line, done on return; a Kubernetes state as a journal Secret,
    /// grouped with the changes that come while a write is in flight: `wait` for it). The
    /// first change of a run writes the whole state instead (so it holds the lineage and
    /// everything the run set up before its first object).
    pub fn submit(&mut self, op: JournalOp) -> Result<Durable, StateError> {
        op.clone().apply_to(&mut self.state);
        if let Backend::Kubernetes(k) = &mut self.backend {
            if !k.snapshotted {
                k.snapshotted = true;
                return Ok(k.store.snapshot(&self.state));
            }
            k.journaled = true;
            return Ok(k.store.op(op));
        }
        let Backend::Local(local) = &mut self.backend else {
            return Ok(Durable::done());
        };
        let jpath = journal_path(&local.path);
        let werr = |source: std::io::Error| StateError::Write {
            path: jpath.display().to_string(),
            source,
        };
        let Some(journal) = &mut local.journal else {
            self.persist()?;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&jpath)
                .map_err(werr)?;
            let group = GroupSync::new(&file, jpath.clone()).map_err(werr)?;
            if let Backend::Local(local) = &mut self.backend {
                local.journal = Some(file);
                local.group = Some(group);
            }
            return Ok(Durable::done());
        };
        use std::io::Write;
        let line = journal_line(&op).map_err(|e| werr(std::io::Error::other(e)))?;
        journal.write_all(line.as_bytes()).map_err(werr)?;
        match &local.group {
            Some(group) => Ok(Durable::local(group.clone(), group.written())),
            None => {
                journal.sync_data().map_err(werr)?;
                Ok(Durable::done())
            }
        }
    }

    /// Folds the journal into the state (end of a run): one whole write.
    pub fn fold(&mut self) -> Result<(), StateError> {
        let journaled = match &mut self.backend {
            Backend::Local(l) => l.journal.take().is_some(),
            Backend::Kubernetes(k) => std::mem::take(&mut k.journaled),
        };
        if journaled {
            self.persist()?;
        }
        Ok(())
    }

    /// Writes the whole state with its serial up by one. A local state keeps the file
    /// from before the run as `<path>.backup`, and its journal, now part of the file, goes.
    pub fn persist(&mut self) -> Result<(), StateError> {
        self.write_whole(self.state.serial + 1)
    }

    /// Replaces the state with `state` (`dcm state push`), whose serial is kept unless it
    /// is not above the serial there now.
    pub fn replace(&mut self, state: State) -> Result<(), StateError> {
        let serial = if self.existed {
            state.serial.max(self.state.serial + 1)
        } else {
            state.serial
        };
        self.state = state;
        self.write_whole(serial)
    }

    fn write_whole(&mut self, serial: u64) -> Result<(), StateError> {
        let local = match &mut self.backend {
            Backend::Local(l) => l,
            Backend::Kubernetes(k) => {
                k.snapshotted = true;
                k.journaled = false;
                // The writer puts it at least one above what it wrote before.
                let mut s = self.state.clone();
                s.serial = serial;
                k.store.snapshot(&s).wait_blocking()?;
                self.state.serial = k.store.serial();
                return Ok(());
            }
        };
        let werr = |path: &Path, source: std::io::Error| StateError::Write {
            path: path.display().to_string(),
            source,
        };
        if self.existed && !local.backed_up {
            let backup = backup_path(&local.path);
            let bytes = std::fs::read(&local.path).map_err(|e| werr(&local.path, e))?;
            write_atomically(&backup, &bytes).map_err(|e| werr(&backup, e))?;
        }
        local.backed_up = true;
        self.state.serial = serial;
        let mut text = serde_json::to_string_pretty(&self.state)
            .map_err(|e| werr(&local.path, std::io::Error::other(e)))?;
        text.push('\n');
        write_atomically(&local.path, text.as_bytes()).map_err(|e| werr(&local.path, e))?;
        let jpath = journal_path(&local.path);
        match std::fs::remove_file(&jpath) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(werr(&jpath, e)),
        }
        if let Some(j) = &mut local.journal {
            // A fresh, empty journal for the records that follow (changes still waiting on
            // the old one's fsync are in the whole state just written).
            *j = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&jpath)
                .map_err(|e| werr(&jpath, e))?;
            local.group = Some(GroupSync::new(j, jpath.clone()).map_err(|e| werr(&jpath, e))?);
        }
        Ok(())
    }
}

pub fn backup_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".backup");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_returns_only_once_an_fsync_after_its_line_has_finished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let file = std::fs::File::create(&path).unwrap();
        let group = GroupSync::new(&file, path).unwrap();
        // Eight writers at once: each returns with its own line covered, whoever ran the
        // fsync that covered it.
        let seqs: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let group = group.clone();
                    s.spawn(move || {
                        let seq = group.written();
                        group.sync_through(seq).unwrap();
                        assert!(group.lock().synced >= seq);
                        seq
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(seqs.iter().max(), Some(&8));
        // Covered already: no wait.
        group.sync_through(3).unwrap();
        assert_eq!(group.lock().synced, 8);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_waiters_return_only_once_an_fsync_after_their_line_has_finished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let file = std::fs::File::create(&path).unwrap();
        let group = GroupSync::new(&file, path).unwrap();
        // Many more waiters than runtime threads, some of them blocking ones: none waits
        // for ever, each returns with its own line covered.
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..64 {
            let group = group.clone();
            if i % 8 == 0 {
                tasks.spawn_blocking(move || {
                    let seq = group.written();
                    group.sync_through(seq).unwrap();
                    assert!(group.lock().synced >= seq);
                });
            } else {
                tasks.spawn(async move {
                    let seq = group.written();
                    group.clone().sync_through_async(seq).await.unwrap();
                    assert!(group.lock().synced >= seq);
                });
            }
        }
        let all = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while let Some(joined) = tasks.join_next().await {
                joined.unwrap();
            }
        });
        all.await.expect("every waiter returns");
        assert_eq!(group.lock().synced, 64);
        assert!(!group.lock().syncing);
    }

    fn entry(name: &str) -> StateEntry {
        StateEntry {
            address: format!("c1/core/ConfigMap/default/{name}"),
            cluster: "c1".into(),
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: "default".into(),
            name: name.into(),
            sha256: "0".repeat(64),
            origin: Origin::Created,
            pending: false,
            depends_on: vec![],
            allocated: BTreeMap::new(),
            uid: None,
        }
    }

    #[test]
    fn persist_bumps_serial_keeps_lineage_and_backs_up_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s/dcm.state.json");
        let mut s = StateStore::open(&path, "test").unwrap();
        s.state.upsert(entry("b"));
        s.state.upsert(entry("a"));
        s.persist().unwrap();
        let lineage = s.state.lineage.clone();
        drop(s);
        assert!(
            !backup_path(&path).exists(),
            "nothing to back up on the first run"
        );
        let first = std::fs::read_to_string(&path).unwrap();

        let mut s = StateStore::open(&path, "test").unwrap();
        assert_eq!(
            s.state.objects.iter().next().map(|e| e.name.as_str()),
            Some("a"),
            "entries are sorted"
        );
        s.state.remove("c1/core/ConfigMap/default/a");
        s.persist().unwrap();
        s.state.remove("c1/core/ConfigMap/default/b");
        s.persist().unwrap();
        drop(s);
        let now = read(&path).unwrap().unwrap();
        assert_eq!(
            (now.serial, now.lineage.as_str(), now.objects.len()),
            (3, lineage.as_str(), 0)
        );
        assert_eq!(
            std::fs::read_to_string(backup_path(&path)).unwrap(),
            first,
            "backup is the state before the run"
        );
    }

    #[test]
    fn entries_that_would_name_a_path_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dcm.state.json");
        let mut bad = entry("x");
        bad.kind = "..".into();
        bad.address = bad.id().address();
        let state = State {
            objects: vec![bad].into(),
            ..State::new()
        };
        std::fs::write(&path, serde_json::to_string(&state).unwrap()).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("is not a valid object"), "{err}");
    }

    /// One entry of a state file, as JSON.
    fn entry_json(cluster: &str, name: &str) -> String {
        format!(
            r#"{{"address": "{cluster}/core/ConfigMap/default/{name}", "cluster": "{cluster}", "apiVersion": "v1", "kind": "ConfigMap", "namespace": "default", "name": "{name}", "sha256": "s", "origin": "created"}}"#
        )
    }

    fn state_json(entries: &[String]) -> String {
        format!(
            r#"{{"version": 1, "lineage": "l", "serial": 1, "objects": [{}]}}"#,
            entries.join(", ")
        )
    }

    #[test]
    fn a_file_edited_out_of_order_loads_sorted_and_is_written_in_order() {
        let text = state_json(&[
            entry_json("a-b", "x"),
            entry_json("a", "y"),
            entry_json("b", "x"),
            entry_json("a", "x"),
        ]);
        let state = parse_state(&text).unwrap();
        let addresses: Vec<&str> = state.objects.iter().map(|e| e.address.as_str()).collect();
        assert_eq!(
            addresses,
            [
                "a/core/ConfigMap/default/x",
                "a/core/ConfigMap/default/y",
                "a-b/core/ConfigMap/default/x",
                "b/core/ConfigMap/default/x",
            ]
        );
        let written = serde_json::to_string(&state).unwrap();
        let sorted = state_json(&[
            entry_json("a", "x"),
            entry_json("a", "y"),
            entry_json("a-b", "x"),
            entry_json("b", "x"),
        ]);
        let want = serde_json::to_string(&parse_state(&sorted).unwrap()).unwrap();
        assert_eq!(written, want);
        assert!(
            written.contains(r#""objects":[{"address":"a/core/ConfigMap/default/x","cluster":"a","apiVersion":"v1","kind":"ConfigMap","namespace":"default","name":"x","sha256":"s","origin":"created"},{"address":"a/core/ConfigMap/default/y""#),
            "{written}"
        );
        // Lookups work on what was loaded out of order.
        for e in &state.objects {
            assert_eq!(state.get_address(&e.address), Some(e));
            assert_eq!(state.get(&e.id()), Some(e));
        }
    }

    #[test]
    fn an_object_listed_twice_or_under_another_address_is_corrupt() {
        let twice = state_json(&[
            entry_json("a", "x"),
            entry_json("b", "x"),
            entry_json("a", "x"),
        ]);
        assert_eq!(
            parse_state(&twice),
            Err(Problem::Corrupt("an object is listed twice".into()))
        );
        // The same object under a wrong address: its fields decide.
        let wrong = entry_json("a", "x").replace(
            r#""address": "a/core/ConfigMap/default/x""#,
            r#""address": "a/core/ConfigMap/default/z""#,
        );
        let err = parse_state(&state_json(&[entry_json("a", "x"), wrong])).unwrap_err();
        assert_eq!(
            err,
            Problem::Corrupt(
                "entry `a/core/ConfigMap/default/z` does not match its own fields".into()
            )
        );
        // Fields serde refuses are named as before.
        let err = parse_state(
            r#"{"version": 1, "lineage": "l", "serial": 1, "objects": [], "extra": 1}"#,
        )
        .unwrap_err();
        assert_eq!(
            err,
            Problem::Corrupt("unknown field `extra`, expected one of `version`, `lineage`, `serial`, `secrets_hmac_key`, `clusters`, `objects`".into())
        );
        let err = parse_state(r#"{"version": 1, "serial": 1, "objects": []}"#).unwrap_err();
        assert_eq!(err, Problem::Corrupt("missing field `lineage`".into()));
    }

    #[test]
    fn corrupt_and_newer_files_are_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dcm.state.json");
        std::fs::write(&path, "{ not json").unwrap();
        let err = StateStore::open(&path, "test").err().unwrap().to_string();
        assert!(
            err.contains("is corrupt") && err.contains("left unchanged"),
            "{err}"
        );
        std::fs::write(
            &path,
            r#"{"version": 99, "lineage": "x", "serial": 1, "objects": []}"#,
        )
        .unwrap();
        let err = StateStore::open(&path, "test").err().unwrap().to_string();
        assert!(err.contains("format version 99"), "{err}");
        assert!(std::fs::read_to_string(&path).unwrap().contains("99"));
    }

    #[test]
    fn a_run_costs_one_journal_line_per_object_and_folds_into_the_file_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let mut store = StateStore::open(&path, "test").unwrap();
        store
            .record(JournalOp::Upsert(Box::new(entry("a"))))
            .unwrap();
        let after_first = std::fs::read(&path).unwrap();
        for name in ["b", "c"] {
            store
                .record(JournalOp::Upsert(Box::new(entry(name))))
                .unwrap();
        }
        store
            .record(JournalOp::Remove("c1/core/ConfigMap/default/a".into()))
            .unwrap();
        // The file was written once; the rest is in the journal, and reads see it.
        assert_eq!(std::fs::read(&path).unwrap(), after_first);
        let journal = std::fs::read_to_string(journal_path(&path)).unwrap();
        assert_eq!(journal.lines().count(), 3);
        let seen = read(&path).unwrap().unwrap();
        let names: Vec<&str> = seen.objects.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["b", "c"]);
        store.fold().unwrap();
        assert!(!journal_path(&path).exists());
        assert_eq!(read_file(&path).unwrap().unwrap().objects, seen.objects);
    }

    #[test]
    fn a_killed_run_s_journal_is_folded_by_the_next_run_and_a_torn_line_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        {
            let mut store = StateStore::open(&path, "test").unwrap();
            for name in ["a", "b", "c"] {
                store
                    .record(JournalOp::Upsert(Box::new(entry(name))))
                    .unwrap();
            }
            // Killed here: no fold. Then a half-written line.
        }
        use std::io::Write;
        let mut j = std::fs::OpenOptions::new()
            .append(true)
            .open(journal_path(&path))
            .unwrap();
        let torn = journal_line(&JournalOp::Upsert(Box::new(entry("d")))).unwrap();
        j.write_all(&torn.as_bytes()[..torn.len() / 2]).unwrap();
        drop(j);
        let store = StateStore::open(&path, "test").unwrap();
        let names: Vec<&str> = store
            .state
            .objects
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(!journal_path(&path).exists(), "folded on open");
        assert_eq!(read_file(&path).unwrap().unwrap().objects.len(), 3);
        // A line whose checksum does not match is torn too.
        drop(store);
        let line = journal_line(&JournalOp::Remove("c1/core/ConfigMap/default/a".into())).unwrap();
        std::fs::write(
            journal_path(&path),
            line.replacen('0', "1", 1).replacen('a', "b", 1),
        )
        .unwrap();
        assert_eq!(read(&path).unwrap().unwrap().objects.len(), 3);
    }

    #[test]
    fn versions_and_serials_out_of_range_are_named_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dcm.state.json");
        let check = |version: &str, serial: &str, want: &str| {
            std::fs::write(
                &path,
                format!(
                    r#"{{"version": {version}, "lineage": "x", "serial": {serial}, "objects": []}}"#
                ),
            )
            .unwrap();
            let err = read(&path).unwrap_err().to_string();
            assert!(err.contains(want), "{version}/{serial}: {err}");
        };
        check("1099511627776", "1", "format version 1099511627776,");
        check("0", "1", "`version` 0 is not a state format");
        check("-1", "1", "`version` must be a positive integer");
        check("1.5", "1", "`version` must be a positive integer");
        check(
            "1",
            "18446744073709551615",
            "`serial` 18446744073709551615 is out of range",
        );
        check("1", "9223372036854775808", "out of range");
        check("1", "-1", "`serial` must be an integer");
    }
}
