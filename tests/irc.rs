//! The IRC listener (issue 19), driven line by line over TLS: registration
//! (SASL PLAIN, PASS, refusals), rooms as channels, messages both ways
//! between IRC and confab clients, direct messages, history, away, and the
//! numerics clients rely on. tests/irc_clients.rs drives real IRC clients.

mod util;

use confab::client::Conversation;
use confab::protocol::{PresenceEvent, Request, ServerMsg};
use util::irc::Irc;
use util::{PW, TestServer, wait_event};

fn server() -> TestServer {
    TestServer::start_with(&["--irc-listen", "127.0.0.1:0"])
}

#[test]
fn sasl_registration_welcomes_with_real_limits_and_joins_the_users_rooms() {
    let s = server();
    let _alice = s.user("alice");
    let mut irc = Irc::sasl(&s.irc_addr, "alice", PW, &["server-time"]);
    irc.expect_seen(&[":confab 001 alice "]);
    for token in ["CHANTYPES=#", "NICKLEN=32", "UTF8ONLY", "CHATHISTORY=100"] {
        irc.expect_seen(&[" 005 alice ", token]);
    }
    irc.expect_seen(&["MAXBODY="]);
    irc.expect_seen(&[" 900 alice ", "You are now logged in as alice"]);
    // Every account starts in #general: joined at once, with its names.
    irc.expect_seen(&[":alice!alice@confab JOIN #general"]);
    irc.expect_seen(&[" 353 alice = #general :", "alice"]);
    irc.expect_seen(&[" 366 alice #general "]);
    irc.send("PING :hello");
    irc.expect(&[":confab PONG confab :hello"]);
}

#[test]
fn a_wrong_password_is_refused_with_904_and_pass_works_without_sasl() {
    let s = server();
    let _bob = s.user("bob");
    let mut irc = Irc::connect(&s.irc_addr);
    irc.send("CAP LS 302");
    irc.expect(&["CAP * LS", "sasl=PLAIN", "draft/chathistory"]);
    irc.send("CAP REQ sasl");
    irc.send("NICK bob");
    irc.send("USER bob 0 * :Bob");
    irc.send("AUTHENTICATE PLAIN");
    irc.expect(&["AUTHENTICATE +"]);
    use base64::Engine;
    let bad = base64::engine::general_purpose::STANDARD.encode("bob\0bob\0not the password");
    irc.send(&format!("AUTHENTICATE {bad}"));
    irc.expect(&[" 904 ", "wrong user name or password"]);
    // No account: registration ends the connection with 464.
    irc.send("CAP END");
    irc.expect(&[" 464 "]);
    irc.expect(&["ERROR"]);

    let mut pass = Irc::connect(&s.irc_addr);
    pass.pass_login(PW, "bob");
    pass.expect(&[" 001 bob "]);

    let mut colon = Irc::connect(&s.irc_addr);
    colon.pass_login(&format!("bob:{PW}"), "whatever");
    colon.expect(&[" 001 bob "]);

    let mut wrong = Irc::connect(&s.irc_addr);
    wrong.pass_login("nope-nope-nope", "bob");
    wrong.expect(&[" 464 ", "wrong user name or password"]);
    wrong.expect(&["ERROR"]);
}

#[test]
fn irc_and_confab_clients_talk_both_ways_in_a_room_and_in_direct_messages() {
    let s = server();
    let mut carol = s.user("carol");
    let _dave = s.user("dave");
    carol.create_room("rust", "").unwrap();
    let mut irc = Irc::sasl(
        &s.irc_addr,
        "dave",
        PW,
        &["server-time", "message-tags", "echo-message"],
    );
    irc.send("JOIN #rust");
    irc.expect(&[":dave!dave@confab JOIN #rust"]);
    irc.expect(&[" 366 dave #rust "]);
    // carol sees dave come into the room.
    wait_event(
        &mut carol,
        "event",
        |m| matches!(m, ServerMsg::Presence { user, .. } if user == "dave"),
    );

    carol.say("rust", "hello from confab").unwrap();
    let line = irc.expect(&[":carol!carol@confab PRIVMSG #rust :hello from confab"]);
    assert!(line.starts_with("@time="), "server-time tag: {line}");
    assert!(line.contains("msgid="), "msgid tag: {line}");

    irc.send("PRIVMSG #rust :hello from irc");
    // echo-message: dave's own line comes back once stored, with its id.
    let echo = irc.expect(&[":dave!dave@confab PRIVMSG #rust :hello from irc"]);
    assert!(echo.contains("msgid="), "{echo}");
    let m = wait_event(
        &mut carol,
        "event",
        |m| matches!(m, ServerMsg::Message(m) if m.body == "hello from irc"),
    );
    let ServerMsg::Message(m) = m else {
        unreachable!()
    };
    assert_eq!((m.from.as_str(), m.room.as_deref()), ("dave", Some("rust")));

    irc.send("PRIVMSG #rust :\u{1}ACTION waves\u{1}");
    wait_event(
        &mut carol,
        "event",
        |m| matches!(m, ServerMsg::Message(m) if m.body == "/me waves"),
    );
    carol.say("rust", "/me waves back").unwrap();
    irc.expect(&["PRIVMSG #rust :\u{1}ACTION waves back\u{1}"]);

    // Direct messages both ways.
    carol.dm("dave", "psst").unwrap();
    irc.expect(&[":carol!carol@confab PRIVMSG dave :psst"]);
    irc.send("PRIVMSG carol :psst yourself");
    wait_event(
        &mut carol,
        "event",
        |m| matches!(m, ServerMsg::Message(m) if m.body == "psst yourself" && m.to.as_deref() == Some("carol")),
    );

    // History has both in id order, as confab stores them.
    let ids = util::history_ids(&mut carol, "rust", 10);
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn chathistory_pages_through_a_room_by_msgid_in_a_batch() {
    let s = server();
    let mut erin = s.user("erin");
    let _fred = s.user("fred");
    for i in 1..=30 {
        erin.say("general", &format!("line {i}")).unwrap();
    }
    let mut irc = Irc::sasl(
        &s.irc_addr,
        "fred",
        PW,
        &["batch", "server-time", "message-tags", "draft/chathistory"],
    );
    irc.send("CHATHISTORY LATEST #general * 10");
    let lines = history_batch(&mut irc, 0);
    assert!(lines.iter().all(|l| l.contains("PRIVMSG #general")));
    assert_eq!(lines.len(), 10, "{lines:#?}");
    assert!(lines[0].ends_with(":line 21"), "{}", lines[0]);
    assert!(lines[9].ends_with(":line 30"), "{}", lines[9]);
    // The oldest one's msgid pages further back.
    let oldest = msgid_of(&lines[0]);
    let mark = irc.seen.len();
    irc.send(&format!("CHATHISTORY BEFORE #general msgid={oldest} 5"));
    irc.expect_from(mark, &["PRIVMSG #general :line 16"]);
    let (end2, _) = irc.expect_from(mark, &["BATCH -"]);
    let older: Vec<&String> = irc.seen[mark..end2]
        .iter()
        .filter(|l| l.contains("PRIVMSG"))
        .collect();
    assert_eq!(older.len(), 5, "{older:#?}");
    assert!(older[4].ends_with(":line 20"));
    // And AFTER goes forward again.
    let mark = irc.seen.len();
    irc.send(&format!("CHATHISTORY AFTER #general msgid={oldest} 2"));
    irc.expect_from(mark, &["PRIVMSG #general :line 22"]);
    irc.send("CHATHISTORY BEFORE #general timestamp=yesterday 5");
    irc.expect(&["FAIL CHATHISTORY INVALID_PARAMS"]);
    irc.send("CHATHISTORY LATEST #nosuchroom * 5");
    irc.expect(&["FAIL CHATHISTORY INVALID_TARGET"]);
}

/// The `msgid` tag of a line.
fn msgid_of(line: &str) -> String {
    line.split(['@', ';', ' '])
        .find_map(|t| t.strip_prefix("msgid="))
        .unwrap()
        .to_owned()
}

/// History lines in the batch that starts at or after `mark`.
fn history_batch(irc: &mut Irc, mark: usize) -> Vec<String> {
    let (start_at, start) = irc.expect_from(mark, &["BATCH +", "chathistory"]);
    let batch = start
        .split_whitespace()
        .nth(2)
        .unwrap()
        .trim_start_matches('+')
        .to_owned();
    let (end_at, _) = irc.expect_from(start_at, &[&format!("BATCH -{batch}")]);
    irc.seen[start_at..end_at]
        .iter()
        .filter(|l| l.contains(&format!("batch={batch}")))
        .cloned()
        .collect()
}

/// Topic changes and deleted messages are left out of IRC history; a page
/// is still full when they are, so a client does not take a page of them
/// for the end of history (it stops paging at a short or empty page).
#[test]
fn chathistory_pages_stay_full_across_topic_changes_and_deletions() {
    let s = server();
    let mut erin = s.user("erin");
    let _fred = s.user("fred");
    for i in 1..=6 {
        erin.say("general", &format!("line {i}")).unwrap();
    }
    // More hidden entries than a page: 12 topic changes and 3 deletions.
    for i in 1..=12 {
        erin.request(Request::Topic {
            room: "general".into(),
            topic: format!("topic {i}"),
        })
        .unwrap();
    }
    let (doomed, _) = erin.say("general", "deleted soon").unwrap();
    erin.delete_message(doomed, "").unwrap();
    for i in 7..=9 {
        erin.say("general", &format!("line {i}")).unwrap();
    }
    for i in 1..=2 {
        let (id, _) = erin.say("general", &format!("gone {i}")).unwrap();
        erin.delete_message(id, "").unwrap();
    }
    let mut irc = Irc::sasl(
        &s.irc_addr,
        "fred",
        PW,
        &["batch", "server-time", "message-tags", "draft/chathistory"],
    );
    let texts = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .map(|l| l.rsplit_once(" :").unwrap().1.to_owned())
            .collect()
    };
    let mark = irc.seen.len();
    irc.send("CHATHISTORY LATEST #general * 5");
    let latest = history_batch(&mut irc, mark);
    assert_eq!(
        texts(&latest),
        ["line 5", "line 6", "line 7", "line 8", "line 9"],
        "{latest:#?}"
    );
    // Paging back from line 5 crosses the 12 topic changes.
    let msgid = |l: &str| msgid_of(l);
    let mark = irc.seen.len();
    irc.send(&format!(
        "CHATHISTORY BEFORE #general msgid={} 3",
        msgid(&latest[3])
    ));
    let before = history_batch(&mut irc, mark);
    assert_eq!(
        texts(&before),
        ["line 5", "line 6", "line 7"],
        "{before:#?}"
    );
    let mark = irc.seen.len();
    irc.send(&format!(
        "CHATHISTORY AFTER #general msgid={} 3",
        msgid(&before[1])
    ));
    let after = history_batch(&mut irc, mark);
    assert_eq!(texts(&after), ["line 7", "line 8", "line 9"], "{after:#?}");
    // Past the end, a short page: nothing hidden is shown to fill it.
    let mark = irc.seen.len();
    irc.send(&format!(
        "CHATHISTORY AFTER #general msgid={} 5",
        msgid(&after[1])
    ));
    let end = history_batch(&mut irc, mark);
    assert_eq!(texts(&end), ["line 9"], "{end:#?}");
    // One request reads at most 8 store pages: 13 hidden entries stand
    // between line 7 and line 6, more than 8 pages of 1 (an empty page),
    // fewer than 8 of 2 (the newest 2 of what those pages showed).
    let mark = irc.seen.len();
    irc.send(&format!(
        "CHATHISTORY BEFORE #general msgid={} 1",
        msgid(&after[0])
    ));
    let bounded = history_batch(&mut irc, mark);
    assert!(bounded.is_empty(), "{bounded:#?}");
    let mark = irc.seen.len();
    irc.send(&format!(
        "CHATHISTORY BEFORE #general msgid={} 2",
        msgid(&after[0])
    ));
    let two = history_batch(&mut irc, mark);
    assert_eq!(texts(&two), ["line 5", "line 6"], "{two:#?}");
}

#[test]
fn away_topic_names_who_whois_list_and_mode_answer_sensibly() {
    let s = server();
    let mut gina = s.user("gina");
    let _hank = s.user("hank");
    gina.create_room("ops", "").unwrap();
    let mut irc = Irc::sasl(&s.irc_addr, "hank", PW, &["away-notify"]);
    irc.send("JOIN #ops");
    irc.expect(&[" 366 hank #ops "]);
    irc.send("TOPIC #ops :deploys at noon");
    irc.expect(&[":hank!hank@confab TOPIC #ops :deploys at noon"]);
    wait_event(
        &mut gina,
        "event",
        |m| matches!(m, ServerMsg::Message(m) if m.body == "deploys at noon"),
    );
    irc.send("TOPIC #ops");
    irc.expect(&[" 332 hank #ops :deploys at noon"]);
    irc.send("NAMES #ops");
    irc.expect(&[" 353 hank = #ops :", "gina", "hank"]);
    irc.send("WHO #ops");
    irc.expect(&[" 352 hank #ops gina confab confab gina H :0 gina"]);
    irc.expect(&[" 315 hank #ops "]);
    irc.send("LIST");
    irc.expect(&[" 322 hank #ops 2 :deploys at noon"]);
    irc.expect(&[" 323 hank "]);
    irc.send("MODE #ops");
    irc.expect(&[" 324 hank #ops +n"]);
    irc.send("MODE #ops +o gina");
    irc.expect(&[" 482 hank #ops "]);

    // Away both ways.
    gina.request(Request::Away {
        message: Some("lunch".into()),
    })
    .unwrap();
    irc.expect(&[":gina!gina@confab AWAY :lunch"]);
    irc.send("WHOIS gina");
    irc.expect(&[" 311 hank gina gina confab * :gina"]);
    irc.expect(&[" 301 hank gina :lunch"]);
    irc.expect(&[" 318 hank gina "]);
    // Someone away who joins a channel is seen away at once (away-notify).
    irc.send("JOIN #late");
    irc.expect(&[" 366 hank #late "]);
    gina.join("late").unwrap();
    irc.expect(&[":gina!gina@confab JOIN #late"]);
    irc.expect(&[":gina!gina@confab AWAY :lunch"]);
    irc.send("AWAY :in a meeting");
    irc.expect(&[" 306 hank "]);
    wait_event(&mut gina, "event", |m| {
        matches!(m, ServerMsg::Presence { user, event: PresenceEvent::Away, message: Some(text), .. }
            if user == "hank" && text == "in a meeting")
    });
    let who = gina.who("ops").unwrap();
    let hank = who.iter().find(|m| m.user == "hank").unwrap();
    assert_eq!(hank.away.as_deref(), Some("in a meeting"));
    irc.send("PRIVMSG gina :are you there?");
    irc.expect(&[" 301 hank gina :lunch"]);
    irc.send("AWAY");
    irc.expect(&[" 305 hank "]);

    irc.send("WHOIS nobody-here");
    irc.expect(&[" 401 hank nobody-here "]);
    irc.send("PRIVMSG #nosuch :hi");
    irc.expect(&[" 403 hank #nosuch "]);
    irc.send("FROBNICATE");
    irc.expect(&[" 421 hank FROBNICATE "]);
    irc.send("PART #ops :bye");
    irc.expect(&[":hank!hank@confab PART #ops :bye"]);
    irc.send("QUIT :done");
    irc.expect(&["ERROR"]);
}

#[test]
fn an_irc_session_honours_mutes_bans_kicks_and_flood_control() {
    let s = TestServer::start_with(&[
        "--irc-listen",
        "127.0.0.1:0",
        "--flood-burst",
        "3",
        "--flood-rate",
        "0.5",
    ]);
    let mut boss = s.admin_user("boss");
    let _ivan = s.user("ivan");
    let mut irc = Irc::sasl(&s.irc_addr, "ivan", PW, &[]);
    boss.request(Request::Mute {
        room: "general".into(),
        user: "ivan".into(),
        minutes: None,
    })
    .unwrap();
    irc.send("PRIVMSG #general :can I speak?");
    irc.expect(&[" 404 ivan #general ", "muted"]);
    boss.request(Request::Unmute {
        room: "general".into(),
        user: "ivan".into(),
    })
    .unwrap();

    // Flood control: a burst of 3, then SLOW_DOWN, then the end.
    for i in 0..40 {
        irc.send(&format!("PRIVMSG #general :flood {i}"));
    }
    irc.expect(&["FAIL PRIVMSG SLOW_DOWN"]);
    irc.expect(&["ERROR :Closing link:"]);

    // A kick from a confab admin ends the IRC session; a ban keeps it out.
    let mut again = Irc::sasl(&s.irc_addr, "ivan", PW, &[]);
    boss.request(Request::Kick {
        user: "ivan".into(),
        reason: "cool off".into(),
    })
    .unwrap();
    again.expect(&["ERROR :Closing link:", "cool off"]);
    boss.request(Request::Ban {
        user: "ivan".into(),
        reason: "rude".into(),
        minutes: Some(5),
    })
    .unwrap();
    let mut banned = Irc::connect(&s.irc_addr);
    banned.pass_login(PW, "ivan");
    banned.expect(&[" 465 ivan ", "rude"]);
    banned.expect(&["ERROR"]);

    // An IRC admin's KICK is confab's kick; a non-admin's is refused.
    let mut boss_irc = Irc::sasl(&s.irc_addr, "boss", PW, &[]);
    let _judy = s.user("judy");
    let mut judy = Irc::sasl(&s.irc_addr, "judy", PW, &[]);
    judy.send("KICK #general boss :no");
    judy.expect(&[" 482 judy #general "]);
    boss_irc.send("KICK #general judy :out");
    boss_irc.expect(&["NOTICE boss :judy was disconnected"]);
    judy.expect(&["ERROR :Closing link:", "out"]);
}

#[test]
fn irc_clients_wait_in_line_with_a_notice_and_register_when_admitted() {
    let s = TestServer::start_with(&[
        "--irc-listen",
        "127.0.0.1:0",
        "--max-sessions",
        "1",
        "--queue-limit",
        "2",
    ]);
    let first = s.user("kara");
    let mut queued = Irc::connect(&s.irc_addr);
    queued.expect(&["NOTICE * :*** The server is full: you are number 1 of 1 in line"]);
    // What it sends while waiting is answered once it is admitted.
    queued.pass_login(PW, "kara");
    drop(first);
    queued.expect(&["*** Your turn came after"]);
    queued.expect(&[" 001 kara "]);
}

#[test]
fn bad_lines_get_numerics_and_lose_nothing_after_them() {
    let s = server();
    let _lee = s.user("lee");
    let mut irc = Irc::sasl(&s.irc_addr, "lee", PW, &["echo-message"]);
    irc.send(&format!("PRIVMSG #general :{}", "x".repeat(600)));
    irc.expect(&[" 417 lee "]);
    // Not UTF-8: dropped with a FAIL; the next line is fine.
    irc.send_bytes(b"PRIVMSG #general :\xff\xfe\r\n");
    irc.expect(&["FAIL * INVALID_UTF8"]);
    irc.send("PRIVMSG #general :still here");
    irc.expect(&[":lee!lee@confab PRIVMSG #general :still here"]);
    // Commands before registration are refused, and registration still works.
    let mut early = Irc::connect(&s.irc_addr);
    early.send("JOIN #general");
    early.expect(&[" 451 * "]);
    early.pass_login(PW, "lee");
    early.expect(&[" 001 lee "]);
}

#[test]
fn the_plaintext_irc_listener_serves_loopback_only() {
    let s = TestServer::start_with(&["--irc-listen-plain", "127.0.0.1:0"]);
    let _mia = s.user("mia");
    let mut tcp = std::net::TcpStream::connect(&s.irc_plain_addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    use std::io::{BufRead, BufReader, Write};
    write!(tcp, "PASS :{PW}\r\nNICK mia\r\nUSER mia 0 * :mia\r\n").unwrap();
    let mut lines = BufReader::new(tcp.try_clone().unwrap()).lines();
    let welcome = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l.contains(" 001 "))
        .unwrap();
    assert!(welcome.contains(" 001 mia "), "{welcome}");

    // Anywhere but loopback is refused at start, saying why.
    let db = s.dir.path().join("other.db");
    let err = util::start_refused(&[
        "--irc-listen-plain",
        "0.0.0.0:0",
        "--listen",
        "127.0.0.1:0",
        "--db",
        db.to_str().unwrap(),
        "--data-dir",
        s.dir.path().to_str().unwrap(),
    ]);
    assert!(err.contains("loopback addresses only"), "{err}");
}

/// Random lines from the IRC vocabulary, before and after registration:
/// the session answers each (or ignores it), never panics, and still
/// answers PING at the end.
#[test]
fn random_irc_lines_get_answers_and_no_panic() {
    let s = server();
    let _nia = s.user("nia");
    let words = [
        "CAP",
        "LS",
        "REQ",
        "END",
        "LIST",
        "NICK",
        "USER",
        "PASS",
        "AUTHENTICATE",
        "PLAIN",
        "*",
        "+",
        "JOIN",
        "PART",
        "TOPIC",
        "NAMES",
        "WHO",
        "WHOIS",
        "ISON",
        "PRIVMSG",
        "NOTICE",
        "AWAY",
        "MODE",
        "KICK",
        "CHATHISTORY",
        "LATEST",
        "BEFORE",
        "AFTER",
        "AROUND",
        "BETWEEN",
        "TARGETS",
        "msgid=1",
        "msgid=-5",
        "msgid=99999999999999999999",
        "timestamp=x",
        "#general",
        "#",
        "#x",
        "#no-such-room",
        "nia",
        "nobody",
        "0",
        "-1",
        "100000",
        ":",
        ":a b c",
        "\u{1}",
        "\u{1}ACTION",
        "@tag=1",
        ":src",
        "\u{e9}t\u{e9}",
        "a,b,,#c",
        "+draft/reply=1",
        "QUIT",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut line = || {
        let n = 1 + (next() % 6) as usize;
        (0..n)
            .map(|_| words[(next() % words.len() as u64) as usize])
            .filter(|w| *w != "QUIT")
            .collect::<Vec<_>>()
            .join(" ")
    };
    // Before registration (without completing it: no NICK/USER pair is
    // guaranteed, and PASS may be wrong).
    let mut early = Irc::connect(&s.irc_addr);
    for _ in 0..300 {
        let l = line();
        if !l.starts_with("USER") && !l.starts_with("CAP END") {
            early.send(&l);
        }
    }
    early.send("PING :alive");
    early.expect(&["PONG", "alive"]);
    // After registration.
    let mut irc = Irc::sasl(&s.irc_addr, "nia", PW, &["batch", "message-tags"]);
    for _ in 0..1500 {
        irc.send(&line());
    }
    irc.send("PING :still-alive");
    irc.expect(&["PONG", "still-alive"]);
    assert!(!s.log().contains("panicked"), "{}", s.log());
}

#[test]
fn read_markers_are_confabs_read_state_as_times() {
    let s = server();
    let mut oli = s.user("oli");
    let mut poe = s.user("poe");
    let first = poe.say("general", "one").unwrap().0;
    let (second, second_ts) = poe.say("general", "two").unwrap();
    let mut irc = Irc::sasl(
        &s.irc_addr,
        "oli",
        PW,
        &["draft/read-marker", "server-time", "message-tags"],
    );
    // The marker comes with the join burst, before the end of names.
    let (marker_at, marker) = irc.expect_from(0, &["MARKREAD #general "]);
    let (end_at, _) = irc.expect_from(0, &[" 366 oli #general "]);
    assert!(marker_at < end_at, "MARKREAD before 366");
    assert!(
        marker.ends_with(" *") || marker.contains("timestamp="),
        "{marker}"
    );

    // Setting it to the second message's time marks confab's read state
    // there: oli's confab session is told, with the id.
    let at = confab::irc::events::iso8601(second_ts);
    irc.send(&format!("MARKREAD #general timestamp={at}"));
    irc.expect(&[&format!("MARKREAD #general timestamp={at}")]);
    wait_event(
        &mut oli,
        "read",
        |m| matches!(m, ServerMsg::Read { room: Some(r), id, .. } if r == "general" && *id == second),
    );
    // A time before it does not move the marker back.
    let _ = first;
    irc.send("MARKREAD #general timestamp=2001-01-01T00:00:00.000Z");
    irc.expect(&[&format!("MARKREAD #general timestamp={at}")]);
    irc.send("MARKREAD #general");
    irc.expect(&[&format!("MARKREAD #general timestamp={at}")]);

    // Read on confab: the IRC session hears it as MARKREAD.
    let (third, third_ts) = poe.say("general", "three").unwrap();
    oli.mark_read(&Conversation::Room("general".into()), third)
        .unwrap();
    irc.expect(&[&format!(
        "MARKREAD #general timestamp={}",
        confab::irc::events::iso8601(third_ts)
    )]);
    irc.send("MARKREAD #general timestamp=yesterday");
    irc.expect(&["FAIL MARKREAD INVALID_PARAMS"]);
}

#[test]
fn labeled_commands_get_labeled_answers_and_echoes() {
    let s = server();
    let _ria = s.user("ria");
    let mut irc = Irc::sasl(
        &s.irc_addr,
        "ria",
        PW,
        &["labeled-response", "batch", "echo-message", "message-tags"],
    );
    irc.send("@label=p1 PING :x");
    irc.expect(&["@label=p1 :confab PONG confab :x"]);
    // Nothing to say: an ACK.
    irc.send("@label=m1 MODE ria +i");
    irc.expect(&["@label=m1 :confab ACK"]);
    // Several lines: a labeled batch.
    irc.send("@label=n1 NAMES #general");
    let start = irc.expect(&["@label=n1 :confab BATCH +", "labeled-response"]);
    let id = start
        .split_whitespace()
        .nth(3)
        .unwrap()
        .trim_start_matches('+')
        .to_owned();
    irc.expect(&[&format!("@batch={id} :confab 353 ria")]);
    irc.expect(&[&format!("@batch={id} :confab 366 ria")]);
    irc.expect(&[&format!(":confab BATCH -{id}")]);
    // A message's echo carries its label, from the writer.
    irc.send("@label=s1 PRIVMSG #general :labeled hello");
    let echo = irc.expect(&["PRIVMSG #general :labeled hello"]);
    assert!(echo.starts_with("@label=s1;"), "{echo}");
    // An error is the answer too.
    irc.send("@label=e1 PRIVMSG #nosuch :x");
    irc.expect(&["@label=e1 :confab 403 ria #nosuch"]);
    // A history batch carries the label on its start.
    irc.send("@label=h1 CHATHISTORY LATEST #general * 5");
    irc.expect(&["@label=h1 :confab BATCH +", "chathistory #general"]);
}

#[test]
fn sasl_aborts_unknown_mechanisms_overlong_payloads_and_retries() {
    let s = server();
    let _una = s.user("una");
    use base64::Engine;
    let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
    let mut irc = Irc::connect(&s.irc_addr);
    irc.send("CAP REQ sasl");
    irc.send("AUTHENTICATE SCRAM-SHA-256");
    irc.expect(&[" 908 * PLAIN "]);
    irc.expect(&[" 904 * "]);
    irc.send("AUTHENTICATE PLAIN");
    irc.expect(&["AUTHENTICATE +"]);
    irc.send("AUTHENTICATE *");
    irc.expect(&[" 906 * "]);
    irc.send("AUTHENTICATE PLAIN");
    irc.expect(&["AUTHENTICATE +"]);
    for _ in 0..4 {
        irc.send(&format!("AUTHENTICATE {}", "A".repeat(400)));
    }
    irc.expect(&[" 904 * "]);
    // One line longer than a chunk is 905.
    irc.send("AUTHENTICATE PLAIN");
    irc.expect(&["AUTHENTICATE +"]);
    irc.send(&format!("AUTHENTICATE {}", "A".repeat(401)));
    irc.expect(&[" 905 * "]);
    irc.send("AUTHENTICATE *");
    irc.send("AUTHENTICATE PLAIN");
    irc.send(&format!("AUTHENTICATE {}", b64(&format!("una\0una\0{PW}"))));
    irc.expect(&[" 903 una "]);
    irc.send("AUTHENTICATE PLAIN");
    irc.expect(&[" 907 una "]);
    irc.send("NICK una");
    irc.send("USER una 0 * :una");
    irc.send("CAP END");
    irc.expect(&[" 001 una "]);
    irc.send("AUTHENTICATE PLAIN");
    irc.expect(&[" 907 una "]);
}

#[test]
fn a_room_joined_or_left_in_a_confab_session_is_joined_or_parted_on_irc() {
    let s = server();
    let mut alice = s.user("alice");
    let mut irc = Irc::sasl(&s.irc_addr, "alice", PW, &[]);
    irc.expect_seen(&[" 366 alice #general "]);
    alice.create_room("zoo", "").unwrap();
    irc.expect_seen(&[":alice!alice@confab JOIN #zoo"]);
    alice
        .request(Request::Leave {
            room: "zoo".into(),
            reason: None,
        })
        .unwrap();
    irc.expect_seen(&[":alice!alice@confab PART #zoo"]);
    // And the other way: a JOIN from IRC reaches the confab session.
    irc.send("JOIN #art");
    irc.expect_seen(&[" 366 alice #art "]);
    wait_event(
        &mut alice,
        "you_joined art",
        |e| matches!(e, ServerMsg::YouJoined { room, .. } if room == "art"),
    );
}

/// Points irctest checks (docs/IRC.md, "Conformance"): the configured
/// server name, PING without a token, a USER without a realname, an empty
/// PRIVMSG, too many client tags, and the multi-prefix and
/// userhost-in-names capabilities.
#[test]
fn the_server_name_is_configurable_and_small_conformance_points_hold() {
    let s = TestServer::start_with(&[
        "--irc-listen",
        "127.0.0.1:0",
        "--irc-server-name",
        "chat.example.org",
    ]);
    let _alice = s.user("alice");
    let _bob = s.user("bob");
    // A realname is required.
    let mut early = Irc::connect(&s.irc_addr);
    early.send(&format!("PASS alice:{PW}"));
    early.send("NICK alice");
    early.send("USER alice 0 * :");
    early.expect(&[":chat.example.org 461 ", "USER"]);

    let mut irc = Irc::sasl(
        &s.irc_addr,
        "alice",
        PW,
        &["multi-prefix", "userhost-in-names"],
    );
    irc.expect_seen(&[":chat.example.org 001 alice "]);
    irc.expect_seen(&[":chat.example.org 004 alice chat.example.org "]);
    irc.send("PING :abc");
    irc.expect(&[":chat.example.org PONG chat.example.org :abc"]);
    irc.send("PING");
    irc.expect(&[" 461 alice PING "]);
    irc.send("PRIVMSG #general :");
    irc.expect(&[" 412 alice "]);
    let tags = "x".repeat(4094);
    irc.send(&format!("@+a={tags} PRIVMSG #general :hi"));
    irc.expect(&[" 417 alice "]);
    // NAMES with userhost-in-names: full masks, with this server's name.
    let _bob_irc = Irc::sasl(&s.irc_addr, "bob", PW, &[]);
    irc.send("NAMES #general");
    irc.expect(&[
        " 353 alice = #general :",
        "alice!alice@chat.example.org",
        "bob!bob@chat.example.org",
    ]);
}

/// CHATHISTORY by time (`timestamp=`), as senpai and irctest ask: before
/// and after a time exclude it, BETWEEN excludes both ends in either
/// order, AROUND centres on the message at the time.
#[test]
fn chathistory_finds_messages_by_timestamp() {
    let s = server();
    let mut erin = s.user("erin");
    let _fred = s.user("fred");
    for i in 1..=12 {
        erin.say("general", &format!("line {i}")).unwrap();
        // Each message in a millisecond of its own, so times order them.
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    let mut irc = Irc::sasl(
        &s.irc_addr,
        "fred",
        PW,
        &["batch", "server-time", "message-tags", "draft/chathistory"],
    );
    irc.send("CHATHISTORY LATEST #general * 20");
    let (end, _) = irc.expect_from(0, &["BATCH -"]);
    let time_of = |n: u32| -> String {
        irc.seen[..end]
            .iter()
            .find(|l| l.ends_with(&format!(":line {n}")))
            .and_then(|l| {
                l.split(['@', ';', ' '])
                    .find_map(|t| t.strip_prefix("time="))
            })
            .unwrap_or_else(|| panic!("line {n} has no time"))
            .to_owned()
    };
    let (t5, t9) = (time_of(5), time_of(9));
    let page = |irc: &mut Irc, request: String| -> Vec<String> {
        let mark = irc.seen.len();
        irc.send(&request);
        let (end, _) = irc.expect_from(mark, &["BATCH -"]);
        irc.seen[mark..end]
            .iter()
            .filter(|l| l.contains("PRIVMSG"))
            .map(|l| l.rsplit(" :").next().unwrap().to_owned())
            .collect()
    };
    let lines = |ns: &[u32]| -> Vec<String> { ns.iter().map(|n| format!("line {n}")).collect() };
    assert_eq!(
        page(
            &mut irc,
            format!("CHATHISTORY BEFORE #general timestamp={t5} 3")
        ),
        lines(&[2, 3, 4])
    );
    assert_eq!(
        page(
            &mut irc,
            format!("CHATHISTORY AFTER #general timestamp={t5} 2")
        ),
        lines(&[6, 7])
    );
    assert_eq!(
        page(
            &mut irc,
            format!("CHATHISTORY LATEST #general timestamp={t9} 10")
        ),
        lines(&[10, 11, 12])
    );
    let between = lines(&[6, 7, 8]);
    assert_eq!(
        page(
            &mut irc,
            format!("CHATHISTORY BETWEEN #general timestamp={t5} timestamp={t9} 10")
        ),
        between
    );
    assert_eq!(
        page(
            &mut irc,
            format!("CHATHISTORY BETWEEN #general timestamp={t9} timestamp={t5} 10")
        ),
        between
    );
    let around = page(
        &mut irc,
        format!("CHATHISTORY AROUND #general timestamp={t5} 3"),
    );
    assert!(around.contains(&"line 5".to_owned()), "{around:?}");
    // A time before everything: nothing before it, everything after it.
    let early = "2000-01-01T00:00:00.000Z";
    assert!(
        page(
            &mut irc,
            format!("CHATHISTORY BEFORE #general timestamp={early} 5")
        )
        .is_empty()
    );
    assert_eq!(
        page(
            &mut irc,
            format!("CHATHISTORY AFTER #general timestamp={early} 2")
        ),
        lines(&[1, 2])
    );
}

/// Lines are answered in order: the echo of a PRIVMSG (sent once the
/// message is stored) comes before the answer to the line after it, even
/// when both lines arrive together.
#[test]
fn an_echo_comes_before_the_answer_to_the_next_line() {
    let s = server();
    let _ivy = s.user("ivy");
    let mut irc = Irc::sasl(&s.irc_addr, "ivy", PW, &["echo-message"]);
    for i in 0..20 {
        let mark = irc.seen.len();
        irc.send_bytes(format!("PRIVMSG #general :line {i}\r\nPING :after {i}\r\n").as_bytes());
        let (echo, _) = irc.expect_from(mark, &[&format!("PRIVMSG #general :line {i}")]);
        let (pong, _) = irc.expect_from(mark, &[&format!("PONG confab :after {i}")]);
        assert!(
            echo < pong,
            "the PONG came before the echo:\n{:#?}",
            irc.seen
        );
    }
}

/// CHATHISTORY TARGETS lists the rooms and people whose newest message is
/// in a span, oldest first, with its time (senpai asks this to find
/// conversations at connection).
#[test]
fn chathistory_targets_lists_conversations_by_time() {
    let s = server();
    let mut erin = s.user("erin");
    let _fred = s.user("fred");
    erin.say("general", "in the room").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(3));
    erin.dm("fred", "just for you").unwrap();
    let mut irc = Irc::sasl(
        &s.irc_addr,
        "fred",
        PW,
        &["batch", "server-time", "draft/chathistory"],
    );
    let all = "timestamp=2000-01-01T00:00:00.000Z timestamp=2262-01-01T00:00:00.000Z";
    let mark = irc.seen.len();
    irc.send(&format!("CHATHISTORY TARGETS {all} 10"));
    irc.expect_from(mark, &["BATCH +", "draft/chathistory-targets"]);
    let (end, _) = irc.expect_from(mark, &["BATCH -"]);
    let targets: Vec<String> = irc.seen[mark..end]
        .iter()
        .filter(|l| l.contains("CHATHISTORY TARGETS"))
        .map(|l| l.split(' ').nth(4).unwrap_or_default().to_owned())
        .collect();
    assert_eq!(targets, ["#general", "erin"], "{:#?}", irc.seen);
    // The limit keeps the oldest.
    let mark = irc.seen.len();
    irc.send(&format!("CHATHISTORY TARGETS {all} 1"));
    let (end, _) = irc.expect_from(mark, &["BATCH -"]);
    let n = irc.seen[mark..end]
        .iter()
        .filter(|l| l.contains("CHATHISTORY TARGETS #general "))
        .count();
    assert_eq!(n, 1, "{:#?}", &irc.seen[mark..]);
    irc.send("CHATHISTORY TARGETS msgid=1 timestamp=2262-01-01T00:00:00.000Z 5");
    irc.expect(&["FAIL CHATHISTORY INVALID_PARAMS TARGETS"]);
}

/// A NOTICE stays a notice: stored as one, relayed and echoed as NOTICE,
/// replayed by CHATHISTORY as NOTICE, and marked for confab clients, which
/// must not answer it automatically.
#[test]
fn a_notice_stays_a_notice() {
    let s = server();
    let mut kim = s.user("kim");
    let _lee = s.user("lee");
    let mut lee = Irc::sasl(
        &s.irc_addr,
        "lee",
        PW,
        &["echo-message", "draft/chathistory"],
    );
    let _moe = s.user("moe");
    let mut moe = Irc::sasl(&s.irc_addr, "moe", PW, &[]);
    lee.send("NOTICE #general :bot says hi");
    lee.expect(&[":lee!lee@confab NOTICE #general :bot says hi"]);
    moe.expect(&[":lee!lee@confab NOTICE #general :bot says hi"]);
    let got = wait_event(
        &mut kim,
        "the notice",
        |m| matches!(m, ServerMsg::Message(m) if m.body == "bot says hi"),
    );
    assert!(matches!(&got, ServerMsg::Message(m) if m.notice), "{got:?}");
    // A confab client's notice, in a DM, reaches IRC as NOTICE too.
    kim.request(Request::Dm {
        to: "moe".into(),
        body: "notice for moe".into(),
        reply_to: None,
        notice: true,
    })
    .unwrap();
    moe.expect(&[":kim!kim@confab NOTICE moe :notice for moe"]);
    let mark = lee.seen.len();
    lee.send("CHATHISTORY LATEST #general * 5");
    lee.expect_from(mark, &["NOTICE #general :bot says hi"]);
}

/// A status change of someone sharing several channels is one line on
/// IRC, not one per channel: one `AWAY`, one `AWAY` back, one `QUIT`.
#[test]
fn away_and_quit_come_once_for_all_shared_channels() {
    let s = server();
    let mut nia = s.user("nia");
    nia.create_room("one", "").unwrap();
    nia.create_room("two", "").unwrap();
    let _oz = s.user("ozzy");
    let mut irc = Irc::sasl(&s.irc_addr, "ozzy", PW, &["away-notify"]);
    irc.send("JOIN #one,#two");
    irc.expect(&[" 366 ozzy #two "]);
    let count = |irc: &mut Irc, what: &str| -> usize {
        let mark = irc.seen.len();
        irc.send("PING :count");
        let (end, _) = irc.expect_from(mark, &["PONG", ":count"]);
        irc.seen[mark..end]
            .iter()
            .filter(|l| l.contains(what))
            .count()
    };
    nia.request(Request::Away {
        message: Some("lunch".into()),
    })
    .unwrap();
    assert_eq!(
        count(&mut irc, ":nia!nia@confab AWAY :lunch"),
        1,
        "{:#?}",
        irc.seen
    );
    nia.request(Request::Away { message: None }).unwrap();
    assert_eq!(
        count(&mut irc, ":nia!nia@confab AWAY"),
        1,
        "{:#?}",
        irc.seen
    );
    nia.quit().unwrap();
    irc.expect(&[":nia!nia@confab QUIT :offline"]);
    assert_eq!(count(&mut irc, "QUIT"), 0, "a second QUIT: {:#?}", irc.seen);
}

/// A PART message reaches the channel's other members: as the PART's text
/// on IRC, as the `leave` presence's message for confab clients.
#[test]
fn a_part_message_reaches_the_others() {
    let s = server();
    let mut pia = s.user("pia");
    pia.create_room("talk", "").unwrap();
    let _quin = s.user("quin");
    let mut irc = Irc::sasl(&s.irc_addr, "quin", PW, &[]);
    irc.send("JOIN #talk");
    irc.expect(&[" 366 quin #talk "]);
    irc.send("PART #talk :bye everyone");
    irc.expect(&[":quin!quin@confab PART #talk :bye everyone"]);
    wait_event(&mut pia, "the leave", |m| {
        matches!(m, ServerMsg::Presence { event: PresenceEvent::Leave, message: Some(r), .. }
            if r == "bye everyone")
    });
    // And the other way.
    irc.send("JOIN #talk");
    irc.expect(&[" 366 quin #talk "]);
    pia.request(Request::Leave {
        room: "talk".into(),
        reason: Some("lunch".into()),
    })
    .unwrap();
    irc.expect(&[":pia!pia@confab PART #talk :lunch"]);
}

/// A QUIT message reaches the others as the QUIT's text.
#[test]
fn a_quit_message_reaches_the_others() {
    let s = server();
    // ria's only session will be the IRC one.
    drop(s.user("ria"));
    let _sal = s.user("sal");
    let mut sal = Irc::sasl(&s.irc_addr, "sal", PW, &[]);
    let mut ria = Irc::sasl(&s.irc_addr, "ria", PW, &[]);
    ria.send("QUIT :see you tomorrow");
    sal.expect(&[":ria!ria@confab QUIT :see you tomorrow"]);
}
