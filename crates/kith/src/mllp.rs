//! The MLLP listener: one task per connection, bound to one integration before its first
//! message is read (by its TLS client certificate or its source address, as
//! `kith_core::integration::bind_connection` decides; a connection bound to none is closed),
//! messages applied in order, each ACK written only after the message and its effects are
//! committed. With a certificate and key the listener speaks TLS (rustls; TLS 1.2 and 1.3),
//! and a handshake that does not finish in ten seconds is dropped.
//!
//! Connection tasks hand their frames to writer threads through a bounded queue. A writer
//! takes every frame waiting (up to a batch limit) and ingests them in one transaction
//! (`App::ingest_hl7_batch`), so concurrent connections share one commit and one disk
//! flush; then it answers each connection. A connection waits for its ACK before reading
//! its next message, so its messages stay in order.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kith_app::App;
use kith_core::integration::ConnectionFacts;
use kith_core::model::Integration;
use kith_hl7::ack::AckCode;
use kith_hl7::mllp::{self, FrameEvent, Framer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::crypto::{verify_tls12_signature, verify_tls13_signature};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

/// How the listener behaves.
#[derive(Clone)]
pub struct MllpConfig {
    pub max_frame: usize,
    pub max_connections: usize,
    /// The most connections one source address holds at once; more are closed at once.
    pub max_per_address: usize,
    /// How long a connection may stay idle between messages, and the longest one message
    /// (from its first byte to its last) may take to arrive: a client trickling a byte now
    /// and then cannot hold a slot for ever.
    pub idle_timeout: Duration,
    /// Writer threads: 1 suits SQLite (one writer at a time); PostgreSQL takes several.
    pub writers: usize,
    /// The most messages committed together.
    pub max_batch: usize,
    /// TLS, when a certificate and key were given. Clients may present a certificate,
    /// which binds the connection to the integration that pinned it.
    pub tls: Option<TlsAcceptor>,
    /// `--mllp-unauthenticated` (a test bench): connections are not bound; each message's
    /// integration is the one its MSH-4 names.
    pub unauthenticated: bool,
}

/// How often an open connection's binding is checked again (an integration revoked or
/// re-bound meanwhile closes it before its next message is applied).
const REBIND_AFTER: Duration = Duration::from_secs(5);

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS acceptor from PEM files: the certificate chain (server certificate first) and its
/// private key (PKCS#8, PKCS#1 or SEC1). Checked at start-up, with what is wrong.
pub fn tls_acceptor(certificate: &std::path::Path, key: &std::path::Path) -> anyhow::Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(certificate)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|error| anyhow::anyhow!("{error}"))
        .with_context(|| format!("reading the MLLP TLS certificate {}", certificate.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{} holds no PEM certificate", certificate.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|error| anyhow::anyhow!("{error}"))
        .with_context(|| format!("reading the MLLP TLS private key {}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedClientCertificates { algorithms: provider.signature_verification_algorithms });
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("the MLLP TLS certificate and key do not go together")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Client certificates are optional and pinned, not chained: a client that presents one
/// must prove it holds the key (the handshake signature, checked here), and the
/// certificate's SHA-256 must then be the one an integration pinned (checked when the
/// connection is bound, against the database as it is then). No CA is involved, so no
/// chain is built and no CA can mint a certificate that binds.
#[derive(Debug)]
struct PinnedClientCertificates {
    algorithms: tokio_rustls::rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PinnedClientCertificates {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, tokio_rustls::rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        verify_tls12_signature(message, certificate, signature, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        verify_tls13_signature(message, certificate, signature, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A frame waiting to be ingested, the integration its connection is bound to (none on an
/// unauthenticated listener), and where its ACK goes.
struct Job {
    frame: Vec<u8>,
    integration: Option<Arc<Integration>>,
    reply: tokio::sync::oneshot::Sender<String>,
}

/// Starts the writer threads; frames sent to the returned queue are ingested in batches.
fn start_writers(app: &App, config: &MllpConfig) -> tokio::sync::mpsc::Sender<Job> {
    let (queue, jobs) = tokio::sync::mpsc::channel::<Job>(config.max_batch * 4);
    let jobs = Arc::new(std::sync::Mutex::new(jobs));
    for number in 0..config.writers.max(1) {
        let (app, jobs, max_batch) = (app.clone(), jobs.clone(), config.max_batch.max(1));
        std::thread::Builder::new()
            .name(format!("kith-mllp-writer-{number}"))
            .spawn(move || writer(&app, &jobs, max_batch))
            .expect("a writer thread starts");
    }
    queue
}

fn writer(app: &App, jobs: &std::sync::Mutex<tokio::sync::mpsc::Receiver<Job>>, max_batch: usize) {
    loop {
        let batch: Vec<Job> = {
            let mut jobs = jobs.lock().unwrap_or_else(|poison| poison.into_inner());
            let Some(first) = jobs.blocking_recv() else { return };
            let mut batch = vec![first];
            while batch.len() < max_batch {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        let messages: Vec<(kith_app::Hl7Sender<'_>, &[u8])> = batch
            .iter()
            .map(|job| {
                let sender = match &job.integration {
                    Some(integration) => kith_app::Hl7Sender::Integration(integration),
                    None => kith_app::Hl7Sender::UnauthenticatedMllp,
                };
                (sender, job.frame.as_slice())
            })
            .collect();
        let acks: Vec<String> = app.ingest_hl7_batch(&messages).into_iter().map(|one| one.ack).collect();
        for (job, ack) in batch.into_iter().zip(acks) {
            // The connection may have gone; its message is committed either way.
            let _ = job.reply.send(ack);
        }
    }
}

/// Accepts connections until the task is dropped. Connections beyond the limit wait in the
/// accept queue (backpressure) rather than being refused.
pub async fn serve(listener: TcpListener, app: App, config: MllpConfig) {
    let queue = start_writers(&app, &config);
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let per_address = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<IpAddr, usize>::new()));
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
        let Some(slot) = AddressSlot::take(&per_address, peer.ip(), config.max_per_address) else {
            tracing::warn!(%peer, limit = config.max_per_address, "MLLP connection refused: too many from this address");
            drop(stream);
            continue;
        };
        let (app, config, queue) = (app.clone(), config.clone(), queue.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let _ = stream.set_nodelay(true);
            let ended = match &config.tls {
                None => connection(stream, peer, None, app, queue, &config).await,
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let certificate = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(<[CertificateDer<'_>]>::first)
                            .map(|certificate| kith_app::certificate_sha256(certificate.as_ref()));
                        connection(tls, peer, certificate, app, queue, &config).await
                    }
                    Ok(Err(error)) => Err(error),
                    Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")),
                },
            };
            if let Err(error) = ended {
                tracing::info!(%peer, %error, "MLLP connection ended");
            }
            drop(permit);
        });
    }
}

/// One of a source address's connection slots, given back when the connection ends.
struct AddressSlot {
    counts: Arc<std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>>,
    address: IpAddr,
}

impl AddressSlot {
    fn take(
        counts: &Arc<std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>>,
        address: IpAddr,
        limit: usize,
    ) -> Option<Self> {
        let mut map = counts.lock().unwrap_or_else(|poison| poison.into_inner());
        let count = map.entry(address).or_default();
        if *count >= limit.max(1) {
            return None;
        }
        *count += 1;
        Some(AddressSlot { counts: counts.clone(), address })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some(count) = map.get_mut(&self.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&self.address);
            }
        }
    }
}

/// The integration a connection's credentials name, as the database says now; `None` (and
/// a warning naming the peer and why) when it names none.
async fn bind(app: &App, peer: SocketAddr, certificate: Option<[u8; 32]>) -> Option<Arc<Integration>> {
    let app = app.clone();
    let facts = ConnectionFacts { peer: peer.ip(), certificate };
    match tokio::task::spawn_blocking(move || app.bind_mllp_connection(&facts)).await {
        Ok(Ok(Ok(integration))) => Some(Arc::new(integration)),
        Ok(Ok(Err(refusal))) => {
            tracing::warn!(%peer, %refusal, "MLLP connection refused: it is bound to no integration");
            None
        }
        Ok(Err(error)) => {
            tracing::error!(%peer, %error, "MLLP connection refused: its integration could not be looked up");
            None
        }
        Err(_) => None,
    }
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    certificate: Option<[u8; 32]>,
    app: App,
    queue: tokio::sync::mpsc::Sender<Job>,
    config: &MllpConfig,
) -> std::io::Result<()> {
    // Bound before its first message is read: a connection no integration's credentials
    // admit is closed without a word.
    let mut integration = None;
    let mut bound_at = std::time::Instant::now();
    if !config.unauthenticated {
        integration = bind(&app, peer, certificate).await;
        if integration.is_none() {
            let _ = stream.shutdown().await;
            return Ok(());
        }
    }
    let mut framer = Framer::new(config.max_frame);
    let mut buffer = vec![0u8; 64 * 1024];
    tracing::debug!(%peer, "MLLP connection opened");
    // When the frame being received must be complete (from its first byte).
    let mut frame_deadline: Option<tokio::time::Instant> = None;
    loop {
        let wait = match frame_deadline {
            Some(deadline) => deadline.saturating_duration_since(tokio::time::Instant::now()),
            None => config.idle_timeout,
        };
        let read = match tokio::time::timeout(wait, stream.read(&mut buffer)).await {
            Ok(read) => read?,
            Err(_) if frame_deadline.is_some() => {
                tracing::info!(%peer, "MLLP connection closed: a message took too long to arrive");
                return Ok(());
            }
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
            if integration.is_some() && bound_at.elapsed() >= REBIND_AFTER {
                let again = bind(&app, peer, certificate).await;
                if again.as_ref().map(|i| i.id) != integration.as_ref().map(|i| i.id) {
                    tracing::warn!(%peer, "MLLP connection closed: its integration was revoked or re-bound");
                    let _ = stream.shutdown().await;
                    return Ok(());
                }
                (integration, bound_at) = (again, std::time::Instant::now());
            }
            let ack = match event {
                FrameEvent::Frame(frame) => ingest(&app, &queue, frame, integration.clone()).await,
                FrameEvent::TooLarge { limit } => {
                    tracing::warn!(%peer, limit, "MLLP frame over the size limit rejected");
                    app.ack_without_ingesting(None, AckCode::Reject, &format!("message larger than {limit} bytes"))
                }
            };
            stream.write_all(&mllp::frame(ack.as_bytes())).await?;
            frame_deadline = None;
        }
        if framer.in_frame() && frame_deadline.is_none() {
            frame_deadline = Some(tokio::time::Instant::now() + config.idle_timeout);
        }
        stream.flush().await?;
    }
}

/// Queues a frame for a writer and waits for its ACK.
async fn ingest(
    app: &App,
    queue: &tokio::sync::mpsc::Sender<Job>,
    frame: Vec<u8>,
    integration: Option<Arc<Integration>>,
) -> String {
    let (reply, ack) = tokio::sync::oneshot::channel();
    if queue.send(Job { frame, integration, reply }).await.is_err() {
        return app.ack_nothing_applied(None);
    }
    match ack.await {
        Ok(ack) => ack,
        Err(_) => app.ack_nothing_applied(None),
    }
}
