//! Storms contained, guessing detected: a pharmacy that sends random serials gets its alerts up
//! to the threshold, then 429 with `Retry-After` (slowed), then a refusal; the NMVO gets one
//! SERIAL_GUESSING alert, which never goes to the hub; other pharmacies, and honest use below
//! the threshold, are answered as before.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use openmvs_core::guessing::GuessingPolicy;
use openmvs_core::roles::Role;
use openmvs_http::limit::RateLimit;
use openmvs_national::HubLink;
use openmvs_store::BoxFuture;
use openmvs_wire::hub::{Delivery, DeliveryAck, IntermarketAnswer, IntermarketRequest, MessageAck};
use serde_json::{Value, json};

use crate::harness::*;

/// A hub that applies and keeps every message it is sent.
#[derive(Default)]
struct RecordingHub {
    bodies: Mutex<Vec<Value>>,
}

impl HubLink for RecordingHub {
    fn deliver(&self, delivery: Delivery) -> BoxFuture<'_, Result<DeliveryAck, String>> {
        let mut results = Vec::new();
        for m in &delivery.messages {
            self.bodies.lock().expect("lock").push(serde_json::to_value(&m.body).expect("a message body"));
            results.push(MessageAck {
                message_id: m.message_id.clone(),
                status: "APPLIED".into(),
                error: None,
            });
        }
        Box::pin(async move { Ok(DeliveryAck { results }) })
    }

    fn intermarket(&self, _req: IntermarketRequest) -> BoxFuture<'_, Result<IntermarketAnswer, String>> {
        Box::pin(async { Ok(IntermarketAnswer { market: None, response: None, unreachable: Vec::new() }) })
    }
}

/// Small thresholds, so that the test reads: 5 failures (at any share over 20 %) cross; one
/// request every 10 s while slowed; 3 more failures and an hour's refusal.
fn policy() -> GuessingPolicy {
    GuessingPolicy {
        window: Duration::from_secs(600),
        min_failures: 5,
        min_share_percent: 20,
        max_failures: 50,
        slow_interval: Duration::from_secs(10),
        refuse_after: 3,
        refusal: Duration::from_secs(3600),
    }
}

/// A verify of a serial never uploaded, sent once.
async fn guess(c: &Client, p: &Pack) -> Resp {
    guess_serial(c, p).await.1
}

/// [`guess`], with the serial guessed.
async fn guess_serial(c: &Client, p: &Pack) -> (String, Resp) {
    let serial = fresh_serial();
    let r = c.op_once("verify", &p.req_with(&[("serial", serial.as_str())])).await;
    (serial, r)
}

fn retry_after(r: &Resp) -> u64 {
    r.header("retry-after").parse().unwrap_or_else(|_| panic!("Retry-After: {:?}", r.header("retry-after")))
}

/// The SERIAL_GUESSING alerts the NMVO lists.
async fn guessing_alerts(nmvo: &Client) -> Vec<Value> {
    nmvo.all_alerts("").await.into_iter().filter(|a| a["code"] == "SERIAL_GUESSING").collect()
}

#[tokio::test]
async fn a_pharmacy_guessing_serials_is_slowed_then_refused_and_the_nmvo_alone_gets_one_alert() {
    let hub = Arc::new(RecordingHub::default());
    let link: Arc<dyn HubLink> = hub.clone();
    // No per-client rate limit: the refusals are the guessing rule's alone, however fast the
    // machine sends.
    let rate = RateLimit { per_second: 1e9, burst: 1e9 };
    let app = spawn_app_with(AppOptions {
        guessing: policy(),
        hub: Some(link.clone()),
        rate,
        ..AppOptions::default()
    })
    .await;
    app.seed_standard().await;
    let packs = app.packs(3).await;
    let guesser = app.client(Role::Pharmacy, "pharmacy-guess").await;
    let honest = app.client(Role::Pharmacy, "pharmacy-honest").await;
    let nmvo = app.client(Role::Nmvo, "nmvo-office").await;

    // Hundreds of random serials at once: alerts up to the threshold, then 429 and no alert.
    let mut alerted = Vec::new();
    let mut slowed = 0;
    for _ in 0..300 {
        let (serial, r) = guess_serial(&guesser, &packs[0]).await;
        if r.status == 200 {
            check(&r, "NMVS_NC_PC_02", false, None, &[]);
            assert_eq!(slowed, 0, "no alert after the first 429: {}", r.text);
            alerted.push(serial);
        } else {
            let details = r.expect_error(429, "NMVS_FI_SE_CLI_01", Some("client_id"));
            assert!(details[0]["message"].as_str().is_some_and(|m| m.starts_with("slowed")), "{}", r.text);
            assert_eq!(retry_after(&r), 10, "the slow interval");
            slowed += 1;
        }
    }
    assert_eq!((alerted.len(), slowed), (5, 295), "the threshold's number of A3 alerts, then 429");
    let found = guessing_alerts(&nmvo).await;
    assert_eq!(found.len(), 1, "one SERIAL_GUESSING alert: {found:?}");

    // Another pharmacy is answered as before, alerts included.
    for p in &packs {
        check(&honest.verify(&p.req()).await, "NMVS_SUCCESS", true, Some("ACTIVE"), &[]);
    }
    check(&guess(&honest, &packs[0]).await, "NMVS_NC_PC_02", false, None, &[]);

    // Slowed: one request per interval is answered; failures go on, and after three more the
    // guesser is refused for an hour with a code of its own.
    for i in 0..3 {
        app.advance(Duration::from_secs(10));
        let (serial, r) = guess_serial(&guesser, &packs[0]).await;
        check(&r, "NMVS_NC_PC_02", false, None, &[]);
        alerted.push(serial);
        let next = guess(&guesser, &packs[0]).await;
        if i < 2 {
            next.expect_error(429, "NMVS_FI_SE_CLI_01", Some("client_id"));
            assert_eq!(retry_after(&next), 10);
        } else {
            next.expect_error(429, "NMVS_FI_SE_CLI_02", Some("client_id"));
            assert_eq!(retry_after(&next), 3600);
        }
    }
    app.advance(Duration::from_secs(10));
    let refused = guess(&guesser, &packs[0]).await;
    refused.expect_error(429, "NMVS_FI_SE_CLI_02", Some("client_id"));
    assert_eq!(retry_after(&refused), 3590, "the rest of the hour");
    // A genuine pack is refused too: the client, not the serial, is contained.
    let genuine = guesser.op_once("verify", &packs[1].req()).await;
    genuine.expect_error(429, "NMVS_FI_SE_CLI_02", None);
    let bulk = json!({"client_trx_id": trx(), "operation": "verify", "scheme": "GTIN", "product_code": GTIN,
                      "batch": BATCH, "expiry": EXPIRY, "serials": [packs[1].serial]});
    guesser.send_with(Tries::Once, reqwest::Method::POST, "/v1/bulk", Body::Json(bulk)).await.expect_error(
        429,
        "NMVS_FI_SE_CLI_02",
        None,
    );

    // The NMVO sees exactly one SERIAL_GUESSING alert, naming the client, its premises, the
    // last guess and the window.
    let found = guessing_alerts(&nmvo).await;
    assert_eq!(found.len(), 1, "one alert for the whole episode: {found:?}");
    let a = &found[0];
    assert_eq!(
        (&a["location"], &a["status"], &a["return_code"]),
        (&json!("pharmacy-guess"), &json!("OPEN"), &json!("NMVS_NC_PC_02"))
    );
    assert_eq!(a["serial"], alerted[4].as_str(), "the guess that crossed the threshold");
    assert_eq!((&a["product_code"], &a["batch"]), (&json!(GTIN), &json!(BATCH)));
    let comment = a["comment"].as_str().expect("the window is described in the comment");
    assert!(comment.contains(&guesser.client_id), "{comment}");
    assert!(comment.contains("5 of 5 requests between") && comment.contains(START), "{comment}");
    let id = a["id"].as_str().expect("an id");
    // The guesser reads the alerts its requests raised, not the NMVO's alert about it.
    guesser.get(&format!("/v1/alerts/{id}")).await.expect_error(404, "NMVS_TE_NF_01", Some("id"));
    let all = nmvo.all_alerts("").await;
    let a3 = all.iter().filter(|a| a["code"] == "A3").count();
    assert_eq!(a3, 5 + 3 + 1, "the guesser's 8 and the honest pharmacy's one");

    // Audited: the alert with its window, and each refusal on the pack it was about.
    let trail = app.store.audit_by_subject(&format!("alert/{id}")).await.expect("the trail");
    assert_eq!(trail.len(), 1);
    let e = &trail[0].entry;
    assert_eq!(
        (e.operation.as_str(), e.actor.as_str(), e.location.as_str()),
        ("serial-guessing", guesser.client_id.as_str(), "pharmacy-guess")
    );
    assert!(e.request.contains("\"failures\":5"), "{}", e.request);
    let read = nmvo.get(&packs[1].audit_path()).await;
    assert_eq!(read.status, 200, "{}", read.text);
    let codes: Vec<&Value> =
        read.json["records"].as_array().expect("records").iter().map(|r| &r["return_code"]).collect();
    assert!(codes.contains(&&json!("NMVS_FI_SE_CLI_02")), "the refusal is in the pack's trail: {codes:?}");

    // Nothing of it goes to the hub: the outbox holds the nine A3 alerts and nothing else.
    assert_eq!(app.store.pending().await.expect("pending"), 9);
    for _ in 0..20 {
        if app.store.pending().await.expect("pending") == 0 {
            break;
        }
        app.national.relay_once(link.as_ref()).await.expect("a relay round");
    }
    let sent = hub.bodies.lock().expect("lock").clone();
    assert_eq!(sent.len(), 9, "{sent:?}");
    for b in &sent {
        assert_eq!((&b["kind"], &b["alert"]["code"]), (&json!("alert"), &json!("A3")), "{b}");
    }
    assert!(!format!("{sent:?}").contains("SERIAL_GUESSING"));

    // The NMVO works it at home: the window stays its first comment, by the national system, and
    // neither a comment nor a status change of it goes to the hub.
    let r = nmvo.post(&format!("/v1/alerts/{id}/comments"), &json!({"text": "pharmacy called"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = nmvo.post(&format!("/v1/alerts/{id}/status"), &json!({"status": "INVESTIGATING"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let read = nmvo.get(&format!("/v1/alerts/{id}")).await;
    let comments = read.json["comments"].as_array().expect("comments");
    assert_eq!((comments.len(), &comments[0]["role"]), (2, &json!("SYSTEM")), "{}", read.text);
    assert!(comments[0]["text"].as_str().is_some_and(|t| t.contains(&guesser.client_id)));
    assert_eq!(app.store.pending().await.expect("pending"), 0, "nothing for the hub");
}

#[tokio::test]
async fn below_the_threshold_nothing_changes_with_the_default_limits() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let packs = app.packs(40).await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    let nmvo = app.client(Role::Nmvo, "nmvo-office").await;
    // A bad morning: 19 unknown serials and 40 genuine packs in a few minutes, one failure short of
    // the default threshold of 20: every request is answered and every alert raised.
    for (i, p) in packs.iter().enumerate() {
        check(&a.verify(&p.req()).await, "NMVS_SUCCESS", true, Some("ACTIVE"), &[]);
        if i < 19 {
            check(&guess(&a, p).await, "NMVS_NC_PC_02", false, None, &[]);
        }
        app.advance(Duration::from_secs(5));
    }
    let all = nmvo.all_alerts("").await;
    assert_eq!(all.len(), 19);
    assert!(all.iter().all(|a| a["code"] == "A3"), "{all:?}");
    for p in &packs[..5] {
        check(&a.op("supply", &p.req()).await, "NMVS_SUCCESS", true, Some("SUPPLIED"), &[]);
    }
}

#[tokio::test]
async fn a_bulk_of_guesses_is_contained_within_the_bulk() {
    let app = spawn_app_with(AppOptions { guessing: policy(), ..AppOptions::default() }).await;
    app.seed_standard().await;
    let p = app.pack().await;
    let w = app.client(Role::Wholesaler, "wholesaler-a").await;
    let nmvo = app.client(Role::Nmvo, "nmvo-office").await;
    let serials: Vec<String> = (0..50).map(|_| fresh_serial()).collect();
    let body = json!({"client_trx_id": trx(), "operation": "verify", "scheme": "GTIN", "product_code": GTIN,
                      "batch": BATCH, "expiry": EXPIRY, "serials": serials});
    let done = w.bulk_until_done(&body).await;
    let codes: Vec<&str> = done["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["return_code"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(codes[..5], ["NMVS_NC_PC_02"; 5]);
    assert!(codes[5..].iter().all(|c| *c == "NMVS_FI_SE_CLI_01"), "{codes:?}");
    assert!(done["results"].as_array().expect("results")[5..].iter().all(|r| r["alert"].is_null()));
    let all = nmvo.all_alerts("").await;
    assert_eq!(all.iter().filter(|a| a["code"] == "A3").count(), 5);
    assert_eq!(all.iter().filter(|a| a["code"] == "SERIAL_GUESSING").count(), 1);
    // A single request right after is slowed too; a genuine one after the interval is answered.
    w.op_once("verify", &p.req()).await.expect_error(429, "NMVS_FI_SE_CLI_01", None);
    app.advance(Duration::from_secs(10));
    check(&w.verify(&p.req()).await, "NMVS_SUCCESS", true, Some("ACTIVE"), &[]);
}
