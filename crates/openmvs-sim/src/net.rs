//! The simulated network: every call between two parts of the system meets a fate drawn from the
//! run's seed. It arrives and is answered; it is lost before it arrives; it arrives and its answer
//! is lost; it arrives twice (a copy is held and arrives later, after newer calls: duplication and
//! reordering); it is held and arrives later while the caller times out (delay and reordering); or
//! the sender dies while it waits (a relay's process killed mid-send). Parts can be cut apart
//! (partitions) and joined again. Held calls are delivered, or lost for good, by steps of the
//! schedule, and all of them at the end when the network heals.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use openmvs_core::ids::MarketCode;
use openmvs_wire::hub::{Delivery, IntermarketRequest};
use openmvs_workload::Rng;

/// A part of the system, as the network sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    /// The European Hub.
    Hub,
    /// A national system.
    Market(MarketCode),
    /// The terminals (pharmacies, hospitals, wholesalers) of a market.
    Terminals(MarketCode),
    /// The OBP's callback endpoint.
    Obp,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Hub => f.write_str("hub"),
            Part::Market(m) => write!(f, "{m}"),
            Part::Terminals(m) => write!(f, "terminals-{m}"),
            Part::Obp => f.write_str("obp"),
        }
    }
}

/// What happens to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// It arrives and its answer comes back.
    Delivered,
    /// The two parts are cut apart: refused at once.
    Unreachable,
    /// Lost on the way: it never arrives.
    RequestLost,
    /// It arrives and is processed; the answer is lost.
    AnswerLost,
    /// It arrives and is answered, and a copy arrives again later.
    Duplicated,
    /// It is held and arrives later; the caller times out now.
    Delayed,
    /// The sender dies while it waits; the call arrived first when `arrived`.
    SenderDies {
        /// Whether the call was processed before the sender died.
        arrived: bool,
    },
}

impl Fate {
    /// The fault's name in traces and counts; `None` for a call that went well.
    pub fn fault(self) -> Option<&'static str> {
        match self {
            Fate::Delivered => None,
            Fate::Unreachable => Some("partitioned"),
            Fate::RequestLost => Some("request_lost"),
            Fate::AnswerLost => Some("answer_lost"),
            Fate::Duplicated => Some("duplicated"),
            Fate::Delayed => Some("delayed"),
            Fate::SenderDies { .. } => Some("sender_died"),
        }
    }
}

/// A call the network holds, to arrive later.
#[derive(Debug, Clone)]
pub enum Held {
    /// Messages from the hub to a national system.
    ToMarket(MarketCode, Delivery),
    /// Messages from a national system to the hub.
    ToHub(MarketCode, Delivery),
    /// An inter-market request from a national system to the hub.
    Intermarket(IntermarketRequest),
    /// An inter-market request from the hub to the national system that holds the pack.
    Query(MarketCode, IntermarketRequest),
    /// A callback POST to the OBP.
    Callback(String),
    /// A terminal's request (an index into the workload's steps and their requests).
    Pack {
        /// The terminal.
        terminal: usize,
        /// Its market.
        market: MarketCode,
        /// The step.
        step: usize,
        /// The request of the step.
        request: usize,
    },
}

impl Held {
    /// Its sender and receiver.
    pub fn route(&self) -> (Part, Part) {
        match self {
            Held::ToMarket(m, _) | Held::Query(m, _) => (Part::Hub, Part::Market(*m)),
            Held::ToHub(m, _) => (Part::Market(*m), Part::Hub),
            Held::Intermarket(r) => {
                let from = MarketCode::new(&r.market).map(Part::Market).unwrap_or(Part::Hub);
                (from, Part::Hub)
            }
            Held::Callback(_) => (Part::Hub, Part::Obp),
            Held::Pack { market, .. } => (Part::Terminals(*market), Part::Market(*market)),
        }
    }

    /// What it is, for the trace.
    pub fn describe(&self) -> String {
        let (from, to) = self.route();
        let what = match self {
            Held::ToMarket(_, d) | Held::ToHub(_, d) => {
                let kinds: Vec<&str> = d.messages.iter().map(|e| e.body.kind()).collect();
                format!("messages [{}]", kinds.join(","))
            }
            Held::Intermarket(r) | Held::Query(_, r) => format!("intermarket {}", r.command),
            Held::Callback(_) => "callback".to_owned(),
            Held::Pack { terminal, step, request, .. } => {
                format!("terminal {terminal} step {step}.{request}")
            }
        };
        format!("{from}->{to} {what}")
    }
}

/// How often each fault happens, per thousand calls; drawn per seed, so that some schedules are
/// calm and some stormy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// Requests lost.
    pub request_lost: u64,
    /// Answers lost.
    pub answer_lost: u64,
    /// Calls duplicated.
    pub duplicated: u64,
    /// Calls held.
    pub delayed: u64,
    /// Relay senders that die while they wait (only where a sender can die: the relays).
    pub sender_dies: u64,
}

impl Profile {
    /// No fault at all: the network after it heals.
    pub const CALM: Profile =
        Profile { request_lost: 0, answer_lost: 0, duplicated: 0, delayed: 0, sender_dies: 0 };

    /// A profile of intensity `level` (0 calm to 4 stormy).
    pub fn of_level(level: u64) -> Profile {
        Profile {
            request_lost: 25 * level,
            answer_lost: 25 * level,
            duplicated: 15 * level,
            delayed: 20 * level,
            sender_dies: 8 * level,
        }
    }
}

/// The network: partitions, held calls, the fault profile and the counts of faults injected.
pub struct Net {
    rng: Rng,
    profile: Profile,
    cut: BTreeSet<(Part, Part)>,
    held: Vec<Held>,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
}

fn pair(a: Part, b: Part) -> (Part, Part) {
    if a <= b { (a, b) } else { (b, a) }
}

impl Net {
    /// A network drawing from `rng`, with `profile`.
    pub fn new(rng: Rng, profile: Profile) -> Net {
        Net { rng, profile, cut: BTreeSet::new(), held: Vec::new(), faults: BTreeMap::new() }
    }

    /// Counts a fault of `kind`.
    pub fn count(&mut self, kind: &'static str) {
        *self.faults.entry(kind).or_default() += 1;
    }

    /// The fate of a call from `from` to `to`; `may_die` when the sender is a relay that can die
    /// while it waits.
    pub fn fate(&mut self, from: Part, to: Part, may_die: bool) -> Fate {
        let fate = if self.cut.contains(&pair(from, to)) {
            Fate::Unreachable
        } else {
            let p = self.profile;
            let roll = self.rng.below(1000);
            let mut at = 0;
            let mut next = |n: u64| {
                at += n;
                roll < at
            };
            if next(p.request_lost) {
                Fate::RequestLost
            } else if next(p.answer_lost) {
                Fate::AnswerLost
            } else if next(p.duplicated) {
                Fate::Duplicated
            } else if next(p.delayed) {
                Fate::Delayed
            } else if may_die && next(p.sender_dies) {
                Fate::SenderDies { arrived: self.rng.percent(50) }
            } else {
                Fate::Delivered
            }
        };
        if let Some(kind) = fate.fault() {
            self.count(kind);
        }
        fate
    }

    /// Whether `a` and `b` are cut apart.
    pub fn is_cut(&self, a: Part, b: Part) -> bool {
        self.cut.contains(&pair(a, b))
    }

    /// Cuts `a` and `b` apart; false if they already were.
    pub fn partition(&mut self, a: Part, b: Part) -> bool {
        let new = self.cut.insert(pair(a, b));
        if new {
            self.count("partition");
        }
        new
    }

    /// Joins `a` and `b` again; false if they were not cut.
    pub fn join(&mut self, a: Part, b: Part) -> bool {
        self.cut.remove(&pair(a, b))
    }

    /// The pairs cut apart now.
    pub fn cuts(&self) -> Vec<(Part, Part)> {
        self.cut.iter().copied().collect()
    }

    /// Holds `call` to arrive later.
    pub fn hold(&mut self, call: Held) {
        self.held.push(call);
    }

    /// How many calls are held.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Takes the held call at `i` (modulo the number held) whose route is not cut, if any.
    pub fn take_held(&mut self, i: usize) -> Option<Held> {
        let open: Vec<usize> = (0..self.held.len())
            .filter(|&k| {
                let (a, b) = self.held[k].route();
                !self.is_cut(a, b)
            })
            .collect();
        if open.is_empty() {
            return None;
        }
        Some(self.held.remove(open[i % open.len()]))
    }

    /// Sets the profile (calm once the network heals).
    pub fn set_profile(&mut self, profile: Profile) {
        self.profile = profile;
    }

    /// Joins every cut pair again.
    pub fn heal(&mut self) {
        self.cut.clear();
    }
}
