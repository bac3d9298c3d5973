//! GS1 application identifiers: the table of AIs a pack's code may carry, and the reader of GS1
//! element strings, raw as a DataMatrix delivers them or inside an ISO/IEC 15434 format 05 envelope.

use super::{
    Assembly, Charset, Element, FieldSpec, Form, GS, Hint, Len, Rule, ScanError, Slot, check_charset,
    describe_at, position, show,
};

/// One AI of the table: the digits that introduce it and how its field is read.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ai {
    /// The AI's digits as they appear in the data, e.g. `01` or `710`.
    pub(super) code: &'static str,
    /// How the field is read.
    pub(super) field: FieldSpec,
}

const fn ai(
    code: &'static str,
    number: u16,
    name: &'static str,
    slot: Slot,
    charset: Charset,
    len: Len,
) -> Ai {
    Ai { code, field: FieldSpec { element: Element::Ai(number), name, slot, charset, len } }
}

const DATE: Len = Len::Fixed(6, "6 (YYMMDD)");
const ID20: Len = Len::Var(20);

/// Every AI a pack's code may carry. No AI here is a prefix of another (GS1 AIs never are), so
/// the first match on the data is the only one.
static AIS: [Ai; 28] = [
    ai("01", 1, "product code", Slot::Gtin, Charset::Digits, Len::Fixed(14, "14")),
    ai("10", 10, "batch", Slot::Batch, Charset::Cset82, ID20),
    ai("11", 11, "production date", Slot::Date, Charset::Digits, DATE),
    ai("13", 13, "packaging date", Slot::Date, Charset::Digits, DATE),
    ai("15", 15, "best before date", Slot::Date, Charset::Digits, DATE),
    ai("16", 16, "sell by date", Slot::Date, Charset::Digits, DATE),
    ai("17", 17, "expiry", Slot::Expiry, Charset::Digits, DATE),
    ai("21", 21, "serial", Slot::Serial, Charset::Cset82, ID20),
    ai("22", 22, "consumer product variant", Slot::Other, Charset::Cset82, ID20),
    ai("240", 240, "additional product identification", Slot::Other, Charset::Cset82, Len::Var(30)),
    ai("30", 30, "count of items", Slot::Other, Charset::Digits, Len::Var(8)),
    ai("710", 710, "reimbursement number DE", Slot::Nhrn, Charset::Cset82, ID20),
    ai("711", 711, "reimbursement number FR", Slot::Nhrn, Charset::Cset82, ID20),
    ai("712", 712, "reimbursement number ES", Slot::Nhrn, Charset::Cset82, ID20),
    ai("713", 713, "reimbursement number BR", Slot::Nhrn, Charset::Cset82, ID20),
    ai("714", 714, "reimbursement number PT", Slot::Nhrn, Charset::Cset82, ID20),
    ai("715", 715, "reimbursement number US", Slot::Nhrn, Charset::Cset82, ID20),
    ai("716", 716, "reimbursement number IT", Slot::Nhrn, Charset::Cset82, ID20),
    ai("717", 717, "reimbursement number CR", Slot::Nhrn, Charset::Cset82, ID20),
    ai("91", 91, "company internal information", Slot::Other, Charset::Cset82, Len::Var(90)),
    ai("92", 92, "company internal information", Slot::Other, Charset::Cset82, Len::Var(90)),
    ai("93", 93, "company internal information", Slot::Other, Charset::Cset82, Len::Var(90)),
    ai("94", 94, "company internal information", Slot::Other, Charset::Cset82, Len::Var(90)),
    ai("95", 95, "company internal information", Slot::Other, Charset::Cset82, Len::Var(90)),
    ai("96", 96, "company internal information", Slot::Other, Charset::Cset82, Len::Var(90)),
    ai("97", 97, "company internal information", Slot::Other, Charset::Cset82, Len::Var(90)),
    ai("98", 98, "company internal information", Slot::Other, Charset::Cset82, Len::Var(90)),
    ai("99", 99, "company internal information", Slot::Other, Charset::Cset82, Len::Var(90)),
];

/// The AI with this number, if a pack's code may carry it.
pub(super) fn by_number(number: u16) -> Option<&'static Ai> {
    AIS.iter().find(|a| a.field.element == Element::Ai(number))
}

/// The AI whose digits are exactly `code`, if a pack's code may carry it.
pub(super) fn by_code(code: &[u8]) -> Option<&'static Ai> {
    AIS.iter().find(|a| a.code.as_bytes() == code)
}

/// How many digits an AI starting with these two digits has, by the GS1 table of AI prefixes.
/// Used only to name an AI that a pack's code does not carry.
fn ai_length(first_two: &[u8]) -> usize {
    let n = match first_two {
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => (a - b'0') * 10 + (b - b'0'),
        _ => return 2,
    };
    match n {
        23..=29 | 40..=42 | 71 => 3,
        31..=36 | 39 | 43 | 70 | 72..=82 => 4,
        _ => 2,
    }
}

/// Reads the AI at the start of `rest`, which is at byte `offset` of `input`. `first` says
/// whether this is where the element string starts, so that a scan in no known form is named so.
fn read_ai(input: &[u8], offset: usize, rest: &[u8], first: bool) -> Result<&'static Ai, ScanError> {
    if let Some(ai) = AIS.iter().find(|a| rest.starts_with(a.code.as_bytes())) {
        return Ok(ai);
    }
    let pos = position(input, offset);
    if !rest.first().is_some_and(u8::is_ascii_digit) {
        let (found, keyboard) = describe_at(rest);
        let mut message = format!("expected an AI (digits) at position {pos}, found {found}");
        if first {
            message.push_str(
                "; the scan is not a GS1 element string, an ISO/IEC 15434 envelope ([)>...), a bracket form \
                 ((01)...) or a GS1 Digital Link (https://...)",
            );
        }
        if keyboard {
            message.push_str(&format!("; {}", Hint::KeyboardLayout));
        }
        return Err(ScanError::syntax(Element::Input, message));
    }
    let want = ai_length(rest.get(..2).unwrap_or(rest));
    let digits = rest.iter().take(want).take_while(|b| b.is_ascii_digit()).count();
    if digits < want && digits == rest.len() {
        return Err(ScanError::syntax(
            Element::Input,
            format!("the data ends inside an AI at position {pos} ('{}'); rescan the pack", show(rest)),
        ));
    }
    Err(ScanError::new(
        Element::Input,
        None,
        Rule::UnknownAi { ai: show(rest.get(..want).unwrap_or(rest)), position: pos },
    ))
}

/// Reads the element string in `input[start..end]` into `asm`.
///
/// Fixed-length fields (01, 17 and the tolerated dates) take exactly their length; a GS after
/// them is redundant but allowed. Variable-length fields run to the next GS or to the end. A GS
/// anywhere else (two in a row, or one before the first AI) is refused, as it would be in the
/// symbol.
pub(super) fn read_element_string(
    input: &[u8],
    start: usize,
    end: usize,
    asm: &mut Assembly,
) -> Result<(), ScanError> {
    let data = input.get(start..end).unwrap_or_default();
    let mut i = 0;
    let mut separator_allowed = false;
    while let Some(&b) = data.get(i) {
        if b == GS {
            if separator_allowed {
                separator_allowed = false;
                i += 1;
                continue;
            }
            return Err(ScanError::syntax(
                Element::Input,
                format!(
                    "unexpected GS separator at position {}: an AI must come before it",
                    position(input, start + i)
                ),
            ));
        }
        let rest = data.get(i..).unwrap_or_default();
        let ai = read_ai(input, start + i, rest, i == 0 && asm.form == Form::ElementString)?;
        i += ai.code.len();
        let rest = data.get(i..).unwrap_or_default();
        match ai.field.len {
            Len::Fixed(n, _) => {
                let window = rest.get(..n).unwrap_or(rest);
                let cut = window.iter().position(|&b| b == GS);
                let value = window.get(..cut.unwrap_or(window.len())).unwrap_or(window);
                check_charset(&ai.field, value, rest)?;
                if value.len() < n {
                    return Err(ScanError::new(
                        ai.field.element,
                        (!value.is_empty()).then(|| show(value)),
                        Rule::CutShort { len: value.len(), required: n, by_separator: cut.is_some() },
                    ));
                }
                asm.push(&ai.field, value, rest, value.len() == rest.len())?;
                i += n;
                separator_allowed = true;
            }
            Len::Var(_) => {
                let gs = rest.iter().position(|&b| b == GS);
                let value = rest.get(..gs.unwrap_or(rest.len())).unwrap_or(rest);
                asm.push(&ai.field, value, value, gs.is_none())?;
                i += value.len() + usize::from(gs.is_some());
                separator_allowed = false;
            }
        }
    }
    Ok(())
}
