//! The offline agent as a real process (`openmvs agent`) in front of a real national system
//! (`openmvs serve national`): supplies recorded while the system is stopped, the agent killed
//! with SIGKILL in the middle of the replay and started again. Among the supplies are packs another
//! pharmacy supplied before the outage and serials no OBP uploaded. Nothing recorded is lost and
//! nothing is applied twice: every valid pack is supplied once, with no alert; each true problem
//! raises exactly one alert, however often the killed agent had sent its requests, and is on the
//! agent's list once.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{
    Node, Reply, Server, TempDir, WAIT_LIMIT, eventually, free_port, http, pack_body, send, serial,
};
use serde_json::Value;

/// Supplies of valid packs recorded in the outage.
const SUPPLIES: u64 = 1_500;
/// Packs another pharmacy supplied before the outage, supplied again through the agent.
const ELSEWHERE: u64 = 40;
/// Serials no OBP uploaded, supplied through the agent.
const UNKNOWN: u64 = 40;

fn write_agent_config(dir: &Path, national: &str, creds: &common::Creds, port: u16) -> std::path::PathBuf {
    let file = dir.join("agent.toml");
    let text = format!(
        "[agent]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"queue\"\nnational_url = \"{national}\"\n\
         client_id = \"{}\"\nclient_secret = \"{}\"\nretry_seconds = 1\nretry_max_seconds = 1\n\
         rate_per_second = 1000\nburst = 50\nconcurrency = 8\n",
        creds.client_id, creds.client_secret
    );
    std::fs::write(&file, text).expect("write the agent's configuration");
    file
}

fn start_agent(config: &Path, log: &Path) -> Server {
    Server::spawn_command(&["agent", "--config", config.to_str().expect("UTF-8 path")], log)
        .unwrap_or_else(|log| panic!("the agent did not start:\n{log}"))
}

fn status(http: &reqwest::blocking::Client, agent: &str) -> Value {
    send(http.get(format!("{agent}/status"))).ok("agent status")
}

#[test]
fn an_agent_killed_during_its_replay_loses_nothing_and_applies_nothing_twice() {
    let node = Node::new("agent-crash", "");
    node.seed(SUPPLIES + ELSEWHERE + 10);
    let pharmacy = node.client("PHARMACY", "DE-PH-1");
    let other = node.client("PHARMACY", "DE-PH-2");
    let national_port = free_port();
    let national_url = format!("http://127.0.0.1:{national_port}");
    let dir = TempDir::new("agent-crash-agent");
    let config = write_agent_config(dir.path(), &national_url, &pharmacy, free_port());
    let http = http();

    // Before the outage another pharmacy dispenses some packs.
    let elsewhere: Vec<String> = (SUPPLIES..SUPPLIES + ELSEWHERE).map(serial).collect();
    let unknown: Vec<String> = (0..UNKNOWN).map(|i| format!("UNKNOWN{i:06}")).collect();
    {
        let national = node.start_at(national_port);
        let token = common::token(&http, &national.base, &other);
        for (i, s) in elsewhere.iter().enumerate() {
            let body: Value = send(
                http.post(format!("{}/v1/packs/supply", national.base))
                    .bearer_auth(&token)
                    .json(&pack_body(&format!("other-supply-{i}"), s)),
            )
            .ok("a supply at the other pharmacy");
            assert_eq!(body["return_code"], "NMVS_SUCCESS", "{body}");
        }
        national.stop();
    }

    // The outage: the national system is not running while the pharmacy works.
    let agent = start_agent(&config, &dir.path().join("agent-0.log"));
    let token = common::token(&http, &agent.base, &pharmacy);
    // The problems spread through the queue (one in every 19 scans), so that the kill falls among
    // them too.
    let mut problems = elsewhere.iter().zip(&unknown).flat_map(|(e, u)| [e.clone(), u.clone()]);
    let mut scans = Vec::new();
    for i in 0..SUPPLIES {
        if i % 18 == 17 {
            scans.extend(problems.next());
        }
        scans.push(serial(i));
    }
    scans.extend(problems);
    for (i, s) in scans.iter().enumerate() {
        let reply = send(
            http.post(format!("{}/v1/packs/supply", agent.base))
                .bearer_auth(&token)
                .json(&pack_body(&format!("agent-supply-{i}"), s)),
        );
        match reply {
            Reply::Answer { status: 202, body } => assert_eq!(body["return_code"], "NMVS_TI_OFF_01"),
            other => panic!("supply {i}: {other:?}"),
        }
    }
    let recorded = scans.len() as u64;
    assert_eq!(status(&http, &agent.base)["queue_length"], recorded);

    // The system is back; the agent replays as fast as the system answers and is killed part way.
    let national = node.start_at(national_port);
    let replayed = eventually(WAIT_LIMIT, || {
        let n = status(&http, &agent.base)["replayed"].as_u64().unwrap_or(0);
        (n >= 200).then_some(n)
    });
    agent.kill();
    let replayed = replayed.expect("the replay started within 30 s");
    assert!(
        replayed < recorded,
        "killed after the whole replay ({replayed}): raise SUPPLIES or lower the rate"
    );

    // Started again on the same queue: it finishes the replay.
    let agent = start_agent(&config, &dir.path().join("agent-1.log"));
    let done = eventually(std::time::Duration::from_secs(120), || {
        let s = status(&http, &agent.base);
        (s["queue_length"] == 0).then_some(s)
    })
    .expect("the replay ended within 120 s");
    assert_eq!(done["replayed"], recorded, "{done}");
    assert_eq!(done["problems_open"], ELSEWHERE + UNKNOWN, "the true problems, each once: {done}");

    // The national system's trail: each pack supplied once; replays of operations the killed
    // agent had sent are answered from the system's records (audited as replays), not applied.
    let db = rusqlite::Connection::open_with_flags(
        node.data_dir().join("national.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open the national database");
    let mut supplied: BTreeMap<String, u64> = BTreeMap::new();
    let mut stmt = db
        .prepare("SELECT subject FROM audit WHERE operation = 'supply' AND return_code = 'NMVS_SUCCESS'")
        .unwrap();
    for subject in stmt.query_map([], |r| r.get::<_, String>(0)).unwrap() {
        let subject = subject.unwrap();
        *supplied.entry(subject.rsplit('/').next().unwrap_or_default().to_owned()).or_default() += 1;
    }
    let twice: Vec<_> = supplied.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "packs supplied more than once: {twice:?}");
    let missing: Vec<String> =
        (0..SUPPLIES).map(serial).chain(elsewhere.clone()).filter(|s| !supplied.contains_key(s)).collect();
    assert!(missing.is_empty(), "recorded supplies lost: {missing:?}");
    let states: u64 =
        db.query_row("SELECT COUNT(*) FROM packs WHERE state = 'SUPPLIED'", [], |r| r.get(0)).unwrap();
    assert_eq!(states, SUPPLIES + ELSEWHERE);
    // One alert per true problem, at the pharmacy behind the agent; none for a valid pack, and none
    // twice however often the killed agent had sent a request.
    let mut alerted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut stmt_alerts = db.prepare("SELECT serial, code, client_id FROM alerts").unwrap();
    for row in stmt_alerts
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
        .unwrap()
    {
        let (serial, code, client) = row.unwrap();
        assert_eq!(client, pharmacy.client_id, "alert {code} on {serial} raised by another client");
        alerted.entry(serial).or_default().push(code);
    }
    let expected: BTreeMap<String, Vec<String>> = unknown
        .iter()
        .map(|s| (s.clone(), vec!["A3".to_owned()]))
        .chain(elsewhere.iter().map(|s| (s.clone(), vec!["A24".to_owned()])))
        .collect();
    assert_eq!(alerted, expected, "the alerts: one per true problem, of its code");
    drop(stmt_alerts);
    let replays: u64 =
        db.query_row("SELECT COUNT(*) FROM audit WHERE operation LIKE '%-replay'", [], |r| r.get(0)).unwrap();
    eprintln!(
        "killed after {replayed} of {recorded} replayed; {replays} requests answered from the national system's records"
    );
    drop(stmt);
    drop(db);
    agent.stop();
    national.stop();
}
