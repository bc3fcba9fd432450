//! File transfer against the real server: real bytes of each kind, the
//! type rules decided by content, size caps, SHA-256 integrity, interrupted
//! uploads, download rights, and what ends up in the database and on disk.

mod util;

use confab::client::{Client, ClientError, Conversation};
use confab::protocol::{ClientFrame, ErrorCode, Request, ServerMsg, encode_data, encode_json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use util::{PNG, TestServer, WAIT, code, sqlite};

// ---- real bytes of each kind, made here ----

/// A minimal JFIF JPEG (SOI, APP0, EOI).
const JPEG: &[u8] = &[
    0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 0xFF,
    0xD9,
];

fn pdf(padding: usize) -> Vec<u8> {
    let mut v = b"%PDF-1.4\n1 0 obj<< /Type /Catalog >>endobj\n".to_vec();
    // Deterministic filler so the file has some size.
    v.extend((0..padding).map(|i| b"0123456789abcdef\n"[i % 17]));
    v.extend_from_slice(b"\ntrailer<< /Root 1 0 R >>\n%%EOF\n");
    v
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A real zip archive holding one stored (uncompressed) file.
fn zip() -> Vec<u8> {
    let name = b"hello.txt";
    let data = b"hello from inside a zip\n";
    let crc = crc32(data);
    let mut z = Vec::new();
    let le16 = |v: &mut Vec<u8>, x: u16| v.extend_from_slice(&x.to_le_bytes());
    let le32 = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_le_bytes());
    le32(&mut z, 0x0403_4b50);
    for x in [20u16, 0, 0, 0, 0] {
        le16(&mut z, x);
    }
    le32(&mut z, crc);
    le32(&mut z, data.len() as u32);
    le32(&mut z, data.len() as u32);
    le16(&mut z, name.len() as u16);
    le16(&mut z, 0);
    z.extend_from_slice(name);
    z.extend_from_slice(data);
    let cd_start = z.len() as u32;
    le32(&mut z, 0x0201_4b50);
    for x in [20u16, 20, 0, 0, 0, 0] {
        le16(&mut z, x);
    }
    le32(&mut z, crc);
    le32(&mut z, data.len() as u32);
    le32(&mut z, data.len() as u32);
    le16(&mut z, name.len() as u16);
    for x in [0u16, 0, 0, 0] {
        le16(&mut z, x);
    }
    le32(&mut z, 0);
    le32(&mut z, 0);
    z.extend_from_slice(name);
    let cd_len = z.len() as u32 - cd_start;
    le32(&mut z, 0x0605_4b50);
    for x in [0u16, 0, 1, 1] {
        le16(&mut z, x);
    }
    le32(&mut z, cd_len);
    le32(&mut z, cd_start);
    le16(&mut z, 0);
    z
}

/// The first 64 bytes of an x86-64 ELF executable, plus some code bytes.
fn elf() -> Vec<u8> {
    let mut v = vec![0x7F, b'E', b'L', b'F', 2, 1, 1, 0];
    v.resize(16, 0);
    v.extend_from_slice(&[2, 0, 0x3E, 0, 1, 0, 0, 0]);
    v.resize(200, 0x90);
    v
}

/// A PE executable's DOS header pointing at a PE signature.
fn pe() -> Vec<u8> {
    let mut v = vec![0u8; 0x200];
    v[0] = b'M';
    v[1] = b'Z';
    v[0x3C] = 0x80;
    v[0x80..0x84].copy_from_slice(b"PE\0\0");
    v
}

const SVG: &[u8] = b"<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1\" height=\"1\"><script>alert(1)</script></svg>\n";
const SCRIPT: &[u8] = b"#!/bin/sh\necho pwned\n";
const TEXT: &[u8] = "Meeting notes — café at 10\n".as_bytes();

fn sha_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---- helpers ----

/// Uploads raw bytes through the protocol directly, bypassing the client
/// library's own early checks, so that the server's rules are what is
/// tested. `sha` overrides the digest sent at the end.
fn raw_upload(
    c: &mut Client,
    room: &str,
    name: &str,
    bytes: &[u8],
    sha: Option<&str>,
) -> Result<(i64, i64), ClientError> {
    let ready = c.request(Request::Upload {
        room: Some(room.into()),
        to: None,
        name: name.into(),
        size: bytes.len() as u64,
    })?;
    let ServerMsg::UploadReady { upload, chunk_size } = ready else {
        panic!("{ready:?}");
    };
    for chunk in bytes.chunks(chunk_size) {
        let mut frame = Vec::new();
        encode_data(upload, chunk, &mut frame);
        c.send_frame(&frame)?;
    }
    let digest = sha.map_or_else(|| sha_hex(bytes), str::to_owned);
    match c.request(Request::UploadEnd {
        upload,
        sha256: digest,
    })? {
        ServerMsg::Ack { id, ts, .. } => Ok((id, ts)),
        other => panic!("{other:?}"),
    }
}

/// Every content file in the store (not the temp directory).
fn stored_files(data: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "tmp") {
                    walk(&p, out);
                }
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&data.join("files"), &mut out);
    out.sort();
    out
}

fn tmp_is_empty(data: &Path) -> bool {
    std::fs::read_dir(data.join("files/tmp")).map_or(true, |d| d.count() == 0)
}

// ---- tests ----

#[test]
fn allowed_files_are_stored_once_by_content_and_announced_in_the_room() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let zip = zip();
    let pdf = pdf(5000);
    let cases: [(&str, &[u8], &str); 5] = [
        ("cat.png", PNG, "image/png"),
        ("photo.jpg", JPEG, "image/jpeg"),
        ("report.pdf", &pdf, "application/pdf"),
        ("bundle.zip", &zip, "application/zip"),
        ("notes.txt", TEXT, "text/plain"),
    ];
    for (name, bytes, mime) in cases {
        raw_upload(&mut alice, "general", name, bytes, None)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let m = bob.next_message(WAIT).unwrap().expect("announced");
        let f = m.file.expect("the message carries the file");
        assert_eq!(
            (f.name.as_str(), f.mime.as_str(), f.size),
            (name, mime, bytes.len() as u64)
        );
        assert_eq!(f.sha256, sha_hex(bytes));
        assert!(
            m.body.starts_with(&format!("shared {name} (")),
            "{}",
            m.body
        );
    }
    // The same PNG again: a second row, but one copy on disk.
    raw_upload(&mut alice, "general", "cat-again.png", PNG, None).unwrap();
    let data = server.dir.path();
    assert_eq!(stored_files(data).len(), 5);
    assert!(stored_files(data).iter().any(|p| p.ends_with(sha_hex(PNG))));
    assert_eq!(sqlite(&server.db(), "SELECT count(*) FROM files"), "6");
    assert_eq!(
        sqlite(
            &server.db(),
            "SELECT count(*) FROM messages WHERE file_id IS NOT NULL"
        ),
        "6"
    );
    let files = bob.files(&Conversation::Room("general".into())).unwrap();
    assert_eq!(files[0].file.name, "cat-again.png", "newest first");
    assert_eq!(files.len(), 6);
}

#[test]
fn hostile_and_mislabelled_files_are_refused_saying_what_they_are() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("cat.png", elf(), "ELF executable"),
        ("invoice.pdf", pe(), "PE"),
        ("notes.txt", SCRIPT.to_vec(), "script"),
        ("logo.svg", SVG.to_vec(), "SVG"),
        ("logo.txt", SVG.to_vec(), "SVG"),
        ("cat.png", JPEG.to_vec(), "really JPEG"),
    ];
    for (name, bytes, what) in cases {
        match raw_upload(&mut alice, "general", name, &bytes, None) {
            Err(ClientError::Server { code, message }) => {
                assert_eq!(code, ErrorCode::FileRejected, "{name}: {message}");
                assert!(message.contains(what), "{name}: {message}");
            }
            other => panic!("{name} was accepted: {other:?}"),
        }
    }
    // Nothing was stored, no row, no temp file; the session still works.
    assert!(stored_files(server.dir.path()).is_empty());
    assert!(tmp_is_empty(server.dir.path()));
    assert_eq!(sqlite(&server.db(), "SELECT count(*) FROM files"), "0");
    alice.say("general", "still here").unwrap();
}

#[test]
fn the_client_library_refuses_the_same_files_before_uploading() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("invoice.pdf");
    std::fs::write(&bad, elf()).unwrap();
    let err = alice
        .upload(&Conversation::Room("general".into()), &bad, &mut |_, _| {})
        .unwrap_err();
    assert!(
        matches!(err, ClientError::FileRejected(ref m) if m.contains("ELF")),
        "{err}"
    );
    let good = dir.path().join("cat.png");
    std::fs::write(&good, PNG).unwrap();
    alice
        .upload(&Conversation::Room("general".into()), &good, &mut |_, _| {})
        .unwrap();
}

#[test]
fn size_caps_apply_to_the_declared_size_and_to_the_bytes_received() {
    let server = TestServer::start_with(&["--max-file-size", "10000"]);
    let mut alice = server.user("alice");
    let big = pdf(20_000);
    let err = alice
        .request(Request::Upload {
            room: Some("general".into()),
            to: None,
            name: "big.pdf".into(),
            size: big.len() as u64,
        })
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Server { code: ErrorCode::FileRejected, ref message } if message.contains("limit")),
        "{err}"
    );

    // Declares 100 bytes, sends more.
    let ready = alice
        .request(Request::Upload {
            room: Some("general".into()),
            to: None,
            name: "liar.pdf".into(),
            size: 100,
        })
        .unwrap();
    let ServerMsg::UploadReady { upload, .. } = ready else {
        panic!()
    };
    let mut frame = Vec::new();
    encode_data(upload, &pdf(500), &mut frame);
    alice.send_frame(&frame).unwrap();
    let err = alice
        .request(Request::UploadEnd {
            upload,
            sha256: sha_hex(b""),
        })
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Server { code: ErrorCode::TransferFailed, ref message } if message.contains("more data than the declared 100 bytes")),
        "{err}"
    );
    assert!(stored_files(server.dir.path()).is_empty());
    assert!(tmp_is_empty(server.dir.path()));
}

#[test]
fn a_sha256_mismatch_discards_the_upload() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let wrong = sha_hex(b"something else");
    assert_eq!(
        code(raw_upload(
            &mut alice,
            "general",
            "r.pdf",
            &pdf(100),
            Some(&wrong)
        )),
        ErrorCode::TransferFailed
    );
    assert!(stored_files(server.dir.path()).is_empty());
    assert!(tmp_is_empty(server.dir.path()));
    assert_eq!(sqlite(&server.db(), "SELECT count(*) FROM files"), "0");
}

#[test]
fn names_are_sanitised() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    raw_upload(&mut alice, "general", "../../etc/cat.png", PNG, None).unwrap();
    let m = bob.next_message(WAIT).unwrap().unwrap();
    assert_eq!(m.file.unwrap().name, "cat.png");
    assert_eq!(sqlite(&server.db(), "SELECT name FROM files"), "cat.png");
}

#[test]
fn an_upload_cut_off_halfway_leaves_no_file_and_no_row() {
    let server = TestServer::start();
    {
        let mut alice = server.user("alice");
        let bytes = pdf(200_000);
        let ready = alice
            .request(Request::Upload {
                room: Some("general".into()),
                to: None,
                name: "half.pdf".into(),
                size: bytes.len() as u64,
            })
            .unwrap();
        let ServerMsg::UploadReady { upload, chunk_size } = ready else {
            panic!()
        };
        for chunk in bytes[..bytes.len() / 2].chunks(chunk_size) {
            let mut frame = Vec::new();
            encode_data(upload, chunk, &mut frame);
            alice.send_frame(&frame).unwrap();
        }
        // Connection dropped here.
    }
    let deadline = Instant::now() + WAIT;
    while !tmp_is_empty(server.dir.path()) {
        assert!(
            Instant::now() < deadline,
            "the partial upload was not removed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(stored_files(server.dir.path()).is_empty());
    assert_eq!(sqlite(&server.db(), "SELECT count(*) FROM files"), "0");
}

#[test]
fn only_room_members_and_the_two_dm_users_can_download() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let mut carol = server.user("carol");
    alice.create_room("secret", "").unwrap();
    raw_upload(&mut alice, "secret", "plan.pdf", &pdf(1000), None).unwrap();
    let file_id: i64 = sqlite(&server.db(), "SELECT id FROM files")
        .parse()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = bob
        .download(file_id, dir.path(), &mut |_, _| {})
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Server {
                code: ErrorCode::NoSuchFile,
                ..
            }
        ),
        "{err}"
    );
    let err = bob.download(9999, dir.path(), &mut |_, _| {}).unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Server {
                code: ErrorCode::NoSuchFile,
                ..
            }
        ),
        "same answer: {err}"
    );

    // A DM file: bob can, carol cannot.
    let png = dir.path().join("cat.png");
    std::fs::write(&png, PNG).unwrap();
    alice
        .upload(&Conversation::User("bob".into()), &png, &mut |_, _| {})
        .unwrap();
    let dm_file: i64 = sqlite(&server.db(), "SELECT max(id) FROM files")
        .parse()
        .unwrap();
    let got = bob
        .download(dm_file, &dir.path().join("bob"), &mut |_, _| {})
        .unwrap();
    assert_eq!(std::fs::read(&got).unwrap(), PNG);
    assert!(matches!(
        carol.download(dm_file, dir.path(), &mut |_, _| {}),
        Err(ClientError::Server {
            code: ErrorCode::NoSuchFile,
            ..
        })
    ));
    // Joining the room grants access.
    bob.join("secret").unwrap();
    bob.download(file_id, dir.path(), &mut |_, _| {}).unwrap();
}

#[test]
fn downloads_verify_never_overwrite_and_are_not_executable() {
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let bytes = pdf(300_000);
    raw_upload(&mut alice, "general", "report.pdf", &bytes, None).unwrap();
    let id: i64 = sqlite(&server.db(), "SELECT id FROM files")
        .parse()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut last = (0, 0);
    let first = alice
        .download(id, dir.path(), &mut |done, total| last = (done, total))
        .unwrap();
    let second = alice.download(id, dir.path(), &mut |_, _| {}).unwrap();
    assert_eq!(first, dir.path().join("report.pdf"));
    assert_eq!(second, dir.path().join("report (1).pdf"));
    assert_eq!(std::fs::read(&second).unwrap(), bytes);
    assert_eq!(
        last,
        (bytes.len() as u64, bytes.len() as u64),
        "progress reached the end"
    );
    let mode = std::fs::metadata(&first).unwrap().permissions().mode();
    assert_eq!(mode & 0o111, 0, "not executable: {mode:o}");
    // No leftovers of the partial files.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

/// A 25 MiB upload is streamed: the uploader can chat in the middle of it,
/// and a download interleaves chat events with its data.
#[test]
fn chat_keeps_flowing_during_a_25_mib_transfer() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let bytes = pdf(25 * 1024 * 1024 - 100);
    let ready = alice
        .request(Request::Upload {
            room: Some("general".into()),
            to: None,
            name: "big.pdf".into(),
            size: bytes.len() as u64,
        })
        .unwrap();
    let ServerMsg::UploadReady { upload, chunk_size } = ready else {
        panic!()
    };
    let chunks: Vec<&[u8]> = bytes.chunks(chunk_size).collect();
    let half = chunks.len() / 2;
    for chunk in &chunks[..half] {
        let mut frame = Vec::new();
        encode_data(upload, chunk, &mut frame);
        alice.send_frame(&frame).unwrap();
    }
    // Mid-upload, on the same connection: a chat message is stored and
    // delivered.
    alice.say("general", "halfway there").unwrap();
    assert_eq!(
        bob.next_message(WAIT).unwrap().unwrap().body,
        "halfway there"
    );
    bob.say("general", "go on").unwrap();
    for chunk in &chunks[half..] {
        let mut frame = Vec::new();
        encode_data(upload, chunk, &mut frame);
        alice.send_frame(&frame).unwrap();
    }
    let reply = alice
        .request(Request::UploadEnd {
            upload,
            sha256: sha_hex(&bytes),
        })
        .unwrap();
    assert!(matches!(reply, ServerMsg::Ack { .. }));
    let announced = bob.next_message(WAIT).unwrap().unwrap();
    let file = announced.file.expect("file message");

    // Bob downloads it by hand, reading slowly; a chat message sent after
    // the download started reaches him before the download ends.
    bob.send_frame(&encode_json(&ClientFrame {
        req: Some(900),
        request: Request::Download { file: file.id },
    }))
    .unwrap();
    let mut received = 0u64;
    let mut chat_before_end = false;
    let mut said = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "download did not finish");
        let f = bob.recv_frame(Instant::now() + WAIT);
        // recv_frame skips data frames, so count progress by the events.
        match f.unwrap().msg {
            ServerMsg::DownloadStart { .. } if !said => {
                alice.say("general", "during your download").unwrap();
                said = true;
            }
            ServerMsg::Message(m) if m.body == "during your download" => chat_before_end = true,
            ServerMsg::DownloadEnd { .. } => break,
            _ => {}
        }
        received += 1;
    }
    assert!(
        said && chat_before_end,
        "chat interleaved with the download ({received} frames)"
    );
}

/// Issue 14, item 4: a right-to-left override in a file name was stored
/// and listed intact, so other clients showed a name lying about its
/// extension. Bidi controls and zero-width characters are stripped from
/// file names like NUL and ESC.
#[test]
fn bidi_and_zero_width_characters_are_stripped_from_file_names() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    raw_upload(
        &mut alice,
        "general",
        "invoice\u{202E}txt.exe\u{200B}.txt",
        TEXT,
        None,
    )
    .unwrap();
    let m = bob.next_message(WAIT).unwrap().expect("announced");
    let f = m.file.expect("the message carries the file");
    assert_eq!(f.name, "invoicetxt.exe.txt");
    assert!(!m.body.contains('\u{202E}'), "{}", m.body);
    assert_eq!(
        sqlite(&server.db(), "SELECT name FROM files"),
        "invoicetxt.exe.txt"
    );
}
