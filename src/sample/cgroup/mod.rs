//! The cgroup scope: the cgroup the agent runs in (its container), measured against that
//! cgroup's own CPU quota and memory limit, on cgroup v2 or v1 (hybrid layouts included).
//!
//! - [`detect`]: where the agent's cgroup is (`/proc/self/cgroup`, `/proc/self/mountinfo`).
//! - [`limits`]: what utilization is measured against.
//! - [`source`]: the samples.
//! - [`parse`]: the pure parsers of the files involved.

pub mod detect;
pub mod limits;
pub mod parse;
pub mod source;

pub use detect::{Layout, Version, detect, in_container};
pub use source::CgroupSource;

/// Fixture trees for the tests of this module's parts.
#[cfg(test)]
pub(crate) mod testing {
    use std::fs;
    use std::path::{Path, PathBuf};

    pub fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/cgroup")
            .join(name)
    }

    /// A writable copy of a fixture tree, for tests that change files between samples.
    pub fn copy_of(name: &str) -> tempfile::TempDir {
        fn copy(from: &Path, to: &Path) {
            fs::create_dir_all(to).unwrap();
            for entry in fs::read_dir(from).unwrap() {
                let entry = entry.unwrap();
                let target = to.join(entry.file_name());
                if entry.file_type().unwrap().is_dir() {
                    copy(&entry.path(), &target);
                } else {
                    fs::copy(entry.path(), target).unwrap();
                }
            }
        }
        let dir = tempfile::tempdir().unwrap();
        copy(&fixture(name), dir.path());
        dir
    }
}
