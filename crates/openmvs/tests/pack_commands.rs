//! The pack commands (`openmvs verify`, `supply`, `undo`, ...) as a person runs them: the real
//! binary against one `openmvs demo`, connecting with the profiles the demo wrote, with the
//! environment, and with flags. Every outcome class, with its exit status, its readable lines and
//! its `--json`: accepted (a verify, a supply from a raw scan, an undo from standard input),
//! refused by the rules (a repeated supply at the same location, a batch that has expired), an
//! alert (an unknown serial), and the errors (a scan that cannot be read, refused before any
//! request; a wrong secret; a national system that cannot be reached; an HTTP error). Then every
//! other operation (destroy, export, sample, free sample, lock, stolen) and its undo.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::demo::{Demo, https_client, port_base};
use common::{SendRetrying, TempDir, free_port};
use serde_json::{Value, json};

/// Exit statuses, as `--help` documents them.
const ACCEPTED: i32 = 0;
const ERROR: i32 = 1;
const USAGE: i32 = 2;
const REFUSED: i32 = 3;
const ALERT: i32 = 4;

/// What one run printed.
struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            status: out.status.code().expect("an exit status"),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Insists on `status`; the run, for more checks.
    fn expect(self, status: i32, what: &str) -> Run {
        assert_eq!(self.status, status, "{what}:\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }

    /// Standard output as JSON.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }

    /// The line of standard output numbered `i`.
    fn line(&self, i: usize) -> &str {
        self.stdout.lines().nth(i).unwrap_or_else(|| panic!("no line {i} in: {}", self.stdout))
    }
}

/// The demo's sample pack of market DE: product code, batch, expiry (as encoded and as a date)
/// and listed serials.
struct Sample {
    product_code: String,
    batch: String,
    expiry: String,
    serials: Vec<String>,
}

impl Sample {
    /// The fields of `serial` as flags.
    fn fields(&self, serial: &str) -> Vec<String> {
        [
            "--product-code",
            &self.product_code,
            "--serial",
            serial,
            "--batch",
            &self.batch,
            "--expiry",
            &self.expiry,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// `serial` as a scanner delivers it: a GS1 element string with the GS character.
    fn scan(&self, serial: &str) -> String {
        format!("]d201{}17{}10{}\u{1d}21{serial}", self.product_code, self.expiry, self.batch)
    }
}

/// The demo and how to run the command against it.
struct World {
    /// Keeps the data directory while the demo runs.
    _dir: TempDir,
    /// A home directory with no profile file, so that the developer's cannot count.
    home: TempDir,
    profiles: PathBuf,
    doc: Value,
    sample: Sample,
}

impl World {
    /// Runs `openmvs ARGS` with only `env` of the `OPENMVS...` variables (and the demo's profile
    /// file in `OPENMVS_PROFILES` unless `env` names another), `stdin` on its standard input.
    fn run(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_openmvs"));
        cmd.args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("OPENMVS") {
                cmd.env_remove(k);
            }
        }
        cmd.env("HOME", self.home.path()).env("XDG_CONFIG_HOME", self.home.path());
        cmd.env("OPENMVS_PROFILES", &self.profiles);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = cmd.spawn().expect("openmvs runs");
        if let Some(bytes) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(bytes).expect("write the scan");
        }
        Run::from(child.wait_with_output().expect("openmvs ends"))
    }

    /// `openmvs OPERATION... --profile de-pharmacy` with `more` after it.
    fn pharmacy(&self, operation: &[&str], more: &[String]) -> Run {
        let mut args: Vec<&str> = operation.to_vec();
        args.extend(["--profile", "de-pharmacy"]);
        args.extend(more.iter().map(String::as_str));
        self.run(&args, &[], None)
    }

    fn ca_cert(&self) -> &str {
        self.doc["ca_cert"].as_str().expect("ca_cert")
    }

    fn de_url(&self) -> &str {
        self.doc["markets"]["DE"]["url"].as_str().expect("DE url")
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn the_pack_commands_end_with_the_status_of_their_outcome_and_say_it_readably_or_as_json() {
    let dir = TempDir::new("pack-commands");
    let demo = Demo::start(dir.path(), port_base(1), &["--markets", "DE", "--fake-clock"]);
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("demo.json")).expect("demo.json"))
            .expect("demo.json is JSON");
    let s = doc["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .find(|s| s["batch"] == "EXA2401")
        .expect("EXA2401");
    let text = |k: &str| s[k].as_str().expect(k).to_owned();
    let sample = Sample {
        product_code: text("product_code"),
        batch: text("batch"),
        expiry: text("expiry"),
        serials: s["serials"]
            .as_array()
            .expect("serials")
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect(),
    };
    let profiles = dir.path().join("profiles.toml");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&profiles).expect("profiles.toml").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the secrets are for the demo's owner alone");
    }
    assert!(
        demo.guide.contains(&profiles.display().to_string()),
        "the guide names the profiles:\n{}",
        demo.guide
    );
    let w = World { home: TempDir::new("pack-commands-home"), profiles, doc, sample, _dir: dir };

    accepted_refused_and_undone(&w);
    alerts(&w);
    errors(&w);
    connections(&w);
    every_operation(&w);
    expired(&w);
    demo.stop();
}

/// A verify by fields, a supply from a raw scan, the same supply again (refused, and its first
/// answer for the same `client_trx_id`), and an undo of it read from standard input.
fn accepted_refused_and_undone(w: &World) {
    let s = &w.sample;
    let serial = &s.serials[10];
    let verify = w.pharmacy(&["verify"], &s.fields(serial)).expect(ACCEPTED, "verify");
    assert_eq!(
        verify.line(0),
        format!(
            "accepted: verify of Examplomab 10 mg tablets ({}), serial {serial}, batch EXA2401, expiry 2028-12-31: ACTIVE, may be dispensed",
            s.product_code
        )
    );
    assert!(
        verify.line(1).starts_with("NMVS_SUCCESS (level 1): Done. client_trx_id omc-"),
        "{}",
        verify.stdout
    );
    assert_eq!(verify.stdout.lines().count(), 2, "{}", verify.stdout);

    let scan = s.scan(serial);
    let supply = w
        .pharmacy(&["supply"], &strings(&["--scan", &scan, "--client-trx-id", "cli-supply-1"]))
        .expect(ACCEPTED, "supply from a scan");
    assert!(supply.line(0).starts_with("accepted: supply of Examplomab"), "{}", supply.stdout);
    assert!(supply.line(0).ends_with(": SUPPLIED, not to be dispensed"), "{}", supply.stdout);
    assert!(supply.line(1).ends_with("client_trx_id cli-supply-1"), "{}", supply.stdout);

    // A double scan at the counter: processed, refused, no alert.
    let again =
        w.pharmacy(&["supply", "--json"], &strings(&["--scan", &scan])).expect(REFUSED, "supply again");
    let answer = again.json();
    assert_eq!(
        (&answer["accepted"], &answer["return_code"], &answer["alert"], &answer["pack"]["state"]),
        (&json!(false), &json!("NMVS_NC_PCK_23"), &Value::Null, &json!("SUPPLIED")),
        "{answer}"
    );
    let readable =
        w.pharmacy(&["supply"], &strings(&["--scan", &scan])).expect(REFUSED, "supply a third time");
    assert!(readable.line(0).starts_with("refused: supply of Examplomab"), "{}", readable.stdout);
    assert!(readable.line(1).starts_with("NMVS_NC_PCK_23 (level 3): "), "{}", readable.stdout);
    // The first request sent again with its id: its first answer, nothing done twice.
    let replay = w
        .pharmacy(&["supply", "--json"], &strings(&["--scan", &scan, "--client-trx-id", "cli-supply-1"]))
        .expect(ACCEPTED, "the first supply sent again");
    assert_eq!(replay.json()["return_code"], "NMVS_SUCCESS");

    // The undo reads the scan from standard input, with the line end a terminal adds.
    let mut typed = scan.into_bytes();
    typed.push(b'\n');
    let undo = w.run(&["undo", "supply", "--profile", "de-pharmacy", "--scan", "-"], &[], Some(&typed));
    let undo = undo.expect(ACCEPTED, "undo supply");
    assert!(undo.line(0).starts_with("accepted: undo supply of Examplomab"), "{}", undo.stdout);
    assert!(undo.line(0).ends_with(": ACTIVE, may be dispensed"), "{}", undo.stdout);
}

/// An unknown serial raises an alert: exit status 4, its code and id, readable and as JSON.
fn alerts(w: &World) {
    let s = &w.sample;
    let unknown =
        w.pharmacy(&["verify", "--json"], &s.fields("CLIUNKNOWN01")).expect(ALERT, "unknown serial");
    let answer = unknown.json();
    assert_eq!(
        (&answer["return_code"], &answer["alert"]["code"]),
        (&json!("NMVS_NC_PC_02"), &json!("A3")),
        "{answer}"
    );
    assert!(answer["alert"]["id"].as_str().is_some_and(|id| id.starts_with("ALR-")), "{answer}");
    let readable = w.pharmacy(&["verify"], &s.fields("CLIUNKNOWN02")).expect(ALERT, "another unknown serial");
    assert!(readable.line(0).starts_with("ALERT A3 raised (alert id ALR-"), "{}", readable.stdout);
    assert!(
        readable.line(0).contains("serial CLIUNKNOWN02, batch EXA2401, expiry 2028-12-31"),
        "{}",
        readable.stdout
    );
    assert!(readable.line(1).starts_with("NMVS_NC_PC_02 (level 5): "), "{}", readable.stdout);
}

/// Every error ends with status 1: readable on standard error, or JSON on standard output.
fn errors(w: &World) {
    let s = &w.sample;
    // Nothing listens there (the port was free a moment ago).
    let nowhere = format!("https://127.0.0.1:{}", free_port());

    // A lost group separator: the same words as `openmvs scan`, and no request (the URL given
    // would answer nothing).
    let lost_gs = s.scan(&s.serials[11]).replace('\u{1d}', "").into_bytes();
    let scan = w.run(&["scan", "-"], &[], Some(&lost_gs));
    assert!(scan.stderr.contains("GS separator before AI 21 was probably lost"), "{}", scan.stderr);
    let env = [("OPENMVS_URL", nowhere.as_str())];
    let refused = w.run(&["supply", "--profile", "de-pharmacy", "--scan", "-"], &env, Some(&lost_gs));
    let refused = refused.expect(ERROR, "a scan that cannot be read");
    assert_eq!((refused.stderr.as_str(), refused.stdout.as_str()), (scan.stderr.as_str(), ""));
    let as_json =
        w.run(&["supply", "--json", "--profile", "de-pharmacy", "--scan", "-"], &env, Some(&lost_gs));
    let e = as_json.expect(ERROR, "a scan that cannot be read, as JSON").json();
    assert_eq!((&e["error"], &e["message"]), (&json!("input"), &json!(scan.stderr.trim_end())), "{e}");

    // A wrong secret: the token endpoint refuses, and the message says where the secret came from.
    let env = [("OPENMVS_CLIENT_SECRET", "not-the-secret")];
    let login = w.run(&["verify", "--profile", "de-pharmacy", "--scan", &s.scan(&s.serials[12])], &env, None);
    let login = login.expect(ERROR, "a wrong secret");
    assert!(
        login.stderr.starts_with("openmvs: the token endpoint refused the client (HTTP 401): invalid_client"),
        "{}",
        login.stderr
    );
    assert!(login.stderr.contains("secret from OPENMVS_CLIENT_SECRET"), "{}", login.stderr);
    let login = w.run(
        &["verify", "--json", "--profile", "de-pharmacy", "--scan", &s.scan(&s.serials[12])],
        &env,
        None,
    );
    let e = login.expect(ERROR, "a wrong secret, as JSON").json();
    assert_eq!((&e["error"], &e["status"]), (&json!("login"), &json!(401)), "{e}");

    // Nobody answers: the client's retries, then what to check; the request's id in the JSON.
    let fields = s.fields(&s.serials[13]);
    let mut args = strings(&["--url", &nowhere, "--client-trx-id", "cli-nowhere-1"]);
    args.extend(fields.iter().cloned());
    let gone = w.pharmacy(&["supply"], &args).expect(ERROR, "no national system");
    assert!(
        gone.stderr.starts_with("openmvs: POST /oauth/token: no answer after 5 attempt(s)"),
        "{}",
        gone.stderr
    );
    assert!(gone.stderr.contains(&format!("is the national system at {nowhere} running")), "{}", gone.stderr);
    args.push("--json".into());
    let e = w.pharmacy(&["supply"], &args).expect(ERROR, "no national system, as JSON").json();
    assert_eq!(
        (&e["error"], &e["client_trx_id"], &e["status"]),
        (&json!("network"), &json!("cli-nowhere-1"), &Value::Null),
        "{e}"
    );

    // An HTTP error: a product code that fails its check digit.
    let mut bad = s.product_code.clone();
    let last = bad.pop().and_then(|c| c.to_digit(10)).expect("a digit");
    bad.push(char::from_digit((last + 1) % 10, 10).expect("a digit"));
    let args = strings(&["--product-code", &bad, "--serial", "X1", "--batch", "B1", "--expiry", "281231"]);
    let http = w.pharmacy(&["verify"], &args).expect(ERROR, "a bad check digit");
    assert!(http.stderr.starts_with("openmvs: HTTP 400 NMVS_FE_GR_01: "), "{}", http.stderr);
    let e = w.pharmacy(&["verify", "--json"], &args).expect(ERROR, "a bad check digit, as JSON").json();
    assert_eq!(
        (&e["error"], &e["status"], &e["return_code"]),
        (&json!("http"), &json!(400), &json!("NMVS_FE_GR_01")),
        "{e}"
    );
    assert_eq!(e["details"][0]["field"], "product_code", "{e}");

    // Two ways of naming the pack at once is a usage error, clap's.
    let both = w.run(&["verify", "--scan", "x", "--serial", "y"], &[], None);
    both.expect(USAGE, "--scan with --serial");
}

/// The environment alone is enough; a flag overrides it, and a missing piece is named.
fn connections(w: &World) {
    let s = &w.sample;
    let client = &w.doc["markets"]["DE"]["clients"][0];
    let nowhere = format!("https://127.0.0.1:{}", free_port());
    let env = [
        ("OPENMVS_URL", nowhere.as_str()),
        ("OPENMVS_CLIENT_ID", client["client_id"].as_str().expect("client_id")),
        ("OPENMVS_CLIENT_SECRET", client["client_secret"].as_str().expect("client_secret")),
        ("OPENMVS_CA_CERT", w.ca_cert()),
    ];
    let mut args = vec!["verify", "--url", w.de_url()];
    let fields = s.fields(&s.serials[14]);
    args.extend(fields.iter().map(String::as_str));
    w.run(&args, &env, None).expect(ACCEPTED, "the environment, its URL overridden by --url");

    let no_secret = w.run(&args, &env[..2], None).expect(ERROR, "no secret anywhere");
    assert!(
        no_secret
            .stderr
            .contains("no client secret (never a flag): set OPENMVS_CLIENT_SECRET, or name a profile"),
        "{}",
        no_secret.stderr
    );
    let mut args = vec!["verify", "--profile", "de-pharmacist"];
    args.extend(fields.iter().map(String::as_str));
    let unknown = w.run(&args, &[], None).expect(ERROR, "no such profile");
    assert!(unknown.stderr.contains("no profile 'de-pharmacist'"), "{}", unknown.stderr);
    for name in ["de-pharmacy", "de-pharmacy-2", "de-hospital", "de-wholesaler", "de-nmvo", "de-nca"] {
        assert!(unknown.stderr.contains(name), "the demo's profiles are listed: {}", unknown.stderr);
    }
}

/// Every other operation once, each by a role entitled to it: accepted, readable and as JSON;
/// the pack takes its state, a verify then refuses it with that state, and the operation's undo,
/// where it has one, makes the pack active again. One role not entitled is refused.
fn every_operation(w: &World) {
    let s = &w.sample;
    let cases = [
        ("destroy", "de-pharmacy", "DESTROYED", None),
        ("export", "de-wholesaler", "EXPORTED", Some("export")),
        ("sample", "de-pharmacy", "SAMPLE", Some("sample")),
        ("free-sample", "de-pharmacy", "FREE_SAMPLE", Some("free-sample")),
        ("lock", "de-pharmacy", "LOCKED", Some("lock")),
        ("stolen", "de-pharmacy", "STOLEN", None),
    ];
    for (i, (operation, profile, state, undo)) in cases.into_iter().enumerate() {
        let serial = &s.serials[20 + i];
        let mut args = vec![operation, "--profile", profile];
        let fields = s.fields(serial);
        args.extend(fields.iter().map(String::as_str));
        let done = w.run(&args, &[], None).expect(ACCEPTED, operation);
        assert!(done.line(0).starts_with(&format!("accepted: {operation} of Examplomab")), "{}", done.stdout);
        assert!(done.line(0).ends_with(&format!(": {state}, not to be dispensed")), "{}", done.stdout);

        let verify = w.pharmacy(&["verify", "--json"], &fields).expect(ACCEPTED, "verify after it");
        let answer = verify.json();
        assert_eq!(
            (&answer["return_code"], &answer["pack"]["state"], &answer["alert"]),
            (&json!("NMVS_INFO_PCK_INACTIVE"), &json!(state), &Value::Null),
            "{operation}: {answer}"
        );
        if let Some(undo) = undo {
            let mut args = vec!["undo", undo, "--json", "--profile", profile];
            args.extend(fields.iter().map(String::as_str));
            let answer = w.run(&args, &[], None).expect(ACCEPTED, "the undo").json();
            assert_eq!(
                (&answer["return_code"], &answer["pack"]["state"]),
                (&json!("NMVS_SUCCESS"), &json!("ACTIVE")),
                "undo {undo}: {answer}"
            );
        }
    }
    // A pharmacy does not export: an error of HTTP 403, nothing done.
    let fields = s.fields(&s.serials[30]);
    let mut args = vec!["export", "--json", "--profile", "de-pharmacy"];
    args.extend(fields.iter().map(String::as_str));
    let e = w.run(&args, &[], None).expect(ERROR, "an export by a pharmacy").json();
    assert_eq!((&e["status"], &e["return_code"]), (&json!(403), &json!("NMVS_FE_AU_04")), "{e}");
    let answer = w.pharmacy(&["verify", "--json"], &fields).expect(ACCEPTED, "verify").json();
    assert_eq!(answer["pack"]["state"], "ACTIVE", "{answer}");
}

/// Four years on (the demo's clock moved), the sample batch has expired: a supply is refused
/// without an alert, and the pack shows why.
fn expired(w: &World) {
    let http = https_client(w.ca_cert());
    let moved = http
        .post(format!("{}/admin/v1/clock", w.de_url()))
        .bearer_auth(w.doc["admin_token"].as_str().expect("admin_token"))
        .json(&json!({"advance_seconds": 4 * 366 * 86_400}))
        .send_retrying()
        .expect("move the clock");
    assert_eq!(moved.status().as_u16(), 200);
    let s = &w.sample;
    let run = w.pharmacy(&["supply"], &s.fields(&s.serials[15])).expect(REFUSED, "supply of an expired pack");
    assert!(run.line(0).ends_with(": ACTIVE, EXPIRED, not to be dispensed"), "{}", run.stdout);
    assert!(run.line(1).starts_with("NMVS_NC_PCK_02 (level 4): "), "{}", run.stdout);
}

#[test]
fn the_help_of_a_pack_command_documents_its_exit_status_and_where_it_connects() {
    for command in [&["verify"][..], &["undo", "lock"], &["free-sample"]] {
        let mut args = command.to_vec();
        args.push("--help");
        let help = Run::from(common::openmvs(&args)).expect(ACCEPTED, "--help");
        for line in [
            "  0  accepted",
            "  3  refused by the rules",
            "  4  an alert was raised",
            "  1  error",
            "  2  usage error",
            "OPENMVS_CLIENT_SECRET",
            "~/.config/openmvs/profiles.toml",
        ] {
            assert!(help.stdout.contains(line), "{command:?}: {line:?} is not in:\n{}", help.stdout);
        }
    }
    let short = Run::from(common::openmvs(&["supply", "-h"])).expect(ACCEPTED, "-h");
    assert!(
        short.stdout.contains("Exit status: 0 accepted, 3 refused by the rules, 4 alert raised, 1 error"),
        "{}",
        short.stdout
    );
}
