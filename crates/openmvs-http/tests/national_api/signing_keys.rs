//! A node that cannot read its token-signing keys (its key table fails: the store wrapper's
//! failure point) issues no token, at once and with `Retry-After`, and keeps accepting the tokens
//! it issued until they expire, validated from the keys it holds in memory; a pharmacy on the
//! typed client keeps working on its token for the window the client's renewal point leaves
//! (half of the token's life), and once the keys can be read again it renews. On every engine
//! (`OPENMVS_TEST_STORAGE`), and on two nodes of one PostgreSQL schema when a database is given.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openmvs_auth::{LEEWAY_SECS, TOKEN_LIFETIME_SECS};
use openmvs_client::{EndUserClient, EndUserConfig, PackInput, Sleep, Timer};
use openmvs_core::ids::Location;
use openmvs_core::roles::Role;
use openmvs_core::time::{Clock, Timestamp};
use openmvs_national::NewClient;
use openmvs_national::clock::FakeClock;
use reqwest::Method;

use crate::harness::*;

/// The typed client's timer on the app's fake clock: the client reads the time the server
/// reads, and its waits (a `Retry-After`, a backoff) are recorded and return at once without
/// moving it: the test alone moves time.
struct AppTimer {
    clock: Arc<FakeClock>,
    origin: Instant,
    start: Timestamp,
    waits: Mutex<Vec<Duration>>,
}

impl AppTimer {
    fn on(clock: &Arc<FakeClock>) -> Arc<AppTimer> {
        Arc::new(AppTimer {
            clock: clock.clone(),
            origin: Instant::now(),
            start: clock.now(),
            waits: Mutex::new(Vec::new()),
        })
    }

    fn waits(&self) -> Vec<Duration> {
        self.waits.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Timer for AppTimer {
    fn now(&self) -> Instant {
        let moved = self.clock.now().unix_millis() - self.start.unix_millis();
        self.origin + Duration::from_millis(u64::try_from(moved).expect("the fake clock only moves on"))
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        self.waits.lock().unwrap_or_else(|p| p.into_inner()).push(duration);
        Box::pin(std::future::ready(()))
    }
}

fn secs(n: i64) -> Duration {
    Duration::from_secs(u64::try_from(n).expect("a positive number of seconds"))
}

async fn pharmacy(app: &TestApp, location: &str) -> NewClient {
    app.national
        .create_client(Role::Pharmacy, Location::new(location).expect("a location"), "a pharmacy")
        .await
        .expect("create a client")
}

fn typed_client(app: &TestApp, c: &NewClient, timer: Arc<AppTimer>) -> EndUserClient {
    let config = EndUserConfig::new(&app.base, &c.client_id, &c.client_secret)
        .with_ca_pem(test_cert_pem().as_bytes().to_vec());
    EndUserClient::with_timer(config, timer).expect("a client")
}

fn input(p: &Pack) -> PackInput {
    PackInput::gtin(&p.product_code, &p.serial, &p.batch, &p.expiry)
}

/// `POST /oauth/token` for `id` and `secret`, sent once.
async fn login(app: &TestApp, id: &str, secret: &str) -> Resp {
    let form = format!("grant_type=client_credentials&client_id={id}&client_secret={secret}");
    let r = app
        .http
        .post(format!("{}/oauth/token", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("a token request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.expect("the body");
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    Resp { status, headers, text, json }
}

/// A token request answered by a node that issues none: 503, `NMVS_TI_UN_01` naming the keys,
/// and the wait.
fn expect_no_token(r: &Resp) {
    r.expect_error(503, "NMVS_TI_UN_01", Some(openmvs_national::SIGNING_KEYS_FIELD));
    let wait = openmvs_national::TOKEN_RETRY_AFTER.as_secs().to_string();
    assert_eq!(r.header("retry-after"), wait, "{}", r.text);
}

async fn gauge(app: &TestApp, name: &str) -> String {
    let text = app.get("/metrics").await.text;
    text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or("").to_owned()
}

async fn verify_with(app: &TestApp, token: &str, p: &Pack) -> Resp {
    app.send(Method::POST, "/v1/packs/verify", Some(token), Body::Json(p.req())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pharmacy_keeps_working_on_its_token_while_the_signing_keys_cannot_be_read_until_it_expires() {
    let app = spawn_app_with(AppOptions { faulty: true, ..AppOptions::default() }).await;
    app.seed_standard().await;
    let packs = app.packs(8).await;
    let creds = pharmacy(&app, "pharmacy-1").await;
    let timer = AppTimer::on(&app.clock);
    let client = typed_client(&app, &creds, timer.clone());
    let lifetime = secs(TOKEN_LIFETIME_SECS);
    let renewal = openmvs_client::renew_after(lifetime);
    assert_eq!(renewal, lifetime / 2, "the documented renewal point");

    assert_eq!(client.verify(&input(&packs[0])).await.expect("verify").return_code, "NMVS_SUCCESS");
    let first = client.access_token().await.expect("the token");
    assert_eq!(gauge(&app, "openmvs_token_issuing").await, "openmvs_token_issuing 1");

    // The key table fails just as the pharmacy's renewal comes due: the worst moment, which
    // leaves it the shortest window (the lifetime minus the renewal point).
    app.advance(renewal - Duration::from_secs(1));
    let faults = app.faults.as_ref().expect("a faulty store");
    faults.fail_keys.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(app.national.refresh_security().await.is_err(), "the keys cannot be read");
    expect_no_token(&login(&app, &creds.client_id, &creds.client_secret).await);
    // Refused before any secret is checked: a wrong secret gets the same answer, not a 401, and
    // counts as no failed login.
    expect_no_token(&login(&app, &creds.client_id, "not-the-secret").await);
    assert_eq!(gauge(&app, "openmvs_token_issuing").await, "openmvs_token_issuing 0");
    assert_eq!(app.get("/health/ready").await.status, 200, "the node serves the tokens it issued");

    app.advance(Duration::from_secs(1));
    let supplied = client.supply(&input(&packs[1])).await.expect("supply on the held token");
    assert_eq!(supplied.return_code, "NMVS_SUCCESS");
    assert_eq!(client.access_token().await.expect("the token"), first, "the renewal failed: same token");
    assert!(timer.waits().is_empty(), "a failed renewal is not waited on: {:?}", timer.waits());

    // Renewal is tried again after each Retry-After, and fails each time; the work goes on.
    let retry_after = openmvs_national::TOKEN_RETRY_AFTER;
    for (i, p) in packs[2..5].iter().enumerate() {
        app.advance(retry_after);
        assert_eq!(client.verify(&input(p)).await.expect("verify").return_code, "NMVS_SUCCESS", "{i}");
    }
    // Just before the token expires it still works; the server's leeway accepts it a little
    // longer, which the client does not count on.
    let now = renewal + retry_after * 3;
    app.advance(lifetime - Duration::from_secs(1) - now);
    assert_eq!(client.supply(&input(&packs[5])).await.expect("supply").return_code, "NMVS_SUCCESS");
    assert_eq!(client.access_token().await.expect("the token"), first);
    app.advance(secs(LEEWAY_SECS));
    let late = verify_with(&app, &first, &packs[6]).await;
    assert_eq!(late.status, 200, "within the leeway: {}", late.text);

    // Past expiry: the token is refused, and no new one is issued.
    app.advance(Duration::from_secs(1));
    verify_with(&app, &first, &packs[6]).await.expect_error(401, "NMVS_FE_AU_01", Some("authorization"));
    let err = client.verify(&input(&packs[6])).await.expect_err("no valid token, none issued");
    assert_eq!((err.status(), err.return_code()), (Some(503), Some("NMVS_TI_UN_01")), "{err}");
    assert!(err.is_temporary(), "a client keeps the request for later: {err}");
    let waited = timer.waits();
    assert!(!waited.is_empty() && waited.iter().all(|w| *w == retry_after), "{waited:?}");

    // The keys can be read again: tokens are issued again, and the pharmacy renews.
    faults.fail_keys.store(false, std::sync::atomic::Ordering::SeqCst);
    app.national.refresh_security().await.expect("the keys can be read");
    assert_eq!(gauge(&app, "openmvs_token_issuing").await, "openmvs_token_issuing 1");
    // The client keeps to the refused login's Retry-After before it asks for a token again.
    app.advance(retry_after);
    assert_eq!(client.verify(&input(&packs[7])).await.expect("verify").return_code, "NMVS_SUCCESS");
    assert_ne!(client.access_token().await.expect("the token"), first, "a new token");
    assert_eq!(app.stored_state(&packs[1]).await, "SUPPLIED");
    assert_eq!(app.stored_state(&packs[5]).await, "SUPPLIED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_look_for_an_unknown_key_also_stops_the_issuing_until_a_read_of_the_keys_works() {
    let app = spawn_app_with(AppOptions { faulty: true, ..AppOptions::default() }).await;
    let creds = pharmacy(&app, "pharmacy-2").await;
    let faults = app.faults.as_ref().expect("a faulty store");
    let before = login(&app, &creds.client_id, &creds.client_secret).await;
    assert_eq!(before.status, 200, "{}", before.text);

    // A token that names a key the node does not know makes it look in the key table: a read
    // that fails there stops the issuing too, and refuses that token only.
    faults.fail_keys.store(true, std::sync::atomic::Ordering::SeqCst);
    let other = openmvs_auth::KeyRing::new(openmvs_auth::SigningKeyPair::generate());
    let now = app.clock.now().unix_millis() / 1000;
    let forged = other.issue(&openmvs_auth::Claims::new(&creds.client_id, "PHARMACY", DE, "pharmacy-2", now));
    let r = app.send(Method::GET, "/v1/alerts", Some(&forged), Body::Empty).await;
    r.expect_error(401, "NMVS_FE_AU_01", Some("authorization"));
    expect_no_token(&login(&app, &creds.client_id, &creds.client_secret).await);
    let held = before.json["access_token"].as_str().expect("a token");
    let r = app.send(Method::GET, "/v1/alerts", Some(held), Body::Empty).await;
    assert_eq!(r.status, 200, "the token it issued still works: {}", r.text);

    faults.fail_keys.store(false, std::sync::atomic::Ordering::SeqCst);
    app.national.refresh_security().await.expect("the keys can be read");
    let after = login(&app, &creds.client_id, &creds.client_secret).await;
    assert_eq!(after.status, 200, "{}", after.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_of_a_system_accepts_the_tokens_issued_before_its_key_table_failed() {
    let Some(pg) = shared_postgres("two nodes whose key table fails") else { return };
    let opts = || AppOptions { postgres: Some(pg.clone()), faulty: true, ..AppOptions::default() };
    let a = spawn_app_with(opts()).await;
    let b = spawn_app_with(opts()).await;
    a.seed_standard().await;
    let p = a.pack().await;
    let creds = pharmacy(&a, "pharmacy-3").await;
    let from_a = login(&a, &creds.client_id, &creds.client_secret).await;
    let from_b = login(&b, &creds.client_id, &creds.client_secret).await;
    let tokens: Vec<String> = [&from_a, &from_b]
        .iter()
        .map(|r| r.json["access_token"].as_str().unwrap_or_else(|| panic!("{}", r.text)).to_owned())
        .collect();

    for node in [&a, &b] {
        node.faults.as_ref().expect("faulty").fail_keys.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(node.national.refresh_security().await.is_err());
        expect_no_token(&login(node, &creds.client_id, &creds.client_secret).await);
    }
    for node in [&a, &b] {
        for token in &tokens {
            let r = verify_with(node, token, &p).await;
            assert_eq!(r.json["return_code"], "NMVS_SUCCESS", "{}", r.text);
        }
    }
    for node in [&a, &b] {
        node.advance(secs(TOKEN_LIFETIME_SECS + LEEWAY_SECS));
        for token in &tokens {
            verify_with(node, token, &p).await.expect_error(401, "NMVS_FE_AU_01", Some("authorization"));
        }
    }
}
