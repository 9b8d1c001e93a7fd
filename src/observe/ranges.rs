//! A set of `u64` kept as sorted, disjoint half-open ranges: what a receiver remembers of a
//! sender's sequence numbers. In-order arrival extends the last range in place, so memory grows
//! with the number of holes, never with the number of messages. `u64::MAX` cannot be stored (a
//! half-open range could not end after it); inserting it is refused, never an overflow.

/// Sorted, disjoint, non-adjacent half-open ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<(u64, u64)>,
}

impl RangeSet {
    /// Adds `x`; false when it was already present, or is `u64::MAX`.
    pub fn insert(&mut self, x: u64) -> bool {
        if x == u64::MAX {
            return false;
        }
        // Fast path: the next value after the last range, or past it.
        if let Some(last) = self.ranges.last_mut() {
            if x == last.1 {
                last.1 += 1;
                return true;
            }
            if x > last.1 {
                self.ranges.push((x, x + 1));
                return true;
            }
            if x >= last.0 {
                return false;
            }
        } else {
            self.ranges.push((x, x + 1));
            return true;
        }
        self.insert_slow(x)
    }

    fn insert_slow(&mut self, x: u64) -> bool {
        // First range whose end is >= x.
        let i = self.ranges.partition_point(|&(_, end)| end < x);
        if i < self.ranges.len() && self.ranges[i].0 <= x && x < self.ranges[i].1 {
            return false;
        }
        let joins_prev = i < self.ranges.len() && self.ranges[i].1 == x;
        let joins_next_index = if joins_prev { i + 1 } else { i };
        let joins_next = joins_next_index < self.ranges.len() && self.ranges[joins_next_index].0 == x + 1;
        match (joins_prev, joins_next) {
            (true, true) => {
                self.ranges[i].1 = self.ranges[i + 1].1;
                self.ranges.remove(i + 1);
            }
            (true, false) => self.ranges[i].1 = x + 1,
            (false, true) => self.ranges[joins_next_index].0 = x,
            (false, false) => self.ranges.insert(i, (x, x + 1)),
        }
        true
    }

    /// True when `x` is in the set.
    pub fn contains(&self, x: u64) -> bool {
        let i = self.ranges.partition_point(|&(_, end)| end <= x);
        i < self.ranges.len() && self.ranges[i].0 <= x
    }

    /// Smallest value, if any.
    pub fn min(&self) -> Option<u64> {
        self.ranges.first().map(|r| r.0)
    }

    /// Largest value, if any.
    pub fn max(&self) -> Option<u64> {
        self.ranges.last().map(|r| r.1 - 1)
    }

    /// The missing half-open ranges between the smallest and largest value.
    pub fn holes(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.windows(2).map(|w| (w[0].1, w[1].0))
    }

    /// How many values are present.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|(a, b)| b - a).sum()
    }

    /// True when nothing was inserted.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// How many of `[from, to)` are present.
    pub fn count_within(&self, from: u64, to: u64) -> u64 {
        self.ranges
            .iter()
            .map(|&(a, b)| b.min(to).saturating_sub(a.max(from)))
            .sum()
    }

    /// The stored ranges, in order: `(first, end exclusive)`.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// Number of stored ranges (the memory it holds).
    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_stays_one_range() {
        let mut set = RangeSet::default();
        for x in 0..100_000 {
            assert!(set.insert(x));
        }
        assert_eq!(set.range_count(), 1);
        assert_eq!(set.len(), 100_000);
        assert!(!set.insert(500));
        assert!(!set.insert(u64::MAX), "the one value a half-open range cannot hold");
        assert!(set.insert(u64::MAX - 1));
        assert_eq!(set.max(), Some(u64::MAX - 1));
    }

    #[test]
    fn holes_fill_and_merge() {
        let mut set = RangeSet::default();
        for x in [0, 1, 2, 5, 6, 9] {
            set.insert(x);
        }
        assert_eq!(set.holes().collect::<Vec<_>>(), [(3, 5), (7, 9)]);
        assert!(set.insert(3));
        assert!(set.insert(4));
        assert_eq!(set.holes().collect::<Vec<_>>(), [(7, 9)]);
        assert!(set.insert(8));
        assert!(set.insert(7));
        assert_eq!(set.range_count(), 1);
        assert_eq!((set.min(), set.max()), (Some(0), Some(9)));
        assert!(set.contains(7) && !set.contains(10));
        assert!(set.insert(20) && set.insert(15) && !set.insert(15));
        assert_eq!(set.count_within(8, 16), 3);
    }

    #[test]
    fn matches_a_plain_set_on_shuffled_input() {
        let mut set = RangeSet::default();
        let mut plain = std::collections::BTreeSet::new();
        let mut x: u64 = 12345;
        for _ in 0..5000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let v = (x >> 33) % 700;
            assert_eq!(set.insert(v), plain.insert(v));
        }
        assert_eq!(set.len(), plain.len() as u64);
        for v in 0..700 {
            assert_eq!(set.contains(v), plain.contains(&v), "{v}");
        }
    }
}
