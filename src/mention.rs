//! Whether a message mentions someone: `@alice`, or `alice` as a whole
//! word, in any case. Shared by the server (the away summary counts
//! mentions) and the client (highlighting, sounds).

/// Characters that make up a user name, so that `malice` or `alice-bot`
/// do not mention `alice`.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Whether `body` mentions `user`.
pub fn mentions(body: &str, user: &str) -> bool {
    if user.is_empty() {
        return false;
    }
    let body = body.to_ascii_lowercase();
    let user = user.to_ascii_lowercase();
    let mut from = 0;
    while let Some(pos) = body[from..].find(&user) {
        let start = from + pos;
        let end = start + user.len();
        let before = body[..start].chars().next_back();
        let after = body[end..].chars().next();
        if !before.is_some_and(is_name_char) && !after.is_some_and(is_name_char) {
            return true;
        }
        from = start + 1;
        while !body.is_char_boundary(from) {
            from += 1;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::mentions;

    #[test]
    fn whole_words_and_at_mentions_in_any_case() {
        for body in [
            "alice",
            "hi alice",
            "@alice: look",
            "ALICE!",
            "thanks, Alice.",
            "alice's idea",
            "(alice)",
            "ping @Alice",
        ] {
            assert!(mentions(body, "alice"), "{body}");
        }
    }

    #[test]
    fn parts_of_other_words_do_not_count() {
        for body in [
            "malice",
            "alicex",
            "alice-bot says hi",
            "bob_alice",
            "",
            "al ice",
        ] {
            assert!(!mentions(body, "alice"), "{body}");
        }
        assert!(
            mentions("malice and alice", "alice"),
            "a later match counts"
        );
        assert!(!mentions("anything", ""));
        assert!(mentions("café alice ✓", "alice"), "non-ASCII around it");
    }
}
