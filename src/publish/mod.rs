//! Windows → `PutMetricData` requests, and the publishers that send them.
//!
//! [`encode`] is pure: a closed [`Window`] becomes one [`PutRequest`] whose field names are
//! those of the `PutMetricData` API (and of `aws cloudwatch put-metric-data
//! --cli-input-json`). A [`Publisher`] sends it: [`CloudWatch`] through the AWS SDK, or
//! [`DryRun`] as a JSON line on stdout. Which one is chosen once, at start.

use std::future::Future;

use aws_sdk_cloudwatch::primitives::{DateTime, DateTimeFormat};
use serde::{Serialize, Serializer};
use thiserror::Error;

use crate::aggregate::{Histogram, Window};
use crate::cli::Aggregation;

pub mod cloudwatch;
pub mod dry_run;
pub mod emf;

pub use cloudwatch::CloudWatch;
pub use dry_run::DryRun;
pub use emf::Emf;

/// Most distinct values one datum may carry in `Values` (PutMetricData API reference,
/// `MetricDatum.Values`: "up to 150 unique values").
pub const MAX_VALUES_PER_DATUM: usize = 150;

/// Most datums in one request (PutMetricData API reference, `MetricData`: "up to 1000").
pub const MAX_DATUMS_PER_REQUEST: usize = 1000;
/// Most bytes in one request (PutMetricData API reference: "limited to 1 MB in size for
/// HTTP POST requests"), taken as 10^6 of the uncompressed body to be safe.
pub const MAX_REQUEST_BYTES: usize = 1_000_000;

/// Name of the dimension every datum carries.
pub const SERVICE_DIMENSION: &str = "ServiceName";

/// One `PutMetricData` call's input.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRequest {
    pub namespace: String,
    pub metric_data: Vec<Datum>,
}

/// One `MetricDatum`: either a single `Value` or a distribution as `Values`/`Counts`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Datum {
    pub metric_name: &'static str,
    pub dimensions: Vec<Dimension>,
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

/// A `Name`/`Value` dimension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Dimension {
    pub name: String,
    pub value: String,
}

/// Which metrics are sent (`--metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricSet {
    /// `CPUUtilization`.
    pub cpu: bool,
    /// `MemoryUtilization`.
    pub memory: bool,
    /// `CPUThrottledPercent` (cgroup scope only).
    pub throttling: bool,
}

impl Default for MetricSet {
    fn default() -> Self {
        MetricSet {
            cpu: true,
            memory: true,
            throttling: false,
        }
    }
}

/// Everything about the datums that does not change from window to window.
#[derive(Debug, Clone)]
pub struct Encoding {
    pub namespace: String,
    pub service: String,
    pub aggregation: Aggregation,
    pub metrics: MetricSet,
    /// `Some(1)` for high-resolution metrics.
    pub storage_resolution: Option<u32>,
    /// Dimensions after `ServiceName` on every datum (e.g. the ECS cluster and family).
    pub extra_dimensions: Vec<Dimension>,
}

/// The request for one window, or `None` when the window has no value to send.
///
/// All datums of a window go in one request. That always fits the API: at most 1001
/// distinct values per metric (0.0–100.0 by 0.1) make at most 7 datums each, far under
/// the 1000 datums and 1 MB a request may carry.
pub fn encode(window: &Window, encoding: &Encoding) -> Option<PutRequest> {
    let mut data = Vec::new();
    let selected = encoding.metrics;
    let metrics = [
        (
            "CPUUtilization",
            "MaxCPUUtilization",
            &window.cpu,
            selected.cpu,
        ),
        (
            "MemoryUtilization",
            "MaxMemoryUtilization",
            &window.memory,
            selected.memory,
        ),
        (
            "CPUThrottledPercent",
            "MaxCPUThrottledPercent",
            &window.throttled,
            selected.throttling,
        ),
    ];
    let mut dimensions = vec![Dimension {
        name: SERVICE_DIMENSION.to_owned(),
        value: encoding.service.clone(),
    }];
    dimensions.extend(encoding.extra_dimensions.iter().cloned());
    let datum = |metric_name, value, values, counts| Datum {
        metric_name,
        dimensions: dimensions.clone(),
        timestamp: window.start,
        unit: "Percent",
        value,
        values,
        counts,
        storage_resolution: encoding.storage_resolution,
    };
    for (name, max_name, histogram, _) in metrics.into_iter().filter(|m| m.3) {
        match encoding.aggregation {
            Aggregation::Distribution => {
                for (values, counts) in distribution_chunks(histogram) {
                    data.push(datum(name, None, values, counts));
                }
            }
            Aggregation::MedianMax => {
                if let (Some(median), Some(max)) = (histogram.median(), histogram.max()) {
                    data.push(datum(name, Some(median), Vec::new(), Vec::new()));
                    data.push(datum(max_name, Some(max), Vec::new(), Vec::new()));
                }
            }
        }
    }
    (!data.is_empty()).then(|| PutRequest {
        namespace: encoding.namespace.clone(),
        metric_data: data,
    })
}

/// The histogram as `(Values, Counts)` pairs of at most [`MAX_VALUES_PER_DATUM`] each.
fn distribution_chunks(histogram: &Histogram) -> Vec<(Vec<f64>, Vec<f64>)> {
    let pairs: Vec<(f64, u32)> = histogram.distribution().collect();
    pairs
        .chunks(MAX_VALUES_PER_DATUM)
        .map(|chunk| {
            chunk
                .iter()
                .map(|&(value, count)| (value, f64::from(count)))
                .unzip()
        })
        .collect()
}

/// `unix_secs` as RFC 3339 UTC, e.g. `2026-11-25T15:12:00Z`.
pub fn rfc3339(unix_secs: u64) -> String {
    i64::try_from(unix_secs)
        .ok()
        .and_then(|secs| DateTime::from_secs(secs).fmt(DateTimeFormat::DateTime).ok())
        .unwrap_or_else(|| format!("@{unix_secs}"))
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
        .map(|d| HEADER + field("Name", text(&d.name)) + field("Value", text(&d.value)))
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

/// Sends requests somewhere.
pub trait Publisher {
    /// Sends one request; `Ok` once the receiver has accepted it.
    fn publish(
        &self,
        request: &PutRequest,
    ) -> impl Future<Output = Result<(), PublishError>> + Send;
}

/// A request that was not accepted, and what kind of failure it was.
#[derive(Debug, Error)]
#[error("{message}")]
pub struct PublishError {
    pub kind: ErrorKind,
    pub message: String,
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

impl PublishError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        PublishError {
            kind,
            message: message.into(),
        }
    }
}

impl From<std::io::Error> for PublishError {
    fn from(e: std::io::Error) -> Self {
        PublishError::new(ErrorKind::Transient, format!("cannot write to stdout: {e}"))
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Aggregator;
    use crate::sample::Sample;

    fn encoding(aggregation: Aggregation) -> Encoding {
        Encoding {
            namespace: "Test/NS".into(),
            service: "web".into(),
            aggregation,
            metrics: MetricSet::default(),
            storage_resolution: None,
            extra_dimensions: Vec::new(),
        }
    }

    /// A closed window at `start` holding the given samples.
    fn window(start: u64, cpu: &[f64], memory: &[f64]) -> Window {
        let mut agg = Aggregator::new(60);
        for i in 0..cpu.len().max(memory.len()) {
            let sample = Sample {
                cpu: cpu.get(i).copied(),
                memory: memory.get(i).copied(),
                ..Sample::default()
            };
            agg.add(start, &sample);
        }
        agg.finish().expect("window has values")
    }

    #[test]
    fn distribution_sends_values_and_counts_per_metric() {
        let w = window(1_795_619_520, &[10.0, 20.0, 10.0], &[50.0, 50.0, 50.0]);
        let req = encode(&w, &encoding(Aggregation::Distribution)).unwrap();
        assert_eq!(req.namespace, "Test/NS");
        assert_eq!(req.metric_data.len(), 2);
        let cpu = &req.metric_data[0];
        assert_eq!(cpu.metric_name, "CPUUtilization");
        assert_eq!(
            (cpu.values.as_slice(), cpu.counts.as_slice()),
            (&[10.0, 20.0][..], &[2.0, 1.0][..])
        );
        assert_eq!(cpu.value, None);
        let mem = &req.metric_data[1];
        assert_eq!(mem.metric_name, "MemoryUtilization");
        assert_eq!(
            (mem.values.as_slice(), mem.counts.as_slice()),
            (&[50.0][..], &[3.0][..])
        );
        for d in &req.metric_data {
            assert_eq!(d.unit, "Percent");
            assert_eq!(d.timestamp, 1_795_619_520);
            assert_eq!(
                d.dimensions,
                vec![Dimension {
                    name: "ServiceName".into(),
                    value: "web".into()
                }]
            );
        }
    }

    #[test]
    fn more_than_150_distinct_values_split_into_datums_with_one_timestamp() {
        let cpu: Vec<f64> = (0..400).map(|i| f64::from(i) / 10.0).collect();
        let w = window(60, &cpu, &[1.0]);
        let req = encode(&w, &encoding(Aggregation::Distribution)).unwrap();
        let cpu_datums: Vec<&Datum> = req
            .metric_data
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
        let cpu: Vec<f64> = (0..=1000).map(|i| f64::from(i) / 10.0).collect();
        let w = window(0, &cpu, &cpu);
        let req = encode(&w, &encoding(Aggregation::Distribution)).unwrap();
        assert_eq!(req.metric_data.len(), 14);
    }

    #[test]
    fn median_max_sends_the_original_agents_four_metrics() {
        let w = window(120, &[10.0, 30.0, 20.0, 90.0], &[40.0, 41.0, 42.0]);
        let req = encode(&w, &encoding(Aggregation::MedianMax)).unwrap();
        let got: Vec<(&str, Option<f64>)> = req
            .metric_data
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
        assert!(req.metric_data.iter().all(|d| d.values.is_empty()));
    }

    #[test]
    fn a_metric_without_samples_is_left_out_not_sent_as_zero() {
        let w = window(0, &[], &[33.3]);
        for aggregation in [Aggregation::Distribution, Aggregation::MedianMax] {
            let req = encode(&w, &encoding(aggregation)).unwrap();
            assert!(
                req.metric_data
                    .iter()
                    .all(|d| !d.metric_name.contains("CPU"))
            );
        }
    }

    #[test]
    fn extra_dimensions_follow_service_name_on_every_datum() {
        let w = window(0, &[1.0], &[2.0]);
        let mut enc = encoding(Aggregation::MedianMax);
        enc.extra_dimensions = vec![Dimension {
            name: "ClusterName".into(),
            value: "prod".into(),
        }];
        let req = encode(&w, &enc).unwrap();
        for d in &req.metric_data {
            let names: Vec<&str> = d.dimensions.iter().map(|d| d.name.as_str()).collect();
            assert_eq!(names, ["ServiceName", "ClusterName"]);
        }
    }

    #[test]
    fn only_the_selected_metrics_are_sent() {
        let mut agg = Aggregator::new(60);
        let sample = Sample {
            cpu: Some(10.0),
            memory: Some(20.0),
            throttled: Some(30.0),
            ..Sample::default()
        };
        agg.add(0, &sample);
        let w = agg.finish().unwrap();
        let names = |metrics| {
            let mut enc = encoding(Aggregation::Distribution);
            enc.metrics = metrics;
            encode(&w, &enc).map(|r| {
                r.metric_data
                    .iter()
                    .map(|d| d.metric_name)
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            names(MetricSet::default()).unwrap(),
            ["CPUUtilization", "MemoryUtilization"]
        );
        let all = MetricSet {
            throttling: true,
            ..MetricSet::default()
        };
        assert_eq!(
            names(all).unwrap(),
            ["CPUUtilization", "MemoryUtilization", "CPUThrottledPercent"]
        );
        let memory_only = MetricSet {
            cpu: false,
            memory: true,
            throttling: false,
        };
        assert_eq!(names(memory_only).unwrap(), ["MemoryUtilization"]);
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
        let w = window(1_795_619_520, &[12.5], &[]);
        let req = encode(&w, &encoding(Aggregation::Distribution)).unwrap();
        let json = serde_json::to_string(&req).unwrap();
        assert_eq!(
            json,
            r#"{"Namespace":"Test/NS","MetricData":[{"MetricName":"CPUUtilization","Dimensions":[{"Name":"ServiceName","Value":"web"}],"Timestamp":"2026-11-25T15:12:00Z","Unit":"Percent","Values":[12.5],"Counts":[1.0]}]}"#
        );
    }
}
