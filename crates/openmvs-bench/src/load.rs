//! A lean HTTPS load-generator client: one TLS connection per simulated terminal, HTTP/1.1
//! keep-alive, no pool and no per-request allocation beyond the body. The bench runs in the same
//! process as the server on the same cores, so a heavy client would measure itself.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, ServerName};

/// The body type the client sends.
pub type Body = Full<Bytes>;

/// One keep-alive connection to the server.
pub struct Conn {
    sender: SendRequest<Body>,
    authority: String,
}

/// What a request got back.
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Bytes,
    /// The `Retry-After` header, when given in seconds.
    pub retry_after: Option<std::time::Duration>,
}

/// A TLS client configuration trusting exactly `ca`.
pub fn tls(ca: &CertificateDer<'static>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Conn {
    /// Connects to `addr` over TLS, checking the certificate for `host`.
    pub async fn open(
        addr: std::net::SocketAddr,
        host: &str,
        tls: Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<Conn> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(host.to_owned())?;
        let stream = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender, authority: format!("{host}:{}", addr.port()) })
    }

    /// Sends one request and reads the whole answer; a body is sent as JSON.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> anyhow::Result<Reply> {
        self.send_as(method, path, token, "application/json", body).await
    }

    /// Sends one request with a body of `content_type` and reads the whole answer.
    pub async fn send_as(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<Reply> {
        self.sender.ready().await?;
        let mut req = hyper::Request::builder().method(method).uri(path).header("host", &self.authority);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if !body.is_empty() {
            req = req.header("content-type", content_type);
        }
        let resp = self.sender.send_request(req.body(Full::new(Bytes::from(body)))?).await?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(std::time::Duration::from_secs);
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Reply { status, body, retry_after })
    }
}
