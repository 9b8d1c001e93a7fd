//! `leakrun-glibc`: the same command line on the system's allocator (glibc's `malloc`), for a
//! server whose allocations a preloaded allocator must see: `leakrun-glibc serve` as an external
//! target with `server.heap = "malloc"` (tests/malloc_heap.rs, `bench/malloc.sh`). The `leakrun`
//! binary's own jemalloc is out of a preload's sight.

use std::process::ExitCode;

/// Exact live heap figures for the leak verdict (see `leakrun::heap`), over the system's allocator.
#[cfg(feature = "count-heap")]
#[global_allocator]
static ALLOCATOR: leakrun::heap::CountingAllocator<std::alloc::System> =
    leakrun::heap::CountingAllocator::new(std::alloc::System);

fn main() -> ExitCode {
    leakrun::cli::entry::main()
}
