//! The European Hub as a service, without HTTP: OBPs, product master data in immutable versions,
//! batches, streamed serial uploads kept only as keyed digests, distribution to the national
//! systems through a per-market outbox, recall and withdrawal; messages from the national systems
//! (multi-market pack states, alerts for OBPs), the OBPs' alerts and callbacks, OBP pack state
//! changes and the routing of inter-market requests.
//!
//! Every state change follows the national system's shape: read the facts, decide, put the whole
//! outcome (records, outbox messages, audit record) into one [`HubUnitOfWork`], commit it, and
//! answer only once it is durable. A conflict (another request changed the facts meanwhile) means:
//! read again and decide again.

mod alerts;
mod callback;
mod catalog;
mod digest;
mod figures;
mod inbound;
mod intermarket;
mod links;
mod pack_query;
mod pack_states;
mod relay;
mod uploads;

use std::sync::Arc;
use std::time::Duration;

use openmvs_audit::Entry;
use openmvs_core::ids::{MarketCode, ProductCode, Scheme};
use openmvs_core::return_code::ReturnCode;
use openmvs_core::time::{Clock, Timestamp};
use openmvs_store::BoxFuture;
use openmvs_store::hub::{HUB_AUDIT_MARKET, HubProductRecord, HubStore, HubUnitOfWork, ObpRecord};
use openmvs_store::{NodeId, OutboxMessage};
use openmvs_wire::hub::{
    Delivery, DeliveryAck, Envelope, IntermarketAnswer, IntermarketRequest, Message, PackQuery,
    PackQueryAnswer,
};
use tokio::sync::Notify;

pub use alerts::{DEFAULT_ALERT_LIMIT, MAX_ALERT_LIMIT};
pub use callback::{CallbackSender, MAX_CALLBACK_URL, MAX_EVENTS_PER_CALLBACK, SIGNATURE_HEADER};
pub use digest::{hmac_sha256, serial_digest};
pub use inbound::{AUDIT_HEAD_OPERATION, audit_head_subject, received_audit_heads};
pub use links::{LinkSeen, MarketStatus};
pub use openmvs_core::alert::{AlertPage, AlertView};
pub use openmvs_core::answer::CallbackAnswer;
pub use openmvs_core::catalog::{BatchAnswer, ProductAnswer, RecallAnswer, WithdrawalAnswer};
pub use openmvs_core::error::ApiError;
pub use openmvs_core::obp_states::{MarketPackState, PackAcrossMarkets, PackStateResult, PackStatesAnswer};
pub use openmvs_core::upload::{UploadAccepted, UploadView};
pub use pack_query::{NOT_DISTRIBUTED, UNKNOWN_STATE, UNREACHABLE};
pub use pack_states::MAX_PACK_STATE_SERIALS;
pub use relay::{MAX_BACKOFF, backoff};
pub use uploads::{IterLines, LineSource};

/// The most serials one upload may carry (api.md §3).
pub const MAX_UPLOAD_LINES: u64 = 10_000_000;
/// The most outbox messages sent to one market in one delivery.
pub const MAX_DELIVERY: usize = 100;
/// The most characters of a rejected line echoed back: enough to find it in the file, and a
/// bound on what a garbage line can make the hub store.
pub const MAX_ECHO_CHARS: usize = 64;
/// The most rejected lines [`Hub::upload`] lists; every one is kept and can be paged through the
/// store.
pub const MAX_LISTED_REJECTIONS: usize = 1000;

/// How the hub is set up.
#[derive(Clone)]
pub struct HubConfig {
    /// The secret of the keyed serial digests (HMAC-SHA256). The hub keeps digests, never serials
    /// (DR Art 33(1)); without the key a digest cannot be tested against a guessed serial. It
    /// must never change once serials are uploaded, or repeats would no longer be found.
    pub serial_key: [u8; 32],
    /// Serials per chunk: per unit of work and per serial message to a market.
    pub chunk_size: usize,
    /// Delivery attempts before an outbox message is moved to the dead-letter list.
    pub max_delivery_attempts: u32,
    /// The most lines of one upload.
    pub max_upload_lines: u64,
    /// The most messages of one delivery to a market.
    pub max_delivery: usize,
    /// How long the hub waits for one market's answer to an inter-market request (fmd-rules §4.10
    /// allows 300 ms per repository involved; the rest is the initiating market's own share).
    pub intermarket_budget: Duration,
    /// How long a hub node holds the outbox messages it is sending before another node's relay
    /// may take them over.
    pub lease: Duration,
}

impl HubConfig {
    /// The defaults, with the digest key.
    pub fn new(serial_key: [u8; 32]) -> HubConfig {
        HubConfig {
            serial_key,
            chunk_size: 10_000,
            max_delivery_attempts: 2000,
            max_upload_lines: MAX_UPLOAD_LINES,
            max_delivery: MAX_DELIVERY,
            intermarket_budget: Duration::from_millis(250),
            lease: Duration::from_secs(30),
        }
    }
}

// Hand-written so that the key never reaches a log.
impl std::fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubConfig")
            .field("serial_key", &"<redacted>")
            .field("chunk_size", &self.chunk_size)
            .field("max_delivery_attempts", &self.max_delivery_attempts)
            .field("max_upload_lines", &self.max_upload_lines)
            .field("max_delivery", &self.max_delivery)
            .field("intermarket_budget", &self.intermarket_budget)
            .finish()
    }
}

/// How the hub reaches the national systems.
pub trait NationalLink: Send + Sync {
    /// Delivers messages to the national system of `market`; the answer acknowledges each. An
    /// error means nothing is known to have been applied: every message is retried. The link
    /// enforces its own timeout, so that a market that hangs holds up the relay only that long.
    fn deliver(&self, market: MarketCode, delivery: Delivery) -> BoxFuture<'_, Result<DeliveryAck, String>>;

    /// The markets this link reaches, for the status page (none when it cannot tell).
    fn markets(&self) -> Vec<MarketCode> {
        Vec::new()
    }

    /// The incidents in progress at the national system of `market`, for the hub's status page
    /// (none when the link cannot ask). An error means no answer came.
    fn open_incidents(
        &self,
        market: MarketCode,
    ) -> BoxFuture<'_, Result<Vec<openmvs_wire::hub::MarketIncident>, String>> {
        let _ = market;
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
}

/// How the hub asks a national system something and waits for the answer, as opposed to
/// [`NationalLink`], which delivers queued messages.
pub trait NationalQueries: Send + Sync {
    /// Has the national system of `market` process a single-pack request that another market
    /// routed through the hub (`National::intermarket`). Its answer names `market` and carries
    /// the response, or has `response: null` when `market` does not know the product either. An
    /// error means no answer came (unreachable, refused, timed out).
    fn intermarket(
        &self,
        market: MarketCode,
        req: IntermarketRequest,
    ) -> BoxFuture<'_, Result<IntermarketAnswer, String>>;

    /// Asks the national system of `market` where one pack stands there (`National::pack_state`),
    /// read-only, for the owning OBP's pack query. `pack: null` when `market` does not hold it.
    /// An error means no answer came (unreachable, refused, timed out).
    fn pack_state(
        &self,
        market: MarketCode,
        query: PackQuery,
    ) -> BoxFuture<'_, Result<PackQueryAnswer, String>>;
}

/// The European Hub.
pub struct Hub {
    store: Arc<dyn HubStore>,
    clock: Arc<dyn Clock>,
    config: HubConfig,
    link: Option<Arc<dyn NationalLink>>,
    /// Where inter-market requests are routed; without it every product is unknown elsewhere.
    queries: Option<Arc<dyn NationalQueries>>,
    /// Where the OBPs' callback events are posted; without it they wait in the outbox.
    callbacks: Option<Arc<dyn CallbackSender>>,
    /// Wakes the relay when a unit with outbox messages is committed.
    relay_wake: Notify,
    /// Whether the relay took over what the outbox held from before this process started.
    relay_resumed: openmvs_store::relay::Resumed,
    /// Whether the store commits, as the last probe or commit found it.
    store_ok: std::sync::atomic::AtomicBool,
    /// This process among the hub nodes sharing the store, for its heartbeat.
    node_id: NodeId,
    /// The alerts this node received and stored, per code, for `/metrics`.
    alerts_received: openmvs_telemetry::AlertTally,
    /// Each market's link as this node's relay saw it, for the status page.
    links: links::Links,
}

/// The critical section of batch writes (new batches, recalls, withdrawals, OBP pack states). The
/// store writes a batch without an expected version, so two decisions on one stale read could
/// both commit; read, decide and commit inside this section, across every hub node sharing the
/// store, rules that out. Product writes need none: they carry the version they were decided on.
pub(crate) const BATCH_WRITES: &str = "hub-batch-writes";

impl Hub {
    /// Builds the service over an open store.
    pub fn new(
        store: Arc<dyn HubStore>,
        clock: Arc<dyn Clock>,
        config: HubConfig,
        link: Option<Arc<dyn NationalLink>>,
    ) -> Hub {
        assert!(config.chunk_size > 0, "chunk_size must be at least 1");
        assert!(config.max_delivery > 0, "max_delivery must be at least 1");
        let node_id = NodeId::new(new_id("hub-node", clock.now()));
        Hub {
            store,
            clock,
            config,
            link,
            queries: None,
            callbacks: None,
            relay_wake: Notify::new(),
            relay_resumed: openmvs_store::relay::Resumed::default(),
            store_ok: std::sync::atomic::AtomicBool::new(true),
            node_id,
            alerts_received: openmvs_telemetry::AlertTally::new(),
            links: links::Links::default(),
        }
    }

    /// The same hub, routing inter-market requests through `queries`.
    pub fn with_queries(mut self, queries: Arc<dyn NationalQueries>) -> Hub {
        self.queries = Some(queries);
        self
    }

    /// The same hub, posting the OBPs' callback events through `sender` (from the relay).
    pub fn with_callbacks(mut self, sender: Arc<dyn CallbackSender>) -> Hub {
        self.callbacks = Some(sender);
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn HubStore> {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// The OBP calling, named by its verified client certificate: on-boarded under that id at
    /// its first request (the CA issuing the certificate is the on-boarding decision, and
    /// revoking it the off-boarding one), then read back; 403 if the hub revoked it.
    async fn caller(&self, obp: &str) -> Result<ObpRecord, ApiError> {
        let o = match self.store.obp(&obp.into()).await? {
            Some(o) => o,
            None => self.register_obp(obp, obp).await?,
        };
        if o.revoked_at.is_some() {
            return Err(ApiError::forbidden("obp", format!("OBP '{obp}' is revoked")));
        }
        Ok(o)
    }

    /// The product named in a path, owned by `obp`: 400 if the code is not a product code, 404 if
    /// the hub does not know it, 403 if another OBP owns it.
    async fn owned_product(&self, obp: &str, code: &str) -> Result<HubProductRecord, ApiError> {
        match self.find_product(code).await? {
            Some(p) if p.owner == obp => Ok(p),
            Some(_) => Err(ApiError::forbidden("product_code", "the product belongs to another OBP")),
            None => Err(ApiError::not_found("product_code", format!("no product '{code}'"))),
        }
    }

    /// Looks a product code up under each scheme it is valid in: a path names no scheme, and 12
    /// digits can be a PPN as well as a short GTIN.
    async fn find_product(&self, code: &str) -> Result<Option<HubProductRecord>, ApiError> {
        let mut first_error = None;
        for scheme in [Scheme::Gtin, Scheme::Ppn] {
            match ProductCode::new(scheme, code) {
                Ok(pc) => {
                    if let Some(p) = self.store.product(&pc).await? {
                        return Ok(Some(p));
                    }
                }
                Err(e) => {
                    first_error.get_or_insert((scheme, e));
                }
            }
        }
        let parses = [Scheme::Gtin, Scheme::Ppn].iter().any(|s| ProductCode::new(*s, code).is_ok());
        match first_error {
            Some((scheme, e)) if !parses => Err(ApiError::malformed(
                "product_code",
                format!("'{code}' is no product code ({scheme}: {e})"),
            )),
            _ => Ok(None),
        }
    }

    /// An audit record of the hub's chain.
    fn entry(&self, obp: &str, now: Timestamp, r: Record<'_>) -> Entry {
        Entry {
            market: HUB_AUDIT_MARKET.to_owned(),
            at_millis: now.unix_millis(),
            actor: obp.to_owned(),
            role: "OBP".to_owned(),
            location: String::new(),
            operation: r.operation.to_owned(),
            subject: r.subject.to_owned(),
            return_code: r.code.as_str().to_owned(),
            request: r.request.to_string(),
            result: r.result.to_string(),
        }
    }

    /// Records a refused request in the hub's audit trail, then hands back the error: refusals are
    /// audited before they are answered, as at the national systems.
    async fn refuse(
        &self,
        obp: &str,
        operation: &str,
        subject: &str,
        request: &serde_json::Value,
        e: ApiError,
    ) -> ApiError {
        let result = serde_json::json!({"message": e.message, "details": e.details.iter()
            .map(|d| serde_json::json!({"field": d.field, "message": d.message})).collect::<Vec<_>>()});
        let r = Record { operation, subject, code: e.code, request, result: &result };
        let uow =
            HubUnitOfWork { audit: vec![self.entry(obp, self.clock.now(), r)], ..HubUnitOfWork::default() };
        match self.commit(uow).await {
            Ok(_) => e,
            Err(store) => store.into(),
        }
    }

    /// Commits a unit and wakes the relay if it carries messages. When the store answers
    /// "unavailable", a probe write follows at once ([`Hub::probe_store`]): if it fails too, the
    /// hub counts its store as not committing until a later probe succeeds. The alerts a
    /// committed unit stored are counted for `/metrics`.
    async fn commit(&self, uow: HubUnitOfWork) -> Result<(), openmvs_store::StoreError> {
        let wakes =
            !uow.outbox.is_empty() || uow.upload_progress.as_ref().is_some_and(|p| !p.chunks.is_empty());
        let alerts = figures::carried(&uow.alerts);
        if let Err(e) = self.store.commit(uow).await {
            if e.is_unconfirmed() {
                // The request has waited the store's whole bound already: no probe on top.
                self.mark_store(false, &e.to_string());
            } else if matches!(e, openmvs_store::StoreError::Unavailable(_)) {
                let _ = self.probe_store().await;
            }
            return Err(e);
        }
        self.count_received(&alerts);
        if wakes {
            self.relay_wake.notify_one();
        }
        Ok(())
    }
}

impl Hub {
    /// Writes this node's heartbeat through the store's ordinary commit path: the store commits
    /// again if it succeeds, and does not if it fails (or takes more than 5 s). Called every
    /// second or so by the server; `/health/ready` follows [`Hub::store_ok`].
    ///
    /// # Errors
    ///
    /// Why the store cannot commit.
    pub async fn probe_store(&self) -> Result<(), openmvs_store::StoreError> {
        let uow = HubUnitOfWork {
            heartbeat: Some(openmvs_store::Heartbeat { node_id: self.node_id.clone(), at: self.clock.now() }),
            ..HubUnitOfWork::default()
        };
        let timeout = Duration::from_secs(5);
        let Ok(r) = tokio::time::timeout(timeout, self.store.commit(uow)).await else {
            let why = "a probe write did not commit within 5 s".to_owned();
            self.mark_store(false, &why);
            return Err(openmvs_store::StoreError::Unavailable(why));
        };
        match &r {
            Err(openmvs_store::StoreError::Unavailable(why)) => self.mark_store(false, why),
            _ => self.mark_store(true, "a probe write committed"),
        }
        r.map(|_| ())
    }

    /// Messages waiting in the outbox for the national systems and the OBPs' callbacks.
    ///
    /// # Errors
    ///
    /// 503 when the store cannot be read.
    pub async fn outbox_pending(&self) -> Result<u64, ApiError> {
        Ok(self.store.pending().await?)
    }

    /// This process's node id.
    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    /// The clock the hub reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Whether the store commits, as the last probe or commit found it.
    pub fn store_ok(&self) -> bool {
        self.store_ok.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn mark_store(&self, ok: bool, why: &str) {
        if self.store_ok.swap(ok, std::sync::atomic::Ordering::SeqCst) != ok {
            if ok {
                tracing::info!(cause = %why, "the hub's store commits again: ready");
            } else {
                tracing::error!(cause = %why, "the hub's store cannot commit: not ready until a probe write succeeds");
            }
        }
    }
}

/// What an audit record says about an operation, besides who and when.
pub(crate) struct Record<'a> {
    pub operation: &'a str,
    pub subject: &'a str,
    pub code: ReturnCode,
    pub request: &'a serde_json::Value,
    pub result: &'a serde_json::Value,
}

/// The audit subject of a product: `GTIN/<code>`.
pub(crate) fn subject(pc: &ProductCode) -> String {
    format!("{}/{pc}", pc.scheme())
}

/// An outbox message to `market` carrying `body`, ordered with everything else about the product.
pub(crate) fn message_to(
    market: MarketCode,
    message_id: String,
    pc: &ProductCode,
    body: Message,
) -> OutboxMessage {
    message_keyed(market, message_id, pc.as_str(), body)
}

/// An outbox message to `market` carrying `body`, in order with the others of `ordering_key`.
pub(crate) fn message_keyed(
    market: MarketCode,
    message_id: String,
    ordering_key: &str,
    body: Message,
) -> OutboxMessage {
    let kind = body.kind();
    let env = Envelope { message_id, origin: "hub".to_owned(), ordering_key: ordering_key.to_owned(), body };
    OutboxMessage {
        message_id: env.message_id.as_str().into(),
        destination: market.as_str().to_owned(),
        kind: kind.to_owned(),
        ordering_key: env.ordering_key.clone(),
        payload: serde_json::to_string(&env).expect("an envelope always serialises"),
    }
}

/// A new id such as `UPL-0193a4c2e1f0-9f1c2b7d5e3a4c10`: prefix, 12 hex digits of milliseconds,
/// 16 hex digits of randomness, so ids sort by time and cannot be guessed.
pub fn new_id(prefix: &str, now: Timestamp) -> String {
    let ms = now.unix_millis().max(0) as u64 & 0xffff_ffff_ffff;
    format!("{prefix}-{ms:012x}-{:016x}", random_u64())
}

/// 64 random bits, for the random part of an id.
pub(crate) fn random_u64() -> u64 {
    openmvs_store::entropy::random_u64()
}

/// Checks an OBP id as the hub's CA does (`openmvs_pki::check_client_id`): 1 to 40 characters
/// `a-z`, `0-9` and `-`, not starting or ending with `-`, so that `<id>.obp.openmvs` is a DNS name.
pub fn check_obp_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("is empty".into());
    }
    if id.chars().count() > 40 {
        return Err(format!("is {} characters long, at most 40", id.chars().count()));
    }
    if let Some((pos, c)) =
        id.chars().enumerate().find(|(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!("has {c:?} at position {}", pos + 1));
    }
    if id.starts_with('-') || id.ends_with('-') {
        return Err("starts or ends with '-'".into());
    }
    Ok(())
}
