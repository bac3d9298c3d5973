//! What the end-to-end tests of a running national system share: a temporary data directory with
//! its configuration file, the real `openmvs` binary started as a child process (killed on every
//! path), and a blocking HTTP client with typed helpers for the few routes the tests call.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

pub mod demo;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wait_timeout::ChildExt;

pub use openmvs_testkit::TempDir;

/// The product `openmvs admin seed` creates.
pub const PRODUCT: &str = "09501101530003";
/// Its batch.
pub const BATCH: &str = "SEED1";
/// Its expiry.
pub const EXPIRY: &str = "301231";

/// How long a server may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopped server may take to exit before the test gives up on it.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// The serial of the `i`-th seeded pack.
pub fn serial(i: u64) -> String {
    format!("S{i:010}")
}

/// Copies the files of `from` (not recursively: a data directory is flat) into a new `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the data directory") {
        let entry = entry.expect("directory entry");
        if entry.file_type().expect("file type").is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy a file");
        }
    }
}

/// A port that was free a moment ago (the listener is dropped before the server binds it).
///
/// It is taken below the system's ephemeral range (`ip_local_port_range`), where no outgoing
/// connection is given a port: a server stopped and started again on its port (a rolling restart,
/// a crash loop) would otherwise find it taken, now and then, by some connection's local end.
/// Each test process walks the range from its own starting point, so that processes running side
/// by side do not hand out each other's ports.
pub fn free_port() -> u16 {
    const LOW: u32 = 27_000;
    const SPAN: u32 = 5_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    if ephemeral_low() >= LOW + SPAN {
        let start = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
        for _ in 0..SPAN {
            let port = LOW + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN;
            let port = u16::try_from(port).expect("a port");
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}

/// The lowest port the system gives outgoing connections (32768 when it cannot be read).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(32_768)
}

/// Runs the `openmvs` binary to completion, without any `OPENMVS...` variable of the
/// developer's environment, so that only the test's configuration counts.
pub fn openmvs(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_openmvs"));
    cmd.args(args).stdin(Stdio::null());
    clean_env(&mut cmd);
    cmd.output().expect("openmvs runs")
}

fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars() {
        if k.starts_with("OPENMVS") {
            cmd.env_remove(k);
        }
    }
}

/// The credentials `openmvs admin client create` printed.
#[derive(Debug, Clone)]
pub struct Creds {
    /// The client id.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
}

/// A national system of market DE in a temporary directory: its configuration file and data
/// directory. The configuration is rewritten with a fresh port at every start.
pub struct Node {
    dir: TempDir,
    limits: String,
    /// `(url, schema)` when the node keeps its data in PostgreSQL.
    postgres: Option<(String, String)>,
    starts: AtomicU32,
}

impl Node {
    /// A new node; `limits` are extra lines of `[national.limits]`.
    pub fn new(name: &str, limits: &str) -> Node {
        Node::build(name, limits, None)
    }

    /// A new node keeping its data in the PostgreSQL schema `schema` at `url`; nodes given the
    /// same schema are nodes of one national system.
    pub fn postgres(name: &str, limits: &str, url: &str, schema: &str) -> Node {
        Node::build(name, limits, Some((url.to_owned(), schema.to_owned())))
    }

    fn build(name: &str, limits: &str, postgres: Option<(String, String)>) -> Node {
        let node =
            Node { dir: TempDir::new(name), limits: limits.to_owned(), postgres, starts: AtomicU32::new(0) };
        node.write_config(free_port());
        node
    }

    /// The configuration file.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("national.toml")
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The temporary directory that holds both (and copies the tests make).
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    fn write_config(&self, port: u16) {
        // Generous rate limits: these tests measure crashes and shutdowns, not the limiter.
        let storage = match &self.postgres {
            Some((url, schema)) => {
                format!(
                    "storage = \"postgres\"\n\n[national.postgres]\nurl = \"{url}\"\nschema = \"{schema}\"\n"
                )
            }
            None => String::new(),
        };
        let text = format!(
            "[national]\nmarket = \"DE\"\nlisten = \"127.0.0.1:{port}\"\ndata_dir = '{}'\nlog = \"info\"\n{storage}\n\
             [national.limits]\nclient_rate_per_second = 1000000\nclient_burst = 1000000\n{}\n",
            self.data_dir().display(),
            self.limits
        );
        std::fs::write(self.config(), text).expect("write the configuration");
    }

    /// Runs `openmvs` with `args` followed by `--config FILE`, and insists that it succeeds.
    pub fn admin(&self, args: &[&str]) -> String {
        admin(&self.config(), args)
    }

    /// Seeds `packs` active packs (serials [`serial`]`(0..packs)`).
    pub fn seed(&self, packs: u64) {
        self.admin(&["admin", "seed", "--packs", &packs.to_string()]);
    }

    /// Creates a client of `role` at `location` in market DE.
    pub fn client(&self, role: &str, location: &str) -> Creds {
        let out = self.admin(&[
            "admin",
            "client",
            "create",
            "--market",
            "DE",
            "--role",
            role,
            "--location",
            location,
        ]);
        let v: Value = serde_json::from_str(&out).expect("client create prints JSON");
        Creds {
            client_id: v["client_id"].as_str().expect("client_id").to_owned(),
            client_secret: v["client_secret"].as_str().expect("client_secret").to_owned(),
        }
    }

    /// Runs `openmvs audit verify` on `data_dir`.
    pub fn audit_verify(data_dir: &Path) -> Output {
        openmvs(&["audit", "verify", "--data-dir", data_dir.to_str().expect("UTF-8 path")])
    }

    /// Starts `openmvs serve national` on `port` and waits for its ready line (a test that
    /// needs the same address across restarts: an agent pointed at it).
    pub fn start_at(&self, port: u16) -> Server {
        self.write_config(port);
        let n = self.starts.fetch_add(1, Ordering::SeqCst);
        Server::spawn(&self.config(), &self.root().join(format!("serve-{n}.log")))
            .unwrap_or_else(|log| panic!("the server did not start:\n{log}"))
    }

    /// Starts `openmvs serve national` and waits for its ready line.
    pub fn start(&self) -> Server {
        // A port found free can be taken by another process before the server binds it: try again.
        for _ in 0..3 {
            self.write_config(free_port());
            let n = self.starts.fetch_add(1, Ordering::SeqCst);
            match Server::spawn(&self.config(), &self.root().join(format!("serve-{n}.log"))) {
                Ok(s) => return s,
                Err(log) if log.contains("binding") => continue,
                Err(log) => panic!("the server did not start:\n{log}"),
            }
        }
        panic!("no free port after three tries");
    }
}

/// A running `openmvs serve national`; killed (SIGKILL) when dropped if it is still running.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its standard error (the log).
    pub log: PathBuf,
}

impl Server {
    fn spawn(config: &Path, log: &Path) -> Result<Server, String> {
        Server::spawn_command(&["serve", "national", "--config", config.to_str().expect("UTF-8 path")], log)
    }

    /// Starts `openmvs ARGS` (a command that serves and prints `... listening on URL` when
    /// ready: `serve national`, `agent`) with its log in `log`, and waits for the ready line.
    pub fn spawn_command(args: &[&str], log: &Path) -> Result<Server, String> {
        let stderr = std::fs::File::create(log).expect("create the log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_openmvs"));
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(stderr));
        clean_env(&mut cmd);
        let mut child = cmd.spawn().expect("start openmvs");
        let stdout = child.stdout.take().expect("stdout");
        let mut server = Server { child, base: String::new(), log: log.to_owned() };
        // A reader thread, so that the wait for the ready line can be bounded; it then drains
        // standard output until the process closes it.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some((_, url)) = line.split_once(" listening on ") {
                        server.base = url.trim().to_owned();
                        return Ok(server);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = server.child.wait().expect("wait for the server");
                    return Err(format!("exited with {status}:\n{}", server.log_text()));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("no ready line within {READY_TIMEOUT:?}:\n{}", server.log_text());
                }
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `limit` for a line of its log that contains `text`, looking at each write to
    /// the log; whether one came.
    pub fn wait_for_log(&self, text: &str, limit: Duration) -> bool {
        let dir = self.log.parent().expect("the log's directory");
        let name = self.log.file_name().and_then(|n| n.to_str()).expect("the log's name");
        when_written(dir, name, limit, || self.log_text().contains(text).then_some(())).is_some()
    }

    /// Kills it with SIGKILL, as a power cut would, and reaps it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (a clean shutdown) without waiting.
    pub fn terminate(&self) {
        let status =
            Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("run kill -TERM");
        assert!(status.success(), "kill -TERM {}: {status}", self.pid());
    }

    /// Waits up to `timeout` for it to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.child.wait_timeout(timeout).expect("wait for the server")
    }

    /// Stops it cleanly (SIGTERM) and insists that it exits with status 0.
    pub fn stop(mut self) {
        self.terminate();
        let Some(status) = self.wait_exit(EXIT_TIMEOUT) else {
            panic!("the server did not exit within {EXIT_TIMEOUT:?} of SIGTERM:\n{}", self.log_text());
        };
        assert!(status.success(), "the server exited with {status}:\n{}", self.log_text());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The longest a test usually waits for an event: generous, for a busy machine.
pub const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// Runs `openmvs ARGS --config FILE` and insists that it succeeds; its standard output.
pub fn admin(config: &Path, args: &[&str]) -> String {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", config.to_str().expect("UTF-8 path")]);
    let out = openmvs(&all);
    assert!(
        out.status.success(),
        "openmvs {}: {}\n{}",
        all.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits for something another process does, which it says nowhere this test can wait on (no
/// line, no file, no exit): asks `probe` every 20 ms until it gives a value, for at most `limit`;
/// `None` if it never did. The one poll of these tests (tidy.rs allows it), for the few events
/// that have no signal; [`Watched::wait_for`] and [`when_written`] wait for those that have one.
pub fn eventually<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits up to `limit` for `check` to give a value: asks it at once, and again each time the
/// file `name` in `dir` is created, written or moved into place (inotify), which is how another
/// process says what it did when it says so in a file: its log, the audit head file, its
/// database. `None` if it never did.
#[cfg(target_os = "linux")]
pub fn when_written<T>(
    dir: &Path,
    name: &str,
    limit: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    use rustix::fs::inotify;
    use rustix::io::Errno;

    let deadline = Instant::now() + limit;
    let watch = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
        .expect("an inotify instance");
    // Watched before the first look, so that no write between the two goes unseen.
    let flags = inotify::WatchFlags::CREATE | inotify::WatchFlags::MODIFY | inotify::WatchFlags::MOVED_TO;
    inotify::add_watch(&watch, dir, flags).unwrap_or_else(|e| panic!("watch {}: {e}", dir.display()));
    let mut buf = [std::mem::MaybeUninit::uninit(); 4096];
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        // Until `name` is written, or the deadline.
        let mut written = false;
        while !written {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let timeout = Timespec::try_from(left).expect("a timeout");
            match poll(&mut [PollFd::new(&watch, PollFlags::IN)], Some(&timeout)) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => panic!("waiting for {name}: {e}"),
            }
            let mut events = inotify::Reader::new(&watch, &mut buf);
            loop {
                match events.next() {
                    Ok(e) => written |= e.file_name().is_some_and(|n| n.to_bytes() == name.as_bytes()),
                    Err(Errno::AGAIN | Errno::INTR) => break,
                    Err(e) => panic!("reading the changes of {}: {e}", dir.display()),
                }
            }
        }
    }
}

/// Elsewhere than Linux, without inotify: [`eventually`].
#[cfg(not(target_os = "linux"))]
pub fn when_written<T>(
    _dir: &Path,
    _name: &str,
    limit: Duration,
    check: impl FnMut() -> Option<T>,
) -> Option<T> {
    eventually(limit, check)
}

/// What the threads of a test record, with a signal at each change: the test waits for it to
/// reach a state, woken by the change that brings it there.
#[derive(Default)]
pub struct Watched<T> {
    value: std::sync::Mutex<T>,
    changed: std::sync::Condvar,
}

impl<T> Watched<T> {
    /// Changes it, and wakes whoever waits.
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let r = f(&mut self.value.lock().unwrap_or_else(|p| p.into_inner()));
        self.changed.notify_all();
        r
    }

    /// Reads it.
    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.value.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Waits up to `limit` for `done` to hold; whether it did.
    pub fn wait_for(&self, limit: Duration, mut done: impl FnMut(&T) -> bool) -> bool {
        let value = self.value.lock().unwrap_or_else(|p| p.into_inner());
        let (value, _) =
            self.changed.wait_timeout_while(value, limit, |v| !done(v)).unwrap_or_else(|p| p.into_inner());
        done(&value)
    }

    /// What it holds.
    pub fn into_inner(self) -> T {
        self.value.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

/// A stop the threads of a test wait on: given once, seen at once by every waiter.
#[derive(Default)]
pub struct Stop {
    given: std::sync::Mutex<bool>,
    changed: std::sync::Condvar,
}

impl Stop {
    /// Gives the stop.
    pub fn stop(&self) {
        *self.given.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.changed.notify_all();
    }

    /// Whether the stop was given.
    pub fn is_given(&self) -> bool {
        *self.given.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the stop for at most `pace`; whether it came. A thread that samples another
    /// process through a stretch of time it keeps by its own clock (a shutdown's grace time) takes
    /// its pace from this, and ends as soon as the test is done.
    pub fn wait(&self, pace: Duration) -> bool {
        let given = self.given.lock().unwrap_or_else(|p| p.into_inner());
        let (given, _) =
            self.changed.wait_timeout_while(given, pace, |g| !*g).unwrap_or_else(|p| p.into_inner());
        *given
    }
}

/// A blocking HTTP client that keeps its connections alive, with bounded waits (generous: a
/// busy machine answers late).
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("build the HTTP client")
}

/// A blocking HTTP client that opens a new connection for every request.
pub fn http_fresh_connections(timeout: Duration) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(0)
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .expect("build the HTTP client")
}

/// What became of one request.
#[derive(Debug)]
pub enum Reply {
    /// A complete response whose body is JSON.
    Answer {
        /// The HTTP status.
        status: u16,
        /// The body.
        body: Value,
    },
    /// No response at all: the connection failed or closed before the status line came. The
    /// server may or may not have acted on the request.
    NoAnswer(String),
    /// A status line came, but the body was cut short or is not JSON.
    Broken {
        /// The HTTP status.
        status: u16,
        /// What was wrong.
        why: String,
    },
}

impl Reply {
    /// The body of a 200 answer; panics with the reply otherwise.
    pub fn ok(self, what: &str) -> Value {
        match self {
            Reply::Answer { status: 200, body } => body,
            other => panic!("{what}: expected 200, got {other:?}"),
        }
    }
}

/// The longest [`send`] keeps sending a request that is refused for load.
pub const RETRY_BUDGET: Duration = Duration::from_secs(60);

/// The wait a refusal for load asks for: `Some` for a 503 or a 429 with `Retry-After`.
fn retry_after(resp: &reqwest::blocking::Response) -> Option<Duration> {
    let status = resp.status().as_u16();
    if status != 503 && status != 429 {
        return None;
    }
    let secs: u64 = resp.headers().get("retry-after")?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).max(Duration::from_millis(50)))
}

/// Sends `req` as a real client does: a refusal for load (503 or 429 with `Retry-After`, given
/// before anything was done) is sent again after the time it names, for at most
/// [`RETRY_BUDGET`]; then the last refusal is returned. A busy machine, whose server lowers its
/// admission bound, slows a test down instead of failing it.
pub fn send_response(req: reqwest::blocking::RequestBuilder) -> reqwest::Result<reqwest::blocking::Response> {
    let deadline = Instant::now() + RETRY_BUDGET;
    loop {
        let Some(this_try) = req.try_clone() else { return req.send() };
        let resp = this_try.send()?;
        match retry_after(&resp) {
            Some(wait) if Instant::now() + wait < deadline => {
                drop(resp);
                std::thread::sleep(wait);
            }
            _ => return Ok(resp),
        }
    }
}

/// [`send_response`] as a method of the request, in place of `send`.
pub trait SendRetrying {
    /// Sends the request, and again after each refusal for load (see [`send_response`]).
    fn send_retrying(self) -> reqwest::Result<reqwest::blocking::Response>;
}

impl SendRetrying for reqwest::blocking::RequestBuilder {
    fn send_retrying(self) -> reqwest::Result<reqwest::blocking::Response> {
        send_response(self)
    }
}

/// Sends `req` (again after refusals for load, see [`send_response`]) and reads the whole body.
pub fn send(req: reqwest::blocking::RequestBuilder) -> Reply {
    read(send_response(req))
}

/// Sends `req` once and reads the whole body: for a test that looks at refusals themselves.
pub fn send_once(req: reqwest::blocking::RequestBuilder) -> Reply {
    read(req.send())
}

fn read(resp: reqwest::Result<reqwest::blocking::Response>) -> Reply {
    let resp = match resp {
        Ok(r) => r,
        Err(e) => return Reply::NoAnswer(format!("{e:?}")),
    };
    let status = resp.status().as_u16();
    match resp.text() {
        Ok(text) => match serde_json::from_str(&text) {
            Ok(body) => Reply::Answer { status, body },
            Err(e) => Reply::Broken { status, why: format!("not JSON ({e}): {text:?}") },
        },
        Err(e) => Reply::Broken { status, why: format!("body unreadable: {e:?}") },
    }
}

/// Gets a bearer token for `creds`.
pub fn token(http: &reqwest::blocking::Client, base: &str, creds: &Creds) -> String {
    let body = send(http.post(format!("{base}/oauth/token")).form(&[
        ("grant_type", "client_credentials"),
        ("client_id", creds.client_id.as_str()),
        ("client_secret", creds.client_secret.as_str()),
    ]))
    .ok("token");
    body["access_token"].as_str().expect("access_token").to_owned()
}

/// The body of a single-pack request on the seeded product.
pub fn pack_body(client_trx_id: &str, serial: &str) -> Value {
    json!({
        "client_trx_id": client_trx_id,
        "scheme": "GTIN",
        "product_code": PRODUCT,
        "serial": serial,
        "batch": BATCH,
        "expiry": EXPIRY,
    })
}

/// `POST /v1/packs/{operation}` with `body`, sent once even if refused for load.
pub fn pack_once(
    http: &reqwest::blocking::Client,
    base: &str,
    token: &str,
    operation: &str,
    body: &Value,
) -> Reply {
    send_once(http.post(format!("{base}/v1/packs/{operation}")).bearer_auth(token).json(body))
}

/// `POST /v1/packs/{operation}` with `body` (see [`send`] for refusals for load).
pub fn pack(
    http: &reqwest::blocking::Client,
    base: &str,
    token: &str,
    operation: &str,
    body: &Value,
) -> Reply {
    send(http.post(format!("{base}/v1/packs/{operation}")).bearer_auth(token).json(body))
}

/// The audit records of a seeded pack, read as an authority.
pub fn audit_of(http: &reqwest::blocking::Client, base: &str, nca_token: &str, serial: &str) -> Vec<Value> {
    let body =
        send(http.get(format!("{base}/v1/audit/packs/GTIN/{PRODUCT}/{serial}")).bearer_auth(nca_token))
            .ok("audit read");
    body["records"].as_array().expect("records").clone()
}
