//! Infrastructure a run needs besides the server under test: private backend processes that
//! leakrun starts for one run and always stops after it.
//!
//! Stopping happens on every path that runs destructors: the end of a run, an error, the first
//! Ctrl-C. The second Ctrl-C exits at once without them, so every child is also kept in a
//! registry that the abort path kills before exiting ([`kill_registered`]).

pub mod rabbitmq_server;
pub mod redis_server;

use std::sync::Mutex;

pub use rabbitmq_server::{PrivateRabbitMq, RabbitMqServerError};
pub use redis_server::{PrivateRedis, RedisServerError};

static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static GROUPS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Records a child process that must not outlive leakrun.
pub fn register(pid: u32) {
    CHILDREN.lock().unwrap_or_else(|p| p.into_inner()).push(pid);
}

/// Forgets a child that has been stopped.
pub fn unregister(pid: u32) {
    CHILDREN.lock().unwrap_or_else(|p| p.into_inner()).retain(|&p| p != pid);
}

/// Records a process group (an external server and its workers) that must not outlive leakrun.
pub fn register_group(pgid: u32) {
    GROUPS.lock().unwrap_or_else(|p| p.into_inner()).push(pgid);
}

/// Forgets a process group that has been stopped.
pub fn unregister_group(pgid: u32) {
    GROUPS.lock().unwrap_or_else(|p| p.into_inner()).retain(|&p| p != pgid);
}

/// Kills every registered child and process group with SIGKILL: the last thing an aborting
/// process does.
pub fn kill_registered() {
    let children = std::mem::take(&mut *CHILDREN.lock().unwrap_or_else(|p| p.into_inner()));
    for pid in children {
        kill_now(pid);
    }
    let groups = std::mem::take(&mut *GROUPS.lock().unwrap_or_else(|p| p.into_inner()));
    for pgid in groups {
        crate::external::process::signal_group(pgid, libc::SIGKILL);
    }
}

#[cfg(unix)]
fn kill_now(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return };
    if pid <= 0 {
        return;
    }
    // SAFETY: kill(2) with a positive pid of a child we started only sends a signal.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

#[cfg(not(unix))]
fn kill_now(_pid: u32) {}
