//! Whether leakrun itself was the limit: its own CPU over the samples of a run, against the cores
//! it may use.

use super::cpu::{MIN_SATURATED_S, SATURATED_SHARE};
use super::sampler::Sample;

/// A warning when leakrun's own CPU stayed at or above [`SATURATED_SHARE`](super::cpu::SATURATED_SHARE) of `cores` over
/// consecutive samples spanning at least [`MIN_SATURATED_S`](super::cpu::MIN_SATURATED_S): the longest such stretch.
pub fn saturation(samples: &[Sample], cores: f64) -> Option<String> {
    let limit = SATURATED_SHARE * cores;
    let (mut best, mut run) = (None::<(f64, f64, f64)>, None::<(f64, f64, f64)>);
    for sample in samples {
        match (sample.leakrun_cpu, sample.cpu_window_s) {
            (Some(cpu), Some(window)) if cpu >= limit => {
                let (start, length, busy) = run.unwrap_or((sample.at_s - window, 0.0, 0.0));
                let next = (start, length + window, busy + cpu * window);
                run = Some(next);
                if best.is_none_or(|b| next.1 > b.1) {
                    best = Some(next);
                }
            }
            _ => run = None,
        }
    }
    let (start, length, busy) = best.filter(|b| b.1 >= MIN_SATURATED_S)?;
    Some(format!(
        "leakrun itself was saturated: its process kept {:.2} of the {cores:.0} core(s) it may use busy for {length:.1}s from {start:.1}s, so the load it offered and the latencies it measured are bounded by its own work: its figures are a lower bound of what the server can take",
        busy / length
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_s: f64, cpu: f64) -> Sample {
        Sample {
            at_s,
            leakrun_cpu: Some(cpu),
            cpu_window_s: Some(0.25),
            ..Sample::default()
        }
    }

    #[test]
    fn only_a_long_enough_stretch_is_saturation() {
        let burst: Vec<Sample> = (1..=3).map(|i| sample(i as f64 * 0.25, 1.95)).collect();
        assert_eq!(saturation(&burst, 2.0), None, "0.75 s is a burst");
        let mut long: Vec<Sample> = (1..=8).map(|i| sample(i as f64 * 0.25, 1.9)).collect();
        long.push(sample(2.25, 0.5));
        let warning = saturation(&long, 2.0).expect("2 s at 1.9 of 2 cores");
        assert!(
            warning.contains("1.90 of the 2 core(s)") && warning.contains("for 2.0s from 0.0s"),
            "{warning}"
        );
        assert_eq!(saturation(&long, 4.0), None, "1.9 of 4 cores is not saturated");
    }
}
