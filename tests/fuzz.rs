//! Fuzzing on stable Rust: seeded random and mutated input to every parser of outside text, in
//! normal `cargo test`. Each target must answer (a value or an error naming the file) and never
//! panic; a hang shows as a test that does not end.
//!
//! The seed is fixed (`FUZZ_SEED`, default [`SEED`]) so a failure reproduces; `FUZZ_CASES` sets
//! the case count of every target for long local runs (CI uses the defaults below). A failing
//! case is printed whole.
//!
//! Targets: the scenario parser over mutated shipped scenarios, `--set` over random keys and
//! values, the envelope decoder, and `diff` and `baseline` over mutated results and baselines.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use leakrun::envelope::{Envelope, MAGIC};
use leakrun::scenario::{self, LoadError, Override};

/// The default seed.
const SEED: u64 = 0x1ea4_2026_0019;

/// The seed of this run.
fn seed() -> u64 {
    std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED)
}

/// `FUZZ_CASES` if set, else `default`.
fn cases(default: usize) -> usize {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Every shipped scenario file, as text.
fn corpus() -> Vec<String> {
    let mut files: Vec<PathBuf> = glob::glob("scenarios/**/*.toml").unwrap().flatten().collect();
    files.sort();
    let texts: Vec<String> = files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
    assert!(texts.len() >= 5, "the shipped scenarios are the corpus");
    texts
}

/// Pieces of TOML and of values the validators care about, to splice in.
const TOKENS: &[&str] = &[
    "=",
    "[",
    "]",
    "[[",
    "]]",
    "\"",
    "'",
    "\n",
    ".",
    ",",
    "{",
    "}",
    "#",
    "\\",
    "\"\"\"",
    "0",
    "-1",
    "1e-300",
    "1e308",
    "nan",
    "inf",
    "-inf",
    "9223372036854775807",
    "18446744073709551616",
    "0.0000001",
    "true",
    "\"1ms\"",
    "\"0s\"",
    "\"99999h\"",
    "\"1 fortnight\"",
    "\"10KiB\"",
    "\"16EiB\"",
    "\"-5MiB\"",
    "[[rooms]]",
    "[[rooms.clients]]",
    "[[http]]",
    "[run]",
    "[server]",
    "[backend]",
    "[expect]",
    "[thresholds]",
    "[server.faults]",
    "rate",
    "count",
    "iterations",
    "duration",
    "payload",
    "pattern",
    "kind",
    "url",
    "\"redis://evil.example#@127.0.0.1/\"",
    "\"ws://127.0.0.1:1/{room}\"",
    "\"localhost\"",
    "\"::1\"",
    "\"0.0.0.0\"",
    "target",
    "\"external\"",
    "pid",
    "name",
    "\"a/b\"",
    "\"..\"",
    "\u{0}",
    "\u{feff}",
    "é",
    "\u{202e}",
    "𝕏",
];

/// `text` changed by one to four random edits.
fn mutate(rng: &mut fastrand::Rng, text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..rng.usize(1..=4) {
        let at = rng.usize(0..=bytes.len());
        match rng.u8(0..7) {
            0 if !bytes.is_empty() => {
                let i = rng.usize(0..bytes.len());
                bytes[i] = rng.u8(..);
            }
            1 => {
                let token = TOKENS[rng.usize(0..TOKENS.len())];
                bytes.splice(at..at, token.bytes());
            }
            2 if at < bytes.len() => {
                let end = (at + rng.usize(1..64)).min(bytes.len());
                bytes.drain(at..end);
            }
            3 => bytes.truncate(at),
            4 if at < bytes.len() => {
                let end = (at + rng.usize(1..200)).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                let to = rng.usize(0..=bytes.len());
                bytes.splice(to..to, copy);
            }
            5 => {
                // Replace a number-looking run with an extreme one.
                let token = ["0", "-1", "1e-300", "1e308", "99999999999999999999", "nan"][rng.usize(0..6)];
                let start = bytes[at..].iter().position(u8::is_ascii_digit).map(|p| at + p);
                if let Some(start) = start {
                    let end = bytes[start..]
                        .iter()
                        .position(|b| !b.is_ascii_digit())
                        .map_or(bytes.len(), |p| start + p);
                    bytes.splice(start..end, token.bytes());
                }
            }
            _ => {
                let junk: Vec<u8> = (0..rng.usize(1..8)).map(|_| rng.u8(..)).collect();
                bytes.splice(at..at, junk);
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Runs `case`, and on a panic fails the test showing `input`.
fn no_panic<T>(target: &str, n: usize, input: &dyn std::fmt::Debug, case: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(case)) {
        Ok(value) => value,
        Err(_) => panic!("{target}: case {n} (seed {}) panicked on:\n{input:?}", seed()),
    }
}

#[test]
fn the_scenario_parser_answers_every_mutated_scenario() {
    let corpus = corpus();
    let mut rng = fastrand::Rng::with_seed(seed());
    let path = Path::new("fuzz/case.toml");
    let (mut accepted, mut refused) = (0usize, 0usize);
    let started = std::time::Instant::now();
    let count = cases(3000);
    for n in 0..count {
        let base = &corpus[rng.usize(0..corpus.len())];
        // Sometimes stack mutations, sometimes start from random bytes.
        let text = match rng.u8(0..10) {
            0 => (0..rng.usize(0..400)).map(|_| rng.char(..)).collect(),
            1 => {
                let once = mutate(&mut rng, base);
                let twice = mutate(&mut rng, &once);
                mutate(&mut rng, &twice)
            }
            _ => mutate(&mut rng, base),
        };
        match no_panic("parser", n, &text, || scenario::parse(path, &text)) {
            Ok(_) => accepted += 1,
            Err(error) => {
                let shown = no_panic("parser error display", n, &text, || error.to_string());
                assert!(
                    shown.contains("fuzz/case.toml"),
                    "case {n}: the error names no file:\n{shown}\n{text:?}"
                );
                refused += 1;
            }
        }
    }
    eprintln!(
        "parser: {count} cases (seed {:#x}) in {:.1?}: {accepted} accepted, {refused} refused",
        seed(),
        started.elapsed()
    );
    assert!(
        accepted > 0 && refused > 0,
        "the mutations both keep and break scenarios"
    );
}

#[test]
fn set_answers_every_random_key_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tiny.toml");
    std::fs::write(
        &file,
        "name = \"tiny\"\n[[rooms]]\nname = \"a\"\n  [[rooms.clients]]\n  count = 2\n[[http]]\npath = \"/\"\n",
    )
    .unwrap();
    let keys = [
        "run.duration",
        "run.iterations",
        "rooms[0].clients[0].rate",
        "rooms[0].clients[0].count",
        "rooms[9].name",
        "rooms[-1].name",
        "rooms[0].clients",
        "backend.url",
        "backend.kind",
        "server.faults.drop_every",
        "http[0].rate",
        "http[0].path",
        "thresholds.delivery.p99",
        "expect.gaps",
        "name",
        "",
        ".",
        "[0]",
        "rooms[18446744073709551616].name",
        "a.b.c.d.e",
        "server.env.X",
    ];
    let mut rng = fastrand::Rng::with_seed(seed() ^ 1);
    let count = cases(2000);
    for n in 0..count {
        let key = match rng.u8(0..4) {
            0 => {
                let key = keys[rng.usize(0..keys.len())];
                mutate(&mut rng, key)
            }
            _ => keys[rng.usize(0..keys.len())].to_string(),
        };
        let value = match rng.u8(0..3) {
            0 => TOKENS[rng.usize(0..TOKENS.len())].to_string(),
            1 => {
                let token = TOKENS[rng.usize(0..TOKENS.len())];
                mutate(&mut rng, token)
            }
            _ => (0..rng.usize(0..20)).map(|_| rng.char(..)).collect(),
        };
        let flag = match rng.u8(0..10) {
            0 => key.clone(),
            _ => format!("{key}={value}"),
        };
        let Ok(one) = no_panic("--set", n, &flag, || Override::from_flag(&flag)) else {
            continue;
        };
        match no_panic("--set", n, &flag, || scenario::load_with(&file, &[one])) {
            Ok(_) => {}
            Err(LoadError::Invalid(problems)) => {
                let shown = problems.to_string();
                assert!(shown.contains("tiny.toml"), "case {n}: {flag:?}: {shown}");
            }
            Err(other) => {
                let _ = other.to_string();
            }
        }
    }
}

#[test]
fn the_envelope_decoder_answers_any_frame() {
    let mut rng = fastrand::Rng::with_seed(seed() ^ 2);
    let mut valid = String::new();
    let count = cases(20_000);
    let mut found = 0usize;
    for n in 0..count {
        let envelope = Envelope {
            nonce: rng.u64(..),
            sender: rng.u64(..),
            seq: rng.u64(..),
            room: ["a", "room_1", "r-2.x"][rng.usize(0..3)],
            intended_us: rng.u64(..),
        };
        envelope.encode_into(rng.usize(0..200), &mut valid);
        let frame = match rng.u8(0..5) {
            0 => (0..rng.usize(0..300)).map(|_| rng.char(..)).collect(),
            1 => format!("{MAGIC}{}", mutate(&mut rng, &valid[MAGIC.len()..])),
            2 => format!(
                "{{\"message\": \"{valid}\", \"again\": \"{}\"}}",
                mutate(&mut rng, &valid)
            ),
            3 => MAGIC.repeat(rng.usize(1..50)) + &"|".repeat(rng.usize(0..10)),
            _ => mutate(&mut rng, &valid),
        };
        let seen = no_panic("envelope", n, &frame, || Envelope::find_all(&frame).count());
        found += seen;
        if rng.u8(0..4) == 0 {
            // An untouched envelope inside any text is found again, exactly.
            let wrapped = format!("{}{valid}", frame.replace(MAGIC, ""));
            let last = Envelope::find_all(&wrapped).last();
            assert_eq!(last, Some(envelope), "case {n}: {wrapped:?}");
        }
    }
    assert!(found > 0);
}

/// A real result file of a one-second run, made once.
fn real_result(dir: &Path) -> PathBuf {
    let scenario = dir.join("tiny.toml");
    std::fs::write(
        &scenario,
        "name = \"tiny\"\n[[rooms]]\nname = \"a\"\n  [[rooms.clients]]\n  count = 2\n  rate = 20\n[run]\nduration = \"1s\"\nsettle = \"2s\"\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_leakrun"))
        .args([
            "run",
            scenario.to_str().unwrap(),
            "--no-progress",
            "--out",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    dir.join("tiny.json")
}

/// `value` with one random part replaced, removed or made extreme.
fn mutate_json(rng: &mut fastrand::Rng, value: &mut serde_json::Value) {
    use serde_json::Value;
    let replacement = |rng: &mut fastrand::Rng| match rng.u8(0..9) {
        0 => Value::Null,
        1 => Value::from(-1),
        2 => Value::from(u64::MAX),
        3 => Value::from(1e308),
        4 => Value::from("../../x"),
        5 => Value::from(vec![Value::Null; rng.usize(0..3)]),
        6 => serde_json::json!({}),
        7 => Value::from(true),
        _ => Value::from(""),
    };
    // Walk down a random path, then change what is there.
    let mut path = Vec::new();
    let mut at = &*value;
    loop {
        let step = match at {
            Value::Object(map) if !map.is_empty() && rng.u8(0..4) != 0 => {
                let key = map.keys().nth(rng.usize(0..map.len())).cloned().unwrap();
                let next = &map[&key];
                path.push(Err(key));
                next
            }
            Value::Array(items) if !items.is_empty() && rng.u8(0..4) != 0 => {
                let i = rng.usize(0..items.len());
                path.push(Ok(i));
                &items[i]
            }
            _ => break,
        };
        at = step;
    }
    let remove = rng.u8(0..8) == 0;
    let mut target = value;
    let last = path.pop();
    for step in path {
        target = match step {
            Ok(i) => &mut target[i],
            Err(key) => &mut target[key.as_str()],
        };
    }
    match (last, remove) {
        (Some(Err(key)), true) => {
            target.as_object_mut().unwrap().remove(&key);
        }
        (Some(Ok(i)), _) => target[i] = replacement(rng),
        (Some(Err(key)), false) => target[key.as_str()] = replacement(rng),
        (None, _) => *target = replacement(rng),
    }
}

#[test]
fn diff_and_baseline_answer_every_mutated_result() {
    let dir = tempfile::tempdir().unwrap();
    let good_path = real_result(dir.path());
    let good: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&good_path).unwrap()).unwrap();
    let mut baselines: Vec<serde_json::Value> = glob::glob("results/baseline/*.json")
        .unwrap()
        .flatten()
        .map(|f| serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap())
        .collect();
    baselines.push(good.clone());
    let mut rng = fastrand::Rng::with_seed(seed() ^ 3);
    let case = dir.path().join("case.json");
    let out = dir.path().join("baselines");
    let count = cases(1500);
    let mut compared = 0usize;
    for n in 0..count {
        let mut value = if rng.bool() {
            good.clone()
        } else {
            baselines[rng.usize(0..baselines.len())].clone()
        };
        for _ in 0..rng.usize(1..4) {
            mutate_json(&mut rng, &mut value);
        }
        let mut text = serde_json::to_string(&value).unwrap();
        if rng.u8(0..5) == 0 {
            text = mutate(&mut rng, &text);
        }
        std::fs::write(&case, &text).unwrap();
        let diffed = no_panic("diff", n, &text, || {
            let one = leakrun::diff::compare_files(&good_path, &case, 0.1);
            let two = leakrun::diff::compare_files(&case, &good_path, rng.f64() * 10.0);
            for diff in [&one, &two].into_iter().flatten() {
                let _ = (
                    leakrun::diff::render_text(diff),
                    leakrun::diff::render_markdown(diff),
                    diff.regressed(),
                );
            }
            one.is_ok() || two.is_ok()
        });
        compared += usize::from(diffed);
        // The diff report refuses what diff refuses, and draws what it compares (every tenth
        // case: a drawing takes a while).
        if n % 10 == 0 {
            no_panic("diff report", n, &text, || {
                let report = leakrun::report::compare::read(&good_path, &case, 0.1);
                let diff = leakrun::diff::compare_files(&good_path, &case, 0.1);
                assert_eq!(report.is_ok(), diff.is_ok(), "case {n}: report and diff disagree");
                if let Ok(compared) = report {
                    let html = leakrun::report::compare::render(&compared).expect("a diff report draws");
                    assert!(!html.contains("<script"), "case {n}");
                }
            });
        }
        let made = no_panic("baseline", n, &text, || {
            leakrun::diff::write_baselines(std::slice::from_ref(&case), &out)
        });
        if let Ok(written) = made {
            for path in written {
                assert!(
                    path.starts_with(&out),
                    "case {n}: a baseline escaped --out: {}",
                    path.display()
                );
            }
        }
    }
    assert!(compared > 0, "some mutated results still compare");
    // Nothing was written beside the scratch folder's own files.
    let stray: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            ![
                "tiny.toml",
                "tiny.json",
                "tiny.html",
                "case.json",
                "baselines",
                ".tiny.lock",
            ]
            .contains(&n.as_str())
        })
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}
