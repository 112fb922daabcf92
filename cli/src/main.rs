//! `directwal`: inspect, dump, verify and benchmark directwal write-ahead logs.
//!
//! Exit status: 0 success (for `verify`: no damage), 1 damage found, 2 the
//! command could not run (bad arguments, unreadable directory, missing key).

mod bench;
mod dump;
mod inspect;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use directwal::WalError;
use directwal::crypto::{KeyRing, WalEncryptionKey};

#[derive(Parser)]
#[command(name = "directwal", version, about = "Inspect, dump, verify and benchmark directwal write-ahead logs")]
struct Cli {
    /// Key file of an encrypted WAL (32 raw bytes or 64 hex digits; mode 0600).
    /// Repeat it for keys rotated out: the first is the current key.
    #[arg(long = "key-file", global = true, env = "DIRECTWAL_KEY_FILE", value_delimiter = ',')]
    key_files: Vec<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One row per segment: LSN range, records, bytes, sealed/active, key id, health.
    Inspect {
        /// The WAL directory.
        dir: PathBuf,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Print records, streaming through the reader.
    Dump {
        /// The WAL directory.
        dir: PathBuf,
        /// First LSN to print (default: the oldest retained).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Print at most this many records.
        #[arg(long)]
        limit: Option<u64>,
        /// text: one line per record; json: one JSON object per line; hex: a hexdump per record.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Check everything: every CRC and tag, LSN continuity, headers, seals, WAL ids.
    Verify {
        /// The WAL directory.
        dir: PathBuf,
        /// Print one JSON object instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Run the SPEC §8 workloads beside the device ceiling, and print a table.
    Bench(bench::Args),
}

/// Output format of `dump`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `lsn=… type=… tenant=… vshard=… len=… payload="…"`.
    Text,
    /// JSON lines.
    Json,
    /// A header line and a hexdump per record.
    Hex,
}

/// Why a command stopped.
pub enum Failure {
    /// The data is damaged (exit 1); the details were printed.
    Damaged,
    /// The command could not run (exit 2).
    Error(String),
    /// Whoever read the output stopped reading (`| head`): not an error.
    Closed,
}

impl From<WalError> for Failure {
    fn from(e: WalError) -> Self {
        Failure::Error(explain(&e))
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
    let ring = key_ring(&cli.key_files)?;
    match cli.command {
        Command::Inspect { dir, json } => inspect::inspect(&dir, json),
        Command::Verify { dir, json } => inspect::verify(&dir, ring, json),
        Command::Dump { dir, from, limit, format } => dump::dump(&dir, ring, from, limit, format),
        Command::Bench(args) => bench::run(args, ring),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) | Err(Failure::Closed) => ExitCode::SUCCESS,
        Err(Failure::Damaged) => ExitCode::from(1),
        Err(Failure::Error(msg)) => {
            eprintln!("directwal: error: {msg}");
            ExitCode::from(2)
        }
    }
}
