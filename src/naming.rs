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

/// `url` with its credentials removed, for messages and results: the user and password the
/// URL parser finds (the one the clients use, so what is removed is what they would send) and
/// the values of query parameters that name a secret. Text the parser refuses loses everything
/// between `://` and its last `@`.
pub fn redact(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
            _ => url.to_string(),
        };
    };
    let mut changed = false;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Only a URL that cannot have credentials refuses these, and it has none.
        let _ = parsed.set_password(None);
        let _ = parsed.set_username("***");
        changed = true;
    }
    if parsed.query_pairs().any(|(key, _)| is_secret_name(&key)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_name(&k) {
                    "***".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
        changed = true;
    }
    if changed { parsed.to_string() } else { url.to_string() }
}

/// Every URL inside `text` (a flag, a command line, a source note) redacted as [`redact`] does.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The scheme starts after the last character that cannot be part of it (which may be
        // several bytes long).
        let start = rest[..at]
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`'))
            .map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..start]);
        out.push_str(&redact(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// True for a variable or parameter name that holds a secret: it contains `pass`, `secret`,
/// `token`, `key` or `credential` (any case).
pub fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["pass", "secret", "token", "key", "credential", "auth"]
        .iter()
        .any(|word| name.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_with_wide_characters_before_a_url_is_redacted_without_a_panic() {
        let text = "--set x=\"wK\u{fffd}s://u:pw@127.0.0.1/\" é://a";
        let shown = redact_text(text);
        assert!(!shown.contains("pw"), "{shown}");
        assert!(shown.starts_with("--set x=\"wK\u{fffd}"), "{shown}");
    }

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact("redis://u:secret@127.0.0.1:7000/"),
            "redis://***@127.0.0.1:7000/"
        );
        assert_eq!(redact("redis://127.0.0.1:7000/"), "redis://127.0.0.1:7000/");
        assert_eq!(
            redact("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("redis://:pw@127.0.0.1/"), "redis://***@127.0.0.1/");
    }

    #[test]
    fn redaction_follows_the_parser() {
        // The parser's host is evil.example; what follows `#` is a fragment, shown as it is.
        let shown = redact("redis://u:pw@evil.example#@127.0.0.1/");
        assert!(
            shown.starts_with("redis://***@evil.example") && !shown.contains("pw"),
            "{shown}"
        );
        assert_eq!(
            redact("http://127.0.0.1/stats?token=abc&room=a"),
            "http://127.0.0.1/stats?token=***&room=a"
        );
        assert_eq!(redact("not a url u:pw@host"), "not a url u:pw@host");
        assert!(!redact("x://u:pw@h@").contains("pw"));
    }

    #[test]
    fn urls_inside_text_are_redacted() {
        assert_eq!(
            redact_text("--set backend.url=\"redis://u:secret@127.0.0.1:7000/\""),
            "--set backend.url=\"redis://***@127.0.0.1:7000/\""
        );
        assert_eq!(
            redact_text("REDIS_URL=redis://:pw@127.0.0.1/ (REDIS_URL from .env) and amqp://a:b@127.0.0.1/"),
            "REDIS_URL=redis://***@127.0.0.1/ (REDIS_URL from .env) and amqp://***@127.0.0.1/"
        );
        assert!(is_secret_name("DB_PASSWORD") && is_secret_name("api_key") && !is_secret_name("ROOM"));
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
