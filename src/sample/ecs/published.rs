//! AWS's published ECS task metadata examples and real captures
//! (`tests/fixtures/ecs/published/`, see the README there): what the agent reports from
//! each, with the arithmetic written out.

use super::metadata::testing::*;
use super::metadata::*;
use super::tracker::{Tracker, Utilization, Wants};
use crate::sample::{Absolute, Capacity};

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
    assert_eq!((cap.cpus, cap.memory_bytes as f64), (0.25, 512.0 * MIB));
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
    assert_eq!(
        (cap.cpus, cap.memory_bytes as f64),
        (10.0 / 1024.0, 128.0 * MIB)
    );
    assert_eq!(cap.cpus_from, "the sum of the containers' CPU units");
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
    assert_eq!((cap.cpus, cap.memory_bytes as f64), (1.0, 3072.0 * MIB));
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
    assert_eq!((cap.cpus, cap.memory_bytes as f64), (0.5, 1024.0 * MIB));
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

/// Moves the network and block I/O counters of `doc`'s container `id` on by these bytes
/// (`read` is moved by [`advanced`]).
fn traffic(doc: &mut Stats, id: &str, rx: u64, tx: u64, read: u64, written: u64) {
    let s = doc.get_mut(id).unwrap().as_mut().unwrap();
    for (_, interface) in &mut s.networks.as_mut().unwrap().0 {
        interface.rx_bytes = interface.rx_bytes.map(|b| b + rx);
        interface.tx_bytes = interface.tx_bytes.map(|b| b + tx);
    }
    let io = s.blkio_stats.as_mut().unwrap();
    let bytes = io.io_service_bytes_recursive.as_mut().unwrap();
    bytes.read += read;
    bytes.written += written;
}

/// Whether both rates are within a millionth of `expected` ([`advanced`] writes `read`
/// to the microsecond).
fn near(rates: Option<(f64, f64)>, expected: (f64, f64)) -> bool {
    let within = |v: f64, e: f64| (v - e).abs() <= 1e-6 * e.max(1.0);
    rates.is_some_and(|(a, b)| within(a, expected.0) && within(b, expected.1))
}

/// A tracker reading every group.
fn tracker_of_everything() -> Tracker {
    Tracker::new(Wants {
        containers: true,
        network: true,
        storage: true,
    })
}

const EXPORTER: &str = "8204edb71692468dba0dcaedf9445d45-4159844948";
const MAIN: &str = "8204edb71692468dba0dcaedf9445d45-3935363592";

/// prometheus-community/ecs_exporter's live Fargate capture: three awsvpc containers,
/// one stopped (`null` stats), the other two reporting the task's one interface.
fn exporter_capture() -> (Task, Stats) {
    let t = task(fixture!("ecs-exporter-fargate-task.json"));
    let doc = joined(
        fixture!("ecs-exporter-fargate-task-stats.json"),
        &[
            ("04d558ed038d41bb9de115aab248e4f9-4159844948", EXPORTER),
            ("04d558ed038d41bb9de115aab248e4f9-3935363592", MAIN),
            (
                "04d558ed038d41bb9de115aab248e4f9-1585788040",
                "8204edb71692468dba0dcaedf9445d45-1585788040",
            ),
        ],
    );
    (t, doc)
}

#[test]
fn published_fargate_capture_per_container_figures_add_up_to_the_task() {
    let (t, doc) = exporter_capture();
    let cap = t.capacity(INSTANCE);
    let u = tracker_of_everything().update(&t, &doc, &cap, 1_000 * S);
    // ecs-exporter: (2445096927 − 2405275582) ns over (03:30:22.254837493 −
    // 03:30:12.255515507) = 9.999321986 s is 0.0039824 vCPU, 4.078 CPU units; main:
    // precpu equals cpu, 0 units. The stopped container (`null` stats) is not listed.
    let exporter_units = 39_821_345.0 / 9_999_321_986.0 * 1024.0;
    let names: Vec<&str> = u.containers.iter().map(|c| &*c.name).collect();
    assert_eq!(names, ["ecs-exporter", "main"]);
    assert!(close(u.containers[0].cpu_utilized, exporter_units), "{u:?}");
    assert_eq!(u.containers[1].cpu_utilized, Some(0.0));
    // Memory: usage − total_inactive_file: 40611840 − 946176 = 39665664 bytes
    // (37.83 MiB) and 24264704 − 270336 = 23994368 bytes (22.88 MiB).
    assert!(close(u.containers[0].memory_utilized, 39_665_664.0 / MIB));
    assert!(close(u.containers[1].memory_utilized, 23_994_368.0 / MIB));
    // The task's figures are their sums, against 0.25 vCPU (256 units) and 512 MiB.
    let absolute = Absolute::of(u.vcpus, u.memory_bytes, &cap);
    assert!(close(absolute.cpu_utilized, exporter_units));
    assert_eq!(absolute.cpu_reserved, Some(256.0));
    assert!(close(absolute.memory_utilized, 63_660_032.0 / MIB));
    assert_eq!(absolute.memory_reserved, Some(512.0));
    assert!(close(u.cpu, exporter_units / 256.0 * 100.0), "{u:?}");
    // Docker keeps no earlier network or I/O counters: the first document is a baseline.
    assert_eq!((u.network, u.storage), (None, None));
}

#[test]
fn published_fargate_capture_counts_the_shared_interface_once() {
    let (t, first) = exporter_capture();
    let cap = t.capacity(INSTANCE);
    let mut tracker = tracker_of_everything();
    tracker.update(&t, &first, &cap, 1_000 * S);
    // Ten seconds on: the task's eth1 received 1,000,000 and sent 500,000 bytes, which
    // both containers report (awsvpc: one namespace); each container's own cgroup read
    // and wrote its own bytes.
    let mut second = advanced(first, 10, &[]);
    traffic(&mut second, EXPORTER, 1_000_000, 500_000, 40_960, 81_920);
    traffic(&mut second, MAIN, 1_000_000, 500_000, 4_096, 0);
    let u = tracker.update(&t, &second, &cap, 1_010 * S);
    // 1,000,000 bytes / 10 s = 100,000 B/s, not twice that.
    assert!(near(u.network, (100_000.0, 50_000.0)), "{u:?}");
    // (40960 + 4096) / 10 s read, 81920 / 10 s written: the containers add up.
    assert!(near(u.storage, (4_505.6, 8_192.0)), "{u:?}");
    // The interface counters go back (the task's ENI was replaced): 0 for the interval,
    // never a negative or wrapped rate.
    let mut third = advanced(second, 10, &[]);
    for id in [EXPORTER, MAIN] {
        let s = third.get_mut(id).unwrap().as_mut().unwrap();
        let eth1 = &mut s.networks.as_mut().unwrap().0[0];
        assert_eq!(eth1.0, "eth1");
        eth1.1.rx_bytes = Some(1_000);
    }
    let u = tracker.update(&t, &third, &cap, 1_020 * S);
    let (rx, tx) = u.network.unwrap();
    assert_eq!((rx, tx), (0.0, 0.0), "{u:?}");
}

#[test]
fn published_bridge_containers_have_interfaces_of_their_own_that_add_up() {
    // The EC2 task (no awsvpc: each container its own namespace) with AWS's bridge-mode
    // container stats as both containers' (eth0: 84 bytes each way).
    let t = task(EC2_TASK);
    let cap = t.capacity(INSTANCE);
    let bridge: ContainerStats =
        serde_json::from_str(fixture!("ec2-bridge-container-stats.json")).unwrap();
    let app = "3c6b0c8d5f2e4e8a9b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a";
    let worker = "9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c";
    assert!(t.measured().all(|c| !c.shares_task_network()));
    let first = Stats::from([
        (app.to_owned(), Some(bridge.clone())),
        (worker.to_owned(), Some(bridge)),
    ]);
    let mut tracker = tracker_of_everything();
    tracker.update(&t, &first, &cap, 0);
    let mut second = advanced(first, 1, &[]);
    for (id, rx) in [(app, 2_000), (worker, 1_000)] {
        let s = second.get_mut(id).unwrap().as_mut().unwrap();
        let eth0 = &mut s.networks.as_mut().unwrap().0[0];
        assert_eq!(eth0.0, "eth0");
        eth0.1.rx_bytes = eth0.1.rx_bytes.map(|b| b + rx);
    }
    let u = tracker.update(&t, &second, &cap, S);
    // 2000 + 1000 bytes in one second: two interfaces, added up.
    assert!(near(u.network, (3_000.0, 0.0)), "{u:?}");
    // Its blkio_stats lists nothing: no storage figure rather than 0.
    assert_eq!(u.storage, None);
}

#[test]
fn published_blkio_stats_in_the_cgroup_v1_and_v2_shapes() {
    // cgroup v1 (the Fargate example): per device Read, Write, Sync, Async, Total; only
    // Read and Write count (Sync and Total are the same bytes again).
    let v1 = stats(fixture!("fargate-task-stats.json"));
    let s = v1.values().flatten().next().unwrap();
    assert_eq!(s.storage_bytes(), Some((638_976, 0)));
    // cgroup v2 (the Managed Instances example): lowercase read and write, per device:
    // 0 + 48173056 + 48173056 read, 131072 + 0 + 0 written.
    let v2 = stats(fixture!("managed-instances-cgroupv2-task-stats.json"));
    let s = v2.values().flatten().next().unwrap();
    assert_eq!(s.storage_bytes(), Some((96_346_112, 131_072)));
    // That capture has `"networks": null`: no network figure, and no failure.
    assert_eq!(s.networks, None);
    // Telegraf's cgroup v2 capture: `io_service_bytes_recursive` is null.
    let none = stats(fixture!("telegraf-cgroupv2-task-stats.json"));
    assert_eq!(
        none.values().flatten().next().unwrap().storage_bytes(),
        None
    );
}
