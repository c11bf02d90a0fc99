//! Apply: carries out a plan's changes in dependency order.
//!
//! Changes whose prerequisites are done run concurrently, at most `parallelism` at a time;
//! among ready changes the smaller address starts first. When a change fails, everything
//! that waits on it (transitively) is skipped, independent work still finishes, and the
//! report says what was done and what was not. The state is written after every object,
//! so a run killed at any moment can be re-run and converges. An [`Interrupt`] stops new
//! work the same way, and lets the work in flight finish.

use crate::compile::{Desired, ReadyState};
use crate::graph::Graph;
use crate::interrupt::Interrupt;
use crate::object::ObjRef;
use crate::plan::{Action, Change, Plan};
use crate::state::{StateEntry, StateStore};
use crate::target::Targets;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::{Arc, Mutex};

/// What happened to each change.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    pub done: Vec<(String, Action)>,
    pub failed: Vec<(String, String)>,
    /// Not attempted because something they wait on failed.
    pub skipped: Vec<String>,
    /// Not started because the run was interrupted.
    pub not_started: Vec<String>,
    /// Whether the run was interrupted.
    pub interrupted: bool,
}

impl ApplyReport {
    pub fn ok(&self) -> bool {
        // An interruption that came when nothing was left to start took nothing away.
        self.failed.is_empty() && self.skipped.is_empty() && self.not_started.is_empty()
    }

    pub fn count(&self, action: Action) -> usize {
        self.done.iter().filter(|(_, a)| *a == action).count()
    }
}

/// One finished change, for progress output.
pub struct Progress<'a> {
    pub address: &'a str,
    pub action: Action,
    pub result: Result<(), &'a str>,
}

/// What each change needs to run, resolved before the walk starts.
struct Job {
    change: Change,
    /// The object to write (creates, updates, records).
    object: Option<crate::compile::DesiredObject>,
    /// Addresses the object depends on, recorded in the state for delete order.
    depends_on: Vec<String>,
}

/// How far an apply may go at once, and how long it waits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Changes in flight at once, over all clusters (`--parallelism`).
    pub parallelism: usize,
    /// Changes in flight at once in one cluster (`--cluster-parallelism`).
    pub per_cluster: usize,
    /// How long to wait for values only a cluster knows.
    pub wait: std::time::Duration,
    /// Take fields other field managers own (`--force-conflicts`).
    pub force_conflicts: bool,
}

/// Runs `plan`. `desired` and `graph` are those the plan was built from. Once
/// `interrupt` is raised, nothing new starts; what is in flight finishes.
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    plan: &Plan,
    desired: &Desired,
    graph: &Graph,
    targets: &Targets,
    store: Arc<Mutex<StateStore>>,
    limits: Limits,
    interrupt: &Interrupt,
    mut progress: impl FnMut(Progress<'_>),
) -> ApplyReport {
    let Limits {
        parallelism,
        per_cluster,
        wait,
        force_conflicts,
    } = limits;
    let n = plan.changes.len();
    let index: BTreeMap<&str, usize> = plan
        .changes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.address.as_str(), i))
        .collect();
    let desired_index: BTreeMap<&ObjRef, usize> = desired
        .objects
        .iter()
        .enumerate()
        .map(|(i, o)| (&o.id, i))
        .collect();
    // Made as each change starts (and dropped when it finishes), so that a destroy of
    // 100k objects does not hold a copy of every change at once.
    let job_of = |c: &Change| {
        let id = c.id();
        let di = id.as_ref().and_then(|id| desired_index.get(id).copied());
        let revert = id
            .as_ref()
            .and_then(|id| desired.reverts.iter().find(|r| &r.id == id));
        Job {
            change: c.clone(),
            // An edit being taken back writes its revert, never the desired object
            // with the same address (which destroy leaves in `desired`).
            object: if c.forget_after {
                revert.cloned()
            } else {
                di.map(|i| desired.objects[i].clone())
            },
            depends_on: di
                .map(|i| {
                    graph.deps[i]
                        .iter()
                        .map(|&j| desired.objects[j].id.address())
                        .collect()
                })
                .unwrap_or_default(),
        }
    };
    let mut started = vec![false; n];

    let mut waiting_on: Vec<usize> = vec![0; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, c) in plan.changes.iter().enumerate() {
        for a in &c.depends_on {
            if let Some(&j) = index.get(a.as_ref()) {
                waiting_on[i] += 1;
                dependents[j].push(i);
            }
        }
    }
    let cluster_of = |i: usize| {
        let a = &plan.changes[i].address;
        a.split('/').next().unwrap_or(a).to_string()
    };
    let mut ready = Ready {
        chain: chain_lengths(&waiting_on, &dependents),
        ..Ready::default()
    };
    for i in (0..n).filter(|&i| waiting_on[i] == 0) {
        ready.push(cluster_of(i), plan.changes[i].address.clone(), i);
    }

    let mut report = ApplyReport::default();
    let mut finished = vec![false; n];
    let mut tasks = tokio::task::JoinSet::new();
    let mut stop = false;
    // The limits bound the work in the clusters (writes, deletes, waits). A change also
    // records itself in the state before and after; up to as many again are started, so
    // that the next ones record their intent while the others talk to their clusters, and
    // a change that waits for its record to be durable holds no cluster's turn.
    let slots = Arc::new(Slots::new(
        parallelism,
        per_cluster,
        (0..n).map(&cluster_of),
    ));
    let (parallelism, per_cluster) = (PIPELINE * parallelism.max(1), PIPELINE * per_cluster.max(1));
    loop {
        while !stop && !interrupt.raised() && tasks.len() < parallelism {
            let Some(i) = ready.next(per_cluster) else {
                break;
            };
            if std::mem::replace(&mut started[i], true) {
                ready.finished(&cluster_of(i));
                continue;
            }
            let job = job_of(&plan.changes[i]);
            let targets = targets.clone();
            let store = store.clone();
            let slots = slots.clone();
            tasks.spawn(async move {
                let r = run(&job, &targets, &store, &slots, wait, force_conflicts).await;
                (i, r)
            });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let (i, result) = match joined {
            Ok(x) => x,
            Err(e) => {
                // A task that panicked: we do not know which; stop starting new work.
                stop = true;
                report
                    .failed
                    .push(("(unknown)".into(), format!("internal error: {e}")));
                continue;
            }
        };
        finished[i] = true;
        ready.finished(&cluster_of(i));
        let c = &plan.changes[i];
        match result {
            Ok(()) => {
                progress(Progress {
                    address: &c.address,
                    action: c.action,
                    result: Ok(()),
                });
                report.done.push((c.address.clone(), c.action));
                for &d in &dependents[i] {
                    waiting_on[d] -= 1;
                    if waiting_on[d] == 0 {
                        ready.push(cluster_of(d), plan.changes[d].address.clone(), d);
                    }
                }
            }
            Err(RunError { message, fatal }) => {
                progress(Progress {
                    address: &c.address,
                    action: c.action,
                    result: Err(&message),
                });
                report.failed.push((c.address.clone(), message));
                stop |= fatal;
            }
        }
    }
    report.interrupted = interrupt.raised();
    for (i, f) in finished.iter().enumerate() {
        if *f {
            continue;
        }
        let address = plan.changes[i].address.clone();
        // Ready, or waiting only on changes that were done or not started: the
        // interruption, not a failure, is why it did not run.
        if report.interrupted && !waits_on_a_failure(i, plan, &index, &report) {
            report.not_started.push(address);
        } else {
            report.skipped.push(address);
        }
    }
    report.done.sort();
    report.failed.sort();
    report
}

/// How many changes may be started for each one the limits let work in the clusters at
/// once (see [`Slots`]).
const PIPELINE: usize = 2;

/// The turns to work in the clusters: at most `parallelism` changes at once over all
/// clusters, and `per_cluster` in one (`--parallelism`, `--cluster-parallelism`). A change
/// holds a turn while it writes, deletes or waits for a cluster, not while it records
/// itself in the state.
struct Slots {
    all: Arc<tokio::sync::Semaphore>,
    by_cluster: BTreeMap<String, Arc<tokio::sync::Semaphore>>,
}

/// A change's turn to work in its cluster, given back when dropped.
struct Turn {
    _cluster: Option<tokio::sync::OwnedSemaphorePermit>,
    _all: tokio::sync::OwnedSemaphorePermit,
}

impl Slots {
    fn new(
        parallelism: usize,
        per_cluster: usize,
        clusters: impl Iterator<Item = String>,
    ) -> Slots {
        let per_cluster = per_cluster.max(1);
        Slots {
            all: Arc::new(tokio::sync::Semaphore::new(parallelism.max(1))),
            by_cluster: clusters
                .map(|c| (c, Arc::new(tokio::sync::Semaphore::new(per_cluster))))
                .collect(),
        }
    }

    /// Waits for a turn in `cluster` (its own limit first, then the global one, always in
    /// that order, so that no two changes wait on each other).
    async fn turn(&self, cluster: &str) -> Result<Turn, RunError> {
        let closed = |_| fail("internal error: the apply's limits were closed");
        let cluster = match self.by_cluster.get(cluster) {
            Some(s) => Some(s.clone().acquire_owned().await.map_err(closed)?),
            None => None,
        };
        let all = self.all.clone().acquire_owned().await.map_err(closed)?;
        Ok(Turn {
            _cluster: cluster,
            _all: all,
        })
    }
}

/// Ready changes by (chain length, address, index): the longest chain on top, then the
/// smallest address.
type ReadyHeap = BinaryHeap<(usize, Reverse<(String, usize)>)>;

/// The changes ready to start, by cluster. Clusters take turns, each with at most a
/// per-cluster number of changes in flight, so a large cluster early in address order
/// does not hold the others back. Within a cluster the change with the longest chain of
/// changes waiting on it starts first (an Istio control plane before the plain objects,
/// so that its readiness wait overlaps their writes and its routes do not wait at the
/// end), then the smaller address.
#[derive(Default)]
struct Ready {
    /// cluster → (its ready changes; how many it has in flight)
    by_cluster: BTreeMap<String, (ReadyHeap, usize)>,
    /// The cluster after which the next turn starts.
    last: Option<String>,
    /// Each change's chain length (see [`chain_lengths`]); 0 for a change not in it.
    chain: Vec<usize>,
}

/// For each change, how many changes the longest chain that starts at it has (1 when
/// nothing waits on it), given how many changes each waits on and its dependents.
fn chain_lengths(waiting_on: &[usize], dependents: &[Vec<usize>]) -> Vec<usize> {
    // A topological order (Kahn), then the lengths from the last change back.
    let mut left = waiting_on.to_vec();
    let mut order: Vec<usize> = (0..left.len()).filter(|&i| left[i] == 0).collect();
    let mut next = 0;
    while let Some(&i) = order.get(next) {
        next += 1;
        for &d in &dependents[i] {
            left[d] -= 1;
            if left[d] == 0 {
                order.push(d);
            }
        }
    }
    let mut chain = vec![1; left.len()];
    for &i in order.iter().rev() {
        chain[i] = 1 + dependents[i].iter().map(|&d| chain[d]).max().unwrap_or(0);
    }
    chain
}

impl Ready {
    fn push(&mut self, cluster: String, address: String, i: usize) {
        let chain = self.chain.get(i).copied().unwrap_or(0);
        self.by_cluster
            .entry(cluster)
            .or_default()
            .0
            .push((chain, Reverse((address, i))));
    }

    /// The next change to start: from the first cluster after the last one served that
    /// has one ready and fewer than `per_cluster` in flight.
    fn next(&mut self, per_cluster: usize) -> Option<usize> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        // The clusters after the last one served, then from the first up to it.
        let (later, earlier) = match &self.last {
            Some(l) => (
                (Excluded(l.as_str()), Unbounded),
                (Unbounded, Included(l.as_str())),
            ),
            None => ((Unbounded, Unbounded), (Unbounded, Excluded(""))),
        };
        let turn = self
            .by_cluster
            .range::<str, _>(later)
            .chain(self.by_cluster.range::<str, _>(earlier))
            .find(|(_, (heap, in_flight))| *in_flight < per_cluster && !heap.is_empty())
            .map(|(cluster, _)| cluster.clone())?;
        let (heap, in_flight) = self.by_cluster.get_mut(&turn)?;
        let (_, Reverse((_, i))) = heap.pop()?;
        *in_flight += 1;
        self.last = Some(turn);
        Some(i)
    }

    /// A change of `cluster` that `next` gave out has finished.
    fn finished(&mut self, cluster: &str) {
        if let Some((_, in_flight)) = self.by_cluster.get_mut(cluster) {
            *in_flight = in_flight.saturating_sub(1);
        }
    }
}

/// Whether change `i` waits (transitively) on a change that failed.
fn waits_on_a_failure(
    i: usize,
    plan: &Plan,
    index: &BTreeMap<&str, usize>,
    report: &ApplyReport,
) -> bool {
    let failed: std::collections::BTreeSet<&str> =
        report.failed.iter().map(|(a, _)| a.as_str()).collect();
    let mut seen = std::collections::BTreeSet::new();
    let mut todo = vec![i];
    while let Some(j) = todo.pop() {
        if !seen.insert(j) {
            continue;
        }
        for a in &plan.changes[j].depends_on {
            if failed.contains(a.as_ref()) {
                return true;
            }
            if let Some(&k) = index.get(a.as_ref()) {
                todo.push(k);
            }
        }
    }
    false
}

struct RunError {
    message: String,
    /// The state could not be written: starting more work would lose track of it.
    fatal: bool,
}

fn fail(message: impl ToString) -> RunError {
    RunError {
        message: message.to_string(),
        fatal: false,
    }
}

/// Updates the state and waits until the change is durable. The store is not held while
/// waiting, so changes that finish meanwhile can be written together.
async fn save(store: &Mutex<StateStore>, op: crate::state::JournalOp) -> Result<(), RunError> {
    let fatal = |message: String| RunError {
        message,
        fatal: true,
    };
    let durable = {
        let mut s = store
            .lock()
            .map_err(|_| fatal("the state lock was poisoned by a failed task".into()))?;
        s.submit(op).map_err(|e| fatal(e.to_string()))?
    };
    durable.wait().await.map_err(|e| fatal(e.to_string()))
}

/// How often a wait looks again: first after [`FIRST_POLL`], then half as long again each
/// time, up to this. What a controller does in a moment is seen soon after, and what
/// takes long costs no more requests than a steady poll at this interval.
const POLL: std::time::Duration = std::time::Duration::from_millis(200);
const FIRST_POLL: std::time::Duration = std::time::Duration::from_millis(50);
/// A wait says what it waits for once it has taken this long…
const FIRST_NOTICE: std::time::Duration = std::time::Duration::from_secs(2);
/// …and again this often after that.
const NOTICE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Tells the user on stderr (stdout stays the report) what a wait that takes long waits
/// for: after [`FIRST_NOTICE`], then every [`NOTICE_EVERY`].
struct Patience {
    started: tokio::time::Instant,
    deadline: tokio::time::Instant,
    total: std::time::Duration,
    next: std::time::Duration,
    /// How long the next sleep between looks is.
    poll: std::time::Duration,
}

impl Patience {
    fn new(total: std::time::Duration) -> Patience {
        let started = tokio::time::Instant::now();
        Patience {
            started,
            deadline: started + total,
            total,
            next: FIRST_NOTICE,
            poll: FIRST_POLL,
        }
    }

    /// Sleeps until the next look.
    async fn sleep(&mut self) {
        tokio::time::sleep(self.poll).await;
        self.poll = (self.poll + self.poll / 2).min(POLL);
    }

    fn expired(&self) -> bool {
        tokio::time::Instant::now() >= self.deadline
    }

    /// Prints `waiting for <what> (<elapsed> of <total>)…` when one is due.
    fn notice(&mut self, what: impl FnOnce() -> String) {
        let elapsed = self.started.elapsed();
        if elapsed < self.next || self.expired() {
            return;
        }
        while self.next <= elapsed {
            self.next += NOTICE_EVERY;
        }
        crate::errln!(
            "waiting for {} ({} of {})…",
            what(),
            humantime::format_duration(std::time::Duration::from_secs(elapsed.as_secs())),
            humantime::format_duration(self.total)
        );
    }

    /// `gave up after <total> waiting for …`
    fn gave_up(&self, what: impl std::fmt::Display) -> RunError {
        fail(format!(
            "gave up after {} waiting for {what}",
            humantime::format_duration(self.total)
        ))
    }
}

/// Waits (up to `wait`) for the values only a cluster knows (in any cluster), and fills
/// them in. Gives up naming what it waited for.
async fn fill_in_known_after_apply(
    d: &mut crate::compile::DesiredObject,
    targets: &Targets,
    wait: std::time::Duration,
) -> Result<(), RunError> {
    use crate::compile::ValueSource;
    let mut patience = Patience::new(wait);
    while let Some(k) = d.known_after_apply.first().cloned() {
        let value = match &k.source {
            ValueSource::ApiServer { cluster } => Some(targets.api_server(cluster).ok_or_else(|| {
                fail(format!(
                    "the kubeconfig context of cluster `{cluster}` names no API server; set `api_server` in [clusters.{cluster}]"
                ))
            })?),
            ValueSource::Object {
                id,
                api_version,
                value,
            } => {
                let target = targets.get(&id.cluster).map_err(fail)?;
                let item = crate::target::ReadItem {
                    id: id.clone(),
                    api_version: api_version.clone(),
                    desired: None,
                    whole: true,
                    owned: true,
                };
                let live = target.read(&[item]).await.map_err(fail)?;
                live.get(id).and_then(|o| value.extract(o))
            }
        };
        if let Some(v) = value {
            d.fill_in(&k.placeholder, &v);
            continue;
        }
        let name = k
            .placeholder
            .trim_start_matches("(known after apply: ")
            .trim_end_matches(')');
        if patience.expired() {
            return Err(patience.gave_up(format_args!("{name}: {}", k.describe())));
        }
        patience.notice(|| match &k.source {
            ValueSource::Object { id, value, .. } => format!(
                "{} to have {}, for {}",
                id.address(),
                value.path(),
                d.id.address()
            ),
            ValueSource::ApiServer { .. } => format!("{name}, for {}", d.id.address()),
        });
        patience.sleep().await;
    }
    Ok(())
}

/// Waits (up to `wait`) until the cluster reports `d` ready, where a controller acts on it.
async fn wait_until_ready(
    d: &crate::compile::DesiredObject,
    target: &dyn crate::target::Target,
    wait: std::time::Duration,
) -> Result<(), RunError> {
    let Some(rule) = &d.ready_when else {
        return Ok(());
    };
    if !target.has_controllers() {
        return Ok(());
    }
    let mut patience = Patience::new(wait);
    let item = crate::target::ReadItem {
        id: d.id.clone(),
        api_version: d.api_version.clone(),
        desired: None,
        whole: true,
        owned: true,
    };
    loop {
        let live = target
            .read(std::slice::from_ref(&item))
            .await
            .map_err(fail)?;
        let detail = match live.get(&d.id).map(|o| rule.state(o)) {
            Some(ReadyState::Ready) => return Ok(()),
            Some(ReadyState::Failed(why)) => {
                return Err(fail(format!(
                    "{} will never be {}: {why}",
                    d.id.address(),
                    rule.describe()
                )))
            }
            Some(ReadyState::Waiting(detail)) => detail,
            None => "it is not there".to_string(),
        };
        let what = || {
            let mut w = format!("{} to be {}", d.id.address(), rule.describe());
            if !detail.is_empty() {
                w = format!("{w}: {detail}");
            }
            w
        };
        if patience.expired() {
            return Err(patience.gave_up(what()));
        }
        patience.notice(what);
        patience.sleep().await;
    }
}

/// Waits (up to `wait`) until a deleted object is gone, where a controller finishes the
/// deletion (finalizers; a namespace stays Terminating until its content is deleted), so
/// that what it depended on is deleted only after it.
async fn wait_until_gone(
    id: &ObjRef,
    api_version: &str,
    target: &dyn crate::target::Target,
    wait: std::time::Duration,
) -> Result<(), RunError> {
    if !target.has_controllers() {
        return Ok(());
    }
    let mut patience = Patience::new(wait);
    let item = crate::target::ReadItem {
        id: id.clone(),
        api_version: api_version.to_string(),
        desired: None,
        whole: true,
        owned: true,
    };
    loop {
        let live = target
            .read(std::slice::from_ref(&item))
            .await
            .map_err(fail)?;
        let Some(object) = live.get(id) else {
            return Ok(());
        };
        let phase = object
            .pointer("/status/phase")
            .and_then(serde_json::Value::as_str)
            .map(|p| format!(" (still {p})"))
            .unwrap_or_default();
        let what = || format!("{} to be deleted{phase}", id.address());
        if patience.expired() {
            return Err(patience.gave_up(what()));
        }
        patience.notice(what);
        patience.sleep().await;
    }
}

async fn run(
    job: &Job,
    targets: &Targets,
    store: &Mutex<StateStore>,
    slots: &Slots,
    wait: std::time::Duration,
    force_conflicts: bool,
) -> Result<(), RunError> {
    let c = &job.change;
    let id = c
        .id()
        .ok_or_else(|| fail(format!("`{}` is not an object address", c.address)))?;
    let target = targets.get(&id.cluster).map_err(fail)?.clone();
    match c.action {
        Action::Create | Action::Update | Action::NoOp => {
            let mut d = job
                .object
                .clone()
                .ok_or_else(|| fail("the file no longer declares this object"))?;
            // The turn is taken for the first request to a cluster and held until the
            // last: a wait for a value known after apply holds it across the record of
            // the intent (rare), a plain write does not.
            let mut turn = None;
            if !d.known_after_apply.is_empty() {
                turn = Some(slots.turn(&id.cluster).await?);
                fill_in_known_after_apply(&mut d, targets, wait).await?;
            }
            let d = &d;
            let (oid, api_version) = (&d.id, &d.api_version);
            let (existing, lineage, key) = store
                .lock()
                .map(|s| {
                    (
                        s.state.get(oid).cloned(),
                        s.state.lineage.clone(),
                        s.state.secrets_hmac_key.bytes(),
                    )
                })
                .map_err(|_| fail("the state is unavailable"))?;
            let origin = c.origin.unwrap_or(crate::state::Origin::Created);
            // What dcm creates or imports carries its marks; what it only edits does not.
            let mut object = serde_json::Value::clone(&d.object);
            if origin != crate::state::Origin::Edited && !c.forget_after {
                let imported = origin == crate::state::Origin::Adopted;
                crate::ownership::stamp_as(&mut object, &lineage, &c.address, imported);
            }
            let mut entry = StateEntry {
                address: c.address.clone(),
                cluster: oid.cluster.clone(),
                api_version: api_version.clone(),
                kind: oid.kind.clone(),
                namespace: oid.namespace.clone(),
                name: oid.name.clone(),
                sha256: crate::keyed::for_state(oid, crate::plan::recorded_sha(d), key.as_deref()),
                origin,
                pending: false,
                depends_on: job.depends_on.clone(),
                allocated: d.allocated.clone(),
                uid: existing.as_ref().and_then(|e| e.uid.clone()),
            };
            if c.action != Action::NoOp {
                if existing.is_none() && !c.forget_after {
                    // Record the intent first: if the run dies after the write, the next
                    // plan knows this object is dcm's.
                    let pending = StateEntry {
                        pending: true,
                        ..entry.clone()
                    };
                    save(store, crate::state::JournalOp::Upsert(Box::new(pending))).await?;
                }
                // An edit of another's object (CoreDNS's Corefile) rewrites a field its
                // owner manages: that is what the user asked for by configuring it.
                let force = force_conflicts || d.edit.is_some();
                if turn.is_none() {
                    turn = Some(slots.turn(&id.cluster).await?);
                }
                let uid = target.apply(oid, &object, force).await.map_err(fail)?;
                if uid.is_some() {
                    entry.uid = uid;
                }
            }
            // A directory's file: what dcm wrote, so a delete can tell it was not edited.
            entry.allocated.remove(crate::target::dir::FILE_SHA_KEY);
            if let Some(sha) = target.written_sha256(oid).map_err(fail)? {
                entry
                    .allocated
                    .insert(crate::target::dir::FILE_SHA_KEY.to_string(), sha);
            }
            // What depends on it starts only once it is up (a NoOp included: a re-run
            // after a timeout waits again).
            if d.ready_when.is_some() && target.has_controllers() && turn.is_none() {
                turn = Some(slots.turn(&id.cluster).await?);
            }
            wait_until_ready(d, target.as_ref(), wait).await?;
            drop(turn);
            if c.forget_after {
                return save(store, crate::state::JournalOp::Remove(c.address.clone())).await;
            }
            save(store, crate::state::JournalOp::Upsert(Box::new(entry))).await
        }
        Action::Delete => {
            let (api_version, written) = store
                .lock()
                .ok()
                .and_then(|s| {
                    s.state.get(&id).map(|e| {
                        (
                            e.api_version.clone(),
                            e.allocated.get(crate::target::dir::FILE_SHA_KEY).cloned(),
                        )
                    })
                })
                .unzip();
            // A file edited since dcm wrote it is not dcm's to remove (checked again here:
            // the plan's check may be old).
            if let Some(written) = written.flatten() {
                let now = target.written_sha256(&id).map_err(fail)?;
                if now.as_ref().is_some_and(|n| *n != written) {
                    return Err(fail(
                        "its file was edited since dcm wrote it; it was left in place (make a new plan)",
                    ));
                }
            }
            let turn = slots.turn(&id.cluster).await?;
            let deleted = target.delete(&id).await.map_err(fail)?;
            // The server said it is gone: nothing to wait for (no read to make).
            if let (crate::target::Deleted::Pending, Some(api_version)) = (deleted, api_version) {
                wait_until_gone(&id, &api_version, target.as_ref(), wait).await?;
            }
            drop(turn);
            save(store, crate::state::JournalOp::Remove(c.address.clone())).await
        }
        Action::Forget => save(store, crate::state::JournalOp::Remove(c.address.clone())).await,
        Action::Refuse => Err(fail(
            "it exists and is not dcm's to change (import it or take it over first)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{build, PlanInputs};
    use crate::target::{ReadItem, Target, TargetError};
    use async_trait::async_trait;
    use serde_json::Value;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn clusters_take_turns_and_none_goes_over_its_own_limit() {
        let mut ready = Ready::default();
        // c1 has many changes and comes first in address order; c2 and c3 one each.
        for i in 0..5 {
            ready.push("c1".into(), format!("c1/x/{i}"), i);
        }
        ready.push("c2".into(), "c2/x".into(), 10);
        ready.push("c3".into(), "c3/x".into(), 20);
        // Turns: c1, c2, c3, then c1 again up to its limit of 2.
        let started: Vec<usize> = std::iter::from_fn(|| ready.next(2)).collect();
        assert_eq!(started, vec![0, 10, 20, 1]);
        // c1 at its limit until one of its changes finishes.
        assert_eq!(ready.next(2), None);
        ready.finished("c1");
        assert_eq!(ready.next(2), Some(2));
    }

    #[test]
    fn the_change_at_the_head_of_the_longest_chain_starts_first() {
        // 0 → 1 → 2 (a control plane, then its routes, then what needs them) and 3, 4
        // alone: 0 has the longest chain though its address sorts last.
        let waiting_on = vec![0, 1, 1, 0, 0];
        let dependents = vec![vec![1], vec![2], vec![], vec![], vec![]];
        assert_eq!(chain_lengths(&waiting_on, &dependents), vec![3, 2, 1, 1, 1]);
        let mut ready = Ready {
            chain: chain_lengths(&waiting_on, &dependents),
            ..Ready::default()
        };
        ready.push("c".into(), "c/z/istio".into(), 0);
        ready.push("c".into(), "c/a/cm".into(), 3);
        ready.push("c".into(), "c/b/cm".into(), 4);
        let started: Vec<usize> = std::iter::from_fn(|| ready.next(9)).collect();
        assert_eq!(started, vec![0, 3, 4], "then by address");
        // A diamond counts its longest branch, once.
        let waiting_on = vec![0, 1, 1, 2];
        let dependents = vec![vec![1, 2], vec![3], vec![3], vec![]];
        assert_eq!(chain_lengths(&waiting_on, &dependents), vec![3, 2, 2, 1]);
    }

    /// A cluster that records how many writes run at once and fails on chosen names.
    #[derive(Default)]
    struct Fake {
        in_flight: AtomicUsize,
        peak: AtomicUsize,
        fail: Vec<String>,
        written: Mutex<Vec<String>>,
        /// Raised by the first write (a Ctrl-C while it is in flight).
        interrupt: Option<Interrupt>,
    }

    #[async_trait]
    impl Target for Fake {
        async fn read(&self, _: &[ReadItem]) -> Result<BTreeMap<ObjRef, Value>, TargetError> {
            Ok(BTreeMap::new())
        }
        async fn apply(
            &self,
            id: &ObjRef,
            _: &Value,
            _: bool,
        ) -> Result<Option<String>, TargetError> {
            if let Some(i) = &self.interrupt {
                i.raise();
            }
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if self.fail.contains(&id.name) {
                return Err(TargetError::Unreachable {
                    cluster: id.cluster.clone(),
                    message: "injected".into(),
                });
            }
            self.written.lock().unwrap().push(id.name.clone());
            Ok(None)
        }
        async fn delete(&self, _: &ObjRef) -> Result<crate::target::Deleted, TargetError> {
            Ok(crate::target::Deleted::Gone)
        }
    }

    fn loaded(toml: &str) -> (crate::model::Model, Desired, Graph) {
        let src = crate::diag::SourceFile::new("t.toml", toml.to_string());
        let raw = crate::config::parse(src, ".".into()).unwrap();
        let model = crate::model::build(raw).unwrap();
        let desired = crate::compile::compile(&model, &Default::default()).unwrap();
        let graph = crate::graph::build(&desired).unwrap();
        (model, desired, graph)
    }

    fn toml(n: usize) -> String {
        let mut t = String::from("[clusters.c]\ndir = \"unused\"\n[[resources]]\nname = \"ns\"\nclusters = [\"c\"]\nmanifest = { apiVersion = \"v1\", kind = \"Namespace\", metadata = { name = \"app\" } }\n");
        for i in 0..n {
            t.push_str(&format!("[[resources]]\nclusters = [\"c\"]\nmanifest = {{ apiVersion = \"v1\", kind = \"ConfigMap\", metadata = {{ name = \"cm{i}\", namespace = \"app\" }} }}\n"));
        }
        t.push_str("[[resources]]\nclusters = [\"c\"]\ndepends_on = [\"c/core/ConfigMap/app/cm0\"]\nmanifest = { apiVersion = \"v1\", kind = \"ConfigMap\", metadata = { name = \"after-cm0\", namespace = \"default\" } }\n");
        t
    }

    async fn run_with(
        fake: Arc<Fake>,
        n: usize,
        parallelism: usize,
    ) -> (ApplyReport, StateStore, tempfile::TempDir) {
        let (_, desired, graph) = loaded(&toml(n));
        let mut live = BTreeMap::new();
        let plan = build(&mut PlanInputs {
            desired: &desired,
            graph: &graph,
            state: None,
            live: &mut live,
            config: "t.toml".into(),
            destroy: false,
            ownership: Default::default(),
        });
        let mut targets = Targets::default();
        targets.insert("c", fake.clone());
        let dir = tempfile::tempdir().unwrap();
        let interrupt = fake.interrupt.clone().unwrap_or_default();
        let store = Arc::new(Mutex::new(
            StateStore::open(&dir.path().join("s.json"), "test").unwrap(),
        ));
        let report = apply(
            &plan,
            &desired,
            &graph,
            &targets,
            store.clone(),
            Limits {
                parallelism,
                per_cluster: parallelism,
                wait: std::time::Duration::ZERO,
                force_conflicts: false,
            },
            &interrupt,
            |_| {},
        )
        .await;
        let store = Arc::try_unwrap(store).ok().unwrap().into_inner().unwrap();
        (report, store, dir)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrency_is_bounded_and_used() {
        let fake = Arc::new(Fake::default());
        let (report, store, d) = run_with(fake.clone(), 20, 4).await;
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.done.len(), 22);
        let peak = fake.peak.load(Ordering::SeqCst);
        assert!((2..=4).contains(&peak), "peak concurrency {peak}");
        assert_eq!(
            fake.written.lock().unwrap()[0],
            "app",
            "the namespace goes first"
        );
        assert_eq!(store.state.objects.len(), 22);
        // Recorded after every object (pending, then done): one journal line each after
        // the first write of the whole state, which a reader sees whole.
        let path = d.path().join("s.json");
        let journal = std::fs::read_to_string(crate::state::journal_path(&path)).unwrap();
        assert_eq!(journal.lines().count(), 2 * 22 - 1);
        assert_eq!(
            crate::state::read(&path).unwrap().unwrap().objects.len(),
            22
        );
    }

    #[tokio::test]
    async fn a_failure_skips_exactly_its_dependents() {
        let fake = Arc::new(Fake {
            fail: vec!["cm0".into()],
            ..Fake::default()
        });
        let (report, store, _d) = run_with(fake, 3, 10).await;
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].0, "c/core/ConfigMap/app/cm0");
        assert_eq!(report.skipped, ["c/core/ConfigMap/default/after-cm0"]);
        assert_eq!(report.done.len(), 3, "{report:?}");
        // The failed create left a pending entry: the next plan will look before it leaps.
        let e = store.state.get_address("c/core/ConfigMap/app/cm0").unwrap();
        assert!(e.pending);
    }

    #[tokio::test]
    async fn an_interruption_starts_nothing_new_and_lets_the_work_in_flight_finish() {
        // The namespace goes first, alone; its write raises the interruption.
        let fake = Arc::new(Fake {
            interrupt: Some(Interrupt::default()),
            ..Fake::default()
        });
        let (report, store, _d) = run_with(fake.clone(), 3, 4).await;
        assert!(report.interrupted && !report.ok());
        assert_eq!(report.done.len(), 1, "{report:?}");
        assert_eq!(*fake.written.lock().unwrap(), ["app"]);
        assert_eq!(report.not_started.len(), 4, "{report:?}");
        assert!(report.skipped.is_empty() && report.failed.is_empty());
        assert_eq!(store.state.objects.len(), 1);
        assert!(store.state.objects.iter().all(|e| !e.pending));
    }
}
