//! End-to-end chat behaviour against a real server process: TLS on
//! loopback, a real SQLite file, real PBKDF2.

mod util;

use confab::protocol::{ErrorCode, PresenceEvent, ServerMsg};
use std::time::Duration;
use util::{TestServer, WAIT};

/// Reads events until one matches `pred`; false if none does within WAIT.
fn wait_for(c: &mut confab::client::Client, pred: impl Fn(&ServerMsg) -> bool) -> bool {
    let deadline = std::time::Instant::now() + WAIT;
    while let Some(ev) = c
        .next_event(deadline.saturating_duration_since(std::time::Instant::now()))
        .unwrap()
    {
        if pred(&ev) {
            return true;
        }
    }
    false
}

fn bodies(msgs: &[confab::protocol::ChatMessage]) -> Vec<&str> {
    msgs.iter().map(|m| m.body.as_str()).collect()
}

#[test]
fn two_users_exchange_messages_and_a_third_sees_history_on_join() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    alice.create_room("rust", "all things rust").unwrap();
    let joined = bob.join("rust").unwrap();
    assert_eq!(joined.room.topic, "all things rust");
    assert!(joined.members.iter().any(|m| m.user == "alice" && m.online));

    let (id1, _) = alice.say("rust", "hello bob").unwrap();
    let got = bob.next_message(WAIT).unwrap().expect("bob receives");
    assert_eq!(
        (got.id, got.from.as_str(), got.body.as_str()),
        (id1, "alice", "hello bob")
    );
    assert_eq!(got.room.as_deref(), Some("rust"));

    let (id2, _) = bob.say("#rust", "hi alice").unwrap();
    assert!(id2 > id1, "ids increase");
    let got = alice.next_message(WAIT).unwrap().expect("alice receives");
    assert_eq!(got.body, "hi alice");

    let mut carol = server.user("carol");
    let joined = carol.join("rust").unwrap();
    assert_eq!(bodies(&joined.history), ["hello bob", "hi alice"]);
}

#[test]
fn sender_gets_an_ack_not_an_echo_and_others_get_the_message_once() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    for i in 0..20 {
        alice.say("general", &format!("m{i}")).unwrap();
    }
    for i in 0..20 {
        let m = bob.next_message(WAIT).unwrap().expect("delivered");
        assert_eq!(m.body, format!("m{i}"), "in order");
    }
    assert!(
        bob.next_message(Duration::from_millis(200))
            .unwrap()
            .is_none()
    );
    assert!(
        alice
            .next_message(Duration::from_millis(200))
            .unwrap()
            .is_none()
    );
}

#[test]
fn history_survives_reconnect_and_a_killed_server() {
    let mut server = TestServer::start();
    let mut ids = Vec::new();
    {
        let mut alice = server.user("alice");
        for i in 0..120 {
            ids.push(alice.say("general", &format!("line {i}")).unwrap().0);
        }
    }
    let mut alice = server.login("alice");
    let (page, more) = alice.room_history("general", None, 50).unwrap();
    assert!(more);
    assert_eq!(page.last().unwrap().id, *ids.last().unwrap());

    // SIGKILL: no shutdown path runs; every acked message must still be there.
    server.restart();
    let mut alice = server.login("alice");
    let all = util::history_ids(&mut alice, "general", 100);
    assert_eq!(all, ids, "every acked message, in order, after restart");
}

#[test]
fn dm_to_an_offline_user_is_delivered_at_next_login() {
    let server = TestServer::start();
    drop(server.user("bob"));
    let mut alice = server.user("alice");
    let (id, _) = alice.dm("bob", "are you there?").unwrap();

    let mut bob = server.client();
    let session = bob.login("bob", util::PW).unwrap();
    assert_eq!(session.offline_dms, 1);
    let m = bob.next_message(WAIT).unwrap().expect("offline DM");
    assert_eq!(
        (m.id, m.from.as_str(), m.to.as_deref()),
        (id, "alice", Some("bob"))
    );

    // Delivered once: the next login has nothing pending.
    drop(bob);
    let mut bob = server.client();
    assert_eq!(bob.login("bob", util::PW).unwrap().offline_dms, 0);

    // Online DMs arrive live, and both sides can page the conversation.
    alice.dm("bob", "live one").unwrap();
    assert_eq!(bob.next_message(WAIT).unwrap().unwrap().body, "live one");
    let (conv, _) = bob.dm_history("alice", None, 10).unwrap();
    assert_eq!(bodies(&conv), ["are you there?", "live one"]);
}

#[test]
fn presence_and_topic_events_reach_room_members() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    alice.create_room("ops", "").unwrap();
    let mut bob = server.user("bob");
    bob.join("ops").unwrap();
    // Bob's registration put him in general first; alice sees both joins.
    let joined_ops = wait_for(&mut alice, |ev| {
        matches!(ev, ServerMsg::Presence { room, user, event: PresenceEvent::Join, .. }
            if room == "ops" && user == "bob")
    });
    assert!(joined_ops, "alice is told bob joined #ops");
    bob.request(confab::protocol::Request::Topic {
        room: "ops".into(),
        topic: "deploy at 5".into(),
    })
    .unwrap();
    let saw_topic = wait_for(
        &mut alice,
        |ev| matches!(ev, ServerMsg::TopicChanged { topic, by, .. } if topic == "deploy at 5" && by == "bob"),
    );
    assert!(saw_topic, "alice is told the new topic");
    let rooms = alice.rooms().unwrap();
    assert!(
        rooms
            .iter()
            .any(|r| r.name == "ops" && r.topic == "deploy at 5" && r.members == 2)
    );

    bob.request(confab::protocol::Request::Leave {
        room: "ops".into(),
        reason: None,
    })
    .unwrap();
    let members = alice.who("ops").unwrap();
    assert_eq!(members.len(), 1);
    let err = bob.say("ops", "still here?").unwrap_err();
    assert!(matches!(
        err,
        confab::client::ClientError::Server {
            code: ErrorCode::NotMember,
            ..
        }
    ));
}

#[test]
fn a_second_session_of_the_same_user_sees_its_own_dms() {
    let server = TestServer::start();
    let mut laptop = server.user("alice");
    let mut phone = server.login("alice");
    let _bob = server.user("bob");
    laptop.dm("bob", "from the laptop").unwrap();
    let m = phone
        .next_message(WAIT)
        .unwrap()
        .expect("other device sees it");
    assert_eq!(m.body, "from the laptop");
}

/// Idle sessions sleep in poll(2): the server's CPU time must not grow
/// while 50 logged-in clients say nothing. (A 20 ms read-timeout loop
/// would burn ~100 wake-ups per second per session here.)
#[test]
fn idle_sessions_cost_no_cpu() {
    let server = TestServer::start();
    let clients: Vec<_> = (0..50).map(|i| server.user(&format!("idle{i}"))).collect();
    std::thread::sleep(Duration::from_millis(300));
    let cpu = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.pid())).unwrap();
        let after = stat.rsplit_once(')').unwrap().1;
        let f: Vec<&str> = after.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat, 12 and 13 here.
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    };
    let before = cpu();
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu() - before;
    // Clock ticks are 10 ms; allow a little for the logger and the kernel.
    assert!(used <= 3, "server used {used} ticks of CPU while idle");
    drop(clients);
}

/// Deliveries are written by the message writer and a delivery helper
/// straight to sleeping sessions, and through a wake-up to sessions that are
/// busy (here: the senders, pipelining their own messages). Either way every
/// member gets every other member's message exactly once, in id order.
#[test]
fn concurrent_senders_reach_every_member_once_and_in_id_order() {
    use confab::protocol::{ClientFrame, Request, encode_json};
    const SENDERS: usize = 4;
    const LISTENERS: usize = 12;
    const EACH: usize = 150;
    let server = TestServer::start();
    let listeners: Vec<_> = (0..LISTENERS)
        .map(|i| server.user(&format!("listener{i}")))
        .collect();
    let senders: Vec<_> = (0..SENDERS)
        .map(|i| server.user(&format!("sender{i}")))
        .collect();
    let collect = |mut c: confab::client::Client, want: usize| {
        std::thread::spawn(move || {
            let mut got = Vec::new();
            while got.len() < want {
                match c.next_message(WAIT).unwrap() {
                    Some(m) => got.push((m.id, m.from, m.body)),
                    None => break,
                }
            }
            got
        })
    };
    let mut threads = Vec::new();
    for (si, mut c) in senders.into_iter().enumerate() {
        threads.push(std::thread::spawn(move || {
            // Pipelined in bursts of 30, so this session is often awake
            // (reading acks) when deliveries for it arrive.
            for burst in 0..EACH / 30 {
                let mut frames = Vec::new();
                for n in burst * 30..(burst + 1) * 30 {
                    frames.extend(encode_json(&ClientFrame {
                        req: Some(n as u64 + 1),
                        request: Request::Say {
                            room: "general".into(),
                            body: format!("s{si} n{n}"),
                            reply_to: None,
                            notice: false,
                        },
                    }));
                }
                c.send_frame(&frames).unwrap();
            }
            // Then it listens: the others' messages it has not read yet.
            let mut got = Vec::new();
            while got.len() < (SENDERS - 1) * EACH {
                match c.next_message(WAIT).unwrap() {
                    Some(m) => got.push((m.id, m.from, m.body)),
                    None => break,
                }
            }
            got
        }));
    }
    let listening: Vec<_> = listeners
        .into_iter()
        .map(|c| collect(c, SENDERS * EACH))
        .collect();
    let check = |got: &[(i64, String, String)], want: usize, who: &str| {
        assert_eq!(got.len(), want, "{who} got every message once");
        assert!(
            got.windows(2).all(|w| w[0].0 < w[1].0),
            "{who} got them in id order"
        );
        for si in 0..SENDERS {
            let from: Vec<&str> = got
                .iter()
                .filter(|(_, f, _)| *f == format!("sender{si}"))
                .map(|(_, _, b)| b.as_str())
                .collect();
            if !from.is_empty() {
                let expected: Vec<String> = (0..EACH).map(|n| format!("s{si} n{n}")).collect();
                assert_eq!(from, expected, "{who}: sender{si}'s messages in send order");
            }
        }
    };
    for (i, t) in listening.into_iter().enumerate() {
        check(&t.join().unwrap(), SENDERS * EACH, &format!("listener{i}"));
    }
    for (i, t) in threads.into_iter().enumerate() {
        check(
            &t.join().unwrap(),
            (SENDERS - 1) * EACH,
            &format!("sender{i}"),
        );
    }
}

#[test]
fn rooms_joined_or_left_in_one_session_reach_the_others_and_logins_list_them_in_join_order() {
    let server = TestServer::start();
    let mut laptop = server.user("alice");
    let mut phone = server.login("alice");
    laptop.create_room("zoo", "").unwrap();
    let you_joined = |name: &'static str| move |e: &ServerMsg| matches!(e, ServerMsg::YouJoined { room, user } if room == name && user == "alice");
    util::wait_event(&mut phone, "you_joined zoo", you_joined("zoo"));
    let mut bob = server.user("bob");
    bob.create_room("art", "").unwrap();
    laptop.join("art").unwrap();
    util::wait_event(&mut phone, "you_joined art", you_joined("art"));

    // Fetching a room one is in already (as clients do at login) tells
    // nobody: the laptop sees bob's marker and no you_joined before it.
    phone.join("art").unwrap();
    bob.say("general", "marker").unwrap();
    let seen = util::wait_event(&mut laptop, "the marker", |e| {
        matches!(e, ServerMsg::YouJoined { .. })
            || matches!(e, ServerMsg::Message(m) if m.body == "marker")
    });
    assert!(matches!(seen, ServerMsg::Message(_)), "{seen:?}");

    // A new session lists the rooms in the order they were joined, not by
    // name, so every device numbers them alike.
    let mut third = server.client();
    let session = third.login("alice", util::PW).unwrap();
    let names: Vec<&str> = session.rooms.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["general", "zoo", "art"]);

    laptop
        .request(confab::protocol::Request::Leave {
            room: "zoo".into(),
            reason: None,
        })
        .unwrap();
    for other in [&mut phone, &mut third] {
        util::wait_event(
            other,
            "you_left zoo",
            |e| matches!(e, ServerMsg::YouLeft { room, .. } if room == "zoo"),
        );
    }
}

/// In a small room, presence comes in order with messages: someone who
/// joins and speaks at once is seen joining first (IRC clients rely on
/// it; large rooms coalesce presence instead, PROTOCOL.md).
#[test]
fn someone_who_joins_and_speaks_at_once_is_seen_joining_first() {
    let server = TestServer::start();
    let mut bob = server.user("bob");
    bob.create_room("order", "").unwrap();
    for i in 0..5 {
        let name = format!("quick{i}");
        let mut c = server.user(&name);
        c.join("order").unwrap();
        c.say("order", "first words").unwrap();
        let joined = std::cell::Cell::new(false);
        let seen = util::wait_event(&mut bob, "their message", |e| match e {
            ServerMsg::Presence {
                room,
                user,
                event: PresenceEvent::Join,
                ..
            } if room == "order" && *user == name => {
                joined.set(true);
                false
            }
            ServerMsg::Message(m) => m.from == name,
            _ => false,
        });
        assert!(
            joined.get(),
            "{name}'s message came before their join: {seen:?}"
        );
    }
}
