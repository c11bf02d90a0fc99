//! Request bodies in the API server's protobuf encoding, for the few core kinds that
//! kubectl's typed clients write (`kubectl create namespace|configmap|secret|service|
//! serviceaccount`): client-go's generated clients always send protobuf for built-in
//! kinds and do not fall back to JSON on 415. Answers stay JSON, which those clients
//! accept (`Accept: application/vnd.kubernetes.protobuf,application/json`).
//!
//! The encoding: the magic `k8s\0`, then a `runtime.Unknown` message (`typeMeta` = 1
//! with `apiVersion` = 1 and `kind` = 2, `raw` = 2 holding the object's message). The
//! field numbers below are those of k8s.io/api's and k8s.io/apimachinery's
//! `generated.proto`; fields not listed are skipped.

use crate::util;
use serde_json::{json, Map, Value};

#[derive(Clone, Copy)]
enum F {
    Str,
    Int,
    Bool,
    Time,
    IntOrString,
    StrList,
    StrMap,
    BytesMap,
    Msg(&'static [(u64, &'static str, F)]),
    MsgList(&'static [(u64, &'static str, F)]),
}

const OBJECT_META: &[(u64, &str, F)] = &[
    (1, "name", F::Str),
    (2, "generateName", F::Str),
    (3, "namespace", F::Str),
    (5, "uid", F::Str),
    (6, "resourceVersion", F::Str),
    (7, "generation", F::Int),
    (8, "creationTimestamp", F::Time),
    (11, "labels", F::StrMap),
    (12, "annotations", F::StrMap),
    (14, "finalizers", F::StrList),
];

const SERVICE_PORT: &[(u64, &str, F)] = &[
    (1, "name", F::Str),
    (2, "protocol", F::Str),
    (3, "port", F::Int),
    (4, "targetPort", F::IntOrString),
    (5, "nodePort", F::Int),
    (6, "appProtocol", F::Str),
];

const SERVICE_SPEC: &[(u64, &str, F)] = &[
    (1, "ports", F::MsgList(SERVICE_PORT)),
    (2, "selector", F::StrMap),
    (3, "clusterIP", F::Str),
    (4, "type", F::Str),
    (5, "externalIPs", F::StrList),
    (7, "sessionAffinity", F::Str),
    (8, "loadBalancerIP", F::Str),
    (10, "externalName", F::Str),
    (11, "externalTrafficPolicy", F::Str),
    (18, "clusterIPs", F::StrList),
];

const LOCAL_REF: &[(u64, &str, F)] = &[(1, "name", F::Str)];

/// The messages of the kinds this emulator reads as protobuf.
fn schema(api_version: &str, kind: &str) -> Option<&'static [(u64, &'static str, F)]> {
    if api_version != "v1" {
        return None;
    }
    Some(match kind {
        "Namespace" => &[
            (1, "metadata", F::Msg(OBJECT_META)),
            (2, "spec", F::Msg(&[(1, "finalizers", F::StrList)])),
        ],
        "ConfigMap" => &[
            (1, "metadata", F::Msg(OBJECT_META)),
            (2, "data", F::StrMap),
            (3, "binaryData", F::BytesMap),
            (4, "immutable", F::Bool),
        ],
        "Secret" => &[
            (1, "metadata", F::Msg(OBJECT_META)),
            (2, "data", F::BytesMap),
            (3, "type", F::Str),
            (4, "stringData", F::StrMap),
            (5, "immutable", F::Bool),
        ],
        "Service" => &[
            (1, "metadata", F::Msg(OBJECT_META)),
            (2, "spec", F::Msg(SERVICE_SPEC)),
        ],
        "ServiceAccount" => &[
            (1, "metadata", F::Msg(OBJECT_META)),
            (3, "imagePullSecrets", F::MsgList(LOCAL_REF)),
            (4, "automountServiceAccountToken", F::Bool),
        ],
        _ => return None,
    })
}

/// One field of a message: its number and its value (a varint, or bytes).
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn varint(b: &[u8], i: &mut usize) -> Result<u64, String> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i).ok_or("truncated varint")?;
        *i += 1;
        n |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(n);
        }
    }
    Err("varint too long".into())
}

fn fields(b: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let tag = varint(b, &mut i)?;
        let value = match tag & 7 {
            0 => Wire::Varint(varint(b, &mut i)?),
            1 | 5 => {
                i += if tag & 7 == 1 { 8 } else { 4 };
                Wire::Fixed
            }
            2 => {
                let len = usize::try_from(varint(b, &mut i)?).map_err(|e| e.to_string())?;
                let end = i.checked_add(len).filter(|e| *e <= b.len());
                let end = end.ok_or("truncated field")?;
                let bytes = &b[i..end];
                i = end;
                Wire::Bytes(bytes)
            }
            w => return Err(format!("unsupported wire type {w}")),
        };
        out.push((tag >> 3, value));
    }
    if i > b.len() {
        return Err("truncated field".into());
    }
    Ok(out)
}

fn text(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|e| e.to_string())
}

/// A map entry (key = 1, value = 2).
fn entry(b: &[u8]) -> Result<(String, Vec<u8>), String> {
    let (mut k, mut v) = (String::new(), Vec::new());
    for (n, w) in fields(b)? {
        match (n, w) {
            (1, Wire::Bytes(x)) => k = text(x)?,
            (2, Wire::Bytes(x)) => v = x.to_vec(),
            _ => {}
        }
    }
    Ok((k, v))
}

fn message(b: &[u8], schema: &[(u64, &str, F)]) -> Result<Value, String> {
    let mut o = Map::new();
    for (n, w) in fields(b)? {
        let Some((_, name, f)) = schema.iter().find(|(num, _, _)| *num == n) else {
            continue;
        };
        let name = name.to_string();
        match (f, w) {
            (F::Str, Wire::Bytes(x)) => {
                let s = text(x)?;
                // Non-pointer fields are always encoded; JSON omits them when empty.
                if !s.is_empty() {
                    o.insert(name, json!(s));
                }
            }
            (F::Int, Wire::Varint(v)) => {
                if v != 0 {
                    o.insert(name, json!(v as i64));
                }
            }
            (F::Bool, Wire::Varint(v)) => {
                if v != 0 {
                    o.insert(name, json!(true));
                }
            }
            (F::Time, Wire::Bytes(x)) => {
                let secs = fields(x)?.into_iter().find_map(|(n, w)| match (n, w) {
                    (1, Wire::Varint(s)) => Some(s),
                    _ => None,
                });
                if let Some(s) = secs.filter(|s| *s > 0) {
                    o.insert(name, json!(util::rfc3339(s)));
                }
            }
            (F::IntOrString, Wire::Bytes(x)) => {
                let (mut kind, mut int, mut string) = (0, 0, String::new());
                for (n, w) in fields(x)? {
                    match (n, w) {
                        (1, Wire::Varint(v)) => kind = v,
                        (2, Wire::Varint(v)) => int = v as u32 as i32,
                        (3, Wire::Bytes(s)) => string = text(s)?,
                        _ => {}
                    }
                }
                o.insert(name, if kind == 1 { json!(string) } else { json!(int) });
            }
            (F::StrList, Wire::Bytes(x)) => {
                let list = o.entry(name).or_insert_with(|| json!([]));
                if let Some(a) = list.as_array_mut() {
                    a.push(json!(text(x)?));
                }
            }
            (F::StrMap | F::BytesMap, Wire::Bytes(x)) => {
                let (k, v) = entry(x)?;
                let v = match f {
                    F::StrMap => json!(text(&v)?),
                    _ => json!(util::base64(&v)),
                };
                let map = o.entry(name).or_insert_with(|| json!({}));
                map[k] = v;
            }
            (F::Msg(s), Wire::Bytes(x)) => {
                o.insert(name, message(x, s)?);
            }
            (F::MsgList(s), Wire::Bytes(x)) => {
                let item = message(x, s)?;
                let list = o.entry(name).or_insert_with(|| json!([]));
                if let Some(a) = list.as_array_mut() {
                    a.push(item);
                }
            }
            _ => return Err(format!("field {n} ({name}) has an unexpected wire type")),
        }
    }
    Ok(Value::Object(o))
}

/// The object of a protobuf request body as JSON, or why it cannot be read.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let unknown = body
        .strip_prefix(b"k8s\0".as_slice())
        .ok_or("the body does not start with the protobuf magic k8s\\0")?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (n, w) in fields(unknown)? {
        match (n, w) {
            (1, Wire::Bytes(type_meta)) => {
                for (n, w) in fields(type_meta)? {
                    match (n, w) {
                        (1, Wire::Bytes(x)) => api_version = text(x)?,
                        (2, Wire::Bytes(x)) => kind = text(x)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(x)) => raw = x,
            _ => {}
        }
    }
    let schema = schema(&api_version, &kind).ok_or_else(|| {
        format!("this emulator reads protobuf only for v1 Namespace, ConfigMap, Secret, Service and ServiceAccount, not {api_version} {kind}")
    })?;
    let mut o = message(raw, schema)?;
    o["apiVersion"] = json!(api_version);
    o["kind"] = json!(kind);
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(n << 3 | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn reads_a_config_map() {
        let meta = [field(1, b"c"), field(3, b"default"), field(2, b"")].concat();
        let entry = [field(1, b"k"), field(2, b"v")].concat();
        let raw = [field(1, &meta), field(2, &entry)].concat();
        let type_meta = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let body = [b"k8s\0".to_vec(), field(1, &type_meta), field(2, &raw)].concat();
        assert_eq!(
            decode(&body).expect("decoded"),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "c", "namespace": "default"}, "data": {"k": "v"}})
        );
        assert!(decode(b"{}").is_err());
    }
}
