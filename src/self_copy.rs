//! `cloudwatch_metrics_agent copy-to DIR`: the binary copies itself into `DIR`. The
//! agent's image is `FROM scratch`, with no shell and no `cp`, and in a Kubernetes pod a
//! sidecar container sees only its own cgroup: to measure the application's container,
//! an init container runs this into a volume both share, and the application's container
//! starts the copy as its entrypoint, wrapping its own command.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The name of the copy in `DIR`.
pub const FILE_NAME: &str = "cloudwatch_metrics_agent";

/// Why the copy could not be made.
#[derive(Debug, Error)]
pub enum CopyError {
    /// `DIR` is not a directory: the user's to fix (exit 2).
    #[error("invalid copy-to directory {0:?}: {1}")]
    NotADirectory(PathBuf, String),
    /// Reading this binary or writing the copy failed.
    #[error("cannot copy the agent to {0}: {1}")]
    Io(PathBuf, io::Error),
}

impl CopyError {
    /// 2 for a directory that cannot be one, 1 for a failed copy.
    pub fn exit_code(&self) -> u8 {
        match self {
            CopyError::NotADirectory(..) => 2,
            CopyError::Io(..) => 1,
        }
    }
}

/// Copies the running binary to `dir`/[`FILE_NAME`], executable, whole or not at all (a
/// temporary file renamed into place, so that a container starting it never finds half
/// a binary); returns the copy's path.
pub fn copy_to(dir: &Path) -> Result<PathBuf, CopyError> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(CopyError::NotADirectory(
                dir.to_owned(),
                "it is not a directory".into(),
            ));
        }
        Err(e) => return Err(CopyError::NotADirectory(dir.to_owned(), e.to_string())),
    }
    let target = dir.join(FILE_NAME);
    let partial = dir.join(format!(".{FILE_NAME}.partial"));
    let copied = std::env::current_exe()
        .and_then(|exe| fs::copy(exe, &partial))
        .and_then(|_| fs::set_permissions(&partial, fs::Permissions::from_mode(0o755)))
        .and_then(|()| fs::rename(&partial, &target));
    match copied {
        Ok(()) => Ok(target),
        Err(e) => {
            // Nothing half-written is left behind.
            let _ = fs::remove_file(&partial);
            Err(CopyError::Io(target, e))
        }
    }
}

/// `copy-to DIR` from start to end: the copy's path on stdout and status 0, or one line
/// on stderr and 2 (`DIR` missing, several, or not a directory) or 1 (a failed copy).
pub fn run(dir: Result<PathBuf, String>) -> u8 {
    let copied = dir
        .map_err(|usage| (usage, 2))
        .and_then(|dir| copy_to(&dir).map_err(|e| (e.to_string(), e.exit_code())));
    match copied {
        Ok(path) => {
            // A closed stdout does not undo the copy.
            let _ = writeln!(io::stdout(), "copied to {}", path.display());
            0
        }
        Err((line, code)) => {
            crate::stdio::eprintln(format_args!("error: {line}"));
            code
        }
    }
}
