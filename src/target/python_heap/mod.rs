//! The Python heap probe of an external server leakrun starts (`server.heap = "python"`).
//!
//! leakrun writes its helper (`sitecustomize.py`, beside this file) into a private folder, puts
//! that folder first on the command's `PYTHONPATH` and names it in `LEAKRUN_HEAP_DIR`: every Python
//! process of the server then starts tracemalloc and answers on `<folder>/<pid>.sock`, a Unix
//! socket only leakrun's user can reach — no TCP port, no change to the app. leakrun asks every
//! process for its traced bytes on each sample (cheap), and after each iteration has settled for
//! the sites whose live bytes grew since the last time (a snapshot: never while load runs). A
//! server that forks workers is covered: each process answers on a socket of its own, the series
//! is their sum and their sites are merged.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::observe::sampler::{HeapReading, HeapSource, SourceError};
use crate::observe::sites::{ProcessHeap, SiteGrowth, SiteReport};
use crate::scenario::HeapSpec;

/// The helper every Python process of the server imports.
const HELPER: &str = include_str!("sitecustomize.py");
/// Bound on one sample request to one process.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on one sites request (a snapshot of a large heap takes seconds).
const SITES_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest answer read from a helper.
const MAX_ANSWER: u64 = 4 * 1024 * 1024;
/// Most processes asked (a server's tree).
const MAX_PROCESSES: usize = 256;
/// Longest site name or traceback line kept.
const MAX_SITE_TEXT: usize = 400;

/// Why the probe could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The helper's folder could not be made.
    #[error("server.heap = \"python\": cannot prepare the helper's folder: {0}")]
    Folder(#[from] std::io::Error),
    /// No Python process of the server answered.
    #[error(
        "server.heap = \"python\": no Python process of the server answered leakrun's heap probe within {secs}s of readiness{detail}; the probe needs server.command to run CPython 3.4 or later with its `site` module (not `python -S`, `-I` or `-E`, which skip PYTHONPATH), or set heap = \"none\""
    )]
    NoAnswer {
        /// The bound.
        secs: u64,
        /// What a helper wrote about its failure, if anything.
        detail: String,
    },
}

/// The probe for one run: the helper's folder and its settings.
pub struct PythonHeap {
    folder: tempfile::TempDir,
    spec: HeapSpec,
    /// Held while a snapshot is taken: a sample waits for it rather than timing out on a server
    /// the snapshot holds.
    snapshot: tokio::sync::Mutex<()>,
}

impl PythonHeap {
    /// Writes the helper into a private folder.
    pub fn prepare(spec: HeapSpec) -> Result<Self, ProbeError> {
        let folder = tempfile::Builder::new().prefix("leakrun-heap-").tempdir()?;
        std::fs::write(folder.path().join("sitecustomize.py"), HELPER)?;
        Ok(Self {
            folder,
            spec,
            snapshot: tokio::sync::Mutex::new(()),
        })
    }

    /// The variables the server's command gets: the helper first on `PYTHONPATH` (before
    /// `existing`, the path the command would have had), its folder, its frames.
    pub fn environment(&self, existing: Option<OsString>) -> Vec<(String, OsString)> {
        let mut path = self.folder.path().as_os_str().to_os_string();
        if let Some(existing) = existing.filter(|p| !p.is_empty()) {
            path.push(":");
            path.push(existing);
        }
        vec![
            ("PYTHONPATH".into(), path),
            ("LEAKRUN_HEAP_DIR".into(), self.folder.path().into()),
            ("LEAKRUN_HEAP_FRAMES".into(), self.spec.frames.to_string().into()),
        ]
    }

    /// Waits, at most `bound`, until some process of the server answers.
    pub async fn wait_for_answer(&self, bound: Duration) -> Result<(), ProbeError> {
        let deadline = Instant::now() + bound;
        loop {
            if let Ok(Some(_)) = self.read().await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ProbeError::NoAnswer {
                    secs: bound.as_secs(),
                    detail: self.errors(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The sites that grew since the last call, from every process (the first call sets the
    /// baseline and reports none).
    pub async fn sites(&self) -> Result<SiteReport, SourceError> {
        let _snapshot = self.snapshot.lock().await;
        let request = format!("sites {}\n", self.spec.sites);
        let answers: Vec<Answer> = self.ask_all(&request, SITES_TIMEOUT).await;
        if answers.is_empty() {
            return Err(gone("no process answered the request for allocation sites"));
        }
        let mut report = SiteReport::default();
        let mut merged: BTreeMap<(String, Vec<String>), SiteGrowth> = BTreeMap::new();
        for answer in answers {
            report.bytes += answer.traced;
            report.blocks += answer.blocks;
            report.took_s = report.took_s.max(answer.took_s.max(0.0));
            report.processes.push(ProcessHeap {
                pid: answer.pid,
                bytes: answer.traced,
                blocks: answer.blocks,
            });
            for site in answer.sites {
                let site = bounded(site);
                let entry = merged
                    .entry((site.site.clone(), site.traceback.clone()))
                    .or_insert_with(|| SiteGrowth {
                        bytes: 0,
                        blocks: 0,
                        ..site.clone()
                    });
                entry.bytes += site.bytes;
                entry.blocks += site.blocks;
            }
        }
        report.processes.sort_by_key(|p| p.pid);
        let mut sites: Vec<SiteGrowth> = merged.into_values().collect();
        sites.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.site.cmp(&b.site)));
        sites.truncate(self.spec.sites);
        report.sites = sites;
        Ok(report)
    }

    /// Traced bytes summed over every process that answers now; `None` when none does in time.
    async fn read(&self) -> Result<Option<HeapReading>, SourceError> {
        let answers = {
            let _snapshot = self.snapshot.lock().await;
            self.ask_all("sample\n", SAMPLE_TIMEOUT).await
        };
        if answers.is_empty() {
            return Ok(None);
        }
        Ok(Some(HeapReading {
            bytes: answers.iter().map(|a| a.traced).sum(),
            blocks: None,
            harness_bytes: None,
            processes: Some(answers.len() as u32),
        }))
    }

    /// Asks every process with a socket in the folder, at once; the answers that came.
    async fn ask_all(&self, request: &str, bound: Duration) -> Vec<Answer> {
        let sockets = self.sockets();
        let asks = sockets.iter().map(|path| ask(path, request, bound));
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// The helpers' sockets, one per Python process that started one.
    fn sockets(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.folder.path()) else {
            return Vec::new();
        };
        let mut sockets: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "sock"))
            .take(MAX_PROCESSES)
            .collect();
        sockets.sort();
        sockets
    }

    /// What helpers wrote about failing to start, for the error.
    fn errors(&self) -> String {
        let Ok(entries) = std::fs::read_dir(self.folder.path()) else {
            return String::new();
        };
        let notes: Vec<String> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "error"))
            .take(4)
            .filter_map(|p| {
                let text = crate::process::log::tail_lines(&p, 1).join("");
                let pid = p.file_stem()?.to_string_lossy().into_owned();
                Some(format!("pid {pid}: {}", truncate(&text, MAX_SITE_TEXT)))
            })
            .collect();
        match notes.is_empty() {
            true => String::new(),
            false => format!(" (the helper failed to start: {})", notes.join("; ")),
        }
    }
}

/// A sample's heap reading. A server too busy to answer within [`SAMPLE_TIMEOUT`] leaves a gap
/// in the timeline, not an error: the figures the verdict judges come from the report after each
/// settle, and a server that is gone is the liveness probe's to report.
#[async_trait::async_trait]
impl HeapSource for std::sync::Arc<PythonHeap> {
    async fn read(&self) -> Result<Option<HeapReading>, SourceError> {
        PythonHeap::read(self).await
    }
}

/// One helper's answer; every field is checked, none trusted.
#[derive(Debug, Default, Deserialize)]
struct Answer {
    pid: u32,
    #[serde(default)]
    traced: i64,
    #[serde(default)]
    blocks: i64,
    #[serde(default)]
    sites: Vec<SiteGrowth>,
    #[serde(default)]
    took_s: f64,
}

/// Asks the helper at `path`; `None` when it does not answer in time or answers nonsense.
async fn ask(path: &Path, request: &str, bound: Duration) -> Option<Answer> {
    let exchange = async {
        let mut stream = UnixStream::connect(path).await.ok()?;
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut line = String::new();
        BufReader::new(stream.take(MAX_ANSWER))
            .read_line(&mut line)
            .await
            .ok()?;
        let answer: Answer = serde_json::from_str(&line).ok()?;
        (answer.traced >= 0 && answer.blocks >= 0).then_some(answer)
    };
    tokio::time::timeout(bound, exchange).await.ok().flatten()
}

fn gone(reason: &str) -> SourceError {
    SourceError::HeapProbe {
        probe: "python",
        reason: reason.into(),
    }
}

/// A site with its texts cut to a sane length.
fn bounded(mut site: SiteGrowth) -> SiteGrowth {
    site.site = truncate(&site.site, MAX_SITE_TEXT);
    site.traceback.truncate(64);
    for line in &mut site.traceback {
        *line = truncate(line, MAX_SITE_TEXT);
    }
    site
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_helper_goes_first_on_the_path_the_command_had() {
        let probe = PythonHeap::prepare(HeapSpec::default()).unwrap();
        let env: BTreeMap<String, OsString> = probe.environment(Some("/app/lib".into())).into_iter().collect();
        let folder = probe.folder.path().to_string_lossy().into_owned();
        assert_eq!(env["PYTHONPATH"], OsString::from(format!("{folder}:/app/lib")));
        assert_eq!(env["LEAKRUN_HEAP_DIR"], OsString::from(&folder));
        assert!(probe.folder.path().join("sitecustomize.py").is_file());
        let alone: BTreeMap<String, OsString> = probe.environment(None).into_iter().collect();
        assert_eq!(alone["PYTHONPATH"], OsString::from(folder));
    }

    #[test]
    fn long_site_texts_are_cut() {
        let site = bounded(SiteGrowth {
            site: "x".repeat(1000),
            traceback: vec!["y".repeat(1000); 100],
            bytes: 1,
            blocks: 1,
        });
        assert_eq!(site.site.chars().count(), MAX_SITE_TEXT + 1);
        assert_eq!(site.traceback.len(), 64);
    }
}
