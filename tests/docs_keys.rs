//! The keys reference (docs/scenario-keys.md) is what a person writes a scenario from, so it must
//! not drift from the parser: every key the parser accepts is listed there under its table, and
//! every key listed there is one the parser accepts. The parser's list is `raw::keys_of`, the one
//! its "unknown key" message and `--set` use. The TOML examples in the README and in docs/ are held
//! to the same list, their commented-out alternatives (`# drain = "5s"`) included.

use std::collections::BTreeSet;
use std::path::Path;

use leakrun::scenario::raw;

const REFERENCE: &str = "docs/scenario-keys.md";

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// Every (table path, key) the parser accepts, tables found by following keys that are tables.
fn parser_keys() -> BTreeSet<(String, String)> {
    fn walk(path: &str, out: &mut BTreeSet<(String, String)>) {
        for key in raw::keys_of(path).unwrap_or_else(|| panic!("no table `{path}`")) {
            out.insert((path.to_string(), key.to_string()));
            let child = if path.is_empty() {
                key.to_string()
            } else {
                format!("{path}.{key}")
            };
            if raw::keys_of(&child).is_some() {
                walk(&child, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk("", &mut out);
    out
}

/// The table a Markdown heading names: `` `[server]` `` or `` `[[rooms.clients]]` ``, or the top
/// level for "Top level"; `None` for any other heading.
fn heading_table(heading: &str) -> Option<String> {
    let text = heading.trim_start_matches('#').trim();
    if text == "Top level" {
        return Some(String::new());
    }
    let inner = text.strip_prefix('`')?.split('`').next()?;
    let name = inner.trim_start_matches('[').trim_end_matches(']');
    (inner.starts_with('[') && !name.is_empty()).then(|| name.to_string())
}

/// The (table, key) pairs of the reference: under a table's heading, each row whose first cell is
/// one key in backticks. Panics on a key listed twice in one table.
fn documented_keys(text: &str) -> BTreeSet<(String, String)> {
    let mut table = None;
    let mut out = BTreeSet::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        if line.starts_with('#') {
            table = heading_table(line);
            continue;
        }
        let Some(table) = &table else { continue };
        let Some(first) = line.strip_prefix('|').and_then(|rest| rest.split('|').next()) else {
            continue;
        };
        let first = first.trim();
        let Some(key) = first.strip_prefix('`').and_then(|k| k.strip_suffix('`')) else {
            continue;
        };
        assert!(
            !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{REFERENCE}: `{first}` under `{table}` is not one key in backticks"
        );
        assert!(
            out.insert((table.clone(), key.to_string())),
            "{REFERENCE}: `{table}.{key}` is listed twice"
        );
    }
    out
}

fn dotted((table, key): &(String, String)) -> String {
    if table.is_empty() {
        key.clone()
    } else {
        format!("{table}.{key}")
    }
}

#[test]
fn the_reference_lists_exactly_the_keys_the_parser_accepts() {
    let parser = parser_keys();
    let documented = documented_keys(&read(REFERENCE));
    assert!(parser.len() > 90, "the parser accepts only {} keys?", parser.len());
    let undocumented: Vec<String> = parser.difference(&documented).map(dotted).collect();
    let unknown: Vec<String> = documented.difference(&parser).map(dotted).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "keys the parser accepts that {REFERENCE} does not list: {undocumented:?}\n\
         keys {REFERENCE} lists that the parser does not accept: {unknown:?}"
    );
}

#[test]
fn the_reference_reader_finds_tables_and_keys() {
    let text = "# Scenario keys\n| `name` | not a table yet |\n## Top level\n| key | what |\n|---|---|\n| `name` | x |\n\
                ## `[[rooms.clients]]`\n```toml\n| `ignored` |\n```\n| `count` | n |\n| `up`, `down` | no |\n";
    let result = std::panic::catch_unwind(|| documented_keys(text));
    assert!(result.is_err(), "a row naming two keys must be refused");
    let text = "## Top level\n| `name` | x |\n## `[[rooms.clients]]`\n| `count` | n |\n## Other\n| `stray` | s |\n";
    let found: Vec<String> = documented_keys(text).iter().map(dotted).collect();
    assert_eq!(found, ["name", "rooms.clients.count"]);
}

/// The (table, key) pairs a TOML example writes, commented-out lines included: `[table]`,
/// `[[table]]` and `# [table]` set the table, `key =` and `# key =` at a line's start name a key.
fn example_keys(block: &str) -> Vec<(String, String)> {
    let mut table = String::new();
    let mut out = Vec::new();
    for line in block.lines() {
        let line = line.trim_start();
        let line = line
            .strip_prefix('#')
            .map_or(line, |l| l.strip_prefix(' ').unwrap_or(l));
        if let Some(header) = line.strip_prefix('[') {
            if let Some(end) = header.find(']') {
                table = header[..end].trim_matches(|c| c == '[' || c == ']').to_string();
            }
            continue;
        }
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        if !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            out.push((table.clone(), key.to_string()));
        }
    }
    out
}

#[test]
fn the_toml_examples_in_the_docs_use_only_keys_the_parser_accepts() {
    let parser = parser_keys();
    let mut files = vec!["README.md".to_string()];
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs")).expect("docs/") {
        let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            files.push(format!("docs/{name}"));
        }
    }
    let mut checked = 0;
    let mut unknown = Vec::new();
    for file in &files {
        let text = read(file);
        let mut blocks = text.split("```toml\n").skip(1);
        for block in blocks.by_ref() {
            let block = block.split("\n```").next().unwrap_or_default();
            for pair in example_keys(block) {
                checked += 1;
                if !parser.contains(&pair) {
                    unknown.push(format!("{file}: `{}`", dotted(&pair)));
                }
            }
        }
    }
    assert!(checked > 100, "only {checked} keys found in the TOML examples");
    assert!(
        unknown.is_empty(),
        "keys in TOML examples that the parser does not accept:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn the_example_reader_sees_commented_keys_and_tables() {
    let block = "name = \"x\"\n[server]\n# capacity = 1\n# [server.faults]\n# drop_one_in = 2   # every 2nd\n[[rooms]]\n  [[rooms.clients]]\n  count = 2\n# Note: free text = prose\n";
    let found: Vec<String> = example_keys(block).iter().map(dotted).collect();
    assert_eq!(
        found,
        [
            "name",
            "server.capacity",
            "server.faults.drop_one_in",
            "rooms.clients.count"
        ]
    );
}
