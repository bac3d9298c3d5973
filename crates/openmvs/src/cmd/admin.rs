//! `openmvs admin ...`: clients, dead letters, token keys of a national system's data directory.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use openmvs_core::ids::{Location, MarketCode};
use openmvs_core::roles::Role;
use openmvs_core::time::Clock;
use openmvs_national::clock::SystemClock;
use openmvs_national::{National, NationalConfig};
use openmvs_pki::{CertificateAuthority, ClientKind, Identity};
use openmvs_wire::hub::{BatchMsg, Delivery, Envelope, Message, PacksMsg, ProductMsg};

use crate::cli::{Admin, ClientCommand, DeadLetterCommand, ObpCommand, Target};
use crate::config::Storage;
use crate::node;
use crate::out::outln;

/// The data directory and storage named by `--config` (whose market it is then claimed for), or
/// the embedded store of `--data-dir`.
pub(crate) fn target(t: &Target) -> anyhow::Result<(PathBuf, Storage)> {
    match (&t.config, &t.data_dir) {
        (Some(c), _) => {
            let s = super::serve::settings(c)?;
            node::claim_market(&s.data_dir, s.market)?;
            Ok((s.data_dir, s.storage))
        }
        (None, Some(d)) => Ok((d.clone(), Storage::Sqlite)),
        (None, None) => bail!("give --config FILE or --data-dir DIR"),
    }
}

fn data_dir(t: &Target) -> anyhow::Result<PathBuf> {
    Ok(target(t)?.0)
}

async fn open(t: &Target) -> anyhow::Result<(Arc<National>, node::NodeStore)> {
    let (dir, storage) = target(t)?;
    let market = node::market_of(&dir)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = node::open(&dir, &storage, clock.clone(), None)?;
    let national = National::new(store.store(), clock, NationalConfig::new(market), None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((Arc::new(national), store))
}

pub async fn run(cmd: Admin) -> anyhow::Result<ExitCode> {
    match cmd {
        Admin::Obp(ObpCommand::Create { ca_dir, id, name, out, days }) => {
            obp_create(&ca_dir, &id, &name, &out, days)?;
        }
        Admin::Obp(ObpCommand::Revoke { ca_dir, serial, id }) => {
            obp_revoke(&ca_dir, serial, id.as_deref())?;
        }
        Admin::Client(ClientCommand::Create { target, market, role, location, name }) => {
            let market = MarketCode::new(&market).map_err(|e| anyhow::anyhow!("--market: {e}"))?;
            let role = Role::parse(&role).filter(|r| *r != Role::Obp).with_context(|| {
                format!("--role: '{role}' is not PHARMACY, HOSPITAL, WHOLESALER, NMVO or NCA")
            })?;
            let location = Location::new(&location).map_err(|e| anyhow::anyhow!("--location: {e}"))?;
            let dir = data_dir(&target)?;
            node::claim_market(&dir, market)?;
            let (national, store) = open(&target).await?;
            let c = national
                .create_client(role, location.clone(), &name)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            store.close().await;
            let out = serde_json::json!({
                "client_id": c.client_id,
                "client_secret": c.client_secret,
                "market": market.as_str(),
                "role": role.as_str(),
                "location": location.as_str(),
            });
            outln!("{}", serde_json::to_string_pretty(&out)?);
        }
        Admin::Client(ClientCommand::List { target }) => {
            let (national, store) = open(&target).await?;
            let clients =
                national.list_clients(&national.operator()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            store.close().await;
            let rows = clients.iter().map(|c| {
                let state = openmvs_wire::admin::ClientState::from(c);
                vec![
                    state.client_id,
                    state.role,
                    state.location,
                    state.state,
                    state.last_used_at.unwrap_or_else(|| "never".into()),
                    state.name,
                ]
            });
            outln!(
                "{}",
                table(&["CLIENT_ID", "ROLE", "LOCATION", "STATE", "LAST_USED", "NAME"], rows)
                    .trim_end_matches('\n')
            );
        }
        Admin::Client(ClientCommand::Disable { target, client_id }) => {
            set_disabled(&target, &client_id, true).await?;
        }
        Admin::Client(ClientCommand::Enable { target, client_id }) => {
            set_disabled(&target, &client_id, false).await?;
        }
        Admin::DeadLetters(DeadLetterCommand::List { target }) => {
            let (_, store) = open(&target).await?;
            let dead = store.dead_letters().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            if dead.is_empty() {
                outln!("no dead letters");
            }
            for m in dead {
                outln!(
                    "{}\t{}\t{}\t{} attempts\t{}",
                    m.seq,
                    m.message.kind,
                    m.message.message_id,
                    m.attempts,
                    m.last_error.unwrap_or_default()
                );
            }
            store.close().await;
        }
        Admin::DeadLetters(DeadLetterCommand::Replay { target, seq }) => {
            let (national, store) = open(&target).await?;
            let found =
                store.replay(seq, national.clock().now()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            store.close().await;
            if !found {
                bail!("no dead letter {seq}");
            }
            outln!("dead letter {seq} is queued for delivery again");
        }
        Admin::Incident(cmd) => return super::incident::run(cmd).await,
        Admin::Import { target, file } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let delivery: Delivery = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a delivery", file.display()))?;
            let (national, store) = open(&target).await?;
            let ack = national.apply_delivery(&delivery).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            store.close().await;
            for a in &ack.results {
                outln!("{}\t{}\t{}", a.message_id, a.status, a.error.clone().unwrap_or_default());
            }
        }
        Admin::Seed { target, product_code, batch, expiry, packs, prefix, markets } => {
            let (national, store) = open(&target).await?;
            let market = national.market().to_string();
            let markets: Vec<String> = match markets {
                Some(m) => m.split(',').map(str::to_owned).collect(),
                None => vec![market],
            };
            let width = packs.max(1).to_string().len().max(10);
            if prefix.len() + width > 20 {
                bail!(
                    "--prefix: '{prefix}' leaves no room for {width}-digit numbers in a 20-character serial"
                );
            }
            let started = std::time::Instant::now();
            let id = |k: &str| format!("seed-{product_code}-{batch}-{k}");
            let envelope = |k: &str, body| Envelope {
                message_id: id(k),
                origin: "seed".into(),
                ordering_key: product_code.clone(),
                body,
            };
            let mut head = vec![
                envelope(
                    "product",
                    Message::Product(ProductMsg {
                        scheme: "GTIN".into(),
                        product_code: product_code.clone(),
                        name: "Seedomab 10 mg tablets".into(),
                        common_name: "seedomab".into(),
                        form: "TABLET".into(),
                        strength: "10 mg".into(),
                        pack_type: "BOX".into(),
                        pack_size: "30".into(),
                        owner: "seed-obp".into(),
                        version: 1,
                    }),
                ),
                envelope(
                    "batch",
                    Message::Batch(BatchMsg {
                        scheme: "GTIN".into(),
                        product_code: product_code.clone(),
                        batch: batch.clone(),
                        expiry,
                        markets,
                    }),
                ),
            ];
            let mut n = 0u64;
            let mut chunk = 0;
            while n < packs || !head.is_empty() {
                let take = (packs - n).min(10_000);
                let serials = (n..n + take).map(|i| format!("{prefix}{i:0width$}")).collect::<Vec<_>>();
                let mut messages = std::mem::take(&mut head);
                if take > 0 {
                    messages.push(envelope(
                        &format!("packs-{chunk}"),
                        Message::Packs(PacksMsg {
                            scheme: "GTIN".into(),
                            product_code: product_code.clone(),
                            batch: batch.clone(),
                            serials,
                        }),
                    ));
                }
                let ack = national
                    .apply_delivery(&Delivery { messages })
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                if let Some(bad) = ack.results.iter().find(|a| a.status == "REJECTED") {
                    bail!("{}: {}", bad.message_id, bad.error.clone().unwrap_or_default());
                }
                n += take;
                chunk += 1;
            }
            store.close().await;
            outln!(
                "seeded {packs} packs of {product_code} batch {batch} (serials {prefix}{:0width$}..) in {:.1} s",
                0,
                started.elapsed().as_secs_f64()
            );
        }
        Admin::RotateTokenKey { target } => {
            let (national, store) = open(&target).await?;
            let kid = national.rotate_signing_key().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            store.close().await;
            outln!("new token-signing key {kid} is active; running nodes sign with it within seconds");
        }
        Admin::RetireTokenKey { target, kid } => {
            let (national, store) = open(&target).await?;
            let r = national.retire_token_key(&national.operator(), &kid).await;
            store.close().await;
            r.map_err(|e| flag_error(&e, "kid", "--kid"))?;
            outln!("token-signing key {kid} is revoked; running nodes refuse its tokens within seconds");
        }
        Admin::Backup { target, out } => return super::backup::run_backup(&target, &out),
        Admin::Restore { target, from, replace } => {
            return super::backup::run_restore(&target, &from, replace);
        }
        Admin::TokenKeys { target } => {
            let (_, store) = open(&target).await?;
            let keys = store.keys().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            store.close().await;
            let when =
                |t: Option<openmvs_core::time::Timestamp>| t.map_or_else(|| "-".into(), |t| t.to_rfc3339());
            let rows = keys.iter().map(|k| {
                let state = match (k.active, k.revoked_at) {
                    (_, Some(_)) => "revoked",
                    (true, None) => "active",
                    (false, None) => "retired",
                };
                vec![
                    k.kid.to_string(),
                    state.into(),
                    k.created_at.to_rfc3339(),
                    when(k.retired_at),
                    when(k.revoked_at),
                ]
            });
            outln!(
                "{}",
                table(&["KID", "STATE", "CREATED", "RETIRED", "REVOKED"], rows).trim_end_matches('\n')
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Cuts a client off or lets it back in, as the operator, and prints its state.
async fn set_disabled(target: &Target, client_id: &str, disabled: bool) -> anyhow::Result<()> {
    let (national, store) = open(target).await?;
    let r = national.set_client_disabled(&national.operator(), client_id, disabled).await;
    store.close().await;
    let c = r.map_err(|e| flag_error(&e, "client_id", "--client-id"))?;
    if disabled {
        outln!("client {} is disabled; running nodes refuse its tokens within seconds", c.client_id);
    } else {
        outln!("client {} is enabled", c.client_id);
    }
    Ok(())
}

/// A refusal of the service as a command-line error: a detail about `field` names the flag.
fn flag_error(e: &openmvs_national::ApiError, field: &str, flag: &str) -> anyhow::Error {
    match e.details.iter().find(|d| d.field == field) {
        Some(d) => anyhow::anyhow!("{flag}: {}", d.message),
        None => anyhow::anyhow!("{e}"),
    }
}

/// Rows as a table: columns aligned with spaces, a header line first.
fn table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    lines.extend(rows);
    let mut widths = vec![0; header.len()];
    for l in &lines {
        for (w, cell) in widths.iter_mut().zip(l) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for l in &lines {
        let cells: Vec<String> = l.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn obp_create(ca_dir: &Path, id: &str, name: &str, out: &Path, days: u32) -> anyhow::Result<()> {
    if name.trim().is_empty() || name.chars().count() > 200 {
        bail!("--name: must be 1 to 200 characters");
    }
    let mut ca = CertificateAuthority::open(ca_dir)
        .with_context(|| format!("opening the CA in {}", ca_dir.display()))?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let (cert, key, info) =
        (out.join(format!("{id}.pem")), out.join(format!("{id}.key")), out.join(format!("{id}.json")));
    if key.exists() {
        bail!("{} exists: revoke the OBP's certificate first, or write elsewhere", key.display());
    }
    let issued = ca
        .issue_client(ClientKind::Obp, id, days, SystemClock.system_time())
        .map_err(|e| anyhow::anyhow!("--id: {e}"))?;
    node::write_private(&key, &issued.key_pem)?;
    std::fs::write(&cert, &issued.cert_pem).with_context(|| format!("writing {}", cert.display()))?;
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned()).display().to_string();
    let out = serde_json::json!({
        "id": id,
        "name": name,
        "serial": issued.serial,
        "dns_name": format!("{id}.obp.openmvs"),
        "cert": abs(&cert),
        "key": abs(&key),
    });
    let text = serde_json::to_string_pretty(&out)?;
    std::fs::write(&info, format!("{text}\n")).with_context(|| format!("writing {}", info.display()))?;
    outln!("{text}");
    Ok(())
}

fn obp_revoke(ca_dir: &Path, serial: Option<u64>, id: Option<&str>) -> anyhow::Result<()> {
    let mut ca = CertificateAuthority::open(ca_dir)
        .with_context(|| format!("opening the CA in {}", ca_dir.display()))?;
    let serials: Vec<u64> = match (serial, id) {
        (Some(s), _) => vec![s],
        (None, Some(id)) => {
            let who = Identity::Obp(id.to_owned());
            let found: Vec<u64> = ca
                .issued()
                .iter()
                .filter(|r| r.revoked_at.is_none() && r.identity().as_ref() == Some(&who))
                .map(|r| r.serial)
                .collect();
            if found.is_empty() {
                bail!("the CA has no unrevoked certificate of OBP '{id}'");
            }
            found
        }
        (None, None) => bail!("give --serial N or --id OBP"),
    };
    for s in serials {
        if ca.revoke(s, SystemClock.system_time()).map_err(|e| anyhow::anyhow!("{e}"))? {
            outln!("revoked certificate {s}");
        } else {
            outln!("certificate {s} was already revoked");
        }
    }
    Ok(())
}
