//! `--dry-run`: each window as the `PutMetricData` request the CloudWatch output would
//! send, one JSON line on stdout, in the shape `aws cloudwatch put-metric-data
//! --cli-input-json` takes. It previews CloudWatch, so it encodes as CloudWatch does;
//! it needs no AWS credentials and sends nothing.

use super::Format;
use super::cloudwatch::{self, Encoding, MAX_DATUMS_PER_REQUEST, PutRequest};
use crate::domain::Window;

/// Encodes windows as `PutMetricData` input lines.
#[derive(Debug, Clone)]
pub struct DryRun {
    /// `--namespace`.
    pub namespace: String,
    /// Distribution or median and maximum; the storage resolution.
    pub encoding: Encoding,
}

impl Format for DryRun {
    const UNIT: &'static str = "lines";

    fn encode(&self, window: &Window, out: &mut Vec<Vec<u8>>) {
        let data = cloudwatch::encode(window, &self.encoding);
        // A window's datums fit one request (see `cloudwatch::encode`); were it not so,
        // each line would still be a valid request.
        for chunk in data.chunks(MAX_DATUMS_PER_REQUEST) {
            let request = PutRequest {
                namespace: self.namespace.clone(),
                metric_data: chunk.to_vec(),
            };
            if let Ok(mut line) = serde_json::to_vec(&request) {
                line.push(b'\n');
                out.push(line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::test_window;
    use crate::domain::{Aggregation, Metric};

    #[test]
    fn one_line_per_window_in_the_shape_of_the_request() {
        let dry_run = DryRun {
            namespace: "Demo".into(),
            encoding: Encoding {
                aggregation: Aggregation::Distribution,
                storage_resolution: Some(1),
            },
        };
        let w = test_window(1_795_619_520, &[(Metric::Memory, &[25.0, 25.0])], &[]);
        let mut out = Vec::new();
        dry_run.encode(&w, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            String::from_utf8(out.remove(0)).unwrap(),
            "{\"Namespace\":\"Demo\",\"MetricData\":[{\"MetricName\":\"MemoryUtilization\",\
             \"Dimensions\":[{\"Name\":\"ServiceName\",\"Value\":\"web\"}],\
             \"Timestamp\":\"2026-11-25T15:12:00Z\",\"Unit\":\"Percent\",\"Values\":[25.0],\
             \"Counts\":[2.0],\"StorageResolution\":1}]}\n"
        );
    }
}
