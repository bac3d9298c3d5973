//! The national system's API over real HTTPS, in process: every return code of the contract,
//! every HTTP error, scans and the rescan a scanner's corruption asks for, roles, undo,
//! idempotency, bulk, alerts, audit, the operations endpoints, and tokens while the signing keys
//! cannot be read. Each test starts its own national system on a fresh store with a fake clock
//! (see `harness`). With `OPENMVS_TEST_STORAGE=postgres` every app keeps its data in PostgreSQL
//! instead, and with `OPENMVS_TEST_STORAGE=memory` in the in-memory engine; `multi_node` runs
//! several nodes on one PostgreSQL schema whenever a database is given.
//! Admission is a fixed bound (no governor), and the clients retry a refusal for load as a real
//! client does (`retry`), so that a busy machine slows the suite down instead of failing it.

mod alerts;
mod audit;
mod bulk;
mod console;
mod console_web;
#[path = "../support/contract.rs"]
mod contract;
mod contract_answers;
mod errors;
#[path = "../hub_side/faults.rs"]
mod faults;
mod guessing;
mod harness;
mod idempotency;
mod lifecycle;
mod multi_node;
mod ops;
mod packs;
mod readiness;
mod rescan;
#[path = "../support/retry.rs"]
mod retry;
mod roles;
mod scan;
mod signing_keys;
mod soap;
mod undo;
