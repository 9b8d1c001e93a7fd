//! The `leakrun` binary: the command line over the library, on jemalloc.

use std::process::ExitCode;

/// Exact live heap figures for the leak verdict (see `leakrun::heap`), over jemalloc.
#[cfg(feature = "count-heap")]
#[global_allocator]
static ALLOCATOR: leakrun::heap::CountingAllocator<tikv_jemallocator::Jemalloc> =
    leakrun::heap::CountingAllocator::new(tikv_jemallocator::Jemalloc);

/// jemalloc alone (`bench/run.sh`'s build without the counting allocator).
#[cfg(not(feature = "count-heap"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    leakrun::cli::entry::main()
}
