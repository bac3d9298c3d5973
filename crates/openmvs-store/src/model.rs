//! The records a national system stores, and the unit of work that changes them.

use openmvs_audit::Entry;
use openmvs_core::alert::{AlertStatus, AlertThread, Classification};
use openmvs_core::ids::{
    AlertId, Batch, BulkId, ClientId, ClientTrxId, Expiry, KeyId, Location, MarketCode, ObpId, ProductCode,
    Serial,
};
use openmvs_core::pack::Pack;
use openmvs_core::return_code::{AlertCode, ReturnCode};
use openmvs_core::roles::Role;
use openmvs_core::time::Timestamp;

openmvs_core::opaque_id!(
    /// A message between systems (hub and national systems, the hub and an OBP's callback): the
    /// receiver applies each id once.
    MessageId
);

openmvs_core::opaque_id!(
    /// A node among those sharing a store: the writer of its heartbeats and the holder of the
    /// leases it takes.
    NodeId
);
/// Where a bulk job is: a domain notion the store keeps and the national system answers with.
pub use openmvs_core::answer::BulkStatus;

/// A pack record with the version its row has; the version grows by one with every write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPack {
    /// The pack.
    pub pack: Pack,
    /// The row version, for optimistic concurrency.
    pub version: u64,
}

/// The master data of a product, as the hub distributed it to this market.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductRecord {
    /// Product code and scheme.
    pub product_code: ProductCode,
    /// Name.
    pub name: String,
    /// Common (INN) name.
    pub common_name: String,
    /// Pharmaceutical form.
    pub form: String,
    /// Strength.
    pub strength: String,
    /// Pack type.
    pub pack_type: String,
    /// Pack size.
    pub pack_size: String,
    /// The OBP that owns the product.
    pub owner: ObpId,
    /// Whether the product is withdrawn from this market (irreversible).
    pub withdrawn: bool,
    /// The master data version this record reflects.
    pub version: u32,
}

/// A batch in this market.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRecord {
    /// The product.
    pub product_code: ProductCode,
    /// The batch number.
    pub batch: Batch,
    /// Its expiry.
    pub expiry: Expiry,
    /// Whether it is recalled in this market (irreversible).
    pub recalled: bool,
    /// Every target market of the batch, this one included: packs of a batch with more than one
    /// market are multi-market packs, whose state changes are synchronised through the hub.
    pub markets: Vec<MarketCode>,
}

/// An alert raised in this market.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRecord {
    /// The alert id (unique, opaque).
    pub id: AlertId,
    /// The hub alert code.
    pub code: AlertCode,
    /// The return code that raised it.
    pub return_code: ReturnCode,
    /// The market of the request that raised it.
    pub market: MarketCode,
    /// The market that holds the pack (another market for an inter-market request).
    pub pack_market: MarketCode,
    /// The product code as requested (a synchronised change's as the other market sent it, which
    /// may be a short GTIN; no scheme is kept).
    pub product_code: String,
    /// The serial.
    pub serial: Serial,
    /// The batch as requested (a synchronised change's as the other market sent it, unchecked).
    pub batch: String,
    /// The location of the request.
    pub location: Location,
    /// The client that made the request (or `hub:<market>` for a synchronised change).
    pub client_id: ClientId,
    /// When it was raised.
    pub created_at: Timestamp,
    /// Where it is in its investigation.
    pub status: AlertStatus,
    /// The classification, once closed.
    pub classification: Option<Classification>,
    /// The last comment.
    pub comment: Option<String>,
    /// What raised it, unique: the same source event never raises a second alert.
    pub source_key: String,
    /// Its status changes and comments.
    pub thread: AlertThread,
    /// How many times it was updated: the version an [`AlertUpdate`] expects.
    pub version: u64,
}

/// A change of an alert (its thread, and the status, classification and last comment the thread
/// comes to), applied only if the alert is still at `expected_version`; the version goes up by
/// one. Used by both systems' alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertUpdate {
    /// The alert.
    pub id: AlertId,
    /// The version the decision was made on.
    pub expected_version: u64,
    /// The status.
    pub status: AlertStatus,
    /// The classification (`None` unless closed).
    pub classification: Option<Classification>,
    /// The last comment.
    pub comment: Option<String>,
    /// The whole thread.
    pub thread: AlertThread,
}

impl AlertUpdate {
    /// An update of the alert `id`, decided at `expected_version`, to `thread`, with the status,
    /// classification and last comment the thread comes to.
    pub fn to_thread(id: AlertId, expected_version: u64, thread: AlertThread) -> AlertUpdate {
        let (status, classification) = thread.settle();
        AlertUpdate {
            id,
            expected_version,
            status,
            classification,
            comment: thread.last_comment().map(str::to_owned),
            thread,
        }
    }
}

/// A filter for listing alerts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    /// Only alerts with this status.
    pub status: Option<AlertStatus>,
    /// Only alerts raised by this client (end users see their own).
    pub client_id: Option<ClientId>,
    /// Only alerts on this product code, as requested.
    pub product_code: Option<String>,
    /// Start after this alert id (exclusive), in id order.
    pub after: Option<AlertId>,
    /// At most this many.
    pub limit: usize,
}

/// A message to another system, stored in the same unit of work as the change that causes it and
/// delivered later by a relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Globally unique id: the receiver applies each id once.
    pub message_id: MessageId,
    /// Where it goes, e.g. `hub`.
    pub destination: String,
    /// What it is, e.g. `pack-state` or `alert`.
    pub kind: String,
    /// Messages with the same key are delivered in order (the product code).
    pub ordering_key: String,
    /// The message body (JSON).
    pub payload: String,
}

/// How the messages of one destination stand in the outbox, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueCounts {
    /// The destination, e.g. `hub`, a market, or `callback:<obp>`.
    pub destination: String,
    /// Live messages waiting for delivery (the backlog).
    pub pending: u64,
    /// Of those, the ones whose last attempt failed (waiting for a retry).
    pub failing: u64,
    /// Dead letters: given up, waiting for `openmvs admin dead-letters`.
    pub dead: u64,
    /// When the oldest live message was committed (how long the backlog has waited); none when
    /// no message is live.
    pub oldest_at: Option<Timestamp>,
}

/// An outbox message as stored, with its delivery bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOutboxMessage {
    /// Position in the outbox (commit order).
    pub seq: u64,
    /// The message.
    pub message: OutboxMessage,
    /// When it was stored.
    pub created_at: Timestamp,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Not before this instant.
    pub next_attempt_at: Timestamp,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Whether it gave up and sits in the dead-letter list.
    pub dead: bool,
}

/// The stored answer to a request, found again by the client's transaction id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The client.
    pub client_id: ClientId,
    /// The client's transaction id.
    pub client_trx_id: ClientTrxId,
    /// A hash of the request's content: the same id with other content is refused.
    pub request_hash: [u8; 32],
    /// The HTTP status answered.
    pub status: u16,
    /// The response body answered (JSON).
    pub response: String,
    /// When it was stored.
    pub created_at: Timestamp,
}

/// A bulk request and its results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkJob {
    /// The bulk id.
    pub id: BulkId,
    /// The client that submitted it.
    pub client_id: ClientId,
    /// Its status.
    pub status: BulkStatus,
    /// The request rows (JSON array of rows as submitted).
    pub request: String,
    /// How many rows have results.
    pub done_rows: u64,
    /// How many rows there are.
    pub total_rows: u64,
    /// When it was accepted.
    pub created_at: Timestamp,
}

/// Progress on a bulk job, committed with the effects of the rows it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkProgress {
    /// The bulk id.
    pub id: BulkId,
    /// The rows done before these results: the update applies only if the job is still there.
    pub expected_done_rows: u64,
    /// The results of the next rows, in request order (one JSON object each).
    pub results: Vec<String>,
}

/// An end-user or authority client of the national system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    /// The client id.
    pub client_id: ClientId,
    /// The argon2 hash of its secret.
    pub secret_hash: String,
    /// Its role.
    pub role: Role,
    /// Its market.
    pub market: MarketCode,
    /// Its premises.
    pub location: Location,
    /// A human name.
    pub name: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// Whether it is cut off: it obtains no token, and the tokens it holds are refused.
    pub disabled: bool,
    /// When it was last seen: its last token, or its last request as the nodes report it now and
    /// then (`None`: never).
    pub last_used_at: Option<Timestamp>,
}

/// A change of a client, committed with the audit record that says who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientChange {
    /// The client; a unit changing a client that does not exist is refused
    /// ([`Conflict::Missing`](crate::Conflict::Missing)).
    pub client_id: ClientId,
    /// Cut the client off (`Some(true)`) or let it back in (`Some(false)`); `None` leaves it.
    pub disabled: Option<bool>,
    /// The client was seen at this instant; a stored later instant is kept.
    pub used_at: Option<Timestamp>,
}

/// A write that proves the store can commit: the node's row of the `heartbeats` table, written
/// through the same path and the same fsync as every other unit of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The node writing it.
    pub node_id: NodeId,
    /// When.
    pub at: Timestamp,
}

/// A token-signing key of the national system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// The key id.
    pub kid: KeyId,
    /// The Ed25519 secret key.
    pub secret: [u8; 32],
    /// When it was created.
    pub created_at: Timestamp,
    /// Whether tokens are signed with it.
    pub active: bool,
    /// When it stopped signing (it still verifies until every token it signed has expired).
    pub retired_at: Option<Timestamp>,
    /// When it was revoked: from then on it verifies nothing, whatever its tokens' expiry.
    pub revoked_at: Option<Timestamp>,
}

/// A new token-signing key: stored, and made the active one; the key active until then is retired
/// at `at`. A unit whose key id exists already is refused ([`Conflict::Exists`](crate::Conflict::Exists)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// The key (stored active, neither retired nor revoked, whatever its record says).
    pub key: KeyRecord,
    /// When it takes over.
    pub at: Timestamp,
}

/// The revocation of a token-signing key that no longer signs: tokens it signed are refused from
/// now on. A unit revoking the active key or a key that does not exist is refused
/// ([`Conflict::Missing`](crate::Conflict::Missing)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRevocation {
    /// The key id.
    pub kid: KeyId,
    /// When; a key revoked before keeps its first revocation time.
    pub at: Timestamp,
}

/// Serials of one batch to create as ACTIVE packs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPacks {
    /// The product.
    pub product_code: ProductCode,
    /// The batch.
    pub batch: Batch,
    /// The serials.
    pub serials: Vec<Serial>,
}

/// A pack write: the new record, applied only if the row still has `expected_version`
/// (`None`: the pack must not exist yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackWrite {
    /// The product.
    pub product_code: ProductCode,
    /// The serial.
    pub serial: Serial,
    /// The new record.
    pub pack: Pack,
    /// The version the decision was made on.
    pub expected_version: Option<u64>,
}

/// Everything one operation changes, committed atomically, durably and in one piece.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitOfWork {
    /// Pack state changes, each with its expected version.
    pub packs: Vec<PackWrite>,
    /// New packs (from an upload distributed by the hub); existing serials are left alone and counted.
    pub new_packs: Vec<NewPacks>,
    /// Products to create or replace.
    pub products: Vec<ProductRecord>,
    /// Batches to create or replace.
    pub batches: Vec<BatchRecord>,
    /// Alerts to raise; one whose `source_key` exists already is skipped (exactly one alert per source event).
    pub alerts: Vec<AlertRecord>,
    /// Alert status changes.
    pub alert_updates: Vec<AlertUpdate>,
    /// Audit entries, sealed into their market's chain in commit order.
    pub audit: Vec<Entry>,
    /// Messages for the relay.
    pub outbox: Vec<OutboxMessage>,
    /// The stored answer, keyed by client and transaction id; fails the unit if the key exists.
    pub idempotency: Option<IdempotencyRecord>,
    /// The id of the inbound message this unit applies; fails the unit if it was applied before.
    pub inbox: Option<MessageId>,
    /// A new bulk job.
    pub new_bulk: Option<BulkJob>,
    /// Progress of a bulk job.
    pub bulk_progress: Option<BulkProgress>,
    /// A new client, stored not seen yet; fails the unit
    /// ([`Conflict::Exists`](crate::Conflict::Exists)) if the id is taken.
    pub new_client: Option<ClientRecord>,
    /// Changes of clients: cut off, let back in, last seen.
    pub client_changes: Vec<ClientChange>,
    /// A new token-signing key, made the active one.
    pub new_key: Option<NewKey>,
    /// A token-signing key to revoke.
    pub key_revocation: Option<KeyRevocation>,
    /// The node's heartbeat (a probe that the store can commit).
    pub heartbeat: Option<Heartbeat>,
}

/// Everything one single-pack request reads, from one consistent snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackContext {
    /// The stored answer, if this client's transaction id was used before.
    pub idempotency: Option<IdempotencyRecord>,
    /// The product, if known in this market.
    pub product: Option<ProductRecord>,
    /// The pack with this serial, and its batch.
    pub pack: Option<(StoredPack, BatchRecord)>,
    /// Whether the batch named in the request exists for this product.
    pub requested_batch_known: bool,
}

/// What a commit did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// The sequence numbers the audit entries got, in order.
    pub audit_seqs: Vec<u64>,
    /// How many new packs were created (serials already present are not counted).
    pub packs_created: u64,
    /// The ids of alerts skipped because their source event had raised one already.
    pub alerts_skipped: Vec<AlertId>,
}
