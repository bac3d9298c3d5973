//! OBP pack state changes (api.md §3 `POST .../packs/state`): an OBP reports its own packs
//! stolen, destroyed, given as free samples or checked out for repackaging, and the hub carries
//! each change to every target market of the batch that has not recalled it.

use std::collections::{BTreeSet, HashSet};

use openmvs_core::ids::{Batch, MarketCode, ProductCode, Serial};
use openmvs_core::pack::{Command, Operation, PackState, Policy};
use openmvs_core::return_code::ReturnCode;
use openmvs_core::roles::{Action, Role, access};
use openmvs_store::hub::{HubUnitOfWork, SerialDigest};
use openmvs_wire::hub::{Message, PackStateMsg};
use serde_json::json;

use crate::{Hub, HubError, MAX_ECHO_CHARS, Record, message_to, new_id, serial_digest, subject};

/// The most serials of one request: each becomes one message per market, all in one unit.
pub const MAX_PACK_STATE_SERIALS: usize = 10_000;

/// What happened to one serial of the request, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackStateResult {
    /// The serial as sent (cut to 64 characters when it is not a serial at all).
    pub serial: String,
    /// Whether the change was queued for the markets.
    pub accepted: bool,
    /// `NMVS_SUCCESS`, or why not: malformed, never uploaded, repeated in the request, or the
    /// batch recalled in every target market.
    pub return_code: ReturnCode,
    /// Why not, in words.
    pub reason: Option<String>,
}

/// The answer to an OBP's pack state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackStatesAnswer {
    /// The product.
    pub product_code: ProductCode,
    /// The batch.
    pub batch: Batch,
    /// The state asked for.
    pub state: PackState,
    /// The markets the accepted changes go to, in market order.
    pub markets: Vec<MarketCode>,
    /// The batch's markets that recalled it and so take no change from the OBP (fmd-rules §3).
    pub recalled: Vec<MarketCode>,
    /// One per serial, in request order.
    pub results: Vec<PackStateResult>,
}

/// The operation that takes a pack to `state`, if an OBP may ask for that state at the hub.
fn obp_operation(state: PackState) -> Option<Operation> {
    let op = match state {
        PackState::Stolen => Operation::Stolen,
        PackState::Destroyed => Operation::Destroy,
        PackState::FreeSample => Operation::FreeSample,
        PackState::CheckedOut => Operation::CheckOut,
        _ => return None,
    };
    // The one permission table decides, so the hub cannot drift from it.
    access(Role::Obp, Action::Pack(Command::Set(op)), &Policy::default()).is_allowed().then_some(op)
}

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
    ) -> Result<PackStatesAnswer, HubError> {
        self.caller(obp).await?;
        let request =
            json!({"product_code": product_code, "batch": batch, "state": state, "serials": serials.len()});
        let product = self.owned_product(obp, product_code).await?;
        let pc = product.product_code;
        let subj = format!("{}/{batch}", subject(&pc));
        let refuse = |e: HubError| self.refuse(obp, "pack-state", &subj, &request, e);
        let Some((state, op)) = PackState::parse(state).and_then(|s| obp_operation(s).map(|op| (s, op)))
        else {
            let e = HubError::malformed(
                "state",
                format!("'{state}' is not STOLEN, DESTROYED, FREE_SAMPLE or CHECKED_OUT"),
            );
            return Err(refuse(e).await);
        };
        if serials.is_empty() {
            return Err(refuse(HubError::malformed("serials", "names no serial")).await);
        }
        if serials.len() > MAX_PACK_STATE_SERIALS {
            let e = HubError::new(ReturnCode::TooLarge)
                .with("serials", format!("{} serials, at most {MAX_PACK_STATE_SERIALS}", serials.len()));
            return Err(refuse(e).await);
        }
        let b = match Batch::new(batch) {
            Ok(b) => b,
            Err(e) => return Err(refuse(HubError::malformed("batch", format!("'{batch}' {e}"))).await),
        };
        // Under the batch lock, so that a recall cannot slip in between reading the batch and
        // committing the messages.
        let _guard = self.store.enter(crate::BATCH_WRITES).await?;
        let Some(record) = self.store.batch(&pc, &b).await? else {
            return Err(refuse(HubError::not_found("batch", format!("no batch '{batch}' of {pc}"))).await);
        };
        let recalled: BTreeSet<MarketCode> = record.recalled.iter().copied().collect();
        let open: Vec<MarketCode> =
            record.markets.iter().copied().filter(|m| !recalled.contains(m)).collect();

        let mut results: Vec<Option<PackStateResult>> = vec![None; serials.len()];
        let mut valid: Vec<(usize, Serial)> = Vec::new();
        let mut seen = HashSet::new();
        for (i, text) in serials.iter().enumerate() {
            match Serial::new(text) {
                Err(e) => {
                    let why = format!("not a serial: {e}");
                    results[i] = Some(refused(text, ReturnCode::MalformedRequest, why));
                }
                Ok(_) if !seen.insert(text.as_str()) => {
                    let why = "repeats an earlier serial of this request".to_owned();
                    results[i] = Some(refused(text, ReturnCode::BulkDuplicateSerial, why));
                }
                Ok(s) => valid.push((i, s)),
            }
        }
        let digests: Vec<SerialDigest> =
            valid.iter().map(|(_, s)| serial_digest(&self.config.serial_key, &pc, s)).collect();
        let present: HashSet<usize> = self.store.present(&pc, &digests).await?.into_iter().collect();
        let now = self.clock.now();
        let id = new_id("PST", now);
        let mut uow = HubUnitOfWork::default();
        for (k, (i, serial)) in valid.iter().enumerate() {
            let text = serial.as_str();
            results[*i] = Some(if !present.contains(&k) {
                refused(text, ReturnCode::NotFound, format!("was never uploaded for {pc}"))
            } else if open.is_empty() {
                refused(
                    text,
                    ReturnCode::BatchRecalled,
                    format!("batch {b} is recalled in every target market"),
                )
            } else {
                for m in &open {
                    let body = Message::PackState(PackStateMsg {
                        scheme: pc.scheme().as_str().to_owned(),
                        product_code: pc.as_str().to_owned(),
                        serial: text.to_owned(),
                        batch: b.as_str().to_owned(),
                        state: state.as_str().to_owned(),
                        command: op.as_str().to_owned(),
                        // An OBP's change names no market: each market records it from its hub link.
                        market: "OBP".to_owned(),
                        location: obp.to_owned(),
                        at: now.to_rfc3339(),
                    });
                    uow.outbox.push(message_to(*m, format!("{id}-{i}-{m}"), &pc, body));
                }
                PackStateResult {
                    serial: text.to_owned(),
                    accepted: true,
                    return_code: ReturnCode::Success,
                    reason: None,
                }
            });
        }
        let results: Vec<PackStateResult> =
            results.into_iter().map(|r| r.expect("every serial has a result")).collect();
        let accepted = results.iter().filter(|r| r.accepted).count();
        let names =
            |ms: &mut dyn Iterator<Item = &MarketCode>| ms.map(|m| m.as_str().to_owned()).collect::<Vec<_>>();
        let result = json!({
            "accepted": accepted, "refused": results.len() - accepted,
            "markets": names(&mut open.iter()), "recalled": names(&mut recalled.iter()),
        });
        let r = Record {
            operation: "pack-state",
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
            markets: if accepted > 0 { open } else { Vec::new() },
            recalled: recalled.into_iter().collect(),
            results,
        })
    }
}
