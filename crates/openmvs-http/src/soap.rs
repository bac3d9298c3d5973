//! The NMVS SOAP routes of a national system, for software built for the NMVS web services: the
//! four services of v4.0 and of v5.0 at the paths NMVS serves them, each with its WSDL at
//! `GET <path>?wsdl`.
//!
//! A thin shell over the same national system as the JSON API: the envelope is read and the
//! answer written by `openmvs-soap`; the login in the operation's header is checked here (once
//! with argon2id, then remembered briefly by the national system, under the token endpoint's
//! failed-login limits and each client's request rate), with the connection's verified TLS
//! client certificate where the login needs one; the request goes to the very service
//! calls of `POST /v1/packs/...` and `POST /v1/bulk`, so rules, audit records, alerts and
//! idempotency (`ClientTrxId` is `client_trx_id`) are the same whichever interface a pack came
//! through.
//!
//! What the national system answers is an answer, HTTP 200 with its `ReturnCode`, refusals
//! included (a field at fault, a role not entitled, a client slowed for serial guessing, a
//! store that cannot commit): software built for NMVS shows nothing of an HTTP error or a fault.
//! Faults are kept for what is not a request: XML that is not well-formed or not
//! namespace-well-formed, another SOAP version, an unknown operation, a failed login, a body
//! over its limit, a rate or login limit.

use std::net::IpAddr;
use std::time::Instant;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use openmvs_core::ids::ClientId;
use openmvs_core::pack::Command;
use openmvs_core::return_code::ReturnCode;
use openmvs_national::{Actor, ApiError, CertificateCheck, new_id};
use openmvs_soap::write::{self, Context};
use openmvs_soap::{
    Fault, FaultCode, Message, Request, RequestBody, RequestHeader, Service, Version, translate,
};
use openmvs_telemetry::OpClass;

use crate::authz::Routes;
use crate::error::HttpError;
use crate::login::LoginRefusal;
use crate::national::{MAX_BODY, MAX_BULK_BODY, NationalState};
use crate::observe::Classified;
use crate::server::{OverTls, PeerName, RemoteAddr};

/// The paths of the NMVS services, v4.0 then v5.0; the authorization table lists each.
pub const PATHS: [&str; 8] = [
    "/WS_SINGLE_TRANSACTIONS_V1/SinglePackServiceV40",
    "/WS_BULK_TRANSACTIONS_V1/BulkServiceV40",
    "/WS_MIXED_BULK_TRANSACTIONS_V1/MixedBulkServiceV40",
    "/WS_SUPPORT_V1/SupportServiceV40",
    "/WS_SINGLE_TRANSACTIONS_V1/SinglePackServiceV50",
    "/WS_BULK_TRANSACTIONS_V1/BulkServiceV50",
    "/WS_MIXED_BULK_TRANSACTIONS_V1/MixedBulkServiceV50",
    "/WS_SUPPORT_V1/SupportServiceV50",
];

/// Bodies larger than this are read off the request threads (a bulk of up to 100,000 packs).
const PARSE_INLINE: usize = 256 * 1024;

/// The interface name audit records of SOAP logins carry.
const INTERFACE: &str = "nmvs-soap";

/// Adds the SOAP routes: operations by POST within the JSON API's body limits (a bulk's for
/// the bulk services), the WSDL by GET.
pub(crate) fn routes(mut r: Routes<NationalState>) -> Routes<NationalState> {
    for path in PATHS {
        let bulk = matches!(Service::at(path), Some((Service::Bulk | Service::MixedBulk, _)));
        let limit = if bulk { MAX_BULK_BODY } else { MAX_BODY };
        r = r.route_limited(Method::POST, path, DefaultBodyLimit::max(limit), post).route(
            Method::GET,
            path,
            wsdl,
        );
    }
    r
}

/// The service at a matched path, while the interface is on.
fn served(s: &NationalState, matched: &MatchedPath) -> Result<(Service, Version), HttpError> {
    match Service::at(matched.as_str()) {
        Some(sv) if s.national.config().secret_logins.enabled => Ok(sv),
        _ => Err(HttpError::new(ApiError::not_found("path", "no such route"))),
    }
}

/// The media type of the answers: the request's, SOAP 1.2's own by default.
fn media_type(headers: &HeaderMap) -> Result<&'static str, Fault> {
    let Some(v) = headers.get(header::CONTENT_TYPE) else { return Ok("application/soap+xml; charset=utf-8") };
    let media = v.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match media.as_str() {
        "text/xml" => Ok("text/xml; charset=utf-8"),
        "application/soap+xml" => Ok("application/soap+xml; charset=utf-8"),
        other => Err(Fault::malformed(format!(
            "the content-type '{other}' is not text/xml or application/soap+xml"
        ))),
    }
}

fn xml(status: StatusCode, media: &'static str, body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A fault with its HTTP status: 400 for the sender's, 500 otherwise (SOAP 1.2's HTTP binding),
/// and the status of its return code where that says more (413, 429, 503).
fn fault(version: Version, media: &'static str, f: &Fault) -> Response {
    let status = match f.subcode {
        ReturnCode::TooLarge
        | ReturnCode::RateLimited
        | ReturnCode::ClientSuspended
        | ReturnCode::Unavailable => {
            StatusCode::from_u16(f.subcode.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        }
        _ if f.code == FaultCode::Sender => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut r = xml(status, media, write::fault(version, f));
    if let Some(secs) = f.retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

/// The fault for a body that could not be read within its limits.
fn unreadable(e: &BytesRejection) -> Fault {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Fault::new(FaultCode::Sender, ReturnCode::TooLarge, "the body is over its size limit")
    } else {
        Fault::malformed(format!("the body could not be read: {}", e.body_text()))
    }
}

fn login_refused(r: LoginRefusal) -> Fault {
    match r {
        LoginRefusal::Limited { retry_after, by } => Fault::new(
            FaultCode::Sender,
            ReturnCode::RateLimited,
            format!("too many failed logins of this {by}: retry in {retry_after} s"),
        )
        .with_retry_after(retry_after),
        LoginRefusal::Busy => Fault::new(
            FaultCode::Receiver,
            ReturnCode::Unavailable,
            "the node is checking as many secrets as it can: retry in a second",
        )
        .with_retry_after(1),
    }
}

/// Who sent a request: the address it came from and the DNS names of its verified TLS client
/// certificate, if it presented one.
struct Sender {
    address: Option<IpAddr>,
    peer: Option<PeerName>,
}

/// Checks the login of a request's header: the client certificate it needs, if any, then the
/// secret, remembered by the national system if it was checked lately, else checked now under
/// the token endpoint's limits; then the client's rate.
async fn login(s: &NationalState, h: &RequestHeader, from: &Sender) -> Result<Actor, Fault> {
    let address = from.address;
    let target = s.national.login_client(&h.client_login_id, &h.user_id);
    let peer = from.peer.as_ref().map(|PeerName(names)| names.as_slice());
    let certificate = s.national.certificate_check(target.as_ref(), peer);
    // A login without the certificate it needs is not looked for among the remembered ones: it
    // is checked and refused like a wrong secret, and in the same time.
    let remembered = match &target {
        Some(t) if certificate != CertificateCheck::Unmet => {
            s.national.remembered_login(&t.client_id, &h.password).await
        }
        _ => None,
    };
    let actor = match remembered {
        Some(a) => a,
        None => {
            // A login no client can have is still checked (against a dummy hash, under an id
            // that names no client), so that it takes as long as a wrong secret.
            let id = target
                .map(|t| t.client_id)
                .unwrap_or_else(|| ClientId::from(format!("{}/{}", h.client_login_id, h.user_id)));
            let gate = &s.obs.login;
            gate.check(id.as_str(), address, Instant::now()).map_err(login_refused)?;
            let turn = gate.turn().await.map_err(login_refused)?;
            gate.check(id.as_str(), address, Instant::now()).map_err(login_refused)?;
            let outcome = s.national.login(&id, &h.password, certificate, INTERFACE).await;
            drop(turn);
            match outcome {
                Ok(a) => a,
                Err(openmvs_auth::AuthError::Internal(why)) => {
                    tracing::warn!(cause = %why, "SOAP login failed");
                    return Err(Fault::new(
                        FaultCode::Receiver,
                        ReturnCode::Unavailable,
                        "the login could not be checked now; nothing was changed",
                    )
                    .with_retry_after(1));
                }
                Err(_) => {
                    gate.failed(id.as_str(), address, Instant::now());
                    return Err(Fault::bad_login());
                }
            }
        }
    };
    if let Err(wait) = s.limiter.check(actor.client_id.as_str()) {
        return Err(Fault::new(
            FaultCode::Sender,
            ReturnCode::RateLimited,
            format!("too many requests from this client: retry in {wait} s"),
        )
        .with_retry_after(wait));
    }
    Ok(actor)
}

fn class(message: Message) -> OpClass {
    match message {
        Message::Single(Command::Verify) => OpClass::Verification,
        Message::Single(_) => OpClass::StatusUpdate,
        Message::Ping(_) => OpClass::Other,
        _ => OpClass::Bulk,
    }
}

async fn post(
    State(s): State<NationalState>,
    matched: MatchedPath,
    remote: Option<Extension<RemoteAddr>>,
    peer: Option<Extension<PeerName>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (service, version) = match served(&s, &matched) {
        Ok(sv) => sv,
        Err(e) => return e.into_response(),
    };
    let media = match media_type(&headers) {
        Ok(m) => m,
        Err(f) => {
            let mut r = fault(version, "application/soap+xml; charset=utf-8", &f);
            *r.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
            return r;
        }
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => return fault(version, media, &unreadable(&e)),
    };
    let read = if body.len() > PARSE_INLINE {
        let bytes = body.clone();
        tokio::task::spawn_blocking(move || openmvs_soap::read_request(&bytes, service, version))
            .await
            .unwrap_or_else(|e| Err(Fault::new(FaultCode::Receiver, ReturnCode::Unavailable, e.to_string())))
    } else {
        openmvs_soap::read_request(&body, service, version)
    };
    let request = match read {
        Ok(r) => r,
        Err(f) => return fault(version, media, &f),
    };
    let message = request.message;
    let from = Sender { address: remote.map(|r| r.0.0.ip()), peer: peer.map(|p| p.0) };
    let mut response = match answer(&s, request, &from).await {
        Ok((status, bytes, retry_after)) => {
            let mut r = xml(status, media, bytes);
            if let Some(secs) = retry_after {
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            r
        }
        Err(f) => fault(version, media, &f),
    };
    response.extensions_mut().insert(Classified(class(message)));
    response
}

/// Logs in, has the national system do what the request asks, and writes its answer (with the
/// seconds to wait before sending again, when a refusal says).
async fn answer(
    s: &NationalState,
    request: Request,
    from: &Sender,
) -> Result<(StatusCode, Vec<u8>, Option<u64>), Fault> {
    let Request { version, message, header, body } = request;
    let Some(header) = header else {
        let RequestBody::Ping(input) = &body else { return Err(Fault::malformed("no Header".to_owned())) };
        return Ok((StatusCode::OK, write::ping(version, message, input), None));
    };
    let actor = login(s, &header, from).await?;
    let national = &s.national;
    let now = national.clock().now();
    let mut cx = Context {
        version,
        message,
        login: Some((header.client_login_id.clone(), header.user_id.clone())),
        client_trx_id: header.client_trx_id.clone(),
        language: header.language.clone(),
        nmvs_trx_id: String::new(),
        timestamp: now.to_rfc3339(),
    };
    let refused = |mut cx: Context, e: ApiError| {
        cx.nmvs_trx_id = new_id("TRX", now);
        Ok((StatusCode::OK, write::refused(&cx, &e), e.retry_after))
    };
    match (message, body) {
        (Message::Single(command), RequestBody::Pack { product, serial, .. }) => {
            let req = translate::pack_request(&header, &product, &serial);
            match national.pack(&actor, command, &req).await {
                Ok(a) => {
                    cx.nmvs_trx_id = a.trx_id.clone();
                    Ok((StatusCode::OK, write::single(&cx, &product, &serial, &a), None))
                }
                Err(e) => refused(cx, e),
            }
        }
        (Message::Bulk(command), RequestBody::Packs { product, serials, .. }) => {
            let req = translate::bulk_request(&header, command, &product, &serials);
            match national.submit_bulk(&actor, &req).await {
                Ok(a) => {
                    cx.nmvs_trx_id = a.bulk_id.to_string();
                    Ok((StatusCode::OK, write::accepted(&cx), None))
                }
                Err(e) => refused(cx, e),
            }
        }
        (Message::MixedBulk, RequestBody::Mixed(items)) => {
            let (req, labels) = translate::mixed_request(&header, &items);
            match national.submit_labelled_bulk(&actor, &req, &labels).await {
                Ok(a) => {
                    cx.nmvs_trx_id = a.bulk_id.to_string();
                    Ok((StatusCode::OK, write::accepted(&cx), None))
                }
                Err(e) => refused(cx, e),
            }
        }
        (Message::BulkResult | Message::MixedBulkResult, RequestBody::Result(id)) => {
            let read = async {
                Ok::<_, ApiError>((national.bulk(&actor, &id).await?, national.bulk_rows(&actor, &id).await?))
            };
            match read.await {
                Ok((report, rows)) => {
                    cx.nmvs_trx_id = id;
                    let bytes = if message == Message::BulkResult {
                        write::bulk_result(&cx, &report, &rows)
                    } else {
                        let req_types: Vec<String> = rows
                            .iter()
                            .map(|r| {
                                Command::parse(&r.operation)
                                    .map_or("", |c| Message::Single(c).code())
                                    .to_owned()
                            })
                            .collect();
                        write::mixed_result(&cx, &report, &rows, &req_types)
                    };
                    Ok((StatusCode::OK, bytes, None))
                }
                Err(e) => {
                    let e = match e.code {
                        // The bulk's id is named in the envelope, not in a path.
                        ReturnCode::NotFound => ApiError::new(ReturnCode::NotFound)
                            .with("RefNMVSTrxId", format!("no bulk '{id}' of this client")),
                        _ => e,
                    };
                    refused(cx, e)
                }
            }
        }
        _ => Err(Fault::malformed(format!("the body of {} is not what the operation takes", message.code()))),
    }
}

/// `GET <path>?wsdl`: the service's WSDL, its endpoint at the URL it was asked at.
async fn wsdl(
    State(s): State<NationalState>,
    matched: MatchedPath,
    uri: Uri,
    tls: Option<Extension<OverTls>>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let (service, version) = served(&s, &matched)?;
    if !uri.query().is_some_and(|q| q.eq_ignore_ascii_case("wsdl")) {
        return Err(HttpError::field("query", "this path serves its WSDL at ?wsdl; operations are POSTed"));
    }
    let host = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_owned))
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_else(|| "localhost".to_owned());
    let scheme = if tls.is_some_and(|t| t.0.0) { "https" } else { "http" };
    let location = format!("{scheme}://{host}{}", service.path(version));
    Ok(xml(
        StatusCode::OK,
        "text/xml; charset=utf-8",
        openmvs_soap::wsdl::wsdl(service, version, &location).into_bytes(),
    ))
}
