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
//! - [`sample`]: pure parsers of `/proc` files and the sources that read them under a root.
//! - [`aggregate`]: samples → wall-clock-aligned windows with their statistics.
//! - [`publish`]: windows → `PutMetricData` requests (pure), and the publishers that send
//!   them: CloudWatch through the AWS SDK, or JSON lines on stdout for `--dry-run`.
//! - [`delivery`]: the send queue: batches within API limits, the one retry layer (backoff
//!   with jitter), what is dropped and when, the bounded final flush.
//! - [`shutdown`]: SIGTERM/SIGINT as one future.
//! - [`supervise`]: wrapper mode: the workload as a child, signals forwarded, zombies
//!   reaped, its exit status passed on.
//! - [`agent`]: the loop that joins the stages and the bounded final flush.

pub mod agent;
pub mod aggregate;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod ec2;
pub mod publish;
pub mod sample;
pub mod shutdown;
pub mod supervise;
