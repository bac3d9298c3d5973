//! The CA directory: what `create` writes, what `open` reads back and refuses, and what issuing
//! and revoking change on disk.

use std::fs;
use std::time::{Duration, UNIX_EPOCH};

use openmvs_pki::{
    CA_CERT_FILE, CA_KEY_FILE, CA_VALIDITY_DAYS, CRL_FILE, CertKind, CertificateAuthority, ClientKind,
    ISSUED_FILE, Identity, IssuedRecord, PkiError, SERIAL_FILE,
};

use crate::support::{FIXED_NOW_SECS, fixed_now, fresh_dir};

fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

#[test]
fn creating_then_opening_a_ca_round_trips_its_certificate_records_and_crl() {
    let dir = fresh_dir("round_trip");
    let mut ca = CertificateAuthority::create(&dir, "OpenMVS Hub CA", fixed_now()).expect("create");
    ca.issue_server(&["localhost", "127.0.0.1"], 30, fixed_now()).expect("server");
    let obp = ca.issue_client(ClientKind::Obp, "acme-pharma", 30, fixed_now()).expect("obp");
    ca.issue_client(ClientKind::National("DE".to_owned()), "national-de", 30, fixed_now()).expect("national");
    ca.revoke(obp.serial, fixed_now() + days(1)).expect("revoke");

    let opened = CertificateAuthority::open(&dir).expect("open");
    assert_eq!(opened.common_name(), "OpenMVS Hub CA");
    assert_eq!(opened.ca_pem(), ca.ca_pem());
    assert_eq!(opened.ca_der(), ca.ca_der());
    assert_eq!(opened.not_after(), ca.not_after());
    assert_eq!(opened.issued(), ca.issued());
    assert_eq!(opened.crl_pem(), ca.crl_pem());
    assert_eq!(opened.crl_der(), ca.crl_der());
    assert_eq!(opened.ca_cert_path(), dir.join(CA_CERT_FILE));
    assert_eq!(fs::read_to_string(dir.join(CA_CERT_FILE)).expect("ca.pem"), ca.ca_pem());
    assert_eq!(fs::read_to_string(dir.join(CRL_FILE)).expect("crl.pem"), ca.crl_pem());
}

#[test]
fn issued_certificates_are_recorded_with_kind_name_and_validity() {
    let dir = fresh_dir("records");
    let mut ca = CertificateAuthority::create(&dir, "OpenMVS Hub CA", fixed_now()).expect("create");
    let server = ca.issue_server(&["localhost", "127.0.0.1"], 30, fixed_now()).expect("server");
    let hub = ca.issue_client(ClientKind::Hub, "hub", 365, fixed_now()).expect("hub");
    let de =
        ca.issue_client(ClientKind::National("DE".to_owned()), "national-de", 365, fixed_now()).expect("de");
    let obp = ca.issue_client(ClientKind::Obp, "acme-pharma", 365, fixed_now()).expect("obp");

    // Serial 1 is the CA's own; issued certificates count up from 2.
    assert_eq!([server.serial, hub.serial, de.serial, obp.serial], [2, 3, 4, 5]);
    assert_eq!(server.not_after, fixed_now() + days(30));
    assert_eq!(obp.not_after, fixed_now() + days(365));
    let expected: Vec<(u64, CertKind, &str)> = vec![
        (2, CertKind::Server, "localhost,127.0.0.1"),
        (3, CertKind::Hub, "hub.openmvs"),
        (4, CertKind::National, "de.national.openmvs"),
        (5, CertKind::Obp, "acme-pharma.obp.openmvs"),
    ];
    let recorded: Vec<(u64, CertKind, &str)> =
        ca.issued().iter().map(|r| (r.serial, r.kind, r.name.as_str())).collect();
    assert_eq!(recorded, expected);
    let identities: Vec<Option<Identity>> = ca.issued().iter().map(IssuedRecord::identity).collect();
    assert_eq!(
        identities,
        [
            None,
            Some(Identity::Hub),
            Some(Identity::National("DE".to_owned())),
            Some(Identity::Obp("acme-pharma".to_owned()))
        ]
    );

    assert_eq!(fs::read_to_string(dir.join(SERIAL_FILE)).expect("serial"), "6\n");
    assert_eq!(
        fs::read_to_string(dir.join(ISSUED_FILE)).expect("issued.tsv"),
        "serial\tkind\tname\tnot_after\trevoked_at\n\
         2\tserver\tlocalhost,127.0.0.1\t2026-01-31T00:00:00Z\t\n\
         3\thub\thub.openmvs\t2027-01-01T00:00:00Z\t\n\
         4\tnational\tde.national.openmvs\t2027-01-01T00:00:00Z\t\n\
         5\tobp\tacme-pharma.obp.openmvs\t2027-01-01T00:00:00Z\t\n"
    );
}

#[test]
fn issuing_continues_the_serials_after_reopening() {
    let dir = fresh_dir("serials_after_reopen");
    let mut ca = CertificateAuthority::create(&dir, "OpenMVS Hub CA", fixed_now()).expect("create");
    ca.issue_client(ClientKind::Obp, "first", 30, fixed_now()).expect("first");
    drop(ca);
    let mut ca = CertificateAuthority::open(&dir).expect("open");
    let second = ca.issue_client(ClientKind::Obp, "second", 30, fixed_now()).expect("second");
    assert_eq!(second.serial, 3);
    assert_eq!(ca.issued().len(), 2);
}

#[test]
fn creating_a_ca_where_one_exists_is_refused_and_leaves_it_untouched() {
    let dir = fresh_dir("create_twice");
    let ca = CertificateAuthority::create(&dir, "OpenMVS Hub CA", fixed_now()).expect("create");
    let key_before = fs::read(dir.join(CA_KEY_FILE)).expect("ca.key");

    let err = CertificateAuthority::create(&dir, "Another CA", fixed_now()).expect_err("second create");
    assert!(matches!(&err, PkiError::AlreadyExists(path) if *path == dir.join(CA_CERT_FILE)), "{err:?}");
    assert!(err.to_string().contains("refusing to overwrite"), "{err}");
    assert_eq!(fs::read_to_string(dir.join(CA_CERT_FILE)).expect("ca.pem"), ca.ca_pem());
    assert_eq!(fs::read(dir.join(CA_KEY_FILE)).expect("ca.key"), key_before);
}

#[cfg(unix)]
#[test]
fn the_ca_key_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = fresh_dir("key_mode");
    CertificateAuthority::create(&dir, "OpenMVS Hub CA", fixed_now()).expect("create");
    let mode = fs::metadata(dir.join(CA_KEY_FILE)).expect("ca.key").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    let key = fs::read_to_string(dir.join(CA_KEY_FILE)).expect("ca.key");
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "not PKCS#8: {}", &key[..30]);
}

#[test]
fn no_temporary_files_are_left_in_the_directory() {
    let dir = fresh_dir("no_temporaries");
    let mut ca = CertificateAuthority::create(&dir, "OpenMVS Hub CA", fixed_now()).expect("create");
    let obp = ca.issue_client(ClientKind::Obp, "acme", 30, fixed_now()).expect("obp");
    ca.revoke(obp.serial, fixed_now()).expect("revoke");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    assert_eq!(names, ["ca.key", "ca.pem", "crl.pem", "issued.tsv", "serial"]);
}

#[test]
fn opening_a_directory_without_a_ca_names_the_missing_file() {
    let dir = fresh_dir("open_empty");
    fs::create_dir_all(&dir).expect("dir");
    let err = CertificateAuthority::open(&dir).expect_err("open");
    assert!(matches!(&err, PkiError::Io { path, .. } if *path == dir.join(CA_CERT_FILE)), "{err:?}");
    assert!(err.to_string().starts_with(&dir.join(CA_CERT_FILE).display().to_string()), "{err}");
}

#[test]
fn a_ca_key_that_does_not_match_its_certificate_is_refused_at_open() {
    let dir = fresh_dir("swapped_key");
    let other = fresh_dir("swapped_key_other");
    CertificateAuthority::create(&dir, "OpenMVS Hub CA", fixed_now()).expect("create");
    CertificateAuthority::create(&other, "OpenMVS Hub CA", fixed_now()).expect("create other");
    fs::copy(other.join(CA_KEY_FILE), dir.join(CA_KEY_FILE)).expect("swap key");
    let err = CertificateAuthority::open(&dir).expect_err("open");
    assert!(matches!(&err, PkiError::Corrupt { path, .. } if *path == dir.join(CA_KEY_FILE)), "{err:?}");
    assert!(err.to_string().contains("not the key of the certificate"), "{err}");
}

#[test]
fn a_record_at_or_above_the_next_serial_is_refused_at_open() {
    let dir = fresh_dir("serial_behind");
    let mut ca = CertificateAuthority::create(&dir, "OpenMVS Hub CA", fixed_now()).expect("create");
    ca.issue_client(ClientKind::Obp, "acme", 30, fixed_now()).expect("obp");
    // A serial file set back would hand out serial 2 a second time.
    fs::write(dir.join(SERIAL_FILE), "2\n").expect("write serial");
    let err = CertificateAuthority::open(&dir).expect_err("open");
    assert!(matches!(&err, PkiError::Corrupt { path, .. } if *path == dir.join(ISSUED_FILE)), "{err:?}");
    assert!(err.to_string().contains("serial 2"), "{err}");
}

#[test]
fn a_damaged_record_line_is_named_at_open() {
    let dir = fresh_dir("damaged_record");
    let mut ca = CertificateAuthority::create(&dir, "OpenMVS Hub CA", fixed_now()).expect("create");
    ca.issue_client(ClientKind::Obp, "acme", 30, fixed_now()).expect("obp");
    let text = fs::read_to_string(dir.join(ISSUED_FILE)).expect("issued.tsv");
    fs::write(dir.join(ISSUED_FILE), text.replace("2026-01-31", "2026-01-32")).expect("damage");
    let err = CertificateAuthority::open(&dir).expect_err("open");
    assert!(err.to_string().contains("issued.tsv: line 2: \"2026-01-32T00:00:00Z\" is not a time"), "{err}");
}

#[test]
fn invalid_obp_ids_are_refused_naming_the_rule_and_nothing_is_issued() {
    let dir = fresh_dir("invalid_ids");
    let mut ca = CertificateAuthority::create(&dir, "OpenMVS Hub CA", fixed_now()).expect("create");
    let too_long = "a".repeat(41);
    for id in ["", "Acme", "acme_pharma", "acme.pharma", "-acme", "acme-", too_long.as_str()] {
        let err = ca.issue_client(ClientKind::Obp, id, 30, fixed_now()).expect_err(id);
        assert!(matches!(&err, PkiError::InvalidClientId { id: given, .. } if given == id), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("1-40 characters of a-z, 0-9 and '-', not starting or ending with '-'"),
            "{id}: {message}"
        );
    }
    assert!(ca.issued().is_empty());
    assert_eq!(fs::read_to_string(dir.join(SERIAL_FILE)).expect("serial"), "2\n");
}

#[test]
fn markets_must_be_two_upper_case_letters() {
    let mut ca =
        CertificateAuthority::create(&fresh_dir("markets"), "OpenMVS Hub CA", fixed_now()).expect("create");
    for market in ["de", "DEU", "D", ""] {
        let err = ca
            .issue_client(ClientKind::National(market.to_owned()), "national", 30, fixed_now())
            .expect_err(market);
        assert!(matches!(&err, PkiError::InvalidMarket(m) if m == market), "{err:?}");
    }
    assert!(ca.issued().is_empty());
}

#[test]
fn server_names_must_be_dns_names_or_ip_addresses_outside_the_client_namespace() {
    let mut ca = CertificateAuthority::create(&fresh_dir("server_names"), "OpenMVS Hub CA", fixed_now())
        .expect("create");
    for name in
        ["", "Localhost", "exa mple.org", "*.example.org", "-a.example", "a..b", "hub.openmvs", "openmvs"]
    {
        let err = ca.issue_server(&["localhost", name], 30, fixed_now()).expect_err(name);
        assert!(matches!(&err, PkiError::InvalidServerName { name: n, .. } if n == name), "{err:?}");
    }
    assert!(matches!(ca.issue_server(&[], 30, fixed_now()), Err(PkiError::NoServerNames)));
    for names in [&["::1"][..], &["hub.example.org", "10.0.0.7"]] {
        ca.issue_server(names, 30, fixed_now()).expect("acceptable names");
    }
    assert_eq!(ca.issued().len(), 2);
}

#[test]
fn a_validity_of_zero_days_is_refused() {
    let mut ca =
        CertificateAuthority::create(&fresh_dir("zero_days"), "OpenMVS Hub CA", fixed_now()).expect("create");
    let err = ca.issue_client(ClientKind::Obp, "acme", 0, fixed_now()).expect_err("zero days");
    assert!(matches!(err, PkiError::InvalidValidity(0)), "{err:?}");
}

#[test]
fn a_certificate_may_not_outlive_the_ca() {
    let mut ca =
        CertificateAuthority::create(&fresh_dir("outlive"), "OpenMVS Hub CA", fixed_now()).expect("create");
    assert_eq!(ca.not_after(), fixed_now() + days(u64::from(CA_VALIDITY_DAYS)));
    ca.issue_client(ClientKind::Obp, "longest", CA_VALIDITY_DAYS, fixed_now()).expect("as long as the CA");
    let err = ca
        .issue_client(ClientKind::Obp, "too-long", 1, fixed_now() + days(u64::from(CA_VALIDITY_DAYS)))
        .expect_err("later");
    assert!(matches!(err, PkiError::OutlivesCa { .. }), "{err:?}");
    assert_eq!(ca.issued().len(), 1);
}

#[test]
fn times_before_1970_are_refused() {
    let err =
        CertificateAuthority::create(&fresh_dir("before_1970"), "CA", UNIX_EPOCH - Duration::from_secs(1))
            .expect_err("1969");
    assert!(matches!(err, PkiError::TimeOutOfRange), "{err:?}");
    // A sub-second "now" is cut to the second, as certificates keep it.
    let mut ca = CertificateAuthority::create(&fresh_dir("subsecond"), "CA", fixed_now()).expect("create");
    let issued = ca
        .issue_client(ClientKind::Obp, "acme", 1, fixed_now() + Duration::from_millis(999))
        .expect("issued");
    assert_eq!(issued.not_after, UNIX_EPOCH + Duration::from_secs(FIXED_NOW_SECS + 86_400));
}

#[test]
fn revoking_marks_the_record_and_revoking_again_changes_nothing() {
    let dir = fresh_dir("revoke_twice");
    let mut ca = CertificateAuthority::create(&dir, "OpenMVS Hub CA", fixed_now()).expect("create");
    let obp = ca.issue_client(ClientKind::Obp, "acme", 30, fixed_now()).expect("obp");
    let crl_at_creation = ca.crl_pem().to_owned();

    assert!(ca.revoke(obp.serial, fixed_now() + days(2)).expect("revoke"));
    assert_eq!(ca.issued()[0].revoked_at, Some(fixed_now() + days(2)));
    assert_ne!(ca.crl_pem(), crl_at_creation);
    let tsv = fs::read_to_string(dir.join(ISSUED_FILE)).expect("issued.tsv");
    assert!(tsv.ends_with("2\tobp\tacme.obp.openmvs\t2026-01-31T00:00:00Z\t2026-01-03T00:00:00Z\n"), "{tsv}");
    let crl_after_first = fs::read_to_string(dir.join(CRL_FILE)).expect("crl.pem");

    assert!(!ca.revoke(obp.serial, fixed_now() + days(5)).expect("revoke again"));
    assert_eq!(ca.issued()[0].revoked_at, Some(fixed_now() + days(2)));
    assert_eq!(fs::read_to_string(dir.join(ISSUED_FILE)).expect("issued.tsv"), tsv);
    assert_eq!(fs::read_to_string(dir.join(CRL_FILE)).expect("crl.pem"), crl_after_first);
    assert_eq!(ca.crl_pem(), crl_after_first);
}

#[test]
fn revoking_an_unknown_serial_is_an_error_naming_it() {
    let dir = fresh_dir("revoke_unknown");
    let mut ca = CertificateAuthority::create(&dir, "OpenMVS Hub CA", fixed_now()).expect("create");
    ca.issue_client(ClientKind::Obp, "acme", 30, fixed_now()).expect("obp");
    let crl = ca.crl_pem().to_owned();
    // Serial 1 is the CA certificate itself, which is not revocable through its own list.
    for serial in [1, 3, 999] {
        let err = ca.revoke(serial, fixed_now()).expect_err("unknown serial");
        assert!(matches!(err, PkiError::UnknownSerial(s) if s == serial), "{err:?}");
        assert!(err.to_string().contains(&format!("serial {serial}")), "{err}");
    }
    assert_eq!(ca.crl_pem(), crl);
    assert_eq!(ca.issued()[0].revoked_at, None);
}
