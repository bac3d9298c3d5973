//! The web console of a national system, under `/ui`: sign-in with a client's own id and secret,
//! the alert workbench (lists with filters and paging, one alert with its thread, status changes
//! and comments by the NMVO), the authorities' audit search with its exports, and incidents.
//!
//! Server-rendered HTML, no script. The session is the client's own access token in a cookie
//! (`HttpOnly`, `Secure`, `SameSite=Strict`, path `/ui`), validated on every request as a bearer
//! token is, so every node of a system accepts it and a client cut off is refused at once; it ends
//! when the token expires. Every form carries a CSRF token derived from the session (the sign-in
//! form's from a cookie of its own), checked on every POST. Every page is sent with a strict
//! content security policy and the other security headers. What a role may see and do is what the
//! API allows it: the same service calls, with the same checks and the same audit records.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use openmvs_core::alert::{AlertStatus, AlertView, Classification};
use openmvs_core::error::ApiError;
use openmvs_core::roles::Role;
use openmvs_national::Actor;
use openmvs_wire::api::{AlertCommentRequest, AlertStatusRequest};
use sha2::{Digest, Sha256};

use crate::authz::Routes;
use crate::national::NationalState;
use crate::status::{STYLE, escape};

/// The session cookie: the client's access token.
pub const SESSION_COOKIE: &str = "openmvs_session";
/// The sign-in form's own cookie, which its CSRF token is derived from.
pub const LOGIN_COOKIE: &str = "openmvs_login";
/// The form field carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf";

/// The console's routes, each as the authorization table lists it (the door admits everyone; each
/// page checks the session and sends a visitor without one to the sign-in).
pub fn routes(routes: Routes<NationalState>) -> Routes<NationalState> {
    routes
        .route(Method::GET, "/ui", home)
        .route(Method::GET, "/ui/login", login_page)
        .route(Method::POST, "/ui/login", login)
        .route(Method::POST, "/ui/logout", logout)
        .route(Method::GET, "/ui/alerts", alerts)
        .route(Method::GET, "/ui/alerts/{id}", alert)
        .route(Method::POST, "/ui/alerts/{id}/status", alert_status)
        .route(Method::POST, "/ui/alerts/{id}/comments", alert_comment)
        .route(Method::GET, "/ui/audit", audit)
        .route(Method::GET, "/ui/audit/export", audit_export)
        .route(Method::GET, "/ui/incidents", incidents)
        .route(Method::POST, "/ui/incidents", incident_open)
        .route(Method::POST, "/ui/incidents/{id}/updates", incident_update)
}

/// The headers every console page is sent with.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let ui = req.uri().path() == "/ui" || req.uri().path().starts_with("/ui/");
    let mut resp = next.run(req).await;
    if ui {
        let h = resp.headers_mut();
        let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
            h.insert(k, HeaderValue::from_static(v));
        };
        set(
            h,
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        );
        set(h, "x-content-type-options", "nosniff");
        set(h, "x-frame-options", "DENY");
        set(h, "referrer-policy", "no-referrer");
        set(h, "cross-origin-opener-policy", "same-origin");
        set(h, "cache-control", "no-store");
        set(h, "strict-transport-security", "max-age=31536000");
    }
    resp
}

pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// The CSRF token of a session (or of a sign-in form's cookie): not guessable without it, and the
/// cookie itself cannot be read by a page's scripts or another site.
pub fn csrf_of(secret: &str) -> String {
    let digest = Sha256::digest(format!("openmvs-console-csrf\0{secret}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two tokens in time independent of where they differ.
pub(crate) fn same(a: &str, b: &str) -> bool {
    crate::admin::same(a.as_bytes(), b.as_bytes())
}

/// A signed-in visitor.
struct Session {
    actor: Actor,
    csrf: String,
}

/// The visitor's session, or the answer to send instead: to the sign-in when there is none or it
/// expired.
async fn session(s: &NationalState, headers: &HeaderMap) -> Result<Session, Response> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Err(Redirect::to("/ui/login").into_response());
    };
    match s.national.authenticate(token).await {
        Ok(actor) => Ok(Session { actor, csrf: csrf_of(token) }),
        Err(_) => Err(Redirect::to("/ui/login?expired=1").into_response()),
    }
}

/// A posted form's fields, decoded as the token endpoint decodes its form; a body that is not
/// form-encoded has no fields (and so no CSRF token: it is refused).
pub(crate) fn form(body: &Bytes) -> HashMap<String, String> {
    crate::national::serde_urlencoded_pairs(body).unwrap_or_default()
}

/// A form posted by a signed-in visitor, its CSRF token checked: the session and the fields, or
/// the answer to send instead.
async fn posted(
    s: &NationalState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Session, HashMap<String, String>), Response> {
    let sess = session(s, headers).await?;
    let f = form(body);
    match refused_form(&sess, &f) {
        Some(r) => Err(r),
        None => Ok((sess, f)),
    }
}

/// The refusal of a form whose CSRF token is not the session's; `None` when it is.
fn refused_form(sess: &Session, f: &HashMap<String, String>) -> Option<Response> {
    match f.get(CSRF_FIELD) {
        Some(t) if same(t, &sess.csrf) => None,
        _ => Some(page(
            StatusCode::BAD_REQUEST,
            "Refused",
            None,
            "<p role=\"alert\">This form has expired or did not come from this console. Go back, reload the page and try again.</p>",
        )),
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Pharmacy => "pharmacy",
        Role::Hospital => "hospital",
        Role::Wholesaler => "wholesaler",
        Role::Nmvo => "national organisation (NMVO)",
        Role::Nca => "national competent authority (NCA)",
        Role::Obp => "OBP",
    }
}

/// A whole page: the navigation for the signed-in visitor, the title and the content.
fn page(status: StatusCode, title: &str, sess: Option<&Session>, content: &str) -> Response {
    let nav = nav_of(sess);
    shell(status, title, &nav, content)
}

fn nav_of(sess: Option<&Session>) -> String {
    match sess {
        None => String::new(),
        Some(sess) => {
            let a = &sess.actor;
            let mut links = vec![("/ui", "Home"), ("/ui/alerts", "Alerts")];
            if matches!(a.role, Role::Nmvo | Role::Nca) {
                links.push(("/ui/audit", "Audit trail"));
            }
            links.push(("/ui/incidents", "Incidents"));
            links.push(("/status", "Service status"));
            let items: String =
                links.iter().map(|(href, name)| format!("<li><a href=\"{href}\">{name}</a></li>")).collect();
            format!(
                "<header><nav aria-label=\"Console\"><ul class=\"nav\">{items}</ul></nav>\
<form method=\"post\" action=\"/ui/logout\" class=\"who\"><span>{} · {} · {}</span>\
<input type=\"hidden\" name=\"{CSRF_FIELD}\" value=\"{}\"><button type=\"submit\">Sign out</button></form></header>",
                escape(a.client_id.as_str()),
                role_name(a.role),
                escape(a.market.as_str()),
                sess.csrf
            )
        }
    }
}

/// A whole page with the navigation `nav`: what both systems' consoles send.
pub(crate) fn shell(status: StatusCode, title: &str, nav: &str, content: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{t} · OpenMVS console</title>\
<style>{STYLE}{CONSOLE_STYLE}</style></head><body>{nav}<main><h1>{t}</h1>{content}</main></body></html>",
        t = escape(title)
    );
    (status, Html(body)).into_response()
}

pub(crate) const CONSOLE_STYLE: &str = "header{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:center;\
gap:.5rem;border-bottom:1px solid #ccc;padding-bottom:.5rem}.nav{list-style:none;display:flex;flex-wrap:wrap;gap:1rem;\
padding:0;margin:0}.who{display:flex;gap:.5rem;align-items:center}form.filters{display:grid;\
grid-template-columns:repeat(auto-fill,minmax(11rem,1fr));gap:.6rem;margin:1rem 0}label{display:flex;flex-direction:column;\
font-size:.9rem;gap:.2rem}input,select,textarea,button{font:inherit;padding:.35rem}button{cursor:pointer;background:#1f4e79;\
color:#fff;border:0;border-radius:.3rem;padding:.4rem .9rem}a{color:#0b5394}.error{color:#7a0014;background:#fde7e9;\
padding:.6rem;border-radius:.3rem}.done{color:#0f4d2c;background:#e3f4ea;padding:.6rem;border-radius:.3rem}\
fieldset{border:1px solid #ccc;border-radius:.3rem;margin:1rem 0}dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}\
dt{font-weight:bold}";

fn api_error_page(sess: &Session, e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let details: String = e
        .details
        .iter()
        .map(|d| format!("<li><code>{}</code>: {}</li>", escape(&d.field), escape(&d.message)))
        .collect();
    let title = if status == StatusCode::FORBIDDEN {
        "Not allowed"
    } else if status == StatusCode::NOT_FOUND {
        "Not found"
    } else {
        "Refused"
    };
    page(
        status,
        title,
        Some(sess),
        &format!(
            "<p class=\"error\" role=\"alert\">{}</p><ul>{details}</ul><p><a href=\"/ui\">Back to the console</a></p>",
            escape(&e.message)
        ),
    )
}

fn hidden_csrf(sess: &Session) -> String {
    format!("<input type=\"hidden\" name=\"{CSRF_FIELD}\" value=\"{}\">", sess.csrf)
}

async fn home(State(s): State<NationalState>, headers: HeaderMap) -> Response {
    let sess = match session(&s, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let a = &sess.actor;
    let mut items = vec![match a.role {
        Role::Nmvo => {
            "<li><a href=\"/ui/alerts?status=OPEN\">Open alerts</a> of the market, to investigate with the OBPs</li>"
        }
        Role::Nca => {
            "<li><a href=\"/ui/alerts\">Alerts of the market</a>, and <a href=\"/ui/alerts?classification=FALSIFICATION_CONFIRMED\">the confirmed falsifications reported to you</a></li>"
        }
        _ => "<li><a href=\"/ui/alerts\">The alerts your requests raised</a></li>",
    }];
    if matches!(a.role, Role::Nmvo | Role::Nca) {
        items.push("<li><a href=\"/ui/audit\">Search the audit trail</a> and export what you find</li>");
    }
    items.push(if a.role == Role::Nmvo {
        "<li><a href=\"/ui/incidents\">Incidents</a>: open, update and resolve them</li>"
    } else {
        "<li><a href=\"/ui/incidents\">Incidents</a> of the system</li>"
    });
    items.push("<li><a href=\"/status\">Service status</a>: response times by month, availability</li>");
    let content = format!(
        "<p>You are signed in as <strong>{}</strong>, {} of market {}, at {}.</p><ul>{}</ul>",
        escape(a.client_id.as_str()),
        role_name(a.role),
        escape(a.market.as_str()),
        escape(a.location.as_str()),
        items.join("")
    );
    page(StatusCode::OK, &format!("OpenMVS {} console", s.national.market().as_str()), Some(&sess), &content)
}

pub(crate) fn random_hex() -> String {
    let mut b = [0u8; 24];
    getrandom::fill(&mut b).expect("the operating system's random numbers");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn set_cookie(name: &str, value: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/ui; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}"
    ))
    .expect("a cookie of hex and fixed words")
}

fn login_form(market: &str, nonce: &str, message: &str) -> String {
    format!(
        "<p>Sign in with your client id and secret, as issued by the national organisation of {m}.</p>{message}\
<form method=\"post\" action=\"/ui/login\"><input type=\"hidden\" name=\"{CSRF_FIELD}\" value=\"{c}\">\
<p><label>Client id <input name=\"client_id\" autocomplete=\"username\" required></label></p>\
<p><label>Client secret <input name=\"client_secret\" type=\"password\" autocomplete=\"current-password\" required></label></p>\
<p><button type=\"submit\">Sign in</button></p></form><p><a href=\"/status\">Service status</a> needs no sign-in.</p>",
        m = escape(market),
        c = csrf_of(nonce)
    )
}

async fn login_page(State(s): State<NationalState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let nonce = random_hex();
    let message = if q.contains_key("expired") {
        "<p class=\"error\" role=\"alert\">Your session has ended. Sign in again.</p>"
    } else {
        ""
    };
    let mut r =
        page(StatusCode::OK, "Sign in", None, &login_form(s.national.market().as_str(), &nonce, message));
    r.headers_mut().append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, &nonce, 600));
    r
}

async fn login(
    State(s): State<NationalState>,
    remote: Option<axum::Extension<crate::server::RemoteAddr>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f = form(&body);
    let market = s.national.market();
    let again = |status: StatusCode, message: &str| {
        let nonce = random_hex();
        let msg = format!("<p class=\"error\" role=\"alert\">{}</p>", escape(message));
        let mut r = page(status, "Sign in", None, &login_form(market.as_str(), &nonce, &msg));
        r.headers_mut().append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, &nonce, 600));
        r
    };
    let nonce_ok = match (cookie(&headers, LOGIN_COOKIE), f.get(CSRF_FIELD)) {
        (Some(nonce), Some(t)) => same(&csrf_of(nonce), t),
        _ => false,
    };
    if !nonce_ok {
        // A sign-in form that expired, or one that did not come from this console: nobody is
        // signed in, and a fresh form is given.
        return again(StatusCode::BAD_REQUEST, "The sign-in form expired. Please sign in again.");
    }
    let (Some(id), Some(secret)) = (f.get("client_id"), f.get("client_secret")) else {
        return again(StatusCode::BAD_REQUEST, "Give your client id and secret.");
    };
    let address = remote.map(|r| r.0.0.ip());
    match crate::national::issue_token(&s, id.trim(), secret, address).await {
        Ok(t) => {
            let mut r = Redirect::to("/ui").into_response();
            r.headers_mut()
                .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &t.access_token, t.expires_in));
            r.headers_mut().append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", 0));
            r
        }
        Err(refusal) => match refusal.status() {
            StatusCode::UNAUTHORIZED => again(
                StatusCode::UNAUTHORIZED,
                "The client id or secret is wrong, or the client is disabled.",
            ),
            StatusCode::TOO_MANY_REQUESTS => again(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed sign-ins for this client or from this address: wait a few minutes and try again.",
            ),
            status => again(status, "The system cannot sign you in just now. Try again in a minute."),
        },
    }
}

async fn logout(State(s): State<NationalState>, headers: HeaderMap, body: Bytes) -> Response {
    let sess = match session(&s, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Some(r) = refused_form(&sess, &form(&body)) {
        return r;
    }
    let mut r = Redirect::to("/ui/login").into_response();
    r.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", 0));
    r
}

pub(crate) fn select(name: &str, label: &str, options: &[&str], current: Option<&str>) -> String {
    select_with(name, label, options, current, Some("any"))
}

/// A choice among `options`, with a first empty one labelled `empty` when given.
pub(crate) fn select_with(
    name: &str,
    label: &str,
    options: &[&str],
    current: Option<&str>,
    empty: Option<&str>,
) -> String {
    let opts: String = empty
        .map(|_| "")
        .into_iter()
        .chain(options.iter().copied())
        .map(|o| {
            format!(
                "<option value=\"{o}\"{}>{}</option>",
                if current == Some(o) { " selected" } else { "" },
                if o.is_empty() { empty.unwrap_or("") } else { o }
            )
        })
        .collect();
    format!("<label>{label} <select name=\"{name}\">{opts}</select></label>")
}

pub(crate) fn text_input(name: &str, label: &str, current: Option<&str>, kind: &str) -> String {
    format!(
        "<label>{label} <input name=\"{name}\" type=\"{kind}\" value=\"{}\"></label>",
        escape(current.unwrap_or(""))
    )
}

/// The query string of `q` without its empty values, with `cursor` set to `next`.
pub(crate) fn query_with(q: &HashMap<String, String>, cursor: &str) -> String {
    let mut pairs: Vec<(&String, &String)> =
        q.iter().filter(|(k, v)| !v.is_empty() && *k != "cursor").collect();
    pairs.sort();
    let mut out: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
    out.push(format!("cursor={}", enc(cursor)));
    out.join("&")
}

pub(crate) fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) fn non_empty(q: &HashMap<String, String>) -> HashMap<String, String> {
    q.iter().filter(|(_, v)| !v.trim().is_empty()).map(|(k, v)| (k.clone(), v.trim().to_owned())).collect()
}

/// The alert list's filter form, its fields as the API's query parameters.
pub(crate) fn alert_filters(q: &HashMap<String, String>, codes: &[&str]) -> String {
    let get = |k: &str| q.get(k).map(String::as_str);
    let statuses: Vec<&str> = AlertStatus::ALL.iter().map(|s| s.as_str()).collect();
    let classes: Vec<&str> = Classification::ALL.iter().map(|c| c.as_str()).collect();
    format!(
        "<form class=\"filters\" method=\"get\" action=\"/ui/alerts\" role=\"search\" aria-label=\"Filter alerts\">{}{}{}{}{}{}{}{}{}{}<p><button type=\"submit\">Filter</button> <a href=\"/ui/alerts\">Clear</a></p></form>",
        select("status", "Status", &statuses, get("status")),
        select("code", "Alert code", codes, get("code")),
        text_input("product_code", "Product code", get("product_code"), "text"),
        text_input("batch", "Batch", get("batch"), "text"),
        text_input("market", "Market", get("market"), "text"),
        text_input("location", "Premises", get("location"), "text"),
        text_input("from", "Raised from", get("from"), "date"),
        text_input("to", "Raised up to", get("to"), "date"),
        select("classification", "Classification", &classes, get("classification")),
        text_input("limit", "Per page", get("limit").or(Some("50")), "number"),
    )
}

/// The fields at fault of a refused query, as a list for people.
pub(crate) fn refusal_details(e: &ApiError, lead: &str) -> String {
    let details: String = e
        .details
        .iter()
        .map(|d| format!("<li><code>{}</code>: {}</li>", escape(&d.field), escape(&d.message)))
        .collect();
    format!("<div class=\"error\" role=\"alert\"><p>{lead}</p><ul>{details}</ul></div>")
}

/// A page of alerts as a table, with the link to the next page of the same query.
pub(crate) fn alert_list(
    page: &openmvs_core::alert::AlertPage,
    caption: &str,
    q: &HashMap<String, String>,
) -> String {
    let rows: String = page
        .alerts
        .iter()
        .map(|a| {
            format!(
                "<tr><td><a href=\"/ui/alerts/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                a.code.as_str(),
                a.status.as_str(),
                a.classification.map_or("", |c| c.as_str()),
                escape(&a.product_code),
                escape(&a.batch),
                escape(a.serial.as_str()),
                escape(a.location.as_str()),
                escape(&a.markets().iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")),
                escape(&a.created_at.to_rfc3339()),
                id = escape(a.id.as_str()),
            )
        })
        .collect();
    let table = if rows.is_empty() {
        "<p>No alert matches.</p>".to_owned()
    } else {
        format!(
            "<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"table, scrolls sideways\"><table><caption>{}</caption><thead><tr><th scope=\"col\">alert</th><th scope=\"col\">code</th>\
<th scope=\"col\">status</th><th scope=\"col\">classification</th><th scope=\"col\">product</th><th scope=\"col\">batch</th>\
<th scope=\"col\">serial</th><th scope=\"col\">premises</th><th scope=\"col\">markets</th><th scope=\"col\">raised</th></tr></thead><tbody>{rows}</tbody></table></div>",
            escape(caption)
        )
    };
    let next = page
        .next_cursor
        .as_ref()
        .map(|c| {
            format!(
                "<p><a href=\"/ui/alerts?{}\" rel=\"next\">Next page</a></p>",
                escape(&query_with(q, c.as_str()))
            )
        })
        .unwrap_or_default();
    format!("{table}{next}")
}

async fn alerts(
    State(s): State<NationalState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let sess = match session(&s, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let q = non_empty(&q);
    let get = |k: &str| q.get(k).map(String::as_str);
    let filters = alert_filters(&q, &["A2", "A3", "A24", "A52", "A68", "SERIAL_GUESSING"]);
    let listed = match crate::national::alert_query(&q) {
        Err(e) => Err(e),
        Ok((criteria, limit)) => {
            s.national.alerts(&sess.actor, get("status"), &criteria, limit.or(Some(50)), get("cursor")).await
        }
    };
    match listed {
        Ok(p) => page(
            StatusCode::OK,
            "Alerts",
            Some(&sess),
            &format!("{filters}{}", alert_list(&p, "Alerts, oldest first", &q)),
        ),
        Err(e) if e.http_status() == 400 => {
            let content = format!("{filters}{}", refusal_details(&e, "These filters cannot be used:"));
            page(StatusCode::BAD_REQUEST, "Alerts", Some(&sess), &content)
        }
        Err(e) => api_error_page(&sess, &e),
    }
}

pub(crate) fn thread_html(a: &AlertView) -> String {
    let mut entries: Vec<(openmvs_core::time::Timestamp, String)> = Vec::new();
    for c in &a.thread.history {
        entries.push((
            c.at,
            format!(
                "<strong>{}</strong> (from {}){} by {} ({})",
                c.to.as_str(),
                c.from.as_str(),
                c.classification.map_or(String::new(), |x| format!(", classified {}", x.as_str())),
                escape(&c.by),
                escape(&c.role),
            ),
        ));
    }
    for c in &a.thread.comments {
        entries.push((
            c.at,
            format!("comment by {} ({}): {}", escape(&c.author), escape(&c.role), escape(&c.text)),
        ));
    }
    if entries.is_empty() {
        return "<p>Nothing yet.</p>".into();
    }
    entries.sort_by_key(|(at, _)| *at);
    let mut out = String::from("<ol class=\"timeline\">");
    for (at, text) in entries {
        let at = escape(&at.to_rfc3339());
        let _ = write!(out, "<li><time datetime=\"{at}\">{at}</time>: {text}</li>");
    }
    out.push_str("</ol>");
    out
}

async fn alert(
    State(s): State<NationalState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let sess = match session(&s, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let a = match s.national.alert(&sess.actor, &id).await {
        Ok(a) => a,
        Err(e) => return api_error_page(&sess, &e),
    };
    let done = match q.get("done").map(String::as_str) {
        Some("status") => "<p class=\"done\" role=\"status\">The status was changed.</p>",
        Some("comment") => "<p class=\"done\" role=\"status\">Your comment was added.</p>",
        _ => "",
    };
    let details = format!(
        "<dl><dt>Code</dt><dd>{}</dd><dt>Status</dt><dd>{}</dd><dt>Classification</dt><dd>{}</dd><dt>Raised</dt><dd>{}</dd>\
<dt>Return code</dt><dd>{}</dd><dt>Product</dt><dd>{}</dd><dt>Batch</dt><dd>{}</dd><dt>Serial</dt><dd>{}</dd><dt>Premises</dt><dd>{}</dd>\
<dt>Markets</dt><dd>{}</dd></dl>",
        a.code.as_str(),
        a.status.as_str(),
        a.classification.map_or("-", |c| c.as_str()),
        escape(&a.created_at.to_rfc3339()),
        a.return_code.as_str(),
        escape(&a.product_code),
        escape(&a.batch),
        escape(a.serial.as_str()),
        escape(a.location.as_str()),
        escape(&a.markets().iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")),
    );
    let forms = if sess.actor.role == Role::Nmvo {
        let id = escape(a.id.as_str());
        let statuses: Vec<&str> =
            AlertStatus::ALL.iter().map(|s| s.as_str()).filter(|s| *s != "OPEN").collect();
        let classes: Vec<&str> = Classification::ALL.iter().map(|c| c.as_str()).collect();
        format!(
            "<form method=\"post\" action=\"/ui/alerts/{id}/status\"><fieldset><legend>Change the status</legend>{csrf}\
{}{}<label>Comment (optional) <textarea name=\"comment\" rows=\"2\" maxlength=\"500\"></textarea></label>\
<p><button type=\"submit\">Change the status</button></p><p class=\"muted\">Closing needs a classification; \
a confirmed falsification is reported to the national competent authority.</p></fieldset></form>\
<form method=\"post\" action=\"/ui/alerts/{id}/comments\"><fieldset><legend>Comment</legend>{csrf}\
<label>Comment <textarea name=\"text\" rows=\"3\" maxlength=\"500\" required></textarea></label>\
<p><button type=\"submit\">Add the comment</button></p></fieldset></form>",
            select_with("status", "New status", &statuses, None, None),
            select_with("classification", "Classification", &classes, None, Some("none (needed to close)")),
            csrf = hidden_csrf(&sess),
        )
    } else {
        String::new()
    };
    let content = format!(
        "{done}{details}<h2>History and comments</h2><p class=\"muted\">The NMVO's and the OBP's entries, in the order they were made.</p>{}{forms}<p><a href=\"/ui/alerts\">All alerts</a></p>",
        thread_html(&a)
    );
    page(StatusCode::OK, &format!("Alert {}", a.id.as_str()), Some(&sess), &content)
}

async fn alert_status(
    State(s): State<NationalState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (sess, f) = match posted(&s, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let opt = |k: &str| f.get(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let req = AlertStatusRequest {
        status: opt("status").unwrap_or_default(),
        classification: opt("classification"),
        comment: opt("comment"),
    };
    match s.national.change_alert_status(&sess.actor, &id, &req).await {
        Ok(_) => Redirect::to(&format!("/ui/alerts/{}?done=status", enc(&id))).into_response(),
        Err(e) => api_error_page(&sess, &e),
    }
}

async fn alert_comment(
    State(s): State<NationalState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (sess, f) = match posted(&s, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let req = AlertCommentRequest { text: f.get("text").cloned().unwrap_or_default() };
    match s.national.comment_alert(&sess.actor, &id, &req).await {
        Ok(_) => Redirect::to(&format!("/ui/alerts/{}?done=comment", enc(&id))).into_response(),
        Err(e) => api_error_page(&sess, &e),
    }
}

async fn audit(
    State(s): State<NationalState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let sess = match session(&s, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(e) = s.national.may_read_audit(&sess.actor) {
        return api_error_page(&sess, &e);
    }
    let q = non_empty(&q);
    let get = |k: &str| q.get(k).map(String::as_str);
    let form_html = format!(
        "<form class=\"filters\" method=\"get\" action=\"/ui/audit\" role=\"search\" aria-label=\"Search the audit trail\">{}{}{}{}{}{}{}{}{}<p><button type=\"submit\">Search</button> <a href=\"/ui/audit\">Clear</a></p></form>",
        text_input("product_code", "Product code", get("product_code"), "text"),
        text_input("serial", "Serial (with a product code)", get("serial"), "text"),
        text_input("batch", "Batch (with a product code)", get("batch"), "text"),
        text_input("client_id", "Client", get("client_id"), "text"),
        text_input("location", "Premises", get("location"), "text"),
        text_input("operation", "Operation", get("operation"), "text"),
        text_input("from", "From", get("from"), "date"),
        text_input("to", "Up to", get("to"), "date"),
        text_input("limit", "Per page", get("limit").or(Some("50")), "number"),
    );
    if q.is_empty() {
        return page(
            StatusCode::OK,
            "Audit trail",
            Some(&sess),
            &format!(
                "<p>Search the market's audit trail: every request, refusal and change, and what the hub delivered. Your searches are audited.</p>{form_html}"
            ),
        );
    }
    let mut params = q.clone();
    params.entry("limit".into()).or_insert_with(|| "50".into());
    let found = s.national.audit_search(&sess.actor, &params).await;
    let result = match found {
        Err(e) if e.http_status() == 400 => {
            let content = format!("{form_html}{}", refusal_details(&e, "This search cannot be made:"));
            return page(StatusCode::BAD_REQUEST, "Audit trail", Some(&sess), &content);
        }
        Err(e) => return api_error_page(&sess, &e),
        Ok(p) => p,
    };
    let rows: String = result
        .records
        .iter()
        .map(|r| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                r.seq,
                escape(&r.at.to_rfc3339()),
                escape(&r.operation),
                escape(&r.subject),
                escape(&r.actor),
                escape(&r.role),
                escape(&r.location),
                escape(&r.return_code),
            )
        })
        .collect();
    let mut export_q = q.clone();
    export_q.remove("limit");
    export_q.remove("cursor");
    let base: Vec<String> = {
        let mut v: Vec<(&String, &String)> = export_q.iter().collect();
        v.sort();
        v.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect()
    };
    let export = |f: &str| {
        let mut parts = base.clone();
        parts.push(format!("format={f}"));
        format!("/ui/audit/export?{}", escape(&parts.join("&")))
    };
    let table = if rows.is_empty() {
        "<p>No record matches.</p>".to_owned()
    } else {
        format!(
            "<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"table, scrolls sideways\"><table><caption>Records in the order they were written</caption><thead><tr><th scope=\"col\">seq</th><th scope=\"col\">at</th>\
<th scope=\"col\">operation</th><th scope=\"col\">subject</th><th scope=\"col\">client</th><th scope=\"col\">role</th>\
<th scope=\"col\">premises</th><th scope=\"col\">outcome</th></tr></thead><tbody>{rows}</tbody></table></div>"
        )
    };
    let next = result
        .next_cursor
        .map(|c| {
            format!("<p><a href=\"/ui/audit?{}\" rel=\"next\">Next page</a></p>", escape(&query_with(&q, &c)))
        })
        .unwrap_or_default();
    let content = format!(
        "{form_html}<p>Export every record of this search: <a href=\"{}\" download>CSV</a> · <a href=\"{}\" download>JSON</a></p>{table}{next}",
        export("csv"),
        export("json")
    );
    page(StatusCode::OK, "Audit trail", Some(&sess), &content)
}

async fn audit_export(
    State(s): State<NationalState>,
    headers: HeaderMap,
    Query(mut q): Query<HashMap<String, String>>,
) -> Response {
    let sess = match session(&s, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let format = match q.remove("format").as_deref() {
        Some("json") => crate::export::Format::Json,
        _ => crate::export::Format::Csv,
    };
    q.remove("limit");
    let q = non_empty(&q);
    match s.national.audit_export(&sess.actor, &q).await {
        Ok(search) => crate::export::stream(s.national.clone(), search, format),
        Err(e) => api_error_page(&sess, &e),
    }
}

async fn incidents(
    State(s): State<NationalState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let sess = match session(&s, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let market = s.national.market();
    let store: &dyn openmvs_store::ConsoleStore = s.national.store().as_ref();
    let list = match crate::incidents::list(
        store,
        market.as_str(),
        &crate::incidents::IncidentQuery { open: false, before: None, limit: 50 },
    )
    .await
    {
        Ok(l) => l,
        Err(e) => return api_error_page(&sess, &e),
    };
    let manage = sess.actor.role == Role::Nmvo;
    let done = match q.get("done").map(String::as_str) {
        Some("opened") => {
            "<p class=\"done\" role=\"status\">The incident is open and shown on the status page and in the feeds.</p>"
        }
        Some("updated") => "<p class=\"done\" role=\"status\">The incident was updated.</p>",
        _ => "",
    };
    let impacts = ["minor", "major", "critical"];
    let mut content = String::from(done);
    if manage {
        let _ = write!(
            content,
            "<form method=\"post\" action=\"/ui/incidents\"><fieldset><legend>Open an incident</legend>{}\
<label>Title <input name=\"title\" maxlength=\"200\" required></label>{}{}\
<label>What is known <textarea name=\"message\" rows=\"3\" maxlength=\"4000\" required></textarea></label>\
<p><button type=\"submit\">Open the incident</button></p></fieldset></form>",
            hidden_csrf(&sess),
            select_with("impact", "Impact", &impacts, Some("minor"), None),
            select_with(
                "status",
                "Status",
                &["investigating", "identified", "monitoring"],
                Some("investigating"),
                None
            ),
        );
    }
    content.push_str("<h2>Incidents, newest first</h2>");
    content.push_str(&crate::incidents::timeline_html(&list.incidents));
    if manage {
        for i in list.incidents.iter().filter(|i| i.resolved_at.is_none()) {
            let _ = write!(
                content,
                "<form method=\"post\" action=\"/ui/incidents/{id}/updates\"><fieldset><legend>Update incident {id}: {t}</legend>{}\
{}{}<label>What is new <textarea name=\"message\" rows=\"2\" maxlength=\"4000\" required></textarea></label>\
<p><button type=\"submit\">Update incident {id}</button></p></fieldset></form>",
                hidden_csrf(&sess),
                select(
                    "status",
                    "Status",
                    &["investigating", "identified", "monitoring", "resolved"],
                    Some(i.status)
                ),
                select("impact", "Impact", &impacts, Some(i.impact)),
                id = i.id,
                t = escape(&i.title),
            );
        }
    }
    let _ = write!(
        content,
        "<p>Subscribe: <a href=\"/v1/incidents/feed.atom\">Atom</a> · <a href=\"/v1/incidents/feed.json\">JSON Feed</a></p>"
    );
    page(StatusCode::OK, "Incidents", Some(&sess), &content)
}

async fn incident_open(State(s): State<NationalState>, headers: HeaderMap, body: Bytes) -> Response {
    let (sess, f) = match posted(&s, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(e) = crate::national::may_manage_incidents(&s, &sess.actor) {
        return api_error_page(&sess, &e);
    }
    let req = crate::incidents::OpenIncidentRequest {
        title: f.get("title").cloned().unwrap_or_default(),
        impact: f.get("impact").cloned().unwrap_or_default(),
        status: f.get("status").cloned().filter(|v| !v.is_empty()),
        message: f.get("message").cloned().unwrap_or_default(),
    };
    let market = s.national.market();
    let new = match crate::incidents::new_incident(
        &req,
        market.as_str(),
        sess.actor.client_id.as_str(),
        s.national.clock().now(),
    ) {
        Ok(n) => n,
        Err(e) => return api_error_page(&sess, &e),
    };
    match s.national.store().open_incident(new).await {
        Ok(_) => Redirect::to("/ui/incidents?done=opened").into_response(),
        Err(e) => api_error_page(&sess, &ApiError::from(e)),
    }
}

async fn incident_update(
    State(s): State<NationalState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (sess, f) = match posted(&s, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(e) = crate::national::may_manage_incidents(&s, &sess.actor) {
        return api_error_page(&sess, &e);
    }
    let req = crate::incidents::IncidentUpdateRequest {
        status: f.get("status").cloned().unwrap_or_default(),
        message: f.get("message").cloned().unwrap_or_default(),
        impact: f.get("impact").cloned().filter(|v| !v.is_empty()),
    };
    let market = s.national.market();
    let store: &dyn openmvs_store::ConsoleStore = s.national.store().as_ref();
    let n = match crate::incidents::one(store, market.as_str(), &id).await {
        Ok(v) => v.id,
        Err(e) => return api_error_page(&sess, &e),
    };
    let (note, impact) = match crate::incidents::incident_note(
        &req,
        sess.actor.client_id.as_str(),
        s.national.clock().now(),
    ) {
        Ok(x) => x,
        Err(e) => return api_error_page(&sess, &e),
    };
    match crate::incidents::update(store, market.as_str(), n, note, impact).await {
        Ok(_) => Redirect::to("/ui/incidents?done=updated").into_response(),
        Err(e) => api_error_page(&sess, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_decode_as_browsers_encode_them() {
        let f = form(&Bytes::from_static(b"title=Slow+answers%21&message=a%26b%3Dc&empty=&x"));
        assert_eq!(f["title"], "Slow answers!");
        assert_eq!(f["message"], "a&b=c");
        assert_eq!(f["empty"], "");
        assert_eq!(f["x"], "");
        assert!(
            form(&Bytes::from_static(b"csrf=%zz")).is_empty(),
            "a body that is not form-encoded has no fields"
        );
    }

    #[test]
    fn cookies_are_read_by_name_and_the_csrf_token_depends_on_the_secret() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; openmvs_session=tok; b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&h, LOGIN_COOKIE), None);
        assert_ne!(csrf_of("tok"), csrf_of("tok2"));
        assert!(same(&csrf_of("x"), &csrf_of("x")));
    }
}
