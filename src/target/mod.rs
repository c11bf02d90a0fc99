//! Targets: where a cluster's live objects are read from and written to.
//!
//! A [`Target`] serves one cluster. The directory target (`dir.rs`) keeps one YAML file
//! per object (GitOps output); the Kubernetes API target (`kube.rs`) talks to a cluster
//! named by a kubeconfig context. The rest of dcm sees only this trait, so plan and apply
//! never know which one they talk to.

pub mod dir;
pub mod kube;
pub mod net;

pub use dir::{DirTarget, SopsSettings};
pub use kube::KubeTarget;
pub use net::NetSettings;

use crate::model::{DirSecrets, Model, TargetSpec};
use crate::object::ObjRef;
use async_trait::async_trait;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why a target could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a valid live object: {message}")]
    InvalidLive { path: String, message: String },
    #[error("{path}: cannot encrypt the Secret with sops: {message}")]
    Sops { path: String, message: String },
    /// A directory target path that passes through a symbolic link, or leaves the
    /// directory: refused before anything is read, written or deleted.
    #[error("{path}: refused: {message}")]
    Unsealed { path: String, message: String },
    #[error("cluster `{cluster}` cannot be reached: {message}")]
    Unreachable { cluster: String, message: String },
    /// The cluster answered, and refused the request (an invalid object, a conflict, a
    /// forbidden write): not a connection problem.
    #[error("cluster `{cluster}` refused it: {message}")]
    Refused { cluster: String, message: String },
}

/// One object a refresh wants to read.
#[derive(Debug, Clone)]
pub struct ReadItem {
    pub id: ObjRef,
    /// The apiVersion to read it at (the one the file or the state uses).
    pub api_version: String,
    /// What the file wants it to be, when it wants it (lets a server-side target tell
    /// the fields dcm sets from the ones the server or others set).
    pub desired: Option<std::sync::Arc<Value>>,
    /// Read the whole object, not only dcm's fields (objects dcm only edits).
    pub whole: bool,
    /// The state holds it (dcm created or imported it, or waits on it): read it even
    /// before it carries dcm's marks. Another application's Secret that merely has a
    /// name the file wants is read by its metadata only.
    pub owned: bool,
}

/// What a server says about a write before it is made (a server-side apply with
/// `dryRun=All`).
#[derive(Debug, Clone, PartialEq)]
pub enum DryRun {
    /// The target cannot tell (a directory accepts anything).
    NotChecked,
    /// The object as the server would store it.
    Accepted(Value),
    /// The server refuses the object (invalid, forbidden, or in a namespace that does
    /// not exist): its message.
    Rejected(String),
    /// Fields other field managers own that the write would change: the server's message.
    Conflicts(String),
    /// The cluster does not serve the kind (yet: its CRD may come in the same apply).
    NotServed,
}

/// What a delete left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The object is gone (the server said so, or it was not there).
    Gone,
    /// The server accepted the delete and still holds the object, or did not say: whoever
    /// needs it gone waits for that.
    Pending,
}

/// One cluster's live objects.
#[async_trait]
pub trait Target: Send + Sync {
    /// Reads the live objects among `items` (all of this target's cluster). Objects that
    /// do not exist are absent from the result.
    async fn read(&self, items: &[ReadItem]) -> Result<BTreeMap<ObjRef, Value>, TargetError>;
    /// Creates or replaces one object so that it is exactly `object`. Returns the UID
    /// the cluster gave it, where there is one (a directory has none). With `force`, the
    /// write takes fields other field managers own; without it, it fails on them.
    async fn apply(
        &self,
        id: &ObjRef,
        object: &Value,
        force: bool,
    ) -> Result<Option<String>, TargetError>;
    /// Deletes one object; deleting an object that is already gone succeeds. Says whether
    /// the object is known to be gone now, or may still be there while a controller
    /// finishes its deletion (finalizers, a Namespace's content).
    async fn delete(&self, id: &ObjRef) -> Result<Deleted, TargetError>;
    /// The sha256 of the bytes that hold `id` as they are now, where the target keeps
    /// bytes of its own (a directory's file); None otherwise. Apply records it after a
    /// write; a delete goes ahead only while it is still what dcm wrote.
    fn written_sha256(&self, id: &ObjRef) -> Result<Option<String>, TargetError> {
        let _ = id;
        Ok(None)
    }
    /// Sends `object` as `apply` would (with `force` as there), without writing it, and
    /// says what the server makes of it.
    async fn dry_run(
        &self,
        id: &ObjRef,
        object: &Value,
        force: bool,
    ) -> Result<DryRun, TargetError> {
        let _ = (id, object, force);
        Ok(DryRun::NotChecked)
    }

    /// Whether [`Target::dry_run`] asks anyone (a directory has no server to ask): a plan
    /// prepares no dry runs for a target that answers them all `NotChecked`.
    fn checks_writes(&self) -> bool {
        false
    }

    /// Every object of `kind` (in `group`, at `api_version`) in every namespace, whoever
    /// made it; none when the kind is not served. For checks against the whole cluster
    /// (addresses other ServiceEntries already use), never for Secrets.
    async fn list_kind(&self, api_version: &str, kind: &str) -> Result<Vec<Value>, TargetError> {
        let _ = (api_version, kind);
        Ok(Vec::new())
    }
    /// The URL other clusters reach this cluster's API server at, when the target knows
    /// it (a kubeconfig context's server).
    fn api_server(&self) -> Option<String> {
        None
    }
    /// What a namespace holds, by identity (every namespaced kind the cluster serves,
    /// read by metadata only), leaving out what the cluster makes and removes by itself:
    /// events, endpoints, objects with an owner (removed with it), the `default`
    /// ServiceAccount and the `kube-root-ca.crt` ConfigMap.
    async fn namespace_contents(&self, namespace: &str) -> Result<Vec<ObjRef>, TargetError> {
        let _ = namespace;
        Ok(Vec::new())
    }
    /// What each of `namespaces` holds (as [`Target::namespace_contents`]), by namespace;
    /// every one of them is a key.
    async fn namespaces_contents(
        &self,
        namespaces: &[String],
    ) -> Result<BTreeMap<String, Vec<ObjRef>>, TargetError> {
        let mut out = BTreeMap::new();
        for ns in namespaces {
            out.insert(ns.clone(), self.namespace_contents(ns).await?);
        }
        Ok(out)
    }
    /// From now on, read dcm's objects by this state's lineage label (`dcm.io/lineage`)
    /// rather than by dcm's `managed-by` label: other dcm projects' objects are then seen
    /// by their metadata only, like any other application's.
    fn scope_to_lineage(&self, lineage: &str) {
        let _ = lineage;
    }
    /// Which cluster this is (its server and kube-system UID), where the target can tell.
    async fn identity(&self) -> Result<Option<crate::state::ClusterIdentity>, TargetError> {
        Ok(None)
    }
    /// Whether a controller acts on what is written here (a live cluster fills in
    /// statuses, addresses and tokens; a directory never does, so nothing is waited for).
    fn has_controllers(&self) -> bool {
        false
    }
}

/// The target of every cluster in the file.
#[derive(Clone, Default)]
pub struct Targets {
    by_cluster: BTreeMap<String, Arc<dyn Target>>,
}

/// A cluster that no target can be made for.
#[derive(Debug, thiserror::Error)]
pub enum TargetSetupError {
    #[error(transparent)]
    Kubeconfig(#[from] kube::KubeconfigError),
    #[error("the state records objects in cluster `{0}`, which the file no longer defines; add the cluster back to delete them, or forget them with `dcm state rm`")]
    UnknownCluster(String),
}

impl Targets {
    /// Makes the target of each cluster of the model. The kubeconfig (`kubeconfig`, else
    /// ~/.kube/config) is read only when a cluster names a context, and every context is
    /// checked before anything is contacted. `secrets_hmac_key` (the state's) marks and
    /// recognises the Secrets a directory target encrypts with sops; `net` bounds the
    /// requests to API servers.
    pub fn for_model(
        model: &Model,
        kubeconfig: Option<&std::path::Path>,
        secrets_hmac_key: Option<&[u8]>,
        net: NetSettings,
    ) -> Result<Targets, TargetSetupError> {
        let mut by_cluster: BTreeMap<String, Arc<dyn Target>> = BTreeMap::new();
        let mut config: Option<Option<(::kube::config::Kubeconfig, String)>> = None;
        for (name, c) in &model.clusters {
            let t: Arc<dyn Target> = match &c.target {
                TargetSpec::Dir {
                    path,
                    secrets: Some(DirSecrets::Sops { age_recipients }),
                } => Arc::new(DirTarget::with_sops(
                    path.clone(),
                    SopsSettings {
                        age_recipients: age_recipients.clone(),
                        hmac_key: secrets_hmac_key.map(<[u8]>::to_vec),
                    },
                )),
                TargetSpec::Dir { path, .. } => Arc::new(DirTarget::new(path.clone())),
                TargetSpec::Context(ctx) => {
                    if config.is_none() {
                        let paths = kube::kubeconfig_paths(kubeconfig);
                        config = Some(kube::read_kubeconfig(&paths)?);
                    }
                    let Some(Some((k, shown))) = &config else {
                        return Err(kube::KubeconfigError::Missing {
                            cluster: name.clone(),
                            context: ctx.clone(),
                        }
                        .into());
                    };
                    kube::check_context(k, shown, name, ctx)?;
                    Arc::new(KubeTarget::new(name, ctx, k.clone()).with_net(net))
                }
            };
            by_cluster.insert(name.clone(), t);
        }
        Ok(Targets { by_cluster })
    }

    /// Replaces or adds the target of one cluster (tests put fakes in this way).
    pub fn insert(&mut self, cluster: &str, target: Arc<dyn Target>) {
        self.by_cluster.insert(cluster.to_string(), target);
    }

    /// See `Target::scope_to_lineage`.
    pub fn scope_to_lineage(&self, lineage: &str) {
        for t in self.by_cluster.values() {
            t.scope_to_lineage(lineage);
        }
    }

    /// Every cluster's identity, where its target can tell: one request per cluster, all
    /// at once; every cluster that cannot tell is reported.
    pub async fn identities(
        &self,
    ) -> Result<BTreeMap<String, crate::state::ClusterIdentity>, Vec<TargetError>> {
        let mut tasks = tokio::task::JoinSet::new();
        for (name, t) in &self.by_cluster {
            let (name, t) = (name.clone(), t.clone());
            tasks.spawn(async move { (name, t.identity().await) });
        }
        let mut out = BTreeMap::new();
        let mut errors = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((name, Ok(Some(id)))) => {
                    out.insert(name, id);
                }
                Ok((_, Ok(None))) => {}
                Ok((_, Err(e))) => errors.push(e),
                Err(e) => errors.push(TargetError::Unreachable {
                    cluster: "?".into(),
                    message: format!("the task reading the cluster's identity failed: {e}"),
                }),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            errors.sort_by_key(|e| e.to_string());
            Err(errors)
        }
    }

    /// The API server URL of `cluster`, when its target knows it.
    pub fn api_server(&self, cluster: &str) -> Option<String> {
        self.by_cluster.get(cluster)?.api_server()
    }

    pub fn get(&self, cluster: &str) -> Result<&Arc<dyn Target>, TargetSetupError> {
        self.by_cluster
            .get(cluster)
            .ok_or_else(|| TargetSetupError::UnknownCluster(cluster.to_string()))
    }
}

/// Whether an object in a namespace is one the cluster makes and removes by itself (see
/// `Target::namespace_contents`).
pub fn made_by_the_cluster(group: &str, kind: &str, name: &str, metadata: &Value) -> bool {
    let owned = metadata
        .get("ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|o| !o.is_empty());
    owned
        || matches!(kind, "Event" | "Endpoints" | "EndpointSlice")
        || (group.is_empty() && kind == "ServiceAccount" && name == "default")
        || (group.is_empty() && kind == "ConfigMap" && name == "kube-root-ca.crt")
}

/// Fields a server sets on its own, and dcm's ownership marks; they are never part of
/// what the file wants, so they are removed from live objects before comparing.
pub fn normalize_live(mut object: Value) -> Value {
    crate::ownership::strip(&mut object);
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in [
                "uid",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "managedFields",
                "selfLink",
            ] {
                meta.remove(f);
            }
            if let Some(ann) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                ann.remove("kubectl.kubernetes.io/last-applied-configuration");
                if ann.is_empty() {
                    meta.remove("annotations");
                }
            }
        }
    }
    object
}

/// Runs `f`, which waits on the disk (a write, an fsync), without holding up the async
/// runtime: on a multi-threaded runtime its thread first hands its other tasks to
/// another, so the writes of many objects are in flight together (and the file system
/// commits their fsyncs together) instead of two at a time, one per runtime thread.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
