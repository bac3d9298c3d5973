//! End-to-end tests of the `openmvs` binary: `scan` answers every vector of the scan test vectors,
//! and `return-codes` prints the whole catalogue.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const TODAY: &str = "2026-11-29";

fn openmvs(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_openmvs"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openmvs runs");
    if let Some(bytes) = stdin {
        child.stdin.take().expect("stdin").write_all(bytes).expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("openmvs exits")
}

/// Scans `input` from standard input and checks the printed fields, or the refusal.
fn check(input: &[u8], expected: Result<[&str; 5], &str>) {
    let out = openmvs(&["scan", "-", "--today", TODAY], Some(input));
    let shown = String::from_utf8_lossy(input);
    match expected {
        Ok([scheme, product_code, serial, batch, expiry]) => {
            assert!(out.status.success(), "{shown}: {}", String::from_utf8_lossy(&out.stderr));
            let v: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
            assert_eq!(v["scheme"], scheme, "{shown}");
            assert_eq!(v["product_code"], product_code, "{shown}");
            assert_eq!(v["serial"], serial, "{shown}");
            assert_eq!(v["batch"], batch, "{shown}");
            assert_eq!(v["expiry"], expiry, "{shown}");
            assert!(v["warnings"].as_array().is_some_and(Vec::is_empty), "{shown}: {v}");
        }
        Err(needle) => {
            assert_eq!(out.status.code(), Some(2), "{shown}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
            assert!(err.contains(needle), "{shown}: stderr '{err}' lacks '{needle}'");
            assert!(out.stdout.is_empty());
        }
    }
}

const V1: &[u8] = b"]d201095011015300031727123110ABC123\x1d21X4K9P7Q2M8R5";

#[test]
fn scan_answers_every_vector_of_the_specification() {
    let v1 = ["GTIN", "09501101530003", "X4K9P7Q2M8R5", "ABC123", "271231"];
    check(V1, Ok(v1));
    check(
        b"010950110153000321SN-0000000001\x1d10LOT/42\x1d17280200\r",
        Ok(["GTIN", "09501101530003", "SN-0000000001", "LOT/42", "280200"]),
    );
    check(
        b"]d201056012345678927141234567\x1d1727063010B2024-07\x1d21PT00000000000000001",
        Ok(["GTIN", "05601234567892", "PT00000000000000001", "B2024-07", "270630"]),
    );
    check(
        b"]d201041500375286431729033110X1Y2\x1d2112345678901234567890",
        Ok(["GTIN", "04150037528643", "12345678901234567890", "X1Y2", "290331"]),
    );
    check(
        b"[)>\x1e06\x1d9N110375286414\x1d1TABC-123\x1dD271231\x1dSK2L8M4N6P\x1e\x04",
        Ok(["PPN", "110375286414", "K2L8M4N6P", "ABC-123", "271231"]),
    );
    check(b"(01)09501101530003(17)271231(10)ABC123(21)X4K9P7Q2M8R5", Ok(v1));
    check(
        b"https://id.example.org/01/09501101530003/10/LOT%2F42/21/X4K9P7Q2M8R5?17=271231",
        Ok(["GTIN", "09501101530003", "X4K9P7Q2M8R5", "LOT/42", "271231"]),
    );
    check(b"]d201095011015300041727123110ABC123\x1d21X4K9P7Q2M8R5", Err("expected 3"));
    check(b"]d201095011015300031727123110ABC12321X4K9P7Q2M8R5", Err("21"));
    check(b"]d201095011015300031727130110ABC123\x1d21X4K9P7Q2M8R5", Err("month 13"));
    check(b"]d201095011015300031727022910ABC123\x1d21X4K9P7Q2M8R5", Err("29"));
    check(
        b"]d201095011015300031728022910ABC123\x1d21X4K9P7Q2M8R5",
        Ok(["GTIN", "09501101530003", "X4K9P7Q2M8R5", "ABC123", "280229"]),
    );
    check(b"]d201095011015300031727123110ABC123\x1d21ABCDEFGHIJKLMNOPQRSTU", Err("21"));
}

#[test]
fn scan_prints_the_expiry_date_and_the_reimbursement_number() {
    let out = openmvs(
        &["scan", "-", "--today", TODAY],
        Some(b"]d201056012345678927141234567\x1d1728020010B2024-07\x1d21PT01\n"),
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["expiry_date"], "2028-02-29");
    assert_eq!(v["nhrn"]["ai"], "714");
    assert_eq!(v["nhrn"]["value"], "1234567");
}

#[test]
fn scan_takes_its_input_as_an_argument_too() {
    let out =
        openmvs(&["scan", "(01)09501101530003(17)271231(10)ABC123(21)X4K9P7Q2M8R5", "--today", TODAY], None);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["nhrn"], Value::Null);
    assert_eq!(v["expiry_date"], "2027-12-31");
}

#[test]
fn scan_strips_only_one_trailing_line_end_from_stdin() {
    let mut input = V1.to_vec();
    input.extend_from_slice(b"\r\n");
    let out = openmvs(&["scan", "-", "--today", TODAY], Some(&input));
    assert!(out.status.success());
    input.extend_from_slice(b"\n");
    let out = openmvs(&["scan", "-", "--today", TODAY], Some(&input));
    assert_eq!(out.status.code(), Some(2), "a second line end is data, and not set 82");
}

#[test]
fn scan_refuses_a_bad_today_with_a_clear_message() {
    let out = openmvs(&["scan", "x", "--today", "2026-02-30"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--today"));
}

#[test]
fn return_codes_prints_the_whole_catalogue() {
    let out = openmvs(&["return-codes"], None);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let codes: Vec<&str> =
        v["return_codes"].as_array().unwrap().iter().map(|r| r["code"].as_str().unwrap()).collect();
    for c in [
        "NMVS_SUCCESS",
        "NMVS_NC_PCK_22",
        "NMVS_FE_SCN_01",
        "NMVS_TI_UN_01",
        "NMVS_FI_SE_CLI_01",
        "A16",
        "I1",
    ] {
        assert!(codes.contains(&c), "{c}");
    }
}

/// Runs `openmvs args` with its standard output read by a reader that takes at most `keep` bytes
/// and goes away (as `| head -c keep` does); returns the exit status and standard error.
fn with_reader_gone(args: &[&str], keep: usize) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_openmvs"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openmvs runs");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut taken = vec![0u8; keep];
    if keep > 0 {
        std::io::Read::read_exact(&mut stdout, &mut taken).expect("the first bytes");
    }
    // The read end closes here: the next write meets a pipe nobody reads.
    drop(stdout);
    let out = child.wait_with_output().expect("openmvs exits");
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn output_to_a_reader_that_went_away_ends_quietly_with_status_zero() {
    // Closed before the first byte is written: the write fails for certain, whatever the pipe
    // buffer holds; after a few bytes read: as `openmvs return-codes | head` does.
    for (args, keep) in [
        (&["return-codes"][..], 0),
        (&["return-codes"][..], 16),
        (&["scan", "(01)09501101530003(17)271231(10)ABC123(21)X4K9P7Q2M8R5", "--today", TODAY][..], 0),
    ] {
        let (status, stderr) = with_reader_gone(args, keep);
        assert!(!stderr.contains("panicked"), "openmvs {args:?}: {stderr}");
        assert!(stderr.is_empty(), "openmvs {args:?} said: {stderr}");
        assert_eq!(status.code(), Some(0), "openmvs {args:?}: {status}");
    }
}

#[test]
fn the_demo_names_an_unknown_market_once_with_the_rule() {
    let dir = std::env::temp_dir().join(format!("openmvs-cli-markets-{}", std::process::id()));
    let out = openmvs(&["demo", "--markets", "DE,XX", "--data-dir", dir.to_str().expect("UTF-8 path")], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("openmvs: --markets: 'XX' is not a market"), "{err}");
    assert_eq!(err.matches("XX").count(), 1, "the value once: {err}");
    assert!(err.contains("separated by commas"), "the rule: {err}");
    assert!(!dir.exists(), "nothing was created for a refused command line");
    let out = openmvs(&["demo", "--markets", "DE,de", "--data-dir", dir.to_str().expect("UTF-8 path")], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("openmvs: --markets: 'de' is not a market code (two upper-case letters"),
        "{err}"
    );
}
