//! The Redis backends end to end: the real binary, its embedded servers and real clients, on a real
//! redis-server — a private one leakrun starts itself, or one the test starts and then kills.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use leakrun::infra::PrivateRedis;
use serde_json::Value;

fn pid_alive(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn private_pid(r: &Value) -> u64 {
    let source = r["backend"]["source"].as_str().unwrap();
    assert!(source.starts_with("private redis-server (pid "), "{source}");
    source["private redis-server (pid ".len()..]
        .split(')')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn both_redis_layers_deliver_everything_with_churners_over_two_instances() {
    for kind in ["redis", "redis-lists"] {
        let dir = scratch();
        let name = format!("churn_{}", kind.replace('-', "_"));
        let path = scenario(dir.path(), &name, &issue1683_churn(&name, kind));
        let output = leakrun_with(
            &[
                "run",
                path.to_str().unwrap(),
                "--out",
                dir.path().to_str().unwrap(),
                "--no-progress",
            ],
            |c| {
                c.env_remove("REDIS_URL");
            },
        );
        assert_eq!(output.status.code(), Some(0), "{kind}: {}", describe(&output));
        let r = result(dir.path(), &name);
        assert_eq!(r["backend"]["kind"], kind);
        assert!(r["backend"]["version"].as_str().unwrap().starts_with("redis "));
        let gaps = &r["verdicts"]["gaps"];
        assert_eq!(gaps["outcome"], "clean", "{kind}: {}", gaps["summary"]);
        let totals = &gaps["totals"];
        assert!(totals["received"].as_u64().unwrap() > 1000, "{kind}: {totals}");
        // Clients were spread over both instances, and cycling clients reconnected.
        assert_eq!(r["scenario"]["resolved"]["server"]["instances"], 2);
        assert!(r["iterations"][0]["sessions"].as_u64().unwrap() > 20, "{kind}");
        // The run's keys and memberships in Redis came back down after every iteration.
        for series in r["verdicts"]["leak"]["series"].as_array().unwrap() {
            if ["redis_keys", "redis_memberships", "redis_groups", "redis_subscribers"]
                .contains(&series["name"].as_str().unwrap())
            {
                assert_eq!(series["class"], "clean", "{kind}: {}", series["evidence"]);
            }
        }
        // The private server is gone.
        assert!(
            !pid_alive(private_pid(&r)),
            "{kind}: private redis-server still running"
        );
    }
}

#[test]
fn the_fixed_layer_loses_nothing_to_churn() {
    let dir = scratch();
    let output = run_scenario(Path::new("scenarios/issue1683_fixed.toml"), dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let r = result(dir.path(), "issue1683_fixed");
    assert_eq!(
        r["verdicts"]["gaps"]["outcome"], "clean",
        "{}",
        r["verdicts"]["gaps"]["summary"]
    );
    assert!(r["verdicts"]["gaps"]["totals"]["received"].as_u64().unwrap() > 500);
}

#[test]
fn issue1683_still_runs_on_the_memory_layer() {
    let dir = scratch();
    let text = std::fs::read_to_string("scenarios/issue1683.toml")
        .unwrap()
        .replace("duration = \"20s\"", "duration = \"2s\"");
    let path = scenario(dir.path(), "issue1683", &text);
    let output = leakrun(&[
        "run",
        path.to_str().unwrap(),
        "--backend",
        "memory",
        "--out",
        dir.path().to_str().unwrap(),
        "--no-progress",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let r = result(dir.path(), "issue1683");
    assert_eq!(r["backend"]["kind"], "memory");
    assert_eq!(r["scenario"]["resolved"]["backend"]["kind"], "memory");
}

#[test]
fn redis_going_away_mid_run_is_exit_3_with_a_partial_result() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let redis = runtime.block_on(PrivateRedis::start()).expect("redis-server starts");
    let dir = scratch();
    let text = issue1683_churn("goes_away", "redis-lists")
        .replace("duration = \"4s\"", "duration = \"20s\"")
        .replace("iterations = 2", "iterations = 3");
    let path = scenario(dir.path(), "goes_away", &text);
    let child = spawn_run(&path, dir.path(), |command| {
        command.env("REDIS_URL", redis.url());
    });
    std::thread::sleep(Duration::from_secs(3));
    runtime.block_on(redis.stop()).expect("redis-server stops");
    let stopped = Instant::now();
    let output = child.wait_with_output().unwrap();
    assert!(
        stopped.elapsed() < Duration::from_secs(20),
        "leakrun noticed within its bounds: {:?}",
        stopped.elapsed()
    );
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains("panicked"),
        "{}",
        describe(&output)
    );
    let r = result(dir.path(), "goes_away");
    assert_eq!(r["status"], "error");
    assert_eq!(r["backend"]["source"], "REDIS_URL");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("Redis at redis://127.0.0.1:") && error.contains("went away"),
        "{error}"
    );
    assert!(
        r["timeline"]["samples"].as_array().unwrap().len() > 10,
        "the timeline up to the failure is kept"
    );
}

#[test]
fn without_redis_and_without_redis_server_it_says_what_to_do_within_5_seconds() {
    let dir = scratch();
    let path = scenario(dir.path(), "nothing", &issue1683_churn("nothing", "redis"));
    let started = Instant::now();
    let output = leakrun_with(
        &[
            "run",
            path.to_str().unwrap(),
            "--out",
            dir.path().to_str().unwrap(),
            "--no-progress",
        ],
        |c| {
            c.env_remove("REDIS_URL").env("PATH", dir.path());
        },
    );
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("redis-server") && stdout.contains("REDIS_URL"),
        "{stdout}"
    );
    assert_eq!(result(dir.path(), "nothing")["status"], "error");
}

#[test]
fn a_remote_or_malformed_redis_url_is_a_usage_error() {
    let dir = scratch();
    let path = scenario(dir.path(), "remote", &issue1683_churn("remote", "redis"));
    for (url, expected) in [
        ("redis://10.1.2.3:6379/", "not a loopback address"),
        ("http://127.0.0.1:6379/", "scheme `http`"),
    ] {
        let output = leakrun_with(
            &["run", path.to_str().unwrap(), "--out", dir.path().to_str().unwrap()],
            |c| {
                c.env("REDIS_URL", url);
            },
        );
        assert_eq!(output.status.code(), Some(2), "{url}: {}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("REDIS_URL") && stderr.contains(expected), "{stderr}");
    }
    let in_file = issue1683_churn("remote", "redis").replace("[backend]", "[backend]\nurl = \"redis://192.168.1.5/\"");
    let output = leakrun(&["check", scenario(dir.path(), "remote2", &in_file).to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("`backend.url`: host `192.168.1.5` is not a loopback address")
    );
    assert!(!dir.path().join("remote.json").exists(), "nothing ran");
}

#[test]
fn the_1683_mechanism_loses_the_same_messages_at_every_steady_receiver_of_the_instance() {
    let dir = scratch();
    let output = run_scenario(Path::new("scenarios/issue1683_mechanism.toml"), dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let r = result(dir.path(), "issue1683_mechanism");
    assert_eq!(
        r["verdicts"]["gaps"]["outcome"], "gaps",
        "{}",
        r["verdicts"]["gaps"]["summary"]
    );
    assert_eq!(
        r["scenario"]["resolved"]["server"]["instances"], 1,
        "one instance: every receiver is co-located"
    );
    assert_eq!(r["losses"]["truncated"], false);

    // Steady receivers per room, from the scenario as resolved.
    let mut steady: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
    for room in r["scenario"]["resolved"]["rooms"].as_array().unwrap() {
        let name = room["name"].as_str().unwrap().to_string();
        let mut n = 0;
        for group in room["clients"].as_array().unwrap() {
            if group["pattern"]["kind"] == "steady" {
                for _ in 0..group["count"].as_u64().unwrap() {
                    steady
                        .entry(name.clone())
                        .or_default()
                        .insert(format!("{name}/steady#{n}"));
                    n += 1;
                }
            }
        }
    }
    // Which steady receivers missed each lost message.
    let mut missed: std::collections::BTreeMap<(String, u64, u64), std::collections::BTreeSet<String>> =
        Default::default();
    for record in r["losses"]["records"].as_array().unwrap() {
        let receiver = record["receiver_client"].as_str().unwrap();
        if !receiver.contains("/steady#") {
            continue;
        }
        let room = record["room"].as_str().unwrap().to_string();
        let sender = record["sender"].as_u64().unwrap();
        for seq in record["first_seq"].as_u64().unwrap()..=record["last_seq"].as_u64().unwrap() {
            missed
                .entry((room.clone(), sender, seq))
                .or_default()
                .insert(receiver.to_string());
        }
    }
    assert!(missed.len() >= 3, "the mechanism lost too little to judge: {missed:?}");
    for ((room, sender, seq), receivers) in &missed {
        assert_eq!(
            receivers, &steady[room],
            "message {sender}/{seq} in {room}: lost at some steady receivers only"
        );
    }
}

#[test]
fn a_redis_url_in_dot_env_is_used_and_recorded() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let redis = runtime.block_on(PrivateRedis::start()).expect("redis-server starts");
    let dir = scratch();
    std::fs::write(dir.path().join(".env"), format!("REDIS_URL={}\n", redis.url())).unwrap();
    let text = issue1683_churn("dotenv", "redis").replace("duration = \"4s\"", "duration = \"1s\"");
    let path = scenario(dir.path(), "dotenv", &text);
    let output = leakrun_with(
        &[
            "run",
            path.to_str().unwrap(),
            "--out",
            dir.path().to_str().unwrap(),
            "--no-progress",
        ],
        |c| {
            c.env_remove("REDIS_URL").current_dir(dir.path());
        },
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let r = result(dir.path(), "dotenv");
    assert_eq!(r["backend"]["source"], "REDIS_URL from .env");
    assert_eq!(r["backend"]["endpoint"], redis.url());
    assert_eq!(
        r["scenario"]["resolved"]["backend"]["url_source"],
        "REDIS_URL from .env"
    );
    runtime.block_on(redis.stop()).unwrap();
}

#[test]
fn ctrl_c_stops_the_private_redis_server_and_writes_a_partial_result() {
    let dir = scratch();
    let text = issue1683_churn("interrupted", "redis-lists").replace("duration = \"4s\"", "duration = \"60s\"");
    let path = scenario(dir.path(), "interrupted", &text);
    let child = spawn_run(&path, dir.path(), |command| {
        command.env_remove("REDIS_URL");
    });
    std::thread::sleep(Duration::from_secs(3));
    interrupt(&child);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", describe(&output));
    let r = result(dir.path(), "interrupted");
    assert_eq!(r["status"], "interrupted");
    assert!(!pid_alive(private_pid(&r)), "the private redis-server outlived the run");
}
