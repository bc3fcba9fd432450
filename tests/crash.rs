//! Crash safety: SIGKILL the server while clients are sending, restart it
//! on the same database, and check that every acknowledged message is in
//! history, in order, and that the database is intact.

mod util;

use util::sqlite;

use std::sync::{Arc, Mutex};
use std::time::Duration;
use util::TestServer;

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
