//! One alert, one id, one lifecycle: the pharmacy's market, the market that holds the pack, the
//! hub and the OBP work the same alert, and every change and comment reaches the others once.

use std::time::Duration;

use openmvs_core::alert::{AlertStatus, AlertView, Classification};
use openmvs_core::ids::Location;
use openmvs_core::pack::Command;
use openmvs_core::roles::Role;
use openmvs_national::Actor;
use openmvs_wire::api::{
    AlertChangeView, AlertCommentRequest, AlertCommentView, AlertStatusRequest, PackRequest, PackResponse,
};
use openmvs_wire::hub::{AlertChangeMsg, AlertCommentMsg, Delivery, Envelope, Message};

use crate::harness::*;

fn nmvo(market: &str) -> Actor {
    Actor {
        client_id: format!("nmvo-{market}").into(),
        role: Role::Nmvo,
        market: m(market),
        location: Location::new(&format!("NMVO-{market}")).expect("location"),
    }
}

fn pharmacy(market: &str) -> Actor {
    Actor { client_id: format!("pharmacy-{market}").into(), role: Role::Pharmacy, ..nmvo(market) }
}

fn status(s: &str, classification: Option<&str>, comment: Option<&str>) -> AlertStatusRequest {
    AlertStatusRequest {
        status: s.into(),
        classification: classification.map(str::to_owned),
        comment: comment.map(str::to_owned),
    }
}

async fn at_market(w: &World, market: &str, id: &str) -> AlertView {
    w.national(market).alert(&nmvo(market), id).await.expect("the NMVO reads the alert")
}

async fn at_hub(w: &World, id: &str) -> AlertView {
    w.hub.alert(OBP, id).await.expect("the OBP reads the alert")
}

/// Relays in every direction until nothing moves.
async fn settle(w: &World) {
    loop {
        let n = w.national_relay("DE").await + w.national_relay("FR").await + w.relay_all().await;
        if n == 0 {
            return;
        }
    }
}

/// What both sides must agree on.
fn agreed(a: &AlertView) -> (AlertStatus, Option<Classification>, Vec<String>, Vec<String>) {
    (
        a.status,
        a.classification,
        a.thread.history.iter().map(|c| c.id.clone()).collect(),
        a.thread.comments.iter().map(|c| c.id.clone()).collect(),
    )
}

async fn a_de_alert(w: &World) -> String {
    w.product_and_batch(&["DE", "FR"]).await;
    w.upload(vec!["QZX00000000".into()]).await;
    w.relay_all().await;
    let r = w.pharmacy("DE", Command::Verify, "QZX77777777").await;
    let id = r.alert.expect("an unknown serial alerts").id;
    settle(w).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nmvo_and_the_obp_work_one_alert_under_the_id_the_pharmacy_got() {
    let w = world().await;
    let id = a_de_alert(&w).await;
    assert_eq!(at_hub(&w, &id).await.id, id.as_str(), "the OBP sees the pharmacy's id");

    let v =
        w.hub.change_alert_status(OBP, &id, "INVESTIGATING", None, Some("batch file checked")).await.unwrap();
    assert_eq!(v.status, AlertStatus::Investigating);
    settle(&w).await;
    let de = at_market(&w, "DE", &id).await;
    assert_eq!(de.status, AlertStatus::Investigating, "the OBP's change reached DE");
    let change = &de.thread.history[0];
    assert_eq!(
        (change.by.as_str(), change.role.as_str(), change.from, change.to),
        (OBP, "OBP", AlertStatus::Open, AlertStatus::Investigating)
    );
    assert_eq!(de.thread.comments[0].text, "batch file checked");
    assert_eq!(de.comment.as_deref(), Some("batch file checked"));

    let closing = status("CLOSED", Some("OBP_DATA_ERROR"), None);
    w.national("DE").change_alert_status(&nmvo("DE"), &id, &closing).await.unwrap();
    let comment = AlertCommentRequest { text: "serial missing from the upload of 3 May".into() };
    let c = w.national("DE").comment_alert(&nmvo("DE"), &id, &comment).await.unwrap();
    assert_eq!((c.author.as_str(), c.role.as_str()), ("nmvo-DE", "NMVO"));
    settle(&w).await;
    let hub = at_hub(&w, &id).await;
    assert_eq!((hub.status, hub.classification), (AlertStatus::Closed, Some(Classification::ObpDataError)));
    let de = at_market(&w, "DE", &id).await;
    assert_eq!(agreed(&hub), agreed(&de), "both sides hold the same alert");
    assert_eq!(de.thread.history.len(), 2);
    assert_eq!(de.thread.comments.len(), 2);
    // FR holds no copy: the pack was verified in DE, in DE's own data.
    assert!(w.national("FR").alert(&nmvo("FR"), &id).await.is_err());

    // Each side audited each change with who made it.
    let hub_trail = w.hub.store().audit_by_subject(&format!("alert/{id}")).await.unwrap();
    assert!(hub_trail.iter().any(|r| r.entry.actor == OBP && r.entry.operation == "alert-status"));
    let de_trail = w.national("DE").store().audit_by_subject(&format!("alert/{id}")).await.unwrap();
    assert!(de_trail.iter().any(|r| r.entry.actor == "nmvo-DE" && r.entry.operation == "alert-comment"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_on_both_sides_at_once_settle_alike_and_only_an_explicit_change_reopens() {
    let w = world().await;
    let id = a_de_alert(&w).await;
    // The OBP closes; a second later DE's NMVO, not having heard, starts investigating.
    w.hub.change_alert_status(OBP, &id, "CLOSED", Some("TECHNICAL_ERROR"), None).await.unwrap();
    w.advance(Duration::from_secs(1));
    w.national("DE")
        .change_alert_status(&nmvo("DE"), &id, &status("INVESTIGATING", None, None))
        .await
        .unwrap();
    settle(&w).await;
    let (hub, de) = (at_hub(&w, &id).await, at_market(&w, "DE", &id).await);
    assert_eq!(agreed(&hub), agreed(&de));
    assert_eq!(
        (de.status, de.classification),
        (AlertStatus::Closed, Some(Classification::TechnicalError)),
        "a change decided on an open alert does not reopen a closed one"
    );

    // DE's NMVO reopens it explicitly, having seen it closed.
    w.advance(Duration::from_secs(1));
    w.national("DE")
        .change_alert_status(&nmvo("DE"), &id, &status("ESCALATED", None, Some("new facts")))
        .await
        .unwrap();
    settle(&w).await;
    let (hub, de) = (at_hub(&w, &id).await, at_market(&w, "DE", &id).await);
    assert_eq!(agreed(&hub), agreed(&de));
    assert_eq!(de.status, AlertStatus::Escalated, "an explicit reopening from CLOSED reopens");
    assert_eq!(de.classification, None);

    // Now both close at once with different classifications: the later one stands everywhere.
    w.national("DE")
        .change_alert_status(&nmvo("DE"), &id, &status("CLOSED", Some("OTHER"), None))
        .await
        .unwrap();
    w.advance(Duration::from_secs(1));
    w.hub.change_alert_status(OBP, &id, "CLOSED", Some("FALSIFICATION_CONFIRMED"), None).await.unwrap();
    settle(&w).await;
    let (hub, de) = (at_hub(&w, &id).await, at_market(&w, "DE", &id).await);
    assert_eq!(agreed(&hub), agreed(&de));
    assert_eq!(de.classification, Some(Classification::FalsificationConfirmed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_delivered_again_under_another_message_id_is_kept_once() {
    let w = world().await;
    let id = a_de_alert(&w).await;
    w.national("DE")
        .change_alert_status(&nmvo("DE"), &id, &status("INVESTIGATING", None, Some("x")))
        .await
        .unwrap();
    settle(&w).await;
    // The same change and comment again under new message ids, as a replay from DE's dead
    // letters would send them.
    let de = at_market(&w, "DE", &id).await;
    let env = |n: &str, body| Envelope {
        message_id: format!("MSG-DE-replayed-{n}"),
        origin: "DE".into(),
        ordering_key: GTIN.into(),
        body,
    };
    let again = vec![
        env(
            "1",
            Message::AlertChange(AlertChangeMsg {
                alert_id: id.clone(),
                change: AlertChangeView::from(&de.thread.history[0]),
            }),
        ),
        env(
            "2",
            Message::AlertComment(AlertCommentMsg {
                alert_id: id.clone(),
                comment: AlertCommentView::from(&de.thread.comments[0]),
            }),
        ),
    ];
    let ack = w.hub.apply_from_national(m("DE"), &Delivery { messages: again }).await.unwrap();
    assert!(ack.results.iter().all(|a| a.status == "APPLIED"), "{ack:?}");
    let hub = at_hub(&w, &id).await;
    assert_eq!((hub.thread.history.len(), hub.thread.comments.len()), (1, 1), "held once");
    assert_eq!(w.hub.store().pending().await.unwrap(), 0, "nothing new to send on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inter_market_alert_lives_in_both_markets_under_one_id_and_stays_in_step_in_all_three_places() {
    let w = world().await;
    w.product_and_batch(&["FR"]).await;
    w.upload(vec!["QZX00000000".into()]).await;
    w.relay_all().await;
    // A DE pharmacy verifies an FR-only pack with an unknown serial: FR decides and alerts.
    let r = w.pharmacy("DE", Command::Verify, "QZX66666666").await;
    assert!(r.intermarket);
    let id = r.alert.expect("an alert").id;
    // The pharmacy reads it at once, at home, with the id it was given.
    let mine =
        w.national("DE").alert(&pharmacy("DE"), &id).await.expect("the pharmacy reads its alert in DE");
    assert_eq!((mine.market.as_str(), mine.pack_market.as_str()), ("DE", "FR"));
    settle(&w).await;
    for market in ["DE", "FR"] {
        let listed =
            w.national(market).alerts(&nmvo(market), None, &Default::default(), None, None).await.unwrap();
        assert_eq!(
            listed.alerts.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
            [id.as_str()],
            "{market}"
        );
    }
    let obp = w.hub.alerts(OBP, None, &Default::default(), None, None).await.unwrap();
    assert_eq!(obp.alerts.len(), 1, "the OBP sees it once");

    w.national("DE")
        .change_alert_status(&nmvo("DE"), &id, &status("INVESTIGATING", None, None))
        .await
        .unwrap();
    settle(&w).await;
    w.national("FR")
        .comment_alert(&nmvo("FR"), &id, &AlertCommentRequest { text: "pack seen in FR stock".into() })
        .await
        .unwrap();
    settle(&w).await;
    w.hub.change_alert_status(OBP, &id, "CLOSED", Some("FALSIFICATION_CONFIRMED"), None).await.unwrap();
    settle(&w).await;
    let (de, fr, hub) =
        (at_market(&w, "DE", &id).await, at_market(&w, "FR", &id).await, at_hub(&w, &id).await);
    assert_eq!(agreed(&de), agreed(&hub));
    assert_eq!(agreed(&fr), agreed(&hub));
    assert_eq!(
        (hub.status, hub.thread.history.len(), hub.thread.comments.len()),
        (AlertStatus::Closed, 2, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_error_the_other_market_undid_is_answered_with_its_warning_and_raises_no_alert_anywhere() {
    let w = world().await;
    w.product_and_batch(&["FR"]).await;
    w.upload(vec!["QZX00000000".into()]).await;
    w.relay_all().await;
    // Read with Caps Lock on: every letter came out in lower case.
    let req = PackRequest {
        client_trx_id: Some("trx-caps-lock".into()),
        scheme: Some("GTIN".into()),
        product_code: Some(GTIN.into()),
        serial: Some("qzx00000000".into()),
        batch: Some(BATCH.to_lowercase()),
        expiry: Some(EXPIRY.into()),
        scan: None,
        entry_mode: None,
    };
    let answer = w.national("DE").pack(&pharmacy("DE"), Command::Verify, &req).await.expect("an answer");
    let r = PackResponse::from(&answer);
    assert_eq!((r.return_code.as_str(), r.intermarket, r.alert.is_none()), ("NMVS_FE_SCN_01", true, true));
    let warnings: Vec<&str> = r.warnings.iter().map(|x| x.code.as_str()).collect();
    assert_eq!(warnings, ["LOWERCASE_FIELD"], "FR's finding reaches the DE pharmacy");
    settle(&w).await;
    for market in ["DE", "FR"] {
        assert!(
            w.national(market)
                .alerts(&nmvo(market), None, &Default::default(), None, None)
                .await
                .unwrap()
                .alerts
                .is_empty()
        );
    }
}
