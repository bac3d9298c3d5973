//! The authorization table: every route of the national system and of the hub, who may call it,
//! and which of its data a caller may touch.
//!
//! The table is the source of truth for routing and for who gets past the door:
//!
//! - Routers are built with [`Routes`], which registers a route only if the table has it (and
//!   panics otherwise), and panics again if an entry of the table was left unregistered.
//! - The `authorize` middleware, one for both routers, looks the matched route up here and has
//!   the system's `Door` admit the caller the entry names: a valid bearer token, the hub's
//!   certificate, an OBP's, a national system's, or anyone. The handlers take the caller from
//!   what the middleware admitted, never from the request themselves. A route the table does not
//!   list answers as if it did not exist (404).
//!
//! What the door lets through is then narrowed by the services, which keep their own checks:
//! the role rules of the core permission table ([`openmvs_core::roles::access`]), which a
//! [`Grant`] names instead of copying, and the ownership rules written here as [`Ownership`].
//! The `authz` test suite walks every entry with every role and caller and checks both.

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use openmvs_core::error::ApiError;
use openmvs_core::pack::{Command, Operation, Policy};
use openmvs_core::return_code::ReturnCode;
use openmvs_core::roles::{Access, Action, Role, access};
use serde::Serialize;

use crate::error::HttpError;

/// Who may call a route, as the door checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Anyone, with or without credentials.
    Anyone,
    /// The holder of a valid bearer token of this national system, in a role the grant names.
    /// A missing, invalid or expired token is 401 `NMVS_FE_AU_01` naming `authorization`; a role
    /// the grant leaves out is 403 `NMVS_FE_AU_04`.
    Token(Grant),
    /// The hub, by its client certificate (`hub.openmvs`); anyone else is 403 `NMVS_FE_AU_04`
    /// naming `client_certificate`.
    HubCertificate,
    /// An OBP, by its client certificate (`<id>.obp.openmvs`); anyone else is 403 naming
    /// `client_certificate`.
    ObpCertificate,
    /// A national system, by its client certificate (`<market>.national.openmvs`); anyone else
    /// is 403 naming `client_certificate`.
    NationalCertificate,
    /// The demonstration's admin token as a bearer token; anything else is 401.
    AdminToken,
    /// Whoever the credentials inside the body name (NMVS SOAP: `ClientLoginId`, `UserId` and
    /// `Password` in each operation's header), checked by the handler: a bad login is a SOAP
    /// fault `NMVS_FE_AU_01`, and the login's role is then checked by the national system for
    /// the operation the body names, as for a token holder.
    BodyLogin,
}

/// Which roles a [`Caller::Token`] route admits. The service checks the role (it audits the
/// refusals), reading the same core permission table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Every role.
    AnyRole,
    /// The roles the core permission table gives this action with at least this reach.
    Action(Action, Access),
    /// The roles the core permission table lets carry out the command the path names
    /// (`{operation}`, undone when the path ends in `/undo`), under the market's policy.
    PathCommand,
}

impl Grant {
    /// Whether `role` may call the route; `command` is the command the path names, for
    /// [`Grant::PathCommand`].
    pub fn allows(self, role: Role, command: Option<Command>, policy: &Policy) -> bool {
        match self {
            Grant::AnyRole => true,
            Grant::Action(action, at_least) => access(role, action, policy) >= at_least,
            Grant::PathCommand => command.is_some_and(|c| access(role, Action::Pack(c), policy).is_allowed()),
        }
    }
}

/// How a request for something that is not the caller's is refused: the return code (whose
/// catalogue row gives the status) and the field named in the details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// 403 `NMVS_FE_AU_04` or 404 `NMVS_TE_NF_01`.
    pub code: ReturnCode,
    /// The field the refusal names.
    pub field: &'static str,
}

/// A 404: the caller cannot even learn that the thing exists.
const fn hidden(field: &'static str) -> Others {
    Others::Refused(Refusal { code: ReturnCode::NotFound, field })
}

/// A 403: the thing exists and is someone else's.
const fn forbidden(field: &'static str) -> Others {
    Others::Refused(Refusal { code: ReturnCode::Forbidden, field })
}

/// What becomes of another owner's data on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Others {
    /// A path naming it is refused so.
    Refused(Refusal),
    /// A list leaves it out.
    LeftOut,
}

/// Whose data a route reaches: the caller's own only, and what becomes of another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    /// What is the caller's own.
    pub own: &'static str,
    /// What becomes of another owner's.
    pub other: Others,
}

/// One route: method, path template (as axum writes it), who may call it, and what it may touch.
#[derive(Debug, Clone)]
pub struct RouteRule {
    /// The method.
    pub method: Method,
    /// The path template.
    pub path: &'static str,
    /// Who may call it.
    pub caller: Caller,
    /// Whose data it reaches; `None` when it reaches nobody's in particular (public pages, the
    /// market as a whole, or only the caller's by construction, like the OBP's callback).
    pub owner: Option<Ownership>,
}

const fn rule(method: Method, path: &'static str, caller: Caller, owner: Option<Ownership>) -> RouteRule {
    RouteRule { method, path, caller, owner }
}

const END_USER_ALERTS: &str =
    "the alerts the client raised; the NMVO and the NCA see every alert of the market";

const OBP_PRODUCT: Option<Ownership> =
    Some(Ownership { own: "the products the OBP uploaded first", other: forbidden("product_code") });

const OBP_ALERTS: &str = "the alerts on the OBP's products";

use Caller::{Anyone, HubCertificate, NationalCertificate, ObpCertificate, Token};

/// The national system's routes.
pub static NATIONAL: &[RouteRule] = &[
    rule(Method::POST, "/oauth/token", Anyone, None),
    rule(Method::POST, "/v1/packs/{operation}", Token(Grant::PathCommand), None),
    rule(Method::POST, "/v1/packs/{operation}/undo", Token(Grant::PathCommand), None),
    rule(Method::POST, "/v1/bulk", Token(Grant::Action(Action::Bulk, Access::Own)), None),
    // Any token holder may ask; only the submitter's jobs exist for it.
    rule(
        Method::GET,
        "/v1/bulk/{bulk_id}",
        Token(Grant::AnyRole),
        Some(Ownership { own: "the bulk jobs the client submitted", other: hidden("bulk_id") }),
    ),
    rule(
        Method::GET,
        "/v1/alerts",
        Token(Grant::Action(Action::ReadAlerts, Access::Own)),
        Some(Ownership { own: END_USER_ALERTS, other: Others::LeftOut }),
    ),
    rule(
        Method::GET,
        "/v1/alerts/{id}",
        Token(Grant::Action(Action::ReadAlerts, Access::Own)),
        Some(Ownership { own: END_USER_ALERTS, other: hidden("id") }),
    ),
    rule(
        Method::POST,
        "/v1/alerts/{id}/status",
        Token(Grant::Action(Action::ChangeAlertStatus, Access::Market)),
        None,
    ),
    rule(
        Method::POST,
        "/v1/alerts/{id}/comments",
        Token(Grant::Action(Action::ChangeAlertStatus, Access::Market)),
        None,
    ),
    rule(
        Method::GET,
        "/v1/audit/packs/{scheme}/{product_code}/{serial}",
        Token(Grant::Action(Action::ReadAudit, Access::Market)),
        None,
    ),
    rule(Method::GET, "/v1/audit/records", Token(Grant::Action(Action::ReadAudit, Access::Market)), None),
    rule(
        Method::GET,
        "/v1/audit/records/export",
        Token(Grant::Action(Action::ReadAudit, Access::Market)),
        None,
    ),
    rule(Method::GET, "/v1/admin/clients", Token(Grant::Action(Action::ManageClients, Access::Market)), None),
    rule(
        Method::POST,
        "/v1/admin/clients/{client_id}/disable",
        Token(Grant::Action(Action::ManageClients, Access::Market)),
        None,
    ),
    rule(
        Method::POST,
        "/v1/admin/clients/{client_id}/enable",
        Token(Grant::Action(Action::ManageClients, Access::Market)),
        None,
    ),
    rule(Method::GET, "/v1/return-codes", Anyone, None),
    rule(Method::GET, "/v1/openapi.json", Anyone, None),
    rule(Method::GET, "/docs", Anyone, None),
    rule(Method::GET, "/status", Anyone, None),
    rule(Method::GET, "/v1/status", Anyone, None),
    rule(Method::GET, "/v1/incidents", Anyone, None),
    rule(Method::GET, "/v1/incidents/feed.atom", Anyone, None),
    rule(Method::GET, "/v1/incidents/feed.json", Anyone, None),
    rule(Method::GET, "/v1/incidents/{id}", Anyone, None),
    rule(
        Method::POST,
        "/v1/admin/incidents",
        Token(Grant::Action(Action::ManageIncidents, Access::Market)),
        None,
    ),
    rule(
        Method::POST,
        "/v1/admin/incidents/{id}/updates",
        Token(Grant::Action(Action::ManageIncidents, Access::Market)),
        None,
    ),
    rule(Method::GET, "/metrics", Anyone, None),
    rule(Method::GET, "/health/live", Anyone, None),
    rule(Method::GET, "/health/ready", Anyone, None),
    rule(Method::POST, "/internal/v1/messages", HubCertificate, None),
    rule(Method::POST, "/internal/v1/intermarket", HubCertificate, None),
    rule(Method::POST, "/internal/v1/pack-query", HubCertificate, None),
    // The NMVS SOAP services (`crate::soap`), v4.0 and v5.0: operations by POST, the WSDL by
    // `GET <path>?wsdl`. Pings take no login. A bulk result (G188, G196) names a bulk the login
    // submitted, as `GET /v1/bulk/{bulk_id}` does; another's is not revealed to exist, which the
    // answer says with its `ReturnCode` (`NMVS_TE_NF_01`), not with an HTTP status.
    rule(Method::POST, "/WS_SINGLE_TRANSACTIONS_V1/SinglePackServiceV40", Caller::BodyLogin, None),
    rule(Method::POST, "/WS_BULK_TRANSACTIONS_V1/BulkServiceV40", Caller::BodyLogin, None),
    rule(Method::POST, "/WS_MIXED_BULK_TRANSACTIONS_V1/MixedBulkServiceV40", Caller::BodyLogin, None),
    rule(Method::POST, "/WS_SUPPORT_V1/SupportServiceV40", Anyone, None),
    rule(Method::POST, "/WS_SINGLE_TRANSACTIONS_V1/SinglePackServiceV50", Caller::BodyLogin, None),
    rule(Method::POST, "/WS_BULK_TRANSACTIONS_V1/BulkServiceV50", Caller::BodyLogin, None),
    rule(Method::POST, "/WS_MIXED_BULK_TRANSACTIONS_V1/MixedBulkServiceV50", Caller::BodyLogin, None),
    rule(Method::POST, "/WS_SUPPORT_V1/SupportServiceV50", Anyone, None),
    rule(Method::GET, "/WS_SINGLE_TRANSACTIONS_V1/SinglePackServiceV40", Anyone, None),
    rule(Method::GET, "/WS_BULK_TRANSACTIONS_V1/BulkServiceV40", Anyone, None),
    rule(Method::GET, "/WS_MIXED_BULK_TRANSACTIONS_V1/MixedBulkServiceV40", Anyone, None),
    rule(Method::GET, "/WS_SUPPORT_V1/SupportServiceV40", Anyone, None),
    rule(Method::GET, "/WS_SINGLE_TRANSACTIONS_V1/SinglePackServiceV50", Anyone, None),
    rule(Method::GET, "/WS_BULK_TRANSACTIONS_V1/BulkServiceV50", Anyone, None),
    rule(Method::GET, "/WS_MIXED_BULK_TRANSACTIONS_V1/MixedBulkServiceV50", Anyone, None),
    rule(Method::GET, "/WS_SUPPORT_V1/SupportServiceV50", Anyone, None),
    // The web console (`crate::web`): the door admits everyone; each page checks its session
    // cookie (the client's own token, checked as a bearer token is) and each form its CSRF token,
    // and the service applies the same rules to what a page asks as to the API.
    rule(Method::GET, "/ui", Anyone, None),
    rule(Method::GET, "/ui/login", Anyone, None),
    rule(Method::POST, "/ui/login", Anyone, None),
    rule(Method::POST, "/ui/logout", Anyone, None),
    rule(Method::GET, "/ui/alerts", Anyone, None),
    rule(Method::GET, "/ui/alerts/{id}", Anyone, None),
    rule(Method::POST, "/ui/alerts/{id}/status", Anyone, None),
    rule(Method::POST, "/ui/alerts/{id}/comments", Anyone, None),
    rule(Method::GET, "/ui/audit", Anyone, None),
    rule(Method::GET, "/ui/audit/export", Anyone, None),
    rule(Method::GET, "/ui/incidents", Anyone, None),
    rule(Method::POST, "/ui/incidents", Anyone, None),
    rule(Method::POST, "/ui/incidents/{id}/updates", Anyone, None),
];

/// The hub's routes.
pub static HUB: &[RouteRule] = &[
    rule(Method::PUT, "/v1/products/{product_code}", ObpCertificate, OBP_PRODUCT),
    rule(Method::PUT, "/v1/products/{product_code}/batches/{batch}", ObpCertificate, OBP_PRODUCT),
    rule(Method::POST, "/v1/products/{product_code}/batches/{batch}/packs", ObpCertificate, OBP_PRODUCT),
    rule(Method::POST, "/v1/products/{product_code}/batches/{batch}/recall", ObpCertificate, OBP_PRODUCT),
    rule(Method::POST, "/v1/products/{product_code}/withdraw", ObpCertificate, OBP_PRODUCT),
    rule(
        Method::POST,
        "/v1/products/{product_code}/batches/{batch}/packs/state",
        ObpCertificate,
        OBP_PRODUCT,
    ),
    rule(
        Method::GET,
        "/v1/uploads/{upload_id}",
        ObpCertificate,
        Some(Ownership { own: "the OBP's uploads", other: hidden("upload_id") }),
    ),
    // Another OBP's product is not even revealed to exist here.
    rule(
        Method::GET,
        "/v1/products/{product_code}/packs/{serial}",
        ObpCertificate,
        Some(Ownership { own: "the products the OBP uploaded first", other: hidden("product_code") }),
    ),
    rule(
        Method::GET,
        "/v1/alerts",
        ObpCertificate,
        Some(Ownership { own: OBP_ALERTS, other: Others::LeftOut }),
    ),
    rule(
        Method::GET,
        "/v1/alerts/{id}",
        ObpCertificate,
        Some(Ownership { own: OBP_ALERTS, other: hidden("id") }),
    ),
    rule(
        Method::POST,
        "/v1/alerts/{id}/status",
        ObpCertificate,
        Some(Ownership { own: OBP_ALERTS, other: hidden("id") }),
    ),
    rule(
        Method::POST,
        "/v1/alerts/{id}/comments",
        ObpCertificate,
        Some(Ownership { own: OBP_ALERTS, other: hidden("id") }),
    ),
    // The caller's own callback, by construction.
    rule(Method::PUT, "/v1/callback", ObpCertificate, None),
    // Deliveries are taken as coming from the caller's market, whatever they say.
    rule(Method::POST, "/internal/v1/messages", NationalCertificate, None),
    rule(
        Method::POST,
        "/internal/v1/intermarket",
        NationalCertificate,
        Some(Ownership { own: "requests of the caller's own market", other: forbidden("market") }),
    ),
    rule(Method::GET, "/v1/return-codes", Anyone, None),
    rule(Method::GET, "/v1/openapi.json", Anyone, None),
    rule(Method::GET, "/docs", Anyone, None),
    rule(Method::GET, "/status", Anyone, None),
    rule(Method::GET, "/v1/status", Anyone, None),
    rule(Method::GET, "/v1/incidents", Anyone, None),
    rule(Method::GET, "/v1/incidents/feed.atom", Anyone, None),
    rule(Method::GET, "/v1/incidents/feed.json", Anyone, None),
    rule(Method::GET, "/v1/incidents/{id}", Anyone, None),
    rule(Method::GET, "/metrics", Anyone, None),
    rule(Method::GET, "/health/live", Anyone, None),
    rule(Method::GET, "/health/ready", Anyone, None),
    // The OBP's web console (`crate::hub_web`): signed in by its certificate, as for the API; an
    // OBP's pages show its own alerts only, as the API's routes above do.
    rule(Method::GET, "/ui", ObpCertificate, None),
    rule(Method::GET, "/ui/alerts", ObpCertificate, None),
    rule(Method::GET, "/ui/alerts/{id}", ObpCertificate, None),
    rule(Method::POST, "/ui/alerts/{id}/status", ObpCertificate, None),
    rule(Method::POST, "/ui/alerts/{id}/comments", ObpCertificate, None),
];

/// The demonstration's admin route, merged into both systems' routers with `--fake-clock` only.
pub static ADMIN: &[RouteRule] = &[
    rule(Method::POST, "/admin/v1/clock", Caller::AdminToken, None),
    rule(Method::POST, "/admin/v1/latency", Caller::AdminToken, None),
];

/// What the table says about a request, from its method and the path template it matched.
#[derive(Debug, Clone, Copy)]
pub enum Lookup {
    /// The route's entry.
    Rule(&'static RouteRule),
    /// The path is in the table under other methods only: the router answers 405.
    OtherMethod,
    /// No route matched: the router's fallback answers 404.
    Unrouted,
    /// A route matched that the table does not list: refused as if it did not exist.
    Unlisted,
}

/// Looks a request up in `table`. `HEAD` is looked up as `GET`, as the router serves it.
pub fn lookup(table: &'static [RouteRule], method: &Method, matched: Option<&str>) -> Lookup {
    let Some(path) = matched else { return Lookup::Unrouted };
    let method = if method == Method::HEAD { &Method::GET } else { method };
    let mut same_path = table.iter().filter(|r| r.path == path).peekable();
    if same_path.peek().is_none() {
        return Lookup::Unlisted;
    }
    same_path.find(|r| r.method == method).map_or(Lookup::OtherMethod, Lookup::Rule)
}

/// How one system's door admits the caller a route's entry names.
pub(crate) trait Door: Clone + Send + Sync + 'static {
    /// The body of the system's refusals.
    type Body: for<'a> From<&'a ApiError> + Serialize;
    /// The system's routes.
    const TABLE: &'static [RouteRule];
    /// Checks that the request comes from `caller` and leaves the word on who it is in the
    /// request's extensions, for the handler; otherwise the refusal.
    fn admit(
        &self,
        caller: Caller,
        parts: &mut Parts,
    ) -> impl Future<Output = Result<(), HttpError<Self::Body>>> + Send;
}

/// The door: looks the route up in the system's authorization table ([`Door::TABLE`]) and admits
/// the caller its entry names, handing it on to the handler; a route the table does not list
/// answers as if it did not exist.
pub(crate) async fn authorize<D: Door>(State(door): State<D>, req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let rule = match lookup(D::TABLE, req.method(), matched.as_deref()) {
        Lookup::Rule(r) => r,
        Lookup::OtherMethod | Lookup::Unrouted => return next.run(req).await,
        Lookup::Unlisted => {
            tracing::error!(
                route = matched.as_deref().unwrap_or(""),
                "a route missing from the authorization table"
            );
            return not_found::<D::Body>().await.into_response();
        }
    };
    let (mut parts, body) = req.into_parts();
    if let Err(refusal) = door.admit(rule.caller, &mut parts).await {
        return refusal.into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

/// The answer for a path no route has, or one the table does not list.
async fn not_found<B>() -> HttpError<B> {
    ApiError::not_found("path", "no such route").into()
}

/// The answer for a method a route does not take.
async fn method_not_allowed<B>() -> Response
where
    B: for<'a> From<&'a ApiError> + Serialize,
{
    let mut r = HttpError::<B>::from(ApiError::not_found("method", "this route does not take this method"))
        .into_response();
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}

/// The command a pack route's path names: `/v1/packs/{operation}` or `/v1/packs/{operation}/undo`
/// with an operation an end user may name; `None` for anything else.
pub fn path_command(path: &str) -> Option<Command> {
    let rest = path.strip_prefix("/v1/packs/")?;
    let (name, undo) = match rest.strip_suffix("/undo") {
        Some(name) => (name, true),
        None => (rest, false),
    };
    if name == "verify" && !undo {
        return Some(Command::Verify);
    }
    let op = Operation::parse(name).filter(|o| *o != Operation::CheckOut)?;
    if undo { op.is_undoable().then_some(Command::Undo(op)) } else { Some(Command::Set(op)) }
}

/// A router under construction that takes only the routes its table lists.
pub struct Routes<S> {
    table: &'static [RouteRule],
    router: Router<S>,
    registered: Vec<(Method, &'static str)>,
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    /// An empty router for the routes of `table`.
    pub fn new(table: &'static [RouteRule]) -> Routes<S> {
        Routes { table, router: Router::new(), registered: Vec::new() }
    }

    /// Registers `method path` with its handler.
    ///
    /// # Panics
    ///
    /// If the table has no such route, or it was registered already.
    pub fn route<H: Handler<T, S>, T: 'static>(self, method: Method, path: &'static str, handler: H) -> Self {
        self.add(method, path, handler, None)
    }

    /// Registers `method path` with its handler and its own body limit.
    ///
    /// # Panics
    ///
    /// As [`Routes::route`].
    pub fn route_limited<H: Handler<T, S>, T: 'static>(
        self,
        method: Method,
        path: &'static str,
        limit: DefaultBodyLimit,
        handler: H,
    ) -> Self {
        self.add(method, path, handler, Some(limit))
    }

    fn add<H: Handler<T, S>, T: 'static>(
        mut self,
        method: Method,
        path: &'static str,
        handler: H,
        limit: Option<DefaultBodyLimit>,
    ) -> Self {
        assert!(
            self.table.iter().any(|r| r.method == method && r.path == path),
            "{method} {path} is not in the authorization table (crates/openmvs-http/src/authz.rs)"
        );
        assert!(!self.registered.iter().any(|(m, p)| *m == method && *p == path), "{method} {path} twice");
        let filter = MethodFilter::try_from(method.clone()).expect("a method a route can take");
        let endpoint = on(filter, handler);
        let endpoint = match limit {
            Some(l) => endpoint.layer(l),
            None => endpoint,
        };
        self.router = self.router.route(path, endpoint);
        self.registered.push((method, path));
        self
    }

    /// The routes registered so far.
    pub fn registered(&self) -> &[(Method, &'static str)] {
        &self.registered
    }

    /// The router.
    ///
    /// # Panics
    ///
    /// If a route of the table was not registered.
    pub fn finish(self) -> Router<S> {
        for r in self.table {
            assert!(
                self.registered.iter().any(|(m, p)| *m == r.method && *p == r.path),
                "{} {} is in the authorization table but has no handler",
                r.method,
                r.path
            );
        }
        self.router
    }
}

/// A system's router: its routes with its door in front, answering a path no route has 404 and
/// a method a route does not take 405.
///
/// # Panics
///
/// As [`Routes::finish`].
pub(crate) fn guarded<D: Door>(routes: Routes<D>, door: D) -> Router {
    routes
        .finish()
        .fallback(not_found::<D::Body>)
        .method_not_allowed_fallback(method_not_allowed::<D::Body>)
        .with_state(door.clone())
        .layer(axum::middleware::from_fn_with_state(door, authorize::<D>))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_lists_each_route_once() {
        for table in [NATIONAL, HUB, ADMIN] {
            for (i, r) in table.iter().enumerate() {
                let again = table[i + 1..].iter().any(|o| o.method == r.method && o.path == r.path);
                assert!(!again, "{} {} twice", r.method, r.path);
            }
        }
    }

    #[test]
    fn a_request_is_looked_up_by_its_matched_path_and_method() {
        assert!(
            matches!(lookup(NATIONAL, &Method::GET, Some("/v1/alerts")), Lookup::Rule(r) if r.path == "/v1/alerts")
        );
        assert!(matches!(lookup(NATIONAL, &Method::HEAD, Some("/status")), Lookup::Rule(_)));
        assert!(matches!(lookup(NATIONAL, &Method::DELETE, Some("/v1/alerts")), Lookup::OtherMethod));
        assert!(matches!(lookup(NATIONAL, &Method::GET, Some("/v1/secret")), Lookup::Unlisted));
        assert!(matches!(lookup(NATIONAL, &Method::GET, None), Lookup::Unrouted));
    }

    #[test]
    fn pack_paths_name_the_commands_an_end_user_may_ask_for() {
        assert_eq!(path_command("/v1/packs/verify"), Some(Command::Verify));
        assert_eq!(path_command("/v1/packs/free-sample"), Some(Command::Set(Operation::FreeSample)));
        assert_eq!(path_command("/v1/packs/lock/undo"), Some(Command::Undo(Operation::Lock)));
        assert_eq!(path_command("/v1/packs/destroy/undo"), None);
        assert_eq!(path_command("/v1/packs/check-out"), None);
        assert_eq!(path_command("/v1/packs/verify/undo"), None);
    }

    #[test]
    fn the_grants_follow_the_core_permission_table() {
        let p = Policy::default();
        let audit = Grant::Action(Action::ReadAudit, Access::Market);
        assert!(audit.allows(Role::Nca, None, &p) && !audit.allows(Role::Pharmacy, None, &p));
        let status = Grant::Action(Action::ChangeAlertStatus, Access::Market);
        assert!(status.allows(Role::Nmvo, None, &p) && !status.allows(Role::Obp, None, &p));
        let export = Some(Command::Set(Operation::Export));
        assert!(Grant::PathCommand.allows(Role::Wholesaler, export, &p));
        assert!(!Grant::PathCommand.allows(Role::Pharmacy, export, &p));
        assert!(!Grant::PathCommand.allows(Role::Pharmacy, None, &p));
    }
}
