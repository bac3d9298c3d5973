//! The authorization table (`openmvs_http::authz`) walked over real mutual TLS, in process: every
//! route of the national system and of the hub is called by every role and every kind of caller
//! (no credentials, a garbage or expired token, each role's token; no client certificate, the
//! hub's, an OBP's, a national system's, one from a CA nobody trusts), and on another owner's
//! data, and each answer is checked against the route's entry. The routers must register exactly
//! the routes of the table, and every entry must have a sample request here.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::Method;
use ed25519_dalek::SigningKey;
use openmvs_core::ids::{Location, MarketCode};
use openmvs_core::pack::Policy;
use openmvs_core::roles::Role;
use openmvs_core::time::Clock;
use openmvs_http::authz::{self, Caller, Others, RouteRule};
use openmvs_http::limit::{Limiter, RateLimit};
use openmvs_http::{
    HubState, NationalState, Observability, ServerHandle, TlsConfig, hub_router, national_router, serve,
};
use openmvs_hub::{Hub, HubConfig};
use openmvs_national::clock::{FakeClock, SystemClock};
use openmvs_national::{National, NationalConfig};
use openmvs_pki::{CertificateAuthority, ClientKind, Issued};
use openmvs_store::Store;
use openmvs_store::hub::HubStore;
use openmvs_store_sqlite::hub::{HubOptions, SqliteHubStore};
use openmvs_store_sqlite::{AuditSigner, Options, SqliteStore};
use openmvs_wire::api::AlertView;
use openmvs_wire::hub::{AlertMsg, BatchMsg, Delivery, Envelope, Message, PacksMsg, ProductMsg};
use serde_json::{Value, json};

#[path = "../support/retry.rs"]
mod retry;
use retry::SendRetrying;

const AU_01: &str = "NMVS_FE_AU_01";
const AU_04: &str = "NMVS_FE_AU_04";
const GTIN: &str = "09501101530003";
const BATCH: &str = "B1";
const EXPIRY: &str = "301231";
/// The OBPs' products at the hub.
const ACME_PRODUCT: &str = "09501101530010";
const OTHER_PRODUCT: &str = "05601234567892";

/// A directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let mut r = [0u8; 8];
        getrandom::fill(&mut r).unwrap();
        let p = std::env::temp_dir().join(format!(
            "openmvs-authz-{what}-{}-{:016x}",
            std::process::id(),
            u64::from_be_bytes(r)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The CA both systems trust, with a certificate for each kind of caller, and one from a CA
/// nobody trusts.
struct Pki {
    ca: CertificateAuthority,
    server: Issued,
    hub: Issued,
    de: Issued,
    acme: Issued,
    other: Issued,
    rogue: Issued,
    _dir: TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = TempDir::new("pki");
        let now = SystemTime::now();
        let mut ca = CertificateAuthority::create(&dir.0.join("ca"), "authz test CA", now).unwrap();
        let server = ca.issue_server(&["localhost", "127.0.0.1"], 30, now).unwrap();
        let hub = ca.issue_client(ClientKind::Hub, "hub", 30, now).unwrap();
        let de = ca.issue_client(ClientKind::National("DE".into()), "de", 30, now).unwrap();
        let acme = ca.issue_client(ClientKind::Obp, "acme-pharma", 30, now).unwrap();
        let other = ca.issue_client(ClientKind::Obp, "other-obp", 30, now).unwrap();
        let mut rogue_ca = CertificateAuthority::create(&dir.0.join("rogue"), "rogue CA", now).unwrap();
        let rogue = rogue_ca.issue_client(ClientKind::Hub, "hub", 30, now).unwrap();
        Pki { ca, server, hub, de, acme, other, rogue, _dir: dir }
    }

    fn tls(&self) -> TlsConfig {
        TlsConfig {
            cert_chain: vec![self.server.cert_der()],
            key: self.server.key_der(),
            client_ca: Some(vec![self.ca.ca_der()]),
            crls: vec![self.ca.crl_der()],
        }
    }

    fn client(&self, identity: Option<&Issued>) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca.ca_pem().as_bytes()).unwrap())
            .timeout(Duration::from_secs(60));
        if let Some(i) = identity {
            b = b.identity(reqwest::Identity::from_pem(i.identity_pem().as_bytes()).unwrap());
        }
        b.build().unwrap()
    }
}

/// A request body.
#[derive(Clone)]
enum Body {
    None,
    Json(Value),
    Form(String),
    Text(String),
    Xml(String),
}

/// One concrete request of a route.
#[derive(Clone)]
struct Req {
    method: Method,
    path: String,
    body: Body,
}

fn req(method: &Method, path: impl Into<String>, body: Body) -> Req {
    Req { method: method.clone(), path: path.into(), body }
}

/// An answer: status and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    json: Value,
    text: String,
}

impl Answer {
    fn field(&self) -> &str {
        self.json["details"][0]["field"].as_str().unwrap_or("")
    }
}

/// Someone calling: an HTTPS client (with or without a client certificate) and maybe a token.
struct Who {
    name: String,
    http: reqwest::Client,
    token: Option<String>,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// No credentials at all, or a token that is garbage or expired.
    Nobody,
    /// A valid token of this role.
    Role(Role),
    /// A client certificate of the hub.
    HubCert,
    /// A client certificate of this OBP.
    Obp(&'static str),
    /// A client certificate of the national system of DE.
    NationalCert,
}

async fn call(base: &str, who: &Who, r: &Req) -> Answer {
    let mut rb = who.http.request(r.method.clone(), format!("{base}{}", r.path));
    if let Some(t) = &who.token {
        rb = rb.bearer_auth(t);
    }
    rb = match &r.body {
        Body::None => rb,
        Body::Json(v) => rb.json(v),
        Body::Form(f) => rb.header("content-type", "application/x-www-form-urlencoded").body(f.clone()),
        Body::Text(t) => rb.header("content-type", "text/plain").body(t.clone()),
        Body::Xml(t) => rb.header("content-type", "text/xml").body(t.clone()),
    };
    let resp =
        rb.send_retrying().await.unwrap_or_else(|e| panic!("{} {} {}: {e}", who.name, r.method, r.path));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer { status, json, text }
}

/// What the table says a caller gets.
#[derive(Debug)]
enum Expect {
    /// Past the door: anything but 401 or 403, and the route exists.
    Admitted,
    /// Refused with this status, return code and field.
    Refused(u16, &'static str, &'static str),
}

fn check(what: &str, a: &Answer, e: &Expect) {
    match e {
        Expect::Admitted => {
            assert!(
                a.status != 401 && a.status != 403,
                "{what}: admitted by the table, got {} {}",
                a.status,
                a.text
            );
            assert!(
                a.status != 405 && !(a.status == 404 && a.field() == "path"),
                "{what}: no such route: {}",
                a.text
            );
        }
        Expect::Refused(status, code, field) => {
            assert_eq!(a.status, *status, "{what}: {}", a.text);
            assert_eq!(a.json["return_code"], *code, "{what}: {}", a.text);
            if !field.is_empty() {
                assert_eq!(a.field(), *field, "{what}: {}", a.text);
            }
        }
    }
}

/// The answer the table promises `who` on `rule`, for the concrete `path`.
fn expected(rule: &RouteRule, who: &Kind, path: &str) -> Expect {
    let certificate = Expect::Refused(403, AU_04, "client_certificate");
    match (rule.caller, who) {
        // The door admits everyone; the handler checks the login in the body (the samples are
        // pings, which take none, and WSDLs).
        (Caller::Anyone | Caller::BodyLogin, _) => Expect::Admitted,
        (Caller::Token(grant), Kind::Role(role)) => {
            if grant.allows(*role, authz::path_command(path), &Policy::default()) {
                Expect::Admitted
            } else {
                Expect::Refused(403, AU_04, "")
            }
        }
        (Caller::Token(_), _) => Expect::Refused(401, AU_01, "authorization"),
        (Caller::HubCertificate, Kind::HubCert) => Expect::Admitted,
        (Caller::ObpCertificate, Kind::Obp(_)) => Expect::Admitted,
        (Caller::NationalCertificate, Kind::NationalCert) => Expect::Admitted,
        (Caller::HubCertificate | Caller::ObpCertificate | Caller::NationalCertificate, _) => certificate,
        (Caller::AdminToken, _) => panic!("the admin route is walked on its own"),
    }
}

fn registered_match(table: &[RouteRule], registered: &[(Method, &'static str)], system: &str) {
    for (m, p) in registered {
        assert!(
            table.iter().any(|r| r.method == *m && r.path == *p),
            "{system}: {m} {p} is registered but not in the authorization table"
        );
    }
    for r in table {
        assert!(
            registered.iter().any(|(m, p)| *m == r.method && *p == r.path),
            "{system}: {} {} is in the table but not registered",
            r.method,
            r.path
        );
    }
}

#[test]
fn the_routers_register_exactly_the_routes_of_the_table() {
    registered_match(authz::NATIONAL, openmvs_http::national::national_routes().registered(), "national");
    registered_match(authz::HUB, openmvs_http::hub::hub_routes().registered(), "hub");
    registered_match(authz::ADMIN, openmvs_http::admin::clock_routes().registered(), "admin");
}

// ---------------------------------------------------------------------------------------------
// The national system.

struct NationalWorld {
    url: String,
    national: Arc<National>,
    clock: Arc<FakeClock>,
    store: Arc<SqliteStore>,
    server: ServerHandle,
    _dir: TempDir,
}

fn envelope(n: usize, body: Message) -> Envelope {
    Envelope { message_id: format!("authz-{n}"), origin: "hub".into(), ordering_key: GTIN.into(), body }
}

/// A national system's configuration with the NMVS SOAP services on.
fn soap_on(mut c: NationalConfig) -> NationalConfig {
    c.secret_logins.enabled = true;
    c
}

async fn national_world(pki: &Pki) -> NationalWorld {
    let dir = TempDir::new("national");
    let clock = Arc::new(FakeClock::at(SystemClock.now()));
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let store = Arc::new(
        SqliteStore::open(Options {
            path: dir.0.join("national.db"),
            signer: Arc::new(AuditSigner { key: SigningKey::from_bytes(&[7; 32]) }),
            clock: dyn_clock.clone(),
            on_group: None,
            checkpoints: openmvs_store::CheckpointOptions::default(),
        })
        .unwrap(),
    );
    let dyn_store: Arc<dyn Store> = store.clone();
    let de = MarketCode::new("DE").unwrap();
    let national = Arc::new(
        National::new(dyn_store, dyn_clock.clone(), soap_on(NationalConfig::new(de)), None).await.unwrap(),
    );
    let obs = Arc::new(Observability::new(dyn_clock));
    obs.load.set_governor(false);
    obs.set_ready(true);
    let limiter = Arc::new(Limiter::new(RateLimit { per_second: 1e6, burst: 1e6 }));
    let router = national_router(NationalState { national: national.clone(), obs, limiter });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = serve(listener, router, Some(pki.tls())).unwrap();
    let url = format!("https://{}", server.local_addr());
    let seed = Delivery {
        messages: vec![
            envelope(
                1,
                Message::Product(ProductMsg {
                    scheme: "GTIN".into(),
                    product_code: GTIN.into(),
                    name: "Examplomab 10 mg".into(),
                    common_name: "examplomab".into(),
                    form: "TABLET".into(),
                    strength: "10 mg".into(),
                    pack_type: "BOX".into(),
                    pack_size: "30".into(),
                    owner: "acme-pharma".into(),
                    version: 1,
                }),
            ),
            envelope(
                2,
                Message::Batch(BatchMsg {
                    scheme: "GTIN".into(),
                    product_code: GTIN.into(),
                    batch: BATCH.into(),
                    expiry: EXPIRY.into(),
                    markets: vec!["DE".into()],
                }),
            ),
            envelope(
                3,
                Message::Packs(PacksMsg {
                    scheme: "GTIN".into(),
                    product_code: GTIN.into(),
                    batch: BATCH.into(),
                    serials: vec!["AUTHZ1".into(), "AUTHZ2".into()],
                }),
            ),
        ],
    };
    let ack = national.apply_delivery(&seed).await.unwrap();
    assert!(ack.results.iter().all(|r| r.status == "APPLIED"), "{ack:?}");
    NationalWorld { url, national, clock, store, server, _dir: dir }
}

impl NationalWorld {
    /// A new client of `role` and its secret.
    async fn client(&self, role: Role, location: &str) -> (String, String) {
        let c = self.national.create_client(role, Location::new(location).unwrap(), location).await.unwrap();
        (c.client_id, c.client_secret)
    }

    async fn token(&self, http: &reqwest::Client, (id, secret): &(String, String)) -> String {
        let r = http
            .post(format!("{}/oauth/token", self.url))
            .form(&[("grant_type", "client_credentials"), ("client_id", id), ("client_secret", secret)])
            .send_retrying()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    }
}

static TRX: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn pack_body(serial: &str) -> Value {
    let n = TRX.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    json!({"client_trx_id": format!("authz-{n}"), "scheme": "GTIN", "product_code": GTIN, "serial": serial,
           "batch": BATCH, "expiry": EXPIRY})
}

/// What the national samples refer to.
struct NationalIds {
    login: (String, String),
    bulk: String,
    alert: String,
    victim: String,
}

/// Requests of each national route: enough to pass the body checks, so that a refusal comes
/// from the door or the role rules, not from a malformed request.
fn national_samples(rule: &RouteRule, ids: &NationalIds) -> Vec<Req> {
    let m = &rule.method;
    let audit = format!("/v1/audit/packs/GTIN/{GTIN}/AUTHZ1");
    match rule.path {
        "/oauth/token" => vec![req(
            m,
            "/oauth/token",
            Body::Form(format!(
                "grant_type=client_credentials&client_id={}&client_secret={}",
                ids.login.0, ids.login.1
            )),
        )],
        "/v1/packs/{operation}" => {
            ["verify", "supply", "destroy", "export", "sample", "free-sample", "lock", "stolen"]
                .iter()
                .map(|op| req(m, format!("/v1/packs/{op}"), Body::Json(pack_body("AUTHZ1"))))
                .collect()
        }
        "/v1/packs/{operation}/undo" => ["supply", "export", "sample", "free-sample", "lock"]
            .iter()
            .map(|op| req(m, format!("/v1/packs/{op}/undo"), Body::Json(pack_body("AUTHZ1"))))
            .collect(),
        "/v1/bulk" => {
            let row = json!({"operation": "verify", "scheme": "GTIN", "product_code": GTIN, "serial": "AUTHZ2",
                             "batch": BATCH, "expiry": EXPIRY});
            vec![req(
                m,
                "/v1/bulk",
                Body::Json(json!({"client_trx_id": pack_body("")["client_trx_id"], "transactions": [row]})),
            )]
        }
        "/v1/bulk/{bulk_id}" => vec![req(m, format!("/v1/bulk/{}", ids.bulk), Body::None)],
        "/v1/alerts" => vec![req(m, "/v1/alerts", Body::None)],
        "/v1/alerts/{id}" => vec![req(m, format!("/v1/alerts/{}", ids.alert), Body::None)],
        "/v1/alerts/{id}/status" => vec![req(
            m,
            format!("/v1/alerts/{}/status", ids.alert),
            Body::Json(json!({"status": "INVESTIGATING"})),
        )],
        "/v1/alerts/{id}/comments" => vec![req(
            m,
            format!("/v1/alerts/{}/comments", ids.alert),
            Body::Json(json!({"text": "checked the stock"})),
        )],
        "/v1/audit/packs/{scheme}/{product_code}/{serial}" => vec![req(m, audit, Body::None)],
        "/v1/audit/records" => {
            vec![req(m, format!("/v1/audit/records?product_code={GTIN}&limit=5"), Body::None)]
        }
        "/v1/audit/records/export" => {
            vec![req(m, format!("/v1/audit/records/export?product_code={GTIN}&format=json"), Body::None)]
        }
        "/v1/admin/clients" => vec![req(m, "/v1/admin/clients", Body::None)],
        "/v1/admin/incidents" => vec![req(
            m,
            rule.path,
            Body::Json(json!({"title": "Slow answers", "impact": "minor", "message": "looking into it"})),
        )],
        "/v1/admin/incidents/{id}/updates" => vec![req(
            m,
            "/v1/admin/incidents/1/updates",
            Body::Json(json!({"status": "monitoring", "message": "a fix is in place"})),
        )],
        "/v1/incidents/{id}" => vec![req(m, "/v1/incidents/1", Body::None)],
        "/v1/admin/clients/{client_id}/disable" => {
            vec![req(m, format!("/v1/admin/clients/{}/disable", ids.victim), Body::None)]
        }
        "/v1/admin/clients/{client_id}/enable" => {
            vec![req(m, format!("/v1/admin/clients/{}/enable", ids.victim), Body::None)]
        }
        "/internal/v1/messages" => vec![req(m, rule.path, Body::Json(json!({"messages": []})))],
        "/internal/v1/intermarket" => vec![req(
            m,
            rule.path,
            Body::Json(
                json!({"market": "FR", "client_id": "fr-pharmacy", "role": "PHARMACY", "location": "FR-PH-1",
                              "command": "verify", "client_trx_id": pack_body("")["client_trx_id"],
                              "scheme": "GTIN", "product_code": GTIN, "serial": "AUTHZ2", "batch": BATCH,
                              "expiry": EXPIRY}),
            ),
        )],
        "/internal/v1/pack-query" => vec![req(
            m,
            rule.path,
            Body::Json(json!({"scheme": "GTIN", "product_code": GTIN, "serial": "AUTHZ2"})),
        )],
        "/v1/return-codes"
        | "/status"
        | "/metrics"
        | "/health/live"
        | "/health/ready"
        | "/v1/openapi.json"
        | "/docs"
        | "/v1/status"
        | "/v1/incidents"
        | "/v1/incidents/feed.atom"
        | "/v1/incidents/feed.json" => {
            vec![req(m, rule.path, Body::None)]
        }
        p if p.starts_with("/WS_") && *m == Method::GET => vec![req(m, format!("{p}?wsdl"), Body::None)],
        p if p.starts_with("/WS_") => {
            let (service, version) = openmvs_soap::Service::at(p).expect("an NMVS service");
            let ping = openmvs_soap::Message::Ping(service).request_element();
            vec![req(
                m,
                p,
                Body::Xml(format!(
                    "<e:Envelope xmlns:e=\"http://www.w3.org/2003/05/soap-envelope\"><e:Body><w:{ping} xmlns:w=\"{}\" \
                     xmlns:t=\"{}\"><t:Input>authz</t:Input></w:{ping}></e:Body></e:Envelope>",
                    version.wsdl_types(),
                    version.types()
                )),
            )]
        }
        // The web console: each page checks its session itself.
        ui if ui == "/ui" || ui.starts_with("/ui/") => vec![req(m, ui.replace("{id}", "1"), Body::None)],
        other => panic!("no sample request for the national route {m} {other}: add one to the authz suite"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_national_route_answers_each_caller_as_the_table_says() {
    let pki = Pki::new();
    let w = national_world(&pki).await;
    let plain = pki.client(None);
    // A token that will have expired: issued now, the clock then moved past its hour and leeway.
    let old = w.token(&plain, &w.client(Role::Pharmacy, "DE-OLD-1").await).await;
    w.clock.advance(Duration::from_secs(3600 + 31));

    let mut callers = vec![
        Who { name: "no credentials".into(), http: pki.client(None), token: None, kind: Kind::Nobody },
        Who {
            name: "a garbage token".into(),
            http: pki.client(None),
            token: Some("not.a.token".into()),
            kind: Kind::Nobody,
        },
        Who { name: "an expired token".into(), http: pki.client(None), token: Some(old), kind: Kind::Nobody },
        Who {
            name: "the hub's certificate".into(),
            http: pki.client(Some(&pki.hub)),
            token: None,
            kind: Kind::HubCert,
        },
        Who {
            name: "an OBP's certificate".into(),
            http: pki.client(Some(&pki.acme)),
            token: None,
            kind: Kind::Obp("acme-pharma"),
        },
        Who {
            name: "a national certificate".into(),
            http: pki.client(Some(&pki.de)),
            token: None,
            kind: Kind::NationalCert,
        },
    ];
    for role in Role::ALL {
        let creds = w.client(role, &format!("DE-{}-1", role.as_str())).await;
        let token = w.token(&plain, &creds).await;
        callers.push(Who {
            name: format!("{role}"),
            http: pki.client(None),
            token: Some(token),
            kind: Kind::Role(role),
        });
    }
    // A second pharmacy, for another client's data.
    let b = w.client(Role::Pharmacy, "DE-PHARMACY-2").await;
    let b = Who {
        name: "pharmacy B".into(),
        http: pki.client(None),
        token: Some(w.token(&plain, &b).await),
        kind: Kind::Role(Role::Pharmacy),
    };
    let a = callers.iter().find(|c| c.kind == Kind::Role(Role::Pharmacy)).unwrap();
    let nmvo = callers.iter().find(|c| c.kind == Kind::Role(Role::Nmvo)).unwrap();

    // Pharmacy A's alert and bulk job.
    let raised =
        call(&w.url, a, &req(&Method::POST, "/v1/packs/verify", Body::Json(pack_body("NOSUCHSERIAL")))).await;
    let alert =
        raised.json["alert"]["id"].as_str().unwrap_or_else(|| panic!("no alert: {}", raised.text)).to_owned();
    let bulk_rule = authz::NATIONAL.iter().find(|r| r.path == "/v1/bulk").unwrap();
    let ids0 = NationalIds {
        login: (String::new(), String::new()),
        bulk: String::new(),
        alert: alert.clone(),
        victim: String::new(),
    };
    let submitted = call(&w.url, a, &national_samples(bulk_rule, &ids0)[0]).await;
    assert_eq!(submitted.status, 202, "{}", submitted.text);
    let bulk = submitted.json["bulk_id"].as_str().unwrap().to_owned();
    let ids = NationalIds {
        login: w.client(Role::Pharmacy, "DE-LOGIN-1").await,
        bulk,
        alert,
        victim: w.client(Role::Pharmacy, "DE-VICTIM-1").await.0,
    };

    let mut calls = 0;
    for rule in authz::NATIONAL {
        for sample in national_samples(rule, &ids) {
            for who in &callers {
                let what = format!("{} {} as {}", sample.method, sample.path, who.name);
                let answer = call(&w.url, who, &sample).await;
                check(&what, &answer, &expected(rule, &who.kind, &sample.path));
                calls += 1;
            }
        }
        // Another owner's data.
        if let Some(owner) = rule.owner {
            let sample = national_samples(rule, &ids).remove(0);
            let what = format!("{} {} as pharmacy A, the owner", sample.method, sample.path);
            let mine = call(&w.url, a, &sample).await;
            assert_eq!(mine.status, 200, "{what}: {}", mine.text);
            let theirs = call(&w.url, &b, &sample).await;
            let what = format!("{} {} as pharmacy B, not the owner", sample.method, sample.path);
            match owner.other {
                Others::Refused(r) => {
                    check(&what, &theirs, &Expect::Refused(r.code.http_status(), r.code.as_str(), r.field));
                }
                Others::LeftOut => {
                    assert_eq!(theirs.status, 200, "{what}: {}", theirs.text);
                    assert!(mine.text.contains(&ids.alert), "{what}: the owner's list lacks its alert");
                    assert!(!theirs.text.contains(&ids.alert), "{what}: {}", theirs.text);
                }
            }
            // The market's whole view is the NMVO's.
            if rule.path.starts_with("/v1/alerts") {
                let all = call(&w.url, nmvo, &sample).await;
                assert_eq!(all.status, 200, "{} as the NMVO: {}", sample.path, all.text);
            }
        }
    }
    assert!(calls > 200, "{calls} calls");

    // A certificate from a CA nobody trusts does not even get through the handshake.
    let rogue = pki.client(Some(&pki.rogue));
    let r = rogue.post(format!("{}/internal/v1/messages", w.url)).json(&json!({"messages": []})).send().await;
    assert!(r.is_err(), "a rogue certificate got an answer: {:?}", r.map(|r| r.status()));

    w.server.shutdown(Duration::from_secs(1)).await;
    w.store.close();
}

// ---------------------------------------------------------------------------------------------
// The hub.

struct HubWorld {
    url: String,
    store: Arc<SqliteHubStore>,
    server: ServerHandle,
    _dir: TempDir,
}

async fn hub_world(pki: &Pki) -> HubWorld {
    let dir = TempDir::new("hub");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Arc::new(
        SqliteHubStore::open(HubOptions {
            path: dir.0.join("hub.db"),
            signer: Arc::new(AuditSigner { key: SigningKey::from_bytes(&[9; 32]) }),
            clock: clock.clone(),
            on_group: None,
            checkpoints: openmvs_store::CheckpointOptions::default(),
        })
        .unwrap(),
    );
    let dyn_store: Arc<dyn HubStore> = store.clone();
    let hub = Arc::new(Hub::new(dyn_store, clock.clone(), HubConfig::new([3; 32]), None));
    let obs = Arc::new(Observability::new(clock));
    obs.load.set_governor(false);
    obs.set_ready(true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = serve(listener, hub_router(HubState { hub, obs }), Some(pki.tls())).unwrap();
    HubWorld { url: format!("https://{}", server.local_addr()), store, server, _dir: dir }
}

fn hub_product() -> Value {
    json!({"scheme": "GTIN", "name": "Examplomab 10 mg tablets", "common_name": "examplomab", "form": "TABLET",
           "strength": "10 mg", "pack_type": "BOX", "pack_size": "30",
           "markets": [{"market": "DE", "national_code": "DE-123", "mah": {"name": "Acme", "address": "Berlin"},
                        "wholesalers": []}]})
}

/// What an OBP owns at the hub.
struct Owned {
    product: &'static str,
    upload: String,
    alert: String,
}

/// Requests of each hub route on `own`'s data, with valid bodies.
fn hub_samples(rule: &RouteRule, own: &Owned) -> Vec<Req> {
    let m = &rule.method;
    let p = own.product;
    let json = |v: Value| Body::Json(v);
    match rule.path {
        "/v1/products/{product_code}" => vec![req(m, format!("/v1/products/{p}"), json(hub_product()))],
        "/v1/products/{product_code}/batches/{batch}" => {
            vec![req(m, format!("/v1/products/{p}/batches/{BATCH}"), json(json!({"expiry": EXPIRY})))]
        }
        "/v1/products/{product_code}/batches/{batch}/packs" => vec![
            req(m, format!("/v1/products/{p}/batches/{BATCH}/packs"), json(json!({"serials": ["HUBPK9"]}))),
            req(m, format!("/v1/products/{p}/batches/{BATCH}/packs"), Body::Text("HUBPK8\n".into())),
        ],
        "/v1/products/{product_code}/batches/{batch}/recall" => vec![req(
            m,
            format!("/v1/products/{p}/batches/{BATCH}/recall"),
            json(json!({"reason": "authz walk", "markets": ["DE"]})),
        )],
        "/v1/products/{product_code}/withdraw" => vec![req(
            m,
            format!("/v1/products/{p}/withdraw"),
            json(json!({"reason": "authz walk", "markets": ["DE"]})),
        )],
        "/v1/products/{product_code}/batches/{batch}/packs/state" => vec![req(
            m,
            format!("/v1/products/{p}/batches/{BATCH}/packs/state"),
            json(json!({"state": "STOLEN", "serials": ["HUBPK1"]})),
        )],
        "/v1/uploads/{upload_id}" => vec![req(m, format!("/v1/uploads/{}", own.upload), Body::None)],
        // A serial never uploaded: the answer is 404 for the owner, without asking any market.
        "/v1/products/{product_code}/packs/{serial}" => {
            vec![req(m, format!("/v1/products/{p}/packs/NEVERUPLOADED"), Body::None)]
        }
        "/v1/alerts" => vec![req(m, "/v1/alerts", Body::None)],
        "/v1/alerts/{id}" => vec![req(m, format!("/v1/alerts/{}", own.alert), Body::None)],
        "/v1/alerts/{id}/status" => {
            vec![req(m, format!("/v1/alerts/{}/status", own.alert), json(json!({"status": "INVESTIGATING"})))]
        }
        "/v1/alerts/{id}/comments" => {
            vec![req(
                m,
                format!("/v1/alerts/{}/comments", own.alert),
                json(json!({"text": "checked the line"})),
            )]
        }
        "/v1/callback" => vec![req(m, "/v1/callback", json(json!({"url": "https://127.0.0.1:9/callback"})))],
        "/v1/incidents/{id}" => vec![req(m, "/v1/incidents/1", Body::None)],
        "/internal/v1/messages" => vec![req(m, rule.path, json(json!({"messages": []})))],
        // A product the hub does not know: answered at once, asking no market.
        "/internal/v1/intermarket" => vec![req(
            m,
            rule.path,
            json(
                json!({"market": "DE", "client_id": "de-pharmacy", "role": "PHARMACY", "location": "DE-PH-1",
                        "command": "verify", "client_trx_id": "authz-im", "scheme": "GTIN",
                        "product_code": "04150037528643", "serial": "S1", "batch": BATCH, "expiry": EXPIRY}),
            ),
        )],
        "/v1/return-codes"
        | "/status"
        | "/metrics"
        | "/health/live"
        | "/health/ready"
        | "/v1/openapi.json"
        | "/docs"
        | "/v1/status"
        | "/v1/incidents"
        | "/v1/incidents/feed.atom"
        | "/v1/incidents/feed.json" => {
            vec![req(m, rule.path, Body::None)]
        }
        "/ui" | "/ui/alerts" => vec![req(m, rule.path, Body::None)],
        "/ui/alerts/{id}" => vec![req(m, format!("/ui/alerts/{}", own.alert), Body::None)],
        "/ui/alerts/{id}/status" | "/ui/alerts/{id}/comments" => {
            vec![req(m, rule.path.replace("{id}", &own.alert), Body::None)]
        }
        other => panic!("no sample request for the hub route {m} {other}: add one to the authz suite"),
    }
}

/// The same request, about another market than the caller's.
fn other_market(mut r: Req) -> Req {
    if let Body::Json(v) = &mut r.body {
        v["market"] = json!("FR");
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hub_route_answers_each_caller_as_the_table_says() {
    let pki = Pki::new();
    let w = hub_world(&pki).await;
    let who = |name: &str, identity: Option<&Issued>, kind: Kind| Who {
        name: name.into(),
        http: pki.client(identity),
        token: None,
        kind,
    };
    let acme = who("OBP acme-pharma", Some(&pki.acme), Kind::Obp("acme-pharma"));
    let other = who("OBP other-obp", Some(&pki.other), Kind::Obp("other-obp"));
    let national = who("the national system of DE", Some(&pki.de), Kind::NationalCert);
    let callers = [
        who("no certificate", None, Kind::Nobody),
        Who {
            name: "a bearer token without a certificate".into(),
            http: pki.client(None),
            token: Some("not.a.token".into()),
            kind: Kind::Nobody,
        },
        who("the hub's certificate", Some(&pki.hub), Kind::HubCert),
    ];

    // Each OBP's product, batch, upload and an alert the national system of DE raised on it.
    let mut owned = Vec::new();
    for (obp, product, serial) in [(&acme, ACME_PRODUCT, "HUBPK1"), (&other, OTHER_PRODUCT, "HUBPK2")] {
        let own = Owned { product, upload: String::new(), alert: String::new() };
        for path in ["/v1/products/{product_code}", "/v1/products/{product_code}/batches/{batch}"] {
            let rule = authz::HUB.iter().find(|r| r.path == path).unwrap();
            let a = call(&w.url, obp, &hub_samples(rule, &own)[0]).await;
            assert_eq!(a.status, 200, "{}: {}", obp.name, a.text);
        }
        let path = format!("/v1/products/{product}/batches/{BATCH}/packs");
        let a = call(&w.url, obp, &req(&Method::POST, path, Body::Text(format!("{serial}\n")))).await;
        assert_eq!(a.status, 202, "{}: {}", obp.name, a.text);
        let upload = a.json["upload_id"].as_str().unwrap().to_owned();
        let alert = AlertView {
            id: format!("ALR-{product}"),
            code: "A3".into(),
            return_code: "NMVS_NC_PC_02".into(),
            market: "DE".into(),
            pack_market: None,
            product_code: product.into(),
            serial: "NOSUCH".into(),
            batch: BATCH.into(),
            location: "DE-PH-1".into(),
            created_at: "2026-12-01T10:00:00.000Z".into(),
            status: "OPEN".into(),
            classification: None,
            comment: None,
        };
        let delivery = Delivery {
            messages: vec![Envelope {
                message_id: format!("authz-alert-{product}"),
                origin: "DE".into(),
                ordering_key: product.into(),
                body: Message::Alert(AlertMsg { alert, owner: "someone".into() }),
            }],
        };
        let a = call(
            &w.url,
            &national,
            &req(
                &Method::POST,
                "/internal/v1/messages",
                Body::Json(serde_json::to_value(&delivery).unwrap()),
            ),
        )
        .await;
        assert_eq!(a.json["results"][0]["status"], "APPLIED", "{}", a.text);
        let list = call(&w.url, obp, &req(&Method::GET, "/v1/alerts", Body::None)).await;
        let alert =
            list.json["alerts"][0]["id"].as_str().unwrap_or_else(|| panic!("{}", list.text)).to_owned();
        owned.push(Owned { product, upload, alert });
    }
    let (acme_owns, other_owns) = (&owned[0], &owned[1]);

    let mut calls = 0;
    for rule in authz::HUB {
        // Each OBP on its own data; every other caller on acme's.
        for (obp, own) in [(&acme, acme_owns), (&other, other_owns)] {
            for sample in hub_samples(rule, own) {
                let what = format!("{} {} as {}", sample.method, sample.path, obp.name);
                check(&what, &call(&w.url, obp, &sample).await, &expected(rule, &obp.kind, &sample.path));
                calls += 1;
            }
        }
        for sample in hub_samples(rule, acme_owns) {
            for who in callers.iter().chain([&national]) {
                let what = format!("{} {} as {}", sample.method, sample.path, who.name);
                check(&what, &call(&w.url, who, &sample).await, &expected(rule, &who.kind, &sample.path));
                calls += 1;
            }
        }
        // Another owner's data: the other OBP on acme's, the national system of DE for FR.
        if let Some(owner) = rule.owner {
            let (intruder, sample) = match rule.caller {
                Caller::ObpCertificate => (&other, hub_samples(rule, acme_owns).remove(0)),
                Caller::NationalCertificate => {
                    (&national, other_market(hub_samples(rule, acme_owns).remove(0)))
                }
                c => panic!("no intruder for {c:?}"),
            };
            let what = format!("{} {} as {}, not the owner", sample.method, sample.path, intruder.name);
            let theirs = call(&w.url, intruder, &sample).await;
            match owner.other {
                Others::Refused(r) => {
                    check(&what, &theirs, &Expect::Refused(r.code.http_status(), r.code.as_str(), r.field));
                }
                Others::LeftOut => {
                    assert_eq!(theirs.status, 200, "{what}: {}", theirs.text);
                    assert!(!theirs.text.contains(&acme_owns.alert), "{what}: {}", theirs.text);
                    assert!(theirs.text.contains(&other_owns.alert), "{what}: its own alert is missing");
                }
            }
        }
    }
    assert!(calls > 80, "{calls} calls");

    // A certificate from a CA nobody trusts does not even get through the handshake.
    let rogue = pki.client(Some(&pki.rogue));
    let r = rogue.get(format!("{}/v1/alerts", w.url)).send().await;
    assert!(r.is_err(), "a rogue certificate got an answer: {:?}", r.map(|r| r.status()));

    w.server.shutdown(Duration::from_secs(1)).await;
    w.store.close();
}

// ---------------------------------------------------------------------------------------------
// The demonstration's admin route.

#[tokio::test]
async fn the_admin_clock_route_takes_only_the_admin_token() {
    use tower::ServiceExt;

    for rule in authz::ADMIN {
        assert_eq!(rule.caller, Caller::AdminToken, "{} {}", rule.method, rule.path);
        let clock = Arc::new(FakeClock::at(SystemClock.now()));
        let router = openmvs_http::admin::clock_router(clock, "the-admin-token");
        for (token, admitted) in [(None, false), (Some("wrong"), false), (Some("the-admin-token"), true)] {
            let mut b = axum::http::Request::builder()
                .method(rule.method.clone())
                .uri(rule.path)
                .header("content-type", "application/json");
            if let Some(t) = token {
                b = b.header("authorization", format!("Bearer {t}"));
            }
            let body = if rule.path == "/admin/v1/latency" {
                r#"{"requests": 2, "millis": 1}"#
            } else {
                r#"{"advance_seconds": 1}"#
            };
            let resp = router.clone().oneshot(b.body(axum::body::Body::from(body)).unwrap()).await.unwrap();
            let status = resp.status().as_u16();
            if admitted {
                assert_eq!(status, 200, "{token:?}");
            } else {
                assert_eq!(status, 401, "{token:?}");
            }
        }
    }
}
