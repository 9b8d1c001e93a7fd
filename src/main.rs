//! The `leakrun` binary: the CLI over the library, and the process's exit code.

use std::process::ExitCode;

use clap::Parser;
use leakrun::cli::{self, Cli};
use leakrun::exit::Exit;
use tokio_util::sync::CancellationToken;

/// Exact live heap figures for the leak verdict (see `leakrun::heap`).
#[cfg(feature = "count-heap")]
#[global_allocator]
static ALLOCATOR: leakrun::heap::CountingAllocator = leakrun::heap::CountingAllocator;

fn main() -> ExitCode {
    let args = cli::with_default_subcommand(std::env::args().collect());
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
        cli::Command::Serve { .. } => "stopping the server",
        cli::Command::Load { .. } => "stopping the load and printing what it saw",
        _ => "closing clients and writing a partial result",
    };
    // Everything the runner does itself is harness work; the server's tasks are spawned untagged.
    let exit = runtime.block_on(leakrun::heap::harness(async {
        let cancel = CancellationToken::new();
        if let Err(error) = leakrun::signals::listen(cancel.clone(), on_interrupt) {
            eprintln!("error: cannot listen for signals: {error}");
            return Exit::Infrastructure;
        }
        cli::execute(parsed, cancel).await
    }));
    // Client and server tasks still winding down must not hold the process open.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    ExitCode::from(exit.code())
}
