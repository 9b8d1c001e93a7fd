//! `--set key=value` and the environment over a scenario file: flag beats environment beats file,
//! the result says where each value came from, and a bad key or value exits 2 naming it.

mod common;

use common::*;

const MINIMAL: &str = r#"name = "tiny"
[[rooms]]
name = "room"
  [[rooms.clients]]
  pattern = "steady"
  count = 2
  rate = 20
[run]
duration = "30s"
iterations = 1
"#;

#[test]
fn a_flag_beats_the_environment_which_beats_the_file() {
    let dir = scratch();
    let path = scenario(dir.path(), "tiny", MINIMAL);
    std::fs::write(dir.path().join(".env"), "TRIES=2\n").unwrap();
    let output = leakrun_with(
        &[
            "run",
            path.to_str().unwrap(),
            "--no-progress",
            "--set",
            "run.duration=1s",
            "--set",
            "rooms[0].clients[0].count=3",
        ],
        |command| {
            command
                .current_dir(dir.path())
                .env("DURATION", "45s")
                .env_remove("TRIES");
        },
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let r = result(&dir.path().join("results"), "tiny");
    let sources = &r["scenario"]["sources"];
    assert_eq!(sources["run.duration"], "--set run.duration=1s", "{sources}");
    assert_eq!(sources["run.iterations"], "TRIES=2 (from .env)", "{sources}");
    assert_eq!(
        sources["rooms[0].clients[0].count"],
        "--set rooms[0].clients[0].count=3"
    );
    assert_eq!(sources["rooms[0].clients[0].rate"], "file");
    assert_eq!(sources["run.warmup"], "default");
    let resolved = &r["scenario"]["resolved"];
    assert_eq!(resolved["run"]["duration"], "1s");
    assert_eq!(resolved["run"]["iterations"], 2);
    assert_eq!(resolved["rooms"][0]["clients"][0]["count"], 3);
    assert_eq!(r["iterations"].as_array().unwrap().len(), 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("DURATION=45s (from the environment) overrides run.duration where a scenario sets it"),
        "{stderr}"
    );
}

#[test]
fn a_bad_key_exits_2_naming_it_and_the_valid_keys() {
    let dir = scratch();
    let path = scenario(dir.path(), "tiny", MINIMAL);
    let out = dir.path().join("results");
    let cases: &[(&str, &str)] = &[
        (
            "run.duratoin=5s",
            "--set run.duratoin=5s: unknown key `duratoin` in [run]; valid keys: duration, iterations, warmup",
        ),
        (
            "speed=3",
            "unknown key `speed` at the top level; valid keys: name, description",
        ),
        ("rooms[3].name=x", "`rooms` has 1 entry: use rooms[0]"),
        ("run.duration", "--set run.duration: write key=value"),
        (
            "run.duration=soon",
            "--set run.duration=soon: `run.duration`: `soon` is not a duration",
        ),
    ];
    for (set, expected) in cases {
        for command in ["run", "check"] {
            let mut args = vec![command, path.to_str().unwrap(), "--set", set];
            if command == "run" {
                args.extend(["--out", out.to_str().unwrap()]);
            }
            let output = leakrun(&args);
            assert_eq!(
                output.status.code(),
                Some(2),
                "{command} --set {set}: {}",
                describe(&output)
            );
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains(expected),
                "{command} --set {set}: expected `{expected}` in\n{stderr}"
            );
        }
    }
    assert!(!out.exists(), "no result for a scenario that did not run");
}

#[test]
fn a_bad_environment_value_names_the_variable() {
    let dir = scratch();
    let path = scenario(dir.path(), "tiny", MINIMAL);
    let output = leakrun_with(&["check", path.to_str().unwrap()], |command| {
        command.current_dir(dir.path()).env("TRIES", "0");
    });
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("TRIES=0 (from the environment): `run.iterations`: 0 is out of range"),
        "{stderr}"
    );
}

#[test]
fn the_warp_reports_env_file_drives_an_http_scenario() {
    let dir = scratch();
    let text = std::fs::read_to_string("scenarios/warp_hello.toml").expect("the shipped scenario");
    let path = scenario(dir.path(), "warp_hello", &text);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.path().join(".env"),
        format!("TRIES=1\nHOST=127.0.0.1\nPORT={port}\nDURATION=1s\nWORKERS=2\n"),
    )
    .unwrap();
    let output = leakrun_with(&["run", path.to_str().unwrap(), "--no-progress"], |command| {
        command.current_dir(dir.path());
        for name in ["TRIES", "HOST", "PORT", "DURATION", "WORKERS"] {
            command.env_remove(name);
        }
    });
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let r = result(&dir.path().join("results"), "warp_hello");
    let resolved = &r["scenario"]["resolved"];
    assert_eq!(resolved["server"]["port"], port);
    assert_eq!(resolved["http"][0]["model"]["workers"], 2);
    assert_eq!(resolved["run"]["duration"], "1s");
    assert_eq!(r["iterations"].as_array().unwrap().len(), 1);
    assert_eq!(r["scenario"]["sources"]["http[0].workers"], "WORKERS=2 (from .env)");
    assert_eq!(
        r["scenario"]["sources"]["server.port"],
        format!("PORT={port} (from .env)")
    );
    assert!(r["http"][0]["requests"].as_u64().unwrap() > 0, "{}", r["http"]);
}
