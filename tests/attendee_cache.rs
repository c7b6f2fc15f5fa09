//! The GetAttendee answer cache is never stale: with the cache warm (an attendee read twice, the
//! second time served from it), every write that changes the answer, through this node or
//! another one on the same store, shows in the very next GetAttendee. Driven by the official SDK.

mod common;

use aws_sdk_chimesdkmeetings as meetings;
use carillon::store::postgres::{ScratchSchema, test_database_url};
use common::{TestServer, caps, create_meeting_id};
use meetings::types::AttendeeIdItem;
use meetings::types::MediaCapabilities::{None as Off, Receive, SendReceive};

/// The cache's (hits, misses) on a node.
fn counts(server: &TestServer) -> (u64, u64) {
    server
        .running
        .as_ref()
        .expect("running")
        .api
        .attendee_cache
        .hits_and_misses()
}

/// The attendee as GetAttendee shows it: (ExternalUserId, JoinToken, audio, video, content).
type Shown = (String, String, String, String, String);

async fn get(client: &meetings::Client, id: &str, attendee: &str) -> Result<Shown, String> {
    let out = client
        .get_attendee()
        .meeting_id(id)
        .attendee_id(attendee)
        .send()
        .await
        .map_err(|e| {
            let e = e.into_service_error();
            assert!(e.is_not_found_exception(), "{e:?}");
            "NotFound".to_string()
        })?;
    let a = out.attendee.expect("Attendee");
    let c = a.capabilities().expect("Capabilities");
    Ok((
        a.external_user_id().expect("ExternalUserId").to_string(),
        a.join_token().expect("JoinToken").to_string(),
        c.audio().as_str().to_string(),
        c.video().as_str().to_string(),
        c.content().as_str().to_string(),
    ))
}

/// The attendee read through `node` twice, the second time from its cache.
async fn warm_get(node: &TestServer, client: &meetings::Client, id: &str, attendee: &str) -> Shown {
    let first = get(client, id, attendee).await.expect("GetAttendee");
    let (hits, _) = counts(node);
    let again = get(client, id, attendee).await.expect("GetAttendee");
    assert_eq!(counts(node).0, hits + 1, "the second read is a cache hit");
    assert_eq!(again, first);
    again
}

async fn create(client: &meetings::Client, id: &str, user: &str) -> String {
    client
        .create_attendee()
        .meeting_id(id)
        .external_user_id(user)
        .send()
        .await
        .expect("CreateAttendee")
        .attendee
        .and_then(|a| a.attendee_id)
        .expect("AttendeeId")
}

/// Reads through `node` (with `reader`), writes with `writer` (the same node or another one).
async fn each_write_shows_in_the_next_get(
    node: &TestServer,
    reader: &meetings::Client,
    writer: &meetings::Client,
    id: &str,
) {
    let jose = create(writer, id, "José").await;
    let zoe = create(writer, id, "Zoë").await;
    let shown = warm_get(node, reader, id, &jose).await;
    assert_eq!(
        (shown.0.as_str(), &shown.2[..], &shown.3[..], &shown.4[..]),
        ("José", "SendReceive", "SendReceive", "SendReceive")
    );

    writer
        .update_attendee_capabilities()
        .meeting_id(id)
        .attendee_id(&jose)
        .capabilities(caps(Receive, Off, Off))
        .send()
        .await
        .expect("UpdateAttendeeCapabilities");
    let after = warm_get(node, reader, id, &jose).await;
    assert_eq!(
        (&after.2[..], &after.3[..], &after.4[..]),
        ("Receive", "None", "None")
    );

    writer
        .batch_update_attendee_capabilities_except()
        .meeting_id(id)
        .excluded_attendee_ids(
            AttendeeIdItem::builder()
                .attendee_id(&zoe)
                .build()
                .expect("id item"),
        )
        .capabilities(caps(SendReceive, Receive, Off))
        .send()
        .await
        .expect("BatchUpdateAttendeeCapabilitiesExcept");
    let after = warm_get(node, reader, id, &jose).await;
    assert_eq!(
        (&after.2[..], &after.3[..], &after.4[..]),
        ("SendReceive", "Receive", "None")
    );

    writer
        .delete_attendee()
        .meeting_id(id)
        .attendee_id(&jose)
        .send()
        .await
        .expect("DeleteAttendee");
    assert_eq!(get(reader, id, &jose).await, Err("NotFound".into()));

    // DeleteMeeting: Zoë's warm answer is not served for a meeting that is gone.
    warm_get(node, reader, id, &zoe).await;
    writer
        .delete_meeting()
        .meeting_id(id)
        .send()
        .await
        .expect("DeleteMeeting");
    assert_eq!(get(reader, id, &zoe).await, Err("NotFound".into()));
}

#[tokio::test]
async fn each_write_shows_in_the_next_get_with_the_cache_warm() {
    let server = TestServer::start().await;
    let client = server.client();
    let id = create_meeting_id(&client, "cached").await;
    each_write_shows_in_the_next_get(&server, &client, &client, &id).await;
}

/// A second server of this process on the same SQLite file (they share the store's memory of
/// attendee versions) writes; the first node's warm answers show each write.
#[tokio::test]
async fn a_write_through_another_node_shows_in_the_next_get() {
    let first = TestServer::start().await;
    let second = first.second_node().await;
    let other = common::sdk_client(&format!("http://{}", second.boot.addr), "us-east-1");
    let client = first.client();
    let id = create_meeting_id(&client, "two nodes").await;
    each_write_shows_in_the_next_get(&first, &client, &other, &id).await;
    second.stop().await.expect("the second node stops");
}

/// The same on PostgreSQL, where the nodes share nothing but the database.
#[tokio::test]
async fn a_write_through_another_node_on_postgres_shows_in_the_next_get() {
    let Some(url) = test_database_url("a_write_through_another_node_on_postgres_shows_get") else {
        return;
    };
    let scratch = ScratchSchema::create(&url).await.expect("a scratch schema");
    let first = TestServer::start_with(|c| c.store = Some(scratch.url.clone())).await;
    let second = TestServer::start_with(|c| c.store = Some(scratch.url.clone())).await;
    let id = create_meeting_id(&first.client(), "on postgres").await;
    each_write_shows_in_the_next_get(&first, &first.client(), &second.client(), &id).await;
}

/// A hit is the same response as the miss that filled it, byte for byte (only the request id
/// differs), and the legacy namespace's answer (no Capabilities) is cached apart.
#[tokio::test]
async fn a_hit_is_the_same_response_byte_for_byte_in_each_namespace() {
    let server = TestServer::start().await;
    let client = server.client();
    let id = create_meeting_id(&client, "bytes").await;
    let ana = create(&client, &id, "«Ana»").await;
    let raw = server.raw();
    for path in [
        format!("/meetings/{id}/attendees/{ana}"),
        format!("/legacy/meetings/{id}/attendees/{ana}"),
    ] {
        let (hits, misses) = counts(&server);
        let miss = raw.get(&path).await;
        let hit = raw.get(&path).await;
        assert_eq!(counts(&server), (hits + 1, misses + 1), "{path}");
        assert_eq!(miss.status, 200, "{miss:?}");
        assert_eq!((hit.status, &hit.body), (miss.status, &miss.body), "{path}");
        let headers = |r: &common::RawResponse| -> Vec<(String, String)> {
            r.headers
                .iter()
                .filter(|(k, _)| {
                    !k.eq_ignore_ascii_case("x-amzn-RequestId") && !k.eq_ignore_ascii_case("date")
                })
                .cloned()
                .collect()
        };
        assert_eq!(headers(&hit), headers(&miss));
        let body = hit.json();
        assert_eq!(body["Attendee"]["ExternalUserId"], "«Ana»");
        let legacy = path.starts_with("/legacy");
        assert_eq!(
            body["Attendee"].get("Capabilities").is_none(),
            legacy,
            "{body}"
        );
    }
}
