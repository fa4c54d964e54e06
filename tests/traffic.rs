//! Network and block device traffic measured for real on this machine, against the
//! kernel's own counters read by the test: a direct (uncached) write to the disk that
//! holds the temporary directory, in the host scope (`/proc/diskstats`) and in a cgroup
//! v1 blkio group (`blkio.throttle.io_service_bytes_recursive`); a UDP burst out of a
//! network namespace made with `unshare`, beside loopback traffic the agent leaves out.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::Agent;
use common::cgroup::{TestGroup, is_root};
use serde_json::Value;

const MIB: u64 = 1 << 20;
/// What `dd` writes, bypassing the page cache (`oflag=direct`), so that it reaches the
/// disk while the test watches, and is charged to the writer's cgroup.
const WRITTEN: u64 = 64 * MIB;

/// One test at a time: one's writes would show in the other's counters.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `MAJ:MIN` of the block device holding `path` (glibc's `major()` and `minor()`).
fn device_numbers(path: &Path) -> String {
    let dev = fs::metadata(path).unwrap().dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    format!("{major}:{minor}")
}

/// The whole disk holding `path`: its `/sys/dev/block/MAJ:MIN`, or the disk above it
/// for a partition; `None` where `path` is on no block device (tmpfs, overlay).
fn disk_of(path: &Path) -> Option<String> {
    let sys = fs::canonicalize(format!("/sys/dev/block/{}", device_numbers(path))).ok()?;
    let disk = if sys.join("partition").exists() {
        sys.parent()?.to_owned()
    } else {
        sys
    };
    Some(disk.file_name()?.to_str()?.to_owned())
}

/// A directory on a whole disk the agent counts, or why there is none (the test is
/// then skipped, which fails it under CI=true).
fn on_a_disk(test: &str) -> Option<(tempfile::TempDir, String)> {
    let dir = tempfile::tempdir().unwrap();
    match disk_of(dir.path()) {
        Some(disk) if !disk.starts_with("dm-") && !disk.starts_with("md") => Some((dir, disk)),
        Some(disk) => {
            common::skip(
                test,
                &format!("the temporary directory is on {disk}, a stacked device"),
            );
            None
        }
        None => {
            common::skip(test, "the temporary directory is on no block device");
            None
        }
    }
}

/// Bytes written to `disk` so far: `/proc/diskstats` field 10, in 512-byte sectors.
fn disk_written(disk: &str) -> u64 {
    let text = fs::read_to_string("/proc/diskstats").unwrap();
    let line = text
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some(disk))
        .unwrap_or_else(|| panic!("{disk} in /proc/diskstats"));
    let sectors: u64 = line.split_whitespace().nth(9).unwrap().parse().unwrap();
    sectors * 512
}

/// Writes [`WRITTEN`] bytes to a new file under `dir` with `dd … oflag=direct`, run by
/// `command` (e.g. inside a cgroup).
fn direct_write(mut command: Command) {
    let status = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "dd: {status}");
}

fn dd(dir: &Path) -> String {
    format!(
        "dd if=/dev/zero of={} bs=1M count={} oflag=direct conv=fsync",
        dir.join("written").display(),
        WRITTEN / MIB
    )
}

/// The agent's windows of `metric` so far, each as bytes: its rates (bytes a second over
/// the second before each sample) added up.
fn bytes_of(lines: &[Value], metric: &str) -> f64 {
    lines
        .iter()
        .flat_map(|l| l["MetricData"].as_array().unwrap().clone())
        .filter(|d| d["MetricName"] == metric)
        .map(|d| {
            let values = d["Values"].as_array().unwrap();
            let counts = d["Counts"].as_array().unwrap();
            values
                .iter()
                .zip(counts)
                .map(|(v, c)| v.as_f64().unwrap() * c.as_f64().unwrap())
                .sum::<f64>()
        })
        .sum()
}

/// Dry-run lines of `agent` until `more` more have come.
fn read_lines(agent: &Agent, lines: &mut Vec<Value>, more: usize) {
    let until = lines.len() + more;
    while lines.len() < until {
        let line = agent
            .stdout
            .recv_timeout(Duration::from_secs(10))
            .expect("a dry-run line a second");
        lines.push(serde_json::from_str(&line).unwrap());
    }
}

/// Dry-run lines of `agent` until one is of a window after `unix_secs`: every sample
/// taken before then is in `lines`.
fn read_past(agent: &Agent, lines: &mut Vec<Value>, unix_secs: u64) {
    use aws_smithy_types::DateTime;
    use aws_smithy_types::date_time::Format;
    loop {
        read_lines(agent, lines, 1);
        let at = lines.last().unwrap()["MetricData"][0]["Timestamp"]
            .as_str()
            .map(|t| DateTime::from_str(t, Format::DateTime).unwrap().secs());
        if at.is_some_and(|at| at > unix_secs as i64) {
            return;
        }
    }
}

/// Runs `agent`, writes with `write` once it has sampled, and returns what it published
/// with the counter `written` read around the write and around the whole run.
fn measure(mut agent: Agent, write: impl FnOnce(), written: impl Fn() -> u64) -> Measured {
    let start = written();
    let mut lines = Vec::new();
    read_lines(&agent, &mut lines, 2);
    let before = written();
    write();
    let after = written();
    read_past(&agent, &mut lines, common::unix_now() + 1);
    agent.signal("TERM");
    assert!(agent.wait(Duration::from_secs(5)).success());
    Measured {
        published: bytes_of(&lines, "StorageWriteBytes"),
        during_write: after - before,
        whole_run: written() - start,
    }
}

struct Measured {
    /// What the agent's rates add up to.
    published: f64,
    /// What the kernel counted while `dd` ran: at least what it wrote.
    during_write: u64,
    /// What the kernel counted from before the agent started to after it stopped.
    whole_run: u64,
}

impl Measured {
    /// The agent saw the write (its windows cover it) and nothing the kernel did not
    /// count; 10 % for the samples' intervals being a second give or take a tick.
    fn check(&self) {
        assert!(
            self.during_write >= WRITTEN,
            "dd reached the disk: {}",
            self.during_write
        );
        let published = self.published;
        assert!(
            published >= 0.9 * self.during_write as f64,
            "published {published} of the {} bytes written",
            self.during_write
        );
        assert!(
            published <= 1.1 * self.whole_run as f64 + MIB as f64,
            "published {published}, the kernel counted {}",
            self.whole_run
        );
    }
}

#[test]
fn host_storage_counts_a_direct_write_as_diskstats_does() {
    let _serial = serial();
    let Some((dir, disk)) = on_a_disk("host_storage") else {
        return;
    };
    let agent = dry_run_agent(&[], "host", "cpu,storage");
    let dd = dd(dir.path());
    let measured = measure(agent, || direct_write(sh(&dd)), || disk_written(&disk));
    measured.check();
}

/// The agent publishing `metrics` a second in `scope`, started by `launcher` (or alone).
fn dry_run_agent(launcher: &[&str], scope: &str, metrics: &str) -> Agent {
    let args = [
        "--namespace",
        "T",
        "-s",
        "web",
        "--period",
        "1",
        "--dry-run",
        "--scope",
        scope,
        "--metrics",
        metrics,
    ];
    Agent::spawn_via(launcher, &args, &[("RUST_LOG", "warn".to_owned())])
}

fn sh(command: &str) -> Command {
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(command);
    sh
}

#[test]
fn cgroup_v1_storage_counts_the_groups_own_direct_writes() {
    const TEST: &str = "cgroup_v1_storage";
    let _serial = serial();
    if !is_root() {
        common::skip(TEST, "creating cgroups needs root");
        return;
    }
    let name = format!("cwma-storage-{}", std::process::id());
    let group = match TestGroup::create_in(&name, &["cpu", "cpuacct", "memory", "blkio"]) {
        Ok(group) => group,
        Err(why) => {
            common::skip(TEST, &why);
            return;
        }
    };
    let Some((dir, disk)) = on_a_disk(TEST) else {
        return;
    };
    let launcher = group.launcher();
    let launcher: Vec<&str> = launcher.iter().map(String::as_str).collect();
    let file = group
        .dir("blkio")
        .join("blkio.throttle.io_service_bytes_recursive");
    // Kernels 6.x count a v1 group's bytes only on devices the group has a throttle
    // rule for. Without one the file lists no device, and the agent says so at the
    // default level (the test's RUST_LOG=warn shows no more than that). A device, once
    // listed, stays listed: a file that lists none after the agent's first document
    // listed none at its first read. (A kernel that lists devices anyway, or I/O that
    // the launcher caused, leaves nothing to say; the measurement below still runs.)
    let lists_a_device = || {
        fs::read_to_string(&file)
            .unwrap()
            .lines()
            .any(|l| l.split_whitespace().count() == 3)
    };
    let mut unruled = dry_run_agent(&launcher, "cgroup", "cpu,storage");
    unruled
        .stdout
        .recv_timeout(Duration::from_secs(10))
        .expect("a first document");
    if lists_a_device() {
        eprintln!("{TEST}: the group's blkio file lists a device already");
    } else {
        let said = unruled.wait_for_log(&["lists no device yet"], Duration::from_secs(10));
        assert!(said.starts_with("[ERROR"), "{said}");
    }
    unruled.signal("TERM");
    assert!(unruled.wait(Duration::from_secs(5)).success());
    // A limit far above the disk's speed, on the whole disk (rules take no partition),
    // as a deployment with I/O limits has (docs/metrics.md says so).
    let numbers = fs::read_to_string(format!("/sys/block/{disk}/dev")).unwrap();
    let rule = format!("{} 100000000000", numbers.trim());
    group.set("blkio", "blkio.throttle.write_bps_device", &rule);
    let charged = || -> u64 {
        let text = fs::read_to_string(&file).unwrap();
        text.lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Write"))
            .map(|l| l.split_whitespace().nth(2).unwrap().parse::<u64>().unwrap())
            .sum()
    };
    let agent = dry_run_agent(&launcher, "cgroup", "cpu,storage");
    let dd = dd(dir.path());
    let measured = measure(agent, || direct_write(group.shell(&dd)), charged);
    measured.check();
}

/// `/proc/net/dev` of the network namespace of `pid`: bytes received (`field` 0) or
/// sent (8) on `interface`.
fn counted_in_namespace_of(pid: u32, interface: &str, field: usize) -> u64 {
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "cat", "/proc/net/dev"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{interface}:")))
        .unwrap_or_else(|| panic!("{interface} in\n{text}"));
    let (_, counters) = line.split_once(':').unwrap();
    counters
        .split_whitespace()
        .nth(field)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn network_counts_a_udp_burst_out_of_its_namespace_and_leaves_out_loopback() {
    const TEST: &str = "network_namespace";
    let _serial = serial();
    if !is_root() {
        common::skip(TEST, "making network namespaces needs root");
        return;
    }
    // A namespace of its own with loopback and a veth pair: what is sent to 10.9.9.2
    // leaves by v0 (a fixed neighbour entry, no ARP) and arrives on v1, which has no
    // address and drops it: sent once, received once, both outside loopback.
    let setup = "ip link set lo up && ip link add v0 type veth peer name v1 && \
                 ip link set v1 address 02:00:00:00:00:02 && \
                 ip addr add 10.9.9.1/24 dev v0 && ip link set v0 up && ip link set v1 up && \
                 ip neigh add 10.9.9.2 lladdr 02:00:00:00:00:02 dev v0 && exec \"$@\"";
    let launcher = ["unshare", "-n", "sh", "-c", setup, "sh"];
    if Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        common::skip(TEST, "unshare -n does not work here");
        return;
    }
    let mut agent = dry_run_agent(&launcher, "host", "cpu,network");
    let pid = agent.pid();
    let mut lines = Vec::new();
    read_lines(&agent, &mut lines, 2);
    let counters =
        || [("v0", 8), ("v1", 0), ("lo", 8)].map(|(i, f)| counted_in_namespace_of(pid, i, f));
    let before = counters();
    // 2000 datagrams of 1000 bytes to the veth's network, as many to loopback.
    let burst = "import socket\n\
                 s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                 for _ in range(2000):\n\
                 \x20   s.sendto(b'x' * 1000, ('10.9.9.2', 9))\n\
                 \x20   s.sendto(b'x' * 1000, ('127.0.0.1', 9))\n";
    let status = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "python3", "-c", burst])
        .status()
        .unwrap();
    assert!(status.success());
    let after = counters();
    let [sent, received, looped] = [0, 1, 2].map(|i| after[i] - before[i]);
    read_past(&agent, &mut lines, common::unix_now() + 1);
    agent.signal("TERM");
    assert!(agent.wait(Duration::from_secs(5)).success());
    assert!(
        sent >= 2000 * 1000 && looped >= 2000 * 1000,
        "{sent} {looped}"
    );
    // Loopback carried as much again (counted sent and received on lo): none of it is
    // traffic of the machine's, and the agent's figures would be twice as high with it.
    // 10 kB for the IPv6 neighbour discovery of interfaces coming up.
    let within = |published: f64, counted: u64| {
        (0.9 * counted as f64..=1.1 * counted as f64 + 10_000.0).contains(&published)
    };
    let tx = bytes_of(&lines, "NetworkTxBytes");
    assert!(
        within(tx, sent),
        "published {tx} bytes sent; v0 counted {sent}"
    );
    let rx = bytes_of(&lines, "NetworkRxBytes");
    assert!(
        within(rx, received),
        "published {rx} bytes received; v1 counted {received}"
    );
}
