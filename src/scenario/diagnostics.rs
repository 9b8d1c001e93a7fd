//! Problems found in a scenario file, each pinned to a line, a column and a key.
//!
//! A user who mistypes a scenario should learn everything wrong with it in one go, so validation
//! collects [`Problem`]s instead of stopping at the first, and every problem says what is valid.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One thing wrong with a scenario file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line of the offending value or key.
    pub line: usize,
    /// 1-based column of the offending value or key.
    pub column: usize,
    /// Dotted key path, e.g. `rooms[0].clients[1].rate`; empty when the whole file is at fault.
    pub key: String,
    /// What is wrong and what would be valid.
    pub message: String,
    /// Set when the value came from outside the file (`--set run.duration=x`, an environment
    /// variable); `line` and `column` are then 0.
    pub origin: Option<String>,
}

/// Every problem found in one scenario file.
#[derive(Debug, thiserror::Error)]
pub struct ScenarioError {
    /// The file the problems were found in.
    pub file: PathBuf,
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        writeln!(
            f,
            "{}: {} problem{}",
            self.file.display(),
            count,
            if count == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            match &problem.origin {
                Some(origin) => write!(f, "  {origin}: ")?,
                None => write!(f, "  {}:{}:{}: ", self.file.display(), problem.line, problem.column)?,
            }
            if !problem.key.is_empty() {
                write!(f, "`{}`: ", problem.key)?;
            }
            writeln!(f, "{}", problem.message)?;
        }
        Ok(())
    }
}

/// Collects problems for one file, turning byte spans into lines and columns.
pub struct Collector<'a> {
    source: &'a str,
    file: &'a Path,
    problems: Vec<Problem>,
}

impl<'a> Collector<'a> {
    /// Starts an empty collection for `file` whose text is `source`.
    pub fn new(file: &'a Path, source: &'a str) -> Self {
        Self {
            source,
            file,
            problems: Vec::new(),
        }
    }

    /// Records a problem at the byte span `span` for key `key`.
    pub fn at(&mut self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>) {
        let (line, column) = line_column(self.source, span.start);
        self.problems.push(Problem {
            line,
            column,
            key: key.into(),
            message: message.into(),
            origin: None,
        });
    }

    /// True when no problem was recorded.
    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// Ends the collection: `Ok(value)` when nothing was wrong, every problem otherwise.
    pub fn finish<T>(mut self, value: T) -> Result<T, ScenarioError> {
        if self.problems.is_empty() {
            return Ok(value);
        }
        self.problems.sort_by_key(|p| (p.line, p.column));
        self.problems.dedup();
        Err(ScenarioError {
            file: self.file.to_path_buf(),
            problems: self.problems,
        })
    }
}

/// 1-based line and column (in characters) of byte `offset` in `source`.
pub fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..floor_char_boundary(source, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, 11), (2, 6));
        assert_eq!(line_column(text, 999), (3, 1));
    }
}
