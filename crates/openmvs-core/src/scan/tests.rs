//! Tests of the scan module: the vectors of `scan-vectors.md`, one case per rule, and property
//! tests that `parse` never panics and reads back what `format` writes.
//!
//! Cases go through one helper, [`check`], so that adding a case is one line. Inputs may spell
//! the control characters `<GS>`, `<RS>` and `<EOT>`; the expected text is what [`outcome`]
//! renders, where `…` stands for any text.

use proptest::prelude::*;

use super::*;
use crate::ids::{Scheme, gs1_check_digit, ppn_check_digits};

/// The day the tests run on, as far as the century window is concerned.
fn today() -> Date {
    Date::new(2026, 11, 29).expect("a valid date")
}

/// Replaces the spelled-out control characters `<GS>`, `<RS>` and `<EOT>` by their bytes.
fn raw(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix(b"<GS>") {
            out.push(GS);
            rest = r;
        } else if let Some(r) = rest.strip_prefix(b"<RS>") {
            out.push(RS);
            rest = r;
        } else if let Some(r) = rest.strip_prefix(b"<EOT>") {
            out.push(EOT);
            rest = r;
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out
}

/// What `parse` makes of `input`, on one line: the form and every field, then the warning codes;
/// or `ERR` and the error's message.
fn outcome(input: &[u8]) -> String {
    match parse(input, today()) {
        Ok(scan) => {
            let id = &scan.id;
            let mut line = format!(
                "{} {} {} exp {} batch {} serial {}",
                scan.form,
                id.product_code.scheme(),
                id.product_code,
                id.expiry,
                id.batch,
                id.serial
            );
            if let Some(n) = &id.nhrn {
                line.push_str(&format!(" nhrn {} {}", n.ai(), n.value()));
            }
            for w in &scan.warnings {
                line.push_str(&format!(" warn {}", w.code));
            }
            line
        }
        Err(e) => format!("ERR {e}"),
    }
}

/// Whether `text` matches `pattern`, in which `…` stands for any text (possibly none).
fn matches_pattern(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    let (first, rest) = parts.split_first().expect("split gives at least one part");
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return remaining.is_empty();
    };
    for part in middle {
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    remaining.ends_with(last)
}

/// Checks that `input` (with `<GS>`, `<RS>`, `<EOT>` spelled out) gives `expected`.
#[track_caller]
fn check(input: impl AsRef<[u8]>, expected: &str) {
    let bytes = raw(input.as_ref());
    let got = outcome(&bytes);
    assert!(
        matches_pattern(expected, &got),
        "\ninput:    {}\nexpected: {expected}\ngot:      {got}\n",
        show(&bytes)
    );
}

const V1: &str = "]d201095011015300031727123110ABC123<GS>21X4K9P7Q2M8R5";
const V1_FIELDS: &str = "GTIN 09501101530003 exp 271231 batch ABC123 serial X4K9P7Q2M8R5";

#[test]
fn the_helper_matches_patterns_with_ellipses() {
    assert!(matches_pattern("abc", "abc"));
    assert!(!matches_pattern("abc", "abcd"));
    assert!(matches_pattern("a…d", "abcd"));
    assert!(matches_pattern("a…c…", "abcd"));
    assert!(matches_pattern("…cd", "abcd"));
    assert!(!matches_pattern("a…x", "abcd"));
    assert!(!matches_pattern("ab…bc", "abc"));
}

#[test]
fn vectors_v1_to_v12_give_what_scan_vectors_md_says() {
    check(V1, &format!("ELEMENT_STRING {V1_FIELDS}"));
    check(
        "010950110153000321SN-0000000001<GS>10LOT/42<GS>17280200\r",
        "ELEMENT_STRING GTIN 09501101530003 exp 280200 batch LOT/42 serial SN-0000000001",
    );
    check(
        "]d201056012345678927141234567<GS>1727063010B2024-07<GS>21PT00000000000000001",
        "ELEMENT_STRING GTIN 05601234567892 exp 270630 batch B2024-07 serial PT00000000000000001 nhrn 714 1234567",
    );
    check(
        "]d201041500375286431729033110X1Y2<GS>2112345678901234567890",
        "ELEMENT_STRING GTIN 04150037528643 exp 290331 batch X1Y2 serial 12345678901234567890",
    );
    check(
        "[)><RS>06<GS>9N110375286414<GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<RS><EOT>",
        "ISO15434_FORMAT_06 PPN 110375286414 exp 271231 batch ABC-123 serial K2L8M4N6P",
    );
    check("(01)09501101530003(17)271231(10)ABC123(21)X4K9P7Q2M8R5", &format!("BRACKET {V1_FIELDS}"));
    check(
        "https://id.example.org/01/09501101530003/10/LOT%2F42/21/X4K9P7Q2M8R5?17=271231",
        "DIGITAL_LINK GTIN 09501101530003 exp 271231 batch LOT/42 serial X4K9P7Q2M8R5",
    );
    check(
        "]d201095011015300041727123110ABC123<GS>21X4K9P7Q2M8R5",
        "ERR AI 01 (product code) '09501101530004': check digit is 4, expected 3",
    );
    check(
        "]d201095011015300031727123110ABC12321X4K9P7Q2M8R5",
        "ERR AI 21 (serial) is missing; the batch 'ABC12321X4K9P7Q2M8R5' contains '21X4K9P7Q2M8R5': the GS \
         separator before AI 21 was probably lost, rescan the pack",
    );
    check(
        "]d201095011015300031727130110ABC123<GS>21X4K9P7Q2M8R5",
        "ERR AI 17 (expiry) '271301': month 13 is not 01-12",
    );
    check(
        "]d201095011015300031727022910ABC123<GS>21X4K9P7Q2M8R5",
        "ERR AI 17 (expiry) '270229': day 29 does not exist in 2027-02 (which has 28 days)",
    );
    check(
        "]d201095011015300031728022910ABC123<GS>21X4K9P7Q2M8R5",
        "ELEMENT_STRING GTIN 09501101530003 exp 280229 batch ABC123 serial X4K9P7Q2M8R5",
    );
    check(
        "]d201095011015300031727123110ABC123<GS>21ABCDEFGHIJKLMNOPQRSTU",
        "ERR AI 21 (serial) 'ABCDEFGHIJKLMNOPQRSTU': has 21 characters, at most 20 are allowed; the GS separator \
         after it may have been lost, rescan the pack",
    );
}

#[test]
fn the_clean_vectors_v1_to_v7_give_no_warnings() {
    let clean = [
        V1,
        "010950110153000321SN-0000000001<GS>10LOT/42<GS>17280200\r",
        "]d201056012345678927141234567<GS>1727063010B2024-07<GS>21PT00000000000000001",
        "]d201041500375286431729033110X1Y2<GS>2112345678901234567890",
        "[)><RS>06<GS>9N110375286414<GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<RS><EOT>",
        "(01)09501101530003(17)271231(10)ABC123(21)X4K9P7Q2M8R5",
        "https://id.example.org/01/09501101530003/10/LOT%2F42/21/X4K9P7Q2M8R5?17=271231",
    ];
    for input in clean {
        let scan = parse(&raw(input.as_bytes()), today()).expect("a clean vector parses");
        assert!(scan.warnings.is_empty(), "{input}: {:?}", scan.warnings);
    }
}

#[test]
fn the_expiry_day_00_means_the_end_of_the_month_and_is_kept_as_encoded() {
    let scan = parse(&raw(b"010950110153000321SN<GS>10LOT<GS>17280200"), today()).expect("parses");
    assert_eq!(scan.id.expiry.as_str(), "280200");
    assert_eq!(scan.id.expiry.date().to_string(), "2028-02-29");
}

#[test]
fn a_product_code_in_ai_01_must_be_a_valid_fourteen_digit_gtin() {
    check(
        "01041500375286431729033110X<GS>21S",
        "ELEMENT_STRING GTIN 04150037528643 exp 290331 batch X serial S",
    );
    check(
        "01A9501101530003172712311X<GS>21S",
        "ERR AI 01 (product code) 'A9501101530003': character 'A' at position 1 is not allowed (digits 0-9)",
    );
    check(
        "010950110153000<GS>1727123110X<GS>21S",
        "ERR AI 01 (product code) '0950110153000': has 13 characters before a GS separator, 14 are required (a fixed-length field takes no separator)",
    );
    check(
        "21S<GS>10X<GS>1727123101095011015300",
        "ERR AI 01 (product code) '095011015300': has 12 characters where the data ends, 14 are required; the scan looks cut short, rescan the pack",
    );
    check(
        "21S<GS>10X<GS>17271231017",
        "ERR AI 01 (product code) '7': has 1 character where the data ends, 14 are required; …",
    );
    check(
        "21S<GS>10X<GS>1727123101",
        "ERR AI 01 (product code): has 0 characters where the data ends, 14 are required; …",
    );
}

#[test]
fn an_expiry_in_ai_17_must_be_a_real_date_of_six_digits() {
    check("010950110153000317271200", "ERR AI 10 (batch) is missing");
    check(
        "01095011015300031727120010X<GS>21S",
        "ELEMENT_STRING GTIN 09501101530003 exp 271200 batch X serial S",
    );
    check(
        "01095011015300031727043110X<GS>21S",
        "ERR AI 17 (expiry) '270431': day 31 does not exist in 2027-04 (which has 30 days)",
    );
    check("01095011015300031727000110X<GS>21S", "ERR AI 17 (expiry) '270001': month 00 is not 01-12");
    check(
        "01095011015300031727O23110X<GS>21S",
        "ERR AI 17 (expiry) '27O231': character 'O' at position 3 is not allowed (digits 0-9)",
    );
    check(
        "0109501101530003172712<GS>10X<GS>21S",
        "ERR AI 17 (expiry) '2712': has 4 characters before a GS separator, 6 are required …",
    );
    check(
        "10X<GS>21S<GS>0109501101530003172712",
        "ERR AI 17 (expiry) '2712': has 4 characters where the data ends, 6 are required; the scan looks cut short, rescan the pack",
    );
    // The century follows the sliding window: 76 is 2076, 77 is 1977; both are dates, so both parse.
    check(
        "01095011015300031776123110X<GS>21S",
        "ELEMENT_STRING GTIN 09501101530003 exp 761231 batch X serial S",
    );
    check(
        "01095011015300031777123110X<GS>21S",
        "ELEMENT_STRING GTIN 09501101530003 exp 771231 batch X serial S",
    );
}

#[test]
fn batch_and_serial_take_one_to_twenty_characters_of_set_82_exactly_as_scanned() {
    let all82 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";
    for chunk in all82.as_bytes().chunks(20) {
        let s = std::str::from_utf8(chunk).expect("ASCII");
        check(format!("01095011015300031727123110{s}<GS>21{s}"), &format!("… batch {s} serial {s}…"));
    }
    check("01095011015300031727123110ABCDEFGHIJKLMNOPQRST<GS>21S", "… batch ABCDEFGHIJKLMNOPQRST serial S");
    check(
        "01095011015300031727123110ABCDEFGHIJKLMNOPQRSTU<GS>21S",
        "ERR AI 10 (batch) 'ABCDEFGHIJKLMNOPQRSTU': has 21 characters, at most 20 are allowed; the GS separator after it may have been lost, rescan the pack",
    );
    check("01095011015300031727123110<GS>21S", "ERR AI 10 (batch): is empty");
    check("01095011015300031727123110X<GS>21", "ERR AI 21 (serial): is empty");
    check(
        "01095011015300031727123110A B<GS>21S",
        "ERR AI 10 (batch) 'A B': character ' ' (space) at position 2 is not allowed (GS1 character set 82)",
    );
    check(
        "01095011015300031727123110AB#<GS>21S",
        "ERR AI 10 (batch) 'AB#': character '#' at position 3 is not allowed (GS1 character set 82)",
    );
    check(
        "01095011015300031727123110AB<GS>21S\tX",
        "ERR AI 21 (serial) 'S\\tX': character '\\t' (U+0009) at position 2 is not allowed (GS1 character set 82)",
    );
    check(
        "01095011015300031727123110AB<GS>21S\rX",
        "ERR AI 21 (serial) 'S\\rX': character '\\r' (U+000D) at position 2 is not allowed (GS1 character set 82)",
    );
    check(
        "01095011015300031727123110AB<GS>21Sé",
        "ERR AI 21 (serial) 'Sé': character '\\u{e9}' (U+00E9) at position 2 is not allowed (GS1 character set 82)",
    );
}

#[test]
fn characters_from_a_wrong_keyboard_layout_are_named_with_a_hint_to_check_the_scanner() {
    let hint = "it looks like a keyboard-layout mismatch (e.g. DE vs US), check the scanner's keyboard setting and rescan";
    check(
        "01095011015300031727123110LOT<GS>21SNß0001",
        &format!(
            "ERR AI 21 (serial) 'SNß0001': character '\\u{{df}}' (U+00DF) at position 3 is not allowed (GS1 character set 82); {hint}"
        ),
    );
    check(
        b"01095011015300031727123110LOT<GS>21SN\xdf0001",
        &format!(
            "ERR AI 21 (serial) 'SN\\xDF0001': character 0xDF (a byte that is not UTF-8; '\u{df}' in Latin-1) at position 3 is not allowed (GS1 character set 82); {hint}"
        ),
    );
    for c in ['ä', 'ö', 'ü', 'Ä', 'Ö', 'Ü', '§', '´', '°'] {
        check(
            format!("01095011015300031727123110L{c}T<GS>21S"),
            &format!("ERR AI 10 (batch) 'L{c}T': …; {hint}"),
        );
        let mut latin1 = b"01095011015300031727123110L".to_vec();
        latin1.push(u8::try_from(u32::from(c)).expect("Latin-1"));
        latin1.extend_from_slice(b"T<GS>21S");
        check(latin1, &format!("ERR AI 10 (batch) 'L\\x…' in Latin-1) at position 2 …; {hint}"));
    }
    check(
        "]d2ß10950110153000317271231",
        &format!(
            "ERR scan: expected an AI (digits) at position 4, found '\\u{{df}}' (U+00DF); the scan is not a GS1 element string, …; {hint}"
        ),
    );
    check(
        "01095011015300031727123110L<GS>ß21S",
        &format!("ERR scan: expected an AI (digits) at position 29, found '\\u{{df}}' (U+00DF); {hint}"),
    );
    // Other characters outside set 82 get no keyboard hint.
    check(
        b"01095011015300031727123110L\xffT<GS>21S",
        "ERR AI 10 (batch) 'L\\xFFT': character 0xFF (a byte that is not UTF-8) at position 2 is not allowed (GS1 character set 82)",
    );
    check(
        b"01095011015300031727123110L\xc3",
        "ERR AI 10 (batch) 'L\\xC3': character 0xC3 (a byte that is not UTF-8) at position 2 is not allowed (GS1 character set 82)",
    );
    check(
        b"0109501101530003172712\xc3\x9f10L<GS>21S",
        &format!(
            "ERR AI 17 (expiry) '2712ß': character '\\u{{df}}' (U+00DF) at position 5 is not allowed (digits 0-9); {hint}"
        ),
    );
}

#[test]
fn each_reimbursement_number_ai_710_to_717_is_read() {
    for (ai, country) in [
        (710, "DE"),
        (711, "FR"),
        (712, "ES"),
        (713, "BR"),
        (714, "PT"),
        (715, "US"),
        (716, "IT"),
        (717, "CR"),
    ] {
        check(
            format!("01095011015300031727123110LOT<GS>{ai}N-1<GS>21S"),
            &format!("ELEMENT_STRING GTIN 09501101530003 exp 271231 batch LOT serial S nhrn {ai} N-1"),
        );
        let scan = parse(&raw(format!("010950110153000317271231{ai}N<GS>10L<GS>21S").as_bytes()), today())
            .expect("parses");
        assert_eq!(scan.id.nhrn.map(|n| n.country()), Some(country));
        check(
            format!("01095011015300031727123110LOT<GS>{ai}123456789012345678901<GS>21S"),
            &format!(
                "ERR AI {ai} (reimbursement number {country}) '123456789012345678901': has 21 characters, at most 20 are allowed; the GS separator after it may have been lost, rescan the pack"
            ),
        );
    }
    check("01095011015300031727123110LOT<GS>714<GS>21S", "ERR AI 714 (reimbursement number PT): is empty");
    check("01095011015300031727123110LOT<GS>7141<GS>7141<GS>21S", "… nhrn 714 1");
    check(
        "01095011015300031727123110LOT<GS>7141<GS>7142<GS>21S",
        "ERR AI 714 (reimbursement number PT) '2': the code already carries AI 714 with '1'; an element may repeat only with the same value",
    );
    check(
        "01095011015300031727123110LOT<GS>7141<GS>7101<GS>21S",
        "ERR AI 710 (reimbursement number DE) '1': the code also carries AI 714 (reimbursement number PT); a pack has only one reimbursement number",
    );
}

#[test]
fn the_tolerated_ais_are_checked_and_dropped() {
    let base = "01095011015300031727123110LOT<GS>21S";
    let fields = "ELEMENT_STRING GTIN 09501101530003 exp 271231 batch LOT serial S";
    for extra in [
        "11260101",
        "13260100",
        "15280229",
        "16271231",
        "30",
        "3012345678",
        "22CPV-1",
        "240ADD(1)",
        "91X",
        "92X",
        "93X",
        "94X",
        "95X",
        "96X",
        "97X",
        "98X",
        "99X",
    ] {
        let extra = if extra == "30" { "305" } else { extra };
        check(format!("{extra}<GS>{base}"), fields);
        check(format!("{base}<GS>{extra}"), fields);
    }
    check(format!("99{}<GS>{base}", "x".repeat(90)), fields);
    check(
        format!("99{}<GS>{base}", "x".repeat(91)),
        "ERR AI 99 (company internal information) 'xxx…': has 91 characters, at most 90 are allowed; the GS separator after it may have been lost, rescan the pack",
    );
    check(format!("240{}<GS>{base}", "A".repeat(30)), fields);
    check(
        format!("240{}<GS>{base}", "A".repeat(31)),
        "ERR AI 240 (additional product identification) 'AAA…': has 31 characters, at most 30 are allowed; …",
    );
    check(
        format!("22{}<GS>{base}", "A".repeat(21)),
        "ERR AI 22 (consumer product variant) 'AAA…': has 21 characters, at most 20 are allowed; …",
    );
    check(
        format!("30123456789<GS>{base}"),
        "ERR AI 30 (count of items) '123456789': has 9 characters, at most 8 are allowed; …",
    );
    check(
        format!("3012A<GS>{base}"),
        "ERR AI 30 (count of items) '12A': character 'A' at position 3 is not allowed (digits 0-9)",
    );
    check(format!("11271301{base}"), "ERR AI 11 (production date) '271301': month 13 is not 01-12");
    check(
        format!("13270229{base}"),
        "ERR AI 13 (packaging date) '270229': day 29 does not exist in 2027-02 (which has 28 days)",
    );
    check(
        format!("15271232{base}"),
        "ERR AI 15 (best before date) '271232': day 32 does not exist in 2027-12 (which has 31 days)",
    );
    check(
        format!("{base}<GS>162712"),
        "ERR AI 16 (sell by date) '2712': has 4 characters where the data ends, 6 are required; …",
    );
    check(
        format!("91A<GS>91B<GS>{base}"),
        "ERR AI 91 (company internal information) 'B': the code already carries AI 91 with 'A'; …",
    );
}

#[test]
fn ais_may_come_in_any_order() {
    let fields = "ELEMENT_STRING GTIN 09501101530003 exp 271231 batch ABC123 serial X4K9P7Q2M8R5";
    check("]d221X4K9P7Q2M8R5<GS>10ABC123<GS>172712310109501101530003", fields);
    check("]d210ABC123<GS>010950110153000317271231<GS>21X4K9P7Q2M8R5", fields);
    check("]d21727123110ABC123<GS>21X4K9P7Q2M8R5<GS>0109501101530003", fields);
    check("]d21727123121X4K9P7Q2M8R5<GS>0109501101530003<GS>10ABC123", fields);
}

#[test]
fn ais_that_a_pack_code_does_not_carry_are_refused_by_name() {
    let base = "01095011015300031727123110LOT<GS>21S";
    for (ai, shown) in [
        ("00", "00"),
        ("02", "02"),
        ("12", "12"),
        ("20", "20"),
        ("37", "37"),
        ("90", "90"),
        ("2351", "235"),
        ("2501", "250"),
        ("3103", "3103"),
        ("4201", "420"),
        ("7003", "7003"),
        ("718", "718"),
        ("8008", "8008"),
    ] {
        check(
            format!("{ai}123<GS>{base}"),
            &format!("ERR scan: AI {shown} at position 1 is not one a pack's code carries …"),
        );
    }
    check(
        format!("]d2{base}<GS>42012345"),
        "ERR scan: AI 420 at position 38 is not one a pack's code carries …",
    );
    check(
        format!("{base}<GS>7"),
        "ERR scan: the data ends inside an AI at position 35 ('7'); rescan the pack",
    );
    check(
        format!("{base}<GS>24"),
        "ERR scan: the data ends inside an AI at position 35 ('24'); rescan the pack",
    );
    check("0109501101530003172712317A", "ERR scan: AI 7A at position 25 is not one a pack's code carries …");
}

#[test]
fn a_repeated_ai_is_fine_with_the_same_value_and_refused_with_another() {
    check(
        "01095011015300031727123110LOT<GS>21S<GS>21S<GS>10LOT<GS>0109501101530003",
        "ELEMENT_STRING GTIN 09501101530003 exp 271231 batch LOT serial S",
    );
    check(
        "01095011015300031727123110LOT<GS>21S<GS>21T",
        "ERR AI 21 (serial) 'T': the code already carries AI 21 with 'S'; an element may repeat only with the same value",
    );
    check(
        "01095011015300031727123110LOT<GS>10lot<GS>21S",
        "ERR AI 10 (batch) 'lot': the code already carries AI 10 with 'LOT'; …",
    );
    check(
        "0109501101530003172712311727120010LOT<GS>21S",
        "ERR AI 17 (expiry) '271200': the code already carries AI 17 with '271231'; …",
    );
    check(
        "010950110153000301056012345678921727123110LOT<GS>21S",
        "ERR AI 01 (product code) '05601234567892': the code already carries AI 01 with '09501101530003'; …",
    );
}

#[test]
fn a_missing_mandatory_element_is_named_and_found_inside_another_field_when_it_can_be() {
    check("1727123110LOT<GS>21S", "ERR AI 01 (product code) is missing");
    check("010950110153000310LOT<GS>21S", "ERR AI 17 (expiry) is missing");
    check("01095011015300031727123121S", "ERR AI 10 (batch) is missing");
    check("01095011015300031727123110LOT", "ERR AI 21 (serial) is missing");
    check(
        "01095011015300031727123121SER10LOT",
        "ERR AI 10 (batch) is missing; the serial 'SER10LOT' contains '10LOT': the GS separator before AI 10 was probably lost, rescan the pack",
    );
    check(
        "010950110153000321SER17271231<GS>10LOT",
        "ERR AI 17 (expiry) is missing; the serial 'SER17271231' contains '17271231': the GS separator before AI 17 was probably lost, rescan the pack",
    );
    check(
        "17271231<GS>10LOT0109501101530003<GS>21S",
        "ERR AI 01 (product code) is missing; the batch 'LOT0109501101530003' contains '0109501101530003': the GS separator before AI 01 was probably lost, rescan the pack",
    );
    // A value that is not valid for the missing AI is no evidence that it was swallowed.
    check("010950110153000321SER17271399<GS>10LOT", "ERR AI 17 (expiry) is missing");
    check("17271231<GS>10LOT0109501101530004<GS>21S", "ERR AI 01 (product code) is missing");
    // With several missing, the one found inside another field is named.
    check(
        "0109501101530003<GS>10AB21CD",
        "ERR AI 21 (serial) is missing; the batch 'AB21CD' contains '21CD': …",
    );
    check("0109501101530003", "ERR AI 17 (expiry) is missing");
}

#[test]
fn separators_are_accepted_where_they_are_harmless_and_refused_elsewhere() {
    let fields = "ELEMENT_STRING GTIN 09501101530003 exp 271231 batch ABC123 serial X4K9P7Q2M8R5";
    check("]d2<GS>01095011015300031727123110ABC123<GS>21X4K9P7Q2M8R5", fields);
    check("<GS>01095011015300031727123110ABC123<GS>21X4K9P7Q2M8R5", fields);
    check("]d20109501101530003<GS>17271231<GS>10ABC123<GS>21X4K9P7Q2M8R5<GS>", fields);
    check(
        "]d2<GS><GS>01095011015300031727123110ABC123<GS>21X4K9P7Q2M8R5",
        "ERR scan: unexpected GS separator at position 5: an AI must come before it",
    );
    check(
        "]d201095011015300031727123110ABC123<GS><GS>21X4K9P7Q2M8R5",
        "ERR scan: unexpected GS separator at position 37: an AI must come before it",
    );
    check(
        "]d20109501101530003<GS><GS>1727123110ABC123<GS>21X4K9P7Q2M8R5",
        "ERR scan: unexpected GS separator at position 21: …",
    );
    check(
        "]d201095011015300031727123110ABC123<GS>21X4K9P7Q2M8R5<GS><GS>",
        "ERR scan: unexpected GS separator at position 52: …",
    );
}

#[test]
fn one_trailing_line_end_is_stripped_and_nothing_else() {
    let fields = format!("ELEMENT_STRING {V1_FIELDS}");
    check(format!("{V1}\r\n"), &fields);
    check(format!("{V1}\n"), &fields);
    check(format!("{V1}\r"), &fields);
    check(
        format!("{V1}\n\n"),
        "ERR AI 21 (serial) 'X4K9P7Q2M8R5\\n': character '\\n' (U+000A) at position 13 is not allowed …",
    );
    check(format!("{V1}\n\r"), "ERR AI 21 (serial) 'X4K9P7Q2M8R5\\n': …");
    check(format!("{V1} "), "ERR AI 21 (serial) 'X4K9P7Q2M8R5 ': character ' ' (space) at position 13 …");
    check(
        format!(" {V1}"),
        "ERR scan: expected an AI (digits) at position 1, found ' ' (space); the scan is not a GS1 element string, …",
    );
}

#[test]
fn an_empty_scan_or_a_bare_symbology_identifier_is_refused() {
    check("", "ERR scan: is empty");
    check("\r\n", "ERR scan: is empty");
    check("]d2", "ERR scan: has no data after ']d2'");
    check("]d2\n", "ERR scan: has no data after ']d2'");
    check("]d2<GS>", "ERR scan: has no data after ']d2<GS>'");
    check("<GS>", "ERR scan: has no data after '<GS>'");
    check("]", "ERR scan: starts with ']' but ']' is not a symbology identifier (such as ]d2)");
    check("]d", "ERR scan: starts with ']' but ']d' is not a symbology identifier (such as ]d2)");
    check("]]]0109", "ERR scan: starts with ']' but ']]]' is not a symbology identifier (such as ]d2)");
}

#[test]
fn only_gs1_symbology_identifiers_may_announce_an_element_string() {
    check("]Q301095011015300031727123110ABC123<GS>21X4K9P7Q2M8R5", &format!("ELEMENT_STRING {V1_FIELDS}"));
    for aim in ["]d1", "]C1", "]Q1", "]e0", "]E0"] {
        check(
            format!("{aim}01095011015300031727123110ABC123<GS>21X4K9P7Q2M8R5"),
            &format!(
                "ERR scan: symbology identifier '{aim}' does not announce GS1 data (]d2 for GS1 DataMatrix, ]Q3 for GS1 QR); check the scanner's settings and the code"
            ),
        );
    }
}

#[test]
fn a_wrong_check_digit_is_flagged_as_such_for_the_http_layer() {
    let e = parse(&raw(b"]d201095011015300041727123110ABC123<GS>21X4K9P7Q2M8R5"), today()).unwrap_err();
    assert!(e.is_check_digit());
    assert_eq!(e.element, Element::Ai(1));
    let e =
        parse(&raw(b"[)><RS>06<GS>9N110375286415<GS>1TA<GS>D271231<GS>SS<RS><EOT>"), today()).unwrap_err();
    assert!(e.is_check_digit(), "{e}");
    for other in ["]d201095011015300031727130110ABC123<GS>21X4K9P7Q2M8R5", "]d20109501101530003", ""] {
        let e = parse(&raw(other.as_bytes()), today()).unwrap_err();
        assert!(!e.is_check_digit(), "{e}");
    }
}

#[test]
fn format_05_envelopes_carry_an_element_string() {
    let fields = format!("ISO15434_FORMAT_05 {V1_FIELDS}");
    check("[)><RS>05<GS>01095011015300031727123110ABC123<GS>21X4K9P7Q2M8R5<RS><EOT>", &fields);
    check("[)><RS>05<GS>01095011015300031727123110ABC123<GS>21X4K9P7Q2M8R5<RS><EOT>\r\n", &fields);
    check("]d1[)><RS>05<GS>01095011015300031727123110ABC123<GS>21X4K9P7Q2M8R5<RS><EOT>", &fields);
    check("]d2[)><RS>05<GS>01095011015300031727123110ABC123<GS>21X4K9P7Q2M8R5<RS><EOT>", &fields);
    check("[)><RS>05<GS>01095011015300031727123110ABC123<GS>21X4K9P7Q2M8R5<GS><RS><EOT>", &fields);
    check(
        "[)><RS>05<GS>01095011015300031727123110ABC12321X4K9P7Q2M8R5<RS><EOT>",
        "ERR AI 21 (serial) is missing; the batch 'ABC12321X4K9P7Q2M8R5' contains '21X4K9P7Q2M8R5': …",
    );
    check(
        "[)><RS>05<GS>01095011015300041727123110ABC123<GS>21X4K9P7Q2M8R5<RS><EOT>",
        "ERR AI 01 (product code) '09501101530004': check digit is 4, expected 3",
    );
    check(
        "[)><RS>05<GS>01095011015300031727123110ABC123<GS>21X4K9P7Q2M8R5<RS>",
        "ERR ISO/IEC 15434 envelope: does not end with its trailer RS EOT (ASCII 30, 4): the scan looks cut short, or the scanner drops control characters; rescan the pack",
    );
    check(
        "[)><RS>05<GS>01095011015300031727123110ABC123<GS>21X4K9P7Q2M8R5",
        "ERR ISO/IEC 15434 envelope: does not end with its trailer RS EOT …",
    );
    check(
        "[)><RS>05<GS>01095011015300031727123110ABC123<GS>21X4K9P7Q2M8R5<RS><EOT>X",
        "ERR ISO/IEC 15434 envelope: does not end with its trailer RS EOT …",
    );
    check(
        "[)><RS>05<GS>0109501101530003<RS>1727123110ABC123<GS>21X4K9P7Q2M8R5<RS><EOT>",
        "ERR ISO/IEC 15434 envelope: has an RS (ASCII 30) at position 24: a pack code is one format (05 or 06) per envelope",
    );
    check("[)><RS>05<GS><RS><EOT>", "ERR ISO/IEC 15434 envelope: has no data after '[)><RS>05<GS>'");
    check(
        "[)><RS>05<GS><GS>01095011015300031727123110ABC123<GS>21X4K9P7Q2M8R5<RS><EOT>",
        "ERR scan: unexpected GS separator at position 8: …",
    );
}

#[test]
fn a_broken_envelope_header_is_refused_with_what_was_found() {
    check(
        "[)>05<GS>0109501101530003<RS><EOT>",
        "ERR ISO/IEC 15434 envelope: '[)>' at position 1 must be followed by RS (ASCII 30), found '0'",
    );
    check(
        "[)>",
        "ERR ISO/IEC 15434 envelope: '[)>' at position 1 must be followed by RS (ASCII 30), found the end of the data",
    );
    check(
        "[)><RS>",
        "ERR ISO/IEC 15434 envelope: the data ends at position 5 before the format number (05 or 06)",
    );
    check(
        "[)><RS>0",
        "ERR ISO/IEC 15434 envelope: the data ends at position 6 before the format number (05 or 06)",
    );
    check(
        "[)><RS>07<GS>X<RS><EOT>",
        "ERR ISO/IEC 15434 envelope: format '07' at position 5 is not 05 (GS1 AIs) or 06 (data identifiers)",
    );
    check(
        "[)><RS>12<GS>X<RS><EOT>",
        "ERR ISO/IEC 15434 envelope: format '12' at position 5 is not 05 (GS1 AIs) or 06 (data identifiers)",
    );
    check(
        "[)><RS>0501095011015300031727123110ABC123<GS>21X4K9P7Q2M8R5<RS><EOT>",
        "ERR ISO/IEC 15434 envelope: the format number at position 5 must be followed by GS (ASCII 29), found '0'",
    );
    check(
        "[)><RS>05",
        "ERR ISO/IEC 15434 envelope: the format number at position 5 must be followed by GS (ASCII 29), found the end of the data",
    );
    check(
        "]d1[)><RS>06",
        "ERR ISO/IEC 15434 envelope: the format number at position 8 must be followed by GS (ASCII 29), found the end of the data",
    );
}

#[test]
fn format_06_envelopes_carry_data_identifiers() {
    let ppn = "ISO15434_FORMAT_06 PPN 110375286414 exp 271231 batch ABC-123 serial K2L8M4N6P";
    check("[)><RS>06<GS>9N110375286414<GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<RS><EOT>", ppn);
    check("[)><RS>06<GS>SK2L8M4N6P<GS>D271231<GS>1TABC-123<GS>9N110375286414<RS><EOT>", ppn);
    check("]d1[)><RS>06<GS>9N110375286414<GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<RS><EOT>\n", ppn);
    check("[)><RS>06<GS>9N110375286414<GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<GS><RS><EOT>", ppn);
    check("[)><RS>06<GS>9N110375286414<GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<GS>SK2L8M4N6P<RS><EOT>", ppn);
    check(
        "[)><RS>06<GS>8P04150037528643<GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<RS><EOT>",
        "ISO15434_FORMAT_06 GTIN 04150037528643 exp 271231 batch ABC-123 serial K2L8M4N6P",
    );
    check(
        "[)><RS>06<GS>9N110375286415<GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<RS><EOT>",
        "ERR DI 9N (PPN) '110375286415': check digit is 15, expected 14",
    );
    check(
        "[)><RS>06<GS>9N11037528641<GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<RS><EOT>",
        "ERR DI 9N (PPN) '11037528641': has 11 characters, 12 are required",
    );
    check(
        "[)><RS>06<GS>9N11037528641a<GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<RS><EOT>",
        "ERR DI 9N (PPN) '11037528641a': character 'a' at position 12 is not allowed (digits and upper-case letters)",
    );
    check(
        "[)><RS>06<GS>8P4150037528643<GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<RS><EOT>",
        "ERR DI 8P (GTIN) '4150037528643': has 13 characters, 14 are required",
    );
    check(
        "[)><RS>06<GS>8P04150037528644<GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<RS><EOT>",
        "ERR DI 8P (GTIN) '04150037528644': check digit is 4, expected 3",
    );
    check(
        "[)><RS>06<GS>9N110375286414<GS>1TABCDEFGHIJKLMNOPQRSTU<GS>D271231<GS>SK2L8M4N6P<RS><EOT>",
        "ERR DI 1T (batch) 'ABCDEFGHIJKLMNOPQRSTU': has 21 characters, at most 20 are allowed; the GS separator after it may have been lost, rescan the pack",
    );
    check(
        "[)><RS>06<GS>9N110375286414<GS>1T<GS>D271231<GS>SK2L8M4N6P<RS><EOT>",
        "ERR DI 1T (batch): is empty",
    );
    check(
        "[)><RS>06<GS>9N110375286414<GS>1TABC-123<GS>D271301<GS>SK2L8M4N6P<RS><EOT>",
        "ERR DI D (expiry) '271301': month 13 is not 01-12",
    );
    check(
        "[)><RS>06<GS>9N110375286414<GS>1TABC-123<GS>D2712310<GS>SK2L8M4N6P<RS><EOT>",
        "ERR DI D (expiry) '2712310': has 7 characters, 6 (YYMMDD) are required",
    );
    check(
        "[)><RS>06<GS>9N110375286414<GS>1TABC-123<GS>D271231<GS>SK2L8 M4N6P<RS><EOT>",
        "ERR DI S (serial) 'K2L8 M4N6P': character ' ' (space) at position 5 …",
    );
    check(
        "[)><RS>06<GS>9N110375286414<GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<GS>SX<RS><EOT>",
        "ERR DI S (serial) 'X': the code already carries DI S with 'K2L8M4N6P'; an element may repeat only with the same value",
    );
    check(
        "[)><RS>06<GS>9N110375286414<GS>8P04150037528643<GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<RS><EOT>",
        "ERR DI 8P (GTIN) '04150037528643': the code also carries DI 9N (PPN); a pack has only one product code",
    );
}

#[test]
fn format_06_tolerates_a_production_date_in_16d_and_checks_it() {
    let fields = "ISO15434_FORMAT_06 PPN 110375286414 exp 271231 batch ABC-123 serial K2L8M4N6P";
    check(
        "[)><RS>06<GS>9N110375286414<GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<GS>16D20260101<RS><EOT>",
        fields,
    );
    check(
        "[)><RS>06<GS>16D20240229<GS>9N110375286414<GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<RS><EOT>",
        fields,
    );
    check(
        "[)><RS>06<GS>9N110375286414<GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<GS>16D20261301<RS><EOT>",
        "ERR DI 16D (production date) '20261301': month 13 is not 01-12",
    );
    check(
        "[)><RS>06<GS>9N110375286414<GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<GS>16D20250229<RS><EOT>",
        "ERR DI 16D (production date) '20250229': day 29 does not exist in 2025-02 (which has 28 days)",
    );
    check(
        "[)><RS>06<GS>9N110375286414<GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<GS>16D20260100<RS><EOT>",
        "ERR DI 16D (production date) '20260100': day 00 does not exist in 2026-01 (which has 31 days)",
    );
    check(
        "[)><RS>06<GS>9N110375286414<GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<GS>16D260101<RS><EOT>",
        "ERR DI 16D (production date) '260101': has 6 characters, 8 (YYYYMMDD) are required",
    );
    check(
        "[)><RS>06<GS>9N110375286414<GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<GS>16D2026O101<RS><EOT>",
        "ERR DI 16D (production date) '2026O101': character 'O' …",
    );
    check(
        "[)><RS>06<GS>9N110375286414<GS>16D20260101<GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<GS>16D20260102<RS><EOT>",
        "ERR DI 16D (production date) '20260102': the code already carries DI 16D with '20260101'; …",
    );
}

#[test]
fn format_06_refuses_unknown_data_identifiers_and_broken_elements() {
    check(
        "[)><RS>06<GS>9N110375286414<GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<GS>Q5<RS><EOT>",
        "ERR ISO/IEC 15434 envelope: data identifier 'Q' at position 52 is not one a format 06 pack code carries (9N or 8P, 1T, D, S; tolerated: 16D)",
    );
    check(
        "[)><RS>06<GS>9N110375286414<GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<GS>15D20260101<RS><EOT>",
        "ERR ISO/IEC 15434 envelope: data identifier '15D' at position 52 …",
    );
    check(
        "[)><RS>06<GS>9N110375286414<GS>1234TABC<RS><EOT>",
        "ERR ISO/IEC 15434 envelope: the data element '1234TABC' at position 23 does not start with a data identifier (up to three digits and an upper-case letter, such as 1T)",
    );
    check(
        "[)><RS>06<GS>9N110375286414<GS>tABC<RS><EOT>",
        "ERR ISO/IEC 15434 envelope: the data element 'tABC' at position 23 does not start with a data identifier …",
    );
    check(
        "[)><RS>06<GS>9N110375286414<GS><GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<RS><EOT>",
        "ERR ISO/IEC 15434 envelope: has an empty data element at position 23 (two GS in a row)",
    );
    check(
        "[)><RS>06<GS><GS>9N110375286414<RS><EOT>",
        "ERR ISO/IEC 15434 envelope: has an empty data element at position 8 (two GS in a row)",
    );
    check("[)><RS>06<GS><RS><EOT>", "ERR ISO/IEC 15434 envelope: has no data after '[)><RS>06<GS>'");
}

#[test]
fn format_06_names_each_missing_data_identifier() {
    check(
        "[)><RS>06<GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<RS><EOT>",
        "ERR DI 9N (PPN) is missing (and there is no GTIN in DI 8P either)",
    );
    check("[)><RS>06<GS>9N110375286414<GS>1TABC-123<GS>SK2L8M4N6P<RS><EOT>", "ERR DI D (expiry) is missing");
    check("[)><RS>06<GS>9N110375286414<GS>D271231<GS>SK2L8M4N6P<RS><EOT>", "ERR DI 1T (batch) is missing");
    check("[)><RS>06<GS>9N110375286414<GS>1TABC-123<GS>D271231<RS><EOT>", "ERR DI S (serial) is missing");
    check(
        "[)><RS>06<GS>9N110375286414<GS>1TABC-123SK2L8M4N6P<GS>D271231<RS><EOT>",
        "ERR DI S (serial) is missing; the batch 'ABC-123SK2L8M4N6P' contains 'SK2L8M4N6P': the GS separator before DI S was probably lost, rescan the pack",
    );
    check(
        "[)><RS>06<GS>9N110375286414<GS>1TABC-123D271231<GS>SK2L8M4N6P<RS><EOT>",
        "ERR DI D (expiry) is missing; the batch 'ABC-123D271231' contains 'D271231': the GS separator before DI D was probably lost, rescan the pack",
    );
}

#[test]
fn the_bracket_form_reads_ais_in_brackets_and_unescapes_a_bracket_in_data() {
    let fields = format!("BRACKET {V1_FIELDS}");
    check("(01)09501101530003(17)271231(10)ABC123(21)X4K9P7Q2M8R5\r\n", &fields);
    check("(21)X4K9P7Q2M8R5(10)ABC123(17)271231(01)09501101530003", &fields);
    check("]d2(01)09501101530003(17)271231(10)ABC123(21)X4K9P7Q2M8R5", &fields);
    check(
        "(01)09501101530003(17)271231(10)AB\\(C)D(21)X\\(",
        "BRACKET GTIN 09501101530003 exp 271231 batch AB(C)D serial X(",
    );
    check(
        "(01)09501101530003(17)271231(10)A)B(714)P\\(T(21)S)",
        "BRACKET GTIN 09501101530003 exp 271231 batch A)B serial S) nhrn 714 P(T",
    );
    check(
        "(01)09501101530003(17)271231(10)A\\B(21)S",
        "ERR AI 10 (batch) 'A\\B': character '\\' at position 2 is not allowed (GS1 character set 82)",
    );
    check(
        "(01)09501101530003(17)271231(10)A<GS>(21)S",
        "ERR AI 10 (batch) 'A<GS>': character GS (ASCII 29) at position 2 is not allowed (GS1 character set 82)",
    );
    check("(01)09501101530003(17)271231(10)ABC123(21)X4K9P7Q2M8R5(10)ABC123", &fields);
    check(
        "(01)09501101530003(91)A(B(17)271231(10)L(21)S",
        "ERR scan: '(B(17)' at position 24 is not an AI in brackets such as (01); a '(' inside data is written '\\('",
    );
}

#[test]
fn the_bracket_form_refuses_what_it_cannot_read() {
    check(
        "(01)9501101530003(17)271231(10)ABC123(21)X",
        "ERR AI 01 (product code) '9501101530003': has 13 characters, 14 are required",
    );
    check(
        "(01)09501101530003(17)2712310(10)ABC123(21)X",
        "ERR AI 17 (expiry) '2712310': has 7 characters, 6 (YYMMDD) are required",
    );
    check(
        "(01)0950110153000317271231(10)ABC123(21)X",
        "ERR AI 01 (product code) '0950110153000317271231': has 22 characters, 14 are required",
    );
    check("(01)09501101530003(17)271231(10)(21)X", "ERR AI 10 (batch): is empty");
    check(
        "(01)09501101530003(17)271231(10)ABCDEFGHIJKLMNOPQRSTU(21)X",
        "ERR AI 10 (batch) 'ABCDEFGHIJKLMNOPQRSTU': has 21 characters, at most 20 are allowed",
    );
    check(
        "(01)09501101530003(17)271231(10)ABC123(21)X(42)Y",
        "ERR scan: AI 42 at position 45 is not one a pack's code carries …",
    );
    check(
        "(01)09501101530003(17)271231(10)ABC123(21",
        "ERR scan: the '(' at position 39 opens an AI that is never closed with ')'",
    );
    check(
        "(01)09501101530003(17)271231(10)ABC123(",
        "ERR scan: the '(' at position 39 opens an AI that is never closed with ')'",
    );
    check("()09501101530003", "ERR scan: '()' at position 1 is not an AI in brackets such as (01); …");
    check("(01 )09501101530003", "ERR scan: '(01 )' at position 1 is not an AI in brackets such as (01); …");
    check("(01)09501101530003(17)271231(21)X", "ERR AI 10 (batch) is missing");
    check(
        "(01)09501101530003 (17)271231(10)L(21)X",
        "ERR AI 01 (product code) '09501101530003 ': character ' ' (space) at position 15 is not allowed (digits 0-9)",
    );
}

#[test]
fn digital_links_read_the_path_and_the_query() {
    let fields = format!("DIGITAL_LINK {V1_FIELDS}");
    check("https://id.example.org/01/09501101530003/10/ABC123/21/X4K9P7Q2M8R5?17=271231", &fields);
    check("http://id.example.org/01/09501101530003/10/ABC123/21/X4K9P7Q2M8R5?17=271231", &fields);
    check("HTTPS://ID.EXAMPLE.ORG/01/09501101530003/10/ABC123/21/X4K9P7Q2M8R5?17=271231", &fields);
    check("]Q1https://id.example.org/01/09501101530003/10/ABC123/21/X4K9P7Q2M8R5?17=271231\r\n", &fields);
    check("https://example.com/some/prefix/01/09501101530003/10/ABC123/21/X4K9P7Q2M8R5?17=271231", &fields);
    check("https://example.com/01/01/09501101530003/10/ABC123/21/X4K9P7Q2M8R5?17=271231", &fields);
    check(
        "https://id.example.org/01/09501101530003/10/ABC123/21/X4K9P7Q2M8R5?17=271231&linkType=gs1:pil",
        &fields,
    );
    check("https://id.example.org/01/09501101530003/22/V1/10/ABC123/21/X4K9P7Q2M8R5?17=271231", &fields);
    check(
        "https://id.example.org/01/09501101530003/22/V1/21/S?17=271231&91=X&10=L",
        "ERR scan: AI 10 (batch) …",
    );
    check("https://id.example.org/01/09501101530003/10/ABC123/21/X4K9P7Q2M8R5?17=271231#top", &fields);
    check("https://id.example.org/01/09501101530003/10/ABC123/21/X4K9P7Q2M8R5?17=271231&&x&=1", &fields);
    check("https://id.example.org/01/9501101530003/10/ABC123/21/X4K9P7Q2M8R5?17=271231", &fields);
    check("https://id.example.org:8443/01/09501101530003/10/ABC123/21/X4K9P7Q2M8R5?17=271231", &fields);
    check(
        "https://id.example.org/01/96385074/10/L/21/S?17=271231",
        "DIGITAL_LINK GTIN 00000096385074 exp 271231 batch L serial S",
    );
    check(
        "https://id.example.org/01/09501101530003/10/L/21/S?17=271231&714=12%2B3",
        "DIGITAL_LINK GTIN 09501101530003 exp 271231 batch L serial S nhrn 714 12+3",
    );
    check(
        "https://id.example.org/01/09501101530003/10/A+B/21/%41%62%2f%25?17=271231",
        "DIGITAL_LINK GTIN 09501101530003 exp 271231 batch A+B serial Ab/%",
    );
    check(
        "https://id.example.org/01/09501101530003/10/L/21/S?17=271231&714=12%2B3&91=A+",
        "ERR AI 91 (company internal information) 'A ': character ' ' (space) at position 2 is not allowed (GS1 character set 82); a '+' in a \
         Digital Link query stands for a space (a '+' itself is written %2B), and a space is not in GS1 \
         character set 82",
    );
    check(
        "https://id.example.org/01/09501101530003/10/abc/21/x1?17=271231",
        "DIGITAL_LINK GTIN 09501101530003 exp 271231 batch abc serial x1 warn LOWERCASE_FIELD warn LOWERCASE_FIELD",
    );
}

#[test]
fn digital_links_keep_the_standard_path_order_and_the_key_qualifiers_in_the_path() {
    check(
        "https://id.example.org/01/09501101530003/21/X4K9P7Q2M8R5/10/ABC123?17=271231",
        "ERR scan: '/10/' at position 58 is out of order or repeated: a GS1 Digital Link path carries \
         /01/<gtin>, then any of /22/, /10/, /21/, each once and in that order",
    );
    check(
        "https://id.example.org/01/09501101530003/10/A/22/V/21/S?17=271231",
        "ERR scan: '/22/' at position 47 is out of order or repeated: …",
    );
    check(
        "https://id.example.org/01/09501101530003/10/A/10/A/21/S?17=271231",
        "ERR scan: '/10/' at position 47 …",
    );
    check(
        "https://id.example.org/01/09501101530003/10/ABC123/21/X4K9P7Q2M8R5/17/271231",
        "ERR scan: AI 17 (expiry) at position 68 is in the path, where only /01/<gtin> and its key qualifiers \
         /22/, /10/, /21/ go: it belongs in the query (?17=...)",
    );
    check(
        "https://id.example.org/01/09501101530003/99/X/10/A/21/S?17=271231",
        "ERR scan: AI 99 (company internal information) at position 42 is in the path, …",
    );
    check(
        "https://id.example.org/01/09501101530003/01/09501101530003/10/A/21/S?17=271231",
        "ERR scan: '/01/' at position 42 is a second GTIN in the path: a GS1 Digital Link has one",
    );
    check(
        "https://id.example.org/01/09501101530003?17=271231&10=ABC123&21=X4K9P7Q2M8R5",
        "ERR scan: AI 10 (batch) at position 52 is in the query, but a GS1 Digital Link carries the GTIN and \
         its key qualifiers in the path: /01/<gtin>/22/.../10/.../21/...",
    );
    check(
        "https://id.example.org/01/09501101530003/10/A/21/S?17=271231&10=A",
        "ERR scan: AI 10 (batch) at position 62 is in the query, …",
    );
    check(
        "https://id.example.org/01/09501101530003/10/A/21/S?17=271231&01=9501101530003",
        "ERR scan: AI 01 (product code) at position 62 is in the query, …",
    );
    check("https://id.example.org/01/09501101530003/10/A/21/S?22=V&17=271231", "ERR scan: AI 22 …");
}

#[test]
fn digital_links_refuse_bad_escapes_and_paths_without_a_gtin() {
    check(
        "https://id.example.org/01/09501101530003/10/AB%G1/21/S?17=271231",
        "ERR AI 10 (batch) 'AB%G1': '%G1' is not a percent escape ('%' must be followed by two hex digits; a '%' itself is written %25)",
    );
    check(
        "https://id.example.org/01/09501101530003/10/AB%2/21/S?17=271231",
        "ERR AI 10 (batch) 'AB%2': '%2' is not a percent escape …",
    );
    check(
        "https://id.example.org/01/09501101530003/10/AB/21/S?17=2712%",
        "ERR AI 17 (expiry) '2712%': '%' is not a percent escape …",
    );
    check(
        "https://id.example.org/01/09501101530003/10/A%20B/21/S?17=271231",
        "ERR AI 10 (batch) 'A B': character ' ' (space) at position 2 is not allowed (GS1 character set 82)",
    );
    check(
        "https://id.example.org/01/09501101530003/10/A%DFB/21/S?17=271231",
        "ERR AI 10 (batch) 'A\\xDFB': character 0xDF (a byte that is not UTF-8; 'ß' in Latin-1) at position 2 …; it looks like a keyboard-layout mismatch …",
    );
    check(
        "https://id.example.org/01/09501101530003/10/A%C3%9FB/21/S?17=271231",
        "ERR AI 10 (batch) 'AßB': character '\\u{df}' (U+00DF) at position 2 …; it looks like a keyboard-layout mismatch …",
    );
    check(
        "https://id.example.org/01/09501101530004/10/A/21/S?17=271231",
        "ERR AI 01 (product code) '09501101530004': check digit is 4, expected 3",
    );
    check(
        "https://id.example.org/01/0950110153000/10/A/21/S?17=271231",
        "ERR AI 01 (product code) '0950110153000': check digit is 0, expected 7",
    );
    check(
        "https://id.example.org/01/12345678901/10/A/21/S?17=271231",
        "ERR AI 01 (product code) '12345678901': has 11 characters, 14 (or 8, 12, 13) are required",
    );
    check(
        "https://id.example.org/01/09501101530003/10/A/21/S?17=27123",
        "ERR AI 17 (expiry) '27123': has 5 characters, 6 (YYMMDD) are required",
    );
    check("https://id.example.org/01/09501101530003/10/A/21/S?17", "ERR AI 17 (expiry): is empty");
    check("https://id.example.org/01/09501101530003/10/A/21/S", "ERR AI 17 (expiry) is missing");
    check(
        "https://id.example.org/01/09501101530003/10/A/21/S?17=271231&91=X&91=X",
        "DIGITAL_LINK GTIN 09501101530003 exp 271231 batch A serial S",
    );
    check(
        "https://id.example.org/01/09501101530003/10/A/21/S?17=271231&91=X&91=Y",
        "ERR AI 91 (company internal information) 'Y': the code already carries AI 91 with 'X'; …",
    );
    check(
        "https://id.example.org/01/09501101530003/10/A/42/S?17=271231",
        "ERR scan: AI 42 at position 47 is not one a pack's code carries …",
    );
    check(
        "https://id.example.org/01/09501101530003/10/A/21/S?17=271231&4321=x",
        "ERR scan: AI 4321 at position 62 is not one a pack's code carries …",
    );
    check(
        "https://id.example.org/01/09501101530003/10/A/21/S/?17=271231",
        "ERR scan: the URI path from '/01/' on must be pairs of an AI and its value, as in /01/<gtin>/10/<batch>/21/<serial>",
    );
    check(
        "https://id.example.org/01/09501101530003/10/A/21?17=271231",
        "ERR scan: the URI path from '/01/' on must be pairs …",
    );
    check(
        "https://id.example.org/01/09501101530003/batch/A?17=271231",
        "ERR scan: the URI path from '/01/' on must be pairs …",
    );
    check(
        "https://id.example.org/gtin/09501101530003?17=271231",
        "ERR scan: the URI path has no '/01/<gtin>': it is not a GS1 Digital Link to a pack",
    );
    check("https://id.example.org", "ERR scan: the URI path has no '/01/<gtin>': …");
    check("https://id.example.org?01=09501101530003", "ERR scan: the URI path has no '/01/<gtin>': …");
    check("https:///01/09501101530003", "ERR scan: the URI has no domain after 'https://'");
    check("http://", "ERR scan: the URI has no domain after 'http://'");
    check("https://id.example.org/01//10/A/21/S?17=271231", "ERR AI 01 (product code): is empty");
    check("https://id.example.org/01/09501101530003/10//21/S?17=271231", "ERR AI 10 (batch): is empty");
}

#[test]
fn lower_case_batches_and_serials_are_read_with_a_warning() {
    check(
        "01095011015300031727123110abc123<GS>21X4K9P7Q2M8R5",
        "ELEMENT_STRING GTIN 09501101530003 exp 271231 batch abc123 serial X4K9P7Q2M8R5 warn LOWERCASE_FIELD",
    );
    check("01095011015300031727123110ABC123<GS>21x4k9p7q2m8r5", "… serial x4k9p7q2m8r5 warn LOWERCASE_FIELD");
    check("01095011015300031727123110aBC123<GS>21x4K9P7Q2M8R5", "… serial x4K9P7Q2M8R5");
    check("01095011015300031727123110123<GS>21456-/", "… batch 123 serial 456-/");
    check(
        "(01)09501101530003(17)271231(10)lot(21)sn",
        "BRACKET … batch lot serial sn warn LOWERCASE_FIELD warn LOWERCASE_FIELD",
    );
    check(
        "[)><RS>06<GS>9N110375286414<GS>1Tabc<GS>D271231<GS>SK2<RS><EOT>",
        "ISO15434_FORMAT_06 … batch abc serial K2 warn LOWERCASE_FIELD",
    );
    let scan = parse(&raw(b"01095011015300031727123110lot<GS>21SN"), today()).expect("parses");
    assert_eq!(
        scan.warnings,
        [ScanWarning {
            code: WarningCode::LowercaseField,
            message:
                "the batch 'lot' has lower-case letters and no upper-case ones, as Caps Lock or a keyboard \
                      setting can cause: check it against the pack and rescan if in doubt"
                    .to_owned()
        }]
    );
}

#[test]
fn a_batch_holding_21_and_six_more_characters_is_read_with_a_warning() {
    check(
        "01095011015300031727123110AB21CDEFGH<GS>21X",
        "… batch AB21CDEFGH serial X warn BATCH_MAY_CONTAIN_SERIAL",
    );
    check("01095011015300031727123110AB21CDEFG<GS>21X", "… batch AB21CDEFG serial X");
    check(
        "0109501101530003172712312112345<GS>1021123456",
        "… batch 21123456 serial 12345 warn BATCH_MAY_CONTAIN_SERIAL",
    );
    check(
        "[)><RS>05<GS>01095011015300031727123110AB21CDEFGH<GS>21X<RS><EOT>",
        "ISO15434_FORMAT_05 … warn BATCH_MAY_CONTAIN_SERIAL",
    );
    // Where every field is delimited explicitly, a lost separator cannot be the cause.
    check("(01)09501101530003(17)271231(10)AB21CDEFGH(21)X", "BRACKET … batch AB21CDEFGH serial X");
    check(
        "https://id.example.org/01/09501101530003/10/AB21CDEFGH/21/X?17=271231",
        "DIGITAL_LINK … batch AB21CDEFGH serial X",
    );
    check(
        "[)><RS>06<GS>9N110375286414<GS>1TAB21CDEFGH<GS>D271231<GS>SK2<RS><EOT>",
        "ISO15434_FORMAT_06 … batch AB21CDEFGH serial K2",
    );
    let scan = parse(&raw(b"01095011015300031727123110AB21CDEFGH<GS>21X"), today()).expect("parses");
    assert_eq!(
        scan.warnings[0].message,
        "the batch 'AB21CDEFGH' contains '21CDEFGH', which could be a serial (AI 21) swallowed after a lost GS \
         separator: check the batch printed on the pack and rescan if in doubt"
    );
}

#[test]
fn a_serial_that_runs_to_the_end_holding_10_or_17_and_a_value_is_read_with_a_warning() {
    check("010950110153000317271231<GS>10LOT<GS>21SER10X", "… serial SER10X warn SERIAL_MAY_CONTAIN_AI");
    check(
        "01095011015300031727123110LOT<GS>21SER17280229",
        "… serial SER17280229 warn SERIAL_MAY_CONTAIN_AI",
    );
    check("01095011015300031727123110LOT<GS>21SER17270229", "… serial SER17270229");
    check("01095011015300031727123110LOT<GS>21SER10", "… serial SER10");
    check("01095011015300031727123110LOT<GS>2110SER", "… serial 10SER");
    check(
        "010950110153000317271231<GS>21SER10X<GS>10LOT",
        "ELEMENT_STRING GTIN 09501101530003 exp 271231 batch LOT serial SER10X",
    );
    check(
        "[)><RS>05<GS>010950110153000317271231<GS>10LOT<GS>21SER10X<RS><EOT>",
        "ISO15434_FORMAT_05 … warn SERIAL_MAY_CONTAIN_AI",
    );
    check("(01)09501101530003(17)271231(10)LOT(21)SER10X", "BRACKET … serial SER10X");
    let scan = parse(&raw(b"01095011015300031727123110LOT<GS>21SER17280229"), today()).expect("parses");
    assert_eq!(
        scan.warnings[0].message,
        "the serial 'SER17280229' runs to the end of the data and contains '17280229', which could be AI 17 \
         swallowed after a lost GS separator: check the serial printed on the pack and rescan if in doubt"
    );
}

#[test]
fn elements_forms_and_warning_codes_have_stable_names() {
    assert_eq!(Element::Ai(17).to_string(), "AI 17 (expiry)");
    assert_eq!(Element::Ai(1).to_string(), "AI 01 (product code)");
    assert_eq!(Element::Ai(714).to_string(), "AI 714 (reimbursement number PT)");
    assert_eq!(Element::Ai(42).to_string(), "AI 42");
    assert_eq!(Element::Di("1T").to_string(), "DI 1T (batch)");
    assert_eq!(Element::Di("9N").to_string(), "DI 9N (PPN)");
    assert_eq!(Element::Envelope.to_string(), "ISO/IEC 15434 envelope");
    assert_eq!(Element::Input.to_string(), "scan");
    let forms: Vec<&str> = Form::ALL.iter().map(|f| f.as_str()).collect();
    assert_eq!(
        forms,
        ["ELEMENT_STRING", "ISO15434_FORMAT_05", "ISO15434_FORMAT_06", "BRACKET", "DIGITAL_LINK"]
    );
    let codes: Vec<&str> = WarningCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        codes,
        ["LOWERCASE_FIELD", "BATCH_MAY_CONTAIN_SERIAL", "SERIAL_MAY_CONTAIN_AI", "KEYBOARD_LAYOUT"]
    );
}

#[test]
fn error_values_are_shown_escaped_and_cut_after_sixty_characters() {
    let long = "A".repeat(100);
    let e = parse(format!("01095011015300031727123110{long}").as_bytes(), today()).unwrap_err();
    assert_eq!(e.value, Some(format!("{}...", "A".repeat(60))));
    assert_eq!(show(b"a\x1d\x1e\x04\xff\n"), "a<GS><RS><EOT>\\xFF\\n");
}

fn pack(gtin: &str, expiry: &str, batch: &str, serial: &str, nhrn: Option<(u16, &str)>) -> PackIdentifier {
    PackIdentifier {
        product_code: ProductCode::new(if gtin.len() == 12 { Scheme::Ppn } else { Scheme::Gtin }, gtin)
            .expect("valid code"),
        serial: Serial::new(serial).expect("valid serial"),
        batch: Batch::new(batch).expect("valid batch"),
        expiry: Expiry::parse(expiry, today()).expect("valid expiry"),
        nhrn: nhrn.map(|(ai, v)| Nhrn::new(ai, v).expect("valid NHRN")),
    }
}

#[test]
fn format_writes_each_form_as_documented() {
    let id = pack("09501101530003", "271231", "A(B", "X4K9/", Some((714, "12")));
    let text = |form| String::from_utf8(format(&id, form).expect("a GTIN fits every form")).expect("ASCII");
    assert_eq!(text(Form::ElementString), "]d201095011015300031727123110A(B\u{1d}71412\u{1d}21X4K9/");
    assert_eq!(
        text(Form::Iso15434Format05),
        "[)>\u{1e}05\u{1d}01095011015300031727123110A(B\u{1d}71412\u{1d}21X4K9/\u{1e}\u{4}"
    );
    assert_eq!(
        text(Form::Iso15434Format06),
        "[)>\u{1e}06\u{1d}8P09501101530003\u{1d}1TA(B\u{1d}D271231\u{1d}SX4K9/\u{1e}\u{4}"
    );
    assert_eq!(text(Form::Bracket), "(01)09501101530003(17)271231(10)A\\(B(714)12(21)X4K9/");
    assert_eq!(
        text(Form::DigitalLink),
        "https://id.example.org/01/09501101530003/10/A%28B/21/X4K9%2F?17=271231&714=12"
    );
    let ppn = pack("110375286414", "271231", "ABC-123", "K2L8M4N6P", None);
    assert_eq!(
        format(&ppn, Form::Iso15434Format06),
        Some(raw(b"[)><RS>06<GS>9N110375286414<GS>1TABC-123<GS>D271231<GS>SK2L8M4N6P<RS><EOT>"))
    );
    for form in [Form::ElementString, Form::Iso15434Format05, Form::Bracket, Form::DigitalLink] {
        assert_eq!(format(&ppn, form), None, "{form}");
    }
}

// ---- property tests ----

/// GS1 character set 82, the alphabet of batches, serials and NHRNs.
const SET82: &[u8] = b"!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";

fn set82(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(SET82), 1..=max)
        .prop_map(|bytes| bytes.into_iter().map(char::from).collect())
}

fn product_code() -> impl Strategy<Value = ProductCode> {
    let gtin = prop::collection::vec(b'0'..=b'9', 13).prop_map(|mut digits| {
        digits.push(b'0' + gs1_check_digit(&digits));
        ProductCode::gtin(std::str::from_utf8(&digits).expect("digits")).expect("valid GTIN")
    });
    let alnum: Vec<u8> = (b'0'..=b'9').chain(b'A'..=b'Z').collect();
    let ppn = prop::collection::vec(prop::sample::select(alnum), 10).prop_map(|mut chars| {
        let check = ppn_check_digits(&chars);
        chars.extend_from_slice(format!("{check:02}").as_bytes());
        ProductCode::ppn(std::str::from_utf8(&chars).expect("ASCII")).expect("valid PPN")
    });
    prop_oneof![3 => gtin, 1 => ppn]
}

fn expiry() -> impl Strategy<Value = Expiry> {
    (0u8..100, 1u8..=12, 0u8..=31).prop_filter_map("a real day", |(y, m, d)| {
        Expiry::parse(&format!("{y:02}{m:02}{d:02}"), today()).ok()
    })
}

fn pack_identifier() -> impl Strategy<Value = PackIdentifier> {
    let nhrn = prop::option::of((710u16..=717, set82(20)))
        .prop_map(|n| n.map(|(ai, v)| Nhrn::new(ai, &v).expect("valid NHRN")));
    (product_code(), set82(20), set82(20), expiry(), nhrn).prop_map(
        |(product_code, serial, batch, expiry, nhrn)| PackIdentifier {
            product_code,
            serial: Serial::new(&serial).expect("valid serial"),
            batch: Batch::new(&batch).expect("valid batch"),
            expiry,
            nhrn,
        },
    )
}

/// Bytes drawn mostly from the characters the parser treats specially, so that random input
/// reaches deep into every form.
fn interesting_bytes() -> impl Strategy<Value = Vec<u8>> {
    let alphabet: Vec<u8> = b"0123456789()[]>/?&=%+\\:.ASNTDPQdhtps\x1d\x1e\x04\r\n\xc3\x9f\xdf\xff".to_vec();
    prop::collection::vec(prop::sample::select(alphabet), 0..80)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&bytes, today());
    }

    #[test]
    fn parse_never_panics_after_a_prefix_of_each_form(
        prefix in prop::sample::select(vec![&b"]d2"[..], b"[)>\x1e06\x1d", b"[)>\x1e05\x1d", b"(01)", b"https://x/01/"]),
        bytes in prop_oneof![prop::collection::vec(any::<u8>(), 0..120), interesting_bytes()],
    ) {
        let _ = parse(&[prefix, &bytes].concat(), today());
    }

    #[test]
    fn parse_never_panics_on_a_mangled_valid_code(
        id in pack_identifier(),
        form in prop::sample::select(Form::ALL.to_vec()),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        if let Some(mut bytes) = format(&id, form) {
            for (at, byte, op) in edits {
                let i = at.index(bytes.len() + 1);
                match op {
                    0 => bytes.insert(i, byte),
                    1 if i < bytes.len() => { bytes.remove(i); }
                    _ if i < bytes.len() => bytes[i] = byte,
                    _ => {}
                }
            }
            let _ = parse(&bytes, today());
        }
    }

    #[test]
    fn what_format_writes_parse_reads_back(id in pack_identifier()) {
        for form in Form::ALL {
            let Some(bytes) = format(&id, form) else {
                prop_assert!(id.product_code.scheme() == Scheme::Ppn && form != Form::Iso15434Format06);
                continue;
            };
            let scan = parse(&bytes, today());
            prop_assert!(scan.is_ok(), "{form}: {} gave {:?}", show(&bytes), scan);
            let scan = scan.expect("checked above");
            let mut expected = id.clone();
            if form == Form::Iso15434Format06 {
                // Format 06 carries no reimbursement number.
                expected.nhrn = None;
            }
            prop_assert_eq!(&scan.id, &expected, "{}: {}", form, show(&bytes));
            prop_assert_eq!(scan.id.expiry.as_str(), id.expiry.as_str());
            prop_assert_eq!(scan.form, form);
        }
    }
}
