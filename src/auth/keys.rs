//! Access keys and the accounts they belong to.

use std::collections::HashMap;

/// The credentials of one access key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessKey {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub account_id: String,
}

/// Every key the server accepts. Today that is the root key; accounts, users and permissions
/// will add rows here without changing the verifier.
#[derive(Clone, Debug, Default)]
pub struct KeyRing {
    keys: HashMap<String, AccessKey>,
}

impl KeyRing {
    pub fn new(keys: impl IntoIterator<Item = AccessKey>) -> Self {
        Self {
            keys: keys
                .into_iter()
                .map(|k| (k.access_key_id.clone(), k))
                .collect(),
        }
    }

    pub fn get(&self, access_key_id: &str) -> Option<&AccessKey> {
        self.keys.get(access_key_id)
    }
}
