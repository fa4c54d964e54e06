//! The checked configuration the agent runs with. Every rule on user input lives here, so
//! a bad value is refused once, up front, with a message that names it and the rule.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::cli::{self, AggregationArg, CompatArg, FromEnv, MetricArg, Opts, OutputArg};
use crate::dimensions::{self, FlagError};
use crate::domain::{Aggregation, Dimension, Encoding, Metric, MetricSet};

/// Longest namespace CloudWatch accepts (PutMetricData API reference, `Namespace`).
pub const MAX_NAMESPACE_LEN: usize = 255;
/// Longest period: one day. Longer windows would hold data back for days.
pub const MAX_PERIOD_SECS: u64 = 86_400;
/// Longest flush on shutdown; orchestrators kill long before this (ECS waits 30 s).
pub const MAX_FLUSH_TIMEOUT_SECS: f64 = 3_600.0;
/// Largest `--buffer-size`: a datum takes at most a few KiB, so this bounds memory to
/// tens of MiB at worst.
pub const MAX_BUFFER_SIZE: usize = 100_000;
/// Longest `--retry-max-backoff` and `--request-timeout`.
pub const MAX_WAIT_SECS: f64 = 3_600.0;
/// Shortest duration taken: a millisecond. Below it a value is a typo (`1e-300` would
/// otherwise become 0, which the timeouts cannot mean).
pub const MIN_SECS: f64 = 0.001;

/// What the agent runs with, built from [`Opts`] by [`Config::from_opts`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// CloudWatch namespace of every metric.
    pub namespace: String,
    /// `ServiceName=<--service>`, the first dimension of every metric.
    pub service: Dimension,
    /// Window length in seconds, 1..=86400; windows start at multiples of it since the epoch.
    pub period_secs: u64,
    /// Shape of each window's datums and their storage resolution.
    pub encoding: Encoding,
    /// What the numbers describe.
    pub scope: Scope,
    /// Which metrics are sent.
    pub metrics: MetricSet,
    /// `--dimension` pairs, sent after `ServiceName`; their names, with the ECS and EC2
    /// ones asked for, are unique and at most 30 with `ServiceName`.
    pub dimensions: Vec<Dimension>,
    /// Add the EC2 instance's dimensions, read at start.
    pub ec2_dimensions: bool,
    /// Where the requests go.
    pub output: Output,
    /// How long the final publish on SIGTERM/SIGINT may take.
    pub flush_timeout: Duration,
    /// Most datums queued for retry.
    pub buffer_size: usize,
    /// Longest wait between retries.
    pub retry_max_backoff: Duration,
    /// Longest one PutMetricData attempt may take.
    pub request_timeout: Duration,
    /// How far each agent's send offset may reach (`--send-delay`).
    pub send_delay: SendDelay,
    /// Windows per request (`--send-every`).
    pub send_every: u64,
    /// Wrapper mode: the command to run as a child (empty: the agent runs alone).
    pub command: Vec<String>,
    /// Forward signals to the child's whole process group.
    pub signal_group: bool,
    /// Directory under which `proc/` is read; `/` outside tests.
    pub root: PathBuf,
}

/// Where requests go; chosen once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Real `PutMetricData` calls through the AWS SDK.
    CloudWatch {
        /// Overrides the SDK's region chain when set.
        region: Option<String>,
        /// Overrides `AWS_ENDPOINT_URL` and the region's endpoint when set.
        endpoint_url: Option<String>,
    },
    /// One JSON line per request on stdout; nothing sent.
    DryRun,
    /// Embedded Metric Format documents on stdout, for CloudWatch Logs to extract.
    Emf,
}

/// What the numbers describe. `--scope auto` is resolved here as far as the input tells
/// (ECS sets its endpoint variable); the choice between cgroup and host needs a look at
/// the cgroup filesystem, made at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// `cgroup` where the agent is in a container or under limits, else `host`.
    CgroupOrHost,
    /// The machine or VM, from `/proc`.
    Host,
    /// The agent's own cgroup, from `/sys/fs/cgroup`.
    Cgroup,
    /// The ECS task, from the task metadata endpoint v4.
    EcsTask {
        /// `ECS_CONTAINER_METADATA_URI_V4`.
        metadata_uri: String,
        /// Add `ClusterName` and `TaskDefinitionFamily` to every datum.
        dimensions: bool,
        /// Add `TaskId` to every datum.
        task_id: bool,
    },
}

/// `--send-delay`: how far after each window an agent's send offset may reach.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SendDelay {
    /// A quarter of the send cycle, at most 15 s.
    Auto,
    /// Up to this long; zero sends every window as soon as it closes.
    Within(Duration),
}

/// A value the user gave that the agent cannot run with.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("missing {flag}: {what}")]
    Missing {
        flag: &'static str,
        what: &'static str,
    },
    #[error("invalid {flag} {value:?}: {rule}")]
    Invalid {
        /// The flag, or the environment variable the value came from.
        flag: String,
        value: String,
        rule: String,
    },
}

impl Config {
    /// Checks every value in `opts`; the first bad one is the error. A value that came
    /// from an environment variable is named by the variable.
    pub fn from_opts(mut opts: Opts) -> Result<Config, ConfigError> {
        let from_env = std::mem::take(&mut opts.from_env);
        Config::check(opts, &from_env).map_err(|mut e| {
            if let ConfigError::Invalid { flag, .. } = &mut e
                && let Some(source) = from_env.iter().find(|f| f.flag == *flag)
            {
                flag.clone_from(&source.variable);
            }
            e
        })
    }

    fn check(opts: Opts, from_env: &[FromEnv]) -> Result<Config, ConfigError> {
        let namespace = opts.namespace.ok_or(ConfigError::Missing {
            flag: "--namespace (or CWMA_NAMESPACE)",
            what: "the CloudWatch namespace to publish under, e.g. --namespace MyApp",
        })?;
        check_namespace(&namespace)?;
        let service = opts.service.ok_or(ConfigError::Missing {
            flag: "--service (or CWMA_SERVICE)",
            what: "the ServiceName dimension value, e.g. --service web",
        })?;
        let service = service_dimension(&service)?;
        let period_secs = parse_period(&opts.period)?;
        let flush_timeout = parse_flush_timeout(&opts.flush_timeout)?;
        let retry_max_backoff = parse_seconds("--retry-max-backoff", &opts.retry_max_backoff)?;
        let request_timeout = parse_seconds("--request-timeout", &opts.request_timeout)?;
        let kind = output_kind(opts.dry_run, opts.output)?;
        // The send settings pace PutMetricData requests; EMF and dry-run lines are written
        // as each window closes, so a fleet-wide setting must not stop them (a dry run
        // still costs valid ones as the requests it previews).
        let send = parse_send_every(&opts.send_every, period_secs).and_then(|every| {
            parse_send_delay(&opts.send_delay, period_secs * every).map(|delay| (every, delay))
        });
        let (send_every, send_delay) = match send {
            Ok(send) => send,
            Err(e) if kind == OutputArg::Cloudwatch => return Err(e),
            Err(e) => {
                log::debug!("ignored, as it paces PutMetricData requests only: {e}");
                (1, SendDelay::Auto)
            }
        };
        let scope = resolve_scope(
            opts.scope,
            opts.ecs_metadata_uri,
            opts.ecs_dimensions,
            opts.task_id_dimension,
        )?;
        let explicit_ecs = opts.scope == cli::ScopeArg::EcsTask;
        let wrapping = !opts.command.is_empty();
        let metrics = metric_set(&opts.metrics, &scope, explicit_ecs, wrapping)?;
        let aggregation = aggregation(opts.aggregation, opts.compat, metrics)?;
        // 0.1.x always sent standard-resolution datums; an explicit flag still counts.
        let storage_resolution = match (opts.storage_resolution.as_deref(), aggregation) {
            (None, Aggregation::Original) => None,
            (text, _) => storage_resolution(text, period_secs)?,
        };
        let encoding = Encoding {
            aggregation,
            storage_resolution,
        };
        let added = dimensions::Added {
            ecs: matches!(
                scope,
                Scope::EcsTask {
                    dimensions: true,
                    ..
                }
            ),
            task_id: matches!(scope, Scope::EcsTask { task_id: true, .. }),
            ec2: opts.ec2_dimensions,
            batch: opts.batch_dimensions,
            container: metrics.iter().any(Metric::per_container),
        };
        let pairs = if from_env.iter().any(|f| f.flag == "--dimension") {
            // One variable holds the list: split at commas, `\,` keeps one in a value.
            opts.dimensions.iter().flat_map(|v| split_list(v)).collect()
        } else {
            opts.dimensions
        };
        let mut dimensions = parse_dimensions(&pairs, added)?;
        if opts.batch_dimensions {
            dimensions.extend(batch_dimensions(
                opts.batch_job_queue.as_deref(),
                opts.batch_compute_environment.as_deref(),
            )?);
        }
        if opts.signal_group && opts.command.is_empty() {
            return Err(invalid(
                "--signal-group",
                "true",
                "only applies to a wrapped command: cloudwatch_metrics_agent [options] -- CMD",
            ));
        }
        let output = match kind {
            OutputArg::DryRun => Output::DryRun,
            OutputArg::Emf => {
                check_emf_dimension_names(&dimensions, metrics, aggregation)?;
                Output::Emf
            }
            OutputArg::Cloudwatch => {
                if let Some(region) = &opts.region {
                    check_region(region)?;
                }
                if let Some(url) = &opts.endpoint_url {
                    check_endpoint_url(url)?;
                }
                Output::CloudWatch {
                    region: opts.region,
                    endpoint_url: opts.endpoint_url,
                }
            }
        };
        let buffer_size = parse_buffer_size(&opts.buffer_size)?;
        if let Output::CloudWatch { .. } = output {
            let needed = encoding.datums_per_window(metrics, period_secs)
                * windows_held(period_secs, send_every, request_timeout);
            if buffer_size < needed {
                return Err(invalid(
                    "--buffer-size",
                    &opts.buffer_size,
                    format!(
                        "is below the {needed} datums one send cycle can hold while every \
                         request succeeds (for these metrics, --period, --send-every and \
                         --request-timeout): use at least {needed}"
                    ),
                ));
            }
        }
        Ok(Config {
            namespace,
            service,
            period_secs,
            encoding,
            scope,
            metrics,
            dimensions,
            ec2_dimensions: opts.ec2_dimensions,
            output,
            flush_timeout,
            buffer_size,
            retry_max_backoff,
            request_timeout,
            send_delay,
            send_every,
            command: opts.command,
            signal_group: opts.signal_group,
            root: opts.root,
        })
    }
}

/// The most closed windows the CloudWatch queue holds at once while every request
/// succeeds: the group of `--send-every` windows waiting for its send time, as many more
/// closing before that time (an agent's offset reaches up to a whole cycle once it has
/// been throttled), and those closing while the request is out (`--request-timeout`, and
/// the two seconds a group waits for its last window).
fn windows_held(period_secs: u64, send_every: u64, request_timeout: Duration) -> usize {
    let in_flight = (request_timeout.as_secs_f64() + 2.0) / period_secs.max(1) as f64;
    let windows = 2 * send_every + in_flight.ceil() as u64;
    usize::try_from(windows).unwrap_or(usize::MAX)
}

/// `--dry-run` and `--output`, which must agree.
fn output_kind(dry_run: bool, output: Option<OutputArg>) -> Result<OutputArg, ConfigError> {
    match (dry_run, output) {
        (true, Some(kind)) if kind != OutputArg::DryRun => Err(invalid(
            "--dry-run",
            "true",
            format!("contradicts --output {kind:?}; --dry-run means --output dry-run"),
        )),
        (true, _) => Ok(OutputArg::DryRun),
        (false, kind) => Ok(kind.unwrap_or(OutputArg::Cloudwatch)),
    }
}

/// A comma-separated list from one environment variable, `\,` standing for a comma
/// inside an item (`CWMA_DIMENSIONS='Owners=alice\,bob,Env=prod'`).
fn split_list(text: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut item = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                chars.next();
                item.push(',');
            }
            ',' => items.push(std::mem::take(&mut item)),
            c => item.push(c),
        }
    }
    items.push(item);
    items
}

/// The error for `value` of `flag`. The value is shown as typed, but without a URL's
/// user information (a password) and cut to a length that fits a line.
fn invalid(flag: &'static str, value: &str, rule: impl Into<String>) -> ConfigError {
    const SHOWN_CHARS: usize = 300;
    let value = crate::redact::url(value);
    let value = match value.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value,
    };
    ConfigError::Invalid {
        flag: flag.to_owned(),
        value,
        rule: rule.into(),
    }
}

/// CloudWatch's namespace rules (PutMetricData API reference and the `AWS/` reservation).
fn check_namespace(ns: &str) -> Result<(), ConfigError> {
    const FLAG: &str = "--namespace";
    if ns.trim().is_empty() {
        return Err(invalid(FLAG, ns, "must not be empty or blank"));
    }
    if ns.len() > MAX_NAMESPACE_LEN {
        return Err(invalid(
            FLAG,
            ns,
            format!(
                "is {} characters long; the limit is {MAX_NAMESPACE_LEN}",
                ns.chars().count()
            ),
        ));
    }
    if let Some(bad) = ns
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ".-_/#: ".contains(*c)))
    {
        return Err(invalid(
            FLAG,
            ns,
            format!("has {bad:?}; allowed are 0-9 A-Z a-z . - _ / # : and space"),
        ));
    }
    if ns.starts_with("AWS/") {
        return Err(invalid(
            FLAG,
            ns,
            "must not start with \"AWS/\", which AWS reserves",
        ));
    }
    Ok(())
}

/// `--service` is the value of the `ServiceName` dimension: the dimension value rules.
fn service_dimension(service: &str) -> Result<Dimension, ConfigError> {
    Dimension::service(service).map_err(|e| invalid("--service", service, e.to_string()))
}

fn parse_period(text: &str) -> Result<u64, ConfigError> {
    let rule = format!("must be a whole number of seconds from 1 to {MAX_PERIOD_SECS}");
    match text.parse::<u64>() {
        Ok(secs) if (1..=MAX_PERIOD_SECS).contains(&secs) => Ok(secs),
        _ => Err(invalid("--period", text, rule)),
    }
}

fn parse_flush_timeout(text: &str) -> Result<Duration, ConfigError> {
    match text.parse::<f64>() {
        Ok(secs) if (MIN_SECS..=MAX_FLUSH_TIMEOUT_SECS).contains(&secs) => {
            Ok(Duration::from_secs_f64(secs))
        }
        _ => Err(invalid(
            "--flush-timeout",
            text,
            format!("must be a number of seconds from {MIN_SECS} to {MAX_FLUSH_TIMEOUT_SECS}"),
        )),
    }
}

/// `ECS_CONTAINER_METADATA_URI_V4`: an `http://` or `https://` URL with a host, as ECS
/// sets it (`http://169.254.170.2/v4/<id>`), nothing around it.
fn check_metadata_uri(uri: &str) -> Result<(), ConfigError> {
    if is_url_with_host(uri) {
        Ok(())
    } else {
        Err(invalid(
            "ECS_CONTAINER_METADATA_URI_V4",
            uri,
            "must be the http:// URL ECS sets (like http://169.254.170.2/v4/…), nothing around it",
        ))
    }
}

/// `auto` is `ecs-task` wherever ECS has injected its metadata endpoint, else `host`.
fn resolve_scope(
    scope: cli::ScopeArg,
    metadata_uri: Option<String>,
    dimensions: bool,
    task_id: bool,
) -> Result<Scope, ConfigError> {
    let metadata_uri = metadata_uri.filter(|uri| !uri.trim().is_empty());
    let resolved = match (scope, metadata_uri) {
        (cli::ScopeArg::Host, _) => Scope::Host,
        (cli::ScopeArg::Cgroup, _) => Scope::Cgroup,
        (cli::ScopeArg::Auto, None) => Scope::CgroupOrHost,
        (cli::ScopeArg::Auto | cli::ScopeArg::EcsTask, Some(uri)) => {
            // Under `auto` too: ECS sets it, so a broken value is a broken setup.
            check_metadata_uri(&uri)?;
            Scope::EcsTask {
                metadata_uri: uri,
                dimensions,
                task_id,
            }
        }
        (cli::ScopeArg::EcsTask, None) => {
            return Err(ConfigError::Missing {
                flag: "ECS_CONTAINER_METADATA_URI_V4",
                what: "--scope ecs-task reads the task metadata endpoint that ECS sets in \
                       every container; outside ECS use --scope host",
            });
        }
    };
    for (asked, flag) in [
        (dimensions, "--ecs-dimensions"),
        (task_id, "--task-id-dimension"),
    ] {
        if asked && !matches!(resolved, Scope::EcsTask { .. }) {
            return Err(invalid(
                flag,
                "true",
                "needs the ecs-task scope (ECS_CONTAINER_METADATA_URI_V4 set by ECS)",
            ));
        }
    }
    for_platform(resolved, cfg!(target_os = "linux"))
}

/// cgroups and ECS task metadata exist only on Linux: elsewhere `auto` is `host`, and
/// asking for either by name is an error rather than a silent switch.
fn for_platform(scope: Scope, linux: bool) -> Result<Scope, ConfigError> {
    let name = match scope {
        _ if linux => return Ok(scope),
        Scope::Host | Scope::CgroupOrHost => return Ok(Scope::Host),
        Scope::Cgroup => "cgroup",
        Scope::EcsTask { .. } => "ecs-task",
    };
    Err(invalid(
        "--scope",
        name,
        format!(
            "is Linux-only; on {} use --scope host",
            std::env::consts::OS
        ),
    ))
}

/// The metrics a `--metrics` argument selects.
fn selected(arg: MetricArg) -> &'static [Metric] {
    match arg {
        MetricArg::Cpu => &[Metric::Cpu],
        MetricArg::Memory => &[Metric::Memory],
        MetricArg::Throttling => &[Metric::Throttled],
        MetricArg::Oom => &[Metric::OomKills],
        MetricArg::Pressure => &Metric::PRESSURE,
        MetricArg::Absolute => &[
            Metric::CpuUtilized,
            Metric::CpuReserved,
            Metric::MemoryUtilized,
            Metric::MemoryReserved,
        ],
        MetricArg::Containers => &[
            Metric::ContainerCpuUtilized,
            Metric::ContainerMemoryUtilized,
        ],
        MetricArg::Network => &[Metric::NetworkRx, Metric::NetworkTx],
        MetricArg::Storage => &[Metric::StorageRead, Metric::StorageWrite],
        MetricArg::EphemeralStorage => &[
            Metric::EphemeralUtilized,
            Metric::EphemeralReserved,
            Metric::EphemeralUtilization,
        ],
        MetricArg::Restarts => &[Metric::Restarts],
        MetricArg::Job => &Metric::JOB,
    }
}

/// How `arg` is typed in `--metrics` (clap's kebab-case name; a test checks them).
fn arg_name(arg: MetricArg) -> &'static str {
    match arg {
        MetricArg::Cpu => "cpu",
        MetricArg::Memory => "memory",
        MetricArg::Throttling => "throttling",
        MetricArg::Oom => "oom",
        MetricArg::Pressure => "pressure",
        MetricArg::Absolute => "absolute",
        MetricArg::Containers => "containers",
        MetricArg::Network => "network",
        MetricArg::Storage => "storage",
        MetricArg::EphemeralStorage => "ephemeral-storage",
        MetricArg::Restarts => "restarts",
        MetricArg::Job => "job",
    }
}

/// The `--metrics` argument that selects `metric`, as the user types it.
pub fn metric_arg(metric: Metric) -> &'static str {
    use clap::ValueEnum;
    MetricArg::value_variants()
        .iter()
        .find(|arg| selected(**arg).contains(&metric))
        .map_or("cpu", |arg| arg_name(*arg))
}

/// The metrics only the ECS task metadata has: a task's containers and `/task`'s fields.
const ECS_ONLY: [Metric; 6] = [
    Metric::ContainerCpuUtilized,
    Metric::ContainerMemoryUtilized,
    Metric::EphemeralUtilized,
    Metric::EphemeralReserved,
    Metric::EphemeralUtilization,
    Metric::Restarts,
];

fn metric_set(
    metrics: &[MetricArg],
    scope: &Scope,
    explicit_ecs: bool,
    wrapping: bool,
) -> Result<MetricSet, ConfigError> {
    let chosen: Vec<Metric> = metrics.iter().flat_map(|m| selected(*m)).copied().collect();
    let set = MetricSet::of(&chosen);
    if set.is_empty() {
        return Err(invalid(
            "--metrics",
            "",
            "must name at least one of cpu, memory, throttling, oom, pressure, absolute, \
             containers, network, storage, ephemeral-storage, restarts, job",
        ));
    }
    if !wrapping && Metric::JOB.iter().any(|m| set.contains(*m)) {
        return Err(invalid(
            "--metrics",
            "job",
            "describes a run of a command the agent starts, and there is none: put the \
             command after the options (cloudwatch_metrics_agent [options] -- CMD)",
        ));
    }
    // The task metadata endpoint has neither; under `auto` the run warns instead.
    if explicit_ecs {
        for (metric, arg) in [(Metric::OomKills, "oom"), (Metric::CpuPressure, "pressure")] {
            if set.contains(metric) {
                return Err(invalid(
                    "--metrics",
                    arg,
                    "the ECS task metadata endpoint does not report it; measure it with \
                     --scope cgroup inside a container instead",
                ));
            }
        }
    }
    if !matches!(scope, Scope::EcsTask { .. })
        && let Some(metric) = ECS_ONLY.iter().find(|m| set.contains(**m))
    {
        return Err(invalid(
            "--metrics",
            metric_arg(*metric),
            "only the ECS task metadata has it: it needs the ecs-task scope \
             (ECS_CONTAINER_METADATA_URI_V4, set by ECS in every container)",
        ));
    }
    if set.contains(Metric::Throttled) && matches!(scope, Scope::Host | Scope::EcsTask { .. }) {
        return Err(invalid(
            "--metrics",
            "throttling",
            "CPU throttling is measured only in the cgroup scope (--scope cgroup or auto)",
        ));
    }
    Ok(set)
}

/// `--batch-dimensions`: `JobQueue` and `ComputeEnvironment` from the variables AWS Batch
/// sets (read as hidden flags, so that an error names the variable).
fn batch_dimensions(
    queue: Option<&str>,
    environment: Option<&str>,
) -> Result<Vec<Dimension>, ConfigError> {
    let (Some(queue), Some(environment)) = (queue, environment) else {
        return Err(invalid(
            "--batch-dimensions",
            "true",
            "needs AWS_BATCH_JQ_NAME and AWS_BATCH_CE_NAME, which AWS Batch sets in a job's \
             container; outside AWS Batch leave it off",
        ));
    };
    let [queue_name, environment_name] = dimensions::BATCH_NAMES;
    [
        ("--batch-job-queue", queue_name, queue),
        ("--batch-compute-environment", environment_name, environment),
    ]
    .into_iter()
    .map(|(flag, name, value)| {
        Dimension::new(name, value).map_err(|rule| invalid(flag, value, rule.to_string()))
    })
    .collect()
}

/// High resolution (1) by default when windows are shorter than CloudWatch's standard
/// minute; `None` means standard resolution, CloudWatch's default.
fn storage_resolution(text: Option<&str>, period_secs: u64) -> Result<Option<u32>, ConfigError> {
    match text {
        None if period_secs < 60 => Ok(Some(1)),
        None => Ok(None),
        Some("1") => Ok(Some(1)),
        Some("60") => Ok(None),
        Some(other) => Err(invalid("--storage-resolution", other, "must be 1 or 60")),
    }
}

/// `Name=Value` pairs under the dimension rules, with names unique (also against
/// `ServiceName` and the ECS and EC2 names asked for) and at most 30 in all.
fn parse_dimensions(
    pairs: &[String],
    added: dimensions::Added,
) -> Result<Vec<Dimension>, ConfigError> {
    const FLAG: &str = "--dimension";
    let mut parsed = Vec::with_capacity(pairs.len());
    // Spaces trimmed: `CWMA_DIMENSIONS="A=1, B=2"` means B, not " B". (Only spaces: a
    // CR or a tab is a control character, refused with the rest.)
    for pair in pairs
        .iter()
        .map(|p| p.trim_matches(' '))
        .filter(|p| !p.is_empty())
    {
        let dimension = dimensions::parse_flag(pair).map_err(|e| match e {
            FlagError::NotAPair => invalid(FLAG, pair, "must be Name=Value"),
            FlagError::Rule(rule) => invalid(FLAG, pair, rule.to_string()),
        })?;
        parsed.push(dimension);
    }
    dimensions::check_names(&parsed, added).map_err(|e| {
        let value = match &e {
            dimensions::SetError::Twice { name, .. } => name.clone(),
            dimensions::SetError::TooMany { count, .. } => format!("{count} dimensions"),
        };
        invalid(FLAG, &value, e.to_string())
    })?;
    Ok(parsed)
}

/// `--aggregation` and `--compat`: the latter fixes the shape, so the two exclude each
/// other, and 0.1.x published CPU and memory only.
fn aggregation(
    mode: Option<AggregationArg>,
    compat: Option<CompatArg>,
    metrics: MetricSet,
) -> Result<Aggregation, ConfigError> {
    match (compat, mode) {
        (Some(CompatArg::V0_1), Some(mode)) => Err(invalid(
            "--aggregation",
            match mode {
                AggregationArg::Distribution => "distribution",
                AggregationArg::MedianMax => "median-max",
            },
            "contradicts --compat 0.1, which publishes the 0.1.x shape (medians and \
             MaxMemoryUtilization as 0–1)",
        )),
        (Some(CompatArg::V0_1), None) => match metrics
            .iter()
            .find(|m| !matches!(m, Metric::Cpu | Metric::Memory))
        {
            Some(extra) => Err(invalid(
                "--metrics",
                metric_arg(extra),
                "is not a metric 0.1.x published; --compat 0.1 sends cpu and memory",
            )),
            None => Ok(Aggregation::Original),
        },
        (None, Some(AggregationArg::MedianMax)) => Ok(Aggregation::MedianMax),
        (None, _) => Ok(Aggregation::Distribution),
    }
}

/// An EMF document holds the dimensions and the metrics as members of one JSON object
/// beside `_aws`, the metadata: a dimension named `_aws` or like a metric the run
/// publishes would overwrite it, and CloudWatch Logs would extract nothing. CloudWatch
/// takes dimension names of up to 255 characters, but the EMF specification's schema
/// only up to 250.
fn check_emf_dimension_names(
    dimensions: &[Dimension],
    metrics: MetricSet,
    aggregation: Aggregation,
) -> Result<(), ConfigError> {
    use crate::domain::dimension::{EMF_METADATA_MEMBER, MAX_EMF_NAME_LEN};
    for d in dimensions {
        let name = d.name();
        if name.len() > MAX_EMF_NAME_LEN {
            return Err(invalid(
                "--dimension",
                name,
                format!(
                    "is a name of {} characters; with --output emf the limit is \
                     {MAX_EMF_NAME_LEN} (EMF specification)",
                    name.len()
                ),
            ));
        }
        if name == EMF_METADATA_MEMBER {
            return Err(invalid(
                "--dimension",
                name,
                "is the member an EMF document keeps its metadata in; with --output emf a \
                 dimension needs another name",
            ));
        }
        if metrics.iter().any(|m| aggregation.names(m).contains(&name)) {
            return Err(invalid(
                "--dimension",
                name,
                "is the name of a metric this run publishes; in an EMF document the two \
                 would be one member, so with --output emf a dimension needs another name",
            ));
        }
    }
    Ok(())
}

fn parse_buffer_size(text: &str) -> Result<usize, ConfigError> {
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_BUFFER_SIZE).contains(&n) => Ok(n),
        _ => Err(invalid(
            "--buffer-size",
            text,
            format!("must be a whole number of datums from 1 to {MAX_BUFFER_SIZE}"),
        )),
    }
}

fn parse_seconds(flag: &'static str, text: &str) -> Result<Duration, ConfigError> {
    match text.parse::<f64>() {
        Ok(secs) if (MIN_SECS..=MAX_WAIT_SECS).contains(&secs) => Ok(Duration::from_secs_f64(secs)),
        _ => Err(invalid(
            flag,
            text,
            format!("must be a number of seconds from {MIN_SECS} to {MAX_WAIT_SECS}"),
        )),
    }
}

/// Most windows in one request: an hour of minutes. Far below what one request holds
/// (1000 datums: a window of two distributions is two datums), and the freshness cost
/// grows with it.
pub const MAX_SEND_EVERY: u64 = 60;

fn parse_send_every(text: &str, period_secs: u64) -> Result<u64, ConfigError> {
    const FLAG: &str = "--send-every";
    match text.parse::<u64>() {
        Ok(n) if (1..=MAX_SEND_EVERY).contains(&n) => {
            if n * period_secs > MAX_PERIOD_SECS {
                return Err(invalid(
                    FLAG,
                    text,
                    format!(
                        "times --period {period_secs} is over a day ({MAX_PERIOD_SECS} s): \
                         data would wait that long"
                    ),
                ));
            }
            Ok(n)
        }
        _ => Err(invalid(
            FLAG,
            text,
            format!("must be a whole number of windows from 1 to {MAX_SEND_EVERY}"),
        )),
    }
}

/// `auto`, or seconds from 0 to below the send cycle (`--period` × `--send-every`).
fn parse_send_delay(text: &str, cycle_secs: u64) -> Result<SendDelay, ConfigError> {
    if text == "auto" {
        return Ok(SendDelay::Auto);
    }
    match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && (0.0..cycle_secs as f64).contains(&secs) => {
            Ok(SendDelay::Within(Duration::from_secs_f64(secs)))
        }
        _ => Err(invalid(
            "--send-delay",
            text,
            format!(
                "must be auto, 0, or seconds below the {cycle_secs} s between sends \
                 (--period × --send-every)"
            ),
        )),
    }
}

fn check_region(region: &str) -> Result<(), ConfigError> {
    let valid = !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(invalid(
            "--region",
            region,
            "must be an AWS region name such as us-east-1",
        ))
    }
}

fn check_endpoint_url(url: &str) -> Result<(), ConfigError> {
    let rule = "must be an http:// or https:// URL with a host, e.g. \
                https://monitoring.us-east-1.amazonaws.com";
    if is_url_with_host(url) {
        Ok(())
    } else {
        Err(invalid("--endpoint-url", url, rule))
    }
}

/// An `http://` or `https://` URL with a host, and no white space or control character.
fn is_url_with_host(url: &str) -> bool {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    url.parse::<http::Uri>().is_ok_and(|uri| {
        matches!(uri.scheme_str(), Some("http" | "https"))
            && uri.host().is_some_and(|h| !h.is_empty())
    })
}

/// Configurations for the tests of the layers above.
#[cfg(test)]
pub(crate) mod testing {
    use clap::Parser;

    use super::*;

    /// The configuration of `--namespace NS -s svc` and then `args`, which must be valid.
    pub fn config(args: &[&str]) -> Config {
        let argv = [&["agent", "--namespace", "NS", "-s", "svc"][..], args].concat();
        Config::from_opts(Opts::try_parse_from(argv).expect("clap accepts them"))
            .expect("a valid configuration")
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn config(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["cloudwatch_metrics_agent"];
        argv.extend_from_slice(args);
        Config::from_opts(Opts::try_parse_from(argv).expect("clap accepts the arguments"))
    }

    fn error(args: &[&str]) -> String {
        config(args)
            .expect_err("config must be refused")
            .to_string()
    }

    const OK: [&str; 4] = ["--namespace", "My/App", "--service", "web"];

    fn with<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut v: Vec<&'a str> = OK.to_vec();
        v.extend_from_slice(extra);
        v
    }

    #[test]
    fn defaults_are_one_minute_distribution_to_cloudwatch() {
        let c = config(&OK).unwrap();
        assert_eq!(c.namespace, "My/App");
        assert_eq!(c.service.value(), "web");
        assert_eq!(c.period_secs, 60);
        assert_eq!(c.encoding.aggregation, Aggregation::Distribution);
        assert_eq!(c.flush_timeout, Duration::from_secs(5));
        assert_eq!(
            c.output,
            Output::CloudWatch {
                region: None,
                endpoint_url: None
            }
        );
    }

    #[test]
    fn old_spellings_still_work() {
        let c = config(&["--namespace", "N", "--service-name", "svc", "--dryrun"]).unwrap();
        assert_eq!((c.service.value(), c.output), ("svc", Output::DryRun));
        let c = config(&["--namespace", "N", "-s", "svc2", "-d", "--period", "5"]).unwrap();
        assert_eq!(
            (c.service.value(), c.output, c.period_secs),
            ("svc2", Output::DryRun, 5)
        );
    }

    #[test]
    fn send_delay_and_send_every_and_their_rules() {
        let c = config(&OK).unwrap();
        assert_eq!((c.send_delay, c.send_every), (SendDelay::Auto, 1));
        let c = config(&with(&["--send-delay", "0", "--send-every", "5"])).unwrap();
        assert_eq!(
            (c.send_delay, c.send_every),
            (SendDelay::Within(Duration::ZERO), 5)
        );
        let c = config(&with(&["--send-delay", "2.5"])).unwrap();
        assert_eq!(c.send_delay, SendDelay::Within(Duration::from_millis(2500)));
        let c = config(&with(&["--send-delay", "100", "--send-every", "2"])).unwrap();
        assert_eq!(c.send_delay, SendDelay::Within(Duration::from_secs(100)));
        for (flag, bad, rule) in [
            ("--send-delay", "60", "below the 60 s"),
            ("--send-delay", "-1", "auto, 0"),
            ("--send-delay", "soon", "auto, 0"),
            ("--send-every", "0", "1 to 60"),
            ("--send-every", "61", "1 to 60"),
            ("--send-every", "1.5", "1 to 60"),
        ] {
            let e = error(&with(&[flag, bad]));
            assert!(
                e.contains(flag) && e.contains(bad) && e.contains(rule),
                "{e}"
            );
        }
        let e = error(&with(&["--period", "3600", "--send-every", "25"]));
        assert!(e.contains("over a day"), "{e}");
    }

    #[test]
    fn the_original_short_flags_work() {
        let c = config(&["-n", "N", "-s", "svc", "-p", "30", "-d"]).unwrap();
        assert_eq!(
            (
                c.namespace.as_str(),
                c.service.value(),
                c.period_secs,
                c.output
            ),
            ("N", "svc", 30, Output::DryRun)
        );
    }

    #[test]
    fn compat_0_1_is_the_original_shape_at_standard_resolution() {
        let c = config(&with(&["--compat", "0.1", "--period", "5"])).unwrap();
        assert_eq!(c.encoding.aggregation, Aggregation::Original);
        assert_eq!(
            c.encoding.storage_resolution, None,
            "0.1.x sent standard resolution"
        );
        let c = config(&with(&["--compat", "0.1", "--storage-resolution", "1"])).unwrap();
        assert_eq!(c.encoding.storage_resolution, Some(1), "unless asked");
        let e = error(&with(&["--compat", "0.1", "--aggregation", "distribution"]));
        assert!(
            e.contains("--aggregation") && e.contains("--compat 0.1"),
            "{e}"
        );
        let e = error(&with(&["--compat", "0.1", "--metrics", "cpu,throttling"]));
        assert!(e.contains("--metrics") && e.contains("throttling"), "{e}");
        let argv = [
            &["cloudwatch_metrics_agent"][..],
            &with(&["--compat", "0.2"]),
        ]
        .concat();
        let e = Opts::try_parse_from(argv).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string().contains("'0.2'") && e.to_string().contains("0.1"),
            "{e}"
        );
        // Without it, nothing changes.
        let c = config(&with(&["--period", "5"])).unwrap();
        assert_eq!(
            (c.encoding.aggregation, c.encoding.storage_resolution),
            (Aggregation::Distribution, Some(1))
        );
    }

    #[test]
    fn median_max_and_endpoint_are_taken() {
        let c = config(&with(&[
            "--aggregation",
            "median-max",
            "--region",
            "eu-west-1",
            "--endpoint-url",
            "http://127.0.0.1:4566",
        ]))
        .unwrap();
        assert_eq!(c.encoding.aggregation, Aggregation::MedianMax);
        assert_eq!(
            c.output,
            Output::CloudWatch {
                region: Some("eu-west-1".into()),
                endpoint_url: Some("http://127.0.0.1:4566".into())
            }
        );
    }

    #[test]
    fn missing_namespace_or_service_is_named() {
        assert!(error(&["--service", "web"]).contains("missing --namespace"));
        assert!(error(&["--namespace", "N"]).contains("missing --service"));
    }

    #[test]
    fn namespace_rules() {
        for (ns, needle) in [
            ("", "empty or blank"),
            ("   ", "empty or blank"),
            ("AWS/EC2", "reserves"),
            ("My$App", "'$'"),
            ("Mÿ", "'ÿ'"),
        ] {
            let e = error(&["--namespace", ns, "--service", "web"]);
            assert!(e.contains(needle), "{ns:?}: {e}");
            assert!(e.contains(&format!("{ns:?}")), "names the value: {e}");
        }
        let long = "n".repeat(256);
        assert!(error(&["--namespace", &long, "--service", "w"]).contains("limit is 255"));
        let max = "n".repeat(255);
        assert!(config(&["--namespace", &max, "--service", "w"]).is_ok());
        assert!(config(&["--namespace", "a.b-c_d/e#f:g h 09", "--service", "w"]).is_ok());
        assert!(config(&["--namespace", "AWSome/App", "--service", "w"]).is_ok());
    }

    #[test]
    fn service_rules() {
        assert!(error(&["--namespace", "N", "--service", " "]).contains("empty or blank"));
        let long = "s".repeat(1025);
        assert!(error(&["--namespace", "N", "--service", &long]).contains("limit is 1024"));
        assert!(config(&["--namespace", "N", "--service", &"s".repeat(1024)]).is_ok());
        assert!(error(&["--namespace", "N", "--service", "café"]).contains("ASCII"));
        let e = error(&["--namespace", "N", "--service", "web\u{1b}[31m"]);
        assert!(e.contains("--service") && e.contains("\\u{1b}"), "{e}");
    }

    #[test]
    fn period_rules() {
        for bad in ["0", "-5", "abc", "86401", "1.5", ""] {
            let e = error(&with(&["--period", bad]));
            assert!(
                e.contains("--period") && e.contains("1 to 86400"),
                "{bad:?}: {e}"
            );
            assert!(e.contains(&format!("{bad:?}")), "names the value: {e}");
        }
        assert_eq!(config(&with(&["--period", "1"])).unwrap().period_secs, 1);
        assert_eq!(
            config(&with(&["--period", "86400"])).unwrap().period_secs,
            86_400
        );
    }

    #[test]
    fn flush_timeout_rules() {
        for bad in ["0", "-1", "x", "3601", "NaN", "inf"] {
            let e = error(&with(&["--flush-timeout", bad]));
            assert!(e.contains("--flush-timeout"), "{bad:?}: {e}");
        }
        let c = config(&with(&["--flush-timeout", "0.5"])).unwrap();
        assert_eq!(c.flush_timeout, Duration::from_millis(500));
    }

    #[test]
    fn auto_scope_is_ecs_task_where_ecs_set_its_metadata_endpoint() {
        let uri = "http://169.254.170.2/v4/abc";
        let ecs = |dimensions| Scope::EcsTask {
            metadata_uri: uri.into(),
            dimensions,
            task_id: false,
        };
        assert_eq!(
            config(&with(&["--ecs-metadata-uri", uri])).unwrap().scope,
            ecs(false)
        );
        let c = config(&with(&["--ecs-metadata-uri", uri, "--ecs-dimensions"])).unwrap();
        assert_eq!(c.scope, ecs(true));
        let c = config(&with(&["--ecs-metadata-uri", uri, "--scope", "host"])).unwrap();
        assert_eq!(c.scope, Scope::Host);
        assert_eq!(
            config(&with(&["--scope", "host"])).unwrap().scope,
            Scope::Host
        );
        assert_eq!(
            config(&with(&["--scope", "cgroup"])).unwrap().scope,
            Scope::Cgroup
        );
        assert_eq!(config(&OK).unwrap().scope, Scope::CgroupOrHost);
    }

    #[test]
    fn off_linux_auto_is_host_and_linux_only_scopes_are_refused() {
        assert_eq!(
            for_platform(Scope::CgroupOrHost, false).unwrap(),
            Scope::Host
        );
        assert_eq!(for_platform(Scope::Host, false).unwrap(), Scope::Host);
        let e = for_platform(Scope::Cgroup, false).unwrap_err().to_string();
        assert!(e.contains("\"cgroup\"") && e.contains("Linux-only"), "{e}");
        let ecs = Scope::EcsTask {
            metadata_uri: "http://169.254.170.2/v4/x".into(),
            dimensions: false,
            task_id: false,
        };
        let e = for_platform(ecs.clone(), false).unwrap_err().to_string();
        assert!(
            e.contains("\"ecs-task\"") && e.contains("Linux-only"),
            "{e}"
        );
        assert_eq!(for_platform(ecs.clone(), true).unwrap(), ecs);
        assert_eq!(
            for_platform(Scope::CgroupOrHost, true).unwrap(),
            Scope::CgroupOrHost
        );
    }

    #[test]
    fn ecs_scope_rules() {
        let e = error(&with(&["--scope", "ecs-task"]));
        assert!(e.contains("missing ECS_CONTAINER_METADATA_URI_V4"), "{e}");
        let e = error(&with(&["--scope", "host", "--ecs-dimensions"]));
        assert!(
            e.contains("--ecs-dimensions") && e.contains("ecs-task scope"),
            "{e}"
        );
        let e = error(&with(&["--ecs-metadata-uri", "169.254.170.2/v4/x"]));
        assert!(e.contains("http://"), "{e}");
    }

    #[test]
    fn delivery_settings_and_their_rules() {
        let c = config(&OK).unwrap();
        assert_eq!(c.buffer_size, 5000);
        assert_eq!(c.retry_max_backoff, Duration::from_secs(60));
        assert_eq!(c.request_timeout, Duration::from_secs(10));
        let c = config(&with(&["--buffer-size", "7", "--retry-max-backoff", "2.5"])).unwrap();
        assert_eq!(
            (c.buffer_size, c.retry_max_backoff),
            (7, Duration::from_millis(2500))
        );
        for (flag, bad) in [
            ("--buffer-size", "0"),
            ("--buffer-size", "-1"),
            ("--buffer-size", "100001"),
            ("--retry-max-backoff", "0"),
            ("--request-timeout", "never"),
        ] {
            let e = error(&with(&[flag, bad]));
            assert!(e.contains(flag) && e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn emf_takes_dimension_names_of_at_most_250_characters() {
        let name = |n: usize| format!("{}=v", "N".repeat(n));
        // CloudWatch takes 255; the EMF schema 250.
        assert!(config(&with(&["--dimension", &name(255)])).is_ok());
        assert!(config(&with(&["--output", "emf", "--dimension", &name(250)])).is_ok());
        let e = error(&with(&["--output", "emf", "--dimension", &name(251)]));
        assert!(
            e.contains("--dimension") && e.contains("251") && e.contains("250"),
            "{e}"
        );
    }

    #[test]
    fn outputs_and_storage_resolution() {
        assert_eq!(
            config(&with(&["--output", "emf"])).unwrap().output,
            Output::Emf
        );
        assert_eq!(
            config(&with(&["--output", "dry-run"])).unwrap().output,
            Output::DryRun
        );
        assert_eq!(
            config(&with(&["--dry-run", "--output", "dry-run"]))
                .unwrap()
                .output,
            Output::DryRun
        );
        assert!(error(&with(&["--dry-run", "--output", "emf"])).contains("--dry-run"));
        assert_eq!(
            config(&with(&["--period", "5"]))
                .unwrap()
                .encoding
                .storage_resolution,
            Some(1)
        );
        assert_eq!(config(&OK).unwrap().encoding.storage_resolution, None);
        let c = config(&with(&["--period", "5", "--storage-resolution", "60"])).unwrap();
        assert_eq!(c.encoding.storage_resolution, None);
        let c = config(&with(&["--storage-resolution", "1"])).unwrap();
        assert_eq!(c.encoding.storage_resolution, Some(1));
        assert!(error(&with(&["--storage-resolution", "5"])).contains("1 or 60"));
    }

    #[test]
    fn dimension_rules() {
        let c = config(&with(&[
            "--dimension",
            "Env=prod",
            "--dimension",
            "Team=a=b",
        ]))
        .unwrap();
        let pairs: Vec<(&str, &str)> = c.dimensions.iter().map(|d| (d.name(), d.value())).collect();
        assert_eq!(pairs, [("Env", "prod"), ("Team", "a=b")]);
        let long_name = format!("{}=v", "n".repeat(256));
        let long_value = format!("n={}", "v".repeat(1025));
        for (bad, needle) in [
            ("Env", "Name=Value"),
            ("=v", "name must not be empty"),
            ("Env=", "value must not be empty"),
            (long_name.as_str(), "limit is 255"),
            (long_value.as_str(), "limit is 1024"),
            (":x=1", "':'"),
            ("ServiceName=x", "twice"),
            ("Env=é", "ASCII"),
            ("Env=prod\r", "'\\r'"),
        ] {
            let e = error(&with(&["--dimension", bad]));
            assert!(
                e.contains(needle) && e.contains("--dimension"),
                "{bad}: {e}"
            );
        }
        let e = error(&with(&["--dimension", "A=1", "--dimension", "A=2"]));
        assert!(e.contains("twice"), "{e}");
        let thirty: Vec<String> = (0..30).map(|i| format!("D{i}=v")).collect();
        let mut args = OK.to_vec();
        for d in &thirty {
            args.extend(["--dimension", d.as_str()]);
        }
        assert!(error(&args).contains("at most 30"));
        let e = error(&with(&[
            "--dimension",
            "InstanceId=i-1",
            "--ec2-dimensions",
        ]));
        assert!(e.contains("by --dimension and by --ec2-dimensions"), "{e}");
    }

    #[test]
    fn metrics_rules() {
        assert_eq!(config(&OK).unwrap().metrics, MetricSet::default());
        let c = config(&with(&["--metrics", "cpu,memory,throttling"])).unwrap();
        assert_eq!(c.metrics.iter().count(), 3);
        let c = config(&with(&["--metrics", "memory"])).unwrap();
        assert_eq!(c.metrics.iter().collect::<Vec<_>>(), [Metric::Memory]);
        let e = error(&with(&["--scope", "host", "--metrics", "cpu,throttling"]));
        assert!(e.contains("cgroup scope"), "{e}");
        let c = config(&with(&["--metrics", "cpu,memory,oom,pressure"])).unwrap();
        assert_eq!(
            c.metrics.iter().map(Metric::name).collect::<Vec<_>>(),
            [
                "CPUUtilization",
                "MemoryUtilization",
                "OOMKills",
                "CPUPressure",
                "MemoryPressure",
                "IOPressure"
            ]
        );
        // The task metadata endpoint has neither: refused when the scope is asked for by
        // name, left to a warning when `auto` finds ECS.
        let uri = "http://169.254.170.2/v4/abc";
        for (metrics, arg) in [("cpu,oom", "oom"), ("pressure", "pressure")] {
            let ecs = [
                "--ecs-metadata-uri",
                uri,
                "--scope",
                "ecs-task",
                "--metrics",
                metrics,
            ];
            let e = error(&with(&ecs));
            assert!(e.contains(arg) && e.contains("ECS task metadata"), "{e}");
            let c = config(&with(&["--ecs-metadata-uri", uri, "--metrics", metrics])).unwrap();
            assert!(matches!(c.scope, Scope::EcsTask { .. }));
        }
        for (metrics, arg) in [("cpu,oom", "oom"), ("memory,pressure", "pressure")] {
            let e = error(&with(&["--compat", "0.1", "--metrics", metrics]));
            assert!(e.contains(arg) && e.contains("0.1.x"), "{e}");
        }
    }

    #[test]
    fn every_metric_has_the_argument_that_selects_it_as_clap_names_it() {
        use clap::ValueEnum;
        for arg in MetricArg::value_variants() {
            let name = arg.to_possible_value().unwrap();
            assert_eq!(arg_name(*arg), name.get_name());
        }
        for metric in Metric::ALL {
            let arg = metric_arg(metric);
            let typed = MetricArg::from_str(arg, false).unwrap();
            assert!(selected(typed).contains(&metric), "{metric:?}");
        }
    }

    #[test]
    fn task_groups_need_the_ecs_task_scope_and_none_is_0_1s() {
        let uri = "http://169.254.170.2/v4/abc";
        let all = "cpu,memory,absolute,containers,network,storage,ephemeral-storage,restarts";
        let c = config(&with(&["--ecs-metadata-uri", uri, "--metrics", all])).unwrap();
        assert_eq!(c.metrics.iter().count(), 2 + 4 + 2 + 2 + 2 + 3 + 1);
        for arg in ["containers", "ephemeral-storage", "restarts"] {
            for scope in ["auto", "host", "cgroup"] {
                let e = error(&with(&[
                    "--scope",
                    scope,
                    "--metrics",
                    &format!("cpu,{arg}"),
                ]));
                assert!(
                    e.starts_with(&format!("invalid --metrics \"{arg}\""))
                        && e.contains("ecs-task scope"),
                    "{scope}: {e}"
                );
            }
        }
        // The kernel has these everywhere.
        for arg in ["absolute", "network", "storage"] {
            assert!(config(&with(&["--scope", "host", "--metrics", arg])).is_ok());
            let e = error(&with(&[
                "--compat",
                "0.1",
                "--metrics",
                &format!("cpu,{arg}"),
            ]));
            assert!(
                e.contains(&format!("{arg:?}")) && e.contains("0.1.x"),
                "{e}"
            );
        }
        let e = error(&with(&["--task-id-dimension"]));
        assert!(
            e.contains("--task-id-dimension") && e.contains("ecs-task"),
            "{e}"
        );
        let c = config(&with(&["--ecs-metadata-uri", uri, "--task-id-dimension"])).unwrap();
        assert!(matches!(c.scope, Scope::EcsTask { task_id: true, .. }));
        let e = error(&with(&[
            "--ecs-metadata-uri",
            uri,
            "--task-id-dimension",
            "--dimension",
            "TaskId=x",
        ]));
        assert!(e.contains("TaskId is given twice"), "{e}");
        let e = error(&with(&[
            "--ecs-metadata-uri",
            uri,
            "--metrics",
            "containers",
            "--dimension",
            "ContainerName=x",
        ]));
        assert!(e.contains("ContainerName is given twice"), "{e}");
    }

    #[test]
    fn job_metrics_need_a_command_and_are_no_0_1_metric() {
        let e = error(&with(&["--metrics", "cpu,job"]));
        assert!(
            e.starts_with("invalid --metrics \"job\"") && e.contains("-- CMD"),
            "{e}"
        );
        let c = config(&with(&["--metrics", "cpu,job", "--", "true"])).unwrap();
        assert_eq!(
            c.metrics.iter().map(Metric::name).collect::<Vec<_>>(),
            [
                "CPUUtilization",
                "JobDuration",
                "JobFailed",
                "JobStopped",
                "JobPeakMemory",
                "JobCPUTime"
            ]
        );
        let e = error(&with(&[
            "--compat",
            "0.1",
            "--metrics",
            "job",
            "--",
            "true",
        ]));
        assert!(e.contains("\"job\"") && e.contains("0.1.x"), "{e}");
    }

    #[test]
    fn batch_dimensions_come_from_the_variables_aws_batch_sets() {
        let batch = [
            "--batch-dimensions",
            "--batch-job-queue",
            "nightly",
            "--batch-compute-environment",
            "spot-ce",
        ];
        let c = config(&with(&batch)).unwrap();
        let dims: Vec<(&str, &str)> = c.dimensions.iter().map(|d| (d.name(), d.value())).collect();
        assert_eq!(
            dims,
            [("JobQueue", "nightly"), ("ComputeEnvironment", "spot-ce")]
        );
        let e = error(&with(&["--batch-dimensions"]));
        assert!(
            e.starts_with("invalid --batch-dimensions") && e.contains("AWS_BATCH_JQ_NAME"),
            "{e}"
        );
        let e = error(&with(
            &[&batch[..], &["--dimension", "JobQueue=x"]].concat(),
        ));
        assert!(e.contains("JobQueue is given twice"), "{e}");
        let bad = [
            "--batch-dimensions",
            "--batch-job-queue",
            "a\u{1b}b",
            "--batch-compute-environment",
            "ce",
        ];
        let e = error(&with(&bad));
        assert!(e.starts_with("invalid --batch-job-queue"), "{e}");
        assert!(
            config(&with(&batch[1..])).unwrap().dimensions.is_empty(),
            "only when asked"
        );
    }

    #[test]
    fn region_and_endpoint_rules() {
        assert!(error(&with(&["--region", "US East"])).contains("--region"));
        for bad in [
            "localhost:4566",
            "ftp://x",
            "http://",
            "http:///path",
            "http://user:secret@",
            "http://[::1",
            "http://host ",
        ] {
            assert!(
                error(&with(&["--endpoint-url", bad])).contains("--endpoint-url"),
                "{bad}"
            );
        }
    }
}
