//! The business figures on `/metrics`, written through [`Exposition`]: alerts raised (a national
//! system) or received (the hub) per alert code since the node started, alerts not closed per
//! status, and the outbox beyond its backlog: messages whose last attempt failed and dead
//! letters, per destination at the hub (where a failing OBP callback shows by OBP); whether a
//! national node issues tokens; and an offline agent's queue, link and list of problems.
//!
//! The counts come from the services; a family whose count the store could not give is left out
//! of that scrape, as the backlog is.

use openmvs_core::alert::AlertStatus;
use openmvs_core::return_code::AlertCode;
use openmvs_store::QueueCounts;
use openmvs_telemetry::Exposition;

/// The prefix of an OBP's callback destination in the hub's outbox.
const CALLBACK_PREFIX: &str = "callback:";

/// A service's business figures, read for one scrape.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Alerts raised or received by this node since it started, per alert code.
    pub alerts: Vec<(AlertCode, u64)>,
    /// Alerts not closed, per status; `None` when the store could not be read.
    pub open_alerts: Option<Vec<(AlertStatus, u64)>>,
    /// The outbox per destination; `None` when the store could not be read.
    pub queues: Option<Vec<QueueCounts>>,
    /// Whether the node issues tokens (a national system: it can read its token-signing keys);
    /// `None` where no token is issued (the hub).
    pub token_issuing: Option<bool>,
}

fn alert_families(out: &mut Exposition, f: &Figures, counter: (&str, &str), open: (&str, &str)) {
    let mut raised = out.counter_family(counter.0, counter.1);
    for (code, n) in &f.alerts {
        raised.sample(&[("code", code.as_str())], *n);
    }
    if let Some(counts) = &f.open_alerts {
        let mut gauge = out.gauge_family(open.0, open.1);
        for (status, n) in counts {
            gauge.sample(&[("status", status.as_str())], *n);
        }
    }
}

/// A national system's figures: its one outbox queue (to the hub) is written as totals.
pub fn write_national(out: &mut Exposition, f: &Figures) {
    alert_families(
        out,
        f,
        (
            "openmvs_alerts_raised_total",
            "Alerts this node raised since it started, by alert code (one per source event: a retry that finds its alert raised counts nothing).",
        ),
        ("openmvs_alerts_open", "Alerts of the market not closed, by status."),
    );
    if let Some(issuing) = f.token_issuing {
        out.gauge(
            "openmvs_token_issuing",
            "Whether this node issues tokens: 0 while it cannot read its token-signing keys (tokens already issued are still accepted until they expire).",
            issuing,
        );
    }
    if let Some(queues) = &f.queues {
        let (failing, dead) = queues.iter().fold((0, 0), |(f, d), q| (f + q.failing, d + q.dead));
        out.gauge(
            "openmvs_outbox_failing",
            "Messages for the hub whose last delivery attempt failed, waiting for a retry.",
            failing,
        );
        out.gauge(
            "openmvs_outbox_dead_letters",
            "Messages for the hub given up on (dead letters), until replayed with openmvs admin dead-letters.",
            dead,
        );
    }
}

/// The hub's figures: failing deliveries per market and per OBP callback, dead letters per
/// destination (each destination with a message in the outbox).
pub fn write_hub(out: &mut Exposition, f: &Figures) {
    alert_families(
        out,
        f,
        (
            "openmvs_hub_alerts_received_total",
            "Alerts national systems forwarded that this node stored for the owning OBP since it started, by alert code.",
        ),
        ("openmvs_hub_alerts_open", "Alerts at the hub not closed by their OBP, by status."),
    );
    let Some(queues) = &f.queues else { return };
    let callback = |q: &QueueCounts| q.destination.strip_prefix(CALLBACK_PREFIX).map(str::to_owned);
    let mut markets = out.gauge_family(
        "openmvs_hub_outbox_failing",
        "Messages for a national system whose last delivery attempt failed, waiting for a retry, by market.",
    );
    for q in queues.iter().filter(|q| callback(q).is_none()) {
        markets.sample(&[("market", q.destination.as_str())], q.failing);
    }
    let mut callbacks = out.gauge_family(
        "openmvs_hub_callbacks_failing",
        "Events for an OBP's callback whose last attempt failed, waiting for a retry, by OBP.",
    );
    for q in queues {
        if let Some(obp) = callback(q) {
            callbacks.sample(&[("obp", obp.as_str())], q.failing);
        }
    }
    let mut dead = out.gauge_family(
        "openmvs_hub_outbox_dead_letters",
        "Messages given up on (dead letters), until replayed with openmvs admin dead-letters, by destination (a market, or callback:<obp>).",
    );
    for q in queues {
        dead.sample(&[("destination", q.destination.as_str())], q.dead);
    }
}

/// An offline agent's figures (`openmvs agent`): its queue, its link to the national system and
/// the pharmacist's list.
pub fn write_agent(out: &mut Exposition, f: &openmvs_agent::Figures) {
    out.gauge(
        "openmvs_agent_queue_length",
        "Operations recorded offline and not yet replayed.",
        f.queue_length,
    );
    out.gauge(
        "openmvs_agent_oldest_age_seconds",
        "Age of the oldest operation not yet replayed, in whole seconds (0 when none).",
        f.oldest_age_seconds as u64,
    );
    if let Some(s) = f.since_contact_seconds {
        out.gauge(
            "openmvs_agent_last_contact_age_seconds",
            "Seconds since the national system last answered (absent until it has).",
            s as u64,
        );
    }
    out.gauge("openmvs_agent_online", "Whether the national system answered the last attempt.", f.online);
    out.counter(
        "openmvs_agent_replayed_total",
        "Operations recorded offline and replayed since, in total.",
        f.replayed,
    );
    out.gauge(
        "openmvs_agent_problems_open",
        "Problems on the pharmacist's list not acknowledged.",
        f.problems_open,
    );
    out.counter("openmvs_agent_problems_total", "Problems the replay found, in total.", f.problems);
    out.counter(
        "openmvs_agent_recorded_total",
        "Requests recorded offline since the agent started.",
        f.recorded,
    );
    out.counter(
        "openmvs_agent_forwarded_total",
        "Requests forwarded and answered by the national system since the agent started.",
        f.forwarded,
    );
}

#[cfg(test)]
mod tests {
    use openmvs_telemetry::check_exposition;

    use super::*;

    fn q(destination: &str, pending: u64, failing: u64, dead: u64) -> QueueCounts {
        QueueCounts { destination: destination.into(), pending, failing, dead, oldest_at: None }
    }

    fn figures(queues: Vec<QueueCounts>) -> Figures {
        Figures {
            alerts: vec![(AlertCode::A3, 2), (AlertCode::A24, 0)],
            open_alerts: Some(vec![(AlertStatus::Open, 1), (AlertStatus::Investigating, 3)]),
            queues: Some(queues),
            token_issuing: Some(false),
        }
    }

    #[test]
    fn the_hub_shows_failing_callbacks_by_obp_and_dead_letters_by_destination() {
        let mut out = Exposition::new();
        write_hub(&mut out, &figures(vec![q("DE", 4, 1, 0), q("callback:acme \"x\"", 2, 2, 1)]));
        let text = out.into_text();
        let e = check_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let v = |name: &str, labels: &[(&str, &str)]| e.value(name, labels);
        assert_eq!(v("openmvs_hub_alerts_received_total", &[("code", "A3")]), Some(2.0), "{text}");
        assert_eq!(v("openmvs_hub_alerts_received_total", &[("code", "A24")]), Some(0.0));
        assert_eq!(v("openmvs_hub_alerts_open", &[("status", "INVESTIGATING")]), Some(3.0));
        assert_eq!(v("openmvs_hub_outbox_failing", &[("market", "DE")]), Some(1.0));
        assert_eq!(v("openmvs_hub_outbox_failing", &[("market", "callback:acme \"x\"")]), None);
        assert_eq!(v("openmvs_hub_callbacks_failing", &[("obp", "acme \"x\"")]), Some(2.0), "{text}");
        assert_eq!(v("openmvs_hub_outbox_dead_letters", &[("destination", "DE")]), Some(0.0));
        assert_eq!(
            v("openmvs_hub_outbox_dead_letters", &[("destination", "callback:acme \"x\"")]),
            Some(1.0)
        );
    }

    #[test]
    fn a_national_system_shows_its_one_queue_as_totals_and_leaves_out_what_it_could_not_read() {
        let mut out = Exposition::new();
        write_national(&mut out, &figures(vec![q("hub", 5, 2, 3)]));
        let text = out.into_text();
        let e = check_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(e.value("openmvs_alerts_raised_total", &[("code", "A3")]), Some(2.0));
        assert_eq!(e.value("openmvs_alerts_open", &[("status", "OPEN")]), Some(1.0));
        assert_eq!(e.value("openmvs_outbox_failing", &[]), Some(2.0));
        assert_eq!(e.value("openmvs_outbox_dead_letters", &[]), Some(3.0));
        assert_eq!(e.value("openmvs_token_issuing", &[]), Some(0.0));

        let mut out = Exposition::new();
        write_national(
            &mut out,
            &Figures { open_alerts: None, queues: None, token_issuing: None, ..figures(Vec::new()) },
        );
        let text = out.into_text();
        let e = check_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let families: Vec<&str> = e.families.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(families, ["openmvs_alerts_raised_total"], "{text}");
    }
}
