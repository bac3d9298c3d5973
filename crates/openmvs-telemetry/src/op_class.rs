//! Operation classes: the label under which a request's latency is recorded and reported.

use std::fmt;

use openmvs_core::pack::Command;

/// What kind of request was answered. DR Art 35 asks for latency figures separately for
/// verifications and for status updates; the other classes exist so that slow bulk uploads or
/// logins never dilute (or hide behind) those two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpClass {
    /// A verify request for one pack.
    Verification,
    /// A single-pack state change or its undo: supply, destroy, export, sample, free sample, lock,
    /// stolen, check out.
    StatusUpdate,
    /// A request over many packs (bulk verify or decommission, an OBP upload).
    Bulk,
    /// Token issue, renewal and revocation.
    Auth,
    /// Administration: users, locations, alerts, audit queries.
    Admin,
    /// Anything else (health checks, `/status`, `/metrics`, unknown routes).
    Other,
}

impl OpClass {
    /// Every class, in the order of their index in fixed-size tables.
    pub const ALL: [OpClass; 6] = [
        OpClass::Verification,
        OpClass::StatusUpdate,
        OpClass::Bulk,
        OpClass::Auth,
        OpClass::Admin,
        OpClass::Other,
    ];

    /// The label value used in metrics and in the `/status` JSON, e.g. `"status_update"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            OpClass::Verification => "verification",
            OpClass::StatusUpdate => "status_update",
            OpClass::Bulk => "bulk",
            OpClass::Auth => "auth",
            OpClass::Admin => "admin",
            OpClass::Other => "other",
        }
    }

    /// The class of a single-pack command: verify is a verification, every state change and every
    /// undo is a status update. Keeping this mapping here means the HTTP layer cannot file an undo
    /// under the wrong DR Art 35 figure.
    pub const fn of(command: Command) -> OpClass {
        match command {
            Command::Verify => OpClass::Verification,
            Command::Set(_) | Command::Undo(_) => OpClass::StatusUpdate,
        }
    }

    /// The class whose [`OpClass::as_str`] is `label`.
    pub(crate) fn from_label(label: &str) -> Option<OpClass> {
        OpClass::ALL.into_iter().find(|c| c.as_str() == label)
    }

    /// Position in [`OpClass::ALL`], used to index fixed tables without hashing.
    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for OpClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openmvs_core::pack::Operation;

    #[test]
    fn index_matches_the_position_in_all() {
        for (i, class) in OpClass::ALL.iter().enumerate() {
            assert_eq!(class.index(), i, "{class}");
        }
    }

    #[test]
    fn verify_is_a_verification_and_every_change_or_undo_is_a_status_update() {
        assert_eq!(OpClass::of(Command::Verify), OpClass::Verification);
        for op in [
            Operation::Supply,
            Operation::Destroy,
            Operation::Export,
            Operation::Sample,
            Operation::FreeSample,
            Operation::Lock,
            Operation::Stolen,
            Operation::CheckOut,
        ] {
            assert_eq!(OpClass::of(Command::Set(op)), OpClass::StatusUpdate, "{op:?}");
            assert_eq!(OpClass::of(Command::Undo(op)), OpClass::StatusUpdate, "{op:?}");
        }
    }

    #[test]
    fn labels_are_snake_case() {
        let labels: Vec<&str> = OpClass::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(labels, ["verification", "status_update", "bulk", "auth", "admin", "other"]);
        for class in OpClass::ALL {
            assert_eq!(OpClass::from_label(class.as_str()), Some(class));
        }
        assert_eq!(OpClass::from_label("Verification"), None);
    }
}
