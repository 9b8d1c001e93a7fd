//! The last lines of a child's output, which every error about that child quotes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Bytes of a log read from its end, at most.
const TAIL_BYTES: u64 = 4096;

/// The last `lines` non-blank lines of the file at `path` (fewer when it has fewer; none when it
/// is missing or empty). Reads only the file's last few KiB, whatever its size.
pub fn tail_lines(path: &Path, lines: usize) -> Vec<String> {
    let Ok(mut file) = File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.take(TAIL_BYTES).read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let kept: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    kept[kept.len().saturating_sub(lines)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_non_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        std::fs::write(&path, "one\n\ntwo\nthree\n  \nfour\n").unwrap();
        assert_eq!(tail_lines(&path, 2), ["three", "four"]);
        assert_eq!(tail_lines(&path, 10), ["one", "two", "three", "four"]);
        assert!(tail_lines(&dir.path().join("missing"), 3).is_empty());
    }
}
