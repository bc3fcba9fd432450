//! The real server on PostgreSQL (`--db postgres://...`), in a throwaway
//! cluster the tests start themselves (`util::pg`): chat, direct messages,
//! history, search and a killed server, end to end over TLS. (The store
//! contract suite checks every store call on PostgreSQL; this checks the
//! server uses it; several nodes: tests/cluster.rs.)

mod util;

use util::{TestServer, WAIT};

fn server_on_postgres() -> (TestServer, String) {
    let url = util::pg::database();
    let server = TestServer::start_with(&["--db", &url]);
    (server, url)
}

#[test]
fn chat_history_and_search_on_postgres_survive_a_killed_server() {
    let (mut server, url) = server_on_postgres();
    let mut bob = server.user("bob");
    let mut alice = server.user("alice");
    let mut ids = Vec::new();
    for i in 0..60 {
        ids.push(alice.say("general", &format!("line {i} café")).unwrap().0);
    }
    for &id in &ids {
        let m = bob.next_message(WAIT).unwrap().expect("a room message");
        assert_eq!(m.id, id, "bob gets alice's lines in id order");
    }
    let (dm, _) = alice.dm("bob", "psst").unwrap();
    let m = bob.next_message(WAIT).unwrap().expect("a DM");
    assert_eq!((m.id, m.to.as_deref()), (dm, Some("bob")));
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1) && dm == ids[59] + 1);
    let (found, _) = bob.search("cafe line", None, Some(5)).unwrap();
    assert_eq!(found.len(), 5, "accent-folded search through the server");
    // What psql sees is what the server acked.
    assert_eq!(
        util::pg::psql(&url, "SELECT count(*), max(id) FROM messages"),
        format!("61|{dm}")
    );

    // SIGKILL: every acked message is in PostgreSQL.
    drop((alice, bob));
    server.restart();
    let mut alice = server.login("alice");
    let all = util::history_ids(&mut alice, "general", 25);
    assert_eq!(all, ids, "every acked message, in order, after restart");
    // Ids go on from the counter after a restart.
    let (next, _) = alice.say("general", "after restart").unwrap();
    assert_eq!(next, dm + 1);
}

#[test]
fn an_unreachable_database_is_a_clear_error_at_start() {
    let err = util::start_refused(&[
        "--db",
        "postgres://confab:hunter2@127.0.0.1:1/chat",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(
        err.contains("cannot open database postgres://confab:***@127.0.0.1:1/chat"),
        "{err}"
    );
    assert!(
        !err.contains("hunter2"),
        "the password is never printed: {err}"
    );
}
