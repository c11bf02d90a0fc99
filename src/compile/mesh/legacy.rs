//! The `legacy-global` profile: the seeds' 2019 recipe, kept for clusters still on Istio
//! 1.8 or older. An IstioOperator per cloud and member, istiocoredns and a stub domain in
//! the cluster DNS for the suffix, the `.global`-style EnvoyFilter that rewrites
//! `.<suffix>` to the cluster domain, the 15443 ingress Gateway, and exported services as
//! ServiceEntries only where they do not run. None of this works on Istio 1.9 and later;
//! the current profile lives beside this file.

use super::{
    cacerts, cloud_host, exported_name, http_rule, local_host, remote_secret, subset_rule_name,
    KubeconfigParts, Out,
};
use crate::compile::{DesiredObject, Edit, KnownAfterApply, LiveValue};
use crate::diag::Location;
use crate::model::{
    Cluster, Dependency, DependencyTarget, ExportedService, LogicalCloud, Model, Profile, Route,
    Subset,
};
use crate::object::ObjRef;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The server block that sends `<suffix>` names to this cloud's istiocoredns.
pub fn stub_domain_block(suffix: &str, forward: &str) -> String {
    format!("{suffix}:53 {{\n    errors\n    cache 30\n    forward . {forward}:53\n}}\n")
}

/// What stands in a stub domain for the istiocoredns address until the cluster has it.
fn istiocoredns(cluster: &str, istio_namespace: &str) -> KnownAfterApply {
    KnownAfterApply::object(
        ObjRef {
            cluster: cluster.to_string(),
            group: String::new(),
            kind: "Service".into(),
            namespace: istio_namespace.to_string(),
            name: "istiocoredns".into(),
        },
        "v1",
        LiveValue::ClusterIp,
    )
}

/// One legacy cloud: its control planes, its exported services and its routes.
pub fn compile_cloud(out: &mut Out<'_>, lc: &LogicalCloud, model: &Model) {
    for member in &lc.clusters {
        if let Some(cluster) = model.clusters.get(member) {
            control_plane(out, lc, cluster, model);
        }
    }
    exported_services(out, lc, model);
    for route in &lc.routes {
        virtual_services(out, lc, route, model);
    }
}

/// One stub domain per logical cloud in each member's cluster DNS, all in one edit of the
/// object the cluster's `dns` mode names.
pub fn dns_stub_domains(model: &Model) -> Vec<DesiredObject> {
    let mut out = Vec::new();
    for c in model.clusters.values() {
        let mut clouds: Vec<&LogicalCloud> = model
            .logical_clouds
            .values()
            .filter(|lc| lc.clusters.contains(&c.name) && lc.profile == Profile::LegacyGlobal)
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
                    let k = istiocoredns(&c.name, &lc.istio_namespace);
                    let placeholder = k.placeholder.clone();
                    known_after_apply.push(k);
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
            crate::model::DnsMode::Corefile => {
                ("coredns", Edit::Corefile(blocks.clone()), "corefile")
            }
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
            object: std::sync::Arc::new(json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name, "namespace": "kube-system" } })),
            source: format!("logical_clouds.{}", clouds[0].name),
            depends_on,
            location,
            allocated: BTreeMap::from([
                ("edit".to_string(), mode.to_string()),
                (
                    "parts".to_string(),
                    crate::compile::edit::parts_value(&edit.parts()),
                ),
            ]),
            edit: Some(edit),
            revert: false,
            known_after_apply,
            ready_when: None,
        });
    }
    out
}

/// What one member gets. A member that runs a control plane (every member of a
/// multi-primary cloud, the primary of a primary-remote one) gets the CA, a full install
/// and the mesh configuration; a remote gets the remote install only, and the primary
/// reaches it through a remote secret. The CA key never goes where no istiod signs.
fn control_plane(out: &mut Out<'_>, lc: &LogicalCloud, c: &Cluster, model: &Model) {
    let ns = &lc.istio_namespace;
    let sfx = &lc.suffix;
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
        vec![],
        none(),
    );
    let full = lc.runs_control_plane(&c.name);
    if full {
        cacerts(out, lc, c, model, labels.clone());
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
        vec![],
        none(),
    );
    for inject in &lc.injection_namespaces {
        out.push(
            &c.name,
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": inject, "labels": { "istio.io/rev": lc.name } } }),
            vec![operator.clone()],
            none(),
        );
    }
    if !full {
        return;
    }
    if lc.primary().is_some() {
        expose_istiod(out, lc, c, &operator, &gateway_labels);
        for remote in lc.remotes() {
            let Some(rc) = model.clusters.get(remote) else {
                continue;
            };
            // The model makes sure a legacy remote's table gives all three.
            let (Some(server), Some(ca), Some(token)) = (
                rc.access.api_server.clone(),
                rc.access
                    .ca_cert
                    .as_deref()
                    .map(|ca| crate::object::base64(ca.as_bytes())),
                rc.access.token.clone(),
            ) else {
                continue;
            };
            let labels = json!({ "istio/multiCluster": "true", "dcm.io/logical-cloud": lc.name });
            let parts = KubeconfigParts {
                server,
                ca_data: ca,
                token,
                known_after_apply: Vec::new(),
                preferences: true,
            };
            remote_secret(out, lc, &c.name, &rc.name, labels, parts, Vec::new());
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
        vec![gateway],
        BTreeMap::new(),
    );
}

/// For each exported service, on every member where it does not run (and whose control
/// plane reads configuration from it): a ServiceEntry and a DestinationRule with one subset
/// per serving cluster and one per declared subset there. Where declared subsets run, a
/// DestinationRule for the service's own host defines them by their pod labels.
fn exported_services(out: &mut Out<'_>, lc: &LogicalCloud, model: &Model) {
    for s in &lc.services {
        for member in lc
            .clusters
            .iter()
            .filter(|m| !s.clusters.contains(m) && lc.runs_control_plane(m))
        {
            let Some(c) = model.clusters.get(member) else {
                continue;
            };
            service_entry(out, lc, s, c, model);
        }
        subset_rules(out, lc, s, model);
    }
}

/// The DestinationRule for a service's own host (`<name>.<ns>.svc.<domain>`) that defines
/// its declared subsets by pod labels: in each cluster where subsets run (the gateway
/// there resolves `outbound_.<port>_.<subset>_.<host>` with it), or, in a primary-remote
/// cloud, once in the primary with each subset pinned to its cluster by Istio's
/// `topology.istio.io/cluster` endpoint label.
fn subset_rules(out: &mut Out<'_>, lc: &LogicalCloud, s: &ExportedService, model: &Model) {
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
            vec![operator_of(lc, &c.name)],
            BTreeMap::new(),
        );
    }
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
    let Some(s) = lc.service_of(route) else {
        return;
    };
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
                http_rule(rule, |d| {
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
                    host
                })
            })
            .collect();
        out.push(
            &c.name,
            json!({
                "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
                "metadata": { "name": exported_name(lc, s), "namespace": s.namespace, "labels": { "dcm.io/logical-cloud": lc.name } },
                "spec": { "hosts": [local_host(s, c)], "http": http }
            }),
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
    let ports = super::service_ports(s);
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
        vec![operator],
        BTreeMap::new(),
    );
}
