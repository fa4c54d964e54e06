//! The CloudWatch output: windows → `MetricDatum`s within the `PutMetricData` limits
//! (pure, and shared with the dry-run preview), what each error CloudWatch answers means
//! for the data, and the client that sends requests through the AWS SDK for Rust.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::error::SdkError;
use aws_sdk_cloudwatch::operation::put_metric_data::PutMetricDataError;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{self as sdk, MetricDatum, StandardUnit};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use serde::{Serialize, Serializer};
use thiserror::Error;

use crate::domain::{Dimension, Window};
pub use crate::domain::{Encoding, MAX_VALUES_PER_DATUM, rfc3339};
use crate::redact;

/// Most datums in one request (PutMetricData API reference, `MetricData`: "up to 1000").
pub const MAX_DATUMS_PER_REQUEST: usize = 1000;
/// Most bytes in one request (PutMetricData API reference: "limited to 1 MB in size for
/// HTTP POST requests"), taken as 10^6 of the uncompressed body to be safe.
pub const MAX_REQUEST_BYTES: usize = 1_000_000;
/// A host that does not accept a TCP connection in this long is treated as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// One `PutMetricData` call's input, with the field names of the API (and of `aws
/// cloudwatch put-metric-data --cli-input-json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRequest {
    /// `--namespace`.
    pub namespace: String,
    /// At most [`MAX_DATUMS_PER_REQUEST`], and [`MAX_REQUEST_BYTES`] encoded.
    pub metric_data: Vec<Datum>,
}

/// One `MetricDatum`: either a single `Value` or a distribution as `Values`/`Counts`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Datum {
    pub metric_name: &'static str,
    /// Shared by every datum of a run.
    pub dimensions: Arc<[Dimension]>,
    /// Seconds since the Unix epoch; the window's start.
    #[serde(serialize_with = "serialize_rfc3339")]
    pub timestamp: u64,
    pub unit: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub counts: Vec<f64>,
    /// `Some(1)` for a high-resolution metric; absent means CloudWatch's standard 60 s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_resolution: Option<u32>,
}

/// The datums of `window`: per metric, its distribution in datums of at most
/// [`MAX_VALUES_PER_DATUM`] values, or its median and maximum. A window has at most
/// 1001 distinct values per metric (0.0–100.0 by 0.1), so at most 7 datums each: its
/// datums always fit one request.
pub fn encode(window: &Window, encoding: &Encoding) -> Vec<Datum> {
    let datum = |metric_name, unit, value, (values, counts)| Datum {
        metric_name,
        dimensions: Arc::clone(&window.dimensions),
        timestamp: window.start,
        unit,
        value,
        values,
        counts,
        storage_resolution: encoding.storage_resolution,
    };
    let mut data = Vec::new();
    for (metric, distribution) in &window.series {
        match encoding.aggregation.single_values(*metric, distribution) {
            None => {
                for chunk in distribution.pairs().chunks(MAX_VALUES_PER_DATUM) {
                    let pairs = chunk.iter().map(|&(v, n)| (v, f64::from(n))).unzip();
                    data.push(datum(metric.name(), metric.unit(), None, pairs));
                }
            }
            Some(values) => {
                for (name, value) in values {
                    let none = (Vec::new(), Vec::new());
                    data.push(datum(name, metric.unit(), Some(value), none));
                }
            }
        }
    }
    data
}

fn serialize_rfc3339<S: Serializer>(secs: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*secs))
}

/// An upper bound of the bytes `datum` takes in a `PutMetricData` request body, in the
/// SDK's RPC v2 CBOR encoding (and in JSON): each map key and string with a 9-byte
/// length header, every number as a 9-byte double, timestamps as a tagged double. A test
/// checks it against the body the SDK really sends.
pub fn encoded_size(datum: &Datum) -> usize {
    const HEADER: usize = 9;
    const NUMBER: usize = 9;
    let text = |s: &str| HEADER + s.len();
    let field = |name: &str, value: usize| text(name) + value;
    let dimensions: usize = datum
        .dimensions
        .iter()
        .map(|d| HEADER + field("Name", text(d.name())) + field("Value", text(d.value())))
        .sum();
    HEADER
        + field("MetricName", text(datum.metric_name))
        + field("Dimensions", HEADER + dimensions)
        + field("Timestamp", 1 + NUMBER)
        + field("Unit", text(datum.unit))
        + field("Value", NUMBER)
        + field("Values", HEADER + NUMBER * datum.values.len())
        + field("Counts", HEADER + NUMBER * datum.counts.len())
        + field("StorageResolution", NUMBER)
}

/// Bytes of a request body besides its datums.
pub fn request_overhead(namespace: &str) -> usize {
    64 + namespace.len()
}

/// A request as one log line (the `cloudwatch_metrics_agent::cloudwatch` target): the
/// namespace, the run's dimensions, the windows, the estimated size, and each datum's
/// metric with its value or its values' count and range. Datums past the tenth are
/// counted, not listed, so that a catch-up request of 1000 stays one readable line.
pub fn describe(request: &PutRequest) -> String {
    const LISTED: usize = 10;
    let data = &request.metric_data;
    let mut line = format!("PutMetricData {}", request.namespace);
    if let Some(first) = data.first() {
        let dimensions: Vec<String> = first
            .dimensions
            .iter()
            .map(|d| format!("{}={}", d.name(), d.value()))
            .collect();
        line += &format!(" [{}]", dimensions.join(","));
    }
    let times = (
        data.iter().map(|d| d.timestamp).min(),
        data.iter().map(|d| d.timestamp).max(),
    );
    let bytes = request_overhead(&request.namespace) + data.iter().map(encoded_size).sum::<usize>();
    line += &format!(", {} datums", data.len());
    match times {
        (Some(first), Some(last)) if first != last => {
            line += &format!(" of {} to {}", rfc3339(first), rfc3339(last));
        }
        (Some(at), _) => line += &format!(" of {}", rfc3339(at)),
        _ => {}
    }
    line += &format!(", under {bytes} bytes:");
    for d in data.iter().take(LISTED) {
        line += &format!(" {}", d.metric_name);
        if let Some(v) = d.value {
            line += &format!("={v}");
        } else {
            let samples: f64 = d.counts.iter().sum();
            let low = d.values.iter().copied().fold(f64::INFINITY, f64::min);
            let high = d.values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            line += &format!(
                "[{samples} samples, {} values {low}–{high}]",
                d.values.len()
            );
        }
    }
    if data.len() > LISTED {
        line += &format!(" and {} more", data.len() - LISTED);
    }
    line
}

/// Sends `PutMetricData` requests: the SDK client, or a fake in tests.
pub trait Publisher {
    /// Sends one request; `Ok` once CloudWatch has accepted it.
    fn publish(
        &self,
        request: &PutRequest,
    ) -> impl Future<Output = Result<(), PublishError>> + Send;
}

/// A request that was not accepted, and what kind of failure it was.
#[derive(Debug, Error)]
#[error("{message}")]
pub struct PublishError {
    /// What it means for the datums: retry, back off, or drop.
    pub kind: ErrorKind,
    /// The error and its causes, never the request (so never a credential).
    pub message: String,
}

impl PublishError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        PublishError {
            kind,
            message: message.into(),
        }
    }
}

/// What a failure means for the datums of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Network error, timeout, 5xx, or anything not known to be permanent: retry.
    Transient,
    /// The service asked to slow down: retry, backing off.
    Throttled,
    /// Credentials missing, expired or not allowed: retry (they may be fixed or refreshed)
    /// and tell the user every time.
    Auth,
    /// The request itself is invalid: retrying it as is cannot work.
    Invalid,
}

/// The kind of a CloudWatch error from its code and HTTP status.
pub fn classify(code: Option<&str>, status: u16) -> ErrorKind {
    match code.unwrap_or("") {
        "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "RequestThrottled" => ErrorKind::Throttled,
        "InvalidParameterValue"
        | "InvalidParameterCombination"
        | "MissingParameter"
        | "MissingRequiredParameter"
        | "InvalidParameterValueException"
        | "InvalidParameterCombinationException"
        | "MissingRequiredParameterException" => ErrorKind::Invalid,
        "AccessDenied"
        | "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "MissingAuthenticationToken"
        | "IncompleteSignature"
        | "NotAuthorized"
        | "AuthFailure" => ErrorKind::Auth,
        _ if status == 429 => ErrorKind::Throttled,
        _ if status == 401 || status == 403 => ErrorKind::Auth,
        _ => ErrorKind::Transient,
    }
}

/// Sends requests with `PutMetricData`.
#[derive(Debug, Clone)]
pub struct CloudWatch {
    client: Client,
    /// Each attempt's bound (`--request-timeout`), for saying that it passed.
    request_timeout: Duration,
}

/// Why no CloudWatch client could be made.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error(
        "no AWS region: pass --region, or set AWS_REGION, or a region in the AWS profile \
         (on EC2 the instance's region is used)"
    )]
    NoRegion,
}

impl CloudWatch {
    /// A client for a loaded configuration (see [`sdk_config`]) whose attempts last at
    /// most `request_timeout`.
    pub fn new(config: &SdkConfig, request_timeout: Duration) -> Self {
        if log::log_enabled!(log::Level::Info) {
            let (url, _) = endpoint(config);
            log::info!(
                "publishing to CloudWatch in {} at {}, {}",
                config.region().map_or("", |r| r.as_ref()),
                redact::url(&url),
                crate::proxy::route(&url)
            );
        }
        CloudWatch {
            client: Client::new(config),
            request_timeout,
        }
    }
}

/// The SDK configuration from the standard AWS chains (environment, profile files, ECS
/// task role, EC2 instance role; `AWS_ENDPOINT_URL`), with `region` and `endpoint_url`
/// overriding them when given. Credentials are resolved on the first call, so an agent
/// started before its role is ready still comes up.
/// Each call is one attempt of at most `request_timeout` (the SDK never times out a
/// server that accepts and stays silent); retries are the delivery queue's, the one
/// retry layer, so the SDK's own are off.
pub async fn sdk_config(
    region: Option<String>,
    endpoint_url: Option<String>,
    request_timeout: Duration,
) -> Result<SdkConfig, ConnectError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(crate::http::aws_client())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT.min(request_timeout))
                .operation_attempt_timeout(request_timeout)
                .operation_timeout(request_timeout)
                .build(),
        );
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region));
    }
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let config = loader.load().await;
    if config.region().is_none() {
        return Err(ConnectError::NoRegion);
    }
    Ok(config)
}

/// The CloudWatch endpoint a client made from `sdk` sends to, and where that came from,
/// decided as the SDK decides it: `--endpoint-url`, else the service's own setting
/// (`AWS_ENDPOINT_URL_CLOUDWATCH` or the profile's `services` section), else
/// `AWS_ENDPOINT_URL`, else the region's endpoint.
pub fn endpoint(sdk: &SdkConfig) -> (String, &'static str) {
    use aws_types::service_config::ServiceConfigKey;
    if sdk.get_origin("endpoint_url").is_client_config()
        && let Some(url) = sdk.endpoint_url()
    {
        return (url.to_owned(), "--endpoint-url");
    }
    let key = ServiceConfigKey::builder()
        .service_id("CloudWatch")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build();
    if let Some(url) = key
        .ok()
        .and_then(|key| sdk.service_config().and_then(|c| c.load_config(key)))
    {
        return (
            url,
            "AWS_ENDPOINT_URL_CLOUDWATCH or the profile's services section",
        );
    }
    if let Some(url) = sdk.endpoint_url() {
        return (url.to_owned(), "AWS_ENDPOINT_URL or the profile");
    }
    let region = sdk.region().map_or("", |r| r.as_ref());
    let domain = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    (
        format!("https://monitoring.{region}.{domain}"),
        "CloudWatch's endpoint in the region",
    )
}

impl Publisher for CloudWatch {
    async fn publish(&self, request: &PutRequest) -> Result<(), PublishError> {
        self.client
            .put_metric_data()
            .namespace(&request.namespace)
            .set_metric_data(Some(request.metric_data.iter().map(to_sdk).collect()))
            .send()
            .await
            .map(drop)
            .map_err(|e| {
                let kind = match &e {
                    SdkError::ServiceError(service) => {
                        classify(service.err().meta().code(), service.raw().status().as_u16())
                    }
                    SdkError::ResponseError(response) => {
                        classify(None, response.raw().status().as_u16())
                    }
                    // Credentials that cannot be resolved fail before anything is sent.
                    _ if caused_by_credentials(&e) => ErrorKind::Auth,
                    _ => ErrorKind::Transient,
                };
                PublishError::new(kind, explain(&e, self.request_timeout))
            })
    }
}

/// What happened to a request, in the words a user acts on: CloudWatch answered (with
/// the status and error code, or the first bytes of a body that is not a CloudWatch
/// answer, and its content type), did not answer in time, or could not be reached.
/// Never the request itself, and outside text only through [`redact::for_log`].
fn explain(e: &SdkError<PutMetricDataError, HttpResponse>, timeout: Duration) -> String {
    let no_answer = || format!("did not answer within {} s", timeout.as_secs_f64());
    match e {
        SdkError::ServiceError(service) => match service.err().meta().code() {
            Some(code) => format!(
                "answered HTTP {}: {}: {}",
                service.raw().status().as_u16(),
                redact::for_log(code),
                redact::for_log(service.err().meta().message().unwrap_or("no message"))
            ),
            None => answered(service.raw()),
        },
        SdkError::ResponseError(response) => answered(response.raw()),
        SdkError::TimeoutError(_) => no_answer(),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => no_answer(),
        SdkError::DispatchFailure(failure) if failure.is_io() => {
            format!("could not be reached: {}", redact::chain(e))
        }
        _ => redact::chain(e),
    }
}

/// "answered HTTP 502 (text/html), not a CloudWatch answer: <html>…".
fn answered(raw: &HttpResponse) -> String {
    /// Enough of a body to recognise a proxy's page or a wrong endpoint.
    const SHOWN_BYTES: usize = 120;
    let content_type = raw
        .headers()
        .get("content-type")
        .unwrap_or("no content type");
    let body = raw.body().bytes().unwrap_or_default();
    let start = String::from_utf8_lossy(&body[..body.len().min(SHOWN_BYTES)]);
    format!(
        "answered HTTP {} ({}), not a CloudWatch answer: {}",
        raw.status().as_u16(),
        redact::for_log(content_type),
        redact::for_log(&start)
    )
}

fn caused_by_credentials(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.downcast_ref::<CredentialsError>().is_some() {
            return true;
        }
        cause = e.source();
    }
    false
}

fn to_sdk(datum: &Datum) -> MetricDatum {
    let dimensions = datum
        .dimensions
        .iter()
        .map(|d| {
            sdk::Dimension::builder()
                .name(d.name())
                .value(d.value())
                .build()
        })
        .collect();
    let nonempty = |v: &Vec<f64>| (!v.is_empty()).then(|| v.clone());
    MetricDatum::builder()
        .metric_name(datum.metric_name)
        .set_dimensions(Some(dimensions))
        .timestamp(DateTime::from_secs(
            datum.timestamp.try_into().unwrap_or(i64::MAX),
        ))
        .unit(StandardUnit::from(datum.unit))
        .set_value(datum.value)
        .set_values(nonempty(&datum.values))
        .set_counts(nonempty(&datum.counts))
        .set_storage_resolution(datum.storage_resolution.map(|r| r as i32))
        .build()
}

#[cfg(test)]
mod tests {
    use aws_sdk_cloudwatch::config::{Credentials, Region};
    use aws_smithy_http_client::test_util::capture_request;

    use super::*;
    use crate::domain::Aggregation;
    use crate::domain::Metric;
    use crate::domain::testing::test_window;

    const DISTRIBUTION: Encoding = Encoding {
        aggregation: Aggregation::Distribution,
        storage_resolution: None,
    };
    const MEDIAN_MAX: Encoding = Encoding {
        aggregation: Aggregation::MedianMax,
        storage_resolution: None,
    };

    #[test]
    fn distribution_sends_values_and_counts_per_metric() {
        let w = test_window(
            1_795_619_520,
            &[
                (Metric::Cpu, &[10.0, 20.0, 10.0]),
                (Metric::Memory, &[50.0, 50.0, 50.0]),
            ],
            &[],
        );
        let data = encode(&w, &DISTRIBUTION);
        assert_eq!(data.len(), 2);
        let cpu = &data[0];
        assert_eq!(cpu.metric_name, "CPUUtilization");
        assert_eq!(
            (cpu.values.as_slice(), cpu.counts.as_slice()),
            (&[10.0, 20.0][..], &[2.0, 1.0][..])
        );
        assert_eq!(cpu.value, None);
        let mem = &data[1];
        assert_eq!(mem.metric_name, "MemoryUtilization");
        assert_eq!(
            (mem.values.as_slice(), mem.counts.as_slice()),
            (&[50.0][..], &[3.0][..])
        );
        for d in &data {
            assert_eq!(d.unit, "Percent");
            assert_eq!(d.timestamp, 1_795_619_520);
            assert_eq!(*d.dimensions, [Dimension::service("web").unwrap()]);
        }
    }

    #[test]
    fn more_than_150_distinct_values_split_into_datums_with_one_timestamp() {
        let cpu: Vec<f64> = (0..400).map(|i| f64::from(i) / 10.0).collect();
        let w = test_window(60, &[(Metric::Cpu, &cpu), (Metric::Memory, &[1.0])], &[]);
        let data = encode(&w, &DISTRIBUTION);
        let cpu_datums: Vec<&Datum> = data
            .iter()
            .filter(|d| d.metric_name == "CPUUtilization")
            .collect();
        assert_eq!(cpu_datums.len(), 3, "400 distinct values → 150 + 150 + 100");
        assert!(
            cpu_datums
                .iter()
                .all(|d| d.values.len() <= MAX_VALUES_PER_DATUM)
        );
        assert!(cpu_datums.iter().all(|d| d.timestamp == 60));
        let total: f64 = cpu_datums.iter().flat_map(|d| d.counts.iter()).sum();
        assert_eq!(total, 400.0, "no sample lost in the split");
        assert_eq!(cpu_datums[2].values.len(), 100);
    }

    #[test]
    fn a_full_day_of_distinct_values_still_fits_one_request() {
        let all: Vec<f64> = (0..=1000).map(|i| f64::from(i) / 10.0).collect();
        let w = test_window(
            0,
            &[
                (Metric::Cpu, &all),
                (Metric::Memory, &all),
                (Metric::Throttled, &all),
            ],
            &[],
        );
        let data = encode(&w, &DISTRIBUTION);
        assert_eq!(data.len(), 21);
        assert!(data.len() <= MAX_DATUMS_PER_REQUEST);
    }

    #[test]
    fn a_request_reads_as_one_line_of_bounded_length() {
        let w = test_window(120, &[(Metric::Cpu, &[10.0, 30.0, 20.0, 90.0])], &[]);
        let request = |data| PutRequest {
            namespace: "NS".into(),
            metric_data: data,
        };
        let line = describe(&request(encode(&w, &MEDIAN_MAX)));
        let (head, tail) = line.split_once(", under ").unwrap();
        assert_eq!(
            head,
            "PutMetricData NS [ServiceName=web], 2 datums of 1970-01-01T00:02:00Z"
        );
        assert!(
            tail.ends_with(" bytes: CPUUtilization=25 MaxCPUUtilization=90"),
            "{line}"
        );
        let line = describe(&request(encode(&w, &DISTRIBUTION)));
        assert!(
            line.ends_with(": CPUUtilization[4 samples, 4 values 10–90]"),
            "{line}"
        );
        // A catch-up request of 1000 datums over many windows.
        let many: Vec<Datum> = (0..500)
            .flat_map(|i| {
                encode(
                    &test_window(60 * i, &[(Metric::Cpu, &[1.0])], &[]),
                    &MEDIAN_MAX,
                )
            })
            .collect();
        let line = describe(&request(many));
        assert!(line.contains("1000 datums of 1970-01-01T00:00:00Z to 1970-01-01T08:19:00Z"));
        assert!(line.ends_with(" and 990 more"), "{line}");
        assert!(line.len() < 600, "{} bytes", line.len());
    }

    #[test]
    fn compat_0_1_sends_the_three_metrics_of_0_1_x_as_fractions() {
        let w = test_window(
            120,
            &[
                (Metric::Cpu, &[10.0, 30.0, 20.0, 90.0]),
                (Metric::Memory, &[40.0, 41.0, 42.5, 42.0]),
            ],
            &[],
        );
        let original = Encoding {
            aggregation: Aggregation::Original,
            storage_resolution: None,
        };
        let data = encode(&w, &original);
        let got: Vec<(&str, Option<f64>)> = data.iter().map(|d| (d.metric_name, d.value)).collect();
        assert_eq!(
            got,
            vec![
                ("CPUUtilization", Some(0.25)),
                ("MemoryUtilization", Some(0.415)),
                ("MaxMemoryUtilization", Some(0.425)),
            ]
        );
        assert!(
            data.iter()
                .all(|d| d.unit == "Percent" && d.values.is_empty())
        );
    }

    #[test]
    fn median_max_sends_the_median_and_the_maximum_of_each_metric() {
        let w = test_window(
            120,
            &[
                (Metric::Cpu, &[10.0, 30.0, 20.0, 90.0]),
                (Metric::Memory, &[40.0, 41.0, 42.0]),
            ],
            &[],
        );
        let got: Vec<(&str, Option<f64>)> = encode(&w, &MEDIAN_MAX)
            .iter()
            .map(|d| (d.metric_name, d.value))
            .collect();
        assert_eq!(
            got,
            vec![
                ("CPUUtilization", Some(25.0)),
                ("MaxCPUUtilization", Some(90.0)),
                ("MemoryUtilization", Some(41.0)),
                ("MaxMemoryUtilization", Some(42.0)),
            ]
        );
    }

    #[test]
    fn the_windows_dimensions_are_on_every_datum() {
        let w = test_window(
            0,
            &[(Metric::Cpu, &[1.0]), (Metric::Memory, &[2.0])],
            &[("ClusterName", "prod")],
        );
        for d in encode(&w, &MEDIAN_MAX) {
            let names: Vec<&str> = d.dimensions.iter().map(Dimension::name).collect();
            assert_eq!(names, ["ServiceName", "ClusterName"]);
        }
    }

    #[test]
    fn errors_are_classified_by_code_then_status() {
        assert_eq!(classify(Some("Throttling"), 400), ErrorKind::Throttled);
        assert_eq!(classify(None, 429), ErrorKind::Throttled);
        assert_eq!(
            classify(Some("InvalidParameterValue"), 400),
            ErrorKind::Invalid
        );
        assert_eq!(
            classify(Some("InvalidParameterCombination"), 400),
            ErrorKind::Invalid
        );
        assert_eq!(classify(Some("AccessDenied"), 403), ErrorKind::Auth);
        assert_eq!(classify(Some("ExpiredToken"), 400), ErrorKind::Auth);
        assert_eq!(classify(None, 403), ErrorKind::Auth);
        assert_eq!(
            classify(Some("InternalServiceError"), 500),
            ErrorKind::Transient
        );
        assert_eq!(classify(None, 503), ErrorKind::Transient);
        assert_eq!(classify(Some("SomethingNew"), 400), ErrorKind::Transient);
    }

    #[test]
    fn json_has_the_put_metric_data_field_names() {
        let w = test_window(1_795_619_520, &[(Metric::Cpu, &[12.5])], &[]);
        let request = PutRequest {
            namespace: "Test/NS".into(),
            metric_data: encode(&w, &DISTRIBUTION),
        };
        assert_eq!(
            serde_json::to_string(&request).unwrap(),
            r#"{"Namespace":"Test/NS","MetricData":[{"MetricName":"CPUUtilization","Dimensions":[{"Name":"ServiceName","Value":"web"}],"Timestamp":"2026-11-25T15:12:00Z","Unit":"Percent","Values":[12.5],"Counts":[1.0]}]}"#
        );
    }

    /// The batch limit relies on `encoded_size`; measure the body the SDK really sends.
    #[tokio::test]
    async fn the_size_estimate_bounds_the_real_request_body() {
        let (http, request) = capture_request(None);
        let config = aws_sdk_cloudwatch::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
            .http_client(http)
            .disable_request_compression(true)
            .build();
        let publisher = CloudWatch {
            client: Client::from_conf(config),
            request_timeout: Duration::from_secs(10),
        };
        let datum = |i: u32| Datum {
            metric_name: "CPUUtilization",
            dimensions: vec![Dimension::new("ServiceName", format!("service-{i}")).unwrap()].into(),
            timestamp: 1_795_619_520 + u64::from(i),
            unit: "Percent",
            value: None,
            values: (0..150)
                .map(|v| f64::from(v) / 10.0 + f64::from(i % 7))
                .collect(),
            counts: (0..150).map(|c| f64::from(c % 5 + 1)).collect(),
            storage_resolution: Some(1),
        };
        let put = PutRequest {
            namespace: "Test/Size".into(),
            metric_data: (0..300).map(datum).collect(),
        };
        let _ = publisher.publish(&put).await;
        let sent = request.expect_request();
        let body = sent.body().bytes().expect("an in-memory body").len();
        let estimate = request_overhead(&put.namespace)
            + put.metric_data.iter().map(encoded_size).sum::<usize>();
        println!("PutMetricData body {body} bytes, estimate {estimate}");
        assert!(body <= estimate, "body {body} > estimate {estimate}");
        assert!(
            estimate < body * 2,
            "estimate {estimate} too loose for body {body}"
        );
    }
}
