//! Standard Webhooks asymmetric (`v1a`, Ed25519) signatures.
//!
//! A subscription that signs with `v1a` holds an Ed25519 key pair. The
//! receiver verifies with the public key alone, so nobody who can verify
//! can also sign. Signature entries are `v1a,<base64(Ed25519 signature of
//! "{id}.{timestamp}.{body}")>`, space-separated with any `v1` entries in
//! `webhook-signature`.
//!
//! Key forms, as the Standard Webhooks specification serialises them (and
//! as its authors' reference server does): the secret key is `whsk_` +
//! base64 of the 64-byte secret key (the 32-byte seed followed by the
//! 32-byte public key, the layout of libsodium and Go's
//! `ed25519.PrivateKey`), the public key `whpk_` + base64 of its 32 bytes.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::signing::sealed::{
    EmptyKeyring, Keyring, OpenError, ResealError, SealPurpose, SealedSecret, SecretOwner,
};
use crate::signing::secret::WebhookSecret;
use crate::signing::{Received, VerifyError, signed_content, verify_entries};

/// Prefix of a serialised secret key.
pub const SECRET_KEY_PREFIX: &str = "whsk_";
/// Prefix of a serialised public key.
pub const PUBLIC_KEY_PREFIX: &str = "whpk_";
/// Length of a seed and of a public key.
const KEY_LEN: usize = 32;
/// Prefix of a signature entry.
const ENTRY_PREFIX: &str = "v1a,";

/// A key in a serialised form could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    /// The text lacks the `whsk_` or `whpk_` prefix its kind needs.
    #[error("an Ed25519 {0} key must start with {1}")]
    Prefix(&'static str, &'static str),
    /// Not base64 of the right number of bytes.
    #[error("an Ed25519 {0} key must be base64 of {1} bytes after its prefix")]
    Encoding(&'static str, usize),
    /// The public half of a secret key does not belong to its seed.
    #[error("the public half of the Ed25519 secret key does not match its seed")]
    Mismatch,
}

/// An Ed25519 signing key: the secret of a `v1a` subscription. Its `Debug`
/// output shows the public key only, so the secret never reaches a log line.
#[derive(Clone)]
pub struct SigningKey {
    seed: [u8; KEY_LEN],
    pair: Arc<Ed25519KeyPair>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("public_key", &self.public_key().standard_webhooks_form())
            .finish_non_exhaustive()
    }
}

impl PartialEq for SigningKey {
    fn eq(&self, other: &Self) -> bool {
        self.seed == other.seed
    }
}

impl Eq for SigningKey {}

impl SigningKey {
    /// A fresh random key pair.
    pub fn generate() -> Self {
        let mut seed = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut seed)
            .expect("the system's random number generator works");
        Self::from_seed(seed)
    }

    fn from_seed(seed: [u8; KEY_LEN]) -> Self {
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .expect("every 32-byte seed is an Ed25519 secret key");
        Self {
            seed,
            pair: Arc::new(pair),
        }
    }

    /// Reads the `whsk_` form: base64 of the seed and the public key (64
    /// bytes). The bare 32-byte seed is accepted too.
    pub fn from_standard_webhooks_form(text: &str) -> Result<Self, KeyFormatError> {
        let bytes = decode_prefixed(text, SECRET_KEY_PREFIX, "secret", 2 * KEY_LEN)?;
        let (seed, public) = match bytes.len() {
            KEY_LEN => (&bytes[..], None),
            n if n == 2 * KEY_LEN => (&bytes[..KEY_LEN], Some(&bytes[KEY_LEN..])),
            _ => return Err(KeyFormatError::Encoding("secret", 2 * KEY_LEN)),
        };
        let mut buf = [0u8; KEY_LEN];
        buf.copy_from_slice(seed);
        let key = Self::from_seed(buf);
        match public {
            Some(public) if public != key.public_key().0 => Err(KeyFormatError::Mismatch),
            _ => Ok(key),
        }
    }

    /// The `whsk_` form: base64 of the seed followed by the public key.
    /// Only for sealing it at rest.
    pub fn standard_webhooks_form(&self) -> String {
        let mut bytes = [0u8; 2 * KEY_LEN];
        bytes[..KEY_LEN].copy_from_slice(&self.seed);
        bytes[KEY_LEN..].copy_from_slice(&self.public_key().0);
        format!("{SECRET_KEY_PREFIX}{}", STANDARD.encode(bytes))
    }

    /// Its public key.
    pub fn public_key(&self) -> PublicKey {
        let mut bytes = [0u8; KEY_LEN];
        bytes.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(bytes)
    }

    /// Appends `v1a,<base64 signature>` to `out`.
    pub fn sign_into(&self, msg_id: &str, timestamp: i64, body: &[u8], out: &mut String) {
        let signature = self.pair.sign(&signed_content(msg_id, timestamp, body));
        out.push_str(ENTRY_PREFIX);
        STANDARD.encode_string(signature.as_ref(), out);
    }
}

/// An Ed25519 public key: what a receiver verifies `v1a` signatures with.
/// It is public: the API shows it on every read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey([u8; KEY_LEN]);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.standard_webhooks_form())
    }
}

impl PublicKey {
    /// Reads the `whpk_` form: base64 of 32 bytes.
    pub fn from_standard_webhooks_form(text: &str) -> Result<Self, KeyFormatError> {
        let bytes = decode_prefixed(text, PUBLIC_KEY_PREFIX, "public", KEY_LEN)?;
        let bytes = <[u8; KEY_LEN]>::try_from(bytes)
            .map_err(|_| KeyFormatError::Encoding("public", KEY_LEN))?;
        Ok(Self(bytes))
    }

    /// The `whpk_` form: base64 of its 32 bytes.
    pub fn standard_webhooks_form(&self) -> String {
        format!("{PUBLIC_KEY_PREFIX}{}", STANDARD.encode(self.0))
    }

    /// Its 32 bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

/// A `v1a` key pair as a subscription item stores it: the public key in the
/// clear (it is public, and reads show it without the keyring), the secret
/// key sealed with the keyring as [`SealPurpose::SigningKey`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSigningKey {
    /// The public key, `whpk_` form.
    pub public_key: String,
    /// The secret key's `whsk_` form, sealed.
    pub sealed: SealedSecret,
}

impl StoredSigningKey {
    /// `key` sealed for `owner` with the keyring's newest version.
    pub fn seal(
        key: &SigningKey,
        keyring: &Keyring,
        owner: SecretOwner<'_>,
    ) -> Result<Self, EmptyKeyring> {
        let text = WebhookSecret::from_string(key.standard_webhooks_form());
        Ok(Self {
            public_key: key.public_key().standard_webhooks_form(),
            sealed: keyring.seal_text(SealPurpose::SigningKey, &text, owner)?,
        })
    }

    /// The key pair, if it was sealed for `owner` by a version `keyring`
    /// holds.
    pub fn open(&self, keyring: &Keyring, owner: SecretOwner<'_>) -> Result<SigningKey, OpenError> {
        let text = keyring.open_text(SealPurpose::SigningKey, &self.sealed, owner)?;
        SigningKey::from_standard_webhooks_form(text.expose())
            .map_err(|_| OpenError::Malformed(self.sealed.key_version))
    }

    /// Seals it again with the keyring's newest version when an older one
    /// sealed it. Returns whether it changed.
    pub fn reseal(
        &mut self,
        keyring: &Keyring,
        owner: SecretOwner<'_>,
    ) -> Result<bool, ResealError> {
        let newest = keyring.newest().ok_or(EmptyKeyring)?;
        if self.sealed.key_version == newest {
            return Ok(false);
        }
        *self = Self::seal(&self.open(keyring, owner)?, keyring, owner)?;
        Ok(true)
    }
}

/// The bytes of `text`, `prefix` + base64, for errors about a `kind` key
/// of `len` bytes.
fn decode_prefixed(
    text: &str,
    prefix: &'static str,
    kind: &'static str,
    len: usize,
) -> Result<Vec<u8>, KeyFormatError> {
    let b64 = text
        .strip_prefix(prefix)
        .ok_or(KeyFormatError::Prefix(kind, prefix))?;
    STANDARD
        .decode(b64)
        .map_err(|_| KeyFormatError::Encoding(kind, len))
}

/// Verifies a delivery's `v1a` signatures as a receiver: the timestamp is
/// within five minutes of `now` (unix seconds) and at least one `v1a`
/// entry of the header is a valid signature by one of `public_keys`.
/// Entries of other schemes are ignored.
pub fn verify_v1a(
    public_keys: &[PublicKey],
    msg_id: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let received = Received {
        msg_id,
        timestamp,
        signature,
        body,
    };
    verify_entries(ENTRY_PREFIX, received, now, |signed, candidates| {
        public_keys.iter().any(|key| {
            let key = UnparsedPublicKey::new(&ED25519, key.as_bytes());
            candidates
                .iter()
                .any(|candidate| key.verify(signed, candidate).is_ok())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8032, section 7.1, test 2: a one-byte message (0x72).
    const RFC_SEED: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
    const RFC_PUBLIC: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
    const RFC_SIGNATURE: &str = "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
                                 085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn signs_like_rfc_8032_and_serialises_the_standard_webhooks_way() {
        let seed: [u8; 32] = hex(RFC_SEED).try_into().unwrap();
        let key = SigningKey::from_seed(seed);
        assert_eq!(key.public_key().as_bytes().to_vec(), hex(RFC_PUBLIC));
        let sig = key.pair.sign(&[0x72]);
        assert_eq!(sig.as_ref().to_vec(), hex(RFC_SIGNATURE));

        let whsk = key.standard_webhooks_form();
        let raw = STANDARD
            .decode(whsk.strip_prefix("whsk_").unwrap())
            .unwrap();
        assert_eq!(raw.len(), 64, "seed then public key");
        assert_eq!(raw[..32], seed);
        assert_eq!(raw[32..], hex(RFC_PUBLIC));
        assert_eq!(SigningKey::from_standard_webhooks_form(&whsk).unwrap(), key);
        let seed_only = format!("whsk_{}", STANDARD.encode(seed));
        assert_eq!(
            SigningKey::from_standard_webhooks_form(&seed_only).unwrap(),
            key
        );

        let whpk = key.public_key().standard_webhooks_form();
        assert_eq!(whpk, format!("whpk_{}", STANDARD.encode(hex(RFC_PUBLIC))));
        assert_eq!(
            PublicKey::from_standard_webhooks_form(&whpk).unwrap(),
            key.public_key()
        );
    }

    #[test]
    fn malformed_keys_are_refused() {
        let key = SigningKey::generate();
        let other = SigningKey::generate();
        let mut mixed = STANDARD.decode(&key.standard_webhooks_form()[5..]).unwrap();
        mixed[32..].copy_from_slice(other.public_key().as_bytes());
        let mixed = format!("whsk_{}", STANDARD.encode(mixed));
        assert_eq!(
            SigningKey::from_standard_webhooks_form(&mixed),
            Err(KeyFormatError::Mismatch)
        );
        for bad in ["whsec_AAAA", "whsk_!!", "whsk_AAAA"] {
            assert!(
                SigningKey::from_standard_webhooks_form(bad).is_err(),
                "{bad}"
            );
        }
        for bad in ["whsk_AAAA", "whpk_AAAA", "whpk_", "whpk_%%%"] {
            assert!(
                PublicKey::from_standard_webhooks_form(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_stored_key_opens_for_its_owner_and_purpose_only_and_reseals_to_the_newest_version() {
        let owner = SecretOwner {
            company_id: "acme",
            subscription_id: "sub_1",
        };
        let old_ring = Keyring::new([(1, [7u8; 32].as_slice())]).unwrap();
        let key = SigningKey::generate();
        let mut stored = StoredSigningKey::seal(&key, &old_ring, owner).unwrap();
        assert_eq!(stored.public_key, key.public_key().standard_webhooks_form());
        assert!(!format!("{stored:?}").contains(&key.standard_webhooks_form()[5..]));
        assert_eq!(stored.open(&old_ring, owner).unwrap(), key);
        let moved = SecretOwner {
            subscription_id: "sub_2",
            ..owner
        };
        assert_eq!(stored.open(&old_ring, moved), Err(OpenError::Rejected(1)));
        assert_eq!(
            old_ring.open(&stored.sealed, owner),
            Err(OpenError::Rejected(1)),
            "not a v1 secret"
        );

        let new_ring =
            Keyring::new([(1, [7u8; 32].as_slice()), (2, [9u8; 32].as_slice())]).unwrap();
        assert!(stored.reseal(&new_ring, owner).unwrap());
        assert_eq!(stored.sealed.key_version, 2);
        assert!(!stored.reseal(&new_ring, owner).unwrap());
        assert_eq!(stored.open(&new_ring, owner).unwrap(), key);
    }

    #[test]
    fn debug_output_hides_the_secret_key() {
        let key = SigningKey::generate();
        let debug = format!("{key:?}");
        let whsk = key.standard_webhooks_form();
        assert!(!debug.contains(&whsk[5..20]), "{debug}");
        assert!(debug.contains(&key.public_key().standard_webhooks_form()));
    }

    #[test]
    fn a_signature_verifies_with_its_public_key_only() {
        let key = SigningKey::generate();
        let mut header = String::from("v1,bm90IGEgc2lnbmF0dXJl ");
        key.sign_into("evt_1", 1000, b"{}", &mut header);
        let public = [key.public_key()];
        assert_eq!(
            verify_v1a(&public, "evt_1", "1000", &header, b"{}", 1100),
            Ok(())
        );
        let stranger = [SigningKey::generate().public_key()];
        assert_eq!(
            verify_v1a(&stranger, "evt_1", "1000", &header, b"{}", 1000),
            Err(VerifyError::NoMatch),
            "wrong key"
        );
        for (id, body) in [("evt_1", &b"{ }"[..]), ("evt_2", &b"{}"[..])] {
            assert_eq!(
                verify_v1a(&public, id, "1000", &header, body, 1000),
                Err(VerifyError::NoMatch),
                "tampered {id}"
            );
        }
        assert_eq!(
            verify_v1a(&public, "evt_1", "1001", &header, b"{}", 1000),
            Err(VerifyError::NoMatch),
            "the timestamp is signed"
        );
        assert_eq!(
            verify_v1a(&public, "evt_1", "1000", &header, b"{}", 1301),
            Err(VerifyError::OutsideTolerance)
        );
        assert_eq!(
            verify_v1a(&public, "evt_1", "later", &header, b"{}", 1000),
            Err(VerifyError::InvalidTimestamp)
        );
        let v1_only = header.split(' ').next().unwrap();
        assert_eq!(
            verify_v1a(&public, "evt_1", "1000", v1_only, b"{}", 1000),
            Err(VerifyError::NoMatch),
            "v1 entries do not count"
        );
    }
}
