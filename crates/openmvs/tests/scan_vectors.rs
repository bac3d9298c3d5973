//! `openmvs scan` against the third-party scanner vectors (`../shared/testdata/third-party-scan-vectors`):
//! 1,943 inputs with the verdicts of GS1's Barcode Syntax Engine and other parsers. The test runs
//! the parser `openmvs scan` runs on every input, prints the agreement and every disagreement by
//! class, and fails when the agreement falls below the figure measured when the last decision
//! was taken, or when a disagreement falls in no class the parser has decided on.
//!
//! Run it with `cargo test -p openmvs --test scan_vectors -- --nocapture` to see the figures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use openmvs_core::scan;
use openmvs_core::time::Date;
use serde_json::Value;

/// The day of the first comparison run, which the vectors' expiry dates were checked against.
fn today() -> Date {
    Date::new(2026, 12, 6).expect("a date")
}

/// Inputs on which `openmvs scan` and the references agree, at least: the figure measured when
/// the parser's last decision on these vectors was taken. Raise it when a decision adds
/// agreement; lowering it needs a decision written next to the rule that makes the difference.
const AGREEING_AT_LEAST: usize = 1_911;

/// The folder of the vectors: beside the repository, as CI checks it out.
fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/third-party-scan-vectors")
}

/// The four fields of a pack as a reference read them (product code, expiry, batch, serial); a
/// field the reference does not give is `None` and not compared.
type Fields = [Option<String>; 4];

/// What a reference says of one input: whether the pack's code is read whole, and its fields.
struct Reference {
    accepts: bool,
    fields: Fields,
}

/// Reads the AI data a GS1 engine prints, `(01)...(17)...`, where `\(` is a bracket in a value.
fn ai_data(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    while chars.next() == Some('(') {
        let ai: String = chars.by_ref().take_while(|&c| c != ')').collect();
        let mut value = String::new();
        while let Some(&c) = chars.peek() {
            if c == '(' {
                break;
            }
            chars.next();
            if c == '\\' && chars.peek() == Some(&'(') {
                value.push('(');
                chars.next();
            } else {
                value.push(c);
            }
        }
        out.insert(ai, value);
    }
    out
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

/// The reference verdict of one vector, by the shape of its `expected` object (see the README).
fn reference(expected: &Value) -> Reference {
    if let Some(verdict) = expected["pack_verdict"].as_str() {
        let ais = expected["ai_data"].as_str().map(ai_data).unwrap_or_default();
        let get = |ai: &str| ais.get(ai).cloned();
        return Reference {
            accepts: verdict == "pack-ok",
            fields: [get("01"), get("17"), get("10"), get("21")],
        };
    }
    if let Some(ok) = expected["pack_expected_ok"].as_bool() {
        let f = &expected["upstream_fields"];
        return Reference {
            accepts: ok,
            fields: [text(&f["ppn"]), text(&f["expiry"]), text(&f["batch"]), text(&f["serial"])],
        };
    }
    let result = expected["result"].as_str().expect("an expected verdict in one of the README's shapes");
    Reference { accepts: !result.starts_with("ERR"), fields: [None, None, None, None] }
}

/// The class of a disagreement the parser has decided on; the comment on each says where the
/// decision and its reason are written. Anything else is "undecided", which fails the test.
fn class_of(input: &str, reference_error: &str, ours: &Result<scan::Scan, scan::ScanError>) -> &'static str {
    let our_error = ours.as_ref().err().map(ToString::to_string).unwrap_or_default();
    let digital_link = input.to_ascii_lowercase().starts_with("http");
    if our_error.contains("does not announce GS1 data") {
        // openmvs-core scan/mod.rs, `parse`: a pack's code is never a linear symbol (DR Art 5).
        "linear symbology (]C1 GS1-128, ]e0 GS1 DataBar)"
    } else if our_error.contains("is not one a pack's code carries") {
        // openmvs-core scan/mod.rs, module documentation: the AIs a pack's code carries.
        "AI outside a pack's code"
    } else if digital_link && reference_error.contains("AI (01) value is too short") {
        // openmvs-core scan/digital_link.rs, module documentation: GTIN-8, -12 and -13 are read.
        "Digital Link GTIN-8/12/13"
    } else if digital_link && reference_error.contains("Domain contains illegal characters") {
        // openmvs-core scan/digital_link.rs, module documentation: the domain is not checked.
        "Digital Link domain"
    } else if digital_link && reference_error.contains("is duplicated") {
        // openmvs-core scan/digital_link.rs, module documentation: a repeat with the same value.
        "Digital Link attribute repeated with the same value"
    } else {
        "undecided"
    }
}

#[test]
fn the_parser_agrees_with_the_third_party_references_on_every_vector_it_has_not_decided_otherwise() {
    let dir = vectors_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!("{}: {e} (the vectors are checked out beside the repository)", dir.display())
        })
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let (mut total, mut agreeing) = (0usize, 0usize);
    let mut classes: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for file in &files {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let content = std::fs::read_to_string(file).expect("the vectors read");
        for (n, line) in content.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}:{}: {e}", n + 1));
            let input = v["input"].as_str().expect("an input");
            let reference = reference(&v["expected"]);
            let ours = scan::parse(input.as_bytes(), today());
            let fields_agree = match &ours {
                Ok(s) => {
                    let got = [
                        s.id.product_code.as_str(),
                        s.id.expiry.as_str(),
                        s.id.batch.as_str(),
                        s.id.serial.as_str(),
                    ];
                    reference
                        .fields
                        .iter()
                        .zip(got)
                        .all(|(want, got)| want.as_deref().is_none_or(|w| w == got))
                }
                Err(_) => true,
            };
            total += 1;
            if ours.is_ok() == reference.accepts && fields_agree {
                agreeing += 1;
                continue;
            }
            let reference_error = v["expected"]["error"].as_str().unwrap_or_default();
            let class = if !fields_agree {
                "fields read differently"
            } else {
                class_of(input, reference_error, &ours)
            };
            let ours = match &ours {
                Ok(_) => "accepted".to_owned(),
                Err(e) => format!("refused: {e}"),
            };
            classes.entry(class).or_default().push(format!(
                "{name}:{}: {} | ours: {ours} | reference: {}",
                n + 1,
                input.escape_default(),
                if reference.accepts { "accepted" } else { reference_error }
            ));
        }
    }
    let percent = 100.0 * agreeing as f64 / total.max(1) as f64;
    println!("agreement with the third-party scan vectors: {agreeing}/{total} ({percent:.1} %)");
    for (class, cases) in &classes {
        println!("{} x {class}", cases.len());
        for case in cases {
            println!("    {case}");
        }
    }
    assert!(total > 0, "no vectors in {}", dir.display());
    for undecided in ["undecided", "fields read differently"] {
        assert!(
            !classes.contains_key(undecided),
            "disagreements no decision covers ({undecided}): {:#?}",
            classes.get(undecided)
        );
    }
    assert!(
        agreeing >= AGREEING_AT_LEAST,
        "{agreeing}/{total} agree, fewer than the {AGREEING_AT_LEAST} measured at the last decision"
    );
}
