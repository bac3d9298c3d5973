//! Retries as a client of a busy or unreachable system makes them: 503 and 429 waited out as
//! `Retry-After` says and sent again with the same `client_trx_id`, an answer cut off sent again
//! only when the server deduplicates the request, no connection retried with a capped backoff,
//! and every other 4xx returned at once with its error body.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use openmvs_client::{ClientError, EndUserClient, EndUserConfig, ManualTimer, PackInput, RetryPolicy};
use openmvs_core::roles::Role;

use crate::proxy::{Fault, Proxy};
use crate::world::{BATCH, EXPIRY, PRODUCT, World};

const SUPPLY: &str = "/v1/packs/supply";

fn pack(serial: &str) -> PackInput {
    PackInput::gtin(PRODUCT, serial, BATCH, EXPIRY)
}

struct Setup {
    w: World,
    proxy: Proxy,
    timer: Arc<ManualTimer>,
    client: EndUserClient,
}

async fn setup(serials: &[&str], retry: RetryPolicy) -> Setup {
    let w = World::start().await;
    w.seed(serials).await;
    let creds = w.user(Role::Pharmacy, "DE-PH-1").await;
    let proxy = Proxy::start(&w.de_url, &w.ca_pem).await;
    let timer = Arc::new(ManualTimer::new());
    let config = EndUserConfig::new(&proxy.url, &creds.id, &creds.secret).with_retry(retry);
    let client = EndUserClient::with_timer(config, timer.clone()).unwrap();
    Setup { w, proxy, timer, client }
}

impl Setup {
    async fn stop(self) {
        self.proxy.stop().await;
        self.w.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_then_a_429_are_waited_out_and_sent_again_with_the_same_client_trx_id() {
    let s = setup(&["RTY0001"], RetryPolicy::default()).await;
    s.proxy.fail_next(Some(SUPPLY), Fault::unavailable(3));
    s.proxy.fail_next(Some(SUPPLY), Fault::rate_limited(1));
    let answer = s.client.supply(&pack("RTY0001")).await.unwrap();
    assert_eq!((answer.accepted, answer.pack.as_ref().unwrap().state.as_str()), (true, "SUPPLIED"));

    let tries = s.proxy.seen_at(SUPPLY);
    assert_eq!(tries.len(), 3, "{tries:?}");
    let generated = tries[0].client_trx_id.clone().expect("a generated client_trx_id");
    assert!(tries.iter().all(|t| t.client_trx_id.as_deref() == Some(generated.as_str())), "{tries:?}");
    assert_eq!(answer.client_trx_id, generated);
    assert_eq!(s.timer.sleeps(), [Duration::from_secs(3), Duration::from_secs(1)], "as Retry-After said");

    // The same request once more, as an offline queue would send it: the first answer again.
    let again = s.client.supply(&pack("RTY0001").with_client_trx_id(&generated)).await.unwrap();
    assert_eq!((again.trx_id, again.accepted), (answer.trx_id, true), "a replay, not a second supply");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_for_load_stop_at_the_last_attempt_or_a_wait_beyond_the_policy() {
    let policy = RetryPolicy { max_attempts: 3, ..RetryPolicy::default() };
    let s = setup(&["RTY0002"], policy).await;
    for _ in 0..3 {
        s.proxy.fail_next(Some(SUPPLY), Fault::unavailable(2));
    }
    match s.client.supply(&pack("RTY0002")).await.unwrap_err() {
        ClientError::Refused { status, body, retry_after, attempts } => {
            assert_eq!((status, body.return_code.as_str()), (503, "NMVS_TI_UN_01"));
            assert_eq!((retry_after, attempts), (Some(Duration::from_secs(2)), 3));
            assert_eq!(body.details[0].field, "proxy");
        }
        other => panic!("expected the last 503, got {other:?}"),
    }
    assert_eq!(s.timer.sleeps(), [Duration::from_secs(2); 2]);

    // A wait longer than the policy's is the caller's to decide: returned at once.
    s.proxy.fail_next(Some(SUPPLY), Fault::rate_limited(3600));
    let err = s.client.supply(&pack("RTY0002")).await.unwrap_err();
    assert!(err.is_temporary(), "{err}");
    assert_eq!(err.status(), Some(429));
    assert_eq!(s.timer.sleeps().len(), 2, "no wait of an hour");
    assert_eq!(s.proxy.seen_at(SUPPLY).len(), 4);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_4xx_are_not_retried_and_carry_their_error_body() {
    let s = setup(&["RTY0003"], RetryPolicy::default()).await;
    // A product code that fails its check digit.
    let bad = PackInput::gtin("09501101530004", "RTY0003", BATCH, EXPIRY);
    let err = s.client.supply(&bad).await.unwrap_err();
    let body = err.error_body().unwrap_or_else(|| panic!("an error body: {err:?}"));
    assert_eq!((err.status(), body.return_code.as_str()), (Some(400), "NMVS_FE_GR_01"));
    assert_eq!(body.details[0].field, "product_code", "{body:?}");
    assert!(!err.is_temporary());

    // A client_trx_id used before for another request.
    s.client.supply(&pack("RTY0003").with_client_trx_id("rty-409")).await.unwrap();
    let err = s.client.destroy(&pack("RTY0003").with_client_trx_id("rty-409")).await.unwrap_err();
    assert_eq!((err.status(), err.return_code()), (Some(409), Some("NMVS_TE_TX_01")), "{err}");

    // A scan that lost its group separator (no serial remains) names the field.
    let lost_gs = "]d201095011015300031730123110CLI121RTY0003";
    let err = s.client.verify(&PackInput::scan(lost_gs)).await.unwrap_err();
    assert_eq!((err.status(), err.return_code()), (Some(400), Some("NMVS_TE_XM_02")), "{err}");
    assert_eq!(err.error_body().unwrap().details[0].field, "scan");

    let tries = s.proxy.seen().into_iter().filter(|t| t.path.starts_with("/v1/")).count();
    assert_eq!(tries, 4, "each sent once");
    assert!(s.timer.sleeps().is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_cut_off_is_sent_again_only_when_the_server_deduplicates_it() {
    let s = setup(&["RTY0004"], RetryPolicy::default()).await;
    // A supply: deduplicated by its client_trx_id, so sent again.
    s.proxy.fail_next(Some(SUPPLY), Fault::CutOff);
    let answer = s.client.supply(&pack("RTY0004").with_client_trx_id("rty-cut")).await.unwrap();
    assert_eq!(answer.return_code, "NMVS_SUCCESS");
    let tries = s.proxy.seen_at(SUPPLY);
    assert_eq!(tries.len(), 2);
    assert!(tries.iter().all(|t| t.client_trx_id.as_deref() == Some("rty-cut")));
    assert_eq!(s.timer.sleeps().len(), 1);
    let backoff = s.timer.sleeps()[0];
    assert!(backoff >= Duration::from_millis(100) && backoff <= Duration::from_millis(200), "{backoff:?}");

    // An alert comment is not: a second one would be a second comment.
    let unknown = s.client.verify(&pack("RTY9999")).await.unwrap();
    let alert = unknown.alert.expect("an unknown serial raises an alert");
    let path = format!("/v1/alerts/{}/comments", alert.id);
    s.proxy.fail_next(Some(&path), Fault::CutOff);
    match s.client.comment_alert(&alert.id, "rescanned").await.unwrap_err() {
        ClientError::Transport { attempts, .. } => assert_eq!(attempts, 1),
        other => panic!("expected a transport error, got {other:?}"),
    }
    assert_eq!(s.proxy.seen_at(&path).len(), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_past_its_timeout_is_given_up_and_sent_again_with_the_same_client_trx_id() {
    let w = World::start().await;
    w.seed(&["RTY0005"]).await;
    let creds = w.user(Role::Pharmacy, "DE-PH-1").await;
    let proxy = Proxy::start(&w.de_url, &w.ca_pem).await;
    let timer = Arc::new(ManualTimer::new());
    // The stalled attempt never answers, so the timeout ends it however fast the machine is; the
    // bound is long for the attempt that is answered.
    let config =
        EndUserConfig::new(&proxy.url, &creds.id, &creds.secret).with_timeout(Duration::from_secs(3));
    let client = EndUserClient::with_timer(config, timer.clone()).unwrap();
    // The system applies the supply, and its answer never comes.
    proxy.fail_next(Some(SUPPLY), Fault::Stall);
    let answer = client.supply(&pack("RTY0005").with_client_trx_id("rty-slow")).await.unwrap();
    assert_eq!(
        (answer.accepted, answer.return_code.as_str()),
        (true, "NMVS_SUCCESS"),
        "the first answer, replayed"
    );
    let tries = proxy.seen_at(SUPPLY);
    assert_eq!(tries.len(), 2, "{tries:?}");
    assert!(tries.iter().all(|t| t.client_trx_id.as_deref() == Some("rty-slow")), "{tries:?}");
    assert_eq!(timer.sleeps().len(), 1, "one backoff between the attempts");
    // Supplied once: a second supply under a new id is refused as a repeat at this location.
    let again = client.supply(&pack("RTY0005")).await.unwrap();
    assert_eq!((again.accepted, again.return_code.as_str()), (false, "NMVS_NC_PCK_23"));
    proxy.stop().await;
    w.stop().await;
}

#[tokio::test]
async fn no_connection_is_retried_with_a_capped_backoff_then_reported() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let timer = Arc::new(ManualTimer::new());
    let policy = RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(250),
        ..RetryPolicy::default()
    };
    let config = EndUserConfig::new(format!("http://127.0.0.1:{port}"), "cl_x", "secret").with_retry(policy);
    let client = EndUserClient::with_timer(config, timer.clone()).unwrap();
    match client.verify(&pack("RTY0005")).await.unwrap_err() {
        ClientError::Transport { what, attempts, .. } => {
            assert_eq!((what.as_str(), attempts), ("POST /oauth/token", 4));
        }
        other => panic!("expected a transport error, got {other:?}"),
    }
    let sleeps = timer.sleeps();
    assert_eq!(sleeps.len(), 3);
    for (wait, base) in sleeps.iter().zip([100, 200, 250]) {
        let base = Duration::from_millis(base);
        assert!(*wait >= base / 2 && *wait <= base, "{wait:?} outside [{:?}, {base:?}]", base / 2);
    }
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_reported_at_once_not_retried() {
    let w = World::start().await;
    let dir = openmvs_testkit::TempDir::new("other-ca");
    let other =
        openmvs_pki::CertificateAuthority::create(&dir.path().join("ca"), "other CA", SystemTime::now())
            .unwrap();
    let timer = Arc::new(ManualTimer::new());
    let config =
        EndUserConfig::new(&w.de_url, "cl_x", "secret").with_ca_pem(other.ca_pem().as_bytes().to_vec());
    let client = EndUserClient::with_timer(config, timer.clone()).unwrap();
    match client.verify(&pack("RTY0006")).await.unwrap_err() {
        ClientError::Transport { attempts, .. } => assert_eq!(attempts, 1),
        other => panic!("expected a transport error, got {other:?}"),
    }
    assert!(timer.sleeps().is_empty(), "no wait before giving up: {:?}", timer.sleeps());
    w.stop().await;
}

#[test]
fn a_configuration_that_cannot_work_is_refused_with_its_field() {
    let err = EndUserClient::new(EndUserConfig::new("ftp://x", "id", "secret")).unwrap_err();
    assert!(matches!(err, ClientError::Config { field: "base_url", .. }), "{err}");
    let err =
        EndUserClient::new(EndUserConfig::new("https://x", "id", "s").with_ca_pem(b"not a PEM".to_vec()))
            .unwrap_err();
    assert!(matches!(err, ClientError::Config { field: "ca_pem", .. }), "{err}");
}
