//! Hex text for keys, signatures and tokens, over `data-encoding` (already used for the
//! base32 of codes; the separate `hex` crate added nothing). Encoding is lowercase; decoding
//! accepts either case, as the `hex` crate did, so stored and received text reads the same.

use data_encoding::{HEXLOWER, HEXLOWER_PERMISSIVE};

/// Lowercase hex of `bytes`.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    HEXLOWER.encode(bytes.as_ref())
}

/// Exactly `N` bytes from lowercase hex, uppercase refused: for encodings that must give
/// back the very text they read (`encode` of the result equals `text`).
pub fn decode_lower<const N: usize>(text: &str) -> Option<[u8; N]> {
    HEXLOWER.decode(text.as_bytes()).ok()?.try_into().ok()
}

/// Bytes of `text`, which must be an even number of hex digits (either case).
pub fn decode(text: impl AsRef<[u8]>) -> Result<Vec<u8>, data_encoding::DecodeError> {
    HEXLOWER_PERMISSIVE.decode(text.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_either_case() {
        assert_eq!(encode([0x00, 0xab, 0xff]), "00abff");
        assert_eq!(decode("00ABff").expect("valid hex"), vec![0x00, 0xab, 0xff]);
        assert!(decode("abc").is_err(), "odd length");
        assert!(decode("zz").is_err(), "not a hex digit");
        assert_eq!(decode_lower::<2>("00ab"), Some([0x00, 0xab]));
        assert_eq!(
            decode_lower::<2>("00AB"),
            None,
            "only the text encode writes"
        );
        assert_eq!(decode_lower::<2>("00ab00"), None, "exactly N bytes");
    }
}
