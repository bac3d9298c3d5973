//! The load generator: closed loop to find how much a server can take, open loop to measure it at
//! a chosen rate.
//!
//! Open loop means a constant arrival rate, whatever the server does: request `i` is due at
//! `start + i / rate`, connections take the next due request as soon as they are free, and its
//! latency is counted from when it was due. A server that stalls therefore shows the whole stall
//! in the latencies of the requests that waited, instead of the generator politely slowing down
//! (coordinated omission). Only the generator's own timer error is left out: a connection that was
//! idle and slept until a request was due counts from when it woke.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::load::{Conn, Reply};

/// Where the load goes.
#[derive(Clone)]
pub struct Target {
    /// The server.
    pub addr: std::net::SocketAddr,
    /// The TLS name it answers to.
    pub host: String,
    /// The client TLS configuration.
    pub tls: Arc<rustls::ClientConfig>,
}

/// One request.
pub struct Request {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The path.
    pub path: String,
    /// A bearer token.
    pub token: Option<Arc<str>>,
    /// A JSON body (empty for none).
    pub body: Vec<u8>,
}

/// Makes the request maker of connection `c`, which makes its requests in turn (given the
/// global request number), keeping whatever state the scenario needs per connection.
pub type Plan = Arc<dyn Fn(usize) -> Box<dyn FnMut(u64) -> Request + Send> + Send + Sync>;

/// What a run measured. Latencies are in microseconds.
pub struct Outcome {
    /// Requests answered 2xx.
    pub ok: u64,
    /// Requests refused with 503 (shed) or 429.
    pub shed: u64,
    /// Other statuses and failed connections.
    pub errors: u64,
    /// Wall time of the run.
    pub seconds: f64,
    /// Latency of the 2xx answers.
    pub latency: Histogram<u64>,
    /// Latency of the refusals.
    pub shed_latency: Histogram<u64>,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).unwrap_or_else(|_| unreachable!("valid bounds"))
}

impl Outcome {
    fn empty() -> Outcome {
        Outcome {
            ok: 0,
            shed: 0,
            errors: 0,
            seconds: 0.0,
            latency: histogram(),
            shed_latency: histogram(),
            first_error: None,
        }
    }

    fn merge(&mut self, o: Outcome) {
        self.ok += o.ok;
        self.shed += o.shed;
        self.errors += o.errors;
        let _ = self.latency.add(&o.latency);
        let _ = self.shed_latency.add(&o.shed_latency);
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }

    fn record(&mut self, reply: &anyhow::Result<Reply>, micros: u64) {
        match reply {
            Ok(r) if (200..300).contains(&r.status) => {
                self.ok += 1;
                let _ = self.latency.record(micros.max(1));
            }
            Ok(r) if r.status == 503 || r.status == 429 => {
                self.shed += 1;
                let _ = self.shed_latency.record(micros.max(1));
            }
            Ok(r) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error =
                        Some(format!("HTTP {}: {}", r.status, String::from_utf8_lossy(&r.body)));
                }
            }
            Err(e) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(e.to_string());
                }
            }
        }
    }

    /// 2xx answers per second.
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 { self.ok as f64 / self.seconds } else { 0.0 }
    }

    /// A latency quantile of the 2xx answers, in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    /// A latency quantile of the refusals, in milliseconds.
    pub fn shed_ms(&self, q: f64) -> f64 {
        self.shed_latency.value_at_quantile(q) as f64 / 1000.0
    }

    /// The share of 2xx answers under `ms` milliseconds, of every request sent.
    pub fn share_under(&self, ms: u64) -> f64 {
        let all = self.ok + self.shed + self.errors;
        if all == 0 {
            return 0.0;
        }
        self.latency.count_between(0, ms * 1000) as f64 / all as f64
    }
}

async fn connect(target: &Target) -> anyhow::Result<Conn> {
    Conn::open(target.addr, &target.host, target.tls.clone()).await
}

async fn send(conn: &mut Conn, r: &Request) -> anyhow::Result<Reply> {
    conn.send(r.method, &r.path, r.token.as_deref(), r.body.clone()).await
}

/// Closed loop: `connections` connections send back to back for `duration`.
pub async fn closed_loop(
    rt: &tokio::runtime::Handle,
    target: &Target,
    plan: &Plan,
    connections: usize,
    duration: Duration,
) -> Outcome {
    run(rt, target, plan, connections, Pace::Closed { duration: Some(duration), count: u64::MAX }).await
}

/// Closed loop for exactly `count` requests (numbered `0..count`), as fast as they are answered.
pub async fn burst(
    rt: &tokio::runtime::Handle,
    target: &Target,
    plan: &Plan,
    connections: usize,
    count: u64,
) -> Outcome {
    run(rt, target, plan, connections, Pace::Closed { duration: None, count }).await
}

/// Open loop: requests due at `rate` per second for `duration`, sent over up to `connections`
/// connections, latency counted from when each was due.
pub async fn open_loop(
    rt: &tokio::runtime::Handle,
    target: &Target,
    plan: &Plan,
    rate: f64,
    connections: usize,
    duration: Duration,
) -> Outcome {
    let total = (rate * duration.as_secs_f64()).ceil() as u64;
    run(rt, target, plan, connections, Pace::Open { rate, total }).await
}

/// When requests go out.
#[derive(Clone, Copy)]
enum Pace {
    /// Back to back, until `duration` is over or `count` were sent.
    Closed { duration: Option<Duration>, count: u64 },
    /// Request `i` due at `start + i / rate`, `total` of them.
    Open { rate: f64, total: u64 },
}

async fn run(
    rt: &tokio::runtime::Handle,
    target: &Target,
    plan: &Plan,
    connections: usize,
    pace: Pace,
) -> Outcome {
    let next = Arc::new(AtomicU64::new(0));
    let gate = Gate::new(connections);
    let mut tasks = Vec::new();
    for c in 0..connections.max(1) {
        let (target, plan, next, gate) = (target.clone(), plan.clone(), next.clone(), gate.clone());
        tasks.push(rt.spawn(async move {
            let mut out = Outcome::empty();
            let conn = connect(&target).await;
            let start = gate.pass().await;
            let mut conn = match conn {
                Ok(c) => c,
                Err(e) => {
                    out.record(&Err(e), 0);
                    return out;
                }
            };
            let mut make = plan(c);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let from = match pace {
                    Pace::Closed { duration, count } => {
                        if i >= count || duration.is_some_and(|d| start.elapsed() >= d) {
                            break;
                        }
                        Instant::now()
                    }
                    Pace::Open { rate, total } => {
                        if i >= total {
                            break;
                        }
                        let due = start + Duration::from_secs_f64(i as f64 / rate);
                        // Idle until it is due: count from waking (the timer's error is the
                        // generator's, not the server's). Already late: count from when it was
                        // due (queueing).
                        if due > Instant::now() {
                            tokio::time::sleep_until(due.into()).await;
                            Instant::now()
                        } else {
                            due
                        }
                    }
                };
                let r = make(i);
                let reply = send(&mut conn, &r).await;
                let failed = reply.is_err();
                out.record(&reply, from.elapsed().as_micros() as u64);
                if failed {
                    match connect(&target).await {
                        Ok(c) => conn = c,
                        Err(_) => break,
                    }
                }
            }
            out
        }));
    }
    let start = gate.open().await;
    collect(tasks, start).await
}

/// Holds every connection until all are open, so handshakes are not measured, then gives them
/// one start instant.
#[derive(Clone)]
struct Gate {
    barrier: Arc<tokio::sync::Barrier>,
    start: tokio::sync::watch::Receiver<Option<Instant>>,
    set: Arc<tokio::sync::watch::Sender<Option<Instant>>>,
}

impl Gate {
    fn new(connections: usize) -> Gate {
        let (set, start) = tokio::sync::watch::channel(None);
        Gate {
            barrier: Arc::new(tokio::sync::Barrier::new(connections.max(1) + 1)),
            start,
            set: Arc::new(set),
        }
    }

    /// A connection is ready; waits for the start.
    async fn pass(&self) -> Instant {
        self.barrier.wait().await;
        let mut rx = self.start.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(v) => v.unwrap_or_else(Instant::now),
            Err(_) => Instant::now(),
        }
    }

    /// Waits for every connection, then starts the run.
    async fn open(&self) -> Instant {
        self.barrier.wait().await;
        let start = Instant::now() + Duration::from_millis(5);
        let _ = self.set.send(Some(start));
        start
    }
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<Outcome>>, start: Instant) -> Outcome {
    let mut all = Outcome::empty();
    for t in tasks {
        if let Ok(o) = t.await {
            all.merge(o);
        }
    }
    all.seconds = start.elapsed().as_secs_f64().max(1e-9);
    all
}
