//! Real cgroup v1 groups on this machine, for the tests that need limits enforced by the
//! kernel (root only).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

/// Whether the tests run as root, which creating cgroups needs.
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// Child groups in this machine's cgroup v1 hierarchies (`cpu`, `cpuacct` and `memory`
/// unless told), removed on drop (after the processes in them are gone).
pub struct TestGroup {
    dirs: Vec<PathBuf>,
}

impl TestGroup {
    pub fn create(name: &str) -> Result<TestGroup, String> {
        TestGroup::create_in(name, &["cpu", "cpuacct", "memory"])
    }

    /// The group in these v1 hierarchies.
    pub fn create_in(name: &str, controllers: &[&str]) -> Result<TestGroup, String> {
        let base = Path::new("/sys/fs/cgroup");
        let mut group = TestGroup { dirs: Vec::new() };
        for &controller in controllers {
            let hierarchy = base.join(controller);
            if !hierarchy.join("cgroup.procs").exists() {
                return Err(format!(
                    "no cgroup v1 {controller} hierarchy at {}",
                    hierarchy.display()
                ));
            }
            let dir = hierarchy.join(name);
            fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            group.dirs.push(dir);
        }
        Ok(group)
    }

    pub fn set(&self, controller: &str, file: &str, value: &str) {
        fs::write(self.dir(controller).join(file), value).unwrap();
    }

    /// A launcher (for `launched_agent`) that moves itself into every hierarchy of the
    /// group, then runs the program and arguments that follow.
    pub fn launcher(&self) -> Vec<String> {
        let joins: String = self
            .dirs
            .iter()
            .map(|d| format!("echo $$ > {}/cgroup.procs && ", d.display()))
            .collect();
        vec![
            "sh".into(),
            "-c".into(),
            format!("{joins}exec \"$@\""),
            "sh".into(),
        ]
    }

    /// The group's directory in `controller`'s hierarchy.
    pub fn dir(&self, controller: &str) -> &Path {
        self.dirs
            .iter()
            .find(|d| d.parent().unwrap().ends_with(controller))
            .unwrap()
    }

    /// `sh -c` that moves itself into every hierarchy of the group, then runs `command`.
    pub fn shell(&self, command: &str) -> Command {
        let joins: String = self
            .dirs
            .iter()
            .map(|d| format!("echo $$ > {}/cgroup.procs && ", d.display()))
            .collect();
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!("{joins}exec {command}"));
        cmd
    }
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        for dir in &self.dirs {
            // Emptied groups can be removed; retry briefly while the kernel reaps.
            for _ in 0..50 {
                if fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
