//! Edits of objects dcm does not own: it adds, changes and removes only its own parts and
//! keeps every other byte, including the parts other dcm projects wrote.
//!
//! - `Corefile`: each stub domain is a marked region of `data.Corefile` in
//!   `kube-system/coredns`, named after its DNS suffix
//!   (`# dcm:begin <suffix> (...)` … `# dcm:end <suffix>`). A region keeps its place when
//!   it changes; new ones go at the end. Stripping every region gives back the file
//!   exactly as it was before dcm touched it.
//! - `DataKeys`: dcm's keys in `kube-system/coredns-custom`, each value marked as dcm's.
//!
//! Which parts are whose: the state records the parts it wrote (`allocated.parts`). A part
//! of the same name that this state did not write belongs to someone else (another dcm
//! project with a cloud of the same suffix, or a person): the edit refuses to touch it.
//! An edit is resolved against the live object at plan time ([`resolve`]); the state
//! records a hash of its own parts only, so changes to the rest are not drift.

use crate::object::object_sha256;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// How a region of dcm's opens, before its name (a region from before regions had names
/// opens with `# dcm:begin (`).
const BEGIN_PREFIX: &str = "# dcm:begin ";
const END_PREFIX: &str = "# dcm:end";
/// First line of every value dcm writes into coredns-custom.
pub const KEY_MARK: &str = "# managed by dcm\n";

/// dcm's parts of an object it edits, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Server blocks of `data.Corefile`, by DNS suffix.
    Corefile(BTreeMap<String, String>),
    /// Keys of `data`, values without the mark.
    DataKeys(BTreeMap<String, String>),
}

impl Edit {
    /// The names of the parts it wants.
    pub fn parts(&self) -> BTreeSet<String> {
        match self {
            Edit::Corefile(m) | Edit::DataKeys(m) => m.keys().cloned().collect(),
        }
    }

    /// The same kind of edit, wanting nothing (to take a state's parts back out).
    pub fn emptied(&self) -> Edit {
        match self {
            Edit::Corefile(_) => Edit::Corefile(BTreeMap::new()),
            Edit::DataKeys(_) => Edit::DataKeys(BTreeMap::new()),
        }
    }

    /// The kind named in a state entry (`allocated.edit`).
    pub fn of_mode(mode: Option<&str>) -> Edit {
        match mode {
            Some("data-keys") => Edit::DataKeys(BTreeMap::new()),
            _ => Edit::Corefile(BTreeMap::new()),
        }
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut String> {
        match self {
            Edit::Corefile(m) | Edit::DataKeys(m) => m.values_mut(),
        }
    }
}

/// The parts a state entry says it wrote (`allocated.parts`, comma-separated). None for
/// an entry from before parts were recorded: it wrote every part dcm's marks show.
pub fn recorded_parts(allocated: &BTreeMap<String, String>) -> Option<BTreeSet<String>> {
    allocated.get("parts").map(|p| {
        p.split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    })
}

/// What the state keeps for an edit: its kind and the parts it wants.
pub fn parts_value(parts: &BTreeSet<String>) -> String {
    parts.iter().cloned().collect::<Vec<_>>().join(",")
}

fn begin_line(name: &str) -> String {
    format!(
        "{BEGIN_PREFIX}{name} (stub domain managed by dcm; edits in this region are overwritten)\n"
    )
}

fn end_line(name: &str) -> String {
    format!("{END_PREFIX} {name}\n")
}

/// One of dcm's regions in a Corefile: its name (None for a region from before names)
/// and its bytes, from the newline before its begin line to the end of its end line (or of
/// the file, if the end line was removed by hand).
struct Region {
    name: Option<String>,
    range: std::ops::Range<usize>,
}

fn regions(corefile: &str) -> Vec<Region> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = corefile[from..].find(&format!("\n{BEGIN_PREFIX}")) {
        let start = from + at;
        let line_start = start + 1;
        let line_end = corefile[line_start..]
            .find('\n')
            .map_or(corefile.len(), |i| line_start + i + 1);
        let rest = &corefile[line_start + BEGIN_PREFIX.len()..line_end];
        let name = (!rest.starts_with('(')).then(|| {
            rest.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string()
        });
        let end_marker = match &name {
            Some(n) => end_line(n),
            None => format!("{END_PREFIX}\n"),
        };
        let end = corefile[line_end..]
            .find(&end_marker)
            .map_or(corefile.len(), |i| line_end + i + end_marker.len());
        out.push(Region {
            name,
            range: start..end,
        });
        from = end;
    }
    out
}

/// The Corefile without any of dcm's regions (exactly the bytes others wrote).
pub fn strip_corefile(corefile: &str) -> String {
    let mut out = corefile.to_string();
    for r in regions(corefile).iter().rev() {
        out.replace_range(r.range.clone(), "");
    }
    out
}

/// The names of dcm's parts that `object` holds (regions or marked keys).
pub fn parts_in(edit_kind: &Edit, object: &Value) -> BTreeSet<String> {
    match edit_kind {
        Edit::Corefile(_) => regions(corefile_of(object))
            .into_iter()
            .filter_map(|r| r.name)
            .collect(),
        Edit::DataKeys(_) => marked_keys(object).into_keys().collect(),
    }
}

fn corefile_of(object: &Value) -> &str {
    object
        .pointer("/data/Corefile")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn marked_keys(object: &Value) -> BTreeMap<String, Value> {
    object
        .get("data")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(_, v)| v.as_str().is_some_and(|s| s.starts_with(KEY_MARK)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// A hash of the parts named `parts` as `object` holds them (for the state and drift).
pub fn contribution_sha(edit_kind: &Edit, object: &Value, parts: &BTreeSet<String>) -> String {
    let mine: BTreeMap<String, Value> = match edit_kind {
        Edit::Corefile(_) => {
            let corefile = corefile_of(object);
            regions(corefile)
                .into_iter()
                .filter_map(|r| Some((r.name?, json!(corefile[r.range].to_string()))))
                .filter(|(n, _)| parts.contains(n))
                .collect()
        }
        Edit::DataKeys(_) => marked_keys(object)
            .into_iter()
            .filter(|(k, _)| parts.contains(k))
            .collect(),
    };
    object_sha256(&json!(mine))
}

/// The object as it must be: `live` with dcm's parts set to `edit`, and the parts this
/// state wrote (`owned`; None when it wrote none yet) that `edit` no longer wants taken
/// out. `live` None means the object does not exist yet. A part `edit` wants that is
/// there but not this state's is an error: it is someone else's.
pub fn resolve(
    edit: &Edit,
    skeleton: &Value,
    live: Option<&Value>,
    owned: Option<&BTreeSet<String>>,
) -> Result<Value, String> {
    let empty = BTreeSet::new();
    let mine = |name: &str| owned.unwrap_or(&empty).contains(name);
    match edit {
        Edit::Corefile(blocks) => {
            let Some(live) = live else {
                return Err("there is no ConfigMap kube-system/coredns to add the stub domains to; with dns = \"corefile\" dcm edits CoreDNS's own configuration (use dns = \"custom\" for a coredns-custom ConfigMap)".into());
            };
            let Some(corefile) = live.pointer("/data/Corefile").and_then(Value::as_str) else {
                return Err(
                    "ConfigMap kube-system/coredns has no data.Corefile to add the stub domains to"
                        .into(),
                );
            };
            let mut out = String::new();
            let mut at = 0;
            let mut placed = BTreeSet::new();
            for r in regions(corefile) {
                out.push_str(&corefile[at..r.range.start]);
                at = r.range.end;
                let keep = &corefile[r.range.clone()];
                match r.name {
                    // A region from before names: this state's, if it wrote any.
                    None if owned.is_some() => {}
                    None => out.push_str(keep),
                    Some(name) if blocks.contains_key(&name) => {
                        if !mine(&name) {
                            return Err(format!("the Corefile already has a stub-domain region for `{name}` that this state did not write (another dcm project with a cloud of that suffix?); dcm leaves it alone"));
                        }
                        if placed.insert(name.clone()) {
                            out.push_str(&format!(
                                "\n{}{}{}",
                                begin_line(&name),
                                blocks[&name],
                                end_line(&name)
                            ));
                        }
                    }
                    Some(name) if mine(&name) => {}
                    Some(_) => out.push_str(keep),
                }
            }
            out.push_str(&corefile[at..]);
            for (name, block) in blocks.iter().filter(|(n, _)| !placed.contains(*n)) {
                out.push_str(&format!("\n{}{block}{}", begin_line(name), end_line(name)));
            }
            let mut object = live.clone();
            object["data"]["Corefile"] = json!(out);
            Ok(object)
        }
        Edit::DataKeys(keys) => {
            let mut object = live.cloned().unwrap_or_else(|| skeleton.clone());
            if !object["data"].is_object() {
                object["data"] = json!({});
            }
            if let Some(data) = object["data"].as_object_mut() {
                for k in keys.keys() {
                    if data.contains_key(k) && !mine(k) {
                        return Err(format!("coredns-custom already has a key `{k}` that this state did not write; dcm leaves it alone"));
                    }
                }
                data.retain(|k, v| {
                    !(mine(k) && v.as_str().is_some_and(|s| s.starts_with(KEY_MARK)))
                });
                for (k, v) in keys {
                    data.insert(k.clone(), json!(format!("{KEY_MARK}{v}")));
                }
            }
            Ok(object)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STOCK: &str = ".:53 {\n    errors\n    health {\n       lameduck 5s\n    }\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods insecure\n    }\n    forward . /etc/resolv.conf\n    cache 30\n}\n";

    use crate::testutil::Lcg;

    fn random_corefile(r: &mut Lcg) -> String {
        let pieces = [
            "",
            "\n",
            "\n\n",
            "  ",
            "# comment\n",
            STOCK,
            "example.org:53 {\n  forward . 8.8.8.8\n}",
            "\t}\n",
            "global:53 {\n  forward . 10.0.0.1:53\n}\n",
            "ünïcödé\r\n",
        ];
        (0..r.next(6))
            .map(|_| pieces[r.next(pieces.len())])
            .collect()
    }

    fn corefile(blocks: &[(&str, &str)]) -> Edit {
        Edit::Corefile(
            blocks
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn apply(e: &Edit, live: &str, owned: Option<&BTreeSet<String>>) -> String {
        let v = resolve(
            e,
            &json!({}),
            Some(&json!({"data": {"Corefile": live}})),
            owned,
        )
        .unwrap();
        v["data"]["Corefile"].as_str().unwrap().to_string()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn foreign_bytes_are_kept_exactly_and_edits_are_idempotent() {
        let mut r = Lcg(42);
        for _ in 0..2000 {
            let original = random_corefile(&mut r);
            let b1 = format!(
                "lc{}:53 {{\n    forward . 10.96.0.{}:53\n}}\n",
                r.next(9),
                r.next(250)
            );
            let one = corefile(&[("lc1", &b1)]);
            let once = apply(&one, &original, None);
            assert!(once.starts_with(&original), "dcm only appends");
            assert_eq!(
                strip_corefile(&once),
                original,
                "stripping restores every byte"
            );
            let owned = set(&["lc1"]);
            assert_eq!(apply(&one, &once, Some(&owned)), once, "idempotent");
            let two = corefile(&[("lc1", &b1), ("lc2", "lc2:53 {}\n")]);
            let changed = apply(&two, &once, Some(&owned));
            assert_eq!(strip_corefile(&changed), original);
            assert_eq!(
                parts_in(&two, &json!({"data": {"Corefile": changed}})),
                set(&["lc1", "lc2"])
            );
            let both = set(&["lc1", "lc2"]);
            assert_eq!(
                apply(&one.emptied(), &changed, Some(&both)),
                original,
                "removing every block restores the file"
            );
        }
    }

    #[test]
    fn two_states_keep_to_their_own_regions() {
        let a = corefile(&[("lc1", "lc1:53 {}\n")]);
        let b = corefile(&[("mesh", "mesh:53 {}\n")]);
        let with_a = apply(&a, STOCK, None);
        let with_both = apply(&b, &with_a, None);
        // A changes its block: in place, B's region untouched.
        let a2 = corefile(&[("lc1", "lc1:53 { cache 60 }\n")]);
        let changed = apply(&a2, &with_both, Some(&set(&["lc1"])));
        assert!(changed.contains("mesh:53 {}\n") && changed.contains("cache 60"));
        assert!(changed.find("lc1:53").unwrap() < changed.find("mesh:53").unwrap());
        // A goes: B's region is exactly as B wrote it.
        let without_a = apply(&a.emptied(), &changed, Some(&set(&["lc1"])));
        assert_eq!(without_a, with_both.replace(&with_a[STOCK.len()..], ""));
        assert_eq!(strip_corefile(&without_a), STOCK);
        assert!(without_a.contains("mesh:53 {}\n"));
        // A region of the same name that this state did not write is not touched.
        let err = resolve(
            &b,
            &json!({}),
            Some(&json!({"data": {"Corefile": with_both}})),
            None,
        )
        .unwrap_err();
        assert!(err.contains("region for `mesh`"), "{err}");
    }

    #[test]
    fn a_region_from_before_names_is_taken_back_by_the_state_that_wrote_it() {
        let old = format!("{STOCK}\n# dcm:begin (stub domains managed by dcm; edits in this region are overwritten)\nlc1:53 {{}}\n# dcm:end\n");
        let e = corefile(&[("lc1", "lc1:53 {}\n")]);
        let upgraded = apply(&e, &old, Some(&BTreeSet::new()));
        assert_eq!(strip_corefile(&upgraded), STOCK);
        assert_eq!(
            parts_in(&e, &json!({"data": {"Corefile": upgraded}})),
            set(&["lc1"])
        );
        // Not this state's (no entry): left alone.
        assert!(apply(&e, &old, None).starts_with(&old));
    }

    #[test]
    fn edits_outside_the_regions_are_not_dcms_business() {
        let e = corefile(&[("lc1", "lc1:53 {\n    forward . 10.96.0.53:53\n}\n")]);
        let live = apply(&e, STOCK, None);
        let other = live.replace("cache 30", "cache 60");
        let parts = e.parts();
        assert_eq!(
            contribution_sha(&e, &json!({"data": {"Corefile": live}}), &parts),
            contribution_sha(&e, &json!({"data": {"Corefile": other.clone()}}), &parts)
        );
        assert_eq!(apply(&e, &other, Some(&parts)), other, "nothing to do");
        assert!(resolve(&e, &json!({}), None, None)
            .unwrap_err()
            .contains("no ConfigMap kube-system/coredns"));
    }

    #[test]
    fn data_keys_touch_only_this_state_s_keys() {
        let skeleton = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns-custom", "namespace": "kube-system"}});
        let e = Edit::DataKeys(BTreeMap::from([(
            "lc1.server".to_string(),
            "lc1:53 {}\n".to_string(),
        )]));
        let created = resolve(&e, &skeleton, None, None).unwrap();
        assert_eq!(
            created["data"]["lc1.server"],
            format!("{KEY_MARK}lc1:53 {{}}\n")
        );
        let mut live = created.clone();
        live["data"]["theirs.override"] = json!("log\n");
        live["data"]["old.server"] = json!(format!("{KEY_MARK}old:53 {{}}\n"));
        live["data"]["other-project.server"] = json!(format!("{KEY_MARK}x:53 {{}}\n"));
        let owned = set(&["lc1.server", "old.server"]);
        let out = resolve(&e, &skeleton, Some(&live), Some(&owned)).unwrap();
        assert_eq!(out["data"]["theirs.override"], "log\n");
        assert!(
            out["data"].get("old.server").is_none(),
            "this state's stale keys go"
        );
        assert!(
            out["data"].get("other-project.server").is_some(),
            "another's stay"
        );
        let cleared = resolve(&e.emptied(), &skeleton, Some(&live), Some(&owned)).unwrap();
        assert_eq!(
            cleared["data"],
            json!({"theirs.override": "log\n", "other-project.server": format!("{KEY_MARK}x:53 {{}}\n")})
        );
        let err = resolve(&e, &skeleton, Some(&live), None).unwrap_err();
        assert!(err.contains("`lc1.server`"), "{err}");
    }
}
