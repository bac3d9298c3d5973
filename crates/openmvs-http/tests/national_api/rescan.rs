//! No alert that a scan error explains (fmd-rules §2). A code that Caps Lock, a keyboard-layout
//! mismatch or a lost group separator corrupted, and that matches a pack once the corruption is
//! undone, is answered with the corruption's warning and `NMVS_FE_SCN_01` (rescan): nothing
//! changes and no alert is raised, whether it came as a raw scan, as fields or in a bulk. The
//! same pack read cleanly is answered as before, and a failure no corruption explains alerts as
//! before, a code that merely looks corrupted included.

use openmvs_core::roles::Role;
use serde_json::{Value, json};

use crate::harness::*;

const RESCAN: &str = "NMVS_FE_SCN_01";

/// The codes of an answer's warnings.
fn warnings(r: &Resp) -> Vec<String> {
    r.json["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("warnings: {}", r.text))
        .iter()
        .map(|w| w["code"].as_str().expect("a code").to_owned())
        .collect()
}

/// A request carrying the element string of a pack with this batch and serial, without the
/// symbology identifier (Caps Lock would turn `]d2` into `]D2`, which the parser refuses).
fn scan_of(p: &Pack, batch: &str, serial: &str) -> Value {
    json!({"client_trx_id": trx(), "scan": format!("01{}17{}10{batch}\u{1d}21{serial}", p.product_code, p.expiry)})
}

/// Text with the case of every letter inverted, as Caps Lock types it.
fn caps(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_uppercase() { c.to_ascii_lowercase() } else { c.to_ascii_uppercase() })
        .collect()
}

/// Checks that the NMVO (who sees every alert of the market) and the pharmacy list no alert.
async fn no_alert_listed(app: &TestApp, pharmacy: &Client) {
    let nmvo = app.client(Role::Nmvo, "nmvo-office").await;
    assert_eq!(nmvo.all_alerts("").await, Vec::<Value>::new());
    assert_eq!(pharmacy.all_alerts("").await, Vec::<Value>::new());
}

/// Checks a rescan answer: the code, no alert, no pack, the warning named.
#[track_caller]
fn check_rescan(r: &Resp, warning: &str) {
    check(r, RESCAN, false, None, &[]);
    assert!(warnings(r).iter().any(|w| w == warning), "{warning} missing: {}", r.text);
    let message = r.json["warnings"].as_array().and_then(|w| w.iter().find(|w| w["code"] == warning));
    assert!(
        message.and_then(|m| m["message"].as_str()).is_some_and(|m| m.to_lowercase().contains("rescan")),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn a_caps_lock_scan_of_a_genuine_pack_asks_for_a_rescan_changes_nothing_and_raises_no_alert() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let caps_locked = scan_of(&p, &caps(&p.batch), &caps(&p.serial));
    check_rescan(&a.verify(&caps_locked).await, "LOWERCASE_FIELD");
    let supply = a.op("supply", &scan_of(&p, &caps(&p.batch), &caps(&p.serial))).await;
    check_rescan(&supply, "LOWERCASE_FIELD");
    assert_eq!(app.stored_state(&p).await, "ACTIVE");
    no_alert_listed(&app, &a).await;
    // The same pack scanned cleanly is answered as before.
    check(&a.verify(&scan_of(&p, &p.batch, &p.serial)).await, "NMVS_SUCCESS", true, Some("ACTIVE"), &[]);
    let supplied = a.op("supply", &scan_of(&p, &p.batch, &p.serial)).await;
    check(&supplied, "NMVS_SUCCESS", true, Some("SUPPLIED"), &[]);
    assert_eq!(warnings(&supplied), Vec::<String>::new());
    // Once supplied, a Caps Lock scan still asks for a rescan: the clean one reports the state.
    check_rescan(&a.verify(&scan_of(&p, &caps(&p.batch), &caps(&p.serial))).await, "LOWERCASE_FIELD");
    no_alert_listed(&app, &a).await;
}

#[tokio::test]
async fn a_clean_scan_of_an_unknown_serial_and_a_lower_case_code_no_pack_has_alert_as_before() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let unknown = Pack { serial: "NOSUCHSERIAL1".into(), ..p.clone() };
    let r = a.verify(&scan_of(&unknown, &unknown.batch, &unknown.serial)).await;
    check(&r, "NMVS_NC_PC_02", false, None, &[]);
    assert_eq!(warnings(&r), Vec::<String>::new());
    // Lower case, but in upper case no pack has it either: a falsified code looks like this too.
    let r = a.verify(&scan_of(&unknown, &caps(&unknown.batch), &caps(&unknown.serial))).await;
    check(&r, "NMVS_FE_LOT_03", false, None, &[]);
    assert_eq!(warnings(&r), ["LOWERCASE_FIELD", "LOWERCASE_FIELD"]);
    let nmvo = app.client(Role::Nmvo, "nmvo-office").await;
    let codes: Vec<Value> = nmvo.all_alerts("").await.iter().map(|x| x["code"].clone()).collect();
    assert_eq!(codes.len(), 2, "{codes:?}");
    assert!(codes.contains(&json!("A3")) && codes.contains(&json!("A2")), "{codes:?}");
}

#[tokio::test]
async fn a_keyboard_layout_swap_of_a_genuine_pack_asks_for_a_rescan() {
    let app = spawn_app().await;
    app.seed_product(GTIN).await;
    app.seed_batch(GTIN, "AZ/7", EXPIRY, &[DE]).await;
    app.seed_packs(GTIN, "AZ/7", &["Y4Z9".to_owned()]).await;
    let p = Pack {
        product_code: GTIN.into(),
        batch: "AZ/7".into(),
        expiry: EXPIRY.into(),
        serial: "Y4Z9".into(),
    };
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    // A scanner typing for a US keyboard on a computer set to German: Y and Z swap, '/' gives '-'.
    let swapped = a.op("supply", &scan_of(&p, "AY-7", "Z4Y9")).await;
    check_rescan(&swapped, "KEYBOARD_LAYOUT");
    assert!(swapped.text.contains("'AZ/7' and 'Y4Z9'"), "{}", swapped.text);
    assert_eq!(app.stored_state(&p).await, "ACTIVE");
    no_alert_listed(&app, &a).await;
    check(
        &a.op("supply", &scan_of(&p, &p.batch, &p.serial)).await,
        "NMVS_SUCCESS",
        true,
        Some("SUPPLIED"),
        &[],
    );
}

#[tokio::test]
async fn a_scan_whose_batch_swallowed_the_serial_after_a_lost_separator_asks_for_a_rescan() {
    let app = spawn_app().await;
    app.seed_standard().await;
    // A serial long enough for the parser to see a serial's shape in the batch (21 and six more).
    app.seed_packs(GTIN, BATCH, &["LOSTGSPACK".to_owned()]).await;
    let p = Pack {
        product_code: GTIN.into(),
        batch: BATCH.into(),
        expiry: EXPIRY.into(),
        serial: "LOSTGSPACK".into(),
    };
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    // The serial comes first; the GS after the batch is lost and the serial, repeated, runs into it.
    let lost_gs = json!({"client_trx_id": trx(), "scan": format!(
        "]d201{}17{}21{}\u{1d}10{}21{}", p.product_code, p.expiry, p.serial, p.batch, p.serial
    )});
    let r = a.verify(&lost_gs).await;
    check_rescan(&r, "BATCH_MAY_CONTAIN_SERIAL");
    assert_eq!(warnings(&r), ["BATCH_MAY_CONTAIN_SERIAL"], "the parser's warning, given once");
    no_alert_listed(&app, &a).await;
}

#[tokio::test]
async fn fields_sent_explicitly_get_the_same_decision_as_a_scan() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let lower = p.req_with(&[("batch", &caps(&p.batch)), ("serial", &caps(&p.serial))]);
    check_rescan(&a.op("supply", &lower).await, "LOWERCASE_FIELD");
    let batch_with_serial = format!("{}21{}", p.batch, p.serial);
    check_rescan(&a.verify(&p.req_with(&[("batch", &batch_with_serial)])).await, "BATCH_MAY_CONTAIN_SERIAL");
    let serial_with_expiry = format!("{}17{}", p.serial, p.expiry);
    check_rescan(&a.verify(&p.req_with(&[("serial", &serial_with_expiry)])).await, "SERIAL_MAY_CONTAIN_AI");
    assert_eq!(app.stored_state(&p).await, "ACTIVE");
    no_alert_listed(&app, &a).await;
    // Typed correctly, the pack is answered as always, and without warnings.
    let r = a.op("supply", &p.req()).await;
    check(&r, "NMVS_SUCCESS", true, Some("SUPPLIED"), &[]);
    assert_eq!(warnings(&r), Vec::<String>::new());
}

#[tokio::test]
async fn a_bulk_row_a_corruption_explains_asks_for_a_rescan_and_other_rows_alert_as_before() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let [p, q] = <[Pack; 2]>::try_from(app.packs(2).await).expect("two packs");
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let mut lower = p.row("supply");
    lower["batch"] = json!(caps(&p.batch));
    lower["serial"] = json!(caps(&p.serial));
    let unknown = Pack { serial: "NOSUCHSERIAL2".into(), ..q.clone() };
    let body =
        json!({"client_trx_id": trx(), "transactions": [lower, q.row("supply"), unknown.row("supply")]});
    let done = a.bulk_until_done(&body).await;
    let results = done["results"].as_array().expect("results");
    let summary: Vec<(Value, Value, Value)> = results
        .iter()
        .map(|r| (r["return_code"].clone(), r["accepted"].clone(), r["alert"]["code"].clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (json!(RESCAN), json!(false), Value::Null),
            (json!("NMVS_SUCCESS"), json!(true), Value::Null),
            (json!("NMVS_NC_PC_02"), json!(false), json!("A3")),
        ],
        "{done}"
    );
    assert_eq!(app.stored_state(&p).await, "ACTIVE");
    let nmvo = app.client(Role::Nmvo, "nmvo-office").await;
    let alerts = nmvo.all_alerts("").await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["serial"], unknown.serial.as_str());
}
