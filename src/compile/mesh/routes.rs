//! Subsets and routes (current profile). Every control plane discovers every member's
//! endpoints (remote secrets), so a subset is simply the service's pods with some labels
//! in one cluster: Istio labels each endpoint with `topology.istio.io/cluster`. A route is
//! a VirtualService for the service's own name and its cloud name, so that clients using
//! either get the same header and weight rules; requests to a subset in another network
//! cross through that network's east-west gateway, which resolves the subset with the same
//! DestinationRule (hence it is in every member that runs a control plane).

use super::{
    cloud_host, cloud_labels, exported_name, http_rule, local_host, subset_rule_name, Out,
};
use crate::model::{ExportedService, LogicalCloud, Model, Route};
use crate::object::ObjRef;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Every subset rule and route of one cloud.
pub(super) fn compile(out: &mut Out<'_>, lc: &LogicalCloud, model: &Model) {
    for s in lc.services.iter().filter(|s| !s.subsets.is_empty()) {
        subset_rules(out, lc, s, model);
    }
    for route in &lc.routes {
        virtual_services(out, lc, route, model);
    }
}

/// The DestinationRule for the service's own host that defines its subsets: pod labels,
/// pinned to the subset's cluster.
fn subset_rules(out: &mut Out<'_>, lc: &LogicalCloud, s: &ExportedService, model: &Model) {
    let subsets: Vec<Value> = s
        .subsets
        .iter()
        .map(|x| {
            let mut labels = json!(x.labels);
            labels["topology.istio.io/cluster"] = json!(x.cluster);
            json!({ "name": x.name, "labels": labels })
        })
        .collect();
    for member in lc.clusters.iter().filter(|m| lc.runs_control_plane(m)) {
        let Some(c) = model.clusters.get(member) else {
            continue;
        };
        out.push(
            member,
            json!({
                "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                "metadata": { "name": subset_rule_name(lc, s), "namespace": s.namespace, "labels": cloud_labels(lc) },
                "spec": {
                    "host": local_host(s, c),
                    "trafficPolicy": { "tls": { "mode": "ISTIO_MUTUAL" } },
                    "subsets": subsets
                }
            }),
            super::install::after_control_plane(lc, member),
            BTreeMap::new(),
        );
    }
}

/// A route's VirtualService in each of its client clusters (the model puts a
/// primary-remote cloud's routes in its primary).
fn virtual_services(out: &mut Out<'_>, lc: &LogicalCloud, route: &Route, model: &Model) {
    let Some(s) = lc.service_of(route) else {
        return;
    };
    for client in &route.clusters {
        let Some(c) = model.clusters.get(client) else {
            continue;
        };
        let host = local_host(s, c);
        let http: Vec<Value> = route
            .http
            .iter()
            .map(|rule| http_rule(rule, |_| host.clone()))
            .collect();
        let mut depends_on = super::install::after_control_plane(lc, client);
        depends_on.push(ObjRef {
            cluster: client.clone(),
            group: "networking.istio.io".into(),
            kind: "DestinationRule".into(),
            namespace: s.namespace.clone(),
            name: subset_rule_name(lc, s),
        });
        out.push(
            client,
            json!({
                "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                "metadata": { "name": exported_name(lc, s), "namespace": s.namespace, "labels": cloud_labels(lc) },
                "spec": { "hosts": [host, cloud_host(s, lc)], "http": http }
            }),
            depends_on,
            BTreeMap::new(),
        );
    }
}
