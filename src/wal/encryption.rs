//! Encryption state of a [`SegmentedWal`]: setting and dropping the ring,
//! the fail-closed gate (DESIGN I11, I20), and the spares an encrypting WAL
//! may not keep (I19).

use std::sync::Arc;

use tracing::{info, warn};

use super::SegmentedWal;
use crate::crypto::{KeyRing, TurnedOff};
use crate::error::{Result, WalError};
use crate::format::{MAX_LSN, SegmentHeader};
use crate::segment;

impl SegmentedWal {
    /// Sets the key ring (I11). From now on every payload is written
    /// encrypted with the ring's active key: if the active segment is plain
    /// or uses another key, it is sealed (or, empty, replaced) and a new
    /// segment begins. Fails with `UnknownKey` when the WAL is encrypted with
    /// a key the ring does not hold.
    ///
    /// A WAL that turned encryption off while encrypted segments remain
    /// needs this after every open, then [`Self::disable_encryption`], to
    /// go on writing plain (the example there).
    pub fn set_encryption_ring(&mut self, ring: KeyRing) -> Result<()> {
        self.check_poison()?;
        if let Some(key_id) = self.required_key
            && ring.get(key_id).is_none()
        {
            return Err(WalError::UnknownKey {
                key_id,
                segment: segment::segment_file_name(self.active_segment_first_lsn()),
                lsn: self.next_lsn,
            });
        }
        let key_id = ring.current().key_id();
        let _span = tracing::info_span!("directwal_key_switch", key_id, next_lsn = self.next_lsn).entered();
        info!(key_ids = ?ring, "encryption key ring set");
        let ring = Arc::new(ring);
        self.shared.set_ring(Some(ring.clone()));
        self.ring = Some(ring);
        self.required_key = Some(key_id);
        self.encryption_off = None;
        self.cipher_unknown = false;
        // The switch first: should the eviction fail, no plain segment stays active.
        let switched = self.switch_segment_unless(Some(key_id));
        // I19: spares that may hold plain records never become encrypted
        // segments (the switch's new segment took none: `SparePool::take`).
        let evicted = self.evict_spares();
        switched?;
        evicted.map(|_| ())
    }

    /// The key ring, if one is set.
    pub fn encryption_ring(&self) -> Option<&KeyRing> {
        self.ring.as_deref()
    }

    /// Turns encryption off (I11): an explicit call that starts a new, plain
    /// segment. When encrypted segments precede it, its header carries the
    /// flag `encryption_off` and a MAC made with the key those segments
    /// require, so `directwal verify --key-file` can tell the decision from
    /// a forged header; the plain segments this `SegmentedWal` starts after
    /// it carry the same proof.
    ///
    /// Proving takes the key: while encryption is required (a ring is set,
    /// or the segments on disk require one) the ring must be set first, else
    /// `EncryptionRequired`. An open has no ring, so it cannot check the
    /// proof and requires the key again: while encrypted segments remain,
    /// call `set_encryption_ring` and then `disable_encryption` after every
    /// open to go on writing plain. Once `truncate_before` has removed the
    /// encrypted segments, the WAL opens without a ring. Reading older,
    /// encrypted segments needs a ring again.
    ///
    /// ```
    /// use directwal::crypto::{KeyRing, WalEncryptionKey};
    /// use directwal::{SegmentedWal, SegmentedWalConfig, WalError};
    /// # let tmp = tempfile::tempdir()?;
    /// # let cfg = || SegmentedWalConfig::new(tmp.path().into());
    /// let ring = || KeyRing::new(WalEncryptionKey::from_bytes(&[1; 32]));
    /// let mut wal = SegmentedWal::open(cfg())?;
    /// wal.set_encryption_ring(ring())?;
    /// wal.append(1, 0, 0, b"secret")?;
    /// wal.disable_encryption()?; // the ring is set: the header is signed
    /// wal.append(1, 0, 0, b"plain")?;
    /// drop(wal);
    ///
    /// // Reopened, the WAL still holds an encrypted segment: the key is
    /// // required until the ring proves the decision again.
    /// let mut wal = SegmentedWal::open(cfg())?;
    /// assert!(matches!(wal.append(1, 0, 0, b"plain?"), Err(WalError::EncryptionRequired { .. })));
    /// assert!(matches!(wal.disable_encryption(), Err(WalError::EncryptionRequired { .. })));
    /// wal.set_encryption_ring(ring())?;
    /// wal.disable_encryption()?;
    /// assert_eq!(wal.append(1, 0, 0, b"plain again")?, 3);
    /// // Without the encrypted history, no ring is needed any more.
    /// wal.truncate_before(3)?;
    /// drop(wal);
    /// let mut wal = SegmentedWal::open(cfg())?;
    /// assert_eq!(wal.append(1, 0, 0, b"plain")?, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn disable_encryption(&mut self) -> Result<()> {
        self.check_poison()?;
        // I11: a downgrade from a known key is proven with that key, or not made.
        if let (None, Some(key_id)) = (self.ring.as_ref(), self.required_key) {
            return Err(WalError::EncryptionRequired { key_id });
        }
        let _span = tracing::info_span!("directwal_key_switch", key_id = "none", next_lsn = self.next_lsn).entered();
        // I11: recorded in the new segment's header, for the next open, with
        // the MAC keys of the ring (none when only a set-aside segment's
        // unknown cipher is lifted: no key is known to be required then).
        let before = self.encryption_off.take();
        self.encryption_off = match self.ring.as_deref() {
            Some(ring) => Some(TurnedOff::new(Some(ring))),
            None if self.cipher_unknown => Some(before.unwrap_or_default()),
            None => before,
        };
        self.cipher_unknown = false;
        self.ring = None;
        self.required_key = None;
        self.shared.set_ring(None);
        warn!(dir = %self.dir.display(), "encryption turned off: new records are written in plain");
        self.switch_segment_unless(None)?;
        // I11: the flag is durable only in a segment: start it now.
        if self.active.is_none() && self.write_refusal().is_none() {
            self.start_segment()?;
        }
        Ok(())
    }

    /// I11: signs a new plain segment's `encryption_off` flag with the MAC
    /// key of the newest encrypted segment before it, which is the key the
    /// rule (`crypto::encryption_state`) requires there. With no encrypted
    /// segment before it there is nothing to lift and no MAC. A flag that
    /// could not be proven is never written: `EncryptionRequired` instead.
    pub(super) fn authenticate(&self, header: &mut SegmentHeader) -> Result<()> {
        let Some(off) = self.encryption_off.as_ref().filter(|_| header.encryption_off) else { return Ok(()) };
        let view = self.shared.snapshot();
        let Some(required) = view.sealed().iter().rev().find_map(|s| segment::key_id(&s.header)) else {
            return Ok(());
        };
        off.key(required).ok_or(WalError::EncryptionRequired { key_id: required })?.sign(header);
        Ok(())
    }

    /// Starts a new segment unless the active one already encrypts with
    /// `key_id` (I11: no payload goes to a segment of the wrong key or in plain).
    fn switch_segment_unless(&mut self, key_id: Option<u32>) -> Result<()> {
        let Some(active) = self.active.as_ref() else { return Ok(()) };
        if active.encrypts_with() == key_id {
            return Ok(());
        }
        if active.records > 0 {
            return self.roll_segment();
        }
        // Empty: replaced under the same name by the new segment (I6).
        self.active = None;
        self.shared.clear_active();
        self.start_segment()
    }

    /// I11, I20: why no record may be appended and no segment started
    /// now, if so: encryption is required and no ring is set, or every LSN
    /// has been handed out. Every path that writes a record or creates a
    /// segment asks this first, and nothing is written when it refuses.
    pub(super) fn write_refusal(&self) -> Option<WalError> {
        self.missing_ring()
            .or_else(|| (self.next_lsn > MAX_LSN).then(|| WalError::LsnExhausted { last_lsn: self.next_lsn - 1 }))
    }

    /// I11: `EncryptionRequired` while encryption is required and no ring is set.
    pub(super) fn missing_ring(&self) -> Option<WalError> {
        match (self.ring.as_ref(), self.required_key) {
            (None, Some(key_id)) => Some(WalError::EncryptionRequired { key_id }),
            // I11, I24: a set-aside segment's key is unknown (reported as 0).
            (None, None) if self.cipher_unknown => Some(WalError::EncryptionRequired { key_id: 0 }),
            _ => None,
        }
    }

    /// Whether new records are encrypted, or must be (I19).
    pub(super) fn encrypting(&self) -> bool {
        self.ring.is_some() || self.required_key.is_some() || self.cipher_unknown
    }

    /// I19: deletes the spares that may hold plain records while the WAL
    /// encrypts; returns how many.
    pub(super) fn evict_spares(&self) -> Result<usize> {
        let evicted = self.spares.lock().unwrap_or_else(|p| p.into_inner()).evict(self.encrypting());
        for path in &evicted {
            self.storage.remove_file(path).map_err(|e| WalError::io("remove", path, e))?;
            info!(spare = %path.display(), "deleted a spare that may hold plain records (the WAL encrypts)");
        }
        if !evicted.is_empty() {
            self.storage.sync_dir(&self.dir).map_err(|e| WalError::io("fsync directory", &self.dir, e))?;
        }
        Ok(evicted.len())
    }
}
