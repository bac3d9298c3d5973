//! Whether the store commits, as a probe write ([`National::probe_store`]) finds out: the server
//! runs one every second or so, and every commit of the service goes through `National::commit`,
//! which runs one at once when the store answers "unavailable". Readiness follows it.

use std::sync::atomic::Ordering;

use openmvs_store::{Committed, Heartbeat, StoreError, StoreResult, UnitOfWork};

use crate::{ApiError, National};

/// How long a probe write may take before the store counts as not committing.
pub const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl National {
    /// Commits a unit of work. When the store answers "unavailable" (disk full, read-only files,
    /// no writable primary, the writer stopped, or only this unit waited too long for a lock), a
    /// probe write follows at once: if it fails too, the store counts as not committing (and
    /// readiness is false) until a later probe succeeds; a unit that failed alone changes nothing.
    /// A commit the database did not confirm within the store's bound counts as not committing at
    /// once, with no probe: the request has waited its bound already.
    /// The alerts a committed unit stored are counted for `/metrics`.
    pub(crate) async fn commit(&self, uow: UnitOfWork) -> StoreResult<Committed> {
        let alerts = self.raised_in(&uow.alerts);
        let r = self.store.commit(uow).await;
        match &r {
            Ok(committed) => self.count_raised(&alerts, committed),
            Err(e) if e.is_unconfirmed() => self.mark_store(false, &e.to_string()),
            Err(StoreError::Unavailable(_)) => {
                let _ = self.probe_store().await;
            }
            Err(_) => {}
        }
        r
    }

    /// Writes this node's heartbeat through the store's ordinary commit path (the same writer,
    /// transaction and fsync as any request): the store commits again if it succeeds, and does
    /// not if it fails. Called every second or so by the server.
    ///
    /// # Errors
    ///
    /// Why the store cannot commit, as unavailable.
    pub async fn probe_store(&self) -> Result<(), ApiError> {
        let uow = UnitOfWork {
            heartbeat: Some(Heartbeat { node_id: self.node_id.clone(), at: self.clock.now() }),
            ..UnitOfWork::default()
        };
        let Ok(r) = tokio::time::timeout(PROBE_TIMEOUT, self.store.commit(uow)).await else {
            let why = format!("a probe write did not commit within {} s", PROBE_TIMEOUT.as_secs());
            self.mark_store(false, &why);
            return Err(openmvs_store::unavailable(why));
        };
        match r {
            Ok(_) => {
                self.mark_store(true, "a probe write committed");
                Ok(())
            }
            Err(StoreError::Unavailable(why)) => {
                self.mark_store(false, &why);
                Err(openmvs_store::unavailable(why))
            }
            Err(e) => {
                // Not a failure to commit (a corrupt row, a conflict): the store itself wrote.
                self.mark_store(true, "a probe write was answered");
                Err(e.into())
            }
        }
    }

    /// Messages waiting in the outbox for the hub.
    ///
    /// # Errors
    ///
    /// 503 when the store cannot be read.
    pub async fn outbox_pending(&self) -> Result<u64, ApiError> {
        Ok(self.store.pending().await?)
    }

    /// Whether the store commits, as the last probe or commit found it: readiness is false while
    /// it does not.
    pub fn store_ok(&self) -> bool {
        self.store_ok.load(Ordering::SeqCst)
    }

    /// Records whether the store commits, with one log line when that changes.
    fn mark_store(&self, ok: bool, why: &str) {
        if self.store_ok.swap(ok, Ordering::SeqCst) != ok {
            if ok {
                tracing::info!(cause = %why, "the store commits again: ready");
            } else {
                tracing::error!(cause = %why, "the store cannot commit: not ready until a probe write succeeds");
            }
        }
    }
}
