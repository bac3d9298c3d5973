//! Building the European Hub from its data directory (the serial digest key, the audit signing
//! key, the store) and keeping its server's revocation list current.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use openmvs_core::time::Clock;
use openmvs_http::TlsReloader;
use openmvs_store::BoxFuture;
use openmvs_store::hub::HubStore;
use openmvs_store_pg::hub::{PgHubOptions, PgHubStore};
use openmvs_store_sqlite::AuditSigner;
use openmvs_store_sqlite::hub::{HubOptions, SqliteHubStore};
use rustls_pki_types::CertificateRevocationListDer;
use rustls_pki_types::pem::PemObject;
use tokio::sync::watch;

use crate::national as node;
use crate::{Storage, redact_url};

/// The hub's database file in its data directory.
pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("hub.db")
}

/// The key of the hub's serial digests: `serial.key` in the data directory (64 hex digits, mode
/// 0600), created at the first start. Losing or changing it means repeats of serials uploaded
/// before can no longer be found, so it lives beside the database and is backed up with it.
pub fn serial_key(data_dir: &Path) -> anyhow::Result<[u8; 32]> {
    let path = data_dir.join("serial.key");
    if path.exists() {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        return node::unhex::<32>(&text).with_context(|| format!("{}", path.display()));
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("random number generator: {e}"))?;
    node::write_private(&path, &node::hex(&key))?;
    Ok(key)
}

/// Opens (creating if needed) the hub's store; the audit checkpoints are signed with the data
/// directory's `audit-signing.key`, as at a national system.
pub fn open_store(
    data_dir: &Path,
    clock: Arc<dyn Clock>,
    on_group: Option<Arc<dyn Fn(usize) + Send + Sync>>,
) -> anyhow::Result<Arc<SqliteHubStore>> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let key = node::audit_key(data_dir)?;
    let store = SqliteHubStore::open(HubOptions {
        path: db_path(data_dir),
        signer: Arc::new(AuditSigner { key }),
        clock,
        on_group,
        checkpoints: openmvs_store::CheckpointOptions::default(),
    })
    .with_context(|| {
        format!("opening {}{}", db_path(data_dir).display(), crate::open_failure_hint(data_dir))
    })?;
    Ok(Arc::new(store))
}

/// The hub's open store, whichever engine.
#[derive(Clone)]
pub struct HubNodeStore {
    store: Arc<dyn HubStore>,
    close: Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>,
}

impl HubNodeStore {
    /// The store, for the service.
    pub fn store(&self) -> Arc<dyn HubStore> {
        self.store.clone()
    }

    /// Commits what is queued, signs the open audit tails and stops the writer.
    pub async fn close(&self) {
        (self.close)().await;
    }
}

/// Opens the hub's store: its data directory's embedded database, or its PostgreSQL schema,
/// which must be migrated already (`openmvs migrate`). The data directory holds the audit signing
/// key and the serial digest key either way.
pub fn open(
    data_dir: &Path,
    storage: &Storage,
    clock: Arc<dyn Clock>,
    on_group: Option<Arc<dyn Fn(usize) + Send + Sync>>,
) -> anyhow::Result<HubNodeStore> {
    match storage {
        Storage::Sqlite => {
            let s = open_store(data_dir, clock, on_group)?;
            let c = s.clone();
            Ok(HubNodeStore {
                store: s,
                close: Arc::new(move || {
                    c.close();
                    Box::pin(async {})
                }),
            })
        }
        Storage::Postgres { url, schema, pool, commit_timeout } => {
            std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
            let key = node::audit_key(data_dir)?;
            let s = Arc::new(
                PgHubStore::open(PgHubOptions {
                    url: url.clone(),
                    schema: Some(schema.clone()),
                    signing_key: key,
                    clock,
                    on_group,
                    migrate: false,
                    pool_size: *pool,
                    commit_timeout: *commit_timeout,
                    checkpoints: openmvs_store::CheckpointOptions::default(),
                })
                .with_context(|| format!("opening PostgreSQL schema {schema} at {}", redact_url(url)))?,
            );
            let c = s.clone();
            Ok(HubNodeStore {
                store: s,
                close: Arc::new(move || {
                    let c = c.clone();
                    Box::pin(async move { c.close().await })
                }),
            })
        }
    }
}

/// The revocation lists in a PEM file (the CA directory's `crl.pem`).
pub fn read_crls(path: &Path) -> anyhow::Result<Vec<CertificateRevocationListDer<'static>>> {
    CertificateRevocationListDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Checks `crl_file` every `every` and hands a changed list to the server, so that a revocation
/// by `openmvs admin obp revoke` refuses the certificate from the next connection on, without a
/// restart. A list that cannot be read is logged and the previous one kept.
pub async fn watch_crl(
    crl_file: PathBuf,
    reloader: TlsReloader,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut last = std::fs::read(&crl_file).ok();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let now = std::fs::read(&crl_file).ok();
        if now.is_none() || now == last {
            continue;
        }
        match read_crls(&crl_file).and_then(|c| reloader.set_crls(c).map_err(|e| anyhow::anyhow!(e))) {
            Ok(()) => {
                tracing::info!(file = %crl_file.display(), "revocation list reloaded");
                last = now;
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "keeping the previous revocation list"),
        }
    }
}
