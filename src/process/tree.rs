//! A process and every process below it, walked through the kernel's own lists of each thread's
//! children (`/proc/<pid>/task/<tid>/children`) rather than a scan of all of `/proc`.
//!
//! An external server's memory and CPU are read over its tree ten times a second for the whole
//! run. A scan of `/proc` reads every process on the machine and allocates for each (sysinfo's
//! made about 40 % of the new pages leakrun's own heap took in a soak against a separate
//! server), so here each member's files are held open, re-read into buffers on the stack, and a
//! walk allocates only when a process joins the tree.
//!
//! The lists need a kernel built with `CONFIG_PROC_CHILDREN` (Debian's, Ubuntu's and Fedora's
//! are). Where the root's own list is missing, the tree is found by a scan of `/proc` instead,
//! which allocates per process on the machine but misses nothing.

use std::fs::File;
use std::io::Write as _;
use std::os::fd::AsRawFd as _;

use super::procfs::{self, ProcFile, Stat, read_whole};

/// Most processes a tree holds; past it, further ones are not followed.
pub const MAX_TREE: usize = 4096;

/// Bytes of directory entries read per call: a few hundred threads' entries.
const DIRENT_BYTES: usize = 8192;

/// Bytes one thread's children list is read into: a few hundred pids.
const CHILDREN_BYTES: usize = 4096;

/// One process of the tree, its files held open. The files stay bound to the process they were
/// opened for, so a member whose pid is reused after it ends reads as gone.
#[derive(Debug)]
pub struct Member {
    /// Its pid.
    pub pid: u32,
    /// Its start time (clock ticks after boot): with the pid, a name no later process shares.
    pub start_time: u64,
    /// Its `/proc/<pid>/stat`.
    pub stat: ProcFile,
    /// Its `/proc/<pid>/statm`.
    pub statm: ProcFile,
    /// Its `/proc/<pid>/task` directory, whose entries are its threads.
    tasks: File,
}

impl Member {
    fn open(pid: u32) -> Option<Self> {
        let stat = ProcFile::open(pid, "stat")?;
        let statm = ProcFile::open(pid, "statm")?;
        let tasks = File::open(format!("/proc/{pid}/task")).ok()?;
        let start_time = Stat::read_from(&stat).filter(Stat::is_live)?.start_time;
        Some(Self {
            pid,
            start_time,
            stat,
            statm,
            tasks,
        })
    }

    /// Whether this very process is alive (not a zombie, not a later one with its pid).
    fn is_alive(&self) -> bool {
        Stat::read_from(&self.stat).is_some_and(|stat| stat.is_live())
    }

    /// Calls `each` with every child pid of every thread of this process (none once it is gone).
    fn children(&self, mut each: impl FnMut(u32)) {
        let mut entries = [0u8; DIRENT_BYTES];
        let mut list = [0u8; CHILDREN_BYTES];
        let mut path = [0u8; 64];
        // SAFETY: lseek on a descriptor this member owns.
        if unsafe { libc::lseek(self.tasks.as_raw_fd(), 0, libc::SEEK_SET) } != 0 {
            return;
        }
        loop {
            // SAFETY: the kernel writes at most `entries.len()` bytes of whole records into it.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    self.tasks.as_raw_fd(),
                    entries.as_mut_ptr(),
                    entries.len(),
                )
            };
            if n <= 0 {
                return;
            }
            for tid in thread_ids(&entries[..n as usize]) {
                let Some(path) = children_path(&mut path, self.pid, tid) else {
                    continue;
                };
                // A thread that ended since the listing has no list: nothing to follow.
                let Some(text) = File::open(path).ok().and_then(|f| read_whole(&f, &mut list)) else {
                    continue;
                };
                text.split_ascii_whitespace()
                    .filter_map(|pid| pid.parse().ok())
                    .for_each(&mut each);
            }
        }
    }
}

/// The thread ids in a buffer of `linux_dirent64` records (`d_ino` u64, `d_off` i64, `d_reclen`
/// u16, `d_type` u8, then the NUL-terminated name); `.` and `..` are not numbers and are skipped.
fn thread_ids(records: &[u8]) -> impl Iterator<Item = u32> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        while at + 19 <= records.len() {
            let length = u16::from_ne_bytes([records[at + 16], records[at + 17]]) as usize;
            let record = records.get(at..at + length.max(19))?;
            at += length.max(19);
            let name = &record[19..];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if let Some(tid) = std::str::from_utf8(name).ok().and_then(|n| n.parse().ok()) {
                return Some(tid);
            }
        }
        None
    })
}

/// `/proc/<pid>/task/<tid>/children`, written into `buffer`.
fn children_path(buffer: &mut [u8; 64], pid: u32, tid: u32) -> Option<&str> {
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    write!(cursor, "/proc/{pid}/task/{tid}/children").ok()?;
    let length = cursor.position() as usize;
    std::str::from_utf8(&buffer[..length]).ok()
}

/// Adds `pid` to the pids a walk found, unless it is there already or the tree is full.
fn admit(found: &mut Vec<u32>, pid: u32) {
    if found.len() < MAX_TREE && !found.contains(&pid) {
        found.push(pid);
    }
}

/// A process and its descendants, as of the last [`ProcessTree::walk`].
#[derive(Debug)]
pub struct ProcessTree {
    /// The root first, then the processes below it in the order found.
    members: Vec<Member>,
    /// The pids found by a walk, reused by the next.
    found: Vec<u32>,
    /// How a walk finds the processes below the root.
    finder: Finder,
}

/// How a walk finds the processes below the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finder {
    /// Each member's threads' `children` lists.
    ChildrenLists,
    /// A scan of every process in `/proc` for the root's descendants (kernels without the lists).
    Scan,
}

impl ProcessTree {
    /// The tree of `root`, found through the children lists where the kernel has them and by a
    /// scan where it does not; none when `root` is gone.
    pub fn new(root: u32) -> Option<Self> {
        let member = Member::open(root)?;
        let mut path = [0u8; 64];
        let lists = children_path(&mut path, root, root).is_some_and(|p| std::path::Path::new(p).exists());
        Some(Self::with_finder(
            member,
            if lists { Finder::ChildrenLists } else { Finder::Scan },
        ))
    }

    /// The tree of `root`, found by `finder` whatever the kernel has; none when `root` is gone.
    pub fn found_by(root: u32, finder: Finder) -> Option<Self> {
        Some(Self::with_finder(Member::open(root)?, finder))
    }

    fn with_finder(root: Member, finder: Finder) -> Self {
        Self {
            members: vec![root],
            found: Vec::new(),
            finder,
        }
    }

    /// How this tree's walks find its processes.
    pub fn finder(&self) -> Finder {
        self.finder
    }

    /// Walks the tree again from its root: processes that ended leave it, new ones join (their
    /// files opened now). False when the root is gone.
    pub fn walk(&mut self) -> bool {
        self.found.clear();
        let root = &self.members[0];
        if !root.is_alive() {
            return false;
        }
        self.found.push(root.pid);
        if self.finder == Finder::Scan {
            for descendant in procfs::descendants(root.pid) {
                admit(&mut self.found, descendant.pid);
            }
        }
        let mut next = 0;
        while next < self.found.len() {
            let pid = self.found[next];
            next += 1;
            let known = self.members.iter().position(|m| m.pid == pid);
            let member = match known {
                Some(at) if self.members[at].is_alive() => at,
                // New to the tree, or a member that ended with its pid since taken by a new
                // process of the tree, which replaces it (held files follow only the process they
                // were opened for).
                _ => {
                    let Some(member) = Member::open(pid) else {
                        continue;
                    };
                    match known {
                        Some(at) => {
                            self.members[at] = member;
                            at
                        }
                        None => {
                            self.members.push(member);
                            self.members.len() - 1
                        }
                    }
                }
            };
            if self.finder == Finder::Scan {
                continue;
            }
            let found = &mut self.found;
            self.members[member].children(|child| admit(found, child));
        }
        let found = &self.found;
        // A member whose pid was not found has ended and been reaped: it leaves. The root, found
        // first, stays first.
        self.members.retain(|m| found.contains(&m.pid));
        true
    }

    /// Every member, the root first.
    pub fn members(&self) -> &[Member] {
        &self.members
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// Walks until `done` says so or five seconds pass.
    fn walk_until(tree: &mut ProcessTree, done: impl Fn(&ProcessTree) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            assert!(tree.walk(), "the root is alive");
            if done(tree) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn finds_grandchildren_and_lets_them_go_when_they_end() {
        let lists = ProcessTree::new(std::process::id()).expect("this process runs");
        // This machine's kernel has the lists (CONFIG_PROC_CHILDREN), as CI's does.
        assert_eq!(lists.finder(), Finder::ChildrenLists);
        grandchildren_come_and_go(Finder::ChildrenLists);
    }

    #[test]
    fn a_scan_finds_the_same_tree_where_the_kernel_has_no_lists() {
        grandchildren_come_and_go(Finder::Scan);
    }

    fn grandchildren_come_and_go(finder: Finder) {
        // A shell with two children: a shell whose own child (the grandchild) sleeps, and a
        // sleep. The `; :` keeps each shell from replacing itself with its last command.
        let mut shell = Command::new("sh")
            .args(["-c", "sh -c 'sleep 30; :' & sleep 30; :"])
            .stdout(Stdio::null())
            .spawn()
            .expect("sh");
        let root = shell.id();
        let mut tree = ProcessTree::found_by(root, finder).expect("the shell runs");
        assert!(
            walk_until(&mut tree, |t| t.members().len() == 4),
            "root, two children and a grandchild: {:?}",
            tree.members().iter().map(|m| m.pid).collect::<Vec<_>>()
        );
        assert_eq!(tree.members()[0].pid, root, "the root first");
        let parent_of = |pid: u32| Stat::read(pid).map(|s| s.ppid);
        let grandchild = tree.members()[1..]
            .iter()
            .map(|m| m.pid)
            .find(|&pid| parent_of(pid) != Some(root))
            .expect("a member whose parent is not the root");
        let child = parent_of(grandchild).expect("its parent");
        // SAFETY: a signal to a process this test started (a descendant of its shell).
        unsafe { libc::kill(grandchild as i32, libc::SIGKILL) };
        // The grandchild ends, and with it the shell that waited for it; the root and its sleep
        // stay.
        assert!(
            walk_until(&mut tree, |t| t.members().len() == 2),
            "the killed grandchild and its parent leave the tree: {:?}",
            tree.members().iter().map(|m| m.pid).collect::<Vec<_>>()
        );
        assert!(tree.members().iter().all(|m| m.pid != grandchild && m.pid != child));
        for member in &tree.members()[1..] {
            // SAFETY: as above; the root's sleep does not outlive the test.
            unsafe { libc::kill(member.pid as i32, libc::SIGKILL) };
        }
        shell.kill().expect("kill");
        shell.wait().expect("wait");
        assert!(!tree.walk(), "a reaped root reads as gone");
    }

    #[test]
    fn a_missing_root_is_none() {
        assert!(ProcessTree::new(u32::MAX - 1).is_none());
    }

    #[test]
    fn reads_thread_ids_from_directory_records() {
        // Three records: ".", "..", "4242", each 8-aligned as the kernel writes them.
        let mut records = Vec::new();
        for name in [".", "..", "4242"] {
            let length = (19 + name.len() + 1).div_ceil(8) * 8;
            let mut record = vec![0u8; length];
            record[16..18].copy_from_slice(&(length as u16).to_ne_bytes());
            record[19..19 + name.len()].copy_from_slice(name.as_bytes());
            records.extend(record);
        }
        assert_eq!(thread_ids(&records).collect::<Vec<_>>(), [4242]);
        // A record cut short by the buffer's end is not read past the buffer.
        assert_eq!(
            thread_ids(&records[..records.len() - 4]).collect::<Vec<_>>(),
            Vec::<u32>::new()
        );
    }
}
