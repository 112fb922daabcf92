//! directwal: a durable segmented write-ahead log for databases (Linux).
//!
//! Records are packed into page-aligned buffers and written with O_DIRECT;
//! a sync rewrites the partly filled tail block instead of padding, segment
//! space is prepared ahead so fdatasync stays cheap, and recovery cuts a torn
//! final write but refuses damage to data that was already durable, naming
//! the segment, offset and LSN. The on-disk format is described in
//! `docs/FORMAT.md`, the design and its invariants in `docs/DESIGN.md`.
//!
//! # A tour
//!
//! ## Append, sync, replay
//!
//! [`SegmentedWal`] is the log: one writer, `&mut self` methods. An append
//! returns the record's LSN (the first record of a new WAL gets LSN 1, and
//! LSNs never repeat or skip); [`sync`](SegmentedWal::sync) makes everything
//! appended so far durable. After a restart, [`open`](SegmentedWal::open)
//! recovers and [`replay_from`](SegmentedWal::replay_from) returns the
//! durable records.
//!
//! ```
//! use directwal::{RecordType, SegmentedWal, SegmentedWalConfig};
//!
//! # let tmp = tempfile::tempdir()?;
//! # let dir = tmp.path();
//! let mut wal = SegmentedWal::open(SegmentedWalConfig::new(dir.into()))?;
//! let lsn = wal.append(RecordType::Put as u16, /* tenant */ 7, /* vshard */ 0, b"hello")?;
//! assert_eq!(lsn, 1);
//! wal.sync()?; // durable from here on
//! drop(wal);
//!
//! let wal = SegmentedWal::open(SegmentedWalConfig::new(dir.into()))?;
//! let records = wal.replay_from(1)?;
//! assert_eq!(records[0].header.lsn, lsn);
//! assert_eq!(records[0].payload, b"hello");
//! assert_eq!(wal.next_lsn(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Checkpoints
//!
//! Once your state up to some LSN is saved elsewhere,
//! [`truncate_before`](SegmentedWal::truncate_before) drops the whole
//! segments below it (see its example). Segments are 64 MiB by default
//! ([`SegmentedWalConfig::segment_target_size`]).
//!
//! ## Many threads: [`WalHandle`]
//!
//! A cloneable, `Send + Sync` handle with group commit: one fdatasync serves
//! every thread waiting at the time. Per handle, a [`SyncPolicy`] says when
//! [`commit`](WalHandle::commit) returns; a callback
//! ([`append_then`](WalHandle::append_then)) or a future
//! ([`durable`](WalHandle::durable)) waits without a blocked thread.
//!
//! ## Readers
//!
//! [`WalReader`] pages through the durable records without blocking the
//! writer; a [`WalCursor`] follows the log, and a [`PageBuf`] is reused
//! page after page so a follower allocates nothing per record.
//!
//! ## Encryption
//!
//! [`crypto::KeyRing`] (see its example): every payload AES-256-GCM
//! encrypted under a key derived per segment; rotation keeps old keys in the
//! ring for reading. A WAL that was encrypted refuses appends without its key.
//!
//! ## Errors and poisoning
//!
//! Every fallible call returns [`Result`], whose error is [`WalError`]: it
//! names the file, offset and LSN concerned. After a failed write or
//! fdatasync the WAL is *poisoned*: every later append and sync fails with
//! [`WalError::Poisoned`], because whether the failed bytes reached the disk
//! is unknown. Drop the WAL and open it again: recovery finds exactly what is
//! durable. Records that were acknowledged (their sync returned `Ok`) are
//! never lost; anything appended after the last successful sync may be.
//! An append that finds no space to reserve fails with
//! [`WalError::NoSpace`] before the record takes an LSN and does not poison:
//! free space and retry.
//!
//! ## Features and modules
//!
//! - `openraft` (off by default): `raft::LogStore`, a log store for
//!   openraft 0.9.
//! - `metrics` (off by default): the figures of [`StatsSnapshot`] published
//!   through the `metrics` crate's facade under Prometheus-style names (no
//!   exporter included; docs/OBSERVABILITY.md). Stats themselves need no
//!   feature: [`SegmentedWal::stats_snapshot`], [`WalHandle::stats_handle`].
//! - [`check`]: verify a WAL directory without opening it for writing (what
//!   the `directwal` command line uses).
//! - [`segmented`], [`writer`], [`record`]: the module paths of nodedb-wal
//!   0.0.6, so code written against it compiles with the crate name changed
//!   (the README's "Moving from nodedb-wal" lists what else differs).

#![deny(missing_docs)]
#![warn(missing_debug_implementations)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod buf;
mod catalog;
pub mod check;
mod commit;
pub mod crypto;
mod error;
mod format;
// Harnesses shared by the cargo-fuzz targets and the corpus replay test.
#[doc(hidden)]
pub mod fuzzing;
mod histogram;
// The storage layer, public only so that the crash simulator and the
// fault-injection tests can stand in for the OS (`open_with_storage`); not
// an API.
#[doc(hidden)]
pub mod io;
#[cfg(feature = "metrics")]
mod metrics;
#[cfg(feature = "openraft")]
#[cfg_attr(docsrs, doc(cfg(feature = "openraft")))]
// openraft's traits fix the error type, `StorageError`, at ~200 bytes.
#[allow(clippy::result_large_err)]
pub mod raft;
mod reader;
pub mod record;
mod recovery;
mod segment;
pub mod segmented;
// The simulated disk of the crash tests (tests/crash.rs); not an API.
#[doc(hidden)]
pub mod sim;
mod spares;
mod stats;
mod view;
mod wal;
pub mod writer;

// Every Rust snippet of the README compiles and runs with `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use commit::{Durable, SyncPolicy, WalHandle};
pub use error::{CorruptionKind, RecordFault, Result, WalError};
pub use format::{MAX_PAYLOAD_SIZE, MAX_SEGMENT_TARGET_SIZE};
pub use reader::{Page, PageBuf, WalCursor, WalReader};
pub use record::{RecordHeader, RecordRef, RecordType, WalRecord};
pub use recovery::TornTail;
pub use segment::{SegmentMeta, parse_segment_name, segment_file_name};
pub use stats::{BytesWritten, HistogramSnapshot, StatsHandle, StatsSnapshot};
pub use wal::{
    DEFAULT_ALIGNMENT, DEFAULT_PREPARE_CHUNK, DEFAULT_RECYCLE_SEGMENTS, DEFAULT_SEGMENT_TARGET_SIZE,
    DEFAULT_WRITE_BUFFER_SIZE, RecoveryMode, RecoveryReport, SegmentedWal, SegmentedWalConfig, SetAside,
    TruncateResult, WalStats, WalWriterConfig,
};

/// Byte layout constants, re-exported for tools and tests that inspect
/// segment files directly (see docs/FORMAT.md).
pub mod layout {
    /// The longest segment file the writer can produce (DESIGN I23).
    pub use crate::catalog::MAX_SEGMENT_FILE_LEN;
    pub use crate::format::{
        FORMAT_VERSION, RECORD_ALIGN, RECORD_HEADER_LEN, SEAL_LEN, SEGMENT_HEADER_LEN, data_start, record_size,
    };
}
