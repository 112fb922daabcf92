//! `directwal`: inspect, dump, verify, repair and benchmark directwal
//! write-ahead logs. Every command shares one exit-status scheme
//! ([`EXIT_STATUS`]), printed by each `--help`.

mod bench;
mod dump;
mod filter;
mod follow;
mod inspect;
mod repair;
mod workloads;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use directwal::WalError;
use directwal::crypto::{KeyRing, WalEncryptionKey};

/// The exit statuses of every command (one scheme; shown by every `--help`).
pub const EXIT_STATUS: &str = "\
Exit status:
  0  success; for inspect, verify and repair: no damage (a torn tail is not damage)
  1  damage found: a problem in the WAL was printed (dump: after every record before it)
  2  the command could not run: bad arguments, a missing or empty directory,
     a missing or wrong key, a WAL locked by a writer, an I/O error";

#[derive(Parser)]
#[command(
    name = "directwal",
    version,
    about = "Inspect, dump, verify, repair and benchmark directwal write-ahead logs",
    after_help = EXIT_STATUS
)]
struct Cli {
    /// Key file of an encrypted WAL (32 raw bytes or 64 hex digits; mode 0600).
    /// Repeat it for keys rotated out: the first is the current key. Read only
    /// by the commands that decrypt (dump, verify, repair, bench).
    #[arg(long = "key-file", global = true, env = "DIRECTWAL_KEY_FILE", value_delimiter = ',')]
    key_files: Vec<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

/// `--json` or `--format text|json`, accepted by every command.
#[derive(clap::Args, Clone, Copy)]
pub struct Output {
    /// Print JSON (the same as --format json).
    #[arg(long)]
    json: bool,
    /// text: lines for people and grep; json: for jq (dump: also hex, a hexdump per record).
    #[arg(long, value_enum)]
    format: Option<Format>,
}

impl Output {
    /// The format asked for; `--json` with another `--format` is an error.
    pub fn format(self) -> Result<Format, Failure> {
        match (self.json, self.format) {
            (true, Some(f)) if f != Format::Json => {
                Err(Failure::Error("--json contradicts --format; give one of them".into()))
            }
            (true, _) => Ok(Format::Json),
            (false, f) => Ok(f.unwrap_or(Format::Text)),
        }
    }

    /// Text or JSON (hex is for dump only).
    pub fn text_or_json(self) -> Result<bool, Failure> {
        match self.format()? {
            Format::Hex => Err(Failure::Error("--format hex is for dump only".into())),
            f => Ok(f == Format::Json),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// One row per segment from headers and seals (records are not read; see verify).
    #[command(after_help = EXIT_STATUS)]
    Inspect {
        /// The WAL directory.
        dir: PathBuf,
        /// Succeed on a directory without segments (by default exit 2: a
        /// typo'd path is not an empty WAL).
        #[arg(long)]
        allow_empty: bool,
        #[command(flatten)]
        output: Output,
    },
    /// Print records, streaming through the reader, oldest first.
    #[command(after_help = EXIT_STATUS)]
    Dump(dump::Args),
    /// Check everything: every CRC and tag, LSN continuity, headers, seals, WAL ids.
    #[command(after_help = EXIT_STATUS)]
    Verify {
        /// The WAL directory.
        dir: PathBuf,
        /// Succeed on a directory without segments (by default a typo'd
        /// path must not pass a health check: exit 2).
        #[arg(long)]
        allow_empty: bool,
        #[command(flatten)]
        output: Output,
    },
    /// Cut the log at damage in its newest segment, as an open in tolerant
    /// recovery mode does; without --yes only says what it would drop.
    #[command(after_help = EXIT_STATUS)]
    Repair(repair::Args),
    /// Run the W1-W5 workloads beside the device ceiling, and print a table.
    #[command(after_help = EXIT_STATUS)]
    Bench(bench::Args),
}

/// Output format.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Lines for people and grep (dump: `lsn=… type=… tenant=… …`).
    Text,
    /// JSON (dump: one object per line).
    Json,
    /// dump only: a header line and a hexdump per record.
    Hex,
}

/// Why a command stopped.
pub enum Failure {
    /// The data is damaged (exit 1); the details were printed.
    Damaged,
    /// The data is damaged (exit 1); this says where.
    Damage(String),
    /// The command could not run (exit 2).
    Error(String),
    /// Whoever read the output stopped reading (`| head`): not an error.
    Closed,
}

impl From<WalError> for Failure {
    fn from(e: WalError) -> Self {
        match e {
            WalError::Corruption { .. }
            | WalError::ForeignSegment { .. }
            | WalError::MissingSegment { .. }
            | WalError::AuthenticationFailed { .. } => Failure::Damage(explain(&e)),
            _ => Failure::Error(explain(&e)),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe { Failure::Closed } else { Failure::Error(e.to_string()) }
    }
}

/// An error in words a user can act on.
pub fn explain(e: &WalError) -> String {
    match e {
        WalError::KeyRequired { segment, .. } => format!(
            "{segment} is encrypted: pass its key with --key-file PATH (or DIRECTWAL_KEY_FILE); \
             the data cannot be read or authenticated without it"
        ),
        WalError::UnknownKey { key_id, segment, .. } => format!(
            "{segment} is encrypted with key id {key_id:08x}, which none of the given key files holds; \
             pass that key with --key-file"
        ),
        other => other.to_string(),
    }
}

/// The directory a command reads: it must exist and be a directory.
pub fn wal_dir(dir: &Path) -> Result<(), Failure> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Failure::Error(format!("{} is not a directory", dir.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Failure::Error(format!("{}: no such directory", dir.display())))
        }
        Err(e) => Err(Failure::Error(format!("cannot read {}: {e}", dir.display()))),
    }
}

/// The "no WAL segments" error, one wording for every command.
pub fn no_segments(dir: &Path) -> Failure {
    Failure::Error(format!("no WAL segments in {} (is it the WAL directory?)", dir.display()))
}

fn key_ring(files: &[PathBuf]) -> Result<Option<KeyRing>, Failure> {
    let mut keys = Vec::with_capacity(files.len());
    for path in files {
        let key = WalEncryptionKey::from_file(path)
            .map_err(|e| Failure::Error(format!("cannot use key file {}: {e}", path.display())))?;
        keys.push(key);
    }
    let mut keys = keys.into_iter();
    Ok(keys.next().map(|current| keys.fold(KeyRing::new(current), KeyRing::with_previous)))
}

fn run(cli: Cli) -> Result<(), Failure> {
    // The keys are read only by the commands that decrypt: inspect reads
    // headers in the clear and must work with a stale DIRECTWAL_KEY_FILE.
    let ring = || key_ring(&cli.key_files);
    match cli.command {
        Command::Inspect { dir, allow_empty, output } => inspect::inspect(&dir, output.text_or_json()?, allow_empty),
        Command::Verify { dir, allow_empty, output } => {
            let json = output.text_or_json()?;
            inspect::verify(&dir, ring()?, json, allow_empty)
        }
        Command::Dump(args) => dump::run(args, ring()?),
        Command::Repair(args) => repair::run(args, ring()?),
        Command::Bench(args) => bench::run(args, ring()?),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) | Err(Failure::Closed) => ExitCode::SUCCESS,
        Err(Failure::Damaged) => ExitCode::from(1),
        Err(Failure::Damage(msg)) => {
            eprintln!("directwal: damage: {msg}");
            ExitCode::from(1)
        }
        Err(Failure::Error(msg)) => {
            eprintln!("directwal: error: {msg}");
            ExitCode::from(2)
        }
    }
}
