//! The OBP's web console at the hub, under `/ui`: the alerts on its products, with the filters of
//! the API, one alert with the thread it shares with the markets' NMVOs, status changes and
//! comments. The OBP signs in with what it already has: the client certificate the hub's CA
//! issued, which its browser presents (the door admits an OBP certificate only). Forms carry a
//! CSRF token derived from a cookie of their own (`HttpOnly`, `Secure`, `SameSite=Strict`), since
//! a browser presents the certificate to a cross-site form too. The pages are sent with the same
//! security headers as a national system's console.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use openmvs_core::alert::{AlertStatus, Classification};
use openmvs_core::error::ApiError;

use crate::authz::Routes;
use crate::hub::{HubState, Obp};
use crate::status::escape;
use crate::web::{
    CSRF_FIELD, alert_filters, alert_list, cookie, csrf_of, enc, form, non_empty, random_hex,
    refusal_details, same, select_with, set_cookie, shell, thread_html,
};

/// The cookie the forms' CSRF token is derived from.
pub const FORM_COOKIE: &str = "openmvs_forms";

/// The OBP console's routes, each as the authorization table lists it.
pub fn routes(routes: Routes<HubState>) -> Routes<HubState> {
    routes
        .route(Method::GET, "/ui", home)
        .route(Method::GET, "/ui/alerts", alerts)
        .route(Method::GET, "/ui/alerts/{id}", alert)
        .route(Method::POST, "/ui/alerts/{id}/status", alert_status)
        .route(Method::POST, "/ui/alerts/{id}/comments", alert_comment)
}

/// The visitor's form token, and the cookie to set when it has none yet.
fn forms(headers: &HeaderMap) -> (String, Option<String>) {
    match cookie(headers, FORM_COOKIE) {
        Some(nonce) => (csrf_of(nonce), None),
        None => {
            let nonce = random_hex();
            (csrf_of(&nonce), Some(nonce))
        }
    }
}

fn nav(obp: &str) -> String {
    format!(
        "<header><nav aria-label=\"Console\"><ul class=\"nav\"><li><a href=\"/ui/alerts\">Alerts</a></li>\
<li><a href=\"/ui/alerts?status=OPEN\">Open alerts</a></li><li><a href=\"/status\">Hub status</a></li></ul></nav>\
<p class=\"who\">Signed in by certificate as OBP <strong>{}</strong></p></header>",
        escape(obp)
    )
}

fn page(status: StatusCode, title: &str, obp: &str, content: &str, new_cookie: Option<String>) -> Response {
    let mut r = shell(status, title, &nav(obp), content);
    if let Some(nonce) = new_cookie {
        r.headers_mut().append(header::SET_COOKIE, set_cookie(FORM_COOKIE, &nonce, 8 * 3600));
    }
    r
}

fn error_page(obp: &str, e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let details: String = e
        .details
        .iter()
        .map(|d| format!("<li><code>{}</code>: {}</li>", escape(&d.field), escape(&d.message)))
        .collect();
    let title = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        _ => "Refused",
    };
    let content = format!(
        "<p class=\"error\" role=\"alert\">{}</p><ul>{details}</ul><p><a href=\"/ui/alerts\">Back to the alerts</a></p>",
        escape(&e.message)
    );
    page(status, title, obp, &content, None)
}

/// The refusal of a form whose CSRF token is not the visitor's; `None` when it is.
fn refused_form(obp: &str, headers: &HeaderMap, f: &HashMap<String, String>) -> Option<Response> {
    let ok = match (cookie(headers, FORM_COOKIE), f.get(CSRF_FIELD)) {
        (Some(nonce), Some(t)) => same(&csrf_of(nonce), t),
        _ => false,
    };
    (!ok).then(|| {
        page(
            StatusCode::BAD_REQUEST,
            "Refused",
            obp,
            "<p role=\"alert\" class=\"error\">This form has expired or did not come from this console. Go back, reload the page and try again.</p>",
            None,
        )
    })
}

async fn home(Obp(_): Obp) -> Response {
    Redirect::to("/ui/alerts").into_response()
}

async fn alerts(
    State(s): State<HubState>,
    Obp(obp): Obp,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (_, new_cookie) = forms(&headers);
    let q = non_empty(&q);
    let get = |k: &str| q.get(k).map(String::as_str);
    let filters = alert_filters(&q, &["A2", "A3", "A24", "A52", "A68"]);
    let listed = match crate::national::alert_query(&q) {
        Err(e) => Err(e),
        Ok((criteria, limit)) => {
            s.hub.alerts(&obp, get("status"), &criteria, limit.or(Some(50)), get("cursor")).await
        }
    };
    let title = "Alerts on your products";
    match listed {
        Ok(p) => {
            let content = format!("{filters}{}", alert_list(&p, "Alerts on your products, oldest first", &q));
            page(StatusCode::OK, title, &obp, &content, new_cookie)
        }
        Err(e) if e.http_status() == 400 => {
            let content = format!("{filters}{}", refusal_details(&e, "These filters cannot be used:"));
            page(StatusCode::BAD_REQUEST, title, &obp, &content, new_cookie)
        }
        Err(e) => error_page(&obp, &e),
    }
}

async fn alert(
    State(s): State<HubState>,
    Obp(obp): Obp,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (csrf, new_cookie) = forms(&headers);
    let a = match s.hub.alert(&obp, &id).await {
        Ok(a) => a,
        Err(e) => return error_page(&obp, &e),
    };
    let done = match q.get("done").map(String::as_str) {
        Some("status") => {
            "<p class=\"done\" role=\"status\">The status was changed; the markets' NMVOs see it too.</p>"
        }
        Some("comment") => {
            "<p class=\"done\" role=\"status\">Your comment was added; the markets' NMVOs see it too.</p>"
        }
        _ => "",
    };
    let hidden = format!("<input type=\"hidden\" name=\"{CSRF_FIELD}\" value=\"{csrf}\">");
    let statuses: Vec<&str> = AlertStatus::ALL.iter().map(|s| s.as_str()).filter(|s| *s != "OPEN").collect();
    let classes: Vec<&str> = Classification::ALL.iter().map(|c| c.as_str()).collect();
    let aid = escape(a.id.as_str());
    let content = format!(
        "{done}<dl><dt>Code</dt><dd>{}</dd><dt>Status</dt><dd>{}</dd><dt>Classification</dt><dd>{}</dd><dt>Raised</dt><dd>{}</dd>\
<dt>Product</dt><dd>{}</dd><dt>Batch</dt><dd>{}</dd><dt>Serial</dt><dd>{}</dd><dt>Markets</dt><dd>{}</dd></dl>\
<h2>History and comments</h2><p class=\"muted\">Your entries and the markets' NMVOs', in the order they were made.</p>{}\
<form method=\"post\" action=\"/ui/alerts/{aid}/status\"><fieldset><legend>Change the status</legend>{hidden}{}{}\
<label>Comment (optional) <textarea name=\"comment\" rows=\"2\" maxlength=\"500\"></textarea></label>\
<p><button type=\"submit\">Change the status</button></p></fieldset></form>\
<form method=\"post\" action=\"/ui/alerts/{aid}/comments\"><fieldset><legend>Comment</legend>{hidden}\
<label>Comment <textarea name=\"text\" rows=\"3\" maxlength=\"500\" required></textarea></label>\
<p><button type=\"submit\">Add the comment</button></p></fieldset></form><p><a href=\"/ui/alerts\">All alerts</a></p>",
        a.code.as_str(),
        a.status.as_str(),
        a.classification.map_or("-", |c| c.as_str()),
        escape(&a.created_at.to_rfc3339()),
        escape(&a.product_code),
        escape(&a.batch),
        escape(a.serial.as_str()),
        escape(&a.markets().iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")),
        thread_html(&a),
        select_with("status", "New status", &statuses, None, None),
        select_with("classification", "Classification", &classes, None, Some("none (needed to close)")),
    );
    page(StatusCode::OK, &format!("Alert {}", a.id.as_str()), &obp, &content, new_cookie)
}

async fn alert_status(
    State(s): State<HubState>,
    Obp(obp): Obp,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let f = form(&body);
    if let Some(r) = refused_form(&obp, &headers, &f) {
        return r;
    }
    let opt = |k: &str| f.get(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let (status, classification, comment) =
        (opt("status").unwrap_or_default(), opt("classification"), opt("comment"));
    match s.hub.change_alert_status(&obp, &id, &status, classification.as_deref(), comment.as_deref()).await {
        Ok(_) => Redirect::to(&format!("/ui/alerts/{}?done=status", enc(&id))).into_response(),
        Err(e) => error_page(&obp, &e),
    }
}

async fn alert_comment(
    State(s): State<HubState>,
    Obp(obp): Obp,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let f = form(&body);
    if let Some(r) = refused_form(&obp, &headers, &f) {
        return r;
    }
    match s.hub.comment_alert(&obp, &id, f.get("text").map_or("", String::as_str)).await {
        Ok(_) => Redirect::to(&format!("/ui/alerts/{}?done=comment", enc(&id))).into_response(),
        Err(e) => error_page(&obp, &e),
    }
}
