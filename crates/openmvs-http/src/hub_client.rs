//! The national system's link to the hub over HTTPS with a client certificate.

use std::time::Duration;

use openmvs_national::HubLink;
use openmvs_store::BoxFuture;
use openmvs_wire::hub::{Delivery, DeliveryAck, IntermarketAnswer, IntermarketRequest};

/// How long a delivery may take before it is retried.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The hub, reached over mutual TLS.
pub struct HttpHubLink {
    client: reqwest::Client,
    base: String,
    intermarket_timeout: Duration,
}

impl HttpHubLink {
    /// A link to the hub at `base_url` (e.g. `https://127.0.0.1:8400`), trusting `ca_pem` and
    /// presenting `identity_pem` (certificate then PKCS#8 key, PEM). Inter-market requests give
    /// up after `intermarket_timeout`, so the initiating request still answers within its budget.
    pub fn new(
        base_url: &str,
        ca_pem: &[u8],
        identity_pem: Option<&[u8]>,
        intermarket_timeout: Duration,
    ) -> Result<HttpHubLink, String> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).map_err(|e| format!("hub CA: {e}"))?)
            .pool_idle_timeout(Duration::from_secs(90))
            .connect_timeout(Duration::from_secs(5));
        if let Some(id) = identity_pem {
            b = b.identity(reqwest::Identity::from_pem(id).map_err(|e| format!("client identity: {e}"))?);
        }
        Ok(HttpHubLink {
            client: b.build().map_err(|e| e.to_string())?,
            base: base_url.trim_end_matches('/').to_owned(),
            intermarket_timeout,
        })
    }
}

async fn post<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: String,
    body: &Req,
    timeout: Duration,
) -> Result<Resp, String> {
    let resp =
        client.post(&url).json(body).timeout(timeout).send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Err(format!("{url}: HTTP {status}: {}", text.chars().take(300).collect::<String>()));
    }
    resp.json().await.map_err(|e| format!("{url}: {e}"))
}

impl HubLink for HttpHubLink {
    fn deliver(&self, delivery: Delivery) -> BoxFuture<'_, Result<DeliveryAck, String>> {
        Box::pin(async move {
            post(&self.client, format!("{}/internal/v1/messages", self.base), &delivery, DELIVERY_TIMEOUT)
                .await
        })
    }

    fn intermarket(&self, req: IntermarketRequest) -> BoxFuture<'_, Result<IntermarketAnswer, String>> {
        Box::pin(async move {
            post(
                &self.client,
                format!("{}/internal/v1/intermarket", self.base),
                &req,
                self.intermarket_timeout,
            )
            .await
        })
    }
}
