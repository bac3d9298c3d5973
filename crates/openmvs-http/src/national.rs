//! The national system's routes: end-user API, alerts, audit, status, health, metrics, and the
//! internal routes the hub calls. Which caller each route takes is the authorization table's
//! ([`crate::authz::NATIONAL`]); the `authorize` middleware admits it before any handler runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use openmvs_core::pack::{Command, Operation};
use openmvs_core::return_code::ReturnCode;
use openmvs_national::{Actor, ApiError, National};
use openmvs_wire::admin::{ClientList, ClientState};
use openmvs_wire::api::{
    AlertCommentRequest, AlertCommentView, AlertDetail, AlertList, AlertStatusRequest, AuditRecords,
    BulkAccepted, BulkRequest, BulkStatusResponse, ErrorBody, OAuthError, PackRequest, PackResponse,
    TokenRequest, TokenResponse,
};
use openmvs_wire::hub::{Delivery, IntermarketAnswer, IntermarketRequest, PackQuery, PackQueryAnswer};
use openmvs_wire::schema;
use serde::de::DeserializeOwned;

use crate::authz::{self, Caller, Routes};
use crate::error::HttpError;
use crate::limit::Limiter;
use crate::login::LoginRefusal;
use crate::observe::{Observability, observe};
use crate::openapi;
use crate::server::{PeerName, RemoteAddr};
use crate::status::{self, StatusReport};

/// The largest body of a single-pack, alert or token request.
pub const MAX_BODY: usize = 16 * 1024;
/// The largest bulk body: 100,000 rows of about 150 bytes, with room to spare.
pub const MAX_BULK_BODY: usize = 32 * 1024 * 1024;
/// The largest delivery from the hub.
pub const MAX_DELIVERY_BODY: usize = 64 * 1024 * 1024;
/// The name the hub's client certificate carries.
pub const HUB_PEER_NAME: &str = "hub.openmvs";

/// What the handlers share.
#[derive(Clone)]
pub struct NationalState {
    /// The service.
    pub national: Arc<National>,
    /// Metrics, SLA figures, readiness.
    pub obs: Arc<Observability>,
    /// Per-client rate limits.
    pub limiter: Arc<Limiter>,
}

pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, HttpError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = parsed.map_err(|e| {
        // A body that is not JSON at all is the body's fault, wherever the parser stopped.
        let field = match e.inner().classify() {
            serde_json::error::Category::Data => field_of(&e.path().to_string(), &e.inner().to_string()),
            _ => "body".to_owned(),
        };
        HttpError::field(&field, e.inner().to_string())
    })?;
    de.end().map_err(|e| HttpError::field("body", e.to_string()))?;
    Ok(value)
}

/// The field a JSON error is about: the path where it happened (`transactions[1]`), joined with
/// the field serde names in its message (`missing field `expiry``), or `body` when there is none.
fn field_of(path: &str, msg: &str) -> String {
    let named = msg.split('`').nth(1).filter(|_| msg.contains("field `"));
    let path = if path == "." || path == "?" { "" } else { path };
    match (path, named) {
        ("", Some(f)) => f.to_owned(),
        ("", None) => "body".to_owned(),
        (p, Some(f))
            if (msg.starts_with("missing field") || msg.starts_with("unknown field")) && !p.ends_with(f) =>
        {
            format!("{p}.{f}")
        }
        (p, _) => p.to_owned(),
    }
}

/// The holder of a valid bearer token, as the `authorize` middleware admitted it: only on the
/// routes the authorization table gives to token holders.
pub struct Auth(pub Actor);

/// The actor the middleware authenticated, handed on to the handler.
#[derive(Clone)]
struct Authenticated(Actor);

impl FromRequestParts<NationalState> for Auth {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _: &NationalState) -> Result<Auth, HttpError> {
        match parts.extensions.remove::<Authenticated>() {
            Some(Authenticated(actor)) => Ok(Auth(actor)),
            None => Err(HttpError::new(
                ApiError::new(ReturnCode::Unauthenticated)
                    .with("authorization", "the authorization table takes no token on this route"),
            )),
        }
    }
}

/// Checks the bearer token and the client's rate: 401 without a valid token, 429 over the rate.
async fn authenticate(parts: &Parts, state: &NationalState) -> Result<Actor, HttpError> {
    let header = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let token = header.and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")));
    let Some(token) = token else {
        return Err(HttpError::new(
            ApiError::new(ReturnCode::Unauthenticated).with("authorization", "a Bearer token is required"),
        ));
    };
    let actor = state.national.authenticate(token.trim()).await?;
    if let Err(wait) = state.limiter.check(actor.client_id.as_str()) {
        let mut e = ApiError::new(ReturnCode::RateLimited).with("client_id", "over its request rate");
        e.message = format!("Too many requests from this client: retry in {wait} s.");
        return Err(HttpError::new(e.with_retry_after(std::time::Duration::from_secs(wait))));
    }
    Ok(actor)
}

/// The hub, identified by its client certificate, as the `authorize` middleware admitted it.
pub struct Hub;

/// The middleware's word that the hub is calling.
#[derive(Clone, Copy)]
struct HubAdmitted;

fn hub_only() -> HttpError {
    HttpError::new(
        ApiError::new(ReturnCode::Forbidden).with("client_certificate", "only the hub may call this route"),
    )
}

impl FromRequestParts<NationalState> for Hub {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _: &NationalState) -> Result<Hub, HttpError> {
        parts.extensions.get::<HubAdmitted>().map(|_| Hub).ok_or_else(hub_only)
    }
}

/// Who calls the national system: a token holder, the hub, or anyone, as [`authz::NATIONAL`]
/// names them.
impl authz::Door for NationalState {
    type Body = ErrorBody;
    const TABLE: &'static [authz::RouteRule] = authz::NATIONAL;

    async fn admit(&self, caller: Caller, parts: &mut Parts) -> Result<(), HttpError> {
        match caller {
            Caller::Anyone | Caller::AdminToken | Caller::BodyLogin => {}
            Caller::Token(_) => {
                let actor = authenticate(parts, self).await?;
                parts.extensions.insert(Authenticated(actor));
            }
            Caller::HubCertificate => match parts.extensions.get::<PeerName>() {
                Some(PeerName(names)) if names.iter().any(|n| n == HUB_PEER_NAME) => {
                    parts.extensions.insert(HubAdmitted);
                }
                _ => return Err(hub_only()),
            },
            // No OBP or national system calls a national system directly.
            Caller::ObpCertificate | Caller::NationalCertificate => return Err(hub_only()),
        }
        Ok(())
    }
}

/// The national system's routes, each as the authorization table lists it.
pub fn national_routes() -> Routes<NationalState> {
    let small = || DefaultBodyLimit::max(MAX_BODY);
    let routes = Routes::new(authz::NATIONAL)
        .route_limited(Method::POST, "/oauth/token", small(), token)
        .route_limited(Method::POST, "/v1/packs/{operation}", small(), pack)
        .route_limited(Method::POST, "/v1/packs/{operation}/undo", small(), pack_undo)
        .route_limited(Method::POST, "/v1/bulk", DefaultBodyLimit::max(MAX_BULK_BODY), bulk_submit)
        .route(Method::GET, "/v1/bulk/{bulk_id}", bulk_get)
        .route(Method::GET, "/v1/alerts", alerts)
        .route(Method::GET, "/v1/alerts/{id}", alert)
        .route_limited(Method::POST, "/v1/alerts/{id}/status", small(), alert_status)
        .route_limited(Method::POST, "/v1/alerts/{id}/comments", small(), alert_comment)
        .route(Method::GET, "/v1/audit/packs/{scheme}/{product_code}/{serial}", audit)
        .route(Method::GET, "/v1/audit/records", audit_records)
        .route(Method::GET, "/v1/audit/records/export", audit_export)
        .route(Method::GET, "/v1/return-codes", openapi::return_codes)
        .route(Method::GET, "/status", status_page)
        .route(Method::GET, "/v1/status", status_json)
        .route(Method::GET, "/v1/incidents", incidents)
        .route(Method::GET, "/v1/incidents/feed.atom", incidents_atom)
        .route(Method::GET, "/v1/incidents/feed.json", incidents_json)
        .route(Method::GET, "/v1/incidents/{id}", incident)
        .route_limited(Method::POST, "/v1/admin/incidents", small(), admin_incident_open)
        .route_limited(Method::POST, "/v1/admin/incidents/{id}/updates", small(), admin_incident_update)
        .route(Method::GET, "/metrics", metrics)
        .route(Method::GET, "/health/live", openapi::live)
        .route(Method::GET, "/health/ready", ready)
        .route_limited(
            Method::POST,
            "/internal/v1/messages",
            DefaultBodyLimit::max(MAX_DELIVERY_BODY),
            hub_messages,
        )
        .route_limited(Method::POST, "/internal/v1/intermarket", small(), hub_intermarket)
        .route_limited(Method::POST, "/internal/v1/pack-query", small(), hub_pack_query)
        // Client administration by the NMVO: list the market's clients, cut one off, let it back in.
        .route(Method::GET, "/v1/admin/clients", admin_clients)
        .route(Method::POST, "/v1/admin/clients/{client_id}/disable", admin_client_disable)
        .route(Method::POST, "/v1/admin/clients/{client_id}/enable", admin_client_enable)
        // The contract documents, generated from the handlers (`openapi.rs`).
        .route(Method::GET, "/v1/openapi.json", openapi::national_document)
        .route(Method::GET, "/docs", openapi::national_docs);
    crate::web::routes(crate::soap::routes(routes))
}

/// Builds the national system's router.
pub fn national_router(state: NationalState) -> Router {
    let obs = state.obs.clone();
    authz::guarded(national_routes(), state)
        .layer(axum::middleware::from_fn(crate::web::security_headers))
        .layer(axum::middleware::from_fn_with_state(obs.load.clone(), crate::shed::shed))
        .layer(axum::middleware::from_fn_with_state(obs, observe))
}

/// A JSON request body, read within its route's size limit and parsed; refused with 400 naming
/// the field (`content-type`, `body` or the field at fault) or 413.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<JsonBody<T>, HttpError> {
        read_json(req, state).await.map(JsonBody)
    }
}

/// Reads and parses a JSON body; what [`JsonBody`] and the hub's extractor share.
pub(crate) async fn read_json<T: DeserializeOwned, S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<T, HttpError> {
    json_media_type(req.headers())?;
    body_json(Bytes::from_request(req, state).await)
}

/// A JSON route takes `application/json` (or `application/<something>+json`), a body without a
/// content type, and the form type `curl -d` sends when none is given; any other type says the
/// body is not JSON, and is refused naming `content-type`.
pub(crate) fn json_media_type(headers: &HeaderMap) -> Result<(), HttpError> {
    let Some(v) = headers.get(header::CONTENT_TYPE) else { return Ok(()) };
    let media = v.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let json = media == "application/json"
        || media == "application/x-www-form-urlencoded"
        || (media.starts_with("application/") && media.ends_with("+json"));
    if json {
        Ok(())
    } else {
        Err(HttpError::new(ApiError::new(ReturnCode::MalformedRequest).with(
            "content-type",
            format!("'{media}' is not application/json; this route takes a JSON body"),
        )))
    }
}

/// Parses a body read within its limit, answering 413 with the contract's code when it did not
/// fit and naming `body` when it could not be read (cut off, or arriving under the minimum rate).
pub(crate) fn body_json<T: DeserializeOwned>(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<T, HttpError> {
    match body {
        Ok(b) => parse_json(&b),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(HttpError::new(ApiError::new(ReturnCode::TooLarge).with("body", "is over its size limit")))
        }
        Err(e) if crate::server::is_body_too_slow(&e) => Err(HttpError::field(
            "body",
            format!(
                "arrived too slowly: {}",
                std::error::Error::source(&e).map_or(e.to_string(), |s| s.to_string())
            ),
        )),
        Err(e) => Err(HttpError::field("body", e.body_text())),
    }
}

pub(crate) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r =
        (status, axum::Json(OAuthError { error: error.into(), error_description: description.into() }))
            .into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    r
}

/// Get an access token (OAuth2 client credentials).
///
/// The token carries the client's role, location and market; send it as `Authorization: Bearer`
/// on every other call. Logins have a budget of their own: after too many failed logins of a
/// client id or from an address the answer is 429 with `Retry-After`, before any secret is checked.
#[utoipa::path(
    post, path = "/oauth/token", tag = "auth",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The token.", body = TokenResponse),
        (status = 400, description = "Not a client-credentials request (RFC 6749 `invalid_request` or `unsupported_grant_type`).", body = OAuthError,
            example = json!({"error": "unsupported_grant_type", "error_description": "only client_credentials is supported"})),
        (status = 401, description = "Unknown client, wrong secret or disabled client (RFC 6749 `invalid_client`).", body = OAuthError),
        (status = 429, description = "Too many failed logins of this client id or from this address: retry after `Retry-After`.", body = ErrorBody),
        (status = 503, description = "The node is checking as many secrets as it can, or cannot read its clients or its token-signing keys (`details` names `signing_keys`; tokens already issued stay valid until they expire): retry after `Retry-After`.", body = ErrorBody),
    )
)]
async fn token(
    State(s): State<NationalState>,
    remote: Option<axum::Extension<RemoteAddr>>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let Ok(body) = body else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "the body could not be read");
    };
    let (id, secret) = match client_credentials(&body) {
        Ok(c) => c,
        Err(refusal) => return *refusal,
    };
    let address = remote.map(|r| r.0.0.ip());
    match issue_token(&s, id.as_str(), secret.as_str(), address).await {
        Ok(t) => {
            let mut r = axum::Json(TokenResponse::from(&t)).into_response();
            r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
            r
        }
        Err(refusal) => refusal,
    }
}

/// A token for a client id and secret, through the logins' own admission; the refusal as the
/// token endpoint answers it. The web console's sign-in uses it too.
pub(crate) async fn issue_token(
    s: &NationalState,
    id: &str,
    secret: &str,
    address: Option<std::net::IpAddr>,
) -> Result<openmvs_core::answer::IssuedToken, Response> {
    // A node that cannot read its token-signing keys issues no token: said at once, before the
    // admission and any secret check, so the refusal costs next to nothing however many ask.
    if let Err(e) = s.national.token_issuing() {
        return Err(no_token_issued(&e));
    }
    // Logins have their own admission: a flood of bad ones waits or is refused here, before any
    // secret is hashed, and never takes the places of requests with tokens.
    let login = &s.obs.login;
    if let Err(r) = login.check(id, address, Instant::now()) {
        return Err(login_refused(r));
    }
    let turn = match login.turn().await {
        Ok(t) => t,
        Err(r) => return Err(login_refused(r)),
    };
    // Again with the turn: the failures of the attempts that waited ahead of this one count.
    if let Err(r) = login.check(id, address, Instant::now()) {
        return Err(login_refused(r));
    }
    let outcome = s.national.token(id, secret).await;
    drop(turn);
    match outcome {
        Ok(t) => Ok(t),
        Err(openmvs_auth::AuthError::Internal(why)) => {
            tracing::warn!(cause = %why, "token request failed");
            Err(HttpError::code(ReturnCode::Unavailable).into_response())
        }
        Err(e @ openmvs_auth::AuthError::Unavailable(_)) => Err(no_token_issued(&e)),
        Err(_) => {
            login.failed(id, address, Instant::now());
            Err(oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "invalid client id or client secret"))
        }
    }
}

/// The 503 of a token request while the node issues no token (it cannot read its token-signing
/// keys): `NMVS_TI_UN_01`, naming the keys, with `Retry-After`.
fn no_token_issued(e: &openmvs_auth::AuthError) -> Response {
    let error = ApiError::new(ReturnCode::Unavailable)
        .with(openmvs_national::SIGNING_KEYS_FIELD, e.to_string())
        .with_retry_after(openmvs_national::TOKEN_RETRY_AFTER);
    let mut resp = HttpError::new(error).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    resp
}

/// A login refused before its secret was checked: 429 with the wait, or 503.
fn login_refused(r: LoginRefusal) -> Response {
    match r {
        LoginRefusal::Limited { retry_after, by } => {
            let mut e = ApiError::new(ReturnCode::RateLimited).with(
                by,
                match by {
                    "address" => "too many failed logins from this address",
                    _ => "too many failed logins of this client id",
                },
            );
            e.message = format!("Too many failed logins: retry in {retry_after} s.");
            let mut resp = HttpError::new(e).into_response();
            resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(retry_after));
            resp.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
            resp
        }
        LoginRefusal::Busy => HttpError::new(
            ApiError::new(ReturnCode::Unavailable)
                .with("login", "the node is checking as many secrets as it can"),
        )
        .into_response(),
    }
}

/// The client id and secret of an OAuth2 client-credentials request (RFC 6749 4.4), or the
/// refusal its form earns: `invalid_request` or `unsupported_grant_type`, with 400.
pub(crate) fn client_credentials(body: &[u8]) -> Result<(String, String), Box<Response>> {
    let refused = |error, description| Box::new(oauth_error(StatusCode::BAD_REQUEST, error, description));
    let Some(mut form) = serde_urlencoded_pairs(body) else {
        return Err(refused("invalid_request", "the body is not form-encoded"));
    };
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(_) => return Err(refused("unsupported_grant_type", "only client_credentials is supported")),
        None => return Err(refused("invalid_request", "grant_type is required")),
    }
    match (form.remove("client_id"), form.remove("client_secret")) {
        (Some(id), Some(secret)) => Ok((id, secret)),
        _ => Err(refused("invalid_request", "client_id and client_secret are required")),
    }
}

/// Parses `application/x-www-form-urlencoded` into a map; `None` if it is not valid.
pub(crate) fn serde_urlencoded_pairs(body: &[u8]) -> Option<HashMap<String, String>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut out = HashMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(form_decode(k)?, form_decode(v)?);
    }
    Some(out)
}

fn form_decode(s: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(s.len());
    let mut it = s.bytes();
    while let Some(b) = it.next() {
        match b {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = [it.next()?, it.next()?];
                bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            b => bytes.push(b),
        }
    }
    String::from_utf8(bytes).ok()
}

pub(crate) fn operation(name: &str) -> Result<Operation, HttpError> {
    Operation::parse(name).filter(|o| *o != Operation::CheckOut).ok_or_else(|| {
        HttpError::new(
            ApiError::new(ReturnCode::NotFound).with("operation", format!("'{name}' is not an operation")),
        )
    })
}

/// Verify a pack, or decommission it.
///
/// The pack is given field by field or as a raw scan. The same `client_trx_id` with the same
/// request answers the first answer again, so a request may be retried safely.
#[utoipa::path(
    post, path = "/v1/packs/{operation}", tag = "packs",
    params(("operation" = schema::PackOperation, Path, description = "What to do with the pack.")),
    request_body = PackRequest,
    responses(
        (status = 200, description = "Processed: accepted, or refused by the rules (`accepted` false, the return code says why, `alert` when one was raised).", body = PackResponse),
        (status = 400, description = "Malformed body, a missing or invalid field, an unreadable scan, or a product code whose check digit fails; `details` name the field and the rule.", body = ErrorBody),
        (status = 404, description = "The path names no operation that can be asked for.", body = ErrorBody),
        (status = 409, description = "This `client_trx_id` was used by this client for a different request.", body = ErrorBody),
        (status = 413, description = "The body is over 16 KiB.", body = ErrorBody),
    )
)]
async fn pack(
    State(s): State<NationalState>,
    Path(op): Path<String>,
    Auth(actor): Auth,
    JsonBody(req): JsonBody<PackRequest>,
) -> Result<Response, HttpError> {
    let command = if op == "verify" { Command::Verify } else { Command::Set(operation(&op)?) };
    let answer = s.national.pack(&actor, command, &req).await?;
    Ok(axum::Json(PackResponse::from(&answer)).into_response())
}

/// Undo a decommissioning.
///
/// Only the location that changed the pack may undo it, within 10 days; `lock` is undone by unlock.
#[utoipa::path(
    post, path = "/v1/packs/{operation}/undo", tag = "packs",
    params(("operation" = schema::UndoableOperation, Path, description = "The operation to undo.")),
    request_body = PackRequest,
    responses(
        (status = 200, description = "Processed: accepted, or refused by the rules (`accepted` false, the return code says why, `alert` when one was raised).", body = PackResponse),
        (status = 400, description = "Malformed body, a missing or invalid field, an unreadable scan, or a product code whose check digit fails; `details` name the field and the rule.", body = ErrorBody),
        (status = 404, description = "The path names no operation that can be asked for.", body = ErrorBody),
        (status = 409, description = "This `client_trx_id` was used by this client for a different request.", body = ErrorBody),
        (status = 413, description = "The body is over 16 KiB.", body = ErrorBody),
    )
)]
async fn pack_undo(
    State(s): State<NationalState>,
    Path(op): Path<String>,
    Auth(actor): Auth,
    JsonBody(req): JsonBody<PackRequest>,
) -> Result<Response, HttpError> {
    let op = operation(&op)?;
    if !op.is_undoable() {
        return Err(HttpError::new(
            ApiError::new(ReturnCode::NotFound).with("operation", format!("'{op}' can never be undone")),
        ));
    }
    let answer = s.national.pack(&actor, Command::Undo(op), &req).await?;
    Ok(axum::Json(PackResponse::from(&answer)).into_response())
}

/// Submit a bulk request of up to 100,000 packs.
///
/// Homogeneous (one operation, product, batch and expiry, many serials) or mixed
/// (`transactions`). The rows are processed in the background; read the results with
/// `GET /v1/bulk/{bulk_id}`.
#[utoipa::path(
    post, path = "/v1/bulk", tag = "bulk",
    request_body = BulkRequest,
    responses(
        (status = 202, description = "Accepted: every row will be processed.", body = BulkAccepted),
        (status = 400, description = "Malformed body, or a row with a missing or invalid field (`details` name it, e.g. `transactions[3].expiry`).", body = ErrorBody),
        (status = 409, description = "This `client_trx_id` was used by this client for a different bulk request.", body = ErrorBody),
        (status = 413, description = "The body is over 32 MiB, or the request has more than 100,000 packs.", body = ErrorBody),
    )
)]
async fn bulk_submit(
    State(s): State<NationalState>,
    Auth(actor): Auth,
    JsonBody(req): JsonBody<BulkRequest>,
) -> Result<Response, HttpError> {
    let accepted = s.national.submit_bulk(&actor, &req).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(BulkAccepted::from(&accepted))).into_response())
}

/// Read a bulk request's progress and, once `DONE`, its results in request order.
#[utoipa::path(
    get, path = "/v1/bulk/{bulk_id}", tag = "bulk",
    params(("bulk_id" = String, Path, description = "The id `POST /v1/bulk` answered.", example = "BLK-01a2282c5acf-c9eab4deebbd4b18")),
    responses(
        (status = 200, description = "Where the bulk request is.", body = BulkStatusResponse),
        (status = 404, description = "No bulk request of this client has this id.", body = ErrorBody),
    )
)]
async fn bulk_get(
    State(s): State<NationalState>,
    Path(id): Path<String>,
    Auth(actor): Auth,
) -> Result<Response, HttpError> {
    let report = s.national.bulk(&actor, &id).await?;
    Ok(axum::Json(BulkStatusResponse::from(&report)).into_response())
}

/// List alerts, a page at a time.
///
/// The NMVO and the NCA see every alert of the market; an end user sees the alerts it raised.
#[utoipa::path(
    get, path = "/v1/alerts", tag = "alerts",
    params(
        ("status" = Option<schema::AlertStatusName>, Query, description = "Only alerts with this status."),
        ("code" = Option<String>, Query, description = "Only alerts with this alert code (A2, A3, A24, A52, A68, SERIAL_GUESSING)."),
        ("product_code" = Option<String>, Query, description = "Only alerts on this product code, as the request named it."),
        ("batch" = Option<String>, Query, description = "Only alerts on this batch."),
        ("market" = Option<String>, Query, description = "Only alerts raised in this market or on a pack it holds."),
        ("location" = Option<String>, Query, description = "Only alerts raised at these premises."),
        ("from" = Option<String>, Query, description = "Only alerts raised at or after this date (`YYYY-MM-DD`, UTC) or instant (RFC 3339)."),
        ("to" = Option<String>, Query, description = "Only alerts raised up to this date, included (`YYYY-MM-DD`), or before this instant (RFC 3339)."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "The page size, 1-1000 (default 100). A page may hold fewer while a `next_cursor` goes on: a page looks at 10,000 alerts at most."),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of alerts, newest first.", body = AlertList),
        (status = 400, description = "An unknown query parameter, or a value outside its rule (`details` name it).", body = ErrorBody),
    )
)]
async fn alerts(
    State(s): State<NationalState>,
    Auth(actor): Auth,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, HttpError> {
    let (criteria, limit) = alert_query(&q)?;
    let page = s
        .national
        .alerts(
            &actor,
            q.get("status").map(String::as_str),
            &criteria,
            limit,
            q.get("cursor").map(String::as_str),
        )
        .await?;
    Ok(axum::Json(AlertList::from(&page)).into_response())
}

/// The criteria and page size of an alert list's query, refusing a parameter the route does not
/// take.
pub(crate) fn alert_query(
    q: &HashMap<String, String>,
) -> Result<(openmvs_core::alert::AlertCriteria, Option<usize>), ApiError> {
    use openmvs_core::alert::{ALERT_CRITERIA_PARAMS, AlertCriteria};
    let known = |k: &str| ["status", "limit", "cursor"].contains(&k) || ALERT_CRITERIA_PARAMS.contains(&k);
    if let Some(k) = q.keys().find(|k| !known(k)) {
        return Err(ApiError::field(
            k,
            "is not a query parameter of this route (status, code, product_code, batch, market, location, from, to, limit, cursor)",
        ));
    }
    let limit = q
        .get("limit")
        .map(|l| l.parse::<usize>().map_err(|_| ApiError::field("limit", format!("'{l}' is not a number"))))
        .transpose()?;
    Ok((AlertCriteria::parse(|k| q.get(k).map(String::as_str))?, limit))
}

/// Read an alert with its comments and its status history.
#[utoipa::path(
    get, path = "/v1/alerts/{id}", tag = "alerts",
    params(("id" = String, Path, description = "The alert's id, the same everywhere.", example = "ALR-01a227e36123-45b93e0ddaafc04f")),
    responses(
        (status = 200, description = "The alert.", body = AlertDetail),
        (status = 404, description = "No alert the caller may read has this id.", body = ErrorBody),
    )
)]
async fn alert(
    State(s): State<NationalState>,
    Path(id): Path<String>,
    Auth(actor): Auth,
) -> Result<Response, HttpError> {
    Ok(axum::Json(AlertDetail::from(&s.national.alert(&actor, &id).await?)).into_response())
}

/// Change an alert's status (the NMVO).
///
/// Closing needs a classification. The change reaches the hub and the owning OBP within seconds.
#[utoipa::path(
    post, path = "/v1/alerts/{id}/status", tag = "alerts",
    params(("id" = String, Path, description = "The alert's id.", example = "ALR-01a227e36123-45b93e0ddaafc04f")),
    request_body = AlertStatusRequest,
    responses(
        (status = 200, description = "The alert after the change.", body = AlertDetail),
        (status = 400, description = "Malformed body, an unknown status or classification, a change the lifecycle does not allow, or a comment over 500 characters.", body = ErrorBody),
        (status = 404, description = "No alert of the market has this id.", body = ErrorBody),
        (status = 413, description = "The body is over 16 KiB.", body = ErrorBody),
    )
)]
async fn alert_status(
    State(s): State<NationalState>,
    Path(id): Path<String>,
    Auth(actor): Auth,
    JsonBody(req): JsonBody<AlertStatusRequest>,
) -> Result<Response, HttpError> {
    let alert = s.national.change_alert_status(&actor, &id, &req).await?;
    Ok(axum::Json(AlertDetail::from(&alert)).into_response())
}

/// Comment on an alert (the NMVO).
#[utoipa::path(
    post, path = "/v1/alerts/{id}/comments", tag = "alerts",
    params(("id" = String, Path, description = "The alert's id.", example = "ALR-01a227e36123-45b93e0ddaafc04f")),
    request_body = AlertCommentRequest,
    responses(
        (status = 201, description = "The comment, as added to the alert's thread.", body = AlertCommentView),
        (status = 400, description = "Malformed body, or a text that is empty, blank or over 500 characters.", body = ErrorBody),
        (status = 404, description = "No alert of the market has this id.", body = ErrorBody),
        (status = 413, description = "The body is over 16 KiB.", body = ErrorBody),
    )
)]
async fn alert_comment(
    State(s): State<NationalState>,
    Path(id): Path<String>,
    Auth(actor): Auth,
    JsonBody(req): JsonBody<AlertCommentRequest>,
) -> Result<Response, HttpError> {
    let comment = s.national.comment_alert(&actor, &id, &req).await?;
    Ok((StatusCode::CREATED, axum::Json(AlertCommentView::from(&comment))).into_response())
}

/// Read a pack's audit trail (the NCA and the NMVO).
#[utoipa::path(
    get, path = "/v1/audit/packs/{scheme}/{product_code}/{serial}", tag = "audit",
    params(
        ("scheme" = schema::Scheme, Path, description = "The product code's scheme."),
        ("product_code" = schema::ProductCode, Path, description = "The product code."),
        ("serial" = schema::SerialNumber, Path, description = "The serial."),
    ),
    responses(
        (status = 200, description = "Every record of the pack, in chain order (none for a pack nobody asked about).", body = AuditRecords),
        (status = 400, description = "The scheme, product code or serial is not valid; `details` name it.", body = ErrorBody),
    )
)]
async fn audit(
    State(s): State<NationalState>,
    Path((scheme, product_code, serial)): Path<(String, String, String)>,
    Auth(actor): Auth,
) -> Result<Response, HttpError> {
    let records = s.national.audit_of_pack(&actor, &scheme, &product_code, &serial).await?;
    Ok(axum::Json(AuditRecords::from(records.as_slice())).into_response())
}

/// Search the market's audit trail (the NCA and the NMVO), a page at a time, in commit order.
///
/// By pack (`product_code` and `serial`: its own records and what the hub delivered about it,
/// its batch's upload and recall, its product's master data), product, batch (with a product
/// code), client, premises, operation and time. The search is audited.
#[utoipa::path(
    get, path = "/v1/audit/records", tag = "audit",
    params(
        ("scheme" = Option<schema::Scheme>, Query, description = "The product code's scheme (default GTIN)."),
        ("product_code" = Option<String>, Query, description = "Only records about this product (its packs, batches and master data)."),
        ("serial" = Option<String>, Query, description = "With `product_code`: only the trail of this pack."),
        ("batch" = Option<String>, Query, description = "With `product_code`: only records about this batch or its packs' requests naming it."),
        ("client_id" = Option<String>, Query, description = "Only records of what this client did."),
        ("location" = Option<String>, Query, description = "Only records from these premises."),
        ("operation" = Option<String>, Query, description = "Only this operation, e.g. `supply`, `verify`, `audit-read`, `hub-packs`."),
        ("from" = Option<String>, Query, description = "At or after this date (`YYYY-MM-DD`, UTC) or instant (RFC 3339)."),
        ("to" = Option<String>, Query, description = "Up to this date, included, or before this instant."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "The page size, 1-1000 (default 100)."),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of records.", body = openmvs_wire::api::AuditSearchResponse),
        (status = 400, description = "An unknown query parameter, or a value outside its rule; `details` name it.", body = ErrorBody),
    )
)]
async fn audit_records(
    State(s): State<NationalState>,
    Auth(actor): Auth,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, HttpError> {
    let page = s.national.audit_search(&actor, &q).await?;
    let body = openmvs_wire::api::AuditSearchResponse {
        records: page.records.iter().map(openmvs_wire::api::AuditRecordView::from).collect(),
        next_cursor: page.next_cursor,
    };
    Ok(axum::Json(body).into_response())
}

/// Export a search of the audit trail (the NCA and the NMVO): every record from the cursor to the
/// end, streamed as CSV or as one JSON array, whatever its size. Takes the search's parameters,
/// with `format` (`csv`, the default, or `json`). The export is audited.
#[utoipa::path(
    get, path = "/v1/audit/records/export", tag = "audit",
    params(
        ("format" = Option<String>, Query, description = "`csv` (default) or `json`."),
        ("scheme" = Option<schema::Scheme>, Query, description = "As for `GET /v1/audit/records`."),
        ("product_code" = Option<String>, Query, description = "As for `GET /v1/audit/records`."),
        ("serial" = Option<String>, Query, description = "As for `GET /v1/audit/records`."),
        ("batch" = Option<String>, Query, description = "As for `GET /v1/audit/records`."),
        ("client_id" = Option<String>, Query, description = "As for `GET /v1/audit/records`."),
        ("location" = Option<String>, Query, description = "As for `GET /v1/audit/records`."),
        ("operation" = Option<String>, Query, description = "As for `GET /v1/audit/records`."),
        ("from" = Option<String>, Query, description = "As for `GET /v1/audit/records`."),
        ("to" = Option<String>, Query, description = "As for `GET /v1/audit/records`."),
        ("cursor" = Option<String>, Query, description = "Start after this cursor of a search."),
    ),
    responses(
        (status = 200, description = "The records: CSV with a header line (columns seq, at, actor, role, location, operation, subject, return_code, request, result), or a JSON array of the records as `GET /v1/audit/records` gives them.", content(
            (String = "text/csv"),
            (Vec<openmvs_wire::api::AuditRecordView> = "application/json"),
        )),
        (status = 400, description = "An unknown query parameter, or a value outside its rule; `details` name it.", body = ErrorBody),
    )
)]
async fn audit_export(
    State(s): State<NationalState>,
    Auth(actor): Auth,
    Query(mut q): Query<HashMap<String, String>>,
) -> Result<Response, HttpError> {
    let format = match q.remove("format").as_deref() {
        None | Some("csv") => crate::export::Format::Csv,
        Some("json") => crate::export::Format::Json,
        Some(f) => return Err(HttpError::field("format", format!("'{f}' is not csv or json"))),
    };
    q.remove("limit");
    let search = s.national.audit_export(&actor, &q).await?;
    Ok(crate::export::stream(s.national.clone(), search, format))
}

/// The market's service figures (DR Art 35) with its incidents: availability, response times
/// by day (30 days) and by month (six months), every node of the system counted.
///
/// JSON for machines; with `Accept: text/html`, a page with tables and charts for people.
#[utoipa::path(
    get, path = "/status", tag = "operations",
    responses(
        (status = 200, description = "The figures.", content(
            (StatusReport = "application/json"),
            (String = "text/html"),
        )),
        (status = 503, description = "The store cannot be read: retry after `Retry-After`.", body = ErrorBody),
    )
)]
async fn status_page(State(s): State<NationalState>, headers: HeaderMap) -> Result<Response, HttpError> {
    let report = national_status(&s).await?;
    let wants_html =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    Ok(if wants_html {
        Html(status::html(&report)).into_response()
    } else {
        axum::Json(report).into_response()
    })
}

/// The market's service figures and incidents, as JSON: what `/status` shows.
#[utoipa::path(
    get, path = "/v1/status", tag = "operations",
    responses(
        (status = 200, description = "The figures.", body = StatusReport),
        (status = 503, description = "The store cannot be read: retry after `Retry-After`.", body = ErrorBody),
    )
)]
async fn status_json(State(s): State<NationalState>) -> Result<Response, HttpError> {
    Ok(axum::Json(national_status(&s).await?).into_response())
}

/// This system's SLA history, written and read under this node's id.
pub fn history_of(national: &National) -> crate::history::SlaHistory {
    let store: Arc<dyn openmvs_store::ConsoleStore> = national.store().clone();
    crate::history::SlaHistory::new(store, national.market().as_str(), national.node_id().as_str())
}

async fn national_status(s: &NationalState) -> Result<StatusReport, ApiError> {
    let market = s.national.market();
    let store: &dyn openmvs_store::ConsoleStore = s.national.store().as_ref();
    let incidents = crate::incidents::for_status(store, &[market.as_str()]).await?;
    Ok(status::report(&s.obs, &history_of(&s.national), market.as_str(), incidents).await?)
}

/// The market's incidents, newest first, a page at a time (anyone may read them).
#[utoipa::path(
    get, path = "/v1/incidents", tag = "incidents",
    params(
        ("open" = Option<bool>, Query, description = "Only incidents not resolved yet."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "The page size, 1-200 (default 50)."),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of incidents, newest first.", body = crate::incidents::IncidentList),
        (status = 400, description = "An unknown query parameter, or a value outside its rule.", body = ErrorBody),
    )
)]
async fn incidents(
    State(s): State<NationalState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, HttpError> {
    let q = crate::incidents::IncidentQuery::parse(&q)?;
    let page = crate::incidents::list(s.national.store().as_ref(), s.national.market().as_str(), &q).await?;
    Ok(axum::Json(page).into_response())
}

/// One incident of the market with its timeline.
#[utoipa::path(
    get, path = "/v1/incidents/{id}", tag = "incidents",
    params(("id" = u64, Path, description = "The incident's number.")),
    responses(
        (status = 200, description = "The incident.", body = crate::incidents::IncidentView),
        (status = 404, description = "The market has no incident with this number.", body = ErrorBody),
    )
)]
async fn incident(State(s): State<NationalState>, Path(id): Path<String>) -> Result<Response, HttpError> {
    let view = crate::incidents::one(s.national.store().as_ref(), s.national.market().as_str(), &id).await?;
    Ok(axum::Json(view).into_response())
}

/// The market's incidents as an Atom feed (RFC 4287), for feed readers and integrators.
#[utoipa::path(
    get, path = "/v1/incidents/feed.atom", tag = "incidents",
    responses((status = 200, description = "The latest 50 incidents.", body = String, content_type = "application/atom+xml"))
)]
async fn incidents_atom(State(s): State<NationalState>, headers: HeaderMap) -> Result<Response, HttpError> {
    incident_feed(&s, &headers, false).await
}

/// The market's incidents as a JSON Feed 1.1 (each item's `_openmvs` is the incident).
#[utoipa::path(
    get, path = "/v1/incidents/feed.json", tag = "incidents",
    responses((status = 200, description = "The latest 50 incidents.", body = Object, content_type = "application/feed+json"))
)]
async fn incidents_json(State(s): State<NationalState>, headers: HeaderMap) -> Result<Response, HttpError> {
    incident_feed(&s, &headers, true).await
}

async fn incident_feed(s: &NationalState, headers: &HeaderMap, json: bool) -> Result<Response, HttpError> {
    let market = s.national.market();
    let title = format!("OpenMVS {} incidents", market.as_str());
    let now = s.national.clock().now();
    let plain = s.obs.plain_http.load(std::sync::atomic::Ordering::Relaxed);
    let store = s.national.store().as_ref();
    Ok(crate::incidents::feed(store, market.as_str(), &title, headers, plain, json, now).await?)
}

pub(crate) fn may_manage_incidents(s: &NationalState, actor: &Actor) -> Result<(), ApiError> {
    use openmvs_core::roles::{Access, Action, access};
    if actor.market != s.national.market() {
        return Err(ApiError::new(ReturnCode::Forbidden).with("market", "the token is for another market"));
    }
    if access(actor.role, Action::ManageIncidents, &s.national.config().policy) != Access::Market {
        return Err(ApiError::new(ReturnCode::Forbidden)
            .with("authorization", "only the NMVO opens and updates the incidents of its market"));
    }
    Ok(())
}

/// Open an incident (the NMVO): it shows on the status page and in the feeds at once.
#[utoipa::path(
    post, path = "/v1/admin/incidents", tag = "incidents",
    request_body = crate::incidents::OpenIncidentRequest,
    responses(
        (status = 201, description = "The incident, as opened.", body = crate::incidents::IncidentView),
        (status = 400, description = "Malformed body, or a field outside its rule; `details` name it.", body = ErrorBody),
        (status = 413, description = "The body is over 16 KiB.", body = ErrorBody),
    )
)]
async fn admin_incident_open(
    State(s): State<NationalState>,
    Auth(actor): Auth,
    JsonBody(req): JsonBody<crate::incidents::OpenIncidentRequest>,
) -> Result<Response, HttpError> {
    may_manage_incidents(&s, &actor)?;
    let new = crate::incidents::new_incident(
        &req,
        s.national.market().as_str(),
        actor.client_id.as_str(),
        s.national.clock().now(),
    )?;
    let (i, _) = s.national.store().open_incident(new).await.map_err(ApiError::from)?;
    tracing::info!(incident = i.id, by = %actor.client_id, "incident opened");
    Ok((StatusCode::CREATED, axum::Json(crate::incidents::IncidentView::from(&i))).into_response())
}

/// Add an update to an incident (the NMVO); status `resolved` resolves it.
#[utoipa::path(
    post, path = "/v1/admin/incidents/{id}/updates", tag = "incidents",
    params(("id" = u64, Path, description = "The incident's number.")),
    request_body = crate::incidents::IncidentUpdateRequest,
    responses(
        (status = 200, description = "The incident with the update.", body = crate::incidents::IncidentView),
        (status = 400, description = "Malformed body, or a field outside its rule; `details` name it.", body = ErrorBody),
        (status = 404, description = "The market has no incident with this number.", body = ErrorBody),
        (status = 409, description = "The incident is resolved already.", body = ErrorBody),
        (status = 413, description = "The body is over 16 KiB.", body = ErrorBody),
    )
)]
async fn admin_incident_update(
    State(s): State<NationalState>,
    Path(id): Path<String>,
    Auth(actor): Auth,
    JsonBody(req): JsonBody<crate::incidents::IncidentUpdateRequest>,
) -> Result<Response, HttpError> {
    may_manage_incidents(&s, &actor)?;
    let market = s.national.market();
    let store: &dyn openmvs_store::ConsoleStore = s.national.store().as_ref();
    // An id that is not a number names no incident.
    crate::incidents::one(store, market.as_str(), &id).await?;
    let n: u64 = id.parse().unwrap_or(0);
    let (note, impact) =
        crate::incidents::incident_note(&req, actor.client_id.as_str(), s.national.clock().now())?;
    let i = crate::incidents::update(store, market.as_str(), n, note, impact).await?;
    tracing::info!(incident = i.id, by = %actor.client_id, status = i.status.as_str(), "incident updated");
    Ok(axum::Json(crate::incidents::IncidentView::from(&i)).into_response())
}

/// Prometheus metrics (text format 0.0.4).
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "The metrics.", body = String, content_type = "text/plain; version=0.0.4"))
)]
async fn metrics(State(s): State<NationalState>) -> Response {
    let pending = s.national.outbox_pending().await.ok();
    let figures = crate::figures::Figures {
        alerts: s.national.alerts_raised(),
        open_alerts: s.national.open_alerts().await.ok(),
        queues: s.national.outbox_queues().await.ok(),
        token_issuing: Some(s.national.token_issuing().is_ok()),
    };
    let text = s.obs.render_metrics(
        &crate::observe::NATIONAL_OUTBOX,
        pending,
        |out| crate::figures::write_national(out, &figures),
        s.national.store_ok(),
    );
    crate::observe::metrics_response(text)
}

/// Ready: started, not draining, and the store commits (the last probe write or commit succeeded).
/// Readiness: started, not draining, and the store commits.
#[utoipa::path(
    get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready.", body = String, content_type = "text/plain", example = "ready"),
        (status = 503, description = "Not ready: starting, draining, or the store does not commit.", body = String, content_type = "text/plain", example = "not ready"),
    )
)]
async fn ready(State(s): State<NationalState>) -> Response {
    if s.obs.is_ready() && s.national.store_ok() {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

async fn hub_messages(
    State(s): State<NationalState>,
    _hub: Hub,
    JsonBody(delivery): JsonBody<Delivery>,
) -> Result<Response, HttpError> {
    Ok(axum::Json(s.national.apply_delivery(&delivery).await?).into_response())
}

async fn hub_intermarket(
    State(s): State<NationalState>,
    _hub: Hub,
    JsonBody(req): JsonBody<IntermarketRequest>,
) -> Result<Response, HttpError> {
    let answer = s.national.intermarket(&req).await?;
    let market = answer.as_ref().map(|_| s.national.market().to_string());
    let response = answer.as_ref().map(PackResponse::from);
    Ok(axum::Json(IntermarketAnswer { market, response, unreachable: Vec::new() }).into_response())
}

async fn hub_pack_query(
    State(s): State<NationalState>,
    _hub: Hub,
    JsonBody(q): JsonBody<PackQuery>,
) -> Result<Response, HttpError> {
    let pc = openmvs_national::request::product_code("", Some(&q.scheme), Some(&q.product_code))?;
    let serial = openmvs_core::ids::Serial::new(&q.serial)
        .map_err(|e| ApiError::field("serial", format!("'{}' {e}", q.serial)))?;
    let pack = s.national.pack_state(&pc, &serial).await?;
    Ok(axum::Json(PackQueryAnswer { market: s.national.market().to_string(), pack }).into_response())
}

/// List the market's clients (the NMVO).
#[utoipa::path(
    get, path = "/v1/admin/clients", tag = "clients",
    responses((status = 200, description = "Every client of the market, in id order.", body = ClientList))
)]
async fn admin_clients(State(s): State<NationalState>, Auth(actor): Auth) -> Result<Response, HttpError> {
    let clients = s.national.list_clients(&actor).await?;
    Ok(axum::Json(ClientList::from(clients.as_slice())).into_response())
}

/// Cut a client off (the NMVO): its tokens are refused by every node within seconds, and it gets no new one.
#[utoipa::path(
    post, path = "/v1/admin/clients/{client_id}/disable", tag = "clients",
    params(("client_id" = String, Path, description = "The client's id.", example = "cl_9502d35169718f7dbe9cf7b17e344cec")),
    responses(
        (status = 200, description = "The client, disabled.", body = ClientState),
        (status = 400, description = "The NMVO's own client: it cannot cut itself off.", body = ErrorBody),
        (status = 404, description = "No client of the market has this id.", body = ErrorBody),
    )
)]
async fn admin_client_disable(
    State(s): State<NationalState>,
    Path(client_id): Path<String>,
    Auth(actor): Auth,
) -> Result<Response, HttpError> {
    let c = s.national.set_client_disabled(&actor, &client_id, true).await?;
    Ok(axum::Json(ClientState::from(&c)).into_response())
}

/// Let a client back in (the NMVO).
#[utoipa::path(
    post, path = "/v1/admin/clients/{client_id}/enable", tag = "clients",
    params(("client_id" = String, Path, description = "The client's id.", example = "cl_9502d35169718f7dbe9cf7b17e344cec")),
    responses(
        (status = 200, description = "The client, enabled.", body = ClientState),
        (status = 404, description = "No client of the market has this id.", body = ErrorBody),
    )
)]
async fn admin_client_enable(
    State(s): State<NationalState>,
    Path(client_id): Path<String>,
    Auth(actor): Auth,
) -> Result<Response, HttpError> {
    let c = s.national.set_client_disabled(&actor, &client_id, false).await?;
    Ok(axum::Json(ClientState::from(&c)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field<T: DeserializeOwned + std::fmt::Debug>(json: &str) -> String {
        let e = parse_json::<T>(json.as_bytes()).unwrap_err();
        e.0.details[0].field.clone()
    }

    #[test]
    fn json_errors_name_the_field_with_its_path() {
        assert_eq!(field::<PackRequest>(r#"{"serial": 12345}"#), "serial");
        assert_eq!(field::<PackRequest>(r#"{"colour": "red"}"#), "colour");
        assert_eq!(field::<PackRequest>("not json"), "body");
        assert_eq!(field::<PackRequest>(r#"{"client_trx_id": "#), "body");
        assert_eq!(field::<PackRequest>(r#"{} {}"#), "body");
        let bulk = r#"{"transactions": [{"operation":"verify","scheme":"GTIN","product_code":"1","serial":"2","batch":"3","expiry":"4"},
                                        {"operation":"verify","scheme":"GTIN","product_code":"1","serial":"2","batch":"3"}]}"#;
        assert_eq!(field::<BulkRequest>(bulk), "transactions[1].expiry");
        assert_eq!(
            field::<BulkRequest>(r#"{"transactions": [{"operation": 7}]}"#),
            "transactions[0].operation"
        );
    }
}
