//! The load of the crash loop and what it checks: client tasks on the typed clients of
//! `openmvs-client` that send each request once (no answer is an unknown outcome, recorded),
//! the retry of every unknown operation with its `client_trx_id` after the restart, and the
//! checks once the system has healed.

// Shared by the crash loop and the failover test, which each use part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use openmvs_client::wire::api::{AuditRecordView, BulkRequest, BulkRow};
use openmvs_client::wire::obp::{BatchRequest, Mah, ProductMarket, ProductRequest};
use openmvs_client::{
    ClientError, EndUserClient, EndUserConfig, ObpClient, ObpConfig, PackInput, PollOptions, RetryPolicy,
};

use crate::cluster::{Cluster, Kind, System, admin};
use crate::common::{WAIT_LIMIT, Watched, eventually};

/// The product every pack is of, sold in both markets.
pub const PRODUCT: &str = "09501101530003";
/// The batch of the pool of packs the load works on.
pub const BATCH: &str = "CL0";
/// Its expiry.
pub const EXPIRY: &str = "301231";
/// A pack of the pool's batch that only [`Run::probe`] verifies.
const PROBE_SERIAL: &str = "PROBE0";
/// How long a probe waits for its answer: longer than any bound of the server's, so that a
/// request the server let hang would show.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// Fresh packs a cycle may take at most (the pool holds this many per cycle).
const PACKS_PER_CYCLE: u64 = 24;
/// Packs in one bulk request.
const BULK_ROWS: u64 = 4;
/// Serials of one OBP upload during the load.
const UPLOAD_SERIALS: usize = 4;
/// Uploads the OBP sends in one cycle at most.
const UPLOADS_PER_CYCLE: u64 = 2;
/// Pack-working client tasks per market.
const PACK_TASKS: usize = 2;
/// How long healing may take at least: the relays drain, the bulks a killed process held are
/// taken up again once their lease ends (30 s), the uploads are distributed. A long run may take
/// [`HEAL_PER_CYCLE`] more per cycle, for a longer backlog.
const HEAL_LIMIT: Duration = Duration::from_secs(240);
/// See [`HEAL_LIMIT`].
const HEAL_PER_CYCLE: Duration = Duration::from_millis(100);
/// Rows of one bulk verify of the final check (a bulk takes at most 100,000).
const FINAL_BULK_ROWS: usize = 50_000;
/// Every how many pool packs one has its audit trail read (and every pack an unknown operation
/// touched).
const AUDIT_EVERY: u64 = 8;

/// What an operation was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    /// A single-pack verify.
    Verify,
    /// A single-pack supply.
    Supply,
    /// The undo of a supply.
    Undo,
    /// A bulk supply (submitted; its rows are checked when it is done).
    Bulk,
    /// An OBP's new batch and its serials at the hub.
    Upload,
}

/// One operation and what became of it.
#[derive(Debug, Clone)]
pub struct Op {
    /// What it was.
    pub what: What,
    /// The market it was sent to (uploads: none).
    pub market: usize,
    /// Its `client_trx_id` (uploads: the batch).
    pub trx: String,
    /// The packs it is about.
    pub serials: Vec<String>,
    /// Whether its first sending got no answer (it was then sent again after the restart).
    pub unknown: bool,
    /// The answer: a return code, a bulk id, an upload id.
    pub answer: Option<String>,
    /// The cycle it was sent in, and the system killed in it (for the findings).
    pub cycle: (u64, String),
}

impl Op {
    /// An operation about to be sent.
    fn new(what: What, market: usize, trx: String, serials: Vec<String>) -> Op {
        Op { what, market, trx, serials, unknown: false, answer: None, cycle: (0, String::new()) }
    }
}

/// What the client tasks of one cycle saw.
#[derive(Default)]
pub struct Seen {
    /// The operations, in the order each task sent them.
    pub ops: Vec<Op>,
    /// Answers received this cycle.
    answers: u64,
    /// Tasks still running.
    running: usize,
    /// Answers no operation of the load should get.
    pub unexpected: Vec<String>,
}

/// Every operation of the run.
#[derive(Default)]
pub struct Ledger {
    ops: Vec<Op>,
}

impl Ledger {
    /// Takes the operations of cycle `cycle`, which killed `killed`, resolved.
    pub fn absorb(&mut self, seen: Seen, cycle: u64, killed: &str) {
        self.ops.extend(seen.ops.into_iter().map(|o| Op { cycle: (cycle, killed.to_owned()), ..o }));
    }

    /// How many operations match.
    pub fn count(&self, f: impl Fn(&Op) -> bool) -> usize {
        self.ops.iter().filter(|o| f(o)).count()
    }

    /// The operations by kind, for the summary.
    pub fn describe(&self) -> String {
        let kinds = [
            (What::Verify, "verify"),
            (What::Supply, "supply"),
            (What::Undo, "undo"),
            (What::Bulk, "bulk"),
            (What::Upload, "upload"),
        ];
        let parts: Vec<String> =
            kinds.iter().map(|(w, name)| format!("{name} {}", self.count(|o| o.what == *w))).collect();
        parts.join(", ")
    }
}

/// What the checks found.
#[derive(Default)]
pub struct Findings {
    /// Acknowledged operations whose effect is missing or not the one answered.
    pub lost: Vec<String>,
    /// Operations that took effect more than once.
    pub twice: Vec<String>,
}

impl Findings {
    /// Fails the test, listing the first findings, if there are any.
    pub fn assert_none(&self) {
        assert!(
            self.lost.is_empty() && self.twice.is_empty(),
            "acknowledged operations lost ({}) or applied twice ({}):\nlost: {:#?}\ntwice: {:#?}",
            self.lost.len(),
            self.twice.len(),
            self.lost.iter().take(20).collect::<Vec<_>>(),
            self.twice.iter().take(20).collect::<Vec<_>>(),
        );
    }
}

/// The clients and counters the tasks share.
struct Ctx {
    engine: String,
    /// One client per market that sends each request once.
    load: Vec<EndUserClient>,
    obp_load: ObpClient,
    next_pack: AtomicU64,
    pool: u64,
    next_upload: AtomicU64,
}

/// The clients of the run and its runtime.
pub struct Run {
    rt: tokio::runtime::Runtime,
    ctx: Arc<Ctx>,
    /// Per market: a pharmacy and the authority, with the default retry policy.
    check: Vec<EndUserClient>,
    /// Per market: a pharmacy that sends each request once, for [`Run::probe`].
    probe: Vec<EndUserClient>,
    nca: Vec<EndUserClient>,
    obp_check: ObpClient,
    http: reqwest::Client,
    /// How long healing, and each wait of the final check, may take.
    heal_limit: Duration,
}

pub fn pool_serial(i: u64) -> String {
    format!("P{i:07}")
}

fn pack_input(serial: &str, batch: &str, trx: &str) -> PackInput {
    PackInput::gtin(PRODUCT, serial, batch, EXPIRY).with_client_trx_id(trx)
}

pub fn product() -> ProductRequest {
    let market = |m: &str| ProductMarket {
        market: Some(m.into()),
        national_code: Some(format!("{m}-CL-1")),
        mah: Some(Mah { name: Some("Crash Loop Pharma".into()), address: Some("Berlin".into()) }),
        wholesalers: Vec::new(),
    };
    ProductRequest {
        scheme: Some("GTIN".into()),
        name: Some("Examplomab 10 mg tablets".into()),
        common_name: Some("examplomab".into()),
        form: Some("TABLET".into()),
        strength: Some("10 mg".into()),
        pack_type: Some("BOX".into()),
        pack_size: Some("30".into()),
        markets: Some(vec![market("DE"), market("FR")]),
    }
}

impl Run {
    /// Creates the clients, starts every system, and has the OBP upload the pool of packs
    /// (`cycles` times [`PACKS_PER_CYCLE`]) through the hub, waiting until both markets have it.
    pub fn new(cluster: &mut Cluster, engine: &str, cycles: u64) -> Run {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let mut load = Vec::new();
        let mut check = Vec::new();
        let mut probe = Vec::new();
        let mut nca = Vec::new();
        for (i, m) in cluster.markets.iter().enumerate() {
            let code = &cluster.codes[i];
            let ph = cluster.client(i, "PHARMACY", &format!("{code}-PH-1"));
            let authority = cluster.client(i, "NCA", &format!("{code}-NCA-1"));
            let config = |c: &crate::common::Creds| {
                EndUserConfig::new(&m.url, &c.client_id, &c.client_secret).with_ca_pem(cluster.ca_pem.clone())
            };
            let _ = rt.enter();
            load.push(EndUserClient::new(config(&ph).with_retry(RetryPolicy::never())).expect("load client"));
            check.push(EndUserClient::new(config(&ph)).expect("checking client"));
            let once = config(&ph).with_retry(RetryPolicy::never()).with_timeout(PROBE_TIMEOUT);
            probe.push(EndUserClient::new(once).expect("probing client"));
            nca.push(EndUserClient::new(config(&authority)).expect("authority client"));
        }
        let obp = |retry| {
            ObpClient::new(
                ObpConfig::new(&cluster.hub.url, cluster.obp_identity.clone(), cluster.ca_pem.clone())
                    .with_retry(retry),
            )
            .expect("OBP client")
        };
        let obp_load = obp(RetryPolicy::never());
        let obp_check = obp(RetryPolicy::default());
        let ca = reqwest::Certificate::from_pem(&cluster.ca_pem).expect("CA certificate");
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client");
        let pool = cycles * PACKS_PER_CYCLE;
        let heal_limit = HEAL_LIMIT.max(HEAL_PER_CYCLE * u32::try_from(cycles).unwrap_or(u32::MAX));
        cluster.start_all();
        rt.block_on(async {
            obp_check.put_product(PRODUCT, &product()).await.expect("the product");
            let batch = BatchRequest { expiry: EXPIRY.into(), markets: None };
            obp_check.put_batch(PRODUCT, BATCH, &batch).await.expect("the pool's batch");
            let mut text: String = (0..pool).map(|i| format!("{}\n", pool_serial(i))).collect();
            text.push_str(PROBE_SERIAL);
            text.push('\n');
            let up = obp_check
                .upload_reader(PRODUCT, BATCH, std::io::Cursor::new(text.into_bytes()))
                .await
                .expect("the pool's upload");
            let poll = PollOptions { interval: Duration::from_millis(50), deadline: heal_limit };
            obp_check
                .wait_for_upload(&up.upload_id, "DISTRIBUTED", poll)
                .await
                .expect("the pool distributed");
        });
        let ctx = Arc::new(Ctx {
            engine: engine.to_owned(),
            load,
            obp_load,
            next_pack: AtomicU64::new(0),
            pool,
            next_upload: AtomicU64::new(0),
        });
        Run { rt, ctx, check, probe, nca, obp_check, http, heal_limit }
    }

    /// One verify of the probe pack in market `m`, sent once, and how long its answer took:
    /// `Ok(true)` for success (its audit record committed), `Ok(false)` for a 503 with
    /// `Retry-After` and a return code (the node cannot commit now), an error for anything else.
    pub fn probe(&self, m: usize) -> (Result<bool, String>, Duration) {
        let started = std::time::Instant::now();
        let input = PackInput::gtin(PRODUCT, PROBE_SERIAL, BATCH, EXPIRY);
        let r = match self.rt.block_on(self.probe[m].verify(&input)) {
            Ok(a) if a.return_code == "NMVS_SUCCESS" => Ok(true),
            Ok(a) => Err(format!("the probe was answered {a:?}")),
            Err(ClientError::Refused { status: 503, retry_after: Some(_), body, .. })
                if !body.return_code.is_empty() =>
            {
                Ok(false)
            }
            Err(e) => Err(format!("the probe failed: {e}")),
        };
        (r, started.elapsed())
    }

    /// One cycle: the client tasks run until `after` answers came (or they all ended), then
    /// `victim` is killed with requests in flight and the tasks end. What they saw.
    pub fn cycle(&self, cluster: &mut Cluster, victim: Kind, after: u64) -> Seen {
        self.cycle_with(after, || cluster.system(victim).kill())
    }

    /// One cycle whose fault is `fault`: the client tasks run until `after` answers came (or
    /// they all ended), then `fault` runs with requests in flight and the tasks end at their
    /// first request without an outcome. What they saw.
    pub fn cycle_with(&self, after: u64, fault: impl FnOnce()) -> Seen {
        let limit = (self.ctx.next_pack.load(Ordering::SeqCst) + PACKS_PER_CYCLE).min(self.ctx.pool);
        let seen = Arc::new(Watched::<Seen>::default());
        let stop = Arc::new(AtomicBool::new(false));
        let markets = self.ctx.load.len();
        seen.update(|s| s.running = markets * (PACK_TASKS + 1) + 1);
        let mut tasks = Vec::new();
        for m in 0..markets {
            for _ in 0..PACK_TASKS {
                tasks.push(self.rt.spawn(pack_task(self.ctx.clone(), m, limit, seen.clone(), stop.clone())));
            }
            tasks.push(self.rt.spawn(bulk_task(self.ctx.clone(), m, limit, seen.clone(), stop.clone())));
        }
        tasks.push(self.rt.spawn(upload_task(self.ctx.clone(), seen.clone(), stop.clone())));
        let _ = seen.wait_for(WAIT_LIMIT, |s| s.answers >= after || s.running == 0);
        fault();
        stop.store(true, Ordering::SeqCst);
        self.rt.block_on(async {
            for t in tasks {
                t.await.expect("a client task");
            }
        });
        Arc::try_unwrap(seen).ok().expect("the tasks ended").into_inner()
    }

    /// Sends every operation that got no answer again, with its transaction id, and checks the
    /// answer: it is the first one's, or says the change is already made, and raises no alert.
    pub fn resolve(&self, mut seen: Seen) -> Seen {
        let mut unexpected = Vec::new();
        self.rt.block_on(async {
            for op in seen.ops.iter_mut().filter(|o| o.unknown) {
                match self.retry(op).await {
                    Ok(answer) => op.answer = Some(answer),
                    Err(e) => unexpected.push(format!("the retry of {op:?}: {e}")),
                }
            }
        });
        seen.unexpected.extend(unexpected);
        seen
    }

    async fn retry(&self, op: &Op) -> Result<String, String> {
        let c = op.market;
        let first = op.serials.first().cloned().unwrap_or_default();
        let single = |want: &'static str| {
            move |r: Result<openmvs_client::wire::api::PackResponse, ClientError>| -> Result<String, String> {
                let r = r.map_err(|e| e.to_string())?;
                let state = r.pack.as_ref().map(|p| p.state.as_str()).unwrap_or("");
                if r.alert.is_some() || (!want.is_empty() && state != want) {
                    return Err(format!("{} state {state:?} alert {:?}", r.return_code, r.alert));
                }
                Ok(r.return_code)
            }
        };
        match op.what {
            What::Verify => single("")(self.check[c].verify(&pack_input(&first, BATCH, &op.trx)).await),
            What::Supply => {
                single("SUPPLIED")(self.check[c].supply(&pack_input(&first, BATCH, &op.trx)).await)
            }
            What::Undo => {
                single("ACTIVE")(self.check[c].undo_supply(&pack_input(&first, BATCH, &op.trx)).await)
            }
            What::Bulk => {
                let req = bulk_request(&op.trx, &op.serials);
                self.check[c].submit_bulk(&req).await.map(|a| a.bulk_id).map_err(|e| e.to_string())
            }
            What::Upload => {
                let batch = BatchRequest { expiry: EXPIRY.into(), markets: None };
                self.obp_check.put_batch(PRODUCT, &op.trx, &batch).await.map_err(|e| e.to_string())?;
                let up = self
                    .obp_check
                    .upload_serials(PRODUCT, &op.trx, &op.serials)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(up.upload_id)
            }
        }
    }

    /// The sum of a metric's samples at `system`.
    async fn metric(&self, system: &System, name: &str) -> Result<f64, String> {
        let text = self
            .http
            .get(format!("{}/metrics", system.url))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{')))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// What still keeps the system from having healed, if anything: messages waiting in an
    /// outbox, a bulk not done, an upload not distributed to every market.
    /// `settled` holds the bulks and uploads already found done, which stay so: each is asked
    /// about until it is.
    async fn unhealed(
        &self,
        cluster: &Cluster,
        ledger: &Ledger,
        settled: &mut BTreeSet<String>,
    ) -> Option<String> {
        let pending = self.metric(&cluster.hub, "openmvs_hub_outbox_pending").await;
        if pending != Ok(0.0) {
            return Some(format!("hub outbox: {pending:?}"));
        }
        for m in &cluster.markets {
            let pending = self.metric(m, "openmvs_outbox_pending").await;
            if pending != Ok(0.0) {
                return Some(format!("{} outbox: {pending:?}", m.name));
            }
        }
        for op in &ledger.ops {
            let Some(id) = &op.answer else { continue };
            if settled.contains(id) {
                continue;
            }
            match op.what {
                What::Bulk => match self.check[op.market].bulk_status(id).await {
                    Ok(s) if s.status == "DONE" => {}
                    other => return Some(format!("bulk {id}: {other:?}")),
                },
                What::Upload => match self.obp_check.upload_status(id).await {
                    Ok(s) if s.status == "DISTRIBUTED" && s.markets.values().all(|v| v == "DISTRIBUTED") => {}
                    other => return Some(format!("upload {id}: {other:?}")),
                },
                _ => continue,
            }
            settled.insert(id.clone());
        }
        None
    }

    /// Waits, with a deadline, until every relay has drained, every bulk is done and every
    /// upload distributed.
    pub fn heal(&self, cluster: &Cluster, ledger: &Ledger) {
        let mut last = None;
        let mut settled = BTreeSet::new();
        let healed = eventually(self.heal_limit, || {
            last = self.rt.block_on(self.unhealed(cluster, ledger, &mut settled));
            last.is_none().then_some(())
        });
        assert!(healed.is_some(), "not healed within {:?}: {last:?}", self.heal_limit);
    }

    /// The checks after healing.
    pub fn check(&self, cluster: &Cluster, ledger: &Ledger) -> Findings {
        self.rt.block_on(self.check_async(cluster, ledger))
    }

    async fn check_async(&self, cluster: &Cluster, ledger: &Ledger) -> Findings {
        let mut f = Findings::default();
        // No dead letter anywhere.
        let dead = self.metric(&cluster.hub, "openmvs_hub_outbox_dead_letters").await;
        assert_eq!(dead, Ok(0.0), "dead letters at the hub");
        for m in &cluster.markets {
            let dead = self.metric(m, "openmvs_outbox_dead_letters").await;
            assert_eq!(dead, Ok(0.0), "dead letters at {}", m.name);
            let listed = admin(&m.config, &["admin", "dead-letters", "list"]);
            assert!(listed.lines().count() <= 1, "dead letters at {}:\n{listed}", m.name);
        }

        // The state every pack must have, from the operations in the order they were made.
        let used = self.ctx.next_pack.load(Ordering::SeqCst);
        let mut expected: BTreeMap<String, (String, &str)> =
            (0..used).map(|i| (pool_serial(i), (BATCH.to_owned(), "ACTIVE"))).collect();
        for op in &ledger.ops {
            if op.answer.is_none() {
                continue;
            }
            let state = match op.what {
                What::Supply | What::Bulk => "SUPPLIED",
                What::Undo => "ACTIVE",
                What::Verify => continue,
                What::Upload => {
                    for s in &op.serials {
                        expected.insert(s.clone(), (op.trx.clone(), "ACTIVE"));
                    }
                    continue;
                }
            };
            for s in &op.serials {
                if let Some(e) = expected.get_mut(s) {
                    e.1 = state;
                }
            }
        }
        // Every copy of every pack, in each market, read with one bulk verify.
        let rows: Vec<BulkRow> = expected
            .iter()
            .map(|(serial, (batch, _))| BulkRow {
                operation: "verify".into(),
                scheme: "GTIN".into(),
                product_code: PRODUCT.into(),
                serial: serial.clone(),
                batch: batch.clone(),
                expiry: EXPIRY.into(),
            })
            .collect();
        let made_in: BTreeMap<&str, usize> = ledger
            .ops
            .iter()
            .filter(|o| o.what != What::Upload)
            .flat_map(|o| o.serials.iter().map(move |s| (s.as_str(), o.market)))
            .collect();
        let wanted: Vec<(&String, &str)> =
            expected.iter().map(|(serial, (_, want))| (serial, *want)).collect();
        for (m, client) in self.check.iter().enumerate() {
            for (part, (rows, wanted)) in
                rows.chunks(FINAL_BULK_ROWS).zip(wanted.chunks(FINAL_BULK_ROWS)).enumerate()
            {
                let req = BulkRequest {
                    client_trx_id: Some(format!("{}-final-{m}-{part}", self.ctx.engine)),
                    transactions: Some(rows.to_vec()),
                    ..BulkRequest::default()
                };
                let poll = PollOptions { interval: Duration::from_millis(100), deadline: self.heal_limit };
                let done = client.run_bulk(&req, poll).await.expect("the final bulk verify");
                assert_eq!(done.results.len(), rows.len(), "results of the final bulk verify");
                for (r, (serial, want)) in done.results.iter().zip(wanted) {
                    let got = r.state.as_deref().unwrap_or("unknown");
                    if got != *want {
                        let home =
                            made_in.get(serial.as_str()).map(|i| cluster.codes[*i].as_str()).unwrap_or("-");
                        f.lost.push(format!(
                            "{serial} in {}: {got} ({}), expected {want} (worked in {home})",
                            cluster.codes[m], r.return_code
                        ));
                    }
                }
            }
        }

        // The audit trail: one record per client_trx_id, with the answer given, for a sample of
        // the packs and every pack an unknown operation touched; one successful supply per pack
        // of a bulk.
        let mut sample: BTreeSet<String> = (0..used).step_by(AUDIT_EVERY as usize).map(pool_serial).collect();
        for op in ledger.ops.iter().filter(|o| o.unknown && o.what != What::Upload) {
            sample.extend(op.serials.iter().cloned());
        }
        let mut by_serial: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
        for op in ledger.ops.iter().filter(|o| o.what != What::Upload && o.answer.is_some()) {
            for s in &op.serials {
                by_serial.entry(s.as_str()).or_default().push(op);
            }
        }
        for serial in &sample {
            let Some(ops) = by_serial.get(serial.as_str()) else { continue };
            let Some(first) = ops.first() else { continue };
            let m = first.market;
            let records =
                self.nca[m].audit_of_pack("GTIN", PRODUCT, serial).await.expect("audit read").records;
            for op in ops {
                let found = (f.lost.len(), f.twice.len());
                self.audit_check(serial, op, &records, &mut f);
                let at = format!(" (sent in cycle {}, which killed {})", op.cycle.0, op.cycle.1);
                f.lost[found.0..].iter_mut().chain(&mut f.twice[found.1..]).for_each(|m| m.push_str(&at));
            }
        }
        f
    }

    /// The audit check of one operation on `serial`, whose trail is `records`.
    fn audit_check(&self, serial: &str, op: &Op, records: &[AuditRecordView], f: &mut Findings) {
        {
            {
                if op.what == What::Bulk {
                    let n = records
                        .iter()
                        .filter(|r| r.operation.ends_with("supply") && r.return_code == "NMVS_SUCCESS")
                        .count();
                    match n {
                        1 => {}
                        0 => f.lost.push(format!(
                            "{serial}: bulk {} left no successful supply: {:?}",
                            op.trx,
                            records
                                .iter()
                                .map(|r| (&r.operation, &r.return_code, &r.request))
                                .collect::<Vec<_>>()
                        )),
                        _ => f.twice.push(format!("{serial}: bulk {} supplied {n} times", op.trx)),
                    }
                    return;
                }
                // A retry answered from the stored answer is recorded as a replay, which changes nothing.
                let (replays, mine): (Vec<_>, Vec<_>) = records
                    .iter()
                    .filter(|r| r.request["client_trx_id"] == op.trx.as_str())
                    .partition(|r| r.operation.ends_with("-replay"));
                if let Some(r) =
                    replays.iter().find(|r| mine.first().is_none_or(|m| m.return_code != r.return_code))
                {
                    f.lost.push(format!(
                        "{serial}: {} replayed as {}, unlike its first answer",
                        op.trx, r.return_code
                    ));
                }
                let answer = op.answer.as_deref().unwrap_or_default();
                match mine.as_slice() {
                    [one] if one.return_code == answer => {}
                    [] => f.lost.push(format!("{serial}: no audit record of {} ({:?})", op.trx, op.what)),
                    [one] => f.lost.push(format!(
                        "{serial}: {} recorded {}, answered {answer}",
                        op.trx, one.return_code
                    )),
                    many => f.twice.push(format!(
                        "{serial}: {} ({:?}, unknown at first: {}) recorded {} times: {:?}",
                        op.trx,
                        op.what,
                        op.unknown,
                        many.len(),
                        many.iter()
                            .map(|r| (r.seq, &r.operation, &r.return_code, &r.at, &r.actor))
                            .collect::<Vec<_>>()
                    )),
                }
            }
        }
    }

    /// `openmvs audit verify` of the hub's trail, and in every market against the signed heads
    /// the hub received.
    pub fn audit_verify(&self, cluster: &Cluster) {
        let out = admin(&cluster.hub.config, &["audit", "verify"]);
        assert!(out.contains("audit: OK"), "audit verify of the hub: {out}");
        let heads = admin(&cluster.hub.config, &["audit", "heads"]);
        let file = cluster.root().join("hub-heads.jsonl");
        std::fs::write(&file, &heads).expect("write the hub's heads");
        for m in &cluster.markets {
            let out = admin(&m.config, &["audit", "verify", "--heads", file.to_str().expect("UTF-8 path")]);
            assert!(out.contains("audit: OK"), "audit verify {}: {out}", m.name);
        }
    }
}

fn bulk_request(trx: &str, serials: &[String]) -> BulkRequest {
    BulkRequest {
        client_trx_id: Some(trx.to_owned()),
        operation: Some("supply".into()),
        scheme: Some("GTIN".into()),
        product_code: Some(PRODUCT.into()),
        batch: Some(BATCH.into()),
        expiry: Some(EXPIRY.into()),
        serials: Some(serials.to_vec()),
        transactions: None,
    }
}

/// Whether an error leaves the request's outcome unknown: no answer came, or the node answered
/// 503 (its store did not commit, or may have committed without saying so: the database's
/// primary went away). Either is sent again later with the same `client_trx_id`.
fn no_outcome(e: &ClientError) -> bool {
    matches!(e, ClientError::Transport { .. } | ClientError::Refused { status: 503, .. })
}

/// Takes `n` fresh packs of the cycle's share, if that many are left.
fn take(ctx: &Ctx, n: u64, limit: u64) -> Option<u64> {
    ctx.next_pack.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |i| (i + n <= limit).then_some(i + n)).ok()
}

/// Records `op`; whether the task goes on (it stops at the first request without an answer:
/// its server is gone).
fn record(seen: &Watched<Seen>, op: Op) -> bool {
    let go_on = !op.unknown;
    seen.update(|s| {
        if go_on {
            s.answers += 1;
        }
        s.ops.push(op);
    });
    go_on
}

fn unexpected(seen: &Watched<Seen>, what: String) {
    seen.update(|s| s.unexpected.push(what));
}

/// Ends a task.
fn done(seen: &Watched<Seen>) {
    seen.update(|s| s.running -= 1);
}

/// Fresh packs of market `m`, one by one: verify, supply, and for every third the undo.
async fn pack_task(ctx: Arc<Ctx>, m: usize, limit: u64, seen: Arc<Watched<Seen>>, stop: Arc<AtomicBool>) {
    let client = &ctx.load[m];
    'packs: while !stop.load(Ordering::SeqCst) {
        let Some(i) = take(&ctx, 1, limit) else { break };
        let serial = pool_serial(i);
        let steps: &[What] = if i % 3 == 0 {
            &[What::Verify, What::Supply, What::Undo]
        } else {
            &[What::Verify, What::Supply]
        };
        for what in steps {
            let trx = format!("{}-{what:?}-{i}", ctx.engine).to_lowercase();
            let input = pack_input(&serial, BATCH, &trx);
            let (r, want) = match what {
                What::Verify => (client.verify(&input).await, "ACTIVE"),
                What::Supply => (client.supply(&input).await, "SUPPLIED"),
                _ => (client.undo_supply(&input).await, "ACTIVE"),
            };
            let mut op = Op::new(*what, m, trx, vec![serial.clone()]);
            match r {
                Ok(resp) => {
                    let state = resp.pack.as_ref().map(|p| p.state.as_str());
                    if resp.return_code != "NMVS_SUCCESS" || state != Some(want) || resp.alert.is_some() {
                        unexpected(&seen, format!("{what:?} {serial}: {resp:?}"));
                        break 'packs;
                    }
                    op.answer = Some(resp.return_code);
                    record(&seen, op);
                }
                Err(e) if no_outcome(&e) => {
                    op.unknown = true;
                    record(&seen, op);
                    break 'packs;
                }
                Err(e) => {
                    unexpected(&seen, format!("{what:?} {serial}: {e}"));
                    break 'packs;
                }
            }
        }
    }
    done(&seen);
}

/// Bulk supplies of fresh packs in market `m`: submitted, then polled until done.
async fn bulk_task(ctx: Arc<Ctx>, m: usize, limit: u64, seen: Arc<Watched<Seen>>, stop: Arc<AtomicBool>) {
    let client = &ctx.load[m];
    'bulks: while !stop.load(Ordering::SeqCst) {
        let Some(first) = take(&ctx, BULK_ROWS, limit) else { break };
        let serials: Vec<String> = (first..first + BULK_ROWS).map(pool_serial).collect();
        let trx = format!("{}-bulk-{first}", ctx.engine);
        let mut op = Op::new(What::Bulk, m, trx.clone(), serials);
        let id = match client.submit_bulk(&bulk_request(&trx, &op.serials)).await {
            Ok(a) => a.bulk_id,
            Err(e) if no_outcome(&e) => {
                op.unknown = true;
                record(&seen, op);
                break;
            }
            Err(e) => {
                unexpected(&seen, format!("bulk {trx}: {e}"));
                break;
            }
        };
        op.answer = Some(id.clone());
        record(&seen, op);
        // Polled in short waits, so that the task sees the stop.
        let poll = PollOptions { interval: Duration::from_millis(20), deadline: Duration::from_millis(200) };
        loop {
            if stop.load(Ordering::SeqCst) {
                break 'bulks;
            }
            match client.wait_for_bulk(&id, poll).await {
                Ok(s) => {
                    if let Some(bad) = s.results.iter().find(|r| {
                        r.return_code != "NMVS_SUCCESS"
                            || r.state.as_deref() != Some("SUPPLIED")
                            || r.alert.is_some()
                    }) {
                        unexpected(&seen, format!("bulk {trx}: row {bad:?}"));
                        break 'bulks;
                    }
                    break;
                }
                Err(ClientError::DeadlineExceeded { .. }) => {}
                // The node is gone; the bulk is checked once the system has healed.
                Err(_) => break 'bulks,
            }
        }
    }
    done(&seen);
}

/// The OBP's new batches at the hub, each with a few serials, distributed to both markets.
async fn upload_task(ctx: Arc<Ctx>, seen: Arc<Watched<Seen>>, stop: Arc<AtomicBool>) {
    for _ in 0..UPLOADS_PER_CYCLE {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let n = ctx.next_upload.fetch_add(1, Ordering::SeqCst);
        let batch = format!("U{n}");
        let serials: Vec<String> = (0..UPLOAD_SERIALS).map(|k| format!("U{n}S{k}")).collect();
        let mut op = Op::new(What::Upload, 0, batch.clone(), serials);
        let request = BatchRequest { expiry: EXPIRY.into(), markets: None };
        let sent = match ctx.obp_load.put_batch(PRODUCT, &batch, &request).await {
            Ok(_) => ctx.obp_load.upload_serials(PRODUCT, &batch, &op.serials).await.map(|u| u.upload_id),
            Err(e) => Err(e),
        };
        match sent {
            Ok(id) => {
                op.answer = Some(id);
                record(&seen, op);
            }
            Err(e) if no_outcome(&e) => {
                op.unknown = true;
                record(&seen, op);
                break;
            }
            Err(e) => {
                unexpected(&seen, format!("upload {batch}: {e}"));
                break;
            }
        }
    }
    done(&seen);
}

/// A small deterministic generator (xorshift64), so that a failing run can be repeated.
pub struct XorShift(pub u64);

impl XorShift {
    /// The next number.
    pub fn draw(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `lo..hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.draw() % (hi - lo)
    }
}

/// A setting from the environment: a number, decimal or `0x` hexadecimal.
pub fn number_from_env(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok().filter(|v| !v.trim().is_empty())?;
    let t = text.trim();
    let parsed = match t.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}: '{text}' is not a number ({e})")))
}

/// The seed named by the variable `name`, or a fresh one; never 0 (xorshift stays at 0).
pub fn seed_from_env(name: &str) -> u64 {
    let seed = number_from_env(name).unwrap_or_else(|| {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).expect("random seed");
        u64::from_le_bytes(b) | 1
    });
    assert!(seed != 0, "{name}: must not be 0 (xorshift stays at 0)");
    seed
}

/// Prints the command that repeats the run if the test fails on any path.
pub struct Repro(pub &'static str, pub String);

impl Drop for Repro {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{} failed; reproduce it with:\n  {}", self.0, self.1);
        }
    }
}
