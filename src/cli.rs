//! The command line: clap definitions, and one small `exec` per subcommand that fills an
//! options struct and calls one operation in [`crate::ops`].

use crate::ops::{self, ApplyOptions, DriftOptions, Error, Exit, Global, PlanFormat, PlanOptions};
use crate::output::Style;
use clap::{Args, CommandFactory, Parser, Subcommand};
use std::path::PathBuf;

/// dcm, the Distributed Cloud Manager: plan and apply multi-cluster Kubernetes and Istio
/// set-ups from one TOML file.
///
/// Typical use: `dcm plan -f dcm.toml` on every pull request, `dcm apply PLAN` after merge,
/// `dcm drift -f dcm.toml` on a schedule.
#[derive(Debug, Parser)]
#[command(name = "dcm", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Where the state is (what dcm created and what it applied): a file, or
    /// k8s://CONTEXT/NAMESPACE/NAME for Secrets in a cluster. Wins over the file's
    /// `[state]`; without either, state/dcm.state.json.
    #[arg(long, global = true, value_name = "PATH|k8s://CONTEXT/NAMESPACE/NAME", value_parser = crate::state::StateLocation::parse)]
    pub state: Option<crate::state::StateLocation>,
    /// How long to wait for the state lock while another run holds it, e.g. 2m; 0s (the
    /// default) fails at once, naming the holder.
    #[arg(long, global = true, value_name = "DURATION", default_value = "0s", env = "DCM_LOCK_TIMEOUT", value_parser = humantime::parse_duration)]
    pub lock_timeout: std::time::Duration,
    /// Never colour the output (the NO_COLOR environment variable does the same).
    #[arg(long, global = true)]
    pub no_color: bool,
    /// The kubeconfig for clusters given by `context` (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH", env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// How many objects to work on at once over all clusters (writes, dry runs, waits;
    /// reads are one request per kind and namespace).
    #[arg(long, global = true, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub parallelism: u16,
    /// How many of those may be in one cluster at once, so that one cluster's many
    /// objects do not hold the other clusters back.
    #[arg(long, global = true, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub cluster_parallelism: u16,
    /// How long connecting to a cluster's API server may take, e.g. 5s.
    #[arg(long, global = true, value_name = "DURATION", default_value = "10s", env = "DCM_CONNECT_TIMEOUT", value_parser = positive_duration)]
    pub connect_timeout: std::time::Duration,
    /// How long one request to an API server may take (connecting included); a cluster
    /// that does not answer in time fails, naming it, and is not retried.
    #[arg(long, global = true, value_name = "DURATION", default_value = "30s", env = "DCM_REQUEST_TIMEOUT", value_parser = positive_duration)]
    pub request_timeout: std::time::Duration,
    /// How long to keep retrying requests that fail for a passing reason (429, 5xx, a
    /// dropped connection), with backoff, before giving up; 0s never retries.
    #[arg(long, global = true, value_name = "DURATION", default_value = "60s", env = "DCM_RETRY_BUDGET", value_parser = humantime::parse_duration)]
    pub retry_budget: std::time::Duration,
    /// Let files the desired-state file names (manifests, certificates, tokens) be under
    /// DIR too, not only under the file's own directory; repeatable.
    #[arg(long = "allow-path", global = true, value_name = "DIR")]
    pub allow_path: Vec<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
    /// Which of the flags a saved plan also records were given on the command line (a
    /// saved plan's own records stand in for those that were not).
    #[arg(skip)]
    pub given: Given,
}

/// Flags given on the command line rather than left at their defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct Given {
    /// `--state`.
    pub state: bool,
    /// `-f`/`--file` of `apply`.
    pub file: bool,
}

impl Cli {
    /// Parses the process's arguments, noting which of `--state` and `apply -f` were given.
    pub fn try_parse_args() -> Result<Cli, clap::Error> {
        Cli::try_parse_from_args(std::env::args_os())
    }

    /// [`Cli::try_parse_args`] over `args`.
    pub fn try_parse_from_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::parser::ValueSource;
        use clap::FromArgMatches;
        let matches = Cli::command().try_get_matches_from(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        let on_command_line = |m: &clap::ArgMatches, id: &str| {
            m.try_get_raw(id).is_ok() && m.value_source(id) == Some(ValueSource::CommandLine)
        };
        let sub = matches.subcommand().map(|(_, m)| m);
        cli.given = Given {
            state: on_command_line(&matches, "state")
                || sub.is_some_and(|m| on_command_line(m, "state")),
            file: matches
                .subcommand_matches("apply")
                .is_some_and(|m| on_command_line(m, "file")),
        };
        Ok(cli)
    }
}

/// The desired-state file argument, shared by most commands.
#[derive(Debug, Args)]
pub struct FileArg {
    /// The desired-state TOML file.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        default_value = "dcm.toml"
    )]
    pub file: PathBuf,
}

/// `-f FILE` for commands that only need the file's `[state]`.
#[derive(Debug, Args)]
pub struct StateFileArg {
    /// The desired-state file whose `[state]` table says where the state is (default:
    /// dcm.toml, when it exists). --state wins over it.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
}

impl StateFileArg {
    /// The file to read `[state]` from: the one given, else dcm.toml if there is one.
    pub fn resolve(&self) -> Option<PathBuf> {
        self.file.clone().or_else(|| {
            let default = PathBuf::from("dcm.toml");
            default.is_file().then_some(default)
        })
    }
}

/// `--take-over ADDRESS`, repeatable.
#[derive(Debug, Args)]
pub struct TakeOverArg {
    /// Let dcm take this existing object (an address, as the plan shows it) from its
    /// owner: another dcm state, or whoever made it again after dcm; repeatable.
    #[arg(long = "take-over", value_name = "ADDRESS")]
    pub take_over: Vec<String>,
}

/// `--cascade`.
#[derive(Debug, Args)]
pub struct CascadeArg {
    /// Let a namespace dcm deletes take the objects dcm did not create with it (the plan
    /// lists them); without it, such a delete is refused.
    #[arg(long)]
    pub cascade: bool,
}

/// `--target ADDRESS_GLOB`, repeatable.
#[derive(Debug, Args)]
pub struct TargetArg {
    /// Plan only the objects whose address matches ADDRESS_GLOB (`*`: any characters, `?`:
    /// one), with what they depend on (for a destroy: with what depends on them);
    /// repeatable. The plan is then partial, and says so.
    #[arg(long = "target", value_name = "ADDRESS_GLOB")]
    pub target: Vec<String>,
}

/// `--refresh-only`.
#[derive(Debug, Args)]
pub struct RefreshOnlyArg {
    /// Change no cluster: record in the state the live values of objects that changed
    /// outside dcm (and forget those that are gone), so drift stops reporting them.
    #[arg(long)]
    pub refresh_only: bool,
}

/// `--max-bytes N`, for Markdown output.
#[derive(Debug, Args)]
pub struct MaxBytesArg {
    /// With --markdown: the most bytes the comment may take; what does not fit is left
    /// out whole, and the comment says how much and where to see it.
    #[arg(long = "max-bytes", value_name = "N", default_value_t = crate::markdown::DEFAULT_MAX_BYTES, requires = "markdown")]
    pub max_bytes: usize,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the file (syntax, keys, names, references, cycles); contacts no cluster.
    ///
    /// Exits 0 when the file is valid, 1 otherwise, printing every problem with its
    /// file:line:col.
    Validate(FileArg),
    /// Show what apply would change: refresh the live objects and diff them with the file.
    ///
    /// Exits 0 on success; with --detailed-exitcode, 2 when there are changes.
    Plan {
        #[command(flatten)]
        file: FileArg,
        /// Exit 2 when the plan has changes, 0 when it has none, 1 on error.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Save the plan to PLAN, for `dcm apply PLAN`.
        #[arg(short = 'o', long = "out", value_name = "PLAN")]
        out: Option<PathBuf>,
        /// Print the plan as JSON.
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
        /// Print the plan as Markdown (for a pull-request comment).
        #[arg(long)]
        markdown: bool,
        #[command(flatten)]
        max_bytes: MaxBytesArg,
        #[command(flatten)]
        take_over: TakeOverArg,
        #[command(flatten)]
        cascade: CascadeArg,
        /// Plan the deletion of everything the state records (what `dcm destroy` does);
        /// save it with -o and carry it out with `dcm apply PLAN`.
        #[arg(long, conflicts_with = "refresh_only")]
        destroy: bool,
        #[command(flatten)]
        target: TargetArg,
        #[command(flatten)]
        refresh_only: RefreshOnlyArg,
    },
    /// Make the clusters match the file, in dependency order, recording what was done.
    ///
    /// With PLAN, applies exactly that saved plan, from any directory, with the state and
    /// the config file it records, and refuses if anything it was planned against has
    /// changed. Without it, plans afresh and asks for confirmation unless --auto-approve;
    /// it refuses to run unattended without --auto-approve.
    Apply {
        /// A plan saved with `dcm plan -o PLAN` (with DCM_PLAN_KEY set, it must be signed
        /// with it). A -f or --state given with it must name the plan's own.
        #[arg(value_name = "PLAN")]
        plan: Option<PathBuf>,
        #[command(flatten)]
        file: FileArg,
        /// Do not ask for confirmation.
        #[arg(long)]
        auto_approve: bool,
        /// How long to wait for what only a cluster can tell: values known after apply (a
        /// gateway's address, a token), a control plane to be Ready, a deleted object to be
        /// gone; e.g. 90s or 5m.
        #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
        wait_timeout: std::time::Duration,
        #[command(flatten)]
        take_over: TakeOverArg,
        /// Take fields that other field managers own (as `kubectl apply --server-side
        /// --force-conflicts`); without it, apply refuses a change that would.
        #[arg(long)]
        force_conflicts: bool,
        #[command(flatten)]
        cascade: CascadeArg,
        #[command(flatten)]
        target: TargetArg,
        #[command(flatten)]
        refresh_only: RefreshOnlyArg,
    },
    /// Start managing an object that already exists (as `terraform import` does): record
    /// it in the state without changing it. The next plan shows what the file would change.
    ///
    /// ADDRESS is an object the file declares, as `dcm plan` shows it. An object that
    /// carries another dcm state's labels is refused unless --take-over.
    Import {
        #[arg(value_name = "ADDRESS", required = true)]
        addresses: Vec<String>,
        #[command(flatten)]
        file: FileArg,
        /// Take the objects even from another dcm state.
        #[arg(long)]
        take_over: bool,
    },
    /// Report live objects that no longer match what dcm applied; changes nothing.
    ///
    /// Exits 0 when there is no drift, 2 when there is, 1 on error.
    Drift {
        #[command(flatten)]
        file: FileArg,
        /// Print the report as JSON.
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
        /// Print the report as Markdown (for an issue or pull-request comment).
        #[arg(long)]
        markdown: bool,
        #[command(flatten)]
        max_bytes: MaxBytesArg,
    },
    /// Delete everything the state records as created by dcm, in reverse dependency order.
    ///
    /// Objects dcm adopted rather than created are forgotten, not deleted.
    Destroy {
        #[command(flatten)]
        file: FileArg,
        /// Do not ask for confirmation.
        #[arg(long)]
        auto_approve: bool,
        /// How long to wait for each deleted object to be gone (a namespace stays
        /// Terminating until its content is deleted), e.g. 90s or 5m.
        #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
        wait_timeout: std::time::Duration,
        #[command(flatten)]
        cascade: CascadeArg,
        #[command(flatten)]
        target: TargetArg,
    },
    /// Print the dependency graph in DOT (an edge points at what an object depends on).
    Graph(FileArg),
    /// Show a saved plan, or the state when no plan is given.
    Show {
        #[arg(value_name = "PLAN")]
        plan: Option<PathBuf>,
        /// Print the plan, or the state, as JSON (docs/json-format.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        file: StateFileArg,
    },
    /// Inspect or edit the state.
    #[command(subcommand)]
    State(StateCommand),
    /// Remove the state lock left by a run that is stuck. Give the ID the lock error shows.
    ForceUnlock {
        #[arg(value_name = "ID")]
        id: String,
        #[command(flatten)]
        file: StateFileArg,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List the object addresses in the state, or those a glob matches.
    ///
    /// In GLOB, `*` stands for any run of characters (`/` included) and `?` for one
    /// character, e.g. 'c1/*' or '*/Secret/*'.
    List {
        #[arg(value_name = "GLOB")]
        glob: Option<String>,
        #[command(flatten)]
        file: StateFileArg,
    },
    /// Show one state entry.
    Show {
        #[arg(value_name = "ADDRESS")]
        address: String,
        #[command(flatten)]
        file: StateFileArg,
    },
    /// Forget objects: they leave the state but stay in their clusters.
    Rm {
        #[arg(value_name = "ADDRESS", required = true)]
        addresses: Vec<String>,
        #[command(flatten)]
        file: StateFileArg,
    },
    /// Give an entry another address, changing nothing in any cluster.
    ///
    /// E.g. after a cluster key was renamed in the file: `dcm state mv
    /// c1/core/ConfigMap/default/x east/core/ConfigMap/default/x`. Refused when SRC is not
    /// in the state, DST is, or their kinds differ.
    Mv {
        #[arg(value_name = "SRC")]
        src: String,
        #[arg(value_name = "DST")]
        dst: String,
        #[command(flatten)]
        file: StateFileArg,
    },
    /// Print the state as JSON on stdout (what `state push` takes).
    Pull {
        #[command(flatten)]
        file: StateFileArg,
    },
    /// Make a state file (as `state pull` prints it; `-`: stdin) the state.
    ///
    /// Refused when the state there has another lineage, or a serial not below the
    /// file's, unless --force.
    Push {
        #[arg(value_name = "FILE")]
        path: PathBuf,
        /// Push even over another lineage or a newer serial.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        file: StateFileArg,
    },
    /// Rebuild a lost state from the labels dcm puts on what it creates
    /// (`dcm.io/lineage`), for the objects the file declares. Never replaces a state.
    Recover {
        #[command(flatten)]
        file: FileArg,
        /// The lineage to recover, when objects of several dcm states are live.
        #[arg(long, value_name = "LINEAGE")]
        lineage: Option<String>,
    },
}

/// A duration above zero (a time limit of zero would fail every request).
fn positive_duration(s: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be more than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<Exit, Error> {
    crate::config::set_allowed_paths(cli.allow_path.clone());
    let global = Global {
        state: cli.state,
        lock_timeout: cli.lock_timeout,
        kubeconfig: cli.kubeconfig,
        parallelism: cli.parallelism as usize,
        cluster_parallelism: cli.cluster_parallelism as usize,
        style: Style::for_stdout(cli.no_color),
        net: crate::target::NetSettings {
            connect_timeout: cli.connect_timeout,
            request_timeout: cli.request_timeout,
            retry_budget: cli.retry_budget,
            reads_in_flight: cli.cluster_parallelism as usize,
        },
    };
    match cli.command {
        Command::Validate(f) => ops::validate(&f.file),
        Command::Plan {
            file,
            detailed_exitcode,
            out,
            json,
            markdown,
            max_bytes,
            take_over,
            cascade,
            destroy,
            target,
            refresh_only,
        } => {
            let format = match (json, markdown) {
                (true, _) => PlanFormat::Json,
                (_, true) => PlanFormat::Markdown,
                _ => PlanFormat::Text,
            };
            ops::plan(
                &PlanOptions {
                    file: file.file,
                    detailed_exitcode,
                    out,
                    format,
                    max_bytes: max_bytes.max_bytes,
                    take_over: take_over.take_over.into_iter().collect(),
                    cascade: cascade.cascade,
                    destroy,
                    targets: target.target,
                    refresh_only: refresh_only.refresh_only,
                },
                &global,
            )
        }
        Command::Apply {
            plan,
            file,
            auto_approve,
            wait_timeout,
            take_over,
            force_conflicts,
            cascade,
            target,
            refresh_only,
        } => ops::apply(
            &ApplyOptions {
                file: file.file,
                file_given: cli.given.file,
                plan_file: plan,
                auto_approve,
                destroy: false,
                wait: wait_timeout,
                take_over: take_over.take_over.into_iter().collect(),
                force_conflicts,
                cascade: cascade.cascade,
                targets: target.target,
                refresh_only: refresh_only.refresh_only,
            },
            &global,
        ),
        Command::Import {
            addresses,
            file,
            take_over,
        } => ops::import(&file.file, &addresses, take_over, &global),
        Command::Destroy {
            file,
            auto_approve,
            wait_timeout,
            cascade,
            target,
        } => ops::apply(
            &ApplyOptions {
                file: file.file,
                file_given: true,
                plan_file: None,
                auto_approve,
                destroy: true,
                wait: wait_timeout,
                take_over: Default::default(),
                force_conflicts: false,
                cascade: cascade.cascade,
                targets: target.target,
                refresh_only: false,
            },
            &global,
        ),
        Command::Drift {
            file,
            json,
            markdown,
            max_bytes,
        } => ops::drift(
            &DriftOptions {
                file: file.file,
                json,
                markdown,
                max_bytes: max_bytes.max_bytes,
            },
            &global,
        ),
        Command::Graph(f) => ops::graph(&f.file),
        Command::Show { plan, json, file } => {
            ops::show(plan.as_deref(), json, file.resolve().as_deref(), &global)
        }
        Command::State(StateCommand::List { glob, file }) => {
            ops::state_list(glob.as_deref(), file.resolve().as_deref(), &global)
        }
        Command::State(StateCommand::Show { address, file }) => {
            ops::state_show(&address, file.resolve().as_deref(), &global)
        }
        Command::State(StateCommand::Rm { addresses, file }) => {
            ops::state_rm(&addresses, file.resolve().as_deref(), &global)
        }
        Command::State(StateCommand::Mv { src, dst, file }) => {
            ops::state_mv(&src, &dst, file.resolve().as_deref(), &global)
        }
        Command::State(StateCommand::Pull { file }) => {
            ops::state_pull(file.resolve().as_deref(), &global)
        }
        Command::State(StateCommand::Push { path, force, file }) => {
            ops::state_push(&path, force, file.resolve().as_deref(), &global)
        }
        Command::State(StateCommand::Recover { file, lineage }) => {
            ops::recover(&file.file, lineage.as_deref(), &global)
        }
        Command::ForceUnlock { id, file } => {
            ops::force_unlock(&id, file.resolve().as_deref(), &global)
        }
        Command::Completions { shell } => {
            // Made whole first: clap_complete panics when its writer fails.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "dcm", &mut script);
            crate::out!("{}", String::from_utf8_lossy(&script));
            Ok(Exit::Ok)
        }
    }
}
