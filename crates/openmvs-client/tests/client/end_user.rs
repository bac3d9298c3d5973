//! Every end-user route through the client against DE: the single-pack operations and their
//! undos (fields and scans), bulk submitted and polled until done or until its deadline, alerts
//! page by page, read, moved on and commented, an audit trail and the return codes.

use std::sync::Arc;
use std::time::Duration;

use openmvs_client::wire::api::{AlertStatusRequest, BulkRequest};
use openmvs_client::{
    AlertQuery, ClientError, EntryMode, ManualTimer, PackInput, PackOperation, PollOptions, UndoOperation,
};
use openmvs_core::roles::Role;

use crate::world::{BATCH, EXPIRY, PRODUCT, World};

fn pack(serial: &str) -> PackInput {
    PackInput::gtin(PRODUCT, serial, BATCH, EXPIRY)
}

/// The pack's state in an answer.
fn state(a: &openmvs_client::wire::api::PackResponse) -> &str {
    a.pack.as_ref().map_or("(unknown)", |p| p.state.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_and_its_undo_reach_their_route() {
    let serials = ["OPS0001", "OPS0002", "OPS0003", "OPS0004", "OPS0005", "OPS0006", "OPS0007"];
    let w = World::start().await;
    w.seed(&serials).await;
    let timer = Arc::new(ManualTimer::new());
    let pharmacy = w.end_user(&w.user(Role::Pharmacy, "DE-PH-1").await, timer.clone());
    let wholesaler = w.end_user(&w.user(Role::Wholesaler, "DE-WS-1").await, timer.clone());

    // A raw scan, as the scanner read it.
    let scan = format!("]d201{PRODUCT}17{EXPIRY}10{BATCH}\u{1d}21{}", serials[0]);
    let v = pharmacy.verify(&PackInput::scan(scan).with_entry_mode(EntryMode::Scanned)).await.unwrap();
    assert_eq!((v.return_code.as_str(), state(&v)), ("NMVS_SUCCESS", "ACTIVE"));
    assert_eq!(v.product.as_ref().unwrap().name, "Examplomab 10 mg tablets");

    for (client, op, undo, serial, set) in [
        (&pharmacy, PackOperation::Supply, Some(UndoOperation::Supply), serials[0], "SUPPLIED"),
        (&wholesaler, PackOperation::Export, Some(UndoOperation::Export), serials[1], "EXPORTED"),
        (&pharmacy, PackOperation::Sample, Some(UndoOperation::Sample), serials[2], "SAMPLE"),
        (&pharmacy, PackOperation::FreeSample, Some(UndoOperation::FreeSample), serials[3], "FREE_SAMPLE"),
        (&pharmacy, PackOperation::Lock, Some(UndoOperation::Lock), serials[4], "LOCKED"),
        (&pharmacy, PackOperation::Destroy, None, serials[5], "DESTROYED"),
        (&pharmacy, PackOperation::Stolen, None, serials[6], "STOLEN"),
    ] {
        let a = client.pack(op, &pack(serial)).await.unwrap();
        assert_eq!((a.accepted, state(&a)), (true, set), "{op:?}: {a:?}");
        if let Some(undo) = undo {
            let a = client.undo(undo, &pack(serial)).await.unwrap();
            assert_eq!((a.accepted, state(&a)), (true, "ACTIVE"), "{undo:?}: {a:?}");
        }
    }
    // The shorthands name the same routes.
    assert_eq!(state(&pharmacy.supply(&pack(serials[0])).await.unwrap()), "SUPPLIED");
    assert_eq!(state(&pharmacy.undo_supply(&pack(serials[0])).await.unwrap()), "ACTIVE");
    assert_eq!(state(&pharmacy.lock(&pack(serials[4])).await.unwrap()), "LOCKED");
    assert_eq!(state(&pharmacy.unlock(&pack(serials[4])).await.unwrap()), "ACTIVE");
    // A refusal by the rules is an answer, not an error.
    let again = pharmacy.destroy(&pack(serials[5])).await.unwrap();
    assert!(!again.accepted, "{again:?}");
    assert!(timer.sleeps().is_empty());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_is_submitted_and_polled_until_done_or_until_its_deadline() {
    let w = Arc::new(World::start().await);
    w.seed(&["BLK0001", "BLK0002", "BLK0003"]).await;
    let creds = w.user(Role::Pharmacy, "DE-PH-1").await;

    // Nothing runs the bulk worker: the wait ends at its deadline, still pending.
    let idle = Arc::new(ManualTimer::new());
    let client = w.end_user(&creds, idle.clone());
    let supply = |serials: &[&str]| BulkRequest {
        operation: Some("supply".into()),
        scheme: Some("GTIN".into()),
        product_code: Some(PRODUCT.into()),
        batch: Some(BATCH.into()),
        expiry: Some(EXPIRY.into()),
        serials: Some(serials.iter().map(|s| (*s).to_owned()).collect()),
        ..BulkRequest::default()
    };
    let verify = BulkRequest { operation: Some("verify".into()), ..supply(&["BLK0001"]) };
    let poll = PollOptions { interval: Duration::from_secs(2), deadline: Duration::from_secs(9) };
    match client.run_bulk(&verify, poll).await.unwrap_err() {
        ClientError::DeadlineExceeded { last_status, waited, .. } => {
            assert_eq!((last_status.as_str(), waited), ("PENDING", Duration::from_secs(8)));
        }
        other => panic!("expected the deadline, got {other:?}"),
    }
    assert_eq!(idle.sleeps(), [Duration::from_secs(2); 4]);

    // Each wait runs a round of the worker: done, with the results in request order.
    let stepping = w.bulk_timer();
    let client = w.end_user(&creds, stepping.clone());
    let mixed = BulkRequest {
        client_trx_id: Some("blk-mixed-1".into()),
        transactions: Some(vec![openmvs_client::wire::api::BulkRow {
            operation: "verify".into(),
            scheme: "GTIN".into(),
            product_code: PRODUCT.into(),
            serial: "BLK0003".into(),
            batch: BATCH.into(),
            expiry: EXPIRY.into(),
        }]),
        ..BulkRequest::default()
    };
    let first = client.submit_bulk(&supply(&["BLK0001", "BLK0002", "NOSUCHBLK"])).await.unwrap();
    let done = client.wait_for_bulk(&first.bulk_id, poll).await.unwrap();
    assert_eq!(done.status, "DONE");
    let rows: Vec<(&str, bool)> = done.results.iter().map(|r| (r.serial.as_str(), r.accepted)).collect();
    assert_eq!(rows, [("BLK0001", true), ("BLK0002", true), ("NOSUCHBLK", false)]);
    let mixed_done = client.run_bulk(&mixed, poll).await.unwrap();
    assert_eq!(mixed_done.results[0].return_code, "NMVS_SUCCESS");
    assert!(!stepping.timer.sleeps().is_empty(), "the worker ran while the client waited");
    // The same bulk again: the national system knows its client_trx_id.
    let again = client.submit_bulk(&mixed).await.unwrap();
    let status = client.bulk_status(&again.bulk_id).await.unwrap();
    assert_eq!(status.bulk_id, again.bulk_id);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_paged_read_moved_on_and_commented_and_the_trail_read() {
    let w = World::start().await;
    w.seed(&["ALR0001"]).await;
    let timer = Arc::new(ManualTimer::new());
    let pharmacy = w.end_user(&w.user(Role::Pharmacy, "DE-PH-1").await, timer.clone());
    let nmvo = w.end_user(&w.user(Role::Nmvo, "DE-NMVO").await, timer.clone());
    let nca = w.end_user(&w.user(Role::Nca, "DE-NCA").await, timer.clone());
    let mut raised = Vec::new();
    for serial in ["ALRX0001", "ALRX0002", "ALRX0003"] {
        let a = pharmacy.verify(&pack(serial)).await.unwrap();
        assert_eq!(a.return_code, "NMVS_NC_PC_02");
        raised.push(a.alert.expect("an A3 alert").id);
    }

    let page = nmvo.alerts(&AlertQuery { limit: Some(2), ..AlertQuery::with_status("OPEN") }).await.unwrap();
    assert_eq!(page.alerts.len(), 2);
    assert!(page.next_cursor.is_some());
    let mut all: Vec<String> = nmvo
        .all_alerts(&AlertQuery { limit: Some(2), ..AlertQuery::all() })
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    all.sort();
    raised.sort();
    assert_eq!(all, raised);
    // An end user sees its own.
    assert_eq!(pharmacy.all_alerts(&AlertQuery::all()).await.unwrap().len(), 3);

    let id = &raised[0];
    let moved = nmvo
        .change_alert_status(
            id,
            &AlertStatusRequest { status: "INVESTIGATING".into(), classification: None, comment: None },
        )
        .await
        .unwrap();
    assert_eq!(moved.alert.status, "INVESTIGATING");
    let comment = nmvo.comment_alert(id, "the pharmacy rescans").await.unwrap();
    assert_eq!((comment.role.as_str(), comment.text.as_str()), ("NMVO", "the pharmacy rescans"));
    let detail = nmvo.alert(id).await.unwrap();
    assert_eq!((detail.history.len(), detail.comments.len()), (1, 1), "{detail:?}");
    // Only the NMVO moves alerts on.
    let err = pharmacy
        .change_alert_status(
            id,
            &AlertStatusRequest { status: "CLOSED".into(), classification: None, comment: None },
        )
        .await
        .unwrap_err();
    assert_eq!((err.status(), err.return_code()), (Some(403), Some("NMVS_FE_AU_04")), "{err}");
    let err = nmvo.alert("ALR-no-such-alert").await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");

    let trail = nca.audit_of_pack("GTIN", PRODUCT, "ALRX0001").await.unwrap();
    assert_eq!(trail.records.iter().map(|r| r.operation.as_str()).collect::<Vec<_>>(), ["verify"]);
    let codes = pharmacy.return_codes().await.unwrap();
    let a3 = codes.return_codes.iter().find(|c| c.code == "NMVS_NC_PC_02").expect("NMVS_NC_PC_02");
    assert_eq!((a3.level, a3.alert.as_deref()), (5, Some("A3")));
    let err = pharmacy.audit_of_pack("GTIN", PRODUCT, "").await.unwrap_err();
    assert!(matches!(err, ClientError::InvalidInput { field: "serial", .. }), "{err}");
    w.stop().await;
}
