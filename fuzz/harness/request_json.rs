//! Request bodies: every operation's JSON decoding and validation, through the same `api::input`
//! functions the handlers call before they touch the store, and then the per-attendee and
//! capability checks the handlers make against a meeting's features.
//!
//! Input: one selector byte, then the body. In the selector, the low four bits pick the operation
//! (modulo 11, in the order of `OPERATIONS`), bit 6 the legacy namespace, and bits 4, 5 and 7 the
//! meeting's features (`FEATURES`; bits 4 and 5 are inverted). So `'0'..=':'` are the
//! chime-sdk-meetings operations and `'p'..='z'` the legacy ones, both with default features.

use carillon::api::dto::AttendeeItemIn;
use carillon::api::error::{ApiError, ErrorKind};
use carillon::api::input;
use carillon::domain::capabilities::{
    AttendeeFeatures, MeetingFeatures, ResolutionFeatures, check_content_needs_video,
};
use carillon::domain::{ids, regions};
use carillon::store::{Tag, TagTarget};

pub const ACCOUNT: &str = "123456789012";

pub const OPERATIONS: [&str; 11] = [
    "CreateMeeting",
    "CreateMeetingWithAttendees",
    "CreateAttendee",
    "BatchCreateAttendee",
    "UpdateAttendeeCapabilities",
    "BatchUpdateAttendeeCapabilitiesExcept",
    "StartMeetingTranscription",
    "TagResource",
    "UntagResource",
    "TagMeeting/TagAttendee",
    "UntagMeeting/UntagAttendee",
];

/// The stored meeting's features, for the checks that need the meeting.
fn features(index: u8) -> MeetingFeatures {
    let resolution = |r: &str| {
        Some(ResolutionFeatures {
            max_resolution: Some(r.into()),
        })
    };
    match index {
        1 => MeetingFeatures {
            video: resolution("None"),
            ..Default::default()
        },
        2 => MeetingFeatures {
            content: resolution("None"),
            ..Default::default()
        },
        3 => MeetingFeatures {
            video: resolution("None"),
            content: resolution("None"),
            ..Default::default()
        },
        4 => MeetingFeatures {
            video: resolution("FHD"),
            ..Default::default()
        },
        5 => MeetingFeatures {
            content: resolution("UHD"),
            ..Default::default()
        },
        6 => MeetingFeatures {
            video: resolution("HD"),
            attendee: Some(AttendeeFeatures { max_count: Some(5) }),
            ..Default::default()
        },
        7 => MeetingFeatures {
            video: resolution("None"),
            content: resolution("FHD"),
            ..Default::default()
        },
        _ => MeetingFeatures::default(),
    }
}

pub fn run(data: &[u8]) -> String {
    let Some((&selector, body)) = data.split_first() else {
        return "err empty".into();
    };
    let operation = usize::from(selector & 0x0f) % OPERATIONS.len();
    let legacy = selector & 0x40 != 0;
    let features = features((((selector >> 4) & 0x3) ^ 0x3) | ((selector >> 5) & 0x4));
    // Whatever the meeting's features, the default capabilities never receive content without
    // video. (They need not pass `check_capabilities`: a meeting with video off but content on
    // gives Video=Receive by default, as documented, which a request may not ask for.)
    assert!(check_content_needs_video(&features.default_capabilities()).is_ok());

    let outcome = match operation {
        0 | 1 => create_meeting(body, legacy, operation == 1),
        2 => input::json_body::<AttendeeItemIn>(body).and_then(|item| {
            attendee_item(legacy, "", &item, &features)?;
            Ok(String::new())
        }),
        3 => input::batch_create_attendee(body).map(|items| {
            assert!((1..=100).contains(&items.len()));
            attendee_items(legacy, &items, &features)
        }),
        4 => input::update_capabilities(body).map(|caps| {
            let allowed = features.check_capabilities(&caps).is_ok();
            format!("{caps:?} allowed={allowed}")
        }),
        5 => input::update_capabilities_except(body).map(|(excluded, caps)| {
            assert!((1..=250).contains(&excluded.len()));
            for id in &excluded {
                assert!(ids::is_guid(id) && *id == id.to_ascii_lowercase());
            }
            let allowed = features.check_capabilities(&caps).is_ok();
            format!("{} excluded, {caps:?} allowed={allowed}", excluded.len())
        }),
        6 => input::start_transcription(body, legacy).map(|(_, text)| text),
        7 => input::tag_resource(body, legacy, ACCOUNT, 50).map(|input| {
            meeting_target(&input.target);
            check_tags(legacy, &input.tags, 50);
            format!("{} tags", input.tags.len())
        }),
        8 => input::untag_resource(body, legacy, ACCOUNT, 50).map(|input| {
            meeting_target(&input.target);
            assert!(input.tags.len() <= 50);
            format!("{} keys", input.tags.len())
        }),
        9 => input::tag_path(body, 10).map(|tags| {
            check_tags(true, &tags, 10);
            format!("{} tags", tags.len())
        }),
        _ => input::untag_path(body, legacy, 10).map(|keys| {
            assert!(keys.len() <= 10);
            format!("{} keys", keys.len())
        }),
    };
    let name = OPERATIONS[operation];
    match outcome {
        Ok(detail) => format!("ok {name} {detail}").trim_end().to_string(),
        Err(error) => {
            check_error(&error);
            format!("err {name} {}", error.message)
        }
    }
}

fn check_error(error: &ApiError) {
    assert!(
        matches!(
            error.kind,
            ErrorKind::BadRequest | ErrorKind::ResourceNotFound
        ),
        "{error:?}"
    );
    assert!(!error.message.is_empty());
}

fn create_meeting(body: &[u8], legacy: bool, with_attendees: bool) -> Result<String, ApiError> {
    let input = input::create_meeting(body, legacy, with_attendees)?;
    let token = &input.client_request_token;
    assert!((2..=64).contains(&token.len()) && token.is_ascii());
    assert!(regions::is_media_region(&input.media_region));
    if legacy {
        assert!(input.features.is_none() && input.tenant_ids.is_none());
        assert!(input.primary_meeting_id.is_none() && input.network_type.is_none());
    } else {
        assert!(input.external_meeting_id.is_some());
    }
    if let Some(primary) = &input.primary_meeting_id {
        assert!(ids::is_guid(primary));
    }
    check_tags(legacy, &input.tags, 50);
    if with_attendees {
        assert!((1..=20).contains(&input.attendees.len()) || legacy);
    } else {
        assert!(input.attendees.is_empty());
    }
    // The handler goes on with the effective features: the attendee cap and each item.
    let features = input.features.clone().unwrap_or_default();
    let cap = features.attendee_cap(250);
    assert!((1..=250).contains(&cap), "{cap}");
    assert!(check_content_needs_video(&features.default_capabilities()).is_ok());
    Ok(attendee_items(legacy, &input.attendees, &features))
}

/// The handlers' loop over attendee items: invalid ones become `Errors` entries.
fn attendee_items(legacy: bool, items: &[AttendeeItemIn], features: &MeetingFeatures) -> String {
    let mut valid = 0;
    for (i, item) in items.iter().enumerate() {
        match attendee_item(legacy, &format!("Attendees[{i}]."), item, features) {
            Ok(()) => valid += 1,
            Err(error) => check_error(&error),
        }
    }
    format!("{valid}/{} attendees valid", items.len())
}

fn attendee_item(
    legacy: bool,
    member: &str,
    item: &AttendeeItemIn,
    features: &MeetingFeatures,
) -> Result<(), ApiError> {
    let checked = input::attendee_item(legacy, member, item, features)?;
    let id = &checked.external_user_id;
    assert!((2..=64).contains(&id.chars().count()), "{id:?}");
    if !legacy {
        assert!(!id.to_ascii_lowercase().starts_with("aws:"), "{id:?}");
        assert!(checked.tags.is_empty());
    }
    if legacy || item.capabilities.is_none() {
        assert_eq!(checked.capabilities, features.default_capabilities());
    } else {
        assert!(features.check_capabilities(&checked.capabilities).is_ok());
    }
    assert!(check_content_needs_video(&checked.capabilities).is_ok());
    check_tags(legacy, &checked.tags, 50);
    Ok(())
}

fn meeting_target(target: &TagTarget) {
    match target {
        TagTarget::Meeting(id) => assert!(ids::is_guid(id) && *id == id.to_ascii_lowercase()),
        TagTarget::Attendee(..) => panic!("an ARN named an attendee: {target:?}"),
    }
}

fn check_tags(legacy: bool, tags: &[Tag], max: usize) {
    assert!(tags.len() <= max);
    for (i, tag) in tags.iter().enumerate() {
        assert!(tags[..i].iter().all(|t| t.key != tag.key), "duplicate key");
        let key_len = tag.key.chars().count();
        assert!((1..=128).contains(&key_len));
        if legacy {
            assert!((1..=256).contains(&tag.value.chars().count()));
        } else {
            assert!(tag.value.chars().count() <= 256);
            assert!(!tag.key.to_ascii_lowercase().starts_with("aws:"));
        }
    }
}
