//! The OBPs' alerts (fmd-rules §4.11): an OBP lists and reads the alerts raised on its products
//! and moves them through their lifecycle at the hub, independently of each market's NMVO.

use openmvs_audit::Entry;
use openmvs_core::alert::{
    AlertPage, AlertStatus, AlertView, Classification, StatusChange, decide_status_change,
};
use openmvs_core::ids::AlertId;
use openmvs_core::pack::Policy;
use openmvs_core::return_code::ReturnCode;
use openmvs_core::roles::{Access, Action, Role, access};
use openmvs_store::hub::{HubAlertFilter, HubAlertRecord, HubUnitOfWork};
use openmvs_store::{AlertUpdate, Conflict, StoreError};
use openmvs_wire::kept;
use serde_json::json;

use crate::{ApiError, Hub, Record};

/// The page size when none is asked for.
pub const DEFAULT_ALERT_LIMIT: usize = 100;
/// The largest page.
pub const MAX_ALERT_LIMIT: usize = 1000;

/// The OBP's view of an alert: as the market raised it, under the hub's id, with the OBP's own
/// investigation status, classification and comment.
pub(crate) fn view(a: &HubAlertRecord) -> Result<AlertView, StoreError> {
    let forwarded = kept::read_alert(&a.alert)
        .map_err(|e| StoreError::Corrupt(format!("alert {} does not decode: {e}", a.id)))?;
    Ok(AlertView {
        id: a.id.clone(),
        status: a.status,
        classification: a.classification,
        comment: a.comment.clone(),
        ..forwarded
    })
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found("id", format!("no alert '{id}'"))
}

impl Hub {
    /// `GET /v1/alerts` for an OBP: a page of the alerts on its products, in id order, optionally
    /// of one status; `next_cursor` continues the list.
    pub async fn alerts(
        &self,
        obp: &str,
        status: Option<&str>,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<AlertPage, ApiError> {
        self.caller(obp).await?;
        let status = status
            .map(|s| {
                AlertStatus::parse(s)
                    .ok_or_else(|| ApiError::malformed("status", format!("'{s}' is not an alert status")))
            })
            .transpose()?;
        let limit = limit.unwrap_or(DEFAULT_ALERT_LIMIT);
        if limit == 0 || limit > MAX_ALERT_LIMIT {
            return Err(ApiError::malformed("limit", format!("must be 1-{MAX_ALERT_LIMIT}")));
        }
        let filter = HubAlertFilter {
            obp: Some(obp.into()),
            status,
            product_code: None,
            after: cursor.map(AlertId::from),
            // One more than asked tells whether there is a next page.
            limit: limit + 1,
        };
        let mut alerts = self.store.alerts(&filter).await?;
        let next_cursor = if alerts.len() > limit {
            alerts.truncate(limit);
            alerts.last().map(|a| a.id.clone())
        } else {
            None
        };
        let alerts = alerts.iter().map(view).collect::<Result<Vec<_>, _>>()?;
        Ok(AlertPage { alerts, next_cursor })
    }

    /// `GET /v1/alerts/{id}` for an OBP: 404 when there is no such alert or it is another OBP's,
    /// so that an OBP cannot even learn which ids exist.
    pub async fn alert(&self, obp: &str, id: &str) -> Result<AlertView, ApiError> {
        self.caller(obp).await?;
        match self.store.alert(&id.into()).await? {
            Some(a) if a.obp == obp => Ok(view(&a)?),
            _ => Err(not_found(id)),
        }
    }

    /// `POST /v1/alerts/{id}/status` for an OBP, on its own alerts (the permission table gives the
    /// OBP `Own` access): moves the alert forward in its lifecycle; closing needs a
    /// classification. Refusals are audited.
    pub async fn change_alert_status(
        &self,
        obp: &str,
        id: &str,
        status: &str,
        classification: Option<&str>,
        comment: Option<&str>,
    ) -> Result<AlertView, ApiError> {
        self.caller(obp).await?;
        let subject = format!("alert/{id}");
        let request = json!({"status": status, "classification": classification, "comment": comment});
        let refuse = |e: ApiError| self.refuse(obp, "alert-status", &subject, &request, e);
        if access(Role::Obp, Action::ChangeAlertStatus, &Policy::default()) != Access::Own {
            return Err(refuse(ApiError::forbidden("role", "an OBP may not change alert statuses")).await);
        }
        let status = match AlertStatus::parse(status) {
            Some(s) => s,
            None => {
                let e = ApiError::malformed(
                    "status",
                    format!("'{status}' is not INVESTIGATING, ESCALATED or CLOSED"),
                );
                return Err(refuse(e).await);
            }
        };
        let classification = match classification.map(|c| (c, Classification::parse(c))) {
            None => None,
            Some((_, Some(c))) => Some(c),
            Some((c, None)) => {
                let e = ApiError::malformed("classification", format!("'{c}' is not a classification"));
                return Err(refuse(e).await);
            }
        };
        let alert_id = AlertId::from(id);
        for _ in 0..8 {
            let now = self.clock.now();
            let current = match self.store.alert(&alert_id).await? {
                Some(a) if a.obp == obp => a,
                _ => return Err(refuse(not_found(id)).await),
            };
            let change = StatusChange { status, classification, comment };
            let outcome = match decide_status_change(current.status, &change) {
                Ok(o) => o,
                Err(e) => {
                    // The core's messages start with the field at fault.
                    let text = e.to_string();
                    let field = text.split(':').next().unwrap_or("status").to_owned();
                    return Err(refuse(ApiError::malformed(field, text)).await);
                }
            };
            let mut after = current.clone();
            after.status = outcome.status;
            after.classification = classification.or(current.classification);
            if let Some(c) = comment {
                after.comment = Some(c.to_owned());
            }
            let answer = view(&after)?;
            let result = kept::alert_value(&answer);
            let r = Record {
                operation: "alert-status",
                subject: &subject,
                code: ReturnCode::Success,
                request: &request,
                result: &result,
            };
            let mut audit = vec![self.entry(obp, now, r)];
            if outcome.report_to_nca {
                // DR Art 37(d): the confirmed falsification is on record for the authorities.
                audit.push(Entry {
                    operation: "nca-report".into(),
                    subject: format!("{}/{}", current.market, current.source_alert_id),
                    ..audit[0].clone()
                });
            }
            let uow = HubUnitOfWork {
                alert_updates: vec![AlertUpdate {
                    id: alert_id.clone(),
                    expected_status: current.status,
                    status: outcome.status,
                    classification,
                    comment: comment.map(str::to_owned),
                }],
                audit,
                ..HubUnitOfWork::default()
            };
            match self.commit(uow).await {
                Ok(()) => return Ok(answer),
                // Changed meanwhile: decide again on the new status.
                Err(StoreError::Conflict(Conflict::AlertStatus)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(openmvs_store::unavailable("the alert keeps changing"))
    }
}
