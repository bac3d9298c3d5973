//! The offline agent's link to its national system over HTTP(S): the end-user API with the
//! pharmacy's client credentials, a token fetched when first needed and again when it is refused
//! or about to expire, and every answer sorted into what the agent needs to know
//! ([`openmvs_agent::upstream::Reply`]).

use std::time::Duration;

use openmvs_agent::upstream::{BoxFuture, Forward, Forwarded, Reply, Upstream, pack_path};
use openmvs_core::pack::Command;
use openmvs_wire::api::{ErrorBody, PackRequest, PackResponse, TokenResponse};
use tokio::sync::Mutex;

/// A token is renewed this long before the national system says it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(60);

/// The national system, reached with the pharmacy's client credentials.
pub struct HttpUpstream {
    client: reqwest::Client,
    base: String,
    client_id: String,
    client_secret: String,
    /// The token and when to renew it, by the runtime's clock (tokio's, so that tests that pause
    /// time see it expire).
    token: Mutex<Option<(String, tokio::time::Instant)>>,
}

/// What one attempt came to, before retrying with a new token.
enum Sent {
    Reply(Reply),
    TokenRefused,
}

impl HttpUpstream {
    /// A link to `base_url` (`https://...`, or `http://` for a national system on this machine),
    /// trusting `ca_pem` when given.
    pub fn new(
        base_url: &str,
        ca_pem: Option<&[u8]>,
        client_id: &str,
        client_secret: &str,
    ) -> Result<HttpUpstream, String> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .pool_idle_timeout(Duration::from_secs(90))
            .connect_timeout(Duration::from_secs(5));
        if let Some(ca) = ca_pem {
            b = b.add_root_certificate(reqwest::Certificate::from_pem(ca).map_err(|e| format!("CA: {e}"))?);
        }
        Ok(HttpUpstream {
            client: b.build().map_err(|e| e.to_string())?,
            base: base_url.trim_end_matches('/').to_owned(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            token: Mutex::new(None),
        })
    }

    /// A valid token: the one held, or a new one.
    async fn token(&self, renew: bool) -> Result<String, Reply> {
        let mut held = self.token.lock().await;
        if !renew
            && let Some((t, until)) = held.as_ref()
            && tokio::time::Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let url = format!("{}/oauth/token", self.base);
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.as_str()),
        ];
        let resp = self
            .client
            .post(&url)
            .form(&form)
            .send()
            .await
            .map_err(|e| Reply::Unreachable(format!("{url}: {e}")))?;
        let status = resp.status().as_u16();
        if status == 401 || status == 400 {
            let body = ErrorBody {
                return_code: "NMVS_FE_AU_01".into(),
                message: "the national system refused the client credentials".into(),
                details: Vec::new(),
            };
            return Err(Reply::Refused { status: 401, body });
        }
        if status == 429 || status == 503 {
            return Err(Reply::Busy { status, retry_after: retry_after(resp.headers()), body: None });
        }
        if status != 200 {
            return Err(Reply::Unreachable(format!("{url}: HTTP {status}")));
        }
        let t: TokenResponse = resp.json().await.map_err(|e| Reply::Unreachable(format!("{url}: {e}")))?;
        let life = Duration::from_secs(u64::try_from(t.expires_in).unwrap_or(0)).saturating_sub(RENEW_BEFORE);
        *held = Some((t.access_token.clone(), tokio::time::Instant::now() + life));
        Ok(t.access_token)
    }

    async fn send_pack(&self, token: &str, command: Command, body: &PackRequest) -> Sent {
        let url = format!("{}{}", self.base, pack_path(command));
        let resp = match self.client.post(&url).bearer_auth(token).json(body).send().await {
            Ok(r) => r,
            Err(e) => return Sent::Reply(Reply::Unreachable(format!("{url}: {e}"))),
        };
        let status = resp.status().as_u16();
        let wait = retry_after(resp.headers());
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return Sent::Reply(Reply::Unreachable(format!("{url}: body: {e}"))),
        };
        let error_body = || serde_json::from_slice::<ErrorBody>(&bytes).ok();
        Sent::Reply(match status {
            200 => match serde_json::from_slice::<PackResponse>(&bytes) {
                Ok(r) => Reply::Answered(r),
                Err(e) => Reply::Unreachable(format!("{url}: an answer that is not a pack response: {e}")),
            },
            401 => return Sent::TokenRefused,
            429 | 503 => Reply::Busy { status, retry_after: wait, body: error_body() },
            400..=499 => match error_body() {
                Some(body) => Reply::Refused { status, body },
                None => Reply::Unreachable(format!("{url}: HTTP {status} without an error body")),
            },
            _ => Reply::Unreachable(format!("{url}: HTTP {status}")),
        })
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

impl Upstream for HttpUpstream {
    fn pack(&self, command: Command, body: &PackRequest) -> BoxFuture<'_, Reply> {
        let body = body.clone();
        Box::pin(async move {
            // A token refused (expired early, a key rotated) is renewed once.
            for renew in [false, true] {
                let token = match self.token(renew).await {
                    Ok(t) => t,
                    Err(reply) => return reply,
                };
                match self.send_pack(&token, command, &body).await {
                    Sent::Reply(r) => return r,
                    Sent::TokenRefused => continue,
                }
            }
            let body = ErrorBody {
                return_code: "NMVS_FE_AU_01".into(),
                message: "the national system refused a token it had just issued".into(),
                details: Vec::new(),
            };
            Reply::Refused { status: 401, body }
        })
    }

    fn forward(&self, request: Forward) -> BoxFuture<'_, Result<Forwarded, String>> {
        Box::pin(async move {
            for renew in [false, true] {
                let token = match self.token(renew).await {
                    Ok(t) => t,
                    Err(Reply::Busy { status, retry_after, .. }) => {
                        return Ok(Forwarded {
                            status,
                            retry_after: retry_after.map(|d| d.as_secs()),
                            body: Vec::new(),
                        });
                    }
                    Err(other) => return Err(format!("{other:?}")),
                };
                let url = format!("{}{}", self.base, request.path_and_query);
                let mut req = match request.method.as_str() {
                    "POST" => self.client.post(&url),
                    _ => self.client.get(&url),
                };
                req = req.bearer_auth(&token);
                if let Some(body) = &request.body {
                    req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone());
                }
                let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
                let status = resp.status().as_u16();
                if status == 401 && !renew {
                    continue;
                }
                let wait = retry_after(resp.headers()).map(|d| d.as_secs());
                let body = resp.bytes().await.map_err(|e| format!("{url}: body: {e}"))?;
                return Ok(Forwarded { status, retry_after: wait, body: body.to_vec() });
            }
            Err("the national system refused the agent's token".to_owned())
        })
    }
}
