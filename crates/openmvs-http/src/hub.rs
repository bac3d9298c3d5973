//! The hub's routes: the OBP API of api.md §3 as far as the hub service carries it (products,
//! batches, streamed serial uploads, upload status, recall, withdrawal, pack state changes,
//! alerts, the callback), the internal routes the national systems call (messages and
//! inter-market requests), with health, metrics and the return-code catalogue.
//!
//! An OBP is identified only by its client certificate: the server hands on the verified
//! certificate's DNS names (`PeerName`), and [`openmvs_pki::identity_of`] must read them as
//! `<id>.obp.openmvs`. An OBP whose certificate verifies is on-boarded at its first request under
//! that id (by the hub service, not here): the CA issuing the certificate is the on-boarding
//! decision, and revoking it (the CRL) is the off-boarding one.
//!
//! A national system is identified the same way, by a certificate naming `<market>.national.openmvs`;
//! only such a caller reaches `/internal/v1/...`, and only for its own market.
//!
//! Which caller each route takes is the authorization table's ([`crate::authz::HUB`]); the
//! `authorize` middleware admits it before any handler runs.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use openmvs_core::error::ApiError;
use openmvs_core::ids::MarketCode;
use openmvs_core::return_code::ReturnCode;
use openmvs_hub::Hub;
use openmvs_pki::Identity;
use openmvs_wire::api::{AlertCommentRequest, AlertCommentView, AlertDetail, AlertList, AlertStatusRequest};
use openmvs_wire::hub::{Delivery, IntermarketRequest};
use openmvs_wire::obp::{
    BatchAnswer, BatchRequest, CallbackBody, CallbackRequest, HubErrorBody, PackQueryBody, PackStatesBody,
    PackStatesRequest, PacksRequest, ProductAnswer, ProductRequest, RecallAnswer, RecallRequest,
    UploadAcceptedBody, UploadStatusBody, WithdrawRequest, WithdrawalAnswer,
};
use openmvs_wire::schema;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::authz::{self, Caller, Routes};
use crate::error::HubHttpError;
use crate::national::parse_json;
use crate::observe::{Observability, observe};
use crate::openapi;
use crate::server::PeerName;

/// The largest master data, batch, recall or withdrawal body.
pub const MAX_BODY: usize = 256 * 1024;
/// The largest pack state change: 10,000 serials of at most 20 characters, quoted and escaped.
pub const MAX_PACK_STATES_BODY: usize = 1024 * 1024;
/// The largest delivery from a national system: at most 100 messages (pack states and alerts).
pub const MAX_NATIONAL_DELIVERY_BODY: usize = 4 * 1024 * 1024;
/// The largest upload sent as JSON, which has to be read whole before it can be parsed: about a
/// million serials. Larger uploads go as `text/plain`, which is streamed.
pub const MAX_JSON_UPLOAD_BODY: usize = 32 * 1024 * 1024;
/// The longest line of a `text/plain` upload. A serial has at most 20 characters; a longer line
/// is still read (and rejected by the hub with its line number) up to this bound, beyond which
/// the body is not an upload and is refused without being buffered.
pub const MAX_LINE_BYTES: usize = 1024;
/// Lines read ahead of the hub: enough to keep it busy while the next chunk of the body arrives,
/// few enough that a slow store holds back the client instead of filling memory.
const LINES_AHEAD: usize = 4096;

/// What the handlers share.
#[derive(Clone)]
pub struct HubState {
    /// The service.
    pub hub: Arc<Hub>,
    /// Metrics and readiness.
    pub obs: Arc<Observability>,
}

fn too_large() -> HubHttpError {
    HubHttpError::from(ApiError::new(ReturnCode::TooLarge).with("body", "is over its size limit"))
}

/// The OBP calling, named by its verified client certificate, as the `authorize` middleware
/// admitted it. Only the certificate is read here: the hub service on-boards the OBP at its
/// first request and checks it on every one.
pub struct Obp(pub String);

/// The middleware's word on which OBP is calling.
#[derive(Clone)]
struct ObpAdmitted(String);

impl FromRequestParts<HubState> for Obp {
    type Rejection = HubHttpError;

    async fn from_request_parts(parts: &mut Parts, _: &HubState) -> Result<Obp, HubHttpError> {
        let Some(ObpAdmitted(id)) = parts.extensions.remove::<ObpAdmitted>() else {
            return Err(HubHttpError::from(ApiError::forbidden(
                "client_certificate",
                "an OBP client certificate issued by the hub's CA is required",
            )));
        };
        Ok(Obp(id))
    }
}

/// The OBP a verified client certificate names, or the 403 for any other caller.
fn obp_of(peer: Option<&PeerName>) -> Result<String, HubHttpError> {
    match peer.and_then(|PeerName(n)| openmvs_pki::identity_of(n)) {
        Some(Identity::Obp(id)) => Ok(id),
        Some(other) => Err(HubHttpError::from(ApiError::forbidden(
            "client_certificate",
            format!("names {}, not an OBP", other.dns_name()),
        ))),
        None => Err(HubHttpError::from(ApiError::forbidden(
            "client_certificate",
            "an OBP client certificate issued by the hub's CA is required",
        ))),
    }
}

/// The national system calling, named by its verified client certificate, as the `authorize`
/// middleware admitted it.
pub struct NationalCaller(pub MarketCode);

/// The middleware's word on which market's national system is calling.
#[derive(Clone, Copy)]
struct NationalAdmitted(MarketCode);

fn national_required() -> HubHttpError {
    HubHttpError::from(ApiError::forbidden(
        "client_certificate",
        "a national system's client certificate issued by the hub's CA is required",
    ))
}

impl FromRequestParts<HubState> for NationalCaller {
    type Rejection = HubHttpError;

    async fn from_request_parts(parts: &mut Parts, _: &HubState) -> Result<NationalCaller, HubHttpError> {
        parts.extensions.get::<NationalAdmitted>().map(|n| NationalCaller(n.0)).ok_or_else(national_required)
    }
}

/// The market a verified client certificate names, or the 403 for any other caller.
fn national_of(peer: Option<&PeerName>) -> Result<MarketCode, HubHttpError> {
    let refuse = |why: String| HubHttpError::from(ApiError::forbidden("client_certificate", why));
    match peer.and_then(|PeerName(n)| openmvs_pki::identity_of(n)) {
        Some(Identity::National(m)) => {
            MarketCode::new(&m).map_err(|e| refuse(format!("names market '{m}', which {e}")))
        }
        Some(other) => Err(refuse(format!("names {}, not a national system", other.dns_name()))),
        None => Err(national_required()),
    }
}

/// Who calls the hub: an OBP, a national system, or anyone, as [`authz::HUB`] names them.
impl authz::Door for HubState {
    type Body = HubErrorBody;
    const TABLE: &'static [authz::RouteRule] = authz::HUB;

    async fn admit(&self, caller: Caller, parts: &mut Parts) -> Result<(), HubHttpError> {
        let peer = parts.extensions.get::<PeerName>();
        match caller {
            Caller::Anyone | Caller::AdminToken => {}
            Caller::ObpCertificate => {
                let id = obp_of(peer)?;
                parts.extensions.insert(ObpAdmitted(id));
            }
            Caller::NationalCertificate => {
                let market = national_of(peer)?;
                parts.extensions.insert(NationalAdmitted(market));
            }
            // The hub takes no bearer tokens, and no hub calls it.
            Caller::Token(_) | Caller::HubCertificate | Caller::BodyLogin => {
                return Err(HubHttpError::from(ApiError::forbidden(
                    "client_certificate",
                    "no caller may use this route",
                )));
            }
        }
        Ok(())
    }
}

/// The hub's routes, each as the authorization table lists it.
pub fn hub_routes() -> Routes<HubState> {
    let small = || DefaultBodyLimit::max(MAX_BODY);
    let routes = Routes::new(authz::HUB)
        .route_limited(Method::PUT, "/v1/products/{product_code}", small(), put_product)
        .route_limited(Method::PUT, "/v1/products/{product_code}/batches/{batch}", small(), put_batch)
        // The body is read by the handler itself: streamed for text, bounded for JSON.
        .route_limited(
            Method::POST,
            "/v1/products/{product_code}/batches/{batch}/packs",
            DefaultBodyLimit::disable(),
            upload,
        )
        .route_limited(Method::POST, "/v1/products/{product_code}/batches/{batch}/recall", small(), recall)
        .route_limited(Method::POST, "/v1/products/{product_code}/withdraw", small(), withdraw)
        .route_limited(
            Method::POST,
            "/v1/products/{product_code}/batches/{batch}/packs/state",
            DefaultBodyLimit::max(MAX_PACK_STATES_BODY),
            pack_states,
        )
        .route(Method::GET, "/v1/uploads/{upload_id}", upload_status)
        .route(Method::GET, "/v1/products/{product_code}/packs/{serial}", pack_query)
        .route(Method::GET, "/v1/alerts", alerts)
        .route(Method::GET, "/v1/alerts/{id}", alert)
        .route_limited(Method::POST, "/v1/alerts/{id}/status", small(), alert_status)
        .route_limited(Method::POST, "/v1/alerts/{id}/comments", small(), alert_comment)
        .route_limited(Method::PUT, "/v1/callback", small(), set_callback)
        .route_limited(
            Method::POST,
            "/internal/v1/messages",
            DefaultBodyLimit::max(MAX_NATIONAL_DELIVERY_BODY),
            national_messages,
        )
        .route_limited(Method::POST, "/internal/v1/intermarket", small(), intermarket)
        .route(Method::GET, "/v1/return-codes", openapi::return_codes)
        .route(Method::GET, "/status", status_page)
        .route(Method::GET, "/v1/status", status_json)
        .route(Method::GET, "/v1/incidents", incidents)
        .route(Method::GET, "/v1/incidents/feed.atom", incidents_atom)
        .route(Method::GET, "/v1/incidents/feed.json", incidents_json)
        .route(Method::GET, "/v1/incidents/{id}", incident)
        .route(Method::GET, "/metrics", metrics)
        .route(Method::GET, "/health/live", openapi::live)
        .route(Method::GET, "/health/ready", ready)
        .route(Method::GET, "/v1/openapi.json", openapi::hub_document)
        .route(Method::GET, "/docs", openapi::hub_docs);
    crate::hub_web::routes(routes)
}

/// Builds the hub's router.
pub fn hub_router(state: HubState) -> Router {
    let obs = state.obs.clone();
    authz::guarded(hub_routes(), state)
        .layer(axum::middleware::from_fn(crate::web::security_headers))
        .layer(axum::middleware::from_fn_with_state(obs.load.clone(), crate::shed::shed))
        .layer(axum::middleware::from_fn_with_state(obs, observe))
}

/// A JSON request body at the hub: [`crate::national::JsonBody`]'s rules, the hub's error body.
pub struct HubJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for HubJson<T> {
    type Rejection = HubHttpError;

    async fn from_request(req: Request, state: &S) -> Result<HubJson<T>, HubHttpError> {
        Ok(HubJson(crate::national::read_json(req, state).await?))
    }
}

/// Upload a product's master data, or a new version of it.
///
/// The first OBP to upload a product code owns it. Every refused field is named: a missing one
/// with `A16`, an empty, blank or over-long one with `I1`.
#[utoipa::path(
    put, path = "/v1/products/{product_code}", tag = "products",
    params(("product_code" = schema::ProductCode, Path, description = "The product code.")),
    request_body = ProductRequest,
    responses(
        (status = 200, description = "The product, at its current master data version.", body = ProductAnswer),
        (status = 400, description = "Malformed body, or the path names no product code.", body = HubErrorBody),
        (status = 413, description = "The body is over 256 KiB.", body = HubErrorBody),
        (status = 422, description = "Refused master data: `A16` when a mandatory field is missing, `I1` when one is empty, blank, too long or invalid; `details` name every field at fault.", body = HubErrorBody),
    )
)]
async fn put_product(
    State(s): State<HubState>,
    Obp(obp): Obp,
    Path(pc): Path<String>,
    HubJson(req): HubJson<ProductRequest>,
) -> Result<Response, HubHttpError> {
    let a = s.hub.put_product(&obp, &pc, &req.to_raw()).await?;
    Ok(axum::Json(ProductAnswer::from(&a)).into_response())
}

/// Upload a batch: its expiry and the markets it is sold in (the product's, when absent).
///
/// A batch never changes: the same batch with another expiry is a conflict.
#[utoipa::path(
    put, path = "/v1/products/{product_code}/batches/{batch}", tag = "products",
    params(("product_code" = schema::ProductCode, Path, description = "The product code."), ("batch" = schema::BatchNumber, Path, description = "The batch.")),
    request_body = BatchRequest,
    responses(
        (status = 200, description = "The batch, bound to the product's current version.", body = BatchAnswer),
        (status = 400, description = "Malformed body, a batch that is not one, or an expiry that is not a date.", body = HubErrorBody),
        (status = 404, description = "The hub knows no such product.", body = HubErrorBody),
        (status = 409, description = "The batch was uploaded before with other data, or the product is withdrawn from a market it names.", body = HubErrorBody),
        (status = 413, description = "The body is over 256 KiB.", body = HubErrorBody),
        (status = 422, description = "A market that is not one of the product's target markets.", body = HubErrorBody),
    )
)]
async fn put_batch(
    State(s): State<HubState>,
    Obp(obp): Obp,
    Path((pc, batch)): Path<(String, String)>,
    HubJson(req): HubJson<BatchRequest>,
) -> Result<Response, HubHttpError> {
    let a = s.hub.put_batch(&obp, &pc, &batch, &req.expiry, req.markets).await?;
    Ok(axum::Json(BatchAnswer::from(&a)).into_response())
}

/// The media type of a request, without parameters, in lower case.
fn media_type(headers: &HeaderMap) -> String {
    let v = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    v.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// Upload the serials of a batch's packs.
///
/// As `text/plain`, one serial a line (LF or CRLF), up to 10,000,000 lines, streamed: every line
/// is durable when the answer comes. As `application/json`, `{"serials": [...]}` of up to 32 MiB.
/// Lines that are not serials, or repeat one, are rejected with their line number
/// (`GET /v1/uploads/{upload_id}`); the others go to the batch's markets.
#[utoipa::path(
    post, path = "/v1/products/{product_code}/batches/{batch}/packs", tag = "uploads",
    params(("product_code" = schema::ProductCode, Path, description = "The product code."), ("batch" = schema::BatchNumber, Path, description = "The batch.")),
    request_body(description = "The serials.", content(
        (PacksRequest = "application/json"),
        (String = "text/plain", example = json!("X4K9P7Q2M8R5\nX4K9P7Q2M8R6\nX4K9P7Q2M8R7\n")),
    )),
    responses(
        (status = 202, description = "Received: every line is durable, and the serials are on their way to the markets.", body = UploadAcceptedBody),
        (status = 400, description = "A content type that is neither `application/json` nor `text/plain`, a malformed JSON body, a line over 1 KiB, or a body cut off.", body = HubErrorBody),
        (status = 404, description = "The hub knows no such batch of the product.", body = HubErrorBody),
        (status = 413, description = "A JSON body over 32 MiB, or more than 10,000,000 lines.", body = HubErrorBody),
    )
)]
async fn upload(
    State(s): State<HubState>,
    Obp(obp): Obp,
    Path((pc, batch)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HubHttpError> {
    let accepted = match media_type(&headers).as_str() {
        "application/json" => {
            let bytes = match axum::body::to_bytes(body, MAX_JSON_UPLOAD_BODY).await {
                Ok(b) => b,
                Err(e) if is_length_limit(&e) => return Err(too_large()),
                Err(e) => return Err(HubHttpError::from(ApiError::malformed("body", e.to_string()))),
            };
            let req: PacksRequest = parse_json(&bytes)?;
            let lines = openmvs_hub::IterLines(req.serials.into_iter());
            s.hub.upload_serials(&obp, &pc, &batch, lines).await?
        }
        "text/plain" => {
            let (tx, rx) = mpsc::channel(LINES_AHEAD);
            let feed = feed_lines(body, tx);
            let upload = s.hub.upload_serials(&obp, &pc, &batch, rx);
            tokio::pin!(feed, upload);
            // The hub may finish first (an unknown batch, a refused upload): then the rest of the
            // body is not read at all. If the body ends first, the hub still commits what it has.
            tokio::select! {
                r = &mut upload => r?,
                () = &mut feed => upload.await?,
            }
        }
        other => {
            return Err(HubHttpError::from(ApiError::malformed(
                "content-type",
                format!("'{other}' is neither application/json nor text/plain"),
            )));
        }
    };
    Ok((StatusCode::ACCEPTED, axum::Json(UploadAcceptedBody::from(&accepted))).into_response())
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Splits a streamed body into lines (LF or CRLF, the terminator dropped) and hands them to the
/// hub one at a time. Only the unfinished line is held between body chunks, so memory stays
/// bounded by [`MAX_LINE_BYTES`] plus one chunk whatever the body's size. Stops as soon as the
/// hub stops reading.
async fn feed_lines(mut body: Body, tx: mpsc::Sender<Result<String, String>>) {
    async fn send(tx: &mpsc::Sender<Result<String, String>>, line: &[u8]) -> bool {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // Bytes that are not UTF-8 cannot be a serial: the replacement character makes the hub
        // reject the line with its number instead of failing the whole upload.
        tx.send(Ok(String::from_utf8_lossy(line).into_owned())).await.is_ok()
    }
    let mut partial: Vec<u8> = Vec::new();
    let mut line_no = 0u64;
    loop {
        let frame = match body.frame().await {
            None => break,
            Some(Err(e)) => {
                let _ = tx.send(Err(format!("reading the body: {e}"))).await;
                return;
            }
            Some(Ok(f)) => f,
        };
        let Ok(data) = frame.into_data() else { continue };
        let mut rest: &[u8] = &data;
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
            line_no += 1;
            if partial.len() + pos > MAX_LINE_BYTES {
                let _ = tx.send(Err(format!("line {line_no} is longer than {MAX_LINE_BYTES} bytes"))).await;
                return;
            }
            let sent = if partial.is_empty() {
                send(&tx, &rest[..pos]).await
            } else {
                partial.extend_from_slice(&rest[..pos]);
                let sent = send(&tx, &partial).await;
                partial.clear();
                sent
            };
            if !sent {
                return;
            }
            rest = &rest[pos + 1..];
        }
        partial.extend_from_slice(rest);
        if partial.len() > MAX_LINE_BYTES {
            let _ = tx.send(Err(format!("line {} is longer than {MAX_LINE_BYTES} bytes", line_no + 1))).await;
            return;
        }
    }
    if !partial.is_empty() {
        let _ = send(&tx, &partial).await;
    }
}

/// Read where an upload stands: lines received and rejected, and each market's delivery.
#[utoipa::path(
    get, path = "/v1/uploads/{upload_id}", tag = "uploads",
    params(("upload_id" = String, Path, description = "The id the upload answered.", example = "UPL-01a2282c62d2-95d2de49d32d2f5a")),
    responses(
        (status = 200, description = "The upload.", body = UploadStatusBody),
        (status = 404, description = "No upload of this OBP has this id.", body = HubErrorBody),
    )
)]
async fn upload_status(
    State(s): State<HubState>,
    Obp(obp): Obp,
    Path(id): Path<String>,
) -> Result<Response, HubHttpError> {
    let u = s.hub.upload(&obp, &id).await?;
    Ok(axum::Json(UploadStatusBody::from(&u)).into_response())
}

/// Recall a batch in some of its markets.
#[utoipa::path(
    post, path = "/v1/products/{product_code}/batches/{batch}/recall", tag = "products",
    params(("product_code" = schema::ProductCode, Path, description = "The product code."), ("batch" = schema::BatchNumber, Path, description = "The batch.")),
    request_body = RecallRequest,
    responses(
        (status = 200, description = "The markets the batch is recalled in now.", body = RecallAnswer),
        (status = 400, description = "Malformed body, or a reason that is blank or over 500 characters.", body = HubErrorBody),
        (status = 404, description = "The hub knows no such batch of the product.", body = HubErrorBody),
        (status = 413, description = "The body is over 256 KiB.", body = HubErrorBody),
        (status = 422, description = "No market named, or one that is not the batch's.", body = HubErrorBody),
    )
)]
async fn recall(
    State(s): State<HubState>,
    Obp(obp): Obp,
    Path((pc, batch)): Path<(String, String)>,
    HubJson(req): HubJson<RecallRequest>,
) -> Result<Response, HubHttpError> {
    let a = s.hub.recall(&obp, &pc, &batch, &req.reason, &req.markets).await?;
    Ok(axum::Json(RecallAnswer::from(&a)).into_response())
}

/// Withdraw a product from some of its markets.
#[utoipa::path(
    post, path = "/v1/products/{product_code}/withdraw", tag = "products",
    params(("product_code" = schema::ProductCode, Path, description = "The product code.")),
    request_body = WithdrawRequest,
    responses(
        (status = 200, description = "The markets the product is withdrawn from now.", body = WithdrawalAnswer),
        (status = 400, description = "Malformed body, or a reason that is blank or over 500 characters.", body = HubErrorBody),
        (status = 404, description = "The hub knows no such product.", body = HubErrorBody),
        (status = 413, description = "The body is over 256 KiB.", body = HubErrorBody),
        (status = 422, description = "No market named, or one that is not the product's.", body = HubErrorBody),
    )
)]
async fn withdraw(
    State(s): State<HubState>,
    Obp(obp): Obp,
    Path(pc): Path<String>,
    HubJson(req): HubJson<WithdrawRequest>,
) -> Result<Response, HubHttpError> {
    let a = s.hub.withdraw(&obp, &pc, &req.reason, &req.markets).await?;
    Ok(axum::Json(WithdrawalAnswer::from(&a)).into_response())
}

/// Set the state of some of a batch's packs in every market of the batch, or undo the OBP's check-out.
#[utoipa::path(
    post, path = "/v1/products/{product_code}/batches/{batch}/packs/state", tag = "packs",
    params(("product_code" = schema::ProductCode, Path, description = "The product code."), ("batch" = schema::BatchNumber, Path, description = "The batch.")),
    request_body = PackStatesRequest,
    responses(
        (status = 200, description = "What happened to each serial, in request order: a serial that is not one is `NMVS_TE_XM_02`, one never uploaded `NMVS_TE_NF_01`.", body = PackStatesBody),
        (status = 400, description = "Malformed body, a state an OBP may not set (or undo), or no serial.", body = HubErrorBody),
        (status = 404, description = "The hub knows no such batch of the product.", body = HubErrorBody),
        (status = 413, description = "The body is over 1 MiB, or more than 10,000 serials.", body = HubErrorBody),
    )
)]
async fn pack_states(
    State(s): State<HubState>,
    Obp(obp): Obp,
    Path((pc, batch)): Path<(String, String)>,
    HubJson(req): HubJson<PackStatesRequest>,
) -> Result<Response, HubHttpError> {
    let a = if req.undo {
        s.hub.undo_pack_states(&obp, &pc, &batch, &req.state, &req.serials).await?
    } else {
        s.hub.set_pack_states(&obp, &pc, &batch, &req.state, &req.serials).await?
    };
    Ok(axum::Json(PackStatesBody::from(&a)).into_response())
}

/// Where one pack stands in each of its markets, each market asked through the hub.
#[utoipa::path(
    get, path = "/v1/products/{product_code}/packs/{serial}", tag = "packs",
    params(("product_code" = schema::ProductCode, Path, description = "The product code."), ("serial" = schema::SerialNumber, Path, description = "The serial.")),
    responses(
        (status = 200, description = "The pack in each target market; a market that did not answer shows `UNKNOWN`.", body = PackQueryBody),
        (status = 400, description = "The path names no product code, or the serial is not one.", body = HubErrorBody),
        (status = 404, description = "No product of this OBP has this code.", body = HubErrorBody),
    )
)]
async fn pack_query(
    State(s): State<HubState>,
    Obp(obp): Obp,
    Path((pc, serial)): Path<(String, String)>,
) -> Result<Response, HubHttpError> {
    let a = s.hub.pack(&obp, &pc, &serial).await?;
    Ok(axum::Json(PackQueryBody::from(&a)).into_response())
}

/// List the alerts on the OBP's products, a page at a time.
#[utoipa::path(
    get, path = "/v1/alerts", tag = "alerts",
    params(
        ("status" = Option<schema::AlertStatusName>, Query, description = "Only alerts with this status."),
        ("code" = Option<String>, Query, description = "Only alerts with this alert code (A2, A3, A24, A52, A68)."),
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
        (status = 400, description = "An unknown query parameter, or a value outside its rule (`details` name it).", body = HubErrorBody),
    )
)]
async fn alerts(
    State(s): State<HubState>,
    Obp(obp): Obp,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, HubHttpError> {
    let (criteria, limit) = crate::national::alert_query(&q)?;
    let list = s
        .hub
        .alerts(
            &obp,
            q.get("status").map(String::as_str),
            &criteria,
            limit,
            q.get("cursor").map(String::as_str),
        )
        .await?;
    Ok(axum::Json(AlertList::from(&list)).into_response())
}

/// Read an alert on one of the OBP's products, with its comments and its status history.
#[utoipa::path(
    get, path = "/v1/alerts/{id}", tag = "alerts",
    params(("id" = String, Path, description = "The alert's id, the same everywhere.", example = "ALR-01a227e36123-45b93e0ddaafc04f")),
    responses(
        (status = 200, description = "The alert.", body = AlertDetail),
        (status = 404, description = "No alert on the OBP's products has this id.", body = HubErrorBody),
    )
)]
async fn alert(
    State(s): State<HubState>,
    Obp(obp): Obp,
    Path(id): Path<String>,
) -> Result<Response, HubHttpError> {
    Ok(axum::Json(AlertDetail::from(&s.hub.alert(&obp, &id).await?)).into_response())
}

/// Change the status of an alert on one of the OBP's products.
///
/// The change reaches every market that holds the alert within seconds.
#[utoipa::path(
    post, path = "/v1/alerts/{id}/status", tag = "alerts",
    params(("id" = String, Path, description = "The alert's id, the same everywhere.", example = "ALR-01a227e36123-45b93e0ddaafc04f")),
    request_body = AlertStatusRequest,
    responses(
        (status = 200, description = "The alert after the change.", body = AlertDetail),
        (status = 400, description = "Malformed body, an unknown status or classification, a change the lifecycle does not allow, or a comment over 500 characters.", body = HubErrorBody),
        (status = 404, description = "No alert on the OBP's products has this id.", body = HubErrorBody),
        (status = 413, description = "The body is over 256 KiB.", body = HubErrorBody),
    )
)]
async fn alert_status(
    State(s): State<HubState>,
    Obp(obp): Obp,
    Path(id): Path<String>,
    HubJson(req): HubJson<AlertStatusRequest>,
) -> Result<Response, HubHttpError> {
    let a = s
        .hub
        .change_alert_status(&obp, &id, &req.status, req.classification.as_deref(), req.comment.as_deref())
        .await?;
    Ok(axum::Json(AlertDetail::from(&a)).into_response())
}

/// Comment on an alert on one of the OBP's products.
#[utoipa::path(
    post, path = "/v1/alerts/{id}/comments", tag = "alerts",
    params(("id" = String, Path, description = "The alert's id, the same everywhere.", example = "ALR-01a227e36123-45b93e0ddaafc04f")),
    request_body = AlertCommentRequest,
    responses(
        (status = 201, description = "The comment, as added to the alert's thread.", body = AlertCommentView),
        (status = 400, description = "Malformed body, or a text that is empty, blank or over 500 characters.", body = HubErrorBody),
        (status = 404, description = "No alert on the OBP's products has this id.", body = HubErrorBody),
        (status = 413, description = "The body is over 256 KiB.", body = HubErrorBody),
    )
)]
async fn alert_comment(
    State(s): State<HubState>,
    Obp(obp): Obp,
    Path(id): Path<String>,
    HubJson(req): HubJson<AlertCommentRequest>,
) -> Result<Response, HubHttpError> {
    let comment = s.hub.comment_alert(&obp, &id, &req.text).await?;
    Ok((StatusCode::CREATED, axum::Json(AlertCommentView::from(&comment))).into_response())
}

/// Set the URL the hub POSTs the OBP's events to: new alerts, what markets did to them, recalls and withdrawals.
///
/// Each POST carries up to 100 events, signed (`x-openmvs-signature`: hex HMAC-SHA256 of the body
/// under the `secret` answered here), and is retried until acknowledged.
#[utoipa::path(
    put, path = "/v1/callback", tag = "callback",
    request_body = CallbackRequest,
    responses(
        (status = 200, description = "The callback, with the key of its signatures.", body = CallbackBody),
        (status = 400, description = "Malformed body, or a URL that is not `https://` with a host, or over 2,000 characters.", body = HubErrorBody),
        (status = 413, description = "The body is over 256 KiB.", body = HubErrorBody),
    )
)]
async fn set_callback(
    State(s): State<HubState>,
    Obp(obp): Obp,
    HubJson(req): HubJson<CallbackRequest>,
) -> Result<Response, HubHttpError> {
    let a = s.hub.set_callback(&obp, &req.url).await?;
    Ok(axum::Json(CallbackBody::from(&a)).into_response())
}

async fn national_messages(
    State(s): State<HubState>,
    NationalCaller(market): NationalCaller,
    HubJson(delivery): HubJson<Delivery>,
) -> Result<Response, HubHttpError> {
    Ok(axum::Json(s.hub.apply_from_national(market, &delivery).await?).into_response())
}

async fn intermarket(
    State(s): State<HubState>,
    NationalCaller(market): NationalCaller,
    HubJson(req): HubJson<IntermarketRequest>,
) -> Result<Response, HubHttpError> {
    // A market asks for its own users only: the request is processed as if made there.
    if req.market != market.as_str() {
        return Err(HubHttpError::from(ApiError::forbidden(
            "market",
            format!("'{}' is not the caller's market {market}", req.market),
        )));
    }
    Ok(axum::Json(s.hub.intermarket(req).await?).into_response())
}

/// The hub's status: every market with whether it answers, how long a delivery takes and the
/// backlog waiting for it and its age; the OBPs' callback queues; the hub's own figures.
///
/// JSON for machines; with `Accept: text/html`, a page for people.
#[utoipa::path(
    get, path = "/status", tag = "operations",
    responses(
        (status = 200, description = "The figures.", content(
            (crate::hub_status::HubStatusReport = "application/json"),
            (String = "text/html"),
        )),
    )
)]
async fn status_page(State(s): State<HubState>, headers: HeaderMap) -> Response {
    let report = match crate::hub_status::report(&s.hub, &s.obs).await {
        Ok(r) => r,
        Err(e) => return HubHttpError::from(e).into_response(),
    };
    let wants_html =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    if wants_html {
        axum::response::Html(crate::hub_status::html(&report)).into_response()
    } else {
        axum::Json(report).into_response()
    }
}

/// The hub's status as JSON: what `/status` shows.
#[utoipa::path(
    get, path = "/v1/status", tag = "operations",
    responses(
        (status = 200, description = "The figures.", body = crate::hub_status::HubStatusReport),
        (status = 503, description = "The store cannot be read: retry after `Retry-After`.", body = HubErrorBody),
    )
)]
async fn status_json(State(s): State<HubState>) -> Result<Response, HubHttpError> {
    Ok(axum::Json(crate::hub_status::report(&s.hub, &s.obs).await?).into_response())
}

/// The hub's own incidents, newest first, a page at a time (anyone may read them).
#[utoipa::path(
    get, path = "/v1/incidents", tag = "incidents",
    params(
        ("open" = Option<bool>, Query, description = "Only incidents not resolved yet."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "The page size, 1-200 (default 50)."),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of incidents, newest first.", body = crate::incidents::IncidentList),
        (status = 400, description = "An unknown query parameter, or a value outside its rule.", body = HubErrorBody),
    )
)]
async fn incidents(
    State(s): State<HubState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, HubHttpError> {
    let q = crate::incidents::IncidentQuery::parse(&q)?;
    let page = crate::incidents::list(s.hub.store().as_ref(), crate::hub_status::HUB_SCOPE, &q).await?;
    Ok(axum::Json(page).into_response())
}

/// One incident of the hub with its timeline.
#[utoipa::path(
    get, path = "/v1/incidents/{id}", tag = "incidents",
    params(("id" = u64, Path, description = "The incident's number.")),
    responses(
        (status = 200, description = "The incident.", body = crate::incidents::IncidentView),
        (status = 404, description = "The hub has no incident with this number.", body = HubErrorBody),
    )
)]
async fn incident(State(s): State<HubState>, Path(id): Path<String>) -> Result<Response, HubHttpError> {
    let view = crate::incidents::one(s.hub.store().as_ref(), crate::hub_status::HUB_SCOPE, &id).await?;
    Ok(axum::Json(view).into_response())
}

/// The hub's incidents as an Atom feed (RFC 4287).
#[utoipa::path(
    get, path = "/v1/incidents/feed.atom", tag = "incidents",
    responses((status = 200, description = "The latest 50 incidents.", body = String, content_type = "application/atom+xml"))
)]
async fn incidents_atom(State(s): State<HubState>, headers: HeaderMap) -> Result<Response, HubHttpError> {
    incident_feed(&s, &headers, false).await
}

/// The hub's incidents as a JSON Feed 1.1 (each item's `_openmvs` is the incident).
#[utoipa::path(
    get, path = "/v1/incidents/feed.json", tag = "incidents",
    responses((status = 200, description = "The latest 50 incidents.", body = Object, content_type = "application/feed+json"))
)]
async fn incidents_json(State(s): State<HubState>, headers: HeaderMap) -> Result<Response, HubHttpError> {
    incident_feed(&s, &headers, true).await
}

async fn incident_feed(s: &HubState, headers: &HeaderMap, json: bool) -> Result<Response, HubHttpError> {
    let now = s.hub.clock().now();
    let store = s.hub.store().as_ref();
    Ok(crate::incidents::feed(
        store,
        crate::hub_status::HUB_SCOPE,
        "OpenMVS hub incidents",
        headers,
        s.obs.plain_http.load(std::sync::atomic::Ordering::Relaxed),
        json,
        now,
    )
    .await?)
}

/// Prometheus metrics (text format 0.0.4).
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "The metrics.", body = String, content_type = "text/plain; version=0.0.4"))
)]
async fn metrics(State(s): State<HubState>) -> Response {
    let pending = s.hub.outbox_pending().await.ok();
    let figures = crate::figures::Figures {
        alerts: s.hub.alerts_received(),
        open_alerts: s.hub.open_alerts().await.ok(),
        queues: s.hub.outbox_queues().await.ok(),
        token_issuing: None,
    };
    let text = s.obs.render_metrics(
        &crate::observe::HUB_OUTBOX,
        pending,
        |out| crate::figures::write_hub(out, &figures),
        s.hub.store_ok(),
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
async fn ready(State(s): State<HubState>) -> Response {
    if s.obs.is_ready() && s.hub.store_ok() {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Bytes;
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;

    /// A body that arrives in the given pieces, one frame each.
    struct Pieces(VecDeque<Bytes>);

    impl hyper::body::Body for Pieces {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(hyper::body::Frame::data(b))))
        }
    }

    async fn lines(pieces: &[&[u8]]) -> Vec<Result<String, String>> {
        let body = Body::new(Pieces(pieces.iter().map(|p| Bytes::copy_from_slice(p)).collect()));
        let (tx, mut rx) = mpsc::channel(16);
        let feed = tokio::spawn(feed_lines(body, tx));
        let mut out = Vec::new();
        while let Some(l) = rx.recv().await {
            out.push(l);
        }
        feed.await.unwrap();
        out
    }

    fn ok(v: &[&str]) -> Vec<Result<String, String>> {
        v.iter().map(|s| Ok((*s).to_owned())).collect()
    }

    #[tokio::test]
    async fn lines_split_across_frames_arrive_whole_without_their_terminators() {
        assert_eq!(lines(&[b"SER", b"IAL1\r", b"\nS2\n\nS", b"3"]).await, ok(&["SERIAL1", "S2", "", "S3"]));
        assert_eq!(lines(&[b"A\n", b"B\n"]).await, ok(&["A", "B"]));
        assert_eq!(lines(&[]).await, ok(&[]));
    }

    #[tokio::test]
    async fn bytes_that_are_not_utf8_become_a_line_the_hub_can_reject() {
        let got = lines(&[b"A\n\xff\xfe\nB"]).await;
        assert_eq!(got.len(), 3);
        assert!(got[1].as_ref().unwrap().contains('\u{fffd}'));
    }

    #[tokio::test]
    async fn an_endless_line_ends_the_feed_with_an_error_naming_the_line() {
        let long = vec![b'x'; MAX_LINE_BYTES + 1];
        let got = lines(&[b"A\n", &long[..10], &long[10..], b"\nB\n"]).await;
        assert_eq!(got[0], Ok("A".to_owned()));
        assert_eq!(got.len(), 2);
        assert!(got[1].as_ref().unwrap_err().contains("line 2"), "{got:?}");
    }
}
