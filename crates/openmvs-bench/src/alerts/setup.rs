//! Before the steps and after them: the OBP uploads the workload's catalogue through the hub
//! and recalls its recalled batches, every terminal and each market's NMVO become clients of
//! their national system, and at the end each NMVO lists every alert of its market.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{Either, Full};
use openmvs_core::ids::{Location, MarketCode};
use openmvs_core::roles::Role;
use openmvs_wire::obp::{
    BatchRequest, Mah, ProductMarket, ProductRequest, RecallRequest, UploadAcceptedBody, UploadStatusBody,
    WholesalerEntry,
};
use openmvs_workload::Workload;
use openmvs_workload::tally::Listed;
use serde_json::Value;

use crate::hub::{ObpConn, Running};
use crate::load::Conn;

/// How often the OBP asks whether an upload or a recall has reached every market.
const POLL_EVERY: Duration = Duration::from_millis(50);
/// How long the catalogue may take to reach every market: generous, as speed is not measured.
const SETUP_DEADLINE: Duration = Duration::from_secs(600);
/// The page size of the NMVOs' alert lists (the largest the API gives).
const PAGE: usize = 1000;

/// A client of a national system.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub client_id: String,
    pub client_secret: String,
}

fn empty() -> Either<Full<Bytes>, crate::hub::SerialBody> {
    Either::Left(Full::new(Bytes::new()))
}

/// The OBP's side: every product with its markets, every batch and its serials (`text/plain`),
/// each upload polled until DISTRIBUTED in every market with nothing rejected; then the recalls,
/// polled through the hub's pack query until every market reports the batch RECALLED.
pub(crate) async fn catalogue(
    hub: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    w: Arc<Workload>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut conn = ObpConn::open(hub, tls).await?;
    let mut uploads = Vec::new();
    for p in &w.products {
        let product = ProductRequest {
            scheme: Some("GTIN".into()),
            name: Some(p.name.clone()),
            common_name: Some("workloadomab".into()),
            form: Some("TABLET".into()),
            strength: Some("10 mg".into()),
            pack_type: Some("BOX".into()),
            pack_size: Some("30".into()),
            markets: Some(
                p.markets
                    .iter()
                    .map(|m| ProductMarket {
                        market: Some(m.as_str().to_owned()),
                        national_code: Some(format!("{m}-{}", &p.gtin[6..13])),
                        mah: Some(Mah {
                            name: Some("Workload Pharma".into()),
                            address: Some("1 Seed Street".into()),
                        }),
                        wholesalers: vec![WholesalerEntry {
                            id: Some(format!("{m}-WH-0001")),
                            name: Some("Workload Wholesale".into()),
                        }],
                    })
                    .collect(),
            ),
        };
        conn.json("PUT", &format!("/v1/products/{}", p.gtin), &product).await?;
        for b in &p.batches {
            let batch = BatchRequest { expiry: b.expiry.clone(), markets: None };
            let path = format!("/v1/products/{}/batches/{}", p.gtin, encode(&b.name));
            conn.json("PUT", &path, &batch).await?;
            let mut body = b.serials.join("\n");
            body.push('\n');
            let answer = conn
                .send(
                    "POST",
                    &format!("{path}/packs"),
                    Some("text/plain"),
                    Either::Left(Full::new(Bytes::from(body))),
                    202,
                )
                .await?;
            let accepted: UploadAcceptedBody = serde_json::from_slice(&answer)?;
            uploads.push((accepted.upload_id, b.serials.len() as u64, p.markets.clone()));
        }
    }
    for (id, serials, markets) in uploads {
        loop {
            let body = conn.send("GET", &format!("/v1/uploads/{id}"), None, empty(), 200).await?;
            let s: UploadStatusBody = serde_json::from_slice(&body)?;
            if s.status == "FAILED" || s.rejected_count > 0 {
                bail!(
                    "upload {id}: {} with {} of {serials} serials rejected: {:?}",
                    s.status,
                    s.rejected_count,
                    s.rejected
                );
            }
            let everywhere =
                markets.iter().all(|m| s.markets.get(m.as_str()).is_some_and(|d| d == "DISTRIBUTED"));
            if s.status == "DISTRIBUTED" && everywhere && s.received == serials {
                break;
            }
            if started.elapsed() > SETUP_DEADLINE {
                bail!(
                    "upload {id} is still {} after {:.0} s: {:?}",
                    s.status,
                    started.elapsed().as_secs_f64(),
                    s.markets
                );
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
    for p in &w.products {
        for b in p.batches.iter().filter(|b| b.recalled) {
            let path = format!("/v1/products/{}/batches/{}/recall", p.gtin, encode(&b.name));
            let markets = p.markets.iter().map(|m| m.as_str().to_owned()).collect();
            conn.json("POST", &path, &RecallRequest { reason: "quality defect (workload)".into(), markets })
                .await?;
            let serial = b.serials.first().context("a recalled batch without serials")?;
            loop {
                let path = format!("/v1/products/{}/packs/{}", p.gtin, encode(serial));
                let body = conn.send("GET", &path, None, empty(), 200).await?;
                let v: Value = serde_json::from_slice(&body)?;
                let recalled = |m: &MarketCode| {
                    v["markets"][m.as_str()]["reasons"]
                        .as_array()
                        .is_some_and(|r| r.iter().any(|x| x == "RECALLED"))
                };
                if p.markets.iter().all(recalled) {
                    break;
                }
                if started.elapsed() > SETUP_DEADLINE {
                    bail!("the recall of {} {} has not reached every market: {v}", p.gtin, b.name);
                }
                tokio::time::sleep(POLL_EVERY).await;
            }
        }
    }
    Ok(())
}

/// A path segment: batch numbers and serials may hold `/` and other characters a path does not
/// carry as they are.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A client for every terminal (in the order of the workload's terminals), and one NMVO client
/// per market.
pub(crate) async fn clients(
    running: &Running,
    w: &Workload,
) -> anyhow::Result<(Vec<Client>, BTreeMap<MarketCode, Client>)> {
    let mut terminals = Vec::new();
    for t in &w.terminals {
        terminals.push(client(running, t.market, t.role, t.location.clone()).await?);
    }
    let mut nmvos = BTreeMap::new();
    for m in &w.markets {
        let location = Location::new(&format!("{m}-NMVO")).map_err(|e| anyhow::anyhow!("{e}"))?;
        nmvos.insert(*m, client(running, *m, Role::Nmvo, location).await?);
    }
    Ok((terminals, nmvos))
}

async fn client(running: &Running, m: MarketCode, role: Role, location: Location) -> anyhow::Result<Client> {
    let (national, _) = running.nationals.get(&m).with_context(|| format!("no national system {m}"))?;
    let c = national
        .create_client(role, location, "openmvs-bench alerts")
        .await
        .map_err(|e| anyhow::anyhow!("creating a {role} client in {m}: {e}"))?;
    Ok(Client { client_id: c.client_id, client_secret: c.client_secret })
}

/// A token for `client`, waiting its turn when the token endpoint is busy (503 or 429).
pub(crate) async fn token(conn: &mut Conn, client: &Client) -> anyhow::Result<String> {
    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        client.client_id, client.client_secret
    );
    for _ in 0..600 {
        let reply = conn.send("POST", "/oauth/token", None, form.clone().into_bytes()).await?;
        match reply.status {
            200 => {
                let v: Value = serde_json::from_slice(&reply.body)?;
                return Ok(v["access_token"].as_str().context("no access_token")?.to_owned());
            }
            503 | 429 => tokio::time::sleep(reply.retry_after.unwrap_or(Duration::from_millis(100))).await,
            s => bail!("token: HTTP {s}: {}", String::from_utf8_lossy(&reply.body)),
        }
    }
    bail!("token: the token endpoint stayed busy")
}

/// Every alert each market's NMVO lists, page by page.
pub(crate) async fn list_alerts(
    nationals: BTreeMap<MarketCode, SocketAddr>,
    nmvos: BTreeMap<MarketCode, Client>,
    tls: Arc<rustls::ClientConfig>,
) -> anyhow::Result<Vec<Listed>> {
    let mut out = Vec::new();
    for (m, addr) in nationals {
        let nmvo = nmvos.get(&m).with_context(|| format!("no NMVO client in {m}"))?;
        let mut conn = Conn::open(addr, "localhost", tls.clone()).await?;
        let token = token(&mut conn, nmvo).await?;
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                None => format!("/v1/alerts?limit={PAGE}"),
                Some(c) => format!("/v1/alerts?limit={PAGE}&cursor={}", encode(c)),
            };
            let reply = conn.send("GET", &path, Some(&token), Vec::new()).await?;
            if reply.status != 200 {
                bail!("{m}: GET {path}: HTTP {}: {}", reply.status, String::from_utf8_lossy(&reply.body));
            }
            let v: Value = serde_json::from_slice(&reply.body)?;
            let text = |a: &Value, k: &str| a[k].as_str().unwrap_or_default().to_owned();
            for a in v["alerts"].as_array().context("no alerts in the list")? {
                out.push(Listed {
                    id: text(a, "id"),
                    code: text(a, "code"),
                    market: text(a, "market"),
                    product_code: text(a, "product_code"),
                    serial: text(a, "serial"),
                });
            }
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_keep_what_paths_carry_and_encode_the_rest() {
        assert_eq!(encode("LOT/42"), "LOT%2F42");
        assert_eq!(encode("B29-0417"), "B29-0417");
        assert_eq!(encode("a b%"), "a%20b%25");
    }
}
