//! The HTTP face of OpenMVS. Only this crate knows HTTP: routes, status codes, headers, TLS.
//!
//! Every error leaves through one `IntoResponse` ([`error::HttpError`]) whose status comes from
//! the return-code catalogue; every response carries an `x-request-id`; every request is timed
//! into the latency histograms of its operation class and into the monthly SLA figures.

pub mod admin;
pub mod agent;
pub mod agent_upstream;
pub mod authz;
pub mod callback;
pub mod docs;
pub mod error;
pub mod export;
pub mod figures;
pub mod history;
pub mod hub;
pub mod hub_client;
pub mod hub_status;
pub mod hub_web;
pub mod incidents;
pub mod limit;
pub mod login;
pub mod national;
pub mod national_link;
pub mod observe;
pub mod openapi;
pub mod server;
pub mod shed;
pub mod soap;
pub mod status;
pub mod upkeep;
pub mod web;

pub use agent::{AgentState, agent_router};
pub use error::HttpError;
pub use hub::{HubState, hub_router};
pub use national::{NationalState, national_router};
pub use observe::Observability;
pub use server::{ServeOptions, ServerHandle, TlsConfig, TlsReloader, serve, serve_with};
