//! `POST /admin/v1/clock`: moves the one shared fake clock of a demonstration forward, for the
//! holder of the demo's admin token. It is merged into a router only when the demo runs with
//! `--fake-clock`, so that without the flag the route does not exist (404).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use openmvs_core::return_code::ReturnCode;
use openmvs_core::time::Clock;
use openmvs_national::ApiError;
use openmvs_national::clock::FakeClock;
use openmvs_wire::admin::{ClockAdvance, ClockAnswer, LatencyAnswer, LatencyInjection};
use openmvs_wire::api::ErrorBody;

use crate::authz::{self, Routes};
use crate::error::HttpError;
use crate::national::parse_json;

/// The furthest one call may move the clock: ten years, so that a typing slip cannot push every
/// date past the range the core computes with.
pub const MAX_ADVANCE_SECONDS: u64 = 10 * 366 * 24 * 3600;

/// What the clock route holds: the clock, the token, and the latency every system of the
/// demonstration shares.
#[derive(Clone)]
pub struct ClockState {
    clock: Arc<FakeClock>,
    token: Arc<str>,
    latency: Arc<crate::observe::InjectedLatency>,
}

/// The route, guarded by `admin_token` as a bearer token (the authorization table's
/// [`Caller::AdminToken`](crate::authz::Caller::AdminToken), checked by the handler).
pub fn clock_router(clock: Arc<FakeClock>, admin_token: &str) -> Router {
    latency_router(clock, admin_token, Arc::default())
}

/// The admin routes, the latency route acting on `latency` (give every system's observability
/// the same one).
pub fn latency_router(
    clock: Arc<FakeClock>,
    admin_token: &str,
    latency: Arc<crate::observe::InjectedLatency>,
) -> Router {
    clock_routes().finish().with_state(ClockState { clock, token: admin_token.into(), latency })
}

/// The admin routes, each as the authorization table lists it.
pub fn clock_routes() -> Routes<ClockState> {
    Routes::new(authz::ADMIN)
        .route_limited(Method::POST, "/admin/v1/clock", DefaultBodyLimit::max(1024), advance)
        .route_limited(Method::POST, "/admin/v1/latency", DefaultBodyLimit::max(1024), latency)
}

fn admin_only(s: &ClockState, headers: &HeaderMap) -> Result<(), HttpError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim);
    if !given.is_some_and(|t| same(t.as_bytes(), s.token.as_bytes())) {
        return Err(HttpError::new(
            ApiError::new(ReturnCode::Unauthenticated)
                .with("authorization", "the demo's admin_token is required"),
        ));
    }
    Ok(())
}

/// Slow the next verifications and status updates down, at every national system of the
/// demonstration (`openmvs demo --fake-clock` only): to show the 300 ms figures and the incident
/// rules at work.
#[utoipa::path(
    post, path = "/admin/v1/latency", tag = "demo",
    request_body = LatencyInjection,
    responses(
        (status = 200, description = "What is to be slowed down now.", body = LatencyAnswer),
        (status = 400, description = "Malformed body, more than 100,000 requests or more than 10 s.", body = ErrorBody),
        (status = 401, description = "No bearer token, or not the demo's `admin_token`.", body = ErrorBody),
        (status = 413, description = "The body is over 1 KiB.", body = ErrorBody),
    )
)]
pub(crate) async fn latency(
    State(s): State<ClockState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, HttpError> {
    admin_only(&s, &headers)?;
    let body = body.map_err(|e| HttpError::field("body", e.body_text()))?;
    let req: LatencyInjection = parse_json(&body)?;
    if req.requests > 100_000 {
        return Err(HttpError::field("requests", "is over 100000"));
    }
    if req.millis > 10_000 {
        return Err(HttpError::field("millis", "is over 10000 (ten seconds)"));
    }
    s.latency.set(req.requests, req.millis);
    let (requests, millis) = s.latency.pending();
    Ok(axum::Json(LatencyAnswer { requests, millis }).into_response())
}

/// Compares in time independent of where the strings differ, so that response times do not
/// reveal the token a prefix at a time.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Move the demonstration's one shared clock forward (`openmvs demo --fake-clock` only).
///
/// Every component of the demonstration reads the same clock, so undo windows, expiry dates and
/// checkpoints move together. Without `--fake-clock` the route does not exist.
#[utoipa::path(
    post, path = "/admin/v1/clock", tag = "demo",
    request_body = ClockAdvance,
    responses(
        (status = 200, description = "The time now.", body = ClockAnswer),
        (status = 400, description = "Malformed body, or more than ten years.", body = ErrorBody),
        (status = 401, description = "No bearer token, or not the demo's `admin_token`.", body = ErrorBody),
        (status = 413, description = "The body is over 1 KiB.", body = ErrorBody),
    )
)]
pub(crate) async fn advance(
    State(s): State<ClockState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, HttpError> {
    admin_only(&s, &headers)?;
    let body = body.map_err(|e| HttpError::field("body", e.body_text()))?;
    let req: ClockAdvance = parse_json(&body)?;
    if req.advance_seconds > MAX_ADVANCE_SECONDS {
        return Err(HttpError::field(
            "advance_seconds",
            format!("is over {MAX_ADVANCE_SECONDS} (ten years)"),
        ));
    }
    s.clock.advance(std::time::Duration::from_secs(req.advance_seconds));
    Ok(axum::Json(ClockAnswer { now: s.clock.now().to_rfc3339() }).into_response())
}

/// `router` with the clock route merged in when there is a fake clock; unchanged without one,
/// so that the route then does not exist.
pub fn with_fake_clock(router: Router, clock: Option<&Arc<FakeClock>>, admin_token: &str) -> Router {
    with_admin(router, clock, admin_token, Arc::default())
}

/// [`with_fake_clock`], the latency route acting on `latency`.
pub fn with_admin(
    router: Router,
    clock: Option<&Arc<FakeClock>>,
    admin_token: &str,
    latency: Arc<crate::observe::InjectedLatency>,
) -> Router {
    match clock {
        // The contract documents of the router describe the admin routes too when they exist.
        Some(c) => router.merge(latency_router(c.clone(), admin_token, latency)).layer(Extension(ClockRoute)),
        None => router,
    }
}

/// The word, in a request's extensions, that its router has the clock route.
#[derive(Debug, Clone, Copy)]
pub struct ClockRoute;
