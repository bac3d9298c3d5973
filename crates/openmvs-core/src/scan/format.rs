//! Writes a pack identifier in each form a scanner delivers: the inverse of [`super::parse`],
//! for round-trip tests, fuzzing and test data.

use super::{EOT, Form, GS, RS};
use crate::ids::{PackIdentifier, Scheme};

/// The domain [`format`] writes Digital Links for; any domain parses.
const DIGITAL_LINK_BASE: &str = "https://id.example.org";

/// Writes `id` in `form`, or `None` when the form cannot carry the product code's scheme.
///
/// * [`Form::ElementString`] gives `]d2`, the fixed-length AIs 01 and 17, then 10, 71x and 21, each
///   variable field followed by GS except the last.
/// * [`Form::Iso15434Format05`] gives that element string without `]d2`, in `[)>` RS `05` GS ... RS EOT.
/// * [`Form::Iso15434Format06`] gives `9N` (PPN) or `8P` (GTIN), `1T` batch, `D` expiry, `S` serial, in
///   `[)>` RS `06` GS ... RS EOT. Format 06 has no reimbursement number, so the NHRN is dropped.
/// * [`Form::Bracket`] gives `(01)...(17)...(10)...(71x)...(21)...`, with `(` in data written `\(`.
/// * [`Form::DigitalLink`] gives `https://id.example.org/01/<gtin>/10/<batch>/21/<serial>?17=<YYMMDD>`
///   and `&71x=<nhrn>`, every byte other than letters, digits, `-`, `.` and `_` percent-encoded.
///
/// Every form but format 06 needs a GTIN: a PPN cannot be put in AI 01, so those give `None`.
pub fn format(id: &PackIdentifier, form: Form) -> Option<Vec<u8>> {
    let gtin = (id.product_code.scheme() == Scheme::Gtin).then(|| id.product_code.as_str());
    let (expiry, batch, serial) = (id.expiry.as_str(), id.batch.as_str(), id.serial.as_str());
    let nhrn = id.nhrn.as_ref().map(|n| (n.ai(), n.value()));
    match form {
        Form::ElementString => Some([b"]d2".as_slice(), &element_string(id, gtin?)].concat()),
        Form::Iso15434Format05 => Some(envelope(b"05", &element_string(id, gtin?))),
        Form::Iso15434Format06 => {
            let code = match id.product_code.scheme() {
                Scheme::Ppn => "9N",
                Scheme::Gtin => "8P",
            };
            let data =
                format!("{code}{}\u{1d}1T{batch}\u{1d}D{expiry}\u{1d}S{serial}", id.product_code.as_str());
            Some(envelope(b"06", data.as_bytes()))
        }
        Form::Bracket => {
            let esc = |s: &str| s.replace('(', "\\(");
            let mut out = format!("(01){}(17){expiry}(10){}", gtin?, esc(batch));
            if let Some((ai, value)) = nhrn {
                out.push_str(&format!("({ai}){}", esc(value)));
            }
            out.push_str(&format!("(21){}", esc(serial)));
            Some(out.into_bytes())
        }
        Form::DigitalLink => {
            let mut out = format!(
                "{DIGITAL_LINK_BASE}/01/{}/10/{}/21/{}?17={expiry}",
                gtin?,
                percent_encode(batch),
                percent_encode(serial)
            );
            if let Some((ai, value)) = nhrn {
                out.push_str(&format!("&{ai}={}", percent_encode(value)));
            }
            Some(out.into_bytes())
        }
    }
}

/// The element string of `id` without symbology identifier: fixed-length AIs first, then the
/// variable ones, each followed by GS except the last.
fn element_string(id: &PackIdentifier, gtin: &str) -> Vec<u8> {
    let mut out = format!("01{gtin}17{}10{}", id.expiry.as_str(), id.batch.as_str()).into_bytes();
    out.push(GS);
    if let Some(n) = &id.nhrn {
        out.extend_from_slice(format!("{}{}", n.ai(), n.value()).as_bytes());
        out.push(GS);
    }
    out.extend_from_slice(format!("21{}", id.serial.as_str()).as_bytes());
    out
}

/// Wraps `data` in an ISO/IEC 15434 envelope of the given format.
fn envelope(format: &[u8], data: &[u8]) -> Vec<u8> {
    [b"[)>".as_slice(), &[RS], format, &[GS], data, &[RS, EOT]].concat()
}

/// Percent-encodes every byte that is not a letter, a digit, `-`, `.` or `_`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
