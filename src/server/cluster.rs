//! Several nodes that share one database (PostgreSQL): what each node
//! must learn from the others.
//!
//! **Messages.** Each node delivers every committed message, whichever
//! node stored it, in id order: [`Order`] holds the newest id this node has
//! delivered. The message writer holds it across its own commit and
//! delivery (first delivering, from the table, what other nodes committed
//! below its batch), and the watch thread delivers what other nodes
//! committed after it, when the database announces a commit
//! (LISTEN/NOTIFY: a hint) or at the latest every [`POLL`]. Ids are
//! gap-free and in commit order (`store::postgres`), so "everything after
//! my cursor up to the newest committed id" is exactly what is missing: a
//! lost listener connection delays delivery and loses nothing.
//!
//! **Everything else a session sees** (presence, rooms made and deleted,
//! joins, leaves, topics, edits, deletions, reactions, read markers, kicks)
//! and failed logins (so the login throttle is cluster-wide): the hub and
//! the authenticator record each change as a [`Shared`] event in
//! [`Outbound`]; [`Link::flush`] appends them to the `cluster_events` table
//! (gap-free ids, as messages) before the request that made them is
//! answered, so a client that hears "done" from node A finds it true on
//! node B once B has caught up. The watch thread of every other node reads
//! the table after its cursor and plays the events on its hub
//! ([`Hub::apply`]); a login catches up first, so it sees what any node
//! finished before it. Presence is per node: a user is online while any
//! node has a session of theirs. Nodes beat every [`BEAT`] in
//! `cluster_nodes`; one silent for [`STALE`] (killed, cut off) is removed
//! by the first node to notice, which shares [`Shared::NodeGone`]: its
//! users go offline everywhere. A node that starts asks the others for
//! their online users ([`Shared::Hello`]; each answers with a
//! [`Shared::Snapshot`]).
//!
//! Per node, by design: session slots and the wait queue, flood control,
//! slow-reader cut-off.

use super::auth::Auth;
use super::file_store::FileStore;
use super::hub::{Hub, NO_SESSION, SessionId};
use super::mutes::Mutes;
use super::outbox::Outbox;
use super::services::StartError;
use super::wire::Outgoing;
use crate::protocol::ServerMsg;
use crate::store::{
    Destination, MessageWatch, NodeId, RoomId, SharedStore, Store, StoreError, StoredMessage,
    UserId,
};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The longest a commit by another node waits for delivery here when its
/// announcement is lost.
pub const POLL: Duration = Duration::from_millis(500);

/// Messages or events read from the tables per step.
const CHUNK: u32 = 1000;

/// How often a node tells the database it is alive.
pub const BEAT: Duration = Duration::from_secs(2);

/// A node silent this long is taken for dead (its users go offline).
pub const STALE: Duration = Duration::from_secs(10);

/// Most events kept for sharing while the database cannot be written
/// (older ones are dropped, with a warning).
const OUTBOUND_MAX: usize = 100_000;

/// A change one node shares with the others (JSON in `cluster_events`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Shared {
    /// A node started: the others answer with a [`Shared::Snapshot`].
    Hello,
    /// Exactly these users have a session on the sharing node.
    Snapshot {
        /// Who, with away messages.
        users: Vec<OnlineUser>,
    },
    /// A node stopped beating: none of its users is online there.
    NodeGone {
        /// Which.
        node: NodeId,
    },
    /// A user's first session on the sharing node.
    Online {
        /// Who.
        user_id: UserId,
        /// Name (for people reading `cluster_events`; nodes take names
        /// from their rooms).
        user: String,
    },
    /// A user's last session on the sharing node ended.
    Offline {
        /// Who.
        user_id: UserId,
    },
    /// A user set (`Some`) or cleared their away message.
    Away {
        /// Who.
        user_id: UserId,
        /// Name.
        user: String,
        /// The message.
        message: Option<String>,
    },
    /// A room was created.
    RoomCreated {
        /// Its id.
        id: RoomId,
        /// Name.
        room: String,
        /// Topic.
        topic: String,
        /// Its first member.
        creator_id: UserId,
        /// Their name.
        creator: String,
    },
    /// A user joined a room.
    Joined {
        /// Room name.
        room: String,
        /// Who.
        user_id: UserId,
        /// Name.
        user: String,
    },
    /// A user left a room.
    Left {
        /// Room name.
        room: String,
        /// Who.
        user_id: UserId,
        /// Name.
        user: String,
        /// Why (IRC's PART message), for the others.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A room's topic changed.
    Topic {
        /// Room name.
        room: String,
        /// The new topic.
        topic: String,
        /// Who set it.
        by: String,
    },
    /// A room was deleted.
    RoomDeleted {
        /// Room name.
        room: String,
        /// By whom.
        by: String,
    },
    /// An event for every session of a room's members (edits,
    /// deletions, reactions).
    ToRoom {
        /// Room name.
        room: String,
        /// The event.
        event: ServerMsg,
    },
    /// An event for every session of one user (read markers, DM edits).
    ToUser {
        /// Who.
        user_id: UserId,
        /// The event.
        event: ServerMsg,
    },
    /// Every session of a user ends with this event (kick, ban, password
    /// change).
    Close {
        /// Who.
        user_id: UserId,
        /// The last words.
        event: ServerMsg,
    },
    /// A login attempt failed (for the login throttle).
    LoginFailed {
        /// The name tried.
        user: String,
        /// From where.
        ip: IpAddr,
        /// Whether it counts against the account from everywhere.
        account: bool,
    },
    /// A user was muted in a room.
    Muted {
        /// The room.
        room: RoomId,
        /// Who.
        user: UserId,
        /// Until when (ms since the epoch; `None`: until lifted).
        until: Option<i64>,
    },
    /// A mute was lifted.
    Unmuted {
        /// The room.
        room: RoomId,
        /// Who.
        user: UserId,
    },
    /// A file's content is used by no file record any more: each node drops
    /// its copy.
    FileGone {
        /// The content's SHA-256.
        sha256: String,
    },
}

/// A user with a session on some node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineUser {
    /// Who.
    pub user_id: UserId,
    /// Name.
    pub user: String,
    /// Away message, if away.
    pub away: Option<String>,
}

/// Changes waiting to be shared, in the order they happened.
#[derive(Debug, Default)]
pub struct Outbound {
    pending: Mutex<Vec<Shared>>,
}

impl Outbound {
    /// Records a change.
    pub fn push(&self, event: Shared) {
        self.lock().push(event);
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Shared>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self) -> Vec<Shared> {
        std::mem::take(&mut *self.lock())
    }

    /// Puts back events that could not be written, before any recorded
    /// since.
    fn restore(&self, mut events: Vec<Shared>) {
        let mut pending = self.lock();
        events.append(&mut pending);
        if events.len() > OUTBOUND_MAX {
            let dropped = events.len() - OUTBOUND_MAX;
            log::warn!("dropped {dropped} change(s) other nodes will not see");
            events.drain(..dropped);
        }
        *pending = events;
    }
}

/// What this node keeps in memory that other nodes' changes update.
pub struct Local {
    /// Sessions, rooms, members, presence.
    pub hub: Arc<Hub>,
    /// The login throttle.
    pub auth: Arc<Auth>,
    /// Mutes in force.
    pub mutes: Arc<Mutes>,
    /// Copies of file contents.
    pub files: FileStore,
}

/// This node's link with the others: shares its changes, plays theirs.
pub struct Link {
    node: NodeId,
    store: SharedStore,
    local: Local,
    outbound: Arc<Outbound>,
    /// Held while writing events: whoever holds it writes everyone's.
    publishing: Mutex<()>,
    /// The newest event id played here, and the newest caller ticket a
    /// completed read covered.
    applied: Mutex<Applied>,
    /// Tickets handed to callers of [`Link::catch_up`], in arrival order.
    tickets: AtomicU64,
}

/// Where playing other nodes' events stands.
#[derive(Debug, Default)]
struct Applied {
    /// The newest event id played.
    id: i64,
    /// Every caller with a ticket up to this one arrived before a read
    /// that has completed: it is caught up.
    covered: u64,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Link {
    /// Joins the cluster: registers this node, asks the others who is
    /// online with them, and starts the watch thread (which delivers other
    /// nodes' messages after `order`, plays their events after
    /// `events_after`, and beats). `events_after` must have been read
    /// before the hub was loaded from the tables.
    pub fn start(
        store: SharedStore,
        local: Local,
        order: Arc<Order>,
        events_after: i64,
        watch: Box<dyn MessageWatch>,
    ) -> Result<Arc<Link>, StartError> {
        let mut raw = [0u8; 8];
        getrandom::fill(&mut raw).map_err(|e| StoreError::Random(e.to_string()))?;
        // Positive, so logs and psql show it plainly.
        let node = i64::from_le_bytes(raw) & i64::MAX;
        let outbound = Arc::new(Outbound::default());
        local.hub.share_with(outbound.clone());
        local.auth.share_with(outbound.clone());
        let link = Arc::new(Link {
            node,
            store,
            local,
            outbound,
            publishing: Mutex::new(()),
            applied: Mutex::new(Applied {
                id: events_after,
                covered: 0,
            }),
            tickets: AtomicU64::new(0),
        });
        link.store.heartbeat(node, STALE)?;
        link.outbound.push(Shared::Hello);
        link.flush();
        log::info!("joined the cluster as node {node:x}");
        let watcher = link.clone();
        std::thread::Builder::new()
            .name("cluster-watch".into())
            .spawn(move || watcher.watch(order, watch))
            .map_err(|err| StartError::Thread {
                what: "cluster watch",
                err,
            })?;
        Ok(link)
    }

    /// Records a change for the other nodes (besides those the hub and the
    /// authenticator record themselves).
    pub fn share(&self, event: Shared) {
        self.outbound.push(event);
    }

    /// Writes every recorded change to the events table; returns once
    /// this thread's changes are there (written by it or by whoever held
    /// the lock before it). A failure is logged and the changes are kept
    /// for the next flush.
    pub fn flush(&self) {
        let _writing = self
            .publishing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let events = self.outbound.take();
        if events.is_empty() {
            return;
        }
        let bodies: Vec<String> = events
            .iter()
            .filter_map(|e| serde_json::to_string(e).ok())
            .collect();
        if let Err(err) = self.store.share_events(self.node, &bodies) {
            log::warn!(
                "sharing {} change(s) with the other nodes failed (kept for the next try): {err}",
                bodies.len()
            );
            self.outbound.restore(events);
        }
    }

    /// Plays every event other nodes committed before this call. Callers
    /// that arrive together share one read: a caller whose arrival a
    /// completed read followed needs none of its own (a storm of logins
    /// costs a read per batch of them, not per login).
    pub fn catch_up(&self) {
        let ticket = self.tickets.fetch_add(1, Ordering::SeqCst) + 1;
        let mut hello = false;
        {
            let mut applied = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
            if applied.covered >= ticket {
                return;
            }
            // Everyone with a ticket up to here arrived before this read.
            let covers = self.tickets.load(Ordering::SeqCst);
            let mut complete = true;
            loop {
                // Ids are gap-free in commit order: "after the cursor" is
                // exactly what is missing, without an upper bound.
                let rows = match self.store.events_between(applied.id, i64::MAX, CHUNK) {
                    Ok(rows) => rows,
                    Err(err) => {
                        log::warn!("reading other nodes' changes failed: {err}");
                        complete = false;
                        break;
                    }
                };
                let full = rows.len() == CHUNK as usize;
                for row in rows {
                    applied.id = row.id;
                    if row.node == self.node {
                        continue;
                    }
                    match serde_json::from_str::<Shared>(&row.body) {
                        Ok(event) => hello |= self.play(row.node, event),
                        Err(err) => log::warn!("unreadable shared change {}: {err}", row.id),
                    }
                }
                if !full {
                    break;
                }
            }
            if complete {
                applied.covered = applied.covered.max(covers);
            }
        }
        if hello {
            self.local.hub.share_snapshot();
            self.flush();
        }
    }

    /// Plays one event from `node`; `true` if this node should say again
    /// who is online here.
    fn play(&self, node: NodeId, event: Shared) -> bool {
        match event {
            Shared::Hello => return true,
            // Another node took this one for dead.
            Shared::NodeGone { node: gone } if gone == self.node => return true,
            Shared::LoginFailed { user, ip, account } => {
                self.local.auth.count_failure(&user, ip, account);
            }
            Shared::Muted { room, user, until } => self.local.mutes.set(room, user, until),
            Shared::Unmuted { room, user } => self.local.mutes.clear(room, user),
            Shared::FileGone { sha256 } => {
                if let Err(err) = self.local.files.remove_content(&sha256) {
                    log::warn!("removing this node's copy of file {sha256}: {err}");
                }
            }
            event => self.local.hub.apply(node, event),
        }
        false
    }

    fn applied(&self) -> i64 {
        self.applied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .id
    }

    /// Beats; takes silent nodes' users offline everywhere.
    fn beat(&self) {
        match self.store.heartbeat(self.node, STALE) {
            Ok(beat) => {
                if !beat.known {
                    // Taken for dead by another node meanwhile.
                    self.local.hub.share_snapshot();
                }
                for gone in beat.gone {
                    log::info!("node {gone:x} stopped beating: its users are offline");
                    let event = Shared::NodeGone { node: gone };
                    self.local.hub.apply(self.node, event.clone());
                    self.outbound.push(event);
                }
                // Written by the watch loop's flush right after.
            }
            Err(err) => log::warn!("cluster heartbeat failed: {err}"),
        }
    }

    /// The watch thread's loop, for the life of the process.
    fn watch(&self, order: Arc<Order>, mut watch: Box<dyn MessageWatch>) {
        let mut failing = false;
        let mut last_beat = Instant::now();
        loop {
            if last_beat.elapsed() >= BEAT {
                last_beat = Instant::now();
                self.beat();
            }
            // Changes recorded outside requests (logouts, bans found by
            // polling) go out within a poll.
            self.flush();
            let heads = match watch.wait(POLL) {
                Ok(heads) => {
                    if failing {
                        log::info!("cluster watch reconnected");
                        failing = false;
                    }
                    heads
                }
                Err(err) => {
                    if !failing {
                        log::warn!("cluster watch lost its connection: {err}");
                        failing = true;
                    }
                    std::thread::sleep(POLL);
                    continue;
                }
            };
            // Events first: a message may be to a room an event created.
            if heads.events > self.applied() {
                self.catch_up();
            }
            let mut wake = Vec::new();
            {
                let mut delivered = order.lock();
                if heads.messages > *delivered
                    && let Err(err) = deliver_between(
                        &*self.store,
                        &self.local.hub,
                        &mut delivered,
                        heads.messages,
                        &mut wake,
                    )
                {
                    log::warn!("reading other nodes' messages failed: {err}");
                }
            }
            wake.iter().for_each(|o| o.deliver());
        }
    }
}

/// The newest message id this node has delivered.
#[derive(Debug)]
pub struct Order {
    delivered: Mutex<i64>,
}

impl Order {
    /// Starts after `newest` (older messages are history).
    pub fn new(newest: i64) -> Order {
        Order {
            delivered: Mutex::new(newest),
        }
    }

    /// Holds delivery: while held, nobody else delivers.
    pub fn lock(&self) -> MutexGuard<'_, i64> {
        self.delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Delivers the committed messages `*delivered < id <= upto` to this
/// node's sessions (all of them: the senders' sessions are on other nodes,
/// or see their own message as their other sessions do), queueing
/// wake-ups in `wake`, and moves `*delivered` on as it goes (to `upto` at
/// the end: ids without a row were deleted with their room).
pub fn deliver_between(
    store: &dyn Store,
    hub: &Hub,
    delivered: &mut i64,
    upto: i64,
    wake: &mut Vec<Arc<Outbox>>,
) -> Result<(), StoreError> {
    while *delivered < upto {
        let rows = store.messages_between(*delivered, upto, CHUNK)?;
        let Some(last) = rows.last().map(|m| m.message.id) else {
            *delivered = upto;
            break;
        };
        // Consecutive messages to one room go out as one run (one push per
        // recipient), as the writer sends its own batches.
        let mut run: Option<(String, Vec<(SessionId, Outgoing)>)> = None;
        for StoredMessage {
            message,
            sender,
            to,
        } in rows
        {
            let id = message.id;
            let room = message.room.clone();
            let event = Outgoing::event(ServerMsg::Message(Box::new(message)));
            match (to, room) {
                (Destination::Room(_), Some(room)) => match &mut run {
                    Some((name, events)) if *name == room => events.push((NO_SESSION, event)),
                    _ => {
                        flush(hub, run.take(), wake);
                        run = Some((room, vec![(NO_SESSION, event)]));
                    }
                },
                (Destination::Room(_), None) => {}
                (Destination::User(to), _) => {
                    flush(hub, run.take(), wake);
                    hub.send_to_user_deferred(sender, &event, None, wake);
                    if hub.send_to_user_deferred(to, &event, None, wake)
                        && let Err(err) = store.advance_dm_cursor(to, id)
                    {
                        log::warn!("advancing DM cursor failed: {err}");
                    }
                }
            }
        }
        flush(hub, run, wake);
        *delivered = last;
    }
    Ok(())
}

/// Pushes a room's run of messages to its members here.
fn flush(
    hub: &Hub,
    run: Option<(String, Vec<(SessionId, Outgoing)>)>,
    wake: &mut Vec<Arc<Outbox>>,
) {
    if let Some((room, events)) = run {
        hub.fan_out_room_run(&room, &events, wake);
    }
}
