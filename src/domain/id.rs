//! Typed identifiers, parsed once at the edge (an HTTP route, a signaling JOIN, a store row)
//! and passed inward as types, so that a meeting id cannot be handed where an attendee id is
//! wanted and nothing inside re-checks a string. A JoinToken never prints its secret.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use super::validate::{self, Violation};

/// An identifier that is text; cheap to clone (shared), compared and hashed as its text.
macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// An id already known to be well formed: minted by this server or read back from
            /// its store, which only ever holds checked ids.
            pub fn trusted(id: impl Into<Arc<str>>) -> Self {
                $name(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        /// Maps keyed by the id can be looked up with a `&str`.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }
    };
}

text_id!(
    /// A `MeetingId`: a GUID, kept lowercase (the service compares ids without case).
    MeetingId
);

impl MeetingId {
    /// Parses the `member` a caller sent: a GUID, in any case.
    pub fn parse(member: &str, value: &str) -> Result<Self, Violation> {
        validate::guid(member, value)?;
        Ok(MeetingId::trusted(super::ids::normalize(value)))
    }
}

/// One signaling session (one WebSocket and its peer connection), numbered by this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A published video stream (one simulcast layer or a content share), as signaling numbers it
/// in INDEX and SUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u32);

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A JoinToken: the secret that admits its attendee. `Debug` and `Display` never show it, so it
/// cannot leak into a log line or an error by accident; [`JoinToken::expose`] is the one way to
/// read it (to compare it with the stored one).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct JoinToken(Arc<str>);

impl JoinToken {
    pub fn new(token: impl Into<Arc<str>>) -> Self {
        JoinToken(token.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JoinToken(<redacted>)")
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn ids_parse_once_and_compare_as_their_text() {
        let id =
            MeetingId::parse("MeetingId", "A1B2C3D4-0000-1111-2222-333344445555").expect("a GUID");
        assert_eq!(id, "a1b2c3d4-0000-1111-2222-333344445555");
        assert_eq!(
            format!("{id:?}"),
            "MeetingId(\"a1b2c3d4-0000-1111-2222-333344445555\")"
        );
        let mut by_id = HashMap::new();
        by_id.insert(id.clone(), 1);
        assert_eq!(by_id.get("a1b2c3d4-0000-1111-2222-333344445555"), Some(&1));
        assert!(MeetingId::parse("MeetingId", "nope").is_err());
        assert!(MeetingId::parse("MeetingId", "José").is_err());
    }

    #[test]
    fn a_join_token_never_prints_its_secret() {
        let secret = crate::domain::tokens::new_join_token("a1b2c3d4-0000-1111-2222-333344445555");
        let token = JoinToken::new(secret.as_str());
        assert!(!format!("{token:?} {token}").contains(&secret));
        assert_eq!(token.expose(), secret);
    }
}
