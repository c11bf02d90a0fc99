//! `drift`: compares the live objects with what dcm last applied. Changes nothing.

use super::{load, runtime, Error, Exit, Global};
use crate::compile::edit::{contribution_sha, Edit};
use crate::diff::{unified, DiffLine};
use crate::object::object_sha256;
use crate::state::Origin;
use crate::target::normalize_live;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// The version of the JSON drift report's layout.
pub const DRIFT_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone)]
pub struct DriftOptions {
    pub file: PathBuf,
    pub json: bool,
    /// Markdown, for an issue or pull-request comment.
    pub markdown: bool,
    /// `--max-bytes`: the most the Markdown report may take.
    pub max_bytes: usize,
}

/// One object that is not as dcm left it.
#[derive(Debug, Clone, Serialize)]
pub struct Drifted {
    pub address: String,
    /// `changed`, `deleted`, or `unknown` (an apply was interrupted while writing it).
    pub drift: &'static str,
    pub applied_sha256: String,
    pub live_sha256: Option<String>,
    /// How the live object differs from what was applied, when the file still wants
    /// exactly what was applied (secrets redacted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<DiffLine>,
    /// For a changed object, the field managers other than dcm that changed it since dcm
    /// applied it or own fields the file sets (from its `managedFields`; empty where the
    /// target keeps none, as a directory).
    pub changed_by: Vec<String>,
}

/// `dcm drift`.
///
/// 1. load the file (for the clusters' targets) and read the state, without locking;
/// 2. read every object the state records;
/// 3. report each that is gone or whose hash differs from the one applied;
/// 4. read the changed ones whole, to name who changed them (`managedFields`).
pub fn drift(opts: &DriftOptions, global: &Global) -> Result<Exit, Error> {
    let target = super::state_target(global, Some(&opts.file))?;
    let state = crate::state::read_at(&target.location, &target.access)?;
    let loaded = load(&opts.file, state.as_ref())?;
    let Some(state) = state else {
        crate::outln!(
            "No state at {}: nothing has been applied yet, so nothing can drift.",
            target.location
        );
        return Ok(Exit::Ok);
    };
    let targets = loaded.targets(global, Some(&state))?;
    // What the file still wants is read first, so its request (with the desired object) wins.
    let wanted: std::collections::BTreeSet<_> = state.objects.iter().map(|e| e.id()).collect();
    let items = loaded
        .read_items(Some(&state))
        .into_iter()
        .filter(|i| wanted.contains(&i.id));
    // One runtime for every read: the clients' connections live in it.
    let rt = runtime()?;
    let live = rt.block_on(crate::refresh::read_live(
        &targets,
        items,
        global.parallelism,
    ))?;
    let key = state.secrets_hmac_key.bytes();
    let mut drifted = Vec::new();
    for e in &state.objects {
        let id = e.id();
        let current = live.get(&id).map(|v| normalize_live(v.clone()));
        let live_sha = current.as_ref().map(|l| managed_sha(e, l));
        let matches =
            |plain: &str| crate::keyed::recorded_matches(&e.sha256, plain, key.as_deref());
        let kind = match (&current, &live_sha) {
            _ if e.pending => "unknown",
            (None, _) => "deleted",
            (Some(_), Some(sha)) if !matches(sha) => "changed",
            _ => continue,
        };
        let diff = match (&current, loaded.desired.get(&id)) {
            (Some(l), Some(d)) if matches(&object_sha256(&d.object)) => {
                let mut seen = Vec::new();
                unified(&d.object, l)
                    .into_iter()
                    .map(|mut line| {
                        line.text = crate::keyed::seal_text(&line.text, key.as_deref(), &mut seen);
                        line
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        // A Secret's live hash is keyed like the state's.
        let live_sha = live_sha.map(|h| crate::keyed::for_state(&id, h, key.as_deref()));
        drifted.push(Drifted {
            address: e.address.clone(),
            drift: kind,
            applied_sha256: e.sha256.clone(),
            live_sha256: live_sha,
            diff,
            changed_by: Vec::new(),
        });
    }
    // dcm's view of an object leaves other managers' entries out: read the changed ones
    // whole to see them.
    let changed: Vec<_> = state
        .objects
        .iter()
        .filter(|e| {
            drifted
                .iter()
                .any(|d| d.address == e.address && d.drift == "changed")
        })
        .map(|e| crate::target::ReadItem {
            id: e.id(),
            api_version: e.api_version.clone(),
            desired: None,
            whole: true,
            owned: true,
        })
        .collect();
    if !changed.is_empty() {
        let whole = rt.block_on(crate::refresh::read_live(
            &targets,
            changed,
            global.parallelism,
        ))?;
        for d in drifted.iter_mut() {
            let Some(id) = crate::object::ObjRef::parse_address(&d.address) else {
                continue;
            };
            if let Some(live) = whole.get(&id) {
                d.changed_by = changed_by(live, loaded.desired.get(&id).map(|o| &*o.object));
            }
        }
    }
    if opts.json {
        let doc = serde_json::json!({
            "format_version": DRIFT_FORMAT_VERSION,
            "drift": !drifted.is_empty(),
            "checked": state.objects.len(),
            "objects": drifted,
        });
        crate::outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else if opts.markdown {
        let full_hint = format!(
            "The full report: `dcm drift -f {}`.",
            crate::markdown::code_text(&opts.file.display().to_string())
        );
        let review = markdown(
            &drifted,
            state.objects.len(),
            &loaded.model.project,
            &full_hint,
        );
        let md = crate::markdown::fit(&review, opts.max_bytes)
            .map_err(|e| Error::Usage(e.to_string()))?;
        crate::out!("{md}");
    } else if drifted.is_empty() {
        crate::outln!(
            "No drift: all {} objects match what was last applied.",
            state.objects.len()
        );
    } else {
        let style = global.style;
        crate::outln!(
            "Drift in {} of {} objects:",
            drifted.len(),
            state.objects.len()
        );
        for d in &drifted {
            let what = match d.drift {
                "deleted" => "was deleted outside dcm".to_string(),
                "unknown" => "is in an unknown state (an apply was interrupted); run apply".into(),
                _ if !d.changed_by.is_empty() => {
                    format!(": changed by {}", d.changed_by.join(", "))
                }
                _ => "changed outside dcm".into(),
            };
            let sep = if what.starts_with(':') { "" } else { " " };
            crate::outln!(
                "\n  {} {}",
                style.yellow("!"),
                style.bold(&format!("{}{sep}{what}", d.address))
            );
            for l in &d.diff {
                crate::outln!("      {}", crate::plan::render::paint_diff_line(l, style));
            }
        }
        crate::outln!("\nRun `dcm plan` to see what apply would do to restore them.");
    }
    Ok(if drifted.is_empty() {
        Exit::Ok
    } else {
        Exit::Changes
    })
}

/// The plain sha256 of what the state entry `e` holds of `live` (normalized): the whole
/// object, or, for an object dcm only edits, only dcm's part (all that can drift).
pub(crate) fn managed_sha(e: &crate::state::StateEntry, live: &Value) -> String {
    match e.origin {
        Origin::Edited => {
            let kind = Edit::of_mode(e.allocated.get("edit").map(String::as_str));
            let parts = crate::compile::edit::recorded_parts(&e.allocated)
                .unwrap_or_else(|| crate::compile::edit::parts_in(&kind, live));
            contribution_sha(&kind, live, &parts)
        }
        _ => object_sha256(live),
    }
}

/// What a drifted object is said to be, after its address.
fn drift_words(d: &Drifted) -> String {
    match d.drift {
        "deleted" => "was deleted outside dcm".to_string(),
        "unknown" => "is in an unknown state (an apply was interrupted); run apply".into(),
        _ if !d.changed_by.is_empty() => format!("changed by {}", d.changed_by.join(", ")),
        _ => "changed outside dcm".into(),
    }
}

/// The drift report as a review comment (`<!-- dcm:drift:<project> -->`): the summary,
/// a table by cluster and kind of drift, and each object (its diff in a `<details>`).
fn markdown(
    drifted: &[Drifted],
    checked: usize,
    project: &str,
    full_hint: &str,
) -> crate::markdown::Review {
    use crate::markdown::{code_block, details, escape_html, escape_text, Item, Review, Table};
    let summary = if drifted.is_empty() {
        format!("**No drift.** All {checked} objects match what was last applied.")
    } else {
        format!(
            "**Drift in {} of {checked} objects.** Run `dcm plan` to see what apply would do to restore them.",
            drifted.len()
        )
    };
    let table = Table::counts(drifted.iter().map(|d| (d.address.clone(), d.drift)), |k| {
        k.to_string()
    });
    let items = drifted
        .iter()
        .map(|d| {
            let words = drift_words(d);
            let line = format!("- `{}` {}\n", d.address, escape_text(&words));
            if d.diff.is_empty() {
                return Item {
                    full: line.clone(),
                    line,
                };
            }
            let lines: Vec<String> = d
                .diff
                .iter()
                .map(|l| {
                    if l.tag == '@' {
                        l.text.clone()
                    } else {
                        format!("{}{}", l.tag, l.text)
                    }
                })
                .collect();
            Item {
                full: details(
                    &format!(
                        "<code>{}</code> {}",
                        escape_html(&d.address),
                        escape_html(&words)
                    ),
                    &format!(
                        "From what dcm applied to what is live:\n\n{}",
                        code_block("diff", &lines)
                    ),
                ),
                line,
            }
        })
        .collect();
    Review {
        kind: "drift",
        project: project.to_string(),
        summary,
        table: (!drifted.is_empty()).then_some(table),
        items,
        full_hint: full_hint.to_string(),
        noun: "object",
    }
}

/// A path of field names into an object (`["data", "greeting"]`).
type FieldPath = Vec<String>;

/// Every field path a managedFields `fieldsV1` set names, down to list fields (whose
/// elements, `k:`/`v:`/`i:` keys, count as the list).
fn owned_paths(fields: &Value, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    let Some(map) = fields.as_object() else {
        return;
    };
    for (k, v) in map {
        if let Some(name) = k.strip_prefix("f:") {
            prefix.push(name.to_string());
            out.insert(prefix.clone());
            owned_paths(v, prefix, out);
            prefix.pop();
        }
    }
}

/// The paths of the values an object sets (lists and scalars as a whole), identity left
/// out.
fn set_paths(object: &Value, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    match object.as_object() {
        Some(map) => {
            for (k, v) in map {
                let identity = matches!(
                    (prefix.as_slice(), k.as_str()),
                    ([], "apiVersion" | "kind") | ([_], "name" | "namespace")
                ) && (prefix.is_empty() || prefix[0] == "metadata");
                if identity {
                    continue;
                }
                prefix.push(k.clone());
                set_paths(v, prefix, out);
                prefix.pop();
            }
        }
        None => {
            out.insert(prefix.clone());
        }
    }
}

/// The field managers other than dcm that changed `live` after dcm's last apply, or that
/// own fields `desired` (what the file sets) or dcm's apply sets; status writes are left
/// out. Sorted, each once.
pub fn changed_by(live: &Value, desired: Option<&Value>) -> Vec<String> {
    let Some(entries) = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    let text = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
    let dcm = crate::target::kube::FIELD_MANAGER;
    let ours = entries.iter().find(|e| {
        text(e, "manager").as_deref() == Some(dcm)
            && text(e, "operation").as_deref() == Some("Apply")
    });
    let applied_at = ours.and_then(|e| text(e, "time"));
    let mut dcm_sets = BTreeSet::new();
    if let Some(d) = desired {
        set_paths(d, &mut Vec::new(), &mut dcm_sets);
    }
    if let Some(fields) = ours.and_then(|e| e.get("fieldsV1")) {
        let mut owned = BTreeSet::new();
        owned_paths(fields, &mut Vec::new(), &mut owned);
        // Only the leaves of dcm's own set: a map it shares with others is no overlap.
        let leaves: Vec<FieldPath> = owned
            .iter()
            .filter(|p| !owned.iter().any(|q| q.len() > p.len() && q.starts_with(p)))
            .cloned()
            .collect();
        dcm_sets.extend(leaves);
    }
    let mut out = BTreeSet::new();
    for e in entries {
        let Some(manager) = text(e, "manager") else {
            continue;
        };
        if manager == dcm || text(e, "subresource").as_deref() == Some("status") {
            continue;
        }
        let at = |t: Option<&str>| t.and_then(|t| humantime::parse_rfc3339_weak(t).ok());
        let newer = match (at(text(e, "time").as_deref()), at(applied_at.as_deref())) {
            (Some(t), Some(a)) => t > a,
            _ => false,
        };
        let overlaps = || {
            let mut theirs = BTreeSet::new();
            if let Some(fields) = e.get("fieldsV1") {
                owned_paths(fields, &mut Vec::new(), &mut theirs);
            }
            dcm_sets.iter().any(|p| theirs.contains(p))
        };
        if newer || overlaps() {
            out.insert(manager);
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_managers_that_own_dcm_s_fields_or_wrote_after_it() {
        let live = json!({"metadata": {"name": "s", "managedFields": [
            {"manager": "dcm", "operation": "Apply", "time": "2025-01-01T00:00:00Z",
             "fieldsV1": {"f:data": {"f:other": {}}}},
            {"manager": "kubectl-edit", "operation": "Update", "time": "2025-01-01T00:00:00Z",
             "fieldsV1": {"f:data": {"f:greeting": {}}}},
            {"manager": "labeller", "operation": "Update", "time": "2024-12-01T00:00:00Z",
             "fieldsV1": {"f:metadata": {"f:labels": {"f:team": {}}}}},
            {"manager": "late", "operation": "Update", "time": "2025-02-01T00:00:00Z",
             "fieldsV1": {"f:data": {"f:mine": {}}}},
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
             "time": "2025-03-01T00:00:00Z", "fieldsV1": {"f:status": {}}}
        ]}});
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "s", "labels": {"app": "x"}}, "data": {"greeting": "hi", "other": "x"}});
        assert_eq!(changed_by(&live, Some(&desired)), ["kubectl-edit", "late"]);
        assert!(changed_by(&json!({"metadata": {}}), Some(&desired)).is_empty());
    }
}
