//! The command line as the user typed it: flags and environment variables, no checks
//! beyond what clap does, no I/O. [`crate::config::Config`] turns this into what runs.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser, ValueEnum};

/// Samples CPU and memory utilization once a second and publishes them to Amazon
/// CloudWatch each period.
#[derive(Debug, Parser)]
#[command(
    name = "cloudwatch_metrics_agent",
    version,
    about,
    max_term_width = 100,
    after_help = "Before a new deployment, `cloudwatch_metrics_agent check [OPTIONS]` tests it: \
                  region, credentials, one sample and one real request, with the same options. \
                  `cloudwatch_metrics_agent copy-to DIR` copies the binary into DIR (an image \
                  without a shell, into a volume another container starts it from)."
)]
pub struct Opts {
    /// CloudWatch namespace to publish under (required; not starting with "AWS/")
    #[arg(long, short = 'n', env = "CWMA_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,

    /// Value of the ServiceName dimension on every metric (required)
    #[arg(
        long,
        short = 's',
        visible_alias = "service-name",
        env = "CWMA_SERVICE",
        value_name = "NAME"
    )]
    pub service: Option<String>,

    /// Seconds per aggregation window, 1 to 86400; windows start on multiples of it
    #[arg(
        long,
        short = 'p',
        env = "CWMA_PERIOD",
        value_name = "SECS",
        default_value = "60",
        allow_hyphen_values = true
    )]
    pub period: String,

    /// Print each request as a JSON line on stdout instead of sending it (--output dry-run)
    #[arg(long, short = 'd', visible_alias = "dryrun", env = "CWMA_DRY_RUN", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub dry_run: bool,

    /// Where metrics go: PutMetricData, Embedded Metric Format lines on stdout, or a preview
    #[arg(long, env = "CWMA_OUTPUT", value_enum, value_name = "OUTPUT")]
    pub output: Option<OutputArg>,

    /// CloudWatch storage resolution in seconds, 1 or 60 (default: 1 when --period < 60)
    #[arg(long, env = "CWMA_STORAGE_RESOLUTION", value_name = "SECS")]
    pub storage_resolution: Option<String>,

    /// Extra dimension Name=Value on every metric, one per flag, repeatable (env: A=1,B=2,
    /// with \, for a comma in a value)
    #[arg(long = "dimension", env = "CWMA_DIMENSIONS", value_name = "NAME=VALUE")]
    pub dimensions: Vec<String>,

    /// Add InstanceId, InstanceType and AutoScalingGroupName from EC2 instance metadata
    #[arg(long, env = "CWMA_EC2_DIMENSIONS", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub ec2_dimensions: bool,

    /// How each window is sent: all samples as Values/Counts, or median and max
    /// [default: distribution]
    #[arg(long, env = "CWMA_AGGREGATION", value_enum, value_name = "MODE")]
    pub aggregation: Option<AggregationArg>,

    /// Publish exactly what an earlier version published (metric names, 0–1 scale), so
    /// its alarms and dashboards keep working
    #[arg(long, env = "CWMA_COMPAT", value_enum, value_name = "VERSION")]
    pub compat: Option<CompatArg>,

    /// What to measure: auto picks ecs-task in ECS, else cgroup in a container or under limits,
    /// else host
    #[arg(
        long,
        env = "CWMA_SCOPE",
        value_enum,
        value_name = "SCOPE",
        default_value_t = ScopeArg::Auto
    )]
    pub scope: ScopeArg,

    /// Metrics to send, comma-separated: cpu, memory, throttling (cgroup scope), oom (host and
    /// cgroup scopes), pressure (host and cgroup v2 scopes), absolute, network, storage; in
    /// the ecs-task scope containers, ephemeral-storage, restarts; job with a command (-- CMD)
    #[arg(
        long,
        env = "CWMA_METRICS",
        value_parser = metric,
        value_delimiter = ',',
        value_name = "LIST",
        default_value = "cpu,memory"
    )]
    pub metrics: Vec<MetricArg>,

    /// Add ClusterName and TaskDefinitionFamily dimensions (ecs-task scope only)
    #[arg(long, env = "CWMA_ECS_DIMENSIONS", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub ecs_dimensions: bool,

    /// Add JobQueue and ComputeEnvironment dimensions from the variables AWS Batch sets in a
    /// job's container
    #[arg(long, env = "CWMA_BATCH_DIMENSIONS", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub batch_dimensions: bool,

    /// The job queue's name, which AWS Batch sets in every job's container
    #[arg(long, env = "AWS_BATCH_JQ_NAME", value_name = "NAME", hide = true)]
    pub batch_job_queue: Option<String>,

    /// The compute environment's name, which AWS Batch sets in every job's container
    #[arg(long, env = "AWS_BATCH_CE_NAME", value_name = "NAME", hide = true)]
    pub batch_compute_environment: Option<String>,

    /// Add a TaskId dimension: one set of metrics per task (ecs-task scope only)
    #[arg(long, env = "CWMA_TASK_ID_DIMENSION", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub task_id_dimension: bool,

    /// AWS region (default: AWS_REGION, the profile, or the EC2 instance's region)
    #[arg(long, env = "CWMA_REGION", value_name = "REGION")]
    pub region: Option<String>,

    /// CloudWatch endpoint URL (default: AWS_ENDPOINT_URL, or the region's endpoint)
    #[arg(long, env = "CWMA_ENDPOINT_URL", value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// Seconds allowed for the final publish on SIGTERM/SIGINT before exiting with status 1
    #[arg(
        long,
        env = "CWMA_FLUSH_TIMEOUT",
        value_name = "SECS",
        default_value = "5",
        allow_hyphen_values = true
    )]
    pub flush_timeout: String,

    /// The ECS task metadata endpoint v4, which ECS sets in every container
    #[arg(
        long,
        env = "ECS_CONTAINER_METADATA_URI_V4",
        value_name = "URL",
        hide = true
    )]
    pub ecs_metadata_uri: Option<String>,

    /// Most datums kept for retry while CloudWatch is unreachable; oldest dropped beyond it
    #[arg(
        long,
        env = "CWMA_BUFFER_SIZE",
        value_name = "DATUMS",
        default_value = "5000",
        allow_hyphen_values = true
    )]
    pub buffer_size: String,

    /// Longest wait between retries of a failed publish, in seconds
    #[arg(
        long,
        env = "CWMA_RETRY_MAX_BACKOFF",
        value_name = "SECS",
        default_value = "60",
        allow_hyphen_values = true
    )]
    pub retry_max_backoff: String,

    /// Seconds one PutMetricData attempt may take, connection included
    #[arg(
        long,
        env = "CWMA_REQUEST_TIMEOUT",
        value_name = "SECS",
        default_value = "10",
        allow_hyphen_values = true
    )]
    pub request_timeout: String,

    /// Wait after each window before sending it, so a fleet spreads its requests: auto (a
    /// quarter of the period, at most 15 s), 0, or up to SECS
    #[arg(
        long,
        env = "CWMA_SEND_DELAY",
        value_name = "auto|0|SECS",
        default_value = "auto",
        allow_hyphen_values = true
    )]
    pub send_delay: String,

    /// Send N windows in one request: 1/N of the requests, data up to N periods later
    #[arg(
        long,
        env = "CWMA_SEND_EVERY",
        value_name = "N",
        default_value = "1",
        allow_hyphen_values = true
    )]
    pub send_every: String,

    /// In wrapper mode, signal the command's whole process group (like tini -g)
    #[arg(long, env = "CWMA_SIGNAL_GROUP", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub signal_group: bool,

    /// Command to run and wrap: metrics are flushed when it exits, with its exit status
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,

    /// Root directory under which /proc is read (for tests on fixture trees)
    #[arg(
        long,
        env = "CWMA_ROOT",
        value_name = "DIR",
        default_value = "/",
        hide = true
    )]
    pub root: PathBuf,

    /// The flags whose value came from their environment variable, with its name: an
    /// error about such a value names the variable the user set, not a flag never typed.
    #[arg(skip)]
    pub from_env: Vec<FromEnv>,
}

/// A flag whose value was read from its environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromEnv {
    /// The long flag, as errors name it: `--period`.
    pub flag: String,
    /// The variable: `CWMA_PERIOD`.
    pub variable: String,
}

/// What the command line asks for: a run, or the `check` preflight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Run,
    Check,
}

const CHECK_ABOUT: &str = "Preflight: resolves the region and credentials (saying where they came \
    from, never their values), reads one sample in the chosen scope and sends it once, then \
    exits 0, or 1 naming what is wrong. Takes the same options as a run, and a command after \
    -- without running it (with --metrics job it shows the job metrics of `true`).";

/// `copy-to DIR` (the program name first): the directory the binary is to copy itself
/// into ([`crate::self_copy`]); `None` for a run or `check`, and the one line to say
/// when `copy-to` has not exactly one directory after it.
pub fn copy_to(args: &[OsString]) -> Option<Result<PathBuf, String>> {
    if args.get(1).is_none_or(|a| a != "copy-to") {
        return None;
    }
    Some(match &args[2..] {
        [dir] => Ok(PathBuf::from(dir)),
        _ => Err("copy-to takes one directory: cloudwatch_metrics_agent copy-to DIR".into()),
    })
}

/// Parses the arguments (the program name first). `check` as the first word selects the
/// preflight, which takes exactly the options of a run (so it can be tried with a
/// deployment's own flags and environment).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<(Mode, Opts), clap::Error> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    let (mode, command) = if args.get(1).is_some_and(|a| a == "check") {
        args.remove(1);
        let command = Opts::command()
            .name("cloudwatch_metrics_agent check")
            .bin_name("cloudwatch_metrics_agent check")
            .about(CHECK_ABOUT)
            .after_help("");
        (Mode::Check, command)
    } else {
        (Mode::Run, Opts::command())
    };
    let matches = command
        .clone()
        .try_get_matches_from(&args)
        .map_err(|e| name_the_variable(e, &command))?;
    let mut opts = Opts::from_arg_matches(&matches)?;
    opts.from_env = command
        .get_arguments()
        .filter(|arg| matches.value_source(arg.get_id().as_str()) == Some(ValueSource::EnvVariable))
        .filter_map(|arg| {
            Some(FromEnv {
                flag: format!("--{}", arg.get_long()?),
                variable: arg.get_env()?.to_string_lossy().into_owned(),
            })
        })
        .collect();
    Ok((mode, opts))
}

/// clap names the flag of a bad value even when the value came from the environment
/// (`CWMA_DRY_RUN=maybe`: "invalid value 'maybe' for '--dry-run'"); this names the
/// variable instead, when it is set to that value.
fn name_the_variable(e: clap::Error, command: &clap::Command) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    use std::error::Error as _;
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return e;
    }
    let (Some(ContextValue::String(arg)), Some(ContextValue::String(value))) = (
        e.get(ContextKind::InvalidArg),
        e.get(ContextKind::InvalidValue),
    ) else {
        return e;
    };
    let from_env = command.get_arguments().find_map(|a| {
        let variable = a.get_env()?;
        let long = a.get_long()?;
        let set = std::env::var_os(variable)?;
        let this_arg = arg.starts_with(&format!("--{long}"));
        let this_value = set
            .to_string_lossy()
            .split(',')
            .any(|v| v.trim() == value.trim());
        (this_arg && this_value).then(|| (variable.to_string_lossy().into_owned(), long))
    });
    let Some((variable, long)) = from_env else {
        return e;
    };
    let possible = match e.get(ContextKind::ValidValue) {
        Some(ContextValue::Strings(values)) => format!(" [possible values: {}]", values.join(", ")),
        _ => String::new(),
    };
    let boolean = command
        .get_arguments()
        .any(|a| a.get_long() == Some(long) && matches!(a.get_action(), ArgAction::SetTrue));
    let detail = if boolean {
        ": must be true or false, 1 or 0, yes or no, on or off (in any case)".to_owned()
    } else {
        e.source().map(|s| format!(": {s}")).unwrap_or_default()
    };
    clap::Error::raw(
        ErrorKind::InvalidValue,
        format!(
            "invalid value '{value}' for {variable} (the variable of --{long}){detail}{possible}\n"
        ),
    )
}

/// What one window becomes in CloudWatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AggregationArg {
    /// All samples as Values/Counts (CloudWatch computes any statistic)
    Distribution,
    /// The median, and the maximum as MaxCPUUtilization etc., like the original agent
    MedianMax,
}

/// An earlier version whose published shape `--compat` reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompatArg {
    /// 0.1.x: CPUUtilization and MemoryUtilization (median) and MaxMemoryUtilization, 0 to 1
    #[value(name = "0.1")]
    V0_1,
}

/// Which resources the numbers describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    /// ecs-task in ECS, else cgroup in a container or under limits, else host
    Auto,
    /// The whole machine or VM, from /proc
    Host,
    /// The agent's own cgroup (its container) against its CPU quota and memory limit
    Cgroup,
    /// The whole ECS task against its limits, from the task metadata endpoint v4
    EcsTask,
}

/// One name of `--metrics`, spaces around it ignored (`CWMA_METRICS="cpu, memory"`).
fn metric(name: &str) -> Result<MetricArg, String> {
    MetricArg::from_str(name.trim_matches(' '), true).map_err(|_| {
        let known: Vec<String> = MetricArg::value_variants()
            .iter()
            .filter_map(|m| m.to_possible_value().map(|v| v.get_name().to_owned()))
            .collect();
        format!("{name:?} is not one of {}", known.join(", "))
    })
}

/// A metric `--metrics` can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetricArg {
    /// CPUUtilization
    Cpu,
    /// MemoryUtilization
    Memory,
    /// CPUThrottledPercent: share of CFS periods throttled (cgroup scope)
    Throttling,
    /// OOMKills: processes the kernel's OOM killer ended, per window (host and cgroup scopes)
    Oom,
    /// CPUPressure, MemoryPressure, IOPressure: share of time tasks stalled (PSI; host and
    /// cgroup v2 scopes)
    Pressure,
    /// CpuUtilized, CpuReserved (CPU units), MemoryUtilized, MemoryReserved (MiB)
    Absolute,
    /// CpuUtilized and MemoryUtilized of each container, with ContainerName (ecs-task scope)
    Containers,
    /// NetworkRxBytes, NetworkTxBytes (bytes a second)
    Network,
    /// StorageReadBytes, StorageWriteBytes (bytes a second)
    Storage,
    /// EphemeralStorageUtilized, EphemeralStorageReserved (GiB), EphemeralStorageUtilization
    /// (Fargate, ecs-task scope)
    EphemeralStorage,
    /// RestartCount: containers restarted by ECS's restart policy, per window (ecs-task scope)
    Restarts,
    /// JobDuration, JobFailed, JobStopped, JobPeakMemory, JobCPUTime: how the wrapped
    /// command's run ended and what it used (wrapper mode)
    Job,
}

/// Where metrics go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputArg {
    /// PutMetricData through the AWS SDK
    Cloudwatch,
    /// CloudWatch Embedded Metric Format, one JSON document per line on stdout
    Emf,
    /// The would-be PutMetricData requests as JSON lines on stdout; nothing sent
    DryRun,
}
