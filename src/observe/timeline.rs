//! A bounded, evenly down-sampled timeline: it keeps at most `cap` samples however long the run,
//! by dropping every other sample and doubling its stride each time it fills.

use serde::{Deserialize, Serialize};

/// Samples at an even stride, at most `cap` of them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timeline<T> {
    /// Kept samples, oldest first.
    pub samples: Vec<T>,
    /// One sample kept per this many offered.
    pub stride: u64,
    /// Samples offered in all.
    pub offered: u64,
    #[serde(skip)]
    cap: usize,
}

impl<T> Timeline<T> {
    /// An empty timeline keeping at most `cap` (at least 2) samples.
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(2);
        Self {
            samples: Vec::with_capacity(cap),
            stride: 1,
            offered: 0,
            cap,
        }
    }

    /// A timeline of `samples` kept at `stride` out of `offered`, at most `cap`.
    pub fn from_parts(samples: Vec<T>, stride: u64, offered: u64, cap: usize) -> Self {
        Self {
            samples,
            stride,
            offered,
            cap: cap.max(2),
        }
    }

    /// Offers a sample; it is kept when it falls on the stride.
    pub fn push(&mut self, sample: T) {
        match offer(&mut self.stride, &mut self.offered, self.samples.len(), self.cap) {
            Offer::Skip => {}
            Offer::Keep => self.samples.push(sample),
            Offer::Halve { keep } => {
                halve(&mut self.samples);
                if keep {
                    self.samples.push(sample);
                }
            }
        }
    }
}

/// What an even stride does with one offered sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Off the stride: dropped.
    Skip,
    /// On the stride: appended.
    Keep,
    /// The kept samples are full: every other one goes ([`halve`]) and the stride doubles; the
    /// sample offered is appended if `keep` (it is on the new stride).
    Halve {
        /// Whether the offered sample is appended after halving.
        keep: bool,
    },
}

/// The stride's decision on the next sample offered, with `kept` samples kept of at most `cap`;
/// `stride` and `offered` are the timeline's, updated.
pub fn offer(stride: &mut u64, offered: &mut u64, kept: usize, cap: usize) -> Offer {
    let on_stride = *offered % *stride == 0;
    *offered += 1;
    if !on_stride {
        return Offer::Skip;
    }
    if kept < cap {
        return Offer::Keep;
    }
    *stride *= 2;
    Offer::Halve {
        keep: (*offered - 1) % *stride == 0,
    }
}

/// Drops every other element in place (keeps the first, the third, ...); nothing is allocated.
pub fn halve<T>(values: &mut Vec<T>) {
    let mut index = 0;
    values.retain(|_| {
        index += 1;
        index % 2 == 1
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_an_even_stride_within_its_cap() {
        let mut timeline = Timeline::new(8);
        for i in 0..100u64 {
            timeline.push(i);
            assert!(timeline.samples.len() <= 8);
        }
        assert_eq!(timeline.offered, 100);
        let stride = timeline.stride;
        assert_eq!(stride, 16);
        assert!(
            timeline
                .samples
                .iter()
                .enumerate()
                .all(|(k, &v)| v == k as u64 * stride),
            "{:?}",
            timeline.samples
        );
    }

    #[test]
    fn short_runs_keep_everything() {
        let mut timeline = Timeline::new(10);
        (0..10).for_each(|i| timeline.push(i));
        assert_eq!(timeline.samples, (0..10).collect::<Vec<_>>());
        assert_eq!(timeline.stride, 1);
    }
}
