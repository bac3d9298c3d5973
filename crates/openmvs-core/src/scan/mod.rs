//! Scanner input: reads a pack's code, exactly as a scanner delivers it, into a validated
//! [`PackIdentifier`], and writes identifiers back in each form for tests and test data.
//!
//! Scanner input is the first cause of false falsification alerts: a lost group separator, a
//! keyboard wedge set to the wrong layout or Caps Lock turn a genuine pack into an "unknown
//! serial". So the reader is exact and explains itself:
//!
//! * it never alters data (no case folding, no trimming inside fields); the only thing removed is
//!   one trailing line end (`\r\n`, `\n` or `\r`) that keyboard wedges append;
//! * anything ambiguous is refused with a [`ScanError`] that names the element and the rule it
//!   breaks, and, where the cause is guessable, says what probably happened and to rescan;
//! * corruption that leaves a readable but suspicious code yields [`ScanWarning`]s: the parse
//!   succeeds and the terminal is asked to look at the pack.
//!
//! # Forms recognised
//!
//! After the line end is stripped and an optional AIM symbology identifier (`]` and two
//! characters, such as `]d2`) is set aside, the first bytes decide the form:
//!
//! | starts with | form |
//! |---|---|
//! | `[)>` | ISO/IEC 15434 envelope, [`Form::Iso15434Format05`] or [`Form::Iso15434Format06`] |
//! | `http://` or `https://` (any case) | [`Form::DigitalLink`] |
//! | `(` | [`Form::Bracket`] |
//! | anything else | [`Form::ElementString`] |
//!
//! An element string may only follow the symbology identifiers `]d2` (GS1 DataMatrix) or `]Q3`
//! (GS1 QR); one leading GS (the FNC1 some scanners transmit) is skipped.
//!
//! # Application identifiers
//!
//! A pack's code carries AIs 01 (GTIN), 17 (expiry), 10 (batch) and 21 (serial), all mandatory,
//! and at most one national reimbursement number (710-717). Real packs also carry a few other
//! AIs; these are tolerated, their syntax checked and their values dropped: 11, 13, 15, 16
//! (dates), 22 (consumer product variant, which a Digital Link path may carry), 30 (count), 240
//! (additional product identification) and 91-99 (company internal). Any other AI is refused:
//! AIs such as 3103 (net weight), 8001 (roll dimensions) or 8003 (returnable asset) belong to
//! trade items and logistic units, not to a medicine's pack, so a scan carrying one most likely
//! read another symbol than the pack's code; the error names the AI so the user can tell.
//! A format 06 code (IFA) carries data identifiers 9N or 8P, 1T, D and S, and may carry 16D
//! (production date), which is tolerated like AI 11.
//!
//! # Warnings
//!
//! The list is kept small on purpose; each warning asks the user to check the pack and rescan if
//! in doubt:
//!
//! * [`WarningCode::LowercaseField`]: the batch or the serial has lower-case letters and no
//!   upper-case ones (every form). Serials may legitimately be lower case, but Caps Lock and
//!   keyboard-wedge settings flip case, so the user is asked to look.
//! * [`WarningCode::BatchMayContainSerial`]: the batch contains `21` followed by at least six more
//!   characters (GS-separated forms only: element string and format 05).
//! * [`WarningCode::SerialMayContainAi`]: the serial ran to the end of the data (no GS after it)
//!   and contains, after its first character, `10` followed by at least one character or `17`
//!   followed by six digits that make a valid expiry (element string and format 05 only). Purely
//!   numeric serials trigger it now and then; that is the price of catching a swallowed AI.
//!
//! A warning alone changes nothing the verification system decides. When a request fails because
//! its identifier matches no pack, [`repairs`] gives the identifiers a corruption would have
//! turned into it, and if one matches a pack the user is asked to rescan instead of an alert
//! being raised; the answer then carries the warning of that corruption (one of the above, or
//! [`WarningCode::KeyboardLayout`], which only a repair gives), for fields typed or sent by a
//! client as much as for a raw scan.

mod bracket;
mod corruption;
mod digital_link;
mod format;
mod gs1;
mod iso15434;
#[cfg(test)]
mod tests;

use std::fmt;

pub use corruption::{Corruption, MAX_REPAIRS, Repair, repairs};
pub use format::format;

use crate::ids::{
    Batch, Expiry, IdError, Nhrn, PackIdentifier, ProductCode, Serial, describe_char, is_cset82,
};
use crate::time::Date;

/// ASCII group separator (GS, 29): ends a variable-length field; FNC1 as scanners transmit it.
const GS: u8 = 0x1d;
/// ASCII record separator (RS, 30): frames the format inside an ISO/IEC 15434 envelope.
const RS: u8 = 0x1e;
/// ASCII end of transmission (EOT, 4): the last byte of an ISO/IEC 15434 envelope.
const EOT: u8 = 0x04;

/// A successfully read pack code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The pack's identifier, every part validated.
    pub id: PackIdentifier,
    /// The form the scanner delivered.
    pub form: Form,
    /// Signs of corruption that did not prevent reading; the terminal should ask the user to look.
    pub warnings: Vec<ScanWarning>,
}

/// The form in which a scanner delivers a pack's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Form {
    /// A GS1 element string, as a GS1 DataMatrix (`]d2`) or GS1 QR code (`]Q3`) delivers it.
    ElementString,
    /// An ISO/IEC 15434 envelope in format 05, which carries a GS1 element string.
    Iso15434Format05,
    /// An ISO/IEC 15434 envelope in format 06, which carries ASC MH10 data identifiers (IFA's PPN codes).
    Iso15434Format06,
    /// The human-readable form with each AI in brackets, as printed next to the code.
    Bracket,
    /// A GS1 Digital Link URI.
    DigitalLink,
}

impl Form {
    /// Every form, in a fixed order.
    pub const ALL: [Form; 5] = [
        Form::ElementString,
        Form::Iso15434Format05,
        Form::Iso15434Format06,
        Form::Bracket,
        Form::DigitalLink,
    ];

    /// The upper-case name used on the wire, e.g. `ELEMENT_STRING`.
    pub fn as_str(self) -> &'static str {
        match self {
            Form::ElementString => "ELEMENT_STRING",
            Form::Iso15434Format05 => "ISO15434_FORMAT_05",
            Form::Iso15434Format06 => "ISO15434_FORMAT_06",
            Form::Bracket => "BRACKET",
            Form::DigitalLink => "DIGITAL_LINK",
        }
    }

    /// Whether variable-length fields end with a GS separator in this form, so that a lost
    /// separator can make one field swallow the next.
    fn gs_separated(self) -> bool {
        matches!(self, Form::ElementString | Form::Iso15434Format05 | Form::Iso15434Format06)
    }
}

impl fmt::Display for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A sign of corruption in a code that could still be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanWarning {
    /// What kind of corruption is suspected.
    pub code: WarningCode,
    /// One sentence for the user, naming the field and asking to check the pack.
    pub message: String,
}

/// The kinds of scan warning. See the module documentation for when each is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WarningCode {
    /// The batch or serial has lower-case letters and no upper-case ones (Caps Lock suspected).
    LowercaseField,
    /// The batch contains `21` followed by at least six characters (a swallowed serial suspected).
    BatchMayContainSerial,
    /// The serial ran to the end of the data and contains `10` or `17` with a plausible value.
    SerialMayContainAi,
    /// The code matches a pack once a keyboard-layout mismatch (US and German) is undone; given
    /// only with a request for a rescan, never by the parser.
    KeyboardLayout,
}

impl WarningCode {
    /// Every warning code, in a fixed order.
    pub const ALL: [WarningCode; 4] = [
        WarningCode::LowercaseField,
        WarningCode::BatchMayContainSerial,
        WarningCode::SerialMayContainAi,
        WarningCode::KeyboardLayout,
    ];

    /// The code used on the wire, e.g. `LOWERCASE_FIELD`.
    pub fn as_str(self) -> &'static str {
        match self {
            WarningCode::LowercaseField => "LOWERCASE_FIELD",
            WarningCode::BatchMayContainSerial => "BATCH_MAY_CONTAIN_SERIAL",
            WarningCode::SerialMayContainAi => "SERIAL_MAY_CONTAIN_AI",
            WarningCode::KeyboardLayout => "KEYBOARD_LAYOUT",
        }
    }

    /// Parses the code used on the wire.
    pub fn parse(s: &str) -> Option<WarningCode> {
        WarningCode::ALL.into_iter().find(|w| w.as_str() == s)
    }
}

impl fmt::Display for WarningCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The part of a scan an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Element {
    /// A GS1 application identifier, e.g. `Ai(17)` for the expiry.
    Ai(u16),
    /// An ASC MH10 data identifier of ISO/IEC 15434 format 06, e.g. `Di("1T")` for the batch.
    Di(&'static str),
    /// The ISO/IEC 15434 envelope itself (header, format, trailer).
    Envelope,
    /// The scan as a whole (its form, an AI that cannot be read, a URI that is not a Digital Link).
    Input,
}

impl Element {
    /// What the element holds, e.g. `expiry`; `None` for an AI or DI outside the tables.
    fn name(self) -> Option<&'static str> {
        match self {
            Element::Ai(ai) => gs1::by_number(ai).map(|a| a.field.name),
            Element::Di(di) => iso15434::by_di(di).map(|d| d.name),
            Element::Envelope | Element::Input => None,
        }
    }

    /// The short tag naming the element, e.g. `AI 21` or `DI S`.
    fn tag(self) -> String {
        match self {
            Element::Ai(ai) => format!("AI {ai:02}"),
            Element::Di(di) => format!("DI {di}"),
            Element::Envelope => "ISO/IEC 15434 envelope".to_owned(),
            Element::Input => "scan".to_owned(),
        }
    }

    /// The characters that introduce the element in the data, e.g. `21` or `1T`.
    fn prefix(self) -> String {
        match self {
            Element::Ai(ai) => format!("{ai:02}"),
            Element::Di(di) => di.to_owned(),
            Element::Envelope | Element::Input => String::new(),
        }
    }
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.tag())?;
        if let Some(name) = self.name() {
            write!(f, " ({name})")?;
        }
        Ok(())
    }
}

/// A likely cause of an error, added to its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hint {
    /// The character is one that a keyboard wedge with the wrong layout (DE vs US) produces.
    KeyboardLayout,
    /// A variable-length field is too long, as it is when the GS separator after it is lost.
    LostSeparator,
    /// A Digital Link query value held a `+`, which a query reads as a space.
    PlusInQuery,
}

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hint::KeyboardLayout => {
                "it looks like a keyboard-layout mismatch (e.g. DE vs US), check the scanner's keyboard \
                 setting and rescan"
            }
            Hint::LostSeparator => "the GS separator after it may have been lost, rescan the pack",
            Hint::PlusInQuery => {
                "a '+' in a Digital Link query stands for a space (a '+' itself is written %2B), and \
                 a space is not in GS1 character set 82"
            }
        })
    }
}

/// A mandatory element found inside another field, as when the GS separator before it is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swallowed {
    /// The field that holds it.
    pub by: Element,
    /// That field's whole value.
    pub value: String,
    /// The part of the value that starts with the missing element's AI or DI.
    pub tail: String,
}

/// The rule a scan breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// There is no data: an empty scan, or nothing after the prefix named.
    Empty {
        /// What came before the missing data (a symbology identifier or an envelope header).
        after: Option<String>,
    },
    /// The value breaks a rule of its type: check digit, length, character set or date.
    Invalid {
        /// The rule of the identifier that failed.
        error: IdError,
        /// The likely cause, when one can be guessed.
        hint: Option<Hint>,
    },
    /// A fixed-length field is shorter than its length, cut by a GS separator or the end of data.
    CutShort {
        /// Characters present.
        len: usize,
        /// Characters required.
        required: usize,
        /// Whether a GS separator cut it (otherwise the data ended).
        by_separator: bool,
    },
    /// A mandatory element is absent.
    Missing {
        /// Where its AI or DI shows up inside another field, if it does.
        swallowed: Option<Swallowed>,
    },
    /// The element appears twice with different values.
    Conflict {
        /// The value it had the first time.
        first: String,
    },
    /// A second element of a kind a pack has only one of (product code, reimbursement number).
    OneOnly {
        /// The element of that kind seen first.
        other: Element,
    },
    /// An AI that a pack's code does not carry.
    UnknownAi {
        /// The AI as read, escaped.
        ai: String,
        /// Its position in the scan, in characters from 1.
        position: usize,
    },
    /// A data identifier that a format 06 pack code does not carry.
    UnknownDi {
        /// The DI as read, escaped.
        di: String,
        /// Its position in the scan, in characters from 1.
        position: usize,
    },
    /// The structure of the scan is broken; the message says what and where.
    Syntax(String),
}

/// Why a scan was refused: the element concerned and the rule it breaks.
///
/// Its `Display` is one line, e.g. `AI 17 (expiry) '271301': month 13 is not 01-12`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(self))]
pub struct ScanError {
    /// The element the error is about.
    pub element: Element,
    /// The offending value, escaped for display (GS as `<GS>`, bytes that are not UTF-8 as
    /// `\xNN`) and cut after 60 characters; `None` when no single value is at fault.
    pub value: Option<String>,
    /// The rule broken.
    pub rule: Rule,
}

impl ScanError {
    /// Whether the error is a wrong check digit, which the verification system reports as a
    /// format error of the product code rather than as a broken request.
    pub fn is_check_digit(&self) -> bool {
        matches!(self.rule, Rule::Invalid { error: IdError::CheckDigit { .. }, .. })
    }

    fn new(element: Element, value: Option<String>, rule: Rule) -> ScanError {
        ScanError { element, value, rule }
    }

    fn syntax(element: Element, message: String) -> ScanError {
        ScanError::new(element, None, Rule::Syntax(message))
    }
}

/// Renders a [`ScanError`] as one line: the element, the value if any, then the rule.
fn render(e: &ScanError) -> String {
    let mut s = e.element.to_string();
    if let Some(v) = &e.value {
        s.push_str(&format!(" '{v}'"));
    }
    let rule = match &e.rule {
        Rule::Empty { after: None } => ": is empty".to_owned(),
        Rule::Empty { after: Some(prefix) } => format!(": has no data after '{prefix}'"),
        Rule::Invalid { error, hint: None } => format!(": {error}"),
        Rule::Invalid { error, hint: Some(hint) } => format!(": {error}; {hint}"),
        Rule::CutShort { len, required, by_separator: true } => format!(
            ": has {len} character{} before a GS separator, {required} are required (a fixed-length field \
             takes no separator)",
            plural(*len)
        ),
        Rule::CutShort { len, required, by_separator: false } => format!(
            ": has {len} character{} where the data ends, {required} are required; the scan looks cut \
             short, rescan the pack",
            plural(*len)
        ),
        Rule::Missing { swallowed: None } if e.element == Element::Di("9N") => {
            " is missing (and there is no GTIN in DI 8P either)".to_owned()
        }
        Rule::Missing { swallowed: None } => " is missing".to_owned(),
        Rule::Missing { swallowed: Some(sw) } => format!(
            " is missing; the {} '{}' contains '{}': the GS separator before {} was probably lost, rescan \
             the pack",
            sw.by.name().unwrap_or("field"),
            sw.value,
            sw.tail,
            e.element.tag()
        ),
        Rule::Conflict { first } => format!(
            ": the code already carries {} with '{first}'; an element may repeat only with the same value",
            e.element.tag()
        ),
        Rule::OneOnly { other } => {
            let what = match e.element {
                Element::Ai(ai) if Nhrn::is_nhrn_ai(ai) => "reimbursement number",
                _ => "product code",
            };
            format!(": the code also carries {other}; a pack has only one {what}")
        }
        Rule::UnknownAi { ai, position } => format!(
            ": AI {ai} at position {position} is not one a pack's code carries (01, 17, 10, 21, 710-717; \
             tolerated: 11, 13, 15, 16, 22, 30, 240, 91-99)"
        ),
        Rule::UnknownDi { di, position } => format!(
            ": data identifier '{di}' at position {position} is not one a format 06 pack code carries \
             (9N or 8P, 1T, D, S; tolerated: 16D)"
        ),
        Rule::Syntax(message) => format!(": {message}"),
    };
    s.push_str(&rule);
    s
}

/// The plural ending for a count of `n`.
fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The longest value an error message repeats; longer ones are cut with `...`.
const SHOW_MAX: usize = 60;

/// Renders raw scanned bytes for a message: printable characters as they are, control
/// characters by name or escape, bytes that are not UTF-8 as `\xNN`; cut after [`SHOW_MAX`].
fn show(raw: &[u8]) -> String {
    let mut out = String::new();
    let mut count = 0;
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            if count == SHOW_MAX {
                out.push_str("...");
                return out;
            }
            match c {
                '\u{1d}' => out.push_str("<GS>"),
                '\u{1e}' => out.push_str("<RS>"),
                '\u{04}' => out.push_str("<EOT>"),
                c if c.is_control() => out.extend(c.escape_default()),
                c => out.push(c),
            }
            count += 1;
        }
        for b in chunk.invalid() {
            if count == SHOW_MAX {
                out.push_str("...");
                return out;
            }
            out.push_str(&format!("\\x{b:02X}"));
            count += 1;
        }
    }
    out
}

/// Characters that a keyboard wedge set to the wrong layout (typically DE vs US) produces
/// instead of set-82 characters: `-` comes out as `ß` on a DE layout, and so on.
const KEYBOARD_CHARS: [char; 10] = ['ß', 'ä', 'ö', 'ü', 'Ä', 'Ö', 'Ü', '§', '´', '°'];

/// Describes the character that starts at `raw[0]`: the character (escaped, with its U+ code)
/// when the bytes are UTF-8, otherwise the single byte in hex. Also says whether it is a typical
/// keyboard-layout corruption, in UTF-8 or as its Latin-1 byte.
fn describe_at(raw: &[u8]) -> (String, bool) {
    let Some(chunk) = raw.utf8_chunks().next() else {
        return ("nothing".to_owned(), false);
    };
    if let Some(c) = chunk.valid().chars().next() {
        return (describe_char(c), KEYBOARD_CHARS.contains(&c));
    }
    let Some(&b) = chunk.invalid().first() else {
        return ("nothing".to_owned(), false);
    };
    // A lone byte of 0x80-0xFF that is not UTF-8 is most likely Latin-1 from a keyboard wedge.
    let latin1 = char::from(b);
    if KEYBOARD_CHARS.contains(&latin1) {
        (format!("0x{b:02X} (a byte that is not UTF-8; '{latin1}' in Latin-1)"), true)
    } else {
        (format!("0x{b:02X} (a byte that is not UTF-8)"), false)
    }
}

/// The number of characters in `raw` (UTF-8 characters, and bytes that are not UTF-8 one each).
fn char_count(raw: &[u8]) -> usize {
    raw.utf8_chunks().map(|c| c.valid().chars().count() + c.invalid().len()).sum()
}

/// The characters a field may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Charset {
    /// ASCII digits.
    Digits,
    /// ASCII digits and upper-case letters (a PPN).
    DigitsUpper,
    /// GS1 character set 82.
    Cset82,
}

impl Charset {
    fn allows(self, b: u8) -> bool {
        match self {
            Charset::Digits => b.is_ascii_digit(),
            Charset::DigitsUpper => b.is_ascii_digit() || b.is_ascii_uppercase(),
            Charset::Cset82 => is_cset82(b),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Charset::Digits => "digits 0-9",
            Charset::DigitsUpper => "digits and upper-case letters",
            Charset::Cset82 => "GS1 character set 82",
        }
    }
}

/// The length rule of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Len {
    /// Exactly this many characters; the text is how an error names the length.
    Fixed(usize, &'static str),
    /// One to this many characters.
    Var(usize),
}

/// What a field contributes to the identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// The product code, as a GTIN.
    Gtin,
    /// The product code, as a PPN.
    Ppn,
    /// The expiry.
    Expiry,
    /// The batch.
    Batch,
    /// The serial.
    Serial,
    /// A national reimbursement number.
    Nhrn,
    /// A tolerated date (YYMMDD, checked and dropped).
    Date,
    /// A tolerated date written in full (YYYYMMDD, checked and dropped).
    FullDate,
    /// A tolerated field, checked and dropped.
    Other,
}

impl Slot {
    fn is_product_code(self) -> bool {
        matches!(self, Slot::Gtin | Slot::Ppn)
    }
}

/// How one AI or DI is read: which element it is, what it holds, and its syntax.
#[derive(Debug, Clone, Copy)]
struct FieldSpec {
    element: Element,
    name: &'static str,
    slot: Slot,
    charset: Charset,
    len: Len,
}

/// Checks that every byte of `raw` is in `set` and returns it as text. `context` starts where
/// `raw` starts and may run further; it lets a character cut off at the end of `raw` be
/// described whole.
fn check_charset<'a>(spec: &FieldSpec, raw: &'a [u8], context: &[u8]) -> Result<&'a str, ScanError> {
    if let Some(i) = raw.iter().position(|&b| !spec.charset.allows(b)) {
        let (found, keyboard) = describe_at(context.get(i..).unwrap_or_default());
        let error = IdError::BadCharacter {
            found,
            position: char_count(raw.get(..i).unwrap_or_default()) + 1,
            allowed: spec.charset.describe(),
        };
        let hint = keyboard.then_some(Hint::KeyboardLayout);
        return Err(ScanError::new(spec.element, Some(show(raw)), Rule::Invalid { error, hint }));
    }
    // Every byte allowed is ASCII, so the conversion cannot fail; no panic either way.
    std::str::from_utf8(raw)
        .map_err(|_| ScanError::new(spec.element, Some(show(raw)), Rule::Syntax("is not text".to_owned())))
}

/// A field's validated value.
#[derive(Debug, Clone)]
enum Value {
    Code(ProductCode),
    Expiry(Expiry),
    Batch(Batch),
    Serial(Serial),
    Nhrn(Nhrn),
    Other,
}

/// A field read and validated.
#[derive(Debug, Clone)]
struct Entry {
    spec: FieldSpec,
    /// The value as text, exactly as scanned (after percent-decoding or unescaping).
    text: String,
    /// The text duplicates are compared by: the 14-digit code for a GTIN, the text otherwise.
    key: String,
    value: Value,
    /// Whether the field ran to the end of the data instead of ending with a GS separator.
    ran_to_end: bool,
}

/// Collects the fields of one scan, refusing conflicts as they come, and builds the result.
struct Assembly {
    form: Form,
    today: Date,
    entries: Vec<Entry>,
}

impl Assembly {
    fn new(form: Form, today: Date) -> Assembly {
        Assembly { form, today, entries: Vec::new() }
    }

    /// Validates one field and adds it. `context` is as for [`check_charset`].
    fn push(
        &mut self,
        spec: &FieldSpec,
        raw: &[u8],
        context: &[u8],
        ran_to_end: bool,
    ) -> Result<(), ScanError> {
        let text = check_charset(spec, raw, context)?;
        let shown = (!raw.is_empty()).then(|| show(raw));
        let invalid = |error: IdError, hint: Option<Hint>| {
            ScanError::new(spec.element, shown.clone(), Rule::Invalid { error, hint })
        };
        let len = text.len();
        if len == 0 {
            return Err(invalid(IdError::Empty, None));
        }
        match spec.len {
            Len::Var(max) if len > max => {
                let hint = self.form.gs_separated().then_some(Hint::LostSeparator);
                return Err(invalid(IdError::TooLong { len, max }, hint));
            }
            // A Digital Link may carry a GTIN-8, -12 or -13; ProductCode::gtin pads it.
            Len::Fixed(_, _) if spec.slot == Slot::Gtin && self.form == Form::DigitalLink => {}
            Len::Fixed(n, expected) if len != n => {
                return Err(invalid(IdError::WrongLength { len, expected }, None));
            }
            _ => {}
        }
        let value = match spec.slot {
            Slot::Gtin => Value::Code(ProductCode::gtin(text).map_err(|e| invalid(e, None))?),
            Slot::Ppn => Value::Code(ProductCode::ppn(text).map_err(|e| invalid(e, None))?),
            Slot::Expiry => Value::Expiry(Expiry::parse(text, self.today).map_err(|e| invalid(e, None))?),
            Slot::Date => {
                Expiry::parse(text, self.today).map_err(|e| invalid(e, None))?;
                Value::Other
            }
            Slot::FullDate => {
                check_full_date(text).map_err(|e| invalid(e, None))?;
                Value::Other
            }
            Slot::Batch => Value::Batch(Batch::new(text).map_err(|e| invalid(e, None))?),
            Slot::Serial => Value::Serial(Serial::new(text).map_err(|e| invalid(e, None))?),
            Slot::Nhrn => {
                let ai = match spec.element {
                    Element::Ai(ai) => ai,
                    _ => 0,
                };
                Value::Nhrn(Nhrn::new(ai, text).map_err(|e| invalid(e, None))?)
            }
            Slot::Other => Value::Other,
        };
        let key = match &value {
            Value::Code(code) => code.as_str().to_owned(),
            _ => text.to_owned(),
        };
        for seen in &self.entries {
            if seen.spec.element == spec.element {
                if seen.key == key {
                    // The same element with the same value twice is harmless: keep the first.
                    return Ok(());
                }
                return Err(ScanError::new(
                    spec.element,
                    Some(show(raw)),
                    Rule::Conflict { first: seen.text.clone() },
                ));
            }
            let same_kind = (seen.spec.slot.is_product_code() && spec.slot.is_product_code())
                || (seen.spec.slot == Slot::Nhrn && spec.slot == Slot::Nhrn);
            if same_kind {
                return Err(ScanError::new(
                    spec.element,
                    Some(show(raw)),
                    Rule::OneOnly { other: seen.spec.element },
                ));
            }
        }
        self.entries.push(Entry { spec: *spec, text: text.to_owned(), key, value, ran_to_end });
        Ok(())
    }

    /// The mandatory elements of this form, each with the slots that satisfy it.
    fn mandatory(&self) -> [(FieldSpec, &'static [Slot]); 4] {
        let get = |element: Element| {
            let spec = match element {
                Element::Di(di) => iso15434::by_di(di).copied(),
                Element::Ai(ai) => gs1::by_number(ai).map(|a| a.field),
                _ => None,
            };
            // The tables hold every mandatory element; the fallback only keeps this panic-free.
            spec.unwrap_or(FieldSpec {
                element,
                name: "",
                slot: Slot::Other,
                charset: Charset::Cset82,
                len: Len::Var(0),
            })
        };
        if self.form == Form::Iso15434Format06 {
            [
                (get(Element::Di("9N")), &[Slot::Ppn, Slot::Gtin]),
                (get(Element::Di("D")), &[Slot::Expiry]),
                (get(Element::Di("1T")), &[Slot::Batch]),
                (get(Element::Di("S")), &[Slot::Serial]),
            ]
        } else {
            [
                (get(Element::Ai(1)), &[Slot::Gtin]),
                (get(Element::Ai(17)), &[Slot::Expiry]),
                (get(Element::Ai(10)), &[Slot::Batch]),
                (get(Element::Ai(21)), &[Slot::Serial]),
            ]
        }
    }

    /// Looks for a missing element inside the variable-length fields read: its AI or DI after
    /// the first character, followed by a value that would be valid for it.
    fn find_swallowed(&self, missing: &FieldSpec) -> Option<Swallowed> {
        let prefix = missing.element.prefix();
        for entry in self.entries.iter().filter(|e| matches!(e.spec.len, Len::Var(_))) {
            let text = entry.text.as_str();
            for (at, _) in text.match_indices(&prefix).filter(|&(at, _)| at >= 1) {
                let tail = text.get(at..).unwrap_or_default();
                let value = tail.get(prefix.len()..).unwrap_or_default();
                if plausible(missing.slot, value, self.today) {
                    return Some(Swallowed {
                        by: entry.spec.element,
                        value: text.to_owned(),
                        tail: tail.to_owned(),
                    });
                }
            }
        }
        None
    }

    /// Checks that every mandatory element is there and builds the scan with its warnings.
    fn finish(self) -> Result<Scan, ScanError> {
        let mut missing: Vec<(FieldSpec, Option<Swallowed>)> = Vec::new();
        for (spec, slots) in self.mandatory() {
            if !self.entries.iter().any(|e| slots.contains(&e.spec.slot)) {
                missing.push((spec, self.find_swallowed(&spec)));
            }
        }
        // When several are missing, the one found swallowed by another field explains the most.
        let pick = missing.iter().position(|(_, sw)| sw.is_some()).unwrap_or(0);
        if let Some((spec, swallowed)) = missing.into_iter().nth(pick) {
            return Err(ScanError::new(spec.element, None, Rule::Missing { swallowed }));
        }
        let (mut code, mut expiry, mut batch, mut serial, mut nhrn) = (None, None, None, None, None);
        for entry in &self.entries {
            match &entry.value {
                Value::Code(c) => code = Some(c.clone()),
                Value::Expiry(e) => expiry = Some(*e),
                Value::Batch(b) => batch = Some(b.clone()),
                Value::Serial(s) => serial = Some(s.clone()),
                Value::Nhrn(n) => nhrn = Some(n.clone()),
                Value::Other => {}
            }
        }
        let (Some(product_code), Some(expiry), Some(batch), Some(serial)) = (code, expiry, batch, serial)
        else {
            // Unreachable after the check above; an error rather than a panic all the same.
            return Err(ScanError::syntax(Element::Input, "lacks a mandatory element".to_owned()));
        };
        let warnings = self.warnings();
        let id = PackIdentifier { product_code, serial, batch, expiry, nhrn };
        Ok(Scan { id, form: self.form, warnings })
    }

    /// The warnings of the module documentation, in a fixed order.
    fn warnings(&self) -> Vec<ScanWarning> {
        let mut warnings = Vec::new();
        let with_ai_separators = matches!(self.form, Form::ElementString | Form::Iso15434Format05);
        for entry in &self.entries {
            let (what, text) = match entry.value {
                Value::Batch(_) => ("batch", entry.text.as_str()),
                Value::Serial(_) => ("serial", entry.text.as_str()),
                _ => continue,
            };
            if corruption::lower_case_only(text) {
                warnings.push(ScanWarning {
                    code: WarningCode::LowercaseField,
                    message: format!(
                        "the {what} '{text}' has lower-case letters and no upper-case ones, as Caps Lock or \
                         a keyboard setting can cause: check it against the pack and rescan if in doubt"
                    ),
                });
            }
        }
        if !with_ai_separators {
            return warnings;
        }
        for entry in &self.entries {
            let text = entry.text.as_str();
            match entry.value {
                Value::Batch(_) => {
                    let hit = text.match_indices("21").find(|&(at, _)| text.len() >= at + 2 + 6);
                    if let Some((at, _)) = hit {
                        let tail = text.get(at..).unwrap_or_default();
                        warnings.push(ScanWarning {
                            code: WarningCode::BatchMayContainSerial,
                            message: format!(
                                "the batch '{text}' contains '{tail}', which could be a serial (AI 21) \
                                 swallowed after a lost GS separator: check the batch printed on the pack \
                                 and rescan if in doubt"
                            ),
                        });
                    }
                }
                Value::Serial(_) if entry.ran_to_end => {
                    let hit = text.match_indices("10").chain(text.match_indices("17")).find(|&(at, ai)| {
                        let value = text.get(at + 2..).unwrap_or_default();
                        at >= 1
                            && if ai == "10" {
                                plausible(Slot::Batch, value, self.today)
                            } else {
                                plausible(Slot::Expiry, value, self.today)
                            }
                    });
                    if let Some((at, ai)) = hit {
                        let tail = text.get(at..).unwrap_or_default();
                        warnings.push(ScanWarning {
                            code: WarningCode::SerialMayContainAi,
                            message: format!(
                                "the serial '{text}' runs to the end of the data and contains '{tail}', \
                                 which could be AI {ai} swallowed after a lost GS separator: check the \
                                 serial printed on the pack and rescan if in doubt"
                            ),
                        });
                    }
                }
                _ => {}
            }
        }
        warnings
    }
}

/// Checks a date written `YYYYMMDD` (eight digits, checked by the field's length and character
/// set before): a month 01-12 and a day that exists in it.
fn check_full_date(text: &str) -> Result<(), IdError> {
    let number = |range: std::ops::Range<usize>| text.get(range).and_then(|t| t.parse::<u16>().ok());
    let (Some(year), Some(month), Some(day)) = (number(0..4), number(4..6), number(6..8)) else {
        return Err(IdError::WrongLength { len: text.len(), expected: "8 (YYYYMMDD)" });
    };
    let (year, month) = (i32::from(year), u8::try_from(month).unwrap_or(u8::MAX));
    if !(1..=12).contains(&month) {
        return Err(IdError::BadDate(format!("month {month:02} is not 01-12")));
    }
    match u8::try_from(day).ok().and_then(|d| Date::new(year, month, d)) {
        Some(_) => Ok(()),
        None => Err(IdError::BadDate(format!(
            "day {day:02} does not exist in {year:04}-{month:02} (which has {} days)",
            crate::time::days_in_month(year, month)
        ))),
    }
}

/// Whether `value` (what follows an AI or DI inside another field) would be a valid start of a
/// field for `slot`: a product code or expiry must be complete and valid, a batch or serial needs
/// one to twenty characters.
fn plausible(slot: Slot, value: &str, today: Date) -> bool {
    match slot {
        Slot::Gtin => value.get(..14).is_some_and(|v| ProductCode::gtin(v).is_ok()),
        Slot::Ppn => value.get(..12).is_some_and(|v| ProductCode::ppn(v).is_ok()),
        Slot::Expiry | Slot::Date => value.get(..6).is_some_and(|v| Expiry::parse(v, today).is_ok()),
        Slot::Batch | Slot::Serial | Slot::Nhrn => (1..=20).contains(&value.len()),
        Slot::FullDate | Slot::Other => false,
    }
}

/// The position, in characters from 1, of byte `offset` of `input`.
fn position(input: &[u8], offset: usize) -> usize {
    char_count(input.get(..offset).unwrap_or(input)) + 1
}

/// Removes one trailing line end: `\r\n`, `\n` or `\r`.
fn strip_line_end(input: &[u8]) -> &[u8] {
    input
        .strip_suffix(b"\r\n")
        .or_else(|| input.strip_suffix(b"\n"))
        .or_else(|| input.strip_suffix(b"\r"))
        .unwrap_or(input)
}

/// Reads a pack's code as a scanner delivers it. `today` resolves the century of two-digit
/// years (GS1 sliding window) and nothing else: an expired pack still parses.
///
/// See the module documentation for the forms, the AIs and the warnings.
pub fn parse(input: &[u8], today: Date) -> Result<Scan, ScanError> {
    let input = strip_line_end(input);
    if input.is_empty() {
        return Err(ScanError::new(Element::Input, None, Rule::Empty { after: None }));
    }
    // An AIM symbology identifier: `]`, a letter naming the symbology, a modifier character.
    let aim = match input {
        [b']', code, modifier, ..] if code.is_ascii_alphabetic() && modifier.is_ascii_alphanumeric() => {
            input.get(..3)
        }
        [b']', ..] => {
            return Err(ScanError::syntax(
                Element::Input,
                format!(
                    "starts with ']' but '{}' is not a symbology identifier (such as ]d2)",
                    show(input.get(..3).unwrap_or(input))
                ),
            ));
        }
        _ => None,
    };
    let start = aim.map_or(0, <[u8]>::len);
    let body = input.get(start..).unwrap_or_default();
    if body.is_empty() {
        return Err(ScanError::new(Element::Input, None, Rule::Empty { after: aim.map(show) }));
    }
    let lower: Vec<u8> = body.iter().take(8).map(u8::to_ascii_lowercase).collect();
    if body.starts_with(b"[)>") {
        iso15434::parse(input, start, today)
    } else if lower.starts_with(b"http://") || lower.starts_with(b"https://") {
        digital_link::parse(input, start, today)
    } else if body.starts_with(b"(") {
        bracket::parse(input, start, today)
    } else {
        // A pack's code is a two-dimensional symbol (DR Art 5: a Data Matrix; GS1 QR carries the
        // same element string). Linear symbols with GS1 data, such as GS1-128 (`]C1`) or GS1
        // DataBar (`]e0`), are found on cases, pallets and shelf labels, never as a pack's unique
        // identifier: a scan that announces one read the wrong symbol, so it is refused even where
        // GS1's own parsers would read its data.
        if let Some(aim) = aim
            && aim != b"]d2"
            && aim != b"]Q3"
        {
            return Err(ScanError::syntax(
                Element::Input,
                format!(
                    "symbology identifier '{}' does not announce GS1 data (]d2 for GS1 DataMatrix, ]Q3 for \
                     GS1 QR); check the scanner's settings and the code",
                    show(aim)
                ),
            ));
        }
        // Some scanners transmit the FNC1 that opens a GS1 symbol as a GS.
        let start = if body.first() == Some(&GS) { start + 1 } else { start };
        if start == input.len() {
            return Err(ScanError::new(Element::Input, None, Rule::Empty { after: Some(show(input)) }));
        }
        let mut asm = Assembly::new(Form::ElementString, today);
        gs1::read_element_string(input, start, input.len(), &mut asm)?;
        asm.finish()
    }
}
