//! The pack commands for people at a counter: `openmvs verify|supply|destroy|export|sample|
//! free-sample|lock|stolen` and `openmvs undo OPERATION`. Each sends one single-pack request to a
//! national system through `openmvs-client` (its token, its retries with the same
//! `client_trx_id`), and prints the answer readably or, with `--json`, as the national system sent
//! it. The exit status is the outcome's class: 0 accepted, 3 refused by the rules, 4 an alert, 1
//! an error (2 is clap's, for a usage error).

mod connect;
mod show;

pub use connect::{demo_profiles, render_profiles};

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use openmvs_client::wire::CommandError;
use openmvs_client::wire::api::PackResponse;
use openmvs_client::{
    ClientError, EndUserClient, EndUserConfig, EntryMode, PackInput, PackOperation, UndoOperation,
    new_client_trx_id,
};
use openmvs_core::scan;
use openmvs_core::time::{Clock, Date};

use crate::cli::{EntryModeArg, PackArgs, UndoArg};
use crate::out::outln;
use show::{Asked, Outcome};

/// The exit status of an error: bad input, settings, login, network, an HTTP error.
const ERROR: u8 = 1;

/// A single-pack request: an operation or the undo of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `POST /v1/packs/{operation}`.
    Pack(PackOperation),
    /// `POST /v1/packs/{operation}/undo`.
    Undo(UndoOperation),
}

impl Operation {
    /// Its name for people, e.g. `free-sample` or `undo supply`.
    fn name(self) -> String {
        match self {
            Operation::Pack(op) => op.as_str().to_owned(),
            Operation::Undo(op) => format!("undo {}", op.as_str()),
        }
    }
}

impl From<UndoArg> for UndoOperation {
    fn from(a: UndoArg) -> UndoOperation {
        match a {
            UndoArg::Supply => UndoOperation::Supply,
            UndoArg::Export => UndoOperation::Export,
            UndoArg::Sample => UndoOperation::Sample,
            UndoArg::FreeSample => UndoOperation::FreeSample,
            UndoArg::Lock => UndoOperation::Lock,
        }
    }
}

/// Why a command ended without an answer of the rules.
enum Failure {
    /// Input refused before any request: the message `openmvs scan` prints for it.
    Input(String),
    /// Where to connect is missing or unusable.
    Settings(anyhow::Error),
    /// The request went out and failed; `hint` says what to check.
    Call { error: ClientError, hint: String },
}

/// Runs `operation` as `args` say, on the date `clock` gives (for reading a scan's expiry).
pub fn run(operation: Operation, args: PackArgs, clock: &dyn Clock) -> anyhow::Result<ExitCode> {
    // The one place the pack commands read the environment; everything below takes a lookup.
    let env = |name: &str| std::env::var(name).ok();
    let today = clock.now().date();
    let client_trx_id = args.client_trx_id.clone().unwrap_or_else(new_client_trx_id);
    match request(operation, &args, &client_trx_id, today, &env) {
        Ok((answer, asked)) => {
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                outln!("{}", show::answer(&operation.name(), &answer, &asked, today));
            }
            Ok(ExitCode::from(Outcome::of(&answer).exit_status()))
        }
        Err(failure) => {
            let e = command_error(failure, &client_trx_id);
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&e)?);
            } else if e.error == "input" {
                // As `openmvs scan` says it, so the hint reads the same in both.
                eprintln!("{}", e.message);
            } else {
                eprintln!("openmvs: {}", e.message);
            }
            Ok(ExitCode::from(ERROR))
        }
    }
}

/// The pack `args` name, checked as far as it can be before any request, and what was asked.
fn pack_input(args: &PackArgs, today: Date) -> Result<(PackInput, Asked), Failure> {
    let (input, asked) = match (&args.scan, &args.product_code) {
        (Some(raw), _) => {
            let raw = if raw == "-" {
                let mut buf = Vec::new();
                std::io::stdin()
                    .lock()
                    .read_to_end(&mut buf)
                    .map_err(|e| Failure::Input(format!("reading the scan from standard input: {e}")))?;
                buf
            } else {
                raw.as_bytes().to_vec()
            };
            // The national system parses the scan itself; reading it here first shows a person
            // why a scan cannot be read (a lost group separator) before anything is sent.
            let parsed = scan::parse(&raw, today).map_err(|e| Failure::Input(e.to_string()))?;
            let text = String::from_utf8(raw)
                .map_err(|_| Failure::Input("the scan is not text (UTF-8)".to_owned()))?;
            let id = &parsed.id;
            let asked = Asked {
                product_code: id.product_code.as_str().to_owned(),
                serial: id.serial.as_str().to_owned(),
                batch: id.batch.as_str().to_owned(),
                expiry: id.expiry.as_str().to_owned(),
            };
            (PackInput::scan(text), asked)
        }
        (None, Some(product_code)) => {
            let field = |v: &Option<String>| v.clone().unwrap_or_default();
            let asked = Asked {
                product_code: product_code.clone(),
                serial: field(&args.serial),
                batch: field(&args.batch),
                expiry: field(&args.expiry),
            };
            let scheme = args.scheme.clone().unwrap_or_else(|| "GTIN".to_owned());
            let input =
                PackInput::fields(scheme, &asked.product_code, &asked.serial, &asked.batch, &asked.expiry);
            (input, asked)
        }
        // clap requires one of the two.
        (None, None) => {
            return Err(Failure::Input("give --scan, or --product-code --serial --batch --expiry".into()));
        }
    };
    let input = match args.entry_mode {
        Some(EntryModeArg::Scanned) => input.with_entry_mode(EntryMode::Scanned),
        Some(EntryModeArg::Manual) => input.with_entry_mode(EntryMode::Manual),
        None => input,
    };
    Ok((input, asked))
}

/// Sends the request and gives the national system's answer, or why there is none.
fn request(
    operation: Operation,
    args: &PackArgs,
    client_trx_id: &str,
    today: Date,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(PackResponse, Asked), Failure> {
    let (input, asked) = pack_input(args, today)?;
    let input = input.with_client_trx_id(client_trx_id);
    let settings = connect::resolve(&args.connection, env).map_err(Failure::Settings)?;
    let ca_pem = connect::read_ca(&settings).map_err(Failure::Settings)?;
    let mut config = EndUserConfig::new(&settings.url, &settings.client_id, &settings.client_secret)
        .with_timeout(settings.timeout);
    config.ca_pem = ca_pem;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
        .map_err(Failure::Settings)?;
    let answer = runtime.block_on(async {
        let client = EndUserClient::new(config)?;
        match operation {
            Operation::Pack(op) => client.pack(op, &input).await,
            Operation::Undo(op) => client.undo(op, &input).await,
        }
    });
    answer.map(|a| (a, asked)).map_err(|error| {
        let hint = match &error {
            ClientError::Login { .. } => {
                format!("check the client id and secret ({})", settings.credentials_from)
            }
            // Before the token, nothing about the pack was sent.
            ClientError::Transport { what, .. } if what.ends_with("/oauth/token") => {
                format!("is the national system at {} running and reachable?", settings.url)
            }
            ClientError::Transport { .. } => format!(
                "the national system at {} may have processed the request: send it again with \
                 --client-trx-id {client_trx_id} to get its answer without doing it twice",
                settings.url
            ),
            ClientError::Config { .. } => format!("the settings for {}", settings.url),
            _ => String::new(),
        };
        Failure::Call { error, hint }
    })
}

/// The error as `--json` prints it; its `message` is what a person reads.
fn command_error(failure: Failure, client_trx_id: &str) -> CommandError {
    let plain = |error: &str, message: String| CommandError {
        error: error.to_owned(),
        message,
        client_trx_id: client_trx_id.to_owned(),
        status: None,
        return_code: None,
        details: Vec::new(),
    };
    match failure {
        Failure::Input(message) => plain("input", message),
        Failure::Settings(e) => plain("settings", format!("{e:#}")),
        Failure::Call { error, hint } => {
            let kind = match &error {
                ClientError::Refused { .. } => "http",
                ClientError::Login { .. } => "login",
                ClientError::Transport { .. } => "network",
                ClientError::Config { .. } => "settings",
                ClientError::InvalidInput { .. } => "input",
                _ => "answer",
            };
            let status = error.status();
            let (return_code, details) = match error.error_body() {
                Some(b) => (Some(b.return_code.clone()), b.details.clone()),
                None => (None, Vec::new()),
            };
            let mut message = chain(&error);
            if !hint.is_empty() {
                message.push_str(&format!("; {hint}"));
            }
            CommandError { status, return_code, details, ..plain(kind, message) }
        }
    }
}

/// `error` and its causes, each cause that its effect does not already quote: a network error's
/// cause (refused, reset, a certificate) is deep down the chain, while the client's own message
/// already quotes the first one.
fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !message.contains(&text) {
            message.push_str(&format!(": {text}"));
        }
        cause = c.source();
    }
    message
}
