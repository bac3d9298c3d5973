//! The national system as a service: everything an end user, the NMVO, the NCA and the hub can ask
//! of it, over the storage ports and the domain core, with no HTTP.
//!
//! Every state-changing request follows one shape: read the facts, let the core decide, put the
//! whole outcome (pack state with its expected version, audit record, alert, outbox messages,
//! idempotency record) into one unit of work, commit it, and answer only once it is durable. A
//! conflict (another request changed the pack meanwhile) means: read again and decide again.

mod alerts;
pub mod audit;
mod auth;
mod bulk;
pub mod clock;
mod figures;
pub mod guessing;
mod health;
pub mod hub;
mod ids;
mod lifecycle;
mod locks;
mod logins;
mod packs;
mod query;
pub mod request;

use std::sync::Arc;

use openmvs_audit::Entry;
use openmvs_auth::{KeyRing, Validator};
use openmvs_core::guessing::GuessingPolicy;
use openmvs_core::ids::{ClientId, Location, MarketCode};
use openmvs_core::pack::Policy;
use openmvs_core::roles::Role;
use openmvs_core::time::{Clock, Timestamp};
use openmvs_store::{NodeId, Store};
use tokio::sync::{Notify, RwLock};

pub use audit::{
    OutsideHead, VerifyReport, checkpoint_of, parse_heads, signed_head, verify_audit, verify_audit_with_heads,
};
pub use auth::{NewClient, SIGNING_KEYS_FIELD, TOKEN_RETRY_AFTER};
pub use bulk::BulkBackoff;
pub use guessing::{GuessingCounter, LocalGuessing};
pub use hub::{HubLink, PACKS_PER_UNIT};
pub use ids::{new_id, random_u64};
pub use lifecycle::{CLIENT_USE_FLUSH, SECURITY_REFRESH};
pub use logins::{CertificateCheck, LOGIN_RECHECK, LoginTarget, SecretLogin, SecretLogins};
pub use openmvs_core::error::ApiError;

/// The most rows one bulk request may carry.
pub const MAX_BULK_ROWS: usize = 100_000;

/// How a national system is set up.
#[derive(Debug, Clone)]
pub struct NationalConfig {
    /// The market it serves.
    pub market: MarketCode,
    /// The market's rules (undo window, wholesaler supply).
    pub policy: Policy,
    /// The most rows of a bulk request.
    pub max_bulk_rows: usize,
    /// Rows processed per unit of work by the bulk worker.
    pub bulk_chunk: usize,
    /// Delivery attempts before an outbox message is moved to the dead-letter list.
    pub max_delivery_attempts: u32,
    /// How long a node holds an outbox message it is sending or a bulk job it is working on
    /// before another node may take it over (the holder renews a bulk lease with every chunk).
    pub lease: std::time::Duration,
    /// When a client's (or a premises') unknown serials and mismatches slow it down, refuse it
    /// and alert the NMVO (`guessing.rs`).
    pub guessing: GuessingPolicy,
    /// Logins with a secret on every request (the NMVS SOAP interface): whether they are taken,
    /// and how long a checked one is remembered (`logins.rs`).
    pub secret_logins: SecretLogins,
}

impl NationalConfig {
    /// The defaults for a market.
    pub fn new(market: MarketCode) -> NationalConfig {
        NationalConfig {
            market,
            policy: Policy::default(),
            max_bulk_rows: MAX_BULK_ROWS,
            bulk_chunk: 256,
            max_delivery_attempts: 2000,
            lease: std::time::Duration::from_secs(30),
            guessing: GuessingPolicy::default(),
            secret_logins: SecretLogins::default(),
        }
    }
}

/// Who is asking: taken from a validated access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The client id.
    pub client_id: ClientId,
    /// Its role.
    pub role: Role,
    /// Its market.
    pub market: MarketCode,
    /// Its premises.
    pub location: Location,
}

/// The national system.
pub struct National {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: NationalConfig,
    keys: RwLock<KeyRing>,
    validator: Validator,
    hub: Option<Arc<dyn HubLink>>,
    /// Wakes the bulk worker when a job arrives.
    bulk_wake: Notify,
    /// Wakes the outbox relay when a message is committed.
    relay_wake: Notify,
    /// Whether the relay took over what its outbox held from before this process started.
    relay_resumed: openmvs_store::relay::Resumed,
    /// This process among the nodes sharing the store: the holder of the leases it takes.
    node_id: NodeId,
    /// Requests on one pack take turns inside this node.
    pack_locks: locks::PackLocks,
    /// When this node last looked in the store for token-signing keys it did not know.
    keys_checked_at: std::sync::atomic::AtomicI64,
    /// Set while this node's reads of its token-signing keys fail: it issues no token then.
    keys_unreadable: std::sync::Mutex<Option<auth::KeysUnreadable>>,
    /// The clients cut off, as this node last read them (`refresh_security`) or cut them off.
    disabled: std::sync::RwLock<std::collections::HashSet<ClientId>>,
    /// Counts the changes of `disabled` this node made itself.
    disabled_changes: std::sync::atomic::AtomicU64,
    /// When each client was last seen on this node since the last flush to the store.
    seen: std::sync::Mutex<std::collections::HashMap<ClientId, i64>>,
    /// Whether the store commits, as the last probe or commit found it.
    store_ok: std::sync::atomic::AtomicBool,
    /// The counts of unknown serials and mismatches per client and premises.
    guessing: Arc<dyn GuessingCounter>,
    /// The alerts this node raised, per code, for `/metrics`.
    alerts_raised: openmvs_telemetry::AlertTally,
    /// Logins with a secret on every request that were checked lately, and the logins that
    /// name a client other than by its id.
    logins: logins::LoginCache,
}

impl National {
    /// Builds the service over an open store. Loads the token-signing keys, creating the first
    /// one if the store has none.
    pub async fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: NationalConfig,
        hub: Option<Arc<dyn HubLink>>,
    ) -> Result<National, ApiError> {
        let ring = auth::load_key_ring(store.as_ref(), config.market, clock.now()).await?;
        let disabled = store.disabled_clients().await?.into_iter().collect();
        let validator = ring.validator();
        let node_id = NodeId::new(new_id("node", clock.now()));
        let guessing = Arc::new(LocalGuessing::new(config.guessing.clone()));
        let logins = logins::LoginCache::new(&config.secret_logins);
        Ok(National {
            store,
            clock,
            config,
            keys: RwLock::new(ring),
            validator,
            hub,
            bulk_wake: Notify::new(),
            relay_wake: Notify::new(),
            relay_resumed: openmvs_store::relay::Resumed::default(),
            node_id,
            pack_locks: locks::PackLocks::new(),
            keys_checked_at: std::sync::atomic::AtomicI64::new(i64::MIN / 2),
            keys_unreadable: std::sync::Mutex::new(None),
            disabled: std::sync::RwLock::new(disabled),
            disabled_changes: std::sync::atomic::AtomicU64::new(0),
            seen: std::sync::Mutex::new(std::collections::HashMap::new()),
            store_ok: std::sync::atomic::AtomicBool::new(true),
            guessing,
            alerts_raised: openmvs_telemetry::AlertTally::new(),
            logins,
        })
    }

    /// The service with its counts of unknown serials and mismatches kept by `counter` instead of
    /// this node's memory (a counter the nodes share through the store).
    pub fn with_guessing_counter(mut self, counter: Arc<dyn GuessingCounter>) -> National {
        self.guessing = counter;
        self
    }

    /// The market served.
    pub fn market(&self) -> MarketCode {
        self.config.market
    }

    /// The configuration.
    pub fn config(&self) -> &NationalConfig {
        &self.config
    }

    /// This node's id among the nodes sharing the store.
    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The audit record of one operation by `actor` in this market.
    pub(crate) fn audit_entry(&self, actor: &Actor, now: Timestamp, r: Record<'_>) -> Entry {
        Entry {
            market: self.config.market.to_string(),
            at_millis: now.unix_millis(),
            actor: actor.client_id.to_string(),
            role: actor.role.to_string(),
            location: actor.location.to_string(),
            operation: r.operation.to_owned(),
            subject: r.subject.to_owned(),
            return_code: r.return_code.to_owned(),
            request: r.request,
            result: r.result,
        }
    }
}

/// What an audit record says about an operation, besides who, where and when.
pub(crate) struct Record<'a> {
    /// What was done, e.g. `supply`, `alert-status`.
    pub operation: &'a str,
    /// What it was done to, e.g. `GTIN/<product code>/<serial>`.
    pub subject: &'a str,
    /// The outcome's return code.
    pub return_code: &'a str,
    /// The request as JSON.
    pub request: String,
    /// The result as JSON.
    pub result: String,
}
