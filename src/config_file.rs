//! The configuration file (`--config PATH` or `CARILLON_CONFIG`): TOML whose keys are the
//! `serve` flags' names (`listen = "0.0.0.0:8080"`, `max_attendees = 100`, `webhook = [...]`).
//! Precedence is flag, then environment, then file, then default: for `serve` and
//! `config check`, each file setting whose flag is not on the command line and whose
//! `CARILLON_*` variable is not set is appended to the arguments as `--flag=value` (an array
//! joined with `,`, as the list flags split it), before clap parses them, so clap's own
//! precedence does the rest. An unknown key is an error, so a typo is not ignored.

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
    matches!(
        long,
        "secret-access-key" | "webhook-secret" | "turn-secret" | "s3-secret-access-key"
    )
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

/// Why the config file's text is refused.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// Not TOML.
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    /// A key that is no `serve` setting; `known` lists them all, as keys.
    #[error("unknown setting '{key}'; the settings are: {}", .known.join(", "))]
    Unknown { key: String, known: Vec<String> },
    /// A table (or an array holding one, or a date) where a setting's value belongs.
    #[error("{key}: a {kind} is not a setting value")]
    NotAValue { key: String, kind: &'static str },
}

/// Why the config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("reading the config file {}: {error}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("the config file {}: {error}", .path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        error: SettingsError,
    },
}

/// One setting the file gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSetting {
    /// The flag's long name (`max-attendees`).
    pub long: String,
    /// Its environment variable (`CARILLON_MAX_ATTENDEES`).
    pub env: String,
    /// The value as the flag takes it; an array's items joined with `,`.
    pub value: String,
}

impl FileSetting {
    /// `--flag=value`: one argument, so that a value starting with `-` stays a value.
    pub fn as_arg(&self) -> OsString {
        OsString::from(format!("--{}={}", self.long, self.value))
    }
}

fn render(key: &str, value: &toml::Value) -> Result<String, SettingsError> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(|item| render(key, item))
            .collect::<Result<Vec<_>, _>>()
            .map(|items| items.join(",")),
        other => Err(SettingsError::NotAValue {
            key: key.to_string(),
            kind: other.type_str(),
        }),
    }
}

/// Reads the file's settings, checking every key.
pub fn read(path: &Path) -> Result<Vec<FileSetting>, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigFileError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    parse(&text).map_err(|error| ConfigFileError::Invalid {
        path: path.to_path_buf(),
        error,
    })
}

pub fn parse(text: &str) -> Result<Vec<FileSetting>, SettingsError> {
    let table: toml::Table = toml::from_str(text)?;
    let known = settings();
    let mut values = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let Some((_, env)) = known.iter().find(|(flag, _)| *flag == long) else {
            return Err(SettingsError::Unknown {
                key: key.clone(),
                known: known
                    .iter()
                    .map(|(flag, _)| flag.replace('-', "_"))
                    .collect(),
            });
        };
        values.push(FileSetting {
            value: render(key, value)?,
            long,
            env: env.clone(),
        });
    }
    Ok(values)
}

/// Whether the command line gives `--long` (`--long VALUE` or `--long=VALUE`).
fn on_command_line(long: &str, command_line: &[OsString]) -> bool {
    command_line.iter().any(|arg| {
        arg.to_str()
            .and_then(|arg| arg.strip_prefix("--"))
            .and_then(|arg| arg.strip_prefix(long))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('='))
    })
}

/// The file's settings that apply: those whose flag the command line does not give and whose
/// environment variable is not set (`env_is_set`), the flag and the environment coming first.
pub fn applicable<'a>(
    settings: &'a [FileSetting],
    command_line: &[OsString],
    env_is_set: impl Fn(&str) -> bool,
) -> Vec<&'a FileSetting> {
    settings
        .iter()
        // An empty value sets nothing, as an empty environment variable does for clap.
        .filter(|setting| {
            !setting.value.is_empty()
                && !on_command_line(&setting.long, command_line)
                && !env_is_set(&setting.env)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn value<'a>(settings: &'a [FileSetting], long: &str) -> Option<&'a str> {
        settings
            .iter()
            .find(|setting| setting.long == long)
            .map(|setting| setting.value.as_str())
    }

    #[test]
    fn keys_are_the_serve_flags_and_typos_are_refused() {
        let values = parse(
            "listen = \"0.0.0.0:9000\"\nmax_attendees = 100\nwebhook = [\"http://a/1\", \"http://b/2\"]\nclock = \"manual\"\n",
        )
        .expect("valid");
        assert_eq!(value(&values, "listen"), Some("0.0.0.0:9000"));
        assert_eq!(value(&values, "max-attendees"), Some("100"));
        assert_eq!(value(&values, "webhook"), Some("http://a/1,http://b/2"));
        let webhook = values
            .iter()
            .find(|setting| setting.long == "webhook")
            .expect("webhook");
        assert_eq!(webhook.env, "CARILLON_WEBHOOKS");
        assert_eq!(
            webhook.as_arg(),
            OsString::from("--webhook=http://a/1,http://b/2")
        );
        let error = parse("max_atendees = 5").expect_err("typo").to_string();
        assert!(error.contains("unknown setting 'max_atendees'"), "{error}");
        assert!(error.contains("max_attendees"), "{error}");
        assert_eq!(
            parse("listen = { a = 1 }")
                .expect_err("a table")
                .to_string(),
            "listen: a table is not a setting value"
        );
        assert!(matches!(parse("listen = "), Err(SettingsError::Toml(_))));
    }

    #[test]
    fn a_file_value_yields_to_the_flag_and_the_environment() {
        let values =
            parse("listen = \"0.0.0.0:9000\"\nmax_attendees = 100\nclock = \"manual\"\ndata_dir = \"/d\"\n")
                .expect("valid");
        let command_line = os(&[
            "carillon",
            "serve",
            "--listen",
            "127.0.0.1:1",
            "--max-attendees=5",
        ]);
        let applied = applicable(&values, &command_line, |env| env == "CARILLON_CLOCK");
        let longs: Vec<&str> = applied.iter().map(|s| s.long.as_str()).collect();
        // --listen and --max-attendees are on the command line, CARILLON_CLOCK is set.
        assert_eq!(longs, ["data-dir"]);
        // A flag that only starts like another is not that flag.
        let command_line = os(&["carillon", "serve", "--listen-x=1"]);
        let applied = applicable(&values, &command_line, |_| false);
        assert_eq!(applied.len(), values.len());
        // An empty value sets nothing, as an empty environment variable does.
        let values = parse("public_url = \"\"\nwebhook = []\n").expect("valid");
        assert!(applicable(&values, &command_line, |_| false).is_empty());
    }

    #[test]
    fn the_config_path_comes_from_the_flag() {
        let args = os(&["carillon", "serve", "--config", "/etc/carillon.toml"]);
        assert_eq!(path_from(&args), Some(PathBuf::from("/etc/carillon.toml")));
        let args = os(&["carillon", "serve", "--config=/x.toml"]);
        assert_eq!(path_from(&args), Some(PathBuf::from("/x.toml")));
    }
}
