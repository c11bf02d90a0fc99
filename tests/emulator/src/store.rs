//! The API server's logic, without HTTP: discovery, OpenAPI, and the object store with
//! its writes (create, update, patch, apply, delete), server-set fields and errors.

mod controllers;

pub use controllers::CLUSTER_CA_PEM;

use crate::fields;
use crate::table;
use crate::types::{self, ResourceType};
use crate::util;
use crate::validation::{self, FieldError};
use crate::Options;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::Instant;

/// One request, as the HTTP layer hands it over.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: String,
    pub accept: String,
    pub user_agent: String,
    pub body: Vec<u8>,
}

/// The answer to one request.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(String, String)>,
}

impl Response {
    fn ok(body: Value) -> Response {
        Response {
            status: 200,
            body,
            headers: Vec::new(),
        }
    }
}

/// A `Status` error response with the real reason and code.
pub fn status_error(code: u16, reason: &str, message: &str, details: Option<Value>) -> Response {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(d) = details {
        body["details"] = d;
    }
    // An error without a reason (as the server's for errors it did not classify) has
    // none in its body either.
    if reason.is_empty() {
        if let Some(m) = body.as_object_mut() {
            m.remove("reason");
        }
    }
    Response {
        status: code,
        body,
        headers: Vec::new(),
    }
}

type Key = (String, String, String, String); // group, plural, namespace, name

/// The User-Agent of writes made with `Emulator::seed`.
const SEED_AGENT: &str = "emulator-seed";

/// Everything one emulated cluster holds.
pub struct Store {
    types: Vec<ResourceType>,
    objects: BTreeMap<Key, Value>,
    resource_version: u64,
    service_net: (u32, u32),
    used_ips: std::collections::BTreeSet<u32>,
    version_minor: &'static str,
    options: Options,
    /// Objects the cluster's controllers will look at again, and when.
    pending: BTreeMap<Key, Instant>,
}

fn parse_cidr(cidr: &str) -> (u32, u32) {
    let (ip, bits) = cidr.split_once('/').unwrap_or((cidr, "24"));
    let mut n = 0u32;
    for part in ip.split('.') {
        n = (n << 8) | part.parse::<u32>().unwrap_or(0);
    }
    let bits: u32 = bits.parse().unwrap_or(24).min(30);
    let size = 1u32 << (32 - bits);
    (n & !(size - 1), size)
}

fn ip_string(n: u32) -> String {
    format!(
        "{}.{}.{}.{}",
        n >> 24,
        (n >> 16) & 255,
        (n >> 8) & 255,
        n & 255
    )
}

fn resource_name(t: &ResourceType) -> String {
    if t.group.is_empty() {
        t.plural.clone()
    } else {
        format!("{}.{}", t.plural, t.group)
    }
}

impl Store {
    pub fn new(options: &Options) -> Store {
        let mut store = Store {
            types: types::builtins(),
            objects: BTreeMap::new(),
            resource_version: 100,
            service_net: parse_cidr(&options.service_cidr),
            used_ips: Default::default(),
            version_minor: "32",
            options: options.clone(),
            pending: BTreeMap::new(),
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let _ = store
                .seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
        }
        for crd in types::istio_crds() {
            let _ = store.seed(crd);
        }
        // The `kubernetes` Service takes the first address, as on a real cluster.
        let _ = store.seed(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 6443}]}
        }));
        store
    }

    pub fn resource_version(&self) -> u64 {
        self.resource_version
    }

    /// Creates an object directly (as the cluster's own components or an operator would).
    pub fn seed(&mut self, object: Value) -> Result<Value, String> {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), api_version.clone()),
        };
        let t = self
            .types
            .iter()
            .find(|t| t.group == group && t.kind == kind && t.serves(&version))
            .ok_or_else(|| format!("kind {kind} in {api_version} is not served"))?;
        let ns = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut path = if group.is_empty() {
            "/api/v1".to_string()
        } else {
            format!("/apis/{group}/{version}")
        };
        if t.namespaced {
            path += &format!("/namespaces/{}", ns.unwrap_or_else(|| "default".into()));
        }
        path += &format!("/{}", t.plural);
        let req = Request {
            method: "POST".into(),
            path,
            body: serde_json::to_vec(&object).unwrap_or_default(),
            content_type: "application/json".into(),
            user_agent: SEED_AGENT.into(),
            ..Default::default()
        };
        let resp = self.handle(&req);
        if resp.status < 300 {
            Ok(resp.body)
        } else {
            Err(resp.body["message"]
                .as_str()
                .unwrap_or("failed")
                .to_string())
        }
    }

    /// Looks an object up directly (for tests).
    pub fn get(&self, group: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let t = self
            .types
            .iter()
            .find(|t| t.group == group && t.kind == kind)?;
        let ns = if t.namespaced { namespace } else { "" };
        self.objects
            .get(&(group.into(), t.plural.clone(), ns.into(), name.into()))
            .cloned()
    }

    /// Serves one request. The cluster's controllers catch up first (work that fell due
    /// since the last request) and again after it (work due at once).
    pub fn handle(&mut self, req: &Request) -> Response {
        self.tick();
        let resp = self.serve(req);
        self.tick();
        resp
    }

    fn serve(&mut self, req: &Request) -> Response {
        let path = req.path.trim_end_matches('/');
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match (req.method.as_str(), segs.as_slice()) {
            ("GET", ["version"]) => Response::ok(json!({
                "major": "1", "minor": self.version_minor,
                "gitVersion": format!("v1.{}.0-dcm-emulator", self.version_minor),
                "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.23", "compiler": "gc", "platform": "linux/amd64"
            })),
            ("GET", ["healthz" | "readyz" | "livez"]) => Response::ok(json!("ok")),
            ("GET", ["api"]) => Response::ok(json!({
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]
            })),
            ("GET", ["apis"]) => Response::ok(json!({
                "kind": "APIGroupList", "apiVersion": "v1", "groups": self.groups()
            })),
            ("GET", ["apis", group]) => {
                match self.groups().into_iter().find(|g| g["name"] == *group) {
                    Some(mut g) => {
                        g["kind"] = json!("APIGroup");
                        g["apiVersion"] = json!("v1");
                        Response::ok(g)
                    }
                    None => not_found_path(path),
                }
            }
            ("GET", ["api", "v1"]) => self.resource_list("", "v1"),
            ("GET", ["apis", group, version]) => self.resource_list(group, version),
            ("GET", ["openapi", "v3"]) => Response::ok(self.openapi_index()),
            ("GET", ["openapi", "v3", "api", "v1"]) => self.openapi_doc("", "v1"),
            ("GET", ["openapi", "v3", "apis", group, version]) => self.openapi_doc(group, version),
            _ => self.resource_request(req, &segs),
        }
    }

    fn groups(&self) -> Vec<Value> {
        let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for t in self.types.iter().filter(|t| !t.group.is_empty()) {
            let vs = groups.entry(&t.group).or_default();
            for v in &t.versions {
                if !vs.contains(&v.as_str()) {
                    vs.push(v);
                }
            }
        }
        groups
            .into_iter()
            .map(|(g, mut vs)| {
                // Highest-priority version first (GA, then beta, then alpha), and that one
                // preferred, as the API server orders a group's versions.
                vs.sort_by_key(|v| std::cmp::Reverse(version_rank(v)));
                let pref = vs[0];
                json!({
                    "name": g,
                    "versions": vs.iter().map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v})).collect::<Vec<_>>(),
                    "preferredVersion": {"groupVersion": format!("{g}/{pref}"), "version": pref},
                })
            })
            .collect()
    }

    fn resource_list(&self, group: &str, version: &str) -> Response {
        let resources: Vec<Value> = self
            .types
            .iter()
            .filter(|t| t.group == group && t.serves(version))
            .map(ResourceType::discovery)
            .collect();
        if resources.is_empty() {
            return not_found_path(&format!("/apis/{group}/{version}"));
        }
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        Response::ok(json!({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources
        }))
    }

    fn group_versions(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for t in &self.types {
            for v in &t.versions {
                let gv = (t.group.clone(), v.clone());
                if !out.contains(&gv) {
                    out.push(gv);
                }
            }
        }
        out.sort();
        out
    }

    fn openapi_index(&self) -> Value {
        let mut paths = Map::new();
        for (g, v) in self.group_versions() {
            let key = if g.is_empty() {
                format!("api/{v}")
            } else {
                format!("apis/{g}/{v}")
            };
            let doc = self.openapi_doc(&g, &v).body;
            let hash = fnv(&serde_json::to_vec(&doc).unwrap_or_default());
            paths.insert(
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash:016X}")}),
            );
        }
        json!({ "paths": paths })
    }

    /// An OpenAPI v3 document for one group version: each resource's paths with the
    /// operations and query parameters kubectl looks for before it writes.
    fn openapi_doc(&self, group: &str, version: &str) -> Response {
        let mut paths = Map::new();
        let mut any = false;
        for t in self
            .types
            .iter()
            .filter(|t| t.group == group && t.serves(version))
        {
            any = true;
            let gvk = json!({"group": group, "version": version, "kind": t.kind});
            let prefix = if group.is_empty() {
                format!("/api/{version}")
            } else {
                format!("/apis/{group}/{version}")
            };
            let base = if t.namespaced {
                format!("{prefix}/namespaces/{{namespace}}/{}", t.plural)
            } else {
                format!("{prefix}/{}", t.plural)
            };
            let param = |name: &str, kind: &str| json!({"name": name, "in": "query", "schema": {"type": kind}, "uniqueItems": true});
            let write_params = vec![
                param("dryRun", "string"),
                param("fieldManager", "string"),
                param("fieldValidation", "string"),
            ];
            let mut patch_params = write_params.clone();
            patch_params.push(param("force", "boolean"));
            let op = |action: &str, params: &Vec<Value>| {
                json!({
                    "operationId": format!("{action}{}", t.kind),
                    "x-kubernetes-action": action,
                    "x-kubernetes-group-version-kind": gvk,
                    "parameters": params,
                    "responses": {"200": {"description": "OK"}}
                })
            };
            let mut item_params = vec![
                json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}),
            ];
            if t.namespaced {
                item_params.push(json!({"name": "namespace", "in": "path", "required": true, "schema": {"type": "string"}}));
            }
            let mut path_params = item_params.clone();
            path_params.extend(patch_params.clone());
            paths.insert(
                format!("{base}/{{name}}"),
                json!({
                    "get": op("get", &vec![]),
                    "put": op("put", &write_params),
                    "patch": op("patch", &patch_params),
                    "delete": op("delete", &vec![param("dryRun", "string")]),
                    "parameters": path_params,
                }),
            );
            paths.insert(
                base,
                json!({"get": op("list", &vec![]), "post": op("post", &write_params)}),
            );
        }
        if !any {
            return not_found_path(&format!("/openapi/v3/apis/{group}/{version}"));
        }
        Response::ok(json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": format!("v1.{}.0", self.version_minor)},
            "paths": paths,
            "components": {"schemas": {}}
        }))
    }

    fn locate(&self, segs: &[&str]) -> Result<ReqTarget, Response> {
        let (group, version, rest) = match segs {
            ["api", v, rest @ ..] => ("", *v, rest),
            ["apis", g, v, rest @ ..] => (*g, *v, rest),
            _ => return Err(not_found_path(&format!("/{}", segs.join("/")))),
        };
        let (namespace, plural, name) = match rest {
            ["namespaces", ns, plural, tail @ ..] => (Some(ns.to_string()), *plural, tail),
            [plural, tail @ ..] => (None, *plural, tail),
            [] => return Err(not_found_path(&format!("/{}", segs.join("/")))),
        };
        let name = match name {
            [] => None,
            [n] => Some(n.to_string()),
            _ => return Err(not_found_path(&format!("/{}", segs.join("/")))),
        };
        let rtype = self
            .types
            .iter()
            .find(|t| t.group == group && t.plural == plural && t.serves(version))
            .ok_or_else(|| not_found_path(&format!("/{}", segs.join("/"))))?;
        if namespace.is_some() && !rtype.namespaced {
            return Err(not_found_path(&format!("/{}", segs.join("/"))));
        }
        Ok(ReqTarget {
            rtype: rtype.clone(),
            version: version.to_string(),
            namespace,
            name,
        })
    }

    fn resource_request(&mut self, req: &Request, segs: &[&str]) -> Response {
        let t = match self.locate(segs) {
            Ok(t) => t,
            Err(r) => return r,
        };
        let dry_run = match req.query.get("dryRun").map(String::as_str) {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => {
                return status_error(
                    400,
                    "BadRequest",
                    &format!("Invalid dry run value: {other:?}: supported values: \"All\""),
                    None,
                )
            }
        };
        match (req.method.as_str(), &t.name) {
            ("GET", None) => self.list(req, &t),
            ("GET", Some(name)) => self.get_one(req, &t, name),
            ("POST", None) => self.create(req, &t, dry_run),
            ("PUT", Some(name)) => self.update(req, &t, name, dry_run),
            ("PATCH", Some(name)) => self.patch(req, &t, name, dry_run),
            ("DELETE", Some(name)) => self.delete(&t, name, dry_run),
            (m, _) => status_error(
                405,
                "MethodNotAllowed",
                &format!("the server does not allow this method on the requested resource ({m})"),
                None,
            ),
        }
    }

    fn key(&self, t: &ReqTarget, name: &str) -> Key {
        (
            t.rtype.group.clone(),
            t.rtype.plural.clone(),
            if t.rtype.namespaced {
                t.namespace.clone().unwrap_or_default()
            } else {
                String::new()
            },
            name.to_string(),
        )
    }

    fn not_found(&self, t: &ReqTarget, name: &str) -> Response {
        status_error(
            404,
            "NotFound",
            &format!("{} {name:?} not found", resource_name(&t.rtype)),
            Some(json!({"name": name, "group": t.rtype.group, "kind": t.rtype.plural})),
        )
    }

    /// The stored object as served at the requested version.
    fn present(&self, t: &ReqTarget, object: &Value) -> Value {
        let mut o = object.clone();
        o["apiVersion"] = json!(t.rtype.api_version(&t.version));
        o
    }

    fn list(&self, req: &Request, t: &ReqTarget) -> Response {
        if req
            .query
            .get("watch")
            .is_some_and(|w| w == "true" || w == "1")
        {
            return status_error(
                405,
                "MethodNotAllowed",
                "watch is not supported by the dcm Kubernetes API emulator",
                None,
            );
        }
        let labels = match req
            .query
            .get("labelSelector")
            .map(|s| util::parse_selector(s))
        {
            Some(Err(e)) => return status_error(400, "BadRequest", &e, None),
            Some(Ok(r)) => r,
            None => Vec::new(),
        };
        let fields = match req
            .query
            .get("fieldSelector")
            .map(|s| util::parse_selector(s))
        {
            Some(Err(e)) => return status_error(400, "BadRequest", &e, None),
            Some(Ok(r)) => r,
            None => Vec::new(),
        };
        for f in &fields {
            let key = match f {
                util::Requirement::Equals(k, _) | util::Requirement::NotEquals(k, _) => k,
                _ => "",
            };
            if key != "metadata.name" && key != "metadata.namespace" {
                return status_error(
                    400,
                    "BadRequest",
                    &format!("field label not supported: {key}"),
                    None,
                );
            }
        }
        let ns = t.namespace.clone().unwrap_or_default();
        let mut items: Vec<Value> = self
            .objects
            .iter()
            .filter(|((g, p, n, _), _)| {
                *g == t.rtype.group && *p == t.rtype.plural && (ns.is_empty() || *n == ns)
            })
            .map(|(_, o)| o)
            .filter(|o| util::matches(&labels, o.pointer("/metadata/labels")))
            .filter(|o| {
                let meta = json!({
                    "metadata.name": o.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
                    "metadata.namespace": o.pointer("/metadata/namespace").cloned().unwrap_or(json!("")),
                });
                util::matches(&fields, Some(&meta))
            })
            .map(|o| self.present(t, o))
            .collect();
        let start: usize = req
            .query
            .get("continue")
            .and_then(|c| c.split_once(':'))
            .and_then(|(_, i)| i.parse().ok())
            .unwrap_or(0);
        let limit: usize = req
            .query
            .get("limit")
            .and_then(|l| l.parse().ok())
            .filter(|l| *l > 0)
            .unwrap_or(usize::MAX);
        let total = items.len();
        let end = start.saturating_add(limit).min(total);
        items = items.drain(start.min(total)..end).collect();
        let mut meta = json!({"resourceVersion": self.resource_version.to_string()});
        if end < total {
            meta["continue"] = json!(format!("{}:{end}", self.resource_version));
            meta["remainingItemCount"] = json!(total - end);
        }
        if wants_table(req) {
            return Response::ok(table::table(
                &t.rtype,
                &t.version,
                &items,
                meta,
                include_object(req),
            ));
        }
        if wants_metadata_only(req) {
            return Response::ok(json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": meta,
                "items": items.iter().map(partial_object_metadata).collect::<Vec<_>>(),
            }));
        }
        Response::ok(json!({
            "kind": format!("{}List", t.rtype.kind),
            "apiVersion": t.rtype.api_version(&t.version),
            "metadata": meta,
            "items": items,
        }))
    }

    fn get_one(&self, req: &Request, t: &ReqTarget, name: &str) -> Response {
        match self.objects.get(&self.key(t, name)) {
            Some(o) if wants_metadata_only(req) => {
                Response::ok(partial_object_metadata(&self.present(t, o)))
            }
            Some(o) => {
                let o = self.present(t, o);
                if wants_table(req) {
                    let meta = json!({"resourceVersion": o["metadata"]["resourceVersion"]});
                    Response::ok(table::table(
                        &t.rtype,
                        &t.version,
                        &[o],
                        meta,
                        include_object(req),
                    ))
                } else {
                    Response::ok(o)
                }
            }
            None => self.not_found(t, name),
        }
    }

    /// The field manager of a non-apply write: `fieldManager`, else the client's name
    /// from its User-Agent, as a real server derives it.
    fn manager(req: &Request) -> String {
        match req.query.get("fieldManager") {
            Some(m) if !m.is_empty() => m.clone(),
            _ => match req.user_agent.split('/').next() {
                Some(ua) if !ua.is_empty() => ua.to_string(),
                _ => "unknown".to_string(),
            },
        }
    }

    fn parse_body(req: &Request) -> Result<Value, Response> {
        let unsupported = |why: &str| {
            status_error(
                415,
                "UnsupportedMediaType",
                &format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {:?}; {why})",
                    req.content_type
                ),
                None,
            )
        };
        if req.content_type.contains("protobuf") {
            return crate::protobuf::decode(&req.body).map_err(|e| unsupported(&e));
        }
        if req.content_type.contains("cbor") {
            return Err(unsupported("this emulator does not speak CBOR"));
        }
        let parsed: Result<Value, String> = if req.content_type.contains("yaml") {
            // YAML includes JSON, and clients (kube, kubectl) send apply patches as JSON
            // under a YAML media type: JSON's parser reads those at a fraction of the cost.
            // (A key given twice: the last one wins, as with the API server's default
            // field validation, which only warns.) Anything else goes to YAML's.
            match serde_json::from_slice::<Value>(&req.body) {
                Ok(v) => Ok(v),
                Err(_) => serde_yaml_ng::from_slice(&req.body).map_err(|e| e.to_string()),
            }
        } else {
            serde_json::from_slice(&req.body).map_err(|e| e.to_string())
        };
        parsed.map_err(|e| {
            status_error(
                400,
                "BadRequest",
                &format!(
                    "the body of the request was in an unknown format or could not be decoded: {e}"
                ),
                None,
            )
        })
    }

    /// Checks kind, apiVersion, name and namespace of a written object against the request.
    fn check_identity(
        &self,
        t: &ReqTarget,
        o: &mut Value,
        name: Option<&str>,
    ) -> Result<(), Response> {
        if !o.is_object() {
            return Err(status_error(
                400,
                "BadRequest",
                "the object must be a JSON object",
                None,
            ));
        }
        let kind = o.get("kind").and_then(Value::as_str).unwrap_or_default();
        if kind != t.rtype.kind {
            return Err(status_error(
                400,
                "BadRequest",
                &format!(
                    "the API version in the data ({}) does not match the expected API version ({}) or kind {kind:?} is not {:?}",
                    o.get("apiVersion").and_then(Value::as_str).unwrap_or_default(),
                    t.rtype.api_version(&t.version),
                    t.rtype.kind
                ),
                None,
            ));
        }
        o["apiVersion"] = json!(t.rtype.api_version(&t.version));
        if !o.get("metadata").is_some_and(Value::is_object) {
            o["metadata"] = json!({});
        }
        let body_ns = o
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        if t.rtype.namespaced {
            let ns = t.namespace.clone().unwrap_or_default();
            match body_ns {
                Some(b) if !b.is_empty() && b != ns => {
                    return Err(status_error(
                        400,
                        "BadRequest",
                        "the namespace of the provided object does not match the namespace sent on the request",
                        None,
                    ))
                }
                _ => o["metadata"]["namespace"] = json!(ns),
            }
        } else if let Some(meta) = o["metadata"].as_object_mut() {
            meta.remove("namespace");
        }
        if let Some(name) = name {
            let body_name = o.pointer("/metadata/name").and_then(Value::as_str);
            match body_name {
                Some(b) if b != name => {
                    return Err(status_error(
                        400,
                        "BadRequest",
                        &format!(
                        "the name of the object ({b}) does not match the name on the URL ({name})"
                    ),
                        None,
                    ))
                }
                _ => o["metadata"]["name"] = json!(name),
            }
        }
        Ok(())
    }

    fn invalid(t: &ReqTarget, name: &str, field: &str, message: String) -> Response {
        Self::invalid_all(
            t,
            name,
            &[FieldError {
                field: field.to_string(),
                reason: if message.starts_with("Required value") {
                    "FieldValueRequired"
                } else {
                    "FieldValueInvalid"
                },
                body: message,
            }],
        )
    }

    /// 422 Invalid for these errors, as the server words it: `Deployment.apps "web" is
    /// invalid: ...` with one cause per error.
    fn invalid_all(t: &ReqTarget, name: &str, errors: &[FieldError]) -> Response {
        let qualified_kind = if t.rtype.group.is_empty() {
            t.rtype.kind.clone()
        } else {
            format!("{}.{}", t.rtype.kind, t.rtype.group)
        };
        status_error(
            422,
            "Invalid",
            &format!(
                "{qualified_kind} {name:?} is invalid: {}",
                validation::aggregate(errors)
            ),
            Some(json!({
                "name": name, "group": t.rtype.group, "kind": t.rtype.kind,
                "causes": errors.iter().map(FieldError::cause).collect::<Vec<_>>()
            })),
        )
    }

    /// A value of the wrong type in a built-in object.
    fn type_error(t: &ReqTarget, o: &Value) -> Option<validation::TypeError> {
        if t.rtype.custom {
            return None;
        }
        validation::type_error(&t.rtype.kind, o)
    }

    /// 400 BadRequest when a create's or update's body does not decode into the kind.
    fn undecodable(t: &ReqTarget, o: &Value) -> Option<Response> {
        let e = Self::type_error(t, o)?;
        let kind = &t.rtype.kind;
        Some(status_error(
            400,
            "BadRequest",
            &format!(
                "{kind} in version {:?} cannot be handled as a {kind}: {}",
                t.version,
                e.json_message()
            ),
            None,
        ))
    }

    /// Validation and defaulting that every write goes through; returns warnings.
    fn admit(
        &mut self,
        req: &Request,
        t: &ReqTarget,
        o: &mut Value,
        old: Option<&Value>,
    ) -> Result<Vec<String>, Response> {
        let name = o
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        // Namespace lifecycle admission first: the namespace must exist, and new
        // objects may not go into one that is terminating.
        if t.rtype.namespaced {
            let ns = t.namespace.clone().unwrap_or_default();
            let Some(namespace) = self.objects.get(&(
                String::new(),
                "namespaces".into(),
                String::new(),
                ns.clone(),
            )) else {
                return Err(status_error(
                    404,
                    "NotFound",
                    &format!("namespaces {ns:?} not found"),
                    Some(json!({"name": ns, "kind": "namespaces"})),
                ));
            };
            if old.is_none() && namespace.pointer("/metadata/deletionTimestamp").is_some() {
                return Err(status_error(
                    403,
                    "Forbidden",
                    &format!(
                        "{} {name:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        resource_name(&t.rtype)
                    ),
                    Some(json!({
                        "name": name, "group": t.rtype.group, "kind": t.rtype.plural,
                        "causes": [{
                            "reason": "NamespaceTerminating",
                            "message": format!("namespace {ns} is being terminated"),
                            "field": "metadata.namespace"
                        }]
                    })),
                ));
            }
        }
        let errors = validation::validate(&t.rtype.group, &t.rtype.kind, t.rtype.custom, o);
        if !errors.is_empty() {
            return Err(Self::invalid_all(t, &name, &errors));
        }
        let mut warnings = Vec::new();
        if !t.rtype.fields.is_empty() || t.rtype.schema.is_some() {
            let allowed: Vec<String> = if t.rtype.fields.is_empty() {
                let mut a: Vec<String> = ["apiVersion", "kind", "metadata"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                let schema = t.rtype.schema.as_ref();
                if schema.and_then(|s| s.get("x-kubernetes-preserve-unknown-fields"))
                    == Some(&json!(true))
                {
                    a.clear();
                } else if let Some(props) = schema
                    .and_then(|s| s.get("properties"))
                    .and_then(Value::as_object)
                {
                    a.extend(props.keys().cloned());
                } else {
                    a.clear();
                }
                a
            } else {
                t.rtype.fields.iter().map(|s| s.to_string()).collect()
            };
            if !allowed.is_empty() {
                if let Some(map) = o.as_object() {
                    for k in map.keys() {
                        if !allowed.iter().any(|a| a == k) {
                            warnings.push(format!("unknown field {k:?}"));
                        }
                    }
                }
            }
        }
        if !warnings.is_empty()
            && req.query.get("fieldValidation").map(String::as_str) == Some("Strict")
        {
            return Err(status_error(
                400,
                "BadRequest",
                &format!("strict decoding error: {}", warnings.join(", ")),
                None,
            ));
        }
        if req.query.get("fieldValidation").map(String::as_str) == Some("Ignore") {
            warnings.clear();
        }
        match t.rtype.kind.as_str() {
            "Namespace" => {
                o["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
                o["spec"] = json!({"finalizers": ["kubernetes"]});
                // A terminating namespace stays so, whatever a client writes.
                o["status"] =
                    match old.filter(|o| o.pointer("/metadata/deletionTimestamp").is_some()) {
                        Some(old) => old["status"].clone(),
                        None => json!({"phase": "Active"}),
                    };
            }
            "Secret" => {
                if let Some(Value::Object(sd)) =
                    o.as_object_mut().and_then(|m| m.remove("stringData"))
                {
                    for (k, v) in sd {
                        let s = v.as_str().unwrap_or_default().to_string();
                        o["data"][k] = json!(util::base64(s.as_bytes()));
                    }
                }
                if let Some(data) = o.get("data").and_then(Value::as_object) {
                    for (k, v) in data {
                        if !v.as_str().is_some_and(util::is_base64) {
                            return Err(Self::invalid(
                                t,
                                &name,
                                &format!("data[{k}]"),
                                "Invalid value: illegal base64 data".into(),
                            ));
                        }
                    }
                }
                if o.get("type").is_none() {
                    o["type"] = json!("Opaque");
                }
                if o["type"] == controllers::TOKEN_SECRET_TYPE
                    && o.pointer("/metadata/annotations")
                        .and_then(|a| a.get(controllers::SA_NAME_ANNOTATION))
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                {
                    return Err(Self::invalid(
                        t,
                        &name,
                        &format!("metadata.annotations[{}]", controllers::SA_NAME_ANNOTATION),
                        "Required value".into(),
                    ));
                }
            }
            "Service" => self.default_service(t, &name, o, old)?,
            "Istio" | "IstioCNI" if t.rtype.group == "sailoperator.io" => {
                controllers::default_sail(&t.rtype.kind, o)
            }
            "CustomResourceDefinition" => {
                let rtype = types::from_crd(o).map_err(|m| Self::invalid(t, &name, "spec", m))?;
                // Served at once when it is already, when the cluster itself seeds it, or
                // when establishing takes no time; else only once the delay has passed.
                let established = old.is_some_and(controllers::established)
                    || req.user_agent == SEED_AGENT
                    || self.options.crd_established_delay == Some(std::time::Duration::ZERO);
                o["status"] = controllers::crd_status(o, old, &rtype, established);
                if let Some(clash) = self
                    .types
                    .iter()
                    .find(|x| x.group == rtype.group && x.plural == rtype.plural && !x.custom)
                {
                    return Err(Self::invalid(
                        t,
                        &name,
                        "spec.names.plural",
                        format!("Invalid value: {:?}: is already served", clash.plural),
                    ));
                }
            }
            _ => {}
        }
        Ok(warnings)
    }

    fn default_service(
        &mut self,
        t: &ReqTarget,
        name: &str,
        o: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), Response> {
        if !o.get("spec").is_some_and(Value::is_object) {
            o["spec"] = json!({});
        }
        let spec = &mut o["spec"];
        if spec.get("type").is_none() {
            spec["type"] = json!("ClusterIP");
        }
        if spec.get("sessionAffinity").is_none() {
            spec["sessionAffinity"] = json!("None");
        }
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports {
                if p.get("protocol").is_none() {
                    p["protocol"] = json!("TCP");
                }
                if p.get("targetPort").is_none() {
                    p["targetPort"] = p["port"].clone();
                }
            }
        }
        if spec["type"] == "ExternalName" {
            return Ok(());
        }
        let old_ip = old.and_then(|o| o.pointer("/spec/clusterIP")).cloned();
        let ip = match (spec.get("clusterIP").and_then(Value::as_str), &old_ip) {
            (None | Some(""), Some(old)) => old.clone(),
            (Some(ip), Some(old)) if old.as_str() != Some(ip) => {
                return Err(Self::invalid(
                    t,
                    name,
                    "spec.clusterIP",
                    format!("Invalid value: {ip:?}: field is immutable"),
                ));
            }
            (Some(ip), _) if !ip.is_empty() => json!(ip),
            _ => {
                let (base, size) = self.service_net;
                let free = (1..size - 1)
                    .map(|i| base + i)
                    .find(|ip| !self.used_ips.contains(ip));
                match free {
                    Some(ip) => json!(ip_string(ip)),
                    None => return Err(status_error(
                        500,
                        "InternalError",
                        "Internal error occurred: failed to allocate a serviceIP: range is full",
                        None,
                    )),
                }
            }
        };
        spec["clusterIP"] = ip.clone();
        if ip != "None" {
            spec["clusterIPs"] = json!([ip]);
        }
        Ok(())
    }

    /// The addresses in use are those of the Services that are left.
    fn recount_ips(&mut self) {
        self.used_ips.clear();
        let services: Vec<Value> = self
            .objects
            .values()
            .filter(|o| o["kind"] == "Service")
            .cloned()
            .collect();
        for o in services {
            self.reserve_ip(&o);
        }
    }

    fn reserve_ip(&mut self, o: &Value) {
        if let Some(ip) = o.pointer("/spec/clusterIP").and_then(Value::as_str) {
            let mut n = 0u32;
            let parts: Vec<&str> = ip.split('.').collect();
            if parts.len() == 4 {
                for p in parts {
                    n = (n << 8) | p.parse::<u32>().unwrap_or(0);
                }
                self.used_ips.insert(n);
            }
        }
    }

    /// Stores a written object: server fields, no-op detection, side effects.
    fn commit(&mut self, t: &ReqTarget, mut o: Value, old: Option<&Value>, dry_run: bool) -> Value {
        let ignoring_times = |v: &Value| {
            let mut v = v.clone();
            if let Some(m) = v
                .pointer_mut("/metadata/managedFields")
                .and_then(Value::as_array_mut)
            {
                for e in m {
                    if let Some(e) = e.as_object_mut() {
                        e.remove("time");
                    }
                }
            }
            v
        };
        if let Some(old) = old {
            for f in [
                "uid",
                "creationTimestamp",
                "resourceVersion",
                "generation",
                "deletionTimestamp",
            ] {
                match old["metadata"].get(f) {
                    Some(v) => o["metadata"][f] = v.clone(),
                    None => {
                        if let Some(m) = o["metadata"].as_object_mut() {
                            m.remove(f);
                        }
                    }
                }
            }
            // A write of the main resource keeps the status the cluster has set (the
            // server itself computes the status of Namespaces and CRDs in `admit`).
            if t.rtype.status_subresource
                && t.rtype.kind != "Namespace"
                && t.rtype.kind != "CustomResourceDefinition"
            {
                match old.get("status") {
                    Some(s) => o["status"] = s.clone(),
                    None => {
                        if let Some(m) = o.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            if ignoring_times(&o) == ignoring_times(old) {
                return old.clone();
            }
            if t.rtype.tracks_generation && spec_part(&o) != spec_part(old) {
                let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
                o["metadata"]["generation"] = json!(g + 1);
            }
        } else {
            if let Some(m) = o["metadata"].as_object_mut() {
                m.remove("deletionTimestamp");
            }
            o["metadata"]["uid"] = json!(util::uid());
            o["metadata"]["creationTimestamp"] = json!(util::now_rfc3339());
            if t.rtype.tracks_generation {
                o["metadata"]["generation"] = json!(1);
            }
        }
        if let Some(m) = o["metadata"].as_object_mut() {
            m.remove("selfLink");
        }
        if dry_run {
            if old.is_none() {
                if let Some(m) = o["metadata"].as_object_mut() {
                    m.remove("uid");
                }
            }
            return o;
        }
        self.resource_version += 1;
        o["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        let name = o["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let key = self.key(t, &name);
        self.reserve_ip(&o);
        if t.rtype.kind == "CustomResourceDefinition" && controllers::established(&o) {
            self.serve_crd(&o);
        }
        self.objects.insert(key.clone(), o.clone());
        self.schedule(&key);
        o
    }

    /// Makes the kind an (established) CustomResourceDefinition defines served.
    fn serve_crd(&mut self, crd: &Value) {
        if let Ok(rtype) = types::from_crd(crd) {
            self.types
                .retain(|x| !(x.custom && x.group == rtype.group && x.plural == rtype.plural));
            self.types.push(rtype);
        }
    }

    fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
        for w in warnings {
            resp.headers
                .push(("Warning".into(), format!("299 - {w:?}")));
        }
        resp
    }

    fn create(&mut self, req: &Request, t: &ReqTarget, dry_run: bool) -> Response {
        let mut o = match Self::parse_body(req) {
            Ok(o) => o,
            Err(r) => return r,
        };
        if let Err(r) = self.check_identity(t, &mut o, None) {
            return r;
        }
        if let Some(r) = Self::undecodable(t, &o) {
            return r;
        }
        let name = match o.pointer("/metadata/name").and_then(Value::as_str) {
            Some(n) => n.to_string(),
            None => match o.pointer("/metadata/generateName").and_then(Value::as_str) {
                Some(prefix) => format!("{prefix}{}", &util::uid()[..5]),
                None => {
                    return Self::invalid(
                        t,
                        "",
                        "metadata.name",
                        "Required value: name or generateName is required".into(),
                    )
                }
            },
        };
        o["metadata"]["name"] = json!(name);
        if self.objects.contains_key(&self.key(t, &name)) {
            return status_error(
                409,
                "AlreadyExists",
                &format!("{} {name:?} already exists", resource_name(&t.rtype)),
                Some(json!({"name": name, "group": t.rtype.group, "kind": t.rtype.plural})),
            );
        }
        if let Some(m) = o["metadata"].as_object_mut() {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        // Status is the cluster's to write; only a seed (the cluster itself) brings one.
        if t.rtype.status_subresource && req.user_agent != SEED_AGENT {
            if let Some(m) = o.as_object_mut() {
                m.remove("status");
            }
        }
        let warnings = match self.admit(req, t, &mut o, None) {
            Ok(w) => w,
            Err(r) => return r,
        };
        let manager = Self::manager(req);
        fields::record_update(
            None,
            &mut o,
            &manager,
            &t.rtype.api_version(&t.version),
            &util::now_rfc3339(),
        );
        let stored = self.commit(t, o, None, dry_run);
        let mut resp = Response::ok(self.present(t, &stored));
        resp.status = 201;
        Self::with_warnings(resp, &warnings)
    }

    fn update(&mut self, req: &Request, t: &ReqTarget, name: &str, dry_run: bool) -> Response {
        let mut o = match Self::parse_body(req) {
            Ok(o) => o,
            Err(r) => return r,
        };
        if let Err(r) = self.check_identity(t, &mut o, Some(name)) {
            return r;
        }
        if let Some(r) = Self::undecodable(t, &o) {
            return r;
        }
        let Some(old) = self.objects.get(&self.key(t, name)).cloned() else {
            return self.not_found(t, name);
        };
        if let Some(rv) = o
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
        {
            if !rv.is_empty()
                && Some(rv)
                    != old
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
            {
                return self.conflict(t, name);
            }
        }
        self.write_over(req, t, old, o, dry_run)
    }

    fn conflict(&self, t: &ReqTarget, name: &str) -> Response {
        status_error(
            409,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
                resource_name(&t.rtype)
            ),
            Some(json!({"name": name, "group": t.rtype.group, "kind": t.rtype.plural})),
        )
    }

    /// Replaces `old` with `o` (update and non-apply patches).
    fn write_over(
        &mut self,
        req: &Request,
        t: &ReqTarget,
        old: Value,
        mut o: Value,
        dry_run: bool,
    ) -> Response {
        if let Some(m) = o["metadata"].as_object_mut() {
            m.insert(
                "managedFields".into(),
                old["metadata"]
                    .get("managedFields")
                    .cloned()
                    .unwrap_or(json!([])),
            );
        }
        let warnings = match self.admit(req, t, &mut o, Some(&old)) {
            Ok(w) => w,
            Err(r) => return r,
        };
        let manager = Self::manager(req);
        fields::record_update(
            Some(&old),
            &mut o,
            &manager,
            &t.rtype.api_version(&t.version),
            &util::now_rfc3339(),
        );
        let stored = self.commit(t, o, Some(&old), dry_run);
        Self::with_warnings(Response::ok(self.present(t, &stored)), &warnings)
    }

    fn patch(&mut self, req: &Request, t: &ReqTarget, name: &str, dry_run: bool) -> Response {
        let ct = req
            .content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let old = self.objects.get(&self.key(t, name)).cloned();
        if ct == "application/apply-patch+yaml" || ct == "application/apply-patch+json" {
            return self.server_side_apply(req, t, name, old, dry_run);
        }
        let Some(old) = old else {
            return self.not_found(t, name);
        };
        let patch = match Self::parse_body(req) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let mut o = self.present(t, &old);
        let result = match ct.as_str() {
            "application/merge-patch+json" => {
                fields::merge_patch(&mut o, &patch);
                Ok(())
            }
            "application/strategic-merge-patch+json" => {
                if t.rtype.custom {
                    return status_error(
                        415,
                        "UnsupportedMediaType",
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                        None,
                    );
                }
                fields::strategic_merge_patch(&mut o, &patch)
            }
            "application/json-patch+json" => fields::json_patch(&mut o, &patch),
            other => {
                return status_error(
                    415,
                    "UnsupportedMediaType",
                    &format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"),
                    None,
                )
            }
        };
        if let Err(e) = result {
            return status_error(422, "Invalid", &e, None);
        }
        if let Some(rv) = patch
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
        {
            if Some(rv)
                != old
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
            {
                return self.conflict(t, name);
            }
        }
        if let Err(r) = self.check_identity(t, &mut o, Some(name)) {
            return r;
        }
        if let Some(e) = Self::type_error(t, &o) {
            // The patched object does not decode: the patch is what is invalid.
            let error = FieldError::invalid("patch", &json!(o.to_string()), &e.json_message());
            return status_error(
                422,
                "Invalid",
                &format!(
                    " \"\" is invalid: {}",
                    validation::aggregate(std::slice::from_ref(&error))
                ),
                Some(json!({"causes": [error.cause()]})),
            );
        }
        self.write_over(req, t, old, o, dry_run)
    }

    fn server_side_apply(
        &mut self,
        req: &Request,
        t: &ReqTarget,
        name: &str,
        old: Option<Value>,
        dry_run: bool,
    ) -> Response {
        let Some(manager) = req
            .query
            .get("fieldManager")
            .filter(|m| !m.is_empty())
            .cloned()
        else {
            return status_error(
                400,
                "BadRequest",
                "PATCH, application/apply-patch+yaml requests require fieldManager",
                None,
            );
        };
        let force = req.query.get("force").is_some_and(|f| f == "true");
        let mut config = match Self::parse_body(req) {
            Ok(c) => c,
            Err(r) => return r,
        };
        if config.get("apiVersion").is_none() || config.get("kind").is_none() {
            return status_error(
                400,
                "BadRequest",
                "apiVersion and kind must be set in an applied configuration",
                None,
            );
        }
        if let Err(r) = self.check_identity(t, &mut config, Some(name)) {
            return r;
        }
        if let Some(e) = Self::type_error(t, &config) {
            // Server-side apply fails building its typed patch object, an error the
            // server does not classify: 500 without a reason.
            let ns = config
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            return status_error(
                500,
                "",
                &format!(
                    "failed to create typed patch object ({ns}/{name}; {}/{}, Kind={}): {}",
                    t.rtype.group,
                    t.version,
                    t.rtype.kind,
                    e.smd_message()
                ),
                None,
            );
        }
        if let Some(m) = config["metadata"].as_object_mut() {
            for f in [
                "managedFields",
                "resourceVersion",
                "uid",
                "creationTimestamp",
                "generation",
            ] {
                m.remove(f);
            }
        }
        if let Some(m) = config.as_object_mut() {
            m.remove("status");
        }
        let api_version = t.rtype.api_version(&t.version);
        let now = util::now_rfc3339();
        let live = old.as_ref().map(|o| self.present(t, o));
        let mut o = match fields::apply(live.as_ref(), &config, &manager, &api_version, force, &now)
        {
            Ok(o) => o,
            Err(conflicts) => {
                let causes: Vec<Value> = conflicts
                    .iter()
                    .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {:?} using {}", c.manager, c.api_version), "field": c.field()}))
                    .collect();
                let lines: Vec<String> = conflicts
                    .iter()
                    .map(|c| {
                        format!(
                            "- conflict with {:?} using {}: {}",
                            c.manager,
                            c.api_version,
                            c.field()
                        )
                    })
                    .collect();
                let message = if conflicts.len() == 1 {
                    format!(
                        "Apply failed with 1 conflict: conflict with {:?} using {}: {}",
                        conflicts[0].manager,
                        conflicts[0].api_version,
                        conflicts[0].field()
                    )
                } else {
                    format!(
                        "Apply failed with {} conflicts: {}",
                        conflicts.len(),
                        lines.join("\n")
                    )
                };
                return status_error(409, "Conflict", &message, Some(json!({"causes": causes})));
            }
        };
        let warnings = match self.admit(req, t, &mut o, old.as_ref()) {
            Ok(w) => w,
            Err(r) => return r,
        };
        let created = old.is_none();
        let stored = self.commit(t, o, old.as_ref(), dry_run);
        let mut resp = Response::ok(self.present(t, &stored));
        if created {
            resp.status = 201;
        }
        Self::with_warnings(resp, &warnings)
    }

    fn delete(&mut self, t: &ReqTarget, name: &str, dry_run: bool) -> Response {
        let key = self.key(t, name);
        let Some(old) = self.objects.get(&key).cloned() else {
            return self.not_found(t, name);
        };
        if t.rtype.kind == "Namespace" {
            return self.terminate_namespace(t, &key, old, dry_run);
        }
        if dry_run {
            return Response::ok(self.present(t, &old));
        }
        self.objects.remove(&key);
        self.resource_version += 1;
        self.pending.remove(&key);
        match t.rtype.kind.as_str() {
            "CustomResourceDefinition" => {
                if let Ok(rtype) = types::from_crd(&old) {
                    self.objects
                        .retain(|(g, p, _, _), _| !(*g == rtype.group && *p == rtype.plural));
                    self.types.retain(|x| {
                        !(x.custom && x.group == rtype.group && x.plural == rtype.plural)
                    });
                }
            }
            "Service" => {
                self.recount_ips();
            }
            _ => {}
        }
        self.deleted(&key, &old);
        Response::ok(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": name, "group": t.rtype.group, "kind": t.rtype.plural, "uid": old["metadata"]["uid"]}
        }))
    }
}

impl Store {
    /// A Namespace's deletion: it turns `Terminating` (`deletionTimestamp` set) and is
    /// answered 200 with the object, as the real API does; the namespace controller
    /// empties and removes it later (`Options::namespace_finalize_delay`). Deleting it
    /// again while it terminates answers the same way.
    fn terminate_namespace(
        &mut self,
        t: &ReqTarget,
        key: &Key,
        old: Value,
        dry_run: bool,
    ) -> Response {
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            return Response::ok(self.present(t, &old));
        }
        let mut o = old;
        o["metadata"]["deletionTimestamp"] = json!(util::now_rfc3339());
        o["status"]["phase"] = json!("Terminating");
        if dry_run {
            return Response::ok(self.present(t, &o));
        }
        self.resource_version += 1;
        o["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        self.objects.insert(key.clone(), o.clone());
        self.schedule(key);
        Response::ok(self.present(t, &o))
    }
}

/// Where a resource request points.
struct ReqTarget {
    rtype: ResourceType,
    version: String,
    namespace: Option<String>,
    name: Option<String>,
}

fn spec_part(o: &Value) -> Value {
    let mut o = o.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    o
}

fn version_rank(v: &str) -> (u8, u32, u32) {
    // v1 > v1beta2 > v1beta1 > v1alpha1, as Kubernetes orders versions.
    let rest = v.trim_start_matches('v');
    let major: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let tail = &rest[major.len()..];
    let major = major.parse().unwrap_or(0);
    let (level, n) = if let Some(n) = tail.strip_prefix("beta") {
        (1, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (0, n.parse().unwrap_or(0))
    } else {
        (2, 0)
    };
    (level, major, n)
}

fn not_found_path(path: &str) -> Response {
    status_error(
        404,
        "NotFound",
        &format!("the server could not find the requested resource ({path})"),
        Some(
            json!({"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]}),
        ),
    )
}

fn wants_table(req: &Request) -> bool {
    req.accept.contains("as=Table")
}

/// `Accept: application/json;as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1`: only
/// the objects' metadata, as clients ask for when they must not read content (Secrets).
fn wants_metadata_only(req: &Request) -> bool {
    req.accept.contains("as=PartialObjectMetadata")
}

fn partial_object_metadata(o: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

fn include_object(req: &Request) -> bool {
    req.query.get("includeObject").map(String::as_str) == Some("Object")
}

fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
