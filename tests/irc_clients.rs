//! Real IRC clients that nobody here wrote, against the IRC listener:
//! irssi (Debian's package, installed by `make deps`) in a real terminal
//! (tmux), logging in with SASL PLAIN, talking with a confab-protocol
//! client both ways in a room and by direct message, going away, and being
//! refused a wrong password. (irssi has no CHATHISTORY; tests/irc.rs covers
//! it line by line.)

mod util;

use confab::protocol::{Request, ServerMsg};
use std::path::Path;
use util::tmux::Tmux;
use util::{PW, TestServer, certs, wait_event};

/// An irssi home directory whose one server is the test server's IRC
/// listener over TLS (trusting the test CA), logging in as `user` with
/// SASL PLAIN and `password`.
fn irssi_home(dir: &Path, irc_addr: &str, user: &str, password: &str) {
    let port = irc_addr.rsplit(':').next().unwrap();
    let ca = certs().join("ca.pem");
    let config = format!(
        r#"servers = (
  {{
    address = "localhost";
    chatnet = "confab";
    port = "{port}";
    use_tls = "yes";
    tls_cafile = "{ca}";
    tls_verify = "yes";
    autoconnect = "yes";
  }}
);
chatnets = {{
  confab = {{
    type = "IRC";
    sasl_mechanism = "PLAIN";
    sasl_username = "{user}";
    sasl_password = "{password}";
  }};
}};
settings = {{
  core = {{ real_name = "{user}"; user_name = "{user}"; nick = "{user}"; }};
  "fe-common/core" = {{ autocreate_query_level = "MSGS"; }};
}};
"#,
        ca = ca.display()
    );
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config"), config).unwrap();
}

fn irssi(home: &Path) -> Tmux {
    assert!(
        std::process::Command::new("irssi")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "irssi is not installed: `make deps` installs Debian's irssi package"
    );
    Tmux::run_sized(&format!("irssi --home={}", home.display()), 160, 40)
}

#[test]
fn irssi_logs_in_with_sasl_and_chats_with_a_confab_client_in_a_room_and_directly() {
    let s = TestServer::start_with(&["--irc-listen", "127.0.0.1:0"]);
    let mut kim = s.user("kim");
    drop(s.user("ivy"));
    let home = s.dir.path().join("irssi-ivy");
    irssi_home(&home, &s.irc_addr, "ivy", PW);
    let tmux = irssi(&home);
    tmux.wait_for("SASL authentication succeeded");
    tmux.wait_for("Welcome to confab, ivy");
    // The account's rooms are joined at registration.
    tmux.type_text("/window goto #general");
    tmux.keys(&["Enter"]);
    tmux.wait_for("[#general]");
    wait_event(
        &mut kim,
        "ivy online",
        |m| matches!(m, ServerMsg::Presence { user, .. } if user == "ivy"),
    );

    kim.say("general", "hello irssi").unwrap();
    tmux.wait_for("kim> hello irssi");
    tmux.type_text("hi from irssi");
    tmux.keys(&["Enter"]);
    let got = wait_event(
        &mut kim,
        "ivy's message",
        |m| matches!(m, ServerMsg::Message(m) if m.body == "hi from irssi"),
    );
    let ServerMsg::Message(m) = got else {
        unreachable!()
    };
    assert_eq!(
        (m.from.as_str(), m.room.as_deref()),
        ("ivy", Some("general"))
    );
    tmux.type_text("/me waves");
    tmux.keys(&["Enter"]);
    wait_event(
        &mut kim,
        "ivy's action",
        |m| matches!(m, ServerMsg::Message(m) if m.body == "/me waves"),
    );

    // A direct message opens a query window in irssi; the answer is a DM.
    kim.dm("ivy", "a word in private").unwrap();
    tmux.type_text("/window goto kim");
    tmux.keys(&["Enter"]);
    tmux.wait_for("a word in private");
    tmux.type_text("/msg kim right back at you");
    tmux.keys(&["Enter"]);
    wait_event(&mut kim, "ivy's DM", |m| {
        matches!(m, ServerMsg::Message(m)
            if m.body == "right back at you" && m.to.as_deref() == Some("kim"))
    });

    // Away, seen by the confab client with its message (irssi says so in
    // its status window).
    tmux.type_text("/window goto 1");
    tmux.keys(&["Enter"]);
    tmux.type_text("/away gone fishing");
    tmux.keys(&["Enter"]);
    tmux.wait_for("You have been marked as being away");
    util::eventually(
        || "kim to see ivy away".into(),
        || {
            kim.who("general")
                .unwrap()
                .iter()
                .any(|m| m.user == "ivy" && m.away.as_deref() == Some("gone fishing"))
        },
    );
    kim.request(Request::Away {
        message: Some("at lunch".into()),
    })
    .unwrap();
    tmux.type_text("/whois kim");
    tmux.keys(&["Enter"]);
    // irssi shows a WHOIS in the query window with that nick.
    tmux.type_text("/window goto kim");
    tmux.keys(&["Enter"]);
    tmux.wait_for("away     : at lunch");
}

#[test]
fn irssi_with_a_wrong_password_is_refused_and_stays_out() {
    let s = TestServer::start_with(&["--irc-listen", "127.0.0.1:0"]);
    drop(s.user("lou"));
    let home = s.dir.path().join("irssi-lou");
    irssi_home(&home, &s.irc_addr, "lou", "not the password at all");
    let tmux = irssi(&home);
    let screen = tmux.wait_for("Cannot authenticate via SASL");
    assert!(screen.contains("wrong user name or password"), "{screen}");
    // irssi gives up on this connection at once; it never registered.
    let screen = tmux.wait_for("Connection lost");
    assert!(
        !screen.contains("Welcome to confab"),
        "a wrong password got in:\n{screen}"
    );
}
