//! The hub's storage conformance suite: one set of tests every hub engine must pass, so that the
//! hub service can rely on the same guarantees whichever engine the binary chooses.
//!
//! An engine's test file instantiates it with
//! [`hub_conformance_tests!`](crate::hub_conformance_tests), giving an expression that opens a
//! fresh, empty store as `Arc<dyn HubStore>` and the key that verifies its checkpoints.

use std::sync::Arc;

use openmvs_audit::{Entry, Verifier};
use openmvs_core::alert::{AlertStatus, AlertThread};
use openmvs_core::ids::{Batch, Expiry, MarketCode, ProductCode};
use openmvs_core::master_data::{MarketData, ProductMaster, Wholesaler};
use openmvs_core::time::{Date, Timestamp};

use crate::hub::*;
use crate::{
    AlertUpdate, BoxFuture, Conflict, OutboxMessage, QueueCounts, StoreError, StoreResult,
    StoredOutboxMessage,
};

/// Generates one `#[tokio::test]` per hub conformance case for the engine opened by `$open`.
#[macro_export]
macro_rules! hub_conformance_tests {
    // An engine that needs a server: `$open` gives `Option<Arc<dyn HubStore>>`, and `None` skips
    // the case with a line on stderr saying why.
    (optional $open:expr, $verifying_key:expr) => {
        $crate::hub_conformance_tests!(@list optional, $open, $verifying_key);
    };
    ($open:expr, $verifying_key:expr) => {
        $crate::hub_conformance_tests!(@list required, $open, $verifying_key);
    };
    (@list $mode:ident, $open:expr, $verifying_key:expr) => {
        $crate::hub_conformance_tests!(@cases $mode, $open, $verifying_key;
            every_part_of_a_unit_commits_together_or_not_at_all,
            inserting_a_product_version_that_exists_conflicts,
            the_first_obp_to_upload_a_product_owns_it,
            withdrawal_and_recall_are_per_market_and_irreversible,
            serial_digests_report_duplicates_within_one_unit_and_across_units,
            a_refused_unit_inserts_no_serial_digest,
            an_upload_is_distributed_only_when_every_market_acknowledged_every_chunk,
            a_failed_upload_takes_no_more_chunks_and_its_markets_stay_pending,
            delivered_chunks_leave_no_serial_in_the_hub,
            the_outbox_delivers_in_order_per_destination_and_key_and_keeps_dead_letters,
            a_forwarded_alert_is_stored_once_per_source_key,
            alert_changes_need_the_expected_version_and_list_by_obp,
            an_inbound_message_applies_once,
            a_refused_unit_is_answered_as_refused_beside_outbox_bookkeeping,
            many_concurrent_commits_are_all_durable_and_the_audit_chain_verifies,
            obps_and_their_callbacks_round_trip,
            products_versions_and_batches_read_back_exactly,
            a_claimed_message_waits_for_its_lease_per_destination,
            runs_of_a_key_are_claimed_together_and_only_from_its_oldest_waiting_message,
            a_heartbeat_commits_at_the_hub_again_and_again,
            open_alerts_at_the_hub_are_counted_by_status,
            the_outbox_is_counted_per_destination,
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
                let Some(store) = $crate::hub_conformance_tests!(@open $mode, $open) else { return };
                let store: std::sync::Arc<dyn $crate::hub::HubStore> = store;
                $crate::conformance_hub::$case(store.clone(), $verifying_key).await;
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

fn today() -> Date {
    Date::new(2026, 11, 29).expect("date")
}

fn at(n: i64) -> Timestamp {
    Timestamp::from_unix_millis(Timestamp::start_of(today()).unix_millis() + n)
}

/// Far enough ahead that every message is due.
fn far() -> Timestamp {
    Timestamp::from_unix_millis(i64::MAX / 2)
}

fn gtin() -> ProductCode {
    ProductCode::gtin("09501101530003").expect("gtin")
}

fn other_gtin() -> ProductCode {
    ProductCode::gtin("05601234567892").expect("gtin")
}

fn m(s: &str) -> MarketCode {
    MarketCode::new(s).expect("market")
}

fn ms(list: &[&str]) -> Vec<MarketCode> {
    list.iter().map(|s| m(s)).collect()
}

fn lot(s: &str) -> Batch {
    Batch::new(s).expect("batch")
}

/// An audit entry of the hub's trail, as the cases (and the engines' own hub tests) append.
pub fn hub_entry(op: &str, subject: &str) -> Entry {
    entry(op, subject)
}

fn entry(op: &str, subject: &str) -> Entry {
    Entry {
        market: HUB_AUDIT_MARKET.into(),
        at_millis: at(0).unix_millis(),
        actor: "obp-1".into(),
        role: "OBP".into(),
        location: String::new(),
        operation: op.into(),
        subject: subject.into(),
        return_code: "OK".into(),
        request: "{}".into(),
        result: "{}".into(),
    }
}

fn obp(id: &str) -> ObpRecord {
    ObpRecord {
        id: id.into(),
        name: format!("{id} Pharma GmbH"),
        created_at: at(0),
        revoked_at: None,
        callback_url: None,
    }
}

/// Master data for `markets`, in the order given; wholesaler names with quotes and non-ASCII
/// letters, which must come back byte for byte.
fn master(product_code: ProductCode, v: u32, markets: &[&str]) -> ProductMaster {
    ProductMaster {
        product_code,
        name: format!("Examplomab 10 mg v{v}"),
        common_name: "examplomab".into(),
        form: "TABLET".into(),
        strength: "10 mg".into(),
        pack_type: "BLISTER".into(),
        pack_size: "30".into(),
        markets: markets
            .iter()
            .map(|mk| MarketData {
                market: m(mk),
                national_code: format!("{mk}-03752864"),
                mah_name: "Example Pharma GmbH".into(),
                mah_address: "Beispielstr. 1, 10115 Berlin".into(),
                wholesalers: vec![
                    Wholesaler { id: "W2".into(), name: "Großhandel \"Nord\" AG".into() },
                    Wholesaler { id: "W1".into(), name: "Grosso AG".into() },
                ],
            })
            .collect(),
    }
}

fn version(v: u32, markets: &[&str]) -> ProductVersionRecord {
    ProductVersionRecord { version: v, master: master(gtin(), v, markets), created_at: at(i64::from(v)) }
}

fn product(owner: &str, current: u32, withdrawn: &[&str]) -> HubProductRecord {
    HubProductRecord {
        product_code: gtin(),
        owner: owner.into(),
        current_version: current,
        withdrawn: ms(withdrawn),
        created_at: at(0),
    }
}

fn write(p: HubProductRecord, expected: Option<u32>) -> ProductWrite {
    ProductWrite { product: p, expected_version: expected }
}

fn batch(markets: &[&str], recalled: &[&str]) -> HubBatchRecord {
    HubBatchRecord {
        product_code: gtin(),
        batch: lot("LOT1"),
        product_version: 1,
        expiry: Expiry::parse("271200", today()).expect("expiry"),
        markets: ms(markets),
        recalled: ms(recalled),
    }
}

/// A stand-in for the keyed digest the hub computes: the serial's bytes, zero-padded to 16.
fn digest(serial: &str) -> SerialDigest {
    let mut b = [0u8; 16];
    b[..serial.len()].copy_from_slice(serial.as_bytes());
    SerialDigest::new(&b).expect("16 bytes")
}

fn digests(pc: ProductCode, serials: &[&str], on_duplicate: OnDuplicate) -> SerialDigests {
    SerialDigests { product_code: pc, digests: serials.iter().map(|s| digest(s)).collect(), on_duplicate }
}

fn message(id: &str, destination: &str, key: &str) -> OutboxMessage {
    OutboxMessage {
        message_id: id.into(),
        destination: destination.into(),
        kind: "product".into(),
        ordering_key: key.into(),
        payload: format!("{{\"id\":\"{id}\"}}"),
    }
}

/// A serial message of an upload: the only place serials are written at the hub.
fn chunk(id: &str, market: &str, serials: &[&str]) -> OutboxMessage {
    OutboxMessage {
        message_id: id.into(),
        destination: market.into(),
        kind: "packs".into(),
        ordering_key: gtin().as_str().into(),
        payload: format!("{{\"batch\":\"LOT1\",\"serials\":{serials:?}}}"),
    }
}

fn new_upload(id: &str, markets: &[&str]) -> NewUpload {
    NewUpload {
        id: id.into(),
        obp: "obp-1".into(),
        product_code: gtin(),
        batch: lot("LOT1"),
        markets: ms(markets),
        created_at: at(0),
    }
}

fn rejection(line: u64) -> UploadRejection {
    UploadRejection { line, serial: format!("BAD{line}"), reason: "serial uploaded before".into() }
}

fn alert(id: &str, market: &str, source: &str) -> HubAlertRecord {
    HubAlertRecord {
        id: id.into(),
        obp: "obp-1".into(),
        market: m(market),
        product_code: gtin().as_str().into(),
        alert: format!("{{\"id\":\"{id}\",\"code\":\"A3\",\"source\":\"{source}\"}}"),
        created_at: at(0),
        status: AlertStatus::Open,
        classification: None,
        comment: None,
        thread: AlertThread::default(),
        version: 0,
    }
}

/// An OBP, a product with version 1 for DE, FR and SE, and batch LOT1 for all three.
async fn seed(store: &Arc<dyn HubStore>) {
    let uow = HubUnitOfWork {
        new_obps: vec![obp("obp-1")],
        product_versions: vec![version(1, &["DE", "FR", "SE"])],
        products: vec![write(product("obp-1", 1, &[]), None)],
        batches: vec![batch(&["DE", "FR", "SE"], &[])],
        ..HubUnitOfWork::default()
    };
    store.commit(uow).await.expect("seed commits");
}

fn ids(v: Vec<StoredOutboxMessage>) -> Vec<String> {
    v.into_iter().map(|m| m.message.message_id.into_string()).collect()
}

async fn upload_status(
    store: &Arc<dyn HubStore>,
    id: &str,
) -> (UploadStatus, Vec<(MarketCode, MarketDelivery)>) {
    let u = store.upload(&id.into()).await.expect("read").expect("upload");
    (u.status, u.markets.iter().map(|mk| (mk.market, mk.status)).collect())
}

/// Delivers the next due message for `destination` and returns its id.
async fn deliver_next(store: &Arc<dyn HubStore>, destination: &str) -> String {
    let due = store.due(destination, far(), 1).await.expect("due");
    let next = due.first().unwrap_or_else(|| panic!("a message is due for {destination}"));
    store.delivered(next.seq).await.expect("delivered");
    next.message.message_id.to_string()
}

async fn verify_audit(store: &Arc<dyn HubStore>, key: ed25519_dalek::VerifyingKey) -> u64 {
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

/// One unit with every kind of part lands whole; one with a conflicting part writes none of its
/// parts, and the audit chain continues without a gap.
pub async fn every_part_of_a_unit_commits_together_or_not_at_all(
    store: Arc<dyn HubStore>,
    key: ed25519_dalek::VerifyingKey,
) {
    let whole = HubUnitOfWork {
        inbox: Some("DE-m1".into()),
        new_obps: vec![obp("obp-1")],
        product_versions: vec![version(1, &["DE", "FR"])],
        products: vec![write(product("obp-1", 1, &[]), None)],
        batches: vec![batch(&["DE", "FR"], &[])],
        serials: vec![digests(gtin(), &["S1", "S2"], OnDuplicate::Refuse)],
        new_upload: Some(new_upload("up-1", &["DE", "FR"])),
        upload_progress: Some(UploadProgress {
            id: "up-1".into(),
            received: 3,
            rejections: vec![rejection(3)],
            chunks: vec![chunk("c-de-1", "DE", &["S1", "S2"]), chunk("c-fr-1", "FR", &["S1", "S2"])],
            outcome: None,
        }),
        alerts: vec![alert("al-1", "DE", "n-1")],
        alert_updates: vec![],
        outbox: vec![message("p-de-1", "DE", gtin().as_str())],
        audit: vec![entry("upload", "GTIN/09501101530003")],
        obp_changes: vec![ObpChange::Callback {
            obp: "obp-1".into(),
            url: Some("https://obp.example/cb".into()),
        }],
        heartbeat: Some(crate::Heartbeat { node_id: "hub-a".into(), at: Timestamp::from_unix_millis(0) }),
    };
    let done = store.commit(whole).await.expect("commits");
    assert_eq!(done.audit_seqs, [1]);
    assert_eq!(done.duplicate_serials, [Vec::<usize>::new()]);
    let o = store.obp(&"obp-1".into()).await.expect("read").expect("obp");
    assert_eq!(o.callback_url.as_deref(), Some("https://obp.example/cb"));
    assert_eq!(store.product(&gtin()).await.expect("read").expect("product").owner, "obp-1");
    assert!(store.product_version(&gtin(), 1).await.expect("read").is_some());
    assert!(store.batch(&gtin(), &lot("LOT1")).await.expect("read").is_some());
    assert_eq!(store.digest_count(&gtin()).await.expect("count"), 2);
    let u = store.upload(&"up-1".into()).await.expect("read").expect("upload");
    assert_eq!((u.status, u.received, u.rejected), (UploadStatus::Received, 3, 1));
    assert!(u.markets.iter().all(|mk| (mk.chunks_sent, mk.chunks_acked) == (1, 0)), "{u:?}");
    assert!(store.alert(&"al-1".into()).await.expect("read").is_some());
    assert_eq!(store.pending().await.expect("pending"), 3);

    // Every part new except one product version that exists.
    let refused = HubUnitOfWork {
        inbox: Some("DE-m2".into()),
        new_obps: vec![obp("obp-2")],
        product_versions: vec![version(2, &["DE"]), version(1, &["SE"])],
        serials: vec![digests(gtin(), &["S3"], OnDuplicate::Report)],
        new_upload: Some(new_upload("up-2", &["DE"])),
        upload_progress: Some(UploadProgress {
            received: 1,
            chunks: vec![chunk("c-de-2", "DE", &["S3"])],
            ..UploadProgress::new("up-1".into())
        }),
        alerts: vec![alert("al-2", "DE", "n-2")],
        outbox: vec![message("p-de-2", "DE", gtin().as_str())],
        audit: vec![entry("product", "GTIN/09501101530003")],
        ..HubUnitOfWork::default()
    };
    let err = store.commit(refused).await.expect_err("a version that exists refuses the unit");
    assert!(matches!(err, StoreError::Conflict(Conflict::Exists(_))), "{err}");
    assert!(store.obp(&"obp-2".into()).await.expect("read").is_none());
    assert!(store.product_version(&gtin(), 2).await.expect("read").is_none());
    assert!(store.present(&gtin(), &[digest("S3")]).await.expect("read").is_empty());
    assert!(store.upload(&"up-2".into()).await.expect("read").is_none());
    assert_eq!(store.upload(&"up-1".into()).await.expect("read").expect("upload").received, 3);
    assert!(store.alert(&"al-2".into()).await.expect("read").is_none());
    assert_eq!(store.pending().await.expect("pending"), 3);
    // The refused unit's inbox id was not recorded either.
    let next = HubUnitOfWork {
        inbox: Some("DE-m2".into()),
        audit: vec![entry("alert", "")],
        ..HubUnitOfWork::default()
    };
    assert_eq!(store.commit(next).await.expect("commits").audit_seqs, [2]);
    assert_eq!(verify_audit(&store, key).await, 2);
}

/// Product versions are immutable: storing one that exists conflicts and changes nothing.
pub async fn inserting_a_product_version_that_exists_conflicts(
    store: Arc<dyn HubStore>,
    _key: ed25519_dalek::VerifyingKey,
) {
    seed(&store).await;
    let mut changed = version(1, &["DE"]);
    changed.master.name = "Other".into();
    let err = store
        .commit(HubUnitOfWork { product_versions: vec![changed], ..HubUnitOfWork::default() })
        .await
        .expect_err("version 1 exists");
    assert!(matches!(err, StoreError::Conflict(Conflict::Exists(_))), "{err}");
    assert_eq!(store.product_version(&gtin(), 1).await.expect("read"), Some(version(1, &["DE", "FR", "SE"])));
    let next = HubUnitOfWork {
        product_versions: vec![version(2, &["DE", "FR"])],
        products: vec![write(product("obp-1", 2, &[]), Some(1))],
        ..HubUnitOfWork::default()
    };
    store.commit(next).await.expect("a new version commits");
    assert_eq!(store.product(&gtin()).await.expect("read").expect("product").current_version, 2);
}

/// The first OBP to upload a product code owns it: a second creation conflicts, an update never
/// changes the owner, and an update decided on a superseded version conflicts.
pub async fn the_first_obp_to_upload_a_product_owns_it(
    store: Arc<dyn HubStore>,
    _key: ed25519_dalek::VerifyingKey,
) {
    seed(&store).await;
    let second = HubUnitOfWork {
        new_obps: vec![obp("obp-2")],
        products: vec![write(product("obp-2", 1, &[]), None)],
        ..HubUnitOfWork::default()
    };
    let err = store.commit(second).await.expect_err("the product exists");
    assert!(matches!(err, StoreError::Conflict(Conflict::Exists(_))), "{err}");
    assert!(store.obp(&"obp-2".into()).await.expect("read").is_none(), "nothing of the unit landed");
    let update = |expected| HubUnitOfWork {
        product_versions: vec![version(expected + 1, &["DE"])],
        products: vec![write(product("obp-2", expected + 1, &[]), Some(expected))],
        ..HubUnitOfWork::default()
    };
    store.commit(update(1)).await.expect("an update from the current version commits");
    let p = store.product(&gtin()).await.expect("read").expect("product");
    assert_eq!((p.owner.as_str(), p.current_version, p.created_at), ("obp-1", 2, at(0)));
    let stale = HubUnitOfWork {
        products: vec![write(product("obp-1", 3, &[]), Some(1))],
        ..HubUnitOfWork::default()
    };
    let err = store.commit(stale).await.expect_err("version 1 is superseded");
    assert!(matches!(err, StoreError::Conflict(Conflict::Exists(_))), "{err}");
    assert_eq!(store.product(&gtin()).await.expect("read").expect("product").current_version, 2);
}

/// Withdrawal and recall apply to the markets named, and a later write that does not name them
/// cannot clear them.
pub async fn withdrawal_and_recall_are_per_market_and_irreversible(
    store: Arc<dyn HubStore>,
    _key: ed25519_dalek::VerifyingKey,
) {
    seed(&store).await;
    let product_write = |withdrawn: &[&str]| HubUnitOfWork {
        products: vec![write(product("obp-1", 1, withdrawn), Some(1))],
        ..HubUnitOfWork::default()
    };
    let withdrawn = async |store: &Arc<dyn HubStore>| {
        store.product(&gtin()).await.expect("read").expect("product").withdrawn
    };
    store.commit(product_write(&["DE"])).await.expect("withdraw DE");
    assert_eq!(withdrawn(&store).await, ms(&["DE"]));
    store.commit(product_write(&[])).await.expect("a later write");
    assert_eq!(withdrawn(&store).await, ms(&["DE"]), "a withdrawal is irreversible");
    store.commit(product_write(&["SE", "DE"])).await.expect("withdraw SE");
    assert_eq!(withdrawn(&store).await, ms(&["DE", "SE"]));

    let batch_write = |recalled: &[&str]| HubUnitOfWork {
        batches: vec![batch(&["DE", "FR", "SE"], recalled)],
        ..HubUnitOfWork::default()
    };
    let recalled = async |store: &Arc<dyn HubStore>| {
        store.batch(&gtin(), &lot("LOT1")).await.expect("read").expect("batch").recalled
    };
    store.commit(batch_write(&["FR"])).await.expect("recall FR");
    assert_eq!(recalled(&store).await, ms(&["FR"]));
    store.commit(batch_write(&[])).await.expect("a later write");
    assert_eq!(recalled(&store).await, ms(&["FR"]), "a recall is irreversible");
    store.commit(batch_write(&["DE"])).await.expect("recall DE");
    assert_eq!(recalled(&store).await, ms(&["DE", "FR"]));
}

/// A digest present already, from an earlier unit or earlier in the same one, is reported by its
/// position; digests are per product.
pub async fn serial_digests_report_duplicates_within_one_unit_and_across_units(
    store: Arc<dyn HubStore>,
    _key: ed25519_dalek::VerifyingKey,
) {
    let first = HubUnitOfWork {
        serials: vec![digests(gtin(), &["A", "B", "A"], OnDuplicate::Report)],
        ..HubUnitOfWork::default()
    };
    assert_eq!(store.commit(first).await.expect("commits").duplicate_serials, [vec![2]]);
    let second = HubUnitOfWork {
        serials: vec![
            digests(gtin(), &["C", "B"], OnDuplicate::Report),
            digests(other_gtin(), &["B"], OnDuplicate::Report),
            digests(gtin(), &["C"], OnDuplicate::Report),
        ],
        ..HubUnitOfWork::default()
    };
    assert_eq!(store.commit(second).await.expect("commits").duplicate_serials, [vec![1], vec![], vec![0]]);
    let probe = [digest("A"), digest("D"), digest("C")];
    assert_eq!(store.present(&gtin(), &probe).await.expect("read"), [0, 2]);
    assert_eq!(store.present(&other_gtin(), &probe).await.expect("read"), Vec::<usize>::new());
    assert_eq!(store.digest_count(&gtin()).await.expect("count"), 3);
    assert_eq!(store.digest_count(&other_gtin()).await.expect("count"), 1);
    assert!(SerialDigest::new(&[0; 15]).is_none() && SerialDigest::new(&[0; 33]).is_none());
    assert_eq!(SerialDigest::new(&[7; 32]).expect("32 bytes").as_bytes(), [7; 32]);
}

/// A unit refused for any reason inserts none of its digests; with `Refuse`, one present digest
/// is itself the reason, and the chunk built on the stale read is not stored.
pub async fn a_refused_unit_inserts_no_serial_digest(
    store: Arc<dyn HubStore>,
    _key: ed25519_dalek::VerifyingKey,
) {
    seed(&store).await;
    let refused = HubUnitOfWork {
        serials: vec![digests(gtin(), &["X", "Y"], OnDuplicate::Report)],
        product_versions: vec![version(1, &["DE"])],
        ..HubUnitOfWork::default()
    };
    store.commit(refused).await.expect_err("version 1 exists");
    assert!(store.present(&gtin(), &[digest("X"), digest("Y")]).await.expect("read").is_empty());
    assert_eq!(store.digest_count(&gtin()).await.expect("count"), 0);

    let z = HubUnitOfWork {
        serials: vec![digests(gtin(), &["Z"], OnDuplicate::Refuse)],
        ..HubUnitOfWork::default()
    };
    store.commit(z).await.expect("commits");
    store
        .commit(HubUnitOfWork { new_upload: Some(new_upload("up-1", &["DE"])), ..HubUnitOfWork::default() })
        .await
        .expect("upload");
    let raced = HubUnitOfWork {
        serials: vec![digests(gtin(), &["W", "Z"], OnDuplicate::Refuse)],
        upload_progress: Some(UploadProgress {
            received: 2,
            chunks: vec![chunk("c-1", "DE", &["W", "Z"])],
            ..UploadProgress::new("up-1".into())
        }),
        ..HubUnitOfWork::default()
    };
    let err = store.commit(raced).await.expect_err("Z is present");
    assert!(matches!(err, StoreError::Conflict(Conflict::Exists(_))), "{err}");
    assert!(store.present(&gtin(), &[digest("W")]).await.expect("read").is_empty());
    assert_eq!(store.pending().await.expect("pending"), 0);
    assert_eq!(store.upload(&"up-1".into()).await.expect("read").expect("upload").received, 0);
}

/// Chunks count as sent when stored and as acknowledged when delivered; a market is DISTRIBUTED
/// once the upload has ended and it acknowledged every chunk, the upload once every market is.
pub async fn an_upload_is_distributed_only_when_every_market_acknowledged_every_chunk(
    store: Arc<dyn HubStore>,
    _key: ed25519_dalek::VerifyingKey,
) {
    seed(&store).await;
    let progress = |n: u32, rejections: Vec<UploadRejection>, outcome| UploadProgress {
        id: "up-1".into(),
        received: 3,
        rejections,
        chunks: vec![chunk(&format!("c-de-{n}"), "DE", &["S"]), chunk(&format!("c-fr-{n}"), "FR", &["S"])],
        outcome,
    };
    let first = HubUnitOfWork {
        new_upload: Some(new_upload("up-1", &["FR", "DE"])),
        upload_progress: Some(progress(1, vec![rejection(2)], None)),
        ..HubUnitOfWork::default()
    };
    store.commit(first).await.expect("first chunk");
    let pending = |s| (s, vec![(m("DE"), MarketDelivery::Pending), (m("FR"), MarketDelivery::Pending)]);
    assert_eq!(upload_status(&store, "up-1").await, pending(UploadStatus::Received));
    assert_eq!(store.unfinished_uploads(10).await.expect("list").len(), 1);
    let second = HubUnitOfWork {
        upload_progress: Some(progress(2, vec![rejection(4), rejection(6)], None)),
        ..HubUnitOfWork::default()
    };
    store.commit(second).await.expect("second chunk");

    // Every chunk so far acknowledged by DE, but more may come: still pending.
    assert_eq!(deliver_next(&store, "DE").await, "c-de-1");
    assert_eq!(deliver_next(&store, "DE").await, "c-de-2");
    assert_eq!(deliver_next(&store, "FR").await, "c-fr-1");
    assert_eq!(upload_status(&store, "up-1").await, pending(UploadStatus::Received));

    let last = HubUnitOfWork {
        upload_progress: Some(UploadProgress {
            outcome: Some(UploadOutcome::Validated),
            ..UploadProgress::new("up-1".into())
        }),
        ..HubUnitOfWork::default()
    };
    store.commit(last).await.expect("validated");
    assert_eq!(
        upload_status(&store, "up-1").await,
        (
            UploadStatus::Validated,
            vec![(m("DE"), MarketDelivery::Distributed), (m("FR"), MarketDelivery::Pending)]
        )
    );
    assert!(store.unfinished_uploads(10).await.expect("list").is_empty());
    let late = HubUnitOfWork { upload_progress: Some(progress(3, vec![], None)), ..HubUnitOfWork::default() };
    let err = store.commit(late).await.expect_err("an ended upload takes no more chunks");
    assert!(matches!(err, StoreError::Conflict(Conflict::Exists(_))), "{err}");

    let fr2 = store.due("FR", far(), 1).await.expect("due")[0].seq;
    store.delivered(fr2).await.expect("delivered");
    store.delivered(fr2).await.expect("a second acknowledgement of one message is a no-op");
    let u = store.upload(&"up-1".into()).await.expect("read").expect("upload");
    assert_eq!((u.status, u.received, u.rejected), (UploadStatus::Distributed, 6, 3));
    assert!(
        u.markets
            .iter()
            .all(|mk| (mk.chunks_sent, mk.chunks_acked, mk.status) == (2, 2, MarketDelivery::Distributed))
    );
    // Every rejection is kept, and pages by line.
    let lines = async |after, limit| {
        store
            .upload_rejections(&"up-1".into(), after, limit)
            .await
            .expect("read")
            .into_iter()
            .map(|r| r.line)
            .collect::<Vec<_>>()
    };
    assert_eq!(lines(0, 10).await, [2, 4, 6]);
    assert_eq!(lines(2, 1).await, [4]);
    assert_eq!(store.upload_rejections(&"up-1".into(), 0, 1).await.expect("read"), [rejection(2)]);
}

/// A failed upload ends: it takes no more progress, and its markets stay PENDING even once the
/// chunks it did send are acknowledged.
pub async fn a_failed_upload_takes_no_more_chunks_and_its_markets_stay_pending(
    store: Arc<dyn HubStore>,
    _key: ed25519_dalek::VerifyingKey,
) {
    seed(&store).await;
    let fail = HubUnitOfWork {
        new_upload: Some(new_upload("up-1", &["DE"])),
        upload_progress: Some(UploadProgress {
            received: 1,
            chunks: vec![chunk("c-de-1", "DE", &["S"])],
            outcome: Some(UploadOutcome::Failed),
            ..UploadProgress::new("up-1".into())
        }),
        ..HubUnitOfWork::default()
    };
    store.commit(fail).await.expect("commits");
    deliver_next(&store, "DE").await;
    let failed = (UploadStatus::Failed, vec![(m("DE"), MarketDelivery::Pending)]);
    assert_eq!(upload_status(&store, "up-1").await, failed);
    let more = HubUnitOfWork {
        upload_progress: Some(UploadProgress { received: 1, ..UploadProgress::new("up-1".into()) }),
        ..HubUnitOfWork::default()
    };
    let err = store.commit(more).await.expect_err("a failed upload has ended");
    assert!(matches!(err, StoreError::Conflict(Conflict::Exists(_))), "{err}");
    assert!(store.unfinished_uploads(10).await.expect("list").is_empty());
}

/// Serials travel only in chunk payloads; once every chunk is delivered, no read of the hub
/// returns one, while the digests still refuse a repeat.
pub async fn delivered_chunks_leave_no_serial_in_the_hub(
    store: Arc<dyn HubStore>,
    _key: ed25519_dalek::VerifyingKey,
) {
    seed(&store).await;
    let serials = ["QX7SERIAL01", "QX7SERIAL02"];
    let uow = HubUnitOfWork {
        serials: vec![digests(gtin(), &["QX7SERIAL01", "QX7SERIAL02"], OnDuplicate::Refuse)],
        new_upload: Some(new_upload("up-1", &["DE", "SE"])),
        upload_progress: Some(UploadProgress {
            received: 2,
            chunks: vec![chunk("c-de", "DE", &serials), chunk("c-se", "SE", &serials)],
            outcome: Some(UploadOutcome::Validated),
            ..UploadProgress::new("up-1".into())
        }),
        ..HubUnitOfWork::default()
    };
    store.commit(uow).await.expect("commits");
    let due = store.due("SE", far(), 10).await.expect("due");
    assert!(due[0].message.payload.contains(serials[0]), "the chunk carries its serials until delivered");
    deliver_next(&store, "DE").await;
    deliver_next(&store, "SE").await;
    assert_eq!(store.pending().await.expect("pending"), 0);
    assert!(store.dead_letters().await.expect("dead").is_empty());
    assert!(store.destinations().await.expect("destinations").is_empty());
    let seen = format!(
        "{:?}{:?}{:?}",
        store.upload(&"up-1".into()).await.expect("read"),
        store.upload_rejections(&"up-1".into(), 0, 100).await.expect("read"),
        store.audit_page(0, 100).await.expect("read"),
    );
    assert!(serials.iter().all(|s| !seen.contains(s)), "{seen}");
    assert_eq!(
        store.upload(&"up-1".into()).await.expect("read").expect("upload").status,
        UploadStatus::Distributed
    );
    assert_eq!(
        store.present(&gtin(), &[digest(serials[0]), digest(serials[1])]).await.expect("read"),
        [0, 1]
    );
}

/// Each destination is its own queue: one message per ordering key, oldest first; failures back
/// off, dead letters are listed and can be replayed (as in the national outbox).
pub async fn the_outbox_delivers_in_order_per_destination_and_key_and_keeps_dead_letters(
    store: Arc<dyn HubStore>,
    _key: ed25519_dalek::VerifyingKey,
) {
    let outbox = vec![
        message("a1", "DE", "A"),
        message("a2", "DE", "A"),
        message("b1", "DE", "B"),
        message("f1", "FR", "A"),
        message("cb1", "callback:obp-1", "A"),
    ];
    store.commit(HubUnitOfWork { outbox, ..HubUnitOfWork::default() }).await.expect("commits");
    assert_eq!(store.destinations().await.expect("destinations"), ["DE", "FR", "callback:obp-1"]);
    let due = store.due("DE", far(), 10).await.expect("due");
    assert_eq!(ids(due.clone()), ["a1", "b1"]);
    assert_eq!(
        ids(store.due("FR", far(), 10).await.expect("due")),
        ["f1"],
        "another destination is not held back"
    );
    assert_eq!(ids(store.due("callback:obp-1", far(), 10).await.expect("due")), ["cb1"]);
    store.failed(due[0].seq, "timeout", far(), false).await.expect("failed");
    let again = store.due("DE", far(), 10).await.expect("due");
    assert_eq!((again[0].attempts, again[0].last_error.as_deref()), (1, Some("timeout")));
    assert!(
        store.due("DE", at(0), 10).await.expect("due").iter().all(|m| m.message.message_id != "a1"),
        "backed off"
    );
    store.delivered(due[1].seq).await.expect("delivered");
    store.failed(due[0].seq, "rejected", far(), true).await.expect("dead");
    assert_eq!(ids(store.dead_letters().await.expect("dead")), ["a1"]);
    assert_eq!(
        ids(store.due("DE", far(), 10).await.expect("due")),
        ["a2"],
        "a dead letter no longer blocks its key"
    );
    assert!(store.replay(due[0].seq, at(0)).await.expect("replay"));
    assert!(!store.replay(due[0].seq, at(0)).await.expect("replay"), "only dead letters replay");
    assert_eq!(ids(store.due("DE", far(), 10).await.expect("due")), ["a1"]);
    assert_eq!(store.pending().await.expect("pending"), 4);
    let err = store
        .commit(HubUnitOfWork { outbox: vec![message("a2", "FR", "Z")], ..HubUnitOfWork::default() })
        .await
        .expect_err("message ids are unique");
    assert!(matches!(err, StoreError::Conflict(Conflict::Exists(_))), "{err}");
}

/// An alert is stored once under its id; forwarding it again (by the other market of an
/// inter-market alert, or a replay) refuses the unit, so its callback message does not go out twice.
pub async fn a_forwarded_alert_is_stored_once_per_source_key(
    store: Arc<dyn HubStore>,
    _key: ed25519_dalek::VerifyingKey,
) {
    let forward = |id: &str, market: &str, source: &str| HubUnitOfWork {
        alerts: vec![alert(id, market, source)],
        outbox: vec![message(&format!("cb-{id}"), "callback:obp-1", "obp-1")],
        ..HubUnitOfWork::default()
    };
    store.commit(forward("al-1", "DE", "n-1")).await.expect("first");
    let mut again = forward("al-1", "FR", "n-2");
    again.outbox[0].message_id = "cb-al-1-again".into();
    let err = store.commit(again).await.expect_err("forwarded again");
    assert!(matches!(err, StoreError::Conflict(Conflict::Exists(_))), "{err}");
    assert_eq!(store.pending().await.expect("pending"), 1, "one callback");
    store.commit(forward("al-3", "FR", "n-1")).await.expect("another alert");
    assert_eq!(store.alert(&"al-1".into()).await.expect("read"), Some(alert("al-1", "DE", "n-1")));
}

/// Alert changes apply only to the version they were decided on, and keep the thread; listing
/// filters by OBP, status and product, and pages by id.
pub async fn alert_changes_need_the_expected_version_and_list_by_obp(
    store: Arc<dyn HubStore>,
    _key: ed25519_dalek::VerifyingKey,
) {
    let mut alerts = Vec::new();
    for i in 0..5 {
        let mut a = alert(&format!("al-{i}"), "DE", &format!("n-{i}"));
        if i % 2 == 1 {
            a.obp = "obp-2".into();
        }
        alerts.push(a);
    }
    store.commit(HubUnitOfWork { alerts, ..HubUnitOfWork::default() }).await.expect("store");
    let upd = |expected| HubUnitOfWork {
        alert_updates: vec![AlertUpdate {
            id: "al-0".into(),
            expected_version: expected,
            status: AlertStatus::Investigating,
            classification: None,
            comment: Some("checking the line".into()),
            thread: crate::conformance::a_thread(),
        }],
        ..HubUnitOfWork::default()
    };
    store.commit(upd(0)).await.expect("moves");
    let err = store.commit(upd(0)).await.expect_err("stale");
    assert_eq!(err, StoreError::Conflict(Conflict::AlertStatus));
    let a = store.alert(&"al-0".into()).await.expect("read").expect("alert");
    assert_eq!((a.status, a.comment.as_deref()), (AlertStatus::Investigating, Some("checking the line")));
    assert_eq!((a.version, a.thread), (1, crate::conformance::a_thread()));
    store.commit(upd(1)).await.expect("moves from version 1");
    let list = async |f: HubAlertFilter| {
        store.alerts(&f).await.expect("list").into_iter().map(|a| a.id).collect::<Vec<_>>()
    };
    assert_eq!(list(HubAlertFilter { limit: 2, ..HubAlertFilter::default() }).await, ["al-0", "al-1"]);
    assert_eq!(
        list(HubAlertFilter { obp: Some("obp-2".into()), limit: 9, ..HubAlertFilter::default() }).await,
        ["al-1", "al-3"]
    );
    assert_eq!(
        list(HubAlertFilter {
            obp: Some("obp-1".into()),
            after: Some("al-0".into()),
            limit: 9,
            ..HubAlertFilter::default()
        })
        .await,
        ["al-2", "al-4"]
    );
    assert_eq!(
        list(HubAlertFilter {
            status: Some(AlertStatus::Investigating),
            limit: 9,
            ..HubAlertFilter::default()
        })
        .await,
        ["al-0"]
    );
    assert!(
        list(HubAlertFilter { product_code: Some("nope".into()), limit: 9, ..HubAlertFilter::default() })
            .await
            .is_empty()
    );
}

/// A message id from a national system is applied once; its redelivery conflicts and changes
/// nothing.
pub async fn an_inbound_message_applies_once(store: Arc<dyn HubStore>, _key: ed25519_dalek::VerifyingKey) {
    let uow = |id: &str, source: &str| HubUnitOfWork {
        inbox: Some("DE-msg-1".into()),
        alerts: vec![alert(id, "DE", source)],
        ..HubUnitOfWork::default()
    };
    store.commit(uow("al-1", "n-1")).await.expect("applies");
    let err = store.commit(uow("al-2", "n-2")).await.expect_err("redelivery");
    assert_eq!(err, StoreError::Conflict(Conflict::InboxMessage));
    assert!(store.alert(&"al-2".into()).await.expect("read").is_none());
}

/// A unit that conflicts is answered with its conflict even when outbox bookkeeping shares its
/// group: each answer goes to the caller whose unit it is.
pub async fn a_refused_unit_is_answered_as_refused_beside_outbox_bookkeeping(
    store: Arc<dyn HubStore>,
    _key: ed25519_dalek::VerifyingKey,
) {
    let applied = || HubUnitOfWork { inbox: Some("DE-msg-1".into()), ..HubUnitOfWork::default() };
    store.commit(applied()).await.expect("applies");
    // Many rounds, so that some groups hold bookkeeping ahead of a unit.
    for _ in 0..200 {
        let s = store.clone();
        let bookkeeping = tokio::spawn(async move { s.delivered(999_999).await });
        let s = store.clone();
        let unit = tokio::spawn(async move { s.commit(applied()).await });
        bookkeeping.await.expect("task").expect("bookkeeping");
        let r = unit.await.expect("task");
        assert_eq!(r, Err(StoreError::Conflict(Conflict::InboxMessage)));
    }
}

/// Hundreds of concurrent commits all succeed, and the hub's audit trail is one unbroken chain.
pub async fn many_concurrent_commits_are_all_durable_and_the_audit_chain_verifies(
    store: Arc<dyn HubStore>,
    key: ed25519_dalek::VerifyingKey,
) {
    let mut tasks = Vec::new();
    for i in 0..400 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let serial = format!("S{i}");
            let uow = HubUnitOfWork {
                inbox: Some(format!("DE-msg-{i}").into()),
                serials: vec![digests(gtin(), &[serial.as_str()], OnDuplicate::Refuse)],
                audit: vec![entry("upload", &format!("GTIN/09501101530003/{i}"))],
                ..HubUnitOfWork::default()
            };
            store.commit(uow).await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("commits");
    }
    assert_eq!(store.digest_count(&gtin()).await.expect("count"), 400);
    assert_eq!(verify_audit(&store, key).await, 400);
    let trail = store.audit_by_subject("GTIN/09501101530003/7").await.expect("audit");
    assert_eq!((trail.len(), trail[0].entry.market.as_str()), (1, HUB_AUDIT_MARKET));
}

/// OBPs are created once, their callback URL set and cleared, and a revocation keeps its first
/// instant.
pub async fn obps_and_their_callbacks_round_trip(
    store: Arc<dyn HubStore>,
    _key: ed25519_dalek::VerifyingKey,
) {
    let create = |id: &str| HubUnitOfWork { new_obps: vec![obp(id)], ..HubUnitOfWork::default() };
    store.commit(create("obp-2")).await.expect("create");
    store.commit(create("obp-1")).await.expect("create");
    let err = store.commit(create("obp-1")).await.expect_err("exists");
    assert!(matches!(err, StoreError::Conflict(Conflict::Exists(_))), "{err}");
    let change = |c: ObpChange| HubUnitOfWork { obp_changes: vec![c], ..HubUnitOfWork::default() };
    let url = Some("https://obp-1.example/alerts".to_owned());
    store
        .commit(change(ObpChange::Callback { obp: "obp-1".into(), url: url.clone() }))
        .await
        .expect("callback");
    assert_eq!(store.obp(&"obp-1".into()).await.expect("read").expect("obp").callback_url, url);
    store.commit(change(ObpChange::Revoke { obp: "obp-1".into(), at: at(5) })).await.expect("revoke");
    store.commit(change(ObpChange::Revoke { obp: "obp-1".into(), at: at(9) })).await.expect("revoke again");
    assert_eq!(store.obp(&"obp-1".into()).await.expect("read").expect("obp").revoked_at, Some(at(5)));
    store.commit(change(ObpChange::Callback { obp: "obp-1".into(), url: None })).await.expect("clear");
    let all = store.obps().await.expect("list");
    assert_eq!(all.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(), ["obp-1", "obp-2"]);
    assert_eq!(all[0], ObpRecord { revoked_at: Some(at(5)), ..obp("obp-1") });
    let err = store.commit(change(ObpChange::Revoke { obp: "obp-9".into(), at: at(0) })).await;
    assert!(err.is_err(), "a change to an OBP that does not exist is refused");
}

/// Products, versions and batches read back field by field; markets come back in market order and
/// an expiry keeps its encoding.
pub async fn products_versions_and_batches_read_back_exactly(
    store: Arc<dyn HubStore>,
    _key: ed25519_dalek::VerifyingKey,
) {
    seed(&store).await;
    let ppn = ProductCode::ppn("110375286414").expect("ppn");
    let ppn_version =
        ProductVersionRecord { version: 1, master: master(ppn.clone(), 1, &["SE", "DE"]), created_at: at(7) };
    let uow = HubUnitOfWork {
        product_versions: vec![ppn_version.clone()],
        products: vec![write(
            HubProductRecord { product_code: ppn.clone(), ..product("obp-1", 1, &[]) },
            None,
        )],
        ..HubUnitOfWork::default()
    };
    store.commit(uow).await.expect("commits");
    let p = store.product(&ppn).await.expect("read").expect("product");
    assert_eq!(p, HubProductRecord { product_code: ppn.clone(), ..product("obp-1", 1, &[]) });
    assert_eq!(
        store.product_version(&ppn, 1).await.expect("read"),
        Some(ppn_version),
        "markets stay in the order sent"
    );
    assert_eq!(store.product_version(&gtin(), 1).await.expect("read"), Some(version(1, &["DE", "FR", "SE"])));
    let b = store.batch(&gtin(), &lot("LOT1")).await.expect("read").expect("batch");
    assert_eq!(b, batch(&["DE", "FR", "SE"], &[]));
    assert_eq!((b.expiry.as_str(), b.expiry.date().to_string()), ("271200", "2027-12-31".to_owned()));
    assert!(store.batch(&gtin(), &lot("NOPE")).await.expect("read").is_none());
    assert!(store.product(&other_gtin()).await.expect("read").is_none());
    assert!(store.product_version(&gtin(), 9).await.expect("read").is_none());
    assert!(store.upload(&"nope".into()).await.expect("read").is_none());
}

/// A message a hub relay claimed is not given to another relay until its lease ends; claims are
/// per destination and keep the order per key.
pub async fn a_claimed_message_waits_for_its_lease_per_destination(
    store: Arc<dyn HubStore>,
    _key: ed25519_dalek::VerifyingKey,
) {
    let outbox = vec![
        message("a1", "DE", "A"),
        message("a2", "DE", "A"),
        message("b1", "DE", "B"),
        message("f1", "FR", "A"),
    ];
    store.commit(HubUnitOfWork { outbox, ..HubUnitOfWork::default() }).await.expect("commits");
    // Later than any clock an engine's test gives it, so every message is due.
    let t = |n: i64| Timestamp::from_unix_millis(i64::MAX / 4 + n);
    let first = store.claim_due("DE", t(10), t(1_000), 10).await.expect("claim");
    assert_eq!(ids(first.clone()), ["a1", "b1"]);
    assert!(
        store.claim_due("DE", t(20), t(1_000), 10).await.expect("claim").is_empty(),
        "taken, and a2 waits for a1"
    );
    assert_eq!(
        ids(store.claim_due("FR", t(20), t(1_000), 10).await.expect("claim")),
        ["f1"],
        "another destination"
    );
    store.delivered(first[0].seq).await.expect("delivered");
    assert_eq!(ids(store.claim_due("DE", t(30), t(1_000), 10).await.expect("claim")), ["a2"]);
    let after = store.claim_due("DE", t(1_001), t(2_000), 10).await.expect("claim");
    assert_eq!(ids(after.clone()), ["a2", "b1"], "taken over once the lease ends");
    assert!(after.iter().all(|m| m.attempts == 0), "a lease is not a failed attempt");
}

/// A relay that sends in one batch claims runs: the head of every key first, then several
/// messages of a key in order, up to the first one that waits (for a retry, or under a lease),
/// and none of a key held back.
pub async fn runs_of_a_key_are_claimed_together_and_only_from_its_oldest_waiting_message(
    store: Arc<dyn HubStore>,
    _key: ed25519_dalek::VerifyingKey,
) {
    let outbox = vec![
        message("a1", "callback:o", "A"),
        message("a2", "callback:o", "A"),
        message("b1", "callback:o", "B"),
        message("a3", "callback:o", "A"),
        message("c1", "callback:o", "C"),
        message("f1", "FR", "A"),
    ];
    store.commit(HubUnitOfWork { outbox, ..HubUnitOfWork::default() }).await.expect("commits");
    // Later than any clock an engine's test gives it, so every message is due.
    let t = |n: i64| Timestamp::from_unix_millis(i64::MAX / 4 + n);
    let first = store.claim_runs("callback:o", t(10), t(1_000), 10).await.expect("claim");
    assert_eq!(ids(first.clone()), ["a1", "a2", "b1", "a3", "c1"], "whole runs, in order");
    assert!(store.claim_runs("callback:o", t(20), t(1_000), 10).await.expect("claim").is_empty(), "taken");
    assert!(store.claim_due("callback:o", t(20), t(1_000), 10).await.expect("claim").is_empty());
    // a1 failed and waits for its retry; b1 was delivered; two more come.
    store.failed(first[0].seq, "refused", t(500), false).await.expect("failed");
    store.delivered(first[2].seq).await.expect("delivered");
    let more = vec![message("a4", "callback:o", "A"), message("b2", "callback:o", "B")];
    store.commit(HubUnitOfWork { outbox: more, ..HubUnitOfWork::default() }).await.expect("commits");
    assert_eq!(
        ids(store.claim_runs("callback:o", t(30), t(1_000), 10).await.expect("claim")),
        ["b2"],
        "A waits behind a1, C under its lease"
    );
    let heads = store.claim_runs("callback:o", t(1_001), t(2_000), 3).await.expect("claim");
    assert_eq!(
        ids(heads.clone()),
        ["a1", "c1", "b2"],
        "the head of every key comes first, whatever the backlog of an older key"
    );
    for m in &heads {
        store.delivered(m.seq).await.expect("delivered");
    }
    let run = store.claim_runs("callback:o", t(1_001), t(2_000), 2).await.expect("claim");
    assert_eq!(ids(run.clone()), ["a2", "a3"], "then the rest of a key's run, cut at the limit");
    assert!(
        store.claim_runs("callback:o", t(1_001), t(2_000), 10).await.expect("claim").is_empty(),
        "a4 waits behind the run just taken"
    );
    for m in &run {
        store.delivered(m.seq).await.expect("delivered");
    }
    let last = store.claim_runs("callback:o", t(1_001), t(2_000), 10).await.expect("claim");
    assert_eq!(ids(last.clone()), ["a4"]);
    store.delivered(last[0].seq).await.expect("delivered");
    let more = vec![
        message("a5", "callback:o", "A"),
        message("a6", "callback:o", "A"),
        message("a7", "callback:o", "A"),
    ];
    store.commit(HubUnitOfWork { outbox: more, ..HubUnitOfWork::default() }).await.expect("commits");
    let two = store.claim_runs("callback:o", t(1_001), t(2_000), 2).await.expect("claim");
    assert_eq!(ids(two.clone()), ["a5", "a6"]);
    // a5 failed and is due again at once; a6 is still under its lease.
    store.failed(two[0].seq, "refused", t(1_001), false).await.expect("failed");
    assert_eq!(
        ids(store.claim_runs("callback:o", t(1_002), t(3_000), 10).await.expect("claim")),
        ["a5"],
        "a run stops at its first message that waits"
    );
    assert_eq!(ids(store.claim_runs("FR", t(1_001), t(2_000), 10).await.expect("claim")), ["f1"]);
}

/// A heartbeat is a unit of work like any other: it commits, again and again for one node, and
/// beside other nodes' heartbeats.
pub async fn a_heartbeat_commits_at_the_hub_again_and_again(
    store: Arc<dyn HubStore>,
    _key: ed25519_dalek::VerifyingKey,
) {
    for n in 0..3 {
        for node in ["hub-a", "hub-b"] {
            let uow = HubUnitOfWork {
                heartbeat: Some(crate::Heartbeat {
                    node_id: node.into(),
                    at: Timestamp::from_unix_millis(n),
                }),
                ..HubUnitOfWork::default()
            };
            store.commit(uow).await.expect("a heartbeat commits");
        }
    }
    let later = HubUnitOfWork {
        heartbeat: Some(crate::Heartbeat {
            node_id: "hub-c".into(),
            at: Timestamp::from_unix_millis(3 * 86_400_000),
        }),
        ..HubUnitOfWork::default()
    };
    store.commit(later).await.expect("a heartbeat commits, dropping the rows of the days before");
}

/// A fresh place for a hub store (a database file, a schema), for the cases that open, close and
/// reopen a store there and look at it around the store.
pub trait HubPlace: Send + Sync {
    /// The engine's hub store.
    type Store: HubStore + 'static;
    /// Opens (or reopens) the hub store here, migrating it if needed.
    fn open(&self) -> StoreResult<Arc<Self::Store>>;
    /// Commits what is queued and stops the store; later writes are refused as unavailable.
    fn close(store: &Self::Store) -> BoxFuture<'_, ()>;
    /// Opens a national system's store here, then closes it.
    fn open_national(&self) -> BoxFuture<'_, ()>;
    /// Whether the national system's store here is still whole, and nothing of the hub was made.
    fn national_intact(&self) -> BoxFuture<'_, bool>;
    /// The tables one of whose rows holds `needle` in any column, in name order.
    fn tables_holding<'a>(&'a self, needle: &'a str) -> BoxFuture<'a, Vec<String>>;
    /// Runs `sql` around the store; whether it was refused.
    fn refused<'a>(&'a self, sql: &'a str) -> BoxFuture<'a, bool>;
    /// Statements of this engine's own dialect the schema must refuse too.
    fn more_irreversible(&self) -> &'static [&'static str] {
        &[]
    }
    /// Once a closed store here is reopened: checks what only the engine can (a read-only open).
    fn after_close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Generates one `#[tokio::test]` per hub case that needs a [`HubPlace`]; `$place` gives
/// `Option<impl HubPlace>` (`None` skips the case, saying why).
#[macro_export]
macro_rules! hub_place_tests {
    ($place:expr, $verifying_key:expr) => {
        $crate::hub_place_tests!(@cases $place, $verifying_key;
            no_row_holds_a_serial_after_delivery,
            the_schema_refuses_to_change_what_is_irreversible,
            a_closed_hub_store_reopens_and_its_audit_chain_continues,
            a_national_store_is_not_taken_for_the_hub,
        );
    };
    (@cases $place:expr, $verifying_key:expr; $($case:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(place) = $place else { return };
                $crate::conformance_hub::$case(&place, $verifying_key).await;
            }
        )*
    };
}

fn as_dyn<S: HubStore + 'static>(store: &Arc<S>) -> Arc<dyn HubStore> {
    store.clone()
}

/// Only the outbox row of an undelivered chunk holds its serials; once delivered, no row of any
/// table does, and the upload is distributed.
pub async fn no_row_holds_a_serial_after_delivery<P: HubPlace>(place: &P, _key: ed25519_dalek::VerifyingKey) {
    let store = place.open().expect("opens");
    let serials = ["ZQ9DELIVERED1", "ZQ9DELIVERED2"];
    let uow = HubUnitOfWork {
        new_upload: Some(new_upload("up-1", &["DE"])),
        upload_progress: Some(UploadProgress {
            received: 2,
            chunks: vec![chunk("c-1", "DE", &serials)],
            outcome: Some(UploadOutcome::Validated),
            ..UploadProgress::new("up-1".into())
        }),
        audit: vec![entry("upload", "GTIN/09501101530003/LOT1")],
        ..HubUnitOfWork::default()
    };
    store.commit(uow).await.expect("commits");
    assert_eq!(place.tables_holding(serials[0]).await, ["outbox"]);
    let seq = store.due("DE", far(), 1).await.expect("due")[0].seq;
    store.delivered(seq).await.expect("delivered");
    for s in serials {
        assert_eq!(place.tables_holding(s).await, Vec::<String>::new(), "{s}");
    }
    assert_eq!(
        store.upload(&"up-1".into()).await.expect("read").expect("upload").status,
        UploadStatus::Distributed
    );
    P::close(&store).await;
}

/// Audit records, product versions, withdrawals and recalls cannot be changed or removed, even by
/// SQL that goes around the store.
pub async fn the_schema_refuses_to_change_what_is_irreversible<P: HubPlace>(
    place: &P,
    key: ed25519_dalek::VerifyingKey,
) {
    let store = place.open().expect("opens");
    let uow = HubUnitOfWork {
        product_versions: vec![version(1, &[])],
        products: vec![write(product("obp-1", 1, &["DE"]), None)],
        batches: vec![batch(&["DE"], &["DE"])],
        audit: vec![entry("product", "GTIN/09501101530003")],
        ..HubUnitOfWork::default()
    };
    store.commit(uow).await.expect("commits");
    let common = [
        "UPDATE audit SET result = '{\"forged\":true}'",
        "DELETE FROM audit",
        "UPDATE product_versions SET name = 'Forged'",
        "DELETE FROM product_versions",
        "UPDATE product_withdrawals SET market = 'FR'",
        "DELETE FROM product_withdrawals",
        "UPDATE batch_recalls SET market = 'FR'",
        "DELETE FROM batch_recalls",
    ];
    for sql in common.iter().chain(place.more_irreversible()) {
        assert!(place.refused(sql).await, "{sql} was allowed");
    }
    assert_eq!(verify_audit(&as_dyn(&store), key).await, 1);
    P::close(&store).await;
}

/// A closed hub store refuses writes; reopened, its audit chain continues and still verifies.
pub async fn a_closed_hub_store_reopens_and_its_audit_chain_continues<P: HubPlace>(
    place: &P,
    key: ed25519_dalek::VerifyingKey,
) {
    let store = place.open().expect("opens");
    for op in ["a", "b"] {
        store
            .commit(HubUnitOfWork { audit: vec![entry(op, "")], ..HubUnitOfWork::default() })
            .await
            .expect("commits");
    }
    P::close(&store).await;
    let err = store.commit(HubUnitOfWork::default()).await.expect_err("closed");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    drop(store);
    place.after_close().await;
    let store = place.open().expect("reopens");
    let done = store
        .commit(HubUnitOfWork { audit: vec![entry("c", "")], ..HubUnitOfWork::default() })
        .await
        .expect("commits");
    assert_eq!(done.audit_seqs, [3]);
    assert_eq!(verify_audit(&as_dyn(&store), key).await, 3);
    P::close(&store).await;
}

/// A national system's store is refused as the hub's, and left as it was.
pub async fn a_national_store_is_not_taken_for_the_hub<P: HubPlace>(
    place: &P,
    _key: ed25519_dalek::VerifyingKey,
) {
    place.open_national().await;
    let err = place.open().err().expect("refused");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(place.national_intact().await, "the national store is whole and nothing of the hub was made");
}

/// The forwarded alerts not closed are counted per status, each open status listed even at 0;
/// a closed alert is not counted.
pub async fn open_alerts_at_the_hub_are_counted_by_status(
    store: Arc<dyn HubStore>,
    _key: ed25519_dalek::VerifyingKey,
) {
    let counts = async || store.open_alert_counts().await.expect("counts");
    let (open, investigating, escalated) =
        (AlertStatus::Open, AlertStatus::Investigating, AlertStatus::Escalated);
    assert_eq!(counts().await, [(open, 0), (investigating, 0), (escalated, 0)]);
    let alerts = (0..4).map(|i| alert(&format!("al-{i}"), "DE", &format!("n-{i}"))).collect();
    store.commit(HubUnitOfWork { alerts, ..HubUnitOfWork::default() }).await.expect("store");
    let moved = |id: &str, status| AlertUpdate {
        id: id.into(),
        expected_version: 0,
        status,
        classification: None,
        comment: None,
        thread: AlertThread::default(),
    };
    let alert_updates = vec![moved("al-1", AlertStatus::Escalated), moved("al-3", AlertStatus::Closed)];
    store.commit(HubUnitOfWork { alert_updates, ..HubUnitOfWork::default() }).await.expect("moves");
    assert_eq!(counts().await, [(open, 2), (investigating, 0), (escalated, 1)]);
}

/// The outbox is counted per destination, in destination order: live messages, those whose last
/// attempt failed (a callback that keeps failing shows here), and dead letters.
pub async fn the_outbox_is_counted_per_destination(
    store: Arc<dyn HubStore>,
    _key: ed25519_dalek::VerifyingKey,
) {
    assert!(store.queue_counts().await.expect("counts").is_empty());
    let outbox =
        vec![message("d1", "DE", "A"), message("d2", "DE", "B"), message("cb1", "callback:obp-1", "A")];
    store.commit(HubUnitOfWork { outbox, ..HubUnitOfWork::default() }).await.expect("commits");
    let de = store.due("DE", far(), 10).await.expect("due");
    let cb = store.due("callback:obp-1", far(), 10).await.expect("due");
    store.failed(cb[0].seq, "HTTP 500", far(), false).await.expect("failed");
    store.failed(de[0].seq, "rejected", far(), true).await.expect("dead");
    // One unit of work: every message was committed at the same instant.
    let committed = Some(de[0].created_at);
    let q = |destination: &str, pending, failing, dead| QueueCounts {
        destination: destination.into(),
        pending,
        failing,
        dead,
        oldest_at: committed,
    };
    assert_eq!(store.queue_counts().await.expect("counts"), [q("DE", 1, 0, 1), q("callback:obp-1", 1, 1, 0)]);
    store.delivered(de[1].seq).await.expect("delivered");
    let only_dead = QueueCounts { pending: 0, oldest_at: None, ..q("DE", 0, 0, 1) };
    assert_eq!(store.queue_counts().await.expect("counts")[0], only_dead, "no live message: no age");
}

crate::console_cases!(dyn HubStore;
    sla_rows_replace_their_own_and_read_back_by_day_range,
    an_incident_keeps_its_timeline_and_takes_no_note_once_resolved,
    a_rule_opens_one_incident_at_a_time_per_scope,
);

/// See [`crate::conformance_console::audit_search_reads_what_the_trail_holds`].
pub async fn audit_search_reads_what_the_trail_holds(
    store: Arc<dyn HubStore>,
    _key: ed25519_dalek::VerifyingKey,
) {
    for e in crate::conformance_console::audit_search_entries(HUB_AUDIT_MARKET) {
        store.commit(HubUnitOfWork { audit: vec![e], ..HubUnitOfWork::default() }).await.expect("commit");
    }
    crate::conformance_console::audit_search_reads_what_the_trail_holds(store.as_ref()).await;
}
