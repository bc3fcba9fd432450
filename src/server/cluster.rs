//! Delivery between nodes that share one database (PostgreSQL).
//!
//! Each node delivers every committed message, whichever node stored it,
//! in id order: [`Order`] holds the newest id this node has delivered. The
//! message writer holds it across its own commit and delivery (first
//! delivering, from the table, what other nodes committed below its
//! batch), and the watch thread ([`spawn_watch`]) delivers what other
//! nodes committed after it, when the database announces a commit
//! (LISTEN/NOTIFY: a hint) or at the latest every [`POLL`]. Ids are
//! gap-free and in commit order (`store::postgres`), so "everything after
//! my cursor up to the newest committed id" is exactly what is missing: a
//! lost listener connection delays delivery and loses nothing.
//!
//! Each login refreshes the hub's rooms and members from the database
//! (`Hub::sync_rooms`). Not yet cluster-wide: leaves, topics, presence and
//! kicks between logins, and edits, deletions and reactions, which reach
//! this node's sessions only when made here.

use super::hub::{Hub, NO_SESSION, SessionId};
use super::outbox::Outbox;
use super::wire::Outgoing;
use crate::protocol::ServerMsg;
use crate::store::{Destination, MessageWatch, SharedStore, Store, StoredMessage};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The longest a commit by another node waits for delivery here when its
/// announcement is lost.
pub const POLL: Duration = Duration::from_millis(500);

/// Messages read from the table per step.
const CHUNK: u32 = 1000;

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
) -> Result<(), crate::store::StoreError> {
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

/// Starts the thread that delivers other nodes' messages. It runs for the
/// life of the process.
pub fn spawn_watch(
    store: SharedStore,
    hub: Arc<Hub>,
    order: Arc<Order>,
    mut watch: Box<dyn MessageWatch>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("cluster-watch".into())
        .spawn(move || {
            let mut failing = false;
            loop {
                let newest = match watch.wait(POLL) {
                    Ok(newest) => {
                        if failing {
                            log::info!("message watch reconnected");
                            failing = false;
                        }
                        newest
                    }
                    Err(err) => {
                        if !failing {
                            log::warn!("message watch lost its connection: {err}");
                            failing = true;
                        }
                        std::thread::sleep(POLL);
                        continue;
                    }
                };
                let mut wake = Vec::new();
                {
                    let mut delivered = order.lock();
                    if newest <= *delivered {
                        continue;
                    }
                    if let Err(err) =
                        deliver_between(&*store, &hub, &mut delivered, newest, &mut wake)
                    {
                        log::warn!("reading other nodes' messages failed: {err}");
                    }
                }
                wake.iter().for_each(|o| o.deliver());
            }
        })?;
    Ok(())
}
