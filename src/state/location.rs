//! Where a state lives: a local file, or Secrets in a Kubernetes cluster.
//!
//! Written `PATH` or `k8s://CONTEXT/NAMESPACE/NAME` (the form `--state` takes and every
//! message shows). The context is everything before the last two `/`-separated parts, so
//! contexts that hold `/` themselves (EKS's `arn:aws:eks:…:cluster/name`) work.

use std::fmt;
use std::path::PathBuf;

/// The prefix of a Kubernetes state location.
pub const K8S_SCHEME: &str = "k8s://";

/// The longest state name: Kubernetes label values (the state's label) hold 63
/// characters. A state that is written needs room for its backup's name
/// (`<name>-backup`): [`MAX_WRITTEN_NAME`].
pub const MAX_NAME: usize = 63;

/// The longest name of a state dcm writes (its backup, `<name>-backup`, is a state too).
pub const MAX_WRITTEN_NAME: usize = MAX_NAME - "-backup".len();

/// Where the state of a run lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateLocation {
    /// A JSON file (with `.journal`, `.backup` and `.lock` files beside it).
    Local(PathBuf),
    /// Secrets (and a Lease lock) in a namespace of a cluster, reached through a
    /// kubeconfig context.
    Kubernetes(KubeLocation),
}

/// A state kept in a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeLocation {
    pub context: String,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for StateLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateLocation::Local(p) => write!(f, "{}", p.display()),
            StateLocation::Kubernetes(k) => k.fmt(f),
        }
    }
}

impl fmt::Display for KubeLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{K8S_SCHEME}{}/{}/{}",
            self.context, self.namespace, self.name
        )
    }
}

impl StateLocation {
    /// The default: `state/dcm.state.json`.
    pub fn default_local() -> StateLocation {
        StateLocation::Local(PathBuf::from("state/dcm.state.json"))
    }

    /// Parses what `--state` takes: `k8s://CONTEXT/NAMESPACE/NAME`, or a path.
    pub fn parse(text: &str) -> Result<StateLocation, String> {
        if text.is_empty() {
            return Err("the state location must not be empty".into());
        }
        let Some(rest) = text.strip_prefix(K8S_SCHEME) else {
            return Ok(StateLocation::Local(PathBuf::from(text)));
        };
        let mut parts = rest.rsplitn(3, '/');
        let (name, namespace, context) = (parts.next(), parts.next(), parts.next());
        match (context, namespace, name) {
            (Some(c), Some(ns), Some(n)) => KubeLocation::new(c, ns, n).map(StateLocation::Kubernetes),
            _ => Err(format!(
                "`{text}` is not a Kubernetes state location: write {K8S_SCHEME}CONTEXT/NAMESPACE/NAME"
            )),
        }
    }

    /// The path of a local state.
    pub fn local_path(&self) -> Option<&std::path::Path> {
        match self {
            StateLocation::Local(p) => Some(p),
            StateLocation::Kubernetes(_) => None,
        }
    }
}

impl KubeLocation {
    /// Checks each part as the API server would check the objects made from it.
    pub fn new(context: &str, namespace: &str, name: &str) -> Result<KubeLocation, String> {
        if context.is_empty() {
            return Err("the kubeconfig context of a Kubernetes state must not be empty".into());
        }
        if context.chars().any(char::is_control) {
            return Err(
                "the kubeconfig context of a Kubernetes state must not hold control characters"
                    .into(),
            );
        }
        crate::object::check_dns_label(namespace).map_err(|why| {
            format!("the namespace `{namespace}` of a Kubernetes state is not a valid namespace name (DNS-1123 label): it {why}")
        })?;
        check_state_name(name)?;
        Ok(KubeLocation {
            context: context.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }
}

/// A state name names Secrets and a Lease (DNS-1123 subdomains) and is the value of a
/// label: a DNS-1123 subdomain of at most [`MAX_NAME`] characters.
pub fn check_state_name(name: &str) -> Result<(), String> {
    let bad = |why: String| {
        format!("the name `{name}` of a Kubernetes state is not valid: it {why} (it names Secrets, a Lease and a label value: a DNS-1123 subdomain of at most {MAX_NAME} characters)")
    };
    if name.len() > MAX_NAME {
        return Err(bad(format!(
            "must be at most {MAX_NAME} characters (it has {})",
            name.len()
        )));
    }
    if name.is_empty() {
        return Err(bad("must not be empty".into()));
    }
    crate::object::check_dns_subdomain(name).map_err(bad)
}

/// What `[state]` says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StateSettings {
    /// None: `[state]` names no location (the default applies).
    pub location: Option<StateLocation>,
    /// `lock_lease`.
    pub lease: Option<std::time::Duration>,
}

/// Checks `[state]` and says what it sets; every problem is reported, at its place in
/// the file. A local `path` is relative to the file's directory, `base_dir`.
pub fn settings_from(
    raw: &crate::config::RawState,
    source: &crate::diag::SourceFile,
    base_dir: &std::path::Path,
) -> Result<StateSettings, Vec<crate::diag::Diagnostic>> {
    use crate::diag::Diagnostic;
    let mut diags = Vec::new();
    let at = |d: Diagnostic, span: &Option<std::ops::Range<usize>>| d.at_span(source, span.clone());
    let kubernetes = match raw.backend.as_ref().map(|b| b.value.as_str()) {
        None | Some("local") => false,
        Some("kubernetes") => true,
        Some(other) => {
            let b = raw
                .backend
                .as_ref()
                .map(|b| b.span.clone())
                .unwrap_or_default();
            diags.push(at(
                Diagnostic::new(format!(
                    "`state.backend` must be \"local\" or \"kubernetes\", found {other:?}"
                )),
                &b,
            ));
            return Err(diags);
        }
    };
    let lease = match &raw.lock_lease {
        None => None,
        Some(l) => match parse_lease(&l.value) {
            Ok(d) => Some(d),
            Err(why) => {
                diags.push(at(
                    Diagnostic::new(format!("`state.lock_lease` {why}")),
                    &l.span,
                ));
                None
            }
        },
    };
    let location = if kubernetes {
        if let Some(p) = &raw.path {
            diags.push(at(
                Diagnostic::new(
                    "`state.path` is for `backend = \"local\"`; a Kubernetes state is named by `context`, `namespace` and `name`",
                ),
                &p.span,
            ));
        }
        let mut missing = Vec::new();
        for (key, v) in [
            ("context", &raw.context),
            ("namespace", &raw.namespace),
            ("name", &raw.name),
        ] {
            if v.is_none() {
                missing.push(format!("`{key}`"));
            }
        }
        if !missing.is_empty() {
            diags.push(at(
                Diagnostic::new(format!(
                    "`[state]` with `backend = \"kubernetes\"` needs {}",
                    missing.join(", ")
                )),
                &raw.span,
            ));
        }
        // Each part on its own, so the error points at it.
        let mut ok = missing.is_empty();
        type Check = fn(&str) -> Result<KubeLocation, String>;
        let checks: [(&Option<crate::config::Spanned<String>>, Check); 3] = [
            (&raw.context, |v| KubeLocation::new(v, "x", "x")),
            (&raw.namespace, |v| KubeLocation::new("x", v, "x")),
            (&raw.name, |v| KubeLocation::new("x", "x", v)),
        ];
        for (value, check) in checks {
            if let Some(v) = value {
                if let Err(why) = check(&v.value) {
                    diags.push(at(Diagnostic::new(why), &v.span));
                    ok = false;
                }
            }
        }
        if let Some(n) = raw
            .name
            .as_ref()
            .filter(|n| ok && n.value.len() > MAX_WRITTEN_NAME)
        {
            diags.push(at(
                Diagnostic::new(format!(
                    "`state.name` must be at most {MAX_WRITTEN_NAME} characters (it has {}): dcm also writes the state's backup, `<name>-backup`",
                    n.value.len()
                )),
                &n.span,
            ));
            ok = false;
        }
        match (&raw.context, &raw.namespace, &raw.name) {
            (Some(c), Some(ns), Some(n)) if ok => Some(StateLocation::Kubernetes(KubeLocation {
                context: c.value.clone(),
                namespace: ns.value.clone(),
                name: n.value.clone(),
            })),
            _ => None,
        }
    } else {
        for (key, v) in [
            ("context", &raw.context),
            ("namespace", &raw.namespace),
            ("name", &raw.name),
            ("lock_lease", &raw.lock_lease),
        ] {
            if let Some(v) = v {
                diags.push(at(
                    Diagnostic::new(format!(
                        "`state.{key}` is for `backend = \"kubernetes\"`; a local state takes only `path`"
                    )),
                    &v.span,
                ));
            }
        }
        match &raw.path {
            Some(p) if p.value.is_empty() => {
                diags.push(at(
                    Diagnostic::new("`state.path` must not be empty"),
                    &p.span,
                ));
                None
            }
            Some(p) => Some(StateLocation::Local(base_dir.join(&p.value))),
            None => None,
        }
    };
    if diags.is_empty() {
        Ok(StateSettings { location, lease })
    } else {
        Err(diags)
    }
}

/// A lock lease: a duration from [`super::kube::MIN_LEASE`] to [`super::kube::MAX_LEASE`].
pub fn parse_lease(text: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("must be a duration such as \"30s\" ({e}), found {text:?}"))?;
    if d.subsec_nanos() != 0 {
        // The Lease holds whole seconds; a holder must not count on more than others see.
        return Err(format!("must be a whole number of seconds, found {text:?}"));
    }
    let (min, max) = (super::kube::MIN_LEASE, super::kube::MAX_LEASE);
    if d < min || d > max {
        return Err(format!(
            "must be from {} to {}, found {text:?}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_locations_parse_and_print_the_same() {
        let l = StateLocation::parse("k8s://kind-mgmt/dcm-system/prod").unwrap();
        assert_eq!(
            l,
            StateLocation::Kubernetes(KubeLocation {
                context: "kind-mgmt".into(),
                namespace: "dcm-system".into(),
                name: "prod".into()
            })
        );
        assert_eq!(l.to_string(), "k8s://kind-mgmt/dcm-system/prod");
        // A context with slashes (EKS) keeps them.
        let eks = "k8s://arn:aws:eks:eu-west-1:1234:cluster/mgmt/dcm/prod";
        let l = StateLocation::parse(eks).unwrap();
        let StateLocation::Kubernetes(k) = &l else {
            panic!("{l:?}")
        };
        assert_eq!(k.context, "arn:aws:eks:eu-west-1:1234:cluster/mgmt");
        assert_eq!(l.to_string(), eks);
        assert_eq!(
            StateLocation::parse("state/x.json").unwrap(),
            StateLocation::Local("state/x.json".into())
        );
    }

    fn settings(text: &str) -> Result<StateSettings, Vec<String>> {
        let source = crate::diag::SourceFile::new("t.toml", text.to_string());
        let raw = crate::config::parse(source.clone(), PathBuf::from("base"))
            .map_err(|d| d.iter().map(|d| d.to_string()).collect::<Vec<_>>())?;
        settings_from(
            &raw.state.unwrap_or_default(),
            &source,
            std::path::Path::new("base"),
        )
        .map_err(|d| d.iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn the_state_table_names_a_local_or_kubernetes_state() {
        assert_eq!(
            settings("[state]\nbackend = \"kubernetes\"\ncontext = \"mgmt\"\nnamespace = \"dcm\"\nname = \"prod\"\nlock_lease = \"15s\"\n").unwrap(),
            StateSettings {
                location: Some(StateLocation::parse("k8s://mgmt/dcm/prod").unwrap()),
                lease: Some(std::time::Duration::from_secs(15)),
            }
        );
        assert_eq!(
            settings("[state]\npath = \"s/x.json\"\n").unwrap().location,
            Some(StateLocation::Local(PathBuf::from("base/s/x.json")))
        );
        assert_eq!(settings("").unwrap(), StateSettings::default());
    }

    #[test]
    fn every_problem_of_the_state_table_is_reported_at_its_place() {
        let errs = settings(
            "[state]\nbackend = \"kubernetes\"\npath = \"x\"\nnamespace = \"Bad\"\nlock_lease = \"1s\"\n",
        )
        .unwrap_err();
        let all = errs.join("\n");
        assert!(
            all.contains("t.toml:5:14") && all.contains("from 3s to 1h"),
            "{all}"
        );
        assert!(
            all.contains("`state.path` is for `backend = \"local\"`") && all.contains("t.toml:3:"),
            "{all}"
        );
        assert!(all.contains("needs `context`, `name`"), "{all}");
        assert!(parse_lease("3500ms")
            .unwrap_err()
            .contains("whole number of seconds"));
        assert_eq!(parse_lease("2m"), Ok(std::time::Duration::from_secs(120)));
        let errs = settings("[state]\nbackend = \"s3\"\n").unwrap_err();
        assert!(
            errs[0].contains("must be \"local\" or \"kubernetes\""),
            "{errs:?}"
        );
        let errs = settings("[state]\nname = \"x\"\nbucket = 1\n").unwrap_err();
        assert!(
            errs.join("\n").contains("unknown key `bucket` in [state]"),
            "{errs:?}"
        );
        let errs = settings("[state]\nname = \"x\"\n").unwrap_err();
        assert!(
            errs[0].contains("a local state takes only `path`"),
            "{errs:?}"
        );
    }

    #[test]
    fn bad_kubernetes_locations_say_which_part_is_wrong() {
        let err = |s: &str| StateLocation::parse(s).unwrap_err();
        assert!(err("k8s://ctx/ns").contains("CONTEXT/NAMESPACE/NAME"));
        assert!(err("k8s:///ns/name").contains("context"));
        assert!(err("k8s://c/Dcm/name").contains("namespace `Dcm`"));
        assert!(err("k8s://c/ns/Prod").contains("name `Prod`"));
        assert!(err("k8s://c/ns/").contains("must not be empty"));
        let long = format!("k8s://c/ns/{}", "a".repeat(64));
        assert!(err(&long).contains("at most 63"), "{}", err(&long));
        assert!(err("").contains("empty"));
    }
}
