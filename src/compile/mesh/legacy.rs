//! What a logical cloud becomes in each member cluster. All of dcm's Istio knowledge is
//! here: the per-cloud control plane, the suffix wired through the mesh (istio CoreDNS,
//! EnvoyFilter, Gateway, DestinationRule), injection labels, and exported services as
//! ServiceEntries with addresses that never change once allocated.
//!
//! Objects are plain JSON; this module reads nothing (allocations come in as an argument).

use super::{DesiredObject, Edit, KnownAfterApply};
use crate::diag::{Diagnostic, Location};
use crate::model::{
    Ca, Cluster, Dependency, DependencyTarget, ExportedService, LogicalCloud, Model, Route, Subset,
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
                control_plane(&mut out, lc, cluster, ca, model);
            }
        }
        exported_services(&mut out, lc, model);
        for route in &lc.routes {
            virtual_services(&mut out, lc, route, model);
        }
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
                target: DependencyTarget::Object(operator_of(lc, &c.name)),
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

/// What one member gets. A member that runs a control plane (every member of a
/// multi-primary cloud, the primary of a primary-remote one) gets the CA, a full install
/// and the mesh configuration; a remote gets the remote install only, and the primary
/// reaches it through a remote secret. The CA key never goes where no istiod signs.
fn control_plane(out: &mut Out<'_>, lc: &LogicalCloud, c: &Cluster, ca: &Ca, model: &Model) {
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
    let operator = operator_of(lc, &c.name);
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
    let full = lc.runs_control_plane(&c.name);
    if full {
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
    }
    let gateway_labels = json!({ "istio": "ingressgateway", "app": "istio-ingressgateway", "istio.io/rev": lc.name });
    let primary = lc.primary().and_then(|p| model.clusters.get(p));
    let operator_spec = istio_operator_spec(lc, c, primary, &gateway_labels);
    out.push(
        &c.name,
        json!({
            "apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator",
            "metadata": { "name": operator.name, "namespace": ns, "labels": labels },
            "spec": operator_spec
        }),
        &source,
        if full {
            vec![in_ns("Secret", "", "cacerts")]
        } else {
            vec![]
        },
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
    for inject in &lc.injection_namespaces {
        out.push(
            &c.name,
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": inject, "labels": { "istio.io/rev": lc.name } } }),
            &source,
            vec![operator.clone()],
            none(),
        );
    }
    if !full {
        return;
    }
    if lc.primary().is_some() {
        expose_istiod(out, lc, c, &operator, &gateway_labels, &source);
        for remote in lc.remotes() {
            if let Some(rc) = model.clusters.get(remote) {
                remote_secret(out, lc, c, rc, &source);
            }
        }
    }
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
}

/// The IstioOperator spec for one member: the full control plane (with `externalIstiod`
/// on a primary, whose gateway also carries istiod's ports), or the remote profile that
/// points at the primary's gateway.
fn istio_operator_spec(
    lc: &LogicalCloud,
    c: &Cluster,
    primary: Option<&Cluster>,
    gateway_labels: &Value,
) -> Value {
    let ns = &lc.istio_namespace;
    let sfx = &lc.suffix;
    let is_primary = primary.is_some_and(|p| p.name == c.name);
    let mut gateway = json!({
        "name": "istio-ingressgateway", "namespace": ns, "enabled": true,
        "label": gateway_labels,
        "k8s": { "env": [
            { "name": "ISTIO_META_ROUTER_MODE", "value": "sni-dnat" },
            { "name": "ISTIO_META_REQUESTED_NETWORK_VIEW", "value": c.network }
        ] }
    });
    if is_primary {
        gateway["k8s"]["service"] = json!({ "ports": [
            { "name": "status-port", "port": 15021, "targetPort": 15021 },
            { "name": "tls", "port": 15443, "targetPort": 15443 },
            { "name": "tls-istiod", "port": 15012, "targetPort": 15012 },
            { "name": "tls-webhook", "port": 15017, "targetPort": 15017 }
        ] });
    }
    let mut global = json!({
        "istioNamespace": ns,
        "meshID": lc.name,
        "multiCluster": { "clusterName": c.name },
        "network": c.network,
        "podDNSSearchNamespaces": [sfx, format!("{{{{ valueOrDefault .DeploymentMeta.Namespace \"default\" }}}}.{sfx}")]
    });
    let mut values = json!({});
    let profile = match primary {
        Some(p) if p.name != c.name => {
            // Remotes reach istiod on the primary's gateway address (15012 for xDS and
            // certificates, 15017 for injection).
            let host = p
                .gateway
                .as_deref()
                .and_then(|g| g.rsplit_once(':').map(|(h, _)| h))
                .unwrap_or_default();
            global["remotePilotAddress"] = json!(host);
            values["istiodRemote"] = json!({
                "injectionPath": format!("/inject/cluster/{}/net/{}", c.name, c.network)
            });
            "remote"
        }
        Some(_) => {
            global["externalIstiod"] = json!(true);
            "default"
        }
        None => "default",
    };
    values["global"] = global;
    json!({
        "profile": profile,
        "revision": lc.name,
        "namespace": ns,
        "components": { "ingressGateways": [gateway] },
        "addonComponents": { "istiocoredns": { "enabled": true } },
        "values": values
    })
}

/// On a primary: a Gateway and VirtualService that pass istiod's ports through the
/// gateway, so that remote proxies and webhooks reach it (Istio's expose-istiod set-up).
fn expose_istiod(
    out: &mut Out<'_>,
    lc: &LogicalCloud,
    c: &Cluster,
    operator: &ObjRef,
    gateway_labels: &Value,
    source: &str,
) {
    let ns = &lc.istio_namespace;
    let labels = json!({ "dcm.io/logical-cloud": lc.name });
    let istiod = format!("istiod-{}.{ns}.svc.{}", lc.name, c.cluster_domain);
    out.push(
        &c.name,
        json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "Gateway",
            "metadata": { "name": "istiod-gateway", "namespace": ns, "labels": labels },
            "spec": {
                "selector": gateway_labels,
                "servers": [
                    { "hosts": ["*"], "port": { "name": "tls-istiod", "number": 15012, "protocol": "TLS" }, "tls": { "mode": "PASSTHROUGH" } },
                    { "hosts": ["*"], "port": { "name": "tls-istiodwebhook", "number": 15017, "protocol": "TLS" }, "tls": { "mode": "PASSTHROUGH" } }
                ]
            }
        }),
        source,
        vec![operator.clone()],
        BTreeMap::new(),
    );
    let gateway = ObjRef {
        cluster: c.name.clone(),
        group: "networking.istio.io".into(),
        kind: "Gateway".into(),
        namespace: ns.clone(),
        name: "istiod-gateway".into(),
    };
    out.push(
        &c.name,
        json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": { "name": "istiod-vs", "namespace": ns, "labels": labels },
            "spec": {
                "hosts": ["*"],
                "gateways": ["istiod-gateway"],
                "tls": [
                    { "match": [{ "port": 15012, "sniHosts": ["*"] }], "route": [{ "destination": { "host": istiod, "port": { "number": 15012 } } }] },
                    { "match": [{ "port": 15017, "sniHosts": ["*"] }], "route": [{ "destination": { "host": istiod, "port": { "number": 443 } } }] }
                ]
            }
        }),
        source,
        vec![gateway],
        BTreeMap::new(),
    );
}

/// On a primary, for one remote: the Secret istiod watches (label `istio/multiCluster`)
/// holding a kubeconfig for the remote's API server, as `istioctl create-remote-secret`
/// writes it. The token is Secret data: plans show only its hash.
fn remote_secret(
    out: &mut Out<'_>,
    lc: &LogicalCloud,
    primary: &Cluster,
    remote: &Cluster,
    source: &str,
) {
    let Some(access) = &remote.remote_access else {
        return;
    };
    let name = &remote.name;
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": name, "cluster": {
            "server": access.api_server,
            "certificate-authority-data": crate::object::base64(access.ca_cert.as_bytes())
        } }],
        "contexts": [{ "name": name, "context": { "cluster": name, "user": name } }],
        "current-context": name,
        "preferences": {},
        "users": [{ "name": name, "user": { "token": access.token } }]
    });
    let text = serde_yaml_ng::to_string(&kubeconfig).unwrap_or_default();
    out.push(
        &primary.name,
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {
                "name": format!("istio-remote-secret-{name}"),
                "namespace": lc.istio_namespace,
                "labels": { "istio/multiCluster": "true", "dcm.io/logical-cloud": lc.name },
                "annotations": { "networking.istio.io/cluster": name }
            },
            "data": { name.as_str(): crate::object::base64(text.as_bytes()) }
        }),
        source,
        vec![],
        BTreeMap::new(),
    );
}

/// For each exported service, on every member where it does not run (and whose control
/// plane reads configuration from it): a ServiceEntry and a DestinationRule with one subset
/// per serving cluster and one per declared subset there. Where declared subsets run, a
/// DestinationRule for the service's own host defines them by their pod labels.
fn exported_services(out: &mut Out<'_>, lc: &LogicalCloud, model: &Model) {
    let source = format!("logical_clouds.{}", lc.name);
    for s in &lc.services {
        for member in lc
            .clusters
            .iter()
            .filter(|m| !s.clusters.contains(m) && lc.runs_control_plane(m))
        {
            let Some(c) = model.clusters.get(member) else {
                continue;
            };
            service_entry(out, lc, s, c, model, &source);
        }
        subset_rules(out, lc, s, model, &source);
    }
}

/// The DestinationRule for a service's own host (`<name>.<ns>.svc.<domain>`) that defines
/// its declared subsets by pod labels: in each cluster where subsets run (the gateway
/// there resolves `outbound_.<port>_.<subset>_.<host>` with it), or, in a primary-remote
/// cloud, once in the primary with each subset pinned to its cluster by Istio's
/// `topology.istio.io/cluster` endpoint label.
fn subset_rules(
    out: &mut Out<'_>,
    lc: &LogicalCloud,
    s: &ExportedService,
    model: &Model,
    source: &str,
) {
    let places: Vec<(&str, Vec<&Subset>)> = match lc.primary() {
        Some(p) => vec![(p, s.subsets.iter().collect())],
        None => lc
            .clusters
            .iter()
            .map(|m| {
                let here = s.subsets.iter().filter(|x| &x.cluster == m).collect();
                (m.as_str(), here)
            })
            .collect(),
    };
    for (cluster, subsets) in places {
        let Some(c) = model.clusters.get(cluster) else {
            continue;
        };
        if subsets.is_empty() {
            continue;
        }
        let subsets: Vec<Value> = subsets
            .iter()
            .map(|x| {
                let mut labels = json!(x.labels);
                if lc.primary().is_some() {
                    labels["topology.istio.io/cluster"] = json!(x.cluster);
                }
                json!({ "name": x.name, "labels": labels })
            })
            .collect();
        out.push(
            &c.name,
            json!({
                "apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
                "metadata": { "name": subset_rule_name(lc, s), "namespace": s.namespace, "labels": { "dcm.io/logical-cloud": lc.name } },
                "spec": {
                    "host": local_host(s, c),
                    "trafficPolicy": { "tls": { "mode": "ISTIO_MUTUAL" } },
                    "subsets": subsets
                }
            }),
            source,
            vec![operator_of(lc, &c.name)],
            BTreeMap::new(),
        );
    }
}

/// `reviews-default-lc1`: the name of the ServiceEntry, DestinationRule and VirtualService
/// dcm makes for an exported service.
fn exported_name(lc: &LogicalCloud, s: &ExportedService) -> String {
    format!("{}-{}-{}", s.name, s.namespace, lc.suffix)
}

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

fn operator_of(lc: &LogicalCloud, cluster: &str) -> ObjRef {
    ObjRef {
        cluster: cluster.to_string(),
        group: "install.istio.io".into(),
        kind: "IstioOperator".into(),
        namespace: lc.istio_namespace.clone(),
        name: format!("{}-control-plane", lc.name),
    }
}

/// A route becomes a VirtualService for the service's own host in each of its clusters
/// (the model puts a primary-remote cloud's routes in its primary). A subset in the client's own cluster is
/// reached by the local host; one in another cluster through the cloud host, whose
/// ServiceEntry and DestinationRule dcm puts in the client cluster.
fn virtual_services(out: &mut Out<'_>, lc: &LogicalCloud, route: &Route, model: &Model) {
    let Some(s) = lc
        .services
        .iter()
        .find(|s| s.name == route.service && s.namespace == route.namespace)
    else {
        return;
    };
    let source = format!("logical_clouds.{}", lc.name);
    for client in &route.clusters {
        let Some(c) = model.clusters.get(client) else {
            continue;
        };
        let mut depends_on = vec![operator_of(lc, client)];
        let rule_ref = |name: String| ObjRef {
            cluster: client.clone(),
            group: "networking.istio.io".into(),
            kind: "DestinationRule".into(),
            namespace: s.namespace.clone(),
            name,
        };
        let http: Vec<Value> = route
            .http
            .iter()
            .map(|rule| {
                let destinations: Vec<Value> = rule
                    .to
                    .iter()
                    .map(|d| {
                        let subset_cluster = s
                            .subsets
                            .iter()
                            .find(|x| x.name == d.subset)
                            .map(|x| x.cluster.as_str())
                            .unwrap_or_default();
                        let (host, rule) = if lc.primary().is_some() || subset_cluster == client {
                            (local_host(s, c), subset_rule_name(lc, s))
                        } else {
                            (cloud_host(s, lc), exported_name(lc, s))
                        };
                        let dep = rule_ref(rule);
                        if !depends_on.contains(&dep) {
                            depends_on.push(dep);
                        }
                        let mut v = json!({ "destination": { "host": host, "subset": d.subset } });
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
            })
            .collect();
        out.push(
            &c.name,
            json!({
                "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
                "metadata": { "name": exported_name(lc, s), "namespace": s.namespace, "labels": { "dcm.io/logical-cloud": lc.name } },
                "spec": { "hosts": [local_host(s, c)], "http": http }
            }),
            &source,
            depends_on,
            BTreeMap::new(),
        );
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
    let host = cloud_host(s, lc);
    let name = exported_name(lc, s);
    let operator = operator_of(lc, &c.name);
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
    // One subset per serving cluster, and each declared subset that runs in one: the
    // serving cluster's gateway resolves the subset name in the SNI against its own rule.
    let subsets: Vec<Value> = s
        .clusters
        .iter()
        .map(|sc| json!({ "name": sc, "labels": { "cluster": sc } }))
        .chain(
            s.subsets
                .iter()
                .filter(|x| s.clusters.contains(&x.cluster))
                .map(|x| json!({ "name": x.name, "labels": { "cluster": x.cluster } })),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testutil::Lcg;

    fn service_entry(cluster: &str, name: &str) -> DesiredObject {
        let mut out = Out {
            objects: Vec::new(),
            location: &Location::none(),
        };
        out.push(
            cluster,
            json!({ "apiVersion": "networking.istio.io/v1beta1", "kind": "ServiceEntry", "metadata": { "name": name, "namespace": "default" }, "spec": {} }),
            "test",
            vec![],
            BTreeMap::new(),
        );
        out.objects.remove(0)
    }

    /// Rounds of random edits to the file (services added, removed, reordered, in random
    /// clusters), each compiled against the allocations the state recorded so far.
    #[test]
    fn addresses_are_unique_per_cluster_and_never_change_while_their_object_exists() {
        let mut r = Lcg(7);
        let clusters = ["c1", "c2", "c3"];
        let mut alive: Vec<(String, String)> = Vec::new();
        let mut state = Allocations::default();
        for _round in 0..300 {
            for _ in 0..r.next(4) {
                let c = clusters[r.next(clusters.len())].to_string();
                alive.push((c, format!("svc{}", r.next(60))));
            }
            for _ in 0..r.next(3) {
                if !alive.is_empty() {
                    let i = r.next(alive.len());
                    alive.remove(i);
                }
            }
            alive.sort();
            alive.dedup();
            // The file order is the user's: shuffle it.
            let mut order = alive.clone();
            for i in (1..order.len()).rev() {
                order.swap(i, r.next(i + 1));
            }
            let mut objects: Vec<DesiredObject> =
                order.iter().map(|(c, n)| service_entry(c, n)).collect();
            let mut diags = Vec::new();
            allocate_addresses(&mut objects, &state, &mut diags);
            assert!(diags.is_empty(), "{diags:?}");
            let mut seen = BTreeSet::new();
            let mut next = Allocations::default();
            for o in &objects {
                let ip: Ipv4Addr = o.allocated["address"].parse().unwrap();
                assert_eq!(o.object["spec"]["addresses"], json!([ip.to_string()]));
                assert!(
                    seen.insert((o.id.cluster.clone(), ip)),
                    "{ip} given twice in {}",
                    o.id.cluster
                );
                if let Some(before) = state.by_object.get(&o.id) {
                    assert_eq!(*before, ip, "{} was renumbered", o.id.address());
                }
                next.by_object.insert(o.id.clone(), ip);
            }
            // What the state keeps after an apply: the addresses of the objects that exist.
            state = next;
        }
    }

    #[test]
    fn an_exhausted_range_is_an_error_naming_the_cluster() {
        let mut state = Allocations::default();
        for n in FIRST..=LAST {
            let mut id = service_entry("c1", "x").id;
            id.name = format!("taken-{n}");
            state.by_object.insert(id, Ipv4Addr::from(n));
        }
        let mut objects = vec![service_entry("c1", "new"), service_entry("c2", "new")];
        let mut diags = Vec::new();
        allocate_addresses(&mut objects, &state, &mut diags);
        assert_eq!(diags.len(), 1);
        assert!(
            diags[0]
                .to_string()
                .contains("cluster `c1` has no free ServiceEntry address left in 127.255.0.0/16 (65534 in use)"),
            "{}",
            diags[0]
        );
        assert_eq!(objects[1].allocated["address"], "127.255.0.1");
    }
}
