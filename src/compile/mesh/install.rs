//! The control plane of a cloud in one member (current profile): its namespace, the
//! plug-in CA, the Sail Operator's `Istio` resource and the values that reach istiod, and
//! the cloud's workload namespaces labelled with its revision.
//!
//! What differs between a primary, a remote and a multi-primary member is data in
//! [`MemberRole`]; `install = "none"` leaves only the `Istio` resource out.

use super::{ca_of, cacerts, gateways, Out};
use crate::compile::Readiness;
use crate::model::{Cluster, Install, LogicalCloud, Model};
use crate::object::ObjRef;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// What a member is in its cloud.
#[derive(Debug, Clone, Copy)]
enum MemberRole<'a> {
    /// Runs istiod for itself (multi-primary).
    Primary,
    /// Runs istiod for itself and its remotes (primary-remote).
    PrimaryOfRemotes,
    /// Runs no istiod; the primary's serves it.
    Remote { primary: &'a Cluster },
}

impl MemberRole<'_> {
    /// The Sail profile: `remote` installs only what a remote needs (injection webhook,
    /// reader RBAC), pointed at the primary's istiod.
    fn sail_profile(self) -> Option<&'static str> {
        matches!(self, MemberRole::Remote { .. }).then_some("remote")
    }
}

/// The `Istio` resource of a cloud in `cluster` (cluster-scoped, named after the revision).
fn istio_resource(lc: &LogicalCloud, cluster: &str) -> ObjRef {
    ObjRef {
        cluster: cluster.to_string(),
        group: "sailoperator.io".into(),
        kind: "Istio".into(),
        namespace: String::new(),
        name: lc.revision.clone(),
    }
}

/// What an object that needs the cloud's control plane up in `cluster` waits for: its
/// `Istio` resource, when dcm installs it (apply waits until it is Ready).
pub(super) fn after_control_plane(lc: &LogicalCloud, cluster: &str) -> Vec<ObjRef> {
    match lc.install {
        Install::Sail => vec![istio_resource(lc, cluster)],
        Install::Operator | Install::None => Vec::new(),
    }
}

/// The cloud's namespace, CA and control plane in `c`, and its workload namespaces.
pub(super) fn control_plane(out: &mut Out<'_>, lc: &LogicalCloud, c: &Cluster, model: &Model) {
    let role = match lc.primary() {
        None => MemberRole::Primary,
        Some(p) if p == c.name => MemberRole::PrimaryOfRemotes,
        Some(p) => match model.clusters.get(p) {
            Some(primary) => MemberRole::Remote { primary },
            None => return,
        },
    };
    let ns = &lc.istio_namespace;
    let mut namespace = json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": { "name": ns, "labels": {
            "dcm.io/logical-cloud": lc.name,
            "topology.istio.io/network": c.network
        } }
    });
    if let MemberRole::Remote { primary } = role {
        // Istio's primary-remote set-up: the remote's system namespace names the cluster
        // whose istiod manages it, or the remote's pods are never injected.
        namespace["metadata"]["annotations"] =
            json!({ "topology.istio.io/controlPlaneClusters": primary.name });
    }
    out.push(&c.name, namespace, vec![], BTreeMap::new());
    let mut before_install = Vec::new();
    if lc.runs_control_plane(&c.name) && ca_of(c, model).is_some() {
        cacerts(
            out,
            lc,
            c,
            model,
            json!({ "dcm.io/logical-cloud": lc.name }),
        );
        before_install.push(super::in_istio_namespace(
            lc, &c.name, "", "Secret", "cacerts",
        ));
    }
    if lc.install == Install::Sail {
        let (values, known_after_apply, mut deps) = values(lc, c, role, model);
        let mut spec = json!({
            "version": sail_version(model.istio.version),
            "namespace": ns,
            "values": values
        });
        if let Some(p) = role.sail_profile() {
            spec["profile"] = json!(p);
        }
        deps.extend(before_install);
        let o = out.push(
            &c.name,
            json!({
                "apiVersion": "sailoperator.io/v1", "kind": "Istio",
                "metadata": { "name": lc.revision, "labels": { "dcm.io/logical-cloud": lc.name } },
                "spec": spec
            }),
            deps,
            BTreeMap::new(),
        );
        o.known_after_apply = known_after_apply;
        o.ready_when = Some(Readiness::Condition("Ready"));
    }
    for ws in lc.workload_namespaces() {
        out.push(
            &c.name,
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ws, "labels": {
                "istio.io/rev": lc.revision,
                "dcm.io/logical-cloud": lc.name
            } } }),
            after_control_plane(lc, &c.name),
            BTreeMap::new(),
        );
    }
}

/// The releases the Sail Operator dcm targets (its 1.31 chart) installs: exact patch
/// releases, and per minor release a `-latest` alias. Older minors are end-of-life there.
const SAIL_RELEASES: &[(u32, &[u32])] =
    &[(29, &[0, 1, 2, 3, 4, 5, 6]), (30, &[0, 1, 2, 3]), (31, &[])];

/// `spec.version` for an Istio release: the exact release when the operator lists it,
/// else the latest of its minor release (1.31.0 is listed only as `v1.31-latest`).
fn sail_version(v: crate::model::IstioVersion) -> String {
    let listed = SAIL_RELEASES
        .iter()
        .any(|(minor, patches)| v.major == 1 && *minor == v.minor && patches.contains(&v.patch));
    if listed {
        format!("v{v}")
    } else {
        format!("v{}.{}-latest", v.major, v.minor)
    }
}

/// The istiod Helm values of one member, and the values only the primary's cluster knows
/// (a remote's `remotePilotAddress`), with the objects they come from.
fn values(
    lc: &LogicalCloud,
    c: &Cluster,
    role: MemberRole<'_>,
    model: &Model,
) -> (Value, Vec<crate::compile::KnownAfterApply>, Vec<ObjRef>) {
    let mut known_after_apply = Vec::new();
    let mut deps = Vec::new();
    let mut global = json!({
        "meshID": lc.name,
        "multiCluster": { "clusterName": c.name },
        "network": c.network
    });
    if c.cluster_domain != "cluster.local" {
        global["proxy"] = json!({ "clusterDomain": c.cluster_domain });
    }
    let mut values = json!({});
    match role {
        MemberRole::Remote { primary } => {
            // Remotes reach istiod through the primary's east-west gateway (15012 for xDS
            // and certificates, 15017 for the injection webhook).
            let gw = gateways::address(lc, primary);
            global["remotePilotAddress"] = json!(gw.host);
            if let Some(k) = gw.known_after_apply {
                if let Some((id, _)) = k.source_object() {
                    deps.push(id.clone());
                }
                known_after_apply.push(k);
            }
            values["istiodRemote"] = json!({
                "injectionPath": format!("/inject/cluster/{}/net/{}", c.name, c.network)
            });
        }
        MemberRole::PrimaryOfRemotes => {
            global["externalIstiod"] = json!(true);
        }
        MemberRole::Primary => {}
    }
    values["global"] = global;
    if lc.runs_control_plane(&c.name) {
        let mut mesh = json!({
            // Each cloud's istiod sees only the namespaces labelled as the cloud's.
            "discoverySelectors": [{ "matchLabels": { "dcm.io/logical-cloud": lc.name } }],
            // Sidecars answer `<svc>.<ns>.<suffix>` from their DNS proxy.
            "defaultConfig": { "proxyMetadata": { "ISTIO_META_DNS_CAPTURE": "true" } }
        });
        // Addresses for ServiceEntries that name none (dcm gives its own a stable one);
        // the default from 1.25 on, off in 1.24.
        let mut env = json!({ "PILOT_ENABLE_IP_AUTOALLOCATE": "true" });
        let other_roots = super::trust::other_roots(lc, c, model);
        if !other_roots.is_empty() {
            mesh["caCertificates"] = Value::Array(
                other_roots
                    .iter()
                    .map(|pem| json!({ "pem": pem }))
                    .collect(),
            );
            // istiod merges the roots into one trust bundle, which proxies receive only
            // over the agent's xDS channel.
            env["ISTIO_MULTIROOT_MESH"] = json!("true");
            mesh["defaultConfig"]["proxyMetadata"]["PROXY_CONFIG_XDS_AGENT"] = json!("true");
        }
        values["meshConfig"] = mesh;
        values["pilot"] = json!({ "env": env });
    }
    (values, known_after_apply, deps)
}
