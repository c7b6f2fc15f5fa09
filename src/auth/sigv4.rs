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
                // Named by its key only: the header's values are not echoed into logs.
                let name: String = part
                    .split('=')
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take(32)
                    .collect();
                return fail(format!(
                    "Authorization header has an unexpected part '{name}'"
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
    if b.len() != 16 || b.get(8) != Some(&b'T') || b.get(15) != Some(&b'Z') {
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
    Some(
        crate::domain::civil::CivilTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        }
        .to_unix(),
    )
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

/// The canonical request up to (not including) the payload hash.
fn canonical_request_prefix(
    request: &SignedRequest<'_>,
    raw_query: Option<&str>,
    signed_headers: &[String],
) -> Result<String, AuthFailure> {
    let mut canonical = String::with_capacity(512);
    canonical.push_str(request.method);
    canonical.push('\n');
    canonical.push_str(&canonical_uri(request.raw_path));
    canonical.push('\n');
    canonical.push_str(&canonical_query(raw_query));
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
    Ok(canonical)
}

/// The canonical request of a header-signed request, over the buffered body.
pub fn canonical_request(
    request: &SignedRequest<'_>,
    signed_headers: &[String],
) -> Result<String, AuthFailure> {
    let mut canonical = canonical_request_prefix(request, request.raw_query, signed_headers)?;
    canonical.push_str(&hex::encode(Sha256::digest(request.body)));
    Ok(canonical)
}

/// The signing key of a request, from a small per-thread cache: deriving it takes four HMACs,
/// and every request of one key on one day, region and service shares it.
fn cached_signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    /// Keys per thread; the oldest makes way.
    const ENTRIES: usize = 16;
    struct Entry {
        secret: String,
        date: String,
        region: String,
        service: String,
        key: [u8; 32],
    }
    thread_local! {
        static KEYS: std::cell::RefCell<std::collections::VecDeque<Entry>> =
            const { std::cell::RefCell::new(std::collections::VecDeque::new()) };
    }
    KEYS.with(|keys| {
        let Ok(mut keys) = keys.try_borrow_mut() else {
            return signing_key(secret, date, region, service);
        };
        if let Some(entry) = keys.iter().find(|e| {
            e.date == date && e.region == region && e.service == service && e.secret == secret
        }) {
            return entry.key;
        }
        let key = signing_key(secret, date, region, service);
        if keys.len() >= ENTRIES {
            keys.pop_front();
        }
        keys.push_back(Entry {
            secret: secret.to_string(),
            date: date.to_string(),
            region: region.to_string(),
            service: service.to_string(),
            key,
        });
        key
    })
}

pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

/// The longest validity a presigned request may ask for, as AWS allows: seven days.
pub const MAX_PRESIGNED_EXPIRES_SECONDS: i64 = 604_800;

/// The payload hash presigned requests may sign instead of the body's.
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// What the request presents to be checked, from its `Authorization` header or from a
/// presigned query string.
struct Presented {
    auth: Authorization,
    amz_date: String,
    signed_at: i64,
    /// `X-Amz-Expires` of a presigned request.
    expires_in: Option<i64>,
}

/// Formats seconds since the epoch as `YYYYMMDDTHHMMSSZ`, for messages in AWS's wording.
pub fn format_amz_date(unix: i64) -> String {
    let t = crate::domain::civil::CivilTime::from_unix(unix);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// The query's `name=value` pairs, percent-decoded (invalid UTF-8 replaced).
pub fn query_pairs(raw_query: Option<&str>) -> Vec<(String, String)> {
    raw_query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(k), decode(v))
        })
        .collect()
}

fn parse_date(amz_date: &str) -> Result<i64, AuthFailure> {
    parse_amz_date(amz_date).ok_or_else(|| {
        AuthFailure(format!(
            "X-Amz-Date '{amz_date}' is not of the form YYYYMMDDTHHMMSSZ"
        ))
    })
}

fn from_header(
    request: &SignedRequest<'_>,
    header: &http::HeaderValue,
) -> Result<Presented, AuthFailure> {
    let header = header
        .to_str()
        .map_err(|_| AuthFailure("Authorization header is not valid text".into()))?;
    let auth = parse_authorization(header)?;
    let Some(amz_date) = request
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
    else {
        return fail("Requests must carry an X-Amz-Date header");
    };
    let signed_at = parse_date(amz_date)?;
    Ok(Presented {
        auth,
        amz_date: amz_date.to_string(),
        signed_at,
        expires_in: None,
    })
}

/// Reads a presigned request's `X-Amz-*` query parameters; `None` when it is not presigned.
fn from_query(pairs: &[(String, String)]) -> Result<Option<Presented>, AuthFailure> {
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let Some(algorithm) = get("X-Amz-Algorithm") else {
        return Ok(None);
    };
    if algorithm != ALGORITHM {
        return fail(format!("X-Amz-Algorithm must be {ALGORITHM}"));
    }
    let (Some(credential), Some(amz_date), Some(expires), Some(signed_headers), Some(signature)) = (
        get("X-Amz-Credential"),
        get("X-Amz-Date"),
        get("X-Amz-Expires"),
        get("X-Amz-SignedHeaders"),
        get("X-Amz-Signature"),
    ) else {
        return fail(
            "A presigned request must carry X-Amz-Algorithm, X-Amz-Credential, X-Amz-Date, \
             X-Amz-Expires, X-Amz-SignedHeaders and X-Amz-Signature",
        );
    };
    let auth = parse_authorization(&format!(
        "{ALGORITHM} Credential={credential}, SignedHeaders={signed_headers}, Signature={signature}"
    ))?;
    let expires_in = match expires.parse::<i64>() {
        Ok(seconds) if (1..=MAX_PRESIGNED_EXPIRES_SECONDS).contains(&seconds) => seconds,
        _ => {
            return fail(format!(
                "X-Amz-Expires must be a number of seconds from 1 to {MAX_PRESIGNED_EXPIRES_SECONDS} (7 days), not '{expires}'"
            ));
        }
    };
    let signed_at = parse_date(amz_date)?;
    Ok(Some(Presented {
        auth,
        amz_date: amz_date.to_string(),
        signed_at,
        expires_in: Some(expires_in),
    }))
}

/// Checks the request's time against the server's: ±15 minutes for a header signature, the
/// requested validity for a presigned one. Messages follow AWS's wording.
fn check_time(presented: &Presented, now: i64) -> Result<(), AuthFailure> {
    let amz_date = &presented.amz_date;
    if presented.signed_at - now > MAX_SKEW_SECONDS {
        return fail(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 15 min.)",
            format_amz_date(now + MAX_SKEW_SECONDS),
            format_amz_date(now)
        ));
    }
    match presented.expires_in {
        Some(expires_in) if now > presented.signed_at + expires_in => fail(format!(
            "Request has expired: signed at {amz_date}, valid for {expires_in} seconds, now {}",
            format_amz_date(now)
        )),
        Some(_) => Ok(()),
        None if now - presented.signed_at > MAX_SKEW_SECONDS => fail(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 15 min.)",
            format_amz_date(now - MAX_SKEW_SECONDS),
            format_amz_date(now)
        )),
        None => Ok(()),
    }
}

/// The payload hashes the signature may cover: the body's, or for a presigned request also
/// `UNSIGNED-PAYLOAD` (what botocore's presigner signs). An `x-amz-content-sha256` header must
/// agree with the body.
fn payload_hashes(
    request: &SignedRequest<'_>,
    presigned: bool,
) -> Result<Vec<String>, AuthFailure> {
    let computed = hex::encode(Sha256::digest(request.body));
    if let Some(declared) = request.headers.get("x-amz-content-sha256") {
        let declared = declared.to_str().unwrap_or_default();
        if declared == UNSIGNED_PAYLOAD && presigned {
            return Ok(vec![UNSIGNED_PAYLOAD.to_string()]);
        }
        if !declared.eq_ignore_ascii_case(&computed) {
            return fail(
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            );
        }
    }
    let mut hashes = vec![computed];
    if presigned {
        hashes.push(UNSIGNED_PAYLOAD.to_string());
    }
    Ok(hashes)
}

/// Verifies a request signed in its `Authorization` header or presigned in its query string.
/// `secret_for` looks up the secret of an access key id; `now` is seconds since the epoch (from
/// the server's `Clock`).
pub fn verify(
    request: &SignedRequest<'_>,
    secret_for: impl Fn(&str) -> Option<String>,
    now: i64,
) -> Result<Verified, AuthFailure> {
    let presented = presented(request)?;
    check_scope(&presented)?;
    check_time(&presented, now)?;
    let auth = &presented.auth;
    let Some(secret) = secret_for(&auth.access_key_id) else {
        return fail("The security token included in the request is invalid.");
    };
    if signature_matches(request, &presented, &secret)? {
        return Ok(Verified {
            access_key_id: auth.access_key_id.clone(),
            region: auth.region.clone(),
        });
    }
    fail(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
    )
}

/// The signature a request presents, in its `Authorization` header or else its query string.
/// Temporary credentials are refused before either is read.
fn presented(request: &SignedRequest<'_>) -> Result<Presented, AuthFailure> {
    let pairs = query_pairs(request.raw_query);
    if request.headers.contains_key("x-amz-security-token")
        || pairs.iter().any(|(k, _)| k == "X-Amz-Security-Token")
    {
        return fail(
            "Temporary credentials (x-amz-security-token) are not supported by this server: \
             sign with a long-term access key",
        );
    }
    match request.headers.get(http::header::AUTHORIZATION) {
        Some(header) => from_header(request, header),
        None => match from_query(&pairs)? {
            Some(presented) => Ok(presented),
            None => fail(
                "Missing Authentication Token: requests must be signed with AWS Signature Version 4",
            ),
        },
    }
}

/// Checks the credential scope's service, and that its date is the request's.
fn check_scope(presented: &Presented) -> Result<(), AuthFailure> {
    let auth = &presented.auth;
    if auth.service != SERVICE {
        return fail(format!(
            "Credential should be scoped to correct service: '{SERVICE}'. Found '{}'",
            auth.service
        ));
    }
    if !presented.amz_date.starts_with(&auth.date) {
        return fail(format!(
            "Credential should be scoped to a valid date: '{}'. Found '{}'",
            presented.amz_date.get(..8).unwrap_or_default(),
            auth.date
        ));
    }
    Ok(())
}

/// Whether the presented signature is the one `secret` makes of the request, over any of the
/// payload hashes it may cover.
fn signature_matches(
    request: &SignedRequest<'_>,
    presented: &Presented,
    secret: &str,
) -> Result<bool, AuthFailure> {
    let presigned = presented.expires_in.is_some();
    let auth = &presented.auth;
    // A presigned request's canonical query is every parameter but the signature itself.
    let unsigned_query;
    let raw_query = if presigned {
        unsigned_query = request.raw_query.map(|query| {
            query
                .split('&')
                .filter(|pair| !pair.starts_with("X-Amz-Signature="))
                .collect::<Vec<_>>()
                .join("&")
        });
        unsigned_query.as_deref()
    } else {
        request.raw_query
    };
    let canonical_without_payload =
        canonical_request_prefix(request, raw_query, &auth.signed_headers)?;
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let key = cached_signing_key(secret, &auth.date, &auth.region, &auth.service);
    for payload_hash in payload_hashes(request, presigned)? {
        let canonical = format!("{canonical_without_payload}{payload_hash}");
        let string_to_sign = format!(
            "{ALGORITHM}\n{}\n{scope}\n{}",
            presented.amz_date,
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let expected = hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()));
        if constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_signing_keys_match_derived_ones() {
        for round in 0..2 {
            for i in 0..40 {
                let (secret, region) = (format!("secret-{i}"), format!("region-{}", i % 3));
                assert_eq!(
                    cached_signing_key(&secret, "20240102", &region, SERVICE),
                    signing_key(&secret, "20240102", &region, SERVICE),
                    "round {round}, key {i}"
                );
            }
        }
        assert_ne!(
            cached_signing_key("a", "20240102", "us-east-1", SERVICE),
            cached_signing_key("b", "20240102", "us-east-1", SERVICE),
            "a rotated secret gets its own key"
        );
    }

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
    fn amz_dates_format_back() {
        for unix in [0, 1_795_819_438, 951_782_400, 4_102_444_799] {
            assert_eq!(parse_amz_date(&format_amz_date(unix)), Some(unix));
        }
        assert_eq!(format_amz_date(1_795_819_438), "20261127T224358Z");
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
