//! The Kubernetes API target: one cluster reached through a kubeconfig context, with the
//! `kube` crate.
//!
//! - Writes are server-side apply with field manager `dcm`, without `force` unless the
//!   user passes `--force-conflicts` (or dcm edits another's object, such as CoreDNS's
//!   Corefile): a field another manager owns is a conflict, never taken silently. Plans
//!   send each write once as a dry run first (`dry_run`).
//! - dcm's own objects are listed by its labels; others are seen by their metadata, and
//!   another application's Secret is never read.
//! - What dcm compares is its own view of a live object: the fields its field manager
//!   owns, so fields set by the server (defaults, ClusterIPs) or by other controllers are
//!   not differences. An object dcm has not applied yet is compared on the fields the file
//!   sets, since applying sets exactly those.
//! - Requests that fail for a passing reason (429, 5xx, a dropped connection) are retried
//!   with backoff within a budget, and every request has a time limit (`net.rs`); every
//!   operation is idempotent, so a retry is safe.

use super::net::{describe, retry, NetSettings, RetryError};
use super::{Deleted, DryRun, ReadItem, Target, TargetError};
use crate::object::ObjRef;
use crate::ownership::Marks;
use async_trait::async_trait;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersion};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OnceCell};

/// dcm's field manager name on every cluster.
pub const FIELD_MANAGER: &str = "dcm";

/// Objects per page of a LIST. Large, so that reading dcm's objects of a kind is one
/// request up to this many (requests stay independent of the number of objects), and
/// bounded, so that no one answer holds a whole cluster.
const PAGE: u32 = 5000;

/// Why a kubeconfig cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("cannot read kubeconfig {path}: {message}")]
    Read { path: String, message: String },
    #[error("no kubeconfig: set --kubeconfig or KUBECONFIG, or create ~/.kube/config (needed by cluster `{cluster}`, which uses context `{context}`)")]
    Missing { cluster: String, context: String },
    #[error("cluster `{cluster}`: kubeconfig context `{context}` does not exist in {path}{hint}")]
    NoContext {
        cluster: String,
        context: String,
        path: String,
        hint: String,
    },
}

/// The kubeconfig files to use: the flag's (or KUBECONFIG's) list, else ~/.kube/config.
pub fn kubeconfig_paths(flag: Option<&Path>) -> Vec<PathBuf> {
    match flag {
        Some(p) => std::env::split_paths(p.as_os_str())
            .filter(|p| !p.as_os_str().is_empty())
            .collect(),
        None => std::env::var_os("HOME")
            .map(|h| vec![PathBuf::from(h).join(".kube").join("config")])
            .unwrap_or_default(),
    }
}

/// Reads and merges kubeconfig files (the first file's entries win, as kubectl does).
pub fn read_kubeconfig(paths: &[PathBuf]) -> Result<Option<(Kubeconfig, String)>, KubeconfigError> {
    let mut merged: Option<Kubeconfig> = None;
    let mut shown = Vec::new();
    for p in paths {
        if !p.exists() {
            continue;
        }
        let k = Kubeconfig::read_from(p).map_err(|e| KubeconfigError::Read {
            path: p.display().to_string(),
            message: e.to_string(),
        })?;
        shown.push(p.display().to_string());
        merged = Some(match merged {
            None => k,
            Some(m) => m.merge(k).map_err(|e| KubeconfigError::Read {
                path: p.display().to_string(),
                message: e.to_string(),
            })?,
        });
    }
    Ok(merged.map(|k| (k, shown.join(":"))))
}

/// Checks that `context` exists, before anything is contacted.
pub fn check_context(
    kubeconfig: &Kubeconfig,
    shown: &str,
    cluster: &str,
    context: &str,
) -> Result<(), KubeconfigError> {
    let names: Vec<&str> = kubeconfig
        .contexts
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    if names.contains(&context) {
        return Ok(());
    }
    let hint = crate::diag::did_you_mean(context, names.iter().copied())
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_else(|| {
            if names.is_empty() {
                String::new()
            } else {
                format!("; it has: {}", names.join(", "))
            }
        });
    Err(KubeconfigError::NoContext {
        cluster: cluster.to_string(),
        context: context.to_string(),
        path: shown.to_string(),
        hint,
    })
}

/// A client for `context` of `kubeconfig`, with dcm's time limits (retries are dcm's own,
/// `net::retry`). Must be called within a tokio runtime.
pub async fn make_client(
    kubeconfig: &Kubeconfig,
    context: &str,
    net: &NetSettings,
) -> Result<kube::Client, String> {
    let options = KubeConfigOptions {
        context: Some(context.to_string()),
        ..Default::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig.clone(), &options)
        .await
        .map_err(|e| format!("kubeconfig context `{context}`: {e}"))?;
    config.connect_timeout = Some(net.connect_timeout);
    // Each request is bounded as a whole by `retry`; these only catch a connection that
    // stalls, a little later.
    config.read_timeout = Some(net.request_timeout + Duration::from_secs(1));
    config.reset_reader_on_write = true;
    // dcm retries on its own, within its budget (`net::retry`).
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

/// A cluster reached through the Kubernetes API.
pub struct KubeTarget {
    cluster: String,
    context: String,
    kubeconfig: Kubeconfig,
    /// Time limits and the retry budget.
    net: NetSettings,
    client: OnceCell<kube::Client>,
    /// Resolved kinds by apiVersion and kind; a kind the cluster does not serve is looked
    /// up again next time (a CRD applied meanwhile may have made it served).
    resources: Mutex<BTreeMap<(String, String), (ApiResource, bool)>>,
    /// One discovery at a time per apiVersion (see [`Gate`]).
    resource_gates: Gates,
    /// Preferred-version resources by group and kind, for deletes (which know no version).
    preferred: Mutex<BTreeMap<(String, String), (ApiResource, bool)>>,
    /// One discovery at a time per group (see [`Gate`]).
    preferred_gates: Gates,
    /// The state's lineage, once known: dcm's own objects are listed by it.
    lineage: std::sync::OnceLock<String>,
    /// Every namespaced kind the cluster lists, from one discovery per run (for what a
    /// namespace holds).
    /// (That discovery's groups by name, for deletes too.)
    namespaced_kinds: OnceCell<(BTreeMap<String, GroupKinds>, Vec<ApiResource>)>,
}

impl KubeTarget {
    pub fn new(cluster: &str, context: &str, kubeconfig: Kubeconfig) -> KubeTarget {
        KubeTarget {
            cluster: cluster.to_string(),
            context: context.to_string(),
            kubeconfig,
            net: NetSettings::default(),
            client: OnceCell::new(),
            resources: Mutex::new(BTreeMap::new()),
            resource_gates: Gates::default(),
            preferred: Mutex::new(BTreeMap::new()),
            preferred_gates: Gates::default(),
            lineage: std::sync::OnceLock::new(),
            namespaced_kinds: OnceCell::new(),
        }
    }

    /// The same target with other time limits and retry budget.
    pub fn with_net(mut self, net: NetSettings) -> KubeTarget {
        self.net = net;
        self
    }

    /// An error that names the cluster and (at the end) its API server.
    fn unreachable(&self, message: impl std::fmt::Display) -> TargetError {
        let message = match self.api_server() {
            Some(url) => format!("{message} (API server {url})"),
            None => message.to_string(),
        };
        TargetError::Unreachable {
            cluster: self.cluster.clone(),
            message,
        }
    }

    /// An error of a request about one object: refused when the server answered with a
    /// verdict on the object, unreachable otherwise.
    fn failed(&self, doing: String, e: &RetryError) -> TargetError {
        let message = format!("{doing}: {}", describe(e));
        let verdict = matches!(status_code(e), Some(400..=499) if status_code(e) != Some(429))
            || e.kube().is_some_and(super::net::typed_patch_failure);
        if verdict {
            TargetError::Refused {
                cluster: self.cluster.clone(),
                message,
            }
        } else {
            self.unreachable(message)
        }
    }

    async fn client(&self) -> Result<&kube::Client, TargetError> {
        self.client
            .get_or_try_init(|| async {
                make_client(&self.kubeconfig, &self.context, &self.net)
                    .await
                    .map_err(|e| self.unreachable(e))
            })
            .await
    }

    /// The API resource of `kind` at `api_version`, and whether it is namespaced; None when
    /// the cluster does not serve it.
    async fn resource(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<Option<(ApiResource, bool)>, TargetError> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(r) = self.resources.lock().await.get(&key) {
            return Ok(Some(r.clone()));
        }
        // Many changes of a kind start at once: one of them discovers, the others wait for
        // its answer instead of each sending the same discovery.
        let gate = self.resource_gates.gate(api_version).await;
        let Some(turn) = gate.turn(Fresh::StartedAfter).await else {
            return Ok(self.resources.lock().await.get(&key).cloned());
        };
        if let Some(r) = self.resources.lock().await.get(&key) {
            return Ok(Some(r.clone()));
        }
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        // One discovery request per apiVersion gives every kind it serves.
        let gv = GroupVersion::gv(group, version);
        let client = self.client().await?.clone();
        let found = retry(&self.net, || {
            let client = client.clone();
            let gv = gv.clone();
            async move { kube::discovery::pinned_group(&client, &gv).await }
        })
        .await;
        let served = match found {
            Ok(g) => g.versioned_resources(version),
            Err(e) if not_served(&e) => {
                turn.answered();
                return Ok(None);
            }
            Err(e) => return Err(self.unreachable(describe(&e))),
        };
        let mut cache = self.resources.lock().await;
        for (ar, caps) in served {
            let namespaced = caps.scope == kube::discovery::Scope::Namespaced;
            cache
                .entry((api_version.to_string(), ar.kind.clone()))
                .or_insert((ar, namespaced));
        }
        turn.answered();
        Ok(cache.get(&key).cloned())
    }

    /// The resource of `kind` in `group` at the group's preferred version (any served
    /// version names the same object); None when the cluster does not serve it.
    async fn preferred_resource(
        &self,
        group: &str,
        kind: &str,
    ) -> Result<Option<(ApiResource, bool)>, TargetError> {
        let key = (group.to_string(), kind.to_string());
        if let Some(r) = self.preferred.lock().await.get(&key) {
            return Ok(Some(r.clone()));
        }
        // What a whole discovery of the cluster (for what namespaces hold) found, when one
        // was made in this run: no request.
        if let Some(Some(kinds)) = self
            .namespaced_kinds
            .get()
            .map(|(all, _)| all.get(group).cloned())
        {
            if kinds.contains_key(kind) {
                let mut cache = self.preferred.lock().await;
                for (k, r) in kinds {
                    cache.entry((group.to_string(), k)).or_insert(r);
                }
                return Ok(cache.get(&key).cloned());
            }
        }
        let gate = self.preferred_gates.gate(group).await;
        let Some(turn) = gate.turn(Fresh::AnsweredMeanwhile).await else {
            return Ok(self.preferred.lock().await.get(&key).cloned());
        };
        if let Some(r) = self.preferred.lock().await.get(&key) {
            return Ok(Some(r.clone()));
        }
        let client = self.client().await?.clone();
        let found = retry(&self.net, || {
            let client = client.clone();
            let group = key.0.clone();
            async move { kube::discovery::group(&client, &group).await }
        })
        .await;
        let api_group = match found {
            Ok(g) => g,
            Err(e) if not_served(&e) => {
                turn.answered();
                return Ok(None);
            }
            Err(e) => return Err(self.unreachable(describe(&e))),
        };
        // Every kind of the group, so that those who waited for this discovery find theirs.
        let kinds = group_kinds(&api_group);
        let mut cache = self.preferred.lock().await;
        for (k, r) in kinds {
            cache.insert((group.to_string(), k), r);
        }
        turn.answered();
        Ok(cache.get(&key).cloned())
    }

    fn api(
        &self,
        client: &kube::Client,
        ar: &ApiResource,
        namespaced: bool,
        ns: &str,
    ) -> Api<DynamicObject> {
        if namespaced {
            Api::namespaced_with(client.clone(), ns, ar)
        } else {
            Api::all_with(client.clone(), ar)
        }
    }

    /// Every object `api` lists (with `selector`, only those it matches), page by page.
    async fn list_all(
        &self,
        api: &Api<DynamicObject>,
        selector: Option<&str>,
    ) -> Result<Vec<Value>, TargetError> {
        self.list_all_raw(api, selector).await.map_err(|e| match e {
            ListError::Request(e) => self.unreachable(describe(&e)),
            ListError::Decode(e) => e,
        })
    }

    /// [`KubeTarget::list_all`], keeping the server's answer to a refused request.
    async fn list_all_raw(
        &self,
        api: &Api<DynamicObject>,
        selector: Option<&str>,
    ) -> Result<Vec<Value>, ListError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut lp = ListParams::default().limit(PAGE);
            if let Some(s) = selector {
                lp = lp.labels(s);
            }
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = retry(&self.net, || {
                let api = api.clone();
                let lp = lp.clone();
                async move { api.list(&lp).await }
            })
            .await
            .map_err(ListError::Request)?;
            for item in page.items {
                out.push(
                    serde_json::to_value(&item)
                        .map_err(|e| ListError::Decode(self.unreachable(e)))?,
                );
            }
            match page.metadata.continue_ {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    /// The metadata of every object `api` lists, by name (a PartialObjectMetadataList:
    /// no object's content, so no Secret's data, crosses the wire).
    async fn list_metadata(
        &self,
        api: &Api<DynamicObject>,
    ) -> Result<BTreeMap<String, Value>, TargetError> {
        let items = self.list_metadata_raw(api).await.map_err(|e| match e {
            ListError::Request(e) => self.unreachable(describe(&e)),
            ListError::Decode(e) => e,
        })?;
        Ok(items
            .into_iter()
            .map(|(_, name, meta)| (name, meta))
            .collect())
    }

    /// The metadata of every object `api` lists, as (namespace, name, metadata), keeping
    /// the server's answer to a refused request.
    async fn list_metadata_raw(
        &self,
        api: &Api<DynamicObject>,
    ) -> Result<Vec<(String, String, Value)>, ListError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut lp = ListParams::default().limit(PAGE);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = retry(&self.net, || {
                let api = api.clone();
                let lp = lp.clone();
                async move { api.list_metadata(&lp).await }
            })
            .await
            .map_err(ListError::Request)?;
            for item in page.items {
                let meta = serde_json::to_value(&item.metadata)
                    .map_err(|e| ListError::Decode(self.unreachable(e)))?;
                if let Some(name) = item.metadata.name {
                    out.push((item.metadata.namespace.unwrap_or_default(), name, meta));
                }
            }
            match page.metadata.continue_ {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    /// The metadata of the objects of kind `ar` in `namespaces`, as (namespace, name,
    /// metadata): one LIST over the whole cluster when they are many (namespace by
    /// namespace when that is forbidden), else one per namespace.
    async fn kind_in_namespaces<'a>(
        &self,
        client: &kube::Client,
        ar: &'a ApiResource,
        namespaces: Arc<std::collections::BTreeSet<String>>,
    ) -> Result<(&'a ApiResource, Vec<(String, String, Value)>), TargetError> {
        let fail = |e: ListError| match e {
            ListError::Request(e) => self.unreachable(describe(&e)),
            ListError::Decode(e) => e,
        };
        if namespaces.len() > NAMESPACES_LISTED_ONE_BY_ONE {
            let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
            match self.list_metadata_raw(&api).await {
                Ok(items) => {
                    let found = items
                        .into_iter()
                        .filter(|(ns, _, _)| namespaces.contains(ns))
                        .collect();
                    return Ok((ar, found));
                }
                Err(ListError::Request(e)) if status_code(&e) == Some(403) => {}
                Err(e) => return Err(fail(e)),
            }
        }
        let mut found = Vec::new();
        for ns in namespaces.iter() {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
            let items = self.list_metadata_raw(&api).await.map_err(fail)?;
            found.extend(
                items
                    .into_iter()
                    .map(|(_, name, meta)| (ns.clone(), name, meta)),
            );
        }
        Ok((ar, found))
    }

    /// One object, whole; None when it does not exist.
    async fn get(
        &self,
        api: &Api<DynamicObject>,
        id: &ObjRef,
    ) -> Result<Option<Value>, TargetError> {
        let found = retry(&self.net, || {
            let api = api.clone();
            let name = id.name.clone();
            async move { api.get_opt(&name).await }
        })
        .await
        .map_err(|e| self.unreachable(describe(&e)))?;
        found
            .map(|o| serde_json::to_value(&o).map_err(|e| self.unreachable(e)))
            .transpose()
    }

    /// dcm's objects (by `managed`, its label selector) of kind `ar` in every namespace,
    /// keyed by (namespace, name); None when the user may not list the whole cluster
    /// (403), so each namespace is listed on its own.
    async fn list_everywhere(
        &self,
        ar: &ApiResource,
        managed: &str,
    ) -> Result<Option<BTreeMap<(String, String), Value>>, TargetError> {
        let client = self.client().await?;
        let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
        match self.list_all_raw(&api, Some(managed)).await {
            Ok(objects) => Ok(Some(
                objects
                    .into_iter()
                    .filter_map(|o| {
                        let ns = o.pointer("/metadata/namespace")?.as_str()?.to_string();
                        let name = o.pointer("/metadata/name")?.as_str()?.to_string();
                        Some(((ns, name), o))
                    })
                    .collect(),
            )),
            Err(ListError::Request(e)) if status_code(&e) == Some(403) => Ok(None),
            Err(ListError::Request(e)) => Err(self.unreachable(describe(&e))),
            Err(ListError::Decode(e)) => Err(e),
        }
    }

    /// The live objects among `wanted` (all of kind `kind` in namespace `ns`): dcm's from
    /// `whole_cluster` when it was listed there, else from one labelled LIST here; the
    /// others from one metadata-only LIST (and a GET each only for those dcm owns or
    /// edits, or that are not Secrets).
    #[allow(clippy::too_many_arguments)]
    async fn read_group(
        &self,
        (api_version, kind): (String, String),
        (ar, namespaced): (ApiResource, bool),
        ns: String,
        wanted: Vec<&ReadItem>,
        managed: &str,
        whole_cluster: Option<Arc<BTreeMap<(String, String), Value>>>,
    ) -> Result<Vec<(ObjRef, Value)>, TargetError> {
        let client = self.client().await?;
        let api = self.api(client, &ar, namespaced, &ns);
        let secret = ar.group.is_empty() && kind == "Secret";
        // One object that may be read whole (a wait polling it, a value known after apply):
        // one GET, rather than a LIST of its kind.
        if let [item] = wanted[..] {
            if whole_cluster.is_none() && (item.whole || item.owned || !secret) {
                let Some(live) = self.get(&api, &item.id).await? else {
                    return Ok(Vec::new());
                };
                return Ok(vec![(
                    item.id.clone(),
                    as_read(item, live, &api_version, &kind),
                )]);
            }
        }
        let mut by_name: BTreeMap<String, Value> = match &whole_cluster {
            Some(all) => wanted
                .iter()
                .filter_map(|i| {
                    let o = all.get(&(ns.clone(), i.id.name.clone()))?;
                    Some((i.id.name.clone(), o.clone()))
                })
                .collect(),
            None => self
                .list_all(&api, Some(managed))
                .await?
                .into_iter()
                .filter_map(|o| Some((o.pointer("/metadata/name")?.as_str()?.to_string(), o)))
                .collect(),
        };
        let missing: Vec<&&ReadItem> = wanted
            .iter()
            .filter(|i| !by_name.contains_key(&i.id.name))
            .collect();
        if !missing.is_empty() {
            let metadata = self.list_metadata(&api).await?;
            for item in missing {
                let Some(meta) = metadata.get(&item.id.name) else {
                    continue;
                };
                let object = if item.whole || item.owned || !secret {
                    self.get(&api, &item.id).await?
                } else {
                    Some(serde_json::json!({ "metadata": meta }))
                };
                if let Some(o) = object {
                    by_name.insert(item.id.name.clone(), o);
                }
            }
        }
        let mut out = Vec::new();
        for item in wanted {
            if let Some(live) = by_name.remove(&item.id.name) {
                out.push((item.id.clone(), as_read(item, live, &api_version, &kind)));
            }
        }
        Ok(out)
    }
}

/// A live object as a read of `item` returns it: typed (a LIST's items lack their
/// apiVersion and kind), whole or dcm's view of it as the item asks.
fn as_read(item: &ReadItem, mut live: Value, api_version: &str, kind: &str) -> Value {
    if live.get("apiVersion").is_none() {
        live["apiVersion"] = Value::String(api_version.to_string());
    }
    if live.get("kind").is_none() {
        live["kind"] = Value::String(kind.to_string());
    }
    if item.whole {
        live
    } else {
        dcm_view(&live, item.desired.as_deref())
    }
}

/// Every kind `api_group` serves, with its resource at the group's preferred version, or,
/// for a kind served only at other versions, at the first of them that serves it (a kind
/// may be served only at a version that is not the group's preferred one: EnvoyFilter,
/// v1alpha3 only); and whether it is namespaced.
fn group_kinds(api_group: &kube::discovery::ApiGroup) -> GroupKinds {
    let mut kinds = GroupKinds::new();
    let versions: Vec<String> = api_group.versions().map(str::to_string).collect();
    for (ar, caps) in api_group.recommended_resources().into_iter().chain(
        versions
            .iter()
            .flat_map(|v| api_group.versioned_resources(v)),
    ) {
        let namespaced = caps.scope == kube::discovery::Scope::Namespaced;
        kinds.entry(ar.kind.clone()).or_insert((ar, namespaced));
    }
    kinds
}

/// A group's kinds: their resources, and whether they are namespaced.
type GroupKinds = BTreeMap<String, (ApiResource, bool)>;

/// Discoveries by key (an apiVersion, a group), one at a time each.
#[derive(Default)]
struct Gates(Mutex<BTreeMap<String, Arc<Gate>>>);

impl Gates {
    async fn gate(&self, key: &str) -> Arc<Gate> {
        self.0
            .lock()
            .await
            .entry(key.to_string())
            .or_default()
            .clone()
    }
}

/// Lets one discovery of a key run at a time, and lets those who waited for it use its
/// answer (now in the cache, or that the kind is not served) rather than each asking the
/// server again. A discovery that fails lets the next in line try on its own.
#[derive(Default)]
struct Gate {
    running: Mutex<()>,
    /// Discoveries started so far; each is numbered by this count when it starts.
    started: std::sync::atomic::AtomicU64,
    /// The number of the last discovery that got an answer.
    answered: std::sync::atomic::AtomicU64,
}

/// Which discovery's answer a caller that waited may use.
#[derive(Clone, Copy)]
enum Fresh {
    /// Only one that started after the caller came: a kind may have become served just
    /// before (a CRD applied in the same run), and one that started earlier would not
    /// know it.
    StartedAfter,
    /// Any that answered while the caller waited (for deletes: an object of a kind that
    /// is not yet served cannot exist).
    AnsweredMeanwhile,
}

/// The right to discover, for as long as it is held.
struct Turn<'a> {
    gate: &'a Gate,
    number: u64,
    _running: tokio::sync::MutexGuard<'a, ()>,
}

impl Gate {
    /// The turn to discover; None when a discovery the caller may use (`fresh`) answered
    /// while it waited for its turn.
    async fn turn(&self, fresh: Fresh) -> Option<Turn<'_>> {
        use std::sync::atomic::Ordering;
        let came = match fresh {
            Fresh::StartedAfter => self.started.load(Ordering::SeqCst),
            Fresh::AnsweredMeanwhile => self.answered.load(Ordering::SeqCst),
        };
        let running = self.running.lock().await;
        if self.answered.load(Ordering::SeqCst) > came {
            return None;
        }
        let number = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        Some(Turn {
            gate: self,
            number,
            _running: running,
        })
    }
}

impl Turn<'_> {
    /// The discovery got an answer, now in the cache: those waiting use it.
    fn answered(self) {
        self.gate
            .answered
            .fetch_max(self.number, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Why a LIST failed: the request (with the server's answer), or an object in the answer
/// that could not be read.
enum ListError {
    Request(RetryError),
    Decode(TargetError),
}

/// Up to this many namespaces, a kind is listed namespace by namespace (what a user
/// limited to those namespaces may do); beyond, once over the whole cluster.
const NAMESPACES_LISTED_ONE_BY_ONE: usize = 4;

#[async_trait]
impl Target for KubeTarget {
    /// Per (apiVersion, kind, namespace): one LIST of the objects carrying dcm's
    /// `managed-by` label. Wanted objects not among them cost one metadata-only LIST
    /// (names, labels, UIDs: never Secret data), and a GET each only for those dcm owns
    /// or edits, or that are not Secrets (a refusal shows what the file would change).
    /// So other applications' Secrets are never read.
    async fn read(&self, items: &[ReadItem]) -> Result<BTreeMap<ObjRef, Value>, TargetError> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        // (apiVersion, kind) → namespace → the items wanted there.
        type ByNamespace<'a> = BTreeMap<String, Vec<&'a ReadItem>>;
        let mut kinds: BTreeMap<(String, String), ByNamespace<'_>> = BTreeMap::new();
        for item in items {
            kinds
                .entry((item.api_version.clone(), item.id.kind.clone()))
                .or_default()
                .entry(item.id.namespace.clone())
                .or_default()
                .push(item);
        }
        let managed = match self.lineage.get() {
            Some(l) => format!("{}={l}", crate::ownership::LINEAGE_LABEL),
            None => format!(
                "{}={}",
                crate::ownership::MANAGED_BY_LABEL,
                crate::ownership::MANAGED_BY
            ),
        };
        // Discovery first (once per kind, cached), then the reads, several at a time.
        let mut reads = Vec::new();
        for ((api_version, kind), by_ns) in kinds {
            let Some((ar, namespaced)) = self.resource(&api_version, &kind).await? else {
                continue; // not served: none of them can exist
            };
            // Spread over many namespaces, dcm's objects of a kind are listed once over
            // the whole cluster rather than once per namespace.
            let listed = if namespaced && by_ns.len() > NAMESPACES_LISTED_ONE_BY_ONE {
                self.list_everywhere(&ar, &managed).await?
            } else {
                None
            };
            let whole_cluster = listed.map(Arc::new);
            for (ns, wanted) in by_ns {
                reads.push(self.read_group(
                    (api_version.clone(), kind.clone()),
                    (ar.clone(), namespaced),
                    ns,
                    wanted,
                    &managed,
                    whole_cluster.clone(),
                ));
            }
        }
        let parts: Vec<Vec<(ObjRef, Value)>> = stream::iter(reads)
            .buffer_unordered(self.net.reads_in_flight.max(1))
            .try_collect()
            .await?;
        Ok(parts.into_iter().flatten().collect())
    }

    async fn namespace_contents(&self, namespace: &str) -> Result<Vec<ObjRef>, TargetError> {
        let mut all = self.namespaces_contents(&[namespace.to_string()]).await?;
        Ok(all.remove(namespace).unwrap_or_default())
    }

    /// One metadata-only LIST per namespaced kind the cluster serves, all kinds at once
    /// (up to the reads in flight): over the whole cluster when the namespaces are many,
    /// else namespace by namespace (what a user limited to them may do; a 403 over the
    /// whole cluster falls back to that too). Requests grow with kinds, not namespaces.
    async fn namespaces_contents(
        &self,
        namespaces: &[String],
    ) -> Result<BTreeMap<String, Vec<ObjRef>>, TargetError> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        let client = self.client().await?.clone();
        let kinds = self
            .namespaced_kinds
            .get_or_try_init(|| async {
                let discovery = retry(&self.net, || {
                    let client = client.clone();
                    async move { kube::Discovery::new(client).run().await }
                })
                .await
                .map_err(|e| self.unreachable(describe(&e)))?;
                let mut kinds = Vec::new();
                let mut groups = BTreeMap::new();
                for group in discovery.groups() {
                    for (ar, caps) in group.recommended_resources() {
                        if caps.scope == kube::discovery::Scope::Namespaced
                            && caps.supports_operation(kube::discovery::verbs::LIST)
                        {
                            kinds.push(ar);
                        }
                    }
                    groups.insert(group.name().to_string(), group_kinds(group));
                }
                Ok::<_, TargetError>((groups, kinds))
            })
            .await?;
        let kinds = &kinds.1;
        let wanted: Arc<std::collections::BTreeSet<String>> =
            Arc::new(namespaces.iter().cloned().collect());
        let mut lists = Vec::new();
        for ar in kinds {
            lists.push(self.kind_in_namespaces(&client, ar, wanted.clone()));
        }
        let listed: Vec<(&ApiResource, Vec<(String, String, Value)>)> = stream::iter(lists)
            .buffer_unordered(self.net.reads_in_flight.max(1))
            .try_collect()
            .await?;
        let mut out: BTreeMap<String, Vec<ObjRef>> = namespaces
            .iter()
            .map(|ns| (ns.clone(), Vec::new()))
            .collect();
        for (ar, items) in listed {
            for (namespace, name, meta) in items {
                if super::made_by_the_cluster(&ar.group, &ar.kind, &name, &meta) {
                    continue;
                }
                out.entry(namespace.clone()).or_default().push(ObjRef {
                    cluster: self.cluster.clone(),
                    group: ar.group.clone(),
                    kind: ar.kind.clone(),
                    namespace,
                    name,
                });
            }
        }
        for objects in out.values_mut() {
            objects.sort();
            objects.dedup();
        }
        Ok(out)
    }

    fn scope_to_lineage(&self, lineage: &str) {
        let _ = self.lineage.set(lineage.to_string());
    }

    async fn identity(&self) -> Result<Option<crate::state::ClusterIdentity>, TargetError> {
        let Some(server) = self.api_server() else {
            return Ok(None);
        };
        let client = self.client().await?;
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let found = retry(&self.net, || {
            let api = namespaces.clone();
            async move { api.get_opt("kube-system").await }
        })
        .await
        .map_err(|e| self.unreachable(describe(&e)))?;
        Ok(found.and_then(|ns| ns.metadata.uid).map(|kube_system_uid| {
            crate::state::ClusterIdentity {
                server,
                kube_system_uid,
            }
        }))
    }

    async fn list_kind(&self, api_version: &str, kind: &str) -> Result<Vec<Value>, TargetError> {
        let Some((ar, _)) = self.resource(api_version, kind).await? else {
            return Ok(Vec::new());
        };
        let client = self.client().await?;
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        self.list_all(&api, None).await
    }

    async fn apply(
        &self,
        id: &ObjRef,
        object: &Value,
        force: bool,
    ) -> Result<Option<String>, TargetError> {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some((ar, namespaced)) = self.resource(api_version, &id.kind).await? else {
            return Err(self.unreachable(format!(
                "it does not serve kind {} in {api_version} (is its CustomResourceDefinition installed?)",
                id.kind
            )));
        };
        let client = self.client().await?;
        let api = self.api(client, &ar, namespaced, &id.namespace);
        let body = for_apply(object);
        let mut params = PatchParams::apply(FIELD_MANAGER);
        params.force = force;
        retry(&self.net, || {
            let api = api.clone();
            let body = body.clone();
            let params = params.clone();
            let name = id.name.clone();
            async move { api.patch(&name, &params, &Patch::Apply(&body)).await }
        })
        .await
        .map(|applied| applied.metadata.uid)
        .map_err(|e| self.failed(format!("applying {}", id.address()), &e))
    }

    fn api_server(&self) -> Option<String> {
        let context = self
            .kubeconfig
            .contexts
            .iter()
            .find(|c| c.name == self.context)?;
        let cluster = &context.context.as_ref()?.cluster;
        let named = self
            .kubeconfig
            .clusters
            .iter()
            .find(|c| &c.name == cluster)?;
        named.cluster.as_ref()?.server.clone()
    }

    fn checks_writes(&self) -> bool {
        true
    }

    fn has_controllers(&self) -> bool {
        true
    }

    async fn dry_run(
        &self,
        id: &ObjRef,
        object: &Value,
        force: bool,
    ) -> Result<DryRun, TargetError> {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some((ar, namespaced)) = self.resource(api_version, &id.kind).await? else {
            return Ok(DryRun::NotServed);
        };
        let client = self.client().await?;
        let api = self.api(client, &ar, namespaced, &id.namespace);
        let body = for_apply(object);
        let mut params = PatchParams::apply(FIELD_MANAGER);
        params.dry_run = true;
        params.force = force;
        let result = retry(&self.net, || {
            let api = api.clone();
            let body = body.clone();
            let params = params.clone();
            let name = id.name.clone();
            async move { api.patch(&name, &params, &Patch::Apply(&body)).await }
        })
        .await;
        match result {
            Ok(o) => Ok(DryRun::Accepted(
                serde_json::to_value(&o).map_err(|e| self.unreachable(e))?,
            )),
            Err(e) if status_code(&e) == Some(409) => Ok(DryRun::Conflicts(match e.kube() {
                Some(kube::Error::Api(s)) => s.message.clone(),
                _ => describe(&e),
            })),
            Err(e) if rejected(&e) => Ok(DryRun::Rejected(describe(&e))),
            Err(e) => Err(self.unreachable(format!(
                "checking {} with the server: {}",
                id.address(),
                describe(&e)
            ))),
        }
    }

    async fn delete(&self, id: &ObjRef) -> Result<Deleted, TargetError> {
        let client = self.client().await?.clone();
        let Some((ar, namespaced)) = self.preferred_resource(&id.group, &id.kind).await? else {
            return Ok(Deleted::Gone); // the kind is gone, and its objects with it
        };
        let api = self.api(&client, &ar, namespaced, &id.namespace);
        let result = retry(&self.net, || {
            let api = api.clone();
            let name = id.name.clone();
            async move { api.delete(&name, &DeleteParams::background()).await }
        })
        .await;
        match result {
            // A Status is the answer for an object deleted at once; the object itself is
            // the answer for one that stays until a controller or finalizer is done (or
            // for a kind whose server returns what it deleted, which cannot be told apart).
            Ok(answer) if answer.is_right() => Ok(Deleted::Gone),
            Ok(_) => Ok(Deleted::Pending),
            Err(e) if status_code(&e) == Some(404) => Ok(Deleted::Gone),
            Err(e) => Err(self.failed(format!("deleting {}", id.address()), &e)),
        }
    }
}

/// What an apply sends: the object without the fields only a server sets.
fn for_apply(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("status");
    }
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in [
            "uid",
            "generation",
            "creationTimestamp",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(f);
        }
    }
    o
}

fn status_code(e: &RetryError) -> Option<u16> {
    e.status_code()
}

fn not_served(e: &RetryError) -> bool {
    status_code(e) == Some(404) || matches!(e.kube(), Some(kube::Error::Discovery(_)))
}

/// Whether the server refused the object itself (not a passing failure): invalid (400,
/// 422), forbidden (403), missing namespace (404), or a server-side apply that cannot be
/// typed (500 "failed to create typed patch object", as a real API server answers a
/// value of the wrong type).
fn rejected(e: &RetryError) -> bool {
    matches!(status_code(e), Some(400 | 403 | 404 | 422))
        || e.kube().is_some_and(super::net::typed_patch_failure)
}

/// dcm's view of a live object: the fields its field manager applied (with the values
/// the server holds), or, before dcm has applied it, the fields the file sets.
pub fn dcm_view(live: &Value, desired: Option<&Value>) -> Value {
    let owned = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .and_then(|entries| {
            entries.iter().find(|e| {
                e.get("manager").and_then(Value::as_str) == Some(FIELD_MANAGER)
                    && e.get("operation").and_then(Value::as_str) == Some("Apply")
            })
        })
        .and_then(|e| e.get("fieldsV1"));
    let mut view = match (owned, desired) {
        (Some(fields), _) => {
            let mut v = project_fields(live, fields);
            if let Some(d) = desired {
                v = project_list_elements(&v, d);
            }
            v
        }
        (None, Some(d)) => project_onto(live, d),
        (None, None) => live.clone(),
    };
    // Identity always stays.
    for k in ["apiVersion", "kind"] {
        if let Some(v) = live.get(k) {
            view[k] = v.clone();
        }
    }
    for k in ["name", "namespace", "uid"] {
        if let Some(v) = live.pointer(&format!("/metadata/{k}")) {
            if !view.get("metadata").is_some_and(Value::is_object) {
                view["metadata"] = Value::Object(Map::new());
            }
            view["metadata"][k] = v.clone();
        }
    }
    // So are the marks that say whose it is (`ownership`), whoever set them.
    let marks = Marks::of(live);
    if let Some(lineage) = &marks.lineage {
        let address = live
            .pointer("/metadata/annotations/dcm.io~1address")
            .and_then(Value::as_str)
            .unwrap_or_default();
        crate::ownership::stamp_as(&mut view, lineage, address, marks.imported);
    }
    view
}

/// The parts of `v` named by a managedFields `fieldsV1` set (`f:`, `k:`, `v:`, `i:` keys).
fn project_fields(v: &Value, fields: &Value) -> Value {
    let Some(set) = fields.as_object() else {
        return v.clone();
    };
    let children: Vec<(&String, &Value)> = set.iter().filter(|(k, _)| *k != ".").collect();
    if children.is_empty() {
        return v.clone();
    }
    match v {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, sub) in children {
                if let Some(name) = k.strip_prefix("f:") {
                    if let Some(child) = map.get(name) {
                        out.insert(name.to_string(), project_fields(child, sub));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                for (k, sub) in &children {
                    let hit = if let Some(key) = k.strip_prefix("k:") {
                        serde_json::from_str::<Map<String, Value>>(key)
                            .map(|want| want.iter().all(|(wk, wv)| item.get(wk) == Some(wv)))
                            .unwrap_or(false)
                    } else if let Some(val) = k.strip_prefix("v:") {
                        serde_json::from_str::<Value>(val).is_ok_and(|want| &want == item)
                    } else {
                        false
                    };
                    if hit {
                        out.push(project_fields(item, sub));
                        break;
                    }
                }
            }
            for (k, sub) in &children {
                if let Some(i) = k.strip_prefix("i:").and_then(|i| i.parse::<usize>().ok()) {
                    if let Some(item) = items.get(i) {
                        out.push(project_fields(item, sub));
                    }
                }
            }
            Value::Array(out)
        }
        other => other.clone(),
    }
}

/// `live` limited to the keys `desired` has, at every level (lists element by element
/// when their lengths agree).
fn project_onto(live: &Value, desired: &Value) -> Value {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => {
            let mut out = Map::new();
            for (k, dv) in d {
                if let Some(lv) = l.get(k) {
                    out.insert(k.clone(), project_onto(lv, dv));
                }
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(d)) if l.len() == d.len() => Value::Array(
            l.iter()
                .zip(d)
                .map(|(lv, dv)| project_onto(lv, dv))
                .collect(),
        ),
        _ => live.clone(),
    }
}

/// Like `project_onto`, but only inside lists: keys the server added to list elements
/// (defaults such as a port's protocol) are not differences, while keys dcm applied and
/// no longer wants still are.
fn project_list_elements(live: &Value, desired: &Value) -> Value {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => Value::Object(
            l.iter()
                .map(|(k, lv)| {
                    let v = match d.get(k) {
                        Some(dv) => project_list_elements(lv, dv),
                        None => lv.clone(),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        (Value::Array(l), Value::Array(d)) if l.len() == d.len() => Value::Array(
            l.iter()
                .zip(d)
                .map(|(lv, dv)| project_onto(lv, dv))
                .collect(),
        ),
        _ => live.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_view_is_the_fields_dcm_owns() {
        let live = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "uid": "u",
                "labels": {"app": "web", "other": "x"},
                "managedFields": [{"manager": "dcm", "operation": "Apply", "fieldsV1": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}}}
                }}]},
            "spec": {"clusterIP": "10.96.0.9", "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}
        });
        let view = dcm_view(&live, None);
        assert_eq!(
            view,
            // The UID stays: it tells whether the object is still the one dcm made.
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "web", "namespace": "default", "uid": "u", "labels": {"app": "web"}},
                   "spec": {"ports": [{"port": 80}]}})
        );
    }

    #[test]
    fn server_defaults_inside_atomic_lists_are_not_differences() {
        let live = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "managedFields": [{"manager": "dcm", "operation": "Apply",
                "fieldsV1": {"f:spec": {"f:ports": {}}, "f:metadata": {"f:labels": {"f:gone": {}}}}}],
                "labels": {"gone": "1"}},
            "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}
        });
        let desired = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}});
        let view = dcm_view(&live, Some(&desired));
        assert_eq!(view["spec"], json!({"ports": [{"port": 80}]}));
        // A label dcm applied and no longer wants is still a difference.
        assert_eq!(view["metadata"]["labels"], json!({"gone": "1"}));
    }

    #[test]
    fn before_the_first_apply_only_the_fields_the_file_sets_count() {
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "n", "labels": {"x": "1"}},
            "data": {"a": "1", "b": "2"}});
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}, "data": {"a": "1"}});
        assert_eq!(dcm_view(&live, Some(&desired)), desired);
    }
}
