//! `--refresh-only`: a plan that changes no cluster, only the state. For every object the
//! state records whose live value is not the one recorded (changed outside dcm, adopted
//! or edited objects included), it records the live value's hash; an object gone from
//! its cluster leaves the state. Drift then no longer reports them; the next plan shows
//! what apply would change back.

use super::{runtime, Error, Exit, Global, Loaded};
use crate::diff::unified;
use crate::object::object_sha256;
use crate::plan::{Action, Change, Plan, PlannedState, Summary, PLAN_FORMAT_VERSION};
use crate::state::{JournalOp, State, StateStore};
use crate::target::normalize_live;
use std::path::Path;

/// The operation a refresh-only plan records.
pub const OPERATION: &str = "refresh-only";

/// Reads every object `state` records and plans to record the live values that differ
/// from the recorded ones (restricted to `targets`, when given).
pub(crate) fn make_refresh_plan(
    loaded: &Loaded,
    state: Option<&State>,
    file: &Path,
    global: &Global,
    targets: &[String],
) -> Result<Plan, Error> {
    let mut plan = Plan {
        format_version: PLAN_FORMAT_VERSION,
        dcm_version: env!("CARGO_PKG_VERSION").to_string(),
        operation: OPERATION.to_string(),
        config: file.display().to_string(),
        state: PlannedState {
            lineage: state.map(|s| s.lineage.clone()),
            serial: state.map(|s| s.serial).unwrap_or(0),
        },
        summary: Summary::default(),
        changes: Vec::new(),
        targets: Vec::new(),
    };
    let Some(state) = state else {
        if !targets.is_empty() {
            return Err(crate::plan::targeting::NoMatch {
                glob: targets[0].clone(),
                example: "c1/core/ConfigMap/default/settings".into(),
            }
            .into());
        }
        return Ok(plan);
    };
    let chosen: Vec<&crate::state::StateEntry> = state
        .objects
        .iter()
        .filter(|e| {
            targets.is_empty()
                || targets
                    .iter()
                    .any(|g| crate::plan::targeting::glob_match(g, &e.address))
        })
        .collect();
    if let Some(g) = targets.iter().find(|g| {
        !state
            .objects
            .iter()
            .any(|e| crate::plan::targeting::glob_match(g, &e.address))
    }) {
        return Err(crate::plan::targeting::NoMatch {
            glob: g.clone(),
            example: state
                .objects
                .iter()
                .next()
                .map(|e| e.address.clone())
                .unwrap_or_default(),
        }
        .into());
    }
    let clusters = loaded.targets(global, Some(state))?;
    let rt = runtime()?;
    super::plan::check_identities(Some(state), &clusters, &rt)?;
    let wanted: std::collections::BTreeSet<_> = chosen.iter().map(|e| e.id()).collect();
    let items = loaded
        .read_items(Some(state))
        .into_iter()
        .filter(|i| wanted.contains(&i.id));
    let live = rt.block_on(crate::refresh::read_live(
        &clusters,
        items,
        global.parallelism,
    ))?;
    let key = state.secrets_hmac_key.bytes();
    for e in chosen {
        let id = e.id();
        let current = live.get(&id).map(|v| normalize_live(v.clone()));
        let change = match &current {
            None => Change {
                address: e.address.clone(),
                action: Action::Forget,
                reason: "refresh-only: it is gone from its cluster; it leaves the state".to_string(),
                before: None,
                after: None,
                depends_on: Vec::new(),
                before_sha256: None,
                after_sha256: None,
                origin: None,
                record: false,
                forget_after: false,
                notes: vec![
                    "refresh-only: it is gone from its cluster; it leaves the state (it is not made again)"
                        .to_string(),
                ],
                diff: crate::diff::Diff::None,
                conflicts: None,
            },
            Some(l) => {
                let sha = super::drift::managed_sha(e, l);
                if !e.pending && crate::keyed::recorded_matches(&e.sha256, &sha, key.as_deref()) {
                    continue;
                }
                // Shown when the file still wants exactly what was recorded.
                let diff = match loaded.desired.get(&id) {
                    Some(d)
                        if e.origin != crate::state::Origin::Edited
                            && crate::keyed::recorded_matches(
                                &e.sha256,
                                &object_sha256(&d.object),
                                key.as_deref(),
                            ) =>
                    {
                        unified(&d.object, l)
                    }
                    _ => Vec::new(),
                };
                let why = if e.pending {
                    "an apply was interrupted while writing it"
                } else {
                    "it changed outside dcm since the last apply"
                };
                Change {
                    address: e.address.clone(),
                    action: Action::NoOp,
                    reason: format!("refresh-only: {why}; the state records its live value"),
                    before: None,
                    after: Some(std::sync::Arc::new(crate::object::redact(l))),
                    depends_on: Vec::new(),
                    before_sha256: Some(e.sha256.clone()),
                    after_sha256: Some(sha),
                    origin: Some(e.origin),
                    record: true,
                    forget_after: false,
                    notes: vec![format!(
                        "refresh-only: {why}; the state will record its live value (no cluster is changed), and the next plan shows what apply would change back"
                    )],
                    diff: diff.into(),
                    conflicts: None,
                }
            }
        };
        plan.changes.push(change);
    }
    plan.changes.sort_by(|a, b| a.address.cmp(&b.address));
    plan.summary = Summary::of(&plan.changes);
    let mut t = targets.to_vec();
    t.sort();
    t.dedup();
    plan.targets = t;
    plan.seal_secrets(crate::keyed::fingerprint_key(Some(state)).as_deref());
    Ok(plan)
}

/// Carries out a refresh-only plan (checked against a fresh one already): writes only
/// the state, in one change per object, then folds them into one write.
pub(crate) fn record(plan: &Plan, mut store: StateStore, global: &Global) -> Result<Exit, Error> {
    let (mut recorded, mut forgotten) = (0, 0);
    for c in &plan.changes {
        match c.action {
            Action::NoOp => {
                let (Some(entry), Some(sha)) = (
                    store.state.get_address(&c.address).cloned(),
                    &c.after_sha256,
                ) else {
                    continue;
                };
                let entry = crate::state::StateEntry {
                    sha256: sha.clone(),
                    pending: false,
                    ..entry
                };
                store.record(JournalOp::Upsert(Box::new(entry)))?;
                recorded += 1;
                crate::outln!("{}: live value recorded in the state", c.address);
            }
            Action::Forget => {
                store.record(JournalOp::Remove(c.address.clone()))?;
                forgotten += 1;
                crate::outln!("{}: forgotten (gone from its cluster)", c.address);
            }
            _ => {}
        }
    }
    store.fold()?;
    crate::outln!(
        "\n{}",
        global.style.bold(&format!(
            "Refresh complete! State: {recorded} recorded, {forgotten} forgotten; no cluster was changed."
        ))
    );
    Ok(Exit::Ok)
}
