//! When encryption is required (DESIGN I11): the one rule over a WAL's
//! segment headers, [`encryption_state`], and the keyed MAC that proves an
//! explicit `disable_encryption` in a plain segment's header
//! ([`HeaderMacKey`]; docs/FORMAT.md, "When encryption is required").

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{KeyRing, WalEncryptionKey};
use crate::format::{Cipher, HEADER_MAC_LEN, HeaderMac, SegmentHeader};

const HEADER_MAC_INFO: &[u8] = b"directwal v1 header mac";

/// I11: the key that authenticates `encryption_off` headers: HKDF-SHA256 of
/// a ring key with its own info string, so it is never a record or segment
/// key. Its bytes are wiped on drop and never printed.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct HeaderMacKey {
    bytes: [u8; 32],
    #[zeroize(skip)]
    key_id: u32,
}

impl HeaderMacKey {
    /// The header-MAC key of ring key `key` (docs/FORMAT.md, "Encryption").
    pub fn new(key: &WalEncryptionKey) -> Self {
        // Expanded in place: no stray copy of the key bytes to wipe.
        let mut mac_key = HeaderMacKey { bytes: [0; 32], key_id: key.id };
        hkdf::Hkdf::<sha2::Sha256>::new(None, &key.bytes)
            .expand(HEADER_MAC_INFO, &mut mac_key.bytes)
            .expect("32 bytes is a valid HKDF output length");
        mac_key
    }

    /// Id of the ring key this MAC key was derived from.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    fn hmac(&self, header: &SegmentHeader) -> Hmac<sha2::Sha256> {
        let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&self.bytes).expect("HMAC takes any key length");
        m.update(&header.mac_input());
        m
    }

    /// I11: writes the MAC (and this key's id) into an `encryption_off` header.
    pub fn sign(&self, header: &mut SegmentHeader) {
        debug_assert!(header.encryption_off && header.cipher == Cipher::None);
        header.mac = Some(HeaderMac { key_id: self.key_id, tag: [0; HEADER_MAC_LEN] });
        let tag = self.hmac(header).finalize().into_bytes();
        let mac = header.mac.as_mut().expect("set above");
        mac.tag.copy_from_slice(&tag);
    }

    /// I11: whether the header's MAC was made with this key (constant-time compare).
    pub fn verify(&self, header: &SegmentHeader) -> bool {
        header.mac.is_some_and(|mac| mac.key_id == self.key_id && self.hmac(header).verify_slice(&mac.tag).is_ok())
    }
}

impl fmt::Debug for HeaderMacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HeaderMacKey {{ key_id: {:08x}, bytes: <redacted> }}", self.key_id)
    }
}

/// I11: what a writer keeps after an explicit `disable_encryption`: the
/// header-MAC keys of the ring it was turned off with, to authenticate the
/// `encryption_off` flag of every plain segment it starts while encrypted
/// segments precede them (none without a ring: then only a set-aside
/// segment's unknown cipher was lifted, and no key is required).
#[derive(Debug, Default)]
pub(crate) struct TurnedOff {
    keys: Vec<HeaderMacKey>,
}

impl TurnedOff {
    /// The MAC keys of every key of `ring`.
    pub fn new(ring: Option<&KeyRing>) -> Self {
        TurnedOff { keys: ring.map_or_else(Vec::new, |r| r.keys().map(HeaderMacKey::new).collect()) }
    }

    /// The MAC key derived from ring key `key_id`, if it was in the ring.
    pub fn key(&self, key_id: u32) -> Option<&HeaderMacKey> {
        self.keys.iter().find(|k| k.key_id() == key_id)
    }
}

/// I11: what `check` reports, and open warns, of a plain segment after
/// encrypted ones without the `encryption_off` flag (`EncryptionState::downgrade`).
pub(crate) const UNFLAGGED_DOWNGRADE: &str = "plain segment after encrypted ones with no proven `encryption_off` flag \
     (a forged header, or an older build's disable: confirm with set_encryption_ring + disable_encryption): \
     the WAL still requires its key";

/// Why an `encryption_off` header did not lift the requirement (I11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unproven {
    /// No ring to verify its MAC with: not a fault, but nothing is proven.
    NoRing,
    /// It carries no MAC (a version 3 header, written before MACs existed).
    NoMac {
        /// The header's format version.
        version: u16,
    },
    /// Its MAC was made with a key other than the one the encrypted
    /// segments before it require.
    OtherKey {
        /// Key id of the MAC.
        mac_key: u32,
    },
    /// The ring does not hold the MAC's key.
    UnknownKey {
        /// Key id of the MAC.
        mac_key: u32,
    },
    /// The MAC does not verify: the header was altered or forged.
    BadMac {
        /// Key id of the MAC.
        mac_key: u32,
    },
}

/// An `encryption_off` header that lifted nothing, and why (I11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UnprovenOff {
    /// Index (in the order given) of the segment.
    pub index: usize,
    /// The key the encrypted segments before it require.
    pub required: u32,
    /// Why it proves nothing.
    pub why: Unproven,
}

impl UnprovenOff {
    /// Whether `check` reports it: everything but a missing ring (which
    /// proves nothing either way; open still requires the key).
    pub fn is_problem(&self) -> bool {
        self.why != Unproven::NoRing
    }
}

impl fmt::Display for UnprovenOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("plain segment flagged encryption_off after encrypted ones, ")?;
        match self.why {
            Unproven::NoRing => f.write_str("which cannot be verified without the key ring")?,
            Unproven::NoMac { version: 3 } => f.write_str("without a MAC (a version 3 header: unproven)")?,
            Unproven::NoMac { .. } => f.write_str("without a MAC (forged or altered)")?,
            Unproven::OtherKey { mac_key } => write!(f, "its MAC made with key {mac_key:08x} (forged or altered)")?,
            Unproven::UnknownKey { mac_key } => write!(f, "its MAC made with key {mac_key:08x}, not in the ring")?,
            Unproven::BadMac { mac_key } => write!(f, "its MAC fails under key {mac_key:08x} (forged or altered)")?,
        }
        write!(f, ": the WAL still requires key {:08x}", self.required)
    }
}

/// What the segment headers of a WAL say about encryption (DESIGN I11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct EncryptionState {
    /// The key new records must be encrypted with: that of the newest
    /// encrypted segment, unless a plain segment flagged `encryption_off`
    /// with a MAC that verifies follows it. None: plain records are allowed.
    pub required_key: Option<u32>,
    /// Encryption was turned off explicitly (and proven) after encrypted
    /// segments.
    pub turned_off: bool,
    /// Index (in the order given) of the first plain segment that follows an
    /// encrypted one without the `encryption_off` flag: an unexplained
    /// downgrade, which `verify` reports and which requires the key anyway,
    /// unless a proven flag follows it (`confirm_older`).
    pub downgrade: Option<usize>,
    /// The first `encryption_off` flag that lifted nothing, while the
    /// requirement still stands at it.
    pub unproven: Option<UnprovenOff>,
    /// I11: a segment set aside by tolerant recovery may have been encrypted
    /// (its header is unreadable) and no segment after it says otherwise: a
    /// ring (any key) is required until one is set or encryption is turned
    /// off explicitly.
    pub cipher_unknown: bool,
}

/// I11: the one rule for "is encryption required", from the headers of
/// the segments oldest → newest (every retained segment; unreadable ones left
/// out), with the ring to verify header MACs (None: nothing can be proven).
/// Only an explicit `disable_encryption` lifts the requirement an encrypted
/// segment sets: a plain segment flagged `encryption_off` whose MAC verifies
/// under the key required there ([`prove_off`]). A plain or empty segment
/// after it without that proof does not, whichever segment is newest; such
/// a segment of an older build is no longer reported once a proof follows
/// it (`EncryptionState::confirm_older`). A WAL
/// that never held an encrypted segment (such as any version 2 plain WAL)
/// requires nothing.
pub(crate) fn encryption_state<'a>(
    headers: impl IntoIterator<Item = &'a SegmentHeader>,
    ring: Option<&KeyRing>,
) -> EncryptionState {
    let mut st = EncryptionState::default();
    for (index, h) in headers.into_iter().enumerate() {
        match (h.cipher, st.required_key) {
            (Cipher::Aes256Gcm { key_id }, _) => (st.required_key, st.turned_off) = (Some(key_id), false),
            (Cipher::None, Some(required)) if h.encryption_off => match prove_off(h, required, ring) {
                Ok(()) => {
                    (st.required_key, st.turned_off) = (None, true);
                    st.confirm_older(None);
                }
                // Unchecked: it stands for the older ones, as it would be checked.
                Err(why @ Unproven::NoRing) => st.confirm_older(Some(UnprovenOff { index, required, why })),
                Err(why) => _ = st.unproven.get_or_insert(UnprovenOff { index, required, why }),
            },
            (Cipher::None, Some(_)) => _ = st.downgrade.get_or_insert(index),
            // Nothing to lift: the flag, MAC or not, changes nothing.
            (Cipher::None, None) => {}
        }
    }
    st
}

impl EncryptionState {
    /// I11: an `encryption_off` flag with a MAC under the required key
    /// confirms the plain segments an older build wrote after encrypted ones
    /// before it: the one without a flag (a 0.1 `disable_encryption`) and one
    /// flagged without a MAC (version 3). Only the key holder makes that MAC
    /// (`disable_encryption` with the ring set), so they are no longer
    /// reported once it is proven. Without a ring it cannot be checked:
    /// `later` (its `NoRing`) then stands in their place, not a problem for
    /// `check` but unproven, so the key stays required; `verify` with the
    /// ring checks it. A forged flag (another key's MAC, or one that fails)
    /// never gets here, and a flag damaged otherwise stays reported.
    fn confirm_older(&mut self, later: Option<UnprovenOff>) {
        self.downgrade = None;
        if self.unproven.is_none_or(|u| matches!(u.why, Unproven::NoMac { version: 3 })) {
            self.unproven = later;
        }
    }
}

/// I11: whether an `encryption_off` header proves the downgrade from key
/// `required`: its MAC was made with the header-MAC key of `required`
/// (bound to the header's WAL id, salt, first LSN and flags) and verifies
/// under the ring's copy of that key.
fn prove_off(h: &SegmentHeader, required: u32, ring: Option<&KeyRing>) -> std::result::Result<(), Unproven> {
    let mac = h.mac.ok_or(Unproven::NoMac { version: h.version })?;
    if mac.key_id != required {
        return Err(Unproven::OtherKey { mac_key: mac.key_id });
    }
    let key = ring.ok_or(Unproven::NoRing)?.get(mac.key_id).ok_or(Unproven::UnknownKey { mac_key: mac.key_id })?;
    HeaderMacKey::new(key).verify(h).then_some(()).ok_or(Unproven::BadMac { mac_key: mac.key_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(cipher: Cipher, encryption_off: bool, first_lsn: u64) -> SegmentHeader {
        SegmentHeader {
            version: if encryption_off { 4 } else { 2 },
            block_size: 4096,
            wal_id: 1,
            salt: 2 + u128::from(first_lsn),
            first_lsn,
            cipher,
            created_ms: 0,
            recycled: false,
            encryption_off,
            mac: None,
        }
    }

    #[test]
    fn only_an_explicit_turn_off_lifts_the_requirement() {
        let key = WalEncryptionKey::from_bytes(&[5; 32]);
        let ring = KeyRing::new(key.clone());
        let k = key.key_id();
        let (plain, enc) = (header(Cipher::None, false, 2), header(Cipher::Aes256Gcm { key_id: k }, false, 1));
        let mut off = header(Cipher::None, true, 2);
        HeaderMacKey::new(&key).sign(&mut off);
        let st = |hs: &[&SegmentHeader]| encryption_state(hs.iter().copied(), Some(&ring));
        assert_eq!(st(&[]), EncryptionState::default());
        assert_eq!(st(&[&plain, &plain]), EncryptionState::default());
        let required = EncryptionState { required_key: Some(k), ..Default::default() };
        assert_eq!(st(&[&plain, &enc]), required);
        assert_eq!(st(&[&enc, &plain, &plain]), EncryptionState { downgrade: Some(1), ..required });
        let off_state = EncryptionState { turned_off: true, ..Default::default() };
        assert_eq!(st(&[&enc, &off, &plain]), off_state);
        assert_eq!(st(&[&enc, &off, &off]), off_state);
        // Once the encrypted segments are truncated away, the flag means nothing.
        assert_eq!(st(&[&off, &plain]), EncryptionState::default());
        assert_eq!(st(&[&enc, &off, &enc, &plain]), EncryptionState { downgrade: Some(3), ..required });
    }

    /// I11: a flag proves the downgrade only with a MAC under the required
    /// key that verifies; every other case keeps the requirement and says why.
    #[test]
    fn an_unproven_flag_lifts_nothing_and_says_why() {
        let (key, other) = (WalEncryptionKey::from_bytes(&[5; 32]), WalEncryptionKey::from_bytes(&[6; 32]));
        let k = key.key_id();
        let enc = header(Cipher::Aes256Gcm { key_id: k }, false, 1);
        let signed = |by: &WalEncryptionKey| {
            let mut h = header(Cipher::None, true, 2);
            HeaderMacKey::new(by).sign(&mut h);
            h
        };
        let why = |off: &SegmentHeader, ring: Option<&KeyRing>| {
            let st = encryption_state([&enc, off], ring);
            assert_eq!(st.required_key, Some(k), "{off:?}");
            st.unproven.map(|u| (u.index, u.required, u.why))
        };
        let ring = KeyRing::new(key.clone());
        assert_eq!(why(&signed(&key), None), Some((1, k, Unproven::NoRing)));
        let mut v3 = header(Cipher::None, true, 2);
        v3.version = 3;
        assert_eq!(why(&v3, Some(&ring)), Some((1, k, Unproven::NoMac { version: 3 })));
        let mac_key = other.key_id();
        let by_other = signed(&other);
        assert_eq!(
            why(&by_other, Some(&ring.clone().with_previous(other))),
            Some((1, k, Unproven::OtherKey { mac_key }))
        );
        let no_k = KeyRing::new(WalEncryptionKey::from_bytes(&[7; 32]));
        assert_eq!(why(&signed(&key), Some(&no_k)), Some((1, k, Unproven::UnknownKey { mac_key: k })));
        // A MAC moved to another place, or any bound field changed, fails.
        for edit in [
            (|h: &mut SegmentHeader| h.first_lsn += 1) as fn(&mut SegmentHeader),
            |h| h.salt ^= 1,
            |h| h.wal_id ^= 1,
            |h| h.recycled = true,
            |h| h.mac.as_mut().unwrap().tag[31] ^= 1,
        ] {
            let mut h = signed(&key);
            edit(&mut h);
            assert_eq!(why(&h, Some(&ring)), Some((1, k, Unproven::BadMac { mac_key: k })));
        }
        // Only NoRing is not a problem for `check`.
        let problem = |off: &SegmentHeader, ring| encryption_state([&enc, off], ring).unproven.unwrap().is_problem();
        assert!(!problem(&signed(&key), None) && problem(&v3, None) && problem(&v3, Some(&ring)));
        // A version 3 flag the key holder confirms later is no longer reported.
        let later = {
            let mut h = header(Cipher::None, true, 3);
            HeaderMacKey::new(&key).sign(&mut h);
            h
        };
        let st = encryption_state([&enc, &v3, &later], Some(&ring));
        assert_eq!((st.required_key, st.turned_off, st.unproven), (None, true, None));
        let text = encryption_state([&enc, &v3], None).unproven.unwrap().to_string();
        assert!(text.contains("version 3") && text.contains(&format!("{k:08x}")), "{text}");
    }

    /// I11: the key holder's proven flag confirms the plain segment an older
    /// build wrote without a flag before it; with no flag after it, or a
    /// forged one, that segment stays reported and the key required.
    #[test]
    fn a_proven_flag_confirms_an_older_builds_unflagged_plain_segment() {
        let (key, other) = (WalEncryptionKey::from_bytes(&[5; 32]), WalEncryptionKey::from_bytes(&[6; 32]));
        let (ring, k) = (KeyRing::new(key.clone()), key.key_id());
        let (enc, plain) = (header(Cipher::Aes256Gcm { key_id: k }, false, 1), header(Cipher::None, false, 2));
        let signed = |by: &WalEncryptionKey| {
            let mut h = header(Cipher::None, true, 3);
            HeaderMacKey::new(by).sign(&mut h);
            h
        };
        let proven = signed(&key);
        let off = EncryptionState { turned_off: true, ..Default::default() };
        assert_eq!(encryption_state([&enc, &plain, &proven], Some(&ring)), off);
        assert_eq!(encryption_state([&enc, &plain, &proven, &plain], Some(&ring)), off);
        // Fail closed stays: no proof after it, or a forged one.
        let reported = EncryptionState { required_key: Some(k), downgrade: Some(1), ..Default::default() };
        assert_eq!(encryption_state([&enc, &plain, &plain], Some(&ring)), reported);
        let mut bad = signed(&key);
        bad.mac.as_mut().unwrap().tag[0] ^= 1;
        for (forged, why) in
            [(bad, Unproven::BadMac { mac_key: k }), (signed(&other), Unproven::OtherKey { mac_key: other.key_id() })]
        {
            let unproven = Some(UnprovenOff { index: 2, required: k, why });
            assert_eq!(
                encryption_state([&enc, &plain, &forged], Some(&ring)),
                EncryptionState { unproven, ..reported }
            );
        }
        // A proof of an older era confirms nothing after a newer encrypted segment.
        let later = [&enc, &plain, &proven, &enc, &plain];
        assert_eq!(encryption_state(later, Some(&ring)), EncryptionState { downgrade: Some(4), ..reported });
        // Without a ring the flag stands unchecked in its place: not a problem
        // for `check`, and the key is still required.
        let st = encryption_state([&enc, &plain, &proven], None);
        let unchecked = UnprovenOff { index: 2, required: k, why: Unproven::NoRing };
        assert_eq!(st, EncryptionState { required_key: Some(k), unproven: Some(unchecked), ..Default::default() });
        assert!(!unchecked.is_problem());
    }

    #[test]
    fn header_mac_keys_are_their_own_and_never_print() {
        let key = WalEncryptionKey::from_bytes(&[1; 32]);
        let m = HeaderMacKey::new(&key);
        assert_ne!(m.bytes, key.bytes);
        assert_ne!(m.bytes, HeaderMacKey::new(&WalEncryptionKey::from_bytes(&[2; 32])).bytes);
        let shown = format!("{m:?} {:?}", TurnedOff::new(Some(&KeyRing::new(key))));
        assert!(!shown.contains(&format!("{:?}", &m.bytes[..4])) && shown.contains("redacted"), "{shown}");
    }
}
