//! Field ownership (`managedFields`) and the four kinds of patch: JSON merge patch,
//! strategic merge patch, JSON patch and server-side apply.
//!
//! Fields are leaf paths: objects are descended into, while scalars, lists and empty
//! objects are leaves. Lists are therefore owned as a whole (atomic), which is what a real
//! server does for lists without a merge key.

use serde_json::{Map, Value};
use std::collections::BTreeSet;

pub type Path = Vec<String>;
pub type FieldSet = BTreeSet<Path>;

/// Metadata fields that a manager can own; the rest of metadata is the server's.
const OWNED_METADATA: [&str; 4] = ["labels", "annotations", "finalizers", "ownerReferences"];

/// The leaf paths of an object that a manager can own.
pub fn leaf_paths(object: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(map) = object.as_object() else {
        return out;
    };
    for (k, v) in map {
        match k.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                if let Some(meta) = v.as_object() {
                    for f in OWNED_METADATA {
                        if let Some(fv) = meta.get(f) {
                            collect(fv, &mut vec!["metadata".into(), f.into()], &mut out);
                        }
                    }
                }
            }
            _ => collect(v, &mut vec![k.clone()], &mut out),
        }
    }
    out
}

fn collect(v: &Value, path: &mut Path, out: &mut FieldSet) {
    match v.as_object() {
        Some(m) if !m.is_empty() => {
            for (k, child) in m {
                path.push(k.clone());
                collect(child, path, out);
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

pub fn get<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for seg in path {
        cur = cur.as_object()?.get(seg)?;
    }
    Some(cur)
}

pub fn set(v: &mut Value, path: &[String], value: Value) {
    let mut cur = v;
    for seg in &path[..path.len() - 1] {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Some(map) = cur.as_object_mut() else {
            return;
        };
        let next = map
            .entry(seg.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        cur = next;
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    if let (Some(map), Some(last)) = (cur.as_object_mut(), path.last()) {
        map.insert(last.clone(), value);
    }
}

/// Removes a leaf and any objects that removing it leaves empty (below the top level).
pub fn remove(v: &mut Value, path: &[String]) {
    fn go(cur: &mut Value, path: &[String]) -> bool {
        let Some(map) = cur.as_object_mut() else {
            return false;
        };
        if path.len() == 1 {
            map.remove(&path[0]);
        } else if let Some(child) = map.get_mut(&path[0]) {
            if go(child, &path[1..]) {
                map.remove(&path[0]);
            }
        }
        map.is_empty()
    }
    if let Some(map) = v.as_object_mut() {
        if let Some(first) = path.first() {
            if path.len() == 1 {
                map.remove(first);
            } else if let Some(child) = map.get_mut(first) {
                if go(child, &path[1..]) && first != "metadata" {
                    map.remove(first);
                }
            }
        }
    }
}

/// Whether one path is the other or contains it.
pub fn overlaps(a: &[String], b: &[String]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// `managedFields` fieldsV1 form of a set of paths.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Value::Object(Map::new());
    for path in set {
        let mut cur = &mut root;
        for seg in path {
            let Some(map) = cur.as_object_mut() else {
                break;
            };
            cur = map
                .entry(format!("f:{seg}"))
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }
    root
}

pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn go(v: &Value, path: &mut Path, out: &mut FieldSet) {
        let Some(map) = v.as_object() else {
            return;
        };
        let mut leaf = true;
        for (k, child) in map {
            if k == "." {
                continue;
            }
            leaf = false;
            path.push(k.strip_prefix("f:").unwrap_or(k).to_string());
            go(child, path, out);
            path.pop();
        }
        if leaf && !path.is_empty() {
            out.insert(path.clone());
        }
    }
    let mut out = FieldSet::new();
    go(v, &mut Vec::new(), &mut out);
    out
}

/// One entry of `metadata.managedFields`.
#[derive(Debug, Clone)]
pub struct Managed {
    pub manager: String,
    /// "Apply" or "Update".
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub fields: FieldSet,
}

pub fn read_managed(object: &Value) -> Vec<Managed> {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .map(|e| Managed {
                    manager: str_of(e, "manager"),
                    operation: str_of(e, "operation"),
                    api_version: str_of(e, "apiVersion"),
                    time: str_of(e, "time"),
                    fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn str_of(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

pub fn write_managed(object: &mut Value, managed: &[Managed]) {
    let entries: Vec<Value> = managed
        .iter()
        .filter(|m| !m.fields.is_empty())
        .map(|m| {
            serde_json::json!({
                "manager": m.manager,
                "operation": m.operation,
                "apiVersion": m.api_version,
                "time": m.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&m.fields),
            })
        })
        .collect();
    if let Some(map) = object.as_object_mut() {
        map.entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(entries));
        }
    }
}

/// A field another manager owns with a different value than the one applied.
#[derive(Debug, Clone)]
pub struct Conflict {
    pub manager: String,
    pub api_version: String,
    pub path: Path,
}

impl Conflict {
    pub fn field(&self) -> String {
        format!(".{}", self.path.join("."))
    }
}

/// Server-side apply of `config` by `manager` onto `live` (None: the object is new).
/// Returns the new object with its managedFields, or the conflicts.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    api_version: &str,
    force: bool,
    now: &str,
) -> Result<Value, Vec<Conflict>> {
    let applied = leaf_paths(config);
    let Some(live) = live else {
        let mut object = config.clone();
        let managed = vec![Managed {
            manager: manager.to_string(),
            operation: "Apply".into(),
            api_version: api_version.to_string(),
            time: now.to_string(),
            fields: applied,
        }];
        write_managed(&mut object, &managed);
        return Ok(object);
    };
    let mut managed = read_managed(live);
    let mut conflicts = Vec::new();
    for p in &applied {
        let same = get(live, p) == get(config, p) || keeps_map(live, config, p);
        if same {
            continue;
        }
        for m in &managed {
            if m.manager == manager && m.operation == "Apply" {
                continue;
            }
            if m.fields.iter().any(|q| overlaps(p, q)) {
                conflicts.push(Conflict {
                    manager: m.manager.clone(),
                    api_version: m.api_version.clone(),
                    path: p.clone(),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    let mut object = live.clone();
    // Fields this manager applied before and no longer applies go, unless someone else
    // also owns them.
    let before: FieldSet = managed
        .iter()
        .filter(|m| m.manager == manager && m.operation == "Apply")
        .flat_map(|m| m.fields.iter().cloned())
        .collect();
    for p in &before {
        // Still applied (an applied empty map does not apply the keys below it).
        if applied
            .iter()
            .any(|q| overlaps(p, q) && !(q.len() < p.len() && keeps_map(live, config, q)))
        {
            continue;
        }
        let shared = managed.iter().any(|m| {
            !(m.manager == manager && m.operation == "Apply")
                && m.fields.iter().any(|q| overlaps(p, q))
        });
        if !shared {
            remove(&mut object, p);
        }
    }
    for p in &applied {
        if keeps_map(live, config, p) {
            continue;
        }
        if let Some(v) = get(config, p) {
            // An applied leaf replaces whatever structure was there.
            set(&mut object, p, v.clone());
        }
    }
    if force {
        for c in &conflicts {
            for m in managed.iter_mut() {
                if m.manager == c.manager {
                    m.fields.retain(|q| !overlaps(q, &c.path));
                }
            }
        }
    }
    managed.retain(|m| !(m.manager == manager && m.operation == "Apply"));
    managed.insert(
        0,
        Managed {
            manager: manager.to_string(),
            operation: "Apply".into(),
            api_version: api_version.to_string(),
            time: now.to_string(),
            fields: applied,
        },
    );
    write_managed(&mut object, &managed);
    Ok(object)
}

/// Whether an applied empty map (`data: {}`) meets a live map: it sets no key, so it
/// keeps the keys there (others may own them) and conflicts with none of them.
fn keeps_map(live: &Value, config: &Value, path: &[String]) -> bool {
    get(config, path).is_some_and(|v| v.as_object().is_some_and(Map::is_empty))
        && get(live, path).is_some_and(Value::is_object)
}

/// Ownership after a non-apply write (create, update, patch) by `manager`: it takes the
/// fields it changed; fields that were removed leave every owner.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    now: &str,
) {
    let mut managed = old.map(read_managed).unwrap_or_default();
    let new_paths = leaf_paths(new);
    let changed: FieldSet = match old {
        None => new_paths.clone(),
        Some(old) => new_paths
            .iter()
            .filter(|p| get(old, p) != get(new, p))
            .cloned()
            .collect(),
    };
    for m in managed.iter_mut() {
        m.fields.retain(|q| {
            new_paths.iter().any(|p| overlaps(p, q)) && !changed.iter().any(|p| overlaps(p, q))
        });
    }
    if !changed.is_empty() {
        match managed
            .iter_mut()
            .find(|m| m.manager == manager && m.operation == "Update")
        {
            Some(m) => {
                m.fields.extend(changed);
                m.time = now.to_string();
            }
            None => managed.push(Managed {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version.to_string(),
                time: now.to_string(),
                fields: changed,
            }),
        }
    }
    write_managed(new, &managed);
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch.as_object() {
        Some(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let Some(t) = target.as_object_mut() else {
                return;
            };
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        None => *target = patch.clone(),
    }
}

/// The merge key of a list field that a strategic merge patch merges element by element.
fn merge_key(field: &str, element: &Value) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "ports" if element.get("containerPort").is_some() => Some("containerPort"),
        "ports" => Some("port"),
        _ => None,
    }
}

/// Strategic merge patch, for the list fields of the built-in kinds served here.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return Ok(());
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replaced = p.clone();
            replaced.remove("$patch");
            *target = Value::Object(replaced);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some(other) => return Err(format!("unknown patch type {other:?}")),
        None => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(t) = target.as_object_mut() else {
        return Ok(());
    };
    for (k, v) in p {
        if k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Some(gone)) = (t.get_mut(field), v.as_array()) {
                items.retain(|i| !gone.contains(i));
            }
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        let key = v
            .as_array()
            .and_then(|a| a.first())
            .and_then(|e| merge_key(k, e));
        match (key, v.as_array(), t.get_mut(k)) {
            (Some(key), Some(items), Some(Value::Array(existing))) => {
                for item in items {
                    let id = item.get(key);
                    let pos = existing
                        .iter()
                        .position(|e| e.get(key) == id && id.is_some());
                    let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                    match (pos, delete) {
                        (Some(i), true) => {
                            existing.remove(i);
                        }
                        (None, true) => {}
                        (Some(i), false) => strategic_merge_patch(&mut existing[i], item)?,
                        (None, false) => existing.push(item.clone()),
                    }
                }
                if let Some(order) = p
                    .get(&format!("$setElementOrder/{k}"))
                    .and_then(Value::as_array)
                {
                    let rank = |e: &Value| {
                        order
                            .iter()
                            .position(|o| o.get(key) == e.get(key))
                            .unwrap_or(usize::MAX)
                    };
                    existing.sort_by_key(rank);
                }
            }
            _ => {
                let slot = t.entry(k.clone()).or_insert(Value::Null);
                if v.is_object() {
                    strategic_merge_patch(slot, v)?;
                    if slot.is_null() {
                        t.remove(k);
                    }
                } else {
                    *slot = v.clone();
                }
            }
        }
    }
    Ok(())
}

/// RFC 6902 JSON patch (add, remove, replace, test, move, copy).
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch must be a list of operations")?;
    for op in ops {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or_default();
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or("a JSON patch operation needs a path")?;
        match kind {
            "add" | "replace" => {
                let value = op.get("value").cloned().ok_or("missing value")?;
                if kind == "replace" && target.pointer(path).is_none() {
                    return Err(format!(
                        "replace operation does not apply: doc is missing key: {path}"
                    ));
                }
                pointer_add(target, path, value)?;
            }
            "remove" => {
                pointer_remove(target, path)?;
            }
            "test" => {
                if target.pointer(path) != op.get("value") {
                    return Err(format!("testing value {path} failed"));
                }
            }
            "move" | "copy" => {
                let from = op
                    .get("from")
                    .and_then(Value::as_str)
                    .ok_or("missing from")?;
                let value = if kind == "move" {
                    pointer_remove(target, from)?
                } else {
                    target.pointer(from).cloned().ok_or("missing from value")?
                };
                pointer_add(target, path, value)?;
            }
            other => return Err(format!("unexpected operation {other:?}")),
        }
    }
    Ok(())
}

fn split_pointer(path: &str) -> Result<(String, String), String> {
    let i = path
        .rfind('/')
        .ok_or_else(|| format!("invalid path {path:?}"))?;
    let last = path[i + 1..].replace("~1", "/").replace("~0", "~");
    Ok((path[..i].to_string(), last))
}

fn pointer_add(target: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *target = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    match target.pointer_mut(&parent) {
        Some(Value::Object(m)) => {
            m.insert(last, value);
            Ok(())
        }
        Some(Value::Array(a)) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid index in {path:?}"))?;
            if i > a.len() {
                return Err(format!("index out of range in {path:?}"));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(format!(
            "add operation does not apply: doc is missing path: {path:?}"
        )),
    }
}

fn pointer_remove(target: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    let missing = || format!("remove operation does not apply: doc is missing path: {path:?}");
    match target.pointer_mut(&parent) {
        Some(Value::Object(m)) => m.remove(&last).ok_or_else(missing),
        Some(Value::Array(a)) => {
            let i: usize = last.parse().map_err(|_| missing())?;
            if i < a.len() {
                Ok(a.remove(i))
            } else {
                Err(missing())
            }
        }
        _ => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_v1_round_trips() {
        let obj = json!({"metadata": {"labels": {"a": "1"}}, "data": {"x": "1", "y": "2"}, "spec": {"l": [1]}});
        let paths = leaf_paths(&obj);
        assert_eq!(from_fields_v1(&to_fields_v1(&paths)), paths);
        assert!(paths.contains(&vec!["data".to_string(), "x".to_string()]));
    }

    #[test]
    fn an_applied_empty_map_keeps_the_keys_others_own() {
        let first = apply(
            None,
            &json!({"data": {"token": "t"}}),
            "controller",
            "v1",
            false,
            "t",
        )
        .unwrap();
        let applied = apply(
            Some(&first),
            &json!({"data": {}}),
            "client",
            "v1",
            false,
            "t",
        )
        .unwrap();
        assert_eq!(applied["data"]["token"], "t");
        let mine = apply(
            Some(&applied),
            &json!({"data": {"k": "v"}}),
            "client",
            "v1",
            false,
            "t",
        )
        .unwrap();
        let emptied = apply(
            Some(&mine),
            &json!({"data": {}}),
            "client",
            "v1",
            false,
            "t",
        )
        .unwrap();
        assert_eq!(
            emptied["data"],
            json!({"token": "t"}),
            "the client's own key goes"
        );
    }

    #[test]
    fn apply_conflicts_with_another_manager_and_force_takes_over() {
        let first = apply(None, &json!({"data": {"k": "1"}}), "a", "v1", false, "t").unwrap();
        let conflict = apply(
            Some(&first),
            &json!({"data": {"k": "2"}}),
            "b",
            "v1",
            false,
            "t",
        );
        let c = conflict.unwrap_err();
        assert_eq!(c[0].manager, "a");
        assert_eq!(c[0].field(), ".data.k");
        // The same value is shared, not a conflict.
        assert!(apply(
            Some(&first),
            &json!({"data": {"k": "1"}}),
            "b",
            "v1",
            false,
            "t"
        )
        .is_ok());
        let forced = apply(
            Some(&first),
            &json!({"data": {"k": "2"}}),
            "b",
            "v1",
            true,
            "t",
        )
        .unwrap();
        assert_eq!(forced["data"]["k"], "2");
        let managers: Vec<_> = read_managed(&forced)
            .into_iter()
            .map(|m| m.manager)
            .collect();
        assert_eq!(managers, vec!["b"]);
    }

    #[test]
    fn apply_removes_fields_the_manager_no_longer_applies() {
        let first = apply(
            None,
            &json!({"data": {"k": "1", "j": "2"}}),
            "a",
            "v1",
            false,
            "t",
        )
        .unwrap();
        let second = apply(
            Some(&first),
            &json!({"data": {"k": "1"}}),
            "a",
            "v1",
            false,
            "t",
        )
        .unwrap();
        assert_eq!(second["data"], json!({"k": "1"}));
    }

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let mut t = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
        strategic_merge_patch(
            &mut t,
            &json!({"spec": {"containers": [{"name": "b", "image": "z"}]}}),
        )
        .unwrap();
        assert_eq!(t["spec"]["containers"][0]["image"], "x");
        assert_eq!(t["spec"]["containers"][1]["image"], "z");
    }
}
