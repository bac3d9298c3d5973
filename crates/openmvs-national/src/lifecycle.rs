//! The lifecycle of clients and token-signing keys: a client cut off or let back in, a key revoked,
//! each committed with its audit record; and how every node of a system learns of it within
//! seconds, whatever node or command made the change.
//!
//! Tokens are validated locally, without a read of the store per request. So each node keeps the
//! set of clients cut off in memory and reads it again every second or so
//! ([`National::refresh_security`], one small indexed read), together with the keys (a revoked
//! key leaves the ring and, with it, the validator's cache). The node that makes a change applies
//! it to itself at once. When each client was last seen is kept the same way: in memory per node,
//! written to the store now and then ([`National::flush_client_use`]), never one write per request.

use std::sync::Arc;
use std::time::Duration;

use openmvs_core::answer::ClientView;
use openmvs_core::ids::{ClientId, Location, MarketCode};
use openmvs_core::return_code::ReturnCode;
use openmvs_core::roles::{Access, Action, Role, access};
use openmvs_core::time::Timestamp;
use openmvs_store::{ClientChange, ClientRecord, KeyRevocation, StoreError, UnitOfWork};
use tokio::sync::watch;

use crate::{Actor, ApiError, National, Record};

/// How often the server's security refresh reads the clients cut off and the keys.
pub const SECURITY_REFRESH: Duration = Duration::from_secs(1);
/// How often the nodes write when each client was last seen.
pub const CLIENT_USE_FLUSH: Duration = Duration::from_secs(30);

/// A client as its NMVO sees it.
fn client_view(c: &ClientRecord) -> ClientView {
    ClientView {
        client_id: c.client_id.clone(),
        role: c.role,
        location: c.location.clone(),
        name: c.name.clone(),
        disabled: c.disabled,
        created_at: c.created_at,
        last_used_at: c.last_used_at,
    }
}

/// The operator at the command line of `market`'s system (see [`National::operator`]).
pub(crate) fn operator_of(market: MarketCode) -> Actor {
    Actor {
        client_id: "openmvs-admin".into(),
        role: Role::Nmvo,
        market,
        location: Location::new("admin-cli").expect("a valid location"),
    }
}

impl National {
    /// The operator at the command line (`openmvs admin ...`), as its changes are audited: the
    /// national organisation, acting on the system itself.
    pub fn operator(&self) -> Actor {
        operator_of(self.config.market)
    }

    fn may_manage_clients(&self, actor: &Actor) -> Result<(), ApiError> {
        if actor.market != self.config.market {
            return Err(
                ApiError::new(ReturnCode::Forbidden).with("market", "the token is for another market")
            );
        }
        if access(actor.role, Action::ManageClients, &self.config.policy) != Access::Market {
            return Err(ApiError::new(ReturnCode::Forbidden)
                .with("authorization", "only the NMVO manages the clients of its market"));
        }
        Ok(())
    }

    /// Every client of the market, in id order, with when it was last seen (including this
    /// node's sightings not yet written to the store): `GET /v1/admin/clients`.
    pub async fn list_clients(&self, actor: &Actor) -> Result<Vec<ClientView>, ApiError> {
        self.may_manage_clients(actor)?;
        let mut clients = self.store.clients().await?;
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for c in &mut clients {
            if let Some(&at) = seen.get(&c.client_id) {
                let at = Timestamp::from_unix_millis(at);
                c.last_used_at = Some(c.last_used_at.map_or(at, |stored| stored.max(at)));
            }
        }
        Ok(clients.iter().map(client_view).collect())
    }

    /// Cuts a client off (`disabled`) or lets it back in, with an audit record in the same unit
    /// of work. A client cut off obtains no token, and the tokens it holds are refused: at once on
    /// this node, and on the others at their next [`refresh_security`](Self::refresh_security).
    ///
    /// # Errors
    ///
    /// 403 for anyone but the NMVO; 404 naming `client_id` for a client this market does not
    /// have; 400 naming `client_id` for the actor's own client.
    pub async fn set_client_disabled(
        &self,
        actor: &Actor,
        client_id: &str,
        disabled: bool,
    ) -> Result<ClientView, ApiError> {
        self.may_manage_clients(actor)?;
        let missing = || {
            ApiError::new(ReturnCode::NotFound)
                .with("client_id", format!("no client '{client_id}' in market {}", self.config.market))
        };
        let id = ClientId::from(client_id);
        let client = self.store.client(&id).await?.filter(|c| c.market == self.config.market);
        let Some(client) = client else { return Err(missing()) };
        if disabled && client.client_id == actor.client_id {
            return Err(ApiError::field("client_id", "a client cannot disable itself"));
        }
        let now = self.clock.now();
        let operation = if disabled { "client-disable" } else { "client-enable" };
        let subject = format!("client/{client_id}");
        let entry = self.audit_entry(
            actor,
            now,
            Record {
                operation,
                subject: &subject,
                return_code: ReturnCode::Success.as_str(),
                request: serde_json::json!({"client_id": client_id, "disabled": disabled}).to_string(),
                result: serde_json::json!({"was_disabled": client.disabled}).to_string(),
            },
        );
        let uow = UnitOfWork {
            client_changes: vec![ClientChange {
                client_id: id.clone(),
                disabled: Some(disabled),
                used_at: None,
            }],
            audit: vec![entry],
            ..UnitOfWork::default()
        };
        match self.commit(uow).await {
            Ok(_) => {}
            Err(StoreError::Conflict(_)) => return Err(missing()),
            Err(e) => return Err(e.into()),
        }
        {
            let mut set = self.disabled.write().unwrap_or_else(|p| p.into_inner());
            self.disabled_changes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if disabled {
                set.insert(id);
            } else {
                set.remove(&id);
            }
        }
        self.forget_logins(client_id);
        tracing::info!(client_id, by = %actor.client_id, disabled, "client state changed");
        Ok(client_view(&ClientRecord { disabled, ..client }))
    }

    /// Whether this node refuses the client's tokens.
    pub fn is_disabled(&self, client_id: &str) -> bool {
        let set = self.disabled.read().unwrap_or_else(|p| p.into_inner());
        !set.is_empty() && set.contains(client_id)
    }

    /// Notes that the client made a request now (kept in memory until the next flush).
    pub(crate) fn seen(&self, client_id: &str) {
        let now = self.clock.now().unix_millis();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get_mut(client_id) {
            Some(at) => *at = (*at).max(now),
            None => {
                seen.insert(client_id.into(), now);
            }
        }
    }

    /// Writes when each client was last seen on this node since the last flush, in one unit of
    /// work; returns how many clients it wrote. On failure the sightings are kept for the next.
    pub async fn flush_client_use(&self) -> Result<usize, ApiError> {
        let taken = std::mem::take(&mut *self.seen.lock().unwrap_or_else(|p| p.into_inner()));
        if taken.is_empty() {
            return Ok(0);
        }
        let mut ids: Vec<&ClientId> = taken.keys().collect();
        ids.sort();
        let client_changes = ids
            .iter()
            .map(|id| ClientChange {
                client_id: (*id).clone(),
                disabled: None,
                used_at: Some(Timestamp::from_unix_millis(taken[*id])),
            })
            .collect();
        match self.commit(UnitOfWork { client_changes, ..UnitOfWork::default() }).await {
            Ok(_) => Ok(taken.len()),
            Err(e) => {
                let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
                for (id, at) in taken {
                    let e = seen.entry(id).or_insert(at);
                    *e = (*e).max(at);
                }
                Err(e.into())
            }
        }
    }

    /// Ends the validity of a token-signing key that no longer signs, at once: the tokens it
    /// signed are refused from now on, on this node now and on the others at their next
    /// [`refresh_security`](Self::refresh_security). The active key cannot be retired this way:
    /// rotate first (`openmvs admin rotate-token-key`), then retire the old key.
    ///
    /// # Errors
    ///
    /// 404 naming `kid` for a key the store does not have; 400 naming `kid` for the active key.
    pub async fn retire_token_key(&self, actor: &Actor, kid: &str) -> Result<(), ApiError> {
        self.may_manage_clients(actor)?;
        let keys = self.read_keys().await?;
        let missing =
            || ApiError::new(ReturnCode::NotFound).with("kid", format!("no token-signing key '{kid}'"));
        let Some(key) = keys.iter().find(|k| k.kid == kid) else { return Err(missing()) };
        if key.active {
            return Err(ApiError::field(
                "kid",
                format!(
                    "'{kid}' is the active signing key: make a new key active first \
                     (openmvs admin rotate-token-key), then retire this one"
                ),
            ));
        }
        let now = self.clock.now();
        let subject = format!("token-key/{kid}");
        let entry = self.audit_entry(
            actor,
            now,
            Record {
                operation: "retire-token-key",
                subject: &subject,
                return_code: ReturnCode::Success.as_str(),
                request: serde_json::json!({"kid": kid}).to_string(),
                result: serde_json::json!({"revoked_before": key.revoked_at.is_some()}).to_string(),
            },
        );
        let uow = UnitOfWork {
            key_revocation: Some(KeyRevocation { kid: kid.into(), at: now }),
            audit: vec![entry],
            ..UnitOfWork::default()
        };
        match self.commit(uow).await {
            Ok(_) => {}
            // Made active by another node meanwhile.
            Err(StoreError::Conflict(_)) => {
                return Err(ApiError::field(
                    "kid",
                    format!("'{kid}' became the active signing key meanwhile"),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        let mut ring = self.keys.write().await;
        ring.retire(kid).map_err(openmvs_store::unavailable)?;
        tracing::info!(kid, by = %actor.client_id, "token-signing key revoked");
        Ok(())
    }

    /// Reads from the store what other nodes and commands changed: the clients cut off (their
    /// tokens are refused from now on), keys revoked (they leave the ring, and the validator's
    /// cache is emptied with it) and a new active key. Called every second or so by the server
    /// ([`run_security_refresh`](Self::run_security_refresh)).
    ///
    /// # Errors
    ///
    /// The store cannot be read; nothing changed then.
    pub async fn refresh_security(&self) -> Result<(), ApiError> {
        // A change this node makes while the read is under way is not undone by it: the set is
        // replaced only if no change was made here since the read began (else at the next refresh).
        let local = self.disabled_changes.load(std::sync::atomic::Ordering::SeqCst);
        let disabled: std::collections::HashSet<ClientId> =
            self.store.disabled_clients().await?.into_iter().collect();
        let changed = *self.disabled.read().unwrap_or_else(|p| p.into_inner()) != disabled;
        if changed {
            let mut set = self.disabled.write().unwrap_or_else(|p| p.into_inner());
            if self.disabled_changes.load(std::sync::atomic::Ordering::SeqCst) == local {
                for id in disabled.difference(&set) {
                    tracing::info!(client_id = %id, "client disabled by another node or command: its tokens are refused");
                    self.forget_logins(id.as_str());
                }
                for id in set.difference(&disabled) {
                    tracing::info!(client_id = %id, "client enabled again by another node or command");
                    self.forget_logins(id.as_str());
                }
                *set = disabled;
            }
        }
        let records = self.read_keys().await?;
        self.follow_active_key(&records).await?;
        let revoked: Vec<&str> =
            records.iter().filter(|k| k.revoked_at.is_some() && !k.active).map(|k| k.kid.as_str()).collect();
        if revoked.is_empty() {
            return Ok(());
        }
        let in_ring = {
            let ring = self.keys.read().await;
            ring.verification_keys().into_iter().any(|(kid, _)| revoked.contains(&kid.as_str()))
        };
        if in_ring {
            let mut ring = self.keys.write().await;
            for kid in revoked {
                if ring.retire(kid).unwrap_or(false) {
                    tracing::info!(kid, "token-signing key revoked by another node: its tokens are refused");
                }
            }
        }
        Ok(())
    }

    /// Refreshes this node's view of clients and keys every `every`
    /// ([`SECURITY_REFRESH`] in the server), and writes when clients were last seen every
    /// [`CLIENT_USE_FLUSH`], until `shutdown` turns true (then it writes them a last time).
    pub async fn run_security_refresh(self: Arc<Self>, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut since_flush = Duration::ZERO;
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
            // Said once when it starts failing and once when it works again, not every second.
            match self.refresh_security().await {
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "refreshing the clients cut off and the token keys failed");
                }
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("refreshing the clients cut off and the token keys works again");
                }
                _ => {}
            }
            since_flush += every;
            if since_flush >= CLIENT_USE_FLUSH {
                since_flush = Duration::ZERO;
                if let Err(e) = self.flush_client_use().await {
                    tracing::warn!(error = %e, "writing when clients were last seen failed");
                }
            }
        }
        if let Err(e) = self.flush_client_use().await {
            tracing::warn!(error = %e, "writing when clients were last seen failed");
        }
    }
}
