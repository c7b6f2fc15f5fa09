//! NATS JetStream sink: one message per event on `<prefix>.<MeetingId>`, in the stream named
//! after the prefix (`CARILLON_EVENTS` by default, created when missing), each acknowledged by
//! JetStream before the event counts as delivered.

use async_nats::jetstream;

use super::Deliver;
use crate::store::OutboxEvent;

/// The JetStream stream of a subject prefix: `carillon.events` → `CARILLON_EVENTS`.
pub fn stream_name(prefix: &str) -> String {
    prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

pub struct JetStream {
    url: String,
    subject_prefix: String,
    context: Option<jetstream::Context>,
}

impl JetStream {
    pub fn new(url: String, subject_prefix: String) -> Self {
        Self {
            url,
            subject_prefix,
            context: None,
        }
    }

    async fn connect(&mut self) -> Result<jetstream::Context, String> {
        if let Some(context) = &self.context {
            return Ok(context.clone());
        }
        let client = async_nats::connect(&self.url)
            .await
            .map_err(|error| format!("cannot connect to {}: {error}", self.url))?;
        let context = jetstream::new(client);
        let stream = stream_name(&self.subject_prefix);
        context
            .get_or_create_stream(jetstream::stream::Config {
                name: stream.clone(),
                subjects: vec![format!("{}.>", self.subject_prefix)],
                ..Default::default()
            })
            .await
            .map_err(|error| format!("cannot create the stream {stream}: {error}"))?;
        self.context = Some(context.clone());
        Ok(context)
    }
}

#[async_trait::async_trait]
impl Deliver for JetStream {
    async fn deliver(&mut self, event: &OutboxEvent) -> Result<(), String> {
        let context = self.connect().await?;
        let subject = format!("{}.{}", self.subject_prefix, event.meeting_id);
        let ack = context
            .publish(subject, event.body.clone().into())
            .await
            .map_err(|error| format!("cannot publish: {error}"))?;
        ack.await
            .map_err(|error| format!("JetStream did not acknowledge: {error}"))?;
        Ok(())
    }
}
