//! Prints a small workload, one line per fact.
fn main() {
    let m = |s: &str| openmvs_core::ids::MarketCode::new(s).unwrap();
    let w = openmvs_workload::generate(&openmvs_workload::Config::small(1, 300, vec![m("DE"), m("FR")], 2029)).unwrap();
    for l in w.lines() { println!("{l}"); }
}
