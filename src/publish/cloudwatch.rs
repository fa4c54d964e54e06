//! Publishing to CloudWatch through the AWS SDK for Rust.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use thiserror::Error;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_cloudwatch::error::SdkError;

use super::{Datum, ErrorKind, PublishError, Publisher, PutRequest, classify};

/// A host that does not accept a TCP connection in this long is treated as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Sends requests with `PutMetricData`.
#[derive(Debug, Clone)]
pub struct CloudWatch {
    client: Client,
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
    /// A client from [`sdk_config`].
    pub async fn connect(
        region: Option<String>,
        endpoint_url: Option<String>,
        request_timeout: Duration,
    ) -> Result<Self, ConnectError> {
        let config = sdk_config(region, endpoint_url, request_timeout).await?;
        log::info!(
            "publishing to CloudWatch in {}{}",
            config.region().map_or("", |r| r.as_ref()),
            config
                .endpoint_url()
                .map(|url| format!(" at {url}"))
                .unwrap_or_default()
        );
        Ok(CloudWatch::new(&config))
    }

    /// A client for a loaded configuration.
    pub fn new(config: &SdkConfig) -> Self {
        CloudWatch {
            client: Client::new(config),
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
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
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
                    // Credentials that cannot be resolved fail before anything is sent.
                    _ if caused_by_credentials(&e) => ErrorKind::Auth,
                    _ => ErrorKind::Transient,
                };
                PublishError::new(kind, describe(&e))
            })
    }
}

/// The error and its causes, one after the other: short, and never the request itself
/// (so never a signature or a credential).
pub(crate) fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = e.source();
    }
    text
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
        .map(|d| Dimension::builder().name(&d.name).value(&d.value).build())
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
    use crate::publish::{self, Dimension};

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
        };
        let datum = |i: u32| Datum {
            metric_name: "CPUUtilization",
            dimensions: vec![Dimension {
                name: "ServiceName".into(),
                value: format!("service-{i}"),
            }],
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
        let estimate = publish::request_overhead(&put.namespace)
            + put
                .metric_data
                .iter()
                .map(publish::encoded_size)
                .sum::<usize>();
        println!("PutMetricData body {body} bytes, estimate {estimate}");
        assert!(body <= estimate, "body {body} > estimate {estimate}");
        assert!(
            estimate < body * 2,
            "estimate {estimate} too loose for body {body}"
        );
    }
}
