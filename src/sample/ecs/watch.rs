//! What the task document tells beyond the task's size, read again every few seconds
//! where asked for: Fargate's ephemeral storage, and containers restarted by the ECS
//! container restart policy or stopped.

use std::time::{Duration, Instant};

use super::metadata::{EphemeralStorage, Task};
use crate::sample::Sample;

/// With ephemeral storage or restarts asked for, `/task` is read again this often (it
/// is otherwise read at start only): both change slowly, and each sample carries the
/// latest figures.
pub const TASK_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// Figures older than this (the reads of `/task` since failed) are no longer sent.
const STALE_AFTER: Duration = Duration::from_secs(35);
/// The most ephemeral storage a Fargate task may have is 200 GiB; a figure past 1 PiB
/// is no reading of it.
const MAX_PLAUSIBLE_MIB: f64 = (1u64 << 30) as f64;
/// MiB in a GiB: `EphemeralStorageMetrics` is in MiB, Container Insights' metric in GiB.
const MIB_PER_GIB: f64 = 1024.0;

/// Polls `/task` for ephemeral storage and restarts, and says what it sees.
#[derive(Debug)]
pub struct TaskWatch {
    /// Ephemeral storage is asked for and the task reports it.
    ephemeral: bool,
    /// Restarts are asked for.
    restarts: bool,
    /// The latest figures and when they were read, carried by every sample until the
    /// next read (and no longer once stale).
    storage: Option<(EphemeralStorage, Instant)>,
    /// Each container's `RestartCount` as last read, by name.
    counts: Vec<(String, u64)>,
    /// Restarts seen at the last read and not yet handed to a sample.
    pending: u64,
    /// Containers whose stop was said, by name, until they run again.
    stopped: Vec<String>,
    /// When `/task` was last read.
    polled_at: Instant,
}

impl TaskWatch {
    /// A watch over `task` as read at start, or `None` when neither is asked for. A task
    /// without `EphemeralStorageMetrics` (on EC2, or a Fargate platform before 1.4.0)
    /// cannot have it: said once, and the metrics left out.
    pub fn new(task: &Task, ephemeral: bool, restarts: bool) -> Option<TaskWatch> {
        let reported = task.ephemeral_storage_metrics.is_some();
        if ephemeral && !reported {
            log::error!(
                "the ECS task document has no EphemeralStorageMetrics (Fargate platform \
                 1.4.0 and later report it; EC2 tasks do not): EphemeralStorage metrics \
                 are not sent"
            );
        }
        let ephemeral = ephemeral && reported;
        if !ephemeral && !restarts {
            return None;
        }
        let mut watch = TaskWatch {
            ephemeral,
            restarts,
            storage: None,
            counts: Vec::new(),
            pending: 0,
            stopped: Vec::new(),
            polled_at: Instant::now(),
        };
        watch.read(task);
        // Restarts before the agent started are not this run's.
        watch.pending = 0;
        Some(watch)
    }

    /// Whether `/task` is due to be read again, or will be within `ahead` (the ticks
    /// the loop is about to sleep through: read with the stats, not on a wakeup of its
    /// own). At the tick nearest the interval: a tick may come a little early.
    pub fn due_within(&self, ahead: Duration) -> bool {
        let slack = Duration::from_nanos(super::pace::TICK_SLACK);
        self.polled_at.elapsed() + slack + ahead >= TASK_POLL_INTERVAL
    }

    /// When `/task` is due to be read again.
    pub fn due_at(&self) -> Instant {
        self.polled_at + TASK_POLL_INTERVAL
    }

    /// A read of `/task` starts now (whether it succeeds or not).
    pub fn polled(&mut self) {
        self.polled_at = Instant::now();
    }

    /// Takes in a task document just read.
    pub fn read(&mut self, task: &Task) {
        if self.ephemeral {
            self.storage = task
                .ephemeral_storage_metrics
                .map(|storage| (storage, Instant::now()));
        }
        for container in task.measured() {
            let name = container.name.as_str();
            // Only for a line that is said: this runs at every read of `/task`.
            let shown = || crate::redact::for_log(name);
            if container.known_status == "STOPPED" {
                if !self.stopped.iter().any(|n| n == name) {
                    let shown = shown();
                    match container.exit_code {
                        Some(code) => log::error!(
                            "container {shown} of the task stopped with exit code {code}"
                        ),
                        None => log::error!("container {shown} of the task stopped"),
                    }
                    self.stopped.push(name.to_owned());
                }
            } else {
                self.stopped.retain(|n| n != name);
            }
            let Some(count) = container.restart_count else {
                continue;
            };
            match self.counts.iter_mut().find(|(n, _)| n == name) {
                Some((_, last)) => {
                    if count > *last {
                        let more = count - *last;
                        let shown = shown();
                        log::info!(
                            "container {shown} was restarted by its restart policy ({more} \
                             time{}; RestartCount {count})",
                            if more == 1 { "" } else { "s" }
                        );
                        self.pending += more;
                    }
                    *last = count;
                }
                None => self.counts.push((name.to_owned(), count)),
            }
        }
    }

    /// Puts the latest figures into `sample`: ephemeral storage in GiB and percent, and
    /// the restarts since the last sample (0 when none).
    pub fn sample_into(&mut self, sample: &mut Sample) {
        if let Some((storage, _)) = self.storage.filter(|(_, at)| at.elapsed() < STALE_AFTER) {
            // MiB that can be a reading; others leave that figure out.
            let plausible = |mib: Option<f64>| {
                mib.filter(|v| v.is_finite() && (0.0..=MAX_PLAUSIBLE_MIB).contains(v))
            };
            let (used, reserved) = (plausible(storage.utilized), plausible(storage.reserved));
            sample.ephemeral_utilized = used.map(|v| v / MIB_PER_GIB);
            sample.ephemeral_reserved = reserved.map(|v| v / MIB_PER_GIB);
            sample.ephemeral_utilization = used
                .zip(reserved.filter(|r| *r > 0.0))
                .map(|(u, r)| (u / r * 100.0).min(100.0));
        }
        self.restarts_into(sample);
    }

    /// Puts the restarts since the last sample (0 when none) into `sample`: what a
    /// sample without a new stats document carries (ephemeral storage, a level, comes
    /// with the stats' weight).
    pub fn restarts_into(&mut self, sample: &mut Sample) {
        if self.restarts {
            sample.restarts = Some(std::mem::take(&mut self.pending) as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(restarts: &[(&str, Option<u64>, &str)], storage: &str) -> Task {
        let containers: Vec<String> = restarts
            .iter()
            .map(|(name, count, status)| {
                let count = count.map_or(String::new(), |c| format!(r#","RestartCount":{c}"#));
                format!(
                    r#"{{"DockerId":"{name}-id","Name":"{name}","KnownStatus":"{status}","ExitCode":3{count}}}"#
                )
            })
            .collect();
        serde_json::from_str(&format!(
            r#"{{"Containers":[{}]{storage}}}"#,
            containers.join(",")
        ))
        .unwrap()
    }

    #[test]
    fn restarts_are_the_rise_of_restart_count_handed_to_one_sample() {
        let first = task(&[("app", Some(2), "RUNNING"), ("log", None, "RUNNING")], "");
        let mut watch = TaskWatch::new(&first, false, true).unwrap();
        let mut sample = Sample::default();
        watch.sample_into(&mut sample);
        assert_eq!(
            sample.restarts,
            Some(0.0),
            "restarts before start are not counted"
        );
        watch.read(&task(
            &[("app", Some(5), "RUNNING"), ("log", None, "RUNNING")],
            "",
        ));
        watch.sample_into(&mut sample);
        assert_eq!(sample.restarts, Some(3.0));
        watch.sample_into(&mut sample);
        assert_eq!(sample.restarts, Some(0.0), "counted once");
        // A count that went back (the task was replaced): no restart, a new baseline.
        watch.read(&task(&[("app", Some(1), "RUNNING")], ""));
        watch.read(&task(&[("app", Some(2), "RUNNING")], ""));
        watch.sample_into(&mut sample);
        assert_eq!(sample.restarts, Some(1.0));
    }

    #[test]
    fn a_stopped_container_is_said_once_until_it_runs_again() {
        let mut watch =
            TaskWatch::new(&task(&[("app", None, "RUNNING")], ""), false, true).unwrap();
        watch.read(&task(&[("app", None, "STOPPED")], ""));
        watch.read(&task(&[("app", None, "STOPPED")], ""));
        assert_eq!(watch.stopped, ["app"]);
        watch.read(&task(&[("app", None, "RUNNING")], ""));
        assert!(watch.stopped.is_empty());
    }

    #[test]
    fn ephemeral_storage_is_gib_and_a_percentage_where_the_task_reports_it() {
        // ecs_exporter's live Fargate capture: 311 MiB of 20496 MiB, 1.517 %; one of its
        // containers has stopped (exit code 0).
        let fargate: Task = serde_json::from_str(include_str!(
            "../../../tests/fixtures/ecs/published/ecs-exporter-fargate-task.json"
        ))
        .unwrap();
        let mut watch = TaskWatch::new(&fargate, true, false).unwrap();
        assert_eq!(watch.stopped, ["nonessential"]);
        let mut sample = Sample::default();
        watch.sample_into(&mut sample);
        assert_eq!(sample.ephemeral_utilized, Some(311.0 / 1024.0));
        assert_eq!(sample.ephemeral_reserved, Some(20496.0 / 1024.0));
        let percent = sample.ephemeral_utilization.unwrap();
        assert!((percent - 1.517_369_243_755_855).abs() < 1e-9, "{percent}");
        // A figure that cannot be a reading is left out, not sent.
        let absurd = task(
            &[("app", None, "RUNNING")],
            r#","EphemeralStorageMetrics":{"Utilized":1e300,"Reserved":20496}"#,
        );
        watch.read(&absurd);
        watch.sample_into(&mut sample);
        assert_eq!(sample.ephemeral_utilized, None);
        assert_eq!(sample.ephemeral_utilization, None);
        assert_eq!(sample.ephemeral_reserved, Some(20496.0 / 1024.0));
        assert_eq!(sample.restarts, None, "not asked for");
        // EC2: nothing to report, so nothing to watch.
        assert!(TaskWatch::new(&task(&[("app", None, "RUNNING")], ""), true, false).is_none());
    }

    #[test]
    fn ephemeral_figures_not_read_again_for_35_s_are_no_longer_sent() {
        let task = task(
            &[("app", None, "RUNNING")],
            r#","EphemeralStorageMetrics":{"Utilized":311,"Reserved":20496}"#,
        );
        let mut watch = TaskWatch::new(&task, true, false).unwrap();
        let read_at = |ago: Duration| Instant::now().checked_sub(ago).unwrap();
        let storage = watch.storage.map(|(s, _)| s).unwrap();
        watch.storage = Some((storage, read_at(Duration::from_secs(34))));
        let mut sample = Sample::default();
        watch.sample_into(&mut sample);
        assert_eq!(
            sample.ephemeral_reserved,
            Some(20496.0 / 1024.0),
            "still fresh"
        );
        watch.storage = Some((storage, read_at(STALE_AFTER + Duration::from_secs(1))));
        let mut sample = Sample::default();
        watch.sample_into(&mut sample);
        assert_eq!(
            (
                sample.ephemeral_utilized,
                sample.ephemeral_reserved,
                sample.ephemeral_utilization
            ),
            (None, None, None),
            "stale"
        );
    }
}
