//! Where samples come from. A [`Source`] yields one [`Sample`] per call; the agent calls
//! it once a second. Parsers are pure (`procfs`); readers take a root directory so tests
//! run on fixture trees instead of the live `/proc`.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

pub mod cgroup;
pub mod ecs;
pub mod host;
pub mod procfs;

pub use cgroup::CgroupSource;
pub use ecs::EcsSource;
pub use host::HostSource;

/// One reading of the metrics, in percent (0–100). `None` means "not measured this
/// time" (the first CPU reading has nothing to compare with; a file could not be read),
/// never zero.
#[derive(Debug, Default, PartialEq)]
pub struct Sample {
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    /// Share of CFS periods throttled since the last sample (cgroup scope, with a quota).
    pub throttled: Option<f64>,
    /// What went wrong while reading; a failed read costs that metric, not the sample.
    pub errors: Vec<SampleError>,
}

/// A source of samples. Asynchronous so that sources over HTTP fit the same loop.
pub trait Source {
    /// Takes one reading.
    fn sample(&mut self) -> impl Future<Output = Sample>;
}

/// A file that could not be read or understood, with its path.
#[derive(Debug, Error)]
pub enum SampleError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot parse {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: procfs::ParseError,
    },
    #[error("{url}: {reason}")]
    Endpoint { url: String, reason: String },
}

impl PartialEq for SampleError {
    /// Compares by path and kind; `io::Error` itself has no equality.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Read { path: a, source: x }, Self::Read { path: b, source: y }) => {
                a == b && x.kind() == y.kind()
            }
            (Self::Parse { path: a, source: x }, Self::Parse { path: b, source: y }) => {
                a == b && x == y
            }
            (Self::Endpoint { url: a, reason: x }, Self::Endpoint { url: b, reason: y }) => {
                a == b && x == y
            }
            _ => false,
        }
    }
}

/// Reads a whole file into `buf`, reusing its allocation across samples.
pub(crate) fn read_into(path: &Path, buf: &mut String) -> Result<(), SampleError> {
    use std::io::Read;
    buf.clear();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_string(buf))
        .map(drop)
        .map_err(|source| SampleError::Read {
            path: path.to_owned(),
            source,
        })
}
