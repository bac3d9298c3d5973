//! The OpenMVS domain core: every rule of the EU Falsified Medicines Directive that OpenMVS
//! enforces, as pure functions over data.
//!
//! Architecture invariant: this crate does no IO. It reads no clock, draws no random numbers,
//! starts no threads and knows nothing of HTTP, JSON or storage. Time, actor and location come in
//! as arguments; refusals are normal outcomes carrying a return code and maybe an alert.

pub mod alert;
pub mod answer;
pub mod catalog;
pub mod error;
pub mod guessing;
pub mod ids;
pub mod master_data;
pub mod obp_states;
pub mod offline;
pub mod pack;
pub mod return_code;
pub mod roles;
pub mod scan;
pub mod time;
pub mod upload;
