//! Logical clouds in the model: the clusters that share one Istio mesh, its suffix and
//! namespace, the services it exports, and the shared CA. Every rule a mesh needs before
//! anything is contacted is checked here (domains, CIDR overlaps, suffixes, references,
//! ports, PEM files), and every violation is reported.

use super::routing::{self, Route};
use super::{Cluster, TargetSpec};
use crate::config::{RawConfig, RawLogicalCloud, Spanned};
use crate::diag::{did_you_mean, resolve_relative, Diagnostic, Location, SourceFile};
use crate::object::{check_dns_label, check_dns_subdomain};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

/// The shared root of trust: PEM texts read from the `[ca]` files.
#[derive(Clone, PartialEq, Eq)]
pub struct Ca {
    pub root_cert: String,
    pub ca_cert: String,
    /// Secret: never shown (see the Debug impl), only put into the `cacerts` Secret.
    pub ca_key: String,
    pub cert_chain: String,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("ca_key", &"(sensitive)")
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: String,
    pub number: u16,
    pub protocol: String,
}

/// A service exported to every other member cluster of its cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedService {
    pub name: String,
    pub namespace: String,
    /// The clusters it runs in.
    pub clusters: Vec<String>,
    pub ports: Vec<ServicePort>,
    /// Named groups of its workloads, each in one cluster, for routes to pick from.
    pub subsets: Vec<Subset>,
}

impl ExportedService {
    /// `reviews.default`: how routes and messages name the service.
    pub fn key(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }
}

/// A named group of one service's workloads in one cluster (`v2` = pods labelled
/// `version: v2` in `cluster2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subset {
    pub name: String,
    pub cluster: String,
    pub labels: BTreeMap<String, String>,
}

/// How a logical cloud runs its control planes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// A control plane in every member cluster (the default).
    MultiPrimary,
    /// One control plane in `primary`; the other members are remotes it manages through
    /// their API servers.
    PrimaryRemote { primary: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalCloud {
    pub name: String,
    pub clusters: Vec<String>,
    pub suffix: String,
    pub istio_namespace: String,
    pub injection_namespaces: Vec<String>,
    /// Pinned istiocoredns addresses, per cluster.
    pub dns_forward: BTreeMap<String, Ipv4Addr>,
    pub services: Vec<ExportedService>,
    pub topology: Topology,
    pub routes: Vec<Route>,
}

impl LogicalCloud {
    /// The primary cluster of a primary-remote cloud.
    pub fn primary(&self) -> Option<&str> {
        match &self.topology {
            Topology::MultiPrimary => None,
            Topology::PrimaryRemote { primary } => Some(primary),
        }
    }

    /// Whether `cluster` runs a control plane that reads Istio configuration from its own
    /// API server: every member of a multi-primary cloud, only the primary otherwise.
    pub fn runs_control_plane(&self, cluster: &str) -> bool {
        self.primary().is_none_or(|p| p == cluster)
    }

    /// The members that are remotes of the primary (none in a multi-primary cloud).
    pub fn remotes(&self) -> impl Iterator<Item = &String> {
        self.clusters.iter().filter(|c| !self.runs_control_plane(c))
    }
}

/// Istio's port protocols.
pub const PROTOCOLS: &[&str] = &[
    "HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "MYSQL", "REDIS", "TCP", "TLS", "UDP",
];

/// Suffixes that would shadow Kubernetes' own names.
const RESERVED_SUFFIXES: &[&str] = &["local", "svc", "cluster.local"];

/// Where diagnostics go while the clouds are checked.
pub(super) struct Cx<'a> {
    pub(super) src: &'a SourceFile,
    pub(super) diags: &'a mut Vec<Diagnostic>,
}

impl Cx<'_> {
    pub(super) fn at<T>(&self, s: &Spanned<T>) -> Location {
        self.src.locate(s.span.clone().unwrap_or(0..0))
    }
    /// An error about a name that resolves to nothing, with a "did you mean" among
    /// `known` when one is close.
    pub(super) fn err_unknown<'k>(
        &mut self,
        at: &Spanned<String>,
        msg: String,
        known: impl IntoIterator<Item = &'k str>,
    ) -> &mut Diagnostic {
        let hint = did_you_mean(&at.value, known);
        let d = self.err(at, msg);
        if let Some(h) = hint {
            d.help = Some(format!("did you mean `{h}`?"));
        }
        d
    }

    pub(super) fn err<T>(&mut self, at: &Spanned<T>, msg: String) -> &mut Diagnostic {
        let loc = self.at(at);
        self.diags.push(Diagnostic::new(msg).at(loc));
        self.diags.last_mut().expect("just pushed")
    }
}

/// Reads `[ca]`; required when the file has logical clouds.
pub fn build_ca(raw: &RawConfig, diags: &mut Vec<Diagnostic>) -> Option<Ca> {
    let src = &raw.source;
    if raw.logical_clouds.is_empty() && raw.ca.is_none() {
        return None;
    }
    let Some(ca) = &raw.ca else {
        let first = &raw.logical_clouds[0].name;
        diags.push(
            Diagnostic::new("logical clouds need a shared root of trust: add a [ca] table with root_cert, ca_cert, ca_key and cert_chain")
                .at(src.locate(first.span.clone().unwrap_or(0..0))),
        );
        return None;
    };
    let mut read = |key: &str, v: &Option<Spanned<String>>, want_key: bool| -> Option<String> {
        let Some(v) = v else {
            diags.push(
                Diagnostic::new(format!("[ca] needs `{key}`"))
                    .at(src.locate(ca.span.clone().unwrap_or(0..0))),
            );
            return None;
        };
        let loc = src.locate(v.span.clone().unwrap_or(0..0));
        let path = resolve_relative(&raw.base_dir, &v.value);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                diags.push(
                    Diagnostic::new(format!(
                        "cannot read `{key}` file `{}`: {e}",
                        path.display()
                    ))
                    .at(loc),
                );
                return None;
            }
        };
        if let Err(why) = check_pem(&text, want_key) {
            diags.push(Diagnostic::new(format!("`{key}` file `{}` {why}", v.value)).at(loc));
            return None;
        }
        Some(text)
    };
    let root_cert = read("root_cert", &ca.root_cert, false);
    let ca_cert = read("ca_cert", &ca.ca_cert, false);
    let ca_key = read("ca_key", &ca.ca_key, true);
    let cert_chain = read("cert_chain", &ca.cert_chain, false);
    Some(Ca {
        root_cert: root_cert?,
        ca_cert: ca_cert?,
        ca_key: ca_key?,
        cert_chain: cert_chain?,
    })
}

/// Checks that `text` holds PEM blocks of the right type: certificates, or one private key.
pub fn check_pem(text: &str, want_key: bool) -> Result<(), String> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        let mut closed = false;
        for l in lines.by_ref() {
            if l == end {
                closed = true;
                break;
            }
            body.push_str(l);
        }
        let b64 = body
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'=');
        if !closed || body.is_empty() || !b64 {
            return Err(format!("has a broken PEM block `{label}`"));
        }
        blocks.push(label.to_string());
    }
    if blocks.is_empty() {
        return Err("is not PEM (no -----BEGIN ...----- block)".into());
    }
    let is_key = |l: &str| l.ends_with("PRIVATE KEY");
    if want_key {
        if blocks.len() != 1 || !is_key(&blocks[0]) {
            return Err(format!(
                "must hold one private key, found {}",
                blocks.join(", ")
            ));
        }
    } else if let Some(other) = blocks.iter().find(|l| *l != "CERTIFICATE") {
        return Err(format!("must hold only certificates, found {other}"));
    }
    Ok(())
}

/// Builds and checks every logical cloud.
pub fn build_clouds(
    raw: &RawConfig,
    clusters: &BTreeMap<String, Cluster>,
    diags: &mut Vec<Diagnostic>,
) -> BTreeMap<String, LogicalCloud> {
    let mut cx = Cx {
        src: &raw.source,
        diags,
    };
    let mut out = BTreeMap::new();
    let mut suffixes: BTreeMap<String, Location> = BTreeMap::new();
    let mut namespaces: BTreeMap<String, Location> = BTreeMap::new();
    for lc in &raw.logical_clouds {
        {
            let cloud = build_cloud(&mut cx, raw, lc, clusters);
            let loc = cx.at(lc.suffix.as_ref().unwrap_or(&lc.name));
            if let Some(first) = suffixes.get(&cloud.suffix) {
                let first = first.clone();
                cx.err(
                    lc.suffix.as_ref().unwrap_or(&lc.name),
                    format!(
                        "suffix `{}` is used by two logical clouds; each needs its own",
                        cloud.suffix
                    ),
                )
                .notes
                .push(("first used here".into(), Some(first)));
            } else {
                suffixes.insert(cloud.suffix.clone(), loc);
            }
            let loc = cx.at(lc.istio_namespace.as_ref().unwrap_or(&lc.name));
            if let Some(first) = namespaces.get(&cloud.istio_namespace) {
                let first = first.clone();
                cx.err(
                    lc.istio_namespace.as_ref().unwrap_or(&lc.name),
                    format!(
                        "istio_namespace `{}` is used by two logical clouds; each needs its own",
                        cloud.istio_namespace
                    ),
                )
                .notes
                .push(("first used here".into(), Some(first)));
            } else {
                namespaces.insert(cloud.istio_namespace.clone(), loc);
            }
            out.insert(cloud.name.clone(), cloud);
        }
    }
    check_overlaps(&mut cx, &out, clusters);
    out
}

fn build_cloud(
    cx: &mut Cx<'_>,
    raw: &RawConfig,
    lc: &RawLogicalCloud,
    clusters: &BTreeMap<String, Cluster>,
) -> LogicalCloud {
    let name = lc.name.value.clone();
    if let Err(why) = check_dns_label(&name) {
        cx.err(
            &lc.name,
            format!("invalid logical cloud name `{name}`: {why}"),
        );
    }
    let mut members = Vec::new();
    match &lc.clusters {
        None => {
            cx.err(&lc.name, format!("logical cloud `{name}` needs `clusters`"));
        }
        Some(list) => {
            for c in &list.value {
                if !raw.clusters.iter().any(|rc| rc.name.value == c.value) {
                    cx.err_unknown(
                        c,
                        format!(
                            "logical cloud `{name}` names cluster `{}`, which is not defined",
                            c.value
                        ),
                        raw.clusters.iter().map(|rc| rc.name.value.as_str()),
                    );
                } else if members.contains(&c.value) {
                    cx.err(
                        c,
                        format!(
                            "cluster `{}` is listed twice in logical cloud `{name}`",
                            c.value
                        ),
                    );
                } else {
                    members.push(c.value.clone());
                }
            }
        }
    }
    let suffix = lc
        .suffix
        .as_ref()
        .map(|s| s.value.clone())
        .unwrap_or_else(|| name.clone());
    let suffix_at = lc.suffix.as_ref().unwrap_or(&lc.name);
    if RESERVED_SUFFIXES.contains(&suffix.as_str()) {
        cx.err(
            suffix_at,
            format!(
                "suffix `{suffix}` is reserved by Kubernetes DNS; choose another (e.g. `{name}`)"
            ),
        );
    } else if let Err(why) = check_dns_subdomain(&suffix) {
        cx.err(suffix_at, format!("invalid suffix `{suffix}`: {why}"));
    }
    let istio_namespace = lc
        .istio_namespace
        .as_ref()
        .map(|s| s.value.clone())
        .unwrap_or_else(|| format!("istio-{name}"));
    if let Err(why) = check_dns_label(&istio_namespace) {
        cx.err(
            lc.istio_namespace.as_ref().unwrap_or(&lc.name),
            format!("invalid istio_namespace `{istio_namespace}`: {why}"),
        );
    }
    for ns in &lc.injection_namespaces {
        if let Err(why) = check_dns_label(&ns.value) {
            cx.err(
                ns,
                format!("invalid injection namespace `{}`: {why}", ns.value),
            );
        }
    }

    // Cluster domains must agree: the suffix is rewritten to one `.svc.<domain>`.
    let mut domains = members
        .iter()
        .filter_map(|m| clusters.get(m))
        .map(|c| (c.name.as_str(), c.cluster_domain.as_str()));
    if let Some((first, domain)) = domains.next() {
        if let Some((other, d2)) = domains.find(|(_, d)| d != &domain) {
            let msg = format!("clusters of logical cloud `{name}` must share one cluster_domain: `{first}` has `{domain}`, `{other}` has `{d2}`");
            cx.err(
                lc.clusters
                    .as_ref()
                    .unwrap_or(&Spanned::new(vec![], lc.name.span.clone())),
                msg,
            );
        }
    }

    let mut dns_forward = BTreeMap::new();
    for (cluster, addr) in &lc.dns_forward {
        if !members.contains(&cluster.value) {
            cx.err(cluster, format!("dns_forward names cluster `{}`, which is not a member of logical cloud `{name}`", cluster.value));
            continue;
        }
        match addr.value.parse::<Ipv4Addr>() {
            Ok(ip) => {
                dns_forward.insert(cluster.value.clone(), ip);
            }
            Err(_) => {
                cx.err(
                    addr,
                    format!(
                        "dns_forward address `{}` is not an IPv4 address",
                        addr.value
                    ),
                );
            }
        }
    }
    for m in &members {
        if let Some(c) = clusters.get(m) {
            if matches!(c.target, TargetSpec::Dir(_)) && !dns_forward.contains_key(m) {
                cx.err(
                    &lc.name,
                    format!("logical cloud `{name}` needs `dns_forward.{m}`: cluster `{m}` is a directory target, so dcm cannot read the ClusterIP of its istiocoredns Service"),
                )
                .help = Some(format!("add `dns_forward = {{ {m} = \"10.96.0.53\" }}` with the address istiocoredns has (or will have) in `{m}`"));
            }
        }
    }

    let topology = build_topology(cx, raw, lc, &members, clusters);
    let services = build_services(cx, lc, &members, clusters);
    let routes = routing::build_routes(cx, lc, &members, &services);
    // Built even when something above was wrong (the model is then rejected as a whole),
    // so that the checks across clouds still see it.
    LogicalCloud {
        name,
        clusters: members,
        suffix,
        istio_namespace,
        injection_namespaces: lc
            .injection_namespaces
            .iter()
            .map(|n| n.value.clone())
            .collect(),
        dns_forward,
        services,
        topology,
        routes,
    }
}

/// Reads `topology` and `primary`. A primary-remote cloud's primary must be a member with
/// a `gateway` (remotes reach its istiod through it); every remote needs the keys the
/// primary's remote secret is built from.
fn build_topology(
    cx: &mut Cx<'_>,
    raw: &RawConfig,
    lc: &RawLogicalCloud,
    members: &[String],
    clusters: &BTreeMap<String, Cluster>,
) -> Topology {
    let name = &lc.name.value;
    match lc.topology.as_ref().map(|t| t.value.as_str()) {
        None | Some("multi-primary") => {
            if let Some(p) = &lc.primary {
                cx.err(p, format!("logical cloud `{name}` sets `primary` but its topology is multi-primary (every member runs a control plane)"))
                    .help = Some("add `topology = \"primary-remote\"`, or remove `primary`".into());
            }
            Topology::MultiPrimary
        }
        Some("primary-remote") => {
            let Some(p) = &lc.primary else {
                let at = lc.topology.as_ref().unwrap_or(&lc.name);
                cx.err(at, format!("logical cloud `{name}` is primary-remote and needs `primary`: the member cluster that runs the control plane"));
                return Topology::MultiPrimary;
            };
            if !members.contains(&p.value) {
                cx.err_unknown(
                    p,
                    format!(
                        "primary `{}` is not a member of logical cloud `{name}`",
                        p.value
                    ),
                    members.iter().map(String::as_str),
                );
            } else if clusters.get(&p.value).is_some_and(|c| c.gateway.is_none()) {
                cx.err(p, format!("primary `{}` needs a `gateway`: the remotes of logical cloud `{name}` reach its control plane through it", p.value));
            }
            for m in members.iter().filter(|m| **m != p.value) {
                // A remote whose keys are there but wrong has its own error already.
                let no_keys = raw.clusters.iter().any(|rc| {
                    &rc.name.value == m
                        && rc.api_server.is_none()
                        && rc.token_file.is_none()
                        && rc.ca_file.is_none()
                });
                if no_keys && clusters.contains_key(m) {
                    cx.err(p, format!("cluster `{m}` is a remote of logical cloud `{name}`, so the primary needs to reach its API server: add `api_server`, `token_file` and `ca_file` to [clusters.{m}]"));
                }
            }
            Topology::PrimaryRemote {
                primary: p.value.clone(),
            }
        }
        Some(other) => {
            let at = lc.topology.as_ref().unwrap_or(&lc.name);
            cx.err(
                at,
                format!(
                    "unknown topology `{other}`: must be \"multi-primary\" or \"primary-remote\""
                ),
            );
            Topology::MultiPrimary
        }
    }
}

fn build_services(
    cx: &mut Cx<'_>,
    lc: &RawLogicalCloud,
    members: &[String],
    clusters: &BTreeMap<String, Cluster>,
) -> Vec<ExportedService> {
    let cloud = &lc.name.value;
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    if !lc.services.is_empty() && members.len() < 2 {
        cx.err(&lc.name, format!("logical cloud `{cloud}` exports services but has {} cluster{}; exporting needs at least two", members.len(), if members.len() == 1 { "" } else { "s" }));
    }
    for s in &lc.services {
        let here = Spanned::new((), s.span.clone());
        let Some(name) = &s.name else {
            cx.err(
                &here,
                format!("a service of logical cloud `{cloud}` needs `name`"),
            );
            continue;
        };
        if let Err(why) = check_dns_label(&name.value) {
            cx.err(
                name,
                format!("invalid service name `{}`: {why}", name.value),
            );
        }
        let namespace = s
            .namespace
            .as_ref()
            .map(|n| n.value.clone())
            .unwrap_or_else(|| "default".into());
        if let Some(ns) = &s.namespace {
            if let Err(why) = check_dns_label(&ns.value) {
                cx.err(ns, format!("invalid namespace `{}`: {why}", ns.value));
            }
        }
        if !seen.insert((name.value.clone(), namespace.clone())) {
            cx.err(
                name,
                format!(
                    "service `{}.{namespace}` is exported twice by logical cloud `{cloud}`",
                    name.value
                ),
            );
        }
        let mut serving = Vec::new();
        match &s.clusters {
            Some(list) if !list.value.is_empty() => {
                for c in &list.value {
                    if !members.contains(&c.value) {
                        cx.err(c, format!("service `{}` runs in cluster `{}`, which is not a member of logical cloud `{cloud}`", name.value, c.value));
                    } else if clusters
                        .get(&c.value)
                        .is_some_and(|cl| cl.gateway.is_none())
                    {
                        cx.err(c, format!("service `{}` runs in cluster `{}`, which has no `gateway`: other clusters could not reach it", name.value, c.value));
                    } else if !serving.contains(&c.value) {
                        serving.push(c.value.clone());
                    }
                }
            }
            _ => {
                cx.err(
                    name,
                    format!("service `{}` needs `clusters`: where it runs", name.value),
                );
            }
        }
        let mut ports = Vec::new();
        if s.ports.is_empty() {
            cx.err(
                name,
                format!("service `{}` needs at least one port", name.value),
            );
        }
        for p in &s.ports {
            let here = Spanned::new((), p.span.clone());
            let number = match &p.number {
                Some(n) if (1..=65535).contains(&n.value) => n.value as u16,
                Some(n) => {
                    cx.err(
                        n,
                        format!("port {} is out of range: ports are 1–65535", n.value),
                    );
                    continue;
                }
                None => {
                    cx.err(&here, "a port needs `number`".into());
                    continue;
                }
            };
            let protocol = p
                .protocol
                .as_ref()
                .map(|x| x.value.to_uppercase())
                .unwrap_or_else(|| "TCP".into());
            if !PROTOCOLS.contains(&protocol.as_str()) {
                let at = p
                    .protocol
                    .clone()
                    .map(|x| Spanned::new((), x.span))
                    .unwrap_or(here.clone());
                cx.err(
                    &at,
                    format!(
                        "unknown protocol `{protocol}`: Istio knows {}",
                        PROTOCOLS.join(", ")
                    ),
                );
                continue;
            }
            let pname = p
                .name
                .as_ref()
                .map(|n| n.value.clone())
                .unwrap_or_else(|| format!("{}-{number}", protocol.to_lowercase()));
            ports.push(ServicePort {
                name: pname,
                number,
                protocol,
            });
        }
        let subsets = build_subsets(cx, s, &name.value, cloud, members);
        out.push(ExportedService {
            name: name.value.clone(),
            namespace,
            clusters: serving,
            ports,
            subsets,
        });
    }
    out
}

/// Reads a service's `subsets`: names unique and valid, each in a member cluster, with
/// labels that select something.
fn build_subsets(
    cx: &mut Cx<'_>,
    s: &crate::config::RawService,
    service: &str,
    cloud: &str,
    members: &[String],
) -> Vec<Subset> {
    let mut out: Vec<Subset> = Vec::new();
    for x in &s.subsets {
        let here = Spanned::new((), x.span.clone());
        let Some(name) = &x.name else {
            cx.err(
                &here,
                format!("a subset of service `{service}` needs `name`"),
            );
            continue;
        };
        if let Err(why) = check_dns_label(&name.value) {
            cx.err(name, format!("invalid subset name `{}`: {why}", name.value));
        }
        if out.iter().any(|o| o.name == name.value) {
            cx.err(
                name,
                format!("service `{service}` has two subsets named `{}`", name.value),
            );
        }
        if members.contains(&name.value) {
            cx.err(name, format!("subset `{}` of service `{service}` has the name of a member cluster; dcm names the per-cluster subsets so, choose another (e.g. `v2`)", name.value));
        }
        let cluster = match &x.cluster {
            None => {
                cx.err(name, format!("subset `{}` of service `{service}` needs `cluster`: where its workloads run", name.value));
                continue;
            }
            Some(c) if !members.contains(&c.value) => {
                cx.err_unknown(c, format!("subset `{}` of service `{service}` is in cluster `{}`, which is not a member of logical cloud `{cloud}`", name.value, c.value), members.iter().map(String::as_str));
                continue;
            }
            Some(c) => c.value.clone(),
        };
        if x.labels.is_empty() {
            cx.err(name, format!("subset `{}` of service `{service}` needs `labels`: the pod labels that select its workloads (e.g. `labels = {{ version = \"v2\" }}`)", name.value));
        }
        let mut labels = BTreeMap::new();
        for (k, v) in &x.labels {
            if let Err(why) = crate::object::check_label_key(&k.value) {
                cx.err(k, format!("invalid label key `{}`: {why}", k.value));
            }
            if let Err(why) = crate::object::check_label_value(&v.value) {
                cx.err(v, format!("invalid label value `{}`: {why}", v.value));
            }
            labels.insert(k.value.clone(), v.value.clone());
        }
        out.push(Subset {
            name: name.value.clone(),
            cluster,
            labels,
        });
    }
    out
}

/// Pod and service CIDRs of clusters that share a cloud and a network must not overlap:
/// traffic between them is routed, not translated.
fn check_overlaps(
    cx: &mut Cx<'_>,
    clouds: &BTreeMap<String, LogicalCloud>,
    clusters: &BTreeMap<String, Cluster>,
) {
    let mut pairs = BTreeSet::new();
    for lc in clouds.values() {
        for (i, a) in lc.clusters.iter().enumerate() {
            for b in &lc.clusters[i + 1..] {
                pairs.insert((a.min(b).clone(), a.max(b).clone()));
            }
        }
    }
    for (a, b) in pairs {
        let (Some(ca), Some(cb)) = (clusters.get(&a), clusters.get(&b)) else {
            continue;
        };
        if ca.network != cb.network {
            continue;
        }
        let ranges = |c: &Cluster| [("pod_cidr", c.pod_cidr), ("service_cidr", c.service_cidr)];
        for (ka, ra) in ranges(ca) {
            for (kb, rb) in ranges(cb) {
                if let (Some(ra), Some(rb)) = (ra, rb) {
                    if ra.overlaps(&rb) {
                        cx.diags.push(
                            Diagnostic::new(format!(
                                "clusters `{a}` and `{b}` are on network `{}` but their ranges overlap: `{a}` {ka} {ra} and `{b}` {kb} {rb}",
                                ca.network
                            ))
                            .at(cb.location.clone())
                            .help("give each cluster its own ranges, or put them on different networks (`network`)"),
                        );
                    }
                }
            }
        }
    }
}
