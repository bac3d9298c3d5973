//! Readiness that tells the truth: every few moments a node writes a probe through its store (the
//! same writer, transaction and fsync as a request) and measures the free space where its data
//! lives. `/health/ready` is false while the store cannot commit and true again, by itself, once a
//! probe write succeeds; below the free-space threshold the node says so once in the log and keeps
//! saying so in `/metrics` (`openmvs_disk_low`, `openmvs_disk_free_bytes`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openmvs_http::Observability;
use openmvs_hub::Hub;
use openmvs_national::National;
use tokio::sync::watch;

/// Bytes available to this process on the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    #[cfg(unix)]
    {
        let s = rustix::fs::statvfs(dir)?;
        Ok(s.f_bavail.saturating_mul(s.f_frsize))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Err(std::io::Error::other("free space is measured on Unix only"))
    }
}

/// Measures the free space of `dir` into `obs`, logging a crossing of the threshold once.
pub fn check_disk(obs: &Observability, dir: &Path) {
    match free_bytes(dir) {
        Ok(free) => match obs.disk.record(free) {
            Some(true) => tracing::warn!(
                dir = %dir.display(),
                free_bytes = free,
                threshold_bytes = obs.disk.threshold(),
                "free space is below the warning threshold: writes fail once the disk is full"
            ),
            Some(false) => tracing::info!(
                dir = %dir.display(),
                free_bytes = free,
                "free space is above the warning threshold again"
            ),
            None => {}
        },
        Err(e) => tracing::debug!(dir = %dir.display(), error = %e, "measuring the free space failed"),
    }
}

/// A system whose store a probe writes to: a national system or the hub.
pub trait StoreProbe: Send + Sync + 'static {
    /// Writes the node's heartbeat through the store; why not, if it could not.
    fn write_probe(&self) -> impl Future<Output = Result<(), String>> + Send;
}

impl StoreProbe for National {
    async fn write_probe(&self) -> Result<(), String> {
        self.probe_store().await.map_err(|e| e.to_string())
    }
}

impl StoreProbe for Hub {
    async fn write_probe(&self) -> Result<(), String> {
        self.probe_store().await.map_err(|e| e.to_string())
    }
}

/// One probe: a write through the system's store, then the free space.
pub async fn probe<S: StoreProbe + ?Sized>(system: &S, obs: &Observability, dir: &Path) {
    if let Err(e) = system.write_probe().await {
        tracing::debug!(error = %e, "probe write failed");
    }
    check_disk(obs, dir);
}

/// Probes every `every` until `stop` turns true.
pub async fn run_probe(
    system: Arc<impl StoreProbe>,
    obs: Arc<Observability>,
    dir: PathBuf,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        probe(system.as_ref(), &obs, &dir).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_free_space_of_a_directory_is_measured() {
        let free = free_bytes(&std::env::temp_dir()).unwrap();
        assert!(free > 0, "the temporary directory has some room");
        assert!(free_bytes(Path::new("/no/such/directory/anywhere")).is_err());
    }
}
