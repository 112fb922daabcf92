//! Truncation of the log's oldest segments, and which of their files are
//! kept as spares for new segments (DESIGN I17, I19).

use std::path::PathBuf;
use std::sync::Arc;

use tracing::info;

use super::{SegmentedWal, TruncateResult};
use crate::error::{Result, WalError};
use crate::segment;
use crate::spares;
use crate::view::SealedSeg;

impl SegmentedWal {
    /// Deletes sealed segments whose records all lie below `lsn`, oldest first,
    /// fsyncing the directory after each deletion (I9). The active segment is
    /// never deleted, nor, while there is no active segment, the newest sealed
    /// one (I20). Up to `recycle_segments` of the files are kept as spares
    /// for new segments rather than deleted (I17; I19 says which may be);
    /// they count as deleted. Refused with `EncryptionRequired` while the WAL
    /// needs a ring it lacks (I11).
    ///
    /// With the default 64 MiB segments a small log has one segment, the
    /// active one, and nothing is truncated; this example uses 4 KiB ones.
    ///
    /// ```
    /// use directwal::{RecordType, SegmentedWal, SegmentedWalConfig};
    /// # let tmp = tempfile::tempdir()?;
    /// let mut config = SegmentedWalConfig::new(tmp.path().into());
    /// config.segment_target_size = 4096;
    /// let mut wal = SegmentedWal::open(config)?;
    /// for i in 0..100u32 {
    ///     wal.append(RecordType::Put as u16, 1, 0, &[i as u8; 200])?;
    /// }
    /// wal.sync()?;
    /// let checkpoint_lsn = 80; // everything below it is saved elsewhere
    /// let dropped = wal.truncate_before(checkpoint_lsn)?;
    /// assert!(dropped.segments_deleted > 0);
    /// let oldest = wal.replay()?[0].header.lsn;
    /// assert!(oldest > 1 && oldest <= checkpoint_lsn);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn truncate_before(&self, lsn: u64) -> Result<TruncateResult> {
        // I11: without its key the WAL changes none of its files; deleting
        // the segments that carry the requirement would lift it.
        if let Some(e) = self.missing_ring() {
            return Err(e);
        }
        // I25: nothing is deleted or renamed at a path another WAL may own now.
        self.check_dir_identity()?;
        self.settle_writes();
        let _span = tracing::info_span!("directwal_truncate", before_lsn = lsn).entered();
        let mut result = TruncateResult::default();
        loop {
            let view = self.shared.snapshot();
            let Some(oldest) = view.sealed().first().cloned() else { break };
            // I20: with no active segment the newest sealed one carries
            // next_lsn: deleting it would restart the LSNs at 1 on reopen.
            if oldest.seal.last_lsn >= lsn || (self.active.is_none() && view.sealed().len() == 1) {
                break;
            }
            drop(view);
            let size = self.storage.file_len(&oldest.path).unwrap_or(0);
            // I9: out of the readers' view first; readers holding it keep it.
            self.shared.remove_sealed(&oldest);
            let spare = self.spare_for(&oldest);
            let gone = match &spare {
                Some(to) => self.storage.rename(&oldest.path, to).map_err(|e| WalError::io("rename", &oldest.path, e)),
                None => self.storage.remove_file(&oldest.path).map_err(|e| WalError::io("remove", &oldest.path, e)),
            };
            if let Err(e) = gone {
                // The file is still in the log: so is it in the view.
                self.shared.restore_oldest(oldest.clone());
                return Err(e);
            }
            let (name, last_lsn, header) = (oldest.name.clone(), oldest.seal.last_lsn, oldest.header.clone());
            // I17: our last reference, and the mapping, go before the file
            // can be handed to a new segment.
            drop(oldest);
            // I9: each deletion is durable before the next, so a crash leaves a suffix.
            self.storage.sync_dir(&self.dir).map_err(|e| WalError::io("fsync directory", &self.dir, e))?;
            result.segments_deleted += 1;
            result.bytes_reclaimed += size;
            self.stats.truncated(size, spare.is_some());
            match spare {
                Some(to) => {
                    info!(segment = %name, last_lsn, spare = %to.display(), "truncated segment, file kept for reuse");
                    self.spares.lock().unwrap_or_else(|p| p.into_inner()).push(to, &header);
                }
                None => info!(segment = %name, last_lsn, "truncated segment"),
            }
        }
        Ok(result)
    }

    /// I17: the spare name `seg`'s file may take, or None to delete it: the
    /// pool has room and nothing but `seg` itself (no reader's view, cursor or
    /// mapping) still refers to it, so no mapping can see the file change.
    fn spare_for(&self, seg: &Arc<SealedSeg>) -> Option<PathBuf> {
        let pool = self.spares.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() >= self.cfg.recycle_segments || Arc::strong_count(seg) != 1 || seg.mapped_elsewhere() {
            return None;
        }
        // I19: while the WAL encrypts, a file that may hold plain records is deleted.
        if !spares::admits(pool.plain_free(&seg.header), self.encrypting()) {
            return None;
        }
        // I17: a segment file with another name (e.g. a backup's hard link)
        // is never rewritten; a name already taken on disk is never replaced.
        if spares::distrust(&*self.storage, &seg.path).is_some() {
            return None;
        }
        let to = self.dir.join(segment::spare_file_name(seg.header.first_lsn));
        let name_free = matches!(self.storage.file_len(&to), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
        (!pool.contains(&to) && name_free).then_some(to)
    }
}
