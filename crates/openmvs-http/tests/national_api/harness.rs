//! The test harness: a national system on a fresh store, served over HTTPS on a free port, with a
//! fake clock, typed helpers to seed data through the hub interface, and clients that fetch their
//! own tokens.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use openmvs_core::guessing::GuessingPolicy;
use openmvs_core::ids::{Location, MarketCode, ProductCode, Serial};
use openmvs_core::pack::Policy;
use openmvs_core::roles::Role;
use openmvs_core::time::{Clock, Date, Timestamp};
use openmvs_http::limit::{Limiter, RateLimit};
use openmvs_http::login::{LoginGuard, LoginSettings};
use openmvs_http::shed::LoadShed;
use openmvs_http::{
    NationalState, Observability, ServeOptions, ServerHandle, TlsConfig, national_router, serve_with,
};
use openmvs_national::clock::FakeClock;
use openmvs_national::{BulkBackoff, HubLink, National, NationalConfig, SecretLogins};
use openmvs_store::{BoxFuture, Store};
use openmvs_store_mem::MemStore;
use openmvs_store_pg::{PgOptions, PgStore};
use openmvs_store_sqlite::{AuditSigner, Options, SqliteStore};
use openmvs_wire::hub::{
    BatchMsg, Delivery, DeliveryAck, Envelope, IntermarketAnswer, IntermarketRequest, Message, PacksMsg,
    ProductMsg, RecallMsg, WithdrawalMsg,
};
use reqwest::Method;
use reqwest::header::HeaderMap;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::faults::Faulty;

/// The market every test app serves.
pub const DE: &str = "DE";
/// The product most tests use.
pub const GTIN: &str = "09501101530003";
/// A second product (withdrawn in one test).
pub const GTIN2: &str = "05601234567892";
/// A valid product code that no test ever uploads.
pub const GTIN_UNKNOWN: &str = "04150037528643";
/// The batch of most packs.
pub const BATCH: &str = "ABC123";
/// Its expiry, as uploaded.
pub const EXPIRY: &str = "271231";
/// The name of every seeded product.
pub const PRODUCT_NAME: &str = "Paracetamol 500 mg tablets";
/// Where the fake clock starts: 2026-11-29T10:00:00Z.
pub const START: &str = "2026-11-29T10:00:00.000Z";

/// The start instant of the fake clock.
pub fn start() -> Timestamp {
    let day = Date::new(2026, 11, 29).expect("a real date");
    Timestamp::start_of(day).plus(Duration::from_secs(10 * 3600))
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn next() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A client transaction id never used before in this test binary.
pub fn trx() -> String {
    format!("trx-{}", next())
}

/// A serial never used before in this test binary: `PK` and the upper-case letters `A`-`X` only,
/// so that no scan of it looks like a swallowed AI or a Caps Lock accident, and no serial is
/// another's keyboard-layout swap (`Y` for `Z`), which would make an unknown serial a rescan.
pub fn fresh_serial() -> String {
    let mut n = next();
    let mut s = String::from("PK");
    loop {
        s.push(char::from(b'A' + (n % 24) as u8));
        n /= 24;
        if n == 0 {
            break;
        }
    }
    s
}

/// A directory of its own, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "openmvs-national-api-{}-{}-{nanos}",
            std::process::id(),
            next()
        ));
        std::fs::create_dir_all(&path).expect("create the test directory");
        TempDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed certificate for `localhost` and `127.0.0.1`, made once per test binary.
struct TestCert {
    cert_pem: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

fn test_cert() -> &'static TestCert {
    static CERT: OnceLock<TestCert> = OnceLock::new();
    CERT.get_or_init(|| {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("generate a certificate");
        TestCert {
            cert_pem: c.cert.pem(),
            cert_der: c.cert.der().to_vec(),
            key_der: c.signing_key.serialize_der(),
        }
    })
}

/// The test certificate in PEM, for clients of its own (the abuse suite's).
#[allow(dead_code)]
pub fn test_cert_pem() -> &'static str {
    &test_cert().cert_pem
}

fn tls_config(client_ca: Option<CertificateDer<'static>>) -> TlsConfig {
    let c = test_cert();
    TlsConfig {
        cert_chain: vec![CertificateDer::from(c.cert_der.clone())],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key_der.clone())),
        client_ca: client_ca.map(|ca| vec![ca]),
        crls: Vec::new(),
    }
}

/// An HTTPS client trusting the test certificate, presenting `identity` (certificate then key,
/// PEM) if given.
pub fn https_client(identity: Option<&[u8]>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(test_cert().cert_pem.as_bytes()).expect("the test certificate"),
        )
        .pool_idle_timeout(Duration::from_secs(90))
        .timeout(Duration::from_secs(60));
    if let Some(pem) = identity {
        b = b.identity(reqwest::Identity::from_pem(pem).expect("a certificate and key"));
    }
    b.build().expect("an HTTPS client")
}

/// A hub link that counts inter-market requests and knows no product in any other market.
#[derive(Default)]
pub struct CountingHub {
    /// Inter-market requests received.
    pub intermarket_calls: AtomicUsize,
}

impl HubLink for CountingHub {
    fn deliver(&self, _delivery: Delivery) -> BoxFuture<'_, Result<DeliveryAck, String>> {
        Box::pin(async { Err("the test hub takes no deliveries".to_owned()) })
    }

    fn intermarket(&self, _req: IntermarketRequest) -> BoxFuture<'_, Result<IntermarketAnswer, String>> {
        self.intermarket_calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(IntermarketAnswer { market: None, response: None, unreachable: Vec::new() }) })
    }
}

/// How to set up one app.
#[derive(Default)]
pub struct AppOptions {
    /// Per-client rate limit.
    pub rate: RateLimit,
    /// The market's rules.
    pub policy: Policy,
    /// When unknown serials and mismatches slow a client down and refuse it.
    pub guessing: GuessingPolicy,
    /// The hub link; none by default.
    pub hub: Option<Arc<dyn HubLink>>,
    /// A PostgreSQL database and schema to keep the data in, shared by every app given the same
    /// one (nodes of one national system). By default a fresh embedded store, a fresh schema
    /// when `OPENMVS_TEST_STORAGE=postgres`, or a fresh in-memory store when it is `memory`.
    pub postgres: Option<(String, String)>,
    /// How long the node holds outbox messages and bulk jobs (default 30 s).
    pub lease: Option<Duration>,
    /// The server's connection limits (the defaults of production when not given).
    pub serve: Option<ServeOptions>,
    /// The token endpoint's limits.
    pub login: Option<LoginSettings>,
    /// A fixed bound on requests in flight, never lowered by the governor.
    pub admission: Option<usize>,
    /// Put the service on a store whose commits can be made to fail ([`TestApp::faults`]).
    pub faulty: bool,
    /// Keep the embedded store's files in this directory instead of a fresh temporary one (the
    /// app then uses the embedded store whatever `OPENMVS_TEST_STORAGE` says).
    pub data_dir: Option<PathBuf>,
    /// The CA whose client certificates the server verifies (none asked for by default).
    pub client_ca: Option<CertificateDer<'static>>,
    /// The NMVS SOAP logins (always enabled here).
    pub soap: Option<SecretLogins>,
}

/// The store of a test app, of either engine.
pub enum TestStore {
    /// The embedded engine.
    Sqlite(Arc<SqliteStore>),
    /// The PostgreSQL engine.
    Postgres(Arc<PgStore>),
    /// The in-memory engine.
    Memory(Arc<MemStore>),
}

impl TestStore {
    /// Commits what is queued and stops the writer.
    pub async fn close(&self) {
        match self {
            TestStore::Sqlite(s) => s.close(),
            TestStore::Postgres(s) => s.close().await,
            TestStore::Memory(s) => s.close(),
        }
    }

    fn shared(&self) -> Arc<dyn Store> {
        match self {
            TestStore::Sqlite(s) => s.clone(),
            TestStore::Postgres(s) => s.clone(),
            TestStore::Memory(s) => s.clone(),
        }
    }
}

impl std::ops::Deref for TestStore {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        match self {
            TestStore::Sqlite(s) => s.as_ref(),
            TestStore::Postgres(s) => s.as_ref(),
            TestStore::Memory(s) => s.as_ref(),
        }
    }
}

/// The engine `OPENMVS_TEST_STORAGE` names: `postgres`, `memory`, or none (the embedded one).
pub fn storage() -> Option<String> {
    std::env::var("OPENMVS_TEST_STORAGE").ok()
}

/// A fresh PostgreSQL schema for apps to share, or `None` (the test is skipped, saying so) when
/// `OPENMVS_TEST_DATABASE_URL` is not set.
pub fn shared_postgres(what: &str) -> Option<(String, String)> {
    openmvs_store_pg::testing::fresh_schema("napi", what)
}

/// The audit signing key of every test app (the nodes of one system share it).
pub fn audit_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7; 32])
}

/// A running national system.
pub struct TestApp {
    /// `https://127.0.0.1:PORT`.
    pub base: String,
    /// An HTTPS client trusting the test certificate.
    pub http: reqwest::Client,
    /// The service behind the routes.
    pub national: Arc<National>,
    /// Its store.
    pub store: TestStore,
    /// The clock everything reads.
    pub clock: Arc<FakeClock>,
    /// Metrics, SLA figures, readiness.
    pub obs: Arc<Observability>,
    /// The failure points of the store, with [`AppOptions::faulty`].
    pub faults: Option<Arc<Faulty>>,
    /// The server.
    #[allow(dead_code)]
    pub server: ServerHandle,
    stop_worker: watch::Sender<bool>,
    _dir: TempDir,
}

impl TestApp {
    /// One round of this node's bulk worker; whether it took a job.
    pub async fn bulk_round(&self) -> bool {
        bulk_round(&self.national, &self.stop_worker).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.stop_worker.send(true);
        // A PostgreSQL store's writer is a task of the test's runtime, which ends with it.
        if let TestStore::Sqlite(s) = &self.store {
            s.close();
        }
    }
}

/// A national system for DE with the default options.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

/// A national system for DE.
pub async fn spawn_app_with(opts: AppOptions) -> TestApp {
    let dir = TempDir::new();
    let clock = Arc::new(FakeClock::at(start()));
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let postgres = opts.postgres.clone().or_else(|| {
        // A data directory of its own is for the embedded store's files.
        let wanted = opts.data_dir.is_none() && storage().as_deref() == Some("postgres");
        wanted.then(|| {
            shared_postgres("a PostgreSQL app").expect("OPENMVS_TEST_STORAGE=postgres needs a database")
        })
    });
    let store = match postgres {
        Some((url, schema)) => TestStore::Postgres(Arc::new(
            PgStore::open(PgOptions {
                url,
                schema: Some(schema),
                signing_key: audit_key(),
                clock: dyn_clock.clone(),
                on_group: None,
                migrate: true,
                pool_size: 4,
                commit_timeout: Duration::from_secs(10),
                checkpoints: openmvs_store::CheckpointOptions::default(),
            })
            .expect("open the store"),
        )),
        None if opts.data_dir.is_none() && storage().as_deref() == Some("memory") => {
            TestStore::Memory(Arc::new(MemStore::new(openmvs_store_mem::Options {
                signing_key: audit_key(),
                clock: dyn_clock.clone(),
                checkpoints: openmvs_store::CheckpointOptions::default(),
            })))
        }
        None => TestStore::Sqlite(Arc::new(
            SqliteStore::open(Options {
                path: opts.data_dir.as_deref().unwrap_or(&dir.0).join("national.db"),
                signer: Arc::new(AuditSigner { key: audit_key() }),
                clock: dyn_clock.clone(),
                on_group: None,
                checkpoints: openmvs_store::CheckpointOptions::default(),
            })
            .expect("open the store"),
        )),
    };
    let mut config = NationalConfig::new(MarketCode::new(DE).expect("DE is a market"));
    config.policy = opts.policy;
    config.guessing = opts.guessing;
    if let Some(soap) = opts.soap {
        config.secret_logins = soap;
    }
    config.secret_logins.enabled = true;
    if let Some(lease) = opts.lease {
        config.lease = lease;
    }
    let faults = opts.faulty.then(|| Arc::new(Faulty::new(store.shared())));
    let shared: Arc<dyn Store> = match &faults {
        Some(f) => f.clone(),
        None => store.shared(),
    };
    let national = Arc::new(
        National::new(shared, dyn_clock.clone(), config, opts.hub).await.expect("start the service"),
    );
    let mut o = Observability::new(dyn_clock);
    if let Some(l) = opts.login {
        o.login = Arc::new(LoginGuard::new(l));
    }
    if let Some(max) = opts.admission {
        o.load = Arc::new(LoadShed::fixed(max));
    }
    let obs = Arc::new(o);
    // A fixed admission bound: the governor would lower it whenever the machine is busy, and the
    // tests read the bound and count refusals.
    obs.load.set_governor(false);
    obs.set_ready(true);
    let limiter = Arc::new(Limiter::new(opts.rate));
    let router = national_router(NationalState { national: national.clone(), obs: obs.clone(), limiter });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a free port");
    let mut serve_opts = opts.serve.unwrap_or_default();
    serve_opts.stats = obs.connections.clone();
    let server = serve_with(listener, router, Some(tls_config(opts.client_ca)), serve_opts).expect("serve");
    let (stop_worker, rx) = watch::channel(false);
    // As the server does: clients cut off and keys revoked on other nodes are seen within seconds.
    tokio::spawn(national.clone().run_security_refresh(openmvs_national::SECURITY_REFRESH, rx.clone()));
    // The bulk worker runs when a test drives it ([`TestApp::bulk_round`], [`Client::wait_bulk`]).
    drop(rx);
    let http = https_client(None);
    TestApp {
        base: format!("https://127.0.0.1:{}", server.local_addr().port()),
        http,
        national,
        store,
        clock,
        obs,
        faults,
        server,
        stop_worker,
        _dir: dir,
    }
}

/// One round of `national`'s bulk worker, stopped by `stop`; whether it took a job.
async fn bulk_round(national: &National, stop: &watch::Sender<bool>) -> bool {
    national.bulk_round(&mut BulkBackoff::default(), &mut stop.subscribe()).await
}

/// A request body.
pub enum Body {
    /// No body.
    Empty,
    /// A JSON value.
    Json(Value),
    /// Bytes sent as `application/json`, whatever they are.
    Raw(Vec<u8>),
}

/// An HTTP answer, with its body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Resp {
    /// The status.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as text.
    pub text: String,
    /// The body as JSON; `Null` when it is not JSON.
    pub json: Value,
}

impl Resp {
    /// A header as text; empty when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// Asserts an HTTP error of the contract: its status, its return code, a message, and a detail
    /// naming `field` when one is given. Returns the details.
    pub fn expect_error(&self, status: u16, code: &str, field: Option<&str>) -> &Vec<Value> {
        assert_eq!((self.status, self.json["return_code"].as_str()), (status, Some(code)), "{}", self.text);
        assert!(self.json["message"].as_str().is_some_and(|m| !m.is_empty()), "message: {}", self.text);
        let details = self.json["details"].as_array().unwrap_or_else(|| panic!("details: {}", self.text));
        if let Some(f) = field {
            assert!(details.iter().any(|d| d["field"] == f), "no detail names '{f}': {}", self.text);
        }
        details
    }
}

/// How a request is sent: retried while refused for load (as a real client does), or once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tries {
    /// Sent again after a 503 or 429 with `Retry-After` (see `retry`).
    Retry,
    /// Sent once: the test is about the refusal itself.
    Once,
}

/// Sends `rb` as `tries` says; checks that the answer carries an `x-request-id`.
async fn send_request(rb: reqwest::RequestBuilder, path: &str, tries: Tries) -> Resp {
    let r = match tries {
        Tries::Retry => crate::retry::send(rb).await,
        Tries::Once => rb.send().await,
    };
    into_resp(path, r.unwrap_or_else(|e| panic!("{path}: {e}"))).await
}

fn with_body(rb: reqwest::RequestBuilder, body: Body) -> reqwest::RequestBuilder {
    match body {
        Body::Empty => rb,
        Body::Json(v) => rb.json(&v),
        Body::Raw(bytes) => rb.header("content-type", "application/json").body(bytes),
    }
}

impl TestApp {
    /// Sends one request, again while it is refused for load; checks that the answer carries an
    /// `x-request-id`.
    pub async fn send(&self, method: Method, path: &str, token: Option<&str>, body: Body) -> Resp {
        self.send_with(Tries::Retry, method, path, token, body).await
    }

    /// Sends one request as `tries` says.
    pub async fn send_with(
        &self,
        tries: Tries,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Body,
    ) -> Resp {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        send_request(with_body(rb, body), path, tries).await
    }

    /// A GET without a token.
    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, None, Body::Empty).await
    }

    /// Moves the fake clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Moves the fake clock forward by whole hours.
    pub fn advance_hours(&self, hours: u64) {
        self.advance(Duration::from_secs(hours * 3600));
    }

    /// Creates a client of `role` at `location` and fetches its first token over the API.
    pub async fn client(&self, role: Role, location: &str) -> Client {
        let created = self
            .national
            .create_client(role, Location::new(location).expect("a valid location"), "test client")
            .await
            .expect("create a client");
        let c = Client {
            national: self.national.clone(),
            stop_worker: self.stop_worker.clone(),
            app_base: self.base.clone(),
            http: self.http.clone(),
            clock: self.clock.clone(),
            client_id: created.client_id,
            secret: created.client_secret,
            token: Mutex::new((String::new(), i64::MIN)),
        };
        c.refresh().await;
        c
    }

    async fn deliver(&self, body: Message) {
        let env = Envelope {
            message_id: format!("hub-msg-{}", next()),
            origin: "hub".into(),
            ordering_key: "test".into(),
            body,
        };
        let ack = self.national.apply_delivery(&Delivery { messages: vec![env] }).await.expect("delivery");
        assert_eq!(ack.results[0].status, "APPLIED", "{:?}", ack.results[0]);
    }

    /// Uploads product master data.
    pub async fn seed_product(&self, product_code: &str) {
        self.deliver(Message::Product(ProductMsg {
            scheme: "GTIN".into(),
            product_code: product_code.into(),
            name: PRODUCT_NAME.into(),
            common_name: "paracetamol".into(),
            form: "tablet".into(),
            strength: "500 mg".into(),
            pack_type: "blister".into(),
            pack_size: "20".into(),
            owner: "OBP-1".into(),
            version: 1,
        }))
        .await;
    }

    /// Uploads a batch of a product for `markets`.
    pub async fn seed_batch(&self, product_code: &str, batch: &str, expiry: &str, markets: &[&str]) {
        self.deliver(Message::Batch(BatchMsg {
            scheme: "GTIN".into(),
            product_code: product_code.into(),
            batch: batch.into(),
            expiry: expiry.into(),
            markets: markets.iter().map(|m| (*m).to_owned()).collect(),
        }))
        .await;
    }

    /// Uploads serials of a batch.
    pub async fn seed_packs(&self, product_code: &str, batch: &str, serials: &[String]) {
        self.deliver(Message::Packs(PacksMsg {
            scheme: "GTIN".into(),
            product_code: product_code.into(),
            batch: batch.into(),
            serials: serials.to_vec(),
        }))
        .await;
    }

    /// Recalls a batch in this market.
    pub async fn recall(&self, product_code: &str, batch: &str) {
        self.deliver(Message::Recall(RecallMsg {
            scheme: "GTIN".into(),
            product_code: product_code.into(),
            batch: batch.into(),
            reason: "test recall".into(),
        }))
        .await;
    }

    /// Withdraws a product from this market.
    pub async fn withdraw(&self, product_code: &str) {
        self.deliver(Message::Withdrawal(WithdrawalMsg {
            scheme: "GTIN".into(),
            product_code: product_code.into(),
            reason: "test withdrawal".into(),
        }))
        .await;
    }

    /// Uploads the standard product [`GTIN`] and its batch [`BATCH`] / [`EXPIRY`].
    pub async fn seed_standard(&self) {
        self.seed_product(GTIN).await;
        self.seed_batch(GTIN, BATCH, EXPIRY, &[DE]).await;
    }

    /// `n` new packs of a batch, uploaded.
    pub async fn packs_of(&self, product_code: &str, batch: &str, expiry: &str, n: usize) -> Vec<Pack> {
        let packs: Vec<Pack> = (0..n)
            .map(|_| Pack {
                product_code: product_code.into(),
                batch: batch.into(),
                expiry: expiry.into(),
                serial: fresh_serial(),
            })
            .collect();
        let serials: Vec<String> = packs.iter().map(|p| p.serial.clone()).collect();
        self.seed_packs(product_code, batch, &serials).await;
        packs
    }

    /// `n` new packs of the standard batch (which must be seeded).
    pub async fn packs(&self, n: usize) -> Vec<Pack> {
        self.packs_of(GTIN, BATCH, EXPIRY, n).await
    }

    /// One new pack of the standard batch.
    pub async fn pack(&self) -> Pack {
        self.packs(1).await.remove(0)
    }

    /// The state of a pack as stored, read past the API.
    pub async fn stored_state(&self, p: &Pack) -> String {
        let pc = ProductCode::gtin(&p.product_code).expect("a GTIN");
        let serial = Serial::new(&p.serial).expect("a serial");
        let stored = self.store.pack(&pc, &serial).await.expect("read the pack").expect("the pack exists");
        stored.pack.state.to_string()
    }
}

async fn into_resp(what: &str, r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_else(|e| panic!("{what}: reading the body: {e}"));
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    let id = headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(!id.is_empty(), "{what}: answer {status} without x-request-id");
    Resp { status, headers, text, json }
}

/// One pack identifier.
#[derive(Debug, Clone)]
pub struct Pack {
    /// GTIN.
    pub product_code: String,
    /// Batch.
    pub batch: String,
    /// Expiry as uploaded.
    pub expiry: String,
    /// Serial.
    pub serial: String,
}

impl Pack {
    /// The request body with every field given and a new `client_trx_id`.
    pub fn req(&self) -> Value {
        json!({
            "client_trx_id": trx(),
            "scheme": "GTIN",
            "product_code": self.product_code,
            "serial": self.serial,
            "batch": self.batch,
            "expiry": self.expiry,
        })
    }

    /// [`Pack::req`] with some fields replaced.
    pub fn req_with(&self, changes: &[(&str, &str)]) -> Value {
        let mut v = self.req();
        for (k, val) in changes {
            v[*k] = json!(val);
        }
        v
    }

    /// The pack as a scanner reads it: GS1 element string with the AIM identifier, serial last.
    pub fn scan(&self) -> String {
        format!("]d201{}17{}10{}\u{1d}21{}", self.product_code, self.expiry, self.batch, self.serial)
    }

    /// A request body carrying the raw scan.
    pub fn scan_req(&self) -> Value {
        json!({"client_trx_id": trx(), "scan": self.scan()})
    }

    /// A row of a mixed bulk request.
    pub fn row(&self, operation: &str) -> Value {
        json!({"operation": operation, "scheme": "GTIN", "product_code": self.product_code,
               "serial": self.serial, "batch": self.batch, "expiry": self.expiry})
    }

    /// Its audit path.
    pub fn audit_path(&self) -> String {
        format!("/v1/audit/packs/GTIN/{}/{}", self.product_code, self.serial)
    }
}

/// An API client: an end user, the NMVO or the NCA.
pub struct Client {
    /// The service of its node, whose bulk worker [`Client::wait_bulk`] drives.
    national: Arc<National>,
    stop_worker: watch::Sender<bool>,
    app_base: String,
    http: reqwest::Client,
    clock: Arc<FakeClock>,
    /// Its client id.
    pub client_id: String,
    secret: String,
    /// The current token and the fake-clock instant it was issued at.
    token: Mutex<(String, i64)>,
}

/// Tokens are fetched again once this old on the fake clock, well before they expire.
const TOKEN_REFRESH_MILLIS: i64 = 50 * 60 * 1000;

impl Client {
    /// Fetches a token over `POST /oauth/token`.
    pub async fn refresh(&self) {
        let rb = self.http.post(format!("{}/oauth/token", self.app_base)).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.secret.as_str()),
        ]);
        let r = send_request(rb, "/oauth/token", Tries::Retry).await;
        assert_eq!(r.status, 200, "token: {}", r.text);
        assert_eq!(r.json["token_type"], "Bearer");
        assert_eq!(r.json["expires_in"], 3600);
        let token = r.json["access_token"].as_str().expect("access_token").to_owned();
        *self.token.lock().expect("token lock") = (token, self.clock.now().unix_millis());
    }

    /// Its secret.
    #[allow(dead_code)]
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The token as it is now, without refreshing it.
    pub fn current_token(&self) -> String {
        self.token.lock().expect("token lock").0.clone()
    }

    /// A valid token, fetched again when the fake clock has moved far.
    pub async fn token(&self) -> String {
        let issued = self.token.lock().expect("token lock").1;
        if self.clock.now().unix_millis().saturating_sub(issued) > TOKEN_REFRESH_MILLIS {
            self.refresh().await;
        }
        self.current_token()
    }

    /// Sends a request with this client's token, again while it is refused for load.
    pub async fn send(&self, method: Method, path: &str, body: Body) -> Resp {
        self.send_with(Tries::Retry, method, path, body).await
    }

    /// Sends a request with this client's token as `tries` says.
    pub async fn send_with(&self, tries: Tries, method: Method, path: &str, body: Body) -> Resp {
        let token = self.token().await;
        let rb = self.http.request(method, format!("{}{path}", self.app_base)).bearer_auth(token);
        send_request(with_body(rb, body), path, tries).await
    }

    /// `POST /v1/packs/{op}` sent once, even if refused for load: for a test about the refusal.
    pub async fn op_once(&self, op: &str, body: &Value) -> Resp {
        self.send_with(Tries::Once, Method::POST, &format!("/v1/packs/{op}"), Body::Json(body.clone())).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(Method::POST, path, Body::Json(body.clone())).await
    }

    /// `POST path` with raw bytes as the body.
    pub async fn post_raw(&self, path: &str, body: impl Into<Vec<u8>>) -> Resp {
        self.send(Method::POST, path, Body::Raw(body.into())).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, Body::Empty).await
    }

    /// `POST /v1/packs/{op}`.
    pub async fn op(&self, op: &str, body: &Value) -> Resp {
        self.post(&format!("/v1/packs/{op}"), body).await
    }

    /// `POST /v1/packs/{op}/undo`.
    pub async fn undo(&self, op: &str, body: &Value) -> Resp {
        self.post(&format!("/v1/packs/{op}/undo"), body).await
    }

    /// `POST /v1/packs/verify`.
    pub async fn verify(&self, body: &Value) -> Resp {
        self.op("verify", body).await
    }

    /// Runs a command in the bulk spelling (`verify`, `supply`, `supply-undo`...).
    pub async fn command(&self, command: &str, body: &Value) -> Resp {
        match command.strip_suffix("-undo") {
            Some(op) => self.undo(op, body).await,
            None => self.op(command, body).await,
        }
    }

    /// The alerts this client may see, every page followed (`limit` per page).
    pub async fn all_alerts(&self, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let mut path = format!("/v1/alerts?limit=100{query}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let r = self.get(&path).await;
            assert_eq!(r.status, 200, "{}", r.text);
            out.extend(r.json["alerts"].as_array().expect("alerts").iter().cloned());
            match r.json["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
        panic!("more than 100 pages of alerts");
    }

    /// Submits a bulk and waits (bounded) until it is DONE; returns the final status body.
    pub async fn bulk_until_done(&self, body: &Value) -> Value {
        let r = self.post("/v1/bulk", body).await;
        assert_eq!(r.status, 202, "{}", r.text);
        let id = r.json["bulk_id"].as_str().expect("bulk_id").to_owned();
        self.wait_bulk(&id).await
    }

    /// Runs rounds of its node's bulk worker until `GET /v1/bulk/{id}` says DONE (at most ten).
    pub async fn wait_bulk(&self, id: &str) -> Value {
        for _ in 0..10 {
            let r = self.get(&format!("/v1/bulk/{id}")).await;
            assert_eq!(r.status, 200, "{}", r.text);
            if r.json["status"] == "DONE" {
                return r.json;
            }
            assert!(matches!(r.json["status"].as_str(), Some("PENDING" | "RUNNING")), "{}", r.text);
            bulk_round(&self.national, &self.stop_worker).await;
        }
        panic!("bulk {id} not DONE after ten rounds of the bulk worker");
    }
}

/// The return codes a processed request may carry, with their level and alert: api.md's table,
/// plus the two codes this implementation adds (`NMVS_INFO_PCK_INACTIVE`, `NMVS_TE_BLK_01`).
pub const OUTCOMES: &[(&str, u8, Option<&str>)] = &[
    ("NMVS_SUCCESS", 1, None),
    ("NMVS_NC_PC_01", 3, None),
    ("NMVS_NC_PC_02", 5, Some("A3")),
    ("NMVS_FE_LOT_03", 5, Some("A2")),
    ("NMVS_FE_LOT_13", 5, Some("A68")),
    ("NMVS_FE_LOT_12", 5, Some("A52")),
    ("NMVS_NC_PCK_22", 5, Some("A24")),
    ("NMVS_NC_PCK_23", 3, None),
    ("NMVS_NC_PCK_06", 5, Some("A24")),
    ("NMVS_NC_PCK_20", 5, Some("A24")),
    ("NMVS_NC_PCK_21", 5, Some("A24")),
    ("NMVS_NC_PCK_02", 4, None),
    ("NMVS_FE_LOT_01", 4, None),
    ("NMVS_FE_LOT_08", 4, None),
    ("NMVS_FE_SCN_01", 4, None),
    ("NMVS_INFO_PCK_INACTIVE", 2, None),
];

/// Checks a single-pack answer against the contract: HTTP 200, the return code with its level,
/// `accepted`, an alert exactly when the level is 5 (with an id and the table's code), the pack's
/// state, reasons and dispensability (or no pack), the product (absent only for an unknown
/// product code) and `intermarket: false`.
pub fn check(r: &Resp, code: &str, accepted: bool, state: Option<&str>, reasons: &[&str]) {
    let ctx = &r.text;
    assert_eq!(r.status, 200, "{ctx}");
    let &(_, level, alert) =
        OUTCOMES.iter().find(|(c, _, _)| *c == code).unwrap_or_else(|| panic!("{code} is not an outcome"));
    let b = &r.json;
    assert_eq!(b["return_code"], code, "{ctx}");
    assert_eq!(b["level"], level, "{ctx}");
    assert_eq!(b["accepted"], accepted, "{ctx}");
    assert!(b["message"].as_str().is_some_and(|m| !m.is_empty()), "{ctx}");
    assert!(b["trx_id"].as_str().is_some_and(|m| !m.is_empty()), "{ctx}");
    match alert {
        Some(a) => {
            assert_eq!(b["alert"]["code"], a, "{ctx}");
            assert!(b["alert"]["id"].as_str().is_some_and(|id| !id.is_empty()), "{ctx}");
        }
        None => assert!(b["alert"].is_null(), "{ctx}"),
    }
    match state {
        Some(s) => {
            assert_eq!(b["pack"]["state"], s, "{ctx}");
            assert_eq!(b["pack"]["reasons"], json!(reasons), "{ctx}");
            assert_eq!(b["pack"]["dispensable"], s == "ACTIVE" && reasons.is_empty(), "{ctx}");
        }
        None => assert!(b["pack"].is_null(), "{ctx}"),
    }
    if code == "NMVS_NC_PC_01" {
        assert!(b["product"].is_null(), "{ctx}");
    } else {
        assert_eq!(b["product"]["name"], PRODUCT_NAME, "{ctx}");
    }
    assert_eq!(b["intermarket"], false, "{ctx}");
    assert!(b["warnings"].is_array(), "{ctx}");
}

/// The id of the alert an answer raised.
pub fn alert_id(r: &Resp) -> String {
    r.json["alert"]["id"].as_str().unwrap_or_else(|| panic!("no alert: {}", r.text)).to_owned()
}
