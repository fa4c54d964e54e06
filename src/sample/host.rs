//! The host scope: the whole machine (or VM) from `/proc/stat` and `/proc/meminfo`.

use std::path::Path;

use super::kernel::KernelFiles;
use super::procfs::{self, CpuTimes};
use super::rate::{self, Reading};
use super::traffic::TrafficFiles;
use super::{CPU_UNITS_PER_VCPU, MemorySeen, ProcFile, Sample, SampleError, Source};

/// Samples the whole machine from `<root>/proc`.
#[derive(Debug)]
pub struct HostSource {
    stat: ProcFile,
    meminfo: ProcFile,
    /// The previous CPU reading; CPU use is a rate, so it needs two.
    prev_cpu: Option<CpuTimes>,
    /// OOM kills and pressure, where asked for.
    pub(crate) kernel: KernelFiles,
    /// Network and block device counters, where asked for.
    pub(crate) traffic: TrafficFiles,
    /// The highest memory in use so far, of MemTotal.
    pub(crate) memory_seen: Option<MemorySeen>,
}

impl HostSource {
    /// A source reading `<root>/proc/stat` and `<root>/proc/meminfo`.
    pub fn new(root: &Path) -> Self {
        HostSource {
            stat: ProcFile::new(root.join("proc/stat")),
            meminfo: ProcFile::new(root.join("proc/meminfo")),
            prev_cpu: None,
            kernel: KernelFiles::default(),
            traffic: TrafficFiles::default(),
            memory_seen: None,
        }
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

    /// The busy share of all CPUs (percent) since the last reading, and the CPUs online.
    fn read_cpu(&mut self) -> Result<(Option<f64>, usize), SampleError> {
        let (text, path) = self.stat.read()?;
        let stat = procfs::parse_stat(text).map_err(|source| SampleError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let percent = self
            .prev_cpu
            .and_then(|prev| cpu_percent(prev.reading(), stat.cpu.reading()));
        self.prev_cpu = Some(stat.cpu);
        Ok((percent, stat.online_cpus))
    }

    /// The share of memory in use (percent), with the KiB in use and in all.
    fn read_memory(&mut self) -> Result<(f64, u64, u64), SampleError> {
        let (text, path) = self.meminfo.read()?;
        let info = procfs::parse_meminfo(text).map_err(|source| SampleError::Parse {
            path: path.to_owned(),
            source,
        })?;
        MemorySeen::update(
            &mut self.memory_seen,
            info.used_kib().saturating_mul(1024),
            info.total_kib.saturating_mul(1024),
        );
        let percent = info
            .used_percent()
            .ok_or_else(|| SampleError::Implausible {
                origin: path.display().to_string(),
                what: "MemTotal is 0".into(),
            })?;
        Ok((percent, info.used_kib(), info.total_kib))
    }
}

/// KiB in a MiB.
const KIB_PER_MIB: f64 = 1024.0;

/// Percent (0–100) of all CPU capacity that was busy between two readings; `None` when
/// no tick passed or a counter went backwards (a CPU hot-unplugged, a counter reset):
/// that interval cannot be measured, and a guess would be a lie. Busy can exceed the
/// total by a tick when iowait steps back (a known NO_HZ quirk): capped at 100.
fn cpu_percent(prev: Reading, cur: Reading) -> Option<f64> {
    rate::ratio(prev, cur)
        .ok()
        .and_then(|r| rate::percent_of(r, 1.0))
}

impl Source for HostSource {
    async fn sample(&mut self) -> Sample {
        let mut sample = Sample::default();
        match self.read_cpu() {
            Ok((cpu, cpus)) => {
                sample.cpu = cpu;
                // The busy share of every CPU, as CPU units of the machine's CPUs.
                let units = cpus as f64 * CPU_UNITS_PER_VCPU;
                sample.absolute.cpu_utilized = cpu.map(|p| p / 100.0 * units);
                sample.absolute.cpu_reserved = (cpus > 0).then_some(units);
            }
            Err(e) => sample.errors.push(e),
        }
        match self.read_memory() {
            Ok((memory, used_kib, total_kib)) => {
                sample.memory = Some(memory);
                sample.absolute.memory_utilized = Some(used_kib as f64 / KIB_PER_MIB);
                sample.absolute.memory_reserved = Some(total_kib as f64 / KIB_PER_MIB);
            }
            Err(e) => sample.errors.push(e),
        }
        self.kernel.sample_into(&mut sample);
        self.traffic.sample_into(&mut sample);
        sample
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;

    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    #[test]
    fn cpu_is_the_busy_share_of_the_ticks_and_skips_counters_going_backwards() {
        let r = |busy, total| CpuTimes { busy, total }.reading();
        assert_eq!(cpu_percent(r(1000, 5000), r(1050, 5200)), Some(25.0));
        assert_eq!(cpu_percent(r(1000, 5000), r(1200, 5200)), Some(100.0));
        assert_eq!(
            cpu_percent(r(1000, 5000), r(1102, 5100)),
            Some(100.0),
            "iowait quirk"
        );
        assert_eq!(cpu_percent(r(1000, 5000), r(900, 5200)), None);
        assert_eq!(cpu_percent(r(1000, 5000), r(1100, 4000)), None);
        assert_eq!(
            cpu_percent(r(1000, 5000), r(1000, 5000)),
            None,
            "no time passed"
        );
    }

    #[tokio::test]
    async fn first_sample_has_memory_only_then_cpu_from_the_delta() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::create_dir_all(dir.join("proc")).unwrap();
        fs::copy(fixture("proc-2cpu/proc/meminfo"), dir.join("proc/meminfo")).unwrap();
        fs::write(dir.join("proc/stat"), "cpu  100 0 100 800 0 0 0 0 0 0\n").unwrap();
        let mut source = HostSource::new(dir);

        let first = source.sample().await;
        assert_eq!((first.cpu, first.memory), (None, Some(25.0)));

        fs::write(dir.join("proc/stat"), "cpu  150 0 150 900 0 0 0 0 0 0\n").unwrap();
        let second = source.sample().await;
        assert_eq!((second.cpu, second.memory), (Some(50.0), Some(25.0)));
        assert!(second.errors.is_empty());
    }

    #[tokio::test]
    async fn absolute_figures_are_the_busy_share_of_the_cpus_and_the_kib_in_use() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::create_dir_all(dir.join("proc")).unwrap();
        fs::copy(fixture("proc-2cpu/proc/meminfo"), dir.join("proc/meminfo")).unwrap();
        let stat = |busy: u64, idle: u64| {
            format!("cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 0 0 0 0\ncpu1 0 0 0 0\n")
        };
        fs::write(dir.join("proc/stat"), stat(100, 900)).unwrap();
        let mut source = HostSource::new(dir);
        source.sample().await;
        fs::write(dir.join("proc/stat"), stat(250, 1050)).unwrap();
        let a = source.sample().await.absolute;
        // 150 busy ticks of 300 on 2 CPUs: one CPU's worth, 1024 units of 2048.
        assert_eq!(
            (a.cpu_utilized, a.cpu_reserved),
            (Some(1024.0), Some(2048.0))
        );
        // MemTotal 16,000,000 KiB − MemFree 6,000,000 − Buffers 500,000 − Cached
        // 5,000,000 − SReclaimable 500,000 = 4,000,000 KiB in use.
        assert_eq!(a.memory_utilized, Some(4_000_000.0 / 1024.0));
        assert_eq!(a.memory_reserved, Some(16_000_000.0 / 1024.0));
    }

    #[tokio::test]
    async fn a_missing_file_costs_only_its_metric_and_names_the_path() {
        let mut source = HostSource::new(&fixture("does-not-exist"));
        let sample = source.sample().await;
        assert_eq!((sample.cpu, sample.memory), (None, None));
        assert_eq!(sample.errors.len(), 2);
        let msg = sample.errors[1].to_string();
        assert!(msg.contains("does-not-exist/proc/meminfo"), "{msg}");

        let mut source = HostSource::new(&fixture("proc-2cpu"));
        let sample = source.sample().await;
        assert_eq!(sample.memory, Some(25.0));
        assert!(sample.errors.is_empty());
    }

    #[tokio::test]
    async fn live_proc_gives_values_within_0_to_100() {
        let mut source = HostSource::new(Path::new("/"));
        source.sample().await;
        // Burn a little CPU so that some ticks pass between the readings.
        let until = std::time::Instant::now() + std::time::Duration::from_millis(50);
        while std::time::Instant::now() < until {
            std::hint::black_box(0u64);
        }
        let sample = source.sample().await;
        let memory = sample.memory.expect("live /proc/meminfo parses");
        assert!((0.0..=100.0).contains(&memory), "{memory}");
        if let Some(cpu) = sample.cpu {
            assert!((0.0..=100.0).contains(&cpu), "{cpu}");
        }
    }
}
