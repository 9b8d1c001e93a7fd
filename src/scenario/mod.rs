//! Scenario files: TOML in, a validated [`Scenario`] out.
//!
//! Two phases, as in ripgrep's configuration: `raw` reads whatever the user wrote without
//! judging it, and `validate` turns it into the [`Scenario`] the runner trusts. Every mistake is
//! reported with file, line, column and key, all of them at once where the file can still be read.

pub mod diagnostics;
pub mod external;
pub mod http;
pub mod model;
pub mod overrides;
pub mod raw;
pub mod units;
pub mod validate;
pub mod values;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

pub use diagnostics::{Problem, ScenarioError};
pub use model::*;
pub use overrides::{Override, OverrideError};

/// A scenario together with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedScenario {
    /// The validated scenario.
    pub scenario: Scenario,
    /// The file it was read from.
    pub path: PathBuf,
    /// SHA-256 of the file's bytes, hex.
    pub source_hash: String,
    /// Where each key's value came from: `file`, `default`, or the override that set it.
    pub sources: BTreeMap<String, String>,
}

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{}: cannot read the scenario: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file was read but is not a valid scenario.
    #[error("{0}")]
    Invalid(#[from] ScenarioError),
    /// An override names no scenario key.
    #[error("{}: {source}", path.display())]
    Override {
        /// The scenario file.
        path: PathBuf,
        /// What is wrong with the override.
        source: OverrideError,
    },
}

/// Reads and validates the scenario at `path` as written.
pub fn load(path: &Path) -> Result<LoadedScenario, LoadError> {
    load_with(path, &[])
}

/// Reads the scenario at `path`, applies `overrides` in order (a later one wins) and validates the
/// outcome. The file is validated on its own first, so its problems point at its own lines; a
/// problem with an overridden value names the override instead.
pub fn load_with(path: &Path, overrides: &[Override]) -> Result<LoadedScenario, LoadError> {
    let source = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut scenario = parse(path, &source)?;
    let mut set_by = BTreeMap::new();
    let mut text = source.clone();
    if !overrides.is_empty() {
        (text, set_by) = overrides::apply(&source, overrides).map_err(|source| LoadError::Override {
            path: path.to_path_buf(),
            source,
        })?;
        scenario = parse(path, &text).map_err(|error| blame_overrides(error, &source, &set_by))?;
    }
    Ok(LoadedScenario {
        scenario,
        path: path.to_path_buf(),
        source_hash: hex(&Sha256::digest(source.as_bytes())),
        sources: overrides::provenance(&text, &set_by),
    })
}

/// Points the problems found after overrides were applied at their origin: the override that set
/// the value, else the key's place in the file as written.
fn blame_overrides(mut error: ScenarioError, source: &str, set_by: &BTreeMap<String, String>) -> ScenarioError {
    let (document, _) = DeTable::parse_recoverable(source);
    for problem in &mut error.problems {
        let by = set_by
            .iter()
            .find(|(key, _)| overrides::concerns(&problem.key, key))
            .map(|(_, by)| by.clone());
        let place = key_span(document.get_ref(), &parse_dotted(&problem.key));
        match (by, place) {
            (Some(by), _) => problem.origin = Some(by),
            (None, Some(span)) => {
                (problem.line, problem.column) = diagnostics::line_column(source, span.start);
            }
            (None, None) => problem.origin = Some("after overrides".into()),
        }
        if problem.origin.is_some() {
            (problem.line, problem.column) = (0, 0);
        }
    }
    error
}

/// `rooms[0].clients[1].rate` as segments.
fn parse_dotted(key: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    for part in key.split('.').filter(|p| !p.is_empty()) {
        let mut pieces = part.split('[');
        if let Some(name) = pieces.next() {
            out.push(Segment::Key(name.to_string()));
        }
        out.extend(pieces.filter_map(|index| index.trim_end_matches(']').parse().ok().map(Segment::Index)));
    }
    out
}

/// Parses and validates scenario text; `path` is used only in messages.
pub fn parse(path: &Path, source: &str) -> Result<Scenario, ScenarioError> {
    let mut problems = diagnostics::Collector::new(path, source);
    let (document, syntax_errors) = DeTable::parse_recoverable(source);
    for error in &syntax_errors {
        problems.at(
            error.span().unwrap_or(0..0),
            "",
            format!("TOML syntax: {}", error.message().trim()),
        );
    }
    if !syntax_errors.is_empty() {
        return problems.finish(unreachable_scenario());
    }

    let mut unknown: Vec<Vec<Segment>> = Vec::new();
    let deserializer = toml::de::Deserializer::parse(source).map_err(|error| {
        let mut c = diagnostics::Collector::new(path, source);
        c.at(error.span().unwrap_or(0..0), "", error.message().trim().to_string());
        c.finish::<()>(()).unwrap_err()
    })?;
    let raw: Result<raw::RawScenario, _> =
        serde_ignored::deserialize(deserializer, |ignored| unknown.push(segments(&ignored)));
    for path in &unknown {
        report_unknown_key(&mut problems, document.get_ref(), path);
    }
    let raw = match raw {
        Ok(raw) => raw,
        Err(error) => {
            let span = error.span().unwrap_or(0..0);
            let key = key_at(document.get_ref(), span.start).unwrap_or_default();
            problems.at(span, key, error.message().trim().to_string());
            return problems.finish(unreachable_scenario());
        }
    };
    let scenario = validate::validate(&raw, &mut problems);
    problems.finish(scenario)
}

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

fn segments(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
    let mut out = match path {
        serde_ignored::Path::Root => return Vec::new(),
        serde_ignored::Path::Seq { parent, index } => {
            let mut v = segments(parent);
            v.push(Segment::Index(*index));
            v
        }
        serde_ignored::Path::Map { parent, key } => {
            let mut v = segments(parent);
            v.push(Segment::Key(key.clone()));
            v
        }
        serde_ignored::Path::Some { parent }
        | serde_ignored::Path::NewtypeStruct { parent }
        | serde_ignored::Path::NewtypeVariant { parent } => segments(parent),
    };
    // toml's Spanned wrapper shows up as a private key; it is not part of the user's path.
    out.retain(|s| !matches!(s, Segment::Key(k) if k.starts_with("$__")));
    out
}

fn dotted(path: &[Segment]) -> String {
    let mut text = String::new();
    for segment in path {
        match segment {
            Segment::Key(k) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(k);
            }
            Segment::Index(i) => text.push_str(&format!("[{i}]")),
        }
    }
    text
}

fn report_unknown_key(problems: &mut diagnostics::Collector<'_>, document: &DeTable<'_>, path: &[Segment]) {
    let Some((Segment::Key(name), parent)) = path.split_last() else {
        return;
    };
    let table_shape: Vec<&str> = parent
        .iter()
        .filter_map(|s| match s {
            Segment::Key(k) => Some(k.as_str()),
            Segment::Index(_) => None,
        })
        .collect();
    let table_shape = table_shape.join(".");
    let location = if table_shape.is_empty() {
        "at the top level".to_string()
    } else {
        format!("in [{table_shape}]")
    };
    let valid = raw::keys_of(&table_shape)
        .map(|keys| keys.join(", "))
        .unwrap_or_else(|| "none".into());
    let span = key_span(document, path).unwrap_or(0..0);
    problems.at(
        span,
        dotted(path),
        format!("unknown key `{name}` {location}; valid keys: {valid}"),
    );
}

/// Span of the key named by `path` in the parsed document.
fn key_span(table: &DeTable<'_>, path: &[Segment]) -> Option<Range<usize>> {
    let (first, rest) = path.split_first()?;
    let Segment::Key(name) = first else { return None };
    let (key, value) = table.iter().find(|(k, _)| k.get_ref().as_ref() == name.as_str())?;
    if rest.is_empty() {
        return Some(key.span());
    }
    value_key_span(value, rest)
}

fn value_key_span(value: &Spanned<DeValue<'_>>, path: &[Segment]) -> Option<Range<usize>> {
    match (value.get_ref(), path.first()?) {
        (DeValue::Table(table), Segment::Key(_)) => key_span(table, path),
        (DeValue::Array(array), Segment::Index(i)) => {
            let item = array.get(*i)?;
            if path.len() == 1 {
                Some(item.span())
            } else {
                value_key_span(item, &path[1..])
            }
        }
        _ => None,
    }
}

/// The dotted key whose value holds byte `offset`, innermost first. Container spans are not
/// trusted (an array of tables spans only its headers), so every branch is searched.
fn key_at(table: &DeTable<'_>, offset: usize) -> Option<String> {
    fn in_table(table: &DeTable<'_>, offset: usize, path: &mut Vec<Segment>) -> bool {
        table.iter().any(|(key, item)| {
            path.push(Segment::Key(key.get_ref().to_string()));
            let found = key.span().contains(&offset) || in_value(item, offset, path);
            if !found {
                path.pop();
            }
            found
        })
    }
    fn in_value(value: &Spanned<DeValue<'_>>, offset: usize, path: &mut Vec<Segment>) -> bool {
        match value.get_ref() {
            DeValue::Table(table) => in_table(table, offset, path),
            DeValue::Array(array) => array.iter().enumerate().any(|(i, item)| {
                path.push(Segment::Index(i));
                let found = in_value(item, offset, path);
                if !found {
                    path.pop();
                }
                found
            }),
            _ => value.span().contains(&offset),
        }
    }
    let mut path = Vec::new();
    in_table(table, offset, &mut path).then(|| dotted(&path))
}

fn unreachable_scenario() -> Scenario {
    // Returned only together with problems, so it is never run; validation of an empty raw
    // scenario gives a well-formed placeholder.
    let mut scratch = diagnostics::Collector::new(Path::new(""), "");
    validate::validate(&raw::RawScenario::default(), &mut scratch)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<Problem> {
        parse(Path::new("t.toml"), text).unwrap_err().problems
    }

    const GOOD: &str = r#"
name = "ok"
[[rooms]]
name = "room_a"
  [[rooms.clients]]
  pattern = "cycle"
  count = 2
  rate = 10
  up = "1s"
"#;

    #[test]
    fn a_good_file_parses() {
        let s = parse(Path::new("t.toml"), GOOD).unwrap();
        assert_eq!(s.rooms[0].clients[0].count, 2);
        assert!(matches!(s.rooms[0].clients[0].pattern, Pattern::Cycle { .. }));
        assert_eq!(s.server.embedded().unwrap().capacity, 100);
    }

    #[test]
    fn every_unknown_key_is_reported_with_its_position() {
        let text = GOOD
            .replace("count = 2", "cuont = 2")
            .replace("name = \"ok\"", "name = \"ok\"\nspeed = 1");
        let found = problems(&text);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].key, "speed");
        assert_eq!((found[0].line, found[0].column), (3, 1));
        assert!(
            found[0].message.contains("valid keys: name, description"),
            "{}",
            found[0].message
        );
        assert_eq!(found[1].key, "rooms[0].clients[0].cuont");
        assert!(found[1].message.contains("count"), "{}", found[1].message);
    }

    #[test]
    fn all_value_problems_are_reported_at_once() {
        let text = GOOD
            .replace("rate = 10", "rate = -1")
            .replace("up = \"1s\"", "up = \"soon\"\nhold = \"1s\"");
        let found = problems(&text);
        let keys: Vec<_> = found.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "rooms[0].clients[0].rate",
                "rooms[0].clients[0].up",
                "rooms[0].clients[0].hold"
            ],
            "{found:?}"
        );
        assert_eq!(found[0].line, 8);
        assert_eq!(found[0].column, 10);
    }

    #[test]
    fn type_errors_name_the_key() {
        let found = problems(&GOOD.replace("count = 2", "count = \"two\""));
        assert_eq!(found[0].key, "rooms[0].clients[0].count", "{found:?}");
        assert_eq!(found[0].line, 7);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let found = problems("name = \"x\"\nrooms = [\n");
        assert!(found[0].message.starts_with("TOML syntax"), "{found:?}");
        assert!(found[0].line >= 2);
    }
}
