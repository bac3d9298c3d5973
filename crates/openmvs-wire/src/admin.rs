//! Bodies of the operator routes: the NMVO's client administration (`/v1/admin/clients`), and the
//! clock route that exists only in demonstrations (`openmvs demo --fake-clock`).

use openmvs_core::answer::ClientView;
use openmvs_core::time::Timestamp;
use serde::{Deserialize, Serialize};

/// `POST /admin/v1/clock`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClockAdvance {
    /// Seconds to move the shared clock forward.
    pub advance_seconds: u64,
}

/// The clock after a move.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ClockAnswer {
    /// The time now, RFC 3339 UTC.
    pub now: String,
}

/// A client as the NMVO sees it (`GET /v1/admin/clients`, and the answer to a disable or enable).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ClientState {
    /// The client id.
    pub client_id: String,
    /// Its role.
    pub role: String,
    /// Its premises.
    pub location: String,
    /// Its name, for people.
    pub name: String,
    /// `ENABLED` or `DISABLED` (its tokens are refused and it gets no new one).
    pub state: String,
    /// When it was created, RFC 3339 UTC.
    pub created_at: String,
    /// When it last obtained a token or made a request, RFC 3339 UTC; `null`: never.
    pub last_used_at: Option<String>,
}

/// `GET /v1/admin/clients`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
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
