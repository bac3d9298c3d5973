//! Undo (DR Art 13): the 10-day window on the fake clock, and the states no undo ever leaves.

use std::time::Duration;

use openmvs_core::roles::Role;

use crate::harness::*;

#[tokio::test]
async fn undo_exactly_240_hours_after_the_change_is_allowed_and_a_moment_later_raises_a24() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let [on_time, late] = <[Pack; 2]>::try_from(app.packs(2).await).expect("two packs");
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    for p in [&on_time, &late] {
        check(&a.op("supply", &p.req()).await, "NMVS_SUCCESS", true, Some("SUPPLIED"), &[]);
    }
    app.advance_hours(240);
    check(&a.undo("supply", &on_time.req()).await, "NMVS_SUCCESS", true, Some("ACTIVE"), &[]);
    app.advance(Duration::from_millis(1));
    check(&a.undo("supply", &late.req()).await, "NMVS_NC_PCK_20", false, Some("SUPPLIED"), &[]);
    assert_eq!(
        (app.stored_state(&on_time).await, app.stored_state(&late).await),
        ("ACTIVE".into(), "SUPPLIED".into())
    );
}

#[tokio::test]
async fn undo_after_the_batch_expired_within_the_window_is_refused_without_alert() {
    let app = spawn_app().await;
    app.seed_product(GTIN).await;
    app.seed_batch(GTIN, "EXP261130", "261130", &[DE]).await;
    let p = app.packs_of(GTIN, "EXP261130", "261130", 1).await.remove(0);
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    check(&a.op("lock", &p.req()).await, "NMVS_SUCCESS", true, Some("LOCKED"), &[]);
    app.advance_hours(48);
    check(&a.undo("lock", &p.req()).await, "NMVS_NC_PCK_02", false, Some("LOCKED"), &["EXPIRED"]);
}

#[tokio::test]
async fn destroyed_and_stolen_packs_can_never_be_undone() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let a = app.client(Role::Pharmacy, "pharmacy-a").await;
    // (the irreversible operation, the undo tried on it, its return code; none: no such route)
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("destroy", "supply", Some("NMVS_NC_PCK_06")),
        ("destroy", "lock", Some("NMVS_NC_PCK_06")),
        ("destroy", "destroy", None),
        ("stolen", "supply", Some("NMVS_NC_PCK_06")),
        ("stolen", "free-sample", Some("NMVS_NC_PCK_06")),
        ("stolen", "stolen", None),
    ];
    for &(op, undo, code) in cases {
        let p = app.pack().await;
        let state = if op == "destroy" { "DESTROYED" } else { "STOLEN" };
        check(&a.op(op, &p.req()).await, "NMVS_SUCCESS", true, Some(state), &[]);
        let r = a.undo(undo, &p.req()).await;
        match code {
            Some(code) => check(&r, code, false, Some(state), &[]),
            None => {
                r.expect_error(404, "NMVS_TE_NF_01", Some("operation"));
            }
        }
        check(&a.verify(&p.req()).await, "NMVS_INFO_PCK_INACTIVE", true, Some(state), &[]);
        assert_eq!(app.stored_state(&p).await, state, "{op} then {undo}/undo");
    }
}
