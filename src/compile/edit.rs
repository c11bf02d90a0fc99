//! Edits of objects dcm does not own: it adds, changes and removes only its own part and
//! keeps every other byte.
//!
//! - `Corefile`: dcm's stub-domain server blocks live in one marked region at the end of
//!   `data.Corefile` of `kube-system/coredns`. Stripping the region gives back the file
//!   exactly as it was before dcm touched it.
//! - `DataKeys`: dcm's keys in `kube-system/coredns-custom`, each value marked as dcm's,
//!   so keys others wrote are never touched.
//!
//! An edit is resolved against the live object at plan time ([`resolve`]); the state
//! records a hash of dcm's part only, so changes to the rest are not drift.

use crate::object::object_sha256;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Opens dcm's region in a Corefile.
pub const BEGIN: &str =
    "# dcm:begin (stub domains managed by dcm; edits in this region are overwritten)\n";
/// Closes it.
pub const END: &str = "# dcm:end\n";
/// First line of every value dcm writes into coredns-custom.
pub const KEY_MARK: &str = "# managed by dcm\n";

/// dcm's part of an object it edits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Server blocks for the marked region of `data.Corefile` (already joined).
    Corefile(String),
    /// Keys of `data`, values without the mark.
    DataKeys(BTreeMap<String, String>),
}

/// Where dcm's region is in a Corefile: from the newline before the begin marker to the
/// end of the end marker (or of the file, if that marker was removed by hand).
fn region(corefile: &str) -> Option<std::ops::Range<usize>> {
    let start = corefile.find(&format!("\n{BEGIN}"))?;
    let after = start + 1 + BEGIN.len();
    let end = corefile[after..]
        .find(END)
        .map(|r| after + r + END.len())
        .unwrap_or(corefile.len());
    Some(start..end)
}

/// The Corefile without dcm's region (exactly the bytes others wrote).
pub fn strip_corefile(corefile: &str) -> String {
    match region(corefile) {
        Some(r) => format!("{}{}", &corefile[..r.start], &corefile[r.end..]),
        None => corefile.to_string(),
    }
}

/// The Corefile with dcm's region set to `blocks` (removed when empty).
pub fn with_corefile_blocks(corefile: &str, blocks: &str) -> String {
    let base = strip_corefile(corefile);
    if blocks.is_empty() {
        base
    } else {
        format!("{base}\n{BEGIN}{blocks}{END}")
    }
}

/// dcm's region of a Corefile (empty when there is none).
pub fn corefile_region(corefile: &str) -> String {
    region(corefile)
        .map(|r| corefile[r].to_string())
        .unwrap_or_default()
}

/// Whether `object` holds any of dcm's part (a region in its Corefile, a marked key).
pub fn has_part(edit_kind: &Edit, object: &Value) -> bool {
    match edit_kind {
        Edit::Corefile(_) => object
            .pointer("/data/Corefile")
            .and_then(Value::as_str)
            .is_some_and(|c| !corefile_region(c).is_empty()),
        Edit::DataKeys(_) => object
            .get("data")
            .and_then(Value::as_object)
            .is_some_and(|m| {
                m.values()
                    .any(|v| v.as_str().is_some_and(|s| s.starts_with(KEY_MARK)))
            }),
    }
}

/// What a hash of dcm's part of `object` is (for the state and for drift).
pub fn contribution_sha(edit_kind: &Edit, object: &Value) -> String {
    match edit_kind {
        Edit::Corefile(_) => {
            let corefile = object
                .pointer("/data/Corefile")
                .and_then(Value::as_str)
                .unwrap_or("");
            object_sha256(&json!(corefile_region(corefile)))
        }
        Edit::DataKeys(_) => {
            let mine: BTreeMap<&String, &Value> = object
                .get("data")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter(|(_, v)| v.as_str().is_some_and(|s| s.starts_with(KEY_MARK)))
                        .collect()
                })
                .unwrap_or_default();
            object_sha256(&json!(mine))
        }
    }
}

/// The object as it must be: `live` with dcm's part set to `edit` (or removed, when
/// `edit` is empty). `live` None means the object does not exist yet.
pub fn resolve(edit: &Edit, skeleton: &Value, live: Option<&Value>) -> Result<Value, String> {
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
            let mut out = live.clone();
            out["data"]["Corefile"] = json!(with_corefile_blocks(corefile, blocks));
            Ok(out)
        }
        Edit::DataKeys(keys) => {
            let mut out = live.cloned().unwrap_or_else(|| skeleton.clone());
            if !out["data"].is_object() {
                out["data"] = json!({});
            }
            if let Some(data) = out["data"].as_object_mut() {
                data.retain(|_, v| !v.as_str().is_some_and(|s| s.starts_with(KEY_MARK)));
                for (k, v) in keys {
                    data.insert(k.clone(), json!(format!("{KEY_MARK}{v}")));
                }
            }
            Ok(out)
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
            let b2 = format!("{b1}lc2:53 {{\n    forward . 10.96.0.54:53\n}}\n");
            let once = with_corefile_blocks(&original, &b1);
            assert!(once.starts_with(&original), "dcm only appends");
            assert_eq!(
                strip_corefile(&once),
                original,
                "stripping restores every byte"
            );
            assert_eq!(with_corefile_blocks(&once, &b1), once, "idempotent");
            let changed = with_corefile_blocks(&once, &b2);
            assert_eq!(strip_corefile(&changed), original);
            assert_eq!(corefile_region(&changed), format!("\n{BEGIN}{b2}{END}"));
            assert_eq!(
                with_corefile_blocks(&changed, ""),
                original,
                "removing every block restores the file"
            );
        }
    }

    #[test]
    fn edits_outside_the_region_are_not_dcms_business() {
        let blocks = "lc1:53 {\n    forward . 10.96.0.53:53\n}\n";
        let live = json!({"data": {"Corefile": with_corefile_blocks(STOCK, blocks)}});
        let mut other = live.clone();
        other["data"]["Corefile"] = json!(live["data"]["Corefile"]
            .as_str()
            .unwrap()
            .replace("cache 30", "cache 60"));
        let e = Edit::Corefile(blocks.into());
        assert_eq!(contribution_sha(&e, &live), contribution_sha(&e, &other));
        assert_eq!(
            resolve(&e, &json!({}), Some(&other)).unwrap(),
            other,
            "nothing to do"
        );
        assert!(resolve(&e, &json!({}), None)
            .unwrap_err()
            .contains("no ConfigMap kube-system/coredns"));
    }

    #[test]
    fn data_keys_touch_only_marked_values() {
        let skeleton = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns-custom", "namespace": "kube-system"}});
        let e = Edit::DataKeys(BTreeMap::from([(
            "lc1.server".to_string(),
            "lc1:53 {}\n".to_string(),
        )]));
        let created = resolve(&e, &skeleton, None).unwrap();
        assert_eq!(
            created["data"]["lc1.server"],
            format!("{KEY_MARK}lc1:53 {{}}\n")
        );
        let mut live = created.clone();
        live["data"]["theirs.override"] = json!("log\n");
        live["data"]["old.server"] = json!(format!("{KEY_MARK}old:53 {{}}\n"));
        let out = resolve(&e, &skeleton, Some(&live)).unwrap();
        assert_eq!(out["data"]["theirs.override"], "log\n");
        assert!(
            out["data"].get("old.server").is_none(),
            "dcm's stale keys go"
        );
        let cleared = resolve(&Edit::DataKeys(BTreeMap::new()), &skeleton, Some(&live)).unwrap();
        assert_eq!(cleared["data"], json!({"theirs.override": "log\n"}));
    }
}
