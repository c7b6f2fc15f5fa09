//! NATS JetStream sink: one message per event on `<prefix>.<MeetingId>`, in the stream named
//! after the prefix (`CARILLON_EVENTS` by default, created when missing), each acknowledged by
//! JetStream before the event counts as delivered.

use async_nats::jetstream;

use super::{Deliver, DeliveryError};
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

/// Why JetStream did not take an event.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("cannot connect to {url}: {error}")]
    Connect {
        url: String,
        #[source]
        error: async_nats::ConnectError,
    },
    #[error("cannot create the stream {stream}: {error}")]
    CreateStream {
        stream: String,
        #[source]
        error: jetstream::context::CreateStreamError,
    },
    #[error("cannot publish: {0}")]
    Publish(#[source] jetstream::context::PublishError),
    #[error("JetStream did not acknowledge: {0}")]
    NotAcknowledged(#[source] jetstream::context::PublishError),
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

    async fn connect(&mut self) -> Result<jetstream::Context, NatsError> {
        if let Some(context) = &self.context {
            return Ok(context.clone());
        }
        let client = async_nats::connect(&self.url)
            .await
            .map_err(|error| NatsError::Connect {
                url: self.url.clone(),
                error,
            })?;
        let context = jetstream::new(client);
        let stream = stream_name(&self.subject_prefix);
        context
            .get_or_create_stream(jetstream::stream::Config {
                name: stream.clone(),
                subjects: vec![format!("{}.>", self.subject_prefix)],
                ..Default::default()
            })
            .await
            .map_err(|error| NatsError::CreateStream {
                stream: stream.clone(),
                error,
            })?;
        self.context = Some(context.clone());
        Ok(context)
    }
}

#[async_trait::async_trait]
impl Deliver for JetStream {
    async fn deliver(&mut self, event: &OutboxEvent) -> Result<(), DeliveryError> {
        let context = self.connect().await?;
        let subject = format!("{}.{}", self.subject_prefix, event.meeting_id);
        let ack = context
            .publish(subject, event.body.clone().into())
            .await
            .map_err(NatsError::Publish)?;
        ack.await.map_err(NatsError::NotAcknowledged)?;
        Ok(())
    }
}
