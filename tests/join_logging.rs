//! What the join plane logs, read from the real binary's stderr at the default level (info):
//! joins, leaves, refusals with their close codes and meeting ids, and never a JoinToken.

mod common;

use std::process::Stdio;
use std::time::Duration;

use carillon::join::frames::close_code;
use carillon::join::frames::proto::sdk_signal_frame::Type;
use common::signal::{SignalClient, client_frame};
use common::{ACCESS_KEY_ID, ACCOUNT_ID, SECRET_ACCESS_KEY, sdk_client};

struct Binary {
    child: tokio::process::Child,
    port: u16,
    log_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Binary {
    async fn start(extra: &[&str]) -> Binary {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            probe.local_addr().expect("addr").port()
        };
        let log_path = dir.path().join("server.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_carillon"))
            .args(["--log-format", "json", "serve"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", "off"])
            .args(extra)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("CARILLON_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("CARILLON_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            .env("CARILLON_ACCOUNT_ID", ACCOUNT_ID)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("binary starts");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Binary {
                    child,
                    port,
                    log_path,
                    _dir: dir,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not start");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).expect("log")
    }

    /// The log's lines as JSON objects.
    fn lines(&self) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Waits (up to 10 s) for a line that `matches`, and returns it.
    async fn wait_for_line(
        &self,
        what: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        for _ in 0..200 {
            if let Some(line) = self.lines().into_iter().find(|l| matches(l)) {
                return line;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no log line {what} in:\n{}", self.log());
    }
}

fn field<'a>(line: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    line.get("fields").and_then(|f| f.get(name))
}

fn message(line: &serde_json::Value) -> &str {
    field(line, "message")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
}

fn is_info(line: &serde_json::Value) -> bool {
    line.get("level").and_then(|l| l.as_str()) == Some("INFO")
}

#[tokio::test]
async fn joins_leaves_and_refusals_are_logged_at_info_without_the_join_token() {
    let mut server = Binary::start(&[]).await;
    let client = sdk_client(&format!("http://127.0.0.1:{}", server.port), "us-east-1");
    let meeting = common::create_meeting(&client, "logged").await;
    let meeting_id = meeting.meeting_id().expect("id").to_string();
    let signaling_url = meeting
        .media_placement()
        .and_then(|p| p.signaling_url())
        .expect("SignalingUrl")
        .to_string();
    let mut attendees = Vec::new();
    for name in ["José", "Zoë"] {
        let attendee = client
            .create_attendee()
            .meeting_id(&meeting_id)
            .external_user_id(name)
            .send()
            .await
            .expect("attendee")
            .attendee
            .expect("attendee");
        attendees.push((
            attendee.attendee_id.expect("id"),
            attendee.join_token.expect("token"),
        ));
    }
    let (jose_id, jose_token) = attendees[0].clone();
    let (zoe_id, zoe_token) = attendees[1].clone();

    // José joins and leaves.
    let mut jose = SignalClient::connect(&signaling_url, &jose_token).await;
    jose.join().await;
    jose.send(client_frame(Type::Leave)).await;
    assert_eq!(jose.closed().await.0, 1000);

    // Zoë is deleted, then tries to join: 4403.
    client
        .delete_attendee()
        .meeting_id(&meeting_id)
        .attendee_id(&zoe_id)
        .send()
        .await
        .expect("delete");
    let mut zoe = SignalClient::connect(&signaling_url, &zoe_token).await;
    zoe.send(client_frame(Type::Join)).await;
    assert_eq!(zoe.closed().await.0, close_code::ATTENDEE_UNAVAILABLE);

    let in_meeting = |line: &serde_json::Value| {
        is_info(line) && field(line, "meeting_id").and_then(|v| v.as_str()) == Some(&meeting_id)
    };
    let refusal = server
        .wait_for_line("refusing Zoë's JOIN with 4403", |line| {
            in_meeting(line)
                && message(line) == "refusing a JOIN"
                && field(line, "code").and_then(|c| c.as_u64())
                    == Some(u64::from(close_code::ATTENDEE_UNAVAILABLE))
        })
        .await;
    assert_eq!(
        field(&refusal, "reason").and_then(|r| r.as_str()),
        Some("attendee unavailable")
    );
    server
        .wait_for_line("closing Zoë's socket with 4403", |line| {
            in_meeting(line)
                && message(line) == "closing a signaling socket"
                && field(line, "code").and_then(|c| c.as_u64()) == Some(4403)
        })
        .await;
    for (what, expected) in [("joined", "attendee joined"), ("left", "attendee left")] {
        server
            .wait_for_line(&format!("José {what}"), |line| {
                in_meeting(line)
                    && message(line) == expected
                    && field(line, "attendee_id").and_then(|v| v.as_str()) == Some(jose_id.as_str())
            })
            .await;
    }
    server
        .wait_for_line("José's socket closed with 1000 after LEAVE", |line| {
            in_meeting(line)
                && message(line) == "closing a signaling socket"
                && field(line, "attendee_id").and_then(|v| v.as_str()) == Some(jose_id.as_str())
                && field(line, "code").and_then(|c| c.as_u64()) == Some(1000)
        })
        .await;

    let _ = server.child.start_kill();
    let _ = server.child.wait().await;
    let log = server.log();
    for token in [&jose_token, &zoe_token] {
        assert!(!log.contains(token.as_str()), "a JoinToken was logged");
    }
    assert!(!log.contains(SECRET_ACCESS_KEY));
}

#[tokio::test]
async fn the_turn_secret_and_minted_passwords_are_never_logged() {
    let secret = "turn-secret-never-logged-ß";
    let mut server =
        Binary::start(&["--turn-listen", "127.0.0.1:0", "--turn-secret", secret]).await;
    server
        .wait_for_line("the TURN listener's start", |line| {
            is_info(line) && message(line).starts_with("embedded TURN listener started")
        })
        .await;
    let client = sdk_client(&format!("http://127.0.0.1:{}", server.port), "us-east-1");
    let meeting = common::create_meeting(&client, "turn-logged").await;
    let meeting_id = meeting.meeting_id().expect("id").to_string();
    let signaling_url = meeting
        .media_placement()
        .and_then(|p| p.signaling_url())
        .expect("SignalingUrl")
        .to_string();
    let attendee = client
        .create_attendee()
        .meeting_id(&meeting_id)
        .external_user_id("Zoë")
        .send()
        .await
        .expect("attendee")
        .attendee
        .expect("attendee");
    let token = attendee.join_token.expect("token");
    let mut zoe = SignalClient::connect(&signaling_url, &token).await;
    let (ack, _) = zoe.join().await;
    let password = ack
        .joinack
        .and_then(|a| a.turn_credentials)
        .and_then(|c| c.password)
        .expect("a minted password");
    server
        .wait_for_line("Zoë joined", |line| message(line) == "attendee joined")
        .await;
    let _ = server.child.start_kill();
    let _ = server.child.wait().await;
    let log = server.log();
    assert!(!log.contains(secret), "the TURN secret was logged");
    assert!(!log.contains(&password), "a TURN password was logged");
    assert!(!log.contains(&token), "a JoinToken was logged");
}

#[tokio::test]
async fn without_a_turn_secret_the_embedded_listener_generates_one_and_says_so() {
    let server = Binary::start(&["--turn-listen", "127.0.0.1:0"]).await;
    server
        .wait_for_line("the generated secret's notice", |line| {
            is_info(line) && message(line).starts_with("no --turn-secret: generated a random")
        })
        .await;
}

#[test]
fn config_check_masks_the_turn_secret() {
    let secret = "coturn-static-auth-secret";
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_carillon"))
        .args([
            "config",
            "check",
            "--turn-uris",
            "turn:turn.example.com:3478",
        ])
        .env("CARILLON_TURN_SECRET", secret)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("turn_secret "))
        .unwrap_or_else(|| panic!("no turn_secret line in:\n{stdout}"));
    assert!(
        line.contains("********") && line.contains("environment"),
        "{line}"
    );
    assert!(!stdout.contains(secret) && !stderr.contains(secret));
    // URIs without a secret are refused by the check, as by serve.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_carillon"))
        .args([
            "config",
            "check",
            "--turn-uris",
            "turn:turn.example.com:3478",
        ])
        .env_remove("CARILLON_TURN_SECRET")
        .output()
        .expect("runs");
    assert!(!refused.status.success());
}
