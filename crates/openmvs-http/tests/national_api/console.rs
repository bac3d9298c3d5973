//! The console's data on a national system: the SLA history every node writes and reads, and
//! incidents opened by operators and by the rules, on the status page and in the feeds.

use std::time::Duration;

use openmvs_core::roles::Role;
use openmvs_core::time::Clock;
use openmvs_http::incidents::RuleConfig;
use openmvs_http::upkeep::Upkeep;
use openmvs_telemetry::OpClass;
use serde_json::{Value, json};

use crate::harness::*;

fn upkeep(app: &TestApp, label: &str) -> Upkeep {
    Upkeep::national(app.obs.clone(), app.national.clone(), label, RuleConfig::default())
}

async fn verifications_this_month(app: &TestApp) -> Value {
    let r = app.get("/v1/status").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["operations"]["verification"]["count_month"].clone()
}

async fn verify_n(app: &TestApp, location: &str, n: usize) {
    app.seed_standard().await;
    let p = app.pack().await;
    let c = app.client(Role::Pharmacy, location).await;
    for _ in 0..n {
        assert_eq!(c.verify(&p.req()).await.status, 200);
    }
}

#[tokio::test]
async fn the_sla_history_outlives_a_restart_of_the_node() {
    let dir = TempDir::new();
    let opts = || AppOptions { data_dir: Some(dir.path().to_owned()), ..AppOptions::default() };
    let first = spawn_app_with(opts()).await;
    verify_n(&first, "pharmacy-a", 3).await;
    assert_eq!(verifications_this_month(&first).await, 3, "counted live before any write");
    upkeep(&first, "node-a").flush().await;
    drop(first);
    let again = spawn_app_with(opts()).await;
    assert_eq!(verifications_this_month(&again).await, 3, "read back from the store after the restart");
    verify_n(&again, "pharmacy-b", 2).await;
    assert_eq!(verifications_this_month(&again).await, 5, "the new run's live figures are added");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_postgresql_node_reads_the_same_history_and_a_restarted_node_keeps_its_past() {
    let Some(pg) = shared_postgres("the SLA history of two nodes") else { return };
    let node = || spawn_app_with(AppOptions { postgres: Some(pg.clone()), ..AppOptions::default() });
    let a = node().await;
    let b = node().await;
    verify_n(&a, "pharmacy-a", 3).await;
    let p = b.pack().await;
    let c = b.client(Role::Pharmacy, "pharmacy-b").await;
    for _ in 0..2 {
        assert_eq!(c.verify(&p.req()).await.status, 200);
    }
    upkeep(&a, "a").flush().await;
    upkeep(&b, "b").flush().await;
    let (ra, rb) = (a.get("/v1/status").await, b.get("/v1/status").await);
    assert_eq!(ra.json["operations"]["verification"]["count_month"], 5, "{}", ra.text);
    assert_eq!(ra.json["months"], rb.json["months"], "both nodes read the same months");
    assert_eq!(ra.json["days"], rb.json["days"], "and the same days");
    // Writing again counts nothing twice.
    upkeep(&a, "a").flush().await;
    assert_eq!(verifications_this_month(&b).await, 5);
    drop(a);
    let a2 = node().await;
    assert_eq!(verifications_this_month(&a2).await, 5, "the stopped node's figures stay in the history");
}

#[tokio::test]
async fn slow_answers_open_an_incident_that_the_page_and_both_feeds_show_until_it_is_resolved() {
    let app = spawn_app().await;
    let watch = upkeep(&app, "node-a");
    let now = || app.clock.now().unix_millis();
    // Twenty fast verifications and nothing opens.
    for _ in 0..20 {
        app.obs.sla.record(OpClass::Verification, now(), 2_000);
    }
    assert_eq!(watch.rules().await, (vec![], vec![]));
    // Then thirty answered in 400 ms: 40 % of the window under 300 ms.
    for _ in 0..30 {
        app.obs.sla.record(OpClass::Verification, now(), 400_000);
    }
    let (opened, _) = watch.rules().await;
    assert_eq!(opened.len(), 1);
    assert_eq!(watch.rules().await, (vec![], vec![]), "one incident while the condition holds");
    let open = app.get("/v1/incidents?open=true").await;
    let incident = &open.json["incidents"][0];
    assert_eq!(incident["title"], "Verifications slower than 300 ms on node-a", "{}", open.text);
    assert_eq!(
        (&incident["automatic"], &incident["status"], &incident["impact"]),
        (&json!(true), &json!("investigating"), &json!("major"))
    );
    assert!(
        incident["updates"][0]["message"].as_str().unwrap().contains("40.0 % of 50 verifications"),
        "{incident}"
    );

    let page =
        app.http.get(format!("{}/status", app.base)).header("accept", "text/html").send().await.unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains("1 incident in progress"), "{html}");
    assert!(html.contains("Verifications slower than 300 ms on node-a"), "{html}");
    let atom = app.get("/v1/incidents/feed.atom").await;
    assert!(
        atom.header("content-type").starts_with("application/atom+xml"),
        "{}",
        atom.header("content-type")
    );
    assert!(atom.text.contains("<feed xmlns=\"http://www.w3.org/2005/Atom\">"), "{}", atom.text);
    assert!(
        atom.text.contains("[investigating] Verifications slower than 300 ms on node-a"),
        "{}",
        atom.text
    );
    let feed = app.get("/v1/incidents/feed.json").await;
    assert!(feed.header("content-type").starts_with("application/feed+json"));
    let feed: Value = serde_json::from_str(&feed.text).expect("a JSON feed");
    assert_eq!(feed["version"], "https://jsonfeed.org/version/1.1");
    assert_eq!(feed["items"][0]["_openmvs"]["id"], incident["id"]);

    // Five minutes later the window holds fast answers only: the rule resolves its incident.
    app.clock.advance(Duration::from_secs(6 * 60));
    for _ in 0..40 {
        app.obs.sla.record(OpClass::Verification, now(), 3_000);
    }
    let (_, resolved) = watch.rules().await;
    assert_eq!(resolved, vec![incident["id"].as_u64().unwrap()]);
    let all = app.get("/v1/incidents").await;
    assert_eq!(all.json["incidents"][0]["status"], "resolved", "{}", all.text);
    assert_eq!(all.json["incidents"][0]["updates"].as_array().unwrap().len(), 2);
    let atom = app.get("/v1/incidents/feed.atom").await;
    assert!(atom.text.contains("[resolved] Verifications slower"), "{}", atom.text);
    let status = app.get("/v1/status").await;
    assert_eq!(status.json["incidents"][0]["status"], "resolved", "{}", status.text);
}

#[tokio::test]
async fn a_node_that_stays_not_ready_has_an_incident_written_with_the_time_it_began() {
    let app = spawn_app().await;
    let watch = upkeep(&app, "node-a");
    app.obs.set_ready(false);
    let began = app.clock.now();
    watch.sample();
    app.clock.advance(Duration::from_secs(30));
    assert_eq!(watch.rules().await.0.len(), 0, "half a minute is not an incident yet");
    app.clock.advance(Duration::from_secs(40));
    let (opened, _) = watch.rules().await;
    assert_eq!(opened.len(), 1);
    let i = app.get(&format!("/v1/incidents/{}", opened[0])).await;
    assert_eq!(i.json["opened_at"], began.to_rfc3339(), "{}", i.text);
    app.obs.set_ready(true);
    let (_, resolved) = watch.rules().await;
    assert_eq!(resolved, opened);
}

#[tokio::test]
async fn the_nmvo_opens_updates_and_resolves_an_incident_and_everyone_else_reads_it() {
    let app = spawn_app().await;
    let nmvo = app.client(Role::Nmvo, "nmvo-office").await;
    let pharmacy = app.client(Role::Pharmacy, "pharmacy-a").await;
    let body = json!({"title": "Verifications time out for some pharmacies", "impact": "major",
                      "message": "We are investigating."});
    pharmacy.post("/v1/admin/incidents", &body).await.expect_error(403, "NMVS_FE_AU_04", None);
    let bad =
        nmvo.post("/v1/admin/incidents", &json!({"title": "x", "impact": "huge", "message": "m"})).await;
    bad.expect_error(400, "NMVS_TE_XM_02", Some("impact"));
    nmvo.post("/v1/admin/incidents", &json!({"title": " ", "impact": "minor", "message": "m"}))
        .await
        .expect_error(400, "NMVS_TE_XM_02", Some("title"));
    assert_eq!(app.get("/v1/incidents").await.json["incidents"], json!([]), "nothing stored by a refusal");

    let opened = nmvo.post("/v1/admin/incidents", &body).await;
    assert_eq!(opened.status, 201, "{}", opened.text);
    let id = opened.json["id"].as_u64().unwrap();
    assert_eq!((&opened.json["status"], &opened.json["automatic"]), (&json!("investigating"), &json!(false)));
    let path = format!("/v1/admin/incidents/{id}/updates");
    let update =
        nmvo.post(&path, &json!({"status": "identified", "message": "A database node failed."})).await;
    assert_eq!((update.status, &update.json["status"]), (200, &json!("identified")), "{}", update.text);
    pharmacy.post(&path, &json!({"status": "resolved", "message": "no"})).await.expect_error(
        403,
        "NMVS_FE_AU_04",
        None,
    );
    let resolved =
        nmvo.post(&path, &json!({"status": "resolved", "message": "Failed over.", "impact": "minor"})).await;
    assert_eq!(resolved.status, 200, "{}", resolved.text);
    assert!(
        resolved.json["resolved_at"].is_string() && resolved.json["impact"] == "minor",
        "{}",
        resolved.text
    );
    let by: Vec<&Value> = resolved.json["updates"].as_array().unwrap().iter().map(|u| &u["by"]).collect();
    assert_eq!(by, vec!["operator", "operator", "operator"]);
    nmvo.post(&path, &json!({"status": "monitoring", "message": "late"})).await.expect_error(
        409,
        "NMVS_TE_ST_01",
        Some("id"),
    );
    nmvo.post("/v1/admin/incidents/999/updates", &json!({"status": "monitoring", "message": "m"}))
        .await
        .expect_error(404, "NMVS_TE_NF_01", Some("id"));
    app.get("/v1/incidents/999").await.expect_error(404, "NMVS_TE_NF_01", Some("id"));

    // Anyone reads them, a page at a time.
    let second = nmvo
        .post(
            "/v1/admin/incidents",
            &json!({"title": "Planned maintenance", "impact": "minor",
        "status": "monitoring", "message": "Tonight 02:00-02:30 UTC."}),
        )
        .await;
    assert_eq!(second.status, 201, "{}", second.text);
    let page = app.get("/v1/incidents?limit=1").await;
    assert_eq!(page.json["incidents"][0]["title"], "Planned maintenance", "{}", page.text);
    let cursor = page.json["next_cursor"].as_str().expect("a next page").to_owned();
    let next = app.get(&format!("/v1/incidents?limit=1&cursor={cursor}")).await;
    assert_eq!(next.json["incidents"][0]["id"], id, "{}", next.text);
    assert_eq!(next.json["next_cursor"], Value::Null);
    let open = app.get("/v1/incidents?open=true").await;
    assert_eq!(open.json["incidents"].as_array().unwrap().len(), 1, "{}", open.text);
    app.get("/v1/incidents?limit=0").await.expect_error(400, "NMVS_TE_XM_02", Some("limit"));
    app.get("/v1/incidents?state=open").await.expect_error(400, "NMVS_TE_XM_02", Some("state"));
}
