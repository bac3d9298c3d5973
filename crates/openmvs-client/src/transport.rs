//! What both clients share: the HTTPS client, URLs built from path segments, one loop that
//! sends a request with retries (and a token renewed once on a 401), and the reading of answers
//! into their wire shapes or a [`ClientError`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openmvs_wire::api::{ErrorBody, OAuthError};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

use crate::error::ClientError;
use crate::retry::{RetryPolicy, is_load_refusal, retry_after};
use crate::time::Timer;
use crate::token::TokenCache;

/// How much of an unexpected body an error quotes.
const QUOTED_BODY_CHARS: usize = 300;

/// The TLS and timeout settings of one HTTPS client.
pub(crate) struct HttpSettings<'a> {
    /// The certificates of the CAs to trust, PEM (one or several).
    pub ca_pem: Option<&'a [u8]>,
    /// A client certificate and its key, PEM, for mutual TLS.
    pub identity_pem: Option<&'a [u8]>,
    /// The longest one attempt may take, from sending to the end of the answer.
    pub timeout: Duration,
    /// The longest a connection may take to open.
    pub connect_timeout: Duration,
}

/// Builds the HTTPS client.
pub(crate) fn http_client(s: &HttpSettings<'_>) -> Result<reqwest::Client, ClientError> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .user_agent(concat!("openmvs-client/", env!("CARGO_PKG_VERSION")))
        .timeout(s.timeout)
        .connect_timeout(s.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(50));
    if let Some(pem) = s.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| ClientError::Config { field: "ca_pem", message: e.to_string() })?;
        if certs.is_empty() {
            return Err(ClientError::Config { field: "ca_pem", message: "holds no PEM certificate".into() });
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    if let Some(pem) = s.identity_pem {
        let id = reqwest::Identity::from_pem(pem).map_err(|e| ClientError::Config {
            field: "identity_pem",
            message: format!("a certificate followed by its private key, PEM: {e}"),
        })?;
        b = b.identity(id);
    }
    b.build().map_err(|e| ClientError::Config { field: "tls", message: e.to_string() })
}

/// Parses a base URL (`https://host:port`, with or without a path prefix).
pub(crate) fn base_url(text: &str) -> Result<Url, ClientError> {
    let url = Url::parse(text)
        .map_err(|e| ClientError::Config { field: "base_url", message: format!("'{text}': {e}") })?;
    if !matches!(url.scheme(), "https" | "http") || url.cannot_be_a_base() {
        return Err(ClientError::Config {
            field: "base_url",
            message: format!("'{text}' is not an http:// or https:// URL"),
        });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ClientError::Config {
            field: "base_url",
            message: format!("'{text}' carries a query or fragment"),
        });
    }
    Ok(url)
}

/// A path segment given by the caller: refused when empty, which would name another route.
pub(crate) fn segment<'a>(field: &'static str, value: &'a str) -> Result<&'a str, ClientError> {
    if value.is_empty() {
        return Err(ClientError::InvalidInput { field, message: "is empty".into() });
    }
    Ok(value)
}

/// A request body.
pub(crate) enum Payload {
    /// None.
    Empty,
    /// `application/json`, already serialised so each attempt sends the same bytes.
    Json(Bytes),
    /// `application/x-www-form-urlencoded`.
    Form(String),
}

impl Payload {
    /// `value` as JSON.
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Payload, ClientError> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| ClientError::InvalidInput { field: "body", message: e.to_string() })?;
        Ok(Payload::Json(Bytes::from(bytes)))
    }
}

/// One request as the retry loop sends it, as often as it takes.
pub(crate) struct Call<'a> {
    pub method: Method,
    pub url: Url,
    pub payload: Payload,
    /// Safe to send again when the outcome of an attempt is unknown (a timeout, an answer cut
    /// off): reads, PUTs, and requests the server deduplicates by `client_trx_id`.
    pub idempotent: bool,
    /// The tokens to send, for the end-user API.
    pub token: Option<&'a TokenCache>,
}

impl Call<'_> {
    /// `METHOD /path`, for errors.
    pub fn what(&self) -> String {
        format!("{} {}", self.method, self.url.path())
    }
}

/// A complete answer.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// How many times the request was sent.
    pub attempts: u32,
}

/// The HTTPS client of one server, its retry policy and its timer.
pub(crate) struct Transport {
    pub http: reqwest::Client,
    pub base: Url,
    pub retry: RetryPolicy,
    pub timer: Arc<dyn Timer>,
}

impl Transport {
    /// The URL of `segments` below the base URL, each segment percent-encoded.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        {
            // The base URL was checked to be one that takes segments.
            let Ok(mut path) = url.path_segments_mut() else { return url };
            path.pop_if_empty();
            path.extend(segments);
        }
        url
    }

    /// Sends `call` as the retry policy says, with a bearer token when the call takes one: on
    /// a 401 the token is renewed once and the call sent again (the token may have been revoked,
    /// or its signing key retired), which is not counted against the retry policy.
    pub async fn send(&self, call: &Call<'_>) -> Result<Answer, ClientError> {
        let Some(cache) = call.token else { return self.retrying(call, None).await };
        let used = cache.bearer(self).await?;
        let answer = self.retrying(call, Some(&used.value)).await?;
        if answer.status != StatusCode::UNAUTHORIZED {
            return Ok(answer);
        }
        cache.invalidate(used.generation);
        let fresh = cache.bearer(self).await?;
        let again = self.retrying(call, Some(&fresh.value)).await?;
        Ok(Answer { attempts: answer.attempts + again.attempts, ..again })
    }

    /// Sends `call` with `bearer`, again after a refusal for load or a failure the policy
    /// retries; the first answer that is not retried, or the last failure.
    pub async fn retrying(&self, call: &Call<'_>, bearer: Option<&str>) -> Result<Answer, ClientError> {
        self.retrying_with(call, bearer, &self.retry).await
    }

    /// [`retrying`](Self::retrying) under `policy` instead of the client's own (a token
    /// renewal while the held token is valid is sent once).
    pub async fn retrying_with(
        &self,
        call: &Call<'_>,
        bearer: Option<&str>,
        policy: &RetryPolicy,
    ) -> Result<Answer, ClientError> {
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let last = attempts >= policy.max_attempts;
            match self.once(call, bearer).await {
                Ok(answer) if is_load_refusal(answer.status) && !last => {
                    let wait = match retry_after(&answer.headers) {
                        Some(w) if w > policy.max_retry_after => {
                            return Ok(Answer { attempts, ..answer });
                        }
                        Some(w) => w,
                        None => policy.backoff(attempts),
                    };
                    self.timer.sleep(wait).await;
                }
                Ok(answer) => return Ok(Answer { attempts, ..answer }),
                // A request that may have been processed is sent again only if the server
                // deduplicates it; one that never left (no connection) always may be.
                Err(e) if !last && (call.idempotent || e.is_connect()) && !tls_refused(&e) => {
                    self.timer.sleep(policy.backoff(attempts)).await;
                }
                Err(e) => return Err(ClientError::Transport { what: call.what(), attempts, source: e }),
            }
        }
    }

    async fn once(&self, call: &Call<'_>, bearer: Option<&str>) -> Result<Answer, reqwest::Error> {
        let mut rb = self.http.request(call.method.clone(), call.url.clone());
        match &call.payload {
            Payload::Empty => {}
            Payload::Json(bytes) => {
                rb =
                    rb.header(CONTENT_TYPE, HeaderValue::from_static("application/json")).body(bytes.clone());
            }
            Payload::Form(text) => {
                rb = rb
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"))
                    .body(text.clone());
            }
        }
        if let Some(token) = bearer {
            rb = rb.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let resp = rb.send().await?;
        read(resp).await
    }

    /// Sends `call` and reads its answer as `T`.
    pub async fn json<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, ClientError> {
        let answer = self.send(&call).await?;
        decode(&call.what(), answer)
    }
}

/// Reads a whole answer.
pub(crate) async fn read(resp: reqwest::Response) -> Result<Answer, reqwest::Error> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await?;
    Ok(Answer { status, headers, body, attempts: 1 })
}

/// A success answer as `T`, or the error an error answer stands for.
pub(crate) fn decode<T: DeserializeOwned>(what: &str, answer: Answer) -> Result<T, ClientError> {
    if !answer.status.is_success() {
        return Err(refusal(what, answer));
    }
    serde_json::from_slice(&answer.body).map_err(|e| ClientError::UnexpectedAnswer {
        what: what.to_owned(),
        status: answer.status.as_u16(),
        detail: format!("{e}: {}", quote(&answer.body)),
    })
}

/// The error an error answer stands for: its error body, an OAuth2 error, or what it was.
pub(crate) fn refusal(what: &str, answer: Answer) -> ClientError {
    let status = answer.status.as_u16();
    if answer.status.is_client_error() || answer.status.is_server_error() {
        if let Ok(body) = serde_json::from_slice::<ErrorBody>(&answer.body) {
            let retry_after = is_load_refusal(answer.status).then(|| retry_after(&answer.headers)).flatten();
            return ClientError::Refused { status, body, retry_after, attempts: answer.attempts };
        }
        if let Ok(error) = serde_json::from_slice::<OAuthError>(&answer.body) {
            return ClientError::Login { status, error };
        }
    }
    ClientError::UnexpectedAnswer { what: what.to_owned(), status, detail: quote(&answer.body) }
}

fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut q: String = text.chars().take(QUOTED_BODY_CHARS).collect();
    if text.chars().count() > QUOTED_BODY_CHARS {
        q.push_str("...");
    }
    if q.is_empty() { "(empty body)".into() } else { q }
}

/// Whether `e` is a TLS handshake that failed on its certificates or its protocol (an untrusted
/// or expired server certificate, a client certificate the server refused): sending again would
/// fail the same way, so the caller hears of it at once instead of after every attempt.
pub(crate) fn tls_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        // An I/O error wraps the TLS error; its own `source` skips it.
        if let Some(inner) = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
            && tls_refused(inner)
        {
            return true;
        }
        cur = err.source();
    }
    false
}
