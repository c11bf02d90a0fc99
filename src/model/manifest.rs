//! Kubernetes manifests given in a resource block: multi-document YAML files or an inline
//! TOML table. Each document must name its apiVersion, kind and metadata.name; a `List`
//! is flattened into its items, as kubectl does.

use super::yaml::{self, printable, Seg};
use super::Manifest;
use crate::diag::{Diagnostic, Location, SourceFile};
use crate::object::{
    base64_decode, check_dns_label, check_label_key, check_label_value, check_object_name,
    check_type, split_api_version,
};
use serde_json::Value;

/// Reads every document of a YAML file. `key_location` is the `file = ...` line. Returns
/// how many documents held something (an empty file holds none).
pub fn from_yaml(
    yaml: &SourceFile,
    key_location: &Location,
    out: &mut Vec<Manifest>,
    diags: &mut Vec<Diagnostic>,
) -> usize {
    if let Some(d) = crate::diag::control_character(yaml) {
        diags.push(d);
        return 0;
    }
    let docs = match yaml::documents(&yaml.text) {
        Ok(docs) => docs,
        Err(e) => {
            let mut d =
                Diagnostic::new(format!("invalid YAML in `{}`: {}", yaml.display, e.message));
            d = match e.at {
                Some((line, col)) => d.at(yaml.locate_line_col(line, col)),
                None => d.at(key_location.clone()),
            };
            if let Some((line, col)) = e.first_at {
                d = d.note(
                    "the first one is here",
                    Some(yaml.locate_line_col(line, col)),
                );
            }
            diags.push(d);
            return 0;
        }
    };
    let mut found = 0;
    for (i, object) in docs.into_iter().enumerate() {
        if object.is_null() {
            continue; // an empty document (comments, or a leading `---`)
        }
        found += 1;
        let origin = format!("{} (document {})", yaml.display, i + 1);
        let place = Place::Yaml {
            source: yaml,
            index: i,
            fallback: key_location,
        };
        check_and_push(object, origin, &place, &[], key_location, out, diags);
    }
    found
}

/// Where an object came from, to point at one of its fields.
enum Place<'a> {
    Yaml {
        source: &'a SourceFile,
        index: usize,
        fallback: &'a Location,
    },
    Inline(&'a Location),
}

impl Place<'_> {
    fn at(&self, path: &[Seg]) -> Location {
        match self {
            Place::Yaml {
                source,
                index,
                fallback,
            } => match yaml::locate_value(&source.text, *index, path) {
                Some((line, col)) => source.locate_line_col(line, col),
                None => (*fallback).clone(),
            },
            Place::Inline(loc) => (*loc).clone(),
        }
    }
}

/// Reads an inline `manifest = { ... }` table.
pub fn from_inline(
    object: Value,
    location: Location,
    out: &mut Vec<Manifest>,
    diags: &mut Vec<Diagnostic>,
) {
    let place = Place::Inline(&location);
    check_and_push(
        object,
        "inline manifest".to_string(),
        &place,
        &[],
        &location,
        out,
        diags,
    );
}

fn key(s: &str) -> Seg {
    Seg::Key(s.to_string())
}

#[allow(clippy::too_many_arguments)]
fn check_and_push(
    object: Value,
    origin: String,
    place: &Place<'_>,
    prefix: &[Seg],
    location: &Location,
    out: &mut Vec<Manifest>,
    diags: &mut Vec<Diagnostic>,
) {
    let at = |field: &[&str]| {
        let mut path = prefix.to_vec();
        path.extend(field.iter().map(|f| key(f)));
        place.at(&path)
    };
    let fail = |diags: &mut Vec<Diagnostic>, field: &[&str], what: String| {
        diags.push(Diagnostic::new(format!("{origin}: {what}")).at(at(field)));
    };
    let Value::Object(map) = &object else {
        return fail(
            diags,
            &[],
            "a manifest must be a mapping (an object)".into(),
        );
    };
    let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind == "List" || kind.ends_with("List") && map.contains_key("items") {
        match map.get("items") {
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let origin = format!("{origin} item {}", i + 1);
                    let mut prefix = prefix.to_vec();
                    prefix.extend([key("items"), Seg::Index(i)]);
                    check_and_push(item.clone(), origin, place, &prefix, location, out, diags);
                }
            }
            _ => fail(
                diags,
                &["items"],
                "a List must have an `items` array".into(),
            ),
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
            &[],
            format!(
                "the object has no {} (each must be a non-empty string)",
                missing.join(", ")
            ),
        );
    }
    if let Err(why) = check_type(api_version, kind) {
        let field = if why.starts_with("kind") {
            "kind"
        } else {
            "apiVersion"
        };
        return fail(diags, &[field], why);
    }
    let (group, _) = split_api_version(api_version);
    if let Err(why) = check_object_name(group, kind, name) {
        return fail(
            diags,
            &["metadata", "name"],
            format!("invalid name `{}` for a {kind}: {why}", printable(name)),
        );
    }
    if let Some(ns) = metadata.and_then(|m| m.get("namespace")) {
        match ns.as_str() {
            Some(ns) => {
                if let Err(why) = check_dns_label(ns) {
                    return fail(
                        diags,
                        &["metadata", "namespace"],
                        format!(
                            "invalid namespace `{}` of {kind} `{name}`: {why}",
                            printable(ns)
                        ),
                    );
                }
            }
            None => {
                return fail(
                    diags,
                    &["metadata", "namespace"],
                    format!("metadata.namespace of {kind} `{name}` must be a string"),
                )
            }
        }
    }
    let before = diags.len();
    for (field, values_too) in [("labels", true), ("annotations", false)] {
        let Some(m) = metadata.and_then(|m| m.get(field)) else {
            continue;
        };
        let Some(m) = m.as_object() else {
            fail(
                diags,
                &["metadata", field],
                format!("metadata.{field} of {kind} `{name}` must be a mapping"),
            );
            continue;
        };
        for (k, v) in m {
            if let Err(why) = check_label_key(k) {
                fail(
                    diags,
                    &["metadata", field],
                    format!(
                        "invalid {} key `{}` of {kind} `{name}`: {why}",
                        &field[..field.len() - 1],
                        printable(k)
                    ),
                );
            }
            match v.as_str() {
                Some(v) if values_too => {
                    if let Err(why) = check_label_value(v) {
                        fail(
                            diags,
                            &["metadata", field, k],
                            format!(
                                "invalid value of label `{}` of {kind} `{name}`: {why}",
                                printable(k)
                            ),
                        );
                    }
                }
                Some(_) => {}
                None => fail(
                    diags,
                    &["metadata", field, k],
                    format!(
                        "metadata.{field}.{} of {kind} `{name}` must be a string",
                        printable(k)
                    ),
                ),
            }
        }
    }
    if group.is_empty() && kind == "Secret" {
        if let Some(data) = map.get("data") {
            match data.as_object() {
                Some(data) => {
                    for (k, v) in data {
                        let ok = v.as_str().is_some_and(|s| base64_decode(s).is_some());
                        if !ok {
                            fail(
                                diags,
                                &["data", k],
                                format!(
                                    "data `{}` of Secret `{name}` is not base64 (standard alphabet, padded with `=`); use `stringData` for plain text",
                                    printable(k)
                                ),
                            );
                        }
                    }
                }
                None => fail(
                    diags,
                    &["data"],
                    format!("data of Secret `{name}` must be a mapping"),
                ),
            }
        }
        if let Some(data) = map.get("stringData") {
            let ok = data
                .as_object()
                .is_some_and(|d| d.values().all(Value::is_string));
            if !ok {
                fail(
                    diags,
                    &["stringData"],
                    format!("stringData of Secret `{name}` must map keys to strings"),
                );
            }
        }
    }
    if diags.len() > before {
        return;
    }
    out.push(Manifest {
        object,
        origin,
        location: location.clone(),
    });
}
