//! Egress proxies: `HTTP_PROXY`/`HTTPS_PROXY` (either case) and `NO_PROXY`, through a
//! real forward proxy (Debian's tinyproxy, [`common::tinyproxy`]) in front of the test
//! server, whose host name only the proxy can resolve. With a password too, which the
//! agent never prints.

mod common;

use std::time::Duration;

use common::tinyproxy::{PROXIED_HOST, Tinyproxy};
use common::{Agent, TestServer};

const NAMESPACE: &str = "Test/Proxy";

/// The server's URL with its host replaced by the name only the proxy resolves.
fn proxied_endpoint(server: &TestServer) -> String {
    server.endpoint.replace("127.0.0.1", PROXIED_HOST)
}

fn env_for(endpoint: &str, proxy: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "AKIDTEST".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test-secret".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ];
    env.extend_from_slice(proxy);
    env
}

/// Runs `check` to its end: status and stdout lines.
fn check(env: &[(&str, String)]) -> (Option<i32>, Vec<String>) {
    let mut agent = Agent::spawn(
        &["check", "-n", NAMESPACE, "-s", "web", "--scope", "host"],
        env,
    );
    let status = agent.wait(Duration::from_secs(30));
    (status.code(), agent.stdout.iter().collect())
}

/// Runs the agent at period 1 until the server has accepted one request more than it
/// had, then stops it with SIGTERM (it must exit 0); its whole log.
fn run_until_a_window_arrives(
    server: &TestServer,
    service: &str,
    env: &[(&str, String)],
) -> Vec<String> {
    let before = server.accepted_puts().len();
    let args = [
        "-n", NAMESPACE, "-s", service, "--scope", "host", "--period", "1",
    ];
    let mut agent = Agent::spawn(&args, env);
    common::wait_until(
        Duration::from_secs(20),
        "a window through the proxy",
        || (server.accepted_puts().len() > before).then_some(()),
    );
    agent.signal("TERM");
    assert!(agent.wait(Duration::from_secs(10)).success());
    agent.rest_of_log()
}

#[tokio::test(flavor = "current_thread")]
async fn check_and_a_run_go_through_http_proxy_in_either_case() {
    let Some(proxy) = Tinyproxy::start("check_and_a_run_go_through_http_proxy", None) else {
        return;
    };
    let server = TestServer::start();
    let endpoint = proxied_endpoint(&server);
    // Without the proxy the host cannot even be resolved.
    let (code, out) = check(&env_for(&endpoint, &[]));
    assert_eq!(code, Some(1), "{out:#?}");
    assert!(out.iter().any(|l| l.starts_with("FAIL  send:")), "{out:#?}");
    assert_eq!(server.call_count(), 0);

    let (code, out) = check(&env_for(&endpoint, &[("HTTP_PROXY", proxy.url.clone())]));
    assert_eq!(code, Some(0), "{out:#?}");
    let line = out
        .iter()
        .find(|l| l.starts_with("ok    proxy:"))
        .expect("a proxy line");
    assert_eq!(
        line,
        &format!(
            "ok    proxy: CloudWatch through the proxy {}/ (from HTTP_PROXY)",
            proxy.url
        )
    );
    assert_eq!(
        server.accepted_puts().len(),
        1,
        "check's one request arrived"
    );

    // A run, with the lower-case spelling: the data arrives and reads back.
    run_until_a_window_arrives(
        &server,
        "run",
        &env_for(&endpoint, &[("http_proxy", proxy.url.clone())]),
    );
    let stats = server
        .statistics_around_now(NAMESPACE, "MemoryUtilization", "run")
        .await;
    assert!(stats.sample_count().unwrap_or(0.0) >= 1.0, "{stats:?}");
    let requests = proxy.requests();
    assert!(
        requests.len() >= 3
            && requests
                .iter()
                .all(|r| r.starts_with(&format!("POST {endpoint}"))),
        "every request went through the proxy: {requests:#?}"
    );
}

#[test]
fn no_proxy_exempts_the_endpoint() {
    let Some(proxy) = Tinyproxy::start("no_proxy_exempts_the_endpoint", None) else {
        return;
    };
    let server = TestServer::start();
    let env = env_for(
        &server.endpoint,
        &[
            ("HTTP_PROXY", proxy.url.clone()),
            ("HTTPS_PROXY", proxy.url.clone()),
            ("NO_PROXY", "example.com,127.0.0.1".to_owned()),
        ],
    );
    let (code, out) = check(&env);
    assert_eq!(code, Some(0), "{out:#?}");
    let line = out.iter().find(|l| l.starts_with("ok    proxy:")).unwrap();
    assert!(
        line.contains("directly") && line.contains("NO_PROXY"),
        "{line}"
    );
    assert_eq!(server.accepted_puts().len(), 1);
    assert!(proxy.requests().is_empty(), "{:#?}", proxy.requests());
}

#[test]
fn a_proxy_password_works_and_is_never_printed() {
    const PASSWORD: &str = "pr0xy-s3cret";
    let Some(proxy) = Tinyproxy::start("a_proxy_password_works", Some(("alice", PASSWORD))) else {
        return;
    };
    let server = TestServer::start();
    let endpoint = proxied_endpoint(&server);
    let with_auth = proxy
        .url
        .replace("http://", &format!("http://alice:{PASSWORD}@"));
    let mut env = env_for(
        &endpoint,
        &[
            ("HTTPS_PROXY", with_auth.clone()),
            ("HTTP_PROXY", with_auth),
        ],
    );
    let (code, out) = check(&env);
    assert_eq!(code, Some(0), "{out:#?}");
    assert!(!out.join("\n").contains(PASSWORD), "{out:#?}");
    assert_eq!(server.accepted_puts().len(), 1);

    // A run at debug level: it logs the route, never the password.
    env.push(("RUST_LOG", "debug".to_owned()));
    let log = run_until_a_window_arrives(&server, "web", &env).join("\n");
    assert!(
        log.lines()
            .any(|l| l.contains("publishing to CloudWatch in") && l.contains("through the proxy")),
        "{log}"
    );
    assert!(!log.contains(PASSWORD), "the password was logged");

    // The wrong password: refused by the proxy, said by check.
    let wrong = proxy.url.replace("http://", "http://alice:wrong@");
    let (code, out) = check(&env_for(&endpoint, &[("HTTP_PROXY", wrong)]));
    assert_eq!(code, Some(1), "{out:#?}");
    assert!(out.iter().any(|l| l.starts_with("FAIL  send:")), "{out:#?}");
}

/// The instance metadata service is link-local: it never goes through a proxy, whatever
/// `NO_PROXY` says. In a network namespace of its own, `tests/harness/link_local.py` puts
/// an IMDSv2 stand-in on 169.254.169.254 and another on 127.0.0.1, with `HTTP_PROXY` at a
/// closed port: the link-local one is reached, the loopback one (which the proxy rules
/// do cover) is not.
#[test]
fn link_local_metadata_never_goes_through_the_proxy() {
    const TEST: &str = "link_local_metadata_never_goes_through_the_proxy";
    if !common::cgroup::is_root() {
        common::skip(TEST, "unshare --net and ip addr need root");
        return;
    }
    let result = common::json_report(
        std::process::Command::new("unshare")
            .args(["--net"])
            .arg(common::python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/harness/link_local.py"
            ))
            .arg(env!("CARGO_BIN_EXE_cloudwatch_metrics_agent")),
    );
    assert_eq!(result["link_local"]["status"], 0, "{result}");
    assert_eq!(
        result["link_local"]["instance_id"], true,
        "169.254.169.254 was reached directly: {result}"
    );
    assert_eq!(
        result["loopback"]["instance_id"], false,
        "the proxy variables were in force for other hosts: {result}"
    );
    assert_eq!(result["loopback"]["answered"], 0, "{result}");
}

/// CloudWatch's real endpoints are `https://`: `HTTPS_PROXY` is asked for a tunnel
/// (CONNECT) to the endpoint's host, which only the proxy can resolve. The test server
/// speaks plain HTTP, so the TLS handshake inside the tunnel fails; that the tunnel was
/// asked for, to that host, is what is shown.
#[test]
fn https_proxy_is_asked_for_a_tunnel_to_an_https_endpoint() {
    let Some(proxy) = Tinyproxy::start("https_proxy_is_asked_for_a_tunnel", None) else {
        return;
    };
    let server = TestServer::start();
    let endpoint = proxied_endpoint(&server).replace("http://", "https://");
    let (code, out) = check(&env_for(&endpoint, &[("HTTPS_PROXY", proxy.url.clone())]));
    assert_eq!(code, Some(1), "no TLS at the test server: {out:#?}");
    let line = out
        .iter()
        .find(|l| l.starts_with("ok    proxy:"))
        .expect("a proxy line");
    assert!(line.ends_with("(from HTTPS_PROXY)"), "{line}");
    let host_port = endpoint.trim_start_matches("https://");
    let requests = proxy.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with(&format!("CONNECT {host_port}"))),
        "a tunnel to {host_port}: {requests:#?}"
    );
}
