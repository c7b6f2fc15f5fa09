//! SigV4: `parse_authorization`, `parse_amz_date`, `canonical_uri`, `canonical_query`,
//! `canonical_request` and `verify`, with a fixed clock and one known key.
//!
//! Input, as text lines (the body is everything after the first empty line):
//!
//! ```text
//! METHOD
//! /raw/path?raw&query
//! X-Amz-Date value            (empty: no header)
//! Authorization value         ("SIGN <key>/<region>/<service> <signed;headers>": signed here)
//! name: value                 (any number of header lines)
//!
//! body bytes
//! ```
//!
//! In `SIGN` mode the harness signs the request the way an SDK would, with the verifier's own
//! canonical request, so the verifier must never answer "signature does not match"; and a request
//! `verify` accepts must carry the signature the harness computes for it.

use carillon::auth::sigv4::{self, SignedRequest};
use carillon::domain::digest::hmac_sha256;
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

/// The verifier's clock: 2026-11-27T22:43:58Z.
pub const NOW: i64 = 1_795_819_438;
pub const ACCESS_KEY: &str = "AKIDEXAMPLE";
pub const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const MISMATCH: &str = "The request signature we calculated does not match";
const PLACEHOLDER: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub fn run(data: &[u8]) -> String {
    let (head, body) = super::split_once(data, b"\n\n").unwrap_or((data, b""));
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split('\n');
    let method = lines.next().unwrap_or("");
    let target = lines.next().unwrap_or("");
    let amz_date = lines.next().unwrap_or("");
    let auth_line = lines.next().unwrap_or("");
    let header_lines: Vec<&str> = lines.collect();
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };

    // The pure pieces on their own, with what their output must look like.
    check_amz_date(amz_date);
    check_authorization(auth_line);
    check_canonical_uri(path);
    check_canonical_query(query);

    let mut headers = HeaderMap::new();
    for line in header_lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_bytes(value.trim_start().as_bytes()),
        ) {
            headers.append(name, value);
        }
    }
    if !amz_date.is_empty()
        && let Ok(value) = HeaderValue::from_str(amz_date)
    {
        headers.insert("x-amz-date", value);
    }

    let signing = auth_line.strip_prefix("SIGN ");
    let authorization = match signing {
        Some(spec) => sign_spec(spec, amz_date),
        None => auth_line.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&authorization) {
        headers.insert(http::header::AUTHORIZATION, value);
    }

    let mut request = SignedRequest {
        method,
        raw_path: path,
        raw_query: query,
        headers: &headers,
        body,
    };
    // In SIGN mode, replace the placeholder signature with the real one.
    let mut signed_headers_ok = false;
    let signed;
    if signing.is_some()
        && let Some(signature) = expected_signature(&request)
        && let Some(unsigned) = authorization.strip_suffix(PLACEHOLDER)
    {
        let mut with_signature = headers.clone();
        if let Ok(value) = HeaderValue::from_str(&format!("{unsigned}{signature}")) {
            with_signature.insert(http::header::AUTHORIZATION, value);
            signed_headers_ok = true;
        }
        signed = with_signature;
        request.headers = &signed;
    }

    if let Ok(auth) = parse_header(&request) {
        let canonical = sigv4::canonical_request(&request, &auth.signed_headers);
        if let Ok(canonical) = &canonical {
            assert!(canonical.starts_with(&format!("{method}\n")));
            assert!(canonical.ends_with(&hex::encode(Sha256::digest(body))));
        }
    }

    let lookup = |id: &str| (id == ACCESS_KEY).then(|| SECRET.to_string());
    let outcome = sigv4::verify(&request, lookup, NOW);
    match &outcome {
        Ok(verified) => {
            assert_eq!(verified.access_key_id, ACCESS_KEY);
            let provided = parse_header(&request).expect("verified, so it parses");
            assert_eq!(
                Some(provided.signature),
                expected_signature(&request),
                "verify accepted a signature the harness does not compute"
            );
            // Any other signature must now be refused.
            let mut tampered = request.headers.clone();
            let value = request.headers[http::header::AUTHORIZATION]
                .to_str()
                .expect("verified, so it is text");
            let mut value = value.to_string();
            let flipped = if value.pop() == Some('0') { '1' } else { '0' };
            value.push(flipped);
            tampered.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(&value).expect("still a header value"),
            );
            let tampered = SignedRequest {
                headers: &tampered,
                ..request
            };
            assert!(sigv4::verify(&tampered, lookup, NOW).is_err());
        }
        Err(failure) => {
            assert!(!failure.0.is_empty());
            if signed_headers_ok && !signs_authorization(&request) {
                assert!(
                    !failure.0.starts_with(MISMATCH),
                    "a request signed with the verifier's own canonical form was refused: {}",
                    failure.0
                );
            }
        }
    }
    match outcome {
        Ok(v) => format!("ok {}", v.region),
        Err(failure) => format!("err {}", failure.0),
    }
}

/// `SIGN <key>/<region>/<service> <signed;headers>`: an Authorization header with a placeholder
/// signature of 64 zeros; the credential date comes from X-Amz-Date.
fn sign_spec(spec: &str, amz_date: &str) -> String {
    let (scope, signed) = spec.split_once(' ').unwrap_or((spec, "host;x-amz-date"));
    let mut parts = scope.splitn(3, '/');
    let key = parts.next().unwrap_or("");
    let region = parts.next().unwrap_or("us-east-1");
    let service = parts.next().unwrap_or("chime");
    let date = amz_date.get(..8).unwrap_or(amz_date);
    format!(
        "AWS4-HMAC-SHA256 Credential={key}/{date}/{region}/{service}/aws4_request, SignedHeaders={signed}, Signature={PLACEHOLDER}"
    )
}

fn parse_header(request: &SignedRequest<'_>) -> Result<sigv4::Authorization, ()> {
    let value = request.headers.get(http::header::AUTHORIZATION).ok_or(())?;
    sigv4::parse_authorization(value.to_str().map_err(|_| ())?).map_err(|_| ())
}

/// Whether the Authorization header is itself among the signed headers (then no signature can
/// match, since it would have to sign itself).
fn signs_authorization(request: &SignedRequest<'_>) -> bool {
    parse_header(request).is_ok_and(|auth| {
        auth.signed_headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case("authorization"))
    })
}

/// The signature an SDK holding `SECRET` would send for this request and its Authorization
/// header's scope and signed headers.
fn expected_signature(request: &SignedRequest<'_>) -> Option<String> {
    let auth = parse_header(request).ok()?;
    let amz_date = request.headers.get("x-amz-date")?.to_str().ok()?;
    let canonical = sigv4::canonical_request(request, &auth.signed_headers).ok()?;
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let key = sigv4::signing_key(SECRET, &auth.date, &auth.region, &auth.service);
    Some(hex::encode(hmac_sha256(&key, string_to_sign.as_bytes())))
}

fn check_amz_date(value: &str) {
    if let Some(seconds) = sigv4::parse_amz_date(value) {
        assert!(value.len() == 16 && value.is_ascii(), "{value:?}");
        // Years 0000..=9999 only.
        assert!((-62_167_219_200..=253_402_300_800 + 86_400).contains(&seconds));
    }
}

fn check_authorization(value: &str) {
    if let Ok(auth) = sigv4::parse_authorization(value) {
        assert_eq!(auth.signature.len(), 64);
        assert!(
            auth.signature
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert!(auth.date.len() == 8 && auth.date.bytes().all(|b| b.is_ascii_digit()));
        assert!(!auth.access_key_id.is_empty() && !auth.region.is_empty());
        assert!(auth.signed_headers.iter().any(|h| h == "host"));
        assert!(auth.signed_headers.iter().all(|h| !h.is_empty()));
    }
}

fn check_canonical_uri(path: &str) {
    let uri = sigv4::canonical_uri(path);
    assert!(super::is_printable_ascii(&uri), "{uri:?}");
    assert!(!uri.contains("//"), "{path:?} -> {uri:?}");
    assert!(
        uri.split('/')
            .all(|segment| segment != "." && segment != ".."),
        "{path:?} -> {uri:?}"
    );
    if path.is_empty() || path.starts_with('/') {
        assert!(uri.starts_with('/'), "{path:?} -> {uri:?}");
    }
    // Every byte outside the unreserved set and '/' is percent-encoded.
    let mut bytes = uri.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let (hi, lo) = (bytes.next(), bytes.next());
            assert!(
                hi.is_some_and(|h| h.is_ascii_hexdigit())
                    && lo.is_some_and(|l| l.is_ascii_hexdigit())
            );
        } else {
            assert!(
                b.is_ascii_alphanumeric() || b"-_.~/".contains(&b),
                "{uri:?}"
            );
        }
    }
}

fn check_canonical_query(query: Option<&str>) {
    let canonical = sigv4::canonical_query(query);
    assert!(super::is_printable_ascii(&canonical), "{canonical:?}");
    if canonical.is_empty() {
        return;
    }
    let pairs: Vec<&str> = canonical.split('&').collect();
    assert!(pairs.windows(2).all(|w| {
        let key = |p: &str| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        };
        key(w[0]) <= key(w[1])
    }));
    for pair in &pairs {
        assert_eq!(pair.matches('=').count(), 1, "{canonical:?}");
    }
    // Decoding and re-encoding canonical text changes nothing.
    assert_eq!(
        sigv4::canonical_query(Some(&canonical)),
        canonical,
        "{query:?}"
    );
}
