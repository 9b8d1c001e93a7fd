//! Sending a signal to a process or a process group leakrun created.

/// The signals leakrun sends to its children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Ask to stop.
    Term,
    /// Stop now.
    Kill,
    /// What a terminal's Ctrl-C sends: a leakrun child writes its partial result.
    Interrupt,
    /// What a closed terminal sends.
    Hangup,
}

impl Signal {
    /// The number `kill(2)` takes.
    pub fn raw(self) -> libc::c_int {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
            Signal::Interrupt => libc::SIGINT,
            Signal::Hangup => libc::SIGHUP,
        }
    }

    /// Its name, as `kill -l` prints it with the `SIG` prefix.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Term => "SIGTERM",
            Signal::Kill => "SIGKILL",
            Signal::Interrupt => "SIGINT",
            Signal::Hangup => "SIGHUP",
        }
    }
}

/// Sends `signal` to every process of group `pgid` (never group 0 or 1).
pub fn group(pgid: u32, signal: Signal) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else { return };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) on a negative id only sends a signal to a process group leakrun created.
    unsafe {
        libc::kill(-pgid, signal.raw());
    }
}

/// Sends `signal` to process `pid` (never 0 or 1).
pub fn process(pid: u32, signal: Signal) {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return };
    if pid <= 1 {
        return;
    }
    // SAFETY: kill(2) with a positive pid only sends a signal.
    unsafe {
        libc::kill(pid, signal.raw());
    }
}
