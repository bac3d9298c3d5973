//! Bodies of the operator routes: the NMVO's client administration (`/v1/admin/clients`), and the
//! clock route that exists only in demonstrations (`openmvs demo --fake-clock`).

use openmvs_core::answer::ClientView;
use openmvs_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::schema;

/// `POST /admin/v1/clock`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"advance_seconds": 864000})))]
pub struct ClockAdvance {
    /// Seconds to move the shared clock forward.
    #[schema(maximum = 316224000)]
    pub advance_seconds: u64,
}

/// The clock after a move.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[schema(examples(json!({"now": "2026-12-16T09:30:00.000Z"})))]
pub struct ClockAnswer {
    /// The time now, RFC 3339 UTC.
    #[schema(value_type = schema::Time)]
    pub now: String,
}

/// `POST /admin/v1/latency`: the next `requests` verifications and status updates, at every
/// national system of the demonstration, are answered `millis` later than they would be (to show
/// the status pages and the incident rules at work).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"requests": 40, "millis": 400})))]
pub struct LatencyInjection {
    /// How many requests.
    #[schema(maximum = 100000)]
    pub requests: u64,
    /// How much later each is answered, in milliseconds.
    #[schema(maximum = 10000)]
    pub millis: u64,
}

/// What is still to be slowed down.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[schema(examples(json!({"requests": 40, "millis": 400})))]
pub struct LatencyAnswer {
    /// Requests still to be slowed down.
    pub requests: u64,
    /// By this many milliseconds.
    pub millis: u64,
}

/// A client as the NMVO sees it (`GET /v1/admin/clients`, and the answer to a disable or enable).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[schema(examples(json!({"client_id": "cl_9502d35169718f7dbe9cf7b17e344cec", "role": "PHARMACY", "location": "DE-PH-0001",
    "name": "Apotheke am Markt", "state": "DISABLED", "created_at": "2026-11-02T08:00:00.000Z", "last_used_at": "2026-12-06T01:20:11.204Z"})))]
pub struct ClientState {
    /// The client id.
    pub client_id: String,
    /// Its role.
    #[schema(value_type = schema::RoleName)]
    pub role: String,
    /// Its premises.
    #[schema(value_type = schema::LocationCode)]
    pub location: String,
    /// Its name, for people.
    pub name: String,
    /// `ENABLED` or `DISABLED` (its tokens are refused and it gets no new one).
    #[schema(value_type = schema::ClientAccess)]
    pub state: String,
    /// When it was created, RFC 3339 UTC.
    #[schema(value_type = schema::Time)]
    pub created_at: String,
    /// When it last obtained a token or made a request, RFC 3339 UTC; `null`: never.
    #[schema(required = true, value_type = Option<schema::Time>)]
    pub last_used_at: Option<String>,
}

/// `GET /v1/admin/clients`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[schema(examples(json!({"clients": [{"client_id": "cl_9502d35169718f7dbe9cf7b17e344cec", "role": "PHARMACY", "location": "DE-PH-0001",
    "name": "Apotheke am Markt", "state": "DISABLED", "created_at": "2026-11-02T08:00:00.000Z", "last_used_at": "2026-12-06T01:20:11.204Z"}]})))]
pub struct ClientList {
    /// Every client of the market, in id order.
    pub clients: Vec<ClientState>,
}

impl From<&ClientView> for ClientState {
    fn from(c: &ClientView) -> ClientState {
        ClientState {
            client_id: c.client_id.to_string(),
            role: c.role.to_string(),
            location: c.location.to_string(),
            name: c.name.clone(),
            state: if c.disabled { "DISABLED" } else { "ENABLED" }.to_owned(),
            created_at: c.created_at.to_rfc3339(),
            last_used_at: c.last_used_at.map(Timestamp::to_rfc3339),
        }
    }
}

impl From<&[ClientView]> for ClientList {
    fn from(clients: &[ClientView]) -> ClientList {
        ClientList { clients: clients.iter().map(ClientState::from).collect() }
    }
}
