//! Text that people choose and other people see: which characters may
//! reorder or hide the text around them, and how any string is made safe
//! to print on a terminal.
//!
//! Two kinds of characters are dangerous on a screen:
//!
//! - **control characters** (C0, DEL, C1): ESC starts terminal escape
//!   sequences that can move the cursor, rewrite the screen or set the
//!   window title;
//! - **invisible format characters**: bidirectional embeddings, overrides,
//!   isolates and marks (`invoice\u{202E}txt.exe` shows as
//!   `invoiceexe.txt`), zero-width spaces, word joiners, the soft hyphen,
//!   invisible operators, interlinear annotation and the BOM. They draw
//!   nothing, or reorder what is drawn.
//!
//! Zero-width joiner and non-joiner (U+200D, U+200C) and variation
//! selectors are kept: emoji sequences and several scripts need them, and
//! they neither reorder nor hide text.
//!
//! **Invariant:** nothing here does I/O; the TUI and the command-line tools
//! pass every string that came from the network or the database through
//! [`for_terminal`] or [`for_terminal_line`] before printing it.

use std::borrow::Cow;

/// Whether `c` changes the direction of the text around it.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Whether `c` is a format character that draws nothing or reorders text
/// (bidi controls included; ZWJ, ZWNJ and variation selectors excluded).
pub fn is_hidden_format(c: char) -> bool {
    is_bidi_control(c)
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180E}'
                | '\u{200B}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{2060}'..='\u{2065}'
                | '\u{206A}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0001}'
        )
}

/// Whether `c` may not appear in a name or one-line text a user chooses
/// (file names, topics, away messages): control or hidden format.
pub fn is_unsafe_in_line(c: char) -> bool {
    c.is_control() || is_hidden_format(c)
}

/// `s` made safe to print: control characters other than newline become
/// U+FFFD (tab becomes a space), hidden format characters are dropped.
/// Borrowed when nothing had to change (the common case).
pub fn for_terminal(s: &str) -> Cow<'_, str> {
    clean(s, false)
}

/// Like [`for_terminal`] for one line (a name, a status): newlines become
/// spaces too.
pub fn for_terminal_line(s: &str) -> Cow<'_, str> {
    clean(s, true)
}

fn clean(s: &str, one_line: bool) -> Cow<'_, str> {
    let keep = |c: char| !(c.is_control() || is_hidden_format(c)) || (c == '\n' && !one_line);
    if s.chars().all(keep) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if keep(c) {
            out.push(c);
        } else if c == '\t' || c == '\n' || c == '\r' {
            out.push(' ');
        } else if c.is_control() {
            out.push('\u{FFFD}');
        }
        // Hidden format characters are dropped.
    }
    Cow::Owned(out)
}

/// The longest URL made a hyperlink (the length OSC 8's terminals agree
/// on; a longer one stays plain text, which terminals still show).
pub const MAX_URL: usize = 2083;

/// Where the web addresses in `text` are (`http://` and `https://`), as
/// byte ranges, in order. An address runs to the next space or non-ASCII
/// character (a hyperlink's target must be plain ASCII) and leaves out
/// punctuation that ends a sentence around it (`see https://x.org/a.`,
/// `(https://x.org/a)`), as terminals' own URL matching does.
pub fn urls(text: &str) -> Vec<std::ops::Range<usize>> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("http").map(|i| i + from) {
        let rest = &text[at..];
        let scheme = if rest.starts_with("https://") {
            8
        } else if rest.starts_with("http://") {
            7
        } else {
            from = at + 4;
            continue;
        };
        // "xhttp://" is not an address start.
        if at > 0 && bytes[at - 1].is_ascii_alphanumeric() {
            from = at + scheme;
            continue;
        }
        let mut end = at + scheme;
        while end < bytes.len() && bytes[end].is_ascii_graphic() {
            end += 1;
        }
        // Trailing punctuation, and a closing bracket the address did not
        // open, belong to the sentence.
        loop {
            let url = &text[at..end];
            match url.as_bytes().last() {
                Some(b'.' | b',' | b';' | b':' | b'!' | b'?' | b'\'' | b'"' | b'>') => end -= 1,
                Some(b')') if url.matches('(').count() < url.matches(')').count() => end -= 1,
                Some(b']') if url.matches('[').count() < url.matches(']').count() => end -= 1,
                _ => break,
            }
        }
        if end > at + scheme && end - at <= MAX_URL {
            found.push(at..end);
        }
        from = end.max(at + scheme);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_strings(text: &str) -> Vec<&str> {
        urls(text).into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn web_addresses_are_found_without_the_sentence_around_them() {
        assert_eq!(
            url_strings("see https://example.org/a?b=1&c=2#x, and http://x.io."),
            ["https://example.org/a?b=1&c=2#x", "http://x.io"]
        );
        assert_eq!(
            url_strings("(https://en.wikipedia.org/wiki/Rust_(language))"),
            ["https://en.wikipedia.org/wiki/Rust_(language)"]
        );
        assert_eq!(url_strings("[https://x.org/a]"), ["https://x.org/a"]);
        assert_eq!(url_strings("<https://x.org/>"), ["https://x.org/"]);
        // Not addresses: no host, a scheme glued to a word, other schemes.
        assert!(url_strings("https:// xhttp://a.b ftp://a.b http").is_empty());
        // Non-ASCII ends one (a hyperlink target is ASCII).
        assert_eq!(url_strings("https://a.b/c\u{e9}d"), ["https://a.b/c"]);
        assert_eq!(
            url_strings("https://a.b\nhttps://c.d"),
            ["https://a.b", "https://c.d"]
        );
        let long = format!("https://a.b/{}", "x".repeat(MAX_URL));
        assert!(urls(&long).is_empty());
    }

    #[test]
    fn a_right_to_left_override_cannot_disguise_an_extension() {
        let name = "invoice\u{202E}txt.exe";
        assert_eq!(for_terminal(name), "invoicetxt.exe");
        assert!(name.chars().any(is_unsafe_in_line));
    }

    #[test]
    fn escape_sequences_and_controls_are_neutralised() {
        assert_eq!(
            for_terminal("a\u{1b}[2Jb\u{7}c\u{9b}d"),
            "a\u{FFFD}[2Jb\u{FFFD}c\u{FFFD}d"
        );
        assert_eq!(for_terminal("two\nlines\tok"), "two\nlines ok");
        assert_eq!(for_terminal_line("two\nlines"), "two lines");
    }

    #[test]
    fn emoji_sequences_and_ordinary_text_are_left_alone() {
        let family = "👨\u{200D}👩\u{200D}👧 שלום héllo ❤\u{FE0F}";
        assert!(matches!(for_terminal(family), Cow::Borrowed(_)));
        assert!(!family.chars().any(is_unsafe_in_line));
    }

    #[test]
    fn zero_width_and_isolates_are_hidden_format() {
        for c in [
            '\u{200B}', '\u{2066}', '\u{2069}', '\u{FEFF}', '\u{00AD}', '\u{2028}',
        ] {
            assert!(is_hidden_format(c), "{:?}", c);
            assert_eq!(for_terminal(&format!("a{c}b")), "ab");
        }
    }
}
