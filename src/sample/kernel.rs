//! What utilization hides, from counters the kernel keeps next to usage: OOM kills
//! (`oom_kill` in `/proc/vmstat`, cgroup v2 `memory.events`, cgroup v1
//! `memory.oom_control`) and pressure stall information (PSI: `/proc/pressure/*`, cgroup
//! v2 `*.pressure`, Documentation/accounting/psi.rst). Both are cumulative counters, read
//! every sample like CPU time: kills since the last sample, and the share of the time
//! since then that some task stalled.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::procfs::ParseError;
use super::rate::{self, Reading};
use super::{ProcFile, Sample, SampleError};
use crate::domain::{Metric, MetricSet};

/// Kills so far in `memory.events`, `memory.oom_control` or `/proc/vmstat`: the
/// `oom_kill N` line (kernels before 4.13 have none in cgroup v1).
pub fn parse_oom_kills(text: &str) -> Result<u64, ParseError> {
    const KEY: &str = "oom_kill";
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix(KEY)?.strip_prefix(' '))
        .ok_or(ParseError::MissingLine(KEY))?;
    value.trim().parse().map_err(|_| ParseError::BadNumber {
        field: KEY.into(),
        value: value.trim().to_owned(),
    })
}

/// Microseconds so far during which some task stalled: `total=` of the `some` line of a
/// PSI file (`some avg10=0.00 avg60=0.00 avg300=0.00 total=12345`).
pub fn parse_pressure_some(text: &str) -> Result<u64, ParseError> {
    const LINE: &str = "some";
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix("some "))
        .ok_or(ParseError::MissingLine(LINE))?;
    let total = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("total="))
        .ok_or(ParseError::MissingLine("some total="))?;
    total.parse().map_err(|_| ParseError::BadNumber {
        field: "some total".into(),
        value: total.to_owned(),
    })
}

/// Kills between two readings of the counter. A counter that went back was reset (its
/// cgroup was recreated), so everything it counts now happened since: counted as such.
pub fn kills_between(prev: u64, cur: u64) -> u64 {
    cur.checked_sub(prev).unwrap_or(cur)
}

/// Percent of the wall time between two readings during which some task stalled; `None`
/// for a counter that went back (a recreated cgroup) or no time between the readings.
pub fn stalled_percent(prev: Reading, cur: Reading) -> Option<f64> {
    rate::ratio(prev, cur)
        .ok()
        .and_then(|r| rate::percent_of(r, 1.0))
}

/// Where a scope's counters are, or why it has none.
#[derive(Debug, Clone)]
pub struct Places {
    oom: Result<PathBuf, String>,
    /// `cpu`, `memory` and `io`, in [`Metric::PRESSURE`] order.
    pressure: Result<[PathBuf; 3], String>,
}

impl Places {
    /// A scope without any of them, and why.
    #[cfg(any(target_os = "macos", test))]
    pub fn unavailable(reason: &str) -> Places {
        Places {
            oom: Err(reason.to_owned()),
            pressure: Err(reason.to_owned()),
        }
    }

    /// The whole machine: `/proc/vmstat` and `/proc/pressure/{cpu,memory,io}`.
    pub fn host(root: &Path) -> Places {
        let proc = root.join("proc");
        Places {
            oom: Ok(proc.join("vmstat")),
            pressure: Ok(["cpu", "memory", "io"].map(|r| proc.join("pressure").join(r))),
        }
    }

    /// Counters at `oom` (a `/proc/vmstat`, `memory.events` or `memory.oom_control`
    /// file) and `pressure` (`cpu`, `memory` and `io` PSI files, in that order), or why
    /// there are none: a scope's source says where its files are.
    pub fn new(oom: Result<PathBuf, String>, pressure: Result<[PathBuf; 3], String>) -> Places {
        Places { oom, pressure }
    }
}

/// A metric asked for that this scope cannot measure, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Unavailable {
    pub metric: Metric,
    pub reason: String,
}

/// The OOM kill counter.
#[derive(Debug)]
struct OomCounter {
    file: ProcFile,
    /// The last reading; kills are counted from it.
    prev: u64,
    /// The reading when the source opened.
    first: u64,
    /// Whether samples carry it (`--metrics oom`), or it is only watched for wrapper mode.
    published: bool,
}

/// One PSI file.
#[derive(Debug)]
struct PressureFile {
    metric: Metric,
    file: ProcFile,
    prev: Reading,
}

/// The counters a scope reads each sample besides usage, opened once.
#[derive(Debug, Default)]
pub struct KernelFiles {
    oom: Option<OomCounter>,
    pressure: Vec<PressureFile>,
    /// Wall time for PSI is measured from here, in microseconds like its counters.
    origin: Option<Instant>,
}

impl KernelFiles {
    /// Opens what `wanted` asks for at `places`, reading each once (the baseline of its
    /// counter), and says what cannot be measured. With `watch_oom` the OOM counter is
    /// opened even when not published, so that wrapper mode can tell an OOM kill; its
    /// absence is then not reported.
    pub fn open(
        places: &Places,
        wanted: MetricSet,
        watch_oom: bool,
    ) -> (KernelFiles, Vec<Unavailable>) {
        let mut files = KernelFiles {
            origin: Some(Instant::now()),
            ..KernelFiles::default()
        };
        let mut unavailable = Vec::new();
        let published = wanted.contains(Metric::OomKills);
        if published || watch_oom {
            let opened = places.oom.clone().and_then(|path| {
                let mut file = ProcFile::new(path);
                let count = read_oom(&mut file).map_err(|e| e.to_string())?;
                Ok(OomCounter {
                    file,
                    prev: count,
                    first: count,
                    published,
                })
            });
            match opened {
                Ok(counter) => files.oom = Some(counter),
                Err(reason) if published => unavailable.push(Unavailable {
                    metric: Metric::OomKills,
                    reason,
                }),
                Err(reason) => log::debug!("OOM kills cannot be watched: {reason}"),
            }
        }
        for (i, metric) in Metric::PRESSURE.into_iter().enumerate() {
            if !wanted.contains(metric) {
                continue;
            }
            let opened = places.pressure.clone().and_then(|paths| {
                let mut file = ProcFile::new(paths[i].clone());
                let prev = files.read_pressure(&mut file).map_err(|e| e.to_string())?;
                Ok(PressureFile { metric, file, prev })
            });
            match opened {
                Ok(file) => files.pressure.push(file),
                Err(reason) => unavailable.push(Unavailable { metric, reason }),
            }
        }
        (files, unavailable)
    }

    /// Adds kills and stalls since the last sample to `sample`; a file that cannot be
    /// read costs its metric this time, with the error.
    pub fn sample_into(&mut self, sample: &mut Sample) {
        if let Some(oom) = self.oom.as_mut().filter(|o| o.published) {
            match read_oom(&mut oom.file) {
                Ok(count) => {
                    sample.oom_kills = Some(kills_between(oom.prev, count) as f64);
                    oom.prev = count;
                }
                Err(e) => sample.errors.push(e),
            }
        }
        let origin = self.origin;
        for pressure in &mut self.pressure {
            match read_pressure_at(origin, &mut pressure.file) {
                Ok(cur) => {
                    let value = stalled_percent(pressure.prev, cur);
                    pressure.prev = cur;
                    match pressure.metric {
                        Metric::CpuPressure => sample.cpu_pressure = value,
                        Metric::MemoryPressure => sample.memory_pressure = value,
                        _ => sample.io_pressure = value,
                    }
                }
                Err(e) => sample.errors.push(e),
            }
        }
    }

    /// OOM kills since the source opened, read now; `None` where they cannot be read.
    pub fn oom_kills_since_open(&mut self) -> Option<u64> {
        let oom = self.oom.as_mut()?;
        let count = read_oom(&mut oom.file).ok()?;
        Some(kills_between(oom.first, count))
    }

    fn read_pressure(&self, file: &mut ProcFile) -> Result<Reading, SampleError> {
        read_pressure_at(self.origin, file)
    }
}

fn read_oom(file: &mut ProcFile) -> Result<u64, SampleError> {
    let (text, path) = file.read()?;
    parse_oom_kills(text).map_err(|source| SampleError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Stalled microseconds so far, over microseconds since `origin`.
fn read_pressure_at(origin: Option<Instant>, file: &mut ProcFile) -> Result<Reading, SampleError> {
    let span = origin.map_or(0, |o| {
        u64::try_from(o.elapsed().as_micros()).unwrap_or(u64::MAX)
    });
    let (text, path) = file.read()?;
    let used = parse_pressure_some(text).map_err(|source| SampleError::Parse {
        path: path.to_owned(),
        source,
    })?;
    Ok(Reading { used, span })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn fixture(path: &str) -> String {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        fs::read_to_string(dir.join(path)).unwrap()
    }

    #[test]
    fn oom_kills_from_vmstat_memory_events_and_oom_control() {
        assert_eq!(parse_oom_kills(&fixture("proc-2cpu/proc/vmstat")), Ok(2));
        let v2 = fixture("cgroup/v2-namespaced/sys/fs/cgroup/memory.events");
        assert_eq!(
            parse_oom_kills(&v2),
            Ok(1),
            "oom_kill, not oom or oom_group_kill"
        );
        let v1 = fixture("cgroup/v1-quota/sys/fs/cgroup/memory/memory.oom_control");
        assert_eq!(parse_oom_kills(&v1), Ok(3));
        // Kernels before 4.13 have no oom_kill line in memory.oom_control.
        assert_eq!(
            parse_oom_kills("oom_kill_disable 0\nunder_oom 0\n"),
            Err(ParseError::MissingLine("oom_kill"))
        );
        assert!(matches!(
            parse_oom_kills("oom_kill lots\n"),
            Err(ParseError::BadNumber { .. })
        ));
    }

    #[test]
    fn pressure_is_the_some_lines_total() {
        let host = fixture("proc-2cpu/proc/pressure/cpu");
        assert_eq!(parse_pressure_some(&host), Ok(587_739_051));
        let v2 = fixture("cgroup/v2-namespaced/sys/fs/cgroup/memory.pressure");
        assert_eq!(parse_pressure_some(&v2), Ok(3_114_581), "some, not full");
        assert_eq!(
            parse_pressure_some("full avg10=0.00 avg60=0.00 avg300=0.00 total=5\n"),
            Err(ParseError::MissingLine("some"))
        );
        assert_eq!(
            parse_pressure_some("some avg10=0.00\n"),
            Err(ParseError::MissingLine("some total="))
        );
        assert!(matches!(
            parse_pressure_some("some total=-1\n"),
            Err(ParseError::BadNumber { .. })
        ));
    }

    #[test]
    fn kills_and_stalls_between_readings_survive_counters_going_back() {
        assert_eq!(kills_between(3, 5), 2);
        assert_eq!(kills_between(5, 5), 0);
        assert_eq!(kills_between(5, 1), 1, "reset: the new counter's kills");
        let r = |used, span| Reading { used, span };
        assert_eq!(stalled_percent(r(0, 0), r(250_000, 1_000_000)), Some(25.0));
        assert_eq!(stalled_percent(r(500, 0), r(100, 1_000_000)), None, "reset");
        assert_eq!(stalled_percent(r(0, 10), r(0, 10)), None, "no time");
        assert_eq!(
            stalled_percent(r(0, 0), r(1_000_100, 1_000_000)),
            Some(100.0),
            "a counter read a little after the clock is capped"
        );
    }

    /// A scope's files on a temporary tree, rewritten between samples.
    fn tree() -> (tempfile::TempDir, Places) {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path().join("proc");
        fs::create_dir_all(proc.join("pressure")).unwrap();
        fs::write(proc.join("vmstat"), "nr_free_pages 1\noom_kill 4\n").unwrap();
        for r in ["cpu", "memory", "io"] {
            fs::write(proc.join("pressure").join(r), "some avg10=0.00 total=0\n").unwrap();
        }
        let places = Places::host(dir.path());
        (dir, places)
    }

    #[test]
    fn samples_carry_kills_since_the_last_one_and_0_when_quiet() {
        let (dir, places) = tree();
        let wanted = MetricSet::of(&[Metric::OomKills]);
        let (mut files, unavailable) = KernelFiles::open(&places, wanted, false);
        assert_eq!(unavailable, []);
        let vmstat = dir.path().join("proc/vmstat");
        let mut sample = Sample::default();
        files.sample_into(&mut sample);
        assert_eq!(
            sample.oom_kills,
            Some(0.0),
            "kills before the start are not counted"
        );
        fs::write(&vmstat, "oom_kill 6\n").unwrap();
        let mut sample = Sample::default();
        files.sample_into(&mut sample);
        assert_eq!(sample.oom_kills, Some(2.0));
        assert_eq!(sample.cpu_pressure, None, "not asked for");
        assert_eq!(files.oom_kills_since_open(), Some(2));
        // A file that stops making sense costs the metric for that sample, with the
        // error; the next good reading counts from the last good one.
        fs::write(&vmstat, "oom_kill ?\n").unwrap();
        let mut sample = Sample::default();
        files.sample_into(&mut sample);
        assert_eq!(sample.oom_kills, None);
        assert!(
            sample.errors[0].to_string().contains("vmstat"),
            "{:?}",
            sample.errors
        );
        fs::write(&vmstat, "oom_kill 7\n").unwrap();
        let mut sample = Sample::default();
        files.sample_into(&mut sample);
        assert_eq!(sample.oom_kills, Some(1.0));
    }

    #[test]
    fn pressure_is_the_share_of_wall_time_stalled_since_the_last_sample() {
        let (dir, places) = tree();
        let (mut files, _) = KernelFiles::open(&places, MetricSet::of(&Metric::PRESSURE), false);
        assert!(files.oom.is_none(), "not asked for, not watched");
        std::thread::sleep(std::time::Duration::from_millis(200));
        // A stall as long as the whole interval and more: capped at 100.
        fs::write(
            dir.path().join("proc/pressure/cpu"),
            "some total=10000000\n",
        )
        .unwrap();
        let mut sample = Sample::default();
        files.sample_into(&mut sample);
        assert_eq!(sample.cpu_pressure, Some(100.0));
        assert_eq!(sample.memory_pressure, Some(0.0));
        assert_eq!(sample.io_pressure, Some(0.0));
        // The same total again: no stall since.
        let mut sample = Sample::default();
        files.sample_into(&mut sample);
        assert_eq!(sample.cpu_pressure, Some(0.0));
    }

    #[test]
    fn a_sample_of_the_host_or_a_cgroup_allocates_nothing() {
        use crate::counting_alloc::allocations_during;
        use crate::sample::Source;
        let counted = allocations_during(|| drop(std::hint::black_box(Box::new(1u8))));
        assert_eq!(counted, 1, "the counter counts");

        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let all = MetricSet::of(&[
            Metric::OomKills,
            Metric::CpuPressure,
            Metric::MemoryPressure,
        ]);
        let host = fixtures.join("proc-2cpu");
        let (files, unavailable) = KernelFiles::open(&Places::host(&host), all, false);
        assert_eq!(unavailable, []);
        // Network and storage counters: a NIC beside loopback, a disk beside its
        // partition and a loop device, and a cgroup v2 io.stat of two devices.
        let tree = tempfile::tempdir().unwrap();
        let at = |path: &str| tree.path().join(path);
        for dir in [
            "proc/net",
            "sys/class/net/eth0/device",
            "sys/block/sda/sda1",
        ] {
            fs::create_dir_all(at(dir)).unwrap();
        }
        fs::write(
            at("proc/net/dev"),
            "Inter-| Receive | Transmit\n face |bytes packets|bytes packets\n\
             lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n\
             eth0: 5000 9 0 0 0 0 0 0 7000 9 0 0 0 0 0 0\n",
        )
        .unwrap();
        fs::write(
            at("proc/diskstats"),
            "   7       0 loop0 1 0 2 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n\
                8       0 sda 10 0 800 0 20 0 1600 0 0 0 0 0 0 0 0 0 0\n\
                8       1 sda1 5 0 400 0 10 0 800 0 0 0 0 0 0 0 0 0 0\n",
        )
        .unwrap();
        fs::write(
            at("io.stat"),
            "8:0 rbytes=1 wbytes=2 rios=1 wios=1\n8:16 rbytes=3 wbytes=4\n",
        )
        .unwrap();
        use crate::sample::traffic::{self, TrafficFiles};
        let both = MetricSet::of(&[Metric::NetworkRx, Metric::StorageRead]);
        let (traffic_files, unavailable) =
            TrafficFiles::open(&traffic::Places::host(tree.path()), both);
        assert_eq!(unavailable, []);
        let mut host = crate::sample::HostSource::new(&host)
            .with_kernel(files)
            .with_traffic(traffic_files);

        let root = fixtures.join("cgroup/v2-namespaced");
        let layout = crate::sample::cgroup::detect(&root).unwrap().unwrap();
        let (files, unavailable) = KernelFiles::open(&layout.kernel_places(), all, false);
        assert_eq!(unavailable, []);
        let cgroup_traffic = traffic::Places {
            network: Ok(traffic::network_files(tree.path())),
            storage: Ok((at("io.stat"), traffic::Shape::IoStat)),
        };
        let (traffic_files, unavailable) = TrafficFiles::open(&cgroup_traffic, both);
        assert_eq!(unavailable, []);
        let mut cgroup = crate::sample::CgroupSource::new(&root, layout)
            .unwrap()
            .with_kernel(files)
            .with_traffic(traffic_files);

        let mut sample = || {
            for s in [block_on(host.sample()), block_on(cgroup.sample())] {
                assert!(s.errors.is_empty(), "{:?}", s.errors);
                assert_eq!((s.oom_kills, s.memory_pressure), (Some(0.0), Some(0.0)));
                assert_eq!((s.network_rx, s.storage_write), (Some(0.0), Some(0.0)));
            }
        };
        sample();
        let n = allocations_during(|| {
            for _ in 0..58 {
                sample();
            }
        });
        assert_eq!(n, 0, "allocations in 58 samples of each");
        // The 60th re-reads the cgroup's limits (once a minute): their paths are built.
        let n = allocations_during(&mut sample);
        assert!((1..=16).contains(&n), "the limits' re-read: {n}");
    }

    /// Polls a future that never waits (the host source reads files) to its end.
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return out;
            }
        }
    }

    #[test]
    fn what_a_scope_cannot_measure_is_named_with_the_reason() {
        let (dir, places) = tree();
        fs::remove_file(dir.path().join("proc/pressure/io")).unwrap();
        let all = MetricSet::of(&[Metric::OomKills, Metric::CpuPressure, Metric::IoPressure]);
        let (_, unavailable) = KernelFiles::open(&places, all, false);
        assert_eq!(unavailable.len(), 1);
        assert_eq!(unavailable[0].metric, Metric::IoPressure);
        assert!(
            unavailable[0].reason.contains("pressure/io"),
            "{unavailable:?}"
        );

        let v1 =
            crate::sample::cgroup::detect(&crate::sample::cgroup::testing::fixture("v1-quota"))
                .unwrap()
                .unwrap();
        let (mut files, unavailable) = KernelFiles::open(&v1.kernel_places(), all, false);
        let reasons: Vec<_> = unavailable
            .iter()
            .map(|u| (u.metric, u.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    Metric::CpuPressure,
                    "cgroup v1 keeps no pressure per cgroup (PSI needs cgroup v2)"
                ),
                (
                    Metric::IoPressure,
                    "cgroup v1 keeps no pressure per cgroup (PSI needs cgroup v2)"
                )
            ]
        );
        assert_eq!(files.oom_kills_since_open(), Some(0));

        // Watched for wrapper mode only: a missing counter is not reported.
        fs::remove_file(dir.path().join("proc/vmstat")).unwrap();
        let (files, unavailable) = KernelFiles::open(&places, MetricSet::EMPTY, true);
        assert!(unavailable.is_empty() && files.oom.is_none());
    }
}
