//! CloudWatch's client: `PutMetricData` through the AWS SDK for Rust, what each error
//! CloudWatch answers means for the data, and which endpoint a run sends to.

use std::future::Future;
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
use thiserror::Error;

use super::encode::{Datum, PutRequest};
use crate::redact;

/// A host that does not accept a TCP connection in this long is treated as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

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
    use crate::domain::Dimension;
    use crate::publish::cloudwatch::{encoded_size, request_overhead};

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
