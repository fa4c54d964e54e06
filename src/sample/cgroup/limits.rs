//! What a cgroup's utilization is measured against: its CPU quota (capped at the CPUs it
//! may run on) and its memory limit, the tightest of the cgroup and its ancestors; where
//! it has none, the machine's CPUs and memory. Read at start and once a minute, so the
//! files are opened, read and closed each time.

use std::path::Path;

use super::detect::{Layout, Version};
use super::parse;
use crate::sample::{Capacity, Machine, read_into};

/// The limits as the files under `root` say now, reading through `buf`. Missing files
/// mean "no limit here", so this cannot fail; the machine's figures are read once for
/// both fallbacks.
pub fn read(root: &Path, layout: &Layout, buf: &mut String) -> Capacity {
    let machine = Machine::read(root, buf);
    let available = cpuset_cpus(layout, buf).unwrap_or(machine.cpus as f64);
    let quota = cpu_quota(layout, buf);
    let host_memory = machine.memory_bytes;
    let limit = memory_limit(layout, buf).filter(|l| host_memory == 0 || *l < host_memory);
    Capacity {
        cpus: quota.map_or(available, |q| q.min(available)),
        cpus_from: if quota.is_some() {
            "CFS quota"
        } else {
            "CPUs available, no quota"
        },
        cpu_limit: quota.is_some(),
        memory_bytes: limit.unwrap_or(host_memory),
        memory_from: if limit.is_some() {
            "cgroup limit"
        } else {
            "host memory, no limit"
        },
        memory_limit: limit.is_some(),
        machine_cpus: machine.cpus as f64,
    }
}

/// A limit file's text, or `None` when it cannot be read.
fn text<'a>(path: &Path, buf: &'a mut String) -> Option<&'a str> {
    read_into(path, buf).ok().map(|()| buf.as_str())
}

/// The tightest CFS quota of the cgroup and its ancestors, in CPUs.
fn cpu_quota(layout: &Layout, buf: &mut String) -> Option<f64> {
    let dir = layout.cpu.as_ref()?;
    let mut tightest: Option<f64> = None;
    for level in dir.lineage() {
        let quota = match layout.version {
            Version::V2 => {
                text(&level.join("cpu.max"), buf).and_then(|t| parse::cpu_max(t).ok().flatten())
            }
            Version::V1 => {
                let quota =
                    text(&level.join("cpu.cfs_quota_us"), buf).and_then(|t| parse::signed(t).ok());
                let period =
                    text(&level.join("cpu.cfs_period_us"), buf).and_then(|t| parse::signed(t).ok());
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
fn cpuset_cpus(layout: &Layout, buf: &mut String) -> Option<f64> {
    let names: &[&str] = match layout.version {
        Version::V2 => &["cpuset.cpus.effective"],
        Version::V1 => &["cpuset.effective_cpus", "cpuset.cpus"],
    };
    let dir = layout.cpuset.as_ref()?;
    names.iter().find_map(|name| {
        text(&dir.path.join(name), buf)
            .and_then(|t| parse::cpuset_count(t).ok())
            .filter(|n| *n > 0)
            .map(|n| n as f64)
    })
}

/// The tightest memory limit of the cgroup and its ancestors, in bytes.
fn memory_limit(layout: &Layout, buf: &mut String) -> Option<u64> {
    let dir = layout.memory.as_ref()?;
    match layout.version {
        Version::V2 => dir
            .lineage()
            .filter_map(|level| {
                text(&level.join("memory.max"), buf)
                    .and_then(|t| parse::number_or_max(t).ok().flatten())
            })
            .min(),
        Version::V1 => {
            let own = text(&dir.path.join("memory.limit_in_bytes"), buf)
                .and_then(|t| parse::number_or_max(t).ok().flatten());
            let hierarchical = text(&dir.path.join("memory.stat"), buf)
                .and_then(|t| parse::keyed(t, "hierarchical_memory_limit"));
            own.into_iter().chain(hierarchical).min()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::sample::cgroup::detect;
    use crate::sample::cgroup::testing::{copy_of, fixture};

    const MIB: u64 = 1024 * 1024;
    /// MemTotal of the fixtures' `proc/meminfo`.
    const HOST_MEMORY: u64 = 16_000_000 * 1024;

    fn limits(root: &Path) -> Capacity {
        let layout = detect::detect(root).unwrap().expect("a cgroup filesystem");
        read(root, &layout, &mut String::new())
    }

    #[test]
    fn v2_quota_and_memory_max() {
        let got = limits(&fixture("v2-namespaced"));
        let want = Capacity {
            cpus: 0.5,
            cpus_from: "CFS quota",
            cpu_limit: true,
            memory_bytes: 256 * MIB,
            memory_from: "cgroup limit",
            memory_limit: true,
            machine_cpus: got.machine_cpus,
        };
        assert_eq!(got, want);
    }

    #[test]
    fn v2_without_a_quota_takes_the_cpuset_and_an_ancestors_memory_limit() {
        let got = limits(&fixture("v2-host-path"));
        assert_eq!((got.cpus, got.cpu_limit), (2.0, false));
        assert_eq!((got.memory_bytes, got.memory_limit), (1024 * MIB, true));
    }

    #[test]
    fn v1_quota_and_the_smaller_of_the_own_and_hierarchical_limit() {
        // Quota 150000/100000 µs on 8 CPUs; memory the smaller of 512 MiB and the
        // hierarchical 1024 MiB.
        let got = limits(&fixture("v1-quota"));
        assert_eq!((got.cpus, got.memory_bytes), (1.5, 512 * MIB));
    }

    #[test]
    fn v1_without_limits_measures_against_the_cpus_and_the_host_memory() {
        let got = limits(&fixture("v1-apart-unlimited"));
        assert!(!got.any_limit(), "{got:?}");
        assert_eq!((got.cpus, got.memory_bytes), (2.0, HOST_MEMORY));
    }

    #[test]
    fn without_quota_or_cpuset_the_limit_is_the_online_cpus() {
        let tree = copy_of("v2-host-path");
        let dir = tree
            .path()
            .join("sys/fs/cgroup/system.slice/app.slice/app.service");
        fs::remove_file(dir.join("cpuset.cpus.effective")).unwrap();
        // The fixture's /proc/stat lists four CPUs.
        assert_eq!(limits(tree.path()).cpus, 4.0);
    }
}
