//! The sampler's timeline while the run lasts: each sample's fixed figures in a row, each
//! counter's name once, with its values in a column of its own.
//!
//! A [`Sample`] holds its counters in two maps with a key string per counter, so a kept sample
//! cost about a kilobyte; as the timeline refilled after each halving, leakrun's own memory rose
//! with it for an hour. Here the rows are allocated when the table is made and a column when its
//! counter first appears, and halving drops rows in place, so the table allocates nothing after
//! the counters are known, however long the run. [`SampleTable::into_timeline`] makes the
//! [`Timeline`] of samples the result holds once, at the end.

use std::collections::{BTreeMap, HashMap};

use super::sample::Sample;
use super::timeline::{Offer, Timeline, halve, offer};

/// A value a column does not have for a row (its counter was not read then).
const ABSENT: u64 = u64::MAX;

/// The fixed figures of one sample.
#[derive(Debug, Clone, Copy)]
struct Row {
    at_s: f64,
    rss_bytes: Option<u64>,
    rss_processes: Option<u32>,
    heap_bytes: Option<i64>,
    heap_blocks: Option<i64>,
    heap_processes: Option<u32>,
    harness_heap_bytes: Option<i64>,
    target_cpu: Option<f64>,
    leakrun_cpu: Option<f64>,
    cpu_window_s: Option<f64>,
}

impl Row {
    fn of(sample: &Sample) -> Self {
        Self {
            at_s: sample.at_s,
            rss_bytes: sample.rss_bytes,
            rss_processes: sample.rss_processes,
            heap_bytes: sample.heap_bytes,
            heap_blocks: sample.heap_blocks,
            heap_processes: sample.heap_processes,
            harness_heap_bytes: sample.harness_heap_bytes,
            target_cpu: sample.target_cpu,
            leakrun_cpu: sample.leakrun_cpu,
            cpu_window_s: sample.cpu_window_s,
        }
    }

    fn sample(&self) -> Sample {
        Sample {
            at_s: self.at_s,
            rss_bytes: self.rss_bytes,
            rss_processes: self.rss_processes,
            heap_bytes: self.heap_bytes,
            heap_blocks: self.heap_blocks,
            heap_processes: self.heap_processes,
            harness_heap_bytes: self.harness_heap_bytes,
            target_cpu: self.target_cpu,
            leakrun_cpu: self.leakrun_cpu,
            cpu_window_s: self.cpu_window_s,
            ..Sample::default()
        }
    }
}

/// One counter's values, a value per row.
#[derive(Debug)]
struct Column {
    name: String,
    /// A reference counter (`Sample::info`) rather than a judged one (`Sample::state`).
    info: bool,
    values: Vec<u64>,
}

/// Samples at an even stride, at most `cap` of them, kept as rows and columns.
#[derive(Debug)]
pub struct SampleTable {
    cap: usize,
    stride: u64,
    offered: u64,
    rows: Vec<Row>,
    columns: Vec<Column>,
    state_columns: HashMap<String, usize>,
    info_columns: HashMap<String, usize>,
}

impl SampleTable {
    /// An empty table keeping at most `cap` (at least 2) samples; its rows are allocated now.
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(2);
        Self {
            cap,
            stride: 1,
            offered: 0,
            rows: Vec::with_capacity(cap),
            columns: Vec::new(),
            state_columns: HashMap::new(),
            info_columns: HashMap::new(),
        }
    }

    /// Whether the next sample offered falls on the stride and will be kept: the sampler reads
    /// its probes for the table only then.
    pub fn keeps_next(&self) -> bool {
        self.offered % self.stride == 0
    }

    /// Counts a tick off the stride that was not read: the same as offering a sample it drops.
    pub fn pass(&mut self) {
        if !self.keeps_next() {
            self.offered += 1;
        }
    }

    /// Offers a sample; it is kept when it falls on the stride, as [`Timeline::push`] keeps one.
    pub fn push(&mut self, sample: &Sample) {
        match offer(&mut self.stride, &mut self.offered, self.rows.len(), self.cap) {
            Offer::Skip => return,
            Offer::Keep => {}
            Offer::Halve { keep } => {
                halve(&mut self.rows);
                self.columns.iter_mut().for_each(|c| halve(&mut c.values));
                if !keep {
                    return;
                }
            }
        }
        self.rows.push(Row::of(sample));
        let rows = self.rows.len();
        for column in &mut self.columns {
            column.values.push(ABSENT);
        }
        for (counters, info) in [(&sample.state, false), (&sample.info, true)] {
            for (name, &value) in counters {
                let column = self.column(name, info, rows);
                // u64::MAX marks an absent value; a counter that high reads one less.
                self.columns[column].values[rows - 1] = value.min(ABSENT - 1);
            }
        }
    }

    /// The index of counter `name`'s column, made (absent for the first `rows - 1` rows and
    /// with room for `cap`) when it is new.
    fn column(&mut self, name: &str, info: bool, rows: usize) -> usize {
        let index = if info {
            &mut self.info_columns
        } else {
            &mut self.state_columns
        };
        if let Some(&column) = index.get(name) {
            return column;
        }
        let mut values = Vec::with_capacity(self.cap);
        values.resize(rows, ABSENT);
        index.insert(name.to_string(), self.columns.len());
        self.columns.push(Column {
            name: name.to_string(),
            info,
            values,
        });
        self.columns.len() - 1
    }

    /// Samples kept.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether none is kept yet.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The timeline of samples, each with its counters by name.
    pub fn into_timeline(self) -> Timeline<Sample> {
        let samples = self
            .rows
            .iter()
            .enumerate()
            .map(|(row, fixed)| {
                let mut sample = fixed.sample();
                let (mut state, mut info) = (BTreeMap::new(), BTreeMap::new());
                for column in &self.columns {
                    let value = column.values[row];
                    if value != ABSENT {
                        let counters = if column.info { &mut info } else { &mut state };
                        counters.insert(column.name.clone(), value);
                    }
                }
                sample.state = state;
                sample.info = info;
                sample
            })
            .collect();
        Timeline::from_parts(samples, self.stride, self.offered, self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: u64) -> Sample {
        let mut state = BTreeMap::from([("connections".to_string(), i)]);
        // A counter that appears late and one that comes and goes.
        if i >= 5 {
            state.insert("late".to_string(), 100 + i);
        }
        let info = if i % 3 == 0 {
            BTreeMap::from([("connections".to_string(), 7 * i)])
        } else {
            BTreeMap::new()
        };
        Sample {
            at_s: i as f64,
            rss_bytes: Some(1000 + i),
            heap_bytes: (i % 2 == 0).then_some(-(i as i64)),
            target_cpu: Some(i as f64 / 10.0),
            state,
            info,
            ..Sample::default()
        }
    }

    #[test]
    fn the_table_gives_back_what_a_timeline_of_samples_keeps() {
        for (cap, offered) in [(8, 5), (8, 8), (8, 9), (8, 100), (7, 1000), (2, 3)] {
            let mut timeline = Timeline::new(cap);
            let mut table = SampleTable::new(cap);
            for i in 0..offered {
                timeline.push(sample(i));
                table.push(&sample(i));
            }
            let rows = table.len();
            let from_table = table.into_timeline();
            assert_eq!(rows, timeline.samples.len());
            assert_eq!(from_table.samples, timeline.samples, "cap {cap}, {offered} offered");
            assert_eq!(
                (from_table.stride, from_table.offered),
                (timeline.stride, timeline.offered)
            );
        }
    }

    #[test]
    fn offering_only_what_the_table_keeps_gives_the_same_timeline() {
        for (cap, offered) in [(8, 9), (8, 100), (7, 1000), (2, 3)] {
            let mut every = SampleTable::new(cap);
            let mut kept_only = SampleTable::new(cap);
            let mut read = 0;
            for i in 0..offered {
                every.push(&sample(i));
                if kept_only.keeps_next() {
                    read += 1;
                    kept_only.push(&sample(i));
                } else {
                    kept_only.pass();
                }
            }
            let (every, kept_only) = (every.into_timeline(), kept_only.into_timeline());
            assert_eq!(kept_only.samples, every.samples, "cap {cap}, {offered} offered");
            assert_eq!((kept_only.stride, kept_only.offered), (every.stride, every.offered));
            if offered >= 100 {
                assert!(read * 4 < offered, "{read} of {offered} read");
            }
        }
    }

    #[test]
    fn a_full_table_allocates_nothing_more() {
        let mut table = SampleTable::new(64);
        for i in 0..64 {
            table.push(&sample(i));
        }
        let capacities = |t: &SampleTable| {
            let mut all = vec![t.rows.capacity()];
            all.extend(t.columns.iter().map(|c| c.values.capacity()));
            all
        };
        let before = capacities(&table);
        assert_eq!(before, vec![64; 4], "rows and three columns, each its cap");
        for i in 64..10_000 {
            table.push(&sample(i));
        }
        assert_eq!(capacities(&table), before);
        assert!(table.len() <= 64 && table.len() >= 32);
    }

    #[test]
    fn a_counter_at_the_absent_mark_reads_one_less_not_absent() {
        let mut table = SampleTable::new(4);
        let mut s = sample(0);
        s.state.insert("huge".to_string(), u64::MAX);
        table.push(&s);
        let timeline = table.into_timeline();
        assert_eq!(timeline.samples[0].state["huge"], u64::MAX - 1);
    }
}
