//! Just enough DER reading to recover, from `ca.pem`, what signing needs: the CA's common name,
//! public key and end of validity.
//!
//! rcgen can read a CA certificate back only with its `x509-parser` feature, which pulls a parser
//! stack into every build for this one use. The certificates read here are the ones this crate
//! wrote, with a subject of exactly one UTF-8 common name, so a few lines of DER walking suffice.
//! Anything else is refused rather than guessed at.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const VERSION: u8 = 0xa0;
const COMMON_NAME_OID: [u8; 3] = [0x55, 0x04, 0x03];

/// What signing needs to know about the CA certificate.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CaFacts {
    /// The subject's common name.
    pub common_name: String,
    /// The SubjectPublicKeyInfo, with its SEQUENCE header, as in the certificate.
    pub spki: Vec<u8>,
    /// The end of the validity period.
    pub not_after: OffsetDateTime,
}

/// Reads the facts out of a certificate's DER, or says which part is not what this CA writes.
pub(crate) fn ca_facts(der: &[u8]) -> Result<CaFacts, &'static str> {
    const NOT_A_CERTIFICATE: &str = "not a DER certificate";
    let certificate = Reader(der).only(SEQUENCE).ok_or(NOT_A_CERTIFICATE)?;
    let mut tbs = Reader(Reader(certificate).next(SEQUENCE).ok_or(NOT_A_CERTIFICATE)?);
    if tbs.peek_tag() == Some(VERSION) {
        tbs.any().ok_or(NOT_A_CERTIFICATE)?;
    }
    tbs.next(INTEGER).ok_or("no serial number")?;
    tbs.next(SEQUENCE).ok_or("no signature algorithm")?;
    tbs.next(SEQUENCE).ok_or("no issuer")?;
    let mut validity = Reader(tbs.next(SEQUENCE).ok_or("no validity")?);
    validity.any().ok_or("no start of validity")?;
    let (tag, content, _) = validity.any().ok_or("no end of validity")?;
    let not_after = parse_time(tag, content).ok_or("end of validity is not a UTC time")?;
    let subject = tbs.next(SEQUENCE).ok_or("no subject")?;
    let common_name = single_common_name(subject).ok_or("subject is not one UTF-8 common name")?;
    let (tag, _, spki) = tbs.any().ok_or("no public key")?;
    if tag != SEQUENCE {
        return Err("no public key");
    }
    Ok(CaFacts { common_name, spki: spki.to_vec(), not_after })
}

/// The value of a Name that holds exactly one attribute, a UTF-8 common name.
fn single_common_name(name: &[u8]) -> Option<String> {
    let rdn = Reader(name).only(SET)?;
    let mut attribute = Reader(Reader(rdn).only(SEQUENCE)?);
    if attribute.next(OID)? != COMMON_NAME_OID {
        return None;
    }
    let value = attribute.next(UTF8_STRING)?;
    if !attribute.is_empty() {
        return None;
    }
    String::from_utf8(value.to_vec()).ok()
}

/// `YYMMDDHHMMSSZ` (UTCTime, years 1950-2049) or `YYYYMMDDHHMMSSZ` (GeneralizedTime), the two
/// forms RFC 5280 allows for validity dates.
fn parse_time(tag: u8, text: &[u8]) -> Option<OffsetDateTime> {
    let (year, rest) = match (tag, text.len()) {
        (UTC_TIME, 13) => {
            let yy = i32::from(two_digits(&text[0..2])?);
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &text[2..])
        }
        (GENERALIZED_TIME, 15) => {
            let century = i32::from(two_digits(&text[0..2])?);
            (century * 100 + i32::from(two_digits(&text[2..4])?), &text[4..])
        }
        _ => return None,
    };
    if rest[10] != b'Z' {
        return None;
    }
    let date = Date::from_calendar_date(
        year,
        Month::try_from(two_digits(&rest[0..2])?).ok()?,
        two_digits(&rest[2..4])?,
    )
    .ok()?;
    let time =
        Time::from_hms(two_digits(&rest[4..6])?, two_digits(&rest[6..8])?, two_digits(&rest[8..10])?).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

fn two_digits(text: &[u8]) -> Option<u8> {
    match text {
        [a @ b'0'..=b'9', b @ b'0'..=b'9'] => Some((a - b'0') * 10 + (b - b'0')),
        _ => None,
    }
}

/// A cursor over a sequence of DER elements.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn peek_tag(&self) -> Option<u8> {
        self.0.first().copied()
    }

    /// The next element as (tag, content, whole encoding).
    fn any(&mut self) -> Option<(u8, &'a [u8], &'a [u8])> {
        let input = self.0;
        let (&tag, rest) = input.split_first()?;
        // Certificates use no high tag numbers, which would continue the tag in further bytes.
        if tag & 0x1f == 0x1f {
            return None;
        }
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            // Long form: the low bits count the length bytes that follow. Four are plenty for
            // anything this CA reads; zero would be the indefinite form, which DER forbids.
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (bytes, after) = rest.split_at(count);
            rest = after;
            bytes.iter().fold(0usize, |len, b| (len << 8) | usize::from(*b))
        };
        if rest.len() < len {
            return None;
        }
        let header = input.len() - rest.len();
        let (whole, after) = input.split_at(header + len);
        self.0 = after;
        Some((tag, &whole[header..], whole))
    }

    /// The content of the next element, which must have this tag.
    fn next(&mut self, tag: u8) -> Option<&'a [u8]> {
        let (found, content, _) = self.any()?;
        (found == tag).then_some(content)
    }

    /// The content of the one and only element, which must have this tag.
    fn only(mut self, tag: u8) -> Option<&'a [u8]> {
        let content = self.next(tag)?;
        self.is_empty().then_some(content)
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData};

    use super::*;

    fn certificate(common_name: &str, not_after: OffsetDateTime) -> (Vec<u8>, KeyPair) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.not_after = not_after;
        (params.self_signed(&key).expect("certificate").der().to_vec(), key)
    }

    #[test]
    fn the_facts_read_back_are_those_rcgen_wrote() {
        // 2049 is written as UTCTime and 2050 as GeneralizedTime, so both forms are read here.
        for year in [2049, 2050] {
            let not_after = rcgen::date_time_ymd(year, 7, 31) + time::Duration::seconds(45_296);
            let (der, key) = certificate("OpenMVS Hub CA é", not_after);
            let facts = ca_facts(&der).expect("facts");
            assert_eq!(facts.common_name, "OpenMVS Hub CA é");
            assert_eq!(facts.not_after, not_after);
            assert_eq!(facts.spki, key.subject_public_key_info());
        }
    }

    #[test]
    fn a_subject_with_more_than_a_common_name_is_refused() {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "CA");
        dn.push(DnType::OrganizationName, "Someone else");
        params.distinguished_name = dn;
        let der = params.self_signed(&key).expect("certificate").der().to_vec();
        assert_eq!(ca_facts(&der), Err("subject is not one UTF-8 common name"));
    }

    #[test]
    fn truncated_or_trailing_bytes_are_refused() {
        let (der, _) = certificate("CA", rcgen::date_time_ymd(2040, 1, 1));
        assert!(ca_facts(&der).is_ok());
        assert!(ca_facts(&der[..der.len() - 1]).is_err());
        let mut longer = der;
        longer.push(0);
        assert!(ca_facts(&longer).is_err());
        assert!(ca_facts(&[]).is_err());
    }
}
