//! Samples of the agent's own cgroup: its CPU use, working set and throttling against its
//! limits. The usage files are opened once and re-read every sample.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::detect::{Dir, Layout, Version};
use super::limits;
use super::parse;
use crate::sample::kernel::KernelFiles;
use crate::sample::procfs::ParseError;
use crate::sample::rate::{self, Gap, Reading};
use crate::sample::traffic::TrafficFiles;
use crate::sample::{Absolute, CPU_UNITS_PER_VCPU, Capacity, INACTIVE_FILE_KEYS, working_set};
use crate::sample::{MemorySeen, ProcFile, Sample, SampleError, Source};

/// Limits change rarely (`docker update`, in-place resize): re-read them this often
/// rather than every second.
const LIMIT_REFRESH: u32 = 60;
/// USER_HZ: the tick of v1 `cpuacct.stat` (fixed at 100 on Linux, see proc(5)).
const USER_HZ: u64 = 100;

/// Samples the agent's own cgroup.
#[derive(Debug)]
pub struct CgroupSource {
    root: PathBuf,
    layout: Layout,
    limits: Capacity,
    samples_since_limits: u32,
    /// What the CPU time is divided by: wall time since this instant.
    origin: Instant,
    prev_cpu: Option<Reading>,
    /// `nr_throttled` over `nr_periods`.
    prev_throttling: Option<Reading>,
    /// The files read every sample, opened once.
    usage: UsageFiles,
    /// For the limit files, read once a minute and closed again.
    buf: String,
    /// OOM kills and pressure, where asked for.
    pub(crate) kernel: KernelFiles,
    /// Network and block device counters, where asked for.
    pub(crate) traffic: TrafficFiles,
    /// The highest working set so far, of the memory limit.
    pub(crate) memory_seen: Option<MemorySeen>,
}

/// The files read every sample. `None` where the controller is not mounted for this
/// cgroup, which a read then reports.
#[derive(Debug)]
struct UsageFiles {
    /// v2 `cpu.stat` (`usage_usec`), v1 `cpuacct.usage`.
    cpu: Option<ProcFile>,
    /// v1 `cpuacct.stat`, for kernels without `cpuacct.usage`.
    cpu_ticks: Option<ProcFile>,
    /// v2 `memory.current`, v1 `memory.usage_in_bytes`.
    memory: Option<ProcFile>,
    memory_stat: Option<ProcFile>,
    /// `cpu.stat` of the cpu controller (throttled periods).
    throttling: Option<ProcFile>,
}

impl UsageFiles {
    fn new(layout: &Layout) -> Self {
        let open =
            |dir: &Option<Dir>, name: &str| dir.as_ref().map(|d| ProcFile::new(d.path.join(name)));
        let v1 = layout.version == Version::V1;
        UsageFiles {
            cpu: open(
                &layout.cpuacct,
                if v1 { "cpuacct.usage" } else { "cpu.stat" },
            ),
            cpu_ticks: if v1 {
                open(&layout.cpuacct, "cpuacct.stat")
            } else {
                None
            },
            memory: open(
                &layout.memory,
                if v1 {
                    "memory.usage_in_bytes"
                } else {
                    "memory.current"
                },
            ),
            memory_stat: open(&layout.memory, "memory.stat"),
            throttling: open(&layout.cpu, "cpu.stat"),
        }
    }
}

/// Reads `file`, or says its controller is not mounted.
fn read_usage<'a>(
    file: &'a mut Option<ProcFile>,
    name: &'static str,
) -> Result<(&'a str, &'a Path), SampleError> {
    let file = file.as_mut().ok_or_else(|| SampleError::Read {
        path: PathBuf::from(name),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "controller not mounted for this cgroup",
        ),
    })?;
    file.read()
}

impl CgroupSource {
    /// A source for `layout`, after checking that its usage files can be read.
    pub fn new(root: &Path, layout: Layout) -> Result<Self, SampleError> {
        let mut buf = String::new();
        let limits = limits::read(root, &layout, &mut buf);
        let mut source = CgroupSource {
            root: root.to_owned(),
            usage: UsageFiles::new(&layout),
            layout,
            limits,
            samples_since_limits: 0,
            origin: Instant::now(),
            prev_cpu: None,
            prev_throttling: None,
            buf,
            kernel: KernelFiles::default(),
            traffic: TrafficFiles::default(),
            memory_seen: None,
        };
        source.read_cpu_nanos()?;
        source.read_memory_bytes()?;
        Ok(source)
    }

    /// Reads OOM kills and pressure too.
    pub fn with_kernel(mut self, kernel: KernelFiles) -> Self {
        self.kernel = kernel;
        self
    }

    /// Reads network and block device counters too.
    pub fn with_traffic(mut self, traffic: TrafficFiles) -> Self {
        self.traffic = traffic;
        self
    }

    /// The highest usage the kernel recorded for the cgroup (v1
    /// `memory.max_usage_in_bytes`, v2 `memory.peak` from Linux 5.19), page cache
    /// included, with the file's name: what samples a second apart can miss.
    pub fn recorded_peak(&self) -> Option<(u64, &'static str)> {
        let name = match self.layout.version {
            Version::V1 => "memory.max_usage_in_bytes",
            Version::V2 => "memory.peak",
        };
        let dir = self.layout.memory.as_ref()?;
        let text = std::fs::read_to_string(dir.path.join(name)).ok()?;
        let bytes = parse::number_or_max(&text).ok()??;
        Some((bytes, name))
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Where files are read under (`/` outside tests).
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn limits(&self) -> Capacity {
        self.limits
    }

    /// CPU time used by the cgroup since it was created, in nanoseconds.
    fn read_cpu_nanos(&mut self) -> Result<u64, SampleError> {
        let files = &mut self.usage;
        match self.layout.version {
            Version::V2 => {
                let (text, path) = read_usage(&mut files.cpu, "cpu.stat")?;
                let usec =
                    parse::keyed(text, "usage_usec").ok_or_else(|| missing(path, "usage_usec"))?;
                Ok(usec.saturating_mul(1000))
            }
            Version::V1 => match read_usage(&mut files.cpu, "cpuacct.usage") {
                Ok((text, path)) => parse::number_or_max(text)
                    .and_then(|n| n.ok_or_else(|| not_number(text)))
                    .map_err(|source| SampleError::Parse {
                        path: path.to_owned(),
                        source,
                    }),
                Err(_) => {
                    // Some kernels only offer ticks split by user and system.
                    let (text, path) = read_usage(&mut files.cpu_ticks, "cpuacct.stat")?;
                    let ticks = parse::keyed(text, "user").zip(parse::keyed(text, "system"));
                    let (user, system) = ticks.ok_or_else(|| missing(path, "user"))?;
                    Ok(user
                        .saturating_add(system)
                        .saturating_mul(1_000_000_000 / USER_HZ))
                }
            },
        }
    }

    /// The cgroup's [`working_set`].
    fn read_memory_bytes(&mut self) -> Result<u64, SampleError> {
        // v2's memory.stat has `inactive_file` only: the others are not looked for there.
        let (usage_file, inactive_keys): (&str, &[&str]) = match self.layout.version {
            Version::V2 => ("memory.current", &INACTIVE_FILE_KEYS[1..2]),
            Version::V1 => ("memory.usage_in_bytes", &INACTIVE_FILE_KEYS),
        };
        let (text, path) = read_usage(&mut self.usage.memory, usage_file)?;
        let usage = parse::number_or_max(text)
            .and_then(|n| n.ok_or_else(|| not_number(text)))
            .map_err(|source| SampleError::Parse {
                path: path.to_owned(),
                source,
            })?;
        let (text, _) = read_usage(&mut self.usage.memory_stat, "memory.stat")?;
        let inactive = inactive_keys.iter().find_map(|k| parse::keyed(text, k));
        Ok(working_set(usage, inactive))
    }

    /// A reading that cannot be measured against, named after this cgroup.
    fn implausible(&self, what: String) -> SampleError {
        SampleError::Implausible {
            origin: self.layout.to_string(),
            what,
        }
    }

    /// Throttled over all CFS periods, when the cgroup has a quota to be throttled by.
    fn read_throttling(&mut self) -> Result<Option<Reading>, SampleError> {
        if !self.limits.cpu_limit {
            return Ok(None);
        }
        let (text, _) = read_usage(&mut self.usage.throttling, "cpu.stat")?;
        let counters = parse::keyed(text, "nr_throttled").zip(parse::keyed(text, "nr_periods"));
        Ok(counters.map(|(used, span)| Reading { used, span }))
    }
}

impl Source for CgroupSource {
    async fn sample(&mut self) -> Sample {
        let mut sample = Sample::default();
        self.samples_since_limits += 1;
        if self.samples_since_limits >= LIMIT_REFRESH {
            self.samples_since_limits = 0;
            let limits = limits::read(&self.root, &self.layout, &mut self.buf);
            if limits != self.limits {
                log::info!("cgroup limits changed: {limits:?}");
            }
            self.limits = limits;
        }
        match self.read_cpu_nanos() {
            Ok(nanos) => {
                let now = Reading {
                    used: nanos,
                    span: u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX),
                };
                if let Some(prev) = self.prev_cpu {
                    sample.cpu = cpu_percent(prev, now, self.limits.cpus);
                    sample.absolute.cpu_utilized = rate::ratio(prev, now)
                        .ok()
                        .map(|vcpus| vcpus * CPU_UNITS_PER_VCPU);
                    if sample.cpu.is_none()
                        && self.limits.cpus.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
                    {
                        sample.errors.push(
                            self.implausible(format!("a CPU limit of {} CPUs", self.limits.cpus)),
                        );
                    }
                }
                self.prev_cpu = Some(now);
            }
            Err(e) => sample.errors.push(e),
        }
        match self.read_memory_bytes() {
            Ok(bytes) => {
                MemorySeen::update(&mut self.memory_seen, bytes, self.limits.memory_bytes);
                sample.memory = memory_percent(bytes, self.limits.memory_bytes);
                let absolute = Absolute::of(None, Some(bytes), &self.limits);
                sample.absolute = Absolute {
                    cpu_utilized: sample.absolute.cpu_utilized,
                    ..absolute
                };
                if sample.memory.is_none() {
                    sample.errors.push(self.implausible(
                        "no memory limit and no machine memory to measure against".into(),
                    ));
                }
            }
            Err(e) => sample.errors.push(e),
        }
        match self.read_throttling() {
            Ok(Some(cur)) => {
                if let Some(prev) = self.prev_throttling {
                    sample.throttled = throttled_percent(prev, cur);
                }
                self.prev_throttling = Some(cur);
            }
            Ok(None) => {}
            Err(e) => sample.errors.push(e),
        }
        self.kernel.sample_into(&mut sample);
        self.traffic.sample_into(&mut sample);
        sample
    }
}

/// Percent of the cgroup's CPU limit used: Δusage (ns) / (Δwall time (ns) × CPUs).
/// `None` for a counter that went backwards or no time passed.
pub(crate) fn cpu_percent(prev: Reading, cur: Reading, cpus: f64) -> Option<f64> {
    rate::ratio(prev, cur)
        .ok()
        .and_then(|r| rate::percent_of(r, cpus))
}

/// Percent (0–100) of the limit in use; `None` without a limit to measure against.
pub(crate) fn memory_percent(working_set: u64, limit: u64) -> Option<f64> {
    rate::percent_of(working_set as f64, limit as f64)
}

/// Share of CFS periods that were throttled between two readings. No period elapsed (an
/// idle cgroup) means nothing was throttled; counters that went back mean no sample.
pub(crate) fn throttled_percent(prev: Reading, cur: Reading) -> Option<f64> {
    match rate::ratio(prev, cur) {
        Ok(r) => rate::percent_of(r, 1.0),
        Err(Gap::NoSpan) => Some(0.0),
        Err(Gap::UsedBackwards | Gap::SpanBackwards) => None,
    }
}

fn missing(path: &Path, key: &'static str) -> SampleError {
    SampleError::Parse {
        path: path.to_owned(),
        source: ParseError::MissingLine(key),
    }
}

fn not_number(text: &str) -> ParseError {
    ParseError::BadNumber {
        field: "value".into(),
        value: text.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::sample::cgroup::detect;
    use crate::sample::cgroup::testing::{copy_of, fixture};

    const MIB: u64 = 1024 * 1024;

    fn source(root: &Path) -> CgroupSource {
        let layout = detect::detect(root).unwrap().expect("a cgroup filesystem");
        CgroupSource::new(root, layout).unwrap()
    }

    #[tokio::test]
    async fn v2_memory_is_the_working_set_of_memory_max() {
        let mut s = source(&fixture("v2-namespaced"));
        assert_eq!(s.read_cpu_nanos().unwrap(), 2_500_000_000);
        // (memory.current 200 MiB − inactive_file 72 MiB) / memory.max 256 MiB
        assert_eq!(s.sample().await.memory, Some(50.0));
    }

    #[tokio::test]
    async fn v2_memory_against_an_ancestors_limit() {
        // (300 MiB − 44 MiB) / 1024 MiB
        assert_eq!(
            source(&fixture("v2-host-path")).sample().await.memory,
            Some(25.0)
        );
    }

    #[tokio::test]
    async fn v1_cpuacct_usage_and_total_inactive_file() {
        let mut s = source(&fixture("v1-quota"));
        assert_eq!(s.read_cpu_nanos().unwrap(), 98_765_432_100, "cpuacct.usage");
        // (400 MiB − total_inactive_file 100 MiB) / 512 MiB
        assert_eq!(s.sample().await.memory, Some(300.0 / 512.0 * 100.0));
    }

    #[tokio::test]
    async fn absolute_figures_are_the_same_measurements_in_cpu_units_and_mib() {
        let mut s = source(&fixture("v1-quota"));
        let first = s.sample().await.absolute;
        // cpu.cfs_quota_us 150000 / cpu.cfs_period_us 100000: 1.5 CPUs, 1536 units; the
        // working set 400 − 100 MiB of memory.limit_in_bytes 512 MiB.
        assert_eq!(first.cpu_reserved, Some(1536.0));
        assert_eq!(first.memory_utilized, Some(300.0));
        assert_eq!(first.memory_reserved, Some(512.0));
        assert_eq!(
            first.cpu_utilized, None,
            "a rate: the first reading has no delta"
        );
        // CPU: the percentage's own ratio, before dividing by the CPUs.
        let tree = copy_of("v2-namespaced");
        let mut s = source(tree.path());
        s.sample().await;
        // 1 µs of CPU in at least 10 ms: far below the 0.5-CPU cap of 100 %.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let stat = tree.path().join("sys/fs/cgroup/cpu.stat");
        let text = "usage_usec 2500001\nnr_periods 300\nnr_throttled 100\n";
        fs::write(&stat, text).unwrap();
        let second = s.sample().await;
        let (units, reserved) = (second.absolute.cpu_utilized, second.absolute.cpu_reserved);
        let percent = units.zip(reserved).map(|(u, r)| u / r * 100.0);
        assert!(
            second
                .cpu
                .zip(percent)
                .is_some_and(|(cpu, p)| cpu < 100.0 && (cpu - p).abs() < 1e-9),
            "{second:?}"
        );
    }

    #[tokio::test]
    async fn v1_cpuacct_stat_ticks_and_memory_of_the_host() {
        let mut s = source(&fixture("v1-apart-unlimited"));
        // Only cpuacct.stat here: (300 + 200) ticks of 10 ms.
        assert_eq!(s.read_cpu_nanos().unwrap(), 5_000_000_000);
        // (2000 MiB − 437.5 MiB) of the host's 16,000,000 KiB
        assert_eq!(s.sample().await.memory, Some(10.0));
    }

    #[tokio::test]
    async fn throttling_is_the_share_of_periods_throttled_between_samples() {
        let tree = copy_of("v2-namespaced");
        let stat = tree.path().join("sys/fs/cgroup/cpu.stat");
        let mut s = source(tree.path());
        assert_eq!(
            s.sample().await.throttled,
            None,
            "the first reading has no delta"
        );
        fs::write(
            &stat,
            "usage_usec 3000000\nnr_periods 300\nnr_throttled 100\n",
        )
        .unwrap();
        let second = s.sample().await;
        assert_eq!(
            second.throttled,
            Some(50.0),
            "(100 − 50) of (300 − 200) periods"
        );
        assert!(second.cpu.is_some_and(|c| c > 0.0));
    }

    #[tokio::test]
    async fn limits_are_read_again_every_60_samples() {
        let tree = copy_of("v2-namespaced");
        let mut s = source(tree.path());
        assert_eq!(s.sample().await.memory, Some(50.0));
        // The container is resized to 512 MiB; the new limit counts within a minute.
        fs::write(
            tree.path().join("sys/fs/cgroup/memory.max"),
            format!("{}\n", 512 * MIB),
        )
        .unwrap();
        let mut seen = Vec::new();
        for _ in 0..LIMIT_REFRESH {
            seen.push(s.sample().await.memory.unwrap());
        }
        assert_eq!(seen.first(), Some(&50.0), "not re-read every second");
        assert_eq!(
            seen.last(),
            Some(&25.0),
            "re-read within {LIMIT_REFRESH} samples"
        );
    }

    #[tokio::test]
    async fn a_file_that_stops_making_sense_costs_that_metric_with_an_error_not_a_zero() {
        let tree = copy_of("v1-quota");
        let mut s = source(tree.path());
        s.sample().await;
        // (A removed cgroup's open files fail to read, as `ProcFile`'s tests show on /proc;
        // a fixture file stays readable through the open descriptor, so break its text.)
        fs::write(
            tree.path()
                .join("sys/fs/cgroup/memory/memory.usage_in_bytes"),
            "gone\n",
        )
        .unwrap();
        let sample = s.sample().await;
        assert_eq!(sample.memory, None);
        assert!(sample.cpu.is_some(), "CPU still measured");
        assert_eq!(sample.errors.len(), 1);
        assert!(
            sample.errors[0]
                .to_string()
                .contains("memory.usage_in_bytes")
        );
    }

    #[test]
    fn cpu_percent_is_usage_over_elapsed_times_the_limit() {
        let at = |used, span| Reading { used, span };
        let second = 1_000_000_000;
        // Half a CPU-second in one second against a 0.5-CPU quota: all of it.
        assert_eq!(
            cpu_percent(at(0, 0), at(500_000_000, second), 0.5),
            Some(100.0)
        );
        assert_eq!(
            cpu_percent(at(0, 0), at(250_000_000, second), 2.0),
            Some(12.5)
        );
        assert_eq!(
            cpu_percent(at(10, 0), at(5, second), 1.0),
            None,
            "counter went backwards"
        );
        assert_eq!(cpu_percent(at(0, 7), at(5, 7), 1.0), None, "no time passed");
    }

    #[test]
    fn throttled_percent_handles_idle_and_resets() {
        let at = |used, span| Reading { used, span };
        assert_eq!(throttled_percent(at(5, 10), at(5, 10)), Some(0.0));
        assert_eq!(throttled_percent(at(5, 10), at(6, 12)), Some(50.0));
        assert_eq!(throttled_percent(at(5, 10), at(0, 0)), None);
    }
}
