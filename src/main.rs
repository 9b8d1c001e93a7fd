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
        cli::Command::Serve { .. } => "\ninterrupted: stopping the server (Ctrl-C again to abort)",
        cli::Command::Load { .. } => {
            "\ninterrupted: stopping the load and printing what it saw (Ctrl-C again to abort)"
        }
        _ => "\ninterrupted: closing clients and writing a partial result (Ctrl-C again to abort)",
    };
    // Everything the runner does itself is harness work; the server's tasks are spawned untagged.
    let exit = runtime.block_on(leakrun::heap::harness(async {
        let cancel = CancellationToken::new();
        let on_signal = cancel.clone();
        leakrun::heap::spawn_harness(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("{on_interrupt}");
                on_signal.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    // No destructors run past here: stop the private servers first.
                    leakrun::infra::kill_registered();
                    std::process::exit(Exit::Interrupted.code().into());
                }
            }
        });
        cli::execute(parsed, cancel).await
    }));
    // Client and server tasks still winding down must not hold the process open.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    ExitCode::from(exit.code())
}
