//! What `/proc` says about a process: its state, parent, group, start time and resident set.
//!
//! Signals go only to processes leakrun started, and a pid can be reused once its process is
//! reaped. A process is named by its [`Identity`] — pid plus the start time the kernel records
//! for it — and is re-read before it is signalled, so a recycled pid is never hit.
//!
//! The sampler reads leakrun's own process ten times a second for the whole run, so that path
//! ([`ProcFile`], [`Stat::read_from`], [`resident_bytes`]) allocates nothing: a file held open and
//! re-read in place into a buffer on the stack.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// One line of `/proc/<pid>/stat`, the fields leakrun reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// The one-letter state (`R`, `S`, `Z`, ...).
    pub state: char,
    /// The parent's pid.
    pub ppid: u32,
    /// The process group.
    pub pgrp: u32,
    /// Start time after boot, in clock ticks: with the pid, a name no later process shares.
    pub start_time: u64,
    /// CPU time spent so far, user and system (`utime + stime`), in clock ticks.
    pub cpu_ticks: u64,
}

impl Stat {
    /// Reads `/proc/<pid>/stat`; none when the process is gone.
    pub fn read(pid: u32) -> Option<Self> {
        Self::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// Reads an open `/proc/<pid>/stat` again, without allocating; none when its process is gone
    /// (reaped: the file stays bound to the process it was opened for, never a later one that
    /// took its pid).
    pub fn read_from(file: &ProcFile) -> Option<Self> {
        let mut buffer = [0u8; STAT_BYTES];
        Self::parse(file.read(&mut buffer)?)
    }

    /// Parses a stat line: `pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
    /// majflt cmajflt utime stime cutime cstime priority nice threads itrealvalue starttime ...`.
    /// `comm` may hold spaces and parentheses, so fields are read after the last `)`.
    pub fn parse(line: &str) -> Option<Self> {
        let (_, rest) = line.rsplit_once(')')?;
        // Fields after the name, counted from 0: state, ppid, pgrp, ..., utime (11), stime (12),
        // ..., starttime (19). Walked in order, not collected, so a parse allocates nothing.
        let mut fields = rest.split_whitespace();
        let state = fields.next()?.chars().next()?;
        let ppid = fields.next()?.parse().ok()?;
        let pgrp = fields.next()?.parse().ok()?;
        let utime: u64 = fields.nth(8)?.parse().ok()?;
        let stime: u64 = fields.next()?.parse().ok()?;
        let start_time = fields.nth(6)?.parse().ok()?;
        Some(Self {
            state,
            ppid,
            pgrp,
            start_time,
            cpu_ticks: utime.saturating_add(stime),
        })
    }

    /// Running, sleeping or stopped: not a zombie waiting to be reaped, not dead.
    pub fn is_live(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Bytes a stat line is read into: its 52 fields are numbers of at most 20 digits and a name of at
/// most 64 bytes, so it fits; a line that does not is not read.
const STAT_BYTES: usize = 1536;

/// Bytes a statm line is read into: seven numbers.
const STATM_BYTES: usize = 256;

/// One `/proc/<pid>/<name>` file held open for re-reading. The open file stays bound to the
/// process it was opened for: once that process is reaped, reads fail, even if a later process
/// has taken its pid.
#[derive(Debug)]
pub struct ProcFile {
    file: File,
}

impl ProcFile {
    /// Opens `/proc/<pid>/<name>` (`stat`, `statm`); none when the process is gone.
    pub fn open(pid: u32, name: &str) -> Option<Self> {
        File::open(format!("/proc/{pid}/{name}")).ok().map(|file| Self { file })
    }

    /// The file's whole text now, read from its start into `buffer`: none when its process is
    /// gone, the text is not UTF-8, or it does not fit.
    pub fn read<'b>(&self, buffer: &'b mut [u8]) -> Option<&'b str> {
        read_whole(&self.file, buffer)
    }
}

/// A file's whole text now, read from its start into `buffer` without allocating: none when it
/// cannot be read (its process is gone), is not UTF-8, or does not fit.
pub fn read_whole<'b>(file: &File, buffer: &'b mut [u8]) -> Option<&'b str> {
    let mut filled = 0;
    loop {
        let unread = buffer.get_mut(filled..).filter(|rest| !rest.is_empty())?;
        match file.read_at(unread, filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    std::str::from_utf8(&buffer[..filled]).ok()
}

/// The resident set of an open `/proc/<pid>/statm`, bytes (its second field, in pages), without
/// allocating; none when its process is gone. A zombie reads 0.
pub fn resident_bytes(statm: &ProcFile) -> Option<u64> {
    let mut buffer = [0u8; STATM_BYTES];
    let pages: u64 = statm.read(&mut buffer)?.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages.saturating_mul(page_size()))
}

/// Bytes per memory page.
pub fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as u64,
        _ => 4096,
    }
}

/// A process as leakrun started or found it: its pid and when it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// The process id.
    pub pid: u32,
    /// Its start time (see [`Stat::start_time`]); 0 when it was gone before it could be read.
    pub start_time: u64,
}

impl Identity {
    /// The process `pid` is now; none when it is gone.
    pub fn of(pid: u32) -> Option<Self> {
        Stat::read(pid).map(|stat| Self {
            pid,
            start_time: stat.start_time,
        })
    }

    /// True while this very process (not a later one with its pid) is alive.
    pub fn is_alive(&self) -> bool {
        Stat::read(self.pid).is_some_and(|stat| stat.start_time == self.start_time && stat.is_live())
    }
}

/// True while process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    Stat::read(pid).is_some_and(|stat| stat.is_live())
}

/// True while some process of group `pgid` is alive. Zombies do not count: an orphaned worker
/// that exited waits for init to reap it, and is gone for every purpose here.
pub fn group_alive(pgid: u32) -> bool {
    all().any(|(_, stat)| stat.pgrp == pgid && stat.is_live())
}

/// Clock ticks per second, the unit of [`Stat::cpu_ticks`].
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as f64,
        _ => 100.0,
    }
}

/// Every live descendant of `root` (children, grandchildren, ...), each with its identity.
pub fn descendants(root: u32) -> Vec<Identity> {
    let mut children: HashMap<u32, Vec<Identity>> = HashMap::new();
    for (pid, stat) in all().filter(|(_, stat)| stat.is_live()) {
        children.entry(stat.ppid).or_default().push(Identity {
            pid,
            start_time: stat.start_time,
        });
    }
    let mut found = Vec::new();
    let mut queue = vec![root];
    while let Some(parent) = queue.pop() {
        for child in children.remove(&parent).unwrap_or_default() {
            queue.push(child.pid);
            found.push(child);
        }
    }
    found
}

/// Every process in `/proc` with its stat.
fn all() -> impl Iterator<Item = (u32, Stat)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, Stat::read(pid)?)))
}

/// Of `pids`, those holding a TCP socket listening on `port` (from `/proc/net/tcp{,6}` and each
/// process's open descriptors; bounded by the processes given and a few thousand descriptors
/// each). Empty when it cannot be told (another user's processes).
pub fn listening(pids: &[u32], port: u16) -> Vec<u32> {
    const MAX_FDS: usize = 65_536;
    let mut inodes = std::collections::HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode
            let (Some(local), Some(state), Some(inode)) = (fields.get(1), fields.get(3), fields.get(9)) else {
                continue;
            };
            let listens = *state == "0A";
            let on_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                == Some(port);
            if listens && on_port {
                inodes.insert(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return Vec::new();
    }
    pids.iter()
        .copied()
        .filter(|pid| {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                return false;
            };
            fds.flatten().take(MAX_FDS).any(|fd| {
                std::fs::read_link(fd.path()).is_ok_and(|target| inodes.contains(target.to_string_lossy().as_ref()))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_command_name_with_spaces_and_parentheses() {
        let line = "4242 (a (weird) name) S 17 4242 4242 0 -1 4194560 1 0 0 0 3 4 0 0 20 0 1 0 998877 10000 100";
        let stat = Stat::parse(line).expect("parses");
        assert_eq!(
            stat,
            Stat {
                state: 'S',
                ppid: 17,
                pgrp: 4242,
                start_time: 998877,
                cpu_ticks: 7
            }
        );
        assert!(stat.is_live());
        assert!(!Stat::parse(&line.replace(" S ", " Z ")).unwrap().is_live());
        assert_eq!(Stat::parse("12 (short) S 1"), None);
    }

    #[test]
    fn a_held_stat_file_reads_like_a_fresh_one_and_fails_once_its_process_is_reaped() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().expect("sleep");
        let stat = ProcFile::open(child.id(), "stat").expect("open stat");
        let statm = ProcFile::open(child.id(), "statm").expect("open statm");
        let held = Stat::read_from(&stat).expect("held read");
        assert_eq!(Some(held), Stat::read(child.id()));
        assert_eq!(held.ppid, std::process::id());
        assert!(resident_bytes(&statm).expect("resident") > 0);
        child.kill().expect("kill");
        child.wait().expect("reap");
        assert_eq!(Stat::read_from(&stat), None, "a reaped process reads as gone");
        assert_eq!(resident_bytes(&statm), None);
    }

    #[test]
    fn a_file_larger_than_the_buffer_is_not_read() {
        let status = ProcFile::open(std::process::id(), "status").expect("own status");
        assert!(status.read(&mut [0u8; 8]).is_none());
        assert!(
            status
                .read(&mut [0u8; 16 * 1024])
                .is_some_and(|text| text.contains("VmRSS"))
        );
    }

    #[test]
    fn this_process_has_an_identity_that_a_different_start_time_does_not_match() {
        let me = Identity::of(std::process::id()).expect("own stat");
        assert!(me.is_alive());
        let recycled = Identity {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!recycled.is_alive());
    }
}
