//! The human-readable bracket form, `(01)09501101530003(17)271231(10)ABC123(21)X4K9P7Q2M8R5`, as
//! printed next to the code and typed in by hand. A `(` inside data is written `\(` (the GS1
//! syntax engine's convention), so the form is unambiguous.

use super::{Assembly, Element, Form, Rule, Scan, ScanError, gs1, position, show};
use crate::time::Date;

/// Reads the bracket form that starts at byte `start` of `input` (with `(`).
pub(super) fn parse(input: &[u8], start: usize, today: Date) -> Result<Scan, ScanError> {
    let data = input.get(start..).unwrap_or_default();
    let mut asm = Assembly::new(Form::Bracket, today);
    let mut i = 0;
    while i < data.len() {
        let pos = position(input, start + i);
        // Each value ends at an unescaped '(' or the end, so every round starts at a '('.
        let after = data.get(i + 1..).unwrap_or_default();
        let Some(close) = after.iter().position(|&b| b == b')') else {
            return Err(ScanError::syntax(
                Element::Input,
                format!("the '(' at position {pos} opens an AI that is never closed with ')'"),
            ));
        };
        let code = after.get(..close).unwrap_or_default();
        let Some(ai) = gs1::by_code(code) else {
            if !code.is_empty() && code.iter().all(u8::is_ascii_digit) {
                return Err(ScanError::new(
                    Element::Input,
                    None,
                    Rule::UnknownAi { ai: show(code), position: pos + 1 },
                ));
            }
            return Err(ScanError::syntax(
                Element::Input,
                format!(
                    "'({})' at position {pos} is not an AI in brackets such as (01); a '(' inside data \
                     is written '\\('",
                    show(code)
                ),
            ));
        };
        let mut j = i + 1 + close + 1;
        let mut value = Vec::new();
        while let Some(&b) = data.get(j) {
            match (b, data.get(j + 1)) {
                (b'\\', Some(b'(')) => {
                    value.push(b'(');
                    j += 2;
                }
                (b'(', _) => break,
                _ => {
                    value.push(b);
                    j += 1;
                }
            }
        }
        asm.push(&ai.field, &value, &value, j >= data.len())?;
        i = j;
    }
    asm.finish()
}
