//! Who may do what (fmd-rules §3 and its Decision lines), through the API.

use openmvs_core::pack::Policy;
use openmvs_core::roles::Role;
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn each_role_may_do_exactly_the_pack_operations_of_the_table() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let hospital = app.client(Role::Hospital, "hospital-1").await;
    let wholesaler = app.client(Role::Wholesaler, "warehouse-1").await;
    let pharmacy = app.client(Role::Pharmacy, "pharmacy-a").await;
    let nmvo = app.client(Role::Nmvo, "nmvo-office").await;
    let nca = app.client(Role::Nca, "nca-office").await;
    // (who, command on a fresh pack, the state it sets; none: 403)
    #[rustfmt::skip]
    let cases: &[(&str, &Client, &str, Option<&str>)] = &[
        ("hospital", &hospital, "verify", Some("ACTIVE")),
        ("hospital", &hospital, "supply", Some("SUPPLIED")),
        ("hospital", &hospital, "destroy", Some("DESTROYED")),
        ("hospital", &hospital, "sample", Some("SAMPLE")),
        ("hospital", &hospital, "free-sample", Some("FREE_SAMPLE")),
        ("hospital", &hospital, "lock", Some("LOCKED")),
        ("hospital", &hospital, "stolen", Some("STOLEN")),
        ("hospital", &hospital, "export", None),
        ("pharmacy", &pharmacy, "export", None),
        ("pharmacy", &pharmacy, "export-undo", None),
        ("wholesaler", &wholesaler, "verify", Some("ACTIVE")),
        ("wholesaler", &wholesaler, "export", Some("EXPORTED")),
        ("wholesaler", &wholesaler, "destroy", Some("DESTROYED")),
        ("wholesaler", &wholesaler, "supply", None),
        ("wholesaler", &wholesaler, "supply-undo", None),
        ("NMVO", &nmvo, "verify", None),
        ("NMVO", &nmvo, "supply", None),
        ("NMVO", &nmvo, "lock", None),
        ("NCA", &nca, "verify", None),
        ("NCA", &nca, "supply", None),
        ("NCA", &nca, "destroy", None),
    ];
    for &(who, client, command, state) in cases {
        let p = app.pack().await;
        let r = client.command(command, &p.req()).await;
        eprintln!("case: {who} {command}");
        match state {
            Some(s) => check(&r, "NMVS_SUCCESS", true, Some(s), &[]),
            None => {
                r.expect_error(403, "NMVS_FE_AU_04", Some("operation"));
                assert_eq!(app.stored_state(&p).await, "ACTIVE", "{who} {command}");
            }
        }
    }
}

#[tokio::test]
async fn a_wholesaler_may_supply_and_undo_where_the_market_enables_it() {
    let policy = Policy { wholesaler_supply: true, ..Policy::default() };
    let app = spawn_app_with(AppOptions { policy, ..AppOptions::default() }).await;
    app.seed_standard().await;
    let p = app.pack().await;
    let w = app.client(Role::Wholesaler, "warehouse-1").await;
    check(&w.op("supply", &p.req()).await, "NMVS_SUCCESS", true, Some("SUPPLIED"), &[]);
    check(&w.undo("supply", &p.req()).await, "NMVS_SUCCESS", true, Some("ACTIVE"), &[]);
}

#[tokio::test]
async fn the_nmvo_and_the_nca_may_not_send_bulk_requests() {
    let app = spawn_app().await;
    app.seed_standard().await;
    let p = app.pack().await;
    for role in [Role::Nmvo, Role::Nca] {
        let c = app.client(role, "authority-office").await;
        let r = c.post("/v1/bulk", &json!({"client_trx_id": trx(), "transactions": [p.row("verify")]})).await;
        r.expect_error(403, "NMVS_FE_AU_04", Some("role"));
    }
}
