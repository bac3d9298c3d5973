//! The business figures `/metrics` shows of the hub: the alerts this node received from national
//! systems and stored for an OBP, per alert code since it started (counted when their unit of
//! work commits, so an alert forwarded again counts nothing); the alerts not closed, per status;
//! and the outbox per destination, a market or an OBP's callback (`callback:<obp>`): backlog,
//! messages whose last attempt failed, dead letters. The service answers with plain counts;
//! `openmvs-http` writes them through `openmvs_telemetry::Exposition`.

use openmvs_core::alert::AlertStatus;
use openmvs_core::return_code::AlertCode;
use openmvs_store::QueueCounts;
use openmvs_store::hub::HubAlertRecord;

use crate::{ApiError, Hub};

/// The alert codes of the alerts a unit of work carries, taken before it is committed.
pub(crate) fn carried(alerts: &[HubAlertRecord]) -> Vec<AlertCode> {
    // An alert is checked to read as one before it is stored; one that did not would not count.
    alerts.iter().filter_map(|a| crate::alerts::view(a).ok()).map(|v| v.code).collect()
}

impl Hub {
    /// Counts the alerts of a committed unit (a unit with an alert forwarded before does not
    /// commit at all).
    pub(crate) fn count_received(&self, codes: &[AlertCode]) {
        for code in codes {
            self.alerts_received.add(*code);
        }
    }

    /// The alerts this node received and stored since it started, per alert code (every code,
    /// 0 included).
    pub fn alerts_received(&self) -> Vec<(AlertCode, u64)> {
        self.alerts_received.counts()
    }

    /// The alerts not closed, per status (OPEN, INVESTIGATING, ESCALATED), every OBP's.
    ///
    /// # Errors
    ///
    /// 503 when the store cannot be read.
    pub async fn open_alerts(&self) -> Result<Vec<(AlertStatus, u64)>, ApiError> {
        Ok(self.store.open_alert_counts().await?)
    }

    /// The outbox per destination with any message, in destination order: a market, or
    /// `callback:<obp>`.
    ///
    /// # Errors
    ///
    /// 503 when the store cannot be read.
    pub async fn outbox_queues(&self) -> Result<Vec<QueueCounts>, ApiError> {
        Ok(self.store.queue_counts().await?)
    }
}
