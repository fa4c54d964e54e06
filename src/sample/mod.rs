//! Where samples come from. A [`Source`] yields one [`Sample`] per call; the agent calls
//! it once a second. Parsers are pure (`procfs`); readers take a root directory so tests
//! run on fixture trees instead of the live `/proc`.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

pub mod cgroup;
pub mod ecs;
pub mod host;
pub mod mach;
pub mod procfs;

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

impl Source for ScopedSource {
    async fn sample(&mut self) -> Sample {
        match self {
            ScopedSource::Host(source) => source.sample().await,
            ScopedSource::Cgroup(source) => source.sample().await,
            ScopedSource::Ecs(source) => source.sample().await,
        }
    }
}

/// One reading of the metrics, in percent (0–100). `None` means "not measured this
/// time" (the first CPU reading has nothing to compare with; a file could not be read),
/// never zero.
#[derive(Debug, Default)]
pub struct Sample {
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    /// Share of CFS periods throttled since the last sample (cgroup scope, with a quota).
    pub throttled: Option<f64>,
    /// What went wrong while reading; a failed read costs that metric, not the sample.
    pub errors: Vec<SampleError>,
}

/// A source of samples. Asynchronous so that sources over HTTP fit the same loop.
pub trait Source {
    /// Takes one reading.
    fn sample(&mut self) -> impl Future<Output = Sample>;
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
            .map_or(0, |m| m.total_kib * 1024);
        Machine { cpus, memory_bytes }
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
