//! The OBPs' alerts (fmd-rules §4.11): an OBP lists and reads the alerts raised on its products
//! and works them at the hub together with the NMVOs of the markets that hold them: status
//! changes and comments go into the alert's thread and to every market that holds a copy; those
//! the markets make come here and go on to the other market of an inter-market alert
//! ([`Hub::relay_alert_change`]). Every side computes the status from the whole thread
//! ([`openmvs_core::alert::AlertThread::settle`]), so all agree once delivery catches up.

use openmvs_audit::Entry;
use openmvs_core::alert::{
    AlertComment, AlertCriteria, AlertPage, AlertStatus, AlertThread, AlertView, AlertWork, Classification,
    StatusChange, Worker, decide_work,
};
use openmvs_core::ids::{AlertId, MarketCode};
use openmvs_core::pack::Policy;
use openmvs_core::return_code::ReturnCode;
use openmvs_core::roles::{Access, Action, Role, access};
use openmvs_store::hub::{HubAlertFilter, HubAlertRecord, HubUnitOfWork};
use openmvs_store::{AlertUpdate, Conflict, OutboxMessage, StoreError};
use openmvs_wire::hub::{AlertChangeMsg, AlertCommentMsg, Message};
use openmvs_wire::kept;
use serde_json::json;

use crate::{ApiError, Hub, Record, message_keyed, new_id, random_u64};

/// The page size when none is asked for.
pub const DEFAULT_ALERT_LIMIT: usize = 100;
/// The largest page.
pub const MAX_ALERT_LIMIT: usize = 1000;

/// The OBP's view of an alert: as the market raised it, with where the investigation stands.
pub(crate) fn view(a: &HubAlertRecord) -> Result<AlertView, StoreError> {
    let forwarded = kept::read_alert(&a.alert)
        .map_err(|e| StoreError::Corrupt(format!("alert {} does not decode: {e}", a.id)))?;
    Ok(AlertView {
        id: a.id.clone(),
        status: a.status,
        classification: a.classification,
        comment: a.comment.clone(),
        thread: a.thread.clone(),
        ..forwarded
    })
}

/// An update of `current` to `thread`, with the status, classification and last comment the
/// thread comes to.
fn update_to(current: &HubAlertRecord, thread: AlertThread) -> AlertUpdate {
    AlertUpdate::to_thread(current.id.clone(), current.version, thread)
}

/// The messages that take `body` (a change or a comment of `alert`) to every market that holds
/// the alert but `except`, in order with everything else about the product.
fn to_markets(
    alert: &AlertView,
    except: Option<MarketCode>,
    message_id: &str,
    body: &Message,
) -> Vec<OutboxMessage> {
    alert
        .markets()
        .into_iter()
        .filter(|m| Some(*m) != except)
        .map(|m| message_keyed(m, format!("{message_id}-{m}"), &alert.product_code, body.clone()))
        .collect()
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found("id", format!("no alert '{id}'"))
}

impl Hub {
    /// `GET /v1/alerts` for an OBP: a page of the alerts on its products, with `status` and
    /// meeting `criteria`, in id order, from after `cursor`. A page looks at
    /// [`openmvs_store::SCAN_PER_PAGE`] alerts at most and then ends with a cursor to go on from.
    pub async fn alerts(
        &self,
        obp: &str,
        status: Option<&str>,
        criteria: &AlertCriteria,
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
            product_code: criteria.product_code.clone(),
            after: None,
            limit: openmvs_store::SCAN_BATCH,
        };
        let (alerts, next_cursor) = openmvs_store::scan_page(
            |after| {
                let filter = HubAlertFilter { after, ..filter.clone() };
                async move { self.store.alerts(&filter).await }
            },
            cursor.map(AlertId::from),
            limit,
            |a: &HubAlertRecord| a.id.clone(),
            |v: &AlertView| v.id.clone(),
            |a| Ok::<_, StoreError>(Some(view(a)?).filter(|v| criteria.matches(v))),
        )
        .await?;
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
    /// OBP `Own` access): moves the alert forward in its lifecycle (or reopens a closed one);
    /// closing needs a classification. Refusals are audited.
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
        let work = AlertWork::Status(StatusChange { status, classification, comment });
        self.work_alert(obp, id, work, "alert-status", &request).await.map(|(a, _)| a)
    }

    /// `POST /v1/alerts/{id}/comments` for an OBP, on its own alerts.
    pub async fn comment_alert(&self, obp: &str, id: &str, text: &str) -> Result<AlertComment, ApiError> {
        self.caller(obp).await?;
        let request = json!({"text": text});
        let (_, comment) =
            self.work_alert(obp, id, AlertWork::Comment(text), "alert-comment", &request).await?;
        Ok(comment.expect("a comment's work adds a comment"))
    }

    async fn work_alert(
        &self,
        obp: &str,
        id: &str,
        work: AlertWork<'_>,
        operation: &str,
        request: &serde_json::Value,
    ) -> Result<(AlertView, Option<AlertComment>), ApiError> {
        let subject = format!("alert/{id}");
        let refuse = |e: ApiError| self.refuse(obp, operation, &subject, request, e);
        let alert_id = AlertId::from(id);
        let role = Role::Obp.to_string();
        for _ in 0..8 {
            let now = self.clock.now();
            let current = match self.store.alert(&alert_id).await? {
                Some(a) if a.obp == obp => a,
                _ => return Err(refuse(not_found(id)).await),
            };
            let who = Worker { by: obp, role: &role, at: now };
            let done =
                match decide_work(current.status, &current.thread, &work, &who, [random_u64(), random_u64()])
                {
                    Ok(d) => d,
                    Err(e) => return Err(refuse(ApiError::malformed(e.field(), e.to_string())).await),
                };
            let update = AlertUpdate::to_thread(alert_id.clone(), current.version, done.thread);
            let answer = view(&HubAlertRecord {
                status: update.status,
                classification: update.classification,
                comment: update.comment.clone().or(current.comment.clone()),
                thread: update.thread.clone(),
                ..current.clone()
            })?;
            let result = kept::alert_value(&answer);
            let r =
                Record { operation, subject: &subject, code: ReturnCode::Success, request, result: &result };
            let mut audit = vec![self.entry(obp, now, r)];
            if done.report_to_nca {
                // DR Art 37(d): the confirmed falsification is on record for the authorities.
                audit.push(Entry {
                    operation: "nca-report".into(),
                    subject: format!("{}/{}", current.market, current.id),
                    ..audit[0].clone()
                });
            }
            let changes = done.change.iter().map(|c| Message::AlertChange(AlertChangeMsg::new(id, c)));
            let comments = done.comment.iter().map(|c| Message::AlertComment(AlertCommentMsg::new(id, c)));
            let mut outbox = Vec::new();
            for body in changes.chain(comments) {
                outbox.extend(to_markets(&answer, None, &new_id("HMS", now), &body));
            }
            let uow =
                HubUnitOfWork { alert_updates: vec![update], audit, outbox, ..HubUnitOfWork::default() };
            match self.commit(uow).await {
                Ok(()) => return Ok((answer, done.comment)),
                // Changed meanwhile: decide again on the new thread.
                Err(StoreError::Conflict(Conflict::AlertStatus)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(openmvs_store::unavailable("the alert keeps changing"))
    }

    /// A status change or comment made at the national system of `origin`: added to the hub's
    /// thread once, sent on to the other market that holds the alert, and called back to the OBP.
    /// `Err` says why it can never apply.
    pub(crate) async fn relay_alert_change(
        &self,
        origin: MarketCode,
        message_id: &str,
        body: &Message,
        uow: &mut HubUnitOfWork,
    ) -> Result<Result<String, String>, ApiError> {
        let (alert_id, entry) = match body.alert_entry() {
            Some(Ok(x)) => x,
            Some(Err(why)) => return Ok(Err(why)),
            None => return Ok(Err("not an alert change".into())),
        };
        let Some(current) = self.store.alert(&AlertId::from(alert_id)).await? else {
            return Ok(Err(format!("no alert '{alert_id}' at the hub")));
        };
        let alert = view(&current)?;
        if !alert.markets().contains(&origin) {
            return Ok(Err(format!("alert {alert_id} does not concern {origin}")));
        }
        let mut thread = current.thread.clone();
        if !thread.add_entry(entry) {
            return Ok(Ok(format!("alert {alert_id}: held before")));
        }
        // The OBP hears of it as the markets do: the message's own change or comment.
        let mut event = serde_json::to_value(body).expect("a message always serialises");
        if let Some(o) = event.as_object_mut() {
            let kind = o.remove("kind").unwrap_or_default();
            o.insert("event".into(), kind);
            o.insert("market".into(), json!(origin.as_str()));
        }
        let update = update_to(&current, thread);
        let note = format!("alert {alert_id}: {} -> {}", current.status, update.status);
        uow.alert_updates.push(update);
        uow.outbox.extend(to_markets(&alert, Some(origin), message_id, body));
        if let Some(obp) = self.store.obp(&current.obp).await?
            && obp.callback_url.is_some()
        {
            uow.outbox.push(crate::callback::callback_message(
                obp.id.as_str(),
                format!("{message_id}-callback"),
                &current.product_code,
                event,
            ));
        }
        Ok(Ok(note))
    }
}
