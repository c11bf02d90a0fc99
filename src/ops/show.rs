//! `show`, `state list|show|rm|mv|pull|push` and `force-unlock`: looking at, moving and
//! mending the state, wherever it lives.

use super::{state_target, Error, Exit, Global};
use crate::object::ObjRef;
use crate::plan::render;
use crate::state::{StateEntry, StateStore};
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
    objects: &'a crate::state::Entries,
}

/// `dcm show [PLAN] [--json]`: a saved plan, or the state.
pub fn show(
    plan: Option<&Path>,
    json: bool,
    file: Option<&Path>,
    global: &Global,
) -> Result<Exit, Error> {
    if let Some(path) = plan {
        let p = crate::plan::load(path)?;
        if json {
            render::print_json(&p);
        } else {
            render::print_text(&p, global.style);
            if let Some(w) = crate::plan::targeting::partial_warning(&p) {
                crate::outln!("\n{}", global.style.yellow(&w));
            }
        }
        return Ok(Exit::Ok);
    }
    let target = state_target(global, file)?;
    let state = crate::state::read_at(&target.location, &target.access)?;
    if json {
        let none = crate::state::Entries::new();
        let doc = StateDoc {
            format_version: STATE_JSON_FORMAT_VERSION,
            state: target.location.to_string(),
            version: state.as_ref().map(|s| s.version),
            lineage: state.as_ref().map(|s| s.lineage.as_str()),
            serial: state.as_ref().map(|s| s.serial).unwrap_or_default(),
            clusters: state
                .iter()
                .flat_map(|s| s.clusters.iter().map(|(k, v)| (k.as_str(), v)))
                .collect(),
            objects: state.as_ref().map_or(&none, |s| &s.objects),
        };
        let text = serde_json::to_string_pretty(&doc)
            .map_err(|e| Error::Io(format!("cannot render the state as JSON: {e}")))?;
        crate::outln!("{text}");
        return Ok(Exit::Ok);
    }
    let Some(state) = state else {
        crate::outln!("No state at {}.", target.location);
        return Ok(Exit::Ok);
    };
    crate::outln!(
        "State {} (lineage {}, serial {}): {} object{}",
        target.location,
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

fn read_state(global: &Global, file: Option<&Path>) -> Result<crate::state::State, Error> {
    let target = state_target(global, file)?;
    crate::state::read_at(&target.location, &target.access)?
        .ok_or_else(|| Error::Usage(format!("no state at {}", target.location)))
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters (`/`
/// included) and `?` for any one character; everything else stands for itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and where in the text it started matching.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                // Let the last `*` take one more character.
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// `dcm state list [GLOB]`: every address (those `GLOB` matches), one a line.
pub fn state_list(glob: Option<&str>, file: Option<&Path>, global: &Global) -> Result<Exit, Error> {
    let target = state_target(global, file)?;
    let Some(state) = crate::state::read_at(&target.location, &target.access)? else {
        return Ok(Exit::Ok);
    };
    let mut any = false;
    for e in &state.objects {
        if glob.is_none_or(|g| glob_match(g, &e.address)) {
            crate::outln!("{}", e.address);
            any = true;
        }
    }
    if let (false, Some(g), false) = (any, glob, state.objects.is_empty()) {
        crate::errln!("No address in the state matches `{g}`.");
    }
    Ok(Exit::Ok)
}

/// `dcm state show ADDRESS`: one entry, as stored.
pub fn state_show(address: &str, file: Option<&Path>, global: &Global) -> Result<Exit, Error> {
    let state = read_state(global, file)?;
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
pub fn state_rm(addresses: &[String], file: Option<&Path>, global: &Global) -> Result<Exit, Error> {
    let target = state_target(global, file)?;
    let mut store = StateStore::open_at(&target.location, &target.access, "state rm")?;
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

/// An address given on the command line, checked as a state entry's would be.
fn parse_address(text: &str) -> Result<ObjRef, Error> {
    let id = ObjRef::parse_address(text).ok_or_else(|| {
        Error::Usage(format!(
            "`{text}` is not an object address: write CLUSTER/GROUP/KIND/NAMESPACE/NAME as `dcm state list` shows them (`core` for the core group, `_cluster` for cluster-scoped objects)"
        ))
    })?;
    let valid = crate::object::check_dns_label(&id.cluster)
        .map_err(|why| format!("its cluster {why}"))
        .and_then(|_| match id.namespace.as_str() {
            "" => Ok(()),
            ns => crate::object::check_dns_label(ns).map_err(|why| format!("its namespace {why}")),
        })
        .and_then(|_| {
            crate::object::check_object_name(&id.group, &id.kind, &id.name)
                .map_err(|why| format!("its name {why}"))
        });
    valid.map_err(|why| Error::Usage(format!("`{text}` is not a valid address: {why}")))?;
    Ok(id)
}

/// `dcm state mv SRC DST`: the entry of SRC becomes the entry of DST (e.g. after a cluster
/// key was renamed in the file); nothing in a cluster changes.
///
/// What refers to SRC follows it: other entries' `depends_on`, and, when it moves to a
/// cluster key the state does not know yet, the identity of SRC's cluster. The values dcm
/// allocated move with it, and must not clash with those of the cluster it moves to. When
/// the namespace or name change, the recorded UID is dropped (it was another object's).
pub fn state_mv(src: &str, dst: &str, file: Option<&Path>, global: &Global) -> Result<Exit, Error> {
    let (from, to) = (parse_address(src)?, parse_address(dst)?);
    if (&from.group, &from.kind) != (&to.group, &to.kind) {
        return Err(Error::Usage(format!(
            "cannot move {src} to {dst}: an entry keeps its kind and group ({} there, {} here); nothing was changed",
            kind_name(&from),
            kind_name(&to)
        )));
    }
    if from.namespace.is_empty() != to.namespace.is_empty() {
        return Err(Error::Usage(format!(
            "cannot move {src} to {dst}: one is cluster-scoped (`_cluster`) and the other is not; nothing was changed"
        )));
    }
    if from == to {
        return Err(Error::Usage(format!(
            "{src} and {dst} are the same address; nothing was changed"
        )));
    }
    let target = state_target(global, file)?;
    let mut store = StateStore::open_at(&target.location, &target.access, "state mv")?;
    let state = &mut store.state;
    let Some(old) = state.get_address(src).cloned() else {
        return Err(not_in_state(src, state));
    };
    // The address as the state writes it (`core`, `_cluster`).
    let dst = to.address();
    if state.get_address(&dst).is_some() {
        return Err(Error::Usage(format!(
            "cannot move {src} to {dst}: {dst} is in the state already; nothing was changed\n  = help: `dcm state rm {dst}` first if that entry is stale"
        )));
    }
    if let Some(ip) = old
        .allocated
        .get("address")
        .filter(|_| from.cluster != to.cluster)
    {
        if let Some(clash) = state
            .objects
            .iter()
            .find(|e| e.cluster == to.cluster && e.allocated.get("address") == Some(ip))
        {
            return Err(Error::Usage(format!(
                "cannot move {src} to {dst}: its allocated address {ip} is already {}'s in cluster `{}`; nothing was changed",
                clash.address, to.cluster
            )));
        }
    }
    let same_object = from.namespace == to.namespace && from.name == to.name;
    let moved = StateEntry {
        address: dst.clone(),
        cluster: to.cluster.clone(),
        namespace: to.namespace.clone(),
        name: to.name.clone(),
        uid: if same_object { old.uid.clone() } else { None },
        ..old.clone()
    };
    state.remove(&old.address);
    state.upsert(moved);
    state.objects.rename_dependency(&old.address, &dst);
    if from.cluster != to.cluster && !state.clusters.contains_key(&to.cluster) {
        if let Some(identity) = state.clusters.get(&from.cluster).cloned() {
            state.clusters.insert(to.cluster.clone(), identity);
        }
    }
    if !state.objects.iter().any(|e| e.cluster == from.cluster) {
        state.clusters.remove(&from.cluster);
    }
    store.persist()?;
    crate::outln!(
        "Moved {} to {dst} in the state {} (nothing in a cluster changed).",
        old.address,
        target.location
    );
    Ok(Exit::Ok)
}

fn kind_name(id: &ObjRef) -> String {
    if id.group.is_empty() {
        id.kind.clone()
    } else {
        format!("{}.{}", id.kind, id.group)
    }
}

/// `dcm state pull`: the state, as JSON, on stdout (what `state push` takes).
pub fn state_pull(file: Option<&Path>, global: &Global) -> Result<Exit, Error> {
    let target = state_target(global, file)?;
    let Some(state) = crate::state::read_at(&target.location, &target.access)? else {
        crate::errln!("No state at {}.", target.location);
        return Ok(Exit::Ok);
    };
    let text = serde_json::to_string_pretty(&state)
        .map_err(|e| Error::Io(format!("cannot render the state: {e}")))?;
    crate::outln!("{text}");
    Ok(Exit::Ok)
}

/// `dcm state push FILE`: `FILE` (`-`: standard input), a state as `state pull` prints
/// it, becomes the state. Refused when the state there has another lineage, or a serial
/// as high or higher, unless `force`.
pub fn state_push(
    path: &Path,
    force: bool,
    file: Option<&Path>,
    global: &Global,
) -> Result<Exit, Error> {
    let shown = path.display().to_string();
    let text = if shown == "-" {
        let mut t = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)
            .map_err(|e| Error::Io(format!("cannot read the state from standard input: {e}")))?;
        t
    } else {
        std::fs::read_to_string(path).map_err(|e| Error::Io(format!("cannot read {shown}: {e}")))?
    };
    let pushed = crate::state::parse_state(&text).map_err(|p| Error::from(p.at(&shown)))?;
    let target = state_target(global, file)?;
    let mut store = StateStore::open_at(&target.location, &target.access, "state push")?;
    if store.existed() {
        let now = &store.state;
        if pushed.lineage != now.lineage && !force {
            return Err(Error::Refused(format!(
                "{shown} has lineage {}, but the state at {} has lineage {}: they are different states; nothing was pushed\n  = help: push it anyway (replacing that state) with --force",
                pushed.lineage, target.location, now.lineage
            )));
        }
        if pushed.serial <= now.serial && !force {
            return Err(Error::Refused(format!(
                "{shown} has serial {}, not above the serial {} of the state at {} (lineage {}): it is older or the same; nothing was pushed\n  = help: pull the state again and make the change there, or push it anyway with --force",
                pushed.serial,
                now.serial,
                target.location,
                now.lineage
            )));
        }
    }
    let (lineage, count) = (pushed.lineage.clone(), pushed.objects.len());
    store.replace(pushed)?;
    crate::outln!(
        "Pushed {shown} to {}: lineage {lineage}, serial {}, {count} object{}.",
        target.location,
        store.state.serial,
        if count == 1 { "" } else { "s" }
    );
    Ok(Exit::Ok)
}

/// `dcm force-unlock ID`.
pub fn force_unlock(id: &str, file: Option<&Path>, global: &Global) -> Result<Exit, Error> {
    let target = state_target(global, file)?;
    let info = crate::state::force_unlock_at(&target.location, &target.access, id)?;
    crate::outln!(
        "Unlocked the state at {} (was held by {} pid {} on {} for {}). If that run is still going, it may still write the state.",
        target.location, info.who, info.pid, info.host, info.operation
    );
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs_match_any_run_with_star_and_one_character_with_question_mark() {
        let a = "c1/core/ConfigMap/default/x";
        assert!(glob_match("c1/*", a));
        assert!(glob_match("*/ConfigMap/*", a));
        assert!(glob_match("c?/core/*/default/?", a));
        assert!(glob_match("*", a));
        assert!(glob_match(a, a));
        assert!(!glob_match("c2/*", a));
        assert!(!glob_match("c1/core/ConfigMap/default/", a));
        assert!(!glob_match("*/Secret/*", a));
        assert!(!glob_match("c1/core/ConfigMap/default/x?", a));
        assert!(glob_match("**x", a) && glob_match("*a*l*x", a));
        assert!(glob_match("", "") && !glob_match("", "a"));
    }
}
