//! The nodes that share one store, and which of them hosts a new meeting.
//!
//! Every node beats into the store's node registry every quarter of `--node-timeout`, with the
//! number of signaling sessions connected to it; a node that has not beaten for a whole timeout
//! is gone. Each beat also brings back the whole registry, so placement and the join plane's
//! checks read memory, not the store.
//!
//! - **Placement** (CreateMeeting): any live node, not necessarily this one, as Chime picks a
//!   media cell. Two live nodes are drawn at random and the less loaded wins (its sessions at its
//!   last beat plus the meetings this node placed on it since), which spreads a storm of creates
//!   without herding them onto the one node that looked idlest at the last beat. This node is
//!   always live to itself, so a store that cannot be reached places everything here.
//! - **Hosting** (the join plane): a meeting's sessions must all be on its host node, where its
//!   mixer and forwarder run. A join that reaches another node is relayed to a live host
//!   (`join::relay`), and takes the meeting over from a host that is gone (failover:
//!   `JoinPlane::route_join`).
//! - **Forgetting**: a node silent for longer than a meeting can last hosts nothing any more and
//!   leaves the registry. On the embedded store, which is one machine, a starting node also
//!   forgets every silent node at once: those were earlier runs of this machine, perhaps under
//!   another URL, and their meetings are joined here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rand::Rng;

use crate::store::{NodeBeat, Store};

/// What this node knows of a meeting's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// This node.
    Here,
    /// Another node that beats.
    Live(String),
    /// A node that stopped beating (or stopped on purpose).
    Gone(String),
    /// A URL the registry does not know: a meeting from before the registry, or from an earlier
    /// run of this machine under another URL.
    Unknown,
}

pub struct Cluster {
    store: Arc<dyn Store>,
    own_url: String,
    timeout_ms: i64,
    /// Silent nodes are forgotten after this long: no meeting they hosted can still exist.
    forget_after_ms: i64,
    /// Whether other machines share the store (PostgreSQL), or it is this machine's own.
    shared_store: bool,
    view: Mutex<View>,
}

#[derive(Default)]
struct View {
    nodes: Vec<NodeBeat>,
    /// Meetings this node placed on each node since the last beat: their sessions are not in
    /// that node's count yet.
    placed: HashMap<String, i64>,
}

/// How long a stopping node tries to record its stop in the registry.
const STOP_RECORD_TIMEOUT: Duration = Duration::from_secs(2);

/// Signaling sessions connected to this node, reported with each beat.
pub type LoadGauge = Box<dyn Fn() -> i64 + Send + Sync>;

fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

impl Cluster {
    pub fn new(
        store: Arc<dyn Store>,
        own_url: String,
        timeout: Duration,
        longest_meeting: Duration,
        shared_store: bool,
    ) -> Arc<Self> {
        let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Arc::new(Self {
            store,
            own_url,
            timeout_ms: millis(timeout).max(1),
            forget_after_ms: millis(longest_meeting).saturating_add(millis(timeout)),
            shared_store,
            view: Mutex::new(View::default()),
        })
    }

    pub fn own_url(&self) -> &str {
        &self.own_url
    }

    /// How long a silent node still counts as live (`--node-timeout`).
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.timeout_ms).unwrap_or(0))
    }

    /// Registers this node (a first beat, awaited, so that it is placed on from the start) and
    /// keeps beating for as long as the cluster exists.
    pub async fn start(self: &Arc<Self>, load: LoadGauge) {
        let forget_before = if self.shared_store {
            now_ms().saturating_sub(self.forget_after_ms)
        } else {
            now_ms().saturating_sub(self.timeout_ms)
        };
        self.beat(load(), forget_before).await;
        let cluster: Weak<Self> = Arc::downgrade(self);
        let period = Duration::from_millis(u64::try_from(self.timeout_ms / 4).unwrap_or(1).max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(cluster) = cluster.upgrade() else {
                    return;
                };
                let forget_before = now_ms().saturating_sub(cluster.forget_after_ms);
                cluster.beat(load(), forget_before).await;
            }
        });
    }

    async fn beat(&self, sessions: i64, forget_before_ms: i64) {
        let beat = NodeBeat {
            url: self.own_url.clone(),
            beat_at_ms: now_ms(),
            sessions,
            stopped: false,
        };
        match self.store.beat_node(&beat, forget_before_ms).await {
            Ok(nodes) => {
                let mut view = self.view.lock().unwrap_or_else(|e| e.into_inner());
                view.nodes = nodes;
                view.placed.clear();
            }
            // The registry in memory ages instead: other nodes look gone once their last beat is
            // older than the timeout, and new meetings stay here.
            Err(error) => tracing::warn!(%error, "node heartbeat failed"),
        }
    }

    /// Leaves the registry's live nodes (a graceful stop): nothing more is placed here, and
    /// joins that reach other nodes for this node's meetings are told it is gone.
    pub async fn stop(&self) {
        let stopped = NodeBeat {
            url: self.own_url.clone(),
            beat_at_ms: now_ms(),
            sessions: 0,
            stopped: true,
        };
        // Bounded: with the database unreachable, a stopping node must not wait out the pool's
        // connection timeout; the others see it gone once its beats age past the timeout.
        let recorded = tokio::time::timeout(
            STOP_RECORD_TIMEOUT,
            self.store.beat_node(&stopped, i64::MIN),
        );
        match recorded.await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not record this node's stop in the node registry")
            }
            Err(_) => tracing::warn!("the node registry did not record this node's stop in time"),
        }
    }

    fn is_live(&self, node: &NodeBeat, now: i64) -> bool {
        node.url == self.own_url
            || (!node.stopped && now.saturating_sub(node.beat_at_ms) <= self.timeout_ms)
    }

    /// The public URL of the node that should host a new meeting.
    pub fn place(&self) -> String {
        let now = now_ms();
        let mut view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        let live: Vec<(String, i64)> = view
            .nodes
            .iter()
            .filter(|node| self.is_live(node, now) && node.url != self.own_url)
            .map(|node| (node.url.clone(), node.sessions))
            .chain(std::iter::once((
                self.own_url.clone(),
                view.nodes
                    .iter()
                    .find(|node| node.url == self.own_url)
                    .map_or(0, |node| node.sessions),
            )))
            .collect();
        let load = |(url, sessions): &(String, i64)| {
            sessions.saturating_add(view.placed.get(url).copied().unwrap_or(0))
        };
        let mut rng = rand::rng();
        let first = rng.random_range(0..live.len());
        let second = rng.random_range(0..live.len());
        let chosen = match (live.get(first), live.get(second)) {
            (Some(a), Some(b)) if load(b) < load(a) => b.0.clone(),
            (Some(a), _) => a.0.clone(),
            _ => self.own_url.clone(),
        };
        *view.placed.entry(chosen.clone()).or_default() += 1;
        chosen
    }

    /// Where a meeting whose MediaPlacement names `url` is hosted, as far as this node knows.
    pub fn host(&self, url: &str) -> Host {
        if url == self.own_url {
            return Host::Here;
        }
        let now = now_ms();
        let view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        match view.nodes.iter().find(|node| node.url == url) {
            Some(node) if self.is_live(node, now) => Host::Live(url.to_string()),
            Some(_) => Host::Gone(url.to_string()),
            None => Host::Unknown,
        }
    }

    /// The nodes this node currently counts as live, this one included (the admin endpoint and
    /// tests).
    pub fn live_nodes(&self) -> Vec<String> {
        let now = now_ms();
        let view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        let mut live: Vec<String> = view
            .nodes
            .iter()
            .filter(|node| self.is_live(node, now))
            .map(|node| node.url.clone())
            .collect();
        if !live.contains(&self.own_url) {
            live.push(self.own_url.clone());
        }
        live.sort();
        live
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NodeStore;
    use crate::store::sqlite::SqliteStore;

    fn cluster(store: &Arc<SqliteStore>, url: &str) -> Arc<Cluster> {
        let store: Arc<dyn Store> = store.clone();
        Cluster::new(
            store,
            url.into(),
            Duration::from_secs(10),
            Duration::from_secs(86_400),
            true,
        )
    }

    async fn beat(store: &SqliteStore, url: &str, at: i64, sessions: i64, stopped: bool) {
        let beat = NodeBeat {
            url: url.into(),
            beat_at_ms: at,
            sessions,
            stopped,
        };
        store.beat_node(&beat, 0).await.expect("beat");
    }

    #[tokio::test]
    async fn meetings_go_to_live_nodes_only_and_spread_over_them() {
        let store = Arc::new(SqliteStore::open_in_memory().expect("store"));
        let now = now_ms();
        beat(&store, "http://b", now, 0, false).await;
        beat(&store, "http://c", now, 0, false).await;
        // d stopped beating 11 s ago (the timeout is 10 s); e stopped on purpose.
        beat(&store, "http://d", now - 11_000, 0, false).await;
        beat(&store, "http://e", now, 0, true).await;
        let a = cluster(&store, "http://a");
        a.start(Box::new(|| 0)).await;
        assert_eq!(a.live_nodes(), ["http://a", "http://b", "http://c"]);

        let mut placed: HashMap<String, usize> = HashMap::new();
        for _ in 0..300 {
            *placed.entry(a.place()).or_default() += 1;
        }
        assert_eq!(placed.len(), 3, "only live nodes: {placed:?}");
        // Counting its own placements, no node gets far more than its share.
        assert!(
            placed.values().all(|n| (80..=120).contains(n)),
            "{placed:?}"
        );

        assert_eq!(a.host("http://a"), Host::Here);
        assert_eq!(a.host("http://b"), Host::Live("http://b".into()));
        assert_eq!(a.host("http://d"), Host::Gone("http://d".into()));
        assert_eq!(a.host("http://e"), Host::Gone("http://e".into()));
        assert_eq!(a.host("http://elsewhere"), Host::Unknown);
    }

    #[tokio::test]
    async fn the_less_loaded_of_two_nodes_gets_most_meetings() {
        let store = Arc::new(SqliteStore::open_in_memory().expect("store"));
        beat(&store, "http://busy", now_ms(), 1_000, false).await;
        let a = cluster(&store, "http://a");
        a.start(Box::new(|| 0)).await;
        let on_busy = (0..100).filter(|_| a.place() == "http://busy").count();
        // Only a draw of busy twice places there, until a's own placements outweigh its load.
        assert!(on_busy < 45, "{on_busy} of 100 on the busy node");
    }

    #[tokio::test]
    async fn a_stopped_node_is_gone_to_the_others() {
        let store = Arc::new(SqliteStore::open_in_memory().expect("store"));
        let a = cluster(&store, "http://a");
        let b = cluster(&store, "http://b");
        a.start(Box::new(|| 0)).await;
        b.start(Box::new(|| 0)).await;
        b.stop().await;
        a.beat(0, 0).await;
        assert_eq!(a.host("http://b"), Host::Gone("http://b".into()));
        assert_eq!(a.live_nodes(), ["http://a"]);
    }

    #[tokio::test]
    async fn on_its_own_store_a_starting_node_forgets_earlier_runs() {
        let store = Arc::new(SqliteStore::open_in_memory().expect("store"));
        beat(&store, "http://old-name", now_ms() - 60_000, 0, false).await;
        let store_dyn: Arc<dyn Store> = store.clone();
        let a = Cluster::new(
            store_dyn,
            "http://a".into(),
            Duration::from_secs(10),
            Duration::from_secs(86_400),
            false,
        );
        a.start(Box::new(|| 0)).await;
        assert_eq!(a.host("http://old-name"), Host::Unknown);
    }
}
