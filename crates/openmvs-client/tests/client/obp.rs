//! The OBP client at the hub over mutual TLS: master data, batches, uploads as JSON, streamed
//! from a reader and from a stream cut mid-line, followed to `DISTRIBUTED` while the relays run,
//! pack states and queries, recall and withdrawal, alerts, the callback, and the hub's refusals
//! surfaced with their codes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openmvs_client::wire::api::AlertStatusRequest;
use openmvs_client::wire::obp::{
    BatchRequest, PackStatesRequest, ProductRequest, RecallRequest, WithdrawRequest,
};
use openmvs_client::{AlertQuery, ClientError, ManualTimer, PackInput, PollOptions};
use openmvs_core::roles::Role;

use crate::proxy::futures_stream;
use crate::world::{BATCH, EXPIRY, PRODUCT, World, product};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_obp_uploads_follows_and_manages_its_packs_over_mutual_tls() {
    let w = Arc::new(World::start().await);
    let relaying = w.relaying_timer();
    let obp = w.obp(&w.acme, relaying.clone());

    assert_eq!(obp.put_product(PRODUCT, &product()).await.unwrap().version, 1);
    let batch =
        obp.put_batch(PRODUCT, BATCH, &BatchRequest { expiry: EXPIRY.into(), markets: None }).await.unwrap();
    assert_eq!(batch.markets, ["DE"]);

    let poll = PollOptions { interval: Duration::from_secs(1), deadline: Duration::from_secs(60) };
    let json = obp.upload_serials(PRODUCT, BATCH, &["OBP0001".into(), "OBP0002".into()]).await.unwrap();
    assert_eq!(json.received, 2);
    let text = obp.upload_reader(PRODUCT, BATCH, &b"OBP0003\nOBP0004\n"[..]).await.unwrap();
    assert_eq!(text.received, 2);
    // Chunks need not end at line ends.
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        vec![Ok(Bytes::from_static(b"OBP00")), Ok(Bytes::from_static(b"05\nOBP0006\n"))];
    let streamed = obp.upload_stream(PRODUCT, BATCH, futures_stream(chunks)).await.unwrap();
    assert_eq!(streamed.received, 2);
    for id in [&json.upload_id, &text.upload_id, &streamed.upload_id] {
        let done = obp.wait_for_upload(id, "DISTRIBUTED", poll).await.unwrap();
        assert_eq!((done.markets["DE"].as_str(), done.rejected_count), ("DISTRIBUTED", 0), "{done:?}");
    }
    assert!(!relaying.timer.sleeps().is_empty(), "the relays ran while the OBP waited");

    // Every serial reached DE.
    let pharmacy = w.end_user(&w.user(Role::Pharmacy, "DE-PH-1").await, Arc::new(ManualTimer::new()));
    for serial in ["OBP0001", "OBP0003", "OBP0005", "OBP0006"] {
        let v = pharmacy.verify(&PackInput::gtin(PRODUCT, serial, BATCH, EXPIRY)).await.unwrap();
        assert_eq!(v.return_code, "NMVS_SUCCESS", "{serial}: {v:?}");
    }
    let q = obp.pack(PRODUCT, "OBP0001").await.unwrap();
    assert_eq!((q.batch.as_deref(), q.markets["DE"].state.as_str()), (Some(BATCH), "ACTIVE"), "{q:?}");

    let states = obp
        .set_pack_states(
            PRODUCT,
            BATCH,
            &PackStatesRequest { state: "STOLEN".into(), undo: false, serials: vec!["OBP0002".into()] },
        )
        .await
        .unwrap();
    assert_eq!((states.results.len(), states.results[0].accepted), (1, true), "{states:?}");

    // An alert raised in DE reaches the OBP, which works it at the hub.
    let unknown = pharmacy.verify(&PackInput::gtin(PRODUCT, "OBPX9999", BATCH, EXPIRY)).await.unwrap();
    let id = unknown.alert.expect("an A3 alert").id;
    w.relay_rounds(3).await;
    let listed = obp.alerts(&AlertQuery::with_status("OPEN")).await.unwrap();
    assert_eq!(listed.alerts.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), [id.as_str()]);
    let change = AlertStatusRequest { status: "INVESTIGATING".into(), classification: None, comment: None };
    assert_eq!(obp.change_alert_status(&id, &change).await.unwrap().alert.status, "INVESTIGATING");
    assert_eq!(obp.comment_alert(&id, "batch records checked").await.unwrap().role, "OBP");
    let detail = obp.alert(&id).await.unwrap();
    assert_eq!((detail.history.len(), detail.comments.len()), (1, 1), "{detail:?}");

    let hook = obp.set_callback("https://127.0.0.1:9/hooks/fmd").await.unwrap();
    assert_eq!(hook.url, "https://127.0.0.1:9/hooks/fmd");
    assert!(!hook.secret.is_empty());
    let recalled = obp
        .recall(
            PRODUCT,
            BATCH,
            &RecallRequest { reason: "label misprint".into(), markets: vec!["DE".into()] },
        )
        .await
        .unwrap();
    assert_eq!(recalled.recalled, ["DE"]);
    let withdrawn = obp
        .withdraw(PRODUCT, &WithdrawRequest { reason: "licence ended".into(), markets: vec!["DE".into()] })
        .await
        .unwrap();
    assert_eq!(withdrawn.withdrawn, ["DE"]);
    assert!(obp.return_codes().await.unwrap().return_codes.iter().any(|c| c.code == "A16"));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hubs_refusals_come_back_with_their_codes_and_fields() {
    let w = World::start().await;
    w.seed(&["REF0001"]).await;
    let timer = Arc::new(ManualTimer::new());

    // Another OBP may not touch acme-pharma's product.
    let other = w.obp(&w.other_obp, timer.clone());
    let err = other.upload_serials(PRODUCT, BATCH, &["REF0002".into()]).await.unwrap_err();
    assert_eq!((err.status(), err.return_code()), (Some(403), Some("NMVS_FE_AU_04")), "{err}");

    // Master data without its name: A16, naming the field.
    let acme = w.obp(&w.acme, timer.clone());
    let err =
        acme.put_product("05601234567892", &ProductRequest { name: None, ..product() }).await.unwrap_err();
    match &err {
        ClientError::Refused { status: 422, body, attempts: 1, .. } => {
            assert_eq!(body.return_code, "A16");
            assert!(body.details.iter().any(|d| d.field == "name"), "{body:?}");
        }
        other => panic!("expected A16, got {other:?}"),
    }
    let err = acme.upload_status("UPL-no-such-upload").await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
    // An upload that never reaches a status is given up at the deadline.
    let upload = acme.upload_serials(PRODUCT, BATCH, &["REF0003".into()]).await.unwrap();
    let poll = PollOptions { interval: Duration::from_secs(5), deadline: Duration::from_secs(20) };
    match acme.wait_for_upload(&upload.upload_id, "DISTRIBUTED", poll).await.unwrap_err() {
        ClientError::DeadlineExceeded { last_status, .. } => assert_ne!(last_status, "DISTRIBUTED"),
        other => panic!("expected the deadline, got {other:?}"),
    }
    assert_eq!(timer.sleeps(), [Duration::from_secs(5); 4]);
    // A key that is no key is refused before any request.
    let bad = openmvs_client::ObpConfig::new(&w.hub_url, b"junk".to_vec(), w.ca_pem.clone());
    let err = openmvs_client::ObpClient::new(bad).unwrap_err();
    assert!(matches!(err, ClientError::Config { field: "identity_pem", .. }), "{err}");
    w.stop().await;
}
