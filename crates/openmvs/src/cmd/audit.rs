//! `openmvs audit verify`: checks the whole trail of a national system or of the hub and names
//! the first bad record; `openmvs audit heads`: the signed heads the hub keeps, for the former.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use openmvs_core::time::Clock;
use openmvs_national::OutsideHead;
use openmvs_national::clock::SystemClock;
use openmvs_store::{AuditStore, Store};
use openmvs_store_sqlite::SqliteStore;
use openmvs_store_sqlite::hub::SqliteHubStore;

use crate::cli::{AuditCommand, Target};
use crate::config::Storage;
use crate::out::outln;
use crate::{heads, node};

/// Exit status when the trail does not verify.
const BROKEN: u8 = 3;

pub async fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify { target, public_keys, heads } => verify(&target, &public_keys, &heads).await,
        AuditCommand::Heads { target, market } => print_heads(&target, market.as_deref()).await,
        AuditCommand::Search {
            target,
            product_code,
            serial,
            subject,
            client_id,
            location,
            operation,
            from,
            to,
            format,
            limit,
        } => {
            let bad = |e: openmvs_core::error::ApiError| {
                anyhow::anyhow!(
                    "{}",
                    e.details
                        .iter()
                        .map(|d| format!("--{}: {}", d.field, d.message))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            };
            let mut q = openmvs_store::AuditQuery {
                actor: client_id,
                location,
                operation,
                from_millis: from
                    .map(|v| openmvs_core::alert::query_instant("from", &v, false))
                    .transpose()
                    .map_err(bad)?
                    .map(|t| t.unix_millis()),
                to_millis: to
                    .map(|v| openmvs_core::alert::query_instant("to", &v, true))
                    .transpose()
                    .map_err(bad)?
                    .map(|t| t.unix_millis()),
                ..openmvs_store::AuditQuery::default()
            };
            if let Some(code) = product_code {
                let pc =
                    openmvs_national::request::product_code("", Some("GTIN"), Some(&code)).map_err(|e| {
                        anyhow::anyhow!(
                            "--product-code: {}",
                            e.details.first().map_or(e.message.clone(), |d| d.message.clone())
                        )
                    })?;
                match serial {
                    Some(sn) => q.subjects.push(format!("{}/{pc}/{sn}", pc.scheme())),
                    None => q.subject_prefix = Some(format!("{}/{pc}", pc.scheme())),
                }
            }
            q.subjects.extend(subject);
            let json = match format.as_str() {
                "csv" => false,
                "json" => true,
                f => anyhow::bail!("--format: '{f}' is not csv or json"),
            };
            search(&target, q, json, limit).await
        }
    }
}

/// `openmvs audit verify`: every record and checkpoint of the trail, then the signed heads kept
/// outside the database (the head file, and `--heads` files from the hub) against it.
async fn verify(target: &Target, public_keys: &[String], head_files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    if let Some(path) = &target.config {
        let raw = crate::config::load_raw(Some(path), std::env::vars())?;
        if raw.national.is_none() && raw.hub.is_some() {
            let base =
                path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            let s = crate::hub_config::hub(&raw, base)?;
            return verify_hub(&s.data_dir, &s.storage, public_keys, head_files).await;
        }
    }
    // A hub's data directory holds the hub's database and no national one.
    if let (None, Some(dir)) = (&target.config, &target.data_dir)
        && crate::hub_node::db_path(dir).exists()
        && !node::db_path(dir).exists()
    {
        return verify_hub(dir, &Storage::Sqlite, public_keys, head_files).await;
    }
    let (data_dir, storage) = super::admin::target(target)?;
    let keys = node::audit_public_keys(&data_dir, public_keys)?;
    // A data directory written before the market was recorded has no market file: every head counts.
    let market = node::market_of(&data_dir).ok();
    let mut outside = Vec::new();
    let own = heads::heads_path(&data_dir);
    let mut sources = vec![(own.clone(), heads::read_heads(&own))];
    for f in head_files {
        // A head file of the data directory may not exist yet; a file named on the command line must.
        if !f.exists() {
            anyhow::bail!("--heads {}: no such file", f.display());
        }
        sources.push((f.clone(), heads::read_heads(f)));
    }
    for (path, read) in sources {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let origin = if path == own { name } else { path.display().to_string() };
        let found = match read {
            Ok(h) => h,
            // A head file that cannot be read is itself a finding: it was written whole each time.
            Err(e) => {
                eprintln!("audit: BROKEN: {e:#}");
                return Ok(ExitCode::from(BROKEN));
            }
        };
        for (m, cp) in found {
            // The hub keeps every market's heads; this system answers for its own.
            if market.is_none_or(|own| m == own.as_str()) {
                outside.push(OutsideHead { origin: origin.clone(), checkpoint: cp });
            }
        }
    }
    let store: Arc<dyn Store> = match storage {
        // The embedded file is opened read-only: verifying never writes.
        Storage::Sqlite => Arc::new(
            SqliteStore::open_read_only(&node::db_path(&data_dir)).map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
        storage => {
            let clock: Arc<dyn Clock> = Arc::new(SystemClock);
            node::open_to_read(&data_dir, &storage, clock)?.store()
        }
    };
    match openmvs_national::verify_audit_with_heads(store.as_ref(), keys, &outside).await {
        Ok(r) => {
            let mut markets: Vec<_> = r.records.iter().collect();
            markets.sort();
            for (m, n) in markets {
                let tail = r.unsigned_tail.get(m).copied().unwrap_or(0);
                outln!("audit {m}: {n} records verified, {tail} after the last signed checkpoint");
            }
            for h in &outside {
                let cp = &h.checkpoint;
                outln!("audit {}: the trail reaches the signed head #{} of {}", cp.market, cp.seq, h.origin);
            }
            if outside.is_empty() {
                outln!(
                    "audit: no signed head kept outside the database was checked (no {} and no --heads): \
                     records cut off at the end would not show",
                    heads::HEADS_FILE
                );
            }
            outln!("audit: OK, {} checkpoints verified", r.checkpoints);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("audit: BROKEN: {e}");
            Ok(ExitCode::from(BROKEN))
        }
    }
}

/// The audit store of a national system or of the hub, opened to read, with how to close it.
async fn open_trail(
    target: &Target,
) -> anyhow::Result<(Arc<dyn AuditStore>, Box<dyn FnOnce() -> std::pin::Pin<Box<dyn Future<Output = ()>>>>)> {
    let hub = match (&target.config, &target.data_dir) {
        (Some(path), _) => {
            let raw = crate::config::load_raw(Some(path), std::env::vars())?;
            if raw.national.is_none() && raw.hub.is_some() {
                let base =
                    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
                let s = crate::hub_config::hub(&raw, base)?;
                Some((s.data_dir, s.storage))
            } else {
                None
            }
        }
        (None, Some(dir)) if crate::hub_node::db_path(dir).exists() && !node::db_path(dir).exists() => {
            Some((dir.clone(), Storage::Sqlite))
        }
        _ => None,
    };
    Ok(match hub {
        Some((dir, Storage::Sqlite)) => {
            let store = SqliteHubStore::open_read_only(&crate::hub_node::db_path(&dir))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            (Arc::new(store), Box::new(|| Box::pin(async {})))
        }
        Some((dir, storage)) => {
            let hub = crate::hub_node::open(&dir, &storage, Arc::new(SystemClock), None)?;
            let store: Arc<dyn AuditStore> = hub.store();
            (store, Box::new(move || Box::pin(async move { hub.close().await })))
        }
        None => {
            let (dir, storage) = super::admin::target(target)?;
            let n = node::open_to_read(&dir, &storage, Arc::new(SystemClock))?;
            let store: Arc<dyn AuditStore> = n.store();
            (store, Box::new(move || Box::pin(async move { n.close().await })))
        }
    })
}

/// `openmvs audit search`: the records meeting `q`, page after page, as CSV or JSON lines.
async fn search(
    target: &Target,
    q: openmvs_store::AuditQuery,
    json: bool,
    limit: usize,
) -> anyhow::Result<ExitCode> {
    let (store, close) = open_trail(target).await?;
    let printed: anyhow::Result<()> = async {
        if !json {
            outln!("{}", openmvs_http::export::CSV_COLUMNS.join(","));
        }
        let (mut after, mut n) = (0, 0usize);
        loop {
            let page = store
                .audit_search(&openmvs_store::AuditQuery { after_pos: after, limit: 1000, ..q.clone() })
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for (pos, r) in &page {
                after = *pos;
                if limit > 0 && n == limit {
                    return Ok(());
                }
                n += 1;
                let view = openmvs_http::export::view(r);
                if json {
                    outln!("{}", serde_json::to_string(&openmvs_wire::api::AuditRecordView::from(&view))?);
                } else {
                    outln!("{}", openmvs_http::export::csv_line(&view).trim_end_matches("\r\n"));
                }
            }
            if page.len() < 1000 {
                return Ok(());
            }
        }
    }
    .await;
    close().await;
    printed?;
    Ok(ExitCode::SUCCESS)
}

/// `openmvs audit verify --config hub.toml` (or `--data-dir` of the hub): every record and
/// checkpoint of the hub's own trail (uploads, batches, recalls, the heads the markets sent), with
/// the public key of the hub's data directory or those given. The hub keeps no head of its own
/// trail outside its database.
async fn verify_hub(
    data_dir: &std::path::Path,
    storage: &Storage,
    public_keys: &[String],
    head_files: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    if !head_files.is_empty() {
        anyhow::bail!(
            "--heads: the heads the hub received are checked at each national system \
             (openmvs audit verify --config national.toml --heads FILE), not against the hub's own trail"
        );
    }
    let keys = node::audit_public_keys(data_dir, public_keys)?;
    let found = match storage {
        // The embedded file is opened read-only: verifying never writes.
        Storage::Sqlite => {
            let store = SqliteHubStore::open_read_only(&crate::hub_node::db_path(data_dir))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            openmvs_national::verify_audit(&store, keys).await
        }
        storage => {
            let hub = crate::hub_node::open(data_dir, storage, Arc::new(SystemClock), None)?;
            let store = hub.store();
            let found = openmvs_national::verify_audit(store.as_ref(), keys).await;
            hub.close().await;
            found
        }
    };
    match found {
        Ok(r) => {
            let mut chains: Vec<_> = r.records.iter().collect();
            chains.sort();
            for (chain, n) in chains {
                let tail = r.unsigned_tail.get(chain).copied().unwrap_or(0);
                outln!("audit {chain}: {n} records verified, {tail} after the last signed checkpoint");
            }
            outln!("audit: OK, {} checkpoints verified (the hub's trail)", r.checkpoints);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("audit: BROKEN: {e}");
            Ok(ExitCode::from(BROKEN))
        }
    }
}

/// `openmvs audit heads`: the latest signed head the hub received from each market, read from
/// the hub's own audit trail, one JSON line each.
async fn print_heads(target: &Target, market: Option<&str>) -> anyhow::Result<ExitCode> {
    if let Some(m) = market {
        openmvs_core::ids::MarketCode::new(m).map_err(|e| anyhow::anyhow!("--market: {e}"))?;
    }
    let (data_dir, storage) = match (&target.config, &target.data_dir) {
        (Some(path), _) => {
            let raw = crate::config::load_raw(Some(path), std::env::vars())?;
            let base =
                path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            if raw.hub.is_none() {
                anyhow::bail!("{} has no [hub] section", path.display());
            }
            let s = crate::hub_config::hub(&raw, base)?;
            (s.data_dir, s.storage)
        }
        (None, Some(dir)) => (dir.clone(), Storage::Sqlite),
        (None, None) => anyhow::bail!("give --config FILE or --data-dir DIR"),
    };
    let found = match storage {
        Storage::Sqlite => {
            let store = SqliteHubStore::open_read_only(&crate::hub_node::db_path(&data_dir))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            openmvs_hub::received_audit_heads(&store, market).await
        }
        storage => {
            let hub = crate::hub_node::open(&data_dir, &storage, Arc::new(SystemClock), None)?;
            let found = openmvs_hub::received_audit_heads(hub.store().as_ref(), market).await;
            hub.close().await;
            found
        }
    }
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = std::io::stdout().lock();
    for h in found {
        writeln!(out, "{}", serde_json::to_string(&h)?)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `openmvs migrate`: brings the storage schema of every system the configuration file describes
/// (`[national]`, `[hub]`), or of `--data-dir`, to this build's version and says what it did.
pub fn migrate(target: &Target) -> anyhow::Result<ExitCode> {
    match (&target.config, &target.data_dir) {
        (Some(path), _) => {
            let raw = crate::config::load_raw(Some(path), std::env::vars())?;
            let base =
                path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            if raw.national.is_none() && raw.hub.is_none() {
                anyhow::bail!("{} has neither a [national] nor a [hub] section", path.display());
            }
            if raw.national.is_some() {
                let s = crate::config::national(&raw, base)?;
                node::claim_market(&s.data_dir, s.market)?;
                migrate_one("national", &s.data_dir, &s.storage, false)?;
            }
            if raw.hub.is_some() {
                let s = crate::hub_config::hub(&raw, base)?;
                migrate_one("hub", &s.data_dir, &s.storage, true)?;
            }
        }
        (None, Some(dir)) => migrate_one("national", dir, &Storage::Sqlite, false)?,
        (None, None) => anyhow::bail!("give --config FILE or --data-dir DIR"),
    }
    Ok(ExitCode::SUCCESS)
}

fn migrate_one(what: &str, data_dir: &std::path::Path, storage: &Storage, hub: bool) -> anyhow::Result<()> {
    let now = SystemClock.now();
    match storage {
        Storage::Sqlite => {
            // The embedded store migrates itself when it opens.
            if hub {
                crate::hub_node::open_store(data_dir, Arc::new(SystemClock), None)?.close();
            } else {
                node::open_store(data_dir, Arc::new(SystemClock), None)?.close();
            }
            outln!("migrate: {what}: the embedded store in {} is at this build's schema", data_dir.display());
        }
        Storage::Postgres { url, schema, .. } => {
            let (applied, latest) = if hub {
                (
                    openmvs_store_pg::hub::migrate(url, Some(schema), now),
                    openmvs_store_pg::hub::PgHubStore::schema_version(),
                )
            } else {
                (
                    openmvs_store_pg::migrate(url, Some(schema), now),
                    openmvs_store_pg::PgStore::schema_version(),
                )
            };
            let applied = applied.map_err(|e| {
                anyhow::anyhow!("migrating {what} schema {schema} at {}: {e}", crate::config::redact_url(url))
            })?;
            if applied.is_empty() {
                outln!("migrate: {what}: schema {schema} is at version {latest}, nothing to do");
            } else {
                let list: Vec<String> = applied.iter().map(|v| v.to_string()).collect();
                outln!(
                    "migrate: {what}: schema {schema}: applied {}; now at version {latest}",
                    list.join(", ")
                );
            }
        }
    }
    Ok(())
}
