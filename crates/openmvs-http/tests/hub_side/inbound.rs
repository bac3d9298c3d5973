//! Deliveries from the hub: master data, batches and packs applied once each, in order, with
//! rejections that do not stop the rest, recalls and withdrawals that stick.

use std::sync::atomic::Ordering;

use openmvs_core::ids::{Batch, ProductCode, Scheme};
use openmvs_store::{AuditStore, BatchStore, PackStore, ProductStore};
use openmvs_wire::hub::Delivery;

use crate::harness::*;
use crate::pki::{client, pki};

fn p(code: &str) -> ProductCode {
    ProductCode::new(Scheme::Gtin, code).unwrap()
}

/// The records of the messages from the hub with this id: a message is audited under what it is
/// about (its pack, batch or product) and names its id in the result.
async fn records_of_message(store: &dyn AuditStore, id: &str) -> Vec<openmvs_audit::Sealed> {
    let all = store.audit_page(0, 100_000).await.unwrap();
    let named = |r: &openmvs_audit::Sealed| {
        serde_json::from_str::<serde_json::Value>(&r.entry.result).is_ok_and(|v| v["message_id"] == id)
            || r.entry.subject == id
    };
    all.into_iter().map(|(_, r)| r).filter(named).collect()
}

fn statuses(ack: &openmvs_wire::hub::DeliveryAck) -> Vec<String> {
    ack.results.iter().map(|a| a.status.clone()).collect()
}

#[tokio::test]
async fn a_delivery_over_mutual_tls_creates_packs_that_verify() {
    let h = Harness::start().await;
    let pc = gtin("0950110153000");
    let delivery = Delivery {
        messages: vec![
            envelope(product(&pc, "Testomab 10 mg", 1)),
            envelope(batch_msg(&pc, "B1", &["DE", "FR"])),
            envelope(packs(&pc, "B1", &["S1", "S2", "S3"])),
        ],
    };

    let ack = h.hub.send(&h.url, &delivery).await;

    assert_eq!(statuses(&ack), ["APPLIED", "APPLIED", "APPLIED"]);
    let ids: Vec<&str> = ack.results.iter().map(|a| a.message_id.as_str()).collect();
    let sent: Vec<&str> = delivery.messages.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(ids, sent, "one acknowledgement per message, in order");
    assert_eq!(h.store.pack_count().await.unwrap(), 3);
    let batch = h.store.batch(&p(&pc), &Batch::new("B1").unwrap()).await.unwrap().unwrap();
    let markets: Vec<String> = batch.markets.iter().map(ToString::to_string).collect();
    assert_eq!(markets, ["DE", "FR"]);
    assert_eq!(h.store.product(&p(&pc)).await.unwrap().unwrap().owner, OWNER);
    let subjects = [format!("GTIN/{pc}/"), format!("GTIN/{pc}/#B1"), format!("GTIN/{pc}/#B1")];
    for ((env, op), subject) in
        delivery.messages.iter().zip(["hub-product", "hub-batch", "hub-packs"]).zip(subjects)
    {
        let records = records_of_message(h.store.as_ref(), &env.message_id).await;
        assert_eq!(records.len(), 1, "{op} audited once");
        assert_eq!(records[0].entry.operation, op);
        assert_eq!(records[0].entry.role, "HUB");
        assert_eq!(records[0].entry.subject, subject, "under the product or batch it brings");
    }

    let r = h.op(&pharmacy("DE-PHARMA-1"), VERIFY, "v-1", &pc, "B1", "S2").await;
    assert!(r.accepted, "{r:?}");
    assert_eq!(r.return_code, "NMVS_SUCCESS");
    assert_eq!(r.pack.as_ref().unwrap().state, "ACTIVE");
    assert_eq!(r.product.as_ref().unwrap().name, "Testomab 10 mg");
    assert!(!r.intermarket);
}

#[tokio::test]
async fn a_redelivered_delivery_is_answered_duplicate_and_changes_nothing() {
    let h = Harness::start().await;
    let pc = gtin("0950110153001");
    let delivery = Delivery {
        messages: vec![
            envelope(product(&pc, "Testomab 10 mg", 1)),
            envelope(batch_msg(&pc, "B1", &["DE"])),
            envelope(packs(&pc, "B1", &["S1", "S2"])),
        ],
    };
    assert_eq!(statuses(&h.hub.send(&h.url, &delivery).await), ["APPLIED"; 3]);
    // A change made after the first application, which a re-application could undo.
    let r = h.op(&pharmacy("DE-PHARMA-1"), SUPPLY, "s-1", &pc, "B1", "S1").await;
    assert!(r.accepted, "{r:?}");
    let audit_before = h.audit_count().await;
    let version_before = h.stored(&pc, "S1").await.version;

    for _ in 0..2 {
        let ack = h.hub.send(&h.url, &delivery).await;
        assert_eq!(statuses(&ack), ["DUPLICATE"; 3]);
        assert!(ack.results.iter().all(|a| a.error.is_none()), "{ack:?}");
    }

    assert_eq!(h.store.pack_count().await.unwrap(), 2);
    assert_eq!(h.audit_count().await, audit_before, "a duplicate is not audited again");
    assert_eq!(h.state(&pc, "S1").await, "SUPPLIED");
    assert_eq!(h.stored(&pc, "S1").await.version, version_before);
    for env in &delivery.messages {
        assert_eq!(records_of_message(h.store.as_ref(), &env.message_id).await.len(), 1);
    }
}

#[tokio::test]
async fn a_malformed_message_is_rejected_with_a_reason_and_later_messages_still_apply() {
    let h = Harness::start().await;
    let pc = gtin("0950110153002");
    h.seed(&pc, "B1", &["DE"], &["S1"]).await;
    let mut bad_code = pc.clone();
    bad_code.replace_range(13.., if pc.ends_with('9') { "0" } else { "9" });
    let delivery = Delivery {
        messages: vec![
            envelope(product(&bad_code, "Bad check digit", 1)),
            envelope(packs(&pc, "B1", &["S5", "has space"])),
            envelope(packs(&pc, "B1", &["S4"])),
        ],
    };

    let ack = h.hub.send(&h.url, &delivery).await;

    assert_eq!(statuses(&ack), ["REJECTED", "REJECTED", "APPLIED"]);
    let why0 = ack.results[0].error.as_deref().unwrap_or_default();
    assert!(why0.contains("product_code"), "the reason names the field: {why0}");
    let why1 = ack.results[1].error.as_deref().unwrap_or_default();
    assert!(why1.contains("serials[1]"), "the reason names the serial: {why1}");
    assert!(ack.results[2].error.is_none());
    // A rejected message applies nothing of itself, not even its good serials.
    assert_eq!(h.store.pack_count().await.unwrap(), 2, "S1 and S4");
    let rejected = h.store.audit_by_subject(&delivery.messages[0].message_id).await.unwrap();
    assert_eq!(rejected.len(), 1, "the rejection is audited");
    assert_eq!(rejected[0].entry.return_code, "NMVS_TE_XM_02");
    let r = h.op(&pharmacy("DE-PHARMA-1"), VERIFY, "v-4", &pc, "B1", "S4").await;
    assert!(r.accepted, "{r:?}");
    let r = h.op(&pharmacy("DE-PHARMA-1"), VERIFY, "v-5", &pc, "B1", "S5").await;
    assert_eq!(r.return_code, "NMVS_NC_PC_02", "S5 came in a rejected message: {r:?}");
}

#[tokio::test]
async fn a_recall_from_the_hub_makes_supply_refuse_with_lot_01_and_new_batch_data_does_not_undo_it() {
    let h = Harness::start().await;
    let pc = gtin("0950110153003");
    h.seed(&pc, "B1", &["DE"], &["S1", "S2"]).await;

    let ack = h.hub.send_one(&h.url, &envelope(recall(&pc, "B1"))).await;
    assert_eq!(ack.status, "APPLIED", "{ack:?}");

    let r = h.op(&pharmacy("DE-PHARMA-1"), SUPPLY, "s-1", &pc, "B1", "S1").await;
    assert_eq!((r.accepted, r.return_code.as_str(), r.level), (false, "NMVS_FE_LOT_01", 4), "{r:?}");
    assert!(r.alert.is_none());
    assert_eq!(h.state(&pc, "S1").await, "ACTIVE");
    let v = h.op(&pharmacy("DE-PHARMA-1"), VERIFY, "v-2", &pc, "B1", "S2").await;
    let view = v.pack.unwrap();
    assert_eq!(view.reasons, ["RECALLED"]);
    assert!(!view.dispensable);

    // The hub sends the batch again (e.g. a new market was added): the recall is irreversible.
    let ack = h.hub.send_one(&h.url, &envelope(batch_msg(&pc, "B1", &["DE", "AT"]))).await;
    assert_eq!(ack.status, "APPLIED");
    let r = h.op(&pharmacy("DE-PHARMA-1"), SUPPLY, "s-2", &pc, "B1", "S2").await;
    assert_eq!(r.return_code, "NMVS_FE_LOT_01", "{r:?}");
    assert!(h.alerts().await.is_empty(), "level 4 refusals raise no alert");
}

#[tokio::test]
async fn a_withdrawal_from_the_hub_makes_supply_refuse_with_lot_08() {
    let h = Harness::start().await;
    let pc = gtin("0950110153004");
    h.seed(&pc, "B1", &["DE"], &["S1"]).await;

    let ack = h.hub.send_one(&h.url, &envelope(withdrawal(&pc))).await;
    assert_eq!(ack.status, "APPLIED", "{ack:?}");

    let r = h.op(&pharmacy("DE-PHARMA-1"), SUPPLY, "s-1", &pc, "B1", "S1").await;
    assert_eq!((r.accepted, r.return_code.as_str(), r.level), (false, "NMVS_FE_LOT_08", 4), "{r:?}");
    assert!(r.alert.is_none());
    assert_eq!(h.state(&pc, "S1").await, "ACTIVE");
    assert!(h.alerts().await.is_empty());
}

#[tokio::test]
async fn product_master_data_after_a_withdrawal_does_not_un_withdraw() {
    let h = Harness::start().await;
    let pc = gtin("0950110153005");
    h.seed(&pc, "B1", &["DE"], &["S1"]).await;
    assert_eq!(h.hub.send_one(&h.url, &envelope(withdrawal(&pc))).await.status, "APPLIED");

    let ack = h.hub.send_one(&h.url, &envelope(product(&pc, "Testomab 10 mg (new label)", 2))).await;
    assert_eq!(ack.status, "APPLIED", "{ack:?}");

    let stored = h.store.product(&p(&pc)).await.unwrap().unwrap();
    assert_eq!((stored.name.as_str(), stored.version), ("Testomab 10 mg (new label)", 2), "the data applied");
    assert!(stored.withdrawn, "but the withdrawal stays");
    let r = h.op(&pharmacy("DE-PHARMA-1"), SUPPLY, "s-1", &pc, "B1", "S1").await;
    assert_eq!(r.return_code, "NMVS_FE_LOT_08", "{r:?}");
}

#[tokio::test]
async fn packs_of_a_batch_unknown_here_are_rejected_rather_than_stored_without_their_batch() {
    let h = Harness::start().await;
    let pc = gtin("0950110153006");
    h.seed(&pc, "B1", &["DE"], &["S1"]).await;

    let ack = h.hub.send_one(&h.url, &envelope(packs(&pc, "NO-SUCH-BATCH", &["S9"]))).await;

    // Stored without a batch, the pack could never be verified: every request on it would fail.
    let r =
        h.national.pack(&pharmacy("DE-PHARMA-1"), VERIFY, &pack_req("v-9", &pc, "NO-SUCH-BATCH", "S9")).await;
    assert!(r.is_ok(), "a verify of a pack the hub sent must be answered, got {r:?}");
    assert_eq!(ack.status, "REJECTED", "{ack:?}");
}

#[tokio::test]
async fn a_storage_failure_while_applying_tells_the_hub_to_retry_instead_of_rejecting() {
    let h = Harness::start().await;
    let pc = gtin("0950110153007");
    let delivery = Delivery { messages: vec![envelope(product(&pc, "Testomab 10 mg", 1))] };

    h.store.fail_reads.store(true, Ordering::SeqCst);
    let resp = client(Some(&pki().hub))
        .post(format!("{}/internal/v1/messages", h.url))
        .json(&delivery)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    h.store.fail_reads.store(false, Ordering::SeqCst);

    // A transient failure is not a verdict on the message: a rejection would dead-letter it at the hub.
    let ack = h.hub.send(&h.url, &delivery).await;
    assert_eq!(statuses(&ack), ["APPLIED"], "the redelivery applies (first answer {status}: {text})");
    assert_eq!(status, 503, "{text}");
    assert!(h.store.product(&p(&pc)).await.unwrap().is_some());
}

#[tokio::test]
async fn a_delivery_the_store_cannot_commit_is_answered_503_and_applies_in_full_when_redelivered() {
    let h = Harness::start().await;
    let pc = gtin("0950110153008");
    let delivery = Delivery {
        messages: vec![
            envelope(product(&pc, "Testomab 10 mg", 1)),
            envelope(batch_msg(&pc, "B1", &["DE"])),
            envelope(packs(&pc, "B1", &["S1"])),
        ],
    };

    h.store.fail_commits.store(1, Ordering::SeqCst);
    let resp = client(Some(&pki().hub))
        .post(format!("{}/internal/v1/messages", h.url))
        .json(&delivery)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert!(h.store.product(&p(&pc)).await.unwrap().is_none(), "nothing applied");

    let ack = h.hub.send(&h.url, &delivery).await;
    assert_eq!(statuses(&ack), ["APPLIED"; 3]);
    assert_eq!(h.store.pack_count().await.unwrap(), 1);
}
