//! The systems the client talks to in these tests: a hub and the national system of DE, in
//! process on the in-memory engine, wired as `openmvs demo` wires them (HTTPS with certificates
//! of one CA, mutual TLS between them and for the OBPs), on a fake clock that stands still. The
//! tests drive the relays and the bulk worker themselves.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use openmvs_client::wire::obp::{BatchRequest, Mah, ProductMarket, ProductRequest};
use openmvs_client::{EndUserClient, EndUserConfig, ManualTimer, ObpClient, ObpConfig, Sleep, Timer};
use openmvs_core::ids::{Location, MarketCode};
use openmvs_core::roles::Role;
use openmvs_core::time::{Clock, Date, Timestamp};
use openmvs_http::limit::{Limiter, RateLimit};
use openmvs_http::{
    HubState, NationalState, Observability, ServerHandle, TlsConfig, hub_router, national_router, serve,
};
use openmvs_hub::{Hub, HubConfig};
use openmvs_national::clock::FakeClock;
use openmvs_national::{BulkBackoff, HubLink, National, NationalConfig};
use openmvs_pki::{CertificateAuthority, ClientKind, Issued};
use openmvs_store::Store;
use openmvs_store::hub::HubStore;
use openmvs_store_mem::{MemHubStore, MemStore};
use openmvs_testkit::TempDir;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The product the world's OBP uploads, sold in DE.
pub const PRODUCT: &str = "09501101530003";
/// Its batch.
pub const BATCH: &str = "CLI1";
/// The batch's expiry.
pub const EXPIRY: &str = "301231";
/// How long a national system waits for the hub's inter-market answer here: these tests check
/// what the client does, not how fast the systems are.
const LINK_TIMEOUT: Duration = Duration::from_secs(10);
/// How many relay rounds a change may take to travel: far more than it does.
const TRAVEL: usize = 20;

/// The hub, DE, and the OBP `acme-pharma`.
pub struct World {
    /// The hub's URL.
    pub hub_url: String,
    /// DE's URL.
    pub de_url: String,
    /// DE's national system.
    pub national: Arc<National>,
    link: Arc<dyn HubLink>,
    /// The hub.
    pub hub: Arc<Hub>,
    /// The CA every certificate comes from, PEM.
    pub ca_pem: Vec<u8>,
    /// acme-pharma's certificate and key.
    pub acme: Issued,
    /// Another OBP's.
    pub other_obp: Issued,
    stop_worker: watch::Sender<bool>,
    servers: std::sync::Mutex<Vec<ServerHandle>>,
    _dir: TempDir,
}

/// A user of DE: its client id and secret.
pub struct Creds {
    /// The client id.
    pub id: String,
    /// The secret.
    pub secret: String,
}

fn tls(server: &Issued, ca: &CertificateAuthority) -> TlsConfig {
    TlsConfig {
        cert_chain: vec![server.cert_der()],
        key: server.key_der(),
        client_ca: Some(vec![ca.ca_der()]),
        crls: vec![ca.crl_der()],
    }
}

fn obs(clock: &Arc<dyn Clock>) -> Arc<Observability> {
    let o = Arc::new(Observability::new(clock.clone()));
    // Fixed admission bounds: a busy machine must not turn requests away here.
    o.load.set_governor(false);
    o.set_ready(true);
    o
}

impl World {
    /// Starts the hub and DE.
    pub async fn start() -> World {
        let dir = TempDir::new("client");
        let now = SystemTime::now();
        let mut ca = CertificateAuthority::create(&dir.path().join("ca"), "test CA", now).unwrap();
        let server = ca.issue_server(&["localhost", "127.0.0.1"], 30, now).unwrap();
        let hub_identity = ca.issue_client(ClientKind::Hub, "hub", 30, now).unwrap();
        let de_identity = ca.issue_client(ClientKind::National("DE".into()), "de", 30, now).unwrap();
        let acme = ca.issue_client(ClientKind::Obp, "acme-pharma", 30, now).unwrap();
        let other_obp = ca.issue_client(ClientKind::Obp, "other-obp", 30, now).unwrap();
        let ca_pem = ca.ca_pem().as_bytes().to_vec();
        let start = Timestamp::start_of(Date::new(2026, 11, 29).unwrap()).plus(Duration::from_secs(36_000));
        let clock: Arc<dyn Clock> = Arc::new(FakeClock::at(start));
        let mem = || openmvs_store_mem::Options {
            signing_key: ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
            clock: clock.clone(),
            checkpoints: openmvs_store::CheckpointOptions::default(),
        };

        let hub_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hub_url = format!("https://{}", hub_listener.local_addr().unwrap());
        let link =
            openmvs_testkit::hub_link(&hub_url, &ca_pem, de_identity.identity_pem().as_bytes(), LINK_TIMEOUT)
                .unwrap();
        let store: Arc<dyn Store> = Arc::new(MemStore::new(mem()));
        let de = MarketCode::new("DE").unwrap();
        let national = Arc::new(
            National::new(store, clock.clone(), NationalConfig::new(de), Some(link.clone())).await.unwrap(),
        );
        let limiter = Arc::new(Limiter::new(RateLimit::default()));
        let router = national_router(NationalState { national: national.clone(), obs: obs(&clock), limiter });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let de_server = serve(listener, router, Some(tls(&server, &ca))).unwrap();
        let de_url = format!("https://{}", de_server.local_addr());

        let links = openmvs_testkit::hub_links(
            BTreeMap::from([(de, de_url.clone())]),
            &ca_pem,
            hub_identity.identity_pem().as_bytes(),
            LINK_TIMEOUT,
        )
        .unwrap();
        let hub_store: Arc<dyn HubStore> = Arc::new(MemHubStore::new(mem()));
        let hub = Arc::new(
            Hub::new(hub_store, clock.clone(), HubConfig::new([3; 32]), Some(links.delivery))
                .with_queries(links.queries)
                .with_callbacks(links.callbacks),
        );
        let hub_server = serve(
            hub_listener,
            hub_router(HubState { hub: hub.clone(), obs: obs(&clock) }),
            Some(tls(&server, &ca)),
        )
        .unwrap();
        let (stop_worker, _) = watch::channel(false);
        World {
            hub_url,
            de_url,
            national,
            link,
            hub,
            ca_pem,
            acme,
            other_obp,
            stop_worker,
            servers: std::sync::Mutex::new(vec![de_server, hub_server]),
            _dir: dir,
        }
    }

    /// Runs `n` relay rounds of DE and of the hub.
    pub async fn relay_rounds(&self, n: usize) {
        for _ in 0..n {
            let _ = self.national.relay_once(self.link.as_ref()).await;
            let _ = self.hub.relay_once().await;
        }
    }

    /// A new client of DE of `role` at `location`.
    pub async fn user(&self, role: Role, location: &str) -> Creds {
        let c = self.national.create_client(role, Location::new(location).unwrap(), "").await.unwrap();
        Creds { id: c.client_id, secret: c.client_secret }
    }

    /// An end-user client of DE for `creds`, on `timer`.
    pub fn end_user(&self, creds: &Creds, timer: Arc<dyn Timer>) -> EndUserClient {
        let config =
            EndUserConfig::new(&self.de_url, &creds.id, &creds.secret).with_ca_pem(self.ca_pem.clone());
        EndUserClient::with_timer(config, timer).unwrap()
    }

    /// An OBP client of the hub presenting `identity`, on `timer`.
    pub fn obp(&self, identity: &Issued, timer: Arc<dyn Timer>) -> ObpClient {
        let config = ObpConfig::new(&self.hub_url, identity.identity_pem().into_bytes(), self.ca_pem.clone());
        ObpClient::with_timer(config, timer).unwrap()
    }

    /// A timer whose every sleep runs one relay round of DE and the hub, then moves on at once:
    /// what an OBP polls for travels while it waits.
    pub fn relaying_timer(self: &Arc<World>) -> Arc<StepTimer> {
        let world = self.clone();
        StepTimer::new(move || {
            let world = world.clone();
            Box::pin(async move { world.relay_rounds(1).await })
        })
    }

    /// A timer whose every sleep runs one round of DE's bulk worker, then moves on at once.
    pub fn bulk_timer(self: &Arc<World>) -> Arc<StepTimer> {
        let world = self.clone();
        StepTimer::new(move || {
            let world = world.clone();
            Box::pin(async move {
                let mut stop = world.stop_worker.subscribe();
                world.national.bulk_round(&mut BulkBackoff::default(), &mut stop).await;
            })
        })
    }

    /// acme-pharma's product [`PRODUCT`] for DE with batch [`BATCH`] and `serials`, distributed
    /// to DE.
    pub async fn seed(&self, serials: &[&str]) {
        let obp = self.obp(&self.acme, Arc::new(ManualTimer::new()));
        obp.put_product(PRODUCT, &product()).await.unwrap();
        obp.put_batch(PRODUCT, BATCH, &BatchRequest { expiry: EXPIRY.into(), markets: None }).await.unwrap();
        let serials: Vec<String> = serials.iter().map(|s| (*s).to_owned()).collect();
        let upload = obp.upload_serials(PRODUCT, BATCH, &serials).await.unwrap();
        for _ in 0..TRAVEL {
            self.relay_rounds(1).await;
            if obp.upload_status(&upload.upload_id).await.unwrap().status == "DISTRIBUTED" {
                return;
            }
        }
        panic!("upload {} never reached DE", upload.upload_id);
    }

    /// Stops the servers (a world shared with the timers of its clients stops all the same).
    pub async fn stop(&self) {
        let _ = self.stop_worker.send(true);
        let servers = std::mem::take(&mut *self.servers.lock().unwrap());
        for s in servers {
            s.shutdown(Duration::from_secs(1)).await;
        }
    }
}

/// The master data of [`PRODUCT`], sold in DE.
pub fn product() -> ProductRequest {
    ProductRequest {
        scheme: Some("GTIN".into()),
        name: Some("Examplomab 10 mg tablets".into()),
        common_name: Some("examplomab".into()),
        form: Some("TABLET".into()),
        strength: Some("10 mg".into()),
        pack_type: Some("BOX".into()),
        pack_size: Some("30".into()),
        markets: Some(vec![ProductMarket {
            market: Some("DE".into()),
            national_code: Some("DE-123".into()),
            mah: Some(Mah { name: Some("Acme".into()), address: Some("Berlin".into()) }),
            wholesalers: Vec::new(),
        }]),
    }
}

type Step = Box<dyn Fn() -> Sleep + Send + Sync>;

/// A [`ManualTimer`] whose sleeps also run a step of the systems (a relay round, a bulk round),
/// so that a client that polls sees the work it waits for done, without real time passing.
pub struct StepTimer {
    /// The time and the sleeps asked for.
    pub timer: ManualTimer,
    step: Step,
}

impl StepTimer {
    fn new(step: impl Fn() -> Sleep + Send + Sync + 'static) -> Arc<StepTimer> {
        Arc::new(StepTimer { timer: ManualTimer::new(), step: Box::new(step) })
    }
}

impl Timer for StepTimer {
    fn now(&self) -> std::time::Instant {
        self.timer.now()
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        let moved = self.timer.sleep(duration);
        let step = (self.step)();
        Box::pin(async move {
            moved.await;
            step.await;
        })
    }
}
