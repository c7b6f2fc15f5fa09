//! Starting the join plane: signaling and media, its background tasks, and the node's part in
//! the cluster.

use std::sync::Arc;
use std::time::Duration;

use super::JoinPlane;
use crate::clock::Clock;
use crate::config::Config;
use crate::store::Store;

/// What the join plane works with, from the rest of the server.
pub struct JoinDeps {
    pub store: Arc<dyn Store>,
    pub media: super::media::Media,
    pub clock: Arc<dyn Clock>,
    pub turn: Option<Arc<crate::turn::TurnMinter>>,
    pub cluster: Arc<crate::cluster::Cluster>,
}

impl JoinPlane {
    /// The join plane with its volume indicators, video events and presence check running, this
    /// node registered in the cluster (with its session count), and the presence the store
    /// remembers for this node cleared: nobody is connected to a node that just started.
    pub async fn start(config: &Config, deps: JoinDeps) -> anyhow::Result<Arc<JoinPlane>> {
        let join = Arc::new(
            JoinPlane::new(deps.store.clone(), deps.media, deps.clock.clone())
                .with_turn(deps.turn)
                .with_cluster(deps.cluster.clone()),
        );
        let sessions_here = Arc::downgrade(&join);
        deps.cluster
            .start(Box::new(move || {
                sessions_here.upgrade().map_or(0, |join| {
                    i64::try_from(join.rooms.session_count()).unwrap_or(i64::MAX)
                })
            }))
            .await;
        join.start_video_events();
        join.start_presence_check(Duration::from_secs(
            u64::try_from(config.presence_check).unwrap_or(30),
        ));
        // On PostgreSQL the reset covers only this node's meetings; an SQLite file shared by
        // several nodes (with a bus) cannot tell them apart, so there it is left alone.
        if config.store.is_some() || config.bus.is_none() {
            deps.store.reset_presence(deps.clock.now_unix()).await?;
        }
        Ok(join)
    }
}
