//! `drift`: compares the live objects with what dcm last applied. Changes nothing.

use super::{load, runtime, Error, Exit, Global};
use crate::compile::edit::{contribution_sha, Edit};
use crate::diff::{unified, DiffLine};
use crate::object::object_sha256;
use crate::state::Origin;
use crate::target::normalize_live;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct DriftOptions {
    pub file: PathBuf,
    pub json: bool,
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
}

/// `dcm drift`.
///
/// 1. load the file (for the clusters' targets) and read the state, without locking;
/// 2. read every object the state records;
/// 3. report each that is gone or whose hash differs from the one applied.
pub fn drift(opts: &DriftOptions, global: &Global) -> Result<Exit, Error> {
    let state = crate::state::read(&global.state)?;
    let loaded = load(&opts.file, state.as_ref())?;
    let Some(state) = state else {
        crate::outln!(
            "No state at {}: nothing has been applied yet, so nothing can drift.",
            global.state.display()
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
    let live = runtime()?.block_on(crate::refresh::read_live(
        &targets,
        items,
        global.parallelism,
    ))?;
    let mut drifted = Vec::new();
    for e in &state.objects {
        let id = e.id();
        let current = live.get(&id).map(|v| normalize_live(v.clone()));
        // For an object dcm only edits, only dcm's part can drift.
        let live_sha = current.as_ref().map(|l| match e.origin {
            Origin::Edited => {
                let kind = Edit::of_mode(e.allocated.get("edit").map(String::as_str));
                let parts = crate::compile::edit::recorded_parts(&e.allocated)
                    .unwrap_or_else(|| crate::compile::edit::parts_in(&kind, l));
                contribution_sha(&kind, l, &parts)
            }
            _ => object_sha256(l),
        });
        let kind = match (&current, &live_sha) {
            _ if e.pending => "unknown",
            (None, _) => "deleted",
            (Some(_), Some(sha)) if *sha != e.sha256 => "changed",
            _ => continue,
        };
        let diff = match (&current, loaded.desired.get(&id)) {
            (Some(l), Some(d)) if object_sha256(&d.object) == e.sha256 => unified(&d.object, l),
            _ => Vec::new(),
        };
        drifted.push(Drifted {
            address: e.address.clone(),
            drift: kind,
            applied_sha256: e.sha256.clone(),
            live_sha256: live_sha,
            diff,
        });
    }
    if opts.json {
        let doc = serde_json::json!({
            "drift": !drifted.is_empty(),
            "checked": state.objects.len(),
            "objects": drifted,
        });
        crate::outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
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
                "deleted" => "was deleted outside dcm",
                "unknown" => "is in an unknown state (an apply was interrupted); run apply",
                _ => "changed outside dcm",
            };
            crate::outln!(
                "\n  {} {}",
                style.yellow("!"),
                style.bold(&format!("{} {what}", d.address))
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
