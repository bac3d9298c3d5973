//! The operations endpoints: the return-code catalogue, `/status`, `/metrics` and health.

use openmvs_core::roles::Role;
use openmvs_telemetry::check_exposition;
use openmvs_wire::ReturnCodeCatalogue;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

#[tokio::test]
async fn the_return_code_catalogue_is_served_as_built_from_the_one_table() {
    let app = spawn_app().await;
    let r = app.get("/v1/return-codes").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let expected = serde_json::to_value(ReturnCodeCatalogue::build()).expect("serialise");
    assert_eq!(r.json, expected);
    // And it holds every outcome of the contract with its level and alert.
    let rows = r.json["return_codes"].as_array().expect("return_codes");
    for &(code, level, alert) in OUTCOMES {
        let row = rows.iter().find(|x| x["code"] == code).unwrap_or_else(|| panic!("{code} missing"));
        assert_eq!(
            (&row["level"], row["alert"].as_str(), &row["http_status"]),
            (&Value::from(level), alert, &Value::from(200))
        );
    }
}

#[tokio::test]
async fn status_reports_the_market_and_per_class_figures_as_json_and_as_a_page() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    for _ in 0..3 {
        assert_eq!(a.verify(&p.req()).await.status, 200);
    }
    assert_eq!(a.op("lock", &p.req()).await.status, 200);
    assert_eq!(a.undo("lock", &p.req()).await.status, 200);
    let r = app.get("/status").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let s = &r.json;
    assert_eq!(s["market"], DE);
    let availability = s["availability_30d"].as_f64().expect("availability_30d");
    assert!((0.0..=1.0).contains(&availability), "{availability}");
    for (class, count) in [("verification", 3), ("status_update", 2)] {
        let f = &s["operations"][class];
        assert_eq!(f["count_month"], count, "{class}: {f}");
        let share = f["share_under_300ms_month"].as_f64().expect("share");
        assert!((0.0..=1.0).contains(&share), "{class}: {share}");
        assert!(f["mean_ms_30d"].as_f64().is_some_and(|m| m > 0.0), "{class}: {f}");
    }
    assert!(s["incidents"].is_array(), "{}", r.text);
    // Six months, the last this one, per class, as the monthly report gives them.
    let months = s["months"].as_array().expect("months");
    assert_eq!(months.len(), 6, "{}", r.text);
    let this_month = months.last().expect("this month");
    for (class, count) in [("verification", 3), ("status_update", 2)] {
        let m = &this_month["classes"][class];
        assert_eq!(m["requests"], count, "{class} in {this_month}");
        assert!(m["mean_ms"].as_f64().is_some_and(|v| v > 0.0), "{m}");
        assert!(m["p95_ms"].as_f64().is_some_and(|v| v > 0.0), "{m}");
        assert!(m["p99_ms"].as_f64() >= m["p95_ms"].as_f64(), "{m}");
        assert_eq!(s["operations"][class]["p95_ms_month"], m["p95_ms"], "{class}");
    }
    for earlier in &months[..5] {
        assert_eq!(earlier["classes"]["verification"]["requests"], 0, "{earlier}");
    }
    let today = s["days"].as_array().and_then(|d| d.last()).expect("today");
    assert_eq!(today["classes"]["verification"]["requests"], 3, "{today}");
    // `GET /v1/status` is the same report.
    let v1 = app.get("/v1/status").await;
    assert_eq!(v1.status, 200, "{}", v1.text);
    let (mut a, mut b) = (r.json.clone(), v1.json.clone());
    a["generated_at"] = Value::Null;
    b["generated_at"] = Value::Null;
    assert_eq!(a, b);

    let page = app
        .http
        .get(format!("{}/status", app.base))
        .header("accept", "text/html")
        .send()
        .await
        .expect("status page");
    assert_eq!(page.status(), 200);
    let content_type = page.headers()["content-type"].to_str().unwrap_or("").to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = page.text().await.expect("the page");
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(html.contains("OpenMVS national system DE"), "{html}");
    assert!(html.contains("<svg"), "a chart of the verifications: {html}");
    assert!(html.contains("<h2>By month</h2><div class=\"scroll\""), "the monthly table: {html}");
    assert!(html.contains("All services are operating normally."), "{html}");
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_latency_buckets_per_class() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    assert_eq!(a.verify(&p.req()).await.status, 200);
    assert_eq!(a.op("supply", &p.req()).await.status, 200);
    let r = app.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").starts_with("text/plain"), "{}", r.header("content-type"));
    for needle in [
        "# TYPE openmvs_request_duration_seconds histogram",
        "openmvs_request_duration_seconds_bucket{class=\"verification\"",
        "openmvs_request_duration_seconds_bucket{class=\"status_update\"",
        "openmvs_request_duration_seconds_count{class=\"verification\",status=\"2xx\"} 1",
        "# TYPE openmvs_admission_limit gauge\nopenmvs_admission_limit 128\n",
        "openmvs_requests_shed_total 0\n",
    ] {
        assert!(r.text.contains(needle), "no '{needle}' in:\n{}", r.text);
    }
}

#[tokio::test]
async fn metrics_count_the_alerts_raised_by_code_and_those_not_closed_by_status() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let nmvo = app.client(Role::Nmvo, "nmvo-office").await;
    let unknown = p.req_with(&[("serial", fresh_serial().as_str())]);
    let first = a.verify(&unknown).await;
    check(&first, "NMVS_NC_PC_02", false, None, &[]);
    // The same request again is a retry: the stored answer, and no second alert to count.
    assert_eq!(alert_id(&a.verify(&unknown).await), alert_id(&first));
    let second = a.verify(&p.req_with(&[("serial", fresh_serial().as_str())])).await;
    let third = a.verify(&p.req_with(&[("serial", fresh_serial().as_str())])).await;
    for (id, body) in [
        (alert_id(&second), json!({"status": "INVESTIGATING"})),
        (alert_id(&third), json!({"status": "CLOSED", "classification": "TECHNICAL_ERROR"})),
    ] {
        let r = nmvo.post(&format!("/v1/alerts/{id}/status"), &body).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }

    let text = app.get("/metrics").await.text;
    let e = check_exposition(&text).unwrap_or_else(|e| panic!("/metrics: {e}\n{text}"));
    let value = |name: &str, labels: &[(&str, &str)]| e.value(name, labels);
    assert_eq!(value("openmvs_alerts_raised_total", &[("code", "A3")]), Some(3.0), "{text}");
    assert_eq!(value("openmvs_alerts_raised_total", &[("code", "A24")]), Some(0.0), "{text}");
    for (status, n) in [("OPEN", 1.0), ("INVESTIGATING", 1.0), ("ESCALATED", 0.0)] {
        assert_eq!(value("openmvs_alerts_open", &[("status", status)]), Some(n), "{status}: {text}");
    }
    assert_eq!(value("openmvs_alerts_open", &[("status", "CLOSED")]), None, "closed alerts are not counted");
    assert_eq!(value("openmvs_outbox_failing", &[]), Some(0.0), "{text}");
    assert_eq!(value("openmvs_outbox_dead_letters", &[]), Some(0.0), "{text}");
}

#[tokio::test]
async fn health_is_live_and_ready_until_the_service_says_it_is_not() {
    let app = spawn_app().await;
    assert_eq!(app.get("/health/live").await.status, 200);
    assert_eq!(app.get("/health/ready").await.status, 200);
    app.obs.set_ready(false);
    assert_eq!(app.get("/health/ready").await.status, 503);
    assert_eq!(app.get("/health/live").await.status, 200, "a service that is draining is still alive");
    app.obs.set_ready(true);
    assert_eq!(app.get("/health/ready").await.status, 200);
}

#[tokio::test]
async fn a_request_id_sent_by_the_client_comes_back_and_others_get_a_new_one() {
    let app = spawn_app().await;
    let sent = app
        .http
        .request(Method::GET, format!("{}/health/live", app.base))
        .header("x-request-id", "pos7-req-42")
        .send()
        .await
        .expect("request");
    assert_eq!(sent.headers()["x-request-id"], "pos7-req-42");
    let first = app.get("/health/live").await;
    let second = app.get("/health/live").await;
    assert_ne!(first.header("x-request-id"), second.header("x-request-id"));
}
