//! AWS Signature Version 4 verification for header-signed requests.
//!
//! The canonical request is rebuilt from what arrived on the wire: the raw path, normalised and
//! percent-encoded a second time as the SDKs do for every service but S3; the raw query, decoded
//! and re-encoded per RFC 3986 and sorted; and exactly the headers named in `SignedHeaders`
//! (SDKs differ in which ones they sign). The payload hash is that of the buffered body, since the
//! SDKs send no `x-amz-content-sha256` for this service.

use sha2::{Digest, Sha256};

use crate::domain::digest::{constant_time_eq, hmac_sha256};

/// The signing name both namespaces use.
pub const SERVICE: &str = "chime";
/// How far a request's `X-Amz-Date` may be from the server's clock.
pub const MAX_SKEW_SECONDS: i64 = 15 * 60;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// What a request must give the verifier.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub raw_path: &'a str,
    pub raw_query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
}

/// The parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub access_key_id: String,
    /// The region of the credential scope: the client's configured region.
    pub region: String,
}

/// Why a request was refused. The message is safe to return to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure(pub String);

fn fail<T>(message: impl Into<String>) -> Result<T, AuthFailure> {
    Err(AuthFailure(message.into()))
}

pub fn parse_authorization(value: &str) -> Result<Authorization, AuthFailure> {
    let Some(rest) = value.strip_prefix(ALGORITHM) else {
        return fail(format!(
            "Authorization header must use the {ALGORITHM} algorithm"
        ));
    };
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        match part.split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {
                return fail(format!(
                    "Authorization header has an unexpected part '{part}'"
                ));
            }
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return fail("Authorization header must carry Credential, SignedHeaders and Signature");
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = scope[..] else {
        return fail("Credential must be <AccessKeyId>/<date>/<region>/<service>/aws4_request");
    };
    if terminator != "aws4_request" || date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit())
    {
        return fail("Credential must be <AccessKeyId>/<date>/<region>/<service>/aws4_request");
    }
    if access_key_id.is_empty() || region.is_empty() {
        return fail("Credential must name an access key and a region");
    }
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return fail("Signature must be 64 hexadecimal characters");
    }
    let signed_headers: Vec<String> = signed_headers.split(';').map(str::to_string).collect();
    if signed_headers.iter().any(|h| h.is_empty()) || !signed_headers.iter().any(|h| h == "host") {
        return fail("SignedHeaders must be a ';'-separated list that includes host");
    }
    Ok(Authorization {
        access_key_id: access_key_id.to_string(),
        date: date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
        signed_headers,
        signature: signature.to_ascii_lowercase(),
    })
}

/// Parses `YYYYMMDDTHHMMSSZ` into seconds since the Unix epoch.
pub fn parse_amz_date(value: &str) -> Option<i64> {
    let b = value.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = value.get(range)?;
        if !digits.bytes().all(|d| d.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hour, minute, second) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

fn uri_encode(input: &[u8], keep_slash: bool, out: &mut String) {
    for &b in input {
        if is_unreserved(b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Removes `.`, `..` and empty segments as the SDKs do before signing (RFC 3986 5.2.4).
fn normalize_path(path: &str) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    if !(path.contains('.') || path.contains("//")) {
        return path.to_string();
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut result = format!("/{}", segments.join("/"));
    let ends_with_slash = ["/", "/.", "/./", "/..", "/../"]
        .iter()
        .any(|s| path.ends_with(s));
    if ends_with_slash && !result.ends_with('/') {
        result.push('/');
    }
    result
}

pub fn canonical_uri(raw_path: &str) -> String {
    let normalized = normalize_path(raw_path);
    let mut out = String::with_capacity(normalized.len() + 16);
    uri_encode(normalized.as_bytes(), true, &mut out);
    out
}

pub fn canonical_query(raw_query: Option<&str>) -> String {
    let Some(query) = raw_query.filter(|q| !q.is_empty()) else {
        return String::new();
    };
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let mut key = String::new();
            let mut value = String::new();
            uri_encode(
                &percent_encoding::percent_decode_str(k).collect::<Vec<u8>>(),
                false,
                &mut key,
            );
            uri_encode(
                &percent_encoding::percent_decode_str(v).collect::<Vec<u8>>(),
                false,
                &mut value,
            );
            (key, value)
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Collapses runs of spaces and trims, as the canonical header form requires.
fn trim_all(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut previous_space = false;
    for c in value.trim_matches(' ').chars() {
        if c == ' ' {
            if !previous_space {
                out.push(c);
            }
            previous_space = true;
        } else {
            out.push(c);
            previous_space = false;
        }
    }
    out
}

pub fn canonical_request(
    request: &SignedRequest<'_>,
    signed_headers: &[String],
) -> Result<String, AuthFailure> {
    let mut canonical = String::with_capacity(512);
    canonical.push_str(request.method);
    canonical.push('\n');
    canonical.push_str(&canonical_uri(request.raw_path));
    canonical.push('\n');
    canonical.push_str(&canonical_query(request.raw_query));
    canonical.push('\n');
    for name in signed_headers {
        let values: Vec<String> = request
            .headers
            .get_all(name.as_str())
            .iter()
            .map(|v| v.to_str().map(trim_all))
            .collect::<Result<_, _>>()
            .map_err(|_| AuthFailure(format!("signed header {name} is not valid text")))?;
        if values.is_empty() {
            return fail(format!("signed header {name} is missing from the request"));
        }
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(&values.join(","));
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(&signed_headers.join(";"));
    canonical.push('\n');
    canonical.push_str(&hex::encode(Sha256::digest(request.body)));
    Ok(canonical)
}

pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

/// Verifies a header-signed request. `secret_for` looks up the secret of an access key id;
/// `now` is seconds since the epoch (from the server's `Clock`).
pub fn verify(
    request: &SignedRequest<'_>,
    secret_for: impl Fn(&str) -> Option<String>,
    now: i64,
) -> Result<Verified, AuthFailure> {
    let Some(header) = request.headers.get(http::header::AUTHORIZATION) else {
        return fail(
            "Missing Authentication Token: requests must be signed with AWS Signature Version 4",
        );
    };
    let header = header
        .to_str()
        .map_err(|_| AuthFailure("Authorization header is not valid text".into()))?;
    let auth = parse_authorization(header)?;
    if auth.service != SERVICE {
        return fail(format!(
            "Credential should be scoped to the correct service: '{SERVICE}', not '{}'",
            auth.service
        ));
    }
    let Some(amz_date) = request
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
    else {
        return fail("Requests must carry an X-Amz-Date header");
    };
    let Some(signed_at) = parse_amz_date(amz_date) else {
        return fail(format!(
            "X-Amz-Date '{amz_date}' is not of the form YYYYMMDDTHHMMSSZ"
        ));
    };
    if !amz_date.starts_with(&auth.date) {
        return fail("Credential date does not match X-Amz-Date");
    }
    if (now - signed_at).abs() > MAX_SKEW_SECONDS {
        return fail(format!(
            "Signature expired: X-Amz-Date {amz_date} is more than 15 minutes from the server's time"
        ));
    }
    let Some(secret) = secret_for(&auth.access_key_id) else {
        return fail("The security token included in the request is invalid: unknown access key");
    };
    let canonical = canonical_request(request, &auth.signed_headers)?;
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let key = signing_key(&secret, &auth.date, &auth.region, &auth.service);
    let expected = hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()));
    if !constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        return fail(
            "The request signature we calculated does not match the signature you provided",
        );
    }
    Ok(Verified {
        access_key_id: auth.access_key_id,
        region: auth.region,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_uri_double_encodes_the_wire_path() {
        assert_eq!(
            canonical_uri("/meetings/x%20y%3Az%2F%C3%BC"),
            "/meetings/x%2520y%253Az%252F%25C3%25BC"
        );
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/a/./b/../c//d"), "/a/c/d");
    }

    #[test]
    fn canonical_query_sorts_and_reencodes() {
        assert_eq!(
            canonical_query(Some("next-token=a%20b%2Fc%2Bd%3De&max-results=5")),
            "max-results=5&next-token=a%20b%2Fc%2Bd%3De"
        );
        assert_eq!(
            canonical_query(Some("operation=batch-create")),
            "operation=batch-create"
        );
        assert_eq!(canonical_query(None), "");
    }

    #[test]
    fn amz_dates_parse() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20261127T224358Z"), Some(1_795_819_438));
        assert_eq!(parse_amz_date("2026-11-27T22:43"), None);
        assert_eq!(parse_amz_date("20261327T224358Z"), None);
    }

    /// The documented example from api-spec.md §7.4: the canonical request and string to sign.
    #[test]
    fn matches_the_captured_canonical_request() {
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "127.0.0.1:37257".parse().expect("header"));
        headers.insert("x-amz-date", "20261127T224358Z".parse().expect("header"));
        headers.insert(
            "x-amz-security-token",
            "SESSIONTOKENEXAMPLE".parse().expect("header"),
        );
        let request = SignedRequest {
            method: "GET",
            raw_path: "/meetings/0b6d8a6e-5f0c-4b4c-9a43-1a2b3c4d5e6f/attendees",
            raw_query: Some("max-results=5&next-token=a%20b%2Fc%2Bd%3De"),
            headers: &headers,
            body: b"",
        };
        let signed = ["host", "x-amz-date", "x-amz-security-token"].map(String::from);
        let canonical = canonical_request(&request, &signed).expect("canonical");
        assert_eq!(
            hex::encode(Sha256::digest(canonical.as_bytes())),
            "59c561b1dacef39b1e4772c5bc30232ee9f8755fec77321b3244930d438c4e17"
        );
    }

    #[test]
    fn authorization_header_parses_and_rejects_garbage() {
        let auth = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AKID/20261127/us-east-1/chime/aws4_request, SignedHeaders=host;x-amz-date, Signature=776ea46c80214e33c1ecbda28c2cb6865f9b086a39661bd7d9ea9235ddb00b2c",
        )
        .expect("parses");
        assert_eq!(auth.access_key_id, "AKID");
        assert_eq!(auth.region, "us-east-1");
        assert_eq!(auth.signed_headers, vec!["host", "x-amz-date"]);
        assert!(parse_authorization("Bearer x").is_err());
        assert!(parse_authorization("AWS4-HMAC-SHA256 Credential=AKID/2026/us-east-1/chime/aws4_request, SignedHeaders=host, Signature=00").is_err());
        assert!(parse_authorization("AWS4-HMAC-SHA256 Credential=a/b").is_err());
    }
}
