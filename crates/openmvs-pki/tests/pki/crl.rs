//! The revocation list, read back with webpki's parser rather than the code that wrote it.

use std::time::Duration;

use openmvs_pki::{CertificateAuthority, ClientKind};
use webpki::BorrowedCertRevocationList;

use crate::support::{fixed_now, fresh_dir};

/// The serial numbers a DER revocation list names, in its order.
fn revoked_serials(crl: &[u8]) -> Vec<u64> {
    let list = BorrowedCertRevocationList::from_der(crl).expect("a CRL webpki accepts");
    (&list)
        .into_iter()
        .map(|entry| {
            let entry = entry.expect("revoked entry");
            // DER integers carry a leading zero byte when the top bit is set; u64 has no sign.
            let bytes: Vec<u8> = entry.serial_number.iter().copied().skip_while(|b| *b == 0).collect();
            assert!(bytes.len() <= 8, "serial {:?} does not fit in a u64", entry.serial_number);
            bytes.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b))
        })
        .collect()
}

#[test]
fn the_crl_lists_exactly_the_revoked_serials() {
    let dir = fresh_dir("crl_serials");
    let mut ca = CertificateAuthority::create(&dir, "OpenMVS Hub CA", fixed_now()).expect("create");
    assert_eq!(revoked_serials(&ca.crl_der()), Vec::<u64>::new(), "a new CA revokes nothing");

    let serials: Vec<u64> = (0..4)
        .map(|i| ca.issue_client(ClientKind::Obp, &format!("obp-{i}"), 30, fixed_now()).expect("obp").serial)
        .collect();
    ca.revoke(serials[1], fixed_now() + Duration::from_secs(60)).expect("revoke");
    assert_eq!(revoked_serials(&ca.crl_der()), [serials[1]]);
    ca.revoke(serials[3], fixed_now() + Duration::from_secs(120)).expect("revoke");
    ca.revoke(serials[1], fixed_now() + Duration::from_secs(180)).expect("revoke again");
    assert_eq!(revoked_serials(&ca.crl_der()), [serials[1], serials[3]]);

    // What is on disk is the same list, and so is what a reopened CA serves.
    let reopened = CertificateAuthority::open(&dir).expect("open");
    assert_eq!(revoked_serials(&reopened.crl_der()), [serials[1], serials[3]]);
}
