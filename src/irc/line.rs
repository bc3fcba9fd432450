//! IRC lines: `[@tags] [:source] COMMAND [params...] [:trailing]`, as RFC
//! 1459/2812 frame them and IRCv3 message-tags extends them. Pure
//! conversions between bytes and [`Line`]; no I/O.
//!
//! Limits, as servers enforce them: the part after the tags is at most
//! [`MAX_LINE`] bytes with its CRLF; the tags part at most [`MAX_TAGS`]
//! bytes. Lines must be UTF-8 (the server advertises `UTF8ONLY`): confab's
//! text is UTF-8 and nothing is guessed.

/// Longest line without its tags, CR LF included (RFC 1459).
pub const MAX_LINE: usize = 512;

/// Longest tags part, from `@` to the space after it (IRCv3).
pub const MAX_TAGS: usize = 8191;

/// Most tag data (between `@` and the space) a client may send: the
/// message-tags spec leaves the rest of [`MAX_TAGS`] to the server, and
/// has it answer more with `417` (ERR_INPUTTOOLONG).
pub const MAX_CLIENT_TAGS: usize = 4094;

/// Why bytes are not an IRC line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// Nothing but spaces.
    #[error("empty line")]
    Empty,
    /// Longer than [`MAX_LINE`] (or tags longer than [`MAX_TAGS`]).
    #[error("line too long")]
    TooLong,
    /// Tags or a source but no command.
    #[error("no command")]
    NoCommand,
    /// Not UTF-8.
    #[error("not UTF-8")]
    NotUtf8,
}

/// One IRC message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Line {
    /// Message tags, in order (`None`: a tag without a value).
    pub tags: Vec<(String, Option<String>)>,
    /// Who it is from (`nick!user@host` or a server name).
    pub source: Option<String>,
    /// The command or three-digit numeric, upper case.
    pub command: String,
    /// Parameters; the last may contain spaces.
    pub params: Vec<String>,
    /// Write the last parameter as a trailing one (`:text`) even when it
    /// need not be, as servers do for text (messages, numerics' words).
    /// Parsing leaves it unset.
    pub trailing: bool,
}

impl Line {
    /// A line with `command` and no parameters yet.
    pub fn new(command: &str) -> Line {
        Line {
            command: command.to_owned(),
            ..Line::default()
        }
    }

    /// Sets the source.
    pub fn source(mut self, source: &str) -> Line {
        self.source = Some(source.to_owned());
        self
    }

    /// Adds a parameter.
    pub fn param(mut self, param: &str) -> Line {
        self.params.push(param.to_owned());
        self
    }

    /// Adds the last parameter, a text, always written as a trailing one.
    pub fn text(mut self, text: &str) -> Line {
        self.params.push(text.to_owned());
        self.trailing = true;
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, key: &str, value: Option<&str>) -> Line {
        self.tags.push((key.to_owned(), value.map(str::to_owned)));
        self
    }

    /// The value of tag `key`, if present (`Some(None)`: without a value).
    pub fn tag_value(&self, key: &str) -> Option<Option<&str>> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_deref())
    }

    /// Parameter `i`, if present.
    pub fn arg(&self, i: usize) -> Option<&str> {
        self.params.get(i).map(String::as_str)
    }

    /// Parses one line (without its line ending).
    pub fn parse(raw: &[u8]) -> Result<Line, LineError> {
        let text = std::str::from_utf8(raw).map_err(|_| LineError::NotUtf8)?;
        let mut rest = text.trim_start_matches(' ');
        let mut line = Line::default();
        if let Some(after) = rest.strip_prefix('@') {
            let (tags, tail) = after.split_once(' ').ok_or(LineError::NoCommand)?;
            if tags.len() > MAX_CLIENT_TAGS {
                return Err(LineError::TooLong);
            }
            for tag in tags.split(';').filter(|t| !t.is_empty()) {
                let (key, value) = match tag.split_once('=') {
                    Some((k, v)) => (k, Some(unescape_tag(v))),
                    None => (tag, None),
                };
                // The last of a repeated key wins (IRCv3).
                line.tags.retain(|(k, _)| k != key);
                line.tags
                    .push((key.to_owned(), value.filter(|v| !v.is_empty())));
            }
            rest = tail.trim_start_matches(' ');
        }
        if rest.len() + 2 > MAX_LINE {
            return Err(LineError::TooLong);
        }
        if let Some(after) = rest.strip_prefix(':') {
            let (source, tail) = after.split_once(' ').ok_or(LineError::NoCommand)?;
            line.source = Some(source.to_owned());
            rest = tail.trim_start_matches(' ');
        }
        let (command, mut rest) = match rest.split_once(' ') {
            Some((c, tail)) => (c, tail),
            None => (rest, ""),
        };
        if command.is_empty() {
            return Err(if line.tags.is_empty() && line.source.is_none() {
                LineError::Empty
            } else {
                LineError::NoCommand
            });
        }
        line.command = command.to_ascii_uppercase();
        loop {
            rest = rest.trim_start_matches(' ');
            if rest.is_empty() {
                break;
            }
            if let Some(trailing) = rest.strip_prefix(':') {
                line.params.push(trailing.to_owned());
                break;
            }
            match rest.split_once(' ') {
                Some((p, tail)) => {
                    line.params.push(p.to_owned());
                    rest = tail;
                }
                None => {
                    line.params.push(rest.to_owned());
                    break;
                }
            }
        }
        Ok(line)
    }

    /// Appends the line and its CR LF to `out`. The last parameter is
    /// written as a trailing one (`:`) when it must be: empty, with a
    /// space, or starting with `:`. Parameters are written as given:
    /// callers keep CR, LF and NUL out of them ([`clean`]).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        if !self.tags.is_empty() {
            out.push(b'@');
            for (i, (key, value)) in self.tags.iter().enumerate() {
                if i > 0 {
                    out.push(b';');
                }
                out.extend_from_slice(key.as_bytes());
                if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                    out.push(b'=');
                    escape_tag_into(v, out);
                }
            }
            out.push(b' ');
        }
        if let Some(source) = &self.source {
            out.push(b':');
            out.extend_from_slice(source.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(self.command.as_bytes());
        for (i, p) in self.params.iter().enumerate() {
            out.push(b' ');
            let last = i + 1 == self.params.len();
            if last && (self.trailing || p.is_empty() || p.contains(' ') || p.starts_with(':')) {
                out.push(b':');
            }
            out.extend_from_slice(p.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The line with its CR LF.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

/// `text` without the characters a parameter cannot carry (CR, LF, NUL),
/// each replaced by a space.
pub fn clean(text: &str) -> String {
    text.replace(['\r', '\n', '\0'], " ")
}

/// Encoded lines with a `label` tag added to the first (IRCv3
/// labeled-response): merged into its tags, or as its only tag.
pub fn with_label(lines: &[u8], label: &str) -> Vec<u8> {
    with_tag(lines, "label", label)
}

/// Encoded lines with tag `key=value` added to the first line.
pub fn with_tag(lines: &[u8], key: &str, value: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.len() + key.len() + value.len() + 8);
    out.push(b'@');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    escape_tag_into(value, &mut out);
    match lines.strip_prefix(b"@") {
        Some(rest) => {
            out.push(b';');
            out.extend_from_slice(rest);
        }
        None => {
            out.push(b' ');
            out.extend_from_slice(lines);
        }
    }
    out
}

/// A tag value as it travels (IRCv3 escaping).
fn escape_tag_into(value: &str, out: &mut Vec<u8>) {
    for c in value.chars() {
        match c {
            ';' => out.extend_from_slice(b"\\:"),
            ' ' => out.extend_from_slice(b"\\s"),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\n' => out.extend_from_slice(b"\\n"),
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

/// A tag value as it was meant (IRCv3: unknown escapes lose the
/// backslash, a lone trailing backslash is dropped).
fn unescape_tag(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('\\') => out.push('\\'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Cuts a byte stream into lines (ending in LF, with or without CR).
/// A line longer than [`MAX_TAGS`] + [`MAX_LINE`] bytes is reported once as
/// [`LineError::TooLong`] and skipped up to its end, so one bad line costs
/// bounded memory and loses nothing after it.
#[derive(Debug, Default)]
pub struct Splitter {
    buf: Vec<u8>,
    /// Inside a line that was too long: skip to its end.
    skipping: bool,
}

impl Splitter {
    /// The most bytes one line may take.
    pub const LIMIT: usize = MAX_TAGS + MAX_LINE;

    /// Adds bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Frees the buffer if it holds nothing (an idle session keeps none).
    pub fn release_if_empty(&mut self) {
        if self.buf.is_empty() {
            self.buf = Vec::new();
        }
    }

    /// The next complete line (without its line ending), if there is one.
    pub fn next_line(&mut self) -> Option<Result<Vec<u8>, LineError>> {
        loop {
            match self.buf.iter().position(|b| *b == b'\n') {
                Some(end) => {
                    let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    if std::mem::take(&mut self.skipping) {
                        continue;
                    }
                    if line.len() > Self::LIMIT {
                        return Some(Err(LineError::TooLong));
                    }
                    if line.iter().all(|b| *b == b' ') {
                        // Blank lines are ignored, as servers do.
                        continue;
                    }
                    return Some(Ok(line));
                }
                None if self.buf.len() > Self::LIMIT => {
                    self.buf.clear();
                    if !std::mem::replace(&mut self.skipping, true) {
                        return Some(Err(LineError::TooLong));
                    }
                    return None;
                }
                None => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Line {
        Line::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn parses_what_clients_and_servers_send() {
        let l = p(":coolguy!ag@127.0.0.1 PRIVMSG #chan :hey there  ");
        assert_eq!(l.source.as_deref(), Some("coolguy!ag@127.0.0.1"));
        assert_eq!(l.command, "PRIVMSG");
        assert_eq!(l.params, ["#chan", "hey there  "]);
        assert_eq!(p("foo bar baz ::asdf").params, ["bar", "baz", ":asdf"]);
        assert_eq!(p("foo bar baz :").params, ["bar", "baz", ""]);
        assert_eq!(p("nick alice").command, "NICK", "commands are upper-cased");
        assert_eq!(p("foo   bar    baz").params, ["bar", "baz"]);
        assert_eq!(p("PING").params, Vec::<String>::new());
    }

    #[test]
    fn parses_tags_and_their_escapes() {
        let l = p("@a=b;c=32;k;rt=ql7 foo");
        assert_eq!(l.tag_value("a"), Some(Some("b")));
        assert_eq!(l.tag_value("k"), Some(None));
        assert_eq!(l.tag_value("rt"), Some(Some("ql7")));
        assert_eq!(l.tag_value("x"), None);
        let l = p(r"@a=b\\and\nk;c=72\s45;d=gh\:764 foo");
        assert_eq!(l.tag_value("a"), Some(Some("b\\and\nk")));
        assert_eq!(l.tag_value("c"), Some(Some("72 45")));
        assert_eq!(l.tag_value("d"), Some(Some("gh;764")));
        assert_eq!(p(r"@a=\x\ foo").tag_value("a"), Some(Some("x")));
        assert_eq!(p("@a=1;a=2 foo").tag_value("a"), Some(Some("2")));
        assert_eq!(
            p("@+draft/reply=5;label=x :src CMD").source.as_deref(),
            Some("src")
        );
    }

    #[test]
    fn refuses_what_is_not_a_line() {
        assert_eq!(Line::parse(b"   "), Err(LineError::Empty));
        assert_eq!(Line::parse(b":src"), Err(LineError::NoCommand));
        assert_eq!(Line::parse(b"@a=b"), Err(LineError::NoCommand));
        assert_eq!(Line::parse(b"PRIVMSG #a :\xff"), Err(LineError::NotUtf8));
        let long = format!("PRIVMSG #a :{}", "x".repeat(500));
        assert_eq!(Line::parse(long.as_bytes()), Err(LineError::TooLong));
        let tags = format!("@a={} PING", "x".repeat(MAX_TAGS));
        assert_eq!(Line::parse(tags.as_bytes()), Err(LineError::TooLong));
        // A client's tag data: 4,094 bytes at most.
        let most = format!("@+a={} PING", "x".repeat(MAX_CLIENT_TAGS - 3));
        assert!(Line::parse(most.as_bytes()).is_ok());
        let over = format!("@+a={} PING", "x".repeat(MAX_CLIENT_TAGS - 2));
        assert_eq!(Line::parse(over.as_bytes()), Err(LineError::TooLong));
        // Long tags do not count against the 512 bytes of the rest.
        let ok = format!("@a={} PRIVMSG #a :{}", "x".repeat(4000), "y".repeat(400));
        assert!(Line::parse(ok.as_bytes()).is_ok());
    }

    #[test]
    fn formats_with_a_trailing_parameter_only_when_needed() {
        let l = Line::new("PRIVMSG")
            .source("alice!alice@confab")
            .param("#rust")
            .param("hello world");
        assert_eq!(
            l.encode(),
            b":alice!alice@confab PRIVMSG #rust :hello world\r\n"
        );
        assert_eq!(Line::new("JOIN").param("#rust").encode(), b"JOIN #rust\r\n");
        assert_eq!(Line::new("X").param("").encode(), b"X :\r\n");
        assert_eq!(Line::new("X").param(":)").encode(), b"X ::)\r\n");
        let tagged = Line::new("PRIVMSG")
            .tag("time", Some("2026-12-03T10:00:00.000Z"))
            .tag("msgid", Some("a;b c"))
            .tag("flag", None)
            .param("#a")
            .param("x");
        assert_eq!(
            tagged.encode(),
            b"@time=2026-12-03T10:00:00.000Z;msgid=a\\:b\\sc;flag PRIVMSG #a x\r\n"
        );
    }

    #[test]
    fn what_is_formatted_parses_back_the_same() {
        let lines = [
            Line::new("PRIVMSG")
                .tag("k", Some("v\\ ;\r\nw"))
                .source("a!b@c")
                .param("#x")
                .param(" spaced :colon"),
            Line::new("001").param("alice").param("Welcome"),
            Line::new("CAP").param("*").param("LS").param(""),
        ];
        for l in lines {
            let bytes = l.encode();
            assert_eq!(Line::parse(&bytes[..bytes.len() - 2]).unwrap(), l);
        }
    }

    #[test]
    fn splits_a_stream_into_lines_and_survives_a_flood() {
        let mut s = Splitter::default();
        s.push(b"NICK alice\r\nUSER a 0 * :A");
        assert_eq!(s.next_line(), Some(Ok(b"NICK alice".to_vec())));
        assert_eq!(s.next_line(), None, "the second is not complete");
        s.push(b"\n\r\n  \nPING x\n");
        assert_eq!(s.next_line(), Some(Ok(b"USER a 0 * :A".to_vec())));
        assert_eq!(
            s.next_line(),
            Some(Ok(b"PING x".to_vec())),
            "blank lines skipped"
        );
        assert_eq!(s.next_line(), None);
        // A line without end, longer than the limit: one error, then the
        // line after it.
        s.push(&vec![b'x'; Splitter::LIMIT + 10]);
        assert_eq!(s.next_line(), Some(Err(LineError::TooLong)));
        s.push(&[b'x'; 100]);
        assert_eq!(s.next_line(), None);
        s.push(b"still the long one\nPING y\n");
        assert_eq!(s.next_line(), Some(Ok(b"PING y".to_vec())));
        assert!(s.buf.is_empty());
    }

    #[test]
    fn clean_keeps_line_breaks_out_of_parameters() {
        assert_eq!(clean("a\r\nb\0c"), "a  b c");
    }
}
