//! `show`, `state list|show|rm` and `force-unlock`: looking at and mending the state.

use super::{Error, Exit, Global};
use crate::plan::render;
use crate::state::StateStore;
use std::path::Path;

/// The version of the layout of `dcm show --json` for the state.
pub const STATE_JSON_FORMAT_VERSION: u32 = 1;

/// The state as `dcm show --json` prints it: everything but its key.
#[derive(serde::Serialize)]
struct StateDoc<'a> {
    format_version: u32,
    /// Where the state was read from.
    state: String,
    /// The state file's own version; None when there is no state.
    version: Option<u32>,
    lineage: Option<&'a str>,
    serial: u64,
    clusters: std::collections::BTreeMap<&'a str, &'a crate::state::ClusterIdentity>,
    objects: &'a [crate::state::StateEntry],
}

/// `dcm show [PLAN] [--json]`: a saved plan, or the state.
pub fn show(plan: Option<&Path>, json: bool, global: &Global) -> Result<Exit, Error> {
    if let Some(path) = plan {
        let p = crate::plan::load(path)?;
        if json {
            crate::out!("{}", render::json(&p));
        } else {
            crate::out!("{}", render::text(&p, global.style));
            if let Some(w) = crate::plan::targeting::partial_warning(&p) {
                crate::outln!("\n{}", global.style.yellow(&w));
            }
        }
        return Ok(Exit::Ok);
    }
    let state = crate::state::read(&global.state)?;
    if json {
        let doc = StateDoc {
            format_version: STATE_JSON_FORMAT_VERSION,
            state: global.state.display().to_string(),
            version: state.as_ref().map(|s| s.version),
            lineage: state.as_ref().map(|s| s.lineage.as_str()),
            serial: state.as_ref().map(|s| s.serial).unwrap_or_default(),
            clusters: state
                .iter()
                .flat_map(|s| s.clusters.iter().map(|(k, v)| (k.as_str(), v)))
                .collect(),
            objects: state.as_ref().map(|s| &s.objects[..]).unwrap_or_default(),
        };
        let text = serde_json::to_string_pretty(&doc)
            .map_err(|e| Error::Io(format!("cannot render the state as JSON: {e}")))?;
        crate::outln!("{text}");
        return Ok(Exit::Ok);
    }
    let Some(state) = state else {
        crate::outln!("No state at {}.", global.state.display());
        return Ok(Exit::Ok);
    };
    crate::outln!(
        "State {} (lineage {}, serial {}): {} object{}",
        global.state.display(),
        state.lineage,
        state.serial,
        state.objects.len(),
        if state.objects.len() == 1 { "" } else { "s" }
    );
    for e in &state.objects {
        let pending = if e.pending { ", write interrupted" } else { "" };
        crate::outln!(
            "  {} ({:?}{pending}, sha256:{})",
            e.address,
            e.origin,
            crate::object::short_hash(&e.sha256)
        );
    }
    Ok(Exit::Ok)
}

fn read_state(global: &Global) -> Result<crate::state::State, Error> {
    crate::state::read(&global.state)?
        .ok_or_else(|| Error::Usage(format!("no state at {}", global.state.display())))
}

/// `dcm state list`: every address, one a line.
pub fn state_list(global: &Global) -> Result<Exit, Error> {
    if let Some(state) = crate::state::read(&global.state)? {
        for e in &state.objects {
            crate::outln!("{}", e.address);
        }
    }
    Ok(Exit::Ok)
}

/// `dcm state show ADDRESS`: one entry, as stored.
pub fn state_show(address: &str, global: &Global) -> Result<Exit, Error> {
    let state = read_state(global)?;
    let e = state
        .get_address(address)
        .ok_or_else(|| not_in_state(address, &state))?;
    crate::outln!("{}", serde_json::to_string_pretty(e).unwrap_or_default());
    Ok(Exit::Ok)
}

fn not_in_state(address: &str, state: &crate::state::State) -> Error {
    let mut msg = format!("{address} is not in the state");
    if let Some(s) =
        crate::diag::did_you_mean(address, state.objects.iter().map(|e| e.address.as_str()))
    {
        msg.push_str(&format!("\n  = help: did you mean {s}?"));
    }
    Error::Usage(msg)
}

/// `dcm state rm ADDRESS...`: dcm forgets objects; they stay in their clusters.
pub fn state_rm(addresses: &[String], global: &Global) -> Result<Exit, Error> {
    let mut store = StateStore::open(&global.state, "state rm")?;
    for a in addresses {
        if store.state.get_address(a).is_none() {
            return Err(not_in_state(a, &store.state));
        }
    }
    for a in addresses {
        store.state.remove(a);
    }
    store.persist()?;
    for a in addresses {
        crate::outln!("Removed {a} from the state (the object was left in its cluster).");
    }
    Ok(Exit::Ok)
}

/// `dcm force-unlock ID`.
pub fn force_unlock(id: &str, global: &Global) -> Result<Exit, Error> {
    let info = crate::state::lock::force_unlock(&global.state, id)?;
    crate::outln!(
        "Unlocked the state (was held by {} pid {} on {} for {}). If that run is still going, it may still write the state.",
        info.who, info.pid, info.host, info.operation
    );
    Ok(Exit::Ok)
}
