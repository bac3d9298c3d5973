//! The invariants checked at the end of every schedule, once the network has healed:
//! - every acknowledged operation took effect exactly once, in its market and (for an
//!   inter-market request) in the market that holds the pack;
//! - every copy of a multi-market pack agrees: the same state, or inactive everywhere with an A24
//!   raised where the two changes met (fmd-rules §4.9); every serial uploaded is in every target
//!   market;
//! - every alert about a product of the OBP reached the hub, and the OBP as one event however
//!   often it was sent; the hub's copy and each market's copy agree on status and classification;
//! - every market's and the hub's audit chain verifies;
//! - the hub's outbox is empty (it holds no serial every target market acknowledged), and no dead
//!   letter is without its cause.

use std::collections::{BTreeMap, BTreeSet};

use openmvs_core::alert::AlertView;
use openmvs_core::ids::{MarketCode, ProductCode, Scheme, Serial};
use openmvs_national::verify_audit;
use openmvs_store::AuditStore;
use openmvs_workload::Operation;
use openmvs_workload::tally::{Listed, Outcome};
use serde_json::Value;

use crate::schedule::{OBP, Sim};
use crate::terminals::{client_id, command};

/// A record of a market's trail, as far as the checks need it.
struct Rec {
    actor: String,
    operation: String,
    return_code: String,
    trx: String,
}

async fn records(store: &dyn AuditStore) -> Result<Vec<Rec>, String> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = store.audit_page(after, 10_000).await.map_err(|e| e.to_string())?;
        let Some((last, _)) = page.last() else { break };
        after = *last;
        for (_, r) in page {
            let req: Value = serde_json::from_str(&r.entry.request).unwrap_or(Value::Null);
            out.push(Rec {
                actor: r.entry.actor,
                operation: r.entry.operation,
                return_code: r.entry.return_code,
                trx: req["client_trx_id"].as_str().unwrap_or_default().to_owned(),
            });
        }
    }
    Ok(out)
}

/// What the checks found.
pub struct Found {
    /// Invariants broken.
    pub violations: Vec<String>,
    /// The alerts the NMVOs list (for the tally).
    pub listed: Vec<Listed>,
    /// Dead letters, each with its cause.
    pub dead_letters: Vec<String>,
}

/// Every invariant.
pub async fn check(sim: &Sim) -> Result<Found, String> {
    let mut v = Vec::new();
    exactly_once(sim, &mut v).await?;
    copies_agree(sim, &mut v).await?;
    let listed = alerts_agree(sim, &mut v).await?;
    trails_verify(sim, &mut v).await?;
    let dead_letters = outboxes(sim, &mut v).await?;
    Ok(Found { violations: v, listed, dead_letters })
}

async fn exactly_once(sim: &Sim, v: &mut Vec<String>) -> Result<(), String> {
    let mut trails: BTreeMap<MarketCode, Vec<Rec>> = BTreeMap::new();
    for (m, store) in &sim.world.stores {
        trails.insert(*m, records(store.as_ref()).await?);
    }
    let count = |m: MarketCode, actor: &str, op: &str, rc: &str, trx: &str| {
        trails[&m]
            .iter()
            .filter(|r| r.actor == actor && r.operation == op && r.return_code == rc && r.trx == trx)
            .count()
    };
    for (&(si, ri), outcome) in &sim.answers {
        let step = &sim.w.steps[si];
        let r = &step.requests[ri];
        if r.operation == Operation::Verify {
            continue;
        }
        let Outcome::Http { status: 200, return_code, accepted: Some(true), intermarket, .. } = outcome
        else {
            continue;
        };
        let market = sim.w.terminals[step.terminal].market;
        let actor = client_id(step.terminal);
        let op = command(r.operation).to_string();
        let here = count(market, &actor, &op, return_code, &r.client_trx_id);
        if here != 1 {
            v.push(format!(
                "exactly once: {market} terminal {} {op} {} acknowledged {return_code}, recorded {here} times",
                step.terminal, r.client_trx_id
            ));
        }
        if *intermarket {
            let remote_op = format!("intermarket-{op}");
            let there: usize = trails
                .keys()
                .filter(|m| **m != market)
                .map(|m| count(*m, &actor, &remote_op, return_code, &r.client_trx_id))
                .sum();
            if there != 1 {
                v.push(format!(
                    "exactly once: {market} terminal {} {op} {} acknowledged as inter-market, applied {there} times elsewhere",
                    step.terminal, r.client_trx_id
                ));
            }
        }
    }
    Ok(())
}

fn pack_key(gtin: &str, serial: &str) -> Result<(ProductCode, Serial), String> {
    let pc = ProductCode::new(Scheme::Gtin, gtin).map_err(|e| e.to_string())?;
    let s = Serial::new(serial).map_err(|e| e.to_string())?;
    Ok((pc, s))
}

async fn copies_agree(sim: &Sim, v: &mut Vec<String>) -> Result<(), String> {
    // Packs with an A24 raised in some market: their two changes met.
    let mut met = BTreeSet::new();
    for m in sim.world.markets() {
        for a in all_national_alerts(sim, m).await? {
            if a.code.as_str() == "A24" {
                met.insert((a.product_code.clone(), a.serial.as_str().to_owned()));
            }
        }
    }
    let mut packs: Vec<(String, String, Vec<MarketCode>)> = Vec::new();
    for p in &sim.w.products {
        for b in &p.batches {
            for s in &b.serials {
                packs.push((p.gtin.clone(), s.clone(), p.markets.clone()));
            }
        }
    }
    for u in &sim.uploads {
        for s in &u.serials {
            packs.push((u.gtin.clone(), s.clone(), u.markets.clone()));
        }
    }
    for (gtin, serial, markets) in packs {
        let (pc, s) = pack_key(&gtin, &serial)?;
        let mut states = BTreeMap::new();
        for m in &markets {
            let pack = sim.world.shared.national(*m)?.pack_state(&pc, &s).await.map_err(|e| e.to_string())?;
            match pack {
                Some(p) => {
                    states.insert(*m, p.state);
                }
                None => v.push(format!("distribution: {gtin} {serial} is missing in {m}")),
            }
        }
        let distinct: BTreeSet<&String> = states.values().collect();
        if distinct.len() > 1 {
            let all_inactive = states.values().all(|s| s != "ACTIVE");
            if !(all_inactive && met.contains(&(gtin.clone(), serial.clone()))) {
                v.push(format!("copies disagree: {gtin} {serial}: {states:?}"));
            }
        }
    }
    Ok(())
}

async fn all_national_alerts(sim: &Sim, m: MarketCode) -> Result<Vec<AlertView>, String> {
    let national = sim.world.shared.national(m)?;
    let nmvo = sim.nmvo(m);
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = national
            .alerts(&nmvo, None, &Default::default(), Some(100), cursor.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        out.extend(page.alerts);
        match page.next_cursor {
            Some(c) => cursor = Some(c.as_str().to_owned()),
            None => return Ok(out),
        }
    }
}

async fn all_hub_alerts(sim: &Sim) -> Result<Vec<AlertView>, String> {
    let hub = sim.world.shared.hub()?;
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = hub
            .alerts(OBP, None, &Default::default(), Some(100), cursor.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        out.extend(page.alerts);
        match page.next_cursor {
            Some(c) => cursor = Some(c.as_str().to_owned()),
            None => return Ok(out),
        }
    }
}

fn status_of(a: &AlertView) -> String {
    format!("{} {}", a.status.as_str(), a.classification.map(|c| c.as_str()).unwrap_or("-"))
}

async fn alerts_agree(sim: &Sim, v: &mut Vec<String>) -> Result<Vec<Listed>, String> {
    let gtins: BTreeSet<&str> = sim.w.products.iter().map(|p| p.gtin.as_str()).collect();
    let hub: BTreeMap<String, AlertView> =
        all_hub_alerts(sim).await?.into_iter().map(|a| (a.id.as_str().to_owned(), a)).collect();
    let mut listed = Vec::new();
    for m in sim.world.markets() {
        for a in all_national_alerts(sim, m).await? {
            listed.push(Listed {
                id: a.id.as_str().to_owned(),
                code: a.code.as_str().to_owned(),
                market: m.to_string(),
                product_code: a.product_code.clone(),
                serial: a.serial.as_str().to_owned(),
            });
            if !gtins.contains(a.product_code.as_str()) || a.code.as_str() == "SERIAL_GUESSING" {
                continue;
            }
            match hub.get(a.id.as_str()) {
                None => v.push(format!(
                    "alerts: {m}'s alert {} {} never reached the hub",
                    a.id.as_str(),
                    a.code.as_str()
                )),
                Some(h) if status_of(h) != status_of(&a) => v.push(format!(
                    "alerts: {} is '{}' at the hub and '{}' in {m}",
                    a.id.as_str(),
                    status_of(h),
                    status_of(&a)
                )),
                Some(_) => {}
            }
        }
    }
    let obp = crate::world::lock(&sim.world.shared.obp);
    let mut events: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (event_id, (kind, alert, _)) in &obp.events {
        if let (true, Some(a)) = (kind == "alert", alert) {
            events.entry(a.as_str()).or_default().insert(event_id.as_str());
        }
    }
    for id in hub.keys() {
        match events.get(id.as_str()).map_or(0, BTreeSet::len) {
            1 => {}
            n => v.push(format!("alerts: the OBP received alert {id} as {n} distinct events")),
        }
    }
    Ok(listed)
}

async fn trails_verify(sim: &Sim, v: &mut Vec<String>) -> Result<(), String> {
    let key = sim.world.signing.verifying_key();
    for (m, store) in &sim.world.stores {
        if let Err(e) = verify_audit(store.as_ref(), [key]).await {
            v.push(format!("audit: {m}'s trail does not verify: {e}"));
        }
    }
    if let Err(e) = verify_audit(sim.world.hub_store.as_ref(), [key]).await {
        v.push(format!("audit: the hub's trail does not verify: {e}"));
    }
    Ok(())
}

async fn outboxes(sim: &Sim, v: &mut Vec<String>) -> Result<Vec<String>, String> {
    let hub = sim.world.shared.hub()?;
    let pending = hub.outbox_pending().await.map_err(|e| e.to_string())?;
    if pending > 0 {
        v.push(format!("hub: {pending} messages (serials among them) still held after the heal"));
    }
    let mut dead = hub.store().dead_letters().await.map_err(|e| e.to_string())?;
    for m in sim.world.markets() {
        dead.extend(sim.world.shared.national(m)?.store().dead_letters().await.map_err(|e| e.to_string())?);
    }
    let mut listed = Vec::new();
    for d in dead {
        match d.last_error.as_deref().filter(|e| !e.is_empty()) {
            None => v.push(format!(
                "dead letter without a cause: {} to {}",
                d.message.kind, d.message.destination
            )),
            Some(e) => listed.push(format!("{} to {}: {e}", d.message.kind, d.message.destination)),
        }
    }
    Ok(listed)
}

#[cfg(test)]
mod tests {
    //! Each check fails on a world tampered with after a clean heal: a check that could not fail
    //! would prove nothing.

    use std::sync::Arc;

    use openmvs_core::time::{Date, Timestamp};
    use openmvs_national::clock::FakeClock;
    use openmvs_wire::api::AlertStatusRequest;
    use openmvs_wire::hub::{Delivery, Envelope, Message, PackStateMsg};
    use openmvs_workload::{Config, Rng, generate};

    use super::*;
    use crate::net::Profile;

    /// A schedule of `steps` steps on a stormy network, healed, with nothing broken.
    async fn healed(steps: u64) -> Sim {
        let markets = crate::MARKETS.iter().map(|m| MarketCode::new(m).unwrap()).collect();
        let w = generate(&Config::small(11, 40, markets, 2028)).unwrap();
        let start = Timestamp::start_of(Date::new(2027, 3, 1).unwrap());
        let mut sim =
            Sim::new(w, Arc::new(FakeClock::at(start)), Rng::new(5), Profile::of_level(3)).await.unwrap();
        sim.run(steps).await.unwrap();
        sim.heal().await.unwrap();
        let found = check(&sim).await.unwrap();
        assert!(
            sim.violations.is_empty() && found.violations.is_empty(),
            "{:?} {:?}",
            sim.violations,
            found.violations
        );
        sim
    }

    async fn violations(sim: &Sim) -> Vec<String> {
        check(sim).await.unwrap().violations
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap()
    }

    #[test]
    fn a_state_change_that_reached_one_market_only_leaves_copies_that_disagree() {
        rt().block_on(async {
            let sim = healed(60).await;
            let p = sim.w.products.iter().find(|p| p.markets.len() > 1).unwrap();
            let serial = p.batches[0].serials.last().unwrap();
            let (a, b) = (p.markets[0], p.markets[1]);
            let msg = Message::PackState(PackStateMsg {
                scheme: "GTIN".into(),
                product_code: p.gtin.clone(),
                serial: serial.clone(),
                batch: p.batches[0].name.clone(),
                state: "DESTROYED".into(),
                command: "destroy".into(),
                market: b.to_string(),
                location: format!("{b}-PH-9"),
                at: "2027-03-01T09:00:00.000Z".into(),
            });
            let env = Envelope {
                message_id: "MSG-tampered-1".into(),
                origin: b.to_string(),
                ordering_key: p.gtin.clone(),
                body: msg,
            };
            let ack = sim
                .world
                .shared
                .national(a)
                .unwrap()
                .apply_delivery(&Delivery { messages: vec![env] })
                .await
                .unwrap();
            assert_eq!(ack.results[0].status, "APPLIED", "{ack:?}");
            let v = violations(&sim).await;
            assert!(
                v.iter().any(|v| v.starts_with("copies disagree") && v.contains(serial.as_str())),
                "{v:?}"
            );
        });
    }

    #[test]
    fn an_alert_change_that_has_not_reached_the_hub_yet_is_a_disagreement() {
        rt().block_on(async {
            let sim = healed(60).await;
            let gtins: Vec<&str> = sim.w.products.iter().map(|p| p.gtin.as_str()).collect();
            let (m, a) = {
                let mut found = None;
                for m in sim.world.markets() {
                    let alerts = all_national_alerts(&sim, m).await.unwrap();
                    if let Some(a) = alerts
                        .into_iter()
                        .find(|a| gtins.contains(&a.product_code.as_str()) && a.status.as_str() == "OPEN")
                    {
                        found = Some((m, a));
                        break;
                    }
                }
                found.expect("an open alert about a product of the OBP")
            };
            let req =
                AlertStatusRequest { status: "INVESTIGATING".into(), classification: None, comment: None };
            let national = sim.world.shared.national(m).unwrap();
            national.change_alert_status(&sim.nmvo(m), a.id.as_str(), &req).await.unwrap();
            let v = violations(&sim).await;
            assert!(v.iter().any(|v| v.contains(a.id.as_str()) && v.contains("at the hub")), "{v:?}");
        });
    }

    #[test]
    fn an_alert_the_obp_received_as_a_second_event_is_seen() {
        rt().block_on(async {
            let sim = healed(30).await;
            let hub = all_hub_alerts(&sim).await.unwrap();
            let id = hub[0].id.as_str().to_owned();
            crate::world::lock(&sim.world.shared.obp)
                .events
                .insert("MSG-again".into(), ("alert".into(), Some(id.clone()), 1));
            let v = violations(&sim).await;
            assert!(v.iter().any(|v| v.contains(&id) && v.contains("2 distinct events")), "{v:?}");
        });
    }

    #[test]
    fn an_acknowledged_operation_missing_from_its_trail_is_seen() {
        rt().block_on(async {
            let mut sim = healed(30).await;
            let (&(si, ri), _) = sim
                .answers
                .iter()
                .find(|((si, ri), o)| {
                    sim.w.steps[*si].requests[*ri].operation != Operation::Verify
                        && matches!(o, Outcome::Http { accepted: Some(true), .. })
                })
                .expect("an acknowledged decommission");
            sim.w.steps[si].requests[ri].client_trx_id.push_str("-never-sent");
            let v = violations(&sim).await;
            assert!(
                v.iter().any(|v| v.starts_with("exactly once") && v.contains("recorded 0 times")),
                "{v:?}"
            );
        });
    }
}
