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

use super::hub::{Hub, Outbox, SessionId};
use crate::protocol::{ChatMessage, ErrorCode, ServerFrame, ServerMsg, encode_json};
use crate::store::{Destination, NewMessage, RoomId, Store, UserId, now_ms};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

/// Most messages committed in one transaction.
pub const MAX_BATCH: usize = 1024;
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
}

/// The sending side, held by session threads.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    tx: SyncSender<Submission>,
}

impl WriterHandle {
    /// Queues a message; blocks only while the writer is [`QUEUE_LEN`]
    /// messages behind (back-pressure). Returns the submission if the
    /// writer has stopped.
    pub fn submit(&self, sub: Submission) -> Result<(), Box<Submission>> {
        match self.tx.try_send(sub) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(sub)) => self.tx.send(sub).map_err(|e| Box::new(e.0)),
            Err(TrySendError::Disconnected(sub)) => Err(Box::new(sub)),
        }
    }
}

/// Starts the writer thread. It stops when every [`WriterHandle`] is gone,
/// after storing and delivering what was queued.
pub fn spawn(store: Store, hub: Arc<Hub>) -> std::io::Result<(WriterHandle, JoinHandle<()>)> {
    let (tx, rx) = sync_channel(QUEUE_LEN);
    let handle = std::thread::Builder::new()
        .name("message-writer".into())
        .spawn(move || run(&store, &hub, &rx))?;
    Ok((WriterHandle { tx }, handle))
}

fn run(store: &Store, hub: &Hub, rx: &Receiver<Submission>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(sub) => batch.push(sub),
                Err(_) => break,
            }
        }
        commit_and_deliver(store, hub, &mut batch);
    }
    log::debug!("message writer stopped");
}

fn commit_and_deliver(store: &Store, hub: &Hub, batch: &mut Vec<Submission>) {
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
        })
        .collect();
    let ids = match store.insert_messages(&rows) {
        Ok(ids) => ids,
        Err(err) => {
            log::error!("storing {} messages failed: {err}", batch.len());
            for sub in batch.drain(..) {
                sub.outbox.push(&encode_json(&ServerFrame::error(
                    sub.req,
                    ErrorCode::ServerError,
                    "the message could not be stored; it was not sent",
                )));
            }
            return;
        }
    };
    for (sub, id) in batch.drain(..).zip(ids) {
        let (room, to) = match &sub.target {
            Target::Room { name, .. } => (Some(name.clone()), None),
            Target::User { name, .. } => (None, Some(name.clone())),
        };
        let event = encode_json(&ServerFrame::event(ServerMsg::Message(ChatMessage {
            id,
            room,
            to,
            from: sub.sender.1,
            body: sub.body,
            ts,
        })));
        match &sub.target {
            Target::Room { name, .. } => hub.fan_out_room(name, &event, Some(sub.session)),
            Target::User { id: to, .. } => {
                // The sender's other sessions see their own DM too.
                hub.send_to_user(sub.sender.0, &event, Some(sub.session));
                if hub.send_to_user(*to, &event, None)
                    && let Err(err) = store.advance_dm_cursor(*to, id)
                {
                    // Not fatal: the DM is stored and will be offered again
                    // at the recipient's next login (a duplicate, not a loss).
                    log::warn!("advancing DM cursor failed: {err}");
                }
            }
        }
        sub.outbox.push(&encode_json(&ServerFrame::reply(
            sub.req,
            ServerMsg::Ack { id, ts },
        )));
    }
}
