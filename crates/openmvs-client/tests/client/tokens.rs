//! The end-user client's token: fetched once and shared, renewed ahead of its expiry (a manual
//! timer stands in for time), kept in use while a renewal is refused and it is still valid,
//! renewed once after a 401, and a refused login surfaced.

use std::sync::Arc;
use std::time::Duration;

use openmvs_client::{ClientError, EndUserClient, EndUserConfig, ManualTimer, PackInput, RetryPolicy};
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

    // The national system's tokens last 3600 s: renewed once half of that has passed.
    timer.advance(Duration::from_secs(1799));
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
async fn a_renewal_refused_with_503_keeps_the_valid_token_and_is_tried_again_after_retry_after() {
    let w = World::start().await;
    w.seed(&["TOK0004"]).await;
    let creds = w.user(Role::Pharmacy, "DE-PH-1").await;
    let proxy = Proxy::start(&w.de_url, &w.ca_pem).await;
    let timer = Arc::new(ManualTimer::new());
    let client =
        EndUserClient::with_timer(EndUserConfig::new(&proxy.url, &creds.id, &creds.secret), timer.clone())
            .unwrap();
    client.verify(&pack("TOK0004")).await.unwrap();
    let first = client.access_token().await.unwrap();

    // Due for renewal while the token endpoint answers 503: one attempt, the call goes out at
    // once with the held token, and nothing is waited on.
    timer.advance(Duration::from_secs(1800));
    proxy.fail_next(Some(TOKEN), Fault::unavailable(7));
    proxy.fail_next(Some(TOKEN), Fault::unavailable(7));
    client.verify(&pack("TOK0004")).await.unwrap();
    assert_eq!(proxy.seen_at(TOKEN).len(), 2, "one renewal attempt");
    assert_eq!(proxy.seen_at(VERIFY).last().unwrap().bearer.as_deref(), Some(first.as_str()));
    assert!(timer.sleeps().is_empty(), "a renewal with a valid token in hand is not waited on");

    // Not asked again before the Retry-After has passed; then asked, refused again, kept.
    timer.advance(Duration::from_secs(6));
    client.verify(&pack("TOK0004")).await.unwrap();
    assert_eq!(proxy.seen_at(TOKEN).len(), 2, "the server asked for 7 s");
    timer.advance(Duration::from_secs(1));
    client.verify(&pack("TOK0004")).await.unwrap();
    assert_eq!(proxy.seen_at(TOKEN).len(), 3, "tried again after Retry-After");
    assert_eq!(client.access_token().await.unwrap(), first);

    // The next attempt succeeds: a new token from then on.
    timer.advance(Duration::from_secs(7));
    client.verify(&pack("TOK0004")).await.unwrap();
    assert_eq!(proxy.seen_at(TOKEN).len(), 4);
    let second = client.access_token().await.unwrap();
    assert_ne!(second, first);
    assert_eq!(proxy.seen_at(VERIFY).last().unwrap().bearer.as_deref(), Some(second.as_str()));
    assert!(timer.sleeps().is_empty());
    proxy.stop().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_the_token_has_expired_a_refused_renewal_fails_the_call_after_the_retry_policy() {
    let w = World::start().await;
    w.seed(&["TOK0005"]).await;
    let creds = w.user(Role::Pharmacy, "DE-PH-1").await;
    let proxy = Proxy::start(&w.de_url, &w.ca_pem).await;
    let timer = Arc::new(ManualTimer::new());
    let client =
        EndUserClient::with_timer(EndUserConfig::new(&proxy.url, &creds.id, &creds.secret), timer.clone())
            .unwrap();
    client.verify(&pack("TOK0005")).await.unwrap();

    timer.advance(Duration::from_secs(3600));
    for _ in 0..5 {
        proxy.fail_next(Some(TOKEN), Fault::unavailable(2));
    }
    let err = client.verify(&pack("TOK0005")).await.unwrap_err();
    assert_eq!((err.status(), err.return_code()), (Some(503), Some("NMVS_TI_UN_01")), "{err}");
    assert!(err.is_temporary());
    assert_eq!(proxy.seen_at(TOKEN).len(), 6, "the first token, then the five attempts of the policy");
    assert_eq!(timer.sleeps(), vec![Duration::from_secs(2); 4], "each after its Retry-After");
    assert_eq!(proxy.seen_at(VERIFY).len(), 1, "no call went out with the expired token");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_waiting_for_a_first_token_share_a_login_refused_for_load_until_its_retry_after() {
    let w = World::start().await;
    w.seed(&["TOK0006"]).await;
    let creds = w.user(Role::Pharmacy, "DE-PH-1").await;
    let proxy = Proxy::start(&w.de_url, &w.ca_pem).await;
    let timer = Arc::new(ManualTimer::new());
    // One attempt per call, as the offline agent sends them.
    let config = EndUserConfig::new(&proxy.url, &creds.id, &creds.secret).with_retry(RetryPolicy::never());
    let client = EndUserClient::with_timer(config, timer.clone()).unwrap();

    // Eight calls at once, no token yet, and the token endpoint busy: one login is sent, and every
    // call is refused with its 503 and the wait it named, not each after a login of its own.
    proxy.fail_next(Some(TOKEN), Fault::unavailable(5));
    let calls = (0..8).map(|_| {
        let c = client.clone();
        tokio::spawn(async move { c.verify(&pack("TOK0006")).await })
    });
    for call in calls {
        let err = call.await.unwrap().unwrap_err();
        assert_eq!((err.status(), err.return_code()), (Some(503), Some("NMVS_TI_UN_01")), "{err}");
        assert!(
            matches!(err, ClientError::Refused { retry_after: Some(w), .. } if w <= Duration::from_secs(5))
        );
    }
    assert_eq!(proxy.seen_at(TOKEN).len(), 1, "one login for every waiting call");

    // Within the wait: refused without asking; after it: a token, and the call goes out.
    timer.advance(Duration::from_secs(4));
    assert_eq!(client.verify(&pack("TOK0006")).await.unwrap_err().status(), Some(503));
    assert_eq!(proxy.seen_at(TOKEN).len(), 1);
    timer.advance(Duration::from_secs(1));
    assert_eq!(client.verify(&pack("TOK0006")).await.unwrap().return_code, "NMVS_SUCCESS");
    assert_eq!((proxy.seen_at(TOKEN).len(), proxy.seen_at(VERIFY).len()), (2, 1));
    assert!(timer.sleeps().is_empty());
    proxy.stop().await;
    w.stop().await;
}
