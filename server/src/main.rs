//! `tidings`: parses the configuration, binds the address and serves until SIGINT or SIGTERM.

use clap::Parser;
use tidings_server::{Config, Server};
use tracing_subscriber::EnvFilter;

/// jemalloc, with background threads that return freed pages to the system within a second: a
/// hub's memory follows its connections down again after a burst, where glibc's malloc keeps
/// its arenas' high-water mark.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Read by jemalloc at start-up (the crate's symbols carry the `_rjem_` prefix).
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &u8 = &b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0];

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = Config::parse();
    match run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), tidings_server::Error> {
    let server = Server::bind(config).await?;
    let shutdown = server.shutdown_token();
    tokio::spawn(async move {
        tidings_server::shutdown_signal().await;
        tracing::info!("shutting down: ending open streams");
        shutdown.cancel();
    });
    server.run().await
}
