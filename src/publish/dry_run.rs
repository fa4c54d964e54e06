//! `--dry-run`: each request as one JSON line on stdout, in the shape `aws cloudwatch
//! put-metric-data --cli-input-json` takes. Needs no AWS credentials and sends nothing.

use std::io::Write;

use super::{PublishError, Publisher, PutRequest};

/// Writes requests to stdout instead of sending them.
#[derive(Debug, Default)]
pub struct DryRun;

impl Publisher for DryRun {
    async fn publish(&self, request: &PutRequest) -> Result<(), PublishError> {
        let mut line = serde_json::to_vec(request).map_err(std::io::Error::from)?;
        line.push(b'\n');
        // One write per line, so lines from a crash or a pipe never interleave.
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&line)?;
        stdout.flush()?;
        Ok(())
    }
}
