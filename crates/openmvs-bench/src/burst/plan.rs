//! What each pharmacy records during the outage: its packs, what it did with each, in the order it
//! did it, and what the national system must end up with (the audit records of its client, the
//! alerts). Pure: the same options give the same backlog.

use openmvs_core::pack::{Command, Operation};
use openmvs_testkit::LOCAL_GTIN;
use openmvs_wire::api::PackRequest;

/// The batch of the good packs (the backlog's and the live traffic's).
pub(crate) const GOOD_BATCH: &str = "BURST1";
/// A batch recalled before the outage.
pub(crate) const RECALLED_BATCH: &str = "BURSTREC";
/// The expiry of every seeded batch.
pub(crate) const EXPIRY: &str = "301231";

/// What a pharmacy did with one pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Dispensed.
    Supply,
    /// Verified, then dispensed.
    VerifyThenSupply,
    /// Dispensed, then taken back.
    SupplyThenUndo,
    /// Dispensed, but its serial was never uploaded: a true A3.
    Unknown,
    /// Dispensed, but another pharmacy dispensed it before the outage: a true A24.
    Elsewhere,
    /// Dispensed, but its batch was recalled before the outage: held, no alert.
    Recalled,
}

impl Kind {
    /// The kind of a pharmacy's `i`-th pack: one in 200 of each bad kind, three in a hundred
    /// verified first, two in a hundred taken back, the rest dispensed.
    fn of(i: usize) -> Kind {
        match (i % 200, i % 100) {
            (0, _) => Kind::Unknown,
            (1, _) => Kind::Elsewhere,
            (2, _) => Kind::Recalled,
            (_, 3..=5) => Kind::VerifyThenSupply,
            (_, 6..=7) => Kind::SupplyThenUndo,
            _ => Kind::Supply,
        }
    }

    /// The operations the pharmacy recorded, in order.
    pub(crate) fn commands(self) -> Vec<Command> {
        let supply = Command::Set(Operation::Supply);
        match self {
            Kind::VerifyThenSupply => vec![Command::Verify, supply],
            Kind::SupplyThenUndo => vec![supply, Command::Undo(Operation::Supply)],
            _ => vec![supply],
        }
    }

    /// The operations of the pharmacy's client in the national system's audit trail, in order,
    /// once the backlog is replayed: a decommission is preceded by its verify; a pack that is not
    /// dispensable is held after the verify.
    pub(crate) fn audited(self) -> &'static [&'static str] {
        match self {
            Kind::Supply | Kind::Elsewhere => &["verify", "supply"],
            Kind::VerifyThenSupply => &["verify", "verify", "supply"],
            Kind::SupplyThenUndo => &["verify", "supply", "supply-undo"],
            Kind::Unknown | Kind::Recalled => &["verify"],
        }
    }

    /// The alert the replay must raise for the pack, if any.
    pub(crate) fn alert(self) -> Option<&'static str> {
        match self {
            Kind::Unknown => Some("A3"),
            Kind::Elsewhere => Some("A24"),
            _ => None,
        }
    }

    /// Whether every audited request must succeed.
    pub(crate) fn all_succeed(self) -> bool {
        matches!(self, Kind::Supply | Kind::VerifyThenSupply | Kind::SupplyThenUndo)
    }
}

/// One pack of a pharmacy's backlog.
#[derive(Debug, Clone)]
pub(crate) struct Pack {
    pub(crate) serial: String,
    pub(crate) kind: Kind,
}

impl Pack {
    pub(crate) fn batch(&self) -> &'static str {
        if self.kind == Kind::Recalled { RECALLED_BATCH } else { GOOD_BATCH }
    }

    /// The request of its `k`-th operation, with a transaction id unique to it.
    pub(crate) fn request(&self, pharmacy: usize, k: usize) -> PackRequest {
        PackRequest {
            client_trx_id: Some(format!("BURST-{pharmacy}-{}-{k}", self.serial)),
            scheme: Some("GTIN".into()),
            product_code: Some(LOCAL_GTIN.into()),
            serial: Some(self.serial.clone()),
            batch: Some(self.batch().into()),
            expiry: Some(EXPIRY.into()),
            ..PackRequest::default()
        }
    }
}

/// The packs of pharmacy `pharmacy`, holding `operations` operations (the last pack may add one).
pub(crate) fn backlog(pharmacy: usize, operations: u64) -> Vec<Pack> {
    let (mut packs, mut ops) = (Vec::new(), 0u64);
    let mut i = 0;
    while ops < operations {
        let kind = Kind::of(i);
        let prefix = match kind {
            Kind::Unknown => 'U',
            Kind::Elsewhere => 'E',
            Kind::Recalled => 'R',
            _ => 'B',
        };
        ops += kind.commands().len() as u64;
        packs.push(Pack { serial: format!("{prefix}{pharmacy:05}{i:07}"), kind });
        i += 1;
    }
    packs
}

/// A serial of the live traffic's pool.
pub(crate) fn live_serial(i: u64) -> String {
    format!("L{i:011}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backlog_holds_its_operations_and_every_kind_with_the_expected_outcomes() {
        let packs = backlog(7, 240);
        let ops: usize = packs.iter().map(|p| p.kind.commands().len()).sum();
        assert!((240..=241).contains(&ops), "{ops}");
        for kind in
            [Kind::Unknown, Kind::Elsewhere, Kind::Recalled, Kind::VerifyThenSupply, Kind::SupplyThenUndo]
        {
            assert!(packs.iter().any(|p| p.kind == kind), "{kind:?}");
        }
        let serials: std::collections::BTreeSet<_> = packs.iter().map(|p| &p.serial).collect();
        assert_eq!(serials.len(), packs.len(), "one pack per serial");
        assert_eq!(backlog(8, 240)[0].serial, "U000080000000");
        assert_eq!(packs.iter().filter_map(|p| p.kind.alert()).count(), 4, "two A3, two A24");
    }
}
