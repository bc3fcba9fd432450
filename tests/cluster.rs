//! Two confab nodes on one PostgreSQL database (a throwaway cluster the
//! tests start, `util::pg`): messages said on one node reach sessions on
//! the other, in one gap-free order that history shares, also when the
//! nodes' listening connections are cut mid-storm.
//!
//! Accounts, rooms and memberships made on one node reach the other's
//! memory at the user's next login there.

mod util;

use confab::client::Client;
use std::collections::HashSet;
use util::{TestServer, WAIT};

fn two_nodes() -> (TestServer, TestServer, String) {
    let url = util::pg::database();
    let a = TestServer::start_with(&["--db", &url]);
    let b = TestServer::start_with(&["--db", &url]);
    (a, b, url)
}

/// Every message event `c` receives until it has seen `n`, in order.
fn collect(c: &mut Client, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    while ids.len() < n {
        match c.next_message(WAIT).unwrap() {
            Some(m) => ids.push(m.id),
            None => panic!("only {} of {n} messages arrived: {ids:?}", ids.len()),
        }
    }
    ids
}

#[test]
fn alice_on_one_node_and_bob_on_the_other_chat_in_a_room_and_by_dm() {
    let (a, b, _url) = two_nodes();
    let mut alice = a.user("alice");
    let mut bob = b.user("bob");
    let (id, _) = alice.say("general", "hello from node A").unwrap();
    let m = bob
        .next_message(WAIT)
        .unwrap()
        .expect("alice's line on node B");
    assert_eq!(
        (m.id, m.from.as_str(), m.body.as_str()),
        (id, "alice", "hello from node A")
    );
    assert_eq!(m.room.as_deref(), Some("general"));

    let (id, _) = bob.say("general", "hi back from B").unwrap();
    let m = alice
        .next_message(WAIT)
        .unwrap()
        .expect("bob's line on node A");
    assert_eq!((m.id, m.from.as_str()), (id, "bob"));

    let (dm, _) = alice.dm("bob", "a secret across nodes").unwrap();
    let m = bob
        .next_message(WAIT)
        .unwrap()
        .expect("alice's DM on node B");
    assert_eq!((m.id, m.to.as_deref()), (dm, Some("bob")));
    // Delivered live on B: nothing is left for bob's next login.
    drop(bob);
    let mut bob = b.client();
    let session = bob.login("bob", util::PW).unwrap();
    assert_eq!(session.offline_dms, 0);
}

/// Four senders, two per node, at once; a reader on each node. Both
/// readers see every message once, in the same order, which is id order
/// without gaps and the order of history on both nodes; every acked id
/// is in it. Halfway, every node's listening connection is terminated.
#[test]
fn an_ordering_storm_across_nodes_has_one_gap_free_order_even_without_listeners() {
    const EACH: usize = 60;
    let (a, b, url) = two_nodes();
    let mut reader_a = a.user("reader_a");
    let mut reader_b = b.user("reader_b");
    let senders: Vec<Client> = vec![
        a.user("sender1"),
        a.user("sender2"),
        b.user("sender3"),
        b.user("sender4"),
    ];
    let threads: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(n, mut c)| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..EACH {
                    if n == 0 && i == EACH / 2 {
                        let cut = util::pg::psql(
                            &url,
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                             WHERE application_name = 'confab-watch' AND datname = current_database()",
                        );
                        assert_eq!(cut, "2", "both nodes' listeners were connected");
                    }
                    acked.push(c.say("general", &format!("s{n} line {i}")).unwrap().0);
                }
                acked
            })
        })
        .collect();
    let acked: HashSet<i64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let total = 4 * EACH;
    assert_eq!(acked.len(), total);
    let seen_a = collect(&mut reader_a, total);
    let seen_b = collect(&mut reader_b, total);
    assert_eq!(seen_a, seen_b, "both nodes deliver in one order");
    assert!(
        seen_a.windows(2).all(|w| w[1] == w[0] + 1),
        "id order without gaps: {seen_a:?}"
    );
    assert_eq!(seen_a.iter().copied().collect::<HashSet<_>>(), acked);
    assert_eq!(util::history_ids(&mut reader_a, "general", 100), seen_a);
    assert_eq!(util::history_ids(&mut reader_b, "general", 100), seen_a);
    // The listeners came back (the storm's second half was delivered by
    // them or by the poll; either way both reconnect).
    util::eventually(
        || "both listeners reconnect".into(),
        || {
            util::pg::psql(
                &url,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'confab-watch' AND datname = current_database()",
            ) == "2"
        },
    );
}

/// Node A is killed (SIGKILL) right after acking a stream of messages:
/// every acked one is in history read through node B, and B's members had
/// each delivered live.
#[test]
fn every_message_acked_by_a_killed_node_is_in_history_on_the_other() {
    let (mut a, b, _url) = two_nodes();
    let mut alice = a.user("alice");
    let mut bob = b.user("bob");
    let mut acked = Vec::new();
    for round in 0..5 {
        for i in 0..20 {
            acked.push(
                alice
                    .say("general", &format!("round {round} line {i}"))
                    .unwrap()
                    .0,
            );
        }
        a.kill();
        let live = collect(&mut bob, 20);
        assert_eq!(live, acked[acked.len() - 20..], "delivered on B in order");
        assert_eq!(
            util::history_ids(&mut bob, "general", 100),
            acked,
            "every acked message"
        );
        a.restart();
        alice = a.login("alice");
    }
}

/// An account, a room and a membership made on node A are usable on node
/// B: log in there with the password or with A's resume token, speak in
/// the room, and appear in `who` on B.
#[test]
fn a_user_and_room_made_on_one_node_are_usable_on_the_other() {
    let (a, b, _url) = two_nodes();
    let mut alice = a.client();
    let token = alice
        .register("alice", util::PW)
        .unwrap()
        .token
        .expect("a resume token");
    alice.create_room("made-on-a", "").unwrap();
    let mut carol = b.user("carol");

    // Resume on B with the token A issued.
    let mut alice_b = b.client();
    let session = alice_b.resume("alice", &token).unwrap();
    assert!(
        session.rooms.iter().any(|r| r.name == "made-on-a"),
        "B knows A's room at alice's login: {:?}",
        session.rooms
    );
    let (id, _) = alice_b.say("general", "from alice on B").unwrap();
    let m = carol.next_message(WAIT).unwrap().expect("alice's line");
    assert_eq!(m.id, id);
    alice_b.say("made-on-a", "in A's room, said on B").unwrap();
    // Her session on A sees both of her lines from B, in order.
    let bodies: Vec<String> = (0..2)
        .map(|_| {
            alice
                .next_message(WAIT)
                .unwrap()
                .expect("her line on A")
                .body
        })
        .collect();
    assert_eq!(bodies, ["from alice on B", "in A's room, said on B"]);
    let names: Vec<String> = carol
        .who("general")
        .unwrap()
        .into_iter()
        .map(|m| m.user)
        .collect();
    assert!(names.contains(&"alice".to_string()), "{names:?}");
}
