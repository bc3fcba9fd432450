//! The server's shared in-memory state: who is connected, which rooms exist
//! and who is in them, and each session's outbox.
//!
//! **Locking rules.** `Hub` has one `RwLock`. Fan-out takes it for reading;
//! logins, joins and leaves take it for writing. While it is held, code only
//! touches memory: it pushes bytes into outboxes (each behind its own short
//! mutex) and raises wakers (a flag and a non-blocking `pthread_kill`). It is
//! never held across socket I/O or SQL. Lock order: hub, then an outbox.
//!
//! The database is the truth for rooms and membership; the hub mirrors it so
//! that fan-out needs no query. Session threads update the database first,
//! then the hub.
//!
//! Events come in typed ([`Outgoing`]) and leave as each recipient's wire
//! format wants them: an event is encoded once per format in use, not once
//! per recipient.

use super::cluster::{OnlineUser, Outbound, Shared};
use super::outbox::Outbox;
use super::presence::{Change, PresenceQueue};
use super::wire::{Concatenated, Outgoing, Wire};
use crate::protocol::{Member, PresenceEvent, RoomInfo, ServerMsg};
use crate::store::{NodeId, RoomId, RoomRecord, UserId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

/// Identifies one connection for its lifetime.
pub type SessionId = u64;

/// A session id no session has (ids start at 1): an event "from" it goes
/// to every session, the sender's included.
pub const NO_SESSION: SessionId = 0;

/// Rooms with at most this many members get presence changes at once, in
/// order with everything else (a member who joins and speaks is seen
/// joining first, as IRC clients expect); larger ones through the presence
/// thread's 50 ms coalescing, which keeps a crowd's logins from costing
/// O(n²) deliveries.
pub const IMMEDIATE_PRESENCE_MEMBERS: usize = 100;

/// A map keyed by ids the server hands out (session and user ids), hashed
/// by one multiplication instead of SipHash: fan-out looks up two of these
/// per recipient, and the keys are not chosen by clients, so there is no
/// flooding attack to defend against.
type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of one integer key.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn write_i64(&mut self, n: i64) {
        self.0 = n as u64;
    }
}

/// One session as the hub sees it.
#[derive(Debug, Clone)]
struct SessionEntry {
    /// Set once the session logs in.
    user_id: Option<UserId>,
    /// The user's name, once logged in.
    name: String,
    outbox: Arc<Outbox>,
    /// What the client said when it quit (IRC's QUIT message), for the
    /// `offline` event if this is the user's last session.
    quit_message: Option<String>,
}

/// A room in memory.
#[derive(Debug, Clone)]
struct Room {
    id: RoomId,
    name: String,
    topic: String,
    members: BTreeMap<UserId, String>,
    /// The same members by name, for paging through them.
    by_name: BTreeMap<String, UserId>,
    /// How many members are online (here or on another node), kept as
    /// users come and go so a join does not walk the member list.
    online: usize,
}

impl Room {
    fn new(id: RoomId, name: &str, topic: &str, members: Vec<(UserId, String)>) -> Room {
        let mut room = Room {
            id,
            name: name.to_owned(),
            topic: topic.to_owned(),
            members: BTreeMap::new(),
            by_name: BTreeMap::new(),
            online: 0,
        };
        for (id, user) in members {
            room.add(id, &user);
        }
        room
    }

    /// Adds a member; `false` if they were one already.
    fn add(&mut self, id: UserId, user: &str) -> bool {
        let new = self.members.insert(id, user.to_owned()).is_none();
        self.by_name.insert(user.to_owned(), id);
        new
    }

    /// Removes a member; `false` if they were none.
    fn remove(&mut self, id: UserId) -> bool {
        match self.members.remove(&id) {
            Some(user) => {
                self.by_name.remove(&user);
                true
            }
            None => false,
        }
    }

    fn info(&self) -> RoomInfo {
        RoomInfo {
            name: self.name.clone(),
            topic: self.topic.clone(),
            members: self.members.len() as u32,
        }
    }
}

#[derive(Debug, Default)]
struct HubState {
    sessions: IdMap<SessionId, SessionEntry>,
    online: IdMap<UserId, Vec<SessionId>>,
    /// Users online on other nodes sharing the database, with which nodes.
    remote: IdMap<UserId, Vec<NodeId>>,
    rooms: HashMap<String, Room>,
    /// Away messages of online users (cleared when they go offline).
    away: IdMap<UserId, String>,
    /// Where presence changes go (the same queue as [`Hub::presence`]).
    presence: Arc<PresenceQueue>,
    /// Rooms with more members than this get no presence events.
    presence_limit: usize,
    /// Outboxes given a small room's presence event under the lock, to be
    /// delivered when it is released ([`HubWrite`]'s drop): written
    /// straight to sleeping sessions' sockets, as the writer does, rather
    /// than waking each of them.
    undelivered: std::sync::Mutex<Vec<Arc<Outbox>>>,
}

/// The hub's write lock; on release it delivers what was queued under it
/// for direct delivery (`HubState::undelivered`).
struct HubWrite<'a> {
    guard: Option<std::sync::RwLockWriteGuard<'a, HubState>>,
}

impl std::ops::Deref for HubWrite<'_> {
    type Target = HubState;
    fn deref(&self) -> &HubState {
        // Present until drop.
        self.guard.as_ref().expect("the guard lives until drop")
    }
}

impl std::ops::DerefMut for HubWrite<'_> {
    fn deref_mut(&mut self) -> &mut HubState {
        self.guard.as_mut().expect("the guard lives until drop")
    }
}

impl Drop for HubWrite<'_> {
    fn drop(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        let outboxes = std::mem::take(
            &mut *guard
                .undelivered
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        drop(guard);
        for outbox in outboxes {
            outbox.deliver();
        }
    }
}

/// A page of a room's members, with counts over all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPage {
    /// The members on this page.
    pub members: Vec<Member>,
    /// How many are online, of all members.
    pub online: u32,
    /// Whether members not on this page exist.
    pub more: bool,
}

impl HubState {
    /// Pushes `event` to every session of `user` except `except`; returns
    /// whether the user has any session at all.
    fn send_to_user(&self, user: UserId, event: &Outgoing, except: Option<SessionId>) -> bool {
        let mut wake = Vec::new();
        let online = self.send_to_user_deferred(user, event, except, &mut wake);
        for outbox in wake {
            outbox.wake();
        }
        online
    }

    /// Like [`HubState::send_to_user`], but adds the outboxes that need a
    /// wake-up to `wake` (see [`Outbox::push_deferred`]).
    fn send_to_user_deferred(
        &self,
        user: UserId,
        event: &Outgoing,
        except: Option<SessionId>,
        wake: &mut Vec<Arc<Outbox>>,
    ) -> bool {
        let Some(sids) = self.online.get(&user) else {
            return false;
        };
        for sid in sids {
            if Some(*sid) != except
                && let Some(s) = self.sessions.get(sid)
                && s.outbox.push_deferred(event.bytes(s.outbox.wire())) == Some(true)
            {
                wake.push(s.outbox.clone());
            }
        }
        true
    }

    fn send_to_room(&self, room: &Room, event: &Outgoing, except_user: Option<UserId>) {
        for user in room.members.keys() {
            if Some(*user) != except_user {
                self.send_to_user(*user, event, None);
            }
        }
    }

    /// Pushes a run of events to every online session of a room's
    /// members: all of them in one push (encoded once per wire format),
    /// except that a recipient whose key (`key_of(user, session)`: the
    /// sending session for messages, the user for presence) is an event's
    /// key does not get that event. Outboxes needing a wake-up go to
    /// `wake`.
    fn push_run<K: Copy + Ord>(
        &self,
        room: &Room,
        events: &[(K, Outgoing)],
        key_of: impl Fn(UserId, SessionId) -> K,
        wake: &mut Vec<Arc<Outbox>>,
    ) {
        let all = Concatenated::default();
        let mut keys: Vec<K> = events.iter().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        keys.dedup();
        for user in room.members.keys() {
            let Some(sids) = self.online.get(user) else {
                continue;
            };
            for sid in sids {
                let Some(s) = self.sessions.get(sid) else {
                    continue;
                };
                let wire = s.outbox.wire();
                let key = key_of(*user, *sid);
                let pushed = if keys.binary_search(&key).is_ok() {
                    let mut others = Vec::new();
                    for (_, e) in events.iter().filter(|(k, _)| *k != key) {
                        // Whole frames at a time (a byte-wise collect here
                        // was a fifth of the writer's time in `store`).
                        others.extend_from_slice(e.bytes(wire));
                    }
                    if others.is_empty() {
                        continue;
                    }
                    s.outbox.push_deferred(&others)
                } else {
                    s.outbox
                        .push_deferred(all.bytes(wire, events.iter().map(|(_, e)| e)))
                };
                if pushed == Some(true) {
                    wake.push(s.outbox.clone());
                }
            }
        }
    }

    /// Delivers a presence change to a small room's other members now, or
    /// records it for the presence thread, which coalesces and delivers it
    /// (see [`IMMEDIATE_PRESENCE_MEMBERS`]); nothing for a room too large
    /// for per-user presence.
    fn presence(&self, room: &Room, user: &str, user_id: UserId, event: PresenceEvent) {
        let message = self.away_message_of(user_id, event);
        self.presence_once(room, user, user_id, event, message, &mut HashSet::new());
    }

    /// An away event carries the user's away message, as IRC's away-notify
    /// does; other events none.
    fn away_message_of(&self, user_id: UserId, event: PresenceEvent) -> Option<String> {
        match event {
            PresenceEvent::Away => self.away.get(&user_id).cloned(),
            _ => None,
        }
    }

    /// [`HubState::presence`] for one of several rooms told of the same
    /// change of a user's status (`offline`, `away`, `back`): an IRC session
    /// in `told` has had it from another room already and does not get it
    /// again (on IRC it is one `QUIT` or `AWAY` line, not one per channel).
    fn presence_once(
        &self,
        room: &Room,
        user: &str,
        user_id: UserId,
        event: PresenceEvent,
        message: Option<String>,
        told: &mut HashSet<SessionId>,
    ) {
        if !self.live_presence(room) {
            return;
        }
        if room.members.len() <= IMMEDIATE_PRESENCE_MEMBERS {
            let per_user = matches!(
                event,
                PresenceEvent::Offline | PresenceEvent::Away | PresenceEvent::Back
            );
            let event = Outgoing::event(ServerMsg::Presence {
                room: room.name.clone(),
                user: user.to_owned(),
                event,
                message,
            });
            let mut wake = Vec::new();
            for member in room.members.keys().filter(|m| **m != user_id) {
                for sid in self.online.get(member).into_iter().flatten() {
                    let Some(s) = self.sessions.get(sid) else {
                        continue;
                    };
                    let wire = s.outbox.wire();
                    if per_user && matches!(wire, Wire::Irc(_)) && !told.insert(*sid) {
                        continue;
                    }
                    if s.outbox.push_deferred(event.bytes(wire)) == Some(true) {
                        wake.push(s.outbox.clone());
                    }
                }
            }
            self.undelivered
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(wake);
            return;
        }
        self.presence.record(Change {
            room: room.name.clone(),
            user_id,
            user: user.to_owned(),
            event,
            message,
        });
    }

    fn live_presence(&self, room: &Room) -> bool {
        room.members.len() <= self.presence_limit
    }

    /// Whether a user has a session here or on another node.
    fn is_online(&self, id: &UserId) -> bool {
        self.online.contains_key(id) || self.remote.contains_key(id)
    }

    /// Records a presence change of `user` in every room they are in.
    fn announce(&self, user_id: UserId, event: PresenceEvent) {
        self.announce_with(user_id, event, self.away_message_of(user_id, event));
    }

    /// [`HubState::announce`] with the event's message (an offline user's
    /// quit message).
    fn announce_with(&self, user_id: UserId, event: PresenceEvent, message: Option<String>) {
        let mut told = HashSet::new();
        for room in self.rooms.values() {
            if let Some(name) = room.members.get(&user_id) {
                self.presence_once(room, name, user_id, event, message.clone(), &mut told);
            }
        }
    }

    /// Sets or clears an away message; `None` if nothing changed.
    fn set_away(&mut self, user_id: UserId, message: Option<String>) -> Option<PresenceEvent> {
        let event = match message {
            Some(m) => {
                self.away.insert(user_id, m);
                PresenceEvent::Away
            }
            None => {
                self.away.remove(&user_id)?;
                PresenceEvent::Back
            }
        };
        self.announce(user_id, event);
        Some(event)
    }

    /// A user came online (`true`) or went offline: every room they are
    /// in counts them.
    fn count_online(&mut self, user_id: UserId, online: bool) {
        for room in self.rooms.values_mut() {
            if room.members.contains_key(&user_id) {
                if online {
                    room.online += 1;
                } else {
                    room.online = room.online.saturating_sub(1);
                }
            }
        }
    }

    /// A room made from `members`, with those online counted.
    fn new_room(
        &self,
        id: RoomId,
        name: &str,
        topic: &str,
        members: Vec<(UserId, String)>,
    ) -> Room {
        let mut room = Room::new(id, name, topic, members);
        room.online = room.members.keys().filter(|u| self.is_online(u)).count();
        room
    }

    /// `user` has a session on `node` (another node).
    fn remote_online(&mut self, node: NodeId, user_id: UserId) {
        let was = self.is_online(&user_id);
        let nodes = self.remote.entry(user_id).or_default();
        if !nodes.contains(&node) {
            nodes.push(node);
        }
        if !was {
            self.count_online(user_id, true);
            self.announce(user_id, PresenceEvent::Online);
        }
    }

    /// `user` has no session on `node` (another node) any more.
    fn remote_offline(&mut self, node: NodeId, user_id: UserId) {
        let Some(nodes) = self.remote.get_mut(&user_id) else {
            return;
        };
        // The user had a session elsewhere, so was online until now.
        nodes.retain(|n| *n != node);
        if nodes.is_empty() {
            self.remote.remove(&user_id);
        }
        if !self.is_online(&user_id) {
            self.count_online(user_id, false);
            self.away.remove(&user_id);
            self.announce(user_id, PresenceEvent::Offline);
        }
    }

    /// Exactly `users` have a session on `node` (another node): the others
    /// it had go offline there, these come online (with their away
    /// messages).
    fn set_remote_users(&mut self, node: NodeId, users: Vec<OnlineUser>) {
        let listed: HashSet<UserId> = users.iter().map(|u| u.user_id).collect();
        let dropped: Vec<UserId> = self
            .remote
            .iter()
            .filter(|(id, nodes)| nodes.contains(&node) && !listed.contains(id))
            .map(|(id, _)| *id)
            .collect();
        for id in dropped {
            self.remote_offline(node, id);
        }
        for u in users {
            self.remote_online(node, u.user_id);
            if u.away.is_some() {
                self.set_away(u.user_id, u.away);
            }
        }
    }

    /// Adds a member to a room, telling it if they are new: `None` if no
    /// such room, else whether they are new.
    fn add_member(&mut self, name: &str, user_id: UserId, user: &str) -> Option<bool> {
        let online = self.is_online(&user_id);
        let room = self.rooms.get_mut(name)?;
        let new = room.add(user_id, user);
        if new && online {
            room.online += 1;
        }
        if new {
            let room = &self.rooms[name];
            self.presence(room, user, user_id, PresenceEvent::Join);
            // Someone away who joins is seen away (IRC's away-notify does
            // the same).
            if self.away.contains_key(&user_id) {
                self.presence(room, user, user_id, PresenceEvent::Away);
            }
        }
        Some(new)
    }

    /// Removes a member, telling the room; whether they were one.
    fn leave(&mut self, name: &str, user_id: UserId, user: &str, reason: Option<&str>) -> bool {
        let online = self.is_online(&user_id);
        let Some(room) = self.rooms.get_mut(name) else {
            return false;
        };
        let left = room.remove(user_id);
        if left && online {
            room.online = room.online.saturating_sub(1);
        }
        if left {
            let room = &self.rooms[name];
            let reason = reason.map(str::to_owned);
            let told = &mut HashSet::new();
            self.presence_once(room, user, user_id, PresenceEvent::Leave, reason, told);
        }
        left
    }

    /// Removes a room and tells its members; whether it existed.
    fn delete_room(&mut self, name: &str, by: &str) -> bool {
        let Some(room) = self.rooms.remove(name) else {
            return false;
        };
        let event = Outgoing::event(ServerMsg::RoomDeleted {
            room: room.name.clone(),
            by: by.to_owned(),
        });
        self.send_to_room(&room, &event, None);
        true
    }

    /// Sets a room's topic and tells its members; whether it exists.
    fn set_topic(&mut self, name: &str, topic: &str, by: &str) -> bool {
        let Some(room) = self.rooms.get_mut(name) else {
            return false;
        };
        room.topic = topic.to_owned();
        let event = Outgoing::event(ServerMsg::TopicChanged {
            room: name.to_owned(),
            topic: topic.to_owned(),
            by: by.to_owned(),
        });
        let room = &self.rooms[name];
        self.send_to_room(room, &event, None);
        true
    }

    /// Closes every session of a user but `except` with `event` as last
    /// words; how many.
    fn close_user(&self, user_id: UserId, except: Option<SessionId>, event: &Outgoing) -> usize {
        let mut closed = 0;
        for sid in self.online.get(&user_id).into_iter().flatten() {
            if Some(*sid) != except
                && let Some(s) = self.sessions.get(sid)
            {
                s.outbox.close_with(event.bytes(s.outbox.wire()));
                closed += 1;
            }
        }
        closed
    }

    fn member(&self, id: UserId, name: &str) -> Member {
        Member {
            user: name.to_owned(),
            online: self.is_online(&id),
            away: self.away.get(&id).cloned(),
        }
    }

    /// Up to `limit` members, online ones first, each group by name.
    fn first_page(&self, room: &Room, limit: usize) -> MemberPage {
        // This runs at every join of a room of any size: with the online
        // count kept, the walk stops once the page is full (after `limit`
        // members when everyone is online, as in a crowd), not at the end
        // of the member list.
        let want_on = limit.min(room.online);
        let offline = room.members.len().saturating_sub(room.online);
        let want_off = (limit - want_on).min(offline);
        let (mut on, mut off) = (Vec::with_capacity(want_on), Vec::with_capacity(want_off));
        for (name, id) in &room.by_name {
            if on.len() >= want_on && off.len() >= want_off {
                break;
            }
            if self.is_online(id) {
                if on.len() < want_on {
                    on.push(self.member(*id, name));
                }
            } else if off.len() < want_off {
                off.push(self.member(*id, name));
            }
        }
        on.extend(off);
        on.truncate(limit);
        MemberPage {
            members: on,
            online: room.online as u32,
            more: room.by_name.len() > limit,
        }
    }

    /// Up to `limit` members by name, after `after` (from the first one
    /// when `None`).
    fn page_after(&self, room: &Room, after: Option<&str>, limit: usize) -> MemberPage {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_owned()));
        let mut members: Vec<Member> = room
            .by_name
            .range((from, Bound::Unbounded))
            .take(limit + 1)
            .map(|(name, id)| self.member(*id, name))
            .collect();
        let more = members.len() > limit;
        members.truncate(limit);
        MemberPage {
            members,
            online: room.online as u32,
            more,
        }
    }
}

/// The shared state handle; clone the `Arc` to share it.
#[derive(Debug, Default)]
pub struct Hub {
    state: RwLock<HubState>,
    /// Presence changes waiting for the presence thread (outside the
    /// lock, so that thread can wait on it without holding the hub).
    presence: Arc<PresenceQueue>,
    /// With several nodes: where changes other nodes must mirror go (see
    /// [`Hub::share_with`]).
    outbound: OnceLock<Arc<Outbound>>,
}

/// A room's identity, as session threads need it for SQL.
#[derive(Debug, Clone)]
pub struct RoomRef {
    /// Database id.
    pub id: RoomId,
    /// Canonical name.
    pub name: String,
}

impl Hub {
    /// A hub mirroring the rooms loaded from the database; rooms of more
    /// than `presence_limit` members get no presence events.
    pub fn new(rooms: Vec<RoomRecord>, presence_limit: usize) -> Hub {
        let hub = Hub::default();
        {
            let mut st = hub.write();
            st.presence = hub.presence.clone();
            st.presence_limit = presence_limit;
            for r in rooms {
                st.rooms.insert(
                    r.name.clone(),
                    Room::new(r.id, &r.name, &r.topic, r.members),
                );
            }
        }
        hub
    }

    /// Shares this hub's changes with other nodes from now on: each
    /// public method that changes what sessions see (presence, rooms,
    /// members, topics, events to a room or a user, closing a user's
    /// sessions) also records a [`Shared`] event in `outbound`, in the
    /// order the changes happened; [`Hub::apply`] plays another node's
    /// events without sharing them again. Messages are not shared this
    /// way: they travel through the messages table (`cluster`).
    pub fn share_with(&self, outbound: Arc<Outbound>) {
        let _ = self.outbound.set(outbound);
    }

    /// Records a change for the other nodes; `event` is only built when
    /// there are any (one node pays nothing).
    fn share(&self, event: impl FnOnce() -> Shared) {
        if let Some(out) = self.outbound.get() {
            out.push(event());
        }
    }

    /// Shares the users with a session here (and their away messages), for
    /// other nodes to set as this node's: at start, when asked, and after
    /// another node took this one for dead.
    pub fn share_snapshot(&self) {
        // Recorded under the lock, so it falls in order among the logins
        // and logouts shared around it.
        let st = self.write();
        let users = st
            .online
            .iter()
            .filter_map(|(id, sids)| {
                let entry = sids.first().and_then(|sid| st.sessions.get(sid))?;
                Some(OnlineUser {
                    user_id: *id,
                    user: entry.name.clone(),
                    away: st.away.get(id).cloned(),
                })
            })
            .collect();
        self.share(|| Shared::Snapshot { users });
    }

    /// Plays a change shared by another node (`node`) on this hub: what
    /// its sessions see changes as if the change were made here.
    pub fn apply(&self, node: NodeId, event: Shared) {
        let mut st = self.write();
        match event {
            Shared::Online { user_id, .. } => st.remote_online(node, user_id),
            Shared::Offline { user_id } => st.remote_offline(node, user_id),
            Shared::Away {
                user_id, message, ..
            } => {
                st.set_away(user_id, message);
            }
            Shared::Snapshot { users } => st.set_remote_users(node, users),
            // As if the node said nobody is online with it.
            Shared::NodeGone { node: gone } => st.set_remote_users(gone, Vec::new()),
            Shared::RoomCreated {
                id,
                room,
                topic,
                creator_id,
                creator,
            } => {
                if !st.rooms.contains_key(&room) {
                    let new = st.new_room(id, &room, &topic, vec![(creator_id, creator)]);
                    st.rooms.insert(room, new);
                }
            }
            Shared::Joined {
                room,
                user_id,
                user,
            } => {
                st.add_member(&room, user_id, &user);
            }
            Shared::Left {
                room,
                user_id,
                user,
                reason,
            } => {
                st.leave(&room, user_id, &user, reason.as_deref());
            }
            Shared::Topic { room, topic, by } => {
                st.set_topic(&room, &topic, &by);
            }
            Shared::RoomDeleted { room, by } => {
                st.delete_room(&room, &by);
            }
            Shared::ToRoom { room, event } => {
                if let Some(r) = st.rooms.get(&room) {
                    st.send_to_room(r, &Outgoing::event(event), None);
                }
            }
            Shared::ToUser { user_id, event } => {
                st.send_to_user(user_id, &Outgoing::event(event), None);
            }
            Shared::Close { user_id, event } => {
                st.close_user(user_id, None, &Outgoing::event(event));
            }
            // Not the hub's: the link plays these.
            Shared::Hello
            | Shared::LoginFailed { .. }
            | Shared::FileGone { .. }
            | Shared::Muted { .. }
            | Shared::Unmuted { .. } => {}
        }
    }

    /// The presence changes waiting for delivery.
    pub fn presence_queue(&self) -> &PresenceQueue {
        &self.presence
    }

    /// Delivers a batch of (collapsed) presence changes: per room, every
    /// online member gets the room's events in one push, except those
    /// about themselves; each event is encoded once per wire format.
    /// Sleeping sessions are written to from this thread.
    pub fn deliver_presence(&self, changes: Vec<Change>) {
        let mut by_room: Vec<(String, Vec<(UserId, Outgoing)>)> = Vec::new();
        for c in changes {
            let event = Outgoing::event(ServerMsg::Presence {
                room: c.room.clone(),
                user: c.user,
                event: c.event,
                message: c.message,
            });
            match by_room.iter_mut().find(|(room, _)| *room == c.room) {
                Some((_, events)) => events.push((c.user_id, event)),
                None => by_room.push((c.room, vec![(c.user_id, event)])),
            }
        }
        let mut wake = Vec::new();
        {
            let st = self.read();
            for (name, events) in &by_room {
                if let Some(room) = st.rooms.get(name) {
                    st.push_run(room, events, |user, _| user, &mut wake);
                }
            }
        }
        for outbox in wake {
            outbox.deliver();
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HubState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> HubWrite<'_> {
        HubWrite {
            guard: Some(self.state.write().unwrap_or_else(PoisonError::into_inner)),
        }
    }

    /// Registers a session that holds a slot, so the server can reach it
    /// (e.g. to say it is shutting down) before it logs in.
    pub fn attach(&self, sid: SessionId, outbox: Arc<Outbox>) {
        self.write().sessions.insert(
            sid,
            SessionEntry {
                user_id: None,
                name: String::new(),
                outbox,
                quit_message: None,
            },
        );
    }

    /// Marks an attached session as logged in as `user`. Tells the user's
    /// rooms that they came online if this is their first session. Returns
    /// the user's rooms.
    pub fn login(&self, sid: SessionId, user_id: UserId, user: &str) -> Vec<RoomInfo> {
        let mut st = self.write();
        match st.sessions.get_mut(&sid) {
            Some(entry) => {
                entry.user_id = Some(user_id);
                entry.name = user.to_owned();
            }
            None => return Vec::new(),
        }
        let elsewhere = st.remote.contains_key(&user_id);
        let sids = st.online.entry(user_id).or_default();
        sids.push(sid);
        let first = sids.len() == 1;
        if first && !elsewhere {
            st.count_online(user_id, true);
        }
        let mut rooms = Vec::new();
        for room in st.rooms.values() {
            if room.members.contains_key(&user_id) {
                rooms.push(room.info());
                if first && !elsewhere {
                    st.presence(room, user, user_id, PresenceEvent::Online);
                }
            }
        }
        if first {
            self.share(|| Shared::Online {
                user_id,
                user: user.to_owned(),
            });
        }
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        rooms
    }

    /// Removes a session; tells the user's rooms they went offline if it was
    /// their last.
    pub fn detach(&self, sid: SessionId) {
        let mut st = self.write();
        let Some(entry) = st.sessions.remove(&sid) else {
            return;
        };
        let Some(user_id) = entry.user_id else {
            return;
        };
        let last = match st.online.get_mut(&user_id) {
            Some(sids) => {
                sids.retain(|s| *s != sid);
                sids.is_empty()
            }
            None => false,
        };
        if last {
            st.online.remove(&user_id);
            if !st.remote.contains_key(&user_id) {
                st.count_online(user_id, false);
                st.away.remove(&user_id);
                st.announce_with(user_id, PresenceEvent::Offline, entry.quit_message);
            }
            self.share(|| Shared::Offline { user_id });
        }
    }

    /// Keeps what a session's client said when it quit, for the `offline`
    /// event its end may cause.
    pub fn set_quit_message(&self, sid: SessionId, message: &str) {
        if let Some(entry) = self.write().sessions.get_mut(&sid) {
            entry.quit_message = Some(message.to_owned());
        }
    }

    /// Sets (`Some`) or clears (`None`) a user's away message and tells the
    /// rooms they are in.
    pub fn set_away(&self, user_id: UserId, user: &str, message: Option<String>) {
        let mut st = self.write();
        if st.set_away(user_id, message.clone()).is_some() {
            self.share(|| Shared::Away {
                user_id,
                user: user.to_owned(),
                message,
            });
        }
    }

    /// A user's away message, if they are away.
    pub fn away_message(&self, user_id: UserId) -> Option<String> {
        self.read().away.get(&user_id).cloned()
    }

    /// Whether a user has a session here or on another node, and their
    /// away message if they are away.
    pub fn status(&self, user_id: UserId) -> (bool, Option<String>) {
        let st = self.read();
        (st.is_online(&user_id), st.away.get(&user_id).cloned())
    }

    /// A room's name, topic and member count.
    pub fn room_info(&self, name: &str) -> Option<RoomInfo> {
        self.read().rooms.get(name).map(Room::info)
    }

    /// The rooms `user` is a member of, by name.
    pub fn rooms_of(&self, user: UserId) -> Vec<String> {
        let st = self.read();
        let mut names: Vec<String> = st
            .rooms
            .values()
            .filter(|r| r.members.contains_key(&user))
            .map(|r| r.name.clone())
            .collect();
        names.sort();
        names
    }

    /// Sends `event` as last words to every session of a user (kick, ban);
    /// returns how many sessions.
    pub fn close_user(&self, user_id: UserId, event: &Outgoing) -> usize {
        self.close_user_except(user_id, None, event)
    }

    /// As [`Hub::close_user`], sparing session `except` (the one that
    /// changed the password).
    pub fn close_user_except(
        &self,
        user_id: UserId,
        except: Option<SessionId>,
        event: &Outgoing,
    ) -> usize {
        let st = self.read();
        self.share(|| Shared::Close {
            user_id,
            event: event.msg().clone(),
        });
        st.close_user(user_id, except, event)
    }

    /// Sends `event` to every session as its last words (server shutdown).
    pub fn close_all(&self, event: &Outgoing) {
        for entry in self.read().sessions.values() {
            entry.outbox.close_with(event.bytes(entry.outbox.wire()));
        }
    }

    /// Looks a room up by canonical name.
    pub fn room(&self, name: &str) -> Option<RoomRef> {
        self.read().rooms.get(name).map(|r| RoomRef {
            id: r.id,
            name: r.name.clone(),
        })
    }

    /// Whether `user` is a member of room `name`.
    pub fn is_member(&self, name: &str, user: UserId) -> bool {
        self.read()
            .rooms
            .get(name)
            .is_some_and(|r| r.members.contains_key(&user))
    }

    /// Adds a room created in the database.
    pub fn add_room(&self, id: RoomId, name: &str, topic: &str, creator: (UserId, &str)) {
        let mut st = self.write();
        let room = st.new_room(id, name, topic, vec![(creator.0, creator.1.to_owned())]);
        st.rooms.insert(name.to_owned(), room);
        self.share(|| Shared::RoomCreated {
            id,
            room: name.to_owned(),
            topic: topic.to_owned(),
            creator_id: creator.0,
            creator: creator.1.to_owned(),
        });
    }

    /// Adds a member (already recorded in the database) and tells the room.
    /// Returns the room, the first page of its members (at most `limit`,
    /// online ones first) and whether it has live presence, or `None` if
    /// the room vanished.
    pub fn join(
        &self,
        name: &str,
        user_id: UserId,
        user: &str,
        limit: usize,
    ) -> Option<(RoomInfo, MemberPage, bool)> {
        if !self.add_member(name, user_id, user) {
            return None;
        }
        // The page is built under the read lock: a crowd joining at once
        // does not queue behind each other's member lists.
        let st = self.read();
        let room = st.rooms.get(name)?;
        Some((
            room.info(),
            st.first_page(room, limit),
            st.live_presence(room),
        ))
    }

    /// Adds a member (already recorded in the database) and tells the room
    /// if they are new; `false` if there is no such room.
    pub fn add_member(&self, name: &str, user_id: UserId, user: &str) -> bool {
        {
            let st = self.read();
            match st.rooms.get(name) {
                None => return false,
                Some(room) if room.members.contains_key(&user_id) => return true,
                Some(_) => {}
            }
        }
        let mut st = self.write();
        match st.add_member(name, user_id, user) {
            None => false,
            Some(new) => {
                if new {
                    self.share(|| Shared::Joined {
                        room: name.to_owned(),
                        user_id,
                        user: user.to_owned(),
                    });
                }
                true
            }
        }
    }

    /// Removes a member (already removed in the database) and tells the room.
    pub fn leave(&self, name: &str, user_id: UserId, user: &str, reason: Option<&str>) {
        let mut st = self.write();
        if st.leave(name, user_id, user, reason) {
            self.share(|| Shared::Left {
                room: name.to_owned(),
                user_id,
                user: user.to_owned(),
                reason: reason.map(str::to_owned),
            });
        }
    }

    /// Removes a room (already deleted in the database) and tells every
    /// session of every member, `by`'s included. `false` if no such room.
    pub fn delete_room(&self, name: &str, by: &str) -> bool {
        let mut st = self.write();
        let deleted = st.delete_room(name, by);
        if deleted {
            self.share(|| Shared::RoomDeleted {
                room: name.to_owned(),
                by: by.to_owned(),
            });
        }
        deleted
    }

    /// Sets a room's topic (already stored) and tells its members.
    pub fn set_topic(&self, name: &str, topic: &str, by: &str) {
        let mut st = self.write();
        if st.set_topic(name, topic, by) {
            self.share(|| Shared::Topic {
                room: name.to_owned(),
                topic: topic.to_owned(),
                by: by.to_owned(),
            });
        }
    }

    /// Delivers an event to every session of every member of a room.
    pub fn send_to_room(&self, name: &str, event: &Outgoing) {
        let st = self.read();
        if let Some(room) = st.rooms.get(name) {
            st.send_to_room(room, event, None);
            self.share(|| Shared::ToRoom {
                room: name.to_owned(),
                event: event.msg().clone(),
            });
        }
    }

    /// A page of a room's members by name, after `after`, at most
    /// `limit`; `None` if no such room.
    pub fn members(&self, name: &str, after: Option<&str>, limit: usize) -> Option<MemberPage> {
        let st = self.read();
        st.rooms.get(name).map(|r| st.page_after(r, after, limit))
    }

    /// How many members a room has (`None`: no such room).
    pub fn member_count(&self, name: &str) -> Option<usize> {
        self.read().rooms.get(name).map(|r| r.members.len())
    }

    /// All rooms, by name.
    pub fn room_list(&self) -> Vec<RoomInfo> {
        let mut rooms: Vec<RoomInfo> = self.read().rooms.values().map(Room::info).collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        rooms
    }

    /// Delivers an event to every online member of a room, except the
    /// session `except` (the sender, who gets an ack instead).
    pub fn fan_out_room(&self, name: &str, event: Outgoing, except: SessionId) {
        let mut wake = Vec::new();
        self.fan_out_room_run(name, &[(except, event)], &mut wake);
        for outbox in wake {
            outbox.wake();
        }
    }

    /// Fans out a run of consecutive messages to one room: `events` holds
    /// each message's sending session and event, in id order. A session
    /// that sent none of them gets all of them in one push (one lock, one
    /// copy, the run encoded once per wire format); a sender gets the
    /// others' messages, not its own.
    /// The outboxes that need a wake-up are added to `wake` (see
    /// [`Outbox::push_deferred`]); the caller calls [`Outbox::deliver`] on
    /// each once it holds no lock.
    pub fn fan_out_room_run(
        &self,
        name: &str,
        events: &[(SessionId, Outgoing)],
        wake: &mut Vec<Arc<Outbox>>,
    ) {
        let st = self.read();
        if let Some(room) = st.rooms.get(name) {
            st.push_run(room, events, |_, sid| sid, wake);
        }
    }

    /// Delivers an event to every session of `user` except `except`;
    /// returns whether the user has a session.
    pub fn send_to_user(&self, user: UserId, event: &Outgoing, except: Option<SessionId>) -> bool {
        let st = self.read();
        self.share(|| Shared::ToUser {
            user_id: user,
            event: event.msg().clone(),
        });
        st.send_to_user(user, event, except)
    }

    /// Like [`Hub::send_to_user`], deferring wake-ups as
    /// [`Hub::fan_out_room_run`] does.
    pub fn send_to_user_deferred(
        &self,
        user: UserId,
        event: &Outgoing,
        except: Option<SessionId>,
        wake: &mut Vec<Arc<Outbox>>,
    ) -> bool {
        self.read().send_to_user_deferred(user, event, except, wake)
    }

    /// Sessions logged in now.
    pub fn logged_in_count(&self) -> usize {
        self.read()
            .sessions
            .values()
            .filter(|s| s.user_id.is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_bounds_its_buffer_and_reports_overflow() {
        let out = Outbox::new(10);
        assert!(out.push(b"12345"));
        assert!(out.push(b"67890"));
        assert!(!out.push(b"x"));
        assert!(!out.push(b"y"), "stays overflowed");
        let (bytes, flags) = out.take();
        assert!(bytes.is_empty());
        assert!(flags.overflowed);
    }

    #[test]
    fn fan_out_skips_the_sender_session_and_offline_members() {
        let hub = Hub::new(
            vec![RoomRecord {
                id: 1,
                name: "general".into(),
                topic: String::new(),
                members: vec![(1, "alice".into()), (2, "bob".into()), (3, "carol".into())],
            }],
            1000,
        );
        let a = Arc::new(Outbox::new(1 << 20));
        let b = Arc::new(Outbox::new(1 << 20));
        hub.attach(10, a.clone());
        hub.attach(20, b.clone());
        hub.login(10, 1, "alice");
        hub.login(20, 2, "bob");
        a.take();
        b.take();
        let msg = Outgoing::event(ServerMsg::Pong);
        let want = msg.bytes(super::super::wire::Wire::Confab).to_vec();
        hub.fan_out_room("general", msg, 10);
        assert_eq!(a.take().0, b"");
        assert_eq!(b.take().0, want);
        let page = hub.members("general", None, 10).unwrap();
        assert_eq!(page.members.iter().filter(|m| m.online).count(), 2);
        assert_eq!(page.online, 2);
        hub.deliver_presence(hub.presence_queue().take_now());
        a.take();
        hub.detach(20);
        hub.deliver_presence(hub.presence_queue().take_now());
        let (bytes, _) = a.take();
        assert!(String::from_utf8_lossy(&bytes).contains("\"offline\""));
    }

    #[test]
    fn kept_online_counts_match_a_walk_through_any_history_of_comings_and_goings() {
        let rooms = (1..=3)
            .map(|r| RoomRecord {
                id: r,
                name: format!("room{r}"),
                topic: String::new(),
                members: (1..=6)
                    .filter(|u| (u + r) % 2 == 0)
                    .map(|u| (u, format!("u{u}")))
                    .collect(),
            })
            .collect();
        let hub = Hub::new(rooms, 1000);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut sessions: Vec<SessionId> = Vec::new();
        let mut next_sid = 100;
        for step in 0..3000 {
            let user = next(8) as UserId + 1;
            let name = format!("u{user}");
            let room = format!("room{}", next(3) + 1);
            match next(7) {
                0 | 1 => {
                    next_sid += 1;
                    hub.attach(next_sid, Arc::new(Outbox::new(1 << 20)));
                    hub.login(next_sid, user, &name);
                    sessions.push(next_sid);
                }
                2 if !sessions.is_empty() => {
                    let sid = sessions.swap_remove(next(sessions.len() as u64) as usize);
                    hub.detach(sid);
                }
                3 => {
                    hub.add_member(&room, user, &name);
                }
                4 => hub.leave(&room, user, &name, None),
                5 => hub.apply(
                    7,
                    Shared::Online {
                        user_id: user,
                        user: name.clone(),
                    },
                ),
                _ => hub.apply(7, Shared::Offline { user_id: user }),
            }
            let st = hub.read();
            for r in st.rooms.values() {
                let walked = r.members.keys().filter(|u| st.is_online(u)).count();
                assert_eq!(r.online, walked, "{} after step {step}", r.name);
                let page = st.first_page(r, 2);
                let want_online = r
                    .by_name
                    .values()
                    .filter(|u| st.is_online(u))
                    .take(2)
                    .count();
                assert_eq!(
                    page.members.iter().filter(|m| m.online).count(),
                    want_online,
                    "online members first"
                );
                assert_eq!(page.members.len(), r.members.len().min(2));
            }
            drop(st);
            // Drain what the outboxes got, so none overflows.
            for sid in &sessions {
                if let Some(e) = hub.read().sessions.get(sid) {
                    e.outbox.take();
                }
            }
        }
    }
}
