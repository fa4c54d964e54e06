//! A tiny agent that samples CPU and memory utilization about once a second,
//! aggregates each period, and publishes the result to Amazon CloudWatch with
//! `PutMetricData`, under a namespace the user picks and a `ServiceName` dimension.
//!
//! # Layout
//!
//! Data flows one way: sampler → aggregator → delivery → output. Each module stands on
//! the ones listed before it, never on one listed after, and no file imports another
//! that imports it back (`tests/layout.rs` reads the `use` paths and keeps it so).
//!
//! - [`domain`]: the vocabulary: metrics, dimensions (and the one validator every
//!   dimension passes), aggregation modes, a closed window.
//! - [`redact`]: outside text made safe to log (cut, escaped, secrets replaced).
//! - [`proxy`]: which requests go through an egress proxy (`HTTPS_PROXY`, `NO_PROXY`).
//! - [`http`]: the HTTPS client of every AWS call, with a cap on each answer's size,
//!   through the proxy where one is set.
//! - [`alarm`]: a failure that lasts (sampling, delivery, stdout) said at the default
//!   log level.
//! - [`dimensions`]: the dimensions of a run from every source (`--service`,
//!   `--dimension`, ECS and EC2 metadata) and what a broken rule means for each.
//! - [`cli`]: the flags and environment variables exactly as the user typed them.
//! - [`config`]: the checked [`config::Config`] the agent runs with; every rule on
//!   user input lives here.
//! - [`sample`]: where samples come from: choosing and opening the scope
//!   ([`sample::scope`]), one module per source (host `/proc`, cgroup v1/v2, the ECS task
//!   metadata endpoint, macOS), pure parsers, and the one rate helper.
//! - [`aggregate`]: samples → wall-clock-aligned windows.
//! - [`publish`]: each output's encoding of windows, within its own limits: CloudWatch
//!   (and its SDK client and error classes), EMF, dry-run.
//! - [`stdio`]: stdout and stderr written by a thread of their own through a bounded
//!   buffer, so a reader that stops reading never stops the agent.
//! - [`self_copy`]: `copy-to DIR`, the binary copied into a volume another container
//!   starts it from (an image without a shell).
//! - [`delivery`]: windows to the output without waiting: CloudWatch's send queue (the
//!   one retry layer) and its schedule (each agent's send offset, `--send-every`), or
//!   stdout.
//! - [`shutdown`]: SIGTERM/SIGINT as one future.
//! - [`supervise`]: wrapper mode: the workload as a child, signals forwarded, orphans
//!   reaped (never another waiter's child), its exit status passed on.
//! - [`ticker`]: the once-a-second beat (a timerfd on Linux: one wakeup per sample).
//! - [`pipeline`]: the sampling loop and the bounded final flush.
//! - [`setup`]: what a run is made of, decided once for a run and `check` alike: the
//!   output made ready, the EC2 lookup, the dimensions of every datum.
//! - [`agent`]: start-up and wiring: settles output, scope and dimensions before anything
//!   runs, starts a wrapped command, runs the loop.
//! - [`exit`]: how a run ends: what was lost said on stderr, and the exit status.
//! - [`cost`]: what a configuration costs a month at CloudWatch's list prices.
//! - [`check`]: the `check` preflight: region, credentials, one sample, one request,
//!   and what the configuration costs a month.

pub mod agent;
pub mod aggregate;
pub mod alarm;
pub mod check;
pub mod cli;
pub mod config;
pub mod cost;
#[cfg(test)]
mod counting_alloc;
pub mod delivery;
pub mod dimensions;
pub mod domain;
pub mod exit;
pub mod http;
pub mod pipeline;
pub mod proxy;
pub mod publish;
pub mod redact;
pub mod sample;
pub mod self_copy;
pub mod setup;
pub mod shutdown;
pub mod stdio;
pub mod supervise;
pub mod ticker;

#[cfg(test)]
mod properties;

/// Log target of one line per window handed to the output, with its values: what the
/// original agent's README promised for `RUST_LOG=cloudwatch_metrics_agent::publisher=info`.
pub const PUBLISHER_LOG: &str = "cloudwatch_metrics_agent::publisher";
/// Log target of one line per `PutMetricData` request, with what it carried and how it
/// ended (`RUST_LOG=cloudwatch_metrics_agent::cloudwatch=info`, as in the original).
pub const CLOUDWATCH_LOG: &str = "cloudwatch_metrics_agent::cloudwatch";
