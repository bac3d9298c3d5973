//! Alerts: listing and reading them (end users see their own, the NMVO and the NCA the market),
//! and working them (the NMVO only): status changes and comments, kept in the alert's thread and
//! sent through the hub to the OBP and to the other market of an inter-market alert, whose own
//! changes and comments come back the same way ([`National::apply_alert_change`]).

use openmvs_audit::Entry;
use openmvs_core::alert::{
    AlertComment, AlertCriteria, AlertPage, AlertStatus, AlertThread, AlertView, AlertWork, Classification,
    StatusChange, Worker, decide_work,
};
use openmvs_core::answer::AlertRef;
use openmvs_core::ids::{AlertId, ClientId, MarketCode, PackIdentifier};
use openmvs_core::return_code::ReturnCode;
use openmvs_core::roles::{Access, Action, access};
use openmvs_core::time::Timestamp;
use openmvs_store::{AlertFilter, AlertRecord, AlertUpdate, Conflict, StoreError, UnitOfWork};
use openmvs_wire::api::{AlertCommentRequest, AlertStatusRequest};
use openmvs_wire::hub::{AlertChangeMsg, AlertCommentMsg, Message};
use openmvs_wire::kept;

use crate::{Actor, ApiError, National, Record, random_u64};

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
        pack_market: a.pack_market,
        product_code: a.product_code.clone(),
        serial: a.serial.clone(),
        batch: a.batch.clone(),
        location: a.location.clone(),
        created_at: a.created_at,
        status: a.status,
        classification: a.classification,
        comment: a.comment.clone(),
        thread: a.thread.clone(),
    }
}

/// An alert the NMVO reads but the client it names does not: a `SERIAL_GUESSING` alert.
fn for_the_nmvo_only(a: &AlertRecord) -> bool {
    a.code == openmvs_core::return_code::AlertCode::SerialGuessing
}

/// An update of `current` to `thread`, with the status, classification and last comment the
/// thread comes to.
pub(crate) fn update_to(current: &AlertRecord, thread: AlertThread) -> AlertUpdate {
    AlertUpdate::to_thread(current.id.clone(), current.version, thread)
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

    /// `GET /v1/alerts`: a page of the alerts the actor may see, with `status` and meeting
    /// `criteria`, in id order (the order they were raised), from after `cursor`.
    ///
    /// A page ends early when [`openmvs_store::SCAN_PER_PAGE`] alerts were looked at without
    /// filling it; its `next_cursor` then goes on from there.
    pub async fn alerts(
        &self,
        actor: &Actor,
        status: Option<&str>,
        criteria: &AlertCriteria,
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
        let own = client_id.is_some();
        let filter = AlertFilter {
            status,
            client_id,
            product_code: criteria.product_code.clone(),
            after: None,
            limit: openmvs_store::SCAN_BATCH,
        };
        let (alerts, next_cursor) = openmvs_store::scan_page(
            |after| {
                let filter = AlertFilter { after, ..filter.clone() };
                async move { self.store.alerts(&filter).await }
            },
            cursor.map(AlertId::from),
            limit,
            |a: &AlertRecord| a.id.clone(),
            |v: &AlertView| v.id.clone(),
            // An end user's list holds the alerts its requests raised, not the NMVO's alert
            // about how it uses the system.
            |a| Ok(Some(view(a)).filter(|v| !(own && for_the_nmvo_only(a)) && criteria.matches(v))),
        )
        .await?;
        Ok(AlertPage { alerts, next_cursor })
    }

    /// `GET /v1/alerts/{id}`: 404 when the alert does not exist or the actor may not see it.
    pub async fn alert(&self, actor: &Actor, id: &str) -> Result<AlertView, ApiError> {
        let own = self.alert_scope(actor)?;
        match self.store.alert(&AlertId::from(id)).await? {
            Some(a) if own.as_ref().is_none_or(|c| *c == a.client_id && !for_the_nmvo_only(&a)) => {
                Ok(view(&a))
            }
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
        if let Err(e) = self.may_work(actor) {
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
        let work =
            AlertWork::Status(StatusChange { status, classification, comment: req.comment.as_deref() });
        let request = serde_json::to_string(req).unwrap_or_default();
        self.work_alert(actor, id, work, "alert-status", request, req).await.map(|(a, _)| a)
    }

    /// `POST /v1/alerts/{id}/comments` (the NMVO only): adds a comment to the alert's thread.
    pub async fn comment_alert(
        &self,
        actor: &Actor,
        id: &str,
        req: &AlertCommentRequest,
    ) -> Result<AlertComment, ApiError> {
        let subject = format!("alert/{id}");
        if let Err(e) = self.may_work(actor) {
            return Err(self.refuse(actor, "alert-comment", &subject, req, e).await);
        }
        let request = serde_json::to_string(req).unwrap_or_default();
        let (_, comment) =
            self.work_alert(actor, id, AlertWork::Comment(&req.text), "alert-comment", request, req).await?;
        Ok(comment.expect("a comment's work adds a comment"))
    }

    fn may_work(&self, actor: &Actor) -> Result<(), ApiError> {
        if access(actor.role, Action::ChangeAlertStatus, &self.config.policy) != Access::Market
            || actor.market != self.config.market
        {
            return Err(ApiError::new(ReturnCode::Forbidden).with("role", "only the NMVO works on alerts"));
        }
        Ok(())
    }

    /// Decides a piece of work on the alert's current thread and commits it with its audit record
    /// and the messages that take it to the hub, deciding again if the alert changed meanwhile.
    async fn work_alert(
        &self,
        actor: &Actor,
        id: &str,
        work: AlertWork<'_>,
        operation: &str,
        request: String,
        req: &(impl serde::Serialize + Sync),
    ) -> Result<(AlertView, Option<AlertComment>), ApiError> {
        let subject = format!("alert/{id}");
        let id = AlertId::from(id);
        let (by, role) = (actor.client_id.to_string(), actor.role.to_string());
        for _ in 0..8 {
            let now = self.clock.now();
            let Some(current) = self.store.alert(&id).await? else {
                return Err(ApiError::new(ReturnCode::NotFound).with("id", format!("no alert '{id}'")));
            };
            let who = Worker { by: &by, role: &role, at: now };
            let done =
                match decide_work(current.status, &current.thread, &work, &who, [random_u64(), random_u64()])
                {
                    Ok(d) => d,
                    Err(e) => {
                        let err = ApiError::field(e.field(), e.to_string());
                        return Err(self.refuse(actor, operation, &subject, req, err).await);
                    }
                };
            let update = AlertUpdate::to_thread(id.clone(), current.version, done.thread);
            let answer = view(&AlertRecord {
                status: update.status,
                classification: update.classification,
                comment: update.comment.clone().or(current.comment.clone()),
                thread: update.thread.clone(),
                ..current.clone()
            });
            let record = Record {
                operation,
                subject: &subject,
                return_code: ReturnCode::Success.as_str(),
                request: request.clone(),
                result: kept::alert(&answer),
            };
            let mut audit = vec![self.audit_entry(actor, now, record)];
            if done.report_to_nca {
                // DR Art 37(d): the authority reads this record in its audit access.
                audit.push(Entry {
                    operation: "nca-report".into(),
                    subject: format!("{}/{}", current.product_code, current.serial),
                    ..audit[0].clone()
                });
            }
            let mut outbox = Vec::new();
            if self.hub.is_some() && current.code.goes_to_obp() {
                let changes =
                    done.change.iter().map(|c| Message::AlertChange(AlertChangeMsg::new(id.as_str(), c)));
                let comments =
                    done.comment.iter().map(|c| Message::AlertComment(AlertCommentMsg::new(id.as_str(), c)));
                outbox =
                    changes.chain(comments).map(|m| self.message(&current.product_code, m, now)).collect();
            }
            let wakes_relay = !outbox.is_empty();
            let uow = UnitOfWork { alert_updates: vec![update], audit, outbox, ..UnitOfWork::default() };
            match self.commit(uow).await {
                Ok(_) => {
                    if wakes_relay {
                        self.relay_wake.notify_one();
                    }
                    return Ok((answer, done.comment));
                }
                Err(StoreError::Conflict(Conflict::AlertStatus)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(openmvs_store::unavailable("the alert keeps changing"))
    }

    /// A status change or comment made at another system that holds the alert (the OBP at the
    /// hub, or the other market's NMVO), as the hub delivered it: added to the thread once, and
    /// the status recomputed from the whole thread. `Err` says why it can never apply.
    pub(crate) async fn apply_alert_change(
        &self,
        body: &Message,
        uow: &mut UnitOfWork,
    ) -> Result<Result<String, String>, StoreError> {
        let (alert_id, entry) = match body.alert_entry() {
            Some(Ok(x)) => x,
            Some(Err(why)) => return Ok(Err(why)),
            None => return Ok(Err("not an alert change".into())),
        };
        let Some(current) = self.store.alert(&AlertId::from(alert_id)).await? else {
            return Ok(Err(format!("no alert '{alert_id}' here")));
        };
        let mut thread = current.thread.clone();
        if !thread.add_entry(entry) {
            return Ok(Ok(format!("alert {alert_id}: held before")));
        }
        let update = update_to(&current, thread);
        let note = format!("alert {alert_id}: {} -> {}", current.status, update.status);
        uow.alert_updates.push(update);
        Ok(Ok(note))
    }

    /// A copy of an alert raised in another market for a request of this one, or on a pack this
    /// market holds (an inter-market alert), as the hub delivered it; kept once.
    pub(crate) fn alert_copy(&self, a: &AlertView, client_id: ClientId, now: Timestamp) -> AlertRecord {
        AlertRecord {
            id: a.id.clone(),
            code: a.code,
            return_code: a.return_code,
            market: a.market,
            pack_market: a.pack_market,
            product_code: a.product_code.clone(),
            serial: a.serial.clone(),
            batch: a.batch.clone(),
            location: a.location.clone(),
            client_id,
            created_at: if a.created_at.unix_millis() > 0 { a.created_at } else { now },
            status: AlertStatus::Open,
            classification: None,
            comment: None,
            // Every copy of one alert has the same source: itself.
            source_key: format!("alert/{}", a.id),
            thread: AlertThread::default(),
            version: 0,
        }
    }

    /// This market's copy of an alert another market raised on a request of this market's
    /// `actor` (an inter-market request): the pharmacy reads it here with the id it was given.
    pub(crate) fn intermarket_alert(
        &self,
        actor: &Actor,
        id: &PackIdentifier,
        alert: &AlertRef,
        pack_market: MarketCode,
        return_code: ReturnCode,
        now: Timestamp,
    ) -> AlertRecord {
        raised(actor, id, alert, return_code, pack_market, format!("alert/{}", alert.id), now)
    }
}

/// A new alert on `id` for `actor`'s request, in `actor`'s market, on a pack `pack_market` holds
/// (another market, for an inter-market request); one per `source_key`.
pub(crate) fn raised(
    actor: &Actor,
    id: &PackIdentifier,
    alert: &AlertRef,
    return_code: ReturnCode,
    pack_market: MarketCode,
    source_key: String,
    now: Timestamp,
) -> AlertRecord {
    AlertRecord {
        id: alert.id.clone(),
        code: alert.code,
        return_code,
        market: actor.market,
        pack_market,
        product_code: id.product_code.to_string(),
        serial: id.serial.clone(),
        batch: id.batch.to_string(),
        location: actor.location.clone(),
        client_id: actor.client_id.clone(),
        created_at: now,
        status: AlertStatus::Open,
        classification: None,
        comment: None,
        source_key,
        thread: AlertThread::default(),
        version: 0,
    }
}
