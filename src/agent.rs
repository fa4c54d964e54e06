//! Start-up and wiring. First everything a run depends on is settled: the output (for
//! CloudWatch, the region and the client), the scope, the EC2 dimensions; a setting that
//! cannot work stops the agent here with its error, before anything runs. Then, in
//! wrapper mode, the command is started; the sampling loop ([`crate::pipeline`]) runs
//! with the output chosen here, until SIGTERM or SIGINT (or the command's exit).

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use thiserror::Error;

use crate::config::Config;
use crate::delivery::{Closed, Delivery, Printed, Queued, Report};
use crate::domain::{Dimension, JobRun, Metric};
use crate::pipeline::{self, Ended, SAMPLE_INTERVAL};
use crate::publish::cloudwatch::ConnectError;
use crate::sample::scope::{self, Opening, ScopeError};
use crate::sample::{MemorySeen, ScopedSource, Source};
use crate::setup::{self, Destination};
use crate::shutdown::Signals;
use crate::stdio::Outlet;
use crate::supervise::{SpawnError, Supervisor};
use crate::ticker::Ticker;

/// In wrapper mode, how long the command waits for the ECS task metadata endpoint to
/// answer at start. A monitor must not hold its workload hostage: after this the command
/// starts anyway, and metrics start once the endpoint answers.
const ECS_WAIT_BEFORE_SPAWN: Duration = Duration::from_secs(5);

/// Why the agent could not start.
#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Region(#[from] ConnectError),
    #[error(transparent)]
    Scope(#[from] ScopeError),
    #[error("cannot listen for signals: {0}")]
    Signals(#[from] std::io::Error),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
}

impl StartError {
    /// 2 for a setting that cannot work here; a shell's 126/127 for a command that
    /// cannot be started; 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Region(_) | StartError::Scope(_) => 2,
            StartError::Spawn(e) => e.exit_code(),
            StartError::Signals(_) => 1,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// What became of the data.
    pub report: Report,
    /// Set when the output's destination (stdout) was gone.
    pub closed: Option<Closed>,
    /// Wrapper mode: the status to exit with (the command's, or 128 + its signal).
    pub child_status: Option<u8>,
}

/// Everything settled before a command starts.
struct Settled {
    /// Where the data goes.
    destination: Destination,
    /// The scope, open or waiting for the ECS endpoint.
    opening: Opening,
    /// The EC2 dimensions looked up (none when not asked for, or not found).
    ec2: Vec<Dimension>,
}

async fn settle(config: &Config) -> Result<Settled, StartError> {
    let destination = Destination::prepare(config).await?;
    let scope::Scoped {
        opening,
        unmeasured,
    } = scope::open(config)?;
    // Named in --metrics, so the user expects them: said at the default level.
    for line in &unmeasured {
        log::error!("{line}");
    }
    let ec2 = setup::ec2_dimensions(config).await;
    Ok(Settled {
        destination,
        opening,
        ec2,
    })
}

/// Runs the agent as configured until SIGTERM or SIGINT (or, wrapping a command, until
/// that command exits), then flushes.
pub async fn run(config: &Config) -> Result<Outcome, StartError> {
    // First thing, so that a signal during start-up (loading the AWS configuration can
    // take seconds) is not lost.
    let mut signals = Signals::install()?;
    log::info!(
        "publishing to {} with ServiceName={} every {} s as {:?}",
        config.namespace,
        config.service.value(),
        config.period_secs,
        config.encoding.aggregation
    );
    let wrapping = !config.command.is_empty();
    let mut settled = tokio::select! {
        settled = settle(config) => settled?,
        (name, number) = signals.recv() => return Ok(stopped_at_start(config, name, number)),
    };
    if !wrapping {
        let shutdown = pin!(async move {
            let (name, _) = signals.recv().await;
            log::info!("{name} received: publishing the partial window and exiting");
            None
        });
        return Ok(measure(config, settled, shutdown).await.0);
    }

    if let Opening::Ecs(connector) = &mut settled.opening {
        let waited = tokio::select! {
            waited = tokio::time::timeout(ECS_WAIT_BEFORE_SPAWN, connector.connect()) => waited,
            (name, number) = signals.recv() => return Ok(stopped_at_start(config, name, number)),
        };
        match waited {
            Ok(opened) => settled.opening = Opening::Ready(opened),
            Err(_) => log::warn!(
                "the ECS task metadata endpoint did not answer within {} s: starting the \
                 command anyway; metrics start once it answers",
                ECS_WAIT_BEFORE_SPAWN.as_secs()
            ),
        }
    }
    let supervisor = Supervisor::spawn(&config.command, config.signal_group)?;
    // The supervisor has its own listeners now, and forwards every signal.
    drop(signals);
    let mut status = None;
    let (outcome, oom) = {
        // A task of its own: a slow sample (an ECS stats request) must neither delay the
        // reaping that ends the run's duration nor the signals it passes on.
        let waiting = tokio::spawn(supervisor.wait());
        let child_exit = pin!(async {
            match waiting.await {
                Ok(run) => {
                    status = Some(run.status());
                    Some(run)
                }
                Err(e) => {
                    // Only a bug gets here; the command's status is then unknown.
                    log::error!("the command's supervision failed: {e}");
                    status = Some(1);
                    None
                }
            }
        });
        measure(config, settled, child_exit).await
    };
    if status == Some(SIGKILLED)
        && let Some(oom) = oom.filter(|o| o.kills > 0)
    {
        log::error!("{}", oom.describe());
    }
    Ok(Outcome {
        child_status: status,
        ..outcome
    })
}

/// A signal came before anything started: nothing to flush. A wrapped command that never
/// ran ends as if the signal had ended it.
fn stopped_at_start(config: &Config, name: &str, number: i32) -> Outcome {
    log::info!("{name} received while starting: exiting");
    Outcome {
        report: Report::empty(setup::unit(&config.output)),
        closed: None,
        child_status: (!config.command.is_empty()).then(|| 128 + number as u8),
    }
}

/// The exit status of a command ended by SIGKILL, what the OOM killer sends.
const SIGKILLED: u8 = 128 + 9;

/// What the measured scope's OOM kill counter said at the end of a wrapped command.
#[derive(Debug, Clone, Copy, PartialEq)]
struct OomSeen {
    /// Kills since the scope was opened, before the command started.
    kills: u64,
    /// The highest working set the agent saw, and the limit.
    memory: Option<MemorySeen>,
    /// The highest usage the kernel recorded, and the file that says so.
    recorded_peak: Option<(u64, &'static str)>,
}

impl OomSeen {
    /// The error line for a command that SIGKILL ended while the counter rose.
    fn describe(&self) -> String {
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        let mut memory = match self.memory {
            Some(m) => format!(
                ": memory limit {:.0} MiB; highest working set in the agent's samples \
                 {:.1} MiB ({:.0} %, once a second)",
                mib(m.limit_bytes),
                mib(m.peak_bytes),
                m.peak_bytes as f64 / m.limit_bytes.max(1) as f64 * 100.0
            ),
            None => String::new(),
        };
        if let Some((bytes, file)) = self.recorded_peak {
            memory += &format!("; usage peaked at {:.1} MiB ({file})", mib(bytes));
        }
        format!(
            "the command was killed by the kernel's OOM killer (SIGKILL, and {} OOM kill{} \
             in the measured scope while it ran){memory}",
            self.kills,
            if self.kills == 1 { "" } else { "s" }
        )
    }
}

/// Opens the source (waiting for the ECS endpoint if need be), assembles the dimensions
/// and runs the loop with the output until `shutdown`. Wrapping a command, a closed
/// stdout is reported once and the command is still waited for; what the OOM kill
/// counter said at the end is returned too.
async fn measure(
    config: &Config,
    settled: Settled,
    mut shutdown: Pin<&mut impl Future<Output = Option<JobRun>>>,
) -> (Outcome, Option<OomSeen>) {
    let Settled {
        destination,
        opening,
        ec2,
    } = settled;
    let nothing = |unit| Outcome {
        report: Report::empty(unit),
        closed: None,
        child_status: None,
    };
    let opened = match opening {
        Opening::Ready(opened) => opened,
        Opening::Ecs(mut connector) => tokio::select! {
            opened = connector.connect() => opened,
            run = shutdown.as_mut() => {
                if let Some(run) = run {
                    pipeline::say_ended(&run, "");
                    if config.metrics.contains(Metric::JobDuration) {
                        log::error!(
                            "the job metrics of this run are not published: the command \
                             ended before the ECS task metadata endpoint answered, so the \
                             task to publish them for is unknown"
                        );
                    }
                }
                return (nothing(setup::unit(&config.output)), None);
            }
        },
    };
    log::info!("scope: {}", opened.what);
    let dimensions = setup::dimensions(config, &opened, ec2);
    let mut source = opened.source;
    let ended = match destination {
        Destination::CloudWatch(client, _) => {
            let delivery = Queued::start(client, config);
            sample_into(config, dimensions, &mut source, delivery, shutdown.as_mut()).await
        }
        Destination::Emf(emf) => {
            let delivery = Printed::new(emf, Outlet::stdout(), config.period_secs);
            sample_into(config, dimensions, &mut source, delivery, shutdown.as_mut()).await
        }
        Destination::DryRun(dry_run) => {
            let delivery = Printed::new(dry_run, Outlet::stdout(), config.period_secs);
            sample_into(config, dimensions, &mut source, delivery, shutdown.as_mut()).await
        }
    };
    if let Some(Closed(failure)) = ended.closed
        && !config.command.is_empty()
    {
        log::error!(
            "stdout cannot be written ({failure}): the {} have nowhere to go; the command \
             keeps running",
            ended.report.unit
        );
        if let Some(run) = shutdown.await {
            pipeline::say_ended(&run, "");
        }
    }
    let oom = source.oom_kills_since_open().map(|kills| OomSeen {
        kills,
        memory: source.memory_seen(),
        recorded_peak: source.recorded_peak(),
    });
    let outcome = Outcome {
        report: ended.report,
        closed: ended.closed,
        child_status: None,
    };
    (outcome, oom)
}

/// The sampling loop on the live clock and the once-a-second beat.
async fn sample_into(
    config: &Config,
    dimensions: Arc<[Dimension]>,
    source: &mut ScopedSource,
    delivery: impl Delivery,
    shutdown: Pin<&mut impl Future<Output = Option<JobRun>>>,
) -> Ended {
    let ticker = Ticker::new(SAMPLE_INTERVAL);
    pipeline::run(
        config,
        dimensions,
        source,
        delivery,
        ticker,
        shutdown,
        SystemTime::now,
    )
    .await
}
