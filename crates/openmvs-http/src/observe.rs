//! Request ids, the request span, latency metrics per operation class and the SLA figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use openmvs_core::time::Clock;
use openmvs_telemetry::{Metrics, OpClass, SlaTracker, duration_micros};
use tracing::Instrument;

/// The header carrying the request id, in both directions.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id of the current request, for handlers that log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// What the middleware records into.
pub struct Observability {
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Monthly figures for `/status`.
    pub sla: SlaTracker,
    /// Whether the service takes traffic (false while starting and draining).
    pub ready: AtomicBool,
    /// The clock the SLA days and months are counted with.
    pub clock: Arc<dyn Clock>,
    /// Requests in flight, and the bound over which they are shed.
    pub load: Arc<crate::shed::LoadShed>,
    /// The token endpoint's own admission: its hashing budget and failure limiters.
    pub login: Arc<crate::login::LoginGuard>,
    /// The server's connection figures (pass them to [`crate::server::ServeOptions::stats`]).
    pub connections: Arc<crate::server::ConnectionStats>,
}

impl Observability {
    /// A fresh set, not yet ready.
    pub fn new(clock: Arc<dyn Clock>) -> Observability {
        Observability {
            metrics: Metrics::new(),
            sla: SlaTracker::new(),
            ready: AtomicBool::new(false),
            clock,
            load: Arc::new(crate::shed::LoadShed::default()),
            login: Arc::new(crate::login::LoginGuard::default()),
            connections: Arc::new(crate::server::ConnectionStats::default()),
        }
    }

    /// Marks the service ready or not, and samples availability.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
        self.sla.record_availability(self.clock.now().unix_millis(), ready);
    }

    /// Whether the service takes traffic.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// The node's admission and connection figures in Prometheus text: requests in flight and
    /// shed, logins limited, connections open and refused.
    pub fn render_admission(&self) -> String {
        let mut text = crate::shed::render(&self.load);
        text.push_str(&self.login.render());
        text.push_str(&self.connections.render());
        text
    }
}

/// A request id: the client's own if it sent a sane one (so its logs and ours join), else a new one.
fn request_id(req: &Request) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let mut r = [0u8; 12];
            getrandom::fill(&mut r).expect("the operating system's random number generator failed");
            r.iter().map(|b| format!("{b:02x}")).collect()
        })
}

/// The operation class of a request, for the latency histograms and the DR Art 35 figures:
/// `route` is the matched route pattern, `path` the concrete path.
pub fn class_of(route: &str, path: &str) -> OpClass {
    match route {
        _ if path == "/v1/packs/verify" => OpClass::Verification,
        r if r.starts_with("/v1/packs/") => OpClass::StatusUpdate,
        r if r.starts_with("/v1/bulk") => OpClass::Bulk,
        "/oauth/token" => OpClass::Auth,
        r if r.starts_with("/admin/") || r.starts_with("/internal/") => OpClass::Admin,
        _ => OpClass::Other,
    }
}

/// The middleware: request id in, span around, metrics after, request id out.
pub async fn observe(State(obs): State<Arc<Observability>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&req);
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let uri_path = req.uri().path().to_owned();
    let class = class_of(route.as_deref().unwrap_or(""), &uri_path);
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), route = route.as_deref().unwrap_or(&uri_path));
    let mut resp = next.run(req).instrument(span.clone()).await;
    let micros = duration_micros(started.elapsed());
    let status = resp.status().as_u16();
    obs.metrics.request(class, status, micros);
    // A 5xx is not an answer to the request; outages count against availability instead.
    if matches!(class, OpClass::Verification | OpClass::StatusUpdate) && status < 500 {
        obs.sla.record(class, obs.clock.now().unix_millis(), micros);
    }
    span.in_scope(|| tracing::info!(status, micros, "answered"));
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    resp
}
