//! Storage ports of a national system: what is stored, how a state change is committed, and the
//! small traits each engine (SQLite, PostgreSQL) implements.
//!
//! Architecture invariant: callers never open transactions. Everything one operation changes (pack
//! state with its expected version, audit records, alert, outbox messages, idempotency record) goes
//! into one [`UnitOfWork`] and the engine commits it atomically and durably before answering.

mod checkpoints;
pub mod commit;
#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "conformance")]
pub mod conformance_console;
#[cfg(feature = "conformance")]
pub mod conformance_hub;
mod console;
pub mod decode;
pub mod decode_hub;
pub mod entropy;
mod error;
pub mod hub;
mod model;
mod ports;
pub mod relay;
pub mod retry;
pub mod rolling;

pub use checkpoints::*;
pub use console::*;
pub use error::unavailable;
pub use model::*;
pub use ports::*;
