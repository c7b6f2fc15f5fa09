//! What the media plane reads from a client's SDP offer text and changes in str0m's answer text.
//!
//! str0m parses the offer for WebRTC's sake; this module reads the few things the Chime protocol
//! pairs with signaling frames (which `m=video` section is the camera, its simulcast rids, the
//! order of the receive sections), and rewrites the answer where amazon-chime-sdk-js expects
//! what str0m does not produce (media-protocol.md §0 rule 2, §1.5):
//! - every video section the server sends on carries `a=msid:v_<mid> track_<mid>`, because the
//!   client finds the attendee of a remote track by its stream id `v_<mid>`; str0m makes up a
//!   random msid for receive-only offers and has no API to set it;
//! - a receive section with nothing to receive (its stream is gone) is answered `inactive`,
//!   which makes the client drop the tile instead of showing a frozen one.

/// Which way media flows in a section, from the offerer's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

/// One `m=` section of an offer, as far as the Chime protocol cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub video: bool,
    pub mid: String,
    pub direction: Direction,
    /// A stopped transceiver whose slot the browser has not recycled yet: port 0 outside the
    /// BUNDLE group. Port 0 inside it is a live bundled section (RFC 8843 `a=bundle-only`,
    /// as Firefox offers every section after the first under `max-bundle`).
    pub stopped: bool,
    /// The rids of `a=simulcast:send`, in order (low, mid, hi for the SDK's camera).
    pub simulcast_send: Vec<String>,
    /// The `a=simulcast:send` list as written, paused layers (`~low`) included.
    pub simulcast_send_list: String,
}

impl Section {
    /// The offerer sends video here: the camera (or content) section.
    pub fn publishes(&self) -> bool {
        self.video
            && !self.stopped
            && matches!(self.direction, Direction::SendRecv | Direction::SendOnly)
    }

    /// The offerer wants to receive one remote video here.
    pub fn receives_only(&self) -> bool {
        self.video && !self.stopped && self.direction == Direction::RecvOnly
    }
}

/// The offer's sections in order. Lines the parser does not know are ignored.
pub fn sections(offer: &str) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    // Port 0 per section, and whether it says `a=bundle-only`; settled against the BUNDLE
    // group (a session-level line, but read wherever it is) once every line is read.
    let mut port_zero: Vec<bool> = Vec::new();
    let mut bundle_only: Vec<bool> = Vec::new();
    let mut bundled: Vec<&str> = Vec::new();
    for line in offer.lines().map(str::trim_end) {
        if let Some(group) = line.strip_prefix("a=group:BUNDLE") {
            bundled.extend(group.split_whitespace());
            continue;
        }
        if let Some(media) = line.strip_prefix("m=") {
            let mut fields = media.split_whitespace();
            let kind = fields.next().unwrap_or_default();
            let port = fields.next().unwrap_or_default();
            sections.push(Section {
                video: kind == "video",
                mid: String::new(),
                // RFC 3264: no direction attribute means sendrecv.
                direction: Direction::SendRecv,
                stopped: false,
                simulcast_send: Vec::new(),
                simulcast_send_list: String::new(),
            });
            port_zero.push(port == "0");
            bundle_only.push(false);
            continue;
        }
        if line == "a=bundle-only" {
            if let Some(last) = bundle_only.last_mut() {
                *last = true;
            }
            continue;
        }
        let Some(section) = sections.last_mut() else {
            continue;
        };
        if let Some(mid) = line.strip_prefix("a=mid:") {
            section.mid = mid.trim().to_string();
        } else if let Some(simulcast) = line.strip_prefix("a=simulcast:") {
            section.simulcast_send = simulcast_send_rids(simulcast);
            section.simulcast_send_list = simulcast_send_list(simulcast).to_string();
        } else {
            section.direction = match line {
                "a=sendrecv" => Direction::SendRecv,
                "a=sendonly" => Direction::SendOnly,
                "a=recvonly" => Direction::RecvOnly,
                "a=inactive" => Direction::Inactive,
                _ => continue,
            };
        }
    }
    let flags = port_zero.into_iter().zip(bundle_only);
    for (section, (port_zero, bundle_only)) in sections.iter_mut().zip(flags) {
        let live_in_bundle = bundle_only || bundled.contains(&section.mid.as_str());
        section.stopped = port_zero && !live_in_bundle;
    }
    sections
}

/// `send ~low;mid;hi [recv …]` → `~low;mid;hi`.
fn simulcast_send_list(value: &str) -> &str {
    let mut words = value.split_whitespace();
    while let Some(word) = words.next() {
        let list = words.next().unwrap_or_default();
        if word == "send" {
            return list;
        }
    }
    ""
}

/// `send low;mid;hi [recv …]` → the send rids in order. Alternatives (`a,b`) count by their
/// first choice and paused rids (`~low`) keep their place, since the client numbers layers by
/// position.
fn simulcast_send_rids(value: &str) -> Vec<String> {
    let mut words = value.split_whitespace();
    while let Some(word) = words.next() {
        let list = words.next().unwrap_or_default();
        if word == "send" {
            return list
                .split(';')
                .filter_map(|layer| layer.split(',').next())
                .map(|rid| rid.trim_start_matches('~').to_string())
                .filter(|rid| !rid.is_empty())
                .collect();
        }
    }
    Vec::new()
}

/// How to change str0m's answer for amazon-chime-sdk-js.
#[derive(Debug, Default)]
pub struct AnswerRewrite<'a> {
    /// Receive sections the server sends a stream on: msid `v_<mid> track_<mid>`.
    pub sending: &'a [&'a str],
    /// Receive sections with nothing to receive: `a=inactive`.
    pub idle: &'a [&'a str],
    /// The publishing section's mid and its offer's `a=simulcast:send` list: the answer's
    /// `a=simulcast:recv` must follow the current offer, since str0m keeps the layers paused
    /// (`~`) in the first offer for the section's lifetime, and Chrome then pauses encodings
    /// that the SDK's uplink policy has since turned on.
    pub simulcast: Option<(&'a str, &'a str)>,
}

/// Rewrites str0m's answer as `rewrite` says; everything else is left byte for byte.
pub fn rewrite_answer(answer: &str, rewrite: &AnswerRewrite) -> String {
    let AnswerRewrite {
        sending,
        idle,
        simulcast,
    } = rewrite;
    let mut out = String::with_capacity(answer.len() + 64 * sending.len());
    let mut section_lines: Vec<&str> = Vec::new();
    let flush = |lines: &mut Vec<&str>, out: &mut String| {
        let mid = lines
            .iter()
            .find_map(|l| l.trim_end().strip_prefix("a=mid:"))
            .map(str::trim);
        let video = lines.first().is_some_and(|l| l.starts_with("m=video"));
        let send = video && mid.is_some_and(|m| sending.contains(&m));
        let inactive = video && mid.is_some_and(|m| idle.contains(&m));
        let layers = simulcast
            .filter(|(layers_mid, list)| video && mid == Some(*layers_mid) && !list.is_empty())
            .map(|(_, list)| list);
        for line in lines.drain(..) {
            let (body, ending) = split_ending(line);
            if send && let Some(rewritten) = rewrite_msid(body, mid.unwrap_or_default()) {
                out.push_str(&rewritten);
            } else if let Some(list) = layers
                && body.starts_with("a=simulcast:")
            {
                out.push_str("a=simulcast:recv ");
                out.push_str(list);
            } else if inactive
                && matches!(
                    body,
                    "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive"
                )
            {
                out.push_str("a=inactive");
            } else {
                out.push_str(body);
            }
            out.push_str(ending);
        }
    };
    for line in answer.split_inclusive('\n') {
        if line.starts_with("m=") {
            flush(&mut section_lines, &mut out);
        }
        section_lines.push(line);
    }
    flush(&mut section_lines, &mut out);
    out
}

fn split_ending(line: &str) -> (&str, &str) {
    let body = line.trim_end_matches(['\r', '\n']);
    // The ending is ASCII, so the split falls on a character boundary.
    (body, line.get(body.len()..).unwrap_or_default())
}

/// `a=msid:X Y` → `a=msid:v_<mid> track_<mid>`; `a=ssrc:N msid:X Y` → `a=ssrc:N msid:v_<mid>
/// track_<mid>`; anything else → None.
fn rewrite_msid(line: &str, mid: &str) -> Option<String> {
    let label = format!("v_{mid} track_{mid}");
    if line.starts_with("a=msid:") {
        return Some(format!("a=msid:{label}"));
    }
    let ssrc = line.strip_prefix("a=ssrc:")?;
    let (number, attribute) = ssrc.split_once(' ')?;
    attribute
        .starts_with("msid:")
        .then(|| format!("a=ssrc:{number} msid:{label}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAMERA_OFFER: &str =
        include_str!("../../tests/fixtures/sdp/chrome156-offer-camera-plus-recvonly.sdp");
    const SIMULCAST_OFFER: &str =
        include_str!("../../tests/fixtures/sdp/chrome156-offer-simulcast.sdp");
    const STR0M_ANSWER: &str = include_str!("../../tests/fixtures/sdp/str0m025-answer-vp8h264.sdp");

    #[test]
    fn the_camera_is_the_first_video_section_that_sends() {
        let sections = sections(CAMERA_OFFER);
        let summary: Vec<_> = sections
            .iter()
            .map(|s| (s.video, s.mid.as_str(), s.direction))
            .collect();
        assert_eq!(
            summary,
            [
                (false, "0", Direction::SendRecv),
                (true, "1", Direction::SendRecv),
                (true, "2", Direction::RecvOnly),
            ]
        );
        assert!(sections[1].publishes() && !sections[2].publishes());
        assert!(sections[2].receives_only() && sections[1].simulcast_send.is_empty());
    }

    #[test]
    fn simulcast_layers_come_in_the_order_of_the_offer() {
        let sections = sections(SIMULCAST_OFFER);
        assert_eq!(sections[1].simulcast_send, ["low", "mid", "hi"]);
        assert_eq!(simulcast_send_rids("recv a send ~h,x;m"), ["h", "m"]);
        assert!(simulcast_send_rids("recv a;b").is_empty());
    }

    #[test]
    fn the_simulcast_answer_follows_the_current_offer_not_the_first() {
        let answer = include_str!("../../tests/fixtures/sdp/str0m025-answer-simulcast.sdp");
        assert!(answer.contains("a=simulcast:recv low;mid;hi\r\n"));
        let rewritten = rewrite_answer(
            answer,
            &AnswerRewrite {
                simulcast: Some(("1", "low;~mid;hi")),
                ..AnswerRewrite::default()
            },
        );
        assert!(rewritten.contains("a=simulcast:recv low;~mid;hi\r\n"));
        assert!(!rewritten.contains("a=simulcast:recv low;mid;hi"));
        assert_eq!(
            simulcast_send_list("send ~low;mid;hi recv x"),
            "~low;mid;hi"
        );
    }

    #[test]
    fn a_stopped_section_neither_sends_nor_receives() {
        let offer = "v=0\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
                     m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:3\r\na=recvonly\r\n";
        let parsed = sections(offer);
        assert!(parsed[1].stopped && !parsed[1].receives_only() && !parsed[1].publishes());
    }

    /// Firefox offers every section after the first as `m=video 0 … a=bundle-only` under the
    /// SDK's `max-bundle` (RFC 8843): live sections, not stopped ones.
    #[test]
    fn firefox_bundle_only_sections_are_live() {
        let camera = sections(include_str!(
            "../../tests/fixtures/sdp/firefox153-offer-camera.sdp"
        ));
        assert_eq!(camera.len(), 2);
        assert!(!camera[1].stopped && camera[1].publishes(), "{camera:?}");
        assert_eq!(camera[1].mid, "1");

        let viewer = sections(include_str!(
            "../../tests/fixtures/sdp/firefox153-offer-receive-two.sdp"
        ));
        let receiving: Vec<&str> = viewer
            .iter()
            .filter(|s| s.receives_only())
            .map(|s| s.mid.as_str())
            .collect();
        assert_eq!(receiving, ["2", "3"]);
        assert!(viewer.iter().all(|s| !s.stopped && !s.publishes()));

        // A content-share session's offer (its own peer connection): one sending section.
        let content = sections(include_str!(
            "../../tests/fixtures/sdp/firefox153-offer-content.sdp"
        ));
        assert!(content[1].publishes());

        // A bundle-only section outside the group (a=bundle-only is what counts) is live too.
        let lone = "v=0\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\na=bundle-only\r\na=mid:4\r\n\
                    a=recvonly\r\n";
        assert!(sections(lone)[0].receives_only());
    }

    /// str0m takes Firefox's offers as they are and answers every bundled video section live.
    #[test]
    fn str0m_answers_firefox_bundled_sections_live() {
        for offer in [
            include_str!("../../tests/fixtures/sdp/firefox153-offer-camera.sdp"),
            include_str!("../../tests/fixtures/sdp/firefox153-offer-receive-two.sdp"),
        ] {
            let mut rtc = str0m::Rtc::builder()
                .set_ice_lite(true)
                .clear_codecs()
                .enable_opus(true, true)
                .enable_vp8(true)
                .build(std::time::Instant::now());
            let offer = str0m::change::SdpOffer::from_sdp_string(offer).expect("offer parses");
            let answer = rtc
                .sdp_api()
                .accept_offer(offer)
                .expect("accepted")
                .to_sdp_string();
            assert!(
                !answer.contains("m=video 0 "),
                "no section rejected:\n{answer}"
            );
        }
    }

    #[test]
    fn the_answer_names_each_sent_video_v_mid_and_keeps_the_rest() {
        let rewritten = rewrite_answer(
            STR0M_ANSWER,
            &AnswerRewrite {
                sending: &["2"],
                ..AnswerRewrite::default()
            },
        );
        assert!(rewritten.contains("a=msid:v_2 track_2\r\n"));
        assert!(rewritten.contains("a=ssrc:1467977095 msid:v_2 track_2\r\n"));
        assert!(rewritten.contains("a=ssrc:2534747205 msid:v_2 track_2\r\n"));
        assert!(!rewritten.contains("o5DhFvQPsQ5YqBVjVTbVzkU1UO3hKM u9MVa"));
        // The camera section (mid 1) and the audio keep the client's own ids.
        assert!(rewritten.contains(
            "a=msid:92bc41eb-530a-4b19-8eb1-696690d94241 7d505c28-d473-4997-8a82-22ee546b71d5\r\n"
        ));
        assert_eq!(
            rewritten.lines().count(),
            STR0M_ANSWER.lines().count(),
            "only lines are replaced, none added or lost"
        );
        // What str0m itself parses back.
        assert!(str0m::change::SdpAnswer::from_sdp_string(&rewritten).is_ok());
    }

    #[test]
    fn a_section_with_nothing_to_receive_is_answered_inactive() {
        let rewritten = rewrite_answer(
            STR0M_ANSWER,
            &AnswerRewrite {
                idle: &["2"],
                ..AnswerRewrite::default()
            },
        );
        let section_two = rewritten
            .split("m=video")
            .nth(2)
            .expect("a second video section");
        assert!(section_two.contains("a=inactive\r\n") && !section_two.contains("a=sendonly"));
        // Mid 1 keeps its direction.
        assert!(
            rewritten
                .split("m=video")
                .nth(1)
                .is_some_and(|s| s.contains("a=sendrecv"))
        );
    }
}
