//! The Python broadcast chat server (`tests/support/ws_chat_server.py`) the external-target tests
//! start: where its script and Python are, its command line, and whether its process is gone.

use std::path::{Path, PathBuf};

/// The chat server's source.
pub fn server_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/ws_chat_server.py")
}

/// The Python with `websockets`: `LEAKRUN_TEST_PYTHON`, else `target/pyenv` from
/// `scripts/install-services`. Missing is a failure, never a skip.
pub fn python() -> PathBuf {
    let path = std::env::var_os("LEAKRUN_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python"));
    assert!(
        path.exists(),
        "no Python for the external-target tests at {}: run scripts/install-services (it makes target/pyenv with websockets from PyPI) or set LEAKRUN_TEST_PYTHON",
        path.display()
    );
    path
}

/// The server's command line as a TOML array.
pub fn command(port: u16, switches: &[&str]) -> String {
    let mut argv = vec![
        python().display().to_string(),
        server_script().display().to_string(),
        "--port".into(),
        port.to_string(),
    ];
    argv.extend(switches.iter().map(|s| s.to_string()));
    format!(
        "[{}]",
        argv.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", ")
    )
}

/// True while process `pid` exists and is not a zombie.
pub fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

pub fn stopped_server_pid(r: &serde_json::Value) -> u64 {
    let pid = r["target"]["pid"].as_u64().expect("the result names the server's pid");
    assert!(
        !alive(pid),
        "the server (pid {pid}) is still running after leakrun ended"
    );
    pid
}
