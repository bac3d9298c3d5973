//! The corruptions a scanner or its keyboard wedge makes in a pack's code that still reads, and
//! how each is undone: from an identifier as read, the few identifiers it may have been.
//!
//! A corruption that leaves a readable code turns a genuine pack into an "unknown serial" or a
//! "batch mismatch", the false alerts fmd-rules §2 asks to avoid. [`repairs`] names, for an
//! identifier as read, each identifier that one known corruption would have turned into it; the
//! verification system looks each up, and when one matches a pack, the corruption explains the
//! failure and the user is asked to rescan instead of an alert being raised
//! ([`crate::pack::decide_rescan`]). Checking the repair against the stored packs, rather than
//! trusting the signs of corruption alone, keeps the alert for a falsified pack whose code merely
//! looks corrupted: a lower-case serial that no pack has in upper case either is still unknown.
//!
//! The corruptions undone, each only where the identifier shows its mark:
//!
//! * **Caps Lock** inverts the case of every letter a keyboard wedge types. Undone when the batch
//!   or the serial has lower-case letters and no upper-case ones (the mark of
//!   [`WarningCode::LowercaseField`]): every letter of both is inverted back, as Caps Lock
//!   inverted them all.
//! * **A keyboard-layout mismatch** between the scanner and the computer (US and German, the
//!   common pair in the EU): a key gives another character, `Y` and `Z` swap, `/` becomes `-`.
//!   Undone both ways (a US scanner on a German computer, and the reverse) when the batch or
//!   serial holds a character the mismatch changes and every character has a set-82 origin.
//!   (Characters it turns into ones outside set 82, such as `-` into `ß`, make the scan
//!   unreadable instead, and the parser says so.)
//! * **A lost group separator** makes a variable field swallow the next element. Undone when the
//!   batch ends with `21` and the serial (the serial was swallowed into the batch and also read
//!   on its own), or the serial ends with `10` and the batch, or `17` and the expiry. A pack has
//!   one serial, batch and expiry, so only a tail that repeats the other field is a separator's
//!   loss; any other `21` in a batch is the batch's own.
//!
//! At most [`MAX_REPAIRS`] are given, so a request never costs more than that many extra reads.

use super::{ScanWarning, WarningCode};
use crate::ids::{Batch, PackIdentifier, Serial, is_cset82};

/// The most repairs [`repairs`] gives for one identifier (each costs the caller one read).
pub const MAX_REPAIRS: usize = 4;

/// A corruption that [`repairs`] undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Corruption {
    /// Caps Lock inverted the case of every letter.
    CapsLock,
    /// The scanner typed for a US keyboard on a computer set to German.
    UsScannerOnGermanLayout,
    /// The scanner typed for a German keyboard on a computer set to US.
    GermanScannerOnUsLayout,
    /// A group separator was lost and a field swallowed the next one.
    LostSeparator,
}

/// An identifier as it was before one suspected corruption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// The corruption undone.
    pub corruption: Corruption,
    /// The identifier with the corruption undone (batch and serial; product code and expiry
    /// are digits, which these corruptions leave alone).
    pub id: PackIdentifier,
    /// What to tell the user when this repair explains a failure.
    pub warning: ScanWarning,
}

/// The same physical key on a US and on a German keyboard: `(US character, German character)`.
/// Keys that give the same character on both (most letters, digits, `!`, `%`, `,`, `.`) are not
/// listed.
const US_DE_KEYS: [(char, char); 30] = [
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
];

/// The character a key wedge meant when the computer showed `shown`. `typed_for_us` says the
/// scanner typed for a US keyboard (the computer is set to German); otherwise the reverse.
/// `None` when no key gives `shown` on the computer's layout.
fn meant(shown: char, typed_for_us: bool) -> Option<char> {
    // Each key as (the character the computer shows, the one the scanner meant).
    let keys = US_DE_KEYS.iter().map(|&(us, de)| if typed_for_us { (de, us) } else { (us, de) });
    if let Some((_, on_scanner)) = keys.clone().find(|&(on_computer, _)| on_computer == shown) {
        return Some(on_scanner);
    }
    // A character the scanner's layout has on a key the computer shows otherwise cannot appear.
    if keys.into_iter().any(|(_, on_scanner)| on_scanner == shown) { None } else { Some(shown) }
}

/// `text` with every character mapped back by `meant`, if each has a set-82 origin.
fn unswap(text: &str, typed_for_us: bool) -> Option<String> {
    text.chars().map(|c| meant(c, typed_for_us).filter(|m| m.is_ascii() && is_cset82(*m as u8))).collect()
}

/// Whether `text` has lower-case letters and no upper-case ones.
pub(super) fn lower_case_only(text: &str) -> bool {
    text.bytes().any(|b| b.is_ascii_lowercase()) && !text.bytes().any(|b| b.is_ascii_uppercase())
}

/// `text` with the case of every ASCII letter inverted.
fn invert_case(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_lowercase() { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
        .collect()
}

/// The identifiers that one known corruption would have turned into `id`, most likely first, at
/// most [`MAX_REPAIRS`]; none equal to `id` or to each other. See the module documentation.
pub fn repairs(id: &PackIdentifier) -> Vec<Repair> {
    let (batch, serial) = (id.batch.as_str(), id.serial.as_str());
    let shown = format!("the batch '{batch}' and serial '{serial}'");
    let mut out: Vec<Repair> = Vec::new();
    let mut add = |corruption, b: &str, s: &str, code, message: String| {
        let (Ok(b), Ok(s)) = (Batch::new(b), Serial::new(s)) else { return };
        let repaired = PackIdentifier { batch: b, serial: s, ..id.clone() };
        if repaired != *id && !out.iter().any(|r| r.id == repaired) && out.len() < MAX_REPAIRS {
            out.push(Repair { corruption, id: repaired, warning: ScanWarning { code, message } });
        }
    };
    if lower_case_only(batch) || lower_case_only(serial) {
        add(
            Corruption::CapsLock,
            &invert_case(batch),
            &invert_case(serial),
            WarningCode::LowercaseField,
            format!(
                "{shown} match no pack, but do with the case of their letters inverted: Caps Lock or the \
                 scanner's keyboard setting probably inverted it. Turn Caps Lock off and rescan the pack"
            ),
        );
    }
    for (corruption, typed_for_us, layouts) in [
        (
            Corruption::UsScannerOnGermanLayout,
            true,
            "a scanner set to a US keyboard on a computer set to German",
        ),
        (
            Corruption::GermanScannerOnUsLayout,
            false,
            "a scanner set to a German keyboard on a computer set to US",
        ),
    ] {
        if let (Some(b), Some(s)) = (unswap(batch, typed_for_us), unswap(serial, typed_for_us)) {
            add(
                corruption,
                &b,
                &s,
                WarningCode::KeyboardLayout,
                format!(
                    "{shown} match no pack, but '{b}' and '{s}' do, as {layouts} would turn them (Y and Z \
                     swapped, for instance): set the scanner's keyboard layout to the computer's and rescan \
                     the pack"
                ),
            );
        }
    }
    if let Some(head) =
        batch.strip_suffix(serial).and_then(|b| b.strip_suffix("21")).filter(|h| !h.is_empty())
    {
        add(
            Corruption::LostSeparator,
            head,
            serial,
            WarningCode::BatchMayContainSerial,
            format!(
                "the batch '{batch}' ends with '21{serial}', the serial (AI 21) swallowed after a lost GS \
                 separator: the pack's batch is probably '{head}'. Rescan the pack"
            ),
        );
    }
    for (ai, what, tail) in [("10", "batch", batch), ("17", "expiry", id.expiry.as_str())] {
        if let Some(head) =
            serial.strip_suffix(tail).and_then(|s| s.strip_suffix(ai)).filter(|h| !h.is_empty())
        {
            add(
                Corruption::LostSeparator,
                batch,
                head,
                WarningCode::SerialMayContainAi,
                format!(
                    "the serial '{serial}' ends with '{ai}{tail}', the {what} (AI {ai}) swallowed after a lost \
                     GS separator: the pack's serial is probably '{head}'. Rescan the pack"
                ),
            );
        }
    }
    out
}
