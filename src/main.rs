//! `carillon serve` runs the Chime SDK meetings service; the other subcommands manage keys and
//! drive a running server's admin extension.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use carillon::admin_client::AdminClient;
use carillon::config::Config;
use carillon::{keys_cli, server};

/// mimalloc instead of glibc's malloc: a request allocates and frees many small strings (SigV4
/// canonical forms, rows, JSON) across worker threads, where glibc's arenas cost about a quarter
/// of the CPU. Built from C by the `cc` crate, nothing else needed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "carillon",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("CARILLON_GIT_COMMIT"), ")"),
    about = "A self-hosted Amazon Chime SDK meetings service"
)]
struct Cli {
    /// Log lines as `text` (coloured only on a terminal) or `json` (one object per line).
    #[arg(long, env = "CARILLON_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Logs go to stderr, so stdout carries only what the commands print (the server's banner,
/// `faults list` answers) and scripts can read it.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve(Box<Config>),
    /// Manage the access keys of a keys file.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Make a running server's operations fail or answer late, to test clients' retries.
    Faults(FaultsArgs),
    /// Read or move the clock of a server started with --clock manual.
    Clock(ClockArgs),
    /// Check the configuration (file, environment, flags) and print the effective settings.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the settings `serve` would run with, and print each with where it came from
    /// (secrets masked). Takes the same flags as `serve`.
    Check(Box<Config>),
}

/// Which running server an admin subcommand talks to, and who signs.
#[derive(Args)]
struct AdminTarget {
    /// The server's endpoint.
    #[arg(
        long,
        env = "CARILLON_ENDPOINT",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    endpoint: String,
    /// Data directory whose generated credentials sign the requests, unless
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are set.
    #[arg(
        long,
        env = "CARILLON_DATA_DIR",
        default_value = "./carillon-data",
        global = true
    )]
    data_dir: PathBuf,
}

impl AdminTarget {
    fn client(&self) -> anyhow::Result<AdminClient> {
        AdminClient::from_environment(&self.endpoint, &self.data_dir)
    }
}

#[derive(Args)]
struct ClockArgs {
    #[command(flatten)]
    target: AdminTarget,
    #[command(subcommand)]
    command: ClockCommand,
}

#[derive(Subcommand)]
enum ClockCommand {
    /// Print the server's time (epoch milliseconds) and clock mode.
    Now,
    /// Move the manual clock forward (90s, 6m, 2h, 1d) and end the meetings then due.
    Advance {
        #[arg(value_parser = carillon::clock::parse_duration_seconds)]
        by: i64,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key, append it to the keys file (never overwriting it) and print it.
    /// A running server picks it up on SIGHUP.
    Create(keys_cli::CreateKey),
}

#[derive(Args)]
struct FaultsArgs {
    #[command(flatten)]
    target: AdminTarget,
    #[command(subcommand)]
    command: FaultsCommand,
}

#[derive(Subcommand)]
enum FaultsCommand {
    /// Arm a fault.
    Add {
        /// Operation name (CreateAttendee, ListAttendees, ...) or '*' for all.
        #[arg(long)]
        operation: String,
        /// Modelled exception to answer with, e.g. ServiceUnavailableException.
        #[arg(long)]
        error: Option<String>,
        /// 'chime-sdk-meetings' or 'legacy' (both when absent).
        #[arg(long)]
        namespace: Option<String>,
        /// Affect only the next N matching calls.
        #[arg(long)]
        count: Option<u64>,
        /// Share of matching calls affected, in (0, 1].
        #[arg(long)]
        rate: Option<f64>,
        /// Extra latency in milliseconds.
        #[arg(long)]
        latency_ms: Option<u64>,
        /// Error message.
        #[arg(long)]
        message: Option<String>,
    },
    /// List the armed faults.
    List,
    /// Disarm one fault.
    Remove { id: u64 },
    /// Disarm every fault.
    Clear,
}

fn main() -> anyhow::Result<()> {
    let (args, from_file) = with_config_file(std::env::args_os().collect())?;
    let cli = Cli::parse_from(&args);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run_command(cli, &args, &from_file))
}

/// The arguments, with the config file's settings appended as `--flag=value` where the command
/// takes them (every setting for `serve` and `config check`; the data directory, whose
/// credentials sign, for `faults` and `clock`), and the long names of the flags the file gave.
fn with_config_file(mut args: Vec<OsString>) -> anyhow::Result<(Vec<OsString>, Vec<String>)> {
    // A first, lenient parse only to learn the subcommand: the file may give what a flag
    // requires, so the strict parse comes after.
    let takes: fn(&str) -> bool = match Cli::command()
        .ignore_errors(true)
        .try_get_matches_from(&args)
        .ok()
        .as_ref()
        .and_then(|matches| matches.subcommand())
    {
        Some(("serve", _)) => |_| true,
        Some(("config", config)) if config.subcommand_name() == Some("check") => |_| true,
        Some(("faults" | "clock", _)) => |long| long == "data-dir",
        _ => return Ok((args, Vec::new())),
    };
    let Some(path) = carillon::config_file::path_from(&args) else {
        return Ok((args, Vec::new()));
    };
    // Its text only, as before: no "Caused by" list repeating it.
    let settings =
        carillon::config_file::read(&path).map_err(|error| anyhow::anyhow!("{error}"))?;
    let applied: Vec<_> =
        carillon::config_file::applicable(&settings, &args, |env| std::env::var_os(env).is_some())
            .into_iter()
            .filter(|setting| takes(&setting.long))
            .collect();
    let from_file = applied.iter().map(|setting| setting.long.clone()).collect();
    args.extend(applied.iter().map(|setting| setting.as_arg()));
    Ok((args, from_file))
}

async fn run_command(cli: Cli, args: &[OsString], from_file: &[String]) -> anyhow::Result<()> {
    let Cli {
        log_format,
        command,
    } = cli;
    init_logging(log_format);
    // A panic's message may carry what a caller sent (names, ids): log where it happened only.
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(%location, "panic (message withheld: it may carry caller data)");
    }));
    match command {
        Command::Serve(config) => run(*config).await,
        Command::Keys(KeysCommand::Create(create)) => keys_cli::create(&create),
        Command::Faults(args) => faults(args).await,
        Command::Clock(args) => clock(args).await,
        Command::Config(ConfigCommand::Check(config)) => check_config(&config, args, from_file),
    }
}

/// `carillon config check`: validates, then prints every setting, its value (secrets masked)
/// and whether it came from a flag, the environment, the config file or the default. The file's
/// settings arrive as flags appended to `args`; `from_file` names them.
fn check_config(config: &Config, args: &[OsString], from_file: &[String]) -> anyhow::Result<()> {
    use clap::{Args as _, parser::ValueSource};
    server::check_config(config)?;
    // The flags after `config check`, parsed again for their sources.
    let start = args
        .iter()
        .position(|a| a == "check")
        .map(|i| i + 1)
        .unwrap_or(args.len());
    let command = Config::augment_args(clap::Command::new("carillon config check"));
    let matches = command.clone().try_get_matches_from(
        std::iter::once(OsString::from("check")).chain(args.iter().skip(start).cloned()),
    )?;
    println!("# the configuration is valid; effective settings:");
    for arg in command.get_arguments() {
        let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else {
            continue;
        };
        let id = arg.get_id().as_str();
        let value = matches
            .get_raw(id)
            .map(|values| {
                values
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let env = env.to_string_lossy();
        let source = match matches.value_source(id) {
            Some(ValueSource::CommandLine) if from_file.iter().any(|l| l == long) => "config file",
            Some(ValueSource::CommandLine) => "flag",
            Some(ValueSource::EnvVariable) => "environment",
            Some(ValueSource::DefaultValue) => "default",
            _ => "not set",
        };
        let shown = if carillon::config_file::is_secret(long) && !value.is_empty() {
            "********".to_string()
        } else {
            value
        };
        println!(
            "{:<22} = {shown:<40} # {source} ({env})",
            long.replace('-', "_")
        );
    }
    Ok(())
}

async fn clock(args: ClockArgs) -> anyhow::Result<()> {
    let client = args.target.client()?;
    let answer = match args.command {
        ClockCommand::Now => client.send("GET", "/_carillon/clock", b"").await?,
        ClockCommand::Advance { by } => {
            let body = serde_json::json!({ "advance_seconds": by }).to_string();
            client
                .send("POST", "/_carillon/clock", body.as_bytes())
                .await?
        }
    };
    print_answer(answer)
}

/// Prints a 2xx answer's body, or fails with the server's status and message.
fn print_answer((status, body): (u16, String)) -> anyhow::Result<()> {
    if !(200..300).contains(&status) {
        anyhow::bail!("the server answered {status}: {body}");
    }
    if body.is_empty() {
        return Ok(());
    }
    // The call has done its work; a reader that stopped reading (`| head`) is not an error.
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{body}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

async fn faults(args: FaultsArgs) -> anyhow::Result<()> {
    let client = args.target.client()?;
    let answer = match args.command {
        FaultsCommand::Add {
            operation,
            error,
            namespace,
            count,
            rate,
            latency_ms,
            message,
        } => {
            let mut spec = serde_json::json!({ "operation": operation });
            let fields = [
                ("error", error.map(serde_json::Value::from)),
                ("namespace", namespace.map(serde_json::Value::from)),
                ("count", count.map(serde_json::Value::from)),
                ("rate", rate.map(serde_json::Value::from)),
                ("latency_ms", latency_ms.map(serde_json::Value::from)),
                ("message", message.map(serde_json::Value::from)),
            ];
            for (name, value) in fields {
                if let Some(value) = value {
                    spec[name] = value;
                }
            }
            client
                .send("POST", "/_carillon/faults", spec.to_string().as_bytes())
                .await?
        }
        FaultsCommand::List => client.send("GET", "/_carillon/faults", b"").await?,
        FaultsCommand::Remove { id } => {
            client
                .send("DELETE", &format!("/_carillon/faults/{id}"), b"")
                .await?
        }
        FaultsCommand::Clear => client.send("DELETE", "/_carillon/faults", b"").await?,
    };
    print_answer(answer)
}

async fn run(config: Config) -> anyhow::Result<()> {
    let running = server::start(&config).await?;
    print_banner(&running.boot);
    wait_for_stop(&running).await;
    tracing::info!("shutting down: finishing in-flight requests");
    running.stop().await
}

fn print_banner(boot: &server::Boot) {
    let url = &boot.public_url;
    println!("carillon is listening on {} (public URL {url})", boot.addr);
    println!("  chime-sdk-meetings API: endpoint_url={url}");
    println!("  legacy chime API:       endpoint_url={url}/legacy");
    if boot.generated_credentials {
        let file = boot.credentials_file.display();
        println!("  credentials: {file} (profile 'carillon'; generated once, kept in the store)");
        println!();
        println!(
            "  boto3:   boto3.Session(profile_name='carillon').client('chime-sdk-meetings', endpoint_url='{url}', region_name='us-east-1')"
        );
        println!("           with AWS_SHARED_CREDENTIALS_FILE={file}");
        println!(
            "  AWS CLI: AWS_SHARED_CREDENTIALS_FILE={file} aws --profile carillon --region us-east-1 \\"
        );
        println!(
            "             --endpoint-url {url} chime-sdk-meetings create-meeting --media-region us-east-1 --external-meeting-id demo"
        );
    } else {
        println!(
            "  credentials: the access key from CARILLON_ACCESS_KEY_ID / CARILLON_SECRET_ACCESS_KEY"
        );
    }
    println!("  account id: {}", boot.root_key.account_id);
    if let Some(admin) = &boot.admin_addr {
        println!("  metrics and readiness: http://{admin}/metrics, http://{admin}/readyz");
    }
    if let Some(demo) = &boot.demo_url {
        println!("  demo meeting page: {demo}");
    }
}

/// Waits for SIGINT or SIGTERM; SIGHUP meanwhile reloads the keys file and the TLS certificate.
async fn wait_for_stop(running: &server::Running) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (mut terminate, mut hangup) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(terminate), Ok(hangup)) => (terminate, hangup),
            _ => {
                tracing::warn!("cannot listen for SIGTERM/SIGHUP; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return,
                _ = terminate.recv() => return,
                _ = hangup.recv() => {
                    match running.reload_keys() {
                        Ok(count) => tracing::info!(keys = count, "keys file reloaded"),
                        Err(error) => {
                            tracing::error!(%error, "keys file not reloaded; the previous keys stay in force");
                        }
                    }
                    match running.reload_certificate() {
                        Ok(true) => tracing::info!("TLS certificate reloaded"),
                        Ok(false) => {}
                        Err(error) => tracing::error!(
                            error = format!("{error:#}"),
                            "TLS certificate not reloaded; the previous one stays in force"
                        ),
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
