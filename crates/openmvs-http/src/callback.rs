//! The hub's [`CallbackSender`] over HTTPS: each batch of OBP events is POSTed as JSON to the URL
//! the OBP set, with its signature in the [`SIGNATURE_HEADER`] header.
//!
//! The server certificate of an OBP's endpoint is checked against the roots the hub is
//! configured with (PEM bundles, e.g. the hub's own CA for the demo): the workspace carries no
//! bundled web PKI roots, and a hub that runs offline could not fetch any. Redirects are not
//! followed, so a signed event never reaches a host the OBP did not name.

use std::time::Duration;

use openmvs_hub::{CallbackSender, SIGNATURE_HEADER};
use openmvs_store::BoxFuture;

/// How long one callback POST may take before the relay retries it later.
pub const CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Posts OBP events over HTTPS.
pub struct HttpCallbackSender {
    client: reqwest::Client,
}

impl HttpCallbackSender {
    /// A sender trusting the certificates of `root_pems` (each a PEM bundle of one or more CA
    /// certificates) for the OBPs' endpoints, giving up on one POST after `timeout`.
    pub fn new(root_pems: &[&[u8]], timeout: Duration) -> Result<HttpCallbackSender, String> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(90));
        for (i, pem) in root_pems.iter().enumerate() {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("callback roots, bundle {}: {e}", i + 1))?;
            if certs.is_empty() {
                return Err(format!("callback roots, bundle {}: no certificate", i + 1));
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        Ok(HttpCallbackSender { client: b.build().map_err(|e| e.to_string())? })
    }
}

impl CallbackSender for HttpCallbackSender {
    fn post(&self, url: &str, body: String, signature: String) -> BoxFuture<'_, Result<u16, String>> {
        let url = url.to_owned();
        Box::pin(async move {
            let resp = self
                .client
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, signature)
                .body(body)
                .send()
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            Ok(resp.status().as_u16())
        })
    }
}
