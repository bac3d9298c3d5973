//! The embedded store's online backup and its restore, with the real binary: a backup taken while
//! supplies commit holds every supply acknowledged before it began; a restore refuses a database
//! a node is serving, and puts the backup in place in a new data directory, whose trail
//! `openmvs audit verify` accepts and whose server serves.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Node, Reply, Stop, Watched, http, openmvs, pack, pack_body, serial, token};

/// Packs the test seeds.
const PACKS: u64 = 400;
/// Supplies acknowledged before the backup starts.
const BEFORE: usize = 30;
/// The keys and the market claim a restored system needs beside its database: kept apart from
/// backups, as secrets are.
const KEEP: [&str; 3] = ["audit-signing.key", "audit-signing.pub", "market"];

fn run(args: &[&str]) -> (bool, String) {
    let out = openmvs(args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn an_online_backup_restores_into_a_system_that_verifies_and_serves() {
    let node = Node::new("backup", "");
    node.seed(PACKS);
    let pharmacy = node.client("PHARMACY", "DE-PH-1");
    let server = node.start();
    let base = server.base.clone();
    let tok = token(&http(), &base, &pharmacy);
    let file = node.root().join("de.backup");

    // Supplies, one after the other, while the backup is taken.
    let acked: Watched<Vec<u64>> = Watched::default();
    let stop = Stop::default();
    let before = std::thread::scope(|scope| {
        scope.spawn(|| {
            let http = http();
            for i in 0..PACKS {
                if stop.is_given() {
                    break;
                }
                match pack(&http, &base, &tok, "supply", &pack_body(&format!("bk-{i}"), &serial(i))) {
                    Reply::Answer { status: 200, .. } => acked.update(|a| a.push(i)),
                    other => panic!("supply {i}: {other:?}"),
                }
            }
        });
        assert!(acked.wait_for(Duration::from_secs(60), |a| a.len() >= BEFORE), "no supplies");
        let before = acked.read(Vec::len);
        let (ok, text) = run(&["admin", "backup", "--config", path(&node.config()), "--out", path(&file)]);
        assert!(ok && text.contains("backup: national database"), "{text}");
        // The supplies go on after it.
        let after = acked.read(Vec::len);
        let _ = acked.wait_for(Duration::from_secs(30), |a| a.len() >= after + 10);
        stop.stop();
        before
    });

    // A second backup to the same file is refused; the first is untouched.
    let (ok, text) = run(&["admin", "backup", "--config", path(&node.config()), "--out", path(&file)]);
    assert!(!ok && text.contains("exists"), "{text}");

    // The database the server is writing is not replaced.
    let (ok, text) =
        run(&["admin", "restore", "--config", path(&node.config()), "--from", path(&file), "--replace"]);
    assert!(!ok && text.contains("heartbeat"), "restore over a served database: {text}");
    server.stop();

    // Restored into a new data directory, beside the keys kept apart.
    let restored = Node::new("backup-restored", "");
    std::fs::create_dir_all(restored.data_dir()).expect("data directory");
    for name in KEEP {
        std::fs::copy(node.data_dir().join(name), restored.data_dir().join(name)).expect("copy a key");
    }
    let (ok, text) =
        run(&["admin", "restore", "--data-dir", path(&restored.data_dir()), "--from", path(&file)]);
    assert!(ok && text.contains("restore:"), "{text}");
    let check = Node::audit_verify(&restored.data_dir());
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success() && out.contains("audit: OK"), "{out}");

    // It serves: what was acknowledged before the backup began is there, and it takes new work.
    let server = restored.start();
    let tok = token(&http(), &server.base, &pharmacy);
    let http = http();
    for i in acked.read(|a| a[..before].to_vec()) {
        let body = pack(&http, &server.base, &tok, "verify", &pack_body(&format!("rv-{i}"), &serial(i)))
            .ok("verify in the restored system");
        assert_eq!(body["pack"]["state"], "SUPPLIED", "pack {i}: {body}");
    }
    let fresh = PACKS - 1;
    let body = pack(&http, &server.base, &tok, "verify", &pack_body("rv-fresh", &serial(fresh))).ok("verify");
    if body["pack"]["state"] == "ACTIVE" {
        pack(&http, &server.base, &tok, "supply", &pack_body("rs-fresh", &serial(fresh)))
            .ok("a supply in the restored system");
    }
    server.stop();
    let check = Node::audit_verify(&restored.data_dir());
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
}
