//! Every child leakrun has started and not yet stopped, for the one path that runs no destructor:
//! the abort (a second interrupting signal), which SIGKILLs them all and exits.
//!
//! A child is registered the moment it is spawned, before leakrun waits for it to answer, so no
//! window exists in which it could outlive an abort.

use std::sync::Mutex;

use super::procfs::{self, Identity};
use super::signal::{self, Signal};

/// What one registration stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// A process group leakrun created (its leader's pid is its id).
    Group(u32),
    /// One process, outside any group of leakrun's (a helper a server started in a group of its
    /// own), signalled only while it is still the same process.
    Process(Identity),
}

static REGISTERED: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

fn entries() -> std::sync::MutexGuard<'static, Vec<Registered>> {
    REGISTERED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records something that must not outlive leakrun.
pub fn register(entry: Registered) {
    entries().push(entry);
}

/// Forgets something that has been stopped.
pub fn unregister(entry: Registered) {
    entries().retain(|e| *e != entry);
}

/// How many registrations are open (for tests and the abort message).
pub fn open() -> usize {
    entries().len()
}

/// SIGKILLs everything registered: the last thing an aborting leakrun does.
pub fn kill_registered() {
    let all = std::mem::take(&mut *entries());
    for entry in all {
        match entry {
            Registered::Group(pgid) if procfs::group_alive(pgid) => signal::group(pgid, Signal::Kill),
            Registered::Process(identity) if identity.is_alive() => signal::process(identity.pid, Signal::Kill),
            _ => {}
        }
    }
}
