//! Targets: where a cluster's live objects are read from and written to.
//!
//! A [`Target`] serves one cluster. The directory target (`dir.rs`) keeps one YAML file
//! per object (GitOps output); a Kubernetes API target will implement the same trait. The
//! rest of dcm sees only this trait, so plan and apply never know which one they talk to.

pub mod dir;

pub use dir::DirTarget;

use crate::model::{Model, TargetSpec};
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
    #[error("cluster `{cluster}` cannot be reached: {message}")]
    Unreachable { cluster: String, message: String },
}

/// One cluster's live objects.
#[async_trait]
pub trait Target: Send + Sync {
    /// Reads the live objects among `ids` (all of this target's cluster). Objects that do
    /// not exist are absent from the result.
    async fn read(&self, ids: &[ObjRef]) -> Result<BTreeMap<ObjRef, Value>, TargetError>;
    /// Creates or replaces one object so that it is exactly `object`.
    async fn apply(&self, id: &ObjRef, object: &Value) -> Result<(), TargetError>;
    /// Deletes one object; deleting an object that is already gone succeeds.
    async fn delete(&self, id: &ObjRef) -> Result<(), TargetError>;
}

/// The target of every cluster in the file.
#[derive(Clone, Default)]
pub struct Targets {
    by_cluster: BTreeMap<String, Arc<dyn Target>>,
}

/// A cluster that no target can be made for.
#[derive(Debug, thiserror::Error)]
pub enum TargetSetupError {
    #[error("cluster `{cluster}` uses kubeconfig context `{context}`, but this build of dcm writes only directory targets; set `dir` for it")]
    KubernetesUnsupported { cluster: String, context: String },
    #[error("the state records objects in cluster `{0}`, which the file no longer defines; add the cluster back to delete them, or forget them with `dcm state rm`")]
    UnknownCluster(String),
}

impl Targets {
    /// Makes the target of each cluster of the model.
    pub fn for_model(model: &Model) -> Result<Targets, TargetSetupError> {
        let mut by_cluster: BTreeMap<String, Arc<dyn Target>> = BTreeMap::new();
        for (name, c) in &model.clusters {
            let t: Arc<dyn Target> = match &c.target {
                TargetSpec::Dir(path) => Arc::new(DirTarget::new(path.clone())),
                TargetSpec::Context(ctx) => {
                    return Err(TargetSetupError::KubernetesUnsupported {
                        cluster: name.clone(),
                        context: ctx.clone(),
                    })
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

    pub fn get(&self, cluster: &str) -> Result<&Arc<dyn Target>, TargetSetupError> {
        self.by_cluster
            .get(cluster)
            .ok_or_else(|| TargetSetupError::UnknownCluster(cluster.to_string()))
    }
}

/// Fields a server sets on its own; they are never part of what dcm wants, so they are
/// removed from live objects before comparing.
pub fn normalize_live(mut object: Value) -> Value {
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
