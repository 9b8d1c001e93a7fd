//! A counting global allocator: exact live heap bytes and allocation counts, cheap enough to leave on.
//!
//! The embedded server, its channel layer and leakrun's own clients and observers share one process,
//! so a plain counter would mix the server's memory with the harness's (loss records, event logs,
//! histograms, a thousand client buffers) and show the harness's growth as the server's leak.
//! Each allocation therefore carries a one-byte *domain* in a small header in front of it:
//! [`Domain::Harness`] while a future wrapped by [`harness`] is being polled on the thread, and
//! [`Domain::Server`] otherwise — the server's tasks, the ones warp and hyper spawn, the runtime.
//! A block is counted against the domain that allocated it, whichever thread frees it.
//!
//! The `leakrun` binary installs it (`#[global_allocator]`); the library only reads the counters,
//! and reports no heap figures where the allocator is not installed (unit tests, other binaries).
//! Cost per allocation: one thread-local read, two relaxed atomic adds, and a header of 16 bytes
//! (more for over-aligned blocks); `bench/run.sh` measures it against a build without it.
//!
//! The server domain's allocations are also sampled ([`set_sample_mean`]; one per 512 KiB
//! allocated by default, `server.heap_sample`): a sampled block's call stack is kept in a
//! [`Region`] while it is live, and a bit in its header marks it so only its own free looks it up.
//! [`sampled`] is that region, read after each settle for the sites that grew.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::task::{Context, Poll};

use leakrun_heap_sampler::Region;

/// Header bytes in front of a block whose alignment is at most this; larger alignments use a
/// header of their own alignment so the block stays aligned.
const HEADER: usize = 16;

/// Who an allocation is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Domain {
    /// Everything that is not leakrun's harness: the server under test, its layer, the runtime.
    Server = 0,
    /// leakrun's own clients, observers and runner.
    Harness = 1,
}

thread_local! {
    static CURRENT: Cell<u8> = const { Cell::new(Domain::Server as u8) };
}

/// Live bytes and blocks of one domain, each on its own cache line so two cores counting
/// different domains do not contend.
#[repr(align(64))]
struct Counters {
    bytes: AtomicI64,
    blocks: AtomicI64,
}

static COUNTERS: [Counters; 2] = [
    Counters {
        bytes: AtomicI64::new(0),
        blocks: AtomicI64::new(0),
    },
    Counters {
        bytes: AtomicI64::new(0),
        blocks: AtomicI64::new(0),
    },
];
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The server domain's sampled allocations.
static SAMPLED: Region = Region::new();

/// The header bit of a block whose stack is in [`SAMPLED`] (beside the domain in bit 0).
const SAMPLED_BIT: u8 = 0x80;

/// Whether harness-domain allocations are sampled into [`SAMPLED`] too.
static SAMPLE_HARNESS: AtomicBool = AtomicBool::new(false);

/// Samples one server-domain allocation per `mean` bytes allocated on average (0: none).
pub fn set_sample_mean(mean: u64) {
    SAMPLED.set_mean(mean);
}

/// Samples leakrun's own (harness-domain) allocations beside the server's, so the sites name
/// where leakrun's own memory grows too: a switch for soaks of leakrun itself
/// (`LEAKRUN_SAMPLE_HARNESS=1`, docs/benchmarks.md), never on in a user's run.
pub fn set_sample_harness(on: bool) {
    SAMPLE_HARNESS.store(on, Ordering::Relaxed);
}

/// The server domain's sampled live allocations.
pub fn sampled() -> &'static Region {
    &SAMPLED
}

/// The global allocator that counts: wraps the allocator `B` the blocks come from. The `leakrun`
/// binary wraps jemalloc, which gives the pages of freed blocks back to the system within seconds
/// where glibc's arenas keep the high-water mark of a long run's churn (docs/benchmarks.md, the
/// soak); `leakrun-glibc` wraps the system's, whose `malloc` a preloaded allocator can see.
pub struct CountingAllocator<B>(B);

impl<B> CountingAllocator<B> {
    /// Counts the blocks of `base`.
    pub const fn new(base: B) -> Self {
        CountingAllocator(base)
    }
}

/// The header and counters of every counted block, whichever allocator it came from.
struct Blocks;

impl Blocks {
    fn header_for(layout: Layout) -> usize {
        layout.align().max(HEADER)
    }

    fn outer(layout: Layout) -> Option<Layout> {
        let header = Self::header_for(layout);
        Layout::from_size_align(layout.size().checked_add(header)?, header).ok()
    }

    fn count(domain: u8, bytes: isize, blocks: isize) {
        // Bit 0 is the domain; the others are flags.
        let counters = &COUNTERS[(domain & 1) as usize];
        counters.bytes.fetch_add(bytes as i64, Ordering::Relaxed);
        counters.blocks.fetch_add(blocks as i64, Ordering::Relaxed);
    }

    /// Marks the allocator as installed; a load first, so the shared line is written once, not on
    /// every allocation from every core.
    fn mark_installed() {
        if !INSTALLED.load(Ordering::Relaxed) {
            INSTALLED.store(true, Ordering::Relaxed);
        }
    }

    fn current_domain() -> u8 {
        CURRENT.try_with(Cell::get).unwrap_or(Domain::Server as u8)
    }

    /// Writes the domain byte into a fresh outer block and returns the user pointer.
    unsafe fn tag(base: *mut u8, layout: Layout) -> *mut u8 {
        if base.is_null() {
            return base;
        }
        let domain = Self::current_domain();
        let header = Self::header_for(layout);
        // SAFETY: the outer block is `header + size` bytes, so both writes are inside it.
        unsafe {
            let user = base.add(header);
            base.write(domain | Self::sample(domain, user, layout.size()));
            Self::count(domain, layout.size() as isize, 1);
            user
        }
    }

    /// Samples a server-domain block (and a harness one with [`set_sample_harness`]) when its
    /// bytes cross the next sampling point; the header bit to set when it was kept.
    #[inline]
    fn sample(domain: u8, user: *mut u8, size: usize) -> u8 {
        let admitted = domain == Domain::Server as u8 || SAMPLE_HARNESS.load(Ordering::Relaxed);
        if !admitted || !SAMPLED.should_sample(size as u64) {
            return 0;
        }
        let kept = SAMPLED.record(user as usize, size as u64, |frames| {
            leakrun_heap_sampler::capture_stack(0, frames)
        });
        if kept { SAMPLED_BIT } else { 0 }
    }
}

// SAFETY: every block handed out is a block of `B` of the outer layout, offset by the header;
// dealloc and realloc undo the same offset with the same outer layout.
unsafe impl<B: GlobalAlloc> GlobalAlloc for CountingAllocator<B> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Blocks::mark_installed();
        let Some(outer) = Blocks::outer(layout) else {
            return std::ptr::null_mut();
        };
        unsafe { Blocks::tag(self.0.alloc(outer), layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Blocks::mark_installed();
        let Some(outer) = Blocks::outer(layout) else {
            return std::ptr::null_mut();
        };
        unsafe { Blocks::tag(self.0.alloc_zeroed(outer), layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let header = Blocks::header_for(layout);
        unsafe {
            let base = ptr.sub(header);
            let tag = base.read();
            if tag & SAMPLED_BIT != 0 {
                SAMPLED.forget(ptr as usize);
            }
            Blocks::count(tag, -(layout.size() as isize), -1);
            // The outer layout was valid when the block was allocated.
            self.0
                .dealloc(base, Layout::from_size_align_unchecked(layout.size() + header, header));
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let header = Blocks::header_for(layout);
        let Some(new_outer_size) = new_size.checked_add(header) else {
            return std::ptr::null_mut();
        };
        unsafe {
            let base = ptr.sub(header);
            let tag = base.read();
            let domain = tag & !SAMPLED_BIT;
            let outer = Layout::from_size_align_unchecked(layout.size() + header, header);
            let moved = self.0.realloc(base, outer, new_outer_size);
            if moved.is_null() {
                return moved;
            }
            if tag & SAMPLED_BIT != 0 {
                SAMPLED.forget(ptr as usize);
            }
            // The header moved with the block; the block stays counted against its first owner,
            // and is sampled afresh as a block of its new size.
            Blocks::count(domain, new_size as isize - layout.size() as isize, 0);
            let user = moved.add(header);
            moved.write(domain | Blocks::sample(domain, user, new_size));
            user
        }
    }
}

/// Live heap figures of both domains at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeapFigures {
    /// Live bytes allocated in the server domain.
    pub server_bytes: i64,
    /// Live blocks allocated in the server domain.
    pub server_blocks: i64,
    /// Live bytes allocated by leakrun's harness.
    pub harness_bytes: i64,
    /// Live blocks allocated by leakrun's harness.
    pub harness_blocks: i64,
}

/// The counters now, or `None` when the counting allocator is not the global allocator.
pub fn figures() -> Option<HeapFigures> {
    if !INSTALLED.load(Ordering::Relaxed) {
        return None;
    }
    let read = |d: Domain| {
        let c = &COUNTERS[d as usize];
        (c.bytes.load(Ordering::Relaxed), c.blocks.load(Ordering::Relaxed))
    };
    let (server_bytes, server_blocks) = read(Domain::Server);
    let (harness_bytes, harness_blocks) = read(Domain::Harness);
    Some(HeapFigures {
        server_bytes,
        server_blocks,
        harness_bytes,
        harness_blocks,
    })
}

/// Runs `f` with this thread's allocations counted against `domain`.
pub fn within<T>(domain: Domain, f: impl FnOnce() -> T) -> T {
    let previous = CURRENT.with(|c| c.replace(domain as u8));
    let _restore = Restore(previous);
    f()
}

struct Restore(u8);

impl Drop for Restore {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

pin_project_lite::pin_project! {
    /// A future whose polls are counted against the harness domain; see [`harness`].
    pub struct Harness<F> {
        #[pin]
        inner: F,
    }
}

impl<F: Future> Future for Harness<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let inner = self.project().inner;
        within(Domain::Harness, || inner.poll(cx))
    }
}

/// Wraps leakrun's own work (runner, clients, observers) so its allocations are not counted as
/// the server's. Tasks it spawns are not wrapped by inheritance: spawn them with [`spawn_harness`].
pub fn harness<F: Future>(inner: F) -> Harness<F> {
    Harness { inner }
}

/// `tokio::spawn` for harness work.
pub fn spawn_harness<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(harness(future))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outer_layout_keeps_alignment_and_room_for_the_header() {
        let small = Blocks::outer(Layout::from_size_align(24, 8).unwrap()).unwrap();
        assert_eq!((small.size(), small.align()), (40, 16));
        let wide = Blocks::outer(Layout::from_size_align(100, 64).unwrap()).unwrap();
        assert_eq!((wide.size(), wide.align()), (164, 64));
        assert!(Blocks::outer(Layout::from_size_align(isize::MAX as usize - 7, 8).unwrap()).is_none());
    }

    #[test]
    fn within_restores_the_previous_domain_even_on_unwind() {
        let result = std::panic::catch_unwind(|| {
            within(Domain::Harness, || {
                assert_eq!(Blocks::current_domain(), Domain::Harness as u8);
                panic!("unwind");
            })
        });
        assert!(result.is_err());
        assert_eq!(Blocks::current_domain(), Domain::Server as u8);
    }

    #[test]
    fn a_block_is_counted_against_the_domain_that_allocated_it_over_either_allocator() {
        // The test binary does not install the allocator; drive it directly.
        counts_against_the_allocating_domain(CountingAllocator::new(tikv_jemallocator::Jemalloc));
        counts_against_the_allocating_domain(CountingAllocator::new(std::alloc::System));
    }

    fn counts_against_the_allocating_domain<B: GlobalAlloc>(a: CountingAllocator<B>) {
        let layout = Layout::from_size_align(1000, 8).unwrap();
        let before = [
            COUNTERS[0].bytes.load(Ordering::Relaxed),
            COUNTERS[1].bytes.load(Ordering::Relaxed),
        ];
        let block = within(Domain::Harness, || unsafe { a.alloc(layout) });
        assert!(!block.is_null());
        assert_eq!(COUNTERS[1].bytes.load(Ordering::Relaxed), before[1] + 1000);
        assert_eq!(COUNTERS[0].bytes.load(Ordering::Relaxed), before[0]);
        let grown = unsafe { a.realloc(block, layout, 3000) };
        assert_eq!(COUNTERS[1].bytes.load(Ordering::Relaxed), before[1] + 3000);
        // Freed from the server domain, still taken off the harness's count.
        unsafe { a.dealloc(grown, Layout::from_size_align(3000, 8).unwrap()) };
        let after = [
            COUNTERS[0].bytes.load(Ordering::Relaxed),
            COUNTERS[1].bytes.load(Ordering::Relaxed),
        ];
        assert_eq!(before, after);
    }
}
