//! GS1 Digital Link URIs:
//! `http(s)://<any-domain>[/<any prefix>]/01/<gtin>[/22/<cpv>][/10/<batch>][/21/<serial>][?17=<YYMMDD>&...]`.
//!
//! The path carries the primary key and its key qualifiers: `/01/<gtin>`, then any of `/22/`,
//! `/10/` and `/21/`, in that order. Every other AI of the table is a data attribute and comes
//! in the query (as `<ai>=<value>`); the same duplicate rules apply as in an element string.
//! Query keys that are not all digits (`linkType` and the like) are ignored, and so is a
//! fragment. Values are percent-decoded (`%2F` is `/`); in the query a `+` is a space. The
//! GTIN may have 8, 12, 13 or 14 digits. The scheme is matched in any case, as QR codes often
//! write URIs in upper case to use their denser alphanumeric mode.
//!
//! Decisions where GS1's Barcode Syntax Engine reads a URI otherwise (each is measured by
//! `openmvs/tests/scan_vectors.rs`):
//!
//! * **The path order is the standard's** (01, then 22, 10, 21), and a key qualifier in the query
//!   or an attribute in the path is refused. The GS1 Digital Link standard fixes this structure
//!   so that one URI names one thing one way; GS1's engine refuses every other order, and a pack
//!   code read here but refused by the line's print check (which runs that engine) would make a
//!   pharmacy and its supplier disagree about the same pack. Nothing is lost: a conforming
//!   generator never writes another order.
//! * **A `+` in the query is a space**, as the standard reads a query (HTML form encoding, which
//!   every resolver and GS1's engine apply): a literal `+` is written `%2B`, and a `+` read as
//!   itself would put a character in the value that the URI's author did not mean. A value whose
//!   `+` becomes a space is then refused, as a space is not in set 82. In the path a `+` is itself.
//! * **GTIN-8, -12 and -13 are read** and padded to 14 digits (GS1's own canonicalisation, which
//!   changes no digit of meaning). Digital Link 1.0 and 1.1 allowed them; GS1's engine still reads
//!   them when asked; refusing would leave a pack printed under the older standard unverifiable
//!   by scan.
//! * **The domain is not checked** beyond being present: it plays no part in the identifier and
//!   is never resolved here, so a zone id in an IPv6 literal (`[fe80::1%25lo]`), which GS1's
//!   engine refuses, is accepted.
//! * **An attribute repeated with the same value** is read once, as in an element string (GS1
//!   General Specifications: a repeated AI must carry the same value); GS1's engine refuses any
//!   repeat in a URI. A repeat carries no second meaning, so refusing it would only refuse a pack.

use super::{Assembly, Element, Form, Hint, Rule, Scan, ScanError, gs1, position, show};
use crate::time::Date;

/// A piece of the scan and its byte offset in the input.
type Piece<'a> = (usize, &'a [u8]);

/// Splits `data`, which starts at byte `offset` of the input, at every `sep`.
fn split(data: &[u8], offset: usize, sep: u8) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut at = offset;
    for part in data.split(|&b| b == sep) {
        out.push((at, part));
        at += part.len() + 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `raw`, reading `+` as a space when it is a query value; on a bad escape,
/// returns the escape as found.
fn percent_decode(raw: &[u8], query: bool) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b != b'%' {
            out.push(if query && b == b'+' { b' ' } else { b });
            i += 1;
            continue;
        }
        match raw.get(i + 1..i + 3) {
            Some(&[hi, lo]) if hex(hi).is_some() && hex(lo).is_some() => {
                out.push(hex(hi).unwrap_or(0) * 16 + hex(lo).unwrap_or(0));
                i += 3;
            }
            _ => return Err(show(raw.get(i..(i + 3).min(raw.len())).unwrap_or_default())),
        }
    }
    Ok(out)
}

/// The key qualifiers of a GTIN, in the order a Digital Link path carries them.
const QUALIFIERS: [&[u8]; 3] = [b"22", b"10", b"21"];

/// The AI of `key`, if the table has it; otherwise the error naming it.
fn known(input: &[u8], key: Piece<'_>) -> Result<&'static gs1::Ai, ScanError> {
    gs1::by_code(key.1).ok_or_else(|| {
        ScanError::new(
            Element::Input,
            None,
            Rule::UnknownAi { ai: show(key.1), position: position(input, key.0) },
        )
    })
}

/// Reads one AI and its raw value from the path or the query (`query`) into `asm`.
fn take(ai: &'static gs1::Ai, value: &[u8], query: bool, asm: &mut Assembly) -> Result<(), ScanError> {
    let decoded = percent_decode(value, query).map_err(|escape| {
        ScanError::new(
            ai.field.element,
            Some(show(value)),
            Rule::Syntax(format!(
                "'{escape}' is not a percent escape ('%' must be followed by two hex digits; a '%' itself is \
                 written %25)"
            )),
        )
    })?;
    asm.push(&ai.field, &decoded, &decoded, false).map_err(|mut e| {
        if let Rule::Invalid { hint: hint @ None, .. } = &mut e.rule
            && query
            && value.contains(&b'+')
        {
            *hint = Some(Hint::PlusInQuery);
        }
        e
    })
}

/// Reads the Digital Link URI that starts at byte `start` of `input`.
pub(super) fn parse(input: &[u8], start: usize, today: Date) -> Result<Scan, ScanError> {
    let data = input.get(start..).unwrap_or_default();
    let syntax = |message: String| ScanError::syntax(Element::Input, message);
    let scheme_len = if data.get(4).is_some_and(|b| b.eq_ignore_ascii_case(&b's')) { 8 } else { 7 };
    let after_scheme = data.get(scheme_len..).unwrap_or_default();
    let authority_len =
        after_scheme.iter().position(|&b| matches!(b, b'/' | b'?' | b'#')).unwrap_or(after_scheme.len());
    if authority_len == 0 {
        return Err(syntax(format!(
            "the URI has no domain after '{}'",
            show(data.get(..scheme_len).unwrap_or_default())
        )));
    }
    let path_start = scheme_len + authority_len;
    let rest = data.get(path_start..).unwrap_or_default();
    let path_len = rest.iter().position(|&b| b == b'?' || b == b'#').unwrap_or(rest.len());
    let path = rest.get(..path_len).unwrap_or_default();
    let query: &[u8] = match rest.get(path_len) {
        Some(b'?') => {
            let q = rest.get(path_len + 1..).unwrap_or_default();
            q.get(..q.iter().position(|&b| b == b'#').unwrap_or(q.len())).unwrap_or_default()
        }
        _ => &[],
    };
    let segments = match path.split_first() {
        Some((b'/', segments)) => split(segments, start + path_start + 1, b'/'),
        _ => Vec::new(),
    };
    // The GS1 part is the first `01` from which the rest of the path pairs up into AIs and values;
    // whatever comes before it is the resolver's own prefix.
    let is_ai = |piece: &Piece<'_>| !piece.1.is_empty() && piece.1.iter().all(u8::is_ascii_digit);
    let gs1_start = (0..segments.len()).find(|&k| {
        let tail = segments.get(k..).unwrap_or_default();
        tail.first().is_some_and(|s| s.1 == b"01") && tail.len() % 2 == 0 && tail.iter().step_by(2).all(is_ai)
    });
    let Some(gs1_start) = gs1_start else {
        return Err(syntax(if segments.iter().any(|s| s.1 == b"01") {
            "the URI path from '/01/' on must be pairs of an AI and its value, as in \
             /01/<gtin>/10/<batch>/21/<serial>"
                .to_owned()
        } else {
            "the URI path has no '/01/<gtin>': it is not a GS1 Digital Link to a pack".to_owned()
        }));
    };
    let mut asm = Assembly::new(Form::DigitalLink, today);
    // The next qualifier allowed: the path carries 22, 10, 21 in that order, each at most once.
    let mut next_qualifier = 0;
    for (k, pair) in segments.get(gs1_start..).unwrap_or_default().chunks(2).enumerate() {
        let [key, value] = pair else { continue };
        let ai = known(input, *key)?;
        if k > 0 {
            let at = position(input, key.0);
            match QUALIFIERS.iter().position(|q| *q == key.1) {
                Some(rank) if rank >= next_qualifier => next_qualifier = rank + 1,
                Some(_) => {
                    return Err(syntax(format!(
                        "'/{}/' at position {at} is out of order or repeated: a GS1 Digital Link path carries \
                         /01/<gtin>, then any of /22/, /10/, /21/, each once and in that order",
                        show(key.1)
                    )));
                }
                None if key.1 == b"01" => {
                    return Err(syntax(format!(
                        "'/01/' at position {at} is a second GTIN in the path: a GS1 Digital Link has one"
                    )));
                }
                None => {
                    return Err(syntax(format!(
                        "{} at position {at} is in the path, where only /01/<gtin> and its key qualifiers \
                         /22/, /10/, /21/ go: it belongs in the query (?{}=...)",
                        ai.field.element,
                        show(key.1)
                    )));
                }
            }
        }
        take(ai, value.1, false, &mut asm)?;
    }
    let query_start = start + path_start + path_len + 1;
    for (offset, param) in split(query, query_start, b'&') {
        let (key, value) = match param.iter().position(|&b| b == b'=') {
            Some(eq) => (param.get(..eq).unwrap_or_default(), param.get(eq + 1..).unwrap_or_default()),
            None => (param, &[][..]),
        };
        // Keys that are not all digits are not AIs (linkType, for instance): not ours to read.
        if !is_ai(&(offset, key)) {
            continue;
        }
        let ai = known(input, (offset, key))?;
        if key == b"01" || QUALIFIERS.contains(&key) {
            return Err(syntax(format!(
                "{} at position {} is in the query, but a GS1 Digital Link carries the GTIN and its key \
                 qualifiers in the path: /01/<gtin>/22/.../10/.../21/...",
                ai.field.element,
                position(input, offset)
            )));
        }
        take(ai, value, true, &mut asm)?;
    }
    asm.finish()
}
