//! The host scope on macOS: CPU ticks and VM page counts from the Mach host statistics
//! (`host_statistics64`), total memory from `sysctl hw.memsize`. The arithmetic is pure
//! and tested on every platform; only [`MachHostSource`] is built for macOS.

use super::rate::{self, Reading};

/// `host_cpu_load_info` ticks, summed over all CPUs, in `CPU_STATE_*` order: user,
/// system, idle, nice. The counters are 32-bit and wrap after weeks on big machines.
pub type CpuTicks = [u32; 4];

/// Percent (0–100) of all CPU capacity busy between two readings. Differences are taken
/// modulo 2³², so a counter that wrapped still gives the right interval; the rate itself
/// is the one every scope uses ([`rate::ratio`]), from zero to those differences.
pub fn cpu_percent(prev: CpuTicks, cur: CpuTicks) -> Option<f64> {
    let [user, system, idle, nice] = [0, 1, 2, 3].map(|i| u64::from(cur[i].wrapping_sub(prev[i])));
    let busy = user + system + nice;
    let since = Reading {
        used: busy,
        span: busy + idle,
    };
    rate::ratio(Reading { used: 0, span: 0 }, since)
        .ok()
        .and_then(|r| rate::percent_of(r, 1.0))
}

/// The `vm_statistics64` page counts the memory formula needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmPages {
    /// Anonymous memory (process heaps and stacks), including purgeable pages.
    pub internal: u64,
    /// Pages an application marked as discardable: the kernel takes them back on demand.
    pub purgeable: u64,
    pub wired: u64,
    /// Pages holding compressed anonymous memory.
    pub compressed: u64,
}

/// Percent (0–100) of physical memory in use, counted as Activity Monitor's "Memory Used":
/// app memory (internal − purgeable) + wired + compressed. File-backed pages (the page
/// cache), speculative and free pages are not "used", as on Linux.
pub fn memory_used_percent(pages: VmPages, page_size: u64, total_bytes: u64) -> Option<f64> {
    if total_bytes == 0 {
        return None;
    }
    let used_pages = pages
        .internal
        .saturating_sub(pages.purgeable)
        .saturating_add(pages.wired)
        .saturating_add(pages.compressed);
    Some((used_pages.saturating_mul(page_size) as f64 / total_bytes as f64 * 100.0).min(100.0))
}

#[cfg(target_os = "macos")]
pub use sys::MachHostSource;

#[cfg(target_os = "macos")]
mod sys {
    use std::io;
    use std::path::PathBuf;

    use super::{CpuTicks, VmPages, cpu_percent, memory_used_percent};
    use crate::sample::{Absolute, Sample, SampleError, Source};

    /// Samples the whole Mac through the host port, taken once: each `mach_host_self`
    /// call adds a port reference.
    #[derive(Debug)]
    pub struct MachHostSource {
        host: libc::host_t,
        page_size: u64,
        total_bytes: u64,
        /// The CPUs the ticks are shared over.
        cpus: f64,
        prev_cpu: Option<CpuTicks>,
    }

    impl MachHostSource {
        pub fn new() -> Self {
            // SAFETY: no arguments; returns a send right to this host's port.
            let host = unsafe { mach2::mach_init::mach_host_self() };
            // SAFETY: sysconf only reads its argument.
            let page_size =
                u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
            MachHostSource {
                host,
                page_size,
                total_bytes: memsize().unwrap_or(0),
                cpus: std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
                prev_cpu: None,
            }
        }

        fn cpu_ticks(&self) -> io::Result<CpuTicks> {
            // SAFETY: plain integers; all-zero is a valid value.
            let mut info: libc::host_cpu_load_info = unsafe { std::mem::zeroed() };
            let mut count = libc::HOST_CPU_LOAD_INFO_COUNT;
            // SAFETY: `info` is as large as `count` says, and both outlive the call.
            let kr = unsafe {
                libc::host_statistics(
                    self.host,
                    libc::HOST_CPU_LOAD_INFO,
                    (&raw mut info).cast(),
                    &mut count,
                )
            };
            check(kr, "host_statistics(HOST_CPU_LOAD_INFO)")?;
            Ok(info.cpu_ticks)
        }

        fn vm_pages(&self) -> io::Result<VmPages> {
            // SAFETY: plain integers; all-zero is a valid value.
            let mut vm: libc::vm_statistics64 = unsafe { std::mem::zeroed() };
            let mut count = libc::HOST_VM_INFO64_COUNT;
            // SAFETY: `vm` is as large as `count` says, and both outlive the call.
            let kr = unsafe {
                libc::host_statistics64(
                    self.host,
                    libc::HOST_VM_INFO64,
                    (&raw mut vm).cast(),
                    &mut count,
                )
            };
            check(kr, "host_statistics64(HOST_VM_INFO64)")?;
            Ok(VmPages {
                internal: u64::from(vm.internal_page_count),
                purgeable: u64::from(vm.purgeable_count),
                wired: u64::from(vm.wire_count),
                compressed: u64::from(vm.compressor_page_count),
            })
        }
    }

    impl Default for MachHostSource {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Source for MachHostSource {
        async fn sample(&mut self) -> Sample {
            let mut sample = Sample::default();
            match self.cpu_ticks() {
                Ok(ticks) => {
                    sample.cpu = self.prev_cpu.and_then(|prev| cpu_percent(prev, ticks));
                    self.prev_cpu = Some(ticks);
                }
                Err(e) => sample.errors.push(read_error("host CPU load", e)),
            }
            match self.vm_pages() {
                Ok(pages) => {
                    sample.memory = memory_used_percent(pages, self.page_size, self.total_bytes)
                }
                Err(e) => sample.errors.push(read_error("host VM statistics", e)),
            }
            sample.absolute =
                Absolute::of_machine(sample.cpu, sample.memory, self.cpus, self.total_bytes);
            sample
        }
    }

    fn check(kr: libc::kern_return_t, call: &str) -> io::Result<()> {
        if kr == libc::KERN_SUCCESS {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "{call} failed with kern_return {kr}"
            )))
        }
    }

    fn read_error(what: &str, source: io::Error) -> SampleError {
        SampleError::Read {
            path: PathBuf::from(what),
            source,
        }
    }

    /// Physical memory in bytes (`sysctl hw.memsize`).
    fn memsize() -> Option<u64> {
        let mut bytes: u64 = 0;
        let mut len = std::mem::size_of::<u64>();
        // SAFETY: the name is NUL-terminated; `bytes` has the `len` bytes promised.
        let rc = unsafe {
            libc::sysctlbyname(
                c"hw.memsize".as_ptr(),
                (&raw mut bytes).cast(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        (rc == 0 && len == std::mem::size_of::<u64>()).then_some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_busy_share_of_all_ticks_between_readings() {
        // user system idle nice
        let prev = [1000, 500, 8000, 100];
        let cur = [1300, 600, 8500, 100];
        assert_eq!(cpu_percent(prev, cur), Some(400.0 / 900.0 * 100.0));
        assert_eq!(cpu_percent(cur, cur), None, "no time passed");
    }

    #[test]
    fn cpu_survives_a_counter_wrapping_past_u32_max() {
        let prev = [u32::MAX - 49, 0, u32::MAX - 99, 0];
        let cur = [50, 0, 100, 0]; // +100 user, +200 idle
        let percent = cpu_percent(prev, cur).unwrap();
        assert!((percent - 100.0 / 3.0).abs() < 1e-9, "{percent}");
    }

    #[test]
    fn memory_counts_app_wired_and_compressed_but_not_purgeable_or_cache() {
        let pages = VmPages {
            internal: 300,
            purgeable: 100,
            wired: 150,
            compressed: 50,
        };
        // (300 − 100 + 150 + 50) × 16 KiB of 1000 × 16 KiB.
        assert_eq!(memory_used_percent(pages, 16384, 1000 * 16384), Some(40.0));
        assert_eq!(memory_used_percent(pages, 16384, 0), None);
    }
}
