//! `kubectl-purelb`: parses the command line and runs it on a single-threaded runtime; errors go to
//! stderr with a hint and a non-zero exit code.

use std::process::ExitCode;

use clap::Parser;
use kubectl_purelb::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(kubectl_purelb::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => ExitCode::from(u8::try_from(kubectl_purelb::report_error(&e)).unwrap_or(1)),
    }
}
