//! Alerts: listing and reading them (end users see their own, the NMVO and the NCA the market),
//! and moving them through their lifecycle (the NMVO only).

use openmvs_audit::Entry;
use openmvs_core::alert::{
    AlertPage, AlertStatus, AlertView, Classification, StatusChange, decide_status_change,
};
use openmvs_core::ids::{AlertId, ClientId};
use openmvs_core::return_code::ReturnCode;
use openmvs_core::roles::{Access, Action, access};
use openmvs_store::{AlertFilter, AlertRecord, AlertUpdate, Conflict, StoreError, UnitOfWork};
use openmvs_wire::api::AlertStatusRequest;
use openmvs_wire::kept;

use crate::{Actor, ApiError, National, Record};

/// The page size when none is asked for.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest page.
pub const MAX_LIMIT: usize = 1000;

/// An alert as it is listed and read.
pub fn view(a: &AlertRecord) -> AlertView {
    AlertView {
        id: a.id.clone(),
        code: a.code,
        return_code: a.return_code,
        market: a.market,
        product_code: a.product_code.clone(),
        serial: a.serial.clone(),
        batch: a.batch.clone(),
        location: a.location.clone(),
        created_at: a.created_at,
        status: a.status,
        classification: a.classification,
        comment: a.comment.clone(),
    }
}

impl National {
    fn alert_scope(&self, actor: &Actor) -> Result<Option<ClientId>, ApiError> {
        if actor.market != self.config.market {
            return Err(
                ApiError::new(ReturnCode::Forbidden).with("market", "the token is for another market")
            );
        }
        match access(actor.role, Action::ReadAlerts, &self.config.policy) {
            Access::Denied => Err(ApiError::new(ReturnCode::Forbidden)),
            Access::Own => Ok(Some(actor.client_id.clone())),
            Access::Market => Ok(None),
        }
    }

    /// `GET /v1/alerts`: a page of the alerts the actor may see.
    pub async fn alerts(
        &self,
        actor: &Actor,
        status: Option<&str>,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<AlertPage, ApiError> {
        let client_id = self.alert_scope(actor)?;
        let status = status
            .map(|s| {
                AlertStatus::parse(s)
                    .ok_or_else(|| ApiError::field("status", format!("'{s}' is not an alert status")))
            })
            .transpose()?;
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(ApiError::field("limit", format!("must be 1-{MAX_LIMIT}")));
        }
        let filter = AlertFilter {
            status,
            client_id,
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
        Ok(AlertPage { alerts: alerts.iter().map(view).collect(), next_cursor })
    }

    /// `GET /v1/alerts/{id}`: 404 when the alert does not exist or the actor may not see it.
    pub async fn alert(&self, actor: &Actor, id: &str) -> Result<AlertView, ApiError> {
        let own = self.alert_scope(actor)?;
        match self.store.alert(&AlertId::from(id)).await? {
            Some(a) if own.as_ref().is_none_or(|c| *c == a.client_id) => Ok(view(&a)),
            _ => Err(ApiError::new(ReturnCode::NotFound).with("id", format!("no alert '{id}'"))),
        }
    }

    /// `POST /v1/alerts/{id}/status` (the NMVO only).
    pub async fn change_alert_status(
        &self,
        actor: &Actor,
        id: &str,
        req: &AlertStatusRequest,
    ) -> Result<AlertView, ApiError> {
        let subject = format!("alert/{id}");
        if access(actor.role, Action::ChangeAlertStatus, &self.config.policy) != Access::Market
            || actor.market != self.config.market
        {
            let e =
                ApiError::new(ReturnCode::Forbidden).with("role", "only the NMVO changes an alert's status");
            return Err(self.refuse(actor, "alert-status", &subject, req, e).await);
        }
        let status = AlertStatus::parse(&req.status).ok_or_else(|| {
            ApiError::field("status", format!("'{}' is not INVESTIGATING, ESCALATED or CLOSED", req.status))
        });
        let classification = req
            .classification
            .as_deref()
            .map(|c| {
                Classification::parse(c).ok_or_else(|| {
                    ApiError::field("classification", format!("'{c}' is not a classification"))
                })
            })
            .transpose();
        let (status, classification) = match (status, classification) {
            (Ok(s), Ok(c)) => (s, c),
            (Err(e), _) | (_, Err(e)) => {
                return Err(self.refuse(actor, "alert-status", &subject, req, e).await);
            }
        };
        let id = AlertId::from(id);
        for _ in 0..8 {
            let now = self.clock.now();
            let Some(current) = self.store.alert(&id).await? else {
                return Err(ApiError::new(ReturnCode::NotFound).with("id", format!("no alert '{id}'")));
            };
            let change = StatusChange { status, classification, comment: req.comment.as_deref() };
            let outcome = match decide_status_change(current.status, &change) {
                Ok(o) => o,
                Err(e) => {
                    let field = e.to_string().split(':').next().unwrap_or("status").to_owned();
                    let err = ApiError::field(field, e.to_string());
                    return Err(self.refuse(actor, "alert-status", &subject, req, err).await);
                }
            };
            let mut after = current.clone();
            after.status = outcome.status;
            after.classification = classification.or(current.classification);
            if let Some(c) = &req.comment {
                after.comment = Some(c.clone());
            }
            let answer = view(&after);
            let result = kept::alert(&answer);
            let record = Record {
                operation: "alert-status",
                subject: &subject,
                return_code: ReturnCode::Success.as_str(),
                request: serde_json::to_string(req).unwrap_or_default(),
                result,
            };
            let mut audit = vec![self.audit_entry(actor, now, record)];
            if outcome.report_to_nca {
                // DR Art 37(d): the authority reads this record in its audit access.
                audit.push(Entry {
                    operation: "nca-report".into(),
                    subject: format!("{}/{}", current.product_code, current.serial),
                    ..audit[0].clone()
                });
            }
            let uow = UnitOfWork {
                alert_updates: vec![AlertUpdate {
                    id: id.clone(),
                    expected_status: current.status,
                    status: outcome.status,
                    classification,
                    comment: req.comment.clone(),
                }],
                audit,
                ..UnitOfWork::default()
            };
            match self.commit(uow).await {
                Ok(_) => return Ok(answer),
                Err(StoreError::Conflict(Conflict::AlertStatus)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(openmvs_store::unavailable("the alert keeps changing"))
    }
}
