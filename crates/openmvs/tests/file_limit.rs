//! The real binary out of open files: its file limit is lowered under it (`prlimit`) while idle
//! connections pile up. The node keeps serving the connection it has, backs off instead of
//! retrying `accept` at once, says so once in its log and in `/metrics`, and takes new
//! connections again once the pile is gone.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Node, http, pack_body, serial, token};

const DEADLINE: Duration = Duration::from_secs(30);

/// One HTTP/1.1 request on a kept-alive connection; the status and body of its answer.
fn request(c: &mut TcpStream, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {}\r\n{headers}\r\n{body}",
        body.len()
    );
    c.write_all(req.as_bytes()).expect("send on the kept connection");
    let mut data = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + len {
                let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                return (status, String::from_utf8_lossy(&data[end + 4..end + 4 + len]).into_owned());
            }
        }
        let n = c.read(&mut buf).expect("read on the kept connection");
        assert!(n > 0, "the kept connection was closed");
        data.extend_from_slice(&buf[..n]);
    }
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[test]
fn out_of_open_files_the_node_backs_off_keeps_its_connections_and_recovers() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("skipping: prlimit (util-linux) is not installed");
        return;
    }
    let node = Node::new("file-limit", "idle_timeout_seconds = 3600\nheader_read_timeout_ms = 300000\n");
    node.seed(10);
    let creds = node.client("PHARMACY", "DE-PH-FD");
    let started = Instant::now();
    let server = node.start();
    eprintln!("started in {:?}", started.elapsed());
    let t = token(&http(), &server.base, &creds);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut kept = TcpStream::connect(&addr).expect("connect");
    kept.set_read_timeout(Some(DEADLINE)).expect("a read timeout");
    assert_eq!(request(&mut kept, "GET", "/health/live", "", "").0, 200);

    // A limit far below what the node was started with: its connection limit no longer fits.
    let limit = Command::new("prlimit")
        .args(["--pid", &server.pid().to_string(), "--nofile=128:128"])
        .output()
        .expect("prlimit runs");
    assert!(limit.status.success(), "prlimit: {}", String::from_utf8_lossy(&limit.stderr));
    // More than the limit: once the listen backlog is full too, a connect is not answered
    // (the kernel drops the SYN), which is where the pile stops.
    let sock: std::net::SocketAddr = addr.parse().expect("host:port");
    let mut pile = Vec::new();
    for _ in 0..400 {
        match TcpStream::connect_timeout(&sock, Duration::from_millis(500)) {
            Ok(c) => pile.push(c),
            Err(_) => break,
        }
    }
    let mut accept_errors = || {
        let (_, m) = request(&mut kept, "GET", "/metrics", "", "");
        metric(&m, "openmvs_accept_errors_total")
    };
    // The first failed accept is counted, then said in the log.
    let failed = server.wait_for_log("accepting a connection failed", DEADLINE);
    assert!(failed, "accept never failed with {} connections piled up:\n{}", pile.len(), server.log_text());
    let errors_at_first = accept_errors();
    assert!(errors_at_first > 0, "a failed accept is counted");
    // Backing off: the delay between two failed accepts doubles from 10 ms, so four more take at
    // least 20 + 40 + 80 + 160 ms after the count was read, however fast the machine (half of it
    // is asked); in a loop they took microseconds. The later ones are counted, not logged: the
    // count is polled.
    let since = Instant::now();
    common::eventually(DEADLINE, || Some(accept_errors()).filter(|e| *e >= errors_at_first + 5))
        .expect("accept is retried while the pile stays");
    let took = since.elapsed();
    assert!(took >= Duration::from_millis(150), "five failed accepts in {took:?}: no backoff");
    // The connection the node has is still served, requests included.
    let body = pack_body("fd-1", &serial(3)).to_string();
    let (status, answer) =
        request(&mut kept, "POST", "/v1/packs/verify", &format!("authorization: Bearer {t}\r\n"), &body);
    assert_eq!(status, 200, "{answer}");
    let log = server.log_text();
    assert_eq!(log.matches("accepting a connection failed").count(), 1, "said once:\n{log}");

    eprintln!("backoff seen at {:?}", started.elapsed());
    // The pile goes; new connections are taken again (a new one may still be refused while the
    // node closes what the pile left in its backlog: tried until one is answered).
    drop(pile);
    common::eventually(DEADLINE, || {
        let fresh = TcpStream::connect(&addr).and_then(|mut c| {
            c.set_read_timeout(Some(Duration::from_secs(5)))?;
            c.write_all(b"GET /health/live HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")?;
            let mut s = String::new();
            c.read_to_string(&mut s)?;
            Ok(s)
        });
        fresh.is_ok_and(|s| s.starts_with("HTTP/1.1 200")).then_some(())
    })
    .expect("a new connection is taken after the pile went");
    eprintln!("recovered at {:?}", started.elapsed());
    assert!(server.log_text().contains("accepting connections again"), "{}", server.log_text());
    server.stop();
    eprintln!("stopped at {:?}", started.elapsed());
}
