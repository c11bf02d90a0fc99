//! `dcm import` and `dcm state recover`: state entries made from what is live, for
//! objects that already exist (imported) or that a lost state once held (recovered).

use super::{load, runtime, Error, Exit, Global};
use crate::ownership::Marks;
use crate::state::{Origin, StateEntry, StateStore};
use crate::target::{normalize_live, ReadItem};
use std::path::Path;

/// In a state entry's `allocated`: the lineage an import with `--take-over` took the
/// object from.
pub const TAKEN_FROM: &str = "taken_from";

/// `dcm import ADDRESS... [-f FILE] [--take-over]`.
///
/// 1. lock the state and load the file (each address must be an object it declares,
///    whole, not one dcm only edits, and not yet in the state);
/// 2. read each object: it must exist, and carry no other dcm state's labels unless
///    `take_over`;
/// 3. record them as imported (they are forgotten, not deleted, when they leave the
///    file), with their UID and the hash of what is live; nothing in a cluster changes.
pub fn import(
    file: &Path,
    addresses: &[String],
    take_over: bool,
    global: &Global,
) -> Result<Exit, Error> {
    let target = super::state_target(global, Some(file))?;
    let mut store = StateStore::open_at(&target.location, &target.access, "import")?;
    let state = store.existed().then_some(&store.state);
    let loaded = load(file, state)?;
    let mut wanted = Vec::new();
    for address in addresses {
        let d = loaded
            .desired
            .objects
            .iter()
            .find(|o| o.id.address() == *address)
            .ok_or_else(|| {
                let mut msg = format!(
                    "{address} is not an object that {} declares; nothing was imported",
                    file.display()
                );
                let all = loaded.desired.objects.iter().map(|o| o.id.address());
                let all: Vec<String> = all.collect();
                if let Some(s) = crate::diag::did_you_mean(address, all.iter().map(String::as_str))
                {
                    msg.push_str(&format!("\n  = help: did you mean {s}?"));
                }
                Error::Usage(msg)
            })?;
        if d.edit.is_some() {
            return Err(Error::Usage(format!(
                "{address} is an object dcm only edits (its own part of it); there is nothing to import"
            )));
        }
        if store.state.get(&d.id).is_some() {
            return Err(Error::Usage(format!(
                "{address} is already in the state; nothing was imported"
            )));
        }
        wanted.push(d);
    }
    let targets = loaded.targets(global, Some(&store.state))?;
    let items: Vec<ReadItem> = wanted
        .iter()
        .map(|d| ReadItem {
            id: d.id.clone(),
            api_version: d.api_version.clone(),
            desired: Some(std::sync::Arc::clone(&d.object)),
            whole: false,
            // Asked for by name: the user hands it to dcm.
            owned: true,
        })
        .collect();
    let live = runtime()?.block_on(crate::refresh::read_live(
        &targets,
        items,
        global.parallelism,
    ))?;
    let lineage = store.state.lineage.clone();
    let mut entries = Vec::new();
    for d in &wanted {
        let address = d.id.address();
        let Some(l) = live.get(&d.id) else {
            return Err(Error::Usage(format!(
                "{address} does not exist in cluster `{}`; nothing was imported (a plan creates it)",
                d.id.cluster
            )));
        };
        let marks = Marks::of(l);
        let mut allocated = d.allocated.clone();
        if let Some(theirs) = marks.lineage.as_ref().filter(|l| **l != lineage) {
            if !take_over {
                return Err(Error::Usage(format!(
                    "{address} belongs to another dcm state (lineage {theirs}); nothing was imported\n  = help: pass --take-over to take it anyway"
                )));
            }
            // Taken on purpose: until apply marks it as this state's, those marks are
            // expected, not a sign that someone took it back.
            allocated.insert(TAKEN_FROM.into(), theirs.clone());
        }
        entries.push(StateEntry {
            address: address.clone(),
            cluster: d.id.cluster.clone(),
            api_version: d.api_version.clone(),
            kind: d.id.kind.clone(),
            namespace: d.id.namespace.clone(),
            name: d.id.name.clone(),
            sha256: crate::keyed::for_state(
                &d.id,
                crate::object::object_sha256(&normalize_live(l.clone())),
                store.state.secrets_hmac_key.bytes().as_deref(),
            ),
            origin: Origin::Adopted,
            pending: false,
            depends_on: Vec::new(),
            allocated,
            uid: marks.uid,
        });
    }
    for e in entries {
        crate::outln!("{}: imported", e.address);
        store.state.upsert(e);
    }
    store.persist()?;
    crate::outln!(
        "\nImport complete: {} object{} now managed; `dcm plan` shows what the file would change.",
        wanted.len(),
        if wanted.len() == 1 { "" } else { "s" }
    );
    Ok(Exit::Ok)
}

/// `dcm state recover [-f FILE] [--lineage L]`: rebuilds a lost state from the marks dcm
/// puts on what it creates.
///
/// 1. refuse when a state exists (recover never overwrites one);
/// 2. read every object the file declares; the ones that carry dcm's marks name their
///    lineage (one must stand out, or be chosen with `lineage`);
/// 3. record those of that lineage as created, with their UIDs, ServiceEntry addresses as
///    they are live, and the hash of what is live (so the next plan shows any difference
///    from the file); edits dcm made (a Corefile region) are recorded as edits.
///
/// Objects of that lineage that the file no longer declares are not found
/// (`kubectl get -l dcm.io/lineage=L` finds them). Imported objects come back as
/// imported (their `dcm.io/imported` mark).
pub fn recover(file: &Path, lineage: Option<&str>, global: &Global) -> Result<Exit, Error> {
    let target = super::state_target(global, Some(file))?;
    let mut store = StateStore::open_at(&target.location, &target.access, "state recover")?;
    if store.existed() {
        return Err(Error::Usage(format!(
            "a state exists at {}; recover rebuilds a lost state and never replaces one (move it aside first)",
            target.location
        )));
    }
    let loaded = load(file, None)?;
    let targets = loaded.targets(global, Some(&store.state))?;
    let items: Vec<ReadItem> = loaded
        .desired
        .objects
        .iter()
        .map(|d| super::wanted(d, true))
        .collect();
    let live = runtime()?.block_on(crate::refresh::read_live(
        &targets,
        items,
        global.parallelism,
    ))?;
    let mut found: std::collections::BTreeMap<String, usize> = Default::default();
    for d in loaded.desired.objects.iter().filter(|d| d.edit.is_none()) {
        if let Some(l) = live.get(&d.id).and_then(|l| Marks::of(l).lineage) {
            *found.entry(l).or_default() += 1;
        }
    }
    let chosen = match (lineage, found.len()) {
        (Some(l), _) => l.to_string(),
        (None, 1) => found.keys().next().cloned().unwrap_or_default(),
        (None, 0) => {
            return Err(Error::Usage(format!(
                "no object that {} declares carries dcm's labels; there is nothing to recover (nothing was written)",
                file.display()
            )))
        }
        (None, _) => {
            let list: Vec<String> = found
                .iter()
                .map(|(l, n)| format!("{l} ({n} objects)"))
                .collect();
            return Err(Error::Usage(format!(
                "objects of several dcm states are live: {}; choose one with --lineage (nothing was written)",
                list.join(", ")
            )));
        }
    };
    store.state.lineage = chosen.clone();
    let mut recovered = 0;
    for (i, d) in loaded.desired.objects.iter().enumerate() {
        let Some(l) = live.get(&d.id) else { continue };
        let marks = Marks::of(l);
        let normalized = normalize_live(l.clone());
        let mut recovered_parts = None;
        let (origin, sha256) = match &d.edit {
            // dcm's parts of an object it edits are recovered when the object holds them.
            Some(e) => {
                let parts: std::collections::BTreeSet<String> = e
                    .parts()
                    .intersection(&crate::compile::edit::parts_in(e, &normalized))
                    .cloned()
                    .collect();
                if parts.is_empty() {
                    continue;
                }
                recovered_parts = Some(crate::compile::edit::parts_value(&parts));
                (
                    Origin::Edited,
                    crate::compile::edit::contribution_sha(e, &normalized, &parts),
                )
            }
            None if marks.lineage.as_deref() == Some(chosen.as_str()) => {
                let origin = if marks.imported {
                    Origin::Adopted
                } else {
                    Origin::Created
                };
                (origin, crate::object::object_sha256(&normalized))
            }
            None => continue,
        };
        let mut allocated = d.allocated.clone();
        if let Some(p) = recovered_parts.take() {
            allocated.insert("parts".into(), p);
        }
        if let Some(address) = normalized
            .pointer("/spec/addresses/0")
            .and_then(serde_json::Value::as_str)
            .filter(|_| allocated.contains_key("address"))
        {
            allocated.insert("address".into(), address.to_string());
        }
        store.state.upsert(StateEntry {
            address: d.id.address(),
            cluster: d.id.cluster.clone(),
            api_version: d.api_version.clone(),
            kind: d.id.kind.clone(),
            namespace: d.id.namespace.clone(),
            name: d.id.name.clone(),
            sha256: crate::keyed::for_state(
                &d.id,
                sha256,
                store.state.secrets_hmac_key.bytes().as_deref(),
            ),
            origin,
            pending: false,
            // For delete order, as apply records it.
            depends_on: loaded.graph.deps[i]
                .iter()
                .map(|&j| loaded.desired.objects[j].id.address())
                .collect(),
            allocated,
            uid: marks.uid,
        });
        crate::outln!("{}: recovered ({})", d.id.address(), origin_word(origin));
        recovered += 1;
    }
    store.persist()?;
    crate::outln!(
        "\nRecovered {recovered} object{} of lineage {chosen} into {}; `dcm plan` shows what the file would change.",
        if recovered == 1 { "" } else { "s" },
        target.location
    );
    Ok(Exit::Ok)
}

fn origin_word(o: Origin) -> &'static str {
    match o {
        Origin::Created => "created by dcm",
        Origin::Adopted => "imported",
        Origin::Edited => "edited by dcm",
    }
}
