//! Facts about the machine a run happened on, so two results can be judged comparable.

use serde::{Deserialize, Serialize};

/// The machine a run happened on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostFacts {
    /// Operating system, long form.
    pub os: String,
    /// Kernel version.
    pub kernel: String,
    /// Host name.
    pub hostname: String,
    /// Logical CPUs available to the process.
    pub cpus: usize,
    /// Total memory in bytes.
    pub memory_bytes: u64,
}

impl HostFacts {
    /// Reads the facts of this machine.
    pub fn collect() -> Self {
        let mut system = sysinfo::System::new();
        system.refresh_memory();
        Self {
            os: sysinfo::System::long_os_version().unwrap_or_default(),
            kernel: sysinfo::System::kernel_version().unwrap_or_default(),
            hostname: sysinfo::System::host_name().unwrap_or_default(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes: system.total_memory(),
        }
    }
}
