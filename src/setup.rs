//! What a run is made of, decided in one place for a run and for `check` alike: the
//! output made ready ([`Destination`]), the EC2 dimensions looked up, and, once the scope
//! is open ([`crate::sample::scope`]), the dimensions every datum carries.

use std::sync::Arc;

use aws_config::SdkConfig;

use crate::config::{Config, Output};
use crate::dimensions;
use crate::domain::Dimension;
use crate::publish::cloudwatch::{CloudWatch, ConnectError, sdk_config};
use crate::publish::{DryRun, Emf, Format};
use crate::sample::scope::Opened;

/// Where the data goes, made ready: CloudWatch's client with its region resolved (and
/// the SDK configuration it came from, for `check` to show), or a format for stdout.
pub enum Destination {
    CloudWatch(CloudWatch, Box<SdkConfig>),
    Emf(Emf),
    DryRun(DryRun),
}

impl Destination {
    /// The output `config` asks for; for CloudWatch, the region and endpoint resolved
    /// through the SDK's chains (credentials are resolved at the first call).
    pub async fn prepare(config: &Config) -> Result<Destination, ConnectError> {
        let encoding = config.encoding;
        let namespace = config.namespace.clone();
        Ok(match &config.output {
            Output::CloudWatch {
                region,
                endpoint_url,
            } => {
                let sdk = sdk_config(region.clone(), endpoint_url.clone(), config.request_timeout)
                    .await?;
                Destination::CloudWatch(
                    CloudWatch::new(&sdk, config.request_timeout),
                    Box::new(sdk),
                )
            }
            Output::Emf => Destination::Emf(Emf {
                namespace,
                encoding,
            }),
            Output::DryRun => Destination::DryRun(DryRun {
                namespace,
                encoding,
            }),
        })
    }
}

/// What the output of `output` counts in its report.
pub fn unit(output: &Output) -> &'static str {
    match output {
        Output::CloudWatch { .. } => "datums",
        Output::Emf => Emf::UNIT,
        Output::DryRun => DryRun::UNIT,
    }
}

/// The EC2 instance's dimensions when `--ec2-dimensions` asks for them (none when the
/// instance metadata cannot be read: said in the log).
pub async fn ec2_dimensions(config: &Config) -> Vec<Dimension> {
    if config.ec2_dimensions {
        dimensions::ec2::dimensions().await
    } else {
        Vec::new()
    }
}

/// The dimensions of every datum of a run: `ServiceName`, `--dimension`, the ECS task's
/// when asked for (from the open scope), and the EC2 instance's.
pub fn dimensions(config: &Config, opened: &Opened, ec2: Vec<Dimension>) -> Arc<[Dimension]> {
    dimensions::assemble(
        config.service.clone(),
        &config.dimensions,
        opened.ecs_dimensions(&config.scope).into_iter().chain(ec2),
    )
}
