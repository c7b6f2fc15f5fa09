//! Secrets the service hands out: JoinTokens and pagination NextTokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;

use super::digest::{constant_time_eq, hmac_sha256};

/// A JoinToken: unpadded base64url (so an RFC 7230 token, which the browser client sends as a
/// WebSocket subprotocol) of `<AttendeeId>:<256 random bits in hex>`. Like the real service's
/// tokens it decodes to the attendee it admits; unlike them it carries more than 128 random bits.
pub fn new_join_token(attendee_id: &str) -> String {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    URL_SAFE_NO_PAD.encode(format!("{attendee_id}:{}", hex::encode(secret)))
}

/// The attendee a JoinToken claims to admit. The claim is only a lookup hint: the join plane must
/// still compare the whole token with the stored one.
pub fn join_token_attendee(token: &str) -> Option<String> {
    let decoded = URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (attendee_id, _) = text.split_once(':')?;
    super::ids::is_guid(attendee_id).then(|| attendee_id.to_string())
}

/// What a NextToken continues: the operation and the collection it walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    Attendees,
    Meetings,
    /// ListMediaCapturePipelines.
    CapturePipelines,
    /// ListMediaPipelines.
    MediaPipelines,
}

impl PageKind {
    fn label(self) -> &'static str {
        match self {
            PageKind::Attendees => "attendees",
            PageKind::Meetings => "meetings",
            PageKind::CapturePipelines => "capture-pipelines",
            PageKind::MediaPipelines => "media-pipelines",
        }
    }
}

const MAC_LEN: usize = 32;

/// Signs and checks NextTokens with a server key that persists across restarts.
///
/// A token is `base64url(payload || HMAC-SHA256(key, payload))` where the payload names the
/// page kind, the collection (a meeting id, or an account for ListMeetings) and the keyset
/// cursor: the last id returned. A page therefore costs O(page size), tokens survive a restart,
/// and a token minted for one meeting or operation is useless for another.
#[derive(Clone)]
pub struct PageTokenCodec {
    key: Vec<u8>,
}

impl PageTokenCodec {
    pub fn new(key: Vec<u8>) -> Self {
        Self { key }
    }

    pub fn encode(&self, kind: PageKind, scope: &str, after: &str) -> String {
        let payload = format!("{}\n{scope}\n{after}", kind.label());
        let tag = hmac_sha256(&self.key, payload.as_bytes());
        let mut bytes = payload.into_bytes();
        bytes.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Returns the cursor if the token is genuine and was minted for this kind and scope.
    pub fn decode(&self, kind: PageKind, scope: &str, token: &str) -> Option<String> {
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        if bytes.len() <= MAC_LEN {
            return None;
        }
        let (payload, tag) = bytes.split_at(bytes.len() - MAC_LEN);
        if !constant_time_eq(&hmac_sha256(&self.key, payload), tag) {
            return None;
        }
        let text = std::str::from_utf8(payload).ok()?;
        let mut parts = text.splitn(3, '\n');
        let (label, token_scope, after) = (parts.next()?, parts.next()?, parts.next()?);
        (label == kind.label() && token_scope == scope).then(|| after.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_tokens_are_rfc7230_tokens_and_name_their_attendee() {
        let attendee = "0b6d8a6e-5f0c-4b4c-9a43-1a2b3c4d5e6f";
        let token = new_join_token(attendee);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert!(token.len() >= 2 && token.len() <= 2048);
        assert_eq!(join_token_attendee(&token).as_deref(), Some(attendee));
        assert_ne!(new_join_token(attendee), token);
        assert_eq!(join_token_attendee("!!!"), None);
    }

    #[test]
    fn page_tokens_round_trip_and_are_bound() {
        let codec = PageTokenCodec::new(b"key".to_vec());
        let token = codec.encode(PageKind::Attendees, "m1", "a5");
        assert_eq!(
            codec.decode(PageKind::Attendees, "m1", &token).as_deref(),
            Some("a5")
        );
        assert_eq!(codec.decode(PageKind::Attendees, "m2", &token), None);
        assert_eq!(codec.decode(PageKind::Meetings, "m1", &token), None);
        assert_eq!(
            PageTokenCodec::new(b"other".to_vec()).decode(PageKind::Attendees, "m1", &token),
            None
        );
    }

    #[test]
    fn tampered_or_garbage_tokens_fail() {
        let codec = PageTokenCodec::new(b"key".to_vec());
        let token = codec.encode(PageKind::Attendees, "m1", "a5");
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).expect("valid base64");
        let last = bytes.len() - 40;
        bytes[last] ^= 1;
        let forged = URL_SAFE_NO_PAD.encode(bytes);
        assert_eq!(codec.decode(PageKind::Attendees, "m1", &forged), None);
        assert_eq!(codec.decode(PageKind::Attendees, "m1", "garbage"), None);
        assert_eq!(codec.decode(PageKind::Attendees, "m1", ""), None);
    }
}
