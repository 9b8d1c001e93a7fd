//! The process around the command line: parse it, run the command on a tokio runtime as harness
//! work, and give the exit code. Both binaries (`leakrun`, `leakrun-glibc`) are this and a
//! global allocator.

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use super::{Cli, Command};
use crate::exit::Exit;

/// Runs the command line of this process; its exit code.
pub fn main() -> ExitCode {
    let args = super::with_default_subcommand(std::env::args().collect());
    let parsed = match Cli::try_parse_from(args) {
        Ok(parsed) => parsed,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { Exit::Usage.code() } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(Exit::Infrastructure.code());
        }
    };
    let on_interrupt = match parsed.command {
        Command::Serve { .. } => "stopping the server",
        Command::Load { .. } => "stopping the load and printing what it saw",
        _ => "closing clients and writing a partial result",
    };
    // Everything the runner does itself is harness work; the server's tasks are spawned untagged.
    let exit = runtime.block_on(crate::heap::harness(async {
        let cancel = CancellationToken::new();
        if let Err(error) = crate::signals::listen(cancel.clone(), on_interrupt) {
            eprintln!("error: cannot listen for signals: {error}");
            return Exit::Infrastructure;
        }
        super::execute(parsed, cancel).await
    }));
    // Client and server tasks still winding down must not hold the process open.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    ExitCode::from(exit.code())
}
