//! Control-plane benchmark: `cargo bench --bench api` (or `bench/run`).
//!
//! Every figure is reported next to a baseline measured in the same run, on the same machine:
//! - reads: signed GetAttendee / ListAttendees against the same server's unauthenticated
//!   `GET /healthz` (the HTTP floor), with the same keep-alive client and concurrency;
//! - writes: CreateAttendee through the official SDK against raw durable SQLite inserts
//!   (WAL, synchronous=FULL, one transaction per row: the storage floor);
//! - pagination: the first ListAttendees page of a 10,000-attendee meeting against that of a
//!   250-attendee meeting, and the keyset query for the last page against SQL OFFSET;
//! - stores, when CARILLON_TEST_POSTGRES_URL is set: CreateAttendee and GetAttendee on a
//!   server whose store is PostgreSQL (a scratch schema) against the same on the embedded
//!   SQLite store, with every worker on one meeting and with a meeting per worker.
//!
//! Loads target 127.0.0.1 only and stop after a fixed time.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant, SystemTime};

use aws_sdk_chimesdkmeetings::types::CreateAttendeeRequestItem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONNECTIONS: usize = 8;
const RUN_FOR: Duration = Duration::from_secs(3);

#[derive(Clone, Copy)]
struct Stats {
    requests: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

fn stats(mut latencies: Vec<Duration>, elapsed: Duration) -> Stats {
    latencies.sort();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or_default()
    };
    Stats {
        requests: latencies.len(),
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: pick(0.5),
        p99: pick(0.99),
    }
}

/// Replays one request over `CONNECTIONS` keep-alive connections for `RUN_FOR`.
async fn replay(addr: std::net::SocketAddr, request: Vec<u8>) -> Stats {
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let request = request.clone();
            tokio::spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                let mut latencies = Vec::new();
                let mut buf = vec![0u8; 256 * 1024];
                while started.elapsed() < RUN_FOR {
                    let t = Instant::now();
                    stream.write_all(&request).await.expect("write");
                    read_response(&mut stream, &mut buf).await;
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task"));
    }
    stats(all, started.elapsed())
}

/// Reads one HTTP/1.1 response with a Content-Length body and checks its status is 200.
async fn read_response(stream: &mut tokio::net::TcpStream, buf: &mut [u8]) {
    let mut filled = 0;
    loop {
        let n = stream.read(&mut buf[filled..]).await.expect("read");
        assert!(n > 0, "connection closed");
        filled += n;
        let Some(head_end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buf[..head_end]).expect("utf8 head");
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "unexpected response: {head}"
        );
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().expect("length"))
            })
            .expect("content-length");
        while filled < head_end + 4 + length {
            let n = stream.read(&mut buf[filled..]).await.expect("read body");
            assert!(n > 0, "connection closed mid-body");
            filled += n;
        }
        return;
    }
}

fn signed_get(addr: std::net::SocketAddr, path: &str) -> Vec<u8> {
    let headers = vec![("host".to_string(), addr.to_string())];
    let signed = common::sign_headers(
        "GET",
        &format!("http://{addr}{path}"),
        &headers,
        b"",
        common::SECRET_ACCESS_KEY,
        "us-east-1",
        SystemTime::now(),
    );
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n");
    for (k, v) in signed {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.into_bytes()
}

fn row(name: &str, s: &Stats, baseline: &Stats) {
    println!(
        "{name:<38} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} requests)  {:.2}x of baseline",
        s.per_second,
        s.p50.as_secs_f64() * 1e3,
        s.p99.as_secs_f64() * 1e3,
        s.requests,
        s.per_second / baseline.per_second
    );
}

async fn populate(
    client: &aws_sdk_chimesdkmeetings::Client,
    external: &str,
    attendees: usize,
) -> (String, String) {
    let id = common::create_meeting_id(client, external).await;
    let mut first = String::new();
    for start in (0..attendees).step_by(100) {
        let items: Vec<_> = (start..(start + 100).min(attendees))
            .map(|i| {
                CreateAttendeeRequestItem::builder()
                    .external_user_id(format!("user-{i}"))
                    .build()
                    .expect("item")
            })
            .collect();
        let out = client
            .batch_create_attendee()
            .meeting_id(&id)
            .set_attendees(Some(items))
            .send()
            .await
            .expect("batch");
        if first.is_empty() {
            first = out.attendees()[0].attendee_id().expect("id").to_string();
        }
    }
    (id, first)
}

/// Serial durable inserts into a fresh SQLite file: one transaction per row, fsync on commit.
fn sqlite_insert_floor(dir: &std::path::Path) -> Stats {
    let conn = rusqlite::Connection::open(dir.join("floor.db")).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("full");
    conn.execute_batch("CREATE TABLE t (id TEXT PRIMARY KEY, v TEXT NOT NULL)")
        .expect("table");
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut i = 0u64;
    while started.elapsed() < RUN_FOR {
        let t = Instant::now();
        conn.execute(
            "INSERT INTO t VALUES (?1, ?2)",
            rusqlite::params![uuid::Uuid::new_v4().to_string(), i],
        )
        .expect("insert");
        latencies.push(t.elapsed());
        i += 1;
    }
    stats(latencies, started.elapsed())
}

/// CreateAttendee from `CONNECTIONS` workers for `RUN_FOR`; worker `w` writes to
/// `meetings[w % meetings.len()]`.
async fn sdk_creates(client: &aws_sdk_chimesdkmeetings::Client, meetings: &[String]) -> Stats {
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|w| {
            let client = client.clone();
            let meeting = meetings[w % meetings.len()].clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0;
                while started.elapsed() < RUN_FOR {
                    let t = Instant::now();
                    client
                        .create_attendee()
                        .meeting_id(&meeting)
                        .external_user_id(format!("w{w}-{n}"))
                        .send()
                        .await
                        .expect("create");
                    latencies.push(t.elapsed());
                    n += 1;
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task"));
    }
    stats(all, started.elapsed())
}

fn time_query(conn: &rusqlite::Connection, sql: &str, params: &[&dyn rusqlite::ToSql]) -> Duration {
    let mut stmt = conn.prepare(sql).expect("prepare");
    let started = Instant::now();
    let runs = 200;
    for _ in 0..runs {
        let rows: Vec<String> = stmt
            .query_map(params, |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert!(!rows.is_empty());
    }
    started.elapsed() / runs
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let server = common::TestServer::start_with(|c| c.max_attendees = 10_000_000).await;
    let client = server.client();
    let addr = server.addr;
    println!(
        "carillon control-plane benchmark: {CONNECTIONS} connections, {RUN_FOR:?} per measurement, loopback\n"
    );

    let (small, small_attendee) = populate(&client, "bench-250", 250).await;
    let (large, _) = populate(&client, "bench-10k", 10_000).await;

    println!("reads (baseline: unauthenticated GET /healthz, same client and connections)");
    let floor = replay(
        addr,
        format!("GET /healthz HTTP/1.1\r\nhost: {addr}\r\n\r\n").into_bytes(),
    )
    .await;
    row("GET /healthz (baseline)", &floor, &floor);
    let get = replay(
        addr,
        signed_get(
            addr,
            &format!("/meetings/{small}/attendees/{small_attendee}"),
        ),
    )
    .await;
    row("GetAttendee (SigV4 + store read)", &get, &floor);
    let page_small = replay(
        addr,
        signed_get(
            addr,
            &format!("/meetings/{small}/attendees?max-results=100"),
        ),
    )
    .await;
    row(
        "ListAttendees 100/page, 250 in meeting",
        &page_small,
        &floor,
    );
    let page_large = replay(
        addr,
        signed_get(
            addr,
            &format!("/meetings/{large}/attendees?max-results=100"),
        ),
    )
    .await;
    row(
        "ListAttendees 100/page, 10k in meeting",
        &page_large,
        &floor,
    );
    println!(
        "  page cost vs meeting size: 10k-meeting page = {:.2}x the 250-meeting page's throughput\n",
        page_large.per_second / page_small.per_second
    );

    println!("writes (baseline: serial durable SQLite inserts, WAL + synchronous=FULL)");
    let bench_dir = tempfile::tempdir().expect("dir");
    let insert_floor = sqlite_insert_floor(bench_dir.path());
    row("raw SQLite insert (baseline)", &insert_floor, &insert_floor);
    let (write_meeting, _) = populate(&client, "bench-writes", 0).await;
    let creates = sdk_creates(&client, &[write_meeting]).await;
    row("CreateAttendee via aws-sdk-rust", &creates, &insert_floor);

    println!("\npagination query (baseline: SQL OFFSET for the last page of the 10k meeting)");
    let conn = rusqlite::Connection::open(server.dir.path().join("carillon.db")).expect("open db");
    let last_id: String = conn
        .query_row(
            "SELECT attendee_id FROM attendees WHERE meeting_id = ?1 ORDER BY attendee_id LIMIT 1 OFFSET 9899",
            [&large],
            |r| r.get(0),
        )
        .expect("cursor");
    let offset = time_query(
        &conn,
        "SELECT attendee_id FROM attendees WHERE meeting_id = ?1 ORDER BY attendee_id LIMIT 100 OFFSET 9900",
        &[&large],
    );
    let keyset = time_query(
        &conn,
        "SELECT attendee_id FROM attendees WHERE meeting_id = ?1 AND attendee_id > ?2 ORDER BY attendee_id LIMIT 100",
        &[&large, &last_id],
    );
    println!(
        "{:<38} {:>9.1} us\n{:<38} {:>9.1} us  ({:.1}x faster)",
        "OFFSET 9900 LIMIT 100 (baseline)",
        offset.as_secs_f64() * 1e6,
        "keyset after cursor LIMIT 100",
        keyset.as_secs_f64() * 1e6,
        offset.as_secs_f64() / keyset.as_secs_f64()
    );

    stores(&server).await;
}

/// The same SDK writes and reads against a second server on PostgreSQL, each row relative to
/// the embedded SQLite server's figure measured just before it.
async fn stores(sqlite: &common::TestServer) {
    let Some(url) = carillon::store::postgres::test_database_url("the PostgreSQL comparison")
    else {
        return;
    };
    let scratch = carillon::store::postgres::ScratchSchema::create(&url)
        .await
        .expect("a scratch schema");
    let postgres = common::TestServer::start_with(|c| {
        c.max_attendees = 10_000_000;
        c.store = Some(scratch.url.clone());
    })
    .await;
    println!(
        "\nstores (baseline: the same SDK calls on the embedded SQLite store, measured just before)"
    );
    for workers_per_meeting in [CONNECTIONS, 1] {
        let meetings = CONNECTIONS / workers_per_meeting;
        let mut baseline = None;
        for (name, server) in [("SQLite", sqlite), ("PostgreSQL", &postgres)] {
            let client = server.client();
            let mut ids = Vec::new();
            for m in 0..meetings {
                ids.push(
                    populate(&client, &format!("stores-{meetings}-{m}"), 0)
                        .await
                        .0,
                );
            }
            let creates = sdk_creates(&client, &ids).await;
            let baseline = baseline.get_or_insert(creates.per_second);
            println!(
                "{:<38} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} requests)  {:.2}x of baseline",
                format!("CreateAttendee, {meetings} meeting(s), {name}"),
                creates.per_second,
                creates.p50.as_secs_f64() * 1e3,
                creates.p99.as_secs_f64() * 1e3,
                creates.requests,
                creates.per_second / *baseline
            );
        }
    }
    let mut baseline = None;
    for (name, server) in [("SQLite", sqlite), ("PostgreSQL", &postgres)] {
        let (meeting, attendee) = populate(&server.client(), "stores-get", 10).await;
        let get = replay(
            server.addr,
            signed_get(
                server.addr,
                &format!("/meetings/{meeting}/attendees/{attendee}"),
            ),
        )
        .await;
        let baseline = *baseline.get_or_insert(get);
        row(&format!("GetAttendee, {name}"), &get, &baseline);
    }
    if let Some(running) = postgres.running {
        running.stop().await.expect("stops");
    }
    scratch.remove().await.expect("the scratch schema goes");
}
