//! What a logical cloud becomes in each member cluster. All of dcm's Istio knowledge is
//! here: the per-cloud control plane, the suffix wired through the mesh (istio CoreDNS,
//! EnvoyFilter, Gateway, DestinationRule), injection labels, and exported services as
//! ServiceEntries with addresses that never change once allocated.
//!
//! Objects are plain JSON; this module reads nothing (allocations come in as an argument).

use super::{DesiredObject, Edit, KnownAfterApply};
use crate::diag::{Diagnostic, Location};
use crate::model::{
    Ca, Cluster, Dependency, DependencyTarget, ExportedService, LogicalCloud, Model,
};
use crate::object::ObjRef;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// ServiceEntry addresses already handed out (from the state), per object.
#[derive(Debug, Clone, Default)]
pub struct Allocations {
    pub by_object: BTreeMap<ObjRef, Ipv4Addr>,
}

impl Allocations {
    /// The addresses the state records (`allocated.address`).
    pub fn from_state(state: Option<&crate::state::State>) -> Allocations {
        let mut by_object = BTreeMap::new();
        for e in state.map(|s| s.objects.as_slice()).unwrap_or(&[]) {
            if let Some(ip) = e.allocated.get("address").and_then(|a| a.parse().ok()) {
                by_object.insert(e.id(), ip);
            }
        }
        Allocations { by_object }
    }
}

/// The range ServiceEntry addresses come from: 127.255.0.0/16, network and broadcast
/// addresses excluded.
const FIRST: u32 = u32::from_be_bytes([127, 255, 0, 1]);
const LAST: u32 = u32::from_be_bytes([127, 255, 255, 254]);

/// The server block that sends `<suffix>` names to this cloud's istiocoredns.
pub fn stub_domain_block(suffix: &str, forward: &str) -> String {
    format!("{suffix}:53 {{\n    errors\n    cache 30\n    forward . {forward}:53\n}}\n")
}

/// What stands in a stub domain for the istiocoredns address until the cluster has it.
pub fn istiocoredns_placeholder(istio_namespace: &str) -> String {
    format!("(known after apply: ClusterIP of {istio_namespace}/istiocoredns)")
}

struct Out<'a> {
    objects: Vec<DesiredObject>,
    location: &'a Location,
}

impl Out<'_> {
    fn push(
        &mut self,
        cluster: &str,
        object: Value,
        source: &str,
        depends_on: Vec<ObjRef>,
        allocated: BTreeMap<String, String>,
    ) {
        let api_version = object["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (group, _) = crate::object::split_api_version(&api_version);
        let id = ObjRef {
            cluster: cluster.to_string(),
            group: group.to_string(),
            kind: object["kind"].as_str().unwrap_or_default().to_string(),
            namespace: object["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            name: object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        };
        self.objects.push(DesiredObject {
            id,
            api_version,
            object,
            source: source.to_string(),
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
        });
    }
}

/// Compiles every logical cloud of the model.
pub fn compile(
    model: &Model,
    allocations: &Allocations,
    diags: &mut Vec<Diagnostic>,
) -> Vec<DesiredObject> {
    let Some(ca) = &model.ca else {
        return Vec::new();
    };
    let mut all = Vec::new();
    for lc in model.logical_clouds.values() {
        let location = model
            .cloud_locations
            .get(&lc.name)
            .cloned()
            .unwrap_or_else(Location::none);
        let mut out = Out {
            objects: Vec::new(),
            location: &location,
        };
        for member in &lc.clusters {
            if let Some(cluster) = model.clusters.get(member) {
                control_plane(&mut out, lc, cluster, ca);
            }
        }
        exported_services(&mut out, lc, model);
        all.extend(out.objects);
    }
    all.extend(dns_stub_domains(model));
    allocate_addresses(&mut all, allocations, diags);
    all
}

/// One stub domain per logical cloud in each member's cluster DNS, all in one edit of the
/// object the cluster's `dns` mode names.
fn dns_stub_domains(model: &Model) -> Vec<DesiredObject> {
    let mut out = Vec::new();
    for c in model.clusters.values() {
        let mut clouds: Vec<&LogicalCloud> = model
            .logical_clouds
            .values()
            .filter(|lc| lc.clusters.contains(&c.name))
            .collect();
        if clouds.is_empty() {
            continue;
        }
        clouds.sort_by(|a, b| a.suffix.cmp(&b.suffix));
        let mut blocks = BTreeMap::new();
        let mut depends_on = Vec::new();
        let mut known_after_apply = Vec::new();
        for lc in &clouds {
            // Pinned, or read from the cluster (the istiocoredns Service the control plane
            // creates): known after apply until it exists.
            let forward = match lc.dns_forward.get(&c.name) {
                Some(ip) => ip.to_string(),
                None => {
                    let placeholder = istiocoredns_placeholder(&lc.istio_namespace);
                    known_after_apply.push(KnownAfterApply {
                        placeholder: placeholder.clone(),
                        service: ObjRef {
                            cluster: c.name.clone(),
                            group: String::new(),
                            kind: "Service".into(),
                            namespace: lc.istio_namespace.clone(),
                            name: "istiocoredns".into(),
                        },
                    });
                    placeholder
                }
            };
            blocks.insert(lc.suffix.clone(), stub_domain_block(&lc.suffix, &forward));
            depends_on.push(Dependency {
                target: DependencyTarget::Object(ObjRef {
                    cluster: c.name.clone(),
                    group: "install.istio.io".into(),
                    kind: "IstioOperator".into(),
                    namespace: lc.istio_namespace.clone(),
                    name: format!("{}-control-plane", lc.name),
                }),
                location: model
                    .cloud_locations
                    .get(&lc.name)
                    .cloned()
                    .unwrap_or_else(Location::none),
            });
        }
        let (name, edit, mode) = match c.dns {
            crate::model::DnsMode::Corefile => (
                "coredns",
                Edit::Corefile(blocks.values().cloned().collect()),
                "corefile",
            ),
            crate::model::DnsMode::Custom => (
                "coredns-custom",
                Edit::DataKeys(
                    blocks
                        .iter()
                        .map(|(s, b)| (format!("{s}.server"), b.clone()))
                        .collect(),
                ),
                "data-keys",
            ),
        };
        let location = depends_on
            .first()
            .map(|d: &Dependency| d.location.clone())
            .unwrap_or_else(|| c.location.clone());
        out.push(DesiredObject {
            id: ObjRef {
                cluster: c.name.clone(),
                group: String::new(),
                kind: "ConfigMap".into(),
                namespace: "kube-system".into(),
                name: name.into(),
            },
            api_version: "v1".into(),
            object: json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name, "namespace": "kube-system" } }),
            source: format!("logical_clouds.{}", clouds[0].name),
            depends_on,
            location,
            allocated: BTreeMap::from([("edit".to_string(), mode.to_string())]),
            edit: Some(edit),
            revert: false,
            known_after_apply,
        });
    }
    out
}

fn control_plane(out: &mut Out<'_>, lc: &LogicalCloud, c: &Cluster, ca: &Ca) {
    let ns = &lc.istio_namespace;
    let sfx = &lc.suffix;
    let source = format!("logical_clouds.{}", lc.name);
    let labels = json!({ "dcm.io/logical-cloud": lc.name });
    let in_ns = |kind: &str, group: &str, name: &str| ObjRef {
        cluster: c.name.clone(),
        group: group.into(),
        kind: kind.into(),
        namespace: ns.clone(),
        name: name.into(),
    };
    let operator = in_ns(
        "IstioOperator",
        "install.istio.io",
        &format!("{}-control-plane", lc.name),
    );
    let none = BTreeMap::new;

    out.push(
        &c.name,
        json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": { "name": ns, "labels": { "dcm.io/logical-cloud": lc.name, "topology.istio.io/network": c.network } }
        }),
        &source,
        vec![],
        none(),
    );
    out.push(
        &c.name,
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": { "name": "cacerts", "namespace": ns, "labels": labels },
            "data": {
                "ca-cert.pem": crate::object::base64(ca.ca_cert.as_bytes()),
                "ca-key.pem": crate::object::base64(ca.ca_key.as_bytes()),
                "root-cert.pem": crate::object::base64(ca.root_cert.as_bytes()),
                "cert-chain.pem": crate::object::base64(ca.cert_chain.as_bytes()),
            }
        }),
        &source,
        vec![],
        none(),
    );
    let gateway_labels = json!({ "istio": "ingressgateway", "app": "istio-ingressgateway", "istio.io/rev": lc.name });
    out.push(
        &c.name,
        json!({
            "apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator",
            "metadata": { "name": operator.name, "namespace": ns, "labels": labels },
            "spec": {
                "profile": "default",
                "revision": lc.name,
                "namespace": ns,
                "components": {
                    "ingressGateways": [{
                        "name": "istio-ingressgateway", "namespace": ns, "enabled": true,
                        "label": gateway_labels,
                        "k8s": { "env": [
                            { "name": "ISTIO_META_ROUTER_MODE", "value": "sni-dnat" },
                            { "name": "ISTIO_META_REQUESTED_NETWORK_VIEW", "value": c.network }
                        ] }
                    }]
                },
                "addonComponents": { "istiocoredns": { "enabled": true } },
                "values": {
                    "global": {
                        "istioNamespace": ns,
                        "meshID": lc.name,
                        "multiCluster": { "clusterName": c.name },
                        "network": c.network,
                        "podDNSSearchNamespaces": [sfx, format!("{{{{ valueOrDefault .DeploymentMeta.Namespace \"default\" }}}}.{sfx}")]
                    }
                }
            }
        }),
        &source,
        vec![in_ns("Secret", "", "cacerts")],
        none(),
    );
    out.push(
        &c.name,
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "coredns", "namespace": ns, "labels": labels },
            "data": { "Corefile": format!("{sfx}:53 {{\n    errors\n    cache 30\n    grpc . 127.0.0.1:8053\n}}\n.:53 {{\n    errors\n    forward . /etc/resolv.conf\n    cache 30\n}}\n") }
        }),
        &source,
        vec![],
        none(),
    );
    let escaped = sfx.replace('.', "\\.");
    out.push(
        &c.name,
        json!({
            "apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
            "metadata": { "name": "istio-multicluster-ingressgateway", "namespace": ns, "labels": labels },
            "spec": {
                "workloadSelector": { "labels": gateway_labels },
                "configPatches": [{
                    "applyTo": "NETWORK_FILTER",
                    "match": { "context": "GATEWAY", "listener": { "portNumber": 15443, "filterChain": { "filter": { "name": "envoy.filters.network.sni_cluster" } } } },
                    "patch": { "operation": "INSERT_AFTER", "value": {
                        "name": "envoy.filters.network.tcp_cluster_rewrite",
                        "typed_config": {
                            "@type": "type.googleapis.com/istio.envoy.config.filter.network.tcp_cluster_rewrite.v2alpha1.TcpClusterRewrite",
                            "cluster_pattern": format!("\\.{escaped}$"),
                            "cluster_replacement": format!(".svc.{}", c.cluster_domain)
                        }
                    } }
                }]
            }
        }),
        &source,
        vec![operator.clone()],
        none(),
    );
    out.push(
        &c.name,
        json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "Gateway",
            "metadata": { "name": "istio-multicluster-ingressgateway", "namespace": ns, "labels": labels },
            "spec": {
                "selector": gateway_labels,
                "servers": [{ "hosts": [format!("*.{sfx}")], "port": { "name": "tls", "number": 15443, "protocol": "TLS" }, "tls": { "mode": "AUTO_PASSTHROUGH" } }]
            }
        }),
        &source,
        vec![operator.clone()],
        none(),
    );
    out.push(
        &c.name,
        json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
            "metadata": { "name": "istio-multicluster-destinationrule", "namespace": ns, "labels": labels },
            "spec": { "host": format!("*.{sfx}"), "trafficPolicy": { "tls": { "mode": "ISTIO_MUTUAL" } } }
        }),
        &source,
        vec![operator.clone()],
        none(),
    );
    for inject in &lc.injection_namespaces {
        out.push(
            &c.name,
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": inject, "labels": { "istio.io/rev": lc.name } } }),
            &source,
            vec![operator.clone()],
            none(),
        );
    }
}

/// For each exported service, on every member where it does not run: a ServiceEntry and
/// a DestinationRule with one subset per serving cluster.
fn exported_services(out: &mut Out<'_>, lc: &LogicalCloud, model: &Model) {
    let source = format!("logical_clouds.{}", lc.name);
    for s in &lc.services {
        for member in lc.clusters.iter().filter(|m| !s.clusters.contains(m)) {
            let Some(c) = model.clusters.get(member) else {
                continue;
            };
            service_entry(out, lc, s, c, model, &source);
        }
    }
}

fn service_entry(
    out: &mut Out<'_>,
    lc: &LogicalCloud,
    s: &ExportedService,
    c: &Cluster,
    model: &Model,
    source: &str,
) {
    let host = format!("{}.{}.{}", s.name, s.namespace, lc.suffix);
    let name = format!("{}-{}-{}", s.name, s.namespace, lc.suffix);
    let operator = ObjRef {
        cluster: c.name.clone(),
        group: "install.istio.io".into(),
        kind: "IstioOperator".into(),
        namespace: lc.istio_namespace.clone(),
        name: format!("{}-control-plane", lc.name),
    };
    let endpoints: Vec<Value> = s
        .clusters
        .iter()
        .filter_map(|sc| model.clusters.get(sc))
        .filter_map(|serving| {
            let gw = serving.gateway.as_ref()?;
            let (addr, port) = gw.rsplit_once(':')?;
            let port: u16 = port.parse().ok()?;
            let ports: serde_json::Map<String, Value> = s.ports.iter().map(|p| (p.name.clone(), json!(port))).collect();
            Some(json!({ "address": addr, "ports": ports, "labels": { "cluster": serving.name }, "network": serving.network }))
        })
        .collect();
    let ports: Vec<Value> = s
        .ports
        .iter()
        .map(|p| json!({ "name": p.name, "number": p.number, "protocol": p.protocol }))
        .collect();
    let labels = json!({ "dcm.io/logical-cloud": lc.name });
    out.push(
        &c.name,
        json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "ServiceEntry",
            "metadata": { "name": name, "namespace": s.namespace, "labels": labels },
            "spec": {
                "hosts": [host],
                "location": "MESH_INTERNAL",
                "resolution": "DNS",
                "ports": ports,
                "addresses": [],
                "endpoints": endpoints
            }
        }),
        source,
        vec![operator.clone()],
        BTreeMap::new(),
    );
    let subsets: Vec<Value> = s
        .clusters
        .iter()
        .map(|sc| json!({ "name": sc, "labels": { "cluster": sc } }))
        .collect();
    out.push(
        &c.name,
        json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
            "metadata": { "name": name, "namespace": s.namespace, "labels": labels },
            "spec": { "host": host, "trafficPolicy": { "tls": { "mode": "ISTIO_MUTUAL" } }, "subsets": subsets }
        }),
        source,
        vec![operator],
        BTreeMap::new(),
    );
}

/// Gives every ServiceEntry an address from 127.255.0.0/16, unique within its cluster.
/// An address once recorded in the state is kept for as long as the object exists; new
/// ones take the lowest free address, in address order of the objects, so adding,
/// removing or reordering other services never renumbers anything.
fn allocate_addresses(
    objects: &mut [DesiredObject],
    allocations: &Allocations,
    diags: &mut Vec<Diagnostic>,
) {
    let is_se =
        |o: &DesiredObject| o.id.kind == "ServiceEntry" && o.id.group == "networking.istio.io";
    let mut used: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    for (id, ip) in &allocations.by_object {
        used.entry(id.cluster.clone())
            .or_default()
            .insert(u32::from(*ip));
    }
    let mut order: Vec<usize> = (0..objects.len()).filter(|&i| is_se(&objects[i])).collect();
    order.sort_by(|&a, &b| objects[a].id.cmp(&objects[b].id));
    let mut exhausted = BTreeSet::new();
    for i in order {
        let id = objects[i].id.clone();
        let ip = match allocations.by_object.get(&id) {
            Some(ip) => *ip,
            None => {
                let taken = used.entry(id.cluster.clone()).or_default();
                let Some(free) = (FIRST..=LAST).find(|n| !taken.contains(n)) else {
                    if exhausted.insert(id.cluster.clone()) {
                        diags.push(Diagnostic::new(format!(
                            "cluster `{}` has no free ServiceEntry address left in 127.255.0.0/16 ({} in use)",
                            id.cluster,
                            taken.len()
                        )));
                    }
                    continue;
                };
                taken.insert(free);
                Ipv4Addr::from(free)
            }
        };
        objects[i].object["spec"]["addresses"] = json!([ip.to_string()]);
        objects[i]
            .allocated
            .insert("address".into(), ip.to_string());
    }
}
