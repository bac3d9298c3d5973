//! The generator: terminals, a catalogue, a plan of exactly as many steps of each kind as the
//! mix asks (everyday work filling up to the transactions wanted), shuffled, then turned into
//! requests in order while a model of every pack's state and of each terminal's stock chooses the
//! packs, so that genuine work never asks for what the rules refuse (a pack dispensed twice in
//! two places, an undo of a pack the terminal did not dispense).

use std::collections::HashSet;

use openmvs_core::ids::{Location, MarketCode, gs1_check_digit};
use openmvs_core::roles::Role;

use crate::model::{
    Batch, Conduct, Corruption, Delivery, Event, Falsification, Fields, InputForm, Operation, Product,
    Request, Scanner, Step, Terminal, Truth, Workload,
};
use crate::rng::Rng;
use crate::scanner::{self, AiOrder};
use crate::{Config, ConfigError};

/// Characters of generated serials: upper-case letters and digits, as most OBPs use.
const SERIAL_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
/// Length of generated serials.
const SERIAL_LEN: usize = 12;
/// Upper-case letters, for batch names.
const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// Packs tried before giving up on finding one a corruption changes (each try succeeds with a
/// probability of at least a half, so this is never reached in practice).
const MAX_TRIES: usize = 10_000;

/// Generates the workload `config` describes.
pub fn generate(config: &Config) -> Result<Workload, ConfigError> {
    config.check()?;
    let mut root = Rng::new(config.seed);
    let (mut cat_rng, mut plan_rng, mut step_rng, mut top_rng) =
        (root.fork(), root.fork(), root.fork(), root.fork());
    let mut g = Gen::new(config, &mut cat_rng)?;
    let (phase0, phase1) = g.plan(&mut plan_rng);
    for (phase, plan) in phase0.into_iter().map(|p| (0, p)).chain(phase1.into_iter().map(|p| (1, p))) {
        g.materialise(&mut step_rng, phase, plan)?;
    }
    g.top_up(&mut top_rng);
    Ok(g.finish())
}

/// A pack of the catalogue: product, batch, and the index of its serial in the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PackRef {
    product: usize,
    batch: usize,
    serial: usize,
}

/// What a terminal holds: packs it verified and keeps (active), and packs it dispensed that it
/// may undo.
#[derive(Debug, Default)]
struct Stock {
    verified: Vec<PackRef>,
    supplied: Vec<PackRef>,
}

/// A product while it is generated: the AI order of its codes and every serial taken (uploaded,
/// or kept out of the upload because a falsification or a corruption presents it).
struct ProductDraft {
    product: Product,
    order: AiOrder,
    taken: HashSet<String>,
}

/// A falsification while it is generated.
struct EventDraft {
    kind: Falsification,
    /// The code presented, and the product, once the step that makes it has run.
    code: Option<(usize, Fields)>,
    steps: Vec<usize>,
}

/// Everyday work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activity {
    Dispense,
    VerifyThenDispense,
    Verify,
    Undo,
    Destroy,
    Export,
    InterMarketVerify,
}

/// One step to generate.
#[derive(Debug, Clone, Copy)]
enum Plan {
    Plain { terminal: usize, activity: Activity },
    Corrupted { terminal: usize, corruption: Corruption },
    DoubleScan { terminal: usize, repeats: u32 },
    Retry { terminal: usize, delivery: Delivery },
    Outage { terminal: usize, delivery: Delivery },
    Falsified { terminal: usize, kind: Falsification },
    CloneOriginal { terminal: usize, event: usize },
    CloneCopy { terminal: usize, event: usize },
}

/// Steps planned so far, and their transactions.
#[derive(Default)]
struct Planned {
    phase0: Vec<Plan>,
    phase1: Vec<Plan>,
    transactions: u64,
}

impl Planned {
    fn add(&mut self, phase: u64, plan: Plan, transactions: u64) {
        self.transactions += transactions;
        if phase == 0 { self.phase0.push(plan) } else { self.phase1.push(plan) }
    }
}

struct Gen<'a> {
    config: &'a Config,
    terminals: Vec<Terminal>,
    products: Vec<ProductDraft>,
    /// The products sold only in each market (by the market's index).
    home: Vec<Vec<usize>>,
    /// The products sold in every market.
    multi: Vec<usize>,
    stock: Vec<Stock>,
    next_trx: Vec<u64>,
    steps: Vec<Step>,
    events: Vec<EventDraft>,
}

impl<'a> Gen<'a> {
    fn new(config: &'a Config, rng: &mut Rng) -> Result<Gen<'a>, ConfigError> {
        let terminals = terminals(config)?;
        let n = terminals.len();
        let mut g = Gen {
            config,
            terminals,
            products: Vec::new(),
            home: Vec::new(),
            multi: Vec::new(),
            stock: (0..n).map(|_| Stock::default()).collect(),
            next_trx: vec![0; n],
            steps: Vec::new(),
            events: Vec::new(),
        };
        let mut gtins = HashSet::new();
        for m in &config.markets {
            let mut home = Vec::new();
            for i in 1..=config.products_per_market {
                let batches = vec![
                    g.batch(rng, BatchStyle::Plain, false),
                    g.batch(rng, BatchStyle::Hyphen, false),
                    g.batch(rng, BatchStyle::Slash, false),
                    g.batch(rng, BatchStyle::Plain, true),
                ];
                home.push(g.products.len());
                g.add_product(rng, &mut gtins, format!("Workload {m} tablets {i}"), vec![*m], batches);
            }
            g.home.push(home);
        }
        for i in 1..=config.multi_market_products {
            let batches =
                vec![g.batch(rng, BatchStyle::Plain, false), g.batch(rng, BatchStyle::Hyphen, false)];
            g.multi.push(g.products.len());
            let name = format!("Workload multi-market capsules {i}");
            g.add_product(rng, &mut gtins, name, config.markets.clone(), batches);
        }
        Ok(g)
    }

    fn add_product(
        &mut self,
        rng: &mut Rng,
        gtins: &mut HashSet<String>,
        name: String,
        markets: Vec<MarketCode>,
        mut batches: Vec<Batch>,
    ) {
        let gtin = loop {
            let mut digits = b"04".to_vec();
            digits.extend((0..11).map(|_| b'0' + rng.below(10) as u8));
            digits.push(b'0' + gs1_check_digit(&digits));
            let gtin = String::from_utf8_lossy(&digits).into_owned();
            if gtins.insert(gtin.clone()) {
                break gtin;
            }
        };
        // Batch names are unique within the product.
        let mut names = HashSet::new();
        for b in &mut batches {
            while !names.insert(b.name.clone()) {
                b.name.push(char::from(LETTERS[rng.index(LETTERS.len())]));
            }
        }
        let order = AiOrder::ALL[rng.index(AiOrder::ALL.len())];
        self.products.push(ProductDraft {
            product: Product { gtin, name, markets, batches },
            order,
            taken: HashSet::new(),
        });
    }

    /// A batch (no serials yet) expiring in the configured years, printed with day `00` one time
    /// in three.
    fn batch(&self, rng: &mut Rng, style: BatchStyle, recalled: bool) -> Batch {
        let year = u32::from(self.config.first_expiry_year) + rng.below(3) as u32;
        let month = 1 + rng.below(12) as u32;
        let yy = year % 100;
        let expiry = format!("{yy:02}{month:02}{:02}", last_day(year, month));
        let printed_expiry = if rng.percent(33) { format!("{yy:02}{month:02}00") } else { expiry.clone() };
        Batch { name: batch_name(rng, style, yy), expiry, printed_expiry, recalled, serials: Vec::new() }
    }

    fn market_index(&self, terminal: usize) -> usize {
        let m = self.terminals[terminal].market;
        self.config.markets.iter().position(|x| *x == m).unwrap_or(0)
    }

    fn is_dispenser(&self, terminal: usize) -> bool {
        matches!(self.terminals[terminal].role, Role::Pharmacy | Role::Hospital)
    }

    /// The terminals `keep` accepts, in order.
    fn pool(&self, keep: impl Fn(usize, &Terminal) -> bool) -> Vec<usize> {
        self.terminals.iter().enumerate().filter(|(i, t)| keep(*i, t)).map(|(i, _)| i).collect()
    }

    /// A terminal of `pool`, pharmacies and hospitals more often than wholesalers.
    fn pick(&self, rng: &mut Rng, pool: &[usize]) -> usize {
        let weights: Vec<u64> = pool
            .iter()
            .map(|&t| match self.terminals[t].role {
                Role::Hospital => 12,
                Role::Wholesaler => 8,
                _ => 10,
            })
            .collect();
        pool[rng.weighted(&weights)]
    }

    /// The steps to generate, phase 0 and phase 1, each shuffled; phase 1 opens with the outage
    /// replays.
    fn plan(&mut self, rng: &mut Rng) -> (Vec<Plan>, Vec<Plan>) {
        let c = self.config;
        let all = self.pool(|_, _| true);
        let dispensers = self.pool(|i, _| self.is_dispenser(i));
        let wedge = self.pool(|_, t| t.scanner == Scanner::KeyboardWedge);
        let wedge_scan = self.pool(|_, t| t.scanner == Scanner::KeyboardWedge && t.input == InputForm::Scan);
        let mut out = Planned::default();
        let mut outages = Vec::new();
        for corruption in Corruption::ALL {
            let (per_million, pool) = match corruption {
                Corruption::CapsLock => (c.mix.caps_lock, &wedge),
                Corruption::KeyboardLayout => (c.mix.keyboard_layout, &wedge),
                Corruption::LostGroupSeparator => (c.mix.lost_group_separator, &wedge_scan),
            };
            for _ in 0..c.count(per_million) {
                let terminal = self.pick(rng, pool);
                let phase = rng.below(2);
                out.add(phase, Plan::Corrupted { terminal, corruption }, 2);
            }
        }
        for _ in 0..c.count(c.mix.double_scan) {
            let terminal = self.pick(rng, &dispensers);
            let repeats = if rng.percent(20) { 2 } else { 1 };
            let phase = rng.below(2);
            out.add(phase, Plan::DoubleScan { terminal, repeats }, 1 + u64::from(repeats));
        }
        for _ in 0..c.count(c.mix.timeout_retry) {
            let terminal = self.pick(rng, &all);
            let delivery = if rng.percent(50) { Delivery::AnswerLost } else { Delivery::Abandoned };
            let phase = rng.below(2);
            out.add(phase, Plan::Retry { terminal, delivery }, 1);
        }
        for kind in Falsification::ALL {
            for _ in 0..c.count(c.mix.falsification) {
                match kind {
                    Falsification::CloneInterMarket | Falsification::CloneMultiMarket => {
                        let a = rng.index(c.markets.len());
                        let b = (a + 1 + rng.index(c.markets.len() - 1)) % c.markets.len();
                        let (ma, mb) = (c.markets[a], c.markets[b]);
                        let originals = self.pool(|_, t| t.market == ma && t.role == Role::Pharmacy);
                        let copies = self.pool(|i, t| t.market == mb && self.is_dispenser(i));
                        let event = self.events.len();
                        self.events.push(EventDraft { kind, code: None, steps: Vec::new() });
                        let original = self.pick(rng, &originals);
                        let copy = self.pick(rng, &copies);
                        out.add(0, Plan::CloneOriginal { terminal: original, event }, 1);
                        out.add(1, Plan::CloneCopy { terminal: copy, event }, 1);
                    }
                    _ => {
                        let terminal = self.pick(rng, &dispensers);
                        let phase = rng.below(2);
                        out.add(phase, Plan::Falsified { terminal, kind }, 1);
                    }
                }
            }
        }
        for m in c.markets.iter().take(c.mix.outage_markets as usize) {
            for t in self.pool(|i, t| t.market == *m && self.is_dispenser(i)) {
                let delivery = if rng.percent(50) { Delivery::AnswerLost } else { Delivery::Abandoned };
                outages.push(Plan::Outage { terminal: t, delivery });
                out.transactions += 2 * u64::from(c.mix.outage_queue);
            }
        }
        while out.transactions < c.transactions {
            let terminal = self.pick(rng, &all);
            let activity = match self.terminals[terminal].role {
                Role::Wholesaler => {
                    [Activity::Verify, Activity::Export, Activity::InterMarketVerify, Activity::Destroy]
                        [rng.weighted(&[75, 15, 7, 3])]
                }
                Role::Hospital => {
                    [Activity::Dispense, Activity::VerifyThenDispense, Activity::Verify, Activity::Destroy]
                        [rng.weighted(&[50, 10, 38, 2])]
                }
                _ => [
                    Activity::Dispense,
                    Activity::VerifyThenDispense,
                    Activity::Verify,
                    Activity::Undo,
                    Activity::Destroy,
                ][rng.weighted(&[45, 20, 30, 4, 1])],
            };
            let trx = if activity == Activity::VerifyThenDispense { 2 } else { 1 };
            let phase = rng.below(2);
            out.add(phase, Plan::Plain { terminal, activity }, trx);
        }
        rng.shuffle(&mut out.phase0);
        rng.shuffle(&mut out.phase1);
        outages.extend(out.phase1);
        (out.phase0, outages)
    }

    fn trx_id(&mut self, terminal: usize) -> String {
        self.next_trx[terminal] += 1;
        format!("{}-{:07}", self.terminals[terminal].location, self.next_trx[terminal])
    }

    fn fields(&self, p: PackRef) -> Fields {
        let product = &self.products[p.product].product;
        let batch = &product.batches[p.batch];
        Fields {
            product_code: product.gtin.clone(),
            serial: batch.serials[p.serial].clone(),
            batch: batch.name.clone(),
            expiry: batch.printed_expiry.clone(),
        }
    }

    /// A serial never taken for `product`, now taken.
    fn new_serial(&mut self, rng: &mut Rng, product: usize) -> String {
        loop {
            let s: String =
                (0..SERIAL_LEN).map(|_| char::from(SERIAL_CHARS[rng.index(SERIAL_CHARS.len())])).collect();
            if self.products[product].taken.insert(s.clone()) {
                return s;
            }
        }
    }

    /// A new pack of `product` in one of its batches that are not recalled.
    fn new_pack(&mut self, rng: &mut Rng, product: usize) -> PackRef {
        let open: Vec<usize> = (0..self.products[product].product.batches.len())
            .filter(|&b| !self.products[product].product.batches[b].recalled)
            .collect();
        let batch = open[rng.index(open.len())];
        self.new_pack_in(rng, product, batch)
    }

    fn new_pack_in(&mut self, rng: &mut Rng, product: usize, batch: usize) -> PackRef {
        let serial = self.new_serial(rng, product);
        let serials = &mut self.products[product].product.batches[batch].serials;
        serials.push(serial);
        PackRef { product, batch, serial: serials.len() - 1 }
    }

    /// A product sold in market `m`: one of those sold everywhere `multi_percent` times in a
    /// hundred, else one of the market's own.
    fn product_of(&self, rng: &mut Rng, m: usize, multi_percent: u64) -> usize {
        if rng.percent(multi_percent) {
            self.multi[rng.index(self.multi.len())]
        } else {
            self.home[m][rng.index(self.home[m].len())]
        }
    }

    /// A new pack delivered to a terminal of market `m`: mostly of the market's own products,
    /// [`Config::multi_market_percent`] of those sold everywhere.
    fn fresh(&mut self, rng: &mut Rng, m: usize) -> PackRef {
        let product = self.product_of(rng, m, self.config.multi_market_percent);
        self.new_pack(rng, product)
    }

    /// A pack from the terminal's stock half the time (when it has one), else a fresh one.
    fn take(&mut self, rng: &mut Rng, terminal: usize) -> PackRef {
        let stock = &mut self.stock[terminal].verified;
        if !stock.is_empty() && rng.percent(50) {
            let i = rng.index(stock.len());
            return stock.swap_remove(i);
        }
        let m = self.market_index(terminal);
        self.fresh(rng, m)
    }

    /// What `terminal` sends for a pack of `product` whose code holds `f`.
    fn input(
        &self,
        terminal: usize,
        product: usize,
        f: &Fields,
        corruption: Option<Corruption>,
    ) -> crate::Input {
        scanner::input(&self.terminals[terminal], f, self.products[product].order, corruption)
    }

    fn request(
        &self,
        terminal: usize,
        product: usize,
        operation: Operation,
        client_trx_id: String,
        f: &Fields,
        truth: Truth,
    ) -> Request {
        Request {
            operation,
            client_trx_id,
            input: self.input(terminal, product, f, None),
            delivery: Delivery::Answered,
            truth,
        }
    }

    /// A dispense, or for a wholesaler a verify.
    fn operation_of(&self, rng: &mut Rng, terminal: usize) -> Operation {
        if self.is_dispenser(terminal) && rng.percent(70) { Operation::Supply } else { Operation::Verify }
    }

    /// Files a pack after a terminal acted on it.
    fn after(&mut self, terminal: usize, op: Operation, p: PackRef) {
        match op {
            Operation::Supply => self.stock[terminal].supplied.push(p),
            Operation::Verify => self.stock[terminal].verified.push(p),
            Operation::Export | Operation::Destroy | Operation::UndoSupply => {}
        }
    }

    fn materialise(&mut self, rng: &mut Rng, phase: u8, plan: Plan) -> Result<(), ConfigError> {
        let index = self.steps.len();
        let (terminal, event, requests) = match plan {
            Plan::Plain { terminal, activity } => (terminal, None, self.plain(rng, terminal, activity)),
            Plan::Corrupted { terminal, corruption } => {
                (terminal, None, self.corrupted(rng, terminal, corruption)?)
            }
            Plan::DoubleScan { terminal, repeats } => {
                let m = self.market_index(terminal);
                let p = self.fresh(rng, m);
                let f = self.fields(p);
                let first = self.trx_id(terminal);
                let mut requests = vec![self.request(
                    terminal,
                    p.product,
                    Operation::Supply,
                    first,
                    &f,
                    Truth::Genuine(Conduct::Plain),
                )];
                for _ in 0..repeats {
                    let id = self.trx_id(terminal);
                    let truth = Truth::Genuine(Conduct::DoubleScan);
                    requests.push(self.request(terminal, p.product, Operation::Supply, id, &f, truth));
                }
                (terminal, None, requests)
            }
            Plan::Retry { terminal, delivery } => {
                let op = if self.terminals[terminal].role == Role::Wholesaler {
                    if rng.percent(70) { Operation::Verify } else { Operation::Export }
                } else {
                    self.operation_of(rng, terminal)
                };
                let p = self.take(rng, terminal);
                let f = self.fields(p);
                let id = self.trx_id(terminal);
                let truth = Truth::Genuine(Conduct::TimeoutRetry);
                let mut lost = self.request(terminal, p.product, op, id.clone(), &f, truth);
                lost.delivery = delivery;
                let retry = self.request(terminal, p.product, op, id, &f, truth);
                self.after(terminal, op, p);
                (terminal, None, vec![lost, retry])
            }
            Plan::Outage { terminal, delivery } => {
                let truth = Truth::Genuine(Conduct::OutageReplay);
                let queued: Vec<(PackRef, String)> = (0..self.config.mix.outage_queue)
                    .map(|_| {
                        let p = self.take(rng, terminal);
                        (p, self.trx_id(terminal))
                    })
                    .collect();
                let mut requests = Vec::new();
                for (i, (p, id)) in queued.iter().enumerate() {
                    let f = self.fields(*p);
                    if i == 0 {
                        // In flight when the link went down.
                        let mut r =
                            self.request(terminal, p.product, Operation::Supply, id.clone(), &f, truth);
                        r.delivery = delivery;
                        requests.push(r);
                    }
                    let verify_id = self.trx_id(terminal);
                    requests.push(self.request(terminal, p.product, Operation::Verify, verify_id, &f, truth));
                    requests.push(self.request(
                        terminal,
                        p.product,
                        Operation::Supply,
                        id.clone(),
                        &f,
                        truth,
                    ));
                }
                for (p, _) in queued {
                    self.after(terminal, Operation::Supply, p);
                }
                (terminal, None, requests)
            }
            Plan::Falsified { terminal, kind } => {
                let event = self.events.len();
                self.events.push(EventDraft { kind, code: None, steps: vec![index] });
                let r = self.falsified(rng, terminal, kind, event);
                (terminal, Some(event), vec![r])
            }
            Plan::CloneOriginal { terminal, event } => {
                let kind = self.events[event].kind;
                let multi = if kind == Falsification::CloneMultiMarket { 100 } else { 0 };
                let product = self.product_of(rng, self.market_index(terminal), multi);
                // Not filed in the stock: nothing else touches this pack.
                let p = self.new_pack(rng, product);
                let f = self.fields(p);
                let id = self.trx_id(terminal);
                let truth = Truth::Genuine(Conduct::ClonedElsewhere);
                let r = self.request(terminal, product, Operation::Supply, id, &f, truth);
                self.events[event].code = Some((product, f));
                self.events[event].steps.push(index);
                (terminal, Some(event), vec![r])
            }
            Plan::CloneCopy { terminal, event } => {
                let kind = self.events[event].kind;
                let (product, f) = self.events[event]
                    .code
                    .clone()
                    .ok_or_else(|| ConfigError::new("seed", "a clone came before its genuine pack"))?;
                let id = self.trx_id(terminal);
                let r = self.request(terminal, product, Operation::Supply, id, &f, Truth::Falsified(kind));
                self.events[event].steps.push(index);
                (terminal, Some(event), vec![r])
            }
        };
        self.steps.push(Step { phase, terminal, event, requests });
        Ok(())
    }

    fn plain(&mut self, rng: &mut Rng, terminal: usize, activity: Activity) -> Vec<Request> {
        let truth = Truth::Genuine(Conduct::Plain);
        let m = self.market_index(terminal);
        let activity = if activity == Activity::Undo && self.stock[terminal].supplied.is_empty() {
            Activity::Dispense
        } else {
            activity
        };
        let one = |g: &mut Gen<'_>, op: Operation, p: PackRef, truth: Truth| {
            let f = g.fields(p);
            let id = g.trx_id(terminal);
            g.request(terminal, p.product, op, id, &f, truth)
        };
        match activity {
            Activity::Dispense | Activity::Destroy | Activity::Export => {
                let op = match activity {
                    Activity::Dispense => Operation::Supply,
                    Activity::Destroy => Operation::Destroy,
                    _ => Operation::Export,
                };
                let p = self.take(rng, terminal);
                let r = one(self, op, p, truth);
                self.after(terminal, op, p);
                vec![r]
            }
            Activity::VerifyThenDispense => {
                let p = self.take(rng, terminal);
                let verify = one(self, Operation::Verify, p, Truth::Genuine(Conduct::VerifyFirst));
                let supply = one(self, Operation::Supply, p, truth);
                self.after(terminal, Operation::Supply, p);
                vec![verify, supply]
            }
            Activity::Verify => {
                let stock = &self.stock[terminal].verified;
                if !stock.is_empty() && rng.percent(40) {
                    // A pack in stock checked again; it stays in stock.
                    let p = stock[rng.index(stock.len())];
                    vec![one(self, Operation::Verify, p, truth)]
                } else {
                    let p = self.fresh(rng, m);
                    let r = one(self, Operation::Verify, p, truth);
                    self.after(terminal, Operation::Verify, p);
                    vec![r]
                }
            }
            Activity::Undo => {
                let supplied = &mut self.stock[terminal].supplied;
                let i = rng.index(supplied.len());
                let p = supplied.swap_remove(i);
                let r = one(self, Operation::UndoSupply, p, truth);
                // Active again, back in stock.
                self.stock[terminal].verified.push(p);
                vec![r]
            }
            Activity::InterMarketVerify => {
                let others = self.config.markets.len() - 1;
                let o = (m + 1 + rng.index(others)) % self.config.markets.len();
                let product = self.product_of(rng, o, 0);
                let p = self.new_pack(rng, product);
                vec![one(self, Operation::Verify, p, truth)]
            }
        }
    }

    /// A scan of a genuine pack corrupted by `corruption`, then its clean rescan. The pack is one
    /// whose code the corruption changes, and changes into no other genuine pack's code.
    fn corrupted(
        &mut self,
        rng: &mut Rng,
        terminal: usize,
        corruption: Corruption,
    ) -> Result<Vec<Request>, ConfigError> {
        let op = self.operation_of(rng, terminal);
        for _ in 0..MAX_TRIES {
            let p = self.take(rng, terminal);
            let f = self.fields(p);
            let changed = match corruption {
                Corruption::LostGroupSeparator => true,
                _ => {
                    let c = scanner::corrupted_fields(&f, corruption);
                    let taken = &self.products[p.product].taken;
                    c != f && (c.serial == f.serial || !taken.contains(&c.serial))
                }
            };
            if !changed {
                self.stock[terminal].verified.push(p);
                continue;
            }
            if corruption != Corruption::LostGroupSeparator {
                // Never uploaded later either.
                let c = scanner::corrupted_fields(&f, corruption);
                self.products[p.product].taken.insert(c.serial);
            }
            let id = self.trx_id(terminal);
            let bad = Request {
                operation: op,
                client_trx_id: id,
                input: self.input(terminal, p.product, &f, Some(corruption)),
                delivery: Delivery::Answered,
                truth: Truth::Corrupted(corruption),
            };
            let id = self.trx_id(terminal);
            let rescan = self.request(terminal, p.product, op, id, &f, Truth::Genuine(Conduct::Rescan));
            self.after(terminal, op, p);
            return Ok(vec![bad, rescan]);
        }
        Err(ConfigError::new("mix", format!("no pack found whose code {} changes", corruption.as_str())))
    }

    /// The request presenting a falsified code of `kind` (not a clone) at `terminal`.
    fn falsified(&mut self, rng: &mut Rng, terminal: usize, kind: Falsification, event: usize) -> Request {
        let m = self.market_index(terminal);
        let multi = if kind == Falsification::RecalledBatch { 0 } else { 20 };
        let product = self.product_of(rng, m, multi);
        let open: Vec<usize> = (0..self.products[product].product.batches.len())
            .filter(|&b| !self.products[product].product.batches[b].recalled)
            .collect();
        let f = match kind {
            Falsification::UnknownSerial => {
                let b = &self.products[product].product.batches[open[rng.index(open.len())]];
                let (batch, expiry) = (b.name.clone(), b.printed_expiry.clone());
                let serial = self.new_serial(rng, product);
                Fields { product_code: self.products[product].product.gtin.clone(), serial, batch, expiry }
            }
            Falsification::UnknownBatch => {
                let b = &self.products[product].product.batches[open[rng.index(open.len())]];
                let expiry = b.printed_expiry.clone();
                let yy = expiry[..2].parse::<u32>().unwrap_or(0);
                let batch = loop {
                    let name = batch_name(rng, BatchStyle::Plain, yy);
                    if self.products[product].product.batches.iter().all(|b| b.name != name) {
                        break name;
                    }
                };
                let serial = self.new_serial(rng, product);
                Fields { product_code: self.products[product].product.gtin.clone(), serial, batch, expiry }
            }
            Falsification::BatchMismatch => {
                let p = self.new_pack(rng, product);
                let mut f = self.fields(p);
                let others: Vec<usize> = open.iter().copied().filter(|&b| b != p.batch).collect();
                let b = &self.products[product].product.batches[others[rng.index(others.len())]];
                f.batch = b.name.clone();
                f.expiry = b.printed_expiry.clone();
                f
            }
            Falsification::ExpiryMismatch => {
                let p = self.new_pack(rng, product);
                let mut f = self.fields(p);
                f.expiry = shifted_expiry(&self.products[product].product.batches[p.batch].expiry);
                f
            }
            Falsification::RecalledBatch => {
                let recalled = (0..self.products[product].product.batches.len())
                    .find(|&b| self.products[product].product.batches[b].recalled)
                    .unwrap_or(0);
                let p = self.new_pack_in(rng, product, recalled);
                self.fields(p)
            }
            Falsification::CloneInterMarket | Falsification::CloneMultiMarket => {
                // Made by the clone's two steps, never here.
                let p = self.new_pack(rng, product);
                self.fields(p)
            }
        };
        let op = if rng.percent(70) { Operation::Supply } else { Operation::Verify };
        let id = self.trx_id(terminal);
        let r = self.request(terminal, product, op, id, &f, Truth::Falsified(kind));
        self.events[event].code = Some((product, f));
        r
    }

    /// A few serials per batch that no terminal scans, as in real life (and no batch is
    /// uploaded empty).
    fn top_up(&mut self, rng: &mut Rng) {
        for product in 0..self.products.len() {
            for batch in 0..self.products[product].product.batches.len() {
                for _ in 0..3 + rng.below(8) {
                    self.new_pack_in(rng, product, batch);
                }
            }
        }
    }

    fn finish(self) -> Workload {
        Workload {
            seed: self.config.seed,
            markets: self.config.markets.clone(),
            products: self.products.into_iter().map(|p| p.product).collect(),
            terminals: self.terminals,
            steps: self.steps,
            events: self
                .events
                .into_iter()
                .map(|e| {
                    let (product_code, serial) =
                        e.code.map(|(_, f)| (f.product_code, f.serial)).unwrap_or_default();
                    Event { kind: e.kind, product_code, serial, steps: e.steps }
                })
                .collect(),
        }
    }
}

/// The terminals of every market: pharmacies (most with a keyboard-wedge scanner sending scans,
/// some whose software parses the wedge's input into fields, one in eight with a direct
/// scanner), hospitals (alternately a system sending fields and a wedge), wholesalers (warehouse
/// systems sending fields, every second one a wedge).
fn terminals(config: &Config) -> Result<Vec<Terminal>, ConfigError> {
    let mut out = Vec::new();
    let location = |s: String| {
        Location::new(&s).map_err(|e| ConfigError::new("markets", format!("location '{s}': {e}")))
    };
    for m in &config.markets {
        for i in 1..=config.pharmacies {
            let (scanner, input) = match i % 8 {
                5 | 6 => (Scanner::KeyboardWedge, InputForm::Fields),
                7 => (Scanner::Direct, InputForm::Scan),
                _ => (Scanner::KeyboardWedge, InputForm::Scan),
            };
            out.push(Terminal {
                market: *m,
                role: Role::Pharmacy,
                location: location(format!("{m}-PH-{i:04}"))?,
                scanner,
                input,
            });
        }
        for (role, kind, count) in
            [(Role::Hospital, "HO", config.hospitals), (Role::Wholesaler, "WH", config.wholesalers)]
        {
            for i in 1..=count {
                let (scanner, input) = if i % 2 == 1 {
                    (Scanner::Direct, InputForm::Fields)
                } else {
                    (Scanner::KeyboardWedge, InputForm::Scan)
                };
                out.push(Terminal {
                    market: *m,
                    role,
                    location: location(format!("{m}-{kind}-{i:04}"))?,
                    scanner,
                    input,
                });
            }
        }
    }
    Ok(out)
}

/// How a batch number looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchStyle {
    /// `K29B417`.
    Plain,
    /// `B29-0417`.
    Hyphen,
    /// `LOT/417K`.
    Slash,
}

fn batch_name(rng: &mut Rng, style: BatchStyle, yy: u32) -> String {
    let letter = |rng: &mut Rng| char::from(LETTERS[rng.index(LETTERS.len())]);
    match style {
        BatchStyle::Plain => {
            let (a, b) = (letter(rng), letter(rng));
            format!("{a}{yy:02}{b}{:03}", rng.below(1000))
        }
        BatchStyle::Hyphen => format!("B{yy:02}-{:04}", rng.below(10_000)),
        BatchStyle::Slash => {
            let a = letter(rng);
            format!("LOT/{:03}{a}", rng.below(1000))
        }
    }
}

/// The last day of `month` of `year`.
fn last_day(year: u32, month: u32) -> u32 {
    u32::from(openmvs_core::time::days_in_month(year as i32, month as u8))
}

/// The expiry three months after `expiry` (`YYMMDD`, the last day of its month), in the same
/// year: a different month, so it differs even after `00` is read as the month's last day.
fn shifted_expiry(expiry: &str) -> String {
    let yy: u32 = expiry.get(..2).and_then(|s| s.parse().ok()).unwrap_or(30);
    let month: u32 = expiry.get(2..4).and_then(|s| s.parse().ok()).unwrap_or(1);
    let shifted = (month - 1 + 3) % 12 + 1;
    format!("{yy:02}{shifted:02}{:02}", last_day(2000 + yy, shifted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_ends_and_shifted_expiries_are_valid_dates_of_another_month() {
        assert_eq!((last_day(2028, 2), last_day(2029, 2), last_day(2100, 2)), (29, 28, 28));
        assert_eq!(shifted_expiry("281130"), "280229");
        assert_eq!(shifted_expiry("290131"), "290430");
    }
}
