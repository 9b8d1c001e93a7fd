//! Values that override a scenario file: `--set key=value` on the command line and a few
//! environment variables (the warp report's `.env` names). Precedence: flag, then environment,
//! then file.
//!
//! Overrides are applied to the TOML document itself (toml_edit keeps the rest of the file as
//! written), and the result is validated exactly like a file, so an overridden value gets the same
//! checks and the same messages as one typed into the file.

use std::collections::BTreeMap;

use toml_edit::{DocumentMut, Item, TableLike, Value};

use super::raw;

/// Environment variables that override a scenario key, with the key each one sets: the names the
/// warp report's `.env` used. An environment variable changes the value where the file writes the
/// key and nowhere else; `[*]` means every entry of that list.
pub const ENVIRONMENT: &[(&str, &str)] = &[
    ("HOST", "server.host"),
    ("PORT", "server.port"),
    ("DURATION", "run.duration"),
    ("WORKERS", "http[*].workers"),
    ("TRIES", "run.iterations"),
];

/// One value that overrides the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// Dotted key, e.g. `run.duration` or `rooms[0].clients[1].count`.
    pub key: String,
    /// The value as typed; read as a TOML value when it is one (`10`, `true`, `"x"`), else as text.
    pub value: String,
    /// Where it came from, for messages and the result: `--set`, `DURATION`, `DURATION from .env`.
    pub source: String,
}

impl Override {
    /// Reads one `--set key=value` argument.
    pub fn from_flag(argument: &str) -> Result<Self, OverrideError> {
        let (key, value) = argument
            .split_once('=')
            .ok_or_else(|| OverrideError::NoValue(argument.to_string()))?;
        Ok(Self {
            key: key.trim().to_string(),
            value: value.to_string(),
            source: "--set".into(),
        })
    }

    /// How the override reads in a message: `--set run.duration=5s` or `DURATION=5s (environment)`.
    pub fn describe(&self) -> String {
        if self.source == "--set" {
            format!("--set {}={}", self.key, self.value)
        } else {
            let (variable, place) = match self.source.split_once(' ') {
                Some((variable, place)) => (variable, place),
                None => (self.source.as_str(), "from the environment"),
            };
            format!("{variable}={} ({place})", self.value)
        }
    }
}

/// The overrides from the environment: one per variable of [`ENVIRONMENT`] that is set and not
/// empty; `lookup` gives a variable's value and where it came from.
pub fn from_environment(lookup: impl Fn(&str) -> Option<(String, String)>) -> Vec<Override> {
    ENVIRONMENT
        .iter()
        .filter_map(|(variable, key)| {
            let (value, source) = lookup(variable)?;
            (!value.trim().is_empty()).then(|| Override {
                key: (*key).to_string(),
                value: value.trim().to_string(),
                source,
            })
        })
        .collect()
}

/// Why an override cannot be applied at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OverrideError {
    /// `--set` without `=`.
    #[error("--set {0}: write key=value, e.g. --set run.duration=5s")]
    NoValue(String),
    /// The key is not a scenario key.
    #[error("{origin}: {message}")]
    BadKey {
        /// The override as typed.
        origin: String,
        /// What is wrong and what is valid.
        message: String,
    },
}

/// One step of an override key.
#[derive(Debug, Clone, PartialEq)]
struct Step {
    key: String,
    index: Option<Index>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Index {
    At(usize),
    Every,
}

/// Checks `key` against the scenario's keys and splits it into steps.
fn steps_of(key: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut shape = String::new();
    let parts: Vec<&str> = key.split('.').collect();
    for (position, part) in parts.iter().enumerate() {
        let (name, index) = match part.split_once('[') {
            None => (*part, None),
            Some((name, rest)) => {
                let inner = rest
                    .strip_suffix(']')
                    .ok_or_else(|| format!("`{part}`: write an index as name[0] or name[*]"))?;
                let index = if inner == "*" {
                    Index::Every
                } else {
                    Index::At(
                        inner
                            .parse()
                            .map_err(|_| format!("`{part}`: the index must be a number or *"))?,
                    )
                };
                (name, Some(index))
            }
        };
        let valid = raw::keys_of(&shape).unwrap_or(&[]);
        if !valid.contains(&name) {
            let location = if shape.is_empty() {
                "at the top level".to_string()
            } else {
                format!("in [{shape}]")
            };
            return Err(format!(
                "unknown key `{name}` {location}; valid keys: {}",
                valid.join(", ")
            ));
        }
        let table = if shape.is_empty() {
            name.to_string()
        } else {
            format!("{shape}.{name}")
        };
        let is_list = raw::LIST_TABLES.contains(&table.as_str());
        let is_table = raw::keys_of(&table).is_some();
        let last = position + 1 == parts.len();
        match (is_list, index.is_some()) {
            (false, true) => return Err(format!("`{table}` is not a list; write it without an index")),
            (true, false) => {
                return Err(format!(
                    "`{table}` is a list; name an entry: {table}[0] or every entry: {table}[*]"
                ));
            }
            _ => {}
        }
        if last && is_table {
            let keys = raw::keys_of(&table).unwrap_or(&[]).join(", ");
            return Err(format!("`{table}` is a table; set one of its keys: {keys}"));
        }
        if !last && !is_table {
            return Err(format!("`{table}` is a value, not a table"));
        }
        steps.push(Step {
            key: name.to_string(),
            index,
        });
        shape = table;
    }
    Ok(steps)
}

/// The value an override stands for: a TOML value when the text is one, else the text itself.
fn value_of(text: &str) -> Value {
    text.trim()
        .parse::<Value>()
        .map(|mut value| {
            value.decor_mut().clear();
            value
        })
        .unwrap_or_else(|_| Value::from(text))
}

/// The file's text with `overrides` applied in order (a later one wins), and for each key that was
/// set, the description of the override that set it.
pub fn apply(source: &str, overrides: &[Override]) -> Result<(String, BTreeMap<String, String>), OverrideError> {
    let mut document: DocumentMut = source
        .parse()
        .map_err(|e: toml_edit::TomlError| OverrideError::BadKey {
            origin: "the scenario file".into(),
            message: e.message().to_string(),
        })?;
    let mut set_by = BTreeMap::new();
    for item in overrides {
        let bad = |message: String| OverrideError::BadKey {
            origin: crate::naming::redact_text(&item.describe()),
            message,
        };
        let steps = steps_of(&item.key).map_err(bad)?;
        let mut writer = Writer {
            value: value_of(&item.value),
            // An environment variable changes values the file wrote, never adds keys: WORKERS is
            // the worker count of closed-model workloads, not a new key for open ones, and HOST
            // means nothing to a scenario whose server is external.
            only_where_written: item.source != "--set",
            written: Vec::new(),
        };
        writer
            .set_in(document.as_table_mut(), &steps, String::new())
            .map_err(bad)?;
        for key in writer.written {
            set_by.insert(key, crate::naming::redact_text(&item.describe()));
        }
    }
    Ok((document.to_string(), set_by))
}

/// Writes one override's value wherever its key leads.
struct Writer {
    value: Value,
    only_where_written: bool,
    written: Vec<String>,
}

impl Writer {
    fn set_in(&mut self, table: &mut dyn TableLike, steps: &[Step], prefix: String) -> Result<(), String> {
        let Some((step, rest)) = steps.split_first() else {
            return Ok(());
        };
        let here = if prefix.is_empty() {
            step.key.clone()
        } else {
            format!("{prefix}.{}", step.key)
        };
        if rest.is_empty() {
            if !self.only_where_written || table.get(&step.key).is_some() {
                table.insert(&step.key, Item::Value(self.value.clone()));
                self.written.push(here);
            }
            return Ok(());
        }
        let Some(index) = step.index else {
            if table.get(&step.key).is_none() {
                let mut new = toml_edit::Table::new();
                new.set_implicit(true);
                table.insert(&step.key, Item::Table(new));
            }
            let inner = table
                .get_mut(&step.key)
                .and_then(Item::as_table_like_mut)
                .ok_or_else(|| format!("`{here}` is not a table in the file"))?;
            return self.set_in(inner, rest, here);
        };
        let entries = list_entries(table.get_mut(&step.key));
        let count = entries.len();
        let chosen: Vec<(usize, &mut dyn TableLike)> = match index {
            Index::Every => entries.into_iter().enumerate().collect(),
            Index::At(i) => {
                let Some(entry) = entries.into_iter().nth(i) else {
                    return Err(match count {
                        0 => format!("the scenario has no `{here}` entries"),
                        1 => format!("`{here}` has 1 entry: use {here}[0]"),
                        n => format!("`{here}` has {n} entries: use {here}[0] to {here}[{}]", n - 1),
                    });
                };
                vec![(i, entry)]
            }
        };
        for (i, entry) in chosen {
            self.set_in(entry, rest, format!("{here}[{i}]"))?;
        }
        Ok(())
    }
}

/// The tables of a list written either as `[[name]]` or as an inline array of inline tables.
fn list_entries(item: Option<&mut Item>) -> Vec<&mut dyn TableLike> {
    match item {
        Some(Item::ArrayOfTables(tables)) => tables.iter_mut().map(|t| t as &mut dyn TableLike).collect(),
        Some(Item::Value(Value::Array(array))) => array
            .iter_mut()
            .filter_map(|v| v.as_inline_table_mut().map(|t| t as &mut dyn TableLike))
            .collect(),
        _ => Vec::new(),
    }
}

/// Where every scenario key's value came from: the override that set it, `file`, or `default`
/// when neither the file nor an override names it. `text` is the file with overrides applied.
pub fn provenance(text: &str, set_by: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let document: toml::Table = toml::from_str(text).unwrap_or_default();
    walk(Some(&document), "", "", set_by, &mut out);
    out
}

fn walk(
    table: Option<&toml::Table>,
    shape: &str,
    prefix: &str,
    set_by: &BTreeMap<String, String>,
    out: &mut BTreeMap<String, String>,
) {
    for key in raw::keys_of(shape).unwrap_or(&[]) {
        let child_shape = if shape.is_empty() {
            key.to_string()
        } else {
            format!("{shape}.{key}")
        };
        let path = if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        };
        let value = table.and_then(|t| t.get(*key));
        if raw::LIST_TABLES.contains(&child_shape.as_str()) {
            let entries = value.and_then(toml::Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
            for (i, entry) in entries.iter().enumerate() {
                walk(entry.as_table(), &child_shape, &format!("{path}[{i}]"), set_by, out);
            }
        } else if raw::keys_of(&child_shape).is_some() {
            walk(value.and_then(toml::Value::as_table), &child_shape, &path, set_by, out);
        } else {
            let source = match (set_by.get(&path), value) {
                (Some(by), _) => by.clone(),
                (None, Some(_)) => "file".into(),
                (None, None) => "default".into(),
            };
            out.insert(path, source);
        }
    }
}

/// True when a problem reported for `problem_key` is about the value `set_key` set.
pub fn concerns(problem_key: &str, set_key: &str) -> bool {
    problem_key == set_key
        || problem_key.starts_with(&format!("{set_key}."))
        || problem_key.starts_with(&format!("{set_key}["))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"name = "x"
# a comment that stays
[[rooms]]
name = "a"
  [[rooms.clients]]
  count = 2
[[rooms]]
name = "b"
clients = [{ count = 3 }]
"#;

    fn set(key: &str, value: &str) -> Override {
        Override::from_flag(&format!("{key}={value}")).unwrap()
    }

    #[test]
    fn values_land_in_tables_and_lists() {
        let (text, by) = apply(
            FILE,
            &[
                set("run.duration", "5s"),
                set("rooms[*].clients[0].count", "7"),
                set("run.iterations", "2"),
            ],
        )
        .unwrap();
        let doc: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(doc["run"]["duration"].as_str(), Some("5s"));
        assert_eq!(doc["run"]["iterations"].as_integer(), Some(2));
        assert_eq!(doc["rooms"][0]["clients"][0]["count"].as_integer(), Some(7));
        assert_eq!(doc["rooms"][1]["clients"][0]["count"].as_integer(), Some(7));
        assert!(text.contains("# a comment that stays"));
        assert_eq!(by["rooms[1].clients[0].count"], "--set rooms[*].clients[0].count=7");
        let sources = provenance(&text, &by);
        assert_eq!(sources["name"], "file");
        assert_eq!(sources["run.duration"], "--set run.duration=5s");
        assert_eq!(sources["run.warmup"], "default");
        assert_eq!(sources["rooms[1].name"], "file");
        assert_eq!(sources["server.faults.drop_one_in"], "default");
    }

    #[test]
    fn later_overrides_win() {
        let mut env = set("run.duration", "9s");
        env.source = "DURATION".into();
        let (text, by) = apply(FILE, &[env, set("run.duration", "2s")]).unwrap();
        assert!(text.contains("duration = \"2s\""), "{text}");
        assert_eq!(by["run.duration"], "--set run.duration=2s");
    }

    #[test]
    fn bad_keys_name_the_key_and_the_valid_ones() {
        let error = apply(FILE, &[set("run.duratoin", "5s")]).unwrap_err().to_string();
        assert!(
            error.starts_with("--set run.duratoin=5s: unknown key `duratoin` in [run]"),
            "{error}"
        );
        assert!(error.contains("valid keys: duration, iterations"), "{error}");
        let error = apply(FILE, &[set("rooms[5].name", "z")]).unwrap_err().to_string();
        assert!(
            error.contains("`rooms` has 2 entries: use rooms[0] to rooms[1]"),
            "{error}"
        );
        let error = apply(FILE, &[set("rooms.name", "z")]).unwrap_err().to_string();
        assert!(error.contains("is a list"), "{error}");
        let error = apply(FILE, &[set("run", "z")]).unwrap_err().to_string();
        assert!(
            error.contains("`run` is a table; set one of its keys: duration"),
            "{error}"
        );
        assert_eq!(
            Override::from_flag("run.duration").unwrap_err(),
            OverrideError::NoValue("run.duration".into())
        );
    }

    #[test]
    fn environment_values_change_only_what_the_file_wrote() {
        let mut env = set("rooms[*].clients[0].rate", "5");
        env.source = "RATE".into();
        let (text, by) = apply(&FILE.replace("count = 2", "count = 2\n  rate = 9"), &[env]).unwrap();
        let doc: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(doc["rooms"][0]["clients"][0]["rate"].as_integer(), Some(5));
        assert!(doc["rooms"][1]["clients"][0].get("rate").is_none(), "{text}");
        assert_eq!(by.len(), 1, "{by:?}");
        let (text, _) = apply(FILE, &[set("rooms[*].clients[0].rate", "5")]).unwrap();
        let doc: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(
            doc["rooms"][1]["clients"][0]["rate"].as_integer(),
            Some(5),
            "a flag sets it everywhere"
        );
    }

    #[test]
    fn environment_values_are_labelled() {
        let found =
            from_environment(|name| (name == "TRIES").then(|| ("4".to_string(), "TRIES from .env".to_string())));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].key, "run.iterations");
        assert_eq!(found[0].describe(), "TRIES=4 (from .env)");
    }
}
