//! Egress proxies, as every AWS tool honours them: `HTTPS_PROXY`, `HTTP_PROXY`,
//! `ALL_PROXY` and `NO_PROXY`, upper or lower case, with a user and password in the
//! proxy's URL if it needs them. They apply to what leaves the machine: CloudWatch and
//! the credential calls (STS for a web identity or an assumed role). The link-local
//! endpoints never go through a proxy, whatever `NO_PROXY` says, as no proxy can reach
//! them: the EC2 instance metadata service (169.254.169.254, fd00:ec2::254), the ECS
//! and EKS Pod Identity credential endpoints (169.254.170.2, 169.254.170.23) and the ECS
//! task metadata endpoint (read by the agent's own client, which uses no proxy).
//!
//! The matching itself is hyper-util's, the one the AWS SDK's HTTP client uses.

use std::net::IpAddr;

use hyper_util::client::proxy::matcher::Matcher;

/// Whether any proxy variable is set: without one the agent's HTTP client is the
/// SDK's plain one, with no proxy layer at all.
pub fn configured() -> bool {
    PROXY_VARIABLES
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|value| !value.is_empty()))
}

/// Every variable that can name a proxy, in hyper-util's order of precedence.
const PROXY_VARIABLES: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Whether a request to `host` goes straight there: the link-local addresses of the
/// instance metadata and credential endpoints, which no proxy can reach.
pub fn is_link_local(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_link_local(),
        // fe80::/10, and the EC2 metadata and Pod Identity addresses in fd00:ec2::/64.
        Ok(IpAddr::V6(ip)) => {
            let s = ip.segments();
            (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0xfd00 && s[1] == 0x0ec2 && s[2] == 0 && s[3] == 0)
        }
        Err(_) => false,
    }
}

/// How a request to `url` leaves the machine, for `check` and the start-up log: "through
/// the proxy http://proxy:3128 (from HTTPS_PROXY)", or "directly" and why. The proxy's
/// user and password are never shown.
pub fn route(url: &str) -> String {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return "directly".to_owned();
    };
    let host = uri.host().unwrap_or_default();
    if is_link_local(host) {
        return "directly (a link-local address never goes through a proxy)".to_owned();
    }
    match Matcher::from_env().intercept(&uri) {
        Some(intercept) => format!(
            "through the proxy {} (from {})",
            crate::redact::url(&intercept.uri().to_string()),
            variable_for(uri.scheme_str().unwrap_or("https"))
        ),
        None if configured() && !no_proxy().is_empty() => {
            "directly (NO_PROXY exempts it, or no proxy is set for its scheme)".to_owned()
        }
        None if configured() => "directly (no proxy is set for its scheme)".to_owned(),
        None => "directly (no HTTPS_PROXY or HTTP_PROXY set)".to_owned(),
    }
}

/// The variable hyper-util takes a proxy for `scheme` from.
fn variable_for(scheme: &str) -> &'static str {
    let candidates: &[&'static str] = if scheme == "http" {
        &["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
    } else {
        &["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
    };
    candidates
        .iter()
        .copied()
        .find(|v| std::env::var_os(v).is_some_and(|value| !value.is_empty()))
        .unwrap_or("the environment")
}

fn no_proxy() -> String {
    std::env::var("NO_PROXY")
        .or_else(|_| std::env::var("no_proxy"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metadata_and_credential_endpoints_are_link_local() {
        for host in [
            "169.254.169.254",
            "169.254.170.2",
            "169.254.170.23",
            "[fd00:ec2::254]",
            "[fd00:ec2::23]",
            "[fe80::1]",
        ] {
            assert!(is_link_local(host), "{host}");
        }
        for host in [
            "monitoring.us-east-1.amazonaws.com",
            "127.0.0.1",
            "10.0.0.1",
            "[fd00:ec3::254]",
            "[::1]",
            "170.254.1.1",
        ] {
            assert!(!is_link_local(host), "{host}");
        }
    }
}
