//! `kith serve`: the HTTP server and, when asked, the MLLP listener.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use kith_app::App;

use crate::{StorageConfig, open_app};

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// The address to listen on for HTTP.
    #[arg(long, env = "KITH_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Also listen for HL7 v2 over MLLP on this address (e.g. 0.0.0.0:2575).
    #[arg(long, env = "KITH_MLLP_LISTEN")]
    pub mllp_listen: Option<SocketAddr>,
    /// The most MLLP connections served at once; more wait to be accepted.
    #[arg(long, env = "KITH_MLLP_MAX_CONNECTIONS", default_value_t = 256)]
    pub mllp_max_connections: usize,
    /// The most MLLP connections one source address may hold at once.
    #[arg(long, env = "KITH_MLLP_MAX_PER_ADDRESS", default_value_t = 32)]
    pub mllp_max_per_address: usize,
    /// Close an MLLP connection idle this long between messages, or whose message takes
    /// longer than this to arrive in full (e.g. 5m, 30s).
    #[arg(long, env = "KITH_MLLP_IDLE_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub mllp_idle_timeout: Duration,
    /// The largest MLLP frame accepted, in bytes.
    #[arg(long, env = "KITH_MLLP_MAX_FRAME", default_value_t = kith_hl7::mllp::DEFAULT_MAX_FRAME)]
    pub mllp_max_frame: usize,
    /// Threads committing MLLP messages (default: 1 on SQLite, 4 on PostgreSQL).
    #[arg(long, env = "KITH_MLLP_WRITERS")]
    pub mllp_writers: Option<usize>,
    /// The most MLLP messages committed in one transaction.
    #[arg(long, env = "KITH_MLLP_MAX_BATCH", default_value_t = 64)]
    pub mllp_max_batch: usize,
    /// Serve MLLP over TLS with this certificate chain (PEM, server certificate first).
    #[arg(long, env = "KITH_MLLP_TLS_CERT", requires = "mllp_tls_key")]
    pub mllp_tls_cert: Option<std::path::PathBuf>,
    /// The private key of --mllp-tls-cert (PEM).
    #[arg(long, env = "KITH_MLLP_TLS_KEY", requires = "mllp_tls_cert")]
    pub mllp_tls_key: Option<std::path::PathBuf>,
    /// Accept MLLP connections that no integration's credentials bind (each message's
    /// integration is then the one its MSH-4 claims). For a test bench only: anyone who can
    /// reach the port can send as any organisation.
    #[arg(long, env = "KITH_MLLP_UNAUTHENTICATED")]
    pub mllp_unauthenticated: bool,
    /// Where people reach Kith (e.g. https://kith.example.org): links in emails use it, and
    /// with https cookies are Secure and HSTS is sent. Default: http:// and the listen address.
    #[arg(long, env = "KITH_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Sign-in and password-reset attempts one address may make in a burst (then one every
    /// six seconds).
    #[arg(long, env = "KITH_SIGN_IN_BURST", default_value_t = 10)]
    pub sign_in_burst: u32,
    /// Do not deliver the outbox from this process (run `kith worker` instead).
    #[arg(long, env = "KITH_NO_OUTBOX_WORKER")]
    pub no_outbox_worker: bool,
    /// Where the outbox's file sink writes, instead of KITH_OUTBOX_DIR (the demo's own).
    #[arg(skip)]
    pub outbox_dir: Option<std::path::PathBuf>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    kith_core::team::parse_duration(text)
}

impl ServeArgs {
    /// HTTP only, on `listen`.
    pub fn http(listen: SocketAddr) -> Self {
        ServeArgs {
            listen,
            mllp_listen: None,
            mllp_max_connections: 256,
            mllp_max_per_address: 32,
            mllp_idle_timeout: Duration::from_secs(600),
            mllp_max_frame: kith_hl7::mllp::DEFAULT_MAX_FRAME,
            mllp_writers: None,
            mllp_max_batch: 64,
            mllp_tls_cert: None,
            mllp_tls_key: None,
            mllp_unauthenticated: false,
            public_url: None,
            sign_in_burst: 10,
            no_outbox_worker: false,
            outbox_dir: None,
        }
    }
}

pub fn run(config: &StorageConfig, args: ServeArgs) -> anyhow::Result<()> {
    let app = open_app(config)?.with_sealing_key(config.sealing_key()?);
    tracing::info!(database = %config.database_url()?, "database ready");
    serve_app(app, args)
}

/// Serves `app` until interrupted (Ctrl-C or SIGTERM), finishing HTTP requests in flight.
pub fn serve_app(app: App, args: ServeArgs) -> anyhow::Result<()> {
    // Delivery settings are checked before anything listens: a bad KITH_SMTP_URL stops
    // start-up with a clear message instead of failing at each send.
    let delivery = if args.no_outbox_worker {
        None
    } else {
        let mut delivery = crate::delivery::DeliveryConfig::from_env()?;
        if let Some(directory) = &args.outbox_dir {
            delivery.outbox_dir = directory.clone();
        }
        Some(delivery)
    };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    // The last handle on the store is dropped here, after the runtime: the PostgreSQL
    // client's connections must not be closed from inside the runtime (it panics).
    let keep = app.clone();
    let result = runtime.block_on(async move {
        if let Some(mllp_address) = args.mllp_listen {
            if args.mllp_unauthenticated && !mllp_address.ip().is_loopback() {
                anyhow::bail!(
                    "--mllp-unauthenticated is for a test bench: it listens on a loopback address only (127.0.0.1 or ::1), not {mllp_address}"
                );
            }
            if args.mllp_unauthenticated {
                tracing::warn!("MLLP connections are not authenticated (--mllp-unauthenticated): a test bench only");
                eprintln!(
                    "kith: warning: MLLP connections are not authenticated (--mllp-unauthenticated); anyone who can reach the port can send as any organisation"
                );
            } else if !tokio::task::block_in_place(|| app.any_mllp_binding())? {
                anyhow::bail!(
                    "MLLP needs to know who is sending: no integration has an allowed address or a client certificate.\n\
                     Bind one (kith integration bind --org ORG --facility FACILITY --allow-address ADDRESS, or --client-cert CERT.pem\n\
                     with --mllp-tls-cert/--mllp-tls-key), or for a test bench start with --mllp-unauthenticated."
                );
            }
            let tls = match (&args.mllp_tls_cert, &args.mllp_tls_key) {
                (Some(certificate), Some(key)) => Some(crate::mllp::tls_acceptor(certificate, key)?),
                _ => None,
            };
            let listener = tokio::net::TcpListener::bind(mllp_address)
                .await
                .with_context(|| format!("listening for MLLP on {mllp_address}"))?;
            let address = listener.local_addr()?;
            tracing::info!(%address, "serving HL7 v2 over MLLP");
            eprintln!("kith: MLLP listening on {address}");
            if tls.is_some() {
                eprintln!("kith: MLLP connections use TLS");
            }
            let config = crate::mllp::MllpConfig {
                max_frame: args.mllp_max_frame,
                max_connections: args.mllp_max_connections.max(1),
                max_per_address: args.mllp_max_per_address.max(1),
                idle_timeout: args.mllp_idle_timeout,
                writers: args.mllp_writers.unwrap_or(match app.store().dialect() {
                    kith_store::Dialect::Sqlite => 1,
                    kith_store::Dialect::Postgres => 4,
                }),
                max_batch: args.mllp_max_batch,
                tls,
                unauthenticated: args.mllp_unauthenticated,
            };
            tokio::spawn(crate::mllp::serve(listener, app.clone(), config));
        }
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let address = listener.local_addr()?;
        tracing::info!(%address, "serving HTTP");
        eprintln!("kith: listening on http://{address}");
        let public_url = args.public_url.clone().unwrap_or_else(|| format!("http://{address}"));
        let config = kith_web::WebConfig {
            public_url: public_url.trim_end_matches('/').to_owned(),
            attempt_burst: args.sign_in_burst.max(1),
            ..kith_web::WebConfig::default()
        };
        let worker = delivery.map(|mut delivery| {
            delivery.public_url = config.public_url.clone();
            eprintln!("kith: outbox delivery: {}", delivery.describe());
            crate::delivery::spawn_worker(app.clone(), delivery)
        });
        let router = kith_web::router_with(app, config);
        let served = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("serving HTTP");
        // The message in hand is sent and recorded before the process ends.
        if let Some(worker) = worker {
            tokio::task::block_in_place(|| worker.stop());
        }
        served
    });
    drop(runtime);
    drop(keep);
    result
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
