//! The desired-state file as written: raw values with the byte spans they came from.
//!
//! Loading walks the TOML tree by hand (with `toml_edit`, which keeps spans) so that every
//! unknown key, wrong type and missing key in the file is reported at once, each with a
//! "did you mean" hint. Nothing here checks meaning (references, names, overlaps): that is
//! the model's job. Nothing here reads other files.

mod input;
mod reader;

pub use input::{
    read_input, read_regular, set_allowed_paths, InputError, MANIFEST_LIMIT, SMALL_FILE_LIMIT,
};

use crate::diag::{Diagnostic, SourceFile};
use reader::{Reader, TableView};
use serde_json::Value;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A value with the byte span of the file it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Option<Range<usize>>,
}

impl<T> Spanned<T> {
    pub fn new(value: T, span: Option<Range<usize>>) -> Self {
        Spanned { value, span }
    }
}

/// The whole file, as written.
#[derive(Debug, Clone)]
pub struct RawConfig {
    pub source: SourceFile,
    /// The directory of the file; relative paths in it are relative to this.
    pub base_dir: PathBuf,
    pub ca: Option<RawCa>,
    /// `[istio]`: the Istio release the clouds target and how it is installed.
    pub istio: Option<RawIstio>,
    pub clusters: Vec<RawCluster>,
    pub logical_clouds: Vec<RawLogicalCloud>,
    pub resources: Vec<RawResource>,
    /// `import = [...]`: addresses of existing objects dcm may take on (Terraform's
    /// import blocks).
    pub import: Vec<Spanned<String>>,
    pub ignore_differences: Vec<RawIgnoreDifferences>,
    /// `[state]`: where the state lives.
    pub state: Option<RawState>,
    /// `[project]`: what the project is called in review comments.
    pub project: Option<RawProject>,
}

/// `[state]`: the state's backend and where in it the state is.
#[derive(Debug, Clone, Default)]
pub struct RawState {
    pub span: Option<Range<usize>>,
    /// `local` (default) or `kubernetes`.
    pub backend: Option<Spanned<String>>,
    /// The file of a local state, relative to the desired-state file.
    pub path: Option<Spanned<String>>,
    pub context: Option<Spanned<String>>,
    pub namespace: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    /// How long a Kubernetes state's lock lives without renewal, e.g. `30s`.
    pub lock_lease: Option<Spanned<String>>,
}

/// `[project]`.
#[derive(Debug, Clone)]
pub struct RawProject {
    pub span: Option<Range<usize>>,
    /// The name review comments carry (default: the file's name without `.toml`).
    pub name: Option<Spanned<String>>,
}

#[derive(Debug, Clone)]
pub struct RawCa {
    pub span: Option<Range<usize>>,
    pub root_cert: Option<Spanned<String>>,
    pub ca_cert: Option<Spanned<String>>,
    pub ca_key: Option<Spanned<String>>,
    pub cert_chain: Option<Spanned<String>>,
}

/// `[istio]`.
#[derive(Debug, Clone)]
pub struct RawIstio {
    pub span: Option<Range<usize>>,
    /// `1.31.0`: the release of every cloud's control plane.
    pub version: Option<Spanned<String>>,
    /// `sail`, `operator` or `none`.
    pub install: Option<Spanned<String>>,
}

#[derive(Debug, Clone)]
pub struct RawCluster {
    pub name: Spanned<String>,
    pub dir: Option<Spanned<String>>,
    pub context: Option<Spanned<String>>,
    /// How a directory target writes Secret data: `sops` or `plaintext`.
    pub secrets: Option<Spanned<String>>,
    /// The age recipients Secrets are encrypted to, with `secrets = "sops"`.
    pub sops_age_recipients: Option<Spanned<Vec<Spanned<String>>>>,
    pub pod_cidr: Option<Spanned<String>>,
    pub service_cidr: Option<Spanned<String>>,
    pub cluster_domain: Option<Spanned<String>>,
    pub network: Option<Spanned<String>>,
    pub gateway: Option<Spanned<String>>,
    pub dns: Option<Spanned<String>>,
    /// How a primary reaches this cluster's API server (primary-remote clouds).
    pub api_server: Option<Spanned<String>>,
    /// A file holding the service-account token the primary uses for this cluster.
    pub token_file: Option<Spanned<String>>,
    /// A file holding the CA certificate of this cluster's API server.
    pub ca_file: Option<Spanned<String>>,
    /// `[clusters.X.ca]`: this cluster's own intermediate CA (overrides the shared `[ca]`).
    pub ca: Option<RawCa>,
}

#[derive(Debug, Clone)]
pub struct RawLogicalCloud {
    pub name: Spanned<String>,
    pub clusters: Option<Spanned<Vec<Spanned<String>>>>,
    pub suffix: Option<Spanned<String>>,
    pub istio_namespace: Option<Spanned<String>>,
    pub injection_namespaces: Vec<Spanned<String>>,
    pub dns_forward: Vec<(Spanned<String>, Spanned<String>)>,
    pub services: Vec<RawService>,
    /// `multi-primary` (default) or `primary-remote`.
    pub topology: Option<Spanned<String>>,
    /// The cluster that runs the control plane, for `primary-remote`.
    pub primary: Option<Spanned<String>>,
    pub routes: Vec<RawRoute>,
    /// `current` (default) or `legacy-global`.
    pub profile: Option<Spanned<String>>,
    /// The control plane's revision (default: the cloud's name).
    pub revision: Option<Spanned<String>>,
}

/// One `[[logical_clouds.X.routes]]`: how clients of an exported service pick a subset.
#[derive(Debug, Clone)]
pub struct RawRoute {
    pub span: Option<Range<usize>>,
    pub service: Option<Spanned<String>>,
    pub clusters: Option<Spanned<Vec<Spanned<String>>>>,
    pub http: Vec<RawHttpRoute>,
}

/// One rule of a route: an optional header match and where matching requests go.
#[derive(Debug, Clone)]
pub struct RawHttpRoute {
    pub span: Option<Range<usize>>,
    pub headers: Vec<RawHeaderMatch>,
    pub to: Vec<RawDestination>,
}

#[derive(Debug, Clone)]
pub struct RawHeaderMatch {
    pub name: Spanned<String>,
    pub span: Option<Range<usize>>,
    pub exact: Option<Spanned<String>>,
    pub prefix: Option<Spanned<String>>,
    pub regex: Option<Spanned<String>>,
}

#[derive(Debug, Clone)]
pub struct RawDestination {
    pub span: Option<Range<usize>>,
    pub subset: Option<Spanned<String>>,
    pub weight: Option<Spanned<i64>>,
}

/// A named group of a service's workloads in one cluster (`version = "v2"` pods).
#[derive(Debug, Clone)]
pub struct RawSubset {
    pub span: Option<Range<usize>>,
    pub name: Option<Spanned<String>>,
    pub cluster: Option<Spanned<String>>,
    pub labels: Vec<(Spanned<String>, Spanned<String>)>,
}

#[derive(Debug, Clone)]
pub struct RawService {
    pub span: Option<Range<usize>>,
    pub name: Option<Spanned<String>>,
    pub namespace: Option<Spanned<String>>,
    pub clusters: Option<Spanned<Vec<Spanned<String>>>>,
    pub ports: Vec<RawPort>,
    pub subsets: Vec<RawSubset>,
}

#[derive(Debug, Clone)]
pub struct RawPort {
    pub span: Option<Range<usize>>,
    pub name: Option<Spanned<String>>,
    pub number: Option<Spanned<i64>>,
    pub protocol: Option<Spanned<String>>,
}

/// One `[[resources]]` entry.
#[derive(Debug, Clone)]
pub struct RawResource {
    /// Position in the `resources` array (0-based).
    pub index: usize,
    pub span: Option<Range<usize>>,
    /// Optional name, so that others can say `depends_on = ["resources.<name>"]`.
    pub name: Option<Spanned<String>>,
    pub clusters: Option<Spanned<Vec<Spanned<String>>>>,
    pub file: Option<Spanned<String>>,
    pub manifest: Option<Spanned<Value>>,
    pub depends_on: Vec<Spanned<String>>,
    /// `wait = true`: apply waits until its Deployments, StatefulSets and Jobs are ready
    /// before what depends on them starts.
    pub wait: Option<Spanned<bool>>,
    /// `allow_empty = true`: a `file` with no objects is not an error (it means none).
    pub allow_empty: Option<Spanned<bool>>,
}

/// `[[ignore_differences]]`: fields of matching objects that dcm leaves to whoever else
/// manages them (as Argo CD's ignoreDifferences).
#[derive(Debug, Clone)]
pub struct RawIgnoreDifferences {
    pub span: Option<Range<usize>>,
    pub group: Option<Spanned<String>>,
    pub kind: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub namespace: Option<Spanned<String>>,
    pub json_pointers: Option<Spanned<Vec<Spanned<String>>>>,
}

/// Why a file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {source}")]
    Read { path: String, source: InputError },
    #[error("{0}")]
    Invalid(crate::diag::Diagnostics),
}

/// Reads and parses the file at `path`. All problems are returned together.
pub fn load(path: &Path) -> Result<RawConfig, LoadError> {
    let shown = path.display().to_string();
    let text =
        read_regular(path, &shown, input::CONFIG_LIMIT).map_err(|source| LoadError::Read {
            path: shown.clone(),
            source,
        })?;
    let base_dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    parse(SourceFile::new(path.display().to_string(), text), base_dir)
        .map_err(|d| LoadError::Invalid(crate::diag::Diagnostics(d)))
}

pub use reader::KeyLog;

/// Every key the file reader accepts, as patterns (`clusters.<name>.dir`), found by
/// reading `text`: the keys of a table are found only when `text` has that table (see
/// [`KeyLog`]).
pub fn accepted_keys(text: &str) -> KeyLog {
    let source = SourceFile::new("keys.toml", text.to_string());
    let Ok(doc) = toml_edit::Document::parse(source.text.as_str()) else {
        return KeyLog::default();
    };
    let mut r = Reader::keeping_keys(&source);
    let _ = read(&mut r, &doc, &source, PathBuf::from("."));
    r.key_log()
}

/// Parses the text of a desired-state file.
pub fn parse(source: SourceFile, base_dir: PathBuf) -> Result<RawConfig, Vec<Diagnostic>> {
    if let Some(d) = crate::diag::control_character(&source) {
        return Err(vec![d]);
    }
    let doc = match toml_edit::Document::parse(source.text.as_str()) {
        Ok(doc) => doc,
        Err(e) => {
            let message = e.message().trim().to_string();
            return Err(vec![
                Diagnostic::new(format!("invalid TOML: {message}")).at_span(&source, e.span())
            ]);
        }
    };
    let mut r = Reader::new(&source);
    let raw = read(&mut r, &doc, &source, base_dir);
    let diags = r.into_diagnostics();
    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(raw)
}

/// Reads a parsed file; problems go to `r`.
fn read(
    r: &mut Reader<'_>,
    doc: &toml_edit::Document<&str>,
    source: &SourceFile,
    base_dir: PathBuf,
) -> RawConfig {
    let mut root = TableView::root(doc.as_table());

    let project = r.table(&mut root, "project").map(|mut t| {
        let project = RawProject {
            span: t.span.clone(),
            name: r.string(&mut t, "name"),
        };
        r.finish(t);
        project
    });
    let ca = read_ca(r, &mut root);
    let import = r
        .string_list(&mut root, "import")
        .map(|l| l.value)
        .unwrap_or_default();
    let state = read_state(r, &mut root);
    let istio = r.table(&mut root, "istio").map(|mut t| {
        let istio = RawIstio {
            span: t.span.clone(),
            version: r.string(&mut t, "version"),
            install: r.string(&mut t, "install"),
        };
        r.finish(t);
        istio
    });

    let mut clusters = Vec::new();
    if let Some(mut all) = r.table(&mut root, "clusters") {
        for (name, mut t) in r.named_tables(&mut all) {
            clusters.push(RawCluster {
                name,
                dir: r.string(&mut t, "dir"),
                context: r.string(&mut t, "context"),
                secrets: r.string(&mut t, "secrets"),
                sops_age_recipients: r.string_list(&mut t, "sops_age_recipients"),
                pod_cidr: r.string(&mut t, "pod_cidr"),
                service_cidr: r.string(&mut t, "service_cidr"),
                cluster_domain: r.string(&mut t, "cluster_domain"),
                network: r.string(&mut t, "network"),
                gateway: r.string(&mut t, "gateway"),
                dns: r.string(&mut t, "dns"),
                api_server: r.string(&mut t, "api_server"),
                token_file: r.string(&mut t, "token_file"),
                ca_file: r.string(&mut t, "ca_file"),
                ca: read_ca(r, &mut t),
            });
            r.finish(t);
        }
        r.finish(all);
    }

    let mut logical_clouds = Vec::new();
    if let Some(mut all) = r.table(&mut root, "logical_clouds") {
        for (name, mut t) in r.named_tables(&mut all) {
            let clusters = r.string_list(&mut t, "clusters");
            let suffix = r.string(&mut t, "suffix");
            let istio_namespace = r.string(&mut t, "istio_namespace");
            let injection_namespaces = r
                .string_list(&mut t, "injection_namespaces")
                .map(|l| l.value)
                .unwrap_or_default();
            let dns_forward = r.string_map(&mut t, "dns_forward");
            let topology = r.string(&mut t, "topology");
            let primary = r.string(&mut t, "primary");
            let profile = r.string(&mut t, "profile");
            let revision = r.string(&mut t, "revision");
            let mut services = Vec::new();
            for mut s in r.table_array(&mut t, "services") {
                let mut ports = Vec::new();
                for mut p in r.table_array(&mut s, "ports") {
                    ports.push(RawPort {
                        span: p.span.clone(),
                        name: r.string(&mut p, "name"),
                        number: r.integer(&mut p, "number"),
                        protocol: r.string(&mut p, "protocol"),
                    });
                    r.finish(p);
                }
                let mut subsets = Vec::new();
                for mut x in r.table_array(&mut s, "subsets") {
                    subsets.push(RawSubset {
                        span: x.span.clone(),
                        name: r.string(&mut x, "name"),
                        cluster: r.string(&mut x, "cluster"),
                        labels: r.string_map(&mut x, "labels"),
                    });
                    r.finish(x);
                }
                services.push(RawService {
                    span: s.span.clone(),
                    name: r.string(&mut s, "name"),
                    namespace: r.string(&mut s, "namespace"),
                    clusters: r.string_list(&mut s, "clusters"),
                    ports,
                    subsets,
                });
                r.finish(s);
            }
            let routes = r
                .table_array(&mut t, "routes")
                .into_iter()
                .map(|route| read_route(r, route))
                .collect();
            logical_clouds.push(RawLogicalCloud {
                name,
                clusters,
                suffix,
                istio_namespace,
                injection_namespaces,
                dns_forward,
                services,
                topology,
                primary,
                routes,
                profile,
                revision,
            });
            r.finish(t);
        }
        r.finish(all);
    }

    let mut resources = Vec::new();
    for (index, mut t) in r
        .table_array(&mut root, "resources")
        .into_iter()
        .enumerate()
    {
        resources.push(RawResource {
            index,
            span: t.span.clone(),
            name: r.string(&mut t, "name"),
            clusters: r.string_list(&mut t, "clusters"),
            file: r.string(&mut t, "file"),
            manifest: r.json(&mut t, "manifest"),
            depends_on: r
                .string_list(&mut t, "depends_on")
                .map(|l| l.value)
                .unwrap_or_default(),
            wait: r.boolean(&mut t, "wait"),
            allow_empty: r.boolean(&mut t, "allow_empty"),
        });
        r.finish(t);
    }
    let mut ignore_differences = Vec::new();
    for mut t in r.table_array(&mut root, "ignore_differences") {
        ignore_differences.push(RawIgnoreDifferences {
            span: t.span.clone(),
            group: r.string(&mut t, "group"),
            kind: r.string(&mut t, "kind"),
            name: r.string(&mut t, "name"),
            namespace: r.string(&mut t, "namespace"),
            json_pointers: r.string_list(&mut t, "json_pointers"),
        });
        r.finish(t);
    }
    r.finish(root);

    RawConfig {
        source: source.clone(),
        base_dir,
        ca,
        istio,
        clusters,
        logical_clouds,
        resources,
        import,
        ignore_differences,
        project,
        state,
    }
}

fn read_state(r: &mut Reader<'_>, root: &mut TableView<'_>) -> Option<RawState> {
    let mut t = r.table(root, "state")?;
    let state = RawState {
        span: t.span.clone(),
        backend: r.string(&mut t, "backend"),
        path: r.string(&mut t, "path"),
        context: r.string(&mut t, "context"),
        namespace: r.string(&mut t, "namespace"),
        name: r.string(&mut t, "name"),
        lock_lease: r.string(&mut t, "lock_lease"),
    };
    r.finish(t);
    Some(state)
}

/// The `[state]` table of the file at `path` alone (None when it has none): commands that
/// only look at the state need nothing else from the file, and are not stopped by a
/// problem elsewhere in it.
pub fn load_state_section(path: &Path) -> Result<Option<(RawState, SourceFile)>, LoadError> {
    let shown = path.display().to_string();
    let text =
        read_regular(path, &shown, input::CONFIG_LIMIT).map_err(|source| LoadError::Read {
            path: shown.clone(),
            source,
        })?;
    let source = SourceFile::new(shown, text);
    let invalid = |d: Vec<Diagnostic>| LoadError::Invalid(crate::diag::Diagnostics(d));
    if let Some(d) = crate::diag::control_character(&source) {
        return Err(invalid(vec![d]));
    }
    let doc = toml_edit::Document::parse(source.text.as_str()).map_err(|e| {
        let message = e.message().trim().to_string();
        invalid(vec![
            Diagnostic::new(format!("invalid TOML: {message}")).at_span(&source, e.span())
        ])
    })?;
    let mut r = Reader::new(&source);
    let mut root = TableView::root(doc.as_table());
    let state = read_state(&mut r, &mut root);
    let diags = r.into_diagnostics();
    if !diags.is_empty() {
        return Err(invalid(diags));
    }
    Ok(state.map(|s| (s, source)))
}

/// The directory relative paths in the file at `path` are relative to.
pub fn base_dir_of(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// A `ca` table: the shared `[ca]`, or a cluster's own `[clusters.X.ca]`.
fn read_ca(r: &mut Reader<'_>, parent: &mut TableView<'_>) -> Option<RawCa> {
    let mut t = r.table(parent, "ca")?;
    let ca = RawCa {
        span: t.span.clone(),
        root_cert: r.string(&mut t, "root_cert"),
        ca_cert: r.string(&mut t, "ca_cert"),
        ca_key: r.string(&mut t, "ca_key"),
        cert_chain: r.string(&mut t, "cert_chain"),
    };
    r.finish(t);
    Some(ca)
}

fn read_route(r: &mut Reader<'_>, mut t: TableView<'_>) -> RawRoute {
    let service = r.string(&mut t, "service");
    let clusters = r.string_list(&mut t, "clusters");
    let mut http = Vec::new();
    for mut rule in r.table_array(&mut t, "http") {
        let mut headers = Vec::new();
        if let Some(mut all) = r.table(&mut rule, "headers") {
            for name in all.keys() {
                if let Some(mut m) = r.table(&mut all, &name.value) {
                    headers.push(RawHeaderMatch {
                        span: m.span.clone(),
                        exact: r.string(&mut m, "exact"),
                        prefix: r.string(&mut m, "prefix"),
                        regex: r.string(&mut m, "regex"),
                        name,
                    });
                    r.finish(m);
                }
            }
            r.finish(all);
        }
        let mut to = Vec::new();
        for mut d in r.table_array(&mut rule, "to") {
            to.push(RawDestination {
                span: d.span.clone(),
                subset: r.string(&mut d, "subset"),
                weight: r.integer(&mut d, "weight"),
            });
            r.finish(d);
        }
        http.push(RawHttpRoute {
            span: rule.span.clone(),
            headers,
            to,
        });
        r.finish(rule);
    }
    let route = RawRoute {
        span: t.span.clone(),
        service,
        clusters,
        http,
    };
    r.finish(t);
    route
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<RawConfig, Vec<Diagnostic>> {
        parse(
            SourceFile::new("t.toml", text.to_string()),
            PathBuf::from("."),
        )
    }

    #[test]
    fn reads_clusters_and_resources_in_file_order() {
        let cfg = parse_str(
            r#"
[clusters.b]
dir = "out/b"
[clusters.a]
context = "ctx-a"
[[resources]]
clusters = ["a"]
manifest = { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "x" }, data = { k = "v" } }
depends_on = ["resources.other"]
"#,
        )
        .unwrap();
        let names: Vec<_> = cfg.clusters.iter().map(|c| c.name.value.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
        assert_eq!(cfg.clusters[1].context.as_ref().unwrap().value, "ctx-a");
        let m = &cfg.resources[0].manifest.as_ref().unwrap().value;
        assert_eq!(m["metadata"]["name"], "x");
        assert_eq!(cfg.resources[0].depends_on[0].value, "resources.other");
    }

    #[test]
    fn every_unknown_key_and_wrong_type_is_reported_with_a_hint() {
        let errs = parse_str(
            r#"
[clusters.a]
dri = "out/a"
pod_cidr = 10
[[resources]]
clusterz = ["a"]
"#,
        )
        .unwrap_err();
        let text: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
        assert_eq!(errs.len(), 3, "{text:#?}");
        assert!(
            text[0].contains("unknown key `dri` in [clusters.a]"),
            "{}",
            text[0]
        );
        assert!(text[0].contains("did you mean `dir`?"), "{}", text[0]);
        assert!(text[0].contains("t.toml:3:1"), "{}", text[0]);
        assert!(
            text[1].contains("`clusters.a.pod_cidr` must be a string, found integer"),
            "{}",
            text[1]
        );
        assert!(text[2].contains("did you mean `clusters`?"), "{}", text[2]);
    }

    /// A file with every table the reader knows, so that it asks for every key.
    const EVERY_TABLE: &str = r#"
import = ["c/core/Namespace/_cluster/x"]
[project]
[state]
[istio]
[ca]
[clusters.c]
[clusters.c.ca]
[logical_clouds.l]
dns_forward = { c = "10.0.0.1" }
[[logical_clouds.l.services]]
ports = [{ number = 1 }]
subsets = [{ labels = { a = "b" } }]
[[logical_clouds.l.routes]]
http = [{ headers = { h = { exact = "x" } }, to = [{ subset = "s" }] }]
[[resources]]
[[ignore_differences]]
"#;

    /// The tables and keys the reference documents: each heading that names a table or
    /// key (`` ## `[clusters.<name>]` ``, `` ### `[[logical_clouds.<name>.services]]` ``,
    /// `` ## `import` ``) as a pattern (`clusters.<name>`, `logical_clouds.<name>.services[]`),
    /// with the text of its section.
    fn reference_sections(doc: &str) -> Vec<(String, String)> {
        let mut sections: Vec<(usize, String, String)> = Vec::new();
        let mut open: Vec<usize> = Vec::new();
        let mut in_code = false;
        for line in doc.lines() {
            if line.starts_with("```") {
                in_code = !in_code;
            }
            let level = line.chars().take_while(|c| *c == '#').count();
            if !in_code && level > 0 && line[level..].starts_with(' ') {
                open.retain(|&i| sections[i].0 < level);
                let title = line[level..].trim();
                let named = title
                    .strip_prefix('`')
                    .and_then(|t| t.strip_suffix('`'))
                    .filter(|t| !t.contains('`'));
                if let Some(name) = named {
                    let pattern = match name.strip_prefix("[[").and_then(|n| n.strip_suffix("]]")) {
                        Some(n) => format!("{n}[]"),
                        None => name
                            .trim_start_matches('[')
                            .trim_end_matches(']')
                            .to_string(),
                    };
                    sections.push((level, pattern, String::new()));
                    open.push(sections.len() - 1);
                    continue;
                }
            }
            for &i in &open {
                sections[i].2.push_str(line);
                sections[i].2.push('\n');
            }
        }
        sections.into_iter().map(|(_, p, t)| (p, t)).collect()
    }

    #[test]
    fn every_key_the_reader_accepts_is_in_the_configuration_reference() {
        let log = accepted_keys(EVERY_TABLE);
        let unread: Vec<&String> = log.tables.difference(&log.entered).collect();
        assert!(
            unread.is_empty(),
            "add these tables to EVERY_TABLE, so their keys are checked too: {unread:?}"
        );
        assert!(log.keys.contains("clusters.<name>.dir"), "{:?}", log.keys);
        assert!(log
            .keys
            .contains("logical_clouds.<name>.routes[].http[].to[].weight"));
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let sections = reference_sections(&doc);
        let mut missing = Vec::new();
        for key in &log.keys {
            if sections.iter().any(|(p, _)| {
                [key.clone(), format!("{key}[]"), format!("{key}.<name>")].contains(p)
            }) {
                continue;
            }
            // The deepest section of a table the key is in must have a row for it.
            let home = sections
                .iter()
                .filter(|(p, _)| key.starts_with(&format!("{p}.")))
                .max_by_key(|(p, _)| p.len());
            let documented = home
                .is_some_and(|(p, text)| text.contains(&format!("| `{}` |", &key[p.len() + 1..])));
            if !documented {
                missing.push(key.clone());
            }
        }
        assert!(
            missing.is_empty(),
            "keys the file reader accepts but docs/configuration.md does not document (a table row `| `key` |` in the section of its table): {missing:#?}"
        );
    }

    #[test]
    fn syntax_errors_have_a_location() {
        let errs = parse_str("[clusters.a]\ndir = \"x\nother = 1\n").unwrap_err();
        assert_eq!(errs.len(), 1);
        let text = errs[0].to_string();
        assert!(text.starts_with("error: invalid TOML"), "{text}");
        assert!(text.contains("t.toml:2:"), "{text}");
    }
}
