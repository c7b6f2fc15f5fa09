//! Delivery of meeting events from the store's outbox to their sinks: webhooks, NATS JetStream,
//! and per-meeting routes for the ARNs a meeting's NotificationsConfiguration names.
//!
//! Each sink has a worker that reads the outbox in order from its cursor, delivers every event
//! it wants, retries a failure with backoff (holding back later events, so a meeting's events
//! arrive in order), and after `MAX_ATTEMPTS` keeps the event as a dead letter and moves on.
//! The cursor moves only after delivery, so delivery is at least once: after a crash the last
//! batch may come again (each event has a unique `id` to deduplicate on).

pub mod nats;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use crate::store::{OutboxEvent, Store};

/// Attempts at one event before it becomes a dead letter, by default (about 23 seconds of
/// backoff).
pub const DEFAULT_ATTEMPTS: u32 = 8;
/// Events read from the outbox at a time.
const BATCH: usize = 100;
/// How often an idle worker looks for new events.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Why a sink's configuration (`--webhook`, `--events`, `--notify-route`) is refused.
#[derive(Debug, thiserror::Error)]
pub enum SinkConfigError {
    #[error("'{url}' is not a URL: {error}")]
    NotAUrl {
        url: String,
        #[source]
        error: http::uri::InvalidUri,
    },
    #[error(
        "'{0}': HTTPS webhooks are not supported yet; use http:// (for example through a local TLS-terminating proxy)"
    )]
    Https(String),
    #[error("'{0}' must be an http:// webhook or a nats:// server")]
    Scheme(String),
    #[error("'{0}' must be ARN=URL")]
    NotArnEqualsUrl(String),
    #[error("'{0}' is not an ARN")]
    NotAnArn(String),
}

/// Why one attempt at delivering an event failed: logged, and kept with a dead letter.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Webhook(#[from] webhook::WebhookError),
    #[error(transparent)]
    Nats(#[from] nats::NatsError),
}

/// Where a sink sends events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An `http://` URL that gets one POST per event.
    Webhook(String),
    /// A NATS server (`nats://host:port`) whose JetStream gets one message per event on
    /// `<subject prefix>.<MeetingId>`.
    Nats(String),
}

impl Destination {
    pub fn parse(url: &str) -> Result<Self, SinkConfigError> {
        if url.starts_with("http://") {
            url.parse::<http::Uri>()
                .map_err(|error| SinkConfigError::NotAUrl {
                    url: url.to_string(),
                    error,
                })?;
            Ok(Self::Webhook(url.to_string()))
        } else if url.starts_with("nats://") {
            Ok(Self::Nats(url.to_string()))
        } else if url.starts_with("https://") {
            Err(SinkConfigError::Https(url.to_string()))
        } else {
            Err(SinkConfigError::Scheme(url.to_string()))
        }
    }
}

/// Which events a sink takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every event of every meeting.
    All,
    /// Events of meetings whose NotificationsConfiguration names this ARN.
    Target(String),
}

/// One configured sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    pub destination: Destination,
    pub selection: Selection,
}

impl SinkConfig {
    /// The name its cursor is kept under: stable for the same configuration.
    pub fn name(&self) -> String {
        let destination = match &self.destination {
            Destination::Webhook(url) => format!("webhook {url}"),
            Destination::Nats(url) => format!("nats {url}"),
        };
        match &self.selection {
            Selection::All => destination,
            Selection::Target(arn) => format!("{destination} for {arn}"),
        }
    }

    fn wants(&self, event: &OutboxEvent) -> bool {
        match &self.selection {
            Selection::All => true,
            Selection::Target(arn) => event.targets.iter().any(|t| t == arn),
        }
    }
}

/// Parses `ARN=URL` of `--notify-route`.
pub fn parse_route(route: &str) -> Result<SinkConfig, SinkConfigError> {
    let Some((arn, url)) = route.split_once('=') else {
        return Err(SinkConfigError::NotArnEqualsUrl(route.to_string()));
    };
    if !arn.starts_with("arn:") {
        return Err(SinkConfigError::NotAnArn(arn.to_string()));
    }
    Ok(SinkConfig {
        destination: Destination::parse(url)?,
        selection: Selection::Target(arn.to_string()),
    })
}

/// Settings shared by the sinks.
#[derive(Debug, Clone, Default)]
pub struct DeliverySettings {
    /// Signs webhook bodies: `X-Carillon-Signature: sha256=<hex HMAC-SHA256>`.
    pub webhook_secret: Option<String>,
    /// NATS subjects are `<prefix>.<MeetingId>`, in the JetStream stream named after the prefix
    /// (`carillon.events` → `CARILLON_EVENTS`).
    pub nats_subject_prefix: String,
    /// Attempts at one event before it becomes a dead letter.
    pub max_attempts: u32,
    /// This node's name in the sinks' leases (its public URL: unique in a cluster, and the same
    /// after a restart, so a restarted node takes its sinks back at once).
    pub node: String,
}

/// Sends one event somewhere.
#[async_trait::async_trait]
trait Deliver: Send + Sync {
    async fn deliver(&mut self, event: &OutboxEvent) -> Result<(), DeliveryError>;
}

/// Waits (at most `deadline`) until every sink has delivered the events recorded so far, so a
/// graceful stop does not leave announced changes waiting for the next start.
pub async fn flush(store: &dyn Store, sinks: &[SinkConfig], deadline: Duration) -> bool {
    if sinks.is_empty() {
        return true;
    }
    let Ok(target) = store.latest_event_seq().await else {
        return false;
    };
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let mut behind = 0;
        for sink in sinks {
            if store.sink_cursor(&sink.name()).await.unwrap_or(0) < target {
                behind += 1;
            }
        }
        if behind == 0 {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            tracing::warn!(
                sinks = behind,
                "stopping with events not yet delivered; they go out after the next start"
            );
            return false;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(7))).min(Duration::from_secs(10))
}

fn now_ms() -> i64 {
    crate::clock::Clock::now_ms(&crate::clock::SystemClock)
}

/// Starts one worker per sink; they run for as long as the process.
pub fn start(store: Arc<dyn Store>, sinks: Vec<SinkConfig>, settings: DeliverySettings) {
    for sink in sinks {
        let deliver: Box<dyn Deliver> = match &sink.destination {
            Destination::Webhook(url) => Box::new(webhook::Webhook::new(
                url.clone(),
                settings.webhook_secret.clone(),
            )),
            Destination::Nats(url) => Box::new(nats::JetStream::new(
                url.clone(),
                settings.nats_subject_prefix.clone(),
            )),
        };
        tokio::spawn(run(
            store.clone(),
            sink,
            deliver,
            settings.max_attempts.max(1),
            settings.node.clone(),
        ));
    }
}

/// How long a node's hold on a sink lasts without renewal; it renews before every batch and
/// every retry, so a node that dies hands its sinks over after this long.
const LEASE: Duration = Duration::from_secs(30);

/// This node's hold on one sink, so that with several nodes on one store each event is
/// delivered by one node.
struct Lease<'a> {
    store: &'a dyn Store,
    sink: &'a str,
    node: &'a str,
}

impl Lease<'_> {
    /// Takes or renews the lease; false when another node holds it (or the store is down).
    async fn hold(&self) -> bool {
        match self
            .store
            .lease_sink(self.sink, self.node, now_ms(), LEASE.as_millis() as i64)
            .await
        {
            Ok(held) => held,
            Err(error) => {
                tracing::warn!(sink = %self.sink, %error, "cannot renew the sink's lease");
                false
            }
        }
    }
}

async fn run(
    store: Arc<dyn Store>,
    sink: SinkConfig,
    mut deliver: Box<dyn Deliver>,
    max_attempts: u32,
    node: String,
) {
    let name = sink.name();
    let lease = Lease {
        store: &*store,
        sink: &name,
        node: &node,
    };
    tracing::info!(sink = %name, %node, "delivering meeting events");
    // The cursor is read again whenever this node (re)gains the sink: another may have moved it.
    let mut cursor: Option<i64> = None;
    loop {
        if !lease.hold().await {
            cursor = None;
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let after = match cursor {
            Some(after) => after,
            None => match store.sink_cursor(&name).await {
                Ok(after) => after,
                Err(error) => {
                    tracing::warn!(sink = %name, %error, "cannot read the sink's cursor; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        cursor = Some(after);
        let batch = match store.outbox_after(after, BATCH).await {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(sink = %name, %error, "cannot read the outbox; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let backlog = metrics::gauge!(crate::metrics::name::EVENT_BACKLOG, "sink" => name.clone());
        backlog.set(batch.len() as f64);
        let Some(last) = batch.last().map(|e| e.seq) else {
            tokio::time::sleep(POLL_INTERVAL).await;
            continue;
        };
        for event in batch.iter().filter(|e| sink.wants(e)) {
            deliver_one(&lease, deliver.as_mut(), event, max_attempts).await;
        }
        cursor = Some(last);
        if let Err(error) = store.advance_sink(&name, last).await {
            // Delivered but not recorded: this batch may be delivered again after a restart,
            // which at-least-once allows.
            tracing::warn!(sink = %name, %error, "cannot record the sink's progress");
        }
    }
}

/// Delivers one event, retrying with backoff, and dead-letters it after `max_attempts`.
async fn deliver_one(
    lease: &Lease<'_>,
    deliver: &mut dyn Deliver,
    event: &OutboxEvent,
    max_attempts: u32,
) {
    let (store, name) = (lease.store, lease.sink);
    let mut attempt = 0;
    loop {
        match deliver.deliver(event).await {
            Ok(()) => {
                metrics::counter!(crate::metrics::name::EVENTS_DELIVERED, "sink" => name.to_string())
                    .increment(1);
                metrics::histogram!(crate::metrics::name::EVENT_DELIVERY)
                    .record((now_ms() - event.recorded_at_ms).max(0) as f64 / 1000.0);
                tracing::debug!(sink = %name, seq = event.seq, latency_ms = now_ms() - event.recorded_at_ms, "event delivered");
                return;
            }
            Err(error) => {
                attempt += 1;
                if attempt >= max_attempts {
                    metrics::counter!(crate::metrics::name::EVENTS_DEAD, "sink" => name.to_string())
                        .increment(1);
                    tracing::warn!(sink = %name, seq = event.seq, %error, "event dead-lettered after {max_attempts} attempts");
                    if let Err(store_error) = store
                        .dead_letter(name, event, &error.to_string(), now_ms())
                        .await
                    {
                        tracing::error!(sink = %name, %store_error, "cannot keep the dead letter");
                    }
                    return;
                }
                tracing::info!(sink = %name, seq = event.seq, attempt, %error, "event delivery failed; retrying");
                tokio::time::sleep(backoff(attempt)).await;
                // Keep the sink while retrying; if another node took it over, it redelivers.
                if !lease.hold().await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_and_routes_parse() {
        assert_eq!(
            Destination::parse("http://127.0.0.1:9000/hook").ok(),
            Some(Destination::Webhook("http://127.0.0.1:9000/hook".into()))
        );
        assert!(
            Destination::parse("https://example.com")
                .unwrap_err()
                .to_string()
                .contains("not supported")
        );
        assert_eq!(
            Destination::parse("ftp://x").map_err(|e| e.to_string()),
            Err("'ftp://x' must be an http:// webhook or a nats:// server".to_string())
        );
        assert!(matches!(
            Destination::parse("http://a b"),
            Err(SinkConfigError::NotAUrl { .. })
        ));
        let route = parse_route("arn:aws:sqs:us-east-1:111122223333:q=nats://127.0.0.1:4222")
            .expect("route");
        assert_eq!(
            route.selection,
            Selection::Target("arn:aws:sqs:us-east-1:111122223333:q".into())
        );
        assert_eq!(
            parse_route("no-equals").map_err(|e| e.to_string()).err(),
            Some("'no-equals' must be ARN=URL".to_string())
        );
        assert_eq!(
            parse_route("queue=http://x")
                .map_err(|e| e.to_string())
                .err(),
            Some("'queue' is not an ARN".to_string())
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert!(backoff(3) > backoff(2));
        assert_eq!(backoff(30), Duration::from_secs(10));
    }
}
