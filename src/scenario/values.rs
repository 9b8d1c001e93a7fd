//! Checks of one value each — a flag, a bounded integer, a size, a duration, a choice among
//! names — that every part of validation shares: each records a [`Problem`] at the value's line
//! naming the key and what is valid, and falls back to the default so validation goes on.
//!
//! [`Problem`]: super::diagnostics::Problem

use std::time::Duration;

use super::diagnostics::Collector;
use super::raw::S;
use super::units::{RawSize, parse_duration, parse_size};

/// The lowest send rate other than 0, per second: a message every 1000 s. Below it the send
/// schedule's interval leaves the range a timer can hold.
pub const MIN_RATE: f64 = 0.001;

/// The most iterations a run may have: the leak fit (Theil–Sen, every pair of iterations) is
/// quadratic in them; 1000 keeps it under 4 MiB and a second per series.
pub const MAX_ITERATIONS: u64 = 1000;

/// The longest any one duration may be.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

pub fn size_value(
    c: &mut Collector<'_>,
    value: Option<&S<RawSize>>,
    key: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> u64 {
    let Some(v) = value else { return default };
    match parse_size(v.get_ref()) {
        Ok(bytes) if range.contains(&bytes) => bytes,
        Ok(bytes) => {
            c.at(
                v.span(),
                key,
                format!(
                    "{bytes} bytes is out of range; valid: {} to {}",
                    bytesize::ByteSize::b(*range.start()).display().iec(),
                    bytesize::ByteSize::b(*range.end()).display().iec()
                ),
            );
            default
        }
        Err(msg) => {
            c.at(v.span(), key, msg);
            default
        }
    }
}

pub fn flag(value: Option<&S<bool>>, default: bool) -> bool {
    value.map_or(default, |v| *v.get_ref())
}

pub fn int(
    c: &mut Collector<'_>,
    value: Option<&S<i64>>,
    key: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> u64 {
    let Some(v) = value else { return default };
    let n = *v.get_ref();
    if n < 0 || !range.contains(&(n as u64)) {
        c.at(
            v.span(),
            key,
            format!("{n} is out of range; valid: {} to {}", range.start(), range.end()),
        );
        return default;
    }
    n as u64
}

pub fn duration_value(
    c: &mut Collector<'_>,
    value: Option<&S<String>>,
    key: &str,
    default: Duration,
    nonzero: bool,
) -> Duration {
    let Some(v) = value else { return default };
    match parse_duration(v.get_ref()) {
        Ok(d) if nonzero && d.is_zero() => {
            c.at(v.span(), key, "must be longer than zero, e.g. \"1s\"");
            default
        }
        Ok(d) if d > MAX_DURATION => {
            c.at(
                v.span(),
                key,
                "is longer than the 24h leakrun allows for any one duration",
            );
            default
        }
        Ok(d) => d,
        Err(msg) => {
            c.at(v.span(), key, msg);
            default
        }
    }
}

pub fn choice<T: Copy>(
    c: &mut Collector<'_>,
    value: Option<&S<String>>,
    key: &str,
    choices: &[(&str, T)],
    default: T,
) -> T {
    let Some(v) = value else { return default };
    match choices.iter().find(|(name, _)| *name == v.get_ref().as_str()) {
        Some((_, chosen)) => *chosen,
        None => {
            let valid = choices
                .iter()
                .map(|(n, _)| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ");
            c.at(
                v.span(),
                key,
                format!("`{}` is not one of the valid values: {valid}", v.get_ref()),
            );
            default
        }
    }
}

/// `server.heap_sample`: 0 (no sampling), or 64 B to 1 GiB between samples on average.
pub fn heap_sample(c: &mut Collector<'_>, value: Option<&S<RawSize>>) -> u64 {
    const DEFAULT: u64 = super::model::DEFAULT_HEAP_SAMPLE;
    let bytes = size_value(c, value, "server.heap_sample", DEFAULT, 0..=1024 * 1024 * 1024);
    if let Some(value) = value
        && (1..64).contains(&bytes)
    {
        c.at(
            value.span(),
            "server.heap_sample",
            format!("{bytes} bytes is out of range; valid: 0 (no sampling) or 64 B to 1 GiB"),
        );
        return DEFAULT;
    }
    bytes
}
