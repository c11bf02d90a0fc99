//! What a real control plane's controllers do after a client's write, a little later:
//! a load-balancer controller gives LoadBalancer Services an ingress address, the token
//! controller fills service-account token Secrets, the Sail Operator reports its `Istio`
//! and `IstioCNI` objects healthy, the apiextensions controllers establish new
//! CustomResourceDefinitions, and the workload controllers report Deployments and
//! StatefulSets rolled out and Jobs finished.
//!
//! Writes schedule the objects they touch (`schedule`); `tick` does the work that has
//! fallen due. The store ticks before and after every request, and the emulator's
//! server ticks on its own as time passes, so no client has to ask for an object to
//! make its controller act.

use super::{Key, Store};
use crate::fields;
use crate::types::ResourceType;
use crate::util;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub const TOKEN_SECRET_TYPE: &str = "kubernetes.io/service-account-token";
pub const SA_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
pub const SA_UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";
/// The field manager of the token controller's writes.
pub const TOKEN_MANAGER: &str = "kube-controller-manager";
/// The field manager of the Sail Operator's writes.
const SAIL_MANAGER: &str = "sail-operator";
/// The CA certificate every emulated cluster puts into token Secrets as `ca.crt`: a
/// fixed, test-only, self-signed certificate (it protects nothing).
pub const CLUSTER_CA_PEM: &str = include_str!("../cluster-ca.pem");

/// Spec defaults of the Sail Operator's CRDs (`spec.version`, `spec.namespace`).
const SAIL_VERSION: &str = "v1.31.0-beta.1";
const ISTIO_NAMESPACE: &str = "istio-system";
const CNI_NAMESPACE: &str = "istio-cni";
const SAIL: &str = "sailoperator.io";
/// A pod-template annotation that makes the emulated Job controller fail the Job.
pub const FAIL_ANNOTATION: &str = "emulator.dcm.io/fail";

fn str_at<'a>(o: &'a Value, pointer: &str) -> Option<&'a str> {
    o.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn condition<'a>(o: &'a Value, kind: &str) -> Option<&'a Value> {
    o.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c["type"] == kind)
}

/// Whether a CustomResourceDefinition's kind is served (its `Established` condition).
pub fn established(crd: &Value) -> bool {
    condition(crd, "Established").is_some_and(|c| c["status"] == "True")
}

/// A condition, keeping its last transition time when its status did not change.
fn set_condition(
    old: Option<&Value>,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
) -> Value {
    let time = old
        .and_then(|o| condition(o, kind))
        .filter(|c| c["status"] == status)
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(util::now_rfc3339()));
    let mut c = json!({"type": kind, "status": status, "lastTransitionTime": time});
    if !reason.is_empty() {
        c["reason"] = json!(reason);
    }
    if !message.is_empty() {
        c["message"] = json!(message);
    }
    c
}

/// The status the API server gives a CustomResourceDefinition it accepts: names
/// accepted at once, `Established` once its kind is served.
pub fn crd_status(
    crd: &Value,
    old: Option<&Value>,
    rtype: &ResourceType,
    established: bool,
) -> Value {
    let mut stored: Vec<Value> = old
        .and_then(|o| o.pointer("/status/storedVersions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(storage) = rtype.versions.first() {
        if !stored.iter().any(|v| v == storage) {
            stored.push(json!(storage));
        }
    }
    let established = if established {
        set_condition(
            old,
            "Established",
            "True",
            "InitialNamesAccepted",
            "the initial names have been accepted",
        )
    } else {
        set_condition(
            old,
            "Established",
            "False",
            "Installing",
            "the initial names have been accepted",
        )
    };
    json!({
        "acceptedNames": crd["spec"]["names"],
        "storedVersions": stored,
        "conditions": [
            set_condition(old, "NamesAccepted", "True", "NoConflicts", "no conflicts found"),
            established
        ]
    })
}

/// Fills the defaults the Sail Operator's CRD schemas declare.
pub fn default_sail(kind: &str, o: &mut Value) {
    let namespace = match kind {
        "Istio" => ISTIO_NAMESPACE,
        "IstioCNI" => CNI_NAMESPACE,
        _ => return,
    };
    if !o.get("spec").is_some_and(Value::is_object) {
        o["spec"] = json!({});
    }
    let spec = &mut o["spec"];
    if spec.get("namespace").is_none() {
        spec["namespace"] = json!(namespace);
    }
    if spec.get("version").is_none() {
        spec["version"] = json!(SAIL_VERSION);
    }
    if kind == "Istio" && spec.get("updateStrategy").is_none() {
        spec["updateStrategy"] = json!({"type": "InPlace"});
    }
}

fn needs_token(secret: &Value) -> bool {
    secret.get("type").and_then(Value::as_str) == Some(TOKEN_SECRET_TYPE)
        && sa_name(secret).is_some()
        && ["token", "ca.crt", "namespace"].iter().any(|k| {
            secret
                .pointer(&format!("/data/{}", k.replace('/', "~1")))
                .is_none()
        })
}

fn sa_name(secret: &Value) -> Option<&str> {
    secret
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(SA_NAME_ANNOTATION))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn lb_ingress(service: &Value) -> bool {
    service
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

fn is_lb(service: &Value) -> bool {
    str_at(service, "/spec/type") == Some("LoadBalancer")
}

/// Whether the Sail Operator has yet to report on this generation of an object.
fn sail_stale(o: &Value) -> bool {
    o.pointer("/status/observedGeneration") != o.pointer("/metadata/generation")
}

fn parse_ip(s: &str) -> Option<u32> {
    let parts: Vec<u32> = s
        .split('.')
        .map(|p| p.parse::<u8>().map(u32::from))
        .collect::<Result<_, _>>()
        .ok()?;
    (parts.len() == 4).then(|| parts.iter().fold(0, |n, p| (n << 8) | p))
}

/// The first and last address of a pool: `a.b.c.d-a.b.c.e` (both included) or a CIDR
/// (without its network and broadcast addresses).
pub fn parse_pool(pool: &str) -> Option<(u32, u32)> {
    if let Some((first, last)) = pool.split_once('-') {
        let (first, last) = (parse_ip(first.trim())?, parse_ip(last.trim())?);
        return (first <= last).then_some((first, last));
    }
    let (ip, bits) = pool.split_once('/').unwrap_or((pool, "32"));
    let bits: u32 = bits.trim().parse().ok().filter(|b| *b <= 32)?;
    let size = 1u64 << (32 - bits);
    let base = u64::from(parse_ip(ip.trim())?) & !(size - 1);
    let (first, last) = if size > 2 {
        (base + 1, base + size - 2)
    } else {
        (base, base + size - 1)
    };
    Some((first as u32, last as u32))
}

impl Store {
    /// Has a controller look at `key` after `delay`; never when `delay` is None.
    fn enqueue(&mut self, key: &Key, delay: Option<Duration>) {
        if let Some(d) = delay {
            let due = Instant::now() + d;
            let entry = self.pending.entry(key.clone()).or_insert(due);
            if *entry > due {
                *entry = due;
            }
        }
    }

    fn keys_of(&self, group: &str, plural: &str, namespace: &str) -> Vec<Key> {
        let start = (
            group.to_string(),
            plural.to_string(),
            namespace.to_string(),
            String::new(),
        );
        self.objects
            .range(start..)
            .take_while(|((g, p, n, _), _)| g == group && p == plural && n == namespace)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// After a write of `key`: schedules the controller work it calls for.
    pub(super) fn schedule(&mut self, key: &Key) {
        let Some(o) = self.objects.get(key) else {
            return;
        };
        let options = self.options.clone();
        match (key.0.as_str(), key.1.as_str()) {
            ("", "services") => {
                if is_lb(o) && !lb_ingress(o) {
                    self.enqueue(key, options.lb_delay);
                } else if !is_lb(o) && lb_ingress(o) {
                    // The load balancer goes with the type.
                    self.enqueue(key, Some(Duration::ZERO));
                }
            }
            ("", "secrets") if needs_token(o) => self.enqueue(key, options.token_delay),
            ("", "serviceaccounts") => {
                for k in self.keys_of("", "secrets", &key.2) {
                    if self
                        .objects
                        .get(&k)
                        .is_some_and(|s| needs_token(s) && sa_name(s) == Some(key.3.as_str()))
                    {
                        self.enqueue(&k, options.token_delay);
                    }
                }
            }
            ("", "namespaces") => {
                if o.pointer("/metadata/deletionTimestamp").is_some() {
                    self.enqueue(key, options.namespace_finalize_delay);
                }
                // A namespace may be the one an Istio installs into, or mark a revision
                // in use.
                for plural in ["istios", "istiocnis"] {
                    for k in self.keys_of(SAIL, plural, "") {
                        self.enqueue(&k, options.istio_ready_delay);
                    }
                }
            }
            (SAIL, "istios" | "istiocnis") if sail_stale(o) => {
                self.enqueue(key, options.istio_ready_delay)
            }
            ("apiextensions.k8s.io", "customresourcedefinitions") if !established(o) => {
                self.enqueue(key, options.crd_established_delay)
            }
            ("apps", "deployments" | "statefulsets") | ("batch", "jobs") if workload_stale(o) => {
                self.enqueue(key, options.workload_ready_delay)
            }
            _ => {}
        }
    }

    /// After `old` at `key` was deleted: what its controllers clean up or retry.
    pub(super) fn deleted(&mut self, key: &Key, old: &Value) {
        match (key.0.as_str(), key.1.as_str()) {
            ("", "services") if lb_ingress(old) => self.retry_waiting_load_balancers(),
            ("", "namespaces") => self.retry_waiting_load_balancers(),
            (SAIL, "istios") => {
                // Its IstioRevisions are garbage-collected with it.
                let uid = old["metadata"]["uid"].clone();
                self.objects.retain(|(g, p, _, _), o| {
                    !(g == SAIL
                        && p == "istiorevisions"
                        && o.pointer("/metadata/ownerReferences")
                            .and_then(Value::as_array)
                            .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid)))
                });
            }
            _ => {}
        }
    }

    /// Addresses may be free again: Services still waiting for one try again.
    fn retry_waiting_load_balancers(&mut self) {
        let waiting: Vec<Key> = self
            .objects
            .iter()
            .filter(|((g, p, _, _), o)| {
                g.is_empty() && p == "services" && is_lb(o) && !lb_ingress(o)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in waiting {
            self.enqueue(&k, self.options.lb_delay);
        }
    }

    /// Does the controller work that has fallen due.
    pub fn tick(&mut self) {
        for _ in 0..8 {
            if self.pending.is_empty() {
                return;
            }
            let now = Instant::now();
            let due: Vec<Key> = self
                .pending
                .iter()
                .filter(|(_, t)| **t <= now)
                .map(|(k, _)| k.clone())
                .collect();
            if due.is_empty() {
                return;
            }
            for key in due {
                self.pending.remove(&key);
                self.reconcile(&key);
            }
        }
    }

    fn reconcile(&mut self, key: &Key) {
        let Some(o) = self.objects.get(key).cloned() else {
            return;
        };
        let new = match (key.0.as_str(), key.1.as_str()) {
            ("", "namespaces") => {
                if o.pointer("/metadata/deletionTimestamp").is_some() {
                    self.finalize_namespace(key, &o);
                }
                None
            }
            ("", "services") => self.load_balancer(key, &o),
            ("", "secrets") => self.token(key, &o),
            (SAIL, "istios") => self.istio(&o),
            (SAIL, "istiocnis") => self.istio_cni(&o),
            ("apiextensions.k8s.io", "customresourcedefinitions") => self.establish(&o),
            ("apps", "deployments") => Some(deployment_rolled_out(&o)),
            ("apps", "statefulsets") => Some(statefulset_rolled_out(&o)),
            ("batch", "jobs") => job_finished(&o),
            _ => None,
        };
        if let Some(new) = new {
            let released = key.1 == "services" && !is_lb(&new);
            self.controller_write(key, new);
            if released {
                self.retry_waiting_load_balancers();
            }
        }
    }

    /// The namespace controller, once a namespace has been terminating for
    /// `namespace_finalize_delay`: deletes the objects in it, then the namespace.
    fn finalize_namespace(&mut self, key: &Key, namespace: &Value) {
        let name = key.3.clone();
        let content: Vec<Key> = self
            .objects
            .keys()
            .filter(|(_, _, ns, _)| *ns == name)
            .cloned()
            .collect();
        for k in content {
            self.pending.remove(&k);
            if let Some(old) = self.objects.remove(&k) {
                self.resource_version += 1;
                self.deleted(&k, &old);
            }
        }
        self.recount_ips();
        self.objects.remove(key);
        self.resource_version += 1;
        self.deleted(key, namespace);
    }

    /// Stores a controller's change to an object (nothing if it changed nothing).
    fn controller_write(&mut self, key: &Key, mut new: Value) {
        if self.objects.get(key) == Some(&new) {
            return;
        }
        self.resource_version += 1;
        new["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        self.objects.insert(key.clone(), new);
    }

    /// The load-balancer controller: an address from the pool (or a hostname) for a
    /// LoadBalancer Service; none while the pool is used up.
    fn load_balancer(&self, key: &Key, o: &Value) -> Option<Value> {
        let mut new = o.clone();
        if !is_lb(o) {
            if !lb_ingress(o) {
                return None;
            }
            new["status"]["loadBalancer"] = json!({});
            return Some(new);
        }
        if lb_ingress(o) {
            return None;
        }
        let ingress = match &self.options.lb_hostname_domain {
            Some(domain) => json!({"hostname": format!("{}-{}.{domain}", key.3, key.2)}),
            None => json!({"ip": self.free_lb_address(o)?, "ipMode": "VIP"}),
        };
        new["status"]["loadBalancer"] = json!({"ingress": [ingress]});
        Some(new)
    }

    /// The Service's requested `spec.loadBalancerIP` if it is in the pool and free, else
    /// the pool's first free address.
    fn free_lb_address(&self, service: &Value) -> Option<String> {
        let (first, last) = parse_pool(&self.options.lb_pool)?;
        let used: std::collections::BTreeSet<u32> = self
            .objects
            .iter()
            .filter(|((g, p, _, _), _)| g.is_empty() && p == "services")
            .filter_map(|(_, s)| {
                s.pointer("/status/loadBalancer/ingress")
                    .and_then(Value::as_array)
            })
            .flatten()
            .filter_map(|i| i.get("ip").and_then(Value::as_str).and_then(parse_ip))
            .collect();
        let ip = match str_at(service, "/spec/loadBalancerIP") {
            Some(wanted) => {
                parse_ip(wanted).filter(|ip| (first..=last).contains(ip) && !used.contains(ip))?
            }
            None => (first..=last).find(|ip| !used.contains(ip))?,
        };
        Some(super::ip_string(ip))
    }

    /// The token controller: a token, the cluster's CA and the namespace for a
    /// service-account token Secret whose ServiceAccount exists, written by
    /// `kube-controller-manager` (which then owns those keys).
    fn token(&self, key: &Key, secret: &Value) -> Option<Value> {
        if !needs_token(secret) {
            return None;
        }
        let (ns, name) = (&key.2, &key.3);
        let sa_name = sa_name(secret)?;
        let sa = self.objects.get(&(
            String::new(),
            "serviceaccounts".into(),
            ns.clone(),
            sa_name.to_string(),
        ))?;
        let sa_uid = sa["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut new = secret.clone();
        if !new.get("data").is_some_and(Value::is_object) {
            new["data"] = json!({});
        }
        let data = &mut new["data"];
        if data.get("token").is_none() {
            data["token"] = json!(util::base64(jwt(ns, name, sa_name, &sa_uid).as_bytes()));
        }
        if data.get("ca.crt").is_none() {
            data["ca.crt"] = json!(util::base64(CLUSTER_CA_PEM.as_bytes()));
        }
        if data.get("namespace").is_none() {
            data["namespace"] = json!(util::base64(ns.as_bytes()));
        }
        new["metadata"]["annotations"][SA_UID_ANNOTATION] = json!(sa_uid);
        fields::record_update(
            Some(secret),
            &mut new,
            TOKEN_MANAGER,
            "v1",
            &util::now_rfc3339(),
        );
        Some(new)
    }

    fn namespace_exists(&self, name: &str) -> bool {
        self.objects.contains_key(&(
            String::new(),
            "namespaces".into(),
            String::new(),
            name.to_string(),
        ))
    }

    /// The Sail Operator's Istio controller: an IstioRevision for the active revision,
    /// and the status it mirrors from it.
    fn istio(&mut self, istio: &Value) -> Option<Value> {
        let name = istio["metadata"]["name"].as_str()?.to_string();
        let namespace = str_at(istio, "/spec/namespace")
            .unwrap_or(ISTIO_NAMESPACE)
            .to_string();
        let version = str_at(istio, "/spec/version")
            .unwrap_or(SAIL_VERSION)
            .to_string();
        let revision = if str_at(istio, "/spec/updateStrategy/type") == Some("RevisionBased") {
            format!("{name}-{}", version.replace('.', "-"))
        } else {
            name.clone()
        };
        let in_use = self.revision_in_use(&revision);
        let healthy = self.namespace_exists(&namespace);
        let rev_status =
            self.write_revision(istio, &revision, &namespace, &version, healthy, in_use);
        let old = Some(istio);
        let mut conditions = Vec::new();
        for kind in ["Reconciled", "Ready", "DependenciesHealthy"] {
            if let Some(c) = condition(&json!({"status": rev_status}), kind) {
                let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
                conditions.push(set_condition(
                    old,
                    kind,
                    &s("status"),
                    &s("reason"),
                    &s("message"),
                ));
            }
        }
        let mut new = istio.clone();
        new["status"] = json!({
            "observedGeneration": istio["metadata"]["generation"],
            "conditions": conditions,
            "state": rev_status["state"],
            "activeRevisionName": revision,
            "revisions": {
                "total": 1,
                "ready": if healthy { 1 } else { 0 },
                "inUse": if in_use { 1 } else { 0 },
            },
        });
        Some(new)
    }

    /// Whether a namespace points its workloads at `revision` (`istio.io/rev`, or
    /// `istio-injection=enabled` for the `default` revision).
    fn revision_in_use(&self, revision: &str) -> bool {
        self.objects
            .iter()
            .filter(|((g, p, _, _), _)| g.is_empty() && p == "namespaces")
            .any(|(_, ns)| {
                let label = |k: &str| {
                    ns.pointer("/metadata/labels")
                        .and_then(|l| l.get(k))
                        .and_then(Value::as_str)
                };
                label("istio.io/rev") == Some(revision)
                    || (revision == "default" && label("istio-injection") == Some("enabled"))
            })
    }

    /// Creates or updates the IstioRevision an Istio owns and removes the others it
    /// owned; returns the revision's status.
    fn write_revision(
        &mut self,
        istio: &Value,
        revision: &str,
        namespace: &str,
        version: &str,
        healthy: bool,
        in_use: bool,
    ) -> Value {
        let uid = istio["metadata"]["uid"].clone();
        let owned_by_istio = |o: &Value| {
            o.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
        };
        let before = self.objects.len();
        self.objects.retain(|(g, p, _, n), o| {
            !(g == SAIL && p == "istiorevisions" && n != revision && owned_by_istio(o))
        });
        if self.objects.len() != before {
            self.resource_version += 1;
        }
        let key: Key = (
            SAIL.into(),
            "istiorevisions".into(),
            String::new(),
            revision.to_string(),
        );
        let old = self.objects.get(&key).cloned();
        let mut values = istio
            .pointer("/spec/values")
            .cloned()
            .unwrap_or_else(|| json!({}));
        if !values.is_object() {
            values = json!({});
        }
        values["global"]["istioNamespace"] = json!(namespace);
        if revision != "default" {
            values["revision"] = json!(revision);
        }
        let old_ref = old.as_ref();
        let conditions = if healthy {
            vec![
                set_condition(old_ref, "Reconciled", "True", "", ""),
                set_condition(old_ref, "Ready", "True", "", ""),
                if in_use {
                    set_condition(
                        old_ref,
                        "InUse",
                        "True",
                        "ReferencedByWorkloads",
                        "Referenced by at least one pod or namespace",
                    )
                } else {
                    set_condition(
                        old_ref,
                        "InUse",
                        "False",
                        "NotReferencedByAnything",
                        "Not referenced by any pod or namespace",
                    )
                },
                set_condition(old_ref, "DependenciesHealthy", "True", "", ""),
            ]
        } else {
            vec![
                set_condition(
                    old_ref,
                    "Reconciled",
                    "False",
                    "ReconcileError",
                    &format!("namespace {namespace:?} doesn't exist"),
                ),
                set_condition(
                    old_ref,
                    "Ready",
                    "Unknown",
                    "ReconcileError",
                    "cannot determine readiness due to reconciliation error",
                ),
            ]
        };
        let status = json!({
            "conditions": conditions,
            "state": if healthy { "Healthy" } else { "ReconcileError" },
        });
        let api_version = format!("{SAIL}/v1");
        let spec = json!({"version": version, "namespace": namespace, "values": values});
        let mut rev = match &old {
            Some(o) => o.clone(),
            None => json!({
                "apiVersion": api_version, "kind": "IstioRevision",
                "metadata": {
                    "name": revision,
                    "uid": util::uid(),
                    "creationTimestamp": util::now_rfc3339(),
                    "generation": 1,
                    "ownerReferences": [{
                        "apiVersion": api_version, "kind": "Istio",
                        "name": istio["metadata"]["name"], "uid": uid,
                        "controller": true, "blockOwnerDeletion": true
                    }]
                }
            }),
        };
        if rev.get("spec") != Some(&spec) {
            if old.is_some() {
                let g = rev["metadata"]["generation"].as_i64().unwrap_or(1);
                rev["metadata"]["generation"] = json!(g + 1);
            }
            let before = rev.clone();
            rev["spec"] = spec;
            fields::record_update(
                old.as_ref().map(|_| &before),
                &mut rev,
                SAIL_MANAGER,
                &api_version,
                &util::now_rfc3339(),
            );
        }
        let mut status = status;
        status["observedGeneration"] = rev["metadata"]["generation"].clone();
        rev["status"] = status.clone();
        if self
            .types
            .iter()
            .any(|t| t.group == SAIL && t.plural == "istiorevisions")
        {
            self.controller_write(&key, rev);
        }
        status
    }

    /// The Sail Operator's IstioCNI controller.
    fn istio_cni(&self, cni: &Value) -> Option<Value> {
        let namespace = str_at(cni, "/spec/namespace").unwrap_or(CNI_NAMESPACE);
        let old = Some(cni);
        let (conditions, state) = if self.namespace_exists(namespace) {
            (
                vec![
                    set_condition(old, "Reconciled", "True", "", ""),
                    set_condition(old, "Ready", "True", "", ""),
                ],
                "Healthy",
            )
        } else {
            (
                vec![
                    set_condition(
                        old,
                        "Reconciled",
                        "False",
                        "ReconcileError",
                        &format!("namespace {namespace:?} doesn't exist"),
                    ),
                    set_condition(
                        old,
                        "Ready",
                        "Unknown",
                        "ReconcileError",
                        "cannot determine readiness due to reconciliation error",
                    ),
                ],
                "ReconcileError",
            )
        };
        let mut new = cni.clone();
        new["status"] = json!({
            "observedGeneration": cni["metadata"]["generation"],
            "conditions": conditions,
            "state": state,
        });
        Some(new)
    }

    /// The establishing controller: the CRD's kind is served from now on.
    fn establish(&mut self, crd: &Value) -> Option<Value> {
        if established(crd) {
            return None;
        }
        let rtype = crate::types::from_crd(crd).ok()?;
        let mut new = crd.clone();
        new["status"] = crd_status(crd, Some(crd), &rtype, true);
        self.serve_crd(&new);
        Some(new)
    }
}

/// Whether a workload controller has yet to report on this generation of a Deployment or
/// StatefulSet, or on a Job that has not finished.
fn workload_stale(o: &Value) -> bool {
    if o["kind"] == "Job" {
        return !["Complete", "Failed"]
            .iter()
            .any(|k| condition(o, k).is_some_and(|c| c["status"] == "True"));
    }
    o.pointer("/status/observedGeneration") != o.pointer("/metadata/generation")
        || o.pointer("/status/updatedReplicas").and_then(Value::as_i64)
            != Some(spec_replicas(o)).filter(|r| *r > 0)
}

/// `spec.replicas`, 1 when unset.
fn spec_replicas(o: &Value) -> i64 {
    o.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
        .max(0)
}

/// Sets `status[key]` to `n`, leaving it out when zero (as the API's `omitempty`).
fn set_count(status: &mut Value, key: &str, n: i64) {
    if n > 0 {
        status[key] = json!(n);
    } else if let Some(m) = status.as_object_mut() {
        m.remove(key);
    }
}

/// A short stable hash of a pod template (a stand-in for the controllers' pod-template
/// hash: FNV-1a of its JSON, 10 hex digits).
fn template_hash(o: &Value) -> String {
    let text = o
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_default()
        .to_string();
    let h = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{:010x}", h & 0xff_ffff_ffff)
}

/// The Deployment controller once the new ReplicaSet's pods are all up: every replica
/// updated, ready and available.
fn deployment_rolled_out(d: &Value) -> Value {
    let replicas = spec_replicas(d);
    let name = d["metadata"]["name"].as_str().unwrap_or_default();
    let old = Some(d);
    let mut status = json!({"observedGeneration": d["metadata"]["generation"]});
    for key in [
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
    ] {
        set_count(&mut status, key, replicas);
    }
    status["conditions"] = json!([
        set_condition(
            old,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability."
        ),
        set_condition(
            old,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            &format!(
                "ReplicaSet \"{name}-{}\" has successfully progressed.",
                template_hash(d)
            )
        ),
    ]);
    let mut new = d.clone();
    new["status"] = status;
    new
}

/// The StatefulSet controller once every pod of the current revision is ready.
fn statefulset_rolled_out(s: &Value) -> Value {
    let replicas = spec_replicas(s);
    let name = s["metadata"]["name"].as_str().unwrap_or_default();
    let revision = format!("{name}-{}", template_hash(s));
    let mut status = json!({
        "observedGeneration": s["metadata"]["generation"],
        "replicas": replicas,
        "currentRevision": revision,
        "updateRevision": revision,
        "collisionCount": 0,
    });
    for key in [
        "readyReplicas",
        "currentReplicas",
        "updatedReplicas",
        "availableReplicas",
    ] {
        set_count(&mut status, key, replicas);
    }
    let mut new = s.clone();
    new["status"] = status;
    new
}

/// The Job controller once its pods have run: `Complete`, or `Failed` (backoff limit
/// reached) when the pod template asks for it with [`FAIL_ANNOTATION`].
fn job_finished(j: &Value) -> Option<Value> {
    if !workload_stale(j) {
        return None;
    }
    let fails = j
        .pointer("/spec/template/metadata/annotations")
        .and_then(|a| a.get(FAIL_ANNOTATION))
        .and_then(Value::as_str)
        == Some("true");
    let now = util::now_rfc3339();
    let old = Some(j);
    let status = if fails {
        let backoff = j
            .pointer("/spec/backoffLimit")
            .and_then(Value::as_i64)
            .unwrap_or(6);
        json!({
            "startTime": now,
            "failed": backoff + 1,
            "conditions": [
                set_condition(old, "FailureTarget", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
                set_condition(old, "Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
            ],
        })
    } else {
        let completions = j
            .pointer("/spec/completions")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        json!({
            "startTime": now,
            "completionTime": now,
            "succeeded": completions,
            "conditions": [
                set_condition(old, "SuccessCriteriaMet", "True", "CompletionsReached", "Reached expected number of succeeded pods"),
                set_condition(old, "Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods"),
            ],
        })
    };
    let mut new = j.clone();
    new["status"] = status;
    Some(new)
}

/// A service-account token shaped as the legacy token controller issues them: a JWT
/// with the real claims, signed by nothing (the signature is random bytes).
fn jwt(namespace: &str, secret: &str, sa: &str, sa_uid: &str) -> String {
    let header = json!({"alg": "RS256", "kid": util::base64url(&util::random_bytes(32))});
    let claims = json!({
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/secret.name": secret,
        "kubernetes.io/serviceaccount/service-account.name": sa,
        "kubernetes.io/serviceaccount/service-account.uid": sa_uid,
        "sub": format!("system:serviceaccount:{namespace}:{sa}"),
    });
    format!(
        "{}.{}.{}",
        util::base64url(header.to_string().as_bytes()),
        util::base64url(claims.to_string().as_bytes()),
        util::base64url(&util::random_bytes(256))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_are_ranges_or_cidrs() {
        let ip = |s| parse_ip(s).unwrap();
        assert_eq!(
            parse_pool("198.51.100.10-198.51.100.19"),
            Some((ip("198.51.100.10"), ip("198.51.100.19")))
        );
        assert_eq!(
            parse_pool("198.51.100.0/24"),
            Some((ip("198.51.100.1"), ip("198.51.100.254")))
        );
        assert_eq!(
            parse_pool("203.0.113.7/32"),
            Some((ip("203.0.113.7"), ip("203.0.113.7")))
        );
        assert_eq!(parse_pool("nonsense"), None);
        assert_eq!(parse_pool("198.51.100.9-198.51.100.1"), None);
    }

    #[test]
    fn tokens_look_like_jwts() {
        let t = jwt("ns", "s", "sa", "u");
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| !p.is_empty() && !p.contains('=')));
        assert!(CLUSTER_CA_PEM.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(CLUSTER_CA_PEM
            .trim_end()
            .ends_with("-----END CERTIFICATE-----"));
    }
}
