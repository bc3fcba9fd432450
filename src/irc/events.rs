//! confab's events as an IRC session will receive them: pure conversions
//! from `ServerMsg` to [`Line`]s, no I/O.
//!
//! Users appear as `name!name@confab` (the nick is the account name), rooms
//! as `#name`. What IRC has no word for is said in a `NOTICE`: edits,
//! deletions, reactions, a deleted room. A message with several lines
//! becomes one `PRIVMSG` per line, and a line too long for IRC's 512 bytes
//! is cut at character boundaries into several (as bouncers do); with
//! IRCv3 tags on, the first carries the confab id as `msgid`, each carries
//! `time` and `account`. Presence maps to what IRC clients show: a member
//! coming online `JOIN`s, going offline `QUIT`s with "offline"; away and
//! back are `AWAY` lines (IRCv3 away-notify). Room membership of offline
//! users (confab keeps it) is not shown on IRC.

use super::line::{Line, MAX_LINE, clean};
use crate::protocol::{ACTION_PREFIX, ChatMessage, MessageKind, PresenceEvent, ServerMsg};

/// The server's name on IRC, as [`set_server_name`] set it (`confab`
/// until then).
static SERVER_NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets the server's name on IRC (the `irc_server_name` setting), once per
/// process, before any IRC session starts; `false` if it was set already.
pub fn set_server_name(name: &str) -> bool {
    SERVER_NAME.set(name.to_owned()).is_ok()
}

/// The server's name: the source of its own lines and the host part of
/// every user's mask.
pub fn server() -> &'static str {
    SERVER_NAME.get().map_or("confab", String::as_str)
}

/// How one IRC session wants events written (from the capabilities it
/// negotiated).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Style {
    /// message-tags, server-time, account-tag: `time`, `msgid`, `account`.
    pub tags: bool,
    /// away-notify: `AWAY` lines for other users.
    pub away_notify: bool,
    /// echo-message: the session's own messages come back to it once
    /// stored (instead of nothing).
    pub echo: bool,
    /// draft/read-marker: `MARKREAD` when another session of the user
    /// reads a conversation.
    pub read_marker: bool,
}

/// `user`'s IRC source, `user!user@confab`.
pub fn mask(user: &str) -> String {
    format!("{user}!{user}@{}", server())
}

/// A room's channel name.
pub fn channel(room: &str) -> String {
    format!("#{room}")
}

/// The lines an event becomes (none for events IRC sessions do not see).
pub fn event_lines(msg: &ServerMsg, style: Style) -> Vec<Line> {
    match msg {
        // A topic change is also a `topic_changed` event: one TOPIC line.
        ServerMsg::Message(m) if m.kind == MessageKind::Topic => Vec::new(),
        ServerMsg::Message(m) => message_lines(m, style),
        ServerMsg::Presence {
            room,
            user,
            event,
            message,
        } => {
            let from = mask(user);
            let line = match event {
                PresenceEvent::Join | PresenceEvent::Online => {
                    Line::new("JOIN").source(&from).param(&channel(room))
                }
                PresenceEvent::Leave => {
                    let part = Line::new("PART").source(&from).param(&channel(room));
                    match message {
                        Some(reason) => part.text(&clean(reason)),
                        None => part,
                    }
                }
                // Gone from the server, still a member: a QUIT (sent once
                // for all the channels shared with them, as IRC does).
                PresenceEvent::Offline => Line::new("QUIT")
                    .source(&from)
                    .text(&clean(message.as_deref().unwrap_or("offline"))),
                PresenceEvent::Away if style.away_notify => Line::new("AWAY")
                    .source(&from)
                    .text(&clean(message.as_deref().unwrap_or("away"))),
                PresenceEvent::Back if style.away_notify => Line::new("AWAY").source(&from),
                PresenceEvent::Away | PresenceEvent::Back => return Vec::new(),
            };
            vec![line]
        }
        ServerMsg::TopicChanged { room, topic, by } => vec![
            Line::new("TOPIC")
                .source(&mask(by))
                .param(&channel(room))
                .text(&clean(topic)),
        ],
        // Another session of the account joined or left: as IRC servers
        // that let several clients share an account (ergo's multiclient)
        // tell the others, the account's own JOIN or PART.
        ServerMsg::YouJoined { room, user } => {
            vec![Line::new("JOIN").source(&mask(user)).param(&channel(room))]
        }
        ServerMsg::YouLeft { room, user } => {
            vec![Line::new("PART").source(&mask(user)).param(&channel(room))]
        }
        ServerMsg::RoomDeleted { room, by } => vec![notice(
            &channel(room),
            &format!("#{room} was deleted by {by}"),
        )],
        ServerMsg::MessageEdited {
            id,
            room,
            to,
            from,
            body,
            ..
        } => text_lines(
            "NOTICE",
            &mask(from),
            &target(room, to),
            &format!("(edited message {id}) {body}"),
            None,
            style,
        ),
        ServerMsg::MessageDeleted {
            id, room, to, by, ..
        } => vec![notice(
            &target(room, to),
            &format!("message {id} was deleted by {by}"),
        )],
        ServerMsg::Reaction {
            id,
            room,
            to,
            emoji,
            user,
            added,
            ..
        } => vec![notice(
            &target(room, to),
            &format!(
                "{user} {} {emoji} {} message {id}",
                if *added { "reacted" } else { "took back" },
                if *added { "to" } else { "on" }
            ),
        )],
        // The front door's words to a client waiting for a session slot.
        ServerMsg::Queued {
            position,
            length,
            eta_secs,
        } => vec![notice(
            "*",
            &format!(
                "*** The server is full: you are number {position} of {length} in line{}",
                eta_secs.map_or_else(String::new, |s| format!(" (about {s} s)"))
            ),
        )],
        ServerMsg::Admitted { waited_ms } => vec![notice(
            "*",
            &format!("*** Your turn came after {} s in line", waited_ms / 1000),
        )],
        ServerMsg::Read {
            room,
            with,
            ts: Some(ts),
            ..
        } if style.read_marker => vec![
            Line::new("MARKREAD")
                .source(server())
                .param(&target(room, with))
                .param(&format!("timestamp={}", iso8601(*ts))),
        ],
        ServerMsg::Closing { message, .. } => {
            vec![Line::new("ERROR").text(&format!("Closing link: {}", clean(message)))]
        }
        _ => Vec::new(),
    }
}

/// An event's lines, encoded.
pub fn encode_event(msg: &ServerMsg, style: Style) -> Vec<u8> {
    let mut out = Vec::new();
    for line in event_lines(msg, style) {
        line.encode_into(&mut out);
    }
    out
}

/// `301` to the sender of a direct message whose recipient is away (as
/// IRC servers answer a `PRIVMSG` to an away user).
pub fn away_reply(m: &ChatMessage, away: &str) -> Option<Line> {
    let to = m.to.as_deref()?;
    let mut line = Line::new("301")
        .source(server())
        .param(&m.from)
        .param(to)
        .param(&clean(away));
    line.trailing = true;
    Some(line)
}

/// A stored message's lines (a topic change as `TOPIC`), for history.
pub fn message_lines(m: &ChatMessage, style: Style) -> Vec<Line> {
    let from = mask(&m.from);
    let to = target(&m.room, &m.to);
    if m.kind == MessageKind::Topic {
        return vec![
            Line::new("TOPIC")
                .source(&from)
                .param(&to)
                .text(&clean(&m.body)),
        ];
    }
    let mut body = match m.body.strip_prefix(ACTION_PREFIX) {
        // IRC's action is one line: a multi-line action stays text.
        Some(action) if !action.contains('\n') => format!("\u{1}ACTION {action}\u{1}"),
        _ => m.body.clone(),
    };
    if let Some(f) = &m.file {
        body = format!(
            "{body} [file {}: {}, {} bytes; download it with the confab client]",
            f.id, f.mime, f.size
        );
    }
    let meta = Meta {
        id: m.id,
        ts: m.ts,
        account: &m.from,
    };
    let command = if m.notice { "NOTICE" } else { "PRIVMSG" };
    text_lines(command, &from, &to, &body, Some(meta), style)
}

/// What the tags of a message's lines say.
struct Meta<'a> {
    id: i64,
    ts: i64,
    account: &'a str,
}

/// `text` as `command` lines from `source` to `to`: one per line of the
/// text, each cut to fit IRC's line length.
fn text_lines(
    command: &str,
    source: &str,
    to: &str,
    text: &str,
    meta: Option<Meta>,
    style: Style,
) -> Vec<Line> {
    // `:source COMMAND to :` and CR LF around the text.
    let room = MAX_LINE - (source.len() + command.len() + to.len() + 6);
    let mut lines = Vec::new();
    for part in text.split('\n').flat_map(|l| split_at_width(l, room)) {
        let mut line = Line::new(command).source(source).param(to);
        line.params.push(if part.is_empty() {
            " ".to_owned()
        } else {
            clean(&part)
        });
        line.trailing = true;
        if style.tags
            && let Some(meta) = &meta
        {
            line = line.tag("time", Some(&iso8601(meta.ts)));
            if lines.is_empty() {
                line = line.tag("msgid", Some(&meta.id.to_string()));
            }
            line = line.tag("account", Some(meta.account));
        }
        lines.push(line);
    }
    lines
}

/// `text` in pieces of at most `max` bytes, cut between characters (one
/// empty piece for empty text).
fn split_at_width(text: &str, max: usize) -> Vec<String> {
    let max = max.max(4);
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        pieces.push(rest[..cut].to_owned());
        rest = &rest[cut..];
    }
    pieces.push(rest.to_owned());
    pieces
}

/// A room's channel, or the other user of a DM.
fn target(room: &Option<String>, to: &Option<String>) -> String {
    match (room, to) {
        (Some(room), _) => channel(room),
        (None, Some(to)) => to.clone(),
        (None, None) => "*".to_owned(),
    }
}

/// A notice from the server.
fn notice(to: &str, text: &str) -> Line {
    Line::new("NOTICE")
        .source(server())
        .param(to)
        .text(&clean(text))
}

/// An IRCv3 timestamp (`2026-12-03T10:00:00.000Z`, UTC; the fraction
/// may be absent or shorter) as milliseconds since the epoch: the inverse
/// of [`iso8601`].
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let (date, time) = s.strip_suffix('Z')?.split_once('T')?;
    let day = crate::search::day_start(date)?;
    let (hms, frac) = match time.split_once('.') {
        Some((hms, frac)) => (hms, frac),
        None => (time, ""),
    };
    let mut parts = hms.splitn(3, ':');
    let mut field = |max: i64| -> Option<i64> {
        let v: i64 = parts.next()?.parse().ok()?;
        (0..=max).contains(&v).then_some(v)
    };
    let (h, m, sec) = (field(23)?, field(59)?, field(60)?);
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ms = format!("{frac:0<3}")[..3].parse::<i64>().ok()?;
    Some(day + ((h * 60 + m) * 60 + sec) * 1000 + ms)
}

/// Milliseconds since the epoch as IRCv3 `server-time`
/// (`2026-12-03T10:00:00.000Z`, UTC).
pub fn iso8601(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let (year, month, day) = crate::search::civil_from_days(secs.div_euclid(86_400));
    let of_day = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_times_parse_back() {
        for ms in [0, 1_764_756_000_123, 253_402_300_799_999] {
            assert_eq!(parse_iso8601(&iso8601(ms)), Some(ms));
        }
        assert_eq!(
            parse_iso8601("2025-12-03T10:00:00Z"),
            Some(1_764_756_000_000)
        );
        assert_eq!(
            parse_iso8601("2025-12-03T10:00:00.5Z"),
            Some(1_764_756_000_500)
        );
        for bad in [
            "",
            "2026-12-03",
            "2026-12-03T25:00:00Z",
            "2026-13-01T00:00:00Z",
            "x",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }
    use crate::protocol::FileInfo;

    fn text(msg: &ServerMsg, style: Style) -> String {
        String::from_utf8(encode_event(msg, style)).unwrap()
    }

    fn said(room: Option<&str>, to: Option<&str>, body: &str) -> ServerMsg {
        let mut m = ChatMessage::new(42, "alice".into(), body.into(), 1_764_756_000_123);
        m.room = room.map(str::to_owned);
        m.to = to.map(str::to_owned);
        ServerMsg::Message(Box::new(m))
    }

    #[test]
    fn server_time_is_utc_iso_8601_with_milliseconds() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601(1_764_756_000_123), "2025-12-03T10:00:00.123Z");
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn room_and_direct_messages_are_privmsgs_with_tags_when_asked() {
        let plain = Style::default();
        assert_eq!(
            text(&said(Some("rust"), None, "hello"), plain),
            ":alice!alice@confab PRIVMSG #rust :hello\r\n"
        );
        assert_eq!(
            text(&said(None, Some("bob"), "psst, bob"), plain),
            ":alice!alice@confab PRIVMSG bob :psst, bob\r\n"
        );
        let tagged = Style {
            tags: true,
            ..Style::default()
        };
        assert_eq!(
            text(&said(Some("rust"), None, "hi there"), tagged),
            "@time=2025-12-03T10:00:00.123Z;msgid=42;account=alice \
             :alice!alice@confab PRIVMSG #rust :hi there\r\n"
        );
    }

    #[test]
    fn several_lines_and_long_lines_become_several_privmsgs() {
        let lines = event_lines(&said(Some("r"), None, "one\n\nthree"), Style::default());
        let bodies: Vec<&str> = lines.iter().map(|l| l.arg(1).unwrap()).collect();
        assert_eq!(bodies, ["one", " ", "three"]);
        let long = "é".repeat(400);
        let lines = event_lines(&said(Some("r"), None, &long), Style::default());
        assert!(lines.len() >= 2);
        let joined: String = lines.iter().map(|l| l.arg(1).unwrap()).collect();
        assert_eq!(joined, long, "cut between characters, nothing lost");
        for l in &lines {
            assert!(l.encode().len() <= MAX_LINE, "{} bytes", l.encode().len());
        }
        let tagged = Style {
            tags: true,
            ..Style::default()
        };
        let lines = event_lines(&said(Some("r"), None, "a\nb"), tagged);
        assert_eq!(lines[0].tag_value("msgid"), Some(Some("42")));
        assert_eq!(lines[1].tag_value("msgid"), None, "one id, on the first");
    }

    #[test]
    fn a_file_says_its_name_type_and_size() {
        let mut m = ChatMessage::new(
            7,
            "alice".into(),
            "shared cat.png (2 KiB, PNG image)".into(),
            0,
        );
        m.room = Some("general".into());
        m.file = Some(FileInfo {
            id: 3,
            name: "cat.png".into(),
            mime: "image/png".into(),
            size: 2048,
            sha256: String::new(),
        });
        let t = text(&ServerMsg::Message(Box::new(m)), Style::default());
        assert!(t.contains("shared cat.png"), "{t}");
        assert!(t.contains("[file 3: image/png, 2048 bytes"), "{t}");
    }

    #[test]
    fn presence_topics_and_what_irc_has_no_word_for() {
        let p = |event| ServerMsg::Presence {
            room: "rust".into(),
            user: "bob".into(),
            event,
            message: (event == PresenceEvent::Away).then(|| "lunch".into()),
        };
        let plain = Style::default();
        assert_eq!(
            text(&p(PresenceEvent::Join), plain),
            ":bob!bob@confab JOIN #rust\r\n"
        );
        assert_eq!(
            text(&p(PresenceEvent::Offline), plain),
            ":bob!bob@confab QUIT :offline\r\n"
        );
        assert_eq!(text(&p(PresenceEvent::Away), plain), "", "no away-notify");
        let away = Style {
            away_notify: true,
            ..Style::default()
        };
        assert_eq!(
            text(&p(PresenceEvent::Away), away),
            ":bob!bob@confab AWAY :lunch\r\n"
        );
        assert_eq!(
            text(&p(PresenceEvent::Back), away),
            ":bob!bob@confab AWAY\r\n"
        );
        let topic = ServerMsg::TopicChanged {
            room: "rust".into(),
            topic: "borrowck\r\nQUIT".into(),
            by: "carol".into(),
        };
        assert_eq!(
            text(&topic, plain),
            ":carol!carol@confab TOPIC #rust :borrowck  QUIT\r\n",
            "no line break gets through"
        );
        let edit = ServerMsg::MessageEdited {
            id: 9,
            room: Some("rust".into()),
            to: None,
            from: "bob".into(),
            body: "fixed".into(),
            edited_at: 0,
        };
        assert_eq!(
            text(&edit, plain),
            ":bob!bob@confab NOTICE #rust :(edited message 9) fixed\r\n"
        );
        assert_eq!(
            text(&ServerMsg::Pong, plain),
            "",
            "replies are the session's"
        );
    }
}
