//! Authority access to the audit trail, and the verification of the whole trail.

use std::collections::HashMap;

use openmvs_audit::{Checkpoint, Sealed, Verifier};
use openmvs_core::answer::AuditRecordView;
use openmvs_core::ids::Batch;
use openmvs_core::return_code::ReturnCode;
use openmvs_core::roles::{Access, Action, access};
use openmvs_core::time::Timestamp;
use openmvs_store::{AuditQuery, AuditStore, StoreError, UnitOfWork};
use openmvs_wire::hub::{Message, SignedHead};

use crate::{Actor, ApiError, National, Record};

impl National {
    /// `GET /v1/audit/packs/{scheme}/{product_code}/{serial}` (NCA and NMVO). The read itself is
    /// audited before the records are returned.
    pub async fn audit_of_pack(
        &self,
        actor: &Actor,
        scheme: &str,
        product_code: &str,
        serial: &str,
    ) -> Result<Vec<AuditRecordView>, ApiError> {
        // The scheme, product code and serial are checked as the pack routes check them: a path
        // such as `..%2FEXA00000001` names no pack and is refused, naming the field.
        let checked = crate::request::pack_key(scheme, product_code, serial);
        // Records are written under the product code as parsed (a 13-digit GTIN padded to 14
        // digits), so the trail is read under that form too, whichever spelling the path uses.
        let subject = match &checked {
            Ok((pc, serial)) => format!("{}/{pc}/{serial}", pc.scheme()),
            Err(_) => format!("{scheme}/{product_code}/{serial}"),
        };
        let request = serde_json::json!({"scheme": scheme, "product_code": product_code, "serial": serial});
        if access(actor.role, Action::ReadAudit, &self.config.policy) != Access::Market
            || actor.market != self.config.market
        {
            let e = ApiError::new(ReturnCode::Forbidden)
                .with("role", "only the NCA and the NMVO read the audit trail");
            return Err(self.refuse(actor, "audit-read", &subject, &request, e).await);
        }
        if let Err(e) = checked {
            return Err(self.refuse(actor, "audit-read", &subject, &request, e).await);
        }
        // The pack's trail holds what was done to it here and what the hub delivered about it:
        // state changes from other markets and the OBP, the upload of its batch, its batch's
        // recall, its product's master data and withdrawal.
        let mut subjects = vec![subject.clone()];
        if let Ok((pc, serial)) = &checked_key(scheme, product_code, serial)
            && let Some(p) = self.store.pack(pc, serial).await?
        {
            subjects.push(format!("{}/{pc}/#{}", pc.scheme(), p.pack.batch));
            subjects.push(format!("{}/{pc}/", pc.scheme()));
        }
        let q = AuditQuery { subjects, limit: MAX_PACK_TRAIL, ..AuditQuery::default() };
        let records: Vec<Sealed> = self.store.audit_search(&q).await?.into_iter().map(|(_, r)| r).collect();
        let now = self.clock.now();
        let entry = self.audit_entry(
            actor,
            now,
            Record {
                operation: "audit-read",
                subject: &subject,
                return_code: ReturnCode::Success.as_str(),
                request: request.to_string(),
                result: format!("{{\"records\":{}}}", records.len()),
            },
        );
        self.commit(UnitOfWork { audit: vec![entry], ..UnitOfWork::default() }).await?;
        Ok(records.iter().map(record_view).collect())
    }

    /// `GET /v1/audit/records` (NCA and NMVO): a page of the market's audit trail by pack,
    /// product, batch, client, premises, operation and time, in commit order, from after
    /// `cursor`. A search that names no pack walks the trail a window at a time and ends a page
    /// after [`AUDIT_WINDOWS_PER_PAGE`] windows with a cursor to go on from. The search is
    /// audited.
    pub async fn audit_search(
        &self,
        actor: &Actor,
        params: &HashMap<String, String>,
    ) -> Result<AuditSearchPage, ApiError> {
        let request = serde_json::to_value(params).unwrap_or_default();
        if let Err(e) = self.may_read_audit(actor) {
            return Err(self.refuse(actor, "audit-search", "audit", &request, e).await);
        }
        let search = match self.audit_query(params).await {
            Ok(s) => s,
            Err(e) => return Err(self.refuse(actor, "audit-search", "audit", &request, e).await),
        };
        let page = self.audit_page_of(&search).await?;
        let entry = self.audit_entry(
            actor,
            self.clock.now(),
            Record {
                operation: "audit-search",
                subject: "audit",
                return_code: ReturnCode::Success.as_str(),
                request: request.to_string(),
                result: format!("{{\"records\":{}}}", page.records.len()),
            },
        );
        self.commit(UnitOfWork { audit: vec![entry], ..UnitOfWork::default() }).await?;
        Ok(page)
    }

    /// Checks an export of a search (NCA and NMVO) and audits it; the caller then reads its pages
    /// with [`National::audit_page_of`].
    pub async fn audit_export(
        &self,
        actor: &Actor,
        params: &HashMap<String, String>,
    ) -> Result<AuditSearch, ApiError> {
        let request = serde_json::to_value(params).unwrap_or_default();
        if let Err(e) = self.may_read_audit(actor) {
            return Err(self.refuse(actor, "audit-export", "audit", &request, e).await);
        }
        let search = match self.audit_query(params).await {
            Ok(s) => s,
            Err(e) => return Err(self.refuse(actor, "audit-export", "audit", &request, e).await),
        };
        let entry = self.audit_entry(
            actor,
            self.clock.now(),
            Record {
                operation: "audit-export",
                subject: "audit",
                return_code: ReturnCode::Success.as_str(),
                request: request.to_string(),
                result: "{}".into(),
            },
        );
        self.commit(UnitOfWork { audit: vec![entry], ..UnitOfWork::default() }).await?;
        Ok(search)
    }

    /// Checks that `actor` may read the audit trail of this market (NCA and NMVO).
    pub fn may_read_audit(&self, actor: &Actor) -> Result<(), ApiError> {
        if access(actor.role, Action::ReadAudit, &self.config.policy) != Access::Market
            || actor.market != self.config.market
        {
            return Err(ApiError::new(ReturnCode::Forbidden)
                .with("role", "only the NCA and the NMVO read the audit trail"));
        }
        Ok(())
    }

    /// Reads a search's parameters: `scheme` (default `GTIN`), `product_code`, `serial` (with a
    /// product code), `batch`, `client_id`, `location`, `operation`, `from`, `to`, `limit`
    /// (1-1000, default 100) and `cursor`.
    pub async fn audit_query(&self, params: &HashMap<String, String>) -> Result<AuditSearch, ApiError> {
        const KNOWN: [&str; 11] = [
            "scheme",
            "product_code",
            "serial",
            "batch",
            "client_id",
            "location",
            "operation",
            "from",
            "to",
            "limit",
            "cursor",
        ];
        if let Some(k) = params.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(ApiError::field(
                k,
                format!("is not a query parameter of this route ({})", KNOWN.join(", ")),
            ));
        }
        let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let scheme = get("scheme").unwrap_or("GTIN");
        let mut q = AuditQuery::default();
        let batch = get("batch")
            .map(|b| Batch::new(b).map_err(|e| ApiError::field("batch", e.to_string())))
            .transpose()?;
        let mut by_batch = None;
        match (get("product_code"), get("serial")) {
            (None, Some(_)) => return Err(ApiError::field("serial", "needs product_code")),
            (Some(code), Some(serial)) => {
                let (pc, serial) = crate::request::pack_key(scheme, code, serial)?;
                q.subjects.push(format!("{}/{pc}/{serial}", pc.scheme()));
                if let Some(p) = self.store.pack(&pc, &serial).await? {
                    q.subjects.push(format!("{}/{pc}/#{}", pc.scheme(), p.pack.batch));
                    q.subjects.push(format!("{}/{pc}/", pc.scheme()));
                }
            }
            (Some(code), None) => {
                let pc = crate::request::product_code("", Some(scheme), Some(code))?;
                q.subject_prefix = Some(format!("{}/{pc}/", pc.scheme()));
                // A batch of a product is its packs' records and the batch's own.
                by_batch = batch.map(|b| (format!("{}/{pc}/#{b}", pc.scheme()), b.to_string()));
            }
            (None, None) => {
                if batch.is_some() {
                    return Err(ApiError::field("batch", "needs product_code"));
                }
            }
        }
        let text = |k: &str| -> Result<Option<String>, ApiError> {
            match get(k) {
                Some(v) if v.len() > 200 => Err(ApiError::field(k, "must be at most 200 characters")),
                v => Ok(v.map(str::to_owned)),
            }
        };
        q.actor = text("client_id")?;
        q.location = text("location")?;
        q.operation = text("operation")?;
        AuditSearch::new(q, params, by_batch)
    }

    /// One page of a search, in commit order.
    pub async fn audit_page_of(&self, s: &AuditSearch) -> Result<AuditSearchPage, ApiError> {
        let by_subject = !s.query.subjects.is_empty();
        let last = self.store.audit_last_pos().await?;
        let mut after = s.after;
        let mut window_end =
            if by_subject { None } else { Some(after.saturating_add(AUDIT_WINDOW).min(last)) };
        let (mut page, mut windows) = (Vec::<(u64, Sealed)>::new(), 0usize);
        loop {
            let q =
                AuditQuery { after_pos: after, until_pos: window_end, limit: AUDIT_BATCH, ..s.query.clone() };
            let batch = self.store.audit_search(&q).await?;
            let full = batch.len() == AUDIT_BATCH;
            for (pos, r) in batch {
                after = pos;
                if s.keeps(&r) {
                    if page.len() == s.limit {
                        let next = page.last().map(|(p, _)| p.to_string());
                        return Ok(AuditSearchPage::of(&page, next));
                    }
                    page.push((pos, r));
                }
            }
            if full {
                continue;
            }
            // This window is read to its end.
            match window_end {
                Some(end) if end < last => {
                    after = end;
                    windows += 1;
                    if windows >= AUDIT_WINDOWS_PER_PAGE {
                        return Ok(AuditSearchPage::of(&page, Some(after.to_string())));
                    }
                    window_end = Some(end.saturating_add(AUDIT_WINDOW).min(last));
                }
                _ => return Ok(AuditSearchPage::of(&page, None)),
            }
        }
    }
}

/// The most records of one pack's trail returned at once.
const MAX_PACK_TRAIL: usize = 100_000;
/// Records read at a time while a search page is filled.
const AUDIT_BATCH: usize = 1000;
/// Positions of the trail a search that names no pack reads at a time.
pub const AUDIT_WINDOW: u64 = 100_000;
/// Windows one search page reads at most before it ends with a cursor to go on from.
pub const AUDIT_WINDOWS_PER_PAGE: usize = 10;

fn checked_key(
    scheme: &str,
    code: &str,
    serial: &str,
) -> Result<(openmvs_core::ids::ProductCode, openmvs_core::ids::Serial), ApiError> {
    crate::request::pack_key(scheme, code, serial)
}

fn record_view(r: &Sealed) -> AuditRecordView {
    AuditRecordView {
        seq: r.seq,
        at: Timestamp::from_unix_millis(r.entry.at_millis),
        actor: r.entry.actor.clone(),
        role: r.entry.role.clone(),
        location: r.entry.location.clone(),
        operation: r.entry.operation.clone(),
        subject: r.entry.subject.clone(),
        return_code: r.entry.return_code.clone(),
        request: r.entry.request.clone(),
        result: r.entry.result.clone(),
    }
}

/// A search of the audit trail, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSearch {
    /// What the store is asked.
    pub query: AuditQuery,
    /// The batch a record must be about (its subject, or its request's `batch`), with its subject.
    pub batch: Option<(String, String)>,
    /// Positions after this one.
    pub after: u64,
    /// Records per page.
    pub limit: usize,
}

impl AuditSearch {
    fn new(
        mut query: AuditQuery,
        params: &HashMap<String, String>,
        batch: Option<(String, String)>,
    ) -> Result<AuditSearch, ApiError> {
        let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let instant = |name: &str, end: bool| -> Result<Option<i64>, ApiError> {
            get(name)
                .map(|v| openmvs_core::alert::query_instant(name, v, end).map(Timestamp::unix_millis))
                .transpose()
        };
        query.from_millis = instant("from", false)?;
        query.to_millis = instant("to", true)?;
        if let (Some(f), Some(t)) = (query.from_millis, query.to_millis)
            && f >= t
        {
            return Err(ApiError::field("to", "must be after from"));
        }
        let limit =
            match get("limit") {
                None => 100,
                Some(l) => l.parse::<usize>().ok().filter(|l| (1..=1000).contains(l)).ok_or_else(|| {
                    ApiError::field("limit", format!("'{l}' is not a number from 1 to 1000"))
                })?,
            };
        let after = get("cursor")
            .map(|c| {
                c.parse::<u64>()
                    .map_err(|_| ApiError::field("cursor", format!("'{c}' is not a cursor of this search")))
            })
            .transpose()?
            .unwrap_or(0);
        Ok(AuditSearch { query, batch, after, limit })
    }

    /// The same search from `after`, `limit` records a page (for an export).
    pub fn from(&self, after: u64, limit: usize) -> AuditSearch {
        AuditSearch { after, limit, ..self.clone() }
    }

    /// Whether a record the store found is kept: the batch criterion, which the store does not
    /// know, is checked here.
    fn keeps(&self, r: &Sealed) -> bool {
        match &self.batch {
            None => true,
            Some((subject, batch)) => {
                r.entry.subject == *subject
                    || serde_json::from_str::<serde_json::Value>(&r.entry.request).is_ok_and(|v| {
                        v.get("batch").and_then(serde_json::Value::as_str) == Some(batch.as_str())
                    })
            }
        }
    }
}

/// A page of a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSearchPage {
    /// The records, in commit order.
    pub records: Vec<AuditRecordView>,
    /// The cursor of the next page; `None` at the end of the trail.
    pub next_cursor: Option<String>,
}

impl AuditSearchPage {
    fn of(page: &[(u64, Sealed)], next_cursor: Option<String>) -> AuditSearchPage {
        AuditSearchPage { records: page.iter().map(|(_, r)| record_view(r)).collect(), next_cursor }
    }
}

impl National {
    /// Queues `cp`, a checkpoint this node signed and committed, for the hub, which keeps it in
    /// its own trail: a copy of the trail's latest head out of reach of whoever can write this
    /// database. Returns whether it was queued: not without a hub link, nor for another market.
    ///
    /// The message is committed after the checkpoint, not in its transaction: the engines sign
    /// inside their writers, which know nothing of the hub. Only the latest head matters, and
    /// each one covers every record before it, so a head lost to a crash between the two
    /// commits costs nothing the next one does not make good; the binary also sends the head
    /// file's heads again when it starts, which covers the checkpoints signed at a clean stop.
    pub async fn send_audit_head(&self, cp: &Checkpoint) -> Result<bool, StoreError> {
        if self.hub.is_none() || cp.market != self.config.market.as_str() {
            return Ok(false);
        }
        let body = Message::AuditHead(signed_head(cp));
        let msg = self.message(&format!("audit-head/{}", cp.market), body, self.clock.now());
        self.store.commit(UnitOfWork { outbox: vec![msg], ..UnitOfWork::default() }).await?;
        self.relay_wake.notify_one();
        Ok(true)
    }
}

/// A checkpoint as it travels to the hub and is kept outside the database.
pub fn signed_head(cp: &Checkpoint) -> SignedHead {
    SignedHead {
        market: cp.market.clone(),
        seq: cp.seq,
        hash: hex(&cp.hash),
        at_millis: cp.at_millis,
        key_id: cp.key_id.clone(),
        signature: hex(&cp.signature),
    }
}

/// The checkpoint a signed head carries, once its fields have the right shape. Its signature is
/// checked by the verifier, with the trail's public keys.
pub fn checkpoint_of(h: &SignedHead) -> Result<Checkpoint, String> {
    h.check_shape()?;
    Ok(Checkpoint {
        market: h.market.clone(),
        seq: h.seq,
        hash: unhex(&h.hash).ok_or("hash: exactly 64 lower-case hex digits")?,
        at_millis: h.at_millis,
        key_id: h.key_id.clone(),
        signature: unhex(&h.signature).ok_or("signature: exactly 128 lower-case hex digits")?,
    })
}

/// Reads signed heads as JSON lines (blank lines skipped): a head file, or what `openmvs audit
/// heads` printed. The error names the line and what is wrong with it.
pub fn parse_heads(text: &str) -> Result<Vec<Checkpoint>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let head: SignedHead = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        out.push(checkpoint_of(&head).map_err(|e| format!("line {}: {e}", i + 1))?);
    }
    Ok(out)
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Exactly `N` bytes from lower-case hex.
fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A signed head kept outside the database, and where it was found (for the finding's message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutsideHead {
    /// Where it was kept: a file name, or the hub.
    pub origin: String,
    /// The head.
    pub checkpoint: Checkpoint,
}

/// What a verification of the whole trail found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records per market.
    pub records: HashMap<String, u64>,
    /// Checkpoints verified.
    pub checkpoints: u64,
    /// Signed heads kept outside the database that were checked against the trail.
    pub outside_heads: u64,
    /// Records after the last checkpoint of their market, per market: not yet signed.
    pub unsigned_tail: HashMap<String, u64>,
}

/// Verifies every record and checkpoint of the trail, page by page, with the given public keys.
/// The error names the first bad record.
pub async fn verify_audit(
    store: &dyn AuditStore,
    keys: impl IntoIterator<Item = ed25519_dalek::VerifyingKey>,
) -> Result<VerifyReport, String> {
    verify_audit_with_heads(store, keys, &[]).await
}

/// Verifies the trail as [`verify_audit`] does, and against signed heads kept outside the
/// database: each must be signed with one of `keys` and match the record it signs. A head whose
/// record is missing means the trail was cut short, even if the checkpoints in the database
/// were removed with the records.
pub async fn verify_audit_with_heads(
    store: &dyn AuditStore,
    keys: impl IntoIterator<Item = ed25519_dalek::VerifyingKey>,
    heads: &[OutsideHead],
) -> Result<VerifyReport, String> {
    let mut v = Verifier::new(keys);
    let cps = store.checkpoints().await.map_err(|e: StoreError| e.to_string())?;
    let checkpoints = cps.len() as u64;
    // Checkpoints go first: each waits for the record it signs.
    for cp in &cps {
        v.checkpoint(cp).map_err(|e| e.to_string())?;
    }
    for h in heads {
        v.outside_head(&h.checkpoint, &h.origin).map_err(|e| e.to_string())?;
    }
    let mut after = 0;
    loop {
        let page = store.audit_page(after, 10_000).await.map_err(|e| e.to_string())?;
        let Some((last, _)) = page.last() else { break };
        after = *last;
        for (_, r) in &page {
            v.record(r).map_err(|e| e.to_string())?;
        }
    }
    let summary = v.finish().map_err(|e| e.to_string())?;
    let mut records = HashMap::new();
    let mut unsigned_tail = HashMap::new();
    for m in summary.markets {
        // Nothing in OpenMVS removes audit records, so every chain must start at its first record.
        if m.records > 0 && m.first_seq != 1 {
            return Err(format!(
                "record {} #{}: the chain starts here; records #1 to #{} are missing",
                m.market,
                m.first_seq,
                m.first_seq - 1
            ));
        }
        records.insert(m.market.clone(), m.records);
        unsigned_tail.insert(m.market, m.unsigned_tail);
    }
    Ok(VerifyReport { records, checkpoints, outside_heads: heads.len() as u64, unsigned_tail })
}
