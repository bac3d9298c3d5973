//! The offline agent's link to its national system: the end-user client (`openmvs-client`) with
//! the pharmacy's client credentials, and every outcome sorted into what the agent needs to know
//! ([`openmvs_agent::upstream::Reply`]).
//!
//! The client sends each request once (`RetryPolicy::never`): the agent decides what a request
//! without an answer becomes (recorded, or tried again by the replay after the `Retry-After` or
//! the backoff), so a pharmacist is never kept waiting through a client's own retries. The client
//! still fetches and renews the token, and sends a request again once after a 401 with a new one.

use std::time::Duration;

use openmvs_agent::upstream::{BoxFuture, Forward, Forwarded, Reply, Upstream};
use openmvs_client::{
    AlertQuery, ClientError, EndUserClient, EndUserConfig, EntryMode, PackInput, PackOperation, RetryPolicy,
    UndoOperation,
};
use openmvs_core::pack::Command;
use openmvs_core::return_code::ReturnCode;
use openmvs_wire::api::{ErrorBody, PackRequest};

/// The national system, reached through the end-user client.
pub struct ClientUpstream {
    client: EndUserClient,
}

impl ClientUpstream {
    /// A link to `base_url` (`https://...`, or `http://` for a system on this machine), trusting
    /// `ca_pem` when given; one attempt of a request waits at most `timeout`.
    pub fn new(
        base_url: &str,
        ca_pem: Option<&[u8]>,
        client_id: &str,
        client_secret: &str,
        timeout: Duration,
    ) -> Result<ClientUpstream, String> {
        let mut config = EndUserConfig::new(base_url, client_id, client_secret)
            .with_retry(RetryPolicy::never())
            .with_timeout(timeout);
        if let Some(ca) = ca_pem {
            config = config.with_ca_pem(ca.to_vec());
        }
        Ok(ClientUpstream { client: EndUserClient::new(config).map_err(|e| e.to_string())? })
    }
}

/// The client's input for a request body as the pharmacy software sent it (the agent checked it).
fn input(body: &PackRequest) -> PackInput {
    let mut input = match &body.scan {
        Some(raw) => PackInput::scan(raw.clone()),
        None => PackInput::fields(
            body.scheme.clone().unwrap_or_default(),
            body.product_code.clone().unwrap_or_default(),
            body.serial.clone().unwrap_or_default(),
            body.batch.clone().unwrap_or_default(),
            body.expiry.clone().unwrap_or_default(),
        ),
    };
    if let Some(id) = &body.client_trx_id {
        input = input.with_client_trx_id(id.clone());
    }
    match body.entry_mode.as_deref() {
        Some("SCANNED") => input.with_entry_mode(EntryMode::Scanned),
        Some("MANUAL") => input.with_entry_mode(EntryMode::Manual),
        _ => input,
    }
}

fn credentials_refused() -> ErrorBody {
    let info = ReturnCode::Unauthenticated.info();
    ErrorBody {
        return_code: info.code.to_owned(),
        message: "The national system refused this pharmacy's client credentials.".to_owned(),
        details: Vec::new(),
    }
}

/// What an error of the client means to the agent.
fn reply_of(e: ClientError) -> Reply {
    match e {
        ClientError::Refused { status: status @ (429 | 503), body, retry_after, .. } => {
            Reply::Busy { status, retry_after, body: Some(body) }
        }
        ClientError::Refused { status: status @ 400..=499, body, .. } => Reply::Refused { status, body },
        ClientError::Login { status: 429 | 503, .. } => {
            Reply::Busy { status: 503, retry_after: None, body: None }
        }
        ClientError::Login { status: 400..=499, .. } => {
            Reply::Refused { status: 401, body: credentials_refused() }
        }
        other => Reply::Unreachable(other.to_string()),
    }
}

fn forwarded<T: serde::Serialize>(status: u16, answer: Result<T, ClientError>) -> Result<Forwarded, String> {
    match answer {
        Ok(v) => Ok(Forwarded {
            status,
            retry_after: None,
            body: serde_json::to_vec(&v).map_err(|e| e.to_string())?,
        }),
        Err(ClientError::Refused { status, body, retry_after, .. }) if status < 500 || status == 503 => {
            Ok(Forwarded {
                status,
                retry_after: retry_after.map(|d| d.as_secs().max(1)),
                body: serde_json::to_vec(&body).map_err(|e| e.to_string())?,
            })
        }
        Err(e) => Err(e.to_string()),
    }
}

impl Upstream for ClientUpstream {
    fn pack(&self, command: Command, body: &PackRequest) -> BoxFuture<'_, Reply> {
        let input = input(body);
        Box::pin(async move {
            let answer = match command {
                Command::Verify => self.client.pack(PackOperation::Verify, &input).await,
                Command::Set(op) => match PackOperation::parse(op.as_str()) {
                    Some(op) => self.client.pack(op, &input).await,
                    None => return Reply::Unreachable(format!("the client has no operation {op}")),
                },
                Command::Undo(op) => match UndoOperation::parse(op.as_str()) {
                    Some(op) => self.client.undo(op, &input).await,
                    None => return Reply::Unreachable(format!("the client cannot undo {op}")),
                },
            };
            match answer {
                Ok(resp) => Reply::Answered(resp),
                Err(e) => reply_of(e),
            }
        })
    }

    fn forward(&self, request: Forward) -> BoxFuture<'_, Result<Forwarded, String>> {
        Box::pin(async move {
            match request {
                Forward::SubmitBulk(bulk) => forwarded(202, self.client.submit_bulk(&bulk).await),
                Forward::BulkStatus(id) => forwarded(200, self.client.bulk_status(&id).await),
                Forward::Alerts { status, limit, cursor } => {
                    forwarded(200, self.client.alerts(&AlertQuery { status, limit, cursor }).await)
                }
                Forward::Alert(id) => forwarded(200, self.client.alert(&id).await),
            }
        })
    }
}
