//! East-west gateways (current profile): one per cloud and member, shaped like Istio's
//! `gen-eastwest-gateway.sh --network <net> --revision <rev>` output as the Sail Operator
//! documents it (`docs/deployment-models/resources/east-west-gateway-net1.yaml`, rendered
//! through Istio's `manifests/charts/gateways/istio-ingress` chart: a gateway-injected
//! Deployment, its ServiceAccount and SDS Role, a LoadBalancer Service on 15021, 15443,
//! 15012 and 15017 labelled with the network); `cross-network-gateway`, which passes mTLS
//! through on 15443 for the cluster's names and the cloud's suffix (`expose-services.yaml`);
//! and, on the primary of a primary-remote cloud, istiod exposed through it (Istio's
//! `expose-istiod-rev.yaml.tmpl`). `tests/e2e/reference_shapes.rs` compares them field by
//! field with those samples.
//!
//! Deliberate differences from the samples, each for one reason:
//! - every object lives in the cloud's own namespace and carries its revision
//!   (`istio.io/rev`, as the chart sets it for `--revision`), so two clouds on one cluster
//!   each have their own gateway and neither control plane configures the other's;
//! - `cross-network-gateway` also lists `*.<suffix>` for the cloud's names;
//! - objects carry `dcm.io/logical-cloud` instead of the operator's bookkeeping labels
//!   (`release`, `install.operator.istio.io/owning-resource`, `operator.istio.io/component`,
//!   `app.kubernetes.io/name`, and on pods `chart`, `heritage`,
//!   `service.istio.io/canonical-*`, which the injector derives from `app` anyway);
//! - the Deployment leaves to the injector and to Kubernetes' defaults what they fill in
//!   the same way (the pod's security context: the `gateway` injection template sets the
//!   proxy's user 1337 and the unprivileged-port sysctl; a rolling update that, with one
//!   replica, also starts the new pod before stopping the old, as the chart's 100%/25%
//!   does), and has none of the chart's `istio-ingressgateway-certs` volumes (optional
//!   file-mounted certificates, unused: gateways read secrets through SDS);
//! - no PodDisruptionBudget or HorizontalPodAutoscaler: dcm manages no scaling, and a
//!   `minAvailable: 1` budget on one replica would block every node drain.

use super::install::after_control_plane as after_install;
use super::{cloud_labels, in_istio_namespace, Out};
use crate::compile::{KnownAfterApply, LiveValue};
use crate::model::{Cluster, LogicalCloud, Model};
use serde_json::json;
use std::collections::BTreeMap;

/// The name of the gateway's Deployment and Service (as in Istio's samples).
pub(super) const EAST_WEST: &str = "istio-eastwestgateway";
/// Its ServiceAccount.
const EAST_WEST_ACCOUNT: &str = "istio-eastwestgateway-service-account";
/// The port other clusters reach mTLS passthrough on.
pub(super) const PASSTHROUGH_PORT: u16 = 15443;

/// How other clusters reach a member's east-west gateway.
pub(super) struct GatewayAddress {
    pub host: String,
    pub port: u16,
    /// Set when the address is the gateway Service's load balancer, known after apply.
    pub known_after_apply: Option<KnownAfterApply>,
}

/// A member's east-west gateway address: `gateway` when the file pins it, else its
/// Service's load-balancer address once the cluster has given it one.
pub(super) fn address(lc: &LogicalCloud, c: &Cluster) -> GatewayAddress {
    if let Some((host, port)) = c.gateway.as_deref().and_then(|g| g.rsplit_once(':')) {
        return GatewayAddress {
            host: host.to_string(),
            port: port.parse().unwrap_or(PASSTHROUGH_PORT),
            known_after_apply: None,
        };
    }
    let service = in_istio_namespace(lc, &c.name, "", "Service", EAST_WEST);
    let k = KnownAfterApply::object(service, "v1", LiveValue::LoadBalancerAddress);
    GatewayAddress {
        host: k.placeholder.clone(),
        port: PASSTHROUGH_PORT,
        known_after_apply: Some(k),
    }
}

/// Whether a member runs an east-west gateway: every member that runs a control plane,
/// and a remote that serves an exported service or is on another network than the
/// primary (single-network remotes reach istiod and each other directly).
pub(super) fn has_east_west(lc: &LogicalCloud, c: &Cluster, model: &Model) -> bool {
    let Some(primary) = lc.primary() else {
        return true;
    };
    if primary == c.name {
        return true;
    }
    let serves = lc.services.iter().any(|s| s.clusters.contains(&c.name));
    let other_network = model
        .clusters
        .get(primary)
        .is_some_and(|p| p.network != c.network);
    serves || other_network
}

/// A member's east-west gateway, and the mesh configuration that uses it where the
/// member's istiod reads configuration.
pub(super) fn east_west(out: &mut Out<'_>, lc: &LogicalCloud, c: &Cluster, model: &Model) {
    if !has_east_west(lc, c, model) {
        return;
    }
    let ns = &lc.istio_namespace;
    let net = &c.network;
    let selector =
        json!({ "app": EAST_WEST, "istio": "eastwestgateway", "topology.istio.io/network": net });
    // As the chart labels the ServiceAccount, Deployment and Service: the gateway's labels
    // and the revision.
    let labels = json!({
        "app": EAST_WEST, "istio": "eastwestgateway", "topology.istio.io/network": net,
        "istio.io/rev": lc.revision, "dcm.io/logical-cloud": lc.name
    });
    // The chart's Role and RoleBinding carry the revision but not the gateway's labels.
    let rbac_labels = cloud_labels(lc);
    let after = after_install(lc, &c.name);
    out.push(
        &c.name,
        json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": EAST_WEST_ACCOUNT, "namespace": ns, "labels": labels } }),
        vec![],
        BTreeMap::new(),
    );
    let sds = format!("{EAST_WEST}-sds");
    out.push(
        &c.name,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": { "name": sds, "namespace": ns, "labels": rbac_labels },
            "rules": [{ "apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "watch", "list"] }]
        }),
        vec![],
        BTreeMap::new(),
    );
    out.push(
        &c.name,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": { "name": sds, "namespace": ns, "labels": rbac_labels },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sds },
            "subjects": [{ "kind": "ServiceAccount", "name": EAST_WEST_ACCOUNT }]
        }),
        vec![in_istio_namespace(
            lc,
            &c.name,
            "rbac.authorization.k8s.io",
            "Role",
            &sds,
        )],
        BTreeMap::new(),
    );
    let mut pod_labels = selector.clone();
    pod_labels["sidecar.istio.io/inject"] = json!("true");
    pod_labels["istio.io/rev"] = json!(lc.revision);
    let mut deps = after.clone();
    deps.push(in_istio_namespace(
        lc,
        &c.name,
        "",
        "ServiceAccount",
        EAST_WEST_ACCOUNT,
    ));
    out.push(
        &c.name,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": EAST_WEST, "namespace": ns, "labels": labels },
            "spec": {
                "selector": { "matchLabels": selector },
                "template": {
                    "metadata": {
                        // The injector replaces the `auto` image with the proxy, configured as
                        // a gateway by this revision's istiod.
                        "annotations": {
                            "inject.istio.io/templates": "gateway",
                            "prometheus.io/path": "/stats/prometheus",
                            "prometheus.io/port": "15020",
                            "prometheus.io/scrape": "true",
                            "sidecar.istio.io/inject": "true"
                        },
                        "labels": pod_labels
                    },
                    "spec": {
                        "serviceAccountName": EAST_WEST_ACCOUNT,
                        "containers": [{
                            "name": "istio-proxy",
                            "image": "auto",
                            "env": [
                                { "name": "ISTIO_META_REQUESTED_NETWORK_VIEW", "value": net },
                                { "name": "ISTIO_META_UNPRIVILEGED_POD", "value": "true" }
                            ],
                            "ports": [
                                { "containerPort": 15021, "protocol": "TCP" },
                                { "containerPort": PASSTHROUGH_PORT, "protocol": "TCP" },
                                { "containerPort": 15012, "protocol": "TCP" },
                                { "containerPort": 15017, "protocol": "TCP" },
                                { "containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP" }
                            ],
                            // The chart's (and the `gateway` chart's) defaults: the
                            // `gateway` injection template sets none, and without requests
                            // the gateway would be the first pod evicted from a busy node.
                            "resources": {
                                "limits": { "cpu": "2000m", "memory": "1024Mi" },
                                "requests": { "cpu": "100m", "memory": "128Mi" }
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": false,
                                "capabilities": { "drop": ["ALL"] },
                                "privileged": false,
                                "readOnlyRootFilesystem": true
                            }
                        }]
                    }
                }
            }
        }),
        deps,
        BTreeMap::new(),
    );
    out.push(
        &c.name,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": EAST_WEST, "namespace": ns, "labels": labels },
            "spec": {
                "type": "LoadBalancer",
                "selector": selector,
                "ports": [
                    { "name": "status-port", "port": 15021, "targetPort": 15021, "protocol": "TCP" },
                    { "name": "tls", "port": PASSTHROUGH_PORT, "targetPort": PASSTHROUGH_PORT, "protocol": "TCP" },
                    { "name": "tls-istiod", "port": 15012, "targetPort": 15012, "protocol": "TCP" },
                    { "name": "tls-webhook", "port": 15017, "targetPort": 15017, "protocol": "TCP" }
                ]
            }
        }),
        vec![],
        BTreeMap::new(),
    );
    if !lc.runs_control_plane(&c.name) {
        return;
    }
    // Istio names a cluster's services `*.local` (`*.<domain>` for another cluster domain).
    let local = if c.cluster_domain.ends_with(".local") || c.cluster_domain == "local" {
        "*.local".to_string()
    } else {
        format!("*.{}", c.cluster_domain)
    };
    out.push(
        &c.name,
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": { "name": "cross-network-gateway", "namespace": ns, "labels": cloud_labels(lc) },
            "spec": {
                "selector": { "istio": "eastwestgateway" },
                "servers": [{
                    "port": { "number": PASSTHROUGH_PORT, "name": "tls", "protocol": "TLS" },
                    "tls": { "mode": "AUTO_PASSTHROUGH" },
                    "hosts": [local, format!("*.{}", lc.suffix)]
                }]
            }
        }),
        after.clone(),
        BTreeMap::new(),
    );
    if lc.primary() == Some(c.name.as_str()) {
        expose_istiod(out, lc, c, after);
    }
}

/// Istio's `expose-istiod-rev`: istiod's xDS (15012) and webhook (15017, to its 443)
/// passed through the east-west gateway, so remotes reach the primary's control plane.
/// As in the sample, only the VirtualService carries the revision in its name.
///
/// The destination is istiod's Service, which Istio's chart names `istiod-<revision>`
/// (`istio-discovery/templates/service.yaml`); the Sail Operator installs the revision
/// named `default` with an empty revision value (`pkg/istiovalues/overrides.go`), so that
/// one's Service is plain `istiod`.
fn expose_istiod(
    out: &mut Out<'_>,
    lc: &LogicalCloud,
    c: &Cluster,
    after: Vec<crate::object::ObjRef>,
) {
    let ns = &lc.istio_namespace;
    let rev = &lc.revision;
    let gateway = "istiod-gateway".to_string();
    let service = match super::chart_revision(lc) {
        Some(rev) => format!("istiod-{rev}"),
        None => "istiod".to_string(),
    };
    let istiod = format!("{service}.{ns}.svc.{}", c.cluster_domain);
    let sni = json!([format!("{service}.{ns}.svc"), istiod]);
    out.push(
        &c.name,
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": { "name": gateway, "namespace": ns, "labels": cloud_labels(lc) },
            "spec": {
                "selector": { "istio": "eastwestgateway" },
                "servers": [
                    { "port": { "name": "tls-istiod", "number": 15012, "protocol": "tls" }, "tls": { "mode": "PASSTHROUGH" }, "hosts": ["*"] },
                    { "port": { "name": "tls-istiodwebhook", "number": 15017, "protocol": "tls" }, "tls": { "mode": "PASSTHROUGH" }, "hosts": ["*"] }
                ]
            }
        }),
        after,
        BTreeMap::new(),
    );
    out.push(
        &c.name,
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": { "name": format!("istiod-vs-{rev}"), "namespace": ns, "labels": cloud_labels(lc) },
            "spec": {
                "hosts": ["*"],
                "gateways": [gateway],
                "tls": [
                    { "match": [{ "port": 15012, "sniHosts": sni }], "route": [{ "destination": { "host": istiod, "port": { "number": 15012 } } }] },
                    { "match": [{ "port": 15017, "sniHosts": sni }], "route": [{ "destination": { "host": istiod, "port": { "number": 443 } } }] }
                ]
            }
        }),
        vec![in_istio_namespace(lc, &c.name, "networking.istio.io", "Gateway", &gateway)],
        BTreeMap::new(),
    );
}
