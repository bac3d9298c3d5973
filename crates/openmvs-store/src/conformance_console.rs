//! The console's conformance cases, which every national and hub engine passes unchanged: the
//! national and hub suites run each of them on their own store.

use std::sync::Arc;

use openmvs_core::time::Timestamp;

use crate::*;

fn at(n: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_800_000_000_000 + n)
}

fn class(name: &str, requests: u64, slow: u64) -> SlaClassDay {
    SlaClassDay {
        class: name.into(),
        requests,
        under_300ms: requests - slow,
        sum_micros: requests * 2_000 + slow * 400_000,
        buckets: vec![requests - slow, 0, slow],
    }
}

fn row(scope: &str, day: i64, node: &str, requests: u64) -> SlaNodeDay {
    SlaNodeDay {
        scope: scope.into(),
        day,
        node: node.into(),
        observed_minutes: 1440,
        ready_minutes: 1438,
        classes: vec![class("verification", requests, 1), class("status_update", requests / 2, 0)],
    }
}

/// A node's row of a day is replaced by its next write, other nodes' rows stay; rows read back
/// exactly, by scope, day and node, within the days asked for.
pub async fn sla_rows_replace_their_own_and_read_back_by_day_range(store: Arc<dyn ConsoleStore>) {
    store
        .put_sla(vec![
            row("DE", 10, "a", 10),
            row("DE", 11, "a", 20),
            row("DE", 11, "b", 30),
            row("DE", 12, "b", 4),
        ])
        .await
        .expect("put");
    let mut again = row("DE", 11, "a", 25);
    again.ready_minutes = 1200;
    store.put_sla(vec![again.clone()]).await.expect("put again");
    assert_eq!(
        store.sla_days(11, 12).await.expect("read"),
        vec![again, row("DE", 11, "b", 30), row("DE", 12, "b", 4)]
    );
    assert_eq!(store.sla_days(10, 10).await.expect("read").len(), 1);
    assert!(store.sla_days(13, 400).await.expect("read").is_empty());
}

fn note(n: i64, status: IncidentStatus, message: &str) -> IncidentNote {
    IncidentNote { at: at(n), status, message: message.into(), author: "ops".into() }
}

fn incident(scope: &str, rule: Option<&str>, n: i64) -> NewIncident {
    NewIncident {
        scope: scope.into(),
        rule: rule.map(str::to_owned),
        title: format!("incident at {n}"),
        impact: Impact::Minor,
        note: note(n, IncidentStatus::Investigating, "looking into it"),
    }
}

/// An incident keeps every note in order; a note in status resolved resolves it, and after that
/// it takes no note. Lists come newest first, open ones alone on request, page by page.
pub async fn an_incident_keeps_its_timeline_and_takes_no_note_once_resolved(store: Arc<dyn ConsoleStore>) {
    let (first, created) = store.open_incident(incident("DE", None, 0)).await.expect("open");
    assert!(created);
    assert_eq!(
        (first.status, first.resolved_at, first.notes.len()),
        (IncidentStatus::Investigating, None, 1)
    );
    let (second, _) = store.open_incident(incident("DE", None, 1)).await.expect("open");
    let (third, _) = store.open_incident(incident("DE", None, 2)).await.expect("open");
    assert!(first.id < second.id && second.id < third.id);

    let noted = store
        .note_incident(
            first.id,
            note(10, IncidentStatus::Identified, "a \"disk\" <full>"),
            Some(Impact::Major),
        )
        .await
        .expect("note")
        .expect("open incident");
    assert_eq!(
        (noted.status, noted.impact, noted.notes.len()),
        (IncidentStatus::Identified, Impact::Major, 2)
    );
    let resolved = store
        .note_incident(first.id, note(20, IncidentStatus::Resolved, "space freed"), None)
        .await
        .expect("note")
        .expect("open incident");
    assert_eq!(
        (resolved.status, resolved.resolved_at, resolved.impact),
        (IncidentStatus::Resolved, Some(at(20)), Impact::Major)
    );
    assert_eq!(
        resolved.notes.iter().map(|n| (n.message.as_str(), n.at)).collect::<Vec<_>>(),
        vec![("looking into it", at(0)), ("a \"disk\" <full>", at(10)), ("space freed", at(20))]
    );
    assert_eq!(
        store
            .note_incident(first.id, note(30, IncidentStatus::Monitoring, "late"), None)
            .await
            .expect("note"),
        None
    );
    assert_eq!(
        store.note_incident(999_999, note(30, IncidentStatus::Monitoring, "none"), None).await.expect("note"),
        None
    );
    assert_eq!(store.incident(first.id).await.expect("read"), Some(resolved));
    assert_eq!(store.incident(999_999).await.expect("read"), None);

    let ids = |list: Vec<IncidentRecord>| list.into_iter().map(|i| i.id).collect::<Vec<_>>();
    let all = store.incidents(IncidentFilter::default()).await.expect("list");
    assert_eq!(ids(all), vec![third.id, second.id, first.id]);
    let open = store.incidents(IncidentFilter { open_only: true, ..Default::default() }).await.expect("list");
    assert_eq!(ids(open), vec![third.id, second.id]);
    let page = store.incidents(IncidentFilter { limit: 2, ..Default::default() }).await.expect("list");
    assert_eq!(ids(page), vec![third.id, second.id]);
    let next = store
        .incidents(IncidentFilter { limit: 2, before_id: Some(second.id), ..Default::default() })
        .await
        .expect("list");
    assert_eq!(ids(next), vec![first.id]);
}

/// While an incident a rule opened is unresolved, the same rule in the same scope opens no other,
/// even when several nodes apply it at once; another scope or another rule opens its own, and once
/// resolved the rule opens a new one.
pub async fn a_rule_opens_one_incident_at_a_time_per_scope(store: Arc<dyn ConsoleStore>) {
    let mut tasks = Vec::new();
    for n in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.open_incident(incident("DE", Some("slow:verification"), n)).await
        }));
    }
    let mut opened = Vec::new();
    for t in tasks {
        opened.push(t.await.expect("task").expect("open"));
    }
    assert_eq!(opened.iter().filter(|(_, created)| *created).count(), 1, "{opened:?}");
    let id = opened[0].0.id;
    assert!(opened.iter().all(|(i, _)| i.id == id));
    let (other_scope, created) =
        store.open_incident(incident("FR", Some("slow:verification"), 9)).await.expect("open");
    assert!(created && other_scope.id != id);
    let (other_rule, created) =
        store.open_incident(incident("DE", Some("not_ready"), 9)).await.expect("open");
    assert!(created && other_rule.id != id);
    store
        .note_incident(id, note(50, IncidentStatus::Resolved, "fast again"), None)
        .await
        .expect("note")
        .expect("open");
    let (again, created) =
        store.open_incident(incident("DE", Some("slow:verification"), 60)).await.expect("open");
    assert!(created && again.id > other_rule.id);
    assert_eq!(again.rule.as_deref(), Some("slow:verification"));
}

/// The entries a suite appends, in this order, before [`audit_search_reads_what_the_trail_holds`]:
/// three packs of one product and one of another, by two clients at two premises, over three
/// days, with several operations.
pub fn audit_search_entries(market: &str) -> Vec<openmvs_audit::Entry> {
    let subjects = [
        "GTIN/09501101530003/S1",
        "GTIN/09501101530003/S2",
        "GTIN/09501101530003/S3",
        "GTIN/05601234567892/S1",
        "client/cl_a",
    ];
    (0..30)
        .map(|i: usize| openmvs_audit::Entry {
            market: market.into(),
            at_millis: at(0).unix_millis() + (i as i64 / 10) * 86_400_000,
            actor: if i.is_multiple_of(3) { "cl_b".into() } else { "cl_a".into() },
            role: "PHARMACY".into(),
            location: if i.is_multiple_of(2) { "PH-1".into() } else { "PH-2".into() },
            operation: ["verify", "supply", "supply-undo"][i % 3].into(),
            subject: subjects[i % subjects.len()].into(),
            return_code: "NMVS_SUCCESS".into(),
            request: format!("{{\"n\":{i}}}"),
            result: "{}".into(),
        })
        .collect()
}

/// After [`audit_search_entries`] were committed, every search answers exactly the records of the
/// whole trail that meet it, in commit order, within its positions and limit.
pub async fn audit_search_reads_what_the_trail_holds(store: &dyn AuditStore) {
    let all = store.audit_page(0, 10_000).await.expect("the trail");
    let last = all.last().map_or(0, |(p, _)| *p);
    assert_eq!(store.audit_last_pos().await.expect("the last position"), last);
    let queries = [
        AuditQuery { subjects: vec!["GTIN/09501101530003/S2".into()], ..AuditQuery::default() },
        AuditQuery {
            subjects: vec!["GTIN/09501101530003/S1".into(), "client/cl_a".into()],
            operation: Some("supply".into()),
            ..AuditQuery::default()
        },
        AuditQuery { subject_prefix: Some("GTIN/09501101530003/".into()), ..AuditQuery::default() },
        AuditQuery { actor: Some("cl_b".into()), location: Some("PH-1".into()), ..AuditQuery::default() },
        AuditQuery {
            from_millis: Some(at(0).unix_millis() + 86_400_000),
            to_millis: Some(at(0).unix_millis() + 2 * 86_400_000),
            ..AuditQuery::default()
        },
        AuditQuery {
            operation: Some("verify".into()),
            after_pos: all[5].0,
            until_pos: Some(all[20].0),
            ..AuditQuery::default()
        },
        AuditQuery { actor: Some("nobody".into()), ..AuditQuery::default() },
    ];
    for q in queries {
        for limit in [1000, 3] {
            let q = AuditQuery { limit, ..q.clone() };
            let want: Vec<u64> = all
                .iter()
                .filter(|(p, r)| *p > q.after_pos && q.until_pos.is_none_or(|u| *p <= u) && q.matches(r))
                .map(|(p, _)| *p)
                .take(limit)
                .collect();
            let got = store.audit_search(&q).await.expect("search");
            assert_eq!(got.iter().map(|(p, _)| *p).collect::<Vec<_>>(), want, "{q:?}");
            for (p, r) in &got {
                assert_eq!(all.iter().find(|(x, _)| x == p).map(|(_, r)| r), Some(r), "read back exactly");
            }
        }
    }
}

/// Defines, in a suite's module, one case per console case on that suite's store type.
#[macro_export]
#[doc(hidden)]
macro_rules! console_cases {
    ($store:ty; $($case:ident,)*) => {
        $(
            /// See [`crate::conformance_console`].
            pub async fn $case(store: std::sync::Arc<$store>, _key: ed25519_dalek::VerifyingKey) {
                let store: std::sync::Arc<dyn $crate::ConsoleStore> = store;
                $crate::conformance_console::$case(store).await;
            }
        )*
    };
}
