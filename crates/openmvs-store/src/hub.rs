//! Storage ports of the European Hub: what the hub stores, how a change is committed, and the small
//! traits each engine implements (`HubStore` is all of them).
//!
//! The hub keeps OBPs, product master data in immutable versions, batches, uploads and the alerts
//! forwarded to OBPs. It does **not** keep serial numbers (DR Art 33(1)): what it keeps to refuse a
//! repeated serial is a set of keyed digests per product ([`SerialDigest`], computed by the caller
//! with a secret of the hub, so that the set cannot be searched for a guessed serial), and serials
//! themselves live only in the payloads of outbox messages on their way to the national systems.
//! A delivered message is deleted, which is how serials leave the hub once every target market has
//! acknowledged them.
//!
//! Architecture invariant, as for the national system: callers never open transactions. Everything
//! one operation changes goes into one [`HubUnitOfWork`], committed atomically and durably before
//! the operation is answered; a conflict means: read again, decide again.
//!
//! # An upload, step by step
//!
//! 1. A unit creates the upload ([`NewUpload`]) with its target markets.
//! 2. For each chunk of lines, the service reads which digests are present ([`SerialIndex::present`]),
//!    rejects those lines and builds one serial message per market from the rest; one unit then
//!    inserts the digests with [`OnDuplicate::Refuse`] (a concurrent upload that inserted one
//!    meanwhile refuses the unit, and the service decides the chunk again), records the progress
//!    and rejections, and stores the messages as the chunk's [`UploadProgress::chunks`]. Each chunk
//!    message counts as sent to its market in the same unit, so the count cannot drift from the
//!    messages.
//! 3. The last unit ends the upload with [`UploadOutcome::Validated`]: no more chunks will come.
//! 4. The relay delivers each chunk; [`HubOutboxStore::delivered`] deletes it (and the serials in
//!    it) and counts the market's acknowledgement in one write. The engine marks the upload
//!    DISTRIBUTED when it is validated and every market acknowledged every chunk.

use openmvs_audit::Entry;
use openmvs_core::alert::{AlertStatus, AlertThread, Classification};
use openmvs_core::ids::{AlertId, Batch, Expiry, MarketCode, ObpId, ProductCode, UploadId};
use openmvs_core::master_data::ProductMaster;
use openmvs_core::time::Timestamp;

use crate::{
    AlertUpdate, AuditStore, BoxFuture, MessageId, OutboxMessage, OutboxQueue, StoreResult,
    StoredOutboxMessage,
};

/// Where an upload is, in all and in each market, and the lines it rejected: domain notions the
/// store keeps and the hub answers with.
pub use openmvs_core::upload::{MarketDelivery, UploadRejection, UploadStatus};

/// The audit market of the hub's own trail: the hub's records form one chain of their own.
pub const HUB_AUDIT_MARKET: &str = "HUB";

/// An on-boarding partner (a marketing authorisation holder or a parallel distributor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObpRecord {
    /// The OBP id, as named by its client certificate.
    pub id: ObpId,
    /// A human name.
    pub name: String,
    /// When it was on-boarded.
    pub created_at: Timestamp,
    /// When it was revoked (irreversible): a revoked OBP may no longer call the hub.
    pub revoked_at: Option<Timestamp>,
    /// Where the hub POSTs the OBP's alerts, recalls and withdrawals (`PUT /v1/callback`).
    pub callback_url: Option<String>,
}

/// A change to an existing OBP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObpChange {
    /// Sets (or clears) the callback URL.
    Callback {
        /// The OBP.
        obp: ObpId,
        /// The new URL.
        url: Option<String>,
    },
    /// Revokes the OBP; a second revocation keeps the first instant.
    Revoke {
        /// The OBP.
        obp: ObpId,
        /// When.
        at: Timestamp,
    },
}

/// A product as the hub knows it: who owns it, which master data version is current, and the
/// markets it is withdrawn from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubProductRecord {
    /// Product code and scheme.
    pub product_code: ProductCode,
    /// The OBP that uploaded it first, and so owns it. Written when the product is created and
    /// never changed after.
    pub owner: ObpId,
    /// The current master data version (from 1).
    pub current_version: u32,
    /// The markets it is withdrawn from, in market order. Withdrawal is irreversible per market:
    /// a write adds the markets it names and never removes one.
    pub withdrawn: Vec<MarketCode>,
    /// When it was first uploaded.
    pub created_at: Timestamp,
}

/// A product write: created if `expected_version` is `None` (a product that exists conflicts, which
/// is how the first OBP to upload a product code comes to own it), else applied only if the product
/// still has that current version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductWrite {
    /// The new record; `owner` and `created_at` are used only when the product is created.
    pub product: HubProductRecord,
    /// The current version the decision was made on.
    pub expected_version: Option<u32>,
}

/// One immutable version of a product's master data. Any change of the master data, target
/// markets included, makes a new version (`openmvs_core::master_data::decide_version`), and a
/// batch binds to one version, so that no batch's markets change retrospectively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductVersionRecord {
    /// The version number, from 1.
    pub version: u32,
    /// The validated master data (the product code among it), read back exactly as stored:
    /// markets and wholesalers in the order sent.
    pub master: ProductMaster,
    /// When it was uploaded.
    pub created_at: Timestamp,
}

/// A batch as the hub knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubBatchRecord {
    /// The product.
    pub product_code: ProductCode,
    /// The batch number.
    pub batch: Batch,
    /// The product version the batch is bound to.
    pub product_version: u32,
    /// Its expiry, kept as encoded.
    pub expiry: Expiry,
    /// Its target markets, in market order.
    pub markets: Vec<MarketCode>,
    /// The markets it is recalled in, in market order. Recall is irreversible per market: a write
    /// adds the markets it names and never removes one.
    pub recalled: Vec<MarketCode>,
}

/// A keyed digest of a serial number (16 to 32 bytes, e.g. HMAC-SHA256 with a secret of the hub,
/// truncated): enough to refuse a repeated serial without keeping the serial.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SerialDigest {
    bytes: [u8; SerialDigest::MAX_LEN],
    len: u8,
}

impl SerialDigest {
    /// The shortest digest accepted: 128 bits keep accidental collisions out of reach even across
    /// billions of serials of one product.
    pub const MIN_LEN: usize = 16;
    /// The longest digest accepted (a whole SHA-256).
    pub const MAX_LEN: usize = 32;

    /// A digest of 16 to 32 bytes; `None` for any other length.
    pub fn new(bytes: &[u8]) -> Option<SerialDigest> {
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&bytes.len()) {
            return None;
        }
        let mut d = SerialDigest { bytes: [0; Self::MAX_LEN], len: bytes.len() as u8 };
        d.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(d)
    }

    /// The digest's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for SerialDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SerialDigest(")?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// What a unit does with a serial digest that is present already.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnDuplicate {
    /// Inserts the others and reports the positions of the present ones in
    /// [`HubCommitted::duplicate_serials`].
    #[default]
    Report,
    /// Refuses the whole unit with `Conflict::Exists`: for a unit whose other parts (the serial
    /// messages, the rejections) were decided on a read that found the digests absent.
    Refuse,
}

/// Serial digests of one product to insert if absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialDigests {
    /// The product: a serial is unique per product code.
    pub product_code: ProductCode,
    /// The digests, one per serial.
    pub digests: Vec<SerialDigest>,
    /// What a present digest does.
    pub on_duplicate: OnDuplicate,
}

/// How an upload ends; DISTRIBUTED is not among them because the engine decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadOutcome {
    /// Every line is received: no more chunks will come.
    Validated,
    /// Abandoned.
    Failed,
}

/// An upload's delivery to one target market.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadMarket {
    /// The market.
    pub market: MarketCode,
    /// Chunks stored for it.
    pub chunks_sent: u64,
    /// Chunks it acknowledged.
    pub chunks_acked: u64,
    /// Derived: DISTRIBUTED once the upload is validated and the market acknowledged every chunk
    /// (a failed upload's markets stay PENDING).
    pub status: MarketDelivery,
}

/// An upload of serials for one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    /// The upload id.
    pub id: UploadId,
    /// The OBP that uploaded.
    pub obp: ObpId,
    /// The product.
    pub product_code: ProductCode,
    /// The batch.
    pub batch: Batch,
    /// Where it is.
    pub status: UploadStatus,
    /// Lines received.
    pub received: u64,
    /// Lines rejected.
    pub rejected: u64,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// Each target market, in market order.
    pub markets: Vec<UploadMarket>,
}

/// A new upload, RECEIVED with nothing received yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUpload {
    /// The upload id; one that exists conflicts.
    pub id: UploadId,
    /// The OBP.
    pub obp: ObpId,
    /// The product.
    pub product_code: ProductCode,
    /// The batch.
    pub batch: Batch,
    /// The target markets, PENDING until distributed.
    pub markets: Vec<MarketCode>,
    /// When it was accepted.
    pub created_at: Timestamp,
}

/// Progress on an upload in RECEIVED status (anything else conflicts: it has ended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadProgress {
    /// The upload.
    pub id: UploadId,
    /// Lines received since the last progress.
    pub received: u64,
    /// Lines rejected among them.
    pub rejections: Vec<UploadRejection>,
    /// Serial messages to the target markets, one per market and chunk; each goes to the outbox
    /// linked to the upload and counts as a chunk sent to its destination, which must be a market.
    pub chunks: Vec<OutboxMessage>,
    /// Set on the last progress.
    pub outcome: Option<UploadOutcome>,
}

impl UploadProgress {
    /// No progress yet on the upload `id`: nothing received, no outcome.
    pub fn new(id: UploadId) -> UploadProgress {
        UploadProgress { id, received: 0, rejections: Vec::new(), chunks: Vec::new(), outcome: None }
    }
}

/// An alert a national system forwarded for the owning OBP, under the id the market gave it: an
/// alert forwarded again (by the other market of an inter-market alert, or replayed) conflicts,
/// so it is stored (and called back) once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubAlertRecord {
    /// The alert's id, the same in every market that holds it.
    pub id: AlertId,
    /// The OBP that owns the product.
    pub obp: ObpId,
    /// The market of the request that raised it.
    pub market: MarketCode,
    /// The product code as the market's alert has it, for listing.
    pub product_code: String,
    /// The alert as forwarded (JSON).
    pub alert: String,
    /// When the hub received it.
    pub created_at: Timestamp,
    /// Where the investigation is.
    pub status: AlertStatus,
    /// The classification, once closed.
    pub classification: Option<Classification>,
    /// The last comment.
    pub comment: Option<String>,
    /// Its status changes and comments, from the OBP and the markets.
    pub thread: AlertThread,
    /// How many times it was updated: the version an [`AlertUpdate`] expects.
    pub version: u64,
}

/// A filter for listing forwarded alerts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubAlertFilter {
    /// Only the alerts of this OBP (an OBP sees its own).
    pub obp: Option<ObpId>,
    /// Only alerts with this status.
    pub status: Option<AlertStatus>,
    /// Only alerts on this product code.
    pub product_code: Option<String>,
    /// Start after this alert id (exclusive), in id order.
    pub after: Option<AlertId>,
    /// At most this many.
    pub limit: usize,
}

/// Everything one hub operation changes, committed atomically, durably and in one piece.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubUnitOfWork {
    /// The id of the inbound message (from a national system) this unit applies; fails the unit if
    /// it was applied before.
    pub inbox: Option<MessageId>,
    /// OBPs to on-board; one that exists conflicts.
    pub new_obps: Vec<ObpRecord>,
    /// Changes to OBPs.
    pub obp_changes: Vec<ObpChange>,
    /// Product master data versions to store; one that exists conflicts (versions are immutable).
    pub product_versions: Vec<ProductVersionRecord>,
    /// Products to create or update, each with its expected current version.
    pub products: Vec<ProductWrite>,
    /// Batches to create or replace; recalled markets are only ever added.
    pub batches: Vec<HubBatchRecord>,
    /// Serial digests to insert if absent.
    pub serials: Vec<SerialDigests>,
    /// A new upload.
    pub new_upload: Option<NewUpload>,
    /// Progress on an upload (applied after `new_upload`, so one unit may do both).
    pub upload_progress: Option<UploadProgress>,
    /// Forwarded alerts to store; one whose source key exists conflicts.
    pub alerts: Vec<HubAlertRecord>,
    /// Alert changes (by the OBP, or from a market), each from its expected version.
    pub alert_updates: Vec<AlertUpdate>,
    /// Messages for the relays (other than serial chunks, which come with their upload progress).
    pub outbox: Vec<OutboxMessage>,
    /// Audit entries, sealed into the hub's chain ([`HUB_AUDIT_MARKET`]) in commit order.
    pub audit: Vec<Entry>,
    /// The node's heartbeat (a probe that the store can commit).
    pub heartbeat: Option<crate::Heartbeat>,
}

/// What a hub commit did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubCommitted {
    /// The sequence numbers the audit entries got, in order.
    pub audit_seqs: Vec<u64>,
    /// One list per entry of [`HubUnitOfWork::serials`], in order: the positions (ascending) of
    /// the digests that were present already, before the unit or earlier in it.
    pub duplicate_serials: Vec<Vec<usize>>,
}

/// The one way to change the hub's state: commit a unit of work.
pub trait HubCommitter: Send + Sync {
    /// Commits `uow` atomically. Resolves only when the commit is durable (or has failed and
    /// nothing of it was written). Concurrent commits may share one transaction and one fsync.
    fn commit(&self, uow: HubUnitOfWork) -> BoxFuture<'_, StoreResult<HubCommitted>>;
}

/// On-boarding partners.
pub trait ObpStore: Send + Sync {
    /// One OBP.
    fn obp(&self, id: &ObpId) -> BoxFuture<'_, StoreResult<Option<ObpRecord>>>;
    /// Every OBP, in id order.
    fn obps(&self) -> BoxFuture<'_, StoreResult<Vec<ObpRecord>>>;
}

/// Products and their master data versions.
pub trait ProductCatalog: Send + Sync {
    /// The product.
    fn product(&self, product_code: &ProductCode) -> BoxFuture<'_, StoreResult<Option<HubProductRecord>>>;
    /// One version of its master data.
    fn product_version(
        &self,
        product_code: &ProductCode,
        version: u32,
    ) -> BoxFuture<'_, StoreResult<Option<ProductVersionRecord>>>;
}

/// Batches.
pub trait BatchCatalog: Send + Sync {
    /// The batch of a product.
    fn batch(
        &self,
        product_code: &ProductCode,
        batch: &Batch,
    ) -> BoxFuture<'_, StoreResult<Option<HubBatchRecord>>>;
}

/// The per-product sets of serial digests.
pub trait SerialIndex: Send + Sync {
    /// The positions (ascending) of the digests in `digests` that are present for the product.
    fn present(
        &self,
        product_code: &ProductCode,
        digests: &[SerialDigest],
    ) -> BoxFuture<'_, StoreResult<Vec<usize>>>;
    /// How many digests the product has.
    fn digest_count(&self, product_code: &ProductCode) -> BoxFuture<'_, StoreResult<u64>>;
}

/// Uploads.
pub trait UploadStore: Send + Sync {
    /// One upload, with its markets.
    fn upload(&self, id: &UploadId) -> BoxFuture<'_, StoreResult<Option<UploadRecord>>>;
    /// Up to `limit` rejected lines of an upload after line `after_line`, in line order (every
    /// rejection is kept, so a large upload pages through them).
    fn upload_rejections(
        &self,
        id: &UploadId,
        after_line: u64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<UploadRejection>>>;
    /// Uploads still RECEIVED, oldest first (after a restart, those whose stream was cut).
    fn unfinished_uploads(&self, limit: usize) -> BoxFuture<'_, StoreResult<Vec<UploadRecord>>>;
}

/// The hub's outbox: one queue per destination (a market code, or `callback:<obp>` for an OBP's
/// callback), each drained by its own relay so that a market that is down holds back only its own
/// messages. Failed attempts, dead letters and the backlog are every outbox's ([`OutboxQueue`]).
pub trait HubOutboxStore: OutboxQueue {
    /// Up to `limit` live messages for `destination` due at `now`, oldest first, at most one per
    /// ordering key (the oldest undelivered one), so that messages about one product stay in order.
    fn due(
        &self,
        destination: &str,
        now: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>>;
    /// Takes what [`HubOutboxStore::due`] would give, for this relay alone: the messages taken are
    /// not due again until `lease_until` (unless marked failed), so relays of several hub nodes
    /// never send one message at once, and one whose relay died is sent again after the lease.
    fn claim_due(
        &self,
        destination: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>>;
    /// Takes for this relay alone, as [`HubOutboxStore::claim_due`] does, up to `limit` due
    /// messages for `destination` as runs, as [`crate::OutboxStore::claim_runs`] does for a
    /// national system's queue: first the oldest live message of every ordering key whose oldest
    /// is due, then, oldest first, the messages that follow them in their key, each key's up to its
    /// first message that is not due. Sent in order in one batch (a delivery to a market, a POST of
    /// an OBP's callback events), they keep each key's order. A key with an older message that is
    /// not due (waiting for its retry, or taken by another relay) gives none.
    fn claim_runs(
        &self,
        destination: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredOutboxMessage>>>;
    /// The destinations with live messages, in order.
    fn destinations(&self) -> BoxFuture<'_, StoreResult<Vec<String>>>;
    /// Removes a delivered message, with the serials in its payload; a serial chunk counts as
    /// acknowledged by its market in the same write.
    fn delivered(&self, seq: u64) -> BoxFuture<'_, StoreResult<()>>;
}

/// Alerts forwarded to OBPs.
pub trait HubAlertStore: Send + Sync {
    /// One alert.
    fn alert(&self, id: &AlertId) -> BoxFuture<'_, StoreResult<Option<HubAlertRecord>>>;
    /// Alerts matching the filter, in id order.
    fn alerts(&self, filter: &HubAlertFilter) -> BoxFuture<'_, StoreResult<Vec<HubAlertRecord>>>;
    /// How many alerts are not closed, per status, as [`crate::AlertStore::open_alert_counts`].
    fn open_alert_counts(&self) -> BoxFuture<'_, StoreResult<Vec<(AlertStatus, u64)>>>;
}

/// Held while a decision may not interleave with another's; dropping it leaves the section.
pub type SectionGuard = Box<dyn Send + Sync>;

/// Critical sections across every process sharing the store: a decision that is written without
/// an expected version (a batch, a recall) is read, decided and committed inside one, so two hub
/// nodes never commit two decisions made on one stale read.
pub trait HubSections: Send + Sync {
    /// Waits until no task of any process sharing the store is in the section `name`, then
    /// enters it.
    fn enter(&self, name: &'static str) -> BoxFuture<'_, StoreResult<SectionGuard>>;
}

/// Everything the hub stores. Its audit trail is read through the national [`AuditStore`]: the
/// records and checkpoints are the same, in one chain named [`HUB_AUDIT_MARKET`].
pub trait HubStore:
    HubCommitter
    + HubSections
    + ObpStore
    + ProductCatalog
    + BatchCatalog
    + SerialIndex
    + UploadStore
    + HubOutboxStore
    + HubAlertStore
    + AuditStore
    + crate::ConsoleStore
{
}

impl<T> HubStore for T where
    T: HubCommitter
        + HubSections
        + ObpStore
        + ProductCatalog
        + BatchCatalog
        + SerialIndex
        + UploadStore
        + HubOutboxStore
        + HubAlertStore
        + AuditStore
        + crate::ConsoleStore
{
}
