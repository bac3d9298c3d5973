//! The group commit every engine's writer runs: one writer owns the write connection, takes every
//! queued unit of work, applies each in a savepoint of its own (a refused unit is undone alone and
//! the rest of the group still commits), seals the audit records of the units that applied, signs
//! the tails that are due, commits once, and only then answers each waiter.
//!
//! One design seals the audit trail on every engine: after the group's units, on a copy of the
//! chain heads ([`Chains`]), under the trail's lock ([`Engine::lock_trail`]). A refused unit has
//! no record to seal, so no head ever advances for it; the copy is kept only once the transaction
//! has committed, and after a failed group the heads are read back from the database. An engine
//! whose trail other writers share (several nodes on one database) says so at every lock, and the
//! heads of the markets the group touches are read under the lock.
//!
//! An engine supplies its SQL through [`Engine`]; the bookkeeping (grouping, savepoints, answers,
//! sealing, signing, metrics) is written here once. The loop is written as `async`: an engine
//! whose calls block (SQLite) returns ready futures and drives it with [`block_on`] on a thread
//! of its own.

use std::collections::BTreeSet;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use openmvs_audit::{Chains, Checkpoint, Entry, Sealed, Tail};
use openmvs_core::time::Clock;
use tokio::sync::oneshot;

use crate::hub::{HubCommitted, HubUnitOfWork};
use crate::{CheckpointOptions, CheckpointTimer, Committed, Conflict, StoreError, StoreResult, UnitOfWork};

/// The most units of work committed in one transaction.
pub const MAX_GROUP: usize = 1024;

/// A kind of unit of work a writer commits: what committing it reports, and how it is answered
/// when it lost a lock wait.
pub trait Unit: Send + Sync + 'static {
    /// What a commit of the unit reports back.
    type Done: Send + 'static;
    /// The audit entries the unit appends, sealed after every unit of its group has run.
    fn audit(&self) -> &[Entry];
    /// Records the sequence number the unit's next audit entry got.
    fn sealed(done: &mut Self::Done, seq: u64);
    /// How a unit whose statement lost a lock wait (another writer held the row, a deadlock was
    /// broken) is answered, so that the caller reads and decides again where it can.
    fn contended(&self) -> StoreError;
}

impl Unit for UnitOfWork {
    type Done = Committed;

    fn audit(&self) -> &[Entry] {
        &self.audit
    }

    fn sealed(done: &mut Committed, seq: u64) {
        done.audit_seqs.push(seq);
    }

    /// A conflict on its pack, so the caller reads and decides again, as after any other race.
    fn contended(&self) -> StoreError {
        match self.packs.first() {
            Some(p) => StoreError::Conflict(Conflict::PackVersion {
                product_code: p.product_code.clone(),
                serial: p.serial.clone(),
            }),
            None => StoreError::Unavailable("the unit of work waited too long for a lock; try again".into()),
        }
    }
}

impl Unit for HubUnitOfWork {
    type Done = HubCommitted;

    fn audit(&self) -> &[Entry] {
        &self.audit
    }

    fn sealed(done: &mut HubCommitted, seq: u64) {
        done.audit_seqs.push(seq);
    }

    /// `Exists`, on which the hub's services read again and decide again (a serial digest another
    /// node was inserting, a product created meanwhile), except for a unit that forwards an alert,
    /// where `Exists` means the alert was stored before: that one is unavailable, so that no alert
    /// is taken as stored when it was not.
    fn contended(&self) -> StoreError {
        if self.alerts.is_empty() {
            StoreError::Conflict(Conflict::Exists("a concurrent write of the same rows".into()))
        } else {
            StoreError::Unavailable("the unit of work waited too long for a lock; try again".into())
        }
    }
}

/// Why a unit stopped; the unit alone is undone and answered with it.
#[derive(Debug)]
pub enum Refusal {
    /// Refused by the store's rules (a conflict), a record that cannot be stored, or a statement
    /// that failed.
    Error(StoreError),
    /// A statement lost a lock wait: answered as [`Unit::contended`].
    Contended,
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Refusal {
        Refusal::Error(e)
    }
}

impl Refusal {
    /// The answer to the unit.
    pub fn answer<U: Unit>(self, unit: &U) -> StoreError {
        match self {
            Refusal::Error(e) => e,
            Refusal::Contended => unit.contended(),
        }
    }
}

/// The conflict rule of statements that insert or update with a guard (`ON CONFLICT DO NOTHING`,
/// `WHERE version = ?`): no row changed means another write came first, and the unit is refused
/// with `conflict`.
pub fn changed(rows: u64, conflict: impl FnOnce() -> Conflict) -> StoreResult<()> {
    if rows == 0 { Err(StoreError::Conflict(conflict())) } else { Ok(()) }
}

/// Where a committed unit's answer goes.
pub type Reply<U> = oneshot::Sender<StoreResult<<U as Unit>::Done>>;

/// Where the answer of an engine's own small write goes.
pub type ExecReply = oneshot::Sender<StoreResult<()>>;

/// Work for a writer.
pub enum Job<U: Unit, X = std::convert::Infallible> {
    /// Commit a unit of work and answer when durable.
    Commit(Box<U>, Reply<U>),
    /// Run a small write of the engine's own (outbox bookkeeping, clients, keys) in the next group.
    Exec(X, ExecReply),
    /// Sign checkpoints for every unsigned record, then stop, and call this.
    Stop(Stopped),
    /// Look for due tails as the timer does when it fires (after the group it came with), then
    /// answer: what a [`CheckpointTimer::Ticked`] sends.
    Tick(oneshot::Sender<()>),
}

/// Attaches a writer to the ticker of `checkpoints`, if its timer is one: each tick queues a
/// [`Job::Tick`] with `send`, which says whether the writer is still there. A tick that finds the
/// queue full is answered at once: the work queued signs what is due.
pub fn attach_ticks<U: Unit, X: 'static>(
    checkpoints: &CheckpointOptions,
    send: impl Fn(Job<U, X>) -> bool + Send + Sync + 'static,
) {
    if let CheckpointTimer::Ticked(ticker) = &checkpoints.timer {
        ticker.attach(Box::new(move || {
            let (tx, rx) = oneshot::channel();
            send(Job::Tick(tx)).then(|| -> crate::BoxFuture<'static, ()> {
                Box::pin(async move {
                    let _ = rx.await;
                })
            })
        }));
    }
}

/// What an engine supplies to the writer: its transaction, its savepoints, its SQL.
///
/// Every call happens on the writer's own connection, in the order the writer makes them. An
/// error of any call but [`Engine::apply`] and [`Engine::exec`] fails the whole group.
pub trait Engine<U: Unit>: Send {
    /// The engine's own small writes ([`Job::Exec`]).
    type Exec: Send;
    /// Called before every transaction (an engine may open its connection again).
    fn before_group(&mut self) {}
    /// Opens the group's transaction, taking the database's write lock if it has one.
    fn begin(&mut self) -> impl Future<Output = StoreResult<()>> + Send;
    /// Opens the next unit's savepoint.
    fn savepoint(&mut self) -> impl Future<Output = StoreResult<()>> + Send;
    /// Keeps what the unit wrote.
    fn release(&mut self) -> impl Future<Output = StoreResult<()>> + Send;
    /// Undoes what the unit wrote.
    fn rollback_to(&mut self) -> impl Future<Output = StoreResult<()>> + Send;
    /// Applies a unit, its audit entries excepted, inside its savepoint. The outer error fails
    /// the group; the inner one the unit alone.
    fn apply(
        &mut self,
        unit: &U,
        now: i64,
    ) -> impl Future<Output = StoreResult<Result<U::Done, Refusal>>> + Send;
    /// Runs one of the engine's own small writes inside its savepoint.
    fn exec(&mut self, work: Self::Exec) -> impl Future<Output = StoreResult<()>> + Send;
    /// Takes the audit trail's lock for `records` new records, held until the transaction ends;
    /// true when the chain heads the writer keeps may be stale (another writer may have appended
    /// since this one's last commit), which makes it read them back.
    fn lock_trail(&mut self, records: usize) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Reads chain heads back from the database: of at least `markets`, or, for `None`, of at
    /// least every market with an unsigned tail.
    fn load_tails(
        &mut self,
        markets: Option<&[String]>,
    ) -> impl Future<Output = StoreResult<Vec<Tail>>> + Send;
    /// Stores sealed records, in order.
    fn append_audit(&mut self, records: &[Sealed]) -> impl Future<Output = StoreResult<()>> + Send;
    /// Stores a signed checkpoint.
    fn store_checkpoint(&mut self, cp: &Checkpoint) -> impl Future<Output = StoreResult<()>> + Send;
    /// Stores the heads that moved, for an engine that keeps them apart from the records.
    fn store_tails(&mut self, tails: &[Tail]) -> impl Future<Output = StoreResult<()>> + Send {
        let _ = tails;
        std::future::ready(Ok(()))
    }
    /// Commits the transaction durably.
    fn commit(&mut self) -> impl Future<Output = StoreResult<()>> + Send;
    /// Rolls the transaction back after a failure.
    fn rollback(&mut self) -> impl Future<Output = ()> + Send;
    /// Told when a transaction failed.
    fn failed(&mut self) {}
    /// Called after every group, committed or not.
    fn after_group(&mut self) {}
    /// Whether a tail the writer does not know of (another writer's) is due, when the writer
    /// looks for due tails while no work comes; `all` when it stops.
    fn tails_due(
        &mut self,
        all: bool,
        now: i64,
        cp: &CheckpointOptions,
    ) -> impl Future<Output = StoreResult<bool>> + Send {
        let _ = (all, now, cp);
        std::future::ready(Ok(false))
    }
    /// How long the writer waits for work before it looks for due tails, given when the first
    /// tail it knows of falls due (`None`: none is unsigned) and the signing interval.
    fn idle_wait(&self, known: Option<Duration>, every: Duration) -> Option<Duration> {
        let _ = every;
        known
    }
    /// Called once the writer has stopped.
    fn finish(&mut self) {}
}

/// Told once a writer has stopped.
pub type Stopped = Box<dyn FnOnce() + Send>;

/// What a writer's queue gave.
pub enum Recv<J> {
    /// A job.
    Job(J),
    /// Nothing within the wait (or, for [`Queue::try_recv`], nothing queued).
    Empty,
    /// Every sender is gone.
    Closed,
}

/// A writer's queue of jobs.
pub trait Queue<J>: Send {
    /// The next job, waiting at most `wait` (for ever when `None`).
    fn recv(&mut self, wait: Option<Duration>) -> impl Future<Output = Recv<J>> + Send;
    /// The next job if one is queued.
    fn try_recv(&mut self) -> Recv<J>;
}

/// A blocking queue, for a writer on a thread of its own ([`block_on`]).
impl<J: Send> Queue<J> for std::sync::mpsc::Receiver<J> {
    fn recv(&mut self, wait: Option<Duration>) -> impl Future<Output = Recv<J>> + Send {
        use std::sync::mpsc::RecvTimeoutError;
        let r = match wait {
            None => std::sync::mpsc::Receiver::recv(self).map_err(|_| RecvTimeoutError::Disconnected),
            Some(w) => self.recv_timeout(w),
        };
        std::future::ready(match r {
            Ok(j) => Recv::Job(j),
            Err(RecvTimeoutError::Timeout) => Recv::Empty,
            Err(RecvTimeoutError::Disconnected) => Recv::Closed,
        })
    }

    fn try_recv(&mut self) -> Recv<J> {
        match std::sync::mpsc::Receiver::try_recv(self) {
            Ok(j) => Recv::Job(j),
            Err(std::sync::mpsc::TryRecvError::Empty) => Recv::Empty,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Recv::Closed,
        }
    }
}

impl<J: Send> Queue<J> for tokio::sync::mpsc::Receiver<J> {
    async fn recv(&mut self, wait: Option<Duration>) -> Recv<J> {
        let next = match wait {
            None => tokio::sync::mpsc::Receiver::recv(self).await,
            Some(w) => match tokio::time::timeout(w, tokio::sync::mpsc::Receiver::recv(self)).await {
                Ok(j) => j,
                Err(_) => return Recv::Empty,
            },
        };
        next.map_or(Recv::Closed, Recv::Job)
    }

    fn try_recv(&mut self) -> Recv<J> {
        match tokio::sync::mpsc::Receiver::try_recv(self) {
            Ok(j) => Recv::Job(j),
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => Recv::Empty,
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => Recv::Closed,
        }
    }
}

/// Runs a future to its end on this thread, parking it while the future waits.
pub fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// What a transaction sealed and signed, kept once it has committed.
struct Sealing {
    chains: Chains,
    signed: Vec<Checkpoint>,
    seqs: Vec<u64>,
    reloaded: bool,
}

/// The writer: an engine, the chain heads it keeps between groups, and what signs checkpoints.
pub struct Writer<U: Unit, E: Engine<U>> {
    /// The engine.
    pub engine: E,
    key: SigningKey,
    clock: Arc<dyn Clock>,
    on_group: Option<Arc<dyn Fn(usize) + Send + Sync>>,
    checkpoints: CheckpointOptions,
    chains: Chains,
    /// The heads kept may be stale (at start, after a failed transaction): read them back at the
    /// next lock of the trail.
    reload: bool,
    // The writer commits units of one kind; `fn(U)` keeps it `Send` whatever `U` is.
    unit: PhantomData<fn(U)>,
}

type Commits<U> = Vec<(Box<U>, Reply<U>)>;
type Execs<U, E> = Vec<(<E as Engine<U>>::Exec, ExecReply)>;

impl<U: Unit, E: Engine<U>> Writer<U, E> {
    /// A writer over `engine`; `on_group` hears the size of every group.
    pub fn new(
        engine: E,
        key: SigningKey,
        clock: Arc<dyn Clock>,
        on_group: Option<Arc<dyn Fn(usize) + Send + Sync>>,
        checkpoints: CheckpointOptions,
    ) -> Writer<U, E> {
        Writer {
            engine,
            key,
            clock,
            on_group,
            checkpoints,
            chains: Chains::default(),
            reload: true,
            unit: PhantomData,
        }
    }

    /// Reads the chain heads of every market the engine reports (outside any transaction), so that
    /// tails left unsigned by an earlier run are signed on time.
    pub async fn load(&mut self) -> StoreResult<()> {
        let tails = self.engine.load_tails(None).await?;
        let markets: Vec<String> = tails.iter().map(|t| t.head.market.clone()).collect();
        self.chains.reload(markets.iter().map(String::as_str), tails);
        self.reload = false;
        Ok(())
    }

    /// Runs until the queue closes or a [`Job::Stop`] arrives; then signs every unsigned tail.
    pub async fn run<Q: Queue<Job<U, E::Exec>>>(mut self, mut queue: Q) {
        let mut stop = None;
        let mut retry_at: Option<Instant> = None;
        let mut closed = false;
        let mut last_ticks = Vec::new();
        while stop.is_none() && !closed {
            let wait = match self.checkpoints.timer {
                CheckpointTimer::Monotonic => {
                    let now = self.clock.now().unix_millis();
                    let known = self.chains.next_due(&self.checkpoints.policy(), now);
                    // After a failed attempt (a full disk) the next waits one interval, not none.
                    let retry =
                        retry_at.map_or(Duration::ZERO, |t| t.saturating_duration_since(Instant::now()));
                    self.engine.idle_wait(known, self.checkpoints.every).map(|w| w.max(retry))
                }
                // Woken by ticks alone, which come as jobs.
                CheckpointTimer::Ticked(_) => None,
            };
            let first = match queue.recv(wait).await {
                Recv::Job(job) => job,
                Recv::Empty => {
                    // No commit came to sign the due tails: they are signed on their own.
                    retry_at = self.timer_fired().await;
                    continue;
                }
                Recv::Closed => break,
            };
            let mut jobs = vec![first];
            while jobs.len() < MAX_GROUP {
                match queue.try_recv() {
                    Recv::Job(job) => jobs.push(job),
                    Recv::Empty => break,
                    Recv::Closed => {
                        closed = true;
                        break;
                    }
                }
            }
            // Everything queued before a stop is committed; nothing after it is accepted.
            let (mut commits, mut execs, mut ticks) = (Vec::new(), Vec::new(), Vec::new());
            for job in jobs {
                let shutting = || StoreError::Unavailable("store is shutting down".into());
                match job {
                    Job::Stop(tx) => stop = Some(tx),
                    Job::Tick(tx) => ticks.push(tx),
                    Job::Commit(u, reply) if stop.is_none() => commits.push((u, reply)),
                    Job::Exec(x, reply) if stop.is_none() => execs.push((x, reply)),
                    Job::Commit(_, reply) => {
                        let _ = reply.send(Err(shutting()));
                    }
                    Job::Exec(_, reply) => {
                        let _ = reply.send(Err(shutting()));
                    }
                }
            }
            if !(commits.is_empty() && execs.is_empty()) {
                self.commit_group(commits, execs).await;
            }
            if stop.is_some() {
                // Answered once every tail is signed, as the writer ends.
                last_ticks = ticks;
            } else if !ticks.is_empty() {
                retry_at = self.timer_fired().await;
                for tx in ticks {
                    let _ = tx.send(());
                }
            }
        }
        if let Err(e) = self.sign_alone(true).await {
            tracing::error!(error = %e, "signing the final audit checkpoints failed");
        }
        for tx in last_ticks {
            let _ = tx.send(());
        }
        self.engine.finish();
        if let Some(stopped) = stop {
            stopped();
        }
    }

    /// What the timer does when it fires: signs the tails due that no commit came to sign. When
    /// that fails (a full disk), when to try again.
    async fn timer_fired(&mut self) -> Option<Instant> {
        match self.sign_alone(false).await {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(error = %e, "signing due audit checkpoints failed; trying again later");
                Some(Instant::now() + self.checkpoints.every)
            }
        }
    }

    /// Commits one group and answers each of its jobs once it is durable (or failed, with
    /// nothing of it written).
    pub async fn commit_group(&mut self, commits: Commits<U>, execs: Execs<U, E>) {
        self.engine.before_group();
        if let Some(f) = &self.on_group {
            f(commits.len() + execs.len());
        }
        let now = self.clock.now().unix_millis();
        let (work, exec_replies): (Vec<_>, Vec<_>) = execs.into_iter().unzip();
        match self.transaction(&commits, work, now).await {
            Ok((results, exec_results, sealing)) => {
                self.adopt(sealing);
                // Each answer reaches the caller whose unit it belongs to.
                for ((_, reply), r) in commits.into_iter().zip(results) {
                    let _ = reply.send(r);
                }
                for (reply, r) in exec_replies.into_iter().zip(exec_results) {
                    let _ = reply.send(r);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "group commit failed; nothing of it was written");
                self.abandon().await;
                let e = match e {
                    StoreError::Conflict(_) => StoreError::Unavailable("group commit failed".into()),
                    e => e,
                };
                for (_, reply) in commits {
                    let _ = reply.send(Err(e.clone()));
                }
                for reply in exec_replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
        self.engine.after_group();
    }

    #[allow(clippy::type_complexity)]
    async fn transaction(
        &mut self,
        commits: &Commits<U>,
        work: Vec<E::Exec>,
        now: i64,
    ) -> StoreResult<(Vec<StoreResult<U::Done>>, Vec<StoreResult<()>>, Sealing)> {
        self.engine.begin().await?;
        let mut results = Vec::with_capacity(commits.len());
        for (u, _) in commits {
            self.engine.savepoint().await?;
            match self.engine.apply(u, now).await? {
                Ok(done) => {
                    self.engine.release().await?;
                    results.push(Ok(done));
                }
                Err(refusal) => {
                    self.engine.rollback_to().await?;
                    results.push(Err(refusal.answer(&**u)));
                }
            }
        }
        // The engine's own writes run after the units of work, in the same transaction.
        let mut exec_results = Vec::with_capacity(work.len());
        for x in work {
            self.engine.savepoint().await?;
            let r = self.engine.exec(x).await;
            if r.is_ok() {
                self.engine.release().await?;
            } else {
                self.engine.rollback_to().await?;
            }
            exec_results.push(r);
        }
        // The audit records of the units that applied, sealed in order.
        let entries: Vec<(usize, &Entry)> = commits
            .iter()
            .enumerate()
            .filter(|(i, _)| results[*i].is_ok())
            .flat_map(|(i, (u, _))| u.audit().iter().map(move |e| (i, e)))
            .collect();
        let mut sealing = self.seal(&entries, now, false, false).await?;
        for ((i, _), seq) in entries.iter().zip(std::mem::take(&mut sealing.seqs)) {
            if let Ok(done) = &mut results[*i] {
                U::sealed(done, seq);
            }
        }
        self.engine.commit().await?;
        Ok((results, exec_results, sealing))
    }

    /// Seals `entries` on a copy of the chain heads and signs the due tails (every unsigned one
    /// when `all`), on the open transaction. `alone`: no group, only signing, so the trail is
    /// locked and read back whatever the heads kept say.
    async fn seal(
        &mut self,
        entries: &[(usize, &Entry)],
        now: i64,
        all: bool,
        alone: bool,
    ) -> StoreResult<Sealing> {
        let policy = self.checkpoints.policy();
        let mut chains = self.chains.clone();
        let touched: BTreeSet<String> = entries.iter().map(|(_, e)| e.market.clone()).collect();
        let known_due = chains.due(&policy, now, all);
        let mut sealing =
            Sealing { chains: Chains::default(), signed: Vec::new(), seqs: Vec::new(), reloaded: false };
        if entries.is_empty() && known_due.is_empty() && !alone {
            sealing.chains = chains;
            return Ok(sealing);
        }
        // The markets whose heads are current in this transaction; `None`: all of them.
        let mut scope: Option<BTreeSet<String>> = None;
        if self.engine.lock_trail(entries.len()).await? || self.reload {
            let wanted: Option<Vec<String>> =
                (!alone).then(|| touched.iter().cloned().chain(known_due.iter().cloned()).collect());
            let tails = self.engine.load_tails(wanted.as_deref()).await?;
            // A market asked for, or thought due, that was not read back has no record (or, read
            // back as `None`, no unsigned one: another writer signed it): what was kept of it goes.
            let mut fresh: BTreeSet<String> = tails.iter().map(|t| t.head.market.clone()).collect();
            fresh.extend(touched.iter().chain(&known_due).cloned());
            chains.reload(fresh.iter().map(String::as_str), tails);
            sealing.reloaded = true;
            scope = Some(fresh);
        }
        let mut records: Vec<Sealed> = Vec::with_capacity(entries.len());
        for (_, e) in entries {
            records.push(chains.seal(e).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        }
        if !records.is_empty() {
            self.engine.append_audit(&records).await?;
        }
        let due: Vec<String> = chains
            .due(&policy, now, all)
            .into_iter()
            .filter(|m| scope.as_ref().is_none_or(|s| s.contains(m)))
            .collect();
        sealing.signed = chains.sign(&due, now, &self.key);
        for cp in &sealing.signed {
            self.engine.store_checkpoint(cp).await?;
        }
        let moved: BTreeSet<&String> = touched.iter().chain(due.iter()).collect();
        let tails: Vec<Tail> = moved.into_iter().filter_map(|m| chains.get(m).cloned()).collect();
        if !tails.is_empty() {
            self.engine.store_tails(&tails).await?;
        }
        sealing.seqs = records.iter().map(|r| r.seq).collect();
        sealing.chains = chains;
        Ok(sealing)
    }

    /// Keeps what a committed transaction sealed and signed, and tells the sink of its checkpoints.
    fn adopt(&mut self, sealing: Sealing) {
        self.chains = sealing.chains;
        if sealing.reloaded {
            self.reload = false;
        }
        self.checkpoints.committed(&sealing.signed);
    }

    /// After a failed transaction: rolled back, and the heads read back from the database (or,
    /// if that fails too, at the next lock of the trail).
    async fn abandon(&mut self) {
        self.engine.rollback().await;
        self.engine.failed();
        if let Err(e) = self.load().await {
            tracing::debug!(error = %e, "reading the chain heads back failed; read at the next group");
            self.reload = true;
        }
    }

    /// Signs, in a transaction of its own, every tail due (every unsigned one when `all`), then
    /// tells the sink.
    pub async fn sign_alone(&mut self, all: bool) -> StoreResult<()> {
        let now = self.clock.now().unix_millis();
        let known = !self.chains.due(&self.checkpoints.policy(), now, all).is_empty();
        if !known && !self.engine.tails_due(all, now, &self.checkpoints).await? {
            return Ok(());
        }
        self.engine.before_group();
        let r = async {
            self.engine.begin().await?;
            let sealing = self.seal(&[], now, all, true).await?;
            self.engine.commit().await?;
            Ok(sealing)
        }
        .await;
        match r {
            Ok(sealing) => {
                self.adopt(sealing);
                Ok(())
            }
            Err(e) => {
                self.abandon().await;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use openmvs_audit::{ChainHead, Verifier};
    use openmvs_core::time::Timestamp;

    use super::*;

    struct TestUnit {
        refuse: bool,
        audit: Vec<Entry>,
    }

    impl Unit for TestUnit {
        type Done = Vec<u64>;
        fn audit(&self) -> &[Entry] {
            &self.audit
        }
        fn sealed(done: &mut Vec<u64>, seq: u64) {
            done.push(seq);
        }
        fn contended(&self) -> StoreError {
            StoreError::Unavailable("contended".into())
        }
    }

    /// A database in memory: what a transaction writes is kept only when it commits.
    #[derive(Default)]
    struct Fake {
        records: Vec<Sealed>,
        checkpoints: Vec<Checkpoint>,
        open: (Vec<Sealed>, Vec<Checkpoint>),
        fail_commit: bool,
        loads: usize,
    }

    impl Engine<TestUnit> for Fake {
        type Exec = Infallible;
        async fn begin(&mut self) -> StoreResult<()> {
            self.open = Default::default();
            Ok(())
        }
        async fn savepoint(&mut self) -> StoreResult<()> {
            Ok(())
        }
        async fn release(&mut self) -> StoreResult<()> {
            Ok(())
        }
        async fn rollback_to(&mut self) -> StoreResult<()> {
            Ok(())
        }
        async fn apply(&mut self, unit: &TestUnit, _now: i64) -> StoreResult<Result<Vec<u64>, Refusal>> {
            Ok(if unit.refuse {
                Err(StoreError::Conflict(Conflict::AlertStatus).into())
            } else {
                Ok(Vec::new())
            })
        }
        async fn exec(&mut self, work: Infallible) -> StoreResult<()> {
            match work {}
        }
        async fn lock_trail(&mut self, _records: usize) -> StoreResult<bool> {
            Ok(false)
        }
        async fn load_tails(&mut self, _markets: Option<&[String]>) -> StoreResult<Vec<Tail>> {
            self.loads += 1;
            let mut chains = Chains::default();
            let tails =
                self.records.iter().map(|r| Tail { head: ChainHead::after(r), signed_seq: 0, signed_at: 0 });
            let markets: Vec<String> = self.records.iter().map(|r| r.entry.market.clone()).collect();
            chains.reload(markets.iter().map(String::as_str), tails.collect());
            Ok(chains.tails().cloned().collect())
        }
        async fn append_audit(&mut self, records: &[Sealed]) -> StoreResult<()> {
            self.open.0.extend_from_slice(records);
            Ok(())
        }
        async fn store_checkpoint(&mut self, cp: &Checkpoint) -> StoreResult<()> {
            self.open.1.push(cp.clone());
            Ok(())
        }
        async fn commit(&mut self) -> StoreResult<()> {
            if std::mem::take(&mut self.fail_commit) {
                return Err(StoreError::Unavailable("disk full".into()));
            }
            let (records, checkpoints) = std::mem::take(&mut self.open);
            self.records.extend(records);
            self.checkpoints.extend(checkpoints);
            Ok(())
        }
        async fn rollback(&mut self) {
            self.open = Default::default();
        }
    }

    struct Epoch;
    impl Clock for Epoch {
        fn now(&self) -> Timestamp {
            Timestamp::from_unix_millis(0)
        }
    }

    fn writer() -> Writer<TestUnit, Fake> {
        let options = CheckpointOptions { every_records: 3, ..CheckpointOptions::default() };
        Writer::new(Fake::default(), SigningKey::from_bytes(&[9; 32]), Arc::new(Epoch), None, options)
    }

    /// Commits one group of units; the answers, in order.
    fn group(w: &mut Writer<TestUnit, Fake>, units: Vec<TestUnit>) -> Vec<StoreResult<Vec<u64>>> {
        let mut answers = Vec::new();
        let commits = units
            .into_iter()
            .map(|u| {
                let (tx, rx) = oneshot::channel();
                answers.push(rx);
                (Box::new(u), tx)
            })
            .collect();
        block_on(w.commit_group(commits, Vec::new()));
        answers.into_iter().map(|mut rx| rx.try_recv().expect("answered")).collect()
    }

    fn unit(markets: &[&str]) -> TestUnit {
        let audit = markets.iter().map(|m| Entry { market: (*m).into(), ..Entry::default() }).collect();
        TestUnit { refuse: false, audit }
    }

    #[test]
    fn a_refused_unit_seals_nothing_and_the_others_commit() {
        let mut w = writer();
        let answers = group(
            &mut w,
            vec![unit(&["DE"]), TestUnit { refuse: true, ..unit(&["DE"]) }, unit(&["DE", "FR"])],
        );
        assert_eq!(answers[0].as_ref().unwrap(), &[1]);
        assert_eq!(answers[1], Err(StoreError::Conflict(Conflict::AlertStatus)));
        assert_eq!(answers[2].as_ref().unwrap(), &[2, 1]);
        assert_eq!(w.chains.get("DE").unwrap().head.seq, 2);
    }

    #[test]
    fn a_failed_commit_moves_no_head_and_the_heads_are_read_back() {
        let mut w = writer();
        group(&mut w, vec![unit(&["DE"])]);
        let loads = w.engine.loads;
        w.engine.fail_commit = true;
        let answers = group(&mut w, vec![unit(&["DE"]), unit(&["DE"])]);
        assert!(answers.iter().all(|a| matches!(a, Err(StoreError::Unavailable(_)))), "{answers:?}");
        assert_eq!(w.chains.get("DE").unwrap().head.seq, 1, "the heads did not move");
        let answers = group(&mut w, vec![unit(&["DE"]), unit(&["DE"])]);
        assert_eq!(w.engine.loads, loads + 1, "read back after the failure");
        assert_eq!((answers[0].as_ref().unwrap(), answers[1].as_ref().unwrap()), (&vec![2], &vec![3]));
        // Three records: the count signs DE's tail in the group that reached it.
        let mut v = Verifier::new([SigningKey::from_bytes(&[9; 32]).verifying_key()]);
        for cp in &w.engine.checkpoints {
            v.checkpoint(cp).unwrap();
        }
        for r in &w.engine.records {
            v.record(r).unwrap();
        }
        v.finish().unwrap();
        assert_eq!(w.engine.checkpoints.iter().map(|c| c.seq).collect::<Vec<_>>(), [3]);
    }
}
