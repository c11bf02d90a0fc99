//! The resource types a cluster serves: the built-in ones, and those its
//! CustomResourceDefinitions add once they are established.

use serde_json::{json, Value};
use std::collections::BTreeMap;

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
    /// Whether `status` is a subresource: clients' writes of the main resource neither set
    /// nor change it (the cluster's controllers do).
    pub status_subresource: bool,
    /// Discovery categories (`kubectl get all`, `kubectl get istio-io`).
    pub categories: Vec<String>,
    /// A custom resource's `additionalPrinterColumns`, by version.
    pub printer_columns: BTreeMap<String, Vec<Value>>,
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
        let mut d = json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update"],
            "shortNames": self.short_names,
        });
        if !self.categories.is_empty() {
            d["categories"] = json!(self.categories);
        }
        d
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
        tracks_generation: matches!(kind, "Deployment" | "StatefulSet" | "Job"),
        fields: all,
        schema: None,
        status_subresource: matches!(
            kind,
            "Namespace"
                | "Service"
                | "Deployment"
                | "StatefulSet"
                | "Job"
                | "CustomResourceDefinition"
        ),
        categories: if matches!(kind, "Service" | "Deployment" | "StatefulSet" | "Job") {
            vec!["all".to_string()]
        } else {
            Vec::new()
        },
        printer_columns: BTreeMap::new(),
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
            "apps",
            &["v1"],
            "StatefulSet",
            "statefulsets",
            true,
            &["sts"],
            &["spec", "status"],
        ),
        builtin(
            "batch",
            &["v1"],
            "Job",
            "jobs",
            true,
            &[],
            &["spec", "status"],
        ),
        builtin(
            "coordination.k8s.io",
            &["v1"],
            "Lease",
            "leases",
            true,
            &[],
            &["spec"],
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

/// One CustomResourceDefinition an emulated cluster has installed from the start.
struct Def {
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    cluster_scoped: bool,
    /// Served versions, the storage version first.
    versions: &'static [&'static str],
    categories: &'static [&'static str],
    /// `additionalPrinterColumns` (name, type, JSONPath), the same in every version.
    columns: &'static [(&'static str, &'static str, &'static str)],
}

const NETWORKING: [&str; 3] = ["v1", "v1alpha3", "v1beta1"];
const NETWORKING_CATEGORIES: [&str; 2] = ["istio-io", "networking-istio-io"];
const SECURITY: [&str; 2] = ["v1", "v1beta1"];
const SECURITY_CATEGORIES: [&str; 2] = ["istio-io", "security-istio-io"];
const AGE: (&str, &str, &str) = ("Age", "date", ".metadata.creationTimestamp");

/// Scope, names, served versions, storage version and printer columns as in Istio 1.31's
/// and the Sail Operator's CRDs (schemas are left open: spec and status take anything).
const ISTIO_DEFS: [Def; 13] = [
    Def {
        group: "networking.istio.io",
        kind: "DestinationRule",
        plural: "destinationrules",
        short: &["dr"],
        cluster_scoped: false,
        versions: &NETWORKING,
        categories: &NETWORKING_CATEGORIES,
        columns: &[("Host", "string", ".spec.host"), AGE],
    },
    Def {
        group: "networking.istio.io",
        kind: "EnvoyFilter",
        plural: "envoyfilters",
        short: &[],
        cluster_scoped: false,
        versions: &["v1alpha3"],
        categories: &NETWORKING_CATEGORIES,
        columns: &[],
    },
    Def {
        group: "networking.istio.io",
        kind: "Gateway",
        plural: "gateways",
        short: &["gw"],
        cluster_scoped: false,
        versions: &NETWORKING,
        categories: &NETWORKING_CATEGORIES,
        columns: &[],
    },
    Def {
        group: "networking.istio.io",
        kind: "ServiceEntry",
        plural: "serviceentries",
        short: &["se"],
        cluster_scoped: false,
        versions: &NETWORKING,
        categories: &NETWORKING_CATEGORIES,
        columns: &[
            ("Hosts", "string", ".spec.hosts"),
            ("Location", "string", ".spec.location"),
            ("Resolution", "string", ".spec.resolution"),
            AGE,
        ],
    },
    Def {
        group: "networking.istio.io",
        kind: "Sidecar",
        plural: "sidecars",
        short: &[],
        cluster_scoped: false,
        versions: &NETWORKING,
        categories: &NETWORKING_CATEGORIES,
        columns: &[],
    },
    Def {
        group: "networking.istio.io",
        kind: "VirtualService",
        plural: "virtualservices",
        short: &["vs"],
        cluster_scoped: false,
        versions: &NETWORKING,
        categories: &NETWORKING_CATEGORIES,
        columns: &[
            ("Gateways", "string", ".spec.gateways"),
            ("Hosts", "string", ".spec.hosts"),
            AGE,
        ],
    },
    Def {
        group: "networking.istio.io",
        kind: "WorkloadEntry",
        plural: "workloadentries",
        short: &["we"],
        cluster_scoped: false,
        versions: &NETWORKING,
        categories: &NETWORKING_CATEGORIES,
        columns: &[AGE, ("Address", "string", ".spec.address")],
    },
    Def {
        group: "security.istio.io",
        kind: "AuthorizationPolicy",
        plural: "authorizationpolicies",
        short: &["ap"],
        cluster_scoped: false,
        versions: &SECURITY,
        categories: &SECURITY_CATEGORIES,
        columns: &[("Action", "string", ".spec.action"), AGE],
    },
    Def {
        group: "security.istio.io",
        kind: "PeerAuthentication",
        plural: "peerauthentications",
        short: &["pa"],
        cluster_scoped: false,
        versions: &SECURITY,
        categories: &SECURITY_CATEGORIES,
        columns: &[("Mode", "string", ".spec.mtls.mode"), AGE],
    },
    Def {
        group: "sailoperator.io",
        kind: "Istio",
        plural: "istios",
        short: &[],
        cluster_scoped: true,
        versions: &["v1"],
        categories: &["istio-io"],
        columns: &[
            ("Namespace", "string", ".spec.namespace"),
            ("Profile", "string", ".spec.profile"),
            ("Revisions", "string", ".status.revisions.total"),
            ("Ready", "string", ".status.revisions.ready"),
            ("In use", "string", ".status.revisions.inUse"),
            ("Active Revision", "string", ".status.activeRevisionName"),
            ("Status", "string", ".status.state"),
            ("Version", "string", ".spec.version"),
            AGE,
        ],
    },
    Def {
        group: "sailoperator.io",
        kind: "IstioRevision",
        plural: "istiorevisions",
        short: &["istiorev"],
        cluster_scoped: true,
        versions: &["v1"],
        categories: &["istio-io"],
        columns: &[
            ("Namespace", "string", ".spec.namespace"),
            (
                "Ready",
                "string",
                ".status.conditions[?(@.type==\"Ready\")].status",
            ),
            ("Status", "string", ".status.state"),
            (
                "In use",
                "string",
                ".status.conditions[?(@.type==\"InUse\")].status",
            ),
            ("Version", "string", ".spec.version"),
            AGE,
        ],
    },
    Def {
        group: "sailoperator.io",
        kind: "IstioRevisionTag",
        plural: "istiorevisiontags",
        short: &["istiorevtag"],
        cluster_scoped: true,
        versions: &["v1"],
        categories: &["istio-io"],
        columns: &[
            ("Status", "string", ".status.state"),
            (
                "In use",
                "string",
                ".status.conditions[?(@.type==\"InUse\")].status",
            ),
            ("Revision", "string", ".status.istioRevision"),
            AGE,
        ],
    },
    Def {
        group: "sailoperator.io",
        kind: "IstioCNI",
        plural: "istiocnis",
        short: &[],
        cluster_scoped: true,
        versions: &["v1"],
        categories: &["istio-io"],
        columns: &[
            ("Namespace", "string", ".spec.namespace"),
            ("Profile", "string", ".spec.profile"),
            (
                "Ready",
                "string",
                ".status.conditions[?(@.type==\"Ready\")].status",
            ),
            ("Status", "string", ".status.state"),
            ("Version", "string", ".spec.version"),
            AGE,
        ],
    },
];

/// The CustomResourceDefinitions an emulated cluster has installed from the start, as if
/// Istio's CRDs, the Sail Operator's, and the legacy IstioOperator's had been applied.
pub fn istio_crds() -> Vec<Value> {
    let mut crds: Vec<Value> = ISTIO_DEFS.iter().map(crd).collect();
    crds.push(crd(&Def {
        group: "install.istio.io",
        kind: "IstioOperator",
        plural: "istiooperators",
        short: &["iop", "io"],
        cluster_scoped: false,
        versions: &["v1alpha1"],
        categories: &[],
        columns: &[
            ("Revision", "string", ".spec.revision"),
            ("Status", "string", ".status.status"),
            AGE,
        ],
    }));
    crds
}

fn crd(def: &Def) -> Value {
    let columns: Vec<Value> = def
        .columns
        .iter()
        .map(|(name, kind, path)| json!({"name": name, "type": kind, "jsonPath": path}))
        .collect();
    let versions: Vec<Value> = def
        .versions
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut version = json!({
                "name": v,
                "served": true,
                "storage": i == 0,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    }
                }}
            });
            if !columns.is_empty() {
                version["additionalPrinterColumns"] = json!(columns);
            }
            version
        })
        .collect();
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{}.{}", def.plural, def.group)},
        "spec": {
            "group": def.group,
            "names": {
                "kind": def.kind,
                "listKind": format!("{}List", def.kind),
                "plural": def.plural,
                "singular": def.kind.to_lowercase(),
                "shortNames": def.short,
                "categories": def.categories,
            },
            "scope": if def.cluster_scoped { "Cluster" } else { "Namespaced" },
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
    let mut status_subresource = false;
    let mut printer_columns = BTreeMap::new();
    for v in list {
        let name = s(v.get("name"), "spec.versions[].name")?;
        if v.get("storage").and_then(Value::as_bool) == Some(true) {
            storage.push(name.clone());
            schema = v.pointer("/schema/openAPIV3Schema").cloned();
        }
        if v.pointer("/subresources/status").is_some() {
            status_subresource = true;
        }
        if v.get("served").and_then(Value::as_bool) == Some(true) {
            if let Some(columns) = v.get("additionalPrinterColumns").and_then(Value::as_array) {
                printer_columns.insert(name.clone(), columns.clone());
            }
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
    let strings = |key: &str| -> Vec<String> {
        names
            .get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let short_names = strings("shortNames");
    let categories = strings("categories");
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
        status_subresource,
        categories,
        printer_columns,
    })
}
