//! The national system's API over real HTTPS, in process: every return code of the contract,
//! every HTTP error, scans, roles, undo, idempotency, bulk, alerts, audit and the operations
//! endpoints. Each test starts its own national system on a fresh store with a fake clock
//! (see `harness`).

mod errors;
mod harness;
mod packs;
mod undo;
