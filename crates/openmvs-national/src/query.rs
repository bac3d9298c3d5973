//! The hub's read-only pack query for the owning OBP (`POST /internal/v1/pack-query`): where a
//! pack stands in this market, audited like every question the hub asks.

use openmvs_core::ids::{ProductCode, Serial};
use openmvs_core::pack::{BatchFacts, reasons};
use openmvs_core::return_code::ReturnCode;
use openmvs_store::UnitOfWork;
use openmvs_wire::hub::PackStateView;

use crate::{ApiError, National};

/// The audit trail's actor for the hub's questions.
const HUB_ACTOR: &str = "hub";

impl National {
    /// The pack's batch, state and the reasons it cannot be dispensed (withdrawn, recalled,
    /// expired), or `None` when this market does not hold it. Changes nothing; the question is
    /// audited as `hub-pack-query` with the hub as actor, and answered only once that record is
    /// durable.
    pub async fn pack_state(
        &self,
        product_code: &ProductCode,
        serial: &Serial,
    ) -> Result<Option<PackStateView>, ApiError> {
        let now = self.clock.now();
        let mut view = None;
        if let Some(stored) = self.store.pack(product_code, serial).await? {
            // One snapshot of product, pack and batch, read through the pack's own batch.
            let ctx = self.store.pack_context(None, product_code, serial, &stored.pack.batch).await?;
            if let Some((pack, batch)) = ctx.pack {
                let withdrawn = ctx.product.as_ref().is_some_and(|p| p.withdrawn);
                let facts = BatchFacts { expiry: batch.expiry, recalled: batch.recalled };
                view = Some(PackStateView {
                    batch: pack.pack.batch.to_string(),
                    state: pack.pack.state.to_string(),
                    reasons: reasons(&facts, withdrawn, now).iter().map(|r| r.as_str().to_owned()).collect(),
                });
            }
        }
        let code = if view.is_some() { ReturnCode::Success } else { ReturnCode::SerialUnknown };
        let entry = openmvs_audit::Entry {
            market: self.config.market.to_string(),
            at_millis: now.unix_millis(),
            actor: HUB_ACTOR.to_owned(),
            role: "HUB".to_owned(),
            location: String::new(),
            operation: "hub-pack-query".to_owned(),
            subject: format!("{}/{product_code}/{serial}", product_code.scheme()),
            return_code: code.as_str().to_owned(),
            request: serde_json::json!({"scheme": product_code.scheme().to_string(),
                "product_code": product_code.as_str(), "serial": serial.as_str()})
            .to_string(),
            result: serde_json::json!({"pack": view.as_ref().map(|v| serde_json::json!({
                "batch": v.batch, "state": v.state, "reasons": v.reasons}))})
            .to_string(),
        };
        self.commit(UnitOfWork { audit: vec![entry], ..UnitOfWork::default() }).await?;
        Ok(view)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use openmvs_core::ids::{MarketCode, ProductCode, Serial};
    use openmvs_core::time::{Clock, Timestamp};
    use openmvs_store::{AuditStore, PackStore, Store};
    use openmvs_store_mem::{MemStore, Options};
    use openmvs_wire::hub::{
        BatchMsg, Delivery, Envelope, Message, PackStateView, PacksMsg, ProductMsg, RecallMsg,
    };

    use crate::clock::FakeClock;
    use crate::{National, NationalConfig};

    const PC: &str = "09501101530003";

    fn env(id: &str, body: Message) -> Envelope {
        Envelope { message_id: id.to_owned(), origin: "hub".into(), ordering_key: PC.into(), body }
    }

    #[tokio::test]
    async fn a_pack_query_answers_batch_state_and_reasons_and_is_audited_with_the_hub_as_actor() {
        let clock: Arc<dyn Clock> = Arc::new(FakeClock::at(Timestamp::from_unix_millis(1_750_000_000_000)));
        let store = Arc::new(MemStore::new(Options {
            signing_key: ed25519_dalek::SigningKey::from_bytes(&[5; 32]),
            clock: clock.clone(),
            checkpoints: openmvs_store::CheckpointOptions::default(),
        }));
        let dyn_store: Arc<dyn Store> = store.clone();
        let market = MarketCode::new("DE").unwrap();
        let national = National::new(dyn_store, clock, NationalConfig::new(market), None).await.unwrap();
        let product = ProductMsg {
            scheme: "GTIN".into(),
            product_code: PC.into(),
            name: "Examplomab".into(),
            common_name: "examplomab".into(),
            form: "TABLET".into(),
            strength: "10 mg".into(),
            pack_type: "BOX".into(),
            pack_size: "30".into(),
            owner: "acme-pharma".into(),
            version: 1,
        };
        let batch = BatchMsg {
            scheme: "GTIN".into(),
            product_code: PC.into(),
            batch: "B1".into(),
            expiry: "301231".into(),
            markets: vec!["DE".into()],
        };
        let packs = PacksMsg {
            scheme: "GTIN".into(),
            product_code: PC.into(),
            batch: "B1".into(),
            serials: vec!["Q1".into()],
        };
        let delivery = Delivery {
            messages: vec![
                env("m1", Message::Product(product)),
                env("m2", Message::Batch(batch)),
                env("m3", Message::Packs(packs)),
            ],
        };
        let ack = national.apply_delivery(&delivery).await.unwrap();
        assert!(ack.results.iter().all(|r| r.status == "APPLIED"), "{ack:?}");

        let pc = ProductCode::gtin(PC).unwrap();
        let q1 = Serial::new("Q1").unwrap();
        let active = PackStateView { batch: "B1".into(), state: "ACTIVE".into(), reasons: vec![] };
        assert_eq!(national.pack_state(&pc, &q1).await.unwrap(), Some(active));
        assert_eq!(national.pack_state(&pc, &Serial::new("Q2").unwrap()).await.unwrap(), None);

        let recall = RecallMsg {
            scheme: "GTIN".into(),
            product_code: PC.into(),
            batch: "B1".into(),
            reason: "contamination".into(),
        };
        national
            .apply_delivery(&Delivery { messages: vec![env("m4", Message::Recall(recall))] })
            .await
            .unwrap();
        let recalled = national.pack_state(&pc, &q1).await.unwrap().unwrap();
        assert_eq!((recalled.state.as_str(), recalled.reasons), ("ACTIVE", vec!["RECALLED".to_owned()]));

        // Read-only: the pack is unchanged; every question is in the pack's trail, by the hub.
        assert_eq!(store.pack(&pc, &q1).await.unwrap().unwrap().version, 1);
        let trail = store.audit_by_subject(&format!("GTIN/{PC}/Q1")).await.unwrap();
        let queries: Vec<_> = trail.iter().filter(|r| r.entry.operation == "hub-pack-query").collect();
        assert_eq!(queries.len(), 2);
        assert!(queries.iter().all(|r| r.entry.actor == "hub" && r.entry.role == "HUB"));
        assert_eq!(queries[0].entry.return_code, "NMVS_SUCCESS");
        let unknown = store.audit_by_subject(&format!("GTIN/{PC}/Q2")).await.unwrap();
        assert_eq!(unknown.len(), 1);
        assert_eq!(unknown[0].entry.return_code, "NMVS_NC_PC_02");
    }
}
