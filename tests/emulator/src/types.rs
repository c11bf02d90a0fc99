//! The resource types a cluster serves: the built-in ones, and those its
//! CustomResourceDefinitions add once they are established.

use serde_json::{json, Value};

/// One served resource (a kind under a group), in every version it is served in.
#[derive(Debug, Clone)]
pub struct ResourceType {
    pub group: String,
    /// Served versions, preferred (storage) version first.
    pub versions: Vec<String>,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    /// Set by a CustomResourceDefinition (not built in).
    pub custom: bool,
    /// Whether `metadata.generation` is kept (bumped when anything but metadata or status
    /// changes), as for Deployments and custom resources.
    pub tracks_generation: bool,
    /// Top-level fields an object of this kind may have (for strict field validation).
    /// Empty: anything goes (custom resources without a schema).
    pub fields: Vec<&'static str>,
    /// The openAPIV3Schema of a custom resource's preferred version, if it has one.
    pub schema: Option<Value>,
}

impl ResourceType {
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }

    /// The APIResource entry of discovery documents.
    pub fn discovery(&self) -> Value {
        json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update"],
            "shortNames": self.short_names,
        })
    }
}

const META: [&str; 3] = ["apiVersion", "kind", "metadata"];

fn builtin(
    group: &str,
    versions: &[&str],
    kind: &str,
    plural: &str,
    namespaced: bool,
    short: &[&str],
    fields: &[&'static str],
) -> ResourceType {
    let mut all: Vec<&'static str> = META.to_vec();
    all.extend_from_slice(fields);
    ResourceType {
        group: group.to_string(),
        versions: versions.iter().map(|v| v.to_string()).collect(),
        kind: kind.to_string(),
        plural: plural.to_string(),
        singular: kind.to_lowercase(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        custom: false,
        tracks_generation: kind == "Deployment",
        fields: all,
        schema: None,
    }
}

/// The kinds every emulated cluster serves from the start.
pub fn builtins() -> Vec<ResourceType> {
    vec![
        builtin(
            "",
            &["v1"],
            "Namespace",
            "namespaces",
            false,
            &["ns"],
            &["spec", "status"],
        ),
        builtin(
            "",
            &["v1"],
            "ConfigMap",
            "configmaps",
            true,
            &["cm"],
            &["data", "binaryData", "immutable"],
        ),
        builtin(
            "",
            &["v1"],
            "Secret",
            "secrets",
            true,
            &[],
            &["data", "stringData", "type", "immutable"],
        ),
        builtin(
            "",
            &["v1"],
            "Service",
            "services",
            true,
            &["svc"],
            &["spec", "status"],
        ),
        builtin(
            "",
            &["v1"],
            "ServiceAccount",
            "serviceaccounts",
            true,
            &["sa"],
            &[
                "secrets",
                "imagePullSecrets",
                "automountServiceAccountToken",
            ],
        ),
        builtin(
            "rbac.authorization.k8s.io",
            &["v1"],
            "Role",
            "roles",
            true,
            &[],
            &["rules"],
        ),
        builtin(
            "rbac.authorization.k8s.io",
            &["v1"],
            "RoleBinding",
            "rolebindings",
            true,
            &[],
            &["roleRef", "subjects"],
        ),
        builtin(
            "rbac.authorization.k8s.io",
            &["v1"],
            "ClusterRole",
            "clusterroles",
            false,
            &[],
            &["rules", "aggregationRule"],
        ),
        builtin(
            "rbac.authorization.k8s.io",
            &["v1"],
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
            &[],
            &["roleRef", "subjects"],
        ),
        builtin(
            "",
            &["v1"],
            "Endpoints",
            "endpoints",
            true,
            &["ep"],
            &["subsets"],
        ),
        builtin(
            "apps",
            &["v1"],
            "Deployment",
            "deployments",
            true,
            &["deploy"],
            &["spec", "status"],
        ),
        builtin(
            "apiextensions.k8s.io",
            &["v1"],
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            &["crd", "crds"],
            &["spec", "status"],
        ),
    ]
}

/// The CustomResourceDefinitions of the Istio kinds an emulated cluster has installed
/// from the start, as if Istio's CRDs had been applied to it.
pub fn istio_crds() -> Vec<Value> {
    let networking = ["v1alpha3", "v1beta1", "v1"];
    let mut crds = Vec::new();
    for (kind, plural, short) in [
        ("ServiceEntry", "serviceentries", "se"),
        ("DestinationRule", "destinationrules", "dr"),
        ("VirtualService", "virtualservices", "vs"),
        ("Gateway", "gateways", "gw"),
    ] {
        crds.push(crd("networking.istio.io", kind, plural, short, &networking));
    }
    crds.push(crd(
        "networking.istio.io",
        "EnvoyFilter",
        "envoyfilters",
        "",
        &["v1alpha3"],
    ));
    crds.push(crd(
        "install.istio.io",
        "IstioOperator",
        "istiooperators",
        "iop",
        &["v1alpha1"],
    ));
    crds
}

fn crd(group: &str, kind: &str, plural: &str, short: &str, versions: &[&str]) -> Value {
    let short: Vec<&str> = if short.is_empty() {
        vec![]
    } else {
        vec![short]
    };
    let versions: Vec<Value> = versions
        .iter()
        .enumerate()
        .map(|(i, v)| {
            json!({
                "name": v,
                "served": true,
                "storage": i == 0,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    }
                }}
            })
        })
        .collect();
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group,
            "names": {
                "kind": kind,
                "listKind": format!("{kind}List"),
                "plural": plural,
                "singular": kind.to_lowercase(),
                "shortNames": short,
            },
            "scope": "Namespaced",
            "versions": versions,
        }
    })
}

/// The resource type a CustomResourceDefinition defines, or why it is invalid.
pub fn from_crd(crd: &Value) -> Result<ResourceType, String> {
    let spec = crd.get("spec").ok_or("spec: Required value")?;
    let s = |v: Option<&Value>, what: &str| -> Result<String, String> {
        v.and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("{what}: Required value"))
    };
    let group = s(spec.get("group"), "spec.group")?;
    let names = spec.get("names").ok_or("spec.names: Required value")?;
    let plural = s(names.get("plural"), "spec.names.plural")?;
    let kind = s(names.get("kind"), "spec.names.kind")?;
    let singular = names
        .get("singular")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let expected = format!("{plural}.{group}");
    let name = crd.pointer("/metadata/name").and_then(Value::as_str);
    if name != Some(expected.as_str()) {
        return Err(format!(
            "metadata.name: Invalid value: {:?}: must be spec.names.plural+\".\"+spec.group",
            name.unwrap_or("")
        ));
    }
    let scope = s(spec.get("scope"), "spec.scope")?;
    let namespaced = match scope.as_str() {
        "Namespaced" => true,
        "Cluster" => false,
        other => {
            return Err(format!(
                "spec.scope: Unsupported value: {other:?}: supported values: \"Cluster\", \"Namespaced\""
            ))
        }
    };
    let list = spec
        .get("versions")
        .and_then(Value::as_array)
        .filter(|v| !v.is_empty())
        .ok_or(
            "spec.versions: Invalid value: must have exactly one version marked as storage version",
        )?;
    let mut versions = Vec::new();
    let mut storage = Vec::new();
    let mut schema = None;
    for v in list {
        let name = s(v.get("name"), "spec.versions[].name")?;
        if v.get("storage").and_then(Value::as_bool) == Some(true) {
            storage.push(name.clone());
            schema = v.pointer("/schema/openAPIV3Schema").cloned();
        }
        if v.get("served").and_then(Value::as_bool) == Some(true) {
            versions.push(name);
        }
    }
    if storage.len() != 1 {
        return Err(
            "spec.versions: Invalid value: must have exactly one version marked as storage version"
                .to_string(),
        );
    }
    // The storage version is preferred when it is served.
    versions.sort_by_key(|v| *v != storage[0]);
    let short_names = names
        .get("shortNames")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok(ResourceType {
        group,
        versions,
        kind,
        plural,
        singular,
        namespaced,
        short_names,
        custom: true,
        tracks_generation: true,
        fields: Vec::new(),
        schema,
    })
}
