//! `dcm import`: start managing objects that already exist, as `terraform import` does.

use super::{load, runtime, Error, Exit, Global};
use crate::ownership::Marks;
use crate::state::{Origin, StateEntry, StateStore};
use crate::target::{normalize_live, ReadItem};
use std::path::Path;

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
    let mut store = StateStore::open(&global.state, "import")?;
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
            desired: Some(d.object.clone()),
            whole: false,
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
        if let Some(theirs) = marks.lineage.as_ref().filter(|l| **l != lineage) {
            if !take_over {
                return Err(Error::Usage(format!(
                    "{address} belongs to another dcm state (lineage {theirs}); nothing was imported\n  = help: pass --take-over to take it anyway"
                )));
            }
        }
        entries.push(StateEntry {
            address: address.clone(),
            cluster: d.id.cluster.clone(),
            api_version: d.api_version.clone(),
            kind: d.id.kind.clone(),
            namespace: d.id.namespace.clone(),
            name: d.id.name.clone(),
            sha256: crate::object::object_sha256(&normalize_live(l.clone())),
            origin: Origin::Adopted,
            pending: false,
            depends_on: Vec::new(),
            allocated: d.allocated.clone(),
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
