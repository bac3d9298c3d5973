//! A test PKI made with rcgen: one CA that the national system and the fake hub trust, server
//! certificates for both, the hub's client certificate, impostors, a revoked certificate with
//! its CRL, and a certificate from a CA nobody trusts.

use std::sync::OnceLock;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber, date_time_ymd,
};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The name the national system expects on the hub's client certificate.
pub const HUB_NAME: &str = "hub.openmvs";
/// The name on the national system's own client certificate (towards the hub).
pub const NATIONAL_NAME: &str = "de.national.openmvs";

/// A certificate and its key.
pub struct Leaf {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The PKCS#8 key, PEM.
    pub key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Leaf {
    /// Certificate then key, PEM: what `reqwest::Identity::from_pem` and `HttpHubLink` take.
    pub fn identity_pem(&self) -> Vec<u8> {
        format!("{}{}", self.cert_pem, self.key_pem).into_bytes()
    }

    /// The certificate chain and key for a server.
    pub fn server_material(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (vec![self.cert_der.clone()], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())))
    }
}

/// Everything the tests need.
pub struct Pki {
    /// The trusted CA, PEM.
    pub ca_pem: String,
    /// The trusted CA, DER.
    pub ca_der: CertificateDer<'static>,
    /// Server certificate for `localhost` and `127.0.0.1`.
    pub server: Leaf,
    /// The hub's client certificate (DNS SAN `hub.openmvs`).
    pub hub: Leaf,
    /// The national system's client certificate towards the hub.
    pub national: Leaf,
    /// Issued by the trusted CA, but for another name.
    pub impostor: Leaf,
    /// Issued by the trusted CA with the hub's name as common name only; its SAN is another name.
    pub cn_impostor: Leaf,
    /// Names the hub, but issued by a CA nobody here trusts.
    pub rogue: Leaf,
    /// Names the hub, issued by the trusted CA, and revoked in [`Pki::crl`].
    pub revoked: Leaf,
    /// The trusted CA's revocation list, revoking [`Pki::revoked`].
    pub crl: CertificateRevocationListDer<'static>,
}

const REVOKED_SERIAL: u64 = 0x0bad;

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    p.distinguished_name = dn;
    p
}

fn leaf(
    issuer: &Issuer<'_, &KeyPair>,
    common_name: &str,
    sans: &[&str],
    eku: ExtendedKeyUsagePurpose,
    serial: u64,
) -> Leaf {
    let key = KeyPair::generate().expect("key pair");
    let mut p =
        CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).expect("SANs");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    p.distinguished_name = dn;
    p.extended_key_usages = vec![eku];
    p.serial_number = Some(SerialNumber::from(serial));
    let cert = p.signed_by(&key, issuer).expect("signing a leaf");
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().clone(),
        key_der: key.serialize_der(),
    }
}

fn build() -> Pki {
    use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let ca_key = KeyPair::generate().expect("CA key");
    let params = ca_params("OpenMVS test CA");
    let ca_cert = params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(params, &ca_key);

    let rogue_key = KeyPair::generate().expect("rogue CA key");
    let rogue_issuer = Issuer::new(ca_params("Nobody's CA"), &rogue_key);

    let crl = CertificateRevocationListParams {
        this_update: date_time_ymd(2024, 1, 1),
        next_update: date_time_ymd(2099, 1, 1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from(REVOKED_SERIAL),
            revocation_time: date_time_ymd(2024, 1, 1),
            reason_code: Some(RevocationReason::KeyCompromise),
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .expect("CRL");

    Pki {
        ca_pem: ca_cert.pem(),
        ca_der: ca_cert.der().clone(),
        server: leaf(&issuer, "localhost", &["localhost", "127.0.0.1"], ServerAuth, 10),
        hub: leaf(&issuer, HUB_NAME, &[HUB_NAME], ClientAuth, 11),
        national: leaf(&issuer, NATIONAL_NAME, &[NATIONAL_NAME], ClientAuth, 12),
        impostor: leaf(&issuer, "pharmacy.example", &["pharmacy.example"], ClientAuth, 13),
        cn_impostor: leaf(&issuer, HUB_NAME, &["other.example"], ClientAuth, 14),
        rogue: leaf(&rogue_issuer, HUB_NAME, &[HUB_NAME], ClientAuth, 15),
        revoked: leaf(&issuer, HUB_NAME, &[HUB_NAME], ClientAuth, REVOKED_SERIAL),
        crl: crl.der().clone(),
    }
}

/// The one PKI of this test binary, made on first use.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(build)
}

/// An HTTPS client that trusts the test CA and presents `identity`, if any.
pub fn client(identity: Option<&Leaf>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(pki().ca_pem.as_bytes()).expect("CA PEM");
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(std::time::Duration::from_secs(20));
    if let Some(leaf) = identity {
        b = b.identity(reqwest::Identity::from_pem(&leaf.identity_pem()).expect("identity PEM"));
    }
    b.build().expect("HTTPS client")
}
