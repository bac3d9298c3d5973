//! The console's history and incidents in memory, shared by both in-memory engines.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use openmvs_store::{
    BoxFuture, Impact, IncidentFilter, IncidentNote, IncidentRecord, IncidentStatus, IncidentStore,
    NewIncident, SlaNodeDay, SlaStore, StoreResult,
};

#[derive(Default)]
struct State {
    /// By (scope, day, node).
    sla: BTreeMap<(String, i64, String), SlaNodeDay>,
    /// By id; ids are 1.. in order.
    incidents: Vec<IncidentRecord>,
}

/// What an in-memory engine keeps for the console.
#[derive(Default)]
pub(crate) struct Console(Mutex<State>);

impl Console {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SlaStore for Console {
    fn put_sla(&self, rows: Vec<SlaNodeDay>) -> BoxFuture<'_, StoreResult<()>> {
        let mut s = self.lock();
        for r in rows {
            s.sla.insert((r.scope.clone(), r.day, r.node.clone()), r);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn sla_days(&self, from_day: i64, to_day: i64) -> BoxFuture<'_, StoreResult<Vec<SlaNodeDay>>> {
        let mut rows: Vec<SlaNodeDay> =
            self.lock().sla.values().filter(|r| (from_day..=to_day).contains(&r.day)).cloned().collect();
        rows.sort_by(|a, b| (&a.scope, a.day, &a.node).cmp(&(&b.scope, b.day, &b.node)));
        Box::pin(std::future::ready(Ok(rows)))
    }
}

impl IncidentStore for Console {
    fn open_incident(&self, new: NewIncident) -> BoxFuture<'_, StoreResult<(IncidentRecord, bool)>> {
        let mut s = self.lock();
        let open = new.rule.as_ref().and_then(|rule| {
            s.incidents
                .iter()
                .find(|i| i.resolved_at.is_none() && i.scope == new.scope && i.rule.as_ref() == Some(rule))
                .cloned()
        });
        let r = match open {
            Some(i) => (i, false),
            None => {
                let i = IncidentRecord {
                    id: s.incidents.len() as u64 + 1,
                    scope: new.scope,
                    rule: new.rule,
                    title: new.title,
                    impact: new.impact,
                    status: new.note.status,
                    opened_at: new.note.at,
                    resolved_at: (new.note.status == IncidentStatus::Resolved).then_some(new.note.at),
                    notes: vec![new.note],
                };
                s.incidents.push(i.clone());
                (i, true)
            }
        };
        Box::pin(std::future::ready(Ok(r)))
    }

    fn note_incident(
        &self,
        id: u64,
        note: IncidentNote,
        impact: Option<Impact>,
    ) -> BoxFuture<'_, StoreResult<Option<IncidentRecord>>> {
        let mut s = self.lock();
        let r = s.incidents.iter_mut().find(|i| i.id == id && i.resolved_at.is_none()).map(|i| {
            i.status = note.status;
            if note.status == IncidentStatus::Resolved {
                i.resolved_at = Some(note.at);
            }
            if let Some(impact) = impact {
                i.impact = impact;
            }
            i.notes.push(note);
            i.clone()
        });
        Box::pin(std::future::ready(Ok(r)))
    }

    fn incident(&self, id: u64) -> BoxFuture<'_, StoreResult<Option<IncidentRecord>>> {
        let r = self.lock().incidents.iter().find(|i| i.id == id).cloned();
        Box::pin(std::future::ready(Ok(r)))
    }

    fn incidents(&self, filter: IncidentFilter) -> BoxFuture<'_, StoreResult<Vec<IncidentRecord>>> {
        let r = self
            .lock()
            .incidents
            .iter()
            .rev()
            .filter(|i| filter.before_id.is_none_or(|b| i.id < b))
            .filter(|i| !filter.open_only || i.resolved_at.is_none())
            .take(filter.limit())
            .cloned()
            .collect();
        Box::pin(std::future::ready(Ok(r)))
    }
}

/// Implements the console's traits for an engine by handing each call to its `console` field.
macro_rules! delegate_console {
    ($store:ty) => {
        impl openmvs_store::SlaStore for $store {
            fn put_sla(
                &self,
                rows: Vec<openmvs_store::SlaNodeDay>,
            ) -> openmvs_store::BoxFuture<'_, openmvs_store::StoreResult<()>> {
                self.console.put_sla(rows)
            }
            fn sla_days(
                &self,
                from_day: i64,
                to_day: i64,
            ) -> openmvs_store::BoxFuture<'_, openmvs_store::StoreResult<Vec<openmvs_store::SlaNodeDay>>> {
                self.console.sla_days(from_day, to_day)
            }
        }
        impl openmvs_store::IncidentStore for $store {
            fn open_incident(
                &self,
                new: openmvs_store::NewIncident,
            ) -> openmvs_store::BoxFuture<'_, openmvs_store::StoreResult<(openmvs_store::IncidentRecord, bool)>> {
                self.console.open_incident(new)
            }
            fn note_incident(
                &self,
                id: u64,
                note: openmvs_store::IncidentNote,
                impact: Option<openmvs_store::Impact>,
            ) -> openmvs_store::BoxFuture<'_, openmvs_store::StoreResult<Option<openmvs_store::IncidentRecord>>> {
                self.console.note_incident(id, note, impact)
            }
            fn incident(
                &self,
                id: u64,
            ) -> openmvs_store::BoxFuture<'_, openmvs_store::StoreResult<Option<openmvs_store::IncidentRecord>>> {
                self.console.incident(id)
            }
            fn incidents(
                &self,
                filter: openmvs_store::IncidentFilter,
            ) -> openmvs_store::BoxFuture<'_, openmvs_store::StoreResult<Vec<openmvs_store::IncidentRecord>>> {
                self.console.incidents(filter)
            }
        }
    };
}
pub(crate) use delegate_console;
