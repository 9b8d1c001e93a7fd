//! Scale without a herd of leakrun's own making: send phases spread over the first interval
//! (`phase = "spread"`, the default) or aligned on the connect (`phase = "aligned"`), connects
//! spread over a steady group's `ramp` and paced by `run.connect_rate`, and the scenario errors
//! for the new keys. The real binary on its embedded server, read through its result.

mod common;

use common::*;

/// `rooms` rooms of `per_room` steady clients at one message per 10 s, for `duration`.
fn slow_senders(name: &str, rooms: usize, per_room: usize, duration: &str, extra: &str) -> String {
    let mut text =
        format!("name = \"{name}\"\n[server]\ncapacity = 2000\n[run]\nduration = \"{duration}\"\ndrain = \"2s\"\n");
    for room in 0..rooms {
        text.push_str(&format!(
            "[[rooms]]\nname = \"r{room}\"\n[[rooms.clients]]\npattern = \"steady\"\ncount = {per_room}\nrate = 0.1\n{extra}\n"
        ));
    }
    text
}

fn first_sends(result: &serde_json::Value) -> (u64, f64, u64, f64, u64) {
    let iteration = &result["iterations"][0];
    let f = &iteration["first_sends"];
    (
        f["senders"].as_u64().expect("senders"),
        f["span_ms"].as_f64().expect("span_ms"),
        f["peak_100ms"].as_u64().expect("peak_100ms"),
        f["offset_max_ms"].as_f64().expect("offset_max_ms"),
        iteration["sessions"].as_u64().expect("sessions"),
    )
}

#[test]
fn a_thousand_slow_senders_spread_their_first_messages_unless_aligned() {
    let dir = scratch();
    let out = dir.path().join("out");

    let spread = scenario(dir.path(), "spread", &slow_senders("spread", 50, 20, "3s", ""));
    let output = run_scenario(&spread, &out);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let spread_result = result(&out, "spread");
    assert!(
        spread_result["phase_seed"].as_u64().is_some(),
        "the seed is in the result"
    );
    let (senders, span_ms, peak, offset_max_ms, sessions) = first_sends(&spread_result);
    assert_eq!(sessions, 1000, "every client connected");
    // Offsets are uniform over the 10 s interval, so about 3 s / 10 s of the clients send within
    // the run, about ten in any 100 ms.
    assert!((100..=600).contains(&senders), "{senders} of 1000 sent in 3 s");
    assert!(peak * 4 <= senders, "{peak} of {senders} first sends within 100 ms");
    assert!(span_ms >= 1500.0, "first sends spread over {span_ms} ms");
    assert!(offset_max_ms >= 1500.0, "a phase offset of {offset_max_ms} ms at most");
    // leakrun's own cost is in the result beside the server's, per connection.
    let generator = &spread_result["iterations"][0]["generator"];
    assert_eq!(generator["connections"], 1000, "{generator}");
    assert!(generator["cpu_s"].as_f64().unwrap() > 0.0, "{generator}");
    let rss = generator["rss_bytes"].as_u64().unwrap();
    assert_eq!(
        generator["rss_per_connection"].as_u64().unwrap(),
        rss / 1000,
        "{generator}"
    );
    for heap in ["harness_heap_per_connection", "server_heap_per_connection"] {
        assert!(generator[heap].as_i64().unwrap() > 0, "{heap}: {generator}");
    }

    let aligned = scenario(
        dir.path(),
        "aligned",
        &slow_senders("aligned", 50, 20, "3s", "phase = \"aligned\""),
    );
    let output = run_scenario(&aligned, &out);
    // A burst may overflow channels (exit 1); the figures are what this test reads.
    assert!(matches!(output.status.code(), Some(0 | 1)), "{}", describe(&output));
    let result = result(&out, "aligned");
    let (senders, _, aligned_peak, offset_max_ms, sessions) = first_sends(&result);
    assert_eq!(senders, sessions, "every aligned session sent the moment it connected");
    assert_eq!(offset_max_ms, 0.0);
    assert!(
        aligned_peak > 2 * peak,
        "aligned: {aligned_peak} first sends in 100 ms, spread: {peak}"
    );
}

/// Seconds since the run started of every connect in `result`.
fn connect_times(result: &serde_json::Value) -> Vec<f64> {
    result["events"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "connect")
        .map(|e| e["at_s"].as_f64().expect("at_s"))
        .collect()
}

fn span(times: &[f64]) -> f64 {
    let max = times.iter().cloned().fold(f64::MIN, f64::max);
    let min = times.iter().cloned().fold(f64::MAX, f64::min);
    max - min
}

#[test]
fn ramp_spreads_steady_connects_and_connect_rate_paces_every_connect() {
    let dir = scratch();
    let out = dir.path().join("out");
    let text = |name: &str, run: &str, clients: &str| {
        format!(
            "name = \"{name}\"\n[run]\nduration = \"3s\"\n{run}\n[[rooms]]\nname = \"lobby\"\n[[rooms.clients]]\npattern = \"steady\"\ncount = 20\nrate = 1\n{clients}\n"
        )
    };

    let all_at_once = scenario(dir.path(), "at_once", &text("at_once", "", ""));
    let output = run_scenario(&all_at_once, &out);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let at_once = connect_times(&result(&out, "at_once"));
    assert_eq!(at_once.len(), 20);

    let ramped = scenario(dir.path(), "ramped", &text("ramped", "", "ramp = \"2s\""));
    let output = run_scenario(&ramped, &out);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let ramp = connect_times(&result(&out, "ramped"));
    assert_eq!(ramp.len(), 20);
    // Client i of 20 connects at i/20 of the ramp: the last 1.9 s after the first.
    assert!(span(&ramp) >= 1.8, "ramped connects span {} s", span(&ramp));
    assert!(span(&ramp) > span(&at_once) + 1.0, "{ramp:?} against {at_once:?}");

    let paced = scenario(dir.path(), "paced", &text("paced", "connect_rate = 10", ""));
    let output = run_scenario(&paced, &out);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let paced_result = result(&out, "paced");
    let paced = connect_times(&paced_result);
    assert_eq!(paced.len(), 20);
    // 20 connects at 10 a second: the last slot is 1.9 s after the first.
    assert!(span(&paced) >= 1.8, "paced connects span {} s", span(&paced));
    assert_eq!(paced_result["scenario"]["resolved"]["run"]["connect_rate"], 10.0);
}

#[test]
fn the_new_keys_are_checked_with_file_line_key_and_what_is_valid() {
    let dir = scratch();
    let base = "name = \"bad\"\n[run]\nduration = \"2s\"\n[[rooms]]\nname = \"lobby\"\n[[rooms.clients]]\npattern = \"steady\"\n";
    let cases = [
        (
            format!("{base}phase = \"random\"\n"),
            "rooms[0].clients[0].phase",
            "\"spread\"",
        ),
        (
            format!("{base}ramp = \"2s\"\n"),
            "rooms[0].clients[0].ramp",
            "not shorter than run.duration",
        ),
        (
            base.replace("duration = \"2s\"", "duration = \"2s\"\nconnect_rate = 0"),
            "run.connect_rate",
            "more than 0",
        ),
    ];
    for (i, (text, key, valid)) in cases.iter().enumerate() {
        let file = scenario(dir.path(), &format!("bad{i}"), text);
        let output = leakrun(&["check", file.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&format!("bad{i}.toml:")), "names the file: {stderr}");
        assert!(stderr.contains(key), "names `{key}`: {stderr}");
        assert!(stderr.contains(valid), "says what is valid ({valid}): {stderr}");
    }
}
