//! `cloudwatch_metrics_agent`: parse the command line, start logging, run, and map the
//! outcome to an exit status (2 bad input; a run's from [`exit::status`]; in wrapper
//! mode 126/127 when the command cannot be started; for `check`, the status a run with
//! the same settings would stop with when a step fails).

// C's `pow` in the glibc build, so that the binary loads no `libm.so.6`: the binary's
// concern, not the library's (a crate linking the library keeps its own libm).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod no_libm;

use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;

use cloudwatch_metrics_agent::agent::{self, StartError};
use cloudwatch_metrics_agent::cli::{self, Mode};
use cloudwatch_metrics_agent::config::Config;
use cloudwatch_metrics_agent::stdio::{self, LogWriter};
use cloudwatch_metrics_agent::{check, exit, self_copy};

/// What is left for stderr gets this long at exit, and never more: a stderr that is not
/// read must not keep the agent from exiting.
const STDERR_GRACE: Duration = Duration::from_millis(500);

fn main() -> ExitCode {
    let code = run();
    stdio::stderr().drain_blocking(STDERR_GRACE);
    code
}

fn run() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(dir) = cli::copy_to(&args) {
        return ExitCode::from(self_copy::run(dir));
    }
    let (mode, opts) = match cli::parse(args) {
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
    let status = match mode {
        Mode::Check => match runtime.block_on(check::run(&config)) {
            Ok(()) => 0,
            Err(check::Failed(status)) => status,
        },
        Mode::Run => match runtime.block_on(agent::run(&config)) {
            Ok(outcome) => exit::status(&config, &outcome),
            Err(StartError::Spawn(e)) => {
                stdio::eprintln(format_args!("cloudwatch_metrics_agent: {e}"));
                e.exit_code()
            }
            Err(e) => {
                stdio::eprintln(format_args!("error: {e}"));
                e.exit_code()
            }
        },
    };
    // Do not wait for a DNS lookup or similar blocking work still in flight.
    runtime.shutdown_background();
    ExitCode::from(status)
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
