//! What a terminal sends for a pack: the GS1 element string a scanner delivers (in the order of
//! the AIs printed on the product's packs) or the fields, and the corruptions a keyboard-wedge
//! scanner adds on the way.

use crate::model::{Corruption, Fields, Input, InputForm, Scanner, Terminal};

/// ASCII group separator, which ends a variable-length field that is not the last.
pub(crate) const GS: char = '\u{1d}';

/// The order of the AIs in a product's codes (each has one group separator, after the first
/// variable-length field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AiOrder {
    /// `01 17 10<batch> GS 21<serial>`, the order of the scan vectors.
    ExpiryBatchSerial,
    /// `01 21<serial> GS 17 10<batch>`.
    SerialExpiryBatch,
    /// `01 17 21<serial> GS 10<batch>`.
    ExpirySerialBatch,
}

impl AiOrder {
    pub(crate) const ALL: [AiOrder; 3] =
        [AiOrder::ExpiryBatchSerial, AiOrder::SerialExpiryBatch, AiOrder::ExpirySerialBatch];
}

/// The element string of `f` in `order`, with the symbology identifier `]d2` when `aim`, and
/// without its group separator when `gs` is false.
pub(crate) fn element_string(f: &Fields, order: AiOrder, aim: bool, gs: bool) -> String {
    let (pc, e, b, s) = (&f.product_code, &f.expiry, &f.batch, &f.serial);
    let sep = if gs { GS.to_string() } else { String::new() };
    let body = match order {
        AiOrder::ExpiryBatchSerial => format!("01{pc}17{e}10{b}{sep}21{s}"),
        AiOrder::SerialExpiryBatch => format!("01{pc}21{s}{sep}17{e}10{b}"),
        AiOrder::ExpirySerialBatch => format!("01{pc}17{e}21{s}{sep}10{b}"),
    };
    if aim { format!("]d2{body}") } else { body }
}

/// What `terminal` sends for a pack whose code holds `f`, corrupted by `corruption` if given.
/// A corruption of the characters applies to what the scanner types (every field, as the
/// keyboard turns keys into characters); a lost group separator to the scan (a terminal that
/// sends fields parses the scan first, so it is only given to terminals that send scans).
pub(crate) fn input(
    terminal: &Terminal,
    f: &Fields,
    order: AiOrder,
    corruption: Option<Corruption>,
) -> Input {
    let typed = |text: &str| match corruption {
        Some(Corruption::CapsLock) => caps_lock(text),
        Some(Corruption::KeyboardLayout) => us_typed_into_de(text),
        Some(Corruption::LostGroupSeparator) | None => text.to_owned(),
    };
    let gs = corruption != Some(Corruption::LostGroupSeparator);
    match terminal.input {
        InputForm::Scan => {
            let aim = terminal.scanner == Scanner::Direct;
            Input::Scan(typed(&element_string(f, order, aim, gs)))
        }
        InputForm::Fields => Input::Fields(Fields {
            product_code: typed(&f.product_code),
            serial: typed(&f.serial),
            batch: typed(&f.batch),
            expiry: typed(&f.expiry),
        }),
    }
}

/// The fields a corruption of the characters leaves of `f` (what the system will look up).
pub(crate) fn corrupted_fields(f: &Fields, corruption: Corruption) -> Fields {
    let typed = |text: &str| match corruption {
        Corruption::CapsLock => caps_lock(text),
        Corruption::KeyboardLayout => us_typed_into_de(text),
        Corruption::LostGroupSeparator => text.to_owned(),
    };
    Fields {
        product_code: typed(&f.product_code),
        serial: typed(&f.serial),
        batch: typed(&f.batch),
        expiry: typed(&f.expiry),
    }
}

/// Caps Lock: the case of every ASCII letter inverted (digits and symbols are not shifted).
pub(crate) fn caps_lock(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_lowercase() {
                c.to_ascii_uppercase()
            } else if c.is_ascii_uppercase() {
                c.to_ascii_lowercase()
            } else {
                c
            }
        })
        .collect()
}

/// What a terminal set to the German layout (QWERTZ) shows when a scanner types `text` as a US
/// keyboard would: each key the scanner presses for a character of set 82 (with Shift as the US
/// layout needs it) gives the German layout's character of that key. Control characters (GS) are
/// sent as such.
pub(crate) fn us_typed_into_de(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'y' => 'z',
            'z' => 'y',
            'Y' => 'Z',
            'Z' => 'Y',
            '-' => 'ß',
            '/' => '-',
            '=' => '´',
            ';' => 'ö',
            '\'' => 'ä',
            '"' => 'Ä',
            ':' => 'Ö',
            '<' => ';',
            '>' => ':',
            '?' => '_',
            '_' => '?',
            '&' => '/',
            '*' => '(',
            '(' => ')',
            ')' => '=',
            '+' => '`',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use openmvs_core::ids::{Location, MarketCode};
    use openmvs_core::roles::Role;
    use openmvs_core::scan;
    use openmvs_core::time::Date;

    fn fields() -> Fields {
        Fields {
            product_code: "09501101530003".into(),
            serial: "X4K9P7Q2M8R5".into(),
            batch: "ABC123".into(),
            expiry: "271231".into(),
        }
    }

    fn terminal(scanner: Scanner, input: InputForm) -> Terminal {
        Terminal {
            market: MarketCode::new("DE").unwrap(),
            role: Role::Pharmacy,
            location: Location::new("DE-PH-0001").unwrap(),
            scanner,
            input,
        }
    }

    #[test]
    fn every_order_reads_back_as_the_same_pack_and_a_direct_scanner_adds_its_identifier() {
        let today = Date::new(2026, 12, 1).unwrap();
        assert_eq!(
            element_string(&fields(), AiOrder::ExpiryBatchSerial, true, true),
            "]d201095011015300031727123110ABC123\u{1d}21X4K9P7Q2M8R5",
            "scan vector V1"
        );
        for order in AiOrder::ALL {
            for scanner in [Scanner::KeyboardWedge, Scanner::Direct] {
                let Input::Scan(s) = input(&terminal(scanner, InputForm::Scan), &fields(), order, None)
                else {
                    panic!("a scan");
                };
                let id = scan::parse(s.as_bytes(), today).unwrap().id;
                assert_eq!(
                    (id.product_code.as_str(), id.serial.as_str(), id.batch.as_str(), id.expiry.as_str()),
                    ("09501101530003", "X4K9P7Q2M8R5", "ABC123", "271231")
                );
                assert_eq!(s.starts_with("]d2"), scanner == Scanner::Direct);
            }
        }
    }

    #[test]
    fn a_lost_group_separator_makes_the_scan_unreadable_in_every_order() {
        let today = Date::new(2026, 12, 1).unwrap();
        for order in AiOrder::ALL {
            let t = terminal(Scanner::KeyboardWedge, InputForm::Scan);
            let Input::Scan(s) = input(&t, &fields(), order, Some(Corruption::LostGroupSeparator)) else {
                panic!("a scan");
            };
            assert!(!s.contains(GS));
            assert!(scan::parse(s.as_bytes(), today).is_err(), "{order:?}: {s}");
        }
    }

    #[test]
    fn caps_lock_and_the_german_layout_change_letters_and_keys_but_not_digits() {
        assert_eq!(caps_lock("X4k9-/"), "x4K9-/");
        assert_eq!(us_typed_into_de("YZ-yz/19"), "ZYßzy-19");
        let t = terminal(Scanner::KeyboardWedge, InputForm::Fields);
        let Input::Fields(f) = input(&t, &fields(), AiOrder::ExpiryBatchSerial, Some(Corruption::CapsLock))
        else {
            panic!("fields");
        };
        assert_eq!(
            (f.serial.as_str(), f.batch.as_str(), f.expiry.as_str()),
            ("x4k9p7q2m8r5", "abc123", "271231")
        );
        assert_eq!(f, corrupted_fields(&fields(), Corruption::CapsLock));
    }
}
