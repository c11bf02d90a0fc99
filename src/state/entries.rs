//! The state's entries, keyed by the object each records.
//!
//! Every object an apply or destroy finishes is one upsert or removal here; kept as a
//! sorted list, each cost a shift or a scan of the whole list, which made large runs
//! quadratic. A map keyed by [`ObjRef`] costs O(log n) per change and lists the entries
//! in the same order the file always has (that of [`ObjRef`], not of address strings).

use super::StateEntry;
use crate::object::ObjRef;
use serde::{Serialize, Serializer};
use std::collections::btree_map::{self, BTreeMap};

/// The entries of a state, one per object, in [`ObjRef`] order.
///
/// Each entry's address is the address of its id (loading a state checks it, and dcm
/// writes no other), so a lookup by address is a lookup by the id it parses to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entries(BTreeMap<ObjRef, StateEntry>);

/// The entries in order.
pub type Iter<'a> = btree_map::Values<'a, ObjRef, StateEntry>;

impl Entries {
    pub fn new() -> Entries {
        Entries::default()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries, in the order the file lists them.
    pub fn iter(&self) -> Iter<'_> {
        self.0.values()
    }

    /// The entry of object `id`.
    pub fn get(&self, id: &ObjRef) -> Option<&StateEntry> {
        self.0.get(id)
    }

    /// The entry whose address is `address`.
    pub fn get_address(&self, address: &str) -> Option<&StateEntry> {
        let id = ObjRef::parse_address(address)?;
        self.0.get(&id).filter(|e| e.address == address)
    }

    /// Adds or replaces the entry for the same object.
    pub fn upsert(&mut self, entry: StateEntry) {
        debug_assert_eq!(
            entry.address,
            entry.id().address(),
            "an entry's address is its id's"
        );
        self.0.insert(entry.id(), entry);
    }

    /// Removes the entry whose address is `address`; returns whether it was there.
    pub fn remove(&mut self, address: &str) -> bool {
        let Some(id) = ObjRef::parse_address(address) else {
            return false;
        };
        match self.0.get(&id) {
            Some(e) if e.address == address => self.0.remove(&id).is_some(),
            _ => false,
        }
    }

    /// Makes every entry that depended on `from` depend on `to` instead (`dcm state mv`).
    /// Dependencies are not part of an entry's identity, so no entry moves.
    pub fn rename_dependency(&mut self, from: &str, to: &str) {
        for e in self.0.values_mut() {
            for d in &mut e.depends_on {
                if d == from {
                    to.clone_into(d);
                }
            }
        }
    }

    /// Entries already sorted by id and checked to be one per id (what loading a state
    /// makes), with their ids.
    pub(super) fn from_sorted(sorted: Vec<(ObjRef, StateEntry)>) -> Entries {
        Entries(sorted.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a Entries {
    type Item = &'a StateEntry;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Entries upserted in turn: of two for the same object, the later one stays.
impl FromIterator<StateEntry> for Entries {
    fn from_iter<I: IntoIterator<Item = StateEntry>>(entries: I) -> Entries {
        let mut out = Entries::new();
        for e in entries {
            out.upsert(e);
        }
        out
    }
}

impl From<Vec<StateEntry>> for Entries {
    fn from(entries: Vec<StateEntry>) -> Entries {
        entries.into_iter().collect()
    }
}

/// A JSON array of the entries, in order: the file's `objects`.
impl Serialize for Entries {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Origin;

    fn entry(address: &str) -> StateEntry {
        let id = ObjRef::parse_address(address).unwrap();
        let api_version = match id.group.as_str() {
            "" => "v1".to_string(),
            g => format!("{g}/v1"),
        };
        StateEntry {
            address: address.into(),
            cluster: id.cluster,
            api_version,
            kind: id.kind,
            namespace: id.namespace,
            name: id.name,
            sha256: "s".into(),
            origin: Origin::Created,
            pending: false,
            depends_on: vec![],
            allocated: BTreeMap::new(),
            uid: None,
        }
    }

    fn addresses(entries: &Entries) -> Vec<&str> {
        entries.iter().map(|e| e.address.as_str()).collect()
    }

    /// Clusters `a` and `a-b`: as strings `a-b/...` sorts before `a/...` ('-' < '/'), but
    /// objects sort by cluster first, so `a`'s come first. The file has always listed them
    /// so.
    #[test]
    fn entries_serialize_in_object_order_not_address_order() {
        let entries: Entries = vec![
            entry("a-b/core/ConfigMap/default/x"),
            entry("a/core/Namespace/_cluster/default"),
            entry("a/apps/Deployment/default/web"),
            entry("a/core/ConfigMap/default/x"),
        ]
        .into();
        let json = serde_json::to_string(&entries).unwrap();
        let want = concat!(
            r#"[{"address":"a/apps/Deployment/default/web","cluster":"a","apiVersion":"apps/v1","kind":"Deployment","namespace":"default","name":"web","sha256":"s","origin":"created"},"#,
            r#"{"address":"a/core/ConfigMap/default/x","cluster":"a","apiVersion":"v1","kind":"ConfigMap","namespace":"default","name":"x","sha256":"s","origin":"created"},"#,
            r#"{"address":"a/core/Namespace/_cluster/default","cluster":"a","apiVersion":"v1","kind":"Namespace","name":"default","sha256":"s","origin":"created"},"#,
            r#"{"address":"a-b/core/ConfigMap/default/x","cluster":"a-b","apiVersion":"v1","kind":"ConfigMap","namespace":"default","name":"x","sha256":"s","origin":"created"}]"#,
        );
        assert_eq!(json, want);
        // The same as the sorted list the state used to keep.
        let mut list: Vec<StateEntry> = entries.iter().rev().cloned().collect();
        list.sort_by_key(StateEntry::id);
        assert_eq!(serde_json::to_string(&list).unwrap(), want);
    }

    #[test]
    fn upsert_replaces_the_entry_of_the_same_object_and_inserts_others_in_order() {
        let mut entries = Entries::new();
        entries.upsert(entry("c/core/ConfigMap/default/b"));
        entries.upsert(entry("c/core/ConfigMap/default/a"));
        let mut changed = entry("c/core/ConfigMap/default/b");
        changed.sha256 = "t".into();
        changed.pending = true;
        entries.upsert(changed.clone());
        assert_eq!(
            addresses(&entries),
            ["c/core/ConfigMap/default/a", "c/core/ConfigMap/default/b"]
        );
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries.get_address("c/core/ConfigMap/default/b"),
            Some(&changed)
        );
        // Duplicates in a list: the later one stays.
        let twice: Entries = vec![entry("c/core/ConfigMap/default/b"), changed.clone()].into();
        assert_eq!(twice.iter().collect::<Vec<_>>(), [&changed]);
    }

    #[test]
    fn remove_takes_exactly_the_entry_of_the_address() {
        let mut entries: Entries = vec![
            entry("c/core/ConfigMap/default/a"),
            entry("c/core/ConfigMap/default/b"),
            entry("c/core/Namespace/_cluster/default"),
        ]
        .into();
        assert!(entries.remove("c/core/ConfigMap/default/a"));
        assert!(
            !entries.remove("c/core/ConfigMap/default/a"),
            "gone already"
        );
        assert!(!entries.remove("c/core/ConfigMap/other/b"));
        assert!(!entries.remove("not an address"));
        assert!(entries.remove("c/core/Namespace/_cluster/default"));
        assert_eq!(addresses(&entries), ["c/core/ConfigMap/default/b"]);
        assert!(entries.remove("c/core/ConfigMap/default/b"));
        assert!(entries.is_empty());
    }

    #[test]
    fn lookups_by_id_and_by_address_find_the_same_entry() {
        let entries: Entries = vec![
            entry("a/core/ConfigMap/default/x"),
            entry("a-b/core/ConfigMap/default/x"),
            entry("a/rbac.authorization.k8s.io/ClusterRole/_cluster/view"),
        ]
        .into();
        for e in &entries {
            assert_eq!(entries.get_address(&e.address), Some(e));
            assert_eq!(entries.get(&e.id()), Some(e));
        }
        assert_eq!(entries.get_address("a/core/ConfigMap/default/y"), None);
        assert_eq!(entries.get_address("a/core/ConfigMap/default"), None);
        assert_eq!(entries.get_address(""), None);
        // An address spelled otherwise (no `core`) is not the entry's address.
        assert_eq!(entries.get_address("a//ConfigMap/default/x"), None);
    }

    #[test]
    fn renaming_a_dependency_changes_only_depends_on() {
        let mut user = entry("c/core/ConfigMap/default/user");
        user.depends_on = vec!["c/core/ConfigMap/default/old".into(), "c/x".into()];
        let mut entries: Entries = vec![user, entry("c/core/ConfigMap/default/other")].into();
        entries.rename_dependency(
            "c/core/ConfigMap/default/old",
            "d/core/ConfigMap/default/new",
        );
        let user = entries
            .get_address("c/core/ConfigMap/default/user")
            .unwrap();
        assert_eq!(
            user.depends_on,
            ["d/core/ConfigMap/default/new", "c/x"].map(String::from)
        );
        assert_eq!(entries.len(), 2);
    }
}
