//! Publishing to CloudWatch through the AWS SDK for Rust.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::error::DisplayErrorContext;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use thiserror::Error;

use super::{Datum, PublishError, Publisher, PutRequest};

/// Attempts per call, the SDK's standard mode (exponential backoff with jitter).
const MAX_ATTEMPTS: u32 = 3;
/// A host that does not accept a TCP connection in this long is treated as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// One HTTP attempt; the SDK never times out a server that accepts and stays silent.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The whole call, retries included.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// A client from the standard AWS chains (environment, profile files, ECS task role,
    /// EC2 instance role; `AWS_ENDPOINT_URL`), with `region` and `endpoint_url`
    /// overriding them when given. Credentials are resolved on the first call, so an
    /// agent started before its role is ready still comes up.
    pub async fn connect(
        region: Option<String>,
        endpoint_url: Option<String>,
    ) -> Result<Self, ConnectError> {
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client)
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            );
        if let Some(region) = region {
            loader = loader.region(aws_config::Region::new(region));
        }
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let config = loader.load().await;
        let region = config.region().ok_or(ConnectError::NoRegion)?;
        log::info!(
            "publishing to CloudWatch in {region}{}",
            config
                .endpoint_url()
                .map(|url| format!(" at {url}"))
                .unwrap_or_default()
        );
        Ok(CloudWatch {
            client: Client::new(&config),
        })
    }
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
            .map_err(|e| PublishError::Api(DisplayErrorContext(&e).to_string()))
    }
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
        .build()
}
