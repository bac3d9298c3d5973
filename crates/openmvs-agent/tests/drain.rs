//! The agent against a scripted national system on a fake clock: what it records, the order in
//! which it replays, and the pace: the configured rate, `Retry-After` of a 429 or 503, and the
//! backoff while nothing answers. The replay is stepped round by round; the clock moves only when
//! a round says how long to wait.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openmvs_agent::drain::{Round, verify_trx_id};
use openmvs_agent::upstream::{BoxFuture, Forward, Forwarded, Reply, Upstream};
use openmvs_agent::{Agent, AgentConfig, PackAnswer};
use openmvs_core::pack::{Command, Operation};
use openmvs_core::time::{Clock, Date, Timestamp};
use openmvs_national::clock::FakeClock;
use openmvs_wire::api::{ErrorBody, PackRequest, PackResponse, PackView};

/// A directory of its own, removed when dropped.
struct Dir(std::path::PathBuf);

impl Dir {
    fn new() -> Dir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "openmvs-agent-drain-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("a directory");
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How the scripted system answers when its script is empty.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing answers.
    Down,
    /// Every pack is active and every operation succeeds.
    Up,
    /// Never answers (a request that hangs).
    Hang,
}

/// One request the scripted system received: when, what, and with which transaction id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    at: Timestamp,
    command: String,
    serial: String,
    trx: String,
}

struct Scripted {
    clock: Arc<FakeClock>,
    mode: Mutex<Mode>,
    script: Mutex<VecDeque<Reply>>,
    calls: Mutex<Vec<Call>>,
}

impl Scripted {
    fn new(clock: Arc<FakeClock>, mode: Mode) -> Arc<Scripted> {
        Arc::new(Scripted {
            clock,
            mode: Mutex::new(mode),
            script: Mutex::new(VecDeque::new()),
            calls: Mutex::new(Vec::new()),
        })
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn then(&self, reply: Reply) {
        self.script.lock().unwrap().push_back(reply);
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

fn success(command: Command, body: &PackRequest) -> PackResponse {
    let state = match command {
        Command::Set(op) => op.target().as_str(),
        _ => "ACTIVE",
    };
    PackResponse {
        trx_id: "TRX-1".into(),
        client_trx_id: body.client_trx_id.clone().unwrap_or_default(),
        accepted: true,
        return_code: "NMVS_SUCCESS".into(),
        level: 1,
        message: "Done.".into(),
        pack: Some(PackView {
            scheme: "GTIN".into(),
            product_code: body.product_code.clone().unwrap_or_default(),
            serial: body.serial.clone().unwrap_or_default(),
            batch: body.batch.clone().unwrap_or_default(),
            expiry: body.expiry.clone().unwrap_or_default(),
            state: state.into(),
            reasons: vec![],
            dispensable: state == "ACTIVE",
        }),
        product: None,
        alert: None,
        intermarket: false,
        warnings: vec![],
    }
}

impl Upstream for Scripted {
    fn pack(&self, command: Command, body: &PackRequest) -> BoxFuture<'_, Reply> {
        let body = body.clone();
        Box::pin(async move {
            let mode = *self.mode.lock().unwrap();
            if mode == Mode::Hang {
                std::future::pending::<()>().await;
            }
            self.calls.lock().unwrap().push(Call {
                at: self.clock.now(),
                command: command.to_string(),
                serial: body.serial.clone().unwrap_or_default(),
                trx: body.client_trx_id.clone().unwrap_or_default(),
            });
            if let Some(r) = self.script.lock().unwrap().pop_front() {
                return r;
            }
            match mode {
                Mode::Down => Reply::Unreachable("connection refused".into()),
                _ => Reply::Answered(success(command, &body)),
            }
        })
    }

    fn forward(&self, _request: Forward) -> BoxFuture<'_, Result<Forwarded, String>> {
        Box::pin(async { Err("not scripted".to_owned()) })
    }
}

fn start() -> Timestamp {
    Timestamp::start_of(Date::new(2026, 11, 29).expect("a date")).plus(Duration::from_secs(10 * 3600))
}

struct Setup {
    agent: Arc<Agent>,
    national: Arc<Scripted>,
    clock: Arc<FakeClock>,
    _dir: Dir,
}

fn setup(mode: Mode, tune: impl FnOnce(&mut AgentConfig)) -> Setup {
    let clock = Arc::new(FakeClock::at(start()));
    let national = Scripted::new(clock.clone(), mode);
    let mut config = AgentConfig::new("https://national.example", "cl_pharmacy", "secret");
    tune(&mut config);
    let dir = Dir::new();
    let agent = Agent::open(config, &dir.0, national.clone(), clock.clone()).expect("open the agent");
    Setup { agent: Arc::new(agent), national, clock, _dir: dir }
}

fn body(trx: &str, serial: &str) -> PackRequest {
    PackRequest {
        client_trx_id: Some(trx.into()),
        scheme: Some("GTIN".into()),
        product_code: Some("09501101530003".into()),
        serial: Some(serial.into()),
        batch: Some("ABC123".into()),
        expiry: Some("301231".into()),
        ..PackRequest::default()
    }
}

fn supply() -> Command {
    Command::Set(Operation::Supply)
}

async fn recorded(agent: &Agent, command: Command, b: PackRequest) -> PackResponse {
    match agent.pack(command, b).await.expect("a request the agent takes") {
        PackAnswer::Recorded(r) => r,
        other => panic!("expected the request to be recorded, got {other:?}"),
    }
}

impl Setup {
    /// Steps the replay until nothing is pending, moving the clock to each wait's end; the waits.
    async fn drain(&self) -> Vec<Duration> {
        let mut waits = Vec::new();
        for _ in 0..10_000 {
            match self.agent.drain_round().await.expect("a round") {
                Round::Idle => return waits,
                Round::Worked(_) => {}
                Round::Wait(until) => {
                    let d = until.since(self.clock.now());
                    assert!(!d.is_zero(), "a wait that ends now would spin");
                    waits.push(d);
                    self.clock.advance(d);
                }
            }
        }
        panic!("the replay did not finish in 10,000 rounds");
    }
}

#[tokio::test]
async fn a_request_the_national_system_cannot_take_is_recorded_and_answered_202_then_replayed() {
    let s = setup(Mode::Down, |_| {});
    let r = recorded(&s.agent, supply(), body("pos-1", "S1")).await;
    assert_eq!((r.accepted, r.return_code.as_str(), r.level), (false, "NMVS_TI_OFF_01", 3));
    assert_eq!(r.client_trx_id, "pos-1");
    // Known to be down: the next request is recorded at once, without an attempt.
    recorded(&s.agent, Command::Verify, body("pos-2", "S2")).await;
    assert_eq!(s.national.calls().len(), 1);
    let status = s.agent.status().unwrap();
    assert_eq!((status.queue_length, status.online), (2, false));
    assert!(status.last_failure.as_deref().unwrap().contains("connection refused"));
    // A repeat of a recorded request is answered as recorded, and one with other content refused.
    assert!(matches!(s.agent.pack(supply(), body("pos-1", "S1")).await, Ok(PackAnswer::Recorded(_))));
    let e = s.agent.pack(supply(), body("pos-1", "S9")).await.unwrap_err();
    assert_eq!(e.code.as_str(), "NMVS_TE_TX_01");

    s.national.set(Mode::Up);
    let waits = s.drain().await;
    assert_eq!(waits.len(), 1, "one wait, the backoff after the failure: {waits:?}");
    let calls: Vec<(String, String)> =
        s.national.calls()[1..].iter().map(|c| (c.command.clone(), c.trx.clone())).collect();
    assert_eq!(
        calls,
        [
            ("verify".to_owned(), verify_trx_id("pos-1")),
            ("supply".to_owned(), "pos-1".to_owned()),
            ("verify".to_owned(), "pos-2".to_owned())
        ],
        "verify first, then the supply under its own id; then the recorded verify"
    );
    let status = s.agent.status().unwrap();
    assert_eq!((status.queue_length, status.replayed, status.problems_open, status.online), (0, 2, 0, true));
    // Replayed: a repeat now gets the national system's answer.
    match s.agent.pack(supply(), body("pos-1", "S1")).await.unwrap() {
        PackAnswer::Answered(r) => assert_eq!((r.accepted, r.return_code.as_str()), (true, "NMVS_SUCCESS")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_packs_later_operations_wait_behind_its_recorded_ones_and_other_packs_go_straight_through() {
    let s = setup(Mode::Down, |_| {});
    recorded(&s.agent, supply(), body("a-1", "P")).await;
    s.national.set(Mode::Up);
    // The backoff has passed: the system answers again, but pack P has a recorded operation.
    s.clock.advance(Duration::from_secs(3600));
    recorded(&s.agent, Command::Undo(Operation::Supply), body("a-2", "P")).await;
    match s.agent.pack(Command::Verify, body("b-1", "Q")).await.unwrap() {
        PackAnswer::Answered(r) => assert_eq!(r.return_code, "NMVS_SUCCESS"),
        other => panic!("pack Q has nothing recorded and goes through: {other:?}"),
    }
    s.drain().await;
    let on_p: Vec<String> = s
        .national
        .calls()
        .iter()
        .filter(|c| c.serial == "P")
        .map(|c| format!("{} {}", c.command, c.trx))
        .collect();
    assert_eq!(
        on_p,
        [
            "supply a-1".to_owned(), // the attempt that found the system down
            format!("verify {}", verify_trx_id("a-1")),
            "supply a-1".to_owned(),
            "supply-undo a-2".to_owned(),
        ]
    );
}

#[tokio::test]
async fn the_replay_keeps_the_configured_rate_and_waits_out_every_retry_after() {
    let s = setup(Mode::Down, |c| {
        c.rate_per_second = 2.0;
        c.burst = 2;
        c.concurrency = 4;
    });
    for i in 0..10 {
        recorded(&s.agent, Command::Verify, body(&format!("v-{i}"), &format!("S{i}"))).await;
    }
    // The backoff after the failed attempt: nothing is sent before it ends.
    let Round::Wait(until) = s.agent.drain_round().await.unwrap() else { panic!("the replay must wait") };
    assert_eq!(s.national.calls().len(), 1);
    s.clock.advance(until.since(s.clock.now()));

    // Back, but overloaded: 503 with Retry-After 30.
    s.national.set(Mode::Up);
    let busy = |status, secs| Reply::Busy {
        status,
        retry_after: Some(Duration::from_secs(secs)),
        body: Some(ErrorBody {
            return_code: "NMVS_TI_UN_01".into(),
            message: "busy".into(),
            details: vec![],
        }),
    };
    s.national.then(busy(503, 30));
    s.national.then(busy(503, 30));
    let before = s.clock.now();
    let Round::Wait(until) = s.agent.drain_round().await.unwrap() else {
        panic!("a 503 makes the replay wait")
    };
    // At least the Retry-After, and at most half as long again (a share fixed by the client id,
    // so that agents refused together do not come back together).
    let waited = until.since(before);
    assert!(waited >= Duration::from_secs(30) && waited <= Duration::from_secs(45), "{waited:?}");
    assert_eq!(s.national.calls().len(), 3, "the burst of two, both refused");
    // Nothing is sent while the wait lasts.
    s.clock.advance(waited - Duration::from_millis(1));
    assert!(matches!(s.agent.drain_round().await.unwrap(), Round::Wait(t) if t == until));
    assert_eq!(s.national.calls().len(), 3);
    s.clock.advance(Duration::from_millis(1));

    // Then 429 with Retry-After 10 (to both requests of the refilled burst).
    s.national.then(busy(429, 10));
    s.national.then(busy(429, 10));
    let before = s.clock.now();
    let round = s.agent.drain_round().await.unwrap();
    let Round::Wait(until) = round else { panic!("a 429 makes the replay wait: {round:?}") };
    let waited = until.since(before);
    assert!(waited >= Duration::from_secs(10) && waited <= Duration::from_secs(15), "{waited:?}");
    s.clock.advance(waited);

    // Then the backlog drains at 2 per second after a burst of 2.
    let first = s.national.calls().len();
    s.drain().await;
    let calls = s.national.calls();
    let sent: Vec<&Call> = calls[first..].iter().collect();
    let t0 = sent[0].at;
    assert!(sent.len() >= 10, "every recorded verify was sent: {}", sent.len());
    for (i, c) in sent.iter().enumerate() {
        let earliest = Duration::from_millis(((i.saturating_sub(1)) as u64) * 500);
        assert!(
            c.at.since(t0) >= earliest,
            "request {i} went out {:?} after the first, before {earliest:?}",
            c.at.since(t0)
        );
    }
    let last = sent.last().unwrap().at.since(t0);
    assert!(last <= Duration::from_secs(5), "the rate is kept, not undershot by much: {last:?}");
    let status = s.agent.status().unwrap();
    assert_eq!((status.queue_length, status.replayed, status.problems_open), (0, 10, 0));
}

#[tokio::test]
async fn the_backoff_doubles_while_nothing_answers_and_stays_under_its_ceiling() {
    let s = setup(Mode::Down, |c| {
        c.retry = Duration::from_secs(5);
        c.retry_max = Duration::from_secs(60);
    });
    recorded(&s.agent, Command::Verify, body("v-1", "S1")).await;
    let mut waits = Vec::new();
    for _ in 0..8 {
        let Round::Wait(until) = s.agent.drain_round().await.unwrap() else { panic!("must wait") };
        let d = until.since(s.clock.now());
        waits.push(d);
        s.clock.advance(d);
    }
    // The same share of `retry` is added every time (fixed per client id): the doublings show.
    let jitter = waits[0] - Duration::from_secs(5);
    assert!(jitter < Duration::from_secs(5));
    let expected: Vec<Duration> =
        [5, 10, 20, 40, 60, 60, 60, 60].iter().map(|s| Duration::from_secs(*s) + jitter).collect();
    assert_eq!(waits, expected);
    assert_eq!(s.national.calls().len(), 8, "one attempt per wait");
}

#[tokio::test(start_paused = true)]
async fn a_request_slower_than_the_timeout_is_recorded() {
    let s = setup(Mode::Hang, |c| c.timeout = Duration::from_millis(800));
    let r = recorded(&s.agent, Command::Verify, body("slow-1", "S1")).await;
    assert_eq!(r.return_code, "NMVS_TI_OFF_01");
    let status = s.agent.status().unwrap();
    assert!(status.last_failure.as_deref().unwrap().contains("800 ms"), "{status:?}");
}

#[tokio::test]
async fn an_undo_of_a_decommission_that_was_held_is_not_sent_and_both_are_listed() {
    let s = setup(Mode::Down, |_| {});
    recorded(&s.agent, supply(), body("h-1", "R")).await;
    recorded(&s.agent, Command::Undo(Operation::Supply), body("h-2", "R")).await;
    s.national.set(Mode::Up);
    // The pack's batch turns out recalled.
    let mut recalled = success(Command::Verify, &body(&verify_trx_id("h-1"), "R"));
    recalled.return_code = "NMVS_FE_LOT_01".into();
    recalled.level = 4;
    recalled.pack.as_mut().unwrap().reasons = vec!["RECALLED".into()];
    recalled.pack.as_mut().unwrap().dispensable = false;
    s.clock.advance(Duration::from_secs(3600));
    s.national.then(Reply::Answered(recalled));
    s.drain().await;
    let sent: Vec<String> = s.national.calls()[1..].iter().map(|c| c.command.clone()).collect();
    assert_eq!(sent, ["verify"], "neither the supply nor its undo was sent");
    let status = s.agent.status().unwrap();
    let listed: Vec<(&str, &str, &str)> = status
        .problems
        .iter()
        .map(|p| (p.client_trx_id.as_str(), p.outcome.as_str(), p.return_code.as_str()))
        .collect();
    assert_eq!(
        listed,
        [("h-1", "NOT_DISPENSABLE", "NMVS_FE_LOT_01"), ("h-2", "NOT_SENT", "AGENT_UNDO_OF_UNAPPLIED")]
    );
    // The pharmacist acknowledges the first; it leaves the open list and keeps who did it.
    let id = status.problems[0].id;
    let acked = s.agent.acknowledge(id, Some("A.B.")).unwrap();
    assert_eq!(acked.acknowledged_by.as_deref(), Some("A.B."));
    let status = s.agent.status().unwrap();
    assert_eq!(status.problems_open, 1);
    assert_eq!(s.agent.acknowledge(9999, None).unwrap_err().code.as_str(), "NMVS_TE_NF_01");
    assert_eq!(s.agent.problems(100).unwrap().problems.len(), 2);
}

#[tokio::test]
async fn the_agent_logs_in_only_the_pharmacys_own_credentials_and_its_tokens_expire() {
    let s = setup(Mode::Up, |c| c.token_ttl = Duration::from_secs(60));
    assert!(s.agent.login("cl_pharmacy", "wrong").is_err());
    assert!(s.agent.login("cl_other", "secret").is_err());
    let t = s.agent.login("cl_pharmacy", "secret").unwrap();
    assert_eq!(t.expires_in, 60);
    assert!(s.agent.authorize(Some(&t.access_token)).is_ok());
    assert!(s.agent.authorize(Some("forged")).is_err());
    assert!(s.agent.authorize(None).is_err());
    s.clock.advance(Duration::from_secs(61));
    assert!(s.agent.authorize(Some(&t.access_token)).is_err());
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_nothing_is_recorded() {
    let s = setup(Mode::Down, |_| {});
    let mut b = body("bad-1", "S1");
    b.product_code = Some("09501101530004".into());
    let e = s.agent.pack(Command::Verify, b).await.unwrap_err();
    assert_eq!(e.code.as_str(), "NMVS_FE_GR_01");
    let mut b = body("bad-2", "S1");
    b.expiry = None;
    let e = s.agent.pack(Command::Verify, b).await.unwrap_err();
    assert_eq!((e.code.as_str(), e.details[0].field.as_str()), ("NMVS_TE_XM_02", "expiry"));
    assert_eq!(s.agent.status().unwrap().queue_length, 0);
    assert!(s.national.calls().is_empty());
}

/// An agent allowed fewer requests than a round sends: the verifies take the allowance and the
/// decommissions after them are refused with 429. The next round sends each decommission
/// without verifying again, so the backlog moves instead of verifying forever.
#[tokio::test]
async fn a_decommission_refused_for_load_after_its_verify_is_sent_later_without_a_second_verify() {
    let s = setup(Mode::Down, |c| {
        c.rate_per_second = 100.0;
        c.burst = 100;
        c.concurrency = 1;
    });
    recorded(&s.agent, supply(), body("d-1", "D1")).await;
    let Round::Wait(until) = s.agent.drain_round().await.unwrap() else { panic!("the replay must wait") };
    s.clock.advance(until.since(s.clock.now()));
    s.national.set(Mode::Up);
    let first = s.national.calls().len();
    // The verify is answered; the supply after it is refused for load, twice.
    let limited = Reply::Busy {
        status: 429,
        retry_after: Some(Duration::from_secs(1)),
        body: Some(ErrorBody {
            return_code: "NMVS_TI_RL_01".into(),
            message: "too many requests".into(),
            details: vec![],
        }),
    };
    s.national.then(Reply::Answered(success(Command::Verify, &body(&verify_trx_id("d-1"), "D1"))));
    s.national.then(limited.clone());
    s.national.then(limited);
    s.drain().await;
    let sent: Vec<(String, String)> =
        s.national.calls()[first..].iter().map(|c| (c.command.clone(), c.trx.clone())).collect();
    assert_eq!(
        sent,
        [
            ("verify".to_owned(), verify_trx_id("d-1")),
            ("supply".to_owned(), "d-1".to_owned()),
            ("supply".to_owned(), "d-1".to_owned()),
            ("supply".to_owned(), "d-1".to_owned()),
        ],
        "one verify, then the supply until it gets through"
    );
    let status = s.agent.status().unwrap();
    assert_eq!((status.queue_length, status.replayed, status.problems_open), (0, 1, 0));
}

/// Agents refused in the same instant with the same `Retry-After` come back spread over half as
/// long again, each at a moment fixed by its client id.
#[tokio::test]
async fn agents_told_the_same_retry_after_come_back_spread_out() {
    let mut waits = Vec::new();
    for n in 0..20 {
        let s = setup(Mode::Up, |c| c.client_id = format!("cl_pharmacy_{n}"));
        recorded_while_down(&s).await;
        s.national.then(Reply::Busy { status: 503, retry_after: Some(Duration::from_secs(10)), body: None });
        let before = s.clock.now();
        let Round::Wait(until) = s.agent.drain_round().await.unwrap() else { panic!("a 503 makes it wait") };
        waits.push(until.since(before));
    }
    assert!(
        waits.iter().all(|w| *w >= Duration::from_secs(10) && *w <= Duration::from_secs(15)),
        "{waits:?}"
    );
    let distinct: std::collections::BTreeSet<Duration> = waits.iter().copied().collect();
    assert!(distinct.len() >= 15, "20 agents come back at {} instants: {waits:?}", distinct.len());
}

/// Records one verify while the national system is down, and lets the backoff pass.
async fn recorded_while_down(s: &Setup) {
    s.national.set(Mode::Down);
    recorded(&s.agent, Command::Verify, body("w-1", "W1")).await;
    let Round::Wait(until) = s.agent.drain_round().await.unwrap() else { panic!("the replay must wait") };
    s.clock.advance(until.since(s.clock.now()));
    s.national.set(Mode::Up);
}
