//! Signing secrets encrypted at rest.
//!
//! A subscription item never holds a secret in the clear: it holds a
//! [`SealedSecret`], the secret encrypted with AES-256-GCM under one version
//! of the [`Keyring`], with the company id, the subscription id and the key
//! version as associated data. A ciphertext copied into another item (or
//! relabelled with another version) therefore does not decrypt.
//!
//! Items written before encryption hold the secret as a plain string;
//! [`StoredSecret`] reads both, and every write seals it (see
//! [`Keyring::reseal`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::signing::secret::WebhookSecret;

/// Length of a data key: AES-256.
pub const DATA_KEY_LEN: usize = 32;

/// What a sealed value is: part of its associated data, so a ciphertext
/// sealed as one thing never opens as another (a header value copied into
/// the signing secret's place does not decrypt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealPurpose {
    /// The `v1` (HMAC) signing secret.
    SigningSecret,
    /// The `v1a` (Ed25519) signing key.
    SigningKey,
    /// The custom headers sent with every delivery.
    Headers,
    /// A PagerDuty format's routing key.
    RoutingKey,
}

impl SealPurpose {
    /// The label in the associated data.
    const fn label(self) -> &'static [u8] {
        match self {
            Self::SigningSecret => b"webhooks/signing-secret/v1",
            Self::SigningKey => b"webhooks/signing-key/v1",
            Self::Headers => b"webhooks/headers/v1",
            Self::RoutingKey => b"webhooks/routing-key/v1",
        }
    }
}

/// A secret encrypted under one keyring version, as the item stores it: a
/// map `{key_version, ciphertext}` where `ciphertext` is
/// base64(nonce ‖ encrypted secret ‖ tag).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    /// The keyring version that encrypted it.
    pub key_version: u32,
    /// base64 of the 12-byte nonce, the ciphertext and the 16-byte tag.
    pub ciphertext: String,
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSecret")
            .field("key_version", &self.key_version)
            .finish_non_exhaustive()
    }
}

/// A secret as found in an item: sealed, or (written before encryption at
/// rest) in the clear.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StoredSecret {
    /// Encrypted under a keyring version.
    Sealed(SealedSecret),
    /// A plaintext secret of an item written before encryption. Never
    /// written any more: the store refuses it.
    Plaintext(WebhookSecret),
}

impl std::fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sealed(s) => s.fmt(f),
            Self::Plaintext(_) => f.write_str("StoredSecret::Plaintext([redacted])"),
        }
    }
}

impl StoredSecret {
    /// The keyring version it is sealed with; `None` in the clear.
    pub fn key_version(&self) -> Option<u32> {
        match self {
            Self::Sealed(s) => Some(s.key_version),
            Self::Plaintext(_) => None,
        }
    }
}

/// Where a sealed secret belongs: the associated data of its encryption.
#[derive(Debug, Clone, Copy)]
pub struct SecretOwner<'a> {
    /// The subscription's company.
    pub company_id: &'a str,
    /// The subscription.
    pub subscription_id: &'a str,
}

impl SecretOwner<'_> {
    /// Length-prefixed, so no two (purpose, company, subscription, version)
    /// tuples give the same bytes.
    fn aad(&self, purpose: SealPurpose, key_version: u32) -> Vec<u8> {
        let label = purpose.label();
        let mut aad = Vec::with_capacity(label.len() + 16 + self.company_id.len() + 40);
        for part in [
            label,
            self.company_id.as_bytes(),
            self.subscription_id.as_bytes(),
        ] {
            aad.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            aad.extend_from_slice(part);
        }
        aad.extend_from_slice(&key_version.to_be_bytes());
        aad
    }
}

/// Why a stored secret could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The item names a key version the keyring does not hold.
    #[error("signing secret is sealed with key version {0}, which the keyring does not hold")]
    UnknownKeyVersion(u32),
    /// The ciphertext is not base64 or too short.
    #[error("signing secret of key version {0} is not a well-formed ciphertext")]
    Malformed(u32),
    /// Authentication failed: tampered, or sealed for another subscription.
    #[error(
        "signing secret of key version {0} does not decrypt for this subscription (tampered or moved)"
    )]
    Rejected(u32),
}

/// The keyring is empty: nothing can be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the keyring holds no key version: nothing can be sealed")]
pub struct EmptyKeyring;

/// The unwrapped data keys by version. Sealing uses the newest; opening uses
/// whichever version the secret names. Cheap to clone; its `Debug` shows
/// versions only.
#[derive(Clone)]
pub struct Keyring {
    keys: BTreeMap<u32, Arc<LessSafeKey>>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("versions", &self.versions())
            .finish()
    }
}

/// A data key of the wrong length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("data key version {version} is {len} bytes; AES-256 needs {DATA_KEY_LEN}")]
pub struct BadDataKey {
    /// The version it was given for.
    pub version: u32,
    /// Its length.
    pub len: usize,
}

impl Keyring {
    /// A keyring of the given (version, 32-byte data key) pairs.
    pub fn new<'a>(keys: impl IntoIterator<Item = (u32, &'a [u8])>) -> Result<Self, BadDataKey> {
        let mut ring = Self {
            keys: BTreeMap::new(),
            rng: SystemRandom::new(),
        };
        for (version, bytes) in keys {
            ring.insert(version, bytes)?;
        }
        Ok(ring)
    }

    /// A keyring of one random data key as version 1: for tests and
    /// benchmarks that need no key service.
    pub fn generate() -> Self {
        let mut key = [0u8; DATA_KEY_LEN];
        SystemRandom::new()
            .fill(&mut key)
            .expect("the system's random number generator works");
        Self::new([(1, key.as_slice())]).expect("a 32-byte key")
    }

    /// Adds (or replaces) a version.
    pub fn insert(&mut self, version: u32, bytes: &[u8]) -> Result<(), BadDataKey> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| BadDataKey {
            version,
            len: bytes.len(),
        })?;
        self.keys
            .insert(version, Arc::new(LessSafeKey::new(unbound)));
        Ok(())
    }

    /// The versions it holds, oldest first.
    pub fn versions(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }

    /// The newest version: new secrets are sealed with it.
    pub fn newest(&self) -> Option<u32> {
        self.keys.keys().next_back().copied()
    }

    /// Whether it holds `version`.
    pub fn holds(&self, version: u32) -> bool {
        self.keys.contains_key(&version)
    }

    /// `secret` sealed for `owner` with the newest version.
    pub fn seal(
        &self,
        secret: &WebhookSecret,
        owner: SecretOwner<'_>,
    ) -> Result<SealedSecret, EmptyKeyring> {
        self.seal_text(SealPurpose::SigningSecret, secret, owner)
    }

    /// `secret` sealed as `purpose` for `owner` with the newest version.
    pub fn seal_text(
        &self,
        purpose: SealPurpose,
        secret: &WebhookSecret,
        owner: SecretOwner<'_>,
    ) -> Result<SealedSecret, EmptyKeyring> {
        let (&version, key) = self.keys.iter().next_back().ok_or(EmptyKeyring)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .expect("the system's random number generator works");
        let mut sealed = Vec::with_capacity(NONCE_LEN + secret.expose().len() + 16);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(secret.expose().as_bytes());
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(owner.aad(purpose, version)),
                &mut sealed[NONCE_LEN..],
            )
            .expect("AES-GCM seals any secret shorter than 64 GiB");
        sealed.extend_from_slice(tag.as_ref());
        Ok(SealedSecret {
            key_version: version,
            ciphertext: STANDARD.encode(sealed),
        })
    }

    /// The secret in `sealed`, if it was sealed for `owner` by a version
    /// this keyring holds.
    pub fn open(
        &self,
        sealed: &SealedSecret,
        owner: SecretOwner<'_>,
    ) -> Result<WebhookSecret, OpenError> {
        self.open_text(SealPurpose::SigningSecret, sealed, owner)
    }

    /// The value in `sealed`, if it was sealed as `purpose` for `owner` by a
    /// version this keyring holds.
    pub fn open_text(
        &self,
        purpose: SealPurpose,
        sealed: &SealedSecret,
        owner: SecretOwner<'_>,
    ) -> Result<WebhookSecret, OpenError> {
        let version = sealed.key_version;
        let key = self
            .keys
            .get(&version)
            .ok_or(OpenError::UnknownKeyVersion(version))?;
        let mut bytes = STANDARD
            .decode(&sealed.ciphertext)
            .map_err(|_| OpenError::Malformed(version))?;
        if bytes.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(OpenError::Malformed(version));
        }
        let nonce = Nonce::try_assume_unique_for_key(&bytes[..NONCE_LEN])
            .map_err(|_| OpenError::Malformed(version))?;
        let plain = key
            .open_in_place(
                nonce,
                Aad::from(owner.aad(purpose, version)),
                &mut bytes[NONCE_LEN..],
            )
            .map_err(|_| OpenError::Rejected(version))?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| OpenError::Rejected(version))?;
        Ok(WebhookSecret::from_string(text))
    }

    /// The secret in `stored`: opened, or as is when it is in the clear.
    pub fn open_stored(
        &self,
        stored: &StoredSecret,
        owner: SecretOwner<'_>,
    ) -> Result<WebhookSecret, OpenError> {
        match stored {
            StoredSecret::Sealed(sealed) => self.open(sealed, owner),
            StoredSecret::Plaintext(secret) => Ok(secret.clone()),
        }
    }

    /// `stored` sealed with the newest version: unchanged when it already
    /// is, sealed when it is in the clear, re-sealed when an older version
    /// sealed it. Returns whether it changed.
    pub fn reseal(
        &self,
        stored: &mut StoredSecret,
        owner: SecretOwner<'_>,
    ) -> Result<bool, ResealError> {
        let newest = self.newest().ok_or(ResealError::Empty(EmptyKeyring))?;
        if stored.key_version() == Some(newest) {
            return Ok(false);
        }
        let secret = self.open_stored(stored, owner)?;
        *stored = StoredSecret::Sealed(self.seal(&secret, owner)?);
        Ok(true)
    }
}

/// A secret could not be re-sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResealError {
    /// Nothing to seal with.
    #[error(transparent)]
    Empty(#[from] EmptyKeyring),
    /// The old ciphertext does not open.
    #[error(transparent)]
    Open(#[from] OpenError),
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: SecretOwner<'static> = SecretOwner {
        company_id: "acme",
        subscription_id: "sub_0190a1b2c3d4e5f60718293a4b5c6d7e",
    };

    fn ring_of(versions: &[(u32, u8)]) -> Keyring {
        let keys: Vec<(u32, [u8; 32])> = versions.iter().map(|&(v, b)| (v, [b; 32])).collect();
        Keyring::new(keys.iter().map(|(v, k)| (*v, k.as_slice()))).unwrap()
    }

    #[test]
    fn a_value_sealed_for_one_purpose_does_not_open_as_another() {
        let ring = ring_of(&[(1, 7)]);
        let value = WebhookSecret::from_string("Basic dXNlcjpwYXNz".into());
        let sealed = ring.seal_text(SealPurpose::Headers, &value, OWNER).unwrap();
        assert_eq!(
            ring.open_text(SealPurpose::Headers, &sealed, OWNER)
                .unwrap(),
            value
        );
        assert_eq!(ring.open(&sealed, OWNER), Err(OpenError::Rejected(1)));
        assert_eq!(
            ring.open_text(SealPurpose::SigningKey, &sealed, OWNER),
            Err(OpenError::Rejected(1))
        );
    }

    #[test]
    fn a_sealed_secret_opens_for_its_owner_only() {
        let ring = ring_of(&[(1, 7)]);
        let secret = WebhookSecret::generate();
        let sealed = ring.seal(&secret, OWNER).unwrap();
        assert_eq!(sealed.key_version, 1);
        assert!(!sealed.ciphertext.contains(secret.expose()));
        assert_eq!(ring.open(&sealed, OWNER).unwrap(), secret);
        for other in [
            SecretOwner {
                company_id: "globex",
                ..OWNER
            },
            SecretOwner {
                subscription_id: "sub_0190a1b2c3d4e5f60718293a4b5c6d7f",
                ..OWNER
            },
        ] {
            assert_eq!(ring.open(&sealed, other), Err(OpenError::Rejected(1)));
        }
    }

    #[test]
    fn associated_data_is_unambiguous() {
        let a = SecretOwner {
            company_id: "ab",
            subscription_id: "c",
        };
        let b = SecretOwner {
            company_id: "a",
            subscription_id: "bc",
        };
        let secret = SealPurpose::SigningSecret;
        assert_ne!(a.aad(secret, 1), b.aad(secret, 1));
        assert_ne!(a.aad(secret, 1), a.aad(secret, 2));
        assert_ne!(a.aad(secret, 1), a.aad(SealPurpose::Headers, 1));
    }

    #[test]
    fn tampering_and_relabelling_are_rejected() {
        let ring = ring_of(&[(1, 7), (2, 9)]);
        let sealed = ring.seal(&WebhookSecret::generate(), OWNER).unwrap();
        assert_eq!(sealed.key_version, 2, "the newest version seals");
        let mut bytes = STANDARD.decode(&sealed.ciphertext).unwrap();
        bytes[NONCE_LEN] ^= 1;
        let flipped = SealedSecret {
            ciphertext: STANDARD.encode(&bytes),
            ..sealed.clone()
        };
        assert_eq!(ring.open(&flipped, OWNER), Err(OpenError::Rejected(2)));
        let relabelled = SealedSecret {
            key_version: 1,
            ..sealed.clone()
        };
        assert_eq!(ring.open(&relabelled, OWNER), Err(OpenError::Rejected(1)));
        let short = SealedSecret {
            ciphertext: "AAAA".into(),
            ..sealed.clone()
        };
        assert_eq!(ring.open(&short, OWNER), Err(OpenError::Malformed(2)));
        let unknown = SealedSecret {
            key_version: 3,
            ..sealed
        };
        assert_eq!(
            ring.open(&unknown, OWNER),
            Err(OpenError::UnknownKeyVersion(3))
        );
    }

    #[test]
    fn older_versions_still_open_and_reseal_moves_to_the_newest() {
        let old = ring_of(&[(1, 7)]);
        let secret = WebhookSecret::generate();
        let mut stored = StoredSecret::Sealed(old.seal(&secret, OWNER).unwrap());
        let new = ring_of(&[(1, 7), (2, 9)]);
        assert_eq!(new.open_stored(&stored, OWNER).unwrap(), secret);
        assert!(new.reseal(&mut stored, OWNER).unwrap());
        assert_eq!(stored.key_version(), Some(2));
        assert!(!new.reseal(&mut stored, OWNER).unwrap(), "already newest");
        assert_eq!(new.open_stored(&stored, OWNER).unwrap(), secret);
    }

    #[test]
    fn plaintext_items_read_and_seal_on_reseal() {
        let ring = ring_of(&[(4, 1)]);
        let secret = WebhookSecret::generate();
        let mut stored = StoredSecret::Plaintext(secret.clone());
        assert_eq!(ring.open_stored(&stored, OWNER).unwrap(), secret);
        assert!(ring.reseal(&mut stored, OWNER).unwrap());
        assert_eq!(stored.key_version(), Some(4));
        assert_eq!(ring.open_stored(&stored, OWNER).unwrap(), secret);
        assert!(matches!(
            Keyring::new([]).unwrap().reseal(&mut stored, OWNER),
            Err(ResealError::Empty(_))
        ));
    }

    #[test]
    fn items_hold_a_map_or_a_legacy_string() {
        use aws_sdk_dynamodb::types::AttributeValue;
        use serde_dynamo::aws_sdk_dynamodb_1::{from_attribute_value, to_attribute_value};
        let ring = ring_of(&[(1, 7)]);
        let sealed = StoredSecret::Sealed(ring.seal(&WebhookSecret::generate(), OWNER).unwrap());
        let value: AttributeValue = to_attribute_value(&sealed).unwrap();
        let map = value.as_m().unwrap();
        assert_eq!(map["key_version"], AttributeValue::N("1".into()));
        assert!(map["ciphertext"].is_s());
        assert_eq!(from_attribute_value::<StoredSecret>(value).unwrap(), sealed);
        let legacy: StoredSecret =
            from_attribute_value(AttributeValue::S("5b6c1f7e-2f1a".into())).unwrap();
        assert!(matches!(legacy, StoredSecret::Plaintext(ref s) if s.expose() == "5b6c1f7e-2f1a"));
        assert!(!format!("{legacy:?}").contains("5b6c"));
    }

    #[test]
    fn data_keys_must_be_32_bytes() {
        assert_eq!(
            Keyring::new([(3, [0u8; 16].as_slice())]).unwrap_err(),
            BadDataKey {
                version: 3,
                len: 16
            }
        );
    }
}
