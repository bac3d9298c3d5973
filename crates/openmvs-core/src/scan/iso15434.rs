//! ISO/IEC 15434 envelopes: `[)>` RS, a format header, the data, RS EOT. Format 05 carries a GS1
//! element string; format 06 carries ASC MH10 data identifiers, as IFA codes for the German PPN do.

use super::{
    Assembly, Charset, EOT, Element, FieldSpec, Form, GS, Len, RS, Rule, Scan, ScanError, Slot, describe_at,
    gs1, position, show,
};
use crate::time::Date;

/// The data identifiers a format 06 pack code carries. A GTIN in `8P` is accepted in place of a
/// PPN in `9N`; no NHRN can be carried.
///
/// **Decision:** `16D`, the production date (`YYYYMMDD`), is tolerated: its syntax is checked and
/// its value dropped, as AI 11 is in a GS1 code. IFA's PPN-Code specification names it among the
/// optional data elements of a retail pack's code, so genuine German packs carry it; refusing
/// it would refuse those packs, and it tells nothing the verification needs.
static DIS: [FieldSpec; 6] = [
    FieldSpec {
        element: Element::Di("9N"),
        name: "PPN",
        slot: Slot::Ppn,
        charset: Charset::DigitsUpper,
        len: Len::Fixed(12, "12"),
    },
    FieldSpec {
        element: Element::Di("8P"),
        name: "GTIN",
        slot: Slot::Gtin,
        charset: Charset::Digits,
        len: Len::Fixed(14, "14"),
    },
    FieldSpec {
        element: Element::Di("1T"),
        name: "batch",
        slot: Slot::Batch,
        charset: Charset::Cset82,
        len: Len::Var(20),
    },
    FieldSpec {
        element: Element::Di("D"),
        name: "expiry",
        slot: Slot::Expiry,
        charset: Charset::Digits,
        len: Len::Fixed(6, "6 (YYMMDD)"),
    },
    FieldSpec {
        element: Element::Di("S"),
        name: "serial",
        slot: Slot::Serial,
        charset: Charset::Cset82,
        len: Len::Var(20),
    },
    FieldSpec {
        element: Element::Di("16D"),
        name: "production date",
        slot: Slot::FullDate,
        charset: Charset::Digits,
        len: Len::Fixed(8, "8 (YYYYMMDD)"),
    },
];

/// The data identifier `di`, if a format 06 pack code carries it.
pub(super) fn by_di(di: &str) -> Option<&'static FieldSpec> {
    DIS.iter().find(|d| matches!(d.element, Element::Di(x) if x == di))
}

/// What stands at `rest[0]`, for a message: the character, or "the end of the data".
fn found(rest: &[u8]) -> String {
    if rest.is_empty() { "the end of the data".to_owned() } else { describe_at(rest).0 }
}

/// Reads the envelope that starts at byte `start` of `input` (with `[)>`).
pub(super) fn parse(input: &[u8], start: usize, today: Date) -> Result<Scan, ScanError> {
    let data = input.get(start..).unwrap_or_default();
    let at = |offset: usize| position(input, start + offset);
    let envelope_error = |message: String| ScanError::syntax(Element::Envelope, message);
    if data.get(3) != Some(&RS) {
        return Err(envelope_error(format!(
            "'[)>' at position {} must be followed by RS (ASCII 30), found {}",
            at(0),
            found(data.get(3..).unwrap_or_default())
        )));
    }
    let form = match data.get(4..6) {
        Some(b"05") => Form::Iso15434Format05,
        Some(b"06") => Form::Iso15434Format06,
        Some(other) => {
            return Err(envelope_error(format!(
                "format '{}' at position {} is not 05 (GS1 AIs) or 06 (data identifiers)",
                show(other),
                at(4)
            )));
        }
        None => {
            return Err(envelope_error(format!(
                "the data ends at position {} before the format number (05 or 06)",
                at(data.len())
            )));
        }
    };
    if data.get(6) != Some(&GS) {
        return Err(envelope_error(format!(
            "the format number at position {} must be followed by GS (ASCII 29), found {}",
            at(4),
            found(data.get(6..).unwrap_or_default())
        )));
    }
    let body = data.get(7..).unwrap_or_default();
    let Some(content) = body.strip_suffix(&[RS, EOT]) else {
        return Err(envelope_error(
            "does not end with its trailer RS EOT (ASCII 30, 4): the scan looks cut short, or the scanner \
             drops control characters; rescan the pack"
                .to_owned(),
        ));
    };
    if let Some(rs) = content.iter().position(|&b| b == RS) {
        return Err(envelope_error(format!(
            "has an RS (ASCII 30) at position {}: a pack code is one format (05 or 06) per envelope",
            at(7 + rs)
        )));
    }
    if content.is_empty() {
        return Err(ScanError::new(
            Element::Envelope,
            None,
            Rule::Empty { after: Some(show(data.get(..7).unwrap_or_default())) },
        ));
    }
    let mut asm = Assembly::new(form, today);
    let (content_start, content_end) = (start + 7, start + 7 + content.len());
    if form == Form::Iso15434Format05 {
        gs1::read_element_string(input, content_start, content_end, &mut asm)?;
    } else {
        read_format06(input, content_start, content_end, &mut asm)?;
    }
    asm.finish()
}

/// Reads the data elements of a format 06 envelope, `input[start..end]`, into `asm`. Each
/// element is a data identifier (up to three digits and an upper-case letter) and its value; GS
/// separates them. A GS just before the trailer is tolerated, an empty element elsewhere is not.
fn read_format06(input: &[u8], start: usize, end: usize, asm: &mut Assembly) -> Result<(), ScanError> {
    let data = input.get(start..end).unwrap_or_default();
    let parts: Vec<&[u8]> = data.split(|&b| b == GS).collect();
    let last = parts.len().saturating_sub(1);
    let mut offset = start;
    for (k, part) in parts.iter().enumerate() {
        let here = offset;
        offset += part.len() + 1;
        if part.is_empty() {
            if k == last && k > 0 {
                continue;
            }
            return Err(ScanError::syntax(
                Element::Envelope,
                format!("has an empty data element at position {} (two GS in a row)", position(input, here)),
            ));
        }
        let digits = part.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > 3 || !part.get(digits).is_some_and(u8::is_ascii_uppercase) {
            return Err(ScanError::syntax(
                Element::Envelope,
                format!(
                    "the data element '{}' at position {} does not start with a data identifier (up to three \
                     digits and an upper-case letter, such as 1T)",
                    show(part),
                    position(input, here)
                ),
            ));
        }
        let di = part.get(..=digits).unwrap_or_default();
        let Some(spec) = DIS.iter().find(|d| matches!(d.element, Element::Di(x) if x.as_bytes() == di))
        else {
            return Err(ScanError::new(
                Element::Envelope,
                None,
                Rule::UnknownDi { di: show(di), position: position(input, here) },
            ));
        };
        let value = part.get(digits + 1..).unwrap_or_default();
        asm.push(spec, value, value, k == last)?;
    }
    Ok(())
}
