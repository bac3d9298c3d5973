//! Readiness tells the truth: `/health/ready` is false while the store cannot commit and true
//! again once a probe write succeeds, whether commits fail by an injected fault, because the data
//! directory is read-only or because its disk is full (the last two on a tmpfs the test mounts,
//! skipped where it may not).

use std::path::{Path, PathBuf};
use std::process::Command;

use openmvs_core::roles::Role;

use crate::harness::*;

async fn ready(app: &TestApp) -> u16 {
    app.get("/health/ready").await.status
}

async fn store_ok_gauge(app: &TestApp) -> String {
    let text = app.get("/metrics").await.text;
    text.lines().find(|l| l.starts_with("openmvs_store_ok ")).unwrap_or("").to_owned()
}

#[tokio::test]
async fn readiness_is_false_while_commits_fail_and_true_again_after_a_probe_write() {
    let app = spawn_app_with(AppOptions { faulty: true, ..AppOptions::default() }).await;
    app.seed_standard().await;
    let p = app.pack().await;
    let ph = app.client(Role::Pharmacy, "pharmacy-1").await;
    app.national.probe_store().await.expect("the store commits");
    assert_eq!(ready(&app).await, 200);
    assert_eq!(store_ok_gauge(&app).await, "openmvs_store_ok 1");

    let faults = app.faults.as_ref().expect("a faulty store");
    faults.fail_commits.store(1, std::sync::atomic::Ordering::SeqCst);
    ph.op_once("verify", &p.req()).await.expect_error(503, "NMVS_TI_UN_01", None);
    assert_eq!(ready(&app).await, 200, "one unit that failed alone: the probe after it commits");

    faults.fail_commits.store(u32::MAX, std::sync::atomic::Ordering::SeqCst);
    ph.op_once("verify", &p.req()).await.expect_error(503, "NMVS_TI_UN_01", None);
    assert_eq!(ready(&app).await, 503, "a failed commit makes the node not ready at once");
    assert_eq!(store_ok_gauge(&app).await, "openmvs_store_ok 0");
    assert!(app.national.probe_store().await.is_err());
    assert_eq!(ready(&app).await, 503, "still failing: still not ready");

    faults.fail_commits.store(0, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(ready(&app).await, 503, "not ready until a probe says otherwise");
    app.national.probe_store().await.expect("the store commits again");
    assert_eq!(ready(&app).await, 200);
    assert_eq!(store_ok_gauge(&app).await, "openmvs_store_ok 1");
    assert_eq!(ph.verify(&p.req()).await.status, 200);
}

/// A commit the database did not confirm in time makes the node not ready at once, with no probe
/// write on top of the wait (the probe after an ordinary failure would commit here, and keep it
/// ready): the answer is a 503 with `Retry-After`, and the next probe that commits makes it ready.
#[tokio::test]
async fn a_commit_not_confirmed_in_time_makes_the_node_not_ready_without_a_probe() {
    let app = spawn_app_with(AppOptions { faulty: true, ..AppOptions::default() }).await;
    app.seed_standard().await;
    let p = app.pack().await;
    let ph = app.client(Role::Pharmacy, "pharmacy-1").await;
    app.national.probe_store().await.expect("the store commits");
    let faults = app.faults.as_ref().expect("a faulty store");
    faults.unconfirmed.store(true, std::sync::atomic::Ordering::SeqCst);
    faults.fail_commits.store(1, std::sync::atomic::Ordering::SeqCst);
    let r = ph.op_once("verify", &p.req()).await;
    assert!(r.headers.contains_key("retry-after"), "{:?}", r.headers);
    r.expect_error(503, "NMVS_TI_UN_01", None);
    assert_eq!(ready(&app).await, 503, "not ready at once, with no probe that would have committed");
    app.national.probe_store().await.expect("the store commits again");
    assert_eq!(ready(&app).await, 200);
    assert_eq!(ph.verify(&p.req()).await.status, 200);
}

/// A small tmpfs mounted on a directory of its own, unmounted when dropped; `None` (the caller
/// skips, saying so) where this process may not mount file systems.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(name: &str) -> Option<Mount> {
        let dir =
            std::env::temp_dir().join(format!("openmvs-{name}-{}-{}", std::process::id(), fresh_serial()));
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

    fn path(&self) -> &Path {
        &self.0
    }

    fn remount(&self, mode: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.0)
            .output()
            .expect("run mount");
        assert!(out.status.success(), "remount {mode}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A node started on a read-only data directory starts, is not ready (today's data can be read,
/// nothing can be written), and becomes ready by itself once the directory is writable again and
/// a probe write commits. (A file system cannot be made read-only under a process that has files
/// open for writing, short of the kernel doing it after I/O errors; the fault-injection test above
/// covers a store that stops committing while the node runs.)
#[tokio::test]
async fn readiness_is_false_on_a_read_only_data_directory_and_true_again_after() {
    let Some(mount) = Mount::tmpfs("ro-national") else { return };
    let dir = Some(mount.path().to_owned());
    let first = spawn_app_with(AppOptions { data_dir: dir.clone(), ..AppOptions::default() }).await;
    first.seed_standard().await;
    let p = first.pack().await;
    let c = first
        .national
        .create_client(Role::Pharmacy, openmvs_core::ids::Location::new("pharmacy-1").expect("location"), "p")
        .await
        .expect("create a client");
    drop(first);

    mount.remount("ro");
    let app = spawn_app_with(AppOptions { data_dir: dir, ..AppOptions::default() }).await;
    assert!(app.national.probe_store().await.is_err(), "a read-only file system takes no write");
    assert_eq!(ready(&app).await, 503, "started, and says it is not ready");
    assert_eq!(store_ok_gauge(&app).await, "openmvs_store_ok 0");
    let login = |app: &TestApp| {
        app.http.post(format!("{}/oauth/token", app.base)).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", c.client_id.as_str()),
            ("client_secret", c.client_secret.as_str()),
        ])
    };
    assert_eq!(login(&app).send().await.expect("token request").status().as_u16(), 503, "a login is audited");

    mount.remount("rw");
    app.national.probe_store().await.expect("the store commits again");
    assert_eq!(ready(&app).await, 200);
    let body: serde_json::Value =
        login(&app).send().await.expect("token request").json().await.expect("json");
    let token = body["access_token"].as_str().expect("a token");
    let r = app.send(reqwest::Method::POST, "/v1/packs/supply", Some(token), Body::Json(p.req())).await;
    assert_eq!(r.json["return_code"], "NMVS_SUCCESS", "{}", r.text);
    assert_eq!(app.stored_state(&p).await, "SUPPLIED");
    drop(app);
}

/// Fills the file system of `dir` until it refuses another byte; returns the filler file.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    std::fs::File::create(&path).expect("create the filler");
    top_up(&path);
    path
}

/// Appends to the filler until the file system refuses another byte.
fn top_up(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).expect("open the filler");
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let mut byte = [0u8; 1];
    while f.write_all(&byte[..]).is_ok() {
        byte[0] = 1;
    }
    let _ = f.sync_all();
}

/// The disk fills up under a running node: its writes fail, readiness turns false once a probe
/// write fails too, and once there is room again a probe write commits and the node is ready and
/// takes the same request.
#[tokio::test]
async fn readiness_is_false_on_a_full_disk_and_true_again_once_there_is_room() {
    let Some(mount) = Mount::tmpfs("full-national") else { return };
    let app =
        spawn_app_with(AppOptions { data_dir: Some(mount.path().to_owned()), ..AppOptions::default() }).await;
    app.seed_standard().await;
    let packs = app.packs(50).await;
    let ph = app.client(Role::Pharmacy, "pharmacy-1").await;
    app.national.probe_store().await.expect("the store commits");
    assert_eq!(ready(&app).await, 200);

    // A reader holding its snapshot, as a long audit read does: the WAL cannot start over while
    // it reads, so every commit from here on needs new space.
    let reader = rusqlite::Connection::open(mount.path().join("national.db")).expect("open a reader");
    reader.execute_batch("BEGIN").expect("begin a read");
    let _: i64 = reader.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0)).expect("read");
    let filler = fill(mount.path());
    let mut refused = None;
    for p in &packs {
        let r = ph.op_once("supply", &p.req()).await;
        if r.status == 503 {
            refused = Some(p);
            break;
        }
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let refused = refused.expect("a full disk refuses a write");
    // The small probe write right after the refused unit may still fit (in what a write the file
    // system cut short added to the file), and then the store does commit. Take every byte the
    // file system frees and write until a probe fails: each one that commits appends to the WAL,
    // which the reader keeps from starting over, so one does.
    let mut probes = 0;
    loop {
        top_up(&filler);
        // A probe writes the time: a heartbeat that did not change would write nothing at all.
        app.clock.advance(std::time::Duration::from_millis(1));
        if app.national.probe_store().await.is_err() {
            break;
        }
        probes += 1;
        assert!(probes < 100_000, "a full disk kept taking probe writes");
    }
    assert_eq!(ready(&app).await, 503, "not ready once a probe write fails");
    assert_eq!(store_ok_gauge(&app).await, "openmvs_store_ok 0");

    drop(reader);
    std::fs::remove_file(filler).expect("make room");
    app.national.probe_store().await.expect("the store commits again");
    assert_eq!(ready(&app).await, 200);
    let r = ph.op("supply", &refused.req()).await;
    assert_eq!(r.json["return_code"], "NMVS_SUCCESS", "{}", r.text);
    drop(app);
}
