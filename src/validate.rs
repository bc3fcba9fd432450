//! The rules for user names, room names, passwords, message bodies and
//! topics. The server enforces them; clients may call the same functions to
//! fail fast before a round trip. docs/PROTOCOL.md states them for other
//! implementations.

use crate::protocol::{ErrorCode, MAX_BODY_LEN, MAX_TOPIC_LEN};

/// Shortest and longest user name.
pub const USERNAME_LEN: (usize, usize) = (3, 32);
/// Shortest and longest room name.
pub const ROOM_LEN: (usize, usize) = (2, 32);
/// Shortest and longest password, in characters.
pub const PASSWORD_LEN: (usize, usize) = (8, 128);

/// A rule broken, as the error code and message the server replies with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The wire error code.
    pub code: ErrorCode,
    /// What is wrong, for people.
    pub message: String,
}

fn invalid(code: ErrorCode, message: impl Into<String>) -> Invalid {
    Invalid {
        code,
        message: message.into(),
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
}

fn name(raw: &str, (min, max): (usize, usize)) -> Option<String> {
    let lower = raw.to_ascii_lowercase();
    let ok = (min..=max).contains(&lower.len()) && lower.chars().all(is_name_char);
    ok.then_some(lower)
}

/// Checks a user name and returns its canonical (lower-case) form.
/// Names are 3-32 characters of `a-z 0-9 _ -`; upper-case input is folded,
/// so names are unique regardless of case.
pub fn username(raw: &str) -> Result<String, Invalid> {
    name(raw, USERNAME_LEN).ok_or_else(|| {
        invalid(
            ErrorCode::InvalidUsername,
            "user names are 3 to 32 characters of a-z, 0-9, '_' and '-'",
        )
    })
}

/// Checks a room name (an optional leading `#` is dropped) and returns its
/// canonical form: 2-32 characters of `a-z 0-9 _ -`.
pub fn room(raw: &str) -> Result<String, Invalid> {
    name(raw.strip_prefix('#').unwrap_or(raw), ROOM_LEN).ok_or_else(|| {
        invalid(
            ErrorCode::InvalidRoom,
            "room names are 2 to 32 characters of a-z, 0-9, '_' and '-'",
        )
    })
}

/// Checks a password's length (8-128 characters).
pub fn password(raw: &str) -> Result<(), Invalid> {
    let n = raw.chars().count();
    if (PASSWORD_LEN.0..=PASSWORD_LEN.1).contains(&n) {
        Ok(())
    } else {
        Err(invalid(
            ErrorCode::InvalidPassword,
            "passwords are 8 to 128 characters",
        ))
    }
}

/// Checks a message body: not blank, at most [`MAX_BODY_LEN`] bytes, and
/// no control characters other than newline and tab (they could rewrite a
/// terminal's screen).
pub fn body(raw: &str) -> Result<(), Invalid> {
    body_within(raw, MAX_BODY_LEN)
}

/// Like [`body`], with a server's own (lower) length limit.
pub fn body_within(raw: &str, max: usize) -> Result<(), Invalid> {
    let max = max.min(MAX_BODY_LEN);
    if raw.len() > max {
        return Err(invalid(
            ErrorCode::TooLong,
            format!("message is {} bytes; the limit is {max}", raw.len()),
        ));
    }
    if raw.trim().is_empty() {
        return Err(invalid(ErrorCode::InvalidBody, "message is empty"));
    }
    if raw
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(invalid(
            ErrorCode::InvalidBody,
            "message contains control characters",
        ));
    }
    Ok(())
}

/// Checks a topic (and any one-line text a user sets for others to see:
/// away messages, kick and ban reasons): at most [`MAX_TOPIC_LEN`] bytes,
/// one line, no control characters, and no invisible format characters
/// (bidi overrides and isolates, zero-width spaces: see `text`), which
/// could disguise or reorder the text around them.
pub fn topic(raw: &str) -> Result<(), Invalid> {
    if raw.len() > MAX_TOPIC_LEN {
        return Err(invalid(
            ErrorCode::TooLong,
            format!("topic is {} bytes; the limit is {MAX_TOPIC_LEN}", raw.len()),
        ));
    }
    if raw.chars().any(char::is_control) {
        return Err(invalid(
            ErrorCode::InvalidBody,
            "topic contains control characters",
        ));
    }
    if raw.chars().any(crate::text::is_hidden_format) {
        return Err(invalid(
            ErrorCode::InvalidBody,
            "text contains invisible formatting characters (bidi controls, zero-width spaces)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_fold_case_and_enforce_charset_and_length() {
        assert_eq!(username("Alice_1").unwrap(), "alice_1");
        for bad in ["al", &"a".repeat(33), "al ice", "alice!", "ålice", ""] {
            assert_eq!(
                username(bad).unwrap_err().code,
                ErrorCode::InvalidUsername,
                "{bad}"
            );
        }
        assert!(username(&"a".repeat(32)).is_ok());
    }

    #[test]
    fn room_names_accept_a_leading_hash() {
        assert_eq!(room("#Rust").unwrap(), "rust");
        assert_eq!(room("x").unwrap_err().code, ErrorCode::InvalidRoom);
        assert_eq!(room("#").unwrap_err().code, ErrorCode::InvalidRoom);
    }

    #[test]
    fn passwords_count_characters_not_bytes() {
        assert!(password("ééééééé").is_err());
        assert!(password("éééééééé").is_ok());
        assert!(password(&"x".repeat(129)).is_err());
    }

    #[test]
    fn bodies_reject_blank_oversized_and_escape_sequences() {
        assert!(body("hello\n\tworld").is_ok());
        assert_eq!(body("  ").unwrap_err().code, ErrorCode::InvalidBody);
        assert_eq!(body("\x1b[2J").unwrap_err().code, ErrorCode::InvalidBody);
        assert_eq!(
            body(&"x".repeat(MAX_BODY_LEN + 1)).unwrap_err().code,
            ErrorCode::TooLong
        );
        assert!(body(&"x".repeat(MAX_BODY_LEN)).is_ok());
        assert!(topic("a\nb").is_err());
    }
}
