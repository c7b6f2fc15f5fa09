//! The ListAttendees page cache is never stale: with the cache warm (a page listed twice, the
//! second time served from it), every write that changes the listing, through this node or
//! another one on the same store, shows in the very next list. Driven by the official SDK.

mod common;

use std::collections::BTreeMap;

use aws_sdk_chimesdkmeetings as meetings;
use carillon::store::postgres::{ScratchSchema, test_database_url};
use common::{TestServer, caps, create_meeting_id};
use meetings::types::MediaCapabilities::{None as Off, Receive, SendReceive};
use meetings::types::{AttendeeIdItem, CreateAttendeeRequestItem};

/// One attendee as a list shows it: ExternalUserId → (AttendeeId, audio, video, content).
type Listing = BTreeMap<String, (String, String, String, String)>;

fn item(user: &str) -> CreateAttendeeRequestItem {
    CreateAttendeeRequestItem::builder()
        .external_user_id(user)
        .build()
        .expect("item")
}

/// The cache's (hits, misses) on a node.
fn counts(server: &TestServer) -> (u64, u64) {
    server
        .running
        .as_ref()
        .expect("running")
        .api
        .list_cache
        .hits_and_misses()
}

fn listing(page: &meetings::operation::list_attendees::ListAttendeesOutput) -> Listing {
    page.attendees()
        .iter()
        .map(|a| {
            let c = a.capabilities().expect("Capabilities");
            (
                a.external_user_id().expect("ExternalUserId").to_string(),
                (
                    a.attendee_id().expect("AttendeeId").to_string(),
                    c.audio().as_str().to_string(),
                    c.video().as_str().to_string(),
                    c.content().as_str().to_string(),
                ),
            )
        })
        .collect()
}

/// One page of at most `max` after `token`.
async fn page(
    client: &meetings::Client,
    id: &str,
    max: i32,
    token: Option<String>,
) -> meetings::operation::list_attendees::ListAttendeesOutput {
    client
        .list_attendees()
        .meeting_id(id)
        .max_results(max)
        .set_next_token(token)
        .send()
        .await
        .expect("ListAttendees")
}

/// The first page of `node`, listed once more (which must come from its cache, warm from the
/// previous call or this one) and returned.
async fn warm_list(node: &TestServer, client: &meetings::Client, id: &str) -> Listing {
    let first = listing(&page(client, id, 100, None).await);
    let (hits, _) = counts(node);
    let again = listing(&page(client, id, 100, None).await);
    assert_eq!(counts(node).0, hits + 1, "the second list is a cache hit");
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
        .expect("Attendee")
        .attendee_id
        .expect("AttendeeId")
}

fn users(listing: &Listing) -> Vec<&str> {
    listing.keys().map(String::as_str).collect()
}

/// Every write that changes a listing, sent through `writer` to a meeting listed through
/// `reader` (the same node or another one on its store), with `node`'s cache warm before each.
async fn each_write_shows_in_the_next_list(
    node: &TestServer,
    reader: &meetings::Client,
    writer: &meetings::Client,
    id: &str,
) {
    create(writer, id, "José").await;
    create(writer, id, "Zoë").await;
    let before = warm_list(node, reader, id).await;
    assert_eq!(users(&before), ["José", "Zoë"]);

    // CreateAttendee.
    let ana = create(writer, id, "«Ana»").await;
    let after = warm_list(node, reader, id).await;
    assert_eq!(users(&after), ["José", "Zoë", "«Ana»"]);
    assert_eq!(after["«Ana»"].0, ana);

    // BatchCreateAttendee.
    let created = writer
        .batch_create_attendee()
        .meeting_id(id)
        .attendees(item("Ødegaard"))
        .attendees(item("Søren"))
        .send()
        .await
        .expect("BatchCreateAttendee");
    assert!(created.errors().is_empty(), "{created:?}");
    let after = warm_list(node, reader, id).await;
    assert_eq!(users(&after), ["José", "Søren", "Zoë", "«Ana»", "Ødegaard"]);

    // UpdateAttendeeCapabilities.
    let jose = after["José"].0.clone();
    writer
        .update_attendee_capabilities()
        .meeting_id(id)
        .attendee_id(&jose)
        .capabilities(caps(Receive, Off, Off))
        .send()
        .await
        .expect("UpdateAttendeeCapabilities");
    let after = warm_list(node, reader, id).await;
    let jose_caps = |l: &Listing| {
        let (_, audio, video, content) = &l["José"];
        (audio.clone(), video.clone(), content.clone())
    };
    assert_eq!(
        jose_caps(&after),
        ("Receive".into(), "None".into(), "None".into())
    );

    // BatchUpdateAttendeeCapabilitiesExcept.
    writer
        .batch_update_attendee_capabilities_except()
        .meeting_id(id)
        .excluded_attendee_ids(
            AttendeeIdItem::builder()
                .attendee_id(&jose)
                .build()
                .expect("id item"),
        )
        .capabilities(caps(SendReceive, Receive, Off))
        .send()
        .await
        .expect("BatchUpdateAttendeeCapabilitiesExcept");
    let after = warm_list(node, reader, id).await;
    assert_eq!(
        jose_caps(&after),
        ("Receive".into(), "None".into(), "None".into())
    );
    for (user, (_, audio, video, content)) in &after {
        if user != "José" {
            assert_eq!(
                (audio.as_str(), video.as_str(), content.as_str()),
                ("SendReceive", "Receive", "None"),
                "{user}"
            );
        }
    }

    // DeleteAttendee.
    writer
        .delete_attendee()
        .meeting_id(id)
        .attendee_id(&after["Zoë"].0)
        .send()
        .await
        .expect("DeleteAttendee");
    let after = warm_list(node, reader, id).await;
    assert_eq!(users(&after), ["José", "Søren", "«Ana»", "Ødegaard"]);

    // DeleteMeeting: the warm page is not served for a meeting that is gone.
    writer
        .delete_meeting()
        .meeting_id(id)
        .send()
        .await
        .expect("DeleteMeeting");
    let gone = reader
        .list_attendees()
        .meeting_id(id)
        .max_results(100)
        .send()
        .await
        .expect_err("the meeting is gone")
        .into_service_error();
    assert!(gone.is_not_found_exception(), "{gone:?}");
}

#[tokio::test]
async fn each_write_shows_in_the_next_list_with_the_cache_warm() {
    let server = TestServer::start().await;
    let client = server.client();
    let id = create_meeting_id(&client, "cached").await;
    each_write_shows_in_the_next_list(&server, &client, &client, &id).await;
}

/// The second and later pages are cached under their NextToken's cursor, and checked the same
/// way: a page listed with a token minted before a write shows the write.
#[tokio::test]
async fn later_pages_show_writes_too() {
    let server = TestServer::start().await;
    let client = server.client();
    let id = create_meeting_id(&client, "pages").await;
    let names: Vec<String> = (0..20).map(|i| format!("José {i:02}")).collect();
    client
        .batch_create_attendee()
        .meeting_id(&id)
        .set_attendees(Some(names.iter().map(|n| item(n)).collect()))
        .send()
        .await
        .expect("BatchCreateAttendee");

    // Walk pages of 7 twice: the second walk comes from the cache, page for page.
    let walk = async || {
        let (mut all, mut tokens, mut token) = (Listing::new(), Vec::new(), None);
        loop {
            let out = page(&client, &id, 7, token.clone()).await;
            all.extend(listing(&out));
            tokens.push(token);
            match out.next_token() {
                Some(next) => token = Some(next.to_string()),
                None => return (all, tokens),
            }
        }
    };
    let (first, tokens) = walk().await;
    assert_eq!(first.len(), 20);
    assert_eq!(tokens.len(), 3);
    let (hits, misses) = counts(&server);
    let (second, _) = walk().await;
    assert_eq!(second, first);
    assert_eq!(counts(&server), (hits + 3, misses), "three pages, all hits");

    // The second page, by the token the first page gave before the writes.
    let second_token = tokens[1].clone();
    let page_two = listing(&page(&client, &id, 7, second_token.clone()).await);
    let (deleted_user, (deleted_id, ..)) = page_two.iter().nth(2).expect("a third on page two");
    client
        .delete_attendee()
        .meeting_id(&id)
        .attendee_id(deleted_id)
        .send()
        .await
        .expect("DeleteAttendee");
    let after = listing(&page(&client, &id, 7, second_token.clone()).await);
    assert!(!after.contains_key(deleted_user), "{deleted_user} is gone");
    assert_eq!(after.len(), 7, "the next attendee moves up into page two");

    // A new attendee sorts after every other (AttendeeIds begin with their creation time), so
    // it lands on the last page: listed by the token minted before the writes, that page, which
    // the cache holds, shows it.
    let user = "Zoë «new»".to_string();
    let new_id = create(&client, &id, &user).await;
    let last_token = tokens[2].clone();
    let last = listing(&page(&client, &id, 7, last_token).await);
    assert_eq!(
        last.get(&user).map(|a| a.0.as_str()),
        Some(new_id.as_str()),
        "{last:?}"
    );
    assert!(
        last.values().all(|(id, ..)| *id <= new_id),
        "the newest attendee sorts last"
    );

    // Every page again, as a whole: exactly the attendees now in the meeting.
    let (all, _) = walk().await;
    let mut expected: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| n != deleted_user)
        .collect();
    expected.push(&user);
    expected.sort_unstable();
    assert_eq!(users(&all), expected);
}

/// A hit is the same response as the miss that filled it: status, headers and body, byte for
/// byte (only the request id differs).
#[tokio::test]
async fn a_hit_is_the_same_response_byte_for_byte() {
    let server = TestServer::start().await;
    let client = server.client();
    let id = create_meeting_id(&client, "bytes").await;
    for user in ["José", "Zoë", "«Ana»"] {
        create(&client, &id, user).await;
    }
    let raw = server.raw();
    let path = format!("/meetings/{id}/attendees?max-results=2");
    let (hits, misses) = counts(&server);
    let miss = raw.get(&path).await;
    let hit = raw.get(&path).await;
    assert_eq!(counts(&server), (hits + 1, misses + 1));
    assert_eq!(miss.status, 200);
    assert_eq!(hit.status, miss.status);
    assert_eq!(hit.body, miss.body);
    let without = |headers: &[(String, String)]| -> Vec<(String, String)> {
        headers
            .iter()
            .filter(|(k, _)| {
                !k.eq_ignore_ascii_case("x-amzn-RequestId") && !k.eq_ignore_ascii_case("date")
            })
            .cloned()
            .collect()
    };
    assert_eq!(without(&hit.headers), without(&miss.headers));
    assert_eq!(hit.header("content-type"), Some("application/json"));
    let body = hit.json();
    assert_eq!(body["Attendees"].as_array().map(Vec::len), Some(2));
    assert!(body["NextToken"].is_string(), "{body}");
    assert_ne!(
        hit.header("x-amzn-RequestId"),
        miss.header("x-amzn-RequestId")
    );
}

/// The legacy namespace lists without Capabilities and at most 99 to a page: its pages are
/// cached apart from chime-sdk-meetings' pages of the same meeting.
#[tokio::test]
async fn legacy_and_chime_sdk_pages_are_cached_apart() {
    let server = TestServer::start().await;
    let client = server.client();
    let id = create_meeting_id(&client, "both").await;
    for user in ["José", "Zoë"] {
        create(&client, &id, user).await;
    }
    let raw = server.raw();
    let legacy = |raw: common::RawResponse| {
        assert_eq!(raw.status, 200, "{raw:?}");
        let body = raw.json();
        let attendees = body["Attendees"].as_array().expect("Attendees").clone();
        assert!(attendees.iter().all(|a| a.get("Capabilities").is_none()));
        attendees.len()
    };
    // The same page size in both, so only the namespace tells them apart.
    let legacy_path = format!("/legacy/meetings/{id}/attendees?max-results=99");
    assert_eq!(legacy(raw.get(&legacy_path).await), 2);
    assert_eq!(legacy(raw.get(&legacy_path).await), 2);
    let sdk = page(&client, &id, 99, None).await;
    assert!(sdk.attendees().iter().all(|a| a.capabilities().is_some()));
    let (hits, _) = counts(&server);
    let sdk_again = page(&client, &id, 99, None).await;
    assert_eq!(listing(&sdk_again), listing(&sdk));
    assert_eq!(legacy(raw.get(&legacy_path).await), 2);
    assert_eq!(
        counts(&server).0,
        hits + 2,
        "both namespaces hit their own page"
    );
    create(&client, &id, "«Ana»").await;
    assert_eq!(legacy(raw.get(&legacy_path).await), 3);
}

/// A second server of this process on the same SQLite file (they share the store's memory of
/// attendee versions) writes; the first node's warm pages show each write.
#[tokio::test]
async fn a_write_through_another_node_shows_in_the_next_list() {
    let first = TestServer::start().await;
    let second = first.second_node().await;
    let other = common::sdk_client(&format!("http://{}", second.boot.addr), "us-east-1");
    let client = first.client();
    let id = create_meeting_id(&client, "two nodes").await;
    each_write_shows_in_the_next_list(&first, &client, &other, &id).await;
    second.stop().await.expect("the second node stops");
}

/// The same on PostgreSQL, where the nodes share nothing but the database.
#[tokio::test]
async fn a_write_through_another_node_on_postgres_shows_in_the_next_list() {
    let Some(url) = test_database_url("a_write_through_another_node_on_postgres_shows") else {
        return;
    };
    let scratch = ScratchSchema::create(&url).await.expect("a scratch schema");
    let first = TestServer::start_with(|c| c.store = Some(scratch.url.clone())).await;
    let second = TestServer::start_with(|c| c.store = Some(scratch.url.clone())).await;
    let client = first.client();
    let id = create_meeting_id(&client, "two nodes on postgres").await;
    each_write_shows_in_the_next_list(&first, &client, &second.client(), &id).await;
}
