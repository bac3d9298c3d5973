//! `openmvs return-codes`: prints the catalogue, generated from the core's one table.

use std::process::ExitCode;

use crate::out::outln;
use openmvs_wire::ReturnCodeCatalogue;

pub fn run() -> anyhow::Result<ExitCode> {
    outln!("{}", serde_json::to_string_pretty(&ReturnCodeCatalogue::build())?);
    Ok(ExitCode::SUCCESS)
}
