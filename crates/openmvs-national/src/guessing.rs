//! Storms contained, guessing detected: every single-pack request and bulk row of an end user is
//! counted under its client and under its premises (location), in the market where it is made (a
//! request another market routes here was counted there), and the core's rule
//! (`openmvs_core::guessing`) says whether the next one is answered, slowed (429
//! `NMVS_FI_SE_CLI_01` with `Retry-After`) or refused (429 `NMVS_FI_SE_CLI_02` with
//! `Retry-After`). The request that crosses the threshold is answered as usual; with it the NMVO
//! gets one alert with the code `SERIAL_GUESSING` per client (or premises) and window. That alert
//! stays in this market: no outbox message, so no hub message and no OBP callback. A request that
//! is slowed or refused is not processed, so it raises no alert of its own; the refusal is
//! audited like any other the service decides, and the alert with its window is audited when it
//! is raised.
//!
//! The counts live behind [`GuessingCounter`]. [`LocalGuessing`] keeps them in this node's
//! memory: with several nodes each counts what it answers, so a client spread over `n` nodes is
//! contained after up to `n` times the threshold. A counter shared through the store can replace
//! it ([`crate::National::with_guessing_counter`]) without changing the rule or the service.

use std::collections::HashMap;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use openmvs_audit::Entry;
use openmvs_core::alert::{AlertComment, AlertStatus, AlertThread, MAX_COMMENT_CHARS};
use openmvs_core::guessing::{GuessingPolicy, Tally, Verdict, Window};
use openmvs_core::ids::{ClientId, Location, Serial};
use openmvs_core::return_code::{AlertCode, ReturnCode};
use openmvs_core::time::Timestamp;
use openmvs_store::{AlertRecord, BoxFuture};
use openmvs_wire::kept;

use crate::{Actor, ApiError, National, Record, new_id, random_u64};

/// Whose requests are counted together.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TallyKey {
    /// One client (a terminal's credentials).
    Client(ClientId),
    /// One premises: every client at that location.
    Location(Location),
}

impl fmt::Display for TallyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TallyKey::Client(c) => write!(f, "client {c}"),
            TallyKey::Location(l) => write!(f, "location {l}"),
        }
    }
}

/// The keys a request of `actor` is counted under: its client, then its premises.
pub fn keys(actor: &Actor) -> [TallyKey; 2] {
    [TallyKey::Client(actor.client_id.clone()), TallyKey::Location(actor.location.clone())]
}

/// A request answered with an unknown serial or a mismatch: what the alert names of the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offence {
    /// The product code as requested.
    pub product_code: String,
    /// The serial.
    pub serial: Serial,
    /// The batch as requested.
    pub batch: String,
    /// The answer.
    pub code: ReturnCode,
}

/// The alert an episode still owes the NMVO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueAlert {
    /// Whose counts crossed the threshold.
    pub key: TallyKey,
    /// The window that crossed it.
    pub crossed: Window,
    /// The last request counted as a failure under the key.
    pub last: Offence,
}

/// Whether a request goes ahead, and the alerts still due for its keys (one whose commit failed
/// is raised again with the next request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The stricter verdict of the keys.
    pub verdict: Verdict,
    /// Alerts due.
    pub due: Vec<DueAlert>,
}

/// Where the counts of clients and premises are kept.
pub trait GuessingCounter: Send + Sync {
    /// Whether a request counted under `keys` is answered at `now` (an answer while slowed is
    /// booked, so the next waits a whole interval).
    fn admit(&self, keys: &[TallyKey], now: Timestamp) -> BoxFuture<'_, Admission>;
    /// Counts a request answered at `now` under each key, with its offence when it was an unknown
    /// serial or a mismatch; answers the alerts now due.
    fn record(
        &self,
        keys: &[TallyKey],
        now: Timestamp,
        offence: Option<Offence>,
    ) -> BoxFuture<'_, Vec<DueAlert>>;
    /// The alerts of these episodes were committed.
    fn alerted(&self, done: &[(TallyKey, Window)]) -> BoxFuture<'_, ()>;
}

/// The most keys a node remembers; beyond it, tallies with nothing in their window are dropped
/// (a client or premises per terminal and pharmacy of a large market fits many times over).
const MAX_KEYS: usize = 200_000;
const SHARDS: usize = 16;

/// A key's counts and the last failure counted under it.
#[derive(Debug, Default)]
struct Kept {
    tally: Tally,
    last: Option<Offence>,
}

/// The counts of this node, in memory.
pub struct LocalGuessing {
    policy: GuessingPolicy,
    shards: Vec<Mutex<HashMap<TallyKey, Kept>>>,
}

impl LocalGuessing {
    /// An empty counter applying `policy`.
    pub fn new(policy: GuessingPolicy) -> LocalGuessing {
        LocalGuessing { policy, shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect() }
    }

    /// Runs `f` on the kept counts of `key`, made empty if there are none.
    fn with<R>(&self, key: &TallyKey, now: Timestamp, f: impl FnOnce(&mut Kept, &GuessingPolicy) -> R) -> R {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let mut map = self.shards[(h.finish() as usize) % SHARDS].lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_KEYS / SHARDS && !map.contains_key(key) {
            map.retain(|_, k| !k.tally.is_idle(&self.policy, now));
        }
        f(map.entry(key.clone()).or_default(), &self.policy)
    }

    fn due(key: &TallyKey, kept: &Kept) -> Option<DueAlert> {
        let crossed = kept.tally.alert_due()?;
        let last = kept.last.clone()?;
        Some(DueAlert { key: key.clone(), crossed, last })
    }
}

impl GuessingCounter for LocalGuessing {
    fn admit(&self, keys: &[TallyKey], now: Timestamp) -> BoxFuture<'_, Admission> {
        let mut admission = Admission { verdict: Verdict::Admit, due: Vec::new() };
        for key in keys {
            let (verdict, due) = self.with(key, now, |k, p| (k.tally.admit(p, now), Self::due(key, k)));
            admission.verdict = admission.verdict.stricter(verdict);
            admission.due.extend(due);
        }
        Box::pin(std::future::ready(admission))
    }

    fn record(
        &self,
        keys: &[TallyKey],
        now: Timestamp,
        offence: Option<Offence>,
    ) -> BoxFuture<'_, Vec<DueAlert>> {
        let mut due = Vec::new();
        for key in keys {
            let d = self.with(key, now, |k, p| {
                k.tally.record(p, now, offence.is_some());
                if let Some(o) = &offence {
                    k.last = Some(o.clone());
                }
                Self::due(key, k)
            });
            due.extend(d);
        }
        Box::pin(std::future::ready(due))
    }

    fn alerted(&self, done: &[(TallyKey, Window)]) -> BoxFuture<'_, ()> {
        for (key, crossed) in done {
            self.with(key, crossed.to, |k, _| k.tally.alerted(crossed));
        }
        Box::pin(std::future::ready(()))
    }
}

/// The refusal of a request the verdict does not admit: 429 with the wait in `Retry-After`.
pub(crate) fn refusal(verdict: Verdict, policy: &GuessingPolicy) -> Option<ApiError> {
    match verdict {
        Verdict::Admit => None,
        Verdict::Slow { retry_after } => {
            let mut e = ApiError::new(ReturnCode::RateLimited).with(
                "client_id",
                format!(
                    "slowed to one request every {} s: too many unknown serial numbers or mismatches \
                     from this client or its premises in {} s",
                    policy.slow_interval.as_secs(),
                    policy.window.as_secs()
                ),
            );
            e.message = format!(
                "Too many unknown serial numbers or mismatches from this client: retry in {} s.",
                ceil_secs(retry_after)
            );
            Some(e.with_retry_after(retry_after))
        }
        Verdict::Refuse { retry_after } => Some(
            ApiError::new(ReturnCode::ClientSuspended)
                .with(
                    "client_id",
                    format!(
                        "refused for {} s: {} more unknown serial numbers or mismatches while slowed",
                        policy.refusal.as_secs(),
                        policy.refuse_after
                    ),
                )
                .with_retry_after(retry_after),
        ),
    }
}

fn ceil_secs(d: std::time::Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// The SERIAL_GUESSING alert for what is due, the audit record of it, and the episodes it
/// settles: one alert for the request, under its client if the client's episode is due, else
/// its premises'.
pub(crate) struct GuessingAlert {
    pub alert: AlertRecord,
    pub entry: Entry,
    pub settles: Vec<(TallyKey, Window)>,
}

impl National {
    /// Builds the alert for `due` (see [`GuessingAlert`]); `None` when nothing is due.
    pub(crate) fn guessing_alert(
        &self,
        actor: &Actor,
        due: &[DueAlert],
        now: Timestamp,
    ) -> Option<GuessingAlert> {
        let first = due.iter().find(|d| matches!(d.key, TallyKey::Client(_))).or(due.first())?;
        let p = &self.config.guessing;
        let w = &first.crossed;
        let whose = match &first.key {
            TallyKey::Client(c) => format!("Client {c} at location {}", actor.location),
            TallyKey::Location(l) => format!("Premises {l} (last request by client {})", actor.client_id),
        };
        let comment = format!(
            "{whose}: {} of {} requests between {} and {} were unknown serial numbers or mismatches \
             (A2, A3, A52, A68), over the limit of {} in {} s at {} % or more, or {}. From then on one \
             request every {} s is answered; after {} more failures all are refused for {} s.",
            w.failures,
            w.requests,
            w.from.to_rfc3339(),
            w.to.to_rfc3339(),
            p.min_failures,
            p.window.as_secs(),
            p.min_share_percent,
            p.max_failures,
            p.slow_interval.as_secs(),
            p.refuse_after,
            p.refusal.as_secs(),
        );
        let key = match &first.key {
            TallyKey::Client(c) => format!("client:{c}"),
            TallyKey::Location(l) => format!("location:{l}"),
        };
        // The window is the alert's first comment, by the national system itself: it stays in
        // the thread whatever the NMVO writes after it.
        let comment: String = comment.chars().take(MAX_COMMENT_CHARS).collect();
        let mut thread = AlertThread::default();
        thread.add_comment(AlertComment {
            id: thread.next_id("ACM", random_u64()),
            author: format!("national:{}", self.config.market),
            role: "SYSTEM".to_owned(),
            at: now,
            text: comment.clone(),
        });
        let alert = AlertRecord {
            id: new_id("ALR", now).into(),
            code: AlertCode::SerialGuessing,
            return_code: first.last.code,
            market: self.config.market,
            pack_market: self.config.market,
            product_code: first.last.product_code.clone(),
            serial: first.last.serial.clone(),
            batch: first.last.batch.clone(),
            location: actor.location.clone(),
            client_id: actor.client_id.clone(),
            created_at: now,
            status: AlertStatus::Open,
            classification: None,
            comment: Some(comment),
            source_key: format!("SERIAL_GUESSING/{key}/{}/{}", w.from.unix_millis(), w.to.unix_millis()),
            thread,
            version: 0,
        };
        let request = serde_json::json!({
            "key": key,
            "window": {"from": w.from.to_rfc3339(), "to": w.to.to_rfc3339(),
                       "requests": w.requests, "failures": w.failures},
            "last": {"product_code": first.last.product_code, "serial": first.last.serial.as_str(),
                     "batch": first.last.batch, "return_code": first.last.code.as_str()},
        });
        let subject = format!("alert/{}", alert.id);
        let entry = self.audit_entry(
            actor,
            now,
            Record {
                operation: "serial-guessing",
                subject: &subject,
                // From this request on the client is slowed.
                return_code: ReturnCode::RateLimited.as_str(),
                request: request.to_string(),
                result: kept::alert(&crate::alerts::view(&alert)),
            },
        );
        tracing::warn!(
            client = %actor.client_id, location = %actor.location, alert = %alert.id,
            failures = w.failures, requests = w.requests, "serial guessing: the client is slowed"
        );
        let settles = due.iter().map(|d| (d.key.clone(), d.crossed)).collect();
        Some(GuessingAlert { alert, entry, settles })
    }

    /// Raises the alert for `due` in a unit of its own. A failed commit is logged; the alert stays
    /// due and comes with the key's next request.
    pub(crate) async fn raise_guessing_alert(&self, actor: &Actor, due: &[DueAlert], now: Timestamp) {
        let Some(g) = self.guessing_alert(actor, due, now) else { return };
        let uow =
            openmvs_store::UnitOfWork { alerts: vec![g.alert], audit: vec![g.entry], ..Default::default() };
        match self.commit(uow).await {
            Ok(_) => self.guessing.alerted(&g.settles).await,
            Err(e) => tracing::warn!(
                client = %actor.client_id, error = %e,
                "the serial guessing alert could not be stored; it comes with the next request"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn offence(serial: &str) -> Offence {
        Offence {
            product_code: "09501101530003".into(),
            serial: Serial::new(serial).unwrap(),
            batch: "ABC123".into(),
            code: ReturnCode::SerialUnknown,
        }
    }

    #[tokio::test]
    async fn a_premises_is_counted_across_its_clients_and_another_is_not() {
        let policy = GuessingPolicy { min_failures: 3, ..GuessingPolicy::default() };
        let g = LocalGuessing::new(policy);
        let at = Timestamp::from_unix_millis(1_800_000_000_000);
        let here = Location::new("pharmacy-a").unwrap();
        let key = |c: &str, l: &Location| [TallyKey::Client(c.into()), TallyKey::Location(l.clone())];
        for (i, c) in ["c1", "c2", "c3"].iter().enumerate() {
            assert_eq!(g.admit(&key(c, &here), at).await.verdict, Verdict::Admit);
            let due = g.record(&key(c, &here), at, Some(offence(&format!("S{i}")))).await;
            assert_eq!(due.len(), usize::from(i == 2), "the premises crosses at the third");
        }
        let due = g.admit(&key("c4", &here), at).await;
        assert_eq!(due.verdict, Verdict::Slow { retry_after: Duration::from_secs(10) });
        assert_eq!(due.due[0].key, TallyKey::Location(here.clone()));
        assert_eq!(due.due[0].last.serial.as_str(), "S2");
        g.alerted(&[(due.due[0].key.clone(), due.due[0].crossed)]).await;
        assert!(g.admit(&key("c4", &here), at).await.due.is_empty(), "alerted once");
        let elsewhere = Location::new("pharmacy-b").unwrap();
        assert_eq!(g.admit(&key("c5", &elsewhere), at).await.verdict, Verdict::Admit);
    }

    #[test]
    fn a_refusal_is_a_429_with_its_code_and_the_wait() {
        let p = GuessingPolicy::default();
        assert!(refusal(Verdict::Admit, &p).is_none());
        let slow = refusal(Verdict::Slow { retry_after: Duration::from_millis(2500) }, &p).unwrap();
        assert_eq!(
            (slow.code, slow.http_status(), slow.retry_after),
            (ReturnCode::RateLimited, 429, Some(3))
        );
        assert!(slow.message.contains("retry in 3 s"), "{}", slow.message);
        let refused = refusal(Verdict::Refuse { retry_after: Duration::from_secs(3599) }, &p).unwrap();
        assert_eq!((refused.code.as_str(), refused.retry_after), ("NMVS_FI_SE_CLI_02", Some(3599)));
        assert_eq!(refused.details[0].field, "client_id");
    }
}
