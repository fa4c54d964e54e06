//! Where the agent's cgroup is: found from `/proc/self/cgroup` and `/proc/self/mountinfo`,
//! so it works with cgroup namespaces (the container's cgroup is the mount's root) and
//! without (a sub-path), on cgroup v2, v1 and the hybrid layout.

use std::fmt;
use std::path::{Path, PathBuf};

use super::parse::{self, CgroupMount, Membership};
use crate::sample::kernel::Places;
use crate::sample::traffic;
use crate::sample::{SampleError, read_into};

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
    pub fn lineage(&self) -> impl Iterator<Item = &Path> {
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
    /// v1 `blkio` or the v2 directory.
    pub blkio: Option<Dir>,
    /// Whether `/proc/self/cgroup` names a container runtime.
    runtime_path: bool,
}

impl Layout {
    /// Where the cgroup's kernel counters are: v2 `memory.events` (which counts the whole
    /// subtree) and the `*.pressure` files of its directory; v1 `memory.oom_control`, and
    /// no pressure.
    pub fn kernel_places(&self) -> Places {
        let memory = self.memory.as_ref().map(|d| d.path.clone());
        let no_memory = || "the memory controller is not mounted for this cgroup".to_owned();
        match self.version {
            Version::V2 => {
                let dir = memory
                    .clone()
                    .or_else(|| self.cpu.as_ref().map(|d| d.path.clone()));
                Places::new(
                    memory
                        .map(|d| d.join("memory.events"))
                        .ok_or_else(no_memory),
                    dir.map(|d| ["cpu", "memory", "io"].map(|r| d.join(format!("{r}.pressure"))))
                        .ok_or_else(|| "no cgroup v2 directory".to_owned()),
                )
            }
            Version::V1 => Places::new(
                memory
                    .map(|d| d.join("memory.oom_control"))
                    .ok_or_else(no_memory),
                Err("cgroup v1 keeps no pressure per cgroup (PSI needs cgroup v2)".into()),
            ),
        }
    }

    /// Where the cgroup's traffic counters are: the agent's network namespace (a
    /// container's own), and v2 `io.stat` (there only where the io controller is enabled
    /// for the group) or v1 `blkio.throttle.io_service_bytes_recursive` (else the plain
    /// file, which older kernels have alone).
    pub fn traffic_places(&self, root: &Path) -> traffic::Places {
        let storage = match (&self.blkio, self.version) {
            (None, _) => Err("the blkio controller is not mounted for this cgroup".to_owned()),
            (Some(dir), Version::V2) => {
                let path = dir.path.join("io.stat");
                if path.exists() {
                    Ok((path, traffic::Shape::IoStat))
                } else {
                    Err(format!(
                        "{} is missing: the io controller is not enabled for this cgroup",
                        path.display()
                    ))
                }
            }
            (Some(dir), Version::V1) => {
                let recursive = dir.path.join("blkio.throttle.io_service_bytes_recursive");
                let path = if recursive.exists() {
                    recursive
                } else {
                    dir.path.join("blkio.throttle.io_service_bytes")
                };
                Ok((path, traffic::Shape::Blkio))
            }
        };
        traffic::Places {
            network: Ok(traffic::network_files(root)),
            storage,
        }
    }
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
            blkio: v1("blkio"),
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
            cpuset: dir.clone(),
            blkio: dir,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::cgroup::testing::fixture;

    fn layout(name: &str) -> (PathBuf, Layout) {
        let root = fixture(name);
        let layout = detect(&root).unwrap().expect("a cgroup filesystem");
        (root, layout)
    }

    #[test]
    fn v1_storage_reads_the_recursive_blkio_file_or_else_the_groups_own() {
        let dir = tempfile::tempdir().unwrap();
        let blkio = Dir {
            path: dir.path().to_owned(),
            top: dir.path().to_owned(),
        };
        let layout = Layout {
            version: Version::V1,
            cpu: None,
            cpuacct: None,
            memory: None,
            cpuset: None,
            blkio: Some(blkio),
            runtime_path: false,
        };
        let storage = || layout.traffic_places(dir.path()).storage.unwrap();
        let own = dir.path().join("blkio.throttle.io_service_bytes");
        assert_eq!(
            storage(),
            (own, traffic::Shape::Blkio),
            "older kernels' file"
        );
        let recursive = dir.path().join("blkio.throttle.io_service_bytes_recursive");
        std::fs::write(&recursive, "Total 0\n").unwrap();
        assert_eq!(
            storage(),
            (recursive, traffic::Shape::Blkio),
            "with the group's descendants"
        );
    }

    #[test]
    fn v2_namespaced_is_the_mount_root() {
        let (root, layout) = layout("v2-namespaced");
        assert_eq!(layout.version, Version::V2);
        assert_eq!(layout.memory.unwrap().path, root.join("sys/fs/cgroup"));
        assert!(!in_container(&root, None));
    }

    #[test]
    fn v2_without_namespace_is_the_sub_path_with_its_ancestors() {
        let (root, layout) = layout("v2-host-path");
        let dir = layout.cpu.unwrap();
        let app = root.join("sys/fs/cgroup/system.slice/app.slice/app.service");
        assert_eq!(dir.path, app);
        assert_eq!(
            dir.lineage().count(),
            4,
            "app.service up to the mount point"
        );
    }

    #[test]
    fn v1_hybrid_with_co_mounted_cpu_cpuacct_and_a_bind_mounted_container_cgroup() {
        let (root, layout) = layout("v1-quota");
        assert_eq!(
            layout.version,
            Version::V1,
            "v1 controllers win over the empty unified mount"
        );
        assert_eq!(
            layout.cpu.as_ref().unwrap().path,
            root.join("sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(
            layout.memory.as_ref().unwrap().path,
            root.join("sys/fs/cgroup/memory")
        );
        assert!(
            in_container(&root, Some(&layout)),
            "/docker/ in /proc/self/cgroup"
        );
    }

    #[test]
    fn v1_controllers_mounted_apart() {
        let (root, layout) = layout("v1-apart-unlimited");
        assert_eq!(
            layout.cpu.as_ref().unwrap().path,
            root.join("sys/fs/cgroup/cpu/jobs/42")
        );
        assert_eq!(
            layout.cpuacct.as_ref().unwrap().path,
            root.join("sys/fs/cgroup/cpuacct/jobs/42")
        );
        assert!(!in_container(&root, Some(&layout)));
    }

    #[test]
    fn no_cgroup_filesystem_is_none() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc-2cpu");
        assert_eq!(detect(&root).unwrap(), None);
    }
}
