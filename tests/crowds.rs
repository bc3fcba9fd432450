//! Crowds: bounded replies in big rooms, member paging, and presence that
//! is coalesced without ever losing the final state. Behaviour only; the
//! figures are in `make bench` (docs/BENCHMARKS.md).

mod util;

use confab::client::Client;
use confab::protocol::{JOIN_MEMBERS, PresenceEvent, Request, ServerMsg};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use util::{PW, TestServer, WAIT};

/// Registers `n` users named `{prefix}{i}` (each in `general`) and leaves
/// them offline.
fn register_many(server: &TestServer, prefix: &str, n: usize) {
    for i in 0..n {
        let mut c = server.client();
        c.register(&format!("{prefix}{i:03}"), PW).unwrap();
        c.quit().unwrap();
    }
}

/// The online state a watcher believes, from a member list and then
/// presence events.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct View {
    members: BTreeMap<String, bool>,
}

impl View {
    fn apply(&mut self, room: &str, msg: &ServerMsg) {
        if let ServerMsg::Presence {
            room: r,
            user,
            event,
            ..
        } = msg
        {
            if r != room {
                return;
            }
            match event {
                PresenceEvent::Join => {
                    self.members.insert(user.clone(), true);
                }
                PresenceEvent::Leave => {
                    self.members.remove(user);
                }
                PresenceEvent::Online | PresenceEvent::Offline => {
                    if let Some(online) = self.members.get_mut(user) {
                        *online = *event == PresenceEvent::Online;
                    }
                }
                PresenceEvent::Away | PresenceEvent::Back => {}
            }
        }
    }
}

/// What the server says the room is now.
fn server_view(c: &mut Client, room: &str) -> View {
    let page = c.who_page(room, None, Some(1000)).unwrap();
    assert!(!page.more);
    View {
        members: page
            .members
            .into_iter()
            .map(|m| (m.user, m.online))
            .collect(),
    }
}

/// Applies events until `watcher`'s view equals the server's, or fails
/// after WAIT.
fn converge(watcher: &mut Client, observer: &mut Client, room: &str, view: &mut View) {
    let deadline = Instant::now() + WAIT;
    loop {
        while let Some(ev) = watcher.next_event(Duration::from_millis(100)).unwrap() {
            view.apply(room, &ev);
        }
        let truth = server_view(observer, room);
        if *view == truth {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the watcher's view never caught up:\n  seen:   {view:?}\n  server: {truth:?}"
        );
    }
}

/// Issue 15: the `joined` reply stays bounded in a big room, says how many
/// there are and that more exist, and `who` pages through every member by
/// name.
#[test]
fn a_big_room_gives_a_bounded_first_page_and_pages_through_members() {
    let server = TestServer::start_with(&["--presence-room-limit", "50"]);
    register_many(&server, "m", JOIN_MEMBERS + 20);
    let mut alice = server.user("alice");
    let joined = alice.join("general").unwrap();
    let total = JOIN_MEMBERS + 21;
    assert_eq!(joined.room.members as usize, total);
    assert_eq!(joined.members.len(), JOIN_MEMBERS);
    assert!(joined.more_members);
    assert_eq!(joined.online, 1, "only alice is online");
    assert_eq!(joined.members[0].user, "alice", "online members come first");
    assert!(!joined.live_presence, "over the presence limit");
    let mut names = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = alice
            .who_page("general", after.as_deref(), Some(37))
            .unwrap();
        assert!(page.members.len() <= 37);
        assert_eq!(page.online, 1);
        names.extend(page.members.iter().map(|m| m.user.clone()));
        if !page.more {
            break;
        }
        after = page.members.last().map(|m| m.user.clone());
    }
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "by name, each once");
    assert_eq!(names.len(), total);
}

/// Issue 15: a room over the presence limit sends no presence at all (its
/// members would otherwise get O(n) events per login), while a small room
/// still does.
#[test]
fn a_room_over_the_presence_limit_sends_no_presence() {
    let server = TestServer::start_with(&["--presence-room-limit", "3"]);
    let mut alice = server.user("alice");
    alice.create_room("small", "").unwrap();
    let mut bob = server.user("bob");
    bob.join("small").unwrap();
    // Bob's join reaches alice through `small` (2 members), not through
    // `general` (which has 2 members too: still small).
    let mut carol = server.user("carol");
    carol.join("small").unwrap();
    let _dave = server.user("dave"); // general now has 4: over the limit
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|(room, user, _): &(String, String, PresenceEvent)| room == "small" && user == "carol")
    {
        assert!(Instant::now() < deadline, "no presence in small: {seen:?}");
        if let Some(ServerMsg::Presence {
            room, user, event, ..
        }) = alice.next_event(Duration::from_millis(200)).unwrap()
        {
            seen.push((room, user, event));
        }
    }
    // Dave's registration made general too big before it was announced.
    while let Some(ev) = alice.next_event(Duration::from_millis(300)).unwrap() {
        if let ServerMsg::Presence {
            room, user, event, ..
        } = ev
        {
            seen.push((room, user, event));
        }
    }
    assert!(
        !seen.iter().any(|(_, user, _)| user == "dave"),
        "no presence from a room over the limit: {seen:?}"
    );
}

/// Issue 15: presence coalescing never loses the final state: a user who
/// comes online and goes offline at once ends offline for everyone, and a
/// watcher who applies the events it gets ends with the server's view
/// after a storm of joins, leaves, logins and logouts.
#[test]
fn presence_through_a_storm_of_joins_and_leaves_ends_in_the_true_state() {
    let server = TestServer::start();
    let mut watcher = server.user("watcher");
    watcher.create_room("busy", "").unwrap();
    let mut observer = server.user("observer");
    let mut view = View::default();
    for m in watcher.join("busy").unwrap().members {
        view.members.insert(m.user, m.online);
    }
    register_many(&server, "s", 12);
    let storm: Vec<_> = (0..12)
        .map(|i| {
            let mut c = server.login(&format!("s{i:03}"));
            std::thread::spawn(move || {
                for round in 0..4 {
                    c.join("busy").unwrap();
                    if (i + round) % 3 != 0 {
                        c.request(Request::Leave {
                            room: "busy".into(),
                            reason: None,
                        })
                        .unwrap();
                    }
                }
                // Some stay online, some go offline at once.
                if i % 2 == 0 {
                    c.quit().unwrap();
                    None
                } else {
                    Some(c)
                }
            })
        })
        .collect();
    let _still_online: Vec<Client> = storm
        .into_iter()
        .filter_map(|t| t.join().unwrap())
        .collect();
    // A login followed by a logout within one coalescing window.
    let mut flash = server.client();
    flash.login("s001", PW).unwrap();
    flash.quit().unwrap();
    converge(&mut watcher, &mut observer, "busy", &mut view);
    assert!(view.members.contains_key("watcher"));
}
