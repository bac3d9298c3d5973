//! The offline agent at a pharmacy (`openmvs agent`), as a service without HTTP: the pharmacy
//! software talks to it with the end-user API, and it forwards every request to the national
//! system. When that system cannot be reached, fails or is too slow, the agent records the
//! operation in its durable queue and answers `NMVS_TI_OFF_01` (HTTP 202, `accepted: false`):
//! recorded, not verified (DR Art 29). When the system is back it replays the queue in order per
//! pack, verify first, with each operation's own `client_trx_id` ([`drain`]), at a bounded rate,
//! and keeps what did not apply on the pharmacist's list.
//!
//! A request the national system answered (accepted, or refused by the rules or for its input)
//! is returned as it came, never recorded. Once an operation of a pack is recorded, the pack's
//! later operations are recorded behind it, so they reach the national system in the order they
//! were made.

pub mod bucket;
pub mod drain;
pub mod queue;
pub mod upstream;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openmvs_core::error::ApiError;
use openmvs_core::pack::Command;
use openmvs_core::return_code::ReturnCode;
use openmvs_core::time::{Clock, Timestamp};
use openmvs_wire::agent::{AgentStatus, Problem, ProblemList};
use openmvs_wire::api::{AlertRef, ErrorBody, PackRequest, PackResponse, Warning};
use tokio::sync::Notify;

use crate::bucket::TokenBucket;
use crate::queue::{NewOp, Op, Outcome, ProblemRow, Queue, QueueError};
use crate::upstream::{Forward, Forwarded, Reply, Upstream};

/// The settings of an agent (the `[agent]` section of its configuration file).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// The national system's URL, for the status page.
    pub national_url: String,
    /// The pharmacy's client id at the national system; the pharmacy software logs in to the
    /// agent with the same one.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// How long a forwarded request may take before it is recorded instead.
    pub timeout: Duration,
    /// The wait after the first failed attempt to reach the national system; it doubles with
    /// each further failure up to `retry_max`.
    pub retry: Duration,
    /// The longest wait between attempts.
    pub retry_max: Duration,
    /// Requests per second the replay sends, on average.
    pub rate_per_second: f64,
    /// Requests the replay may send at once after a pause.
    pub burst: u32,
    /// Packs replayed at the same time (each pack's operations stay in order).
    pub concurrency: usize,
    /// How long a token the agent issues to the pharmacy software lasts.
    pub token_ttl: Duration,
}

impl AgentConfig {
    /// The defaults, with the credentials and the national system's URL.
    pub fn new(national_url: &str, client_id: &str, client_secret: &str) -> AgentConfig {
        AgentConfig {
            national_url: national_url.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            timeout: Duration::from_millis(3000),
            retry: Duration::from_secs(5),
            retry_max: Duration::from_secs(300),
            rate_per_second: 5.0,
            burst: 10,
            concurrency: 4,
            token_ttl: Duration::from_secs(3600),
        }
    }
}

/// What the agent answers a single-pack request with.
#[derive(Debug, Clone, PartialEq)]
pub enum PackAnswer {
    /// The national system processed it (HTTP 200): its answer as it came.
    Answered(PackResponse),
    /// The national system refused it before processing (its status and body as they came), or
    /// asked the client to slow down (429 with its `Retry-After`).
    Refused {
        /// The HTTP status.
        status: u16,
        /// The body.
        body: ErrorBody,
        /// `Retry-After`, in seconds.
        retry_after: Option<u64>,
    },
    /// Recorded offline (HTTP 202, `NMVS_TI_OFF_01`).
    Recorded(PackResponse),
}

/// A token the agent issued to the pharmacy software.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalToken {
    /// The bearer token.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: i64,
}

/// Why a login at the agent failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// The client id or secret is not the pharmacy's.
    #[error("invalid client id or client secret")]
    InvalidClient,
}

/// The figures of `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    /// Operations recorded and not yet replayed.
    pub queue_length: u64,
    /// Age of the oldest, in seconds (0 when none).
    pub oldest_age_seconds: f64,
    /// Seconds since the national system last answered (none: never since the start).
    pub since_contact_seconds: Option<f64>,
    /// Whether the last attempt got an answer.
    pub online: bool,
    /// Operations replayed, in total.
    pub replayed: u64,
    /// Problems not acknowledged.
    pub problems_open: u64,
    /// Problems in total.
    pub problems: u64,
    /// Requests recorded offline since the start.
    pub recorded: u64,
    /// Requests forwarded and answered since the start.
    pub forwarded: u64,
}

/// The agent's view of the link to the national system.
#[derive(Debug, Default)]
struct Link {
    last_contact: Option<Timestamp>,
    last_failure: Option<String>,
    /// Consecutive attempts without an answer.
    failures: u32,
    /// No attempt before this (the system did not answer): live requests are recorded at once.
    offline_until: Option<Timestamp>,
    /// The replay sends nothing before this (the system asked to wait, 429 or 503).
    busy_until: Option<Timestamp>,
    recorded: u64,
    forwarded: u64,
}

/// Locks that keep one pack's forwarding, recording and replay in turn: striped, so that their
/// number is bounded; two packs that share a stripe only wait for each other.
struct PackLocks(Vec<tokio::sync::Mutex<()>>);

impl PackLocks {
    const STRIPES: usize = 256;

    fn new() -> PackLocks {
        PackLocks((0..PackLocks::STRIPES).map(|_| tokio::sync::Mutex::new(())).collect())
    }

    async fn lock(&self, pack: &str) -> tokio::sync::MutexGuard<'_, ()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        pack.hash(&mut h);
        self.0[(h.finish() as usize) % PackLocks::STRIPES].lock().await
    }
}

/// The most tokens kept at once: the oldest is dropped past it (its holder logs in again).
const MAX_LOCAL_TOKENS: usize = 1024;
/// The most problems `/status` lists (the rest are in `GET /v1/agent/problems`).
pub const STATUS_PROBLEMS: usize = 200;

/// The agent.
pub struct Agent {
    config: AgentConfig,
    queue: Queue,
    upstream: Arc<dyn Upstream>,
    clock: Arc<dyn Clock>,
    link: Mutex<Link>,
    bucket: Mutex<TokenBucket>,
    locks: PackLocks,
    tokens: Mutex<HashMap<String, Timestamp>>,
    /// The answer of the verify sent before a recorded decommission whose own request has not
    /// got through yet (refused for load, or not answered), by the operation's seq: the next
    /// round sends the decommission without asking again. Asking again would get the same answer
    /// (the verify's transaction id is derived from the operation's, and the national system
    /// answers it from its idempotency record), and would spend the request allowance that the
    /// decommission needs: an agent allowed fewer requests than its round sends would verify
    /// forever and never dispense. Lost when the agent stops; the next one asks again.
    verified: Mutex<HashMap<i64, PackResponse>>,
    /// Woken when an operation is recorded, so that an idle replay looks again.
    recorded: Notify,
}

/// A failure of the agent itself (its queue), not of the national system.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The queue cannot be read or written.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> ApiError {
        tracing::error!(cause = %e, "the agent's queue failed");
        // Nothing was recorded: the pharmacy software keeps the pack and tries again.
        ApiError::new(ReturnCode::Unavailable).with("queue", "the agent cannot write its queue (see its log)")
    }
}

/// The key of a pack in the queue: its scheme, product code and serial.
fn pack_key(scheme: &str, product_code: &str, serial: &str) -> String {
    format!("{scheme}/{product_code}/{serial}")
}

fn equal_secret(a: &str, b: &str) -> bool {
    // Compared in full whatever the first difference, so the time taken says nothing of the secret.
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_hex() -> String {
    let mut b = [0u8; 24];
    getrandom::fill(&mut b).expect("the operating system's random number generator failed");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Agent {
    /// An agent over the queue in `data_dir` (`agent.db`, created on first use).
    pub fn open(
        config: AgentConfig,
        data_dir: &Path,
        upstream: Arc<dyn Upstream>,
        clock: Arc<dyn Clock>,
    ) -> Result<Agent, AgentError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| QueueError::from_io(format!("creating {}", data_dir.display()), e))?;
        let queue = Queue::open(&data_dir.join("agent.db"))?;
        let bucket = TokenBucket::new(config.rate_per_second, config.burst);
        Ok(Agent {
            config,
            queue,
            upstream,
            clock,
            link: Mutex::new(Link::default()),
            bucket: Mutex::new(bucket),
            locks: PackLocks::new(),
            verified: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            recorded: Notify::new(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// The queue (for tests and tools that read it).
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    fn link(&self) -> std::sync::MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `POST /oauth/token` at the agent: the pharmacy's own client credentials, checked here so
    /// that the pharmacy software logs in whether or not the national system can be reached.
    pub fn login(&self, client_id: &str, client_secret: &str) -> Result<LocalToken, LoginError> {
        let id_ok = equal_secret(client_id, &self.config.client_id);
        let secret_ok = equal_secret(client_secret, &self.config.client_secret);
        if !(id_ok && secret_ok) {
            return Err(LoginError::InvalidClient);
        }
        let now = self.clock.now();
        let token = random_hex();
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.retain(|_, until| *until > now);
        if tokens.len() >= MAX_LOCAL_TOKENS
            && let Some(oldest) = tokens.iter().min_by_key(|(_, u)| **u).map(|(t, _)| t.clone())
        {
            tokens.remove(&oldest);
        }
        tokens.insert(token.clone(), now.plus(self.config.token_ttl));
        Ok(LocalToken { access_token: token, expires_in: self.config.token_ttl.as_secs() as i64 })
    }

    /// Checks a bearer token the agent issued: 401 when it is unknown or expired.
    pub fn authorize(&self, bearer: Option<&str>) -> Result<(), ApiError> {
        let now = self.clock.now();
        let ok = bearer.is_some_and(|t| {
            let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            tokens.get(t).is_some_and(|until| *until > now)
        });
        if ok {
            Ok(())
        } else {
            Err(ApiError::new(ReturnCode::Unauthenticated)
                .with("authorization", "a bearer token from this agent's POST /oauth/token is required"))
        }
    }

    /// Whether the national system is taken as unreachable now: it did not answer the last
    /// attempt, and the time for the next attempt has not come.
    fn offline(&self, now: Timestamp) -> bool {
        self.link().offline_until.is_some_and(|t| t > now)
    }

    fn contact(&self, now: Timestamp) {
        let mut l = self.link();
        l.last_contact = Some(now);
        l.last_failure = None;
        l.failures = 0;
        l.offline_until = None;
    }

    /// The national system did not answer: no attempt before the backoff has passed. The
    /// backoff doubles with each failure up to `retry_max`, plus a share of `retry` that is fixed
    /// per client id, so that the pharmacies of a market come back spread out, not all at once.
    fn unreachable(&self, now: Timestamp, why: &str) {
        let mut l = self.link();
        l.failures = l.failures.saturating_add(1);
        l.last_failure = Some(why.to_owned());
        let doubled = self.config.retry.saturating_mul(1 << (l.failures - 1).min(16));
        let jitter = self.config.retry.mul_f64(self.share());
        let wait = doubled.min(self.config.retry_max) + jitter;
        let until = now.plus(wait);
        if l.offline_until.is_none_or(|t| t < until) {
            l.offline_until = Some(until);
        }
    }

    /// A share between 0 and 1, fixed per client id, by which the pharmacies of a market spread
    /// their returns.
    fn share(&self) -> f64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.config.client_id.hash(&mut h);
        (h.finish() % 1000) as f64 / 1000.0
    }

    /// The national system asked the replay to wait: no attempt before its `Retry-After` (or the
    /// retry interval) has passed, plus up to half as long again, by the client id's share. Every
    /// agent refused in the same second is told the same `Retry-After`; without the spread they
    /// would all come back in the same instant, to be refused together again.
    fn busy(&self, now: Timestamp, retry_after: Option<Duration>) {
        let asked = retry_after.unwrap_or(self.config.retry);
        let until = now.plus(asked + asked.mul_f64(self.share() / 2.0));
        let mut l = self.link();
        if l.busy_until.is_none_or(|t| t < until) {
            l.busy_until = Some(until);
        }
    }

    /// When the replay may send again, if it must wait.
    fn paused_until(&self, now: Timestamp) -> Option<Timestamp> {
        let l = self.link();
        [l.offline_until, l.busy_until].into_iter().flatten().filter(|t| *t > now).max()
    }

    /// A single-pack request of the pharmacy software (`POST /v1/packs/{command}`).
    pub async fn pack(&self, command: Command, body: PackRequest) -> Result<PackAnswer, ApiError> {
        let now = self.clock.now();
        // Checked here, as the national system would: a request that can never be processed is
        // refused now, naming the field, instead of being recorded and refused later.
        let input = openmvs_national::request::pack_input(&body, now.date())?;
        let id = &input.id;
        let pack = pack_key(id.product_code.scheme().as_str(), id.product_code.as_str(), id.serial.as_str());
        let _turn = self.locks.lock(&pack).await;
        if let Some(op) = self.queue.by_trx(input.client_trx_id.as_str()).map_err(AgentError::from)? {
            return repeat(&op, command, &pack);
        }
        let warnings: Vec<Warning> = input.warnings.iter().map(Warning::from).collect();
        let new = NewOp {
            pack: pack.clone(),
            command: command.to_string(),
            client_trx_id: input.client_trx_id.as_str().to_owned(),
            request: serde_json::to_string(&body).unwrap_or_default(),
            scheme: id.product_code.scheme().as_str().to_owned(),
            product_code: id.product_code.as_str().to_owned(),
            serial: id.serial.as_str().to_owned(),
            batch: id.batch.as_str().to_owned(),
            expiry: id.expiry.as_str().to_owned(),
            recorded_at: now,
        };
        // Behind a pack's recorded operations, or while the system is known to be down: recorded
        // at once, without keeping the pharmacist waiting for a timeout.
        if self.queue.pack_pending(&pack).map_err(AgentError::from)? || self.offline(now) {
            return self.record(new, warnings);
        }
        let sent = tokio::time::timeout(self.config.timeout, self.upstream.pack(command, &body)).await;
        let now = self.clock.now();
        let reply = match sent {
            Ok(r) => r,
            Err(_) => Reply::Unreachable(format!("no answer within {} ms", self.config.timeout.as_millis())),
        };
        match reply {
            Reply::Answered(resp) => {
                self.contact(now);
                self.link().forwarded += 1;
                Ok(PackAnswer::Answered(resp))
            }
            Reply::Refused { status: 401, body } => {
                self.contact(now);
                tracing::error!(
                    return_code = %body.return_code,
                    "the national system refused the agent's client credentials: check client_id and client_secret"
                );
                Err(ApiError::new(ReturnCode::Unavailable).with(
                    "upstream",
                    "the national system refused this pharmacy's client credentials (disabled, or changed?): see the agent's log",
                ))
            }
            Reply::Refused { status, body } => {
                self.contact(now);
                self.link().forwarded += 1;
                Ok(PackAnswer::Refused { status, body, retry_after: None })
            }
            Reply::Busy { status: 429, retry_after, body } => {
                // The client's own rate at the national system: the software slows down, as it
                // would talking to the system directly; the replay waits too.
                self.contact(now);
                self.busy(now, retry_after);
                let secs = retry_after.map(|d| d.as_secs().max(1));
                let body = body.unwrap_or_else(|| ErrorBody::from(&ApiError::new(ReturnCode::RateLimited)));
                Ok(PackAnswer::Refused { status: 429, body, retry_after: secs })
            }
            Reply::Busy { retry_after, .. } => {
                // Unavailable for now (503): recorded; the replay waits as long as it was told.
                self.busy(now, retry_after);
                self.record(new, warnings)
            }
            Reply::Unreachable(why) => {
                tracing::warn!(cause = %why, "the national system did not answer: recording");
                self.unreachable(now, &why);
                self.record(new, warnings)
            }
        }
    }

    /// Records an operation (committed before the answer) and answers 202.
    fn record(&self, new: NewOp, warnings: Vec<Warning>) -> Result<PackAnswer, ApiError> {
        let seq = self.queue.record(&new).map_err(AgentError::from)?;
        self.link().recorded += 1;
        self.recorded.notify_one();
        Ok(PackAnswer::Recorded(recorded_response(seq, &new.client_trx_id, warnings)))
    }

    /// Another end-user request (bulk, alerts), forwarded as it came while the national system
    /// answers; nothing of it is recorded offline (503 while it does not answer).
    pub async fn forward(&self, request: Forward) -> Result<Forwarded, ApiError> {
        let now = self.clock.now();
        let down = || {
            ApiError::new(ReturnCode::Unavailable).with(
                "upstream",
                "the national system cannot be reached: only single-pack requests are recorded offline",
            )
        };
        if self.offline(now) {
            return Err(down().with_retry_after(self.config.retry));
        }
        let sent = tokio::time::timeout(self.config.timeout, self.upstream.forward(request)).await;
        let now = self.clock.now();
        match sent {
            Ok(Ok(answer)) if answer.status < 500 || answer.status == 503 => {
                self.contact(now);
                self.link().forwarded += 1;
                Ok(answer)
            }
            Ok(Ok(answer)) => {
                self.unreachable(now, &format!("HTTP {}", answer.status));
                Err(down())
            }
            Ok(Err(why)) => {
                self.unreachable(now, &why);
                Err(down())
            }
            Err(_) => {
                self.unreachable(now, &format!("no answer within {} ms", self.config.timeout.as_millis()));
                Err(down())
            }
        }
    }

    /// Waits until an operation is recorded (the idle replay's wake-up).
    pub async fn recorded_notified(&self) {
        self.recorded.notified().await;
    }

    /// The figures of `/metrics`.
    pub fn figures(&self) -> Result<Figures, AgentError> {
        let now = self.clock.now();
        let c = self.queue.counts()?;
        let l = self.link();
        Ok(Figures {
            queue_length: c.pending,
            oldest_age_seconds: c.oldest.map_or(0.0, |t| now.since(t).as_secs_f64()),
            since_contact_seconds: l.last_contact.map(|t| now.since(t).as_secs_f64()),
            online: l.offline_until.is_none(),
            replayed: c.replayed,
            problems_open: c.problems_open,
            problems: c.problems,
            recorded: l.recorded,
            forwarded: l.forwarded,
        })
    }

    /// `GET /status`: the queue, the link, and the open problems (at most [`STATUS_PROBLEMS`]).
    pub fn status(&self) -> Result<AgentStatus, AgentError> {
        let now = self.clock.now();
        let c = self.queue.counts()?;
        let problems = self.queue.problems(true, STATUS_PROBLEMS)?;
        let l = self.link();
        Ok(AgentStatus {
            national_url: self.config.national_url.clone(),
            online: l.offline_until.is_none(),
            queue_length: c.pending,
            oldest_recorded_at: c.oldest.map(Timestamp::to_rfc3339),
            oldest_age_seconds: c.oldest.map(|t| now.since(t).as_secs()),
            last_contact_at: l.last_contact.map(Timestamp::to_rfc3339),
            last_failure: l.last_failure.clone(),
            next_attempt_at: [l.offline_until, l.busy_until]
                .into_iter()
                .flatten()
                .filter(|t| *t > now)
                .max()
                .map(Timestamp::to_rfc3339),
            replayed: c.replayed,
            problems_open: c.problems_open,
            problems: problems.iter().map(problem_view).collect(),
        })
    }

    /// `GET /v1/agent/problems`: every problem, acknowledged or not.
    pub fn problems(&self, limit: usize) -> Result<ProblemList, AgentError> {
        Ok(ProblemList { problems: self.queue.problems(false, limit)?.iter().map(problem_view).collect() })
    }

    /// The pharmacist acknowledges a problem: 404 when there is no problem with this id; an
    /// acknowledged one stays acknowledged (the first acknowledgement is kept).
    pub fn acknowledge(&self, id: i64, by: Option<&str>) -> Result<Problem, ApiError> {
        if let Some(by) = by
            && (by.is_empty() || by.chars().count() > 100 || by.chars().any(char::is_control))
        {
            return Err(ApiError::field("by", "must be 1-100 characters without control characters"));
        }
        let now = self.clock.now();
        if !self.queue.is_problem(id).map_err(AgentError::from)? {
            return Err(ApiError::not_found("id", format!("there is no problem {id}")));
        }
        self.queue.acknowledge(id, by, now).map_err(AgentError::from)?;
        let all = self.queue.problems(false, usize::MAX >> 1).map_err(AgentError::from)?;
        all.iter()
            .find(|p| p.op.seq == id)
            .map(problem_view)
            .ok_or_else(|| ApiError::not_found("id", format!("there is no problem {id}")))
    }
}

/// The answer to a request whose transaction id is in the queue already.
fn repeat(op: &Op, command: Command, pack: &str) -> Result<PackAnswer, ApiError> {
    if op.new.command != command.to_string() || op.new.pack != pack {
        return Err(ApiError::new(ReturnCode::TransactionIdReused).with(
            "client_trx_id",
            format!("'{}' was recorded for another operation or pack", op.new.client_trx_id),
        ));
    }
    let kept = op.answer.as_deref().and_then(|a| serde_json::from_str::<serde_json::Value>(a).ok());
    let recorded = || PackAnswer::Recorded(recorded_response(op.seq, &op.new.client_trx_id, Vec::new()));
    match (op.outcome, kept) {
        (None, _) | (Some(Outcome::NotSent), _) | (_, None) => Ok(recorded()),
        (Some(outcome), Some(kept)) => {
            let status = kept["status"].as_u64().unwrap_or(200) as u16;
            if status == 200 {
                let Ok(mut resp) = serde_json::from_value::<PackResponse>(kept["body"].clone()) else {
                    return Ok(recorded());
                };
                if outcome == Outcome::NotDispensable && op.new.command != "verify" {
                    // The decommission was not sent: its verify's answer stands in for it, which
                    // is what the decommission itself would have been answered, not accepted.
                    resp.accepted = false;
                    resp.client_trx_id = op.new.client_trx_id.clone();
                }
                Ok(PackAnswer::Answered(resp))
            } else {
                match serde_json::from_value::<ErrorBody>(kept["body"].clone()) {
                    Ok(body) => Ok(PackAnswer::Refused { status, body, retry_after: None }),
                    Err(_) => Ok(recorded()),
                }
            }
        }
    }
}

/// The body of a 202: the usual single-pack response, not accepted, with the offline code.
fn recorded_response(seq: i64, client_trx_id: &str, warnings: Vec<Warning>) -> PackResponse {
    let info = ReturnCode::RecordedOffline.info();
    PackResponse {
        trx_id: format!("OFFLINE-{seq}"),
        client_trx_id: client_trx_id.to_owned(),
        accepted: false,
        return_code: info.code.to_owned(),
        level: info.level,
        message: info.message.to_owned(),
        pack: None,
        product: None,
        alert: None,
        intermarket: false,
        warnings,
    }
}

fn problem_view(p: &ProblemRow) -> Problem {
    Problem {
        id: p.op.seq,
        operation: p.op.new.command.clone(),
        client_trx_id: p.op.new.client_trx_id.clone(),
        scheme: p.op.new.scheme.clone(),
        product_code: p.op.new.product_code.clone(),
        serial: p.op.new.serial.clone(),
        batch: p.op.new.batch.clone(),
        expiry: p.op.new.expiry.clone(),
        recorded_at: p.op.new.recorded_at.to_rfc3339(),
        found_at: p.found_at.to_rfc3339(),
        outcome: p.outcome.as_str().to_owned(),
        return_code: p.return_code.clone(),
        message: p.message.clone(),
        alert: p.alert.as_ref().map(|(id, code)| AlertRef { id: id.clone(), code: code.clone() }),
        answer: p.op.answer.as_deref().and_then(|a| serde_json::from_str(a).ok()),
        acknowledged_at: p.acknowledged.as_ref().map(|(t, _)| t.to_rfc3339()),
        acknowledged_by: p.acknowledged.as_ref().and_then(|(_, by)| by.clone()),
    }
}
