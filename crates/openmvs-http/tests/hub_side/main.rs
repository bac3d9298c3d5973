//! The national system's hub-facing side, tested against a fake hub over real mutual TLS:
//! deliveries from the hub, the internal routes' certificate check, multi-market
//! synchronisation, the outbox relay with its retries and dead letters, and inter-market
//! requests in both directions.

mod fake_hub;
mod faults;
mod harness;
mod inbound;
mod intermarket;
mod outbound;
mod pki;
mod retries;
#[path = "../support/retry.rs"]
mod retry;
mod routes;
mod sync;
