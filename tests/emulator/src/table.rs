//! The `Table` form kubectl asks for when it prints objects: the columns a real server
//! prints for the built-in kinds the emulator knows, and a custom resource's
//! `additionalPrinterColumns` (evaluated with the simple JSONPath CRDs use).

use crate::types::ResourceType;
use crate::util;
use serde_json::{json, Value};

/// How a column's cell is computed from an object.
enum Cell {
    /// A CRD column's JSONPath.
    Path(String),
    /// A built-in printer.
    Print(fn(&Value) -> Value),
}

struct Column {
    name: String,
    /// "string", "integer", "number", "boolean" or "date".
    kind: String,
    description: String,
    priority: i64,
    cell: Cell,
}

fn builtin(name: &str, description: &str, priority: i64, print: fn(&Value) -> Value) -> Column {
    Column {
        name: name.into(),
        kind: "string".into(),
        description: description.into(),
        priority,
        cell: Cell::Print(print),
    }
}

fn age() -> Column {
    Column {
        name: "Age".into(),
        kind: "date".into(),
        description: "CreationTimestamp is a timestamp representing the server time when this object was created.".into(),
        priority: 0,
        cell: Cell::Path(".metadata.creationTimestamp".into()),
    }
}

fn text_or(v: Option<&Value>, default: &str) -> Value {
    match v.and_then(Value::as_str) {
        Some(s) if !s.is_empty() => json!(s),
        _ => json!(default),
    }
}

fn count(v: Option<&Value>) -> Value {
    let n = match v {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    };
    json!(n)
}

fn service_external_ip(o: &Value) -> Value {
    let external: Vec<String> = o
        .pointer("/spec/externalIPs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    match o.pointer("/spec/type").and_then(Value::as_str) {
        Some("ExternalName") => text_or(o.pointer("/spec/externalName"), "<none>"),
        Some("LoadBalancer") => {
            let mut all: Vec<String> = o
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|i| {
                            i.get("ip")
                                .or_else(|| i.get("hostname"))
                                .and_then(Value::as_str)
                                .map(str::to_string)
                        })
                        .collect()
                })
                .unwrap_or_default();
            // kubectl's narrow view shortens long ingress lists as the server does.
            let mut lb = all.join(",");
            if lb.len() > 16 {
                lb = format!("{}...", &lb[..13]);
            }
            all = if lb.is_empty() { vec![] } else { vec![lb] };
            all.extend(external);
            if all.is_empty() {
                json!("<pending>")
            } else {
                json!(all.join(","))
            }
        }
        _ if !external.is_empty() => json!(external.join(",")),
        _ => json!("<none>"),
    }
}

fn service_ports(o: &Value) -> Value {
    let ports: Vec<String> = o
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|p| {
                    let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                    let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                    match p.get("nodePort").and_then(Value::as_i64) {
                        Some(node) => format!("{port}:{node}/{proto}"),
                        None => format!("{port}/{proto}"),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    if ports.is_empty() {
        json!("<none>")
    } else {
        json!(ports.join(","))
    }
}

fn service_selector(o: &Value) -> Value {
    let pairs: Vec<String> = o
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    if pairs.is_empty() {
        json!("<none>")
    } else {
        json!(pairs.join(","))
    }
}

/// The columns (after Name) of a kind at a version.
fn columns(rtype: &ResourceType, version: &str) -> Vec<Column> {
    if rtype.custom {
        let defined = rtype
            .printer_columns
            .get(version)
            .cloned()
            .unwrap_or_default();
        if defined.is_empty() {
            return vec![age()];
        }
        let s = |c: &Value, k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        return defined
            .iter()
            .map(|c| Column {
                name: s(c, "name"),
                kind: s(c, "type"),
                description: s(c, "description"),
                priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                cell: Cell::Path(s(c, "jsonPath")),
            })
            .collect();
    }
    match (rtype.group.as_str(), rtype.kind.as_str()) {
        ("", "Service") => vec![
            builtin("Type", "The type of service.", 0, |o| {
                text_or(o.pointer("/spec/type"), "ClusterIP")
            }),
            builtin("Cluster-IP", "The cluster IP of the service.", 0, |o| {
                text_or(o.pointer("/spec/clusterIP"), "<none>")
            }),
            builtin(
                "External-IP",
                "The external IPs or the load balancer's ingress of the service.",
                0,
                service_external_ip,
            ),
            builtin("Port(s)", "The ports of the service.", 0, service_ports),
            age(),
            builtin(
                "Selector",
                "The label selector of the service.",
                1,
                service_selector,
            ),
        ],
        ("", "Secret") => vec![
            builtin("Type", "The type of the secret.", 0, |o| {
                text_or(o.get("type"), "Opaque")
            }),
            Column {
                kind: "integer".into(),
                ..builtin("Data", "The number of data keys.", 0, |o| {
                    count(o.get("data"))
                })
            },
            age(),
        ],
        ("", "ConfigMap") => vec![
            Column {
                kind: "integer".into(),
                ..builtin("Data", "The number of data keys.", 0, |o| {
                    let n = count(o.get("data")).as_u64().unwrap_or(0)
                        + count(o.get("binaryData")).as_u64().unwrap_or(0);
                    json!(n)
                })
            },
            age(),
        ],
        ("", "Namespace") => vec![
            builtin("Status", "The status of the namespace.", 0, |o| {
                text_or(o.pointer("/status/phase"), "Active")
            }),
            age(),
        ],
        ("", "ServiceAccount") => vec![
            Column {
                kind: "integer".into(),
                ..builtin("Secrets", "The number of secrets.", 0, |o| {
                    count(o.get("secrets"))
                })
            },
            age(),
        ],
        _ => vec![age()],
    }
}

/// The human-readable age kubectl prints (Kubernetes' `duration.HumanDuration`).
pub fn human_duration(secs: u64) -> String {
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        return match secs % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    let years = hours / 24 / 365;
    if hours < 24 * 365 * 8 {
        return match (hours / 24) % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        };
    }
    format!("{years}y")
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The cell of a column for one object, as the API server renders it.
fn cell(column: &Column, o: &Value) -> Value {
    let value = match &column.cell {
        Cell::Print(print) => return print(o),
        Cell::Path(path) => match jsonpath(o, path).into_iter().next() {
            Some(v) => v.clone(),
            None => return Value::Null,
        },
    };
    match column.kind.as_str() {
        "date" => match value.as_str().and_then(util::parse_rfc3339_secs) {
            Some(t) => json!(human_duration(now_secs().saturating_sub(t))),
            None => json!("<invalid>"),
        },
        "string" => match value {
            Value::String(s) => json!(s),
            other => json!(other.to_string()),
        },
        _ => value,
    }
}

/// The values a CRD printer column's JSONPath selects: `.a.b`, `.a[0]`, `.a[*]` and
/// `.a[?(@.k=="v")]` steps, as `additionalPrinterColumns` use them.
pub fn jsonpath<'a>(root: &'a Value, path: &str) -> Vec<&'a Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut current: Vec<&Value> = vec![root];
    let mut rest = path.trim_start_matches('$');
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let (field, tail) = r.split_at(end);
            rest = tail;
            if field.is_empty() {
                continue;
            }
            current = current.into_iter().filter_map(|v| v.get(field)).collect();
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(close) = r.find(']') else {
                return Vec::new();
            };
            // A filter may hold `]` in its quoted value; take the closing `)]` then.
            let close = if r.starts_with("?(") {
                match r.find(")]") {
                    Some(c) => c + 1,
                    None => return Vec::new(),
                }
            } else {
                close
            };
            let inside = &r[..close];
            rest = &r[close + 1..];
            let items: Vec<&Value> = current
                .iter()
                .filter_map(|v| v.as_array())
                .flat_map(|a| a.iter())
                .collect();
            current = if inside == "*" {
                items
            } else if let Ok(i) = inside.parse::<usize>() {
                current
                    .iter()
                    .filter_map(|v| v.as_array().and_then(|a| a.get(i)))
                    .collect()
            } else if let Some(filter) = inside.strip_prefix("?(").and_then(|f| f.strip_suffix(')'))
            {
                let Some((lhs, rhs)) = filter.split_once("==") else {
                    return Vec::new();
                };
                let key = lhs.trim().trim_start_matches('@');
                let want = rhs.trim().trim_matches(|c| c == '"' || c == '\'');
                items
                    .into_iter()
                    .filter(|item| {
                        jsonpath(item, key).first().is_some_and(|v| match v {
                            Value::String(s) => s == want,
                            other => {
                                serde_json::from_str::<Value>(want).is_ok_and(|w| w == **other)
                            }
                        })
                    })
                    .collect()
            } else {
                return Vec::new();
            };
        } else {
            return Vec::new();
        }
    }
    current
}

/// A `Table` of `items` of `rtype` at `version`; `include_object` sends whole objects
/// rather than their metadata.
pub fn table(
    rtype: &ResourceType,
    version: &str,
    items: &[Value],
    meta: Value,
    include_object: bool,
) -> Value {
    let columns = columns(rtype, version);
    let mut definitions = vec![json!({
        "name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace.", "priority": 0
    })];
    definitions.extend(columns.iter().map(|c| {
        json!({"name": c.name, "type": c.kind, "format": "", "description": c.description, "priority": c.priority})
    }));
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut cells = vec![o["metadata"]["name"].clone()];
            cells.extend(columns.iter().map(|c| cell(c, o)));
            let object = if include_object {
                o.clone()
            } else {
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]})
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_selects_fields_indexes_and_filters() {
        let o = json!({"status": {"conditions": [
            {"type": "Reconciled", "status": "True"},
            {"type": "Ready", "status": "False"}
        ]}, "spec": {"hosts": ["a", "b"]}});
        assert_eq!(
            jsonpath(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            vec![&json!("False")]
        );
        assert_eq!(jsonpath(&o, ".spec.hosts[1]"), vec![&json!("b")]);
        assert_eq!(jsonpath(&o, ".spec.hosts"), vec![&json!(["a", "b"])]);
        assert_eq!(jsonpath(&o, ".spec.hosts[*]").len(), 2);
        assert!(jsonpath(&o, ".spec.missing").is_empty());
    }

    #[test]
    fn ages_read_as_kubectl_prints_them() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(3600 * 3), "3h");
        assert_eq!(human_duration(3600 * 50), "2d2h");
    }
}
