//! Where samples come from. A [`Source`] yields one [`Sample`] per call; the agent calls
//! it once a second. [`scope`] chooses and opens the source the configuration asks for.
//! Parsers are pure (`procfs`, `cgroup::parse`, `ecs::metadata`); readers take a root
//! directory so tests run on fixture trees instead of the live `/proc`; every rate is
//! computed by [`rate`].

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::domain::Metric;

pub mod cgroup;
pub mod ecs;
pub mod host;
pub mod kernel;
pub mod mach;
pub mod procfs;
pub mod rate;
pub mod scope;
pub mod traffic;

pub use cgroup::CgroupSource;
pub use ecs::EcsSource;
pub use host::HostSource;

/// The host scope's source on this platform: `/proc` on Linux, Mach statistics on macOS.
#[cfg(not(target_os = "macos"))]
pub type PlatformHostSource = HostSource;
/// The host scope's source on this platform: `/proc` on Linux, Mach statistics on macOS.
#[cfg(target_os = "macos")]
pub type PlatformHostSource = mach::MachHostSource;

/// The host scope on this platform: `/proc` under `root`.
#[cfg(not(target_os = "macos"))]
pub fn host_source(root: &Path) -> PlatformHostSource {
    HostSource::new(root)
}

/// The host scope on this platform: the Mach host statistics (there is no `/proc`).
#[cfg(target_os = "macos")]
pub fn host_source(_root: &Path) -> PlatformHostSource {
    mach::MachHostSource::new()
}

/// The source a scope resolved to. One type, so the sampling loop is compiled once
/// (boxed: the sources differ in size, and there is one for the whole run).
#[derive(Debug)]
pub enum ScopedSource {
    Host(Box<PlatformHostSource>),
    Cgroup(Box<CgroupSource>),
    Ecs(Box<EcsSource>),
}

impl ScopedSource {
    /// Seconds between ECS's refreshes of the task's stats, in the ecs-task scope once
    /// a document told ([`ecs::pace`]).
    pub fn ecs_pace_secs(&self) -> Option<u32> {
        match self {
            ScopedSource::Ecs(source) => source.pace_secs(),
            _ => None,
        }
    }

    /// The ECS task, in the ecs-task scope.
    pub fn ecs_task(&self) -> Option<&ecs::Task> {
        match self {
            ScopedSource::Ecs(source) => Some(source.task()),
            _ => None,
        }
    }
}

impl ScopedSource {
    /// The OOM kill counter's rise since the source opened, read now; `None` where it
    /// is not read (the ECS task scope, macOS, a kernel without it).
    pub fn oom_kills_since_open(&mut self) -> Option<u64> {
        match self {
            #[cfg(not(target_os = "macos"))]
            ScopedSource::Host(source) => source.kernel.oom_kills_since_open(),
            ScopedSource::Cgroup(source) => source.kernel.oom_kills_since_open(),
            _ => None,
        }
    }

    /// The highest working set seen so far, against its limit.
    pub fn memory_seen(&self) -> Option<MemorySeen> {
        match self {
            #[cfg(not(target_os = "macos"))]
            ScopedSource::Host(source) => source.memory_seen,
            ScopedSource::Cgroup(source) => source.memory_seen,
            _ => None,
        }
    }
}

impl Source for ScopedSource {
    async fn sample(&mut self) -> Sample {
        match self {
            ScopedSource::Host(source) => source.sample().await,
            ScopedSource::Cgroup(source) => source.sample().await,
            ScopedSource::Ecs(source) => source.sample().await,
        }
    }

    fn recorded_peak(&self) -> Option<(u64, &'static str)> {
        match self {
            ScopedSource::Cgroup(source) => source.recorded_peak(),
            _ => None,
        }
    }

    fn quiet_ticks(&self) -> u32 {
        match self {
            ScopedSource::Ecs(source) => source.quiet_ticks(),
            _ => 0,
        }
    }
}

/// One reading of the metrics: percentages (0–100), counts, and absolute figures in
/// their metric's unit ([`Metric::unit`]). `None` means "not measured this time" (the
/// first CPU reading has nothing to compare with; a file could not be read), never zero.
#[derive(Debug, Default)]
pub struct Sample {
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    /// Share of CFS periods throttled since the last sample (cgroup scope, with a quota).
    pub throttled: Option<f64>,
    /// OOM kills since the last sample (0 when none): a count, not a percentage.
    pub oom_kills: Option<f64>,
    /// Share of the time since the last sample that some task stalled on CPU, memory or
    /// I/O (PSI `some`).
    pub cpu_pressure: Option<f64>,
    pub memory_pressure: Option<f64>,
    pub io_pressure: Option<f64>,
    /// The same CPU and memory in absolute units, with what they are measured against.
    pub absolute: Absolute,
    /// Bytes a second: received and sent (network), read and written (block devices).
    pub network_rx: Option<f64>,
    pub network_tx: Option<f64>,
    pub storage_read: Option<f64>,
    pub storage_write: Option<f64>,
    /// Fargate ephemeral storage: GiB used and reserved, and the share used.
    pub ephemeral_utilized: Option<f64>,
    pub ephemeral_reserved: Option<f64>,
    pub ephemeral_utilization: Option<f64>,
    /// Containers restarted since the last sample (0 when none): a count.
    pub restarts: Option<f64>,
    /// Each container's CPU and memory (ECS task scope).
    pub containers: Vec<ContainerSample>,
    /// What went wrong while reading; a failed read costs that metric, not the sample.
    pub errors: Vec<SampleError>,
    /// Seconds the values stand for: 1, but 10 for a document ECS refreshes every 10 s.
    pub weight: Weight,
    /// Nothing was due to be read (an ECS task's stats between two refreshes): the
    /// sample carries counts at most, and says nothing of whether sampling works.
    pub idle: bool,
}

/// Seconds a sample's values stand for, which a window counts them as: 1 where the
/// source is read every second; an ECS document that Fargate refreshes every 10 s stands
/// for the 10 s since the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weight(u32);

impl Default for Weight {
    fn default() -> Self {
        Weight(1)
    }
}

impl Weight {
    /// `secs` seconds, at least 1.
    pub fn secs(secs: u32) -> Weight {
        Weight(secs.max(1))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// CPU and memory in Container Insights' units: CPU units (1024 a vCPU) and MiB.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Absolute {
    pub cpu_utilized: Option<f64>,
    pub cpu_reserved: Option<f64>,
    pub memory_utilized: Option<f64>,
    pub memory_reserved: Option<f64>,
}

/// ECS CPU units per vCPU (task definition `cpu`; Container Insights' `CpuUtilized`).
pub const CPU_UNITS_PER_VCPU: f64 = 1024.0;
/// Bytes in a MiB: CloudWatch's `Megabytes`, as Container Insights uses it.
pub const MIB: f64 = 1024.0 * 1024.0;

impl Absolute {
    /// From vCPUs used, working set bytes, and the capacity both are measured against.
    pub fn of(vcpus: Option<f64>, memory_bytes: Option<u64>, capacity: &Capacity) -> Absolute {
        let positive = |v: f64| (v.is_finite() && v > 0.0).then_some(v);
        Absolute {
            cpu_utilized: vcpus.map(|v| v * CPU_UNITS_PER_VCPU),
            cpu_reserved: positive(capacity.cpus).map(|c| c * CPU_UNITS_PER_VCPU),
            memory_utilized: memory_bytes.map(|b| b as f64 / MIB),
            memory_reserved: positive(capacity.memory_bytes as f64).map(|b| b / MIB),
        }
    }

    /// From shares of a machine of `cpus` CPUs and `memory_bytes` of memory: where only
    /// the percentages are measured (the Mach host statistics).
    pub fn of_machine(
        cpu_percent: Option<f64>,
        memory_percent: Option<f64>,
        cpus: f64,
        memory_bytes: u64,
    ) -> Absolute {
        let capacity = Capacity {
            cpus,
            cpus_from: "",
            cpu_limit: false,
            memory_bytes,
            memory_from: "",
            memory_limit: false,
            machine_cpus: cpus,
        };
        let used = memory_percent.map(|p| (p / 100.0 * memory_bytes as f64) as u64);
        Absolute::of(cpu_percent.map(|p| p / 100.0 * cpus), used, &capacity)
    }
}

/// One container's CPU (CPU units) and working set (MiB), named as `/task` names it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSample {
    pub name: std::sync::Arc<str>,
    pub cpu_utilized: Option<f64>,
    pub memory_utilized: Option<f64>,
}

impl Sample {
    /// The value of `metric`, if it was measured (for a per-container metric: none; see
    /// [`ContainerSample::value`]).
    pub fn value(&self, metric: Metric) -> Option<f64> {
        match metric {
            Metric::Cpu => self.cpu,
            Metric::Memory => self.memory,
            Metric::Throttled => self.throttled,
            Metric::OomKills => self.oom_kills,
            Metric::CpuPressure => self.cpu_pressure,
            Metric::MemoryPressure => self.memory_pressure,
            Metric::IoPressure => self.io_pressure,
            Metric::CpuUtilized => self.absolute.cpu_utilized,
            Metric::CpuReserved => self.absolute.cpu_reserved,
            Metric::MemoryUtilized => self.absolute.memory_utilized,
            Metric::MemoryReserved => self.absolute.memory_reserved,
            Metric::ContainerCpuUtilized | Metric::ContainerMemoryUtilized => None,
            Metric::NetworkRx => self.network_rx,
            Metric::NetworkTx => self.network_tx,
            Metric::StorageRead => self.storage_read,
            Metric::StorageWrite => self.storage_write,
            Metric::EphemeralUtilized => self.ephemeral_utilized,
            Metric::EphemeralReserved => self.ephemeral_reserved,
            Metric::EphemeralUtilization => self.ephemeral_utilization,
            Metric::Restarts => self.restarts,
            // A run's values come when it ends ([`crate::domain::JobRun`]), not in samples.
            Metric::JobDuration
            | Metric::JobFailed
            | Metric::JobStopped
            | Metric::JobPeakMemory
            | Metric::JobCpuTime => None,
        }
    }

    /// Whether any metric or container has a value.
    pub fn is_empty(&self) -> bool {
        Metric::ALL.iter().all(|m| self.value(*m).is_none())
            && self
                .containers
                .iter()
                .all(|c| c.cpu_utilized.is_none() && c.memory_utilized.is_none())
    }
}

impl ContainerSample {
    /// The value of a per-container `metric`, if measured.
    pub fn value(&self, metric: Metric) -> Option<f64> {
        match metric {
            Metric::ContainerCpuUtilized => self.cpu_utilized,
            Metric::ContainerMemoryUtilized => self.memory_utilized,
            _ => None,
        }
    }
}

/// The highest working set a source saw, and the limit it was measured against: what
/// wrapper mode says when the command was OOM-killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySeen {
    pub peak_bytes: u64,
    pub limit_bytes: u64,
}

impl MemorySeen {
    /// Keeps the higher of the peak so far and `bytes`, against `limit_bytes` now.
    pub fn update(seen: &mut Option<MemorySeen>, bytes: u64, limit_bytes: u64) {
        let peak_bytes = seen.map_or(bytes, |s| s.peak_bytes.max(bytes));
        *seen = Some(MemorySeen {
            peak_bytes,
            limit_bytes,
        });
    }
}

/// A source of samples. Asynchronous so that sources over HTTP fit the same loop.
pub trait Source {
    /// Takes one reading.
    fn sample(&mut self) -> impl Future<Output = Sample>;

    /// The highest memory usage the kernel recorded for the scope, and the file that
    /// says so; `None` where the scope has no such record.
    fn recorded_peak(&self) -> Option<(u64, &'static str)> {
        None
    }

    /// How many of the coming once-a-second ticks would read nothing (an ECS task's stats
    /// between two refreshes): the loop sleeps through them. 0 where every tick reads.
    fn quiet_ticks(&self) -> u32 {
        0
    }
}

/// A file that could not be read or understood, with its path.
#[derive(Debug, Error)]
pub enum SampleError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot parse {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: procfs::ParseError,
    },
    #[error("{url}: {reason}")]
    Endpoint { url: String, reason: String },
    /// A reading that cannot be true (a zero denominator, a clock that jumped): that
    /// metric is not measured this time, rather than published as 0 or 100 %.
    #[error("{origin}: {what}; not measured this time")]
    Implausible { origin: String, what: String },
}

/// `memory.stat` keys (Docker's `memory_stats.stats` copies them) of the page cache that
/// counts as inactive, by preference: cgroup v1's hierarchical total, the cgroup's own
/// (the only one cgroup v2 has), and for v1 kernels without the split all of `cache`.
pub const INACTIVE_FILE_KEYS: [&str; 3] = ["total_inactive_file", "inactive_file", "cache"];

/// Working set: usage minus inactive page cache, which the kernel reclaims before it
/// would OOM-kill (the `docker stats` and cAdvisor formula); the one formula of the
/// cgroup and ECS scopes.
pub fn working_set(usage_bytes: u64, inactive_file_bytes: Option<u64>) -> u64 {
    usage_bytes.saturating_sub(inactive_file_bytes.unwrap_or(0))
}

/// What a scope may use, whatever the source (a cgroup's quota and limit, an ECS task's
/// size): 100 % CPU and 100 % memory, where each figure came from, and whether it is a
/// limit of the scope's own or the machine's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    /// CPUs the scope may use.
    pub cpus: f64,
    /// Where `cpus` came from, for the log and `check`.
    pub cpus_from: &'static str,
    /// Whether `cpus` is the scope's own limit (a CFS quota, the task's size).
    pub cpu_limit: bool,
    /// Bytes the scope may use.
    pub memory_bytes: u64,
    /// Where `memory_bytes` came from.
    pub memory_from: &'static str,
    /// Whether `memory_bytes` is the scope's own limit.
    pub memory_limit: bool,
    /// The machine's CPUs: no scope can use more.
    pub machine_cpus: f64,
}

impl Capacity {
    /// Whether the scope has a limit of its own.
    pub fn any_limit(&self) -> bool {
        self.cpu_limit || self.memory_limit
    }
}

/// The whole machine (or VM): what utilization is measured against when a cgroup or task
/// has no limit of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    /// Online CPUs (`cpuN` lines of `/proc/stat`; else what the OS reports; at least 1).
    pub cpus: usize,
    /// `MemTotal` of `/proc/meminfo` in bytes; 0 when unreadable.
    pub memory_bytes: u64,
}

impl Machine {
    /// Reads `<root>/proc/stat` and `<root>/proc/meminfo` into `buf`. The figures are
    /// fallbacks, so a failed read falls back in turn rather than failing.
    pub fn read(root: &Path, buf: &mut String) -> Machine {
        let cpus = read_into(&root.join("proc/stat"), buf)
            .ok()
            .and_then(|()| procfs::parse_stat(buf).ok())
            .map(|s| s.online_cpus)
            .filter(|n| *n > 0)
            .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
            .unwrap_or(1);
        let memory_bytes = read_into(&root.join("proc/meminfo"), buf)
            .ok()
            .and_then(|()| procfs::parse_meminfo(buf).ok())
            .map_or(0, |m| m.total_kib.saturating_mul(1024));
        Machine { cpus, memory_bytes }
    }
}

/// A file read once a sample: opened once, then read again from offset 0 each time
/// (`/proc` and cgroup files are generated afresh by every read from the start), which
/// saves the path lookup, open, stat and close that dominate a small read. A failed read
/// is retried once on a fresh open, for a file that was replaced or a cgroup recreated.
#[derive(Debug)]
pub(crate) struct ProcFile {
    path: PathBuf,
    file: Option<std::fs::File>,
    /// Holds the last read; grows until the file fits in one read.
    buf: Vec<u8>,
}

impl ProcFile {
    pub(crate) fn new(path: PathBuf) -> Self {
        ProcFile {
            path,
            file: None,
            buf: vec![0; 4096],
        }
    }

    /// The whole file, as text, with its path for the caller's parse errors.
    pub(crate) fn read(&mut self) -> Result<(&str, &Path), SampleError> {
        let len = match self.read_from_start() {
            Err(_) if self.file.take().is_some() => self.read_from_start(),
            result => result,
        };
        let error = |source| SampleError::Read {
            path: self.path.clone(),
            source,
        };
        let len = len.map_err(error)?;
        let text = std::str::from_utf8(&self.buf[..len])
            .map_err(|e| error(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        Ok((text, &self.path))
    }

    fn read_from_start(&mut self) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let file = match &self.file {
            Some(file) => file,
            None => self.file.insert(std::fs::File::open(&self.path)?),
        };
        let mut len = 0;
        loop {
            let n = file.read_at(&mut self.buf[len..], len as u64)?;
            len += n;
            // A short read is the end: a regular file or a seq_file (all of /proc and
            // cgroupfs the agent reads) fills the whole buffer when it has the bytes.
            if n == 0 || len < self.buf.len() {
                return Ok(len);
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
    }
}

/// Reads a whole file into `buf`, reusing its allocation across samples.
pub(crate) fn read_into(path: &Path, buf: &mut String) -> Result<(), SampleError> {
    use std::io::Read;
    buf.clear();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_string(buf))
        .map(drop)
        .map_err(|source| SampleError::Read {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn absolute_figures_of_a_machine_are_its_shares_in_cpu_units_and_mib() {
        let a = Absolute::of_machine(Some(25.0), Some(50.0), 8.0, 16 << 30);
        assert_eq!(a.cpu_utilized, Some(2048.0), "2 of 8 CPUs busy");
        assert_eq!(a.cpu_reserved, Some(8192.0));
        assert_eq!(a.memory_utilized, Some(8192.0), "8 GiB of 16");
        assert_eq!(a.memory_reserved, Some(16384.0));
        let none = Absolute::of_machine(None, None, 8.0, 0);
        assert_eq!((none.cpu_utilized, none.memory_reserved), (None, None));
    }

    #[test]
    fn proc_file_rereads_from_the_start_and_grows_to_fit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stat");
        let mut file = ProcFile::new(path.clone());
        let missing = file.read().unwrap_err().to_string();
        assert!(missing.contains(&*path.to_string_lossy()), "{missing}");

        std::fs::write(&path, "first").unwrap();
        assert_eq!(file.read().unwrap().0, "first");
        // Rewritten in place, as the kernel regenerates a /proc file: read afresh.
        let long = "x".repeat(10_000);
        std::fs::write(&path, &long).unwrap();
        assert_eq!(file.read().unwrap().0, long);
        std::fs::write(&path, "short").unwrap();
        assert_eq!(file.read().unwrap().0, "short");
    }

    #[test]
    fn proc_file_of_a_process_that_is_gone_fails_with_its_path() {
        let mut child = Command::new("sleep").arg("60").spawn().unwrap();
        let path = PathBuf::from(format!("/proc/{}/stat", child.id()));
        let mut file = ProcFile::new(path.clone());
        assert!(file.read().unwrap().0.contains("(sleep)"));
        child.kill().unwrap();
        child.wait().unwrap();
        // The open descriptor now fails (ESRCH); the retry on a fresh open fails too.
        let error = file.read().unwrap_err().to_string();
        assert!(error.contains(&*path.to_string_lossy()), "{error}");
    }
}
