//! The hub between national systems: multi-market pack states, alerts for OBPs and their
//! callbacks, OBP pack state changes, and inter-market requests.

use std::time::Duration;

use openmvs_audit::{ChainHead, sign_checkpoint, verify_checkpoint};
use openmvs_core::alert::AlertStatus;
use openmvs_core::ids::Location;
use openmvs_core::pack::{Command, Operation, PackState};
use openmvs_core::return_code::ReturnCode;
use openmvs_core::roles::Role;
use openmvs_hub::{AUDIT_HEAD_OPERATION, Hub, audit_head_subject, received_audit_heads};
use openmvs_national::Actor;
use openmvs_national::{checkpoint_of, signed_head};
use openmvs_wire::api::{AlertView, PackRequest};
use openmvs_wire::hub::{
    AlertMsg, Delivery, Envelope, IntermarketRequest, Message, PackStateMsg, RecallMsg, SignedHead,
};

use crate::harness::*;

fn serials(n: u32) -> Vec<String> {
    (0..n).map(|i| format!("QZX{i:08}")).collect()
}

/// DE and FR hold the product with [`BATCH`] and `n` serials.
async fn two_markets(w: &World, n: u32) {
    w.product_and_batch(&["DE", "FR"]).await;
    w.upload(serials(n)).await;
    w.relay_all().await;
}

/// The state a pharmacy of `market` sees when it verifies `serial`.
async fn state(w: &World, market: &str, serial: &str) -> String {
    let r = w.pharmacy(market, Command::Verify, serial).await;
    r.pack.map(|p| p.state).unwrap_or_else(|| format!("no pack: {}", r.return_code))
}

fn envelope(id: &str, origin: &str, body: Message) -> Envelope {
    Envelope { message_id: id.into(), origin: origin.into(), ordering_key: GTIN.into(), body }
}

fn supplied_in_de(serial: &str) -> Message {
    Message::PackState(PackStateMsg {
        scheme: "GTIN".into(),
        product_code: GTIN.into(),
        serial: serial.into(),
        batch: BATCH.into(),
        state: "SUPPLIED".into(),
        command: "supply".into(),
        market: "DE".into(),
        location: "PH-DE-9".into(),
        at: start().to_rfc3339(),
    })
}

fn alert_from_de(id: &str) -> Message {
    alert_from_de_on(id, "QZX99999999")
}

/// An alert DE raised on `serial`.
fn alert_from_de_on(id: &str, serial: &str) -> Message {
    Message::Alert(AlertMsg {
        alert: AlertView {
            id: id.into(),
            code: "A3".into(),
            return_code: "NMVS_NC_PC_02".into(),
            market: "DE".into(),
            pack_market: None,
            product_code: GTIN.into(),
            serial: serial.into(),
            batch: BATCH.into(),
            location: "PH-DE-1".into(),
            created_at: start().to_rfc3339(),
            status: "OPEN".into(),
            classification: None,
            comment: None,
        },
        owner: OBP.into(),
    })
}

fn statuses(ack: &openmvs_wire::hub::DeliveryAck) -> Vec<&str> {
    ack.results.iter().map(|a| a.status.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supply_in_de_of_a_de_and_fr_pack_reaches_fr_as_supplied_through_the_hub() {
    let w = world().await;
    two_markets(&w, 2).await;
    assert_eq!(w.supply("DE", "QZX00000000").await, "NMVS_SUCCESS");
    assert_eq!(w.national_relay("DE").await, 1, "DE sends the new state to the hub");
    w.relay_all().await;
    assert_eq!(w.link.kinds("FR").last().map(String::as_str), Some("pack-state"));
    assert!(!w.link.kinds("DE").contains(&"pack-state".to_owned()), "DE does not hear its own change");
    assert_eq!(state(&w, "FR", "QZX00000000").await, "SUPPLIED");
    assert_eq!(state(&w, "FR", "QZX00000001").await, "ACTIVE");
    assert_eq!(w.supply("FR", "QZX00000000").await, ReturnCode::PackInactiveStateChange.as_str());
    let left = w.hub_text_containing("QZX00000000");
    assert!(left.is_empty(), "the forwarded serial left the hub once delivered: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_national_message_twice_is_applied_once_and_other_kinds_are_rejected() {
    let w = world().await;
    two_markets(&w, 1).await;
    let d = Delivery { messages: vec![envelope("MSG-DE-1", "DE", supplied_in_de("QZX00000000"))] };
    assert_eq!(statuses(&w.hub.apply_from_national(m("DE"), &d).await.unwrap()), ["APPLIED"]);
    assert_eq!(statuses(&w.hub.apply_from_national(m("DE"), &d).await.unwrap()), ["DUPLICATE"]);
    assert_eq!(w.hub.store().pending().await.unwrap(), 1, "one copy, for FR only");
    w.relay_all().await;
    let fr: Vec<_> = w.link.seen("FR").into_iter().filter(|s| s.kind == "pack-state").collect();
    assert_eq!((fr.len(), fr[0].id.as_str()), (1, "MSG-DE-1-FR"));
    assert_eq!(state(&w, "FR", "QZX00000000").await, "SUPPLIED");

    let recall = Message::Recall(RecallMsg {
        scheme: "GTIN".into(),
        product_code: GTIN.into(),
        batch: BATCH.into(),
        reason: "x".into(),
    });
    let recall = Delivery { messages: vec![envelope("MSG-DE-2", "DE", recall)] };
    let ack = w.hub.apply_from_national(m("DE"), &recall).await.unwrap();
    assert_eq!(statuses(&ack), ["REJECTED"]);
    assert!(ack.results[0].error.as_deref().unwrap().contains("not recall"), "{ack:?}");
    // FR's certificate cannot speak for DE.
    let forged = Delivery { messages: vec![envelope("MSG-DE-3", "DE", supplied_in_de("QZX00000000"))] };
    let ack = w.hub.apply_from_national(m("FR"), &forged).await.unwrap();
    assert_eq!(statuses(&ack), ["REJECTED"]);
    assert!(ack.results[0].error.as_deref().unwrap().contains("sent by FR"), "{ack:?}");
    assert_eq!(w.hub.store().pending().await.unwrap(), 0, "nothing rejected is forwarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_alert_in_de_reaches_the_owning_obp_through_the_hub() {
    let w = world().await;
    two_markets(&w, 1).await;
    let r = w.pharmacy("DE", Command::Verify, "QZX77777777").await;
    assert_eq!(r.alert.as_ref().map(|a| a.code.as_str()), Some("A3"));
    assert_eq!(w.national_relay("DE").await, 1);
    let list = w.hub.alerts(OBP, None, &Default::default(), None, None).await.unwrap();
    assert_eq!(list.alerts.len(), 1);
    let a = &list.alerts[0];
    assert_eq!((a.code.as_str(), a.market.as_str(), a.serial.as_str()), ("A3", "DE", "QZX77777777"));
    assert_eq!(a.id.as_str(), r.alert.unwrap().id, "one alert, one id");
    assert!(w.hub.alerts(OTHER_OBP, None, &Default::default(), None, None).await.unwrap().alerts.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_forwarded_twice_is_stored_once_and_posted_once_with_a_valid_signature_after_a_retry() {
    let w = world().await;
    two_markets(&w, 1).await;
    let cb = w.hub.set_callback(OBP, "https://obp-one.example/fmd/events").await.unwrap();
    assert_eq!(cb.secret.len(), 64);
    let e = w.hub.set_callback(OBP, "http://obp-one.example/fmd").await.unwrap_err();
    assert_eq!((e.http_status(), e.details[0].field.as_str()), (400, "url"));

    let first = Delivery { messages: vec![envelope("MSG-DE-A1", "DE", alert_from_de("ALR-DE-1"))] };
    // The same alert again under a new message id: a replay from DE's dead letters.
    let replay = Delivery { messages: vec![envelope("MSG-DE-A2", "DE", alert_from_de("ALR-DE-1"))] };
    assert_eq!(statuses(&w.hub.apply_from_national(m("DE"), &first).await.unwrap()), ["APPLIED"]);
    assert_eq!(statuses(&w.hub.apply_from_national(m("DE"), &first).await.unwrap()), ["DUPLICATE"]);
    assert_eq!(statuses(&w.hub.apply_from_national(m("DE"), &replay).await.unwrap()), ["DUPLICATE"]);
    let alerts = w.hub.alerts(OBP, None, &Default::default(), None, None).await.unwrap().alerts;
    assert_eq!(alerts.len(), 1);

    w.callbacks.answer(&[503]);
    assert_eq!(w.hub.relay_once().await.unwrap(), 0, "the endpoint failed");
    assert_eq!(w.relay_all().await, 0, "and is not asked again before its backoff");
    w.advance(Duration::from_secs(2));
    assert_eq!(w.relay_all().await, 1);
    w.advance(Duration::from_secs(120));
    assert_eq!(w.relay_all().await, 0, "acknowledged events are not posted again");

    let posts = w.callbacks.posts();
    assert_eq!(posts.iter().map(|p| p.status).collect::<Vec<_>>(), [503, 200]);
    for p in &posts {
        assert_eq!(p.url, "https://obp-one.example/fmd/events");
        assert_eq!(p.signature, Hub::sign_callback(&cb.secret, &p.body), "the OBP can check it");
    }
    assert_eq!(posts[0].body, posts[1].body, "the retry posts the same batch");
    let body: serde_json::Value = serde_json::from_str(&posts[1].body).unwrap();
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0]["event"].as_str(), events[0]["alert"]["id"].as_str()),
        (Some("alert"), Some(alerts[0].id.as_str()))
    );
    assert!(events[0]["event_id"].as_str().is_some_and(|id| !id.is_empty()), "{body}");
    assert_ne!(posts[1].signature, Hub::sign_callback("another secret", &posts[1].body));
}

/// The events of every callback POST so far, in order.
fn posted_events(w: &World) -> Vec<serde_json::Value> {
    w.callbacks
        .posts()
        .iter()
        .flat_map(|p| {
            let body: serde_json::Value = serde_json::from_str(&p.body).unwrap();
            body["events"].as_array().unwrap().clone()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_alerts_for_one_obp_arrives_in_a_few_signed_batches_in_order() {
    let w = world().await;
    two_markets(&w, 1).await;
    let cb = w.hub.set_callback(OBP, "https://obp-one.example/fmd").await.unwrap();
    // 250 alerts on one product, as a storm of unknown serials would raise them.
    let guesses: Vec<String> = (0..250).map(|i| format!("GUESS{i:04}")).collect();
    for (n, chunk) in guesses.chunks(50).enumerate() {
        let messages = chunk
            .iter()
            .map(|serial| {
                envelope(
                    &format!("MSG-{n}-{serial}"),
                    "DE",
                    alert_from_de_on(&format!("ALR-{serial}"), serial),
                )
            })
            .collect();
        let ack = w.hub.apply_from_national(m("DE"), &Delivery { messages }).await.unwrap();
        assert!(statuses(&ack).iter().all(|s| *s == "APPLIED"), "{ack:?}");
    }
    // The first batch fails: it is posted again, whole, after its backoff.
    w.callbacks.answer(&[500]);
    assert_eq!(w.relay_all().await, 0);
    w.advance(Duration::from_secs(2));
    assert_eq!(w.relay_all().await, 250);
    let posts = w.callbacks.posts();
    let max = openmvs_hub::MAX_EVENTS_PER_CALLBACK;
    assert_eq!(posts.len(), 1 + 250_usize.div_ceil(max), "a few calls, not one per alert");
    for p in &posts {
        assert_eq!(p.signature, Hub::sign_callback(&cb.secret, &p.body));
    }
    let events = posted_events(&w);
    assert_eq!(events.len(), max + 250, "the failed batch, then every event once");
    let delivered = &events[max..];
    let posted: Vec<&str> = delivered.iter().map(|e| e["alert"]["serial"].as_str().unwrap()).collect();
    assert_eq!(posted, guesses, "each alert once, in the order they were raised");
    let listed = w.hub.alerts(OBP, None, &Default::default(), Some(1000), None).await.unwrap().alerts;
    let mut hub_ids: Vec<&str> = listed.iter().map(|a| a.id.as_str()).collect();
    let mut posted_ids: Vec<&str> = delivered.iter().map(|e| e["alert"]["id"].as_str().unwrap()).collect();
    hub_ids.sort_unstable();
    posted_ids.sort_unstable();
    assert_eq!(posted_ids, hub_ids, "under the ids the OBP lists");
    let mut event_ids: Vec<&str> = delivered.iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    event_ids.sort_unstable();
    event_ids.dedup();
    assert_eq!(event_ids.len(), 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recalls_and_withdrawals_go_to_the_obp_callback_too() {
    let w = world().await;
    two_markets(&w, 1).await;
    w.hub.set_callback(OBP, "https://obp-one.example/fmd").await.unwrap();
    w.hub.recall(OBP, GTIN, BATCH, "contamination", &["DE".to_owned()]).await.unwrap();
    w.hub.withdraw(OBP, GTIN, "authorisation ended", &["FR".to_owned()]).await.unwrap();
    w.relay_all().await;
    assert_eq!(w.callbacks.posts().len(), 1, "both in one batch");
    let events = posted_events(&w);
    assert_eq!(events.len(), 2);
    assert_eq!((events[0]["event"].as_str(), events[0]["markets"][0].as_str()), (Some("recall"), Some("DE")));
    assert_eq!(events[0]["batch"].as_str(), Some(BATCH));
    assert_eq!(
        (events[1]["event"].as_str(), events[1]["markets"][0].as_str()),
        (Some("withdrawal"), Some("FR"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_obp_moves_its_alert_through_the_lifecycle_and_another_obp_gets_404() {
    let w = world().await;
    two_markets(&w, 1).await;
    for (i, id) in ["ALR-DE-1", "ALR-DE-2"].iter().enumerate() {
        let d = Delivery { messages: vec![envelope(&format!("MSG-{i}"), "DE", alert_from_de(id))] };
        w.hub.apply_from_national(m("DE"), &d).await.unwrap();
    }
    let page = w.hub.alerts(OBP, Some("OPEN"), &Default::default(), Some(1), None).await.unwrap();
    assert_eq!(page.alerts.len(), 1);
    let next = w
        .hub
        .alerts(
            OBP,
            Some("OPEN"),
            &Default::default(),
            Some(1),
            page.next_cursor.as_ref().map(|c| c.as_str()),
        )
        .await
        .unwrap();
    assert_eq!((next.alerts.len(), next.next_cursor), (1, None));
    let id = page.alerts[0].id.to_string();

    let v =
        w.hub.change_alert_status(OBP, &id, "INVESTIGATING", None, Some("asked the pharmacy")).await.unwrap();
    assert_eq!((v.status.as_str(), v.comment.as_deref()), ("INVESTIGATING", Some("asked the pharmacy")));
    let e = w.hub.change_alert_status(OBP, &id, "CLOSED", None, None).await.unwrap_err();
    assert_eq!((e.http_status(), e.details[0].field.as_str()), (400, "classification"));
    let e = w.hub.change_alert_status(OBP, &id, "OPEN", None, None).await.unwrap_err();
    assert_eq!((e.http_status(), e.details[0].field.as_str()), (400, "status"));
    let closed = w.hub.change_alert_status(OBP, &id, "CLOSED", Some("TECHNICAL_ERROR"), None).await.unwrap();
    assert_eq!(
        (closed.status.as_str(), closed.classification.map(|c| c.as_str())),
        ("CLOSED", Some("TECHNICAL_ERROR"))
    );
    assert_eq!(closed.comment.as_deref(), Some("asked the pharmacy"), "the last comment stays");
    assert_eq!(w.hub.alert(OBP, &id).await.unwrap(), closed);
    assert_eq!(
        w.hub.alerts(OBP, Some("OPEN"), &Default::default(), None, None).await.unwrap().alerts.len(),
        1
    );
    // The OBP's workbench narrows its list as the NMVO's does.
    let by = |q: &'static [(&'static str, &'static str)]| {
        openmvs_core::alert::AlertCriteria::parse(|k| q.iter().find(|(n, _)| *n == k).map(|(_, v)| *v))
            .unwrap()
    };
    let listed = |c: openmvs_core::alert::AlertCriteria| {
        let hub = w.hub.clone();
        async move { hub.alerts(OBP, None, &c, None, None).await.unwrap().alerts.len() }
    };
    assert_eq!(listed(by(&[("market", "DE")])).await, 2);
    assert_eq!(listed(by(&[("market", "FR")])).await, 0);
    assert_eq!(listed(by(&[("classification", "TECHNICAL_ERROR")])).await, 1);
    assert_eq!(listed(by(&[("code", "A24")])).await, 0);

    assert_eq!(w.hub.alert(OTHER_OBP, &id).await.unwrap_err().http_status(), 404);
    let e = w
        .hub
        .change_alert_status(OTHER_OBP, next.alerts[0].id.as_str(), "ESCALATED", None, None)
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), 404);
    let stored = w.hub.store().alert(&next.alerts[0].id.as_str().into()).await.unwrap().unwrap();
    assert_eq!(stored.status, AlertStatus::Open, "another OBP changed nothing");
    assert!(w.hub.alerts(OTHER_OBP, None, &Default::default(), None, None).await.unwrap().alerts.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_obp_stolen_report_reaches_both_markets_and_is_refused_after_a_recall_there() {
    let w = world().await;
    two_markets(&w, 3).await;
    let sent = ["QZX00000000", "QZX55555555", "QZX00000000", "QZX#1"].map(String::from);
    let a = w.hub.set_pack_states(OBP, GTIN, BATCH, "STOLEN", &sent).await.unwrap();
    let codes: Vec<_> = a.results.iter().map(|r| (r.accepted, r.return_code)).collect();
    assert_eq!(
        codes,
        [
            (true, ReturnCode::Success),
            (false, ReturnCode::NotFound),
            (false, ReturnCode::BulkDuplicateSerial),
            (false, ReturnCode::MalformedRequest)
        ]
    );
    assert_eq!((a.markets.clone(), a.recalled.clone()), (vec![m("DE"), m("FR")], vec![]));
    w.relay_all().await;
    assert_eq!(state(&w, "DE", "QZX00000000").await, "STOLEN");
    assert_eq!(state(&w, "FR", "QZX00000000").await, "STOLEN");
    assert!(w.hub_text_containing("QZX00000000").is_empty(), "no serial stays at the hub");

    w.hub.recall(OBP, GTIN, BATCH, "contamination", &["DE".to_owned()]).await.unwrap();
    let a = w.hub.set_pack_states(OBP, GTIN, BATCH, "STOLEN", &["QZX00000001".to_owned()]).await.unwrap();
    assert_eq!((a.markets.clone(), a.recalled.clone()), (vec![m("FR")], vec![m("DE")]));
    w.relay_all().await;
    assert_eq!(state(&w, "FR", "QZX00000001").await, "STOLEN");
    assert_eq!(state(&w, "DE", "QZX00000001").await, "ACTIVE", "DE recalled the batch: no change there");

    w.hub.recall(OBP, GTIN, BATCH, "contamination", &["FR".to_owned()]).await.unwrap();
    w.relay_all().await;
    let a = w.hub.set_pack_states(OBP, GTIN, BATCH, "DESTROYED", &["QZX00000002".to_owned()]).await.unwrap();
    assert_eq!((a.results[0].accepted, a.results[0].return_code), (false, ReturnCode::BatchRecalled));
    assert!(a.markets.is_empty());
    assert_eq!(w.hub.store().pending().await.unwrap(), 0, "nothing is sent after the recall");

    let e = w.hub.set_pack_states(OBP, GTIN, BATCH, "SUPPLIED", &sent).await.unwrap_err();
    assert_eq!((e.http_status(), e.details[0].field.as_str()), (400, "state"));
    let e = w.hub.set_pack_states(OTHER_OBP, GTIN, BATCH, "STOLEN", &sent).await.unwrap_err();
    assert_eq!(e.http_status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_obp_undoes_its_check_out_in_every_market_and_nothing_else() {
    let w = world().await;
    two_markets(&w, 3).await;
    let one = |s: &str| vec![s.to_owned()];
    let a = w.hub.set_pack_states(OBP, GTIN, BATCH, "CHECKED_OUT", &one("QZX00000000")).await.unwrap();
    assert!(a.results[0].accepted && !a.undo);
    w.hub.set_pack_states(OBP, GTIN, BATCH, "STOLEN", &one("QZX00000001")).await.unwrap();
    w.relay_all().await;
    for market in ["DE", "FR"] {
        assert_eq!(state(&w, market, "QZX00000000").await, "CHECKED_OUT", "{market}");
    }

    // Only a check-out is undone through the hub; a stolen pack never is.
    let e = w.hub.undo_pack_states(OBP, GTIN, BATCH, "STOLEN", &one("QZX00000001")).await.unwrap_err();
    assert_eq!((e.http_status(), e.details[0].field.as_str()), (400, "state"));
    assert!(e.details[0].message.contains("never be undone"), "{e:?}");
    let e =
        w.hub.undo_pack_states(OTHER_OBP, GTIN, BATCH, "CHECKED_OUT", &one("QZX00000000")).await.unwrap_err();
    assert_eq!(e.http_status(), 403);

    let a = w.hub.undo_pack_states(OBP, GTIN, BATCH, "CHECKED_OUT", &one("QZX00000000")).await.unwrap();
    assert_eq!((a.undo, a.state, a.markets.clone()), (true, PackState::CheckedOut, vec![m("DE"), m("FR")]));
    assert_eq!((a.results[0].accepted, a.results[0].return_code), (true, ReturnCode::Success));
    // An undo of a pack this OBP did not check out is carried too, and changes nothing there.
    let a = w.hub.undo_pack_states(OBP, GTIN, BATCH, "CHECKED_OUT", &one("QZX00000001")).await.unwrap();
    assert!(a.results[0].accepted);
    w.relay_all().await;
    for market in ["DE", "FR"] {
        assert_eq!(state(&w, market, "QZX00000000").await, "ACTIVE", "{market}");
        assert_eq!(state(&w, market, "QZX00000001").await, "STOLEN", "{market}");
    }
    let r = w.pharmacy("DE", Command::Set(Operation::Supply), "QZX00000000").await;
    assert_eq!(r.return_code, "NMVS_SUCCESS", "the pack is dispensable again: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_de_pharmacy_verifying_a_fr_only_product_gets_fr_answer_through_the_hub() {
    let w = world().await;
    w.product_and_batch(&["FR"]).await;
    w.upload(serials(1)).await;
    w.relay_all().await;
    let r = w.pharmacy("DE", Command::Verify, "QZX00000000").await;
    assert_eq!((r.return_code.as_str(), r.intermarket), ("NMVS_SUCCESS", true));
    assert_eq!(r.pack.map(|p| p.state).as_deref(), Some("ACTIVE"));
    assert_eq!(*w.queries.asked.lock().unwrap(), [m("FR")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_no_market_knows_is_answered_with_market_null() {
    let w = world().await;
    let req = IntermarketRequest {
        market: "DE".into(),
        client_id: "pharmacy-DE".into(),
        role: "PHARMACY".into(),
        location: "PH-DE-1".into(),
        command: "verify".into(),
        client_trx_id: "t-1".into(),
        scheme: "GTIN".into(),
        product_code: "05601234567892".into(),
        serial: "QZX00000000".into(),
        batch: BATCH.into(),
        expiry: EXPIRY.into(),
    };
    let a = w.hub.intermarket(req.clone()).await.unwrap();
    assert_eq!((a.market, a.response), (None, None));
    assert!(w.queries.asked.lock().unwrap().is_empty(), "no market was asked");

    let actor = Actor {
        client_id: "pharmacy-DE".into(),
        role: Role::Pharmacy,
        market: m("DE"),
        location: Location::new("PH-DE-1").unwrap(),
    };
    let body = PackRequest {
        client_trx_id: Some("t-2".into()),
        scheme: Some("GTIN".into()),
        product_code: Some("05601234567892".into()),
        serial: Some("QZX00000000".into()),
        batch: Some(BATCH.into()),
        expiry: Some(EXPIRY.into()),
        scan: None,
        entry_mode: None,
    };
    let r = w.national("DE").pack(&actor, Command::Verify, &body).await.unwrap();
    assert_eq!(r.code, ReturnCode::ProductUnknown);

    let e = w.hub.intermarket(IntermarketRequest { product_code: "123".into(), ..req }).await.unwrap_err();
    assert_eq!((e.http_status(), e.details[0].field.as_str()), (400, "product_code"));
}

/// A national system that never answers; it counts the questions it holds at once.
#[derive(Default)]
struct Silent {
    holding: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

/// A question [`Silent`] holds, counted until the asker gives up on it.
struct Held<'a>(&'a Silent);

impl Held<'_> {
    fn new(s: &Silent) -> Held<'_> {
        use std::sync::atomic::Ordering;
        let now = s.holding.fetch_add(1, Ordering::SeqCst) + 1;
        s.most.fetch_max(now, Ordering::SeqCst);
        Held(s)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.holding.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl openmvs_hub::NationalQueries for Silent {
    fn intermarket(
        &self,
        _market: openmvs_core::ids::MarketCode,
        _req: IntermarketRequest,
    ) -> openmvs_store::BoxFuture<'_, Result<openmvs_wire::hub::IntermarketAnswer, String>> {
        Box::pin(async move {
            let _held = Held::new(self);
            std::future::pending().await
        })
    }

    fn pack_state(
        &self,
        _market: openmvs_core::ids::MarketCode,
        _query: openmvs_wire::hub::PackQuery,
    ) -> openmvs_store::BoxFuture<'_, Result<openmvs_wire::hub::PackQueryAnswer, String>> {
        Box::pin(async move {
            let _held = Held::new(self);
            std::future::pending().await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_market_that_holds_the_product_but_does_not_answer_in_budget_is_named_unreachable_not_unknown() {
    let w = world().await;
    w.product_and_batch(&["FR"]).await;
    let mut config = w.hub.config().clone();
    config.intermarket_budget = Duration::from_millis(50);
    let clock: std::sync::Arc<dyn openmvs_core::time::Clock> = w.clock.clone();
    let hub = Hub::new(w.hub_store.clone(), clock, config, None)
        .with_queries(std::sync::Arc::new(Silent::default()));
    let req = IntermarketRequest {
        market: "DE".into(),
        client_id: "pharmacy-DE".into(),
        role: "PHARMACY".into(),
        location: "PH-DE-1".into(),
        command: "verify".into(),
        client_trx_id: "t-1".into(),
        scheme: "GTIN".into(),
        product_code: GTIN.into(),
        serial: "QZX00000000".into(),
        batch: BATCH.into(),
        expiry: EXPIRY.into(),
    };
    // The hub was reached and answers; the answer says which market could not be.
    let a = hub.intermarket(req).await.unwrap();
    assert_eq!((a.market, a.response, a.unreachable), (None, None, vec!["FR".to_owned()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_obp_pack_query_asks_each_market_and_shows_one_that_does_not_answer_as_unreachable() {
    let w = world().await;
    w.product_and_batch(&["DE", "FR"]).await;
    w.upload(vec!["QZX00000001".into(), "QZX00000002".into()]).await;
    w.relay_all().await;
    assert_eq!(w.supply("DE", "QZX00000001").await, "NMVS_SUCCESS");
    w.national_relay("DE").await;
    w.relay_all().await;

    let a = w.hub.pack(OBP, GTIN, "QZX00000001").await.unwrap();
    assert_eq!(a.batch.as_deref(), Some(BATCH));
    let states: Vec<(String, String)> =
        a.markets.iter().map(|(m, p)| (m.to_string(), p.state.clone())).collect();
    assert_eq!(states, [("DE".into(), "SUPPLIED".into()), ("FR".into(), "SUPPLIED".into())]);
    assert!(a.markets.values().all(|p| p.reasons.is_empty()));

    // Another OBP's product is not revealed; a serial never uploaded is unknown; garbage is 400.
    let e = w.hub.pack(OTHER_OBP, GTIN, "QZX00000001").await.unwrap_err();
    assert_eq!((e.http_status(), e.details[0].field.as_str()), (404, "product_code"));
    let e = w.hub.pack(OBP, GTIN, "QZX00000009").await.unwrap_err();
    assert_eq!((e.http_status(), e.details[0].field.as_str()), (404, "serial"));
    let e = w.hub.pack(OBP, GTIN, "bad serial").await.unwrap_err();
    assert_eq!((e.http_status(), e.details[0].field.as_str()), (400, "serial"));

    // No market answers within the budget: each shows UNKNOWN/UNREACHABLE. The markets are asked
    // at once, not one after another: both questions were held together (one after another,
    // the first would have been given up before the second was asked). The budget is long
    // enough for both to be asked on a busy machine; nothing is timed.
    let mut config = w.hub.config().clone();
    config.intermarket_budget = Duration::from_secs(2);
    let clock: std::sync::Arc<dyn openmvs_core::time::Clock> = w.clock.clone();
    let silent = std::sync::Arc::new(Silent::default());
    let hub = Hub::new(w.hub_store.clone(), clock, config, None).with_queries(silent.clone());
    let a = hub.pack(OBP, GTIN, "QZX00000002").await.unwrap();
    assert_eq!(
        silent.most.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the markets were asked one after another"
    );
    assert_eq!(silent.holding.load(std::sync::atomic::Ordering::SeqCst), 0, "every question was given up");
    assert_eq!(a.batch, None);
    assert_eq!(a.markets.len(), 2);
    for p in a.markets.values() {
        assert_eq!(
            (p.state.as_str(), p.reasons.as_slice()),
            ("UNKNOWN", ["UNREACHABLE".to_owned()].as_slice())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_national_audit_head_is_kept_in_the_hub_trail_and_read_back_as_the_latest_of_its_market() {
    let w = world().await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let head = |market: &str, seq: u64| {
        let chain = ChainHead { market: market.into(), seq, hash: [u8::try_from(seq).unwrap(); 32] };
        sign_checkpoint(&chain, start().unix_millis(), &key)
    };
    let de = w.national("DE");
    assert!(de.send_audit_head(&head("DE", 40)).await.unwrap(), "queued for the hub");
    assert!(de.send_audit_head(&head("DE", 57)).await.unwrap());
    assert!(!de.send_audit_head(&head("FR", 9)).await.unwrap(), "DE sends only its own market's heads");
    assert_eq!(w.national_relay("DE").await, 2, "both heads reach the hub");

    let store = w.hub.store();
    let heads = received_audit_heads(store.as_ref(), None).await.unwrap();
    assert_eq!(heads, [signed_head(&head("DE", 57))], "the latest head of DE");
    assert_eq!(received_audit_heads(store.as_ref(), Some("DE")).await.unwrap(), heads);
    assert!(received_audit_heads(store.as_ref(), Some("FR")).await.unwrap().is_empty());
    let cp = checkpoint_of(&heads[0]).unwrap();
    verify_checkpoint(&cp, &key.verifying_key()).expect("the head read back is the one DE signed");
    let records = store.audit_by_subject(&audit_head_subject("DE")).await.unwrap();
    assert_eq!(records.len(), 2, "each head is one record of the hub's own trail");
    assert_eq!(records[1].entry.operation, AUDIT_HEAD_OPERATION);
    assert_eq!(records[1].entry.actor, "DE");
    assert_eq!(records[1].entry.market, openmvs_store::hub::HUB_AUDIT_MARKET);

    // A national system speaks for its own market only, and a head must have its shape.
    let from_fr =
        |id: &str, h: SignedHead| Delivery { messages: vec![envelope(id, "FR", Message::AuditHead(h))] };
    let ack =
        w.hub.apply_from_national(m("FR"), &from_fr("MSG-FR-1", signed_head(&head("DE", 99)))).await.unwrap();
    assert_eq!(statuses(&ack), ["REJECTED"]);
    assert!(ack.results[0].error.as_deref().unwrap().contains("of market 'DE' sent by FR"), "{ack:?}");
    let mut bad = signed_head(&head("FR", 3));
    bad.signature.truncate(10);
    let ack = w.hub.apply_from_national(m("FR"), &from_fr("MSG-FR-2", bad)).await.unwrap();
    assert_eq!(statuses(&ack), ["REJECTED"]);
    assert!(ack.results[0].error.as_deref().unwrap().contains("signature: exactly 128"), "{ack:?}");
    assert_eq!(received_audit_heads(store.as_ref(), None).await.unwrap(), heads, "nothing rejected is kept");
}
