//! Hostile input against the real server: every request type with fields
//! missing, of the wrong type, huge, full of SQL metacharacters or invalid
//! UTF-8; sent before login, by a plain user, and by a user reading a room
//! he is not in. Every request must get a typed answer, the server must
//! stay up, and the database must come out intact.

mod util;

use confab::client::{Client, ClientError};
use confab::protocol::{ErrorCode, FrameKind, Request, ServerMsg, encode_frame};
use serde_json::{Value, json};
use std::time::Instant;
use util::{PW, TestServer, WAIT, sqlite};

/// One valid sample of every request type.
fn samples() -> Vec<Value> {
    let v = vec![
        json!({"type":"hello","version":1,"client":"x"}),
        json!({"type":"register","user":"newuser","password":"longenough1"}),
        json!({"type":"login","user":"alice","password":"wrong password"}),
        json!({"type":"resume","user":"alice","token":"00"}),
        json!({"type":"logout"}),
        json!({"type":"change_password","old":"wrong password","new":"whatever123"}),
        json!({"type":"kick","user":"bob","reason":"r"}),
        json!({"type":"ban","user":"bob","reason":"r","minutes":1}),
        json!({"type":"unban","user":"bob"}),
        json!({"type":"mute","room":"general","user":"bob","minutes":1}),
        json!({"type":"unmute","room":"general","user":"bob"}),
        json!({"type":"bans"}),
        json!({"type":"rooms"}),
        json!({"type":"create_room","room":"newroom","topic":"t"}),
        json!({"type":"join","room":"general"}),
        json!({"type":"leave","room":"secret"}),
        json!({"type":"topic","room":"general","topic":"t"}),
        json!({"type":"who","room":"general"}),
        json!({"type":"delete_room","room":"secret"}),
        json!({"type":"say","room":"general","body":"hi","reply_to":1}),
        json!({"type":"dm","to":"bob","body":"hi","reply_to":1}),
        json!({"type":"edit","id":1,"body":"changed"}),
        json!({"type":"delete","id":1,"reason":"r"}),
        json!({"type":"react","id":1,"emoji":"+1"}),
        json!({"type":"unreact","id":1,"emoji":"+1"}),
        json!({"type":"search","query":"hello from:bob in:#general","before":9,"limit":5}),
        json!({"type":"history","room":"secret","before":5,"limit":10}),
        json!({"type":"upload","room":"general","name":"a.png","size":10}),
        json!({"type":"upload_end","upload":1,"sha256":"00"}),
        json!({"type":"upload_cancel","upload":1}),
        json!({"type":"download","file":1}),
        json!({"type":"files","room":"secret"}),
        json!({"type":"mark_read","room":"secret","id":1}),
        json!({"type":"away","message":"brb"}),
        json!({"type":"stats"}),
        json!({"type":"ping"}),
        json!({"type":"quit"}),
    ];
    assert_eq!(
        v.len(),
        Request::TYPES.len(),
        "a sample for every request type"
    );
    v
}

/// Values to put in place of each field.
fn replacements() -> Vec<Value> {
    vec![
        json!(7),
        json!(-1),
        json!(1.5),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(true),
        Value::Null,
        json!([]),
        json!({"nested": {"deeper": [1, 2, 3]}}),
        json!(""),
        json!("x".repeat(60_000)),
        json!("'; DROP TABLE users; --"),
        json!("\" OR 1=1 --"),
        json!("general' OR '1'='1"),
        json!("%_%"),
        json!("\"a\" NEAR(b c) OR d* ^e -f AND body: {x y}"),
        json!("\u{0}\u{1b}[2J"),
        json!("ünïcødé ✓ 🎉"),
        json!("../../etc/passwd"),
    ]
}

/// Every variant of every sample: each field missing, and each field
/// replaced by each hostile value.
fn variants() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for sample in samples() {
        let obj = sample.as_object().unwrap();
        let fields: Vec<&String> = obj.keys().filter(|k| *k != "type").collect();
        out.push(serde_json::to_vec(&sample).unwrap());
        for f in &fields {
            let mut missing = obj.clone();
            missing.remove(*f);
            out.push(serde_json::to_vec(&missing).unwrap());
            for r in replacements() {
                let mut changed = obj.clone();
                changed.insert((*f).clone(), r);
                out.push(serde_json::to_vec(&changed).unwrap());
            }
            // Invalid UTF-8 inside the field's string.
            let mut raw = serde_json::to_vec(&{
                let mut m = obj.clone();
                m.insert((*f).clone(), json!("@@BAD@@"));
                m
            })
            .unwrap();
            if let Some(pos) = raw.windows(7).position(|w| w == b"@@BAD@@") {
                raw.splice(pos..pos + 7, [0xff, 0xfe, 0xc0, 0x80]);
            }
            out.push(raw);
        }
        // The wrong type for the type itself, and an unknown one.
        let mut t = obj.clone();
        t.insert("type".into(), json!(42));
        out.push(serde_json::to_vec(&t).unwrap());
    }
    out.push(b"[]".to_vec());
    out.push(b"null".to_vec());
    out.push(b"{\"type\":\"say\"".to_vec());
    out.push(b"\xff\xff\xff".to_vec());
    out
}

/// Sends `payload` with request id `req` and waits for the answer: a reply
/// carrying `req`, or the connection being closed with a reason (some
/// requests legitimately end the session: quit, logout, a bad hello).
/// Returns false if the session ended.
fn exchange(c: &mut Client, req: u64, payload: &[u8]) -> bool {
    // Insert the request id into the JSON object when it is one.
    let body = match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(mut m)) => {
            m.insert("req".into(), json!(req));
            serde_json::to_vec(&m).unwrap()
        }
        _ => payload.to_vec(),
    };
    let mut frame = Vec::new();
    encode_frame(FrameKind::Json, &body, &mut frame);
    if c.send_frame(&frame).is_err() {
        return false;
    }
    let tagged = body.starts_with(b"{");
    let deadline = Instant::now() + WAIT;
    loop {
        match c.recv_frame(deadline) {
            Ok(f) if f.req == Some(req) => {
                // Bad input is the client's fault, never an internal error
                // (an FTS5 syntax error from a search would be one).
                if let ServerMsg::Error {
                    code: ErrorCode::ServerError,
                    message,
                } = &f.msg
                {
                    panic!(
                        "server_error ({message}) for {}",
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    );
                }
                return true;
            }
            // Untagged payloads (not an object) get an untagged error.
            Ok(f) if !tagged && matches!(f.msg, ServerMsg::Error { .. }) => return true,
            // Malformed JSON whose id could not be read.
            Ok(f)
                if f.req.is_none()
                    && matches!(
                        f.msg,
                        ServerMsg::Error {
                            code: ErrorCode::BadRequest,
                            ..
                        }
                    ) =>
            {
                return true;
            }
            Ok(ServerFrame {
                msg: ServerMsg::Closing { .. },
                ..
            }) => return false,
            Ok(_) => {}
            Err(ClientError::Closed { .. }) => return false,
            Err(e) => panic!(
                "no answer to {}: {e}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ),
        }
    }
}

use confab::protocol::ServerFrame;

#[test]
fn every_request_with_hostile_fields_gets_a_typed_answer_and_nothing_breaks() {
    // Throttling off: hundreds of hostile logins come from one address.
    let server = TestServer::start_with(&["--login-failures", "0"]);
    drop(server.user("bob"));
    let mut owner = server.user("carol");
    owner.create_room("secret", "").unwrap();
    let users_before = sqlite(&server.db(), "SELECT count(*) FROM users");

    let variants = variants();
    let mut tried = 0;
    let mut sessions = 0;
    // Logged in as a plain user (not an admin, not in #secret).
    let mut c = server.user("mallory");
    for (i, payload) in variants.iter().enumerate() {
        tried += 1;
        if !exchange(&mut c, 1000 + i as u64, payload) {
            sessions += 1;
            c = server.client();
            c.login("mallory", PW).unwrap();
        }
    }
    // Before login: only hello'ed.
    let mut c = server.client();
    for (i, payload) in variants.iter().enumerate() {
        tried += 1;
        if !exchange(&mut c, 50_000 + i as u64, payload) {
            sessions += 1;
            c = server.client();
        }
    }
    eprintln!("hostile inputs tried: {tried}; sessions ended by them: {sessions}");

    // The server is up and correct.
    let mut check = server.login("carol");
    check.say("secret", "still works").unwrap();
    assert_eq!(sqlite(&server.db(), "PRAGMA integrity_check"), "ok");
    let users_after: u32 = sqlite(&server.db(), "SELECT count(*) FROM users")
        .parse()
        .unwrap();
    // Some variants validly registered accounts; none vanished.
    assert!(users_after >= users_before.parse::<u32>().unwrap());
    assert_eq!(
        sqlite(
            &server.db(),
            "SELECT count(*) FROM rooms WHERE name = 'secret'"
        ),
        "1"
    );
    // A plain user never read #secret or acted as an admin.
    assert_eq!(sqlite(&server.db(), "SELECT count(*) FROM bans"), "0");
    assert_eq!(sqlite(&server.db(), "SELECT count(*) FROM room_mutes"), "0");
    assert!(!server.log().contains("panicked"));
}

#[test]
fn a_user_cannot_read_or_list_a_room_he_is_not_in() {
    let server = TestServer::start();
    let mut carol = server.user("carol");
    carol.create_room("secret", "").unwrap();
    carol.say("secret", "the plan").unwrap();
    let mut alice = server.user("alice");
    let err = alice.room_history("secret", None, 10).unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Server {
                code: ErrorCode::NotMember,
                ..
            }
        ),
        "{err}"
    );
    let err = alice
        .files(&confab::client::Conversation::Room("secret".into()))
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Server {
                code: ErrorCode::NotMember,
                ..
            }
        ),
        "{err}"
    );
    let err = alice.say("secret", "let me in").unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Server {
                code: ErrorCode::NotMember,
                ..
            }
        ),
        "{err}"
    );
}
