//! What the in-memory engine promises beyond the ports: it is deterministic, it signs a tail due
//! by time only when asked or written to, and a closed store refuses writes but still reads.

use std::sync::Arc;
use std::time::Duration;

use openmvs_audit::Entry;
use openmvs_core::time::Timestamp;
use openmvs_store::conformance::StepClock;
use openmvs_store::{AuditStore, CheckpointOptions, Committer, StoreError, UnitOfWork};
use openmvs_store_mem::{MemStore, Options};

fn store(clock: Arc<StepClock>) -> MemStore {
    MemStore::new(Options {
        signing_key: ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
        clock,
        checkpoints: CheckpointOptions { every_records: 3, ..CheckpointOptions::default() },
    })
}

fn records(n: usize, market: &str) -> UnitOfWork {
    let entry = |i: usize| Entry {
        market: market.into(),
        at_millis: 1_000,
        actor: "cl_a".into(),
        operation: "verify".into(),
        subject: format!("GTIN/09501101530003/S{i}"),
        ..Entry::default()
    };
    UnitOfWork { audit: (0..n).map(entry).collect(), ..UnitOfWork::default() }
}

#[tokio::test]
async fn the_same_units_at_the_same_times_make_the_same_trail_and_checkpoints() {
    let run = || async {
        let clock = Arc::new(StepClock::at(Timestamp::from_unix_millis(1_000)));
        let s = store(clock.clone());
        for (n, market) in [(2, "DE"), (2, "FR"), (1, "DE")] {
            s.commit(records(n, market)).await.expect("commits");
            clock.advance(Duration::from_millis(700));
        }
        s.close();
        (s.audit_page(0, 100).await.expect("trail"), s.checkpoints().await.expect("checkpoints"))
    };
    let (first, second) = (run().await, run().await);
    assert_eq!(first, second);
    assert_eq!(first.0.len(), 5);
    let signed: Vec<_> = first.1.iter().map(|cp| (cp.market.as_str(), cp.seq)).collect();
    assert_eq!(signed, [("DE", 3), ("FR", 2)], "by count, then every tail at close");
}

#[tokio::test]
async fn a_tail_due_by_time_is_signed_when_asked_and_a_closed_store_still_reads() {
    let clock = Arc::new(StepClock::at(Timestamp::from_unix_millis(1_000)));
    let s = store(clock.clone());
    s.commit(records(1, "DE")).await.expect("commits");
    s.sign_due();
    assert!(s.checkpoints().await.expect("checkpoints").is_empty(), "one record, not old yet");
    clock.advance(CheckpointOptions::default().every);
    assert!(s.checkpoints().await.expect("checkpoints").is_empty(), "no timer of its own");
    s.sign_due();
    assert_eq!(s.checkpoints().await.expect("checkpoints").len(), 1);
    s.close();
    let refused = s.commit(records(1, "DE")).await;
    assert!(matches!(refused, Err(StoreError::Unavailable(_))), "{refused:?}");
    assert_eq!(s.audit_page(0, 10).await.expect("reads go on").len(), 1);
}
