//! `openmvs demo` end to end through the real binary: it seeds and distributes through the hub,
//! writes demo.json as api.md §1 says, serves the national systems over HTTPS linked to the hub
//! (a multi-market pack supplied in one market shows as supplied in the other; a pack sold only in
//! the other market is verified through the hub), walks the README tour at the hub as the first OBP
//! (an unknown serial's A3 alert, an upload followed to every market, no certificate no entry),
//! moves its fake clock for the admin token only, stops on SIGTERM and keeps everything across a
//! restart, after which the hub holds DE's signed audit head and DE's trail verifies against it.
//! The end users and the OBP speak through `openmvs-client`, as a program built on OpenMVS would;
//! raw requests remain where the test looks at the wire itself (a refusal without a certificate,
//! the admin clock).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::demo::{Demo, https_client, port_base};
use common::{SendRetrying, TempDir};
use openmvs_client::wire::api::{AlertDetail, AlertStatusRequest, PackResponse};
use openmvs_client::{
    AlertQuery, EndUserClient, EndUserConfig, ObpClient, ObpConfig, PackInput, PackOperation, PollOptions,
};
use serde_json::{Value, json};

/// Where the demo keeps its data: files in its directory, or the schemas `<prefix>_<system>`
/// of a PostgreSQL database.
#[derive(Clone)]
enum Storage {
    Sqlite,
    Postgres { url: String, prefix: String },
}

/// Starts the demo of markets DE and FR with a fake clock on `storage`.
fn start(dir: &Path, port_base: u16, storage: &Storage) -> Demo {
    let mut args = vec!["--markets", "DE,FR", "--fake-clock"];
    if let Storage::Postgres { url, prefix } = storage {
        args.extend(["--storage", "postgres", "--database-url", url, "--schema-prefix", prefix]);
    }
    Demo::start(dir, port_base, &args)
}

/// How long a state change may take to reach the other market through the hub. The relays of
/// the demo's process deliver it without a word (no line, no file this test can watch): the
/// receiving side's answer is polled (`common::eventually`, and the client's own wait for an
/// upload).
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// The demo's users, as demo.json lists them, each with an `openmvs-client` of its own, and the
/// runtime their calls run on.
struct Users {
    rt: tokio::runtime::Runtime,
    doc: Value,
    ca: Vec<u8>,
}

impl Users {
    fn new(doc: &Value) -> Users {
        let ca = std::fs::read(doc["ca_cert"].as_str().expect("ca_cert")).expect("read the demo CA");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        Users { rt, doc: doc.clone(), ca }
    }

    /// Runs a call of a client to its end.
    fn run<F: Future>(&self, call: F) -> F::Output {
        self.rt.block_on(call)
    }

    /// A client of the first client of `role` in `market`.
    fn end_user(&self, market: &str, role: &str) -> EndUserClient {
        let m = &self.doc["markets"][market];
        let c = m["clients"]
            .as_array()
            .expect("clients")
            .iter()
            .find(|c| c["role"] == role)
            .unwrap_or_else(|| panic!("a {role} in {market}"));
        let config = EndUserConfig::new(
            m["url"].as_str().expect("url"),
            c["client_id"].as_str().expect("client_id"),
            c["client_secret"].as_str().expect("client_secret"),
        )
        .with_ca_pem(self.ca.clone());
        EndUserClient::new(config).expect("an end-user client")
    }

    /// A client of the first OBP of demo.json, with its certificate.
    fn obp(&self) -> ObpClient {
        let obp = &self.doc["obps"][0];
        let config = ObpConfig::from_files(
            self.doc["hub"]["url"].as_str().expect("hub url"),
            Path::new(obp["cert"].as_str().expect("cert")),
            Path::new(obp["key"].as_str().expect("key")),
            Path::new(self.doc["ca_cert"].as_str().expect("ca_cert")),
        )
        .expect("the OBP's files");
        ObpClient::new(config).expect("an OBP client")
    }

    /// A single-pack request by the first pharmacy of `market` on `serial` of `sample`.
    fn pack_call(
        &self,
        market: &str,
        op: PackOperation,
        sample: &Value,
        serial: &str,
        trx: &str,
    ) -> PackResponse {
        let text = |k: &str| sample[k].as_str().unwrap_or_else(|| panic!("{k} of {sample}")).to_owned();
        let pack =
            PackInput::fields(text("scheme"), text("product_code"), serial, text("batch"), text("expiry"))
                .with_client_trx_id(trx);
        self.run(self.end_user(market, "PHARMACY").pack(op, &pack)).expect("pack request")
    }

    fn verify_first_de_sample(&self, trx: &str) -> PackResponse {
        let sample = self.doc["samples"]
            .as_array()
            .expect("samples")
            .iter()
            .find(|s| s["market"] == "DE")
            .expect("a DE sample")
            .clone();
        let serial = sample["serials"][0].as_str().expect("a serial").to_owned();
        self.pack_call("DE", PackOperation::Verify, &sample, &serial, trx)
    }
}

/// The pack's state in an answer, or `(none)`.
fn state_of(answer: &PackResponse) -> &str {
    answer.pack.as_ref().map_or("(none)", |p| p.state.as_str())
}

/// The samples of `market` whose product is listed for `other` too (`true`) or not (`false`).
fn sample_of(doc: &Value, market: &str, other: &str, shared: bool) -> Value {
    let samples = doc["samples"].as_array().expect("samples");
    samples
        .iter()
        .find(|s| {
            s["market"] == market
                && samples.iter().any(|o| o["market"] == other && o["product_code"] == s["product_code"])
                    == shared
        })
        .cloned()
        .expect("such a sample")
}

/// Runs the commands of the guide the demo printed through `sh`, as a user pastes them, and
/// checks what each printed: a token kept in a variable, a verify, supply and undo accepted, an
/// upload whose id is kept in a variable and whose status is then shown, a verify answered
/// through the hub, and the moved clock.
fn run_guide(guide: &str, doc: &Value) {
    assert!(!guide.contains("FROM_ABOVE"), "a placeholder in the guide:\n{guide}");
    // Each command is one line after a comment; the lines before the first comment say where
    // things are.
    let commands: Vec<&str> = guide
        .lines()
        .skip_while(|l| !l.starts_with('#'))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        commands.len(),
        11,
        "token, three pack commands, upload, its status, SOAP verify, intermarket, clock, two status pages:\n{guide}"
    );
    // One output line per command.
    let script: String = commands.iter().map(|c| format!("{c}\necho\n")).collect();
    // curl as a real client: a refusal for load (503 or 429, which a busy machine can bring) is
    // sent again after its Retry-After; the guide's commands stay as printed.
    let curl_home = TempDir::new("demo-curl");
    std::fs::write(curl_home.path().join(".curlrc"), "retry = 10\nretry-max-time = 60\n")
        .expect("write .curlrc");
    let out = Command::new("sh")
        .args(["-euc", &script])
        .env("CURL_HOME", curl_home.path())
        .stdin(Stdio::null())
        .output()
        .expect("sh runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the guide failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Vec<&str> = stdout.lines().collect();
    assert_eq!(printed.len(), commands.len(), "{stdout}");
    let json = |i: usize| -> Value {
        serde_json::from_str(printed[i]).unwrap_or_else(|e| panic!("{}: {e}: {:?}", commands[i], printed[i]))
    };
    assert_eq!(printed[0], "", "the token is kept, not printed");
    for (i, state) in [(1, "ACTIVE"), (2, "SUPPLIED"), (3, "ACTIVE")] {
        let answer = json(i);
        assert_eq!(
            (&answer["return_code"], &answer["pack"]["state"]),
            (&json!("NMVS_SUCCESS"), &json!(state)),
            "{}: {answer}",
            commands[i]
        );
    }
    assert_eq!(printed[4], "", "the upload id is kept, not printed");
    let status = json(5);
    assert!(
        status["upload_id"].as_str().is_some_and(|id| id.starts_with("UPL-")),
        "{}: {status}",
        commands[5]
    );
    assert_eq!(status["product_code"], doc["samples"][0]["product_code"], "{status}");
    assert_eq!(status["received"], 2, "{status}");
    // The SOAP verify of the pack the commands above supplied and put back: one line of XML.
    let soap = printed[6];
    assert!(
        soap.starts_with("<?xml")
            && soap.contains("<ns2:G110Response")
            && soap.contains("ns1:state=\"ACTIVE\"")
            && soap.contains("ns1:code=\"NMVS_SUCCESS\""),
        "{}: {soap}",
        commands[6]
    );
    let elsewhere = json(7);
    assert_eq!(
        (&elsewhere["return_code"], &elsewhere["intermarket"]),
        (&json!("NMVS_SUCCESS"), &json!(true)),
        "{elsewhere}"
    );
    assert!(json(8)["now"].is_string(), "{}: {}", commands[8], printed[8]);
    let hub = json(9);
    let markets: Vec<&Value> = hub["markets"].as_array().map(|m| m.iter().collect()).unwrap_or_default();
    assert!(markets.len() >= 2 && hub["hub"]["ready"] == true, "{}: {hub}", commands[9]);
    assert!(markets.iter().all(|m| m["distribution"]["backlog"].is_u64()), "{hub}");
    let national = json(10);
    assert_eq!(national["market"], doc["samples"][0]["market"], "{}: {national}", commands[10]);
}

#[test]
fn the_demo_serves_its_samples_moves_its_clock_and_keeps_its_data_across_a_restart() {
    tour(&Storage::Sqlite);
}

#[test]
fn the_demo_runs_the_same_on_postgresql() {
    let Some((url, prefix)) = openmvs_store_pg::testing::fresh_schema("demo", "the demo on PostgreSQL")
    else {
        return;
    };
    // The fresh schema only reserves the prefix; the demo makes one schema per system under it.
    tour(&Storage::Postgres { url, prefix });
}

/// Polls `read` until `done` holds for what it answers; the last answer.
fn until<T>(read: impl Fn() -> T, done: impl Fn(&T) -> bool) -> T {
    let mut last = None;
    let _ = common::eventually(SYNC_TIMEOUT, || {
        let now = read();
        let finished = done(&now);
        last = Some(now);
        finished.then_some(())
    });
    last.expect("asked at least once")
}

/// The OBP at the hub and the NMVOs of DE and FR work the same alerts, each seeing what the
/// others did: a DE alert (DE and the hub), and an inter-market alert raised by FR for a DE
/// pharmacy (DE, FR and the hub).
fn alerts_in_step(users: &Users, obp: &ObpClient, id: &str, fr_only: &Value) {
    let (de_nmvo, fr_nmvo) = (users.end_user("DE", "NMVO"), users.end_user("FR", "NMVO"));
    let at_market =
        |nmvo: &EndUserClient, id: &str| -> AlertDetail { users.run(nmvo.alert(id)).expect("alert") };
    let at_hub = |id: &str| -> AlertDetail { users.run(obp.alert(id)).expect("alert at the hub") };
    let investigating = |comment: Option<&str>| AlertStatusRequest {
        status: "INVESTIGATING".into(),
        classification: None,
        comment: comment.map(str::to_owned),
    };

    // The OBP starts investigating at the hub: DE's NMVO sees it, with the OBP's comment.
    let changed =
        users.run(obp.change_alert_status(id, &investigating(Some("upload of this batch checked"))));
    assert_eq!(changed.expect("status change at the hub").alert.status, "INVESTIGATING");
    // The change and its comment travel as two messages, one after the other.
    let de =
        until(|| at_market(&de_nmvo, id), |a| a.alert.status == "INVESTIGATING" && !a.comments.is_empty());
    assert_eq!(de.alert.status, "INVESTIGATING", "{de:?}");
    assert_eq!(
        (de.history[0].role.as_str(), de.comments[0].text.as_str()),
        ("OBP", "upload of this batch checked")
    );
    // DE's NMVO answers in the thread: the OBP reads it.
    let comment = users.run(de_nmvo.comment_alert(id, "the pharmacy rescanned: a typing error"));
    assert_eq!(comment.expect("comment").role, "NMVO");
    let h = until(|| at_hub(id), |a| a.comments.len() == 2);
    assert_eq!(h.comments[1].role, "NMVO", "{h:?}");

    // An unknown serial of an FR-only product verified in DE: FR decides and alerts.
    let answer =
        users.pack_call("DE", PackOperation::Verify, fr_only, "E2EUNKNOWNFR01", "e2e-demo-intermarket-alert");
    let alert = answer.alert.as_ref().unwrap_or_else(|| panic!("an alert: {answer:?}"));
    assert_eq!((answer.intermarket, alert.code.as_str()), (true, "A3"), "{answer:?}");
    let imid = alert.id.clone();
    let mine = at_market(&users.end_user("DE", "PHARMACY"), &imid).alert;
    assert_eq!(
        (mine.id.as_str(), mine.market.as_str(), mine.pack_market.as_deref()),
        (imid.as_str(), "DE", Some("FR")),
        "{mine:?}"
    );
    let fr = until(|| users.run(fr_nmvo.alert(&imid)), |a| a.is_ok()).expect("the alert in FR");
    assert_eq!(fr.alert.pack_market.as_deref(), Some("FR"), "{fr:?}");
    let close = AlertStatusRequest {
        status: "CLOSED".into(),
        classification: Some("TECHNICAL_ERROR".into()),
        comment: None,
    };
    users.run(fr_nmvo.change_alert_status(&imid, &close)).expect("closed in FR");
    for (side, a) in [
        ("DE", until(|| at_market(&de_nmvo, &imid), |a| a.alert.status == "CLOSED")),
        ("hub", until(|| at_hub(&imid), |a| a.alert.status == "CLOSED")),
    ] {
        assert_eq!(
            (a.alert.status.as_str(), a.alert.classification.as_deref()),
            ("CLOSED", Some("TECHNICAL_ERROR")),
            "{side}: {a:?}"
        );
    }
}

/// The README's tour of the demo, then a restart that keeps everything.
fn tour(storage: &Storage) {
    let dir = TempDir::new("demo");
    let port = port_base(2);
    let demo = start(dir.path(), port, storage);
    let text = std::fs::read_to_string(dir.path().join("demo.json")).expect("demo.json");
    let doc: Value = serde_json::from_str(&text).expect("demo.json is JSON");

    assert!(Path::new(doc["ca_cert"].as_str().unwrap()).is_absolute());
    assert_eq!(doc["hub"]["url"], format!("https://127.0.0.1:{port}"));
    assert!(doc["obps"].as_array().unwrap().len() >= 2);
    for obp in doc["obps"].as_array().unwrap() {
        assert!(
            Path::new(obp["cert"].as_str().unwrap()).is_file()
                && Path::new(obp["key"].as_str().unwrap()).is_file()
        );
    }
    for (m, offset) in [("DE", 1), ("FR", 2)] {
        assert_eq!(doc["markets"][m]["url"], format!("https://127.0.0.1:{}", port + offset));
        let roles: Vec<&str> = doc["markets"][m]["clients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles.iter().filter(|r| **r == "PHARMACY").count(), 2);
        for role in ["HOSPITAL", "WHOLESALER", "NMVO", "NCA"] {
            assert!(roles.contains(&role), "{m} lacks a {role}");
        }
        // End users have an NMVS SOAP login shaped as NMVS software takes it.
        for c in doc["markets"][m]["clients"].as_array().unwrap() {
            let login = c["soap"]["client_login_id"].as_str();
            match c["role"].as_str().unwrap() {
                "NMVO" | "NCA" => assert!(login.is_none(), "{c}"),
                _ => assert!(login.is_some_and(|l| l.len() <= 20 && l == c["location"]), "{c}"),
            }
        }
    }

    let users = Users::new(&doc);
    let answer = users.verify_first_de_sample("e2e-demo-1");
    assert_eq!(answer.return_code, "NMVS_SUCCESS", "{answer:?}");

    // The multi-market sample supplied in DE shows as supplied in FR.
    let shared = sample_of(&doc, "DE", "FR", true);
    let serial = shared["serials"][1].as_str().expect("a second serial").to_owned();
    let supplied = users.pack_call("DE", PackOperation::Supply, &shared, &serial, "e2e-demo-supply");
    assert_eq!(supplied.return_code, "NMVS_SUCCESS", "{supplied:?}");
    let i = std::cell::Cell::new(0);
    let seen = until(
        || {
            i.set(i.get() + 1);
            users.pack_call(
                "FR",
                PackOperation::Verify,
                &shared,
                &serial,
                &format!("e2e-demo-fr-{}", i.get()),
            )
        },
        |seen| state_of(seen) == "SUPPLIED",
    );
    assert_eq!(state_of(&seen), "SUPPLIED", "FR never saw the supply in DE: {seen:?}");
    assert_eq!(seen.return_code, "NMVS_INFO_PCK_INACTIVE", "{seen:?}");

    // A pack sold only in FR, verified in DE, is answered by FR through the hub.
    let fr_only = sample_of(&doc, "FR", "DE", false);
    let serial = fr_only["serials"][0].as_str().expect("a serial").to_owned();
    let answer = users.pack_call("DE", PackOperation::Verify, &fr_only, &serial, "e2e-demo-intermarket");
    assert!(answer.intermarket, "{answer:?}");
    assert_eq!(answer.return_code, "NMVS_SUCCESS", "{answer:?}");

    let hub = doc["hub"]["url"].as_str().unwrap();
    let obp = users.obp();

    // An unknown serial of a known product raises an A3 alert that the owning OBP reads at the hub.
    let unknown = "E2EUNKNOWN0001";
    let answer = users.pack_call("DE", PackOperation::Verify, &shared, unknown, "e2e-demo-unknown");
    assert_eq!(answer.return_code, "NMVS_NC_PC_02", "{answer:?}");
    let alert = answer.alert.clone().unwrap_or_else(|| panic!("an alert: {answer:?}"));
    assert_eq!(alert.code, "A3", "{answer:?}");
    let alerts = until(
        || {
            let listed = users.run(obp.all_alerts(&AlertQuery::all())).expect("alerts at the hub");
            listed.into_iter().filter(|a| a.serial == unknown).collect::<Vec<_>>()
        },
        |alerts| !alerts.is_empty(),
    );
    assert_eq!(alerts.len(), 1, "the hub never showed exactly one alert for {unknown}: {alerts:?}");
    assert_eq!((alerts[0].code.as_str(), alerts[0].market.as_str()), ("A3", "DE"), "{:?}", alerts[0]);
    assert_eq!(alerts[0].id, alert.id, "one alert, one id");
    alerts_in_step(&users, &obp, &alert.id, &fr_only);

    // The OBP uploads two new serials, streamed as text, and follows them to every market.
    let (pc, batch) = (shared["product_code"].as_str().unwrap(), shared["batch"].as_str().unwrap());
    let new_serials = ["E2ENEW0001", "E2ENEW0002"];
    let lines = format!("{}\n{}\n", new_serials[0], new_serials[1]).into_bytes();
    let uploaded = users.run(obp.upload_reader(pc, batch, std::io::Cursor::new(lines))).expect("upload");
    assert_eq!(uploaded.received, 2, "{uploaded:?}");
    let upload_id = uploaded.upload_id;
    // The demo's relays deliver without a word: the client asks every 20 ms.
    let poll = PollOptions { interval: Duration::from_millis(20), deadline: SYNC_TIMEOUT };
    let progress = users.run(obp.wait_for_upload(&upload_id, "DISTRIBUTED", poll)).expect("distributed");
    for m in ["DE", "FR"] {
        assert_eq!(progress.markets.get(m).map(String::as_str), Some("DISTRIBUTED"), "{m}: {progress:?}");
    }
    let answer = users.pack_call("FR", PackOperation::Verify, &shared, new_serials[1], "e2e-demo-new-serial");
    assert_eq!((answer.return_code.as_str(), state_of(&answer)), ("NMVS_SUCCESS", "ACTIVE"), "{answer:?}");

    // Without a client certificate the hub refuses.
    let http = https_client(doc["ca_cert"].as_str().unwrap());
    let refused =
        http.get(format!("{hub}/v1/uploads/{upload_id}")).send_retrying().expect("upload status request");
    assert_eq!(refused.status().as_u16(), 403);
    let refused: Value = refused.json().expect("refusal JSON");
    assert!(
        refused["details"].as_array().is_some_and(|d| d.iter().any(|d| d["field"] == "client_certificate")),
        "{refused}"
    );

    // Every command of the printed guide works as printed (it moves the clock by eleven days).
    run_guide(&demo.guide, &doc);

    let clock = |token: Option<&str>| {
        let mut r = http.post(format!("{hub}/admin/v1/clock")).json(&json!({"advance_seconds": 3600}));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send_retrying().expect("clock request")
    };
    assert_eq!(clock(None).status().as_u16(), 401);
    let moved = clock(doc["admin_token"].as_str());
    assert_eq!(moved.status().as_u16(), 200);

    demo.stop();
    let demo = start(dir.path(), port, storage);
    let again = std::fs::read_to_string(dir.path().join("demo.json")).expect("demo.json");
    assert_eq!(again, text, "a restart rewrote demo.json");
    let answer = users.verify_first_de_sample("e2e-demo-2");
    assert_eq!(answer.return_code, "NMVS_SUCCESS", "{answer:?}");
    if matches!(storage, Storage::Sqlite) {
        // DE sent the head of its trail signed at the first stop to the hub, which kept it.
        let hub_dir = dir.path().join("hub");
        let args = ["audit", "heads", "--data-dir", hub_dir.to_str().expect("UTF-8 path"), "--market", "DE"];
        // Looked at each time the hub commits (a write to its database's log).
        let heads = common::when_written(&hub_dir, "hub.db-wal", common::WAIT_LIMIT, || {
            let out = common::openmvs(&args);
            assert!(out.status.success(), "audit heads: {}", String::from_utf8_lossy(&out.stderr));
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (!text.trim().is_empty()).then_some(text)
        })
        .expect("a head of DE at the hub within 30 s");
        demo.stop();
        let file = dir.path().join("hub-heads.jsonl");
        std::fs::write(&file, &heads).expect("write the heads");
        let de = dir.path().join("DE");
        let out = common::openmvs(&[
            "audit",
            "verify",
            "--data-dir",
            de.to_str().expect("UTF-8 path"),
            "--heads",
            file.to_str().expect("UTF-8 path"),
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            stdout.contains(&format!("of {}", file.display())),
            "checked against the hub's head: {stdout}"
        );
        return;
    }
    demo.stop();
}
