//! No alert that a scan error explains (fmd-rules §2): the repairs of a corrupted identifier
//! (`scan::repairs`) and the decision they feed (`pack::decide_rescan`), as tables and as
//! properties over arbitrary identifiers, with one pack stored in a little world as the store.

use openmvs_core::ids::{Batch, Expiry, Location, PackIdentifier, ProductCode, Serial, gs1_check_digit};
use openmvs_core::pack::{
    BatchFacts, Command, Context, Decision, Facts, Operation, Pack, PackState, Policy, Request, decide,
    decide_rescan,
};
use openmvs_core::return_code::ReturnCode;
use openmvs_core::scan::{Corruption, MAX_REPAIRS, WarningCode, repairs};
use openmvs_core::time::{Date, Timestamp};
use proptest::prelude::*;

fn today() -> Date {
    Date::new(2026, 11, 29).expect("a date")
}

fn id(batch: &str, serial: &str, expiry: &str) -> PackIdentifier {
    PackIdentifier {
        product_code: ProductCode::gtin("09501101530003").expect("a GTIN"),
        serial: Serial::new(serial).expect("a serial"),
        batch: Batch::new(batch).expect("a batch"),
        expiry: Expiry::parse(expiry, today()).expect("an expiry"),
        nhrn: None,
    }
}

/// The repairs of (batch, serial) as `corruption batch serial warning` lines.
fn repaired(batch: &str, serial: &str, expiry: &str) -> Vec<String> {
    repairs(&id(batch, serial, expiry))
        .iter()
        .map(|r| format!("{:?} {} {} {}", r.corruption, r.id.batch, r.id.serial, r.warning.code))
        .collect()
}

#[test]
fn each_corruption_is_undone_where_the_identifier_shows_its_mark() {
    let cases: &[(&str, &str, &[&str])] = &[
        // A clean code: nothing to undo.
        ("ABC123", "X4K9P7Q2M8R5", &[]),
        // Caps Lock: a lower-case-only field; every letter of both fields is inverted back.
        ("abc123", "x4k9p7q2m8r5", &["CapsLock ABC123 X4K9P7Q2M8R5 LOWERCASE_FIELD"]),
        ("123", "x4k9", &["CapsLock 123 X4K9 LOWERCASE_FIELD"]),
        ("aBc", "x4", &["CapsLock AbC X4 LOWERCASE_FIELD"]),
        // Mixed case is not Caps Lock's mark.
        ("aBc", "X4", &[]),
        // A keyboard-layout mismatch, undone both ways; Y and Z alone read the same both ways.
        ("AY-7", "Z4Y9", &["UsScannerOnGermanLayout AZ/7 Y4Z9 KEYBOARD_LAYOUT"]),
        ("A&7", "S1", &["GermanScannerOnUsLayout A/7 S1 KEYBOARD_LAYOUT"]),
        (
            "L(1)",
            "S1",
            &[
                "UsScannerOnGermanLayout L*1( S1 KEYBOARD_LAYOUT",
                "GermanScannerOnUsLayout L)1= S1 KEYBOARD_LAYOUT",
            ],
        ),
        // '=' shown by a computer set to US is a German '´', which set 82 lacks: one way only.
        ("L(1)", "S=", &["UsScannerOnGermanLayout L*1( S) KEYBOARD_LAYOUT"]),
        ("LOT", "SZ1", &["UsScannerOnGermanLayout LOT SY1 KEYBOARD_LAYOUT"]),
        // A character no key of the scanner's layout gives on the computer's: no such mismatch.
        ("A+Z", "S1", &[]),
        // Lower case and a swapped letter: both repairs, Caps Lock first.
        ("lot", "sz", &["CapsLock LOT SZ LOWERCASE_FIELD", "UsScannerOnGermanLayout lot sy KEYBOARD_LAYOUT"]),
        // A lost separator: the batch ends with 21 and the serial, or the serial with 10 and the
        // batch or 17 and the expiry.
        ("ABC12321X4K9", "X4K9", &["LostSeparator ABC123 X4K9 BATCH_MAY_CONTAIN_SERIAL"]),
        ("ABC123", "X4K910ABC123", &["LostSeparator ABC123 X4K9 SERIAL_MAY_CONTAIN_AI"]),
        ("ABC123", "X4K917271231", &["LostSeparator ABC123 X4K9 SERIAL_MAY_CONTAIN_AI"]),
        // A 21 in a batch that does not end with the serial is the batch's own.
        ("AB21CDEFGH", "X", &[]),
        ("21X4K9", "X4K9", &[]),
        ("ABC123", "10ABC123", &[]),
    ];
    for &(batch, serial, expected) in cases {
        assert_eq!(repaired(batch, serial, "271231"), expected, "{batch} / {serial}");
    }
}

#[test]
fn the_warning_of_a_repair_names_what_was_read_and_asks_for_a_rescan() {
    let r = repairs(&id("AY-7", "Z4Y9", "271231")).remove(0);
    assert_eq!(r.corruption, Corruption::UsScannerOnGermanLayout);
    assert_eq!(r.warning.code, WarningCode::KeyboardLayout);
    assert_eq!(
        r.warning.message,
        "the batch 'AY-7' and serial 'Z4Y9' match no pack, but 'AZ/7' and 'Y4Z9' do, as a scanner set to a US \
         keyboard on a computer set to German would turn them (Y and Z swapped, for instance): set the \
         scanner's keyboard layout to the computer's and rescan the pack"
    );
    for r in repairs(&id("abc", "x", "271231")).iter().chain(&repairs(&id("ABC21X4K9P", "X4K9P", "271231"))) {
        assert!(r.warning.message.to_lowercase().contains("rescan the pack"), "{}", r.warning.message);
    }
}

// ---- the decision ----

fn decision(code: ReturnCode) -> Decision {
    Decision { code, accepted: code == ReturnCode::Success, update: None, view: None }
}

#[test]
fn a_refusal_a_repair_explains_becomes_a_rescan_and_any_other_stands() {
    use ReturnCode::*;
    let mismatches = [SerialUnknown, SerialAndBatchUnknown, BatchMismatch, ExpiryMismatch];
    let rescan = (decision(RescanRequired), None::<usize>);
    for as_read in mismatches {
        // No repair, or none that matches a pack: the refusal stands, alert and all.
        assert_eq!(decide_rescan(decision(as_read), &[]), (decision(as_read), None));
        let none_match: Vec<Decision> = mismatches.iter().map(|&c| decision(c)).collect();
        assert_eq!(decide_rescan(decision(as_read), &none_match), (decision(as_read), None));
        assert_eq!(decide_rescan(decision(as_read), &[decision(ProductUnknown)]), (decision(as_read), None));
        // A repair that matches a pack explains it, whatever that pack's answer would be.
        for matched in
            [Success, PackInactive, PackInactiveStateChange, BatchRecalled, AlreadyInState, UndoTooLate]
        {
            let (d, i) = decide_rescan(decision(as_read), &[decision(SerialUnknown), decision(matched)]);
            assert_eq!((d, i), (rescan.0.clone(), Some(1)), "{as_read} then {matched}");
        }
    }
    // A refusal that is not about the identifier is no scanner's doing.
    for as_read in [Success, PackInactiveStateChange, UndoOtherLocation, ProductUnknown, BatchExpired] {
        assert_eq!(
            decide_rescan(decision(as_read), &[decision(Success)]),
            (decision(as_read), None),
            "{as_read}"
        );
    }
    assert_eq!(RescanRequired.alert(), None);
}

/// A market holding one pack: the facts of any identifier a request names, as the store reads them.
struct World {
    stored: PackIdentifier,
    pack: Pack,
    batch: BatchFacts,
}

impl World {
    fn new(stored: PackIdentifier, state: PackState) -> World {
        let batch = BatchFacts { expiry: stored.expiry, recalled: false };
        let pack = Pack { state, ..Pack::new(stored.batch.clone()) };
        World { stored, pack, batch }
    }

    fn decide(&self, command: Command, read: &PackIdentifier) -> Decision {
        let facts = Facts {
            product_withdrawn: Some(false),
            pack: (read.serial == self.stored.serial).then_some((&self.pack, &self.batch)),
            requested_batch_known: read.batch == self.stored.batch,
        };
        let location = Location::new("pharmacy-a").expect("a location");
        let policy = Policy::default();
        let ctx = Context { location: &location, now: Timestamp::start_of(today()), policy: &policy };
        decide(&Request { command, batch: &read.batch, expiry: Some(&read.expiry) }, &facts, &ctx)
    }

    /// What the verification system answers to `read`: decided as read, then, if it matches no
    /// pack, with each repair.
    fn answer(&self, command: Command, read: &PackIdentifier) -> Decision {
        let as_read = self.decide(command, read);
        if !as_read.may_be_misread() {
            return as_read;
        }
        let repaired: Vec<Decision> = repairs(read).iter().map(|r| self.decide(command, &r.id)).collect();
        decide_rescan(as_read, &repaired).0
    }
}

// ---- properties ----

const UPPER82: &[u8] = b"!%&()*,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_";
const SET82: &[u8] = b"!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";

fn text(alphabet: &'static [u8], max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(alphabet), 1..=max)
        .prop_map(|b| b.into_iter().map(char::from).collect())
}

fn identifier(alphabet: &'static [u8]) -> impl Strategy<Value = PackIdentifier> {
    let gtin = prop::collection::vec(b'0'..=b'9', 13).prop_map(|mut d| {
        d.push(b'0' + gs1_check_digit(&d));
        ProductCode::gtin(std::str::from_utf8(&d).expect("digits")).expect("a GTIN")
    });
    let expiry = (26u8..40, 1u8..=12, 1u8..=28)
        .prop_map(|(y, m, d)| Expiry::parse(&format!("{y:02}{m:02}{d:02}"), today()).expect("an expiry"));
    (gtin, text(alphabet, 20), text(alphabet, 20), expiry).prop_map(
        |(product_code, batch, serial, expiry)| PackIdentifier {
            product_code,
            serial: Serial::new(&serial).expect("a serial"),
            batch: Batch::new(&batch).expect("a batch"),
            expiry,
            nhrn: None,
        },
    )
}

/// What a scanner set to a US keyboard shows on a computer set to German (`for_us`), or the
/// reverse: the keys that differ, as (US, German) characters of one key; the German `<` and `>`
/// sit on a key a US keyboard lacks, which a US computer reads as `\` and `|`.
fn typed(s: &str, for_us: bool) -> String {
    let keys = [
        ('y', 'z'),
        ('z', 'y'),
        ('Y', 'Z'),
        ('Z', 'Y'),
        ('@', '"'),
        ('#', '§'),
        ('^', '&'),
        ('&', '/'),
        ('*', '('),
        ('(', ')'),
        (')', '='),
        ('-', 'ß'),
        ('_', '?'),
        ('=', '´'),
        ('+', '`'),
        ('[', 'ü'),
        ('{', 'Ü'),
        (']', '+'),
        ('}', '*'),
        (';', 'ö'),
        (':', 'Ö'),
        ('\'', 'ä'),
        ('"', 'Ä'),
        ('\\', '#'),
        ('|', '\''),
        ('<', ';'),
        ('>', ':'),
        ('/', '-'),
        ('?', '_'),
        ('`', '^'),
        ('\\', '<'),
        ('|', '>'),
    ];
    s.chars()
        .map(|c| match keys.iter().find(|k| if for_us { k.0 == c } else { k.1 == c }) {
            Some(k) if for_us => k.1,
            Some(k) => k.0,
            None => c,
        })
        .collect()
}

fn with(id: &PackIdentifier, batch: &str, serial: &str) -> Option<PackIdentifier> {
    Some(PackIdentifier { batch: Batch::new(batch).ok()?, serial: Serial::new(serial).ok()?, ..id.clone() })
}

fn caps(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_uppercase() { c.to_ascii_lowercase() } else { c.to_ascii_uppercase() })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn repairs_are_few_distinct_and_never_the_identifier_itself(read in identifier(SET82)) {
        let r = repairs(&read);
        prop_assert!(r.len() <= MAX_REPAIRS);
        for (i, a) in r.iter().enumerate() {
            prop_assert_ne!(&a.id, &read);
            prop_assert_eq!((&a.id.product_code, &a.id.expiry), (&read.product_code, &read.expiry));
            prop_assert!(r.iter().skip(i + 1).all(|b| b.id != a.id));
        }
    }

    #[test]
    fn a_genuine_code_corrupted_by_a_scanner_is_repaired_and_never_alerts(
        genuine in identifier(UPPER82),
        how in 0u8..5,
        command in prop::sample::select(vec![Command::Verify, Command::Set(Operation::Supply), Command::Undo(Operation::Supply)]),
        state in prop::sample::select(PackState::ALL.to_vec()),
    ) {
        let (b, s) = (genuine.batch.as_str(), genuine.serial.as_str());
        let read = match how {
            0 => with(&genuine, &caps(b), &caps(s)),
            1 => with(&genuine, &typed(b, true), &typed(s, true)),
            2 => with(&genuine, &typed(b, false), &typed(s, false)),
            3 => with(&genuine, &format!("{b}21{s}"), s),
            _ => with(&genuine, b, &format!("{s}17{}", genuine.expiry.as_str())),
        };
        // Only corruptions that leave a readable code, and that change it, reach the system.
        let Some(read) = read.filter(|r| *r != genuine) else { return Ok(()) };
        // Caps Lock shows only where a field turns lower case only: a field of digits stays.
        prop_assume!(how != 0 || read.batch.as_str().chars().any(|c| c.is_ascii_lowercase())
            || read.serial.as_str().chars().any(|c| c.is_ascii_lowercase()));
        prop_assert!(repairs(&read).iter().any(|r| r.id == genuine), "{:?}", read);
        let world = World::new(genuine.clone(), state);
        let answer = world.answer(command, &read);
        prop_assert_eq!(answer.code, ReturnCode::RescanRequired);
        prop_assert_eq!((answer.alert(), answer.update, answer.accepted), (None, None, false));
        // Read cleanly, the same pack gets the answer it always had.
        prop_assert_eq!(world.answer(command, &genuine), world.decide(command, &genuine));
    }

    #[test]
    fn a_code_no_pack_has_even_repaired_alerts_as_before(read in identifier(SET82), stored in identifier(UPPER82)) {
        prop_assume!(repairs(&read).iter().all(|r| r.id.serial != stored.serial) && read.serial != stored.serial);
        let world = World::new(stored, PackState::Active);
        let answer = world.answer(Command::Verify, &read);
        prop_assert!(answer.alert().is_some(), "{:?}", answer);
        prop_assert_eq!(answer, world.decide(Command::Verify, &read));
    }
}
