//! Real mutual-TLS handshakes with the CA's own certificates: the OpenMVS HTTPS server asks for
//! a client certificate, verifies it against the CA and its revocation list, and hands the
//! certificate's DNS names to the handler, which `identity_of` turns into an identity.

use std::time::{Duration, SystemTime};

use openmvs_pki::{CertificateAuthority, ClientKind, Identity, identity_of};

use crate::support::{fresh_dir, new_ca, server_cert, start, whoami_as};

fn identity_in(body: &str) -> Option<Identity> {
    identity_of(&body.split(',').map(str::to_owned).collect::<Vec<_>>())
}

#[tokio::test]
async fn an_obp_certificate_names_the_obp_to_the_server() {
    let mut ca = new_ca("handshake_obp");
    let server = server_cert(&mut ca);
    let obp = ca.issue_client(ClientKind::Obp, "acme-pharma", 30, SystemTime::now()).expect("obp");
    let handle = start(&ca, &server).await;

    let seen = whoami_as(&handle, ca.ca_pem(), Some(&obp)).await.expect("handshake");
    assert_eq!(seen, "acme-pharma.obp.openmvs");
    assert_eq!(identity_in(&seen), Some(Identity::Obp("acme-pharma".to_owned())));
    handle.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn national_and_hub_certificates_name_their_systems() {
    let mut ca = new_ca("handshake_national_hub");
    let server = server_cert(&mut ca);
    let de = ca
        .issue_client(ClientKind::National("DE".to_owned()), "national-de", 30, SystemTime::now())
        .expect("de");
    let hub = ca.issue_client(ClientKind::Hub, "hub", 30, SystemTime::now()).expect("hub");
    let handle = start(&ca, &server).await;

    let seen = whoami_as(&handle, ca.ca_pem(), Some(&de)).await.expect("national handshake");
    assert_eq!(seen, "de.national.openmvs");
    assert_eq!(identity_in(&seen), Some(Identity::National("DE".to_owned())));
    let seen = whoami_as(&handle, ca.ca_pem(), Some(&hub)).await.expect("hub handshake");
    assert_eq!(seen, "hub.openmvs");
    assert_eq!(identity_in(&seen), Some(Identity::Hub));
    handle.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_client_without_a_certificate_connects_but_names_no_one() {
    let mut ca = new_ca("handshake_anonymous");
    let server = server_cert(&mut ca);
    let handle = start(&ca, &server).await;
    let seen = whoami_as(&handle, ca.ca_pem(), None).await.expect("handshake");
    assert_eq!(seen, "anonymous");
    assert_eq!(identity_in(&seen), None);
    handle.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn certificates_issued_after_reopening_the_ca_chain_to_the_same_ca() {
    let dir = fresh_dir("handshake_reopened");
    let mut ca =
        CertificateAuthority::create(&dir, "OpenMVS Hub CA (test)", SystemTime::now()).expect("create");
    let server = server_cert(&mut ca);
    drop(ca);

    let mut ca = CertificateAuthority::open(&dir).expect("open");
    let obp = ca.issue_client(ClientKind::Obp, "after-reopen", 30, SystemTime::now()).expect("obp");
    let handle = start(&ca, &server).await;
    let seen = whoami_as(&handle, ca.ca_pem(), Some(&obp)).await.expect("handshake");
    assert_eq!(seen, "after-reopen.obp.openmvs");
    handle.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_revoked_certificate_fails_the_handshake_once_the_server_has_the_new_crl() {
    let mut ca = new_ca("handshake_revoked");
    let server = server_cert(&mut ca);
    let revoked = ca.issue_client(ClientKind::Obp, "acme-pharma", 30, SystemTime::now()).expect("obp");
    let other = ca.issue_client(ClientKind::Obp, "other-pharma", 30, SystemTime::now()).expect("other obp");
    let before = start(&ca, &server).await;
    assert_eq!(
        whoami_as(&before, ca.ca_pem(), Some(&revoked)).await.as_deref(),
        Ok("acme-pharma.obp.openmvs")
    );

    assert!(ca.revoke(revoked.serial, SystemTime::now()).expect("revoke"));
    // The running server still holds the old list: revocation reaches a server with its CRL.
    assert_eq!(
        whoami_as(&before, ca.ca_pem(), Some(&revoked)).await.as_deref(),
        Ok("acme-pharma.obp.openmvs")
    );
    before.shutdown(Duration::from_secs(1)).await;

    let after = start(&ca, &server).await;
    let refused = whoami_as(&after, ca.ca_pem(), Some(&revoked)).await;
    assert!(refused.as_ref().is_err_and(|e| e.contains("CertificateRevoked")), "{refused:?}");
    assert_eq!(whoami_as(&after, ca.ca_pem(), Some(&other)).await.as_deref(), Ok("other-pharma.obp.openmvs"));
    after.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_revoked_certificate_whose_serial_needs_a_sign_byte_is_refused_too() {
    // Serial 128 is 0x80, which DER writes with a leading zero byte to keep it positive. The
    // certificate and the list must encode it alike, or the revocation would silently not match.
    let mut ca = new_ca("handshake_revoked_128");
    let server = server_cert(&mut ca);
    let mut revoked = ca.issue_client(ClientKind::Obp, "many", 30, SystemTime::now()).expect("obp");
    while revoked.serial < 128 {
        revoked = ca.issue_client(ClientKind::Obp, "many", 30, SystemTime::now()).expect("obp");
    }
    assert_eq!(revoked.serial, 128);
    let other = ca.issue_client(ClientKind::Obp, "other", 30, SystemTime::now()).expect("other obp");
    ca.revoke(128, SystemTime::now()).expect("revoke");

    let handle = start(&ca, &server).await;
    let refused = whoami_as(&handle, ca.ca_pem(), Some(&revoked)).await;
    assert!(refused.as_ref().is_err_and(|e| e.contains("CertificateRevoked")), "{refused:?}");
    assert_eq!(whoami_as(&handle, ca.ca_pem(), Some(&other)).await.as_deref(), Ok("other.obp.openmvs"));
    handle.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_certificate_issued_by_another_ca_is_refused_at_the_handshake() {
    let mut ca = new_ca("handshake_foreign_ours");
    let server = server_cert(&mut ca);
    let ours = ca.issue_client(ClientKind::Obp, "acme-pharma", 30, SystemTime::now()).expect("ours");
    let handle = start(&ca, &server).await;
    // One foreign CA bears another name, so the server knows no such issuer; the other bears
    // ours exactly, so the chain is built to our CA and fails on the signature. Both certificates
    // name the OBP exactly as ours does; only their issuer differs.
    let foreign_cas = [
        (
            CertificateAuthority::create(
                &fresh_dir("handshake_foreign_other_name"),
                "Someone else's CA",
                SystemTime::now(),
            ),
            "UnknownCA",
        ),
        (
            CertificateAuthority::create(
                &fresh_dir("handshake_foreign_same_name"),
                ca.common_name(),
                SystemTime::now(),
            ),
            "DecryptError",
        ),
    ];
    for (foreign_ca, alert) in foreign_cas {
        let mut foreign_ca = foreign_ca.expect("foreign CA");
        let foreign =
            foreign_ca.issue_client(ClientKind::Obp, "acme-pharma", 30, SystemTime::now()).expect("foreign");
        let refused = whoami_as(&handle, ca.ca_pem(), Some(&foreign)).await;
        assert!(
            refused.as_ref().is_err_and(|e| e.contains(alert)),
            "{}: {refused:?}",
            foreign_ca.common_name()
        );
    }
    assert_eq!(whoami_as(&handle, ca.ca_pem(), Some(&ours)).await.as_deref(), Ok("acme-pharma.obp.openmvs"));
    handle.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_server_certificate_cannot_be_presented_as_a_client_identity() {
    // Server certificates carry the server-auth purpose only, so even one for a name that
    // looks like an identity could not log in; here it is one of the CA's own server certificates.
    let mut ca = new_ca("handshake_server_as_client");
    let server = server_cert(&mut ca);
    let impostor = ca.issue_server(&["acme-pharma.example"], 30, SystemTime::now()).expect("server cert");
    let handle = start(&ca, &server).await;
    let refused = whoami_as(&handle, ca.ca_pem(), Some(&impostor)).await;
    // rustls answers a certificate without the client-auth purpose with this alert.
    assert!(refused.as_ref().is_err_and(|e| e.contains("UnsupportedCertificate")), "{refused:?}");
    handle.shutdown(Duration::from_secs(1)).await;
}
