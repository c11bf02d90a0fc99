//! Operations: one entry function per command, each listing its steps in its doc. The CLI
//! fills an options struct and calls one of these; all real work happens here or below.

mod apply;
mod drift;
mod import;
mod plan;
mod refresh;
mod show;

pub use apply::{apply, ApplyOptions};
pub use drift::{drift, DriftOptions};
pub use import::{import, recover, TAKEN_FROM};
pub use plan::{graph, plan, validate, PlanFormat, PlanOptions};
pub use show::{
    force_unlock, show, state_list, state_mv, state_pull, state_push, state_rm, state_show,
};

use crate::compile::Desired;
use crate::diag::Diagnostics;
use crate::graph::Graph;
use crate::model::Model;
use crate::output::Style;
use crate::state::{Access, StateLocation};
use crate::target::{ReadItem, Targets};
use std::path::{Path, PathBuf};

/// Settings every command shares.
#[derive(Debug, Clone)]
pub struct Global {
    /// `--state`, when given: it wins over the file's `[state]` (see [`state_target`]),
    /// and a saved plan's recorded state location stands in for one that was not.
    pub state: Option<StateLocation>,
    /// `--lock-timeout`: how long to wait for a lock another run holds (zero: fail at once).
    pub lock_timeout: std::time::Duration,
    /// The kubeconfig file(s) for clusters given by `context` (None: ~/.kube/config).
    pub kubeconfig: Option<PathBuf>,
    /// Work in flight at once over all clusters (`--parallelism`).
    pub parallelism: usize,
    /// Work in flight at once in one cluster (`--cluster-parallelism`).
    pub cluster_parallelism: usize,
    pub style: Style,
    /// Time limits and the retry budget for requests to API servers.
    pub net: crate::target::NetSettings,
}

/// The environment variable that sets the lease of a Kubernetes state's lock (it wins
/// over `[state] lock_lease`).
pub const LOCK_LEASE_ENV: &str = "DCM_LOCK_LEASE";

/// Where the state of a run lives, and how to reach it.
#[derive(Debug, Clone)]
pub struct StateTarget {
    pub location: StateLocation,
    pub access: Access,
}

/// The state of a run: `--state` when given; else what the `[state]` table of `file` (the
/// desired-state file, when there is one) says; else `state/dcm.state.json`. The lease of
/// the lock: `DCM_LOCK_LEASE`, else `[state] lock_lease`, else 30s.
pub fn state_target(global: &Global, file: Option<&Path>) -> Result<StateTarget, Error> {
    let mut settings = crate::state::location::StateSettings::default();
    if let Some(file) = file {
        if let Some((raw, source)) = crate::config::load_state_section(file)? {
            let base = crate::config::base_dir_of(file);
            settings = crate::state::location::settings_from(&raw, &source, &base)
                .map_err(|d| Error::Invalid(Diagnostics(d)))?;
        }
    }
    let lease = match std::env::var(LOCK_LEASE_ENV) {
        Ok(v) => crate::state::location::parse_lease(&v)
            .map_err(|why| Error::Usage(format!("{LOCK_LEASE_ENV} {why}")))?,
        Err(_) => settings.lease.unwrap_or(crate::state::kube::DEFAULT_LEASE),
    };
    let location = global
        .state
        .clone()
        .or(settings.location)
        .unwrap_or_else(StateLocation::default_local);
    Ok(StateTarget {
        location,
        access: Access {
            kubeconfig: global.kubeconfig.clone(),
            net: global.net,
            lock_timeout: global.lock_timeout,
            lease,
        },
    })
}

/// The state location of a run (`file`: the desired-state file, for its `[state]`) as a
/// saved plan records it: a local state's path made absolute, or the Kubernetes state.
/// Its `Display` is the text recorded (the path, or `k8s://CONTEXT/NAMESPACE/NAME`);
/// [`at_state_location`] reads that text back. (The one place that says where a run's
/// state is.)
pub fn state_location(global: &Global, file: Option<&Path>) -> Result<StateLocation, Error> {
    Ok(match state_target(global, file)?.location {
        StateLocation::Local(p) => StateLocation::Local(absolute(&p)),
        k => k,
    })
}

/// How a command ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success, nothing to report (exit 0).
    Ok,
    /// Success, and there are changes or drift (exit 2 where the command promises it).
    Changes,
}

/// Everything that can stop a command. Rendered once, in `main`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Load(#[from] crate::config::LoadError),
    /// Already rendered with `error:` prefixes and locations.
    #[error("{0}")]
    Invalid(Diagnostics),
    #[error(transparent)]
    Setup(#[from] crate::target::TargetSetupError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Lock(#[from] crate::state::lock::LockError),
    #[error(transparent)]
    Refresh(#[from] crate::refresh::RefreshError),
    #[error(transparent)]
    PlanFile(#[from] crate::plan::PlanFileError),
    /// A saved plan failed one of the checks `apply PLAN` makes.
    #[error("the saved plan {path} fails the {check} check: {why}; nothing was applied\n  = help: {help}")]
    PlanRefused {
        path: String,
        check: &'static str,
        why: String,
        help: String,
    },
    #[error(transparent)]
    Target(#[from] crate::plan::targeting::NoMatch),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    ApplyFailed(String),
    /// SIGINT or SIGTERM stopped an apply or destroy (exit 130).
    #[error("{0}")]
    Interrupted(String),
    /// The plan holds objects this state does not own (listed, with what to do).
    #[error("{0}")]
    Refused(String),
    /// A cluster's API server refused planned objects (a dry run): each with its message.
    #[error("{0}")]
    ServerRejected(String),
    #[error("{0}")]
    Io(String),
}

impl Error {
    /// The exit code: 130 for an interrupted run, 1 for every other error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Interrupted(_) => crate::interrupt::EXIT_CODE,
            _ => 1,
        }
    }

    /// Whether the message is already a full rendering (with its own `error:` lines).
    pub fn is_prerendered(&self) -> bool {
        matches!(self, Error::Invalid(_))
            || matches!(self, Error::Load(crate::config::LoadError::Invalid(_)))
    }
}

/// `global`, with the state at `location` (the text of a [`state_location`], as a saved
/// plan records it).
pub(crate) fn at_state_location(global: &Global, location: &str) -> Result<Global, Error> {
    let state = StateLocation::parse(location).map_err(|why| {
        Error::Usage(format!(
            "the state location {location:?} a saved plan records is not one: {why}"
        ))
    })?;
    Ok(Global {
        state: Some(state),
        ..global.clone()
    })
}

/// `path` made absolute, symbolic links resolved as far as it exists.
pub(crate) fn absolute(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    let parent = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match (std::fs::canonicalize(parent), path.file_name()) {
        (Ok(d), Some(name)) => d.join(name),
        _ => std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
    }
}

/// The file, understood: model, desired objects and their graph. Contacts no cluster.
/// Leaves `value` to the operating system instead of freeing it, for what a command
/// holds until it ends: the process is about to exit, and walking 100k object trees only
/// to free them costs a twentieth of a plan. Only for plain data (nothing whose drop
/// releases a lock or writes a file).
pub(crate) fn leave_to_exit<T>(value: T) {
    std::mem::forget(value);
}

pub struct Loaded {
    pub model: Model,
    pub desired: Desired,
    pub graph: Graph,
}

/// Parses, validates, compiles and orders the file at `path`. `state` supplies the values
/// dcm allocated before (they never change).
pub fn load(path: &Path, state: Option<&crate::state::State>) -> Result<Loaded, Error> {
    let raw = crate::config::load(path)?;
    let mut model = crate::model::build(raw).map_err(Error::Invalid)?;
    // Warnings never stop a command; every command that reads the file shows them.
    for w in &model.warnings {
        crate::errln!("{w}");
    }
    let allocations = crate::compile::Allocations::from_state(state);
    let desired = crate::compile::compile_taking_manifests(&mut model, &allocations)
        .map_err(Error::Invalid)?;
    let graph = crate::graph::build(&desired).map_err(Error::Invalid)?;
    Ok(Loaded {
        model,
        desired,
        graph,
    })
}

impl Loaded {
    /// The targets of the file's clusters; `state` supplies the key that marks Secrets a
    /// directory target encrypts (none without a state).
    pub fn targets(
        &self,
        global: &Global,
        state: Option<&crate::state::State>,
    ) -> Result<Targets, Error> {
        let key = state.and_then(|s| s.secrets_hmac_key.bytes());
        let targets = Targets::for_model(
            &self.model,
            global.kubeconfig.as_deref(),
            key.as_deref(),
            global.net,
        )?;
        if let Some(s) = state {
            targets.scope_to_lineage(&s.lineage);
        }
        Ok(targets)
    }

    /// What a refresh reads (see [`read_items`]).
    pub fn read_items(&self, state: Option<&crate::state::State>) -> Vec<ReadItem> {
        read_items(&self.desired, state)
    }
}

/// What a refresh reads: every object the file wants (with what it wants it to be)
/// and, with `state`, every object the state records.
pub(crate) fn read_items(
    desired: &crate::compile::Desired,
    state: Option<&crate::state::State>,
) -> Vec<ReadItem> {
    let mut items: Vec<ReadItem> = desired
        .objects
        .iter()
        .map(|o| wanted(o, state.is_some_and(|s| s.get(&o.id).is_some())))
        .collect();
    if let Some(s) = state {
        // What the file no longer wants is read whole: a delete shows all that goes.
        items.extend(s.objects.iter().map(|e| ReadItem {
            id: e.id(),
            api_version: e.api_version.clone(),
            desired: None,
            whole: e.origin == crate::state::Origin::Edited || desired.get(&e.id()).is_none(),
            owned: true,
        }));
    }
    items
}

/// How a refresh reads an object the file wants: with what the file wants it to be, or
/// whole when dcm only edits part of it. `owned`: see [`ReadItem::owned`].
pub(crate) fn wanted(o: &crate::compile::DesiredObject, owned: bool) -> ReadItem {
    ReadItem {
        id: o.id.clone(),
        api_version: o.api_version.clone(),
        desired: o.edit.is_none().then(|| o.object.clone()),
        whole: o.edit.is_some(),
        owned,
    }
}

/// The objects whose fields some desired objects are waiting for (a Service's address,
/// a token), read whole: status and server-set data included.
pub(crate) fn probe_items(desired: &crate::compile::Desired) -> Vec<ReadItem> {
    let mut items: Vec<ReadItem> = desired
        .objects
        .iter()
        .flat_map(|o| &o.known_after_apply)
        .filter_map(|k| k.source_object())
        .map(|(id, api_version)| ReadItem {
            id: id.clone(),
            api_version: api_version.to_string(),
            desired: None,
            whole: true,
            owned: true,
        })
        .collect();
    items.sort_by(|a, b| a.id.cmp(&b.id));
    items.dedup_by(|a, b| a.id == b.id);
    items
}

/// The async runtime behind refresh and apply.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Io(format!("cannot start the async runtime: {e}")))
}
