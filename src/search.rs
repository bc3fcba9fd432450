//! Search queries: the syntax people know from Slack and Zulip, parsed
//! into typed terms and filters, and rendered for a full-text engine.
//!
//! ```text
//! deploy "exact phrase" -word prefix* from:alice in:#rust in:@bob
//! before:2026-11-01 after:2026-10-01 on:2026-10-15
//! ```
//!
//! This module is pure: user text never reaches a query engine except as
//! quoted strings that [`Terms::fts5`] builds, so no input can make a
//! query-syntax error or inject an operator. Dates are whole UTC days:
//! `before:D` means before D starts, `after:D` after D ends, `on:D` during
//! D. Filters with an unknown key (`foo:bar`) are searched as words.

/// One searched word or phrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// A word, or a quoted phrase: these words next to each other.
    Phrase(String),
    /// Words starting with this (`prefix*`).
    Prefix(String),
}

/// The words a query searches for and leaves out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Terms {
    /// Every result contains all of these.
    pub all: Vec<Term>,
    /// No result contains any of these (`-word`, `-"a phrase"`).
    pub none: Vec<Term>,
}

/// Where results may come from (`in:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// `in:#room`.
    Room(String),
    /// `in:@user`: the direct conversation with them.
    User(String),
    /// `in:name`: a room if the caller is in one of that name, else a user.
    Either(String),
}

/// A parsed query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Words and phrases.
    pub terms: Terms,
    /// `from:` user names (any of them), `@` removed; `me` is kept as is.
    pub from: Vec<String>,
    /// `in:`, the last one given.
    pub scope: Option<Scope>,
    /// Only messages at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Only messages before this time (ms since the epoch).
    pub until_ms: Option<i64>,
}

/// Why a query cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// Nothing to search for: no word and no filter.
    #[error("nothing to search for: give a word, a phrase or a filter such as from:alice")]
    Empty,
    /// A date filter's value is not a date.
    #[error("`{0}` is not a date: write YYYY-MM-DD")]
    BadDate(String),
    /// A filter without a value (`from:`).
    #[error("`{0}` needs a value")]
    MissingValue(String),
}

const MS_PER_DAY: i64 = 86_400_000;

impl Query {
    /// Parses what a user typed.
    pub fn parse(input: &str) -> Result<Query, QueryError> {
        let mut q = Query::default();
        for token in tokens(input) {
            let (negated, token) = match token {
                Token::Word(w) if w.len() > 1 && w.starts_with('-') => {
                    (true, Token::Word(w[1..].to_owned()))
                }
                Token::Quoted(p, neg) => (neg, Token::Quoted(p, false)),
                other => (false, other),
            };
            let term = match token {
                Token::Quoted(p, _) => Some(Term::Phrase(p)),
                Token::Word(w) => {
                    if !negated
                        && let Some((key, value)) = w.split_once(':')
                        && q.filter(key, value)?
                    {
                        continue;
                    }
                    match w.strip_suffix('*') {
                        Some(stem) if searchable(stem) => Some(Term::Prefix(stem.to_owned())),
                        _ => Some(Term::Phrase(w)),
                    }
                }
            };
            if let Some(term) = term.filter(|t| searchable(t.text())) {
                if negated {
                    q.terms.none.push(term);
                } else {
                    q.terms.all.push(term);
                }
            }
        }
        if q.terms.all.is_empty()
            && q.from.is_empty()
            && q.scope.is_none()
            && q.since_ms.is_none()
            && q.until_ms.is_none()
        {
            return Err(QueryError::Empty);
        }
        Ok(q)
    }

    /// Applies `key:value` if `key` is a filter; `false` if it is not one.
    fn filter(&mut self, key: &str, value: &str) -> Result<bool, QueryError> {
        let key = key.to_ascii_lowercase();
        if !matches!(key.as_str(), "from" | "in" | "before" | "after" | "on") {
            return Ok(false);
        }
        if value.is_empty() {
            return Err(QueryError::MissingValue(format!("{key}:")));
        }
        match key.as_str() {
            "from" => self
                .from
                .push(value.trim_start_matches('@').to_ascii_lowercase()),
            "in" => {
                self.scope = Some(if let Some(room) = value.strip_prefix('#') {
                    Scope::Room(room.to_ascii_lowercase())
                } else if let Some(user) = value.strip_prefix('@') {
                    Scope::User(user.to_ascii_lowercase())
                } else {
                    Scope::Either(value.to_ascii_lowercase())
                })
            }
            _ => {
                let day = day_start(value).ok_or_else(|| QueryError::BadDate(value.to_owned()))?;
                match key.as_str() {
                    "before" => self.until_ms = Some(min(self.until_ms, day)),
                    "after" => self.since_ms = Some(max(self.since_ms, day + MS_PER_DAY)),
                    _ => {
                        self.since_ms = Some(max(self.since_ms, day));
                        self.until_ms = Some(min(self.until_ms, day + MS_PER_DAY));
                    }
                }
            }
        }
        Ok(true)
    }
}

fn min(a: Option<i64>, b: i64) -> i64 {
    a.map_or(b, |a| a.min(b))
}

fn max(a: Option<i64>, b: i64) -> i64 {
    a.map_or(b, |a| a.max(b))
}

impl Term {
    fn text(&self) -> &str {
        match self {
            Term::Phrase(t) | Term::Prefix(t) => t,
        }
    }

    /// The term as an FTS5 string: double-quoted (quotes doubled), so the
    /// engine reads it as words, never as operators.
    fn fts5(&self, out: &mut String) {
        out.push('"');
        out.push_str(&self.text().replace('"', "\"\""));
        out.push('"');
        if matches!(self, Term::Prefix(_)) {
            out.push_str(" *");
        }
    }
}

impl Terms {
    /// An FTS5 MATCH expression for the wanted terms (all of them), or
    /// `None` if there are none.
    pub fn fts5(&self) -> Option<String> {
        join_fts5(&self.all, " AND ")
    }

    /// An FTS5 MATCH expression for the terms to leave out (any of them),
    /// or `None`.
    pub fn fts5_excluded(&self) -> Option<String> {
        join_fts5(&self.none, " OR ")
    }
}

fn join_fts5(terms: &[Term], op: &str) -> Option<String> {
    if terms.is_empty() {
        return None;
    }
    let mut out = String::new();
    for (i, t) in terms.iter().enumerate() {
        if i > 0 {
            out.push_str(op);
        }
        t.fts5(&mut out);
    }
    Some(out)
}

/// Whether a word has anything a tokenizer would index.
fn searchable(s: &str) -> bool {
    s.chars().any(char::is_alphanumeric)
}

enum Token {
    Word(String),
    /// A quoted phrase and whether a `-` came before it.
    Quoted(String, bool),
}

/// Splits on whitespace, keeping `"quoted phrases"` (and `-"phrases"`)
/// whole; an unclosed quote runs to the end. Control characters count as
/// spaces (a NUL would end the engine's string early).
fn tokens(input: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let cleaned: String = input
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut chars = cleaned.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut negated = false;
        if c == '-' {
            let mut ahead = chars.clone();
            ahead.next();
            if ahead.peek() == Some(&'"') {
                negated = true;
                chars.next();
            }
        }
        if chars.peek() == Some(&'"') {
            chars.next();
            let phrase: String = chars.by_ref().take_while(|&c| c != '"').collect();
            out.push(Token::Quoted(phrase, negated));
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
            out.push(Token::Word(word));
        }
    }
    out
}

/// The start of a UTC day `YYYY-MM-DD`, ms since the epoch.
pub fn day_start(s: &str) -> Option<i64> {
    let mut parts = s.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d < 1 || d > days_in(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d) * MS_PER_DAY)
}

fn days_in(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The UTC day `YYYY-MM-DD` of `ms` since the epoch (the inverse of
/// [`day_start`]).
pub fn day_name(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(MS_PER_DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// The proleptic Gregorian date `(year, month, day)` of a day counted from
/// 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_name_is_the_inverse_of_day_start() {
        for day in ["1970-01-01", "2000-02-29", "2026-12-03", "9999-12-31"] {
            let ms = day_start(day).unwrap();
            assert_eq!(day_name(ms), day);
            assert_eq!(day_name(ms + MS_PER_DAY - 1), day, "any time that day");
        }
    }

    fn phrase(s: &str) -> Term {
        Term::Phrase(s.into())
    }

    #[test]
    fn words_phrases_exclusions_and_prefixes() {
        let q = Query::parse(r#"deploy "rolling back" -staging -"dry run" migr*"#).unwrap();
        assert_eq!(
            q.terms.all,
            vec![
                phrase("deploy"),
                phrase("rolling back"),
                Term::Prefix("migr".into())
            ]
        );
        assert_eq!(q.terms.none, vec![phrase("staging"), phrase("dry run")]);
        assert_eq!(
            q.terms.fts5().unwrap(),
            r#""deploy" AND "rolling back" AND "migr" *"#
        );
        assert_eq!(
            q.terms.fts5_excluded().unwrap(),
            r#""staging" OR "dry run""#
        );
    }

    #[test]
    fn user_text_cannot_become_an_operator() {
        let q = Query::parse(r#"a" OR b NOT c) NEAR(x* body:y ^z"#).unwrap();
        let expr = q.terms.fts5().unwrap();
        // Every term is one quoted string; quotes inside are doubled.
        assert!(expr.starts_with(r#""a"""#), "{expr}");
        for op in ["OR", "NOT", "NEAR(x"] {
            assert!(expr.contains(&format!("\"{op}\"")), "{expr}");
        }
        assert!(!expr.contains(" OR "), "{expr}");
        // A NUL would end an FTS5 string early: control characters split.
        let q = Query::parse("a\u{0}b \"c\u{1b}d\"").unwrap();
        assert_eq!(q.terms.all, vec![phrase("a"), phrase("b"), phrase("c d")]);
    }

    #[test]
    fn filters() {
        let q = Query::parse("from:@Alice from:bob in:#Rust on:2026-11-01 x").unwrap();
        assert_eq!(q.from, vec!["alice", "bob"]);
        assert_eq!(q.scope, Some(Scope::Room("rust".into())));
        let day = day_start("2026-11-01").unwrap();
        assert_eq!(q.since_ms, Some(day));
        assert_eq!(q.until_ms, Some(day + MS_PER_DAY));
        let q = Query::parse("in:@bob before:2026-11-01 after:2026-10-01").unwrap();
        assert_eq!(q.scope, Some(Scope::User("bob".into())));
        assert_eq!(q.until_ms, Some(day));
        assert_eq!(q.since_ms, Some(day_start("2026-10-02").unwrap()));
        assert!(q.terms.all.is_empty());
        assert_eq!(
            Query::parse("in:ops").unwrap().scope,
            Some(Scope::Either("ops".into()))
        );
        // Not a filter: searched as a word.
        assert_eq!(
            Query::parse("http://x").unwrap().terms.all,
            vec![phrase("http://x")]
        );
    }

    #[test]
    fn errors() {
        assert_eq!(Query::parse("   "), Err(QueryError::Empty));
        assert_eq!(Query::parse("-only -negatives"), Err(QueryError::Empty));
        assert_eq!(Query::parse("!!! ..."), Err(QueryError::Empty));
        assert_eq!(
            Query::parse("x on:2026-02-30"),
            Err(QueryError::BadDate("2026-02-30".into()))
        );
        assert_eq!(
            Query::parse("x from:"),
            Err(QueryError::MissingValue("from:".into()))
        );
        // Negatives with a filter are a valid query.
        assert!(Query::parse("-noise from:alice").is_ok());
    }

    #[test]
    fn dates_are_utc_days() {
        assert_eq!(day_start("1970-01-01"), Some(0));
        assert_eq!(day_start("2000-03-01"), Some(951_868_800_000));
        assert_eq!(day_start("2024-02-29"), Some(1_709_164_800_000));
        assert_eq!(day_start("2023-02-29"), None);
        assert_eq!(day_start("2026-13-01"), None);
        assert_eq!(day_start("yesterday"), None);
    }
}
