//! A real forward proxy for the proxy tests: Debian's `tinyproxy`, in a mount namespace of
//! its own whose `/etc/hosts` names [`PROXIED_HOST`]. So that host resolves only through
//! the proxy: an agent that ignored the proxy variables could not reach it at all.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_until;

/// A host name only the proxy can resolve (to 127.0.0.1).
pub const PROXIED_HOST: &str = "cloudwatch.proxied.test";

pub struct Tinyproxy {
    child: Child,
    /// The proxy's URL, without credentials.
    pub url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tinyproxy {
    /// Starts tinyproxy on a free port, asking for `user:password` when given. `None`
    /// (the test recorded as skipped, which fails under CI=true) without tinyproxy, or
    /// without the root that `unshare --mount` needs.
    pub fn start(test: &str, auth: Option<(&str, &str)>) -> Option<Tinyproxy> {
        let tinyproxy = Path::new("/usr/bin/tinyproxy");
        if !tinyproxy.exists() {
            super::skip(
                test,
                "tinyproxy is not installed (apt-get install tinyproxy)",
            );
            return None;
        }
        if !super::cgroup::is_root() {
            super::skip(test, "unshare --mount needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.path().join("tinyproxy.log");
        let hosts = dir.path().join("hosts");
        std::fs::write(
            &hosts,
            format!("127.0.0.1 localhost\n127.0.0.1 {PROXIED_HOST}\n"),
        )
        .unwrap();
        let mut conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{}\"\nLogLevel Info\n\
             MaxClients 20\nAllow 127.0.0.1\n",
            log.display()
        );
        if let Some((user, password)) = auth {
            conf += &format!("BasicAuth {user} {password}\n");
        }
        let conf_path = dir.path().join("tinyproxy.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let script = format!(
            "mount --bind '{}' /etc/hosts && exec {} -d -c '{}'",
            hosts.display(),
            tinyproxy.display(),
            conf_path.display()
        );
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unshare runs");
        wait_until(Duration::from_secs(10), "tinyproxy to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Some(Tinyproxy {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        })
    }

    /// The requests the proxy has forwarded, as its log says them ("POST http://…").
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once("): ").map(|(_, request)| request.to_owned()))
            .filter(|r| {
                r.starts_with("POST ") || r.starts_with("GET ") || r.starts_with("CONNECT ")
            })
            .collect()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
