//! The hub's store probe: a hub started on a read-only data directory does not count its store as
//! committing, and does again by itself once a probe write succeeds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use openmvs_core::time::Clock;
use openmvs_hub::{Hub, HubConfig};
use openmvs_national::clock::FakeClock;
use openmvs_store_sqlite::hub::{HubOptions, SqliteHubStore};

use crate::harness::signer;

/// A small tmpfs, unmounted when dropped; `None` (the caller skips, saying so) where this
/// process may not mount file systems.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs() -> Option<Mount> {
        let dir = std::env::temp_dir().join(format!("openmvs-hub-ro-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
            .arg(&dir)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            let _ = std::fs::remove_dir(&dir);
            eprintln!("skipped: this process may not mount a tmpfs (it needs root or CAP_SYS_ADMIN)");
            return None;
        }
        Some(Mount(dir))
    }

    fn remount(&self, mode: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.0)
            .output()
            .expect("mount");
        assert!(out.status.success(), "remount {mode}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn open(dir: &Path, clock: Arc<dyn Clock>) -> Arc<SqliteHubStore> {
    Arc::new(
        SqliteHubStore::open(HubOptions {
            path: dir.join("hub.db"),
            signer: signer(),
            clock,
            on_group: None,
            checkpoints: openmvs_store::CheckpointOptions::default(),
        })
        .expect("open the hub store"),
    )
}

#[tokio::test]
async fn a_hub_on_a_read_only_data_directory_does_not_commit_until_it_can_write_again() {
    let Some(mount) = Mount::tmpfs() else { return };
    let clock: Arc<dyn Clock> =
        Arc::new(FakeClock::at(openmvs_core::time::Timestamp::from_unix_millis(1_800_000_000_000)));
    let first = open(&mount.0, clock.clone());
    let hub = Hub::new(first.clone(), clock.clone(), HubConfig::new([42; 32]), None);
    hub.probe_store().await.expect("a writable store commits");
    assert!(hub.store_ok());
    // As a hub that served requests: its database's WAL index stays beside it after the stop,
    // which is what lets SQLite read the database on a read-only directory.
    assert!(openmvs_store::hub::ObpStore::obps(first.as_ref()).await.expect("read").is_empty());
    drop(hub);
    first.close();
    drop(first);

    mount.remount("ro");
    let store = open(&mount.0, clock.clone());
    let hub = Hub::new(store.clone(), clock, HubConfig::new([42; 32]), None);
    assert!(hub.probe_store().await.is_err(), "a read-only file system takes no write");
    assert!(!hub.store_ok());
    mount.remount("rw");
    hub.probe_store().await.expect("the store commits again");
    assert!(hub.store_ok());
    store.close();
}
