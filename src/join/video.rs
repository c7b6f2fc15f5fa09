//! The video of one meeting as signaling sees it: who publishes a camera or a content share,
//! under which group and stream ids, and the INDEX frame that tells every client (rules in
//! media-protocol.md §0 and §1.4).
//!
//! Ids come from per-meeting counters that never go back, starting at 3 to stay clear of the
//! client's own local constants (1 audio, 2 video). A publisher keeps its group and streams for
//! as long as its video goes on, whatever ids its later SUBSCRIBEs echo (the first simulcast
//! SUBSCRIBE carries none); a restarted camera gets a new group, since the client reads a new
//! stream in the same group as a layer switch.

use std::collections::BTreeMap;

use super::frames::proto::{SdkStreamAllocation, SdkStreamDescriptor, SdkStreamMediaType};

/// Camera publishers a meeting allows by default (AWS: 25, up to 250 on request).
pub const MAX_VIDEO_PUBLISHERS: usize = 25;
/// Content shares at once in one meeting, as AWS allows.
pub const MAX_CONTENT_SHARES: usize = 2;
/// The first group and stream id handed out.
const FIRST_VIDEO_ID: u32 = 3;

/// The attendee id of an attendee's content-share session.
pub fn content_attendee_id(attendee_id: &str) -> String {
    format!("{attendee_id}{CONTENT_SUFFIX}")
}

/// What the SDK appends to an attendee id and JoinToken for the content-share session.
pub const CONTENT_SUFFIX: &str = "#content";

/// A content-share session's attendee id (or JoinToken) → (the attendee's own, true); any other
/// → (itself, false).
pub fn split_content(id: &str) -> (&str, bool) {
    match id.strip_suffix(CONTENT_SUFFIX) {
        Some(base) => (base, true),
        None => (id, false),
    }
}

/// Video layers one publication may have: the SDK sends one, or three with simulcast. More in a
/// SUBSCRIBE is not the SDK, and would only grow every INDEX.
pub const MAX_LAYERS: usize = 4;

/// What kinds of remote video a session may receive (its attendee's capabilities).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VideoReceive {
    pub camera: bool,
    pub content: bool,
}

impl VideoReceive {
    pub const ALL: VideoReceive = VideoReceive {
        camera: true,
        content: true,
    };
}

#[derive(Debug, Clone)]
struct Layer {
    stream_id: u32,
    track_label: String,
    max_bitrate_kbps: u32,
    framerate: u32,
}

#[derive(Debug, Clone)]
struct Publication {
    attendee_id: String,
    external_user_id: String,
    content: bool,
    group_id: u32,
    layers: Vec<Layer>,
}

impl Publication {
    /// The layers viewers may subscribe to: those the publisher's uplink policy has not turned
    /// off (a disabled simulcast layer comes with a zero bitrate).
    fn active_layers(&self) -> impl Iterator<Item = &Layer> {
        self.layers.iter().filter(|l| l.max_bitrate_kbps > 0)
    }
}

/// A camera or content share as a recorder sees it: whose it is, and the stream that carries
/// its best layer now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordableVideo {
    /// The publishing session's attendee id: `<AttendeeId>#content` for a content share.
    pub attendee_id: String,
    pub external_user_id: String,
    pub content: bool,
    pub stream_id: u32,
}

/// Why a session may not publish video: the client is told 206, "switch to view only", which
/// removes its local tile but keeps it in the meeting (509 would end its session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewOnly(pub &'static str);

#[derive(Debug)]
pub struct VideoRoom {
    /// By session; ordered so that INDEX lists sources in a stable order.
    publications: BTreeMap<u64, Publication>,
    next_id: u32,
}

impl Default for VideoRoom {
    fn default() -> Self {
        VideoRoom {
            publications: BTreeMap::new(),
            next_id: FIRST_VIDEO_ID,
        }
    }
}

impl VideoRoom {
    fn allocate(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.saturating_add(1);
        id
    }

    pub fn is_empty(&self) -> bool {
        self.publications.is_empty()
    }

    pub fn camera_publishers(&self) -> usize {
        self.publications.values().filter(|p| !p.content).count()
    }

    /// Publishes (or updates) a session's video from the video descriptors of its SUBSCRIBE.
    /// Returns the allocations to acknowledge, in descriptor order, and whether INDEX changed.
    pub fn publish(
        &mut self,
        session: u64,
        attendee_id: &str,
        external_user_id: &str,
        content: bool,
        descriptors: &[&SdkStreamDescriptor],
        max_publishers: usize,
    ) -> Result<(Vec<SdkStreamAllocation>, bool), ViewOnly> {
        if !self.publications.contains_key(&session)
            && !content
            && self.camera_publishers() >= max_publishers
        {
            return Err(ViewOnly(
                "the meeting has as many video publishers as it allows",
            ));
        }
        let mut publication = match self.publications.remove(&session) {
            Some(existing) => existing,
            None => Publication {
                attendee_id: attendee_id.to_string(),
                external_user_id: external_user_id.to_string(),
                content,
                group_id: self.allocate(),
                layers: Vec::new(),
            },
        };
        let before: Vec<(u32, u32, u32)> = publication
            .layers
            .iter()
            .map(|l| (l.stream_id, l.max_bitrate_kbps, l.framerate))
            .collect();
        // Layers are matched by position: descriptor i is the i-th simulcast rid of the offer.
        let descriptors = descriptors.get(..MAX_LAYERS).unwrap_or(descriptors);
        publication.layers.truncate(descriptors.len());
        for (index, descriptor) in descriptors.iter().enumerate() {
            let stream_id = match publication.layers.get(index) {
                Some(layer) => layer.stream_id,
                None => self.allocate(),
            };
            let layer = Layer {
                stream_id,
                track_label: descriptor.track_label.clone().unwrap_or_default(),
                max_bitrate_kbps: descriptor.max_bitrate_kbps.unwrap_or(0),
                framerate: descriptor.framerate.unwrap_or(0),
            };
            match publication.layers.get_mut(index) {
                Some(existing) => *existing = layer,
                None => publication.layers.push(layer),
            }
        }
        let after: Vec<(u32, u32, u32)> = publication
            .layers
            .iter()
            .map(|l| (l.stream_id, l.max_bitrate_kbps, l.framerate))
            .collect();
        let allocations = publication
            .layers
            .iter()
            .map(|layer| SdkStreamAllocation {
                track_label: Some(layer.track_label.clone()),
                stream_id: Some(layer.stream_id),
                group_id: Some(publication.group_id),
            })
            .collect();
        self.publications.insert(session, publication);
        Ok((allocations, before != after))
    }

    /// Stops a session's video; true when it had any (INDEX changed).
    pub fn unpublish(&mut self, session: u64) -> bool {
        self.publications.remove(&session).is_some()
    }

    /// Whether a session may receive `stream` now: an active layer of a current publisher, of a
    /// kind the session may receive.
    pub fn receivable(&self, stream: u32, receive: VideoReceive) -> bool {
        self.publications.values().any(|p| {
            (if p.content {
                receive.content
            } else {
                receive.camera
            }) && p.layers.iter().any(|l| l.stream_id == stream)
        })
    }

    /// The INDEX sources a session may see: every active layer of every publication of a kind
    /// it may receive (its own included: the client filters itself out).
    pub fn sources(&self, receive: VideoReceive) -> Vec<SdkStreamDescriptor> {
        self.publications
            .values()
            .filter(|p| {
                if p.content {
                    receive.content
                } else {
                    receive.camera
                }
            })
            .flat_map(|p| {
                p.active_layers().map(move |layer| SdkStreamDescriptor {
                    stream_id: Some(layer.stream_id),
                    framerate: Some(layer.framerate),
                    max_bitrate_kbps: Some(layer.max_bitrate_kbps),
                    track_label: Some(layer.track_label.clone()),
                    group_id: Some(p.group_id),
                    attendee_id: Some(p.attendee_id.clone()),
                    // Left out, protobufjs reads AUDIO and every video selector skips the source.
                    media_type: Some(SdkStreamMediaType::Video as i32),
                    external_user_id: Some(p.external_user_id.clone()),
                    ..Default::default()
                })
            })
            .collect()
    }

    /// Each publication's best active layer (the highest bitrate), as a recorder keeps it.
    pub fn recordable(&self) -> Vec<RecordableVideo> {
        self.publications
            .values()
            .filter_map(|p| {
                let best = p.active_layers().max_by_key(|l| l.max_bitrate_kbps)?;
                Some(RecordableVideo {
                    attendee_id: p.attendee_id.clone(),
                    external_user_id: p.external_user_id.clone(),
                    content: p.content,
                    stream_id: best.stream_id,
                })
            })
            .collect()
    }

    pub fn publishes(&self, session: u64) -> bool {
        self.publications.contains_key(&session)
    }

    /// Every stream id currently published (for tests and the admin page).
    pub fn streams(&self) -> Vec<u32> {
        self.publications
            .values()
            .flat_map(|p| p.layers.iter().map(|l| l.stream_id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn camera(label: &str, kbps: u32) -> SdkStreamDescriptor {
        SdkStreamDescriptor {
            stream_id: Some(2),
            group_id: Some(2),
            track_label: Some(label.into()),
            max_bitrate_kbps: Some(kbps),
            framerate: Some(15),
            media_type: Some(SdkStreamMediaType::Video as i32),
            ..Default::default()
        }
    }

    #[test]
    fn a_camera_gets_ids_that_stay_while_it_goes_on_and_change_when_it_restarts() {
        let mut room = VideoRoom::default();
        let label = "AmazonChimeExpressVideo";
        let (first, changed) = room
            .publish(1, "a", "José", false, &[&camera(label, 1400)], 25)
            .expect("publishes");
        assert!(changed);
        assert_eq!(
            first[0].group_id,
            Some(3),
            "clear of the client's constants"
        );
        assert_eq!(first[0].stream_id, Some(4));
        assert_eq!(first[0].track_label.as_deref(), Some(label));
        let (again, changed) = room
            .publish(1, "a", "José", false, &[&camera(label, 1400)], 25)
            .expect("publishes");
        assert_eq!((again, changed), (first.clone(), false), "a renegotiation");
        assert!(room.unpublish(1));
        let (restarted, _) = room
            .publish(1, "a", "José", false, &[&camera(label, 1400)], 25)
            .expect("publishes");
        assert_ne!(restarted[0].group_id, first[0].group_id);
        assert_ne!(restarted[0].stream_id, first[0].stream_id);
    }

    #[test]
    fn index_sources_are_video_with_attendee_and_only_active_layers() {
        let mut room = VideoRoom::default();
        let layers = [camera("", 200), camera("", 0), camera("", 1100)];
        let refs: Vec<_> = layers.iter().collect();
        let (allocations, _) = room
            .publish(1, "a", "Zoë", false, &refs, 25)
            .expect("publishes");
        assert_eq!(allocations.len(), 3, "one per descriptor, in order");
        let group = allocations[0].group_id;
        assert!(allocations.iter().all(|a| a.group_id == group));
        let sources = room.sources(VideoReceive::ALL);
        assert_eq!(
            sources.len(),
            2,
            "the disabled middle layer is not advertised"
        );
        for source in &sources {
            assert_eq!(source.media_type, Some(SdkStreamMediaType::Video as i32));
            assert_eq!(source.attendee_id.as_deref(), Some("a"));
            assert_eq!(source.external_user_id.as_deref(), Some("Zoë"));
            assert_eq!(source.group_id, group);
        }
        // A content share is seen only by sessions that may receive content.
        room.publish(2, "b#content", "«Ana»", true, &[&camera("", 1200)], 25)
            .expect("shares");
        let no_content = VideoReceive {
            camera: true,
            content: false,
        };
        assert_eq!(room.sources(no_content).len(), 2);
        assert_eq!(room.sources(VideoReceive::ALL).len(), 3);
        let content_stream = allocations_stream(&room, "b#content");
        assert!(!room.receivable(content_stream, no_content));
        assert!(room.receivable(content_stream, VideoReceive::ALL));
    }

    #[test]
    fn a_publication_has_at_most_max_layers() {
        let mut room = VideoRoom::default();
        let many: Vec<_> = (0..50).map(|_| camera("", 100)).collect();
        let refs: Vec<_> = many.iter().collect();
        let (allocations, _) = room
            .publish(1, "a", "José", false, &refs, 25)
            .expect("publishes");
        assert_eq!(allocations.len(), MAX_LAYERS);
        assert_eq!(room.sources(VideoReceive::ALL).len(), MAX_LAYERS);
        assert_eq!(split_content("a#content"), ("a", true));
        assert_eq!(split_content("José"), ("José", false));
    }

    fn allocations_stream(room: &VideoRoom, attendee: &str) -> u32 {
        room.sources(VideoReceive::ALL)
            .into_iter()
            .find(|s| s.attendee_id.as_deref() == Some(attendee))
            .and_then(|s| s.stream_id)
            .expect("a source")
    }

    #[test]
    fn past_the_publisher_cap_a_camera_is_view_only_but_content_is_not_counted() {
        let mut room = VideoRoom::default();
        room.publish(1, "a", "a", false, &[&camera("", 1)], 1)
            .expect("first");
        assert!(
            room.publish(2, "b", "b", false, &[&camera("", 1)], 1)
                .is_err()
        );
        assert!(
            room.publish(1, "a", "a", false, &[&camera("", 1)], 1)
                .is_ok(),
            "a publisher already in keeps going"
        );
        assert!(
            room.publish(3, "a#content", "a", true, &[&camera("", 1)], 1)
                .is_ok()
        );
        assert_eq!(room.camera_publishers(), 1);
    }
}
