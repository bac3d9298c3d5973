//! The pack lifecycle (fmd-rules §3-4) as pure decisions: a request and the stored facts go in,
//! a [`Decision`] comes out. Refusals are decisions too, carrying a return code and maybe an alert.

use std::fmt;
use std::time::Duration;

use crate::ids::{Batch, Expiry, Location, MarketCode};
use crate::return_code::{AlertCode, ReturnCode};
use crate::time::Timestamp;

/// The state of one pack in one market.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PackState {
    /// Can be dispensed (if its batch and product allow).
    Active,
    /// Dispensed to the public.
    Supplied,
    /// Destroyed; irreversible.
    Destroyed,
    /// Exported outside the EU.
    Exported,
    /// Taken as a sample by an authority.
    Sample,
    /// Given as a free sample.
    FreeSample,
    /// Locked, pending a decision.
    Locked,
    /// Reported stolen; irreversible.
    Stolen,
    /// Checked out for repackaging by a parallel distributor.
    CheckedOut,
}

impl PackState {
    /// Every state.
    pub const ALL: [PackState; 9] = [
        PackState::Active,
        PackState::Supplied,
        PackState::Destroyed,
        PackState::Exported,
        PackState::Sample,
        PackState::FreeSample,
        PackState::Locked,
        PackState::Stolen,
        PackState::CheckedOut,
    ];

    /// The upper-case name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            PackState::Active => "ACTIVE",
            PackState::Supplied => "SUPPLIED",
            PackState::Destroyed => "DESTROYED",
            PackState::Exported => "EXPORTED",
            PackState::Sample => "SAMPLE",
            PackState::FreeSample => "FREE_SAMPLE",
            PackState::Locked => "LOCKED",
            PackState::Stolen => "STOLEN",
            PackState::CheckedOut => "CHECKED_OUT",
        }
    }

    /// Parses an upper-case state name.
    pub fn parse(s: &str) -> Option<PackState> {
        PackState::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether no undo can ever leave this state (DR Art 13(1)(d) and stolen packs).
    pub fn is_irreversible(self) -> bool {
        matches!(self, PackState::Destroyed | PackState::Stolen)
    }
}

impl fmt::Display for PackState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operation that decommissions a pack (sets a state other than ACTIVE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// Dispense to the public.
    Supply,
    /// Destroy.
    Destroy,
    /// Export outside the EU.
    Export,
    /// Sample taken by an authority.
    Sample,
    /// Free sample.
    FreeSample,
    /// Lock.
    Lock,
    /// Report stolen.
    Stolen,
    /// Check out for repackaging (OBP only).
    CheckOut,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 8] = [
        Operation::Supply,
        Operation::Destroy,
        Operation::Export,
        Operation::Sample,
        Operation::FreeSample,
        Operation::Lock,
        Operation::Stolen,
        Operation::CheckOut,
    ];

    /// The state the operation sets.
    pub fn target(self) -> PackState {
        match self {
            Operation::Supply => PackState::Supplied,
            Operation::Destroy => PackState::Destroyed,
            Operation::Export => PackState::Exported,
            Operation::Sample => PackState::Sample,
            Operation::FreeSample => PackState::FreeSample,
            Operation::Lock => PackState::Locked,
            Operation::Stolen => PackState::Stolen,
            Operation::CheckOut => PackState::CheckedOut,
        }
    }

    /// The operation that sets `state`, if any.
    pub fn setting(state: PackState) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.target() == state)
    }

    /// Whether the operation can be undone.
    pub fn is_undoable(self) -> bool {
        !self.target().is_irreversible()
    }

    /// The name used in paths: `supply`, `free-sample`, `check-out`...
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Supply => "supply",
            Operation::Destroy => "destroy",
            Operation::Export => "export",
            Operation::Sample => "sample",
            Operation::FreeSample => "free-sample",
            Operation::Lock => "lock",
            Operation::Stolen => "stolen",
            Operation::CheckOut => "check-out",
        }
    }

    /// Parses a path name.
    pub fn parse(s: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a single-pack request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Check the pack; changes nothing.
    Verify,
    /// Set the operation's state.
    Set(Operation),
    /// Revert the operation's state to ACTIVE.
    Undo(Operation),
}

impl Command {
    /// Parses the bulk form: `verify`, an operation name, or `<operation>-undo`.
    pub fn parse(s: &str) -> Option<Command> {
        if s == "verify" {
            return Some(Command::Verify);
        }
        if let Some(op) = s.strip_suffix("-undo") {
            return Operation::parse(op).filter(|o| o.is_undoable()).map(Command::Undo);
        }
        Operation::parse(s).map(Command::Set)
    }

    /// Whether the command may change the pack.
    pub fn is_state_change(self) -> bool {
        !matches!(self, Command::Verify)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Verify => f.write_str("verify"),
            Command::Set(op) => f.write_str(op.as_str()),
            Command::Undo(op) => write!(f, "{op}-undo"),
        }
    }
}

/// Why a pack that is ACTIVE is nevertheless not dispensable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The batch's expiry date has passed.
    Expired,
    /// The batch is recalled in this market.
    Recalled,
    /// The product is withdrawn from this market.
    Withdrawn,
}

impl Reason {
    /// The upper-case name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Expired => "EXPIRED",
            Reason::Recalled => "RECALLED",
            Reason::Withdrawn => "WITHDRAWN",
        }
    }

    /// Parses the upper-case name.
    pub fn parse(s: &str) -> Option<Reason> {
        [Reason::Expired, Reason::Recalled, Reason::Withdrawn].into_iter().find(|r| r.as_str() == s)
    }

    /// The level-4 return code that refuses a state change for this reason.
    pub fn return_code(self) -> ReturnCode {
        match self {
            Reason::Expired => ReturnCode::BatchExpired,
            Reason::Recalled => ReturnCode::BatchRecalled,
            Reason::Withdrawn => ReturnCode::ProductWithdrawn,
        }
    }
}

/// The batch-level facts of one batch in this market.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchFacts {
    /// The batch's expiry, as uploaded.
    pub expiry: Expiry,
    /// Whether the batch is recalled in this market.
    pub recalled: bool,
}

/// Who made the last change of a pack's state, when, and how it got here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What was done.
    pub command: Command,
    /// The premises it was done from.
    pub location: Location,
    /// When it was done.
    pub at: Timestamp,
    /// The market it came from, when it arrived by multi-market synchronisation.
    pub synced_from: Option<MarketCode>,
}

/// The stored record of one pack in one market.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pack {
    /// The batch the pack was uploaded in.
    pub batch: Batch,
    /// Its state.
    pub state: PackState,
    /// The last change of state, if any.
    pub last_change: Option<Change>,
    /// How many times the last change was asked for again by the same location.
    pub repeats: u8,
}

impl Pack {
    /// A freshly uploaded, active pack.
    pub fn new(batch: Batch) -> Pack {
        Pack { batch, state: PackState::Active, last_change: None, repeats: 0 }
    }
}

/// Everything the national system knows that bears on one request.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// `None` when the product code is unknown in this market; else whether it is withdrawn.
    pub product_withdrawn: Option<bool>,
    /// The pack with this serial, and the facts of its batch.
    pub pack: Option<(&'a Pack, &'a BatchFacts)>,
    /// Whether the batch named in the request exists for this product in this market.
    pub requested_batch_known: bool,
}

/// Who is asking, from where, and when.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The premises the request comes from.
    pub location: &'a Location,
    /// The time of the request.
    pub now: Timestamp,
    /// The market's rules.
    pub policy: &'a Policy,
}

/// A request about one pack.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// What is asked.
    pub command: Command,
    /// The batch on the pack.
    pub batch: &'a Batch,
    /// The expiry on the pack; `None` where the interface carries none (OBP state changes).
    pub expiry: Option<&'a Expiry>,
}

/// A market's configurable rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// How long after a change the same location may undo it (DR Art 13: 10 days).
    pub undo_window: Duration,
    /// How many times the same location may repeat a request for the state the pack has before
    /// the repeat raises an alert.
    pub tolerated_repeats: u8,
    /// Whether wholesalers may supply in this market (DR Art 23; off by default).
    pub wholesaler_supply: bool,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            undo_window: Duration::from_secs(240 * 3600),
            tolerated_repeats: 2,
            wholesaler_supply: false,
        }
    }
}

/// What the terminal is told about the pack after the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackView {
    /// The state after the operation.
    pub state: PackState,
    /// Why an ACTIVE pack cannot be dispensed, in the order withdrawn, recalled, expired.
    pub reasons: Vec<Reason>,
    /// Whether the pack may be dispensed.
    pub dispensable: bool,
}

/// The outcome of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The return code.
    pub code: ReturnCode,
    /// Whether the request did what it asked.
    pub accepted: bool,
    /// The pack record to store, when the request changed it (state or repeat count).
    pub update: Option<Pack>,
    /// The pack as the terminal should see it; `None` when the pack is unknown.
    pub view: Option<PackView>,
}

impl Decision {
    /// The alert the request raises.
    pub fn alert(&self) -> Option<AlertCode> {
        self.code.alert()
    }

    /// Whether the identifier matches no pack of a known product here, so that a scanner's
    /// corruption may explain the refusal: the caller then decides the same request with each
    /// [`crate::scan::repairs`] of the identifier and asks [`decide_rescan`].
    pub fn may_be_misread(&self) -> bool {
        self.code.is_identifier_mismatch()
    }

    /// Whether the product is unknown here, so a single-pack request should ask the hub.
    pub fn needs_intermarket(&self) -> bool {
        self.code == ReturnCode::ProductUnknown
    }

    /// Whether the pack's state changed (and so must be synchronised to its other markets).
    pub fn changed_state(&self, before: PackState) -> bool {
        self.update.as_ref().is_some_and(|p| p.state != before)
    }

    fn refuse(code: ReturnCode, view: Option<PackView>) -> Decision {
        Decision { code, accepted: false, update: None, view }
    }
}

/// The reasons an ACTIVE pack of this batch and product cannot be dispensed.
pub fn reasons(batch: &BatchFacts, product_withdrawn: bool, now: Timestamp) -> Vec<Reason> {
    let mut r = Vec::new();
    if product_withdrawn {
        r.push(Reason::Withdrawn);
    }
    if batch.recalled {
        r.push(Reason::Recalled);
    }
    if batch.expiry.has_passed(now.date()) {
        r.push(Reason::Expired);
    }
    r
}

fn view_of(pack: &Pack, reasons: &[Reason]) -> PackView {
    PackView {
        state: pack.state,
        reasons: reasons.to_vec(),
        dispensable: pack.state == PackState::Active && reasons.is_empty(),
    }
}

/// Decides a single-pack request (verify, state change or undo) against what is stored.
///
/// Role permissions are checked before this (see [`crate::roles`]); this function applies the
/// rules of fmd-rules §4.1-4.5.
pub fn decide(req: &Request<'_>, facts: &Facts<'_>, ctx: &Context<'_>) -> Decision {
    let Some(withdrawn) = facts.product_withdrawn else {
        return Decision::refuse(ReturnCode::ProductUnknown, None);
    };
    let Some((pack, batch)) = facts.pack else {
        let code = if facts.requested_batch_known {
            ReturnCode::SerialUnknown
        } else {
            ReturnCode::SerialAndBatchUnknown
        };
        return Decision::refuse(code, None);
    };
    if &pack.batch != req.batch {
        return Decision::refuse(ReturnCode::BatchMismatch, None);
    }
    if req.expiry.is_some_and(|e| *e != batch.expiry) {
        return Decision::refuse(ReturnCode::ExpiryMismatch, None);
    }
    let reasons = reasons(batch, withdrawn, ctx.now);
    let view = view_of(pack, &reasons);
    match req.command {
        Command::Verify => {
            let code = match reasons.first() {
                Some(r) => r.return_code(),
                None if pack.state != PackState::Active => ReturnCode::PackInactive,
                None => ReturnCode::Success,
            };
            Decision { code, accepted: true, update: None, view: Some(view) }
        }
        Command::Set(op) => decide_set(op, pack, &reasons, view, ctx),
        Command::Undo(op) => decide_undo(op, pack, &reasons, view, ctx),
    }
}

/// Decides whether a scanner's corruption explains a refusal (fmd-rules §2: a scan error asks
/// for a rescan, not an alert). `as_read` is the decision on the identifier as read;
/// `repaired`, in the order of [`crate::scan::repairs`], the decisions the same request gets
/// with each repair of the identifier, each decided on that identifier's stored facts.
///
/// When the identifier as read matches no pack ([`Decision::may_be_misread`]) and a repaired one
/// does (its decision is anything but a mismatch: done, a state reported, a refusal on the
/// pack's state), the corruption explains the failure: the request is refused with
/// [`ReturnCode::RescanRequired`], which changes nothing and raises no alert, and the index of
/// the repair that explains it is returned. Otherwise `as_read` stands, its alert included: a
/// code that looks corrupted but matches no pack even repaired is as unknown as any other.
pub fn decide_rescan(as_read: Decision, repaired: &[Decision]) -> (Decision, Option<usize>) {
    if !as_read.may_be_misread() {
        return (as_read, None);
    }
    let explains = |d: &Decision| !d.may_be_misread() && d.code != ReturnCode::ProductUnknown;
    match repaired.iter().position(explains) {
        Some(i) => (Decision::refuse(ReturnCode::RescanRequired, None), Some(i)),
        None => (as_read, None),
    }
}

/// Whether `pack` is in the state that `command` from `location` would produce, because that
/// location asked for it last: a double scan.
fn is_repeat(pack: &Pack, command: Command, location: &Location) -> bool {
    pack.last_change
        .as_ref()
        .is_some_and(|c| c.command == command && &c.location == location && c.synced_from.is_none())
}

fn decide_repeat(pack: &Pack, view: PackView, ctx: &Context<'_>) -> Decision {
    let repeats = pack.repeats.saturating_add(1);
    let code = if repeats <= ctx.policy.tolerated_repeats {
        ReturnCode::AlreadyInState
    } else {
        ReturnCode::PackInactiveStateChange
    };
    let update = Pack { repeats, ..pack.clone() };
    Decision { code, accepted: false, update: Some(update), view: Some(view) }
}

fn changed(
    pack: &Pack,
    command: Command,
    state: PackState,
    ctx: &Context<'_>,
    reasons: &[Reason],
) -> Decision {
    let update = Pack {
        batch: pack.batch.clone(),
        state,
        last_change: Some(Change { command, location: ctx.location.clone(), at: ctx.now, synced_from: None }),
        repeats: 0,
    };
    let view = view_of(&update, reasons);
    Decision { code: ReturnCode::Success, accepted: true, update: Some(update), view: Some(view) }
}

fn decide_set(op: Operation, pack: &Pack, reasons: &[Reason], view: PackView, ctx: &Context<'_>) -> Decision {
    let command = Command::Set(op);
    if pack.state != PackState::Active {
        if pack.state == op.target() && is_repeat(pack, command, ctx.location) {
            return decide_repeat(pack, view, ctx);
        }
        return Decision::refuse(ReturnCode::PackInactiveStateChange, Some(view));
    }
    if let Some(r) = reasons.first() {
        return Decision::refuse(r.return_code(), Some(view));
    }
    changed(pack, command, op.target(), ctx, reasons)
}

fn decide_undo(
    op: Operation,
    pack: &Pack,
    reasons: &[Reason],
    view: PackView,
    ctx: &Context<'_>,
) -> Decision {
    let command = Command::Undo(op);
    if pack.state == PackState::Active && is_repeat(pack, command, ctx.location) {
        return decide_repeat(pack, view, ctx);
    }
    if !op.is_undoable() || pack.state != op.target() {
        return Decision::refuse(ReturnCode::UndoStateMismatch, Some(view));
    }
    let Some(change) = &pack.last_change else {
        // A pack can only leave ACTIVE through a recorded change; without one, nobody may undo.
        return Decision::refuse(ReturnCode::UndoOtherLocation, Some(view));
    };
    if &change.location != ctx.location || change.synced_from.is_some() {
        return Decision::refuse(ReturnCode::UndoOtherLocation, Some(view));
    }
    // Repackaging has no time limit; the DR Art 13 window binds end users.
    if op != Operation::CheckOut && ctx.now.since(change.at) > ctx.policy.undo_window {
        return Decision::refuse(ReturnCode::UndoTooLate, Some(view));
    }
    if let Some(r) = reasons.first() {
        return Decision::refuse(r.return_code(), Some(view));
    }
    changed(pack, command, PackState::Active, ctx, reasons)
}

/// A state change of a multi-market pack made in another market, arriving through the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncChange {
    /// The state the pack took there (ACTIVE when the change there was an undo).
    pub state: PackState,
    /// What was done there.
    pub command: Command,
    /// The market it was done in.
    pub origin: MarketCode,
    /// The premises it was done from.
    pub location: Location,
    /// When it was done.
    pub at: Timestamp,
}

/// What to do with a synchronised change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncDecision {
    /// Store this record.
    Apply(Pack),
    /// The change is already reflected here (or reverts a change this market never took): nothing to do.
    Ignore,
    /// The pack was already inactive here: a sign of a cloned code (fmd-rules §4.9). Keep the local
    /// state and raise this alert.
    Conflict(AlertCode),
}

/// Decides how a synchronised change from another market applies to this market's copy.
pub fn decide_sync(pack: &Pack, change: &SyncChange) -> SyncDecision {
    let record = Change {
        command: change.command,
        location: change.location.clone(),
        at: change.at,
        synced_from: Some(change.origin),
    };
    let applied = |state| {
        SyncDecision::Apply(Pack {
            batch: pack.batch.clone(),
            state,
            last_change: Some(record.clone()),
            repeats: 0,
        })
    };
    if change.state == PackState::Active {
        // An undo there reverts only the change it undoes, as that market made it here: the state
        // undone, set by the same command from the same location (for an OBP's check-out, which
        // comes through the hub, the same OBP). Anything else here is left as it is.
        let undone = match change.command {
            Command::Undo(op) => Some(op),
            Command::Verify | Command::Set(_) => None,
        };
        let reverts = undone.is_some_and(|op| {
            pack.state == op.target()
                && pack.last_change.as_ref().is_some_and(|c| {
                    c.synced_from == Some(change.origin)
                        && c.command == Command::Set(op)
                        && c.location == change.location
                })
        });
        return if reverts { applied(PackState::Active) } else { SyncDecision::Ignore };
    }
    if pack.state == PackState::Active {
        return applied(change.state);
    }
    if pack.last_change.as_ref() == Some(&record) {
        return SyncDecision::Ignore;
    }
    SyncDecision::Conflict(AlertCode::A24)
}
