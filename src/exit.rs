//! Exit codes, decided in one place.

use crate::process::Signal;

/// How a leakrun command ends, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    /// Every verdict met its expectation.
    Pass,
    /// A verdict failed or did not match the expectation.
    VerdictFailed,
    /// Bad scenario or bad usage.
    Usage,
    /// Something leakrun needs was not there (backend unreachable, server would not start).
    Infrastructure,
    /// Interrupted by SIGINT, SIGTERM or SIGHUP; partial results were written.
    Interrupted,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Pass => 0,
            Exit::VerdictFailed => 1,
            Exit::Usage => 2,
            Exit::Infrastructure => 3,
            // 130, 143 or 129: 128 plus the signal that came (SIGINT when none is known).
            Exit::Interrupted => crate::signals::exit_code(crate::signals::received().unwrap_or(Signal::Interrupt)),
        }
    }
}
