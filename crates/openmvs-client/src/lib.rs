//! A typed async client of OpenMVS's public interfaces: [`EndUserClient`] for a national
//! system's end-user API (api.md §2 and §4) and [`ObpClient`] for the hub's OBP API (api.md §3).
//!
//! Bodies are the shapes of [`openmvs_wire`] (re-exported as [`wire`]), so the client and the
//! servers cannot disagree on a field. What the client adds:
//!
//! - **Tokens.** The end-user client fetches its token with the client credentials, renews it
//!   once half of its life has passed ([`renew_after`]), one renewal at a time however many
//!   tasks call, keeps using it while a renewal fails (a national system that cannot read its
//!   signing keys issues no token but accepts those it issued) and tries again after the
//!   `Retry-After` named, and after a 401 renews it once and sends the call again.
//! - **Retries** ([`RetryPolicy`]). No answer, a timeout, a 429 or a 503 sends the same request
//!   again, with the same `client_trx_id` (generated when the caller gives none), after the
//!   `Retry-After` the server named or a capped exponential backoff, up to a number of attempts.
//!   Other 4xx are never retried; they come back as [`ClientError::Refused`] with the error
//!   body (return code, message, the fields at fault).
//! - **Waiting** for a bulk request to be `DONE` or an upload to reach a status, every
//!   [`PollOptions::interval`] up to [`PollOptions::deadline`].
//! - **Time** through a [`Timer`]: tokio's clock in use, a [`ManualTimer`] in tests, so that
//!   renewals, backoffs and polls are tested without waiting.
//!
//! ```no_run
//! # async fn demo() -> Result<(), openmvs_client::ClientError> {
//! use openmvs_client::{EndUserClient, EndUserConfig, PackInput};
//!
//! let ca = std::fs::read("openmvs-data/ca.pem").expect("the demo's CA");
//! let client = EndUserClient::new(
//!     EndUserConfig::new("https://127.0.0.1:8401", "cl_...", "secret").with_ca_pem(ca),
//! )?;
//! let pack = PackInput::gtin("09501101530003", "EXA00000002", "EXA2401", "281231");
//! let answer = client.supply(&pack).await?;
//! println!("{} {:?}", answer.return_code, answer.pack.map(|p| p.state));
//! # Ok(()) }
//! ```
//!
//! Architecture invariant: this crate speaks HTTP as a client only (no server code) and
//! defines no JSON shape of its own.

mod end_user;
mod error;
mod obp;
mod retry;
mod time;
mod token;
mod transport;

use std::time::Duration;

pub use end_user::{EndUserClient, EndUserConfig, EntryMode, PackInput, PackOperation, UndoOperation};
pub use error::ClientError;
pub use obp::{ObpClient, ObpConfig};
pub use openmvs_wire as wire;
pub use retry::RetryPolicy;
pub use time::{ManualTimer, Sleep, Timer, TokioTimer};
pub use token::renew_after;

/// A new `client_trx_id`: `omc-` and 24 random hexadecimal digits, unique in practice.
pub fn new_client_trx_id() -> String {
    let mut r = [0u8; 12];
    // Only a system without a random source fails here; such a system cannot run TLS either.
    getrandom::fill(&mut r).expect("the operating system's random number generator failed");
    let mut id = String::with_capacity(4 + 24);
    id.push_str("omc-");
    for b in r {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// How a client waits for something that takes a while (a bulk request, an upload): it asks
/// every `interval`, for at most `deadline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollOptions {
    /// Between two asks. Default 1 s.
    pub interval: Duration,
    /// The longest wait. Default 10 minutes.
    pub deadline: Duration,
}

impl Default for PollOptions {
    fn default() -> PollOptions {
        PollOptions { interval: Duration::from_secs(1), deadline: Duration::from_secs(600) }
    }
}

/// Which alerts `GET /v1/alerts` lists, at a national system or at the hub.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertQuery {
    /// Only alerts of this status (`OPEN`, `INVESTIGATING`, `ESCALATED`, `CLOSED`).
    pub status: Option<String>,
    /// At most this many per page (the server caps it).
    pub limit: Option<usize>,
    /// The page after this cursor (a `next_cursor` of an earlier page).
    pub cursor: Option<String>,
}

impl AlertQuery {
    /// Every alert, one page of the server's default size at a time.
    pub fn all() -> AlertQuery {
        AlertQuery::default()
    }

    /// Alerts of `status`.
    pub fn with_status(status: impl Into<String>) -> AlertQuery {
        AlertQuery { status: Some(status.into()), ..AlertQuery::default() }
    }

    fn apply(&self, url: &mut reqwest::Url) {
        let mut q = url.query_pairs_mut();
        if let Some(s) = &self.status {
            q.append_pair("status", s);
        }
        if let Some(l) = self.limit {
            q.append_pair("limit", &l.to_string());
        }
        if let Some(c) = &self.cursor {
            q.append_pair("cursor", c);
        }
        drop(q);
        // No parameter: no lone `?`.
        if url.query() == Some("") {
            url.set_query(None);
        }
    }
}

/// Every alert of `query`'s pages, asking `page` for each from the query's cursor on.
async fn all_pages<F, Fut>(query: &AlertQuery, mut page: F) -> Result<Vec<wire::api::AlertView>, ClientError>
where
    F: FnMut(AlertQuery) -> Fut,
    Fut: Future<Output = Result<wire::api::AlertList, ClientError>>,
{
    let mut q = query.clone();
    let mut all = Vec::new();
    loop {
        let list = page(q.clone()).await?;
        all.extend(list.alerts);
        match list.next_cursor {
            // A cursor that does not move would page forever.
            Some(next) if q.cursor.as_deref() != Some(next.as_str()) => q.cursor = Some(next),
            _ => return Ok(all),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_client_trx_ids_are_valid_and_differ() {
        let (a, b) = (new_client_trx_id(), new_client_trx_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 28);
        assert!(a.bytes().all(|c| c.is_ascii_graphic()), "{a}");
    }

    #[test]
    fn an_alert_query_names_only_what_it_holds() {
        let mut url = reqwest::Url::parse("https://h/v1/alerts").unwrap();
        AlertQuery::all().apply(&mut url);
        assert_eq!(url.as_str(), "https://h/v1/alerts");
        let mut url = reqwest::Url::parse("https://h/v1/alerts").unwrap();
        AlertQuery { status: Some("OPEN".into()), limit: Some(2), cursor: Some("A B".into()) }
            .apply(&mut url);
        assert_eq!(url.query(), Some("status=OPEN&limit=2&cursor=A+B"));
    }
}
