//! The interrupting signals: SIGINT (Ctrl-C), SIGTERM (`timeout`, `docker stop`, `kill`) and
//! SIGHUP (a closed terminal or ssh session) each stop a run the same way — clients closed,
//! children stopped, a partial result written with status `interrupted` — and the exit code says
//! which one came (130, 143, 129). A second one aborts at once: every registered child is
//! SIGKILLed and leakrun exits without writing more.

use std::sync::atomic::{AtomicI32, Ordering};

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::process::{self, Signal};

/// The first interrupting signal received, as its number; 0 before any.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// The first interrupting signal this process received, if any.
pub fn received() -> Option<Signal> {
    match RECEIVED.load(Ordering::Relaxed) {
        libc::SIGINT => Some(Signal::Interrupt),
        libc::SIGTERM => Some(Signal::Term),
        libc::SIGHUP => Some(Signal::Hangup),
        _ => None,
    }
}

/// The exit code of a process ended by `signal` the way leakrun ends: 128 plus its number.
pub fn exit_code(signal: Signal) -> u8 {
    128 + signal.raw() as u8
}

/// Listens for the interrupting signals: the first cancels `cancel` after printing `what`
/// ("closing clients and writing a partial result"), the second aborts. Fails only if the
/// signal handlers cannot be installed.
pub fn listen(cancel: CancellationToken, what: &'static str) -> std::io::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    crate::heap::spawn_harness(async move {
        let mut next = async || -> Signal {
            tokio::select! {
                _ = interrupt.recv() => Signal::Interrupt,
                _ = terminate.recv() => Signal::Term,
                _ = hangup.recv() => Signal::Hangup,
            }
        };
        let first = next().await;
        RECEIVED.store(first.raw(), Ordering::Relaxed);
        let again = match first {
            Signal::Interrupt => "Ctrl-C again to abort",
            _ => "a second signal aborts",
        };
        eprintln!("\n{}: {what} ({again})", first.name());
        cancel.cancel();
        next().await;
        // No destructors run past here: stop every child first.
        process::kill_registered();
        std::process::exit(exit_code(first).into());
    });
    Ok(())
}
