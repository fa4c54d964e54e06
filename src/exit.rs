//! How a run ends: what was lost is said on stderr, whatever `RUST_LOG` says, and the
//! exit status is picked (0 clean, 1 data not delivered on shutdown or no stdout to
//! write to; in wrapper mode the command's status, what was lost still said).

use crate::agent::Outcome;
use crate::config::{Config, Output};
use crate::delivery::Closed;
use crate::stdio;

/// Says what was lost, and picks the status: the command's when wrapping one (what was
/// lost is still said); else 1 when data was lost or had nowhere to go.
pub fn status(config: &Config, outcome: &Outcome) -> u8 {
    let Outcome {
        report,
        closed,
        child_status,
    } = *outcome;
    let on_stdout = !matches!(config.output, Output::CloudWatch { .. });
    if report.unanswered > 0 {
        stdio::eprintln(format_args!(
            "error: {} {} were sent, but CloudWatch had not answered when the flush timeout \
             ({:?}) ended: they may or may not have been stored",
            report.unanswered, report.unit, config.flush_timeout
        ));
    }
    if closed.is_none() && report.unflushed > 0 {
        let (what, earlier) = match report.dropped {
            _ if !on_stdout => (
                "could not be delivered",
                ": CloudWatch had not accepted them".to_owned(),
            ),
            0 => ("were not written to stdout", String::new()),
            n => (
                "were not written to stdout",
                format!("; {n} more were dropped earlier while it was blocked"),
            ),
        };
        stdio::eprintln(format_args!(
            "error: {} {} {what} within the flush timeout ({:?}){earlier}",
            report.unflushed, report.unit, config.flush_timeout
        ));
    } else if on_stdout && report.dropped > 0 {
        // The first overflow was warned about; this is the count.
        log::warn!(
            "{} {} were dropped while stdout was blocked",
            report.dropped,
            report.unit
        );
    }
    if let Some(code) = child_status {
        return code;
    }
    match closed {
        // `--dry-run | head`: the preview was cut short on purpose.
        Some(Closed(failure)) if failure.reader_gone() && config.output == Output::DryRun => 0,
        // `>&-`, or a reader that left: either way nothing can be written.
        Some(Closed(failure)) if failure.reader_gone() || failure.descriptor_closed() => {
            stdio::eprintln(format_args!(
                "error: stdout is closed: the {} have nowhere to go",
                report.unit
            ));
            1
        }
        Some(Closed(failure)) => {
            stdio::eprintln(format_args!(
                "error: cannot write to stdout ({failure}): the {} have nowhere to go",
                report.unit
            ));
            1
        }
        None if report.unflushed > 0 || report.unanswered > 0 => 1,
        None => 0,
    }
}
