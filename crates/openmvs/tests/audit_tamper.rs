//! The audit trail against an attacker with access to the files: a byte edited inside one record,
//! a record deleted from the middle, or the last record cut off is found by `openmvs audit verify`,
//! which names the record; an untouched copy of the same data still verifies.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{Node, audit_of, copy_dir, http, pack, pack_body, serial, token};
use rusqlite::Connection;
use serde_json::json;

/// The transaction id of the supply whose audit record is edited.
const TARGET_TRX: &str = "tamper-target-0001";

/// Runs `audit verify` on `dir` and expects it to find the trail broken: exit status 3 and one
/// line on stderr. Returns that line.
fn broken(dir: &Path) -> String {
    let out = Node::audit_verify(dir);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(3),
        "audit verify of {}: {}\nstdout: {}\nstderr: {stderr}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("audit: BROKEN: "), "{stderr}");
    eprint!("{}: {stderr}", dir.file_name().unwrap_or_default().to_string_lossy());
    stderr
}

/// Runs `audit verify` on `dir` and expects the trail to be intact.
fn intact(dir: &Path) {
    let out = Node::audit_verify(dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("audit: OK"),
        "audit verify of {}: {}\n{stdout}{}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Moves everything in the write-ahead log into the database file, so that the file holds the
/// only copy of each record.
fn checkpoint(data_dir: &Path) {
    let wal = data_dir.join("national.db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    if wal_len == 0 {
        return;
    }
    eprintln!("note: {wal_len} bytes left in national.db-wal after a clean stop; checkpointing it");
    let conn = Connection::open(data_dir.join("national.db")).expect("open the database");
    let (busy, _, _): (i64, i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("checkpoint");
    assert_eq!(busy, 0, "the checkpoint was blocked");
    drop(conn);
    assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0, "the WAL is still not empty");
}

/// Every offset at which `needle` occurs in `haystack`.
fn occurrences(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle).map(|(i, _)| i).collect()
}

/// Deletes audit record `seq` of DE the way an attacker with the file would: the append-only
/// trigger refuses, so it is dropped first.
fn delete_record(data_dir: &Path, seq: u64) {
    let conn = Connection::open(data_dir.join("national.db")).expect("open the copy");
    let refused = conn.execute("DELETE FROM audit WHERE market = 'DE' AND seq = ?1", [seq as i64]);
    assert!(
        refused.as_ref().is_err_and(|e| e.to_string().contains("append-only")),
        "the trigger should refuse the delete: {refused:?}"
    );
    conn.execute_batch("DROP TRIGGER audit_no_delete").expect("drop the trigger");
    let n = conn.execute("DELETE FROM audit WHERE market = 'DE' AND seq = ?1", [seq as i64]).expect("delete");
    assert_eq!(n, 1, "record DE #{seq} deleted");
}

#[test]
fn editing_one_byte_of_an_audit_record_is_caught_and_named() {
    let node = Node::new("tamper", "");
    node.seed(20);
    let pharmacy = node.client("PHARMACY", "DE-PH-1");
    let nca = node.client("NCA", "DE-NCA-1");

    let server = node.start();
    let base = server.base.as_str();
    let http = http();
    let ph = token(&http, base, &pharmacy);
    let authority = token(&http, base, &nca);
    // Some ordinary traffic around the target record: supplies, verifies, a double scan, an
    // unknown serial (with its alert), and two refusals.
    for i in 0..3 {
        pack(&http, base, &ph, "supply", &pack_body(&format!("before-{i}"), &serial(i))).ok("supply");
        pack(&http, base, &ph, "verify", &pack_body(&format!("verify-{i}"), &serial(i))).ok("verify");
    }
    let target = pack(&http, base, &ph, "supply", &pack_body(TARGET_TRX, &serial(3))).ok("target supply");
    assert_eq!(target["return_code"], "NMVS_SUCCESS", "{target}");
    let again = pack(&http, base, &ph, "supply", &pack_body("double-scan", &serial(3))).ok("double scan");
    assert_eq!(again["return_code"], "NMVS_NC_PCK_23", "{again}");
    let unknown =
        pack(&http, base, &ph, "verify", &pack_body("unknown-serial", "NOSUCHSERIAL")).ok("unknown");
    assert_eq!(unknown["return_code"], "NMVS_NC_PC_02", "{unknown}");
    let mut bad_digit = pack_body("bad-check-digit", &serial(4));
    bad_digit["product_code"] = json!("09501101530004");
    assert!(
        matches!(pack(&http, base, &ph, "supply", &bad_digit), common::Reply::Answer { status: 400, .. }),
        "a wrong check digit is refused"
    );
    let forbidden = pack(&http, base, &authority, "supply", &pack_body("nca-may-not", &serial(5)));
    assert!(matches!(forbidden, common::Reply::Answer { status: 403, .. }), "{forbidden:?}");
    for i in 5..8 {
        pack(&http, base, &ph, "supply", &pack_body(&format!("after-{i}"), &serial(i))).ok("supply");
    }
    // The authority finds the target record and its sequence number.
    let records = audit_of(&http, base, &authority, &serial(3));
    let found: Vec<_> = records.iter().filter(|r| r["request"]["client_trx_id"] == TARGET_TRX).collect();
    assert_eq!(found.len(), 1, "one audit record of the target supply: {records:#?}");
    let seq = found[0]["seq"].as_u64().expect("seq");
    server.stop();
    intact(&node.data_dir());

    // The attacker works on the files of the stopped system.
    let data = node.data_dir();
    checkpoint(&data);
    let (request, last): (String, u64) = {
        let conn = Connection::open(data.join("national.db")).expect("open the database");
        let request = conn
            .query_row("SELECT request FROM audit WHERE market = 'DE' AND seq = ?1", [seq as i64], |r| {
                r.get(0)
            })
            .expect("the target record");
        let last: i64 = conn
            .query_row("SELECT MAX(seq) FROM audit WHERE market = 'DE'", [], |r| r.get(0))
            .expect("max seq");
        (request, last as u64)
    };
    assert!(request.contains(TARGET_TRX), "record DE #{seq} is the target: {request}");
    assert!(seq > 1 && seq < last, "the target record #{seq} is in the middle of 1..={last}");
    let pristine = node.root().join("pristine");
    let gap = node.root().join("gap");
    let truncated = node.root().join("truncated");
    for copy in [&pristine, &gap, &truncated] {
        copy_dir(&data, copy);
    }

    // One byte of the record's request text, edited in place: `tamper-target` becomes
    // `tamper-Target`. Stale copies of the page's old content in free space (if any) get the
    // same edit; they are not part of the database and cannot matter.
    let db = data.join("national.db");
    let mut bytes = std::fs::read(&db).expect("read the database file");
    let at = occurrences(&bytes, request.as_bytes());
    assert!(!at.is_empty(), "the request text of record DE #{seq} is stored in national.db");
    let within = request.find("target").expect("target in the request");
    for offset in &at {
        bytes[offset + within] ^= 0x20;
    }
    std::fs::write(&db, &bytes).expect("write the database file");
    eprintln!("edited one byte in {} stored cop(ies) of record DE #{seq} (of {last})", at.len());
    let finding = broken(&data);
    assert!(finding.contains(&format!("record DE #{seq}: ")), "names record #{seq}: {finding}");
    assert!(finding.contains("hash does not match"), "{finding}");

    // A record deleted from the middle leaves a gap that names the record after it.
    let middle = last / 2;
    delete_record(&gap, middle);
    let finding = broken(&gap);
    assert!(
        finding.contains(&format!("record DE #{} follows #{}", middle + 1, middle - 1))
            && finding.contains(&format!("record #{middle} is missing")),
        "names the gap at #{middle}: {finding}"
    );

    // The last record cut off: the checkpoint signed at the clean stop still names it.
    delete_record(&truncated, last);
    let finding = broken(&truncated);
    assert!(finding.contains(&format!("#{last}")) && finding.contains("missing"), "names #{last}: {finding}");

    // The untouched copy still verifies.
    intact(&pristine);
}

/// Supplies packs `from..to` through a started node, one audit record each (and one for the login).
fn supply_range(node: &Node, pharmacy: &common::Creds, from: u64, to: u64) {
    let server = node.start();
    let base = server.base.as_str();
    let http = http();
    let ph = token(&http, base, pharmacy);
    for i in from..to {
        pack(&http, base, &ph, "supply", &pack_body(&format!("cut-{i}"), &serial(i))).ok("supply");
    }
    server.stop();
}

/// The last audit record of DE and the last checkpoint the database holds of it.
fn ends(data_dir: &Path) -> (u64, u64) {
    let conn = Connection::open(data_dir.join("national.db")).expect("open the database");
    let q = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).expect(sql) as u64;
    (
        q("SELECT COALESCE(MAX(seq), 0) FROM audit WHERE market = 'DE'"),
        q("SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints WHERE market = 'DE'"),
    )
}

/// Cuts DE's trail back to record `keep` as an attacker with the file would: the newer records
/// and every checkpoint that signs one of them, so that what is left is a whole, signed chain.
fn cut_off(data_dir: &Path, keep: u64) {
    let conn = Connection::open(data_dir.join("national.db")).expect("open the copy");
    conn.execute_batch("DROP TRIGGER IF EXISTS audit_no_delete").expect("drop the trigger");
    let n =
        conn.execute("DELETE FROM audit WHERE market = 'DE' AND seq > ?1", [keep as i64]).expect("delete");
    assert!(n > 0, "records after #{keep} deleted");
    conn.execute("DELETE FROM audit_checkpoints WHERE market = 'DE' AND seq > ?1", [keep as i64])
        .expect("delete the checkpoints");
    drop(conn);
    assert_eq!(ends(data_dir).0, keep);
}

/// Runs `audit verify` on `dir` with extra arguments.
fn verify_with(dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["audit", "verify", "--data-dir", dir.to_str().expect("UTF-8 path")];
    args.extend_from_slice(extra);
    common::openmvs(&args)
}

/// The signed head the data directory's head file holds for DE.
fn head_of(data_dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(data_dir.join("audit-heads.jsonl")).expect("the head file");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one head, of DE: {text}");
    let head: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON line");
    assert_eq!(head["market"], "DE", "{head}");
    head
}

/// Hands `head` to a hub store in `hub_dir` as the hub's inbound route does with DE's message,
/// then prints what `openmvs audit heads` exports of DE into `out`.
fn heads_at_the_hub(hub_dir: &Path, head: &serde_json::Value, out: &Path) {
    use openmvs_core::ids::MarketCode;
    use openmvs_hub::{Hub, HubConfig};
    use openmvs_national::clock::SystemClock;
    use openmvs_store_sqlite::AuditSigner;
    use openmvs_store_sqlite::hub::{HubOptions, SqliteHubStore};
    use openmvs_wire::hub::{Delivery, Envelope, Message, SignedHead};

    let store = Arc::new(
        SqliteHubStore::open(HubOptions {
            path: hub_dir.join("hub.db"),
            signer: Arc::new(AuditSigner { key: ed25519_dalek::SigningKey::from_bytes(&[5; 32]) }),
            clock: Arc::new(SystemClock),
            on_group: None,
            checkpoints: openmvs_store::CheckpointOptions::default(),
        })
        .expect("the hub's store opens"),
    );
    let hub = Hub::new(store.clone(), Arc::new(SystemClock), HubConfig::new([3; 32]), None);
    let head: SignedHead = serde_json::from_value(head.clone()).expect("a signed head");
    let delivery = Delivery {
        messages: vec![Envelope {
            message_id: "MSG-DE-head-1".into(),
            origin: "DE".into(),
            ordering_key: "audit-head/DE".into(),
            body: Message::AuditHead(head),
        }],
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let ack = rt
        .block_on(hub.apply_from_national(MarketCode::new("DE").expect("DE"), &delivery))
        .expect("the hub applies the delivery");
    assert_eq!(ack.results[0].status, "APPLIED", "{ack:?}");
    drop(hub);
    store.close();
    let exported = common::openmvs(&[
        "audit",
        "heads",
        "--data-dir",
        hub_dir.to_str().expect("UTF-8 path"),
        "--market",
        "DE",
    ]);
    assert!(exported.status.success(), "audit heads: {}", String::from_utf8_lossy(&exported.stderr));
    std::fs::write(out, &exported.stdout).expect("write the heads");

    // The hub's own trail is verified and read like a market's, from its data directory.
    let dir = hub_dir.to_str().expect("UTF-8 path");
    let key: String = ed25519_dalek::SigningKey::from_bytes(&[5; 32])
        .verifying_key()
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let verified = common::openmvs(&["audit", "verify", "--data-dir", dir, "--public-key", &key]);
    let said = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success() && said.contains("(the hub's trail)"),
        "{said}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let found = common::openmvs(&["audit", "search", "--data-dir", dir, "--format", "json"]);
    assert!(found.status.success(), "{}", String::from_utf8_lossy(&found.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&found.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(
        (&lines[0]["actor"], &lines[0]["subject"]),
        (&serde_json::json!("DE"), &serde_json::json!("audit-head/DE"))
    );
    let csv = common::openmvs(&["audit", "search", "--data-dir", dir, "--client-id", "FR"]);
    assert_eq!(String::from_utf8_lossy(&csv.stdout).lines().count(), 1, "the header only: nothing FR did");
}

#[test]
fn records_cut_off_at_the_end_with_their_checkpoints_are_caught_against_the_head_file_and_the_hub() {
    let node = Node::new("truncate", "");
    node.seed(100);
    let pharmacy = node.client("PHARMACY", "DE-PH-1");
    // Two runs: each clean stop signs the tail, so the database holds checkpoints along the way.
    supply_range(&node, &pharmacy, 0, 20);
    supply_range(&node, &pharmacy, 20, 70);
    let data = node.data_dir();
    checkpoint(&data);
    let (last, signed) = ends(&data);
    assert!(last > 60, "some 70 records: {last}");
    assert_eq!(signed, last, "the clean stop signed the whole trail");
    let head = head_of(&data);
    assert_eq!(head["seq"].as_u64(), Some(last), "the head file holds the last checkpoint: {head}");
    intact(&data);
    let out = Node::audit_verify(&data);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("reaches the signed head #{last} of audit-heads.jsonl")), "{stdout}");

    for cut in [1, 40] {
        let keep = last - cut;
        let copy = node.root().join(format!("cut-{cut}"));
        copy_dir(&data, &copy);
        cut_off(&copy, keep);
        let (_, signed) = ends(&copy);
        assert!(signed > 0 && signed <= keep, "a checkpoint (#{signed}) still signs what is left");

        // The database alone looks whole: only a head kept outside it shows what is gone.
        let alone = node.root().join(format!("cut-{cut}-alone"));
        copy_dir(&copy, &alone);
        std::fs::remove_file(alone.join("audit-heads.jsonl")).expect("remove the head file");
        let out = Node::audit_verify(&alone);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && stdout.contains("audit: OK"), "{stdout}");
        assert!(stdout.contains("no signed head kept outside the database was checked"), "{stdout}");

        let finding = broken(&copy);
        assert!(
            finding.contains(&format!(
                "checkpoint DE #{last}: record #{last} is missing, the records end at #{keep}"
            )) && finding.contains("signed head from audit-heads.jsonl"),
            "names DE, the head's #{last} and the last record #{keep}: {finding}"
        );

        // The same cut, the head file gone too: the heads the hub kept still show it.
        let hub_dir = node.root().join(format!("hub-{cut}"));
        let heads = node.root().join(format!("hub-{cut}-heads.jsonl"));
        heads_at_the_hub(&hub_dir, &head, &heads);
        let exported: serde_json::Value =
            serde_json::from_str(std::fs::read_to_string(&heads).expect("heads").trim())
                .expect("one JSON line");
        assert_eq!(exported, head, "the hub exports the head DE sent, exactly");
        let out = verify_with(&alone, &["--heads", heads.to_str().expect("UTF-8 path")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(
            stderr.starts_with("audit: BROKEN: ")
                && stderr.contains(&format!("record #{last} is missing, the records end at #{keep}"))
                && stderr.contains(&format!("signed head from {}", heads.display())),
            "{stderr}"
        );
    }

    // A head file whose head was altered is refused, naming it: the signature no longer holds.
    let forged = node.root().join("forged-head");
    copy_dir(&data, &forged);
    let mut altered = head;
    altered["seq"] = serde_json::json!(last + 5);
    std::fs::write(forged.join("audit-heads.jsonl"), format!("{altered}\n")).expect("write");
    let finding = broken(&forged);
    assert!(
        finding.contains(&format!("checkpoint DE #{}: signature invalid", last + 5))
            && finding.contains("signed head from audit-heads.jsonl"),
        "{finding}"
    );
}

#[test]
fn a_running_node_signs_its_tail_with_no_further_request_and_keeps_the_head_in_its_file() {
    let node = Node::new("timer", "");
    node.seed(10);
    let pharmacy = node.client("PHARMACY", "DE-PH-1");
    let server = node.start();
    let base = server.base.as_str();
    let http = http();
    let ph = token(&http, base, &pharmacy);
    for i in 0..5 {
        pack(&http, base, &ph, "supply", &pack_body(&format!("timer-{i}"), &serial(i))).ok("supply");
    }
    // No request comes any more: the node signs the tail by itself, and the head reaches the file:
    // looked at each time the node writes it.
    let data = node.data_dir();
    let mut seen = (0, None);
    let last = common::when_written(&data, "audit-heads.jsonl", common::WAIT_LIMIT, || {
        let (last, _) = ends(&data);
        let head = std::fs::read_to_string(data.join("audit-heads.jsonl")).ok().map(|_| head_of(&data));
        let signed = last >= 6 && head.as_ref().and_then(|h| h["seq"].as_u64()) == Some(last);
        seen = (last, head);
        signed.then_some(last)
    })
    .unwrap_or_else(|| panic!("no head of #{} in the file within 30 s: {:?}", seen.0, seen.1));
    // A power cut now: nothing is signed at a stop, and yet the file vouches for every record.
    server.kill();
    checkpoint(&data);
    assert_eq!(ends(&data), (last, last), "the database holds the checkpoint the file holds");
    intact(&data);
    cut_off(&data, last - 1);
    let finding = broken(&data);
    assert!(finding.contains(&format!("checkpoint DE #{last}: record #{last} is missing")), "{finding}");
}
