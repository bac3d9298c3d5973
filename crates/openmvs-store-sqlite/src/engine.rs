//! The machinery both SQLite stores (national and hub) run on: the write connection owned by a
//! group-committing writer thread, a background checkpointer, and a few reader threads, each with
//! a read-only connection of its own. Each store adds only its schema and its queries.
//!
//! Reads run on the reader threads, not on the async runtime's workers (a read may wait for the
//! disk) and not on its blocking pool: a pool that starts a thread per concurrent read would run
//! dozens of threads (each with a connection and page cache) on a machine with two cores, and
//! handing each read to a sleeping thread costs a wake-up. A reader thread that finds more reads
//! queued when it finishes one goes on without sleeping, so under load a read costs a queue push
//! and the answer's wake-up.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use openmvs_core::time::Clock;
use openmvs_store::commit::attach_ticks;
use openmvs_store::{BoxFuture, StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::codec::sql_err;
use crate::writer::{AuditSigner, Job, Unit, Writer};
use crate::{MAX_IDLE_READERS, QUEUE_BOUND, reader_threads};

/// A running (or read-only) engine over one database file.
pub(crate) struct Engine<U: Unit> {
    path: PathBuf,
    /// The writer's queue; shared with the checkpoint ticker, if the options have one.
    tx: Arc<Mutex<Option<SyncSender<Job<U>>>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    checkpointer: Mutex<Option<(Arc<AtomicBool>, JoinHandle<()>)>>,
    /// The read connections; the writer's generation in it closes those of an older one.
    readers: Arc<ReadPool>,
}

/// The read connections, which the writer closes when it opens its own connection again.
pub(crate) type Readers = Arc<ReadPool>;

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
        let ticks = s.checkpoints.clone();
        let mut writer: Writer<U> = Writer::new(conn, s.signer, s.clock, s.on_group, s.checkpoints)?;
        let readers: Readers = Arc::new(ReadPool::start(s.name, s.path.clone(), writer.generation())?);
        let checkpoint_conn: CheckpointConn = Arc::new(Mutex::new(None));
        writer.share(readers.clone(), checkpoint_conn.clone());
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_BOUND);
        let handle = spawn(format!("{}-writer", s.name), move || writer.run(rx))?;
        let tx = Arc::new(Mutex::new(Some(tx)));
        let queue = Arc::downgrade(&tx);
        attach_ticks(&ticks, move |job| {
            let Some(queue) = queue.upgrade() else { return false };
            let queue = queue.lock().unwrap_or_else(|p| p.into_inner());
            // Closed: `None`; a full queue drops the tick, which is then answered at once.
            queue.as_ref().is_some_and(|tx| !matches!(tx.try_send(job), Err(TrySendError::Disconnected(_))))
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (p, st) = (s.path.clone(), stop.clone());
        let cp =
            spawn(format!("{}-checkpointer", s.name), move || crate::checkpointer(p, st, checkpoint_conn))?;
        Ok(Engine {
            path: s.path,
            tx,
            writer: Mutex::new(Some(handle)),
            checkpointer: Mutex::new(Some((stop, cp))),
            readers,
        })
    }

    /// An engine that only reads an existing file: every write is refused as unavailable.
    pub(crate) fn read_only(path: &Path) -> StoreResult<Engine<U>> {
        if !path.exists() {
            return Err(StoreError::Unavailable(format!("{}: no such database", path.display())));
        }
        Ok(Engine {
            path: path.to_owned(),
            tx: Arc::new(Mutex::new(None)),
            writer: Mutex::new(None),
            checkpointer: Mutex::new(None),
            readers: Arc::new(ReadPool::start(
                "openmvs-sqlite-ro",
                path.to_owned(),
                Arc::new(AtomicU64::new(0)),
            )?),
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
        // Reads go on after a close (an `admin` command reads what it wrote), each on a connection
        // opened for it; the reader threads end when the store is dropped.
        self.readers.keep.store(false, Ordering::SeqCst);
        self.readers.release();
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

    /// Runs `f` on one of the reader threads' connections, so that no async worker waits for the
    /// disk.
    pub(crate) fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> BoxFuture<'static, StoreResult<T>> {
        let (tx, rx) = oneshot::channel();
        let queued = self.readers.queue(Box::new(move |conn| {
            let _ = tx.send(conn.and_then(f));
        }));
        Box::pin(async move {
            queued?;
            rx.await.map_err(|_| StoreError::Unavailable("a read did not finish".into()))?
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
        self.readers.read_here(f)
    }
}

/// A read for a reader thread: it gets the thread's connection, or why there is none.
type ReadJob = Box<dyn FnOnce(StoreResult<&Connection>) + Send>;

/// The reads waiting for a reader thread.
#[derive(Default)]
struct ReadQueue {
    jobs: VecDeque<ReadJob>,
    /// Reader threads waiting for a read.
    idle: usize,
    /// Set when the engine closes: the threads finish what is queued and end.
    closed: bool,
    /// Grows at each [`ReadPool::release`]; each thread, once it has let go of a connection it
    /// may no longer keep, counts itself in `acked`.
    epoch: u64,
    acked: usize,
}

/// What the reader threads share with the engine.
struct ReadShared {
    path: PathBuf,
    /// The writer's generation: a connection opened in an older one is closed (see
    /// `Writer::reopen_if_needed`).
    generation: Arc<AtomicU64>,
    /// See [`ReadPool::keep`].
    keep: Arc<AtomicBool>,
    queue: Mutex<ReadQueue>,
    ready: Condvar,
    /// Signalled as threads count themselves in `acked`.
    acked: Condvar,
}

/// The reader threads of one database file, and the idle connections used on the calling thread
/// while the store opens.
pub(crate) struct ReadPool {
    shared: Arc<ReadShared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Idle connections for reads on the calling thread, each with the generation it was opened in.
    idle: Mutex<Vec<(u64, Connection)>>,
    /// Whether connections stay open between reads; not once the store is closed, so that a
    /// closed store holds no file open.
    keep: Arc<AtomicBool>,
}

/// Opens a read-only connection, configured for lookups.
fn open_read_connection(path: &Path) -> StoreResult<Connection> {
    let c =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(sql_err)?;
    // A small page cache: a WAL reader drops it whenever a write committed since its last read,
    // and the cost of dropping grows with its size. No memory map: a file that grows under
    // constant writes makes every reader unmap and map it again at the start of its next read,
    // which costs more than reading the few pages of a lookup from the operating system's cache.
    c.execute_batch("PRAGMA busy_timeout = 10000; PRAGMA cache_size = -1024; PRAGMA mmap_size = 0;")
        .map_err(sql_err)?;
    Ok(c)
}

impl ReadPool {
    /// Starts the reader threads (`name-reader-N`); each opens its connection at its first read.
    fn start(name: &str, path: PathBuf, generation: Arc<AtomicU64>) -> StoreResult<ReadPool> {
        let keep = Arc::new(AtomicBool::new(true));
        let shared = Arc::new(ReadShared {
            path,
            generation,
            keep: keep.clone(),
            queue: Mutex::new(ReadQueue::default()),
            ready: Condvar::new(),
            acked: Condvar::new(),
        });
        let pool = ReadPool { shared, threads: Mutex::new(Vec::new()), idle: Mutex::new(Vec::new()), keep };
        for i in 0..reader_threads() {
            let shared = pool.shared.clone();
            let t = spawn(format!("{name}-reader-{i}"), move || reader(&shared));
            match t {
                Ok(t) => pool.threads.lock().unwrap_or_else(|p| p.into_inner()).push(t),
                Err(e) => {
                    pool.stop();
                    return Err(e);
                }
            }
        }
        Ok(pool)
    }

    /// Queues a read for the reader threads; refused once the engine closed.
    fn queue(&self, job: ReadJob) -> StoreResult<()> {
        let mut q = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.closed {
            return Err(StoreError::Unavailable("store is closed".into()));
        }
        q.jobs.push_back(job);
        let wake = q.idle > 0;
        drop(q);
        if wake {
            self.shared.ready.notify_one();
        }
        Ok(())
    }

    /// Closes the idle connections and makes every reader thread close its own if it may no
    /// longer keep it (an older generation, or the store closed); returns once each thread has
    /// (a busy one after its read), so that the caller knows no such connection is open. Called by
    /// the writer once it has moved the generation on, and on close.
    pub(crate) fn release(&self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let threads = self.threads.lock().unwrap_or_else(|p| p.into_inner()).len();
        let mut q = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.epoch += 1;
        q.acked = 0;
        let epoch = q.epoch;
        self.shared.ready.notify_all();
        // Bounded, as a read may wait as long as SQLite's busy timeout.
        let (q, waited) = self
            .shared
            .acked
            .wait_timeout_while(q, std::time::Duration::from_secs(15), |q| {
                q.epoch == epoch && q.acked < threads && !q.closed
            })
            .unwrap_or_else(|p| p.into_inner());
        drop(q);
        if waited.timed_out() {
            tracing::warn!("a reader thread did not let go of its connection in time");
        }
    }

    /// Lets the reader threads finish what is queued, ends them and closes every connection.
    fn stop(&self) {
        self.shared.queue.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        self.shared.ready.notify_all();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        let me = std::thread::current().id();
        for t in threads {
            // A store dropped by a read's own answer is dropped on a reader thread: that thread
            // ends by itself once it returns.
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Runs `f` on an idle connection (or a new one), on the calling thread.
    fn read_here<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let generation = self.shared.generation.load(Ordering::SeqCst);
        let conn = {
            let mut pool = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            pool.retain(|(g, _)| *g == generation);
            pool.pop().map(|(_, c)| c)
        };
        let conn = match conn {
            Some(c) => c,
            None => open_read_connection(&self.shared.path)?,
        };
        let r = f(&conn);
        let mut pool = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < MAX_IDLE_READERS
            && generation == self.shared.generation.load(Ordering::SeqCst)
            && self.keep.load(Ordering::SeqCst)
        {
            pool.push((generation, conn));
        }
        r
    }
}

impl Drop for ReadPool {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A reader thread: takes queued reads one after the other, sleeping only when there are none,
/// on a connection of its own, opened when the thread starts and again when the writer's
/// generation moves on.
fn reader(shared: &ReadShared) {
    // Opened at once, while the process has files to spare: a node that later runs out of open
    // files still reads on every thread (a thread that could not open one tries again per read).
    let generation = shared.generation.load(Ordering::SeqCst);
    let mut conn: Option<(u64, Connection)> = if shared.keep.load(Ordering::SeqCst) {
        open_read_connection(&shared.path).ok().map(|c| (generation, c))
    } else {
        None
    };
    let mut seen = 0;
    loop {
        let job = {
            let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if q.epoch != seen {
                    // A release (see `ReadPool::release`): let go of a connection this thread may
                    // no longer keep, then say so.
                    if !shared.keep.load(Ordering::SeqCst)
                        || conn.as_ref().is_some_and(|(g, _)| *g != shared.generation.load(Ordering::SeqCst))
                    {
                        conn = None;
                    }
                    seen = q.epoch;
                    q.acked += 1;
                    shared.acked.notify_all();
                }
                if let Some(job) = q.jobs.pop_front() {
                    break job;
                }
                if q.closed {
                    return;
                }
                q.idle += 1;
                q = shared.ready.wait(q).unwrap_or_else(|p| p.into_inner());
                q.idle -= 1;
            }
        };
        let generation = shared.generation.load(Ordering::SeqCst);
        if conn.as_ref().is_some_and(|(g, _)| *g != generation) {
            conn = None;
        }
        if conn.is_none() {
            match open_read_connection(&shared.path) {
                Ok(c) => conn = Some((generation, c)),
                Err(e) => {
                    job(Err(e));
                    continue;
                }
            }
        }
        job(Ok(conn.as_ref().map(|(_, c)| c).expect("opened above")));
        if !shared.keep.load(Ordering::SeqCst) {
            conn = None;
        }
    }
}

impl<U: Unit> Drop for Engine<U> {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("openmvs-readers-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.sqlite");
        let c = Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (7);")
            .unwrap();
        path
    }

    fn count_threads(prefix: &str) -> usize {
        std::fs::read_dir("/proc/self/task")
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|t| {
                        std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    /// Far more reads at once than there are reader threads all answer, on that many threads, and
    /// the threads end with the pool.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_reads_at_once_share_the_few_reader_threads_which_end_with_the_pool() {
        let path = database("many");
        let pool = Arc::new(ReadPool::start("rdtest-many", path, Arc::new(AtomicU64::new(0))).unwrap());
        let reads: Vec<_> = (0..500)
            .map(|_| {
                let (tx, rx) = oneshot::channel();
                pool.queue(Box::new(move |c| {
                    let n = c.and_then(|c| {
                        c.query_row("SELECT n FROM t", [], |r| r.get::<_, i64>(0)).map_err(sql_err)
                    });
                    let _ = tx.send(n);
                }))
                .unwrap();
                rx
            })
            .collect();
        for r in reads {
            assert_eq!(r.await.unwrap().unwrap(), 7);
        }
        assert_eq!(count_threads("rdtest-many"), reader_threads());
        drop(pool);
        assert_eq!(count_threads("rdtest-many"), 0, "the reader threads ended");
    }

    /// Once the writer moves the generation on and releases the readers, no connection of the old
    /// generation is open: each idle thread has closed its own.
    #[test]
    fn a_new_generation_closes_every_reader_connection() {
        let path = database("generation");
        let generation = Arc::new(AtomicU64::new(0));
        let pool = ReadPool::start("rdtest-gen", path.clone(), generation.clone()).unwrap();
        let read = |pool: &ReadPool| {
            let (tx, rx) = std::sync::mpsc::channel();
            pool.queue(Box::new(move |c| {
                let _ = tx.send(c.map(|c| c.query_row("SELECT 1", [], |_| Ok(())).is_ok()));
            }))
            .unwrap();
            rx.recv().unwrap().unwrap()
        };
        for _ in 0..4 * reader_threads() {
            assert!(read(&pool));
        }
        let open_files = || {
            std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(Result::ok)
                .filter(|f| std::fs::read_link(f.path()).is_ok_and(|t| t == path))
                .count()
        };
        // A release in the same generation returns once every thread has started (and opened its
        // connection, which it keeps): a thread that started only after the generation moved on
        // would open a connection of the new generation, which may stay open.
        pool.release();
        assert_eq!(open_files(), reader_threads(), "the reader threads keep their connections between reads");
        generation.fetch_add(1, Ordering::SeqCst);
        pool.release();
        assert_eq!(open_files(), 0, "a release returns once every old connection is closed");
        assert!(read(&pool), "a read after the release opens a connection again");
    }
}
