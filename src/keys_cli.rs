//! `carillon keys create`: mints an access key and appends it to the keys file.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use crate::auth::keys;
use crate::domain::ids::random_string;

#[derive(Debug, clap::Args)]
pub struct CreateKey {
    /// The keys file to append to (created when missing).
    #[arg(long, env = "CARILLON_KEYS_FILE")]
    pub keys_file: PathBuf,
    /// The 12-digit account the key acts in.
    #[arg(long)]
    pub account: String,
    /// Comma-separated actions, e.g. "chime:*" or "chime:ListAttendees,chime:GetAttendee".
    #[arg(long, value_delimiter = ',')]
    pub actions: Vec<String>,
    /// Requests per second for this key.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Burst for this key's rate.
    #[arg(long, requires = "rate")]
    pub burst: Option<f64>,
}

/// The TOML block of one key.
fn key_block(create: &CreateKey, access_key_id: &str, secret: &str) -> String {
    let actions: Vec<String> = create
        .actions
        .iter()
        .map(|a| format!("{:?}", a.trim()))
        .collect();
    let mut block = format!(
        "\n[[key]]\naccess_key_id = \"{access_key_id}\"\nsecret_access_key = \"{secret}\"\naccount_id = \"{}\"\nactions = [{}]\n",
        create.account,
        actions.join(", ")
    );
    if let Some(rate) = create.rate {
        block.push_str(&format!("rate = {rate}\n"));
    }
    if let Some(burst) = create.burst {
        block.push_str(&format!("burst = {burst}\n"));
    }
    block
}

pub fn create(create: &CreateKey) -> anyhow::Result<()> {
    let access_key_id = format!(
        "AKIA{}",
        random_string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
    );
    let secret = random_string(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        40,
    );
    let block = key_block(create, &access_key_id, &secret);
    // The file with the new key must still load, or nothing is written.
    let existing = match std::fs::read_to_string(&create.keys_file) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => {
            return Err(error).with_context(|| format!("reading {}", create.keys_file.display()));
        }
    };
    keys::parse_keys_file(&format!("{existing}{block}"))
        .map_err(|error| anyhow::anyhow!("the key would not load: {error}"))?;
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&create.keys_file)
        .with_context(|| format!("opening {}", create.keys_file.display()))?;
    file.write_all(block.as_bytes())?;
    file.sync_all()?;
    println!("access key id:     {access_key_id}");
    println!("secret access key: {secret}");
    println!("account id:        {}", create.account);
    println!(
        "appended to {}; send the server SIGHUP (or restart it) to load it",
        create.keys_file.display()
    );
    Ok(())
}
