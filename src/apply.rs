//! Apply: carries out a plan's changes in dependency order.
//!
//! Changes whose prerequisites are done run concurrently, at most `parallelism` at a time;
//! among ready changes the smaller address starts first. When a change fails, everything
//! that waits on it (transitively) is skipped, independent work still finishes, and the
//! report says what was done and what was not. The state is written after every object,
//! so a run killed at any moment can be re-run and converges.

use crate::compile::Desired;
use crate::graph::Graph;
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
}

impl ApplyReport {
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty()
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
    object: Option<(ObjRef, String, serde_json::Value)>,
    /// Addresses the object depends on, recorded in the state for delete order.
    depends_on: Vec<String>,
}

/// Runs `plan`. `desired` and `graph` are those the plan was built from.
pub async fn apply(
    plan: &Plan,
    desired: &Desired,
    graph: &Graph,
    targets: &Targets,
    store: Arc<Mutex<StateStore>>,
    parallelism: usize,
    mut progress: impl FnMut(Progress<'_>),
) -> ApplyReport {
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
    let mut jobs: Vec<Option<Job>> = plan
        .changes
        .iter()
        .map(|c| {
            let di = c.id().and_then(|id| desired_index.get(&id).copied());
            Some(Job {
                change: c.clone(),
                object: di.map(|i| {
                    let o = &desired.objects[i];
                    (o.id.clone(), o.api_version.clone(), o.object.clone())
                }),
                depends_on: di
                    .map(|i| {
                        graph.deps[i]
                            .iter()
                            .map(|&j| desired.objects[j].id.address())
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect();

    let mut waiting_on: Vec<usize> = vec![0; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, c) in plan.changes.iter().enumerate() {
        for a in &c.after {
            if let Some(&j) = index.get(a.as_str()) {
                waiting_on[i] += 1;
                dependents[j].push(i);
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<(String, usize)>> = (0..n)
        .filter(|&i| waiting_on[i] == 0)
        .map(|i| Reverse((plan.changes[i].address.clone(), i)))
        .collect();

    let mut report = ApplyReport::default();
    let mut finished = vec![false; n];
    let mut tasks = tokio::task::JoinSet::new();
    let mut stop = false;
    loop {
        while !stop && tasks.len() < parallelism.max(1) {
            let Some(Reverse((_, i))) = ready.pop() else {
                break;
            };
            let Some(job) = jobs[i].take() else { continue };
            let targets = targets.clone();
            let store = store.clone();
            tasks.spawn(async move {
                let r = run(&job, &targets, &store).await;
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
                        ready.push(Reverse((plan.changes[d].address.clone(), d)));
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
    for (i, f) in finished.iter().enumerate() {
        if !f {
            report.skipped.push(plan.changes[i].address.clone());
        }
    }
    report.done.sort();
    report.failed.sort();
    report
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

/// Updates the state and writes it.
fn save(
    store: &Mutex<StateStore>,
    edit: impl FnOnce(&mut crate::state::State),
) -> Result<(), RunError> {
    let mut s = store.lock().map_err(|_| RunError {
        message: "the state lock was poisoned by a failed task".into(),
        fatal: true,
    })?;
    edit(&mut s.state);
    s.persist().map_err(|e| RunError {
        message: e.to_string(),
        fatal: true,
    })
}

async fn run(job: &Job, targets: &Targets, store: &Mutex<StateStore>) -> Result<(), RunError> {
    let c = &job.change;
    let id = c
        .id()
        .ok_or_else(|| fail(format!("`{}` is not an object address", c.address)))?;
    let target = targets.get(&id.cluster).map_err(fail)?.clone();
    match c.action {
        Action::Create | Action::Update | Action::NoOp => {
            let (oid, api_version, object) = job
                .object
                .as_ref()
                .ok_or_else(|| fail("the file no longer declares this object"))?;
            let existing = store.lock().ok().and_then(|s| s.state.get(oid).cloned());
            let entry = StateEntry {
                address: c.address.clone(),
                cluster: oid.cluster.clone(),
                api_version: api_version.clone(),
                kind: oid.kind.clone(),
                namespace: oid.namespace.clone(),
                name: oid.name.clone(),
                sha256: c.after_sha256.clone().unwrap_or_default(),
                origin: c.origin.unwrap_or(crate::state::Origin::Created),
                pending: false,
                depends_on: job.depends_on.clone(),
                allocated: existing
                    .as_ref()
                    .map(|e| e.allocated.clone())
                    .unwrap_or_default(),
            };
            if c.action != Action::NoOp {
                if existing.is_none() {
                    // Record the intent first: if the run dies after the write, the next
                    // plan knows this object is dcm's.
                    let pending = StateEntry {
                        pending: true,
                        ..entry.clone()
                    };
                    save(store, |s| s.upsert(pending))?;
                }
                target.apply(oid, object).await.map_err(fail)?;
            }
            save(store, |s| s.upsert(entry))
        }
        Action::Delete => {
            target.delete(&id).await.map_err(fail)?;
            save(store, |s| {
                s.remove(&c.address);
            })
        }
        Action::Forget => save(store, |s| {
            s.remove(&c.address);
        }),
    }
}
