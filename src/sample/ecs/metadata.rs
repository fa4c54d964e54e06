//! The ECS task metadata endpoint v4 documents, modelled only as far as the agent uses
//! them, and the pure arithmetic that turns two stats documents into task utilization.
//!
//! Documents: `${ECS_CONTAINER_METADATA_URI_V4}/task` (task and containers, limits) and
//! `.../task/stats` (Docker stats per container, keyed by `DockerId`). See "Amazon ECS task
//! metadata endpoint version 4" in the ECS developer guide.

use std::collections::HashMap;

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use serde::Deserialize;

use crate::sample::rate::{self, Gap, Reading};

/// The instance (or Fargate micro-VM) the task runs on: the last resort for capacity.
use crate::sample::{Machine, working_set};

/// Containers of this type are ECS's network plumbing, not the workload.
const PAUSE_CONTAINER: &str = "CNI_PAUSE";
/// ECS CPU units per vCPU (task definition `cpu`).
const CPU_UNITS_PER_VCPU: f64 = 1024.0;
/// How far the stats' clock (`read`) may run ahead of the agent's own between two
/// documents before the interval counts as a jump of that clock, not as CPU use: ECS
/// refreshes stats about once a second, and a slow answer shifts a poll by up to its
/// 500 ms timeout.
const MAX_CLOCK_SKEW_NANOS: u64 = 3_000_000_000;
const MIB: f64 = 1024.0 * 1024.0;

/// `GET ${URI}/task`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Task {
    /// Cluster ARN (Fargate) or short name (some EC2 agents).
    #[serde(default)]
    pub cluster: String,
    #[serde(default)]
    pub family: String,
    /// Task size; absent on EC2 tasks defined without one.
    pub limits: Option<DeclaredLimits>,
    #[serde(default)]
    pub containers: Vec<Container>,
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
        let (vcpus, cpu_source) = match task.cpu.filter(|v| *v > 0.0) {
            Some(vcpus) => (vcpus, "the task's CPU limit"),
            None => match containers(|l| l.cpu) / CPU_UNITS_PER_VCPU {
                units if units > 0.0 => (units, "the sum of the containers' CPU units"),
                _ => (instance.cpus as f64, "the instance's online CPUs"),
            },
        };
        let (memory_bytes, memory_source) = match task.memory.filter(|v| *v > 0.0) {
            Some(mib) => (mib * MIB, "the task's memory limit"),
            None => match containers(|l| l.memory) {
                mib if mib > 0.0 => (mib * MIB, "the sum of the containers' memory limits"),
                _ => (instance.memory_bytes as f64, "the instance's memory"),
            },
        };
        Capacity {
            vcpus,
            cpu_source,
            memory_bytes,
            memory_source,
            instance_cpus: instance.cpus as f64,
        }
    }
}

/// The denominators of the task's utilization.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    /// CPUs the task may use: 100 % CPU.
    pub vcpus: f64,
    /// Where `vcpus` came from, for the log.
    pub cpu_source: &'static str,
    /// Bytes the task may use: 100 % memory.
    pub memory_bytes: f64,
    pub memory_source: &'static str,
    /// No container can use more than the machine it runs on.
    pub instance_cpus: f64,
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
    fn read_nanos(&self) -> Option<u64> {
        epoch_nanos(self.read.as_deref()?)
    }

    fn cpu_nanos(&self) -> Option<u64> {
        self.cpu_stats.as_ref()?.cpu_usage.as_ref()?.total_usage
    }

    /// Docker's reading before this one (`precpu_stats` at `preread`): the baseline of a
    /// container seen for the first time, so that its first document has a rate. A zero
    /// counter is a reading not taken yet (Docker's first document), not a baseline.
    fn earlier_reading(&self) -> Option<Reading> {
        let used = self
            .precpu_stats
            .as_ref()?
            .cpu_usage
            .as_ref()?
            .total_usage?;
        Some(Reading {
            used: Some(used).filter(|u| *u > 0)?,
            span: epoch_nanos(self.preread.as_deref()?)?,
        })
    }

    /// The task's container's [`working_set`].
    fn working_set_bytes(&self) -> Option<u64> {
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

/// Nanoseconds since the Unix epoch of an RFC 3339 time; `None` for a time that is not
/// one, or is not after 1970 (Docker's `0001-01-01T00:00:00Z` for "never").
fn epoch_nanos(text: &str) -> Option<u64> {
    let at = DateTime::from_str(text, Format::DateTime).ok()?;
    let nanos = i128::from(at.secs()) * 1_000_000_000 + i128::from(at.subsec_nanos());
    u64::try_from(nanos).ok().filter(|n| *n > 0)
}

/// The last CPU reading of one container.
#[derive(Debug, Clone, Copy)]
struct CpuPoint {
    /// CPU time used (ns) over the time of the stats (`read`, ns since the epoch).
    reading: Reading,
    /// vCPUs used over the last interval that moved on, if there was one.
    rate: Option<f64>,
    /// When the agent got the reading, on its own monotonic clock (ns).
    seen: u64,
}

/// Turns successive stats documents into task utilization. CPU is a rate, so it keeps
/// each container's previous reading.
#[derive(Debug, Default)]
pub struct Tracker {
    previous: HashMap<String, CpuPoint>,
}

/// Task utilization from one stats document, in percent of the task's capacity.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Utilization {
    /// `None` when no container's stats moved on since an earlier reading (the agent's
    /// or, for a container seen for the first time, Docker's own).
    pub cpu: Option<f64>,
    /// `None` when no container has memory stats yet.
    pub memory: Option<f64>,
    /// What in the document could not be true, and cost a value: a clock that jumped, a
    /// rate beyond the machine, a sum past 2^64, a zero capacity.
    pub implausible: Option<String>,
}

impl Tracker {
    /// Reads one stats document, got at `now` (ns on the agent's monotonic clock). Per
    /// container, CPU use is Δ`total_usage` / Δ`read` (vCPUs); their sum over the task's
    /// containers divided by the task's vCPUs is the CPU percentage. A container whose
    /// counter went down (it restarted) counts 0 for that interval; one seen for the first
    /// time counts from Docker's reading before (`precpu_stats` at `preread`), or, when
    /// the document has none, from its next document. ECS refreshes each container's stats on its
    /// own clock, so a container whose stats have not moved on since the last document
    /// counts at its last known rate. What cannot be a rate is a gap, from which the
    /// container starts again: `read` going back, or ahead by more than the agent's own
    /// clock allows, or a rate beyond the machine's CPUs. Memory sums the containers'
    /// working sets; a sum past 2^64 bytes is not a value.
    pub fn update(
        &mut self,
        task: &Task,
        stats: &Stats,
        capacity: &Capacity,
        now: u64,
    ) -> Utilization {
        let mut vcpus_used = 0.0;
        let mut advanced = false;
        let mut memory_bytes: Option<u64> = None;
        let mut overflowed = false;
        let mut implausible = None;
        let mut current = HashMap::with_capacity(self.previous.len());
        for container in task.measured() {
            let Some(Some(s)) = stats.get(&container.docker_id) else {
                continue;
            };
            let Some(read_nanos) = s.read_nanos() else {
                continue;
            };
            // Once past 2^64 the sum is no value, whatever the containers after it say.
            if let Some(bytes) = s.working_set_bytes()
                && !overflowed
            {
                match memory_bytes.unwrap_or(0).checked_add(bytes) {
                    Some(sum) => memory_bytes = Some(sum),
                    None => {
                        implausible = Some("the containers' memory adds up past 2^64 bytes".into());
                        memory_bytes = None;
                        overflowed = true;
                    }
                }
            }
            let Some(usage_nanos) = s.cpu_nanos() else {
                continue;
            };
            let mut point = CpuPoint {
                reading: Reading {
                    used: usage_nanos,
                    span: read_nanos,
                },
                rate: None,
                seen: now,
            };
            // The agent's own last reading; for a container seen for the first time,
            // Docker's (whose clock needs no check against the agent's).
            let baseline = match self.previous.get(&container.docker_id) {
                Some(prev) => Some((*prev, Some(now.saturating_sub(prev.seen)))),
                None => s.earlier_reading().map(|reading| {
                    let point = CpuPoint {
                        reading,
                        rate: None,
                        seen: now,
                    };
                    (point, None)
                }),
            };
            if let Some((prev, agent_elapsed)) = baseline {
                let stats_elapsed = read_nanos.saturating_sub(prev.reading.span);
                let jumped = agent_elapsed
                    .filter(|a| stats_elapsed > a.saturating_add(MAX_CLOCK_SKEW_NANOS));
                match rate::ratio(prev.reading, point.reading) {
                    _ if jumped.is_some() => {
                        implausible = Some(format!(
                            "the stats' clock jumped {:.1} s ahead in {:.1} s",
                            stats_elapsed as f64 / 1e9,
                            jumped.unwrap_or_default() as f64 / 1e9
                        ));
                    }
                    Ok(vcpus) if vcpus > capacity.instance_cpus * 1.1 => {
                        implausible = Some(format!(
                            "a container used {vcpus:.1} vCPUs of a {}-CPU machine",
                            capacity.instance_cpus
                        ));
                    }
                    Ok(vcpus) => {
                        advanced = true;
                        point.rate = Some(vcpus);
                    }
                    // A counter that went down means a restart: 0 for this interval.
                    Err(Gap::UsedBackwards) => {
                        advanced = true;
                        point.rate = Some(0.0);
                    }
                    // Not refreshed yet: keep the older point as the baseline.
                    Err(Gap::NoSpan) => point = prev,
                    Err(Gap::SpanBackwards) => {
                        implausible = Some("the stats' clock went back".into());
                    }
                }
            }
            vcpus_used += point.rate.unwrap_or(0.0);
            current.insert(container.docker_id.clone(), point);
        }
        self.previous = current;
        let plausible = |capacity: f64| capacity.is_finite() && capacity > 0.0;
        if (advanced && !plausible(capacity.vcpus))
            || (memory_bytes.is_some() && !plausible(capacity.memory_bytes))
        {
            implausible = Some(format!(
                "the task's capacity is {} vCPUs and {} bytes",
                capacity.vcpus, capacity.memory_bytes
            ));
        }
        Utilization {
            cpu: (advanced && plausible(capacity.vcpus))
                .then(|| rate::percent_of(vcpus_used, capacity.vcpus))
                .flatten(),
            memory: memory_bytes
                .filter(|_| plausible(capacity.memory_bytes))
                .and_then(|b| rate::percent_of(b as f64, capacity.memory_bytes)),
            implausible,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FARGATE_TASK: &str = include_str!("../../../tests/fixtures/ecs/fargate/task.json");
    const FARGATE_STATS: &str = include_str!("../../../tests/fixtures/ecs/fargate/stats.json");
    const EC2_TASK: &str = include_str!("../../../tests/fixtures/ecs/ec2/task.json");
    const EC2_STATS: &str = include_str!("../../../tests/fixtures/ecs/ec2/stats.json");

    const APP_ID: &str = "8b2b7b1f0e3a4c1d9e5f6a7b8c9d0e1f-1111111111";
    const SIDECAR_ID: &str = "8b2b7b1f0e3a4c1d9e5f6a7b8c9d0e1f-2222222222";

    /// A second on the agent's clock, in ns.
    const S: u64 = 1_000_000_000;

    const INSTANCE: Machine = Machine {
        cpus: 2,
        memory_bytes: 4 * 1024 * 1024 * 1024,
    };

    fn task(text: &str) -> Task {
        serde_json::from_str(text).unwrap()
    }

    fn stats(text: &str) -> Stats {
        serde_json::from_str(text).unwrap()
    }

    /// `stats` with every container's counters moved on by `cpu_ns` over `secs`.
    fn advanced(mut doc: Stats, secs: i64, cpu_ns: &[(&str, i64)]) -> Stats {
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
        assert_eq!((c.vcpus, c.memory_bytes), (0.5, 1024.0 * MIB));
        assert_eq!(c.cpu_source, "the task's CPU limit");
    }

    #[test]
    fn ec2_task_without_size_uses_container_limits_and_skips_the_pause_container() {
        let t = task(EC2_TASK);
        assert_eq!(t.cluster_name(), "default");
        let c = t.capacity(INSTANCE);
        // Containers: 512 + 256 CPU units, 768 + 256 MiB; the pause container not counted.
        assert_eq!(c.vcpus, 0.75);
        assert_eq!(c.memory_bytes, 1024.0 * MIB);
        assert_eq!(c.cpu_source, "the sum of the containers' CPU units");
    }

    #[test]
    fn no_limits_anywhere_falls_back_to_the_instance() {
        let t = task(r#"{"Containers":[{"DockerId":"a","Limits":{"CPU":0,"Memory":0}}]}"#);
        let c = t.capacity(INSTANCE);
        assert_eq!((c.vcpus, c.memory_bytes), (2.0, 4.0 * 1024.0 * MIB));
        assert_eq!(c.memory_source, "the instance's memory");
    }

    #[test]
    fn two_containers_using_a_quarter_and_0_15_vcpu_of_half_a_vcpu_is_80_percent() {
        let t = task(FARGATE_TASK);
        let cap = t.capacity(INSTANCE);
        let first = stats(FARGATE_STATS);
        let mut tracker = Tracker::default();
        let u = tracker.update(&t, &first, &cap, 0);
        // The first document's CPU is Docker's own interval (`precpu_stats`, `preread`):
        // each container used 1 ms in 1 s, 0.002 vCPU of 0.5.
        assert!((u.cpu.unwrap() - 0.4).abs() < 1e-9, "{u:?}");
        // 300 MiB working set of 1024 MiB (fixture: app 250 MiB, sidecar 50 MiB).
        assert_eq!(u.memory.map(|m| (m * 10.0).round() / 10.0), Some(29.3));

        let second = advanced(
            first,
            2,
            &[(APP_ID, 500_000_000), (SIDECAR_ID, 300_000_000)],
        );
        let u = tracker.update(&t, &second, &cap, 2 * S);
        assert!((u.cpu.unwrap() - 80.0).abs() < 1e-9, "{u:?}");
    }

    #[test]
    fn a_restarted_container_counts_zero_never_negative() {
        let t = task(FARGATE_TASK);
        let cap = t.capacity(INSTANCE);
        let mut tracker = Tracker::default();
        let first = stats(FARGATE_STATS);
        tracker.update(&t, &first, &cap, 0);
        let second = advanced(
            first,
            1,
            &[(APP_ID, -1_000_000_000), (SIDECAR_ID, 100_000_000)],
        );
        let u = tracker.update(&t, &second, &cap, S);
        assert!((u.cpu.unwrap() - 20.0).abs() < 1e-9, "{u:?}");
    }

    #[test]
    fn the_same_document_twice_gives_no_cpu_sample() {
        let t = task(FARGATE_TASK);
        let cap = t.capacity(INSTANCE);
        let mut tracker = Tracker::default();
        let doc = stats(FARGATE_STATS);
        tracker.update(&t, &doc, &cap, 0);
        assert_eq!(tracker.update(&t, &doc, &cap, S).cpu, None);
        let later = advanced(doc, 1, &[(APP_ID, 250_000_000)]);
        let u = tracker.update(&t, &later, &cap, 2 * S);
        assert!((u.cpu.unwrap() - 50.0).abs() < 1e-9);
    }

    #[test]
    fn a_container_not_yet_refreshed_counts_at_its_last_rate() {
        let t = task(FARGATE_TASK);
        let cap = t.capacity(INSTANCE);
        let mut tracker = Tracker::default();
        let doc = stats(FARGATE_STATS);
        tracker.update(&t, &doc, &cap, 0);
        let both = advanced(
            doc.clone(),
            1,
            &[(APP_ID, 250_000_000), (SIDECAR_ID, 150_000_000)],
        );
        assert!((tracker.update(&t, &both, &cap, S).cpu.unwrap() - 80.0).abs() < 1e-9);
        // Only the app's stats move on; the sidecar's document is the same as before.
        let mut app_only = advanced(both.clone(), 1, &[(APP_ID, 250_000_000)]);
        app_only.insert(SIDECAR_ID.into(), both[SIDECAR_ID].clone());
        let u = tracker.update(&t, &app_only, &cap, 2 * S);
        assert!((u.cpu.unwrap() - 80.0).abs() < 1e-9);
    }

    #[test]
    fn empty_stats_at_fargate_start_are_no_sample_not_zero() {
        let t = task(FARGATE_TASK);
        let cap = t.capacity(INSTANCE);
        let mut tracker = Tracker::default();
        for doc in [
            "{}",
            r#"{"8b2b7b1f0e3a4c1d9e5f6a7b8c9d0e1f-1111111111": null}"#,
            r#"{"8b2b7b1f0e3a4c1d9e5f6a7b8c9d0e1f-1111111111": {"read": "0001-01-01T00:00:00Z",
                "cpu_stats": {"cpu_usage": {"total_usage": 0}}, "memory_stats": {}}}"#,
        ] {
            assert_eq!(
                tracker.update(&t, &stats(doc), &cap, 0),
                Utilization::default(),
                "{doc}"
            );
        }
    }

    #[test]
    fn ec2_stats_on_cgroup_v1_subtract_total_inactive_file_and_skip_the_pause_container() {
        let t = task(EC2_TASK);
        let cap = t.capacity(INSTANCE);
        let u = Tracker::default().update(&t, &stats(EC2_STATS), &cap, 0);
        // app: 600 MiB usage − 88 MiB total_inactive_file; worker: 100 MiB − cache 10 MiB
        // (no inactive_file fields); the pause container's 4 MiB is not counted.
        let expected = (512.0 + 90.0) / 1024.0 * 100.0;
        assert!((u.memory.unwrap() - expected).abs() < 1e-9, "{u:?}");
    }

    #[test]
    fn a_stats_clock_that_steps_back_and_forward_is_a_gap_not_a_spike() {
        let t = task(FARGATE_TASK);
        let cap = t.capacity(INSTANCE);
        let rates = [(APP_ID, 250_000_000), (SIDECAR_ID, 150_000_000)];
        let mut tracker = Tracker::default();
        let doc = stats(FARGATE_STATS);
        tracker.update(&t, &doc, &cap, 0);
        let one = advanced(doc.clone(), 1, &rates);
        assert!((tracker.update(&t, &one, &cap, S).cpu.unwrap() - 80.0).abs() < 1e-9);
        // The stats' clock steps back 30 s, and the containers' counters go on.
        let back = advanced(one.clone(), -30, &rates);
        let u = tracker.update(&t, &back, &cap, 2 * S);
        assert_eq!(u.cpu, None, "{u:?}");
        assert!(u.implausible.unwrap().contains("went back"));
        // ...and forward again: 31 s of stats' time in one second of the agent's.
        let forward = advanced(back, 31, &rates);
        let u = tracker.update(&t, &forward, &cap, 3 * S);
        assert_eq!(u.cpu, None, "no spike: {u:?}");
        assert!(
            u.implausible
                .unwrap()
                .contains("jumped 31.0 s ahead in 1.0 s")
        );
        let after = advanced(forward, 1, &rates);
        let u = tracker.update(&t, &after, &cap, 4 * S);
        assert!(
            (u.cpu.unwrap() - 80.0).abs() < 1e-9,
            "measured again: {u:?}"
        );
        assert_eq!(u.implausible, None);
    }

    #[test]
    fn a_rate_beyond_the_machines_cpus_is_not_a_value() {
        let t = task(FARGATE_TASK);
        let cap = t.capacity(INSTANCE);
        let mut tracker = Tracker::default();
        let doc = stats(FARGATE_STATS);
        tracker.update(&t, &doc, &cap, 0);
        // 14 CPU-seconds in a second on a 2-CPU instance.
        let absurd = advanced(doc, 1, &[(APP_ID, 14_000_000_000)]);
        let u = tracker.update(&t, &absurd, &cap, S);
        assert_eq!(u.cpu, Some(0.0), "the sidecar's 0 only: {u:?}");
        assert!(
            u.implausible
                .unwrap()
                .contains("14.0 vCPUs of a 2-CPU machine")
        );
    }

    #[test]
    fn memory_that_adds_up_past_2_64_bytes_is_not_a_value() {
        let t = task(FARGATE_TASK);
        let cap = t.capacity(INSTANCE);
        let mut doc = stats(FARGATE_STATS);
        for s in doc.values_mut().flatten() {
            let memory = s.memory_stats.as_mut().unwrap();
            memory.usage = Some(1 << 63);
            memory.stats = None;
        }
        let u = Tracker::default().update(&t, &doc, &cap, 0);
        assert_eq!(u.memory, None, "{u:?}");
        assert!(u.implausible.unwrap().contains("2^64"));
    }

    #[test]
    fn memory_stays_a_gap_after_an_overflow_whatever_the_containers_after_it_report() {
        // Two containers at 2^63 bytes overflow the sum; a third with 100 MiB must not
        // restart it (it did: 4.9 % of the task's memory was published).
        let t = task(
            r#"{"Limits":{"CPU":2,"Memory":2048},"Containers":[{"DockerId":"a"},{"DockerId":"b"},{"DockerId":"c"}]}"#,
        );
        let cap = t.capacity(INSTANCE);
        let entry = |bytes: u64| {
            format!(
                r#"{{"read": "2026-12-02T00:00:00Z", "cpu_stats": {{"cpu_usage": {{"total_usage": 5}}}},
                "memory_stats": {{"usage": {bytes}}}}}"#
            )
        };
        let doc = stats(&format!(
            r#"{{"a": {}, "b": {}, "c": {}}}"#,
            entry(1 << 63),
            entry(1 << 63),
            entry(100 << 20)
        ));
        let u = Tracker::default().update(&t, &doc, &cap, 0);
        assert_eq!(u.memory, None, "{u:?}");
        assert!(u.implausible.unwrap().contains("2^64"));
    }

    #[test]
    fn a_zero_capacity_is_no_value_with_a_reason() {
        let t = task(r#"{"Containers":[{"DockerId":"a","Limits":{"CPU":0,"Memory":0}}]}"#);
        let cap = t.capacity(Machine {
            cpus: 2,
            memory_bytes: 0,
        });
        let doc = stats(
            r#"{"a": {"read": "2026-12-02T00:00:00Z",
            "cpu_stats": {"cpu_usage": {"total_usage": 5}}, "memory_stats": {"usage": 100}}}"#,
        );
        let u = Tracker::default().update(&t, &doc, &cap, 0);
        assert_eq!(u.memory, None);
        assert!(u.implausible.unwrap().contains("capacity"), "said why");
    }

    /// AWS's published examples and a real capture (`tests/fixtures/ecs/published/`, see
    /// the README there): what the agent reports from each, and the arithmetic.
    mod published {
        use super::*;

        macro_rules! fixture {
            ($name:literal) => {
                include_str!(concat!("../../../tests/fixtures/ecs/published/", $name))
            };
        }

        /// The stats document with entries moved to the ids the task lists: the examples
        /// of each page come from different tasks.
        fn joined(text: &str, ids: &[(&str, &str)]) -> Stats {
            let mut doc = stats(text);
            for (from, to) in ids {
                let entry = doc.remove(*from).expect("the example's container");
                doc.insert((*to).to_owned(), entry);
            }
            doc
        }

        /// The utilization of the task's first stats document, read at an arbitrary time
        /// on the agent's clock.
        fn first(t: &Task, doc: &Stats) -> (Utilization, Capacity) {
            let cap = t.capacity(INSTANCE);
            (Tracker::default().update(t, doc, &cap, 1_000 * S), cap)
        }

        fn close(value: Option<f64>, expected: f64) -> bool {
            value.is_some_and(|v| (v - expected).abs() < 1e-9 * expected.max(1.0))
        }

        #[test]
        fn published_fargate_a_quarter_vcpu_task() {
            let t = task(fixture!("fargate-task.json"));
            let doc = joined(
                fixture!("fargate-task-stats.json"),
                &[(
                    "3d1f891cded94dc795608466cce8ddcf-464223573",
                    "bfa2636268144d039771334145e490c5-3681984407",
                )],
            );
            let (u, cap) = first(&t, &doc);
            // Task Limits: 0.25 vCPU, 512 MiB (the containers' 128 and 2 CPU units ignored).
            assert_eq!((cap.vcpus, cap.memory_bytes), (0.25, 512.0 * MIB));
            // CPU: (1137691504 − 1136624601) ns of CPU over (21:24:44.938937019 −
            // 21:24:34.938633969) = 10.000303050 s is 0.000107 vCPU, 0.0427 % of 0.25.
            let cpu = (1_137_691_504.0 - 1_136_624_601.0) / 10_000_303_050.0 / 0.25 * 100.0;
            assert!(close(u.cpu, cpu), "{u:?}");
            assert!(close(u.cpu, 0.042_674_826_739), "{u:?}");
            // Memory: usage 6504448 − total_inactive_file 3088384 = 3416064 bytes of
            // 512 MiB: 0.636 %. (`limit` is the 9223372036854772000 "no limit" value.)
            assert!(
                close(u.memory, 3_416_064.0 / (512.0 * MIB) * 100.0),
                "{u:?}"
            );
            assert!(close(u.memory, 0.636_291_503_906_25), "{u:?}");
            assert_eq!(u.implausible, None);
        }

        #[test]
        fn published_fargate_examples_as_printed_name_no_container_of_the_task() {
            let t = task(fixture!("fargate-task.json"));
            let doc = stats(fixture!("fargate-task-stats.json"));
            assert!(doc.keys().all(|id| !t.knows(id)));
            let (u, _) = first(&t, &doc);
            assert_eq!((u.cpu, u.memory), (None, None), "nothing made up");
        }

        #[test]
        fn published_ec2_awsvpc_task_sized_by_its_container() {
            let t = task(fixture!("ec2-awsvpc-task.json"));
            let doc = joined(
                fixture!("ec2-awsvpc-task-stats.json"),
                &[
                    (
                        "01999f2e5c6cf4df3873f28950e6278813408f281c54778efec860d0caad4854",
                        "598cba581fe3f939459eaba1e071d5c93bb2c49b7d1ba7db6bb19deeb70d8e38",
                    ),
                    (
                        "5fc21e5b015f899d22618f8aede80b6d70d71b2a75465ea49d9462c8f3d2d3af",
                        "ee08638adaaf009d78c248913f629e38299471d45fe7dc944d1039077e3424ca",
                    ),
                ],
            );
            let (u, cap) = first(&t, &doc);
            // No task Limits: curl's 10 CPU units (10/1024 vCPU) and 128 MiB; the
            // CNI_PAUSE container's stats (532480 bytes) are not the workload's.
            assert_eq!((cap.vcpus, cap.memory_bytes), (10.0 / 1024.0, 128.0 * MIB));
            assert_eq!(cap.cpu_source, "the sum of the containers' CPU units");
            // CPU: (379075681 − 378825197) ns over 1.002173613 s is 0.00025 vCPU, 2.56 %
            // of 10 CPU units.
            let cpu = (379_075_681.0 - 378_825_197.0) / 1_002_173_613.0 / (10.0 / 1024.0) * 100.0;
            assert!(close(u.cpu, cpu), "{u:?}");
            assert!(close(u.cpu, 2.559_393_030_037_8), "{u:?}");
            // Memory: usage 1814528 − total_inactive_file 0 of 128 MiB: 1.352 %.
            assert!(
                close(u.memory, 1_814_528.0 / (128.0 * MIB) * 100.0),
                "{u:?}"
            );
        }

        #[test]
        fn published_ec2_bridge_container_that_used_no_cpu() {
            let t = task(fixture!("ec2-awsvpc-task.json"));
            let container: ContainerStats =
                serde_json::from_str(fixture!("ec2-bridge-container-stats.json")).unwrap();
            let doc = Stats::from([(
                "ee08638adaaf009d78c248913f629e38299471d45fe7dc944d1039077e3424ca".to_owned(),
                Some(container),
            )]);
            let (u, _) = first(&t, &doc);
            // cpu and precpu total_usage are both 360968065: 0 % over 1.004 s, a value.
            assert_eq!(u.cpu, Some(0.0));
            // Memory: usage 1806336 − 0 of 128 MiB: 1.346 %.
            assert!(
                close(u.memory, 1_806_336.0 / (128.0 * MIB) * 100.0),
                "{u:?}"
            );
        }

        #[test]
        fn published_managed_instances_cgroup_v2() {
            let t = task(fixture!("managed-instances-cgroupv2-task.json"));
            let doc = stats(fixture!("managed-instances-cgroupv2-task-stats.json"));
            let (u, cap) = first(&t, &doc);
            // Task Limits 1 vCPU and 3072 MiB (the container's own "CPU": 2 ignored;
            // `limit` 18446744073709551615 is u64::MAX, "no limit").
            assert_eq!((cap.vcpus, cap.memory_bytes), (1.0, 3072.0 * MIB));
            // CPU: (670462000 − 663809000) ns over 9.998537590 s: 0.0665 % of 1 vCPU.
            let cpu = (670_462_000.0 - 663_809_000.0) / 9_998_537_590.0 * 100.0;
            assert!(close(u.cpu, cpu), "{u:?}");
            // Memory, cgroup v2 (no `cache`): usage 83562496 − inactive_file 48271360 =
            // 35291136 bytes of 3072 MiB: 1.096 %.
            assert!(
                close(u.memory, 35_291_136.0 / (3072.0 * MIB) * 100.0),
                "{u:?}"
            );
            assert!(close(u.memory, 1.095_581_054_687_5), "{u:?}");
        }

        #[test]
        fn published_cgroup_v2_capture_with_only_the_pause_container() {
            let t = task(fixture!("telegraf-cgroupv2-task.json"));
            let doc = stats(fixture!("telegraf-cgroupv2-task-stats.json"));
            assert!(doc.keys().all(|id| t.knows(id)));
            assert_eq!(t.measured().count(), 0);
            let (u, cap) = first(&t, &doc);
            assert_eq!((cap.vcpus, cap.memory_bytes), (0.5, 1024.0 * MIB));
            // ECS's plumbing is not the workload: no value rather than its 303104 bytes.
            assert_eq!((u.cpu, u.memory), (None, None));
            let pause = doc.values().flatten().next().unwrap();
            assert_eq!(pause.working_set_bytes(), Some(303_104));
        }

        #[test]
        fn published_2020_fargate_first_reading_has_memory_but_no_cpu_yet() {
            let t = task(fixture!("legacy-2020-fargate-task.json"));
            let doc = joined(
                fixture!("legacy-2020-fargate-task-stats.json"),
                &[(
                    "1823e1f6-7248-43c3-bed6-eea1fa7501a5query-metadata",
                    "febee046097849aba589d4435207c04aquery-metadata",
                )],
            );
            let cap = t.capacity(INSTANCE);
            let mut tracker = Tracker::default();
            let u = tracker.update(&t, &doc, &cap, 1_000 * S);
            // precpu total_usage is 0 (Docker had no reading before): no baseline, so no
            // CPU rather than 410557100 ns over 5 s (32.8 %) as if the task had started then.
            assert_eq!(u.cpu, None, "{u:?}");
            // Memory: usage 4390912 − total_inactive_file 3108864 of 512 MiB: 0.239 %.
            assert!(
                close(u.memory, 1_282_048.0 / (512.0 * MIB) * 100.0),
                "{u:?}"
            );
            // The next document a second later, 0.1 vCPU on: 40 % of 0.25 vCPU.
            let next = advanced(
                doc,
                1,
                &[(
                    "febee046097849aba589d4435207c04aquery-metadata",
                    100_000_000,
                )],
            );
            let u = tracker.update(&t, &next, &cap, 1_001 * S);
            // (`advanced` writes `read` to the microsecond.)
            assert!(u.cpu.is_some_and(|c| (c - 40.0).abs() < 1e-3), "{u:?}");
        }
    }
}
