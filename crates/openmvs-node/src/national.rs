//! Building a national system from its data directory: the audit signing key, the store, the
//! market the directory belongs to.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use ed25519_dalek::{SigningKey, VerifyingKey};
use openmvs_core::ids::MarketCode;
use openmvs_core::time::Clock;
use openmvs_store::{CheckpointOptions, Store};
use openmvs_store_pg::{PgOptions, PgStore};
use openmvs_store_sqlite::{AuditSigner, Options, SqliteStore};

use crate::Storage;
use crate::heads::HeadFile;

/// The database file in a data directory.
pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("national.db")
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes hex into exactly `N` bytes.
pub fn unhex<const N: usize>(s: &str) -> anyhow::Result<[u8; N]> {
    let s = s.trim();
    if s.len() != 2 * N || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("expected {} hex digits", 2 * N);
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)?;
    }
    Ok(out)
}

/// The key that signs audit checkpoints: `audit-signing.key` in the data directory, created on
/// first use (with `audit-signing.pub` beside it, for anyone who verifies the trail).
pub fn audit_key(data_dir: &Path) -> anyhow::Result<SigningKey> {
    let path = data_dir.join("audit-signing.key");
    let key = if path.exists() {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        SigningKey::from_bytes(&unhex::<32>(&text).with_context(|| format!("{}", path.display()))?)
    } else {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("random number generator: {e}"))?;
        write_private(&path, &hex(&secret))?;
        SigningKey::from_bytes(&secret)
    };
    let public = data_dir.join("audit-signing.pub");
    if !public.exists() {
        std::fs::write(&public, format!("{}\n", hex(key.verifying_key().as_bytes())))
            .with_context(|| format!("writing {}", public.display()))?;
    }
    Ok(key)
}

/// The public key(s) to verify the trail with: given ones, or the data directory's.
pub fn audit_public_keys(data_dir: &Path, given: &[String]) -> anyhow::Result<Vec<VerifyingKey>> {
    let texts: Vec<String> = if given.is_empty() {
        let p = data_dir.join("audit-signing.pub");
        vec![std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?]
    } else {
        given.to_vec()
    };
    texts
        .iter()
        .map(|t| {
            let bytes = unhex::<32>(t).context("public key")?;
            VerifyingKey::from_bytes(&bytes).context("public key is not an Ed25519 key")
        })
        .collect()
}

/// Writes a new file readable by its owner alone (mode 0600 on Unix); fails if it exists.
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Checks that the data directory belongs to `market`, recording it on first use.
pub fn claim_market(data_dir: &Path, market: MarketCode) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let path = data_dir.join("market");
    if path.exists() {
        let found = std::fs::read_to_string(&path)?;
        if found.trim() != market.as_str() {
            bail!("{} holds the national system of {}, not {market}", data_dir.display(), found.trim());
        }
        return Ok(());
    }
    std::fs::write(&path, format!("{market}\n")).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The market a data directory belongs to.
pub fn market_of(data_dir: &Path) -> anyhow::Result<MarketCode> {
    let path = data_dir.join("market");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("{} is not a national system's data directory (no market file)", data_dir.display())
    })?;
    MarketCode::new(text.trim()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// A national system's open store, whichever engine it is, and the head file its checkpoints go
/// to.
#[derive(Clone)]
pub struct NodeStore {
    store: Arc<dyn Store>,
    engine: Engine,
    heads: Option<Arc<HeadFile>>,
}

#[derive(Clone)]
enum Engine {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PgStore>),
}

impl NodeStore {
    /// The store, for the service.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Commits what is queued, signs the open audit tails and stops the writer; then writes the
    /// latest heads to the head file.
    pub async fn close(&self) {
        match &self.engine {
            Engine::Sqlite(s) => s.close(),
            Engine::Postgres(s) => s.close().await,
        }
        if let Some(h) = &self.heads {
            h.close();
        }
    }

    /// The head file this store's checkpoints go to (none when opened only to be read).
    pub fn heads(&self) -> Option<&Arc<HeadFile>> {
        self.heads.as_ref()
    }

    /// The engine's name, for logs.
    pub fn engine_name(&self) -> &'static str {
        match &self.engine {
            Engine::Sqlite(_) => "sqlite",
            Engine::Postgres(_) => "postgres",
        }
    }
}

impl std::ops::Deref for NodeStore {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        self.store.as_ref()
    }
}

/// Opens the store of a national system for reading and writing: the data directory's embedded
/// database, or its PostgreSQL schema, which must be migrated already (`openmvs migrate`). The
/// data directory holds the audit signing key either way, and the head file
/// ([`crate::heads::HEADS_FILE`]) where every checkpoint this process signs is kept.
pub fn open(
    data_dir: &Path,
    storage: &Storage,
    clock: Arc<dyn Clock>,
    on_group: Option<Arc<dyn Fn(usize) + Send + Sync>>,
) -> anyhow::Result<NodeStore> {
    let heads = Arc::new(HeadFile::start(data_dir)?);
    let checkpoints = CheckpointOptions { on_checkpoint: Some(heads.sink()), ..CheckpointOptions::default() };
    open_with(data_dir, storage, clock, on_group, checkpoints, Some(heads))
}

/// Opens the store of a national system to read its trail: nothing this process might sign goes
/// to the head file, which it leaves as it is.
pub fn open_to_read(data_dir: &Path, storage: &Storage, clock: Arc<dyn Clock>) -> anyhow::Result<NodeStore> {
    open_with(data_dir, storage, clock, None, CheckpointOptions::default(), None)
}

fn open_with(
    data_dir: &Path,
    storage: &Storage,
    clock: Arc<dyn Clock>,
    on_group: Option<Arc<dyn Fn(usize) + Send + Sync>>,
    checkpoints: CheckpointOptions,
    heads: Option<Arc<HeadFile>>,
) -> anyhow::Result<NodeStore> {
    match storage {
        Storage::Sqlite => {
            let s = open_sqlite(data_dir, clock, on_group, checkpoints)?;
            Ok(NodeStore { store: s.clone(), engine: Engine::Sqlite(s), heads })
        }
        Storage::Postgres { url, schema, pool, commit_timeout } => {
            let key = audit_key(data_dir)?;
            let s = Arc::new(
                PgStore::open(PgOptions {
                    url: url.clone(),
                    schema: Some(schema.clone()),
                    signing_key: key,
                    clock,
                    on_group,
                    migrate: false,
                    pool_size: *pool,
                    commit_timeout: *commit_timeout,
                    checkpoints,
                })
                .with_context(|| {
                    format!("opening PostgreSQL schema {schema} at {}", crate::redact_url(url))
                })?,
            );
            Ok(NodeStore { store: s.clone(), engine: Engine::Postgres(s), heads })
        }
    }
}

/// Opens the embedded store of a data directory for reading and writing, with no head file: for
/// `openmvs migrate`, which writes no records.
pub fn open_store(
    data_dir: &Path,
    clock: Arc<dyn Clock>,
    on_group: Option<Arc<dyn Fn(usize) + Send + Sync>>,
) -> anyhow::Result<Arc<SqliteStore>> {
    open_sqlite(data_dir, clock, on_group, CheckpointOptions::default())
}

fn open_sqlite(
    data_dir: &Path,
    clock: Arc<dyn Clock>,
    on_group: Option<Arc<dyn Fn(usize) + Send + Sync>>,
    checkpoints: CheckpointOptions,
) -> anyhow::Result<Arc<SqliteStore>> {
    let key = audit_key(data_dir)?;
    let store = SqliteStore::open(Options {
        path: db_path(data_dir),
        signer: Arc::new(AuditSigner { key }),
        clock,
        on_group,
        checkpoints,
    })
    .with_context(|| {
        format!("opening {}{}", db_path(data_dir).display(), crate::open_failure_hint(data_dir))
    })?;
    Ok(Arc::new(store))
}
