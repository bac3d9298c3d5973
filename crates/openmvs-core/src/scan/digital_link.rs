//! GS1 Digital Link URIs:
//! `http(s)://<any-domain>[/<any prefix>]/01/<gtin>[/22/<cpv>][/10/<batch>][/21/<serial>][?17=<YYMMDD>&...]`.
//!
//! Any AI of the table may come in the path (as `/<ai>/<value>` pairs after `/01/<gtin>`) or in
//! the query (as `<ai>=<value>`); the same duplicate rules apply as in an element string. Query
//! keys that are not all digits (`linkType` and the like) are ignored, and so is a fragment.
//! Values are percent-decoded (`%2F` is `/`); a `+` stays a `+`, as set 82 allows it. The GTIN
//! may have 8, 12, 13 or 14 digits. The scheme is matched in any case, as QR codes often write
//! URIs in upper case to use their denser alphanumeric mode.

use super::{Assembly, Element, Form, Rule, Scan, ScanError, gs1, position, show};
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

/// Percent-decodes `raw`; on a bad escape, returns the escape as found.
fn percent_decode(raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b != b'%' {
            out.push(b);
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

/// Reads one AI and its raw value from the path or the query into `asm`.
fn take(input: &[u8], key: Piece<'_>, value: &[u8], asm: &mut Assembly) -> Result<(), ScanError> {
    let Some(ai) = gs1::by_code(key.1) else {
        return Err(ScanError::new(
            Element::Input,
            None,
            Rule::UnknownAi { ai: show(key.1), position: position(input, key.0) },
        ));
    };
    let decoded = percent_decode(value).map_err(|escape| {
        ScanError::new(
            ai.field.element,
            Some(show(value)),
            Rule::Syntax(format!(
                "'{escape}' is not a percent escape ('%' must be followed by two hex digits; a '%' itself is \
                 written %25)"
            )),
        )
    })?;
    asm.push(&ai.field, &decoded, &decoded, false)
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
    for pair in segments.get(gs1_start..).unwrap_or_default().chunks(2) {
        if let [key, value] = pair {
            take(input, *key, value.1, &mut asm)?;
        }
    }
    let query_start = start + path_start + path_len + 1;
    for (offset, param) in split(query, query_start, b'&') {
        let (key, value) = match param.iter().position(|&b| b == b'=') {
            Some(eq) => (param.get(..eq).unwrap_or_default(), param.get(eq + 1..).unwrap_or_default()),
            None => (param, &[][..]),
        };
        // Keys that are not all digits are not AIs (linkType, for instance): not ours to read.
        if is_ai(&(offset, key)) {
            take(input, (offset, key), value, &mut asm)?;
        }
    }
    asm.finish()
}
