//! What a logical cloud becomes in each member cluster: all of dcm's Istio knowledge.
//!
//! The `current` profile (Istio 1.24 and later) is split by concern:
//! - [`install`]: the control plane (a Sail `Istio` per cloud and member) and its values;
//! - [`gateways`]: the east-west gateway, `cross-network-gateway` and istiod's exposure;
//! - [`trust`]: the plug-in CA, the reader token and the remote secrets between members;
//! - [`names`]: cloud-wide names `<svc>.<ns>.<suffix>` and their stable addresses;
//! - [`routes`]: subsets and header/weight routes.
//!
//! [`legacy`] keeps the 2019 `.global` recipe for clusters on Istio 1.8 or older. Objects are
//! plain JSON; this module reads nothing (allocations come in as an argument).

mod gateways;
mod install;
pub mod legacy;
mod names;
mod routes;
mod trust;

pub use names::{allocate_addresses, Allocations};

use super::{DesiredObject, KnownAfterApply};
use crate::diag::Location;
use crate::model::{
    Ca, Cluster, Dependency, DependencyTarget, ExportedService, LogicalCloud, Model, Profile,
};
use crate::object::ObjRef;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The objects of one cloud as they are made, with where the cloud is declared.
pub(crate) struct Out<'a> {
    objects: Vec<DesiredObject>,
    location: &'a Location,
    source: String,
    /// Every distinct object pushed so far. A cloud's members mostly get the same
    /// routes, subsets and entries: each is held once and shared (a member whose object
    /// is changed later gets its own copy).
    distinct: std::collections::HashSet<std::sync::Arc<Value>>,
}

impl<'a> Out<'a> {
    pub(crate) fn new(location: &'a Location, source: String) -> Out<'a> {
        Out {
            objects: Vec::new(),
            location,
            source,
            distinct: Default::default(),
        }
    }

    /// `object`, shared with an equal one pushed before.
    fn shared(&mut self, object: Value) -> std::sync::Arc<Value> {
        if let Some(same) = self.distinct.get(&object) {
            return std::sync::Arc::clone(same);
        }
        let object = std::sync::Arc::new(object);
        self.distinct.insert(std::sync::Arc::clone(&object));
        object
    }

    /// Adds one object to `cluster`, after the objects `depends_on` names.
    fn push(
        &mut self,
        cluster: &str,
        object: Value,
        depends_on: Vec<ObjRef>,
        allocated: BTreeMap<String, String>,
    ) -> &mut DesiredObject {
        let api_version = object["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (group, _) = crate::object::split_api_version(&api_version);
        let text = |p: &str| {
            object
                .pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        let id = ObjRef {
            cluster: cluster.to_string(),
            group: group.to_string(),
            kind: text("/kind").to_string(),
            namespace: text("/metadata/namespace").to_string(),
            name: text("/metadata/name").to_string(),
        };
        let object = self.shared(object);
        self.objects.push(DesiredObject {
            id,
            api_version,
            object,
            source: self.source.clone(),
            depends_on: depends_on
                .into_iter()
                .map(|r| Dependency {
                    target: DependencyTarget::Object(r),
                    location: self.location.clone(),
                })
                .collect(),
            location: self.location.clone(),
            allocated,
            edit: None,
            revert: false,
            known_after_apply: Vec::new(),
            ready_when: None,
        });
        let last = self.objects.len() - 1;
        &mut self.objects[last]
    }
}

/// Compiles every logical cloud of the model. Their ServiceEntry addresses are given
/// out afterwards (`allocate_addresses`), once every object of the file is known.
pub fn compile(model: &Model) -> Vec<DesiredObject> {
    let mut all = Vec::new();
    for lc in model.logical_clouds.values() {
        let location = model
            .cloud_locations
            .get(&lc.name)
            .cloned()
            .unwrap_or_else(Location::none);
        let mut out = Out::new(&location, format!("logical_clouds.{}", lc.name));
        match lc.profile {
            Profile::Current => compile_current(&mut out, lc, model),
            Profile::LegacyGlobal => legacy::compile_cloud(&mut out, lc, model),
        }
        all.extend(out.objects);
    }
    all.extend(legacy::dns_stub_domains(model));
    for o in &mut all {
        o.fold_when_known();
    }
    all
}

/// One cloud in the current profile: per member its control plane, gateway and trust;
/// then the cloud-wide names and routes, which live where control planes read config.
fn compile_current(out: &mut Out<'_>, lc: &LogicalCloud, model: &Model) {
    for member in &lc.clusters {
        let Some(c) = model.clusters.get(member) else {
            continue;
        };
        install::control_plane(out, lc, c, model);
        gateways::east_west(out, lc, c, model);
        trust::reader(out, lc, c);
        if lc.runs_control_plane(member) {
            trust::remote_secrets(out, lc, c, model);
        }
    }
    names::cloud_names(out, lc, model);
    routes::compile(out, lc, model);
}

/// Labels every object of a cloud carries. In the current profile, `istio.io/rev` makes
/// only this cloud's control plane read the object (istiod ignores objects labelled with
/// another revision; unlabelled ones would be read by every revision).
fn cloud_labels(lc: &LogicalCloud) -> Value {
    match lc.profile {
        Profile::Current => json!({ "dcm.io/logical-cloud": lc.name, "istio.io/rev": lc.revision }),
        Profile::LegacyGlobal => json!({ "dcm.io/logical-cloud": lc.name }),
    }
}

/// `cluster/<kind>/<istio namespace>/<name>` of an object in the cloud's namespace.
fn in_istio_namespace(
    lc: &LogicalCloud,
    cluster: &str,
    group: &str,
    kind: &str,
    name: &str,
) -> ObjRef {
    ObjRef {
        cluster: cluster.to_string(),
        group: group.to_string(),
        kind: kind.to_string(),
        namespace: lc.istio_namespace.clone(),
        name: name.to_string(),
    }
}

/// The CA a member's istiod signs with: its own intermediate, else the shared one.
fn ca_of<'m>(c: &'m Cluster, model: &'m Model) -> Option<&'m Ca> {
    c.ca.as_ref().or(model.ca.as_ref())
}

/// The `cacerts` Secret Istio's plug-in CA reads in the control plane's namespace: the
/// member's intermediate, its key, its chain and its root.
fn cacerts(out: &mut Out<'_>, lc: &LogicalCloud, c: &Cluster, model: &Model, labels: Value) {
    let Some(ca) = ca_of(c, model) else {
        return;
    };
    out.push(
        &c.name,
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": { "name": "cacerts", "namespace": lc.istio_namespace, "labels": labels },
            "data": {
                "ca-cert.pem": crate::object::base64(ca.ca_cert.as_bytes()),
                "ca-key.pem": crate::object::base64(ca.ca_key.as_bytes()),
                "root-cert.pem": crate::object::base64(ca.root_cert.as_bytes()),
                "cert-chain.pem": crate::object::base64(ca.cert_chain.as_bytes()),
            }
        }),
        vec![],
        BTreeMap::new(),
    );
}

/// The three values a remote secret's kubeconfig is built from: the API server URL, the
/// server's CA (base64, as `certificate-authority-data` holds it) and the token. Each is a
/// value or a placeholder that `known_after_apply` fills in.
struct KubeconfigParts {
    server: String,
    ca_data: String,
    token: String,
    known_after_apply: Vec<KnownAfterApply>,
    /// `preferences: {}`, which istioctl wrote up to 1.27.
    preferences: bool,
}

/// In `holder`, the Secret the control plane watches (label `istio/multiCluster`) that
/// holds a kubeconfig for `cluster`'s API server, as `istioctl create-remote-secret`
/// writes it: `stringData`, one key named after the cluster. The token is Secret data, so
/// plans show only a keyed hash of it.
fn remote_secret(
    out: &mut Out<'_>,
    lc: &LogicalCloud,
    holder: &str,
    cluster: &str,
    labels: Value,
    parts: KubeconfigParts,
    depends_on: Vec<ObjRef>,
) {
    let mut kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": cluster, "cluster": {
            "server": parts.server,
            "certificate-authority-data": parts.ca_data
        } }],
        "contexts": [{ "name": cluster, "context": { "cluster": cluster, "user": cluster } }],
        "current-context": cluster,
        "users": [{ "name": cluster, "user": { "token": parts.token } }]
    });
    if parts.preferences {
        kubeconfig["preferences"] = json!({});
    }
    let text = serde_yaml_ng::to_string(&kubeconfig).unwrap_or_default();
    let o = out.push(
        holder,
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {
                "name": format!("istio-remote-secret-{cluster}"),
                "namespace": lc.istio_namespace,
                "labels": labels,
                "annotations": { "networking.istio.io/cluster": cluster }
            },
            "stringData": { cluster: text }
        }),
        depends_on,
        BTreeMap::new(),
    );
    o.known_after_apply = parts.known_after_apply;
}

/// `reviews-default-lc1`: the name of the ServiceEntry, DestinationRule and VirtualService
/// dcm makes for an exported service.
/// The revision value Istio's charts render names with (`istiod-<rev>`,
/// `istio-reader-clusterrole-<rev>-<ns>`): none for the Sail Operator's revision
/// `default`, which it installs with an empty revision (`pkg/istiovalues/overrides.go`).
fn chart_revision(lc: &LogicalCloud) -> Option<&str> {
    let sail_default = lc.install == crate::model::Install::Sail && lc.revision == "default";
    (!sail_default).then_some(lc.revision.as_str())
}

/// A ServiceEntry's ports for an exported service.
fn service_ports(s: &ExportedService) -> Vec<Value> {
    s.ports
        .iter()
        .map(|p| json!({ "name": p.name, "number": p.number, "protocol": p.protocol }))
        .collect()
}

fn exported_name(lc: &LogicalCloud, s: &ExportedService) -> String {
    format!("{}-{}-{}", s.name, s.namespace, lc.suffix)
}

/// The DestinationRule that defines a service's subsets by pod labels.
fn subset_rule_name(lc: &LogicalCloud, s: &ExportedService) -> String {
    format!("{}-subsets", exported_name(lc, s))
}

/// `reviews.default.svc.cluster.local`: the service's name inside one cluster.
fn local_host(s: &ExportedService, c: &Cluster) -> String {
    format!("{}.{}.svc.{}", s.name, s.namespace, c.cluster_domain)
}

/// `reviews.default.lc1`: the service's name across the cloud.
fn cloud_host(s: &ExportedService, lc: &LogicalCloud) -> String {
    format!("{}.{}.{}", s.name, s.namespace, lc.suffix)
}

/// One rule of a route as a VirtualService has it: the header match, if any, and the
/// weighted subset destinations, each at the host `host_of` gives.
fn http_rule(
    rule: &crate::model::HttpRule,
    mut host_of: impl FnMut(&crate::model::Destination) -> String,
) -> Value {
    let destinations: Vec<Value> = rule
        .to
        .iter()
        .map(|d| {
            let mut v = json!({ "destination": { "host": host_of(d), "subset": d.subset } });
            if let Some(w) = d.weight {
                v["weight"] = json!(w);
            }
            v
        })
        .collect();
    let mut v = json!({ "route": destinations });
    if !rule.headers.is_empty() {
        let headers: serde_json::Map<String, Value> = rule
            .headers
            .iter()
            .map(|h| (h.name.clone(), json!({ h.kind: h.value })))
            .collect();
        v["match"] = json!([{ "headers": headers }]);
    }
    v
}

#[cfg(test)]
mod tests {
    use crate::{compile, config, model};

    #[test]
    fn equal_objects_pushed_for_several_members_are_one_shared_tree() {
        use serde_json::json;
        let location = crate::diag::Location::none();
        let mut out = super::Out::new(&location, "logical_clouds.test".into());
        let route = |host: &str| json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "r", "namespace": "ns"}, "spec": {"hosts": [host]}});
        for cluster in ["a", "b"] {
            out.push(
                cluster,
                route("svc.ns.svc.cluster.local"),
                vec![],
                Default::default(),
            );
        }
        out.push(
            "c",
            route("other.ns.svc.cluster.local"),
            vec![],
            Default::default(),
        );
        let o = &out.objects;
        assert!(std::sync::Arc::ptr_eq(&o[0].object, &o[1].object));
        assert!(!std::sync::Arc::ptr_eq(&o[1].object, &o[2].object));
        assert_eq!(
            o[2].object["spec"]["hosts"][0],
            "other.ns.svc.cluster.local"
        );
        assert_eq!(
            [o[0].id.cluster.as_str(), o[1].id.cluster.as_str()],
            ["a", "b"]
        );
    }

    /// The Sail Operator renders revision `default` without a revision value, and Istio's
    /// charts then drop it from names: istiod's Service and the reader ClusterRole.
    #[test]
    fn sail_s_default_revision_is_named_as_the_charts_name_it() {
        for (cloud, istiod, reader_role) in [
            (
                "default",
                "istiod",
                "istio-reader-clusterrole-istio-default",
            ),
            (
                "blue",
                "istiod-blue",
                "istio-reader-clusterrole-blue-istio-blue",
            ),
        ] {
            let toml = format!(
                r#"
[istio]
version = "1.31.0"
[ca]
root_cert = "tests/fixtures/certs/root-cert.pem"
ca_cert = "tests/fixtures/certs/ca-cert.pem"
ca_key = "tests/fixtures/certs/ca-key.pem"
cert_chain = "tests/fixtures/certs/cert-chain.pem"
[clusters.c1]
context = "c1"
network = "n1"
[clusters.c2]
context = "c2"
network = "n1"
[logical_clouds.{cloud}]
topology = "primary-remote"
primary = "c1"
clusters = ["c1", "c2"]
"#
            );
            let src = crate::diag::SourceFile::new("t.toml", toml);
            let raw = config::parse(src, env!("CARGO_MANIFEST_DIR").into()).unwrap();
            let desired = compile::compile(
                &model::build(raw).unwrap(),
                &compile::Allocations::default(),
            )
            .unwrap();
            let find = |cluster: &str, kind: &str| {
                desired
                    .objects
                    .iter()
                    .find(|o| o.id.cluster == cluster && o.id.kind == kind)
                    .map(|o| o.object.clone())
                    .unwrap_or_else(|| panic!("{cluster} {kind}"))
            };
            let vs = find("c1", "VirtualService");
            let host = vs["spec"]["tls"][0]["route"][0]["destination"]["host"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(
                host.starts_with(&format!("{istiod}.istio-{cloud}.svc")),
                "{vs}"
            );
            let binding = find("c2", "ClusterRoleBinding");
            assert_eq!(binding["roleRef"]["name"], reader_role);
        }
    }
}
