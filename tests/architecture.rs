//! The shape of the house, checked: modules form no import cycle, and errors keep their type.
//!
//! A module may use what its ancestors declare (a target file uses the `Target` trait of
//! `target/mod.rs`); every other arrow between two source files must run one way only, so no two
//! modules lean on each other. Errors are typed (`thiserror`) inside the library and `anyhow` at
//! the command line: a `Result<_, String>` is allowed only in the scenario's parsing and in the
//! command line's argument parsing, where the string is the message a user reads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Files where `Result<_, String>` is a parsing helper's message.
const STRING_ERRORS_ALLOWED: [&str; 4] = ["scenario/", "cli/environment.rs", "cli/files.rs", "cli/http_tools.rs"];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are module `a::b`; `src/lib.rs` is the crate root.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The text without `//` comments (doc links would count as uses otherwise).
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path written as `crate::a::b` or `super::a` in `text`, resolved from module `at`, with
/// the names of a brace group (`crate::a::{b, c::d}`) each their own path.
fn paths(text: &str, at: &[String]) -> Vec<Vec<String>> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if !text.is_char_boundary(i) {
            i += 1;
            continue;
        }
        let rest = &text[i..];
        let start = if rest.starts_with("crate::") {
            Some((Vec::new(), "crate::".len()))
        } else if rest.starts_with("super::") {
            Some((at[..at.len().saturating_sub(1)].to_vec(), "super::".len()))
        } else {
            None
        };
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let Some((mut base, skip)) = start.filter(|_| boundary) else {
            i += 1;
            continue;
        };
        let mut j = i + skip;
        loop {
            let ident: String = text[j..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if ident == "super" {
                base.pop();
            } else if !ident.is_empty() {
                base.push(ident.clone());
            }
            j += ident.len();
            if text[j..].starts_with("::{") {
                let close = text[j..].find('}').map_or(text.len(), |c| j + c);
                for name in text[j + 3..close].split(',') {
                    let name: String = name
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                        .collect();
                    let mut path = base.clone();
                    path.extend(
                        name.split("::")
                            .filter(|s| !s.is_empty() && *s != "self")
                            .map(String::from),
                    );
                    found.push(path);
                }
                j = close;
                break;
            }
            if text[j..].starts_with("::") && !ident.is_empty() {
                j += 2;
                continue;
            }
            break;
        }
        found.push(base);
        i = j.max(i + 1);
    }
    found
}

/// The module graph of `src/`: for each module, the other modules its code names, arrows to its
/// own ancestors left out.
fn graph(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> = files
        .iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "main.rs"))
        .map(|f| (module_of(src, f), f.clone()))
        .collect();
    let resolve = |path: &[String]| -> Option<Vec<String>> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| modules.contains_key(p))
    };
    let mut edges = BTreeMap::new();
    for (module, file) in &modules {
        let text = code(&std::fs::read_to_string(file).unwrap());
        let targets: BTreeSet<Vec<String>> = paths(&text, module)
            .iter()
            .filter_map(|p| resolve(p))
            .filter(|t| t != module && !module.starts_with(t))
            .collect();
        edges.insert(module.clone(), targets);
    }
    edges
}

/// A cycle in `edges`, if there is one.
fn cycle(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        state.insert(node.clone(), 1);
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next) {
                Some(1) => {
                    let from = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut found = stack[from..].to_vec();
                    found.push(next.clone());
                    return Some(found);
                }
                Some(_) => {}
                None => {
                    if let Some(found) = visit(next, edges, state, stack) {
                        return Some(found);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if !state.contains_key(node)
            && let Some(found) = visit(node, edges, &mut state, &mut Vec::new())
        {
            return Some(found);
        }
    }
    None
}

fn named(path: &[Vec<String>]) -> String {
    path.iter().map(|m| m.join("::")).collect::<Vec<_>>().join(" -> ")
}

#[test]
fn no_two_modules_import_each_other() {
    let edges = graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(edges.len() > 40, "the source tree was read: {} modules", edges.len());
    if let Some(found) = cycle(&edges) {
        panic!("import cycle: {}", named(&found));
    }
}

#[test]
fn the_cycle_check_finds_a_cycle_between_siblings_and_allows_a_child_using_its_parent() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |file: &str, text: &str| {
        let path = src.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "pub mod a;\npub mod b;\n");
    write("a/mod.rs", "pub mod child;\nuse child::Thing;\npub trait Seam {}\n");
    write("a/child.rs", "use super::Seam; // a child names its parent: allowed\n");
    write("b.rs", "use crate::a::{child::Thing, Seam};\n");
    assert_eq!(cycle(&graph(src)), None);
    write("a/child.rs", "use super::Seam;\nfn f() { crate::b::g() }\n");
    let found = cycle(&graph(src)).expect("a::child -> b -> a::child");
    assert!(
        named(&found).contains("a::child") && named(&found).contains("b"),
        "{}",
        named(&found)
    );
}

#[test]
fn errors_are_typed_outside_parsing_helpers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut offenders = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        if STRING_ERRORS_ALLOWED
            .iter()
            .any(|allowed| relative.starts_with(allowed))
        {
            continue;
        }
        let text = code(&std::fs::read_to_string(file).unwrap());
        for (n, line) in text.lines().enumerate() {
            let compact: String = line.split_whitespace().collect();
            if compact.contains("Result<") && compact.contains(",String>") {
                offenders.push(format!("src/{relative}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "Result<_, String> outside parsing helpers:\n{}",
        offenders.join("\n")
    );
}
