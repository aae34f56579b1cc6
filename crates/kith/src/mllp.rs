//! The MLLP listener: one task per connection, messages applied in order, each ACK written
//! only after `App::ingest_hl7` has committed the message and its effects.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kith_app::App;
use kith_hl7::ack::AckCode;
use kith_hl7::mllp::{self, FrameEvent, Framer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// How the listener behaves.
#[derive(Clone, Debug)]
pub struct MllpConfig {
    pub max_frame: usize,
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

/// Accepts connections until the task is dropped. Connections beyond the limit wait in the
/// accept queue (backpressure) rather than being refused.
pub async fn serve(listener: TcpListener, app: App, config: MllpConfig) {
    let permits = Arc::new(Semaphore::new(config.max_connections));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "MLLP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = app.clone();
        let config = config.clone();
        tokio::spawn(async move {
            if let Err(error) = connection(stream, peer, app, &config).await {
                tracing::info!(%peer, %error, "MLLP connection ended");
            }
            drop(permit);
        });
    }
}

async fn connection(mut stream: TcpStream, peer: SocketAddr, app: App, config: &MllpConfig) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut framer = Framer::new(config.max_frame);
    let mut buffer = vec![0u8; 64 * 1024];
    tracing::debug!(%peer, "MLLP connection opened");
    loop {
        let read = match tokio::time::timeout(config.idle_timeout, stream.read(&mut buffer)).await {
            Ok(read) => read?,
            Err(_) => {
                tracing::debug!(%peer, "MLLP connection idle: closing");
                return Ok(());
            }
        };
        if read == 0 {
            if framer.in_frame() {
                tracing::info!(%peer, "MLLP connection closed in the middle of a frame");
            }
            return Ok(());
        }
        framer.push(&buffer[..read]);
        while let Some(event) = framer.next_event() {
            let ack = match event {
                FrameEvent::Frame(frame) => ingest(&app, frame).await,
                FrameEvent::TooLarge { limit } => {
                    tracing::warn!(%peer, limit, "MLLP frame over the size limit rejected");
                    app.ack_without_ingesting(None, AckCode::Reject, &format!("message larger than {limit} bytes"))
                }
            };
            stream.write_all(&mllp::frame(ack.as_bytes())).await?;
        }
        stream.flush().await?;
    }
}

/// Ingests on a blocking thread (the store is synchronous) and returns the ACK to send.
async fn ingest(app: &App, frame: Vec<u8>) -> String {
    let worker = app.clone();
    let result = tokio::task::spawn_blocking(move || {
        let outcome = worker.ingest_hl7(kith_app::Hl7Sender::Mllp, &frame);
        (outcome, frame)
    })
    .await;
    match result {
        Ok((Ok(ingested), _)) => {
            metrics_line(&ingested);
            ingested.ack
        }
        Ok((Err(error), frame)) => {
            tracing::error!(%error, "HL7 message could not be stored");
            app.ack_without_ingesting(
                Some(&frame),
                AckCode::Error,
                "internal error: nothing was applied; send it again",
            )
        }
        Err(join_error) => {
            tracing::error!(%join_error, "HL7 ingestion task failed");
            app.ack_without_ingesting(None, AckCode::Error, "internal error: nothing was applied; send it again")
        }
    }
}

/// One log line per message: outcome only, never content or identifiers.
fn metrics_line(ingested: &kith_app::Ingested) {
    tracing::debug!(code = ingested.code.code(), duplicate = ingested.duplicate, "HL7 message acknowledged");
}
