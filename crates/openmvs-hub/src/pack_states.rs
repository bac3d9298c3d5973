//! OBP pack state changes (api.md §3 `POST .../packs/state`): an OBP reports its own packs
//! stolen, destroyed, given as free samples or checked out for repackaging, or undoes its own
//! check-out (`"undo": true`, fmd-rules §3), and the hub carries each change to every target
//! market of the batch that has not recalled it. The hub keeps no pack states: each market
//! reverts a check-out only where this OBP made it.

use std::collections::{BTreeSet, HashSet};

use openmvs_core::ids::{Batch, MarketCode, Serial};
use openmvs_core::obp_states::{
    PackStateResult, PackStatesAnswer, check_request, check_undo_request, decide_serials, screen_serials,
};
use openmvs_core::pack::{Command, PackState};
use openmvs_core::return_code::ReturnCode;
use openmvs_store::hub::{HubUnitOfWork, SerialDigest};
use openmvs_wire::hub::{Message, PackStateMsg};
use serde_json::json;

use crate::{ApiError, Hub, MAX_ECHO_CHARS, Record, message_to, new_id, serial_digest, subject};

pub use openmvs_core::obp_states::MAX_PACK_STATE_SERIALS;

fn refused(serial: &str, code: ReturnCode, reason: String) -> PackStateResult {
    PackStateResult {
        serial: serial.chars().take(MAX_ECHO_CHARS).collect(),
        accepted: false,
        return_code: code,
        reason: Some(reason),
    }
}

impl Hub {
    /// `POST /v1/products/{product_code}/batches/{batch}/packs/state`: queues the OBP's change of
    /// each serial to `state` (STOLEN, DESTROYED, FREE_SAMPLE or CHECKED_OUT) for every target
    /// market of the batch, except markets that recalled it. A serial never uploaded for the
    /// product, malformed or repeated is refused on its own; the rest are answered only once the
    /// messages are durable. The audit record counts serials and never lists them: the hub keeps
    /// no serials (DR Art 33(1)).
    pub async fn set_pack_states(
        &self,
        obp: &str,
        product_code: &str,
        batch: &str,
        state: &str,
        serials: &[String],
    ) -> Result<PackStatesAnswer, ApiError> {
        self.change_pack_states(obp, product_code, batch, state, serials, false).await
    }

    /// `POST .../packs/state` with `"undo": true`: queues the OBP's undo of `state` (only
    /// CHECKED_OUT) for every target market of the batch that has not recalled it; each market
    /// returns the pack to ACTIVE if this OBP checked it out there and leaves it otherwise. The
    /// serials are refused one by one as for [`Hub::set_pack_states`].
    pub async fn undo_pack_states(
        &self,
        obp: &str,
        product_code: &str,
        batch: &str,
        state: &str,
        serials: &[String],
    ) -> Result<PackStatesAnswer, ApiError> {
        self.change_pack_states(obp, product_code, batch, state, serials, true).await
    }

    async fn change_pack_states(
        &self,
        obp: &str,
        product_code: &str,
        batch: &str,
        state: &str,
        serials: &[String],
        undo: bool,
    ) -> Result<PackStatesAnswer, ApiError> {
        self.caller(obp).await?;
        let request = json!({"product_code": product_code, "batch": batch, "state": state, "undo": undo,
            "serials": serials.len()});
        let product = self.owned_product(obp, product_code).await?;
        let pc = product.product_code;
        let subj = format!("{}/{batch}", subject(&pc));
        let operation = if undo { "pack-state-undo" } else { "pack-state" };
        let refuse = |e: ApiError| self.refuse(obp, operation, &subj, &request, e);
        let checked = if undo { check_undo_request(state, serials) } else { check_request(state, serials) };
        let (state, op) = match checked {
            Ok(found) => found,
            Err(e) => return Err(refuse(e).await),
        };
        // What each market is told: the state the pack takes there, and the command that took it.
        let (taken, command) =
            if undo { (PackState::Active, Command::Undo(op)) } else { (state, Command::Set(op)) };
        let b = match Batch::new(batch) {
            Ok(b) => b,
            Err(e) => return Err(refuse(ApiError::malformed("batch", format!("'{batch}' {e}"))).await),
        };
        // Under the batch lock, so that a recall cannot slip in between reading the batch and
        // committing the messages.
        let _guard = self.store.enter(crate::BATCH_WRITES).await?;
        let Some(record) = self.store.batch(&pc, &b).await? else {
            return Err(refuse(ApiError::not_found("batch", format!("no batch '{batch}' of {pc}"))).await);
        };
        let recalled: BTreeSet<MarketCode> = record.recalled.iter().copied().collect();
        let open: Vec<MarketCode> =
            record.markets.iter().copied().filter(|m| !recalled.contains(m)).collect();

        let screened = screen_serials(serials);
        let valid: Vec<&Serial> = screened.iter().filter_map(|r| r.as_ref().ok()).collect();
        let digests: Vec<SerialDigest> =
            valid.iter().map(|s| serial_digest(&self.config.serial_key, &pc, s)).collect();
        let present: HashSet<usize> = self.store.present(&pc, &digests).await?.into_iter().collect();
        let uploaded: Vec<bool> = (0..valid.len()).map(|k| present.contains(&k)).collect();
        let decided = decide_serials(screened, &uploaded, !open.is_empty(), &pc, &b);
        let now = self.clock.now();
        let id = new_id("PST", now);
        let mut uow = HubUnitOfWork::default();
        let mut results = Vec::with_capacity(serials.len());
        for (i, (text, decision)) in serials.iter().zip(decided).enumerate() {
            let serial = match decision {
                Ok(s) => s,
                Err(r) => {
                    results.push(refused(text, r.code, r.reason));
                    continue;
                }
            };
            for m in &open {
                let body = Message::PackState(PackStateMsg {
                    scheme: pc.scheme().as_str().to_owned(),
                    product_code: pc.as_str().to_owned(),
                    serial: serial.as_str().to_owned(),
                    batch: b.as_str().to_owned(),
                    state: taken.as_str().to_owned(),
                    command: command.to_string(),
                    // An OBP's change names no market: each market records it from its hub link.
                    market: "OBP".to_owned(),
                    location: obp.to_owned(),
                    at: now.to_rfc3339(),
                });
                uow.outbox.push(message_to(*m, format!("{id}-{i}-{m}"), &pc, body));
            }
            results.push(PackStateResult {
                serial: serial.as_str().to_owned(),
                accepted: true,
                return_code: ReturnCode::Success,
                reason: None,
            });
        }
        let accepted = results.iter().filter(|r| r.accepted).count();
        let names =
            |ms: &mut dyn Iterator<Item = &MarketCode>| ms.map(|m| m.as_str().to_owned()).collect::<Vec<_>>();
        let result = json!({
            "accepted": accepted, "refused": results.len() - accepted,
            "markets": names(&mut open.iter()), "recalled": names(&mut recalled.iter()),
        });
        let r = Record {
            operation,
            subject: &subj,
            code: ReturnCode::Success,
            request: &request,
            result: &result,
        };
        uow.audit.push(self.entry(obp, now, r));
        self.commit(uow).await?;
        Ok(PackStatesAnswer {
            product_code: pc,
            batch: b,
            state,
            undo,
            markets: if accepted > 0 { open } else { Vec::new() },
            recalled: recalled.into_iter().collect(),
            results,
        })
    }
}
