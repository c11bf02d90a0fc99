//! The `dcm` binary: parse the command line, run one operation, turn the outcome into an
//! exit code (0 ok, 2 changes or drift where promised, 1 error, 130 interrupted).

use std::process::ExitCode;

/// mimalloc: dcm builds and drops millions of small JSON nodes per run; glibc's malloc
/// spent a third of a 100k-object plan in page faults, consolidation and frees. A build
/// with `RUSTFLAGS="--cfg dcm_heap_profile"` keeps the system allocator, which heap
/// profilers such as heaptrack can follow (BENCHMARKS.md).
#[cfg_attr(not(dcm_heap_profile), global_allocator)]
#[cfg_attr(dcm_heap_profile, allow(dead_code))]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match dcm::cli::Cli::try_parse_args() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version on a closed standard output end quietly too.
            let _ = e.print();
            // Help and version are not errors; usage errors exit 1, not clap's 2, which
            // means "changes" here.
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let code = match dcm::cli::run(cli) {
        Ok(dcm::ops::Exit::Ok) => ExitCode::SUCCESS,
        Ok(dcm::ops::Exit::Changes) => ExitCode::from(2),
        Err(e) => {
            if e.is_prerendered() {
                dcm::errln!("{e}");
            } else {
                dcm::errln!("error: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    };
    // A reader that went away (`dcm plan | head -1`) is not an error; anything else that
    // kept the output from being written is.
    dcm::output::flush_out();
    if let Some(why) = dcm::output::stdout_failure() {
        dcm::errln!("error: cannot write to standard output: {why}");
        return ExitCode::from(1);
    }
    code
}
