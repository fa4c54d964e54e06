//! Pure parsers for `/proc/stat` and `/proc/meminfo` (proc(5)), and the memory formula.
//! No I/O here: callers hand in the file's text. CPU use is a rate ([`super::rate`]).

use thiserror::Error;

use super::rate::Reading;

/// Why a `/proc` file's text could not be understood.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("no {0:?} line")]
    MissingLine(&'static str),
    #[error("{line:?} line has {found} numbers; at least {needed} expected")]
    TooFewFields {
        line: &'static str,
        found: usize,
        needed: usize,
    },
    #[error("{field}: {value:?} is not a whole number")]
    BadNumber { field: String, value: String },
}

/// Busy and total CPU time of the whole machine, in USER_HZ ticks since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    /// Every tick except idle and iowait: user, nice, system, irq, softirq, steal.
    pub busy: u64,
    /// busy + idle + iowait. Guest time is left out: the kernel already counts it in user
    /// and nice (proc(5), "guest"), so adding it would count it twice.
    pub total: u64,
}

/// What the agent uses of `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// The aggregate `cpu` line, over all CPUs.
    pub cpu: CpuTimes,
    /// Number of `cpuN` lines: the CPUs online when the file was read.
    pub online_cpus: usize,
}

/// Parses `/proc/stat`. Kernels before 2.6.11 have no steal column and before 2.6.24 no
/// guest columns; missing trailing columns count as zero.
pub fn parse_stat(text: &str) -> Result<Stat, ParseError> {
    const LINE: &str = "cpu";
    let mut cpu = None;
    let mut online_cpus = 0;
    // Once a second, so kept lean: no splitting of the per-CPU lines, which are counted.
    for line in text.split('\n') {
        match line.strip_prefix(LINE) {
            Some(rest) if rest.is_empty() || rest.starts_with([' ', '\t']) => {
                cpu = Some(parse_cpu_line(rest.split_ascii_whitespace())?);
            }
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => online_cpus += 1,
            // The cpu lines come first; what follows (the `intr` line alone can be tens
            // of kilobytes on a large machine) is not needed.
            _ if cpu.is_some() => break,
            _ => {}
        }
    }
    let cpu = cpu.ok_or(ParseError::MissingLine(LINE))?;
    Ok(Stat { cpu, online_cpus })
}

fn parse_cpu_line<'a>(words: impl Iterator<Item = &'a str>) -> Result<CpuTimes, ParseError> {
    // user nice system idle iowait irq softirq steal guest guest_nice
    let mut ticks = [0u64; 8];
    let mut found = 0;
    for (slot, word) in ticks.iter_mut().zip(words) {
        *slot = word.parse().map_err(|_| ParseError::BadNumber {
            field: format!("cpu column {}", found + 1),
            value: word.to_owned(),
        })?;
        found += 1;
    }
    if found < 4 {
        return Err(ParseError::TooFewFields {
            line: "cpu",
            found,
            needed: 4,
        });
    }
    let [user, nice, system, idle, iowait, irq, softirq, steal] = ticks;
    // Saturating: the kernel's counters fit, but the text may be anything.
    let sum = |parts: &[u64]| parts.iter().fold(0u64, |a, b| a.saturating_add(*b));
    let busy = sum(&[user, nice, system, irq, softirq, steal]);
    Ok(CpuTimes {
        busy,
        total: sum(&[busy, idle, iowait]),
    })
}

impl CpuTimes {
    /// Busy ticks over all ticks: the pair whose rate is the machine's CPU use.
    pub fn reading(&self) -> Reading {
        Reading {
            used: self.busy,
            span: self.total,
        }
    }
}

/// The `/proc/meminfo` fields the memory formula needs, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    pub total_kib: u64,
    pub free_kib: u64,
    pub buffers_kib: u64,
    pub cached_kib: u64,
    /// Absent before Linux 2.6.19; then counted as zero.
    pub sreclaimable_kib: Option<u64>,
}

impl MemInfo {
    /// Percent (0–100) of MemTotal in use, where used = MemTotal − MemFree − Buffers −
    /// Cached − SReclaimable: memory the kernel can hand back on demand is not "used".
    /// `None` for a MemTotal of 0, which no machine has.
    pub fn used_percent(&self) -> Option<f64> {
        if self.total_kib == 0 {
            return None;
        }
        Some(self.used_kib() as f64 / self.total_kib as f64 * 100.0)
    }

    /// KiB in use, by the formula of [`MemInfo::used_percent`].
    pub fn used_kib(&self) -> u64 {
        self.total_kib
            .saturating_sub(self.free_kib)
            .saturating_sub(self.buffers_kib)
            .saturating_sub(self.cached_kib)
            .saturating_sub(self.sreclaimable_kib.unwrap_or(0))
    }
}

/// Parses `/proc/meminfo` (`Key:   value kB` lines).
pub fn parse_meminfo(text: &str) -> Result<MemInfo, ParseError> {
    let (mut total, mut free, mut buffers, mut cached, mut sreclaimable) =
        (None, None, None, None, None);
    // Runs every second: a plain byte scan, as `lines()` and `split_once` call memchr,
    // whose set-up costs more than the scan itself on 30-byte lines.
    for line in text.as_bytes().split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (key, rest) = (&line[..colon], &line[colon + 1..]);
        let slot = match key {
            b"MemTotal" => &mut total,
            b"MemFree" => &mut free,
            b"Buffers" => &mut buffers,
            b"Cached" => &mut cached,
            b"SReclaimable" => &mut sreclaimable,
            _ => continue,
        };
        let value = rest.trim_ascii();
        let number = value.strip_suffix(b"kB").unwrap_or(value).trim_ascii_end();
        let parsed = std::str::from_utf8(number)
            .ok()
            .and_then(|n| n.parse().ok());
        *slot = Some(parsed.ok_or_else(|| ParseError::BadNumber {
            field: String::from_utf8_lossy(key).into_owned(),
            value: String::from_utf8_lossy(value).into_owned(),
        })?);
        // SReclaimable, the last needed, is about halfway down: skip the rest.
        if total.is_some()
            && free.is_some()
            && buffers.is_some()
            && cached.is_some()
            && sreclaimable.is_some()
        {
            break;
        }
    }
    let total_kib = total.ok_or(ParseError::MissingLine("MemTotal"))?;
    Ok(MemInfo {
        total_kib,
        free_kib: free.ok_or(ParseError::MissingLine("MemFree"))?,
        buffers_kib: buffers.ok_or(ParseError::MissingLine("Buffers"))?,
        cached_kib: cached.ok_or(ParseError::MissingLine("Cached"))?,
        sreclaimable_kib: sreclaimable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_2CPU: &str = include_str!("../../tests/fixtures/proc-2cpu/proc/stat");
    const STAT_64CPU: &str = include_str!("../../tests/fixtures/proc-64cpu/proc/stat");
    const MEMINFO: &str = include_str!("../../tests/fixtures/proc-2cpu/proc/meminfo");

    #[test]
    fn stat_with_two_cpus_sums_busy_without_idle_iowait_or_guest() {
        let stat = parse_stat(STAT_2CPU).unwrap();
        assert_eq!(stat.online_cpus, 2);
        // cpu  4705 150 1120 16250 520 0 27 0 6 0
        assert_eq!(stat.cpu.busy, 4705 + 150 + 1120 + 27);
        assert_eq!(stat.cpu.total, 4705 + 150 + 1120 + 16250 + 520 + 27);
    }

    #[test]
    fn stat_with_64_cpus_counts_every_cpu() {
        let stat = parse_stat(STAT_64CPU).unwrap();
        assert_eq!(stat.online_cpus, 64);
        assert!(stat.cpu.busy > 0 && stat.cpu.total > stat.cpu.busy);
    }

    #[test]
    fn stat_from_old_kernel_with_four_columns_parses() {
        let stat = parse_stat("cpu 10 20 30 40\ncpu0 10 20 30 40\n").unwrap();
        assert_eq!(
            stat.cpu,
            CpuTimes {
                busy: 60,
                total: 100
            }
        );
    }

    #[test]
    fn stat_errors_name_what_is_wrong() {
        assert_eq!(
            parse_stat("intr 1 2\n"),
            Err(ParseError::MissingLine("cpu"))
        );
        assert!(matches!(
            parse_stat("cpu 1 2 3\n"),
            Err(ParseError::TooFewFields { found: 3, .. })
        ));
        let err = parse_stat("cpu 1 2 x 4\n").unwrap_err().to_string();
        assert!(err.contains("\"x\""), "{err}");
    }

    #[test]
    fn memory_excludes_free_buffers_page_cache_and_reclaimable_slab() {
        let m = parse_meminfo(MEMINFO).unwrap();
        assert_eq!(
            m,
            MemInfo {
                total_kib: 16_000_000,
                free_kib: 6_000_000,
                buffers_kib: 500_000,
                cached_kib: 5_000_000,
                sreclaimable_kib: Some(500_000),
            }
        );
        assert_eq!(m.used_percent(), Some(25.0));
    }

    #[test]
    fn meminfo_without_sreclaimable_counts_it_as_zero() {
        let m =
            parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 0 kB\nCached: 400 kB\n")
                .unwrap();
        assert_eq!(m.sreclaimable_kib, None);
        assert_eq!(m.used_percent(), Some(50.0));
    }

    #[test]
    fn meminfo_never_reports_negative_use() {
        // Some kernels count shmem in Cached beyond what MemTotal − MemFree leaves.
        let m =
            parse_meminfo("MemTotal: 1000 kB\nMemFree: 600 kB\nBuffers: 100 kB\nCached: 400 kB\n")
                .unwrap();
        assert_eq!(m.used_percent(), Some(0.0));
        let zero = parse_meminfo("MemTotal: 0 kB\nMemFree: 0 kB\nBuffers: 0 kB\nCached: 0 kB\n");
        assert_eq!(
            zero.unwrap().used_percent(),
            None,
            "no machine has no memory"
        );
    }

    #[test]
    fn meminfo_errors_name_the_field() {
        assert_eq!(
            parse_meminfo("MemFree: 1 kB\n"),
            Err(ParseError::MissingLine("MemTotal"))
        );
        let err = parse_meminfo("MemTotal: lots kB\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("MemTotal") && err.contains("lots"), "{err}");
    }
}
