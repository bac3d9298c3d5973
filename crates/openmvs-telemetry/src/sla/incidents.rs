//! The bounded list of incidents shown on the public status page.

use std::collections::VecDeque;

/// Incidents kept; older ones are forgotten (the status page shows recent history only).
pub const MAX_INCIDENTS: usize = 50;

/// A period in which the service was degraded or down, as told to the public on `/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    /// Identifies the incident for [`crate::SlaTracker::close_incident`]; unique within a tracker
    /// and its snapshots.
    pub id: u64,
    /// When it began, in Unix milliseconds.
    pub started_at_millis: i64,
    /// When it ended, in Unix milliseconds; `None` while it lasts.
    pub ended_at_millis: Option<i64>,
    /// A one-line summary, e.g. "Verification unavailable".
    pub title: String,
    /// What happened and what users should do, in plain words.
    pub detail: String,
}

#[derive(Debug)]
pub(crate) struct Incidents {
    /// Oldest first.
    list: VecDeque<Incident>,
    next_id: u64,
}

impl Incidents {
    pub(crate) fn new() -> Incidents {
        Incidents { list: VecDeque::new(), next_id: 1 }
    }

    pub(crate) fn open(&mut self, at_unix_millis: i64, title: String, detail: String) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.push(Incident { id, started_at_millis: at_unix_millis, ended_at_millis: None, title, detail });
        id
    }

    fn push(&mut self, incident: Incident) {
        self.list.push_back(incident);
        if self.list.len() > MAX_INCIDENTS {
            // Forget the oldest closed incident; an open one still describes the present. Only when
            // all are open does the oldest open one go.
            let i = self.list.iter().position(|i| i.ended_at_millis.is_some()).unwrap_or(0);
            self.list.remove(i);
        }
    }

    pub(crate) fn close(&mut self, id: u64, at_unix_millis: i64) -> bool {
        match self.list.iter_mut().find(|i| i.id == id && i.ended_at_millis.is_none()) {
            Some(incident) => {
                incident.ended_at_millis = Some(at_unix_millis.max(incident.started_at_millis));
                true
            }
            None => false,
        }
    }

    /// Newest first, as a status page lists them.
    pub(crate) fn newest_first(&self) -> Vec<Incident> {
        self.list.iter().rev().cloned().collect()
    }

    pub(crate) fn oldest_first(&self) -> Vec<Incident> {
        self.list.iter().cloned().collect()
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Adds restored incidents (oldest first) before the ones already kept, skipping ids already
    /// present, and moves the id counter past every restored id.
    pub(crate) fn merge(&mut self, restored: &[Incident], next_id: u64) {
        let kept = std::mem::take(&mut self.list);
        for incident in restored.iter().filter(|r| !kept.iter().any(|k| k.id == r.id)) {
            self.push(incident.clone());
        }
        for incident in kept {
            self.push(incident);
        }
        let past_restored = restored.iter().map(|i| i.id + 1).max().unwrap_or(1);
        self.next_id = self.next_id.max(next_id).max(past_restored);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_keeps_the_last_50_and_forgets_closed_ones_first() {
        let mut incidents = Incidents::new();
        let first = incidents.open(0, "still open".into(), String::new());
        for at in 1..=60 {
            let id = incidents.open(at, format!("incident {at}"), String::new());
            assert!(incidents.close(id, at + 1));
        }
        let kept = incidents.newest_first();
        assert_eq!(kept.len(), MAX_INCIDENTS);
        assert_eq!(kept[0].title, "incident 60");
        assert_eq!(kept.last().unwrap().id, first, "the open incident is kept");
    }

    #[test]
    fn an_incident_closes_once() {
        let mut incidents = Incidents::new();
        let id = incidents.open(1_000, "t".into(), "d".into());
        assert!(incidents.close(id, 2_000));
        assert!(!incidents.close(id, 3_000));
        assert!(!incidents.close(id + 1, 3_000));
        assert_eq!(incidents.newest_first()[0].ended_at_millis, Some(2_000));
    }
}
