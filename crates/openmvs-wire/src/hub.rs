//! Messages between the hub and national systems (internal to OpenMVS, documented in
//! ARCHITECTURE.md): every message has a globally unique id and is applied once by its receiver.

use serde::{Deserialize, Serialize};

/// One message, as carried in a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Globally unique; the receiver applies each id once.
    pub message_id: String,
    /// Who sent it: `hub` or a market code.
    pub origin: String,
    /// Messages with the same key are delivered in order (the product code).
    pub ordering_key: String,
    /// The message itself.
    pub body: Message,
}

/// A delivery: several messages, applied in order; the answer acknowledges each.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// The messages.
    pub messages: Vec<Envelope>,
}

/// The receiver's answer to a delivery, one entry per message in order.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct DeliveryAck {
    /// Per message.
    pub results: Vec<MessageAck>,
}

/// What the receiver did with one message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct MessageAck {
    /// The message id.
    pub message_id: String,
    /// `APPLIED`, `DUPLICATE` (applied before; nothing done) or `REJECTED` (will never apply:
    /// the sender moves it to its dead-letter list).
    pub status: String,
    /// Why, when rejected.
    pub error: Option<String>,
}

/// The kinds of message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Message {
    /// Product master data for the receiving market (hub to national).
    Product(ProductMsg),
    /// A batch and its target markets (hub to national).
    Batch(BatchMsg),
    /// Serials of a batch to create as ACTIVE packs (hub to national).
    Packs(PacksMsg),
    /// A batch recall in the receiving market (hub to national).
    Recall(RecallMsg),
    /// A product withdrawal from the receiving market (hub to national).
    Withdrawal(WithdrawalMsg),
    /// A state change made in another market, or by the OBP (both directions).
    PackState(PackStateMsg),
    /// An alert: raised in a market, for the owning OBP (national to hub); or a copy for the other
    /// market of an inter-market alert (hub to national).
    Alert(AlertMsg),
    /// A status change of an alert, made at one of the systems that hold it (both directions).
    AlertChange(AlertChangeMsg),
    /// A comment on an alert, made at one of the systems that hold it (both directions).
    AlertComment(AlertCommentMsg),
    /// The latest signed checkpoint of the sender's audit trail (national to hub), kept by the
    /// hub in its own trail, out of reach of whoever can write the national database.
    AuditHead(SignedHead),
}

impl Message {
    /// The message's kind, as its `kind` tag says.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Product(_) => "product",
            Message::Batch(_) => "batch",
            Message::Packs(_) => "packs",
            Message::Recall(_) => "recall",
            Message::Withdrawal(_) => "withdrawal",
            Message::PackState(_) => "pack-state",
            Message::Alert(_) => "alert",
            Message::AlertChange(_) => "alert-change",
            Message::AlertComment(_) => "alert-comment",
            Message::AuditHead(_) => "audit-head",
        }
    }
}

/// Product master data.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProductMsg {
    /// `GTIN` or `PPN`.
    pub scheme: String,
    /// Product code.
    pub product_code: String,
    /// Name.
    pub name: String,
    /// Common name.
    pub common_name: String,
    /// Form.
    pub form: String,
    /// Strength.
    pub strength: String,
    /// Pack type.
    pub pack_type: String,
    /// Pack size.
    pub pack_size: String,
    /// The owning OBP.
    pub owner: String,
    /// Master data version.
    pub version: u32,
}

/// A batch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BatchMsg {
    /// `GTIN` or `PPN`.
    pub scheme: String,
    /// Product code.
    pub product_code: String,
    /// Batch.
    pub batch: String,
    /// Expiry as uploaded.
    pub expiry: String,
    /// Every target market.
    pub markets: Vec<String>,
}

/// Serials to create.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PacksMsg {
    /// `GTIN` or `PPN`.
    pub scheme: String,
    /// Product code.
    pub product_code: String,
    /// Batch.
    pub batch: String,
    /// Serials.
    pub serials: Vec<String>,
}

/// A recall.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecallMsg {
    /// `GTIN` or `PPN`.
    pub scheme: String,
    /// Product code.
    pub product_code: String,
    /// Batch.
    pub batch: String,
    /// Why.
    pub reason: String,
}

/// A withdrawal.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalMsg {
    /// `GTIN` or `PPN`.
    pub scheme: String,
    /// Product code.
    pub product_code: String,
    /// Why.
    pub reason: String,
}

/// A pack state change to mirror.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PackStateMsg {
    /// `GTIN` or `PPN`.
    pub scheme: String,
    /// Product code.
    pub product_code: String,
    /// Serial.
    pub serial: String,
    /// Batch.
    pub batch: String,
    /// The state the pack took (ACTIVE after an undo).
    pub state: String,
    /// What was done, e.g. `supply` or `supply-undo`.
    pub command: String,
    /// The market it was done in (`OBP` for an OBP's change).
    pub market: String,
    /// The location it was done from.
    pub location: String,
    /// When, RFC 3339.
    pub at: String,
}

/// An alert for the owning OBP.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertMsg {
    /// The alert.
    pub alert: crate::api::AlertView,
    /// The OBP that owns the product.
    pub owner: String,
}

/// A status change of an alert, for the other systems that hold it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertChangeMsg {
    /// The alert.
    pub alert_id: String,
    /// The change.
    pub change: crate::api::AlertChangeView,
}

impl Message {
    /// The alert and the thread entry an `alert-change` or `alert-comment` message carries,
    /// checked as another system sent them; `None` for the other kinds.
    pub fn alert_entry(&self) -> Option<Result<(&str, openmvs_core::alert::AlertEntry), String>> {
        use openmvs_core::alert::AlertEntry;
        match self {
            Message::AlertChange(m) => Some(
                m.change
                    .to_change()
                    .map(|c| (m.alert_id.as_str(), AlertEntry::Change(c)))
                    .map_err(|e| format!("change: {e}")),
            ),
            Message::AlertComment(m) => Some(
                m.comment
                    .to_comment()
                    .map(|c| (m.alert_id.as_str(), AlertEntry::Comment(c)))
                    .map_err(|e| format!("comment: {e}")),
            ),
            _ => None,
        }
    }
}

impl AlertChangeMsg {
    /// The message that carries `change` of the alert `alert_id`.
    pub fn new(alert_id: &str, change: &openmvs_core::alert::AlertChange) -> AlertChangeMsg {
        AlertChangeMsg { alert_id: alert_id.to_owned(), change: change.into() }
    }
}

impl AlertCommentMsg {
    /// The message that carries `comment` on the alert `alert_id`.
    pub fn new(alert_id: &str, comment: &openmvs_core::alert::AlertComment) -> AlertCommentMsg {
        AlertCommentMsg { alert_id: alert_id.to_owned(), comment: comment.into() }
    }
}

/// A comment on an alert, for the other systems that hold it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertCommentMsg {
    /// The alert.
    pub alert_id: String,
    /// The comment.
    pub comment: crate::api::AlertCommentView,
}

/// A single-pack request for a product unknown in the initiating market, routed by the hub to a
/// market that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IntermarketRequest {
    /// The initiating market.
    pub market: String,
    /// The initiating client.
    pub client_id: String,
    /// Its role.
    pub role: String,
    /// Its location.
    pub location: String,
    /// The command, e.g. `verify`, `supply`, `supply-undo`.
    pub command: String,
    /// The client's transaction id.
    pub client_trx_id: String,
    /// `GTIN` or `PPN`.
    pub scheme: String,
    /// Product code.
    pub product_code: String,
    /// Serial.
    pub serial: String,
    /// Batch.
    pub batch: String,
    /// Expiry.
    pub expiry: String,
}

/// The hub's answer to an inter-market request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct IntermarketAnswer {
    /// The market that processed it; null when no market knows the product.
    pub market: Option<String>,
    /// Its answer, when one was found.
    pub response: Option<crate::api::PackResponse>,
    /// With no answer: the markets that hold the product but could not be reached (down, or
    /// not answering within the hub's budget), in market order. Empty when every market that
    /// holds it answered, so that `market: null` then means "unknown everywhere".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<String>,
}

/// The hub's question to a national system about one pack, for the owning OBP's pack query
/// (`POST /internal/v1/pack-query`). Read-only.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PackQuery {
    /// `GTIN` or `PPN`.
    pub scheme: String,
    /// Product code.
    pub product_code: String,
    /// Serial.
    pub serial: String,
}

/// A pack as one national system holds it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PackStateView {
    /// The batch the pack was uploaded in.
    pub batch: String,
    /// Its state, e.g. `ACTIVE` or `SUPPLIED`.
    pub state: String,
    /// Why it cannot be dispensed: any of `WITHDRAWN`, `RECALLED`, `EXPIRED`.
    pub reasons: Vec<String>,
}

/// A national system's answer to a [`PackQuery`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PackQueryAnswer {
    /// The market that answers.
    pub market: String,
    /// The pack; null when this market does not hold it.
    pub pack: Option<PackStateView>,
}

/// A signed checkpoint of a market's audit trail, as it travels and as it is kept outside the
/// database: one JSON object, one line of `audit-heads.jsonl` (a national system's head file) and
/// of `openmvs audit heads` (the heads the hub received). Its signature covers `market`, `seq`,
/// `hash`, `at_millis` and `key_id` exactly (see the `openmvs-audit` crate), so the hub need not
/// be trusted with it: whoever holds the national system's public key checks it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SignedHead {
    /// The market whose chain is signed.
    pub market: String,
    /// The sequence number of the record signed.
    pub seq: u64,
    /// That record's hash, 64 lower-case hex digits.
    pub hash: String,
    /// When it was signed, in milliseconds since the Unix epoch.
    pub at_millis: i64,
    /// The id of the signing key, 16 lower-case hex digits.
    pub key_id: String,
    /// The Ed25519 signature, 128 lower-case hex digits.
    pub signature: String,
}

impl SignedHead {
    /// Checks the shape of every field (the signature itself needs the signer's public key):
    /// the error names the field and the rule.
    pub fn check_shape(&self) -> Result<(), String> {
        openmvs_core::ids::MarketCode::new(&self.market).map_err(|e| format!("market: {e}"))?;
        if self.seq == 0 {
            return Err("seq: a signed head signs a record, numbered from 1".into());
        }
        for (name, value, len) in
            [("hash", &self.hash, 64), ("key_id", &self.key_id, 16), ("signature", &self.signature, 128)]
        {
            if value.len() != len || !value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(format!("{name}: exactly {len} lower-case hex digits"));
            }
        }
        Ok(())
    }
}

/// An incident in progress at a national system, as the hub's status page shows it (the fields
/// of the national system's `GET /v1/incidents` items that the hub reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
pub struct MarketIncident {
    /// Its number at the national system.
    pub id: u64,
    /// Its title.
    pub title: String,
    /// `minor`, `major` or `critical`.
    pub impact: String,
    /// `investigating`, `identified` or `monitoring`.
    pub status: String,
    /// When it began.
    #[schema(value_type = crate::schema::Time)]
    pub opened_at: String,
}
