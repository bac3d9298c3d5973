//! The abuse suite: a national system on the open internet meets clients that hold connections
//! without using them, send a head or a body one byte at a time, promise more body than they
//! send, flood the token endpoint with bad logins, and send what is refused over HTTP/1.1 and
//! HTTP/2. Each test is bounded in count and time; none asserts how fast the machine is (waits
//! have generous deadlines, and admission is fixed so that a busy machine sheds nothing). A test
//! waits for what the server does (an answer, a connection it closes), never for time to pass:
//! the slow body runs on tokio's clock, paused and moved by the test.
//!
//! Attackers connect from other loopback addresses (`127.0.0.2`, ...) than the pharmacy
//! (`127.0.0.1`), as they would from other hosts.

#[allow(dead_code)]
#[path = "../hub_side/faults.rs"]
mod faults;
#[allow(dead_code, unused_imports)]
#[path = "../national_api/harness.rs"]
mod harness;
#[path = "../support/retry.rs"]
mod retry;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use harness::{AppOptions, TestApp, spawn_app_with, trx};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use openmvs_core::roles::Role;
use openmvs_http::ServeOptions;
use openmvs_http::limit::RateLimit;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
// Tokio's clock, as the server's: paused and moved by hand where a test says so.
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

/// A generous deadline for anything that must happen: far above what it takes, so that a busy
/// machine does not fail the test.
const DEADLINE: Duration = Duration::from_secs(30);

fn loopback(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// An app whose admission does not depend on the machine's speed and whose clients are never
/// rate limited, with these connection limits.
async fn app(serve: ServeOptions) -> TestApp {
    let app = spawn_app_with(AppOptions {
        serve: Some(serve),
        admission: Some(100_000),
        rate: RateLimit { per_second: 1e6, burst: 1e6 },
        ..AppOptions::default()
    })
    .await;
    app.seed_standard().await;
    app
}

fn addr(app: &TestApp) -> SocketAddr {
    app.server.local_addr()
}

/// A TCP connection to the app from `from`.
async fn tcp_from(app: &TestApp, from: IpAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(addr(app)).await
}

fn tls_connector(alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(harness::test_cert_pem().as_bytes()) {
        roots.add(c.expect("the test certificate")).expect("a root");
    }
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A TLS connection from `from`, speaking HTTP/1.1.
async fn tls_from(app: &TestApp, from: IpAddr) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = tcp_from(app, from).await?;
    let name = ServerName::try_from("127.0.0.1").expect("a server name").to_owned();
    tls_connector(&[b"http/1.1"]).connect(name, tcp).await
}

/// Whether the server has closed the connection: a read ends (EOF or an error) within `within`.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(s: &mut S, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let until = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(until, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Reads one HTTP/1.1 answer (head and a `content-length` body) from a raw connection.
async fn read_answer<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> (u16, String, Value) {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let until = Instant::now() + DEADLINE;
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + len {
                let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
                let body = serde_json::from_slice(&data[end + 4..end + 4 + len]).unwrap_or(Value::Null);
                return (status, head, body);
            }
        }
        match tokio::time::timeout_at(until, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => data.extend_from_slice(&buf[..n]),
            other => panic!("no complete answer: {other:?}, read {:?}", String::from_utf8_lossy(&data)),
        }
    }
}

/// Logs in as a real client would: a 503 (every turn of the hashing budget taken) is retried
/// after its `Retry-After`.
async fn login(app: &TestApp, client_id: &str, secret: &str) -> (u16, Value) {
    let until = Instant::now() + DEADLINE;
    loop {
        let form =
            [("grant_type", "client_credentials"), ("client_id", client_id), ("client_secret", secret)];
        let r =
            app.http.post(format!("{}/oauth/token", app.base)).form(&form).send().await.expect("a response");
        let status = r.status().as_u16();
        let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(1);
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if status != 503 || Instant::now() > until {
            return (status, v);
        }
        tokio::time::sleep(Duration::from_secs(retry)).await;
    }
}

fn verify_head(token: &str, content_length: usize) -> String {
    format!(
        "POST /v1/packs/verify HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {content_length}\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limits_and_slow_senders_leave_room_for_a_fresh_client() {
    // Timeouts long enough that the attackers keep their places for the whole test: the fresh
    // client gets in because of the limits, not because someone timed out.
    let app = app(ServeOptions {
        header_read_timeout: Duration::from_secs(120),
        idle_timeout: Duration::from_secs(120),
        max_connections: 64,
        max_connections_per_address: 24,
        ..ServeOptions::default()
    })
    .await;
    let stats = app.server.stats();
    let pack = app.pack().await;

    // 127.0.0.2 opens 40 idle connections: 24 are kept, 16 are closed at once. The server takes
    // them in the order they were made, so the last 16 are those it closes; once it has closed
    // the last, it has counted every one.
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(tcp_from(&app, loopback(2)).await.expect("connect"));
    }
    for c in &mut idle[24..] {
        assert!(closed_within(c, DEADLINE).await, "a connection over the address's share is closed");
    }
    assert_eq!((stats.open(), stats.refused_for_address()), (24, 16), "{}", stats.render());
    // 127.0.0.3 sends request heads one byte at a time on 30 connections: a handshake that
    // succeeds was counted before it began.
    let mut slow = Vec::new();
    for _ in 0..30 {
        if let Ok(mut c) = tls_from(&app, loopback(3)).await
            && c.write_all(b"P").await.is_ok()
        {
            slow.push(c);
        }
    }
    assert_eq!(slow.len(), 24, "the address's share is 24 connections");
    for c in &mut slow {
        let _ = c.write_all(b"O").await;
    }
    assert_eq!(stats.open(), 48, "{}", stats.render());

    // A pharmacy that connects now is answered at once: token and verify.
    let started = Instant::now();
    let pharmacy = app.client(Role::Pharmacy, "fresh-pharmacy").await;
    let r = pharmacy.post("/v1/packs/verify", &pack.req()).await;
    let took = started.elapsed();
    assert_eq!((r.status, r.json["return_code"].as_str()), (200, Some("NMVS_SUCCESS")), "{}", r.text);
    eprintln!("a fresh client among 70 hostile connections: token and verify in {took:?}");
    assert!(took < DEADLINE, "the fresh client waited {took:?}");

    // 127.0.0.4 takes the rest of the node's places (the pharmacy's connection holds one): 64
    // open, then a new connection is closed at once, whoever makes it, and the metrics say the
    // node is at its limit.
    let room = 64 - stats.open();
    assert!((1..20).contains(&room), "{}", stats.render());
    let mut more = Vec::new();
    for _ in 0..20 {
        more.push(tcp_from(&app, loopback(4)).await.expect("connect"));
    }
    for c in &mut more[room..] {
        assert!(closed_within(c, DEADLINE).await, "a connection over the node's limit is closed");
    }
    assert_eq!(stats.open(), 64, "{}", stats.render());
    let mut late = tcp_from(&app, loopback(5)).await.expect("connect");
    assert!(closed_within(&mut late, DEADLINE).await, "a connection over the node's limit is closed");
    let metrics = app.get("/metrics").await;
    assert!(metrics.text.contains("openmvs_connections_at_limit 1"), "{}", metrics.text);
    assert!(stats.refused() >= 1 && stats.refused_for_address() >= 16, "{}", stats.render());

    // The attackers leave, each closing its side, and the server closes its own as it lets the
    // place go; then the node takes new connections again.
    for c in idle.iter_mut().take(24).chain(more.iter_mut().take(room)) {
        let _ = c.shutdown().await;
        assert!(closed_within(c, DEADLINE).await, "the server keeps a connection its client closed");
    }
    for c in &mut slow {
        let _ = c.shutdown().await;
        assert!(closed_within(c, DEADLINE).await, "the server keeps a connection its client closed");
    }
    let mut fresh = tls_from(&app, loopback(9)).await.expect("the node takes connections again");
    fresh.write_all(b"GET /health/live HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await.expect("request");
    assert_eq!(read_answer(&mut fresh).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_sent_one_byte_at_a_time_is_cut_off_at_the_header_timeout() {
    let app =
        app(ServeOptions { header_read_timeout: Duration::from_secs(1), ..ServeOptions::default() }).await;
    let mut c = tls_from(&app, loopback(6)).await.expect("connect");
    let head = b"GET /health/live HTTP/1.1\r\nhost: 127.0.0.1\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let until = Instant::now() + DEADLINE;
    let mut sent = 0;
    for b in head {
        if c.write_all(&[*b]).await.is_err() || c.flush().await.is_err() {
            break;
        }
        sent += 1;
        if closed_within(&mut c, Duration::from_millis(300)).await {
            break;
        }
        assert!(Instant::now() < until, "the connection was never closed");
    }
    assert!(sent < head.len(), "the whole head went through one byte at a time");
    assert!(app.server.stats().header_timeouts() >= 1, "{}", app.server.stats().render());
}

// On one thread: tokio's clock, which the server's timeouts run on, is paused below.
#[tokio::test]
async fn a_body_that_trickles_or_never_comes_is_answered_and_the_connection_closed() {
    let app = app(ServeOptions { body_grace: Duration::from_millis(500), ..ServeOptions::default() }).await;
    let pharmacy = app.client(Role::Pharmacy, "slow-link").await;
    let body = serde_json::to_vec(&app.pack().await.req()).expect("json");
    // From here on the clock moves only when this test moves it, or, when every task waits, to
    // the next timer: the grace period and the minimum rate pass with no real time passing.
    tokio::time::pause();

    // A content-length larger than the body sent: answered when the grace period is over.
    let mut c = tls_from(&app, loopback(7)).await.expect("connect");
    c.write_all(verify_head(&pharmacy.current_token(), body.len() + 100).as_bytes()).await.expect("head");
    c.write_all(&body).await.expect("body");
    let (status, head, answer) = read_answer(&mut c).await;
    assert_eq!((status, answer["return_code"].as_str()), (400, Some("NMVS_TE_XM_02")), "{head}\n{answer}");
    assert_eq!(answer["details"][0]["field"], "body", "{answer}");
    assert!(answer["details"][0]["message"].as_str().unwrap_or("").contains("too slowly"), "{answer}");
    assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");
    assert!(closed_within(&mut c, DEADLINE).await, "the connection stays open");

    // A body sent one byte at a time, slower than the minimum rate: a byte every 50 ms of the
    // paused clock, after which the server has read it and fired the timers then due.
    let mut c = tls_from(&app, loopback(7)).await.expect("connect");
    c.write_all(verify_head(&pharmacy.current_token(), body.len()).as_bytes()).await.expect("head");
    let mut answered = None;
    for b in &body {
        if c.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::advance(Duration::from_millis(50)).await;
        tokio::task::yield_now().await;
        if app.server.stats().slow_bodies() >= 2 {
            answered = Some(read_answer(&mut c).await);
            break;
        }
    }
    let (status, _, answer) = answered.expect("the trickle was never refused");
    assert_eq!((status, answer["details"][0]["field"].as_str()), (400, Some("body")), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let app = app(ServeOptions { idle_timeout: Duration::from_secs(1), ..ServeOptions::default() }).await;
    let mut c = tls_from(&app, loopback(8)).await.expect("connect");
    c.write_all(b"GET /health/live HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await.expect("request");
    let (status, _, _) = read_answer(&mut c).await;
    assert_eq!(status, 200);
    assert!(closed_within(&mut c, DEADLINE).await, "the idle connection stays open");
    assert!(app.server.stats().idle_closed() >= 1, "{}", app.server.stats().render());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_takes_nothing_from_a_pharmacy_with_a_token() {
    let app = app(ServeOptions::default()).await;
    let pharmacy = app.client(Role::Pharmacy, "busy-pharmacy").await;
    let other = app.client(Role::Pharmacy, "target-pharmacy").await;
    let packs = app.packs(300).await;
    let stop = Arc::new(AtomicUsize::new(0));
    let accepted_bad = Arc::new(AtomicUsize::new(0));
    let mut flood = Vec::new();
    // 60 attackers on 10 addresses: wrong secrets for a real client id, unknown client ids.
    for i in 0..60u32 {
        let from = loopback(10 + (i % 10) as u8);
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(harness::test_cert_pem().as_bytes()).expect("cert"),
            )
            .local_address(from)
            .build()
            .expect("a client");
        let (url, target, stop, accepted_bad) = (
            format!("{}/oauth/token", app.base),
            other.client_id.clone(),
            stop.clone(),
            accepted_bad.clone(),
        );
        flood.push(tokio::spawn(async move {
            let mut n = 0u32;
            while stop.load(Ordering::Relaxed) == 0 && n < 200 {
                n += 1;
                let id = if n.is_multiple_of(2) { target.clone() } else { format!("cl_unknown_{i}_{n}") };
                let form =
                    [("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", "guess")];
                if let Ok(r) = http.post(&url).form(&form).send().await
                    && r.status() == 200
                {
                    accepted_bad.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Meanwhile the pharmacy verifies, one after another, and logs in again halfway.
    let mut answered = 0;
    for (k, p) in packs.iter().enumerate() {
        if k == 150 {
            let (status, v) = login(&app, &pharmacy.client_id, pharmacy.secret()).await;
            assert_eq!(status, 200, "a valid login during the flood: {v}");
        }
        let r = pharmacy.post("/v1/packs/verify", &p.req()).await;
        if r.status == 200 && r.json["return_code"] == "NMVS_SUCCESS" {
            answered += 1;
        }
    }
    stop.store(1, Ordering::Relaxed);
    for f in flood {
        f.await.expect("an attacker");
    }
    let share = f64::from(answered) / packs.len() as f64;
    eprintln!(
        "verifies answered during the login flood: {answered}/{} ({:.1} %)",
        packs.len(),
        share * 100.0
    );
    assert!(share >= 0.99, "{answered} of {} verifies answered", packs.len());
    assert_eq!(accepted_bad.load(Ordering::Relaxed), 0, "a guess was given a token");
    let metrics = app.get("/metrics").await.text;
    let limited = metrics
        .lines()
        .find(|l| l.starts_with("openmvs_login_refused_total{reason=\"limited\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(limited > 0, "no bad login was limited:\n{metrics}");
    // The tokens of the client id the flood guessed at keep working.
    let r = other.post("/v1/packs/verify", &packs[0].req()).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// A login from `from`, once.
async fn login_from(app: &TestApp, from: u8, client_id: &str, secret: &str) -> (u16, Option<u64>, Value) {
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(harness::test_cert_pem().as_bytes()).expect("cert"),
        )
        .local_address(loopback(from))
        .build()
        .expect("a client");
    let form = [("grant_type", "client_credentials"), ("client_id", client_id), ("client_secret", secret)];
    let r = http.post(format!("{}/oauth/token", app.base)).form(&form).send().await.expect("a response");
    let status = r.status().as_u16();
    let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok());
    (status, retry, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_of_a_client_id_or_from_an_address_are_refused_with_429_before_any_hashing() {
    let app = spawn_app_with(AppOptions {
        login: Some(openmvs_http::login::LoginSettings {
            failures_per_client: 3,
            failures_per_address: 5,
            failure_window: Duration::from_secs(3600),
            ..Default::default()
        }),
        ..AppOptions::default()
    })
    .await;
    let guessed = app.client(Role::Pharmacy, "guessed").await;
    let bystander = app.client(Role::Pharmacy, "bystander").await;
    // Three wrong secrets for one client id, from three addresses: then even the right secret
    // waits, from any address, and is told how long.
    for from in [20, 21, 22] {
        let (status, _, v) = login_from(&app, from, &guessed.client_id, "wrong").await;
        assert_eq!((status, v["error"].as_str()), (401, Some("invalid_client")), "{v}");
    }
    let (status, retry, v) = login_from(&app, 23, &guessed.client_id, guessed.secret()).await;
    assert_eq!((status, v["return_code"].as_str()), (429, Some("NMVS_FI_SE_CLI_01")), "{v}");
    assert_eq!(v["details"][0]["field"], "client_id", "{v}");
    assert!(retry.is_some_and(|s| s >= 1), "Retry-After: {retry:?}");
    // Another client id from the same address is not affected.
    let (status, _, v) = login_from(&app, 23, &bystander.client_id, bystander.secret()).await;
    assert_eq!(status, 200, "{v}");
    // Five unknown client ids from one address: that address waits, others do not.
    for n in 0..5 {
        let (status, _, _) = login_from(&app, 24, &format!("cl_nobody_{n}"), "x").await;
        assert_eq!(status, 401);
    }
    let (status, _, v) = login_from(&app, 24, &bystander.client_id, bystander.secret()).await;
    assert_eq!((status, v["details"][0]["field"].as_str()), (429, Some("address")), "{v}");
    let (status, _, v) = login_from(&app, 25, &bystander.client_id, bystander.secret()).await;
    assert_eq!(status, 200, "{v}");
    // Refused attempts are counted, not hashed and not audited.
    let metrics = app.get("/metrics").await.text;
    assert!(metrics.contains("openmvs_login_refused_total{reason=\"limited\"} 2"), "{metrics}");
    assert!(metrics.contains("openmvs_login_failures_total 8"), "{metrics}");
}

/// What one early refusal should answer: a request and its expected status and return code.
struct Refusal {
    token: String,
    body: Vec<u8>,
    content_type: &'static str,
    status: u16,
    code: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_early_refusals_over_http2_arrive_as_responses() {
    let app = app(ServeOptions::default()).await;
    let pack = app.pack().await;
    let pharmacy = app.client(Role::Pharmacy, "h2-client").await;
    let forged = {
        let t = pharmacy.current_token();
        let (rest, sig) = t.rsplit_once('.').expect("a JWT");
        format!("{rest}.{}", sig.chars().rev().collect::<String>())
    };
    let body = serde_json::to_vec(&pack.req()).expect("json");
    let padded = |n: usize| {
        let mut v = pack.req();
        v["client_trx_id"] = json!("x".repeat(n));
        serde_json::to_vec(&v).expect("json")
    };
    let json = "application/json";
    let kinds = [
        Refusal {
            token: String::new(),
            body: padded(200_000),
            content_type: json,
            status: 401,
            code: "NMVS_FE_AU_01",
        },
        Refusal {
            token: "not-a-token".into(),
            body: padded(2_000_000),
            content_type: json,
            status: 401,
            code: "NMVS_FE_AU_01",
        },
        Refusal { token: forged, body: body.clone(), content_type: json, status: 401, code: "NMVS_FE_AU_01" },
        Refusal {
            token: pharmacy.current_token(),
            body: padded(300_000),
            content_type: json,
            status: 413,
            code: "NMVS_TE_XM_03",
        },
        Refusal {
            token: pharmacy.current_token(),
            body,
            content_type: "text/plain",
            status: 400,
            code: "NMVS_TE_XM_02",
        },
    ];
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(harness::test_cert_pem().as_bytes()).expect("cert"),
        )
        .http2_prior_knowledge()
        .build()
        .expect("an HTTP/2 client");
    let mut sent = Vec::new();
    for i in 0..100 {
        let k = &kinds[i % kinds.len()];
        let mut rb = http
            .post(format!("{}/v1/packs/verify", app.base))
            .header("content-type", k.content_type)
            .body(k.body.clone());
        if !k.token.is_empty() {
            rb = rb.bearer_auth(&k.token);
        }
        sent.push((i % kinds.len(), tokio::spawn(rb.send())));
    }
    let mut answered = 0;
    for (k, s) in sent {
        let r =
            s.await.expect("a task").unwrap_or_else(|e| panic!("request of kind {k}: no response: {e:?}"));
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or_else(|e| panic!("kind {k}: body: {e}"));
        assert_eq!(
            (status, v["return_code"].as_str()),
            (kinds[k].status, Some(kinds[k].code)),
            "kind {k}: {v}"
        );
        answered += 1;
    }
    assert_eq!(answered, 100);
}

/// A hyper connection over one TLS connection, so that two requests provably share it.
async fn one_connection(app: &TestApp) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let tls = tls_from(app, loopback(1)).await.expect("connect");
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.expect("handshake");
    tokio::spawn(conn);
    send
}

async fn post_on(
    send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    token: &str,
    body: Vec<u8>,
) -> Result<(u16, Option<u64>, Value), hyper::Error> {
    send.ready().await?;
    let req = hyper::Request::post("/v1/packs/verify")
        .header("host", "127.0.0.1")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("a request");
    let r = send.send_request(req).await?;
    let status = r.status().as_u16();
    let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok());
    let bytes = r.into_body().collect().await?.to_bytes();
    Ok((status, retry, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_keeps_the_connection_and_the_next_request_on_it_succeeds() {
    let app = spawn_app_with(AppOptions {
        admission: Some(100_000),
        rate: RateLimit { per_second: 2.0, burst: 1.0 },
        ..AppOptions::default()
    })
    .await;
    app.seed_standard().await;
    let packs = app.packs(3).await;
    let pharmacy = app.client(Role::Pharmacy, "kept-alive").await;
    let token = pharmacy.current_token();
    let mut conn = one_connection(&app).await;
    let body = |i: usize| serde_json::to_vec(&packs[i].req()).expect("json");
    let (first, _, _) = post_on(&mut conn, &token, body(0)).await.expect("the first request");
    assert_eq!(first, 200);
    let (second, retry, v) = post_on(&mut conn, &token, body(1)).await.expect("the second request");
    assert_eq!((second, v["return_code"].as_str()), (429, Some("NMVS_FI_SE_CLI_01")), "{v}");
    let wait = retry.expect("Retry-After on a 429");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    // The same connection: the answer after the wait is a success, not a closed connection.
    let mut third = post_on(&mut conn, &token, body(2)).await.expect("the connection was kept");
    while third.0 == 429 {
        tokio::time::sleep(Duration::from_secs(third.1.unwrap_or(1))).await;
        third = post_on(&mut conn, &token, serde_json::to_vec(&packs[2].req()).expect("json"))
            .await
            .expect("the connection was kept");
    }
    assert_eq!((third.0, third.2["return_code"].as_str()), (200, Some("NMVS_SUCCESS")), "{}", third.2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_megabyte_body_is_answered_413_on_http1_and_http2() {
    let app = app(ServeOptions::default()).await;
    let pharmacy = app.client(Role::Pharmacy, "big-body").await;
    let mut v = app.pack().await.req();
    v["client_trx_id"] = json!("y".repeat(10 * 1024 * 1024));
    let body = serde_json::to_vec(&v).expect("json");
    for h2 in [false, true] {
        let mut b =
            reqwest::Client::builder().use_rustls_tls().tls_built_in_root_certs(false).add_root_certificate(
                reqwest::Certificate::from_pem(harness::test_cert_pem().as_bytes()).expect("cert"),
            );
        b = if h2 { b.http2_prior_knowledge() } else { b.http1_only() };
        let http = b.build().expect("a client");
        let r = http
            .post(format!("{}/v1/packs/verify", app.base))
            .bearer_auth(pharmacy.current_token())
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("h2={h2}: no response: {e:?}"));
        let status = r.status().as_u16();
        let v: Value = r.json().await.expect("a JSON body");
        assert_eq!((status, v["return_code"].as_str()), (413, Some("NMVS_TE_XM_03")), "h2={h2}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_another_media_type_is_refused_naming_content_type() {
    let app = app(ServeOptions::default()).await;
    let pharmacy = app.client(Role::Pharmacy, "plain-text").await;
    let pack = app.pack().await;
    let r = app
        .http
        .post(format!("{}/v1/packs/verify", app.base))
        .bearer_auth(pharmacy.current_token())
        .header("content-type", "text/plain")
        .body(serde_json::to_vec(&pack.req()).expect("json"))
        .send()
        .await
        .expect("a response");
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["details"][0]["field"], "content-type", "{v}");
    // JSON, a JSON subtype with parameters, and no type at all are read as JSON.
    for ct in ["application/json", "application/vnd.openmvs+json; charset=utf-8"] {
        let r = app
            .http
            .post(format!("{}/v1/packs/verify", app.base))
            .bearer_auth(pharmacy.current_token())
            .header("content-type", ct)
            .body(serde_json::to_vec(&json!({"client_trx_id": trx(), "scan": pack.scan()})).expect("json"))
            .send()
            .await
            .expect("a response");
        assert_eq!(r.status(), 200, "{ct}");
    }
}
