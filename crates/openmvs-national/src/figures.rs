//! The business figures `/metrics` shows of a national system: the alerts this node raised per
//! alert code since it started, counted when their unit of work commits (an alert whose source
//! event raised one before is skipped by the store and not counted; the copy of an inter-market
//! alert that another market raised is kept here but counted there); the market's alerts not
//! closed, per status; and the outbox to the hub (backlog, messages whose last attempt failed,
//! dead letters). The service answers with plain counts; `openmvs-http` writes them through
//! `openmvs_telemetry::Exposition`.

use openmvs_core::alert::AlertStatus;
use openmvs_core::ids::AlertId;
use openmvs_core::return_code::AlertCode;
use openmvs_store::{Committed, QueueCounts};

use crate::{ApiError, National};

impl National {
    /// The alerts a unit of work raises here, taken before it is committed: those decided on a
    /// pack this market holds, not the copies of alerts another market raised.
    pub(crate) fn raised_in(&self, alerts: &[openmvs_store::AlertRecord]) -> Vec<(AlertId, AlertCode)> {
        alerts
            .iter()
            .filter(|a| a.pack_market == self.config.market)
            .map(|a| (a.id.clone(), a.code))
            .collect()
    }

    /// Counts the alerts of a committed unit that the store kept.
    pub(crate) fn count_raised(&self, carried: &[(AlertId, AlertCode)], committed: &Committed) {
        for (id, code) in carried {
            if !committed.alerts_skipped.contains(id) {
                self.alerts_raised.add(*code);
            }
        }
    }

    /// The alerts this node raised since it started, per alert code (every code, 0 included).
    pub fn alerts_raised(&self) -> Vec<(AlertCode, u64)> {
        self.alerts_raised.counts()
    }

    /// The market's alerts not closed, per status (OPEN, INVESTIGATING, ESCALATED).
    ///
    /// # Errors
    ///
    /// 503 when the store cannot be read.
    pub async fn open_alerts(&self) -> Result<Vec<(AlertStatus, u64)>, ApiError> {
        Ok(self.store.open_alert_counts().await?)
    }

    /// The outbox per destination (a national system has one, the hub): backlog, messages whose
    /// last attempt failed, dead letters.
    ///
    /// # Errors
    ///
    /// 503 when the store cannot be read.
    pub async fn outbox_queues(&self) -> Result<Vec<QueueCounts>, ApiError> {
        Ok(self.store.queue_counts().await?)
    }
}
