//! The offline agent against a real national system in this process (SQLite, served over HTTP):
//! the system is stopped while a pharmacy scans more than 10,000 packs, valid, already supplied
//! elsewhere, unknown and recalled, some more than once; then it is started again and the replay is
//! stepped to the end on a fake clock. Every operation is applied exactly once and in order per
//! pack (the national system's audit trail and pack states say so), alerts are raised for the truly
//! bad packs only, and each of those is on the pharmacist's list.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openmvs_agent::drain::Round;
use openmvs_agent::upstream::Upstream;
use openmvs_agent::{Agent, AgentConfig, PackAnswer};
use openmvs_core::pack::{Command, Operation};
use openmvs_core::roles::Role;
use openmvs_core::time::{Clock, Date, Timestamp};
use openmvs_http::agent_upstream::ClientUpstream;
use openmvs_national::clock::FakeClock;
use openmvs_testkit::{LOCAL_GTIN, LocalNational, TempDir};
use openmvs_wire::api::PackRequest;

/// Valid packs the pharmacy dispenses.
const VALID: usize = 9_400;
/// Packs supplied by another pharmacy before the outage.
const ELSEWHERE: usize = 200;
/// Serials no OBP uploaded (of a known batch).
const UNKNOWN: usize = 100;
/// Packs of a batch recalled before the outage.
const RECALLED: usize = 200;

fn body(trx: &str, serial: &str, batch: &str) -> PackRequest {
    PackRequest {
        client_trx_id: Some(trx.into()),
        scheme: Some("GTIN".into()),
        product_code: Some(LOCAL_GTIN.into()),
        serial: Some(serial.into()),
        batch: Some(batch.into()),
        expiry: Some("301231".into()),
        ..PackRequest::default()
    }
}

/// What the pharmacy did with one pack during the outage, in order.
struct Pack {
    serial: String,
    batch: &'static str,
    ops: Vec<Command>,
}

fn plan() -> Vec<Pack> {
    let supply = Command::Set(Operation::Supply);
    let mut packs = Vec::new();
    for i in 0..VALID {
        let ops = match i % 50 {
            // Verified, then dispensed.
            0 => vec![Command::Verify, supply],
            // Dispensed, then taken back (the undo must follow the supply).
            1 => vec![supply, Command::Undo(Operation::Supply)],
            _ => vec![supply],
        };
        packs.push(Pack { serial: format!("V{i:06}"), batch: "GOOD1", ops });
    }
    for i in 0..ELSEWHERE {
        packs.push(Pack { serial: format!("E{i:06}"), batch: "GOOD1", ops: vec![supply] });
    }
    for i in 0..UNKNOWN {
        packs.push(Pack { serial: format!("U{i:06}"), batch: "GOOD1", ops: vec![supply] });
    }
    for i in 0..RECALLED {
        packs.push(Pack { serial: format!("R{i:06}"), batch: "BAD1", ops: vec![supply] });
    }
    packs
}

fn start() -> Timestamp {
    Timestamp::start_of(Date::new(2026, 11, 29).expect("a date")).plus(Duration::from_secs(10 * 3600))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_scans_recorded_in_an_outage_are_applied_once_in_order_with_only_the_true_alerts() {
    let dir = TempDir::new("agent-replay");
    let clock = Arc::new(FakeClock::at(start()));
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let mut national = LocalNational::start(&dir.path().join("national"), dyn_clock.clone()).await.unwrap();
    let good: Vec<String> =
        (0..VALID).map(|i| format!("V{i:06}")).chain((0..ELSEWHERE).map(|i| format!("E{i:06}"))).collect();
    national.seed("GOOD1", "301231", &good).await.unwrap();
    let bad: Vec<String> = (0..RECALLED).map(|i| format!("R{i:06}")).collect();
    national.seed("BAD1", "301231", &bad).await.unwrap();
    national.recall("BAD1").await.unwrap();
    let pharmacy = national.client(Role::Pharmacy, "DE-PH-0001").await.unwrap();
    let other = national.client(Role::Pharmacy, "DE-PH-0002").await.unwrap();

    // Another pharmacy dispenses the E packs before the outage.
    let elsewhere = ClientUpstream::new(
        &national.url(),
        None,
        &other.client_id,
        &other.client_secret,
        Duration::from_secs(30),
    )
    .unwrap();
    for i in 0..ELSEWHERE {
        let r = elsewhere
            .pack(Command::Set(Operation::Supply), &body(&format!("other-{i}"), &format!("E{i:06}"), "GOOD1"))
            .await;
        assert!(matches!(&r, openmvs_agent::upstream::Reply::Answered(a) if a.accepted), "{r:?}");
    }

    let upstream = Arc::new(
        ClientUpstream::new(
            &national.url(),
            None,
            &pharmacy.client_id,
            &pharmacy.client_secret,
            Duration::from_secs(30),
        )
        .unwrap(),
    );
    let mut config = AgentConfig::new(&national.url(), &pharmacy.client_id, &pharmacy.client_secret);
    config.rate_per_second = 1e6;
    config.burst = 10_000;
    config.concurrency = 32;
    config.timeout = Duration::from_secs(30);
    let agent =
        Arc::new(Agent::open(config, &dir.path().join("agent"), upstream, dyn_clock.clone()).unwrap());

    // The outage: every scan is recorded, the packs interleaved as a day's work is.
    national.stop().await;
    let packs = plan();
    let rounds = packs.iter().map(|p| p.ops.len()).max().unwrap();
    let mut trx_of: BTreeMap<(String, usize), String> = BTreeMap::new();
    let mut scans = 0;
    for round in 0..rounds {
        for p in &packs {
            let Some(&command) = p.ops.get(round) else { continue };
            let trx = format!("pos-{}-{round}", p.serial);
            match agent.pack(command, body(&trx, &p.serial, p.batch)).await.unwrap() {
                PackAnswer::Recorded(r) => assert_eq!(r.return_code, "NMVS_TI_OFF_01"),
                other => panic!("{trx}: {other:?}"),
            }
            trx_of.insert((p.serial.clone(), round), trx);
            scans += 1;
        }
    }
    assert!(scans >= 10_000, "{scans} scans");
    let status = agent.status().unwrap();
    assert_eq!((status.queue_length, status.online), (scans as u64, false));

    // The system is back; the replay is stepped to the end.
    national.restart().unwrap();
    let mut worked_rounds = 0;
    loop {
        match agent.drain_round().await.unwrap() {
            Round::Idle => break,
            Round::Worked(_) => worked_rounds += 1,
            Round::Wait(until) => clock.advance(until.since(clock.now()).max(Duration::from_millis(1))),
        }
        assert!(worked_rounds < 100_000, "the replay does not end");
    }
    let status = agent.status().unwrap();
    assert_eq!((status.queue_length, status.replayed, status.online), (0, scans as u64, true));

    // What the national system holds.
    let db =
        rusqlite::Connection::open_with_flags(national.db_path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let states: BTreeMap<String, String> = db
        .prepare("SELECT serial, state FROM packs WHERE product_code = ?1")
        .unwrap()
        .query_map([LOCAL_GTIN], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // (serial, operation, return code, client) of every audit record of the agent's client, in order.
    let records: Vec<(String, String, String)> = db
        .prepare("SELECT subject, operation, return_code FROM audit WHERE actor = ?1 ORDER BY pos")
        .unwrap()
        .query_map([&pharmacy.client_id], |r| {
            let subject: String = r.get(0)?;
            Ok((subject.rsplit('/').next().unwrap_or_default().to_owned(), r.get(1)?, r.get(2)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut by_pack: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for (serial, op, code) in &records {
        by_pack.entry(serial.as_str()).or_default().push((op.as_str(), code.as_str()));
    }
    let mut wrong = Vec::new();
    for p in packs.iter().filter(|p| p.serial.starts_with('V')) {
        let seen = by_pack.get(p.serial.as_str()).cloned().unwrap_or_default();
        // Each recorded operation once, in the order recorded; each supply after its verify.
        let ops: Vec<&str> = seen.iter().map(|(op, _)| *op).collect();
        let expected: Vec<&str> = match p.ops.as_slice() {
            [Command::Verify, _] => vec!["verify", "verify", "supply"],
            [_, Command::Undo(_)] => vec!["verify", "supply", "supply-undo"],
            _ => vec!["verify", "supply"],
        };
        let all_succeeded = seen.iter().all(|(_, code)| *code == "NMVS_SUCCESS");
        let state = states.get(&p.serial).map(String::as_str);
        let expected_state = if p.ops.len() == 2 && p.ops[1] != Command::Set(Operation::Supply) {
            "ACTIVE"
        } else {
            "SUPPLIED"
        };
        if ops != expected || !all_succeeded || state != Some(expected_state) {
            wrong.push(format!("{}: {seen:?}, state {state:?}", p.serial));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} valid packs not applied exactly once in order: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );

    // Alerts: one per truly bad pack that the rules alert on, none for any other.
    let alerts: Vec<(String, String)> = db
        .prepare("SELECT serial, code FROM alerts ORDER BY serial")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expected_alerts: BTreeSet<(String, String)> = (0..ELSEWHERE)
        .map(|i| (format!("E{i:06}"), "A24".to_owned()))
        .chain((0..UNKNOWN).map(|i| (format!("U{i:06}"), "A3".to_owned())))
        .collect();
    assert_eq!(alerts.len(), expected_alerts.len(), "one alert per bad pack, no more");
    assert_eq!(alerts.into_iter().collect::<BTreeSet<_>>(), expected_alerts);
    // The recalled packs stay active (nothing was decommissioned), the elsewhere ones supplied once.
    assert!((0..RECALLED).all(|i| states.get(&format!("R{i:06}")).map(String::as_str) == Some("ACTIVE")));

    // The pharmacist's list: exactly the bad packs, each with the national system's answer.
    let list = agent.problems(100_000).unwrap().problems;
    let listed: BTreeMap<String, (String, String, Option<String>)> = list
        .iter()
        .map(|p| {
            (
                p.serial.clone(),
                (p.outcome.clone(), p.return_code.clone(), p.alert.as_ref().map(|a| a.code.clone())),
            )
        })
        .collect();
    assert_eq!(list.len(), ELSEWHERE + UNKNOWN + RECALLED, "nothing listed twice, nothing valid listed");
    for i in 0..ELSEWHERE {
        assert_eq!(
            listed[&format!("E{i:06}")],
            ("REFUSED".to_owned(), "NMVS_NC_PCK_22".to_owned(), Some("A24".to_owned()))
        );
    }
    for i in 0..UNKNOWN {
        assert_eq!(
            listed[&format!("U{i:06}")],
            ("NOT_DISPENSABLE".to_owned(), "NMVS_NC_PC_02".to_owned(), Some("A3".to_owned()))
        );
    }
    for i in 0..RECALLED {
        let (outcome, _, alert) = &listed[&format!("R{i:06}")];
        assert_eq!((outcome.as_str(), alert), ("NOT_DISPENSABLE", &None));
    }
    assert!(list.iter().all(|p| p.answer.is_some() && p.acknowledged_at.is_none()));
    assert_eq!(status.problems_open, (ELSEWHERE + UNKNOWN + RECALLED) as u64);
    eprintln!("{scans} scans replayed in {worked_rounds} rounds");
    drop(db);
    national.close().await;
}

/// The agent's routes, served over HTTP in front of the national system: its own login, the
/// national system's answers passed through as they came, a 202 while the system is stopped, the
/// status as JSON and as a page, the metrics, and the pharmacist's acknowledgement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_routes_pass_answers_through_record_when_the_system_is_down_and_show_the_list() {
    use openmvs_http::{AgentState, Observability, agent_router};
    use serde_json::{Value, json};

    let dir = TempDir::new("agent-routes");
    let clock = Arc::new(FakeClock::at(start()));
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let mut national = LocalNational::start(&dir.path().join("national"), dyn_clock.clone()).await.unwrap();
    national.seed("GOOD1", "301231", &["P1".to_owned(), "P2".to_owned()]).await.unwrap();
    let pharmacy = national.client(Role::Pharmacy, "DE-PH-0001").await.unwrap();
    let upstream = Arc::new(
        ClientUpstream::new(
            &national.url(),
            None,
            &pharmacy.client_id,
            &pharmacy.client_secret,
            Duration::from_secs(30),
        )
        .unwrap(),
    );
    let config = AgentConfig::new(&national.url(), &pharmacy.client_id, &pharmacy.client_secret);
    let agent =
        Arc::new(Agent::open(config, &dir.path().join("agent"), upstream, dyn_clock.clone()).unwrap());
    let obs = Arc::new(Observability::new(dyn_clock.clone()));
    obs.set_ready(true);
    let listener = openmvs_http::server::listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let server =
        openmvs_http::serve(listener, agent_router(AgentState { agent: agent.clone(), obs }), None).unwrap();
    let base = format!("http://{}", server.local_addr());
    let http = reqwest::Client::new();
    let login = |secret: &str| {
        http.post(format!("{base}/oauth/token")).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", pharmacy.client_id.as_str()),
            ("client_secret", secret),
        ])
    };
    assert_eq!(login("wrong").send().await.unwrap().status(), 401);
    let token: Value = login(&pharmacy.client_secret).send().await.unwrap().json().await.unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let post = |path: &str, body: Value| http.post(format!("{base}{path}")).bearer_auth(&token).json(&body);
    let pack = |trx: &str, serial: &str| json!({"client_trx_id": trx, "scheme": "GTIN", "product_code": LOCAL_GTIN, "serial": serial, "batch": "GOOD1", "expiry": "301231"});

    // Without a token: 401. Up: the national system's answer as it came.
    let r = http.post(format!("{base}/v1/packs/verify")).json(&pack("r-0", "P1")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = post("/v1/packs/verify", pack("r-1", "P1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["return_code"].as_str(), v["pack"]["state"].as_str()),
        (Some("NMVS_SUCCESS"), Some("ACTIVE"))
    );
    let r = post("/v1/packs/verify", pack("r-2", "NOPE")).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["return_code"].as_str(), v["alert"]["code"].as_str()), (Some("NMVS_NC_PC_02"), Some("A3")));
    let alerts = http.get(format!("{base}/v1/alerts")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(alerts.status(), 200);
    let alerts: Value = alerts.json().await.unwrap();
    assert_eq!(alerts["alerts"].as_array().unwrap().len(), 1, "{alerts}");
    let catalogue: Value =
        http.get(format!("{base}/v1/return-codes")).send().await.unwrap().json().await.unwrap();
    let offline =
        catalogue["return_codes"].as_array().unwrap().iter().find(|c| c["code"] == "NMVS_TI_OFF_01").cloned();
    assert_eq!(offline.map(|c| c["http_status"].clone()), Some(json!(202)));

    // Down: recorded, 202; bulk and alerts are not recorded (503 with Retry-After).
    let last_contact = clock.now();
    national.stop().await;
    clock.advance(Duration::from_secs(7));
    let r = post("/v1/packs/supply", pack("r-3", "P2")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let recorded = clock.now();
    clock.advance(Duration::from_secs(3));
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["accepted"].as_bool(), v["return_code"].as_str()), (Some(false), Some("NMVS_TI_OFF_01")));
    let r = http.get(format!("{base}/v1/alerts")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let status: Value = http.get(format!("{base}/status")).send().await.unwrap().json().await.unwrap();
    assert_eq!((status["queue_length"].as_u64(), status["online"].as_bool()), (Some(1), Some(false)));
    assert_eq!(
        (&status["oldest_recorded_at"], &status["oldest_age_seconds"], &status["last_contact_at"]),
        (&json!(recorded.to_rfc3339()), &json!(3), &json!(last_contact.to_rfc3339())),
        "{status}"
    );
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let exposed = openmvs_telemetry::check_exposition(&metrics).unwrap();
    assert_eq!(exposed.value("openmvs_agent_queue_length", &[]), Some(1.0));
    assert_eq!(exposed.value("openmvs_agent_online", &[]), Some(0.0));
    assert_eq!(exposed.value("openmvs_agent_oldest_age_seconds", &[]), Some(3.0));
    assert_eq!(exposed.value("openmvs_agent_last_contact_age_seconds", &[]), Some(10.0));

    // Back: the pack turns out supplied elsewhere in the meantime, so the replay lists it.
    national.restart().unwrap();
    let other = national.client(Role::Pharmacy, "DE-PH-0002").await.unwrap();
    let elsewhere = ClientUpstream::new(
        &national.url(),
        None,
        &other.client_id,
        &other.client_secret,
        Duration::from_secs(30),
    )
    .unwrap();
    let supplied = elsewhere.pack(Command::Set(Operation::Supply), &body("o-1", "P2", "GOOD1")).await;
    assert!(
        matches!(supplied, openmvs_agent::upstream::Reply::Answered(ref a) if a.accepted),
        "{supplied:?}"
    );
    // Past the backoff (the agent's token, an hour long, stays valid).
    clock.advance(Duration::from_secs(60));
    loop {
        match agent.drain_round().await.unwrap() {
            Round::Idle => break,
            Round::Worked(_) => {}
            Round::Wait(until) => clock.advance(until.since(clock.now()).max(Duration::from_millis(1))),
        }
    }
    let page = http
        .get(format!("{base}/status"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("NMVS_NC_PCK_22") && page.contains("P2"), "{page}");
    let status: Value = http.get(format!("{base}/status")).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["problems_open"].as_u64(), Some(1));
    let id = status["problems"][0]["id"].as_i64().unwrap();
    let r = http
        .post(format!("{base}/v1/agent/problems/{id}/acknowledge"))
        .json(&json!({"by": "MK"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the pharmacy software acknowledges with its token");
    let r = post(&format!("/v1/agent/problems/{id}/acknowledge"), json!({"by": "MK"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = post(&format!("/v1/agent/problems/{id}/acknowledge"), json!({"who": "MK"})).send().await.unwrap();
    assert_eq!(r.status(), 400, "an unknown field is refused, naming it");
    let status: Value = http.get(format!("{base}/status")).send().await.unwrap().json().await.unwrap();
    assert_eq!((status["problems_open"].as_u64(), status["queue_length"].as_u64()), (Some(0), Some(0)));
    let all: Value = http
        .get(format!("{base}/v1/agent/problems"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["problems"][0]["acknowledged_by"], "MK");
    server.shutdown(Duration::from_secs(5)).await;
    national.close().await;
}
