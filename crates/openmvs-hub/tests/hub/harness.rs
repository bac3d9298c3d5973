//! The test harness: a hub on a real SQLite hub store in a temporary directory, real national
//! systems for DE and FR on their own SQLite stores, one fake clock for all, and a link between
//! them that calls `National::apply_delivery` and can be switched off per market. Each national
//! system reaches the hub in process too (`ToHub`), inter-market requests are routed back to the
//! national systems (`TestQueries`), and the OBPs' callbacks go to a recording fake
//! (`FakeCallbacks`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use openmvs_core::ids::{Location, MarketCode, ProductCode, Scheme, Serial};
use openmvs_core::master_data::{RawMarket, RawProduct, RawWholesaler};
use openmvs_core::pack::{Command, Operation};
use openmvs_core::roles::Role;
use openmvs_core::time::{Clock, Date, Timestamp};
use openmvs_hub::{CallbackSender, Hub, HubConfig, IterLines, NationalLink, NationalQueries, UploadAccepted};
use openmvs_national::clock::FakeClock;
use openmvs_national::{Actor, HubLink, National, NationalConfig};
use openmvs_store::BoxFuture;
use openmvs_store_mem::MemStore;
use openmvs_store_sqlite::AuditSigner;
use openmvs_store_sqlite::hub::{HubOptions, SqliteHubStore};
use openmvs_wire::api::{PackRequest, PackResponse};
use openmvs_wire::hub::{
    Delivery, DeliveryAck, IntermarketAnswer, IntermarketRequest, Message, PackQuery, PackQueryAnswer,
};

/// The product of most tests.
pub const GTIN: &str = "09501101530003";
/// Its batch.
pub const BATCH: &str = "LOT-2026-A";
/// The batch's expiry, as uploaded: a year after the clock's start.
pub const EXPIRY: &str = "271231";
/// The OBP that owns the product.
pub const OBP: &str = "obp-one";
/// Another OBP.
pub const OTHER_OBP: &str = "obp-two";

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn next() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A market code.
pub fn m(s: &str) -> MarketCode {
    MarketCode::new(s).expect("a market code")
}

/// A directory of its own, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("openmvs-hub-test-{}-{}-{nanos}", std::process::id(), next()));
        std::fs::create_dir_all(&path).expect("create the test directory");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One delivered message, as the link saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The message id.
    pub id: String,
    /// `product`, `batch`, `packs`, `recall`, `withdrawal`.
    pub kind: String,
    /// The national system's answer.
    pub status: String,
}

/// The hub's link to the national systems: in-process, with a switch per market.
pub struct TestLink {
    nationals: BTreeMap<MarketCode, Arc<National>>,
    down: Mutex<BTreeSet<MarketCode>>,
    hanging: Mutex<BTreeSet<MarketCode>>,
    /// Notified when a delivery to a hanging market starts.
    pub hung: tokio::sync::Notify,
    log: Mutex<BTreeMap<MarketCode, Vec<Seen>>>,
    /// Told `true` once the next delivery is answered: a shutdown that comes while a delivery
    /// is in flight.
    pub stop_after_delivery: Mutex<Option<tokio::sync::watch::Sender<bool>>>,
}

impl TestLink {
    /// Makes `market` unreachable (true) or reachable again.
    pub fn set_down(&self, market: &str, down: bool) {
        let mut d = self.down.lock().unwrap();
        if down {
            d.insert(m(market));
        } else {
            d.remove(&m(market));
        }
    }

    /// Deliveries to `market` never end from now on (the hub dies while it sends them); each
    /// notifies [`TestLink::hung`] when it starts.
    pub fn hang(&self, market: &str) {
        self.hanging.lock().unwrap().insert(m(market));
    }

    /// Every message `market` received and answered, in order.
    pub fn seen(&self, market: &str) -> Vec<Seen> {
        self.log.lock().unwrap().get(&m(market)).cloned().unwrap_or_default()
    }

    /// The kinds `market` applied, in order.
    pub fn kinds(&self, market: &str) -> Vec<String> {
        self.seen(market).into_iter().map(|s| s.kind).collect()
    }
}

fn kind(body: &Message) -> &'static str {
    body.kind()
}

impl NationalLink for TestLink {
    fn deliver(&self, market: MarketCode, delivery: Delivery) -> BoxFuture<'_, Result<DeliveryAck, String>> {
        Box::pin(async move {
            if self.down.lock().unwrap().contains(&market) {
                return Err(format!("{market} refused the connection"));
            }
            if self.hanging.lock().unwrap().contains(&market) {
                self.hung.notify_one();
                return std::future::pending().await;
            }
            let national =
                self.nationals.get(&market).ok_or_else(|| format!("no national system for {market}"))?;
            let ack = national.apply_delivery(&delivery).await.map_err(|e| e.to_string())?;
            let mut log = self.log.lock().unwrap();
            let seen = log.entry(market).or_default();
            for (env, a) in delivery.messages.iter().zip(&ack.results) {
                seen.push(Seen {
                    id: env.message_id.clone(),
                    kind: kind(&env.body).into(),
                    status: a.status.clone(),
                });
            }
            if let Some(stop) = self.stop_after_delivery.lock().unwrap().take() {
                let _ = stop.send(true);
            }
            Ok(ack)
        })
    }
}

/// A national system's link to the hub: in-process calls of the hub's entry points, as the
/// HTTPS link would make them. It holds the hub weakly, so that hub and national systems do not
/// keep each other alive.
pub struct ToHub {
    market: MarketCode,
    hub: OnceLock<Weak<Hub>>,
}

impl ToHub {
    fn hub(&self) -> Result<Arc<Hub>, String> {
        self.hub.get().and_then(Weak::upgrade).ok_or_else(|| "the hub is gone".to_owned())
    }
}

impl HubLink for ToHub {
    fn deliver(&self, delivery: Delivery) -> BoxFuture<'_, Result<DeliveryAck, String>> {
        Box::pin(async move {
            self.hub()?.apply_from_national(self.market, &delivery).await.map_err(|e| e.to_string())
        })
    }

    fn intermarket(&self, req: IntermarketRequest) -> BoxFuture<'_, Result<IntermarketAnswer, String>> {
        Box::pin(async move { self.hub()?.intermarket(req).await.map_err(|e| e.to_string()) })
    }
}

/// The hub's way of asking a national system: `National::intermarket`, in process.
pub struct TestQueries {
    nationals: BTreeMap<MarketCode, Arc<National>>,
    /// Requests asked, per market.
    pub asked: Mutex<Vec<MarketCode>>,
}

impl NationalQueries for TestQueries {
    fn intermarket(
        &self,
        market: MarketCode,
        req: IntermarketRequest,
    ) -> BoxFuture<'_, Result<IntermarketAnswer, String>> {
        Box::pin(async move {
            self.asked.lock().unwrap().push(market);
            let national =
                self.nationals.get(&market).ok_or_else(|| format!("no national system {market}"))?;
            let answer = national.intermarket(&req).await.map_err(|e| e.to_string())?;
            let response = answer.as_ref().map(PackResponse::from);
            Ok(IntermarketAnswer {
                market: response.as_ref().map(|_| market.to_string()),
                response,
                unreachable: Vec::new(),
            })
        })
    }
    fn pack_state(
        &self,
        market: MarketCode,
        query: PackQuery,
    ) -> BoxFuture<'_, Result<PackQueryAnswer, String>> {
        Box::pin(async move {
            self.asked.lock().unwrap().push(market);
            let national =
                self.nationals.get(&market).ok_or_else(|| format!("no national system {market}"))?;
            let pc = ProductCode::new(
                Scheme::parse(&query.scheme).map_err(|e| e.to_string())?,
                &query.product_code,
            )
            .map_err(|e| e.to_string())?;
            let serial = Serial::new(&query.serial).map_err(|e| e.to_string())?;
            let pack = national.pack_state(&pc, &serial).await.map_err(|e| e.to_string())?;
            Ok(PackQueryAnswer { market: market.to_string(), pack })
        })
    }
}

/// One POST to a callback URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// The URL.
    pub url: String,
    /// The body.
    pub body: String,
    /// The signature header.
    pub signature: String,
    /// What the fake answered.
    pub status: u16,
}

/// An OBP's callback endpoint: answers each POST with the next status queued, then 200.
#[derive(Default)]
pub struct FakeCallbacks {
    answers: Mutex<Vec<u16>>,
    /// Every POST, in order.
    pub posted: Mutex<Vec<Posted>>,
}

impl FakeCallbacks {
    /// The next POSTs are answered with these statuses, in order.
    pub fn answer(&self, statuses: &[u16]) {
        self.answers.lock().unwrap().extend_from_slice(statuses);
    }

    /// Every POST so far.
    pub fn posts(&self) -> Vec<Posted> {
        self.posted.lock().unwrap().clone()
    }
}

impl CallbackSender for FakeCallbacks {
    fn post(&self, url: &str, body: String, signature: String) -> BoxFuture<'_, Result<u16, String>> {
        let url = url.to_owned();
        Box::pin(async move {
            let status = {
                let mut a = self.answers.lock().unwrap();
                if a.is_empty() { 200 } else { a.remove(0) }
            };
            self.posted.lock().unwrap().push(Posted { url, body, signature, status });
            Ok(status)
        })
    }
}

/// A hub, national systems for DE and FR, and the link between them.
pub struct World {
    /// Each national system's link to the hub.
    pub to_hub: BTreeMap<MarketCode, Arc<ToHub>>,
    /// The hub's inter-market route.
    pub queries: Arc<TestQueries>,
    /// The OBPs' callback endpoints.
    pub callbacks: Arc<FakeCallbacks>,
    /// The hub.
    pub hub: Arc<Hub>,
    /// Its store.
    pub hub_store: Arc<SqliteHubStore>,
    /// The national systems.
    pub nationals: BTreeMap<MarketCode, Arc<National>>,
    national_stores: BTreeMap<MarketCode, Arc<MemStore>>,
    chunk_size: usize,
    /// The link.
    pub link: Arc<TestLink>,
    /// The one clock.
    pub clock: Arc<FakeClock>,
    /// Where the databases are.
    pub dir: TempDir,
}

impl Drop for World {
    fn drop(&mut self) {
        self.hub_store.close();
        for s in self.national_stores.values() {
            s.close();
        }
    }
}

/// The key that signs the test hub's audit checkpoints.
pub fn signer() -> Arc<AuditSigner> {
    Arc::new(AuditSigner { key: ed25519_dalek::SigningKey::from_bytes(&[7; 32]) })
}

/// 2026-11-29T10:00:00Z.
pub fn start() -> Timestamp {
    Timestamp::start_of(Date::new(2026, 11, 29).expect("a date")).plus(Duration::from_secs(10 * 3600))
}

/// A world with the default chunk size and both OBPs on-boarded.
pub async fn world() -> World {
    world_with(10_000).await
}

/// A world whose hub cuts uploads into chunks of `chunk_size` serials.
pub async fn world_with(chunk_size: usize) -> World {
    let dir = TempDir::new();
    let clock = Arc::new(FakeClock::at(start()));
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let mut national_stores = BTreeMap::new();
    for market in ["DE", "FR"] {
        // The national systems are not under test here: they keep their data in memory.
        let store = Arc::new(MemStore::new(openmvs_store_mem::Options {
            signing_key: signer().key.clone(),
            clock: dyn_clock.clone(),
            checkpoints: openmvs_store::CheckpointOptions::default(),
        }));
        national_stores.insert(m(market), store);
    }
    let hub_store = open_hub_store(&dir, &dyn_clock);
    let callbacks = Arc::new(FakeCallbacks::default());
    let (to_hub, queries, hub, nationals, link) =
        wire(&national_stores, &hub_store, &clock, chunk_size, &callbacks).await;
    hub.register_obp(OBP, "One Pharma GmbH").await.expect("register");
    hub.register_obp(OTHER_OBP, "Two Pharma SA").await.expect("register");
    World {
        to_hub,
        queries,
        callbacks,
        hub,
        hub_store,
        nationals,
        national_stores,
        chunk_size,
        link,
        clock,
        dir,
    }
}

/// The hub's store in `dir`.
fn open_hub_store(dir: &TempDir, clock: &Arc<dyn Clock>) -> Arc<SqliteHubStore> {
    Arc::new(
        SqliteHubStore::open(HubOptions {
            path: dir.0.join("hub.db"),
            signer: signer(),
            clock: clock.clone(),
            on_group: None,
            checkpoints: openmvs_store::CheckpointOptions::default(),
        })
        .expect("open the hub store"),
    )
}

/// What a start of the world's processes makes: national systems and a hub over the stores,
/// and the links between them.
type Wired = (
    BTreeMap<MarketCode, Arc<ToHub>>,
    Arc<TestQueries>,
    Arc<Hub>,
    BTreeMap<MarketCode, Arc<National>>,
    Arc<TestLink>,
);

async fn wire(
    national_stores: &BTreeMap<MarketCode, Arc<MemStore>>,
    hub_store: &Arc<SqliteHubStore>,
    clock: &Arc<FakeClock>,
    chunk_size: usize,
    callbacks: &Arc<FakeCallbacks>,
) -> Wired {
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let mut nationals = BTreeMap::new();
    let mut to_hub = BTreeMap::new();
    for (market, store) in national_stores {
        let link = Arc::new(ToHub { market: *market, hub: OnceLock::new() });
        to_hub.insert(*market, link.clone());
        let national =
            National::new(store.clone(), dyn_clock.clone(), NationalConfig::new(*market), Some(link))
                .await
                .expect("start a national system");
        nationals.insert(*market, Arc::new(national));
    }
    let link = Arc::new(TestLink {
        nationals: nationals.clone(),
        down: Mutex::new(BTreeSet::new()),
        hanging: Mutex::new(BTreeSet::new()),
        hung: tokio::sync::Notify::new(),
        log: Mutex::new(BTreeMap::new()),
        stop_after_delivery: Mutex::new(None),
    });
    let mut config = HubConfig::new([42; 32]);
    config.chunk_size = chunk_size;
    let queries = Arc::new(TestQueries { nationals: nationals.clone(), asked: Mutex::new(Vec::new()) });
    let hub = Arc::new(
        Hub::new(hub_store.clone(), dyn_clock, config, Some(link.clone()))
            .with_queries(queries.clone())
            .with_callbacks(callbacks.clone()),
    );
    for l in to_hub.values() {
        l.hub.set(Arc::downgrade(&hub)).unwrap_or_else(|_| panic!("the hub is set once"));
    }
    (to_hub, queries, hub, nationals, link)
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

/// Complete master data for `markets`.
pub fn raw_product(markets: &[&str]) -> RawProduct {
    RawProduct {
        scheme: s("GTIN"),
        name: s("Examplomab 10 mg tablets"),
        common_name: s("examplomab"),
        form: s("TABLET"),
        strength: s("10 mg"),
        pack_type: s("BLISTER"),
        pack_size: s("30"),
        markets: Some(
            markets
                .iter()
                .map(|mk| RawMarket {
                    market: s(mk),
                    national_code: Some(format!("{mk}-03752864")),
                    mah_name: s("Example Pharma GmbH"),
                    mah_address: s("Beispielstr. 1, 10115 Berlin"),
                    wholesalers: vec![RawWholesaler { id: s("W1"), name: s("Grosso AG") }],
                })
                .collect(),
        ),
    }
}

impl World {
    /// The national system of `market`.
    pub fn national(&self, market: &str) -> &Arc<National> {
        &self.nationals[&m(market)]
    }

    /// The product for `markets`, with batch [`BATCH`] for all of them.
    pub async fn product_and_batch(&self, markets: &[&str]) {
        self.hub.put_product(OBP, GTIN, &raw_product(markets)).await.expect("product");
        self.hub.put_batch(OBP, GTIN, BATCH, EXPIRY, None).await.expect("batch");
    }

    /// Uploads `lines` for [`BATCH`].
    pub async fn upload(&self, lines: Vec<String>) -> UploadAccepted {
        self.hub.upload_serials(OBP, GTIN, BATCH, IterLines(lines.into_iter())).await.expect("upload")
    }

    /// Runs the relay until a pass acknowledges nothing.
    pub async fn relay_all(&self) -> usize {
        let mut total = 0;
        loop {
            let n = self.hub.relay_once().await.expect("relay");
            if n == 0 {
                return total;
            }
            total += n;
        }
    }

    /// Runs the outbox relay of `market`'s national system (towards the hub) until a round
    /// acknowledges nothing.
    pub async fn national_relay(&self, market: &str) -> usize {
        let link = self.to_hub[&m(market)].clone();
        let mut total = 0;
        loop {
            let n = self.national(market).relay_once(link.as_ref()).await.expect("national relay");
            if n == 0 {
                return total;
            }
            total += n;
        }
    }

    /// Every process of the world killed and started again on the same data, the clock where
    /// it was: national systems and a hub that know nothing of their predecessors but what
    /// their stores committed (the hub's database is closed and opened again), linked as before
    /// (no market down or hanging). What the link saw before is forgotten.
    pub async fn restart(&mut self) {
        self.hub_store.close();
        let dyn_clock: Arc<dyn Clock> = self.clock.clone();
        self.hub_store = open_hub_store(&self.dir, &dyn_clock);
        let (to_hub, queries, hub, nationals, link) =
            wire(&self.national_stores, &self.hub_store, &self.clock, self.chunk_size, &self.callbacks).await;
        (self.to_hub, self.queries, self.hub, self.nationals, self.link) =
            (to_hub, queries, hub, nationals, link);
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// A pharmacy of `market` runs `command` on a pack of [`BATCH`].
    pub async fn pharmacy(&self, market: &str, command: Command, serial: &str) -> PackResponse {
        let actor = Actor {
            client_id: format!("pharmacy-{market}").into(),
            role: Role::Pharmacy,
            market: m(market),
            location: Location::new(&format!("PH-{market}-1")).expect("location"),
        };
        let req = PackRequest {
            client_trx_id: Some(format!("trx-{}", next())),
            scheme: s("GTIN"),
            product_code: s(GTIN),
            serial: s(serial),
            batch: s(BATCH),
            expiry: s(EXPIRY),
            scan: None,
            entry_mode: None,
        };
        let answer = self.national(market).pack(&actor, command, &req).await.expect("a processed request");
        PackResponse::from(&answer)
    }

    /// A pharmacy of `market` verifies a pack and gets its return code.
    pub async fn verify(&self, market: &str, serial: &str) -> String {
        self.pharmacy(market, Command::Verify, serial).await.return_code
    }

    /// A pharmacy of `market` supplies a pack and gets its return code.
    pub async fn supply(&self, market: &str, serial: &str) -> String {
        self.pharmacy(market, Command::Set(Operation::Supply), serial).await.return_code
    }

    /// Every text value of every table of the hub's database except `upload_rejections` (which
    /// echoes rejected lines to their OBP), read straight from the file, that contains `needle`.
    pub fn hub_text_containing(&self, needle: &str) -> Vec<String> {
        let c = rusqlite::Connection::open_with_flags(
            self.dir.0.join("hub.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the hub database");
        let tables: Vec<String> = c
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(tables.iter().any(|t| t == "outbox"), "{tables:?}");
        let mut found = Vec::new();
        for t in tables.iter().filter(|t| *t != "upload_rejections") {
            let columns: Vec<String> = c
                .prepare(&format!("SELECT name FROM pragma_table_info('{t}')"))
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            for col in columns {
                let sql = format!(
                    "SELECT \"{col}\" FROM \"{t}\" WHERE typeof(\"{col}\") = 'text' AND instr(\"{col}\", ?1) > 0"
                );
                let mut st = c.prepare(&sql).unwrap();
                let hits = st.query_map([needle], |r| r.get::<_, String>(0)).unwrap();
                for h in hits {
                    found.push(format!("{t}.{col}: {}", h.unwrap().chars().take(80).collect::<String>()));
                }
            }
        }
        found
    }
}
