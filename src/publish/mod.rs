//! The outputs' encodings, each owning its format and the limits of what reads it:
//!
//! - [`cloudwatch`]: windows → `MetricDatum`s within the `PutMetricData` limits, the
//!   error classes, and the AWS SDK client (the [`cloudwatch::Publisher`]).
//! - [`emf`]: windows → Embedded Metric Format documents within the EMF limits.
//! - [`dry_run`]: windows → the `PutMetricData` input CloudWatch would get, as JSON lines.
//!
//! The two that write to stdout are a [`Format`]; how their lines reach stdout without
//! ever blocking the agent is [`crate::delivery`]'s and [`crate::stdio`]'s business.

use crate::domain::Window;

pub mod cloudwatch;
pub mod dry_run;
pub mod emf;

pub use cloudwatch::CloudWatch;
pub use dry_run::DryRun;
pub use emf::Emf;

/// An encoding of windows as lines of text for stdout.
pub trait Format {
    /// What one line is called in reports: "documents", "lines".
    const UNIT: &'static str;

    /// Appends the lines of `window` to `out`, each ending in a newline.
    fn encode(&self, window: &Window, out: &mut Vec<Vec<u8>>);
}
