//! Which files may be shared: type decided by content, checked against the
//! name's extension, an allow-list, a size cap, and file-name sanitising.
//!
//! The server enforces these rules while a file streams in; the client runs
//! the same checks before uploading, to fail fast. Pure functions over
//! bytes and names: no I/O.
//!
//! - The type comes from the content's magic bytes (`infer`). Text has
//!   none: it is accepted only when the whole file is UTF-8 without NUL
//!   bytes and the extension is a text one.
//! - Executables (ELF, PE, Mach-O, scripts starting with `#!`), HTML and SVG
//!   are never accepted, whatever the allow-list says.
//! - The extension's type (`mime_guess`) must agree with the content's:
//!   `cat.png` that is a JPEG is refused with a message saying it is JPEG.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Bytes of the start of a file that type detection needs.
pub const HEAD_LEN: usize = 8192;
/// Default size cap: 25 MiB.
pub const DEFAULT_MAX_SIZE: u64 = 25 * 1024 * 1024;
/// Longest file name kept, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// A type that may be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// PNG image.
    Png,
    /// JPEG image.
    Jpeg,
    /// GIF image.
    Gif,
    /// WebP image.
    Webp,
    /// PDF document.
    Pdf,
    /// Zip archive.
    Zip,
    /// MP3 audio.
    Mp3,
    /// Ogg audio.
    Ogg,
    /// Plain UTF-8 text.
    Text,
}

impl FileKind {
    /// Every kind, which is also the default allow-list.
    pub const ALL: [FileKind; 9] = [
        FileKind::Png,
        FileKind::Jpeg,
        FileKind::Gif,
        FileKind::Webp,
        FileKind::Pdf,
        FileKind::Zip,
        FileKind::Mp3,
        FileKind::Ogg,
        FileKind::Text,
    ];

    /// The MIME type stored and shown.
    pub fn mime(self) -> &'static str {
        match self {
            FileKind::Png => "image/png",
            FileKind::Jpeg => "image/jpeg",
            FileKind::Gif => "image/gif",
            FileKind::Webp => "image/webp",
            FileKind::Pdf => "application/pdf",
            FileKind::Zip => "application/zip",
            FileKind::Mp3 => "audio/mpeg",
            FileKind::Ogg => "audio/ogg",
            FileKind::Text => "text/plain",
        }
    }

    /// A short name for people ("PDF", "PNG image").
    pub fn label(self) -> &'static str {
        match self {
            FileKind::Png => "PNG",
            FileKind::Jpeg => "JPEG",
            FileKind::Gif => "GIF",
            FileKind::Webp => "WebP",
            FileKind::Pdf => "PDF",
            FileKind::Zip => "zip",
            FileKind::Mp3 => "MP3",
            FileKind::Ogg => "Ogg",
            FileKind::Text => "text",
        }
    }

    /// The kind for a MIME type, as stored.
    pub fn from_mime(mime: &str) -> Option<FileKind> {
        FileKind::ALL.into_iter().find(|k| k.mime() == mime)
    }

    /// Parses a config name (`png`, `jpeg`, `text`, ...).
    pub fn from_name(name: &str) -> Option<FileKind> {
        let name = name.trim().to_ascii_lowercase();
        let name = match name.as_str() {
            "jpg" => "jpeg",
            "txt" | "plain" => "text",
            other => other,
        };
        FileKind::ALL
            .into_iter()
            .find(|k| format!("{k:?}").eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Why a file is refused; the message says what the file really is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Over the size cap.
    #[error("the file is {size} bytes; the limit is {max} bytes")]
    TooLarge {
        /// Declared or received size.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// Never accepted, whatever its name.
    #[error("{what} files are never accepted")]
    Forbidden {
        /// What it is ("an ELF executable", "HTML").
        what: String,
    },
    /// A known type that is not on the allow-list.
    #[error("{what} files are not accepted here")]
    NotAllowed {
        /// What it is.
        what: String,
    },
    /// The content's type and the extension's disagree.
    #[error("{name} is really {actual}, not what its extension says ({expected})")]
    Mismatch {
        /// The file name.
        name: String,
        /// What the content is.
        actual: String,
        /// What the extension claims.
        expected: String,
    },
    /// Neither a known binary type nor acceptable text.
    #[error("{0}")]
    Unrecognised(String),
    /// The name cannot be made safe.
    #[error("invalid file name: {0}")]
    BadName(String),
}

/// The rules in force: size cap and allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRules {
    /// Largest file, bytes.
    pub max_size: u64,
    /// Kinds accepted.
    pub allowed: Vec<FileKind>,
}

impl Default for FileRules {
    fn default() -> Self {
        FileRules {
            max_size: DEFAULT_MAX_SIZE,
            allowed: FileKind::ALL.to_vec(),
        }
    }
}

const TEXT_EXTENSIONS: &[&str] = &["txt", "md", "log", "csv", "text"];

/// Makes a client-supplied file name safe to store and show: the last path
/// component only, no control characters, no leading dots, at most
/// [`MAX_NAME_LEN`] bytes (keeping the extension).
pub fn sanitize_name(raw: &str) -> Result<String, Rejection> {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        // Controls could rewrite a terminal; bidi controls and zero-width
        // characters could make the name lie about its extension.
        .filter(|c| !crate::text::is_unsafe_in_line(*c))
        .collect::<String>()
        .trim()
        .trim_start_matches('.')
        .to_owned();
    if cleaned.is_empty() || cleaned == ".." {
        return Err(Rejection::BadName(format!("{raw:?}")));
    }
    if cleaned.len() <= MAX_NAME_LEN {
        return Ok(cleaned);
    }
    // Keep the extension, shorten the stem on a character boundary.
    let (stem, ext) = match cleaned.rsplit_once('.') {
        Some((s, e)) if e.len() <= 16 => (s, format!(".{e}")),
        _ => (cleaned.as_str(), String::new()),
    };
    let mut end = MAX_NAME_LEN - ext.len();
    while !stem.is_char_boundary(end) {
        end -= 1;
    }
    Ok(format!("{}{ext}", &stem[..end]))
}

fn extension(name: &str) -> Option<String> {
    name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())
}

/// What the content's first bytes say, before the whole file is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadVerdict {
    /// A binary kind, decided.
    Binary(FileKind),
    /// Possibly text; the rest must be UTF-8 without NUL.
    MaybeText,
}

fn describe_forbidden(mime: &str) -> Option<&'static str> {
    match mime {
        "application/x-executable" => Some("ELF executable"),
        "application/vnd.microsoft.portable-executable" => Some("Windows (PE) executable"),
        "application/x-mach-binary" => Some("Mach-O executable"),
        "text/x-shellscript" => Some("script (#!)"),
        "text/html" => Some("HTML"),
        "image/svg+xml" => Some("SVG"),
        _ => None,
    }
}

/// Checks a file's first bytes (up to [`HEAD_LEN`]; fewer only if the file
/// is that short) and its sanitised name.
pub fn check_head(rules: &FileRules, name: &str, head: &[u8]) -> Result<HeadVerdict, Rejection> {
    let trimmed = head
        .strip_prefix(b"\xef\xbb\xbf")
        .unwrap_or(head)
        .trim_ascii_start();
    // Executable magic numbers, checked directly too: infer wants more
    // bytes than a truncated or crafted header may have.
    let exe = match head {
        [0x7F, b'E', b'L', b'F', ..] => Some("ELF executable"),
        [b'M', b'Z', ..] => Some("Windows (PE) executable"),
        [0xFE, 0xED, 0xFA, 0xCE | 0xCF, ..] | [0xCE | 0xCF, 0xFA, 0xED, 0xFE, ..] => {
            Some("Mach-O executable")
        }
        _ => None,
    };
    if let Some(what) = exe {
        return Err(Rejection::Forbidden { what: what.into() });
    }
    if trimmed.starts_with(b"#!") {
        return Err(Rejection::Forbidden {
            what: "script (#!)".into(),
        });
    }
    if looks_like_markup(trimmed) {
        return Err(Rejection::Forbidden {
            what: "HTML or SVG".into(),
        });
    }
    let expected = mime_guess::from_path(name).first();
    let expected_str = expected.as_ref().map_or_else(
        || "no known type".to_owned(),
        |m| m.essence_str().to_owned(),
    );
    let Some(detected) = infer::get(head) else {
        // No magic bytes: only text can be acceptable.
        let ext_is_text = extension(name).is_some_and(|e| TEXT_EXTENSIONS.contains(&e.as_str()));
        if !ext_is_text {
            return Err(Rejection::Unrecognised(format!(
                "the type of {name} cannot be recognised from its content; only {} files and text files (.txt, .md, .log, .csv) are accepted",
                rules
                    .allowed
                    .iter()
                    .filter(|k| **k != FileKind::Text)
                    .map(|k| k.label())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if !rules.allowed.contains(&FileKind::Text) {
            return Err(Rejection::NotAllowed {
                what: "text".into(),
            });
        }
        return Ok(HeadVerdict::MaybeText);
    };
    let mime = detected.mime_type();
    if let Some(what) = describe_forbidden(mime) {
        return Err(Rejection::Forbidden { what: what.into() });
    }
    let Some(kind) = FileKind::from_mime(mime).filter(|k| *k != FileKind::Text) else {
        return Err(Rejection::NotAllowed {
            what: format!("{mime} ({})", detected.extension()),
        });
    };
    if !rules.allowed.contains(&kind) {
        return Err(Rejection::NotAllowed {
            what: kind.label().into(),
        });
    }
    if expected_str != kind.mime() {
        return Err(Rejection::Mismatch {
            name: name.to_owned(),
            actual: kind.label().into(),
            expected: expected_str,
        });
    }
    Ok(HeadVerdict::Binary(kind))
}

fn looks_like_markup(trimmed: &[u8]) -> bool {
    if !trimmed.starts_with(b"<") {
        return false;
    }
    let head = String::from_utf8_lossy(&trimmed[..trimmed.len().min(1024)]).to_ascii_lowercase();
    [
        "<svg",
        "<html",
        "<!doctype html",
        "<?xml",
        "<script",
        "<head",
        "<body",
    ]
    .iter()
    .any(|tag| head.contains(tag))
}

/// Streaming check that a file is UTF-8 without NUL bytes, fed chunk by
/// chunk (a character may span chunks).
#[derive(Debug, Default, Clone)]
pub struct TextCheck {
    carry: Vec<u8>,
    bad: Option<String>,
}

impl TextCheck {
    /// Feeds the next chunk.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.bad.is_some() {
            return;
        }
        if chunk.contains(&0) {
            self.bad = Some("it contains NUL bytes".into());
            return;
        }
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(chunk);
        match std::str::from_utf8(&buf) {
            Ok(_) => {}
            Err(e) if e.error_len().is_none() => {
                // An incomplete character at the end: keep it for later.
                self.carry = buf[e.valid_up_to()..].to_vec();
            }
            Err(_) => self.bad = Some("it is not valid UTF-8".into()),
        }
    }

    /// The verdict once every chunk was fed.
    pub fn finish(&self) -> Result<(), Rejection> {
        match (&self.bad, self.carry.is_empty()) {
            (Some(why), _) => Err(Rejection::Unrecognised(format!("not a text file: {why}"))),
            (None, false) => Err(Rejection::Unrecognised(
                "not a text file: it ends inside a UTF-8 character".into(),
            )),
            (None, true) => Ok(()),
        }
    }
}

/// A human size: `1.2 MB`, `340 kB`, `12 bytes`.
pub fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1_000_000.0),
        b if b >= 1_000 => format!("{} kB", b / 1_000),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
pub(crate) mod samples {
    //! Real bytes of each kind, for tests here and in the integration tests
    //! (which have their own copy of the few they need).

    /// A 1x1 PNG.
    pub const PNG: &[u8] = &[
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, 0x49, 0x48, 0x44, 0x52, 0,
        0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1F, 0x15, 0xC4, 0x89, 0, 0, 0, 0x0A, 0x49, 0x44,
        0x41, 0x54, 0x78, 0x9C, 0x63, 0, 1, 0, 0, 5, 0, 1, 0x0D, 0x0A, 0x2D, 0xB4, 0, 0, 0, 0,
        0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ];
    /// The start of a JPEG (JFIF).
    pub const JPEG: &[u8] = &[
        0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0,
        0xFF, 0xD9,
    ];
    /// A minimal PDF.
    pub const PDF: &[u8] = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n";
    /// An ELF header (64 bytes, as x86-64 executables start).
    pub const ELF: &[u8] = &[
        0x7F, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0x3E, 0, 1, 0, 0, 0,
        0x78, 0, 0x40, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0x40, 0, 0x38, 0, 1, 0, 0, 0, 0, 0, 0, 0,
    ];
    /// A PE (MZ ... PE\0\0) header.
    pub fn pe() -> Vec<u8> {
        let mut v = vec![0u8; 0x100];
        v[0] = b'M';
        v[1] = b'Z';
        v[0x3C] = 0x80;
        v[0x80..0x84].copy_from_slice(b"PE\0\0");
        v
    }
}

#[cfg(test)]
mod tests {
    use super::samples::*;
    use super::*;

    fn check(name: &str, bytes: &[u8]) -> Result<HeadVerdict, Rejection> {
        check_head(&FileRules::default(), name, bytes)
    }

    #[test]
    fn allowed_binaries_with_matching_extensions_pass() {
        assert_eq!(
            check("cat.png", PNG),
            Ok(HeadVerdict::Binary(FileKind::Png))
        );
        assert_eq!(
            check("me.JPG", JPEG),
            Ok(HeadVerdict::Binary(FileKind::Jpeg))
        );
        assert_eq!(check("r.pdf", PDF), Ok(HeadVerdict::Binary(FileKind::Pdf)));
        assert_eq!(
            check("a.zip", b"PK\x03\x04\x14\0\0\0\0\0"),
            Ok(HeadVerdict::Binary(FileKind::Zip))
        );
    }

    #[test]
    fn renamed_files_are_refused_saying_what_they_are() {
        let err = check("cat.png", JPEG).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cat.png is really JPEG, not what its extension says (image/png)"
        );
        let err = check("invoice.pdf", ELF).unwrap_err();
        assert_eq!(err.to_string(), "ELF executable files are never accepted");
        let err = check("report.pdf", &pe()).unwrap_err();
        assert!(err.to_string().contains("PE"), "{err}");
        let err = check("notes.txt", b"#!/bin/sh\nrm -rf ~\n").unwrap_err();
        assert!(matches!(err, Rejection::Forbidden { .. }), "{err}");
        let err = check(
            "logo.txt",
            b"<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\"/>",
        )
        .unwrap_err();
        assert!(matches!(err, Rejection::Forbidden { .. }), "{err}");
        let err = check("page.txt", b"<!DOCTYPE html><html></html>").unwrap_err();
        assert!(matches!(err, Rejection::Forbidden { .. }), "{err}");
    }

    #[test]
    fn text_needs_a_text_extension_and_utf8_without_nul() {
        assert_eq!(check("notes.txt", b"hello\n"), Ok(HeadVerdict::MaybeText));
        assert!(matches!(
            check("notes.exe", b"hello\n"),
            Err(Rejection::Unrecognised(_))
        ));
        assert!(matches!(
            check("notes", b"hello\n"),
            Err(Rejection::Unrecognised(_))
        ));
        let mut t = TextCheck::default();
        let s = "naïve café ✓".as_bytes();
        // Split inside a multi-byte character.
        t.feed(&s[..3]);
        t.feed(&s[3..]);
        assert_eq!(t.finish(), Ok(()));
        let mut t = TextCheck::default();
        t.feed(b"ok\0no");
        assert!(t.finish().is_err());
        let mut t = TextCheck::default();
        t.feed(b"\xff\xfe");
        assert!(t.finish().is_err());
        let mut t = TextCheck::default();
        t.feed(&"é".as_bytes()[..1]);
        assert!(t.finish().is_err(), "truncated character");
    }

    #[test]
    fn the_allow_list_is_enforced() {
        let rules = FileRules {
            max_size: 10,
            allowed: vec![FileKind::Pdf],
        };
        assert!(matches!(
            check_head(&rules, "c.png", PNG),
            Err(Rejection::NotAllowed { .. })
        ));
        assert!(matches!(
            check_head(&rules, "n.txt", b"hi"),
            Err(Rejection::NotAllowed { .. })
        ));
        assert_eq!(FileKind::from_name("JPG"), Some(FileKind::Jpeg));
        assert_eq!(FileKind::from_name("txt"), Some(FileKind::Text));
        assert_eq!(FileKind::from_name("exe"), None);
    }

    #[test]
    fn names_are_sanitised() {
        assert_eq!(sanitize_name("../../etc/passwd").unwrap(), "passwd");
        assert_eq!(sanitize_name("C:\\Users\\x\\cat.png").unwrap(), "cat.png");
        assert_eq!(sanitize_name("a\u{7}b\n.pdf").unwrap(), "ab.pdf");
        assert_eq!(sanitize_name(".hidden.txt").unwrap(), "hidden.txt");
        assert!(sanitize_name("..").is_err());
        assert!(sanitize_name("dir/").is_err());
        let long = format!("{}.pdf", "é".repeat(200));
        let s = sanitize_name(&long).unwrap();
        assert!(s.len() <= MAX_NAME_LEN && s.ends_with(".pdf"), "{s}");
        assert_eq!(human_size(1_234_567), "1.2 MB");
    }
}
