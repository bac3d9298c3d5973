//! The end-user client's token: fetched once and shared, renewed ahead of its expiry (a manual
//! timer stands in for time), renewed once after a 401, and a refused login surfaced.

use std::sync::Arc;
use std::time::Duration;

use openmvs_client::{ClientError, EndUserClient, EndUserConfig, ManualTimer, PackInput};
use openmvs_core::roles::Role;

use crate::proxy::{Fault, Proxy};
use crate::world::{BATCH, EXPIRY, PRODUCT, World};

const TOKEN: &str = "/oauth/token";
const VERIFY: &str = "/v1/packs/verify";

fn pack(serial: &str) -> PackInput {
    PackInput::gtin(PRODUCT, serial, BATCH, EXPIRY)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_serves_concurrent_calls_and_is_renewed_once_ahead_of_its_expiry() {
    let w = World::start().await;
    w.seed(&["TOK0001"]).await;
    let creds = w.user(Role::Pharmacy, "DE-PH-1").await;
    let proxy = Proxy::start(&w.de_url, &w.ca_pem).await;
    let timer = Arc::new(ManualTimer::new());
    let client =
        EndUserClient::with_timer(EndUserConfig::new(&proxy.url, &creds.id, &creds.secret), timer.clone())
            .unwrap();

    // Eight calls at once before any token: one fetch, shared.
    let calls = (0..8).map(|_| {
        let c = client.clone();
        tokio::spawn(async move { c.verify(&pack("TOK0001")).await })
    });
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().return_code, "NMVS_SUCCESS");
    }
    assert_eq!(proxy.seen_at(TOKEN).len(), 1, "one token for every concurrent call");

    // The national system's tokens last 3600 s: renewed once less than 360 s are left.
    timer.advance(Duration::from_secs(3239));
    client.verify(&pack("TOK0001")).await.unwrap();
    assert_eq!(proxy.seen_at(TOKEN).len(), 1, "still well within its lifetime");

    timer.advance(Duration::from_secs(2));
    let calls = (0..8).map(|_| {
        let c = client.clone();
        tokio::spawn(async move { c.verify(&pack("TOK0001")).await })
    });
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().return_code, "NMVS_SUCCESS");
    }
    assert_eq!(proxy.seen_at(TOKEN).len(), 2, "renewed ahead of its expiry, once for all callers");
    assert!(proxy.seen_at(VERIFY).iter().all(|s| s.bearer.is_some()));
    proxy.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_renews_the_token_once_and_a_second_401_is_surfaced() {
    let w = World::start().await;
    w.seed(&["TOK0002"]).await;
    let creds = w.user(Role::Pharmacy, "DE-PH-1").await;
    let proxy = Proxy::start(&w.de_url, &w.ca_pem).await;
    let timer = Arc::new(ManualTimer::new());
    let client =
        EndUserClient::with_timer(EndUserConfig::new(&proxy.url, &creds.id, &creds.secret), timer.clone())
            .unwrap();
    client.verify(&pack("TOK0002")).await.unwrap();

    proxy.fail_next(Some(VERIFY), Fault::unauthorized());
    let answer = client.verify(&pack("TOK0002").with_client_trx_id("tok-401-a")).await.unwrap();
    assert_eq!(answer.client_trx_id, "tok-401-a");
    assert_eq!(proxy.seen_at(TOKEN).len(), 2, "the refused token was replaced");
    let tries: Vec<_> = proxy
        .seen_at(VERIFY)
        .into_iter()
        .filter(|s| s.client_trx_id.as_deref() == Some("tok-401-a"))
        .collect();
    assert_eq!(tries.len(), 2, "sent again once");

    proxy.fail_next(Some(VERIFY), Fault::unauthorized());
    proxy.fail_next(Some(VERIFY), Fault::unauthorized());
    let err = client.verify(&pack("TOK0002")).await.unwrap_err();
    assert_eq!((err.status(), err.return_code()), (Some(401), Some("NMVS_FE_AU_01")), "{err}");
    assert_eq!(proxy.seen_at(TOKEN).len(), 3, "one renewal per call, not a loop");
    assert!(timer.sleeps().is_empty(), "a 401 is not waited on");
    proxy.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_a_login_error_with_the_oauth_code() {
    let w = World::start().await;
    let creds = w.user(Role::Pharmacy, "DE-PH-1").await;
    let config = EndUserConfig::new(&w.de_url, &creds.id, "not-the-secret").with_ca_pem(w.ca_pem.clone());
    let client = EndUserClient::with_timer(config, Arc::new(ManualTimer::new())).unwrap();
    match client.verify(&pack("TOK0003")).await.unwrap_err() {
        ClientError::Login { status, error } => {
            assert_eq!((status, error.error.as_str()), (401, "invalid_client"));
        }
        other => panic!("expected a login error, got {other:?}"),
    }
    w.stop().await;
}
