//! Authority access to the audit trail, and the verification of the whole trail.

use std::collections::HashMap;

use openmvs_audit::Verifier;
use openmvs_core::ids::{ProductCode, Scheme};
use openmvs_core::return_code::ReturnCode;
use openmvs_core::roles::{Access, Action, access};
use openmvs_core::time::Timestamp;
use openmvs_store::{AuditStore, StoreError, UnitOfWork};
use openmvs_wire::api::{AuditRecordView, AuditRecords};

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
    ) -> Result<AuditRecords, ApiError> {
        let checked =
            Scheme::parse(scheme).map_err(|e| ApiError::field("scheme", e.to_string())).and_then(|s| {
                ProductCode::new(s, product_code).map_err(|e| ApiError::field("product_code", e.to_string()))
            });
        // Records are written under the product code as parsed (a 13-digit GTIN padded to 14
        // digits), so the trail is read under that form too, whichever spelling the path uses.
        let subject = match &checked {
            Ok(pc) => format!("{}/{pc}/{serial}", pc.scheme()),
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
        let records = self.store.audit_by_subject(&subject)?;
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
        let parse = |s: &str| serde_json::from_str(s).unwrap_or(serde_json::Value::String(s.to_owned()));
        Ok(AuditRecords {
            records: records
                .iter()
                .map(|r| AuditRecordView {
                    seq: r.seq,
                    at: Timestamp::from_unix_millis(r.entry.at_millis).to_rfc3339(),
                    actor: r.entry.actor.clone(),
                    role: r.entry.role.clone(),
                    location: r.entry.location.clone(),
                    operation: r.entry.operation.clone(),
                    return_code: r.entry.return_code.clone(),
                    request: parse(&r.entry.request),
                    result: parse(&r.entry.result),
                })
                .collect(),
        })
    }
}

/// What a verification of the whole trail found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records per market.
    pub records: HashMap<String, u64>,
    /// Checkpoints verified.
    pub checkpoints: u64,
    /// Records after the last checkpoint of their market, per market: not yet signed.
    pub unsigned_tail: HashMap<String, u64>,
}

/// Verifies every record and checkpoint of the trail, page by page, with the given public keys.
/// The error names the first bad record.
pub fn verify_audit(
    store: &dyn AuditStore,
    keys: impl IntoIterator<Item = ed25519_dalek::VerifyingKey>,
) -> Result<VerifyReport, String> {
    let mut v = Verifier::new(keys);
    let cps = store.checkpoints().map_err(|e: StoreError| e.to_string())?;
    let checkpoints = cps.len() as u64;
    // Checkpoints go first: each waits for the record it signs.
    for cp in &cps {
        v.checkpoint(cp).map_err(|e| e.to_string())?;
    }
    let mut after = 0;
    loop {
        let page = store.audit_page(after, 10_000).map_err(|e| e.to_string())?;
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
    Ok(VerifyReport { records, checkpoints, unsigned_tail })
}
