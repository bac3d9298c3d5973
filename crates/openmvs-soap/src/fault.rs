//! SOAP 1.2 faults: the answer to what is not a request the national system can take (XML that
//! is not well-formed, an unknown operation, a failed login). Business outcomes are never faults:
//! they are answers with a `ReturnCode`, because software built for NMVS shows nothing of a fault.

use openmvs_core::return_code::ReturnCode;

/// The fault's `Code/Value`: whose fault it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCode {
    /// `env:VersionMismatch`: not a SOAP 1.2 envelope.
    VersionMismatch,
    /// `env:Sender`: the request is at fault.
    Sender,
    /// `env:Receiver`: the system could not answer now.
    Receiver,
}

impl FaultCode {
    /// The QName of `Code/Value`.
    pub fn qname(self) -> &'static str {
        match self {
            FaultCode::VersionMismatch => "env:VersionMismatch",
            FaultCode::Sender => "env:Sender",
            FaultCode::Receiver => "env:Receiver",
        }
    }
}

/// A fault, with the return code of the one table that says what it is (`Code/Subcode`, and
/// the `ReturnCode` in its `Detail`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {}: {reason}", code.qname(), subcode.as_str())]
pub struct Fault {
    /// Whose fault it is.
    pub code: FaultCode,
    /// What it is.
    pub subcode: ReturnCode,
    /// Why, naming the element, attribute or value at fault.
    pub reason: String,
    /// Seconds to wait before sending again, when the fault says.
    pub retry_after: Option<u64>,
}

impl Fault {
    /// A fault of `code` and `subcode`.
    pub fn new(code: FaultCode, subcode: ReturnCode, reason: impl Into<String>) -> Fault {
        Fault { code, subcode, reason: reason.into(), retry_after: None }
    }

    /// An envelope that is not XML, not namespace-well-formed, or not the request it names.
    pub fn malformed(reason: String) -> Fault {
        Fault::new(FaultCode::Sender, ReturnCode::MalformedRequest, reason)
    }

    /// An operation the service does not have.
    pub fn unknown_operation(reason: String) -> Fault {
        Fault::new(FaultCode::Sender, ReturnCode::NotFound, reason)
    }

    /// A SOAP 1.1 envelope.
    pub fn version_mismatch() -> Fault {
        Fault::new(
            FaultCode::VersionMismatch,
            ReturnCode::MalformedRequest,
            "this service takes SOAP 1.2 envelopes (http://www.w3.org/2003/05/soap-envelope)",
        )
    }

    /// A login whose client, user or password is wrong.
    pub fn bad_login() -> Fault {
        Fault::new(
            FaultCode::Sender,
            ReturnCode::Unauthenticated,
            "the ClientLoginId, UserId or Password is wrong, or the client is disabled",
        )
    }

    /// Says how long to wait before sending again.
    pub fn with_retry_after(mut self, seconds: u64) -> Fault {
        self.retry_after = Some(seconds.max(1));
        self
    }
}
