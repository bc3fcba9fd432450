//! What the user types: the command table, parsing an input line, and Tab
//! completion. Pure functions; the TUI calls them and acts on the result.
//!
//! To add a command: add a [`CommandSpec`] to [`COMMANDS`], a variant to
//! [`Command`], and a match arm in [`parse`]; the help screen and Tab
//! completion pick it up from the table.

/// One entry of the command table, shown by `/help`.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    /// Name without the slash.
    pub name: &'static str,
    /// Argument synopsis.
    pub args: &'static str,
    /// One line of help.
    pub help: &'static str,
}

/// Every command, in the order `/help` lists them.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "join",
        args: "ROOM",
        help: "join a room (creating it if it does not exist) and switch to it",
    },
    CommandSpec {
        name: "leave",
        args: "[ROOM] [REASON]",
        help: "leave the current room, or ROOM; the others see the reason (a room after the first word needs its #)",
    },
    CommandSpec {
        name: "rooms",
        args: "",
        help: "list all rooms on the server",
    },
    CommandSpec {
        name: "deleteroom",
        args: "ROOM",
        help: "delete ROOM with its history and files (admins, or its creator when alone in it)",
    },
    CommandSpec {
        name: "msg",
        args: "USER [TEXT]",
        help: "open a direct conversation with USER, sending TEXT if given",
    },
    CommandSpec {
        name: "whois",
        args: "USER",
        help: "what your rooms' member lists say of USER: online, away (and why) or offline, and where",
    },
    CommandSpec {
        name: "ignore",
        args: "[USER]",
        help: "hide USER's room messages (on this device, not told to anyone); alone: list who is ignored",
    },
    CommandSpec {
        name: "unignore",
        args: "USER",
        help: "show USER's messages again",
    },
    CommandSpec {
        name: "passwd",
        args: "",
        help: "change your password (asked for in a dialog, never shown)",
    },
    CommandSpec {
        name: "kick",
        args: "USER [REASON]",
        help: "end USER's sessions (administrators)",
    },
    CommandSpec {
        name: "ban",
        args: "USER [MINUTES] [REASON]",
        help: "ban USER, for good or for MINUTES (administrators)",
    },
    CommandSpec {
        name: "quiet",
        args: "USER [MINUTES]",
        help: "stop USER from writing in the current room, for good or for MINUTES (administrators; IRC's +q)",
    },
    CommandSpec {
        name: "unquiet",
        args: "USER",
        help: "let USER write in the current room again (administrators)",
    },
    CommandSpec {
        name: "unban",
        args: "USER",
        help: "lift USER's ban (administrators)",
    },
    CommandSpec {
        name: "me",
        args: "ACTION",
        help: "send an action: * alice waves",
    },
    CommandSpec {
        name: "search",
        args: "QUERY",
        help: "search your rooms and DMs: words, \"a phrase\", -word, pre*, from:alice, in:#room, in:@bob, before:/after:/on:YYYY-MM-DD (UTC)",
    },
    CommandSpec {
        name: "reply",
        args: "TEXT",
        help: "answer the selected message (Alt-Up/Alt-Down select; r), or the newest one",
    },
    CommandSpec {
        name: "edit",
        args: "TEXT",
        help: "replace the text of the selected message, or of your last one (e)",
    },
    CommandSpec {
        name: "delete",
        args: "",
        help: "delete the selected message, or your last one, for everyone (d)",
    },
    CommandSpec {
        name: "react",
        args: "EMOJI",
        help: "react to the selected message, or the newest one (+); again to take it back",
    },
    CommandSpec {
        name: "users",
        args: "",
        help: "list who is in the current room",
    },
    CommandSpec {
        name: "topic",
        args: "[TEXT]",
        help: "show the room's topic, or set it to TEXT",
    },
    CommandSpec {
        name: "send",
        args: "PATH",
        help: "share a file in the current window (type decided by content)",
    },
    CommandSpec {
        name: "download",
        args: "ID [DIR]",
        help: "save shared file ID (to ~/Downloads/confab, or DIR)",
    },
    CommandSpec {
        name: "files",
        args: "",
        help: "list recent files of the current window",
    },
    CommandSpec {
        name: "mentions",
        args: "",
        help: "show every message that mentions you",
    },
    CommandSpec {
        name: "mute",
        args: "[WINDOW]",
        help: "no sounds from the current window (or #room, @user)",
    },
    CommandSpec {
        name: "unmute",
        args: "[WINDOW]",
        help: "sounds again from the current window (or #room, @user)",
    },
    CommandSpec {
        name: "dnd",
        args: "",
        help: "do not disturb: turn all sounds off, or back on",
    },
    CommandSpec {
        name: "sound",
        args: "[off|mentions|all]",
        help: "which events make a sound (default: mentions and DMs)",
    },
    CommandSpec {
        name: "away",
        args: "[MESSAGE]",
        help: "mark yourself away",
    },
    CommandSpec {
        name: "back",
        args: "",
        help: "mark yourself back",
    },
    CommandSpec {
        name: "close",
        args: "",
        help: "close the current direct conversation's window",
    },
    CommandSpec {
        name: "help",
        args: "",
        help: "show commands and keys (also F1)",
    },
    CommandSpec {
        name: "quit",
        args: "",
        help: "leave confab (also Ctrl-C)",
    },
];

/// The keys, for `/help` and the README.
pub const KEYS: &[(&str, &str)] = &[
    ("Enter", "send the line"),
    ("Ctrl-N / Ctrl-P", "next / previous window"),
    ("Alt-1 .. Alt-9", "go to window 1 .. 9"),
    ("PgUp / PgDn", "scroll; PgUp at the top loads older history"),
    (
        "Tab",
        "complete a nick, command, #room or /send path; again: next",
    ),
    ("Up / Down", "recall earlier input"),
    ("Alt-Up / Alt-Down", "select a message (Esc: none)"),
    (
        "r e d +",
        "with a message selected and nothing typed: reply, edit, delete, react",
    ),
    (
        "Enter (search)",
        "with a result selected: jump to it in its window",
    ),
    ("Ctrl-W", "delete the word before the cursor"),
    ("Ctrl-U / Ctrl-K", "delete to the start / end of the line"),
    ("F1", "help"),
    ("Ctrl-C twice", "quit (or /quit)"),
];

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/join ROOM`
    Join(String),
    /// `/leave [ROOM] [REASON]`, as irssi's `/part [#channel] [message]`:
    /// one word is a room; with more, a first word starting with `#` is
    /// the room and the rest the reason, else it is all the reason.
    Leave {
        /// The room, if not the current one.
        room: Option<String>,
        /// What the others see.
        reason: Option<String>,
    },
    /// `/rooms`
    Rooms,
    /// `/deleteroom ROOM`
    DeleteRoom(String),
    /// `/msg USER [TEXT]`
    Msg {
        /// Recipient.
        to: String,
        /// Text to send, if any.
        text: Option<String>,
    },
    /// `/whois USER`
    Whois(String),
    /// `/ignore [USER]`
    Ignore(Option<String>),
    /// `/unignore USER`
    Unignore(String),
    /// `/passwd`
    Passwd,
    /// `/kick USER [REASON]`
    Kick {
        /// Who.
        user: String,
        /// Why.
        reason: String,
    },
    /// `/ban USER [MINUTES] [REASON]`
    Ban {
        /// Who.
        user: String,
        /// How long (`None`: for good).
        minutes: Option<u64>,
        /// Why.
        reason: String,
    },
    /// `/unban USER`
    Unban(String),
    /// `/quiet USER [MINUTES]` (the room-mute of the protocol)
    Quiet {
        /// Who.
        user: String,
        /// How long (`None`: until `/unquiet`).
        minutes: Option<u64>,
    },
    /// `/unquiet USER`
    Unquiet(String),
    /// `/me ACTION`
    Me(String),
    /// `/search QUERY`
    Search(String),
    /// `/reply TEXT`
    Reply(String),
    /// `/edit TEXT`
    Edit(String),
    /// `/delete`
    Delete,
    /// `/react EMOJI` (a second time takes it back)
    React(String),
    /// `/users`
    Users,
    /// `/topic [TEXT]`
    Topic(Option<String>),
    /// `/send PATH`
    Send(String),
    /// `/download ID [DIR]`
    Download {
        /// File id.
        id: i64,
        /// Folder to save to.
        dir: Option<String>,
    },
    /// `/files`
    Files,
    /// `/mentions`
    Mentions,
    /// `/mute [WINDOW]`
    Mute(Option<String>),
    /// `/unmute [WINDOW]`
    Unmute(Option<String>),
    /// `/dnd`
    Dnd,
    /// `/sound [LEVEL]`
    Sound(Option<String>),
    /// `/away [MESSAGE]`
    Away(Option<String>),
    /// `/back`
    Back,
    /// `/close`
    Close,
    /// `/help`
    Help,
    /// `/quit`
    Quit,
}

/// What an input line means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Text for the current window. (`//text` sends `/text`.)
    Say(String),
    /// A command.
    Command(Command),
}

/// The prefix an action message's body starts with on the wire; clients
/// show `/me waves` from alice as `* alice waves`.
pub use crate::protocol::ACTION_PREFIX;

fn arg(rest: &str) -> Option<String> {
    let rest = rest.trim();
    (!rest.is_empty()).then(|| rest.to_owned())
}

/// Parses one input line. `Ok(None)` for a blank line; `Err` says what is
/// wrong with a command, for the user.
pub fn parse(line: &str) -> Result<Option<Input>, String> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    if let Some(escaped) = line.strip_prefix("//") {
        return Ok(Some(Input::Say(format!("/{escaped}"))));
    }
    let Some(cmdline) = line.strip_prefix('/') else {
        return Ok(Some(Input::Say(line.to_owned())));
    };
    let (name, rest) = cmdline.split_once(' ').unwrap_or((cmdline, ""));
    let usage = |n: &str| {
        let spec = COMMANDS.iter().find(|c| c.name == n);
        format!("usage: /{n} {}", spec.map_or("", |s| s.args))
    };
    let command = match name.to_ascii_lowercase().as_str() {
        "join" | "j" => Command::Join(arg(rest).ok_or_else(|| usage("join"))?),
        "leave" | "part" => {
            let rest = rest.trim();
            match rest.split_once(' ') {
                Some((room, reason)) if room.starts_with('#') => Command::Leave {
                    room: Some(room.to_owned()),
                    reason: arg(reason),
                },
                Some(_) => Command::Leave {
                    room: None,
                    reason: arg(rest),
                },
                None => Command::Leave {
                    room: arg(rest),
                    reason: None,
                },
            }
        }
        "rooms" | "list" => Command::Rooms,
        "deleteroom" => Command::DeleteRoom(arg(rest).ok_or_else(|| usage("deleteroom"))?),
        "msg" | "query" => {
            let rest = rest.trim();
            let (to, text) = rest.split_once(' ').unwrap_or((rest, ""));
            if to.is_empty() {
                return Err(usage("msg"));
            }
            Command::Msg {
                to: to.to_owned(),
                text: arg(text),
            }
        }
        "me" => Command::Me(arg(rest).ok_or_else(|| usage("me"))?),
        "whois" | "wi" => Command::Whois(arg(rest).ok_or_else(|| usage("whois"))?),
        "ignore" => Command::Ignore(arg(rest)),
        "unignore" => Command::Unignore(arg(rest).ok_or_else(|| usage("unignore"))?),
        "passwd" | "password" => Command::Passwd,
        "kick" => {
            let rest = rest.trim();
            let (user, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            if user.is_empty() {
                return Err(usage("kick"));
            }
            Command::Kick {
                user: user.to_owned(),
                reason: reason.trim().to_owned(),
            }
        }
        "ban" => {
            let rest = rest.trim();
            let (user, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            if user.is_empty() {
                return Err(usage("ban"));
            }
            let rest = rest.trim();
            let (first, after) = rest.split_once(' ').unwrap_or((rest, ""));
            let (minutes, reason) = match first.parse::<u64>() {
                Ok(m) => (Some(m), after.trim()),
                Err(_) => (None, rest),
            };
            Command::Ban {
                user: user.to_owned(),
                minutes,
                reason: reason.to_owned(),
            }
        }
        "unban" => Command::Unban(arg(rest).ok_or_else(|| usage("unban"))?),
        "quiet" => {
            let rest = rest.trim();
            let (user, minutes) = rest.split_once(' ').unwrap_or((rest, ""));
            if user.is_empty() {
                return Err(usage("quiet"));
            }
            let minutes = match minutes.trim() {
                "" => None,
                m => Some(m.parse().map_err(|_| usage("quiet"))?),
            };
            Command::Quiet {
                user: user.to_owned(),
                minutes,
            }
        }
        "unquiet" => Command::Unquiet(arg(rest).ok_or_else(|| usage("unquiet"))?),
        "search" | "find" => Command::Search(arg(rest).ok_or_else(|| usage("search"))?),
        "reply" | "re" => Command::Reply(arg(rest).ok_or_else(|| usage("reply"))?),
        "edit" => Command::Edit(arg(rest).ok_or_else(|| usage("edit"))?),
        "delete" | "del" => Command::Delete,
        "react" => Command::React(arg(rest).ok_or_else(|| usage("react"))?),
        "users" | "who" | "names" => Command::Users,
        "topic" => Command::Topic(arg(rest)),
        "send" | "upload" => Command::Send(arg(rest).ok_or_else(|| usage("send"))?),
        "download" | "get" => {
            let rest = rest.trim();
            let (id, dir) = rest.split_once(' ').unwrap_or((rest, ""));
            let id = id
                .trim_start_matches('#')
                .parse()
                .map_err(|_| usage("download"))?;
            Command::Download { id, dir: arg(dir) }
        }
        "files" => Command::Files,
        "mentions" => Command::Mentions,
        "mute" => Command::Mute(arg(rest)),
        "unmute" => Command::Unmute(arg(rest)),
        "dnd" => Command::Dnd,
        "sound" | "sounds" => Command::Sound(arg(rest)),
        "away" => Command::Away(arg(rest)),
        "back" => Command::Back,
        "close" => Command::Close,
        "help" | "?" => Command::Help,
        "quit" | "exit" => Command::Quit,
        other => return Err(format!("unknown command /{other}; /help lists them")),
    };
    Ok(Some(Input::Command(command)))
}

/// Every completion of the word before the end of `line`, in the order
/// Tab cycles through them: command names for a leading `/word`, room
/// names (from `rooms`) for `#word`, else nicks from `nicks` (a nick at
/// the start of the line gets `": "` after it, as in IRC clients). Each is
/// the whole new line.
pub fn completions(line: &str, nicks: &[String], rooms: &[String]) -> Vec<String> {
    let start = line.rfind(' ').map_or(0, |i| i + 1);
    let (head, word) = line.split_at(start);
    if word.is_empty() {
        return Vec::new();
    }
    if start == 0
        && let Some(prefix) = word.strip_prefix('/')
    {
        return COMMANDS
            .iter()
            .filter(|c| c.name.starts_with(prefix))
            .map(|c| format!("/{} ", c.name))
            .collect();
    }
    let lower = word.to_ascii_lowercase();
    if let Some(prefix) = lower.strip_prefix('#') {
        return rooms
            .iter()
            .filter(|r| r.to_ascii_lowercase().starts_with(prefix))
            .map(|r| format!("{head}#{r} "))
            .collect();
    }
    let suffix = if start == 0 { ": " } else { " " };
    nicks
        .iter()
        .filter(|n| n.to_ascii_lowercase().starts_with(&lower))
        .map(|n| format!("{head}{n}{suffix}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first completion, as one Tab gives it.
    fn complete(line: &str, nicks: &[String]) -> Option<String> {
        completions(line, nicks, &[]).into_iter().next()
    }

    fn cmd(line: &str) -> Command {
        match parse(line) {
            Ok(Some(Input::Command(c))) => c,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn plain_text_and_escaped_slashes_are_said() {
        assert_eq!(parse("hello").unwrap(), Some(Input::Say("hello".into())));
        assert_eq!(
            parse("//etc/passwd").unwrap(),
            Some(Input::Say("/etc/passwd".into()))
        );
        assert_eq!(parse("   ").unwrap(), None);
    }

    #[test]
    fn commands_parse_with_their_arguments_and_aliases() {
        assert_eq!(cmd("/join #rust"), Command::Join("#rust".into()));
        assert_eq!(cmd("/j rust"), Command::Join("rust".into()));
        let leave = |room: Option<&str>, reason: Option<&str>| Command::Leave {
            room: room.map(Into::into),
            reason: reason.map(Into::into),
        };
        assert_eq!(cmd("/leave"), leave(None, None));
        assert_eq!(cmd("/leave rust"), leave(Some("rust"), None));
        assert_eq!(
            cmd("/part #rust see you all"),
            leave(Some("#rust"), Some("see you all"))
        );
        assert_eq!(cmd("/leave see you all"), leave(None, Some("see you all")));
        assert_eq!(
            cmd("/msg bob see you at 5"),
            Command::Msg {
                to: "bob".into(),
                text: Some("see you at 5".into())
            }
        );
        assert_eq!(
            cmd("/msg bob"),
            Command::Msg {
                to: "bob".into(),
                text: None
            }
        );
        assert_eq!(cmd("/me waves"), Command::Me("waves".into()));
        assert_eq!(cmd("/topic"), Command::Topic(None));
        assert_eq!(
            cmd("/TOPIC new one"),
            Command::Topic(Some("new one".into()))
        );
        assert_eq!(cmd("/away lunch"), Command::Away(Some("lunch".into())));
        assert_eq!(cmd("/quit"), Command::Quit);
        assert_eq!(cmd("/send ~/cat.png"), Command::Send("~/cat.png".into()));
        assert_eq!(cmd("/download 12"), Command::Download { id: 12, dir: None });
        assert_eq!(
            cmd("/download #7 /tmp/x"),
            Command::Download {
                id: 7,
                dir: Some("/tmp/x".into())
            }
        );
        assert!(parse("/download twelve").is_err());
        assert_eq!(
            cmd("/ban carol 30 flooding the room"),
            Command::Ban {
                user: "carol".into(),
                minutes: Some(30),
                reason: "flooding the room".into()
            }
        );
        assert_eq!(
            cmd("/ban carol spam"),
            Command::Ban {
                user: "carol".into(),
                minutes: None,
                reason: "spam".into()
            }
        );
        assert_eq!(
            cmd("/kick carol"),
            Command::Kick {
                user: "carol".into(),
                reason: String::new()
            }
        );
        assert_eq!(cmd("/ignore"), Command::Ignore(None));
        assert_eq!(
            cmd("/quiet carol 10"),
            Command::Quiet {
                user: "carol".into(),
                minutes: Some(10)
            }
        );
        assert!(parse("/quiet carol soon").is_err());
    }

    #[test]
    fn bad_commands_explain_themselves() {
        assert_eq!(parse("/join").unwrap_err(), "usage: /join ROOM");
        assert_eq!(parse("/msg").unwrap_err(), "usage: /msg USER [TEXT]");
        assert!(parse("/frobnicate").unwrap_err().contains("/help"));
        assert_eq!(parse("/send").unwrap_err(), "usage: /send PATH");
    }

    #[test]
    fn every_table_entry_parses() {
        for spec in COMMANDS {
            let line = match spec.args {
                "" => format!("/{}", spec.name),
                _ => format!("/{} 12 3", spec.name),
            };
            assert!(parse(&line).is_ok(), "{line}");
        }
    }

    #[test]
    fn tab_completes_commands_and_nicks() {
        let nicks = vec!["alice".to_string(), "albert".to_string(), "bob".to_string()];
        assert_eq!(complete("/jo", &nicks).as_deref(), Some("/join "));
        assert_eq!(complete("bo", &nicks).as_deref(), Some("bob: "));
        assert_eq!(complete("hi Al", &nicks).as_deref(), Some("hi alice "));
        assert_eq!(complete("hi zed", &nicks), None);
        assert_eq!(complete("", &nicks), None);
        assert_eq!(complete("/zz", &nicks), None);
        // Every match, in order, for Tab to cycle through; rooms after #.
        assert_eq!(
            completions("hi al", &nicks, &[]),
            ["hi alice ", "hi albert "]
        );
        assert_eq!(completions("/d", &nicks, &[]).len(), 4);
        let rooms = vec!["rust".to_string(), "random".to_string()];
        assert_eq!(
            completions("see #r", &nicks, &rooms),
            ["see #rust ", "see #random "]
        );
    }
}
