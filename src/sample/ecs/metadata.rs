//! The ECS task metadata endpoint v4 documents, modelled only as far as the agent uses
//! them: the task, its containers' limits, and what the task may use ([`Capacity`]).
//! [`super::tracker`] turns two stats documents into utilization.
//!
//! Documents: `${ECS_CONTAINER_METADATA_URI_V4}/task` (task and containers, limits) and
//! `.../task/stats` (Docker stats per container, keyed by `DockerId`). See "Amazon ECS task
//! metadata endpoint version 4" in the ECS developer guide.

use std::collections::HashMap;

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use serde::Deserialize;

use crate::sample::rate::Reading;
// The instance (or Fargate micro-VM) the task runs on is the last resort for capacity.
use crate::sample::{Capacity, Machine, working_set};

/// Containers of this type are ECS's network plumbing, not the workload.
const PAUSE_CONTAINER: &str = "CNI_PAUSE";
pub(crate) use crate::sample::{CPU_UNITS_PER_VCPU, MIB};
/// Where a task with no size of its own and no container limits gets its capacity.
const INSTANCE_CPUS: &str = "the instance's online CPUs";
const INSTANCE_MEMORY: &str = "the instance's memory";

/// `GET ${URI}/task`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Task {
    /// Cluster ARN (Fargate) or short name (some EC2 agents).
    #[serde(default)]
    pub cluster: String,
    /// `arn:aws:ecs:<region>:<account>:task/<cluster>/<task id>`.
    #[serde(rename = "TaskARN", default, deserialize_with = "lenient")]
    pub task_arn: String,
    #[serde(default)]
    pub family: String,
    /// Task size; absent on EC2 tasks defined without one.
    pub limits: Option<DeclaredLimits>,
    #[serde(default)]
    pub containers: Vec<Container>,
    /// Fargate platform 1.4.0 and later: the task's ephemeral storage, in MiB.
    #[serde(default, deserialize_with = "lenient")]
    pub ephemeral_storage_metrics: Option<EphemeralStorage>,
}

/// `EphemeralStorageMetrics` of a Fargate task: MiB in use and reserved.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct EphemeralStorage {
    pub utilized: Option<f64>,
    pub reserved: Option<f64>,
}

/// `Limits` as a task (CPU in vCPU, memory in MiB) or a container (CPU in CPU units,
/// memory in MiB) declares them. Zero means "not set".
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
pub struct DeclaredLimits {
    #[serde(rename = "CPU")]
    pub cpu: Option<f64>,
    #[serde(rename = "Memory")]
    pub memory: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Container {
    pub docker_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "Type", default)]
    pub kind: String,
    pub limits: Option<DeclaredLimits>,
    /// `RUNNING`, `STOPPED`, …
    #[serde(default, deserialize_with = "lenient")]
    pub known_status: String,
    /// Set once the container has stopped.
    #[serde(default, deserialize_with = "lenient")]
    pub exit_code: Option<i64>,
    /// Restarts by the ECS container restart policy; absent without one.
    #[serde(default, deserialize_with = "lenient")]
    pub restart_count: Option<u64>,
    /// The container's network attachments (awsvpc, bridge, host).
    #[serde(default, deserialize_with = "lenient")]
    pub networks: Vec<Network>,
}

/// One of a container's `Networks`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Network {
    #[serde(default)]
    pub network_mode: String,
}

impl Container {
    /// Whether the container shares the task's network namespace (`awsvpc`: Fargate,
    /// Managed Instances, EC2 awsvpc tasks; or `host`): its interfaces are the task's,
    /// and every such container reports the same ones.
    pub fn shares_task_network(&self) -> bool {
        self.networks
            .iter()
            .any(|n| n.network_mode == "awsvpc" || n.network_mode == "host")
    }
}

impl Task {
    /// The containers whose use counts: all but ECS's pause container.
    pub fn measured(&self) -> impl Iterator<Item = &Container> {
        self.containers.iter().filter(|c| c.kind != PAUSE_CONTAINER)
    }

    /// Whether `docker_id` is one of this task's containers (pause included).
    pub fn knows(&self, docker_id: &str) -> bool {
        self.containers.iter().any(|c| c.docker_id == docker_id)
    }

    /// Short cluster name: the part after `cluster/` of an ARN, or the name itself.
    pub fn cluster_name(&self) -> &str {
        self.cluster.rsplit('/').next().unwrap_or(&self.cluster)
    }

    /// What utilization is measured against, and where each figure came from.
    pub fn capacity(&self, instance: Machine) -> Capacity {
        let task = self.limits.unwrap_or_default();
        let containers = |pick: fn(&DeclaredLimits) -> Option<f64>| -> f64 {
            self.measured()
                .filter_map(|c| c.limits.as_ref().and_then(pick))
                .filter(|v| *v > 0.0)
                .sum()
        };
        let (cpus, cpus_from) = match task.cpu.filter(|v| *v > 0.0) {
            Some(vcpus) => (vcpus, "the task's CPU limit"),
            None => match containers(|l| l.cpu) / CPU_UNITS_PER_VCPU {
                units if units > 0.0 => (units, "the sum of the containers' CPU units"),
                _ => (instance.cpus as f64, INSTANCE_CPUS),
            },
        };
        let (memory_bytes, memory_from) = match task.memory.filter(|v| *v > 0.0) {
            Some(mib) => (mib * MIB, "the task's memory limit"),
            None => match containers(|l| l.memory) {
                mib if mib > 0.0 => (mib * MIB, "the sum of the containers' memory limits"),
                _ => (instance.memory_bytes as f64, INSTANCE_MEMORY),
            },
        };
        Capacity {
            cpus,
            cpus_from,
            cpu_limit: cpus_from != INSTANCE_CPUS,
            // MiB from the documents, whole bytes.
            memory_bytes: memory_bytes as u64,
            memory_from,
            memory_limit: memory_from != INSTANCE_MEMORY,
            machine_cpus: instance.cpus as f64,
        }
    }
}

/// A field of a shape the agent does not expect (`null`, a string for a number) read as
/// absent: these fields serve the opt-in metrics, and the task document must parse
/// whatever they hold, or the task's CPU and memory would be lost with them. (`/task` is
/// read at start and every few seconds at most, so going through a `Value` costs little.)
fn lenient<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned + Default,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(T::deserialize(value).unwrap_or_default())
}

/// `GET ${URI}/task/stats`: Docker stats per `DockerId`; `null` for containers that have
/// none (stopped, or just started).
pub type Stats = HashMap<String, Option<ContainerStats>>;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ContainerStats {
    /// When Docker read these stats (RFC 3339, nanoseconds). `0001-01-01T00:00:00Z` while
    /// the container has no stats yet.
    pub read: Option<String>,
    /// When Docker read `precpu_stats`, its reading before this one.
    pub preread: Option<String>,
    pub cpu_stats: Option<CpuStats>,
    pub precpu_stats: Option<CpuStats>,
    pub memory_stats: Option<MemoryStats>,
    /// Counters per interface of the container's network namespace.
    pub networks: Option<Interfaces>,
    pub blkio_stats: Option<BlkioStats>,
}

/// `networks`: each interface's counters, in the document's order. A list rather than a
/// map: a container has one or two interfaces, and it is read every second.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Interfaces(pub Vec<(String, InterfaceStats)>);

impl<'de> Deserialize<'de> for Interfaces {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Interfaces;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of interfaces")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Interfaces, A::Error> {
                let mut interfaces = Vec::with_capacity(map.size_hint().unwrap_or(1));
                while let Some(entry) = map.next_entry()? {
                    interfaces.push(entry);
                }
                Ok(Interfaces(interfaces))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// One interface's counters since it came up.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
pub struct InterfaceStats {
    pub rx_bytes: Option<u64>,
    pub tx_bytes: Option<u64>,
}

/// The cgroup's block I/O as Docker relays it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct BlkioStats {
    /// cgroup v1: per device `Read`, `Write`, `Sync`, `Async`, `Discard`, `Total`
    /// (`blkio.throttle.io_service_bytes_recursive`); cgroup v2: `read`, `write` (from
    /// `io.stat`'s `rbytes`, `wbytes`). Summed as it is read: nothing is kept per device.
    pub io_service_bytes_recursive: Option<IoBytes>,
}

/// Bytes read and written over the devices of `io_service_bytes_recursive`, and how
/// many entries it had.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoBytes {
    pub read: u64,
    pub written: u64,
    pub entries: usize,
}

impl<'de> Deserialize<'de> for IoBytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = IoBytes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of {op, value} entries")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<IoBytes, A::Error> {
                let mut sum = IoBytes::default();
                while let Some(entry) = seq.next_element::<BlkioEntry>()? {
                    sum.entries += 1;
                    match entry.op {
                        BlkioOp::Read => sum.read = sum.read.saturating_add(entry.value),
                        BlkioOp::Write => sum.written = sum.written.saturating_add(entry.value),
                        BlkioOp::Other => {}
                    }
                }
                Ok(sum)
            }
        }
        deserializer.deserialize_seq(Visitor)
    }
}

/// One entry of `io_service_bytes_recursive` (its `major` and `minor` left out).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
struct BlkioEntry {
    op: BlkioOp,
    #[serde(default)]
    value: u64,
}

/// The operations counted; the others (sync, async, total, discard) are the same bytes
/// again, or not storage traffic.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
enum BlkioOp {
    #[serde(alias = "read")]
    Read,
    #[serde(alias = "write")]
    Write,
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct CpuStats {
    pub cpu_usage: Option<CpuUsage>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct CpuUsage {
    /// CPU time used since the container started, in nanoseconds.
    pub total_usage: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct MemoryStats {
    /// Bytes charged to the container's cgroup, page cache included.
    pub usage: Option<u64>,
    pub stats: Option<MemoryDetail>,
}

/// The cgroup's `memory.stat` as Docker relays it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct MemoryDetail {
    /// cgroup v1, hierarchical.
    pub total_inactive_file: Option<u64>,
    /// cgroup v2 (v1 has it too, for the group alone).
    pub inactive_file: Option<u64>,
    /// Old v1 kernels without the inactive_file split.
    pub cache: Option<u64>,
}

impl ContainerStats {
    /// Nanoseconds since the Unix epoch of `read`, or `None` when there are no stats yet
    /// (or the time is before 1970).
    pub(crate) fn read_nanos(&self) -> Option<u64> {
        epoch_nanos(self.read.as_deref()?)
    }

    /// Nanoseconds since the Unix epoch of `preread`, Docker's reading before this one.
    pub(crate) fn preread_nanos(&self) -> Option<u64> {
        epoch_nanos(self.preread.as_deref()?)
    }

    /// `read − preread` (ns), given `read` as [`ContainerStats::read_nanos`] parsed it:
    /// how often the platform says it reads the stats, if a pace can be that long
    /// ([`MAX_PACE_SECS`]).
    pub(crate) fn refresh_nanos(&self, read_nanos: u64) -> Option<u64> {
        let interval = read_nanos.checked_sub(self.preread_nanos()?)?;
        (interval > 0 && interval <= u64::from(MAX_PACE_SECS) * 1_000_000_000).then_some(interval)
    }

    pub(crate) fn cpu_nanos(&self) -> Option<u64> {
        self.cpu_stats.as_ref()?.cpu_usage.as_ref()?.total_usage
    }

    /// Docker's reading before this one (`precpu_stats` at `preread`): the baseline of a
    /// container seen for the first time, so that its first document has a rate. A zero
    /// counter is a reading not taken yet (Docker's first document), not a baseline.
    pub(crate) fn earlier_reading(&self) -> Option<Reading> {
        let used = self
            .precpu_stats
            .as_ref()?
            .cpu_usage
            .as_ref()?
            .total_usage?;
        Some(Reading {
            used: Some(used).filter(|u| *u > 0)?,
            span: self.preread_nanos()?,
        })
    }

    /// Bytes read and written since the container started, over its devices; `None`
    /// when Docker lists none (Fargate's cgroup v2 tasks, a container without I/O yet).
    pub(crate) fn storage_bytes(&self) -> Option<(u64, u64)> {
        let io = self.blkio_stats.as_ref()?.io_service_bytes_recursive?;
        (io.entries > 0).then_some((io.read, io.written))
    }

    /// The task's container's [`working_set`].
    pub(crate) fn working_set_bytes(&self) -> Option<u64> {
        let memory = self.memory_stats.as_ref()?;
        let usage = memory.usage?;
        // Docker copies memory.stat's keys: the same preference as the cgroup scope's.
        let inactive = memory
            .stats
            .as_ref()
            .and_then(|s| s.total_inactive_file.or(s.inactive_file).or(s.cache));
        Some(working_set(usage, inactive))
    }
}

/// The longest `read − preread` taken for the platform's refresh interval: a longer
/// one is a container that was paused, not a pace (stats are then read every second).
pub const MAX_PACE_SECS: u32 = 60;

/// Nanoseconds since the Unix epoch of an RFC 3339 time; `None` for a time that is not
/// one, or is not after 1970 (Docker's `0001-01-01T00:00:00Z` for "never").
fn epoch_nanos(text: &str) -> Option<u64> {
    let at = DateTime::from_str(text, Format::DateTime).ok()?;
    let nanos = i128::from(at.secs()) * 1_000_000_000 + i128::from(at.subsec_nanos());
    u64::try_from(nanos).ok().filter(|n| *n > 0)
}

/// The fixtures and helpers of the ECS tests (the model's, the tracker's, the published
/// examples').
#[cfg(test)]
pub(crate) mod testing {
    use aws_smithy_types::DateTime;
    use aws_smithy_types::date_time::Format;

    use super::{Stats, Task};
    use crate::sample::Machine;

    pub(crate) const FARGATE_TASK: &str =
        include_str!("../../../tests/fixtures/ecs/fargate/task.json");
    pub(crate) const FARGATE_STATS: &str =
        include_str!("../../../tests/fixtures/ecs/fargate/stats.json");
    pub(crate) const EC2_TASK: &str = include_str!("../../../tests/fixtures/ecs/ec2/task.json");
    pub(crate) const EC2_STATS: &str = include_str!("../../../tests/fixtures/ecs/ec2/stats.json");

    pub(crate) const APP_ID: &str = "8b2b7b1f0e3a4c1d9e5f6a7b8c9d0e1f-1111111111";
    pub(crate) const SIDECAR_ID: &str = "8b2b7b1f0e3a4c1d9e5f6a7b8c9d0e1f-2222222222";

    /// A second on the agent's clock, in ns.
    pub(crate) const S: u64 = 1_000_000_000;

    pub(crate) const INSTANCE: Machine = Machine {
        cpus: 2,
        memory_bytes: 4 * 1024 * 1024 * 1024,
    };

    pub(crate) fn task(text: &str) -> Task {
        serde_json::from_str(text).unwrap()
    }

    pub(crate) fn stats(text: &str) -> Stats {
        serde_json::from_str(text).unwrap()
    }

    /// `stats` with every container's counters moved on by `cpu_ns` over `secs`.
    pub(crate) fn advanced(mut doc: Stats, secs: i64, cpu_ns: &[(&str, i64)]) -> Stats {
        for (id, entry) in doc.iter_mut() {
            let Some(s) = entry else { continue };
            let read = DateTime::from_str(s.read.as_deref().unwrap(), Format::DateTime).unwrap();
            let later = DateTime::from_secs_and_nanos(read.secs() + secs, read.subsec_nanos());
            s.read = Some(later.fmt(Format::DateTime).unwrap());
            let delta = cpu_ns.iter().find(|(i, _)| i == id).map_or(0, |(_, d)| *d);
            let usage = s.cpu_stats.as_mut().unwrap().cpu_usage.as_mut().unwrap();
            usage.total_usage = Some((usage.total_usage.unwrap() as i64 + delta) as u64);
        }
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn fargate_task_document_parses() {
        let t = task(FARGATE_TASK);
        assert_eq!(t.cluster_name(), "prod");
        assert_eq!(t.family, "web-api");
        assert_eq!(
            t.limits,
            Some(DeclaredLimits {
                cpu: Some(0.5),
                memory: Some(1024.0)
            })
        );
        assert_eq!(t.measured().count(), 2);
    }

    #[test]
    fn capacity_comes_from_the_task_limits_first() {
        let c = task(FARGATE_TASK).capacity(INSTANCE);
        assert_eq!((c.cpus, c.memory_bytes as f64), (0.5, 1024.0 * MIB));
        assert_eq!(c.cpus_from, "the task's CPU limit");
    }

    #[test]
    fn ec2_task_without_size_uses_container_limits_and_skips_the_pause_container() {
        let t = task(EC2_TASK);
        assert_eq!(t.cluster_name(), "default");
        let c = t.capacity(INSTANCE);
        // Containers: 512 + 256 CPU units, 768 + 256 MiB; the pause container not counted.
        assert_eq!(c.cpus, 0.75);
        assert_eq!(c.memory_bytes as f64, 1024.0 * MIB);
        assert_eq!(c.cpus_from, "the sum of the containers' CPU units");
    }

    #[test]
    fn fields_of_the_opt_in_metrics_in_an_unexpected_shape_do_not_fail_the_task() {
        let t = task(
            r#"{"TaskARN": 7, "Limits": {"CPU": 1, "Memory": 512},
                "EphemeralStorageMetrics": {"Utilized": "lots"},
                "Containers": [{"DockerId": "a", "Name": "app", "Networks": null,
                "RestartCount": -1, "ExitCode": "x", "KnownStatus": null}]}"#,
        );
        assert_eq!(t.capacity(INSTANCE).cpus, 1.0, "the task's size is read");
        assert_eq!(
            (t.task_arn.as_str(), t.ephemeral_storage_metrics),
            ("", None)
        );
        let c = &t.containers[0];
        assert_eq!((c.restart_count, c.exit_code), (None, None));
        assert!(c.networks.is_empty() && c.known_status.is_empty());
    }

    #[test]
    fn no_limits_anywhere_falls_back_to_the_instance() {
        let t = task(r#"{"Containers":[{"DockerId":"a","Limits":{"CPU":0,"Memory":0}}]}"#);
        let c = t.capacity(INSTANCE);
        assert_eq!((c.cpus, c.memory_bytes as f64), (2.0, 4.0 * 1024.0 * MIB));
        assert_eq!(c.memory_from, "the instance's memory");
    }
}
