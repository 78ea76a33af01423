//! Base64 as Azure reads it: the one decoder for every key, signature and base64 value a
//! client sends, and the canonical encoder for everything the server writes.
//!
//! Azure's services decode with .NET's `Convert.FromBase64String`, which ignores white space
//! and accepts a last character whose unused low bits are not zero (`"a"*43 + "="` decodes
//! like `"a"*42 + "Y="`); Python's `base64.b64decode` does the same. Both still want the `=`
//! padding, so this decoder does too.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

pub use base64::DecodeError;

/// The standard alphabet, padding required, trailing bits ignored.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// Decodes standard base64 as Azure does: white space anywhere is ignored, and non-zero
/// trailing bits in the last character are accepted.
pub fn decode(text: impl AsRef<[u8]>) -> Result<Vec<u8>, DecodeError> {
    let text = text.as_ref();
    if text.iter().any(u8::is_ascii_whitespace) {
        let compact: Vec<u8> = text
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        LENIENT.decode(compact)
    } else {
        LENIENT.decode(text)
    }
}

/// Encodes as canonical standard base64 (padded, zero trailing bits).
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_zero_trailing_bits_decode_like_their_canonical_form() {
        let sloppy = format!("{}=", "a".repeat(43));
        let canonical = format!("{}Y=", "a".repeat(42));
        assert_eq!(decode(&sloppy).unwrap(), decode(&canonical).unwrap());
        assert_eq!(decode(&sloppy).unwrap().len(), 32);
        assert_eq!(encode(decode(&sloppy).unwrap()), canonical);
        // Two padding characters: four unused bits.
        assert_eq!(decode("QR==").unwrap(), decode("QQ==").unwrap());
    }

    #[test]
    fn white_space_is_ignored_and_padding_still_counts() {
        assert_eq!(decode(" QUJD\nREVG\t").unwrap(), b"ABCDEF");
        assert_eq!(decode("").unwrap(), b"");
        assert!(
            decode("QQ").is_err(),
            "padding is required, as .NET requires it"
        );
        assert!(decode("QQ=").is_err());
        assert!(decode("Q===").is_err());
        assert!(decode("QQ==QQ==").is_err());
        assert!(decode("a!bc").is_err());
        assert!(
            decode("a-b_").is_err(),
            "the URL-safe alphabet is another alphabet"
        );
    }
}
