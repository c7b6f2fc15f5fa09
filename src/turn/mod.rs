//! TURN, an operator's choice and off by default. When it is on, every JOIN_ACK carries
//! `turn_credentials`, and amazon-chime-sdk-js then sends all its media through TURN (relay
//! only: `iceTransportPolicy: 'relay'`), so clients behind firewalls that block UDP to the
//! media socket can still connect through a TURN server they reach.
//!
//! Credentials follow the TURN REST scheme (draft-uberti-behave-turn-rest), which coturn checks
//! with `use-auth-secret` / `static-auth-secret`: username `<unix expiry>:<AttendeeId>`,
//! password `base64(HMAC-SHA1(secret, username))`. The embedded listener ([`listener`]) checks
//! the same, and also that the attendee still exists (not deleted, its meeting not ended).

pub mod listener;
pub mod setup;
pub mod stream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use hmac::{Hmac, Mac};

use crate::join::frames::proto::SdkTurnCredentials;

/// How long minted credentials live unless `--turn-ttl` says otherwise: a day, like a meeting.
pub const DEFAULT_TTL_SECONDS: u32 = 86_400;

/// The REST username: `<unix expiry>:<AttendeeId>`.
pub fn rest_username(expires_unix: i64, attendee_id: &str) -> String {
    format!("{expires_unix}:{attendee_id}")
}

/// The REST password: `base64(HMAC-SHA1(secret, username))`.
pub fn rest_password(secret: &str, username: &str) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A REST username taken apart: its expiry and attendee id.
pub fn parse_username(username: &str) -> Option<(i64, &str)> {
    let (expiry, attendee_id) = username.split_once(':')?;
    let expiry = expiry.parse().ok()?;
    (!attendee_id.is_empty()).then_some((expiry, attendee_id))
}

/// Which JoinToken each attendee with minted credentials joined with, so that the embedded
/// listener can ask the store whether the attendee still exists. Kept until the credentials
/// expire; pruned as new ones are minted.
#[derive(Default)]
pub struct Grants {
    inner: Mutex<GrantMap>,
}

#[derive(Default)]
struct GrantMap {
    grants: HashMap<String, Grant>,
    /// Entries at the last prune: the next one comes when the map has doubled since.
    pruned_at: usize,
}

struct Grant {
    join_token: String,
    expires_unix: i64,
}

impl Grants {
    fn with<T>(&self, f: impl FnOnce(&mut GrantMap) -> T) -> T {
        let mut map = match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut map)
    }

    pub fn grant(&self, attendee_id: &str, join_token: &str, expires_unix: i64, now_unix: i64) {
        self.with(|map| {
            if map.grants.len() >= map.pruned_at.saturating_mul(2).max(1024) {
                map.grants.retain(|_, grant| grant.expires_unix > now_unix);
                map.pruned_at = map.grants.len();
            }
            let grant = map
                .grants
                .entry(attendee_id.to_string())
                .or_insert_with(|| Grant {
                    join_token: String::new(),
                    expires_unix,
                });
            grant.join_token = join_token.to_string();
            grant.expires_unix = grant.expires_unix.max(expires_unix);
        })
    }

    /// The JoinToken the attendee's unexpired credentials were minted for.
    pub fn join_token(&self, attendee_id: &str, now_unix: i64) -> Option<String> {
        self.with(|map| {
            map.grants
                .get(attendee_id)
                .filter(|grant| grant.expires_unix > now_unix)
                .map(|grant| grant.join_token.clone())
        })
    }

    pub fn len(&self) -> usize {
        self.with(|map| map.grants.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Mints the `turn_credentials` of each JOIN_ACK.
pub struct TurnMinter {
    uris: Vec<String>,
    secret: String,
    ttl_seconds: u32,
    /// Set when the embedded listener runs, which checks attendees against them.
    grants: Option<Arc<Grants>>,
}

impl std::fmt::Debug for TurnMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("TurnMinter")
            .field("uris", &self.uris)
            .field("ttl_seconds", &self.ttl_seconds)
            .finish_non_exhaustive()
    }
}

impl TurnMinter {
    pub fn new(
        uris: Vec<String>,
        secret: String,
        ttl_seconds: u32,
        grants: Option<Arc<Grants>>,
    ) -> Self {
        Self {
            uris,
            secret,
            ttl_seconds,
            grants,
        }
    }

    pub fn uris(&self) -> &[String] {
        &self.uris
    }

    /// Credentials for one attendee, valid for the TTL from `now_unix`.
    pub fn mint(&self, attendee_id: &str, join_token: &str, now_unix: i64) -> SdkTurnCredentials {
        let expires = now_unix.saturating_add(i64::from(self.ttl_seconds));
        let username = rest_username(expires, attendee_id);
        if let Some(grants) = &self.grants {
            grants.grant(attendee_id, join_token, expires, now_unix);
        }
        SdkTurnCredentials {
            password: Some(rest_password(&self.secret, &username)),
            username: Some(username),
            ttl: Some(self.ttl_seconds),
            uris: self.uris.clone(),
        }
    }
}

/// Why a `--turn-uris` entry is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TurnUriError {
    #[error("'{0}' is not a turn: or turns: URI")]
    Scheme(String),
    #[error("'{0}' names no host")]
    NoHost(String),
}

/// Checks `--turn-uris` entries: `turn:` or `turns:` URIs (RFC 7065), as the SDK hands them to
/// `RTCPeerConnection`, which refuses anything else.
pub fn check_uri(uri: &str) -> Result<(), TurnUriError> {
    let rest = uri
        .strip_prefix("turn:")
        .or_else(|| uri.strip_prefix("turns:"))
        .ok_or_else(|| TurnUriError::Scheme(uri.to_string()))?;
    if rest.is_empty() || rest.starts_with('?') || rest.contains(char::is_whitespace) {
        return Err(TurnUriError::NoHost(uri.to_string()));
    }
    Ok(())
}

/// A random secret for the embedded listener when none is configured.
pub fn random_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_the_rest_hmac() {
        // RFC 2202 test case 2 for HMAC-SHA1: key "Jefe", "what do ya want for nothing?".
        assert_eq!(
            rest_password("Jefe", "what do ya want for nothing?"),
            base64::engine::general_purpose::STANDARD
                .encode(hex::decode("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79").expect("hex"))
        );
    }

    #[test]
    fn minted_credentials_name_the_attendee_and_expire_after_the_ttl() {
        let grants = Arc::new(Grants::default());
        let minter = TurnMinter::new(
            vec!["turn:127.0.0.1:3478?transport=udp".into()],
            "s3cret".into(),
            600,
            Some(grants.clone()),
        );
        let credentials = minter.mint("attendee-1", "token-1", 1_000);
        assert_eq!(credentials.username.as_deref(), Some("1600:attendee-1"));
        assert_eq!(
            credentials.password,
            Some(rest_password("s3cret", "1600:attendee-1"))
        );
        assert_eq!(credentials.ttl, Some(600));
        assert_eq!(
            parse_username("1600:attendee-1"),
            Some((1600, "attendee-1"))
        );
        assert_eq!(parse_username("soon:attendee-1"), None);
        assert_eq!(parse_username("1600:"), None);
        assert_eq!(
            grants.join_token("attendee-1", 1_599).as_deref(),
            Some("token-1")
        );
        assert_eq!(grants.join_token("attendee-1", 1_600), None, "expired");
        assert!(!format!("{minter:?}").contains("s3cret"));
    }

    #[test]
    fn grants_are_pruned_as_they_expire() {
        let grants = Grants::default();
        for i in 0..1024 {
            grants.grant(&format!("a{i}"), "t", 10, 0);
        }
        grants.grant("late", "t", 100, 50);
        assert_eq!(grants.len(), 1, "the expired ones went");
    }

    #[test]
    fn uris_are_checked() {
        assert!(check_uri("turn:turn.example.com:3478?transport=udp").is_ok());
        assert!(check_uri("turns:turn.example.com:443?transport=tcp").is_ok());
        assert_eq!(
            check_uri("stun:turn.example.com").map_err(|e| e.to_string()),
            Err("'stun:turn.example.com' is not a turn: or turns: URI".to_string())
        );
        assert_eq!(
            check_uri("turn:"),
            Err(TurnUriError::NoHost("turn:".to_string()))
        );
    }
}
