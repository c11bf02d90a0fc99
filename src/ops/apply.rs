//! `apply` (a fresh plan, or exactly a saved one) and `destroy`.

use super::plan::make_plan;
use super::{load, Error, Exit, Global};
use crate::apply::Progress;
use crate::plan::{render, Action, Binding, SavedPlan};
use crate::state::StateStore;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// The desired-state file; a saved plan must have been made from one with the same
    /// content.
    pub file: PathBuf,
    /// Whether `-f` was given: a saved plan's recorded config file stands in for one that
    /// was not.
    pub file_given: bool,
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
    /// `--target`: address globs a partial plan is restricted to.
    pub targets: Vec<String>,
    /// `--refresh-only`: record live values in the state; change no cluster.
    pub refresh_only: bool,
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
/// 2. with a saved plan: take the state it records (a `--state` must name the same);
/// 3. lock the state; with a saved plan, check it is the same state, unchanged since, then
///    find the config file it records (or check `-f`) and check the files are as planned;
/// 4. refresh and plan (apply, destroy or refresh-only; whole or targeted) under the lock,
///    so nothing moves between plan and apply;
/// 5. with a saved plan: refuse if the fresh plan differs from it in any decision;
///    otherwise show the plan and ask, unless `--auto-approve`;
/// 6. apply in dependency order, writing the state after every object (refresh-only:
///    write only the state);
/// 7. report what was done, failed and skipped; on SIGINT or SIGTERM, start nothing new,
///    let the changes in flight finish, and report what was and was not done (exit 130).
pub fn apply(opts: &ApplyOptions, global: &Global) -> Result<Exit, Error> {
    let plan_key = crate::keyed::plan_key_from_env();
    let saved_file = opts
        .plan_file
        .as_deref()
        .map(|p| crate::plan::load_saved(p, plan_key.as_deref()))
        .transpose()?;
    let saved_at = saved_file.as_ref().zip(opts.plan_file.as_deref());
    if let Some((s, path)) = saved_at {
        if !opts.targets.is_empty() || opts.refresh_only {
            return Err(Error::Usage(format!(
                "--target and --refresh-only make a new plan; the saved plan {} already records what it does ({}{}); nothing was applied\n  = help: apply the saved plan as it is (`dcm apply {}`), or make a new one with these flags: `dcm plan ... -o PLAN`",
                path.display(),
                s.plan.operation,
                if s.plan.targets.is_empty() { String::new() } else { format!(", --target {}", s.plan.targets.join(" --target ")) },
                path.display()
            )));
        }
    }
    let operation = match &saved_file {
        Some(s) => s.plan.operation.clone(),
        None if opts.destroy => "destroy".to_string(),
        None if opts.refresh_only => super::refresh::OPERATION.to_string(),
        None => "apply".to_string(),
    };
    let destroy = operation == "destroy";
    let verb = if opts.destroy { "destroy" } else { "apply" };
    let saved = saved_file.as_ref().map(|s| s.plan.clone());
    let ask = saved.is_none() && !opts.auto_approve;
    if ask && !std::io::stdin().is_terminal() {
        let help = if opts.destroy {
            "review the plan with `dcm plan --destroy -o PLAN`, then carry out exactly that plan with `dcm apply PLAN`; or run `dcm destroy --auto-approve`"
        } else if opts.refresh_only {
            "review the plan with `dcm plan --refresh-only -o PLAN`, then run `dcm apply PLAN`; or run `dcm apply --refresh-only --auto-approve`"
        } else {
            "review the plan with `dcm plan -o PLAN`, then run `dcm apply PLAN`; or run `dcm apply --auto-approve`"
        };
        return Err(Error::Usage(format!(
            "`dcm {verb}` needs confirmation, but standard input is not a terminal; nothing was changed\n  = help: {help}"
        )));
    }
    // A saved plan's own state, unless --state names the same one.
    let global = match saved_at {
        Some((s, path)) => saved_state(s, path, global)?,
        None => global.clone(),
    };
    let global = &global;
    // The file's [state] (its lock lease, and where the state is when neither --state
    // nor a saved plan says).
    let target = super::state_target(global, opts.file.is_file().then_some(opts.file.as_path()))?;
    let store = StateStore::open_at(&target.location, &target.access, verb)?;
    let state = store.existed().then_some(&store.state);
    // The state first: a plan made against another state fails whatever its files.
    if let Some((s, path)) = saved_at {
        check_saved_state(s, path, global, state)?;
    }
    let file = match saved_at {
        Some((s, path)) => saved_config(s, path, opts, state)?,
        None => opts.file.clone(),
    };
    let mut loaded = load(&file, state)?;
    if let Some((s, path)) = saved_at {
        check_saved_inputs(s, path, &file, state, &loaded)?;
    }
    let targets = saved
        .as_ref()
        .map(|p| p.targets.clone())
        .unwrap_or_else(|| opts.targets.clone());
    if operation == super::refresh::OPERATION {
        let fresh = super::refresh::make_refresh_plan(&loaded, state, &file, global, &targets)?;
        match saved_at {
            Some((s, path)) => {
                if let Some(why) = s.plan.staleness(&fresh) {
                    return Err(refused(path, "live objects", why, replan(s, path)));
                }
                if let Some(w) = crate::plan::targeting::partial_warning(&fresh) {
                    crate::outln!("{}\n", global.style.yellow(&w));
                }
            }
            None => {
                render::print_text(&fresh, global.style);
                if let Some(w) = crate::plan::targeting::partial_warning(&fresh) {
                    crate::outln!("\n{}", global.style.yellow(&w));
                }
            }
        }
        if !fresh.has_changes() {
            if saved.is_some() {
                crate::outln!("No changes.");
            }
            return Ok(Exit::Ok);
        }
        if ask && !confirm("record these live values in the state (no cluster is changed)")? {
            return Err(Error::Usage(
                "refresh cancelled; nothing was changed".to_string(),
            ));
        }
        return super::refresh::record(&fresh, store, global);
    }
    let desired = std::mem::take(&mut loaded.desired);
    let (fresh, resolved, identities, planned) = make_plan(
        &loaded,
        desired,
        state,
        &file,
        global,
        &super::plan::Scope {
            destroy,
            targets: &targets,
            take_over: &opts.take_over,
            cascade: opts.cascade,
        },
    )?;
    if fresh.summary.refused > 0 {
        crate::plan::render::print_text(&fresh, global.style);
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

    if let Some((s, path)) = saved_at {
        if let Some(why) = s.plan.staleness(&fresh) {
            return Err(refused(path, "live objects", why, replan(s, path)));
        }
        if let Some(w) = crate::plan::targeting::partial_warning(&fresh) {
            crate::outln!("{}\n", global.style.yellow(&w));
        }
    } else {
        render::print_text(&fresh, global.style);
        if let Some(w) = crate::plan::targeting::partial_warning(&fresh) {
            crate::outln!("\n{}", global.style.yellow(&w));
        }
    }
    if !fresh.has_changes() {
        if saved.is_some() {
            crate::outln!("No changes.");
        }
        return Ok(Exit::Ok);
    }
    check_sops_if_needed(&fresh, &loaded)?;
    if ask && !confirm(&format!("{verb} these changes"))? {
        return Err(Error::Usage(format!(
            "{verb} cancelled; nothing was changed"
        )));
    }

    // The store's state always has a key (a new state gets one), so encrypted Secrets are
    // marked even on the first apply.
    let mut targets = loaded.targets(global, Some(&store.state))?;
    // The clusters reached through the API keep the plan's clients and what they
    // discovered; they read by this state's lineage from now on, as the new ones do.
    for (name, cluster) in &loaded.model.clusters {
        if matches!(cluster.target, crate::model::TargetSpec::Context(_)) {
            let target = planned.targets.get(name)?.clone();
            target.scope_to_lineage(&store.state.lineage);
            targets.insert(name, target);
        }
    }
    // Which cluster each context reached, saved with the first object written.
    let mut store = store;
    store.state.clusters.extend(identities);
    let store = Arc::new(Mutex::new(store));
    // SIGINT and SIGTERM from here on stop new work, and the report says what was done.
    let interrupt = crate::interrupt::Interrupt::default();
    let report = planned.rt.block_on(async {
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
        let title = if destroy { "Destroy" } else { "Apply" };
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

/// A refusal of the saved plan at `path`: the check that failed, what was found, and
/// what to run.
fn refused(path: &std::path::Path, check: &'static str, why: String, help: String) -> Error {
    Error::PlanRefused {
        path: path.display().to_string(),
        check,
        why,
        help,
    }
}

/// The command that makes the saved plan `s` again, from what it records.
fn replan(s: &SavedPlan, path: &std::path::Path) -> String {
    let b = s.binding.as_ref();
    let mut cmd = String::from("dcm plan");
    if let Some(c) = b.and_then(|b| b.config_absolute.as_deref()) {
        cmd.push_str(&format!(" -f {}", quote(c)));
    }
    if let Some(l) = b.and_then(|b| b.state_location.as_deref()) {
        cmd.push_str(&format!(" --state {}", quote(l)));
    }
    match s.plan.operation.as_str() {
        "destroy" => cmd.push_str(" --destroy"),
        super::refresh::OPERATION => cmd.push_str(" --refresh-only"),
        _ => {}
    }
    for t in &s.plan.targets {
        cmd.push_str(&format!(" --target {}", quote(t)));
    }
    cmd.push_str(&format!(" -o {}", quote(&path.display().to_string())));
    format!("make a new plan with `{cmd}`, review it, and apply that")
}

/// `text` as one shell word (single quotes when it holds anything but plain characters).
fn quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:@+=,".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// The binding of a saved plan; a plan without one (from an older dcm) is refused.
fn binding_of<'a>(s: &'a SavedPlan, path: &std::path::Path) -> Result<&'a Binding, Error> {
    match &s.binding {
        Some(b) if b.state_location.is_some() => Ok(b),
        _ => Err(refused(
            path,
            "format",
            "it does not record the state and the files it was made from (it was made by an older dcm)".into(),
            "make a new plan with `dcm plan -o PLAN`, review it, and apply that".into(),
        )),
    }
}

/// The settings of a run that applies the saved plan `s` (at `path`): its state is the
/// one it records. A `--state` that names another is refused, naming both.
fn saved_state(s: &SavedPlan, path: &std::path::Path, global: &Global) -> Result<Global, Error> {
    let binding = binding_of(s, path)?;
    let recorded = binding.state_location.clone().unwrap_or_default();
    if global.state.is_none() {
        return super::at_state_location(global, &recorded);
    }
    // --state wins over any file's [state]: no file is needed to say where it is.
    let given = super::state_location(global, None)?;
    let same = match (&given, crate::state::StateLocation::parse(&recorded)) {
        (crate::state::StateLocation::Local(g), Ok(crate::state::StateLocation::Local(r))) => {
            super::absolute(&r) == *g
        }
        (g, Ok(r)) => *g == r,
        (_, Err(_)) => false,
    };
    if same {
        return super::at_state_location(global, &recorded);
    }
    Err(refused(
        path,
        "state location",
        format!(
            "--state names the state {given}, but the plan was made against the state {recorded}"
        ),
        format!(
            "leave --state out to use the plan's own state, or make a new plan against {given} with `dcm plan --state {} -o PLAN`",
            quote(&given.to_string())
        ),
    ))
}

/// The config file to apply the saved plan `s` (at `path`) with: `-f` when given, else
/// the file it records (relative to the plan file first, then absolute). The file's
/// content must be the one planned; a `-f` with another content is refused, naming both.
fn saved_config(
    s: &SavedPlan,
    path: &std::path::Path,
    opts: &ApplyOptions,
    state: Option<&crate::state::State>,
) -> Result<PathBuf, Error> {
    let binding = binding_of(s, path)?;
    let key = crate::keyed::fingerprint_key(state);
    let recorded = binding
        .config_absolute
        .clone()
        .unwrap_or_else(|| s.plan.config.clone());
    let make_again = replan(s, path);
    if opts.file_given {
        let bytes = std::fs::read(&opts.file).map_err(|e| {
            refused(
                path,
                "config file",
                format!("cannot read the config file -f names, {}: {e}", opts.file.display()),
                format!("leave -f out to use the plan's own config file ({recorded}), or pass the file it was made from"),
            )
        })?;
        if binding.config_matches(&bytes, key.as_deref()) {
            return Ok(opts.file.clone());
        }
        return Err(refused(
            path,
            "config file",
            format!(
                "-f names the config file {:?}, but the plan was made from the config file {recorded:?}, and their contents differ",
                opts.file.display().to_string()
            ),
            format!(
                "leave -f out to use the plan's own config file, or make a new plan from {} with `dcm plan -f {} -o PLAN`",
                opts.file.display(),
                quote(&opts.file.display().to_string())
            ),
        ));
    }
    let plan_dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let candidates: Vec<PathBuf> = binding
        .config_relative
        .iter()
        .map(|r| plan_dir.join(r))
        .chain(binding.config_absolute.iter().map(PathBuf::from))
        .collect();
    let mut changed = None;
    for c in &candidates {
        let Ok(bytes) = std::fs::read(c) else {
            continue;
        };
        if binding.config_matches(&bytes, key.as_deref()) {
            return Ok(c.clone());
        }
        changed.get_or_insert(c.clone());
    }
    Err(match changed {
        Some(c) => refused(
            path,
            "config file",
            format!(
                "the config file {} is not the one the plan was made from: it changed since (its content hash differs)",
                c.display()
            ),
            make_again,
        ),
        None => refused(
            path,
            "config file",
            format!(
                "cannot find the config file it was made from: it is neither at {} nor at {recorded}",
                candidates
                    .first()
                    .map(|c| c.display().to_string())
                    .unwrap_or_else(|| "a path relative to the plan".into()),
            ),
            "pass the config file the plan was made from with -f (its content must be the one planned)".into(),
        ),
    })
}

/// Checks a saved plan against the state as it is now: the same state (lineage),
/// unchanged since (serial).
fn check_saved_state(
    s: &SavedPlan,
    path: &std::path::Path,
    global: &Global,
    state: Option<&crate::state::State>,
) -> Result<(), Error> {
    let location = super::state_location(global, None)?;
    let then = &s.plan.state;
    let (lineage, serial) = (
        state.map(|s| s.lineage.clone()),
        state.map(|s| s.serial).unwrap_or(0),
    );
    match (&then.lineage, &lineage) {
        (Some(a), Some(b)) if a != b => {
            return Err(refused(
                path,
                "state lineage",
                format!("the state {location} is another state (lineage {b}) than the one the plan was made against (lineage {a})"),
                format!("apply it with the state it was made against (--state), or {}", replan(s, path)),
            ))
        }
        (Some(a), None) => {
            return Err(refused(
                path,
                "state lineage",
                format!("there is no state at {location}, and the plan was made against a state there (lineage {a}, serial {})", then.serial),
                format!("restore that state, or {}", replan(s, path)),
            ))
        }
        _ => {}
    }
    if then.lineage != lineage || then.serial != serial {
        return Err(refused(
            path,
            "state serial",
            format!(
                "the state {location} changed since the plan was made (serial {} then, {serial} now): something was applied in between",
                then.serial
            ),
            replan(s, path),
        ));
    }
    Ok(())
}

/// Checks a saved plan against the files as they are now: the same config and inputs.
fn check_saved_inputs(
    s: &SavedPlan,
    path: &std::path::Path,
    file: &std::path::Path,
    state: Option<&crate::state::State>,
    loaded: &super::Loaded,
) -> Result<(), Error> {
    let binding = binding_of(s, path)?;
    let config = std::fs::read(file)
        .map_err(|e| Error::Io(format!("cannot read {}: {e}", file.display())))?;
    let key = crate::keyed::fingerprint_key(state);
    let now = Binding::of(&config, &loaded.desired, key.as_deref());
    if let Some(m) = binding.mismatch(&now) {
        let help = if m.check == "key" {
            "set DCM_PLAN_KEY for both `dcm plan -o` and `dcm apply PLAN`, or run `dcm apply` without a saved plan".to_string()
        } else {
            replan(s, path)
        };
        return Err(refused(path, m.check, m.why, help));
    }
    Ok(())
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

/// Asks on the terminal whether to do `what`; only `yes` approves.
fn confirm(what: &str) -> Result<bool, Error> {
    crate::out!("\nDo you want to {what}? Only 'yes' will be accepted: ");
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
