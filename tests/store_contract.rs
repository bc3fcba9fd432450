//! The storage contract, checked the same way for every backend.
//!
//! Each case is written once, against `&dyn Store`, and the `contract!`
//! macro runs all of them for one backend (GreptimeDB's habit:
//! `test_object_crud(store)` for every object store): SQLite, and
//! PostgreSQL in a throwaway cluster the tests start (`util::pg`). A new
//! backend adds one constructor and one `contract!` line and is checked by
//! the same cases on day one.

mod util;

use confab::protocol::Unread;
use confab::search::Query;
use confab::store::{
    self, Destination, MessageRecord, NewFile, NewMessage, Page, Reacted, RoomId, SearchSpec,
    SharedStore, Store, StoreError, UserId, now_ms,
};

/// A backend under test and whatever must live as long as it.
struct Backend {
    store: SharedStore,
    _keep: Box<dyn std::any::Any>,
}

/// A fresh SQLite database in a temporary directory.
fn sqlite() -> Backend {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = store::open(&dir.path().join("contract.db"), 4).expect("opening SQLite");
    Backend {
        store,
        _keep: Box::new(dir),
    }
}

/// A fresh database in the test binary's throwaway PostgreSQL cluster.
fn postgres() -> Backend {
    let url = util::pg::database();
    let store = store::open(std::path::Path::new(&url), 4).expect("opening PostgreSQL");
    Backend {
        store,
        _keep: Box::new(()),
    }
}

/// Runs every contract case against the backend made by `$make`.
macro_rules! contract {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            fn make() -> Backend {
                $make
            }

            #[test]
            fn accounts() {
                super::accounts(&*make().store);
            }
            #[test]
            fn rooms_and_membership() {
                super::rooms_and_membership(&*make().store);
            }
            #[test]
            fn messages_and_history_paging() {
                super::messages_and_history_paging(&*make().store);
            }
            #[test]
            fn direct_messages_and_cursors() {
                super::direct_messages_and_cursors(&*make().store);
            }
            #[test]
            fn notices_stay_notices() {
                super::notices_stay_notices(&*make().store);
            }
            #[test]
            fn conversations_by_time() {
                super::conversations_by_time(&*make().store);
            }
            #[test]
            fn files() {
                super::files(&*make().store);
            }
            #[test]
            fn read_state() {
                super::read_state(&*make().store);
            }
            #[test]
            fn read_markers_as_times() {
                super::read_markers_as_times(&*make().store);
            }
            #[test]
            fn resume_tokens() {
                super::resume_tokens(&*make().store);
            }
            #[test]
            fn bans() {
                super::bans(&*make().store);
            }
            #[test]
            fn mutes() {
                super::mutes(&*make().store);
            }
            #[test]
            fn deleting_a_room() {
                super::deleting_a_room(&*make().store);
            }
            #[test]
            fn audit_and_secret() {
                super::audit_and_secret(&*make().store);
            }
            #[test]
            fn edits_deletions_replies_and_reactions() {
                super::edits_deletions_replies_and_reactions(&*make().store);
            }
            #[test]
            fn search() {
                super::search(&*make().store);
            }
        }
    };
}

contract!(sqlite_backend, sqlite());
contract!(postgres_backend, postgres());

fn general(s: &dyn Store) -> RoomId {
    s.load_rooms()
        .unwrap()
        .iter()
        .find(|r| r.name == "general")
        .expect("general exists in a new database")
        .id
}

fn say(s: &dyn Store, from: UserId, to: Destination, body: &str) -> i64 {
    s.insert_messages(&[NewMessage {
        sender: from,
        to,
        body: body.into(),
        ts: now_ms(),
        file_id: None,
        reply_to: None,
        kind: Default::default(),
        notice: false,
    }])
    .unwrap()[0]
}

/// A message of `from` at time `ts`.
fn say_at(s: &dyn Store, from: UserId, to: Destination, body: &str, ts: i64) -> i64 {
    s.insert_messages(&[NewMessage {
        sender: from,
        to,
        body: body.into(),
        ts,
        file_id: None,
        reply_to: None,
        kind: Default::default(),
        notice: false,
    }])
    .unwrap()[0]
}

/// A notice (IRC's NOTICE) is stored as one and read back as one.
fn notices_stay_notices(s: &dyn Store) {
    let alice = s.create_user("alice", "h").unwrap();
    let room = general(s);
    let ids = s
        .insert_messages(&[
            NewMessage {
                sender: alice,
                to: Destination::Room(room),
                body: "a notice".into(),
                ts: now_ms(),
                file_id: None,
                reply_to: None,
                kind: Default::default(),
                notice: true,
            },
            NewMessage {
                sender: alice,
                to: Destination::Room(room),
                body: "chat".into(),
                ts: now_ms(),
                file_id: None,
                reply_to: None,
                kind: Default::default(),
                notice: false,
            },
        ])
        .unwrap();
    let (page, _) = s.room_history(room, Page::Before(None), 10, alice).unwrap();
    let flags: Vec<(i64, bool)> = page.iter().map(|m| (m.id, m.notice)).collect();
    assert_eq!(flags, [(ids[0], true), (ids[1], false)]);
}

/// Rooms and direct conversations by the time of their newest message in
/// a span (IRC's CHATHISTORY TARGETS).
fn conversations_by_time(s: &dyn Store) {
    let alice = s.create_user("alice", "h").unwrap();
    let bob = s.create_user("bob", "h").unwrap();
    let carol = s.create_user("carol", "h").unwrap();
    let dave = s.create_user("dave", "h").unwrap();
    let rust = s.create_room("rust", "", bob).unwrap();
    s.add_member(rust, alice).unwrap();
    let art = s.create_room("art", "", bob).unwrap(); // alice is not in it
    say_at(s, bob, Destination::Room(rust), "r1", 1_000);
    say_at(s, alice, Destination::User(bob), "to bob", 2_000); // only sent
    say_at(s, carol, Destination::User(alice), "from carol", 3_000); // only received
    say_at(s, bob, Destination::Room(rust), "r2", 4_000);
    say_at(s, bob, Destination::Room(art), "not alice's", 4_500);
    say_at(s, dave, Destination::User(bob), "not alice's either", 4_600);
    say_at(s, bob, Destination::User(alice), "reply", 5_000);
    let got = |after, before, limit| -> Vec<(String, i64)> {
        s.conversations_between(alice, after, before, limit)
            .unwrap()
            .into_iter()
            .map(|c| {
                (
                    c.room.map_or_else(|| c.with.unwrap(), |r| format!("#{r}")),
                    c.newest,
                )
            })
            .collect()
    };
    let pair = |n: &str, t: i64| (n.to_owned(), t);
    // Each with its newest message in the span, oldest first; #general
    // (no messages) and #art (not a member) are not there.
    assert_eq!(
        got(0, 10_000, 10),
        [
            pair("carol", 3_000),
            pair("#rust", 4_000),
            pair("bob", 5_000)
        ]
    );
    assert_eq!(
        got(0, 10_000, 2),
        [pair("carol", 3_000), pair("#rust", 4_000)]
    );
    // Both ends left out; a conversation whose newest message is later
    // than the span is not in it.
    assert_eq!(
        got(1_000, 5_000, 10),
        [pair("carol", 3_000), pair("#rust", 4_000)]
    );
    assert_eq!(got(1_000, 3_500, 10), [pair("carol", 3_000)]);
    assert_eq!(got(3_000, 4_000, 10), []);
}

/// A 1,234-byte PNG file record.
fn png(uploader: UserId, name: &str, sha256: &str, to: Destination) -> NewFile {
    NewFile {
        sha256: sha256.into(),
        name: name.into(),
        mime: "image/png".into(),
        size: 1234,
        uploader,
        to,
    }
}

fn accounts(s: &dyn Store) {
    let alice = s.create_user("alice", "hash-1").unwrap();
    assert!(matches!(
        s.create_user("ALICE", "x"),
        Err(StoreError::UserExists)
    ));
    let found = s.find_user("Alice").unwrap().expect("found ignoring case");
    assert_eq!((found.id, found.name.as_str()), (alice, "alice"));
    assert_eq!(found.password, "hash-1");
    assert!(s.find_user("nobody").unwrap().is_none());

    s.set_password(alice, "hash-2").unwrap();
    assert_eq!(s.find_user("alice").unwrap().unwrap().password, "hash-2");

    assert!(!s.is_admin(alice).unwrap());
    assert!(s.set_admin("alice", true).unwrap());
    assert!(s.is_admin(alice).unwrap());
    assert!(s.set_admin("alice", false).unwrap());
    assert!(!s.is_admin(alice).unwrap());
    assert!(!s.set_admin("nobody", true).unwrap(), "no such user");

    // A new account starts in general, and in nothing else.
    let rooms = s.load_rooms().unwrap();
    let general = rooms.iter().find(|r| r.name == "general").unwrap();
    assert_eq!(general.members, vec![(alice, "alice".to_string())]);
    assert_eq!(s.room_count(alice).unwrap(), 1);
}

fn rooms_and_membership(s: &dyn Store) {
    let alice = s.create_user("alice", "h").unwrap();
    let bob = s.create_user("bob", "h").unwrap();
    let rust = s.create_room("rust", "crabs", alice).unwrap();
    assert!(matches!(
        s.create_room("RUST", "", bob),
        Err(StoreError::RoomExists)
    ));
    assert!(s.is_member(rust, alice).unwrap(), "the creator is a member");
    assert!(!s.is_member(rust, bob).unwrap());

    s.add_member(rust, bob).unwrap();
    s.add_member(rust, bob).unwrap(); // a second join is a no-op
    assert!(s.is_member(rust, bob).unwrap());
    assert_eq!(s.room_count(bob).unwrap(), 2);

    s.set_topic(rust, "more crabs").unwrap();
    let rooms = s.load_rooms().unwrap();
    let r = rooms.iter().find(|r| r.id == rust).unwrap();
    assert_eq!((r.name.as_str(), r.topic.as_str()), ("rust", "more crabs"));
    let mut members = r.members.clone();
    members.sort();
    assert_eq!(
        members,
        vec![(alice, "alice".to_string()), (bob, "bob".to_string())]
    );

    // Rooms are listed in the order the user joined them (times are in
    // ms: the pauses keep the joins apart), not by name; joining again
    // keeps the first place.
    let art = s.create_room("art", "", alice).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    s.add_member(art, bob).unwrap();
    s.add_member(rust, bob).unwrap();
    assert_eq!(
        s.rooms_in_join_order(bob).unwrap(),
        ["general", "rust", "art"]
    );
    s.remove_member(art, bob).unwrap();

    s.remove_member(rust, bob).unwrap();
    assert!(!s.is_member(rust, bob).unwrap());
    assert_eq!(s.room_count(bob).unwrap(), 1);
    assert_eq!(s.rooms_in_join_order(bob).unwrap(), ["general"]);
}

fn messages_and_history_paging(s: &dyn Store) {
    let alice = s.create_user("alice", "h").unwrap();
    let g = general(s);
    assert_eq!(
        s.room_history(g, Page::Before(None), 10, 0).unwrap(),
        (Vec::new(), false)
    );
    let batch: Vec<NewMessage> = (0..7)
        .map(|i| NewMessage {
            sender: alice,
            to: Destination::Room(g),
            body: format!("m{i}"),
            ts: 1000 + i,
            file_id: None,
            reply_to: None,
            kind: Default::default(),
            notice: false,
        })
        .collect();
    let ids = s.insert_messages(&batch).unwrap();
    assert_eq!(ids.len(), 7);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids grow in input order"
    );

    let (newest, more) = s.room_history(g, Page::Before(None), 3, 0).unwrap();
    assert!(more);
    let bodies: Vec<&str> = newest.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["m4", "m5", "m6"], "the newest page, oldest first");
    let m = &newest[0];
    assert_eq!(m.room.as_deref(), Some("general"));
    assert_eq!(
        (m.from.as_str(), m.ts, m.to.as_deref()),
        ("alice", 1004, None)
    );

    let (older, more) = s
        .room_history(g, Page::Before(Some(newest[0].id)), 3, 0)
        .unwrap();
    assert!(more);
    assert_eq!(older.last().unwrap().body, "m3");
    let (oldest, more) = s
        .room_history(g, Page::Before(Some(older[0].id)), 3, 0)
        .unwrap();
    assert!(!more, "nothing before the first message");
    let bodies: Vec<&str> = oldest.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["m0"]);

    // An empty batch stores nothing.
    assert!(s.insert_messages(&[]).unwrap().is_empty());
}

fn direct_messages_and_cursors(s: &dyn Store) {
    let alice = s.create_user("alice", "h").unwrap();
    let bob = s.create_user("bob", "h").unwrap();
    let carol = s.create_user("carol", "h").unwrap();
    let d1 = say(s, alice, Destination::User(bob), "one");
    let d2 = say(s, bob, Destination::User(alice), "two");
    let d3 = say(s, alice, Destination::User(bob), "three");
    say(
        s,
        carol,
        Destination::User(bob),
        "not between alice and bob",
    );

    let waiting = s.undelivered_dms(bob, 10).unwrap();
    let bodies: Vec<&str> = waiting.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["one", "three", "not between alice and bob"]);
    assert_eq!(waiting[0].to.as_deref(), Some("bob"));
    assert_eq!(waiting[0].room, None);
    assert_eq!(s.undelivered_dms(bob, 1).unwrap().len(), 1, "limit");

    s.advance_dm_cursor(bob, d3).unwrap();
    s.advance_dm_cursor(bob, d1).unwrap(); // never moves backwards
    let waiting = s.undelivered_dms(bob, 10).unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].from, "carol");

    let (conv, more) = s.dm_history(alice, bob, Page::Before(None), 10).unwrap();
    assert!(!more);
    let ids: Vec<i64> = conv.iter().map(|m| m.id).collect();
    assert_eq!(ids, [d1, d2, d3], "both directions, oldest first");
    let (same, _) = s.dm_history(bob, alice, Page::Before(None), 10).unwrap();
    assert_eq!(same, conv, "the same conversation from either side");
    let (page, more) = s.dm_history(alice, bob, Page::Before(Some(d3)), 1).unwrap();
    assert!(more);
    assert_eq!(page[0].id, d2);
}

fn files(s: &dyn Store) {
    let alice = s.create_user("alice", "h").unwrap();
    let bob = s.create_user("bob", "h").unwrap();
    let g = general(s);
    let file = |name: &str, to| png(alice, name, &format!("{:0>64}", name.len()), to);
    let f1 = s.insert_file(&file("a.png", Destination::Room(g))).unwrap();
    let f2 = s
        .insert_file(&file("bb.png", Destination::Room(g)))
        .unwrap();
    let f3 = s
        .insert_file(&file("ccc.png", Destination::User(bob)))
        .unwrap();

    let rec = s.find_file(f3).unwrap().expect("recorded");
    assert_eq!(rec.info.name, "ccc.png");
    assert_eq!((rec.info.size, rec.info.mime.as_str()), (1234, "image/png"));
    assert_eq!(rec.uploader, alice);
    assert!(matches!(rec.to, Destination::User(u) if u == bob));
    assert!(matches!(s.find_file(f1).unwrap().unwrap().to, Destination::Room(r) if r == g));
    assert!(s.find_file(f3 + 100).unwrap().is_none());

    let in_room: Vec<i64> = s
        .room_files(g, 10)
        .unwrap()
        .iter()
        .map(|f| f.file.id)
        .collect();
    assert_eq!(in_room, [f2, f1], "newest first");
    assert_eq!(s.room_files(g, 1).unwrap().len(), 1, "limit");
    let between = s.dm_files(bob, alice, 10).unwrap();
    assert_eq!(between.len(), 1);
    assert_eq!(
        (between[0].file.id, between[0].from.as_str()),
        (f3, "alice")
    );

    // A message announcing a file carries it in history.
    s.insert_messages(&[NewMessage {
        sender: alice,
        to: Destination::Room(g),
        body: "shared a.png".into(),
        ts: now_ms(),
        file_id: Some(f1),
        reply_to: None,
        kind: Default::default(),
        notice: false,
    }])
    .unwrap();
    let (history, _) = s.room_history(g, Page::Before(None), 1, 0).unwrap();
    assert_eq!(history[0].file.as_ref().map(|f| f.id), Some(f1));
}

fn unread_of(s: &dyn Store, user: UserId, name: &str) -> Vec<Unread> {
    s.unread(user, name).unwrap()
}

fn read_state(s: &dyn Store) {
    let alice = s.create_user("alice", "h").unwrap();
    let g = general(s);
    say(s, alice, Destination::Room(g), "before bob existed");
    // A newcomer owes nothing of general's past.
    let bob = s.create_user("bob", "h").unwrap();
    assert!(unread_of(s, bob, "bob").is_empty());

    let m1 = say(s, alice, Destination::Room(g), "hello everyone");
    let m2 = say(s, alice, Destination::Room(g), "bob: are you there?");
    say(
        s,
        bob,
        Destination::Room(g),
        "my own message is never unread",
    );
    let unread = unread_of(s, bob, "bob");
    assert_eq!(unread.len(), 1);
    let u = &unread[0];
    assert_eq!(u.room.as_deref(), Some("general"));
    assert_eq!((u.count, u.mentions), (2, 1));
    assert!(u.newest > m2);

    s.mark_room_read(bob, g, m2).unwrap();
    s.mark_room_read(bob, g, m1).unwrap(); // never moves backwards
    assert!(unread_of(s, bob, "bob").is_empty());

    // Joining a room marks its history read.
    let rust = s.create_room("rust", "", alice).unwrap();
    say(s, alice, Destination::Room(rust), "old news");
    s.add_member(rust, bob).unwrap();
    s.mark_room_read_to_latest(bob, rust).unwrap();
    assert!(unread_of(s, bob, "bob").is_empty());

    let d1 = say(s, alice, Destination::User(bob), "psst");
    let d2 = say(s, alice, Destination::User(bob), "psst again");
    let unread = unread_of(s, bob, "bob");
    assert_eq!(unread.len(), 1);
    assert_eq!(unread[0].with.as_deref(), Some("alice"));
    assert_eq!((unread[0].count, unread[0].newest), (2, d2));
    s.mark_dm_read(bob, alice, d2).unwrap();
    s.mark_dm_read(bob, alice, d1).unwrap();
    assert!(unread_of(s, bob, "bob").is_empty());
}

/// IRC's read markers are times: the message at or before a time, and the
/// time of the message read up to.
fn read_markers_as_times(s: &dyn Store) {
    let alice = s.create_user("alice", "h").unwrap();
    let bob = s.create_user("bob", "h").unwrap();
    let g = general(s);
    let at = |from: UserId, to: Destination, ts: i64| {
        s.insert_messages(&[NewMessage {
            sender: from,
            to,
            body: format!("at {ts}"),
            ts,
            file_id: None,
            reply_to: None,
            kind: Default::default(),
            notice: false,
        }])
        .unwrap()[0]
    };
    let m1 = at(alice, Destination::Room(g), 1_000);
    let m2 = at(alice, Destination::Room(g), 2_000);
    let m3 = at(bob, Destination::Room(g), 3_000);
    let room = Destination::Room(g);
    assert_eq!(s.message_at_or_before(bob, room, 999).unwrap(), None);
    assert_eq!(s.message_at_or_before(bob, room, 1_000).unwrap(), Some(m1));
    assert_eq!(s.message_at_or_before(bob, room, 2_500).unwrap(), Some(m2));
    assert_eq!(s.message_at_or_before(bob, room, 9_000).unwrap(), Some(m3));
    assert_eq!(s.read_marker_time(bob, room).unwrap(), None);
    s.mark_room_read(bob, g, m2).unwrap();
    assert_eq!(s.read_marker_time(bob, room).unwrap(), Some(2_000));

    // A direct conversation, both ways, and nobody else's.
    let carol = s.create_user("carol", "h").unwrap();
    let d1 = at(alice, Destination::User(bob), 1_500);
    let d2 = at(bob, Destination::User(alice), 2_500);
    at(carol, Destination::User(bob), 2_700);
    let d3 = at(alice, Destination::User(bob), 3_500);
    let with_alice = Destination::User(alice);
    assert_eq!(
        s.message_at_or_before(bob, with_alice, 1_400).unwrap(),
        None
    );
    assert_eq!(
        s.message_at_or_before(bob, with_alice, 1_600).unwrap(),
        Some(d1)
    );
    assert_eq!(
        s.message_at_or_before(bob, with_alice, 3_000).unwrap(),
        Some(d2)
    );
    assert_eq!(
        s.message_at_or_before(alice, Destination::User(bob), 4_000)
            .unwrap(),
        Some(d3)
    );
    assert_eq!(s.read_marker_time(bob, with_alice).unwrap(), None);
    s.mark_dm_read(bob, alice, d2).unwrap();
    assert_eq!(s.read_marker_time(bob, with_alice).unwrap(), Some(2_500));
}

fn resume_tokens(s: &dyn Store) {
    let alice = s.create_user("alice", "h").unwrap();
    let far = now_ms() + 3_600_000;
    s.add_token(alice, "digest-1", far).unwrap();
    s.add_token(alice, "digest-2", far).unwrap();
    s.add_token(alice, "expired", now_ms() - 1).unwrap();
    assert_eq!(s.token_user("digest-1").unwrap().unwrap().id, alice);
    assert!(s.token_user("expired").unwrap().is_none());
    assert!(s.token_user("unknown").unwrap().is_none());

    s.revoke_token("digest-1").unwrap();
    assert!(s.token_user("digest-1").unwrap().is_none());
    assert!(s.token_user("digest-2").unwrap().is_some());
    assert_eq!(
        s.revoke_tokens(alice).unwrap(),
        2,
        "digest-2 and the expired one"
    );
    assert!(s.token_user("digest-2").unwrap().is_none());
}

fn bans(s: &dyn Store) {
    let alice = s.create_user("alice", "h").unwrap();
    let bob = s.create_user("bob", "h").unwrap();
    let carol = s.create_user("carol", "h").unwrap();
    let before = now_ms();
    assert!(s.ban_of(bob).unwrap().is_none());
    s.ban(bob, "spam", "alice", None).unwrap();
    s.ban(carol, "a while ago", "alice", Some(now_ms() - 1))
        .unwrap();

    let ban = s.ban_of(bob).unwrap().expect("in force");
    assert_eq!(
        (
            ban.user.as_str(),
            ban.reason.as_str(),
            ban.by.as_str(),
            ban.until
        ),
        ("bob", "spam", "alice", None)
    );
    assert!(s.ban_of(carol).unwrap().is_none(), "expired");
    let users: Vec<String> = s.bans().unwrap().into_iter().map(|b| b.user).collect();
    assert_eq!(users, ["bob"]);
    let new = s.bans_created_since(before).unwrap();
    assert_eq!(new.len(), 1);
    assert_eq!((new[0].user_id, new[0].by.as_str()), (bob, "alice"));
    assert!(new[0].created_at >= before);
    assert!(s.bans_created_since(now_ms() + 1000).unwrap().is_empty());

    // A new ban replaces the old one.
    let until = now_ms() + 60_000;
    s.ban(bob, "still spam", "alice", Some(until)).unwrap();
    assert_eq!(s.ban_of(bob).unwrap().unwrap().until, Some(until));
    assert!(s.unban(bob).unwrap());
    assert!(!s.unban(bob).unwrap(), "nothing left to lift");
    assert!(s.ban_of(bob).unwrap().is_none());
    assert!(s.ban_of(alice).unwrap().is_none());
}

fn mutes(s: &dyn Store) {
    let alice = s.create_user("alice", "h").unwrap();
    let bob = s.create_user("bob", "h").unwrap();
    let g = general(s);
    assert!(!s.is_muted(g, bob).unwrap());
    s.mute(g, bob, "alice", None).unwrap();
    assert!(s.is_muted(g, bob).unwrap());
    assert!(!s.is_muted(g, alice).unwrap());
    assert!(s.unmute(g, bob).unwrap());
    assert!(!s.unmute(g, bob).unwrap());
    assert!(!s.is_muted(g, bob).unwrap());
    s.mute(g, bob, "alice", Some(now_ms() - 1)).unwrap();
    assert!(!s.is_muted(g, bob).unwrap(), "expired");
    let until = now_ms() + 60_000;
    s.mute(g, bob, "alice", Some(until)).unwrap();
    assert!(s.is_muted(g, bob).unwrap());
    s.mute(g, alice, "bob", Some(now_ms() - 1)).unwrap();
    assert_eq!(
        s.mutes_in_force().unwrap(),
        vec![(g, bob, Some(until))],
        "the expired one is not in force"
    );
}

fn deleting_a_room(s: &dyn Store) {
    let alice = s.create_user("alice", "h").unwrap();
    let bob = s.create_user("bob", "h").unwrap();
    assert_eq!(s.rooms_created_by(alice).unwrap(), 0);
    let rust = s.create_room("rust", "", alice).unwrap();
    let go = s.create_room("go", "", alice).unwrap();
    assert_eq!(s.rooms_created_by(alice).unwrap(), 2);
    assert_eq!(s.room_creator(rust).unwrap(), Some(alice));
    assert_eq!(s.room_creator(general(s)).unwrap(), None, "built in");
    s.add_member(rust, bob).unwrap();
    s.mute(rust, bob, "alice", None).unwrap();
    s.mark_room_read(bob, rust, 1).unwrap();
    let f = |name: &str, sha: &str, room| png(alice, name, sha, Destination::Room(room));
    let only_here = format!("{:a>64}", "");
    let shared = format!("{:b>64}", "");
    let file = s.insert_file(&f("a.png", &only_here, rust)).unwrap();
    s.insert_file(&f("b.png", &shared, rust)).unwrap();
    s.insert_file(&f("b-too.png", &shared, go)).unwrap();
    s.insert_messages(&[NewMessage {
        sender: bob,
        to: Destination::Room(rust),
        body: "shared a.png".into(),
        ts: now_ms(),
        file_id: Some(file),
        reply_to: None,
        kind: Default::default(),
        notice: false,
    }])
    .unwrap();
    let kept = say(s, bob, Destination::Room(go), "elsewhere");

    let unused = s.delete_room(rust).unwrap();
    assert_eq!(
        unused,
        vec![only_here],
        "content still used elsewhere stays"
    );
    assert!(s.load_rooms().unwrap().iter().all(|r| r.id != rust));
    assert!(!s.is_member(rust, bob).unwrap());
    assert!(!s.is_muted(rust, bob).unwrap());
    assert_eq!(
        s.room_history(rust, Page::Before(None), 10, 0).unwrap().0,
        Vec::new()
    );
    assert!(s.find_file(file).unwrap().is_none());
    assert_eq!(s.room_count(bob).unwrap(), 1, "general only");
    assert_eq!(s.rooms_created_by(alice).unwrap(), 1);
    assert!(
        unread_of(s, bob, "bob")
            .iter()
            .all(|u| u.room.as_deref() != Some("rust"))
    );
    assert_eq!(
        s.room_history(go, Page::Before(None), 10, 0).unwrap().0[0].id,
        kept
    );
}

fn audit_and_secret(s: &dyn Store) {
    s.audit(Some("alice"), Some("127.0.0.1"), "login", "password")
        .unwrap();
    s.audit(None, None, "grant", "").unwrap();
    let log = s.audit_log(10).unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0].action.as_str(), log[0].user.as_deref()),
        ("grant", None)
    );
    assert_eq!(log[1].user.as_deref(), Some("alice"));
    assert_eq!(log[1].ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(log[1].detail, "password");
    assert_eq!(s.audit_log(1).unwrap().len(), 1);

    let secret = s.server_secret().unwrap();
    assert_eq!(secret.len(), 32);
    assert_eq!(s.server_secret().unwrap(), secret, "made once, then kept");
    s.checkpoint().unwrap();
}

fn edits_deletions_replies_and_reactions(s: &dyn Store) {
    let alice = s.create_user("alice", "h").unwrap();
    let bob = s.create_user("bob", "h").unwrap();
    let g = general(s);
    let id = say(s, alice, Destination::Room(g), "frist");
    let rec = s.message(id).unwrap().unwrap();
    assert_eq!(
        rec,
        MessageRecord {
            id,
            to: Destination::Room(g),
            sender: alice,
            sender_name: "alice".into(),
            to_name: "general".into(),
            body: "frist".into(),
            created_at: rec.created_at,
            deleted: false,
            kind: confab::protocol::MessageKind::Chat,
        }
    );
    assert_eq!(s.message(id + 100).unwrap(), None);

    // Edits: the new text everywhere; earlier text only when kept.
    s.edit_message(id, "first", 10, false).unwrap();
    s.edit_message(id, "first!", 20, true).unwrap();
    let (page, _) = s.room_history(g, Page::Before(None), 10, bob).unwrap();
    assert_eq!(
        (page[0].body.as_str(), page[0].edited_at),
        ("first!", Some(20))
    );
    assert_eq!(s.edit_history(id).unwrap(), vec![(20, "first".to_owned())]);

    // Replies carry the start of the original.
    let reply = s
        .insert_messages(&[NewMessage {
            sender: bob,
            to: Destination::Room(g),
            body: "agreed".into(),
            ts: now_ms(),
            file_id: None,
            reply_to: Some(id),
            kind: Default::default(),
            notice: false,
        }])
        .unwrap()[0];
    let (page, _) = s.room_history(g, Page::Before(None), 10, bob).unwrap();
    let r = page[1].reply_to.clone().unwrap();
    assert_eq!(
        (r.id, r.from.as_str(), r.excerpt.as_str(), r.deleted),
        (id, "alice", "first!", false)
    );
    assert_eq!(page[1].id, reply);

    // Reactions: once per user, counted, the viewer's marked, bounded.
    assert_eq!(s.react(id, bob, "+1", 2).unwrap(), Reacted::Added(1));
    assert_eq!(s.react(id, bob, "+1", 2).unwrap(), Reacted::Already(1));
    assert_eq!(s.react(id, alice, "+1", 2).unwrap(), Reacted::Added(2));
    assert_eq!(s.react(id, alice, "ok", 2).unwrap(), Reacted::Added(1));
    assert_eq!(s.react(id, alice, "third", 2).unwrap(), Reacted::Full);
    let (page, _) = s.room_history(g, Page::Before(None), 10, bob).unwrap();
    let seen: Vec<(String, u32, bool)> = page[0]
        .reactions
        .iter()
        .map(|r| (r.emoji.clone(), r.count, r.me))
        .collect();
    assert_eq!(seen, vec![("+1".into(), 2, true), ("ok".into(), 1, false)]);
    assert_eq!(s.unreact(id, bob, "+1").unwrap(), Some(1));
    assert_eq!(s.unreact(id, bob, "+1").unwrap(), None);

    // Deletion: a tombstone without text, reactions or earlier versions;
    // not unread; the reply now quotes nothing.
    assert_eq!(s.delete_message(id, 30).unwrap(), None);
    let rec = s.message(id).unwrap().unwrap();
    assert!(rec.deleted && rec.body.is_empty());
    assert_eq!(s.edit_history(id).unwrap(), Vec::new());
    let (page, _) = s.room_history(g, Page::Before(None), 10, bob).unwrap();
    assert!(page[0].deleted && page[0].body.is_empty() && page[0].reactions.is_empty());
    let r = page[1].reply_to.clone().unwrap();
    assert!(r.deleted && r.excerpt.is_empty());
    // (alice's message was bob's only unread one; his own reply is not.)
    assert_eq!(
        unread_of(s, bob, "bob"),
        Vec::new(),
        "a deleted message is not unread"
    );

    // A file message's record goes with it; its content is reported unused.
    let f = s
        .insert_file(&png(alice, "a.png", "ab12", Destination::Room(g)))
        .unwrap();
    let announce = s
        .insert_messages(&[NewMessage {
            sender: alice,
            to: Destination::Room(g),
            body: "a.png".into(),
            ts: now_ms(),
            file_id: Some(f),
            reply_to: None,
            kind: Default::default(),
            notice: false,
        }])
        .unwrap()[0];
    assert_eq!(s.delete_message(announce, 40).unwrap(), Some("ab12".into()));
    assert!(s.find_file(f).unwrap().is_none());

    // Pages after an id, oldest first, say whether newer ones exist.
    let later: Vec<i64> = (0..3)
        .map(|i| say(s, bob, Destination::Room(g), &format!("later {i}")))
        .collect();
    let (after, newer) = s.room_history(g, Page::After(later[0]), 1, bob).unwrap();
    assert_eq!((after[0].id, newer), (later[1], true));
    let (after, newer) = s.room_history(g, Page::After(later[1]), 5, bob).unwrap();
    assert_eq!((after.len(), newer), (1, false));
    let dm = say(s, alice, Destination::User(bob), "dm one");
    let dm2 = say(s, bob, Destination::User(alice), "dm two");
    let (after, newer) = s.dm_history(alice, bob, Page::After(dm), 5).unwrap();
    assert_eq!((after[0].id, after.len(), newer), (dm2, 1, false));
    // Listed in the order first given, also when given within one
    // millisecond (each pair's names sort against their order).
    for n in 0..10 {
        let m = say(s, alice, Destination::Room(g), &format!("pair {n}"));
        assert_eq!(s.react(m, bob, "zz", 5).unwrap(), Reacted::Added(1));
        assert_eq!(s.react(m, alice, "aa", 5).unwrap(), Reacted::Added(1));
        let (page, _) = s.room_history(g, Page::Before(None), 1, bob).unwrap();
        let order: Vec<&str> = page[0].reactions.iter().map(|r| r.emoji.as_str()).collect();
        assert_eq!(order, ["zz", "aa"], "pair {n}");
    }
}

fn search(s: &dyn Store) {
    let alice = s.create_user("alice", "h").unwrap();
    let bob = s.create_user("bob", "h").unwrap();
    let carol = s.create_user("carol", "h").unwrap();
    let g = general(s);
    let rust = s.create_room("rust", "", alice).unwrap();
    s.add_member(rust, bob).unwrap();
    let spec = |viewer: UserId, q: &str| {
        let q = Query::parse(q).unwrap();
        SearchSpec {
            viewer,
            terms: q.terms,
            room: None,
            peer: None,
            from: Vec::new(),
            since_ms: q.since_ms,
            until_ms: q.until_ms,
            before_id: None,
            limit: 10,
        }
    };
    let found = |spec: SearchSpec| -> Vec<String> {
        s.search(&spec)
            .unwrap()
            .0
            .into_iter()
            .map(|m| m.body)
            .collect()
    };
    say(s, alice, Destination::Room(g), "Ship the Café release");
    let r1 = say(s, bob, Destination::Room(rust), "ship it from rust");
    say(s, alice, Destination::User(bob), "ship me a postcard");
    say(s, carol, Destination::User(bob), "ship nothing to alice");
    let edited = say(s, carol, Destination::Room(g), "old words");
    s.edit_message(edited, "new words about shipping", 1, false)
        .unwrap();
    let deleted = say(s, carol, Destination::Room(g), "ship deleted thing");
    s.delete_message(deleted, 2).unwrap();

    assert_eq!(
        found(spec(alice, "ship")),
        [
            "ship me a postcard",
            "ship it from rust",
            "Ship the Café release"
        ],
        "alice's rooms and DMs only, newest first, never deleted text"
    );
    assert_eq!(
        found(spec(carol, "ship")),
        ["ship nothing to alice", "Ship the Café release"]
    );
    assert_eq!(found(spec(alice, "cafe")), ["Ship the Café release"]);
    assert_eq!(found(spec(alice, "shipp*")), ["new words about shipping"]);
    assert!(
        found(spec(alice, "old")).is_empty(),
        "an edit is found by its new text only"
    );
    assert_eq!(
        found(spec(alice, "ship -postcard -rust")),
        ["Ship the Café release"]
    );
    assert_eq!(
        found(spec(alice, "\"the café\"")),
        ["Ship the Café release"]
    );
    assert!(found(spec(alice, "\"café the\"")).is_empty());
    assert_eq!(
        found(SearchSpec {
            room: Some(rust),
            ..spec(alice, "ship")
        }),
        ["ship it from rust"]
    );
    assert_eq!(
        found(SearchSpec {
            peer: Some(bob),
            ..spec(alice, "ship")
        }),
        ["ship me a postcard"]
    );
    assert_eq!(
        found(SearchSpec {
            from: vec![bob],
            ..spec(alice, "ship")
        }),
        ["ship it from rust"]
    );
    // A filter alone, and leaving words out of it.
    assert_eq!(
        found(SearchSpec {
            from: vec![carol],
            ..spec(alice, "-nothing from:carol")
        }),
        ["new words about shipping"]
    );
    // Dates: the messages were sent now.
    let now = now_ms();
    assert!(
        found(SearchSpec {
            until_ms: Some(now - 60_000),
            ..spec(alice, "ship")
        })
        .is_empty()
    );
    assert_eq!(
        found(SearchSpec {
            since_ms: Some(now - 60_000),
            ..spec(alice, "ship")
        })
        .len(),
        3
    );
    // Paging.
    let (page, more) = s
        .search(&SearchSpec {
            limit: 1,
            ..spec(alice, "ship")
        })
        .unwrap();
    assert!(more);
    let (rest, more) = s
        .search(&SearchSpec {
            before_id: Some(page[0].id),
            ..spec(alice, "ship")
        })
        .unwrap();
    assert!(!more);
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[0].id, r1);

    // The edits and deletion above met messages not yet indexed (indexing
    // is in bulk); these meet indexed ones (the searches indexed all).
    s.edit_message(r1, "sail it from rust", 3, false).unwrap();
    let postcard = found(spec(alice, "postcard"));
    assert_eq!(postcard, ["ship me a postcard"]);
    let dm = s.search(&spec(alice, "postcard")).unwrap().0.remove(0).id;
    s.delete_message(dm, 4).unwrap();
    assert_eq!(found(spec(alice, "sail")), ["sail it from rust"]);
    assert_eq!(
        found(spec(alice, "ship")),
        ["Ship the Café release"],
        "an indexed edit loses its old words, an indexed deletion all"
    );
    assert!(found(spec(alice, "postcard")).is_empty());
    // Nothing is left to index, and a second pass finds nothing to add.
    assert_eq!(s.index_messages(100).unwrap(), 0);
    let late = say(s, bob, Destination::Room(rust), "late arrival");
    // One to add, or none where the backend indexes each row as it is
    // stored (PostgreSQL's generated column).
    assert!(s.index_messages(100).unwrap() <= 1);
    assert_eq!(found(spec(alice, "arrival"))[0], "late arrival");
    assert!(late > r1);
}
