//! Crash safety of the real binary: a supply the server acknowledged survives a SIGKILL, and a
//! supply whose answer was lost in the crash takes effect exactly once when the client retries it
//! with the same `client_trx_id`.

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::{Node, Reply, Watched, audit_of, http, pack, pack_body, serial, token};
use serde_json::Value;

/// More packs than the rounds can supply, so that every request names a fresh pack.
const PACKS: u64 = 10_000;
/// Crash rounds before the clean restart.
const ROUNDS: usize = 5;
/// Client threads streaming supplies in each round.
const CLIENTS: usize = 4;
/// How many acknowledged packs have their audit trail read after the crashes.
const AUDIT_SAMPLE: usize = 40;
/// After this many failed checks the rest are skipped, so that a broken server fails the test fast.
const GIVE_UP_AFTER: usize = 10;

/// A small deterministic generator (xorshift64), so that a failing run can be repeated.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `lo..hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// One supply request: its transaction id and the pack it names.
#[derive(Debug, Clone)]
struct Supply {
    trx: String,
    serial: String,
}

/// What the client threads of one round saw.
#[derive(Default)]
struct Seen {
    /// 200 with `accepted: true`: the server said the supply is done.
    acknowledged: Vec<Supply>,
    /// No answer: the supply may or may not have been done.
    unknown: Vec<Supply>,
    /// Anything else, which a fresh active pack should never get.
    unexpected: Vec<(Supply, String)>,
}

/// Streams supplies of fresh packs until `stop`, the packs run out, or the server stops answering.
fn stream_supplies(base: &str, token: &str, next: &AtomicU64, stop: &AtomicBool, seen: &Watched<Seen>) {
    let http = http();
    while !stop.load(Ordering::SeqCst) {
        let i = next.fetch_add(1, Ordering::SeqCst);
        if i >= PACKS {
            return;
        }
        let s = Supply { trx: format!("crash-supply-{i}"), serial: serial(i) };
        let reply = pack(&http, base, token, "supply", &pack_body(&s.trx, &s.serial));
        let gone = seen.update(|seen| match reply {
            Reply::Answer { status: 200, body }
                if body["accepted"] == true && body["return_code"] == "NMVS_SUCCESS" =>
            {
                seen.acknowledged.push(s);
                false
            }
            Reply::NoAnswer(_) => {
                seen.unknown.push(s);
                true
            }
            other => {
                seen.unexpected.push((s, format!("{other:?}")));
                false
            }
        });
        if gone {
            // The server is gone; the next request would only be refused.
            return;
        }
    }
}

/// The supply records of a pack's audit trail: (return code, whether an alert was raised).
fn supply_records(records: &[Value]) -> Vec<(String, bool)> {
    records
        .iter()
        .filter(|r| r["operation"] == "supply")
        .map(|r| {
            let code = r["return_code"].as_str().unwrap_or_default().to_owned();
            (code, !r["result"]["alert"].is_null())
        })
        .collect()
}

/// Runs `f` over `items` on `CLIENTS` threads, each with its own keep-alive client.
fn in_parallel<T: Sync>(items: &[T], f: impl Fn(&reqwest::blocking::Client, &T) + Sync) {
    let chunk = items.len().div_ceil(CLIENTS).max(1);
    std::thread::scope(|scope| {
        for part in items.chunks(chunk) {
            let f = &f;
            scope.spawn(move || {
                let http = http();
                for item in part {
                    f(&http, item);
                }
            });
        }
    });
}

#[test]
fn acknowledged_supplies_survive_repeated_sigkill_exactly_once() {
    let node = Node::new("crash", "");
    node.seed(PACKS);
    let pharmacy = node.client("PHARMACY", "DE-PH-1");
    let nca = node.client("NCA", "DE-NCA-1");

    let mut rng = XorShift(0x0DE5_EED0_C4A5_11ED);
    let next = AtomicU64::new(0);
    let mut acknowledged: Vec<Supply> = Vec::new();
    let mut unknown: Vec<Supply> = Vec::new();
    for round in 1..=ROUNDS {
        let server = node.start();
        let base = server.base.clone();
        let token = token(&http(), &base, &pharmacy);
        let stop = AtomicBool::new(false);
        let seen = Watched::<Seen>::default();
        // The kill comes after a random number of acknowledged supplies, with requests in flight.
        let before_kill = usize::try_from(rng.between(10, 100)).expect("a small number");
        std::thread::scope(|scope| {
            for _ in 0..CLIENTS {
                scope.spawn(|| stream_supplies(&base, &token, &next, &stop, &seen));
            }
            // Woken at each answer.
            let warmed_up = seen.wait_for(common::WAIT_LIMIT, |s| s.acknowledged.len() >= before_kill);
            // Kill with requests in flight, then let the clients see it.
            server.kill();
            stop.store(true, Ordering::SeqCst);
            let acknowledged = seen.read(|s| s.acknowledged.len());
            assert!(warmed_up, "round {round}: {acknowledged} supplies acknowledged in 30 s");
        });
        let seen = seen.into_inner();
        assert!(seen.unexpected.is_empty(), "round {round}: unexpected replies: {:#?}", seen.unexpected);
        eprintln!(
            "crash round {round}: killed after {before_kill} acknowledgements; {} supplies acknowledged, {} without an answer",
            seen.acknowledged.len(),
            seen.unknown.len()
        );
        acknowledged.extend(seen.acknowledged);
        unknown.extend(seen.unknown);
    }
    assert!(next.load(Ordering::SeqCst) < PACKS, "the rounds ran out of seeded packs: raise PACKS");
    assert!(!acknowledged.is_empty(), "no supply was acknowledged in any round");

    // A clean restart after the last crash.
    let server = node.start();
    let base = server.base.as_str();
    let pharmacy_token = token(&http(), base, &pharmacy);
    let nca_token = token(&http(), base, &nca);

    // Every acknowledged supply is durable.
    let verify_failures = Mutex::new(Vec::new());
    in_parallel(&acknowledged, |http, s| {
        if verify_failures.lock().unwrap_or_else(|p| p.into_inner()).len() >= GIVE_UP_AFTER {
            return;
        }
        let reply =
            pack(http, base, &pharmacy_token, "verify", &pack_body(&format!("after-{}", s.trx), &s.serial));
        let ok = matches!(&reply, Reply::Answer { status: 200, body }
            if body["return_code"] == "NMVS_INFO_PCK_INACTIVE" && body["pack"]["state"] == "SUPPLIED");
        if !ok {
            verify_failures.lock().unwrap_or_else(|p| p.into_inner()).push((s.clone(), format!("{reply:?}")));
        }
    });
    let verify_failures = verify_failures.into_inner().unwrap_or_else(|p| p.into_inner());
    assert!(
        verify_failures.is_empty(),
        "acknowledged supplies were lost ({} found of {} acknowledged; the check stops at {GIVE_UP_AFTER}): {:#?}",
        verify_failures.len(),
        acknowledged.len(),
        verify_failures
    );

    // Every supply without an answer, retried with its transaction id, now gets a definite
    // answer that never supplies the pack a second time. A verify first tells whether the lost
    // request had been committed before the kill.
    let mut committed_before_kill = 0;
    for s in &unknown {
        let before = pack(
            &http(),
            base,
            &pharmacy_token,
            "verify",
            &pack_body(&format!("before-{}", s.trx), &s.serial),
        )
        .ok(&format!("verify before the retry of {}", s.trx));
        let was_supplied = match before["pack"]["state"].as_str() {
            Some("SUPPLIED") => true,
            Some("ACTIVE") => false,
            _ => panic!("verify before the retry of {}: {before}", s.trx),
        };
        committed_before_kill += usize::from(was_supplied);
        let body = pack(&http(), base, &pharmacy_token, "supply", &pack_body(&s.trx, &s.serial))
            .ok(&format!("retry of {}", s.trx));
        let code = body["return_code"].as_str().unwrap_or_default();
        assert!(
            code == "NMVS_SUCCESS" || (was_supplied && code == "NMVS_NC_PCK_23"),
            "retry of {} ({}, supplied before: {was_supplied}): {body}",
            s.trx,
            s.serial
        );
        assert!(body["alert"].is_null(), "retry of {} raised an alert: {body}", s.trx);
        assert_eq!(body["pack"]["state"], "SUPPLIED", "retry of {}: {body}", s.trx);
    }

    // The audit trail shows each supply exactly once: a sample of the acknowledged packs, and
    // every pack whose answer was lost.
    let step = acknowledged.len().div_ceil(AUDIT_SAMPLE).max(1);
    let sample: Vec<&Supply> = acknowledged.iter().step_by(step).chain(&unknown).collect();
    let audit_failures = Mutex::new(Vec::new());
    in_parallel(&sample, |http, s| {
        if audit_failures.lock().unwrap_or_else(|p| p.into_inner()).len() >= GIVE_UP_AFTER {
            return;
        }
        let supplies = supply_records(&audit_of(http, base, &nca_token, &s.serial));
        let successes = supplies.iter().filter(|(code, _)| code == "NMVS_SUCCESS").count();
        let alerts = supplies.iter().filter(|(_, alert)| *alert).count();
        if successes != 1 || alerts != 0 {
            audit_failures.lock().unwrap_or_else(|p| p.into_inner()).push(((*s).clone(), supplies));
        }
    });
    let audit_failures = audit_failures.into_inner().unwrap_or_else(|p| p.into_inner());
    assert!(
        audit_failures.is_empty(),
        "packs whose audit trail does not show exactly one successful supply: {audit_failures:#?}"
    );
    eprintln!(
        "crash: {} acknowledged supplies durable; {} unanswered ones retried, of which {} had been \
         committed before the kill; {} audit trails read",
        acknowledged.len(),
        unknown.len(),
        committed_before_kill,
        sample.len()
    );

    server.stop();
    let out = Node::audit_verify(&node.data_dir());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("audit: OK"),
        "audit verify after the crashes: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
