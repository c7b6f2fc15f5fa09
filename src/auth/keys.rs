//! Access keys, the accounts they belong to, what each may do and how fast.
//!
//! The root key (generated into the data directory, or given by `CARILLON_ACCESS_KEY_ID`) may do
//! everything in its account. More keys come from a TOML keys file (`--keys-file`):
//!
//! ```toml
//! [[key]]
//! access_key_id = "AKIAEXAMPLEALICE0001"
//! secret_access_key = "alice-secret"
//! account_id = "111111111111"
//! actions = ["chime:*"]        # or e.g. ["chime:ListAttendees", "chime:GetAttendee"]
//! rate = 50                    # optional: requests per second for this key
//! burst = 100                  # optional
//! ```
//!
//! The file is read at start and again on SIGHUP; a file that does not parse keeps the keys
//! that were loaded before.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde::Deserialize;

use crate::api::operation::Operation;

/// The action every Carillon extension under `/_carillon/` needs.
pub const ADMIN_ACTION: &str = "carillon:Admin";

/// Why an action pattern of a keys file is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("an action must not be empty")]
    Empty,
    /// The pattern matches none of [`known_actions`].
    #[error(
        "'{0}' matches no action of this server (examples: chime:*, chime:CreateMeeting, {ADMIN_ACTION})",
        ADMIN_ACTION = ADMIN_ACTION
    )]
    MatchesNothing(String),
}

/// Why a key's `actions` are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermissionsError {
    #[error("actions must list at least one action")]
    NoActions,
    #[error(transparent)]
    Pattern(#[from] PatternError),
}

/// Why a keys file is refused: its TOML, or the first key that breaks a rule.
#[derive(Debug, thiserror::Error)]
pub enum KeysFileError {
    /// Not TOML, or not of the keys file's shape (an unknown field, a missing one).
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    #[error("access_key_id '{0}' must be 16 to 128 characters of A-Z and 0-9")]
    AccessKeyId(String),
    #[error("the secret of {0} must be at least 8 characters long")]
    ShortSecret(String),
    #[error("the account_id of {0} must be 12 digits")]
    AccountId(String),
    #[error("actions of {id}: {error}")]
    Actions {
        id: String,
        #[source]
        error: PermissionsError,
    },
    #[error("the rate of {0} must be above 0 and its burst at least 1")]
    Rate(String),
    #[error("{0} sets a burst without a rate")]
    BurstWithoutRate(String),
    #[error("access_key_id {0} appears more than once")]
    Duplicate(String),
}

/// An IAM-style action pattern: `service:Action`, where `*` matches any run of characters and
/// `?` any one character, compared without regard to case (as IAM does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionPattern(String);

impl ActionPattern {
    /// Parses a pattern, refusing names that cannot match any action this server has, so a typo
    /// in the keys file is an error at load time instead of a silent 403 later.
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let known = known_actions();
        let pattern = pattern.trim();
        if pattern.is_empty() {
            return Err(PatternError::Empty);
        }
        let candidate = Self(pattern.to_string());
        if !known.iter().any(|action| candidate.matches(action)) {
            return Err(PatternError::MatchesNothing(pattern.to_string()));
        }
        Ok(candidate)
    }

    pub fn matches(&self, action: &str) -> bool {
        let pattern: Vec<char> = self.0.to_lowercase().chars().collect();
        let action: Vec<char> = action.to_lowercase().chars().collect();
        glob(&pattern, &action)
    }
}

/// `*` and `?` wildcard matching, iterative so that no pattern can recurse deeply.
fn glob(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || Some(&c) == text.get(t) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

/// Every action name this server checks: `chime:<Operation>` for each API operation, and the
/// admin extension.
pub fn known_actions() -> Vec<String> {
    Operation::ALL
        .iter()
        .map(|operation| operation.action())
        .chain(std::iter::once(ADMIN_ACTION.to_string()))
        .collect()
}

/// What a key may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permissions(Vec<ActionPattern>);

impl Permissions {
    /// Every action, the admin extension included: the root key's permissions.
    pub fn all() -> Self {
        Self(vec![ActionPattern("*".into())])
    }

    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, PermissionsError> {
        if patterns.is_empty() {
            return Err(PermissionsError::NoActions);
        }
        let patterns = patterns
            .iter()
            .map(|p| ActionPattern::parse(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(patterns))
    }

    pub fn allows(&self, action: &str) -> bool {
        self.0.iter().any(|pattern| pattern.matches(action))
    }
}

/// Requests per second and burst of a key's token bucket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub rate: f64,
    pub burst: f64,
}

/// The credentials of one access key and what it may do.
#[derive(Clone, Debug, PartialEq)]
pub struct AccessKey {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub account_id: String,
    pub permissions: Permissions,
    /// This key's own rate; `None` uses the server's default (`--rate-limit`).
    pub rate_limit: Option<RateLimit>,
}

impl AccessKey {
    /// A key that may do everything in its account: the root key.
    pub fn root(access_key_id: String, secret_access_key: String, account_id: String) -> Self {
        Self {
            access_key_id,
            secret_access_key,
            account_id,
            permissions: Permissions::all(),
            rate_limit: None,
        }
    }
}

/// One `[[key]]` table of the keys file, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    access_key_id: String,
    secret_access_key: String,
    account_id: String,
    actions: Vec<String>,
    rate: Option<f64>,
    burst: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    key: Vec<KeyEntry>,
}

pub fn is_account_id(value: &str) -> bool {
    value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit())
}

/// Access key ids as AWS shapes them: 16 to 128 characters of `[A-Z0-9]`.
pub fn is_access_key_id(value: &str) -> bool {
    (16..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

fn entry_to_key(entry: KeyEntry) -> Result<AccessKey, KeysFileError> {
    let id = &entry.access_key_id;
    if !is_access_key_id(id) {
        return Err(KeysFileError::AccessKeyId(id.clone()));
    }
    if entry.secret_access_key.chars().count() < 8 {
        return Err(KeysFileError::ShortSecret(id.clone()));
    }
    if !is_account_id(&entry.account_id) {
        return Err(KeysFileError::AccountId(id.clone()));
    }
    let permissions =
        Permissions::parse(&entry.actions).map_err(|error| KeysFileError::Actions {
            id: id.clone(),
            error,
        })?;
    let rate_limit = match (entry.rate, entry.burst) {
        (None, None) => None,
        (Some(rate), burst) => {
            let burst = burst.unwrap_or(rate.max(1.0));
            if !(rate.is_finite() && rate > 0.0 && burst.is_finite() && burst >= 1.0) {
                return Err(KeysFileError::Rate(id.clone()));
            }
            Some(RateLimit { rate, burst })
        }
        (None, Some(_)) => return Err(KeysFileError::BurstWithoutRate(id.clone())),
    };
    Ok(AccessKey {
        access_key_id: entry.access_key_id,
        secret_access_key: entry.secret_access_key,
        account_id: entry.account_id,
        permissions,
        rate_limit,
    })
}

/// Parses a keys file's text. Every key is checked; the first problem is the error.
pub fn parse_keys_file(text: &str) -> Result<Vec<AccessKey>, KeysFileError> {
    let file: KeysFile = toml::from_str(text)?;
    let keys = file
        .key
        .into_iter()
        .map(entry_to_key)
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = std::collections::HashSet::new();
    for key in &keys {
        if !seen.insert(key.access_key_id.as_str()) {
            return Err(KeysFileError::Duplicate(key.access_key_id.clone()));
        }
    }
    Ok(keys)
}

pub fn load_keys_file(path: &Path) -> anyhow::Result<Vec<AccessKey>> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| anyhow::anyhow!("reading the keys file {}: {error}", path.display()))?;
    parse_keys_file(&text)
        .map_err(|error| anyhow::anyhow!("the keys file {} is invalid: {error}", path.display()))
}

/// Every key the server accepts, replaceable as a whole while the server runs (SIGHUP).
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: RwLock<Arc<HashMap<String, Arc<AccessKey>>>>,
}

impl KeyRing {
    pub fn new(keys: impl IntoIterator<Item = AccessKey>) -> Self {
        let ring = Self::default();
        ring.replace(keys);
        ring
    }

    /// Swaps in a new set of keys; requests already verified keep the key they found.
    pub fn replace(&self, keys: impl IntoIterator<Item = AccessKey>) {
        let table: HashMap<_, _> = keys
            .into_iter()
            .map(|k| (k.access_key_id.clone(), Arc::new(k)))
            .collect();
        let mut guard = match self.keys.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Arc::new(table);
    }

    pub fn get(&self, access_key_id: &str) -> Option<Arc<AccessKey>> {
        let guard = match self.keys.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        guard.get(access_key_id).cloned()
    }

    pub fn len(&self) -> usize {
        match self.keys.read() {
            Ok(guard) => guard.len(),
            Err(poisoned) => poisoned.into_inner().len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(p: &str) -> ActionPattern {
        ActionPattern(p.into())
    }

    #[test]
    fn action_patterns_match_like_iam() {
        assert!(pattern("chime:*").matches("chime:CreateMeeting"));
        assert!(pattern("chime:list*").matches("chime:ListAttendees"));
        assert!(pattern("chime:Get?ttendee").matches("chime:GetAttendee"));
        assert!(pattern("*").matches(ADMIN_ACTION));
        assert!(!pattern("chime:*").matches(ADMIN_ACTION));
        assert!(!pattern("chime:List*").matches("chime:GetAttendee"));
        assert!(!pattern("chime:ListAttendees").matches("chime:ListAttendeesX"));
        assert!(pattern("*:*Attendee*").matches("chime:BatchCreateAttendee"));
    }

    #[test]
    fn unknown_actions_are_refused_at_load() {
        assert!(ActionPattern::parse("chime:ListAttendee").is_err());
        assert!(ActionPattern::parse("s3:*").is_err());
        assert!(ActionPattern::parse("chime:ListAttendees").is_ok());
        assert!(ActionPattern::parse("carillon:admin").is_ok());
        assert_eq!(
            ActionPattern::parse("s3:*").map_err(|e| e.to_string()),
            Err("'s3:*' matches no action of this server (examples: chime:*, chime:CreateMeeting, carillon:Admin)".to_string())
        );
        assert_eq!(ActionPattern::parse(" "), Err(PatternError::Empty));
    }

    #[test]
    fn a_keys_file_parses_and_is_checked() {
        let keys = parse_keys_file(
            r#"
            [[key]]
            access_key_id = "AKIAEXAMPLEALICE0001"
            secret_access_key = "alice-secret"
            account_id = "111111111111"
            actions = ["chime:*"]
            rate = 50
            burst = 100

            [[key]]
            access_key_id = "AKIAEXAMPLEBOBREAD01"
            secret_access_key = "bob-secret"
            account_id = "222222222222"
            actions = ["chime:ListAttendees", "chime:GetAttendee"]
            "#,
        )
        .expect("valid");
        assert_eq!(keys.len(), 2);
        assert_eq!(
            keys[0].rate_limit,
            Some(RateLimit {
                rate: 50.0,
                burst: 100.0
            })
        );
        assert!(keys[1].permissions.allows("chime:GetAttendee"));
        assert!(!keys[1].permissions.allows("chime:CreateAttendee"));
        assert_eq!(keys[1].rate_limit, None);

        let bad = |text: &str| parse_keys_file(text).expect_err("invalid").to_string();
        assert!(bad("[[key]]\naccess_key_id = \"short\"\nsecret_access_key = \"xxxxxxxx\"\naccount_id = \"111111111111\"\nactions = [\"chime:*\"]").contains("16 to 128"));
        assert!(bad("[[key]]\naccess_key_id = \"AKIAEXAMPLEALICE0001\"\nsecret_access_key = \"xxxxxxxx\"\naccount_id = \"1\"\nactions = [\"chime:*\"]").contains("12 digits"));
        assert!(bad("[[key]]\naccess_key_id = \"AKIAEXAMPLEALICE0001\"\nsecret_access_key = \"xxxxxxxx\"\naccount_id = \"111111111111\"\nactions = []").contains("at least one"));
        assert!(bad("[[key]]\naccess_key_id = \"AKIAEXAMPLEALICE0001\"\nsecret_access_key = \"xxxxxxxx\"\naccount_id = \"111111111111\"\nactions = [\"chime:*\"]\nrate = 0").contains("above 0"));
        assert!(bad("[[key]]\naccess_key_id = \"AKIAEXAMPLEALICE0001\"\nsecret_access_key = \"xxxxxxxx\"\naccount_id = \"111111111111\"\nactions = [\"chime:*\"]\nsecret = 1").contains("unknown field"));
    }

    #[test]
    fn the_ring_is_replaced_whole() {
        let ring = KeyRing::new([AccessKey::root(
            "AKIAROOT000000000000".into(),
            "s".into(),
            "123456789012".into(),
        )]);
        assert!(ring.get("AKIAROOT000000000000").is_some());
        ring.replace([]);
        assert!(ring.get("AKIAROOT000000000000").is_none());
        assert!(ring.is_empty());
    }
}
