//! Encryption at rest: keys, the key ring, and the per-record
//! AES-256-GCM used by the writer and the readers.
//!
//! The scheme (docs/FORMAT.md, "Encryption"): every segment has its own key,
//! HKDF-SHA256 of the ring key with the WAL id and the segment's random salt;
//! the nonce is the record's LSN; the associated data binds the ciphertext to
//! its WAL, segment, LSN and header fields. A (key, nonce) pair never repeats
//! because one writer ever writes a segment (DESIGN I6) and each LSN appears
//! once per segment.
//!
//! A plain segment that turns encryption off after encrypted ones proves it
//! with a keyed MAC of its header (`crypto/required.rs`, DESIGN I11), which
//! `encryption_state` checks.

use std::fmt;
use std::path::Path;

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Result, WalError};
use crate::format::{Cipher, FLAG_ENCRYPTED, RecordFields};

mod required;
pub(crate) use required::{EncryptionState, TurnedOff, UNFLAGGED_DOWNGRADE, Unproven, UnprovenOff, encryption_state};

/// Bytes of the authentication tag appended to every encrypted payload.
pub const TAG_LEN: usize = 16;
const KEY_ID_INFO: &[u8] = b"directwal v1 key id";
const SEGMENT_KEY_INFO: &[u8] = b"directwal v1 segment key";

/// A 256-bit key. Its bytes are wiped on drop and never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct WalEncryptionKey {
    bytes: [u8; 32],
    #[zeroize(skip)]
    id: u32,
}

impl WalEncryptionKey {
    /// A key from raw bytes (copied; wipe your copy).
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        let mut okm = Zeroizing::new([0u8; 4]);
        hkdf::Hkdf::<sha2::Sha256>::new(None, bytes)
            .expand(KEY_ID_INFO, okm.as_mut())
            .expect("4 bytes is a valid HKDF output length");
        WalEncryptionKey { bytes: *bytes, id: u32::from_le_bytes(*okm) }
    }

    /// Reads a key file: 32 raw bytes, or 64 hex digits (a trailing newline
    /// is allowed). Refuses files that group or others can read or write.
    pub fn from_file(path: &Path) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let bad = |reason: String| WalError::KeyFile { path: path.to_owned(), reason };
        let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(bad(format!("mode {:o} lets group or others access it; chmod 600", mode & 0o777)));
        }
        let content = Zeroizing::new(std::fs::read(path).map_err(|e| bad(e.to_string()))?);
        let mut key = Zeroizing::new([0u8; 32]);
        if content.len() == 32 {
            key.copy_from_slice(&content);
        } else {
            let text = content.strip_suffix(b"\n").unwrap_or(&content);
            if text.len() != 64 {
                return Err(bad(format!("{} bytes; expected 32 raw bytes or 64 hex digits", content.len())));
            }
            // Constant time: how long decoding takes says nothing about the key.
            base16ct::mixed::decode(text, key.as_mut()).map_err(|_| bad("not hex".into()))?;
        }
        Ok(Self::from_bytes(&key))
    }

    /// Stable id of this key (derived from it), recorded in segment headers.
    pub fn key_id(&self) -> u32 {
        self.id
    }
}

impl fmt::Debug for WalEncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WalEncryptionKey {{ key_id: {:08x}, bytes: <redacted> }}", self.id)
    }
}

/// The keys a WAL may use: one active key that encrypts new segments, and
/// previous keys that still decrypt old ones. The key for a segment is found
/// by the id in its header, never by trial.
///
/// ```
/// use directwal::crypto::{KeyRing, WalEncryptionKey};
/// use directwal::{RecordType, SegmentedWal, SegmentedWalConfig, WalError};
/// # let tmp = tempfile::tempdir()?;
/// # let dir = tmp.path();
/// let old_key = WalEncryptionKey::from_bytes(&[1; 32]); // or from_file(path)
/// let mut wal = SegmentedWal::open(SegmentedWalConfig::new(dir.into()))?;
/// wal.set_encryption_ring(KeyRing::new(old_key.clone()))?; // before appending
/// wal.append(RecordType::Put as u16, 1, 0, b"secret")?;
/// wal.sync()?;
/// drop(wal);
///
/// // Reopened without a ring, an encrypted WAL refuses appends (fails closed).
/// let mut wal = SegmentedWal::open(SegmentedWalConfig::new(dir.into()))?;
/// let refused = wal.append(RecordType::Put as u16, 1, 0, b"plain?");
/// assert!(matches!(refused, Err(WalError::EncryptionRequired { .. })));
///
/// // Rotation: new segments use the new key; the old one still reads old ones.
/// let new_key = WalEncryptionKey::from_bytes(&[2; 32]);
/// wal.set_encryption_ring(KeyRing::new(new_key).with_previous(old_key))?;
/// wal.append(RecordType::Put as u16, 1, 0, b"secret 2")?;
/// wal.sync()?;
/// let payloads: Vec<_> = wal.replay()?.into_iter().map(|r| r.payload).collect();
/// assert_eq!(payloads, [b"secret".to_vec(), b"secret 2".to_vec()]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct KeyRing {
    current: WalEncryptionKey,
    previous: Vec<WalEncryptionKey>,
}

impl KeyRing {
    /// A ring whose active key is `key`.
    pub fn new(key: WalEncryptionKey) -> Self {
        KeyRing { current: key, previous: Vec::new() }
    }

    /// Adds a key that still decrypts older segments. A key whose id is
    /// already in the ring (the same key, or a 1-in-2³² collision) is ignored.
    pub fn with_previous(mut self, key: WalEncryptionKey) -> Self {
        if self.get(key.key_id()).is_none() {
            self.previous.push(key);
        }
        self
    }

    /// The key new segments are encrypted with.
    pub fn current(&self) -> &WalEncryptionKey {
        &self.current
    }

    /// The key with this id, if the ring holds it.
    pub fn get(&self, key_id: u32) -> Option<&WalEncryptionKey> {
        self.keys().find(|k| k.id == key_id)
    }

    /// Ids of all keys, the active one first.
    pub fn key_ids(&self) -> Vec<u32> {
        self.keys().map(|k| k.id).collect()
    }

    fn keys(&self) -> impl Iterator<Item = &WalEncryptionKey> {
        std::iter::once(&self.current).chain(&self.previous)
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<String> = self.key_ids().iter().map(|id| format!("{id:08x}")).collect();
        write!(f, "KeyRing {{ key_ids: [{}] }}", ids.join(", "))
    }
}

/// The AEAD of one segment.
pub(crate) struct SegmentCipher {
    aead: Aes256Gcm,
    key_id: u32,
    wal_id: u128,
    salt: u128,
}

const AAD_LEN: usize = 16 + 16 + 8 + 2 + 4 + 2 + 4 + 2 + 4;

impl SegmentCipher {
    /// Derives the segment key (HKDF-SHA256, salt = WAL id ‖ segment salt).
    pub fn new(key: &WalEncryptionKey, wal_id: u128, salt: u128) -> Self {
        let mut hk_salt = [0u8; 32];
        hk_salt[..16].copy_from_slice(&wal_id.to_le_bytes());
        hk_salt[16..].copy_from_slice(&salt.to_le_bytes());
        let mut okm = Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<sha2::Sha256>::new(Some(&hk_salt), &key.bytes)
            .expand(SEGMENT_KEY_INFO, okm.as_mut())
            .expect("32 bytes is a valid HKDF output length");
        let aead = Aes256Gcm::new(&(*okm).into());
        SegmentCipher { aead, key_id: key.id, wal_id, salt }
    }

    /// The cipher descriptor for segment headers.
    pub fn descriptor(&self) -> Cipher {
        Cipher::Aes256Gcm { key_id: self.key_id }
    }

    fn nonce(lsn: u64) -> Nonce<aes_gcm::aes::cipher::consts::U12> {
        let mut n = [0u8; 12];
        n[..8].copy_from_slice(&lsn.to_le_bytes());
        Nonce::from(n)
    }

    /// Associated data: the record's place and header, so a record moved,
    /// swapped or edited does not authenticate (I11). `stored_len` is the
    /// payload length on disk (plaintext + tag).
    fn aad(&self, f: &RecordFields, stored_len: u32) -> [u8; AAD_LEN] {
        let mut a = [0u8; AAD_LEN];
        let mut o = 0;
        for part in [
            &self.wal_id.to_le_bytes()[..],
            &self.salt.to_le_bytes(),
            &f.lsn.to_le_bytes(),
            &f.record_type.to_le_bytes(),
            &f.tenant_id.to_le_bytes(),
            &f.vshard_id.to_le_bytes(),
            &stored_len.to_le_bytes(),
            &f.flags.to_le_bytes(),
            &self.key_id.to_le_bytes(),
        ] {
            a[o..o + part.len()].copy_from_slice(part);
            o += part.len();
        }
        a
    }

    /// Encrypts `out[..len - TAG_LEN]` in place and writes the tag after it.
    /// `fields.flags` must include `FLAG_ENCRYPTED`.
    pub fn seal(&self, fields: &RecordFields, out: &mut [u8]) {
        debug_assert!(fields.flags & FLAG_ENCRYPTED != 0);
        let aad = self.aad(fields, u32::try_from(out.len()).expect("a stored length is at most MAX_STORED_LEN"));
        let (body, tag_out) = out.split_at_mut(out.len() - TAG_LEN);
        let tag = self
            .aead
            .encrypt_inout_detached(&Self::nonce(fields.lsn), &aad, body.into())
            .expect("AES-GCM accepts payloads up to 64 GiB");
        tag_out.copy_from_slice(&tag);
    }

    /// Authenticates and decrypts a stored payload (ciphertext ‖ tag).
    pub fn open(&self, fields: &RecordFields, stored: &[u8]) -> Option<Vec<u8>> {
        if stored.len() < TAG_LEN {
            return None;
        }
        // No record is this long (MAX_STORED_LEN): such bytes do not authenticate.
        let aad = self.aad(fields, u32::try_from(stored.len()).ok()?);
        let (ct, tag) = stored.split_at(stored.len() - TAG_LEN);
        let mut plain = ct.to_vec();
        let tag = Tag::try_from(tag).ok()?;
        match self.aead.decrypt_inout_detached(&Self::nonce(fields.lsn), &aad, plain.as_mut_slice().into(), &tag) {
            Ok(()) => Some(plain),
            Err(_) => {
                plain.zeroize();
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(lsn: u64) -> RecordFields {
        RecordFields { lsn, epoch_start: 0, tenant_id: 1, record_type: 2, vshard_id: 3, flags: FLAG_ENCRYPTED }
    }

    #[test]
    fn round_trip_and_every_bound_field_matters() {
        let key = WalEncryptionKey::from_bytes(&[7; 32]);
        let c = SegmentCipher::new(&key, 1, 2);
        let mut buf = b"secret payload!!\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0".to_vec();
        c.seal(&fields(9), &mut buf);
        assert_ne!(&buf[..16], b"secret payload!!");
        assert_eq!(c.open(&fields(9), &buf).unwrap(), b"secret payload!!");
        assert!(c.open(&fields(10), &buf).is_none(), "moved to another LSN");
        let mut f = fields(9);
        f.tenant_id = 2;
        assert!(c.open(&f, &buf).is_none(), "header edited");
        assert!(SegmentCipher::new(&key, 1, 3).open(&fields(9), &buf).is_none(), "other segment");
        assert!(SegmentCipher::new(&key, 5, 2).open(&fields(9), &buf).is_none(), "other WAL");
        let mut flipped = buf.clone();
        flipped[3] ^= 1;
        assert!(c.open(&fields(9), &flipped).is_none());
    }

    #[test]
    fn key_ids_are_stable_and_keys_never_print() {
        let a = WalEncryptionKey::from_bytes(&[1; 32]);
        assert_eq!(a.key_id(), WalEncryptionKey::from_bytes(&[1; 32]).key_id());
        assert_ne!(a.key_id(), WalEncryptionKey::from_bytes(&[2; 32]).key_id());
        let shown = format!("{a:?} {:?}", KeyRing::new(a.clone()));
        assert!(!shown.contains("1, 1") && !shown.contains("0101"), "{shown}");
    }
}
