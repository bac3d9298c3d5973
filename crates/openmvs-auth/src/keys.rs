//! Ed25519 signing keys with key ids, and the key ring that issues tokens and rotates keys.

use std::collections::BTreeMap;
use std::fmt;

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::validator::{KeySet, Validator};
use crate::{AuthError, Claims, jws, random_bytes};

/// An Ed25519 key pair that signs tokens, named by its key id (`kid`).
///
/// The storage layer persists a key as its `kid` and [`secret_bytes`](Self::secret_bytes), and
/// restores it with [`from_secret_bytes`](Self::from_secret_bytes). `Debug` shows the key id and
/// public key only, so a key pair can be logged without leaking its secret.
pub struct SigningKeyPair {
    /// The key id written into the header of every token this key signs.
    pub kid: String,
    key: SigningKey,
}

impl SigningKeyPair {
    /// A new key pair from the operating system's randomness, with a key id derived from its
    /// public key.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails.
    #[must_use]
    pub fn generate() -> Self {
        Self::from_secret_bytes(None, random_bytes::<32>())
    }

    /// Restores a key pair from its 32-byte Ed25519 secret.
    ///
    /// With `kid` `None` the key id is derived from the public key (`k_` and the base64url of its
    /// first 9 bytes), as [`generate`](Self::generate) does, so that a key stored as its secret
    /// alone comes back with the same id.
    #[must_use]
    pub fn from_secret_bytes(kid: Option<String>, secret: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&secret);
        let kid = kid.unwrap_or_else(|| derive_kid(&key.verifying_key().to_bytes()));
        Self { kid, key }
    }

    /// The 32-byte Ed25519 secret, to persist the key. Treat it like a password.
    #[must_use]
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The 32-byte Ed25519 public key, which verifies this key's tokens.
    #[must_use]
    pub fn public_bytes(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

impl fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyPair")
            .field("kid", &self.kid)
            .field("public", &jws::b64(&self.public_bytes()))
            .finish_non_exhaustive()
    }
}

/// A key id derived from a public key: 72 bits make a collision within one ring implausible while
/// keeping headers short.
fn derive_kid(public: &[u8; 32]) -> String {
    format!("k_{}", jws::b64(&public[..9]))
}

/// The keys of one national system: one active key that signs new tokens, and verification-only
/// keys (retired from signing, or not yet signing) whose tokens are still accepted.
///
/// The ring owns the key set that its validators check against: every [`Validator`] from
/// [`validator`](Self::validator) sees a [`rotate`](Self::rotate), an
/// [`add_verification_key`](Self::add_verification_key) or a [`retire`](Self::retire) as soon as it
/// returns. The alternative, a validator as a snapshot of the keys, would make every caller
/// responsible for replacing its copies after each change, and a forgotten copy either refuses
/// every new token or keeps accepting a retired key. See the crate documentation for the rotation
/// procedure.
pub struct KeyRing {
    active: SigningKeyPair,
    verification_only: BTreeMap<String, VerifyingKey>,
    validator: Validator,
}

impl KeyRing {
    /// A ring whose only key is `active`.
    #[must_use]
    pub fn new(active: SigningKeyPair) -> Self {
        let validator = Validator::empty();
        let ring = Self { active, verification_only: BTreeMap::new(), validator };
        ring.publish();
        ring
    }

    /// The key that signs new tokens.
    #[must_use]
    pub fn active(&self) -> &SigningKeyPair {
        &self.active
    }

    /// Signs `claims` with the active key as a compact JWS.
    ///
    /// Build the claims with [`Claims::new`]: a token whose lifetime `exp - iat` exceeds
    /// [`TOKEN_LIFETIME_SECS`](crate::TOKEN_LIFETIME_SECS) is signed but refused by every
    /// validator, because key retirement relies on that bound.
    #[must_use]
    pub fn issue(&self, claims: &Claims) -> String {
        jws::encode(&self.active, claims)
    }

    /// Accepts tokens signed by the key `kid` with public key `public`, without signing with it.
    ///
    /// Use it to restore retired keys after a restart, and to announce a key to every instance
    /// before any instance makes it active (rotation step 2). Adding a key that is already in the
    /// ring with the same public key does nothing.
    ///
    /// # Errors
    ///
    /// [`AuthError::Internal`] if `public` is not a usable Ed25519 public key, or if `kid` is
    /// already in the ring with a different public key.
    pub fn add_verification_key(
        &mut self,
        kid: impl Into<String>,
        public: [u8; 32],
    ) -> Result<(), AuthError> {
        let kid = kid.into();
        let key = crate::validator::verifying_key(&kid, &public)?;
        if self.conflicts(&kid, &public)? {
            return Ok(());
        }
        self.verification_only.insert(kid, key);
        self.publish();
        Ok(())
    }

    /// Makes `new` the active key; the previous active key becomes verification-only and keeps
    /// accepting the tokens it signed until it is [`retire`](Self::retire)d.
    ///
    /// `new` may already be in the ring as a verification-only key (announced with
    /// [`add_verification_key`](Self::add_verification_key)); it is then promoted. Rotating to the
    /// active key itself does nothing.
    ///
    /// # Errors
    ///
    /// [`AuthError::Internal`] if `new.kid` is already in the ring with a different public key.
    pub fn rotate(&mut self, new: SigningKeyPair) -> Result<(), AuthError> {
        let public = new.public_bytes();
        // Rotating to the active key itself either changes nothing or is a conflict.
        let known = self.conflicts(&new.kid, &public)?;
        if known && new.kid == self.active.kid {
            return Ok(());
        }
        self.verification_only.remove(&new.kid);
        let old = std::mem::replace(&mut self.active, new);
        self.verification_only.insert(old.kid.clone(), old.signing_key().verifying_key());
        self.publish();
        Ok(())
    }

    /// Stops accepting tokens signed by the verification-only key `kid`, at once, in every
    /// validator of this ring and whether or not a token is cached.
    ///
    /// Returns whether a key was removed; retiring a key that is not in the ring does nothing, so
    /// that a retirement can be repeated safely.
    ///
    /// # Errors
    ///
    /// [`AuthError::Internal`] if `kid` is the active key: rotate to a new key first.
    pub fn retire(&mut self, kid: &str) -> Result<bool, AuthError> {
        if kid == self.active.kid {
            return Err(AuthError::Internal(format!(
                "key '{kid}' is the active signing key; rotate to a new key before retiring it"
            )));
        }
        let removed = self.verification_only.remove(kid).is_some();
        if removed {
            self.publish();
        }
        Ok(removed)
    }

    /// Every key id and public key the ring verifies with, the active key first, so that the
    /// storage layer can persist them.
    #[must_use]
    pub fn verification_keys(&self) -> Vec<(String, [u8; 32])> {
        std::iter::once((self.active.kid.clone(), self.active.public_bytes()))
            .chain(self.verification_only.iter().map(|(kid, key)| (kid.clone(), key.to_bytes())))
            .collect()
    }

    /// A validator that follows this ring's keys. Clones share one cache and one key set.
    #[must_use]
    pub fn validator(&self) -> Validator {
        self.validator.clone()
    }

    /// Whether `kid` is already in the ring with exactly `public` (`Ok(true)`), is not in the ring
    /// (`Ok(false)`), or is in it with another key (`Err`): two keys under one id would make the
    /// tokens of one of them fail as forgeries.
    fn conflicts(&self, kid: &str, public: &[u8; 32]) -> Result<bool, AuthError> {
        let existing = if kid == self.active.kid {
            Some(self.active.public_bytes())
        } else {
            self.verification_only.get(kid).map(VerifyingKey::to_bytes)
        };
        match existing {
            None => Ok(false),
            Some(bytes) if bytes == *public => Ok(true),
            Some(_) => Err(AuthError::Internal(format!(
                "key id '{kid}' is already in the key ring with a different public key"
            ))),
        }
    }

    /// Hands the current key set to the ring's validators.
    fn publish(&self) {
        let mut keys = KeySet::new();
        keys.insert(self.active.kid.clone(), self.active.signing_key().verifying_key());
        for (kid, key) in &self.verification_only {
            keys.insert(kid.clone(), *key);
        }
        self.validator.install(keys);
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("active", &self.active.kid)
            .field("verification_only", &self.verification_only.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}
