//! API keys as every backend stores them: minted from the OS's randomness, kept only as a
//! SHA-256 hash, so a copy of the database does not hand out working keys.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// A new random key, in the form `sk-agentd-<48 hex digits>`.
pub fn mint() -> String {
    let mut raw = [0u8; 24];
    rand::rng().fill_bytes(&mut raw);
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    format!("sk-agentd-{hex}")
}

/// What a backend stores and looks a key up by.
pub fn hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_keys_differ_and_hash_to_32_bytes() {
        let (a, b) = (mint(), mint());
        assert_ne!(a, b);
        assert!(a.starts_with("sk-agentd-") && a.len() == "sk-agentd-".len() + 48);
        assert_eq!(hash(&a).len(), 32);
        assert_ne!(hash(&a), hash(&b));
    }
}
