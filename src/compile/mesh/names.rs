//! Cloud-wide names: `<svc>.<ns>.<suffix>` in every member whose control plane reads
//! configuration, as Admiral builds them. A ServiceEntry resolves the name (by DNS, so an
//! endpoint may be a host name): where the service runs its endpoint is the service's own
//! name in the cluster; elsewhere each serving cluster's east-west gateway, port 15443,
//! where the gateway passes the mTLS connection through by SNI. Sidecars answer the name
//! from their DNS proxy, with an address dcm allocates once and never changes.

use super::{cloud_host, cloud_labels, exported_name, gateways, local_host, Out};
use crate::compile::DesiredObject;
use crate::diag::Diagnostic;
use crate::model::{LogicalCloud, Model};
use crate::object::ObjRef;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// For each exported service, in each member that runs a control plane: the ServiceEntry
/// of its cloud name and a DestinationRule with mutual TLS and one subset per serving
/// cluster (endpoints are labelled with the cluster they lead to).
pub(super) fn cloud_names(out: &mut Out<'_>, lc: &LogicalCloud, model: &Model) {
    let labels = cloud_labels(lc);
    for s in &lc.services {
        let host = cloud_host(s, lc);
        let name = exported_name(lc, s);
        let ports = super::service_ports(s);
        for member in lc.clusters.iter().filter(|m| lc.runs_control_plane(m)) {
            let Some(c) = model.clusters.get(member) else {
                continue;
            };
            let mut known_after_apply = Vec::new();
            let mut depends_on = super::install::after_control_plane(lc, member);
            let mut endpoints = Vec::new();
            for serving in s.clusters.iter().filter_map(|sc| model.clusters.get(sc)) {
                let endpoint_labels = json!({ "dcm.io/cluster": serving.name });
                if serving.name == c.name {
                    let ports: serde_json::Map<String, Value> = s
                        .ports
                        .iter()
                        .map(|p| (p.name.clone(), json!(p.number)))
                        .collect();
                    endpoints.push(json!({ "address": local_host(s, c), "ports": ports, "labels": endpoint_labels }));
                    continue;
                }
                let gw = gateways::address(lc, serving);
                let ports: serde_json::Map<String, Value> = s
                    .ports
                    .iter()
                    .map(|p| (p.name.clone(), json!(gw.port)))
                    .collect();
                endpoints
                    .push(json!({ "address": gw.host, "ports": ports, "labels": endpoint_labels }));
                if let Some(k) = gw.known_after_apply {
                    if let Some((id, _)) = k.source_object() {
                        depends_on.push(id.clone());
                    }
                    known_after_apply.push(k);
                }
            }
            let se = out.push(
                member,
                json!({
                    "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
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
                depends_on,
                BTreeMap::new(),
            );
            se.known_after_apply = known_after_apply;
            let subsets: Vec<Value> = s
                .clusters
                .iter()
                .map(|sc| json!({ "name": sc, "labels": { "dcm.io/cluster": sc } }))
                .collect();
            out.push(
                member,
                json!({
                    "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                    "metadata": { "name": name, "namespace": s.namespace, "labels": labels },
                    "spec": { "host": host, "trafficPolicy": { "tls": { "mode": "ISTIO_MUTUAL" } }, "subsets": subsets }
                }),
                super::install::after_control_plane(lc, member),
                BTreeMap::new(),
            );
        }
    }
}

/// ServiceEntry addresses already handed out (from the state), per object, and the
/// addresses that live ServiceEntries outside the file use, per cluster.
#[derive(Debug, Clone, Default)]
pub struct Allocations {
    pub by_object: BTreeMap<ObjRef, Ipv4Addr>,
    /// Addresses (or ranges' first addresses) of live ServiceEntries that are neither
    /// the file's nor the state's: never handed out in that cluster.
    pub in_use: BTreeMap<String, BTreeSet<Ipv4Addr>>,
}

impl Allocations {
    /// The addresses the state records (`allocated.address`).
    pub fn from_state(state: Option<&crate::state::State>) -> Allocations {
        let mut by_object = BTreeMap::new();
        for e in state.iter().flat_map(|s| &s.objects) {
            if let Some(ip) = e.allocated.get("address").and_then(|a| a.parse().ok()) {
                by_object.insert(e.id(), ip);
            }
        }
        Allocations {
            by_object,
            in_use: BTreeMap::new(),
        }
    }

    /// The addresses of `service_entries` (live objects of `cluster`) that are neither
    /// `ours` (objects of the file or the state) nor unparsable.
    pub fn add_in_use<'a>(
        &mut self,
        cluster: &str,
        service_entries: impl IntoIterator<Item = &'a Value>,
        ours: impl Fn(&str, &str) -> bool,
    ) {
        for se in service_entries {
            let ns = se.pointer("/metadata/namespace").and_then(Value::as_str);
            let name = se.pointer("/metadata/name").and_then(Value::as_str);
            if ours(ns.unwrap_or(""), name.unwrap_or("")) {
                continue;
            }
            let set = self.in_use.entry(cluster.to_string()).or_default();
            set.extend(addresses_of(se));
        }
    }
}

/// The IPv4 addresses a ServiceEntry claims: `10.0.0.1`, or a range's first address.
fn addresses_of(service_entry: &Value) -> impl Iterator<Item = Ipv4Addr> + '_ {
    service_entry
        .pointer("/spec/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str()?.split('/').next()?.parse::<Ipv4Addr>().ok())
}

/// The range ServiceEntry addresses come from: 127.255.0.0/16, network and broadcast
/// addresses excluded.
const FIRST: u32 = u32::from_be_bytes([127, 255, 0, 1]);
const LAST: u32 = u32::from_be_bytes([127, 255, 255, 254]);
/// Gives every ServiceEntry dcm makes an address from 127.255.0.0/16, unique within its
/// cluster, and never one that another ServiceEntry of the file (`[[resources]]`) or a
/// live one outside the file (`Allocations::in_use`) already uses there. An address once recorded in the state is kept for as long as the object
/// exists; new ones take the lowest free address, in address order of the objects, so
/// adding, removing or reordering other services never renumbers anything.
pub fn allocate_addresses(
    objects: &mut [DesiredObject],
    allocations: &Allocations,
    diags: &mut Vec<Diagnostic>,
) {
    let is_se =
        |o: &DesiredObject| o.id.kind == "ServiceEntry" && o.id.group == "networking.istio.io";
    let ours = |o: &DesiredObject| o.source.starts_with("logical_clouds.");
    let mut used: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    for (id, ip) in &allocations.by_object {
        used.entry(id.cluster.clone())
            .or_default()
            .insert(u32::from(*ip));
    }
    for o in objects.iter().filter(|o| is_se(o) && !ours(o)) {
        used.entry(o.id.cluster.clone())
            .or_default()
            .extend(addresses_of(&o.object).map(u32::from));
    }
    for (cluster, addresses) in &allocations.in_use {
        used.entry(cluster.clone())
            .or_default()
            .extend(addresses.iter().map(|a| u32::from(*a)));
    }
    let mut order: Vec<usize> = (0..objects.len())
        .filter(|&i| is_se(&objects[i]) && ours(&objects[i]))
        .collect();
    order.sort_by(|&a, &b| objects[a].id.cmp(&objects[b].id));
    let mut exhausted = BTreeSet::new();
    // The lowest address that may be free, per cluster: `used` only grows, so the search
    // never needs to look below it again.
    let mut cursor: BTreeMap<String, u32> = BTreeMap::new();
    let mut addressed: std::collections::HashSet<std::sync::Arc<serde_json::Value>> =
        Default::default();
    for i in order {
        let id = objects[i].id.clone();
        let ip = match allocations.by_object.get(&id) {
            Some(ip) => *ip,
            None => {
                let taken = used.entry(id.cluster.clone()).or_default();
                let from = cursor.entry(id.cluster.clone()).or_insert(FIRST);
                let Some(free) = (*from..=LAST).find(|n| !taken.contains(n)) else {
                    if exhausted.insert(id.cluster.clone()) {
                        diags.push(Diagnostic::new(format!(
                            "cluster `{}` has no free ServiceEntry address left in 127.255.0.0/16 ({} in use)",
                            id.cluster,
                            taken.len()
                        )));
                    }
                    continue;
                };
                *from = free;
                taken.insert(free);
                Ipv4Addr::from(free)
            }
        };
        std::sync::Arc::make_mut(&mut objects[i].object)["spec"]["addresses"] =
            json!([ip.to_string()]);
        // Members that give a service the same address share one tree again.
        match addressed.get(&objects[i].object) {
            Some(same) => objects[i].object = std::sync::Arc::clone(same),
            None => {
                addressed.insert(std::sync::Arc::clone(&objects[i].object));
            }
        }
        objects[i]
            .allocated
            .insert("address".into(), ip.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Location;

    use crate::testutil::Lcg;

    fn service_entry(cluster: &str, name: &str) -> DesiredObject {
        let location = Location::none();
        let mut out = Out::new(&location, "logical_clouds.test".into());
        out.push(
            cluster,
            json!({ "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": { "name": name, "namespace": "default" }, "spec": {} }),
            vec![],
            BTreeMap::new(),
        );
        out.objects.remove(0)
    }

    #[test]
    fn addresses_that_the_files_own_service_entries_use_are_never_handed_out() {
        let mut theirs = service_entry("c1", "theirs");
        theirs.source = "resources.mine".into();
        std::sync::Arc::make_mut(&mut theirs.object)["spec"]["addresses"] =
            json!(["127.255.0.1", "127.255.0.2/32"]);
        let mut objects = vec![theirs, service_entry("c1", "a"), service_entry("c2", "a")];
        let mut diags = Vec::new();
        allocate_addresses(&mut objects, &Allocations::default(), &mut diags);
        assert!(diags.is_empty());
        assert_eq!(objects[1].allocated["address"], "127.255.0.3");
        // Another cluster's addresses are its own.
        assert_eq!(objects[2].allocated["address"], "127.255.0.1");
        // The file's own object is left as it was written.
        assert!(objects[0].allocated.is_empty());
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
