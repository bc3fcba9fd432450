//! One session's file transfers: the upload being received and the
//! download being sent.
//!
//! An [`Upload`] checks the content as it arrives (size against the
//! declared size and the cap, type from the first bytes, text validity
//! throughout), hashes it, and writes it to a [`PartialFile`]; it is
//! committed only by [`Upload::finish`] when everything checks out. A
//! [`Download`] is pumped a chunk at a time by the session loop while the
//! client's unsent bytes are few, so a large download never fills memory and
//! chat frames keep interleaving with it.

use super::file_store::{FileStore, PartialFile};
use super::writer::Target;
use crate::file_rules::{self, FileKind, FileRules, HEAD_LEN, HeadVerdict, TextCheck};
use crate::protocol::{DATA_CHUNK, ErrorCode, encode_data};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;

/// A refusal: error code and message for the client.
pub type Refusal = (ErrorCode, String);

/// An upload in progress.
pub struct Upload {
    /// Stream id of its data frames.
    pub id: u32,
    /// Where the file goes.
    pub target: Target,
    /// Sanitised name.
    pub name: String,
    /// Declared size.
    pub size: u64,
    received: u64,
    hasher: Sha256,
    partial: PartialFile,
    head: Vec<u8>,
    verdict: Option<HeadVerdict>,
    text: TextCheck,
}

/// A verified upload, ready to be recorded.
pub struct Verified {
    /// Hex SHA-256.
    pub sha256: String,
    /// The content's kind.
    pub kind: FileKind,
}

fn rejected(e: file_rules::Rejection) -> Refusal {
    (ErrorCode::FileRejected, e.to_string())
}

impl Upload {
    /// Starts an upload of `size` bytes named `name` (sanitised here).
    pub fn begin(
        id: u32,
        target: Target,
        name: &str,
        size: u64,
        rules: &FileRules,
        store: &FileStore,
    ) -> Result<Upload, Refusal> {
        let name = file_rules::sanitize_name(name).map_err(rejected)?;
        if size > rules.max_size {
            return Err(rejected(file_rules::Rejection::TooLarge {
                size,
                max: rules.max_size,
            }));
        }
        if size == 0 {
            return Err((ErrorCode::FileRejected, "the file is empty".into()));
        }
        let partial = store.begin().map_err(|e| {
            log::error!("cannot create an upload file: {e}");
            (
                ErrorCode::ServerError,
                "cannot store files right now".into(),
            )
        })?;
        Ok(Upload {
            id,
            target,
            name,
            size,
            received: 0,
            hasher: Sha256::new(),
            partial,
            head: Vec::new(),
            verdict: None,
            text: TextCheck::default(),
        })
    }

    /// Takes the next chunk. An error means the upload is refused and must
    /// be dropped (which deletes what was written).
    pub fn feed(&mut self, rules: &FileRules, bytes: &[u8]) -> Result<(), Refusal> {
        self.received += bytes.len() as u64;
        if self.received > self.size {
            return Err((
                ErrorCode::TransferFailed,
                format!("more data than the declared {} bytes", self.size),
            ));
        }
        self.hasher.update(bytes);
        self.text.feed(bytes);
        if self.verdict.is_none() {
            let want = HEAD_LEN.min(self.size as usize);
            let take = (want - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            if self.head.len() == want {
                self.verdict =
                    Some(file_rules::check_head(rules, &self.name, &self.head).map_err(rejected)?);
            }
        }
        self.partial.write(bytes).map_err(|e| {
            log::error!("writing an upload failed: {e}");
            (
                ErrorCode::ServerError,
                "cannot store files right now".into(),
            )
        })
    }

    /// Ends the upload: checks size, type and the client's SHA-256, then
    /// moves the content into the store.
    pub fn finish(self, sha256: &str, store: &FileStore) -> Result<Verified, Refusal> {
        if self.received != self.size {
            return Err((
                ErrorCode::TransferFailed,
                format!("received {} of {} bytes", self.received, self.size),
            ));
        }
        let kind = match self.verdict {
            Some(HeadVerdict::Binary(kind)) => kind,
            Some(HeadVerdict::MaybeText) => {
                self.text.finish().map_err(rejected)?;
                FileKind::Text
            }
            None => {
                return Err((ErrorCode::TransferFailed, "no data received".into()));
            }
        };
        let actual: String = self
            .hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if !actual.eq_ignore_ascii_case(sha256.trim()) {
            return Err((
                ErrorCode::TransferFailed,
                "SHA-256 mismatch: the file was corrupted in transit; it was discarded".into(),
            ));
        }
        store.commit(self.partial, &actual).map_err(|e| {
            log::error!("storing an upload failed: {e}");
            (
                ErrorCode::ServerError,
                "cannot store files right now".into(),
            )
        })?;
        Ok(Verified {
            sha256: actual,
            kind,
        })
    }
}

/// A download in progress.
pub struct Download {
    /// Stream id of its data frames.
    pub id: u32,
    /// Hex SHA-256, sent at the end.
    pub sha256: String,
    file: File,
    remaining: u64,
}

impl Download {
    /// Starts sending `size` bytes of `file`.
    pub fn new(id: u32, file: File, size: u64, sha256: String) -> Download {
        Download {
            id,
            sha256,
            file,
            remaining: size,
        }
    }

    /// Appends the next data frame to `out`; returns `Ok(true)` when the
    /// whole file has been queued.
    pub fn pump(&mut self, out: &mut Vec<u8>) -> std::io::Result<bool> {
        if self.remaining == 0 {
            return Ok(true);
        }
        let n = (self.remaining as usize).min(DATA_CHUNK);
        let mut buf = vec![0u8; n];
        self.file.read_exact(&mut buf)?;
        encode_data(self.id, &buf, out);
        self.remaining -= n as u64;
        Ok(self.remaining == 0)
    }
}
