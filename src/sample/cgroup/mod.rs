//! The cgroup scope: the cgroup the agent runs in (its container), measured against that
//! cgroup's own CPU quota and memory limit, on cgroup v2 or v1 (hybrid layouts included).
//! Found from `/proc/self/cgroup` and `/proc/self/mountinfo`, so it works with cgroup
//! namespaces (the container's cgroup is the mount's root) and without (a sub-path).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::procfs::ParseError;
use super::{Machine, ProcFile, Sample, SampleError, Source, read_into};

pub mod parse;

use parse::{CgroupMount, Membership};

/// Limits change rarely (`docker update`, in-place resize): re-read them this often
/// rather than every second.
const LIMIT_REFRESH: u32 = 60;
/// USER_HZ: the tick of v1 `cpuacct.stat` (fixed at 100 on Linux, see proc(5)).
const USER_HZ: u64 = 100;
/// Paths in `/proc/self/cgroup` that only container runtimes create.
const CONTAINER_MARKERS: [&str; 6] = ["docker", "kubepods", "containerd", "libpod", "lxc", "ecs"];

/// cgroup v1 (one hierarchy per controller) or v2 (one unified hierarchy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// A cgroup directory and the mount point above which limits are not looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dir {
    pub path: PathBuf,
    top: PathBuf,
}

impl Dir {
    /// This directory and its ancestors up to the mount point: an ancestor's limit
    /// binds this cgroup too.
    fn lineage(&self) -> impl Iterator<Item = &Path> {
        let top = self.top.as_path();
        self.path
            .ancestors()
            .take_while(move |p| p.starts_with(top))
    }
}

/// Where the agent's cgroup files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub version: Version,
    /// v1 `cpu` (quota, throttling) or the v2 directory.
    pub cpu: Option<Dir>,
    /// v1 `cpuacct` (usage) or the v2 directory.
    pub cpuacct: Option<Dir>,
    /// v1 `memory` or the v2 directory.
    pub memory: Option<Dir>,
    /// v1 `cpuset` or the v2 directory.
    pub cpuset: Option<Dir>,
    /// Whether `/proc/self/cgroup` names a container runtime.
    runtime_path: bool,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |d: &Option<Dir>| {
            d.as_ref()
                .map_or("-".into(), |d| d.path.display().to_string())
        };
        match self.version {
            Version::V2 => write!(f, "cgroup v2 at {}", show(&self.memory)),
            Version::V1 => write!(
                f,
                "cgroup v1 (cpu {}, cpuacct {}, memory {})",
                show(&self.cpu),
                show(&self.cpuacct),
                show(&self.memory)
            ),
        }
    }
}

/// Finds the agent's cgroup under `root`. `Ok(None)` when there is no cgroup filesystem.
/// v1 wins where its `cpu`, `cpuacct` or `memory` controllers are mounted (the hybrid
/// layout has v1 controllers next to an empty unified mount); otherwise v2.
pub fn detect(root: &Path) -> Result<Option<Layout>, SampleError> {
    let mut buf = String::new();
    let self_cgroup = root.join("proc/self/cgroup");
    match read_into(&self_cgroup, &mut buf) {
        Ok(()) => {}
        Err(SampleError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    }
    let memberships = parse::parse_self_cgroup(&buf).map_err(|source| SampleError::Parse {
        path: self_cgroup.clone(),
        source,
    })?;
    read_into(&root.join("proc/self/mountinfo"), &mut buf)?;
    let mounts = parse::parse_mountinfo(&buf);
    let runtime_path = memberships.iter().any(|m| {
        CONTAINER_MARKERS
            .iter()
            .any(|marker| m.path.contains(marker))
    });

    let v1 = |controller: &str| {
        let member = memberships
            .iter()
            .find(|m| m.controllers.iter().any(|c| c == controller))?;
        let mount = mounts
            .iter()
            .find(|m| m.fstype == "cgroup" && m.controllers.iter().any(|c| c == controller))?;
        Some(resolve(root, mount, member))
    };
    let (cpu, cpuacct, memory) = (v1("cpu"), v1("cpuacct"), v1("memory"));
    if cpu.is_some() || cpuacct.is_some() || memory.is_some() {
        return Ok(Some(Layout {
            version: Version::V1,
            cpu,
            cpuacct,
            memory,
            cpuset: v1("cpuset"),
            runtime_path,
        }));
    }
    let unified = memberships.iter().find(|m| m.is_unified());
    let mount = mounts.iter().find(|m| m.fstype == "cgroup2");
    Ok(unified.zip(mount).map(|(member, mount)| {
        let dir = Some(resolve(root, mount, member));
        Layout {
            version: Version::V2,
            cpu: dir.clone(),
            cpuacct: dir.clone(),
            memory: dir.clone(),
            cpuset: dir,
            runtime_path,
        }
    }))
}

/// The directory of `member`'s cgroup under `mount`. Without a cgroup namespace a
/// runtime may mount the container's own cgroup as the root, so the path is taken
/// relative to the mount's root; a path outside it falls back to the mount point.
fn resolve(root: &Path, mount: &CgroupMount, member: &Membership) -> Dir {
    let top = root.join(mount.mount_point.trim_start_matches('/'));
    let relative = member
        .path
        .strip_prefix(mount.root.trim_end_matches('/'))
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        .unwrap_or("");
    let relative = relative.trim_start_matches('/');
    let path = if relative.is_empty() {
        top.clone()
    } else {
        top.join(relative)
    };
    let path = if path.is_dir() { path } else { top.clone() };
    Dir { path, top }
}

/// Whether the agent runs in a container, judged from files a runtime leaves.
pub fn in_container(root: &Path, layout: Option<&Layout>) -> bool {
    root.join(".dockerenv").exists()
        || root.join("run/.containerenv").exists()
        || layout.is_some_and(|l| l.runtime_path)
}

/// The limits utilization is measured against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// CPUs the cgroup may use: its quota, capped at the CPUs it may run on.
    pub cpus: f64,
    /// Whether `cpus` comes from a CFS quota (else from the CPUs available).
    pub cpu_quota: bool,
    pub memory_bytes: u64,
    /// Whether `memory_bytes` is the cgroup's limit (else the host's memory).
    pub memory_limit: bool,
}

impl Limits {
    pub fn any(&self) -> bool {
        self.cpu_quota || self.memory_limit
    }
}

/// Samples the agent's own cgroup.
#[derive(Debug)]
pub struct CgroupSource {
    root: PathBuf,
    layout: Layout,
    limits: Limits,
    samples_since_limits: u32,
    prev_cpu: Option<(u64, Instant)>,
    prev_throttling: Option<(u64, u64)>,
    /// The files read every sample, opened once.
    usage: UsageFiles,
    /// For the limit files, read once a minute and closed again.
    buf: String,
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
        let usage = UsageFiles::new(&layout);
        let mut source = CgroupSource {
            root: root.to_owned(),
            limits: Limits {
                cpus: 1.0,
                cpu_quota: false,
                memory_bytes: 0,
                memory_limit: false,
            },
            layout,
            samples_since_limits: 0,
            prev_cpu: None,
            prev_throttling: None,
            usage,
            buf: String::new(),
        };
        source.limits = source.read_limits();
        source.read_cpu_nanos()?;
        source.read_memory_bytes()?;
        Ok(source)
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A limit file: read once a minute, so not kept open.
    fn read(&mut self, path: &Path) -> Result<&str, SampleError> {
        read_into(path, &mut self.buf)?;
        Ok(&self.buf)
    }

    /// CPU time used by the cgroup since it was created, in nanoseconds.
    fn read_cpu_nanos(&mut self) -> Result<u64, SampleError> {
        let files = &mut self.usage;
        match self.layout.version {
            Version::V2 => {
                let (text, path) = read_usage(&mut files.cpu, "cpu.stat")?;
                let usec =
                    parse::keyed(text, "usage_usec").ok_or_else(|| missing(path, "usage_usec"))?;
                Ok(usec * 1000)
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
                    Ok((user + system) * (1_000_000_000 / USER_HZ))
                }
            },
        }
    }

    /// Working set: usage minus inactive page cache, which the kernel reclaims before it
    /// would OOM-kill (the `docker stats` and cAdvisor formula).
    fn read_memory_bytes(&mut self) -> Result<u64, SampleError> {
        let (usage_file, inactive_keys): (&str, &[&str]) = match self.layout.version {
            Version::V2 => ("memory.current", &["inactive_file"]),
            Version::V1 => (
                "memory.usage_in_bytes",
                &["total_inactive_file", "inactive_file", "cache"],
            ),
        };
        let (text, path) = read_usage(&mut self.usage.memory, usage_file)?;
        let usage = parse::number_or_max(text)
            .and_then(|n| n.ok_or_else(|| not_number(text)))
            .map_err(|source| SampleError::Parse {
                path: path.to_owned(),
                source,
            })?;
        let (text, _) = read_usage(&mut self.usage.memory_stat, "memory.stat")?;
        let inactive = inactive_keys
            .iter()
            .find_map(|k| parse::keyed(text, k))
            .unwrap_or(0);
        Ok(usage.saturating_sub(inactive))
    }

    /// Throttled and total CFS periods, when the cgroup has a quota to be throttled by.
    fn read_throttling(&mut self) -> Result<Option<(u64, u64)>, SampleError> {
        if !self.limits.cpu_quota {
            return Ok(None);
        }
        let (text, _) = read_usage(&mut self.usage.throttling, "cpu.stat")?;
        Ok(parse::keyed(text, "nr_throttled").zip(parse::keyed(text, "nr_periods")))
    }

    /// The limits as the files say now. Missing files mean "no limit here", so this
    /// cannot fail; the machine's figures are read once for both fallbacks.
    fn read_limits(&mut self) -> Limits {
        let machine = Machine::read(&self.root, &mut self.buf);
        let available = self.cpuset_cpus().unwrap_or(machine.cpus as f64);
        let quota = self.cpu_quota();
        let host_memory = machine.memory_bytes;
        let limit = self
            .memory_limit()
            .filter(|l| host_memory == 0 || *l < host_memory);
        Limits {
            cpus: quota.map_or(available, |q| q.min(available)),
            cpu_quota: quota.is_some(),
            memory_bytes: limit.unwrap_or(host_memory),
            memory_limit: limit.is_some(),
        }
    }

    /// The tightest CFS quota of the cgroup and its ancestors, in CPUs.
    fn cpu_quota(&mut self) -> Option<f64> {
        let dir = self.layout.cpu.clone()?;
        let mut tightest: Option<f64> = None;
        for level in dir.lineage() {
            let quota = match self.layout.version {
                Version::V2 => self
                    .read(&level.join("cpu.max"))
                    .ok()
                    .and_then(|t| parse::cpu_max(t).ok().flatten()),
                Version::V1 => {
                    let quota = self
                        .read(&level.join("cpu.cfs_quota_us"))
                        .ok()
                        .and_then(|t| parse::signed(t).ok());
                    let period = self
                        .read(&level.join("cpu.cfs_period_us"))
                        .ok()
                        .and_then(|t| parse::signed(t).ok());
                    match (quota, period) {
                        (Some(q), Some(p)) if q > 0 && p > 0 => Some(q as f64 / p as f64),
                        _ => None,
                    }
                }
            };
            if let Some(q) = quota {
                tightest = Some(tightest.map_or(q, |t| t.min(q)));
            }
        }
        tightest
    }

    /// CPUs the cgroup's cpuset lets it run on, where there is one.
    fn cpuset_cpus(&mut self) -> Option<f64> {
        let names: &[&str] = match self.layout.version {
            Version::V2 => &["cpuset.cpus.effective"],
            Version::V1 => &["cpuset.effective_cpus", "cpuset.cpus"],
        };
        if let Some(dir) = self.layout.cpuset.clone() {
            for name in names {
                let count = self
                    .read(&dir.path.join(name))
                    .ok()
                    .and_then(|t| parse::cpuset_count(t).ok());
                if let Some(n) = count.filter(|n| *n > 0) {
                    return Some(n as f64);
                }
            }
        }
        None
    }

    /// The tightest memory limit of the cgroup and its ancestors, in bytes.
    fn memory_limit(&mut self) -> Option<u64> {
        let dir = self.layout.memory.clone()?;
        match self.layout.version {
            Version::V2 => dir
                .lineage()
                .filter_map(|level| {
                    let text = self.read(&level.join("memory.max")).ok()?;
                    parse::number_or_max(text).ok().flatten()
                })
                .min(),
            Version::V1 => {
                let own = self
                    .read(&dir.path.join("memory.limit_in_bytes"))
                    .ok()
                    .and_then(|t| parse::number_or_max(t).ok().flatten());
                let hierarchical = self
                    .read(&dir.path.join("memory.stat"))
                    .ok()
                    .and_then(|t| parse::keyed(t, "hierarchical_memory_limit"));
                own.into_iter().chain(hierarchical).min()
            }
        }
    }
}

impl Source for CgroupSource {
    async fn sample(&mut self) -> Sample {
        let mut sample = Sample::default();
        self.samples_since_limits += 1;
        if self.samples_since_limits >= LIMIT_REFRESH {
            self.samples_since_limits = 0;
            let limits = self.read_limits();
            if limits != self.limits {
                log::info!("cgroup limits changed: {limits:?}");
            }
            self.limits = limits;
        }
        match self.read_cpu_nanos() {
            Ok(nanos) => {
                let now = Instant::now();
                if let Some((prev, at)) = self.prev_cpu {
                    sample.cpu = cpu_percent(prev, nanos, now - at, self.limits.cpus);
                }
                self.prev_cpu = Some((nanos, now));
            }
            Err(e) => sample.errors.push(e),
        }
        match self.read_memory_bytes() {
            Ok(bytes) => sample.memory = memory_percent(bytes, self.limits.memory_bytes),
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
        sample
    }
}

/// Percent of the cgroup's CPU limit used: Δusage / (elapsed × CPUs). `None` for a
/// counter that went backwards or no time passed.
pub fn cpu_percent(prev_nanos: u64, nanos: u64, elapsed: Duration, cpus: f64) -> Option<f64> {
    let used = nanos.checked_sub(prev_nanos)?;
    let capacity = elapsed.as_nanos() as f64 * cpus;
    (capacity > 0.0).then(|| used as f64 / capacity * 100.0)
}

/// Percent of the limit in use; `None` without a limit to measure against.
pub fn memory_percent(working_set: u64, limit: u64) -> Option<f64> {
    (limit > 0).then(|| working_set as f64 / limit as f64 * 100.0)
}

/// Share of CFS periods that were throttled between two `(nr_throttled, nr_periods)`
/// readings. No period elapsed (an idle cgroup) means nothing was throttled.
pub fn throttled_percent(prev: (u64, u64), cur: (u64, u64)) -> Option<f64> {
    let throttled = cur.0.checked_sub(prev.0)?;
    let periods = cur.1.checked_sub(prev.1)?;
    Some(if periods == 0 {
        0.0
    } else {
        throttled as f64 / periods as f64 * 100.0
    })
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

    const MIB: u64 = 1024 * 1024;
    /// MemTotal of the fixtures' `proc/meminfo`.
    const HOST_MEMORY: u64 = 16_000_000 * 1024;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/cgroup")
            .join(name)
    }

    fn source(root: &Path) -> CgroupSource {
        let layout = detect(root).unwrap().expect("a cgroup filesystem");
        CgroupSource::new(root, layout).unwrap()
    }

    /// A writable copy of a fixture tree, for tests that change files between samples.
    fn copy_of(name: &str) -> tempfile::TempDir {
        fn copy(from: &Path, to: &Path) {
            fs::create_dir_all(to).unwrap();
            for entry in fs::read_dir(from).unwrap() {
                let entry = entry.unwrap();
                let target = to.join(entry.file_name());
                if entry.file_type().unwrap().is_dir() {
                    copy(&entry.path(), &target);
                } else {
                    fs::copy(entry.path(), target).unwrap();
                }
            }
        }
        let dir = tempfile::tempdir().unwrap();
        copy(&fixture(name), dir.path());
        dir
    }

    #[tokio::test]
    async fn v2_namespaced_uses_the_mount_root_quota_and_memory_max() {
        let root = fixture("v2-namespaced");
        let mut s = source(&root);
        assert_eq!(s.layout().version, Version::V2);
        assert_eq!(
            s.layout().memory.as_ref().unwrap().path,
            root.join("sys/fs/cgroup")
        );
        assert_eq!(
            s.limits(),
            Limits {
                cpus: 0.5,
                cpu_quota: true,
                memory_bytes: 256 * MIB,
                memory_limit: true
            }
        );
        assert_eq!(s.read_cpu_nanos().unwrap(), 2_500_000_000);
        // (memory.current 200 MiB − inactive_file 72 MiB) / memory.max 256 MiB
        assert_eq!(s.sample().await.memory, Some(50.0));
        assert!(!in_container(&root, Some(s.layout())));
    }

    #[tokio::test]
    async fn v2_without_namespace_finds_the_sub_path_and_an_ancestors_limit() {
        let root = fixture("v2-host-path");
        let mut s = source(&root);
        let dir = root.join("sys/fs/cgroup/system.slice/app.slice/app.service");
        assert_eq!(s.layout().cpu.as_ref().unwrap().path, dir);
        // No quota anywhere: the cpuset's 2 CPUs; memory.max is on the parent slice.
        let limits = s.limits();
        assert_eq!((limits.cpus, limits.cpu_quota), (2.0, false));
        assert_eq!(
            (limits.memory_bytes, limits.memory_limit),
            (1024 * MIB, true)
        );
        // (300 MiB − 44 MiB) / 1024 MiB
        assert_eq!(s.sample().await.memory, Some(25.0));
    }

    #[tokio::test]
    async fn v1_hybrid_with_co_mounted_cpu_cpuacct_and_a_bind_mounted_container_cgroup() {
        let root = fixture("v1-quota");
        let mut s = source(&root);
        let layout = s.layout().clone();
        assert_eq!(
            layout.version,
            Version::V1,
            "v1 controllers win over the empty unified mount"
        );
        assert_eq!(
            layout.cpu.unwrap().path,
            root.join("sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(
            layout.memory.unwrap().path,
            root.join("sys/fs/cgroup/memory")
        );
        // Quota 150000/100000 µs on 8 CPUs; memory the smaller of 512 MiB and the
        // hierarchical 1024 MiB.
        let limits = s.limits();
        assert_eq!((limits.cpus, limits.memory_bytes), (1.5, 512 * MIB));
        assert_eq!(s.read_cpu_nanos().unwrap(), 98_765_432_100, "cpuacct.usage");
        // (400 MiB − total_inactive_file 100 MiB) / 512 MiB
        assert_eq!(s.sample().await.memory, Some(300.0 / 512.0 * 100.0));
        assert!(
            in_container(&root, Some(s.layout())),
            "/docker/ in /proc/self/cgroup"
        );
    }

    #[tokio::test]
    async fn v1_apart_without_limits_measures_against_cpus_and_host_memory() {
        let root = fixture("v1-apart-unlimited");
        let mut s = source(&root);
        assert_eq!(
            s.layout().cpu.as_ref().unwrap().path,
            root.join("sys/fs/cgroup/cpu/jobs/42")
        );
        assert_eq!(
            s.layout().cpuacct.as_ref().unwrap().path,
            root.join("sys/fs/cgroup/cpuacct/jobs/42")
        );
        let limits = s.limits();
        assert!(!limits.any(), "{limits:?}");
        assert_eq!((limits.cpus, limits.memory_bytes), (2.0, HOST_MEMORY));
        // Only cpuacct.stat here: (300 + 200) ticks of 10 ms.
        assert_eq!(s.read_cpu_nanos().unwrap(), 5_000_000_000);
        // (2000 MiB − 437.5 MiB) of the host's 16,000,000 KiB
        assert_eq!(s.sample().await.memory, Some(10.0));
        assert!(!in_container(&root, Some(s.layout())));
    }

    #[test]
    fn no_cgroup_filesystem_is_none() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc-2cpu");
        assert_eq!(detect(&root).unwrap(), None);
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

    #[test]
    fn without_quota_or_cpuset_the_limit_is_the_online_cpus() {
        let tree = copy_of("v2-host-path");
        let dir = tree
            .path()
            .join("sys/fs/cgroup/system.slice/app.slice/app.service");
        fs::remove_file(dir.join("cpuset.cpus.effective")).unwrap();
        // The fixture's /proc/stat lists four CPUs.
        assert_eq!(source(tree.path()).limits().cpus, 4.0);
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
        let second = Duration::from_secs(1);
        // Half a CPU-second in one second against a 0.5-CPU quota: all of it.
        assert_eq!(cpu_percent(0, 500_000_000, second, 0.5), Some(100.0));
        assert_eq!(cpu_percent(0, 250_000_000, second, 2.0), Some(12.5));
        assert_eq!(
            cpu_percent(10, 5, second, 1.0),
            None,
            "counter went backwards"
        );
        assert_eq!(cpu_percent(0, 5, Duration::ZERO, 1.0), None);
    }

    #[test]
    fn throttled_percent_handles_idle_and_resets() {
        assert_eq!(throttled_percent((5, 10), (5, 10)), Some(0.0));
        assert_eq!(throttled_percent((5, 10), (6, 12)), Some(50.0));
        assert_eq!(throttled_percent((5, 10), (0, 0)), None);
    }
}
