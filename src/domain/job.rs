//! One run of the wrapped command, as it ended: the values of the job metrics
//! (`--metrics …,job`) and of the exit line. Wrapper mode ([`crate::supervise`]) measures
//! it; the sampling loop puts it in the final window.

use std::fmt;
use std::time::Duration;

use super::Metric;

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It exited with this status.
    Exited(u8),
    /// A signal ended it: its number and name (`SIGKILL`).
    Signaled(i32, &'static str),
}

/// A run of the command: how it ended and what it used.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRun {
    /// Its exit status or the signal that ended it.
    pub ending: Ending,
    /// The agent had passed on a stop signal (SIGTERM or SIGINT: a deploy, a Batch
    /// cancel, Ctrl-C) before it ended: stopped from outside, neither failed nor
    /// succeeded, whatever its status.
    pub stopped: bool,
    /// From its start to its exit.
    pub duration: Duration,
    /// CPU time (user and system) of the command and the descendants that ended before
    /// it (their waited-for resource usage); `None` when unknown (its status was lost).
    pub cpu: Option<Duration>,
    /// Its peak memory in bytes, and the source that says so (`ru_maxrss`, or the
    /// cgroup's `memory.peak` / `memory.max_usage_in_bytes`); `None` when unknown.
    pub peak_memory: Option<(u64, &'static str)>,
}

impl JobRun {
    /// The status the agent ends with: the command's, or 128 + N after signal N (as a
    /// shell reports it).
    pub fn status(&self) -> u8 {
        match self.ending {
            Ending::Exited(code) => code,
            Ending::Signaled(signal, _) => 128u8.wrapping_add(signal as u8),
        }
    }

    /// Whether the run failed: ended by itself with a status other than 0, or by a
    /// signal the agent did not pass on (the OOM killer's SIGKILL, a `kill` from
    /// elsewhere). A stopped run did not fail.
    pub fn failed(&self) -> bool {
        !self.stopped && self.status() != 0
    }

    /// The value of a job metric for this run; `None` for the others, for `JobFailed`
    /// of a stopped run, and for a peak memory nothing reported.
    pub fn value(&self, metric: Metric) -> Option<f64> {
        let flag = |yes: bool| if yes { 1.0 } else { 0.0 };
        match metric {
            // To the millisecond: a run's start and end are known no closer.
            Metric::JobDuration => Some((self.duration.as_secs_f64() * 1000.0).round() / 1000.0),
            Metric::JobFailed => (!self.stopped).then(|| flag(self.failed())),
            Metric::JobStopped => Some(flag(self.stopped)),
            Metric::JobPeakMemory => self.peak_memory.map(|(bytes, _)| bytes as f64),
            Metric::JobCpuTime => self.cpu.map(|cpu| cpu.as_secs_f64()),
            _ => None,
        }
    }
}

/// The one line that says how the command ended (its status is never a dimension).
impl fmt::Display for JobRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ending {
            Ending::Exited(code) => write!(f, "the command exited with status {code}")?,
            Ending::Signaled(signal, name) => {
                write!(
                    f,
                    "the command was killed by {name} (status {})",
                    128 + signal
                )?;
            }
        }
        write!(
            f,
            " after {:.3} s{}",
            self.duration.as_secs_f64(),
            if self.stopped {
                ", stopped by the signal the agent passed on"
            } else {
                ""
            },
        )?;
        match self.cpu {
            Some(cpu) => write!(f, ": CPU time {:.3} s", cpu.as_secs_f64())?,
            None => write!(f, ": CPU time unknown")?,
        }
        if let Some((bytes, source)) = self.peak_memory {
            let mib = bytes as f64 / (1024.0 * 1024.0);
            write!(f, ", peak memory {mib:.1} MiB ({source})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ending: Ending, stopped: bool) -> JobRun {
        JobRun {
            ending,
            stopped,
            duration: Duration::from_millis(2_500),
            cpu: Some(Duration::from_millis(1_250)),
            peak_memory: Some((100 << 20, "ru_maxrss")),
        }
    }

    #[test]
    fn a_status_other_than_0_or_a_signal_not_passed_on_is_a_failure() {
        let ok = run(Ending::Exited(0), false);
        assert_eq!((ok.status(), ok.value(Metric::JobFailed)), (0, Some(0.0)));
        let three = run(Ending::Exited(3), false);
        assert_eq!(
            (three.status(), three.value(Metric::JobFailed)),
            (3, Some(1.0))
        );
        let killed = run(Ending::Signaled(9, "SIGKILL"), false);
        assert_eq!(
            (killed.status(), killed.value(Metric::JobFailed)),
            (137, Some(1.0))
        );
        assert_eq!(killed.value(Metric::JobStopped), Some(0.0));
    }

    #[test]
    fn a_stopped_run_counts_as_stopped_and_not_as_failed_or_succeeded() {
        for ending in [Ending::Signaled(15, "SIGTERM"), Ending::Exited(0)] {
            let stopped = run(ending, true);
            assert_eq!(stopped.value(Metric::JobStopped), Some(1.0));
            assert_eq!(stopped.value(Metric::JobFailed), None);
            assert!(!stopped.failed());
        }
        assert_eq!(run(Ending::Signaled(15, "SIGTERM"), true).status(), 143);
    }

    #[test]
    fn values_are_in_seconds_and_bytes() {
        let r = run(Ending::Exited(0), false);
        assert_eq!(r.value(Metric::JobDuration), Some(2.5));
        assert_eq!(r.value(Metric::JobCpuTime), Some(1.25));
        assert_eq!(r.value(Metric::JobPeakMemory), Some(104_857_600.0));
        assert_eq!(r.value(Metric::Cpu), None);
        let unknown = JobRun {
            peak_memory: None,
            cpu: None,
            ..r
        };
        assert_eq!(unknown.value(Metric::JobPeakMemory), None);
        assert_eq!(
            unknown.value(Metric::JobCpuTime),
            None,
            "never an invented 0"
        );
    }

    #[test]
    fn the_exit_line_says_the_status_the_time_and_the_usage() {
        assert_eq!(
            run(Ending::Exited(3), false).to_string(),
            "the command exited with status 3 after 2.500 s: CPU time 1.250 s, \
             peak memory 100.0 MiB (ru_maxrss)"
        );
        assert_eq!(
            run(Ending::Signaled(15, "SIGTERM"), true).to_string(),
            "the command was killed by SIGTERM (status 143) after 2.500 s, stopped by the \
             signal the agent passed on: CPU time 1.250 s, peak memory 100.0 MiB (ru_maxrss)"
        );
    }
}
