//! The operator's side of client lifecycle and readiness, through the real binary: `openmvs admin
//! client disable|enable|list`, `admin token-keys` and `admin retire-token-key` against the data
//! directory of a running node, which refuses and accepts tokens accordingly within seconds; the
//! free-space warning; and a node started on a read-only data directory that becomes ready by
//! itself once it can write.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Node, Reply, http, openmvs, pack, pack_body, serial, token};

fn status_of(r: &Reply) -> u16 {
    match r {
        Reply::Answer { status, .. } | Reply::Broken { status, .. } => *status,
        Reply::NoAnswer(_) => 0,
    }
}

/// Runs `openmvs admin ...` on the node's configuration and insists that it fails; returns its
/// standard error.
fn admin_fails(node: &Node, args: &[&str]) -> String {
    let config = node.config();
    let mut all = args.to_vec();
    all.extend(["--config", config.to_str().expect("UTF-8 path")]);
    let out = openmvs(&all);
    assert!(!out.status.success(), "openmvs {} succeeded", args.join(" "));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_client_disabled_and_enabled_by_the_command_line_is_refused_and_accepted_by_a_running_node() {
    let node = Node::new("client-disable", "");
    node.seed(4);
    let ph = node.client("PHARMACY", "pharmacy-1");
    let server = node.start();
    let http = http();
    let t = token(&http, &server.base, &ph);
    let verify = |i: u64| {
        pack(
            &http,
            &server.base,
            &t,
            "verify",
            &pack_body(&format!("v-{i}-{}", ph.client_id), &serial(i % 4)),
        )
    };
    assert_eq!(status_of(&verify(0)), 200);

    let out = node.admin(&["admin", "client", "disable", "--client-id", &ph.client_id]);
    assert!(out.contains(&ph.client_id) && out.contains("disabled"), "{out}");
    // The node reads the list of disabled clients every second and says what changed.
    assert!(
        server.wait_for_log("client disabled by another node or command", common::WAIT_LIMIT),
        "the running node notices:\n{}",
        server.log_text()
    );
    assert_eq!(status_of(&verify(1)), 401, "the running node refuses the token");
    match verify(999) {
        Reply::Answer { status: 401, body } => {
            assert_eq!(body["return_code"], "NMVS_FE_AU_01");
            assert!(body["details"][0]["message"].as_str().is_some_and(|m| m.contains("disabled")), "{body}");
        }
        other => panic!("{other:?}"),
    }

    // `--data-dir` names the embedded store as `--config` does.
    let data_dir = node.data_dir();
    let out = openmvs(&["admin", "client", "list", "--data-dir", data_dir.to_str().expect("UTF-8 path")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = list.lines();
    let header: Vec<&str> = lines.next().expect("a header").split_whitespace().collect();
    assert_eq!(header, ["CLIENT_ID", "ROLE", "LOCATION", "STATE", "LAST_USED", "NAME"]);
    let row: Vec<&str> = lines
        .find(|l| l.starts_with(&ph.client_id))
        .expect("the client is listed")
        .split_whitespace()
        .collect();
    assert_eq!(&row[1..4], ["PHARMACY", "pharmacy-1", "DISABLED"], "{list}");
    assert!(row[4].starts_with("20") && row[4].ends_with('Z'), "last used at its token: {list}");

    node.admin(&["admin", "client", "enable", "--client-id", &ph.client_id]);
    assert!(
        server.wait_for_log("client enabled again by another node or command", common::WAIT_LIMIT),
        "the running node notices:\n{}",
        server.log_text()
    );
    assert_eq!(status_of(&verify(2)), 200, "the running node takes the token again");
    let err = admin_fails(&node, &["admin", "client", "disable", "--client-id", "cl_nobody"]);
    assert!(err.contains("--client-id") && err.contains("cl_nobody"), "{err}");
    server.stop();
    let trail = Node::audit_verify(&node.data_dir());
    assert!(trail.status.success(), "{}", String::from_utf8_lossy(&trail.stdout));
}

/// The key ids `admin token-keys` lists in `state`.
fn kids(node: &Node, state: &str) -> Vec<String> {
    let out = node.admin(&["admin", "token-keys"]);
    assert!(out.starts_with("KID"), "a header first: {out}");
    out.lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| cols.get(1) == Some(&state))
        .map(|cols| cols[0].to_owned())
        .collect()
}

#[test]
fn retiring_a_token_key_refuses_its_tokens_and_the_active_key_is_rotated_first() {
    let node = Node::new("retire-key", "");
    node.seed(2);
    let ph = node.client("PHARMACY", "pharmacy-1");
    let server = node.start();
    let http = http();
    let old_token = token(&http, &server.base, &ph);
    let first = kids(&node, "active");
    assert_eq!(first.len(), 1);

    let err = admin_fails(&node, &["admin", "retire-token-key", "--kid", &first[0]]);
    assert!(err.contains("--kid") && err.contains("rotate-token-key"), "{err}");
    let err = admin_fails(&node, &["admin", "retire-token-key", "--kid", "no-such-key"]);
    assert!(err.contains("--kid") && err.contains("no-such-key"), "{err}");

    node.admin(&["admin", "rotate-token-key"]);
    assert_eq!(kids(&node, "retired"), first);
    let n = std::cell::Cell::new(0);
    let verify = |t: &str| {
        n.set(n.get() + 1);
        status_of(&pack(&http, &server.base, t, "verify", &pack_body(&format!("k-{}", n.get()), &serial(0))))
    };
    assert_eq!(verify(&old_token), 200, "a rotated key still verifies");
    let out = node.admin(&["admin", "retire-token-key", "--kid", &first[0]]);
    assert!(out.contains("revoked"), "{out}");
    assert_eq!(kids(&node, "revoked"), first);
    // The node says so in its log once it refuses the key's tokens.
    let revoked = "token-signing key revoked by another node";
    assert!(server.wait_for_log(revoked, common::WAIT_LIMIT), "never revoked:\n{}", server.log_text());
    assert_eq!(verify(&old_token), 401, "the running node refuses:\n{}", server.log_text());
    let fresh = token(&http, &server.base, &ph);
    assert_eq!(verify(&fresh), 200, "tokens of the active key are accepted");
    server.stop();
}

#[test]
fn below_the_free_space_threshold_a_node_warns_once_and_says_so_in_metrics_but_stays_ready() {
    // More free space than any disk has: the warning fires at the first probe.
    let node = Node::new("disk-low", "\n[national.health]\nprobe_ms = 100\ndisk_free_warn_mb = 1000000000\n");
    let server = node.start();
    let http = http();
    let metrics =
        || http.get(format!("{}/metrics", server.base)).send().and_then(|r| r.text()).unwrap_or_default();
    let text = metrics();
    assert!(text.contains("\nopenmvs_disk_low 1\n"), "{text}");
    assert!(text.contains("\nopenmvs_store_ok 1\n"), "{text}");
    let free: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("openmvs_disk_free_bytes "))
        .and_then(|v| v.parse().ok())
        .expect("the free bytes are a gauge");
    assert!(free > 0);
    let ready = http.get(format!("{}/health/ready", server.base)).send().expect("ready").status().as_u16();
    assert_eq!(ready, 200, "low on space is a warning, not an outage");
    let log = server.log_text();
    server.stop();
    let warnings = log.matches("free space is below the warning threshold").count();
    assert_eq!(warnings, 1, "one line per crossing, not per probe:\n{log}");
}

/// A small tmpfs mounted on `dir`, unmounted when dropped; `None` (the caller skips, saying so)
/// where this process may not mount file systems.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path) -> Option<Mount> {
        std::fs::create_dir_all(dir).expect("create the mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
            .arg(dir)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!("skipped: this process may not mount a tmpfs (it needs root or CAP_SYS_ADMIN)");
            return None;
        }
        Some(Mount(dir.to_owned()))
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
    }
}

#[test]
fn a_node_started_on_a_read_only_data_directory_is_not_ready_until_it_can_write() {
    let node = Node::new("read-only", "\n[national.health]\nprobe_ms = 200\n");
    let Some(mount) = Mount::tmpfs(&node.data_dir()) else { return };
    node.seed(2);
    let ph = node.client("PHARMACY", "pharmacy-1");
    mount.remount("ro");
    let server = node.start();
    let http = http();
    let ready =
        || http.get(format!("{}/health/ready", server.base)).send().map(|r| r.status().as_u16()).unwrap_or(0);
    assert_eq!(ready(), 503, "started on a read-only directory, and not ready:\n{}", server.log_text());
    assert!(server.log_text().contains("the store cannot commit"), "{}", server.log_text());

    mount.remount("rw");
    // The node says so in its log once a probe write succeeds.
    let again = "the store commits again: ready";
    assert!(server.wait_for_log(again, common::WAIT_LIMIT), "never ready:\n{}", server.log_text());
    assert_eq!(ready(), 200, "ready by itself once it can write:\n{}", server.log_text());
    let t = token(&http, &server.base, &ph);
    let r = pack(&http, &server.base, &t, "supply", &pack_body("ro-1", &serial(0))).ok("supply");
    assert_eq!(r["return_code"], "NMVS_SUCCESS");
    server.stop();
    drop(mount);
}

#[test]
fn a_node_that_cannot_even_read_its_database_on_a_read_only_directory_refuses_to_start_saying_why() {
    let node = Node::new("read-only-cold", "");
    let Some(mount) = Mount::tmpfs(&node.data_dir()) else { return };
    node.seed(1);
    // Stopped cleanly with nothing reading it: the WAL is empty, and without its index SQLite
    // cannot open the database where it cannot create one.
    for f in ["national.db-shm", "national.db-wal"] {
        let _ = std::fs::remove_file(node.data_dir().join(f));
    }
    mount.remount("ro");
    let config = node.config();
    let out = openmvs(&["serve", "national", "--config", config.to_str().expect("UTF-8 path")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("national.db") && err.contains("cannot be written"), "{err}");
    drop(mount);
}

/// `openmvs admin incident open|update|resolve|list` on a running node's configuration: the node's
/// `/v1/incidents` and its feed show what the command wrote at once, and a bad flag is refused
/// naming it, with nothing written.
#[test]
fn incidents_written_by_the_command_line_show_on_the_running_nodes_status_and_feeds() {
    let node = Node::new("incidents", "");
    let server = node.start();
    let http = http();
    let get = |path: &str| -> serde_json::Value {
        let r = http.get(format!("{}{path}", server.base)).send().expect("a GET");
        assert_eq!(r.status(), 200, "{path}");
        r.json().expect("JSON")
    };
    let bad = admin_fails(
        &node,
        &["admin", "incident", "open", "--title", "x", "--impact", "huge", "--message", "m"],
    );
    assert!(bad.contains("--impact"), "{bad}");
    assert_eq!(get("/v1/incidents")["incidents"], serde_json::json!([]));

    let out = node.admin(&[
        "admin",
        "incident",
        "open",
        "--title",
        "Slow answers",
        "--impact",
        "major",
        "--message",
        "Investigating.",
    ]);
    assert!(out.contains("incident 1 opened"), "{out}");
    let open = get("/v1/incidents?open=true");
    assert_eq!(open["incidents"][0]["title"], "Slow answers", "{open}");
    let out = node.admin(&[
        "admin",
        "incident",
        "update",
        "1",
        "--status",
        "identified",
        "--message",
        "A disk is full.",
    ]);
    assert!(out.contains("incident 1 is identified"), "{out}");
    let out = node.admin(&["admin", "incident", "resolve", "1", "--message", "Space freed."]);
    assert!(out.contains("incident 1 is resolved"), "{out}");
    let late = admin_fails(&node, &["admin", "incident", "resolve", "1", "--message", "again"]);
    assert!(late.contains("resolved already"), "{late}");
    let one = get("/v1/incidents/1");
    assert_eq!(one["status"], "resolved", "{one}");
    assert_eq!(one["updates"].as_array().map(Vec::len), Some(3), "{one}");
    let list = node.admin(&["admin", "incident", "list"]);
    assert!(list.starts_with("1\tresolved\tmajor\t") && list.contains("Slow answers"), "{list}");
    let feed = http.get(format!("{}/v1/incidents/feed.atom", server.base)).send().expect("the feed");
    assert!(feed.text().expect("text").contains("[resolved] Slow answers"));
    let status = get("/v1/status");
    assert_eq!(status["incidents"][0]["id"], 1, "{status}");
}
