//! The library leakrun preloads (`LD_PRELOAD`) into a server it starts with
//! `server.heap = "malloc"`.
//!
//! It defines `malloc`, `calloc`, `realloc`, `reallocarray`, `free`, `posix_memalign`,
//! `aligned_alloc`, `memalign`, `valloc` and `pvalloc`, forwards each to the next definition (the
//! system allocator, or a shared-library allocator the server links, found with
//! `dlsym(RTLD_NEXT)`), and counts live bytes (by the next allocator's `malloc_usable_size`) and
//! blocks in a shared-memory region leakrun maps and reads on every sample: `<dir>/<pid>.page`,
//! `dir` from `LEAKRUN_MALLOC_DIR`. Nothing but atomics runs on the allocation path; one
//! allocation per `LEAKRUN_MALLOC_SAMPLE` bytes on average (0: none) also has its call stack kept
//! while it is live (see `leakrun-heap-sampler`).
//!
//! A forked child gets a region of its own (its counters start where its parent's stood; its
//! sample table starts empty); an `exec` starts over in the same file. Until the constructor has
//! mapped the region, counts go to a private header and are added in once it is mapped.

#![allow(clippy::missing_safety_doc)]

use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};

use leakrun_heap_sampler::{DEPTH, FLAG_MALLOC_ELSEWHERE, FLAG_READY, REGION_BYTES, Region};

type MallocFn = unsafe extern "C" fn(usize) -> *mut c_void;
type FreeFn = unsafe extern "C" fn(*mut c_void);
type CallocFn = unsafe extern "C" fn(usize, usize) -> *mut c_void;
type ReallocFn = unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void;
type MemalignFn = unsafe extern "C" fn(usize, usize) -> *mut c_void;
type PosixMemalignFn = unsafe extern "C" fn(*mut *mut c_void, usize, usize) -> c_int;
type UsableFn = unsafe extern "C" fn(*mut c_void) -> usize;

unsafe extern "C" {
    fn __libc_malloc(size: usize) -> *mut c_void;
    fn __libc_free(ptr: *mut c_void);
    fn __libc_calloc(n: usize, size: usize) -> *mut c_void;
    fn __libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
    fn __libc_memalign(align: usize, size: usize) -> *mut c_void;
}

/// The next allocator's entry points, resolved once.
struct Next {
    malloc: AtomicUsize,
    free: AtomicUsize,
    calloc: AtomicUsize,
    realloc: AtomicUsize,
    memalign: AtomicUsize,
    posix_memalign: AtomicUsize,
    aligned_alloc: AtomicUsize,
    valloc: AtomicUsize,
    usable: AtomicUsize,
}

static NEXT: Next = Next {
    malloc: AtomicUsize::new(0),
    free: AtomicUsize::new(0),
    calloc: AtomicUsize::new(0),
    realloc: AtomicUsize::new(0),
    memalign: AtomicUsize::new(0),
    posix_memalign: AtomicUsize::new(0),
    aligned_alloc: AtomicUsize::new(0),
    valloc: AtomicUsize::new(0),
    usable: AtomicUsize::new(0),
};

const UNRESOLVED: u8 = 0;
const RESOLVING: u8 = 1;
const RESOLVED: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(UNRESOLVED);

/// Serves allocations made while the next allocator is being looked up (`dlsym` may allocate).
/// Blocks from here are never freed; each carries its size in the 16 bytes in front of it.
mod boot {
    use std::sync::atomic::{AtomicUsize, Ordering};

    const BYTES: usize = 256 * 1024;
    #[repr(C, align(16))]
    struct Arena([u8; BYTES]);
    static mut ARENA: Arena = Arena([0; BYTES]);
    static USED: AtomicUsize = AtomicUsize::new(0);

    fn base() -> usize {
        std::ptr::addr_of!(ARENA) as usize
    }

    /// A zeroed block of `size` bytes aligned to `align` (a power of two up to 4096), or null.
    pub fn alloc(size: usize, align: usize) -> *mut u8 {
        let align = align.clamp(16, 4096);
        let Some(need) = size.checked_add(16 + align) else {
            return std::ptr::null_mut();
        };
        let start = USED.fetch_add(need, Ordering::Relaxed);
        if start + need > BYTES {
            return std::ptr::null_mut();
        }
        let user = (base() + start + 16).next_multiple_of(align);
        // SAFETY: `user - 8 .. user + size` lies inside the reserved `start .. start + need`.
        unsafe {
            ((user - 8) as *mut usize).write(size);
        }
        user as *mut u8
    }

    /// Whether `ptr` came from here.
    pub fn owns(ptr: *const u8) -> bool {
        let p = ptr as usize;
        p >= base() && p < base() + BYTES
    }

    /// The size a block from here was asked for.
    pub fn size(ptr: *const u8) -> usize {
        // SAFETY: every block from here has its size 8 bytes in front of it.
        unsafe { ((ptr as usize - 8) as *const usize).read() }
    }
}

unsafe fn lookup(name: &CStr) -> usize {
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name.
    unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) as usize }
}

/// Resolves the next allocator; false while resolution is under way (the caller uses `boot`).
fn resolved() -> bool {
    match STATE.load(Ordering::Acquire) {
        RESOLVED => true,
        RESOLVING => false,
        _ => {
            if STATE
                .compare_exchange(UNRESOLVED, RESOLVING, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                return STATE.load(Ordering::Acquire) == RESOLVED;
            }
            // SAFETY: looking up symbols; fallbacks are glibc's own entry points.
            unsafe {
                let or = |found: usize, fallback: usize| if found != 0 { found } else { fallback };
                NEXT.malloc.store(
                    or(lookup(c"malloc"), __libc_malloc as *const () as usize),
                    Ordering::Relaxed,
                );
                NEXT.free.store(
                    or(lookup(c"free"), __libc_free as *const () as usize),
                    Ordering::Relaxed,
                );
                NEXT.calloc.store(
                    or(lookup(c"calloc"), __libc_calloc as *const () as usize),
                    Ordering::Relaxed,
                );
                NEXT.realloc.store(
                    or(lookup(c"realloc"), __libc_realloc as *const () as usize),
                    Ordering::Relaxed,
                );
                NEXT.memalign.store(
                    or(lookup(c"memalign"), __libc_memalign as *const () as usize),
                    Ordering::Relaxed,
                );
                NEXT.posix_memalign.store(lookup(c"posix_memalign"), Ordering::Relaxed);
                NEXT.aligned_alloc.store(lookup(c"aligned_alloc"), Ordering::Relaxed);
                NEXT.valloc.store(lookup(c"valloc"), Ordering::Relaxed);
                NEXT.usable.store(
                    or(
                        lookup(c"malloc_usable_size"),
                        libc::malloc_usable_size as *const () as usize,
                    ),
                    Ordering::Relaxed,
                );
            }
            STATE.store(RESOLVED, Ordering::Release);
            true
        }
    }
}

macro_rules! next {
    ($field:ident as $ty:ty) => {
        // SAFETY (at every use, inside `unsafe`): stored only from a symbol of this signature,
        // and only read once RESOLVED.
        std::mem::transmute::<usize, $ty>(NEXT.$field.load(Ordering::Relaxed))
    };
}

/// The region counts go to: the shared one once mapped, else the private early one.
static SHARED: AtomicPtr<Region> = AtomicPtr::new(std::ptr::null_mut());
static EARLY: Region = Region::new();

#[inline]
fn region() -> &'static Region {
    let shared = SHARED.load(Ordering::Acquire);
    if shared.is_null() {
        &EARLY
    } else {
        // SAFETY: a mapping of REGION_BYTES made by `publish`, never unmapped.
        unsafe { &*shared }
    }
}

#[inline]
unsafe fn usable(ptr: *mut c_void) -> u64 {
    // SAFETY: `ptr` is a live block of the next allocator.
    unsafe { next!(usable as UsableFn)(ptr) as u64 }
}

/// Counts (and maybe samples) a block the next allocator just handed out.
#[inline]
unsafe fn counted(ptr: *mut c_void) -> *mut c_void {
    if ptr.is_null() {
        return ptr;
    }
    // SAFETY: a live block just returned by the next allocator.
    let size = unsafe { usable(ptr) };
    let region = region();
    region.count_alloc(size);
    if region.should_sample(size) {
        region.record(ptr as usize, size, |frames: &mut [u64; DEPTH]| {
            leakrun_heap_sampler::capture_stack(0, frames)
        });
    }
    ptr
}

/// Uncounts a block about to go back to the next allocator.
#[inline]
unsafe fn uncount(ptr: *mut c_void) {
    // SAFETY: a live block of the next allocator.
    let size = unsafe { usable(ptr) };
    let region = region();
    region.count_free(size);
    region.forget(ptr as usize);
}

/// `malloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    if !resolved() {
        return boot::alloc(size, 16).cast();
    }
    unsafe { counted(next!(malloc as MallocFn)(size)) }
}

/// `calloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    if !resolved() {
        return match n.checked_mul(size) {
            Some(total) => boot::alloc(total, 16).cast(),
            None => std::ptr::null_mut(),
        };
    }
    unsafe { counted(next!(calloc as CallocFn)(n, size)) }
}

/// `free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    if ptr.is_null() || boot::owns(ptr.cast()) {
        return;
    }
    if !resolved() {
        return;
    }
    unsafe {
        uncount(ptr);
        next!(free as FreeFn)(ptr)
    }
}

/// `realloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    if ptr.is_null() {
        return unsafe { malloc(size) };
    }
    if boot::owns(ptr.cast()) {
        // Moves out of the boot arena; the old block stays where it is.
        let fresh = unsafe { malloc(size) };
        if !fresh.is_null() {
            let keep = boot::size(ptr.cast()).min(size);
            unsafe { std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), fresh.cast::<u8>(), keep) };
        }
        return fresh;
    }
    if !resolved() {
        return std::ptr::null_mut();
    }
    unsafe {
        let old = usable(ptr);
        let moved = next!(realloc as ReallocFn)(ptr, size);
        let region = region();
        if moved.is_null() {
            if size == 0 {
                // realloc(p, 0) freed p.
                region.count_free(old);
                region.forget(ptr as usize);
            }
            return moved;
        }
        region.forget(ptr as usize);
        region.count_free(old);
        counted(moved)
    }
}

/// `reallocarray`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        Some(total) => unsafe { realloc(ptr, total) },
        None => {
            unsafe { *libc::__errno_location() = libc::ENOMEM };
            std::ptr::null_mut()
        }
    }
}

/// `memalign`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    if !resolved() {
        return boot::alloc(size, align).cast();
    }
    unsafe { counted(next!(memalign as MemalignFn)(align, size)) }
}

/// `aligned_alloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !resolved() {
        return boot::alloc(size, align).cast();
    }
    unsafe {
        match NEXT.aligned_alloc.load(Ordering::Relaxed) {
            0 => counted(next!(memalign as MemalignFn)(align, size)),
            _ => counted(next!(aligned_alloc as MemalignFn)(align, size)),
        }
    }
}

/// `posix_memalign`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || !align.is_multiple_of(std::mem::size_of::<usize>()) {
        return libc::EINVAL;
    }
    if !resolved() {
        let block = boot::alloc(size, align);
        if block.is_null() {
            return libc::ENOMEM;
        }
        unsafe { *out = block.cast() };
        return 0;
    }
    unsafe {
        if NEXT.posix_memalign.load(Ordering::Relaxed) == 0 {
            let block = next!(memalign as MemalignFn)(align, size);
            if block.is_null() {
                return libc::ENOMEM;
            }
            *out = counted(block);
            return 0;
        }
        let status = next!(posix_memalign as PosixMemalignFn)(out, align, size);
        if status == 0 {
            *out = counted(*out);
        }
        status
    }
}

/// `valloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    unsafe {
        if resolved() && NEXT.valloc.load(Ordering::Relaxed) != 0 {
            return counted(next!(valloc as MallocFn)(size));
        }
        memalign(page_size(), size)
    }
}

/// `pvalloc`: always through the next `memalign`, with the size rounded up to whole pages as
/// glibc's does. An allocator that has no `pvalloc` of its own (jemalloc) would otherwise leave
/// the next definition glibc's, and its block would later be freed by the other allocator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let page = page_size();
    match size.max(1).checked_next_multiple_of(page) {
        // SAFETY: memalign takes any alignment and size; a power-of-two page is valid.
        Some(rounded) => unsafe { memalign(page, rounded) },
        None => {
            // SAFETY: errno is this thread's.
            unsafe { *libc::__errno_location() = libc::ENOMEM };
            std::ptr::null_mut()
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    }
}

/// Writes `parts` into `buf` as one NUL-terminated string; false when it does not fit.
fn join(buf: &mut [u8], parts: &[&[u8]]) -> bool {
    let mut at = 0;
    for part in parts {
        if at + part.len() >= buf.len() {
            return false;
        }
        buf[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    buf[at] = 0;
    true
}

/// `n` in decimal, into `buf`; the digits written.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[at..]
}

/// Reads a decimal environment variable without allocating.
fn env_number(name: &CStr) -> Option<u64> {
    // SAFETY: getenv with a NUL-terminated name; the result is read before anything can change it.
    let value = unsafe { libc::getenv(name.as_ptr()) };
    if value.is_null() {
        return None;
    }
    let text = unsafe { CStr::from_ptr(value) }.to_bytes();
    let mut n: u64 = 0;
    for b in text {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// Maps `<LEAKRUN_MALLOC_DIR>/<pid>.page` (fresh: truncated), starts its counters at `start`'s
/// and publishes it. Only system calls: safe in a forked child of a threaded process.
unsafe fn publish(start: (i64, i64, u64)) {
    let dir = unsafe { libc::getenv(c"LEAKRUN_MALLOC_DIR".as_ptr()) };
    if dir.is_null() {
        return;
    }
    let dir = unsafe { CStr::from_ptr(dir as *const c_char) }.to_bytes();
    let pid = unsafe { libc::getpid() } as u32;
    let mut digits = [0u8; 20];
    let mut path = [0u8; 4096];
    if !join(&mut path, &[dir, b"/", decimal(u64::from(pid), &mut digits), b".page"]) {
        return;
    }
    unsafe {
        let fd = libc::open(
            path.as_ptr().cast(),
            libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o600,
        );
        if fd < 0 {
            return;
        }
        if libc::ftruncate(fd, REGION_BYTES as libc::off_t) != 0 {
            libc::close(fd);
            return;
        }
        let memory = libc::mmap(
            std::ptr::null_mut(),
            REGION_BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        libc::close(fd);
        if memory == libc::MAP_FAILED {
            return;
        }
        let region = Region::from_memory(memory as *const u8);
        let mut exe = [0u8; 256];
        let n = libc::readlink(c"/proc/self/exe".as_ptr(), exe.as_mut_ptr().cast(), exe.len() - 1);
        let exe = &exe[..n.max(0) as usize];
        let seed = (pid as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (memory as u64);
        region.initialise(pid, exe, seed);
        let h = &region.header;
        region.start_at(start.0, start.1, start.2);
        region.set_mean(env_number(c"LEAKRUN_MALLOC_SAMPLE").unwrap_or(0));
        let mut flags = FLAG_READY;
        if MALLOC_ELSEWHERE.load(Ordering::Relaxed) {
            flags |= FLAG_MALLOC_ELSEWHERE;
        }
        SHARED.store(memory.cast(), Ordering::Release);
        h.flags.store(flags, Ordering::Release);
    }
}

/// Set by the constructor when the process's `malloc` is not this library's (asked once: a forked
/// child must not call into the dynamic linker).
static MALLOC_ELSEWHERE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the process's `malloc` is this library's: the object that defines the `malloc` the
/// global scope finds is the one this library's own data lives in. (A reference to `malloc` from
/// here would itself go through the global scope, so the addresses cannot be compared directly.)
unsafe fn malloc_is_ours() -> bool {
    unsafe {
        let found = libc::dlsym(libc::RTLD_DEFAULT, c"malloc".as_ptr());
        if found.is_null() {
            return true;
        }
        let mut ours: libc::Dl_info = std::mem::zeroed();
        let mut theirs: libc::Dl_info = std::mem::zeroed();
        let own_data = std::ptr::addr_of!(EARLY).cast::<c_void>();
        if libc::dladdr(own_data, &mut ours) == 0 || libc::dladdr(found, &mut theirs) == 0 {
            return true;
        }
        ours.dli_fbase == theirs.dli_fbase
    }
}

/// The counters of the region in use now.
fn counters() -> (i64, i64, u64) {
    let region = region();
    (region.live_bytes(), region.live_blocks(), region.allocated())
}

/// The parent's counters as they stood when it forked.
static AT_FORK: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];

extern "C" fn before_fork() {
    let (bytes, blocks, allocated) = counters();
    for (cell, value) in AT_FORK
        .iter()
        .zip([bytes as usize, blocks as usize, allocated as usize])
    {
        cell.store(value, Ordering::Relaxed);
    }
}

extern "C" fn in_child() {
    let at = |i: usize| AT_FORK[i].load(Ordering::Relaxed);
    // The child must not write into its parent's region.
    SHARED.store(std::ptr::null_mut(), Ordering::Release);
    unsafe { publish((at(0) as i64, at(1) as i64, at(2) as u64)) };
}

extern "C" fn init() {
    resolved();
    // SAFETY: the dynamic linker is usable from a constructor.
    MALLOC_ELSEWHERE.store(!unsafe { malloc_is_ours() }, Ordering::Relaxed);
    let start = (EARLY.live_bytes(), EARLY.live_blocks(), EARLY.allocated());
    unsafe {
        publish(start);
        libc::pthread_atfork(Some(before_fork), None, Some(in_child));
    }
}

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init;
