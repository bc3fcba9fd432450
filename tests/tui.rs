//! The real `confab` binary in a real terminal (tmux), against a real
//! server: chatting with a library client, trust on first use, and the
//! refusal when a server's certificate changes.

mod util;

use confab::protocol::ServerMsg;
use std::path::Path;
use std::time::{Duration, Instant};
use util::tmux::Tmux;
use util::{PW, TestServer, WAIT};

/// The shell command that runs the client; the pane stays open after it
/// exits so its last words can be read.
fn confab(args: &str, home: &Path) -> String {
    confab_with(args, home, Some(PW))
}

/// [`confab`] with `password` in CONFAB_PASSWORD, or none (the client
/// asks for it).
fn confab_with(args: &str, home: &Path, password: Option<&str>) -> String {
    let password = password.map_or(String::new(), |p| format!("CONFAB_PASSWORD='{p}'"));
    format!(
        "env HOME={} {password} {} {args}; echo confab exited with $?; sleep 60",
        home.display(),
        env!("CARGO_BIN_EXE_confab"),
    )
}

/// Arguments for alice on `server`, certificates checked against the
/// known-hosts file `known` (trust on first use).
fn tofu(server: &TestServer, known: &Path) -> String {
    format!(
        "--known-hosts {} alice@localhost:{}",
        known.display(),
        port(server)
    )
}

fn port(server: &TestServer) -> &str {
    server.addr.rsplit(':').next().unwrap()
}

#[test]
fn the_terminal_client_chats_with_a_library_client() {
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let mut bob = server.user("bob");
    let ca = util::certs().join("ca.pem");
    let tmux = Tmux::run(&confab(
        &format!(
            "--register --ca {} alice@localhost:{}",
            ca.display(),
            port(&server)
        ),
        home.path(),
    ));
    tmux.wait_for("[alice online] #general");
    tmux.wait_for("● alice");

    bob.say("general", "hi from the library").unwrap();
    tmux.wait_for("<bob> hi from the library");

    tmux.type_text("hello from the terminal");
    tmux.keys(&["Enter"]);
    let got = bob
        .next_message(WAIT)
        .unwrap()
        .expect("bob receives alice's line");
    assert_eq!(
        (got.from.as_str(), got.body.as_str()),
        ("alice", "hello from the terminal")
    );
    // The ack may come after bob has the message (deliveries go first):
    // wait for it rather than look once.
    let screen = tmux.wait_until("the line, acked", |s| {
        s.contains("<alice> hello from the terminal") && !s.contains("sending")
    });
    assert!(screen.contains("<bob> hi from the library"), "{screen}");

    // A direct message opens a window with an unread count.
    bob.dm("alice", "a private word").unwrap();
    tmux.wait_for("@bob (1)");

    // One Ctrl-C does not quit (a stray one loses nothing); a second does.
    tmux.keys(&["C-c"]);
    tmux.wait_for("press Ctrl-C again to quit");
    tmux.keys(&["C-c"]);
    tmux.wait_for("confab exited with 0");
}

#[test]
fn first_connection_asks_about_an_unknown_certificate_and_remembers_it() {
    let server = TestServer::start();
    drop(server.user("alice"));
    let home = tempfile::tempdir().unwrap();
    let known = home.path().join("known_hosts");
    let cmd = confab(&tofu(&server, &known), home.path());
    let tmux = Tmux::run(&cmd);
    let screen = tmux.wait_for("Are you sure you want to continue connecting (yes/no)?");
    assert!(
        screen.contains("Certificate SHA-256 fingerprint: "),
        "{screen}"
    );
    tmux.type_text("yes");
    tmux.keys(&["Enter"]);
    tmux.wait_for("[alice online]");
    let remembered = std::fs::read_to_string(&known).unwrap();
    assert!(
        remembered.starts_with(&format!("localhost:{} ", port(&server))),
        "{remembered}"
    );
    tmux.keys(&["C-c", "C-c"]);
    tmux.wait_for("confab exited with 0");
    drop(tmux);

    // Second time: no question, straight in.
    let tmux = Tmux::run(&cmd);
    let screen = tmux.wait_for("[alice online]");
    assert!(!screen.contains("yes/no"), "{screen}");
    tmux.keys(&["C-c", "C-c"]);
    tmux.wait_for("confab exited with 0");
}

#[test]
fn a_changed_certificate_is_refused_loudly() {
    let server = TestServer::start();
    drop(server.user("alice"));
    let home = tempfile::tempdir().unwrap();
    let known = home.path().join("known_hosts");
    let wrong = ["00"; 32].join(":");
    std::fs::write(&known, format!("localhost:{} {wrong}\n", port(&server))).unwrap();
    let tmux = Tmux::run(&confab(&tofu(&server, &known), home.path()));
    let screen = tmux.wait_for("confab exited with 1");
    assert!(
        screen.contains("SERVER CERTIFICATE HAS CHANGED"),
        "{screen}"
    );
    assert!(screen.contains("remove line 1"), "{screen}");
    assert!(!screen.contains("online"), "{screen}");
}

#[test]
fn a_refused_login_offers_to_register_with_the_password_already_typed() {
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let ca = util::certs().join("ca.pem");
    // No account yet and no --register: the dialog offers to create it.
    let tmux = Tmux::run(&confab(
        &format!("--ca {} newbie@localhost:{}", ca.display(), port(&server)),
        home.path(),
    ));
    tmux.wait_for("Log in to confab");
    // The field left empty: Register uses the password already given, and
    // asks for it once more, as --register does.
    tmux.keys(&["Tab", "Tab", "Enter"]);
    tmux.wait_for("Type the same password again");
    tmux.type_text(PW);
    tmux.keys(&["Enter"]);
    tmux.wait_for("[newbie online] #general");
    let mut check = server.client();
    check.login("newbie", PW).expect("the account exists now");
}

#[test]
fn enter_in_the_login_dialog_logs_in_and_a_taken_name_is_not_offered() {
    let server = TestServer::start();
    drop(server.user("alice"));
    let home = tempfile::tempdir().unwrap();
    let ca = util::certs().join("ca.pem");
    let cmd = confab_with(
        &format!("--ca {} alice@localhost:{}", ca.display(), port(&server)),
        home.path(),
        Some("not-her-password"),
    );
    let tmux = Tmux::run(&cmd);
    tmux.wait_for("Log in to confab");
    tmux.type_text(PW);
    tmux.keys(&["Enter"]);
    tmux.wait_for("[alice online] #general");
    // Registering a taken name: the dialog comes back without Register.
    drop(tmux);
    let cmd = confab(
        &format!(
            "--register --ca {} alice@localhost:{}",
            ca.display(),
            port(&server)
        ),
        home.path(),
    );
    let tmux = Tmux::run(&cmd);
    let screen = tmux.wait_for("Log in to confab");
    assert!(
        screen.contains("taken") || screen.contains("exists"),
        "{screen}"
    );
    assert!(!screen.contains("<Register>"), "{screen}");
    tmux.keys(&["Enter"]);
    tmux.wait_for("[alice online] #general");
}

#[test]
fn the_client_reconnects_after_a_server_crash_and_sends_what_was_typed_meanwhile() {
    let mut server = TestServer::start();
    drop(server.user("alice"));
    let home = tempfile::tempdir().unwrap();
    let ca = util::certs().join("ca.pem");
    let tmux = Tmux::run(&confab(
        &format!("--ca {} alice@localhost:{}", ca.display(), port(&server)),
        home.path(),
    ));
    tmux.wait_for("[alice online] #general");

    server.kill();
    tmux.wait_for("disconnected");
    tmux.type_text("written while the server was down");
    tmux.keys(&["Enter"]);
    tmux.wait_for("written while the server was down (sending…)");

    server.restart();
    tmux.wait_for("[alice online] #general");
    let screen = tmux.wait_until("the pending line acked", |s| !s.contains("(sending…)"));
    assert!(
        screen.contains("<alice> written while the server was down"),
        "{screen}"
    );
    assert!(
        !screen.contains("(sending…)"),
        "acked after reconnecting: {screen}"
    );
    let mut bob = server.user("bob");
    let (history, _) = bob.room_history("general", None, 10).unwrap();
    assert!(
        history
            .iter()
            .any(|m| m.body == "written while the server was down")
    );
}

/// A 1x1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, 0x49, 0x48, 0x44, 0x52, 0, 0, 0,
    1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1F, 0x15, 0xC4, 0x89, 0, 0, 0, 0x0A, 0x49, 0x44, 0x41, 0x54,
    0x78, 0x9C, 0x63, 0, 1, 0, 0, 5, 0, 1, 0x0D, 0x0A, 0x2D, 0xB4, 0, 0, 0, 0, 0x49, 0x45, 0x4E,
    0x44, 0xAE, 0x42, 0x60, 0x82,
];

#[test]
fn files_are_sent_and_downloaded_from_the_terminal() {
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let ca = util::certs().join("ca.pem");
    let mut bob = server.user("bob");
    let png = home.path().join("cat.png");
    std::fs::write(&png, PNG).unwrap();
    let fake = home.path().join("invoice.pdf");
    std::fs::write(&fake, b"#!/bin/sh\necho gotcha\n").unwrap();
    let tmux = Tmux::run(&confab(
        &format!(
            "--register --ca {} alice@localhost:{}",
            ca.display(),
            port(&server)
        ),
        home.path(),
    ));
    tmux.wait_for("[alice online] #general");

    tmux.type_text(&format!("/send {}", png.display()));
    tmux.keys(&["Enter"]);
    let m = bob
        .next_message(WAIT)
        .unwrap()
        .expect("the file is announced");
    let file = m.file.expect("with the file");
    assert_eq!(
        (file.name.as_str(), file.size),
        ("cat.png", PNG.len() as u64)
    );
    tmux.wait_for(&format!(
        "shared cat.png ({} bytes, PNG) [/download {}]",
        PNG.len(),
        file.id
    ));

    tmux.type_text(&format!("/send {}", fake.display()));
    tmux.keys(&["Enter"]);
    tmux.wait_for("invoice.pdf cannot be shared");

    let downloads = home.path().join("dl");
    tmux.type_text(&format!("/download {} {}", file.id, downloads.display()));
    tmux.keys(&["Enter"]);
    tmux.wait_for("saved");
    assert_eq!(std::fs::read(downloads.join("cat.png")).unwrap(), PNG);

    tmux.type_text("/files");
    tmux.keys(&["Enter"]);
    tmux.wait_for(&format!("file {}: cat.png", file.id));
}

/// With no sound device (as here and on CI) a mention rings the terminal
/// bell; a muted window stays silent; the setting is saved.
#[test]
fn mentions_ring_the_bell_unless_the_window_is_muted() {
    if Path::new("/dev/snd").exists() {
        eprintln!("this machine has a sound device: the bell fallback is not used; skipping");
        return;
    }
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let ca = util::certs().join("ca.pem");
    let mut bob = server.user("bob");
    let tmux = Tmux::run(&confab(
        &format!(
            "--register --ca {} alice@localhost:{}",
            ca.display(),
            port(&server)
        ),
        home.path(),
    ));
    tmux.wait_for("[alice online] #general");
    tmux.type_text("/mute");
    tmux.keys(&["Enter"]);
    tmux.wait_for("#general muted");
    bob.say("general", "@alice are you there?").unwrap();
    tmux.wait_for("<bob> @alice are you there?");
    tmux.wait_for("mentions (1)");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!tmux.bell_rang(), "muted: no bell");
    let config = std::fs::read_to_string(home.path().join(".config/confab/config.toml")).unwrap();
    assert!(config.contains("#general"), "{config}");

    tmux.type_text("/unmute");
    tmux.keys(&["Enter"]);
    tmux.wait_for("#general unmuted");
    std::thread::sleep(Duration::from_millis(1100)); // past the coalescing second
    bob.say("general", "alice: now?").unwrap();
    tmux.wait_for("<bob> alice: now?");
    tmux.wait_until("the bell ringing", |_| tmux.bell_rang());
}

/// Starts the client as a newly registered `user` and waits until it is in
/// `#general`.
fn registered(server: &TestServer, user: &str, home: &Path) -> Tmux {
    let ca = util::certs().join("ca.pem");
    let tmux = Tmux::run(&confab(
        &format!(
            "--register --ca {} {user}@localhost:{}",
            ca.display(),
            port(server)
        ),
        home,
    ));
    tmux.wait_for(&format!("[{user} online] #general"));
    tmux
}

/// The input line: the last non-empty row of the screen.
fn input_row(screen: &str) -> String {
    screen
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn search_finds_a_message_and_enter_jumps_to_it_in_context() {
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let mut bob = server.user("bob");
    bob.say("general", "the meeting moved to zanzibar").unwrap();
    for i in 0..60 {
        bob.say("general", &format!("filler line {i}")).unwrap();
    }
    let tmux = registered(&server, "alice", home.path());
    tmux.wait_for("filler line 59");
    assert!(!tmux.screen().contains("zanzibar"), "it is far up");

    tmux.type_text("/search zanz*");
    tmux.keys(&["Enter"]);
    // The result is shown with its room, and selected (the status line
    // says what Enter does).
    let screen = tmux.wait_for("[#general] <bob> the meeting moved to zanzibar");
    assert!(
        screen.contains("Enter jump"),
        "the result is selected: {screen}"
    );

    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("a search result in context");
    assert!(screen.contains("#general"), "{screen}");
    let hit = screen
        .lines()
        .find(|l| l.contains("zanzibar"))
        .unwrap_or_else(|| panic!("the result is shown: {screen}"));
    assert!(hit.contains('▶'), "and selected: {hit}");
    assert!(
        screen.contains("filler line 0"),
        "with what came after: {screen}"
    );
    // PgDn at the bottom brings the newest messages back.
    tmux.keys(&["PageDown"]);
    tmux.wait_for("filler line 59");
}

#[test]
fn a_selected_message_is_edited_replied_to_reacted_to_and_deleted() {
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let mut bob = server.user("bob");
    let tmux = registered(&server, "alice", home.path());

    // Edit: Alt-Up selects our newest message, e puts it in the input.
    tmux.type_text("teh plan");
    tmux.keys(&["Enter"]);
    let sent = bob.next_message(WAIT).unwrap().expect("bob gets it");
    // Only a stored (acked) message can be selected.
    tmux.wait_until("the ack", |s| {
        s.contains("<alice> teh plan") && !s.contains("sending")
    });
    tmux.keys(&["M-Up"]);
    tmux.wait_for("alice's message of");
    tmux.keys(&["e"]);
    tmux.wait_until("the edit command in the input", |s| {
        input_row(s).contains("/edit teh plan")
    });
    for _ in 0.."teh plan".len() {
        tmux.keys(&["BSpace"]);
    }
    tmux.type_text("the plan");
    tmux.keys(&["Enter"]);
    let edited = wait_event(&mut bob, |e| matches!(e, ServerMsg::MessageEdited { .. }));
    assert!(
        matches!(&edited, ServerMsg::MessageEdited { id, body, .. } if *id == sent.id && body == "the plan"),
        "{edited:?}"
    );
    tmux.wait_for("<alice> the plan (edited)");

    // React and reply to bob's message.
    let (lunch, _) = bob.say("general", "lunch?").unwrap();
    tmux.wait_for("<bob> lunch?");
    tmux.keys(&["M-Up"]);
    tmux.wait_for("bob's message of");
    tmux.keys(&["+"]);
    tmux.wait_until("the react command", |s| input_row(s).contains("/react"));
    tmux.type_text("+1");
    tmux.keys(&["Enter"]);
    let reaction = wait_event(&mut bob, |e| matches!(e, ServerMsg::Reaction { .. }));
    assert!(
        matches!(&reaction, ServerMsg::Reaction { id, emoji, added: true, count: 1, .. } if *id == lunch && emoji == "+1"),
        "{reaction:?}"
    );
    tmux.wait_for("[+1 1]");
    tmux.keys(&["M-Up"]);
    tmux.wait_for("bob's message of");
    tmux.keys(&["r"]);
    tmux.wait_until("the reply command", |s| input_row(s).contains("/reply"));
    tmux.type_text("yes please");
    tmux.keys(&["Enter"]);
    let reply = bob.next_message(WAIT).unwrap().expect("the reply");
    assert_eq!(reply.body, "yes please");
    assert_eq!(reply.reply_to.map(|r| r.id), Some(lunch));
    tmux.wait_until("the reply, acked", |s| {
        s.contains("↳ bob: lunch?") && !s.contains("sending")
    });

    // Changes made elsewhere show live.
    bob.edit(lunch, "lunch at one?").unwrap();
    tmux.wait_for("<bob> lunch at one? (edited)");

    // Delete our reply: the newest message, d, Enter.
    tmux.keys(&["M-Up"]);
    tmux.wait_for("alice's message of");
    tmux.keys(&["d"]);
    tmux.wait_until("the delete command", |s| input_row(s).contains("/delete"));
    tmux.keys(&["Enter"]);
    let deleted = wait_event(&mut bob, |e| matches!(e, ServerMsg::MessageDeleted { .. }));
    assert!(
        matches!(&deleted, ServerMsg::MessageDeleted { id, .. } if *id == reply.id),
        "{deleted:?}"
    );
    let screen = tmux.wait_for("<alice> (message deleted)");
    assert!(!screen.contains("yes please"), "{screen}");
    // Esc leaves the selection; keys type again.
    tmux.keys(&["M-Up"]);
    tmux.wait_for("'s message of");
    tmux.keys(&["Escape"]);
    tmux.wait_until("no selection", |s| !s.contains("'s message of"));
    tmux.type_text("d");
    tmux.wait_until("a plain d in the input", |s| input_row(s).starts_with("d_"));
}

/// Reads bob's events until one matches.
fn wait_event(c: &mut confab::client::Client, pred: impl Fn(&ServerMsg) -> bool) -> ServerMsg {
    let deadline = Instant::now() + WAIT;
    while let Some(ev) = c
        .next_event(deadline.saturating_duration_since(Instant::now()))
        .unwrap()
    {
        if pred(&ev) {
            return ev;
        }
    }
    panic!("no such event within {WAIT:?}");
}

/// Writes the client's config file under `home` (where the client run
/// with that HOME reads it); returns its path.
fn write_config(home: &Path, toml: &str) -> std::path::PathBuf {
    let config = home.join(".config/confab/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, toml).unwrap();
    config
}

/// Row of the first screen line containing `text`.
fn row_of(screen: &str, text: &str) -> usize {
    screen
        .lines()
        .position(|l| l.contains(text))
        .unwrap_or_else(|| panic!("{text:?} is not on the screen:\n{screen}"))
}

#[test]
fn lines_stay_in_the_order_they_happened_below_notices() {
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let mut bob = server.user("bob");
    let tmux = registered(&server, "alice", home.path());
    bob.say("general", "before the notices").unwrap();
    tmux.wait_for("<bob> before the notices");
    // A notice the client makes itself, then a topic change, then messages.
    tmux.type_text("/sound");
    tmux.keys(&["Enter"]);
    tmux.wait_for("sounds: ");
    bob.request(confab::protocol::Request::Topic {
        room: "general".into(),
        topic: "ordering matters".into(),
    })
    .unwrap();
    tmux.wait_for("bob set the topic: ordering matters");
    bob.say("general", "first after the notices").unwrap();
    bob.say("general", "second after the notices").unwrap();
    let screen = tmux.wait_for("<bob> second after the notices");
    let rows = [
        row_of(&screen, "<bob> before the notices"),
        row_of(&screen, "sounds: "),
        row_of(&screen, "bob set the topic: ordering matters"),
        row_of(&screen, "<bob> first after the notices"),
        row_of(&screen, "<bob> second after the notices"),
    ];
    assert!(rows.is_sorted(), "out of order {rows:?}:\n{screen}");
}

#[test]
fn the_certificate_is_checked_before_the_password_is_asked_for() {
    let server = TestServer::start();
    drop(server.user("alice"));
    let home = tempfile::tempdir().unwrap();
    let known = home.path().join("known_hosts");
    let cmd = confab_with(&tofu(&server, &known), home.path(), None);
    let tmux = Tmux::run(&cmd);
    let screen = tmux.wait_for("(yes/no)?");
    assert!(!screen.contains("password"), "{screen}");
    tmux.type_text("yes");
    tmux.keys(&["Enter"]);
    tmux.wait_for("alice@localhost's password:");
    tmux.type_text(PW);
    tmux.keys(&["Enter"]);
    tmux.wait_for("[alice online] #general");
}

#[test]
fn a_reconnect_keeps_the_window_and_says_so_once_on_one_status_row() {
    let mut server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let tmux = registered(&server, "alice", home.path());
    // Reading the status window.
    tmux.keys(&["M-1"]);
    tmux.wait_for("[alice online] confab");
    server.terminate(WAIT).expect("the server stops");
    // Two failed attempts at least (the second waits 2 s).
    let screen = tmux.wait_for("retry in 2 s");
    let status = screen.lines().next().unwrap_or_default();
    assert!(
        status.starts_with("[disconnected, retry in 2 s"),
        "{screen}"
    );
    assert!(
        !screen.contains("shutting_down"),
        "a wire code shown:\n{screen}"
    );
    // Cut, never wrapped: the second row is the top of the panels.
    let second = screen.lines().nth(1).unwrap_or_default();
    assert!(second.contains("windows"), "{screen}");
    server.start_again();
    let screen = tmux.wait_for("[alice online] confab");
    assert!(screen.contains("-- reconnected"), "{screen}");
    assert_eq!(
        screen.matches("-- disconnected").count(),
        1,
        "one line per outage, whatever the retries:\n{screen}"
    );
}

#[test]
fn a_banned_user_is_told_why_and_the_client_stops_retrying() {
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let mut admin = server.admin_user("boss");
    let tmux = registered(&server, "alice", home.path());
    admin
        .request(confab::protocol::Request::Ban {
            user: "alice".into(),
            reason: "spam".into(),
            minutes: None,
        })
        .unwrap();
    let screen = tmux.wait_for("press Ctrl-C to quit");
    assert!(screen.contains("banned by boss: spam"), "{screen}");
    // The client gave up: it never tried to log in again.
    assert_eq!(
        util::sqlite(
            &server.db(),
            "SELECT count(*) FROM audit WHERE action = 'login_banned'"
        ),
        "0"
    );
    // Gave up: one Ctrl-C quits.
    tmux.keys(&["C-c"]);
    tmux.wait_for("confab exited with 0");
}

#[test]
fn away_shows_in_the_status_line_and_a_dm_to_an_away_user_says_so_once() {
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let mut bob = server.user("bob");
    bob.request(confab::protocol::Request::Away {
        message: Some("at lunch".into()),
    })
    .unwrap();
    let tmux = registered(&server, "alice", home.path());
    tmux.type_text("/away in a meeting");
    tmux.keys(&["Enter"]);
    tmux.wait_for("[alice away: in a meeting]");
    tmux.type_text("/msg bob are you there?");
    tmux.keys(&["Enter"]);
    tmux.wait_for("bob is away: at lunch");
    tmux.type_text("hello?");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_until("the second line acked", |s| {
        s.contains("<alice> hello?") && !s.contains("sending")
    });
    assert_eq!(screen.matches("bob is away").count(), 1, "{screen}");
    // The DM window shows the other person's status.
    assert!(screen.contains("@bob — away: at lunch"), "{screen}");
}

#[test]
fn a_pasted_block_of_lines_is_one_message_after_a_question() {
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let mut bob = server.user("bob");
    let tmux = registered(&server, "alice", home.path());
    tmux.paste("first line\nsecond line\nthird line\n");
    tmux.wait_for("Send these 3 pasted lines to #general?");
    tmux.keys(&["Enter"]);
    let got = bob.next_message(WAIT).unwrap().expect("bob gets the paste");
    assert_eq!(got.body, "first line\nsecond line\nthird line");
    // Nothing was sent line by line, and nothing is left in the input.
    let screen = tmux.wait_until("the paste acked", |s| {
        s.contains("<alice> first line") && !s.contains("sending")
    });
    assert!(screen.contains("       second line"), "indented: {screen}");
    assert_eq!(input_row(&screen).trim_matches([' ', '_']), "");
    tmux.type_text("a marker");
    tmux.keys(&["Enter"]);
    let next = bob.next_message(WAIT).unwrap().expect("the marker");
    assert_eq!(next.body, "a marker", "the paste was sent once");
}

#[test]
fn a_long_paste_arrives_whole_and_an_oversized_one_stays_in_the_input() {
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let mut bob = server.user("bob");
    let tmux = registered(&server, "alice", home.path());
    let long: String = (0..320).map(|i| format!("word{i:05} ")).collect();
    let long = long.trim_end().to_owned();
    assert!(long.len() > 3000);
    tmux.paste(&long);
    tmux.wait_until("the paste's end in the input", |s| {
        input_row(s).contains("word00319")
    });
    tmux.keys(&["Enter"]);
    let got = bob.next_message(WAIT).unwrap().expect("bob gets it");
    assert_eq!(got.body, long);
    // Its wrapped lines start under its text ("HH:MM <alice> " is 14
    // columns), words whole.
    let screen = tmux.wait_until("the long line acked", |s| {
        s.contains("word00319") && !s.contains("sending") && !input_row(s).contains("word")
    });
    let row = screen
        .lines()
        .find(|l| l.starts_with('│') && l.contains("word002") && !l.contains("<alice>"))
        .unwrap_or_else(|| panic!("no wrapped line:\n{screen}"));
    let text = row.split('│').nth(2).unwrap_or_default();
    assert!(
        text.starts_with(&" ".repeat(14)) && text.trim_start().starts_with("word"),
        "{row:?}\n{screen}"
    );

    // Over the server's limit (4,096 bytes): refused before the input is
    // cleared, so nothing is lost.
    let huge = "x".repeat(5000);
    tmux.paste(&huge);
    tmux.wait_until("the paste in the input", |s| {
        input_row(s).contains("xxxxxxxxxx")
    });
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("!! that is 5000 bytes; the server takes messages");
    assert!(input_row(&screen).contains("xxxxxxxxxx"), "{screen}");
}

#[test]
fn after_a_login_unread_messages_mentions_and_the_summary_show_once() {
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    drop(server.user("alice"));
    let mut bob = server.user("bob");
    // alice's phone is online: the DMs are delivered there, not read.
    let mut phone = server.login("alice");
    bob.dm("alice", "first private word").unwrap();
    bob.dm("alice", "second private word").unwrap();
    bob.say("general", "alice: are you coming?").unwrap();
    for _ in 0..3 {
        phone
            .next_message(WAIT)
            .unwrap()
            .expect("the phone gets them");
    }
    drop(phone);
    let ca = util::certs().join("ca.pem");
    let tmux = Tmux::run(&confab(
        &format!("--ca {} alice@localhost:{}", ca.display(), port(&server)),
        home.path(),
    ));
    tmux.wait_for("[alice online] #general");
    tmux.keys(&["M-1"]);
    let screen = tmux.wait_for("While you were away");
    assert_eq!(screen.matches("While you were away").count(), 1, "{screen}");
    // The DM window holds both unread messages, after the divider.
    tmux.wait_for("@bob (2)");
    tmux.keys(&["M-3"]);
    let screen = tmux.wait_for("second private word");
    let divider = row_of(&screen, "new messages");
    assert!(divider < row_of(&screen, "first private word"), "{screen}");
    // The mention is in /mentions, though it came while away.
    tmux.type_text("/mentions");
    tmux.keys(&["Enter"]);
    tmux.wait_for("[#general] alice: are you coming?");
}

#[test]
fn window_numbers_stay_when_the_mentions_window_opens() {
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let mut bob = server.user("bob");
    bob.create_room("rust", "").unwrap();
    let tmux = registered(&server, "alice", home.path());
    tmux.type_text("/join rust");
    tmux.keys(&["Enter"]);
    tmux.wait_for("3 #rust");
    bob.say("general", "alice: look").unwrap();
    let screen = tmux.wait_for("4 mentions");
    assert!(screen.contains("2 #general"), "{screen}");
    assert!(screen.contains("3 #rust"), "{screen}");
    tmux.keys(&["M-3"]);
    tmux.wait_for("#rust");
    let screen = tmux.screen();
    assert!(
        screen.lines().next().unwrap_or_default().contains("#rust"),
        "{screen}"
    );
}

#[test]
fn a_narrow_terminal_still_shows_where_news_arrived() {
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let mut bob = server.user("bob");
    let ca = util::certs().join("ca.pem");
    let tmux = Tmux::run_sized(
        &confab(
            &format!(
                "--register --ca {} alice@localhost:{}",
                ca.display(),
                port(&server)
            ),
            home.path(),
        ),
        50,
        20,
    );
    tmux.wait_for("[alice online] #general");
    tmux.keys(&["M-1"]);
    tmux.wait_for("[alice online] confab");
    bob.say("general", "news for the narrow").unwrap();
    let screen = tmux.wait_for("[act 2]");
    assert!(
        !screen.contains("windows"),
        "the list is hidden at 50 columns:\n{screen}"
    );
}

#[test]
fn passwd_changes_the_password_in_a_dialog_and_reconnects_use_the_new_one() {
    let mut server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let tmux = registered(&server, "alice", home.path());
    tmux.type_text("/passwd");
    tmux.keys(&["Enter"]);
    tmux.wait_for("Change your password");
    let new = "a much better password";
    tmux.type_text(PW);
    tmux.keys(&["Tab"]);
    tmux.type_text(new);
    tmux.keys(&["Tab"]);
    tmux.type_text(new);
    tmux.keys(&["Tab", "Enter"]);
    tmux.wait_for("your password was changed");
    assert!(!tmux.screen().contains(new), "the password was shown");
    server
        .client()
        .login("alice", new)
        .expect("the new password works");
    // After a crash the client gets back in (its new token, or the new
    // password), without asking.
    server.restart();
    tmux.wait_for("disconnected");
    tmux.wait_for("[alice online] #general");
    assert!(!tmux.screen().contains("Log in to confab"));
}

#[test]
fn the_config_file_sets_the_timestamp_format_and_ignores_persist() {
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let config = write_config(
        home.path(),
        "[display]\ntimestamp = \"[%H:%M:%S]\"\nborders = false\n",
    );
    let mut bob = server.user("bob");
    let mut carol = server.user("carol");
    let tmux = registered(&server, "alice", home.path());
    bob.say("general", "seconds matter").unwrap();
    let screen = tmux.wait_for("<bob> seconds matter");
    let line = screen
        .lines()
        .find(|l| l.contains("<bob> seconds matter"))
        .unwrap();
    let stamp = &line[line.find('[').unwrap()..line.find(']').unwrap() + 1];
    assert_eq!(stamp.len(), "[12:34:56]".len(), "{line}");
    assert!(
        !screen.contains('│') && !screen.contains('┌'),
        "no frames:\n{screen}"
    );
    tmux.type_text("/ignore carol");
    tmux.keys(&["Enter"]);
    tmux.wait_for("ignoring carol's room messages");
    carol.say("general", "you cannot see me").unwrap();
    bob.say("general", "but me you can").unwrap();
    let screen = tmux.wait_for("<bob> but me you can");
    assert!(!screen.contains("you cannot see me"), "{screen}");
    // Saved by a background thread: wait for it.
    let saved = || std::fs::read_to_string(&config).unwrap_or_default();
    util::eventually(
        || format!("carol saved in the config: {}", saved()),
        || saved().contains("carol"),
    );
    assert!(saved().contains("[%H:%M:%S]"), "{}", saved());
}

#[test]
fn confab_alone_connects_to_the_configured_default_server() {
    let server = TestServer::start();
    drop(server.user("alice"));
    let home = tempfile::tempdir().unwrap();
    write_config(
        home.path(),
        &format!(
            "[server]\ndefault = \"localhost:{}\"\n\n[servers.localhost]\nuser = \"alice\"\nca = \"{}\"\n",
            port(&server),
            util::certs().join("ca.pem").display()
        ),
    );
    // No destination, no user, no --ca: all from the config file.
    let tmux = Tmux::run(&confab("", home.path()));
    tmux.wait_for("[alice online] #general");
}

#[test]
fn admin_commands_whois_rooms_and_an_unknown_msg_work_from_the_terminal() {
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let mut carol = server.user("carol");
    carol
        .request(confab::protocol::Request::Away {
            message: Some("on a train".into()),
        })
        .unwrap();
    drop(server.user("dave"));
    let tmux = registered(&server, "alice", home.path());
    let (ok, out) = server.admin(&["grant", "alice"], "");
    assert!(ok, "{out}");
    tmux.type_text("/whois carol");
    tmux.keys(&["Enter"]);
    tmux.wait_for("carol: away: on a train; in #general");
    tmux.type_text("/rooms");
    tmux.keys(&["Enter"]);
    tmux.wait_for("#general (3 members)");
    // A name nobody has: its window goes again, with a plain error.
    tmux.type_text("/msg nobody hello?");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("there is no user nobody");
    assert!(!screen.contains("@nobody"), "{screen}");
    // Moderation: carol is kicked, dave banned for 5 minutes.
    tmux.type_text("/kick carol too loud");
    tmux.keys(&["Enter"]);
    tmux.wait_for("carol was kicked");
    let why = util::expect_closing(&mut carol, confab::protocol::ErrorCode::Kicked);
    assert!(why.contains("too loud"), "{why}");
    tmux.type_text("/ban dave 5 spam");
    tmux.keys(&["Enter"]);
    tmux.wait_for("dave is banned for 5 minutes");
    assert_eq!(
        util::code(server.client().login("dave", util::PW)),
        confab::protocol::ErrorCode::Banned
    );
    // IRC's +q: erin may read #general but not write there.
    let mut erin = server.user("erin");
    tmux.type_text("/quiet erin 10");
    tmux.keys(&["Enter"]);
    tmux.wait_for("erin cannot write in #general for 10 minutes");
    assert_eq!(
        util::code(erin.say("general", "hello?")),
        confab::protocol::ErrorCode::Muted
    );
    tmux.type_text("/unquiet erin");
    tmux.keys(&["Enter"]);
    tmux.wait_for("erin may write in #general again");
    erin.say("general", "thanks").unwrap();
}

#[test]
fn a_short_paste_under_the_configured_line_count_is_sent_without_asking() {
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    write_config(home.path(), "[paste]\nconfirm_lines = 5\n");
    let mut bob = server.user("bob");
    let tmux = registered(&server, "alice", home.path());
    tmux.paste("one\ntwo\nthree");
    let got = bob.next_message(WAIT).unwrap().expect("sent at once");
    assert_eq!(got.body, "one\ntwo\nthree");
    assert!(!tmux.screen().contains("pasted lines"));
}

#[test]
fn after_an_admin_resets_the_password_the_client_asks_for_the_new_one() {
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let tmux = registered(&server, "alice", home.path());
    let (ok, out) = server.admin(&["reset-password", "alice"], "the new secret\n");
    assert!(ok, "{out}");
    let screen = tmux.wait_for("Log in to confab");
    assert!(screen.contains("reset your password"), "{screen}");
    assert!(!screen.contains("<Register>"), "a taken name:\n{screen}");
    tmux.type_text("the new secret");
    tmux.keys(&["Enter"]);
    tmux.wait_until("online again, the dialog gone", |s| {
        s.contains("[alice online] #general") && !s.contains("Log in to confab")
    });
}

#[test]
fn a_topic_change_is_kept_in_history_and_shown_once_after_a_reconnect() {
    let mut server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let mut bob = server.user("bob");
    let tmux = registered(&server, "alice", home.path());
    tmux.type_text("/topic release on friday");
    tmux.keys(&["Enter"]);
    tmux.wait_for("-- alice set the topic: release on friday");
    // In history for everyone, as a message of kind topic.
    let (history, _) = bob.room_history("general", None, 10).unwrap();
    let stored = history
        .iter()
        .find(|m| m.body == "release on friday")
        .expect("stored");
    assert_eq!(stored.kind, confab::protocol::MessageKind::Topic);
    // After a crash and the reload of history: the line, once.
    server.restart();
    tmux.wait_for("disconnected");
    let screen = tmux.wait_for("[alice online] #general — release on friday");
    assert_eq!(
        screen.matches("set the topic: release on friday").count(),
        1,
        "{screen}"
    );
}

#[test]
fn the_terminal_title_carries_the_unread_count() {
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let mut bob = server.user("bob");
    let tmux = registered(&server, "alice", home.path());
    let title_is = |want: &str| {
        util::eventually(
            || format!("the title {want:?}; it is {:?}", tmux.title()),
            || tmux.title() == want,
        )
    };
    title_is("confab: #general");
    tmux.keys(&["M-1"]);
    bob.say("general", "news").unwrap();
    bob.say("general", "more news").unwrap();
    title_is("(2) confab: confab");
}

#[test]
fn web_addresses_are_hyperlinks_even_where_wrapping_cuts_them() {
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let mut bob = server.user("bob");
    let tmux = registered(&server, "alice", home.path());
    let output = home.path().join("terminal-output");
    tmux.record_output(&output);
    // 100 columns leave 60 for messages: the long address is cut in two.
    let short = "https://example.org/confab";
    let long = format!("https://example.org/{}/end", "long-path".repeat(8));
    bob.say("general", &format!("see {short}, and {long} please"))
        .unwrap();
    tmux.wait_for("please");
    let opening = |url: &str| format!(";{url}\x1b\\");
    let read = || String::from_utf8_lossy(&std::fs::read(&output).unwrap_or_default()).into_owned();
    util::eventually(
        || format!("hyperlinks in what the client wrote:\n{:?}", read()),
        || {
            let written = read();
            written.matches(&opening(short)).count() >= 1
                && written.matches(&opening(&long)).count() >= 2
        },
    );
    let written = read();
    // Each link is closed again, and the screen shows the text as text.
    assert!(written.contains("\x1b]8;;\x1b\\"), "{written:?}");
    let screen = tmux.screen();
    assert!(screen.contains(short), "{screen}");
    assert!(!screen.contains("]8;"), "{screen}");
}

#[test]
fn a_mention_in_a_me_line_is_highlighted_like_any_mention() {
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let mut bob = server.user("bob");
    let tmux = registered(&server, "alice", home.path());
    bob.say("general", "/me waves at nobody").unwrap();
    bob.say("general", "/me waves at alice").unwrap();
    bob.say("general", "plain alice mention").unwrap();
    tmux.wait_for("plain alice mention");
    let styled = tmux.screen_styled();
    // The mention colour is light yellow (colour 11) unless configured:
    // the text itself, not only the nick, is drawn in it.
    let coloured = |text: &str| styled.contains(&format!("\x1b[38;5;11m{text}"));
    assert!(coloured("waves at alice"), "{styled:?}");
    assert!(coloured("plain alice mention"), "{styled:?}");
    assert!(!coloured("waves at nobody"), "{styled:?}");
}

#[test]
fn registering_with_an_empty_password_says_what_is_wrong() {
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let ca = util::certs().join("ca.pem");
    let tmux = Tmux::run(&confab_with(
        &format!("--ca {} newbie@localhost:{}", ca.display(), port(&server)),
        home.path(),
        Some(""),
    ));
    tmux.wait_for("Log in to confab");
    // Register with the field left empty: the password is empty.
    tmux.keys(&["Tab", "Tab", "Enter"]);
    let screen = tmux.wait_for("passwords are 8 to 128 characters");
    let dialog = row_of(&screen, "passwords are");
    let said = screen.lines().nth(dialog).unwrap();
    assert!(said.contains("choose another password"), "{screen}");
    assert!(!said.contains("refused"), "{screen}");
    // Nothing was sent: the account does not exist.
    let mut check = server.client();
    assert!(check.login("newbie", PW).is_err());
}

/// Two sessions of one user (two devices): rooms have the same numbers in
/// both, a room joined in one appears in the other at that number, and one
/// left in one closes in the other; a DM window opened earlier does not
/// push a later room's number apart.
#[test]
fn two_sessions_of_a_user_number_their_rooms_alike() {
    let server = TestServer::start();
    let mut bob = server.user("bob");
    bob.create_room("zoo", "").unwrap();
    let home = tempfile::tempdir().unwrap();
    let laptop = registered(&server, "alice", home.path());
    let phone_home = tempfile::tempdir().unwrap();
    let ca = util::certs().join("ca.pem");
    let phone = Tmux::run(&confab(
        &format!("--ca {} alice@localhost:{}", ca.display(), port(&server)),
        phone_home.path(),
    ));
    phone.wait_for("[alice online] #general");
    // The laptop has a DM window before the room is joined.
    bob.dm("alice", "psst").unwrap();
    laptop.wait_for("3 @bob");
    laptop.type_text("/join zoo");
    laptop.keys(&["Enter"]);
    let screen = laptop.wait_for("3 #zoo");
    assert!(screen.contains("4 @bob"), "{screen}");
    let screen = phone.wait_for("3 #zoo");
    assert!(screen.contains("2 #general"), "{screen}");
    // The phone did not switch to it: it stays in the window it shows.
    assert!(
        screen
            .lines()
            .next()
            .unwrap_or_default()
            .contains("#general"),
        "{screen}"
    );
    laptop.type_text("/leave zoo");
    laptop.keys(&["Enter"]);
    laptop.wait_for("you left #zoo");
    phone.wait_until("#zoo gone from the window list", |s| !s.contains("3 #zoo"));
}

/// `/leave #room reason`, as irssi's `/part`: the others see the reason.
#[test]
fn leave_with_a_reason_tells_the_others_why() {
    let server = TestServer::start();
    let mut bob = server.user("bob");
    bob.create_room("pub", "").unwrap();
    let home = tempfile::tempdir().unwrap();
    let tmux = registered(&server, "alice", home.path());
    tmux.type_text("/join pub");
    tmux.keys(&["Enter"]);
    tmux.wait_for("3 #pub");
    tmux.type_text("/leave #pub time for lunch");
    tmux.keys(&["Enter"]);
    wait_event(&mut bob, |e| {
        matches!(e, ServerMsg::Presence { user, event: confab::protocol::PresenceEvent::Leave, message: Some(r), .. }
            if user == "alice" && r == "time for lunch")
    });
    tmux.wait_for("you left #pub");
}
