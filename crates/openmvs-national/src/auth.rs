//! Clients, access tokens and the keys that sign them.
//!
//! # When the token-signing keys cannot be read
//!
//! A node keeps its key ring in memory: it signs with the active key and validates every token
//! locally against the ring, reading the key table only to learn of changes (every
//! [`SECURITY_REFRESH`](crate::SECURITY_REFRESH), and when a token names a key it does not
//! know). While that read fails, the node stops issuing tokens (`POST /oauth/token` answers 503
//! with `Retry-After` [`TOKEN_RETRY_AFTER`], before any secret is checked) but keeps validating:
//!
//! - It stops signing because it can no longer learn that its key was rotated away and revoked
//!   (a leaked key): the operator's revocation must end the signing on every node within
//!   seconds, and a node that cannot read the table cannot tell.
//! - It keeps every verification key it holds, for as long as it runs: a key leaves the ring only
//!   when the node reads that it was revoked, never because a read failed. Validating needs the
//!   public keys alone, and no token outlives its lifetime ([`TOKEN_LIFETIME_SECS`] plus the
//!   leeway, which every validator enforces), so tokens issued before the failure are accepted
//!   until they expire and no longer. A key revoked meanwhile is refused by this node at its
//!   first successful read after.
//!
//! The node issues tokens again at its first successful read of the keys.

use openmvs_audit::Entry;
use openmvs_auth::{AuthError, Claims, KeyRing, SigningKeyPair, TOKEN_LIFETIME_SECS, earliest_retirement};
use openmvs_core::answer::IssuedToken;
use openmvs_core::ids::{KeyId, Location, MarketCode};
use openmvs_core::return_code::ReturnCode;
use openmvs_core::roles::Role;
use openmvs_core::time::Timestamp;
use openmvs_store::{ClientChange, ClientRecord, KeyRecord, NewKey, Store, StoreResult, UnitOfWork};

use crate::lifecycle::operator_of;
use crate::{Actor, ApiError, National, Record};

/// A client just created, with the only copy of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClient {
    /// The client id.
    pub client_id: String,
    /// The secret, shown once; only its hash is stored.
    pub client_secret: String,
}

/// The wait (`Retry-After`) a token request is asked for while this node cannot read its
/// token-signing keys. The node reads them every second, so it issues again within about a
/// second of the keys coming back; a client that holds a valid token loses nothing by waiting,
/// and one that holds none asks at most once in this interval instead of in a loop.
pub const TOKEN_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// The field of the 503 that refuses a token while the token-signing keys cannot be read.
pub const SIGNING_KEYS_FIELD: &str = "signing_keys";

/// Since when this node's reads of its token-signing keys fail (each cause is logged when the
/// failures start).
#[derive(Debug, Clone)]
pub(crate) struct KeysUnreadable {
    since: Timestamp,
}

fn secs(t: Timestamp) -> i64 {
    t.unix_millis().div_euclid(1000)
}

/// The unit of work that stores a new token-signing key and makes it the active one, retiring
/// `previous` (the key active until now, if any), with its audit record by `actor`. The record
/// names the keys, never their secrets.
fn key_rotation(
    market: MarketCode,
    actor: &Actor,
    pair: &SigningKeyPair,
    previous: Option<&str>,
    now: Timestamp,
) -> UnitOfWork {
    let key = KeyRecord {
        kid: pair.kid.as_str().into(),
        secret: pair.secret_bytes(),
        created_at: now,
        active: true,
        retired_at: None,
        revoked_at: None,
    };
    let entry = Entry {
        market: market.to_string(),
        at_millis: now.unix_millis(),
        actor: actor.client_id.to_string(),
        role: actor.role.to_string(),
        location: actor.location.to_string(),
        operation: "rotate-token-key".into(),
        subject: format!("token-key/{}", pair.kid),
        return_code: ReturnCode::Success.as_str().into(),
        request: serde_json::json!({"kid": pair.kid}).to_string(),
        result: serde_json::json!({"retired": previous}).to_string(),
    };
    UnitOfWork { new_key: Some(NewKey { key, at: now }), audit: vec![entry], ..UnitOfWork::default() }
}

/// Loads the token-signing keys: the active one signs, retired ones verify until every token
/// they signed has expired. Creates the first key when there is none, audited as the operator's
/// (see [`National::operator`]).
pub(crate) async fn load_key_ring(
    store: &dyn Store,
    market: MarketCode,
    now: Timestamp,
) -> Result<KeyRing, ApiError> {
    let mut records = store.keys().await?;
    if !records.iter().any(|k| k.active) {
        let pair = SigningKeyPair::generate();
        store.commit(key_rotation(market, &operator_of(market), &pair, None, now)).await?;
        records = store.keys().await?;
    }
    let active = records
        .iter()
        .find(|k| k.active)
        .ok_or_else(|| openmvs_store::unavailable("no active signing key"))?;
    let mut ring =
        KeyRing::new(SigningKeyPair::from_secret_bytes(Some(active.kid.to_string()), active.secret));
    for k in records.iter().filter(|k| !k.active && k.revoked_at.is_none()) {
        let still_needed = k.retired_at.is_none_or(|r| earliest_retirement(secs(r)) > secs(now));
        if still_needed {
            let pair = SigningKeyPair::from_secret_bytes(Some(k.kid.to_string()), k.secret);
            ring.add_verification_key(pair.kid.clone(), pair.public_bytes())
                .map_err(openmvs_store::unavailable)?;
        }
    }
    Ok(ring)
}

impl National {
    /// Reads the token-signing keys from the store and records whether the read worked: this node
    /// issues tokens only while its last read did (see the module comment).
    pub(crate) async fn read_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        let r = self.store.keys().await;
        let mut state = self.keys_unreadable.lock().unwrap_or_else(|p| p.into_inner());
        match (&r, state.as_ref()) {
            (Ok(_), Some(was)) => {
                tracing::info!(
                    since = %was.since.to_rfc3339(),
                    "the token-signing keys can be read again: tokens are issued again"
                );
                *state = None;
            }
            (Err(e), None) => {
                tracing::error!(
                    cause = %e,
                    "the token-signing keys cannot be read: no token is issued until they can; tokens \
                     already issued are accepted until they expire"
                );
                *state = Some(KeysUnreadable { since: self.clock.now() });
            }
            (Err(_), Some(_)) | (Ok(_), None) => {}
        }
        r
    }

    /// Whether this node issues tokens now: [`AuthError::Unavailable`] while its last read of
    /// the token-signing keys failed. A check of memory only, so a refusal costs nothing: the
    /// HTTP layer asks before the token endpoint's admission and any secret check.
    ///
    /// # Errors
    ///
    /// [`AuthError::Unavailable`], saying since when the keys cannot be read.
    pub fn token_issuing(&self) -> Result<(), AuthError> {
        let state = self.keys_unreadable.lock().unwrap_or_else(|p| p.into_inner());
        match state.as_ref() {
            None => Ok(()),
            Some(k) => Err(AuthError::Unavailable(format!(
                "this node cannot read its token-signing keys (since {}): tokens already issued are \
                     accepted until they expire",
                k.since.to_rfc3339()
            ))),
        }
    }

    /// `POST /oauth/token` with the client-credentials grant. Every attempt whose secret is
    /// checked is audited; while the token-signing keys cannot be read, none is (see
    /// [`token_issuing`](Self::token_issuing)).
    pub async fn token(&self, client_id: &str, client_secret: &str) -> Result<IssuedToken, AuthError> {
        self.token_issuing()?;
        let now = self.clock.now();
        let (stored, ok) = self.check_secret(client_id, client_secret).await?;
        let outcome = match (ok, &stored) {
            (true, Some(c)) => {
                let claims = Claims::new(
                    c.client_id.as_str(),
                    c.role.as_str(),
                    c.market.as_str(),
                    c.location.as_str(),
                    secs(now),
                );
                let token = self.keys.read().await.issue(&claims);
                Ok(IssuedToken { access_token: token, expires_in: TOKEN_LIFETIME_SECS })
            }
            _ => Err(AuthError::InvalidClient),
        };
        let request = serde_json::json!({"grant_type": "client_credentials", "client_id": client_id});
        let entry = self.login_entry(client_id, stored.as_ref(), outcome.is_ok(), request, now);
        // A token issued is a use of the client, recorded with the login's audit record.
        let client_changes = match (&outcome, &stored) {
            (Ok(_), Some(c)) => {
                vec![ClientChange { client_id: c.client_id.clone(), disabled: None, used_at: Some(now) }]
            }
            _ => Vec::new(),
        };
        self.commit(UnitOfWork { audit: vec![entry], client_changes, ..UnitOfWork::default() })
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        outcome
    }

    /// Checks a bearer token and says who holds it.
    pub async fn authenticate(&self, token: &str) -> Result<Actor, ApiError> {
        let now = secs(self.clock.now());
        let claims = match self.validator.validate(token, now) {
            // Signed by a key another node sharing the store made since this one last looked.
            Err(AuthError::UnknownKey) if self.learn_keys().await => self.validator.validate(token, now),
            r => r,
        };
        let claims = claims.map_err(|e| match e {
            AuthError::Internal(why) => openmvs_store::unavailable(why),
            e => ApiError::new(ReturnCode::Unauthenticated).with("authorization", e.to_string()),
        })?;
        let bad = |why: String| ApiError::new(ReturnCode::Unauthenticated).with("authorization", why);
        // A client cut off is refused whatever token it holds (see `refresh_security`).
        if self.is_disabled(&claims.sub) {
            return Err(bad(format!("client '{}' is disabled: its tokens are refused", claims.sub)));
        }
        self.seen(&claims.sub);
        Ok(Actor {
            role: Role::parse(&claims.role).ok_or_else(|| bad(format!("unknown role '{}'", claims.role)))?,
            market: MarketCode::new(&claims.market).map_err(|e| bad(e.to_string()))?,
            location: Location::new(&claims.location).map_err(|e| bad(e.to_string()))?,
            client_id: claims.sub.into(),
        })
    }

    /// Creates a client of this market and returns its id and its secret (shown once).
    pub async fn create_client(
        &self,
        role: Role,
        location: Location,
        name: &str,
    ) -> Result<NewClient, ApiError> {
        let client_id = openmvs_auth::new_client_id();
        let client_secret = openmvs_auth::new_client_secret();
        let secret_hash = openmvs_auth::hash_secret(&client_secret).map_err(openmvs_store::unavailable)?;
        let now = self.clock.now();
        let subject = format!("client/{client_id}");
        // The audit record names the client, never its secret or the secret's hash.
        let entry = self.audit_entry(
            &self.operator(),
            now,
            Record {
                operation: "client-create",
                subject: &subject,
                return_code: ReturnCode::Success.as_str(),
                request: serde_json::json!({
                    "client_id": client_id,
                    "role": role.as_str(),
                    "location": location.as_str(),
                    "name": name,
                })
                .to_string(),
                result: serde_json::json!({"created": true}).to_string(),
            },
        );
        let client = ClientRecord {
            client_id: client_id.as_str().into(),
            secret_hash,
            role,
            market: self.config.market,
            location,
            name: name.to_owned(),
            created_at: now,
            disabled: false,
            last_used_at: None,
        };
        self.commit(UnitOfWork { new_client: Some(client), audit: vec![entry], ..UnitOfWork::default() })
            .await?;
        Ok(NewClient { client_id, client_secret })
    }

    /// Adds to the ring, as verification keys, the keys other nodes sharing the store made and
    /// this one does not know yet; true if it learnt any. Looks at most once a second, so tokens
    /// naming unknown keys cannot make every request read the store.
    async fn learn_keys(&self) -> bool {
        let now = self.clock.now().unix_millis();
        let last = self.keys_checked_at.load(std::sync::atomic::Ordering::Relaxed);
        if now - last < 1000
            || self
                .keys_checked_at
                .compare_exchange(
                    last,
                    now,
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::Relaxed,
                )
                .is_err()
        {
            return false;
        }
        let Ok(records) = self.read_keys().await else { return false };
        let Ok(mut ring) = self.keys.try_write() else { return false };
        let known: Vec<String> = ring.verification_keys().into_iter().map(|(kid, _)| kid).collect();
        let mut learnt = false;
        // A revoked key is never learnt again: its tokens stay refused.
        for k in records
            .iter()
            .filter(|k| !known.iter().any(|kid| k.kid == kid.as_str()) && k.revoked_at.is_none())
        {
            let still_valid =
                k.retired_at.is_none_or(|r| earliest_retirement(secs(r)) > secs(self.clock.now()));
            if still_valid {
                let pair = SigningKeyPair::from_secret_bytes(Some(k.kid.to_string()), k.secret);
                learnt |= ring.add_verification_key(pair.kid.clone(), pair.public_bytes()).is_ok();
            }
        }
        if learnt {
            tracing::info!("learnt token-signing keys made by another node");
        }
        learnt
    }

    /// Picks up token-signing keys another process (another node, or `openmvs admin
    /// rotate-token-key`) stored: a new active key starts signing here too, and the previous one
    /// keeps verifying until its tokens have expired. Called periodically by the server.
    pub async fn reload_keys(&self) -> Result<bool, ApiError> {
        let records = self.read_keys().await?;
        self.follow_active_key(&records).await
    }

    /// Makes the key `records` name active the one this node signs with, if it is not yet.
    pub(crate) async fn follow_active_key(&self, records: &[KeyRecord]) -> Result<bool, ApiError> {
        let Some(active) = records.iter().find(|k| k.active) else { return Ok(false) };
        let mut ring = self.keys.write().await;
        if active.kid == ring.active().kid.as_str() {
            return Ok(false);
        }
        // Nodes that have not reloaded yet learn this key from the store the first time they see
        // a token it signed (`learn_keys`), so tokens are accepted everywhere from the start.
        ring.rotate(SigningKeyPair::from_secret_bytes(Some(active.kid.to_string()), active.secret))
            .map_err(openmvs_store::unavailable)?;
        tracing::info!(kid = %active.kid, "token-signing key rotated");
        Ok(true)
    }

    /// Makes a new token-signing key active. Tokens signed by the old key stay valid until they
    /// expire; other nodes pick the new key up when they reload their keys.
    pub async fn rotate_signing_key(&self) -> Result<String, ApiError> {
        let now = self.clock.now();
        let pair = SigningKeyPair::generate();
        let previous = self.read_keys().await?.into_iter().find(|k| k.active).map(|k| k.kid);
        let uow = key_rotation(
            self.config.market,
            &self.operator(),
            &pair,
            previous.as_ref().map(KeyId::as_str),
            now,
        );
        self.commit(uow).await?;
        let kid = pair.kid.clone();
        let mut ring = self.keys.write().await;
        // The validator follows the ring, so tokens of the new key are accepted from now on.
        ring.rotate(pair).map_err(openmvs_store::unavailable)?;
        Ok(kid)
    }
}
