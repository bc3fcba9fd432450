//! Crash safety: SIGKILL the server while clients are sending, restart it
//! on the same database, and check that every acknowledged message is in
//! history, in order, and that the database is intact.

mod util;

use util::sqlite;

use confab::protocol::ErrorCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use util::{TestServer, WAIT, code};

#[test]
fn no_acknowledged_message_is_lost_when_the_server_is_killed_mid_stream() {
    let mut server = TestServer::start();
    const SENDERS: usize = 4;
    let clients: Vec<_> = (0..SENDERS)
        .map(|i| server.user(&format!("sender{i}")))
        .collect();
    // Per sender: the (id, body) of every acked message, in order.
    type Acked = Vec<Vec<(i64, String)>>;
    let acked: Arc<Mutex<Acked>> = Arc::new(Mutex::new(vec![Vec::new(); SENDERS]));
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let acked = acked.clone();
            std::thread::spawn(move || {
                for n in 0.. {
                    let body = format!("sender{i} message {n}");
                    match c.say("general", &body) {
                        Ok((id, _)) => acked.lock().unwrap()[i].push((id, body)),
                        Err(_) => break, // the server died
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    server.kill(); // SIGKILL: no shutdown path runs
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let total: usize = acked.iter().map(Vec::len).sum();
    assert!(
        total > 50,
        "the senders were busy when the server died ({total} acks)"
    );

    server.start_again();
    assert_eq!(sqlite(&server.db(), "PRAGMA integrity_check"), "ok");
    let mut reader = server.login("sender0");
    let mut stored = Vec::new();
    let mut before = None;
    loop {
        let (page, more) = reader.room_history("general", before, 100).unwrap();
        before = page.first().map(|m| m.id);
        let mut page: Vec<(i64, String)> = page.into_iter().map(|m| (m.id, m.body)).collect();
        page.extend(stored);
        stored = page;
        if !more {
            break;
        }
    }
    for (i, sent) in acked.iter().enumerate() {
        // Every acked message is there, with its id, and a sender's
        // messages are in the order they were sent.
        let mine: Vec<&(i64, String)> = stored
            .iter()
            .filter(|(_, b)| b.starts_with(&format!("sender{i} ")))
            .collect();
        for (k, m) in sent.iter().enumerate() {
            assert_eq!(
                mine.get(k).copied(),
                Some(m),
                "sender{i}'s message {k} lost or out of order"
            );
        }
    }
    eprintln!("server killed with {total} messages acked by {SENDERS} senders; lost: 0");
}

/// When the database refuses a write (here another process holds SQLite's
/// write lock past the server's 5 s busy timeout), the sender gets
/// `server_error`, nobody receives the message, and the next message once
/// the lock is gone is stored and delivered as usual.
#[test]
fn a_message_the_database_refuses_is_neither_acked_nor_delivered() {
    use r2d2_sqlite::rusqlite::Connection;
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let locker = Connection::open(server.db()).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let refused = alice.say("general", "while locked");
    assert_eq!(code(refused), ErrorCode::ServerError);
    locker.execute_batch("COMMIT").unwrap();
    alice.say("general", "after the lock").unwrap();
    let m = bob.next_message(WAIT).unwrap().expect("delivered");
    assert_eq!(
        m.body, "after the lock",
        "the refused message was never sent"
    );
    let stored = sqlite(&server.db(), "SELECT group_concat(body, '|') FROM messages");
    assert_eq!(stored.trim(), "after the lock");
}
