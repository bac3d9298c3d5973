//! The client against the real hub and national system in process (`world`), and behind a proxy
//! that records each attempt and injects refusals and cut-off answers (`proxy`): tokens renewed
//! ahead of expiry on a manual timer, retries with the same `client_trx_id`, no retry of other
//! 4xx, error bodies surfaced, bulk polled until done, and an OBP over mutual TLS.

mod end_user;
mod obp;
mod proxy;
mod retries;
mod tokens;
mod world;
