//! Validated newtypes for the parts of a pack's unique identifier and the names around it (DR Art 4-5).
//!
//! Each type can only hold a valid value: construction checks the rule and says which rule failed.
//! Nothing is altered on the way in: no trimming, no case folding. The one canonicalisation the
//! rules ask for is the left-padding of short GTINs to 14 digits.
//!
//! Beside them are the opaque ids of records (clients, their transactions, alerts, OBPs,
//! token-signing keys, uploads, bulk jobs): distinct types over the text as given, checked where
//! they come in from outside.

use std::fmt;

use crate::time::{Date, days_in_month};

/// Why a value was refused: which rule of the identifier it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The value is empty.
    #[error("is empty")]
    Empty,
    /// The value is longer than allowed.
    #[error("has {len} characters, at most {max} are allowed")]
    TooLong {
        /// Characters given.
        len: usize,
        /// Characters allowed.
        max: usize,
    },
    /// The value does not have the one length the scheme requires.
    #[error("has {len} characters, {expected} are required")]
    WrongLength {
        /// Characters given.
        len: usize,
        /// Description of the lengths accepted.
        expected: &'static str,
    },
    /// A character outside the set the field allows.
    #[error("character {found} at position {position} is not allowed ({allowed})")]
    BadCharacter {
        /// The offending character, quoted and escaped.
        found: String,
        /// Its position, counted from 1.
        position: usize,
        /// Which set is allowed.
        allowed: &'static str,
    },
    /// The check digit(s) do not match.
    #[error("check digit is {found}, expected {expected}")]
    CheckDigit {
        /// Check digits in the value.
        found: String,
        /// Check digits computed from the rest.
        expected: String,
    },
    /// A date part that does not exist.
    #[error("{0}")]
    BadDate(String),
    /// A value outside a closed list.
    #[error("{0}")]
    NotInList(String),
}

/// Renders a character for an error message, escaping control and non-ASCII characters.
pub(crate) fn describe_char(c: char) -> String {
    match c {
        '\u{1d}' => "GS (ASCII 29)".to_owned(),
        '\u{1e}' => "RS (ASCII 30)".to_owned(),
        '\u{04}' => "EOT (ASCII 4)".to_owned(),
        ' ' => "' ' (space)".to_owned(),
        c if c.is_ascii_graphic() => format!("'{c}'"),
        c => format!("'{}' (U+{:04X})", c.escape_default(), u32::from(c)),
    }
}

/// Whether `b` belongs to GS1 character set 82.
pub fn is_cset82(b: u8) -> bool {
    matches!(b,
        b'!' | b'"' | b'%' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'-' | b'.' | b'/'
        | b'0'..=b'9' | b':' | b';' | b'<' | b'=' | b'>' | b'?' | b'A'..=b'Z' | b'_' | b'a'..=b'z')
}

fn check_cset82(s: &str, max: usize) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if let Some((i, c)) = s.char_indices().find(|&(_, c)| !(c.is_ascii() && is_cset82(c as u8))) {
        let position = s[..i].chars().count() + 1;
        return Err(IdError::BadCharacter {
            found: describe_char(c),
            position,
            allowed: "GS1 character set 82",
        });
    }
    let len = s.len();
    if len > max {
        return Err(IdError::TooLong { len, max });
    }
    Ok(())
}

/// The product code scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// GS1 Global Trade Item Number, 14 digits (NTINs included).
    Gtin,
    /// IFA Pharmacy Product Number (Germany): `11` + PZN8 + 2 check digits.
    Ppn,
}

impl Scheme {
    /// The upper-case name used on the wire: `GTIN` or `PPN`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Gtin => "GTIN",
            Scheme::Ppn => "PPN",
        }
    }

    /// Parses `GTIN` or `PPN` (exact case, as every enumeration on the wire).
    pub fn parse(s: &str) -> Result<Scheme, IdError> {
        match s {
            "GTIN" => Ok(Scheme::Gtin),
            "PPN" => Ok(Scheme::Ppn),
            _ => Err(IdError::NotInList(format!("'{s}' is not GTIN or PPN"))),
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A product code with a valid check digit for its scheme.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProductCode {
    scheme: Scheme,
    code: String,
}

/// The GS1 mod-10 check digit of `digits` (all ASCII digits, check digit excluded).
pub fn gs1_check_digit(digits: &[u8]) -> u8 {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| u32::from(d - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// The two PPN check digits of the first ten characters.
pub fn ppn_check_digits(first_ten: &[u8]) -> u8 {
    let sum: u32 = first_ten.iter().enumerate().map(|(i, &c)| u32::from(c) * (i as u32 + 2)).sum();
    (sum % 97) as u8
}

impl ProductCode {
    /// A GTIN of 8, 12, 13 or 14 digits, left-padded to 14, with its check digit verified.
    pub fn gtin(s: &str) -> Result<ProductCode, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if let Some((i, c)) = s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            return Err(IdError::BadCharacter {
                found: describe_char(c),
                position: s[..i].chars().count() + 1,
                allowed: "digits 0-9",
            });
        }
        if ![8, 12, 13, 14].contains(&s.len()) {
            return Err(IdError::WrongLength { len: s.len(), expected: "14 (or 8, 12, 13)" });
        }
        let code = format!("{s:0>14}");
        let b = code.as_bytes();
        let expected = gs1_check_digit(&b[..13]);
        if b[13] - b'0' != expected {
            return Err(IdError::CheckDigit {
                found: (b[13] as char).to_string(),
                expected: expected.to_string(),
            });
        }
        Ok(ProductCode { scheme: Scheme::Gtin, code })
    }

    /// A PPN: 12 characters (`0-9`, `A-Z`), with its two check digits verified.
    pub fn ppn(s: &str) -> Result<ProductCode, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if let Some((i, c)) = s.char_indices().find(|(_, c)| !(c.is_ascii_digit() || c.is_ascii_uppercase()))
        {
            return Err(IdError::BadCharacter {
                found: describe_char(c),
                position: s[..i].chars().count() + 1,
                allowed: "digits and upper-case letters",
            });
        }
        if s.len() != 12 {
            return Err(IdError::WrongLength { len: s.len(), expected: "12" });
        }
        let b = s.as_bytes();
        if !b[10].is_ascii_digit() || !b[11].is_ascii_digit() {
            return Err(IdError::BadCharacter {
                found: describe_char(if b[10].is_ascii_digit() { b[11] } else { b[10] } as char),
                position: if b[10].is_ascii_digit() { 12 } else { 11 },
                allowed: "digits for the two check digits",
            });
        }
        let expected = ppn_check_digits(&b[..10]);
        let found = (b[10] - b'0') * 10 + (b[11] - b'0');
        if found != expected {
            return Err(IdError::CheckDigit {
                found: s[10..].to_owned(),
                expected: format!("{expected:02}"),
            });
        }
        Ok(ProductCode { scheme: Scheme::Ppn, code: s.to_owned() })
    }

    /// A product code of the given scheme.
    pub fn new(scheme: Scheme, s: &str) -> Result<ProductCode, IdError> {
        match scheme {
            Scheme::Gtin => ProductCode::gtin(s),
            Scheme::Ppn => ProductCode::ppn(s),
        }
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The code, 14 digits for a GTIN, 12 characters for a PPN.
    pub fn as_str(&self) -> &str {
        &self.code
    }
}

impl fmt::Display for ProductCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code)
    }
}

macro_rules! cset82_newtype {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The longest value allowed.
            pub const MAX_LEN: usize = $max;

            /// Checks the value: 1 to `MAX_LEN` characters of GS1 character set 82, taken as is.
            pub fn new(s: &str) -> Result<Self, IdError> {
                check_cset82(s, $max)?;
                Ok(Self(s.to_owned()))
            }

            /// The value exactly as given.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

cset82_newtype!(
    /// A serial number: 1-20 characters of GS1 character set 82, case-sensitive.
    Serial,
    20
);
cset82_newtype!(
    /// A batch (lot) number: 1-20 characters of GS1 character set 82, case-sensitive.
    Batch,
    20
);

/// An expiry date as encoded (`YYMMDD`), with the calendar date it means.
///
/// `DD` = `00` means the last day of the month. Two expiries are the same expiry when they mean
/// the same date (`271200` equals `271231`); the encoded form is kept for echoing back.
#[derive(Debug, Clone, Copy, Eq)]
pub struct Expiry {
    encoded: [u8; 6],
    date: Date,
}

impl PartialEq for Expiry {
    fn eq(&self, other: &Expiry) -> bool {
        self.date == other.date
    }
}

impl std::hash::Hash for Expiry {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Equality is by meaning, so hashing must be too.
        self.date.hash(state);
    }
}

/// The full year that a two-digit year means today, by the GS1 sliding window
/// (GS1 General Specifications 7.12: up to 49 years back, up to 50 years ahead).
pub fn century_window(yy: u8, today: Date) -> i32 {
    let current = today.year();
    let century = current.div_euclid(100) * 100;
    let diff = i32::from(yy) - current.rem_euclid(100);
    if diff >= 51 {
        century - 100 + i32::from(yy)
    } else if diff <= -50 {
        century + 100 + i32::from(yy)
    } else {
        century + i32::from(yy)
    }
}

impl Expiry {
    /// Parses `YYMMDD`, resolving the century against `today`.
    pub fn parse(s: &str, today: Date) -> Result<Expiry, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if let Some((i, c)) = s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            return Err(IdError::BadCharacter {
                found: describe_char(c),
                position: s[..i].chars().count() + 1,
                allowed: "digits 0-9 (YYMMDD)",
            });
        }
        if s.len() != 6 {
            return Err(IdError::WrongLength { len: s.len(), expected: "6 (YYMMDD)" });
        }
        let b = s.as_bytes();
        let two = |i: usize| (b[i] - b'0') * 10 + (b[i + 1] - b'0');
        let (yy, mm, dd) = (two(0), two(2), two(4));
        if !(1..=12).contains(&mm) {
            return Err(IdError::BadDate(format!("month {mm:02} is not 01-12")));
        }
        let year = century_window(yy, today);
        let date = if dd == 0 { Date::last_of_month(year, mm) } else { Date::new(year, mm, dd) }.ok_or_else(
            || {
                IdError::BadDate(format!(
                    "day {dd:02} does not exist in {year:04}-{mm:02} (which has {} days)",
                    days_in_month(year, mm)
                ))
            },
        )?;
        let mut encoded = [0u8; 6];
        encoded.copy_from_slice(b);
        Ok(Expiry { encoded, date })
    }

    /// The encoded form, exactly as given.
    pub fn as_str(&self) -> &str {
        // Construction only accepts ASCII digits.
        std::str::from_utf8(&self.encoded).unwrap_or("")
    }

    /// The calendar date this expiry means (day `00` resolved to the month's last day).
    pub fn date(&self) -> Date {
        self.date
    }

    /// Whether the pack has expired on `today`: the expiry date has passed.
    pub fn has_passed(&self, today: Date) -> bool {
        today > self.date
    }
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A national healthcare reimbursement number (GS1 AIs 710-717).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nhrn {
    ai: u16,
    value: String,
}

impl Nhrn {
    /// Whether `ai` is one of the national reimbursement number AIs.
    pub fn is_nhrn_ai(ai: u16) -> bool {
        (710..=717).contains(&ai)
    }

    /// Builds an NHRN for AI 710-717 with 1-20 characters of set 82.
    pub fn new(ai: u16, value: &str) -> Result<Nhrn, IdError> {
        if !Nhrn::is_nhrn_ai(ai) {
            return Err(IdError::NotInList(format!("AI {ai} is not a reimbursement number AI (710-717)")));
        }
        check_cset82(value, 20)?;
        Ok(Nhrn { ai, value: value.to_owned() })
    }

    /// The AI, 710-717.
    pub fn ai(&self) -> u16 {
        self.ai
    }

    /// The number exactly as given.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The country the AI belongs to.
    pub fn country(&self) -> &'static str {
        match self.ai {
            710 => "DE",
            711 => "FR",
            712 => "ES",
            713 => "BR",
            714 => "PT",
            715 => "US",
            716 => "IT",
            _ => "CR",
        }
    }
}

/// The markets that take part in the EU medicines verification system: the EU member states
/// (Greece as `GR`) and the EEA states Iceland, Liechtenstein and Norway.
pub const FMD_MARKETS: [&str; 30] = [
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IS", "IT",
    "LI", "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK",
];

/// A market: an ISO 3166-1 alpha-2 code of a country in the verification system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MarketCode([u8; 2]);

impl MarketCode {
    /// Parses an upper-case two-letter market code from [`FMD_MARKETS`].
    pub fn new(s: &str) -> Result<MarketCode, IdError> {
        if s.len() != 2 || !s.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(IdError::NotInList(format!(
                "'{s}' is not a market code (two upper-case letters, ISO 3166-1 alpha-2)"
            )));
        }
        if !FMD_MARKETS.contains(&s) {
            return Err(IdError::NotInList(format!("'{s}' is not a market of the verification system")));
        }
        let b = s.as_bytes();
        Ok(MarketCode([b[0], b[1]]))
    }

    /// The code, e.g. `DE`.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Display for MarketCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The premises an operation comes from (a pharmacy, a hospital, a warehouse, an OBP).
///
/// 1-64 characters of `A-Z a-z 0-9 . _ : -`. Undo and double-scan rules compare locations.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location(String);

impl Location {
    /// The longest location id allowed.
    pub const MAX_LEN: usize = 64;

    /// Checks and wraps a location id.
    pub fn new(s: &str) -> Result<Location, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if let Some((i, c)) = s
            .char_indices()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
        {
            return Err(IdError::BadCharacter {
                found: describe_char(c),
                position: s[..i].chars().count() + 1,
                allowed: "letters, digits and . _ : -",
            });
        }
        if s.len() > Location::MAX_LEN {
            return Err(IdError::TooLong { len: s.len(), max: Location::MAX_LEN });
        }
        Ok(Location(s.to_owned()))
    }

    /// The id as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Declares an opaque id: the text of an id a system hands out or takes from a caller, wrapped so
/// that one kind of id cannot be passed where another is expected. It is taken as given: where a
/// rule applies to an id from outside, the edge that receives it checks it and then wraps it.
/// Exported so that the crates around the core declare their own (an outbox message id).
#[macro_export]
macro_rules! opaque_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(::std::string::String);

        impl $name {
            /// Wraps the id as given.
            pub fn new(s: impl ::std::convert::Into<::std::string::String>) -> Self {
                Self(s.into())
            }

            /// The id as given.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id's text.
            pub fn into_string(self) -> ::std::string::String {
                self.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl ::std::convert::From<::std::string::String> for $name {
            fn from(s: ::std::string::String) -> Self {
                Self(s)
            }
        }

        impl ::std::convert::From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl ::std::convert::AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl ::std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl ::std::cmp::PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl ::std::cmp::PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

opaque_id!(
    /// A client of a national system (an end user, an NMVO, an authority), as its credentials name
    /// it; also the name of a system acting as a client (`hub:<market>` for a synchronised change).
    ClientId
);
opaque_id!(
    /// A client's id for one of its requests: the same id repeated gets the stored answer
    /// (the national system checks the ones its clients send: 1-100 printable ASCII characters).
    ClientTrxId
);
opaque_id!(
    /// An alert, as the system that raised or stored it names it (time-ordered at OpenMVS's own).
    AlertId
);
opaque_id!(
    /// An on-boarding partner (a marketing authorisation holder or a parallel distributor), as its
    /// client certificate names it.
    ObpId
);
opaque_id!(
    /// A token-signing key of a national system, as the `kid` of the tokens it signs names it.
    KeyId
);
opaque_id!(
    /// An upload of serials at the hub.
    UploadId
);
opaque_id!(
    /// A bulk request at a national system.
    BulkId
);

/// The unique identifier of a pack plus the attributes every operation must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackIdentifier {
    /// Product code and its scheme.
    pub product_code: ProductCode,
    /// Serial number.
    pub serial: Serial,
    /// Batch number.
    pub batch: Batch,
    /// Expiry date.
    pub expiry: Expiry,
    /// National reimbursement number, when the code carries one.
    pub nhrn: Option<Nhrn>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> Date {
        Date::new(2026, 11, 29).unwrap()
    }

    #[test]
    fn valid_gtins_from_the_vectors_are_accepted() {
        for g in ["09501101530003", "05601234567892", "04150037528643"] {
            assert_eq!(ProductCode::gtin(g).unwrap().as_str(), g);
        }
    }

    #[test]
    fn short_gtins_are_left_padded_to_fourteen_digits() {
        assert_eq!(ProductCode::gtin("9501101530003").unwrap().as_str(), "09501101530003");
        assert_eq!(ProductCode::gtin("96385074").unwrap().as_str(), "00000096385074");
    }

    #[test]
    fn gtin_with_a_wrong_check_digit_names_the_expected_one() {
        let e = ProductCode::gtin("09501101530004").unwrap_err();
        assert_eq!(e, IdError::CheckDigit { found: "4".into(), expected: "3".into() });
    }

    #[test]
    fn gtin_of_eleven_digits_is_refused_for_its_length() {
        assert!(matches!(ProductCode::gtin("12345678901"), Err(IdError::WrongLength { len: 11, .. })));
    }

    #[test]
    fn ppn_from_the_rules_is_accepted_and_a_changed_digit_is_not() {
        assert!(ProductCode::ppn("110375286414").is_ok());
        assert!(matches!(ProductCode::ppn("110375286415"), Err(IdError::CheckDigit { .. })));
        assert!(matches!(ProductCode::ppn("11037528641"), Err(IdError::WrongLength { .. })));
    }

    #[test]
    fn serial_of_twenty_one_characters_is_too_long() {
        assert_eq!(Serial::new("ABCDEFGHIJKLMNOPQRSTU").unwrap_err(), IdError::TooLong { len: 21, max: 20 });
        assert!(Serial::new("ABCDEFGHIJKLMNOPQRST").is_ok());
    }

    #[test]
    fn batch_with_a_space_or_sharp_s_names_the_character() {
        let e = Batch::new("AB C").unwrap_err();
        assert!(matches!(e, IdError::BadCharacter { position: 3, .. }), "{e:?}");
        let e = Batch::new("LOTß42").unwrap_err();
        assert!(e.to_string().contains("U+00DF"), "{e}");
        assert!(matches!(Batch::new(""), Err(IdError::Empty)));
    }

    #[test]
    fn every_character_of_set_82_is_accepted_and_nothing_else_in_ascii() {
        let set82 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";
        assert_eq!(set82.len(), 82);
        assert_eq!((0u8..128).filter(|&b| is_cset82(b)).count(), 82);
        for c in set82.chars() {
            assert!(Serial::new(&c.to_string()).is_ok(), "{c}");
        }
    }

    #[test]
    fn expiry_day_zero_means_the_last_day_of_the_month() {
        let e = Expiry::parse("280200", today()).unwrap();
        assert_eq!(e.date().to_string(), "2028-02-29");
        assert_eq!(e.as_str(), "280200");
        assert_eq!(e, Expiry::parse("280229", today()).unwrap());
        assert_eq!(Expiry::parse("271200", today()).unwrap(), Expiry::parse("271231", today()).unwrap());
    }

    #[test]
    fn expiry_rejects_impossible_dates() {
        assert!(matches!(Expiry::parse("271301", today()), Err(IdError::BadDate(_))));
        assert!(matches!(Expiry::parse("270229", today()), Err(IdError::BadDate(_))));
        assert!(Expiry::parse("280229", today()).is_ok());
        assert!(matches!(Expiry::parse("270431", today()), Err(IdError::BadDate(_))));
        assert!(matches!(Expiry::parse("270000", today()), Err(IdError::BadDate(_))));
        assert!(matches!(Expiry::parse("27123", today()), Err(IdError::WrongLength { .. })));
    }

    #[test]
    fn century_window_reaches_fifty_years_ahead_and_forty_nine_back() {
        let t = today(); // 2026
        assert_eq!(century_window(76, t), 2076);
        assert_eq!(century_window(77, t), 1977);
        assert_eq!(century_window(0, t), 2000);
        let t = Date::new(2080, 1, 1).unwrap();
        assert_eq!(century_window(30, t), 2130);
        assert_eq!(century_window(31, t), 2031);
    }

    #[test]
    fn expiry_has_passed_only_after_its_day() {
        let e = Expiry::parse("271231", today()).unwrap();
        assert!(!e.has_passed(Date::new(2027, 12, 31).unwrap()));
        assert!(e.has_passed(Date::new(2028, 1, 1).unwrap()));
    }

    #[test]
    fn market_codes_are_the_participating_countries() {
        assert_eq!(MarketCode::new("DE").unwrap().as_str(), "DE");
        assert!(MarketCode::new("de").is_err());
        assert!(MarketCode::new("US").is_err());
        assert!(MarketCode::new("DEU").is_err());
    }

    #[test]
    fn nhrn_accepts_ais_710_to_717_only() {
        assert_eq!(Nhrn::new(714, "1234567").unwrap().country(), "PT");
        assert!(Nhrn::new(718, "1").is_err());
        assert!(Nhrn::new(710, "").is_err());
    }

    #[test]
    fn opaque_ids_keep_their_text_and_compare_with_it() {
        let id = AlertId::new("ALR-1 x");
        assert_eq!(id.as_str(), "ALR-1 x");
        assert_eq!(id.to_string(), "ALR-1 x");
        assert_eq!(id, "ALR-1 x");
        let earlier = AlertId::from("ALR-1");
        assert!(earlier < id, "ids order as their text");
        assert_eq!(ClientId::from(String::from("cl")).into_string(), "cl");
    }

    #[test]
    fn locations_refuse_spaces_and_overlong_ids() {
        assert!(Location::new("DE-PHARM-0001").is_ok());
        assert!(Location::new("a b").is_err());
        assert!(Location::new(&"x".repeat(65)).is_err());
    }
}
