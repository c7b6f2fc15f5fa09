//! The client side of the admin extension, for the `carillon` subcommands that drive a running
//! server (`carillon faults ...`): SigV4-signs a request with Carillon's own signer and sends
//! it over plain HTTP/1.1.

use std::path::Path;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::auth::sigv4::{self, SignedRequest};
use crate::domain::digest::hmac_sha256;

/// Where the server is and who signs.
pub struct AdminClient {
    /// `host:port` of the server.
    authority: String,
    access_key_id: String,
    secret_access_key: String,
}

/// The most a response may carry before the client gives up on it.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

impl AdminClient {
    /// `endpoint` is `http://host:port`. Credentials come from `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`, else from the data directory's generated credentials file.
    pub fn from_environment(endpoint: &str, data_dir: &Path) -> anyhow::Result<Self> {
        let Some(authority) = endpoint.strip_prefix("http://") else {
            bail!("the endpoint must be http://host:port (this client speaks plain HTTP)");
        };
        let authority = authority.trim_end_matches('/').to_string();
        let (access_key_id, secret_access_key) = match (
            std::env::var("AWS_ACCESS_KEY_ID"),
            std::env::var("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Ok(id), Ok(secret)) => (id, secret),
            _ => read_credentials_file(&data_dir.join("credentials"))?,
        };
        Ok(Self {
            authority,
            access_key_id,
            secret_access_key,
        })
    }

    /// Sends one signed request and returns the status and body.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, String)> {
        let now = crate::clock::SystemClock;
        let amz_date = sigv4::format_amz_date(crate::clock::Clock::now_unix(&now));
        let date = amz_date.get(..8).unwrap_or_default().to_string();
        let region = "us-east-1";
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::HOST, self.authority.parse()?);
        headers.insert("x-amz-date", amz_date.parse()?);
        let signed_headers = vec!["host".to_string(), "x-amz-date".to_string()];
        let canonical = sigv4::canonical_request(
            &SignedRequest {
                method,
                raw_path: path,
                raw_query: None,
                headers: &headers,
                body,
            },
            &signed_headers,
        )
        .map_err(|failure| anyhow::anyhow!(failure.0))?;
        let scope = format!("{date}/{region}/{}/aws4_request", sigv4::SERVICE);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let key = sigv4::signing_key(&self.secret_access_key, &date, region, sigv4::SERVICE);
        let signature = hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()));
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders=host;x-amz-date, Signature={signature}",
            self.access_key_id
        );
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nX-Amz-Date: {amz_date}\r\nAuthorization: {authorization}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.authority,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);

        let mut stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("connecting to {}", self.authority))?;
        stream.write_all(&request).await?;
        let mut response = Vec::new();
        (&mut stream)
            .take(MAX_RESPONSE_BYTES as u64)
            .read_to_end(&mut response)
            .await?;
        parse_response(&response)
    }
}

/// Splits a `Connection: close` HTTP/1.1 response into status and body (plain or chunked).
fn parse_response(response: &[u8]) -> anyhow::Result<(u16, String)> {
    let text = String::from_utf8_lossy(response);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("the server's answer is not HTTP");
    };
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("the server's answer has no status")?;
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    let body = if chunked {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            out.push_str(after.get(..size).unwrap_or(after));
            rest = after
                .get(size..)
                .unwrap_or_default()
                .trim_start_matches("\r\n");
        }
        out
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// Reads the `[carillon]` profile of a shared-credentials file.
fn read_credentials_file(path: &Path) -> anyhow::Result<(String, String)> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "no AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY set and no credentials file at {}",
            path.display()
        )
    })?;
    let value = |name: &str| {
        text.lines()
            .filter_map(|line| line.split_once('='))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_string())
    };
    match (value("aws_access_key_id"), value("aws_secret_access_key")) {
        (Some(id), Some(secret)) => Ok((id, secret)),
        _ => bail!(
            "{} has no aws_access_key_id and aws_secret_access_key",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_plain_and_chunked() {
        let plain = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain).expect("ok"), (201, "{}".into()));
        let chunked =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).expect("ok"), (200, "abcde".into()));
        assert!(parse_response(b"garbage").is_err());
    }
}
