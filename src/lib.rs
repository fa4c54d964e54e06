//! A tiny agent that samples CPU and memory utilization about once a second,
//! aggregates each period, and publishes the result to Amazon CloudWatch with
//! `PutMetricData`, under a namespace the user picks and a `ServiceName` dimension.
//!
//! # Layout
//!
//! Data flows one way: sampler → aggregator → delivery → publisher.
//!
//! - [`cli`]: the flags and environment variables exactly as the user typed them.
//! - [`config`]: the checked [`config::Config`] the agent runs with; every rule lives here.
//! - [`sample`]: where samples come from, one module per scope (host `/proc`, cgroup v1/v2,
//!   the ECS task metadata endpoint): pure parsers, and sources that read under a root.
//! - [`aggregate`]: samples → wall-clock-aligned windows with their statistics.
//! - [`publish`]: windows → `PutMetricData` requests (pure), and the publishers that send
//!   them: CloudWatch through the AWS SDK, EMF documents or dry-run JSON lines on stdout.
//! - [`delivery`]: the send queue: batches within API limits, the one retry layer (backoff
//!   with jitter), what is dropped and when, the bounded final flush.
//! - [`ec2`]: `--ec2-dimensions` from the instance metadata service, read once at start.
//! - [`shutdown`]: SIGTERM/SIGINT as one future.
//! - [`supervise`]: wrapper mode: the workload as a child, signals forwarded, zombies
//!   reaped, its exit status passed on.
//! - [`ticker`]: the once-a-second beat (a timerfd on Linux: one wakeup per sample).
//! - [`agent`]: the loop that joins the stages and the bounded final flush.
//! - [`check`]: the `check` preflight: region, credentials, one sample, one request.

pub mod agent;
pub mod aggregate;
pub mod check;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod ec2;
pub mod publish;
pub mod sample;
pub mod shutdown;
pub mod supervise;
pub mod ticker;
