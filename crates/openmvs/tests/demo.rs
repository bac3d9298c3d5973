//! `openmvs demo` end to end through the real binary: it seeds and distributes through the hub,
//! writes demo.json as api.md §1 says, serves the national systems over HTTPS linked to the hub
//! (a multi-market pack supplied in one market shows as supplied in the other; a pack sold only in
//! the other market is verified through the hub), walks the README tour at the hub as the first OBP
//! (an unknown serial's A3 alert, an upload followed to every market, no certificate no entry),
//! moves its fake clock for the admin token only, stops on SIGTERM and keeps everything across a
//! restart, after which the hub holds DE's signed audit head and DE's trail verifies against it.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{SendRetrying, TempDir, free_port};
use serde_json::{Value, json};
use wait_timeout::ChildExt;

/// Seeding distributes 1,000 packs over HTTPS before the ready line; a debug build is slow.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

struct Demo {
    child: Child,
    /// What it printed up to its ready line: the guide.
    guide: String,
}

/// Where the demo keeps its data: files in its directory, or the schemas `<prefix>_<system>`
/// of a PostgreSQL database.
#[derive(Clone)]
enum Storage {
    Sqlite,
    Postgres { url: String, prefix: String },
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Demo {
    fn start(dir: &Path, port_base: u16, storage: &Storage) -> Demo {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_openmvs"));
        cmd.args([
            "demo",
            "--data-dir",
            dir.to_str().expect("UTF-8 path"),
            "--port-base",
            &port_base.to_string(),
        ])
        .args(["--markets", "DE,FR", "--fake-clock"]);
        if let Storage::Postgres { url, prefix } = storage {
            cmd.args(["--storage", "postgres", "--database-url", url, "--schema-prefix", prefix]);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("OPENMVS") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd.spawn().expect("start openmvs demo");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut guide = String::new();
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.starts_with("openmvs demo: ready") => return Demo { child, guide },
                Ok(line) => {
                    guide.push_str(&line);
                    guide.push('\n');
                }
                Err(e) => panic!("no ready line from openmvs demo: {e:?} (exit: {:?})", child.try_wait()),
            }
        }
    }

    fn stop(mut self) {
        let status =
            Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill -TERM");
        assert!(status.success());
        match self.child.wait_timeout(Duration::from_secs(30)).expect("wait for the demo") {
            Some(s) => assert!(s.success(), "the demo exited with {s}"),
            None => panic!("the demo did not exit within 30 s of SIGTERM"),
        }
    }
}

/// A port base whose next port is free too (DE is on P+1, FR on P+2).
fn port_base() -> u16 {
    loop {
        let p = free_port();
        if p < 65000
            && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", p + 2)).is_ok()
        {
            return p;
        }
    }
}

fn client(ca: &str) -> reqwest::blocking::Client {
    let pem = std::fs::read(ca).expect("read the demo CA");
    reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA certificate"))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

/// A client that presents the first OBP's certificate of demo.json.
fn obp_client(doc: &Value) -> reqwest::blocking::Client {
    let ca = std::fs::read(doc["ca_cert"].as_str().expect("ca_cert")).expect("read the demo CA");
    let obp = &doc["obps"][0];
    let mut identity = std::fs::read(obp["cert"].as_str().expect("cert")).expect("read the OBP certificate");
    identity.extend(std::fs::read(obp["key"].as_str().expect("key")).expect("read the OBP key"));
    reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA certificate"))
        .identity(reqwest::Identity::from_pem(&identity).expect("OBP identity"))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("OBP HTTP client")
}

/// How long a state change may take to reach the other market through the hub. The relays of
/// the demo's process deliver it without a word (no line, no file this test can watch): the
/// receiving side's answer is polled (`common::eventually`).
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// A pharmacy's token in `market`.
fn pharmacy_token(http: &reqwest::blocking::Client, doc: &Value, market: &str) -> String {
    token_of(http, doc, market, "PHARMACY")
}

/// The token of the first client of `role` in `market`.
fn token_of(http: &reqwest::blocking::Client, doc: &Value, market: &str, role: &str) -> String {
    let m = &doc["markets"][market];
    let url = m["url"].as_str().expect("url");
    let pharmacy = m["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .find(|c| c["role"] == role)
        .unwrap_or_else(|| panic!("a {role} in {market}"));
    let token: Value = http
        .post(format!("{url}/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", pharmacy["client_id"].as_str().expect("client_id")),
            ("client_secret", pharmacy["client_secret"].as_str().expect("client_secret")),
        ])
        .send_retrying()
        .expect("token request")
        .json()
        .expect("token JSON");
    token["access_token"].as_str().expect("access_token").to_owned()
}

/// A single-pack request by a pharmacy of `market` on `serial` of `sample`.
fn pack_call(doc: &Value, market: &str, op: &str, sample: &Value, serial: &str, trx: &str) -> Value {
    let http = client(doc["ca_cert"].as_str().expect("ca_cert"));
    let token = pharmacy_token(&http, doc, market);
    let url = doc["markets"][market]["url"].as_str().expect("url");
    let body = json!({
        "client_trx_id": trx, "scheme": sample["scheme"], "product_code": sample["product_code"],
        "batch": sample["batch"], "expiry": sample["expiry"], "serial": serial,
    });
    http.post(format!("{url}/v1/packs/{op}"))
        .bearer_auth(token)
        .json(&body)
        .send_retrying()
        .expect("pack request")
        .json()
        .expect("pack JSON")
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

fn verify_first_de_sample(doc: &Value, trx: &str) -> Value {
    let http = client(doc["ca_cert"].as_str().expect("ca_cert"));
    let de = &doc["markets"]["DE"];
    let url = de["url"].as_str().expect("DE url");
    let pharmacy = de["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .find(|c| c["role"] == "PHARMACY")
        .expect("a pharmacy");
    let token: Value = http
        .post(format!("{url}/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", pharmacy["client_id"].as_str().expect("client_id")),
            ("client_secret", pharmacy["client_secret"].as_str().expect("client_secret")),
        ])
        .send_retrying()
        .expect("token request")
        .json()
        .expect("token JSON");
    let sample = doc["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .find(|s| s["market"] == "DE")
        .expect("a DE sample");
    let body = json!({
        "client_trx_id": trx, "scheme": sample["scheme"], "product_code": sample["product_code"],
        "batch": sample["batch"], "expiry": sample["expiry"], "serial": sample["serials"][0],
    });
    http.post(format!("{url}/v1/packs/verify"))
        .bearer_auth(token["access_token"].as_str().expect("access_token"))
        .json(&body)
        .send_retrying()
        .expect("verify request")
        .json()
        .expect("verify JSON")
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
        8,
        "token, three pack commands, upload, its status, intermarket, clock:\n{guide}"
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
    let elsewhere = json(6);
    assert_eq!(
        (&elsewhere["return_code"], &elsewhere["intermarket"]),
        (&json!("NMVS_SUCCESS"), &json!(true)),
        "{elsewhere}"
    );
    assert!(json(7)["now"].is_string(), "{}: {}", commands[7], printed[7]);
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
fn until(read: impl Fn() -> Value, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let _ = common::eventually(SYNC_TIMEOUT, || {
        last = read();
        done(&last).then_some(())
    });
    last
}

/// The OBP at the hub and the NMVOs of DE and FR work the same alerts, each seeing what the
/// others did: a DE alert (DE and the hub), and an inter-market alert raised by FR for a DE
/// pharmacy (DE, FR and the hub).
fn alerts_in_step(doc: &Value, obp: &reqwest::blocking::Client, id: &str, fr_only: &Value) {
    let hub = doc["hub"]["url"].as_str().unwrap();
    let http = client(doc["ca_cert"].as_str().unwrap());
    let url = |m: &str| doc["markets"][m]["url"].as_str().unwrap().to_owned();
    let nmvo = |m: &str| token_of(&http, doc, m, "NMVO");
    let (de_nmvo, fr_nmvo) = (nmvo("DE"), nmvo("FR"));
    let at_market = |m: &str, token: &str, id: &str| -> Value {
        http.get(format!("{}/v1/alerts/{id}", url(m)))
            .bearer_auth(token)
            .send_retrying()
            .expect("alert")
            .json()
            .expect("JSON")
    };
    let at_hub = |id: &str| -> Value {
        obp.get(format!("{hub}/v1/alerts/{id}")).send_retrying().expect("alert").json().expect("JSON")
    };

    // The OBP starts investigating at the hub: DE's NMVO sees it, with the OBP's comment.
    let r = obp
        .post(format!("{hub}/v1/alerts/{id}/status"))
        .json(&json!({"status": "INVESTIGATING", "comment": "upload of this batch checked"}))
        .send_retrying()
        .expect("status request");
    assert_eq!(r.status().as_u16(), 200);
    // The change and its comment travel as two messages, one after the other.
    let de = until(
        || at_market("DE", &de_nmvo, id),
        |a| a["status"] == "INVESTIGATING" && a["comments"].as_array().is_some_and(|c| !c.is_empty()),
    );
    assert_eq!(de["status"], "INVESTIGATING", "{de}");
    assert_eq!(
        (&de["history"][0]["role"], &de["comments"][0]["text"]),
        (&json!("OBP"), &json!("upload of this batch checked"))
    );
    // DE's NMVO answers in the thread: the OBP reads it.
    let r = http
        .post(format!("{}/v1/alerts/{id}/comments", url("DE")))
        .bearer_auth(&de_nmvo)
        .json(&json!({"text": "the pharmacy rescanned: a typing error"}))
        .send_retrying()
        .expect("comment request");
    assert_eq!(r.status().as_u16(), 201);
    let h = until(|| at_hub(id), |a| a["comments"].as_array().is_some_and(|c| c.len() == 2));
    assert_eq!(h["comments"][1]["role"], "NMVO", "{h}");

    // An unknown serial of an FR-only product verified in DE: FR decides and alerts.
    let answer = pack_call(doc, "DE", "verify", fr_only, "E2EUNKNOWNFR01", "e2e-demo-intermarket-alert");
    assert_eq!((&answer["intermarket"], &answer["alert"]["code"]), (&json!(true), &json!("A3")), "{answer}");
    let imid = answer["alert"]["id"].as_str().unwrap().to_owned();
    let pharmacy = pharmacy_token(&http, doc, "DE");
    let mine = at_market("DE", &pharmacy, &imid);
    assert_eq!(
        (&mine["id"], &mine["market"], &mine["pack_market"]),
        (&json!(imid), &json!("DE"), &json!("FR")),
        "{mine}"
    );
    let fr = until(|| at_market("FR", &fr_nmvo, &imid), |a| a["id"] == imid.as_str());
    assert_eq!(fr["pack_market"], "FR", "{fr}");
    let r = http
        .post(format!("{}/v1/alerts/{imid}/status", url("FR")))
        .bearer_auth(&fr_nmvo)
        .json(&json!({"status": "CLOSED", "classification": "TECHNICAL_ERROR"}))
        .send_retrying()
        .expect("status request");
    assert_eq!(r.status().as_u16(), 200);
    for (side, a) in [
        ("DE", until(|| at_market("DE", &de_nmvo, &imid), |a| a["status"] == "CLOSED")),
        ("hub", until(|| at_hub(&imid), |a| a["status"] == "CLOSED")),
    ] {
        assert_eq!(
            (&a["status"], &a["classification"]),
            (&json!("CLOSED"), &json!("TECHNICAL_ERROR")),
            "{side}: {a}"
        );
    }
}

/// The README's tour of the demo, then a restart that keeps everything.
fn tour(storage: &Storage) {
    let dir = TempDir::new("demo");
    let port = port_base();
    let demo = Demo::start(dir.path(), port, storage);
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
    }

    let answer = verify_first_de_sample(&doc, "e2e-demo-1");
    assert_eq!(answer["return_code"], "NMVS_SUCCESS", "{answer}");

    // The multi-market sample supplied in DE shows as supplied in FR.
    let shared = sample_of(&doc, "DE", "FR", true);
    let serial = shared["serials"][1].as_str().expect("a second serial").to_owned();
    let supplied = pack_call(&doc, "DE", "supply", &shared, &serial, "e2e-demo-supply");
    assert_eq!(supplied["return_code"], "NMVS_SUCCESS", "{supplied}");
    let mut seen = Value::Null;
    let mut i = 0;
    let _ = common::eventually(SYNC_TIMEOUT, || {
        i += 1;
        seen = pack_call(&doc, "FR", "verify", &shared, &serial, &format!("e2e-demo-fr-{i}"));
        (seen["pack"]["state"] == "SUPPLIED").then_some(())
    });
    assert_eq!(seen["pack"]["state"], "SUPPLIED", "FR never saw the supply in DE: {seen}");
    assert_eq!(seen["return_code"], "NMVS_INFO_PCK_INACTIVE", "{seen}");

    // A pack sold only in FR, verified in DE, is answered by FR through the hub.
    let fr_only = sample_of(&doc, "FR", "DE", false);
    let serial = fr_only["serials"][0].as_str().expect("a serial").to_owned();
    let answer = pack_call(&doc, "DE", "verify", &fr_only, &serial, "e2e-demo-intermarket");
    assert_eq!(answer["intermarket"], true, "{answer}");
    assert_eq!(answer["return_code"], "NMVS_SUCCESS", "{answer}");

    let hub = doc["hub"]["url"].as_str().unwrap();
    let obp = obp_client(&doc);

    // An unknown serial of a known product raises an A3 alert that the owning OBP reads at the hub.
    let unknown = "E2EUNKNOWN0001";
    let answer = pack_call(&doc, "DE", "verify", &shared, unknown, "e2e-demo-unknown");
    assert_eq!(answer["return_code"], "NMVS_NC_PC_02", "{answer}");
    assert_eq!(answer["alert"]["code"], "A3", "{answer}");
    let mut alerts = Vec::new();
    let _ = common::eventually(SYNC_TIMEOUT, || {
        let listed: Value = obp
            .get(format!("{hub}/v1/alerts"))
            .send_retrying()
            .expect("alerts request")
            .json()
            .expect("alerts JSON");
        alerts = listed["alerts"]
            .as_array()
            .unwrap_or_else(|| panic!("no alerts array: {listed}"))
            .iter()
            .filter(|a| a["serial"] == unknown)
            .cloned()
            .collect::<Vec<_>>();
        (!alerts.is_empty()).then_some(())
    });
    assert_eq!(alerts.len(), 1, "the hub never showed exactly one alert for {unknown}: {alerts:?}");
    assert_eq!(alerts[0]["code"], "A3", "{:?}", alerts[0]);
    assert_eq!(alerts[0]["market"], "DE", "{:?}", alerts[0]);
    let id = answer["alert"]["id"].as_str().expect("an alert id").to_owned();
    assert_eq!(alerts[0]["id"], id.as_str(), "one alert, one id");
    alerts_in_step(&doc, &obp, &id, &fr_only);

    // The OBP uploads two new serials and follows them to every market.
    let (pc, batch) = (shared["product_code"].as_str().unwrap(), shared["batch"].as_str().unwrap());
    let new_serials = ["E2ENEW0001", "E2ENEW0002"];
    let uploaded = obp
        .post(format!("{hub}/v1/products/{pc}/batches/{batch}/packs"))
        .header("content-type", "text/plain")
        .body(format!("{}\n{}\n", new_serials[0], new_serials[1]))
        .send_retrying()
        .expect("upload request");
    let status = uploaded.status();
    let uploaded: Value = uploaded.json().expect("upload JSON");
    assert!(status.is_success(), "upload refused ({status}): {uploaded}");
    assert_eq!(uploaded["received"], 2, "{uploaded}");
    let upload_id = uploaded["upload_id"].as_str().expect("upload_id").to_owned();
    let mut progress = Value::Null;
    let _ = common::eventually(SYNC_TIMEOUT, || {
        progress = obp
            .get(format!("{hub}/v1/uploads/{upload_id}"))
            .send_retrying()
            .expect("upload status request")
            .json::<Value>()
            .expect("upload status JSON");
        let every_market = progress["markets"]
            .as_object()
            .is_some_and(|m| !m.is_empty() && m.values().all(|s| s == "DISTRIBUTED"));
        (progress["status"] == "DISTRIBUTED" && every_market).then_some(())
    });
    assert_eq!(progress["status"], "DISTRIBUTED", "{progress}");
    for m in ["DE", "FR"] {
        assert_eq!(progress["markets"][m], "DISTRIBUTED", "{m}: {progress}");
    }
    let answer = pack_call(&doc, "FR", "verify", &shared, new_serials[1], "e2e-demo-new-serial");
    assert_eq!(answer["return_code"], "NMVS_SUCCESS", "{answer}");
    assert_eq!(answer["pack"]["state"], "ACTIVE", "{answer}");

    // Without a client certificate the hub refuses.
    let http = client(doc["ca_cert"].as_str().unwrap());
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
    let demo = Demo::start(dir.path(), port, storage);
    let again = std::fs::read_to_string(dir.path().join("demo.json")).expect("demo.json");
    assert_eq!(again, text, "a restart rewrote demo.json");
    let answer = verify_first_de_sample(&doc, "e2e-demo-2");
    assert_eq!(answer["return_code"], "NMVS_SUCCESS", "{answer}");
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
