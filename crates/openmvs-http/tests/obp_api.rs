//! The hub's OBP API over real mutual TLS, in process: an OBP uploads a product, a batch and a
//! streamed text body of serials to the hub, the relay distributes them through
//! `HttpNationalLink` to a national system served over HTTPS, and a pharmacy there verifies a
//! pack. Callers without an OBP certificate, or with another OBP's, are refused with 403. Both
//! nodes' `/metrics` are then read back whole as strict Prometheus text.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ed25519_dalek::SigningKey;
use openmvs_core::ids::{Location, MarketCode};
use openmvs_core::roles::Role;
use openmvs_core::time::Clock;
use openmvs_http::limit::{Limiter, RateLimit};
use openmvs_http::national_link::HttpNationalLink;
use openmvs_http::{HubState, NationalState, Observability, TlsConfig, hub_router, national_router, serve};
use openmvs_hub::{Hub, HubConfig, NationalLink};
use openmvs_national::clock::SystemClock;
use openmvs_national::{National, NationalConfig};
use openmvs_pki::{CertificateAuthority, ClientKind, Issued};
use openmvs_store::Store;
use openmvs_store::hub::HubStore;
use openmvs_store_sqlite::hub::{HubOptions, SqliteHubStore};
use openmvs_store_sqlite::{AuditSigner, Options, SqliteStore};
use openmvs_telemetry::check_exposition;
use serde_json::{Value, json};

#[path = "support/contract.rs"]
mod contract;
#[path = "support/retry.rs"]
mod retry;
use contract::Contract;
use openmvs_http::openapi::Component;
use retry::SendRetrying;

const PRODUCT: &str = "09501101530003";

fn tls(server: &Issued, ca: &CertificateAuthority) -> TlsConfig {
    TlsConfig {
        cert_chain: vec![server.cert_der()],
        key: server.key_der(),
        client_ca: Some(vec![ca.ca_der()]),
        crls: vec![ca.crl_der()],
    }
}

fn https(ca: &CertificateAuthority, identity: Option<&Issued>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.ca_pem().as_bytes()).unwrap())
        .timeout(Duration::from_secs(30));
    if let Some(i) = identity {
        b = b.identity(reqwest::Identity::from_pem(i.identity_pem().as_bytes()).unwrap());
    }
    b.build().unwrap()
}

/// The group-commit histogram a node registers in its metrics, fed by its store, as `openmvs
/// serve` wires it.
fn group_sizes(obs: &Observability) -> Option<Arc<dyn Fn(usize) + Send + Sync>> {
    let sizes = obs
        .metrics
        .size_histogram("openmvs_group_commit_size", "Units of work per committed transaction.", &[])
        .unwrap();
    Some(Arc::new(move |n| sizes.observe(n as u64)))
}

fn product() -> Value {
    json!({"scheme": "GTIN", "name": "Examplomab 10 mg tablets", "common_name": "examplomab", "form": "TABLET",
           "strength": "10 mg", "pack_type": "BOX", "pack_size": "30",
           "markets": [{"market": "DE", "national_code": "DE-123", "mah": {"name": "Acme", "address": "Berlin"},
                        "wholesalers": []}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_obp_upload_streamed_as_text_reaches_a_pharmacy_and_other_callers_are_refused() {
    let dir =
        std::env::temp_dir().join(format!("openmvs-obp-api-{}-{:?}", std::process::id(), SystemTime::now()));
    let now = SystemTime::now();
    let mut ca = CertificateAuthority::create(&dir.join("ca"), "test CA", now).unwrap();
    let server = ca.issue_server(&["localhost", "127.0.0.1"], 30, now).unwrap();
    let hub_id = ca.issue_client(ClientKind::Hub, "hub", 30, now).unwrap();
    let acme = ca.issue_client(ClientKind::Obp, "acme-pharma", 30, now).unwrap();
    let other = ca.issue_client(ClientKind::Obp, "other-obp", 30, now).unwrap();
    let national_id = ca.issue_client(ClientKind::National("DE".into()), "de", 30, now).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let de = MarketCode::new("DE").unwrap();

    // The national system of DE, which takes deliveries only from `hub.openmvs`.
    let nobs = Arc::new(Observability::new(clock.clone()));
    let store = Arc::new(
        SqliteStore::open(Options {
            path: dir.join("national.db"),
            signer: Arc::new(AuditSigner { key: SigningKey::from_bytes(&[7; 32]) }),
            clock: clock.clone(),
            on_group: group_sizes(&nobs),
            checkpoints: openmvs_store::CheckpointOptions::default(),
        })
        .unwrap(),
    );
    let dyn_store: Arc<dyn Store> = store.clone();
    let national =
        Arc::new(National::new(dyn_store, clock.clone(), NationalConfig::new(de), None).await.unwrap());
    // Fixed admission bounds: the test reads them in /metrics.
    nobs.load.set_governor(false);
    nobs.set_ready(true);
    let limiter = Arc::new(Limiter::new(RateLimit::default()));
    let router = national_router(NationalState { national: national.clone(), obs: nobs, limiter });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let national_server = serve(listener, router, Some(tls(&server, &ca))).unwrap();
    let national_url = format!("https://{}", national_server.local_addr());

    // The hub, linked to it with the hub's client certificate.
    let hobs = Arc::new(Observability::new(clock.clone()));
    let hub_store = Arc::new(
        SqliteHubStore::open(HubOptions {
            path: dir.join("hub.db"),
            signer: Arc::new(AuditSigner { key: SigningKey::from_bytes(&[9; 32]) }),
            clock: clock.clone(),
            on_group: group_sizes(&hobs),
            checkpoints: openmvs_store::CheckpointOptions::default(),
        })
        .unwrap(),
    );
    let link: Arc<dyn NationalLink> = Arc::new(
        HttpNationalLink::new(
            BTreeMap::from([(de, national_url.clone())]),
            ca.ca_pem().as_bytes(),
            hub_id.identity_pem().as_bytes(),
            Duration::from_secs(10),
        )
        .unwrap(),
    );
    let dyn_hub_store: Arc<dyn HubStore> = hub_store.clone();
    let hub = Arc::new(Hub::new(dyn_hub_store, clock.clone(), HubConfig::new([3; 32]), Some(link)));
    hobs.load.set_governor(false);
    hobs.set_ready(true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hub_server =
        serve(listener, hub_router(HubState { hub: hub.clone(), obs: hobs }), Some(tls(&server, &ca)))
            .unwrap();
    let hub_url = format!("https://{}", hub_server.local_addr());

    // Every answer of the hub below is checked against its contract document as well.
    let contract = Contract::of(Component::Hub);
    let product_path = "/v1/products/{product_code}";
    let obp = https(&ca, Some(&acme));
    let r =
        obp.put(format!("{hub_url}/v1/products/{PRODUCT}")).json(&product()).send_retrying().await.unwrap();
    let (status, body) = contract.answer("PUT", product_path, r).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"product_code": PRODUCT, "version": 1}));
    let mut missing = product();
    missing.as_object_mut().unwrap().remove("name");
    let r = obp.put(format!("{hub_url}/v1/products/{PRODUCT}")).json(&missing).send_retrying().await.unwrap();
    let (status, body) = contract.answer("PUT", product_path, r).await;
    assert_eq!(status, 422);
    assert_eq!(body["code"], "A16", "{body}");
    assert_eq!(body["details"][0]["field"], "name", "{body}");

    let r = obp
        .put(format!("{hub_url}/v1/products/{PRODUCT}/batches/B1"))
        .json(&json!({"expiry": "301231"}))
        .send_retrying()
        .await
        .unwrap();
    assert_eq!(contract.answer("PUT", "/v1/products/{product_code}/batches/{batch}", r).await.0, 200);

    // Three serials, CRLF and a line that is no serial (lines split across body frames are
    // covered by the unit tests of the line feed).
    let body = "SERIAL1\r\nSERIAL2\nnot a serial\nSERIAL3";
    let r = obp
        .post(format!("{hub_url}/v1/products/{PRODUCT}/batches/B1/packs"))
        .header("content-type", "text/plain")
        .body(body)
        .send_retrying()
        .await
        .unwrap();
    let (status, accepted) =
        contract.answer("POST", "/v1/products/{product_code}/batches/{batch}/packs", r).await;
    assert_eq!(status, 202);
    assert_eq!(accepted["received"], 4, "{accepted}");
    let id = accepted["upload_id"].as_str().unwrap().to_owned();

    // The hub's relay, driven here, distributes the upload: round after round until it says so.
    let mut status = Value::Null;
    for _ in 0..10 {
        hub.relay_once().await.expect("a relay round");
        let r = obp.get(format!("{hub_url}/v1/uploads/{id}")).send_retrying().await.unwrap();
        status = contract.answer("GET", "/v1/uploads/{upload_id}", r).await.1;
        if status["status"] == "DISTRIBUTED" {
            break;
        }
    }
    assert_eq!(status["status"], "DISTRIBUTED", "{status}");
    assert_eq!(status["markets"]["DE"], "DISTRIBUTED");
    assert_eq!(status["rejected"][0]["line"], 3, "{status}");

    // A pharmacy in DE verifies one of the packs over the national system's HTTPS API.
    let c = national.create_client(Role::Pharmacy, Location::new("DE-PH-1").unwrap(), "").await.unwrap();
    let pharmacy = https(&ca, None);
    let token: Value = pharmacy
        .post(format!("{national_url}/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &c.client_id),
            ("client_secret", &c.client_secret),
        ])
        .send_retrying()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let answer: Value = pharmacy
        .post(format!("{national_url}/v1/packs/verify"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .json(&json!({"client_trx_id": "t1", "scheme": "GTIN", "product_code": PRODUCT, "serial": "SERIAL1",
                      "batch": "B1", "expiry": "301231"}))
        .send_retrying()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["return_code"], "NMVS_SUCCESS", "{answer}");

    // No certificate, a national system's certificate, another OBP: all 403.
    for (who, client) in [
        ("nobody", https(&ca, None)),
        ("national", https(&ca, Some(&national_id))),
        ("other OBP", https(&ca, Some(&other))),
    ] {
        let r = client
            .put(format!("{hub_url}/v1/products/{PRODUCT}/batches/B2"))
            .json(&json!({"expiry": "301231"}))
            .send_retrying()
            .await
            .unwrap();
        let (status, body) = contract.answer("PUT", "/v1/products/{product_code}/batches/{batch}", r).await;
        assert_eq!(status, 403, "{who}");
        let field = &body["details"][0]["field"];
        assert!(field == "client_certificate" || field == "product_code", "{who}: {body}");
        if who != "other OBP" {
            assert_eq!(field, "client_certificate", "{who}: {body}");
        }
    }

    // The OBP's other routes, and the public ones, answer as the document says.
    let r = obp
        .post(format!("{hub_url}/v1/products/{PRODUCT}/batches/B1/packs/state"))
        .json(&json!({"state": "STOLEN", "serials": ["SERIAL3", "SERIAL3", "NEVER1"]}))
        .send_retrying()
        .await
        .unwrap();
    let (status, body) =
        contract.answer("POST", "/v1/products/{product_code}/batches/{batch}/packs/state", r).await;
    assert_eq!((status, &body["results"][1]["return_code"]), (200, &json!("NMVS_TE_BLK_01")), "{body}");
    let r = obp.get(format!("{hub_url}/v1/alerts?limit=5")).send_retrying().await.unwrap();
    assert_eq!(contract.answer("GET", "/v1/alerts", r).await.0, 200);
    let r = obp.get(format!("{hub_url}/v1/alerts/ALR-none")).send_retrying().await.unwrap();
    assert_eq!(contract.answer("GET", "/v1/alerts/{id}", r).await.0, 404);
    let r = obp
        .post(format!("{hub_url}/v1/products/{PRODUCT}/batches/B1/recall"))
        .json(&json!({"reason": "Out of specification.", "markets": ["FR"]}))
        .send_retrying()
        .await
        .unwrap();
    assert_eq!(contract.answer("POST", "/v1/products/{product_code}/batches/{batch}/recall", r).await.0, 422);
    let r = obp.get(format!("{hub_url}/v1/openapi.json")).send_retrying().await.unwrap();
    let (status, served) = contract.answer("GET", "/v1/openapi.json", r).await;
    assert_eq!(status, 200);
    let generated = serde_json::to_value(openmvs_http::openapi::document(Component::Hub, false)).unwrap();
    assert_eq!(served, generated, "the hub serves the document the code generates");
    for path in ["/docs", "/v1/return-codes", "/health/live", "/health/ready"] {
        let r = https(&ca, None).get(format!("{hub_url}{path}")).send_retrying().await.unwrap();
        assert_eq!(contract.answer("GET", path, r).await.0, 200, "{path}");
    }

    // The hub's metrics: its outbox and its admission, as a national system's.
    let text = obp.get(format!("{hub_url}/metrics")).send_retrying().await.unwrap().text().await.unwrap();
    for needle in [
        "# TYPE openmvs_hub_outbox_pending gauge",
        "# TYPE openmvs_admission_limit gauge\nopenmvs_admission_limit 128\n",
        "# TYPE openmvs_requests_in_flight gauge",
        "openmvs_requests_shed_total 0\n",
    ] {
        assert!(text.contains(needle), "no '{needle}' in:\n{text}");
    }

    // Each node's whole /metrics, read back strictly: every line is valid exposition text, every
    // sample follows the # TYPE line of its own family, no family or series appears twice, and
    // every histogram has cumulative buckets up to +Inf, a _sum and a _count.
    let national_text =
        pharmacy.get(format!("{national_url}/metrics")).send_retrying().await.unwrap().text().await.unwrap();
    let national_families = ["openmvs_outbox_pending", "openmvs_alerts_raised_total", "openmvs_alerts_open"];
    let hub_families =
        ["openmvs_hub_outbox_pending", "openmvs_hub_alerts_received_total", "openmvs_hub_alerts_open"];
    for (node, text, own) in [("national", &national_text, national_families), ("hub", &text, hub_families)] {
        let exposed = check_exposition(text).unwrap_or_else(|e| panic!("{node} /metrics: {e}\n{text}"));
        for family in own.into_iter().chain([
            "openmvs_request_duration_seconds",
            "openmvs_group_commit_size",
            "openmvs_admission_limit",
            "openmvs_login_refused_total",
            "openmvs_connections_refused_total",
            "openmvs_store_ok",
            "openmvs_disk_low",
        ]) {
            assert!(
                exposed.families.iter().any(|(f, _)| f == family),
                "{node}: no family {family} in\n{text}"
            );
        }
        let commits = exposed.value("openmvs_group_commit_size_count", &[]).unwrap_or(0.0);
        assert!(commits > 0.0, "{node}: the store's group commits are counted:\n{text}");
        assert!(exposed.histogram_series >= 2, "{node}: request latencies and group commits:\n{text}");
    }

    hub_server.shutdown(Duration::from_secs(1)).await;
    national_server.shutdown(Duration::from_secs(1)).await;
    hub_store.close();
    store.close();
    let _ = std::fs::remove_dir_all(&dir);
}
