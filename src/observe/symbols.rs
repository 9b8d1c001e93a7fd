//! Names for the return addresses a native heap sampler kept: from a live process's mappings
//! (`/proc/<pid>/maps`) to an object file and an address in it, then to functions, files and
//! lines by that file's debug info (addr2line), each distinct address resolved once.
//!
//! A sampled stack starts inside the allocator; [`describe`] skips those frames and names as the
//! *site* the innermost frame of the server's own code — its main executable, outside the Rust
//! standard library, registry crates and system headers — and keeps the rest as the traceback.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Largest maps file read.
const MAX_MAPS_BYTES: u64 = 8 * 1024 * 1024;
/// Most traceback lines kept per site.
const MAX_TRACEBACK: usize = 40;

/// One executable mapping of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Offset in the file of `start`.
    pub offset: u64,
    /// The mapped file.
    pub path: PathBuf,
}

/// The executable, file-backed mappings of `pid` now (empty when it is gone).
pub fn executable_mappings(pid: u32) -> Vec<Mapping> {
    use std::io::Read;
    let mut text = String::new();
    let read =
        std::fs::File::open(format!("/proc/{pid}/maps")).and_then(|f| f.take(MAX_MAPS_BYTES).read_to_string(&mut text));
    if read.is_err() {
        return Vec::new();
    }
    parse_maps(&text)
}

/// Parses the lines of a maps file, keeping executable file mappings.
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?;
            let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
            let _device = fields.next()?;
            let _inode = fields.next()?;
            let path = fields.collect::<Vec<_>>().join(" ");
            if !perms.contains('x') || !path.starts_with('/') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some(Mapping {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                offset,
                path: PathBuf::from(path.trim_end_matches(" (deleted)")),
            })
        })
        .collect()
}

/// One frame of a resolved address (inlined calls give several per address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The function, demangled, when known.
    pub function: Option<String>,
    /// The source file, when the debug info has one.
    pub file: Option<String>,
    /// The line.
    pub line: Option<u32>,
    /// The object file the address is in.
    pub object: PathBuf,
}

impl Frame {
    /// `file:line` (the file shortened), else the function, else the object.
    pub fn place(&self) -> String {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => format!("{}:{line}", shorten(file)),
            (Some(file), None) => shorten(file),
            _ => match &self.function {
                Some(function) => function.clone(),
                None => object_name(&self.object),
            },
        }
    }

    /// `function at file:line`, for a traceback line.
    pub fn line_text(&self) -> String {
        let function = self.function.as_deref().unwrap_or("??");
        format!("{} at {}", short_function(function), self.place())
    }
}

/// An object file's debug info and load segments.
struct Object {
    loader: addr2line::Loader,
    /// Loadable segments: file offset, file size, address.
    segments: Vec<(u64, u64, u64)>,
}

impl Object {
    fn open(path: &Path) -> Option<Object> {
        use object::{Object as _, ObjectSegment as _};
        let loader = addr2line::Loader::new(path).ok()?;
        let file = std::fs::File::open(path).ok()?;
        // SAFETY: the object file is mapped read-only and only parsed; a file changed under the
        // mapping gives wrong names, not undefined behaviour in safe code that reads it.
        let data = unsafe { memmap2::Mmap::map(&file) }.ok()?;
        let parsed = object::File::parse(&*data).ok()?;
        let segments = parsed
            .segments()
            .map(|s| {
                let (offset, size) = s.file_range();
                (offset, size, s.address())
            })
            .collect();
        Some(Object { loader, segments })
    }

    /// The address in the file's own address space of `file_offset`.
    fn address_of(&self, file_offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|(offset, size, _)| file_offset >= *offset && file_offset < offset + size)
            .map(|(offset, _, address)| address + (file_offset - offset))
    }
}

/// Resolves addresses to frames, each object file opened once and each address resolved once.
#[derive(Default)]
pub struct Symbolizer {
    objects: HashMap<PathBuf, Option<Object>>,
    resolved: HashMap<(PathBuf, u64), Vec<Frame>>,
}

impl Symbolizer {
    /// A symbolizer with nothing loaded.
    pub fn new() -> Self {
        Self::default()
    }

    /// The frames of return address `pc` (innermost inlined call first) in a process with
    /// `maps`; `return_address` is false only for the innermost frame of a stack.
    pub fn frames(&mut self, maps: &[Mapping], pc: u64, return_address: bool) -> Vec<Frame> {
        let probe_pc = match return_address {
            true => pc.saturating_sub(1),
            false => pc,
        };
        let Some(mapping) = maps.iter().find(|m| probe_pc >= m.start && probe_pc < m.end) else {
            return vec![Frame {
                function: Some(format!("{pc:#x}")),
                file: None,
                line: None,
                object: PathBuf::from("?"),
            }];
        };
        let file_offset = probe_pc - mapping.start + mapping.offset;
        let key = (mapping.path.clone(), file_offset);
        if let Some(frames) = self.resolved.get(&key) {
            return frames.clone();
        }
        let object = self
            .objects
            .entry(mapping.path.clone())
            .or_insert_with(|| Object::open(&mapping.path));
        let frames = resolve(object.as_ref(), &mapping.path, file_offset);
        self.resolved.insert(key, frames.clone());
        frames
    }
}

fn resolve(object: Option<&Object>, path: &Path, file_offset: u64) -> Vec<Frame> {
    let bare = |function: Option<String>| Frame {
        function,
        file: None,
        line: None,
        object: path.to_path_buf(),
    };
    let Some(object) = object else {
        return vec![bare(Some(format!("{}+{file_offset:#x}", object_name(path))))];
    };
    let Some(address) = object.address_of(file_offset) else {
        return vec![bare(None)];
    };
    let mut frames = Vec::new();
    if let Ok(mut iter) = object.loader.find_frames(address) {
        while let Ok(Some(frame)) = iter.next() {
            let function = frame
                .function
                .as_ref()
                .and_then(|f| f.demangle().ok())
                .map(|f| f.into_owned());
            let (file, line) = frame
                .location
                .map_or((None, None), |l| (l.file.map(str::to_string), l.line));
            frames.push(Frame {
                function,
                file,
                line,
                object: path.to_path_buf(),
            });
            if frames.len() >= 32 {
                break;
            }
        }
    }
    if frames.is_empty() {
        let symbol = object
            .loader
            .find_symbol(address)
            .map(|s| addr2line::demangle_auto(s.into(), None).into_owned());
        frames.push(bare(symbol));
    }
    frames
}

/// A sampled stack, described: the site and the traceback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// The innermost frame of the server's own code, as `file:line`.
    pub site: String,
    /// The stack from the first frame past the allocator, innermost first.
    pub traceback: Vec<String>,
}

/// Names the site of a stack of frames (innermost first) in a process whose executable is
/// `exe`.
pub fn describe(frames: &[Frame], exe: &Path) -> Described {
    let past_allocator = frames
        .iter()
        .position(|f| !is_allocator(f))
        .unwrap_or(frames.len().saturating_sub(1));
    let rest = &frames[past_allocator.min(frames.len())..];
    let own = rest
        .iter()
        .find(|f| f.object == exe && !is_foreign_source(f))
        .or_else(|| rest.iter().find(|f| !is_foreign_source(f)))
        .or_else(|| rest.iter().find(|f| f.file.is_some() && !is_standard_library(f)))
        .or_else(|| rest.first());
    Described {
        site: own.map_or_else(|| "?".to_string(), Frame::place),
        traceback: rest.iter().take(MAX_TRACEBACK).map(Frame::line_text).collect(),
    }
}

/// A frame of the allocator or the sampler: the preloaded library, libc's malloc, Rust's
/// allocation shims and global allocators, the unwinder.
fn is_allocator(frame: &Frame) -> bool {
    let object = object_name(&frame.object);
    if object.starts_with("libleakrun_malloc") || object.starts_with("ld-linux") {
        return true;
    }
    let Some(function) = frame.function.as_deref() else {
        return object.starts_with("libc.so") || object.starts_with("libgcc_s");
    };
    const ALLOCATOR: [&str; 14] = [
        "malloc",
        "calloc",
        "realloc",
        "__rust_alloc",
        "__rust_realloc",
        "__rust_alloc_zeroed",
        "__rdl_alloc",
        "__rdl_realloc",
        "__rg_alloc",
        "__rg_realloc",
        "alloc::alloc::",
        "GlobalAlloc",
        "leakrun_heap_sampler::",
        "backtrace::",
    ];
    function == "free"
        || ALLOCATOR
            .iter()
            .any(|a| function == *a || (a.ends_with("::") && function.starts_with(a)) || function.contains(a))
        || function.starts_with("leakrun::heap::")
        || function.starts_with("<leakrun::heap::")
        || function.starts_with("_Unwind_")
}

/// A frame in code that is not the server's own: the Rust standard library, a registry crate,
/// a system header or library.
fn is_foreign_source(frame: &Frame) -> bool {
    match &frame.file {
        Some(file) => {
            is_standard_library(frame)
                || file.contains("/.cargo/registry/")
                || file.contains("/.cargo/git/")
                || file.starts_with("/usr/")
        }
        None => true,
    }
}

/// A frame in the Rust standard library (and the crates it vendors).
fn is_standard_library(frame: &Frame) -> bool {
    frame.file.as_deref().is_some_and(|file| {
        file.starts_with("/rustc/") || file.starts_with("/rust/deps/") || file.starts_with("library/")
    })
}

/// A file path as a site names it: relative to the working directory when under it; the Rust
/// library and registry crates from their own root.
fn shorten(file: &str) -> String {
    if let Some(rest) = file.strip_prefix("/rustc/")
        && let Some((_, path)) = rest.split_once('/')
    {
        return format!("rust/{path}");
    }
    if let Some(at) = file.find("/.cargo/registry/src/") {
        let rest = &file[at + "/.cargo/registry/src/".len()..];
        return rest
            .split_once('/')
            .map_or(rest, |(_, crate_path)| crate_path)
            .to_string();
    }
    if let Ok(cwd) = std::env::current_dir()
        && let Ok(relative) = Path::new(file).strip_prefix(&cwd)
    {
        return relative.display().to_string();
    }
    file.to_string()
}

/// A function name cut to a sane length, for a traceback line.
fn short_function(function: &str) -> String {
    match function.chars().count() > 160 {
        true => format!("{}…", function.chars().take(160).collect::<String>()),
        false => function.to_string(),
    }
}

fn object_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_keep_executable_file_mappings() {
        let text = "\
55d0c0000000-55d0c0100000 r--p 00000000 08:01 42 /usr/bin/server
55d0c0100000-55d0c0200000 r-xp 00100000 08:01 42 /usr/bin/server
7f0000000000-7f0000100000 rw-p 00000000 00:00 0 [heap]
7f0000200000-7f0000300000 r-xp 00028000 08:01 43 /lib/libc.so.6 (deleted)
";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 2);
        assert_eq!(maps[0].offset, 0x100000);
        assert_eq!(maps[1].path, PathBuf::from("/lib/libc.so.6"));
    }

    fn frame(function: &str, file: Option<&str>, object: &str) -> Frame {
        Frame {
            function: Some(function.into()),
            file: file.map(str::to_string),
            line: file.map(|_| 7),
            object: PathBuf::from(object),
        }
    }

    #[test]
    fn the_site_is_the_first_frame_of_the_servers_own_code() {
        let exe = "/srv/bin/server";
        let frames = vec![
            frame("malloc", None, "/x/libleakrun_malloc.so"),
            frame(
                "<leakrun::heap::CountingAllocator as core::alloc::global::GlobalAlloc>::alloc",
                Some("/w/src/heap.rs"),
                exe,
            ),
            frame(
                "alloc::raw_vec::finish_grow",
                Some("/rustc/abc/library/alloc/src/raw_vec.rs"),
                exe,
            ),
            frame(
                "bytes::bytes_mut::BytesMut::reserve",
                Some("/root/.cargo/registry/src/index-1/bytes-1.0/src/bytes_mut.rs"),
                exe,
            ),
            frame("server::cache::Cache::insert", Some("/w/src/server/cache.rs"), exe),
            frame("main", Some("/w/src/main.rs"), exe),
        ];
        let described = describe(&frames, Path::new(exe));
        assert_eq!(described.site, "/w/src/server/cache.rs:7");
        assert_eq!(described.traceback.len(), 4);
        assert!(described.traceback[0].starts_with("alloc::raw_vec::finish_grow at rust/library/alloc"));
        assert!(described.traceback[1].contains("bytes-1.0/src/bytes_mut.rs:7"));
    }

    #[test]
    fn a_stack_without_own_code_names_its_first_frame_past_the_allocator() {
        let frames = vec![
            frame("calloc", None, "/lib/libleakrun_malloc.so"),
            frame("PyList_New", Some("Objects/listobject.c"), "/usr/bin/python3"),
        ];
        assert_eq!(
            describe(&frames, Path::new("/usr/bin/python3")).site,
            "Objects/listobject.c:7"
        );
    }
}
