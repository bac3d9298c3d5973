//! Authority access to the audit trail, and the verification of the whole trail.

use std::collections::HashMap;

use openmvs_audit::{Checkpoint, Verifier};
use openmvs_core::answer::AuditRecordView;
use openmvs_core::return_code::ReturnCode;
use openmvs_core::roles::{Access, Action, access};
use openmvs_core::time::Timestamp;
use openmvs_store::{AuditStore, StoreError, UnitOfWork};
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
        let records = self.store.audit_by_subject(&subject).await?;
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
        Ok(records
            .iter()
            .map(|r| AuditRecordView {
                seq: r.seq,
                at: Timestamp::from_unix_millis(r.entry.at_millis),
                actor: r.entry.actor.clone(),
                role: r.entry.role.clone(),
                location: r.entry.location.clone(),
                operation: r.entry.operation.clone(),
                return_code: r.entry.return_code.clone(),
                request: r.entry.request.clone(),
                result: r.entry.result.clone(),
            })
            .collect())
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
