//! The certificate authority through its public interface: its directory on disk, its
//! revocation list, and real mutual-TLS handshakes with the certificates it issues.

mod crl;
mod directory;
mod handshake;
mod support;
