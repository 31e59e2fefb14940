//! The `chatdemo` binary: command line, configuration, logs, then the server until a signal.

use std::path::PathBuf;
use std::process::ExitCode;

use chatdemo::config::CliOverrides;
use chatdemo::{startup, telemetry, Application, Settings};
use clap::Parser;

/// A real-time chat room (Tornado's chatdemo in Rust): long polling and WebSockets.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Configuration file (default: ./config.toml when present, else built-in defaults).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Port to listen on (overrides server.port).
    #[arg(long)]
    port: Option<u16>,
    /// Address to listen on (overrides server.address).
    #[arg(long)]
    address: Option<String>,
}

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = CliOverrides {
        config_path: cli.config,
        port: cli.port,
        address: cli.address,
    };
    let settings = match Settings::load(&overrides) {
        Ok(settings) => settings,
        Err(error) => {
            // Logging is not set up yet: its format is part of what failed to load.
            eprintln!("chatdemo: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.log.format);
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            eprintln!("chatdemo: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    tokio::spawn(startup::shutdown_on_signal(app.shutdown_handle()));
    match app.run_until_stopped().await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "server failed");
            ExitCode::FAILURE
        }
    }
}
