//! The parts of the simulated deployment and the links between them: a hub and national systems
//! on in-memory stores (the stores outlive the processes, as disks do), the production services
//! over them, and the ports that join them (`HubLink`, `NationalLink`, `NationalQueries`,
//! `CallbackSender`) implemented over the simulated network. Every message crosses it as JSON,
//! as it crosses the wire.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use openmvs_core::ids::{MarketCode, ProductCode, Scheme, Serial};
use openmvs_core::time::Clock;
use openmvs_hub::{CallbackSender, Hub, HubConfig, NationalLink, NationalQueries};
use openmvs_national::clock::FakeClock;
use openmvs_national::{HubLink, National, NationalConfig};
use openmvs_store::BoxFuture;
use openmvs_store_mem::{MemHubStore, MemStore};
use openmvs_wire::api::PackResponse;
use openmvs_wire::hub::{
    Delivery, DeliveryAck, IntermarketAnswer, IntermarketRequest, PackQuery, PackQueryAnswer,
};
use serde_json::Value;
use tokio::sync::Notify;

use crate::net::{Fate, Held, Net, Part};

/// Locks `m`, whatever a panicking holder left.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the OBP's callback endpoint received.
#[derive(Debug, Default)]
pub struct ObpInbox {
    /// POSTs received (copies included).
    pub posts: u64,
    /// Every event received: `event_id` -> (kind, alert id if an alert event), and how often.
    pub events: BTreeMap<String, (String, Option<String>, u64)>,
}

impl ObpInbox {
    fn receive(&mut self, body: &str) {
        self.posts += 1;
        let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        for e in v["events"].as_array().into_iter().flatten() {
            let id = e["event_id"].as_str().unwrap_or_default().to_owned();
            let kind = e["event"].as_str().unwrap_or_default().to_owned();
            let alert = (kind == "alert").then(|| e["alert"]["id"].as_str().unwrap_or_default().to_owned());
            self.events.entry(id).or_insert((kind, alert, 0)).2 += 1;
        }
    }
}

/// What every link shares: the network, the processes running now, the OBP's endpoint and the
/// trace.
pub struct Shared {
    /// The network.
    pub net: Mutex<Net>,
    nationals: Mutex<BTreeMap<MarketCode, Arc<National>>>,
    hub: Mutex<Option<Arc<Hub>>>,
    /// The OBP's callback endpoint.
    pub obp: Mutex<ObpInbox>,
    /// Lines of the trace, in order.
    pub trace: Mutex<Vec<String>>,
    /// Set by a link whose sender died while it waited; the schedule kills that process.
    died: Mutex<Option<Part>>,
    /// Notified when a sender dies.
    pub died_notice: Notify,
}

impl Shared {
    fn new(net: Net) -> Shared {
        Shared {
            net: Mutex::new(net),
            nationals: Mutex::new(BTreeMap::new()),
            hub: Mutex::new(None),
            obp: Mutex::new(ObpInbox::default()),
            trace: Mutex::new(Vec::new()),
            died: Mutex::new(None),
            died_notice: Notify::new(),
        }
    }

    /// Adds a line to the trace.
    pub fn trace(&self, line: String) {
        lock(&self.trace).push(line);
    }

    fn fate(&self, from: Part, to: Part, may_die: bool) -> Fate {
        let fate = lock(&self.net).fate(from, to, may_die);
        if let Some(fault) = fate.fault() {
            self.trace(format!("  net {from}->{to}: {fault}"));
        }
        fate
    }

    /// The fate of a call that no sender dies in.
    pub fn fate_of(&self, from: Part, to: Part) -> Fate {
        self.fate(from, to, false)
    }

    /// A link from `market`'s national system to the hub, for its relay.
    pub fn hub_link(self: &Arc<Self>, market: MarketCode) -> Arc<dyn HubLink> {
        Arc::new(ToHub { market, shared: self.clone() })
    }

    fn hold(&self, call: Held) {
        lock(&self.net).hold(call);
    }

    /// The sender that died while it waited, once.
    pub fn take_died(&self) -> Option<Part> {
        lock(&self.died).take()
    }

    async fn die(&self, part: Part) -> ! {
        *lock(&self.died) = Some(part);
        self.died_notice.notify_one();
        std::future::pending().await
    }

    /// The national system of `market` running now.
    pub fn national(&self, market: MarketCode) -> Result<Arc<National>, String> {
        lock(&self.nationals).get(&market).cloned().ok_or_else(|| format!("no national system {market}"))
    }

    /// The hub running now.
    pub fn hub(&self) -> Result<Arc<Hub>, String> {
        lock(&self.hub).clone().ok_or_else(|| "no hub".to_owned())
    }

    /// Delivers a call the network held; its answer goes nowhere. Returns what the receiver said,
    /// for the trace.
    pub async fn arrive(&self, call: Held) -> String {
        let r = match call {
            Held::ToMarket(m, d) => to_market(self, m, &d).await.map(|a| statuses(&a)),
            Held::ToHub(m, d) => to_hub(self, m, &d).await.map(|a| statuses(&a)),
            Held::Intermarket(r) => match self.hub() {
                Ok(h) => h.intermarket(r).await.map(|a| format!("{:?}", a.market)).map_err(|e| e.to_string()),
                Err(e) => Err(e),
            },
            Held::Query(m, r) => query(self, m, &r).await.map(|a| format!("{:?}", a.market)),
            Held::Callback(body) => {
                lock(&self.obp).receive(&body);
                Ok("200".to_owned())
            }
            Held::Pack { .. } => Err("a terminal's request arrives through the schedule".to_owned()),
        };
        r.unwrap_or_else(|e| format!("error: {e}"))
    }
}

fn statuses(a: &DeliveryAck) -> String {
    let s: Vec<&str> = a.results.iter().map(|r| r.status.as_str()).collect();
    s.join(",")
}

/// The delivery as the receiver reads it off the wire.
fn over_the_wire(d: &Delivery) -> Result<Delivery, String> {
    let json = serde_json::to_string(d).map_err(|e| e.to_string())?;
    serde_json::from_str(&json).map_err(|e| format!("the delivery does not read back: {e}"))
}

async fn to_market(s: &Shared, market: MarketCode, d: &Delivery) -> Result<DeliveryAck, String> {
    // On the way: whatever else runs on this thread goes on meanwhile.
    tokio::task::yield_now().await;
    let d = over_the_wire(d)?;
    s.national(market)?.apply_delivery(&d).await.map_err(|e| e.to_string())
}

async fn to_hub(s: &Shared, market: MarketCode, d: &Delivery) -> Result<DeliveryAck, String> {
    // On the way: whatever else runs on this thread goes on meanwhile.
    tokio::task::yield_now().await;
    let d = over_the_wire(d)?;
    s.hub()?.apply_from_national(market, &d).await.map_err(|e| e.to_string())
}

async fn hub_intermarket(s: &Shared, req: &IntermarketRequest) -> Result<IntermarketAnswer, String> {
    // On the way: whatever else runs on this thread goes on meanwhile.
    tokio::task::yield_now().await;
    s.hub()?.intermarket(req.clone()).await.map_err(|e| e.to_string())
}

async fn obp_receives(s: &Shared, body: &str) -> Result<u16, String> {
    // On the way: whatever else runs on this thread goes on meanwhile.
    tokio::task::yield_now().await;
    lock(&s.obp).receive(body);
    Ok(200)
}

async fn query(
    s: &Shared,
    market: MarketCode,
    req: &IntermarketRequest,
) -> Result<IntermarketAnswer, String> {
    // On the way: whatever else runs on this thread goes on meanwhile.
    tokio::task::yield_now().await;
    let answer = s.national(market)?.intermarket(req).await.map_err(|e| e.to_string())?;
    let response = answer.as_ref().map(PackResponse::from);
    Ok(IntermarketAnswer {
        market: response.as_ref().map(|_| market.to_string()),
        response,
        unreachable: Vec::new(),
    })
}

/// What a link does with a call, once its fate is drawn.
enum Plan {
    /// Send it and answer what came back.
    Send,
    /// Answer this error without sending.
    Fail(String),
    /// Send it, then answer this error (the answer was lost).
    SendThenFail(String),
    /// The sender dies; the call arrived first when `arrived`.
    Die { arrived: bool },
}

/// Draws the fate of a call from `from` to `to` and holds a copy where the fate says.
fn plan(s: &Shared, from: Part, to: Part, may_die: bool, held: impl FnOnce() -> Held) -> Plan {
    match s.fate(from, to, may_die) {
        Fate::Delivered => Plan::Send,
        Fate::Unreachable => Plan::Fail(format!("{to} is unreachable from {from}")),
        Fate::RequestLost => Plan::Fail("timed out: the request was lost".to_owned()),
        Fate::AnswerLost => Plan::SendThenFail("timed out: the answer was lost".to_owned()),
        Fate::Duplicated => {
            s.hold(held());
            Plan::Send
        }
        Fate::Delayed => {
            s.hold(held());
            Plan::Fail("timed out: the request is late".to_owned())
        }
        Fate::SenderDies { arrived } => Plan::Die { arrived },
    }
}

/// Makes a call through the network: `$send` is the call's future, made again for each sending.
macro_rules! through {
    ($s:expr, $from:expr, $to:expr, $may_die:expr, $held:expr, $send:expr) => {{
        let (s, from): (&Shared, Part) = ($s, $from);
        match plan(s, from, $to, $may_die, || $held) {
            Plan::Send => $send.await,
            Plan::Fail(e) => Err(e),
            Plan::SendThenFail(e) => {
                let _ = $send.await;
                Err(e)
            }
            Plan::Die { arrived } => {
                if arrived {
                    let _ = $send.await;
                }
                s.die(from).await
            }
        }
    }};
}

/// A national system's link to the hub.
struct ToHub {
    market: MarketCode,
    shared: Arc<Shared>,
}

impl HubLink for ToHub {
    fn deliver(&self, delivery: Delivery) -> BoxFuture<'_, Result<DeliveryAck, String>> {
        Box::pin(async move {
            let (m, s) = (self.market, self.shared.as_ref());
            through!(
                s,
                Part::Market(m),
                Part::Hub,
                true,
                Held::ToHub(m, delivery.clone()),
                to_hub(s, m, &delivery)
            )
        })
    }

    fn intermarket(&self, req: IntermarketRequest) -> BoxFuture<'_, Result<IntermarketAnswer, String>> {
        Box::pin(async move {
            let s = self.shared.as_ref();
            through!(
                s,
                Part::Market(self.market),
                Part::Hub,
                false,
                Held::Intermarket(req.clone()),
                hub_intermarket(s, &req)
            )
        })
    }
}

/// The hub's link to the national systems, for messages.
struct ToMarkets(Arc<Shared>);

impl NationalLink for ToMarkets {
    fn deliver(&self, market: MarketCode, delivery: Delivery) -> BoxFuture<'_, Result<DeliveryAck, String>> {
        Box::pin(async move {
            let s = self.0.as_ref();
            through!(
                s,
                Part::Hub,
                Part::Market(market),
                true,
                Held::ToMarket(market, delivery.clone()),
                to_market(s, market, &delivery)
            )
        })
    }
}

/// The hub's link to the national systems, for inter-market requests and pack queries.
struct Queries(Arc<Shared>);

impl NationalQueries for Queries {
    fn intermarket(
        &self,
        market: MarketCode,
        req: IntermarketRequest,
    ) -> BoxFuture<'_, Result<IntermarketAnswer, String>> {
        Box::pin(async move {
            let s = self.0.as_ref();
            through!(
                s,
                Part::Hub,
                Part::Market(market),
                false,
                Held::Query(market, req.clone()),
                query(s, market, &req)
            )
        })
    }

    fn pack_state(&self, market: MarketCode, q: PackQuery) -> BoxFuture<'_, Result<PackQueryAnswer, String>> {
        Box::pin(async move {
            let s = self.0.as_ref();
            if lock(&s.net).is_cut(Part::Hub, Part::Market(market)) {
                return Err(format!("{market} is unreachable from the hub"));
            }
            let scheme = Scheme::parse(&q.scheme).map_err(|e| e.to_string())?;
            let pc = ProductCode::new(scheme, &q.product_code).map_err(|e| e.to_string())?;
            let serial = Serial::new(&q.serial).map_err(|e| e.to_string())?;
            let pack = s.national(market)?.pack_state(&pc, &serial).await.map_err(|e| e.to_string())?;
            Ok(PackQueryAnswer { market: market.to_string(), pack })
        })
    }
}

/// The hub's callback sender: the OBP's endpoint answers 200 to whatever arrives.
struct Callbacks(Arc<Shared>);

impl CallbackSender for Callbacks {
    fn post(&self, _url: &str, body: String, _signature: String) -> BoxFuture<'_, Result<u16, String>> {
        Box::pin(async move {
            let s = self.0.as_ref();
            through!(s, Part::Hub, Part::Obp, true, Held::Callback(body.clone()), obp_receives(s, &body))
        })
    }
}

/// The deployment: stores that outlive processes, and the processes running on them now.
pub struct World {
    /// What the links share.
    pub shared: Arc<Shared>,
    /// The one clock.
    pub clock: Arc<FakeClock>,
    /// Each market's store.
    pub stores: BTreeMap<MarketCode, Arc<MemStore>>,
    /// The hub's store.
    pub hub_store: Arc<MemHubStore>,
    /// The key that signs every audit checkpoint.
    pub signing: ed25519_dalek::SigningKey,
    /// Processes started, per part (the first start included).
    pub starts: BTreeMap<Part, u64>,
}

impl Drop for World {
    /// The processes hold links that hold what they share, which holds the processes: let go of
    /// them, so that a finished schedule frees everything.
    fn drop(&mut self) {
        lock(&self.shared.nationals).clear();
        *lock(&self.shared.hub) = None;
    }
}

/// The hub's key for serial digests and callback secrets in the simulation.
const HUB_KEY: [u8; 32] = [42; 32];
/// Serials per chunk at the hub: small, so that an upload is several messages.
const CHUNK: usize = 40;

impl World {
    /// Empty stores for the hub and `markets`, and a process on each.
    pub async fn new(markets: &[MarketCode], clock: Arc<FakeClock>, net: Net) -> Result<World, String> {
        let signing = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let options = || openmvs_store_mem::Options {
            signing_key: signing.clone(),
            clock: dyn_clock.clone(),
            checkpoints: openmvs_store::CheckpointOptions::default(),
        };
        let stores = markets.iter().map(|m| (*m, Arc::new(MemStore::new(options())))).collect();
        let hub_store = Arc::new(MemHubStore::new(options()));
        let mut world = World {
            shared: Arc::new(Shared::new(net)),
            clock,
            stores,
            hub_store,
            signing,
            starts: BTreeMap::new(),
        };
        for m in markets {
            world.start(Part::Market(*m)).await?;
        }
        world.start(Part::Hub).await?;
        Ok(world)
    }

    /// Starts `part`'s process on its store, in place of the one before (which is gone with
    /// everything it held in memory; only what its store committed remains).
    pub async fn start(&mut self, part: Part) -> Result<(), String> {
        let clock: Arc<dyn Clock> = self.clock.clone();
        match part {
            Part::Market(m) => {
                let store = self.stores.get(&m).ok_or_else(|| format!("no store for {m}"))?.clone();
                let link = Arc::new(ToHub { market: m, shared: self.shared.clone() });
                let national = National::new(store, clock, NationalConfig::new(m), Some(link))
                    .await
                    .map_err(|e| format!("{m} does not start: {e}"))?;
                lock(&self.shared.nationals).insert(m, Arc::new(national));
            }
            Part::Hub => {
                let mut config = HubConfig::new(HUB_KEY);
                config.chunk_size = CHUNK;
                let s = &self.shared;
                let hub =
                    Hub::new(self.hub_store.clone(), clock, config, Some(Arc::new(ToMarkets(s.clone()))))
                        .with_queries(Arc::new(Queries(s.clone())))
                        .with_callbacks(Arc::new(Callbacks(s.clone())));
                *lock(&s.hub) = Some(Arc::new(hub));
            }
            Part::Terminals(_) | Part::Obp => return Err(format!("{part} is not a process")),
        }
        *self.starts.entry(part).or_default() += 1;
        Ok(())
    }

    /// The markets.
    pub fn markets(&self) -> Vec<MarketCode> {
        self.stores.keys().copied().collect()
    }
}
