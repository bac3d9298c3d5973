//! The command-line interface: every subcommand and flag, parsed raw by clap and validated by the commands.

use clap::{Parser, Subcommand};

/// OpenMVS: an open-source medicines verification system (EU Falsified Medicines Directive).
#[derive(Debug, Parser)]
#[command(name = "openmvs", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse what a scanner delivered for one pack and print its fields as JSON.
    ///
    /// Reads INPUT, or raw bytes from standard input when INPUT is `-` (one trailing CR/LF is
    /// stripped). Refused input exits with status 2 and one line on stderr naming the element and the rule.
    Scan {
        /// The scanned data: a GS1 element string (GS as ASCII 29), an ISO/IEC 15434 envelope,
        /// the bracket form `(01)...(17)...`, or a GS1 Digital Link URI; `-` reads standard input.
        input: String,
        /// The day to resolve the expiry's century against, `YYYY-MM-DD` (default: today, UTC).
        #[arg(long)]
        today: Option<String>,
    },
    /// Print the catalogue of return codes as JSON.
    ReturnCodes,
}
