//! Kubernetes objects as dcm sees them: identity (`ObjRef` and its address), hashing,
//! naming rules and secret redaction.
//!
//! Objects are kept as `serde_json::Value` with sorted keys, so that their YAML rendering,
//! hashes and diffs are stable. This module knows nothing about clusters or targets.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;

/// The identity of one object in one cluster. Ordered as its address sorts, which is the
/// order plans and state files list objects in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjRef {
    pub cluster: String,
    /// API group; empty for the core group.
    pub group: String,
    pub kind: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

impl ObjRef {
    /// `cluster/group/kind/namespace/name`, with `core` for the core group and `_cluster`
    /// for cluster-scoped objects.
    pub fn address(&self) -> String {
        // Built in place at its exact size: a plan makes hundreds of thousands.
        let (cluster, group, kind, ns, name) = self.sort_key();
        let mut out = String::with_capacity(
            cluster.len() + group.len() + kind.len() + ns.len() + name.len() + 4,
        );
        for (i, part) in [cluster, group, kind, ns, name].into_iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            out.push_str(part);
        }
        out
    }

    /// Parses an address as printed by [`ObjRef::address`].
    pub fn parse_address(s: &str) -> Option<ObjRef> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() != 5 || parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        Some(ObjRef {
            cluster: parts[0].to_string(),
            group: if parts[1] == "core" {
                String::new()
            } else {
                parts[1].to_string()
            },
            kind: parts[2].to_string(),
            namespace: if parts[3] == "_cluster" {
                String::new()
            } else {
                parts[3].to_string()
            },
            name: parts[4].to_string(),
        })
    }

    /// Whether this is a core Secret, whose data is never shown or stored.
    pub fn is_secret(&self) -> bool {
        self.group.is_empty() && self.kind == "Secret"
    }
}

impl ObjRef {
    /// The address's parts, with `core` and `_cluster` filled in: what it prints and sorts by.
    fn sort_key(&self) -> (&str, &str, &str, &str, &str) {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        let ns = if self.namespace.is_empty() {
            "_cluster"
        } else {
            &self.namespace
        };
        (&self.cluster, group, &self.kind, ns, &self.name)
    }
}

impl Ord for ObjRef {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

impl PartialOrd for ObjRef {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ObjRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (cluster, group, kind, ns, name) = self.sort_key();
        write!(f, "{cluster}/{group}/{kind}/{ns}/{name}")
    }
}

/// Splits `apiVersion` into group and version (`v1` → ("", "v1")).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// Kinds that are not namespaced, by (group, kind). Custom resources declare their own
/// scope in their CRD, which the compiler adds.
const CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("", "Namespace"),
    ("", "Node"),
    ("", "PersistentVolume"),
    ("", "ComponentStatus"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("apiregistration.k8s.io", "APIService"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("storage.k8s.io", "StorageClass"),
    ("storage.k8s.io", "CSIDriver"),
    ("storage.k8s.io", "CSINode"),
    ("storage.k8s.io", "VolumeAttachment"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("node.k8s.io", "RuntimeClass"),
    ("networking.k8s.io", "IngressClass"),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
    ),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
    ),
    ("certificates.k8s.io", "CertificateSigningRequest"),
    ("policy", "PodSecurityPolicy"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
];

/// Whether a built-in kind is cluster-scoped.
pub fn is_builtin_cluster_scoped(group: &str, kind: &str) -> bool {
    CLUSTER_SCOPED
        .iter()
        .any(|(g, k)| *g == group && *k == kind)
}

/// sha256 of an object's canonical JSON (sorted keys, no whitespace), in hex.
pub fn object_sha256(value: &Value) -> String {
    // serde_json's default map is ordered by key, so this is canonical.
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// The first 12 hex digits of a sha256: enough to see that something changed.
pub fn short_hash(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// A copy of `object` in which every value of a Secret's `data` and `stringData` is
/// replaced by a short hash of it. Everything that is shown or stored goes through here.
pub fn redact(object: &Value) -> Value {
    if !is_secret_object(object) {
        return object.clone();
    }
    // Salted with the Secret's identity and key, so a short hash cannot be looked up in a
    // table of hashes of common passwords.
    let salt = format!(
        "dcm-secret\0{}\0{}\0",
        object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(""),
        object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    );
    let mut out = object.clone();
    for field in ["data", "stringData"] {
        if let Some(Value::Object(map)) = out.get_mut(field) {
            for (key, v) in map.iter_mut() {
                let raw = match &*v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let h = hex::encode(Sha256::digest(format!("{salt}{key}\0{raw}").as_bytes()));
                *v = Value::String(format!("(sensitive, sha256:{})", short_hash(&h)));
            }
        }
    }
    out
}

/// Whether `object` may be a core Secret, however its apiVersion and kind are spelled
/// (`v1`, ` v1`, `core/v1`, `/v1`, `secret`): validation refuses the odd spellings, and
/// what is shown or stored errs on the side of hiding.
pub fn is_secret_object(object: &Value) -> bool {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    if !kind.trim().eq_ignore_ascii_case("secret") {
        return false;
    }
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim();
    let group = api_version
        .rsplit_once('/')
        .map(|(g, _)| g.trim())
        .unwrap_or("");
    group.is_empty() || group.eq_ignore_ascii_case("core")
}

/// Whether `object` is a core Secret that holds data (a non-empty `data` or `stringData`):
/// what a directory target writes only as its cluster table says (`secrets`).
pub fn has_secret_data(object: &Value) -> bool {
    is_secret_object(object)
        && ["data", "stringData"].iter().any(|f| {
            object
                .get(*f)
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
        })
}

/// Checks a name against the DNS-1123 label rule (namespaces, clusters): at most 63
/// lower-case alphanumerics or '-', starting and ending with an alphanumeric.
pub fn check_dns_label(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 63 {
        return Err(format!(
            "must be at most 63 characters (it has {})",
            name.len()
        ));
    }
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !ok_chars || !ends_ok(name.chars().next()) || !ends_ok(name.chars().last()) {
        return Err(
            "must consist of lower-case letters, digits and '-', and start and end with a letter or digit"
                .into(),
        );
    }
    Ok(())
}

/// Checks a name against the DNS-1123 subdomain rule (most object names): at most 253
/// characters, dot-separated labels.
pub fn check_dns_subdomain(name: &str) -> Result<(), String> {
    if name.len() > 253 {
        return Err(format!(
            "must be at most 253 characters (it has {})",
            name.len()
        ));
    }
    for part in name.split('.') {
        check_dns_label(part).map_err(|_| {
            "must consist of lower-case letters, digits, '-' and '.', and start and end with a letter or digit"
                .to_string()
        })?;
    }
    Ok(())
}

/// Checks a label value: at most 63 alphanumerics, '-', '_' or '.', starting and ending
/// with an alphanumeric (or empty).
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.len() > 63 {
        return Err(format!(
            "must be at most 63 characters (it has {})",
            value.len()
        ));
    }
    let ok_chars = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let ends_ok = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    if !ok_chars || !ends_ok(value.chars().next()) || !ends_ok(value.chars().last()) {
        return Err(
            "must consist of letters, digits, '-', '_' and '.', and start and end with a letter or digit"
                .into(),
        );
    }
    Ok(())
}

/// Checks a label key: an optional DNS-subdomain prefix and '/', then a non-empty name
/// that follows the label-value rule.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        check_dns_subdomain(p).map_err(|why| format!("prefix `{p}` {why}"))?;
    }
    if name.is_empty() {
        return Err("must have a name".into());
    }
    check_label_value(name)
}

/// Checks `apiVersion` and `kind`: they name files in directory targets and parts of
/// addresses, so they must be what Kubernetes allows (`group/version` with a DNS group and
/// an alphanumeric version; an alphanumeric kind starting with a letter), never a path.
pub fn check_type(api_version: &str, kind: &str) -> Result<(), String> {
    let shown = crate::model::printable(api_version);
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    if api_version.contains('/') {
        if group.is_empty() || version.contains('/') {
            return Err(format!(
                "apiVersion `{shown}` must be `group/version` or, for the core group, just `v1`"
            ));
        }
        if group == "core" {
            return Err(format!(
                "apiVersion `{shown}` names the core group, which is written `v1` (no group)"
            ));
        }
        if check_dns_subdomain(group).is_err() {
            return Err(format!(
                "apiVersion `{shown}` has an invalid group `{}`",
                crate::model::printable(group)
            ));
        }
    }
    let version_ok = version.len() <= 63
        && version.starts_with(|c: char| c.is_ascii_lowercase())
        && version
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !version_ok {
        return Err(format!(
            "apiVersion `{shown}` must be `version` or `group/version`, with a lower-case version such as `v1` or `v1beta1`"
        ));
    }
    let kind_ok = !kind.is_empty()
        && kind.len() <= 63
        && kind.chars().all(|c| c.is_ascii_alphanumeric())
        && kind.starts_with(|c: char| c.is_ascii_alphabetic());
    if !kind_ok {
        return Err(format!(
            "kind `{}` must be letters and digits, starting with a letter",
            crate::model::printable(kind)
        ));
    }
    Ok(())
}

/// Checks an object's name as the API server would for its kind: a DNS-1123 label for
/// namespaces and services, a path segment for RBAC objects, a DNS-1123 subdomain for the
/// rest. No name may hold a control character.
pub fn check_object_name(group: &str, kind: &str, name: &str) -> Result<(), String> {
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    if group.is_empty() && matches!(kind, "Namespace" | "Service") {
        return check_dns_label(name);
    }
    if group == "rbac.authorization.k8s.io" {
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.contains('/')
            || name.contains('%')
        {
            return Err("must be a valid path segment (no '/' or '%', not '.' or '..')".into());
        }
        if name.len() > 253 {
            return Err(format!(
                "must be at most 253 characters (it has {})",
                name.len()
            ));
        }
        return Ok(());
    }
    check_dns_subdomain(name)
}

/// Standard base64 with padding, as Kubernetes stores Secret data.
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard base64 (as Secret `data` holds it); None when it is not base64.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// Folds a Secret's `stringData` into `data` (base64), as the API server does on every
/// write, so that what dcm compares and records is what a cluster holds.
pub fn fold_string_data(object: &mut Value) {
    let Some(map) = object.as_object_mut() else {
        return;
    };
    let Some(Value::Object(plain)) = map.remove("stringData") else {
        return;
    };
    if !map.get("data").is_some_and(Value::is_object) {
        map.insert("data".into(), Value::Object(serde_json::Map::new()));
    }
    if let Some(data) = map.get_mut("data").and_then(Value::as_object_mut) {
        for (k, v) in plain {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            data.insert(k, Value::String(base64(text.as_bytes())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar\n"), "Zm9vYmFyCg==");
    }

    #[test]
    fn string_data_folds_into_base64_data() {
        let mut s =
            serde_json::json!({"kind": "Secret", "data": {"a": "eA=="}, "stringData": {"b": "hi"}});
        fold_string_data(&mut s);
        assert_eq!(
            s,
            serde_json::json!({"kind": "Secret", "data": {"a": "eA==", "b": "aGk="}})
        );
    }
    use serde_json::json;

    #[test]
    fn address_round_trips() {
        let r = ObjRef {
            cluster: "c1".into(),
            group: "".into(),
            kind: "Namespace".into(),
            namespace: "".into(),
            name: "istio-lc1".into(),
        };
        assert_eq!(r.address(), "c1/core/Namespace/_cluster/istio-lc1");
        assert_eq!(ObjRef::parse_address(&r.address()), Some(r));
        assert_eq!(ObjRef::parse_address("c1/core/Namespace/x"), None);
    }

    #[test]
    fn names_follow_kubernetes_rules() {
        assert!(check_dns_label("istio-lc1").is_ok());
        assert!(check_dns_label("Istio").is_err());
        assert!(check_dns_label("-a").is_err());
        assert!(check_dns_label(&"a".repeat(64)).is_err());
        assert!(check_dns_subdomain("reviews.default").is_ok());
        assert!(check_dns_subdomain("a..b").is_err());
        assert!(check_object_name("rbac.authorization.k8s.io", "ClusterRole", "system:x").is_ok());
        assert!(check_object_name("", "Namespace", "a.b").is_err());
    }

    #[test]
    fn types_that_could_name_a_path_are_refused() {
        assert!(check_type("v1", "ConfigMap").is_ok());
        assert!(check_type("networking.istio.io/v1beta1", "ServiceEntry").is_ok());
        assert!(check_type("v1", "../../etc").is_err());
        assert!(check_type("v1", "Config/Map").is_err());
        assert!(check_type("../x/v1", "ConfigMap").is_err());
        assert!(check_type("a/b/v1", "ConfigMap").is_err());
        assert!(check_type("v1/", "ConfigMap").is_err());
    }

    #[test]
    fn redaction_hides_secret_values_but_shows_change() {
        let a = json!({"apiVersion":"v1","kind":"Secret","data":{"k":"c2VjcmV0"}});
        let b = json!({"apiVersion":"v1","kind":"Secret","data":{"k":"b3RoZXI="}});
        let ra = redact(&a).to_string();
        assert!(!ra.contains("c2VjcmV0"));
        assert!(ra.contains("sensitive, sha256:"));
        assert_ne!(ra, redact(&b).to_string());
        // Not the bare sha256 of the value (which a lookup table would reverse).
        let bare = hex::encode(Sha256::digest(b"c2VjcmV0"));
        assert!(!ra.contains(short_hash(&bare)));
        let cm = json!({"apiVersion":"v1","kind":"ConfigMap","data":{"k":"v"}});
        assert_eq!(redact(&cm), cm);
    }

    #[test]
    fn hash_ignores_key_order() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":2}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b":2,"a":1}"#).unwrap();
        assert_eq!(object_sha256(&a), object_sha256(&b));
    }
}

/// Removes the field at an RFC 6901 JSON pointer (`/spec/replicas`, `~1` for `/`, `~0`
/// for `~`; an array index as a number); a pointer to nothing changes nothing.
pub fn remove_pointer(object: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let key = last.replace("~1", "/").replace("~0", "~");
    match object.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.remove(&key);
        }
        Some(Value::Array(items)) => {
            if let Ok(i) = key.parse::<usize>() {
                if i < items.len() {
                    items.remove(i);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod pointer_tests {
    use super::remove_pointer;
    use serde_json::json;

    #[test]
    fn a_pointer_removes_exactly_its_field() {
        let mut o = json!({"spec": {"replicas": 1, "a/b": 2, "list": [1, 2, 3]}});
        remove_pointer(&mut o, "/spec/replicas");
        remove_pointer(&mut o, "/spec/a~1b");
        remove_pointer(&mut o, "/spec/list/1");
        remove_pointer(&mut o, "/spec/missing/deeper");
        assert_eq!(o, json!({"spec": {"list": [1, 3]}}));
    }
}
