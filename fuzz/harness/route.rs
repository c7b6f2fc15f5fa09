//! Routing: the dispatcher's `namespace_of`, `path_segments` and `parse_query`, then
//! `operation::route` for the namespace, then the pure checks handlers make on path labels and
//! query members (GUID labels, `max-results`, `next-token`, `arn`), and the error rendering.
//!
//! Input: `METHOD /raw/path?raw&query` (the first space splits the method from the target).

use carillon::api::error::{ApiError, ErrorKind};
use carillon::api::operation::{Operation, route};
use carillon::api::{Namespace, input, namespace_of, parse_query, path_segments};
use carillon::domain::ids;
use carillon::domain::tokens::{PageKind, PageTokenCodec};
use http::Method;

pub const ACCOUNT: &str = "123456789012";

pub fn run(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    let (method, target) = text.split_once(' ').unwrap_or(("GET", text.as_ref()));
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return "err method".into();
    };
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };

    let (namespace, api_path) = namespace_of(path);
    assert!(path.ends_with(api_path));
    let segments = match path_segments(api_path) {
        Ok(segments) => segments,
        Err(error) => return rejected(error, namespace, None),
    };
    let raw_segments = api_path.split('/').filter(|s| !s.is_empty()).count();
    assert_eq!(segments.len(), raw_segments);
    assert!(segments.iter().all(|s| !s.is_empty()));

    let query = parse_query(query);
    if let Some(raw) = target.split_once('?').map(|(_, q)| q) {
        assert_eq!(
            query.len(),
            raw.split('&').filter(|p| !p.is_empty()).count()
        );
    }
    let member = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let literal = member("operation");

    let routed = match route(namespace, &method, &segments, literal) {
        Ok(routed) => routed,
        Err(error) => return rejected(error, namespace, None),
    };
    let operation = routed.operation;
    assert!(operation.in_namespace(namespace), "{operation:?}");
    let errors = operation.errors(namespace);
    for kind in [
        ErrorKind::BadRequest,
        ErrorKind::Forbidden,
        ErrorKind::Unauthorized,
        ErrorKind::ServiceFailure,
        ErrorKind::ServiceUnavailable,
    ] {
        assert!(errors.contains(&kind));
    }
    // Routing is a function of the method and the shape of the path.
    assert_eq!(
        route(namespace, &method, &segments, literal).as_ref(),
        Ok(&routed)
    );
    if let Some(meeting) = &routed.meeting_id {
        assert_eq!(segments[0], "meetings");
        assert_eq!(&segments[1], meeting);
    }
    if let Some(attendee) = &routed.attendee_id {
        assert!(routed.meeting_id.is_some());
        assert_eq!(&segments[3], attendee);
    }

    // What the handlers check on labels and query members before they touch the store.
    let legacy = namespace == Namespace::Legacy;
    let checks = || -> Result<(), ApiError> {
        use Operation::*;
        if let Some(raw) = &routed.meeting_id {
            let id = input::guid_label("MeetingId", Some(raw))?;
            assert!(ids::is_guid(&id) && id == id.to_ascii_lowercase());
        }
        if matches!(
            operation,
            GetAttendee
                | DeleteAttendee
                | UpdateAttendeeCapabilities
                | TagAttendee
                | UntagAttendee
                | ListAttendeeTags
        ) {
            input::guid_label("AttendeeId", routed.attendee_id.as_ref())?;
        }
        match operation {
            ListMeetings | ListAttendees => {
                let max = if operation == ListAttendees && !legacy {
                    100
                } else {
                    99
                };
                let limit = input::max_results(member("max-results"), max)?;
                assert!((1..=max as usize).contains(&limit));
                if let Some(token) = member("next-token") {
                    if operation == ListAttendees && !legacy {
                        carillon::domain::validate::length("NextToken", token, 0, 4096)?;
                    }
                    let codec = PageTokenCodec::new(b"fuzz".to_vec());
                    // A token the fuzzer made up never carries a valid MAC.
                    assert_eq!(codec.decode(PageKind::Attendees, "m", token), None);
                    let minted = codec.encode(PageKind::Meetings, ACCOUNT, token);
                    assert_eq!(
                        codec
                            .decode(PageKind::Meetings, ACCOUNT, &minted)
                            .as_deref(),
                        Some(token)
                    );
                }
            }
            ListTagsForResource => {
                let arn = member("arn").ok_or_else(|| {
                    ApiError::bad_request("ResourceARN (query parameter arn) is required")
                })?;
                input::meeting_target(legacy, ACCOUNT, arn)?;
            }
            _ => {}
        }
        Ok(())
    };
    match checks() {
        Ok(()) => format!("ok {operation:?}"),
        Err(error) => rejected(error, namespace, Some(operation)),
    }
}

/// Renders a refusal as the dispatcher would and checks its wire form.
fn rejected(error: ApiError, namespace: Namespace, operation: Option<Operation>) -> String {
    assert!(
        matches!(
            error.kind,
            ErrorKind::BadRequest | ErrorKind::ResourceNotFound
        ),
        "{error:?}"
    );
    let described = format!("err {:?} {}", error.kind, error.message);
    let modelled = operation.map(|op| op.errors(namespace));
    let response = error.render(namespace, modelled.as_deref(), "fuzz-request-id");
    assert!(response.status().is_client_error());
    assert!(response.headers().contains_key("x-amzn-ErrorType"));
    described
}
