//! The OpenMVS audit trail: append-only records, hash-chained per market, with Ed25519-signed
//! checkpoints, and the verifier that streams them back and names the first bad record.
//!
//! # The model
//!
//! Every operation of a national system (verifications, state changes, refusals, logins,
//! authority reads, alert changes, inbound hub messages) becomes an [`Entry`]. A market's
//! [`ChainHead`] seals entries one after the other into [`Sealed`] records: record `n` carries
//! its sequence number (1-based per market), the hash of record `n - 1` (or [`GENESIS`] for the
//! first) and its own [`record_hash`]. A national system may serve several markets (BE and LU, for
//! example); each market has its own chain, so markets can be stored, pruned and verified apart.
//!
//! Now and then the operator signs a market's chain head with an Ed25519 key:
//! [`sign_checkpoint`] makes a [`Checkpoint`], which anyone holding the public key can check
//! with [`verify_checkpoint`], without trusting the database it came from.
//!
//! [`Verifier`] is fed every record and checkpoint and reports the first finding as an
//! [`AuditError`] whose one-line message names the market and sequence number. It catches:
//!
//! - an edit of any byte of any field of a record (its hash no longer recomputes);
//! - an edit whose hash was recomputed too (the next record's `prev_hash` no longer matches, and a
//!   whole resealed suffix no longer matches the next checkpoint);
//! - a deleted, duplicated or reordered record (the sequence numbers are not consecutive);
//! - a truncated tail (a checkpoint names a record that is not there);
//! - a forged or altered checkpoint (its signature fails, or its key is not one of the operator's).
//!
//! # What the chain cannot protect
//!
//! The records after a market's last checkpoint (the *unsigned tail*) are protected against edits
//! in the middle, but not against truncation or wholesale rewriting: whoever can write the
//! database can delete the last records, or rewrite and reseal them, and the chain alone still
//! looks whole. Only a signature can pin the end of a chain. [`Summary`] therefore reports each
//! market's unsigned tail, so the operator knows how many records rest on the database's word
//! alone; checkpointing often keeps that number small.
//!
//! Nor can a checkpoint stored in the same database pin anything against whoever can write it:
//! deleting the newest records together with the checkpoints that sign them leaves a shorter
//! chain that is whole and signed. A copy of the latest checkpoint kept elsewhere (a national
//! system keeps one in a file beside its database and sends one to the hub) closes that gap:
//! [`Verifier::outside_head`] checks it as a checkpoint and the cut shows. What was written after
//! the latest copy left the database stays unprotected until the next one.
//!
//! # Purity
//!
//! Architecture invariant: this crate does no IO. It reads no clock (times are numbers the caller
//! passes), draws no random numbers (keys are passed in) and knows nothing of storage. Storage
//! engines keep the sealed records and checkpoints as rows; they call [`ChainHead::seal`] on
//! append and [`Verifier`] to check.
//!
//! The hash covers the exact bytes of every field. An engine must therefore store `request` and
//! `result` as the text it was given (`TEXT`, not a re-serialising type such as PostgreSQL's
//! `JSONB`), or every record would later look edited.

mod chains;
mod checkpoint;
mod error;
mod record;
mod verify;

pub use chains::{Chains, CheckpointPolicy, Tail};
pub use checkpoint::{Checkpoint, key_id, sign_checkpoint, verify_checkpoint};
pub use error::AuditError;
pub use record::{ChainHead, Entry, GENESIS, Hash, Sealed, record_hash};
pub use verify::{MarketSummary, Summary, Verifier};
