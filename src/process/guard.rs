//! The guard: a small `sh` process that stops a child's whole process group (and any helpers the
//! child started in groups of their own) if leakrun dies without stopping it — SIGKILL, an OOM
//! kill, a crash — when no destructor and no signal handler of leakrun's runs.
//!
//! It holds the read end of a pipe only leakrun writes to. `add <id>` lines name more targets (a
//! helper's pid); `remove <path>` lines name folders made for the child (the preloaded heap's
//! shared-memory pages); `done` means leakrun stopped everything itself; end of input means
//! leakrun is gone: SIGTERM to every target, SIGKILL after the grace period, then the folders
//! are removed. The guard sits in a process group of its own, so a Ctrl-C at the terminal does
//! not end it before leakrun has stopped.

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// `$1`: the group; `$2`: the grace in tenths of a second (0: SIGKILL at once). (dash's `kill`
/// takes a negative id as a group after the signal, and no `--`.)
const SCRIPT: &str = r#"targets="-$1"
while IFS= read -r line; do
  case "$line" in
    done) exit 0 ;;
    "add "*) targets="$targets ${line#add }" ;;
    "remove "*) folders="$folders
${line#remove }" ;;
  esac
done
alive() { for t in $targets; do kill -0 "$t" 2>/dev/null && return 0; done; return 1; }
[ "$2" -gt 0 ] && for t in $targets; do kill -TERM "$t" 2>/dev/null; done
i=0
while [ "$i" -lt "$2" ] && alive; do sleep 0.1; i=$((i+1)); done
for t in $targets; do kill -KILL "$t" 2>/dev/null; done
printf '%s\n' "$folders" | while IFS= read -r f; do [ -n "$f" ] && rm -rf -- "$f"; done
exit 0"#;

/// A running guard for one child's group.
pub struct Guard {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Guard {
    /// Starts a guard for group `pgid` that allows `grace` between SIGTERM and SIGKILL (zero:
    /// SIGKILL at once); none if `sh` cannot be run (the direct child is still covered by its
    /// parent-death signal).
    pub fn spawn(pgid: u32, grace: Duration) -> Option<Self> {
        let tenths = match grace.is_zero() {
            true => "0".to_string(),
            false => (grace.as_millis() / 100).max(1).to_string(),
        };
        let mut child = Command::new("sh")
            .args(["-c", SCRIPT, "leakrun-guard", &pgid.to_string(), &tenths])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .ok()?;
        let stdin = child.stdin.take();
        Some(Self { child, stdin })
    }

    /// The guard's own pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Adds process `pid` to what the guard stops.
    pub fn add(&mut self, pid: u32) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = writeln!(stdin, "add {pid}");
            let _ = stdin.flush();
        }
    }

    /// Has the guard remove folder `path` once it has stopped the child, if leakrun is gone by
    /// then (leakrun removes it itself otherwise). Only an absolute path on one line is passed.
    pub fn remove_if_abandoned(&mut self, path: &std::path::Path) {
        let Some(text) = path.to_str().filter(|t| path.is_absolute() && !t.contains('\n')) else {
            return;
        };
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = writeln!(stdin, "remove {text}");
            let _ = stdin.flush();
        }
    }

    /// Tells the guard everything is stopped and waits for it to end (briefly; killed after).
    pub fn release(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"done\n");
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
