//! `cloudwatch_metrics_agent check`: a preflight for a new deployment. It takes the same
//! flags and environment as a run, then resolves the region and credentials (naming
//! where they came from, never their values), reads one sample in the chosen scope, and
//! sends it as one real request (printed instead with `--dry-run` or `--output emf`).
//! Each step prints one line on stdout; the first failure says what is wrong and ends it.
//! It goes through the same entry points as a run: the output and the dimensions from
//! [`crate::setup`], the scope from [`crate::sample::scope`], the window from the
//! aggregator, and each output's own encoding.

use std::fmt::Display;
use std::io::Write;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::credential_feature::AwsCredentialFeature;
use aws_credential_types::provider::ProvideCredentials;

use crate::aggregate::{Aggregator, unix_secs};
use crate::config::{Config, Output};
use crate::domain::{JobRun, Kind, Metric, MetricSet};
use crate::pipeline::SAMPLE_INTERVAL;
use crate::publish::cloudwatch::{self, ErrorKind, Publisher, PutRequest};
use crate::publish::{CloudWatch, Format};
use crate::sample::Source;
use crate::sample::ecs::pace;
use crate::sample::scope::{self, Opened, Opening};
use crate::setup::{self, Destination};

/// A step failed; its line is printed. The status is the one a run with the same
/// settings exits with: 2 for a setting that cannot work here (no region, a scope that
/// cannot be measured), 1 for the rest.
#[derive(Debug)]
pub struct Failed(pub u8);

/// One line on stdout. A closed stdout (`check | head -1`) is not worth a panic.
fn say(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

fn ok(step: &str, text: impl Display) {
    say(format_args!("ok    {step}: {text}"));
}

fn fail(step: &str, text: impl Display) -> Failed {
    say(format_args!("FAIL  {step}: {text}"));
    Failed(1)
}

/// A failure that stops a run at start, with status 2.
fn refuse(step: &str, text: impl Display) -> Failed {
    Failed(fail(step, text).0 + 1)
}

/// Not a failure, but something the user asked for and will not get.
fn warn(step: &str, text: impl Display) {
    say(format_args!("warn  {step}: {text}"));
}

/// Runs every step in order; `Err` after the first that fails.
pub async fn run(config: &Config) -> Result<(), Failed> {
    ok(
        "config",
        format_args!(
            "namespace {}, ServiceName={}, period {} s",
            config.namespace,
            config.service.value(),
            config.period_secs
        ),
    );
    // AWS first: it is what most often goes wrong, and costs no sampling time.
    let destination = Destination::prepare(config)
        .await
        .map_err(|e| refuse("region", e))?;
    match &destination {
        Destination::CloudWatch(_, sdk) => aws(config, sdk).await?,
        Destination::Emf(_) | Destination::DryRun(_) => {
            ok("aws", "not needed: this output sends nothing");
        }
    }

    let scoped = scope::open(config).map_err(|e| refuse("sample", e))?;
    for line in &scoped.unmeasured {
        warn("sample", line);
    }
    let opened = match scoped.opening {
        Opening::Ready(opened) => opened,
        Opening::Ecs(mut connector) => {
            connector.without_pace_lines();
            tokio::time::timeout(config.request_timeout, connector.connect())
                .await
                .map_err(|_| {
                    fail(
                        "sample",
                        format_args!(
                            "the ECS task metadata endpoint did not answer within {} s",
                            config.request_timeout.as_secs()
                        ),
                    )
                })?
        }
    };
    let dimensions = setup::dimensions(config, &opened, setup::ec2_dimensions(config).await);
    let Opened { mut source, what } = opened;
    // CPU use is a rate: it takes two readings.
    let first = source.sample().await;
    tokio::time::sleep(SAMPLE_INTERVAL).await;
    let second = source.sample().await;
    if let Some(e) = first.errors.iter().chain(&second.errors).next() {
        return Err(fail("sample", format_args!("{what}: {e}")));
    }
    // The latest values: an ECS task refreshed every 10 s has none new a second later.
    let latest = if second.idle { &first } else { &second };
    // CPU and memory always, and what else `--metrics` asks for.
    let mut shown: Vec<String> = Metric::ALL
        .into_iter()
        .filter(|m| matches!(m, Metric::Cpu | Metric::Memory) || config.metrics.contains(*m))
        .filter(|m| !m.per_container())
        .map(|m| format!("{} {}", m.name(), shown_value(m, latest.value(m))))
        .collect();
    for container in latest
        .containers
        .iter()
        .filter(|_| config.metrics.contains(Metric::ContainerCpuUtilized))
    {
        shown.push(format!(
            "{} {}: {} and {}",
            crate::domain::CONTAINER_DIMENSION,
            crate::redact::for_log(&container.name),
            shown_value(Metric::ContainerCpuUtilized, container.cpu_utilized),
            shown_value(Metric::ContainerMemoryUtilized, container.memory_utilized),
        ));
    }
    ok("sample", format_args!("{what}: {}", shown.join(", ")));
    if let Some(secs) = source.ecs_pace_secs() {
        ok("sample", pace::said(secs));
        let high_resolution = config.encoding.storage_resolution == Some(1);
        if let Some(warning) = pace::period_warning(config.period_secs, high_resolution, secs) {
            warn("sample", warning);
        }
    }
    // Sent, or printed as EMF where CloudWatch Logs may extract it, `true`'s run would
    // count as one of the job's runs: only a dry run shows it in its request.
    let sending = !matches!(destination, Destination::DryRun(_));
    let job = if config.metrics.contains(Metric::JobDuration) {
        job_of_true(config, &source, sending)
    } else {
        None
    };

    let now = unix_secs(SystemTime::now());
    let mut metrics = config.metrics;
    if sending {
        let sampled: Vec<Metric> = metrics.iter().filter(|m| m.kind() != Kind::Once).collect();
        // `--metrics job` alone: CPU and memory, so that the request still tries the
        // permission to publish.
        metrics = match MetricSet::of(&sampled) {
            set if set.is_empty() => MetricSet::default(),
            set => set,
        };
    }
    let mut aggregator = Aggregator::new(config.period_secs, metrics, dimensions);
    aggregator.add(now, &first);
    aggregator.add(now, &second);
    if let Some(run) = job.as_ref().filter(|_| !sending) {
        aggregator.add_job(now, run);
    }
    let window = aggregator.finish().ok_or_else(|| {
        fail(
            "send",
            "no metric was measured, so there is nothing to send",
        )
    })?;

    match &destination {
        Destination::CloudWatch(cloudwatch, _) => {
            let request = PutRequest {
                namespace: config.namespace.clone(),
                metric_data: cloudwatch::encode(&window, &config.encoding),
            };
            send(cloudwatch, &request, config).await?;
        }
        Destination::Emf(emf) => print(emf, &window)?,
        Destination::DryRun(dry_run) => print(dry_run, &window)?,
    }
    let containers = source.ecs_task().map_or(0, |t| t.measured().count());
    if let Some(groups) = crate::cost::by_group(config, containers) {
        ok("metrics", groups);
    }
    let estimate = crate::cost::Estimate::of(config, containers);
    match config.output {
        Output::DryRun => ok(
            "cost",
            format_args!("none for a dry run; sent with --output cloudwatch, {estimate}"),
        ),
        _ => ok("cost", estimate),
    }
    say(format_args!("check passed"));
    Ok(())
}

/// The job metrics of a run of `true`, measured as the command's would be (the command
/// itself is not run: a preflight must not start the job); `None`, with a warning, where
/// `true` cannot be started (an image without it). `sending`: the check's request is
/// sent or printed as EMF, which they stay out of.
fn job_of_true(config: &Config, source: &impl Source, sending: bool) -> Option<JobRun> {
    let command = ["true".to_owned()];
    let mut run = match crate::supervise::run_plain(&command) {
        Ok(run) => run,
        Err(e) => {
            warn(
                "job",
                format_args!("cannot show the job metrics of `true`: {e}"),
            );
            return None;
        }
    };
    run.peak_memory = source.recorded_peak().or(run.peak_memory);
    let values: Vec<String> = Metric::JOB
        .into_iter()
        .map(|m| format!("{} {}", m.name(), shown_value(m, run.value(m))))
        .collect();
    ok(
        "job",
        format_args!(
            "`true` run as the command would be: {}; {} itself is not run by check{}",
            values.join(", "),
            config.command.first().map_or("the command", String::as_str),
            if sending {
                "; left out of the request, where they would count as a run of the job"
            } else {
                ""
            }
        ),
    );
    Some(run)
}

/// Region, endpoint, proxy and credentials, each with where it came from.
async fn aws(config: &Config, sdk: &SdkConfig) -> Result<(), Failed> {
    let region_flag = matches!(
        config.output,
        Output::CloudWatch {
            region: Some(_),
            ..
        }
    );
    let region = sdk.region().map_or("", |r| r.as_ref());
    ok(
        "region",
        format_args!("{region} (from {})", region_source(region_flag, region)),
    );
    let (url, source) = cloudwatch::endpoint(sdk);
    ok(
        "endpoint",
        format_args!("{} (from {source})", crate::redact::url(&url)),
    );
    ok(
        "proxy",
        format_args!("CloudWatch {}", crate::proxy::route(&url)),
    );
    credentials(sdk, config.request_timeout).await
}

fn region_source(flag: bool, region: &str) -> &'static str {
    let env_is = |name| std::env::var(name).is_ok_and(|v| v == region);
    if flag {
        "--region"
    } else if env_is("AWS_REGION") {
        "AWS_REGION"
    } else if env_is("AWS_DEFAULT_REGION") {
        "AWS_DEFAULT_REGION"
    } else {
        "the AWS profile or the EC2 instance metadata"
    }
}

/// Resolves credentials now (a run would only find out at its first send) and says which
/// provider gave them; the keys themselves are never printed.
async fn credentials(sdk: &SdkConfig, timeout: Duration) -> Result<(), Failed> {
    let provider = sdk
        .credentials_provider()
        .ok_or_else(|| fail("credentials", "no credentials provider is configured"))?;
    let resolved = tokio::time::timeout(timeout, provider.provide_credentials())
        .await
        .map_err(|_| {
            fail(
                "credentials",
                format_args!(
                    "not resolved within {} s (is the instance metadata service reachable?)",
                    timeout.as_secs()
                ),
            )
        })?;
    let credentials = resolved.map_err(|e| {
        fail(
            "credentials",
            format_args!(
                "none found: {}. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or \
                 AWS_PROFILE, or run with an ECS task role or an EC2 instance role",
                crate::redact::chain(&e)
            ),
        )
    })?;
    let source = credentials
        .get_property::<Vec<AwsCredentialFeature>>()
        .and_then(|features| features.iter().find_map(credential_source))
        .unwrap_or("the AWS default credential chain");
    let expiry = credentials
        .expiry()
        .and_then(|at| at.duration_since(SystemTime::now()).ok())
        .map(|left| format!(", expiring in {} min", left.as_secs() / 60))
        .unwrap_or_default();
    ok("credentials", format_args!("from {source}{expiry}"));
    Ok(())
}

/// Where credentials came from, in the words of the AWS docs.
fn credential_source(feature: &AwsCredentialFeature) -> Option<&'static str> {
    use AwsCredentialFeature as F;
    Some(match feature {
        F::CredentialsEnvVars => "environment variables (AWS_ACCESS_KEY_ID)",
        F::CredentialsProfile | F::CredentialsProfileSourceProfile => {
            "the shared config and credentials files (AWS_PROFILE)"
        }
        F::CredentialsProcess | F::CredentialsProfileProcess => {
            "the credential_process of the AWS profile"
        }
        F::CredentialsEnvVarsStsWebIdToken
        | F::CredentialsProfileStsWebIdToken
        | F::CredentialsStsAssumeRoleWebId => "a web identity token (AWS_WEB_IDENTITY_TOKEN_FILE)",
        F::CredentialsStsAssumeRole => "an assumed role (role_arn in the AWS profile)",
        F::CredentialsHttp => "the container credentials endpoint (the ECS task role)",
        F::CredentialsImds => "the EC2 instance metadata service (the instance role)",
        _ => return None,
    })
}

/// Sends the request for real, turning each kind of failure into what to do about it.
async fn send(
    cloudwatch: &CloudWatch,
    request: &PutRequest,
    config: &Config,
) -> Result<(), Failed> {
    match cloudwatch.publish(request).await {
        Ok(()) => {
            ok(
                "send",
                format_args!(
                    "PutMetricData accepted {} datums in namespace {}",
                    request.metric_data.len(),
                    request.namespace
                ),
            );
            Ok(())
        }
        Err(e) => Err(fail(
            "send",
            match e.kind {
                ErrorKind::Auth => format!(
                    "not allowed: {}. The role needs cloudwatch:PutMetricData for namespace {} \
                     (see deploy/iam-policy.json)",
                    e.message, config.namespace
                ),
                ErrorKind::Transient => format!("CloudWatch {}", e.message),
                ErrorKind::Throttled => format!("throttled, try again: {}", e.message),
                ErrorKind::Invalid => format!("the request was refused: {}", e.message),
            },
        )),
    }
}

/// Prints the window as the output would, without sending it.
fn print(format: &impl Format, window: &crate::domain::Window) -> Result<(), Failed> {
    let mut lines = Vec::new();
    format.encode(window, &mut lines);
    let mut stdout = std::io::stdout().lock();
    lines
        .iter()
        .try_for_each(|line| stdout.write_all(line))
        .and_then(|()| stdout.flush())
        .map_err(|e| fail("send", format_args!("cannot write to stdout: {e}")))?;
    drop(stdout);
    ok("send", "printed above, not sent (dry run)");
    Ok(())
}

/// A sampled value with its unit, as a reader of the line wants it.
fn shown_value(metric: Metric, value: Option<f64>) -> String {
    let Some(v) = value else {
        return "not measured".to_owned();
    };
    match (metric.kind(), metric.unit()) {
        (Kind::Percent, _) => format!("{v:.1} %"),
        (Kind::Count, _) => format!("{v} in the last second"),
        (Kind::Absolute, "None") => format!("{v:.1} CPU units"),
        (Kind::Absolute, "Megabytes") => format!("{v:.1} MiB"),
        (Kind::Absolute, "Gigabytes") => format!("{v:.2} GiB"),
        (Kind::Absolute, "Bytes/Second") => format!("{v:.0} B/s"),
        (Kind::Absolute, unit) => format!("{v} {unit}"),
        (Kind::Once, "Seconds") => format!("{v:.3} s"),
        (Kind::Once, "Bytes") => format!("{:.1} MiB", v / (1024.0 * 1024.0)),
        (Kind::Once, _) => format!("{v}"),
    }
}
