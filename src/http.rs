//! The HTTPS client every AWS call goes through (CloudWatch, the instance metadata
//! service, the credential providers), with a cap on the size of each answer: an
//! endpoint that answers with 200 MB, or an endless body, costs the agent at most
//! [`MAX_AWS_RESPONSE_BYTES`] and a failed call, never its memory. The SDK's own client
//! reads whatever comes.

use aws_smithy_http_client::Connector;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// Largest answer read from AWS: a `PutMetricData` answer or error, an instance metadata
/// value or token, temporary credentials are all under 4 KiB.
pub const MAX_AWS_RESPONSE_BYTES: usize = 64 << 10;

/// The rustls (ring) HTTPS client, with every answer capped at `MAX_AWS_RESPONSE_BYTES`.
/// Where a proxy variable is set ([`crate::proxy`]), requests go through the SDK's own
/// proxy support, except those to link-local addresses.
pub fn aws_client() -> SharedHttpClient {
    let direct = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let inner = if crate::proxy::configured() {
        let proxied = aws_smithy_http_client::Builder::new().build_with_connector_fn(
            |settings, components| {
                let mut connector = Connector::builder();
                connector.set_connector_settings(settings.cloned());
                connector.set_sleep_impl(components.and_then(|c| c.sleep_impl()));
                connector
                    .proxy_config(ProxyConfig::from_env())
                    .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
                    .build()
            },
        );
        SharedHttpClient::new(Routed { proxied, direct })
    } else {
        direct
    };
    SharedHttpClient::new(Capped {
        inner,
        limit: MAX_AWS_RESPONSE_BYTES,
    })
}

/// Requests to link-local addresses (instance metadata, container credentials) go
/// `direct`; the rest through `proxied`, whose proxy settings decide.
#[derive(Debug, Clone)]
struct Routed {
    proxied: SharedHttpClient,
    direct: SharedHttpClient,
}

impl HttpClient for Routed {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(RoutedConnector {
            proxied: self.proxied.http_connector(settings, components),
            direct: self.direct.http_connector(settings, components),
        })
    }
}

#[derive(Debug)]
struct RoutedConnector {
    proxied: SharedHttpConnector,
    direct: SharedHttpConnector,
}

impl HttpConnector for RoutedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let link_local = request
            .uri()
            .parse::<http::Uri>()
            .ok()
            .and_then(|uri| uri.host().map(crate::proxy::is_link_local))
            .unwrap_or(false);
        if link_local {
            self.direct.call(request)
        } else {
            self.proxied.call(request)
        }
    }
}

/// An HTTP client whose answers are read whole, up to `limit` bytes.
#[derive(Debug, Clone)]
pub struct Capped {
    /// The client that talks to the network.
    pub inner: SharedHttpClient,
    /// Most bytes of a body read; past it the call fails.
    pub limit: usize,
}

impl HttpClient for Capped {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(CappedConnector {
            inner: self.inner.http_connector(settings, components),
            limit: self.limit,
        })
    }
}

#[derive(Debug)]
struct CappedConnector {
    /// The connector of the inner client, with the SDK's timeouts.
    inner: SharedHttpConnector,
    /// Most bytes of a body read.
    limit: usize,
}

impl HttpConnector for CappedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let answer = self.inner.call(request);
        let limit = self.limit;
        HttpConnectorFuture::new(async move {
            let mut response = answer.await?;
            let body = Limited::new(response.take_body(), limit)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<LengthLimitError>().is_some() {
                        ConnectorError::other(too_large(limit).into(), None)
                    } else {
                        ConnectorError::io(e)
                    }
                })?
                .to_bytes();
            *response.body_mut() = SdkBody::from(body);
            Ok(response)
        })
    }
}

/// "response larger than 64 KiB".
pub fn too_large(limit: usize) -> String {
    if limit >= 1 << 20 && limit.is_multiple_of(1 << 20) {
        format!("response larger than {} MiB", limit >> 20)
    } else if limit >= 1 << 10 && limit.is_multiple_of(1 << 10) {
        format!("response larger than {} KiB", limit >> 10)
    } else {
        format!("response larger than {limit} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_said_in_its_unit() {
        assert_eq!(too_large(64 << 10), "response larger than 64 KiB");
        assert_eq!(too_large(1 << 20), "response larger than 1 MiB");
        assert_eq!(too_large(1000), "response larger than 1000 bytes");
    }
}
