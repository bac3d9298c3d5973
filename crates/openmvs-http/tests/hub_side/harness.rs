//! The system under test: the national system of DE on a fresh in-memory store (the engines have
//! suites of their own), with a fake clock, served over HTTPS that asks for client certificates from the
//! test CA, linked to a fake hub over mutual TLS; plus builders for hub messages and requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use openmvs_core::ids::{Location, MarketCode};
use openmvs_core::pack::{Command, Operation};
use openmvs_core::roles::Role;
use openmvs_core::time::Clock;
use openmvs_http::hub_client::HttpHubLink;
use openmvs_http::limit::{Limiter, RateLimit};
use openmvs_http::{NationalState, Observability, ServerHandle, TlsConfig, national_router, serve};
use openmvs_national::clock::{FakeClock, SystemClock};
use openmvs_national::{Actor, HubLink, National, NationalConfig};
use openmvs_store::Store;
use openmvs_store_mem::MemStore;
use openmvs_wire::api::{PackRequest, PackResponse};
use openmvs_wire::hub::{
    BatchMsg, Delivery, Envelope, Message, PackStateMsg, PacksMsg, ProductMsg, RecallMsg, WithdrawalMsg,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::fake_hub::FakeHub;
use crate::faults::Faulty;
use crate::pki::{client, pki};
use crate::retry::SendRetrying;

/// The market under test.
pub fn de() -> MarketCode {
    MarketCode::new("DE").unwrap()
}

/// The expiry of every test batch: far in the future.
pub const EXPIRY: &str = "301231";
/// The OBP owning the test products.
pub const OWNER: &str = "OBP-ACME";

/// A valid GTIN: the 13 digits of `body` with their GS1 mod-10 check digit.
pub fn gtin(body: &str) -> String {
    assert_eq!(body.len(), 13);
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

/// How to set up the system under test.
pub struct Setup {
    /// Whether the outbox relay runs on its own; by default tests drive it (`relay_once`,
    /// `relay_all`).
    pub relay: bool,
    /// The link's inter-market timeout.
    pub intermarket_timeout: Duration,
    /// Point the link here instead of at the fake hub.
    pub hub_url: Option<String>,
    /// Delivery attempts before a message becomes a dead letter.
    pub max_delivery_attempts: u32,
    /// Load the test CA's revocation list into the national system's TLS server.
    pub crls: bool,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            relay: false,
            // Seconds, not the 300 ms of a running system: on a busy machine the fake hub may
            // answer late. The tests of the timeout set their own.
            intermarket_timeout: Duration::from_secs(10),
            hub_url: None,
            max_delivery_attempts: 2000,
            crls: false,
        }
    }
}

/// The national system of DE, its fake hub, and the handles to drive them.
pub struct Harness {
    /// The fake hub.
    pub hub: FakeHub,
    /// The national system.
    pub national: Arc<National>,
    /// Its store, with failure points.
    pub store: Arc<Faulty>,
    /// Its clock.
    pub clock: Arc<FakeClock>,
    /// Its link to the hub (the one the national system holds).
    pub link: Arc<HttpHubLink>,
    /// Its HTTPS base URL.
    pub url: String,
    server: Option<ServerHandle>,
    stop: watch::Sender<bool>,
    relay: Option<JoinHandle<()>>,
    memory: Arc<MemStore>,
}

impl Harness {
    /// The default set-up: relay driven by the test, hub answering.
    pub async fn start() -> Harness {
        Harness::with(Setup::default()).await
    }

    /// A set-up of one's choosing.
    pub async fn with(setup: Setup) -> Harness {
        let hub = FakeHub::start().await;
        let clock = Arc::new(FakeClock::at(SystemClock.now()));
        let memory = Arc::new(MemStore::new(openmvs_store_mem::Options {
            signing_key: SigningKey::from_bytes(&[7; 32]),
            clock: clock.clone(),
            checkpoints: openmvs_store::CheckpointOptions::default(),
        }));
        let store = Arc::new(Faulty::new(memory.clone()));
        let hub_url = setup.hub_url.clone().unwrap_or_else(|| hub.url.clone());
        let link = Arc::new(
            HttpHubLink::new(
                &hub_url,
                pki().ca_pem.as_bytes(),
                Some(&pki().national.identity_pem()),
                setup.intermarket_timeout,
            )
            .expect("hub link"),
        );
        let mut config = NationalConfig::new(de());
        config.max_delivery_attempts = setup.max_delivery_attempts;
        let dyn_store: Arc<dyn Store> = store.clone();
        let dyn_link: Arc<dyn HubLink> = link.clone();
        let national = Arc::new(
            National::new(dyn_store, clock.clone(), config, Some(dyn_link)).await.expect("national system"),
        );
        let obs = Arc::new(Observability::new(clock.clone()));
        // A fixed admission bound: the governor would lower it whenever the machine is busy.
        obs.load.set_governor(false);
        obs.set_ready(true);
        let limiter = Arc::new(Limiter::new(RateLimit::default()));
        let router = national_router(NationalState { national: national.clone(), obs, limiter });
        let (cert_chain, key) = pki().server.server_material();
        let tls = TlsConfig {
            cert_chain,
            key,
            client_ca: Some(vec![pki().ca_der.clone()]),
            crls: if setup.crls { vec![pki().crl.clone()] } else { Vec::new() },
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let server = serve(listener, router, Some(tls)).expect("serving the national system");
        let (stop, _) = watch::channel(false);
        let mut h = Harness {
            hub,
            national,
            store,
            clock,
            link,
            url: format!("https://{}", server.local_addr()),
            server: Some(server),
            stop,
            relay: None,
            memory,
        };
        if setup.relay {
            h.start_relay();
        }
        h
    }

    /// Starts the outbox relay task.
    pub fn start_relay(&mut self) {
        assert!(self.relay.is_none(), "the relay runs already");
        self.relay = Some(tokio::spawn(self.national.clone().run_relay(self.stop.subscribe())));
    }

    /// One round of the relay through the national system's own link.
    pub async fn relay_once(&self) -> usize {
        self.national.relay_once(self.link.as_ref()).await.expect("relay round")
    }

    /// Rounds of the relay until the outbox is empty.
    pub async fn relay_all(&self) {
        for _ in 0..100 {
            if openmvs_store::OutboxQueue::pending(self.store.as_ref()).await.expect("pending") == 0 {
                return;
            }
            self.relay_once().await;
        }
        panic!("the outbox is not empty after 100 relay rounds");
    }

    /// Sends one delivery with the product (owned by [`OWNER`]), its batch for `markets`, and
    /// `serials`, as the hub, and checks that each message applied.
    pub async fn seed(&self, product_code: &str, batch: &str, markets: &[&str], serials: &[&str]) {
        let delivery = Delivery {
            messages: vec![
                envelope(product(product_code, "Testomab 10 mg", 1)),
                envelope(batch_msg(product_code, batch, markets)),
                envelope(packs(product_code, batch, serials)),
            ],
        };
        let ack = self.hub.send(&self.url, &delivery).await;
        let statuses: Vec<&str> = ack.results.iter().map(|a| a.status.as_str()).collect();
        assert_eq!(statuses, ["APPLIED"; 3], "{ack:?}");
    }

    /// A single-pack request from `actor` on a pack of the batch [`EXPIRY`] expires.
    pub async fn op(
        &self,
        actor: &Actor,
        command: Command,
        trx: &str,
        product_code: &str,
        batch: &str,
        serial: &str,
    ) -> PackResponse {
        let answer = self
            .national
            .pack(actor, command, &pack_req(trx, product_code, batch, serial))
            .await
            .expect("processed");
        PackResponse::from(&answer)
    }

    /// The stored state of a pack here.
    pub async fn state(&self, product_code: &str, serial: &str) -> String {
        self.stored(product_code, serial).await.pack.state.to_string()
    }

    /// The stored pack here.
    pub async fn stored(&self, product_code: &str, serial: &str) -> openmvs_store::StoredPack {
        use openmvs_store::PackStore;
        let pc = openmvs_core::ids::ProductCode::new(openmvs_core::ids::Scheme::Gtin, product_code).unwrap();
        let s = openmvs_core::ids::Serial::new(serial).unwrap();
        self.store.pack(&pc, &s).await.unwrap().expect("the pack exists here")
    }

    /// Every alert of the market, oldest first.
    pub async fn alerts(&self) -> Vec<openmvs_store::AlertRecord> {
        use openmvs_store::AlertStore;
        self.store.alerts(&openmvs_store::AlertFilter { limit: 1000, ..Default::default() }).await.unwrap()
    }

    /// How many audit records the market's trail holds.
    pub async fn audit_count(&self) -> usize {
        use openmvs_store::AuditStore;
        self.store.audit_page(0, 100_000).await.unwrap().len()
    }

    /// A new client of `role` at `location`, and a bearer token for it.
    pub async fn token(&self, role: Role, location: &str) -> (String, String) {
        let c =
            self.national.create_client(role, Location::new(location).unwrap(), "test client").await.unwrap();
        let resp = client(None)
            .post(format!("{}/oauth/token", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=client_credentials&client_id={}&client_secret={}",
                c.client_id, c.client_secret
            ))
            .send_retrying()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.unwrap();
        (c.client_id, body["access_token"].as_str().unwrap().to_owned())
    }

    /// `GET path` over HTTPS with a bearer token, as JSON.
    pub async fn get_json(&self, token: &str, path: &str) -> serde_json::Value {
        let resp =
            client(None).get(format!("{}{path}", self.url)).bearer_auth(token).send_retrying().await.unwrap();
        assert_eq!(resp.status(), 200, "GET {path}");
        resp.json().await.unwrap()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // The relay returns at its next turn; without this it would see a dropped sender.
        let _ = self.stop.send(true);
        if let Some(r) = self.relay.take() {
            r.abort();
        }
        if let Some(server) = self.server.take() {
            tokio::spawn(server.shutdown(Duration::ZERO));
        }
        self.memory.close();
    }
}

/// A pharmacy of DE at `location`.
pub fn pharmacy(location: &str) -> Actor {
    Actor {
        client_id: format!("pharmacy-{location}").into(),
        role: Role::Pharmacy,
        market: de(),
        location: Location::new(location).unwrap(),
    }
}

/// Shorthands for commands.
pub const VERIFY: Command = Command::Verify;
/// Supply.
pub const SUPPLY: Command = Command::Set(Operation::Supply);
/// Undo a supply.
pub const UNDO_SUPPLY: Command = Command::Undo(Operation::Supply);

/// A single-pack request given field by field.
pub fn pack_req(trx: &str, product_code: &str, batch: &str, serial: &str) -> PackRequest {
    PackRequest {
        client_trx_id: Some(trx.into()),
        scheme: Some("GTIN".into()),
        product_code: Some(product_code.into()),
        serial: Some(serial.into()),
        batch: Some(batch.into()),
        expiry: Some(EXPIRY.into()),
        ..PackRequest::default()
    }
}

/// A message from the hub, with a new id.
pub fn envelope(body: Message) -> Envelope {
    static N: AtomicU64 = AtomicU64::new(0);
    let ordering_key = match &body {
        Message::Product(m) => m.product_code.clone(),
        Message::Batch(m) => m.product_code.clone(),
        Message::Packs(m) => m.product_code.clone(),
        Message::Recall(m) => m.product_code.clone(),
        Message::Withdrawal(m) => m.product_code.clone(),
        Message::PackState(m) => m.product_code.clone(),
        Message::Alert(m) => m.alert.product_code.clone(),
        Message::AlertChange(m) => m.alert_id.clone(),
        Message::AlertComment(m) => m.alert_id.clone(),
        Message::AuditHead(m) => format!("audit-head/{}", m.market),
    };
    Envelope {
        message_id: format!("MSG-HUB-{:06}", N.fetch_add(1, Ordering::SeqCst)),
        origin: "hub".into(),
        ordering_key,
        body,
    }
}

/// Product master data.
pub fn product(product_code: &str, name: &str, version: u32) -> Message {
    Message::Product(ProductMsg {
        scheme: "GTIN".into(),
        product_code: product_code.into(),
        name: name.into(),
        common_name: "testomab".into(),
        form: "tablet".into(),
        strength: "10 mg".into(),
        pack_type: "box".into(),
        pack_size: "30".into(),
        owner: OWNER.into(),
        version,
    })
}

/// A batch expiring [`EXPIRY`] for `markets`.
pub fn batch_msg(product_code: &str, batch: &str, markets: &[&str]) -> Message {
    Message::Batch(BatchMsg {
        scheme: "GTIN".into(),
        product_code: product_code.into(),
        batch: batch.into(),
        expiry: EXPIRY.into(),
        markets: markets.iter().map(|m| (*m).to_owned()).collect(),
    })
}

/// Serials of a batch.
pub fn packs(product_code: &str, batch: &str, serials: &[&str]) -> Message {
    Message::Packs(PacksMsg {
        scheme: "GTIN".into(),
        product_code: product_code.into(),
        batch: batch.into(),
        serials: serials.iter().map(|s| (*s).to_owned()).collect(),
    })
}

/// A recall of a batch.
pub fn recall(product_code: &str, batch: &str) -> Message {
    Message::Recall(RecallMsg {
        scheme: "GTIN".into(),
        product_code: product_code.into(),
        batch: batch.into(),
        reason: "contamination".into(),
    })
}

/// A withdrawal of a product.
pub fn withdrawal(product_code: &str) -> Message {
    Message::Withdrawal(WithdrawalMsg {
        scheme: "GTIN".into(),
        product_code: product_code.into(),
        reason: "marketing authorisation revoked".into(),
    })
}

/// The market the synchronised changes of these tests come from.
pub const FR: &str = "FR";
/// The premises in FR they are made at.
pub const FR_LOCATION: &str = "FR-PHARMA-7";

/// A state change made in FR (`state` after it, `command` as done there) at [`FR_LOCATION`], now.
pub fn from_fr(
    h: &Harness,
    product_code: &str,
    batch: &str,
    serial: &str,
    state: &str,
    command: &str,
) -> Message {
    Message::PackState(PackStateMsg {
        scheme: "GTIN".into(),
        product_code: product_code.into(),
        serial: serial.into(),
        batch: batch.into(),
        state: state.into(),
        command: command.into(),
        market: FR.into(),
        location: FR_LOCATION.into(),
        at: h.clock.now().to_rfc3339(),
    })
}
