//! The configuration file (`--config PATH` or `CARILLON_CONFIG`): TOML whose keys are the
//! `serve` flags' names (`listen = "0.0.0.0:8080"`, `max_attendees = 100`, `webhook = [...]`).
//! Precedence is flag, then environment, then file, then default: the file's values are applied
//! as the `CARILLON_*` variables that are not already set, before the flags are parsed, so
//! clap's own precedence does the rest. An unknown key is an error, so a typo is not ignored.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Args, Command};

use crate::config::Config;

/// The `serve` settings as clap knows them: `(long flag, environment variable)`.
pub fn settings() -> Vec<(String, String)> {
    Config::augment_args(Command::new("serve"))
        .get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?.to_string();
            let env = arg.get_env()?.to_string_lossy().into_owned();
            Some((long, env))
        })
        .collect()
}

/// The settings whose values are secrets, masked when printed.
pub fn is_secret(long: &str) -> bool {
    matches!(long, "secret-access-key" | "webhook-secret" | "turn-secret")
}

/// The config file named on the command line (`--config PATH`, `--config=PATH`) or in
/// `CARILLON_CONFIG`.
pub fn path_from(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let arg = arg.to_string_lossy();
        if arg == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("CARILLON_CONFIG").map(PathBuf::from)
}

fn render(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(render)
            .collect::<Result<Vec<_>, _>>()
            .map(|items| items.join(",")),
        other => Err(format!("a {} is not a setting value", other.type_str())),
    }
}

/// Reads the file into `(environment variable, value)` pairs, checking every key.
pub fn read(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("reading the config file {}: {error}", path.display()))?;
    parse(&text).map_err(|error| format!("the config file {}: {error}", path.display()))
}

pub fn parse(text: &str) -> Result<BTreeMap<String, String>, String> {
    let table: toml::Table = toml::from_str(text).map_err(|error| error.to_string())?;
    let known = settings();
    let mut values = BTreeMap::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let Some((_, env)) = known.iter().find(|(flag, _)| *flag == long) else {
            let names: Vec<String> = known
                .iter()
                .map(|(flag, _)| flag.replace('-', "_"))
                .collect();
            return Err(format!(
                "unknown setting '{key}'; the settings are: {}",
                names.join(", ")
            ));
        };
        let value = render(value).map_err(|error| format!("{key}: {error}"))?;
        values.insert(env.clone(), value);
    }
    Ok(values)
}

/// Applies the file's values as environment variables that are not already set, and returns
/// the names it set. Call it before any thread starts (it changes the process environment).
pub fn apply(values: &BTreeMap<String, String>) -> Vec<String> {
    let mut applied = Vec::new();
    for (env, value) in values {
        if std::env::var_os(env).is_none() {
            // SAFETY: called from `main` before the runtime or any other thread exists.
            unsafe { std::env::set_var(env, value) };
            applied.push(env.clone());
        }
    }
    applied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_serve_flags_and_typos_are_refused() {
        let values = parse(
            "listen = \"0.0.0.0:9000\"\nmax_attendees = 100\nwebhook = [\"http://a/1\", \"http://b/2\"]\nclock = \"manual\"\n",
        )
        .expect("valid");
        assert_eq!(
            values.get("CARILLON_LISTEN").map(String::as_str),
            Some("0.0.0.0:9000")
        );
        assert_eq!(
            values.get("CARILLON_MAX_ATTENDEES").map(String::as_str),
            Some("100")
        );
        assert_eq!(
            values.get("CARILLON_WEBHOOKS").map(String::as_str),
            Some("http://a/1,http://b/2")
        );
        let error = parse("max_atendees = 5").expect_err("typo");
        assert!(error.contains("unknown setting 'max_atendees'"), "{error}");
        assert!(error.contains("max_attendees"), "{error}");
        assert!(parse("listen = { a = 1 }").is_err());
    }

    #[test]
    fn the_config_path_comes_from_the_flag() {
        let args: Vec<OsString> = ["carillon", "serve", "--config", "/etc/carillon.toml"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(path_from(&args), Some(PathBuf::from("/etc/carillon.toml")));
        let args: Vec<OsString> = ["carillon", "serve", "--config=/x.toml"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(path_from(&args), Some(PathBuf::from("/x.toml")));
    }
}
