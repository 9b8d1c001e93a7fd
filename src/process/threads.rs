//! A set of leakrun's own threads, by thread id, that the threads join and leave themselves: the
//! embedded server's, so its CPU can be read apart from the clients' in the same process.

use std::sync::{Arc, Mutex, MutexGuard};

/// Thread ids of leakrun's process that belong together; clones share the set.
#[derive(Clone, Default)]
pub struct ThreadSet {
    tids: Arc<Mutex<Vec<u32>>>,
}

impl ThreadSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the calling thread.
    pub fn join_current(&self) {
        let tid = current_tid();
        let mut tids = self.lock();
        if !tids.contains(&tid) {
            tids.push(tid);
        }
    }

    /// Removes the calling thread.
    pub fn leave_current(&self) {
        let tid = current_tid();
        self.lock().retain(|&t| t != tid);
    }

    /// The ids now in the set, under its lock (a reader allocates nothing).
    pub fn tids(&self) -> MutexGuard<'_, Vec<u32>> {
        self.lock()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u32>> {
        self.tids.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The calling thread's id, as `/proc/self/task/<tid>` names it.
pub fn current_tid() -> u32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() as u32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_join_and_leave_by_their_own_id() {
        let set = ThreadSet::new();
        let other = set.clone();
        let spawned = std::thread::spawn(move || {
            other.join_current();
            other.join_current();
            current_tid()
        })
        .join()
        .unwrap();
        set.join_current();
        assert_eq!(*set.tids(), vec![spawned, current_tid()]);
        assert_ne!(spawned, current_tid());
        set.leave_current();
        assert_eq!(*set.tids(), vec![spawned]);
    }
}
