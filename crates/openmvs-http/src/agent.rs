//! The offline agent's routes (`openmvs agent`), served on the pharmacy's own machine: the
//! end-user API of the national system, which it forwards (single-pack requests are recorded
//! when the system cannot be reached, answered 202 `NMVS_TI_OFF_01`), and its own status, list of
//! problems and metrics.
//!
//! | route | who | what |
//! |---|---|---|
//! | `POST /oauth/token` | anyone | the pharmacy's client credentials, checked by the agent |
//! | `POST /v1/packs/{operation}`, `.../undo` | token | forwarded, or recorded offline |
//! | `POST /v1/bulk`, `GET /v1/bulk/{id}`, `GET /v1/alerts`, `GET /v1/alerts/{id}` | token | forwarded while the system answers, else 503 |
//! | `GET /v1/return-codes` | anyone | the catalogue (the agent's own copy) |
//! | `GET /v1/agent/problems` | token | every problem found by the replay |
//! | `POST /v1/agent/problems/{id}/acknowledge` | token | the pharmacist has seen it |
//! | `GET /status`, `/metrics`, `/health/live`, `/health/ready` | anyone | the agent's figures |
//!
//! The agent listens on the loopback interface only: everything on it is the pharmacy's.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use openmvs_agent::upstream::Forward;
use openmvs_agent::{Agent, PackAnswer};
use openmvs_core::error::ApiError;
use openmvs_core::pack::Command;
use openmvs_core::return_code::ReturnCode;
use openmvs_telemetry::Exposition;
use openmvs_wire::ReturnCodeCatalogue;
use openmvs_wire::agent::{AcknowledgeRequest, AgentStatus};
use openmvs_wire::api::{BulkRequest, PackRequest, TokenResponse};

use crate::error::HttpError;
use crate::national::{JsonBody, MAX_BODY, MAX_BULK_BODY, client_credentials, oauth_error, operation};
use crate::observe::{Observability, observe};
use crate::status::escape;

/// What the handlers share.
#[derive(Clone)]
pub struct AgentState {
    /// The agent.
    pub agent: Arc<Agent>,
    /// Request ids, latency metrics, readiness.
    pub obs: Arc<Observability>,
}

/// The most problems one `GET /v1/agent/problems` lists.
pub const MAX_PROBLEMS_LISTED: usize = 10_000;

/// The agent's router.
pub fn agent_router(state: AgentState) -> Router {
    let obs = state.obs.clone();
    let with_token = Router::new()
        .route("/v1/packs/{operation}", post(pack))
        .route("/v1/packs/{operation}/undo", post(pack_undo))
        .route("/v1/bulk", post(bulk_submit).layer(DefaultBodyLimit::max(MAX_BULK_BODY)))
        .route("/v1/bulk/{bulk_id}", get(bulk_get))
        .route("/v1/alerts", get(alerts))
        .route("/v1/alerts/{id}", get(alert))
        .route("/v1/agent/problems", get(problems))
        .route("/v1/agent/problems/{id}/acknowledge", post(acknowledge))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route("/oauth/token", post(token))
        .route("/v1/return-codes", get(|| async { axum::Json(ReturnCodeCatalogue::build()) }))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/health/live", get(|| async { "live" }))
        .route("/health/ready", get(ready))
        .merge(with_token)
        .fallback(|| async {
            HttpError::new(ApiError::not_found("path", "nothing exists at this path of the agent"))
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(obs, observe))
}

/// A bearer token the agent issued, or 401.
async fn authorize(State(s): State<AgentState>, req: Request, next: Next) -> Response {
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let token = header.and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")));
    match s.agent.authorize(token.map(str::trim)) {
        Ok(()) => next.run(req).await,
        Err(e) => HttpError::new(e).into_response(),
    }
}

async fn token(State(s): State<AgentState>, body: Bytes) -> Response {
    let (id, secret) = match client_credentials(&body) {
        Ok(c) => c,
        Err(refusal) => return *refusal,
    };
    let (id, secret) = (id.as_str(), secret.as_str());
    match s.agent.login(id, secret) {
        Ok(t) => {
            let body = TokenResponse {
                access_token: t.access_token,
                token_type: "Bearer".into(),
                expires_in: t.expires_in,
            };
            let mut r = axum::Json(body).into_response();
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", &e.to_string()),
    }
}

fn pack_response(answer: PackAnswer) -> Response {
    match answer {
        PackAnswer::Answered(resp) => axum::Json(resp).into_response(),
        PackAnswer::Recorded(resp) => (StatusCode::ACCEPTED, axum::Json(resp)).into_response(),
        PackAnswer::Refused { status, body, retry_after } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut r = (status, axum::Json(body)).into_response();
            if let Some(secs) = retry_after {
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            r
        }
    }
}

async fn pack(
    State(s): State<AgentState>,
    Path(op): Path<String>,
    JsonBody(req): JsonBody<PackRequest>,
) -> Result<Response, HttpError> {
    let command = if op == "verify" { Command::Verify } else { Command::Set(operation(&op)?) };
    Ok(pack_response(s.agent.pack(command, req).await?))
}

async fn pack_undo(
    State(s): State<AgentState>,
    Path(op): Path<String>,
    JsonBody(req): JsonBody<PackRequest>,
) -> Result<Response, HttpError> {
    let op = operation(&op)?;
    if !op.is_undoable() {
        return Err(HttpError::new(
            ApiError::new(ReturnCode::NotFound).with("operation", format!("'{op}' can never be undone")),
        ));
    }
    Ok(pack_response(s.agent.pack(Command::Undo(op), req).await?))
}

/// Bulk and alerts: forwarded while the national system answers, answered as it answered.
async fn forward(s: &AgentState, request: Forward) -> Response {
    match s.agent.forward(request).await {
        Ok(answer) => {
            let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut r = (status, [(header::CONTENT_TYPE, "application/json")], answer.body).into_response();
            if let Some(secs) = answer.retry_after {
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            r
        }
        Err(e) => HttpError::new(e).into_response(),
    }
}

async fn bulk_submit(State(s): State<AgentState>, JsonBody(req): JsonBody<BulkRequest>) -> Response {
    forward(&s, Forward::SubmitBulk(req)).await
}

async fn bulk_get(State(s): State<AgentState>, Path(id): Path<String>) -> Response {
    forward(&s, Forward::BulkStatus(id)).await
}

#[derive(serde::Deserialize)]
struct AlertsQuery {
    status: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn alerts(State(s): State<AgentState>, Query(q): Query<AlertsQuery>) -> Response {
    forward(&s, Forward::Alerts { status: q.status, limit: q.limit, cursor: q.cursor }).await
}

async fn alert(State(s): State<AgentState>, Path(id): Path<String>) -> Response {
    forward(&s, Forward::Alert(id)).await
}

#[derive(serde::Deserialize)]
struct ProblemsQuery {
    limit: Option<usize>,
}

async fn problems(
    State(s): State<AgentState>,
    Query(q): Query<ProblemsQuery>,
) -> Result<Response, HttpError> {
    let limit = q.limit.unwrap_or(MAX_PROBLEMS_LISTED).clamp(1, MAX_PROBLEMS_LISTED);
    let list = s.agent.problems(limit).map_err(ApiError::from)?;
    Ok(axum::Json(list).into_response())
}

async fn acknowledge(
    State(s): State<AgentState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, HttpError> {
    let id: i64 = id
        .parse()
        .map_err(|_| HttpError::new(ApiError::not_found("id", format!("'{id}' is not a problem id"))))?;
    let req: AcknowledgeRequest =
        if body.is_empty() { AcknowledgeRequest::default() } else { crate::national::parse_json(&body)? };
    let problem = s.agent.acknowledge(id, req.by.as_deref())?;
    Ok(axum::Json(problem).into_response())
}

async fn status(State(s): State<AgentState>, headers: HeaderMap) -> Result<Response, HttpError> {
    let report = s.agent.status().map_err(ApiError::from)?;
    let wants_html =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    Ok(if wants_html { Html(html(&report)).into_response() } else { axum::Json(report).into_response() })
}

async fn metrics(State(s): State<AgentState>) -> Result<Response, HttpError> {
    let f = s.agent.figures().map_err(ApiError::from)?;
    let mut out = Exposition::new();
    s.obs.metrics.write_to(&mut out);
    crate::figures::write_agent(&mut out, &f);
    Ok(crate::observe::metrics_response(out.into_text()))
}

async fn ready(State(s): State<AgentState>) -> Response {
    if s.obs.is_ready() {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

/// The pharmacist's page: the link, the queue and the open problems.
pub fn html(r: &AgentStatus) -> String {
    let mut rows = String::new();
    for p in &r.problems {
        let alert =
            p.alert.as_ref().map_or(String::new(), |a| format!("{} ({})", escape(&a.code), escape(&a.id)));
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} / {}<br>batch {} exp. {}</td><td>{}</td><td><b>{}</b><br>{}</td><td>{}</td></tr>\n",
            p.id,
            escape(&p.recorded_at),
            escape(&p.operation),
            escape(&p.product_code),
            escape(&p.serial),
            escape(&p.batch),
            escape(&p.expiry),
            escape(&p.outcome),
            escape(&p.return_code),
            escape(&p.message),
            alert,
        ));
    }
    let link = if r.online { "reachable".to_owned() } else { "NOT reachable".to_owned() };
    let opt = |v: &Option<String>| v.as_deref().map_or("-".to_owned(), escape);
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>OpenMVS agent</title>\
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top}}</style></head><body>\
<h1>OpenMVS agent</h1>\
<p>National system <code>{url}</code>: <b>{link}</b>; last answer {contact}; last failure {failure}; next attempt {next}.</p>\
<p>Recorded, not yet verified: <b>{queue}</b> (oldest recorded {oldest}). Replayed: {replayed}.</p>\
<h2>Packs to look at ({open})</h2>\
<p>Each was recorded while the national system could not be reached, and did not apply when it was replayed. \
Acknowledge one with <code>POST /v1/agent/problems/ID/acknowledge</code> and the agent's token.</p>\
<table><tr><th>id</th><th>recorded</th><th>operation</th><th>pack</th><th>outcome</th><th>answer</th><th>alert</th></tr>\n{rows}</table>\
</body></html>\n",
        url = escape(&r.national_url),
        contact = opt(&r.last_contact_at),
        failure = opt(&r.last_failure),
        next = opt(&r.next_attempt_at),
        queue = r.queue_length,
        oldest = opt(&r.oldest_recorded_at),
        replayed = r.replayed,
        open = r.problems_open,
    )
}
