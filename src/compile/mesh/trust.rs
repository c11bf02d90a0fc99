//! Trust between the members of a cloud (current profile).
//!
//! - Certificates: each member's istiod signs with its plug-in CA (`cacerts`, in
//!   `install`); when members start from different roots, every other member's root is
//!   added to the mesh's CA certificates with multi-root trust on ([`other_roots`]).
//! - Endpoint discovery: a control plane reads the other members' API servers through
//!   remote secrets, in the format `istioctl create-remote-secret` writes. dcm creates the
//!   reader each member needs (a ServiceAccount bound to the reader ClusterRole Istio's
//!   chart installs for the revision, and a token Secret the cluster fills in) and builds
//!   the kubeconfig from what the cluster issued: nobody hands tokens around.

use super::{in_istio_namespace, remote_secret, KubeconfigParts, Out};
use crate::compile::{KnownAfterApply, LiveValue};
use crate::model::{Cluster, LogicalCloud, Model};
use serde_json::json;
use std::collections::BTreeMap;

/// The ServiceAccount other members' istiods read this cluster as.
pub(super) const READER: &str = "dcm-istio-reader";
/// Its long-lived token Secret, which the cluster's token controller fills in.
const READER_TOKEN: &str = "dcm-istio-reader-token";

/// Whether dcm issues a reader in `c`: another member reads it and the file gives no
/// `token_file` of its own.
fn issues_reader(lc: &LogicalCloud, c: &Cluster) -> bool {
    lc.read_by_others(&c.name) && c.access.token.is_none()
}

/// In a member other control planes read: the reader ServiceAccount, its binding to the
/// revision's reader ClusterRole (`istio-reader-clusterrole-<rev>-<namespace>`, from
/// Istio's chart) and its token Secret.
pub(super) fn reader(out: &mut Out<'_>, lc: &LogicalCloud, c: &Cluster) {
    if !issues_reader(lc, c) {
        return;
    }
    let ns = &lc.istio_namespace;
    let labels = json!({ "dcm.io/logical-cloud": lc.name });
    out.push(
        &c.name,
        json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": READER, "namespace": ns, "labels": labels } }),
        vec![],
        BTreeMap::new(),
    );
    out.push(
        &c.name,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": { "name": format!("{READER}-{}-{ns}", lc.revision), "labels": labels },
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                "name": match super::chart_revision(lc) {
                    Some(rev) => format!("istio-reader-clusterrole-{rev}-{ns}"),
                    None => format!("istio-reader-clusterrole-{ns}"),
                }
            },
            "subjects": [{ "kind": "ServiceAccount", "name": READER, "namespace": ns }]
        }),
        vec![in_istio_namespace(
            lc,
            &c.name,
            "",
            "ServiceAccount",
            READER,
        )],
        BTreeMap::new(),
    );
    out.push(
        &c.name,
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
            "metadata": {
                "name": READER_TOKEN, "namespace": ns, "labels": labels,
                "annotations": { "kubernetes.io/service-account.name": READER }
            }
        }),
        vec![in_istio_namespace(
            lc,
            &c.name,
            "",
            "ServiceAccount",
            READER,
        )],
        BTreeMap::new(),
    );
}

/// In a member that runs a control plane: a remote secret for every other member it
/// reads (every other member of a multi-primary cloud, every remote of a primary).
pub(super) fn remote_secrets(
    out: &mut Out<'_>,
    lc: &LogicalCloud,
    holder: &Cluster,
    model: &Model,
) {
    for m in lc
        .clusters
        .iter()
        .filter(|m| **m != holder.name && lc.read_by_others(m))
    {
        let Some(c) = model.clusters.get(m) else {
            continue;
        };
        let mut known_after_apply = Vec::new();
        let mut depends_on = Vec::new();
        let token_secret = in_istio_namespace(lc, m, "", "Secret", READER_TOKEN);
        let mut from_cluster = |k: KnownAfterApply| {
            let placeholder = k.placeholder.clone();
            if let Some((id, _)) = k.source_object() {
                if !depends_on.contains(id) {
                    depends_on.push(id.clone());
                }
            }
            known_after_apply.push(k);
            placeholder
        };
        let server = match &c.access.api_server {
            Some(s) => s.clone(),
            None => from_cluster(KnownAfterApply::api_server(m)),
        };
        let ca_data = match &c.access.ca_cert {
            Some(pem) => crate::object::base64(pem.as_bytes()),
            None => from_cluster(KnownAfterApply::object(
                token_secret.clone(),
                "v1",
                LiveValue::ServiceAccountCa,
            )),
        };
        let token = match &c.access.token {
            Some(t) => t.clone(),
            None => from_cluster(KnownAfterApply::object(
                token_secret.clone(),
                "v1",
                LiveValue::ServiceAccountToken,
            )),
        };
        let labels = json!({ "istio/multiCluster": "true", "dcm.io/logical-cloud": lc.name });
        let parts = KubeconfigParts {
            server,
            ca_data,
            token,
            known_after_apply,
            preferences: false,
        };
        remote_secret(out, lc, &holder.name, m, labels, parts, depends_on);
    }
}

/// The roots of the cloud's other control planes that differ from `c`'s own, in member
/// order: what `c`'s mesh must also trust when members start from different roots.
pub(super) fn other_roots(lc: &LogicalCloud, c: &Cluster, model: &Model) -> Vec<String> {
    let root_of = |c: &Cluster| super::ca_of(c, model).map(|ca| ca.root_cert.trim().to_string());
    let own = root_of(c);
    let mut out: Vec<String> = Vec::new();
    for m in lc.clusters.iter().filter(|m| lc.runs_control_plane(m)) {
        let Some(root) = model.clusters.get(m).and_then(root_of) else {
            continue;
        };
        if Some(&root) != own.as_ref() && !out.contains(&root) {
            out.push(root);
        }
    }
    out
}
