//! Single-pack requests: every return code a processed request carries (api.md §2, fmd-rules §4).

use openmvs_core::roles::Role;
use serde_json::json;

use crate::harness::*;

/// Runs one step such as `A supply`, `B supply-undo` or `A verify serial=? batch=NOBATCH` on
/// `p`: who (pharmacy A or B, at different locations), the command in the bulk spelling, then
/// fields to replace (`?` stands for a serial never uploaded).
async fn step(a: &Client, b: &Client, p: &Pack, s: &str) -> Resp {
    let mut words = s.split_whitespace();
    let who = match words.next() {
        Some("A") => a,
        Some("B") => b,
        w => panic!("step '{s}': unknown actor {w:?}"),
    };
    let command = words.next().unwrap_or_else(|| panic!("step '{s}': no command"));
    let mut body = p.req();
    for w in words {
        let (k, v) = w.split_once('=').unwrap_or_else(|| panic!("step '{s}': '{w}' is not key=value"));
        body[k] = json!(if v == "?" { fresh_serial() } else { v.to_owned() });
    }
    who.command(command, &body).await
}

/// (what, steps before on a fresh pack, the request checked, code, accepted, state after)
type Case<'a> = (&'a str, &'a str, &'a str, &'a str, bool, Option<&'a str>);

#[tokio::test]
async fn each_outcome_of_the_contract_is_reached_through_the_api_with_its_level_and_alert() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let b = app.client(Role::Pharmacy, "pharmacy-b").await;
    #[rustfmt::skip]
    let cases: &[Case] = &[
        ("verify of an active pack", "", "A verify", "NMVS_SUCCESS", true, Some("ACTIVE")),
        ("supply of an active pack", "", "A supply", "NMVS_SUCCESS", true, Some("SUPPLIED")),
        ("unknown serial, known batch", "", "A verify serial=?", "NMVS_NC_PC_02", false, None),
        ("unknown serial and batch", "", "A verify serial=? batch=NOBATCH", "NMVS_FE_LOT_03", false, None),
        ("supply of an unknown serial", "", "A supply serial=?", "NMVS_NC_PC_02", false, None),
        ("serial under another batch", "", "A verify batch=OTHER1", "NMVS_FE_LOT_13", false, None),
        ("supply under another batch", "", "A supply batch=OTHER1", "NMVS_FE_LOT_13", false, None),
        ("expiry another month", "", "A verify expiry=271130", "NMVS_FE_LOT_12", false, None),
        ("expiry one day off", "", "A verify expiry=271230", "NMVS_FE_LOT_12", false, None),
        ("expiry day 00 of the month", "", "A verify expiry=271200", "NMVS_SUCCESS", true, Some("ACTIVE")),
        ("unknown product code", "", "A verify product_code=04150037528643", "NMVS_NC_PC_01", false, None),
        ("destroy of a supplied pack", "A supply", "A destroy", "NMVS_NC_PCK_22", false, Some("SUPPLIED")),
        ("supply elsewhere of a supplied pack", "A supply", "B supply", "NMVS_NC_PCK_22", false, Some("SUPPLIED")),
        ("first repeat", "A supply", "A supply", "NMVS_NC_PCK_23", false, Some("SUPPLIED")),
        ("second repeat", "A supply; A supply", "A supply", "NMVS_NC_PCK_23", false, Some("SUPPLIED")),
        ("third repeat", "A supply; A supply; A supply", "A supply", "NMVS_NC_PCK_22", false, Some("SUPPLIED")),
        ("undo naming another state", "A supply", "A lock-undo", "NMVS_NC_PCK_06", false, Some("SUPPLIED")),
        ("undo of an active pack", "", "A supply-undo", "NMVS_NC_PCK_06", false, Some("ACTIVE")),
        ("undo from another location", "A supply", "B supply-undo", "NMVS_NC_PCK_21", false, Some("SUPPLIED")),
        ("undo from the same location", "A supply", "A supply-undo", "NMVS_SUCCESS", true, Some("ACTIVE")),
        ("verify of a supplied pack", "A supply", "A verify", "NMVS_INFO_PCK_INACTIVE", true, Some("SUPPLIED")),
        ("verify elsewhere of a locked pack", "A lock", "B verify", "NMVS_INFO_PCK_INACTIVE", true, Some("LOCKED")),
    ];
    for &(what, before, last, code, accepted, state) in cases {
        let p = app.pack().await;
        for s in before.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let r = step(&a, &b, &p, s).await;
            assert_eq!(r.status, 200, "{what}: step '{s}': {}", r.text);
        }
        let r = step(&a, &b, &p, last).await;
        eprintln!("case: {what}");
        check(&r, code, accepted, state, &[]);
        assert_eq!(r.json["warnings"], json!([]), "{what}: no scan, no warnings");
    }
}

#[tokio::test]
async fn an_answer_echoes_the_client_trx_id_the_product_and_the_expiry_as_printed() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let body = p.req_with(&[("expiry", "271200"), ("client_trx_id", "pos7-000123")]);
    let r = a.verify(&body).await;
    check(&r, "NMVS_SUCCESS", true, Some("ACTIVE"), &[]);
    assert_eq!(r.json["client_trx_id"], "pos7-000123");
    assert_eq!(
        r.json["pack"],
        json!({"scheme": "GTIN", "product_code": GTIN, "serial": p.serial, "batch": BATCH,
               "expiry": "271200", "state": "ACTIVE", "reasons": [], "dispensable": true})
    );
    assert_eq!(
        r.json["product"],
        json!({"name": PRODUCT_NAME, "common_name": "paracetamol", "strength": "500 mg",
               "form": "tablet", "pack_size": "20"})
    );
}

#[tokio::test]
async fn an_unknown_product_code_without_a_hub_is_level_3_and_stores_no_alert() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let nmvo = app.client(Role::Nmvo, "nmvo-office").await;
    let p = Pack { product_code: GTIN_UNKNOWN.into(), ..app.pack().await };
    for op in ["verify", "supply"] {
        check(&a.op(op, &p.req()).await, "NMVS_NC_PC_01", false, None, &[]);
    }
    assert_eq!(nmvo.all_alerts("").await, Vec::<serde_json::Value>::new());
}

#[tokio::test]
async fn a_pack_whose_batch_expires_verifies_with_the_reason_and_refuses_changes_without_alert() {
    let app = spawn_app().await;
    app.seed_product(GTIN).await;
    app.seed_batch(GTIN, "EXP261231", "261231", &[DE]).await;
    let p = app.packs_of(GTIN, "EXP261231", "261231", 1).await.remove(0);
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    check(&a.verify(&p.req()).await, "NMVS_SUCCESS", true, Some("ACTIVE"), &[]);
    // On 2026-12-31 the pack is still usable; from 2027-01-01 it is expired.
    app.advance_hours(32 * 24);
    check(&a.verify(&p.req()).await, "NMVS_SUCCESS", true, Some("ACTIVE"), &[]);
    app.advance_hours(24);
    check(&a.verify(&p.req()).await, "NMVS_NC_PCK_02", true, Some("ACTIVE"), &["EXPIRED"]);
    check(&a.op("supply", &p.req()).await, "NMVS_NC_PCK_02", false, Some("ACTIVE"), &["EXPIRED"]);
    assert_eq!(app.stored_state(&p).await, "ACTIVE");
}

#[tokio::test]
async fn a_recalled_batch_verifies_with_the_reason_and_refuses_changes_and_undo_without_alert() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let [active, supplied] = <[Pack; 2]>::try_from(app.packs(2).await).expect("two packs");
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    check(&a.op("supply", &supplied.req()).await, "NMVS_SUCCESS", true, Some("SUPPLIED"), &[]);
    app.recall(GTIN, BATCH).await;
    check(&a.verify(&active.req()).await, "NMVS_FE_LOT_01", true, Some("ACTIVE"), &["RECALLED"]);
    check(&a.op("supply", &active.req()).await, "NMVS_FE_LOT_01", false, Some("ACTIVE"), &["RECALLED"]);
    check(&a.undo("supply", &supplied.req()).await, "NMVS_FE_LOT_01", false, Some("SUPPLIED"), &["RECALLED"]);
    assert_eq!(
        (app.stored_state(&active).await, app.stored_state(&supplied).await),
        ("ACTIVE".into(), "SUPPLIED".into())
    );
}

#[tokio::test]
async fn a_withdrawn_product_verifies_with_the_reason_and_refuses_changes_without_alert() {
    let app = spawn_app().await;
    app.seed_standard().await;
    app.seed_product(GTIN2).await;
    app.seed_batch(GTIN2, "W1", EXPIRY, &[DE]).await;
    let p = app.packs_of(GTIN2, "W1", EXPIRY, 1).await.remove(0);
    let other = app.pack().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    app.withdraw(GTIN2).await;
    check(&a.verify(&p.req()).await, "NMVS_FE_LOT_08", true, Some("ACTIVE"), &["WITHDRAWN"]);
    check(&a.op("lock", &p.req()).await, "NMVS_FE_LOT_08", false, Some("ACTIVE"), &["WITHDRAWN"]);
    // Only the product named is withdrawn.
    check(&a.op("supply", &other.req()).await, "NMVS_SUCCESS", true, Some("SUPPLIED"), &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packs_message_larger_than_one_unit_of_work_creates_each_pack_once_and_applies_once() {
    use openmvs_wire::hub::{Delivery, Envelope, Message, PacksMsg};
    let app = spawn_app().await;
    app.seed_standard().await;
    let n = 2 * openmvs_national::PACKS_PER_UNIT + 7;
    let serials: Vec<String> = (0..n).map(|_| fresh_serial()).collect();
    let env = Envelope {
        message_id: "big-packs-message".into(),
        origin: "hub".into(),
        ordering_key: GTIN.into(),
        body: Message::Packs(PacksMsg {
            scheme: "GTIN".into(),
            product_code: GTIN.into(),
            batch: BATCH.into(),
            serials: serials.clone(),
        }),
    };
    let before = app.store.pack_count().await.expect("count");
    let first =
        app.national.apply_delivery(&Delivery { messages: vec![env.clone()] }).await.expect("applied");
    assert_eq!(first.results[0].status, "APPLIED");
    assert_eq!(app.store.pack_count().await.expect("count"), before + n as u64, "every serial, once");
    let again = app.national.apply_delivery(&Delivery { messages: vec![env] }).await.expect("answered");
    assert_eq!(again.results[0].status, "DUPLICATE", "the message applies once");
    assert_eq!(app.store.pack_count().await.expect("count"), before + n as u64);
    let c = app.client(Role::Pharmacy, "pharmacy-a").await;
    for i in [0, openmvs_national::PACKS_PER_UNIT, n - 1] {
        let p = Pack {
            product_code: GTIN.into(),
            batch: BATCH.into(),
            expiry: EXPIRY.into(),
            serial: serials[i].clone(),
        };
        check(&c.verify(&p.req()).await, "NMVS_SUCCESS", true, Some("ACTIVE"), &[]);
    }
}
