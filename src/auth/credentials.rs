//! The server's own keys: the root key pair (given by the configuration, or generated once and
//! kept in the store, so that it is the same after every restart), the credentials file that
//! points the AWS SDKs at it, and the keys file's further keys.

use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use rand::RngCore;

use super::keys::{self, AccessKey};
use crate::config::Config;
use crate::store::Store;

/// The keys a server starts with.
pub struct Credentials {
    pub root_key: AccessKey,
    /// Whether the root key pair was generated (and written to `file`).
    pub generated: bool,
    /// The AWS shared-credentials file in the data directory (profile `carillon`).
    pub file: PathBuf,
    /// The root key and every key of the keys file.
    pub keys: Vec<AccessKey>,
}

impl Credentials {
    /// Loads (or generates) the root key, reads the keys file and, for a generated key, writes
    /// the credentials file.
    pub async fn load(config: &Config, store: &dyn Store) -> anyhow::Result<Credentials> {
        let (root_key, generated) = root_key(config, store).await?;
        let file = config.data_dir.join("credentials");
        let keys = all_keys(&root_key, config.keys_file.as_deref())?;
        if generated {
            write_credentials_file(&file, &root_key)?;
        }
        Ok(Credentials {
            root_key,
            generated,
            file,
            keys,
        })
    }
}

/// Loads the root key: from the configuration if given, else generated once and kept in the
/// store so that it is the same after every restart.
async fn root_key(config: &Config, store: &dyn Store) -> anyhow::Result<(AccessKey, bool)> {
    let account_id = match &config.account_id {
        Some(id) => {
            anyhow::ensure!(
                keys::is_account_id(id),
                "CARILLON_ACCOUNT_ID must be 12 digits"
            );
            id.clone()
        }
        None => {
            store
                .setting_or_insert(
                    "root_account_id",
                    &crate::domain::ids::random_string(b"0123456789", 12),
                )
                .await?
        }
    };
    if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
        return Ok((
            AccessKey::root(id.clone(), secret.clone(), account_id),
            false,
        ));
    }
    let upper = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let id = store
        .setting_or_insert(
            "root_access_key_id",
            &format!("AKIA{}", crate::domain::ids::random_string(upper, 16)),
        )
        .await?;
    let mut secret = [0u8; 30];
    rand::rng().fill_bytes(&mut secret);
    let secret = store
        .setting_or_insert(
            "root_secret_access_key",
            &base64::engine::general_purpose::STANDARD.encode(secret),
        )
        .await?;
    Ok((AccessKey::root(id, secret, account_id), true))
}

fn write_credentials_file(path: &Path, key: &AccessKey) -> anyhow::Result<()> {
    let text = format!(
        "# Written by carillon: the root key of this server's data directory.\n\
         [carillon]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        key.access_key_id, key.secret_access_key
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// The root key and every key of the keys file. A file key may not reuse the root key's id.
pub fn all_keys(root: &AccessKey, keys_file: Option<&Path>) -> anyhow::Result<Vec<AccessKey>> {
    let mut keys = vec![root.clone()];
    if let Some(path) = keys_file {
        let loaded = keys::load_keys_file(path)?;
        if loaded.iter().any(|k| k.access_key_id == root.access_key_id) {
            anyhow::bail!(
                "the keys file {} reuses the root access key id {}",
                path.display(),
                root.access_key_id
            );
        }
        keys.extend(loaded);
    }
    Ok(keys)
}
