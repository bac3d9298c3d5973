//! Helpers: fresh CA directories, fixed and real times, and an HTTPS server and client that use
//! the CA's certificates.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::Request;
use axum::routing::get;
use openmvs_http::server::PeerName;
use openmvs_http::{ServerHandle, TlsConfig, serve};
use openmvs_pki::{CertificateAuthority, Issued};
use tokio::net::TcpListener;

/// A fixed "now" for tests whose outcome must not depend on the day they run:
/// 2026-01-01T00:00:00Z.
pub const FIXED_NOW_SECS: u64 = 1_767_225_600;

/// [`FIXED_NOW_SECS`] as a `SystemTime`.
pub fn fixed_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(FIXED_NOW_SECS)
}

/// An empty directory for one test, under Cargo's scratch directory for integration tests.
pub fn fresh_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("openmvs-pki").join(test);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("{}: {e}", dir.display()),
        _ => {}
    }
    dir
}

/// A new CA in a fresh directory, created at the real time so that its certificates verify in
/// handshakes, which rustls checks against the system clock.
pub fn new_ca(test: &str) -> CertificateAuthority {
    CertificateAuthority::create(&fresh_dir(test), "OpenMVS Hub CA (test)", SystemTime::now()).expect("CA")
}

/// A server certificate for `127.0.0.1` and `localhost`, valid for a year from now.
pub fn server_cert(ca: &mut CertificateAuthority) -> Issued {
    ca.issue_server(&["localhost", "127.0.0.1"], 365, SystemTime::now()).expect("server certificate")
}

/// Starts an HTTPS server presenting `server` that asks for client certificates of `ca`,
/// checks them against the CA's current revocation list, and answers `GET /whoami` with the
/// DNS names of the verified client certificate joined by `,` (or `anonymous`).
pub async fn start(ca: &CertificateAuthority, server: &Issued) -> ServerHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let router = Router::new().route("/whoami", get(whoami));
    let tls = TlsConfig {
        cert_chain: vec![server.cert_der()],
        key: server.key_der(),
        client_ca: Some(vec![ca.ca_der()]),
        crls: vec![ca.crl_der()],
    };
    serve(listener, router, Some(tls)).expect("server")
}

async fn whoami(req: Request) -> String {
    req.extensions().get::<PeerName>().map(|p| p.0.join(",")).unwrap_or_else(|| "anonymous".to_owned())
}

/// Calls `GET /whoami` on `server`, trusting `ca_pem` and presenting `identity` if any, on a new
/// client (so no connection is reused across identities). Returns the body, or the error text
/// when the handshake or request failed.
pub async fn whoami_as(
    server: &ServerHandle,
    ca_pem: &str,
    identity: Option<&Issued>,
) -> Result<String, String> {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM");
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(20));
    if let Some(issued) = identity {
        builder = builder
            .identity(reqwest::Identity::from_pem(issued.identity_pem().as_bytes()).expect("identity"));
    }
    let client = builder.build().expect("client");
    let url = format!("https://127.0.0.1:{}/whoami", server.local_addr().port());
    let response = client.get(&url).send().await.map_err(|e| format!("{e:?}"))?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    response.text().await.map_err(|e| format!("{e:?}"))
}
