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

    /// Offers a sample; it is kept when it falls on the stride.
    pub fn push(&mut self, sample: T) {
        let keep = self.offered % self.stride == 0;
        self.offered += 1;
        if !keep {
            return;
        }
        if self.samples.len() == self.cap {
            let mut index = 0;
            self.samples.retain(|_| {
                index += 1;
                index % 2 == 1
            });
            self.stride *= 2;
            // The sample just offered is on the new stride only if its index is.
            if (self.offered - 1) % self.stride != 0 {
                return;
            }
        }
        self.samples.push(sample);
    }
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
