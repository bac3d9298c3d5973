//! The one error type of the certificate authority.

use std::io;
use std::path::PathBuf;

/// Why the certificate authority could not do what was asked.
///
/// Messages are one line. Those about a request (a bad id, market, name or validity) name the
/// value and the rule it breaks; those about the CA directory name the file. None of them ever
/// contains key material.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A client id breaks the id rule; `problem` says how (for example `is empty`).
    #[error(
        "client id {id:?} {problem}: an id is 1-40 characters of a-z, 0-9 and '-', not starting or ending with '-'"
    )]
    InvalidClientId {
        /// The id as given.
        id: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A market code is not two upper-case ASCII letters.
    #[error("market {0:?} is not two upper-case letters (an ISO 3166 country code such as DE)")]
    InvalidMarket(String),
    /// A server certificate name is neither an IP address nor an acceptable DNS name.
    #[error("server name {name:?} {problem}")]
    InvalidServerName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A server certificate was asked for without any name.
    #[error("a server certificate needs at least one DNS name or IP address")]
    NoServerNames,
    /// The CA's common name is empty, too long or holds control characters.
    #[error("CA common name {0:?} must be 1-64 characters without control characters")]
    InvalidCommonName(String),
    /// A certificate must be valid for at least a day.
    #[error("validity of {0} days: a certificate must be valid for at least 1 day")]
    InvalidValidity(u32),
    /// The requested validity ends after the CA certificate does, so the certificate would stop
    /// verifying before its own end.
    #[error(
        "a certificate valid until {not_after} would outlive the CA certificate, valid until {ca_not_after}"
    )]
    OutlivesCa {
        /// The end of the requested validity (RFC 3339).
        not_after: String,
        /// The end of the CA certificate's validity (RFC 3339).
        ca_not_after: String,
    },
    /// A time before 1970 or after 9999, or a validity reaching past 9999.
    #[error("time out of range: certificates here are dated between 1970 and 9999")]
    TimeOutOfRange,
    /// The directory already holds a CA; it is never overwritten.
    #[error("{0}: a CA already exists here; refusing to overwrite it")]
    AlreadyExists(PathBuf),
    /// No certificate with this serial was issued by this CA.
    #[error("no certificate with serial {0} was issued by this CA")]
    UnknownSerial(u64),
    /// Every serial number a `u64` can hold has been used.
    #[error("serial numbers exhausted")]
    SerialsExhausted,
    /// Reading or writing a file of the CA directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file (or directory) concerned.
        path: PathBuf,
        /// The underlying failure.
        source: io::Error,
    },
    /// A file of the CA directory does not hold what this CA writes there.
    #[error("{path}: {problem}")]
    Corrupt {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it (and where, for line-based files).
        problem: String,
    },
    /// Generating a key, certificate or revocation list failed.
    #[error("certificate generation failed: {0}")]
    Generation(#[from] rcgen::Error),
}
