//! Who may do what (fmd-rules §3 and §4.12): the one permission table every interface consults.

use std::fmt;

use crate::pack::{Command, Operation, Policy};

/// The role a client acts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A community pharmacy.
    Pharmacy,
    /// A hospital pharmacy.
    Hospital,
    /// A wholesaler.
    Wholesaler,
    /// The national organisation that runs the national system.
    Nmvo,
    /// The national competent authority (supervision and investigation).
    Nca,
    /// An on-boarding partner (marketing authorisation holder or parallel distributor), acting through the hub.
    Obp,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 6] =
        [Role::Pharmacy, Role::Hospital, Role::Wholesaler, Role::Nmvo, Role::Nca, Role::Obp];

    /// The upper-case name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Pharmacy => "PHARMACY",
            Role::Hospital => "HOSPITAL",
            Role::Wholesaler => "WHOLESALER",
            Role::Nmvo => "NMVO",
            Role::Nca => "NCA",
            Role::Obp => "OBP",
        }
    }

    /// Parses an upper-case role name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether the role is an end user: a pharmacy, a hospital or a wholesaler.
    pub fn is_end_user(self) -> bool {
        matches!(self, Role::Pharmacy | Role::Hospital | Role::Wholesaler)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something a client may ask to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A single-pack request, or one row of a bulk request.
    Pack(Command),
    /// Submit or read a bulk request.
    Bulk,
    /// List or read alerts.
    ReadAlerts,
    /// Move an alert through its lifecycle.
    ChangeAlertStatus,
    /// Read the audit trail of a pack.
    ReadAudit,
    /// List the clients of the market, cut one off or let it back in.
    ManageClients,
    /// Open, update and resolve the market's incidents (everyone may read them).
    ManageIncidents,
}

/// How far a permission reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Not allowed at all: 403.
    Denied,
    /// Allowed on the client's own transactions, alerts or products only.
    Own,
    /// Allowed across the client's whole market.
    Market,
}

impl Access {
    /// Whether anything is allowed.
    pub fn is_allowed(self) -> bool {
        self != Access::Denied
    }
}

/// Which roles may set the state of `op` (and undo it).
fn may_set(role: Role, op: Operation, policy: &Policy) -> bool {
    use Operation::*;
    match (role, op) {
        (Role::Wholesaler, Supply) => policy.wholesaler_supply,
        (r, Export) => r == Role::Wholesaler,
        (_, CheckOut) => role == Role::Obp,
        (r, Supply | Sample | Lock) => r.is_end_user(),
        // The OBP reports its own destroyed, stolen and free-sample packs through the hub (api.md §3).
        (r, Destroy | FreeSample | Stolen) => r.is_end_user() || r == Role::Obp,
    }
}

/// The permission table: what `role` may do under the market's `policy`.
pub fn access(role: Role, action: Action, policy: &Policy) -> Access {
    let end_user = role.is_end_user();
    match action {
        Action::Pack(Command::Verify) => allow(end_user, Access::Own),
        Action::Pack(Command::Set(op) | Command::Undo(op)) => allow(may_set(role, op, policy), Access::Own),
        Action::Bulk => allow(end_user, Access::Own),
        Action::ReadAlerts => match role {
            Role::Nmvo | Role::Nca => Access::Market,
            _ => Access::Own,
        },
        Action::ChangeAlertStatus => match role {
            Role::Nmvo => Access::Market,
            // The OBP manages the alerts on its own products at the hub.
            Role::Obp => Access::Own,
            _ => Access::Denied,
        },
        Action::ReadAudit => allow(matches!(role, Role::Nmvo | Role::Nca), Access::Market),
        // The national organisation runs the system and answers for who may use it.
        Action::ManageClients => allow(role == Role::Nmvo, Access::Market),
        // The national organisation runs the system and tells its users how it runs.
        Action::ManageIncidents => allow(role == Role::Nmvo, Access::Market),
    }
}

fn allow(yes: bool, access: Access) -> Access {
    if yes { access } else { Access::Denied }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Operation::*;

    fn check(role: Role, action: Action, expected: Access) {
        assert_eq!(access(role, action, &Policy::default()), expected, "{role} {action:?}");
    }

    #[test]
    fn every_end_user_may_verify_its_own_requests_and_nobody_else_may() {
        for role in Role::ALL {
            let expected = if role.is_end_user() { Access::Own } else { Access::Denied };
            check(role, Action::Pack(Command::Verify), expected);
        }
    }

    #[test]
    fn pharmacies_and_hospitals_may_do_everything_except_export() {
        for role in [Role::Pharmacy, Role::Hospital] {
            for op in [Supply, Destroy, Sample, FreeSample, Lock, Stolen] {
                check(role, Action::Pack(Command::Set(op)), Access::Own);
            }
            check(role, Action::Pack(Command::Set(Export)), Access::Denied);
            check(role, Action::Pack(Command::Undo(Export)), Access::Denied);
            check(role, Action::Pack(Command::Set(CheckOut)), Access::Denied);
        }
    }

    #[test]
    fn wholesalers_supply_only_where_the_market_enables_it() {
        check(Role::Wholesaler, Action::Pack(Command::Set(Supply)), Access::Denied);
        check(Role::Wholesaler, Action::Pack(Command::Set(Export)), Access::Own);
        let enabled = Policy { wholesaler_supply: true, ..Policy::default() };
        assert_eq!(access(Role::Wholesaler, Action::Pack(Command::Set(Supply)), &enabled), Access::Own);
        assert_eq!(access(Role::Wholesaler, Action::Pack(Command::Undo(Supply)), &enabled), Access::Own);
    }

    #[test]
    fn obps_may_report_stolen_destroyed_free_sample_and_check_out_but_not_supply() {
        for op in [FreeSample, Stolen, Destroy, CheckOut] {
            check(Role::Obp, Action::Pack(Command::Set(op)), Access::Own);
        }
        for op in [Supply, Export, Sample, Lock] {
            check(Role::Obp, Action::Pack(Command::Set(op)), Access::Denied);
        }
    }

    #[test]
    fn authorities_and_nmvo_read_the_market_and_only_the_nmvo_changes_alerts() {
        check(Role::Nca, Action::ReadAlerts, Access::Market);
        check(Role::Nmvo, Action::ReadAlerts, Access::Market);
        check(Role::Pharmacy, Action::ReadAlerts, Access::Own);
        check(Role::Nmvo, Action::ChangeAlertStatus, Access::Market);
        check(Role::Nca, Action::ChangeAlertStatus, Access::Denied);
        check(Role::Pharmacy, Action::ChangeAlertStatus, Access::Denied);
        check(Role::Nca, Action::ReadAudit, Access::Market);
        check(Role::Wholesaler, Action::ReadAudit, Access::Denied);
        check(Role::Nca, Action::Pack(Command::Set(Supply)), Access::Denied);
        check(Role::Nmvo, Action::Bulk, Access::Denied);
    }

    #[test]
    fn only_the_nmvo_manages_the_clients_of_its_market() {
        for role in Role::ALL {
            let expected = if role == Role::Nmvo { Access::Market } else { Access::Denied };
            check(role, Action::ManageClients, expected);
            check(role, Action::ManageIncidents, expected);
        }
    }
}
