//! What a workload is: the market it runs in (products, batches and their serials, the terminals
//! and who they are) and the steps the terminals take, every request with its ground truth.

use std::fmt::Write as _;

use openmvs_core::ids::{Location, MarketCode};
use openmvs_core::roles::Role;

/// A generated workload: set up the catalogue and the terminals, then run the steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// The seed it was generated from.
    pub seed: u64,
    /// The markets, in the order of the configuration.
    pub markets: Vec<MarketCode>,
    /// What the OBP uploads (one OBP owns every product).
    pub products: Vec<Product>,
    /// The end users' terminals, each one client of its market's national system.
    pub terminals: Vec<Terminal>,
    /// The steps, in the order generated. A terminal takes its own steps in this order; the
    /// terminals run side by side, and every terminal finishes a phase before any starts the next.
    pub steps: Vec<Step>,
    /// The true falsifications (and the packs of recalled batches), each with the steps that
    /// touch its pack.
    pub events: Vec<Event>,
}

/// A product and everything uploaded for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// The GTIN (14 digits, valid check digit).
    pub gtin: String,
    /// A name for its master data.
    pub name: String,
    /// The markets it is sold in; every batch is for all of them.
    pub markets: Vec<MarketCode>,
    /// Its batches.
    pub batches: Vec<Batch>,
}

/// A batch and its serials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The batch number (character set 82).
    pub name: String,
    /// The expiry as the OBP uploads it (`YYMMDD`, the last day of the month).
    pub expiry: String,
    /// The expiry as printed in the packs' codes: the uploaded one, or the same month with day
    /// `00` (fmd-rules §2: it matches the last day of the month).
    pub printed_expiry: String,
    /// Whether the OBP recalls it (in every market of the product) before the steps run.
    pub recalled: bool,
    /// The serials uploaded, in upload order.
    pub serials: Vec<String>,
}

/// How a terminal reads a pack's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scanner {
    /// A scanner that types into the terminal as a keyboard does: the terminal's keyboard layout
    /// and Caps Lock apply to what it types, and a group separator can be lost on the way. It
    /// sends no symbology identifier.
    KeyboardWedge,
    /// A scanner on a serial or USB-COM port, which delivers the bytes of the code as read, with
    /// the symbology identifier `]d2`; or a system that sends what it read from its own records.
    Direct,
}

/// What a terminal sends: the raw scan, or the fields its software parsed out of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputForm {
    /// `{"scan": "..."}`.
    Scan,
    /// `{"scheme", "product_code", "serial", "batch", "expiry"}`.
    Fields,
}

/// An end user's terminal: one client of its market's national system, at one location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminal {
    /// Its market.
    pub market: MarketCode,
    /// Pharmacy, hospital or wholesaler.
    pub role: Role,
    /// Its premises.
    pub location: Location,
    /// How it reads codes.
    pub scanner: Scanner,
    /// What it sends.
    pub input: InputForm,
}

/// Requests one terminal sends one after another, for one reason (a dispense, a double scan, a
/// replay after an outage, a corrupted scan and its rescan, a falsified pack...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The phase (0 or 1): phase 1 starts once every terminal has finished phase 0. A cloned
    /// pack's genuine dispense is in phase 0, its clone's in phase 1; the replays after an outage
    /// open phase 1 together, as a burst.
    pub phase: u8,
    /// The terminal (an index into [`Workload::terminals`]).
    pub terminal: usize,
    /// The true falsification this step belongs to (an index into [`Workload::events`]).
    pub event: Option<usize>,
    /// The requests, in order.
    pub requests: Vec<Request>,
}

/// One request, as the terminal sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// What is asked.
    pub operation: Operation,
    /// The client's transaction id: unique per terminal, except that a retry repeats the request
    /// it retries, with its id.
    pub client_trx_id: String,
    /// The pack's code as sent.
    pub input: Input,
    /// What happens to the answer.
    pub delivery: Delivery,
    /// What the request really is.
    pub truth: Truth,
}

/// The pack's code as a terminal sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A raw scan (GS1 element string; GS is ASCII 29).
    Scan(String),
    /// The fields, with scheme GTIN.
    Fields(Fields),
}

/// A pack's code field by field (possibly corrupted, so plain text, not validated values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    /// The GTIN.
    pub product_code: String,
    /// The serial.
    pub serial: String,
    /// The batch.
    pub batch: String,
    /// The expiry, `YYMMDD`.
    pub expiry: String,
}

impl Fields {
    /// The product code scheme: every generated product has a GTIN.
    pub fn scheme(&self) -> &'static str {
        "GTIN"
    }
}

/// A single-pack operation of the national system's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// `verify`.
    Verify,
    /// `supply` (dispense).
    Supply,
    /// `export` (wholesalers).
    Export,
    /// `destroy`.
    Destroy,
    /// `supply/undo`.
    UndoSupply,
}

impl Operation {
    /// The operation as in the path `/v1/packs/{operation}`: `verify`, `supply/undo`...
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Verify => "verify",
            Operation::Supply => "supply",
            Operation::Export => "export",
            Operation::Destroy => "destroy",
            Operation::UndoSupply => "supply/undo",
        }
    }
}

/// What happens to a request's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Delivery {
    /// The terminal reads the answer.
    Answered,
    /// The server answers, but the terminal has given up waiting (a timeout) and never sees the
    /// answer; the next request of the step repeats it with the same `client_trx_id`.
    AnswerLost,
    /// The terminal gives up right after sending (the connection is closed before any answer),
    /// so the server may or may not have done it; repeated like [`Delivery::AnswerLost`].
    Abandoned,
}

impl Delivery {
    /// `answered`, `answer_lost`, `abandoned`.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Answered => "answered",
            Delivery::AnswerLost => "answer_lost",
            Delivery::Abandoned => "abandoned",
        }
    }
}

/// The ground truth of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Truth {
    /// A genuine pack whose code arrives intact; the conduct says what the terminal was doing.
    Genuine(Conduct),
    /// A genuine pack whose code the scanner corrupted on the way.
    Corrupted(Corruption),
    /// A pack that is not genuine, or (a recalled batch) must not be dispensed.
    Falsified(Falsification),
}

impl Truth {
    /// `genuine/plain`, `corrupted/caps_lock`, `falsified/unknown_serial`...: stable names for
    /// reports.
    pub fn label(self) -> String {
        match self {
            Truth::Genuine(c) => format!("genuine/{}", c.as_str()),
            Truth::Corrupted(c) => format!("corrupted/{}", c.as_str()),
            Truth::Falsified(f) => format!("falsified/{}", f.as_str()),
        }
    }
}

/// What a terminal was doing with a genuine pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Conduct {
    /// Everyday work: a dispense, a verify, an undo of its own dispense, an export, a destruction,
    /// a wholesaler's verify of a pack another market holds.
    Plain,
    /// The verify a terminal makes before dispensing the same pack.
    VerifyFirst,
    /// The clean rescan after a corrupted scan of the same pack.
    Rescan,
    /// The same dispense scanned again at the same location with a new `client_trx_id`.
    DoubleScan,
    /// A request whose answer the terminal did not get, and its retry with the same
    /// `client_trx_id`.
    TimeoutRetry,
    /// Work queued while the terminal could not reach the system, replayed afterwards: a verify
    /// with a new `client_trx_id`, then the queued request with its own (fmd-rules §6); the first
    /// queued request had already been sent when the link went down.
    OutageReplay,
    /// The genuine dispense of a pack whose code is cloned into another market.
    ClonedElsewhere,
}

impl Conduct {
    /// Every conduct.
    pub const ALL: [Conduct; 7] = [
        Conduct::Plain,
        Conduct::VerifyFirst,
        Conduct::Rescan,
        Conduct::DoubleScan,
        Conduct::TimeoutRetry,
        Conduct::OutageReplay,
        Conduct::ClonedElsewhere,
    ];

    /// `plain`, `verify_first`, `rescan`, `double_scan`, `timeout_retry`, `outage_replay`,
    /// `cloned_elsewhere`.
    pub fn as_str(self) -> &'static str {
        match self {
            Conduct::Plain => "plain",
            Conduct::VerifyFirst => "verify_first",
            Conduct::Rescan => "rescan",
            Conduct::DoubleScan => "double_scan",
            Conduct::TimeoutRetry => "timeout_retry",
            Conduct::OutageReplay => "outage_replay",
            Conduct::ClonedElsewhere => "cloned_elsewhere",
        }
    }
}

/// How a scanner corrupts a genuine pack's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Corruption {
    /// Caps Lock on: every letter's case is inverted.
    CapsLock,
    /// A scanner that types as a US keyboard into a terminal set to German (QWERTZ): `Y` and `Z`
    /// change places (in both cases), `-` arrives as `ß`, `/` as `-` (and the other keys of
    /// character set 82 as the German layout has them).
    KeyboardLayout,
    /// The group separator after a variable-length field is lost, so that field runs into the
    /// next.
    LostGroupSeparator,
}

impl Corruption {
    /// Every corruption.
    pub const ALL: [Corruption; 3] =
        [Corruption::CapsLock, Corruption::KeyboardLayout, Corruption::LostGroupSeparator];

    /// `caps_lock`, `keyboard_layout`, `lost_group_separator`.
    pub fn as_str(self) -> &'static str {
        match self {
            Corruption::CapsLock => "caps_lock",
            Corruption::KeyboardLayout => "keyboard_layout",
            Corruption::LostGroupSeparator => "lost_group_separator",
        }
    }
}

/// A kind of true falsification (and recalled batches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Falsification {
    /// A genuine pack of a product sold in one market is dispensed there; a copy of its code is
    /// dispensed in another market, which asks the first through the hub (fmd-rules §4.10).
    CloneInterMarket,
    /// A genuine pack of a product sold in two markets is dispensed in one; a copy of its code is
    /// dispensed in the other (fmd-rules §4.9: the state changes meet through the hub).
    CloneMultiMarket,
    /// A code with the product and a batch of a genuine product and a serial never uploaded.
    UnknownSerial,
    /// A code with a genuine product, and a serial and a batch never uploaded.
    UnknownBatch,
    /// A genuine pack's serial with another batch of the product.
    BatchMismatch,
    /// A genuine pack's serial and batch with another expiry.
    ExpiryMismatch,
    /// A genuine pack of a batch its OBP recalled: the rules refuse it without an alert.
    RecalledBatch,
}

impl Falsification {
    /// Every kind.
    pub const ALL: [Falsification; 7] = [
        Falsification::CloneInterMarket,
        Falsification::CloneMultiMarket,
        Falsification::UnknownSerial,
        Falsification::UnknownBatch,
        Falsification::BatchMismatch,
        Falsification::ExpiryMismatch,
        Falsification::RecalledBatch,
    ];

    /// `clone_intermarket`, `clone_multimarket`, `unknown_serial`, `unknown_batch`,
    /// `batch_mismatch`, `expiry_mismatch`, `recalled_batch`.
    pub fn as_str(self) -> &'static str {
        match self {
            Falsification::CloneInterMarket => "clone_intermarket",
            Falsification::CloneMultiMarket => "clone_multimarket",
            Falsification::UnknownSerial => "unknown_serial",
            Falsification::UnknownBatch => "unknown_batch",
            Falsification::BatchMismatch => "batch_mismatch",
            Falsification::ExpiryMismatch => "expiry_mismatch",
            Falsification::RecalledBatch => "recalled_batch",
        }
    }

    /// The alert fmd-rules §4 raises for it, or `None` for a recalled batch (refused with
    /// `NMVS_FE_LOT_01`, level 4, no alert).
    pub fn alert(self) -> Option<&'static str> {
        match self {
            Falsification::CloneInterMarket | Falsification::CloneMultiMarket => Some("A24"),
            Falsification::UnknownSerial => Some("A3"),
            Falsification::UnknownBatch => Some("A2"),
            Falsification::BatchMismatch => Some("A68"),
            Falsification::ExpiryMismatch => Some("A52"),
            Falsification::RecalledBatch => None,
        }
    }
}

/// A true falsification (or a pack of a recalled batch), with the pack its code names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What it is.
    pub kind: Falsification,
    /// The product code of the code presented.
    pub product_code: String,
    /// The serial of the code presented.
    pub serial: String,
    /// The steps that present the code (the clone's and the genuine pack's dispense, for a
    /// clone), indexes into [`Workload::steps`].
    pub steps: Vec<usize>,
}

impl Workload {
    /// Distinct transactions: requests with distinct (terminal, `client_trx_id`); a retry is the
    /// transaction it retries.
    pub fn transactions(&self) -> u64 {
        let mut seen = std::collections::HashSet::new();
        for s in &self.steps {
            for r in &s.requests {
                seen.insert((s.terminal, r.client_trx_id.as_str()));
            }
        }
        seen.len() as u64
    }

    /// Requests sent, retries and abandoned ones included.
    pub fn requests(&self) -> u64 {
        self.steps.iter().map(|s| s.requests.len() as u64).sum()
    }

    /// Every fact of the workload, one line each, in a fixed order and format: what "the same
    /// workload, byte for byte" compares. Control characters in scans are escaped.
    pub fn for_each_line(&self, mut f: impl FnMut(&str)) {
        let mut line = String::new();
        let markets = self.markets.iter().map(MarketCode::as_str).collect::<Vec<_>>().join(",");
        let _ = write!(line, "workload seed={} markets={markets}", self.seed);
        f(&line);
        for p in &self.products {
            line.clear();
            let markets = p.markets.iter().map(MarketCode::as_str).collect::<Vec<_>>().join(",");
            let _ = write!(line, "product {} {markets} {:?}", p.gtin, p.name);
            f(&line);
            for b in &p.batches {
                line.clear();
                let _ = write!(
                    line,
                    "batch {} {} expiry={} printed={} recalled={} serials={}",
                    p.gtin,
                    b.name,
                    b.expiry,
                    b.printed_expiry,
                    b.recalled,
                    b.serials.len()
                );
                f(&line);
                for s in &b.serials {
                    line.clear();
                    let _ = write!(line, "serial {} {} {s}", p.gtin, b.name);
                    f(&line);
                }
            }
        }
        for (i, t) in self.terminals.iter().enumerate() {
            line.clear();
            let _ = write!(
                line,
                "terminal {i} {} {} {} {:?} {:?}",
                t.market, t.role, t.location, t.scanner, t.input
            );
            f(&line);
        }
        for (i, s) in self.steps.iter().enumerate() {
            for r in &s.requests {
                line.clear();
                let _ = write!(
                    line,
                    "step {i} phase={} terminal={} event={:?} {} {} {} {} ",
                    s.phase,
                    s.terminal,
                    s.event,
                    r.operation.as_str(),
                    r.client_trx_id,
                    r.delivery.as_str(),
                    r.truth.label()
                );
                match &r.input {
                    Input::Scan(scan) => {
                        let _ = write!(line, "scan={}", scan.escape_default());
                    }
                    Input::Fields(x) => {
                        let _ = write!(
                            line,
                            "fields={} {} {} {}",
                            x.product_code,
                            x.serial.escape_default(),
                            x.batch.escape_default(),
                            x.expiry
                        );
                    }
                }
                f(&line);
            }
        }
        for (i, e) in self.events.iter().enumerate() {
            line.clear();
            let _ = write!(
                line,
                "event {i} {} {} {} steps={:?}",
                e.kind.as_str(),
                e.product_code,
                e.serial.escape_default(),
                e.steps
            );
            f(&line);
        }
    }

    /// The lines of [`Workload::for_each_line`].
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.for_each_line(|l| out.push(l.to_owned()));
        out
    }

    /// A 64-bit FNV-1a hash of the lines of [`Workload::for_each_line`], each ended by a line feed:
    /// equal for equal workloads, on every build (the hash is this function's, not the standard
    /// library's, whose hashers may change).
    pub fn fingerprint(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        self.for_each_line(|l| {
            for b in l.bytes().chain(std::iter::once(b'\n')) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        });
        h
    }
}
