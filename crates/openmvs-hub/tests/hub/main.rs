//! The hub end to end: a real hub store, real national systems for DE and FR, and the relay
//! between them.

mod alerts;
mod harness;
mod national;
mod readiness;
mod restart;

use std::time::Duration;

use harness::*;
use openmvs_core::ids::{Batch, ProductCode};
use openmvs_core::return_code::ReturnCode;
use openmvs_hub::IterLines;
use openmvs_store::hub::{MarketDelivery, UploadStatus};

fn gtin() -> ProductCode {
    ProductCode::gtin(GTIN).unwrap()
}

fn fields(e: &openmvs_hub::ApiError) -> Vec<&str> {
    e.details.iter().map(|d| d.field.as_str()).collect()
}

fn markets(v: &openmvs_hub::UploadView) -> Vec<(String, MarketDelivery)> {
    v.markets.iter().map(|(mk, s)| (mk.to_string(), *s)).collect()
}

/// 25,000 serials `QZX00000000`... : a prefix found nowhere else, so that a search of the hub's
/// database for it finds serials and nothing else.
fn serials(from: u32, n: u32) -> Vec<String> {
    (from..from + n).map(|i| format!("QZX{i:08}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_master_data_fields_are_a16_and_empty_or_long_ones_are_i1_each_named() {
    let w = world().await;
    let mut raw = raw_product(&["DE"]);
    raw.name = None;
    raw.markets.as_mut().unwrap()[0].mah_address = None;
    raw.form = Some(String::new());
    let e = w.hub.put_product(OBP, GTIN, &raw).await.unwrap_err();
    assert_eq!((e.code, e.http_status()), (ReturnCode::MasterDataMissing, 422));
    assert_eq!(fields(&e), ["name", "form", "markets[0].mah.address"]);
    assert!(e.details[0].message.starts_with("A16") && e.details[1].message.starts_with("I1"), "{e:?}");

    let mut raw = raw_product(&["DE"]);
    raw.strength = Some("x".repeat(101));
    raw.markets.as_mut().unwrap()[0].national_code = Some("  ".into());
    let e = w.hub.put_product(OBP, GTIN, &raw).await.unwrap_err();
    assert_eq!((e.code, e.http_status()), (ReturnCode::MasterDataInvalid, 422));
    assert_eq!(fields(&e), ["strength", "markets[0].national_code"]);

    let e = w.hub.put_product(OBP, "09501101530004", &raw_product(&["DE"])).await.unwrap_err();
    assert_eq!((e.code, fields(&e)), (ReturnCode::MasterDataInvalid, vec!["product_code"]));
    assert!(w.hub_store_product().await.is_none(), "nothing refused is stored");
    assert_eq!(w.hub.store().pending().await.unwrap(), 0, "nothing refused is sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identical_upload_keeps_the_version_a_market_change_makes_version_two_and_batches_bind_to_theirs()
{
    let w = world().await;
    let v1 = w.hub.put_product(OBP, GTIN, &raw_product(&["DE"])).await.unwrap();
    assert_eq!((v1.product_code.as_str(), v1.version), (GTIN, 1));
    assert_eq!(w.hub.put_product(OBP, GTIN, &raw_product(&["DE"])).await.unwrap().version, 1);
    assert_eq!(w.hub.store().pending().await.unwrap(), 1, "a repeat sends nothing");
    let b1 = w.hub.put_batch(OBP, GTIN, "B1", EXPIRY, None).await.unwrap();
    assert_eq!((b1.version, b1.markets.clone()), (1, vec![m("DE")]));

    let v2 = w.hub.put_product(OBP, GTIN, &raw_product(&["DE", "FR"])).await.unwrap();
    assert_eq!(v2.version, 2);
    let b2 = w.hub.put_batch(OBP, GTIN, "B2", EXPIRY, None).await.unwrap();
    assert_eq!((b2.version, b2.markets), (2, vec![m("DE"), m("FR")]));
    let stored =
        async |b: &str| w.hub.store().batch(&gtin(), &Batch::new(b).unwrap()).await.unwrap().unwrap();
    assert_eq!((stored("B1").await.product_version, stored("B1").await.markets), (1, vec![m("DE")]));
    assert_eq!(stored("B2").await.product_version, 2);
    assert_eq!(w.hub.store().product(&gtin()).await.unwrap().unwrap().current_version, 2);

    w.relay_all().await;
    assert_eq!(w.link.kinds("DE"), ["product", "batch", "product", "batch"]);
    assert_eq!(w.link.kinds("FR"), ["product", "batch"], "FR hears only of version 2 and its batch");
    let fr = w.national("FR").store().product(&gtin()).await.unwrap().unwrap();
    assert_eq!((fr.version, fr.owner.as_str()), (2, OBP));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_obp_touching_a_product_gets_403_and_cannot_see_its_uploads() {
    let w = world().await;
    w.product_and_batch(&["DE"]).await;
    let up = w.upload(serials(0, 3)).await;
    let forbidden = |e: openmvs_hub::ApiError| (e.code, e.http_status());
    let f = (ReturnCode::Forbidden, 403);
    assert_eq!(forbidden(w.hub.put_product(OTHER_OBP, GTIN, &raw_product(&["DE"])).await.unwrap_err()), f);
    assert_eq!(forbidden(w.hub.put_batch(OTHER_OBP, GTIN, "B9", EXPIRY, None).await.unwrap_err()), f);
    let lines = IterLines(serials(100, 1).into_iter());
    assert_eq!(forbidden(w.hub.upload_serials(OTHER_OBP, GTIN, BATCH, lines).await.unwrap_err()), f);
    let de = vec!["DE".to_owned()];
    assert_eq!(forbidden(w.hub.recall(OTHER_OBP, GTIN, BATCH, "x", &de).await.unwrap_err()), f);
    assert_eq!(forbidden(w.hub.withdraw(OTHER_OBP, GTIN, "x", &de).await.unwrap_err()), f);
    assert_eq!(
        forbidden(w.hub.put_product("obp-unknown", GTIN, &raw_product(&["DE"])).await.unwrap_err()),
        f
    );
    let e = w.hub.upload(OTHER_OBP, up.upload_id.as_str()).await.unwrap_err();
    assert_eq!((e.code, e.http_status()), (ReturnCode::NotFound, 404));
    assert!(w.hub.upload(OBP, up.upload_id.as_str()).await.is_ok());
    // Refusals are audited, under the OBP that was refused.
    let trail = w.hub.store().audit_by_subject(&format!("GTIN/{GTIN}")).await.unwrap();
    assert!(trail.iter().any(|r| r.entry.actor == OTHER_OBP && r.entry.return_code == "NMVS_FE_AU_04"));
    assert_eq!(w.hub.store().product(&gtin()).await.unwrap().unwrap().owner, OBP);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_an_obp_again_is_idempotent_and_a_bad_id_is_refused() {
    let w = world().await;
    let again = w.hub.register_obp(OBP, "Another name").await.unwrap();
    assert_eq!(again.name, "One Pharma GmbH", "the first registration stays");
    for bad in ["", "Upper", "-lead", "trail-", "under_score", &"a".repeat(41)] {
        let e = w.hub.register_obp(bad, "x").await.unwrap_err();
        assert_eq!((e.code, e.http_status()), (ReturnCode::MalformedRequest, 400), "{bad}");
    }
    assert!(w.hub.register_obp(&"a".repeat(40), "Forty").await.is_ok());
    assert_eq!(w.hub.store().obps().await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_markets_must_be_target_markets_and_a_batch_changes_never() {
    let w = world().await;
    w.hub.put_product(OBP, GTIN, &raw_product(&["DE"])).await.unwrap();
    let e =
        w.hub.put_batch(OBP, GTIN, BATCH, EXPIRY, Some(vec!["DE".into(), "FR".into()])).await.unwrap_err();
    assert_eq!((e.code, e.http_status(), fields(&e)), (ReturnCode::MasterDataInvalid, 422, vec!["markets"]));
    let e = w.hub.put_batch(OBP, GTIN, BATCH, "271340", None).await.unwrap_err();
    assert_eq!((e.http_status(), fields(&e)), (400, vec!["expiry"]));
    let first = w.hub.put_batch(OBP, GTIN, BATCH, EXPIRY, Some(vec!["DE".into()])).await.unwrap();
    let again = w.hub.put_batch(OBP, GTIN, BATCH, EXPIRY, None).await.unwrap();
    assert_eq!(first, again, "the same batch again is idempotent");
    assert_eq!(w.hub.store().pending().await.unwrap(), 2, "product and one batch message");
    let e = w.hub.put_batch(OBP, GTIN, BATCH, "281231", None).await.unwrap_err();
    assert_eq!((e.http_status(), fields(&e)), (409, vec!["batch"]));
    let e = w.hub.put_batch(OBP, "05601234567892", BATCH, EXPIRY, None).await.unwrap_err();
    assert_eq!(e.http_status(), 404, "an unknown product");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_of_25000_serials_rejects_bad_lines_by_number_and_reaches_de_and_fr_leaving_no_serial_at_the_hub()
 {
    let w = world().await;
    w.product_and_batch(&["DE", "FR"]).await;
    let mut lines = serials(0, 25_000);
    // Lines are numbered from 1; each insert shifts what follows.
    lines.insert(6, lines[2].clone()); // line 7 repeats line 3
    lines.insert(11_999, "QZX#BAD".into()); // line 12,000: '#' is not in set 82
    lines.insert(20_000, "QZX123456789012345678".into()); // line 20,001: 21 characters
    lines.push(String::new()); // empty lines at the very end are not lines
    lines.push(String::new());
    let up = w.upload(lines).await;
    assert_eq!(up.received, 25_003);

    let v = w.hub.upload(OBP, up.upload_id.as_str()).await.unwrap();
    assert_eq!((v.status, v.received, v.rejected_count), (UploadStatus::Validated, 25_003, 3));
    let rejected: Vec<(u64, &str)> = v.rejected.iter().map(|r| (r.line, r.serial.as_str())).collect();
    assert_eq!(rejected, [(7, "QZX00000002"), (12_000, "QZX#BAD"), (20_001, "QZX123456789012345678")]);
    assert!(v.rejected[0].reason.contains("line 3"), "{:?}", v.rejected[0]);
    assert!(v.rejected[1].reason.contains("not a serial"), "{:?}", v.rejected[1]);
    assert_eq!(markets(&v), [("DE".into(), MarketDelivery::Pending), ("FR".into(), MarketDelivery::Pending)]);
    assert!(
        !w.hub_text_containing("QZX00024999").is_empty(),
        "before delivery, the chunks carry the serials"
    );
    assert_eq!(w.hub.store().digest_count(&gtin()).await.unwrap(), 25_000);

    w.relay_all().await;
    let v = w.hub.upload(OBP, up.upload_id.as_str()).await.unwrap();
    assert_eq!(v.status, UploadStatus::Distributed);
    assert_eq!(
        markets(&v),
        [("DE".into(), MarketDelivery::Distributed), ("FR".into(), MarketDelivery::Distributed)]
    );
    for market in ["DE", "FR"] {
        assert_eq!(w.link.kinds(market), ["product", "batch", "packs", "packs", "packs"], "{market}");
        assert_eq!(w.national(market).store().pack_count().await.unwrap(), 25_000, "{market}");
        assert_eq!(w.verify(market, "QZX00012345").await, "NMVS_SUCCESS", "{market}");
        assert_eq!(w.supply(market, "QZX00000000").await, "NMVS_SUCCESS", "{market}");
    }
    let left = w.hub_text_containing("QZX");
    assert!(left.is_empty(), "serials left at the hub: {left:?}");

    // The same serial in a later upload is a repeat; a new one is not.
    let later = w.upload(vec!["QZX00012345".into(), "QZX99999999".into()]).await;
    let v = w.hub.upload(OBP, later.upload_id.as_str()).await.unwrap();
    assert_eq!((v.received, v.rejected_count), (2, 1));
    assert_eq!((v.rejected[0].line, v.rejected[0].reason.contains("uploaded before")), (1, true));
    w.relay_all().await;
    assert_eq!(w.national("FR").store().pack_count().await.unwrap(), 25_001);
    assert_eq!(w.hub.upload(OBP, later.upload_id.as_str()).await.unwrap().status, UploadStatus::Distributed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_market_that_is_down_gets_its_whole_backlog_once_and_in_order_when_it_returns() {
    let w = world_with(10).await;
    w.link.set_down("FR", true);
    w.product_and_batch(&["DE", "FR"]).await;
    let up = w.upload(serials(0, 25)).await;
    w.relay_all().await;
    let v = w.hub.upload(OBP, up.upload_id.as_str()).await.unwrap();
    assert_eq!(v.status, UploadStatus::Validated);
    assert_eq!(
        markets(&v),
        [("DE".into(), MarketDelivery::Distributed), ("FR".into(), MarketDelivery::Pending)]
    );
    assert_eq!(w.link.kinds("DE"), ["product", "batch", "packs", "packs", "packs"]);
    assert!(w.link.seen("FR").is_empty());

    w.link.set_down("FR", false);
    assert_eq!(w.hub.relay_once().await.unwrap(), 0, "FR waits for its backoff");
    assert!(w.link.seen("FR").is_empty());
    w.advance(Duration::from_secs(2));
    w.relay_all().await;
    let fr = w.link.seen("FR");
    assert_eq!(
        fr.iter().map(|s| s.kind.as_str()).collect::<Vec<_>>(),
        ["product", "batch", "packs", "packs", "packs"]
    );
    assert!(fr.iter().all(|s| s.status == "APPLIED"), "each message once: {fr:?}");
    assert_eq!(w.link.kinds("DE").len(), 5, "DE got nothing twice");
    assert_eq!(w.national("FR").store().pack_count().await.unwrap(), 25);
    let v = w.hub.upload(OBP, up.upload_id.as_str()).await.unwrap();
    assert_eq!(v.status, UploadStatus::Distributed);
    assert_eq!(w.hub.store().pending().await.unwrap(), 0);
    assert_eq!(w.verify("FR", "QZX00000024").await, "NMVS_SUCCESS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recall_reaches_only_the_named_market() {
    let w = world().await;
    w.product_and_batch(&["DE", "FR"]).await;
    w.upload(serials(0, 2)).await;
    w.relay_all().await;
    let e = w.hub.recall(OBP, GTIN, BATCH, "contamination", &["SE".to_owned()]).await.unwrap_err();
    assert_eq!((e.http_status(), fields(&e)), (422, vec!["markets"]));
    let r = w.hub.recall(OBP, GTIN, BATCH, "contamination", &["DE".to_owned()]).await.unwrap();
    assert_eq!(r.recalled, [m("DE")]);
    w.relay_all().await;
    assert_eq!(w.link.kinds("DE").last().map(String::as_str), Some("recall"));
    assert!(!w.link.kinds("FR").contains(&"recall".to_owned()));
    assert_eq!(w.supply("DE", "QZX00000000").await, ReturnCode::BatchRecalled.as_str());
    assert_eq!(w.supply("FR", "QZX00000000").await, "NMVS_SUCCESS");
    // Irreversible and idempotent: recalling DE again sends nothing more.
    let again = w.hub.recall(OBP, GTIN, BATCH, "contamination", &["DE".to_owned()]).await.unwrap();
    assert_eq!(again.recalled, [m("DE")]);
    assert_eq!(w.hub.store().pending().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_product_takes_no_new_batch_for_that_market() {
    let w = world().await;
    w.product_and_batch(&["DE", "FR"]).await;
    let wd = w.hub.withdraw(OBP, GTIN, "marketing authorisation ended", &["FR".to_owned()]).await.unwrap();
    assert_eq!(wd.withdrawn, [m("FR")]);
    let e = w.hub.put_batch(OBP, GTIN, "B2", EXPIRY, Some(vec!["FR".into()])).await.unwrap_err();
    // Not "empty or too long" (I1): the product's state refuses it, and the answer says so.
    assert_eq!(
        (e.code.as_str(), e.http_status(), fields(&e)),
        ("HUB_PRODUCT_WITHDRAWN", 409, vec!["markets"])
    );
    assert!(e.details[0].message.contains("withdrawn from FR"), "{e:?}");
    let b = w.hub.put_batch(OBP, GTIN, "B3", EXPIRY, None).await.unwrap();
    assert_eq!(b.markets, [m("DE")], "the default leaves the withdrawn market out");
    w.relay_all().await;
    assert_eq!(w.link.kinds("FR"), ["product", "batch", "withdrawal"]);
    assert!(w.national("FR").store().product(&gtin()).await.unwrap().unwrap().withdrawn);
    assert!(!w.national("DE").store().product(&gtin()).await.unwrap().unwrap().withdrawn);
    // A new version of the master data does not undo the withdrawal.
    let mut raw = raw_product(&["DE", "FR"]);
    raw.name = Some("Examplomab 10 mg film-coated tablets".into());
    assert_eq!(w.hub.put_product(OBP, GTIN, &raw).await.unwrap().version, 2);
    assert_eq!(w.hub.store().product(&gtin()).await.unwrap().unwrap().withdrawn, [m("FR")]);
}

impl World {
    async fn hub_store_product(&self) -> Option<openmvs_store::hub::HubProductRecord> {
        self.hub.store().product(&gtin()).await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_line_inside_an_upload_is_rejected_but_empty_lines_at_the_end_are_not_lines() {
    let w = world().await;
    w.product_and_batch(&["DE"]).await;
    let lines = ["QZX1", "", "", "QZX2", "", ""].map(String::from).to_vec();
    let up = w.upload(lines).await;
    assert_eq!(up.received, 4);
    let v = w.hub.upload(OBP, up.upload_id.as_str()).await.unwrap();
    let rejected: Vec<u64> = v.rejected.iter().map(|r| r.line).collect();
    assert_eq!(rejected, [2, 3]);
    assert_eq!(w.hub.store().digest_count(&gtin()).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_breaks_off_fails_the_upload_and_keeps_the_chunks_already_durable() {
    let w = world_with(10).await;
    w.product_and_batch(&["DE"]).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let feeder = tokio::spawn(async move {
        for s in serials(0, 15) {
            tx.send(Ok(s)).await.unwrap();
        }
        tx.send(Err("connection reset".to_owned())).await.unwrap();
    });
    let e = w.hub.upload_serials(OBP, GTIN, BATCH, rx).await.unwrap_err();
    feeder.await.unwrap();
    assert_eq!((e.http_status(), fields(&e)), (400, vec!["body"]));
    assert_eq!(w.hub.store().digest_count(&gtin()).await.unwrap(), 10, "the first chunk was durable");
    assert!(w.hub.store().unfinished_uploads(10).await.unwrap().is_empty(), "the upload ended as FAILED");
    w.relay_all().await;
    assert_eq!(w.national("DE").store().pack_count().await.unwrap(), 10);
}
