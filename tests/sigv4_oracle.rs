//! Property test of the SigV4 verifier against the `aws-sigv4` signer as an oracle: random
//! requests signed by the SDK's signer verify, and any mutation of a signed part fails.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use carillon::auth::sigv4::{SignedRequest, verify};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;

/// What boto3 leaves unescaped in a path segment: the unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[derive(Debug, Clone)]
struct Case {
    method: &'static str,
    segments: Vec<String>,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    region: String,
    time: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE"]),
        prop::collection::vec("[a-zA-Z0-9 :/ü+=%-]{1,12}", 0..4),
        prop::collection::vec(("[a-z-]{1,10}", "[a-zA-Z0-9 /+=:&-]{0,12}"), 0..4),
        prop::collection::vec(
            (
                "x-extra-[a-z]{1,6}",
                "[a-zA-Z0-9][a-zA-Z0-9 ]{0,10}[a-zA-Z0-9]",
            ),
            0..3,
        ),
        prop::collection::vec(any::<u8>(), 0..64),
        "[a-z]{2}-[a-z]{4,9}-[1-9]",
        1_600_000_000u64..2_000_000_000u64,
    )
        .prop_map(
            |(method, segments, query, headers, body, region, time)| Case {
                method,
                segments: segments
                    .into_iter()
                    .map(|s| s.replace("%", "pct"))
                    .collect(),
                query,
                headers,
                body,
                region,
                time,
            },
        )
}

struct Built {
    path: String,
    query: Option<String>,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

fn build(case: &Case) -> Built {
    let path = format!(
        "/{}",
        case.segments
            .iter()
            .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
            .collect::<Vec<_>>()
            .join("/")
    );
    let query = (!case.query.is_empty()).then(|| {
        case.query
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    utf8_percent_encode(k, SEGMENT),
                    utf8_percent_encode(v, SEGMENT)
                )
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    let mut headers = vec![("host".to_string(), "127.0.0.1:8080".to_string())];
    headers.extend(case.headers.iter().cloned());
    let url = match &query {
        Some(q) => format!("http://127.0.0.1:8080{path}?{q}"),
        None => format!("http://127.0.0.1:8080{path}"),
    };
    let time = UNIX_EPOCH + Duration::from_secs(case.time);
    let signed = common::sign_headers(
        case.method,
        &url,
        &headers,
        &case.body,
        common::SECRET_ACCESS_KEY,
        &case.region,
        time,
    );
    headers.extend(signed);
    let mut map = http::HeaderMap::new();
    for (k, v) in headers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            http::HeaderValue::from_str(&v).expect("header value"),
        );
    }
    Built {
        path,
        query,
        headers: map,
        body: case.body.clone(),
    }
}

fn check(case: &Case, built: &Built, method: &str, now: i64) -> bool {
    let request = SignedRequest {
        method,
        raw_path: &built.path,
        raw_query: built.query.as_deref(),
        headers: &built.headers,
        body: &built.body,
    };
    let secret =
        |id: &str| (id == common::ACCESS_KEY_ID).then(|| common::SECRET_ACCESS_KEY.to_string());
    let _ = case;
    verify(&request, secret, now).is_ok()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn signed_requests_verify(case in case()) {
        let built = build(&case);
        prop_assert!(check(&case, &built, case.method, case.time as i64));
        // Within the ±15 minute window either way.
        prop_assert!(check(&case, &built, case.method, case.time as i64 + 14 * 60));
        prop_assert!(check(&case, &built, case.method, case.time as i64 - 14 * 60));
    }

    #[test]
    fn mutated_requests_fail(case in case(), which in 0usize..6, byte in any::<u8>()) {
        let mut built = build(&case);
        let mut method = case.method;
        let mut now = case.time as i64;
        match which {
            0 => built.body.push(byte),
            1 => method = if method == "GET" { "POST" } else { "GET" },
            2 => built.path.push_str("/x"),
            3 => built.query = Some(match &built.query {
                Some(q) => format!("{q}&zz=1"),
                None => "zz=1".into(),
            }),
            4 => now += 16 * 60,
            _ => {
                built.headers.insert("host", http::HeaderValue::from_static("127.0.0.1:9999"));
            }
        }
        prop_assert!(!check(&case, &built, method, now));
    }
}

#[test]
fn wrong_secret_and_unknown_key_fail() {
    let case = Case {
        method: "GET",
        segments: vec!["meetings".into()],
        query: vec![],
        headers: vec![],
        body: vec![],
        region: "us-east-1".into(),
        time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("time")
            .as_secs(),
    };
    let built = build(&case);
    let request = SignedRequest {
        method: "GET",
        raw_path: &built.path,
        raw_query: None,
        headers: &built.headers,
        body: &built.body,
    };
    assert!(verify(&request, |_| Some("other".into()), case.time as i64).is_err());
    assert!(verify(&request, |_| None, case.time as i64).is_err());
    assert!(
        verify(
            &request,
            |_| Some(common::SECRET_ACCESS_KEY.into()),
            case.time as i64
        )
        .is_ok()
    );
}
