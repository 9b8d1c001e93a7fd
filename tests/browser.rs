//! In a real browser: headless Chromium loads a report with no console error and draws it (the
//! screenshot is not blank), and two pages on `/chat/{room}/` of `leakrun serve` talk to each
//! other (a frame sent from one shows up in the other).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::chromium::{Browser, ink};
use common::{describe, leakrun, scratch};

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
