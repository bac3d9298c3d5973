//! One schedule: the catalogue set up on a calm network, then `steps` steps drawn from the seed
//! (a terminal's request, a relay round at a national system or the hub, a held call arriving or
//! lost, the clock moving, a process killed and started again, a partition made or healed, an
//! NMVO or the OBP working an alert, the OBP uploading a batch), then the heal (every cut joined,
//! every held call delivered, every terminal's last request answered, the relays run until the
//! outboxes are empty), then the invariants.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openmvs_core::ids::{ClientId, Location, MarketCode};
use openmvs_core::master_data::{RawMarket, RawProduct, RawWholesaler};
use openmvs_core::return_code::ReturnCode;
use openmvs_core::roles::Role;
use openmvs_core::time::Clock;
use openmvs_hub::IterLines;
use openmvs_national::clock::FakeClock;
use openmvs_national::{Actor, National};
use openmvs_wire::api::{AlertCommentRequest, AlertStatusRequest};
use openmvs_workload::tally::{Answer, Outcome};
use openmvs_workload::{Delivery, Rng, Workload};

use crate::net::{Fate, Held, Net, Part, Profile};
use crate::terminals::{Answered, Terminal, read, send};
use crate::world::{World, lock};

/// The OBP that owns every product.
pub const OBP: &str = "obp-sim";
/// Its callback URL.
const CALLBACK_URL: &str = "https://obp-sim.example/events";
/// Relay passes after the heal within which every outbox must be empty: one pass sends what
/// waited (a message is sent at the first pass after its backoff ends), and each hop a message
/// causes (a market's change to the hub, the hub's to the other markets and to the OBP, an A24
/// those raise back to the hub) takes one more.
pub const HEAL_BOUND: u64 = 4;
/// Relay passes after which the heal gives up.
pub const HEAL_ROUNDS: u64 = 60;
/// How far the clock moves between heal rounds: past the longest relay backoff.
pub const HEAL_TICK: Duration = Duration::from_secs(61);

/// A batch the OBP uploads during the schedule, which every target market must end up holding.
pub struct Uploaded {
    /// The product.
    pub gtin: String,
    /// Its serials.
    pub serials: Vec<String>,
    /// The markets of the product.
    pub markets: Vec<MarketCode>,
}

/// A schedule being run.
pub struct Sim {
    /// The workload the terminals run.
    pub w: Workload,
    /// The deployment.
    pub world: World,
    rng: Rng,
    /// The step being run (0 during the setup).
    pub step: u64,
    terms: Vec<Terminal>,
    phase: u8,
    /// The outcome of each workload request, once final: (step, request).
    pub answers: BTreeMap<(usize, usize), Outcome>,
    answered: Answered,
    /// Invariants broken, as found.
    pub violations: Vec<String>,
    /// Processes killed, per part.
    pub kills: BTreeMap<String, u64>,
    /// Batches uploaded during the schedule.
    pub uploads: Vec<Uploaded>,
    /// Actions taken, by kind.
    pub actions: BTreeMap<&'static str, u64>,
    /// Relay rounds the heal took, and the virtual time it took.
    pub heal: (u64, Duration),
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

/// Master data for a product of the workload.
fn raw_product(name: &str, markets: &[MarketCode]) -> RawProduct {
    RawProduct {
        scheme: s("GTIN"),
        name: s(name),
        common_name: s("simulatin"),
        form: s("TABLET"),
        strength: s("10 mg"),
        pack_type: s("BLISTER"),
        pack_size: s("30"),
        markets: Some(
            markets
                .iter()
                .map(|m| RawMarket {
                    market: s(m.as_str()),
                    national_code: Some(format!("{m}-0001")),
                    mah_name: s("Sim Pharma"),
                    mah_address: s("Simstrasse 1, Berlin"),
                    wholesalers: vec![RawWholesaler { id: s("W1"), name: s("Grosso") }],
                })
                .collect(),
        ),
    }
}

impl Sim {
    /// A deployment for `w` on `clock`, the catalogue uploaded and distributed on a calm network,
    /// then the network given `profile`.
    pub async fn new(
        w: Workload,
        clock: Arc<FakeClock>,
        mut rng: Rng,
        profile: Profile,
    ) -> Result<Sim, String> {
        let net = Net::new(rng.fork(), Profile::CALM);
        let world = World::new(&w.markets, clock, net).await?;
        let terms = Terminal::all(&w);
        let mut sim = Sim {
            w,
            world,
            rng,
            step: 0,
            terms,
            phase: 0,
            answers: BTreeMap::new(),
            answered: Answered::default(),
            violations: Vec::new(),
            kills: BTreeMap::new(),
            uploads: Vec::new(),
            actions: BTreeMap::new(),
            heal: (0, Duration::ZERO),
        };
        sim.catalogue().await?;
        lock(&sim.world.shared.net).set_profile(profile);
        Ok(sim)
    }

    fn trace(&self, what: String) {
        let at = self.world.clock.now().unix_millis();
        self.world.shared.trace(format!("{:05} {at} {what}", self.step));
    }

    fn hub(&self) -> Result<Arc<openmvs_hub::Hub>, String> {
        self.world.shared.hub()
    }

    fn national(&self, m: MarketCode) -> Result<Arc<National>, String> {
        self.world.shared.national(m)
    }

    /// The OBP on-boarded, its callback set, every product, batch and serial uploaded and recalls
    /// made, and the relays run until every market holds them.
    async fn catalogue(&mut self) -> Result<(), String> {
        let hub = self.hub()?;
        let e = |e: openmvs_core::error::ApiError| e.to_string();
        hub.register_obp(OBP, "Sim Pharma").await.map_err(e)?;
        hub.set_callback(OBP, CALLBACK_URL).await.map_err(e)?;
        for p in &self.w.products {
            hub.put_product(OBP, &p.gtin, &raw_product(&p.name, &p.markets)).await.map_err(e)?;
            for b in &p.batches {
                hub.put_batch(OBP, &p.gtin, &b.name, &b.expiry, None).await.map_err(e)?;
                hub.upload_serials(OBP, &p.gtin, &b.name, IterLines(b.serials.clone().into_iter()))
                    .await
                    .map_err(e)?;
            }
        }
        for p in &self.w.products {
            for b in p.batches.iter().filter(|b| b.recalled) {
                let markets: Vec<String> = p.markets.iter().map(|m| m.to_string()).collect();
                hub.recall(OBP, &p.gtin, &b.name, "quality defect", &markets).await.map_err(e)?;
            }
        }
        let (rounds, _) = self.drain().await?;
        self.trace(format!("setup: catalogue distributed in {rounds} relay rounds"));
        Ok(())
    }

    /// Runs `steps` steps.
    pub async fn run(&mut self, steps: u64) -> Result<(), String> {
        for _ in 0..steps {
            self.step += 1;
            self.one_step().await?;
        }
        Ok(())
    }

    async fn one_step(&mut self) -> Result<(), String> {
        let held = lock(&self.world.shared.net).held();
        // Weights of: terminal request, national relay, hub relay, held call arrives, held call
        // lost, clock, kill, partition, join, NMVO alert work, OBP alert work, OBP upload, and a
        // terminal's request racing a relay round.
        let weights =
            [35, 12, 12, if held > 0 { 8 } else { 0 }, if held > 0 { 2 } else { 0 }, 8, 2, 2, 3, 3, 3, 1, 10];
        match self.rng.weighted(&weights) {
            0 => {
                self.terminal_step(true, None).await?;
            }
            1 => {
                let m = self.any_market();
                self.national_relay(m).await?;
            }
            2 => {
                self.hub_relay().await?;
            }
            3 => self.held_arrives().await?,
            4 => {
                let i = self.rng.index(held.max(1));
                let taken = lock(&self.world.shared.net).take_held(i);
                if let Some(call) = taken {
                    self.count("held_lost");
                    lock(&self.world.shared.net).count("lost_for_good");
                    self.trace(format!("net: lost for good: {}", call.describe()));
                }
            }
            5 => self.tick(),
            6 => {
                let part = if self.rng.percent(30) { Part::Hub } else { Part::Market(self.any_market()) };
                self.kill(part).await?;
            }
            7 => self.partition(),
            8 => self.join(),
            9 => self.nmvo_works_an_alert().await?,
            10 => self.obp_works_an_alert().await?,
            11 => self.obp_uploads().await?,
            _ => {
                let part = if self.rng.percent(50) { Part::Hub } else { Part::Market(self.any_market()) };
                self.terminal_step(true, Some(part)).await?;
            }
        }
        Ok(())
    }

    fn count(&mut self, what: &'static str) {
        *self.actions.entry(what).or_default() += 1;
    }

    fn any_market(&mut self) -> MarketCode {
        let markets = self.world.markets();
        markets[self.rng.index(markets.len())]
    }

    /// The clock moves: mostly by a moment, sometimes by minutes.
    fn tick(&mut self) {
        let ms =
            if self.rng.percent(10) { 60_000 + self.rng.below(600_000) } else { 100 + self.rng.below(5_000) };
        self.world.clock.advance(Duration::from_millis(ms));
        self.sign_due();
        self.count("clock");
        self.trace(format!("clock +{ms} ms"));
    }

    fn sign_due(&self) {
        for s in self.world.stores.values() {
            s.sign_due();
        }
        self.world.hub_store.sign_due();
    }

    /// Whether every terminal has finished the current phase; moves to the next if so.
    fn phase_done(&mut self) -> bool {
        if self.terms.iter().any(|t| t.has_work(self.phase)) {
            return false;
        }
        if self.phase == 0 {
            self.phase = 1;
            self.trace("terminals: phase 1 begins".to_owned());
            return !self.terms.iter().any(|t| t.has_work(1));
        }
        true
    }

    /// A terminal with work sends its next request; `faults` false once the network has healed.
    /// False when no terminal has work left.
    async fn terminal_step(&mut self, faults: bool, race: Option<Part>) -> Result<bool, String> {
        if self.phase_done() {
            return Ok(false);
        }
        let ready: Vec<usize> =
            (0..self.terms.len()).filter(|&i| self.terms[i].has_work(self.phase)).collect();
        let t = ready[self.rng.index(ready.len())];
        let Some((si, ri)) = self.terms[t].next(self.phase) else { return Ok(true) };
        self.count("request");
        let market = self.terms[t].market();
        let fate = if faults {
            self.world.shared.fate_of(Part::Terminals(market), Part::Market(market))
        } else {
            Fate::Delivered
        };
        let r = self.w.steps[si].requests[ri].clone();
        let label = format!("terminal {t} {} {} {}", market, r.operation.as_str(), r.client_trx_id);
        let arrives = matches!(fate, Fate::Delivered | Fate::AnswerLost | Fate::Duplicated);
        let answer = match (arrives, race) {
            (true, None) => Some(self.deliver(t, si, ri).await?),
            (true, Some(part)) => Some(self.deliver_racing(t, si, ri, part).await?),
            (false, Some(Part::Hub)) => {
                self.hub_relay().await?;
                None
            }
            (false, Some(Part::Market(m))) => {
                self.national_relay(m).await?;
                None
            }
            (false, _) => None,
        };
        if matches!(fate, Fate::Duplicated | Fate::Delayed) {
            lock(&self.world.shared.net).hold(Held::Pack { terminal: t, market, step: si, request: ri });
        }
        let abandoned = r.delivery == Delivery::Abandoned;
        let unreachable = answer.as_ref().is_some_and(|(_, body)| {
            body["return_code"].as_str().and_then(ReturnCode::parse).is_some_and(ReturnCode::is_unreachable)
        });
        match (fate, answer) {
            (Fate::Delivered | Fate::Duplicated, Some((status, body)))
                if unreachable && !abandoned && r.delivery == Delivery::Answered =>
            {
                // The pharmacy may not decide on the pack: its software asks again later, with the
                // same client_trx_id (the national system keeps no answer of this kind).
                let rc = body["return_code"].as_str().unwrap_or_default().to_owned();
                self.count("unreachable_retry");
                self.trace(format!("{label} -> {status} {rc}: sent again later"));
                self.terms[t].retry = Some((si, ri));
            }
            (Fate::Delivered | Fate::Duplicated, Some((status, body))) if !abandoned => {
                let rc = body["return_code"].as_str().unwrap_or_default().to_owned();
                self.trace(format!("{label} -> {status} {rc}{}", alert_note(&body)));
                self.answers.insert((si, ri), read(status, &body, &r));
            }
            _ if abandoned => {
                self.trace(format!("{label} -> abandoned ({})", fate.fault().unwrap_or("sent")));
                self.answers.insert((si, ri), Outcome::Abandoned);
            }
            _ => {
                // No answer: the terminal sends the same request again later.
                self.trace(format!("{label} -> no answer ({})", fate.fault().unwrap_or("?")));
                self.terms[t].retry = Some((si, ri));
            }
        }
        Ok(true)
    }

    /// The request arrives at the national system; the idempotency of its answer is checked.
    async fn deliver(&mut self, t: usize, si: usize, ri: usize) -> Result<(u16, serde_json::Value), String> {
        let market = self.terms[t].market();
        let national = self.national(market)?;
        let r = &self.w.steps[si].requests[ri];
        let (status, body) = send(&national, &self.terms[t].actor, r).await;
        if let Some(v) = self.answered.check(t, r, status, &body) {
            self.violations.push(format!("step {}: {v}", self.step));
        }
        Ok((status, body))
    }

    async fn national_relay(&mut self, m: MarketCode) -> Result<u64, String> {
        self.count("relay");
        let sent = relay_round(&self.world.shared, Part::Market(m)).await;
        self.after_relay(Part::Market(m), sent).await
    }

    async fn hub_relay(&mut self) -> Result<u64, String> {
        self.count("relay");
        let sent = relay_round(&self.world.shared, Part::Hub).await;
        self.after_relay(Part::Hub, sent).await
    }

    /// A terminal's request and a relay round of `part` at once: each runs until it waits on the
    /// network, then the other goes on, so a request decides and commits while a relay has claimed
    /// and is sending, and the reverse.
    async fn deliver_racing(
        &mut self,
        t: usize,
        si: usize,
        ri: usize,
        part: Part,
    ) -> Result<(u16, serde_json::Value), String> {
        self.count("race");
        let national = self.national(self.terms[t].market())?;
        let shared = self.world.shared.clone();
        let (actor, r) = (&self.terms[t].actor, &self.w.steps[si].requests[ri]);
        let ((status, body), sent) = tokio::join!(send(&national, actor, r), relay_round(&shared, part));
        if let Some(v) = self.answered.check(t, r, status, &body) {
            self.violations.push(format!("step {}: {v}", self.step));
        }
        self.after_relay(part, sent).await?;
        Ok((status, body))
    }

    async fn after_relay(&mut self, part: Part, sent: Result<usize, String>) -> Result<u64, String> {
        if let Some(dead) = self.world.shared.take_died() {
            self.trace(format!("relay {part}: the process died while sending"));
            self.restart(dead).await?;
            return Ok(0);
        }
        let n = sent.map_err(|e| format!("relay {part}: {e}"))? as u64;
        if n > 0 {
            self.trace(format!("relay {part}: {n} acknowledged"));
        }
        Ok(n)
    }

    async fn held_arrives(&mut self) -> Result<(), String> {
        let i = self.rng.index(lock(&self.world.shared.net).held().max(1));
        let taken = lock(&self.world.shared.net).take_held(i);
        let Some(call) = taken else { return Ok(()) };
        self.count("held_arrives");
        self.arrive(call).await
    }

    async fn arrive(&mut self, call: Held) -> Result<(), String> {
        let what = call.describe();
        let result = match call {
            Held::Pack { terminal, step, request, .. } => {
                let (status, body) = self.deliver(terminal, step, request).await?;
                format!("{status} {}", body["return_code"].as_str().unwrap_or_default())
            }
            other => self.world.shared.arrive(other).await,
        };
        self.trace(format!("net: late arrival {what} -> {result}"));
        Ok(())
    }

    /// Kills `part`'s process (everything it held in memory is gone) and starts it again.
    pub async fn kill(&mut self, part: Part) -> Result<(), String> {
        self.trace(format!("kill {part}"));
        self.restart(part).await
    }

    async fn restart(&mut self, part: Part) -> Result<(), String> {
        *self.kills.entry(part.to_string()).or_default() += 1;
        lock(&self.world.shared.net).count("crash");
        self.world.start(part).await
    }

    fn partition(&mut self) {
        let m = self.any_market();
        let (a, b) = match self.rng.below(3) {
            0 => (Part::Hub, Part::Market(m)),
            1 => (Part::Terminals(m), Part::Market(m)),
            _ => (Part::Hub, Part::Obp),
        };
        if lock(&self.world.shared.net).partition(a, b) {
            self.count("partition");
            self.trace(format!("net: partition {a} | {b}"));
        }
    }

    fn join(&mut self) {
        let cuts = lock(&self.world.shared.net).cuts();
        if cuts.is_empty() {
            return;
        }
        let (a, b) = cuts[self.rng.index(cuts.len())];
        lock(&self.world.shared.net).join(a, b);
        self.count("join");
        self.trace(format!("net: joined {a} | {b}"));
    }

    pub(crate) fn nmvo(&self, m: MarketCode) -> Actor {
        Actor {
            client_id: ClientId::from(format!("nmvo-{m}")),
            role: Role::Nmvo,
            market: m,
            location: Location::new(&format!("{m}-NMVO")).expect("a valid location"),
        }
    }

    /// A status change or comment the NMVO of a market makes on one of its alerts.
    async fn nmvo_works_an_alert(&mut self) -> Result<(), String> {
        let m = self.any_market();
        let national = self.national(m)?;
        let actor = self.nmvo(m);
        let page = national
            .alerts(&actor, None, &Default::default(), Some(100), None)
            .await
            .map_err(|e| e.to_string())?;
        if page.alerts.is_empty() {
            return Ok(());
        }
        let a = &page.alerts[self.rng.index(page.alerts.len())];
        self.count("alert_work");
        let (status, classification) = self.next_status();
        let outcome = if self.rng.percent(30) {
            let req = AlertCommentRequest { text: format!("NMVO note at step {}", self.step) };
            national.comment_alert(&actor, a.id.as_str(), &req).await.map(|_| "commented".to_owned())
        } else {
            let req = AlertStatusRequest {
                status: status.to_owned(),
                classification: classification.map(str::to_owned),
                comment: None,
            };
            national
                .change_alert_status(&actor, a.id.as_str(), &req)
                .await
                .map(|v| v.status.as_str().to_owned())
        };
        let what = outcome.unwrap_or_else(|e| format!("refused {}", e.code.as_str()));
        self.trace(format!("NMVO {m} works alert {} {} -> {what}", a.code.as_str(), a.product_code));
        Ok(())
    }

    fn next_status(&mut self) -> (&'static str, Option<&'static str>) {
        match self.rng.below(4) {
            0 => ("INVESTIGATING", None),
            1 => ("ESCALATED", None),
            2 => ("CLOSED", Some("TECHNICAL_ERROR")),
            _ => ("CLOSED", Some("FALSIFICATION_CONFIRMED")),
        }
    }

    /// A status change or comment the OBP makes at the hub on one of its alerts.
    async fn obp_works_an_alert(&mut self) -> Result<(), String> {
        let hub = self.hub()?;
        let page =
            hub.alerts(OBP, None, &Default::default(), Some(100), None).await.map_err(|e| e.to_string())?;
        if page.alerts.is_empty() {
            return Ok(());
        }
        let a = &page.alerts[self.rng.index(page.alerts.len())];
        self.count("alert_work");
        let (status, classification) = self.next_status();
        let outcome = if self.rng.percent(30) {
            let text = format!("OBP note at step {}", self.step);
            hub.comment_alert(OBP, a.id.as_str(), &text).await.map(|_| "commented".to_owned())
        } else {
            hub.change_alert_status(OBP, a.id.as_str(), status, classification, None)
                .await
                .map(|v| v.status.as_str().to_owned())
        };
        let what = outcome.unwrap_or_else(|e| format!("refused {}", e.code.as_str()));
        self.trace(format!("OBP works alert {} {} -> {what}", a.code.as_str(), a.product_code));
        Ok(())
    }

    /// The OBP uploads a new batch of a product sold in every market.
    async fn obp_uploads(&mut self) -> Result<(), String> {
        let Some(p) = self.w.products.iter().max_by_key(|p| p.markets.len()) else { return Ok(()) };
        let (gtin, markets, expiry) = (p.gtin.clone(), p.markets.clone(), p.batches[0].expiry.clone());
        let n = self.uploads.len();
        let batch = format!("SIMB{n:04}");
        let count = 20 + self.rng.below(100) as usize;
        let serials: Vec<String> = (0..count).map(|i| format!("SIM{n:04}X{i:05}")).collect();
        let hub = self.hub()?;
        self.count("upload");
        let e = |e: openmvs_core::error::ApiError| e.to_string();
        hub.put_batch(OBP, &gtin, &batch, &expiry, None).await.map_err(e)?;
        hub.upload_serials(OBP, &gtin, &batch, IterLines(serials.clone().into_iter())).await.map_err(e)?;
        self.trace(format!("OBP uploads {gtin} {batch}: {count} serials"));
        self.uploads.push(Uploaded { gtin, serials, markets });
        Ok(())
    }

    /// Runs every relay until no outbox holds a message, moving the clock past any backoff
    /// between rounds; answers the rounds and the virtual time it took. Fails after
    /// [`HEAL_ROUNDS`].
    async fn drain(&mut self) -> Result<(u64, Duration), String> {
        let started = self.world.clock.now().unix_millis();
        for round in 1..=HEAL_ROUNDS {
            for m in self.world.markets() {
                while self.national_relay(m).await? > 0 {}
            }
            while self.hub_relay().await? > 0 {}
            if self.pending().await? == 0 {
                let took = self.world.clock.now().unix_millis() - started;
                return Ok((round, Duration::from_millis(took.max(0) as u64)));
            }
            self.world.clock.advance(HEAL_TICK);
            self.sign_due();
        }
        Err(format!(
            "the outboxes still hold {} messages after {HEAL_ROUNDS} heal rounds",
            self.pending().await?
        ))
    }

    /// Messages waiting in every outbox.
    pub async fn pending(&self) -> Result<u64, String> {
        let mut n = self.hub()?.outbox_pending().await.map_err(|e| e.to_string())?;
        for m in self.world.markets() {
            n += self.national(m)?.outbox_pending().await.map_err(|e| e.to_string())?;
        }
        Ok(n)
    }

    /// The network heals: every cut joined, every held call delivered, every terminal's requests
    /// answered, and the relays run until the outboxes are empty.
    pub async fn heal(&mut self) -> Result<(), String> {
        self.step += 1;
        self.trace("heal: the network is joined and calm".to_owned());
        {
            let mut net = lock(&self.world.shared.net);
            net.heal();
            net.set_profile(Profile::CALM);
        }
        loop {
            let Some(call) = lock(&self.world.shared.net).take_held(0) else { break };
            self.arrive(call).await?;
        }
        while self.terminal_step(false, None).await? {}
        match self.drain().await {
            Ok(heal) => {
                self.heal = heal;
                self.trace(format!(
                    "heal: outboxes empty after {} rounds, {} ms",
                    heal.0,
                    heal.1.as_millis()
                ));
            }
            Err(e) => self.violations.push(format!("convergence: {e}")),
        }
        self.sign_due();
        Ok(())
    }

    /// The final outcome of every workload request, for the tally.
    pub fn tally_answers(&self) -> Vec<Answer> {
        self.answers
            .iter()
            .map(|(&(step, request), outcome)| Answer { step, request, outcome: outcome.clone() })
            .collect()
    }
}

/// One relay round of `part`'s process (a national system's towards the hub, or the hub's towards
/// the markets and the OBP), ended early if the process dies while it sends.
async fn relay_round(shared: &Arc<crate::world::Shared>, part: Part) -> Result<usize, String> {
    match part {
        Part::Market(m) => {
            let national = shared.national(m)?;
            let link = shared.hub_link(m);
            tokio::select! {
                biased;
                r = national.relay_once(link.as_ref()) => r.map_err(|e| e.to_string()),
                () = shared.died_notice.notified() => Err("died".to_owned()),
            }
        }
        Part::Hub => {
            let hub = shared.hub()?;
            tokio::select! {
                biased;
                r = hub.relay_once() => r.map_err(|e| e.to_string()),
                () = shared.died_notice.notified() => Err("died".to_owned()),
            }
        }
        Part::Terminals(_) | Part::Obp => Err(format!("{part} has no relay")),
    }
}

fn alert_note(body: &serde_json::Value) -> String {
    match body["alert"]["code"].as_str() {
        Some(code) => format!(" alert {code}"),
        None => String::new(),
    }
}
