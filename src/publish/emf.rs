//! `--output emf`: each window as CloudWatch Embedded Metric Format documents, one JSON
//! line each on stdout. With the awslogs or FireLens log driver, or on Lambda, CloudWatch
//! Logs extracts the metrics: no API call and no `PutMetricData` permission.
//!
//! Specification: "Embedded metric format specification" in the CloudWatch user guide. A
//! window whose metrics have more values than one document may carry is split into
//! several documents with the same timestamp.

use serde_json::{Map, Value, json};

use super::Format;
use super::cloudwatch::Encoding;
use crate::domain::dimension::EMF_METADATA_MEMBER;
use crate::domain::{Dimension, Distribution, Metric, Window, round_significant};

/// Most values per metric in one document (EMF specification: "up to 100 values").
pub const MAX_VALUES_PER_METRIC: usize = 100;
/// Most metrics in one directive (EMF specification, `Metrics`: "up to 100").
pub const MAX_METRICS_PER_DOCUMENT: usize = 100;
/// Longest line worth writing. The specification now allows 1 MB log events, but Docker's
/// `awslogs` driver still splits lines at 262,118 bytes (its 256 KiB event less a
/// 26-byte overhead), which would break the JSON, so the older limit holds. Documents
/// stay far below it (a test computes the largest possible one).
pub const MAX_EVENT_BYTES: usize = 262_144 - 26;

/// Encodes windows as EMF documents.
#[derive(Debug, Clone)]
pub struct Emf {
    /// `--namespace`.
    pub namespace: String,
    /// Distribution or median and maximum; the storage resolution.
    pub encoding: Encoding,
}

/// One metric's content in one document: a single value, or a share of a distribution.
enum Piece<'a> {
    Single(f64),
    Pairs(&'a [(f64, u32)]),
}

impl Format for Emf {
    const UNIT: &'static str = "documents";

    fn encode(&self, window: &Window, out: &mut Vec<Vec<u8>>) {
        for document in self.documents(window) {
            // Serializing a `Value` cannot fail.
            if let Ok(mut line) = serde_json::to_vec(&document) {
                line.push(b'\n');
                out.push(line);
            }
        }
    }
}

impl Emf {
    /// The documents of `window`: as many as its largest distribution needs at 100
    /// values each (single values go in the first).
    pub fn documents(&self, window: &Window) -> Vec<Value> {
        let mut out = Vec::new();
        for (dimensions, series) in window.groups() {
            self.group_documents(window.start, dimensions, series, &mut out);
        }
        out
    }

    /// The documents of one set of dimensions, appended to `out`.
    fn group_documents(
        &self,
        start: u64,
        dimensions: &[Dimension],
        series: &[(Metric, Distribution)],
        out: &mut Vec<Value>,
    ) {
        let metrics: Vec<(&'static str, &'static str, Vec<Piece>)> = series
            .iter()
            .flat_map(|(metric, distribution)| self.parts(*metric, distribution))
            .collect();
        let documents = metrics
            .iter()
            .map(|(_, _, parts)| parts.len())
            .max()
            .unwrap_or(0);
        let resolution = self.encoding.storage_resolution.unwrap_or(60);
        for i in 0..documents {
            let present: Vec<(&str, &str, &Piece)> = metrics
                .iter()
                .filter_map(|(name, unit, parts)| parts.get(i).map(|p| (*name, *unit, p)))
                .collect();
            for group in present.chunks(MAX_METRICS_PER_DOCUMENT) {
                let definitions: Vec<Value> = group
                    .iter()
                    .map(|(name, unit, _)| {
                        json!({"Name": name, "Unit": unit, "StorageResolution": resolution})
                    })
                    .collect();
                let names: Vec<&str> = dimensions.iter().map(|d| d.name()).collect();
                let mut doc = Map::new();
                doc.insert(
                    EMF_METADATA_MEMBER.into(),
                    json!({
                        "Timestamp": start.saturating_mul(1000),
                        "CloudWatchMetrics": [{
                            "Namespace": self.namespace,
                            "Dimensions": [names],
                            "Metrics": definitions,
                        }],
                    }),
                );
                for d in dimensions {
                    doc.insert(d.name().to_owned(), Value::from(d.value()));
                }
                for (name, _, part) in group {
                    let value = match part {
                        Piece::Single(v) => json!(v),
                        Piece::Pairs(pairs) => histogram(pairs),
                    };
                    doc.insert((*name).to_owned(), value);
                }
                out.push(Value::Object(doc));
            }
        }
    }

    /// The metrics `metric` becomes, each with its parts document by document.
    fn parts<'a>(
        &self,
        metric: Metric,
        distribution: &'a Distribution,
    ) -> Vec<(&'static str, &'static str, Vec<Piece<'a>>)> {
        let unit = metric.unit();
        match self
            .encoding
            .aggregation
            .single_values(metric, distribution)
        {
            None => {
                let parts = distribution
                    .pairs()
                    .chunks(MAX_VALUES_PER_METRIC)
                    .map(Piece::Pairs)
                    .collect();
                vec![(metric.name(), unit, parts)]
            }
            Some(values) => values
                .into_iter()
                .map(|(name, value)| (name, unit, vec![Piece::Single(value)]))
                .collect(),
        }
    }
}

/// A distribution (or one document's share of it) as AWS's own EMF exporter writes a
/// histogram: the OpenTelemetry Collector's `awsemf` exporter marshals its
/// `cWMetricHistogram { Values, Counts, Max, Min, Count, Sum }`
/// (exporter/awsemfexporter/metric_translator.go, opentelemetry-collector-contrib), with
/// `Count` the sum of `Counts`. Here all six describe the same values: where a window is
/// split over documents, each document's `Max`, `Min`, `Count` and `Sum` are those of its
/// own `Values` and `Counts`, so they combine to the window's.
fn histogram(pairs: &[(f64, u32)]) -> Value {
    let (values, counts): (Vec<f64>, Vec<u32>) = pairs.iter().copied().unzip();
    let count: u64 = counts.iter().map(|c| u64::from(*c)).sum();
    let sum: f64 = pairs.iter().map(|(v, c)| v * f64::from(*c)).sum();
    // Values have at most 4 significant digits (percentages: 0.0–100.0 by 0.1): a sum
    // kept to 12 has none of the float noise of adding them (60.300000000000004).
    let sum = round_significant(sum, 12);
    json!({
        "Values": values,
        "Counts": counts,
        "Max": values.last().copied().unwrap_or(0.0),
        "Min": values.first().copied().unwrap_or(0.0),
        "Count": count,
        "Sum": sum,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Aggregation;
    use crate::domain::dimension::{MAX_DIMENSIONS, MAX_NAME_LEN, MAX_VALUE_LEN};
    use crate::domain::testing::test_window;

    fn emf(aggregation: Aggregation) -> Emf {
        Emf {
            namespace: "NS".into(),
            encoding: Encoding {
                aggregation,
                storage_resolution: Some(1),
            },
        }
    }

    #[test]
    fn a_containers_metrics_are_documents_with_its_container_name() {
        let w = test_window(
            1_795_619_520,
            &[(Metric::NetworkRx, &[1500.0, 1500.0])],
            &[],
        );
        let w = crate::domain::testing::with_container(
            w,
            "app",
            &[(Metric::ContainerCpuUtilized, &[204.8, 409.6])],
        );
        let docs = emf(Aggregation::Distribution).documents(&w);
        assert_eq!(docs.len(), 2, "{docs:?}");
        let task = &docs[0]["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(task["Dimensions"], json!([["ServiceName"]]));
        assert_eq!(
            task["Metrics"][0],
            json!({"Name": "NetworkRxBytes", "Unit": "Bytes/Second", "StorageResolution": 1})
        );
        assert_eq!(docs[0]["NetworkRxBytes"]["Sum"], json!(3000.0));
        let app = &docs[1];
        let directive = &app["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(
            directive["Dimensions"],
            json!([["ServiceName", "ContainerName"]])
        );
        assert_eq!(app["ContainerName"], "app");
        assert_eq!(
            directive["Metrics"][0],
            json!({"Name": "CpuUtilized", "Unit": "None", "StorageResolution": 1})
        );
        assert_eq!(app["CpuUtilized"]["Values"], json!([204.8, 409.6]));
        assert_eq!(app["CpuUtilized"]["Sum"], json!(614.4));
        assert!(
            app.get("NetworkRxBytes").is_none(),
            "the task's metric stays in its own"
        );
    }

    #[test]
    fn a_window_is_one_document_with_values_counts_and_dimensions() {
        let w = test_window(
            1_795_619_520,
            &[
                (Metric::Cpu, &[1.0, 2.5, 1.0, 2.5]),
                (Metric::Memory, &[40.0, 40.0]),
            ],
            &[("Env", "prod")],
        );
        let docs = emf(Aggregation::Distribution).documents(&w);
        assert_eq!(docs.len(), 1);
        let doc = &docs[0];
        assert_eq!(doc["_aws"]["Timestamp"], 1_795_619_520_000u64);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "NS");
        assert_eq!(directive["Dimensions"], json!([["ServiceName", "Env"]]));
        assert_eq!(
            directive["Metrics"][0],
            json!({"Name": "CPUUtilization", "Unit": "Percent", "StorageResolution": 1})
        );
        assert_eq!(doc["ServiceName"], "web");
        assert_eq!(doc["Env"], "prod");
        assert_eq!(
            doc["CPUUtilization"],
            json!({"Values": [1.0, 2.5], "Counts": [2, 2], "Max": 2.5, "Min": 1.0,
                   "Count": 4, "Sum": 7.0})
        );
    }

    #[test]
    fn more_than_100_values_split_into_documents_and_lose_nothing() {
        let cpu: Vec<f64> = (0..300).flat_map(|v| [f64::from(v) / 10.0; 2]).collect();
        let w = test_window(0, &[(Metric::Cpu, &cpu), (Metric::Memory, &[40.0])], &[]);
        let docs = emf(Aggregation::Distribution).documents(&w);
        assert_eq!(docs.len(), 3);
        let mut total = 0;
        for doc in &docs {
            let values = doc["CPUUtilization"]["Values"].as_array().unwrap();
            assert!(values.len() <= MAX_VALUES_PER_METRIC);
            total += doc["CPUUtilization"]["Counts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_u64().unwrap())
                .sum::<u64>();
            let declared: Vec<&str> = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["Name"].as_str().unwrap())
                .collect();
            for name in declared {
                assert!(doc.get(name).is_some(), "{name} declared and present");
            }
            assert_eq!(doc["_aws"]["Timestamp"], 0);
        }
        assert_eq!(total, 600, "300 values × count 2");
        assert!(
            docs[1].get("MemoryUtilization").is_none(),
            "only where it has values"
        );
    }

    #[test]
    fn the_six_histogram_fields_agree_with_the_windows_samples() {
        // 250 distinct values (three documents), each taken twice or thrice.
        let samples: Vec<f64> = (0..250)
            .flat_map(|v| std::iter::repeat_n(f64::from(v) / 10.0 + 50.0, 2 + (v % 2) as usize))
            .collect();
        let w = test_window(0, &[(Metric::Memory, &samples)], &[]);
        let docs = emf(Aggregation::Distribution).documents(&w);
        assert_eq!(docs.len(), 3);
        let (mut count, mut sum, mut max, mut min) = (0, 0.0, f64::MIN, f64::MAX);
        for doc in &docs {
            let h = &doc["MemoryUtilization"];
            let values: Vec<f64> = serde_json::from_value(h["Values"].clone()).unwrap();
            let counts: Vec<u64> = serde_json::from_value(h["Counts"].clone()).unwrap();
            // Each document's own six agree with each other…
            assert_eq!(h["Count"], counts.iter().sum::<u64>());
            let own_sum: f64 = values.iter().zip(&counts).map(|(v, c)| v * *c as f64).sum();
            assert!((h["Sum"].as_f64().unwrap() - own_sum).abs() < 1e-6, "{h}");
            assert_eq!(h["Max"].as_f64(), values.iter().copied().reduce(f64::max));
            assert_eq!(h["Min"].as_f64(), values.iter().copied().reduce(f64::min));
            count += h["Count"].as_u64().unwrap();
            sum += h["Sum"].as_f64().unwrap();
            max = max.max(h["Max"].as_f64().unwrap());
            min = min.min(h["Min"].as_f64().unwrap());
        }
        // …and together they are the window's samples.
        assert_eq!(count, samples.len() as u64);
        assert!((sum - samples.iter().sum::<f64>()).abs() < 1e-6, "{sum}");
        assert_eq!((max, min), (74.9, 50.0));
    }

    #[test]
    fn median_max_documents_carry_single_values() {
        let w = test_window(60, &[(Metric::Cpu, &[10.0, 30.0, 20.0, 90.0])], &[]);
        let docs = emf(Aggregation::MedianMax).documents(&w);
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0]["CPUUtilization"], 25.0);
        assert_eq!(docs[0]["MaxCPUUtilization"], 90.0);
    }

    #[test]
    fn the_largest_possible_document_fits_one_log_event() {
        let dimensions: Vec<(String, String)> = (0..MAX_DIMENSIONS - 1)
            .map(|i| {
                let mut name = format!("D{i}");
                name.extend(std::iter::repeat_n('n', MAX_NAME_LEN - name.len()));
                (name, "v".repeat(MAX_VALUE_LEN))
            })
            .collect();
        let refs: Vec<(&str, &str)> = dimensions
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        // Every metric with 1001 distinct values (all of 0.0–100.0, and longer), 29
        // dimensions besides ServiceName, each of the longest name and value.
        let all: Vec<f64> = (0..=1000)
            .flat_map(|i| std::iter::repeat_n(f64::from(i) / 10.0 + 0.0001, 2))
            .collect();
        let w = test_window(
            u64::from(u32::MAX),
            &[
                (Metric::Cpu, &all),
                (Metric::Memory, &all),
                (Metric::Throttled, &all),
            ],
            &refs,
        );
        let mut lines = Vec::new();
        emf(Aggregation::Distribution).encode(&w, &mut lines);
        let largest = lines.iter().map(Vec::len).max().unwrap();
        println!("largest EMF document: {largest} bytes");
        assert!(largest < MAX_EVENT_BYTES, "{largest}");
    }
}
