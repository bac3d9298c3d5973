//! Request ids, the request span, latency metrics per operation class and the SLA figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use openmvs_core::time::Clock;
use openmvs_telemetry::{Exposition, Metrics, OpClass, SlaTracker, duration_micros};
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
    /// Free space where the data lives, as the last probe measured it.
    pub disk: DiskSpace,
    /// Latency a demonstration injects into verifications and status updates (see
    /// [`InjectedLatency`]); shared by every system of one demonstration.
    pub injected: Arc<InjectedLatency>,
    /// `http` when the server speaks plain HTTP (set once by whoever starts it); links the
    /// system writes about itself (the feeds) use `https` otherwise.
    pub plain_http: AtomicBool,
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
            disk: DiskSpace::new(DEFAULT_DISK_FREE_WARN),
            plain_http: AtomicBool::new(false),
            injected: Arc::new(InjectedLatency::default()),
        }
    }

    /// Marks the service ready or not, and samples availability.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
        self.sla.record_availability(self.clock.now().unix_millis(), ready);
    }

    /// Whether the service takes traffic as far as it knows itself: started and not draining.
    /// Readiness also needs a store that commits (see the `/health/ready` routes).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Everything `/metrics` shows: the request metrics, the outbox backlog (`pending`, when the
    /// service could read it), the service's business figures (`business` writes them: see
    /// [`crate::figures`]), admission and connections, the store and the disk.
    pub fn render_metrics(
        &self,
        outbox: &OutboxGauge,
        pending: Option<u64>,
        business: impl FnOnce(&mut Exposition),
        store_ok: bool,
    ) -> String {
        let mut out = Exposition::new();
        self.metrics.write_to(&mut out);
        if let Some(n) = pending {
            out.gauge(outbox.name, outbox.help, n);
        }
        business(&mut out);
        crate::shed::write_metrics(&self.load, &mut out);
        self.login.write_metrics(&mut out);
        self.connections.write_metrics(&mut out);
        out.gauge(
            "openmvs_store_ok",
            "Whether the store commits (the last probe write or commit succeeded).",
            store_ok,
        );
        self.disk.write_metrics(&mut out);
        out.into_text()
    }
}

/// The gauge of a service's outbox backlog in `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct OutboxGauge {
    /// The metric's name.
    pub name: &'static str,
    /// Its help text.
    pub help: &'static str,
}

/// A national system's outbox: messages for the hub.
pub const NATIONAL_OUTBOX: OutboxGauge =
    OutboxGauge { name: "openmvs_outbox_pending", help: "Messages waiting for delivery to the hub." };

/// The hub's outbox: messages for the national systems.
pub const HUB_OUTBOX: OutboxGauge = OutboxGauge {
    name: "openmvs_hub_outbox_pending",
    help: "Messages waiting for delivery to national systems.",
};

/// The `/metrics` answer.
pub fn metrics_response(text: String) -> Response {
    ([(header::CONTENT_TYPE, openmvs_telemetry::CONTENT_TYPE)], text).into_response()
}

/// The free space below which a node warns, by default: 1 GiB.
pub const DEFAULT_DISK_FREE_WARN: u64 = 1 << 30;

/// Free space on the file system of the data directory, measured with each store probe, and
/// whether it is below the warning threshold.
#[derive(Debug)]
pub struct DiskSpace {
    threshold: AtomicU64,
    free: AtomicU64,
    measured: AtomicBool,
    low: AtomicBool,
}

impl DiskSpace {
    /// Nothing measured yet; warns below `threshold` bytes.
    pub fn new(threshold: u64) -> DiskSpace {
        DiskSpace {
            threshold: AtomicU64::new(threshold),
            free: AtomicU64::new(0),
            measured: AtomicBool::new(false),
            low: AtomicBool::new(false),
        }
    }

    /// Sets the warning threshold in bytes.
    pub fn set_threshold(&self, bytes: u64) {
        self.threshold.store(bytes, Ordering::SeqCst);
    }

    /// The warning threshold in bytes.
    pub fn threshold(&self) -> u64 {
        self.threshold.load(Ordering::SeqCst)
    }

    /// Records a measurement of `free` bytes available. Returns `Some(true)` when the free space
    /// has just fallen below the threshold, `Some(false)` when it has just risen to it again, and
    /// `None` otherwise, so the caller logs each crossing once, not each measurement.
    pub fn record(&self, free: u64) -> Option<bool> {
        self.free.store(free, Ordering::SeqCst);
        self.measured.store(true, Ordering::SeqCst);
        let low = free < self.threshold();
        (self.low.swap(low, Ordering::SeqCst) != low).then_some(low)
    }

    /// The free bytes last measured, if any.
    pub fn free(&self) -> Option<u64> {
        self.measured.load(Ordering::SeqCst).then(|| self.free.load(Ordering::SeqCst))
    }

    /// Whether the free space is below the threshold.
    pub fn is_low(&self) -> bool {
        self.low.load(Ordering::SeqCst)
    }

    /// Writes the gauges into `/metrics`: the free bytes (once measured) and whether they are low.
    pub fn write_metrics(&self, out: &mut Exposition) {
        if let Some(free) = self.free() {
            out.gauge(
                "openmvs_disk_free_bytes",
                "Bytes available to the node on the file system of its data directory.",
                free,
            );
        }
        out.gauge(
            "openmvs_disk_low",
            &format!("Whether the free space is below the warning threshold ({} bytes).", self.threshold()),
            self.is_low(),
        );
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
        r if r.starts_with("/admin/") || r.starts_with("/v1/admin/") || r.starts_with("/internal/") => {
            OpClass::Admin
        }
        _ => OpClass::Other,
    }
}

/// The operation class a handler found in the body, as a response extension: it takes the place
/// of the class of the route in the metrics and the DR Art 35 figures.
#[derive(Debug, Clone, Copy)]
pub struct Classified(pub OpClass);

/// The middleware: request id in, span around, metrics after, request id out.
pub async fn observe(State(obs): State<Arc<Observability>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&req);
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let uri_path = req.uri().path().to_owned();
    let class = class_of(route.as_deref().unwrap_or(""), &uri_path);
    if matches!(class, OpClass::Verification | OpClass::StatusUpdate)
        && let Some(delay) = obs.injected.take()
    {
        tokio::time::sleep(delay).await;
    }
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), route = route.as_deref().unwrap_or(&uri_path));
    let mut resp = next.run(req).instrument(span.clone()).await;
    // A route that learns its operation from the body (NMVS SOAP) says which it was.
    let class = resp.extensions().get::<Classified>().map_or(class, |c| c.0);
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

/// Latency injected into the next requests of a demonstration (`POST /admin/v1/latency`, which
/// exists only with `openmvs demo --fake-clock`): nothing unless it is set.
#[derive(Debug, Default)]
pub struct InjectedLatency {
    remaining: AtomicU64,
    millis: AtomicU64,
}

impl InjectedLatency {
    /// Slows the next `requests` down by `millis` each.
    pub fn set(&self, requests: u64, millis: u64) {
        self.millis.store(millis, Ordering::SeqCst);
        self.remaining.store(requests, Ordering::SeqCst);
    }

    /// What is still to be slowed down: requests and milliseconds.
    pub fn pending(&self) -> (u64, u64) {
        (self.remaining.load(Ordering::SeqCst), self.millis.load(Ordering::SeqCst))
    }

    /// The delay of one request, if any is still to be slowed down.
    pub fn take(&self) -> Option<std::time::Duration> {
        self.remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .ok()
            .map(|_| std::time::Duration::from_millis(self.millis.load(Ordering::SeqCst)))
    }
}

#[cfg(test)]
mod disk_tests {
    use super::*;

    #[test]
    fn injected_latency_slows_down_the_requests_it_was_set_for_and_no_more() {
        let l = InjectedLatency::default();
        assert_eq!(l.take(), None, "nothing unless set");
        l.set(2, 400);
        assert_eq!(l.pending(), (2, 400));
        assert_eq!(l.take(), Some(std::time::Duration::from_millis(400)));
        assert_eq!(l.take(), Some(std::time::Duration::from_millis(400)));
        assert_eq!(l.take(), None);
    }

    fn render(d: &DiskSpace) -> String {
        let mut out = Exposition::new();
        d.write_metrics(&mut out);
        out.into_text()
    }

    #[test]
    fn a_crossing_of_the_free_space_threshold_is_reported_once_each_way() {
        let d = DiskSpace::new(1000);
        assert_eq!(d.free(), None);
        assert!(render(&d).contains("openmvs_disk_low 0") && !render(&d).contains("openmvs_disk_free_bytes"));
        assert_eq!(d.record(5000), None, "above the threshold from the start: nothing to say");
        assert_eq!(d.record(999), Some(true), "falls below");
        assert_eq!(d.record(10), None, "still below: said already");
        assert!(d.is_low());
        assert!(
            render(&d).contains("openmvs_disk_free_bytes 10\n")
                && render(&d).contains("openmvs_disk_low 1\n")
        );
        assert_eq!(d.record(1000), Some(false), "back at the threshold");
        assert_eq!(d.record(2000), None);
        assert!(render(&d).contains("openmvs_disk_low 0\n"));
    }
}
