//! Kubernetes manifests given in a resource block: multi-document YAML files or an inline
//! TOML table. Each document must name its apiVersion, kind and metadata.name; a `List`
//! is flattened into its items, as kubectl does.

use super::Manifest;
use crate::diag::{Diagnostic, Location, SourceFile};
use crate::object::{check_dns_label, check_object_name, check_type, split_api_version};
use serde::Deserialize;
use serde_json::Value;

/// Reads every document of a YAML file. `key_location` is the `file = ...` line.
pub fn from_yaml(
    yaml: &SourceFile,
    key_location: &Location,
    out: &mut Vec<Manifest>,
    diags: &mut Vec<Diagnostic>,
) {
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(&yaml.text).enumerate() {
        let n = i + 1;
        match Value::deserialize(doc) {
            Ok(Value::Null) => {} // an empty document (comments, or a leading `---`)
            Ok(object) => {
                let origin = format!("{} (document {n})", yaml.display);
                check_and_push(object, origin, key_location.clone(), out, diags);
            }
            Err(e) => {
                let mut d = Diagnostic::new(format!(
                    "invalid YAML in `{}`: {}",
                    yaml.display,
                    strip_location(&e.to_string())
                ));
                if let Some(loc) = e.location() {
                    d = d.at(Location::from_line_col(
                        &yaml.display,
                        &yaml.text,
                        loc.line(),
                        loc.column(),
                    ));
                } else {
                    d = d.at(key_location.clone());
                }
                diags.push(d);
                // The parser cannot resume after a syntax error.
                return;
            }
        }
    }
}

/// serde_yaml puts "at line X column Y" in its message; the location is shown separately.
fn strip_location(msg: &str) -> &str {
    match msg.find(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    }
}

/// Reads an inline `manifest = { ... }` table.
pub fn from_inline(
    object: Value,
    location: Location,
    out: &mut Vec<Manifest>,
    diags: &mut Vec<Diagnostic>,
) {
    check_and_push(object, "inline manifest".to_string(), location, out, diags);
}

fn check_and_push(
    object: Value,
    origin: String,
    location: Location,
    out: &mut Vec<Manifest>,
    diags: &mut Vec<Diagnostic>,
) {
    let fail = |diags: &mut Vec<Diagnostic>, what: String| {
        diags.push(Diagnostic::new(format!("{origin}: {what}")).at(location.clone()));
    };
    let Value::Object(map) = &object else {
        return fail(diags, "a manifest must be a mapping (an object)".into());
    };
    let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind == "List" || kind.ends_with("List") && map.contains_key("items") {
        match map.get("items") {
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let origin = format!("{origin} item {}", i + 1);
                    check_and_push(item.clone(), origin, location.clone(), out, diags);
                }
            }
            _ => fail(diags, "a List must have an `items` array".into()),
        }
        return;
    }
    let metadata = map.get("metadata");
    let name = metadata
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut missing = Vec::new();
    if api_version.is_empty() {
        missing.push("apiVersion");
    }
    if kind.is_empty() {
        missing.push("kind");
    }
    if name.is_empty() {
        missing.push("metadata.name");
    }
    if !missing.is_empty() {
        return fail(
            diags,
            format!(
                "the object has no {} (each must be a non-empty string)",
                missing.join(", ")
            ),
        );
    }
    if let Err(why) = check_type(api_version, kind) {
        return fail(diags, why);
    }
    let (group, _) = split_api_version(api_version);
    if let Err(why) = check_object_name(group, kind, name) {
        return fail(diags, format!("invalid name `{name}` for a {kind}: {why}"));
    }
    if let Some(ns) = metadata.and_then(|m| m.get("namespace")) {
        match ns.as_str() {
            Some(ns) => {
                if let Err(why) = check_dns_label(ns) {
                    return fail(
                        diags,
                        format!("invalid namespace `{ns}` of {kind} `{name}`: {why}"),
                    );
                }
            }
            None => {
                return fail(
                    diags,
                    format!("metadata.namespace of {kind} `{name}` must be a string"),
                )
            }
        }
    }
    out.push(Manifest {
        object,
        origin,
        location,
    });
}
