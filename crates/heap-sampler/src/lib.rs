//! leakrun's sampled allocation table, shared by the counting allocator inside leakrun (its
//! embedded server's heap) and the library it preloads into a server it starts
//! (`server.heap = "malloc"`).
//!
//! One allocation is sampled per [`Region::set_mean`] bytes allocated on average: the gaps between
//! sampling points are exponential draws over the running total of allocated bytes, as jemalloc's
//! `prof.lg_sample` does, so an allocation is sampled with probability `1 - exp(-size / mean)`
//! whatever the sizes around it, and weighing it by the inverse of that probability makes the sum
//! of the live samples' weights an unbiased estimate of the live bytes per call stack.
//!
//! A sampled allocation's call stack and weight stay in the [`Region`] while the block is live; the
//! free of a sampled block takes it out. A pointer's key hashes to a bucket of the key table, but
//! its record is taken from the front of the slot table (freed records are reused first), so the
//! records it touches follow the most samples live at once, not how far apart the sampled
//! addresses lie, and the key table (512 KiB) is faulted in whole when sampling starts: a process
//! that runs for hours does not fault in more of the region as it goes.
//!
//! The region is plain atomics in a `#[repr(C)]` layout, so it can live in a static (leakrun's own
//! process) or in a shared-memory file another process maps (the preloaded library publishes its
//! region that way, and leakrun reads it). Nothing here allocates: it runs inside `malloc`.

#![deny(missing_docs)]

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering, fence};

/// Slots for live sampled allocations.
pub const SLOTS: usize = 1 << 16;
/// Slots per bucket: a pointer hashes to one bucket (one cache line of keys) and lives in any of
/// its slots, so a free looks at one cache line and a removal needs no tombstone.
pub const BUCKET: usize = 8;
/// Return addresses kept per sampled allocation, innermost first.
pub const DEPTH: usize = 40;
/// Marks a region's header.
pub const MAGIC: u64 = u64::from_le_bytes(*b"LKRHEAP1");
/// Layout version; a reader refuses another.
pub const VERSION: u32 = 4;
/// Bytes kept of the process's executable path.
pub const EXE_BYTES: usize = 256;

/// Set when `malloc` resolves to another definition than the preloaded library's (a server that
/// links its own allocator): the library then never sees the server allocate.
pub const FLAG_MALLOC_ELSEWHERE: u64 = 1;
/// Set once the region is initialised and published.
pub const FLAG_READY: u64 = 2;

/// A key slot that holds no allocation.
const EMPTY: u64 = 0;
/// A key slot being written.
const BUSY: u64 = 1;
/// A key holds the pointer in its low bits and the index of its record above them (user-space
/// addresses stay below 2^47 on x86-64 and aarch64; a pointer above this is not sampled).
const POINTER_BITS: u32 = 48;
const POINTER_MASK: u64 = (1 << POINTER_BITS) - 1;
const _: () = assert!(SLOTS <= 1 << (64 - POINTER_BITS));

/// The region's first page: identity, counters and sampling state.
#[repr(C, align(4096))]
pub struct Header {
    /// [`MAGIC`].
    pub magic: AtomicU64,
    /// [`VERSION`].
    pub version: AtomicU32,
    /// The process that writes the region.
    pub pid: AtomicU32,
    /// [`FLAG_MALLOC_ELSEWHERE`], [`FLAG_READY`].
    pub flags: AtomicU64,
    /// Mean bytes between samples; 0: sampling off.
    pub sample_mean: AtomicU64,
    /// Samples taken.
    pub samples: AtomicU64,
    /// Samples that found their bucket full and were not kept.
    pub samples_dropped: AtomicU64,
    /// The executable's path, NUL-padded.
    pub exe: [AtomicU64; EXE_BYTES / 8],
    /// Held while a sample's stack is captured: one at a time, and never from inside itself.
    /// Its holder is the only one that takes records off the free list.
    busy: AtomicBool,
    /// Records at the front of the slot table ever used; the rest have never been touched.
    used_slots: AtomicU32,
    /// The free list of used records: the index of its first plus one, 0 when empty.
    free_head: AtomicU32,
}

/// Counters of the allocations made on one CPU, on a cache line of their own, so that threads
/// on different cores never write the same line (the counters are summed by the reader; a block
/// freed on another CPU than the one that allocated it is subtracted there, and the sum stays
/// right).
#[repr(C, align(64))]
pub struct Shard {
    /// Live bytes (usable sizes) allocated here, less those freed here.
    pub live_bytes: AtomicI64,
    /// Live blocks, likewise.
    pub live_blocks: AtomicI64,
    /// Bytes allocated here since the process started: this CPU's sampling clock.
    pub allocated: AtomicU64,
    /// The value of `allocated` at which this CPU's next sample is taken.
    pub next_sample_at: AtomicU64,
    /// State of this CPU's random draws.
    pub rng: AtomicU64,
}

/// CPUs with a shard of their own (more share by their number modulo this).
pub const SHARDS: usize = 64;

/// One sampled allocation's record.
#[repr(C)]
pub struct Slot {
    /// Odd while the record is written (a reader that sees it change skips the record).
    seq: AtomicU32,
    /// While the record is free: the next free record's index plus one (0: none).
    next_free: AtomicU32,
    /// Estimated live bytes it stands for (its size over its sampling probability).
    pub weight: AtomicU64,
    /// Its usable size.
    pub size: AtomicU64,
    /// Return addresses kept.
    pub depth: AtomicU64,
    /// Return addresses, innermost first.
    pub frames: [AtomicU64; DEPTH],
}

/// The whole shared layout: header, the per-CPU counters, the keys (per bucket entry a pointer
/// and its record's index, [`EMPTY`] or [`BUSY`]), the records.
#[repr(C)]
pub struct Region {
    /// Identity and settings.
    pub header: Header,
    shards: [Shard; SHARDS],
    keys: [AtomicU64; SLOTS],
    slots: [Slot; SLOTS],
}

/// Bytes a region takes (the size of the shared file).
pub const REGION_BYTES: usize = std::mem::size_of::<Region>();

/// A live sampled allocation as a reader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSample {
    /// Estimated live bytes it stands for.
    pub weight: u64,
    /// Its usable size.
    pub size: u64,
    /// Return addresses, innermost first.
    pub frames: Vec<u64>,
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const SHARD: Shard = Shard {
    live_bytes: AtomicI64::new(0),
    live_blocks: AtomicI64::new(0),
    allocated: ZERO,
    next_sample_at: ZERO,
    rng: ZERO,
};
#[allow(clippy::declare_interior_mutable_const)]
const SLOT: Slot = Slot {
    seq: AtomicU32::new(0),
    next_free: AtomicU32::new(0),
    weight: ZERO,
    size: ZERO,
    depth: ZERO,
    frames: [ZERO; DEPTH],
};

impl Region {
    /// An empty region, sampling off, all zero (so a static of it takes no space in the binary);
    /// [`Region::initialise`] gives it an identity.
    pub const fn new() -> Self {
        Region {
            header: Header {
                magic: AtomicU64::new(0),
                version: AtomicU32::new(0),
                pid: AtomicU32::new(0),
                flags: AtomicU64::new(0),
                sample_mean: AtomicU64::new(0),
                samples: AtomicU64::new(0),
                samples_dropped: AtomicU64::new(0),
                exe: [ZERO; EXE_BYTES / 8],
                busy: AtomicBool::new(false),
                used_slots: AtomicU32::new(0),
                free_head: AtomicU32::new(0),
            },
            shards: [SHARD; SHARDS],
            keys: [ZERO; SLOTS],
            slots: [SLOT; SLOTS],
        }
    }

    /// An empty region on the heap (it is too large for a thread's stack), for a reader of
    /// its own or a test.
    pub fn boxed() -> Box<Region> {
        let layout = std::alloc::Layout::new::<Region>();
        // SAFETY: zeroed memory is a valid region of atomics (the state `Region::new` gives);
        // the layout is the region's own, and a null allocation is reported, not used.
        unsafe {
            let memory = std::alloc::alloc_zeroed(layout) as *mut Region;
            if memory.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            Box::from_raw(memory)
        }
    }

    /// Views zeroed or previously written shared memory as a region.
    ///
    /// # Safety
    /// `memory` must be [`REGION_BYTES`] long, page-aligned, and stay mapped for `'a`.
    pub unsafe fn from_memory<'a>(memory: *const u8) -> &'a Region {
        // SAFETY: the caller's promise; every field is an atomic, valid for any bit pattern.
        unsafe { &*(memory as *const Region) }
    }

    /// Writes the identity into a zeroed region (the preloaded library, on a fresh page).
    pub fn initialise(&self, pid: u32, exe: &[u8], seed: u64) {
        let h = &self.header;
        h.magic.store(MAGIC, Ordering::Relaxed);
        h.version.store(VERSION, Ordering::Relaxed);
        h.pid.store(pid, Ordering::Relaxed);
        for (i, shard) in self.shards.iter().enumerate() {
            shard.rng.store(
                (seed ^ (i as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)) | 1,
                Ordering::Relaxed,
            );
        }
        let mut word = [0u8; 8];
        for (i, chunk) in exe.chunks(8).take(EXE_BYTES / 8 - 1).enumerate() {
            word.fill(0);
            word[..chunk.len()].copy_from_slice(chunk);
            h.exe[i].store(u64::from_le_bytes(word), Ordering::Relaxed);
        }
    }

    /// Whether the region has the expected magic and layout version.
    pub fn is_valid(&self) -> bool {
        self.header.magic.load(Ordering::Relaxed) == MAGIC && self.header.version.load(Ordering::Relaxed) == VERSION
    }

    /// The executable path written into the header.
    pub fn exe(&self) -> Vec<u8> {
        let mut bytes: Vec<u8> = self
            .header
            .exe
            .iter()
            .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
            .collect();
        let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        bytes.truncate(end);
        bytes
    }

    /// Sets the mean bytes between samples (0 turns sampling off) and draws each CPU's first
    /// point. Turning sampling on faults in the whole key table first (`fault_in_keys`).
    pub fn set_mean(&self, mean: u64) {
        if mean > 0 {
            self.fault_in_keys();
        }
        self.header.sample_mean.store(mean, Ordering::Relaxed);
        for (i, shard) in self.shards.iter().enumerate() {
            if shard.rng.load(Ordering::Relaxed) == 0 {
                shard
                    .rng
                    .store(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1), Ordering::Relaxed);
            }
            if mean > 0 {
                let at = shard.allocated.load(Ordering::Relaxed) + draw(&shard.rng, mean);
                shard.next_sample_at.store(at, Ordering::Relaxed);
            }
        }
    }

    /// Writes to every page of the key table, so all of it is resident from the moment sampling
    /// starts. A key's bucket is a hash of its pointer, so without this each new bucket hit
    /// faulted in one more page: the table's 512 KiB came in a page at a time over the first
    /// half hour of a run and read as the process's RSS rising (leakrun's own in a soak, and a
    /// server's where the preloaded library samples it).
    ///
    /// The write is a real one: an empty key is claimed and given back (an inserter meeting it
    /// claimed takes the next key of its bucket; readers skip it). A key that holds a sample is on
    /// a page already resident. An atomic add or or of zero would not do: the optimiser turns it
    /// into a read, which maps the shared zero page and leaves RSS as it was.
    fn fault_in_keys(&self) {
        const KEYS_PER_PAGE: usize = 4096 / std::mem::size_of::<AtomicU64>();
        for key in self.keys.iter().step_by(KEYS_PER_PAGE).chain(self.keys.last()) {
            if key
                .compare_exchange(EMPTY, BUSY, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                key.store(EMPTY, Ordering::Release);
            }
        }
    }

    /// The counters of the CPU the calling thread runs on.
    #[inline]
    fn shard(&self) -> &Shard {
        // SAFETY: sched_getcpu has no preconditions (glibc reads it from rseq, or the vDSO).
        let cpu = unsafe { libc::sched_getcpu() };
        &self.shards[(cpu.max(0) as usize) % SHARDS]
    }

    /// Counts a new live block of `size` usable bytes (the preloaded library's counters).
    #[inline]
    pub fn count_alloc(&self, size: u64) {
        let shard = self.shard();
        shard.live_bytes.fetch_add(size as i64, Ordering::Relaxed);
        shard.live_blocks.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a freed block of `size` usable bytes.
    #[inline]
    pub fn count_free(&self, size: u64) {
        let shard = self.shard();
        shard.live_bytes.fetch_sub(size as i64, Ordering::Relaxed);
        shard.live_blocks.fetch_sub(1, Ordering::Relaxed);
    }

    /// Live bytes, summed over the CPUs.
    pub fn live_bytes(&self) -> i64 {
        self.shards.iter().map(|s| s.live_bytes.load(Ordering::Relaxed)).sum()
    }

    /// Live blocks, summed over the CPUs.
    pub fn live_blocks(&self) -> i64 {
        self.shards.iter().map(|s| s.live_blocks.load(Ordering::Relaxed)).sum()
    }

    /// Bytes allocated since the start, summed over the CPUs.
    pub fn allocated(&self) -> u64 {
        self.shards.iter().map(|s| s.allocated.load(Ordering::Relaxed)).sum()
    }

    /// Starts the counters at `live_bytes`, `live_blocks` and `allocated` (a forked child starts
    /// where its parent stood).
    pub fn start_at(&self, live_bytes: i64, live_blocks: i64, allocated: u64) {
        for shard in &self.shards {
            shard.live_bytes.store(0, Ordering::Relaxed);
            shard.live_blocks.store(0, Ordering::Relaxed);
            shard.allocated.store(0, Ordering::Relaxed);
        }
        let first = &self.shards[0];
        first.live_bytes.store(live_bytes, Ordering::Relaxed);
        first.live_blocks.store(live_blocks, Ordering::Relaxed);
        first.allocated.store(allocated, Ordering::Relaxed);
    }

    /// Advances this CPU's sampling clock by an allocation of `size` bytes; true when that
    /// allocation is to be sampled (exactly one caller wins each sampling point).
    #[inline]
    pub fn should_sample(&self, size: u64) -> bool {
        let mean = self.header.sample_mean.load(Ordering::Relaxed);
        if mean == 0 {
            return false;
        }
        let shard = self.shard();
        let total = shard.allocated.fetch_add(size, Ordering::Relaxed).wrapping_add(size);
        let next = shard.next_sample_at.load(Ordering::Relaxed);
        if total < next {
            return false;
        }
        let following = total.wrapping_add(draw(&shard.rng, mean));
        shard
            .next_sample_at
            .compare_exchange(next, following, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// Records a sampled allocation at `ptr` of `size` usable bytes, its stack captured by
    /// `capture` into the buffer it is given (returns how many frames it wrote). Skipped when
    /// another sample is being taken (also from inside `capture`, which may allocate).
    pub fn record(&self, ptr: usize, size: u64, capture: impl FnOnce(&mut [u64; DEPTH]) -> usize) -> bool {
        let h = &self.header;
        if h.busy.swap(true, Ordering::Acquire) {
            return false;
        }
        let mut frames = [0u64; DEPTH];
        let depth = capture(&mut frames).min(DEPTH);
        let kept = self.insert(ptr as u64, size, &frames[..depth]);
        h.busy.store(false, Ordering::Release);
        h.samples.fetch_add(1, Ordering::Relaxed);
        if !kept {
            h.samples_dropped.fetch_add(1, Ordering::Relaxed);
        }
        kept
    }

    /// Takes `ptr` out of the table if it was sampled; true if it was.
    #[inline]
    pub fn forget(&self, ptr: usize) -> bool {
        let ptr = ptr as u64;
        let start = bucket(ptr);
        for key in &self.keys[start..start + BUCKET] {
            let held = key.load(Ordering::Relaxed);
            if held > BUSY && held & POINTER_MASK == ptr {
                if key
                    .compare_exchange(held, EMPTY, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    return false;
                }
                self.give_back((held >> POINTER_BITS) as u32);
                return true;
            }
        }
        false
    }

    /// Records ever used, from the front of the slot table: the part of it the process touched.
    pub fn used_slots(&self) -> u32 {
        self.header.used_slots.load(Ordering::Relaxed)
    }

    /// A free record: the first on the free list, else the next never used. Only the holder of
    /// `busy` calls this, so no other thread takes a record off the list while it reads it
    /// (pushes may race, and only make the exchange retry): the list has no ABA.
    fn take_slot(&self) -> Option<u32> {
        let h = &self.header;
        loop {
            let head = h.free_head.load(Ordering::Acquire);
            if head == 0 {
                break;
            }
            let next = self.slots[(head - 1) as usize].next_free.load(Ordering::Relaxed);
            if h.free_head
                .compare_exchange(head, next, Ordering::Acquire, Ordering::Acquire)
                .is_ok()
            {
                return Some(head - 1);
            }
        }
        let fresh = h.used_slots.load(Ordering::Relaxed);
        if fresh as usize >= SLOTS {
            return None;
        }
        h.used_slots.store(fresh + 1, Ordering::Relaxed);
        Some(fresh)
    }

    /// Puts record `index` back on the free list (any thread).
    fn give_back(&self, index: u32) {
        let h = &self.header;
        let slot = &self.slots[index as usize];
        let mut head = h.free_head.load(Ordering::Relaxed);
        loop {
            slot.next_free.store(head, Ordering::Relaxed);
            match h
                .free_head
                .compare_exchange_weak(head, index + 1, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    fn insert(&self, ptr: u64, size: u64, frames: &[u64]) -> bool {
        if ptr <= BUSY || ptr > POINTER_MASK {
            return false;
        }
        let start = bucket(ptr);
        for at in start..start + BUCKET {
            let key = &self.keys[at];
            if key
                .compare_exchange(EMPTY, BUSY, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            let Some(index) = self.take_slot() else {
                key.store(EMPTY, Ordering::Release);
                return false;
            };
            let slot = &self.slots[index as usize];
            let seq = slot.seq.load(Ordering::Relaxed);
            slot.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
            fence(Ordering::Release);
            let mean = self.header.sample_mean.load(Ordering::Relaxed).max(1);
            slot.weight.store(weight(size, mean), Ordering::Relaxed);
            slot.size.store(size, Ordering::Relaxed);
            slot.depth.store(frames.len() as u64, Ordering::Relaxed);
            for (cell, pc) in slot.frames.iter().zip(frames) {
                cell.store(*pc, Ordering::Relaxed);
            }
            slot.seq.store(seq.wrapping_add(2), Ordering::Release);
            key.store(ptr | (index as u64) << POINTER_BITS, Ordering::Release);
            return true;
        }
        false
    }

    /// The live sampled allocations now. A record changing while it is read is skipped.
    pub fn live(&self) -> Vec<LiveSample> {
        let mut live = Vec::new();
        for key in self.keys.iter() {
            let first = key.load(Ordering::Acquire);
            if first <= BUSY {
                continue;
            }
            let slot = &self.slots[(first >> POINTER_BITS) as usize];
            let seq = slot.seq.load(Ordering::Acquire);
            if seq % 2 == 1 {
                continue;
            }
            let depth = (slot.depth.load(Ordering::Relaxed) as usize).min(DEPTH);
            let sample = LiveSample {
                weight: slot.weight.load(Ordering::Relaxed),
                size: slot.size.load(Ordering::Relaxed),
                frames: slot.frames[..depth].iter().map(|f| f.load(Ordering::Relaxed)).collect(),
            };
            fence(Ordering::Acquire);
            if slot.seq.load(Ordering::Relaxed) == seq && key.load(Ordering::Relaxed) == first {
                live.push(sample);
            }
        }
        live
    }
}

impl Default for Region {
    fn default() -> Self {
        Self::new()
    }
}

/// An exponential draw with mean `mean` from the xorshift64* state `rng` (races between threads
/// on one CPU only mix the state further).
fn draw(rng: &AtomicU64, mean: u64) -> u64 {
    let mut x = rng.load(Ordering::Relaxed);
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng.store(x, Ordering::Relaxed);
    let bits = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
    // Uniform in (0, 1]: never ln(0).
    let uniform = (bits as f64 + 1.0) / (1u64 << 53) as f64;
    (-uniform.ln() * mean as f64).min(u64::MAX as f64 / 4.0) as u64
}

/// The bucket a pointer lives in (its first slot).
#[inline]
fn bucket(ptr: u64) -> usize {
    let hash = (ptr >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((hash >> 40) as usize % (SLOTS / BUCKET)) * BUCKET
}

/// The live bytes one sample of `size` stands for when one is taken per `mean` bytes on average:
/// its size over the probability it was sampled.
pub fn weight(size: u64, mean: u64) -> u64 {
    let size_f = size.max(1) as f64;
    let probability = 1.0 - (-size_f / mean as f64).exp();
    (size_f / probability.max(f64::MIN_POSITIVE)).round() as u64
}

/// Captures the calling thread's return addresses, innermost first, skipping `skip` frames.
/// Uses the unwinder without a lock and without allocating in the common case.
pub fn capture_stack(skip: usize, frames: &mut [u64; DEPTH]) -> usize {
    let mut seen = 0usize;
    let mut kept = 0usize;
    // SAFETY: trace_unsynchronized requires that no other unwinding is racing through the
    // same non-reentrant state; the busy flag of the region keeps captures one at a time, and
    // the system unwinder it uses is thread-safe.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            // The outermost frame of a thread reads as address 0: the stack ends there.
            if frame.ip().is_null() {
                return false;
            }
            seen += 1;
            if seen > skip {
                frames[kept] = frame.ip() as u64;
                kept += 1;
            }
            kept < DEPTH
        });
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region() -> Box<Region> {
        Region::boxed()
    }

    #[test]
    fn a_sampled_block_is_live_until_it_is_forgotten() {
        let r = region();
        r.header.sample_mean.store(1024, Ordering::Relaxed);
        assert!(r.record(0x1000, 64, |f| {
            f[0] = 7;
            f[1] = 8;
            2
        }));
        let live = r.live();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].frames, vec![7, 8]);
        assert_eq!(live[0].size, 64);
        assert!(r.forget(0x1000));
        assert!(!r.forget(0x1000));
        assert!(r.live().is_empty());
    }

    #[test]
    fn records_come_from_the_front_however_far_apart_the_pointers() {
        // Ten live at a time over 20,000 addresses spread across the key table: the records
        // used stay the first ten (before, each address had the record beside its key, and the
        // pages touched grew with every new bucket hit: leakrun's own RSS in an hour's soak).
        let r = region();
        r.header.sample_mean.store(1024, Ordering::Relaxed);
        let pointer = |i: usize| 0x7f00_0000_0000 + i * 4096 * 7 + 16;
        for i in 0..20_000 {
            assert!(r.record(pointer(i), 64, |f| {
                f[0] = i as u64;
                1
            }));
            if i >= 10 {
                assert!(r.forget(pointer(i - 10)));
            }
        }
        assert_eq!(r.used_slots(), 11);
        let mut frames: Vec<u64> = r.live().iter().map(|s| s.frames[0]).collect();
        frames.sort_unstable();
        assert_eq!(frames, (19_990..20_000).collect::<Vec<u64>>());
        for i in 19_990..20_000 {
            assert!(r.forget(pointer(i)));
        }
        assert!(r.live().is_empty());
    }

    /// Whether each 4 KiB page from `start` for `bytes` is mapped, from `/proc/self/pagemap`
    /// (its "present" bit, readable without privileges).
    fn pages_present(start: usize, bytes: usize) -> Vec<bool> {
        use std::io::{Read, Seek, SeekFrom};
        let first = start / 4096;
        let last = (start + bytes - 1) / 4096;
        let mut map = std::fs::File::open("/proc/self/pagemap").expect("pagemap");
        map.seek(SeekFrom::Start(first as u64 * 8)).expect("seek");
        let mut entries = vec![0u8; (last - first + 1) * 8];
        map.read_exact(&mut entries).expect("read");
        entries
            .chunks(8)
            .map(|e| u64::from_le_bytes(e.try_into().unwrap()) >> 63 == 1)
            .collect()
    }

    #[test]
    fn turning_sampling_on_makes_the_whole_key_table_resident_at_once() {
        // A region on a mapping of its own (the heap may hand out a reused, already written
        // block): nothing of its key table is mapped until written.
        // SAFETY: a fresh private anonymous mapping of the region's size, unmapped at the end.
        let memory = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                REGION_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(memory, libc::MAP_FAILED);
        // SAFETY: page-aligned, REGION_BYTES long, zeroed, mapped until the munmap below.
        let r = unsafe { Region::from_memory(memory as *const u8) };
        let start = r.keys.as_ptr() as usize;
        let bytes = std::mem::size_of_val(&r.keys);
        let before = pages_present(start, bytes);
        assert!(
            before.iter().filter(|p| **p).count() <= 1,
            "the key table was mapped before sampling started: {} of {} pages",
            before.iter().filter(|p| **p).count(),
            before.len()
        );
        r.set_mean(4096);
        let after = pages_present(start, bytes);
        let missing = after.iter().filter(|p| !**p).count();
        assert_eq!(
            missing,
            0,
            "{missing} of {} key pages not resident once sampling is on",
            after.len()
        );
        // SAFETY: the mapping made above; `r` is not used after this.
        unsafe { libc::munmap(memory, REGION_BYTES) };
    }

    #[test]
    fn threads_sampling_and_freeing_at_once_keep_every_record_accounted_for() {
        let r: &'static Region = Box::leak(region());
        r.header.sample_mean.store(1024, Ordering::Relaxed);
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut mine = std::collections::VecDeque::new();
                    for i in 0..50_000u64 {
                        let ptr = (0x5500_0000_0000 + (t << 32) + i * 48) as usize;
                        if r.record(ptr, 48, |f| {
                            f[0] = t;
                            f[1] = i;
                            2
                        }) {
                            mine.push_back((ptr, i));
                        }
                        if mine.len() > 8 {
                            let (old, _) = mine.pop_front().unwrap();
                            assert!(r.forget(old));
                        }
                    }
                    mine.into_iter().map(move |(_, i)| (t, i)).collect::<Vec<_>>()
                })
            })
            .collect();
        let mut kept: Vec<(u64, u64)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        kept.sort_unstable();
        let mut live: Vec<(u64, u64)> = r.live().iter().map(|s| (s.frames[0], s.frames[1])).collect();
        live.sort_unstable();
        assert_eq!(live, kept, "what is live is exactly what was kept and not forgotten");
        // At most 9 per thread were live at once, and a record goes back before the next is
        // taken only on its own thread: the front of the table covers them all.
        assert!(r.used_slots() <= 4 * 9 + 4, "{} records used", r.used_slots());
    }

    #[test]
    fn a_full_bucket_drops_the_sample_and_counts_it() {
        let r = region();
        r.header.sample_mean.store(1024, Ordering::Relaxed);
        // Pointers that land in one bucket.
        let target = bucket(0x10);
        let same: Vec<usize> = (1..2_000_000usize)
            .map(|i| i * 16)
            .filter(|p| bucket(*p as u64) == target)
            .take(BUCKET + 1)
            .collect();
        for p in &same[..BUCKET] {
            assert!(r.record(*p, 8, |_| 0));
        }
        assert!(!r.record(same[BUCKET], 8, |_| 0));
        assert_eq!(r.header.samples_dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn sampling_takes_about_one_allocation_per_mean_bytes() {
        let r = region();
        r.set_mean(4096);
        let mut sampled = 0u64;
        let n = 200_000u64;
        for _ in 0..n {
            if r.should_sample(64) {
                sampled += 1;
            }
        }
        // 200,000 × 64 B = 12.8 MB at one per 4 KiB: about 3,125 samples (sd ~ 56).
        assert!((2_800..3_450).contains(&sampled), "{sampled} samples");
    }

    #[test]
    fn weights_stand_for_the_bytes_they_sample() {
        // A small block is sampled rarely and stands for about the mean; a huge one almost
        // always and stands for itself.
        assert!((weight(16, 512 * 1024) as f64 - 512.0 * 1024.0).abs() < 16.0);
        assert_eq!(weight(100 << 20, 512 * 1024), 100 << 20);
        // The estimate is unbiased: many 64-byte blocks, sampled, sum to about their bytes.
        let r = region();
        r.set_mean(8192);
        let mut estimate = 0u64;
        for _ in 0..100_000 {
            if r.should_sample(64) {
                estimate += weight(64, 8192);
            }
        }
        let truth = 64.0 * 100_000.0;
        assert!((estimate as f64 - truth).abs() / truth < 0.1, "{estimate} vs {truth}");
    }

    #[test]
    fn the_stack_is_captured_innermost_first() {
        let mut frames = [0u64; DEPTH];
        let n = capture_stack(0, &mut frames);
        assert!(n >= 2, "{n} frames");
        assert!(frames[..n].iter().all(|f| *f != 0));
    }
}
