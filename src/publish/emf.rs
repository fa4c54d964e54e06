//! `--output emf`: each window as CloudWatch Embedded Metric Format documents, one JSON
//! line each on stdout. With the awslogs or FireLens log driver, or on Lambda, CloudWatch
//! Logs extracts the metrics: no API call and no `PutMetricData` permission.
//!
//! Specification: "Embedded metric format specification" in the CloudWatch user guide.
//! A document holds at most 100 metrics, 30 dimensions per set and 100 values per metric;
//! larger windows are split into several documents with the same timestamp.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{Map, Value, json};

use super::{Datum, PublishError, Publisher, PutRequest};

/// Most values per metric in one document (EMF specification).
pub const MAX_VALUES_PER_METRIC: usize = 100;
/// Most metrics in one document (EMF specification).
pub const MAX_METRICS_PER_DOCUMENT: usize = 100;

/// Writes EMF documents to stdout.
#[derive(Debug, Default)]
pub struct Emf;

impl Publisher for Emf {
    async fn publish(&self, request: &PutRequest) -> Result<(), PublishError> {
        let mut out = Vec::new();
        for document in documents(request) {
            serde_json::to_writer(&mut out, &document).map_err(std::io::Error::from)?;
            out.push(b'\n');
        }
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&out)?;
        stdout.flush()?;
        Ok(())
    }
}

/// One metric of one window, merged over its datums.
struct Metric<'a> {
    name: &'a str,
    unit: &'a str,
    storage_resolution: u32,
    single: Option<f64>,
    pairs: Vec<(f64, f64)>,
}

/// The EMF documents for `request`: per window (timestamp), as many documents as its
/// largest distribution needs at 100 values each.
pub fn documents(request: &PutRequest) -> Vec<Value> {
    let mut windows: BTreeMap<u64, Vec<&Datum>> = BTreeMap::new();
    for datum in &request.metric_data {
        windows.entry(datum.timestamp).or_default().push(datum);
    }
    let mut documents = Vec::new();
    for (timestamp, datums) in windows {
        let mut metrics: Vec<Metric> = Vec::new();
        for d in &datums {
            let index = match metrics.iter().position(|m| m.name == d.metric_name) {
                Some(i) => i,
                None => {
                    metrics.push(Metric {
                        name: d.metric_name,
                        unit: d.unit,
                        storage_resolution: d.storage_resolution.unwrap_or(60),
                        single: None,
                        pairs: Vec::new(),
                    });
                    metrics.len() - 1
                }
            };
            let metric = &mut metrics[index];
            metric.single = metric.single.or(d.value);
            metric
                .pairs
                .extend(d.values.iter().copied().zip(d.counts.iter().copied()));
        }
        let parts = metrics
            .iter()
            .map(|m| m.pairs.len().div_ceil(MAX_VALUES_PER_METRIC))
            .max()
            .unwrap_or(0)
            .max(1);
        let dimensions = &datums[0].dimensions;
        for part in 0..parts {
            let present: Vec<&Metric> = metrics
                .iter()
                .filter(|m| {
                    if m.single.is_some() {
                        part == 0
                    } else {
                        m.pairs.len() > part * MAX_VALUES_PER_METRIC
                    }
                })
                .collect();
            for group in present.chunks(MAX_METRICS_PER_DOCUMENT) {
                let mut doc = Map::new();
                let definitions: Vec<Value> = group
                    .iter()
                    .map(|m| json!({"Name": m.name, "Unit": m.unit, "StorageResolution": m.storage_resolution}))
                    .collect();
                let names: Vec<&str> = dimensions.iter().map(|d| d.name.as_str()).collect();
                doc.insert(
                    "_aws".into(),
                    json!({
                        "Timestamp": timestamp * 1000,
                        "CloudWatchMetrics": [{
                            "Namespace": request.namespace,
                            "Dimensions": [names],
                            "Metrics": definitions,
                        }],
                    }),
                );
                for d in dimensions {
                    doc.insert(d.name.clone(), Value::from(d.value.clone()));
                }
                for m in group {
                    let value = match m.single {
                        Some(v) => json!(v),
                        None => {
                            let chunk = m
                                .pairs
                                .chunks(MAX_VALUES_PER_METRIC)
                                .nth(part)
                                .unwrap_or(&[]);
                            let (values, counts): (Vec<f64>, Vec<f64>) =
                                chunk.iter().copied().unzip();
                            json!({"Values": values, "Counts": counts})
                        }
                    };
                    doc.insert(m.name.to_owned(), value);
                }
                documents.push(Value::Object(doc));
            }
        }
    }
    documents
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::Dimension;

    fn datum(name: &'static str, values: Vec<f64>) -> Datum {
        Datum {
            metric_name: name,
            dimensions: vec![
                Dimension {
                    name: "ServiceName".into(),
                    value: "web".into(),
                },
                Dimension {
                    name: "Env".into(),
                    value: "prod".into(),
                },
            ],
            timestamp: 1_795_619_520,
            unit: "Percent",
            value: None,
            counts: vec![2.0; values.len()],
            values,
            storage_resolution: Some(1),
        }
    }

    #[test]
    fn a_window_is_one_document_with_values_counts_and_dimensions() {
        let put = PutRequest {
            namespace: "NS".into(),
            metric_data: vec![
                datum("CPUUtilization", vec![1.0, 2.5]),
                datum("MemoryUtilization", vec![40.0]),
            ],
        };
        let docs = documents(&put);
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
            json!({"Values": [1.0, 2.5], "Counts": [2.0, 2.0]})
        );
    }

    #[test]
    fn more_than_100_values_split_into_documents_and_lose_nothing() {
        // Two datums of 150 distinct values each for one metric: 300 values → 3 documents.
        let first: Vec<f64> = (0..150).map(|v| f64::from(v) / 10.0).collect();
        let second: Vec<f64> = (150..300).map(|v| f64::from(v) / 10.0).collect();
        let put = PutRequest {
            namespace: "NS".into(),
            metric_data: vec![
                datum("CPUUtilization", first),
                datum("CPUUtilization", second),
                datum("MemoryUtilization", vec![40.0]),
            ],
        };
        let docs = documents(&put);
        assert_eq!(docs.len(), 3);
        let mut total = 0.0;
        for doc in &docs {
            let values = doc["CPUUtilization"]["Values"].as_array().unwrap();
            assert!(values.len() <= MAX_VALUES_PER_METRIC);
            total += doc["CPUUtilization"]["Counts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_f64().unwrap())
                .sum::<f64>();
            let declared: Vec<&str> = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["Name"].as_str().unwrap())
                .collect();
            for name in declared {
                assert!(doc.get(name).is_some(), "{name} declared and present");
            }
        }
        assert_eq!(total, 600.0, "300 values × count 2");
        assert!(
            docs[1].get("MemoryUtilization").is_none(),
            "only where it has values"
        );
    }

    #[test]
    fn windows_of_one_request_get_their_own_documents() {
        let mut later = datum("CPUUtilization", vec![3.0]);
        later.timestamp += 60;
        let put = PutRequest {
            namespace: "NS".into(),
            metric_data: vec![datum("CPUUtilization", vec![1.0]), later],
        };
        let stamps: Vec<u64> = documents(&put)
            .iter()
            .map(|d| d["_aws"]["Timestamp"].as_u64().unwrap())
            .collect();
        assert_eq!(stamps, [1_795_619_520_000, 1_795_619_580_000]);
    }
}
