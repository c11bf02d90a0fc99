//! The `dcm` binary: parse the command line, run one operation, turn the outcome into an
//! exit code (0 ok, 2 changes or drift where promised, 1 error).

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match dcm::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
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
    match dcm::cli::run(cli) {
        Ok(dcm::ops::Exit::Ok) => ExitCode::SUCCESS,
        Ok(dcm::ops::Exit::Changes) => ExitCode::from(2),
        Err(e) => {
            if e.is_prerendered() {
                eprintln!("{e}");
            } else {
                eprintln!("error: {e}");
            }
            ExitCode::from(1)
        }
    }
}
