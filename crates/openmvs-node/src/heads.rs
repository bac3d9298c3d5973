//! The latest signed head of each market's audit trail, kept outside the database:
//! `audit-heads.jsonl` in the data directory, rewritten atomically each time the store commits a
//! checkpoint, and what `openmvs audit verify` checks the trail against.
//!
//! Whoever can write the database can delete its newest records together with the checkpoints
//! that sign them, and the chain that is left still verifies. A copy of the latest checkpoint
//! in another file (and at the hub) is out of that reach: its record must still be there, with
//! the hash it signs. Both engines report each checkpoint to [`HeadFile::sink`] after its commit,
//! so the file never vouches for a record that is not durable; a separate thread writes it, so
//! the writer never waits for the file's fsync.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use anyhow::Context;
use openmvs_audit::Checkpoint;
use openmvs_core::time::Clock;
use openmvs_national::clock::SystemClock;
use openmvs_store::CheckpointSink;
use tokio::sync::watch;

/// The head file of a data directory.
pub const HEADS_FILE: &str = "audit-heads.jsonl";

/// The head file of `data_dir`.
pub fn heads_path(data_dir: &Path) -> PathBuf {
    data_dir.join(HEADS_FILE)
}

/// The latest checkpoint of each market, by market.
pub type Heads = BTreeMap<String, Checkpoint>;

/// Keeps the head file of one data directory: takes the checkpoints the store reports and writes
/// the latest of each market, from a thread of its own.
pub struct HeadFile {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    path: PathBuf,
    /// The temporary file it is written to first, unique to this keeper: several processes
    /// (PostgreSQL nodes of a benchmark) may keep one data directory's file.
    tmp: PathBuf,
    state: Mutex<State>,
    wake: Condvar,
    /// The heads last written to the file, for whoever sends them on (the hub forwarder).
    written: watch::Sender<Heads>,
}

#[derive(Default)]
struct State {
    heads: Heads,
    /// A head arrived that is not in the file yet.
    dirty: bool,
    stop: bool,
}

impl HeadFile {
    /// Starts keeping the head file of `data_dir`, from what it holds now. A file that cannot be
    /// read as heads is moved aside (`audit-heads.jsonl.damaged-<millis>`), kept as evidence, and
    /// said so in the log: the next checkpoint starts a new one.
    pub fn start(data_dir: &Path) -> anyhow::Result<HeadFile> {
        let path = heads_path(data_dir);
        let heads = match read_heads(&path) {
            Ok(h) => h,
            Err(e) => {
                let millis = SystemClock.now().unix_millis();
                let aside = path.with_extension(format!("jsonl.damaged-{millis}"));
                std::fs::rename(&path, &aside)
                    .with_context(|| format!("moving the damaged {} aside", path.display()))?;
                tracing::error!(error = %e, file = %aside.display(), "the audit head file was damaged; moved aside");
                Heads::new()
            }
        };
        static KEEPERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = KEEPERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("jsonl.tmp-{}-{n}", std::process::id()));
        let shared = Arc::new(Shared {
            path,
            tmp,
            state: Mutex::new(State { heads: heads.clone(), ..State::default() }),
            wake: Condvar::new(),
            written: watch::Sender::new(heads),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("openmvs-audit-heads".into())
            .spawn(move || s.run())
            .context("starting the audit head file's thread")?;
        Ok(HeadFile { shared, thread: Mutex::new(Some(thread)) })
    }

    /// What the store calls with each committed checkpoint: it only notes the head and wakes the
    /// file's thread.
    pub fn sink(&self) -> CheckpointSink {
        let shared = self.shared.clone();
        Arc::new(move |cp: &Checkpoint| {
            let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            if st.heads.get(&cp.market).is_none_or(|h| cp.seq > h.seq) {
                st.heads.insert(cp.market.clone(), cp.clone());
                st.dirty = true;
                shared.wake.notify_one();
            }
        })
    }

    /// The heads written to the file, now and each time it is rewritten.
    pub fn subscribe(&self) -> watch::Receiver<Heads> {
        self.shared.written.subscribe()
    }

    /// Writes what is pending and stops the thread. Call it after the store has closed, so that
    /// the checkpoints signed at the close are in the file too.
    pub fn close(&self) {
        {
            let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            st.stop = true;
            self.shared.wake.notify_one();
        }
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

impl Drop for HeadFile {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    fn run(&self) {
        loop {
            let heads = {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                while !st.dirty && !st.stop {
                    st = self.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                }
                if !st.dirty {
                    return;
                }
                st.dirty = false;
                st.heads.clone()
            };
            match write_heads(&self.path, &self.tmp, &heads) {
                Ok(()) => {
                    self.written.send_replace(heads);
                }
                Err(e) => {
                    tracing::error!(error = %e, file = %self.path.display(), "writing the audit head file failed; trying again");
                    let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                    st.dirty = true;
                    if st.stop {
                        return;
                    }
                    drop(st);
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            }
        }
    }
}

/// The heads in the file at `path`; none if there is no file.
pub fn read_heads(path: &Path) -> anyhow::Result<Heads> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Heads::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let list =
        openmvs_national::parse_heads(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut heads = Heads::new();
    for cp in list {
        if heads.get(&cp.market).is_none_or(|h| cp.seq > h.seq) {
            heads.insert(cp.market.clone(), cp);
        }
    }
    Ok(heads)
}

/// Replaces the file at `path` with `heads`, one JSON line each, atomically: the temporary file
/// `tmp` written and flushed to disk, renamed over it, and the directory flushed too.
fn write_heads(path: &Path, tmp: &Path, heads: &Heads) -> std::io::Result<()> {
    let mut text = String::new();
    for cp in heads.values() {
        text.push_str(
            &serde_json::to_string(&openmvs_national::signed_head(cp)).map_err(std::io::Error::other)?,
        );
        text.push('\n');
    }
    {
        let mut f = std::fs::File::create(tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use openmvs_audit::{ChainHead, sign_checkpoint};

    use super::*;

    fn head(market: &str, seq: u64) -> Checkpoint {
        let key = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
        let chain = ChainHead { market: market.into(), seq, hash: [u8::try_from(seq).unwrap_or(0); 32] };
        sign_checkpoint(&chain, 1_800_000_000_000, &key)
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("openmvs-heads-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_file_keeps_the_latest_head_of_each_market_across_a_restart() {
        let dir = temp_dir("latest");
        let file = HeadFile::start(&dir).unwrap();
        let sink = file.sink();
        for cp in [head("BE", 3), head("LU", 7), head("BE", 9), head("BE", 5)] {
            sink(&cp);
        }
        file.close();
        let kept = read_heads(&heads_path(&dir)).unwrap();
        assert_eq!(
            kept.values().cloned().collect::<Vec<_>>(),
            [head("BE", 9), head("LU", 7)],
            "an older head never replaces a newer one"
        );
        // A restart starts from the file: a head of one market leaves the other's in place.
        let file = HeadFile::start(&dir).unwrap();
        assert_eq!(*file.subscribe().borrow(), kept);
        file.sink()(&head("LU", 8));
        file.close();
        let kept = read_heads(&heads_path(&dir)).unwrap();
        assert_eq!(kept.values().cloned().collect::<Vec<_>>(), [head("BE", 9), head("LU", 8)]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_file_is_moved_aside_as_evidence_and_a_new_one_started() {
        let dir = temp_dir("damaged");
        std::fs::write(heads_path(&dir), "{\"market\":\"BE\",\"seq\":\n").unwrap();
        assert!(read_heads(&heads_path(&dir)).unwrap_err().to_string().contains("line 1"));
        let file = HeadFile::start(&dir).unwrap();
        file.sink()(&head("BE", 2));
        file.close();
        let aside: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n.starts_with("audit-heads.jsonl.damaged-"))
            .collect();
        assert_eq!(aside.len(), 1, "the damaged file is kept: {aside:?}");
        assert_eq!(read_heads(&heads_path(&dir)).unwrap().into_values().collect::<Vec<_>>(), [head("BE", 2)]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
