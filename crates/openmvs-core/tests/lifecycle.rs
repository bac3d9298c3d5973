//! Table-driven tests of the pack lifecycle rules (fmd-rules §3-4), each case one line through `check`.

use std::time::Duration;

use openmvs_core::ids::{Batch, Expiry, Location, MarketCode};
use openmvs_core::pack::{
    BatchFacts, Command, Context, Decision, Facts, Pack, PackState, Policy, Request, SyncChange,
    SyncDecision, decide, decide_sync,
};
use openmvs_core::return_code::AlertCode;
use openmvs_core::time::{Date, Timestamp};

const HOUR: i64 = 3_600_000;

fn today() -> Date {
    Date::new(2026, 11, 29).unwrap()
}

fn t0() -> Timestamp {
    Timestamp::start_of(today())
}

/// One pack in one market, with the facts around it, driven by commands.
struct World {
    pack: Option<Pack>,
    batch: BatchFacts,
    batch_known: bool,
    product_known: bool,
    withdrawn: bool,
    policy: Policy,
    /// The expiry printed on the pack, as requests carry it.
    printed_expiry: &'static str,
}

impl World {
    fn new() -> World {
        World {
            pack: Some(Pack::new(Batch::new("LOT1").unwrap())),
            batch: BatchFacts { expiry: Expiry::parse("271231", today()).unwrap(), recalled: false },
            batch_known: true,
            product_known: true,
            withdrawn: false,
            policy: Policy::default(),
            printed_expiry: "271231",
        }
    }

    /// Runs `command` given as its bulk name (`supply`, `supply-undo`, `verify`) from `location`
    /// `hours` after the start, with the pack's own batch and expiry unless overridden.
    fn run(&mut self, location: &str, hours: i64, command: &str) -> Decision {
        self.run_with(location, hours, command, "LOT1", self.printed_expiry)
    }

    fn run_with(&mut self, location: &str, hours: i64, command: &str, batch: &str, expiry: &str) -> Decision {
        let command = Command::parse(command).expect("command");
        let location = Location::new(location).unwrap();
        let batch = Batch::new(batch).unwrap();
        let expiry = Expiry::parse(expiry, today()).unwrap();
        let ctx = Context {
            location: &location,
            now: Timestamp::from_unix_millis(t0().unix_millis() + hours * HOUR),
            policy: &self.policy,
        };
        let facts = Facts {
            product_withdrawn: self.product_known.then_some(self.withdrawn),
            pack: self.pack.as_ref().map(|p| (p, &self.batch)),
            requested_batch_known: self.batch_known,
        };
        let d = decide(&Request { command, batch: &batch, expiry: Some(&expiry) }, &facts, &ctx);
        if let Some(update) = &d.update {
            self.pack = Some(update.clone());
        }
        d
    }
}

/// Runs `steps` (location, hour, command) in a fresh world changed by `setup`, and checks the last
/// step's return code, alert and the pack's state afterwards.
fn check(setup: fn(&mut World), steps: &[(&str, i64, &str)], code: &str, state: Option<&str>) {
    let mut w = World::new();
    setup(&mut w);
    let mut last = None;
    for &(loc, h, cmd) in steps {
        last = Some(w.run(loc, h, cmd));
    }
    let d = last.expect("at least one step");
    assert_eq!(d.code.as_str(), code, "steps {steps:?}: {d:?}");
    assert_eq!(d.alert(), d.code.alert());
    assert_eq!(d.view.as_ref().map(|v| v.state.as_str()), state, "steps {steps:?}");
    if let (Some(v), Some(p)) = (&d.view, &w.pack) {
        assert_eq!(v.state, p.state, "the view shows the stored state");
    }
}

fn plain(_: &mut World) {}

#[test]
fn verify_of_an_active_pack_succeeds_and_changes_nothing() {
    check(plain, &[("P1", 0, "verify")], "NMVS_SUCCESS", Some("ACTIVE"));
    let mut w = World::new();
    let d = w.run("P1", 0, "verify");
    assert!(d.accepted && d.update.is_none() && d.view.unwrap().dispensable);
}

#[test]
fn supply_of_an_active_pack_succeeds() {
    check(plain, &[("P1", 0, "supply")], "NMVS_SUCCESS", Some("SUPPLIED"));
}

#[test]
fn every_operation_sets_its_state() {
    for (op, state) in [
        ("supply", "SUPPLIED"),
        ("destroy", "DESTROYED"),
        ("export", "EXPORTED"),
        ("sample", "SAMPLE"),
        ("free-sample", "FREE_SAMPLE"),
        ("lock", "LOCKED"),
        ("stolen", "STOLEN"),
        ("check-out", "CHECKED_OUT"),
    ] {
        check(plain, &[("P1", 0, op)], "NMVS_SUCCESS", Some(state));
    }
}

#[test]
fn verify_of_a_supplied_pack_reports_it_inactive_without_an_alert() {
    check(plain, &[("P1", 0, "supply"), ("P2", 1, "verify")], "NMVS_INFO_PCK_INACTIVE", Some("SUPPLIED"));
}

#[test]
fn unknown_product_asks_for_an_intermarket_transaction() {
    let mut w = World::new();
    w.product_known = false;
    let d = w.run("P1", 0, "verify");
    assert_eq!(d.code.as_str(), "NMVS_NC_PC_01");
    assert!(d.needs_intermarket() && d.alert().is_none() && d.view.is_none());
}

#[test]
fn unknown_serial_of_a_known_batch_raises_a3() {
    check(|w| w.pack = None, &[("P1", 0, "verify")], "NMVS_NC_PC_02", None);
    check(|w| w.pack = None, &[("P1", 0, "supply")], "NMVS_NC_PC_02", None);
}

#[test]
fn unknown_serial_and_unknown_batch_raise_a2() {
    check(
        |w| {
            w.pack = None;
            w.batch_known = false;
        },
        &[("P1", 0, "verify")],
        "NMVS_FE_LOT_03",
        None,
    );
}

#[test]
fn serial_under_another_batch_raises_a68_and_expiry_mismatch_raises_a52() {
    let mut w = World::new();
    let d = w.run_with("P1", 0, "verify", "LOT2", "271231");
    assert_eq!((d.code.as_str(), d.alert()), ("NMVS_FE_LOT_13", Some(AlertCode::A68)));
    let d = w.run_with("P1", 0, "supply", "LOT1", "271130");
    assert_eq!((d.code.as_str(), d.alert()), ("NMVS_FE_LOT_12", Some(AlertCode::A52)));
    assert_eq!(w.pack.unwrap().state, PackState::Active, "a refused request changes nothing");
}

#[test]
fn expiry_day_zero_matches_the_last_day_of_the_month() {
    let mut w = World::new();
    let d = w.run_with("P1", 0, "verify", "LOT1", "271200");
    assert_eq!(d.code.as_str(), "NMVS_SUCCESS");
}

#[test]
fn supply_of_a_supplied_pack_from_another_location_raises_a24() {
    check(plain, &[("P1", 0, "supply"), ("P2", 1, "supply")], "NMVS_NC_PCK_22", Some("SUPPLIED"));
    check(plain, &[("P1", 0, "supply"), ("P1", 1, "destroy")], "NMVS_NC_PCK_22", Some("SUPPLIED"));
}

#[test]
fn double_scan_is_tolerated_twice_then_raises_a24() {
    let s = |n| vec![("P1", 0, "supply"); n];
    check(plain, &s(2), "NMVS_NC_PCK_23", Some("SUPPLIED"));
    check(plain, &s(3), "NMVS_NC_PCK_23", Some("SUPPLIED"));
    check(plain, &s(4), "NMVS_NC_PCK_22", Some("SUPPLIED"));
    check(plain, &s(6), "NMVS_NC_PCK_22", Some("SUPPLIED"));
}

#[test]
fn undo_within_the_window_from_the_same_location_reactivates() {
    check(plain, &[("P1", 0, "supply"), ("P1", 240, "supply-undo")], "NMVS_SUCCESS", Some("ACTIVE"));
    for op in ["export", "sample", "free-sample", "lock"] {
        let undo = format!("{op}-undo");
        let steps = [("P1", 0, op), ("P1", 1, undo.as_str())];
        check(plain, &steps, "NMVS_SUCCESS", Some("ACTIVE"));
    }
}

#[test]
fn undo_after_ten_days_is_refused_with_an_alert() {
    check(plain, &[("P1", 0, "supply"), ("P1", 241, "supply-undo")], "NMVS_NC_PCK_20", Some("SUPPLIED"));
}

#[test]
fn undo_window_is_configurable() {
    let mut w = World::new();
    w.policy.undo_window = Duration::from_secs(3600);
    w.run("P1", 0, "supply");
    assert_eq!(w.run("P1", 2, "supply-undo").code.as_str(), "NMVS_NC_PCK_20");
}

#[test]
fn undo_from_another_location_is_refused_with_an_alert() {
    check(plain, &[("P1", 0, "supply"), ("P2", 1, "supply-undo")], "NMVS_NC_PCK_21", Some("SUPPLIED"));
}

#[test]
fn undo_naming_another_state_is_refused_with_an_alert() {
    check(plain, &[("P1", 0, "supply"), ("P1", 1, "lock-undo")], "NMVS_NC_PCK_06", Some("SUPPLIED"));
    check(plain, &[("P1", 0, "supply-undo")], "NMVS_NC_PCK_06", Some("ACTIVE"));
}

#[test]
fn destroyed_and_stolen_packs_can_never_be_undone() {
    assert!(Command::parse("destroy-undo").is_none() && Command::parse("stolen-undo").is_none());
    check(plain, &[("P1", 0, "destroy"), ("P1", 1, "supply-undo")], "NMVS_NC_PCK_06", Some("DESTROYED"));
    check(plain, &[("P1", 0, "stolen"), ("P1", 1, "lock-undo")], "NMVS_NC_PCK_06", Some("STOLEN"));
    check(plain, &[("P1", 0, "stolen"), ("P1", 1, "supply")], "NMVS_NC_PCK_22", Some("STOLEN"));
}

#[test]
fn repeated_undo_from_the_same_location_is_a_double_scan() {
    let s = [("P1", 0, "supply"), ("P1", 1, "supply-undo"), ("P1", 1, "supply-undo")];
    check(plain, &s, "NMVS_NC_PCK_23", Some("ACTIVE"));
}

#[test]
fn recalled_expired_and_withdrawn_refuse_state_changes_without_an_alert() {
    check(|w| w.batch.recalled = true, &[("P1", 0, "supply")], "NMVS_FE_LOT_01", Some("ACTIVE"));
    check(|w| w.withdrawn = true, &[("P1", 0, "supply")], "NMVS_FE_LOT_08", Some("ACTIVE"));
    check(
        |w| {
            w.batch.expiry = Expiry::parse("261031", today()).unwrap();
            w.printed_expiry = "261031";
        },
        &[("P1", 0, "supply")],
        "NMVS_NC_PCK_02",
        Some("ACTIVE"),
    );
}

#[test]
fn verify_reports_batch_and_product_reasons_as_level_four() {
    let mut w = World::new();
    w.batch.recalled = true;
    w.withdrawn = true;
    let d = w.run("P1", 0, "verify");
    assert_eq!((d.code.as_str(), d.code.level(), d.accepted), ("NMVS_FE_LOT_08", 4, true));
    let v = d.view.unwrap();
    assert_eq!(v.reasons.iter().map(|r| r.as_str()).collect::<Vec<_>>(), ["WITHDRAWN", "RECALLED"]);
    assert!(!v.dispensable);
}

#[test]
fn undo_of_a_pack_whose_batch_was_recalled_since_is_refused_without_an_alert() {
    let mut w = World::new();
    w.run("P1", 0, "supply");
    w.batch.recalled = true;
    let d = w.run("P1", 1, "supply-undo");
    assert_eq!(d.code.as_str(), "NMVS_FE_LOT_01");
    assert_eq!(w.pack.unwrap().state, PackState::Supplied);
}

#[test]
fn a_pack_expires_the_day_after_its_expiry_date() {
    let mut w = World::new();
    w.batch.expiry = Expiry::parse("261129", today()).unwrap();
    assert_eq!(w.run_with("P1", 23, "verify", "LOT1", "261129").code.as_str(), "NMVS_SUCCESS");
    assert_eq!(w.run_with("P1", 24, "verify", "LOT1", "261129").code.as_str(), "NMVS_NC_PCK_02");
}

#[test]
fn check_out_is_undone_by_the_same_obp_without_a_time_limit() {
    check(
        plain,
        &[("OBP1", 0, "check-out"), ("OBP1", 24 * 300, "check-out-undo")],
        "NMVS_SUCCESS",
        Some("ACTIVE"),
    );
    check(
        plain,
        &[("OBP1", 0, "check-out"), ("OBP2", 1, "check-out-undo")],
        "NMVS_NC_PCK_21",
        Some("CHECKED_OUT"),
    );
}

fn synced(state: PackState, command: &str, hours: i64) -> SyncChange {
    SyncChange {
        state,
        command: Command::parse(command).unwrap(),
        origin: MarketCode::new("FR").unwrap(),
        location: Location::new("FR-PH-9").unwrap(),
        at: Timestamp::from_unix_millis(t0().unix_millis() + hours * HOUR),
    }
}

#[test]
fn a_synchronised_change_applies_to_an_active_pack_and_its_redelivery_is_ignored() {
    let pack = Pack::new(Batch::new("LOT1").unwrap());
    let change = synced(PackState::Supplied, "supply", 1);
    let SyncDecision::Apply(after) = decide_sync(&pack, &change) else { panic!("applies") };
    assert_eq!(after.state, PackState::Supplied);
    assert_eq!(decide_sync(&after, &change), SyncDecision::Ignore);
}

#[test]
fn a_synchronised_change_on_an_inactive_pack_raises_a24() {
    let mut w = World::new();
    w.run("DE-P1", 0, "supply");
    let d = decide_sync(w.pack.as_ref().unwrap(), &synced(PackState::Supplied, "supply", 1));
    assert_eq!(d, SyncDecision::Conflict(AlertCode::A24));
}

#[test]
fn a_synchronised_undo_reverts_only_the_change_that_came_from_that_market() {
    let pack = Pack::new(Batch::new("LOT1").unwrap());
    let SyncDecision::Apply(after) = decide_sync(&pack, &synced(PackState::Supplied, "supply", 1)) else {
        panic!("applies")
    };
    let SyncDecision::Apply(back) = decide_sync(&after, &synced(PackState::Active, "supply-undo", 2)) else {
        panic!("reverts")
    };
    assert_eq!(back.state, PackState::Active);
    let mut w = World::new();
    w.run("DE-P1", 0, "supply");
    assert_eq!(
        decide_sync(w.pack.as_ref().unwrap(), &synced(PackState::Active, "supply-undo", 2)),
        SyncDecision::Ignore
    );
}

/// An OBP's change as the hub sends it: it names no market, so the receiving market (DE here)
/// records it as coming through its own hub link, from the OBP as location.
fn from_obp(state: PackState, command: &str, obp: &str, hours: i64) -> SyncChange {
    SyncChange {
        state,
        command: Command::parse(command).unwrap(),
        origin: MarketCode::new("DE").unwrap(),
        location: Location::new(obp).unwrap(),
        at: Timestamp::from_unix_millis(t0().unix_millis() + hours * HOUR),
    }
}

#[test]
fn an_obp_check_out_through_the_hub_is_reverted_only_by_that_obp_undoing_it() {
    let pack = Pack::new(Batch::new("LOT1").unwrap());
    let SyncDecision::Apply(out) =
        decide_sync(&pack, &from_obp(PackState::CheckedOut, "check-out", "OBP1", 1))
    else {
        panic!("applies")
    };
    assert_eq!(out.state, PackState::CheckedOut);
    assert_eq!(
        decide_sync(&out, &from_obp(PackState::Active, "check-out-undo", "OBP2", 2)),
        SyncDecision::Ignore,
        "another OBP's undo leaves it checked out"
    );
    assert_eq!(
        decide_sync(&out, &from_obp(PackState::Active, "free-sample-undo", "OBP1", 2)),
        SyncDecision::Ignore,
        "an undo of another state leaves it checked out"
    );
    // Repackaging has no time limit: 30 days on, past the 10-day window of end users.
    let undo = from_obp(PackState::Active, "check-out-undo", "OBP1", 24 * 30);
    let SyncDecision::Apply(back) = decide_sync(&out, &undo) else { panic!("reverts") };
    assert_eq!(back.state, PackState::Active);
    assert_eq!(decide_sync(&back, &undo), SyncDecision::Ignore, "a redelivery changes nothing");
    let mut w = World::new();
    w.pack = Some(back);
    assert_eq!(w.run("DE-P1", 24 * 31, "supply").code.as_str(), "NMVS_SUCCESS", "dispensable again");
}

#[test]
fn a_synchronised_undo_never_reverts_a_state_it_does_not_name() {
    let pack = Pack::new(Batch::new("LOT1").unwrap());
    let SyncDecision::Apply(stolen) = decide_sync(&pack, &from_obp(PackState::Stolen, "stolen", "OBP1", 1))
    else {
        panic!("applies")
    };
    assert_eq!(
        decide_sync(&stolen, &from_obp(PackState::Active, "check-out-undo", "OBP1", 2)),
        SyncDecision::Ignore,
        "a stolen pack stays stolen"
    );
    let SyncDecision::Apply(locked) = decide_sync(&pack, &synced(PackState::Locked, "lock", 1)) else {
        panic!("applies")
    };
    assert_eq!(decide_sync(&locked, &synced(PackState::Active, "supply-undo", 2)), SyncDecision::Ignore);
}

#[test]
fn a_local_undo_is_refused_for_a_change_made_in_another_market() {
    let pack = Pack::new(Batch::new("LOT1").unwrap());
    let SyncDecision::Apply(after) = decide_sync(&pack, &synced(PackState::Supplied, "supply", 1)) else {
        panic!("applies")
    };
    let mut w = World::new();
    w.pack = Some(after);
    assert_eq!(w.run("FR-PH-9", 2, "supply-undo").code.as_str(), "NMVS_NC_PCK_21");
}
