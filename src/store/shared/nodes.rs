//! The registry of nodes sharing one store (each node's latest heartbeat), and which node hosts
//! a meeting.

use std::future::Future;

use super::presence::PresenceRows;
use super::{Backend, Columns, EventRow, Session};
use crate::domain::meeting_events;
use crate::store::{MeetingRecord, NodeBeat, NodeStore, StoreResult};

/// The steps of the node registry's logic that each backend writes in its own SQL.
pub trait NodeRows: Session {
    /// Inserts the node's entry, or replaces it.
    fn upsert_node(
        &mut self,
        beat: &NodeBeat,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Forgets every node but `keep_url` whose latest beat is older than `before_ms`.
    fn forget_nodes(
        &mut self,
        before_ms: i64,
        keep_url: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The registry, by URL.
    fn nodes(&mut self) -> impl Future<Output = Result<Vec<NodeBeat>, Self::Error>> + Send;

    /// The media URL of the meeting of this id, if it exists.
    fn host_of(
        &mut self,
        meeting_id: &str,
    ) -> impl Future<Output = Result<Option<String>, Self::Error>> + Send;

    /// Makes `to` the meeting's host if `from` still is; how many meetings changed (0 or 1).
    fn rehost(
        &mut self,
        meeting_id: &str,
        from: &str,
        to: &str,
    ) -> impl Future<Output = Result<u64, Self::Error>> + Send;
}

/// A node from a row of (url, beat_at_ms, sessions, stopped).
pub fn node_from(row: &dyn Columns) -> StoreResult<NodeBeat> {
    Ok(NodeBeat {
        url: row.text(0)?,
        beat_at_ms: row.int(1)?,
        sessions: row.int(2)?,
        stopped: row.flag(3)?,
    })
}

async fn beat_node<S: NodeRows>(
    session: &mut S,
    beat: &NodeBeat,
    forget_before_ms: i64,
) -> Result<Vec<NodeBeat>, S::Error> {
    session.upsert_node(beat).await?;
    session.forget_nodes(forget_before_ms, &beat.url).await?;
    session.nodes().await
}

/// The outbox row of `meeting` moving from the node at `from` to the node at `to`.
fn moved_event_row(meeting: &MeetingRecord, from: &str, to: &str) -> StoreResult<EventRow> {
    let at_ms = super::real_now_ms();
    Ok(EventRow {
        meeting_id: meeting.meeting_id.clone(),
        targets: super::to_json(&meeting_events::targets(meeting.notifications.as_ref()))?,
        body: meeting_events::moved_envelope(&super::meeting_facts(meeting), from, to, at_ms),
        recorded_at_ms: at_ms,
    })
}

#[async_trait::async_trait]
impl<B> NodeStore for B
where
    B: Backend,
    B::Session: NodeRows + PresenceRows,
{
    async fn beat_node(
        &self,
        beat: &NodeBeat,
        forget_before_ms: i64,
    ) -> StoreResult<Vec<NodeBeat>> {
        self.write(
            (beat.clone(), forget_before_ms),
            |session, (beat, before)| Box::pin(beat_node(session, beat, *before)),
        )
        .await
    }

    async fn move_meeting(
        &self,
        meeting_id: &str,
        from: &str,
        to: &str,
    ) -> StoreResult<Option<String>> {
        self.write(
            (meeting_id.to_owned(), from.to_owned(), to.to_owned()),
            |session, (meeting_id, from, to)| {
                Box::pin(async move {
                    // Only the winner's transaction changes the row, so the move is recorded
                    // once, with it.
                    if session.rehost(meeting_id, from, to).await? > 0
                        && let Some(meeting) = session.meeting_by_id(meeting_id).await?
                    {
                        session
                            .append_event(moved_event_row(&meeting, from, to)?)
                            .await?;
                    }
                    session.host_of(meeting_id).await
                })
            },
        )
        .await
    }

    async fn meeting_host(&self, meeting_id: &str) -> StoreResult<Option<String>> {
        self.read(meeting_id.to_owned(), |session, meeting_id| {
            Box::pin(session.host_of(meeting_id))
        })
        .await
    }
}
