//! Authority access to a pack's audit trail (fmd-rules §4.6): every request about the pack, in
//! order, with the raw scan, refusals included, and the authorities' own reads.

use std::time::Duration;

use openmvs_core::roles::Role;
use serde_json::{Value, json};

use crate::harness::*;

/// The records of a pack's trail as `reader` gets them, what the hub delivered about it included.
async fn full_trail(reader: &Client, p: &Pack) -> Vec<Value> {
    let r = reader.get(&p.audit_path()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["records"].as_array().expect("records").clone()
}

/// The records of the requests about a pack made at this market (its trail without what the hub
/// delivered about it: see `authorities_search_the_trail_and_export_what_they_found`).
async fn trail(reader: &Client, p: &Pack) -> Vec<Value> {
    full_trail(reader, p).await.into_iter().filter(|r| r["role"] != "HUB").collect()
}

fn column<'a>(records: &'a [Value], key: &str) -> Vec<&'a Value> {
    records.iter().map(|r| &r[key]).collect()
}

#[tokio::test]
async fn authorities_read_a_packs_trail_in_order_with_the_raw_scan_refusals_and_their_own_reads() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let nca = app.client(Role::Nca, "nca-office").await;
    let nmvo = app.client(Role::Nmvo, "nmvo-office").await;
    let verified = a.verify(&p.scan_req()).await;
    check(&verified, "NMVS_SUCCESS", true, Some("ACTIVE"), &[]);
    app.advance(Duration::from_secs(60));
    let supplied = a.op("supply", &p.req()).await;
    check(&supplied, "NMVS_SUCCESS", true, Some("SUPPLIED"), &[]);
    app.advance(Duration::from_secs(60));
    a.op("export", &p.req()).await.expect_error(403, "NMVS_FE_AU_04", None);

    let records = trail(&nca, &p).await;
    assert_eq!(column(&records, "operation"), [&json!("verify"), &json!("supply"), &json!("export")]);
    assert_eq!(
        column(&records, "return_code"),
        [&json!("NMVS_SUCCESS"), &json!("NMVS_SUCCESS"), &json!("NMVS_FE_AU_04")]
    );
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().expect("seq")).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(
        column(&records, "at"),
        [&json!(START), &json!("2026-11-29T10:01:00.000Z"), &json!("2026-11-29T10:02:00.000Z")]
    );
    for r in &records {
        assert_eq!(
            (&r["actor"], &r["role"], &r["location"]),
            (&json!(a.client_id), &json!("PHARMACY"), &json!("pharmacy-a"))
        );
    }
    assert_eq!(records[0]["request"]["scan"], p.scan(), "the raw scan is kept");
    assert_eq!(records[0]["result"]["trx_id"], verified.json["trx_id"]);
    assert_eq!(
        (&records[1]["request"]["serial"], &records[1]["request"]["scan"]),
        (&json!(p.serial), &Value::Null)
    );
    // The trail keeps the outcome of the answer, not the product master data it echoed.
    let outcome = &records[1]["result"];
    assert_eq!(
        (
            &outcome["trx_id"],
            &outcome["accepted"],
            &outcome["return_code"],
            &outcome["state"],
            &outcome["alert"]
        ),
        (&supplied.json["trx_id"], &json!(true), &json!("NMVS_SUCCESS"), &json!("SUPPLIED"), &Value::Null)
    );
    assert_eq!(records[2]["result"]["return_code"], "NMVS_FE_AU_04");

    // The NCA's read is itself in the trail the NMVO reads next, and a refused read in the next one.
    let after_nca = trail(&nmvo, &p).await;
    assert_eq!(after_nca.len(), 4, "{after_nca:?}");
    let read = &after_nca[3];
    assert_eq!(
        (&read["operation"], &read["actor"], &read["role"], &read["location"], &read["return_code"]),
        (
            &json!("audit-read"),
            &json!(nca.client_id),
            &json!("NCA"),
            &json!("nca-office"),
            &json!("NMVS_SUCCESS")
        )
    );
    assert_eq!(&after_nca[..3], &records[..]);
    a.get(&p.audit_path()).await.expect_error(403, "NMVS_FE_AU_04", Some("role"));
    let last = trail(&nca, &p).await;
    let tail: Vec<(&Value, &Value, &Value)> =
        last[4..].iter().map(|r| (&r["operation"], &r["role"], &r["return_code"])).collect();
    assert_eq!(
        tail,
        [
            (&json!("audit-read"), &json!("NMVO"), &json!("NMVS_SUCCESS")),
            (&json!("audit-read"), &json!("PHARMACY"), &json!("NMVS_FE_AU_04")),
        ]
    );
}

#[tokio::test]
async fn a_malformed_request_about_a_known_pack_is_in_that_packs_trail() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let nca = app.client(Role::Nca, "nca-office").await;
    let bad_expiry = p.req_with(&[("expiry", "271301")]);
    a.op("supply", &bad_expiry).await.expect_error(400, "NMVS_TE_XM_02", Some("expiry"));
    let bad_mode = p.req_with(&[("entry_mode", "KEYED")]);
    a.op("supply", &bad_mode).await.expect_error(400, "NMVS_TE_XM_02", Some("entry_mode"));
    let records = trail(&nca, &p).await;
    let refusals: Vec<(&Value, &Value)> =
        records.iter().map(|r| (&r["operation"], &r["return_code"])).collect();
    assert_eq!(
        refusals,
        [(&json!("supply"), &json!("NMVS_TE_XM_02")), (&json!("supply"), &json!("NMVS_TE_XM_02"))],
        "a refusal naming a readable pack identifier is part of that pack's trail"
    );
    assert_eq!(records[0]["request"]["expiry"], "271301");
}

#[tokio::test]
async fn the_trail_of_a_pack_is_the_same_whichever_spelling_of_its_gtin_the_authority_uses() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let nca = app.client(Role::Nca, "nca-office").await;
    // A terminal may send the 13-digit GTIN-13; it is the same product code, padded to 14 digits.
    let short = Pack { product_code: GTIN[1..].to_owned(), ..p.clone() };
    check(&a.op("supply", &short.req()).await, "NMVS_SUCCESS", true, Some("SUPPLIED"), &[]);
    let by_short = trail(&nca, &short).await;
    let ops: Vec<&Value> = column(&by_short, "operation");
    assert_eq!(ops, [&json!("supply")], "{by_short:?}");
    let by_full = trail(&nca, &p).await;
    assert_eq!(column(&by_full, "operation"), [&json!("supply"), &json!("audit-read")]);
}

#[tokio::test]
async fn an_audit_read_checks_the_scheme_product_code_and_serial_as_the_pack_routes_do() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let nca = app.client(Role::Nca, "nca-office").await;
    // (scheme, product code, serial) as the path spells them, the same values as a pack route's
    // body carries them, and the field both name.
    let too_long = "A".repeat(21);
    let refused: [(&str, &str, &str, [&str; 3], &str); 5] = [
        ("GTIN", GTIN, &too_long, ["GTIN", GTIN, &too_long], "serial"),
        ("GTIN", GTIN, "EXA%20001", ["GTIN", GTIN, "EXA 001"], "serial"),
        ("GTIN", GTIN, "EXA%C3%A9", ["GTIN", GTIN, "EXA\u{e9}"], "serial"),
        ("NTIN", GTIN, "EXA00000001", ["NTIN", GTIN, "EXA00000001"], "scheme"),
        ("GTIN", "09501101530004", "EXA00000001", ["GTIN", "09501101530004", "EXA00000001"], "product_code"),
    ];
    for (scheme, pc, serial, [b_scheme, b_pc, b_serial], field) in refused {
        let body = p.req_with(&[("scheme", b_scheme), ("product_code", b_pc), ("serial", b_serial)]);
        let by_route = a.verify(&body).await;
        let code = by_route.json["return_code"].as_str().unwrap_or_default().to_owned();
        by_route.expect_error(400, &code, Some(field));
        let read = nca.get(&format!("/v1/audit/packs/{scheme}/{pc}/{serial}")).await;
        read.expect_error(400, &code, Some(field));
        assert_eq!(read.json["details"], by_route.json["details"], "the same rule, the same words");
    }
    // `..%2F` decodes to `../`: characters of GS1 set 82, so a serial the pack routes take too.
    // The read is of that serial's own trail, not of another pack's.
    let dotted = Pack { serial: "../EXA00000001".into(), ..p.clone() };
    check(&a.verify(&dotted.req()).await, "NMVS_NC_PC_02", false, None, &[]);
    let read = nca.get(&format!("/v1/audit/packs/GTIN/{GTIN}/..%2FEXA00000001")).await;
    assert_eq!(read.status, 200, "{}", read.text);
    let records = read.json["records"].as_array().expect("records");
    assert_eq!(records.len(), 1, "{}", read.text);
    assert_eq!(records[0]["request"]["serial"], "../EXA00000001");
}

/// Everything an authority can search for, with what the hub delivered in a pack's trail, page by
/// page, and the export of a result set as CSV and as JSON.
#[tokio::test]
async fn authorities_search_the_trail_and_export_what_they_found() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let other = app.pack().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let b = app.client(Role::Pharmacy, "pharmacy-b").await;
    let nca = app.client(Role::Nca, "nca-office").await;
    assert_eq!(a.verify(&p.req()).await.status, 200);
    app.advance(Duration::from_secs(86_400));
    assert_eq!(a.op("supply", &p.req()).await.status, 200);
    assert_eq!(b.verify(&other.req()).await.status, 200);
    let search = |q: String| {
        let nca = &nca;
        async move {
            let r = nca.get(&format!("/v1/audit/records?{q}")).await;
            assert_eq!(r.status, 200, "{q}: {}", r.text);
            r.json
        }
    };
    // The operations found, logins left out (each client's token is issued and renewed).
    let ops = |v: &Value| -> Vec<String> {
        let all =
            v["records"].as_array().unwrap().iter().map(|r| r["operation"].as_str().unwrap().to_owned());
        all.filter(|o| o != "login").collect()
    };
    // A pack: what the hub delivered about it (its product, its batch, its upload), then the requests.
    let pack = search(format!("product_code={GTIN}&serial={}", p.serial)).await;
    assert_eq!(
        ops(&pack),
        ["hub-product", "hub-batch", "hub-packs", "hub-packs", "verify", "supply"],
        "{pack}"
    );
    let trail: Vec<String> =
        full_trail(&nca, &p).await.iter().map(|r| r["operation"].as_str().unwrap().to_owned()).collect();
    assert_eq!(&trail[..6], ops(&pack), "the pack's trail holds the same");
    // A client, premises, an operation, a day.
    assert_eq!(ops(&search(format!("client_id={}", a.client_id)).await), ["verify", "supply"]);
    assert_eq!(ops(&search("location=pharmacy-b".into()).await), ["verify"]);
    let verifies = search("operation=verify".into()).await;
    assert_eq!(verifies["records"].as_array().unwrap().len(), 2);
    assert_eq!(ops(&search("from=2026-11-30&operation=verify".into()).await), ["verify"]);
    assert_eq!(ops(&search("to=2026-11-29&client_id=".to_owned() + &a.client_id).await), ["verify"]);
    // A product and a batch: its packs' requests and the batch's own records.
    let batch = search(format!("product_code={GTIN}&batch={BATCH}&operation=verify")).await;
    assert_eq!(batch["records"].as_array().unwrap().len(), 2, "{batch}");
    assert_eq!(search(format!("product_code={GTIN}&batch=NOPE")).await["records"], json!([]));
    // Page by page.
    let first = search(format!("product_code={GTIN}&limit=2")).await;
    assert_eq!(first["records"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().expect("a next page").to_owned();
    let next = search(format!("product_code={GTIN}&limit=2&cursor={cursor}")).await;
    assert_ne!(next["records"][0]["seq"], first["records"][1]["seq"]);
    assert!(next["records"][0]["seq"].as_u64() > first["records"][1]["seq"].as_u64());

    // Exports: every record of the search, CSV with a header and one line each, or a JSON array.
    let all = search(format!("product_code={GTIN}&limit=1000")).await;
    let n = all["records"].as_array().unwrap().len();
    let csv = nca.get(&format!("/v1/audit/records/export?product_code={GTIN}")).await;
    assert_eq!(csv.status, 200, "{}", csv.text);
    assert!(csv.header("content-type").starts_with("text/csv"), "{}", csv.header("content-type"));
    assert!(csv.header("content-disposition").contains("audit.csv"));
    let lines: Vec<&str> = csv.text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], "seq,at,actor,role,location,operation,subject,return_code,request,result");
    assert_eq!(lines.len(), n + 1, "a header and a line per record: {}", csv.text);
    assert!(csv.text.contains(&format!(",verify,GTIN/{GTIN}/{},NMVS_SUCCESS,", p.serial)), "{}", csv.text);
    let json = nca.get(&format!("/v1/audit/records/export?product_code={GTIN}&format=json")).await;
    assert_eq!(json.status, 200);
    let exported: Vec<Value> = serde_json::from_str(&json.text).expect("one JSON array");
    assert_eq!(&exported, all["records"].as_array().unwrap(), "the same records as the search");

    // Refusals, named.
    a.get("/v1/audit/records").await.expect_error(403, "NMVS_FE_AU_04", None);
    nca.get("/v1/audit/records?serial=S1").await.expect_error(400, "NMVS_TE_XM_02", Some("serial"));
    nca.get("/v1/audit/records?batch=B1").await.expect_error(400, "NMVS_TE_XM_02", Some("batch"));
    nca.get("/v1/audit/records?colour=red").await.expect_error(400, "NMVS_TE_XM_02", Some("colour"));
    nca.get("/v1/audit/records?from=tomorrow").await.expect_error(400, "NMVS_TE_XM_02", Some("from"));
    nca.get("/v1/audit/records?limit=0").await.expect_error(400, "NMVS_TE_XM_02", Some("limit"));
    nca.get("/v1/audit/records/export?format=xml").await.expect_error(400, "NMVS_TE_XM_02", Some("format"));
    // The searches and exports are in the trail themselves.
    let audited = search("operation=audit-export".into()).await;
    assert_eq!(audited["records"].as_array().unwrap().len(), 2, "{audited}");
}
