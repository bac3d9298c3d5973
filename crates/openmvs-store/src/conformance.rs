//! The storage conformance suite: one set of tests every engine must pass, so that the service
//! can rely on the same guarantees whichever engine the binary chooses.
//!
//! An engine's test file instantiates it with [`conformance_tests!`], giving an expression that
//! opens a fresh, empty store as `Arc<dyn Store>`.

use std::sync::Arc;

use openmvs_audit::{Entry, Verifier};
use openmvs_core::alert::{AlertChange, AlertComment, AlertStatus, AlertThread, Classification};
use openmvs_core::ids::{Batch, Expiry, Location, MarketCode, ProductCode, Serial};
use openmvs_core::pack::{Change, Command, Operation, Pack, PackState};
use openmvs_core::return_code::{AlertCode, ReturnCode};
use openmvs_core::roles::Role;
use openmvs_core::time::{Clock, Date, Timestamp};

use crate::*;

/// Generates one `#[tokio::test]` per conformance case for the engine opened by `$open`.
#[macro_export]
macro_rules! conformance_tests {
    // An engine that needs a server: `$open` gives `Option<Arc<dyn Store>>`, and `None` skips the
    // case with a line on stderr saying why.
    (optional $open:expr, $verifying_key:expr) => {
        $crate::conformance_tests!(@list optional, $open, $verifying_key);
    };
    ($open:expr, $verifying_key:expr) => {
        $crate::conformance_tests!(@list required, $open, $verifying_key);
    };
    (@list $mode:ident, $open:expr, $verifying_key:expr) => {
        $crate::conformance_tests!(@cases $mode, $open, $verifying_key;
            a_unit_of_work_commits_every_part_together,
            a_stale_pack_version_conflicts_and_writes_nothing,
            a_reused_idempotency_key_conflicts,
            an_inbound_message_applies_once,
            one_source_event_raises_one_alert,
            alert_changes_need_the_expected_version,
            alerts_are_listed_by_filter_in_id_order,
            new_packs_leave_existing_serials_alone,
            products_and_batches_read_back_exactly,
            outbox_delivers_in_order_per_key_and_keeps_dead_letters,
            bulk_progress_appends_results_in_order,
            many_concurrent_commits_are_all_durable_and_the_audit_chain_verifies,
            clients_and_signing_keys_round_trip,
            a_pack_context_reads_everything_a_request_needs,
            a_refused_unit_is_answered_as_refused_beside_outbox_bookkeeping,
            a_claimed_outbox_message_waits_for_its_lease,
            the_outbox_is_claimed_as_runs_heads_first_then_each_keys_followers,
            resuming_the_outbox_ends_its_leases_and_backoffs_and_keeps_attempts_and_dead_letters,
            a_bulk_job_is_leased_to_one_worker_at_a_time,
            a_client_is_cut_off_and_let_back_in_with_its_audit_record,
            a_unit_creating_a_taken_client_id_writes_nothing,
            a_client_keeps_the_latest_instant_it_was_seen,
            a_retired_key_is_revoked_and_the_active_one_is_not,
            a_heartbeat_commits_and_commits_again,
            open_alerts_are_counted_by_status,
            outbox_messages_are_counted_live_failing_and_dead,
            sla_rows_replace_their_own_and_read_back_by_day_range,
            an_incident_keeps_its_timeline_and_takes_no_note_once_resolved,
            a_rule_opens_one_incident_at_a_time_per_scope,
            audit_search_reads_what_the_trail_holds,
        );
    };
    (@cases $mode:ident, $open:expr, $verifying_key:expr; $($case:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(store) = $crate::conformance_tests!(@open $mode, $open) else { return };
                let store: std::sync::Arc<dyn $crate::Store> = store;
                $crate::conformance::$case(store.clone(), $verifying_key).await;
            }
        )*
    };
    (@open required, $open:expr) => {
        Some($open)
    };
    (@open optional, $open:expr) => {
        $open
    };
}

/// Generates the checkpoint conformance cases for the engine opened by `$open`: a closure that
/// opens a fresh, empty store with the clock and checkpoint options it is given, as
/// `Option<Arc<dyn Store>>` (`None` skips the case, an engine that needs a server saying why).
#[macro_export]
macro_rules! checkpoint_conformance_tests {
    ($open:expr, $verifying_key:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn checkpoints_are_signed_by_count_and_by_the_timer_alone_and_reported() {
            $crate::conformance::checkpoints_are_signed_by_count_and_by_the_timer_alone_and_reported(
                $open,
                $verifying_key,
            )
            .await;
        }
    };
}

/// A clock the conformance cases move by hand.
#[derive(Debug)]
pub struct StepClock(std::sync::atomic::AtomicI64);

impl StepClock {
    /// A clock standing at `t`.
    pub fn at(t: Timestamp) -> StepClock {
        StepClock(std::sync::atomic::AtomicI64::new(t.unix_millis()))
    }

    /// Moves it forward by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for StepClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_millis(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// The clock the engines' test files open their stores with: it stands still at one instant.
pub fn fixed_clock() -> Arc<StepClock> {
    Arc::new(StepClock::at(Timestamp::from_unix_millis(1_800_000_000_000)))
}

/// A checkpoint is signed at the commit that brings a market's unsigned records to the count;
/// fewer records wait, however often the writer's timer fires, until the clock passes the
/// interval, and are then signed at the timer's next firing with no further commit: the engine's
/// writer wakes up by itself. The sink hears of each checkpoint, by the time the commit that
/// signed it is answered. The timer here is a [`Ticker`]: the case moves the fake clock and fires
/// the timer, and waits for the writer to have looked, with no time passing.
pub async fn checkpoints_are_signed_by_count_and_by_the_timer_alone_and_reported(
    open: impl FnOnce(Arc<dyn Clock>, CheckpointOptions) -> Option<Arc<dyn Store>>,
    key: ed25519_dalek::VerifyingKey,
) {
    let clock = Arc::new(StepClock::at(at(0)));
    let heard: Arc<std::sync::Mutex<Vec<openmvs_audit::Checkpoint>>> = Arc::default();
    let sink = heard.clone();
    let timer = Ticker::new();
    let options = CheckpointOptions {
        every_records: 4,
        every: std::time::Duration::from_millis(200),
        on_checkpoint: Some(Arc::new(move |cp| sink.lock().expect("sink").push(cp.clone()))),
        timer: CheckpointTimer::Ticked(timer.clone()),
    };
    let Some(store) = open(clock.clone(), options.clone()) else { return };
    let heard_seqs = || heard.lock().expect("sink").iter().map(|cp| cp.seq).collect::<Vec<_>>();
    let signed_seqs =
        async || store.checkpoints().await.expect("checkpoints").iter().map(|cp| cp.seq).collect::<Vec<_>>();
    let records = |n: usize| UnitOfWork {
        audit: (0..n).map(|i| entry("verify", &format!("GTIN/09501101530003/T{i}"))).collect(),
        ..UnitOfWork::default()
    };

    store.commit(records(4)).await.expect("commits");
    assert_eq!(signed_seqs().await, [4], "the fourth record is signed by count");
    assert_eq!(heard_seqs(), [4], "and the sink heard of it before the commit was answered");

    store.commit(records(2)).await.expect("commits");
    // The clock stands still: whenever the writer wakes, nothing is due by time.
    for _ in 0..3 {
        assert_eq!(timer.tick().await, 1, "the store's writer is woken by the timer");
    }
    clock.advance(options.every - std::time::Duration::from_millis(1));
    assert_eq!(timer.tick().await, 1);
    assert_eq!(signed_seqs().await, [4], "two records are fewer than the count, and not old yet");
    assert_eq!(heard_seqs(), [4]);

    clock.advance(std::time::Duration::from_millis(1));
    assert_eq!(timer.tick().await, 1);
    assert_eq!(heard_seqs(), [4, 6], "the timer signed the tail with no commit coming");
    assert_eq!(signed_seqs().await, [4, 6], "and stored it");
    let last = heard.lock().expect("sink").last().cloned().expect("a checkpoint");
    assert_eq!(last.market, "DE");
    assert_eq!(last.at_millis, clock.now().unix_millis(), "signed at the clock's time");
    assert_eq!(
        store.checkpoints().await.expect("checkpoints").last(),
        Some(&last),
        "the sink got what was stored"
    );
    assert_eq!(verify_audit(&store, key).await, 6);
}

fn today() -> Date {
    Date::new(2026, 11, 29).expect("date")
}

fn at(n: i64) -> Timestamp {
    Timestamp::from_unix_millis(Timestamp::start_of(today()).unix_millis() + n)
}

fn gtin() -> ProductCode {
    ProductCode::gtin("09501101530003").expect("gtin")
}

fn serial(s: &str) -> Serial {
    Serial::new(s).expect("serial")
}

fn de() -> MarketCode {
    MarketCode::new("DE").expect("market")
}

fn entry(op: &str, subject: &str) -> Entry {
    Entry {
        market: "DE".into(),
        at_millis: at(0).unix_millis(),
        actor: "cl_test".into(),
        role: "PHARMACY".into(),
        location: "DE-PH-1".into(),
        operation: op.into(),
        subject: subject.into(),
        return_code: "NMVS_SUCCESS".into(),
        request: "{}".into(),
        result: "{}".into(),
    }
}

fn alert(id: &str, source: &str) -> AlertRecord {
    AlertRecord {
        id: id.into(),
        code: AlertCode::A24,
        return_code: ReturnCode::PackInactiveStateChange,
        market: de(),
        product_code: "09501101530003".into(),
        serial: serial("S1"),
        batch: "LOT1".into(),
        location: Location::new("DE-PH-1").expect("a valid location"),
        client_id: "cl_a".into(),
        created_at: at(0),
        status: AlertStatus::Open,
        classification: None,
        comment: None,
        source_key: source.into(),
        pack_market: de(),
        thread: AlertThread::default(),
        version: 0,
    }
}

/// A thread with one change and one comment, with every field set.
pub(crate) fn a_thread() -> AlertThread {
    let at = Timestamp::from_unix_millis(1_700_000_000_123);
    AlertThread {
        history: vec![AlertChange {
            id: "ach-1".into(),
            from: AlertStatus::Open,
            to: AlertStatus::Closed,
            classification: Some(Classification::ObpDataError),
            by: "obp-1".into(),
            role: "OBP".into(),
            at,
        }],
        comments: vec![AlertComment {
            id: "acm-1".into(),
            author: "nmvo-1".into(),
            role: "NMVO".into(),
            at,
            text: "Quote \" and ü, line\nbreak".into(),
        }],
    }
}

async fn seed(store: &Arc<dyn Store>, serials: &[&str]) {
    let uow = UnitOfWork {
        products: vec![ProductRecord {
            product_code: gtin(),
            name: "Examplomab 10 mg".into(),
            common_name: "examplomab".into(),
            form: "TABLET".into(),
            strength: "10 mg".into(),
            pack_type: "BOX".into(),
            pack_size: "30".into(),
            owner: "obp-1".into(),
            withdrawn: false,
            version: 1,
        }],
        batches: vec![BatchRecord {
            product_code: gtin(),
            batch: Batch::new("LOT1").expect("batch"),
            expiry: Expiry::parse("271200", today()).expect("expiry"),
            recalled: false,
            markets: vec![de(), MarketCode::new("FR").expect("market")],
        }],
        new_packs: vec![NewPacks {
            product_code: gtin(),
            batch: Batch::new("LOT1").expect("batch"),
            serials: serials.iter().map(|s| serial(s)).collect(),
        }],
        ..UnitOfWork::default()
    };
    store.commit(uow).await.expect("seed commits");
}

fn supplied(pack: &Pack, location: &str, n: i64) -> Pack {
    Pack {
        batch: pack.batch.clone(),
        state: PackState::Supplied,
        last_change: Some(Change {
            command: Command::Set(Operation::Supply),
            location: Location::new(location).expect("location"),
            at: at(n),
            synced_from: None,
        }),
        repeats: 0,
    }
}

fn idem(trx: &str) -> IdempotencyRecord {
    IdempotencyRecord {
        client_id: "cl_a".into(),
        client_trx_id: trx.into(),
        request_hash: [7; 32],
        status: 200,
        response: "{\"accepted\":true}".into(),
        created_at: at(0),
    }
}

async fn verify_audit(store: &Arc<dyn Store>, key: ed25519_dalek::VerifyingKey) -> u64 {
    let mut v = Verifier::new([key]);
    // Checkpoints go first: each waits for the record it signs.
    for cp in store.checkpoints().await.expect("checkpoints") {
        v.checkpoint(&cp).expect("checkpoint verifies");
    }
    let mut after = 0;
    let mut n = 0;
    loop {
        let page = store.audit_page(after, 1000).await.expect("audit page");
        if page.is_empty() {
            break;
        }
        for (pos, r) in &page {
            v.record(r).expect("record verifies");
            after = *pos;
            n += 1;
        }
    }
    v.finish().expect("chain verifies");
    n
}

/// Pack state, audit record, alert, outbox message and idempotency record land together.
pub async fn a_unit_of_work_commits_every_part_together(
    store: Arc<dyn Store>,
    _key: ed25519_dalek::VerifyingKey,
) {
    seed(&store, &["S1"]).await;
    let before = store.pack(&gtin(), &serial("S1")).await.expect("read").expect("pack exists");
    assert_eq!((before.pack.state, before.version), (PackState::Active, 1));
    let uow = UnitOfWork {
        packs: vec![PackWrite {
            product_code: gtin(),
            serial: serial("S1"),
            pack: supplied(&before.pack, "DE-PH-1", 5),
            expected_version: Some(before.version),
        }],
        audit: vec![entry("supply", "GTIN/09501101530003/S1")],
        alerts: vec![alert("al-1", "cl_a/t1")],
        outbox: vec![OutboxMessage {
            message_id: "m-1".into(),
            destination: "hub".into(),
            kind: "pack-state".into(),
            ordering_key: "09501101530003".into(),
            payload: "{}".into(),
        }],
        idempotency: Some(idem("t1")),
        ..UnitOfWork::default()
    };
    let done = store.commit(uow).await.expect("commits");
    assert_eq!(done.audit_seqs.len(), 1);
    let after = store.pack(&gtin(), &serial("S1")).await.expect("read").expect("pack");
    assert_eq!((after.pack.state, after.version), (PackState::Supplied, 2));
    assert_eq!(after.pack, supplied(&before.pack, "DE-PH-1", 5));
    assert!(store.alert(&"al-1".into()).await.expect("read").is_some());
    assert_eq!(store.pending().await.expect("pending"), 1);
    assert_eq!(store.idempotency(&"cl_a".into(), &"t1".into()).await.expect("read"), Some(idem("t1")));
    let trail = store.audit_by_subject("GTIN/09501101530003/S1").await.expect("audit");
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0].entry.operation, "supply");
}

/// A unit whose expected version is stale writes none of its parts, and the audit chain stays whole.
pub async fn a_stale_pack_version_conflicts_and_writes_nothing(
    store: Arc<dyn Store>,
    key: ed25519_dalek::VerifyingKey,
) {
    seed(&store, &["S1"]).await;
    let p = store.pack(&gtin(), &serial("S1")).await.expect("read").expect("pack");
    let write = |v| UnitOfWork {
        packs: vec![PackWrite {
            product_code: gtin(),
            serial: serial("S1"),
            pack: supplied(&p.pack, "DE-PH-1", 1),
            expected_version: Some(v),
        }],
        audit: vec![entry("supply", "GTIN/09501101530003/S1")],
        alerts: vec![alert(&format!("al-v{v}"), &format!("src-v{v}"))],
        ..UnitOfWork::default()
    };
    store.commit(write(p.version)).await.expect("first commits");
    let err = store.commit(write(p.version)).await.expect_err("second conflicts");
    assert!(matches!(err, StoreError::Conflict(Conflict::PackVersion { .. })), "{err}");
    assert!(store.alert(&format!("al-v{}", p.version).into()).await.expect("read").is_some());
    assert_eq!(
        store.alerts(&AlertFilter { limit: 10, ..AlertFilter::default() }).await.expect("alerts").len(),
        1
    );
    assert_eq!(store.audit_by_subject("GTIN/09501101530003/S1").await.expect("audit").len(), 1);
    // The chain continues without a gap after the refused unit.
    store
        .commit(UnitOfWork { audit: vec![entry("verify", "x")], ..UnitOfWork::default() })
        .await
        .expect("commits");
    assert_eq!(verify_audit(&store, key).await, 2);
}

/// The same client transaction id cannot be committed twice.
pub async fn a_reused_idempotency_key_conflicts(store: Arc<dyn Store>, _key: ed25519_dalek::VerifyingKey) {
    let uow = UnitOfWork {
        idempotency: Some(idem("t9")),
        audit: vec![entry("verify", "")],
        ..UnitOfWork::default()
    };
    store.commit(uow.clone()).await.expect("first commits");
    let err = store.commit(uow).await.expect_err("second conflicts");
    assert_eq!(err, StoreError::Conflict(Conflict::IdempotencyKey));
    assert_eq!(store.idempotency(&"cl_a".into(), &"t9".into()).await.expect("read"), Some(idem("t9")));
    assert_eq!(
        store.idempotency(&"cl_b".into(), &"t9".into()).await.expect("read"),
        None,
        "keys are per client"
    );
}

/// An inbound message id is applied once; its redelivery conflicts and changes nothing.
pub async fn an_inbound_message_applies_once(store: Arc<dyn Store>, _key: ed25519_dalek::VerifyingKey) {
    let uow = |serials: &[&str]| UnitOfWork {
        inbox: Some("hub-msg-1".into()),
        new_packs: vec![NewPacks {
            product_code: gtin(),
            batch: Batch::new("LOT1").expect("batch"),
            serials: serials.iter().map(|s| serial(s)).collect(),
        }],
        ..UnitOfWork::default()
    };
    let done = store.commit(uow(&["A", "B"])).await.expect("applies");
    assert_eq!(done.packs_created, 2);
    let err = store.commit(uow(&["C"])).await.expect_err("redelivery conflicts");
    assert_eq!(err, StoreError::Conflict(Conflict::InboxMessage));
    assert!(store.pack(&gtin(), &serial("C")).await.expect("read").is_none());
    assert_eq!(store.pack_count().await.expect("count"), 2);
}

/// Two alerts with one source key: the second is skipped and reported, the rest of its unit commits.
pub async fn one_source_event_raises_one_alert(store: Arc<dyn Store>, _key: ed25519_dalek::VerifyingKey) {
    let u = |id: &str| UnitOfWork { alerts: vec![alert(id, "cl_a/t1")], ..UnitOfWork::default() };
    assert!(store.commit(u("al-1")).await.expect("commits").alerts_skipped.is_empty());
    assert_eq!(store.commit(u("al-2")).await.expect("commits").alerts_skipped, ["al-2"]);
    assert!(store.alert(&"al-2".into()).await.expect("read").is_none());
}

/// Alert changes apply only to the version they were decided on; the thread, the status, the
/// classification (cleared again on a reopening) and the pack's market read back as written.
pub async fn alert_changes_need_the_expected_version(
    store: Arc<dyn Store>,
    _key: ed25519_dalek::VerifyingKey,
) {
    let mut raised = alert("al-1", "s1");
    raised.pack_market = MarketCode::new("SE").expect("a market");
    store.commit(UnitOfWork { alerts: vec![raised.clone()], ..UnitOfWork::default() }).await.expect("raise");
    assert_eq!(store.alert(&"al-1".into()).await.expect("read"), Some(raised));
    let upd = |expected, status, classification| UnitOfWork {
        alert_updates: vec![AlertUpdate {
            id: "al-1".into(),
            expected_version: expected,
            status,
            classification,
            comment: Some("looking".into()),
            thread: a_thread(),
        }],
        ..UnitOfWork::default()
    };
    let closed = Some(Classification::ObpDataError);
    store.commit(upd(0, AlertStatus::Closed, closed)).await.expect("moves");
    let err = store.commit(upd(0, AlertStatus::Investigating, None)).await.expect_err("stale");
    assert_eq!(err, StoreError::Conflict(Conflict::AlertStatus));
    let a = store.alert(&"al-1".into()).await.expect("read").expect("alert");
    assert_eq!(
        (a.status, a.classification, a.comment.as_deref()),
        (AlertStatus::Closed, closed, Some("looking"))
    );
    assert_eq!((a.version, &a.thread), (1, &a_thread()));
    store.commit(upd(1, AlertStatus::Investigating, None)).await.expect("reopens");
    let a = store.alert(&"al-1".into()).await.expect("read").expect("alert");
    assert_eq!((a.status, a.classification, a.version), (AlertStatus::Investigating, None, 2));
}

/// Listing filters by status and client, pages by id.
pub async fn alerts_are_listed_by_filter_in_id_order(
    store: Arc<dyn Store>,
    _key: ed25519_dalek::VerifyingKey,
) {
    let mut alerts = Vec::new();
    for i in 0..5 {
        let mut a = alert(&format!("al-{i}"), &format!("s{i}"));
        if i % 2 == 1 {
            a.client_id = "cl_b".into();
        }
        alerts.push(a);
    }
    store.commit(UnitOfWork { alerts, ..UnitOfWork::default() }).await.expect("raise");
    let ids = async |f: AlertFilter| {
        store.alerts(&f).await.expect("list").into_iter().map(|a| a.id).collect::<Vec<_>>()
    };
    assert_eq!(ids(AlertFilter { limit: 2, ..AlertFilter::default() }).await, ["al-0", "al-1"]);
    assert_eq!(
        ids(AlertFilter { limit: 2, after: Some("al-1".into()), ..AlertFilter::default() }).await,
        ["al-2", "al-3"]
    );
    assert_eq!(
        ids(AlertFilter { limit: 9, client_id: Some("cl_b".into()), ..AlertFilter::default() }).await,
        ["al-1", "al-3"]
    );
    assert!(
        ids(AlertFilter { limit: 9, status: Some(AlertStatus::Closed), ..AlertFilter::default() })
            .await
            .is_empty()
    );
}

/// Creating packs never changes a pack that exists.
pub async fn new_packs_leave_existing_serials_alone(
    store: Arc<dyn Store>,
    _key: ed25519_dalek::VerifyingKey,
) {
    seed(&store, &["S1"]).await;
    let p = store.pack(&gtin(), &serial("S1")).await.expect("read").expect("pack");
    let w = PackWrite {
        product_code: gtin(),
        serial: serial("S1"),
        pack: supplied(&p.pack, "X", 0),
        expected_version: Some(1),
    };
    store.commit(UnitOfWork { packs: vec![w], ..UnitOfWork::default() }).await.expect("supply");
    let np = NewPacks {
        product_code: gtin(),
        batch: Batch::new("LOT2").expect("batch"),
        serials: vec![serial("S1"), serial("S2")],
    };
    let done =
        store.commit(UnitOfWork { new_packs: vec![np], ..UnitOfWork::default() }).await.expect("commits");
    assert_eq!(done.packs_created, 1);
    let p = store.pack(&gtin(), &serial("S1")).await.expect("read").expect("pack");
    assert_eq!((p.pack.state, p.pack.batch.as_str()), (PackState::Supplied, "LOT1"));
    let err = store
        .commit(UnitOfWork {
            packs: vec![PackWrite {
                product_code: gtin(),
                serial: serial("S2"),
                pack: p.pack.clone(),
                expected_version: None,
            }],
            ..UnitOfWork::default()
        })
        .await
        .expect_err("an insert of an existing pack conflicts");
    assert!(matches!(err, StoreError::Conflict(_)));
}

/// Product and batch records read back field by field; an expiry keeps its encoding.
pub async fn products_and_batches_read_back_exactly(
    store: Arc<dyn Store>,
    _key: ed25519_dalek::VerifyingKey,
) {
    seed(&store, &[]).await;
    let p = store.product(&gtin()).await.expect("read").expect("product");
    assert_eq!(
        (p.name.as_str(), p.owner.as_str(), p.withdrawn, p.version),
        ("Examplomab 10 mg", "obp-1", false, 1)
    );
    let b = store.batch(&gtin(), &Batch::new("LOT1").expect("batch")).await.expect("read").expect("batch");
    assert_eq!(b.expiry.as_str(), "271200");
    assert_eq!(b.expiry.date().to_string(), "2027-12-31");
    assert_eq!(b.markets.iter().map(|m| m.as_str()).collect::<Vec<_>>(), ["DE", "FR"]);
    assert!(store.batch(&gtin(), &Batch::new("NOPE").expect("batch")).await.expect("read").is_none());
    assert!(
        store.product(&ProductCode::gtin("05601234567892").expect("gtin")).await.expect("read").is_none()
    );
}

/// The outbox hands out one message per ordering key, oldest first; failures back off, dead
/// letters are listed and can be replayed.
pub async fn outbox_delivers_in_order_per_key_and_keeps_dead_letters(
    store: Arc<dyn Store>,
    _key: ed25519_dalek::VerifyingKey,
) {
    let msg = |id: &str, key: &str| OutboxMessage {
        message_id: id.into(),
        destination: "hub".into(),
        kind: "pack-state".into(),
        ordering_key: key.into(),
        payload: format!("{{\"id\":\"{id}\"}}"),
    };
    let outbox = vec![msg("a1", "A"), msg("a2", "A"), msg("b1", "B")];
    store.commit(UnitOfWork { outbox, ..UnitOfWork::default() }).await.expect("commits");
    let far = Timestamp::from_unix_millis(i64::MAX / 2);
    let ids = |v: Vec<StoredOutboxMessage>| v.into_iter().map(|m| m.message.message_id).collect::<Vec<_>>();
    let due = store.due(far, 10).await.expect("due");
    assert_eq!(ids(due.clone()), ["a1", "b1"]);
    store.failed(due[0].seq, "timeout", far, false).await.expect("failed");
    let again = store.due(far, 10).await.expect("due");
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].last_error.as_deref(), Some("timeout"));
    assert!(
        store.due(at(0), 10).await.expect("due").iter().all(|m| m.message.message_id != "a1"),
        "backed off"
    );
    store.delivered(due[1].seq).await.expect("delivered");
    store.failed(due[0].seq, "rejected", far, true).await.expect("dead");
    assert_eq!(ids(store.dead_letters().await.expect("dead")), ["a1"]);
    assert_eq!(ids(store.due(far, 10).await.expect("due")), ["a2"], "a dead letter no longer blocks its key");
    assert!(store.replay(due[0].seq, at(0)).await.expect("replay"));
    assert!(!store.replay(due[0].seq, at(0)).await.expect("replay"), "only dead letters replay");
    assert_eq!(ids(store.due(far, 10).await.expect("due")), ["a1"]);
    assert_eq!(store.pending().await.expect("pending"), 2);
}

/// Bulk results append in request order and the job is done when every row has one.
pub async fn bulk_progress_appends_results_in_order(
    store: Arc<dyn Store>,
    _key: ed25519_dalek::VerifyingKey,
) {
    let job = BulkJob {
        id: "bk-1".into(),
        client_id: "cl_a".into(),
        status: BulkStatus::Pending,
        request: "[]".into(),
        done_rows: 0,
        total_rows: 3,
        created_at: at(0),
    };
    store.commit(UnitOfWork { new_bulk: Some(job), ..UnitOfWork::default() }).await.expect("accept");
    assert_eq!(store.unfinished_bulks(10).await.expect("list").len(), 1);
    let progress = |from, results: &[&str]| UnitOfWork {
        bulk_progress: Some(BulkProgress {
            id: "bk-1".into(),
            expected_done_rows: from,
            results: results.iter().map(|s| s.to_string()).collect(),
        }),
        ..UnitOfWork::default()
    };
    store.commit(progress(0, &["r0", "r1"])).await.expect("progress");
    assert_eq!(store.bulk(&"bk-1".into()).await.expect("read").expect("job").status, BulkStatus::Running);
    let err = store.commit(progress(0, &["x"])).await.expect_err("stale progress");
    assert_eq!(err, StoreError::Conflict(Conflict::BulkProgress));
    store.commit(progress(2, &["r2"])).await.expect("progress");
    let job = store.bulk(&"bk-1".into()).await.expect("read").expect("job");
    assert_eq!((job.status, job.done_rows), (BulkStatus::Done, 3));
    assert_eq!(store.bulk_results(&"bk-1".into()).await.expect("results"), ["r0", "r1", "r2"]);
    assert!(store.unfinished_bulks(10).await.expect("list").is_empty());
}

/// Hundreds of concurrent commits all succeed, and the audit trail is one unbroken chain.
pub async fn many_concurrent_commits_are_all_durable_and_the_audit_chain_verifies(
    store: Arc<dyn Store>,
    key: ed25519_dalek::VerifyingKey,
) {
    let mut tasks = Vec::new();
    for i in 0..400 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let uow = UnitOfWork {
                audit: vec![entry("verify", &format!("GTIN/09501101530003/S{i}"))],
                idempotency: Some(IdempotencyRecord { client_trx_id: format!("t{i}").into(), ..idem("") }),
                ..UnitOfWork::default()
            };
            store.commit(uow).await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("commits");
    }
    for i in 0..400 {
        assert!(store.idempotency(&"cl_a".into(), &format!("t{i}").into()).await.expect("read").is_some());
    }
    assert_eq!(verify_audit(&store, key).await, 400);
}

/// Clients and token-signing keys are stored and rotated by units of work, each with its audit
/// record; a client id or key id that is taken refuses the unit.
pub async fn clients_and_signing_keys_round_trip(store: Arc<dyn Store>, key: ed25519_dalek::VerifyingKey) {
    let client = ClientRecord { name: "Apotheke am Markt".into(), ..client_record("cl_a") };
    store.commit(create(client.clone())).await.expect("create");
    let again = store.commit(create(client.clone())).await;
    assert!(matches!(again, Err(StoreError::Conflict(Conflict::Exists(_)))), "{again:?}");
    assert_eq!(store.client(&"cl_a".into()).await.expect("read"), Some(client.clone()));
    assert_eq!(store.clients().await.expect("list"), vec![client]);
    store.commit(rotate("k1", 1)).await.expect("first key");
    store.commit(rotate("k2", 2)).await.expect("second key");
    let taken = store.commit(rotate("k1", 3)).await;
    assert!(matches!(taken, Err(StoreError::Conflict(Conflict::Exists(_)))), "{taken:?}");
    let keys = store.keys().await.expect("keys");
    assert_eq!(keys.len(), 2);
    assert_eq!((keys[0].active, keys[0].retired_at), (false, Some(at(2))));
    assert_eq!((keys[1].active, keys[1].kid.as_str(), keys[1].retired_at), (true, "k2", None));
    assert_eq!(keys[1].secret, [2; 32]);
    assert_eq!(verify_audit(&store, key).await, 3, "the refused units left no audit record");
}

/// One call reads the stored answer, the product, the pack with its batch, and whether the
/// requested batch exists; a known transaction id short-cuts the rest.
pub async fn a_pack_context_reads_everything_a_request_needs(
    store: Arc<dyn Store>,
    _key: ed25519_dalek::VerifyingKey,
) {
    seed(&store, &["S1"]).await;
    let lot1 = Batch::new("LOT1").expect("batch");
    let lot9 = Batch::new("LOT9").expect("batch");
    let ctx = store
        .pack_context(Some((&"cl_a".into(), &"t1".into())), &gtin(), &serial("S1"), &lot1)
        .await
        .expect("context");
    assert!(ctx.idempotency.is_none());
    assert_eq!(ctx.product.as_ref().map(|p| p.name.as_str()), Some("Examplomab 10 mg"));
    let (p, b) = ctx.pack.expect("pack");
    assert_eq!((p.pack.state, p.version, b.batch.as_str()), (PackState::Active, 1, "LOT1"));
    assert!(ctx.requested_batch_known);
    let other = store.pack_context(None, &gtin(), &serial("S2"), &lot9).await.expect("context");
    assert!(other.pack.is_none() && !other.requested_batch_known && other.product.is_some());
    let unknown = ProductCode::gtin("05601234567892").expect("gtin");
    let none = store.pack_context(None, &unknown, &serial("S1"), &lot1).await.expect("context");
    assert_eq!(none, PackContext::default());
    store
        .commit(UnitOfWork { idempotency: Some(idem("t1")), ..UnitOfWork::default() })
        .await
        .expect("commit");
    let replay = store
        .pack_context(Some((&"cl_a".into(), &"t1".into())), &gtin(), &serial("S1"), &lot1)
        .await
        .expect("context");
    assert_eq!(replay.idempotency, Some(idem("t1")));
}

/// A unit of work refused in a group that also holds outbox bookkeeping is still answered as
/// refused: answers are matched to their own units, whatever else the group holds.
pub async fn a_refused_unit_is_answered_as_refused_beside_outbox_bookkeeping(
    store: Arc<dyn Store>,
    _key: ed25519_dalek::VerifyingKey,
) {
    let applied = || UnitOfWork { inbox: Some("hub-msg-1".into()), ..UnitOfWork::default() };
    store.commit(applied()).await.expect("applies");
    // Many rounds, so that some groups hold bookkeeping ahead of a unit.
    for _ in 0..200 {
        let s = store.clone();
        let bookkeeping = tokio::spawn(async move { s.delivered(999_999).await });
        let s = store.clone();
        let unit = tokio::spawn(async move { s.commit(applied()).await });
        bookkeeping.await.expect("task").expect("bookkeeping");
        let answer = unit.await.expect("task");
        assert_eq!(
            answer,
            Err(StoreError::Conflict(Conflict::InboxMessage)),
            "a refused unit answered as applied"
        );
    }
}

/// A message a relay claimed is not given to another relay until its lease ends, and the claim
/// keeps the order per key: the next message of a claimed key waits too.
pub async fn a_claimed_outbox_message_waits_for_its_lease(
    store: Arc<dyn Store>,
    _key: ed25519_dalek::VerifyingKey,
) {
    let msg = |id: &str, key: &str| OutboxMessage {
        message_id: id.into(),
        destination: "hub".into(),
        kind: "pack-state".into(),
        ordering_key: key.into(),
        payload: format!("{{\"id\":\"{id}\"}}"),
    };
    let outbox = vec![msg("a1", "A"), msg("a2", "A"), msg("b1", "B"), msg("c1", "C")];
    store.commit(UnitOfWork { outbox, ..UnitOfWork::default() }).await.expect("commits");
    // Later than any clock an engine's test gives it, so every message is due.
    let t = |n: i64| Timestamp::from_unix_millis(i64::MAX / 4 + n);
    let ids = |v: &[StoredOutboxMessage]| v.iter().map(|m| m.message.message_id.clone()).collect::<Vec<_>>();
    let first = store.claim_due(t(10), t(1_000), 2).await.expect("claim");
    assert_eq!(ids(&first), ["a1", "b1"]);
    let second = store.claim_due(t(20), t(1_000), 10).await.expect("claim");
    assert_eq!(ids(&second), ["c1"], "claimed messages, and the rest of their keys, wait");
    assert!(store.claim_due(t(30), t(1_000), 10).await.expect("claim").is_empty());
    store.delivered(first[0].seq).await.expect("delivered");
    assert_eq!(
        ids(&store.claim_due(t(40), t(1_000), 10).await.expect("claim")),
        ["a2"],
        "the next of its key"
    );
    let after = store.claim_due(t(1_001), t(2_000), 10).await.expect("claim");
    assert_eq!(ids(&after), ["a2", "b1", "c1"], "a relay that died is taken over when its lease ends");
    assert_eq!(after[1].attempts, 0, "a lease is not a failed attempt");
    store.failed(after[1].seq, "timeout", t(1_500), false).await.expect("failed");
    assert_eq!(ids(&store.claim_due(t(1_600), t(3_000), 10).await.expect("claim")), ["b1"]);
}

/// The relay claims runs: the oldest message of every key whose oldest is due, then the messages
/// that follow them in their key, oldest first, each key's up to its first message that waits;
/// a key whose oldest message waits gives none.
pub async fn the_outbox_is_claimed_as_runs_heads_first_then_each_keys_followers(
    store: Arc<dyn Store>,
    _key: ed25519_dalek::VerifyingKey,
) {
    let msg = |id: &str, key: &str| OutboxMessage {
        message_id: id.into(),
        destination: "hub".into(),
        kind: "pack-state".into(),
        ordering_key: key.into(),
        payload: format!("{{\"id\":\"{id}\"}}"),
    };
    let outbox =
        vec![msg("a1", "A"), msg("a2", "A"), msg("a3", "A"), msg("a4", "A"), msg("b1", "B"), msg("b2", "B")];
    store.commit(UnitOfWork { outbox, ..UnitOfWork::default() }).await.expect("commits");
    // Later than any clock an engine's test gives it, so every message is due.
    let t = |n: i64| Timestamp::from_unix_millis(i64::MAX / 4 + n);
    let ids = |v: &[StoredOutboxMessage]| v.iter().map(|m| m.message.message_id.clone()).collect::<Vec<_>>();
    let first = store.claim_runs(t(10), t(1_000), 3).await.expect("claim");
    assert_eq!(ids(&first), ["a1", "a2", "b1"], "both heads first, then the oldest follower");
    assert!(store.claim_runs(t(20), t(1_000), 10).await.expect("claim").is_empty(), "both keys are held");
    // a1 and b1 delivered, a2 failed and is due again at once; a3 is not taken yet, and b2 is
    // free.
    store.delivered(first[0].seq).await.expect("delivered");
    store.delivered(first[2].seq).await.expect("delivered");
    store.failed(first[1].seq, "timeout", t(30), false).await.expect("failed");
    assert_eq!(ids(&store.claim_runs(t(40), t(1_000), 10).await.expect("claim")), ["a2", "a3", "a4", "b2"]);
    assert!(store.claim_runs(t(50), t(1_000), 10).await.expect("claim").is_empty());
    assert_eq!(store.pending().await.expect("pending"), 4);
}

/// A relay that starts resumes its outbox: every live message waiting past now (claimed by a
/// relay that died, or waiting out a backoff) is due now, with its attempts; dead letters stay
/// dead and messages due already are left as they are.
pub async fn resuming_the_outbox_ends_its_leases_and_backoffs_and_keeps_attempts_and_dead_letters(
    store: Arc<dyn Store>,
    _key: ed25519_dalek::VerifyingKey,
) {
    let msg = |id: &str, key: &str| OutboxMessage {
        message_id: id.into(),
        destination: "hub".into(),
        kind: "pack-state".into(),
        ordering_key: key.into(),
        payload: format!("{{\"id\":\"{id}\"}}"),
    };
    let outbox = vec![msg("a1", "A"), msg("a2", "A"), msg("b1", "B"), msg("c1", "C"), msg("d1", "D")];
    store.commit(UnitOfWork { outbox, ..UnitOfWork::default() }).await.expect("commits");
    // Later than any clock an engine's test gives it, so every message is due.
    let t = |n: i64| Timestamp::from_unix_millis(i64::MAX / 4 + n);
    let ids = |v: &[StoredOutboxMessage]| v.iter().map(|m| m.message.message_id.clone()).collect::<Vec<_>>();
    let claimed = store.claim_due(t(10), t(30_000), 10).await.expect("claim");
    assert_eq!(ids(&claimed), ["a1", "b1", "c1", "d1"]);
    // b1 waits out a backoff after two failed attempts, d1 is dead, a1 and c1 stay claimed.
    store.failed(claimed[1].seq, "refused", t(20), false).await.expect("failed");
    store.failed(claimed[1].seq, "refused", t(60_000), false).await.expect("failed");
    store.failed(claimed[3].seq, "rejected", t(10), true).await.expect("dead");
    assert!(store.claim_due(t(100), t(30_100), 10).await.expect("claim").is_empty(), "everything waits");
    assert_eq!(store.resume(t(100)).await.expect("resume"), 3, "a1, b1 and c1 waited");
    let due = store.due(t(100), 10).await.expect("due");
    assert_eq!(ids(&due), ["a1", "b1", "c1"], "due at once, in order, one per key; d1 stays dead");
    assert_eq!(due.iter().map(|m| m.attempts).collect::<Vec<_>>(), [0, 2, 0], "attempts are kept");
    assert!(due.iter().all(|m| m.next_attempt_at == t(100)));
    assert_eq!(store.resume(t(100)).await.expect("resume"), 0, "nothing waits past now any more");
    assert_eq!(ids(&store.dead_letters().await.expect("dead letters")), ["d1"]);
}

/// One worker holds a bulk job at a time; another takes it only when the lease ends or is given up.
pub async fn a_bulk_job_is_leased_to_one_worker_at_a_time(
    store: Arc<dyn Store>,
    _key: ed25519_dalek::VerifyingKey,
) {
    let job = BulkJob {
        id: "bk-9".into(),
        client_id: "cl_a".into(),
        status: BulkStatus::Pending,
        request: "[]".into(),
        done_rows: 0,
        total_rows: 1,
        created_at: at(0),
    };
    store.commit(UnitOfWork { new_bulk: Some(job), ..UnitOfWork::default() }).await.expect("accept");
    assert!(store.claim_bulk(&"bk-9".into(), &"node-a".into(), at(0), at(100)).await.expect("claim"));
    assert!(
        !store.claim_bulk(&"bk-9".into(), &"node-b".into(), at(50), at(150)).await.expect("claim"),
        "held by node-a"
    );
    assert!(
        store.claim_bulk(&"bk-9".into(), &"node-a".into(), at(60), at(200)).await.expect("renew"),
        "the holder renews"
    );
    assert!(
        !store.claim_bulk(&"bk-9".into(), &"node-b".into(), at(150), at(250)).await.expect("claim"),
        "renewed lease holds"
    );
    assert!(
        store.claim_bulk(&"bk-9".into(), &"node-b".into(), at(201), at(300)).await.expect("claim"),
        "taken over after the lease"
    );
    assert!(
        !store.claim_bulk(&"bk-9".into(), &"node-a".into(), at(210), at(310)).await.expect("claim"),
        "node-a lost it"
    );
    store.release_bulk(&"bk-9".into(), &"node-a".into()).await.expect("release by a non-holder does nothing");
    assert!(!store.claim_bulk(&"bk-9".into(), &"node-a".into(), at(220), at(320)).await.expect("claim"));
    store.release_bulk(&"bk-9".into(), &"node-b".into()).await.expect("release");
    assert!(
        store.claim_bulk(&"bk-9".into(), &"node-a".into(), at(230), at(330)).await.expect("claim"),
        "free after release"
    );
    let done = UnitOfWork {
        bulk_progress: Some(BulkProgress {
            id: "bk-9".into(),
            expected_done_rows: 0,
            results: vec!["r".into()],
        }),
        ..UnitOfWork::default()
    };
    store.commit(done).await.expect("progress");
    assert!(
        !store.claim_bulk(&"bk-9".into(), &"node-a".into(), at(240), at(340)).await.expect("claim"),
        "a done job is never claimed"
    );
    assert!(
        !store.claim_bulk(&"bk-0".into(), &"node-a".into(), at(240), at(340)).await.expect("claim"),
        "no such job"
    );
}

fn client_record(id: &str) -> ClientRecord {
    ClientRecord {
        client_id: id.into(),
        secret_hash: "$argon2id$...".into(),
        role: Role::Pharmacy,
        market: de(),
        location: Location::new("DE-PH-1").expect("location"),
        name: format!("client {id}"),
        created_at: at(0),
        disabled: false,
        last_used_at: None,
    }
}

/// The unit of work creating `client`, with its audit record.
fn create(client: ClientRecord) -> UnitOfWork {
    UnitOfWork {
        audit: vec![entry("client-create", &format!("client/{}", client.client_id))],
        new_client: Some(client),
        ..UnitOfWork::default()
    }
}

/// The unit of work making key `kid` (secret bytes and creation instant `n`) the active one at
/// instant `n`, with its audit record.
fn rotate(kid: &str, n: u8) -> UnitOfWork {
    let key = KeyRecord {
        kid: kid.into(),
        secret: [n; 32],
        created_at: at(i64::from(n)),
        active: true,
        retired_at: None,
        revoked_at: None,
    };
    UnitOfWork {
        new_key: Some(NewKey { key, at: at(i64::from(n)) }),
        audit: vec![entry("rotate-token-key", &format!("key/{kid}"))],
        ..UnitOfWork::default()
    }
}

fn change(id: &str, disabled: Option<bool>, used_at: Option<Timestamp>) -> UnitOfWork {
    UnitOfWork {
        client_changes: vec![ClientChange { client_id: id.into(), disabled, used_at }],
        audit: vec![entry("client-disable", &format!("client/{id}"))],
        ..UnitOfWork::default()
    }
}

/// A client is cut off and let back in by a unit of work that carries its audit record; the
/// clients cut off are listed in one read; a change of an unknown client is refused and writes
/// nothing, its audit record included.
pub async fn a_client_is_cut_off_and_let_back_in_with_its_audit_record(
    store: Arc<dyn Store>,
    key: ed25519_dalek::VerifyingKey,
) {
    for id in ["cl_b", "cl_a", "cl_c"] {
        store.commit(create(client_record(id))).await.expect("create");
    }
    assert!(store.disabled_clients().await.expect("read").is_empty());
    store.commit(change("cl_c", Some(true), None)).await.expect("disable");
    store.commit(change("cl_a", Some(true), None)).await.expect("disable");
    assert_eq!(store.disabled_clients().await.expect("read"), ["cl_a", "cl_c"]);
    let a = store.client(&"cl_a".into()).await.expect("read").expect("client");
    assert!(a.disabled);
    assert_eq!(a, ClientRecord { disabled: true, ..client_record("cl_a") }, "nothing else changed");
    store.commit(change("cl_a", Some(false), None)).await.expect("enable");
    assert_eq!(store.disabled_clients().await.expect("read"), ["cl_c"]);
    assert!(!store.client(&"cl_a".into()).await.expect("read").expect("client").disabled);
    let unknown = store.commit(change("cl_nobody", Some(true), None)).await;
    assert!(matches!(unknown, Err(StoreError::Conflict(Conflict::Missing(_)))), "{unknown:?}");
    assert_eq!(verify_audit(&store, key).await, 6, "the refused change left no audit record");
}

/// A unit creating a client whose id is taken is refused whole: the client stays as it was, and
/// nothing else of the unit is written, its audit record included.
pub async fn a_unit_creating_a_taken_client_id_writes_nothing(
    store: Arc<dyn Store>,
    key: ed25519_dalek::VerifyingKey,
) {
    store.commit(create(client_record("cl_a"))).await.expect("create");
    store.commit(create(client_record("cl_b"))).await.expect("create");
    store.commit(rotate("k1", 1)).await.expect("first key");
    let mut uow = create(ClientRecord {
        secret_hash: "$argon2id$other".into(),
        name: "someone else".into(),
        ..client_record("cl_a")
    });
    uow.client_changes = vec![ClientChange { client_id: "cl_b".into(), disabled: Some(true), used_at: None }];
    uow.new_key = rotate("k2", 2).new_key;
    uow.audit.push(entry("client-disable", "client/cl_b"));
    uow.idempotency = Some(idem("t1"));
    let r = store.commit(uow).await;
    assert!(matches!(r, Err(StoreError::Conflict(Conflict::Exists(_)))), "{r:?}");
    assert_eq!(store.clients().await.expect("list"), vec![client_record("cl_a"), client_record("cl_b")]);
    assert!(store.disabled_clients().await.expect("read").is_empty());
    assert!(store.idempotency(&"cl_a".into(), &"t1".into()).await.expect("read").is_none());
    let keys = store.keys().await.expect("keys");
    assert_eq!(keys.iter().map(|k| (k.kid.as_str(), k.active)).collect::<Vec<_>>(), [("k1", true)]);
    assert_eq!(verify_audit(&store, key).await, 3, "the refused unit left no audit record");
}

/// The instant a client was last seen only moves forward, whichever node reports it first, and
/// leaves the client's state alone.
pub async fn a_client_keeps_the_latest_instant_it_was_seen(
    store: Arc<dyn Store>,
    _key: ed25519_dalek::VerifyingKey,
) {
    store.commit(create(client_record("cl_a"))).await.expect("create");
    store.commit(create(client_record("cl_b"))).await.expect("create");
    let seen = async |id: &str| store.client(&id.into()).await.expect("read").expect("client").last_used_at;
    assert_eq!(seen("cl_a").await, None);
    let uow = UnitOfWork {
        client_changes: vec![
            ClientChange { client_id: "cl_a".into(), disabled: None, used_at: Some(at(500)) },
            ClientChange { client_id: "cl_b".into(), disabled: None, used_at: Some(at(100)) },
        ],
        ..UnitOfWork::default()
    };
    store.commit(uow).await.expect("seen");
    assert_eq!((seen("cl_a").await, seen("cl_b").await), (Some(at(500)), Some(at(100))));
    store.commit(change("cl_a", None, Some(at(300)))).await.expect("an older report");
    assert_eq!(seen("cl_a").await, Some(at(500)), "an older instant does not move it back");
    store.commit(change("cl_a", Some(true), Some(at(900)))).await.expect("seen and cut off");
    let a = store.client(&"cl_a".into()).await.expect("read").expect("client");
    assert_eq!((a.last_used_at, a.disabled), (Some(at(900)), true));
    store.commit(change("cl_a", None, Some(at(950)))).await.expect("seen");
    assert!(
        store.client(&"cl_a".into()).await.expect("read").expect("client").disabled,
        "a report of use keeps it cut off"
    );
    assert_eq!(store.clients().await.expect("list").iter().filter_map(|c| c.last_used_at).count(), 2);
}

/// A key that no longer signs is revoked at once and keeps its first revocation time; the active
/// key and unknown keys cannot be revoked, and such a unit writes nothing.
pub async fn a_retired_key_is_revoked_and_the_active_one_is_not(
    store: Arc<dyn Store>,
    key: ed25519_dalek::VerifyingKey,
) {
    store.commit(rotate("k1", 1)).await.expect("first key");
    store.commit(rotate("k2", 2)).await.expect("second key");
    let revoke = |kid: &str, n| UnitOfWork {
        key_revocation: Some(KeyRevocation { kid: kid.into(), at: at(n) }),
        audit: vec![entry("retire-token-key", &format!("key/{kid}"))],
        ..UnitOfWork::default()
    };
    for kid in ["k2", "k9"] {
        let r = store.commit(revoke(kid, 5)).await;
        assert!(matches!(r, Err(StoreError::Conflict(Conflict::Missing(_)))), "{kid}: {r:?}");
    }
    assert!(store.keys().await.expect("keys").iter().all(|k| k.revoked_at.is_none()));
    store.commit(revoke("k1", 10)).await.expect("revoke the retired key");
    store.commit(revoke("k1", 20)).await.expect("revoking again changes nothing");
    let keys = store.keys().await.expect("keys");
    assert_eq!((keys[0].kid.as_str(), keys[0].revoked_at), ("k1", Some(at(10))));
    assert_eq!((keys[1].kid.as_str(), keys[1].active, keys[1].revoked_at), ("k2", true, None));
    assert_eq!(verify_audit(&store, key).await, 4, "two rotations, two revocations");
}

/// A heartbeat is a unit of work like any other: it commits, again and again for one node, and
/// beside other nodes' heartbeats.
pub async fn a_heartbeat_commits_and_commits_again(store: Arc<dyn Store>, _key: ed25519_dalek::VerifyingKey) {
    for n in 0..3 {
        for node in ["node-a", "node-b"] {
            let uow = UnitOfWork {
                heartbeat: Some(Heartbeat { node_id: node.into(), at: at(n) }),
                ..UnitOfWork::default()
            };
            store.commit(uow).await.expect("a heartbeat commits");
        }
    }
    // Far later: the rows of the day before are dropped as it is written.
    let later = Timestamp::from_unix_millis(at(0).unix_millis() + 2 * 86_400_000);
    let uow = UnitOfWork {
        heartbeat: Some(Heartbeat { node_id: "node-c".into(), at: later }),
        ..UnitOfWork::default()
    };
    store.commit(uow).await.expect("a heartbeat commits");
}

/// The alerts not closed are counted per status, each open status listed even at 0; a closed
/// alert is not counted.
pub async fn open_alerts_are_counted_by_status(store: Arc<dyn Store>, _key: ed25519_dalek::VerifyingKey) {
    let counts = async || store.open_alert_counts().await.expect("counts");
    let (open, investigating, escalated) =
        (AlertStatus::Open, AlertStatus::Investigating, AlertStatus::Escalated);
    assert_eq!(counts().await, [(open, 0), (investigating, 0), (escalated, 0)]);
    let alerts = (0..4).map(|i| alert(&format!("al-{i}"), &format!("s{i}"))).collect();
    store.commit(UnitOfWork { alerts, ..UnitOfWork::default() }).await.expect("raise");
    let moved = |id: &str, status| AlertUpdate {
        id: id.into(),
        expected_version: 0,
        status,
        classification: None,
        comment: None,
        thread: a_thread(),
    };
    let alert_updates = vec![moved("al-1", AlertStatus::Investigating), moved("al-2", AlertStatus::Closed)];
    store.commit(UnitOfWork { alert_updates, ..UnitOfWork::default() }).await.expect("moves");
    assert_eq!(counts().await, [(open, 2), (investigating, 1), (escalated, 0)]);
}

/// The outbox is counted per destination: live messages, those whose last attempt failed, and
/// dead letters; a delivered message leaves the counts and a replayed one is live again.
pub async fn outbox_messages_are_counted_live_failing_and_dead(
    store: Arc<dyn Store>,
    _key: ed25519_dalek::VerifyingKey,
) {
    assert!(store.queue_counts().await.expect("counts").is_empty());
    let msg = |id: &str| OutboxMessage {
        message_id: id.into(),
        destination: "hub".into(),
        kind: "alert".into(),
        ordering_key: id.into(),
        payload: "{}".into(),
    };
    let outbox = vec![msg("m1"), msg("m2"), msg("m3")];
    store.commit(UnitOfWork { outbox, ..UnitOfWork::default() }).await.expect("commits");
    let far = Timestamp::from_unix_millis(i64::MAX / 2);
    let due = store.due(far, 10).await.expect("due");
    // One unit of work: every message was committed at the same instant.
    let oldest_at = Some(due[0].created_at);
    let counts = |pending, failing, dead| {
        vec![QueueCounts { destination: "hub".into(), pending, failing, dead, oldest_at }]
    };
    assert_eq!(store.queue_counts().await.expect("counts"), counts(3, 0, 0));
    store.failed(due[0].seq, "timeout", far, false).await.expect("failed");
    store.failed(due[1].seq, "rejected", far, true).await.expect("dead");
    assert_eq!(store.queue_counts().await.expect("counts"), counts(2, 1, 1));
    store.delivered(due[2].seq).await.expect("delivered");
    assert!(store.replay(due[1].seq, at(0)).await.expect("replay"));
    assert_eq!(store.queue_counts().await.expect("counts"), counts(2, 1, 0));
}

crate::console_cases!(dyn Store;
    sla_rows_replace_their_own_and_read_back_by_day_range,
    an_incident_keeps_its_timeline_and_takes_no_note_once_resolved,
    a_rule_opens_one_incident_at_a_time_per_scope,
);

/// See [`crate::conformance_console::audit_search_reads_what_the_trail_holds`].
pub async fn audit_search_reads_what_the_trail_holds(
    store: Arc<dyn Store>,
    _key: ed25519_dalek::VerifyingKey,
) {
    for e in conformance_console::audit_search_entries("DE") {
        store.commit(UnitOfWork { audit: vec![e], ..UnitOfWork::default() }).await.expect("commit");
    }
    conformance_console::audit_search_reads_what_the_trail_holds(store.as_ref()).await;
}
