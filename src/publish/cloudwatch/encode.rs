//! CloudWatch's encoding: windows → `MetricDatum`s, and the `PutMetricData` budget
//! (datums and bytes per request) that each batch must keep. Pure: shared with the
//! dry-run preview and the send queue, tested without the SDK.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::domain::{
    Dimension, Distribution, Encoding, MAX_VALUES_PER_DATUM, Metric, Window, rfc3339,
};

/// Most datums in one request (PutMetricData API reference, `MetricData`: "up to 1000").
pub const MAX_DATUMS_PER_REQUEST: usize = 1000;
/// Most bytes in one request (PutMetricData API reference: "limited to 1 MB in size for
/// HTTP POST requests"), taken as 10^6 of the uncompressed body to be safe.
pub const MAX_REQUEST_BYTES: usize = 1_000_000;

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

/// The datums of `window`, the run's dimensions first, then each container's: per
/// metric, its distribution in datums of at most [`MAX_VALUES_PER_DATUM`] values, or its
/// median and maximum. A percentage has at most 1001 distinct values (0.0–100.0 by
/// 0.1), so at most 7 datums; an absolute figure at most one a sample. A window too
/// large for one request is split by [`request_len`].
pub fn encode(window: &Window, encoding: &Encoding) -> Vec<Datum> {
    let mut data = Vec::new();
    for (dimensions, series) in window.groups() {
        encode_group(window.start, dimensions, series, encoding, &mut data);
    }
    data
}

/// The datums of `series` with `dimensions`, appended to `data`.
fn encode_group(
    start: u64,
    dimensions: &Arc<[Dimension]>,
    series: &[(Metric, Distribution)],
    encoding: &Encoding,
    data: &mut Vec<Datum>,
) {
    let datum = |metric_name, unit, value, (values, counts)| Datum {
        metric_name,
        dimensions: Arc::clone(dimensions),
        timestamp: start,
        unit,
        value,
        values,
        counts,
        storage_resolution: encoding.storage_resolution,
    };
    for (metric, distribution) in series {
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

/// How many of `datums` (oldest first) the next request in `namespace` takes: at most
/// `most` (and [`MAX_DATUMS_PER_REQUEST`]) datums and [`MAX_REQUEST_BYTES`] encoded.
/// Windows (datums of one timestamp) are not split across requests, unless one window
/// alone is over the limits.
pub fn request_len(namespace: &str, datums: &VecDeque<Datum>, most: usize) -> usize {
    let mut bytes = request_overhead(namespace);
    let mut take = 0;
    // Where the last window that started inside the batch begins.
    let mut window_start = 0;
    for (i, datum) in datums
        .iter()
        .take(most.min(MAX_DATUMS_PER_REQUEST))
        .enumerate()
    {
        if i > 0 && datum.timestamp != datums[i - 1].timestamp {
            window_start = i;
        }
        bytes += encoded_size(datum);
        if take > 0 && bytes > MAX_REQUEST_BYTES {
            break;
        }
        take += 1;
    }
    let cuts_a_window = datums
        .get(take)
        .is_some_and(|next| take > 0 && next.timestamp == datums[take - 1].timestamp);
    if cuts_a_window && window_start > 0 {
        take = window_start;
    }
    take
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

#[cfg(test)]
mod tests {
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
    fn container_datums_carry_the_runs_dimensions_and_container_name() {
        let w = test_window(
            60,
            &[(Metric::MemoryUtilized, &[300.0])],
            &[("Env", "prod")],
        );
        let w = crate::domain::testing::with_container(
            w,
            "app",
            &[(Metric::ContainerMemoryUtilized, &[250.0, 250.0])],
        );
        let data = encode(&w, &DISTRIBUTION);
        let shown: Vec<(&str, &str, Vec<String>, Vec<f64>)> = data
            .iter()
            .map(|d| {
                let dims = d
                    .dimensions
                    .iter()
                    .map(|x| format!("{}={}", x.name(), x.value()));
                (d.metric_name, d.unit, dims.collect(), d.counts.clone())
            })
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "MemoryUtilized",
                    "Megabytes",
                    vec!["ServiceName=web".to_owned(), "Env=prod".to_owned()],
                    vec![1.0]
                ),
                (
                    "MemoryUtilized",
                    "Megabytes",
                    vec![
                        "ServiceName=web".to_owned(),
                        "Env=prod".to_owned(),
                        "ContainerName=app".to_owned()
                    ],
                    vec![2.0]
                )
            ]
        );
    }

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
}
