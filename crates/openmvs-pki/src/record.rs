//! The record of issued certificates (`issued.tsv`) and the conversions between `SystemTime`,
//! rcgen's `OffsetDateTime` and the RFC 3339 text written in the record.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use crate::PkiError;
use crate::identity::{Identity, identity_of};

/// The first line of `issued.tsv`, naming its columns.
pub(crate) const HEADER: &str = "serial\tkind\tname\tnot_after\trevoked_at";

/// What an issued certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertKind {
    /// A TLS server (server-auth EKU).
    Server,
    /// The hub's client certificate.
    Hub,
    /// A national system's client certificate.
    National,
    /// An on-boarding partner's client certificate.
    Obp,
}

impl CertKind {
    /// The word written in `issued.tsv`: `server`, `hub`, `national` or `obp`.
    pub fn as_str(self) -> &'static str {
        match self {
            CertKind::Server => "server",
            CertKind::Hub => "hub",
            CertKind::National => "national",
            CertKind::Obp => "obp",
        }
    }

    fn parse(s: &str) -> Option<CertKind> {
        [CertKind::Server, CertKind::Hub, CertKind::National, CertKind::Obp]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

impl fmt::Display for CertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of `issued.tsv`: a certificate this CA issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedRecord {
    /// Its serial number.
    pub serial: u64,
    /// What it is for.
    pub kind: CertKind,
    /// Its DNS names and IP addresses: for a client certificate the one DNS name that says who
    /// it is (e.g. `acme-pharma.obp.openmvs`), for a server certificate its names joined by `,`.
    pub name: String,
    /// The end of its validity, to the second.
    pub not_after: SystemTime,
    /// When it was revoked, to the second, if it was.
    pub revoked_at: Option<SystemTime>,
}

impl IssuedRecord {
    /// The identity a client certificate names; `None` for a server certificate.
    pub fn identity(&self) -> Option<Identity> {
        match self.kind {
            CertKind::Server => None,
            _ => identity_of(std::slice::from_ref(&self.name)),
        }
    }

    fn to_line(&self) -> String {
        let revoked = self.revoked_at.map(rfc3339).unwrap_or_default();
        format!("{}\t{}\t{}\t{}\t{revoked}", self.serial, self.kind, self.name, rfc3339(self.not_after))
    }

    fn from_line(line: &str) -> Result<IssuedRecord, String> {
        let fields: Vec<&str> = line.split('\t').collect();
        let [serial, kind, name, not_after, revoked_at] = fields[..] else {
            return Err(format!("{} fields where 5 are expected", fields.len()));
        };
        let time = |s: &str| {
            parse_rfc3339(s).ok_or_else(|| format!("{s:?} is not a time like 2027-12-31T23:59:59Z"))
        };
        Ok(IssuedRecord {
            serial: serial.parse().map_err(|_| format!("serial {serial:?} is not a number"))?,
            kind: CertKind::parse(kind)
                .ok_or_else(|| format!("kind {kind:?} is not server, hub, national or obp"))?,
            name: if name.is_empty() { return Err("the name is empty".to_owned()) } else { name.to_owned() },
            not_after: time(not_after)?,
            revoked_at: if revoked_at.is_empty() { None } else { Some(time(revoked_at)?) },
        })
    }
}

/// The text of `issued.tsv` for these records.
pub(crate) fn format_records(records: &[IssuedRecord]) -> String {
    let mut text = format!("{HEADER}\n");
    for record in records {
        text.push_str(&record.to_line());
        text.push('\n');
    }
    text
}

/// Reads the text of `issued.tsv`; an error says which line is wrong and how.
pub(crate) fn parse_records(text: &str) -> Result<Vec<IssuedRecord>, String> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(format!("line 1 is not the header {HEADER:?}"));
    }
    lines
        .enumerate()
        .map(|(i, line)| IssuedRecord::from_line(line).map_err(|e| format!("line {}: {e}", i + 2)))
        .collect()
}

/// `t` to the whole second (towards the past), as rcgen takes it. Certificates and the record
/// keep seconds only, so every time is cut to the second on the way in, and what is read back
/// equals what was written.
pub(crate) fn to_datetime(t: SystemTime) -> Result<OffsetDateTime, PkiError> {
    let secs = t.duration_since(UNIX_EPOCH).map_err(|_| PkiError::TimeOutOfRange)?.as_secs();
    let secs = i64::try_from(secs).map_err(|_| PkiError::TimeOutOfRange)?;
    let dt = OffsetDateTime::from_unix_timestamp(secs).map_err(|_| PkiError::TimeOutOfRange)?;
    if dt.year() > 9999 { Err(PkiError::TimeOutOfRange) } else { Ok(dt) }
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let dt = OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// The inverse of [`rfc3339`]; `None` for anything else.
pub(crate) fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u16> {
        let digits = &s[from..to];
        if digits.bytes().all(|c| c.is_ascii_digit()) { digits.parse().ok() } else { None }
    };
    let month = Month::try_from(u8::try_from(num(5, 7)?).ok()?).ok()?;
    let date =
        Date::from_calendar_date(i32::from(num(0, 4)?), month, u8::try_from(num(8, 10)?).ok()?).ok()?;
    let time = Time::from_hms(
        u8::try_from(num(11, 13)?).ok()?,
        u8::try_from(num(14, 16)?).ok()?,
        u8::try_from(num(17, 19)?).ok()?,
    )
    .ok()?;
    let dt = PrimitiveDateTime::new(date, time).assume_utc();
    (dt.unix_timestamp() >= 0).then(|| SystemTime::from(dt))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn times_are_written_as_rfc3339_and_read_back() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (1_798_761_599, "2026-12-31T23:59:59Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"),
        ] {
            assert_eq!(rfc3339(at(secs)), text);
            assert_eq!(parse_rfc3339(text), Some(at(secs)), "{text}");
        }
    }

    #[test]
    fn malformed_times_are_not_read() {
        for text in [
            "",
            "2026-12-31 23:59:59Z",
            "2026-12-31T23:59:59",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-12-31T24:00:00Z",
            "+026-12-31T23:59:59Z",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(parse_rfc3339(text), None, "{text}");
        }
    }

    #[test]
    fn times_are_cut_to_the_second_towards_the_past() {
        let dt = to_datetime(at(1_000) + Duration::from_millis(999)).expect("in range");
        assert_eq!(dt.unix_timestamp(), 1_000);
        assert_eq!(dt.nanosecond(), 0);
        assert!(matches!(to_datetime(UNIX_EPOCH - Duration::from_secs(1)), Err(PkiError::TimeOutOfRange)));
    }

    #[test]
    fn records_round_trip_through_their_text() {
        let records = vec![
            IssuedRecord {
                serial: 2,
                kind: CertKind::Server,
                name: "localhost,127.0.0.1".to_owned(),
                not_after: at(1_798_761_599),
                revoked_at: None,
            },
            IssuedRecord {
                serial: 3,
                kind: CertKind::Obp,
                name: "acme.obp.openmvs".to_owned(),
                not_after: at(1_798_761_599),
                revoked_at: Some(at(1_700_000_000)),
            },
        ];
        let text = format_records(&records);
        assert_eq!(
            text,
            "serial\tkind\tname\tnot_after\trevoked_at\n\
             2\tserver\tlocalhost,127.0.0.1\t2026-12-31T23:59:59Z\t\n\
             3\tobp\tacme.obp.openmvs\t2026-12-31T23:59:59Z\t2023-11-14T22:13:20Z\n"
        );
        assert_eq!(parse_records(&text), Ok(records));
    }

    #[test]
    fn a_bad_line_is_named_with_its_number() {
        let text = format!(
            "{HEADER}\n2\tserver\tlocalhost\t2026-12-31T23:59:59Z\t\n3\tclient\tx\t2026-12-31T23:59:59Z\t\n"
        );
        assert_eq!(
            parse_records(&text),
            Err("line 3: kind \"client\" is not server, hub, national or obp".to_owned())
        );
        assert!(parse_records("").unwrap_err().starts_with("line 1"));
        let short = format!("{HEADER}\n2\tserver\n");
        assert_eq!(parse_records(&short), Err("line 2: 2 fields where 5 are expected".to_owned()));
    }
}
