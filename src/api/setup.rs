//! Building the control plane's state from the configuration and the planes it talks to.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rand::RngCore;

use super::page_cache::{PageCache, PageCacheLimits};
use super::{ApiSettings, ApiState};
use crate::auth::keys::{AccessKey, KeyRing, RateLimit};
use crate::auth::throttle::Throttle;
use crate::clock::Clock;
use crate::config::Config;
use crate::domain::tokens::PageTokenCodec;
use crate::notifications::{Selection, SinkConfig};
use crate::store::Store;

/// What the control plane works with, from the rest of the server.
pub struct ApiDeps {
    pub store: Arc<dyn Store>,
    pub keys: Vec<AccessKey>,
    pub clock: Arc<dyn Clock>,
    pub public_url: String,
    pub events: Arc<dyn crate::events::MeetingEvents>,
    pub lifecycle: Arc<crate::lifecycle::Lifecycle>,
    pub cluster: Arc<crate::cluster::Cluster>,
    /// The event sinks: the routed ones name the NotificationsConfiguration ARNs served.
    pub sinks: Vec<SinkConfig>,
    pub recorders: Arc<crate::recording::pipelines::Recorders>,
    pub transcriptions: Arc<crate::transcription::Transcriptions>,
}

impl ApiState {
    /// The control plane's state; the page-token key is generated once and kept in the store,
    /// so that NextTokens stay valid across restarts and nodes.
    pub async fn start(config: &Config, deps: ApiDeps) -> anyhow::Result<Arc<ApiState>> {
        let mut page_key = [0u8; 32];
        rand::rng().fill_bytes(&mut page_key);
        let page_key = deps
            .store
            .setting_or_insert("page_token_key", &hex::encode(page_key))
            .await?;
        let page_key = hex::decode(page_key).context("stored page token key is not hex")?;
        let default_rate = config.rate_limit.map(|rate| RateLimit {
            rate,
            burst: config.rate_burst.unwrap_or(rate).max(1.0),
        });
        let settings = settings(config, deps.public_url, &deps.sinks);
        Ok(Arc::new(ApiState {
            store: deps.store,
            keys: KeyRing::new(deps.keys),
            throttle: Throttle::new(default_rate),
            faults: Default::default(),
            inflight: tokio::sync::Semaphore::new(settings.max_inflight),
            pages: PageTokenCodec::new(page_key),
            list_cache: PageCache::new(PageCacheLimits::PAGES, crate::metrics::name::LIST_CACHE),
            attendee_cache: PageCache::new(
                PageCacheLimits::ATTENDEES,
                crate::metrics::name::ATTENDEE_CACHE,
            ),
            meeting_features: Default::default(),
            clock: deps.clock,
            settings,
            events: deps.events,
            lifecycle: deps.lifecycle,
            cluster: deps.cluster,
            recorders: deps.recorders,
            transcriptions: deps.transcriptions,
        }))
    }
}

fn settings(config: &Config, public_url: String, sinks: &[SinkConfig]) -> ApiSettings {
    ApiSettings {
        public_url,
        cluster_url: config
            .cluster_url
            .as_deref()
            .map(|url| url.trim_end_matches('/').to_string()),
        max_attendees: config.max_attendees,
        body_limit: config.max_body_bytes,
        request_timeout: Duration::from_secs(config.request_timeout),
        max_inflight: config.max_inflight as usize,
        body_read_timeout: Duration::from_secs(config.header_read_timeout),
        notification_targets: sinks
            .iter()
            .filter_map(|sink| match &sink.selection {
                Selection::Target(arn) => Some(arn.clone()),
                Selection::All => None,
            })
            .collect(),
    }
}
