//! Units a scenario writes as strings: durations (`"30s"`, `"250ms"`) and sizes (`"10KiB"` or an
//! integer). Parsing lives here so every key that takes a unit reports the same kind of error.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A size written either as an integer number of bytes or as a string with a unit.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum RawSize {
    /// A plain number of bytes.
    Bytes(i64),
    /// A string such as `"10KiB"` or `"1 MB"`.
    Text(String),
}

/// What a duration looks like in the scenario's JSON Schema: numbers each with a unit, as `"30s"`,
/// `"250ms"` or `"1m 30s"` (the parser, humantime, judges the units themselves).
pub const DURATION_PATTERN: &str = r"^\s*([0-9]+\s*[A-Za-zµ]+\s*)+$";

/// Parses a duration such as `"1s"`, `"250ms"` or `"1m 30s"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|err| {
        format!("`{text}` is not a duration ({err}); write a number with a unit, e.g. \"30s\", \"250ms\", \"2m\"")
    })
}

/// Parses a size written as an integer or a string with a unit (`"10KiB"`, `"64"`, `"1 MB"`).
pub fn parse_size(raw: &RawSize) -> Result<u64, String> {
    match raw {
        RawSize::Bytes(n) if *n >= 0 => Ok(*n as u64),
        RawSize::Bytes(n) => Err(format!("{n} is negative; a size is a number of bytes, 0 or more")),
        RawSize::Text(text) => text
            .trim()
            .parse::<bytesize::ByteSize>()
            .map(|size| size.as_u64())
            .map_err(|_| {
                format!("`{text}` is not a size; write bytes as an integer or a string with a unit, e.g. 512, \"10KiB\", \"1MiB\"")
            }),
    }
}

/// Serde helpers that write a `Duration` the way a scenario does (`"1s 500ms"`).
pub mod duration_text {
    use super::*;

    /// Writes the duration as humantime text.
    pub fn serialize<S: serde::Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        humantime::format_duration(*value).to_string().serialize(serializer)
    }

    /// Reads humantime text back (used when a result file is read for `diff`).
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// The same as [`duration_text`] for an optional duration.
pub mod option_duration_text {
    use super::*;

    /// Writes the duration as humantime text, or null.
    pub fn serialize<S: serde::Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
        value
            .map(|d| humantime::format_duration(d).to_string())
            .serialize(serializer)
    }

    /// Reads humantime text or null back.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?;
        text.map(|t| parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m 30s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("30").unwrap_err().contains("not a duration"));
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn sizes_take_integers_and_units() {
        assert_eq!(parse_size(&RawSize::Bytes(64)).unwrap(), 64);
        assert_eq!(parse_size(&RawSize::Text("10KiB".into())).unwrap(), 10 * 1024);
        assert_eq!(parse_size(&RawSize::Text("1 MiB".into())).unwrap(), 1024 * 1024);
        assert!(parse_size(&RawSize::Bytes(-1)).is_err());
        assert!(parse_size(&RawSize::Text("big".into())).is_err());
    }
}
