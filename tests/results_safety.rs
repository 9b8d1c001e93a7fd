//! Results that are never lost or wrong, through the real binary: an unwritable `--out` is exit 2
//! before anything starts, two runs of one scenario into one folder do not write over each other,
//! no password reaches a result, files get the umask's mode, and `baseline` takes only complete,
//! judged results with a name that stays inside `--out`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;

const TINY: &str = r#"name = "tiny"
[[rooms]]
name = "room"
  [[rooms.clients]]
  count = 2
  rate = 20
[run]
duration = "1s"
settle = "2s"
"#;

fn run_into(path: &Path, out: &Path) -> std::process::Output {
    leakrun(&[
        "run",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
    ])
}

#[test]
fn an_unwritable_out_folder_is_exit_2_before_the_run() {
    let dir = scratch();
    let path = scenario(dir.path(), "tiny", TINY);
    let taken = dir.path().join("a-file");
    std::fs::write(&taken, "").unwrap();
    for out in [taken.clone(), taken.join("below")] {
        let output = run_into(&path, &out);
        assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--out") && stderr.contains("cannot write"), "{stderr}");
        // Refused before the run: it never said it was running the scenario.
        assert!(!stderr.contains("running tiny"), "{stderr}");
    }
    let junit = taken.join("junit.xml");
    let output = leakrun(&[
        "run",
        path.to_str().unwrap(),
        "--out",
        dir.path().join("out").to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--junit"));
}

#[test]
fn a_second_run_of_one_scenario_into_one_folder_is_refused() {
    let dir = scratch();
    let path = scenario(
        dir.path(),
        "tiny",
        &TINY.replace("duration = \"1s\"", "duration = \"60s\""),
    );
    let first = spawn_run(&path, dir.path(), |_| {});
    // The first run holds its lock from before its server starts until its result is written.
    while leakrun::results::write::RunLock::acquire(dir.path(), "tiny").is_ok() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let second = run_into(&path, dir.path());
    interrupt(&first);
    let first = first.wait_with_output().unwrap();
    assert_eq!(second.status.code(), Some(2), "{}", describe(&second));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another leakrun is running scenario `tiny`"),
        "{}",
        describe(&second)
    );
    assert_eq!(first.status.code(), Some(130), "{}", describe(&first));
    assert_eq!(result(dir.path(), "tiny")["status"], "interrupted");
}

#[test]
fn result_files_get_the_mode_the_umask_gives() {
    let dir = scratch();
    let path = scenario(dir.path(), "tiny", TINY);
    for (umask, mode) in [("077", 0o600), ("022", 0o644)] {
        let out = dir.path().join(format!("out{umask}"));
        let output = Command::new("sh")
            .args(["-c", &format!("umask {umask} && exec \"$0\" \"$@\"")])
            .arg(env!("CARGO_BIN_EXE_leakrun"))
            .args([
                "run",
                path.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--no-progress",
            ])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        let found = std::fs::metadata(out.join("tiny.json")).unwrap().permissions().mode() & 0o777;
        assert_eq!(found, mode, "umask {umask}");
    }
}

#[test]
fn a_backend_password_from_set_reaches_no_result() {
    let dir = scratch();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--requirepass",
            "hunter2",
        ])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server");
    // Ready when it answers a connection.
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let path = scenario(
        dir.path(),
        "tiny",
        &format!("{TINY}[backend]\nkind = \"redis-lists\"\n"),
    );
    let out = dir.path().join("out");
    let output = leakrun(&[
        "run",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
        "--set",
        &format!("backend.url=\"redis://:hunter2@127.0.0.1:{port}/\""),
    ]);
    let _ = redis.kill();
    let _ = redis.wait();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let text = std::fs::read_to_string(out.join("tiny.json")).unwrap();
    assert!(!text.contains("hunter2"), "the password is in the result");
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        r["scenario"]["sources"]["backend.url"]
            .as_str()
            .unwrap()
            .contains("***@127.0.0.1")
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("hunter2"));
}

/// A change to a result's JSON.
type Edit = dyn Fn(&mut serde_json::Value);

#[test]
fn baseline_takes_only_complete_judged_results_named_inside_out() {
    let dir = scratch();
    let path = scenario(dir.path(), "tiny", TINY);
    let output = run_into(&path, dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let good: serde_json::Value = result(dir.path(), "tiny");
    let baselines = dir.path().join("baselines");
    let try_baseline = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut value = good.clone();
        edit(&mut value);
        let file = dir.path().join(format!("{name}.result.json"));
        std::fs::write(&file, serde_json::to_string(&value).unwrap()).unwrap();
        leakrun(&["baseline", file.to_str().unwrap(), "--out", baselines.to_str().unwrap()])
    };
    let refused: [(&str, &Edit, &str); 5] = [
        ("interrupted", &|v| v["status"] = "interrupted".into(), "Interrupted"),
        ("error", &|v| v["status"] = "error".into(), "Error"),
        (
            "incomplete",
            &|v| v["incomplete"] = serde_json::json!([{"iteration": 0, "what": "room/steady#0", "why": "panicked"}]),
            "sessions lost",
        ),
        (
            "escape",
            &|v| v["scenario"]["name"] = "../../escaped".into(),
            "cannot name a baseline",
        ),
        (
            "absolute",
            &|v| v["scenario"]["name"] = "/tmp/leakrun-absolute".into(),
            "cannot name a baseline",
        ),
    ];
    for (name, edit, words) in refused {
        let output = try_baseline(name, edit);
        assert_eq!(output.status.code(), Some(2), "{name}: {}", describe(&output));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(words),
            "{name}: {}",
            describe(&output)
        );
    }
    assert!(!dir.path().join("escaped.json").exists() && !Path::new("/tmp/leakrun-absolute.json").exists());
    let output = try_baseline("good", &|_| {});
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(baselines.join("tiny.json").exists());
}
