//! The certificate authority kept in a directory: creating and opening it, issuing server and
//! client certificates, revoking them, and the revocation list.

use std::fmt;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, RevokedCertParams,
    SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use crate::PkiError;
use crate::der::ca_facts;
use crate::files::{Access, read_text, write_atomic};
use crate::identity::{ClientKind, Identity, NAMESPACE_SUFFIX, check_client_id, check_market};
use crate::record::{CertKind, IssuedRecord, format_records, parse_records, rfc3339, to_datetime};

/// The CA certificate, PEM.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA's private key, PKCS#8 PEM, readable by its owner only.
pub const CA_KEY_FILE: &str = "ca.key";
/// The next serial number to issue, in decimal.
pub const SERIAL_FILE: &str = "serial";
/// One line per issued certificate: serial, kind, name, not_after, revoked_at (tab-separated).
pub const ISSUED_FILE: &str = "issued.tsv";
/// The current certificate revocation list, PEM.
pub const CRL_FILE: &str = "crl.pem";

/// How long a new CA certificate is valid.
pub const CA_VALIDITY_DAYS: u32 = 3650;
/// How far ahead a revocation list's next update is announced. The list is regenerated at every
/// revocation, not on a schedule; rustls, as the servers here use it, does not refuse a list whose
/// next update has passed, so this only tells stricter verifiers how fresh the list claims to be.
pub const CRL_LIFETIME_DAYS: u32 = 365;

/// Certificates start an hour before the moment they are issued, so that a peer whose clock is a
/// little behind the CA's does not refuse a certificate issued a moment ago.
const BACKDATE: Duration = Duration::hours(1);
/// The CA certificate's own serial; issued certificates count up from the next one.
const CA_SERIAL: u64 = 1;
/// The longest common name X.509 allows (ub-common-name).
const COMMON_NAME_MAX_LEN: usize = 64;

/// A certificate and its new key, just issued.
///
/// The key exists only here: the CA keeps no copy, so the caller must write it out (owner-only)
/// or hand it over before dropping this.
pub struct Issued {
    /// The serial number, which `issued.tsv` records it under and `revoke` takes.
    pub serial: u64,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The end of the validity, to the second.
    pub not_after: SystemTime,
    cert_der: CertificateDer<'static>,
    key_der: PrivatePkcs8KeyDer<'static>,
}

impl Issued {
    /// The certificate, DER, as a server's `cert_chain` takes it.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// The private key, DER, as a server's `key` takes it.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_der.clone_key())
    }

    /// The certificate followed by the key, PEM: what `reqwest::Identity::from_pem` takes.
    pub fn identity_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is left out: a debug print may end up in a log.
        f.debug_struct("Issued")
            .field("serial", &self.serial)
            .field("not_after", &rfc3339(self.not_after))
            .finish_non_exhaustive()
    }
}

/// The certificate authority of the European Hub, kept in a directory.
///
/// The directory holds [`CA_CERT_FILE`], [`CA_KEY_FILE`] (mode 0600), [`SERIAL_FILE`],
/// [`ISSUED_FILE`] and [`CRL_FILE`]. Every change replaces whole files atomically, so a crash
/// leaves each file either as it was or as it was meant to be. One process at a time may change
/// a CA: two writers at once could issue the same serial.
pub struct CertificateAuthority {
    dir: PathBuf,
    common_name: String,
    /// The CA's own parameters, rebuilt from its certificate when opened. Of these, signing
    /// uses the name, the key usages and the key identifier method, which are what a
    /// certificate's issuer name and authority key identifier are made from.
    params: CertificateParams,
    key: KeyPair,
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    ca_not_after: OffsetDateTime,
    next_serial: u64,
    issued: Vec<IssuedRecord>,
    crl_pem: String,
    crl_der: CertificateRevocationListDer<'static>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is left out: a debug print may end up in a log.
        f.debug_struct("CertificateAuthority")
            .field("dir", &self.dir)
            .field("common_name", &self.common_name)
            .field("next_serial", &self.next_serial)
            .field("issued", &self.issued.len())
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Creates a CA named `common_name` in `dir` (made if missing), valid for
    /// [`CA_VALIDITY_DAYS`] from `now`, with an empty revocation list. Refuses when `dir`
    /// already holds a CA certificate.
    pub fn create(dir: &Path, common_name: &str, now: SystemTime) -> Result<CertificateAuthority, PkiError> {
        if common_name.is_empty()
            || common_name.chars().count() > COMMON_NAME_MAX_LEN
            || common_name.chars().any(char::is_control)
        {
            return Err(PkiError::InvalidCommonName(common_name.to_owned()));
        }
        let ca_path = dir.join(CA_CERT_FILE);
        match ca_path.try_exists() {
            Ok(false) => {}
            Ok(true) => return Err(PkiError::AlreadyExists(ca_path)),
            Err(source) => return Err(PkiError::Io { path: ca_path, source }),
        }
        fs::create_dir_all(dir).map_err(|source| PkiError::Io { path: dir.to_path_buf(), source })?;

        let now = to_datetime(now)?;
        let mut params = ca_params(common_name);
        params.serial_number = Some(SerialNumber::from(CA_SERIAL));
        params.not_before = now.checked_sub(BACKDATE).ok_or(PkiError::TimeOutOfRange)?;
        params.not_after = days_after(now, CA_VALIDITY_DAYS)?;
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let crl = sign_crl(&params, &key, &[], now)?;
        let ca = CertificateAuthority {
            dir: dir.to_path_buf(),
            common_name: common_name.to_owned(),
            ca_not_after: params.not_after,
            params,
            ca_pem: cert.pem(),
            ca_der: cert.der().clone(),
            next_serial: CA_SERIAL + 1,
            issued: Vec::new(),
            crl_pem: crl.pem()?,
            crl_der: crl.der().clone(),
            key,
        };
        // ca.pem goes last because its presence is what makes the directory a CA. A crash
        // before it leaves files that `open` refuses and `create` overwrites; nothing was issued
        // with that key, so nothing is lost by replacing it.
        write_atomic(dir, CA_KEY_FILE, ca.key.serialize_pem().as_bytes(), Access::OwnerOnly)?;
        write_atomic(dir, SERIAL_FILE, format!("{}\n", ca.next_serial).as_bytes(), Access::Public)?;
        write_atomic(dir, ISSUED_FILE, format_records(&ca.issued).as_bytes(), Access::Public)?;
        write_atomic(dir, CRL_FILE, ca.crl_pem.as_bytes(), Access::Public)?;
        write_atomic(dir, CA_CERT_FILE, ca.ca_pem.as_bytes(), Access::Public)?;
        Ok(ca)
    }

    /// Opens the CA in `dir`, checking that its files agree: the key is the certificate's, and
    /// every recorded serial is below the next one and above the one before it.
    pub fn open(dir: &Path) -> Result<CertificateAuthority, PkiError> {
        let corrupt = |name: &str, problem: String| PkiError::Corrupt { path: dir.join(name), problem };

        let ca_pem = read_text(dir, CA_CERT_FILE)?;
        let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map_err(|e| corrupt(CA_CERT_FILE, format!("no PEM certificate: {e}")))?;
        let facts = ca_facts(&ca_der).map_err(|problem| corrupt(CA_CERT_FILE, problem.to_owned()))?;

        let key = KeyPair::from_pem(&read_text(dir, CA_KEY_FILE)?)
            .map_err(|e| corrupt(CA_KEY_FILE, format!("no PKCS#8 PEM key: {e}")))?;
        if key.subject_public_key_info() != facts.spki {
            return Err(corrupt(CA_KEY_FILE, format!("not the key of the certificate in {CA_CERT_FILE}")));
        }

        let serial_text = read_text(dir, SERIAL_FILE)?;
        let next_serial = serial_text
            .strip_suffix('\n')
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|s| *s > CA_SERIAL)
            .ok_or_else(|| {
                corrupt(SERIAL_FILE, format!("{serial_text:?} is not a serial number above {CA_SERIAL}"))
            })?;

        let issued =
            parse_records(&read_text(dir, ISSUED_FILE)?).map_err(|problem| corrupt(ISSUED_FILE, problem))?;
        let mut previous = CA_SERIAL;
        for record in &issued {
            if record.serial <= previous || record.serial >= next_serial {
                return Err(corrupt(
                    ISSUED_FILE,
                    format!(
                        "serial {} is not above the one before it ({previous}) and below the next serial ({next_serial})",
                        record.serial
                    ),
                ));
            }
            previous = record.serial;
        }

        let crl_pem = read_text(dir, CRL_FILE)?;
        let crl_der = CertificateRevocationListDer::from_pem_slice(crl_pem.as_bytes())
            .map_err(|e| corrupt(CRL_FILE, format!("no PEM revocation list: {e}")))?;

        Ok(CertificateAuthority {
            dir: dir.to_path_buf(),
            params: ca_params(&facts.common_name),
            common_name: facts.common_name,
            key,
            ca_pem,
            ca_der,
            ca_not_after: facts.not_after,
            next_serial,
            issued,
            crl_pem,
            crl_der,
        })
    }

    /// The CA directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA's common name.
    pub fn common_name(&self) -> &str {
        &self.common_name
    }

    /// The path of the CA certificate, which clients and servers are told to trust.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA certificate, DER, as a server's `client_ca` takes it.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca_der.clone()
    }

    /// The end of the CA certificate's validity; no certificate it issues may end later.
    pub fn not_after(&self) -> SystemTime {
        self.ca_not_after.into()
    }

    /// Every certificate issued, in the order of issue.
    pub fn issued(&self) -> &[IssuedRecord] {
        &self.issued
    }

    /// The current revocation list, PEM.
    pub fn crl_pem(&self) -> &str {
        &self.crl_pem
    }

    /// The current revocation list, DER, as a server's `crls` takes it.
    pub fn crl_der(&self) -> CertificateRevocationListDer<'static> {
        self.crl_der.clone()
    }

    /// Issues a TLS server certificate for `names` (DNS names such as `localhost` and IP
    /// addresses such as `127.0.0.1`), valid for `validity_days` from `now`.
    pub fn issue_server(
        &mut self,
        names: &[&str],
        validity_days: u32,
        now: SystemTime,
    ) -> Result<Issued, PkiError> {
        let Some(first) = names.first() else { return Err(PkiError::NoServerNames) };
        for name in names {
            check_server_name(name)?;
        }
        let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let params = leaf_params(sans.clone(), first, ExtendedKeyUsagePurpose::ServerAuth)?;
        self.issue(params, CertKind::Server, sans.join(","), validity_days, now)
    }

    /// Issues a client certificate for `kind`, with common name `id` (checked by
    /// [`check_client_id`](crate::check_client_id)) and one DNS name saying who it is:
    /// `hub.openmvs`, `<market in lower case>.national.openmvs` or `<id>.obp.openmvs`.
    pub fn issue_client(
        &mut self,
        kind: ClientKind,
        id: &str,
        validity_days: u32,
        now: SystemTime,
    ) -> Result<Issued, PkiError> {
        check_client_id(id)?;
        let (cert_kind, identity) = match kind {
            ClientKind::Hub => (CertKind::Hub, Identity::Hub),
            ClientKind::National(market) => {
                check_market(&market)?;
                (CertKind::National, Identity::National(market))
            }
            ClientKind::Obp => (CertKind::Obp, Identity::Obp(id.to_owned())),
        };
        let dns_name = identity.dns_name();
        let params = leaf_params(vec![dns_name.clone()], id, ExtendedKeyUsagePurpose::ClientAuth)?;
        self.issue(params, cert_kind, dns_name, validity_days, now)
    }

    /// Revokes the certificate with this serial at `now` and replaces the revocation list.
    /// Returns `true` when it was revoked now, `false` when it already was (nothing changes).
    ///
    /// Servers see the revocation once they are given the new list ([`Self::crl_der`]).
    pub fn revoke(&mut self, serial: u64, now: SystemTime) -> Result<bool, PkiError> {
        let index =
            self.issued.iter().position(|r| r.serial == serial).ok_or(PkiError::UnknownSerial(serial))?;
        if self.issued[index].revoked_at.is_some() {
            return Ok(false);
        }
        let now = to_datetime(now)?;
        let mut issued = self.issued.clone();
        issued[index].revoked_at = Some(now.into());
        let crl = sign_crl(&self.params, &self.key, &issued, now)?;
        let crl_pem = crl.pem()?;
        // The list is written before the record: after a crash between the two the certificate
        // is already refused, and revoking it again completes the record. The other order would
        // leave a certificate recorded as revoked that every server still accepts.
        write_atomic(&self.dir, CRL_FILE, crl_pem.as_bytes(), Access::Public)?;
        self.crl_pem = crl_pem;
        self.crl_der = crl.der().clone();
        write_atomic(&self.dir, ISSUED_FILE, format_records(&issued).as_bytes(), Access::Public)?;
        self.issued = issued;
        Ok(true)
    }

    fn issue(
        &mut self,
        mut params: CertificateParams,
        kind: CertKind,
        name: String,
        validity_days: u32,
        now: SystemTime,
    ) -> Result<Issued, PkiError> {
        if validity_days == 0 {
            return Err(PkiError::InvalidValidity(validity_days));
        }
        let now = to_datetime(now)?;
        let not_after = days_after(now, validity_days)?;
        if not_after > self.ca_not_after {
            return Err(PkiError::OutlivesCa {
                not_after: rfc3339(not_after.into()),
                ca_not_after: rfc3339(self.ca_not_after.into()),
            });
        }
        let serial = self.next_serial;
        let next_serial = serial.checked_add(1).ok_or(PkiError::SerialsExhausted)?;
        params.serial_number = Some(SerialNumber::from(serial));
        params.not_before = now.checked_sub(BACKDATE).ok_or(PkiError::TimeOutOfRange)?;
        params.not_after = not_after;

        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &Issuer::from_params(&self.params, &self.key))?;

        // The serial is used up before the certificate is recorded: a crash between the two
        // leaves a gap in the record, never two certificates with one serial.
        write_atomic(&self.dir, SERIAL_FILE, format!("{next_serial}\n").as_bytes(), Access::Public)?;
        self.next_serial = next_serial;
        let mut issued = self.issued.clone();
        issued.push(IssuedRecord { serial, kind, name, not_after: not_after.into(), revoked_at: None });
        write_atomic(&self.dir, ISSUED_FILE, format_records(&issued).as_bytes(), Access::Public)?;
        self.issued = issued;

        Ok(Issued {
            serial,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after: not_after.into(),
            cert_der: cert.der().clone(),
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }
}

/// The CA's parameters apart from serial and validity. `open` rebuilds them from the common
/// name alone, so anything added here must be something it can rebuild.
fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, DnValue::Utf8String(common_name.to_owned()));
    params.distinguished_name = dn;
    // No intermediate CAs: this CA signs end-entity certificates only.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    // CrlSign is what lets verifiers accept the revocation lists this key signs.
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn leaf_params(
    sans: Vec<String>,
    common_name: &str,
    purpose: ExtendedKeyUsagePurpose,
) -> Result<CertificateParams, PkiError> {
    // `new` turns IP literals into IP address names and everything else into DNS names.
    let mut params = CertificateParams::new(sans)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, DnValue::Utf8String(common_name.to_owned()));
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // One purpose only: a server certificate cannot be presented as a client identity, and a
    // client certificate cannot serve.
    params.extended_key_usages = vec![purpose];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn check_server_name(name: &str) -> Result<(), PkiError> {
    let refuse = |problem: &str| {
        Err(PkiError::InvalidServerName { name: name.to_owned(), problem: problem.to_owned() })
    };
    if name.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if name.len() > 253 {
        return refuse("is longer than 253 characters");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !name.split('.').all(label_ok) {
        return refuse("is neither an IP address nor a DNS name of lower-case labels (a-z, 0-9, '-')");
    }
    if name == NAMESPACE_SUFFIX.trim_start_matches('.') || name.ends_with(NAMESPACE_SUFFIX) {
        return refuse("is under openmvs, which is reserved for client identities");
    }
    Ok(())
}

fn days_after(t: OffsetDateTime, days: u32) -> Result<OffsetDateTime, PkiError> {
    t.checked_add(Duration::days(days.into())).filter(|t| t.year() <= 9999).ok_or(PkiError::TimeOutOfRange)
}

/// Signs a revocation list of the revoked certificates among `records`.
fn sign_crl(
    params: &CertificateParams,
    key: &KeyPair,
    records: &[IssuedRecord],
    now: OffsetDateTime,
) -> Result<rcgen::CertificateRevocationList, PkiError> {
    let revoked_certs: Vec<RevokedCertParams> = records
        .iter()
        .filter_map(|r| {
            Some(RevokedCertParams {
                serial_number: SerialNumber::from(r.serial),
                revocation_time: r.revoked_at?.into(),
                reason_code: None,
                invalidity_date: None,
            })
        })
        .collect();
    // Every new list adds exactly one revocation (revoking twice makes no new list), so the
    // count plus one is the strictly increasing CRL number RFC 5280 asks for, with nothing
    // extra to store.
    let crl_number = SerialNumber::from(revoked_certs.len() as u64 + 1);
    let crl = CertificateRevocationListParams {
        this_update: now,
        next_update: days_after(now, CRL_LIFETIME_DAYS)?,
        crl_number,
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: params.key_identifier_method.clone(),
    };
    Ok(crl.signed_by(&Issuer::from_params(params, key))?)
}
