//! The generator keeps its promises: the same configuration gives the same workload byte for
//! byte, each kind of step occurs exactly as often as the mix says, and the ground truth is true
//! (a genuine request names an uploaded pack and asks only what the rules allow, a corruption
//! changes the code into no genuine one, a falsified code is what its kind says).

use std::collections::{BTreeMap, HashMap, HashSet};

use openmvs_core::ids::MarketCode;
use openmvs_core::roles::Role;
use openmvs_core::scan;
use openmvs_core::time::Date;
use openmvs_workload::{
    Conduct, Config, Corruption, Delivery, Falsification, Fields, Input, InputForm, Operation, Scanner,
    Truth, Workload, generate,
};

fn markets(list: &[&str]) -> Vec<MarketCode> {
    list.iter().map(|m| MarketCode::new(m).unwrap()).collect()
}

fn config(seed: u64, transactions: u64) -> Config {
    Config::small(seed, transactions, markets(&["DE", "FR", "SE"]), 2029)
}

/// The date scans are read on: before every expiry the workload makes.
fn today() -> Date {
    Date::new(2026, 12, 1).unwrap()
}

/// The fields a request names, as the national system reads them (`None` for a scan it cannot
/// read).
fn read(input: &Input) -> Option<Fields> {
    match input {
        Input::Fields(f) => Some(f.clone()),
        Input::Scan(s) => scan::parse(s.as_bytes(), today()).ok().map(|s| Fields {
            product_code: s.id.product_code.as_str().to_owned(),
            serial: s.id.serial.as_str().to_owned(),
            batch: s.id.batch.as_str().to_owned(),
            expiry: s.id.expiry.as_str().to_owned(),
        }),
    }
}

/// Every uploaded pack: (product code, serial) to (batch, printed expiry, recalled).
fn uploaded(w: &Workload) -> HashMap<(String, String), (String, String, bool)> {
    let mut packs = HashMap::new();
    for p in &w.products {
        for b in &p.batches {
            for s in &b.serials {
                let old = packs.insert(
                    (p.gtin.clone(), s.clone()),
                    (b.name.clone(), b.printed_expiry.clone(), b.recalled),
                );
                assert!(old.is_none(), "{} {s} uploaded twice", p.gtin);
            }
        }
    }
    packs
}

#[test]
fn the_same_configuration_gives_the_same_workload_byte_for_byte() {
    let a = generate(&config(7, 3_000)).unwrap();
    let b = generate(&config(7, 3_000)).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.lines(), b.lines());
    assert_eq!(a.fingerprint(), b.fingerprint());
    let c = generate(&config(8, 3_000)).unwrap();
    assert_ne!(a.fingerprint(), c.fingerprint(), "another seed, another workload");
    // Pinned, so that a seed reproduces the same workload on every build: this changes only
    // when the generator is changed on purpose (and then earlier seeds give other workloads).
    let pinned = generate(&config(1, 1_000)).unwrap();
    assert_eq!(pinned.fingerprint(), 0xa8ba_6c2e_1fe7_00ae, "{:#018x}", pinned.fingerprint());
}

#[test]
fn every_kind_of_step_occurs_exactly_as_often_as_the_mix_says() {
    let c = config(42, 20_000);
    let w = generate(&c).unwrap();
    let transactions = w.transactions();
    assert!(transactions >= c.transactions && transactions < c.transactions + 2, "{transactions}");

    let mut by_truth: BTreeMap<Truth, u64> = BTreeMap::new();
    for s in &w.steps {
        for r in &s.requests {
            *by_truth.entry(r.truth).or_default() += 1;
        }
    }
    for k in Corruption::ALL {
        let per_million = match k {
            Corruption::CapsLock => c.mix.caps_lock,
            Corruption::KeyboardLayout => c.mix.keyboard_layout,
            Corruption::LostGroupSeparator => c.mix.lost_group_separator,
        };
        assert_eq!(by_truth.get(&Truth::Corrupted(k)).copied().unwrap_or(0), c.count(per_million), "{k:?}");
    }
    let double_scans =
        w.steps.iter().filter(|s| s.requests.iter().any(|r| r.truth == Truth::Genuine(Conduct::DoubleScan)));
    assert_eq!(double_scans.count() as u64, c.count(c.mix.double_scan));
    let retries = w
        .steps
        .iter()
        .filter(|s| s.requests.iter().any(|r| r.truth == Truth::Genuine(Conduct::TimeoutRetry)))
        .count();
    assert_eq!(retries as u64, c.count(c.mix.timeout_retry));
    for kind in Falsification::ALL {
        let events: Vec<_> = w.events.iter().filter(|e| e.kind == kind).collect();
        assert_eq!(events.len() as u64, c.count(c.mix.falsification), "{kind:?}");
    }
    // The catalogue: each market's own products with a recalled batch, and those sold in all.
    let per_market = c.products_per_market as usize;
    assert_eq!(w.products.len(), w.markets.len() * per_market + c.multi_market_products as usize);
    for p in &w.products {
        assert!(p.batches.iter().all(|b| !b.serials.is_empty()), "{} has an empty batch", p.gtin);
        let recalled = p.batches.iter().filter(|b| b.recalled).count();
        assert_eq!(recalled, usize::from(p.markets.len() == 1), "{}: {:?}", p.gtin, p.markets);
    }
    // Everyday work is most of it, by every role, in every market.
    assert!(by_truth[&Truth::Genuine(Conduct::Plain)] > transactions / 2, "{by_truth:?}");
    for m in &w.markets {
        for role in [Role::Pharmacy, Role::Hospital, Role::Wholesaler] {
            let n = w
                .steps
                .iter()
                .filter(|s| w.terminals[s.terminal].market == *m && w.terminals[s.terminal].role == role)
                .count();
            assert!(n > 0, "no step of a {role} in {m}");
        }
    }

    // An outage in the first market: every pharmacy and hospital there replays its queue first
    // thing in phase 1, verify first and with the queued request's own client_trx_id.
    let first = w.markets[0];
    let dispensers: Vec<usize> = (0..w.terminals.len())
        .filter(|&t| w.terminals[t].market == first && w.terminals[t].role != Role::Wholesaler)
        .collect();
    let mut replayed = HashSet::new();
    for &t in &dispensers {
        let phase1: Vec<_> = w.steps.iter().filter(|s| s.terminal == t && s.phase == 1).collect();
        let replay = phase1.first().expect("a phase 1");
        assert!(replay.requests.iter().all(|r| r.truth == Truth::Genuine(Conduct::OutageReplay)));
        let queue = c.mix.outage_queue as usize;
        assert_eq!(replay.requests.len(), 1 + 2 * queue);
        assert_ne!(replay.requests[0].delivery, Delivery::Answered, "in flight when the link went down");
        for pair in replay.requests[1..].chunks(2) {
            assert_eq!((pair[0].operation, pair[1].operation), (Operation::Verify, Operation::Supply));
            assert_eq!(pair[0].input, pair[1].input);
        }
        assert_eq!(replay.requests[0].client_trx_id, replay.requests[2].client_trx_id);
        replayed.insert(t);
    }
    let outage_steps = w
        .steps
        .iter()
        .filter(|s| s.requests.iter().any(|r| r.truth == Truth::Genuine(Conduct::OutageReplay)));
    assert_eq!(outage_steps.map(|s| s.terminal).collect::<HashSet<_>>(), replayed);
    let phases: Vec<u8> = w.steps.iter().map(|s| s.phase).collect();
    assert!(phases.windows(2).all(|p| p[0] <= p[1]), "the steps of phase 0 come first");
}

#[test]
fn the_ground_truth_is_true() {
    let w = generate(&config(3, 20_000)).unwrap();
    let packs = uploaded(&w);
    let products: HashMap<&str, _> = w.products.iter().map(|p| (p.gtin.as_str(), p)).collect();
    let mut ids: HashMap<(usize, &str), (usize, &Input, Operation)> = HashMap::new();
    // Which terminals change each genuine pack's state, in order.
    let mut changes: HashMap<(String, String), Vec<(usize, Operation)>> = HashMap::new();
    for (i, s) in w.steps.iter().enumerate() {
        let t = &w.terminals[s.terminal];
        for (j, r) in s.requests.iter().enumerate() {
            let allowed = match r.operation {
                Operation::Verify | Operation::Destroy => true,
                Operation::Supply | Operation::UndoSupply => t.role != Role::Wholesaler,
                Operation::Export => t.role == Role::Wholesaler,
            };
            assert!(allowed, "step {i}: a {} may not {:?}", t.role, r.operation);
            // A client_trx_id is used once, except by a retry of the same request in its step.
            match ids.get(&(s.terminal, r.client_trx_id.as_str())) {
                None => {
                    ids.insert((s.terminal, &r.client_trx_id), (i, &r.input, r.operation));
                }
                Some(&(step, input, op)) => {
                    assert_eq!((step, input, op), (i, &r.input, r.operation), "{} reused", r.client_trx_id);
                    let first = s.requests.iter().position(|x| x.client_trx_id == r.client_trx_id).unwrap();
                    assert_ne!(
                        s.requests[first].delivery,
                        Delivery::Answered,
                        "only a lost answer is retried"
                    );
                    assert!(first < j);
                }
            }
            if r.delivery != Delivery::Answered {
                assert!(s.requests[j + 1..].iter().any(|x| x.client_trx_id == r.client_trx_id), "retried");
            }
            match r.truth {
                Truth::Genuine(conduct) => {
                    let f = read(&r.input)
                        .unwrap_or_else(|| panic!("step {i}: a clean code reads: {:?}", r.input));
                    let (batch, printed, recalled) =
                        packs.get(&(f.product_code.clone(), f.serial.clone())).unwrap_or_else(|| {
                            panic!("step {i}: a genuine request names an uploaded pack: {f:?}")
                        });
                    assert_eq!((&f.batch, &f.expiry), (batch, printed), "step {i}");
                    assert!(!recalled, "step {i}: genuine work is not on recalled packs");
                    if r.operation != Operation::Verify && conduct != Conduct::ClonedElsewhere {
                        changes
                            .entry((f.product_code, f.serial))
                            .or_default()
                            .push((s.terminal, r.operation));
                    }
                }
                Truth::Corrupted(k) => {
                    assert_eq!(w.terminals[s.terminal].scanner, Scanner::KeyboardWedge, "step {i}");
                    let clean = &s.requests[j + 1];
                    assert_eq!(clean.truth, Truth::Genuine(Conduct::Rescan), "step {i}: rescanned");
                    assert_ne!(r.input, clean.input, "step {i}: the corruption changes the code");
                    match (k, &r.input) {
                        (Corruption::LostGroupSeparator, Input::Scan(scan)) => {
                            assert!(!scan.contains('\u{1d}'));
                            assert!(read(&r.input).is_none(), "step {i}: unreadable without its GS");
                        }
                        (Corruption::LostGroupSeparator, Input::Fields(_)) => {
                            panic!("step {i}: a lost GS in fields")
                        }
                        _ => {
                            if let Some(f) = read(&r.input) {
                                let genuine = read(&clean.input).unwrap();
                                let other = packs.get(&(f.product_code.clone(), f.serial.clone()));
                                assert!(
                                    f.serial == genuine.serial || other.is_none(),
                                    "step {i}: {k:?} turned the code into another genuine pack's"
                                );
                            }
                        }
                    }
                }
                Truth::Falsified(_) => {}
            }
        }
    }
    for ((pc, serial), who) in &changes {
        let terminals: HashSet<usize> = who.iter().map(|(t, _)| *t).collect();
        assert_eq!(terminals.len(), 1, "{pc} {serial}: one location changes a genuine pack: {who:?}");
        let mut supplied = false;
        for (_, op) in who {
            match op {
                Operation::Supply => supplied = true,
                Operation::UndoSupply => {
                    assert!(supplied, "{pc} {serial}: undone before it was supplied");
                    supplied = false;
                }
                _ => {}
            }
        }
    }

    for e in &w.events {
        let steps: Vec<_> = e.steps.iter().map(|&i| &w.steps[i]).collect();
        let presented = steps
            .iter()
            .find_map(|s| s.requests.iter().find(|r| r.truth == Truth::Falsified(e.kind)))
            .unwrap();
        let f = read(&presented.input).expect("a falsified code reads");
        assert_eq!((&f.product_code, &f.serial), (&e.product_code, &e.serial));
        let product = products[f.product_code.as_str()];
        let pack = packs.get(&(f.product_code.clone(), f.serial.clone()));
        match e.kind {
            Falsification::UnknownSerial => {
                assert!(pack.is_none());
                assert!(product.batches.iter().any(|b| b.name == f.batch));
            }
            Falsification::UnknownBatch => {
                assert!(pack.is_none());
                assert!(product.batches.iter().all(|b| b.name != f.batch));
            }
            Falsification::BatchMismatch => {
                let (batch, _, _) = pack.expect("a genuine serial");
                assert_ne!(batch, &f.batch);
                assert!(product.batches.iter().any(|b| b.name == f.batch));
            }
            Falsification::ExpiryMismatch => {
                let (batch, printed, _) = pack.expect("a genuine serial");
                assert_eq!(batch, &f.batch);
                assert_ne!(printed[..4], f.expiry[..4], "another month");
            }
            Falsification::RecalledBatch => assert!(pack.expect("a genuine pack").2),
            Falsification::CloneInterMarket | Falsification::CloneMultiMarket => {
                assert_eq!(steps.len(), 2);
                let (original, copy) = (steps[0], steps[1]);
                assert_eq!((original.phase, copy.phase), (0, 1), "the genuine pack is dispensed first");
                assert_eq!(original.requests[0].truth, Truth::Genuine(Conduct::ClonedElsewhere));
                assert_eq!(read(&original.requests[0].input), Some(f.clone()));
                let (a, b) = (w.terminals[original.terminal].market, w.terminals[copy.terminal].market);
                assert_ne!(a, b, "cloned into another market");
                let sold_in_b = product.markets.contains(&b);
                assert_eq!(sold_in_b, e.kind == Falsification::CloneMultiMarket, "{:?}", e.kind);
                assert!(pack.is_some());
            }
        }
        assert!(e.kind == Falsification::RecalledBatch || e.kind.alert().is_some());
    }
    assert!(w.terminals.iter().any(|t| t.input == InputForm::Fields));
}

#[test]
fn a_configuration_that_cannot_be_generated_is_refused_naming_the_field() {
    type Change = Box<dyn Fn(&mut Config)>;
    let cases: Vec<(Change, &str)> = vec![
        (Box::new(|c| c.markets = markets(&["DE"])), "markets"),
        (Box::new(|c| c.markets = markets(&["DE", "DE"])), "markets"),
        (Box::new(|c| c.pharmacies = 0), "pharmacies"),
        (Box::new(|c| c.products_per_market = 0), "products_per_market"),
        (Box::new(|c| c.multi_market_products = 0), "multi_market_products"),
        (Box::new(|c| c.multi_market_percent = 101), "multi_market_percent"),
        (Box::new(|c| c.transactions = 0), "transactions"),
        (Box::new(|c| c.first_expiry_year = 1999), "first_expiry_year"),
        (Box::new(|c| c.mix.outage_markets = 4), "mix.outage_markets"),
        (Box::new(|c| c.mix.minimum = 0), "mix.minimum"),
    ];
    for (change, field) in cases {
        let mut c = config(1, 100);
        change(&mut c);
        let e = generate(&c).unwrap_err();
        assert_eq!(e.field, field, "{e}");
        assert!(e.to_string().starts_with(&format!("{field}: ")), "{e}");
    }
}
