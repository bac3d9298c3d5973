//! National systems and a hub linked over mutual TLS, each with a client certificate of one CA:
//! a national system asks the hub (inter-market verifies, its outbox), the hub delivers to the
//! national systems, asks them on behalf of another market, and calls back the OBPs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openmvs_core::ids::MarketCode;
use openmvs_http::callback::{CALLBACK_TIMEOUT, HttpCallbackSender};
use openmvs_http::hub_client::HttpHubLink;
use openmvs_http::national_link::{HttpNationalLink, HttpNationalQueries, NATIONAL_DELIVERY_TIMEOUT};
use openmvs_hub::{CallbackSender, NationalLink, NationalQueries};
use openmvs_national::HubLink;

/// How long a national system waits for the hub's answer to an inter-market request: the whole
/// 300 ms of fmd-rules §4.10, of which the hub gives the market it asks 250 ms.
pub const INTERMARKET_TIMEOUT: Duration = Duration::from_millis(300);

/// A national system's link to the hub at `hub_url`, trusting `ca_pem` and presenting
/// `identity_pem` (its certificate, then its key); it waits `timeout` for an inter-market answer
/// ([`INTERMARKET_TIMEOUT`], the law's, unless a test checks something other than speed).
pub fn hub_link(
    hub_url: &str,
    ca_pem: &[u8],
    identity_pem: &[u8],
    timeout: Duration,
) -> anyhow::Result<Arc<dyn HubLink>> {
    let link =
        HttpHubLink::new(hub_url, ca_pem, Some(identity_pem), timeout).map_err(|e| anyhow::anyhow!(e))?;
    Ok(Arc::new(link))
}

/// The hub's links to the national systems.
pub struct HubLinks {
    /// Deliveries of pack data and alerts.
    pub delivery: Arc<dyn NationalLink>,
    /// Verifies on behalf of another market, each within `budget`.
    pub queries: Arc<dyn NationalQueries>,
    /// Callbacks to the OBPs' endpoints, served with certificates of the same CA.
    pub callbacks: Arc<dyn CallbackSender>,
}

/// The hub's links to the national systems at `urls`, trusting `ca_pem` and presenting
/// `hub_identity_pem` (its certificate, then its key).
pub fn hub_links(
    urls: BTreeMap<MarketCode, String>,
    ca_pem: &[u8],
    hub_identity_pem: &[u8],
    budget: Duration,
) -> anyhow::Result<HubLinks> {
    let delivery = HttpNationalLink::new(urls.clone(), ca_pem, hub_identity_pem, NATIONAL_DELIVERY_TIMEOUT)
        .map_err(|e| anyhow::anyhow!(e))?;
    let queries =
        HttpNationalQueries::new(urls, ca_pem, hub_identity_pem, budget).map_err(|e| anyhow::anyhow!(e))?;
    let callbacks = HttpCallbackSender::new(&[ca_pem], CALLBACK_TIMEOUT).map_err(|e| anyhow::anyhow!(e))?;
    Ok(HubLinks { delivery: Arc::new(delivery), queries: Arc::new(queries), callbacks: Arc::new(callbacks) })
}
