//! Refresh: reads the live objects that a plan needs, every cluster at once (bounded by
//! `--parallelism`). One request per cluster; the target decides how to read its part.

use crate::object::ObjRef;
use crate::target::{ReadItem, Targets};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The live objects that exist, keyed by identity.
pub type Live = BTreeMap<ObjRef, Value>;

#[derive(Debug, thiserror::Error)]
#[error("cannot read the live objects:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
pub struct RefreshError(pub Vec<String>);

/// Reads every object of `items` that exists. An object asked for twice is read once,
/// as its first request says.
pub async fn read_live(
    targets: &Targets,
    items: impl IntoIterator<Item = ReadItem>,
    parallelism: usize,
) -> Result<Live, RefreshError> {
    let mut by_cluster: BTreeMap<String, BTreeMap<ObjRef, ReadItem>> = BTreeMap::new();
    for item in items {
        by_cluster
            .entry(item.id.cluster.clone())
            .or_default()
            .entry(item.id.clone())
            .or_insert(item);
    }
    let limit = Arc::new(tokio::sync::Semaphore::new(parallelism.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut errors = Vec::new();
    for (cluster, items) in by_cluster {
        let items: Vec<ReadItem> = items.into_values().collect();
        let target = match targets.get(&cluster) {
            Ok(t) => t.clone(),
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        let limit = limit.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            target.read(&items).await.map_err(|e| e.to_string())
        });
    }
    let mut live = Live::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(objs)) => live.extend(objs),
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(format!("a read task failed: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(live)
    } else {
        errors.sort();
        Err(RefreshError(errors))
    }
}
