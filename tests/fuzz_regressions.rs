//! Replays saved fuzz inputs through the fuzz targets' own code. `fuzz/harness` holds the bodies
//! of the cargo-fuzz targets (see `scripts/fuzz`); this test compiles the same files on stable.
//!
//! Every file in `tests/fuzz_regressions/<target>/` must run without a panic; a file with a
//! `<name>.expect` sibling must also produce an outcome that starts with that file's text. Minimised
//! crashers go there. The first campaign (about 21 million executions over the four targets)
//! found none in Carillon's code, so the directories hold hand-written cases of the bug classes
//! looked for instead: the "José" ExternalUserId whose byte-sliced `aws:` check used to panic,
//! other multibyte characters where byte offsets would split them, integer overflow, deep JSON
//! and huge protobuf length fields. The committed seed corpus, `fuzz/seeds/<target>/`, is replayed
//! as well, so no target's replay is ever empty.

#[path = "../fuzz/harness/mod.rs"]
mod harness;

use std::path::Path;

fn replay(target: &str, run: fn(&[u8]) -> String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut replayed = 0;
    for dir in [
        root.join("tests/fuzz_regressions").join(target),
        root.join("fuzz/seeds").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries
            .map(|entry| entry.expect("readable directory").path())
            .filter(|path| path.extension().is_none_or(|ext| ext != "expect"))
            .collect();
        files.sort();
        for file in files {
            let input = std::fs::read(&file).expect("readable input");
            let outcome = std::panic::catch_unwind(|| run(&input))
                .unwrap_or_else(|_| panic!("{} panicked", file.display()));
            println!("{}: {outcome}", file.display());
            let expect = file.with_extension("expect");
            if let Ok(expected) = std::fs::read_to_string(&expect) {
                let expected = expected.trim_end();
                assert!(
                    outcome.starts_with(expected),
                    "{}: expected an outcome starting with {expected:?}, got {outcome:?}",
                    file.display()
                );
            }
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no inputs for {target}");
}

#[test]
fn sigv4() {
    replay("sigv4", harness::sigv4::run);
}

#[test]
fn route() {
    replay("route", harness::route::run);
}

#[test]
fn request_json() {
    replay("request_json", harness::request_json::run);
}

#[test]
fn signaling_frame() {
    replay("signaling_frame", harness::signaling_frame::run);
}

/// The bug that started this: a byte slice of the `aws:` prefix check split the `é` of "José"
/// and the handler panicked into a 500. The name is valid for CreateAttendee, in a batch and in
/// CreateMeetingWithAttendees.
#[test]
fn jose_is_a_valid_external_user_id() {
    use carillon::api::dto::AttendeeItemIn;
    use carillon::api::input;
    use carillon::domain::capabilities::MeetingFeatures;

    let item: AttendeeItemIn =
        input::json_body(r#"{"ExternalUserId":"José"}"#.as_bytes()).expect("decodes");
    let checked = input::attendee_item(false, "", &item, &MeetingFeatures::default())
        .expect("José is a valid ExternalUserId");
    assert_eq!(checked.external_user_id, "José");
    for name in ["José", "Zoë", "Renée", "«Ana»", "ÿÿÿÿ", "aws\u{e9}x"] {
        let body = format!(r#"2{{"ExternalUserId":"{name}"}}"#);
        assert_eq!(
            harness::request_json::run(body.as_bytes()),
            "ok CreateAttendee",
            "{name}"
        );
    }
    let batch = r#"3{"Attendees":[{"ExternalUserId":"José"},{"ExternalUserId":"aws:x"}]}"#;
    assert_eq!(
        harness::request_json::run(batch.as_bytes()),
        "ok BatchCreateAttendee 1/2 attendees valid"
    );
}
