//! Stopping and starting the real binary: SIGTERM turns readiness off first, keeps serving
//! through the grace time, lets in-flight requests finish and exits 0; a second start on the same
//! data directory finds everything the first one wrote.

mod common;

use std::time::{Duration, Instant};

use common::{
    Node, Reply, Stop, Watched, http, http_fresh_connections, pack, pack_body, pack_once, serial, token,
};

/// `[national.limits]` of the shutdown test. The grace time is long enough for the readiness
/// poller and the verify stream to see it on a busy machine.
const GRACE: Duration = Duration::from_secs(2);
const DRAIN: Duration = Duration::from_secs(5);
/// How long after drain and grace the process may take to exit: generous, for a busy machine
/// (what is checked is that it exits by itself, not how fast).
const EXIT_MARGIN: Duration = Duration::from_secs(15);
/// The longest the test waits for what a busy machine may make slow.
const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// What one poll of `/health/ready` saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Ready,
    NotReady,
    /// Any other status or body: never expected.
    Other,
    /// No response: the listener is gone (or not accepting).
    NoAnswer,
}

fn poll_ready(http: &reqwest::blocking::Client, base: &str) -> Health {
    let Ok(resp) = http.get(format!("{base}/health/ready")).send() else { return Health::NoAnswer };
    let status = resp.status().as_u16();
    match (status, resp.text().as_deref()) {
        (200, Ok("ready")) => Health::Ready,
        (503, Ok("not ready")) => Health::NotReady,
        _ => Health::Other,
    }
}

#[test]
fn sigterm_drains_in_flight_requests_and_readiness_goes_false_first() {
    let node = Node::new(
        "shutdown",
        &format!("ready_grace_ms = {}\ndrain_seconds = {}", GRACE.as_millis(), DRAIN.as_secs()),
    );
    node.seed(100);
    let pharmacy = node.client("PHARMACY", "DE-PH-1");
    let mut server = node.start();
    let base = server.base.clone();
    let tok = token(&http(), &base, &pharmacy);

    let epoch = Instant::now();
    let stop = Stop::default();
    // (time since epoch, reply) of every verify, and of every readiness poll.
    let verifies: Watched<Vec<(Duration, Reply)>> = Watched::default();
    let polls: Watched<Vec<(Duration, Health)>> = Watched::default();
    let (sigterm_at, exit) = std::thread::scope(|scope| {
        // A steady stream of verifies over one keep-alive connection.
        scope.spawn(|| {
            let http = http();
            let mut i = 0u64;
            while !stop.is_given() {
                // Once: a 503 while draining is one of the answers this test looks at.
                let reply = pack_once(
                    &http,
                    &base,
                    &tok,
                    "verify",
                    &pack_body(&format!("drain-{i}"), &serial(i % 100)),
                );
                let failed = matches!(reply, Reply::NoAnswer(_));
                verifies.update(|v| v.push((epoch.elapsed(), reply)));
                if failed && stop.wait(Duration::from_millis(5)) {
                    break;
                }
                i += 1;
            }
        });
        // Readiness, on a new connection each time, so that a listener that stops accepting shows.
        scope.spawn(|| {
            let http = http_fresh_connections(Duration::from_secs(10));
            loop {
                let h = poll_ready(&http, &base);
                polls.update(|p| p.push((epoch.elapsed(), h)));
                if stop.wait(Duration::from_millis(10)) {
                    break;
                }
            }
        });
        // Each verify and each poll is recorded as it is answered: the test wakes at each.
        let warmed_up = verifies.wait_for(WAIT_LIMIT, |v| v.len() >= 20)
            && polls.wait_for(WAIT_LIMIT, |p| p.iter().any(|(_, h)| *h == Health::Ready));
        let sigterm_at = epoch.elapsed();
        if warmed_up {
            server.terminate();
        }
        let exit = server.wait_exit(DRAIN + GRACE + EXIT_MARGIN).map(|s| (s, epoch.elapsed()));
        // Let the poller see the closed port, then stop both threads.
        let _ = polls.wait_for(WAIT_LIMIT, |p| p.last().is_some_and(|(_, h)| *h == Health::NoAnswer));
        stop.stop();
        assert!(warmed_up, "no steady traffic before SIGTERM:\n{}", server.log_text());
        (sigterm_at, exit)
    });
    let log = server.log_text();

    // The process exits 0, by itself (within drain + grace + a margin).
    let Some((status, exited_at)) = exit else {
        panic!("still running {:?} after SIGTERM:\n{log}", DRAIN + GRACE + EXIT_MARGIN)
    };
    assert!(status.success(), "exit status {status}:\n{log}");
    eprintln!("shutdown: exited {} ms after SIGTERM", (exited_at - sigterm_at).as_millis());

    // Every answer is complete and valid: a verify of an active pack, or a 503 saying so.
    let verifies = verifies.into_inner();
    let mut last_ok = Duration::ZERO;
    let mut ok_after_sigterm = 0;
    for (at, reply) in &verifies {
        match reply {
            Reply::Answer { status: 200, body }
                if body["return_code"] == "NMVS_SUCCESS" && body["pack"]["state"] == "ACTIVE" =>
            {
                last_ok = last_ok.max(*at);
                ok_after_sigterm += usize::from(*at > sigterm_at);
            }
            Reply::Answer { status: 503, body } if body["return_code"] == "NMVS_TI_UN_01" => {}
            Reply::NoAnswer(why) => {
                assert!(*at > sigterm_at, "a verify got no answer before SIGTERM: {why}\n{log}");
            }
            other => panic!("an invalid answer at {at:?} (SIGTERM at {sigterm_at:?}): {other:?}\n{log}"),
        }
    }

    // Readiness: ready, then not ready while requests are still served, then no answer.
    let polls = polls.into_inner();
    let mut phases: Vec<Health> = polls.iter().map(|(_, h)| *h).collect();
    phases.dedup();
    assert_eq!(
        phases,
        [Health::Ready, Health::NotReady, Health::NoAnswer],
        "readiness went {phases:?} (polls: {polls:?})"
    );
    let first_not_ready =
        polls.iter().find(|(_, h)| *h == Health::NotReady).map(|(t, _)| *t).expect("not ready");
    eprintln!(
        "shutdown: {} verifies answered after SIGTERM, the last {} ms after it; readiness false {} ms after it",
        ok_after_sigterm,
        (last_ok.saturating_sub(sigterm_at)).as_millis(),
        (first_not_ready - sigterm_at).as_millis()
    );
    assert!(
        first_not_ready < last_ok,
        "readiness went false at {first_not_ready:?}, but no verify was answered after it (last at {last_ok:?})"
    );
    assert!(
        last_ok >= sigterm_at + GRACE / 2,
        "the listener should keep serving through the grace time: last verify answered at {last_ok:?}, \
         SIGTERM at {sigterm_at:?}"
    );

    // The log tells the operator what happened, in order.
    let shutting = log.find("shutting down").unwrap_or_else(|| panic!("no 'shutting down' line:\n{log}"));
    let stopped = log.rfind("stopped").unwrap_or_else(|| panic!("no 'stopped' line:\n{log}"));
    assert!(shutting < stopped, "'shutting down' comes before 'stopped':\n{log}");

    let out = Node::audit_verify(&node.data_dir());
    assert!(out.status.success(), "audit verify: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_second_start_on_the_same_data_dir_keeps_all_data() {
    let node = Node::new("restart", "");
    node.seed(10);
    let pharmacy = node.client("PHARMACY", "DE-PH-1");

    let server = node.start();
    let first_token = token(&http(), &server.base, &pharmacy);
    let supplied = pack(&http(), &server.base, &first_token, "supply", &pack_body("first-life", &serial(0)))
        .ok("supply");
    assert_eq!(supplied["return_code"], "NMVS_SUCCESS", "{supplied}");
    server.stop();

    let server = node.start();
    let base = server.base.as_str();
    let http = http();
    // The client created before still gets a token.
    let tok = token(&http, base, &pharmacy);
    let v = pack(&http, base, &tok, "verify", &pack_body("second-life-0", &serial(0))).ok("verify");
    assert_eq!(v["return_code"], "NMVS_INFO_PCK_INACTIVE", "{v}");
    assert_eq!(v["pack"]["state"], "SUPPLIED", "{v}");
    // The other seeded packs are still active.
    let v = pack(&http, base, &tok, "verify", &pack_body("second-life-1", &serial(1))).ok("verify");
    assert_eq!(v["return_code"], "NMVS_SUCCESS", "{v}");
    assert_eq!(v["pack"]["state"], "ACTIVE", "{v}");
    // The idempotency record survived too: the retry of the first supply replays its answer.
    let replay = pack(&http, base, &tok, "supply", &pack_body("first-life", &serial(0))).ok("replay");
    assert_eq!(replay, supplied, "the retry replays the first answer");
    // A token issued before the restart has not expired, so it is still honoured.
    let v = pack(&http, base, &first_token, "verify", &pack_body("old-token", &serial(1))).ok("old token");
    assert_eq!(v["return_code"], "NMVS_SUCCESS", "{v}");
    server.stop();

    let out = Node::audit_verify(&node.data_dir());
    assert!(out.status.success(), "audit verify: {}", String::from_utf8_lossy(&out.stderr));
}
