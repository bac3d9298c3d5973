//! Signed checkpoints: an Ed25519 signature over a market's chain head, so that anyone with the
//! public key can pin the chain up to that record without trusting the database.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::AuditError;
use crate::record::{ChainHead, Hash, field};

/// The domain tag that opens every checkpoint message, so that a checkpoint signature can never
/// be replayed as a signature over anything else the same key might sign.
const CHECKPOINT_TAG: &[u8] = b"openmvs-audit-v1 checkpoint";

/// A signed statement that record `seq` of `market`'s chain has hash `hash`.
///
/// Because each record's hash covers its predecessor's, the signature vouches for every record up
/// to `seq`, and a missing record `seq` shows the chain was truncated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The market whose chain is signed.
    pub market: String,
    /// The sequence number of the signed record (0 signs the empty chain).
    pub seq: u64,
    /// The hash of that record ([`crate::GENESIS`] for the empty chain).
    pub hash: Hash,
    /// When it was signed, in milliseconds since the Unix epoch, as the caller's clock said.
    pub at_millis: i64,
    /// The [`key_id`] of the key that signed it.
    pub key_id: String,
    /// The Ed25519 signature over the checkpoint message.
    pub signature: [u8; 64],
}

/// The id of a public key: the first 8 bytes of the SHA-256 of its 32 bytes, in lower-case hex
/// (16 characters).
///
/// Ids are derived rather than chosen so that an id can never name two keys, and anyone can
/// recompute it from the published key (`sha256sum` of the raw key, first 16 hex digits).
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex(&digest[..8])
}

/// Signs `head` as a checkpoint made at `at_millis` with `key`.
///
/// The signature is plain Ed25519 (RFC 8032) over this message:
///
/// 1. `field(b"openmvs-audit-v1 checkpoint")`, the domain tag;
/// 2. `field(market)`;
/// 3. `seq` as 8 bytes, big-endian;
/// 4. `hash` as its 32 bytes;
/// 5. `at_millis` as 8 bytes, big-endian two's complement;
/// 6. `field(key_id)`;
///
/// where `field(x)` is the length of `x` in bytes as 8 bytes big-endian, then its bytes. The key
/// id is taken from `key` itself, so a checkpoint can never name a key other than its signer.
pub fn sign_checkpoint(head: &ChainHead, at_millis: i64, key: &SigningKey) -> Checkpoint {
    let key_id = key_id(&key.verifying_key());
    let msg = message(&head.market, head.seq, &head.hash, at_millis, &key_id);
    Checkpoint {
        market: head.market.clone(),
        seq: head.seq,
        hash: head.hash,
        at_millis,
        key_id,
        signature: key.sign(&msg).to_bytes(),
    }
}

/// Checks that `cp` was signed by `key` and not altered since.
///
/// The check is Ed25519's strict verification, which also refuses weak public keys and
/// malleable signatures: an audit trail has no use for the lenient variant. A checkpoint naming
/// another key than `key` is refused as [`AuditError::KeyMismatch`] before any signature is
/// checked, since the caller looked up the wrong key.
pub fn verify_checkpoint(cp: &Checkpoint, key: &VerifyingKey) -> Result<(), AuditError> {
    let id = key_id(key);
    if cp.key_id != id {
        return Err(AuditError::KeyMismatch {
            market: cp.market.clone(),
            seq: cp.seq,
            key_id: cp.key_id.clone(),
            checked_with: id,
        });
    }
    let msg = message(&cp.market, cp.seq, &cp.hash, cp.at_millis, &cp.key_id);
    key.verify_strict(&msg, &Signature::from_bytes(&cp.signature)).map_err(|_| AuditError::BadSignature {
        market: cp.market.clone(),
        seq: cp.seq,
        key_id: cp.key_id.clone(),
    })
}

/// The message a checkpoint signature covers; see [`sign_checkpoint`].
fn message(market: &str, seq: u64, hash: &Hash, at_millis: i64, key_id: &str) -> Vec<u8> {
    let mut msg = Vec::with_capacity(128 + market.len() + key_id.len());
    field(&mut msg, CHECKPOINT_TAG);
    field(&mut msg, market.as_bytes());
    msg.extend_from_slice(&seq.to_be_bytes());
    msg.extend_from_slice(hash);
    msg.extend_from_slice(&at_millis.to_be_bytes());
    field(&mut msg, key_id.as_bytes());
    msg
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}
