//! A terminal: one client of its market's national system, on one keep-alive HTTPS connection,
//! taking its steps in order as a pharmacy's software would. It waits out a 503 or 429 as its
//! `Retry-After` says and sends the same request again (nothing was changed), opens its connection
//! again when the server closed it, and renews its token on a 401. A request whose answer is lost
//! is sent and answered, and its answer kept but marked unseen; an abandoned one is written on a
//! connection of its own, which is closed at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use openmvs_workload::tally::{self, Answer, Outcome};
use openmvs_workload::{Delivery, Request, Workload};
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::sync::Barrier;

use super::setup::{Client, token};
use crate::load::{Conn, Reply};

/// Times one request is sent again after a 503 or 429, or after its connection failed.
const MAX_TRIES: usize = 200;
/// The wait after a 503 or 429 without `Retry-After`.
const BUSY_WAIT: Duration = Duration::from_millis(100);

/// The phases of a workload.
pub(crate) const PHASES: u8 = 2;

/// One terminal's session.
struct Session {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    client: Client,
    conn: Option<Conn>,
    token: String,
}

impl Session {
    async fn open(
        addr: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
        client: Client,
    ) -> anyhow::Result<Session> {
        let mut conn = Conn::open(addr, "localhost", tls.clone()).await?;
        let token = token(&mut conn, &client).await?;
        Ok(Session { addr, tls, client, conn: Some(conn), token })
    }

    async fn send(&mut self, path: &str, body: &[u8]) -> anyhow::Result<Reply> {
        let mut last = None;
        for _ in 0..MAX_TRIES {
            let conn = match self.conn.as_mut() {
                Some(c) => c,
                None => match Conn::open(self.addr, "localhost", self.tls.clone()).await {
                    Ok(c) => self.conn.insert(c),
                    Err(e) => {
                        last = Some(e);
                        tokio::time::sleep(BUSY_WAIT).await;
                        continue;
                    }
                },
            };
            match conn.send("POST", path, Some(&self.token), body.to_vec()).await {
                Ok(r) if r.status == 503 || r.status == 429 => {
                    tokio::time::sleep(r.retry_after.unwrap_or(BUSY_WAIT).min(Duration::from_secs(5))).await;
                }
                Ok(r) if r.status == 401 => {
                    self.token = token(conn, &self.client).await?;
                }
                Ok(r) => return Ok(r),
                Err(e) => {
                    // The server closed the connection (an idle timeout, a restart): a new one.
                    self.conn = None;
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("still busy after {MAX_TRIES} tries")))
    }

    async fn request(&mut self, r: &Request) -> Outcome {
        let path = format!("/v1/packs/{}", r.operation.as_str());
        let body = tally::body(r);
        if r.delivery == Delivery::Abandoned {
            return match abandon(self.addr, self.tls.clone(), &path, &self.token, &body).await {
                Ok(()) => Outcome::Abandoned,
                Err(e) => Outcome::Failed(format!("abandoned {path}: {e:#}")),
            };
        }
        match self.send(&path, &body).await {
            Ok(reply) => outcome(&reply, r.delivery == Delivery::Answered),
            Err(e) => Outcome::Failed(format!("{path}: {e:#}")),
        }
    }
}

/// What an answer says: its body read as JSON (`null` when it is not), and read.
fn outcome(reply: &Reply, seen: bool) -> Outcome {
    let v: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    tally::outcome(reply.status, &v, seen)
}

/// Writes the request on a TLS connection of its own and closes it without waiting for anything.
async fn abandon(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    path: &str,
    token: &str,
    body: &[u8],
) -> anyhow::Result<()> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut stream =
        tokio_rustls::TlsConnector::from(tls).connect(ServerName::try_from("localhost")?, tcp).await?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost:{}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        addr.port(),
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    stream.shutdown().await.context("closing")?;
    Ok(())
}

/// Runs terminal `terminal`'s steps, phase by phase, meeting every other terminal at `barrier`
/// after each phase (whatever happened: a terminal that cannot log in answers every request of
/// its steps with the reason and still meets the others). `done` counts the requests made.
pub(crate) async fn run(
    w: Arc<Workload>,
    terminal: usize,
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    client: Client,
    barrier: Arc<Barrier>,
    done: Arc<AtomicU64>,
) -> Vec<Answer> {
    let mut answers = Vec::new();
    let mut session = Session::open(addr, tls, client).await.map_err(|e| format!("logging in: {e:#}"));
    for phase in 0..PHASES {
        for (i, step) in
            w.steps.iter().enumerate().filter(|(_, s)| s.terminal == terminal && s.phase == phase)
        {
            for (j, r) in step.requests.iter().enumerate() {
                let outcome = match &mut session {
                    Ok(s) => s.request(r).await,
                    Err(e) => Outcome::Failed(e.clone()),
                };
                answers.push(Answer { step: i, request: j, outcome });
                done.fetch_add(1, Ordering::Relaxed);
            }
        }
        barrier.wait().await;
    }
    answers
}

#[cfg(test)]
mod tests {
    use openmvs_workload::tally::AlertRef;
    use serde_json::json;

    use super::*;

    #[test]
    fn an_answer_is_read_from_its_bytes_and_one_not_json_as_an_empty_answer() {
        let reply = Reply {
            status: 200,
            body: bytes::Bytes::from(
                json!({"accepted": false, "return_code": "NMVS_FE_LOT_03", "alert": {"id": "ALR-1", "code": "A2"},
                       "warnings": [{"code": "LOWERCASE_FIELD", "message": "..."}], "intermarket": false,
                       "pack": null})
                .to_string(),
            ),
            retry_after: None,
        };
        let Outcome::Http { alert, warnings, accepted, seen, .. } = outcome(&reply, false) else { panic!() };
        assert_eq!(alert, Some(AlertRef { id: "ALR-1".into(), code: "A2".into() }));
        assert_eq!((warnings, accepted, seen), (vec!["LOWERCASE_FIELD".to_owned()], Some(false), false));
        let reply = Reply { status: 502, body: bytes::Bytes::from("Bad Gateway"), retry_after: None };
        assert_eq!(outcome(&reply, true), tally::outcome(502, &Value::Null, true));
    }
}
