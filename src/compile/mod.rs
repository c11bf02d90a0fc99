//! Compile: the validated model becomes the desired objects, one per (cluster, object).
//!
//! This is where defaults a Kubernetes user expects are filled in (a namespaced object
//! without a namespace goes to `default`, as with kubectl) and where two blocks that would
//! write the same object are caught. It reads no cluster.

pub mod edit;
mod mesh;

pub use edit::Edit;
pub use mesh::legacy::stub_domain_block;
pub use mesh::Allocations;

use crate::diag::{Diagnostic, Diagnostics, Location};
use crate::model::{Dependency, Model};
use crate::object::{is_builtin_cluster_scoped, split_api_version, ObjRef};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One object dcm wants to exist in one cluster.
#[derive(Debug, Clone)]
pub struct DesiredObject {
    pub id: ObjRef,
    pub api_version: String,
    /// The whole object as it should be, namespace filled in. Shared, not copied, by the
    /// stages that read it (refresh, plan); a stage that changes it gets its own copy.
    pub object: Arc<Value>,
    /// The config block it comes from: `resources.<name>`, `resources[<i>]`, `logical_clouds.<name>`.
    pub source: String,
    /// Dependencies written in the file (`depends_on`); implicit ones are the graph's.
    pub depends_on: Vec<Dependency>,
    /// Where the object was declared, for messages.
    pub location: Location,
    /// Values dcm chose for this object, recorded in the state (ServiceEntry addresses).
    pub allocated: BTreeMap<String, String>,
    /// Set for objects dcm edits but does not own: `object` is only a skeleton until
    /// [`resolve_edits`] merges dcm's part into the live object.
    pub edit: Option<Edit>,
    /// Set for an edit being taken back (dcm's part removed, the rest kept).
    pub revert: bool,
    /// Values in `object` that only a cluster can supply; until then a placeholder stands
    /// in `object` (and in `edit`), and the plan says "known after apply".
    pub known_after_apply: Vec<KnownAfterApply>,
    /// After writing it, apply waits until the cluster reports it ready (objects that
    /// others depend on being up, such as a control plane).
    pub ready_when: Option<Readiness>,
}

/// When a written object counts as ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// `status.conditions` has this type with status `"True"` (Sail's `Ready`, a CRD's
    /// `Established`).
    Condition(&'static str),
    /// `status.phase` is this (a Namespace's `Active`).
    Phase(&'static str),
    /// A workload rolled out or finished, as kapp's wait rules have it (`wait = true`).
    Workload(Workload),
}

/// The workloads `wait = true` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Available: `observedGeneration` caught up, every replica updated and available.
    Deployment,
    /// Ready: `observedGeneration` caught up, every replica ready, the update rolled out.
    StatefulSet,
    /// Complete; a `Failed` condition fails the wait at once.
    Job,
}

/// How far a written object is from ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyState {
    Ready,
    /// Not yet; what is missing, when the status says (`1 of 3 replicas available`).
    Waiting(String),
    /// It never will be (a Job that failed): the cluster's message.
    Failed(String),
}

fn int_at(live: &Value, pointer: &str) -> i64 {
    live.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn condition<'a>(live: &'a Value, kind: &str) -> Option<&'a Value> {
    live.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| {
            c.get("type").and_then(Value::as_str) == Some(kind)
                && c.get("status").and_then(Value::as_str) == Some("True")
        })
}

impl Workload {
    fn state(self, live: &Value) -> ReadyState {
        if self == Workload::Job {
            if let Some(c) = condition(live, "Failed") {
                let text = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default();
                let message = match (text("reason"), text("message")) {
                    ("", "") => "the Job failed".to_string(),
                    (reason, "") => format!("the Job failed: {reason}"),
                    ("", message) => format!("the Job failed: {message}"),
                    (reason, message) => format!("the Job failed: {message} ({reason})"),
                };
                return ReadyState::Failed(message);
            }
            return if condition(live, "Complete").is_some() {
                ReadyState::Ready
            } else {
                ReadyState::Waiting(String::new())
            };
        }
        let generation = int_at(live, "/metadata/generation");
        if int_at(live, "/status/observedGeneration") < generation {
            return ReadyState::Waiting("the controller has not seen the change yet".into());
        }
        let wanted = live
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let count = |field: &str, what: &str| {
            let n = int_at(live, &format!("/status/{field}"));
            (n != wanted).then(|| format!("{n} of {wanted} replicas {what}"))
        };
        let missing = match self {
            Workload::Deployment => count("updatedReplicas", "updated")
                .or_else(|| count("availableReplicas", "available")),
            _ => count("readyReplicas", "ready").or_else(|| {
                let rev = |f: &str| {
                    live.pointer(&format!("/status/{f}"))
                        .and_then(Value::as_str)
                };
                match (rev("currentRevision"), rev("updateRevision")) {
                    (Some(current), Some(update)) if current != update => {
                        Some(format!("revision {update} still rolling out"))
                    }
                    _ => None,
                }
            }),
        };
        match missing {
            Some(m) => ReadyState::Waiting(m),
            None => ReadyState::Ready,
        }
    }
}

impl Readiness {
    /// Whether `live` (the whole object, status included) is ready.
    pub fn is_ready(&self, live: &Value) -> bool {
        self.state(live) == ReadyState::Ready
    }

    /// How far `live` (the whole object, status included) is from ready.
    pub fn state(&self, live: &Value) -> ReadyState {
        let ready = match self {
            Readiness::Condition(kind) => condition(live, kind).is_some(),
            Readiness::Phase(phase) => {
                live.pointer("/status/phase").and_then(Value::as_str) == Some(phase)
            }
            Readiness::Workload(w) => return w.state(live),
        };
        if ready {
            ReadyState::Ready
        } else {
            ReadyState::Waiting(String::new())
        }
    }

    /// What a reader is told the object must be.
    pub fn describe(&self) -> &'static str {
        match self {
            Readiness::Condition(kind) | Readiness::Phase(kind) => kind,
            Readiness::Workload(Workload::Deployment) => "available",
            Readiness::Workload(Workload::StatefulSet) => "ready",
            Readiness::Workload(Workload::Job) => "complete",
        }
    }

    /// The rule a kind has on its own (kapp's wait rules): a CRD is waited on until
    /// Established, before its objects are written; a Namespace until Active.
    pub fn of_kind(group: &str, kind: &str) -> Option<Readiness> {
        match (group, kind) {
            ("apiextensions.k8s.io", "CustomResourceDefinition") => {
                Some(Readiness::Condition("Established"))
            }
            ("", "Namespace") => Some(Readiness::Phase("Active")),
            _ => None,
        }
    }

    /// The rule `wait = true` gives a kind: Deployments available, StatefulSets ready,
    /// Jobs complete; none for other kinds.
    pub fn workload(group: &str, kind: &str) -> Option<Readiness> {
        let w = match (group, kind) {
            ("apps", "Deployment") => Workload::Deployment,
            ("apps", "StatefulSet") => Workload::StatefulSet,
            ("batch", "Job") => Workload::Job,
            _ => return None,
        };
        Some(Readiness::Workload(w))
    }
}

/// A value only a cluster knows, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownAfterApply {
    /// What stands in the object until the value is known.
    pub placeholder: String,
    pub source: ValueSource,
}

/// Where a known-after-apply value is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueSource {
    /// A field of a live object (in any cluster), once set.
    Object {
        id: ObjRef,
        api_version: String,
        value: LiveValue,
    },
    /// The API server URL of a cluster's kubeconfig context (known once targets are made).
    ApiServer { cluster: String },
}

/// Which field of a live object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveValue {
    /// A Service's ClusterIP.
    ClusterIp,
    /// A LoadBalancer Service's `status.loadBalancer.ingress[0]`: its ip, else hostname.
    LoadBalancerAddress,
    /// A service-account token Secret's token (decoded).
    ServiceAccountToken,
    /// A service-account token Secret's `ca.crt`, base64 as a kubeconfig holds it.
    ServiceAccountCa,
}

impl LiveValue {
    /// The field, as the plan names it.
    pub fn path(self) -> &'static str {
        match self {
            LiveValue::ClusterIp => "spec.clusterIP",
            LiveValue::LoadBalancerAddress => "status.loadBalancer.ingress[0]",
            LiveValue::ServiceAccountToken => "data.token",
            LiveValue::ServiceAccountCa => "data.ca.crt",
        }
    }

    /// The value in `live` (the whole object), once the cluster has set it.
    pub fn extract(self, live: &Value) -> Option<String> {
        match self {
            LiveValue::ClusterIp => cluster_ip(live),
            LiveValue::LoadBalancerAddress => {
                let ingress = live.pointer("/status/loadBalancer/ingress/0")?;
                ["ip", "hostname"]
                    .iter()
                    .find_map(|k| ingress.get(*k)?.as_str().filter(|v| !v.is_empty()))
                    .map(str::to_string)
            }
            LiveValue::ServiceAccountToken => {
                let raw = live.pointer("/data/token")?.as_str()?;
                let token = String::from_utf8(crate::object::base64_decode(raw)?).ok()?;
                (!token.is_empty() && !token.contains(char::is_whitespace)).then_some(token)
            }
            LiveValue::ServiceAccountCa => {
                let raw = live.pointer("/data/ca.crt")?.as_str()?;
                (!raw.is_empty()).then(|| raw.to_string())
            }
        }
    }
}

impl KnownAfterApply {
    /// A value read from a field of `id` once the cluster has set it.
    pub fn object(id: ObjRef, api_version: &str, value: LiveValue) -> KnownAfterApply {
        let placeholder = match value {
            // Kept as the legacy profile always wrote it (plans people already review).
            LiveValue::ClusterIp => format!(
                "(known after apply: ClusterIP of {}/{})",
                id.namespace, id.name
            ),
            _ => format!("(known after apply: {}.{})", id.address(), value.path()),
        };
        KnownAfterApply {
            placeholder,
            source: ValueSource::Object {
                id,
                api_version: api_version.to_string(),
                value,
            },
        }
    }

    /// The API server URL of `cluster`'s kubeconfig context.
    pub fn api_server(cluster: &str) -> KnownAfterApply {
        KnownAfterApply {
            placeholder: format!("(known after apply: API server of cluster {cluster})"),
            source: ValueSource::ApiServer {
                cluster: cluster.to_string(),
            },
        }
    }

    /// The object the value is read from, if any.
    pub fn source_object(&self) -> Option<(&ObjRef, &str)> {
        match &self.source {
            ValueSource::Object {
                id, api_version, ..
            } => Some((id, api_version)),
            ValueSource::ApiServer { .. } => None,
        }
    }

    /// What the plan says about it.
    pub fn describe(&self) -> String {
        match &self.source {
            ValueSource::Object { id, value, .. } => {
                format!("apply waits for {} to have {}", id.address(), value.path())
            }
            ValueSource::ApiServer { cluster } => {
                format!("it is read from the kubeconfig context of cluster `{cluster}`")
            }
        }
    }
}

/// A Service's ClusterIP, once it has one.
pub fn cluster_ip(service: &Value) -> Option<String> {
    service
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
        .map(str::to_string)
}

impl DesiredObject {
    /// Puts `value` where `placeholder` stands, in the object and in dcm's part of it.
    pub fn fill_in(&mut self, placeholder: &str, value: &str) {
        fn replace(v: &mut Value, from: &str, to: &str) {
            match v {
                Value::String(s) if s.contains(from) => *s = s.replace(from, to),
                Value::Array(items) => items.iter_mut().for_each(|i| replace(i, from, to)),
                Value::Object(map) => map.values_mut().for_each(|i| replace(i, from, to)),
                _ => {}
            }
        }
        replace(Arc::make_mut(&mut self.object), placeholder, value);
        if let Some(e) = &mut self.edit {
            for v in e.values_mut() {
                *v = v.replace(placeholder, value);
            }
        }
        self.known_after_apply
            .retain(|k| k.placeholder != placeholder);
        self.fold_when_known();
    }

    /// A Secret written as `stringData` (so placeholders can stand in its text) becomes
    /// `data`, as the API server stores it, once nothing in it is unknown.
    pub fn fold_when_known(&mut self) {
        if self.known_after_apply.is_empty() && self.id.group.is_empty() && self.id.kind == "Secret"
        {
            crate::object::fold_string_data(Arc::make_mut(&mut self.object));
        }
    }
}

/// Fills in every value already known: fields of the live objects (`probed`: whole
/// objects, status included) and the API servers of the targets.
pub fn resolve_known(
    desired: &mut Desired,
    probed: &BTreeMap<ObjRef, Value>,
    api_server: impl Fn(&str) -> Option<String>,
) {
    for o in &mut desired.objects {
        let known: Vec<(String, String)> = o
            .known_after_apply
            .iter()
            .filter_map(|k| {
                let value = match &k.source {
                    ValueSource::Object { id, value, .. } => value.extract(probed.get(id)?)?,
                    ValueSource::ApiServer { cluster } => api_server(cluster)?,
                };
                Some((k.placeholder.clone(), value))
            })
            .collect();
        for (placeholder, value) in known {
            o.fill_in(&placeholder, &value);
        }
    }
}

/// Every desired object, ordered by identity.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub objects: Vec<DesiredObject>,
    /// Edits to take back (filled by [`resolve_edits`]); not part of the graph.
    pub reverts: Vec<DesiredObject>,
}

impl Desired {
    pub fn get(&self, id: &ObjRef) -> Option<&DesiredObject> {
        self.objects
            .binary_search_by(|o| o.id.cmp(id))
            .ok()
            .map(|i| &self.objects[i])
    }
}

/// Compiles the model into desired objects, or every problem found (duplicates, address
/// exhaustion). `allocations` are the values the state already holds.
pub fn compile(model: &Model, allocations: &Allocations) -> Result<Desired, Diagnostics> {
    let manifests = model
        .resources
        .iter()
        .map(|r| r.manifests.clone())
        .collect();
    compile_manifests(model, manifests, allocations)
}

/// [`compile`], taking the `[[resources]]` manifests out of `model` (they are left empty)
/// rather than copying them: each manifest's tree becomes its last cluster's object.
pub fn compile_taking_manifests(
    model: &mut Model,
    allocations: &Allocations,
) -> Result<Desired, Diagnostics> {
    let manifests = model
        .resources
        .iter_mut()
        .map(|r| std::mem::take(&mut r.manifests))
        .collect();
    compile_manifests(model, manifests, allocations)
}

/// `manifests[i]` are the manifests of `model.resources[i]`.
fn compile_manifests(
    model: &Model,
    manifests: Vec<Vec<crate::model::Manifest>>,
    allocations: &Allocations,
) -> Result<Desired, Diagnostics> {
    let mut diags = Vec::new();
    let crd_scopes = crd_scopes(model, &manifests);
    let mut by_id: BTreeMap<ObjRef, DesiredObject> = BTreeMap::new();
    // The logical clouds compile on the other core while the manifests are placed.
    let mesh_objects = std::thread::scope(|scope| {
        let mesh = scope.spawn(|| mesh::compile(model));
        place_manifests(model, manifests, &crd_scopes, &mut by_id, &mut diags);
        mesh.join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    });
    for d in mesh_objects {
        let origin = d.source.clone();
        add(&mut by_id, d, &origin, &mut diags);
    }
    for (address, location) in &model.imports {
        let declared = ObjRef::parse_address(address).is_some_and(|id| by_id.contains_key(&id));
        if !declared {
            diags.push(
                Diagnostic::new(format!(
                    "`import` names {address:?}, which is not an object this file declares"
                ))
                .at(location.clone())
                .help("import takes object addresses as `dcm plan` shows them, e.g. cluster1/core/ConfigMap/default/settings"),
            );
        }
    }
    let mut objects: Vec<DesiredObject> = by_id.into_values().collect();
    // The managed-by label is how dcm tells its own objects: a file does not set it.
    for o in objects.iter().filter(|o| o.edit.is_none()) {
        let theirs = o
            .object
            .pointer("/metadata/labels/app.kubernetes.io~1managed-by")
            .and_then(Value::as_str);
        if let Some(tool) = theirs {
            diags.push(
                Diagnostic::new(format!(
                    "{} sets the label app.kubernetes.io/managed-by: {tool}, which dcm sets to `dcm` on every object it manages",
                    o.id
                ))
                .at(o.location.clone())
                .help("remove the label from the manifest (an object another tool manages is not one to declare here)"),
            );
        }
    }
    for rule in &model.ignore_differences {
        for o in objects
            .iter_mut()
            .filter(|o| o.edit.is_none() && rule.matches(&o.id))
        {
            for pointer in &rule.json_pointers {
                crate::object::remove_pointer(Arc::make_mut(&mut o.object), pointer);
            }
        }
    }
    for o in objects.iter_mut().filter(|o| o.ready_when.is_none()) {
        o.ready_when = Readiness::of_kind(&o.id.group, &o.id.kind);
    }
    mesh::allocate_addresses(&mut objects, allocations, &mut diags);
    check_secret_policies(model, &objects, &mut diags);
    if !diags.is_empty() {
        return Err(Diagnostics(diags));
    }
    Ok(Desired {
        objects,
        reverts: Vec::new(),
    })
}

/// A directory target writes Secret data only when its cluster table says how
/// (`secrets = "sops"` or `"plaintext"`): one error per cluster that would, at the cluster.
fn check_secret_policies(model: &Model, objects: &[DesiredObject], diags: &mut Vec<Diagnostic>) {
    for (name, c) in &model.clusters {
        let crate::model::TargetSpec::Dir {
            path,
            secrets: None,
        } = &c.target
        else {
            continue;
        };
        let secrets: Vec<String> = objects
            .iter()
            .filter(|o| o.id.cluster == *name && crate::object::has_secret_data(&o.object))
            .map(|o| format!("{}/{}", o.id.namespace, o.id.name))
            .collect();
        let Some(first) = secrets.first() else {
            continue;
        };
        let which = if secrets.len() == 1 {
            format!("Secret `{first}`")
        } else {
            format!("{} Secrets (`{first}`, ...)", secrets.len())
        };
        diags.push(
            Diagnostic::new(format!(
                "cluster `{name}` would write the data of {which} to directory `{}`, but its table does not say how Secrets are written there",
                path.display()
            ))
            .at(c.location.clone())
            .help(format!(
                "add to [clusters.{name}] either `secrets = \"sops\"` with `sops_age_recipients = [\"age1...\"]` (encrypted with sops, e.g. for Flux), or `secrets = \"plaintext\"` (written unencrypted, for test-only data)"
            )),
        );
    }
}

/// Gives the ServiceEntry addresses out again with `allocations`, after a refresh found
/// addresses that live ServiceEntries outside the file use (`Allocations::in_use`).
/// Addresses the state records never change.
pub fn reallocate_addresses(
    desired: &mut Desired,
    allocations: &Allocations,
) -> Result<(), Diagnostics> {
    let mut diags = Vec::new();
    mesh::allocate_addresses(&mut desired.objects, allocations, &mut diags);
    if diags.is_empty() {
        Ok(())
    } else {
        Err(Diagnostics(diags))
    }
}

/// Turns every edit into the whole object it must be, given the live objects; and, from
/// the state, adds a revert for every edit the file no longer wants (all of them when
/// destroying).
pub fn resolve_edits(
    desired: &mut Desired,
    live: &std::collections::BTreeMap<ObjRef, Value>,
    state: Option<&crate::state::State>,
    destroy: bool,
) -> Result<(), Diagnostics> {
    let mut diags = Vec::new();
    let current = |id: &ObjRef| {
        live.get(id)
            .map(|v| crate::target::normalize_live(v.clone()))
    };
    // The parts each edited object's state entry wrote (None: no entry yet).
    let owned = |id: &ObjRef, e: &Edit, live: Option<&Value>| {
        let entry = state?.get(id)?;
        Some(edit::recorded_parts(&entry.allocated).unwrap_or_else(|| {
            // An entry from before parts were recorded wrote whatever dcm's marks show.
            live.map(|l| edit::parts_in(e, l)).unwrap_or_default()
        }))
    };
    for o in desired.objects.iter_mut() {
        let Some(e) = &o.edit else { continue };
        let live = current(&o.id);
        let mine = owned(&o.id, e, live.as_ref());
        match edit::resolve(e, &o.object, live.as_ref(), mine.as_ref()) {
            Ok(v) => o.object = Arc::new(v),
            Err(msg) => diags.push(
                Diagnostic::new(format!(
                    "cannot edit {} in cluster `{}`: {msg}",
                    o.id, o.id.cluster
                ))
                .at(o.location.clone()),
            ),
        }
    }
    for entry in state.iter().flat_map(|s| &s.objects) {
        let id = entry.id();
        if entry.origin != crate::state::Origin::Edited || (!destroy && desired.get(&id).is_some())
        {
            continue;
        }
        let Some(live) = current(&id) else { continue };
        let empty = Edit::of_mode(entry.allocated.get("edit").map(String::as_str));
        let mine = owned(&id, &empty, Some(&live));
        let object = edit::resolve(&empty, &live, Some(&live), mine.as_ref()).unwrap_or(live);
        desired.reverts.push(DesiredObject {
            id,
            api_version: entry.api_version.clone(),
            object: Arc::new(object),
            source: "state".into(),
            depends_on: Vec::new(),
            location: Location::none(),
            allocated: entry.allocated.clone(),
            edit: Some(empty),
            revert: true,
            known_after_apply: Vec::new(),
            ready_when: None,
        });
    }
    if diags.is_empty() {
        Ok(())
    } else {
        Err(Diagnostics(diags))
    }
}

fn add(
    by_id: &mut BTreeMap<ObjRef, DesiredObject>,
    d: DesiredObject,
    origin: &str,
    diags: &mut Vec<Diagnostic>,
) {
    if let Some(first) = by_id.get_mut(&d.id) {
        // A namespace may be declared by a resource and labelled by logical clouds: the
        // labels are merged, as long as no label gets two values.
        let from_cloud = |s: &str| s.starts_with("logical_clouds.");
        if d.id.group.is_empty()
            && d.id.kind == "Namespace"
            && (from_cloud(&d.source) || from_cloud(&first.source))
        {
            if let Some(conflict) = merge_labels(Arc::make_mut(&mut first.object), &d.object) {
                diags.push(
                    Diagnostic::new(format!(
                        "namespace {} gets label `{conflict}` with two values ({} and {origin})",
                        d.id, first.source
                    ))
                    .at(d.location.clone())
                    .note("first declared here", Some(first.location.clone())),
                );
            }
            first.depends_on.extend(d.depends_on);
            return;
        }
        diags.push(
            Diagnostic::new(format!(
                "object {} is declared twice ({} and {origin})",
                d.id, first.source
            ))
            .at(d.location.clone())
            .note("first declared here", Some(first.location.clone()))
            .help("each object may come from only one block; remove one of them"),
        );
        return;
    }
    by_id.insert(d.id.clone(), d);
}

/// Adds `from`'s labels to `into`; returns a label that would get a second value.
fn merge_labels(into: &mut Value, from: &Value) -> Option<String> {
    let new = from
        .pointer("/metadata/labels")
        .and_then(Value::as_object)?;
    let labels = &mut into["metadata"]["labels"];
    if !labels.is_object() {
        *labels = Value::Object(Default::default());
    }
    let map = labels.as_object_mut()?;
    for (k, v) in new {
        match map.get(k) {
            Some(old) if old != v => return Some(k.clone()),
            _ => {
                map.insert(k.clone(), v.clone());
            }
        }
    }
    None
}

/// (group, kind) → namespaced?, per cluster, from the CRDs the file itself declares.
type CrdScopes = BTreeMap<String, BTreeMap<(String, String), bool>>;

fn crd_scopes(model: &Model, manifests: &[Vec<crate::model::Manifest>]) -> CrdScopes {
    let mut out: CrdScopes = BTreeMap::new();
    for (res, manifests) in model.resources.iter().zip(manifests) {
        for m in manifests {
            if let Some((group, kind, namespaced)) = crd_info(&m.object) {
                for c in &res.clusters {
                    out.entry(c.clone())
                        .or_default()
                        .insert((group.clone(), kind.clone()), namespaced);
                }
            }
        }
    }
    out
}

/// For a CustomResourceDefinition: the (group, kind) it serves and whether it is namespaced.
pub fn crd_info(object: &Value) -> Option<(String, String, bool)> {
    if object.get("kind")?.as_str()? != "CustomResourceDefinition" {
        return None;
    }
    let spec = object.get("spec")?;
    let group = spec.get("group")?.as_str()?.to_string();
    let kind = spec.get("names")?.get("kind")?.as_str()?.to_string();
    let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
    Some((group, kind, namespaced))
}

/// Puts an object into a cluster: its identity, with the namespace defaulted.
/// Places each `[[resources]]` manifest in each of its clusters (`manifests[i]` are
/// those of `model.resources[i]`).
fn place_manifests(
    model: &Model,
    manifests: Vec<Vec<crate::model::Manifest>>,
    crd_scopes: &CrdScopes,
    by_id: &mut BTreeMap<ObjRef, DesiredObject>,
    diags: &mut Vec<Diagnostic>,
) {
    for (res, manifests) in model.resources.iter().zip(manifests) {
        for m in manifests {
            // One tree per placement (namespaced or not, which a cluster's CRDs decide),
            // shared by every cluster that places it the same way: the same manifest on
            // 40 clusters is held once, not 40 times (a stage that changes one cluster's
            // object gets its own copy).
            let mut placed: [Option<(Arc<Value>, String)>; 2] = [None, None];
            for cluster in &res.clusters {
                let namespaced = is_namespaced(cluster, &m.object, crd_scopes);
                let (object, namespace) = placed[usize::from(namespaced)]
                    .get_or_insert_with(|| {
                        let (object, namespace) = place(m.object.clone(), namespaced);
                        (Arc::new(object), namespace)
                    })
                    .clone();
                let (id, api_version) = identify(cluster, &object, namespace);
                // `wait = true`: its workloads are waited on until they are up.
                let ready_when = res
                    .wait
                    .then(|| Readiness::workload(&id.group, &id.kind))
                    .flatten();
                let d = DesiredObject {
                    id,
                    api_version,
                    object,
                    source: res.label.clone(),
                    depends_on: res.depends_on.clone(),
                    location: m.location.clone(),
                    allocated: BTreeMap::new(),
                    edit: None,
                    revert: false,
                    known_after_apply: Vec::new(),
                    ready_when,
                };
                add(by_id, d, &m.origin, diags);
            }
        }
    }
}

/// Whether `object` is namespaced in `cluster`: as its CRD there says, else as
/// Kubernetes has its built-in kinds.
fn is_namespaced(cluster: &str, object: &Value, crds: &CrdScopes) -> bool {
    let (group, _) = split_api_version(object["apiVersion"].as_str().unwrap_or_default());
    let kind = object["kind"].as_str().unwrap_or_default();
    match crds
        .get(cluster)
        .and_then(|m| m.get(&(group.to_string(), kind.to_string())))
    {
        Some(n) => *n,
        None => !is_builtin_cluster_scoped(group, kind),
    }
}

/// A manifest as it is applied: a Secret's `stringData` folded into `data`, and its
/// namespace filled in (`default`) or taken out, as it is namespaced or not. Returns the
/// object and its namespace (empty when cluster-scoped).
fn place(mut object: Value, namespaced: bool) -> (Value, String) {
    let (group, _) = split_api_version(object["apiVersion"].as_str().unwrap_or_default());
    if group.is_empty() && object["kind"] == "Secret" {
        crate::object::fold_string_data(&mut object);
    }
    let namespace = if namespaced {
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        object["metadata"]["namespace"] = Value::String(ns.clone());
        ns
    } else {
        if let Some(m) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("namespace");
        }
        String::new()
    };
    (object, namespace)
}

/// The address and apiVersion of a placed object in `cluster`.
fn identify(cluster: &str, object: &Value, namespace: String) -> (ObjRef, String) {
    let api_version = object["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (group, _) = split_api_version(&api_version);
    (
        ObjRef {
            cluster: cluster.to_string(),
            group: group.to_string(),
            kind: object["kind"].as_str().unwrap_or_default().to_string(),
            namespace,
            name: object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        },
        api_version,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config, model};

    fn compile_str(toml: &str) -> Result<Desired, Diagnostics> {
        let src = crate::diag::SourceFile::new("t.toml", toml.to_string());
        let raw = config::parse(src, ".".into()).unwrap();
        compile(&model::build(raw).unwrap(), &Allocations::default())
    }

    #[test]
    fn namespaces_default_and_cluster_scoped_kinds_have_none() {
        let d = compile_str(
            r#"
[clusters.a]
dir = "a"
[clusters.b]
dir = "b"
[[resources]]
clusters = ["a", "b"]
manifest = { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "cm" } }
[[resources]]
clusters = ["a"]
manifest = { apiVersion = "v1", kind = "Namespace", metadata = { name = "ns", namespace = "x" } }
[[resources]]
clusters = ["a"]
manifest = { apiVersion = "apiextensions.k8s.io/v1", kind = "CustomResourceDefinition", metadata = { name = "widgets.example.com" }, spec = { group = "example.com", scope = "Cluster", names = { kind = "Widget", plural = "widgets" } } }
[[resources]]
clusters = ["a"]
manifest = { apiVersion = "example.com/v1", kind = "Widget", metadata = { name = "w" } }
"#,
        )
        .unwrap();
        let ids: Vec<String> = d.objects.iter().map(|o| o.id.address()).collect();
        assert_eq!(
            ids,
            [
                "a/apiextensions.k8s.io/CustomResourceDefinition/_cluster/widgets.example.com",
                "a/core/ConfigMap/default/cm",
                "a/core/Namespace/_cluster/ns",
                "a/example.com/Widget/_cluster/w",
                "b/core/ConfigMap/default/cm",
            ]
        );
        assert_eq!(d.objects[1].object["metadata"]["namespace"], "default");
        assert!(d.objects[2].object["metadata"].get("namespace").is_none());
    }

    #[test]
    fn a_manifest_placed_alike_in_several_clusters_is_one_shared_tree() {
        let d = compile_str(
            r#"
[clusters.a]
dir = "a"
[clusters.b]
dir = "b"
[clusters.c]
dir = "c"
[[resources]]
clusters = ["a"]
manifest = { apiVersion = "apiextensions.k8s.io/v1", kind = "CustomResourceDefinition", metadata = { name = "widgets.example.com" }, spec = { group = "example.com", scope = "Cluster", names = { kind = "Widget", plural = "widgets" } } }
[[resources]]
clusters = ["a", "b", "c"]
manifest = { apiVersion = "example.com/v1", kind = "Widget", metadata = { name = "w" } }
"#,
        )
        .unwrap();
        let widget = |cluster: &str| {
            d.objects
                .iter()
                .find(|o| o.id.kind == "Widget" && o.id.cluster == cluster)
                .unwrap()
        };
        let (a, b, c) = (widget("a"), widget("b"), widget("c"));
        // Cluster-scoped where a's CRD says so, namespaced (by default) elsewhere.
        assert!(a.object["metadata"].get("namespace").is_none());
        assert_eq!(b.object["metadata"]["namespace"], "default");
        assert!(Arc::ptr_eq(&b.object, &c.object), "b and c share one tree");
        assert!(!Arc::ptr_eq(&a.object, &b.object));
        assert_eq!(b.id.address(), "b/example.com/Widget/default/w");
        assert_eq!(c.id.address(), "c/example.com/Widget/default/w");
    }

    #[test]
    fn wait_true_gives_workloads_kapp_s_rules() {
        let d = compile_str(
            r#"
[clusters.a]
dir = "a"
[[resources]]
clusters = ["a"]
wait = true
manifest = { apiVersion = "apps/v1", kind = "Deployment", metadata = { name = "web" }, spec = { replicas = 2 } }
[[resources]]
clusters = ["a"]
wait = true
manifest = { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "cm" } }
[[resources]]
clusters = ["a"]
manifest = { apiVersion = "batch/v1", kind = "Job", metadata = { name = "migrate" } }
"#,
        )
        .unwrap();
        let rules: Vec<_> = d.objects.iter().map(|o| o.ready_when.clone()).collect();
        assert_eq!(
            rules,
            [Some(Readiness::Workload(Workload::Deployment)), None, None]
        );
        let rule = Readiness::Workload(Workload::Deployment);
        let mut live = serde_json::json!({"metadata": {"generation": 2}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "updatedReplicas": 2, "availableReplicas": 2}});
        assert!(matches!(rule.state(&live), ReadyState::Waiting(_)));
        live["status"]["observedGeneration"] = 2.into();
        assert_eq!(rule.state(&live), ReadyState::Ready);
        live["status"]["availableReplicas"] = 1.into();
        assert_eq!(
            rule.state(&live),
            ReadyState::Waiting("1 of 2 replicas available".into())
        );

        let sts = Readiness::Workload(Workload::StatefulSet);
        let mut live = serde_json::json!({"metadata": {"generation": 1},
            "status": {"observedGeneration": 1, "readyReplicas": 1, "currentRevision": "a", "updateRevision": "b"}});
        assert!(matches!(sts.state(&live), ReadyState::Waiting(_)));
        live["status"]["currentRevision"] = "b".into();
        assert_eq!(sts.state(&live), ReadyState::Ready);

        let job = Readiness::Workload(Workload::Job);
        let failed = serde_json::json!({"status": {"conditions": [{"type": "Failed", "status": "True",
            "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}});
        assert_eq!(
            job.state(&failed),
            ReadyState::Failed(
                "the Job failed: Job has reached the specified backoff limit (BackoffLimitExceeded)"
                    .into()
            )
        );
        let done =
            serde_json::json!({"status": {"conditions": [{"type": "Complete", "status": "True"}]}});
        assert_eq!(job.state(&done), ReadyState::Ready);
    }

    #[test]
    fn duplicate_objects_name_both_places() {
        let err = compile_str(
            r#"
[clusters.a]
dir = "a"
[[resources]]
name = "one"
clusters = ["a"]
manifest = { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "cm" } }
[[resources]]
clusters = ["a"]
manifest = { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "cm", namespace = "default" } }
"#,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("object a/core/ConfigMap/default/cm is declared twice (resources.one and inline manifest)"), "{text}");
        assert!(
            text.contains("t.toml:7:12") && text.contains("t.toml:10:12"),
            "{text}"
        );
    }
}
