//! Property tests: every parser and every rate computation, driven with arbitrary input.
//! Whatever the input, nothing panics, and every value produced is finite and within
//! 0–100. They run in the default test command with a fixed seed and 2,000 cases each;
//! for a longer hunt:
//!
//! ```sh
//! PROPTEST_CASES=200000 PROPTEST_RNG_SEED=$RANDOM cargo test --release --lib properties
//! ```

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use crate::aggregate::Aggregator;
use crate::domain::{Dimension, Metric, MetricSet};
use crate::sample::Machine;
use crate::sample::cgroup::{parse, source};
use crate::sample::ecs::metadata::{Stats, Task};
use crate::sample::ecs::tracker::Tracker;
use crate::sample::rate::{self, Reading};
use crate::sample::{Sample, mach, procfs};

/// 2,000 cases and a fixed seed, unless `PROPTEST_CASES` / `PROPTEST_RNG_SEED` say
/// otherwise; nothing is written to the source tree.
fn config() -> Config {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    Config {
        cases: env("PROPTEST_CASES").map_or(2_000, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        rng_seed: RngSeed::Fixed(env("PROPTEST_RNG_SEED").unwrap_or(0x0c10_0d3a)),
        failure_persistence: None,
        ..Config::default()
    }
}

/// A percentage as the agent may publish it.
fn in_range(value: Option<f64>) -> Result<(), TestCaseError> {
    if let Some(v) = value {
        prop_assert!(v.is_finite() && (0.0..=100.0).contains(&v), "{v}");
    }
    Ok(())
}

/// Text that looks like what the parsers read: lines of words and numbers (the edges of
/// u64 included), and now and then anything at all.
fn procish() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        Just(u64::MAX.to_string()),
        Just("18446744073709551616".to_owned()),
        Just("-1".to_owned()),
        "[0-9]{1,3}",
    ];
    let word = prop_oneof![
        Just("cpu".to_owned()),
        Just("cpu0".to_owned()),
        Just("MemTotal:".to_owned()),
        Just("MemFree:".to_owned()),
        Just("Buffers:".to_owned()),
        Just("Cached:".to_owned()),
        Just("SReclaimable:".to_owned()),
        Just("kB".to_owned()),
        Just("max".to_owned()),
        "[a-z_:]{1,8}",
    ];
    let token = prop_oneof![number, word];
    let line = prop::collection::vec(token, 0..12).prop_map(|t| t.join(" "));
    prop_oneof![
        8 => prop::collection::vec(line, 0..12).prop_map(|l| l.join("\n")),
        1 => any::<String>(),
    ]
}

/// Runs `property` over `strategy` with [`config`], and fails unless at least half of
/// the cases reached its assertion (the property returns whether this one did): a
/// generator whose input is almost never well-formed proves "no panic" and nothing else.
fn reaching_half<S: Strategy>(
    strategy: S,
    property: impl Fn(S::Value) -> Result<bool, TestCaseError>,
) {
    let config = config();
    let cases = config.cases;
    let reached = std::cell::Cell::new(0u32);
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let outcome = runner.run(&strategy, |value| {
        if property(value)? {
            reached.set(reached.get() + 1);
        }
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
    assert!(
        reached.get() * 2 >= cases,
        "only {} of {cases} cases reached the assertion",
        reached.get()
    );
}

/// A number as `/proc` may show it: mostly of a size a machine reaches, now and then
/// any u64 and the edges.
fn counter() -> impl Strategy<Value = u64> {
    prop_oneof![
        16 => 0..(1u64 << 50),
        2 => any::<u64>(),
        1 => Just(u64::MAX),
        1 => Just(0u64),
    ]
}

/// Two `/proc/stat` texts a second apart, as the kernel writes them (the aggregate `cpu`
/// line of eight or ten columns, per-CPU lines, `intr`), the second's counters moved
/// forward by arbitrary amounts, except now and then idle and iowait (CPU hot-unplug
/// moves them back, which can make busy time outgrow the total); one in five is anything.
fn proc_stat_pair() -> impl Strategy<Value = (String, String)> {
    let text = |ticks: &[u64]| {
        let columns: Vec<String> = ticks.iter().map(u64::to_string).collect();
        format!(
            "cpu  {} 0 0\ncpu0 {}\ncpu1 {}\nintr 12345 0 0\nctxt 999\nbtime 1700000000\n",
            columns.join(" "),
            columns.join(" "),
            columns.join(" ")
        )
    };
    // A machine's counters in most cases; in some, any u64 and the edges.
    let columns = prop_oneof![
        4 => prop::collection::vec(0..(1u64 << 50), 8),
        1 => prop::collection::vec(counter(), 8),
    ];
    let well_formed = (
        columns,
        prop::collection::vec(0u64..10_000_000, 8),
        prop::bool::weighted(0.25),
    )
        .prop_map(move |(before, step, back)| {
            let after: Vec<u64> = before
                .iter()
                .zip(&step)
                .enumerate()
                .map(|(i, (b, d))| match i {
                    // idle and iowait, back by less than the rest moved forward
                    3 | 4 if back => b.saturating_sub(d / 8),
                    _ => b.saturating_add(*d),
                })
                .collect();
            (text(&before), text(&after))
        });
    prop_oneof![4 => well_formed, 1 => (procish(), procish())]
}

/// `/proc/meminfo` as the kernel writes it (a `Key:   value kB` line each, in its order,
/// with lines the agent skips), with arbitrary numbers: free, buffers, cache and
/// reclaimable slab may add up past the total, as they never do on a real machine; one
/// in five is anything.
fn meminfo() -> impl Strategy<Value = String> {
    let well_formed = prop::collection::vec(counter(), 6).prop_map(|kib| {
        format!(
            "MemTotal:       {} kB\nMemFree:        {} kB\nMemAvailable:   {} kB\n\
             Buffers:        {} kB\nCached:         {} kB\nSwapCached:            0 kB\n\
             Active:          1234 kB\nSReclaimable:   {} kB\nHugePagesize:       2048 kB\n",
            kib[0] >> 10,
            kib[1] >> 12,
            kib[2] >> 10,
            kib[3] >> 12,
            kib[4] >> 12,
            kib[5] >> 12
        )
    });
    prop_oneof![4 => well_formed, 1 => procish()]
}

fn reading() -> impl Strategy<Value = Reading> {
    (any::<u64>(), any::<u64>()).prop_map(|(used, span)| Reading { used, span })
}

#[test]
fn proc_stat_host_cpu_stays_within_0_100() {
    reaching_half(proc_stat_pair(), |(a, b)| {
        let (Ok(a), Ok(b)) = (procfs::parse_stat(&a), procfs::parse_stat(&b)) else {
            return Ok(false);
        };
        let cpu = rate::ratio(a.cpu.reading(), b.cpu.reading())
            .ok()
            .and_then(|r| rate::percent_of(r, 1.0));
        in_range(cpu)?;
        Ok(cpu.is_some())
    });
}

#[test]
fn meminfo_memory_stays_within_0_100() {
    reaching_half(meminfo(), |text| {
        let Ok(info) = procfs::parse_meminfo(&text) else {
            return Ok(false);
        };
        let used = info.used_percent();
        in_range(used)?;
        Ok(used.is_some())
    });
}

/// Names and values of the characters CloudWatch allows, of lengths around its limits,
/// and now and then anything: every accepted dimension keeps the rules.
#[test]
fn dimensions_are_validated() {
    let allowed = "[A-Za-z0-9 ._#/@:+=-]";
    let name = prop_oneof![
        4 => proptest::string::string_regex(&format!("{allowed}{{1,260}}")).unwrap(),
        1 => any::<String>(),
    ];
    let value = prop_oneof![
        4 => proptest::string::string_regex(&format!("{allowed}{{1,1030}}")).unwrap(),
        1 => any::<String>(),
    ];
    reaching_half((name, value), |(name, value)| {
        let Ok(d) = Dimension::new(name, value) else {
            return Ok(false);
        };
        prop_assert!(d.name().len() <= 255 && d.value().len() <= 1024);
        prop_assert!(!d.name().trim().is_empty() && !d.value().trim().is_empty());
        prop_assert!(!d.name().starts_with(':'));
        prop_assert!(
            d.value()
                .chars()
                .all(|c| c.is_ascii() && !c.is_ascii_control())
        );
        Ok(true)
    });
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn cgroup_files_parse_anything(text in procish()) {
        let _ = parse::parse_self_cgroup(&text);
        let _ = parse::parse_mountinfo(&text);
        let _ = parse::keyed(&text, "usage_usec");
        let _ = parse::number_or_max(&text);
        let _ = parse::signed(&text);
        let _ = parse::cpuset_count(&text);
        if let Ok(Some(cpus)) = parse::cpu_max(&text) {
            prop_assert!(cpus.is_finite() && cpus >= 0.0, "{cpus}");
        }
        let _ = crate::sample::kernel::parse_oom_kills(&text);
        let _ = crate::sample::kernel::parse_pressure_some(&text);
    }

    #[test]
    fn stalls_are_within_0_100_and_kills_never_negative(
        prev in reading(),
        cur in reading(),
    ) {
        in_range(crate::sample::kernel::stalled_percent(prev, cur))?;
        let kills = crate::sample::kernel::kills_between(prev.used, cur.used);
        prop_assert!(kills <= cur.used, "never more than the counter holds: {kills}");
    }

    #[test]
    fn every_rate_is_finite_and_within_0_100(
        prev in reading(),
        cur in reading(),
        capacity in prop_oneof![any::<f64>(), 0.0..64.0],
    ) {
        if let Ok(r) = rate::ratio(prev, cur) {
            prop_assert!(r.is_finite() && r >= 0.0, "{r}");
            in_range(rate::percent_of(r, capacity))?;
        }
        in_range(source::cpu_percent(prev, cur, capacity))?;
        in_range(source::throttled_percent(prev, cur))?;
        in_range(source::memory_percent(prev.used, cur.used))?;
    }

    #[test]
    fn macos_arithmetic_stays_within_0_100(
        prev in any::<[u32; 4]>(),
        cur in any::<[u32; 4]>(),
        pages in any::<[u64; 4]>(),
        page_size in any::<u64>(),
        total in any::<u64>(),
    ) {
        in_range(mach::cpu_percent(prev, cur))?;
        let [internal, purgeable, wired, compressed] = pages;
        let pages = mach::VmPages { internal, purgeable, wired, compressed };
        in_range(mach::memory_used_percent(pages, page_size, total))?;
    }

    #[test]
    fn ecs_utilization_stays_within_0_100_whatever_the_documents_say(
        docs in prop::collection::vec(
            prop::collection::vec((any::<i64>(), any::<u64>(), any::<u64>(), any::<u64>()), 2),
            1..6,
        ),
        limits in (any::<f64>(), any::<f64>()),
        cpus in 0usize..512,
        memory_bytes in any::<u64>(),
        steps in prop::collection::vec(any::<u32>(), 6),
    ) {
        let task: Task = serde_json::from_value(serde_json::json!({
            "Limits": {"CPU": limits.0.clamp(-1e300, 1e300), "Memory": limits.1.clamp(-1e300, 1e300)},
            "Containers": [{"DockerId": "a"}, {"DockerId": "b"}],
        }))
        .unwrap();
        let capacity = task.capacity(Machine { cpus, memory_bytes });
        let mut tracker = Tracker::default();
        let mut now = 0u64;
        for (doc, step) in docs.iter().zip(&steps) {
            let container = |(read, usage, memory, inactive): (i64, u64, u64, u64)| {
                let read = aws_smithy_types::DateTime::from_secs(read.rem_euclid(10_000_000_000))
                    .fmt(aws_smithy_types::date_time::Format::DateTime)
                    .unwrap();
                serde_json::json!({
                    "read": read,
                    "cpu_stats": {"cpu_usage": {"total_usage": usage}},
                    "memory_stats": {"usage": memory, "stats": {"inactive_file": inactive}},
                })
            };
            let stats: Stats = serde_json::from_value(serde_json::json!({
                "a": container(doc[0]),
                "b": container(doc[1]),
            }))
            .unwrap();
            now = now.saturating_add(u64::from(*step));
            let u = tracker.update(&task, &stats, &capacity, now);
            in_range(u.cpu)?;
            in_range(u.memory)?;
        }
    }

    #[test]
    fn windows_hold_only_values_within_0_100(
        values in prop::collection::vec((any::<f64>(), any::<u64>()), 0..50),
        period in 1u64..100_000,
    ) {
        let dimensions: std::sync::Arc<[Dimension]> = Vec::new().into();
        let mut aggregator = Aggregator::new(period, MetricSet::of(&Metric::ALL), dimensions);
        let mut windows = Vec::new();
        for (value, at) in values {
            let sample = Sample {
                cpu: Some(value),
                memory: Some(-value),
                throttled: Some(value * 1e300),
                ..Sample::default()
            };
            windows.extend(aggregator.add(at, &sample));
        }
        windows.extend(aggregator.finish());
        for window in windows {
            for (_, distribution) in &window.series {
                for (value, _) in distribution.pairs() {
                    in_range(Some(*value))?;
                }
                in_range(distribution.median())?;
            }
        }
    }

    #[test]
    fn outside_text_is_made_safe_to_log(text in any::<String>()) {
        let shown = crate::redact::for_log(&text);
        prop_assert!(!shown.chars().any(char::is_control), "{shown:?}");
        prop_assert!(shown.chars().count() <= crate::redact::MAX_LOGGED_CHARS + 32);
    }

    #[test]
    fn any_flag_value_is_taken_or_refused_without_panicking(
        period in procish(),
        flush in procish(),
        buffer in procish(),
        dimension in any::<String>(),
        service in any::<String>(),
    ) {
        use clap::Parser;
        let args = [
            "agent", "--namespace", "N", "--service", &service, "--period", &period,
            "--flush-timeout", &flush, "--buffer-size", &buffer, "--dimension", &dimension,
        ];
        if let Ok(opts) = crate::cli::Opts::try_parse_from(args) {
            let _ = crate::config::Config::from_opts(opts);
        }
    }
}
