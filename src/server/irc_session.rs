//! An IRC session's front end (issue 19): what an IRC client's lines mean
//! in confab's terms, and the numerics that answer them.
//!
//! The session thread (`session`) owns the socket and the loop, as for a
//! confab client; for an IRC connection it cuts the input into lines and
//! hands each to [`IrcFront::line`]. This module keeps the IRC state
//! (registration, capabilities, the nick) and turns each command into the
//! same typed [`Request`]s a confab client sends, run by the same handlers
//! (`handlers::dispatch`): one account, room and history model, whatever
//! the client speaks. Replies become numerics here; events (messages,
//! presence, topics) reach the session through the hub's fan-out in the
//! session's [`Wire::Irc`] style (`irc::events`), like any other session's.
//!
//! Registration: `CAP LS`/`REQ`/`END`, `NICK`, `USER`, and credentials by
//! `AUTHENTICATE PLAIN` (SASL) or `PASS` (`password`, the nick being the
//! account, or `account:password`). The nick is always the account name
//! (as ergo's `force-nick-equals-account`). Capabilities: `message-tags`,
//! `server-time`, `account-tag`, `echo-message`, `away-notify`, `batch`,
//! `sasl`, `draft/chathistory`.

use super::handlers::{self, Answer, Cx, Entry, Handled, Refusal, User, account, messages};
use super::wire::Wire;
use crate::irc::events::{Style, channel, event_lines, mask, message_lines, server};
use crate::irc::line::{Line, LineError, MAX_LINE, clean, with_label, with_tag};
use crate::protocol::{
    ACTION_PREFIX, ChatMessage, ErrorCode, HISTORY_PAGE_MAX, MAX_TOPIC_LEN, Member, Request,
    RoomInfo, ServerMsg, Unread, WHO_PAGE_MAX,
};
use crate::validate;
use base64::Engine;

/// The capabilities offered, as `CAP LS 302` lists them.
const CAPS: &[&str] = &[
    "account-tag",
    "away-notify",
    "batch",
    "draft/chathistory",
    "draft/read-marker",
    "echo-message",
    "labeled-response",
    "message-tags",
    "multi-prefix",
    "sasl",
    "server-time",
    "userhost-in-names",
];

/// SASL payloads come in chunks of this many base64 characters.
const SASL_CHUNK: usize = 400;
/// The longest SASL payload accepted (base64 of user and password).
const SASL_MAX: usize = 1200;

/// What the session must do after a line.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing more.
    Continue,
    /// Registration is complete: the session belongs to this user.
    Entered(User),
    /// End the session, saying why (an IRC `ERROR` line).
    Close(ErrorCode, String),
}

/// Which capabilities a session has enabled.
#[derive(Debug, Default, Clone, Copy)]
struct Caps {
    account_tag: bool,
    away_notify: bool,
    batch: bool,
    chathistory: bool,
    read_marker: bool,
    echo: bool,
    labeled: bool,
    message_tags: bool,
    /// Accepted for clients that ask; confab shows no channel prefixes,
    /// so every prefix a member has is none.
    multi_prefix: bool,
    sasl: bool,
    server_time: bool,
    /// NAMES lists `nick!user@host`.
    userhost_in_names: bool,
}

impl Caps {
    fn flag(&mut self, name: &str) -> Option<&mut bool> {
        Some(match name {
            "account-tag" => &mut self.account_tag,
            "away-notify" => &mut self.away_notify,
            "batch" => &mut self.batch,
            "draft/chathistory" => &mut self.chathistory,
            "draft/read-marker" => &mut self.read_marker,
            "echo-message" => &mut self.echo,
            "labeled-response" => &mut self.labeled,
            "message-tags" => &mut self.message_tags,
            "multi-prefix" => &mut self.multi_prefix,
            "sasl" => &mut self.sasl,
            "server-time" => &mut self.server_time,
            "userhost-in-names" => &mut self.userhost_in_names,
            _ => return None,
        })
    }

    fn enabled(&self) -> Vec<&'static str> {
        let mut copy = *self;
        CAPS.iter()
            .copied()
            .filter(|c| copy.flag(c).is_some_and(|f| *f))
            .collect()
    }
}

/// Where a SASL exchange is.
#[derive(Debug, Default)]
enum Sasl {
    /// None started.
    #[default]
    Idle,
    /// `AUTHENTICATE PLAIN` was sent; collecting the payload.
    Plain(String),
    /// Credentials were accepted for this user.
    Done(User),
}

/// One IRC session's state.
#[derive(Debug)]
pub struct IrcFront {
    caps: Caps,
    /// `CAP LS` or `REQ` was sent before registration: wait for `CAP END`.
    cap_open: bool,
    /// The nick asked for (before registration), then the account name.
    nick: Option<String>,
    user_seen: bool,
    pass: Option<String>,
    sasl: Sasl,
    /// The account's id, once registered.
    user_id: Option<crate::store::UserId>,
    next_req: u64,
    next_batch: u64,
}

impl Default for IrcFront {
    fn default() -> Self {
        IrcFront::new()
    }
}

impl IrcFront {
    /// A connection that has said nothing yet.
    pub fn new() -> IrcFront {
        IrcFront {
            caps: Caps::default(),
            cap_open: false,
            nick: None,
            user_seen: false,
            pass: None,
            sasl: Sasl::Idle,
            user_id: None,
            next_req: 0,
            next_batch: 0,
        }
    }

    /// How events are written for this session.
    pub fn style(&self) -> Style {
        Style {
            tags: self.caps.message_tags || self.caps.server_time || self.caps.account_tag,
            away_notify: self.caps.away_notify,
            echo: self.caps.echo,
            read_marker: self.caps.read_marker,
        }
    }

    /// A request id for the next command (the writer's acks carry it).
    pub fn next_req(&mut self) -> u64 {
        self.next_req += 1;
        self.next_req
    }

    /// The nick as numerics address it (`*` before there is one).
    fn me(&self) -> &str {
        self.nick.as_deref().unwrap_or("*")
    }

    /// A numeric from the server to this client (its last parameter
    /// written as trailing text, as servers do).
    fn num(&self, code: &str) -> Line {
        let mut line = Line::new(code).source(server()).param(self.me());
        line.trailing = true;
        line
    }

    /// A numeric whose parameters are all words (`004`, `324`, `221`).
    fn num_words(&self, code: &str) -> Line {
        Line::new(code).source(server()).param(self.me())
    }

    /// Handles one line from the client; `me` is the logged-in user, once
    /// registered. Replies go to `out`.
    pub fn line(
        &mut self,
        cx: &mut Cx,
        me: Option<&User>,
        raw: Result<Vec<u8>, LineError>,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let line = match raw.and_then(|r| Line::parse(&r)) {
            Ok(line) => line,
            Err(LineError::TooLong) => {
                self.num("417")
                    .param("Input line was too long")
                    .encode_into(out);
                return Outcome::Continue;
            }
            Err(LineError::NotUtf8) => {
                Line::new("FAIL")
                    .source(server())
                    .param("*")
                    .param("INVALID_UTF8")
                    .text("confab speaks UTF-8 only; the line was dropped")
                    .encode_into(out);
                return Outcome::Continue;
            }
            Err(LineError::Empty | LineError::NoCommand) => return Outcome::Continue,
        };
        // labeled-response: the answer to a labeled command carries the
        // label (one line), or comes in a labeled batch (several), or is
        // an ACK (none); a message's echo carries it from the writer.
        let label = match (me, self.caps.labeled) {
            (Some(_), true) => line.tag_value("label").flatten().map(str::to_owned),
            _ => None,
        };
        if let Some(label) = label {
            cx.label = Some(label.clone());
            let mut answer = Vec::new();
            let outcome = self.dispatch_line(cx, me, &line, &mut answer);
            let echoed = self.caps.echo && matches!(line.command.as_str(), "PRIVMSG" | "NOTICE");
            if !(answer.is_empty() && echoed) {
                // CHATHISTORY answers in a batch of its own already.
                let own_batch = self.caps.batch && line.command == "CHATHISTORY";
                self.labeled(&label, &answer, own_batch, out);
            }
            return outcome;
        }
        let outcome = self.dispatch_line(cx, me, &line, out);
        if let Outcome::Continue = outcome
            && me.is_none()
        {
            return self.try_complete(cx, out);
        }
        outcome
    }

    /// `answer` (the lines that answer one labeled command; a batch of
    /// its own when `own_batch`) as labeled-response wants them.
    fn labeled(&mut self, label: &str, answer: &[u8], own_batch: bool, out: &mut Vec<u8>) {
        let lines: Vec<&[u8]> = answer
            .split_inclusive(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        match lines.len() {
            0 => out.extend(with_label(b":confab ACK\r\n", label)),
            1 => out.extend(with_label(lines[0], label)),
            // A batch already: its start line carries it.
            _ if own_batch => {
                out.extend(with_label(lines[0], label));
                for l in &lines[1..] {
                    out.extend_from_slice(l);
                }
            }
            _ => {
                let id = self.batch_id();
                let start = Line::new("BATCH")
                    .source(server())
                    .param(&format!("+{id}"))
                    .param("labeled-response")
                    .encode();
                out.extend(with_label(&start, label));
                for l in lines {
                    out.extend(with_tag(l, "batch", &id));
                }
                Line::new("BATCH")
                    .source(server())
                    .param(&format!("-{id}"))
                    .encode_into(out);
            }
        }
    }

    /// Runs one parsed line.
    fn dispatch_line(
        &mut self,
        cx: &mut Cx,
        me: Option<&User>,
        line: &Line,
        out: &mut Vec<u8>,
    ) -> Outcome {
        match (me, line.command.as_str()) {
            (_, "CAP") => {
                self.cap(cx, line, out);
                Outcome::Continue
            }
            (_, "PING") if line.params.is_empty() => {
                self.need_more(line, out);
                Outcome::Continue
            }
            (_, "PING") => {
                Line::new("PONG")
                    .source(server())
                    .param(server())
                    .text(line.arg(0).unwrap_or(""))
                    .encode_into(out);
                Outcome::Continue
            }
            (_, "PONG") => Outcome::Continue,
            (_, "QUIT") => {
                // The others see it as the QUIT's text (one line, cut as an
                // away message is).
                if let Some(reason) = line.arg(0).filter(|r| !r.is_empty()) {
                    let reason: String = clean(reason).chars().take(MAX_TOPIC_LEN).collect();
                    cx.svc.hub.set_quit_message(cx.session, &reason);
                }
                Outcome::Close(ErrorCode::Other, "Quit".into())
            }
            (None, _) => self.registration(cx, line, out),
            (Some(me), _) => self.command(cx, me, line, out),
        }
    }

    /// `CAP`, before or after registration.
    fn cap(&mut self, cx: &mut Cx, line: &Line, out: &mut Vec<u8>) {
        let sub = line.arg(0).unwrap_or("").to_ascii_uppercase();
        let me = self.me().to_owned();
        let reply = |sub: &str, caps: &str| {
            Line::new("CAP")
                .source(server())
                .param(&me)
                .param(sub)
                .text(caps)
        };
        match sub.as_str() {
            "LS" => {
                if self.user_id.is_none() {
                    self.cap_open = true;
                }
                let v302 = line.arg(1).and_then(|v| v.parse::<u32>().ok()) >= Some(302);
                let list: Vec<String> = CAPS
                    .iter()
                    .map(|c| match *c {
                        "sasl" if v302 => "sasl=PLAIN".to_owned(),
                        c => c.to_owned(),
                    })
                    .collect();
                reply("LS", &list.join(" ")).encode_into(out);
            }
            "LIST" => reply("LIST", &self.caps.enabled().join(" ")).encode_into(out),
            "REQ" => {
                if self.user_id.is_none() {
                    self.cap_open = true;
                }
                let asked = line.arg(1).unwrap_or("");
                let mut caps = self.caps;
                let known = asked.split_whitespace().all(|c| {
                    let (name, on) = match c.strip_prefix('-') {
                        Some(n) => (n, false),
                        None => (c, true),
                    };
                    match caps.flag(name) {
                        Some(f) => {
                            *f = on;
                            true
                        }
                        None => false,
                    }
                });
                if known {
                    self.caps = caps;
                    cx.outbox.set_wire(Wire::Irc(self.style()));
                    reply("ACK", asked).encode_into(out);
                } else {
                    reply("NAK", asked).encode_into(out);
                }
            }
            "END" => self.cap_open = false,
            _ => self
                .num("410")
                .param(&sub)
                .param("Invalid CAP command")
                .encode_into(out),
        }
    }

    /// A line before registration is complete.
    fn registration(&mut self, cx: &mut Cx, line: &Line, out: &mut Vec<u8>) -> Outcome {
        match line.command.as_str() {
            "NICK" => match line.arg(0).filter(|n| !n.is_empty()) {
                None => self.num("431").param("No nickname given").encode_into(out),
                Some(n) => match validate::username(n) {
                    Ok(name) => self.nick = Some(name),
                    Err(e) => self
                        .num("432")
                        .param(n)
                        .param(&format!("Erroneous nickname: {}", e.message))
                        .encode_into(out),
                },
            },
            // A realname is required, if only one character.
            "USER" if line.params.len() < 4 || line.params[3].is_empty() => {
                self.need_more(line, out)
            }
            "USER" => self.user_seen = true,
            "PASS" => match line.arg(0) {
                Some(p) => self.pass = Some(p.to_owned()),
                None => self.need_more(line, out),
            },
            "AUTHENTICATE" => self.authenticate(cx, line, out),
            _ => self
                .num("451")
                .param("You have not registered")
                .encode_into(out),
        }
        Outcome::Continue
    }

    fn need_more(&self, line: &Line, out: &mut Vec<u8>) {
        self.num("461")
            .param(&line.command)
            .param("Not enough parameters")
            .encode_into(out);
    }

    /// `AUTHENTICATE`: SASL PLAIN only.
    fn authenticate(&mut self, cx: &mut Cx, line: &Line, out: &mut Vec<u8>) {
        let arg = line.arg(0).unwrap_or("");
        match std::mem::take(&mut self.sasl) {
            Sasl::Done(user) => {
                self.sasl = Sasl::Done(user);
                self.num("907")
                    .param("You have already authenticated using SASL")
                    .encode_into(out);
            }
            _ if arg == "*" => self
                .num("906")
                .param("SASL authentication aborted")
                .encode_into(out),
            Sasl::Idle if arg.eq_ignore_ascii_case("PLAIN") => {
                self.sasl = Sasl::Plain(String::new());
                Line::new("AUTHENTICATE").param("+").encode_into(out);
            }
            Sasl::Idle => {
                self.num("908")
                    .param("PLAIN")
                    .param("are available SASL mechanisms")
                    .encode_into(out);
                self.sasl_failed("unknown mechanism", out);
            }
            Sasl::Plain(mut so_far) => {
                // One line over a chunk is 905 (ERR_SASLTOOLONG); chunks
                // adding up to more than any credentials need, a failure.
                if arg.len() > SASL_CHUNK {
                    self.num("905")
                        .param("SASL message too long")
                        .encode_into(out);
                    return;
                }
                if arg != "+" {
                    so_far.push_str(arg);
                }
                if so_far.len() > SASL_MAX {
                    self.sasl_failed("credentials too long", out);
                    return;
                }
                if arg.len() == SASL_CHUNK {
                    self.sasl = Sasl::Plain(so_far);
                    return;
                }
                let Some((user, password)) = plain_credentials(&so_far) else {
                    self.sasl_failed("malformed PLAIN payload", out);
                    return;
                };
                match account::check_password(cx, &user, &password) {
                    Ok(user) => {
                        self.nick = Some(user.name.clone());
                        self.num("900")
                            .param(&mask(&user.name))
                            .param(&user.name)
                            .param(&format!("You are now logged in as {}", user.name))
                            .encode_into(out);
                        self.num("903")
                            .param("SASL authentication successful")
                            .encode_into(out);
                        self.sasl = Sasl::Done(user);
                    }
                    Err(r) => self.sasl_failed(&r.message, out),
                }
            }
        }
    }

    fn sasl_failed(&mut self, why: &str, out: &mut Vec<u8>) {
        self.sasl = Sasl::Idle;
        self.num("904")
            .param(&format!("SASL authentication failed: {why}"))
            .encode_into(out);
    }

    /// Completes registration once `NICK`, `USER` and `CAP END` (if
    /// negotiation was started) are in: checks `PASS` unless SASL already
    /// logged in, then enters the session and writes the welcome.
    fn try_complete(&mut self, cx: &mut Cx, out: &mut Vec<u8>) -> Outcome {
        if self.user_id.is_some() || self.cap_open || !self.user_seen {
            return Outcome::Continue;
        }
        let Some(nick) = self.nick.clone() else {
            return Outcome::Continue;
        };
        let user = match std::mem::take(&mut self.sasl) {
            Sasl::Done(user) => user,
            _ => {
                let Some(pass) = self.pass.take() else {
                    self.num("464")
                        .param("Password required: log in with SASL PLAIN or PASS")
                        .encode_into(out);
                    return Outcome::Close(
                        ErrorCode::AuthFailed,
                        "this server needs your confab account: SASL PLAIN, or PASS account:password".into(),
                    );
                };
                let (name, password) = match pass.split_once(':') {
                    Some((n, p)) if validate::username(n).is_ok() => (n.to_owned(), p.to_owned()),
                    _ => (nick, pass),
                };
                match account::check_password(cx, &name, &password) {
                    Ok(user) => user,
                    Err(r) => {
                        let code = if r.code == ErrorCode::Banned {
                            "465"
                        } else {
                            "464"
                        };
                        self.num(code).param(&r.message).encode_into(out);
                        return Outcome::Close(r.code, r.message);
                    }
                }
            }
        };
        match account::enter_checked(cx, user) {
            Ok(Answer::Entered(entry)) => {
                self.nick = Some(entry.user.name.clone());
                self.user_id = Some(entry.user.id);
                cx.outbox.set_wire(Wire::Irc(self.style()));
                self.welcome(cx, &entry, out);
                Outcome::Entered(entry.user)
            }
            Ok(_) => Outcome::Close(ErrorCode::ServerError, "login failed".into()),
            Err(r) => Outcome::Close(r.code, r.message),
        }
    }

    /// 001-005, the MOTD's absence, the rooms the user is in, what was
    /// missed, and the direct messages that arrived while away.
    fn welcome(&mut self, cx: &mut Cx, entry: &Entry, out: &mut Vec<u8>) {
        let me = self.me().to_owned();
        let version = format!("confab-{}", env!("CARGO_PKG_VERSION"));
        self.num("001")
            .param(&format!("Welcome to confab, {me}"))
            .encode_into(out);
        self.num("002")
            .param(&format!(
                "Your host is {}, running version {version}",
                server()
            ))
            .encode_into(out);
        self.num("003")
            .param("This server stores every message: scroll back with CHATHISTORY")
            .encode_into(out);
        self.num_words("004")
            .param(server())
            .param(&version)
            .param("i")
            .param("n")
            .encode_into(out);
        for tokens in isupport(cx).chunks(12) {
            let mut line = self.num("005");
            for t in tokens {
                line = line.param(t);
            }
            line.param("are supported by this server").encode_into(out);
        }
        self.num("422")
            .param("MOTD File is missing")
            .encode_into(out);
        let ServerMsg::LoggedIn { rooms, unread, .. } = &entry.reply else {
            return;
        };
        for room in rooms {
            self.join_burst(cx, room, out);
        }
        if let Some(summary) = away_summary(unread) {
            self.server_notice(&summary, out);
        }
        for event in &entry.replay {
            for line in event_lines(event, self.style()) {
                line.encode_into(out);
            }
        }
    }

    fn server_notice(&self, text: &str, out: &mut Vec<u8>) {
        Line::new("NOTICE")
            .source(server())
            .param(self.me())
            .text(&clean(text))
            .encode_into(out);
    }

    /// What a client sees on joining a room: `JOIN`, its topic, its names.
    fn join_burst(&self, cx: &mut Cx, room: &RoomInfo, out: &mut Vec<u8>) {
        let me = self.me();
        Line::new("JOIN")
            .source(&mask(me))
            .param(&channel(&room.name))
            .encode_into(out);
        if !room.topic.is_empty() {
            self.num("332")
                .param(&channel(&room.name))
                .param(&clean(&room.topic))
                .encode_into(out);
        }
        self.names_then(cx, &room.name, out, |front, cx, out| {
            // draft/read-marker: the room's marker, before the end of names.
            if front.caps.read_marker {
                front.marker_line(cx, &channel(&room.name), out);
            }
        });
    }

    /// `353` lines of a room's online members, then `366`.
    fn names(&self, cx: &mut Cx, room: &str, out: &mut Vec<u8>) {
        self.names_then(cx, room, out, |_, _, _| {});
    }

    /// [`IrcFront::names`], with `before_end` written before the `366`.
    fn names_then(
        &self,
        cx: &mut Cx,
        room: &str,
        out: &mut Vec<u8>,
        before_end: impl FnOnce(&IrcFront, &mut Cx, &mut Vec<u8>),
    ) {
        let chan = channel(room);
        let head = self.num("353").param("=").param(&chan);
        let room_for_names = MAX_LINE - head.encode().len() - 2;
        let mut names = String::new();
        for m in online_members(cx, room) {
            let name = if self.caps.userhost_in_names {
                mask(&m.user)
            } else {
                m.user
            };
            if !names.is_empty() && names.len() + 1 + name.len() > room_for_names {
                head.clone().param(&names).encode_into(out);
                names.clear();
            }
            if !names.is_empty() {
                names.push(' ');
            }
            names.push_str(&name);
        }
        if !names.is_empty() {
            head.param(&names).encode_into(out);
        }
        before_end(self, cx, out);
        self.num("366")
            .param(&chan)
            .param("End of /NAMES list")
            .encode_into(out);
    }

    /// A command of a registered client.
    fn command(&mut self, cx: &mut Cx, me: &User, line: &Line, out: &mut Vec<u8>) -> Outcome {
        let cmd = line.command.as_str();
        match cmd {
            "PRIVMSG" | "NOTICE" => return self.privmsg(cx, me, line, out),
            "JOIN" => self.join(cx, me, line, out),
            "PART" => self.part(cx, me, line, out),
            "TOPIC" => self.topic(cx, me, line, out),
            "NAMES" => match line.arg(0) {
                Some(list) => {
                    for chan in list.split(',').filter(|c| !c.is_empty()) {
                        match room_name(chan) {
                            Some(room) if cx.svc.hub.room(&room).is_some() => {
                                self.names(cx, &room, out)
                            }
                            _ => self
                                .num("366")
                                .param(chan)
                                .param("End of /NAMES list")
                                .encode_into(out),
                        }
                    }
                }
                None => self
                    .num("366")
                    .param("*")
                    .param("End of /NAMES list")
                    .encode_into(out),
            },
            "LIST" => self.list(cx, out),
            "WHO" => self.who(cx, line, out),
            "WHOIS" => self.whois(cx, line, out),
            "ISON" => {
                let online: Vec<String> = line
                    .params
                    .iter()
                    .flat_map(|p| p.split_whitespace())
                    .filter(|n| user_status(cx, n).is_some_and(|(on, _)| on))
                    .map(str::to_owned)
                    .collect();
                self.num("303").param(&online.join(" ")).encode_into(out);
            }
            "AWAY" => {
                let message = line.arg(0).filter(|m| !m.is_empty()).map(str::to_owned);
                let away = message.is_some();
                match handlers::dispatch(cx, me, Request::Away { message }) {
                    Ok(_) if away => self
                        .num("306")
                        .param("You have been marked as being away")
                        .encode_into(out),
                    Ok(_) => self
                        .num("305")
                        .param("You are no longer marked as being away")
                        .encode_into(out),
                    Err(r) => self.fail(cmd, "*", &r, out),
                }
            }
            "MODE" => self.mode(cx, line, out),
            "KICK" => self.kick(cx, me, line, out),
            "CHATHISTORY" => self.chathistory(cx, me, line, out),
            "MARKREAD" => self.markread(cx, me, line, out),
            "MOTD" => self
                .num("422")
                .param("MOTD File is missing")
                .encode_into(out),
            "LUSERS" => self
                .num("251")
                .param(&format!(
                    "There are {} users and 0 invisible on 1 servers",
                    cx.svc.hub.logged_in_count()
                ))
                .encode_into(out),
            "VERSION" => self
                .num("351")
                .param(&format!("confab-{}", env!("CARGO_PKG_VERSION")))
                .param(server())
                .param("an IRC front end to confab")
                .encode_into(out),
            "NICK" => match line.arg(0) {
                Some(n) if n.eq_ignore_ascii_case(&me.name) => {}
                _ => self
                    .num("400")
                    .param("NICK")
                    .param("on confab your nick is your account name and cannot change")
                    .encode_into(out),
            },
            "USER" | "PASS" => self
                .num("462")
                .param("You may not reregister")
                .encode_into(out),
            "AUTHENTICATE" => self
                .num("907")
                .param("You have already authenticated")
                .encode_into(out),
            _ => self
                .num("421")
                .param(cmd)
                .param("Unknown command")
                .encode_into(out),
        }
        Outcome::Continue
    }

    /// `PRIVMSG`/`NOTICE` to channels (room messages) and nicks (direct
    /// messages). A notice gets no error replies, as IRC wants.
    fn privmsg(&mut self, cx: &mut Cx, me: &User, line: &Line, out: &mut Vec<u8>) -> Outcome {
        let cmd = line.command.as_str();
        let notice = cmd == "NOTICE";
        let (Some(targets), Some(text)) = (line.arg(0), line.arg(1).filter(|t| !t.is_empty()))
        else {
            if !notice {
                let code = if line.params.is_empty() { "411" } else { "412" };
                self.num(code)
                    .param(if code == "411" {
                        "No recipient given (PRIVMSG)"
                    } else {
                        "No text to send"
                    })
                    .encode_into(out);
            }
            return Outcome::Continue;
        };
        let Some(body) = body_of(text) else {
            // Other CTCP (VERSION, PING, ...): confab has nobody to answer.
            return Outcome::Continue;
        };
        let reply_to = line
            .tag_value("+draft/reply")
            .flatten()
            .and_then(|id| id.parse::<i64>().ok());
        for target in targets.split(',').filter(|t| !t.is_empty()) {
            let request = match room_name(target) {
                Some(room) if target.starts_with('#') => Request::Say {
                    room,
                    body: body.clone(),
                    reply_to,
                    notice,
                },
                _ => Request::Dm {
                    to: target.to_owned(),
                    body: body.clone(),
                    reply_to,
                    notice,
                },
            };
            match handlers::dispatch(cx, me, request) {
                Ok(_) => {}
                Err(r) if r.ends_session() => return Outcome::Close(r.code, r.message),
                Err(_) if notice => {}
                Err(r) => self.fail(cmd, target, &r, out),
            }
        }
        Outcome::Continue
    }

    /// `JOIN #a,#b`: joins existing rooms and creates missing ones, as
    /// IRC servers do.
    fn join(&mut self, cx: &mut Cx, me: &User, line: &Line, out: &mut Vec<u8>) {
        let Some(list) = line.arg(0) else {
            return self.need_more(line, out);
        };
        for chan in list.split(',').filter(|c| !c.is_empty()) {
            let Some(room) = room_name(chan).filter(|_| chan.starts_with('#')) else {
                self.num("403")
                    .param(chan)
                    .param("No such channel: channel names are # and 2-32 of a-z, 0-9, _ and -")
                    .encode_into(out);
                continue;
            };
            let mut done = handlers::dispatch(cx, me, Request::Join { room: room.clone() });
            if matches!(&done, Err(r) if r.code == ErrorCode::NoSuchRoom) {
                done = handlers::dispatch(
                    cx,
                    me,
                    Request::CreateRoom {
                        room: room.clone(),
                        topic: String::new(),
                    },
                );
            }
            match done {
                Ok(Answer::Reply(ServerMsg::Joined { room, .. })) => {
                    self.join_burst(cx, &room, out)
                }
                Ok(_) => {}
                Err(r) => self.fail("JOIN", chan, &r, out),
            }
        }
    }

    fn part(&mut self, cx: &mut Cx, me: &User, line: &Line, out: &mut Vec<u8>) {
        let Some(list) = line.arg(0) else {
            return self.need_more(line, out);
        };
        for chan in list.split(',').filter(|c| !c.is_empty()) {
            let room = room_name(chan).unwrap_or_default();
            let reason = line.arg(1).filter(|r| !r.is_empty()).map(str::to_owned);
            match handlers::dispatch(cx, me, Request::Leave { room, reason }) {
                Ok(_) => {
                    let mut part = Line::new("PART").source(&mask(&me.name)).param(chan);
                    if let Some(reason) = line.arg(1) {
                        part = part.text(reason);
                    }
                    part.encode_into(out);
                }
                Err(r) => self.fail("PART", chan, &r, out),
            }
        }
    }

    fn topic(&mut self, cx: &mut Cx, me: &User, line: &Line, out: &mut Vec<u8>) {
        let Some(chan) = line.arg(0) else {
            return self.need_more(line, out);
        };
        let room = room_name(chan).unwrap_or_default();
        match line.arg(1) {
            None => match cx.svc.hub.room_info(&room) {
                Some(info) if info.topic.is_empty() => self
                    .num("331")
                    .param(chan)
                    .param("No topic is set")
                    .encode_into(out),
                Some(info) => self
                    .num("332")
                    .param(chan)
                    .param(&clean(&info.topic))
                    .encode_into(out),
                None => self
                    .num("403")
                    .param(chan)
                    .param("No such channel")
                    .encode_into(out),
            },
            // The new topic comes back as a TOPIC line, stored in history
            // and sent to every member (this session too).
            Some(topic) => {
                let request = Request::Topic {
                    room,
                    topic: topic.to_owned(),
                };
                if let Err(r) = handlers::dispatch(cx, me, request) {
                    self.fail("TOPIC", chan, &r, out);
                }
            }
        }
    }

    fn list(&self, cx: &mut Cx, out: &mut Vec<u8>) {
        self.num("321")
            .param("Channel")
            .param("Users  Name")
            .encode_into(out);
        for room in cx.svc.hub.room_list() {
            self.num("322")
                .param(&channel(&room.name))
                .param(&room.members.to_string())
                .param(&clean(&room.topic))
                .encode_into(out);
        }
        self.num("323").param("End of /LIST").encode_into(out);
    }

    /// `WHO #room` (its online members) or `WHO nick`.
    fn who(&self, cx: &mut Cx, line: &Line, out: &mut Vec<u8>) {
        let Some(mask_arg) = line.arg(0) else {
            return self.need_more(line, out);
        };
        let row = |chan: &str, user: &str, away: bool, out: &mut Vec<u8>| {
            self.num("352")
                .param(chan)
                .param(user)
                .param(server())
                .param(server())
                .param(user)
                .param(if away { "G" } else { "H" })
                .param(&format!("0 {user}"))
                .encode_into(out);
        };
        if mask_arg.starts_with('#') {
            if let Some(room) = room_name(mask_arg).filter(|r| cx.svc.hub.room(r).is_some()) {
                for m in online_members(cx, &room) {
                    row(mask_arg, &m.user, m.away.is_some(), out);
                }
            }
        } else if let Some((true, away)) = user_status(cx, mask_arg) {
            row("*", &mask_arg.to_ascii_lowercase(), away.is_some(), out);
        }
        self.num("315")
            .param(mask_arg)
            .param("End of /WHO list")
            .encode_into(out);
    }

    fn whois(&self, cx: &mut Cx, line: &Line, out: &mut Vec<u8>) {
        // `WHOIS server nick` asks a server; there is one.
        let Some(nick) = line.params.last().map(String::as_str) else {
            return self.num("431").param("No nickname given").encode_into(out);
        };
        let user = nick.to_ascii_lowercase();
        match account(cx, nick).map(|r| (cx.svc.hub.status(r.id), r)) {
            Some(((true, away), record)) => {
                self.num("311")
                    .param(&user)
                    .param(&user)
                    .param(server())
                    .param("*")
                    .param(&user)
                    .encode_into(out);
                let rooms: Vec<String> = cx
                    .svc
                    .hub
                    .rooms_of(record.id)
                    .iter()
                    .map(|r| channel(r))
                    .collect();
                if !rooms.is_empty() {
                    self.num("319")
                        .param(&user)
                        .param(&rooms.join(" "))
                        .encode_into(out);
                }
                self.num("312")
                    .param(&user)
                    .param(server())
                    .param("confab")
                    .encode_into(out);
                if let Some(away) = away {
                    self.num("301")
                        .param(&user)
                        .param(&clean(&away))
                        .encode_into(out);
                }
                self.num("330")
                    .param(&user)
                    .param(&user)
                    .param("is logged in as")
                    .encode_into(out);
            }
            Some(((false, _), _)) => self
                .num("401")
                .param(nick)
                .param("No such nick: offline (messages to them are kept until they come back)")
                .encode_into(out),
            None => self
                .num("401")
                .param(nick)
                .param("No such nick/channel")
                .encode_into(out),
        }
        self.num("318")
            .param(nick)
            .param("End of /WHOIS list")
            .encode_into(out);
    }

    /// Mode queries get sensible answers; mode changes are refused (confab
    /// has no channel operators: moderation is the administrators').
    fn mode(&self, cx: &mut Cx, line: &Line, out: &mut Vec<u8>) {
        let Some(target) = line.arg(0) else {
            return self.need_more(line, out);
        };
        if target.starts_with('#') {
            if room_name(target)
                .and_then(|r| cx.svc.hub.room(&r))
                .is_none()
            {
                return self
                    .num("403")
                    .param(target)
                    .param("No such channel")
                    .encode_into(out);
            }
            match line.arg(1) {
                None => self
                    .num_words("324")
                    .param(target)
                    .param("+n")
                    .encode_into(out),
                Some("b" | "+b") if line.params.len() == 2 => self
                    .num("368")
                    .param(target)
                    .param("End of channel ban list")
                    .encode_into(out),
                Some(_) => self
                    .num("482")
                    .param(target)
                    .param("You're not channel operator: confab rooms have no modes to change")
                    .encode_into(out),
            }
        } else if target.eq_ignore_ascii_case(self.me()) {
            if line.arg(1).is_none() {
                self.num_words("221").param("+").encode_into(out);
            }
            // Mode changes on oneself (`+i` from irssi) change nothing.
        } else {
            self.num("502")
                .param("Can't change mode for other users")
                .encode_into(out);
        }
    }

    /// `KICK #room nick [reason]`: an administrator's kick, which on confab
    /// ends every session of the user (there are no per-room kicks).
    fn kick(&self, cx: &mut Cx, me: &User, line: &Line, out: &mut Vec<u8>) {
        let (Some(chan), Some(nick)) = (line.arg(0), line.arg(1)) else {
            return self.need_more(line, out);
        };
        let request = Request::Kick {
            user: nick.to_owned(),
            reason: line.arg(2).unwrap_or("").to_owned(),
        };
        match handlers::dispatch(cx, me, request) {
            Ok(_) => self.server_notice(
                &format!("{nick} was disconnected from confab (a kick ends all of their sessions)"),
                out,
            ),
            Err(r) => self.fail("KICK", chan, &r, out),
        }
    }

    /// `CHATHISTORY LATEST|BEFORE|AFTER|AROUND|BETWEEN|TARGETS`, from
    /// confab's history by message id (`msgid=`; timestamps are not
    /// supported).
    fn chathistory(&mut self, cx: &mut Cx, me: &User, line: &Line, out: &mut Vec<u8>) {
        let sub = line.arg(0).unwrap_or("").to_ascii_uppercase();
        if sub == "TARGETS" {
            return self.chathistory_targets(cx, me, line, out);
        }
        let (Some(target), Some(first)) = (line.arg(1), line.arg(2)) else {
            return self.fail_line(
                "CHATHISTORY",
                "NEED_MORE_PARAMS",
                &[&sub],
                "Missing parameters",
                out,
            );
        };
        let limit_arg = if sub == "BETWEEN" {
            line.arg(4)
        } else {
            line.arg(3)
        };
        let limit = page_limit(limit_arg);
        // A reference is `msgid=ID` or `timestamp=ISO-8601`; a time is
        // turned into ids through the store (`Bound`).
        let place = place_of(cx, target);
        let bound = |r: &str| -> Option<Bound> {
            if let Some(id) = r.strip_prefix("msgid=") {
                let id = id.parse().ok()?;
                return Some(Bound {
                    lower: id,
                    upper: id,
                });
            }
            let at = crate::irc::events::parse_iso8601(r.strip_prefix("timestamp=")?)?;
            let newest_at = |t: i64| -> i64 {
                let found = place.map(|p| cx.svc.store.message_at_or_before(me.id, p, t));
                match found {
                    Some(Ok(id)) => id.unwrap_or(0),
                    // Read as "no message" (a page from the start, or
                    // none), and said in the log.
                    Some(Err(err)) => {
                        log::error!("CHATHISTORY timestamp for {}: {err}", me.name);
                        0
                    }
                    None => 0,
                }
            };
            // After the time: past the newest message at or before it.
            // Before the time: below the first message at or after it.
            Some(Bound {
                lower: newest_at(at),
                upper: newest_at(at - 1) + 1,
            })
        };
        let (window, keep): (messages::Window, Box<dyn Fn(i64) -> bool>) = match sub.as_str() {
            "LATEST" if first == "*" => (messages::Window::Before(None), Box::new(|_| true)),
            "LATEST" => match bound(first) {
                Some(b) => (
                    messages::Window::Before(None),
                    Box::new(move |id| id > b.lower),
                ),
                None => return self.bad_ref(&sub, first, out),
            },
            "BEFORE" => match bound(first) {
                Some(b) => (messages::Window::Before(Some(b.upper)), Box::new(|_| true)),
                None => return self.bad_ref(&sub, first, out),
            },
            "AFTER" => match bound(first) {
                Some(b) => (messages::Window::After(b.lower), Box::new(|_| true)),
                None => return self.bad_ref(&sub, first, out),
            },
            "AROUND" => match bound(first) {
                // Around the message at (or just before) the reference.
                Some(b) if b.lower > 0 => (messages::Window::Around(b.lower), Box::new(|_| true)),
                Some(_) => (messages::Window::After(0), Box::new(|_| true)),
                None => return self.bad_ref(&sub, first, out),
            },
            "BETWEEN" => match (bound(first), line.arg(3).and_then(bound)) {
                // Oldest first when the first reference is the earlier one,
                // newest first otherwise; both ends excluded.
                (Some(a), Some(b)) if a.lower <= b.lower => (
                    messages::Window::After(a.lower),
                    Box::new(move |id| id < b.upper),
                ),
                (Some(a), Some(b)) => (
                    messages::Window::Before(Some(a.upper)),
                    Box::new(move |id| id > b.lower),
                ),
                _ => return self.bad_ref(&sub, first, out),
            },
            _ => {
                return self.fail_line(
                    "CHATHISTORY",
                    "INVALID_PARAMS",
                    &[&sub],
                    "Unknown CHATHISTORY subcommand",
                    out,
                );
            }
        };
        let (room, with) = if target.starts_with('#') {
            (room_name(target), None)
        } else {
            (None, Some(target.to_owned()))
        };
        let found = match history_page(cx, me, room, with, window, limit, &*keep) {
            Ok(found) => found,
            Err(r) => {
                return self.fail_line(
                    "CHATHISTORY",
                    "INVALID_TARGET",
                    &[&sub, target],
                    &r.message,
                    out,
                );
            }
        };
        let id = self.batch_id();
        self.batch_start(&id, "chathistory", &[target], out);
        let style = self.style();
        for m in found {
            self.history_lines(m, style, &id, out);
        }
        self.batch_end(&id, out);
    }

    /// `CHATHISTORY TARGETS timestamp=A timestamp=B limit`: the rooms
    /// and people whose newest message was sent between the two times
    /// (either order), with that time, oldest first.
    fn chathistory_targets(&mut self, cx: &mut Cx, me: &User, line: &Line, out: &mut Vec<u8>) {
        let time = |i: usize| {
            line.arg(i)
                .and_then(|r| r.strip_prefix("timestamp="))
                .and_then(crate::irc::events::parse_iso8601)
        };
        let (Some(a), Some(b)) = (time(1), time(2)) else {
            return self.bad_ref("TARGETS", line.arg(1).unwrap_or("*"), out);
        };
        let limit = page_limit(line.arg(3)) as usize;
        let found = match cx
            .svc
            .store
            .conversations_between(me.id, a.min(b), a.max(b), limit)
        {
            Ok(found) => found,
            Err(err) => {
                log::error!("CHATHISTORY TARGETS for {}: {err}", me.name);
                return self.fail_line(
                    "CHATHISTORY",
                    "MESSAGE_ERROR",
                    &["TARGETS"],
                    "history could not be read",
                    out,
                );
            }
        };
        let id = self.batch_id();
        self.batch_start(&id, "draft/chathistory-targets", &[], out);
        for c in found {
            let target = match (&c.room, &c.with) {
                (Some(room), _) => channel(room),
                (None, Some(with)) => with.clone(),
                _ => continue,
            };
            let mut l = Line::new("CHATHISTORY")
                .source(server())
                .param("TARGETS")
                .param(&target)
                .param(&crate::irc::events::iso8601(c.newest));
            if self.caps.batch {
                l.tags.insert(0, ("batch".into(), Some(id.clone())));
            }
            l.encode_into(out);
        }
        self.batch_end(&id, out);
    }

    /// `MARKREAD target [timestamp=...]` (draft/read-marker): sets the
    /// user's read position in a conversation to the newest message sent at
    /// or before the time (never backwards, as confab's `mark_read`), and
    /// answers with the position in force, as a time. Other sessions of the
    /// user are told (`read`, which IRC sessions see as `MARKREAD`).
    fn markread(&mut self, cx: &mut Cx, me: &User, line: &Line, out: &mut Vec<u8>) {
        let Some(target) = line.arg(0) else {
            return self.fail_line("MARKREAD", "NEED_MORE_PARAMS", &[], "Missing target", out);
        };
        let Some(place) = place_of(cx, target) else {
            return self.fail_line(
                "MARKREAD",
                "INVALID_PARAMS",
                &[target],
                "No such channel or nick",
                out,
            );
        };
        if let Some(arg) = line.arg(1) {
            let Some(at) = arg
                .strip_prefix("timestamp=")
                .and_then(crate::irc::events::parse_iso8601)
            else {
                return self.fail_line(
                    "MARKREAD",
                    "INVALID_PARAMS",
                    &[target, arg],
                    "Expected timestamp=YYYY-MM-DDThh:mm:ss.sssZ",
                    out,
                );
            };
            match cx.svc.store.message_at_or_before(me.id, place, at) {
                Ok(Some(id)) => {
                    let (room, with) = if target.starts_with('#') {
                        (room_name(target), None)
                    } else {
                        (None, Some(target.to_owned()))
                    };
                    let request = Request::MarkRead { room, with, id };
                    if let Err(r) = handlers::dispatch(cx, me, request) {
                        return self.fail("MARKREAD", target, &r, out);
                    }
                }
                Ok(None) => {}
                Err(e) => return self.fail("MARKREAD", target, &Refusal::from(e), out),
            }
        }
        self.marker_line(cx, target, out);
    }

    /// `MARKREAD target timestamp=...` (or `*`): the user's read position
    /// in a conversation, as a time.
    fn marker_line(&self, cx: &mut Cx, target: &str, out: &mut Vec<u8>) {
        let Some(user) = self.user_id else {
            return;
        };
        let at = place_of(cx, target)
            .and_then(|place| cx.svc.store.read_marker_time(user, place).ok().flatten());
        let value = at.map_or_else(
            || "*".to_owned(),
            |ms| format!("timestamp={}", crate::irc::events::iso8601(ms)),
        );
        Line::new("MARKREAD")
            .source(server())
            .param(target)
            .param(&value)
            .encode_into(out);
    }

    /// `FAIL command code [details] :why`.
    fn fail_line(&self, cmd: &str, code: &str, detail: &[&str], why: &str, out: &mut Vec<u8>) {
        let mut l = Line::new("FAIL").source(server()).param(cmd).param(code);
        for d in detail {
            l = l.param(d);
        }
        l.text(why).encode_into(out);
    }

    fn bad_ref(&self, sub: &str, given: &str, out: &mut Vec<u8>) {
        Line::new("FAIL")
            .source(server())
            .param("CHATHISTORY")
            .param("INVALID_PARAMS")
            .param(sub)
            .param(given)
            .text("a reference is msgid=ID or timestamp=YYYY-MM-DDThh:mm:ss.sssZ")
            .encode_into(out);
    }

    /// One stored message as history lines, in the batch if the client
    /// negotiated batches. (`history_page` has left out what IRC history
    /// does not show.)
    fn history_lines(&self, m: ChatMessage, style: Style, batch: &str, out: &mut Vec<u8>) {
        for mut l in message_lines(&m, style) {
            if self.caps.batch {
                l.tags.insert(0, ("batch".into(), Some(batch.to_owned())));
            }
            l.encode_into(out);
        }
    }

    fn batch_id(&mut self) -> String {
        self.next_batch += 1;
        format!("h{}", self.next_batch)
    }

    fn batch_start(&self, id: &str, kind: &str, params: &[&str], out: &mut Vec<u8>) {
        if !self.caps.batch {
            return;
        }
        let mut l = Line::new("BATCH")
            .source(server())
            .param(&format!("+{id}"))
            .param(kind);
        for p in params {
            l = l.param(p);
        }
        l.encode_into(out);
    }

    fn batch_end(&self, id: &str, out: &mut Vec<u8>) {
        if self.caps.batch {
            Line::new("BATCH")
                .source(server())
                .param(&format!("-{id}"))
                .encode_into(out);
        }
    }

    /// A refused request as the numeric IRC clients know for it.
    fn fail(&self, cmd: &str, target: &str, r: &Refusal, out: &mut Vec<u8>) {
        let message = clean(&r.message);
        let line = match r.code {
            ErrorCode::NoSuchRoom | ErrorCode::InvalidRoom => self.num("403").param(target),
            ErrorCode::NoSuchUser | ErrorCode::InvalidUsername => self.num("401").param(target),
            ErrorCode::NotMember if cmd == "PRIVMSG" => self.num("404").param(target),
            ErrorCode::NotMember => self.num("442").param(target),
            ErrorCode::Muted => self.num("404").param(target),
            ErrorCode::TooManyRooms => self.num("405").param(target),
            ErrorCode::Forbidden if target.starts_with('#') => self.num("482").param(target),
            ErrorCode::Forbidden => self.num("481"),
            _ => Line::new("FAIL")
                .source(server())
                .param(cmd)
                .param(&r.code.to_string().to_ascii_uppercase()),
        };
        line.text(&message).encode_into(out);
    }
}

/// `authzid NUL authcid NUL password`, base64-encoded: the user and the
/// password (an authzid other than the user is not supported).
fn plain_credentials(b64: &str) -> Option<(String, String)> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let mut parts = text.split('\0');
    let (authz, authc, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || (!authz.is_empty() && !authz.eq_ignore_ascii_case(authc)) {
        return None;
    }
    Some((authc.to_owned(), password.to_owned()))
}

/// A channel's room name, canonical (`#Rust` is `rust`).
fn room_name(chan: &str) -> Option<String> {
    validate::room(chan).ok()
}

/// An IRC text as a confab body: `\x01ACTION waves\x01` is `/me waves`;
/// other CTCP requests have no body (`None`).
fn body_of(text: &str) -> Option<String> {
    match text.strip_prefix('\u{1}') {
        None => Some(text.to_owned()),
        Some(ctcp) => {
            let ctcp = ctcp.strip_suffix('\u{1}').unwrap_or(ctcp);
            ctcp.strip_prefix("ACTION ")
                .map(|a| format!("{ACTION_PREFIX}{a}"))
        }
    }
}

/// The conversation a target names: a room (`#rust`), or the direct one
/// with a user.
fn place_of(cx: &Cx, target: &str) -> Option<crate::store::Destination> {
    if target.starts_with('#') {
        let room = cx.svc.hub.room(&room_name(target)?)?;
        Some(crate::store::Destination::Room(room.id))
    } else {
        Some(crate::store::Destination::User(account(cx, target)?.id))
    }
}

/// Whether a stored message becomes lines in IRC history. A topic change
/// is an event, not a message: without draft/event-playback (not offered)
/// history leaves it out, as it does deleted messages.
fn shown_in_history(m: &ChatMessage) -> bool {
    !m.deleted && m.kind != crate::protocol::MessageKind::Topic
}

/// Store pages read for one `CHATHISTORY` page at most: enough to skip
/// runs of topic changes and deleted messages several pages long, bounded
/// so that one request cannot walk a whole history.
const HISTORY_ROUNDS: usize = 8;

/// Up to `limit` messages of a conversation that IRC history shows, in the
/// window, that `keep` accepts, oldest first. A store page whose messages
/// are partly hidden (topic changes, deleted messages) is followed by the
/// next one in the same direction, so a page comes back short only where
/// the history (or the window) ends: an IRC client takes a short or empty
/// page for the end of history and stops paging.
fn history_page(
    cx: &mut Cx,
    me: &User,
    room: Option<String>,
    with: Option<String>,
    mut window: messages::Window,
    limit: u32,
    keep: &dyn Fn(i64) -> bool,
) -> Result<Vec<ChatMessage>, Refusal> {
    use messages::Window;
    let want = limit as usize;
    let mut found: Vec<ChatMessage> = Vec::new();
    for _ in 0..HISTORY_ROUNDS {
        let handled: Handled =
            messages::history(cx, me, room.clone(), with.clone(), window, Some(limit));
        let (page, older, newer) = match handled? {
            Answer::Reply(ServerMsg::History {
                messages,
                more,
                newer,
                ..
            }) => (messages, more, newer),
            _ => return Ok(found),
        };
        let (Some(oldest), Some(newest)) = (page.first(), page.last()) else {
            break;
        };
        let (oldest, newest) = (oldest.id, newest.id);
        // Past the window's far end (`keep`): nothing further can be kept.
        let crossed = page.iter().any(|m| !keep(m.id));
        let shown = page
            .into_iter()
            .filter(|m| keep(m.id) && shown_in_history(m));
        let (next, more) = match window {
            Window::Before(_) => {
                let mut older_first: Vec<ChatMessage> = shown.collect();
                older_first.append(&mut found);
                found = older_first;
                (Window::Before(Some(oldest)), older)
            }
            Window::After(_) => {
                found.extend(shown);
                (Window::After(newest), newer)
            }
            // Around a message: one page, as it comes.
            Window::Around(_) => {
                found.extend(shown);
                break;
            }
        };
        if found.len() >= want || crossed || !more {
            break;
        }
        window = next;
    }
    // The page's own end: the newest `limit` before, the oldest after.
    if found.len() > want {
        match window {
            Window::Before(_) => {
                found.drain(..found.len() - want);
            }
            _ => found.truncate(want),
        }
    }
    Ok(found)
}

/// A CHATHISTORY page size: the client's, within 1 and the largest page
/// (which it also gets when it gives none, or nonsense).
fn page_limit(arg: Option<&str>) -> u32 {
    arg.and_then(|l| l.parse::<u32>().ok())
        .unwrap_or(HISTORY_PAGE_MAX)
        .clamp(1, HISTORY_PAGE_MAX)
}

/// A CHATHISTORY reference as message ids: messages after it have ids
/// above `lower`, messages before it ids below `upper` (the same id for a
/// `msgid=`; for a time, the newest message at or before it, and the first
/// at or after it).
#[derive(Debug, Clone, Copy)]
struct Bound {
    lower: i64,
    upper: i64,
}

/// Whether a user exists and is online, and their away message.
fn user_status(cx: &Cx, nick: &str) -> Option<(bool, Option<String>)> {
    Some(cx.svc.hub.status(account(cx, nick)?.id))
}

/// The account a nick names, if any.
fn account(cx: &Cx, nick: &str) -> Option<crate::store::UserRecord> {
    let name = validate::username(nick).ok()?;
    cx.svc.store.find_user(&name).ok()?
}

/// A room's online members, every page of them.
fn online_members(cx: &Cx, room: &str) -> Vec<Member> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    while let Some(page) = cx
        .svc
        .hub
        .members(room, after.as_deref(), WHO_PAGE_MAX as usize)
    {
        after = page.members.last().map(|m| m.user.clone());
        all.extend(page.members.into_iter().filter(|m| m.online));
        if !page.more || after.is_none() {
            break;
        }
    }
    all
}

/// ISUPPORT tokens: the real limits.
fn isupport(cx: &Cx) -> Vec<String> {
    let limits = &cx.svc.limits;
    vec![
        format!("AWAYLEN={MAX_TOPIC_LEN}"),
        "CASEMAPPING=ascii".into(),
        format!("CHANLIMIT=#:{}", limits.max_rooms_per_user),
        // No +t: any member may set a room's topic.
        "CHANMODES=,,,n".into(),
        format!("CHANNELLEN={}", validate::ROOM_LEN.1 + 1),
        "CHANTYPES=#".into(),
        format!("CHATHISTORY={HISTORY_PAGE_MAX}"),
        "MSGREFTYPES=msgid".into(),
        "NETWORK=confab".into(),
        format!("NICKLEN={}", validate::USERNAME_LEN.1),
        // confab has no channel operators (administrators are
        // server-wide), so no member carries a prefix.
        "PREFIX=".into(),
        format!("TOPICLEN={MAX_TOPIC_LEN}"),
        "UTF8ONLY".into(),
        format!("LINELEN={MAX_LINE}"),
        format!("MAXBODY={}", limits.max_message_len),
    ]
}

/// The "while you were away" line of the welcome, if anything is unread.
fn away_summary(unread: &[Unread]) -> Option<String> {
    if unread.is_empty() {
        return None;
    }
    let parts: Vec<String> = unread
        .iter()
        .map(|u| {
            let place = match (&u.room, &u.with) {
                (Some(room), _) => channel(room),
                (None, Some(with)) => with.clone(),
                (None, None) => "?".into(),
            };
            let mentions = match u.mentions {
                0 => String::new(),
                1 => ", 1 mention".into(),
                n => format!(", {n} mentions"),
            };
            format!("{place} {} new{mentions}", u.count)
        })
        .collect();
    Some(format!(
        "While you were away: {} (CHATHISTORY to read them)",
        parts.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_credentials_decode_and_refuse_other_identities() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(
            plain_credentials(&b64("\0alice\0secret pw")),
            Some(("alice".into(), "secret pw".into()))
        );
        assert_eq!(
            plain_credentials(&b64("alice\0alice\0pw")),
            Some(("alice".into(), "pw".into()))
        );
        assert_eq!(plain_credentials(&b64("bob\0alice\0pw")), None);
        assert_eq!(plain_credentials(&b64("alice\0pw")), None);
        assert_eq!(plain_credentials("not base64!"), None);
    }

    #[test]
    fn actions_become_me_bodies_and_other_ctcp_none() {
        assert_eq!(body_of("hi").as_deref(), Some("hi"));
        assert_eq!(
            body_of("\u{1}ACTION waves\u{1}").as_deref(),
            Some("/me waves")
        );
        assert_eq!(body_of("\u{1}VERSION\u{1}"), None);
    }

    #[test]
    fn the_away_summary_counts_rooms_and_people() {
        let u = |room: Option<&str>, with: Option<&str>, count, mentions| Unread {
            room: room.map(str::to_owned),
            with: with.map(str::to_owned),
            count,
            mentions,
            last_read: 0,
            newest: 0,
        };
        assert_eq!(away_summary(&[]), None);
        assert_eq!(
            away_summary(&[u(Some("rust"), None, 3, 1), u(None, Some("bob"), 2, 0)]).unwrap(),
            "While you were away: #rust 3 new, 1 mention; bob 2 new (CHATHISTORY to read them)"
        );
    }
}
