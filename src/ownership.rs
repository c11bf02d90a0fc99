//! How dcm marks the objects it manages, the Kubernetes way, so that anyone (kubectl,
//! another dcm project, `dcm state recover`) can tell whose an object is:
//!
//! - the label `app.kubernetes.io/managed-by: dcm` (the recommended label of the tool
//!   that manages an object);
//! - the label `dcm.io/lineage: <state lineage>`: which state owns it, so two projects
//!   on one cluster never take each other's objects;
//! - the annotation `dcm.io/address: <address>`: the object's dcm address.
//!
//! Kubernetes' ApplySet convention (KEP-3659) ties members to one parent object in one
//! cluster; a dcm state spans clusters, so it keeps to the recommended `managed-by` label
//! and its own lineage label, which `kubectl get -l dcm.io/lineage=<lineage>` selects
//! the same way.
//!
//! Apply stamps the marks on every object dcm creates or imports (never on objects it
//! only edits, such as CoreDNS's ConfigMap). They are not part of what the file wants:
//! hashes and diffs are of the object without them, so a plan reads the same before and
//! after the first apply, and whatever state it will be recorded in.

use serde_json::{Map, Value};

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "dcm";
pub const LINEAGE_LABEL: &str = "dcm.io/lineage";
pub const ADDRESS_ANNOTATION: &str = "dcm.io/address";
/// On objects dcm imported rather than created (`dcm state recover` tells them apart).
pub const IMPORTED_ANNOTATION: &str = "dcm.io/imported";

/// Puts dcm's marks on an object about to be written.
pub fn stamp(object: &mut Value, lineage: &str, address: &str) {
    stamp_as(object, lineage, address, false);
}

/// As `stamp`, with the `dcm.io/imported` mark when dcm imported the object.
pub fn stamp_as(object: &mut Value, lineage: &str, address: &str, imported: bool) {
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let labels = meta
        .entry("labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(labels) = labels.as_object_mut() {
        labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
        labels.insert(LINEAGE_LABEL.into(), lineage.into());
    }
    let annotations = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(annotations) = annotations.as_object_mut() {
        annotations.insert(ADDRESS_ANNOTATION.into(), address.into());
        if imported {
            annotations.insert(IMPORTED_ANNOTATION.into(), "true".into());
        }
    }
}

/// Takes dcm's marks off a live object (before it is compared with what the file wants).
/// A `managed-by` label that names another tool is the object's own, and stays.
pub fn strip(object: &mut Value) {
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for (field, keys) in [
        ("labels", &[MANAGED_BY_LABEL, LINEAGE_LABEL][..]),
        (
            "annotations",
            &[ADDRESS_ANNOTATION, IMPORTED_ANNOTATION][..],
        ),
    ] {
        let Some(map) = meta.get_mut(field).and_then(Value::as_object_mut) else {
            continue;
        };
        for k in keys {
            if *k == MANAGED_BY_LABEL && map.get(*k).and_then(Value::as_str) != Some(MANAGED_BY) {
                continue;
            }
            map.remove(*k);
        }
        if map.is_empty() {
            meta.remove(field);
        }
    }
}

/// What a live object says about its owner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    /// The lineage of the dcm state that owns it, when dcm made or imported it.
    pub lineage: Option<String>,
    /// The object's UID, when the cluster gives one (a directory does not).
    pub uid: Option<String>,
    /// dcm imported it rather than created it.
    pub imported: bool,
}

impl Marks {
    pub fn of(live: &Value) -> Marks {
        let text = |p: &str| live.pointer(p).and_then(Value::as_str).map(str::to_string);
        let managed = text("/metadata/labels/app.kubernetes.io~1managed-by");
        Marks {
            lineage: text("/metadata/labels/dcm.io~1lineage")
                .filter(|_| managed.as_deref() == Some(MANAGED_BY)),
            uid: text("/metadata/uid"),
            imported: text("/metadata/annotations/dcm.io~1imported").as_deref() == Some("true"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stamped_marks_are_read_back_and_stripped_to_the_object_as_it_was() {
        let original =
            json!({"kind": "ConfigMap", "metadata": {"name": "x", "labels": {"app": "web"}}});
        let mut o = original.clone();
        stamp(&mut o, "1234", "c1/core/ConfigMap/default/x");
        assert_eq!(
            o["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "dcm"
        );
        assert_eq!(
            o["metadata"]["annotations"]["dcm.io/address"],
            "c1/core/ConfigMap/default/x"
        );
        o["metadata"]["uid"] = json!("u-1");
        assert_eq!(
            Marks::of(&o),
            Marks {
                lineage: Some("1234".into()),
                uid: Some("u-1".into()),
                imported: false,
            }
        );
        o["metadata"].as_object_mut().unwrap().remove("uid");
        strip(&mut o);
        assert_eq!(o, original);
    }

    #[test]
    fn another_tool_s_managed_by_label_is_the_object_s_own() {
        let mut o = json!({"metadata": {"labels": {
            "app.kubernetes.io/managed-by": "Helm", "dcm.io/lineage": "forged"}}});
        assert_eq!(Marks::of(&o).lineage, None);
        strip(&mut o);
        assert_eq!(
            o["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "Helm"
        );
    }
}
