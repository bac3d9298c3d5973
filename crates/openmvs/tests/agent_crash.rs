//! The offline agent as a real process (`openmvs agent`) in front of a real national system
//! (`openmvs serve national`): supplies recorded while the system is stopped, the agent killed
//! with SIGKILL in the middle of the replay and started again. Nothing recorded is lost and
//! nothing is applied twice: every pack is supplied once, with no alert, and the agent's list
//! stays empty.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{
    Node, Reply, Server, TempDir, WAIT_LIMIT, eventually, free_port, http, pack_body, send, serial,
};
use serde_json::Value;

/// Supplies recorded in the outage.
const SUPPLIES: u64 = 1_500;

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
    node.seed(SUPPLIES + 10);
    let pharmacy = node.client("PHARMACY", "DE-PH-1");
    let national_port = free_port();
    let national_url = format!("http://127.0.0.1:{national_port}");
    let dir = TempDir::new("agent-crash-agent");
    let config = write_agent_config(dir.path(), &national_url, &pharmacy, free_port());

    // The outage: the national system is not running while the pharmacy works.
    let agent = start_agent(&config, &dir.path().join("agent-0.log"));
    let http = http();
    let token = common::token(&http, &agent.base, &pharmacy);
    for i in 0..SUPPLIES {
        let reply = send(
            http.post(format!("{}/v1/packs/supply", agent.base))
                .bearer_auth(&token)
                .json(&pack_body(&format!("agent-supply-{i}"), &serial(i))),
        );
        match reply {
            Reply::Answer { status: 202, body } => assert_eq!(body["return_code"], "NMVS_TI_OFF_01"),
            other => panic!("supply {i}: {other:?}"),
        }
    }
    assert_eq!(status(&http, &agent.base)["queue_length"], SUPPLIES);

    // The system is back; the agent replays as fast as the system answers and is killed part way.
    let national = node.start_at(national_port);
    let replayed = eventually(WAIT_LIMIT, || {
        let n = status(&http, &agent.base)["replayed"].as_u64().unwrap_or(0);
        (n >= 200).then_some(n)
    });
    agent.kill();
    let replayed = replayed.expect("the replay started within 30 s");
    assert!(
        replayed < SUPPLIES,
        "killed after the whole replay ({replayed}): raise SUPPLIES or lower the rate"
    );

    // Started again on the same queue: it finishes the replay.
    let agent = start_agent(&config, &dir.path().join("agent-1.log"));
    let done = eventually(std::time::Duration::from_secs(120), || {
        let s = status(&http, &agent.base);
        (s["queue_length"] == 0).then_some(s)
    })
    .expect("the replay ended within 120 s");
    assert_eq!(done["replayed"], SUPPLIES, "{done}");
    assert_eq!(done["problems_open"], 0, "nothing on the pharmacist's list: {done}");

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
    let missing: Vec<String> = (0..SUPPLIES).map(serial).filter(|s| !supplied.contains_key(s)).collect();
    assert!(missing.is_empty(), "recorded supplies lost: {missing:?}");
    let states: u64 =
        db.query_row("SELECT COUNT(*) FROM packs WHERE state = 'SUPPLIED'", [], |r| r.get(0)).unwrap();
    assert_eq!(states, SUPPLIES);
    let alerts: u64 = db.query_row("SELECT COUNT(*) FROM alerts", [], |r| r.get(0)).unwrap();
    assert_eq!(alerts, 0, "a replay raised an alert");
    let replays: u64 =
        db.query_row("SELECT COUNT(*) FROM audit WHERE operation LIKE '%-replay'", [], |r| r.get(0)).unwrap();
    eprintln!(
        "killed after {replayed} of {SUPPLIES} replayed; {replays} requests answered from the national system's records"
    );
    drop(stmt);
    drop(db);
    agent.stop();
    national.stop();
}
