//! `cloudwatch_metrics_agent`: parse the command line, start logging, run, and map the
//! outcome to an exit status (0 clean, 1 data not delivered on shutdown or no stdout to
//! write to, 2 bad input; in wrapper mode the command's status, or 126/127 when it
//! cannot be started; for `check`, 1 when a step fails).

// C's `pow` in the glibc build, so that the binary loads no `libm.so.6`: the binary's
// concern, not the library's (a crate linking the library keeps its own libm).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod no_libm;

use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;

use cloudwatch_metrics_agent::agent::{self, Outcome, StartError};
use cloudwatch_metrics_agent::check;
use cloudwatch_metrics_agent::cli::{self, Mode};
use cloudwatch_metrics_agent::config::{Config, Output};
use cloudwatch_metrics_agent::delivery::Closed;
use cloudwatch_metrics_agent::stdio::{self, LogWriter};

/// What is left for stderr gets this long at exit, and never more: a stderr that is not
/// read must not keep the agent from exiting.
const STDERR_GRACE: Duration = Duration::from_millis(500);

fn main() -> ExitCode {
    let code = run();
    stdio::stderr().drain_blocking(STDERR_GRACE);
    code
}

fn run() -> ExitCode {
    let (mode, opts) = match cli::parse(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(e) => return clap_exit(&e),
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("error"))
        .target(env_logger::Target::Pipe(Box::new(LogWriter)))
        .init();
    let config = match Config::from_opts(opts) {
        Ok(config) => config,
        Err(e) => {
            stdio::eprintln(format_args!("error: {e}"));
            return ExitCode::from(2);
        }
    };
    if mode == Mode::Check && !config.command.is_empty() {
        stdio::eprintln(format_args!(
            "error: check takes no command to wrap (found {:?})",
            config.command[0]
        ));
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            stdio::eprintln(format_args!("error: cannot start the runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    if mode == Mode::Check {
        let checked = runtime.block_on(check::run(&config));
        runtime.shutdown_background();
        return match checked {
            Ok(()) => ExitCode::SUCCESS,
            Err(check::Failed(status)) => ExitCode::from(status),
        };
    }
    let outcome = runtime.block_on(agent::run(&config));
    // Do not wait for a DNS lookup or similar blocking work still in flight.
    runtime.shutdown_background();
    match outcome {
        Ok(outcome) => ExitCode::from(exit_status(&config, &outcome)),
        Err(StartError::Spawn(e)) => {
            stdio::eprintln(format_args!("cloudwatch_metrics_agent: {e}"));
            ExitCode::from(e.exit_code())
        }
        Err(e) => {
            stdio::eprintln(format_args!("error: {e}"));
            ExitCode::from(e.exit_code())
        }
    }
}

/// Says what was lost, and picks the status: the command's when wrapping one (what was
/// lost is still said); else 1 when data was lost or had nowhere to go.
fn exit_status(config: &Config, outcome: &Outcome) -> u8 {
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

/// Help and version go to stdout with status 0; every usage error becomes one line on
/// stderr with status 2.
fn clap_exit(e: &clap::Error) -> ExitCode {
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let text = e.render().to_string();
    let line: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    stdio::eprintln(line.join(" "));
    ExitCode::from(2)
}
