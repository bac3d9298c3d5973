//! The server: HTTPS with rustls (optionally asking for client certificates issued by a trusted
//! CA) or plain HTTP for local tests, HTTP/1.1 keep-alive and HTTP/2, and a graceful shutdown that
//! stops accepting, lets in-flight requests finish within a drain time, then closes.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::ServiceExt;

/// The DNS names of the client certificate a connection presented, once its chain verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerName(pub Vec<String>);

/// TLS material of a server.
pub struct TlsConfig {
    /// The server's certificate chain.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// Its key.
    pub key: PrivateKeyDer<'static>,
    /// When set, clients may present a certificate issued by one of these CAs; routes that need
    /// one (the hub's internal routes) check its name. Clients without one still connect.
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

/// A running server.
pub struct ServerHandle {
    addr: SocketAddr,
    stop: watch::Sender<Option<Duration>>,
    task: JoinHandle<()>,
    tls: Option<Arc<std::sync::RwLock<Tls>>>,
}

impl ServerHandle {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle that replaces the server's revocation lists while it runs; `None` without TLS.
    pub fn tls_reloader(&self) -> Option<TlsReloader> {
        self.tls.clone().map(TlsReloader)
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

/// Serves `router` on `listener`, over TLS when `tls` is given.
pub fn serve(listener: TcpListener, router: Router, tls: Option<TlsConfig>) -> Result<ServerHandle, String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let tls = tls
        .map(|t| -> Result<_, String> {
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(t.clone_config().server_config()?));
            Ok(Arc::new(std::sync::RwLock::new(Tls { template: t, acceptor })))
        })
        .transpose()?;
    let shared_tls = tls.clone();
    let (stop, mut stopped) = watch::channel(None::<Duration>);
    let task = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        let builder = Builder::new(TokioExecutor::new());
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stopped.changed() => break,
            };
            let Ok((tcp, _)) = accepted else { continue };
            let _ = tcp.set_nodelay(true);
            let router = router.clone();
            let builder = builder.clone();
            let watcher = graceful.watcher();
            let acceptor = tls.as_ref().map(|t| t.read().unwrap_or_else(|p| p.into_inner()).acceptor.clone());
            tokio::spawn(async move {
                match acceptor {
                    Some(acceptor) => {
                        // A handshake that stalls must not hold a task forever.
                        let Ok(Ok(tls)) =
                            tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                        else {
                            return;
                        };
                        let peer = peer_names(tls.get_ref().1);
                        let svc =
                            hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                                if let Some(p) = &peer {
                                    req.extensions_mut().insert(p.clone());
                                }
                                router.clone().oneshot(req.map(axum::body::Body::new))
                            });
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
                        let _ = watcher.watch(conn.into_owned()).await;
                    }
                    None => {
                        let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            router.clone().oneshot(req.map(axum::body::Body::new))
                        });
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), svc);
                        let _ = watcher.watch(conn.into_owned()).await;
                    }
                }
            });
        }
        // New connections are refused from now on, not left waiting for the drain to end.
        drop(listener);
        let drain = stopped.borrow().unwrap_or(Duration::from_secs(10));
        if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
            tracing::warn!("drain time over; closing the remaining connections");
        }
    });
    Ok(ServerHandle { addr, stop, task, tls: shared_tls })
}
