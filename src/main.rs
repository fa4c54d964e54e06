//! `cloudwatch_metrics_agent`: parse the command line, start logging, run, and map the
//! outcome to an exit status (0 clean, 1 data not delivered on shutdown, 2 bad input; in
//! wrapper mode the command's status, or 126/127 when it cannot be started; for `check`,
//! 1 when a step fails).

use std::process::ExitCode;

use clap::error::ErrorKind;

use cloudwatch_metrics_agent::agent::{self, Outcome, StartError};
use cloudwatch_metrics_agent::check;
use cloudwatch_metrics_agent::cli::{self, Mode};
use cloudwatch_metrics_agent::config::Config;

fn main() -> ExitCode {
    let (mode, opts) = match cli::parse(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(e) => return clap_exit(&e),
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("error")).init();
    let config = match Config::from_opts(opts) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if mode == Mode::Check && !config.command.is_empty() {
        eprintln!(
            "error: check takes no command to wrap (found {:?})",
            config.command[0]
        );
        return ExitCode::from(2);
    }
    let flush_timeout = config.flush_timeout;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if mode == Mode::Check {
        let passed = runtime.block_on(check::run(&config)).is_ok();
        runtime.shutdown_background();
        return if passed {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let outcome = runtime.block_on(agent::main(config));
    // Do not wait for a DNS lookup or similar blocking work still in flight.
    runtime.shutdown_background();
    match outcome {
        Ok(Outcome {
            report,
            child_status,
        }) => {
            if report.unflushed > 0 {
                eprintln!(
                    "error: {} datums could not be delivered within the flush timeout ({:?})",
                    report.unflushed, flush_timeout
                );
            }
            // Wrapping a command, its status is the one that matters to the caller.
            match child_status {
                Some(code) => ExitCode::from(code),
                None if report.unflushed > 0 => ExitCode::FAILURE,
                None => ExitCode::SUCCESS,
            }
        }
        Err(StartError::Spawn(e)) => {
            eprintln!("cloudwatch_metrics_agent: {e}");
            ExitCode::from(e.exit_code())
        }
        Err(e @ (StartError::Connect(_) | StartError::Scope(_) | StartError::Dimensions(_))) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
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
    eprintln!("{}", line.join(" "));
    ExitCode::from(2)
}
