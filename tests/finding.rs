//! Finding and fixing messages against a real server: search with every
//! filter and its access rules, edit and delete with their rights and
//! window, deletion down to the database file, replies and reactions live
//! and in history, and a user's two sessions kept in step.

mod util;

use confab::client::{Client, ClientError, Conversation};
use confab::protocol::{ChatMessage, ErrorCode, ReactionCount, ServerMsg};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use util::{PNG, TestServer, WAIT, code, sqlite};

/// Reads events until one matches `pred` and returns it; panics if none
/// does within WAIT.
fn wait_for(c: &mut Client, what: &str, pred: impl Fn(&ServerMsg) -> bool) -> ServerMsg {
    let deadline = Instant::now() + WAIT;
    while let Some(ev) = c
        .next_event(deadline.saturating_duration_since(Instant::now()))
        .unwrap()
    {
        if pred(&ev) {
            return ev;
        }
    }
    panic!("no {what} within {WAIT:?}");
}

fn search(c: &mut Client, q: &str) -> Vec<String> {
    let (results, _) = c
        .search(q, None, None)
        .unwrap_or_else(|e| panic!("{q}: {e}"));
    results.into_iter().map(|m| m.body).collect()
}

/// `YYYY-MM-DD` of the UTC day `days` from today.
fn utc_day(days: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    confab::search::day_name(now + days * 86_400_000)
}

fn history(c: &mut Client, room: &str) -> Vec<ChatMessage> {
    c.room_history(room, None, 100).unwrap().0
}

fn by_id(msgs: &[ChatMessage], id: i64) -> ChatMessage {
    msgs.iter()
        .find(|m| m.id == id)
        .cloned()
        .unwrap_or_else(|| panic!("message {id} not in {msgs:?}"))
}

#[test]
fn search_finds_words_phrases_and_prefixes_and_applies_every_filter() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    alice.create_room("rust", "").unwrap();
    bob.join("rust").unwrap();
    alice.say("general", "we deploy on Friday").unwrap();
    bob.say("general", "the deployment is rolling back now")
        .unwrap();
    bob.say("rust", "back rolling is not a phrase").unwrap();
    alice.say("rust", "Déjà vu at the Café").unwrap();
    bob.dm("alice", "secret plan: deploy the cafe").unwrap();
    let (newest, _) = alice.say("general", "deploy staging first").unwrap();

    // Words: every one must match; case and accents do not matter.
    assert_eq!(
        search(&mut alice, "deploy"),
        [
            "deploy staging first",
            "secret plan: deploy the cafe",
            "we deploy on Friday"
        ],
        "newest first, DMs included"
    );
    assert_eq!(search(&mut alice, "deploy friday"), ["we deploy on Friday"]);
    assert_eq!(
        search(&mut alice, "CAFE deja"),
        ["Déjà vu at the Café"],
        "diacritics removed"
    );
    // A phrase matches those words in that order only.
    assert_eq!(
        search(&mut alice, "\"rolling back\""),
        ["the deployment is rolling back now"]
    );
    // Prefixes and exclusions.
    assert_eq!(search(&mut alice, "depl*").len(), 4);
    assert_eq!(
        search(&mut alice, "deploy -staging -\"secret plan\""),
        ["we deploy on Friday"]
    );
    // from:, in:#room, in:@user, in:name, and a filter alone.
    assert_eq!(search(&mut alice, "depl* from:bob").len(), 2);
    assert_eq!(search(&mut alice, "deploy from:me").len(), 2);
    assert_eq!(
        search(&mut alice, "from:bob in:#rust"),
        ["back rolling is not a phrase"]
    );
    assert_eq!(
        search(&mut alice, "cafe in:@bob"),
        ["secret plan: deploy the cafe"]
    );
    assert_eq!(
        search(&mut alice, "cafe in:bob"),
        ["secret plan: deploy the cafe"]
    );
    assert_eq!(search(&mut alice, "cafe in:rust"), ["Déjà vu at the Café"]);
    assert_eq!(
        search(&mut bob, "in:@alice"),
        ["secret plan: deploy the cafe"]
    );
    // Dates are UTC days.
    let (today, yesterday, tomorrow) = (utc_day(0), utc_day(-1), utc_day(1));
    assert_eq!(search(&mut alice, &format!("deploy on:{today}")).len(), 3);
    assert_eq!(
        search(&mut alice, &format!("deploy after:{yesterday}")).len(),
        3
    );
    assert_eq!(
        search(&mut alice, &format!("deploy before:{tomorrow}")).len(),
        3
    );
    assert!(search(&mut alice, &format!("deploy before:{today}")).is_empty());
    assert!(search(&mut alice, &format!("deploy after:{today}")).is_empty());
    // Operators typed by a user are words, never query syntax.
    assert!(search(&mut alice, "deploy OR NEAR(x) \"").is_empty());

    // Paging: newest first, `more`, then the rest with `before`.
    let (page1, more) = alice.search("deploy", None, Some(2)).unwrap();
    assert!(more);
    assert_eq!(page1[0].id, newest);
    assert_eq!(page1[0].room.as_deref(), Some("general"));
    assert_eq!(
        page1[1].to.as_deref(),
        Some("alice"),
        "a DM names its conversation"
    );
    let (page2, more) = alice.search("deploy", Some(page1[1].id), Some(2)).unwrap();
    assert!(!more);
    assert_eq!(page2.len(), 1);

    // Errors are typed, and name what is wrong.
    for (q, want) in [
        ("", ErrorCode::InvalidQuery),
        ("-only -negatives", ErrorCode::InvalidQuery),
        ("x on:2026-02-30", ErrorCode::InvalidQuery),
        ("x from:nobody", ErrorCode::NoSuchUser),
        ("x in:#nowhere", ErrorCode::NoSuchRoom),
    ] {
        assert_eq!(code(alice.search(q, None, None)), want, "{q}");
    }
    assert_eq!(
        code(alice.search(&"x".repeat(600), None, None)),
        ErrorCode::InvalidQuery
    );
}

#[test]
fn search_shows_only_the_users_rooms_and_own_direct_messages() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let mut carol = server.user("carol");
    alice.create_room("hidden", "").unwrap();
    bob.join("hidden").unwrap();
    alice.say("hidden", "the password is swordfish").unwrap();
    alice.dm("bob", "swordfish between us").unwrap();
    carol.say("general", "what is swordfish").unwrap();

    assert_eq!(search(&mut carol, "swordfish"), ["what is swordfish"]);
    assert_eq!(
        code(carol.search("swordfish in:#hidden", None, None)),
        ErrorCode::NotMember
    );
    assert!(
        search(&mut carol, "swordfish in:@bob").is_empty(),
        "others' DMs"
    );
    assert!(search(&mut carol, "swordfish from:alice").is_empty());
    assert_eq!(search(&mut bob, "swordfish").len(), 3);
    // Leaving a room takes its messages out of the user's results.
    bob.request(confab::protocol::Request::Leave {
        room: "hidden".into(),
        reason: None,
    })
    .unwrap();
    assert_eq!(
        search(&mut bob, "swordfish"),
        ["what is swordfish", "swordfish between us"]
    );
    // Jumping to a result the user may not see is refused like history.
    let hidden_id: i64 = sqlite(&server.db(), "SELECT min(id) FROM messages")
        .parse()
        .unwrap();
    assert_eq!(
        code(carol.history_around(&Conversation::Room("hidden".into()), hidden_id, 10)),
        ErrorCode::NotMember
    );
}

#[test]
fn jumping_to_a_result_loads_the_messages_around_it() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut ids = Vec::new();
    for i in 0..30 {
        let body = if i == 12 {
            "the needle".to_owned()
        } else {
            format!("hay {i}")
        };
        ids.push(alice.say("general", &body).unwrap().0);
    }
    let (hit, _) = alice.search("needle", None, None).unwrap();
    let (around, older, newer) = alice
        .history_around(&Conversation::Room("general".into()), hit[0].id, 10)
        .unwrap();
    let got: Vec<i64> = around.iter().map(|m| m.id).collect();
    assert_eq!(
        got,
        ids[8..18].to_vec(),
        "5 up to the hit, 5 after, oldest first"
    );
    assert!(older && newer);
    let (end, _, newer) = alice
        .history_around(&Conversation::Room("general".into()), ids[28], 10)
        .unwrap();
    assert_eq!(end.last().unwrap().id, ids[29]);
    assert!(!newer, "nothing after the newest");
}

#[test]
fn edits_reach_every_session_and_history_and_only_the_author_may_edit() {
    let server = TestServer::start();
    let mut alice = server.admin_user("alice");
    let mut alice2 = server.login("alice");
    let mut bob = server.user("bob");
    let mut carol = server.user("carol");
    let (id, _) = bob.say("general", "teh quick fix").unwrap();

    bob.edit(id, "the quick fix").unwrap();
    for c in [&mut alice, &mut alice2, &mut carol] {
        let ev = wait_for(c, "message_edited", |e| {
            matches!(e, ServerMsg::MessageEdited { .. })
        });
        let ServerMsg::MessageEdited {
            id: got,
            room,
            from,
            body,
            ..
        } = ev
        else {
            unreachable!()
        };
        assert_eq!(
            (got, room.as_deref(), from.as_str(), body.as_str()),
            (id, Some("general"), "bob", "the quick fix")
        );
    }
    let m = by_id(&history(&mut carol, "general"), id);
    assert_eq!(m.body, "the quick fix");
    assert!(m.edited_at.is_some());
    // Found by the new text only.
    assert_eq!(search(&mut carol, "quick"), ["the quick fix"]);
    assert!(search(&mut carol, "teh").is_empty());
    // Nobody else may edit, not even an admin.
    assert_eq!(code(carol.edit(id, "mine now")), ErrorCode::Forbidden);
    assert_eq!(code(alice.edit(id, "moderated")), ErrorCode::Forbidden);
    assert_eq!(code(bob.edit(id, "")), ErrorCode::InvalidBody);
    assert_eq!(code(bob.edit(99_999, "x")), ErrorCode::NoSuchMessage);
    // Earlier text is not kept unless the server is told to.
    assert_eq!(
        sqlite(&server.db(), "SELECT count(*) FROM message_edits"),
        "0"
    );
}

#[test]
fn edits_after_the_window_are_refused_and_earlier_text_is_kept_when_enabled() {
    let server = TestServer::start_with(&["--edit-window-minutes", "0"]);
    let mut bob = server.user("bob");
    let (id, ts) = bob.say("general", "first take").unwrap();
    // The window is 0: once a millisecond has passed, it is over.
    let deadline = Instant::now() + WAIT;
    loop {
        match bob.edit(id, "second take") {
            Err(ClientError::Server {
                code: ErrorCode::TooLate,
                ..
            }) => break,
            Ok(()) => assert!(Instant::now() < deadline, "still editable at {ts}"),
            Err(e) => panic!("{e}"),
        }
    }
    // A server with a window keeps the earlier text when asked to.
    let server = TestServer::start_with(&["--keep-edit-history", "true"]);
    let mut bob = server.user("bob");
    let (id, _) = bob.say("general", "v1").unwrap();
    bob.edit(id, "v2").unwrap();
    bob.edit(id, "v3").unwrap();
    assert_eq!(
        sqlite(
            &server.db(),
            &format!("SELECT group_concat(body, ',') FROM message_edits WHERE message_id = {id}")
        ),
        "v1,v2"
    );
}

#[test]
fn deletion_by_the_author_or_an_admin_leaves_a_tombstone_and_an_audit_row() {
    let server = TestServer::start();
    let mut admin = server.admin_user("alice");
    let mut bob = server.user("bob");
    let mut bob2 = server.login("bob");
    let mut carol = server.user("carol");
    let (own, _) = bob.say("general", "oops, wrong room").unwrap();
    let (spam, _) = carol.say("general", "buy cheap watches").unwrap();

    assert_eq!(code(bob.delete_message(spam, "")), ErrorCode::Forbidden);
    bob.delete_message(own, "").unwrap();
    for c in [&mut bob2, &mut carol] {
        let ev = wait_for(
            c,
            "message_deleted",
            |e| matches!(e, ServerMsg::MessageDeleted { id, .. } if *id == own),
        );
        assert!(matches!(ev, ServerMsg::MessageDeleted { ref by, .. } if by == "bob"));
    }
    admin.delete_message(spam, "spam").unwrap();
    let ev = wait_for(
        &mut carol,
        "the admin's deletion",
        |e| matches!(e, ServerMsg::MessageDeleted { id, .. } if *id == spam),
    );
    assert!(matches!(ev, ServerMsg::MessageDeleted { ref by, .. } if by == "alice"));
    let audit = sqlite(
        &server.db(),
        "SELECT user || ' ' || detail FROM audit WHERE action = 'message_delete'",
    );
    assert_eq!(
        audit,
        format!("alice message {spam} by carol in #general: spam")
    );

    // History shows tombstones; deleting twice is harmless; a deleted
    // message cannot be edited, reacted to or replied to.
    let h = history(&mut carol, "general");
    for id in [own, spam] {
        let m = by_id(&h, id);
        assert!(m.deleted && m.body.is_empty(), "{m:?}");
    }
    bob.delete_message(own, "").unwrap();
    assert_eq!(code(bob.edit(own, "back")), ErrorCode::NoSuchMessage);
    assert_eq!(code(bob.react(own, "+1", true)), ErrorCode::NoSuchMessage);
    assert_eq!(
        code(bob.send_to(&Conversation::Room("general".into()), "re", Some(own))),
        ErrorCode::NoSuchMessage
    );
    // An admin cannot reach into a DM between others.
    let (dm, _) = bob.dm("carol", "between us").unwrap();
    assert_eq!(code(admin.delete_message(dm, "")), ErrorCode::NoSuchMessage);
}

#[test]
fn the_writer_indexes_stored_messages_in_bulk_without_a_search() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut last = 0;
    for i in 0..30 {
        last = alice.say("general", &format!("bulk {i} walrus")).unwrap().0;
    }
    // No search asks for it: the writer indexes once it is idle.
    let db = server.db();
    let through = || -> i64 {
        sqlite(&db, "SELECT indexed_through FROM search_index")
            .parse()
            .unwrap()
    };
    util::eventually(
        || format!("the index at {last}; it stays at {}", through()),
        || through() >= last,
    );
    assert_eq!(
        sqlite(
            &db,
            "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'walrus'"
        ),
        "30"
    );
}

#[test]
fn a_deleted_message_is_gone_from_search_the_index_and_the_database_file() {
    let mut server = TestServer::start();
    let mut alice = server.user("alice");
    let secret = "the launch code is zebra4471quux";
    let (id, _) = alice.say("general", secret).unwrap();
    let (kept, _) = alice.say("general", "zebra crossing ahead").unwrap();
    assert_eq!(search(&mut alice, "zebra4471quux"), [secret]);
    alice.delete_message(id, "").unwrap();
    assert!(search(&mut alice, "zebra4471quux").is_empty());
    assert_eq!(search(&mut alice, "zebra"), ["zebra crossing ahead"]);
    let db = server.db();
    assert_eq!(
        sqlite(
            &db,
            &format!("SELECT body = '' AND deleted_at > 0 FROM messages WHERE id = {id}")
        ),
        "1"
    );
    assert_eq!(
        sqlite(
            &db,
            "SELECT group_concat(rowid) FROM messages_fts WHERE messages_fts MATCH 'zebra'"
        ),
        kept.to_string(),
        "the index no longer lists it"
    );
    // After a clean shutdown (which checkpoints), the text is nowhere in
    // the files: secure_delete overwrote it.
    drop(alice);
    server.terminate(WAIT).expect("the server stops");
    for path in [db.clone(), db.with_extension("db-wal")] {
        if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} still holds the deleted text",
                path.display()
            );
        }
    }
}

#[test]
fn deleting_a_file_message_makes_the_file_undownloadable_and_removes_it() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("cat.png");
    std::fs::write(&png, PNG).unwrap();
    let (msg, _) = alice
        .upload(&Conversation::Room("general".into()), &png, &mut |_, _| {})
        .unwrap();
    let file: i64 = sqlite(&server.db(), "SELECT max(id) FROM files")
        .parse()
        .unwrap();
    bob.download(file, &dir.path().join("bob"), &mut |_, _| {})
        .unwrap();
    let stored = std::fs::read_dir(server.dir.path().join("files"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(stored > 0, "content is on disk");

    alice.delete_message(msg, "").unwrap();
    assert_eq!(
        code(bob.download(file, dir.path(), &mut |_, _| {})),
        ErrorCode::NoSuchFile
    );
    assert_eq!(sqlite(&server.db(), "SELECT count(*) FROM files"), "0");
    let mut left = Vec::new();
    for entry in walk(&server.dir.path().join("files")) {
        left.push(entry);
    }
    assert!(left.is_empty(), "content removed: {left:?}");
}

/// Every regular file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else if !p.to_string_lossy().contains("partial") {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn replies_quote_their_original_live_and_in_history() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    alice.create_room("other", "").unwrap();
    let (orig, _) = alice
        .say("general", &format!("shall we ship? {}", "x".repeat(200)))
        .unwrap();
    let (elsewhere, _) = alice.say("other", "not here").unwrap();

    let (reply, _) = bob
        .send_to(
            &Conversation::Room("general".into()),
            "yes, ship it",
            Some(orig),
        )
        .unwrap();
    let ev = wait_for(
        &mut alice,
        "the reply",
        |e| matches!(e, ServerMsg::Message(m) if m.id == reply),
    );
    let ServerMsg::Message(live) = ev else {
        unreachable!()
    };
    let quoted = live.reply_to.expect("the reply quotes its original");
    assert_eq!((quoted.id, quoted.from.as_str()), (orig, "alice"));
    assert!(quoted.excerpt.starts_with("shall we ship?"));
    assert_eq!(quoted.excerpt.chars().count(), 100, "the start only");
    assert_eq!(
        by_id(&history(&mut alice, "general"), reply).reply_to,
        Some(quoted)
    );

    // Only within the same conversation, and only to what exists.
    bob.join("other").unwrap();
    assert_eq!(
        code(bob.send_to(&Conversation::Room("general".into()), "x", Some(elsewhere))),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(bob.send_to(&Conversation::User("alice".into()), "x", Some(orig))),
        ErrorCode::BadRequest
    );
    let (dm, _) = alice.dm("bob", "ping me").unwrap();
    let (dm_reply, _) = bob
        .send_to(&Conversation::User("alice".into()), "pong", Some(dm))
        .unwrap();
    let (conv, _) = alice.dm_history("bob", None, 10).unwrap();
    assert_eq!(by_id(&conv, dm_reply).reply_to.unwrap().id, dm);

    // A deleted original leaves the reply, quoting nothing.
    alice.delete_message(orig, "").unwrap();
    let r = by_id(&history(&mut bob, "general"), reply)
        .reply_to
        .unwrap();
    assert!(r.deleted && r.excerpt.is_empty(), "{r:?}");
}

#[test]
fn reactions_are_counted_once_per_user_live_and_in_history() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut alice2 = server.login("alice");
    let mut bob = server.user("bob");
    let mut carol = server.user("carol");
    let (id, _) = bob.say("general", "lunch?").unwrap();

    alice.react(id, "👍", true).unwrap();
    for c in [&mut alice2, &mut bob, &mut carol] {
        let ev = wait_for(c, "reaction", |e| matches!(e, ServerMsg::Reaction { .. }));
        assert_eq!(
            ev,
            ServerMsg::Reaction {
                id,
                room: Some("general".into()),
                to: None,
                from: "bob".into(),
                emoji: "👍".into(),
                user: "alice".into(),
                added: true,
                count: 1,
            }
        );
    }
    alice.react(id, "👍", true).unwrap(); // once per user
    carol.react(id, "👍", true).unwrap();
    carol.react(id, "🍕", true).unwrap();
    let ev = wait_for(
        &mut bob,
        "carol's 🍕",
        |e| matches!(e, ServerMsg::Reaction { emoji, .. } if emoji == "🍕"),
    );
    assert!(matches!(ev, ServerMsg::Reaction { count: 1, .. }));
    let mine = by_id(&history(&mut alice, "general"), id).reactions;
    assert_eq!(
        mine,
        [
            ReactionCount {
                emoji: "👍".into(),
                count: 2,
                me: true
            },
            ReactionCount {
                emoji: "🍕".into(),
                count: 1,
                me: false
            },
        ]
    );
    let bobs = by_id(&history(&mut bob, "general"), id).reactions;
    assert!(bobs.iter().all(|r| !r.me));

    alice.react(id, "👍", false).unwrap();
    let ev = wait_for(&mut bob, "alice's unreact", |e| {
        matches!(e, ServerMsg::Reaction { added: false, .. })
    });
    assert!(matches!(ev, ServerMsg::Reaction { count: 1, ref user, .. } if user == "alice"));
    assert_eq!(
        by_id(&history(&mut carol, "general"), id).reactions[0].count,
        1
    );

    // Bounded: 20 different reactions per message; sane reactions only.
    for i in 0..18 {
        bob.react(id, &format!("r{i}"), true).unwrap();
    }
    assert_eq!(
        code(bob.react(id, "one-more", true)),
        ErrorCode::TooManyReactions
    );
    bob.react(id, "🍕", true).unwrap(); // an existing one is still fine
    for bad in ["", "two words", "\u{202e}x", &"x".repeat(33)] {
        assert_eq!(
            code(bob.react(id, bad, true)),
            ErrorCode::InvalidReaction,
            "{bad:?}"
        );
    }
    // A non-member cannot react in a room it does not see.
    alice.create_room("quiet", "").unwrap();
    let (q, _) = alice.say("quiet", "hello").unwrap();
    assert_eq!(code(bob.react(q, "+1", true)), ErrorCode::NoSuchMessage);
}

#[test]
fn a_user_who_was_offline_sees_the_current_state() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let bob = server.user("bob");
    drop(bob);
    // Until the server has seen bob go, a DM could still be delivered to
    // his closing session and not count as offline (a race under load).
    util::eventually(
        || "bob offline".into(),
        || {
            !alice
                .who("general")
                .unwrap()
                .iter()
                .any(|m| m.user == "bob" && m.online)
        },
    );
    let (a, _) = alice.say("general", "draft one").unwrap();
    let (b, _) = alice.say("general", "to be withdrawn").unwrap();
    alice.edit(a, "final one").unwrap();
    alice.delete_message(b, "").unwrap();
    alice.react(a, "✅", true).unwrap();
    let (dm, _) = alice.dm("bob", "offline note").unwrap();
    let (gone, _) = alice.dm("bob", "never mind").unwrap();
    alice.delete_message(gone, "").unwrap();
    alice.edit(dm, "offline note, edited").unwrap();

    let mut bob = server.client();
    let logged = bob.login("bob", util::PW).unwrap();
    let general = logged
        .unread
        .iter()
        .find(|u| u.room.as_deref() == Some("general"))
        .unwrap();
    assert_eq!(general.count, 1, "the deleted message is not unread");
    let mut replay = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while replay.len() < logged.offline_dms as usize && Instant::now() < deadline {
        if let Some(ServerMsg::Message(m)) = bob.next_event(Duration::from_millis(500)).unwrap() {
            replay.push(m.body);
        }
    }
    assert_eq!(
        replay,
        ["offline note, edited"],
        "the deleted DM is not replayed"
    );
    let h = history(&mut bob, "general");
    assert_eq!(by_id(&h, a).body, "final one");
    assert_eq!(by_id(&h, a).reactions[0].emoji, "✅");
    assert!(by_id(&h, b).deleted);
}

#[test]
fn a_topic_change_is_a_history_message_that_cannot_be_edited() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let reply = alice
        .request(confab::protocol::Request::Topic {
            room: "general".into(),
            topic: "ship on friday".into(),
        })
        .unwrap();
    let ServerMsg::Ack { id, .. } = reply else {
        panic!("{reply:?}")
    };
    let ev = wait_for(
        &mut bob,
        "the topic message",
        |e| matches!(e, ServerMsg::Message(m) if m.id == id),
    );
    let ServerMsg::Message(m) = ev else {
        unreachable!()
    };
    assert_eq!(m.kind, confab::protocol::MessageKind::Topic);
    assert_eq!(
        (m.from.as_str(), m.body.as_str()),
        ("alice", "ship on friday")
    );
    assert_eq!(
        code(alice.edit(id, "ship on monday")),
        ErrorCode::BadRequest
    );
    assert_eq!(search(&mut bob, "friday"), ["ship on friday"]);
}
