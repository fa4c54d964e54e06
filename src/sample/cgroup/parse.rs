//! Pure parsers for the files that locate and describe a cgroup: `/proc/self/cgroup`,
//! `/proc/self/mountinfo` (proc(5)), and the cgroup v1 and v2 interface files
//! (Documentation/admin-guide/cgroup-v2.rst, cgroup-v1/). No I/O here.

use crate::sample::procfs::ParseError;

/// One line of `/proc/self/cgroup`: `ID:CONTROLLERS:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// Comma-separated v1 controllers (`cpu,cpuacct`), `name=systemd`, or empty for v2.
    pub controllers: Vec<String>,
    /// Path of the cgroup relative to its hierarchy's root, e.g. `/docker/abc`.
    pub path: String,
}

impl Membership {
    /// The v2 (unified) line, `0::PATH`.
    pub fn is_unified(&self) -> bool {
        self.controllers.is_empty()
    }
}

/// Parses `/proc/self/cgroup`.
pub fn parse_self_cgroup(text: &str) -> Result<Vec<Membership>, ParseError> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_id, controllers, path) = (parts.next(), parts.next(), parts.next());
            match (controllers, path) {
                (Some(controllers), Some(path)) => Ok(Membership {
                    controllers: controllers
                        .split(',')
                        .filter(|c| !c.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    path: path.to_owned(),
                }),
                _ => Err(ParseError::BadNumber {
                    field: "cgroup line".into(),
                    value: line.to_owned(),
                }),
            }
        })
        .collect()
}

/// A cgroup filesystem mount from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// The hierarchy path that appears at the mount point: `/` normally, the container's
    /// own cgroup where a runtime bind-mounted it without a cgroup namespace.
    pub root: String,
    pub mount_point: String,
    /// `cgroup2`, or `cgroup` for a v1 hierarchy.
    pub fstype: String,
    /// v1 controllers of the hierarchy (from the super options), empty for v2.
    pub controllers: Vec<String>,
}

/// The cgroup and cgroup2 mounts of `/proc/self/mountinfo`. Each line is
/// `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS`.
pub fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let theirs: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(mount_point), Some(fstype)) =
            (fields.get(3), fields.get(4), theirs.first())
        else {
            continue;
        };
        if *fstype != "cgroup" && *fstype != "cgroup2" {
            continue;
        }
        let controllers = match (*fstype, theirs.get(2)) {
            ("cgroup", Some(options)) => options
                .split(',')
                .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains('='))
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        mounts.push(CgroupMount {
            root: unescape(root),
            mount_point: unescape(mount_point),
            fstype: (*fstype).to_owned(),
            controllers,
        });
    }
    mounts
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A value from a flat-keyed file (`cpu.stat`, `memory.stat`: `key value` lines).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// A single-number file; `max` (v2, no limit) is `Ok(None)`.
pub fn number_or_max(text: &str) -> Result<Option<u64>, ParseError> {
    let text = text.trim();
    if text == "max" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| ParseError::BadNumber {
        field: "value".into(),
        value: text.to_owned(),
    })
}

/// A signed single-number file (v1 `cpu.cfs_quota_us` is -1 for "no quota").
pub fn signed(text: &str) -> Result<i64, ParseError> {
    let text = text.trim();
    text.parse().map_err(|_| ParseError::BadNumber {
        field: "value".into(),
        value: text.to_owned(),
    })
}

/// v2 `cpu.max`: `QUOTA PERIOD` in µs, or `max PERIOD`. Returns the limit in CPUs.
pub fn cpu_max(text: &str) -> Result<Option<f64>, ParseError> {
    let mut words = text.split_whitespace();
    let bad = || ParseError::BadNumber {
        field: "cpu.max".into(),
        value: text.trim().to_owned(),
    };
    let quota = words.next().ok_or_else(bad)?;
    let period: u64 = words
        .next()
        .unwrap_or("100000")
        .parse()
        .map_err(|_| bad())?;
    if quota == "max" {
        return Ok(None);
    }
    let quota: u64 = quota.parse().map_err(|_| bad())?;
    Ok((period > 0).then(|| quota as f64 / period as f64))
}

/// Number of CPUs in a cpuset list such as `0-3,8,10-11`.
pub fn cpuset_count(text: &str) -> Result<usize, ParseError> {
    let bad = || ParseError::BadNumber {
        field: "cpuset".into(),
        value: text.trim().to_owned(),
    };
    let mut count: usize = 0;
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let n = match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                b.checked_sub(a).ok_or_else(bad)?.saturating_add(1)
            }
            None => {
                part.parse::<usize>().map_err(|_| bad())?;
                1
            }
        };
        count = count.saturating_add(n);
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_cgroup_lists_v1_controllers_and_the_unified_line() {
        let text = "12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n1:name=systemd:/x\n0::/\n";
        let m = parse_self_cgroup(text).unwrap();
        assert_eq!(m[0].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(m[0].path, "/docker/abc");
        assert!(m[3].is_unified() && m[3].path == "/");
        assert!(!m[2].is_unified());
    }

    #[test]
    fn mountinfo_finds_cgroup_mounts_with_their_roots_and_controllers() {
        let text = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro,nosuid master:12 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/my\\040cg rw,relatime - cgroup2 cgroup2 rw,nsdelegate
";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].root, "/docker/abc");
        assert_eq!(m[0].mount_point, "/sys/fs/cgroup/cpu,cpuacct");
        assert_eq!(m[0].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(m[2].controllers, vec!["xattr"]);
        assert_eq!(
            (m[3].fstype.as_str(), m[3].mount_point.as_str()),
            ("cgroup2", "/sys/fs/my cg")
        );
    }

    #[test]
    fn cpu_max_is_quota_over_period_or_none() {
        assert_eq!(cpu_max("50000 100000\n").unwrap(), Some(0.5));
        assert_eq!(cpu_max("200000 100000").unwrap(), Some(2.0));
        assert_eq!(cpu_max("max 100000\n").unwrap(), None);
        assert!(cpu_max("lots").is_err());
    }

    #[test]
    fn cpusets_count_ranges_and_singles() {
        assert_eq!(cpuset_count("0-3,8,10-11\n").unwrap(), 7);
        assert_eq!(cpuset_count("0").unwrap(), 1);
        assert!(cpuset_count("3-1").is_err());
    }

    #[test]
    fn keyed_files_and_max() {
        let stat = "usage_usec 1500\nuser_usec 1000\nnr_periods 10\n";
        assert_eq!(keyed(stat, "usage_usec"), Some(1500));
        assert_eq!(keyed(stat, "user"), None);
        assert_eq!(number_or_max("max\n").unwrap(), None);
        assert_eq!(number_or_max("268435456\n").unwrap(), Some(268_435_456));
        assert_eq!(signed("-1\n").unwrap(), -1);
    }
}
