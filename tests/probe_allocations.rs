//! The sampler reads leakrun's own memory and CPU ten times a second for the whole run, in the
//! process whose resident set it measures; those readings allocate nothing, so they do not churn
//! the allocator they measure (src/process/procfs.rs). Counted by this test binary's own global
//! allocator, per thread, so the other tests running beside it do not count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use leakrun::observe::cpu::CpuProbe;
use leakrun::observe::sampler::MemoryProbe;
use leakrun::process::procfs::{ProcFile, Stat, resident_bytes};

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, counting each thread's allocations and reallocations.
struct PerThreadCount;

fn count() {
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call goes straight to the system allocator with the caller's arguments.
unsafe impl GlobalAlloc for PerThreadCount {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(block, layout, size) }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        unsafe { System.dealloc(block, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: PerThreadCount = PerThreadCount;

/// Allocations this thread made while `work` ran.
fn allocations_in(work: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    work();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn reading_own_memory_and_cpu_a_thousand_times_allocates_nothing() {
    let memory = MemoryProbe::own_process();
    let cpu = CpuProbe::own_process();
    let stat = ProcFile::open(std::process::id(), "stat").expect("own stat");
    let statm = ProcFile::open(std::process::id(), "statm").expect("own statm");
    cpu.since_last(); // the first reading only starts the window
    let mut readings = 0u64;
    let made = allocations_in(|| {
        for _ in 0..1000 {
            readings += u64::from(memory.rss().is_some_and(|rss| rss > 0));
            readings += u64::from(memory.reading().is_some_and(|(_, processes)| processes == 1));
            readings += u64::from(cpu.since_last().is_some());
            readings += u64::from(Stat::read_from(&stat).is_some_and(|s| s.is_live()));
            readings += u64::from(resident_bytes(&statm).is_some());
        }
    });
    assert_eq!(readings, 5000, "every reading found the process");
    assert_eq!(made, 0, "allocations in 1,000 rounds of own-process readings");
}

#[test]
fn the_count_sees_the_reading_that_allocates() {
    // The control: reading stat by path formats the path and reads into a String.
    let made = allocations_in(|| {
        assert!(Stat::read(std::process::id()).is_some());
    });
    assert!(made >= 2, "a path and a text: {made}");
}
