//! `carillon serve`: runs the Chime SDK meetings service.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use carillon::config::Config;
use carillon::server;

#[derive(Parser)]
#[command(
    name = "carillon",
    version,
    about = "A self-hosted Amazon Chime SDK meetings service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve(Config),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let Cli { command } = Cli::parse();
    match command {
        Command::Serve(config) => run(config).await,
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let running = server::start(&config).await?;
    print_banner(&running.boot);
    shutdown_signal().await;
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
        println!(
            "  credentials: {file} (profile 'carillon'; generated once, kept in the data directory)"
        );
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
    if let Some(demo) = &boot.demo_url {
        println!("  demo meeting page: {demo} (build it once with scripts/build-demo)");
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
