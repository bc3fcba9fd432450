//! Password hashing: PBKDF2-HMAC-SHA256 in a self-describing string.
//!
//! A stored hash reads `pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>`,
//! so the iteration count can be raised later without breaking old hashes.
//! The salt is 16 random bytes per user; the hash is 32 bytes. Comparison
//! is constant-time.

use sha2::Sha256;

/// OWASP's figure for PBKDF2-HMAC-SHA256; ~70 ms per hash in a release
/// build on the reference machine.
pub const DEFAULT_ITERATIONS: u32 = 600_000;
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;
const SCHEME: &str = "pbkdf2-sha256";

/// Why a password could not be hashed or a stored hash could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    /// The operating system's random source failed.
    #[error("no randomness available for a salt")]
    Random,
    /// A stored hash string is not in the expected format.
    #[error("stored password hash is malformed")]
    Malformed,
}

/// Hashes `password` with a fresh random salt.
pub fn hash(password: &str, iterations: u32) -> Result<String, PasswordError> {
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|_| PasswordError::Random)?;
    Ok(hash_with_salt(password, &salt, iterations.max(1)))
}

fn hash_with_salt(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut out = [0u8; HASH_LEN];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
    format!("{SCHEME}${iterations}${}${}", to_hex(salt), to_hex(&out))
}

/// Checks `password` against a stored hash string, in constant time with
/// respect to the hash bytes.
pub fn verify(password: &str, stored: &str) -> Result<bool, PasswordError> {
    let mut parts = stored.split('$');
    let (Some(SCHEME), Some(iters), Some(salt), Some(expected), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(PasswordError::Malformed);
    };
    let iterations: u32 = iters.parse().map_err(|_| PasswordError::Malformed)?;
    let salt = from_hex(salt).ok_or(PasswordError::Malformed)?;
    let expected = from_hex(expected).ok_or(PasswordError::Malformed)?;
    if iterations == 0 || expected.len() != HASH_LEN {
        return Err(PasswordError::Malformed);
    }
    let mut actual = [0u8; HASH_LEN];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut actual);
    Ok(constant_time_eq(&actual, &expected))
}

/// The iteration count of a stored hash, if it is well-formed.
pub fn iterations_of(stored: &str) -> Option<u32> {
    let mut parts = stored.split('$');
    (parts.next()? == SCHEME).then_some(())?;
    parts.next()?.parse().ok()
}

/// A hash to verify against when the user does not exist, so that an
/// unknown user costs the same time as a wrong password.
pub fn dummy_hash(iterations: u32) -> String {
    hash_with_salt("confab-dummy-password", &[0u8; SALT_LEN], iterations.max(1))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_and_rejects_wrong_password() {
        let h = hash("correct horse", 1000).unwrap();
        assert!(h.starts_with("pbkdf2-sha256$1000$"));
        assert!(verify("correct horse", &h).unwrap());
        assert!(!verify("correct horsf", &h).unwrap());
    }

    #[test]
    fn salts_differ_between_hashes() {
        assert_ne!(hash("pw", 10).unwrap(), hash("pw", 10).unwrap());
    }

    #[test]
    fn known_vector_matches_rfc_7914_pbkdf2_sha256() {
        // RFC 7914 section 11: P="passwd", S="salt", c=1, first 32 bytes.
        let h = hash_with_salt("passwd", b"salt", 1);
        assert!(h.ends_with("$55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"));
    }

    #[test]
    fn malformed_stored_hashes_are_errors() {
        for bad in [
            "",
            "md5$1$00$00",
            "pbkdf2-sha256$x$00$00",
            "pbkdf2-sha256$0$00$00",
            "pbkdf2-sha256$1$zz$00",
            "pbkdf2-sha256$1$00$00",
            "pbkdf2-sha256$1$00$00$extra",
        ] {
            assert_eq!(verify("pw", bad), Err(PasswordError::Malformed), "{bad}");
        }
    }
}
