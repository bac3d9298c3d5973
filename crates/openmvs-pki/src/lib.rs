//! The certificate authority of the European Hub: it issues the certificates that OpenMVS's
//! mutual TLS runs on, revokes them, and says who a verified client certificate names.
//!
//! # What it issues
//!
//! - Server certificates for the hub and the national systems ([`CertificateAuthority::issue_server`]).
//! - Client certificates ([`CertificateAuthority::issue_client`]) for the hub (`hub.openmvs`),
//!   for each national system (`de.national.openmvs`) and for each on-boarding partner
//!   (`acme-pharma.obp.openmvs`). The one DNS name is the identity; [`identity_of`] reads it back
//!   from the names the HTTP server hands on after verifying the chain.
//!
//! # The CA directory
//!
//! | file | contents |
//! |---|---|
//! | `ca.pem` | the CA certificate; its presence is what makes the directory a CA |
//! | `ca.key` | the CA's private key, PKCS#8 PEM, mode 0600 |
//! | `serial` | the next serial number, in decimal |
//! | `issued.tsv` | a header line, then one line per issued certificate: serial, kind, name, not_after, revoked_at (empty unless revoked) |
//! | `crl.pem` | the current revocation list, replaced at every revocation |
//!
//! Every change replaces whole files atomically (temporary file, fsync, rename, directory fsync).
//! Issued private keys are returned to the caller and never stored here.
//!
//! # Time
//!
//! Nothing here reads the clock: every operation that dates something takes `now`, and
//! certificates keep whole seconds only.

mod ca;
mod der;
mod error;
mod files;
mod identity;
mod record;

pub use ca::{
    CA_CERT_FILE, CA_KEY_FILE, CA_VALIDITY_DAYS, CRL_FILE, CRL_LIFETIME_DAYS, CertificateAuthority,
    ISSUED_FILE, Issued, SERIAL_FILE,
};
pub use error::PkiError;
pub use identity::{CLIENT_ID_MAX_LEN, ClientKind, HUB_DNS_NAME, Identity, check_client_id, identity_of};
pub use record::{CertKind, IssuedRecord};
