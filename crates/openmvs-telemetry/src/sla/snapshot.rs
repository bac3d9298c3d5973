//! The persisted form of an [`SlaTracker`](crate::SlaTracker): plain structs and a line-based text
//! encoding that needs no serialisation library.

use std::fmt::Write as _;

use super::availability::{AvailabilityDay, MINUTE_WORDS};
use super::incidents::Incident;
use crate::op_class::OpClass;

/// The first line of an encoded snapshot; a new format gets a new version.
const HEADER: &str = "openmvs-sla-snapshot v1";

/// At most this many lines are read, far above what a snapshot holds (128 day lines, 32
/// availability lines, 50 incidents), so a wrong file fails fast.
const MAX_LINES: usize = 1_000;

/// The figures of one operation class on one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayFigures {
    /// The operation class (only verification and status update are tracked).
    pub class: OpClass,
    /// Days since 1970-01-01.
    pub day: i64,
    /// Requests answered.
    pub count: u64,
    /// Requests answered in strictly less than 300 ms.
    pub under_300ms: u64,
    /// The sum of their latencies, in microseconds.
    pub sum_micros: u64,
}

/// Everything an [`SlaTracker`](crate::SlaTracker) holds, from
/// [`SlaTracker::snapshot`](crate::SlaTracker::snapshot).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlaSnapshot {
    /// Day figures, by class then day.
    pub days: Vec<DayFigures>,
    /// Minute bits, oldest day first.
    pub availability: Vec<AvailabilityDay>,
    /// Incidents, oldest first.
    pub incidents: Vec<Incident>,
    /// The id the next incident will get, so ids stay unique across restarts.
    pub next_incident_id: u64,
}

/// A snapshot text that [`SlaSnapshot::decode`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SLA snapshot line {line}: {reason}")]
pub struct SnapshotError {
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

impl SlaSnapshot {
    /// The snapshot as text, one record a line, fields separated by single spaces:
    ///
    /// ```text
    /// openmvs-sla-snapshot v1
    /// next_incident_id 3
    /// day verification 20454 1200 1187 3840000
    /// availability 20454 <23 hex words, comma-separated> <23 hex words>
    /// incident 2 1767225600000 1767229200000 Verification\sslow Detail\stext
    /// incident 3 1767232800000 - Ongoing\sincident Detail
    /// ```
    ///
    /// Day lines are `day <class> <day> <count> <under_300ms> <sum_micros>`; an open incident
    /// has `-` as its end; in titles and details `\` is written `\\`, space `\s`, tab `\t`,
    /// line feed `\n` and carriage return `\r`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{HEADER}");
        let _ = writeln!(out, "next_incident_id {}", self.next_incident_id);
        for d in &self.days {
            let _ = writeln!(out, "day {} {} {} {} {}", d.class, d.day, d.count, d.under_300ms, d.sum_micros);
        }
        for a in &self.availability {
            let _ = writeln!(out, "availability {} {} {}", a.day, hex_words(&a.observed), hex_words(&a.down));
        }
        for i in &self.incidents {
            let ended = i.ended_at_millis.map_or_else(|| "-".to_owned(), |e| e.to_string());
            let _ = writeln!(
                out,
                "incident {} {} {ended} {} {}",
                i.id,
                i.started_at_millis,
                escape(&i.title),
                escape(&i.detail)
            );
        }
        out
    }

    /// Reads what [`SlaSnapshot::encode`] wrote.
    pub fn decode(text: &str) -> Result<SlaSnapshot, SnapshotError> {
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        match lines.next() {
            Some((_, HEADER)) => {}
            _ => return Err(SnapshotError { line: 1, reason: format!("expected '{HEADER}'") }),
        }
        let mut snapshot = SlaSnapshot::default();
        for (n, line) in lines {
            let fail = |reason: String| SnapshotError { line: n, reason };
            if n > MAX_LINES {
                return Err(fail(format!("more than {MAX_LINES} lines")));
            }
            let fields: Vec<&str> = line.split(' ').collect();
            match fields.as_slice() {
                [] | [""] => {}
                ["next_incident_id", id] => snapshot.next_incident_id = number(id).map_err(fail)?,
                ["day", class, day, count, under, sum] => {
                    let class = OpClass::from_label(class)
                        .ok_or_else(|| fail(format!("unknown operation class '{class}'")))?;
                    let d = DayFigures {
                        class,
                        day: number(day).map_err(fail)?,
                        count: number(count).map_err(fail)?,
                        under_300ms: number(under).map_err(fail)?,
                        sum_micros: number(sum).map_err(fail)?,
                    };
                    if d.under_300ms > d.count {
                        return Err(fail(format!(
                            "{} requests under 300 ms out of {}",
                            d.under_300ms, d.count
                        )));
                    }
                    snapshot.days.push(d);
                }
                ["availability", day, observed, down] => snapshot.availability.push(AvailabilityDay {
                    day: number(day).map_err(fail)?,
                    observed: parse_words(observed).map_err(fail)?,
                    down: parse_words(down).map_err(fail)?,
                }),
                ["incident", id, started, ended, title, detail] => {
                    snapshot.incidents.push(Incident {
                        id: number(id).map_err(fail)?,
                        started_at_millis: number(started).map_err(fail)?,
                        ended_at_millis: match *ended {
                            "-" => None,
                            e => Some(number(e).map_err(fail)?),
                        },
                        title: unescape(title).map_err(fail)?,
                        detail: unescape(detail).map_err(fail)?,
                    });
                }
                [kind, ..] => {
                    return Err(fail(format!(
                        "unknown record '{kind}' or wrong number of fields ({})",
                        fields.len()
                    )));
                }
            }
        }
        Ok(snapshot)
    }
}

fn number<T: std::str::FromStr>(field: &str) -> Result<T, String> {
    field.parse().map_err(|_| format!("'{field}' is not a valid number here"))
}

fn hex_words(words: &[u64; MINUTE_WORDS]) -> String {
    let mut out = String::new();
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{w:x}");
    }
    out
}

fn parse_words(field: &str) -> Result<[u64; MINUTE_WORDS], String> {
    let mut words = [0u64; MINUTE_WORDS];
    let mut parts = field.split(',');
    for word in &mut words {
        let part = parts.next().ok_or_else(|| format!("expected {MINUTE_WORDS} minute words"))?;
        *word = u64::from_str_radix(part, 16).map_err(|_| format!("'{part}' is not a hex word"))?;
    }
    if parts.next().is_some() {
        return Err(format!("expected {MINUTE_WORDS} minute words"));
    }
    // Bits past minute 1 439 (the second half of the last word) do not exist.
    if words[MINUTE_WORDS - 1] >> 32 != 0 {
        return Err("minute bits past the end of the day".to_owned());
    }
    Ok(words)
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ' ' => out.push_str("\\s"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(field: &str) -> Result<String, String> {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next() {
            Some('\\') => '\\',
            Some('s') => ' ',
            Some('t') => '\t',
            Some('n') => '\n',
            Some('r') => '\r',
            other => {
                return Err(format!("unknown escape '\\{}'", other.map(String::from).unwrap_or_default()));
            }
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SlaSnapshot {
        let mut observed = [0; MINUTE_WORDS];
        observed[0] = 0b111;
        observed[MINUTE_WORDS - 1] = 0xffff_ffff;
        let mut down = [0; MINUTE_WORDS];
        down[0] = 0b010;
        SlaSnapshot {
            days: vec![
                DayFigures {
                    class: OpClass::Verification,
                    day: 20_454,
                    count: 10,
                    under_300ms: 9,
                    sum_micros: 12_345,
                },
                DayFigures {
                    class: OpClass::StatusUpdate,
                    day: 20_455,
                    count: 1,
                    under_300ms: 0,
                    sum_micros: 400_000,
                },
            ],
            availability: vec![AvailabilityDay { day: 20_455, observed, down }],
            incidents: vec![
                Incident {
                    id: 4,
                    started_at_millis: 1_767_225_600_000,
                    ended_at_millis: Some(1_767_229_200_000),
                    title: "Verification slow".into(),
                    detail: "Back end\\store at 90%\nline two\ttab".into(),
                },
                Incident {
                    id: 5,
                    started_at_millis: 1,
                    ended_at_millis: None,
                    title: String::new(),
                    detail: "x".into(),
                },
            ],
            next_incident_id: 6,
        }
    }

    #[test]
    fn a_snapshot_survives_encoding_and_decoding() {
        let snapshot = sample();
        let text = snapshot.encode();
        assert!(text.starts_with("openmvs-sla-snapshot v1\n"), "{text}");
        assert!(text.contains("\nday verification 20454 10 9 12345\n"), "{text}");
        assert_eq!(SlaSnapshot::decode(&text), Ok(snapshot));
    }

    #[test]
    fn an_empty_snapshot_survives_encoding_and_decoding() {
        let snapshot = SlaSnapshot::default();
        assert_eq!(SlaSnapshot::decode(&snapshot.encode()), Ok(snapshot));
    }

    #[test]
    fn damaged_snapshots_are_refused_with_the_line_number() {
        let check = |text: &str, line: usize, reason: &str| {
            let err = SlaSnapshot::decode(text).unwrap_err();
            assert_eq!(err.line, line, "{err}");
            assert!(err.reason.contains(reason), "{err}");
        };
        check("", 1, "expected 'openmvs-sla-snapshot v1'");
        check("openmvs-sla-snapshot v2\n", 1, "expected");
        check("openmvs-sla-snapshot v1\nday hub 1 1 1 1\n", 2, "unknown operation class 'hub'");
        check("openmvs-sla-snapshot v1\nday verification 1 1 2 1\n", 2, "2 requests under 300 ms out of 1");
        check("openmvs-sla-snapshot v1\n\nday verification 1 x 0 0\n", 3, "'x' is not a valid number");
        check("openmvs-sla-snapshot v1\navailability 1 0 0\n", 2, "expected 23 minute words");
        check("openmvs-sla-snapshot v1\nincident 1 2 - a\\q b\n", 2, "unknown escape '\\q'");
        check("openmvs-sla-snapshot v1\nincident 1 2 - a b c\n", 2, "wrong number of fields (7)");
        let past_the_day =
            format!("availability 1 {} 0{}", ["0"; 22].join(",") + ",100000000", ",0".repeat(22));
        check(&format!("openmvs-sla-snapshot v1\n{past_the_day}\n"), 2, "past the end of the day");
    }
}
