//! The server: HTTPS with rustls (optionally asking for client certificates issued by a trusted
//! CA) or plain HTTP for local tests, HTTP/1.1 keep-alive and HTTP/2, and a graceful shutdown that
//! stops accepting, lets in-flight requests finish within a drain time, then closes.
//!
//! A national system is a public endpoint, so every connection is held to limits
//! ([`ServeOptions`]):
//!
//! - **Open connections** are capped per node, below the process's open-file limit, and per
//!   source address, so that one client cannot take them all. At a cap a
//!   new connection is accepted and closed at once (cheap: no TLS handshake, no task), the
//!   connections the node has keep being served, and the log says so once per episode. When
//!   `accept` itself fails (the file limit reached all the same), the loop backs off instead of
//!   retrying at once.
//! - **A request's head** (HTTP/1.1) must arrive within the header-read timeout of its first
//!   byte; a TLS handshake within the same time.
//! - **An idle connection** (no request in flight) is closed after the idle timeout, on HTTP/2
//!   with a GOAWAY.
//! - **A body** must keep up a minimum rate after a grace period: a body that trickles in, or a
//!   `Content-Length` larger than what is sent, fails the read instead of holding the handler.
//! - **Every refusal is a complete response.** A handler that answers without reading the body
//!   (401, 403, 404, 413, 429, 503, ...) has the rest of the body read and discarded up to a bound
//!   before the answer goes out, so the connection stays usable (HTTP/1.1 keep-alive) and the
//!   HTTP/2 stream ends cleanly. Over the bound the answer says `Connection: close`, and closing
//!   lingers: the node keeps reading and discarding for a moment after its last byte, so that
//!   the client reads the answer instead of a reset.
//!
//! The figures (open connections, the cap, refusals, accept errors, timeouts) are in `/metrics`
//! through [`ConnectionStats::render`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Version, header};
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use openmvs_telemetry::Exposition;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
// Tokio's clock, which is the monotonic clock unless a test pauses it and moves it by hand.
use tokio::time::Instant;
use tower::ServiceExt;

/// The DNS names of the client certificate a connection presented, once its chain verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerName(pub Vec<String>);

/// The address a request's connection comes from, as an extension of every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

/// Whether the request came over TLS (a request extension), for answers that name their own
/// URL, such as a WSDL's endpoint.
#[derive(Debug, Clone, Copy)]
pub struct OverTls(pub bool);

/// TLS material of a server.
pub struct TlsConfig {
    /// The server's certificate chain.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// Its key.
    pub key: PrivateKeyDer<'static>,
    /// When set, clients may present a certificate issued by one of these CAs; what needs one
    /// (the hub's internal routes, NMVS SOAP logins configured to) checks its name. Clients
    /// without one still connect.
    pub client_ca: Option<Vec<CertificateDer<'static>>>,
    /// Revoked client certificates.
    pub crls: Vec<CertificateRevocationListDer<'static>>,
}

impl TlsConfig {
    /// Reads PEM files.
    pub fn from_pem_files(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<TlsConfig, String> {
        let certs = |p: &Path| -> Result<Vec<CertificateDer<'static>>, String> {
            CertificateDer::pem_file_iter(p)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("{}: {e}", p.display()))
        };
        Ok(TlsConfig {
            cert_chain: certs(cert)?,
            key: PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?,
            client_ca: client_ca.map(certs).transpose()?,
            crls: Vec::new(),
        })
    }

    fn clone_config(&self) -> TlsConfig {
        TlsConfig {
            cert_chain: self.cert_chain.clone(),
            key: self.key.clone_key(),
            client_ca: self.client_ca.clone(),
            crls: self.crls.clone(),
        }
    }

    fn server_config(self) -> Result<rustls::ServerConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match self.client_ca {
            Some(cas) => {
                let mut roots = RootCertStore::empty();
                for c in cas {
                    roots.add(c).map_err(|e| format!("client CA: {e}"))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .with_crls(self.crls)
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| format!("client verifier: {e}"))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(self.cert_chain, self.key)
            .map_err(|e| format!("server certificate: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// The TLS acceptor of a running server and what it was built from, so that a new revocation
/// list can replace it while connections are being accepted.
struct Tls {
    template: TlsConfig,
    acceptor: tokio_rustls::TlsAcceptor,
}

/// Replaces the revocation lists of a running server's client certificates.
#[derive(Clone)]
pub struct TlsReloader(Arc<std::sync::RwLock<Tls>>);

impl TlsReloader {
    /// Every connection accepted from now on is verified against `crls` (established connections
    /// keep the peer they verified). An error (a list that does not parse) changes nothing.
    pub fn set_crls(&self, crls: Vec<CertificateRevocationListDer<'static>>) -> Result<(), String> {
        let mut guard = self.0.write().unwrap_or_else(|p| p.into_inner());
        let mut next = guard.template.clone_config();
        next.crls = crls;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(next.clone_config().server_config()?));
        *guard = Tls { template: next, acceptor };
        Ok(())
    }
}

/// The limits every connection is held to. The defaults are argued at each field; the
/// configuration files set them under `limits` (see `openmvs config check`).
#[derive(Clone)]
pub struct ServeOptions {
    /// A TLS handshake, and on HTTP/1.1 a request head from its first byte, must complete within
    /// this. Default 10 s: a head is a few hundred bytes, which any client on any link sends in
    /// well under a second; a slow one is a held connection and nothing else.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight is closed after this. Default 60 s: a pharmacy's
    /// terminal that scans every few seconds keeps its connection, one that went quiet frees its
    /// place (load balancers use the same order of magnitude).
    pub idle_timeout: Duration,
    /// A body must arrive at no less than this many bytes per second on average, counted from
    /// the handler's first read, once [`body_grace`](Self::body_grace) has passed; 0 turns the
    /// rule off. Default 1,024: the largest single-pack body (16 KiB) then may take 16 s, a
    /// 32 MiB bulk half an hour; one byte a second fails after the grace period.
    pub body_min_rate: u64,
    /// How long any body may take whatever its rate. Default 10 s.
    pub body_grace: Duration,
    /// The most connections open at once on this server. Default 10,000, and never more than
    /// the process's open-file limit leaves after a reserve for the store and outgoing
    /// connections ([`FILE_RESERVE`]).
    pub max_connections: usize,
    /// The most connections open at once from one address, and never more than half of
    /// [`max_connections`](Self::max_connections) in force. Default 1,000: a pharmacy chain or a
    /// hospital behind one address has far fewer terminals, and a client that opens connections
    /// without end takes at most this share, so that others still get in.
    pub max_connections_per_address: usize,
    /// Where the server counts its connections; share it with `/metrics`.
    pub stats: Arc<ConnectionStats>,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_min_rate: 1024,
            body_grace: Duration::from_secs(10),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            stats: Arc::new(ConnectionStats::default()),
        }
    }
}

/// The default cap on open connections per server.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// The default cap on open connections from one address.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 1_000;
/// Open files kept free of connections: database files, the WAL, log files, connections to
/// PostgreSQL, the hub and callbacks.
pub const FILE_RESERVE: usize = 128;
/// The most of a refused request's body read and discarded to keep its connection usable.
pub const DRAIN_BOUND: usize = 1024 * 1024;
/// How long a refused request's body is read at most before the answer goes out.
pub const DRAIN_TIME: Duration = Duration::from_secs(2);
/// How long a closing connection keeps reading what the client still sends.
pub const LINGER_TIME: Duration = Duration::from_secs(2);
/// How many bytes a closing connection reads at most while it lingers.
const LINGER_BOUND: usize = 16 * 1024 * 1024;

/// The open-file limit of this process (the soft limit), if the platform says.
pub fn open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Raises this process's open-file limit to the hard limit the system allows and returns the
/// limit in force. A server calls it once at start.
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut l = getrlimit(Resource::Nofile);
        if l.current != l.maximum {
            l.current = l.maximum;
            if setrlimit(Resource::Nofile, l).is_err() {
                tracing::debug!("the open-file limit could not be raised");
            }
        }
        getrlimit(Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The cap in force: the configured one, lowered to what the open-file limit leaves.
pub fn effective_max_connections(configured: usize, file_limit: Option<u64>) -> usize {
    let room = file_limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    configured.min(room.saturating_sub(FILE_RESERVE)).max(1)
}

/// The share of one address in force: the configured one, at most half of the node's `cap`.
pub fn per_address_limit(configured: usize, cap: usize) -> usize {
    configured.min(cap / 2).max(1)
}

/// Connection figures of one server, for `/metrics`.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    open: AtomicUsize,
    limit: AtomicUsize,
    accepted: AtomicU64,
    refused: AtomicU64,
    refused_address: AtomicU64,
    accept_errors: AtomicU64,
    header_timeouts: AtomicU64,
    idle_closed: AtomicU64,
    slow_bodies: AtomicU64,
    at_cap: AtomicBool,
    accept_failing: AtomicBool,
}

impl ConnectionStats {
    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// The cap in force.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Connections closed at once because the cap was reached.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections closed at once because their address had its share open.
    pub fn refused_for_address(&self) -> u64 {
        self.refused_address.load(Ordering::Relaxed)
    }

    /// Connections closed because a request head or a TLS handshake took too long.
    pub fn header_timeouts(&self) -> u64 {
        self.header_timeouts.load(Ordering::Relaxed)
    }

    /// Bodies that failed the minimum rate.
    pub fn slow_bodies(&self) -> u64 {
        self.slow_bodies.load(Ordering::Relaxed)
    }

    /// Idle connections closed.
    pub fn idle_closed(&self) -> u64 {
        self.idle_closed.load(Ordering::Relaxed)
    }

    /// The figures alone in Prometheus text, as `/metrics` shows them.
    pub fn render(&self) -> String {
        let mut out = Exposition::new();
        self.write_metrics(&mut out);
        out.into_text()
    }

    /// Writes the figures into `/metrics`.
    pub fn write_metrics(&self, out: &mut Exposition) {
        let l = |o: &AtomicU64| o.load(Ordering::Relaxed);
        out.gauge("openmvs_connections_open", "Connections open now.", self.open())
            .gauge(
                "openmvs_connections_limit",
                "The most connections open at once (configured, lowered to fit the open-file limit).",
                self.limit(),
            )
            .gauge(
                "openmvs_connections_at_limit",
                "1 while new connections are refused at the limit.",
                self.at_cap.load(Ordering::Relaxed),
            )
            .counter("openmvs_connections_accepted_total", "Connections accepted.", l(&self.accepted));
        out.counter_family(
            "openmvs_connections_refused_total",
            "Connections closed at once: the node's limit, or its address's share, was reached.",
        )
        .sample(&[("reason", "limit")], l(&self.refused))
        .sample(&[("reason", "address_limit")], l(&self.refused_address));
        out.counter(
            "openmvs_accept_errors_total",
            "Failed accepts (such as the open-file limit reached); the server backs off after each.",
            l(&self.accept_errors),
        );
        out.counter_family("openmvs_connections_closed_total", "Connections the server closed, by reason.")
            .sample(&[("reason", "header_timeout")], l(&self.header_timeouts))
            .sample(&[("reason", "idle")], l(&self.idle_closed));
        out.counter(
            "openmvs_slow_bodies_total",
            "Request bodies refused for arriving under the minimum rate.",
            l(&self.slow_bodies),
        );
    }
}

/// A request body read under the minimum rate: failed with this error.
#[derive(Debug, thiserror::Error)]
#[error("the body arrived too slowly: {received} bytes in {elapsed_ms} ms, under {min_rate} bytes/s")]
pub struct BodyTooSlow {
    /// Bytes received before the read failed.
    pub received: u64,
    /// Milliseconds since the first read.
    pub elapsed_ms: u64,
    /// The rate required.
    pub min_rate: u64,
}

/// Whether an error (such as a body extractor's rejection) was caused by [`BodyTooSlow`].
pub fn is_body_too_slow(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<BodyTooSlow>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A running server.
pub struct ServerHandle {
    addr: SocketAddr,
    stop: watch::Sender<Option<Duration>>,
    task: JoinHandle<()>,
    tls: Option<Arc<std::sync::RwLock<Tls>>>,
    stats: Arc<ConnectionStats>,
    parting: Arc<AtomicBool>,
}

impl ServerHandle {
    /// Asks clients to leave while the node still serves: from now on every HTTP/1.1 answer says
    /// `Connection: close`, so that a client's next request opens a new connection, which a load
    /// balancer that saw readiness go false sends to another node. Called at the start of a
    /// graceful shutdown, before the grace time; nothing is refused.
    pub fn part(&self) {
        self.parting.store(true, Ordering::SeqCst);
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle that replaces the server's revocation lists while it runs; `None` without TLS.
    pub fn tls_reloader(&self) -> Option<TlsReloader> {
        self.tls.clone().map(TlsReloader)
    }

    /// The server's connection figures.
    pub fn stats(&self) -> Arc<ConnectionStats> {
        self.stats.clone()
    }

    /// Stops accepting, waits up to `drain` for in-flight requests, then closes what is left.
    pub async fn shutdown(self, drain: Duration) {
        let _ = self.stop.send(Some(drain));
        let _ = self.task.await;
    }
}

fn peer_names(conn: &rustls::ServerConnection) -> Option<PeerName> {
    let cert = conn.peer_certificates()?.first()?;
    let ee = webpki::EndEntityCert::try_from(cert).ok()?;
    Some(PeerName(ee.valid_dns_names().map(str::to_owned).collect()))
}

/// Listens on `addr` with a backlog of [`LISTEN_BACKLOG`] connections waiting to be accepted, so
/// that a burst of new connections is not answered with dropped handshakes.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Connections the system may hold for a listener before it accepts them.
pub const LISTEN_BACKLOG: u32 = 1024;

/// Serves `router` on `listener`, over TLS when `tls` is given, with the default limits.
pub fn serve(listener: TcpListener, router: Router, tls: Option<TlsConfig>) -> Result<ServerHandle, String> {
    serve_with(listener, router, tls, ServeOptions::default())
}

/// What a server tells its connections: keep going, finish gracefully, or stop now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Draining,
    Closing,
}

/// Serves `router` on `listener`, over TLS when `tls` is given, with the limits of `opts`.
pub fn serve_with(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsConfig>,
    opts: ServeOptions,
) -> Result<ServerHandle, String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let tls = tls
        .map(|t| -> Result<_, String> {
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(t.clone_config().server_config()?));
            Ok(Arc::new(std::sync::RwLock::new(Tls { template: t, acceptor })))
        })
        .transpose()?;
    let shared_tls = tls.clone();
    let stats = opts.stats.clone();
    let cap = effective_max_connections(opts.max_connections, open_file_limit());
    if cap < opts.max_connections {
        tracing::warn!(
            configured = opts.max_connections,
            cap,
            "the open-file limit lowers the connection limit; raise `ulimit -n` to allow more"
        );
    }
    stats.limit.store(cap, Ordering::Relaxed);
    // One address never takes more than half of the node's places, so that others always find
    // room, however low the open-file limit made the cap.
    let per_address_cap = per_address_limit(opts.max_connections_per_address, cap);
    let opts = Arc::new(opts);
    let (stop, mut stopped) = watch::channel(None::<Duration>);
    let parting = Arc::new(AtomicBool::new(false));
    let parting_conns = parting.clone();
    let task = tokio::spawn(async move {
        let (phase_tx, phase) = watch::channel(Phase::Running);
        // Connections of this server alone (the figures may be shared with another server).
        let mine = Arc::new(AtomicUsize::new(0));
        let per_address = Arc::new(PerAddress::new(per_address_cap));
        let mut builder = Builder::new(TokioExecutor::new());
        builder.http1().keep_alive(true);
        let mut backoff = Duration::ZERO;
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stopped.changed() => break,
            };
            let (tcp, remote) = match accepted {
                Ok(a) => {
                    backoff = Duration::ZERO;
                    if opts.stats.accept_failing.swap(false, Ordering::Relaxed) {
                        tracing::info!("accepting connections again");
                    }
                    a
                }
                Err(e) => {
                    // Out of files (or memory): the connection stays in the backlog and every
                    // retry fails the same way until a connection closes. Back off, keep serving.
                    opts.stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                    backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                    if !opts.stats.accept_failing.swap(true, Ordering::Relaxed) {
                        tracing::warn!(error = %e, open = opts.stats.open(), "accepting a connection failed; backing off");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stopped.changed() => break,
                    }
                    continue;
                }
            };
            if opts.stats.open.load(Ordering::Relaxed) >= cap {
                // Closed at once: no handshake, no task. The connections the node has go on.
                opts.stats.refused.fetch_add(1, Ordering::Relaxed);
                if !opts.stats.at_cap.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        limit = cap,
                        "connection limit reached: new connections are closed until some end"
                    );
                }
                drop(tcp);
                continue;
            }
            if opts.stats.at_cap.swap(false, Ordering::Relaxed) {
                tracing::info!(limit = cap, "below the connection limit again");
            }
            let Some(share) = per_address.take(remote.ip()) else {
                opts.stats.refused_address.fetch_add(1, Ordering::Relaxed);
                drop(tcp);
                continue;
            };
            opts.stats.accepted.fetch_add(1, Ordering::Relaxed);
            let _ = tcp.set_nodelay(true);
            let guard = OpenGuard::new(&opts.stats, &mine, share);
            let conn = Connection {
                router: router.clone(),
                builder: builder.clone(),
                opts: opts.clone(),
                phase: phase.clone(),
                parting: parting_conns.clone(),
                remote,
                acceptor: tls.as_ref().map(|t| t.read().unwrap_or_else(|p| p.into_inner()).acceptor.clone()),
            };
            tokio::spawn(conn.run(tcp, guard));
        }
        // New connections are refused from now on, not left waiting for the drain to end.
        drop(listener);
        let drain = stopped.borrow().unwrap_or(Duration::from_secs(10));
        let _ = phase_tx.send(Phase::Draining);
        let deadline = Instant::now() + drain;
        while mine.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if mine.load(Ordering::Acquire) > 0 {
            tracing::warn!("drain time over; closing the remaining connections");
            let _ = phase_tx.send(Phase::Closing);
            let until = Instant::now() + Duration::from_secs(1);
            while mine.load(Ordering::Acquire) > 0 && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    Ok(ServerHandle { addr, stop, task, tls: shared_tls, stats, parting })
}

/// Connections open per address, each held to a share.
struct PerAddress {
    max: usize,
    open: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

impl PerAddress {
    fn new(max: usize) -> PerAddress {
        PerAddress { max: max.max(1), open: std::sync::Mutex::new(std::collections::HashMap::new()) }
    }

    /// A place for one more connection from `ip`, or `None` when it has its share.
    fn take(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<AddressShare> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AddressShare { of: self.clone(), ip })
    }
}

/// A connection's place in its address's share.
struct AddressShare {
    of: Arc<PerAddress>,
    ip: std::net::IpAddr,
}

impl Drop for AddressShare {
    fn drop(&mut self) {
        let mut open = self.of.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Holds a place among the open connections until dropped.
struct OpenGuard {
    stats: Arc<ConnectionStats>,
    mine: Arc<AtomicUsize>,
    _share: AddressShare,
}

impl OpenGuard {
    fn new(stats: &Arc<ConnectionStats>, mine: &Arc<AtomicUsize>, share: AddressShare) -> OpenGuard {
        stats.open.fetch_add(1, Ordering::AcqRel);
        mine.fetch_add(1, Ordering::AcqRel);
        OpenGuard { stats: stats.clone(), mine: mine.clone(), _share: share }
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::AcqRel);
        self.mine.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the server knows of one connection's activity, for its timeouts.
struct Activity {
    epoch: Instant,
    /// Requests whose answer is not yet fully sent.
    in_flight: AtomicUsize,
    /// Milliseconds since `epoch` when the connection last became idle.
    idle_since: AtomicU64,
    /// One more than the milliseconds since `epoch` when the first byte of a request head
    /// arrived on an idle connection; 0 when none is being read.
    head_since: AtomicU64,
    /// The client has closed its side.
    eof: AtomicBool,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            eof: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 && self.head_since.load(Ordering::Relaxed) == 0 {
            self.head_since.store(self.now_ms() + 1, Ordering::Relaxed);
        }
    }

    fn begin(self: &Arc<Self>) -> InFlightRequest {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(0, Ordering::Relaxed);
        InFlightRequest(self.clone())
    }

    /// Why the connection should close now, if it should.
    fn expired(&self, opts: &ServeOptions, h2: bool) -> Option<Expiry> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let now = self.now_ms();
        let head = self.head_since.load(Ordering::Relaxed);
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        // HTTP/2 sends frames of its own (settings, pings, window updates) between requests:
        // there only requests count as activity.
        if !h2 && head > 0 && now.saturating_sub(head - 1) >= ms(opts.header_read_timeout) {
            return Some(Expiry::Header);
        }
        if (h2 || head == 0)
            && now.saturating_sub(self.idle_since.load(Ordering::Relaxed)) >= ms(opts.idle_timeout)
        {
            return Some(Expiry::Idle);
        }
        None
    }
}

enum Expiry {
    Header,
    Idle,
}

/// A request in flight on a connection; its end makes the connection idle again.
struct InFlightRequest(Arc<Activity>);

impl Drop for InFlightRequest {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since.store(a.now_ms(), Ordering::Relaxed);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One accepted connection, before its TLS handshake.
struct Connection {
    router: Router,
    builder: Builder<TokioExecutor>,
    opts: Arc<ServeOptions>,
    phase: watch::Receiver<Phase>,
    /// Set when the node asks its clients to leave ([`ServerHandle::part`]).
    parting: Arc<AtomicBool>,
    remote: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
}

impl Connection {
    async fn run(self, tcp: TcpStream, guard: OpenGuard) {
        let activity = Arc::new(Activity::new());
        let io = Tracked { inner: Some(tcp), activity: activity.clone(), guard: Some(guard) };
        match self.acceptor.clone() {
            Some(acceptor) => {
                // A handshake that stalls must not hold a connection.
                let tls = match tokio::time::timeout(self.opts.header_read_timeout, acceptor.accept(io)).await
                {
                    Ok(Ok(tls)) => tls,
                    // A client that went away or does not speak TLS.
                    Ok(Err(_)) => return,
                    Err(_) => {
                        self.opts.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                };
                let peer = peer_names(tls.get_ref().1);
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                self.serve(TokioIo::new(tls), peer, activity, h2, true).await;
            }
            None => self.serve(TokioIo::new(io), None, activity, false, false).await,
        }
    }

    async fn serve<I>(
        self,
        io: TokioIo<I>,
        peer: Option<PeerName>,
        activity: Arc<Activity>,
        alpn_h2: bool,
        over_tls: bool,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let h2_seen = Arc::new(AtomicBool::new(alpn_h2));
        let svc = {
            let (router, opts, activity, h2_seen, parting) = (
                self.router.clone(),
                self.opts.clone(),
                activity.clone(),
                h2_seen.clone(),
                self.parting.clone(),
            );
            let remote = self.remote;
            hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                if req.version() == Version::HTTP_2 {
                    h2_seen.store(true, Ordering::Relaxed);
                }
                let parting = parting.load(Ordering::SeqCst);
                handle(
                    router.clone(),
                    opts.clone(),
                    activity.begin(),
                    peer.clone(),
                    remote,
                    over_tls,
                    parting,
                    req,
                )
            })
        };
        let conn = self.builder.serve_connection(io, svc);
        tokio::pin!(conn);
        let tick = (self.opts.header_read_timeout.min(self.opts.idle_timeout) / 4)
            .clamp(Duration::from_millis(20), Duration::from_secs(1));
        let mut phase = self.phase;
        // Set once the connection was asked to finish: gracefully, then closed at this time.
        let mut closing_at: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = tokio::time::sleep(tick) => {}
                changed = phase.changed() => {
                    let now = changed.map(|()| *phase.borrow_and_update());
                    match now {
                        Ok(Phase::Running) => {}
                        Ok(Phase::Draining) => {
                            if closing_at.is_none() {
                                conn.as_mut().graceful_shutdown();
                            }
                            // The server closes what is left when its drain time is over.
                            closing_at = Some(Instant::now() + Duration::from_secs(24 * 3600));
                        }
                        Ok(Phase::Closing) | Err(_) => return,
                    }
                    continue;
                }
            }
            if let Some(at) = closing_at {
                if Instant::now() >= at {
                    return;
                }
                continue;
            }
            match activity.expired(&self.opts, h2_seen.load(Ordering::Relaxed)) {
                Some(Expiry::Header) => {
                    self.opts.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Some(Expiry::Idle) => {
                    self.opts.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                    if activity.eof.load(Ordering::Relaxed) {
                        return;
                    }
                    // HTTP/2 says GOAWAY; an HTTP/1.1 connection between requests just closes.
                    conn.as_mut().graceful_shutdown();
                    closing_at = Some(Instant::now() + self.opts.header_read_timeout);
                }
                None => {}
            }
        }
    }
}

/// Serves one request: the body held to its minimum rate, the peer's identity and address as
/// extensions, and a body the handler left unread read and discarded before the answer goes out.
#[allow(clippy::too_many_arguments)]
async fn handle(
    router: Router,
    opts: Arc<ServeOptions>,
    in_flight: InFlightRequest,
    peer: Option<PeerName>,
    remote: SocketAddr,
    over_tls: bool,
    parting: bool,
    req: Request<hyper::body::Incoming>,
) -> Result<Response, Infallible> {
    let version = req.version();
    let (mut parts, incoming) = req.into_parts();
    if let Some(p) = peer {
        parts.extensions.insert(p);
    }
    parts.extensions.insert(RemoteAddr(remote));
    parts.extensions.insert(OverTls(over_tls));
    let (back, mut returned) = oneshot::channel();
    let body = Body::new(Returning {
        inner: Some(MinRate::new(incoming, opts.body_min_rate, opts.body_grace, opts.stats.clone())),
        back: Some(back),
    });
    let Ok(mut resp) = router.oneshot(Request::from_parts(parts, body)).await;
    let mut unread = None;
    // The handler's future is over, so the body is back unless it ended (or something it
    // started still holds it, which then reads it).
    if let Ok(rest) = returned.try_recv()
        && let Err(rest) = drain(rest).await
    {
        if version < Version::HTTP_2 {
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        // Kept until the answer is sent, then read on for a moment: on HTTP/2, dropping it
        // would reset the stream and discard the answer queued behind the reset.
        unread = Some(rest);
    }
    if parting && version < Version::HTTP_2 {
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(resp.map(|b| Body::new(Answer { inner: b, _in_flight: in_flight, _unread: unread })))
}

/// Reads and discards what is left of a body, up to [`DRAIN_BOUND`] within [`DRAIN_TIME`];
/// gives the body back when it does not end within those.
async fn drain<B>(mut body: B) -> Result<(), B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    if body.is_end_stream() {
        return Ok(());
    }
    if body.size_hint().lower() > DRAIN_BOUND as u64 {
        return Err(body);
    }
    let all = tokio::time::timeout(DRAIN_TIME, async {
        let mut n = 0usize;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    n += f.data_ref().map_or(0, Bytes::len);
                    if n > DRAIN_BOUND {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
        true
    })
    .await;
    if all == Ok(true) { Ok(()) } else { Err(body) }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body that goes back to the server when the handler drops it unfinished.
struct Returning<B> {
    inner: Option<B>,
    back: Option<oneshot::Sender<B>>,
}

impl<B> HttpBody for Returning<B>
where
    B: HttpBody<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.inner.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl<B> Drop for Returning<B> {
    fn drop(&mut self) {
        if let (Some(inner), Some(back)) = (self.inner.take(), self.back.take()) {
            let _ = back.send(inner);
        }
    }
}

/// A request body held to a minimum average rate once a grace period has passed.
struct MinRate {
    inner: hyper::body::Incoming,
    min_rate: u64,
    grace: Duration,
    started: Option<Instant>,
    received: u64,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    stats: Arc<ConnectionStats>,
    failed: bool,
}

impl MinRate {
    fn new(
        inner: hyper::body::Incoming,
        min_rate: u64,
        grace: Duration,
        stats: Arc<ConnectionStats>,
    ) -> MinRate {
        MinRate { inner, min_rate, grace, started: None, received: 0, sleep: None, stats, failed: false }
    }

    /// When the body falls under the rate if nothing more arrives.
    fn deadline(&self, started: Instant) -> Instant {
        let earned = Duration::from_secs_f64(self.received as f64 / self.min_rate as f64);
        started + self.grace.max(earned)
    }

    fn too_slow(&mut self, started: Instant) -> BoxError {
        if !self.failed {
            self.failed = true;
            self.stats.slow_bodies.fetch_add(1, Ordering::Relaxed);
        }
        Box::new(BodyTooSlow {
            received: self.received,
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            min_rate: self.min_rate,
        })
    }
}

impl HttpBody for MinRate {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let started = *this.started.get_or_insert_with(Instant::now);
        if this.failed {
            return Poll::Ready(Some(Err(this.too_slow(started))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.received += frame.data_ref().map_or(0, |d| d.len() as u64);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending if this.min_rate == 0 => Poll::Pending,
            Poll::Pending => {
                let deadline = this.deadline(started);
                if Instant::now() >= deadline {
                    return Poll::Ready(Some(Err(this.too_slow(started))));
                }
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.deadline() != deadline {
                    sleep.as_mut().reset(deadline);
                }
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(this.too_slow(started)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An answer's body; when it is sent (or dropped) the request is over.
struct Answer {
    inner: Body,
    _in_flight: InFlightRequest,
    _unread: Option<MinRate>,
}

impl HttpBody for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if let Some(rest) = self._unread.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(discard(rest));
        }
    }
}

/// What is left of a refused request's body once its answer is out: read and discarded while
/// the client still sends (up to [`LINGER_BOUND`], for at most [`LINGER_TIME`]). A body that does
/// not end within those is held unread until the time is over, then dropped: on HTTP/2 dropping
/// it resets the stream, and a reset sent at once would discard the answer still queued.
async fn discard(mut body: MinRate) {
    let until = Instant::now() + LINGER_TIME;
    let ended = tokio::time::timeout_at(until, async {
        let mut n = 0usize;
        loop {
            match body.frame().await {
                None => return true,
                Some(Err(_)) => return false,
                Some(Ok(f)) => {
                    n += f.data_ref().map_or(0, Bytes::len);
                    if n > LINGER_BOUND {
                        return false;
                    }
                }
            }
        }
    })
    .await;
    if ended != Ok(true) {
        tokio::time::sleep_until(until).await;
    }
}

/// The TCP stream of a connection: notes reads for the header timeout, and when dropped reads
/// and discards what the client still sends for a moment before closing, so that a client still
/// sending when the server closes reads the server's last answer instead of a reset.
struct Tracked {
    inner: Option<TcpStream>,
    activity: Arc<Activity>,
    guard: Option<OpenGuard>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let Some(tcp) = this.inner.as_mut() else { return Poll::Ready(Ok(())) };
        let before = buf.filled().len();
        let r = Pin::new(tcp).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            if buf.filled().len() > before {
                this.activity.bytes_read();
            } else {
                this.activity.eof.store(true, Ordering::Relaxed);
            }
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.inner.as_mut() {
            Some(tcp) => Pin::new(tcp).poll_write(cx, buf),
            None => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.inner.as_mut() {
            Some(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            None => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(tcp) => Pin::new(tcp).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(tcp) => Pin::new(tcp).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let (Some(tcp), guard) = (self.inner.take(), self.guard.take()) else { return };
        if self.activity.eof.load(Ordering::Relaxed) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        rt.spawn(linger(tcp, guard));
    }
}

/// Closes our side, then reads and discards until the client closes its side, for at most
/// [`LINGER_TIME`] and [`LINGER_BOUND`] bytes. The connection keeps its place meanwhile.
async fn linger(mut tcp: TcpStream, guard: Option<OpenGuard>) {
    use tokio::io::AsyncWriteExt;
    let _ = tcp.shutdown().await;
    let _ = tokio::time::timeout(LINGER_TIME, async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut n = 0usize;
        while n < LINGER_BOUND {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(k) => n += k,
            }
        }
    })
    .await;
    drop(guard);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_leaves_a_reserve_of_the_open_file_limit() {
        assert_eq!(effective_max_connections(10_000, Some(1024)), 1024 - FILE_RESERVE);
        assert_eq!(effective_max_connections(500, Some(1024)), 500);
        assert_eq!(effective_max_connections(500, None), 500);
        assert_eq!(effective_max_connections(500, Some(10)), 1);
    }

    #[test]
    fn one_address_never_takes_more_than_half_of_the_places() {
        assert_eq!(per_address_limit(1000, 10_000), 1000);
        assert_eq!(per_address_limit(1000, 896), 448);
        assert_eq!(per_address_limit(1000, 1), 1);
    }

    #[test]
    fn an_idle_connection_expires_after_the_idle_timeout_and_a_slow_head_after_the_header_timeout() {
        let opts = ServeOptions {
            header_read_timeout: Duration::from_millis(0),
            idle_timeout: Duration::from_secs(3600),
            ..ServeOptions::default()
        };
        let a = Arc::new(Activity::new());
        assert!(a.expired(&opts, false).is_none(), "idle, within the idle timeout");
        a.bytes_read();
        assert!(matches!(a.expired(&opts, false), Some(Expiry::Header)), "a head started and is late");
        assert!(a.expired(&opts, true).is_none(), "HTTP/2 frames between requests are not a head");
        let r = a.begin();
        assert!(a.expired(&opts, false).is_none(), "a request in flight never expires");
        drop(r);
        let idle = ServeOptions { idle_timeout: Duration::ZERO, ..opts };
        assert!(matches!(a.expired(&idle, false), Some(Expiry::Idle)));
    }

    /// Reads one HTTP/1.1 answer with a `Content-Length` body; its head, lower-cased.
    async fn answer(conn: &mut TcpStream) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = conn.read(&mut buf).await.expect("read");
            assert!(n > 0, "the connection closed before the answer: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text[..end]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().expect("length"));
                if got.len() >= end + 4 + len {
                    return text[..end].to_owned();
                }
            }
        }
    }

    #[tokio::test]
    async fn a_parting_server_answers_with_connection_close_and_the_connection_ends() {
        use tokio::io::AsyncWriteExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let router = Router::new().route("/", axum::routing::get(|| async { "hello" }));
        let server = serve(listener, router, None).expect("serve");
        let mut conn = TcpStream::connect(server.local_addr()).await.expect("connect");
        let request = b"GET / HTTP/1.1\r\nhost: node\r\n\r\n";
        conn.write_all(request).await.expect("send");
        let head = answer(&mut conn).await;
        assert!(head.starts_with("http/1.1 200") && !head.contains("connection: close"), "{head}");
        server.part();
        // The same keep-alive connection: answered, then closed by the server.
        conn.write_all(request).await.expect("send again");
        let head = answer(&mut conn).await;
        assert!(head.starts_with("http/1.1 200") && head.contains("connection: close"), "{head}");
        let mut rest = [0u8; 16];
        assert_eq!(conn.read(&mut rest).await.expect("read the end"), 0, "the server closed it");
        server.shutdown(Duration::from_secs(1)).await;
    }
}
