//! The transactional outbox: the events every other aggregate appends in its transactions (see
//! `record_event`), read in sequence order by each sink's delivery worker from its cursor, under
//! its lease, pruned by age; and the events a sink gave up on.

use std::future::Future;

use super::{Backend, Columns, Session};
use crate::store::{DeadLetter, OutboxEvent, OutboxStore, StoreResult};

/// The steps of the outbox's logic that each backend writes in its own SQL.
pub trait OutboxRows: Session {
    /// Events after the sequence number `after`, oldest first.
    fn events_after(
        &mut self,
        after: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxEvent>, Self::Error>> + Send;

    /// The newest event's sequence number, 0 when there is none.
    fn last_seq(&mut self) -> impl Future<Output = Result<i64, Self::Error>> + Send;

    /// When the oldest event was recorded (real milliseconds), if there is one.
    fn oldest_event_at(&mut self) -> impl Future<Output = Result<Option<i64>, Self::Error>> + Send;

    /// Deletes those of the `limit` oldest events recorded before `before_ms`; how many went.
    fn delete_events(
        &mut self,
        before_ms: i64,
        limit: usize,
    ) -> impl Future<Output = Result<usize, Self::Error>> + Send;

    /// The sink's cursor, if it has one.
    fn cursor_of(
        &mut self,
        sink: &str,
    ) -> impl Future<Output = Result<Option<i64>, Self::Error>> + Send;

    /// Moves the sink's cursor up to `seq` (never back).
    fn advance_cursor(
        &mut self,
        sink: &str,
        seq: i64,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Gives the lease on the sink to its node until `now_ms + ttl_ms`, unless another node holds
    /// it then.
    fn claim_sink(&mut self, lease: &Lease)
    -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The node holding the sink's lease, if any.
    fn sink_owner(
        &mut self,
        sink: &str,
    ) -> impl Future<Output = Result<Option<String>, Self::Error>> + Send;

    /// Keeps the letter (replacing one of the same sink and sequence number).
    fn insert_dead_letter(
        &mut self,
        letter: &DeadLetter,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Every dead letter, oldest first.
    fn all_dead_letters(
        &mut self,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, Self::Error>> + Send;
}

/// LeaseSink's arguments.
pub struct Lease {
    pub sink: String,
    pub node: String,
    pub now_ms: i64,
    pub ttl_ms: i64,
}

impl Lease {
    /// Until when a lease taken now lasts.
    pub fn until(&self) -> i64 {
        self.now_ms.saturating_add(self.ttl_ms)
    }
}

/// An event from a row of (seq, meeting_id, targets, body, recorded_at_ms).
pub fn event_from(row: &dyn Columns) -> StoreResult<OutboxEvent> {
    Ok(OutboxEvent {
        seq: row.int(0)?,
        meeting_id: row.text(1)?,
        targets: serde_json::from_str(&row.text(2)?).unwrap_or_default(),
        body: row.text(3)?,
        recorded_at_ms: row.int(4)?,
    })
}

/// A dead letter from a row of (sink, seq, error, at_ms, body).
pub fn dead_letter_from(row: &dyn Columns) -> StoreResult<DeadLetter> {
    Ok(DeadLetter {
        sink: row.text(0)?,
        seq: row.int(1)?,
        error: row.text(2)?,
        at_ms: row.int(3)?,
        body: row.text(4)?,
    })
}

async fn prune_events<S: OutboxRows>(
    session: &mut S,
    before_ms: i64,
    limit: usize,
) -> Result<usize, S::Error> {
    // The oldest event first, so that a store with nothing to prune reads one row.
    let oldest = session.oldest_event_at().await?;
    if oldest.is_none_or(|recorded| recorded >= before_ms) {
        return Ok(0);
    }
    session.delete_events(before_ms, limit).await
}

async fn lease_sink<S: OutboxRows>(session: &mut S, lease: &Lease) -> Result<bool, S::Error> {
    session.claim_sink(lease).await?;
    let owner = session.sink_owner(&lease.sink).await?;
    Ok(owner.as_deref() == Some(lease.node.as_str()))
}

async fn dead_letter<S: OutboxRows>(session: &mut S, letter: &DeadLetter) -> Result<(), S::Error> {
    session.insert_dead_letter(letter).await?;
    session.advance_cursor(&letter.sink, letter.seq).await
}

#[async_trait::async_trait]
impl<B> OutboxStore for B
where
    B: Backend,
    B::Session: OutboxRows,
{
    async fn outbox_after(&self, after: i64, limit: usize) -> StoreResult<Vec<OutboxEvent>> {
        self.read((after, limit), |session, (after, limit)| {
            Box::pin(session.events_after(*after, *limit))
        })
        .await
    }

    async fn latest_event_seq(&self) -> StoreResult<i64> {
        self.read((), |session, ()| Box::pin(session.last_seq()))
            .await
    }

    async fn prune_events(&self, before_ms: i64, limit: usize) -> StoreResult<usize> {
        self.write((before_ms, limit), |session, (before_ms, limit)| {
            Box::pin(prune_events(session, *before_ms, *limit))
        })
        .await
    }

    async fn sink_cursor(&self, sink: &str) -> StoreResult<i64> {
        self.read(sink.to_owned(), |session, sink| {
            Box::pin(async move { Ok(session.cursor_of(sink).await?.unwrap_or(0)) })
        })
        .await
    }

    async fn advance_sink(&self, sink: &str, seq: i64) -> StoreResult<()> {
        self.write((sink.to_owned(), seq), |session, (sink, seq)| {
            Box::pin(session.advance_cursor(sink, *seq))
        })
        .await
    }

    async fn lease_sink(
        &self,
        sink: &str,
        node: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> StoreResult<bool> {
        let lease = Lease {
            sink: sink.to_owned(),
            node: node.to_owned(),
            now_ms,
            ttl_ms,
        };
        self.write(lease, |session, lease| Box::pin(lease_sink(session, lease)))
            .await
    }

    async fn dead_letter(
        &self,
        sink: &str,
        event: &OutboxEvent,
        error: &str,
        at_ms: i64,
    ) -> StoreResult<()> {
        let letter = DeadLetter {
            sink: sink.to_owned(),
            seq: event.seq,
            error: error.to_owned(),
            at_ms,
            body: event.body.clone(),
        };
        self.write(letter, |session, letter| {
            Box::pin(dead_letter(session, letter))
        })
        .await
    }

    async fn dead_letters(&self) -> StoreResult<Vec<DeadLetter>> {
        self.read((), |session, ()| Box::pin(session.all_dead_letters()))
            .await
    }
}
