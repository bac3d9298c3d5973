//! The machinery both SQLite stores (national and hub) run on: the write connection owned by a
//! group-committing writer thread, a background checkpointer, and a pool of read-only connections.
//! Each store adds only its schema and its queries.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use openmvs_core::time::Clock;
use openmvs_store::{BoxFuture, StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::codec::sql_err;
use crate::writer::{AuditSigner, Job, Unit, Writer};
use crate::{MAX_IDLE_READERS, QUEUE_BOUND};

/// A running (or read-only) engine over one database file.
pub(crate) struct Engine<U: Unit> {
    path: PathBuf,
    tx: Mutex<Option<SyncSender<Job<U>>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    checkpointer: Mutex<Option<(Arc<AtomicBool>, JoinHandle<()>)>>,
    /// The read connections; the writer's generation in it closes those of an older one.
    readers: Arc<ReadPool>,
}

/// Idle read connections with the writer's generation each was opened in; the writer empties it
/// when it opens its own connection again.
pub(crate) type Readers = Arc<Mutex<Vec<(u64, Connection)>>>;

/// The checkpointer's connection, which the writer closes when it opens its own again.
pub(crate) type CheckpointConn = Arc<Mutex<Option<Connection>>>;

/// What starting the writer needs besides the migrated write connection.
pub(crate) struct Start {
    pub path: PathBuf,
    pub signer: Arc<AuditSigner>,
    pub clock: Arc<dyn Clock>,
    pub on_group: Option<Arc<dyn Fn(usize) + Send + Sync>>,
    pub checkpoints: openmvs_store::CheckpointOptions,
    /// Prefix of the thread names, e.g. `openmvs-sqlite` or `openmvs-hub`.
    pub name: &'static str,
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> StoreResult<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .map_err(|e| StoreError::Unavailable(format!("starting the thread {name}: {e}")))
}

/// Creates the parent directory of a database file and opens its write connection, configured.
pub(crate) fn open_write_connection(path: &Path) -> StoreResult<Connection> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
    }
    let conn = Connection::open(path).map_err(sql_err)?;
    crate::configure(&conn).map_err(sql_err)?;
    Ok(conn)
}

impl<U: Unit> Engine<U> {
    /// Starts the writer on `conn` (configured and migrated) and the checkpointer.
    pub(crate) fn start(conn: Connection, s: Start) -> StoreResult<Engine<U>> {
        let mut writer: Writer<U> = Writer::new(conn, s.signer, s.clock, s.on_group, s.checkpoints)?;
        let readers: Readers = Arc::new(Mutex::new(Vec::new()));
        let checkpoint_conn: CheckpointConn = Arc::new(Mutex::new(None));
        writer.share(readers.clone(), checkpoint_conn.clone());
        let generation = writer.generation();
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_BOUND);
        let handle = spawn(format!("{}-writer", s.name), move || writer.run(rx))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (p, st) = (s.path.clone(), stop.clone());
        let cp =
            spawn(format!("{}-checkpointer", s.name), move || crate::checkpointer(p, st, checkpoint_conn))?;
        Ok(Engine {
            path: s.path.clone(),
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            checkpointer: Mutex::new(Some((stop, cp))),
            readers: Arc::new(ReadPool { path: s.path, idle: readers, generation }),
        })
    }

    /// An engine that only reads an existing file: every write is refused as unavailable.
    pub(crate) fn read_only(path: &Path) -> StoreResult<Engine<U>> {
        if !path.exists() {
            return Err(StoreError::Unavailable(format!("{}: no such database", path.display())));
        }
        Ok(Engine {
            path: path.to_owned(),
            tx: Mutex::new(None),
            writer: Mutex::new(None),
            checkpointer: Mutex::new(None),
            readers: Arc::new(ReadPool {
                path: path.to_owned(),
                idle: Arc::new(Mutex::new(Vec::new())),
                generation: Arc::new(AtomicU64::new(0)),
            }),
        })
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Commits everything queued, signs the open audit tails, stops the writer and the
    /// checkpointer. Later writes are refused as unavailable.
    pub(crate) fn close(&self) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(tx) = tx {
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            if tx
                .send(Job::Stop(Box::new(move || {
                    let _ = done_tx.send(());
                })))
                .is_ok()
            {
                let _ = done_rx.recv();
            }
        }
        if let Some(h) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
        if let Some((stop, h)) = self.checkpointer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            stop.store(true, Ordering::SeqCst);
            let _ = h.join();
        }
        self.readers.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn send(&self, job: Job<U>) -> StoreResult<()> {
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = guard.as_ref() else {
            return Err(StoreError::Unavailable("store is closed".into()));
        };
        match tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(StoreError::Unavailable("write queue is full".into())),
            Err(TrySendError::Disconnected(_)) => Err(StoreError::Unavailable("writer has stopped".into())),
        }
    }

    /// Queues a unit of work; resolves once it is durable (or refused, with nothing written).
    pub(crate) fn commit(&self, uow: U) -> BoxFuture<'_, StoreResult<U::Done>> {
        let (tx, rx) = oneshot::channel();
        let sent = self.send(Job::Commit(Box::new(uow), tx));
        Box::pin(async move {
            sent?;
            rx.await.map_err(|_| StoreError::Unavailable("writer has stopped".into()))?
        })
    }

    /// Runs a small write on the writer thread, in its next group, and resolves with its answer.
    pub(crate) fn exec<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> BoxFuture<'static, StoreResult<T>> {
        let (tx, rx) = oneshot::channel();
        let (answer_tx, answer_rx) = oneshot::channel();
        let sent = self.send(Job::Exec(
            Box::new(move |c| {
                let v = f(c)?;
                let _ = answer_tx.send(v);
                Ok(())
            }),
            tx,
        ));
        Box::pin(async move {
            sent?;
            rx.await.map_err(|_| StoreError::Unavailable("writer has stopped".into()))??;
            answer_rx.await.map_err(|_| StoreError::Unavailable("writer has stopped".into()))
        })
    }

    /// Runs `f` on a pooled read-only connection on tokio's blocking pool, so that no async worker
    /// waits for the disk.
    pub(crate) fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> BoxFuture<'static, StoreResult<T>> {
        let readers = self.readers.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || readers.read(f))
                .await
                .map_err(|e| StoreError::Unavailable(format!("a read did not finish: {e}")))?
        })
    }

    /// Runs `f` in one read transaction, so that everything it reads comes from one snapshot.
    pub(crate) fn snapshot<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> BoxFuture<'static, StoreResult<T>> {
        self.read(|c| {
            c.prepare_cached("BEGIN").and_then(|mut s| s.execute([])).map_err(sql_err)?;
            let r = f(c);
            let end = c.prepare_cached("COMMIT").and_then(|mut s| s.execute([])).map_err(sql_err);
            let v = r?;
            end?;
            Ok(v)
        })
    }

    /// Runs `f` on a pooled read-only connection on this thread: for opening, outside any runtime.
    pub(crate) fn read_now<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        self.readers.read(f)
    }
}

/// The read-only connections of one database file, each with the writer's generation it was
/// opened in.
pub(crate) struct ReadPool {
    path: PathBuf,
    idle: Readers,
    generation: Arc<AtomicU64>,
}

impl ReadPool {
    /// Runs `f` on an idle connection (or a new one), on the calling thread.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let generation = self.generation.load(Ordering::SeqCst);
        let conn = {
            let mut pool = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            // Connections of an older generation are closed (see `Writer::reopen_if_needed`).
            pool.retain(|(g, _)| *g == generation);
            pool.pop().map(|(_, c)| c)
        };
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(sql_err)?;
                // A small page cache: a WAL reader drops it whenever a write committed since its
                // last read, and the cost of dropping grows with its size. No memory map: a file
                // that grows under constant writes makes every reader unmap and map it again at
                // the start of its next read, which costs more than reading the few pages of a
                // lookup from the operating system's cache.
                c.execute_batch(
                    "PRAGMA busy_timeout = 10000; PRAGMA cache_size = -1024; PRAGMA mmap_size = 0;",
                )
                .map_err(sql_err)?;
                c
            }
        };
        let r = f(&conn);
        let mut pool = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < MAX_IDLE_READERS && generation == self.generation.load(Ordering::SeqCst) {
            pool.push((generation, conn));
        }
        r
    }
}

impl<U: Unit> Drop for Engine<U> {
    fn drop(&mut self) {
        self.close();
    }
}
