//! [`ObpClient`]: an OBP's client of the hub (api.md §3) over mutual TLS: master data, batches,
//! serial uploads (JSON, or text streamed from any stream or reader), recalls, withdrawals, pack
//! states and queries, alerts and the callback.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openmvs_wire::ReturnCodeCatalogue;
use openmvs_wire::api::{
    AlertCommentRequest, AlertCommentView, AlertDetail, AlertList, AlertStatusRequest, AlertView,
};
use openmvs_wire::obp::{
    BatchAnswer, BatchRequest, CallbackBody, CallbackRequest, PackQueryBody, PackStatesBody,
    PackStatesRequest, PacksRequest, ProductAnswer, ProductRequest, RecallAnswer, RecallRequest,
    UploadAcceptedBody, UploadStatusBody, WithdrawRequest, WithdrawalAnswer,
};
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderValue};

use crate::error::ClientError;
use crate::retry::RetryPolicy;
use crate::time::{Timer, TokioTimer};
use crate::transport::{
    Call, HttpSettings, Payload, Transport, base_url, decode, http_client, read, segment,
};
use crate::{AlertQuery, PollOptions, all_pages};

/// How an [`ObpClient`] reaches the hub.
#[derive(Clone)]
pub struct ObpConfig {
    /// The hub, e.g. `https://127.0.0.1:8400`.
    pub base_url: String,
    /// The OBP's certificate, issued by the hub's CA, followed by its private key (PKCS#8 or
    /// SEC1), PEM.
    pub identity_pem: Vec<u8>,
    /// The hub's CA certificate (or several CAs), PEM.
    pub ca_pem: Vec<u8>,
    /// The longest one attempt of a request may take, a streamed upload excepted. Default 30 s.
    pub timeout: Duration,
    /// The longest a streamed upload may take, from its first byte to the answer. Default 1 hour
    /// (api.md §3 allows 10,000,000 lines).
    pub upload_timeout: Duration,
    /// The longest a connection may take to open. Default 10 s.
    pub connect_timeout: Duration,
    /// When requests are sent again.
    pub retry: RetryPolicy,
}

impl ObpConfig {
    /// A configuration from PEM bytes, with the default timeouts and retry policy.
    pub fn new(base_url: impl Into<String>, identity_pem: Vec<u8>, ca_pem: Vec<u8>) -> ObpConfig {
        ObpConfig {
            base_url: base_url.into(),
            identity_pem,
            ca_pem,
            timeout: Duration::from_secs(30),
            upload_timeout: Duration::from_secs(3600),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }

    /// A configuration from the files `openmvs admin obp create` (or the demo) wrote: the OBP's
    /// certificate, its key, and the hub's CA certificate.
    pub fn from_files(
        base_url: impl Into<String>,
        cert: &Path,
        key: &Path,
        ca: &Path,
    ) -> Result<ObpConfig, ClientError> {
        let read = |field: &'static str, p: &Path| {
            std::fs::read(p)
                .map_err(|e| ClientError::Config { field, message: format!("{}: {e}", p.display()) })
        };
        let mut identity = read("cert", cert)?;
        if !identity.ends_with(b"\n") {
            identity.push(b'\n');
        }
        identity.extend(read("key", key)?);
        Ok(ObpConfig::new(base_url, identity, read("ca", ca)?))
    }

    /// The same, with `retry` as its retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> ObpConfig {
        self.retry = retry;
        self
    }
}

impl std::fmt::Debug for ObpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key stays out of logs.
        f.debug_struct("ObpConfig")
            .field("base_url", &self.base_url)
            .field("identity_pem", &"<redacted>")
            .field("ca_pem", &format!("{} bytes", self.ca_pem.len()))
            .field("timeout", &self.timeout)
            .field("upload_timeout", &self.upload_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retry", &self.retry)
            .finish()
    }
}

/// An OBP's client of the hub. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct ObpClient {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    upload_timeout: Duration,
}

impl std::fmt::Debug for ObpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObpClient").field("base_url", &self.inner.transport.base.as_str()).finish()
    }
}

impl ObpClient {
    /// A client on tokio's clock.
    pub fn new(config: ObpConfig) -> Result<ObpClient, ClientError> {
        ObpClient::with_timer(config, Arc::new(TokioTimer))
    }

    /// A client that reads the time and waits through `timer`.
    pub fn with_timer(config: ObpConfig, timer: Arc<dyn Timer>) -> Result<ObpClient, ClientError> {
        let http = http_client(&HttpSettings {
            ca_pem: Some(&config.ca_pem),
            identity_pem: Some(&config.identity_pem),
            timeout: config.timeout,
            connect_timeout: config.connect_timeout,
        })?;
        let transport = Transport { http, base: base_url(&config.base_url)?, retry: config.retry, timer };
        Ok(ObpClient { inner: Arc::new(Inner { transport, upload_timeout: config.upload_timeout }) })
    }

    /// The hub's base URL.
    pub fn base_url(&self) -> &str {
        self.inner.transport.base.as_str()
    }

    fn t(&self) -> &Transport {
        &self.inner.transport
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        payload: Payload,
        idempotent: bool,
    ) -> Result<T, ClientError> {
        let call = Call { method, url: self.t().url(segments), payload, idempotent, token: None };
        self.t().json(call).await
    }

    /// `PUT /v1/products/{product_code}`: creates or updates the product's master data; the
    /// version now current.
    pub async fn put_product(
        &self,
        product_code: &str,
        product: &ProductRequest,
    ) -> Result<ProductAnswer, ClientError> {
        let pc = segment("product_code", product_code)?;
        self.json(Method::PUT, &["v1", "products", pc], Payload::json(product)?, true).await
    }

    /// `PUT /v1/products/{product_code}/batches/{batch}`.
    pub async fn put_batch(
        &self,
        product_code: &str,
        batch: &str,
        request: &BatchRequest,
    ) -> Result<BatchAnswer, ClientError> {
        let (pc, b) = (segment("product_code", product_code)?, segment("batch", batch)?);
        self.json(Method::PUT, &["v1", "products", pc, "batches", b], Payload::json(request)?, true).await
    }

    /// `POST .../batches/{batch}/packs` as JSON: uploads `serials`; the upload id once every
    /// line is durable. Sent again only when it surely did not arrive (no connection, 429, 503):
    /// after an unknown outcome, look at the uploads before sending it again.
    pub async fn upload_serials(
        &self,
        product_code: &str,
        batch: &str,
        serials: &[String],
    ) -> Result<UploadAcceptedBody, ClientError> {
        let (pc, b) = (segment("product_code", product_code)?, segment("batch", batch)?);
        let body = Payload::json(&PacksRequest { serials: serials.to_vec() })?;
        self.json(Method::POST, &["v1", "products", pc, "batches", b, "packs"], body, false).await
    }

    /// `POST .../batches/{batch}/packs` as `text/plain`, one serial a line, streamed from
    /// `lines` as it yields bytes (chunks need not end at line ends): memory stays bounded
    /// whatever the size. A stream cannot be sent twice, so this is sent once: a refusal for
    /// load comes back as [`ClientError::Refused`] with its `retry_after`, for the caller to
    /// open its source again.
    pub async fn upload_stream<S>(
        &self,
        product_code: &str,
        batch: &str,
        lines: S,
    ) -> Result<UploadAcceptedBody, ClientError>
    where
        S: futures_core::TryStream + Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        Bytes: From<S::Ok>,
    {
        let (pc, b) = (segment("product_code", product_code)?, segment("batch", batch)?);
        let url = self.t().url(&["v1", "products", pc, "batches", b, "packs"]);
        let what = format!("POST {}", url.path());
        let sent = self
            .t()
            .http
            .post(url)
            .header(CONTENT_TYPE, HeaderValue::from_static("text/plain"))
            .timeout(self.inner.upload_timeout)
            .body(reqwest::Body::wrap_stream(lines))
            .send()
            .await;
        let answer = match sent {
            Ok(resp) => read(resp).await,
            Err(e) => Err(e),
        }
        .map_err(|source| ClientError::Transport { what: what.clone(), attempts: 1, source })?;
        decode(&what, answer)
    }

    /// [`ObpClient::upload_stream`] from a reader (a file, a pipe, a socket).
    pub async fn upload_reader<R>(
        &self,
        product_code: &str,
        batch: &str,
        reader: R,
    ) -> Result<UploadAcceptedBody, ClientError>
    where
        R: tokio::io::AsyncRead + Send + 'static,
    {
        self.upload_stream(product_code, batch, tokio_util::io::ReaderStream::new(reader)).await
    }

    /// `GET /v1/uploads/{upload_id}`.
    pub async fn upload_status(&self, upload_id: &str) -> Result<UploadStatusBody, ClientError> {
        let id = segment("upload_id", upload_id)?;
        self.json(Method::GET, &["v1", "uploads", id], Payload::Empty, true).await
    }

    /// Asks for `upload_id`'s status every `poll.interval` until it is `status` (`VALIDATED`,
    /// `DISTRIBUTED`, ...), for at most `poll.deadline`. An upload that ends `FAILED` while
    /// another status is awaited is [`ClientError::UploadFailed`].
    pub async fn wait_for_upload(
        &self,
        upload_id: &str,
        status: &str,
        poll: PollOptions,
    ) -> Result<UploadStatusBody, ClientError> {
        let timer = &self.t().timer;
        let start = timer.now();
        loop {
            let now = self.upload_status(upload_id).await?;
            if now.status == status {
                return Ok(now);
            }
            if now.status == "FAILED" {
                return Err(ClientError::UploadFailed { upload_id: upload_id.to_owned() });
            }
            let waited = timer.now().saturating_duration_since(start);
            if waited + poll.interval > poll.deadline {
                return Err(ClientError::DeadlineExceeded {
                    what: format!("upload {upload_id} to reach {status}"),
                    waited,
                    last_status: now.status,
                });
            }
            timer.sleep(poll.interval).await;
        }
    }

    /// `POST .../batches/{batch}/recall`; every market the batch is recalled in now.
    pub async fn recall(
        &self,
        product_code: &str,
        batch: &str,
        request: &RecallRequest,
    ) -> Result<RecallAnswer, ClientError> {
        let (pc, b) = (segment("product_code", product_code)?, segment("batch", batch)?);
        // A recall repeated recalls nothing more: safe to repeat.
        self.json(
            Method::POST,
            &["v1", "products", pc, "batches", b, "recall"],
            Payload::json(request)?,
            true,
        )
        .await
    }

    /// `POST /v1/products/{product_code}/withdraw`; every market the product is withdrawn from
    /// now.
    pub async fn withdraw(
        &self,
        product_code: &str,
        request: &WithdrawRequest,
    ) -> Result<WithdrawalAnswer, ClientError> {
        let pc = segment("product_code", product_code)?;
        self.json(Method::POST, &["v1", "products", pc, "withdraw"], Payload::json(request)?, true).await
    }

    /// `POST .../batches/{batch}/packs/state`: sets (or with `undo`, undoes) a state of the
    /// OBP's packs; one result per serial.
    pub async fn set_pack_states(
        &self,
        product_code: &str,
        batch: &str,
        request: &PackStatesRequest,
    ) -> Result<PackStatesBody, ClientError> {
        let (pc, b) = (segment("product_code", product_code)?, segment("batch", batch)?);
        let segments = ["v1", "products", pc, "batches", b, "packs", "state"];
        self.json(Method::POST, &segments, Payload::json(request)?, false).await
    }

    /// `GET /v1/products/{product_code}/packs/{serial}`: where the pack stands in each market.
    pub async fn pack(&self, product_code: &str, serial: &str) -> Result<PackQueryBody, ClientError> {
        let (pc, s) = (segment("product_code", product_code)?, segment("serial", serial)?);
        self.json(Method::GET, &["v1", "products", pc, "packs", s], Payload::Empty, true).await
    }

    /// `GET /v1/alerts`: one page of the alerts on the OBP's products.
    pub async fn alerts(&self, query: &AlertQuery) -> Result<AlertList, ClientError> {
        let mut url = self.t().url(&["v1", "alerts"]);
        query.apply(&mut url);
        let call = Call { method: Method::GET, url, payload: Payload::Empty, idempotent: true, token: None };
        self.t().json(call).await
    }

    /// Every alert on the OBP's products that `query` matches, page after page.
    pub async fn all_alerts(&self, query: &AlertQuery) -> Result<Vec<AlertView>, ClientError> {
        all_pages(query, |q| async move { self.alerts(&q).await }).await
    }

    /// `GET /v1/alerts/{id}`: the alert with its comments and status history.
    pub async fn alert(&self, id: &str) -> Result<AlertDetail, ClientError> {
        let id = segment("alert_id", id)?;
        self.json(Method::GET, &["v1", "alerts", id], Payload::Empty, true).await
    }

    /// `POST /v1/alerts/{id}/status`: moves an alert on the OBP's product on.
    pub async fn change_alert_status(
        &self,
        id: &str,
        change: &AlertStatusRequest,
    ) -> Result<AlertDetail, ClientError> {
        let id = segment("alert_id", id)?;
        self.json(Method::POST, &["v1", "alerts", id, "status"], Payload::json(change)?, false).await
    }

    /// `POST /v1/alerts/{id}/comments`: adds `text` to the alert's thread.
    pub async fn comment_alert(&self, id: &str, text: &str) -> Result<AlertCommentView, ClientError> {
        let id = segment("alert_id", id)?;
        let body = Payload::json(&AlertCommentRequest { text: text.to_owned() })?;
        self.json(Method::POST, &["v1", "alerts", id, "comments"], body, false).await
    }

    /// `PUT /v1/callback`: where the hub posts the OBP's events; the answer carries the key of
    /// their signatures.
    pub async fn set_callback(&self, url: &str) -> Result<CallbackBody, ClientError> {
        let body = Payload::json(&CallbackRequest { url: url.to_owned() })?;
        self.json(Method::PUT, &["v1", "callback"], body, true).await
    }

    /// `GET /v1/return-codes`: the catalogue of return codes.
    pub async fn return_codes(&self) -> Result<ReturnCodeCatalogue, ClientError> {
        self.json(Method::GET, &["v1", "return-codes"], Payload::Empty, true).await
    }
}
