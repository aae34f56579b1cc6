//! `kith serve`: the HTTP server.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Args;
use kith_app::App;

use crate::{StorageConfig, open_app};

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// The address to listen on for HTTP.
    #[arg(long, env = "KITH_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}

pub fn run(config: &StorageConfig, args: ServeArgs) -> anyhow::Result<()> {
    let app = open_app(config)?;
    tracing::info!(database = %config.database_url()?, "database ready");
    serve_app(app, args.listen)
}

/// Serves `app` until interrupted (Ctrl-C or SIGTERM), finishing requests in flight.
pub fn serve_app(app: App, listen: SocketAddr) -> anyhow::Result<()> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
        let address = listener.local_addr()?;
        tracing::info!(%address, "serving HTTP");
        eprintln!("kith: listening on http://{address}");
        axum::serve(listener, kith_web::router(app))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("serving HTTP")
    })
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
