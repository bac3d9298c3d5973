//! The command-line interface: every subcommand and flag, parsed raw by clap and validated by the commands.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

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
    /// Verify a pack at a national system: is it known, does it match, may it be dispensed?
    #[command(after_help = PACK_SHORT_HELP, after_long_help = PACK_HELP)]
    Verify(PackArgs),
    /// Supply (dispense) a pack: it becomes SUPPLIED.
    #[command(after_help = PACK_SHORT_HELP, after_long_help = PACK_HELP)]
    Supply(PackArgs),
    /// Destroy a pack: it becomes DESTROYED (never undone).
    #[command(after_help = PACK_SHORT_HELP, after_long_help = PACK_HELP)]
    Destroy(PackArgs),
    /// Export a pack out of the EU (wholesalers): it becomes EXPORTED.
    #[command(after_help = PACK_SHORT_HELP, after_long_help = PACK_HELP)]
    Export(PackArgs),
    /// Hand a pack to an authority as a sample: it becomes SAMPLE.
    #[command(after_help = PACK_SHORT_HELP, after_long_help = PACK_HELP)]
    Sample(PackArgs),
    /// Hand a pack out as a free sample: it becomes FREE_SAMPLE.
    #[command(after_help = PACK_SHORT_HELP, after_long_help = PACK_HELP)]
    FreeSample(PackArgs),
    /// Lock a pack (kept aside while a question is cleared): it becomes LOCKED.
    #[command(after_help = PACK_SHORT_HELP, after_long_help = PACK_HELP)]
    Lock(PackArgs),
    /// Report a pack stolen: it becomes STOLEN (never undone).
    #[command(after_help = PACK_SHORT_HELP, after_long_help = PACK_HELP)]
    Stolen(PackArgs),
    /// Undo a supply, export, sample, free sample or lock (unlock): the pack is ACTIVE again.
    /// Only the location that made the change may undo it, within 10 days.
    #[command(after_help = PACK_SHORT_HELP, after_long_help = PACK_HELP)]
    Undo {
        /// The operation to undo.
        operation: UndoArg,
        #[command(flatten)]
        pack: PackArgs,
    },
    /// Run a component for production.
    #[command(subcommand)]
    Serve(Serve),
    /// The offline agent a pharmacy runs beside its software (DR Art 29): the end-user API on
    /// 127.0.0.1, forwarded to the national system; what cannot be forwarded is recorded and
    /// replayed, verify first, when the system is back. `GET /status` shows the queue and the
    /// packs to look at.
    Agent {
        /// The configuration file (an `[agent]` section; see `openmvs config check`).
        #[arg(long)]
        config: PathBuf,
    },
    /// Check a configuration file and print the effective configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Administration of a national system's data directory.
    #[command(subcommand)]
    Admin(Admin),
    /// The audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Apply the storage schema's pending migrations (PostgreSQL nodes refuse to start without
    /// them; the embedded store applies its own when it opens).
    Migrate {
        /// The national system to migrate.
        #[command(flatten)]
        target: Target,
    },
    /// Run the deterministic simulation: a hub, three national systems, an OBP and the terminals
    /// of a generated workload in one process, under network faults, partitions and crashes drawn
    /// from a seed; then heal and check the invariants.
    ///
    /// With `--seed` alone it runs one schedule and prints its trace (the same seed prints the same
    /// trace, byte for byte) and what it found. With `--count` it runs the seeds from `--seed` on
    /// and prints their summary, and the command that runs each failing seed again. Exits with
    /// status 1 when an invariant broke.
    Sim {
        /// The seed (the first seed with `--count`).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Steps of each schedule before the network heals.
        #[arg(long, default_value_t = 200)]
        steps: u64,
        /// Run this many seeds, from `--seed` on, and print their summary instead of a trace.
        #[arg(long)]
        count: Option<u64>,
        /// Threads for `--count` (each schedule runs on one thread).
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A hub and one national system per market in this process, over HTTPS, with sample data,
    /// clients and OBP certificates listed in DIR/demo.json; serves until interrupted.
    Demo {
        /// Where everything is kept; a restart on the same directory keeps all data.
        #[arg(long, default_value = "openmvs-data")]
        data_dir: PathBuf,
        /// The hub's port; the national systems take the next ones, in market order.
        #[arg(long, default_value_t = 8400)]
        port_base: u16,
        /// The markets, comma-separated.
        #[arg(long, default_value = "DE,FR,SE")]
        markets: String,
        /// One shared clock that `POST /admin/v1/clock` moves forward (bearer: the admin token).
        #[arg(long)]
        fake_clock: bool,
        /// Where the systems keep their data: `sqlite` (files in DIR) or `postgres` (one schema
        /// per system in the database of `--database-url`, named `<schema-prefix>_<system>`; a
        /// new demo, one without DIR/demo.json, starts them empty).
        #[arg(long, default_value = "sqlite")]
        storage: String,
        /// The PostgreSQL database for `--storage postgres` (default: `OPENMVS_DATABASE_URL`),
        /// e.g. `postgres://postgres@127.0.0.1:5432/postgres`.
        #[arg(long)]
        database_url: Option<String>,
        /// The schemas' names start with this, then `_<system>` (`_de`, `_hub`).
        #[arg(long, default_value = "openmvs_demo")]
        schema_prefix: String,
    },
}

/// `openmvs serve ...`.
#[derive(Debug, Subcommand)]
pub enum Serve {
    /// The European Hub (a `[hub]` section).
    Hub {
        /// The configuration file (see `openmvs config check`).
        #[arg(long)]
        config: PathBuf,
    },
    /// A national system.
    National {
        /// The configuration file (see `openmvs config check`).
        #[arg(long)]
        config: PathBuf,
    },
}

/// `openmvs config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the file (and `OPENMVS__...` environment overrides) and print the effective configuration.
    Check {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
    },
}

/// Where a national system's data lives.
#[derive(Debug, Args)]
pub struct Target {
    /// The national system's configuration file.
    #[arg(long, conflicts_with = "data_dir")]
    pub config: Option<PathBuf>,
    /// Or its data directory directly.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// `openmvs admin ...`.
#[derive(Debug, Subcommand)]
pub enum Admin {
    /// Client certificates of on-boarding partners, issued by the hub's CA.
    #[command(subcommand)]
    Obp(ObpCommand),
    /// End-user and authority clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Messages to the hub that gave up.
    #[command(subcommand)]
    DeadLetters(DeadLetterCommand),
    /// Incidents on the status page and in the feeds: of a national system, or of the hub with
    /// `--config` naming the hub's configuration (or `--data-dir` the hub's data directory).
    #[command(subcommand)]
    Incident(IncidentCommand),
    /// Apply hub messages from a JSON file (`{"messages": [...]}`, the hub's delivery format), as
    /// if the hub had delivered them: for loading master data and packs into a standalone system.
    Import {
        #[command(flatten)]
        target: Target,
        /// The file.
        file: PathBuf,
    },
    /// Create a product, a batch and N active packs with generated serials (test systems and benchmarks).
    Seed {
        #[command(flatten)]
        target: Target,
        /// The GTIN.
        #[arg(long, default_value = "09501101530003")]
        product_code: String,
        /// The batch.
        #[arg(long, default_value = "SEED1")]
        batch: String,
        /// The expiry, YYMMDD.
        #[arg(long, default_value = "301231")]
        expiry: String,
        /// How many packs.
        #[arg(long, default_value_t = 1000)]
        packs: u64,
        /// Serials are this prefix followed by a zero-padded number.
        #[arg(long, default_value = "S")]
        prefix: String,
        /// Every market of the batch, comma-separated (default: the system's own).
        #[arg(long)]
        markets: Option<String>,
    },
    /// Make a new token-signing key active (tokens of the old key stay valid until they expire).
    RotateTokenKey {
        #[command(flatten)]
        target: Target,
    },
    /// End a key's validity at once: tokens it signed are refused from now on, by every running
    /// node within seconds. The active key cannot be retired: rotate first (`rotate-token-key`),
    /// then retire the old key. Audited.
    RetireTokenKey {
        #[command(flatten)]
        target: Target,
        /// The key id, as `token-keys` lists it.
        #[arg(long)]
        kid: String,
    },
    /// List the token-signing keys: id, state (active, retired, revoked) and dates.
    TokenKeys {
        #[command(flatten)]
        target: Target,
    },
    /// Copy the embedded store's database (a national system's, or the hub's with its
    /// configuration or data directory) into a new file while the system serves: the copy is the
    /// database as of one commit. The keys in the data directory are not in it: keep them apart.
    Backup {
        #[command(flatten)]
        target: Target,
        /// The backup file to write (it must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Put a backup in place of the system's embedded database, every node stopped; then check
    /// it with `openmvs audit verify`.
    Restore {
        #[command(flatten)]
        target: Target,
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
        /// Replace the database there (refused while a node's heartbeat in it is recent).
        #[arg(long)]
        replace: bool,
    },
}

/// `openmvs admin obp ...`.
#[derive(Debug, Subcommand)]
pub enum ObpCommand {
    /// Issue a client certificate naming the OBP (`<id>.obp.openmvs`) and write `<id>.pem`,
    /// `<id>.key` and `<id>.json` to the output directory. The hub on-boards the OBP at its first
    /// request with the certificate.
    Create {
        /// The hub's CA directory.
        #[arg(long)]
        ca_dir: PathBuf,
        /// The OBP id: 1-40 characters a-z, 0-9 and -.
        #[arg(long)]
        id: String,
        /// The OBP's name, for people (kept in `<id>.json`).
        #[arg(long)]
        name: String,
        /// Where the certificate and key are written.
        #[arg(long)]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Revoke a certificate by serial, or every certificate of an OBP: the hub refuses it from
    /// the next connection on (it re-reads the CA's crl.pem every few seconds).
    Revoke {
        /// The hub's CA directory.
        #[arg(long)]
        ca_dir: PathBuf,
        /// The certificate's serial, as `create` printed it.
        #[arg(long, conflicts_with = "id", required_unless_present = "id")]
        serial: Option<u64>,
        /// Or the OBP id.
        #[arg(long)]
        id: Option<String>,
    },
}

/// `openmvs admin client ...`.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create a client and print its id and secret (the secret is shown only this once).
    Create {
        #[command(flatten)]
        target: Target,
        /// The market (must be the national system's).
        #[arg(long)]
        market: String,
        /// PHARMACY, HOSPITAL, WHOLESALER, NMVO or NCA.
        #[arg(long)]
        role: String,
        /// The premises id.
        #[arg(long)]
        location: String,
        /// A name for people.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List the clients (without secrets): id, role, location, state (enabled or disabled), when
    /// each was last seen (its last token, or its last request as the nodes report it every 30 s)
    /// and its name, as a table with a header line.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Cut a client off: it gets no new token, and the tokens it holds are refused by every
    /// running node within seconds. Audited.
    Disable {
        #[command(flatten)]
        target: Target,
        /// The client's id.
        #[arg(long)]
        client_id: String,
    },
    /// Let a client that was cut off back in. Audited.
    Enable {
        #[command(flatten)]
        target: Target,
        /// The client's id.
        #[arg(long)]
        client_id: String,
    },
}

/// `openmvs admin dead-letters ...`.
#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// List them.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Put one back in the delivery queue.
    Replay {
        #[command(flatten)]
        target: Target,
        /// Its sequence number, from `list`.
        seq: u64,
    },
}

/// `openmvs admin incident ...`.
#[derive(Debug, Subcommand)]
pub enum IncidentCommand {
    /// List incidents, newest first.
    List {
        #[command(flatten)]
        target: Target,
        /// Only those not resolved yet.
        #[arg(long)]
        open: bool,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON, one incident per line, with every update.
        #[arg(long)]
        json: bool,
    },
    /// Open an incident; it shows on the status page and in the feeds at once.
    Open {
        #[command(flatten)]
        target: Target,
        /// Its title.
        #[arg(long)]
        title: String,
        /// minor, major or critical.
        #[arg(long, default_value = "minor")]
        impact: String,
        /// investigating, identified or monitoring.
        #[arg(long, default_value = "investigating")]
        status: String,
        /// What is known.
        #[arg(long)]
        message: String,
        /// Who writes (shown to operators only).
        #[arg(long, default_value = "operator")]
        author: String,
    },
    /// Add an update to an incident.
    Update {
        #[command(flatten)]
        target: Target,
        /// Its number.
        id: u64,
        /// investigating, identified, monitoring or resolved.
        #[arg(long)]
        status: String,
        /// What is new.
        #[arg(long)]
        message: String,
        /// A new impact: minor, major or critical.
        #[arg(long)]
        impact: Option<String>,
        /// Who writes.
        #[arg(long, default_value = "operator")]
        author: String,
    },
    /// Resolve an incident.
    Resolve {
        #[command(flatten)]
        target: Target,
        /// Its number.
        id: u64,
        /// What ended it.
        #[arg(long)]
        message: String,
        /// Who writes.
        #[arg(long, default_value = "operator")]
        author: String,
    },
}

/// `openmvs audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every record and signed checkpoint of the trail, and the signed heads kept outside
    /// the database (`audit-heads.jsonl`, `--heads`); names the first bad record or the missing end.
    Verify {
        /// The national system: `--config FILE` (its storage, embedded or PostgreSQL) or `--data-dir DIR`;
        /// or the hub: `--config FILE` with a `[hub]` section and no `[national]` one.
        #[command(flatten)]
        target: Target,
        /// Trust these public keys (hex) instead of the data directory's `audit-signing.pub`.
        #[arg(long = "public-key")]
        public_keys: Vec<String>,
        /// Also check the trail against the signed heads in FILE, as `openmvs audit heads` printed
        /// them at the hub (repeatable). The data directory's `audit-heads.jsonl` is always checked.
        #[arg(long = "heads", value_name = "FILE")]
        heads: Vec<PathBuf>,
    },
    /// Print the latest signed audit head the hub received from each national system, one JSON
    /// line per market, for `openmvs audit verify --heads FILE` at the national system.
    Heads {
        /// The hub: `--config FILE` (its storage, embedded or PostgreSQL) or `--data-dir DIR`.
        #[command(flatten)]
        target: Target,
        /// Only this market's head.
        #[arg(long)]
        market: Option<String>,
    },
    /// Print the records of the trail that meet every criterion given, in commit order, as CSV
    /// (default) or JSON lines: a national system's, or the hub's own with the hub's `--config`
    /// or data directory. Reads only.
    Search {
        /// The national system or the hub, as for `verify`.
        #[command(flatten)]
        target: Target,
        /// Records about this product (GTIN): its packs, batches and master data.
        #[arg(long)]
        product_code: Option<String>,
        /// With `--product-code`: only the records about this pack.
        #[arg(long, requires = "product_code")]
        serial: Option<String>,
        /// Records about exactly this subject, e.g. `alert/ALR-...` or `client/cl_...`.
        #[arg(long, conflicts_with_all = ["product_code", "serial"])]
        subject: Option<String>,
        /// Records of what this client (or `hub`, `system`, an OBP) did.
        #[arg(long)]
        client_id: Option<String>,
        /// Records from these premises.
        #[arg(long)]
        location: Option<String>,
        /// This operation, e.g. `supply`, `audit-read`, `hub-packs`, `upload`.
        #[arg(long)]
        operation: Option<String>,
        /// At or after this date (YYYY-MM-DD, UTC) or RFC 3339 instant.
        #[arg(long)]
        from: Option<String>,
        /// Up to this date, included, or before this instant.
        #[arg(long)]
        to: Option<String>,
        /// `csv` or `json` (one JSON object per line).
        #[arg(long, default_value = "csv")]
        format: String,
        /// At most this many records (0: all).
        #[arg(long, default_value_t = 0)]
        limit: usize,
    },
}

/// What `-h` of the pack commands adds.
const PACK_SHORT_HELP: &str = "Exit status: 0 accepted, 3 refused by the rules, 4 alert raised, 1 error, 2 usage error (--help says more).";

/// What `--help` of the pack commands adds: the exit status and where the connection comes from.
const PACK_HELP: &str = "\
Exit status:
  0  accepted: the operation did what was asked
  3  refused by the rules: processed, not accepted, no alert raised (e.g. a repeated supply,
     an expired or recalled batch)
  4  an alert was raised (e.g. an unknown serial): keep the pack aside
  1  error: unreadable input, missing connection settings, login refused, no answer, or an
     HTTP error after the client's retries
  2  usage error (flags)

Connection, each from the first of: a flag, the environment, the profile:
  URL            --url        OPENMVS_URL            url
  client id      --client-id  OPENMVS_CLIENT_ID      client_id
  client secret  -            OPENMVS_CLIENT_SECRET  client_secret, or client_secret_env naming a variable
  CA certificate --ca-cert    OPENMVS_CA_CERT        ca_cert (relative to the profile file)
  timeout (s)    --timeout    OPENMVS_TIMEOUT        timeout (default 30)
The profile is --profile NAME or OPENMVS_PROFILE, a table [NAME] of the profile file: --profiles
FILE, OPENMVS_PROFILES, or profiles.toml in the platform's configuration directory (e.g.
~/.config/openmvs/profiles.toml). `openmvs demo` writes one for its clients (DIR/profiles.toml).
The secret is never a flag: other users of the machine could read it in the process list.";

/// The pack a single-pack command is about, and where to send it.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("identifier").required(true).args(["scan", "product_code"])))]
pub struct PackArgs {
    /// The raw scan, as the scanner delivered it (GS as the character ASCII 29, e.g.
    /// "$(printf ']d2010...10ABC\x1d21XYZ')"); `-` reads it from standard input. The national
    /// system parses it; a scan that cannot be read is refused here, before any request.
    #[arg(long, conflicts_with_all = ["product_code", "serial", "batch", "expiry", "scheme"])]
    pub scan: Option<String>,
    /// The product code (with --serial, --batch and --expiry instead of --scan).
    #[arg(long, requires_all = ["serial", "batch", "expiry"])]
    pub product_code: Option<String>,
    /// The serial number.
    #[arg(long, requires = "product_code")]
    pub serial: Option<String>,
    /// The batch.
    #[arg(long, requires = "product_code")]
    pub batch: Option<String>,
    /// The expiry as encoded, YYMMDD.
    #[arg(long, requires = "product_code")]
    pub expiry: Option<String>,
    /// The product code's scheme: GTIN or PPN (default GTIN).
    #[arg(long, requires = "product_code")]
    pub scheme: Option<String>,
    /// The request's id for this client (default: generated, and printed). Send a request again
    /// with the same id to get its first answer instead of doing it twice.
    #[arg(long)]
    pub client_trx_id: Option<String>,
    /// How the pack was read (default: the national system's).
    #[arg(long, value_enum)]
    pub entry_mode: Option<EntryModeArg>,
    /// Print the national system's answer as JSON (and errors as JSON), for scripts.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// Where a pack command connects (see `PACK_HELP` for the environment and the profile).
#[derive(Debug, Clone, Default, Args)]
pub struct ConnectionArgs {
    /// The profile to connect with (default: OPENMVS_PROFILE).
    #[arg(long)]
    pub profile: Option<String>,
    /// The profile file (default: OPENMVS_PROFILES, else the platform's
    /// openmvs/profiles.toml).
    #[arg(long, value_name = "FILE")]
    pub profiles: Option<PathBuf>,
    /// The national system's URL, e.g. https://127.0.0.1:8401.
    #[arg(long)]
    pub url: Option<String>,
    /// The client id.
    #[arg(long)]
    pub client_id: Option<String>,
    /// The CA certificate(s) to trust, PEM (required for https://).
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// The longest one attempt of a request may take, in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
}

/// `openmvs undo OPERATION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UndoArg {
    /// Undo a supply.
    Supply,
    /// Undo an export.
    Export,
    /// Undo a sample.
    Sample,
    /// Undo a free sample.
    FreeSample,
    /// Unlock.
    Lock,
}

/// `--entry-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EntryModeArg {
    /// Read by a scanner.
    Scanned,
    /// Typed by hand.
    Manual,
}
