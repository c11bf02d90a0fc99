//! Logical clouds in the model: the clusters that share one Istio mesh, its suffix and
//! namespace, the services it exports, and the shared CA. Every rule a mesh needs before
//! anything is contacted is checked here (domains, CIDR overlaps, suffixes, references,
//! ports, PEM files), and every violation is reported.

use super::istio::{check_chain, check_profile, Install, IstioSettings, Profile};
use super::routing::{self, Route};
use super::{Cluster, TargetSpec};
use crate::config::{RawConfig, RawLogicalCloud, Spanned};
use crate::diag::{did_you_mean, Diagnostic, Location, SourceFile};
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
    /// What the mesh objects are written for.
    pub profile: Profile,
    /// The control plane's revision: `istio.io/rev` on everything the cloud's istiod
    /// reads, and the name of its Sail `Istio` resource.
    pub revision: String,
    /// How its control planes are installed.
    pub install: Install,
}

impl LogicalCloud {
    /// The exported service a route is for (the model checked that there is one).
    pub fn service_of(&self, route: &crate::model::Route) -> Option<&ExportedService> {
        self.services
            .iter()
            .find(|s| s.name == route.service && s.namespace == route.namespace)
    }

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

    /// The members whose API server another member's control plane reads (so they need a
    /// reader token and a remote secret): the remotes of a primary-remote cloud; every
    /// member of a multi-primary cloud with more than one (endpoint discovery), in the
    /// current profile.
    pub fn read_by_others(&self, cluster: &str) -> bool {
        match &self.topology {
            Topology::PrimaryRemote { primary } => primary != cluster,
            Topology::MultiPrimary => self.profile == Profile::Current && self.clusters.len() > 1,
        }
    }

    /// The namespaces whose workloads belong to the cloud: its injection namespaces and
    /// the namespaces of its services, sorted.
    pub fn workload_namespaces(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .injection_namespaces
            .iter()
            .map(String::as_str)
            .chain(self.services.iter().map(|s| s.namespace.as_str()))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
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
    pub(super) warnings: &'a mut Vec<Diagnostic>,
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

/// Reads a CA table (`[ca]` or `[clusters.X.ca]`, named by `table`): four PEM files, the
/// certificate leading to the root.
pub fn read_ca(
    raw: &RawConfig,
    ca: &crate::config::RawCa,
    table: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<Ca> {
    let src = &raw.source;
    let before = diags.len();
    let mut read = |key: &str, v: &Option<Spanned<String>>, want_key: bool| -> Option<String> {
        let Some(v) = v else {
            diags.push(
                Diagnostic::new(format!("{table} needs `{key}`"))
                    .at(src.locate(ca.span.clone().unwrap_or(0..0))),
            );
            return None;
        };
        let loc = src.locate(v.span.clone().unwrap_or(0..0));
        let text = match crate::config::read_input(
            &raw.base_dir,
            &v.value,
            crate::config::SMALL_FILE_LIMIT,
        ) {
            Ok(t) => t,
            Err(e) => {
                let mut d = Diagnostic::new(format!("cannot read `{key}` file {e}")).at(loc);
                if let Some(h) = e.help() {
                    d = d.help(h);
                }
                diags.push(d);
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
    if diags.len() > before {
        return None;
    }
    let out = Ca {
        root_cert: root_cert?,
        ca_cert: ca_cert?,
        ca_key: ca_key?,
        cert_chain: cert_chain?,
    };
    if let Err(why) = check_chain(&out) {
        let at = ca.ca_cert.as_ref().and_then(|c| c.span.clone());
        diags.push(
            Diagnostic::new(format!("the CA of {table} does not lead to its root: {why}"))
                .at_span(src, at)
                .help("ca_cert must be signed by root_cert, directly or through the certificates in cert_chain (Istio's plug-in CA layout)"),
        );
        return None;
    }
    Some(out)
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
    shared_ca: Option<&Ca>,
    istio: &IstioSettings,
    diags: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
) -> BTreeMap<String, LogicalCloud> {
    let mut cx = Cx {
        src: &raw.source,
        diags,
        warnings,
    };
    let mut out = BTreeMap::new();
    let mut suffixes: BTreeMap<String, Location> = BTreeMap::new();
    let mut namespaces: BTreeMap<String, Location> = BTreeMap::new();
    let mut revisions: BTreeMap<String, Location> = BTreeMap::new();
    for lc in &raw.logical_clouds {
        let cloud = build_cloud(&mut cx, raw, lc, clusters, istio);
        for (what, value, key, seen) in [
            ("suffix", &cloud.suffix, lc.suffix.as_ref(), &mut suffixes),
            (
                "istio_namespace",
                &cloud.istio_namespace,
                lc.istio_namespace.as_ref(),
                &mut namespaces,
            ),
            (
                "revision",
                &cloud.revision,
                lc.revision.as_ref(),
                &mut revisions,
            ),
        ] {
            let at = key.unwrap_or(&lc.name);
            if let Some(first) = seen.get(value) {
                let first = first.clone();
                cx.err(
                    at,
                    format!("{what} `{value}` is used by two logical clouds; each needs its own"),
                )
                .notes
                .push(("first used here".into(), Some(first)));
            } else {
                seen.insert(value.clone(), cx.at(at));
            }
        }
        out.insert(cloud.name.clone(), cloud);
    }
    check_overlaps(&mut cx, &out, clusters);
    check_shared_namespaces(&mut cx, raw, &out);
    check_trust(&mut cx, raw, &out, clusters, shared_ca);
    out
}

/// A namespace holds the workloads of one cloud per cluster: its `istio.io/rev` label
/// picks one control plane, and each cloud's discoverySelectors must not overlap.
fn check_shared_namespaces(
    cx: &mut Cx<'_>,
    raw: &RawConfig,
    clouds: &BTreeMap<String, LogicalCloud>,
) {
    let mut owner: BTreeMap<(&str, &str), &str> = BTreeMap::new();
    for lc in clouds.values() {
        for c in &lc.clusters {
            for ns in lc.workload_namespaces() {
                let Some(first) = owner.insert((c.as_str(), ns), lc.name.as_str()) else {
                    continue;
                };
                if first == lc.name {
                    continue;
                }
                let at = raw
                    .logical_clouds
                    .iter()
                    .find(|r| r.name.value == lc.name)
                    .map(|r| r.name.clone())
                    .unwrap_or_else(|| Spanned::new(String::new(), None));
                cx.err(&at, format!("namespace `{ns}` in cluster `{c}` belongs to logical clouds `{first}` and `{}`; a namespace's workloads are injected and seen by one control plane", lc.name))
                    .help = Some("give each cloud its own namespaces (`injection_namespaces` and the services' `namespace`)".into());
                return;
            }
        }
    }
}

/// Every member that runs a control plane needs a CA: its own `[clusters.X.ca]`, or the
/// shared `[ca]`. Istio's guidance is one intermediate per cluster under one root, so
/// sharing one intermediate between clusters is a warning.
fn check_trust(
    cx: &mut Cx<'_>,
    raw: &RawConfig,
    clouds: &BTreeMap<String, LogicalCloud>,
    clusters: &BTreeMap<String, Cluster>,
    shared_ca: Option<&Ca>,
) {
    for lc in clouds.values() {
        let at = raw
            .logical_clouds
            .iter()
            .find(|r| r.name.value == lc.name)
            .map(|r| r.name.clone())
            .unwrap_or_else(|| Spanned::new(String::new(), None));
        let mut sharing = Vec::new();
        for m in lc.clusters.iter().filter(|m| lc.runs_control_plane(m)) {
            let Some(c) = clusters.get(m) else { continue };
            if c.ca.is_some() {
                continue;
            }
            if shared_ca.is_none() && raw.ca.is_none() {
                cx.err(&at, format!("cluster `{m}` runs a control plane of logical cloud `{}` and needs a CA: add a shared [ca] table, or [clusters.{m}.ca] (root_cert, ca_cert, ca_key, cert_chain)", lc.name));
            }
            sharing.push(m.as_str());
        }
        if lc.profile == Profile::Current && sharing.len() > 1 {
            let loc = raw
                .ca
                .as_ref()
                .map(|c| cx.src.locate(c.span.clone().unwrap_or(0..0)));
            let mut w = Diagnostic::warning(format!(
                "clusters {} of logical cloud `{}` share one intermediate CA ([ca]); Istio's plug-in CA guidance is one intermediate per cluster, signed by the shared root",
                sharing.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", "),
                lc.name
            ))
            .help(format!("give each cluster its own [clusters.<name>.ca], e.g. [clusters.{}.ca]", sharing[0]));
            if let Some(loc) = loc {
                w = w.at(loc);
            }
            cx.warnings.push(w);
        }
    }
}

fn build_cloud(
    cx: &mut Cx<'_>,
    raw: &RawConfig,
    lc: &RawLogicalCloud,
    clusters: &BTreeMap<String, Cluster>,
    istio: &IstioSettings,
) -> LogicalCloud {
    let name = lc.name.value.clone();
    let profile = match lc.profile.as_ref().map(|p| p.value.as_str()) {
        None | Some("current") => Profile::Current,
        Some("legacy-global") => Profile::LegacyGlobal,
        Some(other) => {
            let p = lc.profile.as_ref().unwrap_or(&lc.name);
            cx.err_unknown(
                p,
                format!("unknown profile `{other}`: must be \"current\" (Istio 1.24 and later) or \"legacy-global\" (Istio 1.8 or older)"),
                ["current", "legacy-global"],
            );
            Profile::Current
        }
    };
    let profile_at = cx.at(lc.profile.as_ref().unwrap_or(&lc.name));
    check_profile(istio, profile, &name, profile_at, cx.diags, cx.warnings);
    let revision = lc
        .revision
        .as_ref()
        .map(|r| r.value.clone())
        .unwrap_or_else(|| name.clone());
    if let Some(r) = &lc.revision {
        if let Err(why) = check_dns_label(&r.value) {
            cx.err(r, format!("invalid revision `{}`: {why}", r.value));
        }
    }
    let legacy = profile == Profile::LegacyGlobal;
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
    let domain_of_member = members
        .iter()
        .filter_map(|m| clusters.get(m))
        .find(|c| c.cluster_domain == suffix);
    if let Some(c) = domain_of_member {
        cx.err(
            suffix_at,
            format!(
                "suffix `{suffix}` is the cluster domain of `{}`; cloud names would shadow the cluster's own service names",
                c.name
            ),
        );
    } else if RESERVED_SUFFIXES.contains(&suffix.as_str()) {
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
    if !legacy {
        if let Some((first, _)) = lc.dns_forward.first() {
            cx.err(first, format!("logical cloud `{name}` uses profile `current`, which has no istiocoredns to forward to: its `<name>.<namespace>.{suffix}` names are answered by Istio's DNS proxy in each sidecar"))
                .help = Some("remove `dns_forward` (it belongs to `profile = \"legacy-global\"`)".into());
        }
    }
    for (cluster, addr) in lc.dns_forward.iter().filter(|_| legacy) {
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
            if legacy && matches!(c.target, TargetSpec::Dir { .. }) && !dns_forward.contains_key(m)
            {
                cx.err(
                    &lc.name,
                    format!("logical cloud `{name}` needs `dns_forward.{m}`: cluster `{m}` is a directory target, so dcm cannot read the ClusterIP of its istiocoredns Service"),
                )
                .help = Some(format!("add `dns_forward = {{ {m} = \"10.96.0.53\" }}` with the address istiocoredns has (or will have) in `{m}`"));
            }
        }
    }

    let topology = build_topology(cx, lc, &members, clusters, profile);
    check_api_access(cx, raw, lc, &members, clusters, &topology, profile);
    let services = build_services(cx, lc, &members, clusters, profile);
    let routes = routing::build_routes(cx, lc, &members, &services, profile);
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
        profile,
        revision,
        install: istio.install_for(profile),
    }
}

/// Every member whose API server another member's control plane reads must be reachable:
/// a Kubernetes target is (dcm reads the server from the kubeconfig and creates a reader
/// token), a directory target only through `api_server`, `token_file` and `ca_file`; the
/// legacy profile, which creates no reader, always needs the three.
fn check_api_access(
    cx: &mut Cx<'_>,
    raw: &RawConfig,
    lc: &RawLogicalCloud,
    members: &[String],
    clusters: &BTreeMap<String, Cluster>,
    topology: &Topology,
    profile: Profile,
) {
    let name = &lc.name.value;
    if let Topology::PrimaryRemote { primary } = topology {
        if !members.contains(primary) {
            return; // reported already; no member can be told a remote
        }
    }
    let read_by_others = |m: &str| match topology {
        Topology::PrimaryRemote { primary } => primary != m,
        Topology::MultiPrimary => profile == Profile::Current && members.len() > 1,
    };
    let at = match topology {
        Topology::PrimaryRemote { .. } => lc.primary.as_ref().unwrap_or(&lc.name),
        Topology::MultiPrimary => &lc.name,
    };
    for m in members.iter().filter(|m| read_by_others(m)) {
        let Some(c) = clusters.get(m) else { continue };
        let is_dir = matches!(c.target, TargetSpec::Dir { .. });
        if c.access.complete() || (!is_dir && profile == Profile::Current) {
            continue;
        }
        // Keys that are there but wrong have their own error already.
        let given = raw.clusters.iter().find(|rc| &rc.name.value == m);
        let broken = given.is_some_and(|rc| {
            (rc.api_server.is_some() && c.access.api_server.is_none())
                || (rc.token_file.is_some() && c.access.token.is_none())
                || (rc.ca_file.is_some() && c.access.ca_cert.is_none())
        });
        if broken {
            continue;
        }
        // Keys that are there but wrong have their own error already.
        let role = match topology {
            Topology::PrimaryRemote { .. } => format!("a remote of logical cloud `{name}`"),
            Topology::MultiPrimary => format!("a member of logical cloud `{name}`, whose other control planes discover its endpoints"),
        };
        let why = if is_dir {
            "it is a directory target, so dcm cannot read its API server or issue a reader token"
        } else {
            "the legacy-global profile creates no reader token"
        };
        cx.err(at, format!("cluster `{m}` is {role}, so another control plane must reach its API server, but {why}"))
            .help = Some(format!("add `api_server`, `token_file` and `ca_file` to [clusters.{m}]"));
    }
}

/// Whether dcm can learn a cluster's east-west gateway address from the cluster (its
/// LoadBalancer Service), so the file need not pin it with `gateway`.
fn gateway_known_after_apply(c: &Cluster, profile: Profile) -> bool {
    profile == Profile::Current && matches!(c.target, TargetSpec::Context(_))
}

/// Reads `topology` and `primary`. A primary-remote cloud's primary must be a member with
/// a `gateway` (remotes reach its istiod through it); every remote needs the keys the
/// primary's remote secret is built from.
fn build_topology(
    cx: &mut Cx<'_>,
    lc: &RawLogicalCloud,
    members: &[String],
    clusters: &BTreeMap<String, Cluster>,
    profile: Profile,
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
            } else if clusters
                .get(&p.value)
                .is_some_and(|c| c.gateway.is_none() && !gateway_known_after_apply(c, profile))
            {
                cx.err(p, format!("primary `{}` needs a `gateway`: the remotes of logical cloud `{name}` reach its control plane through it", p.value));
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
    profile: Profile,
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
                    } else if clusters.get(&c.value).is_some_and(|cl| {
                        cl.gateway.is_none() && !gateway_known_after_apply(cl, profile)
                    }) {
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
/// traffic between them is routed, not translated. Across networks (which meet only at
/// their east-west gateways) an overlap works but is not recommended: a warning.
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
        let same_network = ca.network == cb.network;
        let ranges = |c: &Cluster| [("pod_cidr", c.pod_cidr), ("service_cidr", c.service_cidr)];
        for (ka, ra) in ranges(ca) {
            for (kb, rb) in ranges(cb) {
                let (Some(ra), Some(rb)) = (ra, rb) else {
                    continue;
                };
                if !ra.overlaps(&rb) {
                    continue;
                }
                if same_network {
                    cx.diags.push(
                        Diagnostic::new(format!(
                            "clusters `{a}` and `{b}` are on network `{}` but their ranges overlap: `{a}` {ka} {ra} and `{b}` {kb} {rb}",
                            ca.network
                        ))
                        .at(cb.location.clone())
                        .help("give each cluster its own ranges, or put them on different networks (`network`)"),
                    );
                } else {
                    cx.warnings.push(
                        Diagnostic::warning(format!(
                            "clusters `{a}` (network `{}`) and `{b}` (network `{}`) have overlapping ranges: `{a}` {ka} {ra} and `{b}` {kb} {rb}; across networks this is acceptable but not recommended",
                            ca.network, cb.network
                        ))
                        .at(cb.location.clone()),
                    );
                }
            }
        }
    }
}
