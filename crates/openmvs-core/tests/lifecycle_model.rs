//! Property test: random sequences of operations from random locations and times, checked
//! against a small reference model of the pack lifecycle and against invariants that hold
//! whatever the model says.
//!
//! Shrunk failures are kept by proptest in `lifecycle_model.proptest-regressions` and replayed
//! first on every run; the ones found while building the core are also pinned below by name.

use std::time::Duration;

use openmvs_core::ids::{Batch, Expiry, Location};
use openmvs_core::pack::{
    BatchFacts, Command, Context, Facts, Operation, Pack, PackState, Policy, Request, decide,
};
use openmvs_core::time::{Date, Timestamp};
use proptest::prelude::*;

const HOUR_MS: i64 = 3_600_000;
const LOCATIONS: [&str; 3] = ["PH-A", "PH-B", "HOSP-C"];

/// One step of a scenario.
#[derive(Debug, Clone)]
enum Step {
    /// A request after `hours` more hours, from `LOCATIONS[loc]`, with a wrong batch or expiry when asked.
    Request { hours: u16, loc: usize, command: Command, wrong_batch: bool, wrong_expiry: bool },
    /// The OBP recalls the batch.
    Recall,
    /// The OBP withdraws the product.
    Withdraw,
}

fn command() -> impl Strategy<Value = Command> {
    let op = prop::sample::select(Operation::ALL.to_vec());
    prop_oneof![
        2 => Just(Command::Verify),
        4 => op.clone().prop_map(Command::Set),
        3 => op.prop_filter("undoable", |o| o.is_undoable()).prop_map(Command::Undo),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        40 => (0u16..200, 0usize..3, command(), prop::bool::weighted(0.05), prop::bool::weighted(0.05))
            .prop_map(|(hours, loc, command, wrong_batch, wrong_expiry)| Step::Request {
                hours, loc, command, wrong_batch, wrong_expiry
            }),
        1 => Just(Step::Recall),
        1 => Just(Step::Withdraw),
    ]
}

/// The reference model: the rules of fmd-rules §4.3-4.5 written as plainly as possible, over its
/// own representation of the pack.
#[derive(Debug, Clone)]
struct Model {
    state: &'static str,
    /// (command, location index, hour) of the last change.
    last: Option<(Command, usize, i64)>,
    repeats: u32,
    recalled: bool,
    withdrawn: bool,
}

fn target_name(op: Operation) -> &'static str {
    op.target().as_str()
}

impl Model {
    /// Applies a request at `hour` (from the start) and expiry on `expiry_hour`; returns the expected return code.
    fn request(&mut self, cmd: Command, loc: usize, hour: i64, expired: bool) -> &'static str {
        let reason = if self.withdrawn {
            Some("NMVS_FE_LOT_08")
        } else if self.recalled {
            Some("NMVS_FE_LOT_01")
        } else if expired {
            Some("NMVS_NC_PCK_02")
        } else {
            None
        };
        let repeat = self.last.is_some_and(|(c, l, _)| c == cmd && l == loc);
        match cmd {
            Command::Verify => match reason {
                Some(r) => r,
                None if self.state != "ACTIVE" => "NMVS_INFO_PCK_INACTIVE",
                None => "NMVS_SUCCESS",
            },
            Command::Set(op) if self.state == "ACTIVE" => match reason {
                Some(r) => r,
                None => {
                    self.state = target_name(op);
                    self.last = Some((cmd, loc, hour));
                    self.repeats = 0;
                    "NMVS_SUCCESS"
                }
            },
            Command::Set(op) if self.state == target_name(op) && repeat => self.repeat(),
            Command::Set(_) => "NMVS_NC_PCK_22",
            Command::Undo(_) if self.state == "ACTIVE" && repeat => self.repeat(),
            Command::Undo(op) if self.state != target_name(op) => "NMVS_NC_PCK_06",
            Command::Undo(op) => {
                let (_, l, at) = self.last.expect("an inactive pack has a last change");
                if l != loc {
                    "NMVS_NC_PCK_21"
                } else if op != Operation::CheckOut && hour - at > 240 {
                    "NMVS_NC_PCK_20"
                } else if let Some(r) = reason {
                    r
                } else {
                    self.state = "ACTIVE";
                    self.last = Some((cmd, loc, hour));
                    self.repeats = 0;
                    "NMVS_SUCCESS"
                }
            }
        }
    }

    fn repeat(&mut self) -> &'static str {
        self.repeats += 1;
        if self.repeats <= 2 { "NMVS_NC_PCK_23" } else { "NMVS_NC_PCK_22" }
    }
}

fn start() -> Date {
    Date::new(2026, 11, 29).unwrap()
}

/// Runs a scenario through the core and the model, checking every step; returns a description of
/// the first disagreement.
fn run(steps: &[Step], expiry_in_days: u16) -> Result<(), TestCaseError> {
    let today = start();
    let expiry_date = Date::from_days_since_epoch(today.days_since_epoch() + i64::from(expiry_in_days));
    let encoded =
        format!("{:02}{:02}{:02}", expiry_date.year() % 100, expiry_date.month(), expiry_date.day());
    let expiry = Expiry::parse(&encoded, today).unwrap();
    let other_expiry = Expiry::parse("991231", today).unwrap();
    let batch = Batch::new("LOT1").unwrap();
    let other_batch = Batch::new("LOT2").unwrap();
    let locations: Vec<Location> = LOCATIONS.iter().map(|l| Location::new(l).unwrap()).collect();
    let policy = Policy::default();

    let mut pack = Pack::new(batch.clone());
    let mut facts = BatchFacts { expiry, recalled: false };
    let mut withdrawn = false;
    let mut model = Model { state: "ACTIVE", last: None, repeats: 0, recalled: false, withdrawn: false };
    let mut hour: i64 = 0;

    for (i, s) in steps.iter().enumerate() {
        let (hours, loc, command, wrong_batch, wrong_expiry) = match *s {
            Step::Recall => {
                facts.recalled = true;
                model.recalled = true;
                continue;
            }
            Step::Withdraw => {
                withdrawn = true;
                model.withdrawn = true;
                continue;
            }
            Step::Request { hours, loc, command, wrong_batch, wrong_expiry } => {
                (hours, loc, command, wrong_batch, wrong_expiry)
            }
        };
        hour += i64::from(hours);
        let now = Timestamp::from_unix_millis(Timestamp::start_of(today).unix_millis() + hour * HOUR_MS);
        let before = pack.clone();
        let req = Request {
            command,
            batch: if wrong_batch { &other_batch } else { &batch },
            expiry: Some(if wrong_expiry { &other_expiry } else { &expiry }),
        };
        let ctx = Context { location: &locations[loc], now, policy: &policy };
        let f = Facts {
            product_withdrawn: Some(withdrawn),
            pack: Some((&pack, &facts)),
            requested_batch_known: true,
        };
        let d = decide(&req, &f, &ctx);

        let expected = if wrong_batch {
            "NMVS_FE_LOT_13"
        } else if wrong_expiry {
            "NMVS_FE_LOT_12"
        } else {
            model.request(command, loc, hour, expiry.has_passed(now.date()))
        };
        prop_assert_eq!(d.code.as_str(), expected, "step {} {:?} at hour {}", i, s, hour);

        // Invariants that hold whatever the model says.
        prop_assert_eq!(d.alert().is_some(), d.code.level() == 5);
        if before.state.is_irreversible() {
            prop_assert_eq!(d.update.as_ref().map_or(before.state, |p| p.state), before.state);
        }
        if command == Command::Verify || wrong_batch || wrong_expiry {
            prop_assert!(d.update.is_none(), "verify and mismatches never change the pack");
        }
        if d.changed_state(before.state) {
            prop_assert!(d.accepted);
            let after = d.update.as_ref().unwrap();
            match command {
                Command::Set(op) => prop_assert_eq!(after.state, op.target()),
                Command::Undo(_) => {
                    prop_assert_eq!(after.state, PackState::Active);
                    let change = before.last_change.as_ref().unwrap();
                    prop_assert_eq!(&change.location, &locations[loc]);
                }
                Command::Verify => prop_assert!(false, "verify changed state"),
            }
            prop_assert!(!facts.recalled && !withdrawn, "no change on a recalled batch or withdrawn product");
        }
        if let Some(u) = d.update {
            pack = u;
        }
        prop_assert_eq!(pack.state.as_str(), model.state, "state after step {}", i);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_agree_with_the_reference_model(
        steps in prop::collection::vec(step(), 1..40),
        expiry_in_days in 0u16..40,
    ) {
        run(&steps, expiry_in_days)?;
    }
}

fn req(hours: u16, loc: usize, command: &str) -> Step {
    Step::Request {
        hours,
        loc,
        command: Command::parse(command).unwrap(),
        wrong_batch: false,
        wrong_expiry: false,
    }
}

#[test]
fn regression_undo_exactly_at_the_end_of_the_window_is_allowed() {
    run(&[req(0, 0, "supply"), req(200, 0, "verify"), req(40, 0, "supply-undo")], 30).unwrap();
}

#[test]
fn regression_undo_of_a_pack_that_expired_meanwhile_is_refused_without_alert() {
    run(&[req(0, 1, "lock"), req(30, 1, "lock-undo")], 0).unwrap();
}

#[test]
fn regression_a_double_scan_after_another_location_failed_still_counts_as_a_repeat() {
    run(
        &[
            req(0, 0, "supply"),
            req(1, 1, "supply"),
            req(1, 0, "supply"),
            req(1, 0, "supply"),
            req(1, 0, "supply"),
        ],
        30,
    )
    .unwrap();
}

#[test]
fn model_uses_the_ten_day_default_window() {
    assert_eq!(Policy::default().undo_window, Duration::from_secs(240 * 3600));
}
