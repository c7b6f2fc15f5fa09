//! Webhook sink: one POST per event, the envelope as JSON body, signed with
//! `X-Carillon-Signature: sha256=<hex HMAC-SHA256 of the body>` when a secret is set. Any 2xx
//! acknowledges.

use std::time::Duration;

use axum::body::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{Deliver, DeliveryError};
use crate::domain::digest::hmac_sha256;
use crate::store::OutboxEvent;

/// How long one POST may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Why one POST did not deliver an event.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("cannot build the request: {0}")]
    Request(#[source] http::Error),
    /// The webhook answered, but not with a 2xx.
    #[error("HTTP {0}")]
    Status(http::StatusCode),
    #[error("cannot reach the webhook: {0}")]
    Unreachable(#[source] hyper_util::client::legacy::Error),
    #[error("no answer within {timeout:?}", timeout = TIMEOUT)]
    Timeout,
}

pub struct Webhook {
    url: String,
    secret: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// The signature header's value for a body.
pub fn signature(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac_sha256(secret.as_bytes(), body))
    )
}

impl Webhook {
    pub fn new(url: String, secret: Option<String>) -> Self {
        Self {
            url,
            secret,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

#[async_trait::async_trait]
impl Deliver for Webhook {
    async fn deliver(&mut self, event: &OutboxEvent) -> Result<(), DeliveryError> {
        let body = Bytes::from(event.body.clone());
        let mut request = http::Request::post(&self.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("X-Carillon-Event-Seq", event.seq);
        if let Some(secret) = &self.secret {
            request = request.header("X-Carillon-Signature", signature(secret, &body));
        }
        let request = request
            .body(Full::new(body))
            .map_err(WebhookError::Request)?;
        match tokio::time::timeout(TIMEOUT, self.client.request(request)).await {
            Ok(Ok(response)) if response.status().is_success() => Ok(()),
            Ok(Ok(response)) => Err(WebhookError::Status(response.status()).into()),
            Ok(Err(error)) => Err(WebhookError::Unreachable(error).into()),
            Err(_) => Err(WebhookError::Timeout.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_is_an_hmac_of_the_body() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"), a published vector.
        assert_eq!(
            super::signature("key", b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn failures_read_as_before() {
        use super::WebhookError;
        assert_eq!(WebhookError::Timeout.to_string(), "no answer within 5s");
        assert_eq!(
            WebhookError::Status(http::StatusCode::BAD_GATEWAY).to_string(),
            "HTTP 502 Bad Gateway"
        );
    }
}
