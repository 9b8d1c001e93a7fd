//! Names every part of a run uses: ids unique to this run, the key prefix a backend's state
//! lives under, names safe as a room, a group and a file, and URLs with their credentials taken
//! out for messages and results.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A short id unique within this machine: process id, clock and a counter.
pub fn unique_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:x}-{:x}-{n}", std::process::id(), nanos)
}

/// A key prefix unique to this run: `leakrun:<pid>-<time>-<n>:`.
pub fn run_prefix() -> String {
    format!("leakrun:{}:", unique_id())
}

/// True for names that are safe as a room, a group and a file name.
pub fn is_valid_name(name: &str) -> bool {
    (1..=99).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `url` with any `user:password@` removed, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact("redis://u:secret@127.0.0.1:7000/"),
            "redis://***@127.0.0.1:7000/"
        );
        assert_eq!(redact("redis://127.0.0.1:7000/"), "redis://127.0.0.1:7000/");
    }

    #[test]
    fn prefixes_are_unique() {
        assert_ne!(run_prefix(), run_prefix());
    }

    #[test]
    fn names_safe_as_files() {
        assert!(is_valid_name("room_a-1.x"));
        assert!(!is_valid_name(".hidden") && !is_valid_name("a/b") && !is_valid_name(""));
        assert!(!is_valid_name(&"x".repeat(100)));
    }
}
