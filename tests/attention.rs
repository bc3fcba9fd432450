//! Unread state kept by the server: counts and mentions per room and
//! conversation, surviving reconnects and shared between devices.

mod util;

use confab::client::Conversation;
use confab::protocol::{ServerMsg, Unread};
use util::{TestServer, WAIT};

fn find<'a>(unread: &'a [Unread], room: Option<&str>, with: Option<&str>) -> Option<&'a Unread> {
    unread
        .iter()
        .find(|u| u.room.as_deref() == room && u.with.as_deref() == with)
}

#[test]
fn unread_counts_and_mentions_are_summarised_at_login_and_survive_reconnects() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    alice.say("general", "history before bob existed").unwrap();
    drop(server.user("bob"));

    alice.say("general", "one").unwrap();
    alice.say("general", "hey @bob, look").unwrap();
    alice.say("general", "bobby is not bob-bot").unwrap();
    alice.dm("bob", "psst").unwrap();
    alice.dm("bob", "psst again").unwrap();

    let mut bob = server.client();
    let session = bob.login("bob", util::PW).unwrap();
    let general = find(&session.unread, Some("general"), None).expect("general has unread");
    assert_eq!(
        (general.count, general.mentions),
        (3, 1),
        "older history is not unread"
    );
    let dms = find(&session.unread, None, Some("alice")).expect("DMs unread");
    assert_eq!(dms.count, 2);

    // Reading general up to its newest message clears it, for good.
    let (page, _) = bob.room_history("general", None, 10).unwrap();
    let newest = page.last().unwrap().id;
    bob.mark_read(&Conversation::Room("general".into()), newest)
        .unwrap();
    drop(bob);
    let mut bob = server.client();
    let session = bob.login("bob", util::PW).unwrap();
    assert!(
        find(&session.unread, Some("general"), None).is_none(),
        "{:?}",
        session.unread
    );
    assert_eq!(find(&session.unread, None, Some("alice")).unwrap().count, 2);
    // Reading never goes backwards.
    bob.mark_read(&Conversation::Room("general".into()), 1)
        .unwrap();
    let again = server.client().login("bob", util::PW).unwrap();
    assert!(find(&again.unread, Some("general"), None).is_none());
}

#[test]
fn reading_on_one_device_tells_the_others() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    drop(server.user("bob"));
    let (id, _) = alice.dm("bob", "hello").unwrap();
    let mut laptop = server.login("bob");
    let mut phone = server.login("bob");
    phone
        .mark_read(&Conversation::User("alice".into()), id)
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let ev = laptop
            .next_event(deadline.saturating_duration_since(std::time::Instant::now()))
            .unwrap()
            .expect("the laptop hears about it");
        if let ServerMsg::Read { with, id: read, .. } = ev {
            assert_eq!((with.as_deref(), read), (Some("alice"), id));
            break;
        }
    }
    let session = server.client().login("bob", util::PW).unwrap();
    assert!(find(&session.unread, None, Some("alice")).is_none());
}

#[test]
fn joining_a_room_does_not_make_its_history_unread() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    alice.create_room("rust", "").unwrap();
    for i in 0..5 {
        alice.say("rust", &format!("old {i}")).unwrap();
    }
    let mut bob = server.user("bob");
    bob.join("rust").unwrap();
    alice.say("rust", "new one for bob").unwrap();
    drop(bob);
    let session = server.client().login("bob", util::PW).unwrap();
    assert_eq!(find(&session.unread, Some("rust"), None).unwrap().count, 1);
}
