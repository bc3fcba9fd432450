//! Capacity: session slots, the wait queue with live positions, timeouts,
//! slow and hostile clients, flood control, per-IP limits, stats, and
//! shutdown on SIGTERM. All against the real server over real TLS.

mod util;

use confab::client::{Client, ClientError};
use confab::protocol::{
    ClientFrame, ErrorCode, PROTOCOL_VERSION, Request, ServerMsg, ServerStats, encode_json,
};
use confab::tls::{Trust, client_connector};
use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use util::{PW, TestServer, WAIT, expect_closing};

fn hello(req: u64) -> Vec<u8> {
    encode_json(&ClientFrame {
        req: Some(req),
        request: Request::Hello {
            version: PROTOCOL_VERSION,
            client: "capacity test".into(),
        },
    })
}

fn frame(req: u64, request: Request) -> Vec<u8> {
    encode_json(&ClientFrame {
        req: Some(req),
        request,
    })
}

/// The next frame's message, failing the test after WAIT.
fn next(c: &mut Client) -> (Option<u64>, ServerMsg) {
    let f = c
        .recv_frame(Instant::now() + WAIT)
        .unwrap_or_else(|e| panic!("expected a frame: {e}"));
    (f.req, f.msg)
}

/// A TLS client that has sent `hello` and expects to be queued.
fn queued_client(server: &TestServer) -> Client {
    let mut c = server.raw_client();
    c.send_frame(&hello(1)).unwrap();
    c
}

fn expect_position(c: &mut Client, position: u32, length: u32) {
    match next(c).1 {
        ServerMsg::Queued {
            position: p,
            length: l,
            ..
        } => assert_eq!((p, l), (position, length)),
        other => panic!("expected queued {position}/{length}, got {other:?}"),
    }
}

fn stats(admin: &mut Client) -> ServerStats {
    match admin.request(Request::Stats).unwrap() {
        ServerMsg::Stats(s) => s,
        other => panic!("{other:?}"),
    }
}

#[test]
fn full_server_queues_clients_with_live_positions_and_refuses_when_the_queue_is_full() {
    let server = TestServer::start_with(&["--max-sessions", "2", "--queue-limit", "2"]);
    let alice = server.user("alice");
    let _bob = server.user("bob");

    let mut c3 = queued_client(&server);
    expect_position(&mut c3, 1, 1);
    let mut c4 = queued_client(&server);
    expect_position(&mut c4, 2, 2);
    let mut c5 = server.raw_client();
    let message = expect_closing(&mut c5, ErrorCode::ServerFull);
    assert_eq!(message, "server full, try again later");

    alice.quit().unwrap();
    assert!(matches!(next(&mut c3).1, ServerMsg::Admitted { .. }));
    assert!(
        matches!(next(&mut c3), (Some(1), ServerMsg::Welcome { .. })),
        "the hello sent while queued is answered"
    );
    expect_position(&mut c4, 1, 1);
    // The admitted client is a normal session now.
    let reply = c3
        .request(Request::Login {
            user: "bob".into(),
            password: PW.into(),
        })
        .unwrap();
    assert!(matches!(reply, ServerMsg::LoggedIn { .. }));
}

#[test]
fn queued_clients_that_leave_move_the_others_up_and_only_ping_and_quit_work_in_line() {
    let server = TestServer::start_with(&["--max-sessions", "1", "--queue-limit", "5"]);
    let _alice = server.user("alice");
    let mut a = queued_client(&server);
    expect_position(&mut a, 1, 1);
    let b = queued_client(&server);
    let mut c = queued_client(&server);
    expect_position(&mut c, 3, 3);

    drop(b); // hangs up
    expect_position(&mut c, 2, 2);

    a.send_frame(&frame(7, Request::Ping)).unwrap();
    assert!(matches!(next(&mut a), (Some(7), ServerMsg::Pong)));
    a.send_frame(&frame(8, Request::Rooms)).unwrap();
    assert!(matches!(
        next(&mut a),
        (
            Some(8),
            ServerMsg::Error {
                code: ErrorCode::NotAdmitted,
                ..
            }
        )
    ));
    a.send_frame(&frame(9, Request::Quit)).unwrap();
    assert!(matches!(next(&mut a), (Some(9), ServerMsg::Ok)));
    expect_position(&mut c, 1, 1);
}

#[test]
fn a_client_waiting_too_long_is_dropped_with_a_reason() {
    let server = TestServer::start_with(&["--max-sessions", "1", "--queue-timeout", "1"]);
    let _alice = server.user("alice");
    let mut c = queued_client(&server);
    expect_position(&mut c, 1, 1);
    expect_closing(&mut c, ErrorCode::QueueTimeout);
}

#[test]
fn an_admitted_client_that_never_logs_in_is_dropped() {
    let server = TestServer::start_with(&["--login-timeout", "1"]);
    let mut c = server.client();
    expect_closing(&mut c, ErrorCode::LoginTimeout);
}

/// 500 TCP connections that say nothing (and some that stall mid-TLS
/// handshake) hold neither the accept loop nor session slots: a real
/// client logs in while they are all open. The handshake timeout is set far
/// beyond the test's wait, so a blocked server would fail the test.
#[test]
fn five_hundred_silent_connections_do_not_keep_a_real_client_out() {
    let server = TestServer::start_with(&["--max-sessions", "8", "--handshake-timeout", "120"]);
    let mut silent = Vec::new();
    for i in 0..500 {
        let mut tcp = TcpStream::connect(&server.addr).unwrap();
        if i % 10 == 0 {
            // The first bytes of a TLS ClientHello record, then nothing.
            tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
                .unwrap();
        }
        silent.push(tcp);
    }
    let started = Instant::now();
    let mut alice = server.client();
    alice.register("alice", PW).unwrap();
    alice.say("general", "I got in").unwrap();
    assert!(started.elapsed() < WAIT);
    drop(silent);
}

/// Many clients contend for 2 slots at once: all get in, never more than
/// 2 are inside together, and queued clients are admitted in the order they
/// were queued (the server logs each admission's ticket).
#[test]
fn concurrent_clients_are_admitted_fairly_with_no_lost_wakeup() {
    let server = TestServer::start_with(&["--max-sessions", "2", "--queue-limit", "64"]);
    let connector = client_connector(&Trust::CaFile(util::certs().join("ca.pem"))).unwrap();
    let intervals = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..24)
        .map(|i| {
            let (addr, connector, intervals) =
                (server.addr.clone(), connector.clone(), intervals.clone());
            std::thread::spawn(move || {
                let mut positions = Vec::new();
                let mut c = Client::connect_with_progress(
                    &addr,
                    "localhost",
                    &connector,
                    WAIT,
                    &mut |ev| {
                        if let ServerMsg::Queued { position, .. } = ev {
                            positions.push(*position);
                        }
                    },
                )
                .expect("every client is admitted");
                let inside = Instant::now();
                c.register(&format!("user{i}"), PW).unwrap();
                c.say("general", "hello").unwrap();
                std::thread::sleep(Duration::from_millis(20));
                // [welcome received, quit sent] lies inside the time the
                // server held this client's slot, whatever the scheduling.
                let leaving = Instant::now();
                c.quit().unwrap();
                intervals.lock().unwrap().push((inside, leaving));
                // Positions only ever go down.
                assert!(positions.windows(2).all(|w| w[1] < w[0]), "{positions:?}");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let intervals = intervals.lock().unwrap();
    for (start, _) in intervals.iter() {
        let inside = intervals
            .iter()
            .filter(|(s, e)| s <= start && start < e)
            .count();
        assert!(inside <= 2, "{inside} clients inside at once");
    }
    let log = server.log();
    let tickets: Vec<u64> = log
        .lines()
        .filter_map(|l| l.split("queue: admitted ticket ").nth(1))
        .map(|t| t.trim().parse().unwrap())
        .collect();
    assert!(
        tickets.len() >= 10,
        "most clients had to queue: {}",
        tickets.len()
    );
    let mut sorted = tickets.clone();
    sorted.sort_unstable();
    assert_eq!(tickets, sorted, "FIFO admission");
}

/// A member that stops reading is cut off when its bounded outbox fills;
/// the rest of the room receives everything.
#[test]
fn a_client_that_never_reads_is_cut_off_and_the_room_keeps_receiving() {
    let server = TestServer::start_with(&["--outbox-limit", "1048576"]);
    let mut alice = server.admin_user("alice");
    let _sloth = server.user("sloth"); // never reads again
    let mut reader = server.user("reader");
    const N: usize = 5000;
    let receiver = std::thread::spawn(move || {
        let mut got = 0;
        while got < N {
            match reader.next_message(WAIT).unwrap() {
                Some(_) => got += 1,
                None => break,
            }
        }
        got
    });
    let body = "x".repeat(4000);
    for _ in 0..N {
        alice.say("general", &body).unwrap();
    }
    assert_eq!(receiver.join().unwrap(), N, "the reader got every message");
    assert_eq!(stats(&mut alice).slow_consumers_total, 1);
    assert!(server.log().contains("too slow to read"));
}

#[test]
fn flooding_gets_slow_down_then_a_disconnect_and_only_allowed_messages_are_stored() {
    let server = TestServer::start_with(&["--flood-burst", "10", "--flood-rate", "5"]);
    let mut alice = server.user("alice");
    let mut codes = Vec::new();
    for i in 0..40 {
        match alice.say("general", &format!("spam {i}")) {
            Ok(_) => codes.push(None),
            Err(ClientError::Server { code, .. }) => codes.push(Some(code)),
            Err(ClientError::Closed {
                reason: Some((code, _)),
            }) => {
                codes.push(Some(code));
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let allowed = codes.iter().filter(|c| c.is_none()).count();
    assert!((10..=12).contains(&allowed), "{codes:?}");
    assert_eq!(codes[10], Some(ErrorCode::SlowDown));
    assert_eq!(
        codes.last().unwrap(),
        &Some(ErrorCode::Flooding),
        "{codes:?}"
    );
    let mut bob = server.user("bob");
    let (history, _) = bob.room_history("general", None, 100).unwrap();
    assert_eq!(history.len(), allowed, "refused messages were not stored");
}

#[test]
fn per_ip_limit_refuses_extra_connections_with_a_reason() {
    let server = TestServer::start_with(&["--max-per-ip", "2"]);
    let a = server.user("alice");
    let _b = server.user("bob");
    let mut c = server.raw_client();
    expect_closing(&mut c, ErrorCode::TooManyConnections);
    a.quit().unwrap();
    // The freed connection can be used again (the count is released).
    let deadline = Instant::now() + WAIT;
    loop {
        let mut c = server.client();
        match c.login("alice", PW) {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn stats_are_for_admins_only_and_count_what_happened() {
    let server = TestServer::start_with(&["--max-sessions", "3", "--queue-limit", "0"]);
    let mut alice = server.admin_user("alice");
    let mut bob = server.user("bob");
    let err = bob.request(Request::Stats).unwrap_err();
    assert!(matches!(
        err,
        ClientError::Server {
            code: ErrorCode::Forbidden,
            ..
        }
    ));
    let _carol = server.user("carol");
    let mut dave = server.raw_client();
    expect_closing(&mut dave, ErrorCode::ServerFull);
    let s = stats(&mut alice);
    assert_eq!((s.active, s.queued, s.max_sessions), (3, 0, 3));
    assert_eq!(s.admitted_total, 3);
    assert_eq!(s.rejected_total, 1);
}

/// SIGTERM with sessions and a queued client: everyone is told, the process
/// exits 0 within 5 s, and every message acked before the signal (even ones
/// sent just before it, pipelined) is in the database afterwards.
#[test]
fn sigterm_tells_everyone_exits_cleanly_and_keeps_every_acked_message() {
    let mut server = TestServer::start_with(&["--max-sessions", "1", "--queue-limit", "2"]);
    let mut alice = server.user("alice");
    let mut queued = queued_client(&server);
    expect_position(&mut queued, 1, 1);
    // Some messages acked for sure, then a pipeline still in flight when
    // the signal comes.
    let mut acked = Vec::new();
    for i in 0..20 {
        acked.push(alice.say("general", &format!("acked {i}")).unwrap().0);
    }
    for i in 0..200u64 {
        alice
            .send_frame(&frame(
                1000 + i,
                Request::Say {
                    room: "general".into(),
                    body: format!("pipelined {i}"),
                    reply_to: None,
                    notice: false,
                },
            ))
            .unwrap();
    }
    let status = server
        .terminate(Duration::from_secs(5))
        .expect("exits within 5 s");
    assert!(status.success(), "exit status {status:?}");

    let mut told = false;
    loop {
        match alice.recv_frame(Instant::now() + WAIT) {
            Ok(f) => match f.msg {
                ServerMsg::Ack { id, .. } => acked.push(id),
                ServerMsg::Closing { code, .. } => {
                    assert_eq!(code, ErrorCode::ShuttingDown);
                    told = true;
                }
                _ => {}
            },
            Err(ClientError::Closed { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(told, "the session was told the server is shutting down");
    expect_closing(&mut queued, ErrorCode::ShuttingDown);

    server.start_again();
    let mut alice = server.login("alice");
    let mut stored: Vec<i64> = Vec::new();
    let mut before = None;
    loop {
        let (page, more) = alice.room_history("general", before, 100).unwrap();
        before = page.first().map(|m| m.id);
        stored.extend(page.iter().map(|m| m.id));
        if !more {
            break;
        }
    }
    for id in &acked {
        assert!(stored.contains(id), "acked message {id} was lost");
    }
    assert_eq!(util::sqlite(&server.db(), "PRAGMA integrity_check"), "ok");
}

/// Issue 14, item 1: thousands of silent TCP connections from one address
/// used to take every front-door thread (the per-address count came after
/// the handshake) and lock out clients from every other address.
#[test]
fn a_connection_flood_from_one_address_does_not_lock_out_another() {
    let server = TestServer::start_with(&[
        "--max-per-ip",
        "16",
        // Long enough that, without the fix, the flood outlives the wait.
        "--handshake-timeout",
        "60",
    ]);
    let addr: std::net::SocketAddr = server.addr.parse().unwrap();
    let attacker = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let mut flood = Vec::new();
    for _ in 0..2500 {
        match util::tcp_from(attacker, addr) {
            Ok(s) => flood.push(s),
            // The server may already be closing the surplus.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            Err(e) => panic!("opening the flood: {e}"),
        }
    }
    assert!(
        flood.len() >= 2000,
        "only {} flood connections",
        flood.len()
    );
    // A real client from 127.0.0.1 gets in and logs in, while the flood is
    // still connected.
    let deadline = Instant::now() + WAIT;
    let mut last = String::new();
    let logged_in = loop {
        let connector = client_connector(&Trust::CaFile(util::certs().join("ca.pem"))).unwrap();
        match Client::connect_with(
            &server.addr,
            "localhost",
            &connector,
            Duration::from_secs(2),
        )
        .and_then(|mut c| c.register("alice", PW).map(|_| c))
        {
            Ok(c) => break Some(c),
            Err(e) if Instant::now() < deadline => {
                last = e.to_string();
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => {
                last = e.to_string();
                break None;
            }
        }
    };
    assert!(logged_in.is_some(), "locked out by the flood: {last}");
    drop(flood);
}

/// The server's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Issue 14, item 7: a client that pipelines requests and never reads the
/// replies grew the server's memory without bound (2,000,000 pings: +34
/// MB, never cut off). Its unread replies now count against the outbox
/// bound: it is cut off, and the server's memory stays bounded.
#[test]
fn a_client_that_never_reads_its_replies_is_cut_off_with_bounded_memory() {
    let server = TestServer::start_with(&["--outbox-limit", "1048576"]);
    let mut c = server.client();
    let before = rss_kib(server.pid());
    let mut batch = Vec::new();
    for i in 0..1000u64 {
        batch.extend_from_slice(&encode_json(&ClientFrame {
            req: Some(i),
            request: Request::Ping,
        }));
    }
    let mut sent = 0u64;
    let cut_off = loop {
        if sent >= 2_000_000 {
            break false;
        }
        match c.send_frame(&batch) {
            Ok(()) => sent += 1000,
            Err(_) => break true,
        }
    };
    let grown = rss_kib(server.pid()).saturating_sub(before);
    assert!(
        cut_off,
        "never cut off after {sent} pings (RSS +{grown} KiB)"
    );
    assert!(grown < 16 * 1024, "RSS grew by {grown} KiB");
    let deadline = Instant::now() + WAIT;
    while !server.log().contains("replies unread") {
        assert!(Instant::now() < deadline, "no log line:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The server runs with a small per-thread allocator cache (so idle
/// sessions do not each keep one full of freed memory), set by running
/// itself again: same process, same arguments, still serving. An
/// operator's own tcache tunable is kept as it is. (Read from the server's
/// start-up log: glibc 2.36 rewrites the tunables in the copy of the
/// environment that /proc/PID/environ shows, so that file cannot tell.)
#[test]
fn the_server_runs_with_a_small_allocator_cache_unless_the_operator_set_one() {
    let said = |s: &TestServer| -> String {
        util::eventually(
            || format!("no allocator line in the log:\n{}", s.log()),
            || s.log().contains("allocator: "),
        );
        let log = s.log();
        let line = log.lines().find(|l| l.contains("allocator: ")).unwrap();
        line[line.find("allocator: ").unwrap()..].to_owned()
    };
    let s = TestServer::start();
    assert_eq!(
        said(&s),
        format!(
            "allocator: GLIBC_TUNABLES={}",
            confab::server::allocator::TCACHE_TUNABLE
        )
    );
    let mut c = s.user("alice");
    c.say("general", "still serving after the exec").unwrap();

    let mine = "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0";
    let s = TestServer::start_with_env(&[], &[("GLIBC_TUNABLES", mine)]);
    assert_eq!(said(&s), format!("allocator: GLIBC_TUNABLES={mine}"));
    let mut c = s.user("bob");
    c.say("general", "served untouched").unwrap();

    let other = "glibc.malloc.arena_max=2";
    let s = TestServer::start_with_env(&[], &[("GLIBC_TUNABLES", other)]);
    assert_eq!(
        said(&s),
        "allocator: GLIBC_TUNABLES=glibc.malloc.arena_max=2:glibc.malloc.tcache_max=64"
    );
}
