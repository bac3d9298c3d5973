//! Raw scans in single-pack requests: the same answer as the fields, scan warnings, and refusals.

use openmvs_core::roles::Role;
use serde_json::{Value, json};

use crate::harness::*;

/// The serial of the scan test vectors V1, V6 and V7.
const V1_SERIAL: &str = "X4K9P7Q2M8R5";

/// An answer without the ids that differ between two requests.
fn comparable(r: &Resp) -> Value {
    let mut v = r.json.clone();
    for id in ["trx_id", "client_trx_id"] {
        v.as_object_mut().expect("an object").remove(id);
    }
    v
}

#[tokio::test]
async fn each_scanner_form_of_a_pack_gets_the_same_answer_as_its_fields() {
    let app = spawn_app().await;
    app.seed_standard().await;
    app.seed_packs(GTIN, BATCH, &[V1_SERIAL.to_owned()]).await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let p = Pack {
        product_code: GTIN.into(),
        batch: BATCH.into(),
        expiry: EXPIRY.into(),
        serial: V1_SERIAL.into(),
    };
    let by_fields = a.verify(&p.req()).await;
    check(&by_fields, "NMVS_SUCCESS", true, Some("ACTIVE"), &[]);
    let forms = [
        ("V1 element string", "]d201095011015300031727123110ABC123\u{1d}21X4K9P7Q2M8R5"),
        ("V1 with a trailing CR", "]d201095011015300031727123110ABC123\u{1d}21X4K9P7Q2M8R5\r"),
        ("V6 bracket form", "(01)09501101530003(17)271231(10)ABC123(21)X4K9P7Q2M8R5"),
        (
            "V7-style Digital Link",
            "https://id.example.org/01/09501101530003/10/ABC123/21/X4K9P7Q2M8R5?17=271231",
        ),
    ];
    for (what, scan) in forms {
        let r = a.verify(&json!({"client_trx_id": trx(), "scan": scan, "entry_mode": "SCANNED"})).await;
        assert_eq!(comparable(&r), comparable(&by_fields), "{what}: {}", r.text);
    }
    // A state change by scan is a state change of the same pack.
    let supplied = a.op("supply", &json!({"client_trx_id": trx(), "scan": forms[0].1})).await;
    check(&supplied, "NMVS_SUCCESS", true, Some("SUPPLIED"), &[]);
    check(&a.verify(&p.req()).await, "NMVS_INFO_PCK_INACTIVE", true, Some("SUPPLIED"), &[]);
}

#[tokio::test]
async fn a_scan_with_a_lower_case_only_batch_carries_a_lowercase_field_warning() {
    let app = spawn_app().await;
    app.seed_product(GTIN).await;
    app.seed_batch(GTIN, "abc123", EXPIRY, &[DE]).await;
    let p = app.packs_of(GTIN, "abc123", EXPIRY, 1).await.remove(0);
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let r = a.verify(&p.scan_req()).await;
    check(&r, "NMVS_SUCCESS", true, Some("ACTIVE"), &[]);
    let warnings = r.json["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{}", r.text);
    assert_eq!(warnings[0]["code"], "LOWERCASE_FIELD");
    assert!(warnings[0]["message"].as_str().is_some_and(|m| m.contains("abc123")), "{}", r.text);
    // Typed fields are not a scan: no scan warnings.
    assert_eq!(a.verify(&p.req()).await.json["warnings"], json!([]));
}

#[tokio::test]
async fn a_scan_that_lost_its_group_separator_is_refused_naming_scan_and_changes_nothing() {
    let app = spawn_app().await;
    app.seed_standard().await;
    app.seed_packs(GTIN, BATCH, &[V1_SERIAL.to_owned()]).await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    // Test vector V9: the batch swallows `21X4K9...` and no serial remains.
    let v9 = "]d201095011015300031727123110ABC12321X4K9P7Q2M8R5";
    let r = a.op("supply", &json!({"client_trx_id": trx(), "scan": v9})).await;
    r.expect_error(400, "NMVS_TE_XM_02", Some("scan"));
    let p = Pack {
        product_code: GTIN.into(),
        batch: BATCH.into(),
        expiry: EXPIRY.into(),
        serial: V1_SERIAL.into(),
    };
    assert_eq!(app.stored_state(&p).await, "ACTIVE");
}
