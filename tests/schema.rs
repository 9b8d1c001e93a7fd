//! `leakrun schema` is what editors check scenario files with, so it must accept every scenario the
//! repository ships, refuse what the parser refuses (an unknown key, a wrong type, a value that is
//! not one of the choices), name the keys the parser reads, and match the committed
//! `scenario.schema.json` that the docs point taplo at.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use leakrun::scenario::{BackendKind, HttpMethod, raw};
use serde_json::Value;

/// The schema as the binary prints it.
fn schema() -> Value {
    let output = common::leakrun(&["schema"]);
    assert!(output.status.success(), "leakrun schema: {output:?}");
    serde_json::from_slice(&output.stdout).expect("leakrun schema prints JSON")
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&schema()).expect("the schema is a valid JSON Schema")
}

/// A scenario's TOML text as the JSON document an editor validates.
fn as_json(text: &str) -> Value {
    let table: toml::Table = toml::from_str(text).expect("TOML");
    serde_json::to_value(table).expect("TOML as JSON")
}

/// Every `.toml` beneath `dir`.
fn tomls(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            found.extend(tomls(&path));
        } else if path.extension().is_some_and(|e| e == "toml") {
            found.push(path);
        }
    }
    found
}

/// Why the schema refuses `document`, one line per error (empty when it accepts it).
fn errors(validator: &jsonschema::Validator, document: &Value) -> Vec<String> {
    validator
        .iter_errors(document)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn every_scenario_and_example_in_the_repository_validates() {
    let validator = validator();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files: Vec<PathBuf> = ["scenarios", "examples"]
        .iter()
        .flat_map(|dir| tomls(&root.join(dir)))
        .collect();
    assert!(files.len() >= 10, "found only {} scenario files", files.len());
    let mut refused = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read scenario");
        let found = errors(&validator, &as_json(&text));
        if !found.is_empty() {
            refused.push(format!("{}: {}", file.display(), found.join("; ")));
        }
    }
    assert!(
        refused.is_empty(),
        "the schema refuses scenarios the parser accepts:\n{}",
        refused.join("\n")
    );
}

/// A scenario both the parser and the schema accept, to break one key at a time.
const GOOD: &str = r#"
name = "probe"
[server]
capacity = 1000
[backend]
kind = "memory"
[[rooms]]
name = "room_a"
  [[rooms.clients]]
  pattern = "cycle"
  count = 2
  rate = 10
  payload = "1KiB"
  up = "1s"
  close = "abrupt"
[[http]]
path = "/"
workers = 2
[run]
duration = "2s"
iterations = 1
[expect]
gaps = false
[thresholds]
delivery_p99 = "500ms"
heap_growth = 1024
"#;

#[test]
fn what_the_parser_refuses_the_schema_refuses() {
    let validator = validator();
    let path = Path::new("probe.toml");
    leakrun::scenario::parse(path, GOOD).expect("the control scenario parses");
    assert_eq!(
        errors(&validator, &as_json(GOOD)),
        Vec::<String>::new(),
        "the control validates"
    );
    let broken = [
        (
            "an unknown key",
            "  close = \"abrupt\"",
            "  close = \"abrupt\"\n  colour = \"red\"",
        ),
        ("an unknown table", "[run]", "[sever]\nport = 1\n[run]"),
        ("a string for an integer", "iterations = 1", "iterations = \"two\""),
        ("an integer for a duration", "duration = \"2s\"", "duration = 2"),
        ("a duration without a unit", "duration = \"2s\"", "duration = \"2\""),
        (
            "a pattern that does not exist",
            "pattern = \"cycle\"",
            "pattern = \"cycles\"",
        ),
        (
            "a backend that does not exist",
            "kind = \"memory\"",
            "kind = \"postgres\"",
        ),
        ("a boolean for a size", "heap_growth = 1024", "heap_growth = true"),
        ("a room without a name", "name = \"room_a\"", ""),
    ];
    for (what, from, to) in broken {
        assert!(GOOD.contains(from), "{what}: `{from}` is not in the control");
        let text = GOOD.replacen(from, to, 1);
        assert!(
            leakrun::scenario::parse(path, &text).is_err(),
            "{what}: the parser accepts it, so the schema need not refuse it:\n{text}"
        );
        assert!(
            !validator.is_valid(&as_json(&text)),
            "{what}: the parser refuses it, the schema accepts it:\n{text}"
        );
    }
}

/// The property names of each TOML table in the schema, by table path (`rooms.clients`).
fn schema_tables(schema: &Value) -> Vec<(String, BTreeSet<String>)> {
    fn resolve<'a>(schema: &'a Value, node: &'a Value) -> &'a Value {
        let node = node.get("items").unwrap_or(node);
        match node.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let name = reference.trim_start_matches("#/definitions/");
                &schema["definitions"][name]
            }
            None => node,
        }
    }
    fn walk(schema: &Value, node: &Value, path: &str, out: &mut Vec<(String, BTreeSet<String>)>) {
        let Some(properties) = node.get("properties").and_then(Value::as_object) else {
            return;
        };
        out.push((path.to_string(), properties.keys().cloned().collect()));
        for (key, property) in properties {
            let child = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            walk(schema, resolve(schema, property), &child, out);
        }
    }
    let mut out = Vec::new();
    walk(schema, schema, "", &mut out);
    out
}

#[test]
fn the_schema_names_the_keys_the_parser_reads() {
    let tables = schema_tables(&schema());
    assert!(tables.len() >= 10, "only {} tables in the schema", tables.len());
    for (path, keys) in &tables {
        let parser: BTreeSet<String> = raw::keys_of(path)
            .unwrap_or_else(|| panic!("the schema has a table `{path}` the parser does not know"))
            .iter()
            .map(|k| k.to_string())
            .collect();
        assert_eq!(
            keys, &parser,
            "keys of `{path}`: schema (left) and parser (right) differ"
        );
    }
}

#[test]
fn the_schema_offers_the_choices_the_parser_takes() {
    let schema = schema();
    let choices = |table: &str, key: &str| -> Vec<String> {
        schema["definitions"][table]["properties"][key]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{table}.{key} has no enum"))
            .iter()
            .map(|v| v.as_str().expect("a string choice").to_string())
            .collect()
    };
    let kinds: Vec<String> = BackendKind::ALL.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(choices("RawBackend", "kind"), kinds);
    let methods: Vec<String> = HttpMethod::ALL.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(choices("RawHttp", "method"), methods);
}

#[test]
fn the_committed_schema_is_what_leakrun_prints() {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenario.schema.json");
    let committed = std::fs::read_to_string(&committed).expect("scenario.schema.json is committed");
    let printed = common::leakrun(&["schema"]);
    assert!(
        committed == String::from_utf8_lossy(&printed.stdout),
        "scenario.schema.json is stale: run `cargo run -- schema > scenario.schema.json`"
    );
}
