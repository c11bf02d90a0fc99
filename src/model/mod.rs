//! The validated model: what the file means, once every reference, name and manifest has
//! been checked. Every problem found is collected, so a user fixes them all in one pass.
//!
//! The model reads the manifest files that resources name (that is part of knowing what
//! the file means) but contacts no cluster and compiles nothing.

mod cidr;
mod istio;
mod logical_cloud;
mod manifest;
mod routing;
mod yaml;

pub use cidr::Cidr;
pub use istio::{check_chain, Install, IstioSettings, IstioVersion, Profile};
pub use logical_cloud::{
    check_pem, Ca, ExportedService, LogicalCloud, ServicePort, Subset, Topology,
};
pub use routing::{Destination, HeaderMatch, HttpRule, Route};
pub use yaml::printable;

use crate::config::{RawConfig, RawResource, Spanned};
use crate::diag::{did_you_mean, resolve_relative, Diagnostic, Diagnostics, Location, SourceFile};
use crate::object::check_dns_label;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where a cluster's live objects are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// A GitOps directory (absolute or relative to the current directory), and how Secret
    /// data is written there (None: the file did not say, so none may be written).
    Dir {
        path: PathBuf,
        secrets: Option<DirSecrets>,
    },
    /// A kubeconfig context.
    Context(String),
}

/// How a directory target writes the data of Secrets (`secrets` in the cluster table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirSecrets {
    /// `secrets = "sops"`: a Secret's `data` and `stringData` are encrypted with sops to
    /// these age recipients (`sops_age_recipients`); the rest of the file stays readable.
    Sops { age_recipients: Vec<String> },
    /// `secrets = "plaintext"`: written as Kubernetes holds them (base64), with a warning.
    Plaintext,
}

/// How the cluster DNS learns about logical-cloud suffixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsMode {
    /// Edit `kube-system/coredns`'s Corefile.
    Corefile,
    /// Add keys to `kube-system/coredns-custom`.
    Custom,
}

#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub target: TargetSpec,
    pub pod_cidr: Option<Cidr>,
    pub service_cidr: Option<Cidr>,
    pub cluster_domain: String,
    pub network: String,
    pub gateway: Option<String>,
    pub dns: DnsMode,
    /// How other clusters' control planes reach this cluster's API server, as far as the
    /// file says (`api_server`, `token_file`, `ca_file`); the rest dcm finds itself.
    pub access: RemoteAccess,
    /// This cluster's own intermediate CA (`[clusters.X.ca]`), instead of the shared one.
    pub ca: Option<Ca>,
    /// Where the cluster is defined, for messages.
    pub location: Location,
}

/// What another cluster's control plane needs to read this cluster: its API server, a
/// token and the server's CA, each as the cluster table gives it (None: dcm finds it,
/// from the kubeconfig and the reader token it creates).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RemoteAccess {
    pub api_server: Option<String>,
    /// Secret: only ever put into a remote secret (see the Debug impl).
    pub token: Option<String>,
    pub ca_cert: Option<String>,
}

impl RemoteAccess {
    /// Whether the file gives everything (what a directory target, which dcm cannot ask,
    /// needs).
    pub fn complete(&self) -> bool {
        self.api_server.is_some() && self.token.is_some() && self.ca_cert.is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.api_server.is_none() && self.token.is_none() && self.ca_cert.is_none()
    }
}

impl std::fmt::Debug for RemoteAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteAccess")
            .field("api_server", &self.api_server)
            .field("token", &"(sensitive)")
            .finish_non_exhaustive()
    }
}

/// What a `depends_on` entry names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum DependencyTarget {
    LogicalCloud(String),
    /// A resource block, by its `name`.
    Resource(String),
    /// One object, by its full address.
    Object(crate::object::ObjRef),
}

#[derive(Debug, Clone)]
pub struct Dependency {
    pub target: DependencyTarget,
    pub location: Location,
}

/// One manifest document, with where it came from.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub object: Value,
    /// `file.yaml (document 2)` or `inline manifest`, for messages.
    pub origin: String,
    pub location: Location,
}

/// One `[[resources]]` block.
#[derive(Debug, Clone)]
pub struct Resource {
    /// How messages and the graph name this block: `resources.<name>` or `resources[<i>]`.
    pub label: String,
    pub name: Option<String>,
    pub clusters: Vec<String>,
    pub manifests: Vec<Manifest>,
    pub depends_on: Vec<Dependency>,
    /// `wait = true`: apply waits until the block's workloads are ready.
    pub wait: bool,
}

/// Fields dcm leaves to others in the objects a rule matches (`[[ignore_differences]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoreDifferences {
    /// None: any group.
    pub group: Option<String>,
    pub kind: String,
    pub name: Option<String>,
    pub namespace: Option<String>,
    /// RFC 6901 JSON pointers into the object (`/spec/replicas`).
    pub json_pointers: Vec<String>,
}

impl IgnoreDifferences {
    pub fn matches(&self, id: &crate::object::ObjRef) -> bool {
        self.kind == id.kind
            && self.group.as_ref().is_none_or(|g| *g == id.group)
            && self.name.as_ref().is_none_or(|n| *n == id.name)
            && self.namespace.as_ref().is_none_or(|n| *n == id.namespace)
    }
}

/// The whole validated file.
#[derive(Debug, Clone)]
pub struct Model {
    pub clusters: BTreeMap<String, Cluster>,
    pub resources: Vec<Resource>,
    pub logical_clouds: BTreeMap<String, LogicalCloud>,
    /// The shared CA; present whenever there are logical clouds.
    pub ca: Option<Ca>,
    /// Where each logical cloud is defined, for messages.
    pub cloud_locations: BTreeMap<String, Location>,
    /// `[istio]`, defaults filled in.
    pub istio: IstioSettings,
    /// Problems that do not stop the run (shown by validate, plan and apply).
    pub warnings: Vec<Diagnostic>,
    /// `import = [...]`: existing objects dcm may take on, by address, with where each is
    /// named (the compiler checks that the file declares them).
    pub imports: Vec<(String, Location)>,
    pub ignore_differences: Vec<IgnoreDifferences>,
    /// The project's name (`[project] name`, else the file's name without `.toml`), as
    /// review comments show it: letters, digits, `.`, `_`, `-`.
    pub project: String,
}

/// Whether `c` may be in a project name (it goes into an HTML comment, a heading and
/// code spans).
fn project_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// `[project] name`, checked; else the file's name without `.toml`, with every character
/// a name may not hold made `-` (`dcm` when nothing is left).
fn build_project(
    raw: &RawConfig,
    src: &crate::diag::SourceFile,
    diags: &mut Vec<Diagnostic>,
) -> String {
    if let Some(name) = raw.project.as_ref().and_then(|p| p.name.as_ref()) {
        let n = &name.value;
        let ok = (1..=63).contains(&n.len())
            && n.chars().all(project_char)
            && n.starts_with(|c: char| c.is_ascii_alphanumeric())
            && !n.contains("--");
        if !ok {
            diags.push(
                Diagnostic::new(format!(
                    "`project.name` {n:?} is not a valid project name: 1 to 63 letters, digits, `.`, `_` or `-`, starting with a letter or digit, without `--`"
                ))
                .at_span(src, name.span.clone()),
            );
        }
        return n.clone();
    }
    let stem = std::path::Path::new(&src.display)
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    let stem = stem.strip_suffix(".toml").unwrap_or(&stem);
    let mut name = String::new();
    for c in stem.chars().take(63) {
        let c = if project_char(c) { c } else { '-' };
        if !(c == '-' && name.ends_with('-')) {
            name.push(c);
        }
    }
    let name = name.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if name.is_empty() {
        "dcm".to_string()
    } else {
        name.to_string()
    }
}

/// `[[ignore_differences]]`: a kind and at least one JSON pointer (`/a/b`, `~0`/`~1`
/// escapes) each; `metadata/name`, `metadata/namespace`, `apiVersion` and `kind` stay
/// dcm's (they say which object it is).
fn build_ignore_differences(
    raw: &RawConfig,
    src: &crate::diag::SourceFile,
    diags: &mut Vec<Diagnostic>,
) -> Vec<IgnoreDifferences> {
    let mut out = Vec::new();
    for r in &raw.ignore_differences {
        let Some(kind) = &r.kind else {
            diags.push(
                Diagnostic::new("`[[ignore_differences]]` needs `kind`".to_string())
                    .at_span(src, r.span.clone()),
            );
            continue;
        };
        let pointers = r
            .json_pointers
            .as_ref()
            .map(|l| l.value.clone())
            .unwrap_or_default();
        if pointers.is_empty() {
            diags.push(
                Diagnostic::new(
                    "`[[ignore_differences]]` needs `json_pointers`, e.g. [\"/spec/replicas\"]"
                        .to_string(),
                )
                .at_span(src, r.span.clone()),
            );
            continue;
        }
        for p in &pointers {
            let identity = [
                "",
                "/apiVersion",
                "/kind",
                "/metadata",
                "/metadata/name",
                "/metadata/namespace",
            ];
            if !p.value.starts_with('/') || identity.contains(&p.value.as_str()) {
                diags.push(
                    Diagnostic::new(format!(
                        "`{}` is not a JSON pointer to a field dcm can leave to others",
                        p.value
                    ))
                    .at_span(src, p.span.clone())
                    .help("a JSON pointer starts with `/`, as `/spec/replicas`; an object's identity (apiVersion, kind, name, namespace) stays dcm's"),
                );
            }
        }
        out.push(IgnoreDifferences {
            // Addresses spell the core group `core`; objects have it empty.
            group: r.group.as_ref().map(|g| {
                if g.value == "core" {
                    String::new()
                } else {
                    g.value.clone()
                }
            }),
            kind: kind.value.clone(),
            name: r.name.as_ref().map(|n| n.value.clone()),
            namespace: r.namespace.as_ref().map(|n| n.value.clone()),
            json_pointers: pointers.into_iter().map(|p| p.value).collect(),
        });
    }
    out
}

/// Checks the raw file and builds the model, or returns every problem found.
pub fn build(raw: RawConfig) -> Result<Model, Diagnostics> {
    let mut diags = Vec::new();
    let src = raw.source.clone();
    let mut warnings = Vec::new();
    let clusters = build_clusters(&raw, &mut diags, &mut warnings);
    let ca = raw
        .ca
        .as_ref()
        .and_then(|c| logical_cloud::read_ca(&raw, c, "[ca]", &mut diags));
    let istio = istio::build_istio(&raw, &mut diags);
    let logical_clouds = logical_cloud::build_clouds(
        &raw,
        &clusters,
        ca.as_ref(),
        &istio,
        &mut diags,
        &mut warnings,
    );
    let lc_names: BTreeSet<&str> = raw
        .logical_clouds
        .iter()
        .map(|lc| lc.name.value.as_str())
        .collect();

    let resource_names = resource_names(&raw, &src, &mut diags);
    // Reading and parsing manifest files is most of the work for large files: the blocks
    // are split over the cores, in order, and their results joined in order (so problems
    // are reported exactly as one by one).
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(raw.resources.len())
        .max(1);
    let chunk = raw.resources.len().div_ceil(threads).max(1);
    let parts: Vec<(Vec<Resource>, Vec<Diagnostic>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = raw
            .resources
            .chunks(chunk)
            .map(|rs| {
                let (raw, clusters, lc_names, resource_names) =
                    (&raw, &clusters, &lc_names, &resource_names);
                scope.spawn(move || {
                    let mut diags = Vec::new();
                    let built = rs
                        .iter()
                        .filter_map(|r| {
                            build_resource(raw, r, clusters, lc_names, resource_names, &mut diags)
                        })
                        .collect();
                    (built, diags)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut resources = Vec::new();
    for (built, found) in parts {
        resources.extend(built);
        diags.extend(found);
    }

    let ignore_differences = build_ignore_differences(&raw, &src, &mut diags);
    let project = build_project(&raw, &src, &mut diags);
    if let Some(state) = &raw.state {
        if let Err(d) = crate::state::location::settings_from(state, &src, &raw.base_dir) {
            diags.extend(d);
        }
    }

    if diags.is_empty() {
        Ok(Model {
            clusters,
            resources,
            logical_clouds,
            ca,
            cloud_locations: raw
                .logical_clouds
                .iter()
                .map(|lc| {
                    (
                        lc.name.value.clone(),
                        src.locate(lc.name.span.clone().unwrap_or(0..0)),
                    )
                })
                .collect(),
            istio,
            warnings,
            ignore_differences,
            project,
            imports: raw
                .import
                .iter()
                .map(|a| (a.value.clone(), src.locate(a.span.clone().unwrap_or(0..0))))
                .collect(),
        })
    } else {
        diags.sort_by_key(location_key);
        Err(Diagnostics(diags))
    }
}

fn location_key(d: &Diagnostic) -> (String, usize, usize) {
    d.location
        .as_ref()
        .map(|l| (l.file.clone(), l.line, l.col))
        .unwrap_or_default()
}

fn build_clusters(
    raw: &RawConfig,
    diags: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
) -> BTreeMap<String, Cluster> {
    let src = &raw.source;
    let mut out = BTreeMap::new();
    // Each directory target so far (cluster, absolute path), to refuse one shared.
    let mut dirs: Vec<(String, PathBuf)> = Vec::new();
    for c in &raw.clusters {
        let name = &c.name.value;
        let at = |s: &Option<std::ops::Range<usize>>| src.locate(s.clone().unwrap_or(0..0));
        if let Err(why) = check_dns_label(name) {
            diags.push(
                Diagnostic::new(format!("invalid cluster name `{name}`: {why}"))
                    .at(at(&c.name.span)),
            );
        }
        let target = match (&c.dir, &c.context) {
            (Some(dir), None) => {
                if let Some(path) = check_dir(raw, name, dir, &dirs, diags) {
                    dirs.push((name.clone(), path));
                }
                Some(TargetSpec::Dir {
                    path: resolve_relative(&raw.base_dir, &dir.value),
                    secrets: build_dir_secrets(raw, c, diags, warnings),
                })
            }
            (None, Some(ctx)) => Some(TargetSpec::Context(ctx.value.clone())),
            (Some(_), Some(ctx)) => {
                diags.push(
                    Diagnostic::new(format!(
                        "cluster `{name}` sets both `dir` and `context`; set exactly one"
                    ))
                    .at(at(&ctx.span))
                    .help("`dir` writes to a directory (GitOps); `context` talks to a cluster"),
                );
                None
            }
            (None, None) => {
                diags.push(
                    Diagnostic::new(format!(
                        "cluster `{name}` needs a target: set `dir` or `context`"
                    ))
                    .at(at(&c.name.span)),
                );
                None
            }
        };
        let secrets_span = (c.secrets.as_ref().map(|s| &s.span))
            .or(c.sops_age_recipients.as_ref().map(|r| &r.span));
        if let (Some(_), None, Some(span)) = (&c.context, &c.dir, secrets_span) {
            let key = if c.secrets.is_some() {
                "secrets"
            } else {
                "sops_age_recipients"
            };
            diags.push(
                Diagnostic::new(format!(
                    "cluster `{name}` sets `{key}`, which only a directory target (`dir`) takes"
                ))
                .at(at(span))
                .help("a Kubernetes API server keeps Secrets itself; remove `secrets` (and `sops_age_recipients`)"),
            );
        }
        let mut cidr = |v: &Option<Spanned<String>>, key: &str| {
            let v = v.as_ref()?;
            match Cidr::parse(&v.value) {
                Ok(c) => Some(c),
                Err(why) => {
                    diags.push(
                        Diagnostic::new(format!("invalid `{key}` `{}`: {why}", v.value))
                            .at(at(&v.span)),
                    );
                    None
                }
            }
        };
        let pod_cidr = cidr(&c.pod_cidr, "pod_cidr");
        let service_cidr = cidr(&c.service_cidr, "service_cidr");
        let dns = match c.dns.as_ref().map(|d| d.value.as_str()) {
            None | Some("corefile") => DnsMode::Corefile,
            Some("custom") => DnsMode::Custom,
            Some(other) => {
                diags.push(
                    Diagnostic::new(format!(
                        "invalid `dns` `{other}`: must be \"corefile\" or \"custom\""
                    ))
                    .at(at(&c.dns.as_ref().and_then(|d| d.span.clone()))),
                );
                DnsMode::Corefile
            }
        };
        let cluster_domain = c
            .cluster_domain
            .as_ref()
            .map(|d| d.value.clone())
            .unwrap_or_else(|| "cluster.local".to_string());
        if let Some(d) = &c.cluster_domain {
            if let Err(why) = crate::object::check_dns_subdomain(&d.value) {
                diags.push(
                    Diagnostic::new(format!("invalid `cluster_domain` `{}`: {why}", d.value))
                        .at(at(&d.span)),
                );
            }
        }
        if let Some(g) = &c.gateway {
            if g.value.parse::<std::net::SocketAddr>().is_err() && !is_host_port(&g.value) {
                diags.push(
                    Diagnostic::new(format!(
                        "invalid `gateway` `{}`: must be host:port, e.g. \"192.0.2.10:15443\"",
                        g.value
                    ))
                    .at(at(&g.span)),
                );
            }
        }
        let access = build_remote_access(raw, c, diags);
        let own_ca = c.ca.as_ref().and_then(|ca| {
            logical_cloud::read_ca(raw, ca, &format!("[clusters.{name}.ca]"), diags)
        });
        if let Some(target) = target {
            out.insert(
                name.clone(),
                Cluster {
                    name: name.clone(),
                    target,
                    pod_cidr,
                    service_cidr,
                    cluster_domain,
                    network: c
                        .network
                        .as_ref()
                        .map(|n| n.value.clone())
                        .unwrap_or_else(|| "default".to_string()),
                    gateway: c.gateway.as_ref().map(|g| g.value.clone()),
                    dns,
                    access,
                    ca: own_ca,
                    location: at(&c.name.span),
                },
            );
        }
    }
    out
}

/// `path` made absolute (against the working directory) with `.` and `..` resolved by
/// their names (the directory may not exist yet).
fn lexical_absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Checks a cluster's `dir`: not empty, not `/`, not the config file's directory (nor
/// one that holds it), and not shared with another cluster's (nor inside or around it).
/// Returns its absolute path when it may be used.
fn check_dir(
    raw: &RawConfig,
    cluster: &str,
    dir: &Spanned<String>,
    others: &[(String, PathBuf)],
    diags: &mut Vec<Diagnostic>,
) -> Option<PathBuf> {
    let at = raw.source.locate(dir.span.clone().unwrap_or(0..0));
    let mut refuse = |why: String, help: &str| {
        diags.push(
            Diagnostic::new(format!("invalid `dir` of cluster `{cluster}`: {why}"))
                .at(at.clone())
                .help(help.to_string()),
        );
        None
    };
    let help = "give each cluster a directory of its own, e.g. `dir = \"out/<cluster>\"`";
    if dir.value.trim().is_empty() {
        return refuse("it is empty".into(), help);
    }
    let path = lexical_absolute(&resolve_relative(&raw.base_dir, &dir.value));
    if path.parent().is_none() {
        return refuse(
            format!("`{}` is the root of the file system", dir.value),
            help,
        );
    }
    let config_dir = lexical_absolute(&raw.base_dir);
    if config_dir.starts_with(&path) {
        return refuse(
            format!(
                "`{}` is the directory of the config file{}; dcm would write among the project's own files",
                dir.value,
                if config_dir == path { "" } else { " or holds it" }
            ),
            help,
        );
    }
    if let Some((other, _)) = others
        .iter()
        .find(|(_, p)| p.starts_with(&path) || path.starts_with(p))
    {
        return refuse(
            format!("`{}` is shared with cluster `{other}` (the same directory, or one inside the other); each cluster's files would overwrite or delete the other's", dir.value),
            help,
        );
    }
    Some(path)
}

/// Reads `secrets` and `sops_age_recipients` of a directory target. `plaintext` is
/// allowed with a warning; `sops` needs at least one age recipient. Whether a cluster
/// must say (it has Secrets with data) is checked once the objects are compiled.
fn build_dir_secrets(
    raw: &RawConfig,
    c: &crate::config::RawCluster,
    diags: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
) -> Option<DirSecrets> {
    let src = &raw.source;
    let name = &c.name.value;
    let recipients = c.sops_age_recipients.as_ref();
    let mode = match &c.secrets {
        None => {
            if let Some(r) = recipients {
                diags.push(
                    Diagnostic::new(format!(
                        "cluster `{name}` sets `sops_age_recipients` without `secrets = \"sops\"`"
                    ))
                    .at_span(src, r.span.clone())
                    .help("add `secrets = \"sops\"` to encrypt Secrets to these recipients"),
                );
            }
            return None;
        }
        Some(m) => m,
    };
    match mode.value.as_str() {
        "plaintext" => {
            if let Some(r) = recipients {
                diags.push(
                    Diagnostic::new(format!(
                        "cluster `{name}` sets `sops_age_recipients`, but `secrets = \"plaintext\"` encrypts nothing"
                    ))
                    .at_span(src, r.span.clone())
                    .help("set `secrets = \"sops\"`, or remove `sops_age_recipients`"),
                );
            }
            warnings.push(
                Diagnostic::warning(format!(
                    "cluster `{name}` writes Secret data to its directory unencrypted (`secrets = \"plaintext\"`): anyone who can read the directory or its history can read it"
                ))
                .at_span(src, mode.span.clone())
                .help("use `secrets = \"sops\"` with `sops_age_recipients` to encrypt it"),
            );
            Some(DirSecrets::Plaintext)
        }
        "sops" => {
            let mut age_recipients: Vec<String> = Vec::new();
            let before = diags.len();
            for r in recipients.map(|l| &l.value[..]).unwrap_or_default() {
                if let Err(why) = check_age_recipient(&r.value) {
                    diags.push(
                        Diagnostic::new(format!("invalid age recipient `{}`: {why}", r.value))
                            .at_span(src, r.span.clone())
                            .help("an age recipient is the public key `age-keygen` prints: `age1` followed by 58 lower-case letters and digits"),
                    );
                } else if !age_recipients.contains(&r.value) {
                    age_recipients.push(r.value.clone());
                }
            }
            if age_recipients.is_empty() && diags.len() == before {
                diags.push(
                    Diagnostic::new(format!(
                        "cluster `{name}` sets `secrets = \"sops\"` but no `sops_age_recipients`"
                    ))
                    .at_span(src, mode.span.clone())
                    .help("add `sops_age_recipients = [\"age1...\"]`: the public keys (from `age-keygen`) of whoever decrypts, e.g. Flux's"),
                );
            }
            Some(DirSecrets::Sops { age_recipients })
        }
        other => {
            diags.push(
                Diagnostic::new(format!(
                    "invalid `secrets` `{other}`: must be \"sops\" or \"plaintext\""
                ))
                .at_span(src, mode.span.clone()),
            );
            None
        }
    }
}

/// An age X25519 recipient: `age1` and bech32 characters (62 in all).
fn check_age_recipient(r: &str) -> Result<(), String> {
    const BECH32: &str = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    let Some(rest) = r.strip_prefix("age1") else {
        return Err("it must start with `age1`".into());
    };
    if rest.len() != 58 || !rest.chars().all(|ch| BECH32.contains(ch)) {
        return Err("it must be `age1` followed by 58 bech32 characters".into());
    }
    Ok(())
}

/// Reads `api_server`, `token_file` and `ca_file`: the API server must be an https URL,
/// the token a single non-empty line, the CA file PEM certificates. A token comes with the
/// CA of the server it is for. Whether a cluster needs them depends on its clouds (checked
/// there).
fn build_remote_access(
    raw: &RawConfig,
    c: &crate::config::RawCluster,
    diags: &mut Vec<Diagnostic>,
) -> RemoteAccess {
    let src = &raw.source;
    let name = &c.name.value;
    let mut out = RemoteAccess::default();
    if let (Some(token_file), None) = (&c.token_file, &c.ca_file) {
        diags.push(
            Diagnostic::new(format!(
                "cluster `{name}` sets `token_file` without `ca_file`: a token is only useful with the CA of the API server it is for"
            ))
            .at_span(src, token_file.span.clone())
            .help("add `ca_file` (the API server's CA certificate, PEM), or remove `token_file` to let dcm create a reader token"),
        );
    }
    if let Some(api) = &c.api_server {
        let api_ok = api
            .value
            .strip_prefix("https://")
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace));
        if api_ok {
            out.api_server = Some(api.value.clone());
        } else {
            diags.push(
                Diagnostic::new(format!(
                    "invalid `api_server` `{}`: must be an https URL, e.g. \"https://192.0.2.21:6443\"",
                    api.value
                ))
                .at_span(src, api.span.clone()),
            );
        }
    }
    let read = |key: &str, v: &Spanned<String>, diags: &mut Vec<Diagnostic>| -> Option<String> {
        match crate::config::read_input(&raw.base_dir, &v.value, crate::config::SMALL_FILE_LIMIT) {
            Ok(t) => Some(t),
            Err(e) => {
                let mut d = Diagnostic::new(format!("cannot read `{key}` file {e}"))
                    .at_span(src, v.span.clone());
                if let Some(h) = e.help() {
                    d = d.help(h);
                }
                diags.push(d);
                None
            }
        }
    };
    if let Some(token_file) = &c.token_file {
        if let Some(t) = read("token_file", token_file, diags) {
            let t = t.trim();
            if t.is_empty() || t.contains(char::is_whitespace) {
                diags.push(
                    Diagnostic::new(format!(
                        "`token_file` `{}` must hold one token on one line",
                        token_file.value
                    ))
                    .at_span(src, token_file.span.clone()),
                );
            } else {
                out.token = Some(t.to_string());
            }
        }
    }
    if let Some(ca_file) = &c.ca_file {
        if let Some(ca) = read("ca_file", ca_file, diags) {
            match check_pem(&ca, false) {
                Ok(()) => out.ca_cert = Some(ca),
                Err(why) => diags.push(
                    Diagnostic::new(format!("`ca_file` `{}` {why}", ca_file.value))
                        .at_span(src, ca_file.span.clone()),
                ),
            }
        }
    }
    out
}

/// `host:port` with a DNS host name.
fn is_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => {
            port.parse::<u16>().is_ok_and(|p| p > 0)
                && crate::object::check_dns_subdomain(host).is_ok()
        }
        None => false,
    }
}

/// The names of resource blocks; duplicates are reported.
fn resource_names(
    raw: &RawConfig,
    src: &SourceFile,
    diags: &mut Vec<Diagnostic>,
) -> BTreeSet<String> {
    let mut seen: BTreeMap<&str, &Spanned<String>> = BTreeMap::new();
    for r in &raw.resources {
        let Some(name) = &r.name else { continue };
        if let Err(why) = check_dns_label(&name.value) {
            diags.push(
                Diagnostic::new(format!("invalid resource name `{}`: {why}", name.value))
                    .at_span(src, name.span.clone()),
            );
        }
        if let Some(first) = seen.get(name.value.as_str()) {
            diags.push(
                Diagnostic::new(format!("two resources are named `{}`", name.value))
                    .at_span(src, name.span.clone())
                    .note(
                        "the first is here",
                        Some(src.locate(first.span.clone().unwrap_or(0..0))),
                    ),
            );
        } else {
            seen.insert(&name.value, name);
        }
    }
    seen.keys().map(|s| s.to_string()).collect()
}

fn build_resource(
    raw: &RawConfig,
    r: &RawResource,
    clusters: &BTreeMap<String, Cluster>,
    lc_names: &BTreeSet<&str>,
    resource_names: &BTreeSet<String>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Resource> {
    let src = &raw.source;
    let label = match &r.name {
        Some(n) => format!("resources.{}", n.value),
        None => format!("resources[{}]", r.index),
    };
    let at = |s: &Option<std::ops::Range<usize>>| src.locate(s.clone().unwrap_or(0..0));
    let before = diags.len();

    let mut cluster_names = Vec::new();
    match &r.clusters {
        None => diags.push(
            Diagnostic::new(format!(
                "{label} needs `clusters`: the clusters to create it in"
            ))
            .at(at(&r.span)),
        ),
        Some(list) => {
            if list.value.is_empty() {
                diags.push(
                    Diagnostic::new(format!("{label} has an empty `clusters` list"))
                        .at(at(&list.span)),
                );
            }
            for c in &list.value {
                if clusters.contains_key(&c.value)
                    || raw.clusters.iter().any(|rc| rc.name.value == c.value)
                {
                    if !cluster_names.contains(&c.value) {
                        cluster_names.push(c.value.clone());
                    }
                } else {
                    let mut d = Diagnostic::new(format!(
                        "{label} names cluster `{}`, which is not defined",
                        c.value
                    ))
                    .at(at(&c.span));
                    if let Some(s) = did_you_mean(
                        &c.value,
                        raw.clusters.iter().map(|rc| rc.name.value.as_str()),
                    ) {
                        d = d.help(format!("did you mean `{s}`?"));
                    }
                    diags.push(d);
                }
            }
        }
    }

    let mut manifests = Vec::new();
    match (&r.file, &r.manifest) {
        (Some(file), None) => {
            match crate::config::read_input(
                &raw.base_dir,
                &file.value,
                crate::config::MANIFEST_LIMIT,
            ) {
                Ok(text) => {
                    let display = file.value.clone();
                    let yaml_src = SourceFile::yaml(display, text);
                    let before = diags.len();
                    let found =
                        manifest::from_yaml(&yaml_src, &at(&file.span), &mut manifests, diags);
                    let allow_empty = r.allow_empty.as_ref().is_some_and(|a| a.value);
                    if found == 0 && diags.len() == before && !allow_empty {
                        diags.push(
                            Diagnostic::new(format!(
                                "manifest file `{}` of {label} holds no objects",
                                file.value
                            ))
                            .at(at(&file.span))
                            .help("an empty file would delete every object it declared before; set `allow_empty = true` in this resource if no objects is meant"),
                        );
                    }
                }
                Err(e) => {
                    let mut d = Diagnostic::new(format!("cannot read manifest file {e}"))
                        .at(at(&file.span));
                    if let Some(h) = e.help() {
                        d = d.help(h);
                    }
                    diags.push(d);
                }
            }
        }
        (None, Some(m)) => {
            manifest::from_inline(m.value.clone(), at(&m.span), &mut manifests, diags);
        }
        (Some(_), Some(m)) => diags.push(
            Diagnostic::new(format!(
                "{label} sets both `file` and `manifest`; set exactly one"
            ))
            .at(at(&m.span)),
        ),
        (None, None) => diags.push(
            Diagnostic::new(format!(
                "{label} needs `file` (a YAML file) or `manifest` (an inline object)"
            ))
            .at(at(&r.span)),
        ),
    }

    let mut depends_on = Vec::new();
    for dep in &r.depends_on {
        let location = at(&dep.span);
        match parse_dependency(&dep.value, lc_names, resource_names) {
            Ok(target) => depends_on.push(Dependency { target, location }),
            Err(why) => diags.push((*why).at(location)),
        }
    }

    (diags.len() == before).then(|| Resource {
        label,
        name: r.name.as_ref().map(|n| n.value.clone()),
        clusters: cluster_names,
        manifests,
        depends_on,
        wait: r.wait.as_ref().is_some_and(|w| w.value),
    })
}

/// Reads a `depends_on` entry: `logical_clouds.<name>`, `resources.<name>`, or an object
/// address `cluster/group/kind/namespace/name`.
fn parse_dependency(
    s: &str,
    lc_names: &BTreeSet<&str>,
    resource_names: &BTreeSet<String>,
) -> Result<DependencyTarget, Box<Diagnostic>> {
    if let Some(name) = s.strip_prefix("logical_clouds.") {
        if lc_names.contains(name) {
            return Ok(DependencyTarget::LogicalCloud(name.to_string()));
        }
        let mut d = Diagnostic::new(format!(
            "`depends_on` names logical cloud `{name}`, which is not defined"
        ));
        if let Some(m) = did_you_mean(name, lc_names.iter().copied()) {
            d = d.help(format!("did you mean `logical_clouds.{m}`?"));
        }
        return Err(Box::new(d));
    }
    if let Some(name) = s.strip_prefix("resources.") {
        if resource_names.contains(name) {
            return Ok(DependencyTarget::Resource(name.to_string()));
        }
        let mut d = Diagnostic::new(format!(
            "`depends_on` names resource `{name}`, but no [[resources]] block has `name = \"{name}\"`"
        ));
        if let Some(m) = did_you_mean(name, resource_names.iter().map(String::as_str)) {
            d = d.help(format!("did you mean `resources.{m}`?"));
        }
        return Err(Box::new(d));
    }
    if let Some(r) = crate::object::ObjRef::parse_address(s) {
        return Ok(DependencyTarget::Object(r));
    }
    Err(Box::new(Diagnostic::new(format!("`depends_on` entry `{s}` is not a dependency address")).help(
        "write `logical_clouds.<name>`, `resources.<name>`, or an object address `cluster/group/kind/namespace/name` (group `core`, namespace `_cluster` for cluster-scoped)",
    )))
}

#[cfg(test)]
mod tests;
