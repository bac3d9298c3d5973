//! The contract documents: the OpenAPI 3.1 document of the national system and of the hub, and
//! their pages for people (`GET /v1/openapi.json`, `GET /docs`).
//!
//! Each document is generated from the code: the request and response schemas from the
//! `openmvs-wire` shapes (`ToSchema`), each operation from its handler's `#[utoipa::path]`
//! (summary, parameters, bodies, the answers the handler itself gives). What every route of a
//! system has in common is added here from the tables that decide it, not written again on each
//! handler: the door's refusals and the security scheme from the route's entry in the
//! authorization table ([`authz`]), 503 from load shedding ([`crate::shed`]), the
//! `x-request-id` header, and under every response that carries a return code the codes it can
//! carry, from the one return-code table (`x-return-codes`, and the same list in the
//! description).
//!
//! A document describes exactly the public contract: the internal hub-to-national routes
//! (`/internal/...`) and the NMVS SOAP routes (`/WS_...`, described by their WSDL) are left out.
//! The `openapi` test suite fails when a routed path is missing from its document or the
//! document names one that is not routed.

use std::sync::OnceLock;

use axum::Extension;
use axum::http::{HeaderValue, Method, header};
use axum::response::{Html, IntoResponse, Response};
use openmvs_core::return_code::{CodeKind, ReturnCode};
use openmvs_wire::ReturnCodeCatalogue;
use openmvs_wire::schema;
use utoipa::OpenApi;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response as DocResponse, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{
    ClientCredentials, Flow, HttpAuthScheme, HttpBuilder, OAuth2, Scopes, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Tag};

use crate::admin::ClockRoute;
use crate::authz::{self, Caller, RouteRule};
use crate::{admin, hub, national};

/// Which system a document describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// A national system: the end-user API (api.md §2).
    National,
    /// The European Hub: the OBP API (api.md §3).
    Hub,
}

impl Component {
    /// The system's authorization table: every route it has.
    pub fn table(self) -> &'static [RouteRule] {
        match self {
            Component::National => authz::NATIONAL,
            Component::Hub => authz::HUB,
        }
    }

    /// The name of the system's error body schema.
    fn error_body(self) -> &'static str {
        match self {
            Component::National => "ErrorBody",
            Component::Hub => "HubErrorBody",
        }
    }
}

/// Whether a route of the table belongs in the public contract: the internal hub-to-national
/// routes are OpenMVS's own business, and the NMVS SOAP routes are described by their WSDL.
pub fn is_public(path: &str) -> bool {
    !path.starts_with("/internal/") && !path.starts_with("/WS_") && path != "/ui" && !path.starts_with("/ui/")
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "OpenMVS national system",
        version = "1.1",
        description = "The end-user API of a national medicines verification system (EU FMD): \
            pharmacies, hospitals and wholesalers verify and decommission packs, the national \
            organisation (NMVO) works alerts and manages clients, the authority (NCA) reads the \
            audit trail. Every call but the public ones sends `Authorization: Bearer <token>`, a \
            token from `POST /oauth/token` (OAuth2 client credentials). Every response carries an \
            `x-request-id` header. Enumerations are upper-case strings; times are RFC 3339 UTC; an \
            expiry is the 6-character `YYMMDD` exactly as encoded.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        national::token,
        national::pack,
        national::pack_undo,
        national::bulk_submit,
        national::bulk_get,
        national::alerts,
        national::alert,
        national::alert_status,
        national::alert_comment,
        national::audit,
        national::admin_clients,
        national::admin_client_disable,
        national::admin_client_enable,
        return_codes,
        national::audit_records,
        national::audit_export,
        national::status_page,
        national::status_json,
        national::incidents,
        national::incident,
        national::incidents_atom,
        national::incidents_json,
        national::admin_incident_open,
        national::admin_incident_update,
        national::metrics,
        live,
        national::ready,
        national_document,
        national_docs,
    ),
    // The schemas only parameters name, which utoipa does not collect by itself.
    components(schemas(
        schema::PackOperation,
        schema::UndoableOperation,
        schema::AlertStatusName,
        schema::Scheme,
        schema::ProductCode,
        schema::SerialNumber,
    )),
    tags(
        (name = "auth", description = "Tokens for every other call (OAuth2 client credentials)."),
        (name = "packs", description = "Single-pack verification, decommissioning and undo."),
        (name = "bulk", description = "Up to 100,000 packs in one request, processed in the background."),
        (name = "alerts", description = "Alerts raised by failed checks, and their investigation (api.md §4)."),
        (name = "audit", description = "The audit trail of a pack, for the authority and the NMVO."),
        (name = "clients", description = "The NMVO's administration of the market's clients."),
        (name = "incidents", description = "Incidents of the system with their timeline, and their feeds: public to read; the NMVO opens, updates and resolves them."),
        (name = "operations", description = "Return codes, service figures, metrics and health: public."),
        (name = "documents", description = "This document, and its page for people: public."),
        (name = "demo", description = "Only in a demonstration started with `openmvs demo --fake-clock`."),
    )
)]
struct NationalApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "OpenMVS European Hub: OBP API",
        version = "1.1",
        description = "The API of the European Hub for on-boarding partners (OBPs: manufacturers \
            and parallel distributors): product master data, batches, serial uploads streamed to \
            every target market, recalls and withdrawals, pack states, alerts on the OBP's products \
            and the callback that receives them. Every call but the public ones needs a client \
            certificate issued by the hub's CA (mutual TLS); the certificate names the OBP. An OBP \
            may touch only the products it owns (the first OBP to upload a product code owns it). \
            Every response carries an `x-request-id` header.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        hub::put_product,
        hub::put_batch,
        hub::upload,
        hub::upload_status,
        hub::recall,
        hub::withdraw,
        hub::pack_states,
        hub::pack_query,
        hub::alerts,
        hub::alert,
        hub::alert_status,
        hub::alert_comment,
        hub::set_callback,
        return_codes,
        hub::status_page,
        hub::status_json,
        hub::incidents,
        hub::incident,
        hub::incidents_atom,
        hub::incidents_json,
        hub::metrics,
        live,
        hub::ready,
        hub_document,
        hub_docs,
    ),
    // The schemas only parameters name, which utoipa does not collect by itself.
    components(schemas(schema::AlertStatusName, schema::ProductCode, schema::BatchNumber, schema::SerialNumber)),
    tags(
        (name = "products", description = "Master data, batches, recalls and withdrawals."),
        (name = "uploads", description = "Serial uploads, and where each stands."),
        (name = "packs", description = "Pack states set by the OBP, and where a pack stands in each market."),
        (name = "alerts", description = "Alerts on the OBP's products, worked together with the markets' NMVOs."),
        (name = "callback", description = "Where the hub sends the OBP's events."),
        (name = "incidents", description = "Incidents of the hub with their timeline, and their feeds: public."),
        (name = "operations", description = "Return codes, service figures, metrics and health: public."),
        (name = "documents", description = "This document, and its page for people: public."),
        (name = "demo", description = "Only in a demonstration started with `openmvs demo --fake-clock`."),
    )
)]
struct HubApi;

#[derive(OpenApi)]
#[openapi(paths(admin::advance, admin::latency))]
struct ClockApi;

/// The document of `component`, with the demonstration's clock route when `clock`.
pub fn document(component: Component, clock: bool) -> utoipa::openapi::OpenApi {
    let mut doc = match component {
        Component::National => NationalApi::openapi(),
        Component::Hub => HubApi::openapi(),
    };
    if clock {
        doc.merge(ClockApi::openapi());
    } else if let Some(tags) = &mut doc.tags {
        tags.retain(|t: &Tag| t.name != "demo");
    }
    complete(&mut doc, component);
    doc
}

/// Adds what every route of `component` has in common, from the tables that decide it.
fn complete(doc: &mut utoipa::openapi::OpenApi, component: Component) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            (Method::GET, &mut item.get),
            (Method::PUT, &mut item.put),
            (Method::POST, &mut item.post),
            (Method::DELETE, &mut item.delete),
            (Method::PATCH, &mut item.patch),
        ];
        for (method, op) in operations {
            let Some(op) = op else { continue };
            let rule =
                component.table().iter().chain(authz::ADMIN).find(|r| r.method == method && r.path == path);
            if let Some(rule) = rule {
                door(op, rule, component);
            }
            if !crate::shed::exempt(path) {
                add(op, 503, || refusal(component, UNAVAILABLE));
            }
            for (status, response) in op.responses.responses.iter_mut() {
                let (RefOr::T(response), Ok(status)) = (response, status.parse::<u16>()) else { continue };
                headers(response, status, component);
                return_codes_of(response, component, &method, path, status);
            }
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    match component {
        Component::National => {
            let flow = ClientCredentials::new("/oauth/token", Scopes::new());
            components.add_security_scheme(
                TOKEN_SCHEME,
                SecurityScheme::OAuth2(OAuth2::with_description(
                    [Flow::ClientCredentials(flow)],
                    "A bearer token from `POST /oauth/token` (client credentials, form-encoded \
                     `grant_type=client_credentials&client_id=..&client_secret=..`), sent as \
                     `Authorization: Bearer <token>`. It carries the client's role, location and \
                     market, and expires after `expires_in` seconds.",
                )),
            );
        }
        Component::Hub => {
            components.add_security_scheme(
                CERTIFICATE_SCHEME,
                SecurityScheme::MutualTls {
                    description: Some(
                        "A client certificate issued by the hub's CA, naming the OBP \
                         (`<id>.obp.openmvs`); `openmvs admin obp create` issues one."
                            .into(),
                    ),
                    extensions: None,
                },
            );
        }
    }
    if doc.paths.paths.contains_key("/admin/v1/clock") {
        components.add_security_scheme(
            ADMIN_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The demonstration's `admin_token` from `demo.json`, as a bearer token.",
                    ))
                    .build(),
            ),
        );
    }
}

const TOKEN_SCHEME: &str = "clientCredentials";
const CERTIFICATE_SCHEME: &str = "obpCertificate";
const ADMIN_SCHEME: &str = "adminToken";

const UNAUTHENTICATED: &str =
    "No valid bearer token: missing, invalid or expired, or of a client that was cut off.";
const FORBIDDEN_TOKEN: &str = "The client's role or market is not entitled to this operation or resource.";
const RATE_LIMITED: &str = "Too many requests from this client: wait for the time in `Retry-After`.";
const FORBIDDEN_CERTIFICATE: &str =
    "No client certificate of an OBP issued by the hub's CA, or the resource is another OBP's.";
const UNAVAILABLE: &str = "Temporarily unavailable (overload, a storage failure, draining); nothing was changed: retry after `Retry-After`.";

/// The door's refusals and the security scheme of a route, from its authorization entry.
fn door(op: &mut Operation, rule: &RouteRule, component: Component) {
    match rule.caller {
        Caller::Anyone => {}
        Caller::Token(_) => {
            op.security = Some(vec![SecurityRequirement::new(TOKEN_SCHEME, Vec::<String>::new())]);
            add(op, 401, || refusal(component, UNAUTHENTICATED));
            add(op, 403, || refusal(component, FORBIDDEN_TOKEN));
            add(op, 429, || refusal(component, RATE_LIMITED));
        }
        Caller::ObpCertificate => {
            op.security = Some(vec![SecurityRequirement::new(CERTIFICATE_SCHEME, Vec::<String>::new())]);
            add(op, 403, || refusal(component, FORBIDDEN_CERTIFICATE));
        }
        Caller::AdminToken => {
            op.security = Some(vec![SecurityRequirement::new(ADMIN_SCHEME, Vec::<String>::new())]);
            add(op, 401, || refusal(component, "No bearer token, or not the demo's `admin_token`."));
        }
        // Internal and NMVS SOAP routes: never in a document.
        Caller::HubCertificate | Caller::NationalCertificate | Caller::BodyLogin => {}
    }
}

/// Adds a response for `status` unless the handler documents one already.
fn add(op: &mut Operation, status: u16, response: impl FnOnce() -> DocResponse) {
    op.responses.responses.entry(status.to_string()).or_insert_with(|| RefOr::T(response()));
}

/// A refusal with the system's error body.
fn refusal(component: Component, description: &str) -> DocResponse {
    let schema = Ref::from_schema_name(component.error_body());
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(schema)).build())
        .build()
}

fn string_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(description))
        .build()
}

/// The headers every response carries, and those of the refusals that say what to do next.
fn headers(response: &mut DocResponse, status: u16, component: Component) {
    response.headers.insert(
        "x-request-id".into(),
        string_header("The request's id, in every log line about it: quote it when reporting a problem."),
    );
    let error_body = body_schema(response) == Some(component.error_body());
    if matches!(status, 429 | 503) && error_body {
        response.headers.insert(
            "Retry-After".into(),
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)))
                .description(Some("Seconds to wait before sending again."))
                .build(),
        );
    }
    if status == 401 && error_body {
        response.headers.insert("WWW-Authenticate".into(), string_header("`Bearer`."));
    }
}

/// The name of the component schema a response's JSON body is, if it is one.
fn body_schema(response: &DocResponse) -> Option<&str> {
    match response.content.get("application/json")?.schema.as_ref()? {
        RefOr::Ref(r) => r.ref_location.strip_prefix("#/components/schemas/"),
        RefOr::T(_) => None,
    }
}

/// Lists under a response the return codes it can carry, from the one table, as `x-return-codes`
/// and in its description.
fn return_codes_of(
    response: &mut DocResponse,
    component: Component,
    method: &Method,
    path: &str,
    status: u16,
) {
    let Some(body) = body_schema(response) else { return };
    let codes = codes_for(component, body, method, path, status);
    if codes.is_empty() {
        return;
    }
    let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
    let listed: Vec<String> = names.iter().map(|c| format!("`{c}`")).collect();
    response.description = format!("{}\n\nReturn codes: {}.", response.description, listed.join(", "));
    let extensions = response.extensions.get_or_insert_with(Default::default);
    extensions.insert("x-return-codes".into(), serde_json::json!(names));
}

/// The return codes a response of `status` with a `body` can carry on a route: every code of the
/// table answered with that status by that system, narrowed to what the route does.
pub fn codes_for(
    component: Component,
    body: &str,
    method: &Method,
    path: &str,
    status: u16,
) -> Vec<ReturnCode> {
    let pack_route = path.starts_with("/v1/packs/");
    let guessed = pack_route || (method == Method::POST && path == "/v1/bulk");
    let kept = |c: &ReturnCode| -> bool {
        let c = *c;
        match (body, component) {
            // The outcome of a processed single-pack request: a repeat inside one bulk request
            // cannot happen to it.
            ("PackResponse", Component::National) => c != ReturnCode::BulkDuplicateSerial,
            // A bulk row is decided in its own market: no other market is asked through the hub.
            ("BulkStatusResponse", Component::National) => !c.is_unreachable(),
            // The outcome of each serial of an OBP's pack state change.
            ("PackStatesBody", Component::Hub) => {
                matches!(c, ReturnCode::Success | ReturnCode::BulkDuplicateSerial | ReturnCode::BatchRecalled)
            }
            ("ErrorBody", Component::National) => match c {
                // Product codes are read on the pack, bulk and audit routes only.
                ReturnCode::CheckDigit => {
                    pack_route || path.starts_with("/v1/bulk") || path.starts_with("/v1/audit/")
                }
                // Serial guessing contains a client on the routes that name packs to it.
                ReturnCode::ClientSuspended => guessed,
                // Only a resolved incident refuses a change.
                ReturnCode::StateConflict => path == "/v1/admin/incidents/{id}/updates",
                _ => c.info().kind == CodeKind::Error,
            },
            // The hub keeps no client transaction ids, and refuses a bad product code as
            // malformed (a path names no scheme).
            ("HubErrorBody", Component::Hub) => match c {
                // A missing field is refused so in product master data only.
                ReturnCode::MasterDataMissing => path == "/v1/products/{product_code}",
                _ => {
                    matches!(c.info().kind, CodeKind::Error | CodeKind::Hub)
                        && !matches!(
                            c,
                            ReturnCode::TransactionIdReused
                                | ReturnCode::StateConflict
                                | ReturnCode::CheckDigit
                                | ReturnCode::RateLimited
                                | ReturnCode::ClientSuspended
                        )
                }
            },
            _ => false,
        }
    };
    let outcome_body = matches!(body, "PackResponse" | "BulkStatusResponse" | "PackStatesBody");
    ReturnCode::ALL
        .iter()
        .copied()
        .filter(|c| c.http_status() == status)
        .filter(|c| outcome_body == (c.info().kind == CodeKind::Outcome) || body == "PackStatesBody")
        .filter(kept)
        .collect()
}

/// A document and its page, made once.
struct Rendered {
    json: String,
    html: String,
}

fn rendered(component: Component, clock: bool) -> &'static Rendered {
    static CACHE: [OnceLock<Rendered>; 4] = [const { OnceLock::new() }; 4];
    let slot = match (component, clock) {
        (Component::National, false) => 0,
        (Component::National, true) => 1,
        (Component::Hub, false) => 2,
        (Component::Hub, true) => 3,
    };
    CACHE[slot].get_or_init(|| {
        let doc = document(component, clock);
        let json = doc.to_pretty_json().expect("a document serialises");
        let html = crate::docs::render(&json);
        Rendered { json, html }
    })
}

fn json_response(component: Component, clock: Option<Extension<ClockRoute>>) -> Response {
    let mut r = rendered(component, clock.is_some()).json.clone().into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// This document: the OpenAPI 3.1 description of the national system's API.
#[utoipa::path(
    get, path = "/v1/openapi.json", tag = "documents",
    responses((status = 200, description = "The document.", body = schema::OpenApiDocument))
)]
pub(crate) async fn national_document(clock: Option<Extension<ClockRoute>>) -> Response {
    json_response(Component::National, clock)
}

/// This document, rendered for people: operations by tag, their parameters, bodies, answers and return codes.
#[utoipa::path(
    get, path = "/docs", tag = "documents",
    responses((status = 200, description = "The page.", body = String, content_type = "text/html"))
)]
pub(crate) async fn national_docs(clock: Option<Extension<ClockRoute>>) -> Html<String> {
    Html(rendered(Component::National, clock.is_some()).html.clone())
}

/// This document: the OpenAPI 3.1 description of the hub's OBP API.
#[utoipa::path(
    get, path = "/v1/openapi.json", tag = "documents",
    responses((status = 200, description = "The document.", body = schema::OpenApiDocument))
)]
pub(crate) async fn hub_document(clock: Option<Extension<ClockRoute>>) -> Response {
    json_response(Component::Hub, clock)
}

/// This document, rendered for people: operations by tag, their parameters, bodies, answers and return codes.
#[utoipa::path(
    get, path = "/docs", tag = "documents",
    responses((status = 200, description = "The page.", body = String, content_type = "text/html"))
)]
pub(crate) async fn hub_docs(clock: Option<Extension<ClockRoute>>) -> Html<String> {
    Html(rendered(Component::Hub, clock.is_some()).html.clone())
}

/// The catalogue of return codes, with level, alert and HTTP status, from the one table in the code.
#[utoipa::path(
    get, path = "/v1/return-codes", tag = "operations",
    responses((status = 200, description = "Every return code, in catalogue order.", body = ReturnCodeCatalogue))
)]
pub(crate) async fn return_codes() -> Response {
    axum::Json(ReturnCodeCatalogue::build()).into_response()
}

/// Liveness: the process answers.
#[utoipa::path(
    get, path = "/health/live", tag = "operations",
    responses((status = 200, description = "Alive.", body = String, content_type = "text/plain", example = "live"))
)]
pub(crate) async fn live() -> &'static str {
    "live"
}
