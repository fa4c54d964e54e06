//! The stdout delivery of EMF documents and dry-run lines: each window is encoded by its
//! format and handed to stdout's [`Outlet`], which never blocks the agent. There is no
//! retry: a line either waits in the outlet's buffer for the reader, is dropped (the
//! oldest first) when that overflows, or is lost with the reader.

use std::future::Future;

use tokio::time::Instant;

use super::{Closed, Delivery, Report};
use crate::alarm::Alarm;
use crate::domain::Window;
use crate::publish::Format;
use crate::stdio::{Outlet, Pushed};

/// Windows printed in format `F`.
#[derive(Debug)]
pub struct Printed<F> {
    /// How a window becomes lines.
    format: F,
    /// Stdout, written by its own thread.
    outlet: Outlet,
    /// The first overflow is warned about; the count is in the final report.
    overflow_warned: bool,
    /// Lines written when the last window was sent, to see the reader stall.
    last_written: u64,
    /// A reader stalled for long, said at the default log level.
    alarm: Alarm,
    /// Reused for each window's lines.
    lines: Vec<Vec<u8>>,
}

impl<F: Format> Printed<F> {
    /// Windows of `period_secs` printed through `outlet`.
    pub fn new(format: F, outlet: Outlet, period_secs: u64) -> Self {
        Printed {
            format,
            outlet,
            overflow_warned: false,
            last_written: 0,
            alarm: Alarm::new(period_secs),
            lines: Vec::new(),
        }
    }
}

impl<F: Format> Delivery for Printed<F> {
    fn send(&mut self, window: Window) {
        self.format.encode(&window, &mut self.lines);
        for line in self.lines.drain(..) {
            match self.outlet.push(line) {
                Pushed::Queued { dropped } if dropped > 0 && !self.overflow_warned => {
                    self.overflow_warned = true;
                    log::warn!(
                        "stdout is not being read: its buffer is full, so the oldest {} are \
                         dropped (counted, and reported at exit)",
                        F::UNIT
                    );
                }
                Pushed::Queued { .. } => {}
                // The loop learns of it from `closed`.
                Pushed::Failed(_) => break,
            }
        }
        self.lines.clear();
        let progress = self.outlet.progress();
        if progress.pending > 1 {
            log::debug!(
                "stdout: {} {} waiting to be written",
                progress.pending,
                F::UNIT
            );
        }
        if progress.pending > 0 && progress.written == self.last_written {
            if let Some(lasting) = self.alarm.failed() {
                log::error!(
                    "stdout has not been read {}: {} {} waiting, the oldest dropped beyond \
                     the buffer",
                    lasting.describe(),
                    progress.pending,
                    F::UNIT
                );
            }
        } else if let Some(stalled) = self.alarm.worked() {
            log::info!("stdout is read again, after {} s", stalled.as_secs());
        }
        self.last_written = progress.written;
    }

    fn closed(&mut self) -> impl Future<Output = Closed> + 'static {
        let failure = self.outlet.failure();
        async move { Closed(failure.await) }
    }

    async fn finish(mut self, deadline: Instant) -> Report {
        let progress = match tokio::time::timeout_at(deadline, self.outlet.drained()).await {
            Ok(progress) => progress,
            Err(_) => self.outlet.progress(),
        };
        Report {
            delivered: progress.written,
            dropped: progress.dropped,
            unflushed: progress.pending as u64,
            unanswered: 0,
            unit: F::UNIT,
        }
    }
}
