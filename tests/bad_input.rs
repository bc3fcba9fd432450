//! Bad input gets a typed error and loses nothing: wrong passwords,
//! duplicate names, malformed and oversized frames, requests out of order,
//! wrong certificates.

mod util;

use confab::client::{Client, ClientError};
use confab::protocol::{
    ClientFrame, ErrorCode, FrameKind, MAX_BODY_LEN, MAX_REQUEST_LEN, Request, ServerMsg,
    encode_frame, encode_json,
};
use confab::tls::{Trust, client_connector};
use std::time::{Duration, Instant};
use util::{PW, TestServer, WAIT, code};

fn json_frame(json: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(FrameKind::Json, json.as_bytes(), &mut out);
    out
}

/// Reads frames until one answers `req` (or any reply, if `req` is None).
fn reply_to(c: &mut Client, req: Option<u64>) -> ServerMsg {
    let deadline = Instant::now() + WAIT;
    loop {
        let f = c.recv_frame(deadline).expect("a reply");
        if f.req == req || matches!(f.msg, ServerMsg::Closing { .. }) {
            return f.msg;
        }
    }
}

#[test]
fn wrong_password_and_unknown_user_get_the_same_error() {
    let server = TestServer::start();
    drop(server.user("alice"));
    let mut c = server.client();
    let wrong = c.login("alice", "not the password").unwrap_err();
    let unknown = c.login("mallory", PW).unwrap_err();
    let (
        ClientError::Server {
            code: c1,
            message: m1,
        },
        ClientError::Server {
            code: c2,
            message: m2,
        },
    ) = (wrong, unknown)
    else {
        panic!("expected server errors");
    };
    assert_eq!((c1, &m1), (ErrorCode::AuthFailed, &m2));
    assert_eq!(c2, ErrorCode::AuthFailed);
    // The session goes on: the right password still works on it.
    c.login("alice", PW).unwrap();
    assert!(
        !server.log().contains(PW),
        "the password never reaches the log"
    );
}

#[test]
fn duplicate_and_invalid_registrations_are_refused() {
    let server = TestServer::start();
    drop(server.user("alice"));
    let mut c = server.client();
    assert_eq!(code(c.register("ALICE", PW)), ErrorCode::UserExists);
    assert_eq!(code(c.register("a!", PW)), ErrorCode::InvalidUsername);
    assert_eq!(
        code(c.register("bobby", "short")),
        ErrorCode::InvalidPassword
    );
    c.register("bobby", PW).unwrap();
    assert_eq!(code(c.login("bobby", PW)), ErrorCode::AlreadyLoggedIn);
}

#[test]
fn requests_before_login_are_refused_and_the_session_goes_on() {
    let server = TestServer::start();
    let mut c = server.client();
    assert_eq!(code(c.say("general", "hi")), ErrorCode::NotLoggedIn);
    assert!(matches!(c.request(Request::Ping).unwrap(), ServerMsg::Pong));
    c.register("alice", PW).unwrap();
    c.say("general", "now it works").unwrap();
}

#[test]
fn first_request_must_be_hello_with_the_right_version() {
    let server = TestServer::start();
    let mut c = server.raw_client();
    c.send_frame(&encode_json(&ClientFrame {
        req: Some(1),
        request: Request::Rooms,
    }))
    .unwrap();
    match reply_to(&mut c, Some(1)) {
        ServerMsg::Closing { code, .. } => assert_eq!(code, ErrorCode::HelloRequired),
        other => panic!("{other:?}"),
    }

    let mut c = server.raw_client();
    let err = c
        .request(Request::Hello {
            version: 999,
            client: "future".into(),
        })
        .unwrap_err();
    let ClientError::Closed {
        reason: Some((code, message)),
    } = err
    else {
        panic!("expected closing, got {err}");
    };
    assert_eq!(code, ErrorCode::VersionMismatch);
    assert!(message.contains("version 1"), "{message}");
}

#[test]
fn malformed_json_and_unknown_requests_get_typed_errors_with_their_id() {
    let server = TestServer::start();
    let mut c = server.user("alice");
    c.send_frame(&json_frame(r#"{"req":50,"type":"say","room":"general"}"#))
        .unwrap();
    assert!(matches!(
        reply_to(&mut c, Some(50)),
        ServerMsg::Error {
            code: ErrorCode::BadRequest,
            ..
        }
    ));
    c.send_frame(&json_frame(r#"{"req":51,"type":"launch"}"#))
        .unwrap();
    assert!(matches!(
        reply_to(&mut c, Some(51)),
        ServerMsg::Error {
            code: ErrorCode::UnknownRequest,
            ..
        }
    ));
    c.send_frame(&json_frame("this is not json")).unwrap();
    assert!(matches!(
        reply_to(&mut c, None),
        ServerMsg::Error {
            code: ErrorCode::BadRequest,
            ..
        }
    ));
    c.send_frame(&json_frame(
        r#"{"req":52,"type":"say","room":"general","body":7}"#,
    ))
    .unwrap();
    assert!(matches!(
        reply_to(&mut c, Some(52)),
        ServerMsg::Error {
            code: ErrorCode::BadRequest,
            ..
        }
    ));
    // Invalid UTF-8 inside a JSON frame.
    let mut bad = Vec::new();
    encode_frame(
        FrameKind::Json,
        b"{\"req\":53,\"type\":\"say\",\"room\":\"general\",\"body\":\"\xff\"}",
        &mut bad,
    );
    c.send_frame(&bad).unwrap();
    assert!(matches!(
        reply_to(&mut c, Some(53)),
        ServerMsg::Error {
            code: ErrorCode::BadRequest,
            ..
        }
    ));
    // After all that, the session still works and nothing was stored.
    c.say("general", "still fine").unwrap();
    let (history, _) = c.room_history("general", None, 10).unwrap();
    assert_eq!(history.len(), 1);
}

#[test]
fn oversized_frame_closes_the_connection_with_a_reason_and_the_server_lives() {
    let server = TestServer::start();
    let mut c = server.user("alice");
    let mut header = ((MAX_REQUEST_LEN + 1) as u32).to_be_bytes().to_vec();
    header.push(FrameKind::Json as u8);
    c.send_frame(&header).unwrap();
    match reply_to(&mut c, None) {
        ServerMsg::Closing { code, .. } => assert_eq!(code, ErrorCode::BadFrame),
        other => panic!("{other:?}"),
    }
    // Unknown frame kinds are refused the same way.
    let mut c = server.user("bob");
    c.send_frame(&[0, 0, 0, 2, 9, b'{', b'}']).unwrap();
    assert!(matches!(
        reply_to(&mut c, None),
        ServerMsg::Closing {
            code: ErrorCode::BadFrame,
            ..
        }
    ));
    // Others are unaffected.
    let mut carol = server.user("carol");
    carol.say("general", "unaffected").unwrap();
}

#[test]
fn oversized_message_body_is_refused_and_nothing_is_stored() {
    let server = TestServer::start();
    let mut c = server.user("alice");
    assert_eq!(
        code(c.say("general", &"x".repeat(MAX_BODY_LEN + 1))),
        ErrorCode::TooLong
    );
    assert_eq!(
        code(c.say("general", "\x1b[2Jgotcha")),
        ErrorCode::InvalidBody
    );
    assert_eq!(code(c.say("general", "   ")), ErrorCode::InvalidBody);
    assert!(c.room_history("general", None, 10).unwrap().0.is_empty());
}

#[test]
fn missing_rooms_and_users_get_typed_errors() {
    let server = TestServer::start();
    let mut c = server.user("alice");
    assert_eq!(code(c.join("nowhere")), ErrorCode::NoSuchRoom);
    assert_eq!(code(c.join("no way!")), ErrorCode::InvalidRoom);
    assert_eq!(code(c.dm("ghost", "boo")), ErrorCode::NoSuchUser);
    assert_eq!(code(c.create_room("general", "")), ErrorCode::RoomExists);
    assert_eq!(
        code(c.room_history("nowhere", None, 5)),
        ErrorCode::NoSuchRoom
    );
    let err = c.request(Request::History {
        room: None,
        with: None,
        before: None,
        around: None,
        limit: None,
    });
    assert_eq!(code(err), ErrorCode::BadRequest);
}

#[test]
fn garbage_instead_of_tls_does_not_hurt_the_server() {
    use std::io::{Read, Write};
    let server = TestServer::start();
    let mut tcp = std::net::TcpStream::connect(&server.addr).unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 256];
    // The server answers with a TLS alert or just closes; it never serves.
    let _ = tcp.read(&mut buf);
    let mut c = server.user("alice");
    c.say("general", "still serving").unwrap();
}

#[test]
fn client_trusting_the_wrong_ca_fails_the_handshake() {
    let server = TestServer::start();
    let other = tempfile::tempdir().unwrap();
    util::make_certs(other.path());
    let connector = client_connector(&Trust::CaFile(other.path().join("ca.pem"))).unwrap();
    let err = Client::connect_with(&server.addr, "localhost", &connector, WAIT)
        .err()
        .expect("handshake must fail");
    assert!(matches!(err, ClientError::Handshake { .. }), "{err}");

    // The right CA but the wrong name fails too.
    let connector = client_connector(&Trust::CaFile(util::certs().join("ca.pem"))).unwrap();
    let err = Client::connect_with(&server.addr, "chat.example.org", &connector, WAIT)
        .err()
        .expect("name mismatch must fail");
    assert!(matches!(err, ClientError::Handshake { .. }), "{err}");
}

#[test]
fn server_refuses_to_start_without_a_certificate_and_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_confab-server"))
        .args(["--listen", "127.0.0.1:0", "--cert"])
        .arg(dir.path().join("missing.pem"))
        .arg("--key")
        .arg(dir.path().join("missing.key"))
        .arg("--db")
        .arg(dir.path().join("x.db"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("make certs"), "{stderr}");
}

#[test]
fn a_client_that_drops_mid_frame_loses_nothing_for_others() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let (id, _) = alice.say("general", "before").unwrap();
    {
        let mut bob = server.user("bob");
        // Half a frame, then the connection drops.
        let frame = encode_json(&ClientFrame {
            req: Some(9),
            request: Request::Say {
                room: "general".into(),
                body: "half".into(),
                reply_to: None,
                notice: false,
            },
        });
        bob.send_frame(&frame[..frame.len() / 2]).unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    let (history, _) = alice.room_history("general", None, 10).unwrap();
    assert_eq!(history.iter().map(|m| m.id).collect::<Vec<_>>(), [id]);
    alice.say("general", "after").unwrap();
}

/// Issue 14, item 6: a data frame (kind 2) before `hello` was silently
/// ignored, where the protocol says the first frame must be `hello`.
#[test]
fn a_data_frame_before_hello_gets_hello_required() {
    let server = TestServer::start();
    let mut c = server.raw_client();
    let mut frame = Vec::new();
    encode_frame(FrameKind::Data, &[0, 0, 0, 1, b'x'], &mut frame);
    c.send_frame(&frame).unwrap();
    util::expect_closing(&mut c, ErrorCode::HelloRequired);
}

/// Issue 14, item 4: topics, away messages and moderation reasons are one
/// line that others see; bidi controls and zero-width characters in them
/// are refused (bodies keep them: right-to-left writers need the marks,
/// and clients render them safely).
#[test]
fn invisible_formatting_characters_are_refused_in_topics_away_and_reasons() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    for text in ["evil\u{202E}cipot", "zero\u{200B}width", "isolate\u{2067}x"] {
        assert_eq!(
            code(alice.request(Request::Topic {
                room: "general".into(),
                topic: text.into()
            })),
            ErrorCode::InvalidBody,
            "{text:?}"
        );
        assert_eq!(
            code(alice.request(Request::Away {
                message: Some(text.into())
            })),
            ErrorCode::InvalidBody
        );
    }
    alice
        .request(Request::Topic {
            room: "general".into(),
            topic: "שלום and 👨\u{200D}👩\u{200D}👧 are fine".into(),
        })
        .expect("ordinary right-to-left text and emoji sequences pass");
}
