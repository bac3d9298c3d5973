//! The web console of a national system, as a browser uses it: sign-in with the client's own
//! credentials, the session cookie and its flags, CSRF on every form, security headers, and what
//! each role may see and do. The same pages are driven in a real browser by `tests/browser`.

use std::collections::HashMap;
use std::sync::Mutex;

use openmvs_core::roles::Role;
use serde_json::{Value, json};

use crate::harness::*;

/// A browser without script: follows no redirect by itself, keeps the cookies it is given.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: Mutex<HashMap<String, String>>,
}

struct Page {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect()
    }

    /// The CSRF token of the page's first form.
    fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("a form with a CSRF token");
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').expect("the token's end")].to_owned()
    }
}

impl Browser {
    fn new(app: &TestApp) -> Browser {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .danger_accept_invalid_certs(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client");
        Browser { http, base: app.base.clone(), cookies: Mutex::new(HashMap::new()) }
    }

    fn cookie_header(&self) -> String {
        self.cookies.lock().unwrap().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Page {
        let r = rb.header("cookie", self.cookie_header()).send().await.expect("an answer");
        let page = Page { status: r.status().as_u16(), headers: r.headers().clone(), body: String::new() };
        let body = r.text().await.unwrap_or_default();
        let page = Page { body, ..page };
        for c in page.set_cookies() {
            let (pair, _) = c.split_once(';').unwrap_or((&c, ""));
            let (k, v) = pair.split_once('=').expect("name=value");
            let mut jar = self.cookies.lock().unwrap();
            if v.is_empty() || c.contains("Max-Age=0") {
                jar.remove(k);
            } else {
                jar.insert(k.to_owned(), v.to_owned());
            }
        }
        page
    }

    async fn get(&self, path: &str) -> Page {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(self.http.post(format!("{}{path}", self.base)).form(form)).await
    }

    async fn sign_in(&self, c: &Client) -> Page {
        let form = self.get("/ui/login").await;
        let csrf = form.csrf();
        let r = self
            .post("/ui/login", &[("csrf", &csrf), ("client_id", &c.client_id), ("client_secret", c.secret())])
            .await;
        assert_eq!((r.status, r.header("location")), (303, "/ui".to_owned()), "{}", r.body);
        r
    }
}

#[tokio::test]
async fn sign_in_sets_a_strict_session_cookie_and_every_page_is_sent_with_the_security_headers() {
    let app = spawn_app().await;
    let nmvo = app.client(Role::Nmvo, "nmvo-office").await;
    let b = Browser::new(&app);
    let away = b.get("/ui/alerts").await;
    assert_eq!((away.status, away.header("location")), (303, "/ui/login".to_owned()));
    let form = b.get("/ui/login").await;
    assert_eq!(form.status, 200);
    for (h, v) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(form.header(h), v, "{h}");
    }
    let csp = form.header("content-security-policy");
    assert!(
        csp.contains("default-src 'none'")
            && csp.contains("frame-ancestors 'none'")
            && csp.contains("form-action 'self'"),
        "{csp}"
    );
    assert!(form.set_cookies()[0].contains("HttpOnly; Secure; SameSite=Strict"), "{:?}", form.set_cookies());

    // A sign-in without the form's token, or with a wrong secret, signs nobody in.
    let forged = b
        .post(
            "/ui/login",
            &[("csrf", "0000"), ("client_id", &nmvo.client_id), ("client_secret", nmvo.secret())],
        )
        .await;
    assert_eq!(forged.status, 400, "{}", forged.body);
    assert!(forged.body.contains("The sign-in form expired"), "{}", forged.body);
    let csrf = b.get("/ui/login").await.csrf();
    let wrong = b
        .post("/ui/login", &[("csrf", &csrf), ("client_id", &nmvo.client_id), ("client_secret", "nope")])
        .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("The client id or secret is wrong"), "{}", wrong.body);
    assert!(!b.cookies.lock().unwrap().contains_key("openmvs_session"));

    let signed = b.sign_in(&nmvo).await;
    let session =
        signed.set_cookies().into_iter().find(|c| c.starts_with("openmvs_session=")).expect("a session");
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/ui", "Max-Age="] {
        assert!(session.contains(flag), "{flag} in {session}");
    }
    let home = b.get("/ui").await;
    assert_eq!(home.status, 200);
    assert!(
        home.body.contains("national organisation (NMVO)") && home.body.contains("Search the audit trail"),
        "{}",
        home.body
    );
    assert_eq!(home.header("content-security-policy"), csp);

    // Signing out needs the form's token too, then ends the session.
    let kept = b.post("/ui/logout", &[("csrf", "forged")]).await;
    assert_eq!(kept.status, 400);
    assert_eq!(b.get("/ui").await.status, 200, "still signed in");
    let csrf = home.csrf();
    let out = b.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 303);
    assert_eq!(b.get("/ui").await.header("location"), "/ui/login");
}

#[tokio::test]
async fn the_nmvo_works_an_alert_on_the_page_and_a_forged_form_changes_nothing() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let other = app.client(Role::Pharmacy, "pharmacy-b").await;
    let nmvo = app.client(Role::Nmvo, "nmvo-office").await;
    let raised = a.verify(&p.req_with(&[("serial", fresh_serial().as_str())])).await;
    let id = alert_id(&raised);
    let _ = other.verify(&p.req_with(&[("serial", fresh_serial().as_str())])).await;

    let b = Browser::new(&app);
    b.sign_in(&nmvo).await;
    let list = b.get("/ui/alerts?status=OPEN&location=pharmacy-a").await;
    assert_eq!(list.status, 200);
    assert!(list.body.contains(&id), "{}", list.body);
    assert_eq!(
        list.body.matches("<a href=\"/ui/alerts/ALR-").count(),
        1,
        "the filter keeps pharmacy-a's only"
    );
    let bad = b.get("/ui/alerts?code=A9").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("<code>code</code>"), "the filter at fault is named: {}", bad.body);

    let detail = b.get(&format!("/ui/alerts/{id}")).await;
    assert!(detail.body.contains("Change the status"), "{}", detail.body);
    let csrf = detail.csrf();
    let forged =
        b.post(&format!("/ui/alerts/{id}/status"), &[("csrf", "x"), ("status", "INVESTIGATING")]).await;
    assert_eq!(forged.status, 400);
    assert_eq!(nmvo.get(&format!("/v1/alerts/{id}")).await.json["status"], "OPEN", "nothing changed");
    let moved = b
        .post(
            &format!("/ui/alerts/{id}/status"),
            &[("csrf", &csrf), ("status", "INVESTIGATING"), ("comment", "Asked the pharmacy.")],
        )
        .await;
    assert_eq!((moved.status, moved.header("location")), (303, format!("/ui/alerts/{id}?done=status")));
    let commented = b
        .post(
            &format!("/ui/alerts/{id}/comments"),
            &[("csrf", &csrf), ("text", "The box was damaged <b>too</b>.")],
        )
        .await;
    assert_eq!(commented.status, 303);
    let api = nmvo.get(&format!("/v1/alerts/{id}")).await.json;
    assert_eq!(api["status"], "INVESTIGATING");
    let after = b.get(&format!("/ui/alerts/{id}?done=comment")).await;
    assert!(
        after.body.contains("Your comment was added.") && after.body.contains("&lt;b&gt;too&lt;/b&gt;"),
        "{}",
        after.body
    );
    let closing = b.post(&format!("/ui/alerts/{id}/status"), &[("csrf", &csrf), ("status", "CLOSED")]).await;
    assert_eq!(closing.status, 400, "closing needs a classification");
    assert!(closing.body.contains("classification"), "{}", closing.body);
    let closed = b
        .post(
            &format!("/ui/alerts/{id}/status"),
            &[("csrf", &csrf), ("status", "CLOSED"), ("classification", "FALSIFICATION_CONFIRMED")],
        )
        .await;
    assert_eq!(closed.status, 303);

    // The NCA sees the report it is owed and cannot change the alert; the pharmacy sees its own.
    let nca = app.client(Role::Nca, "nca-office").await;
    let n = Browser::new(&app);
    n.sign_in(&nca).await;
    let reports = n.get("/ui/alerts?classification=FALSIFICATION_CONFIRMED").await;
    assert!(reports.body.contains(&id), "{}", reports.body);
    assert!(!n.get(&format!("/ui/alerts/{id}")).await.body.contains("Change the status"));
    let ph = Browser::new(&app);
    ph.sign_in(&other).await;
    let own = ph.get("/ui/alerts").await;
    assert_eq!(own.body.matches("<a href=\"/ui/alerts/ALR-").count(), 1, "{}", own.body);
    assert!(!own.body.contains(&id));
    assert_eq!(ph.get(&format!("/ui/alerts/{id}")).await.status, 404, "another's alert is not shown");
    let csrf = ph.get("/ui").await.csrf();
    let tried =
        ph.post(&format!("/ui/alerts/{id}/status"), &[("csrf", &csrf), ("status", "ESCALATED")]).await;
    assert_eq!(tried.status, 403);
    assert_eq!(ph.get("/ui/audit").await.status, 403, "a pharmacy does not read the audit trail");
}

#[tokio::test]
async fn the_nca_searches_and_exports_the_trail_and_the_nmvo_opens_and_resolves_an_incident() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    assert_eq!(a.op("supply", &p.req()).await.status, 200);
    let nca = app.client(Role::Nca, "nca-office").await;
    let b = Browser::new(&app);
    b.sign_in(&nca).await;
    let found = b.get(&format!("/ui/audit?product_code={GTIN}&serial={}", p.serial)).await;
    assert_eq!(found.status, 200, "{}", found.body);
    assert!(found.body.contains(">supply<") && found.body.contains(">hub-packs<"), "{}", found.body);
    let link = format!("/ui/audit/export?product_code={GTIN}&amp;serial={}&amp;format=csv", p.serial);
    assert!(found.body.contains(&link), "{}", found.body);
    let csv = b.get(&link.replace("&amp;", "&")).await;
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").starts_with("text/csv"));
    assert!(csv.body.starts_with("seq,at,actor,") && csv.body.contains(",supply,"), "{}", csv.body);
    let bad = b.get("/ui/audit?serial=S1").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("<code>serial</code>"), "{}", bad.body);
    let incidents = b.get("/ui/incidents").await;
    assert!(!incidents.body.contains("Open an incident"), "the NCA reads incidents only");

    let nmvo = app.client(Role::Nmvo, "nmvo-office").await;
    let m = Browser::new(&app);
    m.sign_in(&nmvo).await;
    let page = m.get("/ui/incidents").await;
    let csrf = page.csrf();
    let opened = m
        .post(
            "/ui/incidents",
            &[
                ("csrf", &csrf),
                ("title", "Slow answers"),
                ("impact", "major"),
                ("status", "investigating"),
                ("message", "Looking."),
            ],
        )
        .await;
    assert_eq!((opened.status, opened.header("location")), (303, "/ui/incidents?done=opened".to_owned()));
    let listed = app.get("/v1/incidents?open=true").await;
    let id = listed.json["incidents"][0]["id"].as_u64().expect("an incident");
    assert_eq!(listed.json["incidents"][0]["title"], "Slow answers");
    let forged = m
        .post(
            &format!("/ui/incidents/{id}/updates"),
            &[("csrf", "x"), ("status", "resolved"), ("message", "no")],
        )
        .await;
    assert_eq!(forged.status, 400);
    let resolved = m
        .post(
            &format!("/ui/incidents/{id}/updates"),
            &[("csrf", &csrf), ("status", "resolved"), ("impact", "major"), ("message", "Fixed.")],
        )
        .await;
    assert_eq!(resolved.status, 303);
    assert_eq!(app.get(&format!("/v1/incidents/{id}")).await.json["status"], json!("resolved"));
    let csrf = b.get("/ui").await.csrf();
    let by_nca = b
        .post("/ui/incidents", &[("csrf", &csrf), ("title", "x"), ("impact", "minor"), ("message", "m")])
        .await;
    assert_eq!(by_nca.status, 403);
    let _: Value = app.get("/v1/incidents").await.json;
}
