//! A plain-HTTP proxy on 127.0.0.1:0 in front of a real system: it records every request (path,
//! `client_trx_id`, bearer token) and answers the next requests of a path with the faults a test
//! queued (a status with `Retry-After` and an error body, an answer cut off mid-body, or one
//! never sent) before
//! it forwards again, as an overloaded server or a broken network would.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use openmvs_http::{ServerHandle, serve};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// What the proxy answers instead of forwarding.
#[derive(Clone)]
pub enum Fault {
    /// This status, with `Retry-After` if given, and an error body with this return code.
    Status { status: u16, retry_after: Option<u64>, return_code: &'static str },
    /// A 200 whose body stops after a few bytes: the answer is lost on the way.
    CutOff,
    /// Forwarded, and the answer never sent: a server that applied the request and then stalled.
    Stall,
}

impl Fault {
    /// A 503 asking to come back in `secs` seconds.
    pub fn unavailable(secs: u64) -> Fault {
        Fault::Status { status: 503, retry_after: Some(secs), return_code: "NMVS_TI_UN_01" }
    }

    /// A 429 asking to come back in `secs` seconds.
    pub fn rate_limited(secs: u64) -> Fault {
        Fault::Status { status: 429, retry_after: Some(secs), return_code: "NMVS_FI_SE_CLI_01" }
    }

    /// A 401: the token is refused.
    pub fn unauthorized() -> Fault {
        Fault::Status { status: 401, retry_after: None, return_code: "NMVS_FE_AU_01" }
    }
}

/// A request the proxy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Its path.
    pub path: String,
    /// The `client_trx_id` of its JSON body, if any.
    pub client_trx_id: Option<String>,
    /// Its bearer token, if any.
    pub bearer: Option<String>,
}

#[derive(Default)]
struct Shared {
    /// Faults by path, in order; `None` as path matches every request.
    faults: VecDeque<(Option<String>, Fault)>,
    seen: Vec<Seen>,
}

#[derive(Clone)]
struct ProxyState {
    target: String,
    http: reqwest::Client,
    shared: Arc<Mutex<Shared>>,
}

/// The running proxy.
pub struct Proxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    shared: Arc<Mutex<Shared>>,
    server: ServerHandle,
}

impl Proxy {
    /// A proxy in front of `target` (an HTTPS URL with a certificate of `ca_pem`).
    pub async fn start(target: &str, ca_pem: &[u8]) -> Proxy {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).unwrap())
            .build()
            .unwrap();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let state = ProxyState { target: target.to_owned(), http, shared: shared.clone() };
        let router = Router::new().fallback(handle).with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = serve(listener, router, None).unwrap();
        Proxy { url: format!("http://{}", server.local_addr()), shared, server }
    }

    /// Answers the next request of `path` (every path with `None`) with `fault`, after the
    /// faults queued before it.
    pub fn fail_next(&self, path: Option<&str>, fault: Fault) {
        self.shared.lock().unwrap().faults.push_back((path.map(str::to_owned), fault));
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.lock().unwrap().seen.clone()
    }

    /// The requests seen of `path`.
    pub fn seen_at(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }

    /// Stops it.
    pub async fn stop(self) {
        self.server.shutdown(std::time::Duration::from_secs(1)).await;
    }
}

async fn handle(
    State(s): State<ProxyState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let client_trx_id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["client_trx_id"].as_str().map(str::to_owned));
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let fault = {
        let mut sh = s.shared.lock().unwrap();
        sh.seen.push(Seen { path: path.clone(), client_trx_id, bearer });
        let at = sh.faults.iter().position(|(p, _)| p.as_deref().is_none_or(|p| p == path));
        at.and_then(|i| sh.faults.remove(i)).map(|(_, f)| f)
    };
    match fault {
        Some(Fault::Status { status, retry_after, return_code }) => {
            let body = json!({"return_code": return_code, "message": "injected by the test proxy",
                              "details": [{"field": "proxy", "message": "a fault the test queued"}]});
            let mut r = (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
            if let Some(secs) = retry_after {
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            r
        }
        Some(Fault::CutOff) => {
            // Announces more than it sends, then fails the body: the connection is dropped.
            let chunks: Vec<Result<Bytes, std::io::Error>> =
                vec![Ok(Bytes::from_static(b"{\"trx_id\":")), Err(std::io::Error::other("cut off"))];
            let mut r = Response::new(Body::from_stream(futures_stream(chunks)));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(1000));
            r
        }
        Some(Fault::Stall) => {
            let _applied = forward(&s, method, &uri, &headers, body).await;
            // Until the client gives up and closes the connection, which drops this future.
            std::future::pending().await
        }
        None => forward(&s, method, &uri, &headers, body).await,
    }
}

async fn forward(s: &ProxyState, method: Method, uri: &Uri, headers: &HeaderMap, body: Bytes) -> Response {
    let target = format!("{}{}", s.target, uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut rb = s.http.request(method, target).body(body);
    for h in [header::CONTENT_TYPE, header::AUTHORIZATION] {
        if let Some(v) = headers.get(&h) {
            rb = rb.header(h, v);
        }
    }
    let resp = rb.send().await.unwrap();
    let mut out = Response::builder().status(resp.status());
    for h in [header::CONTENT_TYPE, header::RETRY_AFTER] {
        if let Some(v) = resp.headers().get(&h) {
            out = out.header(h, v);
        }
    }
    out.body(Body::from(resp.bytes().await.unwrap())).unwrap()
}

/// A stream of `items`, without a stream crate: each is ready at once.
pub fn futures_stream<T: Send + 'static>(
    items: Vec<T>,
) -> impl futures_core::Stream<Item = T> + Send + 'static {
    struct Items<T>(std::vec::IntoIter<T>);
    // The items are never pinned: the iterator moves them out.
    impl<T> Unpin for Items<T> {}
    impl<T> futures_core::Stream for Items<T> {
        type Item = T;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<T>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Items(items.into_iter())
}
