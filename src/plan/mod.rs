//! The plan: what apply would do to make the live clusters match the file, and why.
//!
//! A plan is built from three inputs and nothing else: the desired objects (with their
//! graph), the state, and the refreshed live objects. The set of actions is small and
//! closed ([`Action`]). Each change carries the hashes it was planned against, so a saved
//! plan can be checked for staleness before it is applied.
//!
//! Rendering (text, Markdown, JSON) lives in `render.rs`; it never decides anything.

pub mod render;
pub mod targeting;

use crate::compile::Desired;
use crate::diff::{unified, Diff};
use crate::graph::Graph;
use crate::object::{object_sha256, redact, ObjRef};
use crate::state::{Origin, State};
use crate::target::normalize_live;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What apply does to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Create,
    Update,
    Delete,
    /// Nothing changes in the cluster (only the state may be updated; see `record`).
    NoOp,
    /// The object leaves the state but stays in the cluster (dcm did not create it, or it
    /// is already gone).
    Forget,
    /// Not dcm's to change: it exists and this state does not own it (made by someone
    /// else, or by another dcm state). Apply refuses the whole plan until it is imported
    /// or taken over; the notes say how.
    Refuse,
}

/// One planned change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub address: String,
    pub action: Action,
    /// Why this change is what it is, in one sentence (the first thing a reviewer reads).
    #[serde(default)]
    pub reason: String,
    /// The live object as refreshed (dcm's view, normalized), secret values replaced by
    /// `{"sensitive": <fingerprint>}` (see [`Plan::seal_secrets`]); None when it does not
    /// exist. For display only.
    #[serde(default)]
    pub before: Option<Arc<Value>>,
    /// The object as it will be, secret values replaced the same way; None when dcm will
    /// not hold it afterwards (a delete or a forget). For display only.
    #[serde(default)]
    pub after: Option<Arc<Value>>,
    /// sha256 of the live object as refreshed (normalized); none when it does not exist.
    pub before_sha256: Option<String>,
    /// sha256 of the object as it will be; none for deletions.
    pub after_sha256: Option<String>,
    /// How dcm will hold the object in the state after this change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// A NoOp that still updates the state (the object matches but is not yet recorded).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub record: bool,
    /// After the write, the object leaves the state (an edit taken back).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forget_after: bool,
    /// Why this change is what it is, for the reviewer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Changes in this plan that must finish first (addresses). For display and ordering
    /// only.
    #[serde(default)]
    pub depends_on: Vec<Arc<str>>,
    /// The change as a reviewer sees it (secrets redacted). For display only.
    #[serde(default, skip_serializing_if = "Diff::is_empty")]
    pub diff: Diff,
    /// The server's word on fields other field managers own that this change would take
    /// (from a dry run); apply refuses it without `--force-conflicts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflicts: Option<String>,
}

impl Change {
    pub fn id(&self) -> Option<ObjRef> {
        ObjRef::parse_address(&self.address)
    }

    /// The part of a change that must be the same for a saved plan to still hold.
    fn decision(&self) -> (&str, Action, &Option<String>, &Option<String>, bool) {
        (
            &self.address,
            self.action,
            &self.before_sha256,
            &self.after_sha256,
            self.record,
        )
    }
}

/// How many changes of each kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
    /// State-only changes: objects forgotten, or recorded without touching the cluster.
    pub state_only: usize,
    /// Objects the plan may not touch until they are imported or taken over.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refused: usize,
}

impl Summary {
    /// The counts of `changes`.
    pub fn of(changes: &[Change]) -> Summary {
        let mut summary = Summary::default();
        for c in changes {
            match c.action {
                Action::Create => summary.add += 1,
                Action::Update => summary.change += 1,
                Action::Delete => summary.destroy += 1,
                Action::NoOp | Action::Forget => summary.state_only += 1,
                Action::Refuse => summary.refused += 1,
            }
        }
        summary
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The state a plan was made against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedState {
    /// None when there was no state file yet.
    pub lineage: Option<String>,
    pub serial: u64,
}

/// A whole plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    pub dcm_version: String,
    /// `apply`, `destroy` or `refresh-only`.
    pub operation: String,
    /// The desired-state file, as given on the command line.
    pub config: String,
    pub state: PlannedState,
    pub summary: Summary,
    /// Sorted by address. Unchanged objects are left out.
    pub changes: Vec<Change>,
    /// The `--target` globs of a partial plan (sorted); empty for a whole plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
}

/// The version of the plan document's layout (`dcm plan --json`, saved plans). 2: each
/// change has `reason`, `before` and `after` (the objects) and `depends_on` (was `after`).
pub const PLAN_FORMAT_VERSION: u32 = 2;

impl Plan {
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// Makes what the plan shows about secret material irreversible: the hashes of
    /// Secrets (`before_sha256`, `after_sha256`) become HMACs under `key` (none without
    /// a key), and the short hashes of secret values in diffs become keyed ones (without
    /// a key, numbers that only tell the values of one object apart).
    pub fn seal_secrets(&mut self, key: Option<&[u8]>) {
        for c in &mut self.changes {
            if c.id().is_some_and(|id| id.is_secret()) {
                c.before_sha256 = crate::keyed::seal_opt(&c.before_sha256, key);
                c.after_sha256 = crate::keyed::seal_opt(&c.after_sha256, key);
            }
            let mut seen = Vec::new();
            for l in c.diff.lines_mut() {
                l.text = crate::keyed::seal_text(&l.text, key, &mut seen);
            }
            // The objects go after the diff, so a value keeps the number it has there.
            for object in [&mut c.before, &mut c.after].into_iter().flatten() {
                if !crate::object::is_secret_object(object) {
                    continue; // shared with the desired objects, and nothing to seal
                }
                let object = Arc::make_mut(object);
                seal_object(object, key, &mut seen);
            }
        }
    }

    /// Explains the first difference that makes `self` (saved) no longer valid against
    /// `fresh` (planned now from the same file); None when they agree.
    pub fn staleness(&self, fresh: &Plan) -> Option<String> {
        if self.operation != fresh.operation {
            return Some(format!(
                "it is a {} plan, not {}",
                self.operation, fresh.operation
            ));
        }
        if self.targets != fresh.targets {
            return Some(format!(
                "it targets {:?}, not {:?}",
                self.targets, fresh.targets
            ));
        }
        if self.state != fresh.state {
            return Some(format!(
                "the state changed since the plan was made (serial {} then, {} now)",
                self.state.serial, fresh.state.serial
            ));
        }
        let saved: BTreeMap<&str, &Change> = self
            .changes
            .iter()
            .map(|c| (c.address.as_str(), c))
            .collect();
        let now: BTreeMap<&str, &Change> = fresh
            .changes
            .iter()
            .map(|c| (c.address.as_str(), c))
            .collect();
        for (addr, c) in &now {
            match saved.get(addr) {
                None => return Some(format!("{addr} now needs a change the plan does not have")),
                Some(s) if s.decision() != c.decision() => {
                    let why = if s.after_sha256 != c.after_sha256 {
                        "the file now wants something else"
                    } else {
                        "the live object changed"
                    };
                    return Some(format!("{addr}: {why}"));
                }
                _ => {}
            }
        }
        if let Some(addr) = saved.keys().find(|a| !now.contains_key(*a)) {
            return Some(format!("{addr} no longer needs the planned change"));
        }
        None
    }
}

/// Replaces each redacted secret value of a Secret (`(sensitive, sha256:…)`, as `redact`
/// leaves it) by `{"sensitive": "<fingerprint>"}`, the fingerprint being what diffs show:
/// `hmac:<12 hex>` under `key`, else `value N`.
fn seal_object(object: &mut Value, key: Option<&[u8]>, seen: &mut Vec<String>) {
    if !crate::object::is_secret_object(object) {
        return;
    }
    for field in ["data", "stringData"] {
        let Some(Value::Object(map)) = object.get_mut(field) else {
            continue;
        };
        for v in map.values_mut() {
            let text = v.as_str().unwrap_or_default();
            let sealed = crate::keyed::seal_text(text, key, seen);
            let fingerprint = sealed
                .strip_prefix("(sensitive, ")
                .and_then(|f| f.strip_suffix(')'))
                .filter(|f| !f.starts_with("sha256:"));
            // Anything else (never expected) is hidden rather than shown.
            *v = serde_json::json!({ "sensitive": fingerprint.unwrap_or("hidden") });
        }
    }
}

/// An object as a plan shows it: a Secret with its values redacted (a copy); anything
/// else is the desired object itself, shared rather than copied.
fn shown(object: &Arc<Value>) -> Arc<Value> {
    if crate::object::is_secret_object(object) {
        Arc::new(redact(object))
    } else {
        Arc::clone(object)
    }
}

/// Everything a plan is computed from.
pub struct PlanInputs<'a> {
    pub desired: &'a Desired,
    pub graph: &'a Graph,
    /// None when there is no state file yet.
    pub state: Option<&'a State>,
    /// Live objects as read (not yet normalized); absent = does not exist. The plan takes
    /// out those of the objects it deletes or forgets: each moves into what the plan
    /// shows instead of being copied (a destroy of 100k objects holds each once, not
    /// twice). What is left is what the file wants.
    pub live: &'a mut BTreeMap<ObjRef, Value>,
    pub config: String,
    /// Plan the deletion of everything in the state instead.
    pub destroy: bool,
    /// Who may own what: the state's lineage, and the objects the user hands to it.
    pub ownership: Ownership<'a>,
}

/// What decides whether an existing object is this state's to change.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ownership<'a> {
    /// The lineage of the state (None before the first apply made one).
    pub lineage: Option<&'a str>,
    /// Addresses the file imports (`import = [...]`): existing objects dcm may take on.
    pub imports: Option<&'a BTreeSet<String>>,
    /// Addresses given with `--take-over`: taken even from another dcm state, or after
    /// someone else made them again.
    pub take_over: Option<&'a BTreeSet<String>>,
}

impl Ownership<'_> {
    fn imported(&self, address: &str) -> bool {
        self.imports.is_some_and(|s| s.contains(address)) || self.taken_over(address)
    }

    fn taken_over(&self, address: &str) -> bool {
        self.take_over.is_some_and(|s| s.contains(address))
    }

    /// Why `live` (as read, marks included) is not this state's to change, and what the
    /// user can do; None when it is. `entry`: what the state records for it.
    fn refusal(
        &self,
        address: &str,
        entry: Option<&crate::state::StateEntry>,
        live: &Value,
    ) -> Option<(String, String)> {
        let marks = crate::ownership::Marks::of(live);
        let theirs = marks
            .lineage
            .as_deref()
            .filter(|l| Some(*l) != self.lineage);
        let take_over = format!("to take it over anyway, pass --take-over {address}");
        match entry {
            Some(e) if e.origin == Origin::Edited => None,
            Some(e) => {
                if self.taken_over(address) {
                    return None;
                }
                if let (Some(was), Some(now)) = (&e.uid, &marks.uid) {
                    if was != now {
                        return Some((
                            format!("it was deleted and made again outside dcm (its UID was {was}, now {now}): it is no longer dcm's"),
                            take_over,
                        ));
                    }
                }
                let taken_from = e.allocated.get(crate::ops::TAKEN_FROM);
                theirs
                    .filter(|l| taken_from.map(String::as_str) != Some(*l))
                    .map(|l| {
                        (
                            format!("another dcm state (lineage {l}) has taken it over"),
                            take_over,
                        )
                    })
            }
            None => match theirs {
                Some(_) if self.taken_over(address) => None,
                Some(l) => Some((
                    format!("it exists and belongs to another dcm state (lineage {l})"),
                    format!("{take_over}; if this is your own state's, rebuild the lost state with `dcm state recover`"),
                )),
                None if marks.lineage.is_some() || self.imported(address) => None,
                None => Some((
                    "it exists, not managed by dcm: dcm did not create it".to_string(),
                    format!("to manage it, import it first: `dcm import {address}`, or list it in `import = [...]` in the file"),
                )),
            },
        }
    }
}

/// Computes the plan.
pub fn build(inputs: &mut PlanInputs<'_>) -> Plan {
    let empty = State::default();
    let state = inputs.state.unwrap_or(&empty);
    // What the state's hashes of Secrets are keyed with.
    let key = state.secrets_hmac_key.bytes();
    let mut changes: BTreeMap<String, Change> = BTreeMap::new();
    let mut hashes = SharedHashes::default();
    let desired = if inputs.destroy {
        &[][..]
    } else {
        &inputs.desired.objects[..]
    };

    for d in desired.iter().chain(&inputs.desired.reverts) {
        let raw = inputs.live.get(&d.id);
        let refusal = match (&d.edit, raw) {
            (None, Some(l)) if !d.revert => {
                inputs
                    .ownership
                    .refusal(&d.id.address(), state.get(&d.id), l)
            }
            _ => None,
        };
        if let Some((why, fix)) = refusal {
            let l = normalize_live(raw.cloned().unwrap_or_default());
            changes.insert(
                d.id.address(),
                Change {
                    address: d.id.address(),
                    action: Action::Refuse,
                    reason: why.clone(),
                    before: Some(Arc::new(redact(&l))),
                    after: Some(shown(&d.object)),
                    before_sha256: Some(object_sha256(&l)),
                    after_sha256: Some(object_sha256(&d.object)),
                    origin: None,
                    record: false,
                    forget_after: false,
                    notes: vec![why, fix],
                    depends_on: Vec::new(),
                    diff: unified(&l, &d.object).into(),
                    conflicts: None,
                },
            );
            continue;
        }
        let unmarked = raw.is_some_and(|l| {
            let marks = crate::ownership::Marks::of(l);
            d.edit.is_none() && marks.lineage.as_deref() != inputs.ownership.lineage
        });
        let live = raw.map(|v| normalize_live(v.clone()));
        let after = hashes.of(&d.object);
        if let Some(c) = plan_desired(
            d,
            after,
            state.get(&d.id),
            live.as_ref(),
            unmarked,
            key.as_deref(),
        ) {
            changes.insert(d.id.address(), c);
        }
    }

    // Objects the state has that the file no longer wants (or everything, for destroy).
    // Edits being taken back were planned above, as reverts.
    let wanted: BTreeSet<ObjRef> = desired
        .iter()
        .chain(&inputs.desired.reverts)
        .map(|d| d.id.clone())
        .collect();
    for e in &state.objects {
        let id = e.id();
        if wanted.contains(&id) {
            continue;
        }
        let raw = inputs.live.remove(&id);
        let gone_to_others = raw
            .as_ref()
            .and_then(|l| inputs.ownership.refusal(&e.address, Some(e), l));
        // An object dcm created is read whole (all of it goes) and compared by the
        // fields dcm applied.
        let applied_sha = match (&raw, e.origin, &gone_to_others) {
            (Some(r), Origin::Created, None) => Some(object_sha256(&normalize_live(
                crate::target::kube::dcm_view(r, None),
            ))),
            _ => None,
        };
        let live = raw.map(normalize_live);
        // Whether the diff shows the whole object going.
        let (action, notes, shows_whole, before) = match (&live, e.origin) {
            (Some(l), _) if gone_to_others.is_some() => (
                Action::Forget,
                vec![format!(
                    "{}; it stays in the cluster and leaves the state",
                    gone_to_others.map(|g| g.0).unwrap_or_default()
                )],
                false,
                Some(object_sha256(l)),
            ),
            (None, _) => (
                Action::Forget,
                vec![
                    "it is already gone from the cluster; it will be removed from the state"
                        .to_string(),
                ],
                false,
                None,
            ),
            (Some(l), Origin::Adopted | Origin::Edited) => (
                Action::Forget,
                vec![
                    "dcm did not create it: it stays in the cluster and leaves the state"
                        .to_string(),
                ],
                false,
                Some(object_sha256(l)),
            ),
            (Some(l), Origin::Created) => {
                let before = applied_sha.unwrap_or_else(|| object_sha256(l));
                let mut notes = Vec::new();
                if !crate::keyed::recorded_matches(&e.sha256, &before, key.as_deref()) && !e.pending
                {
                    notes.push("it changed outside dcm since the last apply".to_string());
                }
                (Action::Delete, notes, true, Some(before))
            }
        };
        let reason = match (action, notes.first()) {
            (Action::Delete, _) if inputs.destroy => {
                "destroy deletes every object dcm created".to_string()
            }
            (Action::Delete, _) => "the file no longer declares it, and dcm created it".to_string(),
            (_, Some(n)) => n.clone(),
            (_, None) => String::new(),
        };
        // The live object moves into what the plan shows (a Secret is redacted first):
        // a destroy of 100k objects holds each once more, not twice.
        let (shown_before, diff) = match live {
            Some(l) => {
                if crate::object::is_secret_object(&l) {
                    let shown = Arc::new(redact(&l));
                    let diff = if shows_whole {
                        Diff::whole(&l, &shown, '-')
                    } else {
                        Diff::None
                    };
                    (Some(shown), diff)
                } else {
                    let shown = Arc::new(l);
                    let diff = if shows_whole {
                        Diff::Whole {
                            tag: '-',
                            object: Arc::clone(&shown),
                        }
                    } else {
                        Diff::None
                    };
                    (Some(shown), diff)
                }
            }
            None => (None, Diff::None),
        };
        changes.insert(
            e.address.clone(),
            Change {
                address: e.address.clone(),
                action,
                reason,
                before: shown_before,
                after: None,
                before_sha256: before,
                after_sha256: None,
                origin: None,
                record: false,
                forget_after: false,
                notes,
                depends_on: Vec::new(),
                diff,
                conflicts: None,
            },
        );
    }

    order_changes(&mut changes, inputs, state, desired);

    let mut summary = Summary::default();
    for c in changes.values() {
        match c.action {
            Action::Create => summary.add += 1,
            Action::Update => summary.change += 1,
            Action::Delete => summary.destroy += 1,
            Action::NoOp | Action::Forget => summary.state_only += 1,
            Action::Refuse => summary.refused += 1,
        }
    }
    Plan {
        format_version: PLAN_FORMAT_VERSION,
        dcm_version: env!("CARGO_PKG_VERSION").to_string(),
        operation: if inputs.destroy { "destroy" } else { "apply" }.to_string(),
        config: inputs.config.clone(),
        state: PlannedState {
            lineage: inputs.state.map(|s| s.lineage.clone()),
            serial: inputs.state.map(|s| s.serial).unwrap_or(0),
        },
        summary,
        changes: changes.into_values().collect(),
        targets: Vec::new(),
    }
}

/// The hash the state keeps for an object: of the whole object, or of dcm's part of an
/// object it only edits.
pub fn recorded_sha(d: &crate::compile::DesiredObject) -> String {
    match &d.edit {
        Some(e) => crate::compile::edit::contribution_sha(e, &d.object, &e.parts()),
        None => object_sha256(&d.object),
    }
}

/// [`recorded_sha`], given the object's own hash (hashed once: for a whole object the
/// two are the same).
fn recorded_sha_given(d: &crate::compile::DesiredObject, object_sha: &str) -> String {
    match &d.edit {
        Some(e) => crate::compile::edit::contribution_sha(e, &d.object, &e.parts()),
        None => object_sha.to_string(),
    }
}

/// The sha256 of desired objects, computed once per tree: a manifest placed the same way
/// in many clusters is one tree, shared (see `compile`).
#[derive(Default)]
struct SharedHashes(std::collections::HashMap<*const Value, String>);

impl SharedHashes {
    /// `object`'s sha256. The pointer is a sound key while `object` lives, and the plan
    /// holds every desired object until it is built.
    fn of(&mut self, object: &Arc<Value>) -> String {
        self.0
            .entry(Arc::as_ptr(object))
            .or_insert_with(|| object_sha256(object))
            .clone()
    }
}

/// The change for one object the file wants (or one edit being taken back).
fn plan_desired(
    d: &crate::compile::DesiredObject,
    after: String,
    entry: Option<&crate::state::StateEntry>,
    live: Option<&Value>,
    unmarked: bool,
    key: Option<&[u8]>,
) -> Option<Change> {
    let matches =
        |recorded: &str, plain: &str| crate::keyed::recorded_matches(recorded, plain, key);
    let recorded = recorded_sha_given(d, &after);
    let shown_after = shown(&d.object);
    let mut notes = Vec::new();
    let edit = d.edit.as_ref();
    let (mut action, origin, record, diff, before) = match live {
        None => {
            if entry.is_some_and(|e| !e.pending) {
                notes.push("it was deleted outside dcm; it will be created again".to_string());
            }
            let origin = entry.map(|e| e.origin).unwrap_or(Origin::Created);
            (
                Action::Create,
                origin,
                true,
                Diff::whole(&d.object, &shown_after, '+'),
                None,
            )
        }
        Some(l) => {
            let before = object_sha256(l);
            let origin = match (edit, entry) {
                (Some(_), _) => Origin::Edited,
                (None, Some(e)) => e.origin,
                (None, None) => Origin::Adopted,
            };
            let live_part = match edit {
                Some(e) => crate::compile::edit::contribution_sha(e, l, &e.parts()),
                None => before.clone(),
            };
            if entry.is_none() && edit.is_none() {
                notes.push(
                    "it already exists and is imported: dcm will manage it, and forget it rather than delete it when it leaves the file"
                        .to_string(),
                );
            } else if entry.is_some_and(|e| !e.pending && !matches(&e.sha256, &live_part)) {
                notes.push("it changed outside dcm since the last apply".to_string());
            }
            if before == after && unmarked && edit.is_none() {
                notes.push("dcm puts its ownership labels on it; nothing else changes".to_string());
                (Action::Update, origin, true, Diff::None, Some(before))
            } else if before == after {
                let record = entry.is_none_or(|e| e.pending || !matches(&e.sha256, &recorded));
                (Action::NoOp, origin, record, Diff::None, Some(before))
            } else {
                if edit.is_some() && !d.revert {
                    notes.push(
                        "dcm changes only its own part of this object; every other byte is kept"
                            .to_string(),
                    );
                }
                (
                    Action::Update,
                    origin,
                    true,
                    unified(l, &d.object).into(),
                    Some(before),
                )
            }
        }
    };
    for k in &d.known_after_apply {
        notes.push(format!(
            "{} is known after apply: {}",
            k.placeholder
                .trim_start_matches("(known after apply: ")
                .trim_end_matches(')'),
            k.describe()
        ));
    }
    if d.revert {
        notes.retain(|n| !n.starts_with("it changed"));
        if action == Action::NoOp {
            action = Action::Forget;
            notes.push("dcm's part is already gone; it leaves the state".to_string());
        } else {
            notes.push("dcm takes its part back out; every other byte is kept".to_string());
        }
    } else if action == Action::NoOp {
        if !record {
            return None;
        }
        notes.retain(|n| !n.starts_with("it changed"));
    }
    let keeps = !d.revert || action == Action::Update;
    let reason = match (action, entry) {
        (Action::NoOp, Some(e)) if e.pending => {
            "an apply was interrupted after writing it: it matches the file, and the state records it now"
                .to_string()
        }
        (Action::NoOp, Some(_)) => {
            "it matches the file; the state's record of it is brought up to date".to_string()
        }
        _ => reason_for(action, &notes, live, &d.object, d.revert),
    };
    Some(Change {
        address: d.id.address(),
        action,
        reason,
        before: live.map(|l| Arc::new(redact(l))),
        after: keeps.then_some(shown_after),
        before_sha256: before,
        after_sha256: keeps.then_some(after),
        origin: (!d.revert).then_some(origin),
        record: record && !d.revert,
        forget_after: d.revert,
        notes,
        depends_on: Vec::new(),
        diff,
        conflicts: None,
    })
}

/// The one-sentence reason of a change for an object the file wants (or an edit being
/// taken back), from what was decided about it.
fn reason_for(
    action: Action,
    notes: &[String],
    live: Option<&Value>,
    desired: &Value,
    revert: bool,
) -> String {
    let noted = |start: &str| notes.iter().find(|n| n.starts_with(start)).cloned();
    match action {
        Action::Create => noted("it was deleted outside dcm")
            .unwrap_or_else(|| "it does not exist in the cluster".to_string()),
        Action::Update if revert => {
            "dcm takes its part back out; every other byte is kept".to_string()
        }
        Action::Update => {
            let fields = live.map(|l| changed_paths(l, desired)).unwrap_or_default();
            if fields.is_empty() {
                return noted("dcm puts its ownership labels")
                    .unwrap_or_else(|| "it differs from the file".to_string());
            }
            const SHOWN: usize = 8;
            let mut list = fields
                .iter()
                .take(SHOWN)
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ");
            if fields.len() > SHOWN {
                list.push_str(&format!(" and {} more", fields.len() - SHOWN));
            }
            let prefix = match noted("it already exists and is imported") {
                Some(_) => "it exists (imported) and differs from the file in",
                None => "it differs from the file in",
            };
            format!("{prefix} {list}")
        }
        Action::NoOp => "it already matches the file; the state does not record it yet".to_string(),
        Action::Forget => noted("dcm's part is already gone")
            .or_else(|| notes.first().cloned())
            .unwrap_or_default(),
        _ => notes.first().cloned().unwrap_or_default(),
    }
}

/// The fields (dotted paths, `metadata.labels["app.kubernetes.io/name"]` for keys with
/// dots) whose values differ between two objects, in order; lists count as one value.
pub fn changed_paths(before: &Value, after: &Value) -> Vec<String> {
    fn walk(a: Option<&Value>, b: Option<&Value>, path: &mut String, out: &mut Vec<String>) {
        match (a, b) {
            (Some(Value::Object(x)), Some(Value::Object(y))) => {
                let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let len = path.len();
                    let plain = !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    match (path.is_empty(), plain) {
                        (true, true) => path.push_str(k),
                        (false, true) => {
                            path.push('.');
                            path.push_str(k);
                        }
                        (_, false) => path.push_str(&format!("[{}]", Value::from(k.as_str()))),
                    }
                    walk(x.get(k), y.get(k), path, out);
                    path.truncate(len);
                }
            }
            (a, b) if a != b => out.push(path.clone()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(Some(before), Some(after), &mut String::new(), &mut out);
    out
}

/// Fills in `depends_on`: creates and updates wait for the changes of what they depend on;
/// deletions wait for the deletion of what depended on them (reverse order).
fn order_changes(
    changes: &mut BTreeMap<String, Change>,
    inputs: &PlanInputs<'_>,
    state: &State,
    desired: &[crate::compile::DesiredObject],
) {
    // Each address a change depends on is held once, shared by every change that names
    // it (a namespace or a control plane is named by thousands).
    let mut named: BTreeMap<String, Arc<str>> = BTreeMap::new();
    let mut intern = |address: String| -> Arc<str> {
        named
            .entry(address)
            .or_insert_with_key(|a| Arc::from(a.as_str()))
            .clone()
    };
    let mut addresses: Vec<Option<String>> = vec![None; desired.len()];
    for (i, d) in desired.iter().enumerate() {
        let addr = d.id.address();
        if !changes.contains_key(&addr) {
            continue;
        }
        let mut depends_on = Vec::with_capacity(inputs.graph.deps[i].len());
        for &j in &inputs.graph.deps[i] {
            let dep = addresses[j].get_or_insert_with(|| desired[j].id.address());
            if changes.contains_key(dep.as_str()) {
                depends_on.push(intern(dep.clone()));
            }
        }
        if let Some(c) = changes.get_mut(&addr) {
            c.depends_on = depends_on;
        }
    }
    drop(addresses);
    // Deletions: X depended on Y (both going) → delete X, then Y.
    let deleting: BTreeSet<String> = changes
        .values()
        .filter(|c| c.action == Action::Delete)
        .map(|c| c.address.clone())
        .collect();
    let mut waits: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in &state.objects {
        if !deleting.contains(&e.address) {
            continue;
        }
        for dep in &e.depends_on {
            if deleting.contains(dep) {
                waits
                    .entry(dep.clone())
                    .or_default()
                    .insert(e.address.clone());
            }
        }
        // A namespace goes after everything in it, even without a recorded dependency.
        let id = e.id();
        if !id.namespace.is_empty() {
            let ns = format!("{}/core/Namespace/_cluster/{}", id.cluster, id.namespace);
            if deleting.contains(&ns) {
                waits.entry(ns).or_default().insert(e.address.clone());
            }
        }
    }
    for (addr, w) in waits {
        if let Some(c) = changes.get_mut(&addr) {
            c.depends_on = w.into_iter().map(&mut intern).collect();
        }
    }
    // Only creates/updates point at creates/updates: drop edges to deletions/forgets.
    let going: BTreeSet<String> = changes
        .values()
        .filter(|c| matches!(c.action, Action::Delete | Action::Forget))
        .map(|c| c.address.clone())
        .collect();
    for c in changes.values_mut() {
        let mine = matches!(c.action, Action::Delete | Action::Forget);
        c.depends_on.retain(|a| mine == going.contains(a.as_ref()));
    }
}

/// A plan saved with `dcm plan -o`: the plan, what it was made from, a checksum over
/// both and, with `DCM_PLAN_KEY`, a signature.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedPlan {
    /// sha256 of the compact JSON of `{"binding": …, "plan": …}` (catches damage, not
    /// forgery: anyone can recompute it).
    pub checksum: String,
    /// HMAC-SHA256 of the same bytes under a key derived from `DCM_PLAN_KEY`, when that
    /// was set: `hmac-sha256:<hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// None in a plan from a dcm that did not record its inputs (refused).
    #[serde(default)]
    pub binding: Option<Binding>,
    pub plan: Plan,
}

/// What a saved plan was made from, and where: the config file's bytes and the desired
/// state dcm compiled from it and every file it read (hashes, and the objects themselves
/// with Secret values left out), the state's location and the config file's path.
///
/// The hashes are keyed (`hmac-sha256:`) with the state's key (or, before a state
/// exists, one derived from `DCM_PLAN_KEY`); plain (`sha256:`) without a key when nothing
/// secret is in them; none at all (`secrets_unbound`) when there are Secrets with data
/// and no key, since any unkeyed hash of them could be reversed by trying values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secrets_unbound: bool,
    /// The state the plan was made against, absolute (as `--state` names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_location: Option<String>,
    /// The config file, relative to the plan file's directory (found first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_relative: Option<String>,
    /// The config file, absolute (found when the plan moved but the config did not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_absolute: Option<String>,
    /// Every desired object as compiled, Secret values left out: what the plan writes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<EmbeddedObject>,
}

/// One desired object as a saved plan embeds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddedObject {
    pub address: String,
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// The object; each value of a Secret's `data` and `stringData` is `(sensitive)`.
    pub object: Value,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allocated: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revert: bool,
    /// For an object with Secret values, the keyed hash of the whole object (none
    /// without a key), so a changed value is caught without being recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_sha256: Option<String>,
}

/// What stands for a Secret's value in an embedded object.
pub const SENSITIVE: &str = "(sensitive)";

/// `object` with every value of a Secret's `data` and `stringData` replaced by
/// [`SENSITIVE`].
pub fn without_secret_values(object: &Value) -> Value {
    let mut out = object.clone();
    if crate::object::is_secret_object(object) {
        for field in ["data", "stringData"] {
            if let Some(Value::Object(map)) = out.get_mut(field) {
                for v in map.values_mut() {
                    *v = Value::String(SENSITIVE.to_string());
                }
            }
        }
    }
    out
}

/// A check a saved plan failed, and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Which check: `config`, `inputs` or `key`.
    pub check: &'static str,
    pub why: String,
}

impl Binding {
    /// The binding of `config` (the config file's bytes) and `desired` (compiled from it).
    /// Where they are is set with [`Binding::located`].
    pub fn of(config: &[u8], desired: &Desired, key: Option<&[u8]>) -> Binding {
        let mut inputs = Vec::new();
        let mut objects = Vec::new();
        for o in desired.objects.iter().chain(&desired.reverts) {
            let one = serde_json::json!({
                "address": o.id.address(),
                "apiVersion": o.api_version,
                "object": &*o.object,
                "allocated": o.allocated,
                "revert": o.revert,
            });
            inputs.extend(serde_json::to_vec(&one).unwrap_or_default());
            inputs.push(b'\n');
            let secret = crate::object::has_secret_data(&o.object);
            objects.push(EmbeddedObject {
                address: o.id.address(),
                api_version: o.api_version.clone(),
                object: without_secret_values(&o.object),
                allocated: o.allocated.clone(),
                revert: o.revert,
                secret_sha256: key
                    .filter(|_| secret)
                    .map(|k| crate::keyed::seal_sha(&object_sha256(&o.object), k)),
            });
        }
        let secret = desired
            .objects
            .iter()
            .any(|o| o.id.is_secret() && crate::object::has_secret_data(&o.object));
        let hash = |purpose: &str, bytes: &[u8]| match key {
            Some(k) => Some(format!(
                "{}{}",
                crate::keyed::KEYED_PREFIX,
                hex::encode(crate::keyed::hmac_sha256(
                    &crate::keyed::derive(k, purpose),
                    bytes
                ))
            )),
            None if secret => None,
            None => Some(format!("sha256:{}", hex::encode(Sha256::digest(bytes)))),
        };
        Binding {
            config: hash("plan config", config),
            inputs: hash("plan inputs", &inputs),
            secrets_unbound: key.is_none() && secret,
            state_location: None,
            config_relative: None,
            config_absolute: None,
            objects,
        }
    }

    /// Records where the plan was made: the state's location, and the config file (an
    /// absolute path) relative to the directory of the plan file (an absolute path too).
    pub fn located(
        mut self,
        state_location: String,
        config: &std::path::Path,
        plan_dir: &std::path::Path,
    ) -> Binding {
        self.state_location = Some(state_location);
        self.config_relative = relative_path(plan_dir, config).map(|p| p.display().to_string());
        self.config_absolute = Some(config.display().to_string());
        self
    }

    /// Whether the config file's bytes are the ones the plan was made from (always, when
    /// the plan holds no hash of them: the key check refuses such a plan).
    pub fn config_matches(&self, config: &[u8], key: Option<&[u8]>) -> bool {
        match &self.config {
            Some(h) => {
                Binding::of(config, &Desired::default(), key)
                    .config
                    .as_ref()
                    == Some(h)
            }
            None => true,
        }
    }

    /// Why a plan bound as `self` may not be applied with the files as they are now
    /// (`now`): which check failed and what was found; None when it may.
    pub fn mismatch(&self, now: &Binding) -> Option<Mismatch> {
        if self.secrets_unbound {
            return Some(Mismatch {
                check: "key",
                why: "it was made without a key (no state and no DCM_PLAN_KEY), so it cannot show which Secret values it was reviewed with".to_string(),
            });
        }
        if self.config != now.config {
            return Some(Mismatch {
                check: "config",
                why: "the config file is not the one it was made from (its content hash differs)"
                    .to_string(),
            });
        }
        if self.inputs != now.inputs {
            return Some(Mismatch {
                check: "inputs",
                why: format!(
                    "the config file or a file it reads (manifests, certificates, tokens) changed since it was made: {}",
                    self.changed_object(now)
                ),
            });
        }
        None
    }

    /// The first object whose embedded form differs between `self` and `now`, described.
    fn changed_object(&self, now: &Binding) -> String {
        let then: BTreeMap<&str, &EmbeddedObject> = self
            .objects
            .iter()
            .map(|o| (o.address.as_str(), o))
            .collect();
        let current: BTreeMap<&str, &EmbeddedObject> = now
            .objects
            .iter()
            .map(|o| (o.address.as_str(), o))
            .collect();
        for (a, o) in &current {
            match then.get(a) {
                None => return format!("{a} is new"),
                Some(t) if t.secret_sha256 != o.secret_sha256 && t.object == o.object => {
                    return format!("a Secret value of {a} changed")
                }
                Some(t) if *t != *o => return format!("{a} is not what it was"),
                _ => {}
            }
        }
        match then.keys().find(|a| !current.contains_key(*a)) {
            Some(a) => format!("{a} is no longer declared"),
            None => "a value the plan records only by its hash changed".to_string(),
        }
    }
}

/// `to` (absolute) as a path relative to the directory `from` (absolute); None when they
/// share no root (another drive).
pub fn relative_path(from: &std::path::Path, to: &std::path::Path) -> Option<std::path::PathBuf> {
    use std::path::Component;
    let a: Vec<Component> = from.components().collect();
    let b: Vec<Component> = to.components().collect();
    if a.first() != b.first() {
        return None;
    }
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = std::path::PathBuf::new();
    for _ in common..a.len() {
        out.push("..");
    }
    for c in &b[common..] {
        out.push(c.as_os_str());
    }
    Some(out)
}

#[derive(Debug, thiserror::Error)]
pub enum PlanFileError {
    #[error("cannot read the plan file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write the plan file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a dcm plan file ({message})")]
    Invalid { path: String, message: String },
    #[error("the plan file {path} fails the checksum check: it was modified after it was saved; nothing was applied\n  = help: make a new plan with `dcm plan -o PLAN`, review it, and apply that")]
    Tampered { path: String },
    #[error("the plan file {path} has format version {found}; this dcm reads version {PLAN_FORMAT_VERSION}\n  = help: make a new plan with this dcm (`dcm plan -o PLAN`)")]
    Version { path: String, found: u32 },
    #[error("the plan file {path} fails the signature check: it is not signed, and DCM_PLAN_KEY is set: only plans signed with that key are applied; nothing was applied\n  = help: make the plan again with DCM_PLAN_KEY set (`dcm plan -o PLAN`)")]
    Unsigned { path: String },
    #[error("the plan file {path} fails the signature check: it has a wrong signature: it was not made with this DCM_PLAN_KEY, or was changed since; nothing was applied\n  = help: make the plan again with this DCM_PLAN_KEY set (`dcm plan -o PLAN`)")]
    BadSignature { path: String },
    #[error("refusing to write the plan to {path}: {why}")]
    Refused { path: String, why: String },
}

/// The bytes the checksum and the signature cover.
fn body(plan: &Plan, binding: &Option<Binding>) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "binding": binding, "plan": plan })).unwrap_or_default()
}

fn checksum(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn signature(bytes: &[u8], plan_key: &[u8]) -> String {
    let key = crate::keyed::derive(plan_key, "plan signature");
    format!(
        "{}{}",
        crate::keyed::KEYED_PREFIX,
        hex::encode(crate::keyed::hmac_sha256(&key, bytes))
    )
}

/// The largest plan file read.
const MAX_PLAN_BYTES: u64 = 256 << 20;

/// Reads a file that should be a plan: a regular file, not too large.
fn read_plan_text(path: &std::path::Path) -> Result<String, PlanFileError> {
    let p = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| PlanFileError::Read {
        path: p.clone(),
        source,
    })?;
    if !meta.is_file() {
        return Err(PlanFileError::Invalid {
            path: p,
            message: "not a regular file".into(),
        });
    }
    if meta.len() > MAX_PLAN_BYTES {
        return Err(PlanFileError::Invalid {
            path: p,
            message: format!("larger than {} MiB", MAX_PLAN_BYTES >> 20),
        });
    }
    std::fs::read_to_string(path).map_err(|source| PlanFileError::Read { path: p, source })
}

/// Refuses to save a plan to `out` when that is the state (or its backup or lock), or
/// an existing file that is not a dcm plan.
pub fn check_out_path(out: &std::path::Path, state: &std::path::Path) -> Result<(), PlanFileError> {
    let refuse = |why: String| PlanFileError::Refused {
        path: out.display().to_string(),
        why,
    };
    // Canonical paths: the file itself when it exists, else its directory and name.
    let canonical = |p: &std::path::Path| -> Option<std::path::PathBuf> {
        std::fs::canonicalize(p).ok().or_else(|| {
            let parent = match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => std::path::Path::new("."),
            };
            Some(std::fs::canonicalize(parent).ok()?.join(p.file_name()?))
        })
    };
    let target = canonical(out);
    let protected = [
        state.to_path_buf(),
        crate::state::backup_path(state),
        crate::state::lock::lock_path(state),
    ];
    for p in &protected {
        if target.is_some() && canonical(p) == target {
            return Err(refuse(format!(
                "it is the state file{} ({})",
                if p == state { "" } else { "'s backup or lock" },
                p.display()
            )));
        }
    }
    match std::fs::symlink_metadata(out) {
        Err(_) => Ok(()),
        Ok(_) => {
            let text = read_plan_text(out)
                .map_err(|e| refuse(format!("it exists and is not a dcm plan ({e})")))?;
            serde_json::from_str::<SavedPlan>(&text)
                .map(|_| ())
                .map_err(|_| {
                    refuse(
                        "it exists and is not a dcm plan; remove it first, or choose another name"
                            .into(),
                    )
                })
        }
    }
}

/// Saves a plan (atomically), with what it was made from; signed when `plan_key` is
/// given.
pub fn save(
    plan: &Plan,
    binding: Binding,
    plan_key: Option<&[u8]>,
    path: &std::path::Path,
) -> Result<(), PlanFileError> {
    let binding = Some(binding);
    let bytes = body(plan, &binding);
    let saved = SavedPlan {
        checksum: checksum(&bytes),
        signature: plan_key.map(|k| signature(&bytes, k)),
        binding,
        plan: plan.clone(),
    };
    let werr = |source| PlanFileError::Write {
        path: path.display().to_string(),
        source,
    };
    let text = serde_json::to_string_pretty(&saved).map_err(|e| werr(std::io::Error::other(e)))?;
    crate::target::dir::write_atomically(path, text.as_bytes()).map_err(werr)
}

/// Loads a saved plan and checks that it is whole and unmodified.
pub fn load(path: &std::path::Path) -> Result<Plan, PlanFileError> {
    load_saved(path, None).map(|s| s.plan)
}

/// Loads a saved plan, checks that it is whole and unmodified and, with `plan_key`
/// (`DCM_PLAN_KEY`), that it is signed with it.
pub fn load_saved(
    path: &std::path::Path,
    plan_key: Option<&[u8]>,
) -> Result<SavedPlan, PlanFileError> {
    let p = path.display().to_string();
    let text = read_plan_text(path)?;
    let saved: SavedPlan = serde_json::from_str(&text).map_err(|e| PlanFileError::Invalid {
        path: p.clone(),
        message: e.to_string(),
    })?;
    if saved.plan.format_version != PLAN_FORMAT_VERSION {
        return Err(PlanFileError::Version {
            path: p,
            found: saved.plan.format_version,
        });
    }
    let bytes = body(&saved.plan, &saved.binding);
    if checksum(&bytes) != saved.checksum {
        return Err(PlanFileError::Tampered { path: p });
    }
    if let Some(key) = plan_key {
        let Some(sig) = &saved.signature else {
            return Err(PlanFileError::Unsigned { path: p });
        };
        if !crate::keyed::constant_time_eq(sig.as_bytes(), signature(&bytes, key).as_bytes()) {
            return Err(PlanFileError::BadSignature { path: p });
        }
    }
    Ok(saved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateEntry;
    use serde_json::json;

    fn desired() -> (Desired, Graph) {
        let toml = r#"
[clusters.c]
dir = "x"
[[resources]]
clusters = ["c"]
manifest = { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "a", namespace = "default" }, data = { k = "v" } }
"#;
        let src = crate::diag::SourceFile::new("t.toml", toml.to_string());
        let m = crate::model::build(crate::config::parse(src, ".".into()).unwrap()).unwrap();
        let d = crate::compile::compile(&m, &Default::default()).unwrap();
        let g = crate::graph::build(&d).unwrap();
        (d, g)
    }

    fn entry(d: &Desired, sha: &str, origin: Origin, pending: bool) -> StateEntry {
        let id = &d.objects[0].id;
        StateEntry {
            address: id.address(),
            cluster: id.cluster.clone(),
            api_version: "v1".into(),
            kind: id.kind.clone(),
            namespace: id.namespace.clone(),
            name: id.name.clone(),
            sha256: sha.into(),
            origin,
            pending,
            depends_on: vec![],
            allocated: Default::default(),
            uid: None,
        }
    }

    fn plan_with(state: Option<&State>, live: Option<Value>) -> Plan {
        let (d, g) = desired();
        let mut l = BTreeMap::new();
        if let Some(v) = live {
            l.insert(d.objects[0].id.clone(), v);
        }
        build(&mut PlanInputs {
            desired: &d,
            graph: &g,
            state,
            live: &mut l,
            config: "t.toml".into(),
            destroy: false,
            ownership: Default::default(),
        })
    }

    #[test]
    fn an_object_written_before_a_kill_is_recorded_not_rewritten() {
        let (d, _) = desired();
        let mut s = State::new();
        s.upsert(entry(
            &d,
            &object_sha256(&d.objects[0].object),
            Origin::Created,
            true,
        ));
        // Server-set fields do not count as a difference.
        let mut live = d.objects[0].object.as_ref().clone();
        live["metadata"]["uid"] = json!("123");
        live["status"] = json!({});
        let p = plan_with(Some(&s), Some(live));
        assert_eq!(p.changes.len(), 1);
        assert_eq!(
            (p.changes[0].action, p.changes[0].record),
            (Action::NoOp, true)
        );
        assert_eq!(
            p.changes[0].origin,
            Some(Origin::Created),
            "a pending create stays dcm's"
        );
        assert_eq!(
            p.summary,
            Summary {
                state_only: 1,
                ..Summary::default()
            }
        );
    }

    #[test]
    fn recorded_and_matching_means_no_changes() {
        let (d, _) = desired();
        let mut s = State::new();
        s.upsert(entry(
            &d,
            &object_sha256(&d.objects[0].object),
            Origin::Created,
            false,
        ));
        let p = plan_with(Some(&s), Some(d.objects[0].object.as_ref().clone()));
        assert!(!p.has_changes(), "{p:?}");
    }

    #[test]
    fn foreign_objects_are_refused_until_imported_and_then_forgotten_not_deleted() {
        let (d, g) = desired();
        let mut other = d.objects[0].object.as_ref().clone();
        other["data"]["k"] = json!("theirs");
        let p = plan_with(None, Some(other.clone()));
        assert_eq!(p.changes[0].action, Action::Refuse);
        assert_eq!(p.summary.refused, 1);
        assert!(
            p.changes[0].notes[1].contains("dcm import"),
            "{:?}",
            p.changes[0].notes
        );

        let address: BTreeSet<String> = [d.objects[0].id.address()].into();
        let mut l = BTreeMap::new();
        l.insert(d.objects[0].id.clone(), other.clone());
        let p = build(&mut PlanInputs {
            desired: &d,
            graph: &g,
            state: None,
            live: &mut l,
            config: "t.toml".into(),
            destroy: false,
            ownership: Ownership {
                imports: Some(&address),
                ..Default::default()
            },
        });
        assert_eq!(p.changes[0].action, Action::Update);
        assert_eq!(p.changes[0].origin, Some(Origin::Adopted));

        let mut s = State::new();
        s.upsert(entry(&d, "x", Origin::Adopted, false));
        let mut live = BTreeMap::new();
        live.insert(d.objects[0].id.clone(), other);
        let empty = Desired::default();
        let p = build(&mut PlanInputs {
            desired: &empty,
            graph: &Graph {
                deps: vec![],
                order: vec![],
            },
            state: Some(&s),
            live: &mut live,
            config: "t.toml".into(),
            destroy: false,
            ownership: Default::default(),
        });
        assert_eq!(p.changes[0].action, Action::Forget);
    }

    /// Plans `desired()` against one live object, with the given state and ownership.
    fn plan_owned(state: &State, live: Value, ownership: Ownership<'_>) -> Plan {
        let (d, g) = desired();
        let mut l = BTreeMap::new();
        l.insert(d.objects[0].id.clone(), live);
        build(&mut PlanInputs {
            desired: &d,
            graph: &g,
            state: Some(state),
            live: &mut l,
            config: "t.toml".into(),
            destroy: false,
            ownership,
        })
    }

    #[test]
    fn another_state_s_objects_and_objects_made_again_by_others_are_never_dcm_s() {
        let (d, _) = desired();
        let address = d.objects[0].id.address();
        let mine = State::new();
        let mut theirs = d.objects[0].object.as_ref().clone();
        crate::ownership::stamp(&mut theirs, "other-lineage", &address);
        let ours = Ownership {
            lineage: Some(&mine.lineage),
            ..Default::default()
        };
        let p = plan_owned(&mine, theirs.clone(), ours);
        assert_eq!(p.changes[0].action, Action::Refuse);
        assert!(p.changes[0].notes[0].contains("lineage other-lineage"));
        let take: BTreeSet<String> = [address.clone()].into();
        let taking = Ownership {
            take_over: Some(&take),
            ..ours
        };
        assert_eq!(
            plan_owned(&mine, theirs, taking).changes[0].action,
            Action::Update
        );

        // Its own marks, but no state entry (a lost state rebuilt): it is this state's.
        let mut own = d.objects[0].object.as_ref().clone();
        crate::ownership::stamp(&mut own, &mine.lineage, &address);
        assert!(plan_owned(&mine, own.clone(), ours)
            .changes
            .iter()
            .all(|c| c.action != Action::Refuse));

        // Created by dcm with UID a; now UID b: someone deleted and re-made it.
        let mut s = State::new();
        let mut e = entry(
            &d,
            &object_sha256(&d.objects[0].object),
            Origin::Created,
            false,
        );
        e.uid = Some("a".into());
        s.upsert(e);
        let mut remade = d.objects[0].object.as_ref().clone();
        crate::ownership::stamp(&mut remade, &s.lineage, &address);
        remade["metadata"]["uid"] = json!("b");
        let lineage = Ownership {
            lineage: Some(&s.lineage),
            ..Default::default()
        };
        let p = plan_owned(&s, remade.clone(), lineage);
        assert_eq!(p.changes[0].action, Action::Refuse);
        assert!(p.changes[0].notes[0].contains("UID was a, now b"));
        // When it leaves the file it is forgotten, never deleted.
        let mut live = BTreeMap::new();
        live.insert(d.objects[0].id.clone(), remade);
        let p = build(&mut PlanInputs {
            desired: &Desired::default(),
            graph: &Graph {
                deps: vec![],
                order: vec![],
            },
            state: Some(&s),
            live: &mut live,
            config: "t.toml".into(),
            destroy: false,
            ownership: lineage,
        });
        assert_eq!(p.changes[0].action, Action::Forget);
    }

    #[test]
    fn an_object_dcm_made_before_it_marked_objects_gets_its_marks() {
        let (d, _) = desired();
        let mut s = State::new();
        s.upsert(entry(
            &d,
            &object_sha256(&d.objects[0].object),
            Origin::Created,
            false,
        ));
        let ownership = Ownership {
            lineage: Some(&s.lineage),
            ..Default::default()
        };
        let p = plan_owned(&s, d.objects[0].object.as_ref().clone(), ownership);
        assert_eq!(p.changes[0].action, Action::Update);
        assert!(p.changes[0].diff.is_empty());
        let mut marked = d.objects[0].object.as_ref().clone();
        crate::ownership::stamp(&mut marked, &s.lineage, &d.objects[0].id.address());
        assert!(plan_owned(&s, marked, ownership).changes.is_empty());
    }

    #[test]
    fn relative_paths_climb_out_of_the_plan_s_directory() {
        use std::path::Path;
        let rel = |a: &str, b: &str| relative_path(Path::new(a), Path::new(b)).unwrap();
        assert_eq!(rel("/p/plans", "/p/dcm.toml"), Path::new("../dcm.toml"));
        assert_eq!(rel("/p", "/p/dcm.toml"), Path::new("dcm.toml"));
        assert_eq!(rel("/a/b/c", "/x/y.toml"), Path::new("../../../x/y.toml"));
    }

    #[test]
    fn a_binding_names_the_object_that_changed_and_keeps_secret_values_out() {
        let toml = |value: &str| {
            format!(
                r#"
[clusters.c]
dir = "x"
secrets = "plaintext"
[[resources]]
clusters = ["c"]
manifest = {{ apiVersion = "v1", kind = "Secret", metadata = {{ name = "s", namespace = "default" }}, stringData = {{ k = "{value}" }} }}
"#
            )
        };
        let compile = |text: String| {
            let src = crate::diag::SourceFile::new("t.toml", text);
            let m = crate::model::build(crate::config::parse(src, ".".into()).unwrap()).unwrap();
            crate::compile::compile(&m, &Default::default()).unwrap()
        };
        let key = b"k".as_slice();
        let a = Binding::of(b"a", &compile(toml("first-value")), Some(key));
        let text = serde_json::to_string(&a).unwrap();
        assert!(!text.contains("first-value"), "{text}");
        assert!(text.contains(SENSITIVE));
        let b = Binding::of(b"a", &compile(toml("second-value")), Some(key));
        let m = a.mismatch(&b).unwrap();
        assert_eq!(m.check, "inputs");
        assert!(
            m.why
                .contains("a Secret value of c/core/Secret/default/s changed"),
            "{}",
            m.why
        );
        assert_eq!(a.mismatch(&a.clone()), None);
        let c = Binding::of(b"other", &compile(toml("first-value")), Some(key));
        assert_eq!(a.mismatch(&c).unwrap().check, "config");
        assert!(a.config_matches(b"a", Some(key)) && !a.config_matches(b"b", Some(key)));
    }

    #[test]
    fn staleness_names_what_moved() {
        let a = plan_with(None, None);
        assert_eq!(a.staleness(&a.clone()), None);
        let b = plan_with(
            None,
            Some(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "default"}}),
            ),
        );
        assert!(
            a.staleness(&b).unwrap().contains("the live object changed"),
            "{:?}",
            a.staleness(&b)
        );
    }
}
