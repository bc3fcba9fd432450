//! The message writer: one thread that stores chat messages and then
//! delivers them.
//!
//! Session threads hand each `say` or `dm` to this thread through a bounded
//! channel and go back to their sockets. The writer takes everything waiting
//! (up to [`MAX_BATCH`]), inserts it in one SQLite transaction (group
//! commit), and only after the commit succeeds does it fan the messages out
//! and queue the sender's `ack`. Hence:
//!
//! - **Invariant:** no `ack` and no delivery exist for a message that is not
//!   committed. An acked message survives a crash of the server process.
//! - Deliveries leave in id order, the order of history, for everyone.
//! - One writer means no lock contention between writers in SQLite.
//! - The search index is filled here too, in bulk: every
//!   [`INDEX_EVERY`] messages, and when no message has come for
//!   [`INDEX_IDLE`] (a search indexes what is left by itself).

use super::cluster::{self, Order};
use super::delivery::Deliverers;
use super::hub::{Hub, SessionId};
use super::outbox::Outbox;
use super::wire::Outgoing;
use crate::protocol::{
    ChatMessage, ErrorCode, FileInfo, MessageKind, ReplyRef, ServerFrame, ServerMsg,
};
use crate::store::{Destination, NewMessage, RoomId, SharedStore, Store, UserId, now_ms};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

/// Most messages committed in one transaction.
pub const MAX_BATCH: usize = 1024;
/// Stored messages that wait for the search index before the writer adds
/// them (one indexing transaction per thousand messages costs a tenth of
/// one per message).
pub const INDEX_EVERY: usize = 1000;
/// How long the writer waits for more messages before indexing the ones
/// it has stored.
pub const INDEX_IDLE: std::time::Duration = std::time::Duration::from_millis(200);
/// Messages that may wait for the writer before senders block.
const QUEUE_LEN: usize = 8192;

/// Where a message goes, with the names needed to deliver it.
#[derive(Debug, Clone)]
pub enum Target {
    /// A room.
    Room {
        /// Database id.
        id: RoomId,
        /// Canonical name.
        name: String,
    },
    /// A user.
    User {
        /// Database id.
        id: UserId,
        /// Canonical name.
        name: String,
    },
}

/// A message waiting to be stored.
#[derive(Debug)]
pub struct Submission {
    /// The request id to ack.
    pub req: Option<u64>,
    /// The sending session, which gets the ack instead of the event.
    pub session: SessionId,
    /// Where the ack goes.
    pub outbox: Arc<Outbox>,
    /// Sender's id and name.
    pub sender: (UserId, String),
    /// Destination.
    pub target: Target,
    /// Text (already validated).
    pub body: String,
    /// The shared file this message announces (already stored).
    pub file: Option<FileInfo>,
    /// The message this one answers (already checked).
    pub reply: Option<ReplyRef>,
    /// Chat, or a topic change kept in history (delivered to the setter's
    /// session too: it has no other copy of the line).
    pub kind: MessageKind,
    /// A notice (IRC's NOTICE).
    pub notice: bool,
    /// The IRC client's label for its request (labeled-response), which
    /// its echo carries.
    pub label: Option<String>,
}

/// What the writer thread is asked to do. (Nearly every job is a
/// message, so boxing it to shrink the rare `Close` would only add an
/// allocation per message.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Job {
    /// Store and deliver a message.
    Message(Submission),
    /// Shutdown: reply once everything queued before is stored and its
    /// acks are queued; refuse every message after it.
    Close(SyncSender<()>),
}

/// The sending side, held by session threads.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    tx: SyncSender<Job>,
}

impl WriterHandle {
    /// Queues a message; blocks only while the writer is [`QUEUE_LEN`]
    /// messages behind (back-pressure). Fails if the writer has stopped.
    pub fn submit(&self, sub: Submission) -> Result<(), ()> {
        match self.tx.try_send(Job::Message(sub)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) => self.tx.send(job).map_err(|_| ()),
            Err(TrySendError::Disconnected(_)) => Err(()),
        }
    }

    /// Stores everything submitted so far, then refuses later messages
    /// (with `shutting_down`). Returns when the earlier ones are stored and
    /// their acks are in the senders' outboxes.
    pub fn close(&self) {
        let (tx, rx) = sync_channel(1);
        if self.tx.send(Job::Close(tx)).is_ok() {
            let _ = rx.recv();
        }
    }
}

/// Starts the writer thread. It stops when every [`WriterHandle`] is gone,
/// after storing and delivering what was queued.
/// With `order` (several nodes on one database), each batch is stored and
/// delivered while holding it, after the messages other nodes committed
/// below the batch (see `cluster`).
pub fn spawn(
    store: SharedStore,
    hub: Arc<Hub>,
    order: Option<Arc<Order>>,
) -> std::io::Result<(WriterHandle, JoinHandle<()>)> {
    let (tx, rx) = sync_channel(QUEUE_LEN);
    let deliverers = Deliverers::for_this_machine()?;
    let handle = std::thread::Builder::new()
        .name("message-writer".into())
        .spawn(move || {
            let w = Writer {
                store: &*store,
                hub: &hub,
                deliverers: &deliverers,
                order: order.as_deref(),
            };
            run(&w, &rx)
        })?;
    Ok((WriterHandle { tx }, handle))
}

/// What the writer thread works with.
struct Writer<'a> {
    store: &'a dyn Store,
    hub: &'a Hub,
    deliverers: &'a Deliverers,
    order: Option<&'a Order>,
}

fn run(w: &Writer, rx: &Receiver<Job>) {
    let store = w.store;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut closed = false;
    // Stored since the search index was last brought up to date.
    let mut unindexed = 0;
    let mut next = rx.recv().ok();
    while let Some(job) = next.take() {
        let mut close_reply = None;
        match job {
            Job::Message(sub) => batch.push(sub),
            Job::Close(reply) => close_reply = Some(reply),
        }
        // Gather what else is waiting, up to a batch, stopping at a Close
        // so that it is answered after exactly the messages before it.
        while close_reply.is_none() && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Job::Message(sub)) => batch.push(sub),
                Ok(Job::Close(reply)) => close_reply = Some(reply),
                Err(_) => break,
            }
        }
        if closed {
            refuse(&mut batch);
        } else if !batch.is_empty() {
            unindexed += batch.len();
            commit_and_deliver(w, &mut batch);
        }
        if unindexed >= INDEX_EVERY || (close_reply.is_some() && unindexed > 0) {
            index(store, &mut unindexed);
        }
        if let Some(reply) = close_reply {
            closed = true;
            let _ = reply.send(());
        }
        next = if unindexed > 0 {
            match rx.recv_timeout(INDEX_IDLE) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => {
                    index(store, &mut unindexed);
                    rx.recv().ok()
                }
                Err(RecvTimeoutError::Disconnected) => None,
            }
        } else {
            rx.recv().ok()
        };
    }
    log::debug!("message writer stopped");
}

/// Brings the search index up to date (a failure only delays it: the next
/// call, or the next search, indexes the same messages).
fn index(store: &dyn Store, unindexed: &mut usize) {
    match store.index_messages(u32::MAX) {
        Ok(_) => *unindexed = 0,
        Err(err) => log::warn!("indexing messages for search failed: {err}"),
    }
}

/// Answers messages that arrived after shutdown began: not stored, not sent.
fn refuse(batch: &mut Vec<Submission>) {
    for sub in batch.drain(..) {
        answer(
            &sub.outbox,
            &ServerFrame::error(
                sub.req,
                ErrorCode::ShuttingDown,
                "the server is shutting down; the message was not sent",
            ),
        );
    }
}

/// Answers a message with an error frame (and wakes its session).
fn answer(outbox: &Outbox, frame: &ServerFrame) {
    if outbox.push_answer(&outbox.wire().encode(frame)) == Some(true) {
        outbox.wake();
    }
}

fn commit_and_deliver(w: &Writer, batch: &mut Vec<Submission>) {
    let (store, hub) = (w.store, w.hub);
    // Held to the end: nothing else delivers between this commit and its
    // deliveries (other nodes' messages keep their place in id order).
    let mut delivered = w.order.map(Order::lock);
    let ts = now_ms();
    let rows: Vec<NewMessage> = batch
        .iter()
        .map(|s| NewMessage {
            sender: s.sender.0,
            to: match &s.target {
                Target::Room { id, .. } => Destination::Room(*id),
                Target::User { id, .. } => Destination::User(*id),
            },
            body: s.body.clone(),
            ts,
            file_id: s.file.as_ref().map(|f| f.id),
            reply_to: s.reply.as_ref().map(|r| r.id),
            kind: s.kind,
            notice: s.notice,
        })
        .collect();
    let ids = match store.insert_messages(&rows) {
        Ok(ids) => ids,
        Err(err) => {
            log::error!("storing {} messages failed: {err}", batch.len());
            for sub in batch.drain(..) {
                answer(
                    &sub.outbox,
                    &ServerFrame::error(
                        sub.req,
                        ErrorCode::ServerError,
                        "the message could not be stored; it was not sent",
                    ),
                );
            }
            return;
        }
    };
    // Queue every delivery of the batch first, deliver after (no lock held).
    // Consecutive messages to one room go out as one run: one push per
    // recipient instead of one per message (a burst is one room's run).
    let mut wake = Vec::new();
    if let (Some(delivered), Some(&first), Some(&last)) =
        (delivered.as_deref_mut(), ids.first(), ids.last())
    {
        // What other nodes committed before this batch goes first.
        if let Err(err) = cluster::deliver_between(store, hub, delivered, first - 1, &mut wake) {
            log::warn!("reading other nodes' messages failed: {err}");
        }
        *delivered = (*delivered).max(last);
    }
    let mut run = Run::default();
    for (sub, id) in batch.drain(..).zip(ids) {
        let (room, to) = match &sub.target {
            Target::Room { name, .. } => (Some(name.clone()), None),
            Target::User { name, .. } => (None, Some(name.clone())),
        };
        let event = Outgoing::event(ServerMsg::Message(Box::new(ChatMessage {
            room,
            to,
            file: sub.file,
            reply_to: sub.reply,
            kind: sub.kind,
            notice: sub.notice,
            ..ChatMessage::new(id, sub.sender.1, sub.body, ts)
        })));
        // The ack has one recipient: encoded here, in its session's format.
        // A DM's ack says if the recipient is away (IRC's RPL_AWAY).
        let away = match &sub.target {
            Target::User { id: to, .. } => hub.away_message(*to),
            Target::Room { .. } => None,
        };
        let ack = sub.outbox.wire().encode_ack(
            sub.req,
            ServerMsg::Ack { id, ts, away },
            &event,
            sub.label.as_deref(),
        );
        match &sub.target {
            Target::Room { name, .. } => {
                if run.room.as_deref() != Some(name.as_str()) {
                    run.flush(hub, &mut wake);
                    run.room = Some(name.clone());
                }
                // A topic line goes to the setter's session too.
                let from = if sub.kind == MessageKind::Topic {
                    super::hub::NO_SESSION
                } else {
                    sub.session
                };
                run.events.push((from, event));
                run.acks.push((sub.outbox, ack));
            }
            Target::User { id: to, .. } => {
                run.flush(hub, &mut wake);
                // The sender's other sessions see their own DM too.
                hub.send_to_user_deferred(sub.sender.0, &event, Some(sub.session), &mut wake);
                if hub.send_to_user_deferred(*to, &event, None, &mut wake)
                    && let Err(err) = store.advance_dm_cursor(*to, id)
                {
                    // Not fatal: the DM is stored and will be offered again
                    // at the recipient's next login (a duplicate, not a loss).
                    log::warn!("advancing DM cursor failed: {err}");
                }
                if sub.outbox.push_answer(&ack) == Some(true) {
                    wake.push(sub.outbox);
                }
            }
        }
    }
    run.flush(hub, &mut wake);
    drop(delivered);
    // Write to the sleeping sessions' sockets from here; wake the others.
    w.deliverers.deliver(wake);
}

/// Consecutive room messages of a batch, fanned out together.
#[derive(Default)]
struct Run {
    room: Option<String>,
    /// Sending session and event of each message, in id order.
    events: Vec<(SessionId, Outgoing)>,
    /// Each sender's ack, queued after the run's deliveries.
    acks: Vec<(Arc<Outbox>, Vec<u8>)>,
}

impl Run {
    fn flush(&mut self, hub: &Hub, wake: &mut Vec<Arc<Outbox>>) {
        if let Some(room) = self.room.take() {
            hub.fan_out_room_run(&room, &self.events, wake);
        }
        self.events.clear();
        for (outbox, ack) in self.acks.drain(..) {
            if outbox.push_answer(&ack) == Some(true) {
                wake.push(outbox);
            }
        }
    }
}
