//! `apply` (a fresh plan, or exactly a saved one) and `destroy`.

use super::plan::make_plan;
use super::{load, runtime, Error, Exit, Global};
use crate::apply::Progress;
use crate::plan::{render, Action};
use crate::state::StateStore;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// The desired-state file; a saved plan must have been made from it.
    pub file: PathBuf,
    /// Apply exactly this saved plan.
    pub plan_file: Option<PathBuf>,
    pub auto_approve: bool,
    /// Delete everything the state records instead.
    pub destroy: bool,
    /// How long to wait for values only a cluster knows (an istiocoredns ClusterIP).
    pub wait: std::time::Duration,
    /// `--take-over`: addresses dcm may take from their owner.
    pub take_over: std::collections::BTreeSet<String>,
    /// `--force-conflicts`: take fields other field managers own.
    pub force_conflicts: bool,
    /// `--cascade`: a namespace dcm deletes may take objects dcm did not create with it.
    pub cascade: bool,
}

fn past_tense(a: Action) -> &'static str {
    match a {
        Action::Create => "created",
        Action::Update => "updated",
        Action::Delete => "destroyed",
        Action::Forget => "forgotten (left in the cluster)",
        Action::NoOp => "recorded in the state",
        Action::Refuse => "refused",
    }
}

/// `dcm apply` and `dcm destroy`.
///
/// 1. refuse early when a confirmation is needed but cannot be asked (stdin not a terminal);
/// 2. load the file (the saved plan's, if one is given);
/// 3. lock the state, then refresh and plan, so nothing moves between plan and apply;
/// 4. with a saved plan: refuse if the fresh plan differs from it in any decision;
///    otherwise show the plan and ask, unless `--auto-approve`;
/// 5. apply in dependency order, writing the state after every object;
/// 6. report what was done, failed and skipped; on SIGINT or SIGTERM, start nothing new,
///    let the changes in flight finish, and report what was and was not done (exit 130).
pub fn apply(opts: &ApplyOptions, global: &Global) -> Result<Exit, Error> {
    let verb = if opts.destroy { "destroy" } else { "apply" };
    let plan_key = crate::keyed::plan_key_from_env();
    let saved_file = opts
        .plan_file
        .as_deref()
        .map(|p| crate::plan::load_saved(p, plan_key.as_deref()))
        .transpose()?;
    if let (Some(s), Some(path)) = (&saved_file, &opts.plan_file) {
        check_config_path(&s.plan.config, &opts.file, path)?;
    }
    let saved = saved_file.as_ref().map(|s| s.plan.clone());
    let ask = saved.is_none() && !opts.auto_approve;
    if ask && !std::io::stdin().is_terminal() {
        return Err(Error::Usage(format!(
            "`dcm {verb}` needs confirmation, but standard input is not a terminal; nothing was changed\n  = help: review the plan, then run `dcm {verb} --auto-approve`{}",
            if opts.destroy { "" } else { ", or save it with `dcm plan -o PLAN` and run `dcm apply PLAN`" }
        )));
    }
    // Always the file the user names (`-f`), never one a plan names.
    let file = opts.file.clone();
    let target = super::state_target(global, Some(&file))?;
    let store = StateStore::open_at(&target.location, &target.access, verb)?;
    let state = store.existed().then_some(&store.state);
    let loaded = load(&file, state)?;
    if let (Some(s), Some(path)) = (&saved_file, &opts.plan_file) {
        let stale = |why: String| Error::Stale {
            path: path.display().to_string(),
            why,
        };
        // The state first: a plan made against another state is stale whatever its files.
        let now = crate::plan::PlannedState {
            lineage: state.map(|s| s.lineage.clone()),
            serial: state.map(|s| s.serial).unwrap_or(0),
        };
        if s.plan.state != now {
            return Err(stale(format!(
                "the state changed since the plan was made (serial {} then, {} now)",
                s.plan.state.serial, now.serial
            )));
        }
        let Some(binding) = &s.binding else {
            return Err(stale(
                "it does not record the files it was made from (made by an older dcm)".into(),
            ));
        };
        let config = std::fs::read(&file)
            .map_err(|e| Error::Io(format!("cannot read {}: {e}", file.display())))?;
        let key = crate::keyed::fingerprint_key(state);
        let now = crate::plan::Binding::of(&config, &loaded.desired, key.as_deref());
        if let Some(why) = binding.mismatch(&now) {
            return Err(stale(why));
        }
    }
    let (fresh, resolved, identities) = make_plan(
        &loaded,
        state,
        &file,
        global,
        saved
            .as_ref()
            .map(|p| p.operation == "destroy")
            .unwrap_or(opts.destroy),
        &opts.take_over,
        opts.cascade,
    )?;
    if fresh.summary.refused > 0 {
        crate::out!("{}", crate::plan::render::text(&fresh, global.style));
        return Err(Error::Refused(super::plan::refused_list(&fresh)));
    }
    let conflicted: Vec<&crate::plan::Change> = fresh
        .changes
        .iter()
        .filter(|c| c.conflicts.is_some())
        .collect();
    if !conflicted.is_empty() && !opts.force_conflicts {
        let mut msg = format!(
            "{} change(s) would take fields that other field managers own; nothing was changed:",
            conflicted.len()
        );
        for c in &conflicted {
            msg.push_str(&format!(
                "\n  - {}: {}",
                c.address,
                c.conflicts.as_deref().unwrap_or_default()
            ));
        }
        msg.push_str("\n  = help: take them with --force-conflicts (as kubectl apply --server-side does), or leave them to their owner with [[ignore_differences]]");
        return Err(Error::Refused(msg));
    }

    if let (Some(saved), Some(path)) = (&saved, &opts.plan_file) {
        if let Some(why) = saved.staleness(&fresh) {
            return Err(Error::Stale {
                path: path.display().to_string(),
                why,
            });
        }
    } else {
        crate::out!("{}", render::text(&fresh, global.style));
    }
    if !fresh.has_changes() {
        if saved.is_some() {
            crate::outln!("No changes.");
        }
        return Ok(Exit::Ok);
    }
    check_sops_if_needed(&fresh, &loaded)?;
    if ask && !confirm(verb)? {
        return Err(Error::Usage(format!(
            "{verb} cancelled; nothing was changed"
        )));
    }

    // The store's state always has a key (a new state gets one), so encrypted Secrets are
    // marked even on the first apply.
    let targets = loaded.targets(global, Some(&store.state))?;
    // Which cluster each context reached, saved with the first object written.
    let mut store = store;
    store.state.clusters.extend(identities);
    let store = Arc::new(Mutex::new(store));
    // SIGINT and SIGTERM from here on stop new work, and the report says what was done.
    let interrupt = crate::interrupt::Interrupt::default();
    let report = runtime()?.block_on(async {
        let watcher = tokio::spawn(crate::interrupt::watch(interrupt.clone()));
        let report = crate::apply::apply(
            &fresh,
            &resolved,
            &loaded.graph,
            &targets,
            store.clone(),
            crate::apply::Limits {
                parallelism: global.parallelism,
                per_cluster: global.cluster_parallelism,
                wait: opts.wait,
                force_conflicts: opts.force_conflicts,
            },
            &interrupt,
            |p: Progress<'_>| match p.result {
                Ok(()) => crate::outln!("{}: {}", p.address, past_tense(p.action)),
                Err(e) => crate::errln!("error: {}: {e}", p.address),
            },
        )
        .await;
        watcher.abort();
        report
    });
    // The run's journal goes into the state file, whatever happened.
    store
        .lock()
        .map_err(|_| Error::Io("the state lock was poisoned by a failed task".into()))?
        .fold()?;
    let counts = format!(
        "{} added, {} changed, {} destroyed",
        report.count(Action::Create),
        report.count(Action::Update),
        report.count(Action::Delete)
    );
    if report.ok() {
        let title = if opts.destroy { "Destroy" } else { "Apply" };
        crate::outln!(
            "\n{}",
            global
                .style
                .bold(&format!("{title} complete! Resources: {counts}."))
        );
        return Ok(Exit::Ok);
    }
    if report.interrupted {
        return Err(Error::Interrupted(interrupted_report(
            verb,
            &report,
            fresh.changes.len(),
            &counts,
        )));
    }
    let mut msg = format!(
        "{verb} failed: {} of {} changes done ({counts}), {} failed, {} skipped",
        report.done.len(),
        fresh.changes.len(),
        report.failed.len(),
        report.skipped.len()
    );
    for (a, e) in &report.failed {
        msg.push_str(&format!("\n  failed:  {a}: {e}"));
    }
    for a in &report.skipped {
        msg.push_str(&format!("\n  skipped: {a} (waits on a failed change)"));
    }
    msg.push_str(
        "\n  = help: the state records what was done; fix the cause and run the same command again",
    );
    Err(Error::ApplyFailed(msg))
}

/// Refuses a saved plan made from another config file than `given` (`-f`): the plan's
/// own record of its file (relative to the working directory, or to the plan's
/// directory) must name the same file.
fn check_config_path(
    recorded: &str,
    given: &std::path::Path,
    plan_path: &std::path::Path,
) -> Result<(), Error> {
    let given_c = std::fs::canonicalize(given).ok();
    let plan_dir = plan_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let same = given_c.is_some()
        && [PathBuf::from(recorded), plan_dir.join(recorded)]
            .iter()
            .any(|p| std::fs::canonicalize(p).ok() == given_c);
    if same {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "the saved plan {} was made from the config file {recorded:?}, but this apply reads {:?} (-f, default dcm.toml); nothing was applied\n  = help: pass the file the plan was made from with -f, or make a new plan",
        plan_path.display(),
        given.display().to_string()
    )))
}

/// What an interrupted run did and did not do.
fn interrupted_report(
    verb: &str,
    report: &crate::apply::ApplyReport,
    total: usize,
    counts: &str,
) -> String {
    let not_done = report.not_started.len() + report.skipped.len() + report.failed.len();
    let mut msg = format!(
        "{verb} interrupted: {} of {total} changes done ({counts}), {not_done} not done ({} not started, {} failed, {} skipped)",
        report.done.len(),
        report.not_started.len(),
        report.failed.len(),
        report.skipped.len()
    );
    for (a, e) in &report.failed {
        msg.push_str(&format!("\n  failed:      {a}: {e}"));
    }
    for a in &report.not_started {
        msg.push_str(&format!("\n  not started: {a}"));
    }
    for a in &report.skipped {
        msg.push_str(&format!("\n  skipped:     {a} (waits on a failed change)"));
    }
    msg.push_str(&format!(
        "\n  = help: the state records what was done; run `dcm {verb}` again to finish"
    ));
    msg
}

/// When the plan writes a Secret to a directory that encrypts with sops, checks that
/// `sops` runs before anything is written.
fn check_sops_if_needed(plan: &crate::plan::Plan, loaded: &super::Loaded) -> Result<(), Error> {
    use crate::model::{DirSecrets, TargetSpec};
    let clusters: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| matches!(c.action, Action::Create | Action::Update))
        .filter_map(|c| c.id())
        .filter(|id| id.is_secret())
        .filter(|id| {
            loaded.model.clusters.get(&id.cluster).is_some_and(|c| {
                matches!(
                    c.target,
                    TargetSpec::Dir {
                        secrets: Some(DirSecrets::Sops { .. }),
                        ..
                    }
                )
            })
        })
        .map(|id| id.cluster)
        .collect();
    let Some(cluster) = clusters.first() else {
        return Ok(());
    };
    crate::target::dir::check_sops().map_err(|why| {
        Error::Usage(format!(
            "cluster `{cluster}` encrypts Secrets with sops (`secrets = \"sops\"`), but {why}; nothing was changed\n  = help: install sops (https://github.com/getsops/sops), or choose `secrets = \"plaintext\"` for test-only data"
        ))
    })
}

/// Asks on the terminal; only `yes` approves.
fn confirm(verb: &str) -> Result<bool, Error> {
    crate::out!("\nDo you want to {verb} these changes? Only 'yes' will be accepted: ");
    std::io::stdout()
        .flush()
        .map_err(|e| Error::Io(e.to_string()))?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::Io(format!("cannot read the answer: {e}")))?;
    Ok(line.trim() == "yes")
}
