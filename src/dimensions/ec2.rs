//! `--ec2-dimensions`: `InstanceId`, and `InstanceType` and `AutoScalingGroupName` where
//! the instance has them, read once at start from the instance metadata service (IMDSv2,
//! through the AWS SDK's own client, which honours `AWS_EC2_METADATA_SERVICE_ENDPOINT`).
//! A failure costs the dimensions, with a warning, never the agent; a value CloudWatch
//! would refuse costs that one dimension (see [`super::from_metadata`]).

use std::time::Duration;

use aws_config::imds;
use aws_config::provider_config::ProviderConfig;

use super::EC2_NAMES;
use crate::domain::Dimension;

/// Each metadata request; the service answers in milliseconds on an instance.
const TIMEOUT: Duration = Duration::from_secs(1);
/// The whole lookup, so that start-up off EC2 is delayed by at most this.
const LOOKUP_BUDGET: Duration = Duration::from_secs(2);

/// The metadata paths behind each dimension; only `InstanceId` is required.
const PATHS: [&str; 3] = [
    "/latest/meta-data/instance-id",
    "/latest/meta-data/instance-type",
    // Readable only where instance metadata tags are enabled.
    "/latest/meta-data/tags/instance/aws:autoscaling:groupName",
];

/// The EC2 dimensions of this instance, or none (with a warning) when the metadata
/// service cannot tell.
pub async fn dimensions() -> Vec<Dimension> {
    match tokio::time::timeout(LOOKUP_BUDGET, lookup()).await {
        Ok(Ok(dimensions)) => dimensions,
        Ok(Err(e)) => {
            log::warn!(
                "--ec2-dimensions: no instance metadata ({}); sending without them",
                crate::redact::chain(&e)
            );
            Vec::new()
        }
        Err(_) => {
            log::warn!(
                "--ec2-dimensions: the instance metadata service did not answer within \
                 {LOOKUP_BUDGET:?}; sending without them"
            );
            Vec::new()
        }
    }
}

async fn lookup() -> Result<Vec<Dimension>, imds::client::error::ImdsError> {
    let client = imds::Client::builder()
        .configure(&ProviderConfig::without_region().with_http_client(crate::http::aws_client()))
        .max_attempts(1)
        .connect_timeout(TIMEOUT)
        .read_timeout(TIMEOUT)
        .build();
    let mut dimensions = Vec::new();
    for (name, path) in EC2_NAMES.into_iter().zip(PATHS) {
        match client.get(path).await {
            Ok(value) => dimensions.extend(super::from_metadata(
                "the EC2 instance metadata",
                name,
                value.as_ref(),
            )),
            Err(e) if name == "InstanceId" => return Err(e),
            Err(e) => log::debug!("no {name} in the instance metadata: {e}"),
        }
    }
    Ok(dimensions)
}
