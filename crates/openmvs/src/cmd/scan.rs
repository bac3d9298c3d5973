//! `openmvs scan`: parses one scanner input and prints its fields, or says exactly why it cannot.

use std::io::Read;
use std::process::ExitCode;

use crate::out::outln;
use anyhow::{Context, bail};
use openmvs_core::scan;
use openmvs_core::time::{Clock, Date};
use openmvs_wire::ScanOutput;

/// Exit status for input that was read but refused.
const REFUSED: u8 = 2;

/// Parses `input` (`-`: standard input) as of `today`, or of the clock's date without it.
pub fn run(input: &str, today: Option<&str>, clock: &dyn Clock) -> anyhow::Result<ExitCode> {
    let today = match today {
        Some(s) => parse_date(s).with_context(|| format!("--today '{s}'"))?,
        None => clock.now().date(),
    };
    let bytes = if input == "-" {
        let mut buf = Vec::new();
        std::io::stdin().lock().read_to_end(&mut buf).context("reading standard input")?;
        buf
    } else {
        input.as_bytes().to_vec()
    };
    // The parser itself strips one trailing CR/LF, as a scanner's suffix.
    match scan::parse(&bytes, today) {
        Ok(s) => {
            outln!("{}", serde_json::to_string_pretty(&ScanOutput::from(&s))?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(REFUSED))
        }
    }
}

fn parse_date(s: &str) -> anyhow::Result<Date> {
    let parts: Vec<&str> = s.split('-').collect();
    let [y, m, d] = parts.as_slice() else { bail!("expected YYYY-MM-DD") };
    let (Ok(y), Ok(m), Ok(d)) = (y.parse(), m.parse(), d.parse()) else { bail!("expected YYYY-MM-DD") };
    Date::new(y, m, d).context("no such date")
}
