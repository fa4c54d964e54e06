//! The arithmetic that turns two stats documents of the ECS task metadata endpoint into
//! task utilization: CPU as the change of the containers' counters over the stats' own
//! `read` times, memory as the sum of their working sets, against the task's capacity.

use std::collections::HashMap;

use super::counters::CounterRates;
use super::metadata::{Container, ContainerStats, MIB, Stats, Task};
use crate::sample::rate::{self, Gap, Reading};
use crate::sample::{CPU_UNITS_PER_VCPU, Capacity, ContainerSample};

/// How far the stats' clock (`read`) may run ahead of the agent's own between two
/// documents before the interval counts as a jump of that clock, not as CPU use: the
/// agent polls once a refresh (a second on EC2, 10 s on Fargate), a refresh found a tick
/// late shifts a poll by a second, and a slow answer by up to its 500 ms timeout.
const MAX_CLOCK_SKEW_NANOS: u64 = 3_000_000_000;

/// The last CPU reading of one container.
#[derive(Debug, Clone, Copy)]
struct CpuPoint {
    /// CPU time used (ns) over the time of the stats (`read`, ns since the epoch).
    reading: Reading,
    /// vCPUs used over the last interval that moved on, if there was one.
    rate: Option<f64>,
    /// When the agent got the reading, on its own monotonic clock (ns).
    seen: u64,
    /// The document's `read − preread` (ns): the reading may have been this old when
    /// the agent got it.
    refresh: Option<u64>,
}

/// Turns successive stats documents into task utilization. CPU, network and storage
/// are rates, so it keeps each counter's previous reading.
#[derive(Debug, Default)]
pub struct Tracker {
    previous: HashMap<String, CpuPoint>,
    /// What is read beyond CPU and memory.
    wants: Wants,
    network_rx: CounterRates,
    network_tx: CounterRates,
    storage_read: CounterRates,
    storage_write: CounterRates,
    /// Whether network and block I/O counters came at all.
    seen: Seen,
}

/// What a [`Tracker`] reads beyond the task's CPU and memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wants {
    pub containers: bool,
    pub network: bool,
    pub storage: bool,
}

/// Task utilization from one stats document, in percent of the task's capacity, and the
/// figures behind it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Utilization {
    /// `None` when no container's stats moved on since an earlier reading (the agent's
    /// or, for a container seen for the first time, Docker's own).
    pub cpu: Option<f64>,
    /// `None` when no container has memory stats yet.
    pub memory: Option<f64>,
    /// vCPUs the task used, when `cpu` is measured.
    pub vcpus: Option<f64>,
    /// The containers' working sets, summed.
    pub memory_bytes: Option<u64>,
    /// Each container's figures, when asked for: CPU (CPU units, with the task's) and
    /// working set (MiB), in `/task`'s order.
    pub containers: Vec<ContainerSample>,
    /// Bytes a second received and sent by the task, when asked for and moved on.
    pub network: Option<(f64, f64)>,
    /// Bytes a second read and written by the task's containers, likewise.
    pub storage: Option<(f64, f64)>,
    /// What in the document could not be true, and cost a value: a clock that jumped, a
    /// rate beyond the machine, a sum past 2^64, a zero capacity.
    pub implausible: Option<String>,
}

impl Tracker {
    /// A tracker that reads what `wants` asks for besides CPU and memory.
    pub fn new(wants: Wants) -> Self {
        Tracker {
            wants,
            ..Tracker::default()
        }
    }

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
        let traffic = self.wants.network || self.wants.storage;
        if traffic {
            self.begin_traffic();
        }
        // Interfaces of the task's shared network namespace counted so far.
        let mut shared: Vec<&str> = Vec::new();
        // Whether a container had stats at all: at a task's start there are none yet,
        // and that says nothing about what they will hold.
        let mut any_stats = false;
        let mut containers = Vec::new();
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
            any_stats = true;
            if traffic {
                self.add_traffic(container, s, read_nanos, &mut shared);
            }
            let working_set = s.working_set_bytes();
            if self.wants.containers {
                containers.push(ContainerSample {
                    name: container.name.as_str().into(),
                    cpu_utilized: None,
                    memory_utilized: working_set.map(|b| b as f64 / MIB),
                });
            }
            // Once past 2^64 the sum is no value, whatever the containers after it say.
            if let Some(bytes) = working_set
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
                refresh: s.refresh_nanos(read_nanos),
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
                        refresh: None,
                    };
                    (point, None)
                }),
            };
            if let Some((prev, agent_elapsed)) = baseline {
                let stats_elapsed = read_nanos.saturating_sub(prev.reading.span);
                // The document before may have been a refresh old when the agent got
                // it: on Fargate the next one comes a second later, 10 s on. (Its own
                // interval: a clock that jumps moves the new document's `preread` too.)
                let allowed = MAX_CLOCK_SKEW_NANOS.saturating_add(prev.refresh.unwrap_or(0));
                let jumped = agent_elapsed.filter(|a| stats_elapsed > a.saturating_add(allowed));
                match rate::ratio(prev.reading, point.reading) {
                    _ if jumped.is_some() => {
                        implausible = Some(format!(
                            "the stats' clock jumped {:.1} s ahead in {:.1} s",
                            stats_elapsed as f64 / 1e9,
                            jumped.unwrap_or_default() as f64 / 1e9
                        ));
                    }
                    Ok(vcpus) if vcpus > capacity.machine_cpus * 1.1 => {
                        implausible = Some(format!(
                            "a container used {vcpus:.1} vCPUs of a {}-CPU machine",
                            capacity.machine_cpus
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
            // The sample just pushed (only with `containers` asked for).
            if let Some(sample) = containers.last_mut() {
                sample.cpu_utilized = point.rate.map(|vcpus| vcpus * CPU_UNITS_PER_VCPU);
            }
            current.insert(container.docker_id.clone(), point);
        }
        self.previous = current;
        let traffic = if traffic {
            self.finish_traffic(any_stats)
        } else {
            Traffic {
                network: None,
                storage: None,
            }
        };
        let plausible = |capacity: f64| capacity.is_finite() && capacity > 0.0;
        if (advanced && !plausible(capacity.cpus))
            || (memory_bytes.is_some() && !plausible(capacity.memory_bytes as f64))
        {
            implausible = Some(format!(
                "the task's capacity is {} vCPUs and {} bytes",
                capacity.cpus, capacity.memory_bytes
            ));
        }
        if !advanced {
            // The same CPU figures again would be samples twice over.
            for c in &mut containers {
                c.cpu_utilized = None;
            }
        }
        Utilization {
            cpu: (advanced && plausible(capacity.cpus))
                .then(|| rate::percent_of(vcpus_used, capacity.cpus))
                .flatten(),
            memory: memory_bytes
                .filter(|_| plausible(capacity.memory_bytes as f64))
                .and_then(|b| rate::percent_of(b as f64, capacity.memory_bytes as f64)),
            vcpus: advanced.then_some(vcpus_used),
            memory_bytes,
            containers,
            network: traffic.network,
            storage: traffic.storage,
            implausible,
        }
    }

    /// Starts the network and storage rates of one document.
    fn begin_traffic(&mut self) {
        for rates in [
            &mut self.network_rx,
            &mut self.network_tx,
            &mut self.storage_read,
            &mut self.storage_write,
        ] {
            rates.begin();
        }
    }

    /// Adds one container's network and storage counters, where asked for, read at
    /// `read_nanos`. Containers that share the task's network namespace all report its
    /// interfaces: each interface is counted once (`shared`), from the first such
    /// container that lists it. A container with a namespace of its own (bridge mode)
    /// adds its own. Block I/O is each container's own cgroup's, so the containers add
    /// up.
    fn add_traffic<'a>(
        &mut self,
        container: &Container,
        s: &'a ContainerStats,
        read_nanos: u64,
        shared: &mut Vec<&'a str>,
    ) {
        if self.wants.network {
            // Kept under the container it was read from: another container's copy of
            // a shared interface has another `read` time, so taking it over starts a
            // new baseline rather than a rate across two clocks.
            let key = container.docker_id.as_str();
            let shares = container.shares_task_network();
            for (interface, counters) in s.networks.iter().flat_map(|n| &n.0) {
                self.seen.network = true;
                if shares {
                    if shared.contains(&interface.as_str()) {
                        continue;
                    }
                    shared.push(interface);
                }
                if let Some(rx) = counters.rx_bytes {
                    self.network_rx.add(key, interface, rx, read_nanos);
                }
                if let Some(tx) = counters.tx_bytes {
                    self.network_tx.add(key, interface, tx, read_nanos);
                }
            }
        }
        if self.wants.storage
            && let Some((read, written)) = s.storage_bytes()
        {
            self.seen.storage = true;
            let id = container.docker_id.as_str();
            self.storage_read.add(id, "", read, read_nanos);
            self.storage_write.add(id, "", written, read_nanos);
        }
    }

    /// The document's network and storage rates; says once what never came.
    fn finish_traffic(&mut self, any_stats: bool) -> Traffic {
        self.seen.say_what_is_missing(self.wants, any_stats);
        Traffic {
            network: self.network_rx.finish().zip(self.network_tx.finish()),
            storage: self.storage_read.finish().zip(self.storage_write.finish()),
        }
    }
}

/// Whether any document had network or block I/O counters: a task in `host` network
/// mode has none, Fargate's cgroup v2 tasks list no block I/O. Said once, after a few
/// documents, rather than leaving the metrics out in silence.
#[derive(Debug, Default)]
struct Seen {
    network: bool,
    storage: bool,
    documents: u32,
    told: bool,
}

/// Documents with stats looked at before saying what never came.
const DOCUMENTS_BEFORE_TELLING: u32 = 5;

impl Seen {
    /// Counts a document in which a container had stats, and says what never came
    /// once there were enough of them.
    fn say_what_is_missing(&mut self, wants: Wants, any_stats: bool) {
        if self.told || !any_stats {
            return;
        }
        self.documents += 1;
        if self.documents < DOCUMENTS_BEFORE_TELLING {
            return;
        }
        self.told = true;
        if wants.network && !self.network {
            log::error!(
                "no container of the task has network counters in its stats (host network \
                 mode has none): NetworkRxBytes and NetworkTxBytes are not sent"
            );
        }
        if wants.storage && !self.storage {
            log::error!(
                "no container of the task has block I/O counters in its stats \
                 (blkio_stats.io_service_bytes_recursive; Fargate on cgroup v2 lists none): \
                 StorageReadBytes and StorageWriteBytes are not sent"
            );
        }
    }
}

/// Bytes a second of one document: received and sent, read and written.
struct Traffic {
    network: Option<(f64, f64)>,
    storage: Option<(f64, f64)>,
}

#[cfg(test)]
mod tests {
    use super::super::metadata::testing::*;
    use super::*;
    use crate::sample::Machine;

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
    fn a_refresh_10_s_on_found_a_second_after_the_last_is_a_rate_not_a_jump() {
        // Fargate: the first document found was already 9 s old; the next refresh
        // comes a second later with `read` 10 s on (and `preread` the `read` before).
        let t = task(FARGATE_TASK);
        let cap = t.capacity(INSTANCE);
        let every_10_s = |mut doc: Stats| {
            for s in doc.values_mut().flatten() {
                s.preread = s.read.clone();
            }
            doc
        };
        let mut tracker = Tracker::default();
        // The fixture, with Docker's reading before 10 s earlier.
        let doc = advanced(
            every_10_s(advanced(stats(FARGATE_STATS), -10, &[])),
            10,
            &[],
        );
        tracker.update(&t, &doc, &cap, 0);
        let rates = [(APP_ID, 2_500_000_000), (SIDECAR_ID, 1_500_000_000)];
        let next = advanced(every_10_s(doc), 10, &rates);
        let u = tracker.update(&t, &next, &cap, S);
        assert_eq!(u.implausible, None);
        assert!((u.cpu.unwrap() - 80.0).abs() < 1e-9, "{u:?}");
        // A real jump is still one: 40 s on in a second.
        let jump = advanced(every_10_s(next), 40, &rates);
        let u = tracker.update(&t, &jump, &cap, 2 * S);
        assert!(
            u.implausible.unwrap().contains("jumped 40.0 s ahead"),
            "{:?}",
            u.cpu
        );
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
    fn what_never_comes_is_said_after_five_documents_with_stats_not_before() {
        let wants = Wants {
            network: true,
            ..Wants::default()
        };
        let mut seen = Seen::default();
        for _ in 0..10 {
            seen.say_what_is_missing(wants, false);
        }
        assert!(
            !seen.told,
            "documents without stats (a task starting) do not count"
        );
        for _ in 0..DOCUMENTS_BEFORE_TELLING - 1 {
            seen.say_what_is_missing(wants, true);
        }
        assert!(!seen.told);
        seen.say_what_is_missing(wants, true);
        assert!(seen.told);
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
}
