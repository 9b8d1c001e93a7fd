//! The loopback guard through the real binary: every trick URL — in a scenario, in `--set`, in
//! `REDIS_URL` or `AMQP_URL`, in a `.env` — is refused with exit 2 naming the key, before anything
//! connects. Nothing here connects to a host that is not loopback: refusal happens in validation.

mod common;

use common::*;

const TRICKS: &[&str] = &[
    "redis://evil.example#@127.0.0.1/",
    "redis://evil.example?@127.0.0.1/",
    "redis://u:p@evil.example/#@127.0.0.1:6379",
    "redis://127.0.0.1@evil.example/",
    "redis://127.0.0.1.nip.io:6379/",
    "redis://0.0.0.0:6379/",
    "redis://[::ffff:10.0.0.1]:6379/",
];

fn lists(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    scenario(
        dir,
        name,
        &format!(
            "name = \"{name}\"\n[backend]\nkind = \"redis-lists\"\n[[rooms]]\nname = \"a\"\n  [[rooms.clients]]\n  count = 1\n[run]\nduration = \"1s\"\n"
        ),
    )
}

#[test]
fn trick_urls_in_set_are_exit_2_naming_the_key() {
    let dir = scratch();
    let path = lists(dir.path(), "trick");
    for url in TRICKS {
        for command in ["check", "run"] {
            let set = format!("backend.url=\"{url}\"");
            let out = dir.path().join("out");
            let mut args = vec![command, path.to_str().unwrap(), "--set", set.as_str()];
            if command == "run" {
                args.extend(["--out", out.to_str().unwrap(), "--no-progress"]);
            }
            let output = leakrun(&args);
            assert_eq!(output.status.code(), Some(2), "{command} {url}: {}", describe(&output));
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains("backend.url") && stderr.contains("not a loopback"),
                "{url}: {stderr}"
            );
            assert!(
                !out.join("trick.json").exists(),
                "{url}: a refused scenario wrote a result"
            );
        }
    }
}

#[test]
fn trick_urls_in_the_file_are_exit_2_at_their_line() {
    let dir = scratch();
    let path = scenario(
        dir.path(),
        "infile",
        "name = \"infile\"\n[backend]\nkind = \"amqp\"\nurl = \"amqp://guest:guest@evil.example?@127.0.0.1:5672/\"\n[[rooms]]\nname = \"a\"\n  [[rooms.clients]]\n  count = 1\n",
    );
    let output = leakrun(&["check", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(":4:") && stderr.contains("backend.url") && stderr.contains("evil.example"),
        "{stderr}"
    );
    assert!(!stderr.contains("guest:guest"), "the password is printed: {stderr}");
}

#[test]
fn trick_urls_from_the_environment_and_dotenv_are_exit_2() {
    let dir = scratch();
    let path = lists(dir.path(), "fromenv");
    let output = leakrun_with(&["check", path.to_str().unwrap()], |c| {
        c.current_dir(dir.path()).env("REDIS_URL", TRICKS[0]);
    });
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("REDIS_URL"),
        "{}",
        describe(&output)
    );

    std::fs::write(dir.path().join(".env"), format!("REDIS_URL={}\n", TRICKS[1])).unwrap();
    let out = dir.path().join("out");
    let output = leakrun_with(&["run", path.to_str().unwrap(), "--out", out.to_str().unwrap()], |c| {
        c.current_dir(dir.path()).env_remove("REDIS_URL");
    });
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("REDIS_URL from .env") && stderr.contains("evil.example"),
        "{stderr}"
    );
    assert!(!out.exists() || std::fs::read_dir(&out).unwrap().next().is_none());
}

#[test]
fn trick_urls_of_an_external_server_are_exit_2() {
    let dir = scratch();
    for (key, url) in [
        ("ws_url", "ws://evil.example#@127.0.0.1:8000/ws/{room}"),
        ("stats_url", "http://evil.example?@127.0.0.1:8000/stats"),
        ("ws_url", "ws://127.0.0.1.nip.io:8000/ws/{room}"),
    ] {
        let ws = if key == "ws_url" {
            url
        } else {
            "ws://127.0.0.1:8000/ws/{room}"
        };
        let extra = if key == "stats_url" {
            format!("stats_url = \"{url}\"\n")
        } else {
            String::new()
        };
        let path = scenario(
            dir.path(),
            "ext",
            &format!(
                "name = \"ext\"\n[server]\ntarget = \"external\"\npid = 1\nws_url = \"{ws}\"\n{extra}[[rooms]]\nname = \"a\"\n  [[rooms.clients]]\n  count = 1\n"
            ),
        );
        let output = leakrun(&["check", path.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(2), "{url}: {}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("server.{key}")) && stderr.contains("not a loopback"),
            "{url}: {stderr}"
        );
    }
}
