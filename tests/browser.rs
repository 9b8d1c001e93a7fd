//! In a real browser: headless Chromium loads a report with no console error and draws it (the
//! screenshot is not blank), two pages on `/chat/{room}/` of `leakrun serve` talk to each other
//! (a frame sent from one shows up in the other), and a page on the embedded server of a running
//! scenario shows the run's own frames arriving.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::chromium::{Browser, ink};
use common::{describe, free_port, interrupt, leakrun, scenario, scratch, spawn_run};

#[tokio::test(flavor = "multi_thread")]
async fn a_report_loads_without_console_errors_and_draws() {
    let dir = scratch();
    let out = dir.path().join("results");
    let output = leakrun(&[
        "run",
        "scenarios/controls/drop_one_in_200.toml",
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
        "--set",
        "run.duration=2s",
    ]);
    assert!(output.status.code().is_some_and(|c| c <= 1), "{}", describe(&output));
    let report = out.join("drop_one_in_200.html");
    assert!(report.exists(), "{}", describe(&output));

    let mut browser = Browser::start().await;
    let page = browser.open(&format!("file://{}", report.display())).await;
    let charts = browser
        .eval(&page, "document.querySelectorAll('svg.chart').length")
        .await;
    assert!(charts.as_u64().is_some_and(|n| n >= 4), "charts in the DOM: {charts}");
    let title = browser.eval(&page, "document.querySelector('h1').textContent").await;
    assert!(title.as_str().is_some_and(|t| t.contains("drop_one_in_200")), "{title}");
    let shot = browser.screenshot(&page).await;
    let (share, colours) = ink(&shot);
    assert!(
        share > 0.05 && colours > 20,
        "a blank screenshot: {share:.3} of pixels inked, {colours} colours"
    );
    assert!(
        browser.errors(&page).is_empty(),
        "console errors: {:#?}",
        browser.errors(&page)
    );
}

/// Loads `file` in `browser`: no console error, at least `charts` charts, a screenshot that is
/// not blank (at least `ink` of its pixels drawn: a page of charts draws far more than a table).
async fn loads_and_draws(browser: &mut Browser, file: &std::path::Path, charts: u64, ink_share: f64) {
    let page = browser.open(&format!("file://{}", file.display())).await;
    let drawn = browser
        .eval(&page, "document.querySelectorAll('svg.chart').length")
        .await;
    assert!(
        drawn.as_u64().is_some_and(|n| n >= charts),
        "{}: charts in the DOM: {drawn}",
        file.display()
    );
    let shot = browser.screenshot(&page).await;
    let (share, colours) = ink(&shot);
    assert!(
        share > ink_share && colours > 8,
        "{}: a blank screenshot: {share:.3} of pixels inked, {colours} colours",
        file.display()
    );
    assert!(
        browser.errors(&page).is_empty(),
        "{}: console errors: {:#?}",
        file.display(),
        browser.errors(&page)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_diff_report_and_a_folder_index_load_without_console_errors_and_draw() {
    let dir = scratch();
    // A folder run of the two gap controls: its index, and the gaps control's result as head.
    let folder = dir.path().join("scenarios");
    std::fs::create_dir_all(&folder).unwrap();
    for control in ["clean_churn", "drop_one_in_200"] {
        std::fs::copy(
            format!("scenarios/controls/{control}.toml"),
            folder.join(format!("{control}.toml")),
        )
        .unwrap();
    }
    let out = dir.path().join("results");
    let set = ["--no-progress", "--set", "run.duration=2s"];
    let mut args = vec!["run", folder.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend(set);
    let output = leakrun(&args);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let index = out.join("index.html");
    assert!(index.exists(), "{}", describe(&output));
    // The clean control under the gaps control's name: the base.
    let base = dir.path().join("base");
    let mut args = vec![
        "run",
        "scenarios/controls/clean_churn.toml",
        "--out",
        base.to_str().unwrap(),
        "--no-report",
        "--set",
        "name=drop_one_in_200",
    ];
    args.extend(set);
    let output = leakrun(&args);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report = dir.path().join("diff.html");
    let output = leakrun(&[
        "report",
        base.join("drop_one_in_200.json").to_str().unwrap(),
        out.join("drop_one_in_200.json").to_str().unwrap(),
        "-o",
        report.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    let mut browser = Browser::start().await;
    loads_and_draws(&mut browser, &report, 4, 0.05).await;
    // The index is a table of text: a sliver of the page is ink.
    loads_and_draws(&mut browser, &index, 0, 0.004).await;
    // The index's links lead to the reports: followed in the browser, each page has its charts.
    let page = browser.open(&format!("file://{}", index.display())).await;
    let links = browser
        .eval(&page, "Array.from(document.querySelectorAll('a')).map(a => a.href)")
        .await;
    let links: Vec<String> = links
        .as_array()
        .expect("links")
        .iter()
        .filter_map(|l| l.as_str().map(str::to_string))
        .collect();
    assert_eq!(links.len(), 2, "{links:?}");
    for link in links {
        let path = std::path::PathBuf::from(link.trim_start_matches("file://"));
        assert!(path.is_file(), "{link} resolves");
        loads_and_draws(&mut browser, &path, 4, 0.05).await;
    }
}

/// `leakrun serve` on a free port, stopped on drop.
struct Serve {
    child: std::process::Child,
    url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_leakrun"))
        .args(["serve", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start leakrun serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("its first line");
    let at = line.find("http://").unwrap_or_else(|| panic!("no address in {line:?}"));
    let url = line[at..].split_whitespace().next().expect("an address").to_string();
    Serve { child, url }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_chat_pages_on_one_room_see_each_others_frames() {
    let server = serve();
    let mut browser = Browser::start().await;
    let page = format!("{}/chat/lobby/", server.url);
    let a = browser.open(&page).await;
    let b = browser.open(&page).await;
    for tab in [&a, &b] {
        assert!(
            browser.until(tab, "document.body.dataset.state === 'open'", 100).await,
            "a chat page never joined its room"
        );
    }
    let token = format!("hello from a {}", std::process::id());
    browser
        .eval(
            &a,
            &format!(
                "document.getElementById('text').value = {token:?}; document.getElementById('send').requestSubmit(); true"
            ),
        )
        .await;
    let arrived =
        format!("Array.from(document.querySelectorAll('#log .message')).some(m => m.textContent === {token:?})");
    assert!(
        browser.until(&b, &arrived, 100).await,
        "the frame sent from one page never showed in the other"
    );
    for tab in [&a, &b] {
        assert!(
            browser.errors(tab).is_empty(),
            "console errors: {:#?}",
            browser.errors(tab)
        );
    }
    // A page on a room no one may join says why.
    let bad = browser.open(&format!("{}/chat/no%20spaces/", server.url)).await;
    let text = browser.eval(&bad, "document.body.textContent").await;
    assert!(text.as_str().is_some_and(|t| t.contains("invalid room name")), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chat_page_on_the_embedded_server_shows_the_runs_frames() {
    let dir = scratch();
    let port = free_port();
    let target = scenario(
        dir.path(),
        "chat_page_run",
        &format!(
            r#"name = "chat_page_run"
[server]
port = {port}
[[rooms]]
name = "lobby"
  [[rooms.clients]]
  pattern = "steady"
  count = 2
  rate = 20
[run]
duration = "60s"
iterations = 1
"#
        ),
    );
    let out = dir.path().join("results");
    let run = spawn_run(&target, &out, |_| {});
    let address = format!("127.0.0.1:{port}");
    let up = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::net::TcpStream::connect(&address).is_ok()
    });
    assert!(up, "the embedded server never listened on {address}");
    let mut browser = Browser::start().await;
    let tab = browser.open(&format!("http://{address}/chat/lobby/")).await;
    assert!(
        browser.until(&tab, "document.body.dataset.state === 'open'", 100).await,
        "the chat page never joined the run's room"
    );
    // The run's clients send envelopes (`lr2|sender|seq|...`) into the room; the page shows them.
    let arrived = "Array.from(document.querySelectorAll('#log .message')).filter(m => m.textContent.includes('lr2|')).length >= 3";
    let seen = browser.until(&tab, arrived, 100).await;
    let errors = browser.errors(&tab);
    interrupt(&run);
    let output = run.wait_with_output().expect("the run ends");
    assert!(
        seen,
        "the run's frames never showed on the page; run: {}",
        describe(&output)
    );
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    assert_eq!(output.status.code(), Some(130), "interrupted: {}", describe(&output));
}
