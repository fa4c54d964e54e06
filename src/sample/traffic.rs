//! Network and block device traffic in the host and cgroup scopes (`--metrics network`,
//! `storage`): bytes a second, from the kernel's cumulative byte counters read once a
//! sample, over the agent's own monotonic clock.
//!
//! - network: `/proc/net/dev` of the agent's network namespace (a container's or task's
//!   own; the host's on a host), every interface but `lo`, whose traffic never leaves;
//! - storage on a host: `/proc/diskstats`, sectors of 512 bytes (the kernel's unit there
//!   whatever the device's, Documentation/admin-guide/iostats.rst), over whole physical
//!   devices only ([`whole_devices`]), so that a partition, a device-mapper or md volume
//!   and the disk under it are not counted twice;
//! - storage in a cgroup: v2 `io.stat` (`rbytes`, `wbytes`), v1
//!   `blkio.throttle.io_service_bytes_recursive` (`Read`, `Write`), over every device.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::kernel::Unavailable;
use super::procfs::ParseError;
use super::rate::{self, Reading};
use super::{ProcFile, Sample, SampleError};
use crate::domain::{Metric, MetricSet};

/// Bytes of a `/proc/diskstats` sector.
const SECTOR_BYTES: u64 = 512;
/// Devices whose I/O lands on another device or in memory: loop devices write to a file
/// of a real disk, RAM disks and zram to memory.
const VIRTUAL_DEVICES: [&str; 3] = ["loop", "ram", "zram"];

/// Two byte counters of one file: received and sent, or read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bytes {
    pub inbound: u64,
    pub outbound: u64,
}

/// A counter of one of these files: `text` as a number, or an error naming `field`.
fn number(field: impl FnOnce() -> String, text: &str) -> Result<u64, ParseError> {
    text.parse().map_err(|_| ParseError::BadNumber {
        field: field(),
        value: text.to_owned(),
    })
}

/// `/proc/net/dev`'s interfaces but `lo`, each with its bytes received and sent.
pub fn net_dev_interfaces(text: &str) -> impl Iterator<Item = Result<(&str, Bytes), ParseError>> {
    // Two header lines, then `name: rx_bytes rx_packets … (8 receive fields) tx_bytes …`.
    text.lines()
        .skip(2)
        .map(|line| {
            let (name, counters) = line
                .split_once(':')
                .ok_or(ParseError::MissingLine("interface: counters"))?;
            let name = name.trim();
            let mut fields = counters.split_whitespace();
            let mut field = |skip: usize, what: &'static str| -> Result<u64, ParseError> {
                let text = fields.nth(skip).ok_or(ParseError::MissingLine(what))?;
                number(|| format!("{name} {what}"), text)
            };
            let inbound = field(0, "rx_bytes")?;
            let outbound = field(7, "tx_bytes")?;
            Ok((name, Bytes { inbound, outbound }))
        })
        .filter(|r| !matches!(r, Ok(("lo", _))))
}

/// Sums `/proc/diskstats`'s sectors read (field 6) and written (field 10) of `devices`,
/// as bytes.
pub fn parse_diskstats(text: &str, devices: &[String]) -> Result<Bytes, ParseError> {
    let mut total = Bytes::default();
    // Fields are taken as they come (no list per line): read every second.
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(name) = fields.nth(2) else { continue };
        if !devices.iter().any(|d| d == name) {
            continue;
        }
        // `skip` fields after the last one taken, then field `i` (0-based).
        let mut field = |skip: usize, i: usize| -> Result<u64, ParseError> {
            let text = fields
                .nth(skip)
                .ok_or(ParseError::MissingLine("sectors written"))?;
            let sectors = number(|| format!("{name} field {}", i + 1), text)?;
            Ok(sectors.saturating_mul(SECTOR_BYTES))
        };
        let read = field(2, 5)?;
        let written = field(3, 9)?;
        total.inbound = total.inbound.saturating_add(read);
        total.outbound = total.outbound.saturating_add(written);
    }
    Ok(total)
}

/// Sums cgroup v2 `io.stat`'s `rbytes` and `wbytes` over its devices
/// (`8:0 rbytes=… wbytes=… rios=… wios=… dbytes=… dios=…`).
pub fn parse_io_stat(text: &str) -> Result<Bytes, ParseError> {
    let mut total = Bytes::default();
    for pair in text.lines().flat_map(|l| l.split_whitespace().skip(1)) {
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        let slot = match key {
            "rbytes" => &mut total.inbound,
            "wbytes" => &mut total.outbound,
            _ => continue,
        };
        *slot = slot.saturating_add(number(|| key.to_owned(), value)?);
    }
    Ok(total)
}

/// Sums cgroup v1 `blkio.throttle.io_service_bytes`' `Read` and `Write` lines over its
/// devices (`8:0 Read 4096`; the `Total` line and the other operations left out).
pub fn parse_blkio_service_bytes(text: &str) -> Result<Bytes, ParseError> {
    let mut total = Bytes::default();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(_), Some(op), Some(value), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let slot = match op {
            "Read" => &mut total.inbound,
            "Write" => &mut total.outbound,
            _ => continue,
        };
        *slot = slot.saturating_add(number(|| op.to_owned(), value)?);
    }
    Ok(total)
}

/// The whole physical block devices under `<root>/sys/block`, as `/proc/diskstats` names
/// them: partitions are not there (they are subdirectories of their disk), and loop, RAM
/// and zram devices and those stacked on others (with entries in `slaves/`: device-mapper,
/// md) are left out, so each byte is counted at the one device that stores it.
pub fn whole_devices(root: &Path) -> Result<Vec<String>, String> {
    let dir = root.join("sys/block");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut devices: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_owned();
            let stacked = std::fs::read_dir(entry.path().join("slaves"))
                .is_ok_and(|mut slaves| slaves.next().is_some());
            let virtual_device = VIRTUAL_DEVICES.iter().any(|v| {
                name.strip_prefix(v)
                    .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
            });
            // sysfs writes `/` in a device name as `!` (cciss!c0d0).
            (!stacked && !virtual_device).then(|| name.replace('!', "/"))
        })
        .collect();
    devices.sort();
    Ok(devices)
}

/// Where a scope's traffic counters are, or why it has none.
#[derive(Debug, Clone)]
pub struct Places {
    /// `/proc/net/dev` of the agent's network namespace, and `/sys/class/net`.
    pub network: Result<(PathBuf, PathBuf), String>,
    /// A file of block I/O byte counters, and its shape.
    pub storage: Result<(PathBuf, Shape), String>,
}

/// What a counters file looks like.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// `/proc/diskstats`, over these whole devices.
    Diskstats(Vec<String>),
    /// cgroup v2 `io.stat`.
    IoStat,
    /// cgroup v1 `blkio.throttle.io_service_bytes(_recursive)`.
    Blkio,
}

impl Shape {
    fn parse(&self, text: &str) -> Result<Bytes, ParseError> {
        match self {
            Shape::Diskstats(devices) => parse_diskstats(text, devices),
            Shape::IoStat => parse_io_stat(text),
            Shape::Blkio => parse_blkio_service_bytes(text),
        }
    }
}

impl Places {
    /// The host's: the agent's network namespace and its whole devices.
    pub fn host(root: &Path) -> Places {
        Places {
            network: Ok(network_files(root)),
            storage: whole_devices(root)
                .map(|devices| (root.join("proc/diskstats"), Shape::Diskstats(devices))),
        }
    }
}

/// `/proc/net/dev` and `/sys/class/net` under `root`.
pub fn network_files(root: &Path) -> (PathBuf, PathBuf) {
    (root.join("proc/net/dev"), root.join("sys/class/net"))
}

/// The interfaces of `/proc/net/dev`, each with its last reading. Bytes are counted at
/// the interfaces that are devices (`/sys/class/net/<name>/device`: a NIC, virtio, ENA),
/// so that what crosses a bridge, a container's veth or a VLAN on its way out is not
/// counted again; where none is a device (a container's namespace: its veth alone),
/// every interface but `lo`. Each is differenced on its own: one that comes or goes
/// changes no other's figure.
#[derive(Debug)]
struct NetworkCounters {
    file: ProcFile,
    /// `/sys/class/net`.
    sys: PathBuf,
    interfaces: Vec<Interface>,
    /// When the last reading was taken (ns since the origin).
    at: Option<u64>,
}

#[derive(Debug)]
struct Interface {
    name: String,
    last: Bytes,
    /// Bytes since the reading before; 0 for a new interface or a counter that went back.
    delta: Bytes,
    device: bool,
    seen: bool,
}

impl NetworkCounters {
    fn new((file, sys): (PathBuf, PathBuf)) -> Self {
        NetworkCounters {
            file: ProcFile::new(file),
            sys,
            interfaces: Vec::new(),
            at: None,
        }
    }

    /// Bytes a second received and sent since the last reading; `None` for the first.
    fn rates(&mut self, now: u64) -> Result<Option<(f64, f64)>, SampleError> {
        let (text, path) = self.file.read()?;
        for i in &mut self.interfaces {
            i.seen = false;
        }
        for parsed in net_dev_interfaces(text) {
            let (name, bytes) = parsed.map_err(|source| SampleError::Parse {
                path: path.to_owned(),
                source,
            })?;
            match self.interfaces.iter_mut().find(|i| i.name == name) {
                Some(i) => {
                    i.delta = Bytes {
                        inbound: bytes.inbound.saturating_sub(i.last.inbound),
                        outbound: bytes.outbound.saturating_sub(i.last.outbound),
                    };
                    i.last = bytes;
                    i.seen = true;
                }
                None => self.interfaces.push(Interface {
                    name: name.to_owned(),
                    last: bytes,
                    delta: Bytes::default(),
                    device: self.sys.join(name).join("device").exists(),
                    seen: true,
                }),
            }
        }
        self.interfaces.retain(|i| i.seen);
        let devices = self.interfaces.iter().any(|i| i.device);
        let (inbound, outbound) = self
            .interfaces
            .iter()
            .filter(|i| i.device || !devices)
            .fold((0u64, 0u64), |(rx, tx), i| {
                (
                    rx.saturating_add(i.delta.inbound),
                    tx.saturating_add(i.delta.outbound),
                )
            });
        // The deltas are summed over the interfaces already: as counters from 0.
        let Some(at) = self.at.replace(now) else {
            return Ok(None);
        };
        let rate = |bytes| {
            bytes_per_second(
                Reading { used: 0, span: at },
                Reading {
                    used: bytes,
                    span: now,
                },
            )
        };
        Ok(rate(inbound).zip(rate(outbound)))
    }
}

/// One file of two byte counters, opened once, with its last reading.
#[derive(Debug)]
struct Counters {
    file: ProcFile,
    shape: Shape,
    /// The last reading: bytes in and out at nanoseconds since the origin.
    prev: Option<(Reading, Reading)>,
}

impl Counters {
    fn new(path: PathBuf, shape: Shape) -> Self {
        Counters {
            file: ProcFile::new(path),
            shape,
            prev: None,
        }
    }

    fn read(&mut self) -> Result<Bytes, SampleError> {
        let (text, path) = self.file.read()?;
        // At the first reading: a cgroup v1 blkio file that lists no device at all. On
        // recent kernels (seen on 6.x) a v1 group's throttle statistics count only I/O
        // to devices the group has a throttle rule for, so the figures may stay 0
        // whatever the group does. Said once.
        if self.prev.is_none()
            && self.shape == Shape::Blkio
            && !text.lines().any(|l| l.split_whitespace().count() == 3)
        {
            log::error!(
                "{} lists no device yet: this kernel may count a cgroup v1 group's I/O only \
                 on devices with a blkio.throttle rule for the group, so StorageReadBytes \
                 and StorageWriteBytes may stay 0 (cgroup v2's io.stat has no such limit)",
                path.display()
            );
        }
        self.shape.parse(text).map_err(|source| SampleError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Bytes a second in and out since the last reading; `None` for the first, or when a
    /// counter went back (an interface or device removed, a cgroup recreated): the next
    /// interval counts from the new reading.
    fn rates(&mut self, now: u64) -> Result<Option<(f64, f64)>, SampleError> {
        let bytes = self.read()?;
        let cur = (
            Reading {
                used: bytes.inbound,
                span: now,
            },
            Reading {
                used: bytes.outbound,
                span: now,
            },
        );
        let rates = self.prev.and_then(|(prev_in, prev_out)| {
            bytes_per_second(prev_in, cur.0).zip(bytes_per_second(prev_out, cur.1))
        });
        self.prev = Some(cur);
        Ok(rates)
    }
}

/// The traffic counters a scope reads each sample, where asked for.
#[derive(Debug, Default)]
pub struct TrafficFiles {
    network: Option<NetworkCounters>,
    storage: Option<Counters>,
    /// Rates are over the agent's monotonic clock, from here.
    origin: Option<Instant>,
}

impl TrafficFiles {
    /// Opens what `wanted` asks for at `places`, reading each once (the baseline of its
    /// counters), and says what cannot be measured.
    pub fn open(places: &Places, wanted: MetricSet) -> (TrafficFiles, Vec<Unavailable>) {
        let origin = Instant::now();
        let now = nanos_since(origin);
        // Opened, and read once for the baseline; or why not.
        fn baseline<C>(
            counters: Result<C, String>,
            rates: impl FnOnce(&mut C) -> Result<Option<(f64, f64)>, SampleError>,
        ) -> Result<C, String> {
            let mut counters = counters?;
            rates(&mut counters).map_err(|e| e.to_string())?;
            Ok(counters)
        }
        let mut unavailable = Vec::new();
        let mut said = |metric, reason| unavailable.push(Unavailable { metric, reason });
        let network = if wanted.contains(Metric::NetworkRx) {
            let files = places.network.clone().map(NetworkCounters::new);
            baseline(files, |c| c.rates(now))
                .map_err(|reason| said(Metric::NetworkRx, reason))
                .ok()
        } else {
            None
        };
        let storage = if wanted.contains(Metric::StorageRead) {
            let file = places
                .storage
                .clone()
                .map(|(path, shape)| Counters::new(path, shape));
            baseline(file, |c| c.rates(now))
                .map_err(|reason| said(Metric::StorageRead, reason))
                .ok()
        } else {
            None
        };
        let files = TrafficFiles {
            network,
            storage,
            origin: Some(origin),
        };
        (files, unavailable)
    }

    /// Reads each open file into `sample`; a failed read costs its metrics.
    pub fn sample_into(&mut self, sample: &mut Sample) {
        let Some(origin) = self.origin else { return };
        let now = nanos_since(origin);
        if let Some(network) = &mut self.network {
            match network.rates(now) {
                Ok(rates) => (sample.network_rx, sample.network_tx) = rates.unzip(),
                Err(e) => sample.errors.push(e),
            }
        }
        if let Some(storage) = &mut self.storage {
            match storage.rates(now) {
                Ok(rates) => (sample.storage_read, sample.storage_write) = rates.unzip(),
                Err(e) => sample.errors.push(e),
            }
        }
    }
}

/// Bytes a second between two readings of a byte counter over nanoseconds; `None` across
/// a counter that went back or no time at all.
fn bytes_per_second(prev: Reading, cur: Reading) -> Option<f64> {
    rate::ratio(prev, cur).ok().map(|r| r * 1e9)
}

fn nanos_since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    // From prometheus/node_exporter collector/fixtures/proc/net/dev (shape), with round
    // numbers: lo is left out, the others add up.
    const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 386525250  218558    0    0    0     0          0         0 386525250  218558    0    0    0     0       0          0
  eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0
docker0:30 1 0 0 0 0 0 0 40 1 0 0 0 0 0 0
";

    #[test]
    fn net_dev_lists_every_interface_but_loopback() {
        let parsed: Vec<(&str, Bytes)> = net_dev_interfaces(NET_DEV).map(Result::unwrap).collect();
        let bytes = |inbound, outbound| Bytes { inbound, outbound };
        assert_eq!(
            parsed,
            [("eth0", bytes(1000, 2000)), ("docker0", bytes(30, 40))]
        );
        let no_colon = "h\nh\neth0 1 2 3\n";
        assert!(net_dev_interfaces(no_colon).any(|r| r.is_err()));
        let no_transmit = "h\nh\neth0: 1 2\n";
        assert!(net_dev_interfaces(no_transmit).any(|r| r.is_err()));
    }

    /// A `/proc/net/dev` of these interfaces' counters.
    fn net_dev(interfaces: &[(&str, u64, u64)]) -> String {
        let mut text = String::from("Inter-|\n face |\n");
        for (name, rx, tx) in interfaces {
            text += &format!("{name}: {rx} 0 0 0 0 0 0 0 {tx} 0 0 0 0 0 0 0\n");
        }
        text
    }

    #[test]
    fn network_counts_devices_only_and_each_interface_on_its_own() {
        let root = tempfile::tempdir().unwrap();
        let (file, sys) = network_files(root.path());
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        // eth0 is a device; docker0 and a container's veth carry the same bytes again.
        std::fs::create_dir_all(sys.join("eth0/device")).unwrap();
        let write =
            |interfaces: &[(&str, u64, u64)]| std::fs::write(&file, net_dev(interfaces)).unwrap();
        let mut counters = NetworkCounters::new((file.clone(), sys));
        write(&[
            ("lo", 0, 0),
            ("eth0", 1000, 500),
            ("docker0", 0, 0),
            ("veth1", 0, 0),
        ]);
        assert_eq!(counters.rates(0).unwrap(), None, "a baseline");
        write(&[
            ("lo", 9, 9),
            ("eth0", 3000, 1500),
            ("docker0", 900, 900),
            ("veth1", 900, 900),
        ]);
        assert_eq!(
            counters.rates(2_000_000_000).unwrap(),
            Some((1000.0, 500.0))
        );
        // A veth leaves, another comes with a lifetime's bytes: eth0's figure alone.
        write(&[
            ("eth0", 4000, 2500),
            ("docker0", 900, 900),
            ("veth2", 1 << 40, 1 << 40),
        ]);
        assert_eq!(
            counters.rates(3_000_000_000).unwrap(),
            Some((1000.0, 1000.0))
        );
        // eth0's counters going back (the driver reloaded) count 0, never negative.
        write(&[("eth0", 10, 10), ("docker0", 900, 900)]);
        assert_eq!(counters.rates(4_000_000_000).unwrap(), Some((0.0, 0.0)));
    }

    #[test]
    fn in_a_namespace_without_devices_every_interface_but_loopback_counts() {
        let root = tempfile::tempdir().unwrap();
        let (file, sys) = network_files(root.path());
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let mut counters = NetworkCounters::new((file.clone(), sys));
        std::fs::write(
            &file,
            net_dev(&[("lo", 0, 0), ("eth0", 0, 0), ("eth1", 0, 0)]),
        )
        .unwrap();
        counters.rates(0).unwrap();
        std::fs::write(
            &file,
            net_dev(&[("lo", 5000, 5000), ("eth0", 100, 0), ("eth1", 100, 50)]),
        )
        .unwrap();
        assert_eq!(counters.rates(1_000_000_000).unwrap(), Some((200.0, 50.0)));
    }

    #[test]
    fn diskstats_counts_512_byte_sectors_of_the_devices_named() {
        // Kernel 4.18+ layout (20 fields with discard and flush); vda1 is a partition.
        let text = "\
 254       0 vda 3738896 119562 165307698 7555095 250171 675019 314735688 1837916 0 346072 9465377 438519 32 268736592 72089 5426 275
 254       1 vda1 100 0 2000 0 50 0 4000 0 0 0 0 0 0 0 0 0 0
   7       0 loop0 1 0 8 0 0 0 0 0 0 0 0 0 0 0 0 0 0
";
        let devices = vec!["vda".to_owned()];
        assert_eq!(
            parse_diskstats(text, &devices),
            Ok(Bytes {
                inbound: 165_307_698 * 512,
                outbound: 314_735_688 * 512
            })
        );
        assert_eq!(parse_diskstats(text, &[]), Ok(Bytes::default()));
    }

    #[test]
    fn io_stat_and_blkio_sum_bytes_over_devices() {
        // cgroup-v2.rst's io.stat example.
        let v2 = "8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n\
                  8:0 rbytes=90430464 wbytes=299008000 rios=8950 wios=1252 dbytes=50331648 dios=3021\n";
        assert_eq!(
            parse_io_stat(v2),
            Ok(Bytes {
                inbound: 1_459_200 + 90_430_464,
                outbound: 314_773_504 + 299_008_000
            })
        );
        let v1 = "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 8192\n8:0 Async 4096\n\
                  8:0 Discard 0\n8:0 Total 12288\n8:16 Read 1\n8:16 Write 2\nTotal 12291\n";
        assert_eq!(
            parse_blkio_service_bytes(v1),
            Ok(Bytes {
                inbound: 4097,
                outbound: 8194
            })
        );
        assert!(parse_io_stat("8:0 rbytes=x\n").is_err());
    }

    #[test]
    fn whole_devices_leave_out_partitions_virtual_and_stacked_devices() {
        let root = tempfile::tempdir().unwrap();
        let block = root.path().join("sys/block");
        for dir in [
            "nvme0n1/slaves",
            "nvme0n1/nvme0n1p1",
            "dm-0/slaves/nvme0n1",
            "loop0/slaves",
            "zram0",
            "cciss!c0d0",
        ] {
            std::fs::create_dir_all(block.join(dir)).unwrap();
        }
        assert_eq!(
            whole_devices(root.path()).unwrap(),
            ["cciss/c0d0", "nvme0n1"]
        );
        assert!(whole_devices(&root.path().join("none")).is_err());
    }

    #[test]
    fn rates_are_bytes_a_second_and_a_counter_going_back_is_no_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("io.stat");
        std::fs::write(&path, "8:0 rbytes=1000 wbytes=0\n").unwrap();
        let mut counters = Counters::new(path.clone(), Shape::IoStat);
        assert_eq!(counters.rates(0).unwrap(), None, "a baseline");
        std::fs::write(&path, "8:0 rbytes=3000 wbytes=500\n").unwrap();
        assert_eq!(
            counters.rates(2_000_000_000).unwrap(),
            Some((1000.0, 250.0))
        );
        std::fs::write(&path, "8:0 rbytes=10 wbytes=500\n").unwrap();
        assert_eq!(counters.rates(3_000_000_000).unwrap(), None, "went back");
        std::fs::write(&path, "8:0 rbytes=110 wbytes=600\n").unwrap();
        assert_eq!(counters.rates(4_000_000_000).unwrap(), Some((100.0, 100.0)));
    }
}
