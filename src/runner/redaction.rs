//! What a run copies into its result from the scenario, the sources of its values and the
//! target, with every secret taken out: URLs' credentials, values of variables and keys that name
//! a secret, URLs inside command lines.

use crate::results::TargetInfo;

/// The scenario as it goes into the result: no password, token or secret in it is written down —
/// not a URL's credentials (backend, server URLs, readiness), not an external server's
/// environment variables that name a secret, not a URL inside its command line.
pub(super) fn without_credentials(scenario: &crate::scenario::Scenario) -> crate::scenario::Scenario {
    use crate::naming::{is_secret_name, redact, redact_text};
    use crate::scenario::{CommandLine, ProcessSpec, Readiness, ServerSpec};
    let mut resolved = scenario.clone();
    resolved.backend.url = resolved.backend.url.map(|url| redact(&url));
    if let ServerSpec::External(spec) = &mut resolved.server {
        spec.ws_url = redact(&spec.ws_url);
        for url in [&mut spec.http_url, &mut spec.stats_url].into_iter().flatten() {
            *url = redact(url);
        }
        if let ProcessSpec::Command(command) = &mut spec.process {
            for (name, value) in command.env.iter_mut() {
                *value = if is_secret_name(name) {
                    "***".into()
                } else {
                    redact_text(value)
                };
            }
            match &mut command.line {
                CommandLine::Shell(line) => *line = redact_text(line),
                CommandLine::Argv(argv) => argv.iter_mut().for_each(|a| *a = redact_text(a)),
            }
            if let Readiness::Url(url) = &mut command.ready {
                *url = redact(url);
            }
        }
    }
    resolved
}

/// Where each value came from, as the result records it: URLs redacted, and the value of a key
/// or variable that names a secret replaced.
pub(super) fn sources_without_credentials(
    sources: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    use crate::naming::{is_secret_name, redact_text};
    sources
        .iter()
        .map(|(key, source)| {
            let last = key.rsplit('.').next().unwrap_or(key);
            let shown = match source.split_once('=') {
                Some((flag, _)) if is_secret_name(last) => format!("{flag}=***"),
                _ => redact_text(source),
            };
            (key.clone(), shown)
        })
        .collect()
}

/// The target's facts as the result records them: a URL in its command line is redacted.
pub(super) fn info_without_credentials(mut info: TargetInfo) -> TargetInfo {
    info.command = info.command.map(|c| crate::naming::redact_text(&c));
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_secret_of_an_external_server_is_copied_into_the_result() {
        let text = r#"name = "x"
[server]
target = "external"
command = "serve --cache redis://u:pw1@127.0.0.1:6379/ --port 8000"
ws_url = "ws://127.0.0.1:8000/ws/{room}"
stats_url = "http://127.0.0.1:8000/stats?token=pw2"
env = { DB_PASSWORD = "pw3", BROKER = "amqp://guest:pw4@127.0.0.1/", ROOMS = "2" }
[[rooms]]
name = "a"
  [[rooms.clients]]
  count = 1
"#;
        let scenario = crate::scenario::parse(std::path::Path::new("x.toml"), text).unwrap();
        let shown = serde_json::to_string(&without_credentials(&scenario)).unwrap();
        for secret in ["pw1", "pw2", "pw3", "pw4"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("\"ROOMS\":\"2\""), "{shown}");
        let sources = [
            (
                "backend.url".to_string(),
                "--set backend.url=\"redis://:pw5@127.0.0.1/\"".to_string(),
            ),
            (
                "server.env.API_TOKEN".to_string(),
                "--set server.env.API_TOKEN=pw6".to_string(),
            ),
            ("run.duration".to_string(), "--set run.duration=5s".to_string()),
        ]
        .into_iter()
        .collect();
        let shown = format!("{:?}", sources_without_credentials(&sources));
        assert!(
            !shown.contains("pw5") && !shown.contains("pw6") && shown.contains("run.duration=5s"),
            "{shown}"
        );
    }
}
