//! The command line: parse arguments (clap), turn them into runner options, print what a person
//! reads, and map every outcome to one exit code. The library below never sees clap types.

pub mod entry;
pub mod environment;
pub mod files;
pub mod http_tools;
pub mod isolate;
pub mod pages;
pub mod progress;
pub mod report;
pub mod schema;

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::exit::Exit;
use crate::results::Status;
use crate::runner::{self, RunOptions};
use crate::scenario::{self, LoadError};

/// leakrun: run a leak or message-loss scenario against a WebSocket/HTTP server.
#[derive(Debug, Parser)]
#[command(name = "leakrun", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run scenarios and write results/<name>.json (the default: `leakrun FILE` = `leakrun run FILE`).
    Run {
        /// Scenario files, folders (every .toml beneath) or quoted glob patterns.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Folder for result files.
        #[arg(long, default_value = "results")]
        out: PathBuf,
        /// No progress bar (it is also hidden when stderr is not a terminal).
        #[arg(long)]
        no_progress: bool,
        /// Run on this channel layer instead of the scenario's.
        #[arg(long, value_name = "KIND", value_parser = clap::builder::PossibleValuesParser::new(["memory", "redis", "redis-lists", "amqp"]))]
        backend: Option<String>,
        /// Also write a JUnit XML report here: a test case per scenario and verdict.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Override any scenario key, e.g. `--set run.duration=5s` or
        /// `--set rooms[*].clients[0].count=50`; repeatable. Wins over the environment and the file.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// One scenario of a folder run, started by the folder run's own process.
        #[arg(long = "folder-child", hide = true)]
        folder_child: bool,
        /// Do not write results/<name>.html (the report) beside each result, nor a folder run's
        /// index.html.
        #[arg(long)]
        no_report: bool,
    },
    /// Write the HTML report of a result: memory, state, churn and losses, latency, HTTP and
    /// allocation sites on one time axis, self-contained (inline SVG and CSS). Given two files,
    /// BASE.json HEAD.json, the diff report: the verdict changes `leakrun diff` finds first, the
    /// figures that moved, then the two timelines overlaid (a baseline on either side: verdicts
    /// and figures only).
    Report {
        /// A result file (results/<name>.json), or two: BASE.json HEAD.json.
        #[arg(required = true, num_args = 1..=2, value_name = "RESULT.json")]
        results: Vec<PathBuf>,
        /// Where to write the report; default: beside the result, .html for .json (for two
        /// files: beside HEAD, .diff.html).
        #[arg(short = 'o', long = "output", value_name = "FILE.html")]
        output: Option<PathBuf>,
        /// For two files: relative change a figure must exceed to count, as `diff --tolerance`.
        #[arg(long, default_value_t = crate::diff::DEFAULT_TOLERANCE)]
        tolerance: f64,
    },
    /// List scenarios with what a CI matrix needs: file, name, backend, services to install.
    List {
        /// Scenario files, folders (every .toml beneath) or quoted glob patterns.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print a JSON array instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Parse and validate scenarios without running them.
    Check {
        /// Scenario files, folders (every .toml beneath) or quoted glob patterns.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Override scenario keys as `run` would, e.g. `--set run.duration=5s`; repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Compare two results of one scenario: verdict changes, then figures that moved.
    /// Exits 1 when a verdict got worse or a figure regressed past the tolerance.
    Diff {
        /// The earlier result (e.g. the base branch's).
        base: PathBuf,
        /// The later result.
        head: PathBuf,
        /// Output format.
        #[arg(long, default_value = "text", value_parser = clap::builder::PossibleValuesParser::new(["text", "markdown", "json"]))]
        format: String,
        /// Relative change a figure must exceed to count, e.g. 0.1 for 10%.
        #[arg(long, default_value_t = crate::diff::DEFAULT_TOLERANCE)]
        tolerance: f64,
    },
    /// Keep results as baselines: verdicts and the figures that mean the same on any machine
    /// (bytes per connection, messages lost per thousand), for `diff` in CI.
    Baseline {
        /// Result files.
        #[arg(required = true)]
        results: Vec<PathBuf>,
        /// Folder for the baselines.
        #[arg(long, default_value = "results/baseline")]
        out: PathBuf,
    },
    /// Serve the embedded server (hello, cache, chat) on a loopback port until Ctrl-C.
    Serve {
        /// Loopback address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Port; 0 for a free one (printed).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// The cache behind /cache/{key}.
        #[arg(long, default_value = "bounded", value_parser = clap::builder::PossibleValuesParser::new(["bounded", "unbounded"]))]
        cache: String,
    },
    /// Send HTTP load to one loopback URL with the driver of [[http]] workloads; print what it saw.
    Load {
        /// http://127.0.0.1:PORT/PATH (loopback only).
        url: String,
        /// Connections (closed model: each sends its next request when the last was answered).
        #[arg(short, long, default_value_t = 64)]
        connections: usize,
        /// How long to send.
        #[arg(short, long, default_value = "10s", value_parser = crate::scenario::units::parse_duration)]
        duration: std::time::Duration,
        /// Open model: requests per second on a schedule, over the connections.
        #[arg(long)]
        rate: Option<f64>,
        /// Stop after this many requests.
        #[arg(short = 'n', long)]
        requests: Option<u64>,
        /// Request method.
        #[arg(short, long, default_value = "GET", value_parser = clap::builder::PossibleValuesParser::new(["GET", "PUT", "POST", "DELETE"]))]
        method: String,
        /// Bytes of random text in each request body.
        #[arg(long, default_value_t = 0)]
        body: usize,
        /// A new connection for every request.
        #[arg(long)]
        no_keep_alive: bool,
        /// Bound on one request, from sending it to the end of its answer.
        #[arg(long, default_value = "10s", value_parser = crate::scenario::units::parse_duration)]
        timeout: std::time::Duration,
        /// Print the figures as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of scenario files (for editors: `leakrun schema > scenario.schema.json`).
    Schema,
}

/// Subcommand names, for the `leakrun FILE` shorthand.
const SUBCOMMANDS: &[&str] = &[
    "run", "check", "diff", "list", "baseline", "serve", "load", "schema", "report", "help",
];

/// Inserts `run` when the first argument is a file rather than a subcommand.
pub fn with_default_subcommand(mut args: Vec<String>) -> Vec<String> {
    if let Some(first) = args.get(1)
        && !first.starts_with('-')
        && !SUBCOMMANDS.contains(&first.as_str())
    {
        args.insert(1, "run".into());
    }
    args
}

/// Runs the parsed command and returns how it ended.
pub async fn execute(cli: Cli, cancel: CancellationToken) -> Exit {
    match cli.command {
        Command::Check { files, set } => {
            let files = match files::expand(&files) {
                Ok(files) => files,
                Err(message) => {
                    eprintln!("error: {message}");
                    return Exit::Usage;
                }
            };
            match overrides(&set) {
                Ok(overrides) => check(&files, &overrides),
                Err(message) => {
                    eprintln!("error: {message}");
                    Exit::Usage
                }
            }
        }
        Command::List { files, json } => list(&files, json),
        Command::Schema => schema::print(),
        Command::Report {
            results,
            output,
            tolerance,
        } => match results.as_slice() {
            [base, head] => pages::write_diff_report(base, head, output.as_deref(), tolerance),
            [result, ..] => pages::write_report(result, output.as_deref()),
            [] => Exit::Usage,
        },
        Command::Baseline { results, out } => match crate::diff::write_baselines(&results, &out) {
            Ok(written) => {
                for path in written {
                    println!("{}", path.display());
                }
                Exit::Pass
            }
            Err(message) => {
                eprintln!("error: {message}");
                Exit::Usage
            }
        },
        Command::Serve { host, port, cache } => {
            let cache = if cache == "unbounded" {
                scenario::CacheMode::Unbounded
            } else {
                scenario::CacheMode::Bounded
            };
            http_tools::serve(http_tools::ServeOptions { host, port, cache }, cancel).await
        }
        Command::Load {
            url,
            connections,
            duration,
            rate,
            requests,
            method,
            body,
            no_keep_alive,
            timeout,
            json,
        } => {
            let method = scenario::HttpMethod::ALL
                .iter()
                .find(|(name, _)| *name == method)
                .map_or(scenario::HttpMethod::Get, |(_, m)| *m);
            let options = http_tools::LoadOptions {
                url,
                method,
                body,
                connections,
                rate,
                duration,
                requests,
                no_keep_alive,
                timeout,
                json,
            };
            http_tools::load(options, cancel).await
        }
        Command::Diff {
            base,
            head,
            format,
            tolerance,
        } => diff(&base, &head, &format, tolerance),
        Command::Run {
            files,
            out,
            no_progress,
            backend,
            junit,
            set,
            folder_child,
            no_report,
        } => {
            let files = match files::expand(&files) {
                Ok(files) => files,
                Err(message) => {
                    eprintln!("error: {message}");
                    return Exit::Usage;
                }
            };
            let options = RunOptions {
                out_dir: out,
                progress: (!no_progress && std::io::stderr().is_terminal())
                    .then(|| progress::Bar::new() as std::sync::Arc<dyn runner::Progress>),
                cancel,
            };
            let flags = Flags {
                backend: backend.as_deref(),
                set: &set,
                junit: junit.as_deref(),
                folder_child,
                report: !no_report,
            };
            run(&files, &flags, &options).await
        }
    }
}

fn diff(base: &std::path::Path, head: &std::path::Path, format: &str, tolerance: f64) -> Exit {
    if !(tolerance.is_finite() && tolerance >= 0.0) {
        eprintln!("error: --tolerance {tolerance}: valid: a relative change of 0 or more, e.g. 0.1 for 10%");
        return Exit::Usage;
    }
    let diff = match crate::diff::compare_files(base, head, tolerance) {
        Ok(diff) => diff,
        Err(error) => {
            eprintln!("error: {error}");
            return Exit::Usage;
        }
    };
    match format {
        "markdown" => print!("{}", crate::diff::render_markdown(&diff)),
        "json" => match serde_json::to_string_pretty(&diff) {
            Ok(text) => println!("{text}"),
            Err(error) => {
                eprintln!("error: {error}");
                return Exit::Usage;
            }
        },
        _ => print!("{}", crate::diff::render_text(&diff)),
    }
    if diff.regressed() {
        Exit::VerdictFailed
    } else {
        Exit::Pass
    }
}

/// What the environment and the `--set` flags say over the files: environment first, so a flag
/// wins.
fn overrides(set: &[String]) -> anyhow::Result<Vec<scenario::Override>> {
    let environment = environment::Environment::load().map_err(anyhow::Error::msg)?;
    let mut all = scenario::overrides::from_environment(|name| environment.get(name));
    for argument in set {
        all.push(scenario::Override::from_flag(argument)?);
    }
    Ok(all)
}

fn check(files: &[PathBuf], overrides: &[scenario::Override]) -> Exit {
    let environment = match environment::Environment::load() {
        Ok(environment) => environment,
        Err(message) => {
            eprintln!("error: {message}");
            return Exit::Usage;
        }
    };
    for file in files {
        match scenario::load_with(file, overrides) {
            Ok(mut loaded) => {
                // A URL from the environment is checked as `run` would take it.
                if let Err(message) = resolve(&mut loaded, None, &environment) {
                    eprintln!("{}: {message}", file.display());
                    return Exit::Usage;
                }
                let s = &loaded.scenario;
                println!(
                    "ok  {}: `{}`, {} room(s), {} client(s), {} HTTP workload(s), {} iteration(s) of {}",
                    file.display(),
                    s.name,
                    s.rooms.len(),
                    s.client_count(),
                    s.http.len(),
                    s.run.iterations,
                    humantime::format_duration(s.run.duration)
                );
            }
            Err(error) => {
                eprint!("{}", render_load_error(&error));
                return Exit::Usage;
            }
        }
    }
    Exit::Pass
}

/// The `run` flags that shape what runs and what is written.
struct Flags<'a> {
    backend: Option<&'a str>,
    set: &'a [String],
    junit: Option<&'a std::path::Path>,
    folder_child: bool,
    /// Write each result's HTML report beside it.
    report: bool,
}

async fn run(files: &[PathBuf], flags: &Flags<'_>, options: &RunOptions) -> Exit {
    // Validate every file before running any, so a typo in the last one is not found an hour in.
    let environment = match environment::Environment::load() {
        Ok(environment) => environment,
        Err(message) => {
            eprintln!("error: {message}");
            return Exit::Usage;
        }
    };
    let overrides = match overrides(flags.set) {
        Ok(overrides) => overrides,
        Err(message) => {
            eprintln!("error: {message}");
            return Exit::Usage;
        }
    };
    for o in overrides.iter().filter(|o| o.source != "--set" && !flags.folder_child) {
        eprintln!(
            "{} overrides {} where a scenario sets it",
            crate::naming::redact_text(&o.describe()),
            o.key
        );
    }
    let mut loaded = Vec::new();
    for file in files {
        match scenario::load_with(file, &overrides) {
            Ok(mut s) => {
                if let Err(message) = resolve(&mut s, flags.backend, &environment) {
                    eprintln!("{}: {message}", file.display());
                    return Exit::Usage;
                }
                loaded.push(s)
            }
            Err(error) => {
                eprint!("{}", render_load_error(&error));
                return Exit::Usage;
            }
        }
    }
    // A folder that cannot take the result is found now, not after the run.
    if let Err(error) = crate::results::write::check_writable(&options.out_dir) {
        eprintln!(
            "error: --out {}: cannot write results there ({error}); valid: a folder leakrun can create files in",
            options.out_dir.display()
        );
        return Exit::Usage;
    }
    if let Some(path) = flags.junit {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if let Err(error) = crate::results::write::check_writable(dir) {
            eprintln!("error: --junit {}: cannot write there ({error})", path.display());
            return Exit::Usage;
        }
    }
    let mut worst = Exit::Pass;
    let mut finished = Vec::new();
    // Several scenarios: each in a process of its own, so none inherits another's memory.
    let isolated = loaded.len() > 1;
    let child_flags = isolate::ChildFlags {
        backend: flags.backend,
        set: flags.set,
        report: flags.report,
    };
    for scenario in &loaded {
        if options.cancel.is_cancelled() {
            break;
        }
        if !flags.folder_child {
            eprintln!("running {} ({})", scenario.scenario.name, scenario.path.display());
        }
        let file = scenario.path.display().to_string();
        let (exit, outcome) = if isolated {
            isolate::run_in_child(scenario, &child_flags, options).await
        } else {
            run_here(scenario, options, flags.report).await
        };
        if let Err(error) = &outcome
            && !isolated
        {
            eprintln!("error: {error:#}");
        }
        let (result, error) = match outcome {
            Ok(result) => (Some(result), None),
            Err(error) => (None, Some(format!("{error:#}"))),
        };
        finished.push(report::Finished { file, result, error });
        worst = worst.max(exit);
    }
    // The index line before the table, so the table stays the last block of the output.
    if isolated && flags.report && !flags.folder_child {
        match pages::write_index(&options.out_dir, &finished) {
            Ok(path) => println!("index    {}", path.display()),
            Err(error) => {
                eprintln!("error: the index: {error}");
                worst = worst.max(Exit::Infrastructure);
            }
        }
    }
    if finished.len() > 1 {
        print!("\n{}", report::table(&finished));
    }
    if let Some(path) = flags.junit
        && let Err(error) = report::write_junit(path, &finished)
    {
        eprintln!("error: {error:#}");
        worst = worst.max(Exit::Infrastructure);
    }
    worst
}

/// Runs one scenario in this process and prints its summary.
async fn run_here(
    scenario: &scenario::LoadedScenario,
    options: &RunOptions,
    report: bool,
) -> (Exit, anyhow::Result<crate::results::RunResult>) {
    match runner::run(scenario, options).await {
        Ok(outcome) => {
            print_summary(&outcome);
            let written = if report {
                let path = crate::report::path_beside(&outcome.path);
                crate::report::write(&path, &outcome.result).map(|()| println!("  report   {}", path.display()))
            } else {
                Ok(())
            };
            let exit = match outcome.result.status {
                Status::Pass => Exit::Pass,
                Status::Fail => Exit::VerdictFailed,
                Status::Error => Exit::Infrastructure,
                Status::Interrupted => Exit::Interrupted,
            };
            // A report that could not be written is the machine's fault, never the verdict's.
            let exit = match written {
                Ok(()) => exit,
                Err(error) => {
                    eprintln!("error: the report: {error}");
                    exit.max(Exit::Infrastructure)
                }
            };
            (exit, Ok(outcome.result))
        }
        Err(error @ runner::RunError::Busy(_)) => (Exit::Usage, Err(error.into())),
        Err(error) => (Exit::Infrastructure, Err(error.into())),
    }
}

fn list(args: &[PathBuf], json: bool) -> Exit {
    let files = match files::expand(args) {
        Ok(files) => files,
        Err(message) => {
            eprintln!("error: {message}");
            return Exit::Usage;
        }
    };
    let mut entries = Vec::new();
    for file in &files {
        match scenario::load(file) {
            Ok(loaded) => {
                let s = &loaded.scenario;
                // A backend without a URL starts a private server: the job must install it,
                // whether the embedded server's layer or an external server uses it.
                let external = s.server.external().is_some();
                let services: Vec<&str> = s.backend.kind.private_server().into_iter().collect();
                entries.push(serde_json::json!({
                    "file": file.display().to_string(),
                    "name": s.name,
                    "backend": if external { "external" } else { s.backend.kind.name() },
                    "services": services,
                    "expect": {"gaps": s.expect.gaps, "leak": s.expect.leak, "retention": s.expect.retention, "latency_breach": s.expect.latency_breach},
                }));
            }
            Err(error) => {
                eprint!("{}", render_load_error(&error));
                return Exit::Usage;
            }
        }
    }
    if json {
        println!("{}", serde_json::Value::Array(entries));
    } else {
        for e in &entries {
            println!(
                "{}  {}  {}  {}",
                e["file"].as_str().unwrap_or_default(),
                e["name"].as_str().unwrap_or_default(),
                e["backend"].as_str().unwrap_or_default(),
                e["services"]
                    .as_array()
                    .map(|s| s.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(","))
                    .unwrap_or_default()
            );
        }
    }
    Exit::Pass
}

/// Applies what the command line and the environment say over the file.
fn resolve(
    loaded: &mut scenario::LoadedScenario,
    backend: Option<&str>,
    environment: &environment::Environment,
) -> anyhow::Result<()> {
    use scenario::validate::{override_backend, url_from_environment};
    if let Some(name) = backend {
        let kind = scenario::BackendKind::from_name(name)
            .ok_or_else(|| anyhow::anyhow!("--backend {name}: valid: {}", scenario::BackendKind::valid_names()))?;
        let before = loaded.scenario.backend.url.clone();
        override_backend(&mut loaded.scenario, kind).map_err(anyhow::Error::msg)?;
        loaded
            .sources
            .insert("backend.kind".into(), format!("--backend {name}"));
        if before.is_some() && loaded.scenario.backend.url.is_none() {
            loaded
                .sources
                .insert("backend.url".into(), format!("--backend {name} (dropped)"));
        }
    }
    url_from_environment(&mut loaded.scenario, |name| environment.get(name)).map_err(anyhow::Error::msg)?;
    if let Some(source) = &loaded.scenario.backend.url_source
        && loaded.scenario.backend.url.is_some()
        && loaded.sources.get("backend.url").is_none_or(|s| s == "default")
    {
        loaded.sources.insert("backend.url".into(), source.clone());
    }
    Ok(())
}

fn print_summary(outcome: &runner::RunOutcome) {
    let r = &outcome.result;
    let status = match r.status {
        Status::Pass => "PASS",
        Status::Fail => "FAIL",
        Status::Error => "ERROR",
        Status::Interrupted => "INTERRUPTED",
    };
    println!(
        "{}: {} — {} iteration(s) in {:.1}s on {} → {}",
        r.scenario.name,
        status,
        r.iterations.len(),
        r.elapsed_s,
        r.backend.kind,
        outcome.path.display()
    );
    if let Some(error) = &r.error {
        println!("  error: {error}");
    }
    if let Some(verdicts) = &r.verdicts {
        for line in verdicts.lines() {
            println!("  {line}");
        }
    }
    for route in &r.http {
        println!("       http     {}", route.line());
    }
    for warning in &r.warnings {
        println!("  warning: {warning}");
    }
}

fn render_load_error(error: &LoadError) -> String {
    match error {
        LoadError::Invalid(problems) => problems.to_string(),
        other => format!("{other}\n"),
    }
}
