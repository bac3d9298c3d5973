//! Alerts: who sees which, paging, and the lifecycle the NMVO moves them through.

use std::collections::BTreeSet;

use openmvs_core::roles::Role;
use serde_json::{Value, json};

use crate::harness::*;

fn ids(alerts: &[Value]) -> BTreeSet<String> {
    alerts.iter().map(|a| a["id"].as_str().expect("an id").to_owned()).collect()
}

/// Raises an A3 alert from `client` on a serial never uploaded; returns its id.
async fn raise(client: &Client, p: &Pack) -> String {
    let r = client.verify(&p.req_with(&[("serial", fresh_serial().as_str())])).await;
    check(&r, "NMVS_NC_PC_02", false, None, &[]);
    alert_id(&r)
}

#[tokio::test]
async fn end_users_see_their_own_alerts_and_the_nmvo_and_nca_see_the_market() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let b = app.client(Role::Pharmacy, "pharmacy-b").await;
    let nmvo = app.client(Role::Nmvo, "nmvo-office").await;
    let nca = app.client(Role::Nca, "nca-office").await;
    let of_a = BTreeSet::from([raise(&a, &p).await, raise(&a, &p).await]);
    let of_b = BTreeSet::from([raise(&b, &p).await]);
    assert_eq!(ids(&a.all_alerts("").await), of_a);
    assert_eq!(ids(&b.all_alerts("").await), of_b);
    let market: BTreeSet<String> = of_a.union(&of_b).cloned().collect();
    assert_eq!(ids(&nmvo.all_alerts("").await), market);
    assert_eq!(ids(&nca.all_alerts("").await), market);
    let b_alert = of_b.first().expect("an alert");
    a.get(&format!("/v1/alerts/{b_alert}")).await.expect_error(404, "NMVS_TE_NF_01", Some("id"));
    let seen = nca.get(&format!("/v1/alerts/{b_alert}")).await;
    assert_eq!(seen.status, 200, "{}", seen.text);
    let v = &seen.json;
    assert_eq!(
        (&v["code"], &v["return_code"], &v["status"]),
        (&json!("A3"), &json!("NMVS_NC_PC_02"), &json!("OPEN"))
    );
    assert_eq!((&v["market"], &v["product_code"], &v["batch"]), (&json!(DE), &json!(GTIN), &json!(BATCH)));
    assert_eq!((&v["location"], &v["created_at"]), (&json!("pharmacy-b"), &json!(START)));
    assert!(v["classification"].is_null() && v["comment"].is_null(), "{v}");
}

#[tokio::test]
async fn alerts_are_listed_page_by_page_with_a_cursor() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let nmvo = app.client(Role::Nmvo, "nmvo-office").await;
    let mut raised = BTreeSet::new();
    for _ in 0..5 {
        raised.insert(raise(&a, &p).await);
    }
    let mut pages = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = nmvo.get(&format!("/v1/alerts?limit=2{cursor}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        pages.push(ids(r.json["alerts"].as_array().expect("alerts")));
        match r.json["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
        assert!(pages.len() < 5, "paging does not end");
    }
    assert_eq!(pages.iter().map(BTreeSet::len).collect::<Vec<_>>(), vec![2, 2, 1]);
    let all: BTreeSet<String> = pages.into_iter().flatten().collect();
    assert_eq!(all, raised);
    nmvo.get("/v1/alerts?limit=0").await.expect_error(400, "NMVS_TE_XM_02", Some("limit"));
    nmvo.get("/v1/alerts?colour=red").await.expect_error(400, "NMVS_TE_XM_02", Some("colour"));
}

#[tokio::test]
async fn the_nmvo_moves_an_alert_through_its_lifecycle_and_refused_changes_leave_it_unchanged() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let nmvo = app.client(Role::Nmvo, "nmvo-office").await;
    let nca = app.client(Role::Nca, "nca-office").await;
    let id = raise(&a, &p).await;
    let status = format!("/v1/alerts/{id}/status");
    let alert = format!("/v1/alerts/{id}");
    let r = nmvo.post(&status, &json!({"status": "INVESTIGATING", "comment": "calling the pharmacy"})).await;
    assert_eq!((r.status, &r.json["status"]), (200, &json!("INVESTIGATING")), "{}", r.text);
    assert_eq!(nmvo.get(&alert).await.json["comment"], "calling the pharmacy");
    let r = nmvo.post(&status, &json!({"status": "ESCALATED"})).await;
    assert_eq!((r.status, &r.json["status"]), (200, &json!("ESCALATED")), "{}", r.text);
    // Refused changes, each leaving the alert as it was.
    let escalated = nmvo.get(&alert).await.json;
    #[rustfmt::skip]
    let refused: &[(Value, &str)] = &[
        (json!({"status": "CLOSED"}), "classification"),
        (json!({"status": "CLOSED", "classification": "PROCEDURAL_ERROR", "comment": "x".repeat(501)}), "comment"),
        // An empty comment would join the thread as one that no other system accepts.
        (json!({"status": "CLOSED", "classification": "PROCEDURAL_ERROR", "comment": ""}), "comment"),
        (json!({"status": "CLOSED", "classification": "PROCEDURAL_ERROR", "comment": " \n"}), "comment"),
        (json!({"status": "CLOSED", "classification": "NOT_A_CLASSIFICATION"}), "classification"),
        (json!({"status": "INVESTIGATING"}), "status"),
        (json!({"status": "OPEN"}), "status"),
    ];
    for (body, field) in refused {
        nmvo.post(&status, body).await.expect_error(400, "NMVS_TE_XM_02", Some(field));
        assert_eq!(nmvo.get(&alert).await.json, escalated, "after {body}");
    }
    nca.post(&status, &json!({"status": "CLOSED", "classification": "OTHER"})).await.expect_error(
        403,
        "NMVS_FE_AU_04",
        Some("role"),
    );
    assert_eq!(nmvo.get(&alert).await.json, escalated, "after the NCA's attempt");
    let comment = "y".repeat(500);
    let r = nmvo
        .post(&status, &json!({"status": "CLOSED", "classification": "PROCEDURAL_ERROR", "comment": comment}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let closed = nmvo.get(&alert).await.json;
    assert_eq!(
        (&closed["status"], &closed["classification"], &closed["comment"]),
        (&json!("CLOSED"), &json!("PROCEDURAL_ERROR"), &json!(comment))
    );
    // A closed alert never goes back to OPEN; it reopens only by an explicit change.
    nmvo.post(&status, &json!({"status": "OPEN"})).await.expect_error(400, "NMVS_TE_XM_02", Some("status"));
    assert_eq!(nmvo.get(&alert).await.json, closed);
    assert_eq!(nmvo.all_alerts("&status=CLOSED").await.len(), 1);
    assert_eq!(nmvo.all_alerts("&status=OPEN").await.len(), 0);
    let r =
        nmvo.post(&status, &json!({"status": "INVESTIGATING", "comment": "a second pack turned up"})).await;
    assert_eq!(
        (r.status, &r.json["status"], &r.json["classification"]),
        (200, &json!("INVESTIGATING"), &json!(null))
    );
    let history: Vec<(&str, &str)> = r.json["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["from"].as_str().unwrap(), h["to"].as_str().unwrap()))
        .collect();
    assert_eq!(
        history,
        [
            ("OPEN", "INVESTIGATING"),
            ("INVESTIGATING", "ESCALATED"),
            ("ESCALATED", "CLOSED"),
            ("CLOSED", "INVESTIGATING")
        ]
    );
    let closing = &r.json["history"][2];
    assert_eq!(
        (&closing["by"], &closing["role"], &closing["classification"]),
        (&json!(nmvo.client_id), &json!("NMVO"), &json!("PROCEDURAL_ERROR"))
    );
    assert_eq!(
        r.json["comments"].as_array().unwrap().len(),
        3,
        "each status change's comment is in the thread"
    );
    nmvo.post("/v1/alerts/ALR-000000000000-0000000000000000/status", &json!({"status": "ESCALATED"}))
        .await
        .expect_error(404, "NMVS_TE_NF_01", Some("id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nmvo_comments_on_an_alert_and_reads_the_thread_with_author_role_and_time() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let nmvo = app.client(Role::Nmvo, "nmvo-office").await;
    let id = raise(&a, &p).await;
    let comments = format!("/v1/alerts/{id}/comments");
    let r = nmvo.post(&comments, &json!({"text": "pack returned to the wholesaler"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        (&r.json["author"], &r.json["role"], &r.json["text"]),
        (&json!(nmvo.client_id), &json!("NMVO"), &json!("pack returned to the wholesaler"))
    );
    assert!(r.json["at"].as_str().is_some_and(|t| t.ends_with('Z')), "{}", r.text);
    let r = nmvo.post(&comments, &json!({"text": "second look: pack is genuine"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let read = nmvo.get(&format!("/v1/alerts/{id}")).await.json;
    let texts: Vec<&str> =
        read["comments"].as_array().unwrap().iter().map(|c| c["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["pack returned to the wholesaler", "second look: pack is genuine"]);
    assert_eq!((&read["comment"], &read["status"]), (&json!("second look: pack is genuine"), &json!("OPEN")));
    assert_eq!(read["history"], json!([]));
    // Refusals name the field and leave the thread as it was.
    nmvo.post(&comments, &json!({"text": "x".repeat(501)})).await.expect_error(
        400,
        "NMVS_TE_XM_02",
        Some("comment"),
    );
    nmvo.post(&comments, &json!({"text": "  "})).await.expect_error(400, "NMVS_TE_XM_02", Some("text"));
    a.post(&comments, &json!({"text": "not mine to say"})).await.expect_error(403, "NMVS_FE_AU_04", None);
    nmvo.post("/v1/alerts/ALR-000000000000-0000000000000000/comments", &json!({"text": "x"}))
        .await
        .expect_error(404, "NMVS_TE_NF_01", Some("id"));
    assert_eq!(nmvo.get(&format!("/v1/alerts/{id}")).await.json, read);
}

#[tokio::test]
async fn the_workbench_filters_alerts_by_code_product_batch_market_premises_date_and_classification() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let b = app.client(Role::Pharmacy, "pharmacy-b").await;
    let nmvo = app.client(Role::Nmvo, "nmvo-office").await;
    let nca = app.client(Role::Nca, "nca-office").await;
    let of_a = BTreeSet::from([raise(&a, &p).await, raise(&a, &p).await]);
    let of_b = raise(&b, &p).await;
    let list = |q: String| {
        let nmvo = &nmvo;
        async move { ids(&nmvo.all_alerts(&format!("&{q}")).await) }
    };
    assert_eq!(list("location=pharmacy-b".to_owned()).await, BTreeSet::from([of_b.clone()]));
    assert_eq!(list("code=A3&location=pharmacy-a".to_owned()).await, of_a);
    assert_eq!(list("code=A24".to_owned()).await, BTreeSet::new());
    assert_eq!(list(format!("product_code={GTIN}&batch={BATCH}")).await.len(), 3);
    assert_eq!(list("batch=OTHER".to_owned()).await, BTreeSet::new());
    assert_eq!(list("market=DE".to_owned()).await.len(), 3);
    assert_eq!(list("market=FR".to_owned()).await, BTreeSet::new());
    assert_eq!(
        list("from=2026-11-29&to=2026-11-29".to_owned()).await.len(),
        3,
        "the day the alerts were raised"
    );
    assert_eq!(list("from=2026-11-30".to_owned()).await, BTreeSet::new());
    assert_eq!(list("to=2026-11-28".to_owned()).await, BTreeSet::new());
    // The NCA's reports: the alerts closed as a confirmed falsification.
    let closed = nmvo
        .post(
            &format!("/v1/alerts/{of_b}/status"),
            &json!({"status": "CLOSED", "classification": "FALSIFICATION_CONFIRMED", "comment": "Counterfeit."}),
        )
        .await;
    assert_eq!(closed.status, 200, "{}", closed.text);
    let reports = nca.all_alerts("&classification=FALSIFICATION_CONFIRMED").await;
    assert_eq!(ids(&reports), BTreeSet::from([of_b.clone()]));
    assert_eq!(reports[0]["status"], "CLOSED");
    // An end user's filters apply within its own alerts.
    assert_eq!(ids(&b.all_alerts("&location=pharmacy-a").await), BTreeSet::new());
    for (q, field) in [
        ("code=A9", "code"),
        ("market=de", "market"),
        ("from=yesterday", "from"),
        ("from=2026-12-02&to=2026-12-01", "to"),
        ("classification=MAYBE", "classification"),
    ] {
        nmvo.get(&format!("/v1/alerts?{q}")).await.expect_error(400, "NMVS_TE_XM_02", Some(field));
    }
}
