//! Sealing: ChaCha20-Poly1305 with a random 96-bit nonce per value and the credential id as
//! associated data, so a sealed value moved to another credential's row does not open.
//! Layout: version byte, nonce, ciphertext and tag.

use std::sync::Arc;

use ring::aead::{self, Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::Key;
use crate::secret::Secrets;

const VERSION: u8 = 1;

/// Seals and opens values under one key. Cheap to clone.
#[derive(Clone)]
pub struct Sealer {
    key: Arc<LessSafeKey>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<key redacted>)")
    }
}

/// Why a sealed value did not open. Carries no part of the value.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "the sealed value of {0} does not open with this vault key (a wrong key, or the value was altered)"
    )]
    WrongKeyOrAltered(String),
    #[error("the sealed value of {0} is malformed")]
    Malformed(String),
}

impl Sealer {
    pub fn new(key: &Key) -> Sealer {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, key.bytes())
            .expect("a 32-byte key is a ChaCha20-Poly1305 key");
        Sealer {
            key: Arc::new(LessSafeKey::new(unbound)),
            rng: SystemRandom::new(),
        }
    }

    /// Seal `plain` bound to `aad` (a credential id).
    pub fn seal(&self, aad: &str, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .expect("the system random number generator works");
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut buf,
            )
            .expect("sealing a value under the size limit cannot fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        out
    }

    pub fn open(&self, aad: &str, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        let (Some(&VERSION), Some(rest)) = (sealed.first(), sealed.get(1..)) else {
            return Err(OpenError::Malformed(aad.to_owned()));
        };
        if rest.len() < NONCE_LEN + aead::MAX_TAG_LEN {
            return Err(OpenError::Malformed(aad.to_owned()));
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| OpenError::Malformed(aad.to_owned()))?;
        let mut buf = ct.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf)
            .map_err(|_| OpenError::WrongKeyOrAltered(aad.to_owned()))?;
        Ok(plain.to_vec())
    }

    /// A credential's secrets, sealed to its id.
    pub fn seal_secrets(&self, credential_id: &str, s: &Secrets) -> Vec<u8> {
        let plain = serde_json::to_vec(s).expect("secrets serialise");
        self.seal(credential_id, &plain)
    }

    /// A credential's secrets; an archived credential (no sealed value) has none.
    pub fn open_secrets(&self, credential_id: &str, sealed: &[u8]) -> Result<Secrets, OpenError> {
        if sealed.is_empty() {
            return Ok(Secrets::default());
        }
        let plain = self.open(credential_id, sealed)?;
        serde_json::from_slice(&plain).map_err(|_| OpenError::Malformed(credential_id.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_opens_only_with_its_key_and_its_id() {
        let k = Sealer::new(&Key::generate());
        let sealed = k.seal("vcrd_1", b"canary");
        assert_eq!(k.open("vcrd_1", &sealed).unwrap(), b"canary");
        assert!(!sealed.windows(6).any(|w| w == b"canary"));
        assert!(matches!(
            k.open("vcrd_2", &sealed),
            Err(OpenError::WrongKeyOrAltered(_))
        ));
        let other = Sealer::new(&Key::generate());
        assert!(other.open("vcrd_1", &sealed).is_err());
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(k.open("vcrd_1", &altered).is_err());
        // A fresh nonce each time: the same value seals differently.
        assert_ne!(k.seal("vcrd_1", b"canary"), sealed);
    }

    #[test]
    fn secrets_never_print() {
        let s = Secrets {
            token: Some(crate::Secret::new("canary-token")),
            ..Secrets::default()
        };
        assert!(!format!("{s:?} {:?}", s.token).contains("canary"));
    }
}
