//! The national system's API over real HTTPS, in process: every return code of the contract,
//! every HTTP error, scans, roles, undo, idempotency, bulk, alerts, audit and the operations
//! endpoints. Each test starts its own national system on a fresh store with a fake clock
//! (see `harness`).

mod alerts;
mod audit;
mod bulk;
mod errors;
mod harness;
mod idempotency;
mod ops;
mod packs;
mod roles;
mod scan;
mod undo;
