//! What the API server checks in a built-in object before it stores it, table-driven:
//!
//! - Types, as decoding into the Go structs does (`replicas: "two"`): a small schema of
//!   the typed (integer, boolean, string, string map) fields of each core kind. How a
//!   type error is answered depends on the write: a create or update fails decoding
//!   (400 BadRequest, `... cannot be handled as a ...: json: cannot unmarshal ...`), a
//!   patch's result fails as an invalid `patch` (422), and a server-side apply fails
//!   building its typed patch object (500, `failed to create typed patch object ...`).
//! - Values, as the kinds' validation does (422 Invalid with `details.causes`): names
//!   (DNS-1123 subdomain, DNS-1123 label for Namespaces, DNS-1035 label for Services,
//!   path segment for RBAC kinds), label keys and values, annotation keys, port ranges,
//!   non-negative counts and required fields.

use serde_json::{json, Value};

/// The type a field decodes into.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ty {
    Int32,
    Int64,
    Bool,
    Str,
    /// `map[string]string` (labels, annotations, selectors, ConfigMap data).
    StrMap,
}

impl Ty {
    fn go(self) -> &'static str {
        match self {
            Ty::Int32 => "int32",
            Ty::Int64 => "int64",
            Ty::Bool => "bool",
            Ty::Str => "string",
            Ty::StrMap => "map[string]string",
        }
    }
}

/// A typed field: its path (`[]` for every element of a list), the Go struct that holds
/// it (named in decoding errors) and its type.
struct Typed(&'static str, &'static str, Ty);

/// The pod template's typed fields, under `spec.template.` of a workload.
const POD_TEMPLATE: &[Typed] = &[
    Typed("metadata.labels", "ObjectMeta", Ty::StrMap),
    Typed("metadata.annotations", "ObjectMeta", Ty::StrMap),
    Typed("spec.terminationGracePeriodSeconds", "PodSpec", Ty::Int64),
    Typed("spec.activeDeadlineSeconds", "PodSpec", Ty::Int64),
    Typed("spec.automountServiceAccountToken", "PodSpec", Ty::Bool),
    Typed("spec.hostNetwork", "PodSpec", Ty::Bool),
    Typed("spec.serviceAccountName", "PodSpec", Ty::Str),
    Typed("spec.nodeSelector", "PodSpec", Ty::StrMap),
    Typed("spec.containers[].name", "Container", Ty::Str),
    Typed("spec.containers[].image", "Container", Ty::Str),
    Typed("spec.containers[].stdin", "Container", Ty::Bool),
    Typed("spec.containers[].tty", "Container", Ty::Bool),
    Typed(
        "spec.containers[].ports[].containerPort",
        "ContainerPort",
        Ty::Int32,
    ),
    Typed(
        "spec.containers[].ports[].hostPort",
        "ContainerPort",
        Ty::Int32,
    ),
    Typed("spec.containers[].ports[].name", "ContainerPort", Ty::Str),
    Typed("spec.containers[].env[].name", "EnvVar", Ty::Str),
    Typed("spec.containers[].env[].value", "EnvVar", Ty::Str),
    Typed("spec.initContainers[].name", "Container", Ty::Str),
    Typed("spec.initContainers[].image", "Container", Ty::Str),
    Typed(
        "spec.initContainers[].ports[].containerPort",
        "ContainerPort",
        Ty::Int32,
    ),
];

/// The typed fields of a built-in kind, `metadata`'s and (for workloads) the pod
/// template's included: path, Go struct, type.
fn typed_fields(kind: &str) -> Vec<(String, &'static str, Ty)> {
    let (own, template): (&[Typed], bool) = match kind {
        "Service" => (
            &[
                Typed("spec.type", "ServiceSpec", Ty::Str),
                Typed("spec.clusterIP", "ServiceSpec", Ty::Str),
                Typed("spec.selector", "ServiceSpec", Ty::StrMap),
                Typed("spec.publishNotReadyAddresses", "ServiceSpec", Ty::Bool),
                Typed(
                    "spec.allocateLoadBalancerNodePorts",
                    "ServiceSpec",
                    Ty::Bool,
                ),
                Typed("spec.healthCheckNodePort", "ServiceSpec", Ty::Int32),
                Typed("spec.loadBalancerIP", "ServiceSpec", Ty::Str),
                Typed(
                    "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                    "ClientIPConfig",
                    Ty::Int32,
                ),
                Typed("spec.ports[].name", "ServicePort", Ty::Str),
                Typed("spec.ports[].protocol", "ServicePort", Ty::Str),
                Typed("spec.ports[].port", "ServicePort", Ty::Int32),
                Typed("spec.ports[].nodePort", "ServicePort", Ty::Int32),
            ],
            false,
        ),
        "Deployment" => (
            &[
                Typed("spec.replicas", "DeploymentSpec", Ty::Int32),
                Typed("spec.minReadySeconds", "DeploymentSpec", Ty::Int32),
                Typed("spec.revisionHistoryLimit", "DeploymentSpec", Ty::Int32),
                Typed("spec.progressDeadlineSeconds", "DeploymentSpec", Ty::Int32),
                Typed("spec.paused", "DeploymentSpec", Ty::Bool),
                Typed("spec.selector.matchLabels", "LabelSelector", Ty::StrMap),
            ],
            true,
        ),
        "ConfigMap" => (
            &[
                Typed("data", "ConfigMap", Ty::StrMap),
                Typed("immutable", "ConfigMap", Ty::Bool),
            ],
            false,
        ),
        "Secret" => (
            &[
                Typed("stringData", "Secret", Ty::StrMap),
                Typed("type", "Secret", Ty::Str),
                Typed("immutable", "Secret", Ty::Bool),
            ],
            false,
        ),
        "Lease" => (
            &[
                Typed("spec.holderIdentity", "LeaseSpec", Ty::Str),
                Typed("spec.leaseDurationSeconds", "LeaseSpec", Ty::Int32),
                Typed("spec.leaseTransitions", "LeaseSpec", Ty::Int32),
                Typed("spec.preferredHolder", "LeaseSpec", Ty::Str),
                Typed("spec.strategy", "LeaseSpec", Ty::Str),
            ],
            false,
        ),
        "ServiceAccount" => (
            &[Typed(
                "automountServiceAccountToken",
                "ServiceAccount",
                Ty::Bool,
            )],
            false,
        ),
        _ => (&[], false),
    };
    let meta = [
        Typed("metadata.name", "ObjectMeta", Ty::Str),
        Typed("metadata.generateName", "ObjectMeta", Ty::Str),
        Typed("metadata.labels", "ObjectMeta", Ty::StrMap),
        Typed("metadata.annotations", "ObjectMeta", Ty::StrMap),
    ];
    let mut all: Vec<(String, &'static str, Ty)> = meta
        .iter()
        .chain(own)
        .map(|Typed(p, s, t)| (p.to_string(), *s, *t))
        .collect();
    if template {
        all.extend(
            POD_TEMPLATE
                .iter()
                .map(|Typed(p, s, t)| (format!("spec.template.{p}"), *s, *t)),
        );
    }
    all
}

/// A value of the wrong type at a typed field.
#[derive(Debug, Clone)]
pub struct TypeError {
    /// The server-side apply path: `.spec.template.spec.containers[name="web"].image`
    pub smd_path: String,
    /// `ServicePort.spec.ports.port`
    pub go_field: String,
    pub go_type: &'static str,
    /// As encoding/json names it: `string`, `number`, `number 1.5`, `bool`, ...
    pub json_value: String,
    pub value: Value,
    ty_expected: Ty,
}

impl TypeError {
    /// `json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port of type int32`
    pub fn json_message(&self) -> String {
        format!(
            "json: cannot unmarshal {} into Go struct field {} of type {}",
            self.json_value, self.go_field, self.go_type
        )
    }

    /// structured-merge-diff's complaint about the value, as server-side apply reports it.
    pub fn smd_message(&self) -> String {
        let unstructured = format!(
            "&value.valueUnstructured{{Value:{}}}",
            go_value(&self.value)
        );
        let what = match self.ty_expected {
            Ty::Int32 | Ty::Int64 => format!(
                "expected numeric (int or float), got {}",
                match &self.value {
                    Value::String(_) => "string",
                    Value::Bool(_) => "bool",
                    Value::Array(_) => "[]interface {}",
                    _ => "map[string]interface {}",
                }
            ),
            Ty::Bool => format!("expected boolean, got {unstructured}"),
            Ty::Str => format!("expected string, got {unstructured}"),
            Ty::StrMap => format!("expected map, got {unstructured}"),
        };
        format!("{}: {what}", self.smd_path)
    }
}

/// A value as Go's `%v`/`%#v` shows it inside structured-merge-diff's messages.
fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => "null",
    }
}

/// Whether `v` decodes into `ty`; for numbers, `Err(Some(..))` names the number, as
/// encoding/json does for one that does not fit (`number 1.5`).
fn fits(v: &Value, ty: Ty) -> Result<(), Option<String>> {
    if v.is_null() {
        return Ok(());
    }
    match ty {
        Ty::Int32 | Ty::Int64 => match v {
            Value::Number(n) => {
                let ok = match (n.as_i64(), ty) {
                    (Some(i), Ty::Int32) => i32::try_from(i).is_ok(),
                    (Some(_), _) => true,
                    (None, _) => false,
                };
                if ok {
                    Ok(())
                } else {
                    Err(Some(format!("number {n}")))
                }
            }
            _ => Err(None),
        },
        Ty::Bool => v.is_boolean().then_some(()).ok_or(None),
        Ty::Str => v.is_string().then_some(()).ok_or(None),
        Ty::StrMap => v.is_object().then_some(()).ok_or(None),
    }
}

/// Walks `path` (dotted, `[]` for list elements) in `o`, calling `found` with each value
/// there and its indexed and server-side apply paths.
fn walk(
    o: &Value,
    path: &str,
    at: String,
    smd: String,
    found: &mut dyn FnMut(&Value, String, String),
) {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let (name, list) = match head.strip_suffix("[]") {
        Some(n) => (n, true),
        None => (head, false),
    };
    let Some(v) = o.get(name) else { return };
    let at = if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    };
    let smd = format!("{smd}.{name}");
    if !list {
        match rest {
            None => found(v, at, smd),
            Some(r) => walk(v, r, at, smd, found),
        }
        return;
    }
    let Some(items) = v.as_array() else { return };
    for (i, item) in items.iter().enumerate() {
        let key = match item.get("name").and_then(Value::as_str) {
            Some(n) if name.ends_with("ontainers") => format!("[name={n:?}]"),
            _ => format!("[{i}]"),
        };
        let (at, smd) = (format!("{at}[{i}]"), format!("{smd}{key}"));
        match rest {
            None => found(item, at, smd),
            Some(r) => walk(item, r, at, smd, found),
        }
    }
}

/// The first value of the wrong type in a built-in object of `kind`, if any.
pub fn type_error(kind: &str, o: &Value) -> Option<TypeError> {
    let mut first: Option<TypeError> = None;
    for (path, go_struct, ty) in &typed_fields(kind) {
        let mut check = |v: &Value, _at: String, smd: String| {
            if first.is_some() {
                return;
            }
            let go_field = format!("{go_struct}.{}", path.replace("[]", ""));
            // A map's values are strings.
            let (bad, expected): (Option<(&Value, Option<String>)>, Ty) =
                if *ty == Ty::StrMap && v.is_object() {
                    let wrong = v
                        .as_object()
                        .into_iter()
                        .flatten()
                        .find(|(_, x)| !x.is_string() && !x.is_null())
                        .map(|(_, x)| (x, None));
                    (wrong, Ty::Str)
                } else {
                    (fits(v, *ty).err().map(|n| (v, n)), *ty)
                };
            if let Some((value, number)) = bad {
                first = Some(TypeError {
                    smd_path: smd,
                    go_field,
                    go_type: if *ty == Ty::StrMap && expected == Ty::Str {
                        "string"
                    } else {
                        ty.go()
                    },
                    json_value: number.unwrap_or_else(|| json_kind(value).to_string()),
                    value: value.clone(),
                    ty_expected: expected,
                });
            }
        };
        walk(o, path, String::new(), String::new(), &mut check);
        if first.is_some() {
            break;
        }
    }
    first
}

/// One field error, as `field.Error` renders it.
#[derive(Debug, Clone)]
pub struct FieldError {
    pub field: String,
    /// `FieldValueInvalid`, `FieldValueRequired`, ...
    pub reason: &'static str,
    /// `Invalid value: "x": ...` (the cause's message).
    pub body: String,
}

impl FieldError {
    pub fn invalid(field: &str, value: &Value, detail: &str) -> FieldError {
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        FieldError {
            field: field.to_string(),
            reason: "FieldValueInvalid",
            body: format!("Invalid value: {shown}: {detail}"),
        }
    }

    pub fn required(field: &str, detail: &str) -> FieldError {
        FieldError {
            field: field.to_string(),
            reason: "FieldValueRequired",
            body: if detail.is_empty() {
                "Required value".to_string()
            } else {
                format!("Required value: {detail}")
            },
        }
    }

    pub fn cause(&self) -> Value {
        json!({"reason": self.reason, "message": self.body, "field": self.field})
    }
}

/// `field: body`, or `[a, b]` for several, as an aggregate error prints.
pub fn aggregate(errors: &[FieldError]) -> String {
    let all: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.body))
        .collect();
    if all.len() == 1 {
        all[0].clone()
    } else {
        format!("[{}]", all.join(", "))
    }
}

fn regex_error(msg: &str, pattern: &str, examples: &[&str]) -> String {
    let shown: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!(
        "{msg} (e.g. {}regex used for validation is '{pattern}')",
        shown.join(" or ")
    )
}

fn max_len(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn label_ok(s: &str, first: fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    !b.is_empty()
        && first(b[0])
        && b.iter().all(inner)
        && b.last()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

fn alnum_lower(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// IsDNS1123Subdomain's messages.
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 253 {
        out.push(max_len(253));
    }
    if !s.split('.').all(|p| label_ok(p, alnum_lower)) {
        out.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
            &["example.com"],
        ));
    }
    out
}

/// IsDNS1123Label's messages.
fn dns1123_label(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 63 {
        out.push(max_len(63));
    }
    if !label_ok(s, alnum_lower) {
        out.push(regex_error(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
            "[a-z0-9]([-a-z0-9]*[a-z0-9])?",
            &["my-name", "123-abc"],
        ));
    }
    out
}

/// IsDNS1035Label's messages.
fn dns1035_label(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 63 {
        out.push(max_len(63));
    }
    if !label_ok(s, |c| c.is_ascii_lowercase()) {
        out.push(regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            "[a-z]([-a-z0-9]*[a-z0-9])?",
            &["my-name", "abc-123"],
        ));
    }
    out
}

/// IsValidPathSegmentName's messages (RBAC names such as `system:controller:x`).
fn path_segment(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s == "." || s == ".." {
        out.push(format!("may not be '{s}'"));
    }
    for bad in ["/", "%"] {
        if s.contains(bad) {
            out.push(format!("may not contain '{bad}'"));
        }
    }
    out
}

fn label_value_chars(s: &str) -> bool {
    let b = s.as_bytes();
    b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";

/// IsQualifiedName's messages (label and annotation keys).
fn qualified_name(s: &str) -> Vec<String> {
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                return vec!["prefix part must be non-empty".to_string()];
            }
            let mut out: Vec<String> = dns1123_subdomain(prefix)
                .into_iter()
                .map(|m| format!("prefix part {m}"))
                .collect();
            out.extend(qualified_name(name));
            return out;
        }
        _ => {
            return vec![format!(
                "{} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"],
                )
            )]
        }
    };
    let mut out = Vec::new();
    if name.is_empty() {
        out.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        out.push(format!("name part {}", max_len(63)));
    }
    if !name.is_empty() && !label_value_chars(name) {
        out.push(regex_error(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            QUALIFIED_NAME_FMT,
            &["MyName", "my.name", "123-abc"],
        ));
    }
    out
}

/// IsValidLabelValue's messages.
fn label_value(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 63 {
        out.push(max_len(63));
    }
    if !s.is_empty() && !label_value_chars(s) {
        out.push(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?",
            &["MyValue", "my_value", "12345"],
        ));
    }
    out
}

/// How a kind's names are checked.
fn name_rule(group: &str, kind: &str) -> fn(&str) -> Vec<String> {
    match (group, kind) {
        ("", "Namespace") => dns1123_label,
        ("", "Service") => dns1035_label,
        ("rbac.authorization.k8s.io", _) => path_segment,
        _ => dns1123_subdomain,
    }
}

/// A range check: a path (`[]` for every element), the smallest and largest value, and
/// the message.
struct Range(&'static str, i64, i64, &'static str);

const PORT: &str = "must be between 1 and 65535, inclusive";
const NON_NEGATIVE: &str = "must be greater than or equal to 0";

fn ranges(kind: &str) -> &'static [Range] {
    match kind {
        "Service" => &[
            Range("spec.ports[].port", 1, 65535, PORT),
            Range("spec.ports[].nodePort", 1, 65535, PORT),
            Range("spec.ports[].targetPort", 1, 65535, PORT),
        ],
        "Deployment" => &[
            Range("spec.replicas", 0, i64::MAX, NON_NEGATIVE),
            Range("spec.minReadySeconds", 0, i64::MAX, NON_NEGATIVE),
            Range("spec.revisionHistoryLimit", 0, i64::MAX, NON_NEGATIVE),
            Range(
                "spec.template.spec.containers[].ports[].containerPort",
                1,
                65535,
                PORT,
            ),
            Range(
                "spec.template.spec.containers[].ports[].hostPort",
                1,
                65535,
                PORT,
            ),
        ],
        "Lease" => &[
            Range(
                "spec.leaseDurationSeconds",
                1,
                i64::MAX,
                "must be greater than 0",
            ),
            Range("spec.leaseTransitions", 0, i64::MAX, NON_NEGATIVE),
        ],
        _ => &[],
    }
}

/// The most bytes of data a Secret holds (`MaxSecretSize`).
pub const MAX_SECRET_SIZE: usize = 1024 * 1024;

/// The bytes of a Secret's `data` (base64-decoded) and `stringData`.
fn secret_size(o: &Value) -> usize {
    let decoded = |v: &Value| {
        v.as_str()
            .and_then(crate::util::base64_decode)
            .map(|b| b.len())
            .unwrap_or(0)
    };
    let data: usize = o
        .get("data")
        .and_then(Value::as_object)
        .map(|m| m.values().map(decoded).sum())
        .unwrap_or(0);
    let string: usize = o
        .get("stringData")
        .and_then(Value::as_object)
        .map(|m| m.values().filter_map(Value::as_str).map(str::len).sum())
        .unwrap_or(0);
    data + string
}

/// Fields a kind cannot do without, with the detail the server gives.
fn required(kind: &str) -> &'static [(&'static str, &'static str)] {
    match kind {
        "Deployment" => &[
            ("spec.selector", ""),
            ("spec.template.spec.containers", ""),
            ("spec.template.spec.containers[].name", ""),
            ("spec.template.spec.containers[].image", ""),
        ],
        _ => &[],
    }
}

/// Everything wrong with the values of a built-in object (`custom` kinds get only the
/// checks of their metadata).
pub fn validate(group: &str, kind: &str, custom: bool, o: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let name = o
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    for msg in name_rule(group, kind)(name) {
        errors.push(FieldError::invalid("metadata.name", &json!(name), &msg));
    }
    if let Some(labels) = o.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            for msg in qualified_name(k) {
                errors.push(FieldError::invalid("metadata.labels", &json!(k), &msg));
            }
            for msg in label_value(v.as_str().unwrap_or_default()) {
                errors.push(FieldError::invalid("metadata.labels", v, &msg));
            }
        }
    }
    if let Some(annotations) = o
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        for k in annotations.keys() {
            for msg in qualified_name(&k.to_lowercase()) {
                errors.push(FieldError::invalid("metadata.annotations", &json!(k), &msg));
            }
        }
    }
    if custom {
        return errors;
    }
    for Range(path, min, max, msg) in ranges(kind) {
        walk(o, path, String::new(), String::new(), &mut |v, at, _| {
            if let Some(n) = v.as_i64() {
                if n < *min || n > *max {
                    errors.push(FieldError::invalid(&at, v, msg));
                }
            }
        });
    }
    if kind == "Secret" && group.is_empty() && secret_size(o) > MAX_SECRET_SIZE {
        errors.push(FieldError {
            field: "data".into(),
            reason: "FieldValueTooLong",
            body: format!("Too long: must have at most {MAX_SECRET_SIZE} bytes"),
        });
    }
    for (path, detail) in required(kind) {
        // The parent must be there for the field to be missing from it.
        let (parent, leaf) = path.rsplit_once('.').unwrap_or(("", path));
        let mut check = |v: &Value, at: String| {
            let missing = match v.get(leaf) {
                None | Some(Value::Null) => true,
                Some(Value::Array(a)) => a.is_empty(),
                Some(Value::String(s)) => s.is_empty(),
                _ => false,
            };
            if missing {
                let field = if at.is_empty() {
                    leaf.to_string()
                } else {
                    format!("{at}.{leaf}")
                };
                errors.push(FieldError::required(&field, detail));
            }
        };
        if parent.is_empty() {
            check(o, String::new());
        } else {
            walk(o, parent, String::new(), String::new(), &mut |v, at, _| {
                check(v, at)
            });
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules_of_their_kind() {
        assert!(dns1123_subdomain("a.b-c").is_empty());
        assert_eq!(dns1123_subdomain(&"a".repeat(254)).len(), 1);
        assert_eq!(dns1123_subdomain("Bad_Name").len(), 1);
        assert!(dns1123_label("a.b").len() == 1);
        assert!(dns1035_label("1abc").len() == 1);
        assert!(dns1035_label("abc-1").is_empty());
        assert!(path_segment("system:controller:x").is_empty());
        assert!(qualified_name("app.kubernetes.io/name").is_empty());
        assert_eq!(qualified_name("bad key").len(), 1);
        assert!(label_value("").is_empty());
        assert_eq!(label_value("has space").len(), 1);
    }

    #[test]
    fn type_errors_name_the_go_field() {
        let svc = json!({"metadata": {"name": "x"}, "spec": {"ports": [{"port": "eighty"}]}});
        let e = type_error("Service", &svc).expect("error");
        assert_eq!(e.smd_path, ".spec.ports[0].port");
        assert_eq!(
            e.json_message(),
            "json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port of type int32"
        );
        let d = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "ports": [{"containerPort": 1.5}]}]}}}});
        let e = type_error("Deployment", &d).expect("error");
        assert_eq!(e.json_value, "number 1.5");
        assert_eq!(
            e.smd_path,
            ".spec.template.spec.containers[name=\"web\"].ports[0].containerPort"
        );
        let cm = json!({"data": {"a": 1}});
        assert_eq!(
            type_error("ConfigMap", &cm).expect("error").json_message(),
            "json: cannot unmarshal number into Go struct field ConfigMap.data of type string"
        );
    }
}
