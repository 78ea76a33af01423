//! Key generation, validation and derivation.

use crate::b64;
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hmac};

/// `len` bytes from the operating system's CSPRNG, base64-encoded.
pub fn generate_key(len: usize) -> String {
    b64::encode(random_bytes(len))
}

/// `len` bytes from the operating system's CSPRNG.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    // The system RNG failing is not something a caller can recover from.
    #[allow(clippy::expect_used)]
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random number generator failed");
    bytes
}

/// A random UUID (version 4) in its usual text form, as IoT Hub's message ids and lock
/// tokens are.
pub fn random_uuid() -> String {
    let mut b = random_bytes(16);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid_text(&b)
}

/// 16 bytes in a UUID's hyphenated form (`8-4-4-4-12` lower-case hex digits).
pub fn uuid_text(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        hex.get(0..8).unwrap_or_default(),
        hex.get(8..12).unwrap_or_default(),
        hex.get(12..16).unwrap_or_default(),
        hex.get(16..20).unwrap_or_default(),
        hex.get(20..32).unwrap_or_default()
    )
}

/// Why a symmetric key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key is not valid base64")]
    NotBase64,
    #[error("the key must decode to between 16 and 64 bytes, not {0}")]
    BadLength(usize),
}

/// Checks a symmetric key as IoT Hub and DPS do: base64 that decodes to 16–64 bytes.
pub fn validate_key(key_b64: &str) -> Result<(), KeyError> {
    let bytes = b64::decode(key_b64).map_err(|_| KeyError::NotBase64)?;
    if (16..=64).contains(&bytes.len()) {
        Ok(())
    } else {
        Err(KeyError::BadLength(bytes.len()))
    }
}

/// The device key DPS derives from a group key: `base64(HMAC-SHA256(base64decode(group), id))`,
/// over the registration id exactly as sent.
pub fn derive_device_key(group_key_b64: &str, registration_id: &str) -> Result<String, KeyError> {
    let group = b64::decode(group_key_b64).map_err(|_| KeyError::NotBase64)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, &group);
    Ok(b64::encode(
        hmac::sign(&key, registration_id.as_bytes()).as_ref(),
    ))
}

/// Why an X.509 thumbprint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a thumbprint is 40 (SHA-1) or 64 (SHA-256) hexadecimal digits")]
pub struct ThumbprintError;

/// Normalises a thumbprint to upper-case hex without separators, as IoT Hub stores it.
pub fn normalize_thumbprint(text: &str) -> Result<String, ThumbprintError> {
    let hex: String = text
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if (hex.len() == 40 || hex.len() == 64) && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(ThumbprintError)
    }
}

/// SHA-1 and SHA-256 thumbprints (upper-case hex) of a DER certificate.
pub fn thumbprints(der: &[u8]) -> (String, String) {
    let hex = |d: digest::Digest| d.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    (
        hex(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, der)),
        hex(digest::digest(&digest::SHA256, der)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_key_derivation_matches_the_sdks() {
        // docs/protocol/sas-tokens.md, "Group key derivation".
        let key = derive_device_key("dGVzdGtleXRlc3RrZXl0ZXN0a2V5dGVzdGtleQ==", "reg-1").unwrap();
        assert_eq!(key, "jmudKBSTQYBDw1ICt74S0TULyiEC9IC8TsUmQ4X6ZRw=");
    }

    #[test]
    fn keys_with_non_zero_trailing_bits_are_read_as_azure_reads_them() {
        let sloppy = format!("{}=", "a".repeat(43));
        let canonical = format!("{}Y=", "a".repeat(42));
        validate_key(&sloppy).unwrap();
        // The same bytes, so the same derived key, written canonically.
        let derived = derive_device_key(&sloppy, "reg-1").unwrap();
        assert_eq!(derived, derive_device_key(&canonical, "reg-1").unwrap());
        assert_eq!(b64::encode(b64::decode(&derived).unwrap()), derived);
        // A token signed with either form verifies with the other.
        let token = crate::sas::generate("h/devices/d", &sloppy, u64::MAX, None).unwrap();
        let parsed = crate::SasToken::parse(&token).unwrap();
        parsed.verify_keys([canonical.as_str()]).unwrap();
        parsed.verify_keys([sloppy.as_str()]).unwrap();
    }

    #[test]
    fn key_validation() {
        validate_key(&generate_key(16)).unwrap();
        validate_key(&generate_key(32)).unwrap();
        validate_key(&generate_key(64)).unwrap();
        assert_eq!(
            validate_key(&generate_key(15)),
            Err(KeyError::BadLength(15))
        );
        assert_eq!(
            validate_key(&generate_key(65)),
            Err(KeyError::BadLength(65))
        );
        assert_eq!(validate_key("not base64!"), Err(KeyError::NotBase64));
        assert_eq!(validate_key(""), Err(KeyError::BadLength(0)));
    }

    #[test]
    fn thumbprint_normalisation() {
        let sha1 = "ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01";
        assert_eq!(
            normalize_thumbprint(sha1).unwrap(),
            "ABCDEF0123456789ABCDEF0123456789ABCDEF01"
        );
        assert!(normalize_thumbprint(&"a".repeat(64)).is_ok());
        assert!(normalize_thumbprint(&"a".repeat(41)).is_err());
        assert!(normalize_thumbprint(&"g".repeat(40)).is_err());
        let (s1, s256) = thumbprints(b"abc");
        assert_eq!(s1, "A9993E364706816ABA3E25717850C26C9CD0D89D");
        assert_eq!(s256.len(), 64);
    }
}
