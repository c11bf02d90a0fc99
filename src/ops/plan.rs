//! `validate`, `plan` and `graph`.

use super::{load, runtime, Error, Exit, Global, Loaded};
use crate::compile::Desired;
use crate::plan::{self, render, Plan, PlanInputs};
use crate::state::State;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanFormat {
    Text,
    Json,
    Markdown,
}

#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub file: PathBuf,
    pub detailed_exitcode: bool,
    pub out: Option<PathBuf>,
    /// `--take-over`: addresses dcm may take from their owner (another state, or someone
    /// who made them again).
    pub take_over: std::collections::BTreeSet<String>,
    /// `--cascade`: a namespace dcm deletes may take objects dcm did not create with it.
    pub cascade: bool,
    pub format: PlanFormat,
    /// `--destroy`: plan the deletion of everything the state records.
    pub destroy: bool,
    /// `--target`: address globs a partial plan is restricted to.
    pub targets: Vec<String>,
    /// `--refresh-only`: plan only to record live values in the state.
    pub refresh_only: bool,
    /// `--max-bytes`: the most a Markdown plan may take.
    pub max_bytes: usize,
}

/// `dcm validate`: parses and checks the file; contacts nothing.
pub fn validate(file: &Path) -> Result<Exit, Error> {
    let loaded = load(file, None)?;
    crate::outln!(
        "The file is valid: {} cluster{}, {} object{}.",
        loaded.model.clusters.len(),
        if loaded.model.clusters.len() == 1 {
            ""
        } else {
            "s"
        },
        loaded.desired.objects.len(),
        if loaded.desired.objects.len() == 1 {
            ""
        } else {
            "s"
        },
    );
    super::leave_to_exit(loaded);
    Ok(Exit::Ok)
}

/// `dcm graph`: the dependency graph in DOT.
pub fn graph(file: &Path) -> Result<Exit, Error> {
    let loaded = load(file, None)?;
    crate::out!("{}", crate::graph::to_dot(&loaded.desired, &loaded.graph));
    Ok(Exit::Ok)
}

/// What a plan covers, and what it may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope<'a> {
    /// Plan the deletion of everything the state records.
    pub destroy: bool,
    /// `--target` globs (none: the whole plan).
    pub targets: &'a [String],
    /// `--take-over` addresses.
    pub take_over: &'a std::collections::BTreeSet<String>,
    /// `--cascade`.
    pub cascade: bool,
}

/// Refreshes and plans against `state` (shared by plan, apply and destroy). Returns the
/// plan and the desired objects with edits resolved against the live ones (what apply writes).
///
/// 1. make the targets of the file's clusters;
/// 2. read every live object the file wants or the state records, and (whole) the objects
///    whose fields are known after apply; fill in the values already known;
/// 3. resolve edits of objects dcm does not own against what is live;
/// 4. diff into a plan.
///
/// `desired` are `loaded`'s desired objects, given by value: they are
/// resolved against the live objects in place, not copied, and `loaded.desired` may be
/// left empty.
pub(crate) fn make_plan(
    loaded: &Loaded,
    mut desired: Desired,
    state: Option<&State>,
    file: &Path,
    global: &Global,
    scope: &Scope<'_>,
) -> Result<(Plan, Desired, Identities, Connections), Error> {
    let Scope {
        destroy,
        targets: target_globs,
        take_over,
        cascade,
    } = *scope;
    let targets = loaded.targets(global, state)?;
    let mut items = super::read_items(&desired, state);
    if destroy {
        // Everything goes: each delete shows the whole object.
        for i in &mut items {
            i.whole = true;
        }
    }
    let probes = super::probe_items(&desired);
    let rt = runtime()?;
    let identities = check_identities(state, &targets, &rt)?;
    let mut live = rt.block_on(crate::refresh::read_live(
        &targets,
        items,
        global.parallelism,
    ))?;
    // Read on their own: a probe wants the whole object, where the refresh above reads
    // dcm's view of the same object.
    let probed = if probes.is_empty() {
        Default::default()
    } else {
        rt.block_on(crate::refresh::read_live(
            &targets,
            probes,
            global.parallelism,
        ))?
    };
    let imports: std::collections::BTreeSet<String> = loaded
        .model
        .imports
        .iter()
        .map(|(a, _)| a.clone())
        .collect();
    if let Some(unknown) = take_over
        .iter()
        .find(|a| !desired.objects.iter().any(|o| o.id.address() == **a))
    {
        return Err(Error::Usage(format!(
            "--take-over names {unknown}, which is not an object {} declares; nothing was changed",
            file.display()
        )));
    }
    avoid_live_addresses(&mut desired, state, &targets, &rt)?;
    crate::compile::resolve_known(&mut desired, &probed, |c| targets.api_server(c));
    crate::compile::resolve_edits(&mut desired, &live, state, destroy).map_err(Error::Invalid)?;
    let plan = plan::build(&mut PlanInputs {
        desired: &desired,
        graph: &loaded.graph,
        state,
        live: &mut live,
        config: file.display().to_string(),
        destroy,
        ownership: plan::Ownership {
            lineage: state.map(|s| s.lineage.as_str()),
            imports: Some(&imports),
            take_over: Some(take_over),
        },
    });
    let mut plan = plan;
    plan::targeting::restrict(&mut plan, target_globs, &desired, &loaded.graph, state)?;
    plan.seal_secrets(crate::keyed::fingerprint_key(state).as_deref());
    guard_namespace_deletes(&mut plan, state, &targets, &rt, cascade)?;
    keep_edited_files(&mut plan, state, &targets)?;
    confirm_with_server(
        &mut plan,
        &desired,
        &live,
        &targets,
        &rt,
        state.map(|s| s.lineage.as_str()),
        (global.parallelism, global.cluster_parallelism),
    )?;
    super::leave_to_exit((live, probed));
    Ok((plan, desired, identities, Connections { rt, targets }))
}

/// What a plan talked to the clusters with: an apply that follows goes on with the same
/// clients and what they discovered (discovery once per cluster per run), on the same
/// runtime (the clients' connections live on it).
pub(crate) struct Connections {
    pub rt: tokio::runtime::Runtime,
    pub targets: crate::target::Targets,
}

/// Each cluster's identity as it is now, by cluster name.
pub(crate) type Identities = std::collections::BTreeMap<String, crate::state::ClusterIdentity>;

/// Reads which cluster each context reaches now, and refuses when one is not the cluster
/// the state last wrote to (same name, another kube-system UID): objects there are not
/// the ones the state records.
pub(crate) fn check_identities(
    state: Option<&State>,
    targets: &crate::target::Targets,
    rt: &tokio::runtime::Runtime,
) -> Result<Identities, Error> {
    let now = rt
        .block_on(targets.identities())
        .map_err(|es| crate::refresh::RefreshError(es.iter().map(|e| e.to_string()).collect()))?;
    let mut moved = Vec::new();
    for (name, was) in state.map(|s| &s.clusters).into_iter().flatten() {
        if let Some(is) = now.get(name) {
            if is.kube_system_uid != was.kube_system_uid {
                moved.push(format!(
                    "cluster `{name}` is now {} (kube-system UID {}), not the cluster the state records: {} (kube-system UID {})",
                    is.server, is.kube_system_uid, was.server, was.kube_system_uid
                ));
            }
        }
    }
    if moved.is_empty() {
        Ok(now)
    } else {
        Err(Error::Refused(format!(
            "{}; nothing was changed\n  = help: point the context back at that cluster, or, if the cluster was rebuilt, forget its objects with `dcm state rm` first",
            moved.join("\n")
        )))
    }
}

/// Gives out again the new ServiceEntry addresses that a live ServiceEntry outside the
/// file and the state already uses: one LIST of ServiceEntries per cluster that gets a
/// new address (addresses the state records are kept, so a re-plan lists nothing).
fn avoid_live_addresses(
    desired: &mut Desired,
    state: Option<&State>,
    targets: &crate::target::Targets,
    rt: &tokio::runtime::Runtime,
) -> Result<(), Error> {
    const SE_API: &str = "networking.istio.io/v1";
    let mut allocations = crate::compile::Allocations::from_state(state);
    let is_se =
        |id: &crate::object::ObjRef| id.group == "networking.istio.io" && id.kind == "ServiceEntry";
    let new_in: std::collections::BTreeSet<String> = desired
        .objects
        .iter()
        .filter(|o| is_se(&o.id) && o.allocated.contains_key("address"))
        .filter(|o| !allocations.by_object.contains_key(&o.id))
        .map(|o| o.id.cluster.clone())
        .collect();
    if new_in.is_empty() {
        return Ok(());
    }
    let mut ours: std::collections::BTreeSet<crate::object::ObjRef> = desired
        .objects
        .iter()
        .map(|o| o.id.clone())
        .filter(|id| is_se(id))
        .collect();
    if let Some(s) = state {
        ours.extend(s.objects.iter().map(|e| e.id()).filter(|id| is_se(id)));
    }
    // Every such cluster's LIST at once.
    let mut lists = Vec::new();
    for cluster in &new_in {
        let target = targets.get(cluster)?.clone();
        lists.push(async move { (cluster, target.list_kind(SE_API, "ServiceEntry").await) });
    }
    let mut errors = Vec::new();
    for (cluster, live) in rt.block_on(futures::future::join_all(lists)) {
        let live = match live {
            Ok(live) => live,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        allocations.add_in_use(cluster, &live, |ns, name| {
            ours.contains(&crate::object::ObjRef {
                cluster: cluster.clone(),
                group: "networking.istio.io".into(),
                kind: "ServiceEntry".into(),
                namespace: ns.to_string(),
                name: name.to_string(),
            })
        });
    }
    if !errors.is_empty() {
        return Err(crate::refresh::RefreshError(errors).into());
    }
    if allocations.in_use.values().all(|a| a.is_empty()) {
        return Ok(());
    }
    crate::compile::reallocate_addresses(desired, &allocations).map_err(Error::Invalid)
}

/// A namespace dcm deletes takes everything in it along. When it holds objects this state
/// did not create, the delete is refused (the plan lists them) unless `cascade`, which
/// accepts it and still lists them.
fn guard_namespace_deletes(
    plan: &mut Plan,
    state: Option<&State>,
    targets: &crate::target::Targets,
    rt: &tokio::runtime::Runtime,
    cascade: bool,
) -> Result<(), Error> {
    let is_namespace_delete = |c: &plan::Change| {
        c.id().filter(|id| {
            c.action == plan::Action::Delete && id.group.is_empty() && id.kind == "Namespace"
        })
    };
    // Every cluster's namespaces at once, each cluster's in one go (requests per kind,
    // not per namespace).
    let mut by_cluster: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for id in plan.changes.iter().filter_map(is_namespace_delete) {
        by_cluster.entry(id.cluster).or_default().push(id.name);
    }
    if by_cluster.is_empty() {
        return Ok(());
    }
    let mut reads = Vec::new();
    for (cluster, namespaces) in by_cluster {
        let target = targets.get(&cluster)?.clone();
        reads.push(async move {
            let contents = target.namespaces_contents(&namespaces).await;
            (cluster, contents)
        });
    }
    let mut contents_of = std::collections::BTreeMap::new();
    let mut errors = Vec::new();
    for (cluster, contents) in rt.block_on(futures::future::join_all(reads)) {
        match contents {
            Ok(by_ns) => {
                for (ns, objects) in by_ns {
                    contents_of.insert((cluster.clone(), ns), objects);
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        return Err(crate::refresh::RefreshError(errors).into());
    }
    let created: std::collections::BTreeSet<crate::object::ObjRef> = state
        .map(|s| {
            s.objects
                .iter()
                .filter(|e| e.origin == crate::state::Origin::Created)
                .map(|e| e.id())
                .collect()
        })
        .unwrap_or_default();
    for c in plan.changes.iter_mut() {
        let Some(id) = is_namespace_delete(c) else {
            continue;
        };
        let contents = contents_of
            .remove(&(id.cluster.clone(), id.name.clone()))
            .unwrap_or_default();
        // A target may leave out the cluster of what it lists (a directory does).
        let created_by_dcm = |o: &crate::object::ObjRef| {
            created.contains(&crate::object::ObjRef {
                cluster: id.cluster.clone(),
                ..o.clone()
            })
        };
        let foreign: Vec<String> = contents
            .iter()
            .filter(|o| !created_by_dcm(o))
            .map(|o| {
                let kind = if o.group.is_empty() {
                    o.kind.clone()
                } else {
                    format!("{}.{}", o.kind, o.group)
                };
                format!("{kind}/{}", o.name)
            })
            .collect();
        if foreign.is_empty() {
            continue;
        }
        let list = foreign.join(", ");
        if cascade {
            c.notes.push(format!(
                "it holds {} object(s) dcm did not create, deleted with it (--cascade): {list}",
                foreign.len()
            ));
        } else {
            c.action = plan::Action::Refuse;
            c.reason = format!(
                "it holds {} object(s) dcm did not create, which deleting it would delete too: {list}",
                foreign.len()
            );
            c.notes.push(c.reason.clone());
            c.notes.push(
                "move them out first, or delete them with it by passing --cascade".to_string(),
            );
            plan.summary.destroy -= 1;
            plan.summary.refused += 1;
        }
    }
    Ok(())
}

/// A delete of an object whose file (a directory target's) was edited since dcm wrote
/// it becomes a forget: the file is left in place, with a note, and leaves the state.
fn keep_edited_files(
    plan: &mut Plan,
    state: Option<&State>,
    targets: &crate::target::Targets,
) -> Result<(), Error> {
    let Some(state) = state else { return Ok(()) };
    for c in plan.changes.iter_mut() {
        if c.action != plan::Action::Delete {
            continue;
        }
        let Some(id) = c.id() else { continue };
        let Some(written) = state
            .get(&id)
            .and_then(|e| e.allocated.get(crate::target::dir::FILE_SHA_KEY))
        else {
            continue;
        };
        let now = targets
            .get(&id.cluster)?
            .written_sha256(&id)
            .map_err(|e| crate::refresh::RefreshError(vec![e.to_string()]))?;
        if now.as_ref().is_some_and(|n| n != written) {
            c.action = plan::Action::Forget;
            c.diff = crate::diff::Diff::None;
            c.reason = "its file was edited by hand since dcm wrote it (its sha256 is not the one dcm recorded): dcm leaves the file in place and forgets it".to_string();
            c.notes.push(c.reason.clone());
            plan.summary.destroy -= 1;
            plan.summary.state_only += 1;
        }
    }
    Ok(())
}

/// Sends every planned create and update whose prerequisites already exist once to its
/// cluster as a dry run (server-side apply, `dryRun=All`), marked as apply will mark it:
/// - an object the server rejects (invalid, forbidden, unserved kind) fails the plan with
///   the server's message and the object's address;
/// - fields another field manager owns are recorded as the change's conflicts;
/// - an update the server says changes nothing is dropped.
///
/// Objects that wait on others in this plan (their namespace, their CRD) or on values
/// known after apply are checked by apply itself.
fn confirm_with_server(
    plan: &mut Plan,
    desired: &Desired,
    live: &crate::refresh::Live,
    targets: &crate::target::Targets,
    rt: &tokio::runtime::Runtime,
    lineage: Option<&str>,
    limits: (usize, usize),
) -> Result<(), Error> {
    use crate::target::DryRun;
    // The lineage of a state not made yet: any valid label value does for a dry run.
    let lineage = lineage.unwrap_or("00000000-0000-0000-0000-000000000000");
    // (index of the change, the object as apply will send it, whether it takes fields)
    let mut checks: Vec<Check> = Vec::new();
    for (i, c) in plan.changes.iter_mut().enumerate() {
        // An edit being taken back (`forget_after`) writes its revert, checked by apply.
        if !matches!(c.action, plan::Action::Create | plan::Action::Update) || c.forget_after {
            continue;
        }
        if !c.depends_on.is_empty() {
            if c.depends_on
                .iter()
                .any(|a| a.contains("/apiextensions.k8s.io/CustomResourceDefinition/"))
            {
                c.notes.push(
                    "its kind is known after apply: its CustomResourceDefinition is created in this run, and the server checks it once the CRD is Established"
                        .to_string(),
                );
            }
            continue;
        }
        let Some(id) = c.id() else { continue };
        let Some(d) = desired.get(&id) else { continue };
        if !d.known_after_apply.is_empty() || !targets.get(&id.cluster)?.checks_writes() {
            continue;
        }
        let mut object = serde_json::Value::clone(&d.object);
        if d.edit.is_none() {
            crate::ownership::stamp(&mut object, lineage, &c.address);
        }
        // An edit of another's object takes the field it edits, as apply does.
        checks.push((i, id, object, d.edit.is_some()));
    }
    let answered = rt.block_on(dry_run_all(checks, targets, limits))?;
    let mut rejected = Vec::new();
    let mut unchanged = std::collections::BTreeSet::new();
    for ((i, id, object, _), answer) in answered {
        let (i, id, object) = (&i, &id, &object);
        let c = &mut plan.changes[*i];
        let Some(d) = desired.get(id) else { continue };
        match answer {
            DryRun::NotChecked => {}
            DryRun::Rejected(message) => {
                rejected.push(format!("{}: the server rejects it: {message}", c.address))
            }
            DryRun::NotServed => rejected.push(format!(
                "{}: cluster `{}` does not serve kind {} in {} (is its CustomResourceDefinition installed?)",
                c.address, id.cluster, id.kind, d.api_version
            )),
            DryRun::Conflicts(message) => {
                c.notes.push(format!(
                    "another field manager owns fields this change sets: {message}; apply refuses it without --force-conflicts (or leave the field to them with [[ignore_differences]])"
                ));
                c.conflicts = Some(message);
            }
            DryRun::Accepted(server) => {
                let Some(now) = live.get(id) else { continue };
                let view = |v: &serde_json::Value| {
                    crate::target::normalize_live(crate::target::kube::dcm_view(
                        v,
                        Some(object),
                    ))
                };
                let same_marks = crate::ownership::Marks::of(&server).lineage
                    == crate::ownership::Marks::of(now).lineage;
                if c.action == plan::Action::Update
                    && d.edit.is_none()
                    && same_marks
                    && view(&server) == crate::target::normalize_live(now.clone())
                {
                    unchanged.insert(c.address.clone());
                }
            }
        }
    }
    if !rejected.is_empty() {
        return Err(Error::ServerRejected(format!(
            "the cluster refuses {} planned object(s); nothing was changed:\n  - {}",
            rejected.len(),
            rejected.join("\n  - ")
        )));
    }
    if !unchanged.is_empty() {
        plan.changes.retain(|c| !unchanged.contains(&c.address));
        plan.summary.change -= unchanged.len();
    }
    Ok(())
}

/// One planned write to check: (index of the change, the object as apply will send it,
/// whether it takes fields others own).
type Check = (usize, crate::object::ObjRef, serde_json::Value, bool);

/// Sends the dry runs of `checks` concurrently: at most `limits.0` in flight in all, and
/// `limits.1` in one cluster. Each check comes back with its answer, in the order given.
async fn dry_run_all(
    checks: Vec<Check>,
    targets: &crate::target::Targets,
    (parallelism, per_cluster): (usize, usize),
) -> Result<Vec<(Check, crate::target::DryRun)>, Error> {
    use std::sync::Arc;
    use tokio::sync::Semaphore;
    let all = Arc::new(Semaphore::new(parallelism.max(1)));
    let mut per: std::collections::BTreeMap<String, Arc<Semaphore>> = Default::default();
    let mut tasks = tokio::task::JoinSet::new();
    let n = checks.len();
    for (k, check) in checks.into_iter().enumerate() {
        let target = targets.get(&check.1.cluster)?.clone();
        let mine = per
            .entry(check.1.cluster.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(per_cluster.max(1))))
            .clone();
        let all = all.clone();
        tasks.spawn(async move {
            let _cluster = mine.acquire_owned().await;
            let _global = all.acquire_owned().await;
            let answer = target.dry_run(&check.1, &check.2, check.3).await;
            (k, check, answer)
        });
    }
    let mut answered: Vec<Option<(Check, crate::target::DryRun)>> = Vec::new();
    answered.resize_with(n, || None);
    let mut errors = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((k, check, Ok(answer))) => answered[k] = Some((check, answer)),
            Ok((_, _, Err(e))) => errors.push(e.to_string()),
            Err(e) => errors.push(format!("a dry-run task failed: {e}")),
        }
    }
    if !errors.is_empty() {
        errors.sort();
        errors.dedup();
        return Err(crate::refresh::RefreshError(errors).into());
    }
    Ok(answered.into_iter().flatten().collect())
}

/// The objects a plan refuses, each with why and what to do, for the error that stops
/// `plan` and `apply`.
pub(crate) fn refused_list(p: &Plan) -> String {
    let mut out = format!(
        "{} planned change(s) are refused (objects this state does not own); nothing was changed:",
        p.summary.refused
    );
    for c in p
        .changes
        .iter()
        .filter(|c| c.action == plan::Action::Refuse)
    {
        out.push_str(&format!("\n  - {}", c.address));
        for n in &c.notes {
            out.push_str(&format!("\n      {n}"));
        }
    }
    out
}

/// `dcm plan`: what apply would do.
///
/// 1. load and check the file;
/// 2. read the state (without locking: plan writes nothing);
/// 3. refresh and diff;
/// 4. print in the chosen format, and save with `-o`.
pub fn plan(opts: &PlanOptions, global: &Global) -> Result<Exit, Error> {
    let target = super::state_target(global, Some(&opts.file))?;
    if let (Some(out), Some(state_path)) = (&opts.out, target.location.local_path()) {
        plan::check_out_path(out, state_path)?;
    }
    let state = crate::state::read_at(&target.location, &target.access)?;
    let mut loaded = load(&opts.file, state.as_ref())?;
    // What a saved plan is bound to: the objects as compiled, before the plan resolves
    // them against the live ones.
    let binding = match &opts.out {
        Some(_) => {
            let config = std::fs::read(&opts.file)
                .map_err(|e| Error::Io(format!("cannot read {}: {e}", opts.file.display())))?;
            let key = crate::keyed::fingerprint_key(state.as_ref());
            Some(plan::Binding::of(&config, &loaded.desired, key.as_deref()))
        }
        None => None,
    };
    let p = if opts.refresh_only {
        super::refresh::make_refresh_plan(
            &loaded,
            state.as_ref(),
            &opts.file,
            global,
            &opts.targets,
        )?
    } else {
        let desired = std::mem::take(&mut loaded.desired);
        let (p, resolved, _, _) = make_plan(
            &loaded,
            desired,
            state.as_ref(),
            &opts.file,
            global,
            &Scope {
                destroy: opts.destroy,
                targets: &opts.targets,
                take_over: &opts.take_over,
                cascade: opts.cascade,
            },
        )?;
        super::leave_to_exit(resolved);
        p
    };
    match opts.format {
        PlanFormat::Text => render::print_text(&p, global.style),
        PlanFormat::Json => render::print_json(&p),
        PlanFormat::Markdown => {
            let full_hint = match (&opts.out, p.summary.refused) {
                (Some(out), 0) => format!(
                    "The full plan: `dcm show {}`.",
                    crate::markdown::code_text(&out.display().to_string())
                ),
                _ => "The full plan: save it with `dcm plan -o PLAN` (a CI artifact) and run `dcm show PLAN`, or run `dcm plan` without `--markdown`.".to_string(),
            };
            let md = render::markdown(
                &p,
                &render::ReviewOptions {
                    project: loaded.model.project.clone(),
                    max_bytes: opts.max_bytes,
                    full_hint,
                },
            )
            .map_err(|e| Error::Usage(e.to_string()))?;
            crate::out!("{md}");
        }
    }
    if let Some(w) = plan::targeting::partial_warning(&p) {
        // JSON carries `targets` instead; standard output stays one document.
        match opts.format {
            PlanFormat::Text => crate::outln!("\n{}", global.style.yellow(&w)),
            _ => crate::errln!("{w}"),
        }
    }
    // A refused plan can never be applied: it is not saved.
    if let (Some(out), Some(binding), 0) = (&opts.out, binding, p.summary.refused) {
        let out_abs = super::absolute(out);
        let plan_dir = out_abs
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| out_abs.clone());
        let binding = binding.located(
            super::state_location(global, Some(&opts.file))?.to_string(),
            &super::absolute(&opts.file),
            &plan_dir,
        );
        if binding.secrets_unbound {
            crate::errln!(
                "warning: this plan writes Secrets and was made without a key (no state yet, and DCM_PLAN_KEY is not set): `dcm apply {}` will refuse it, as it cannot show which Secret values were reviewed without revealing them\n  = help: set DCM_PLAN_KEY for both `dcm plan -o` and `dcm apply PLAN`",
                out.display()
            );
        }
        plan::save(
            &p,
            binding,
            crate::keyed::plan_key_from_env().as_deref(),
            out,
        )?;
        if opts.format == PlanFormat::Text {
            crate::outln!(
                "\nSaved the plan to {}. Apply exactly this plan with: dcm apply {}",
                out.display(),
                out.display()
            );
        }
    }
    let exit = if p.summary.refused > 0 {
        Err(Error::Refused(refused_list(&p)))
    } else if opts.detailed_exitcode && p.has_changes() {
        Ok(Exit::Changes)
    } else {
        Ok(Exit::Ok)
    };
    super::leave_to_exit((p, loaded, state));
    exit
}
