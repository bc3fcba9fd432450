//! The client's state as plain data: windows (rooms, direct
//! conversations, the status window), their lines, unread counts, members,
//! and the connection state. It knows nothing of drawing; the view renders
//! it, the network thread's events update it, and tests drive it directly.

use crate::protocol::{
    ChatMessage, Member, PresenceEvent, ReactionCount, ReplyRef, RoomInfo, Unread,
};

/// What [`Model::on_message`] reports about a new message, for sounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    /// The window it landed in.
    pub window: WindowId,
    /// Our own (from another device).
    pub mine: bool,
    /// It mentions us.
    pub mention: bool,
    /// It shares a file.
    pub file: bool,
}

/// Which conversation a window shows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WindowId {
    /// The status window: connection notices and server errors.
    Status,
    /// Every message that mentions you, from all rooms.
    Mentions,
    /// A room, by name.
    Room(String),
    /// A direct conversation, by the other user's name.
    Direct(String),
    /// The results of the last `/search`.
    Search,
}

impl WindowId {
    /// The label shown in the window list and status line.
    pub fn label(&self) -> String {
        match self {
            WindowId::Status => "confab".to_owned(),
            WindowId::Mentions => "mentions".to_owned(),
            WindowId::Room(r) => format!("#{r}"),
            WindowId::Direct(u) => format!("@{u}"),
            WindowId::Search => "search".to_owned(),
        }
    }

    /// Whether messages can be sent to it (a room or a direct
    /// conversation).
    pub fn is_conversation(&self) -> bool {
        matches!(self, WindowId::Room(_) | WindowId::Direct(_))
    }
}

/// What a message line carries besides its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    /// The message it answers.
    pub reply: Option<ReplyRef>,
    /// Its text was edited.
    pub edited: bool,
    /// It was deleted (a tombstone).
    pub deleted: bool,
    /// Reactions, as we see them.
    pub reactions: Vec<ReactionCount>,
    /// In the search window: the window the result belongs to.
    pub origin: Option<WindowId>,
    /// A topic change kept in history (the text is the new topic).
    pub topic: bool,
    /// A notice (shown `-nick- text`, as irssi shows notices).
    pub notice: bool,
}

impl Extras {
    fn of(m: &ChatMessage) -> Extras {
        Extras {
            reply: m.reply_to.clone(),
            edited: m.edited_at.is_some(),
            deleted: m.deleted,
            reactions: m.reactions.clone(),
            origin: None,
            topic: m.kind == crate::protocol::MessageKind::Topic,
            notice: m.notice,
        }
    }
}

/// Whether a message of ours reached the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Stored by the server (acked), or someone else's message.
    Stored,
    /// Sent or queued, not yet acked; the number matches the ack.
    Pending(u64),
    /// Not stored, and why.
    Failed(String),
}

/// One line of a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A chat message.
    Message {
        /// Server id, once known.
        id: Option<i64>,
        /// Server time (ms since the epoch), or local time while pending.
        ts: i64,
        /// Sender.
        from: String,
        /// Text.
        body: String,
        /// Delivery state.
        delivery: Delivery,
        /// The id of the file this message shares, if any.
        file: Option<i64>,
        /// Reply, edit, deletion and reactions (boxed: most lines have
        /// none, and notices are far smaller).
        extra: Box<Extras>,
    },
    /// Something that happened (joins, topic changes, connection news).
    Notice {
        /// Local time, ms since the epoch.
        ts: i64,
        /// What.
        text: String,
    },
    /// An error to show the user.
    Error {
        /// Local time, ms since the epoch.
        ts: i64,
        /// What went wrong.
        text: String,
    },
}

impl Line {
    fn id(&self) -> Option<i64> {
        match self {
            Line::Message { id, .. } => *id,
            _ => None,
        }
    }
}

/// A window: one conversation's lines and state.
#[derive(Debug, Clone)]
pub struct Window {
    /// What it shows.
    pub id: WindowId,
    /// Room topic (empty for others).
    pub topic: String,
    /// Lines, oldest first.
    pub lines: Vec<Line>,
    /// Messages that arrived while the window was not shown.
    pub unread: u32,
    /// One of them mentions us, or it is a direct conversation: the
    /// activity list marks it.
    pub highlight: bool,
    /// Room members (rooms only): all of them, or the first page of a
    /// large room.
    pub members: Vec<Member>,
    /// How many members the room has (may be more than `members` holds).
    pub member_total: u32,
    /// Whether the room sends presence events; if not, the member list is
    /// refreshed with `who` while the window is shown.
    pub live_presence: bool,
    /// When the member list was last fetched for a room without live
    /// presence.
    pub members_fetched: Option<std::time::Instant>,
    /// Whether the server has older messages than the oldest loaded.
    pub more_before: bool,
    /// A history request is outstanding (so PgUp does not repeat it).
    pub loading: bool,
    /// The "new messages" divider goes before the message with this id.
    pub divider_before: Option<i64>,
    /// The newest id we told the server we read.
    pub read_marked: i64,
    /// Messages up to this id are already in `unread` (from the server's
    /// login summary), so their arrival does not count them again.
    pub counted_through: i64,
    /// It shows a search result's context, not the newest messages.
    pub detached: bool,
    /// The away message last shown in this (direct) window, so it is said
    /// once, not after every message.
    pub away_shown: Option<String>,
}

impl Window {
    fn new(id: WindowId) -> Window {
        Window {
            more_before: matches!(id, WindowId::Room(_) | WindowId::Direct(_)),
            id,
            topic: String::new(),
            lines: Vec::new(),
            unread: 0,
            highlight: false,
            members: Vec::new(),
            member_total: 0,
            live_presence: true,
            members_fetched: None,
            loading: false,
            divider_before: None,
            read_marked: 0,
            counted_through: 0,
            detached: false,
            away_shown: None,
        }
    }

    /// The newest stored message's id.
    pub fn newest_id(&self) -> Option<i64> {
        self.lines.iter().rev().find_map(Line::id)
    }

    /// The id of the oldest loaded message, to page history before it.
    pub fn oldest_id(&self) -> Option<i64> {
        self.lines.iter().find_map(Line::id)
    }

    fn has_id(&self, id: i64) -> bool {
        self.lines.iter().any(|l| l.id() == Some(id))
    }

    /// Inserts a stored message in id order unless it is already there.
    /// Returns whether it was new.
    fn insert(&mut self, m: &ChatMessage) -> bool {
        if self.has_id(m.id) {
            return false;
        }
        let line = Line::Message {
            id: Some(m.id),
            ts: m.ts,
            from: m.from.clone(),
            body: m.body.clone(),
            delivery: Delivery::Stored,
            file: m.file.as_ref().map(|f| f.id),
            extra: Box::new(Extras::of(m)),
        };
        // Lines stay in the order they happened: a message newer than
        // every stored one goes last (below notices and pending sends
        // shown before it arrived); an older one (history, a gap filled
        // after a jump) goes before the first stored message newer than
        // it, so stored messages stay in id order among themselves.
        let pos = self
            .lines
            .iter()
            .position(|l| l.id().is_some_and(|id| id > m.id))
            .unwrap_or(self.lines.len());
        self.lines.insert(pos, line);
        true
    }
}

/// The connection as the status line shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    /// Connecting or logging in.
    Connecting,
    /// Waiting in the server's queue.
    Queued {
        /// 1 = next.
        position: u32,
        /// Everyone waiting.
        length: u32,
        /// Estimated seconds, if known.
        eta_secs: Option<u64>,
    },
    /// Logged in.
    Online,
    /// Lost; retrying.
    Offline {
        /// Why.
        reason: String,
        /// Seconds until the next attempt.
        retry_in: u64,
    },
    /// Gave up (wrong password, changed certificate...).
    Failed(String),
}

/// Everything the screen shows.
#[derive(Debug, Clone)]
pub struct Model {
    /// Our user name.
    pub me: String,
    /// Windows: status first, then rooms, then direct conversations.
    pub windows: Vec<Window>,
    /// Index of the window shown.
    pub current: usize,
    /// Connection state.
    pub conn: ConnState,
    /// A file transfer in progress: label, bytes done, bytes in all.
    pub transfer: Option<(String, u64, u64)>,
    /// The message selected in the shown window (Alt-Up/Alt-Down), to
    /// reply to, edit, delete, react to or (in the search window) jump to.
    pub selected: Option<i64>,
    /// Ids of the messages copied into the mentions window.
    mentioned: std::collections::HashSet<i64>,
    /// Users whose room messages are not shown (`/ignore`).
    pub ignored: std::collections::BTreeSet<String>,
    /// Our own away message (`/away`), shown in the status line.
    pub away: Option<String>,
    /// Successful logins so far (the first one opens the first room).
    pub logins: u32,
    /// The connection was lost and not yet regained (its notice is shown
    /// once, whatever the number of retries).
    pub outage: bool,
    next_local: u64,
}

/// Milliseconds since the Unix epoch, now (for local notices).
pub fn now_ms() -> i64 {
    crate::store::now_ms()
}

impl Model {
    /// A model for user `me` with only the status window.
    pub fn new(me: &str) -> Model {
        Model {
            me: me.to_owned(),
            windows: vec![Window::new(WindowId::Status)],
            current: 0,
            conn: ConnState::Connecting,
            transfer: None,
            selected: None,
            mentioned: std::collections::HashSet::new(),
            ignored: std::collections::BTreeSet::new(),
            away: None,
            logins: 0,
            outage: false,
            next_local: 1,
        }
    }

    /// The window shown.
    pub fn current(&self) -> &Window {
        &self.windows[self.current]
    }

    /// Index of a window, creating it if needed. Rooms come first, after
    /// the status window, in the order the user joined them (the server
    /// lists them so at login, and a room joined later, here or in
    /// another session, goes after the others): a room has the same
    /// number (Alt-N) in every session of the user, on any device, and it
    /// never changes while the user stays in the rooms before it.
    /// Conversations, mentions and search results follow the rooms, each
    /// new one last, as irssi's query windows do; their numbers move up by
    /// one when a room is joined.
    pub fn open(&mut self, id: WindowId) -> usize {
        if let Some(i) = self.windows.iter().position(|w| w.id == id) {
            return i;
        }
        let at = match id {
            WindowId::Room(_) => self
                .windows
                .iter()
                .rposition(|w| matches!(w.id, WindowId::Status | WindowId::Room(_)))
                .map_or(0, |i| i + 1),
            _ => self.windows.len(),
        };
        self.windows.insert(at, Window::new(id));
        // The shown window stays shown.
        if at <= self.current && self.windows.len() > 1 {
            self.current += 1;
        }
        at
    }

    /// Index of an existing window.
    pub fn index_of(&self, id: &WindowId) -> Option<usize> {
        self.windows.iter().position(|w| &w.id == id)
    }

    /// Closes a window (not the status window).
    pub fn close(&mut self, id: &WindowId) {
        if *id == WindowId::Status {
            return;
        }
        let current_id = self.current().id.clone();
        let closing = self.index_of(id);
        self.windows.retain(|w| &w.id != id);
        // Closing the shown window shows the one before it, as irssi does.
        self.current = self
            .index_of(&current_id)
            .or_else(|| closing.map(|i| i.saturating_sub(1)))
            .unwrap_or(0);
    }

    /// Shows window `i` (ignored if out of range): clears its unread count
    /// and puts the "new messages" divider before the first unread one.
    pub fn select(&mut self, i: usize) {
        if i >= self.windows.len() {
            return;
        }
        if i != self.current {
            self.selected = None;
        }
        self.current = i;
        let w = &mut self.windows[i];
        if w.unread > 0 {
            let ids: Vec<i64> = w.lines.iter().filter_map(Line::id).collect();
            // After the last message read (known from the server), else
            // before the last `unread` ones.
            w.divider_before = if w.read_marked > 0 {
                ids.iter().copied().find(|id| *id > w.read_marked)
            } else {
                let first_unread = ids.len().saturating_sub(w.unread as usize);
                ids.get(first_unread).copied()
            };
        } else {
            w.divider_before = None;
        }
        w.unread = 0;
        w.highlight = false;
    }

    /// Shows the next window (wrapping).
    pub fn next(&mut self) {
        self.select((self.current + 1) % self.windows.len());
    }

    /// Shows the previous window (wrapping).
    pub fn prev(&mut self) {
        let n = self.windows.len();
        self.select((self.current + n - 1) % n);
    }

    /// The window a message belongs to.
    pub fn window_of(&self, m: &ChatMessage) -> WindowId {
        match (&m.room, &m.to) {
            (Some(room), _) => WindowId::Room(room.clone()),
            (None, Some(to)) if m.from == self.me => WindowId::Direct(to.clone()),
            _ => WindowId::Direct(m.from.clone()),
        }
    }

    /// A message arrived live: added once (by id), counted unread unless
    /// its window is shown or it is our own; a mention of us is also copied
    /// to the mentions window. Returns what arrived, if it was new.
    pub fn on_message(&mut self, m: &ChatMessage) -> Option<Arrival> {
        let window = self.window_of(m);
        // Ignored: their room messages are dropped (a direct message still
        // shows: it is addressed to us, as in irssi's /ignore -channels).
        if matches!(window, WindowId::Room(_)) && self.ignored.contains(&m.from) {
            return None;
        }
        let i = self.open(window.clone());
        let shown = i == self.current;
        let mine = m.from == self.me;
        // A topic change is an event, not chat: never a mention, and not
        // counted as unread.
        let topic = m.kind == crate::protocol::MessageKind::Topic;
        let mention = !mine && !topic && crate::mention::mentions(&m.body, &self.me);
        let w = &mut self.windows[i];
        if !w.insert(m) {
            return None;
        }
        if !shown && !mine && !topic && m.id > w.counted_through {
            w.unread += 1;
            w.highlight |= mention || matches!(window, WindowId::Direct(_));
        }
        if mention {
            self.add_mention(&window, m);
        }
        Some(Arrival {
            window,
            mine,
            mention,
            file: m.file.is_some(),
        })
    }

    /// Copies a message that mentions us into the mentions window (once
    /// per message; direct messages have their own window).
    fn add_mention(&mut self, window: &WindowId, m: &ChatMessage) {
        if matches!(window, WindowId::Direct(_)) || !self.mentioned.insert(m.id) {
            return;
        }
        let j = self.open(WindowId::Mentions);
        let shown = j == self.current;
        let w = &mut self.windows[j];
        w.lines.push(Line::Message {
            id: None,
            ts: m.ts,
            from: m.from.clone(),
            body: format!("[{}] {}", window.label(), m.body),
            delivery: Delivery::Stored,
            file: None,
            extra: Box::default(),
        });
        if !shown {
            w.unread += 1;
        }
    }

    /// The server's summary of what is unread, at login.
    pub fn on_unread(&mut self, unread: &[Unread]) {
        // Windows opened here (conversations with news) open by name, so
        // every session numbers them alike.
        let mut unread: Vec<&Unread> = unread.iter().collect();
        unread.sort_by(|a, b| (&a.room, &a.with).cmp(&(&b.room, &b.with)));
        for u in unread {
            let id = match (&u.room, &u.with) {
                (Some(r), _) => WindowId::Room(r.clone()),
                (None, Some(w)) => WindowId::Direct(w.clone()),
                _ => continue,
            };
            let i = self.open(id);
            let w = &mut self.windows[i];
            w.unread = w.unread.max(u.count);
            w.counted_through = w.counted_through.max(u.newest);
            w.read_marked = w.read_marked.max(u.last_read);
        }
    }

    /// Another device read a window up to `id`.
    pub fn on_read(&mut self, window: &WindowId, id: i64) {
        if let Some(i) = self.index_of(window) {
            let w = &mut self.windows[i];
            w.read_marked = w.read_marked.max(id);
            if w.newest_id().is_none_or(|newest| newest <= id) {
                w.unread = 0;
                w.divider_before = None;
            }
        }
    }

    /// If the shown window has messages newer than what the server knows
    /// we read, the id to report (and it is recorded as reported).
    pub fn mark_read_due(&mut self) -> Option<(WindowId, i64)> {
        let w = &mut self.windows[self.current];
        if !matches!(w.id, WindowId::Room(_) | WindowId::Direct(_)) {
            return None;
        }
        let newest = w.newest_id()?;
        if newest <= w.read_marked {
            return None;
        }
        w.read_marked = newest;
        Some((w.id.clone(), newest))
    }

    /// A summary line of what is unread, for the status window at login.
    pub fn away_summary(unread: &[Unread]) -> Option<String> {
        if unread.is_empty() {
            return None;
        }
        let parts: Vec<String> = unread
            .iter()
            .map(|u| match (&u.room, &u.with) {
                (Some(r), _) if u.mentions > 0 => {
                    format!("#{r}: {} unread, {} mentioning you", u.count, u.mentions)
                }
                (Some(r), _) => format!("#{r}: {} unread", u.count),
                (None, Some(w)) => format!(
                    "{} direct message{} from {w}",
                    u.count,
                    if u.count == 1 { "" } else { "s" }
                ),
                _ => String::new(),
            })
            .collect();
        Some(format!("While you were away — {}", parts.join("; ")))
    }

    /// Shows a message we are sending, before the server has it. Returns
    /// the number the ack will be matched with.
    pub fn add_pending(&mut self, window: &WindowId, body: &str) -> u64 {
        let local = self.next_local;
        self.next_local += 1;
        let i = self.open(window.clone());
        self.windows[i].lines.push(Line::Message {
            id: None,
            ts: now_ms(),
            from: self.me.clone(),
            body: body.to_owned(),
            delivery: Delivery::Pending(local),
            file: None,
            extra: Box::default(),
        });
        local
    }

    /// How a reply of ours to message `id` of `window` quotes it.
    pub fn reply_ref(&self, window: &WindowId, id: i64) -> Option<ReplyRef> {
        let i = self.index_of(window)?;
        self.windows[i].lines.iter().find_map(|l| match l {
            Line::Message {
                id: Some(got),
                from,
                body,
                ..
            } if *got == id => Some(ReplyRef {
                id,
                from: from.clone(),
                excerpt: body.chars().take(crate::protocol::REPLY_EXCERPT).collect(),
                deleted: false,
            }),
            _ => None,
        })
    }

    /// Shows our pending message `local` as a reply.
    pub fn set_pending_reply(&mut self, local: u64, reply: ReplyRef) {
        if let Some(Line::Message { extra, .. }) = self.pending_mut(local) {
            extra.reply = Some(reply);
        }
    }

    fn pending_mut(&mut self, local: u64) -> Option<&mut Line> {
        self.windows.iter_mut().flat_map(|w| w.lines.iter_mut()).find(
            |l| matches!(l, Line::Message { delivery: Delivery::Pending(n), .. } if *n == local),
        )
    }

    /// The server stored our message `local` as `id`.
    pub fn on_ack(&mut self, local: u64, id: i64, ts: i64) {
        // If the message already came back (another device, history), drop
        // the pending copy instead of showing it twice.
        let known = self.windows.iter().any(|w| w.has_id(id));
        if known {
            for w in &mut self.windows {
                w.lines.retain(|l| {
                    !matches!(l, Line::Message { delivery: Delivery::Pending(n), .. } if *n == local)
                });
            }
            return;
        }
        if let Some(Line::Message {
            id: line_id,
            ts: line_ts,
            delivery,
            ..
        }) = self.pending_mut(local)
        {
            *line_id = Some(id);
            *line_ts = ts;
            *delivery = Delivery::Stored;
        }
    }

    /// The terminal title: `confab: #room` and, when windows have unread
    /// messages, their count.
    pub fn title(&self) -> String {
        let unread: u32 = self.windows.iter().map(|w| w.unread).sum();
        let label = self.current().id.label();
        if unread > 0 {
            format!("({unread}) confab: {label}")
        } else {
            format!("confab: {label}")
        }
    }

    /// What the member lists of our rooms say of `user`: online, away (and
    /// why) or offline; `None` if no room of ours has them.
    pub fn status_of(&self, user: &str) -> Option<String> {
        let m = self
            .windows
            .iter()
            .flat_map(|w| &w.members)
            .find(|m| m.user == user)?;
        Some(match (&m.away, m.online) {
            (Some(away), _) => format!("away: {away}"),
            (None, true) => "online".to_owned(),
            (None, false) => "offline".to_owned(),
        })
    }

    /// The other person of a direct window is away: said once per away
    /// message, as weechat does.
    pub fn on_peer_away(&mut self, window: &WindowId, message: &str) {
        let WindowId::Direct(user) = window else {
            return;
        };
        let Some(i) = self.index_of(window) else {
            return;
        };
        let w = &mut self.windows[i];
        if w.away_shown.as_deref() == Some(message) {
            return;
        }
        w.away_shown = Some(message.to_owned());
        w.lines.push(Line::Notice {
            ts: now_ms(),
            text: format!("{user} is away: {message}"),
        });
    }

    /// Our message `local` was not stored, because `reason`.
    pub fn on_send_failed(&mut self, local: u64, reason: &str) {
        if let Some(Line::Message { delivery, .. }) = self.pending_mut(local) {
            *delivery = Delivery::Failed(reason.to_owned());
        }
    }

    /// A page of history for a window arrived (oldest first).
    pub fn on_history(&mut self, window: &WindowId, messages: &[ChatMessage], more: bool) {
        let i = self.open(window.clone());
        let w = &mut self.windows[i];
        let room = matches!(window, WindowId::Room(_));
        for m in messages {
            if !(room && self.ignored.contains(&m.from)) {
                w.insert(m);
            }
        }
        w.more_before = more;
        w.loading = false;
        // Unread mentions among them (after a login: the summary counted
        // them) go to the mentions window too.
        let (read, counted) = (w.read_marked, w.counted_through);
        for m in messages {
            if m.id > read
                && m.id <= counted
                && m.from != self.me
                && crate::mention::mentions(&m.body, &self.me)
            {
                self.add_mention(window, m);
            }
        }
    }

    /// We joined a room (or rejoined after reconnecting).
    pub fn on_joined(
        &mut self,
        room: &RoomInfo,
        members: Vec<Member>,
        history: &[ChatMessage],
        live_presence: bool,
    ) {
        let id = WindowId::Room(room.name.clone());
        let i = self.open(id.clone());
        let w = &mut self.windows[i];
        w.topic = room.topic.clone();
        w.member_total = room.members.max(members.len() as u32);
        w.members = members;
        w.live_presence = live_presence;
        w.members_fetched = Some(std::time::Instant::now());
        let first_load = w.oldest_id().is_none();
        self.on_history(
            &id,
            history,
            if first_load {
                history.len() >= 50
            } else {
                self.windows[i].more_before
            },
        );
    }

    /// The shown room's name, when its member list (a room without live
    /// presence) was last fetched more than `every` ago: the caller asks
    /// the server for a fresh page. Marks it fetched now.
    pub fn members_refresh_due(&mut self, every: std::time::Duration) -> Option<String> {
        let w = &mut self.windows[self.current];
        let WindowId::Room(room) = &w.id else {
            return None;
        };
        if w.live_presence || w.members_fetched.is_some_and(|t| t.elapsed() < every) {
            return None;
        }
        w.members_fetched = Some(std::time::Instant::now());
        Some(room.clone())
    }

    /// A fresh page of a room's members (for a room without live
    /// presence), with the room's online count.
    pub fn on_members(&mut self, room: &str, members: Vec<Member>) {
        if let Some(i) = self.index_of(&WindowId::Room(room.to_owned())) {
            let w = &mut self.windows[i];
            w.member_total = w.member_total.max(members.len() as u32);
            w.members = members;
        }
    }

    /// Someone joined, left, came or went, or changed away status.
    pub fn on_presence(
        &mut self,
        room: &str,
        user: &str,
        event: PresenceEvent,
        message: Option<String>,
    ) {
        let Some(i) = self.index_of(&WindowId::Room(room.to_owned())) else {
            return;
        };
        let w = &mut self.windows[i];
        let member = w.members.iter_mut().find(|m| m.user == user);
        let notice = match (event, member) {
            (PresenceEvent::Join, None) => {
                w.members.push(Member {
                    user: user.to_owned(),
                    online: true,
                    away: None,
                });
                w.members.sort_by(|a, b| a.user.cmp(&b.user));
                Some(format!("{user} joined #{room}"))
            }
            (PresenceEvent::Join, Some(m)) => {
                m.online = true;
                None
            }
            (PresenceEvent::Leave, _) => {
                w.members.retain(|m| m.user != user);
                Some(match &message {
                    Some(reason) => format!("{user} left #{room} ({reason})"),
                    None => format!("{user} left #{room}"),
                })
            }
            (PresenceEvent::Online, Some(m)) => {
                m.online = true;
                None
            }
            (PresenceEvent::Offline, Some(m)) => {
                m.online = false;
                m.away = None;
                None
            }
            (PresenceEvent::Away, Some(m)) => {
                m.away = Some(message.unwrap_or_default());
                None
            }
            (PresenceEvent::Back, Some(m)) => {
                m.away = None;
                None
            }
            _ => None,
        };
        if let Some(text) = notice {
            w.lines.push(Line::Notice { ts: now_ms(), text });
        }
    }

    /// A room's topic changed.
    pub fn on_topic(&mut self, room: &str, topic: &str, _by: &str) {
        // The line ("bob set the topic: ...") is the stored message of kind
        // `topic` that comes with it, so it is in history too.
        if let Some(i) = self.index_of(&WindowId::Room(room.to_owned())) {
            self.windows[i].topic = topic.to_owned();
        }
    }

    /// Adds a notice to the current window.
    pub fn notice(&mut self, text: impl Into<String>) {
        let i = self.current;
        self.windows[i].lines.push(Line::Notice {
            ts: now_ms(),
            text: text.into(),
        });
    }

    /// Adds an error to the current window.
    pub fn error(&mut self, text: impl Into<String>) {
        let i = self.current;
        self.windows[i].lines.push(Line::Error {
            ts: now_ms(),
            text: text.into(),
        });
    }

    /// Adds a notice to the status window (connection news).
    pub fn status_notice(&mut self, text: impl Into<String>) {
        self.windows[0].lines.push(Line::Notice {
            ts: now_ms(),
            text: text.into(),
        });
    }

    /// Nicks for Tab completion: the current room's members, then the
    /// peers of direct conversations.
    pub fn nicks(&self) -> Vec<String> {
        let mut nicks: Vec<String> = self
            .current()
            .members
            .iter()
            .map(|m| m.user.clone())
            .filter(|u| *u != self.me)
            .collect();
        for w in &self.windows {
            if let WindowId::Direct(u) = &w.id
                && !nicks.contains(u)
            {
                nicks.push(u.clone());
            }
        }
        nicks
    }

    /// Marks every message still pending as failed (the connection was
    /// lost before the server confirmed it).
    pub fn fail_all_pending(&mut self, reason: &str) {
        for w in &mut self.windows {
            for l in &mut w.lines {
                if let Line::Message { delivery, .. } = l
                    && matches!(delivery, Delivery::Pending(_))
                {
                    *delivery = Delivery::Failed(reason.to_owned());
                }
            }
        }
    }

    /// The rooms we are in, after login.
    pub fn on_rooms(&mut self, rooms: &[RoomInfo]) {
        for r in rooms {
            let i = self.open(WindowId::Room(r.name.clone()));
            self.windows[i].topic = r.topic.clone();
        }
    }

    /// Moves the selection one message up (`step` < 0) or down in the
    /// shown window; from nothing, up selects the newest. Moving down past
    /// the newest clears it.
    pub fn select_message(&mut self, step: isize) {
        let ids: Vec<i64> = self.current().lines.iter().filter_map(Line::id).collect();
        let Some(&newest) = ids.last() else {
            self.selected = None;
            return;
        };
        self.selected = match self.selected.and_then(|s| ids.iter().position(|&i| i == s)) {
            None if step < 0 => Some(newest),
            None => None,
            Some(p) if step < 0 => Some(ids[p.saturating_sub(1)]),
            Some(p) => ids.get(p + 1).copied(),
        };
    }

    /// The selected message's line in the shown window.
    pub fn selected_line(&self) -> Option<&Line> {
        let id = self.selected?;
        self.current().lines.iter().find(|l| l.id() == Some(id))
    }

    /// The message a `/reply`, `/react`, `/edit` or `/delete` acts on: the
    /// selected one, else (for `own`) our newest stored message in the
    /// shown window, or (otherwise) the newest message there.
    pub fn target_message(&self, own: bool) -> Option<(WindowId, i64, String)> {
        let w = self.current();
        let pick = |l: &Line| match l {
            Line::Message {
                id: Some(id),
                from,
                body,
                extra,
                ..
            } if !extra.deleted && (!own || *from == self.me) => {
                Some((*id, body.clone(), extra.origin.clone()))
            }
            _ => None,
        };
        let (id, body, origin) = match self.selected {
            Some(sel) => w
                .lines
                .iter()
                .find(|l| l.id() == Some(sel))
                .and_then(pick)?,
            None => w.lines.iter().rev().find_map(pick)?,
        };
        let window = origin.unwrap_or_else(|| w.id.clone());
        Some((window, id, body))
    }

    /// Whether we gave reaction `emoji` to message `id` of `window`.
    pub fn reacted(&self, window: &WindowId, id: i64, emoji: &str) -> bool {
        let lines = self
            .index_of(window)
            .map(|i| &self.windows[i].lines)
            .into_iter()
            .flatten();
        lines
            .filter(|l| l.id() == Some(id))
            .any(|l| matches!(l, Line::Message { extra, .. } if extra.reactions.iter().any(|r| r.emoji == emoji && r.me)))
    }

    fn line_mut(&mut self, window: &WindowId, id: i64) -> Option<&mut Line> {
        let i = self.index_of(window)?;
        self.windows[i]
            .lines
            .iter_mut()
            .find(|l| l.id() == Some(id))
    }

    /// The window an event about a message (its room, or its author and
    /// recipient) belongs to.
    pub fn window_about(&self, room: Option<&str>, to: Option<&str>, from: &str) -> WindowId {
        match (room, to) {
            (Some(room), _) => WindowId::Room(room.to_owned()),
            (None, Some(to)) if from == self.me => WindowId::Direct(to.to_owned()),
            _ => WindowId::Direct(from.to_owned()),
        }
    }

    /// A message's text was edited.
    pub fn on_edited(&mut self, window: &WindowId, id: i64, new_body: &str) {
        if let Some(Line::Message { body, extra, .. }) = self.line_mut(window, id) {
            *body = new_body.to_owned();
            extra.edited = true;
        }
    }

    /// A message was deleted: it becomes a tombstone.
    pub fn on_deleted(&mut self, window: &WindowId, id: i64) {
        if let Some(Line::Message {
            body, file, extra, ..
        }) = self.line_mut(window, id)
        {
            body.clear();
            *file = None;
            extra.deleted = true;
            extra.edited = false;
            extra.reactions.clear();
        }
        // Replies to it now quote nothing.
        if let Some(i) = self.index_of(window) {
            for l in &mut self.windows[i].lines {
                if let Line::Message { extra, .. } = l
                    && let Some(r) = extra.reply.as_mut().filter(|r| r.id == id)
                {
                    r.deleted = true;
                    r.excerpt.clear();
                }
            }
        }
    }

    /// Someone reacted (or took a reaction back); `count` is the new total.
    pub fn on_reaction(
        &mut self,
        window: &WindowId,
        id: i64,
        emoji: &str,
        user: &str,
        added: bool,
        count: u32,
    ) {
        let mine = user == self.me;
        let Some(Line::Message { extra, .. }) = self.line_mut(window, id) else {
            return;
        };
        match extra.reactions.iter().position(|r| r.emoji == emoji) {
            Some(p) if count == 0 => {
                extra.reactions.remove(p);
            }
            Some(p) => {
                let r = &mut extra.reactions[p];
                r.count = count;
                if mine {
                    r.me = added;
                }
            }
            None if count > 0 => extra.reactions.push(ReactionCount {
                emoji: emoji.to_owned(),
                count,
                me: mine && added,
            }),
            None => {}
        }
    }

    /// Search results: the search window shows them (newest first, as the
    /// server ranks them) and is shown.
    pub fn on_search(&mut self, query: &str, results: &[ChatMessage], more: bool) {
        let i = self.open(WindowId::Search);
        let origins: Vec<WindowId> = results.iter().map(|m| self.window_of(m)).collect();
        let w = &mut self.windows[i];
        w.topic = format!(
            "{} result{}{} for {query} — Alt-Up/Alt-Down to pick one, Enter to jump to it",
            results.len(),
            if results.len() == 1 { "" } else { "s" },
            if more { " (newest shown)" } else { "" },
        );
        w.more_before = false;
        w.lines = results
            .iter()
            .zip(origins)
            .map(|(m, origin)| Line::Message {
                id: Some(m.id),
                ts: m.ts,
                from: m.from.clone(),
                body: m.body.clone(),
                delivery: Delivery::Stored,
                file: m.file.as_ref().map(|f| f.id),
                extra: Box::new(Extras {
                    origin: Some(origin),
                    ..Extras::of(m)
                }),
            })
            .collect();
        if w.lines.is_empty() {
            w.lines.push(Line::Notice {
                ts: now_ms(),
                text: format!("nothing found for {query}"),
            });
        }
        self.select(i);
        self.selected = results.first().map(|m| m.id);
    }

    /// The messages around a search result arrived: the window shows just
    /// them (so the result is on screen), with the result selected, until
    /// PgDn at the bottom loads the newest again (see `detached`).
    pub fn on_jumped(&mut self, window: &WindowId, messages: &[ChatMessage], id: i64) {
        let i = self.open(window.clone());
        let w = &mut self.windows[i];
        w.lines.clear();
        w.more_before = true;
        w.divider_before = None;
        for m in messages {
            w.insert(m);
        }
        w.detached = true;
        w.lines.push(Line::Notice {
            ts: now_ms(),
            text: "a search result in context; PgDn at the bottom shows the newest messages".into(),
        });
        self.select(i);
        self.selected = Some(id);
    }

    /// What the status line says.
    pub fn status_line(&self) -> String {
        let conn = match &self.conn {
            ConnState::Connecting => "connecting…".to_owned(),
            ConnState::Queued {
                position, eta_secs, ..
            } => match eta_secs {
                Some(s) => format!("Server full — you are #{position} in the queue (about {s} s)"),
                None => format!("Server full — you are #{position} in the queue"),
            },
            ConnState::Online => match &self.away {
                Some(away) => format!("{} away: {away}", self.me),
                None => format!("{} online", self.me),
            },
            ConnState::Offline { reason, retry_in } => {
                format!("disconnected, retry in {retry_in} s: {reason}")
            }
            ConnState::Failed(reason) => format!("not connected: {reason}"),
        };
        let transfer = match &self.transfer {
            Some((label, done, total)) => format!(" [{label} {}]", progress_bar(*done, *total)),
            None => String::new(),
        };
        // Windows with news, as irssi's [Act: 2,4]: seen at any width
        // (the window list is hidden below 60 columns); ! marks a mention
        // or a direct message.
        let active: Vec<String> = self
            .windows
            .iter()
            .enumerate()
            .filter(|(i, w)| *i != self.current && w.unread > 0)
            .map(|(i, w)| format!("{}{}", i + 1, if w.highlight { "!" } else { "" }))
            .collect();
        // After the window's name, so that "[alice online] #general"
        // reads as before.
        let act = if active.is_empty() {
            String::new()
        } else {
            format!(" [act {}]", active.join(","))
        };
        let w = self.current();
        let label = format!("{}{act}", w.id.label());
        if let Some(Line::Message { from, ts, .. }) = self.selected_line() {
            let keys = if w.id == WindowId::Search {
                "Enter jump"
            } else {
                "r reply, e edit, d delete, + react"
            };
            return format!(
                "[{conn}]{transfer} {label} — {from}'s message of {}: {keys}, Esc",
                crate::tui::view::clock(*ts)
            );
        }
        if let WindowId::Direct(peer) = &w.id
            && let Some(status) = self.status_of(peer)
        {
            format!("[{conn}]{transfer} {label} — {status}")
        } else if w.topic.is_empty() {
            format!("[{conn}]{transfer} {label}")
        } else {
            format!("[{conn}]{transfer} {label} — {}", w.topic)
        }
    }
}

/// `█████░░░░░ 50%`: ten cells and a percentage.
pub fn progress_bar(done: u64, total: u64) -> String {
    let pct = (done.min(total) * 100).checked_div(total).unwrap_or(100) as usize;
    let full = pct / 10;
    format!("{}{} {pct}%", "█".repeat(full), "░".repeat(10 - full))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: i64, room: &str, from: &str, body: &str) -> ChatMessage {
        ChatMessage {
            id,
            room: Some(room.into()),
            to: None,
            from: from.into(),
            body: body.into(),
            ts: id * 1000,
            file: None,
            reply_to: None,
            edited_at: None,
            deleted: false,
            reactions: Vec::new(),
            kind: Default::default(),
            notice: false,
        }
    }

    fn dm(id: i64, from: &str, to: &str) -> ChatMessage {
        ChatMessage {
            id,
            room: None,
            to: Some(to.into()),
            from: from.into(),
            body: "psst".into(),
            ts: id,
            file: None,
            reply_to: None,
            edited_at: None,
            deleted: false,
            reactions: Vec::new(),
            kind: Default::default(),
            notice: false,
        }
    }

    fn bodies(w: &Window) -> Vec<String> {
        w.lines
            .iter()
            .filter_map(|l| match l {
                Line::Message { body, .. } => Some(body.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn unread_counts_grow_in_hidden_windows_and_reset_on_select_with_a_divider() {
        let mut m = Model::new("alice");
        m.on_rooms(&[RoomInfo {
            name: "general".into(),
            topic: "t".into(),
            members: 2,
        }]);
        m.on_message(&msg(1, "general", "bob", "one"));
        m.on_message(&msg(2, "general", "bob", "two"));
        m.on_message(&msg(3, "general", "alice", "mine"));
        let g = m.index_of(&WindowId::Room("general".into())).unwrap();
        assert_eq!(m.windows[g].unread, 2, "own messages are not unread");
        m.select(g);
        assert_eq!(m.windows[g].unread, 0);
        // Two unread among three: the divider sits before the second id.
        assert_eq!(m.windows[g].divider_before, Some(2));
        m.on_message(&msg(4, "general", "bob", "seen"));
        assert_eq!(m.windows[g].unread, 0, "shown window counts nothing");
    }

    #[test]
    fn messages_are_deduplicated_by_id_and_history_is_prepended_in_order() {
        let mut m = Model::new("alice");
        assert!(m.on_message(&msg(10, "general", "bob", "ten")).is_some());
        assert!(m.on_message(&msg(10, "general", "bob", "ten")).is_none());
        let id = WindowId::Room("general".into());
        m.on_history(
            &id,
            &[
                msg(8, "general", "bob", "eight"),
                msg(9, "general", "bob", "nine"),
                msg(10, "general", "bob", "ten"),
            ],
            false,
        );
        let w = &m.windows[m.index_of(&id).unwrap()];
        assert_eq!(bodies(w), ["eight", "nine", "ten"]);
        assert_eq!(w.oldest_id(), Some(8));
        assert!(!w.more_before);
    }

    #[test]
    fn lines_stay_in_the_order_they_happened_with_stored_messages_by_id() {
        let mut m = Model::new("alice");
        let id = WindowId::Room("general".into());
        let i = m.open(id.clone());
        m.select(i);
        m.on_message(&msg(5, "general", "bob", "five"));
        m.notice("sound setting saved");
        m.on_topic("general", "new topic", "bob");
        m.on_message(&ChatMessage {
            kind: crate::protocol::MessageKind::Topic,
            ..msg(6, "general", "bob", "new topic")
        });
        // Newer than everything: below the notices, for good.
        m.on_message(&msg(7, "general", "bob", "seven"));
        m.on_message(&msg(8, "general", "bob", "eight"));
        let w = &m.windows[m.index_of(&id).unwrap()];
        let texts: Vec<String> = w
            .lines
            .iter()
            .map(|l| match l {
                Line::Message { body, .. } => body.clone(),
                Line::Notice { text, .. } | Line::Error { text, .. } => text.clone(),
            })
            .collect();
        assert_eq!(
            texts,
            ["five", "sound setting saved", "new topic", "seven", "eight"]
        );
        // An older message (history) goes among the stored ones by id.
        m.on_history(&id, &[msg(3, "general", "bob", "three")], true);
        m.on_message(&msg(4, "general", "bob", "four"));
        let w = &m.windows[m.index_of(&id).unwrap()];
        assert_eq!(
            bodies(w),
            ["three", "four", "five", "new topic", "seven", "eight"]
        );
    }

    #[test]
    fn direct_messages_open_a_window_named_for_the_other_user() {
        let mut m = Model::new("alice");
        m.on_message(&dm(1, "bob", "alice"));
        m.on_message(&dm(2, "alice", "bob"));
        let w = &m.windows[m.index_of(&WindowId::Direct("bob".into())).unwrap()];
        assert_eq!(w.lines.len(), 2);
        assert_eq!(w.unread, 1);
        assert!(m.nicks().contains(&"bob".to_string()));
    }

    #[test]
    fn pending_sends_become_stored_on_ack_or_failed_with_a_reason() {
        let mut m = Model::new("alice");
        let room = WindowId::Room("general".into());
        let a = m.add_pending(&room, "hello");
        let b = m.add_pending(&room, "lost");
        m.on_ack(a, 5, 123);
        m.on_send_failed(b, "slow down");
        let w = &m.windows[m.index_of(&room).unwrap()];
        assert!(matches!(
            &w.lines[0],
            Line::Message {
                id: Some(5),
                delivery: Delivery::Stored,
                ..
            }
        ));
        assert!(
            matches!(&w.lines[1], Line::Message { delivery: Delivery::Failed(r), .. } if r == "slow down")
        );
        let c = m.add_pending(&room, "in flight");
        m.fail_all_pending("connection lost");
        let w = &m.windows[m.index_of(&room).unwrap()];
        assert!(matches!(
            &w.lines[2],
            Line::Message {
                delivery: Delivery::Failed(_),
                ..
            }
        ));
        let _ = c;
    }

    #[test]
    fn window_numbers_never_change_when_another_window_opens() {
        let mut m = Model::new("alice");
        m.on_rooms(&[
            RoomInfo {
                name: "general".into(),
                topic: String::new(),
                members: 2,
            },
            RoomInfo {
                name: "rust".into(),
                topic: String::new(),
                members: 2,
            },
        ]);
        m.on_unread(&[
            Unread {
                room: None,
                with: Some("zed".into()),
                count: 1,
                mentions: 0,
                newest: 9,
                last_read: 0,
            },
            Unread {
                room: None,
                with: Some("amy".into()),
                count: 1,
                mentions: 0,
                newest: 8,
                last_read: 0,
            },
        ]);
        let labels =
            |m: &Model| -> Vec<String> { m.windows.iter().map(|w| w.id.label()).collect() };
        assert_eq!(labels(&m), ["confab", "#general", "#rust", "@amy", "@zed"]);
        // Mentions and a new DM go last; a new room goes after the rooms
        // (the order it was joined in, as the server lists rooms at the
        // next login), and the window shown stays shown.
        m.open(WindowId::Mentions);
        m.select(4);
        m.open(WindowId::Room("art".into()));
        assert_eq!(m.current().id, WindowId::Direct("zed".into()));
        m.open(WindowId::Direct("bob".into()));
        assert_eq!(
            labels(&m),
            [
                "confab", "#general", "#rust", "#art", "@amy", "@zed", "mentions", "@bob"
            ]
        );
        // A second session logging in now has the same room numbers.
        let mut other = Model::new("alice");
        let room = |name: &str| RoomInfo {
            name: name.into(),
            topic: String::new(),
            members: 2,
        };
        other.on_rooms(&[room("general"), room("rust"), room("art")]);
        assert_eq!(labels(&other)[..4], labels(&m)[..4]);
        m.select(0);
        m.prev();
        assert_eq!(m.current().id, WindowId::Direct("bob".into()));
        m.next();
        assert_eq!(m.current, 0);
        m.select(99);
        assert_eq!(m.current, 0);
    }

    #[test]
    fn presence_updates_members_and_notes_joins() {
        let mut m = Model::new("alice");
        let room = RoomInfo {
            name: "r".into(),
            topic: String::new(),
            members: 1,
        };
        m.on_joined(
            &room,
            vec![Member {
                user: "alice".into(),
                online: true,
                away: None,
            }],
            &[],
            true,
        );
        m.on_presence("r", "bob", PresenceEvent::Join, None);
        m.on_presence("r", "bob", PresenceEvent::Away, Some("lunch".into()));
        let w = &m.windows[m.index_of(&WindowId::Room("r".into())).unwrap()];
        assert_eq!(w.members.len(), 2);
        assert!(
            w.members
                .iter()
                .any(|x| x.user == "bob" && x.away.as_deref() == Some("lunch"))
        );
        assert!(
            matches!(w.lines.last(), Some(Line::Notice { text, .. }) if text == "bob joined #r")
        );
        m.on_presence("r", "bob", PresenceEvent::Leave, None);
        let w = &m.windows[m.index_of(&WindowId::Room("r".into())).unwrap()];
        assert_eq!(w.members.len(), 1);
    }

    #[test]
    fn status_line_shows_transfer_progress() {
        let mut m = Model::new("alice");
        m.conn = ConnState::Online;
        m.transfer = Some(("↑ cat.png".into(), 45, 100));
        assert_eq!(
            m.status_line(),
            "[alice online] [↑ cat.png ████░░░░░░ 45%] confab"
        );
        assert_eq!(progress_bar(0, 0), "██████████ 100%");
    }

    #[test]
    fn status_line_shows_queue_position_and_topic() {
        let mut m = Model::new("alice");
        m.conn = ConnState::Queued {
            position: 3,
            length: 5,
            eta_secs: None,
        };
        assert!(
            m.status_line()
                .contains("Server full — you are #3 in the queue")
        );
        m.conn = ConnState::Online;
        let i = m.open(WindowId::Room("general".into()));
        m.windows[i].topic = "hello".into();
        m.select(i);
        assert_eq!(m.status_line(), "[alice online] #general — hello");
    }

    #[test]
    fn mentions_are_flagged_and_collected_in_the_mentions_window() {
        let mut m = Model::new("alice");
        let arrival = m
            .on_message(&msg(1, "rust", "bob", "@alice can you review?"))
            .unwrap();
        assert!(arrival.mention && !arrival.mine);
        assert!(
            !m.on_message(&msg(2, "rust", "bob", "malice"))
                .unwrap()
                .mention
        );
        let i = m.index_of(&WindowId::Mentions).expect("mentions window");
        assert_eq!(m.windows[i].unread, 1);
        assert_eq!(bodies(&m.windows[i]), ["[#rust] @alice can you review?"]);
        let labels: Vec<String> = m.windows.iter().map(|w| w.id.label()).collect();
        // In the order they opened: numbers never shift.
        assert_eq!(labels, ["confab", "#rust", "mentions"]);
    }

    #[test]
    fn after_login_unread_mentions_are_collected_and_the_divider_follows_the_read_mark() {
        let mut m = Model::new("bob");
        m.on_unread(&[
            Unread {
                room: Some("general".into()),
                with: None,
                count: 2,
                mentions: 1,
                last_read: 8,
                newest: 10,
            },
            Unread {
                room: None,
                with: Some("alice".into()),
                count: 2,
                mentions: 0,
                last_read: 4,
                newest: 6,
            },
        ]);
        let general = WindowId::Room("general".into());
        m.on_history(
            &general,
            &[
                msg(7, "general", "alice", "bob: read already"),
                msg(8, "general", "alice", "old news"),
                msg(9, "general", "alice", "bob: look at this"),
                msg(10, "general", "alice", "and this"),
            ],
            false,
        );
        // The same page again (a reconnect) adds nothing twice.
        m.on_history(
            &general,
            &[msg(9, "general", "alice", "bob: look at this")],
            false,
        );
        let mentions = &m.windows[m.index_of(&WindowId::Mentions).unwrap()];
        assert_eq!(bodies(mentions), ["[#general] bob: look at this"]);
        // A DM window whose unread messages were delivered before: its
        // history is loaded and the divider goes after the read mark.
        let alice = WindowId::Direct("alice".into());
        m.on_history(
            &alice,
            &[
                dm(4, "alice", "bob"),
                dm(5, "alice", "bob"),
                dm(6, "alice", "bob"),
            ],
            false,
        );
        let i = m.index_of(&alice).unwrap();
        m.select(i);
        assert_eq!(m.windows[i].divider_before, Some(5));
    }

    #[test]
    fn the_status_line_lists_windows_with_news_and_marks_mentions() {
        let mut m = Model::new("bob");
        m.on_rooms(&[
            RoomInfo {
                name: "general".into(),
                topic: String::new(),
                members: 2,
            },
            RoomInfo {
                name: "rust".into(),
                topic: String::new(),
                members: 2,
            },
        ]);
        m.select(1);
        m.on_message(&msg(1, "rust", "alice", "plain news"));
        assert!(m.status_line().contains("[act 3]"), "{}", m.status_line());
        m.on_message(&msg(2, "rust", "alice", "bob: you there?"));
        m.on_message(&dm(3, "carol", "bob"));
        let line = m.status_line();
        // 4 is the mentions window, opened by the mention.
        assert!(line.contains("[act 3!,4,5!]"), "{line}");
        m.select(2);
        assert!(
            m.status_line().contains("[act 4,5!]"),
            "{}",
            m.status_line()
        );
    }

    #[test]
    fn the_login_summary_sets_counts_without_counting_replayed_messages_twice() {
        let mut m = Model::new("bob");
        m.on_unread(&[
            Unread {
                room: Some("general".into()),
                with: None,
                count: 3,
                mentions: 1,
                last_read: 7,
                newest: 10,
            },
            Unread {
                room: None,
                with: Some("alice".into()),
                count: 2,
                mentions: 0,
                last_read: 0,
                newest: 12,
            },
        ]);
        // The offline DMs the server replays after login are in the count.
        m.on_message(&dm(11, "alice", "bob"));
        m.on_message(&dm(12, "alice", "bob"));
        let d = m.index_of(&WindowId::Direct("alice".into())).unwrap();
        assert_eq!(m.windows[d].unread, 2);
        m.on_message(&dm(13, "alice", "bob"));
        assert_eq!(m.windows[d].unread, 3, "a new one counts");
        let summary = Model::away_summary(&[Unread {
            room: Some("general".into()),
            with: None,
            count: 3,
            mentions: 1,
            last_read: 7,
            newest: 10,
        }])
        .unwrap();
        assert_eq!(
            summary,
            "While you were away — #general: 3 unread, 1 mentioning you"
        );
    }

    #[test]
    fn reading_is_reported_once_and_other_devices_clear_counts() {
        let mut m = Model::new("bob");
        let g = m.open(WindowId::Room("general".into()));
        m.on_message(&msg(5, "general", "alice", "hi"));
        assert_eq!(m.mark_read_due(), None, "status window shown");
        m.select(g);
        assert_eq!(
            m.mark_read_due(),
            Some((WindowId::Room("general".into()), 5))
        );
        assert_eq!(m.mark_read_due(), None, "reported once");
        let d = m.open(WindowId::Direct("alice".into()));
        m.on_message(&dm(6, "alice", "bob"));
        assert_eq!(m.windows[d].unread, 1);
        m.on_read(&WindowId::Direct("alice".into()), 6);
        assert_eq!(m.windows[d].unread, 0);
    }

    #[test]
    fn the_selection_walks_messages_and_picks_what_commands_act_on() {
        let mut m = Model::new("alice");
        let g = WindowId::Room("general".into());
        for (id, from) in [(1, "bob"), (2, "alice"), (3, "bob")] {
            m.on_message(&msg(id, "general", from, &format!("m{id}")));
        }
        let i = m.open(g.clone());
        m.select(i);
        m.notice("a notice has no id");
        // Nothing selected: /react takes the newest, /edit our newest.
        assert_eq!(m.target_message(false).map(|t| t.1), Some(3));
        assert_eq!(m.target_message(true).map(|t| t.1), Some(2));
        m.select_message(-1);
        assert_eq!(m.selected, Some(3));
        m.select_message(-1);
        m.select_message(-1);
        m.select_message(-1);
        assert_eq!(m.selected, Some(1), "stops at the oldest");
        assert_eq!(m.target_message(false).map(|t| t.1), Some(1));
        assert_eq!(m.target_message(true), None, "not ours to edit");
        m.select_message(1);
        m.select_message(1);
        m.select_message(1);
        assert_eq!(m.selected, None, "down past the newest clears it");
        // Switching windows clears it too.
        m.select_message(-1);
        m.select(0);
        assert_eq!(m.selected, None);
    }

    #[test]
    fn edits_deletions_and_reactions_change_their_lines() {
        let mut m = Model::new("alice");
        let g = WindowId::Room("general".into());
        m.on_message(&msg(1, "general", "bob", "lnuch?"));
        m.on_message(&ChatMessage {
            reply_to: Some(ReplyRef {
                id: 1,
                from: "bob".into(),
                excerpt: "lnuch?".into(),
                deleted: false,
            }),
            ..msg(2, "general", "carol", "yes")
        });
        m.on_edited(&g, 1, "lunch?");
        m.on_reaction(&g, 1, "+1", "carol", true, 1);
        m.on_reaction(&g, 1, "+1", "alice", true, 2);
        assert!(m.reacted(&g, 1, "+1"));
        let i = m.index_of(&g).unwrap();
        let Line::Message { body, extra, .. } = &m.windows[i].lines[0] else {
            panic!()
        };
        assert_eq!(body, "lunch?");
        assert!(extra.edited);
        assert_eq!(
            extra.reactions,
            [ReactionCount {
                emoji: "+1".into(),
                count: 2,
                me: true
            }]
        );
        m.on_reaction(&g, 1, "+1", "alice", false, 1);
        assert!(!m.reacted(&g, 1, "+1"));
        m.on_reaction(&g, 1, "+1", "carol", false, 0);
        m.on_deleted(&g, 1);
        let Line::Message { body, extra, .. } = &m.windows[i].lines[0] else {
            panic!()
        };
        assert!(body.is_empty() && extra.deleted && extra.reactions.is_empty());
        let Line::Message { extra, .. } = &m.windows[i].lines[1] else {
            panic!()
        };
        let r = extra.reply.as_ref().unwrap();
        assert!(
            r.deleted && r.excerpt.is_empty(),
            "the reply quotes nothing now"
        );
    }
}
