//! [`EndUserClient`]: a pharmacy's, hospital's, wholesaler's, NMVO's or authority's client of a
//! national system (api.md §2 and §4): its token, single-pack requests, bulk, alerts, audit and
//! return codes.

use std::sync::Arc;
use std::time::Duration;

use openmvs_wire::ReturnCodeCatalogue;
use openmvs_wire::api::{
    AlertCommentRequest, AlertCommentView, AlertDetail, AlertList, AlertStatusRequest, AlertView,
    AuditRecords, BulkAccepted, BulkRequest, BulkStatusResponse, PackRequest, PackResponse,
};
use reqwest::Method;

use crate::error::ClientError;
use crate::retry::RetryPolicy;
use crate::time::{Timer, TokioTimer};
use crate::token::TokenCache;
use crate::transport::{Call, HttpSettings, Payload, Transport, base_url, http_client, segment};
use crate::{AlertQuery, PollOptions, all_pages, new_client_trx_id};

/// How an [`EndUserClient`] reaches its national system.
#[derive(Clone)]
pub struct EndUserConfig {
    /// The national system, e.g. `https://127.0.0.1:8401` (a path prefix is kept).
    pub base_url: String,
    /// The client id `openmvs admin client create` printed (or demo.json lists).
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// The certificates of the CAs to trust, PEM (one or several, e.g. the demo's `ca.pem`, or
    /// a system bundle such as `/etc/ssl/certs/ca-certificates.crt`). Without it the client
    /// trusts no certificate and can only speak plain `http://`.
    pub ca_pem: Option<Vec<u8>>,
    /// The longest one attempt of a request may take. Default 30 s.
    pub timeout: Duration,
    /// The longest a connection may take to open. Default 10 s.
    pub connect_timeout: Duration,
    /// When requests are sent again.
    pub retry: RetryPolicy,
}

impl EndUserConfig {
    /// A configuration with the default timeouts and retry policy.
    pub fn new(
        base_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> EndUserConfig {
        EndUserConfig {
            base_url: base_url.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            ca_pem: None,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }

    /// The same, trusting the CA certificates in `pem`.
    pub fn with_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> EndUserConfig {
        self.ca_pem = Some(pem.into());
        self
    }

    /// The same, with `retry` as its retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> EndUserConfig {
        self.retry = retry;
        self
    }

    /// The same, with `timeout` for one attempt of a request.
    pub fn with_timeout(mut self, timeout: Duration) -> EndUserConfig {
        self.timeout = timeout;
        self
    }
}

impl std::fmt::Debug for EndUserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of logs.
        f.debug_struct("EndUserConfig")
            .field("base_url", &self.base_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("ca_pem", &self.ca_pem.as_ref().map(|p| format!("{} bytes", p.len())))
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retry", &self.retry)
            .finish()
    }
}

/// A single-pack operation: `POST /v1/packs/{operation}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PackOperation {
    /// Verify the pack (no state change).
    Verify,
    /// Supply (dispense) it.
    Supply,
    /// Destroy it.
    Destroy,
    /// Export it out of the EU.
    Export,
    /// Take it as a sample for an authority.
    Sample,
    /// Hand it out as a free sample.
    FreeSample,
    /// Lock it.
    Lock,
    /// Report it stolen.
    Stolen,
}

impl PackOperation {
    /// Every operation.
    pub const ALL: [PackOperation; 8] = [
        PackOperation::Verify,
        PackOperation::Supply,
        PackOperation::Destroy,
        PackOperation::Export,
        PackOperation::Sample,
        PackOperation::FreeSample,
        PackOperation::Lock,
        PackOperation::Stolen,
    ];

    /// Its name in the path, e.g. `free-sample`.
    pub fn as_str(self) -> &'static str {
        match self {
            PackOperation::Verify => "verify",
            PackOperation::Supply => "supply",
            PackOperation::Destroy => "destroy",
            PackOperation::Export => "export",
            PackOperation::Sample => "sample",
            PackOperation::FreeSample => "free-sample",
            PackOperation::Lock => "lock",
            PackOperation::Stolen => "stolen",
        }
    }

    /// The operation named `name` in a path, if any.
    pub fn parse(name: &str) -> Option<PackOperation> {
        PackOperation::ALL.into_iter().find(|o| o.as_str() == name)
    }
}

/// An operation that can be undone: `POST /v1/packs/{operation}/undo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UndoOperation {
    /// Undo a supply.
    Supply,
    /// Undo an export.
    Export,
    /// Undo a sample.
    Sample,
    /// Undo a free sample.
    FreeSample,
    /// Unlock.
    Lock,
}

impl UndoOperation {
    /// Every undoable operation.
    pub const ALL: [UndoOperation; 5] = [
        UndoOperation::Supply,
        UndoOperation::Export,
        UndoOperation::Sample,
        UndoOperation::FreeSample,
        UndoOperation::Lock,
    ];

    /// The name of the operation it undoes, as in the path.
    pub fn as_str(self) -> &'static str {
        match self {
            UndoOperation::Supply => "supply",
            UndoOperation::Export => "export",
            UndoOperation::Sample => "sample",
            UndoOperation::FreeSample => "free-sample",
            UndoOperation::Lock => "lock",
        }
    }

    /// The undoable operation named `name` in a path, if any.
    pub fn parse(name: &str) -> Option<UndoOperation> {
        UndoOperation::ALL.into_iter().find(|o| o.as_str() == name)
    }
}

/// How a pack was read: `SCANNED` or `MANUAL` (api.md §2, `entry_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryMode {
    /// Read by a scanner.
    Scanned,
    /// Typed by hand.
    Manual,
}

impl EntryMode {
    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryMode::Scanned => "SCANNED",
            EntryMode::Manual => "MANUAL",
        }
    }
}

/// The pack a single-pack request is about, given field by field or as a raw scan, with the
/// request's `client_trx_id` (generated when none is given) and entry mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackInput {
    identifier: Identifier,
    client_trx_id: Option<String>,
    entry_mode: Option<EntryMode>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Identifier {
    Fields { scheme: String, product_code: String, serial: String, batch: String, expiry: String },
    Scan(String),
}

impl PackInput {
    /// A pack given field by field; `scheme` is `GTIN` or `PPN`, `expiry` `YYMMDD` as encoded.
    pub fn fields(
        scheme: impl Into<String>,
        product_code: impl Into<String>,
        serial: impl Into<String>,
        batch: impl Into<String>,
        expiry: impl Into<String>,
    ) -> PackInput {
        PackInput {
            identifier: Identifier::Fields {
                scheme: scheme.into(),
                product_code: product_code.into(),
                serial: serial.into(),
                batch: batch.into(),
                expiry: expiry.into(),
            },
            client_trx_id: None,
            entry_mode: None,
        }
    }

    /// A GTIN pack given field by field.
    pub fn gtin(
        product_code: impl Into<String>,
        serial: impl Into<String>,
        batch: impl Into<String>,
        expiry: impl Into<String>,
    ) -> PackInput {
        PackInput::fields("GTIN", product_code, serial, batch, expiry)
    }

    /// A pack as the scanner read it (the group separator as the character `\u{1d}`); the
    /// national system parses it.
    pub fn scan(raw: impl Into<String>) -> PackInput {
        PackInput { identifier: Identifier::Scan(raw.into()), client_trx_id: None, entry_mode: None }
    }

    /// The same with `id` as its `client_trx_id`. Give one to send the request again later (an
    /// offline queue): the national system answers a repeat with its first answer. Without one,
    /// each call generates its own, kept across that call's retries.
    pub fn with_client_trx_id(mut self, id: impl Into<String>) -> PackInput {
        self.client_trx_id = Some(id.into());
        self
    }

    /// The same with its entry mode.
    pub fn with_entry_mode(mut self, mode: EntryMode) -> PackInput {
        self.entry_mode = Some(mode);
        self
    }

    /// The `client_trx_id` given, if any.
    pub fn client_trx_id(&self) -> Option<&str> {
        self.client_trx_id.as_deref()
    }

    /// The request body, with `client_trx_id` as given or `generated`.
    pub fn to_request(&self, generated: &str) -> PackRequest {
        let client_trx_id = Some(self.client_trx_id.clone().unwrap_or_else(|| generated.to_owned()));
        let entry_mode = self.entry_mode.map(|m| m.as_str().to_owned());
        match &self.identifier {
            Identifier::Fields { scheme, product_code, serial, batch, expiry } => PackRequest {
                client_trx_id,
                scheme: Some(scheme.clone()),
                product_code: Some(product_code.clone()),
                serial: Some(serial.clone()),
                batch: Some(batch.clone()),
                expiry: Some(expiry.clone()),
                scan: None,
                entry_mode,
            },
            Identifier::Scan(raw) => {
                PackRequest { client_trx_id, scan: Some(raw.clone()), entry_mode, ..PackRequest::default() }
            }
        }
    }
}

/// A client of one national system's end-user API, for one client id. Cheap to clone; clones
/// share the connection pool and the token. Every call may be made from many tasks at once.
#[derive(Clone)]
pub struct EndUserClient {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    token: TokenCache,
}

impl std::fmt::Debug for EndUserClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndUserClient").field("base_url", &self.inner.transport.base.as_str()).finish()
    }
}

impl EndUserClient {
    /// A client on tokio's clock.
    pub fn new(config: EndUserConfig) -> Result<EndUserClient, ClientError> {
        EndUserClient::with_timer(config, Arc::new(TokioTimer))
    }

    /// A client that reads the time and waits through `timer` (tests give a
    /// [`crate::ManualTimer`]).
    pub fn with_timer(config: EndUserConfig, timer: Arc<dyn Timer>) -> Result<EndUserClient, ClientError> {
        if config.client_id.is_empty() {
            return Err(ClientError::Config { field: "client_id", message: "is empty".into() });
        }
        let http = http_client(&HttpSettings {
            ca_pem: config.ca_pem.as_deref(),
            identity_pem: None,
            timeout: config.timeout,
            connect_timeout: config.connect_timeout,
        })?;
        let transport = Transport { http, base: base_url(&config.base_url)?, retry: config.retry, timer };
        let token = TokenCache::new(&config.client_id, &config.client_secret);
        Ok(EndUserClient { inner: Arc::new(Inner { transport, token }) })
    }

    /// The national system's base URL.
    pub fn base_url(&self) -> &str {
        self.inner.transport.base.as_str()
    }

    fn t(&self) -> &Transport {
        &self.inner.transport
    }

    fn call(&self, method: Method, segments: &[&str], payload: Payload, idempotent: bool) -> Call<'_> {
        Call { method, url: self.t().url(segments), payload, idempotent, token: Some(&self.inner.token) }
    }

    /// The current access token, fetched or renewed if it is due: for a request the client has
    /// no method for. The client renews it ahead of its expiry, one renewal at a time.
    pub async fn access_token(&self) -> Result<String, ClientError> {
        Ok(self.inner.token.bearer(self.t()).await?.value.to_string())
    }

    /// `POST /v1/packs/{operation}` for `pack`. A request the rules refuse is an answer with
    /// `accepted: false`; a retry after a timeout or a refusal for load sends the same
    /// `client_trx_id`.
    pub async fn pack(
        &self,
        operation: PackOperation,
        pack: &PackInput,
    ) -> Result<PackResponse, ClientError> {
        self.single(&["v1", "packs", operation.as_str()], pack).await
    }

    /// `POST /v1/packs/{operation}/undo` for `pack` (undoing `lock` is unlock).
    pub async fn undo(
        &self,
        operation: UndoOperation,
        pack: &PackInput,
    ) -> Result<PackResponse, ClientError> {
        self.single(&["v1", "packs", operation.as_str(), "undo"], pack).await
    }

    async fn single(&self, segments: &[&str], pack: &PackInput) -> Result<PackResponse, ClientError> {
        let generated = if pack.client_trx_id.is_none() { new_client_trx_id() } else { String::new() };
        let body = Payload::json(&pack.to_request(&generated))?;
        self.t().json(self.call(Method::POST, segments, body, true)).await
    }

    /// Verifies `pack`.
    pub async fn verify(&self, pack: &PackInput) -> Result<PackResponse, ClientError> {
        self.pack(PackOperation::Verify, pack).await
    }

    /// Supplies `pack`.
    pub async fn supply(&self, pack: &PackInput) -> Result<PackResponse, ClientError> {
        self.pack(PackOperation::Supply, pack).await
    }

    /// Destroys `pack`.
    pub async fn destroy(&self, pack: &PackInput) -> Result<PackResponse, ClientError> {
        self.pack(PackOperation::Destroy, pack).await
    }

    /// Exports `pack`.
    pub async fn export(&self, pack: &PackInput) -> Result<PackResponse, ClientError> {
        self.pack(PackOperation::Export, pack).await
    }

    /// Takes `pack` as a sample.
    pub async fn sample(&self, pack: &PackInput) -> Result<PackResponse, ClientError> {
        self.pack(PackOperation::Sample, pack).await
    }

    /// Hands `pack` out as a free sample.
    pub async fn free_sample(&self, pack: &PackInput) -> Result<PackResponse, ClientError> {
        self.pack(PackOperation::FreeSample, pack).await
    }

    /// Locks `pack`.
    pub async fn lock(&self, pack: &PackInput) -> Result<PackResponse, ClientError> {
        self.pack(PackOperation::Lock, pack).await
    }

    /// Reports `pack` stolen.
    pub async fn stolen(&self, pack: &PackInput) -> Result<PackResponse, ClientError> {
        self.pack(PackOperation::Stolen, pack).await
    }

    /// Undoes the supply of `pack`.
    pub async fn undo_supply(&self, pack: &PackInput) -> Result<PackResponse, ClientError> {
        self.undo(UndoOperation::Supply, pack).await
    }

    /// Undoes the export of `pack`.
    pub async fn undo_export(&self, pack: &PackInput) -> Result<PackResponse, ClientError> {
        self.undo(UndoOperation::Export, pack).await
    }

    /// Undoes the sample of `pack`.
    pub async fn undo_sample(&self, pack: &PackInput) -> Result<PackResponse, ClientError> {
        self.undo(UndoOperation::Sample, pack).await
    }

    /// Undoes the free sample of `pack`.
    pub async fn undo_free_sample(&self, pack: &PackInput) -> Result<PackResponse, ClientError> {
        self.undo(UndoOperation::FreeSample, pack).await
    }

    /// Unlocks `pack`.
    pub async fn unlock(&self, pack: &PackInput) -> Result<PackResponse, ClientError> {
        self.undo(UndoOperation::Lock, pack).await
    }

    /// `POST /v1/bulk`: queues `request` (homogeneous or mixed); its `client_trx_id` is
    /// generated when it has none, and kept across retries, so a retry queues nothing twice.
    pub async fn submit_bulk(&self, request: &BulkRequest) -> Result<BulkAccepted, ClientError> {
        let body = if request.client_trx_id.is_some() {
            Payload::json(request)?
        } else {
            Payload::json(&BulkRequest { client_trx_id: Some(new_client_trx_id()), ..request.clone() })?
        };
        self.t().json(self.call(Method::POST, &["v1", "bulk"], body, true)).await
    }

    /// `GET /v1/bulk/{bulk_id}`: the bulk's status, and its results once `DONE`.
    pub async fn bulk_status(&self, bulk_id: &str) -> Result<BulkStatusResponse, ClientError> {
        let id = segment("bulk_id", bulk_id)?;
        self.t().json(self.call(Method::GET, &["v1", "bulk", id], Payload::Empty, true)).await
    }

    /// Asks for `bulk_id`'s status every `poll.interval` until it is `DONE`, for at most
    /// `poll.deadline`; the last status (with the results), or
    /// [`ClientError::DeadlineExceeded`].
    pub async fn wait_for_bulk(
        &self,
        bulk_id: &str,
        poll: PollOptions,
    ) -> Result<BulkStatusResponse, ClientError> {
        let timer = &self.t().timer;
        let start = timer.now();
        loop {
            let status = self.bulk_status(bulk_id).await?;
            if status.status == "DONE" {
                return Ok(status);
            }
            let waited = timer.now().saturating_duration_since(start);
            if waited + poll.interval > poll.deadline {
                return Err(ClientError::DeadlineExceeded {
                    what: format!("bulk {bulk_id}"),
                    waited,
                    last_status: status.status,
                });
            }
            timer.sleep(poll.interval).await;
        }
    }

    /// Submits `request` and waits until it is `DONE` (see [`EndUserClient::wait_for_bulk`]).
    pub async fn run_bulk(
        &self,
        request: &BulkRequest,
        poll: PollOptions,
    ) -> Result<BulkStatusResponse, ClientError> {
        let accepted = self.submit_bulk(request).await?;
        self.wait_for_bulk(&accepted.bulk_id, poll).await
    }

    /// `GET /v1/alerts`: one page. The NMVO and the authority see the market's alerts, an end
    /// user its own.
    pub async fn alerts(&self, query: &AlertQuery) -> Result<AlertList, ClientError> {
        let mut call = self.call(Method::GET, &["v1", "alerts"], Payload::Empty, true);
        query.apply(&mut call.url);
        self.t().json(call).await
    }

    /// Every alert `query` matches, page after page from its cursor on.
    pub async fn all_alerts(&self, query: &AlertQuery) -> Result<Vec<AlertView>, ClientError> {
        all_pages(query, |q| async move { self.alerts(&q).await }).await
    }

    /// `GET /v1/alerts/{id}`: the alert with its comments and status history.
    pub async fn alert(&self, id: &str) -> Result<AlertDetail, ClientError> {
        let id = segment("alert_id", id)?;
        self.t().json(self.call(Method::GET, &["v1", "alerts", id], Payload::Empty, true)).await
    }

    /// `POST /v1/alerts/{id}/status` (the NMVO): moves the alert on; the alert as it is now.
    pub async fn change_alert_status(
        &self,
        id: &str,
        change: &AlertStatusRequest,
    ) -> Result<AlertDetail, ClientError> {
        let id = segment("alert_id", id)?;
        // Not repeated after an unknown outcome: a change applied twice is two entries.
        let call = self.call(Method::POST, &["v1", "alerts", id, "status"], Payload::json(change)?, false);
        self.t().json(call).await
    }

    /// `POST /v1/alerts/{id}/comments`: adds `text` (at most 500 characters) to the alert's
    /// thread; the comment as stored.
    pub async fn comment_alert(&self, id: &str, text: &str) -> Result<AlertCommentView, ClientError> {
        let id = segment("alert_id", id)?;
        let body = Payload::json(&AlertCommentRequest { text: text.to_owned() })?;
        let call = self.call(Method::POST, &["v1", "alerts", id, "comments"], body, false);
        self.t().json(call).await
    }

    /// `GET /v1/audit/packs/{scheme}/{product_code}/{serial}` (the NCA and the NMVO): the pack's
    /// audit records in chain order.
    pub async fn audit_of_pack(
        &self,
        scheme: &str,
        product_code: &str,
        serial: &str,
    ) -> Result<AuditRecords, ClientError> {
        let segments = [
            "v1",
            "audit",
            "packs",
            segment("scheme", scheme)?,
            segment("product_code", product_code)?,
            segment("serial", serial)?,
        ];
        self.t().json(self.call(Method::GET, &segments, Payload::Empty, true)).await
    }

    /// `GET /v1/return-codes`: the catalogue of return codes (public, sent without a token).
    pub async fn return_codes(&self) -> Result<ReturnCodeCatalogue, ClientError> {
        let call = Call {
            method: Method::GET,
            url: self.t().url(&["v1", "return-codes"]),
            payload: Payload::Empty,
            idempotent: true,
            token: None,
        };
        self.t().json(call).await
    }
}
