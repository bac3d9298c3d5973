//! OBPs, product master data, batches, recalls and withdrawals: the hub's catalogue, and the
//! messages that carry each change to the target markets (and recalls and withdrawals to the
//! owning OBP's callback).

use openmvs_core::catalog::{
    BatchAnswer, BatchDecision, BatchFacts, CurrentProduct, ExistingBatch, ProductAnswer, RecallAnswer,
    WithdrawalAnswer, check_obp_name, check_reason, decide_batch, decide_product, decide_recall,
    decide_withdrawal,
};
use openmvs_core::ids::{Batch, Expiry, MarketCode};
use openmvs_core::master_data::{ProductMaster, RawProduct, VersionDecision, validate};
use openmvs_core::return_code::ReturnCode;
use openmvs_store::hub::{
    HubBatchRecord, HubProductRecord, HubUnitOfWork, ObpRecord, ProductVersionRecord, ProductWrite,
};
use openmvs_store::{Conflict, StoreError};
use openmvs_wire::hub::{BatchMsg, Message, ProductMsg, RecallMsg, WithdrawalMsg};
use serde_json::{Value, json};

use crate::callback::{callback_message, recall_event, withdrawal_event};
use crate::{ApiError, Hub, Record, check_obp_id, message_to, new_id, subject};

/// How often an operation is read and decided again after losing a race, before 503.
const MAX_ATTEMPTS: usize = 8;

/// The master data as sent, for the audit trail.
fn raw_json(raw: &RawProduct) -> Value {
    json!({
        "scheme": raw.scheme, "name": raw.name, "common_name": raw.common_name, "form": raw.form,
        "strength": raw.strength, "pack_type": raw.pack_type, "pack_size": raw.pack_size,
        "markets": raw.markets.as_ref().map(|ms| ms.iter().map(|m| json!({
            "market": m.market, "national_code": m.national_code,
            "mah": {"name": m.mah_name, "address": m.mah_address},
            "wholesalers": m.wholesalers.iter().map(|w| json!({"id": w.id, "name": w.name})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>()),
    })
}

fn product_msg(master: &ProductMaster, owner: &str, version: u32) -> Message {
    Message::Product(ProductMsg {
        scheme: master.product_code.scheme().as_str().to_owned(),
        product_code: master.product_code.as_str().to_owned(),
        name: master.name.clone(),
        common_name: master.common_name.clone(),
        form: master.form.clone(),
        strength: master.strength.clone(),
        pack_type: master.pack_type.clone(),
        pack_size: master.pack_size.clone(),
        owner: owner.to_owned(),
        version,
    })
}

fn market_names(m: &[MarketCode]) -> Vec<&str> {
    m.iter().map(MarketCode::as_str).collect()
}

impl Hub {
    /// On-boards an OBP under the id its client certificate names. Registering an id again is
    /// idempotent: the first name stays.
    pub async fn register_obp(&self, id: &str, name: &str) -> Result<ObpRecord, ApiError> {
        check_obp_id(id).map_err(|why| ApiError::malformed("id", format!("'{id}' {why}")))?;
        check_obp_name(name)?;
        for _ in 0..MAX_ATTEMPTS {
            if let Some(o) = self.store.obp(&id.into()).await? {
                return Ok(o);
            }
            let now = self.clock.now();
            let o = ObpRecord {
                id: id.into(),
                name: name.to_owned(),
                created_at: now,
                revoked_at: None,
                callback_url: None,
            };
            let request = json!({"id": id, "name": name});
            let r = Record {
                operation: "register-obp",
                subject: id,
                code: ReturnCode::Success,
                request: &request,
                result: &json!({}),
            };
            let uow = HubUnitOfWork {
                new_obps: vec![o.clone()],
                audit: vec![self.entry(id, now, r)],
                ..HubUnitOfWork::default()
            };
            match self.commit(uow).await {
                Ok(()) => return Ok(o),
                // Registered meanwhile: the next read returns it.
                Err(StoreError::Conflict(Conflict::Exists(_))) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(openmvs_store::unavailable("OBP registration kept conflicting"))
    }

    /// `PUT /v1/products/{product_code}`: validates the master data (422 A16/I1 naming every
    /// field at fault), makes it the product's first or next version (an identical upload keeps
    /// the version) and sends it to every target market of the new version. The first OBP to
    /// upload a product code owns it; any other gets 403.
    pub async fn put_product(
        &self,
        obp: &str,
        product_code: &str,
        raw: &RawProduct,
    ) -> Result<ProductAnswer, ApiError> {
        self.caller(obp).await?;
        let request = raw_json(raw);
        let subj = format!("{}/{product_code}", raw.scheme.as_deref().unwrap_or("?"));
        let master = match validate(product_code, raw) {
            Ok(m) => m,
            Err(errors) => {
                let e = ApiError::master_data(&errors);
                return Err(self.refuse(obp, "put-product", &subj, &request, e).await);
            }
        };
        let pc = master.product_code.clone();
        let subj = subject(&pc);
        for _ in 0..MAX_ATTEMPTS {
            let now = self.clock.now();
            let existing = self.store.product(&pc).await?;
            let current = match &existing {
                Some(p) => {
                    Some(self.store.product_version(&pc, p.current_version).await?.ok_or_else(|| {
                        StoreError::Corrupt(format!("product {pc} lacks its current version"))
                    })?)
                }
                None => None,
            };
            let facts = existing.as_ref().zip(current.as_ref()).map(|(p, v)| CurrentProduct {
                owner: p.owner.as_str(),
                version: v.version,
                master: &v.master,
            });
            let (version, decision) = match decide_product(obp, facts, &master) {
                Ok(d) => (d.version, d.decision),
                Err(e) => return Err(self.refuse(obp, "put-product", &subj, &request, e).await),
            };
            let result = json!({"version": version, "decision": format!("{decision:?}")});
            let r = Record {
                operation: "put-product",
                subject: &subj,
                code: ReturnCode::Success,
                request: &request,
                result: &result,
            };
            let mut uow = HubUnitOfWork { audit: vec![self.entry(obp, now, r)], ..HubUnitOfWork::default() };
            if decision != VersionDecision::Unchanged {
                uow.product_versions.push(ProductVersionRecord {
                    version,
                    master: master.clone(),
                    created_at: now,
                });
                uow.products.push(ProductWrite {
                    product: HubProductRecord {
                        product_code: pc.clone(),
                        owner: obp.into(),
                        current_version: version,
                        withdrawn: existing.as_ref().map(|p| p.withdrawn.clone()).unwrap_or_default(),
                        created_at: existing.as_ref().map_or(now, |p| p.created_at),
                    },
                    expected_version: current.as_ref().map(|c| c.version),
                });
                let id = new_id("PRD", now);
                for m in &master.markets {
                    let body = product_msg(&master, obp, version);
                    uow.outbox.push(message_to(m.market, format!("{id}-{}", m.market), &pc, body));
                }
            }
            match self.commit(uow).await {
                Ok(()) => return Ok(ProductAnswer { product_code: pc, version }),
                // Created by another OBP, or a new version meanwhile: read again, decide again.
                Err(StoreError::Conflict(Conflict::Exists(_))) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(openmvs_store::unavailable("product upload kept conflicting"))
    }

    /// `PUT /v1/products/{product_code}/batches/{batch}`: a batch bound to the product's current
    /// version, for `markets` (default: the version's target markets not withdrawn; when named,
    /// a subset of them, none withdrawn). The same batch again with the same data is idempotent,
    /// with other data 409. Sends the batch to each of its markets, after the product.
    pub async fn put_batch(
        &self,
        obp: &str,
        product_code: &str,
        batch: &str,
        expiry: &str,
        markets: Option<Vec<String>>,
    ) -> Result<BatchAnswer, ApiError> {
        self.caller(obp).await?;
        let request =
            json!({"product_code": product_code, "batch": batch, "expiry": expiry, "markets": markets});
        let product = self.owned_product(obp, product_code).await?;
        let pc = product.product_code.clone();
        let subj = format!("{}/{batch}", subject(&pc));
        let (subj_ref, request_ref) = (&subj, &request);
        let refuse =
            move |e: ApiError| async move { self.refuse(obp, "put-batch", subj_ref, request_ref, e).await };
        let now = self.clock.now();
        let b = match Batch::new(batch) {
            Ok(b) => b,
            Err(e) => return Err(refuse(ApiError::malformed("batch", format!("'{batch}' {e}"))).await),
        };
        let exp = match Expiry::parse(expiry, now.date()) {
            Ok(x) => x,
            Err(e) => return Err(refuse(ApiError::malformed("expiry", format!("'{expiry}' {e}"))).await),
        };
        let _guard = self.store.enter(crate::BATCH_WRITES).await?;
        // Read under the lock: the version and withdrawals this batch is decided on.
        let product = self.owned_product(obp, product_code).await?;
        let version = self
            .store
            .product_version(&pc, product.current_version)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("product {pc} lacks its current version")))?;
        let targets = version.master.market_codes();
        let existing = self.store.batch(&pc, &b).await?;
        let facts = BatchFacts {
            targets: &targets,
            withdrawn: &product.withdrawn,
            existing: existing.as_ref().map(|e| ExistingBatch {
                expiry: &e.expiry,
                markets: &e.markets,
                version: e.product_version,
            }),
        };
        let chosen = match decide_batch(&facts, &b, &exp, markets.as_deref()) {
            Ok(BatchDecision::New { markets }) => markets,
            Ok(BatchDecision::Unchanged { version, markets }) => {
                return Ok(BatchAnswer { product_code: pc, batch: b, version, markets });
            }
            Err(e) => return Err(refuse(e).await),
        };
        let record = HubBatchRecord {
            product_code: pc.clone(),
            batch: b.clone(),
            product_version: version.version,
            expiry: exp,
            markets: chosen.clone(),
            recalled: Vec::new(),
        };
        let result = json!({"version": version.version, "markets": market_names(&chosen)});
        let r = Record {
            operation: "put-batch",
            subject: &subj,
            code: ReturnCode::Success,
            request: &request,
            result: &result,
        };
        let mut uow = HubUnitOfWork {
            batches: vec![record],
            audit: vec![self.entry(obp, now, r)],
            ..HubUnitOfWork::default()
        };
        let id = new_id("BAT", now);
        for m in &chosen {
            let body = Message::Batch(BatchMsg {
                scheme: pc.scheme().as_str().to_owned(),
                product_code: pc.as_str().to_owned(),
                batch: b.as_str().to_owned(),
                expiry: exp.as_str().to_owned(),
                markets: market_names(&chosen).into_iter().map(str::to_owned).collect(),
            });
            uow.outbox.push(message_to(*m, format!("{id}-{m}"), &pc, body));
        }
        self.commit(uow).await?;
        Ok(BatchAnswer { product_code: pc, batch: b, version: version.version, markets: chosen })
    }

    /// `POST .../batches/{batch}/recall`: recalls the batch in the named markets (each a target
    /// market of the batch), irreversibly, and tells only those markets. Recalling a market again
    /// changes nothing and sends nothing.
    pub async fn recall(
        &self,
        obp: &str,
        product_code: &str,
        batch: &str,
        why: &str,
        markets: &[String],
    ) -> Result<RecallAnswer, ApiError> {
        let caller = self.caller(obp).await?;
        let request =
            json!({"product_code": product_code, "batch": batch, "reason": why, "markets": markets});
        let product = self.owned_product(obp, product_code).await?;
        let pc = product.product_code;
        let subj = format!("{}/{batch}", subject(&pc));
        let (subj_ref, request_ref) = (&subj, &request);
        let refuse =
            move |e: ApiError| async move { self.refuse(obp, "recall", subj_ref, request_ref, e).await };
        if let Err(e) = check_reason(why) {
            return Err(refuse(e).await);
        }
        let b = Batch::new(batch).map_err(|e| ApiError::malformed("batch", format!("'{batch}' {e}")))?;
        let _guard = self.store.enter(crate::BATCH_WRITES).await?;
        let Some(mut record) = self.store.batch(&pc, &b).await? else {
            return Err(ApiError::not_found("batch", format!("no batch '{batch}' of {pc}")));
        };
        let change = match decide_recall(&record.markets, &record.recalled, markets) {
            Ok(c) => c,
            Err(e) => return Err(refuse(e).await),
        };
        let (new, all) = (change.added, change.all);
        let now = self.clock.now();
        let result = json!({"newly_recalled": market_names(&new), "recalled": market_names(&all)});
        let r = Record {
            operation: "recall",
            subject: &subj,
            code: ReturnCode::Success,
            request: &request,
            result: &result,
        };
        let mut uow = HubUnitOfWork { audit: vec![self.entry(obp, now, r)], ..HubUnitOfWork::default() };
        if !new.is_empty() {
            record.recalled = all.clone();
            uow.batches.push(record);
            let id = new_id("RCL", now);
            for m in &new {
                let body = Message::Recall(RecallMsg {
                    scheme: pc.scheme().as_str().to_owned(),
                    product_code: pc.as_str().to_owned(),
                    batch: b.as_str().to_owned(),
                    reason: why.to_owned(),
                });
                uow.outbox.push(message_to(*m, format!("{id}-{m}"), &pc, body));
            }
            if caller.callback_url.is_some() {
                let event =
                    recall_event(pc.as_str(), b.as_str(), &market_names(&new), why, &now.to_rfc3339());
                uow.outbox.push(callback_message(obp, format!("{id}-callback"), pc.as_str(), event));
            }
        }
        self.commit(uow).await?;
        Ok(RecallAnswer { product_code: pc, batch: b, recalled: all })
    }

    /// `POST /v1/products/{product_code}/withdraw`: withdraws the product from the named markets
    /// (each a target market of its current version), irreversibly, and tells only those
    /// markets. A withdrawn market takes no new batch.
    pub async fn withdraw(
        &self,
        obp: &str,
        product_code: &str,
        why: &str,
        markets: &[String],
    ) -> Result<WithdrawalAnswer, ApiError> {
        let caller = self.caller(obp).await?;
        let request = json!({"product_code": product_code, "reason": why, "markets": markets});
        let first = self.owned_product(obp, product_code).await?;
        let pc = first.product_code.clone();
        let subj = subject(&pc);
        let (subj_ref, request_ref) = (&subj, &request);
        let refuse =
            move |e: ApiError| async move { self.refuse(obp, "withdraw", subj_ref, request_ref, e).await };
        if let Err(e) = check_reason(why) {
            return Err(refuse(e).await);
        }
        // Under the batch lock, so that no batch is decided on a read from before the withdrawal.
        let _guard = self.store.enter(crate::BATCH_WRITES).await?;
        for _ in 0..MAX_ATTEMPTS {
            let product = self.owned_product(obp, product_code).await?;
            let version = self
                .store
                .product_version(&pc, product.current_version)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("product {pc} lacks its current version")))?;
            let change = match decide_withdrawal(&version.master.market_codes(), &product.withdrawn, markets)
            {
                Ok(c) => c,
                Err(e) => return Err(refuse(e).await),
            };
            let (new, all) = (change.added, change.all);
            let now = self.clock.now();
            let result = json!({"newly_withdrawn": market_names(&new), "withdrawn": market_names(&all)});
            let r = Record {
                operation: "withdraw",
                subject: &subj,
                code: ReturnCode::Success,
                request: &request,
                result: &result,
            };
            let mut uow = HubUnitOfWork { audit: vec![self.entry(obp, now, r)], ..HubUnitOfWork::default() };
            if !new.is_empty() {
                uow.products.push(ProductWrite {
                    expected_version: Some(product.current_version),
                    product: HubProductRecord { withdrawn: all.clone(), ..product.clone() },
                });
                let id = new_id("WDR", now);
                for m in &new {
                    let body = Message::Withdrawal(WithdrawalMsg {
                        scheme: pc.scheme().as_str().to_owned(),
                        product_code: pc.as_str().to_owned(),
                        reason: why.to_owned(),
                    });
                    uow.outbox.push(message_to(*m, format!("{id}-{m}"), &pc, body));
                }
                if caller.callback_url.is_some() {
                    let event = withdrawal_event(pc.as_str(), &market_names(&new), why, &now.to_rfc3339());
                    uow.outbox.push(callback_message(obp, format!("{id}-callback"), pc.as_str(), event));
                }
            }
            match self.commit(uow).await {
                Ok(()) => return Ok(WithdrawalAnswer { product_code: pc, withdrawn: all }),
                // A new version meanwhile: its markets may differ, so decide again.
                Err(StoreError::Conflict(Conflict::Exists(_))) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(openmvs_store::unavailable("withdrawal kept conflicting"))
    }
}
