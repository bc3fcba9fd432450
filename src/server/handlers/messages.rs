//! Message requests: `say`, `dm`, `history`, `mark_read`.
//!
//! `say` and `dm` are checked here (membership, mutes, length, flood
//! control) and handed to the message writer, which stores them, delivers
//! them and acks them: their answer is [`Answer::Later`].

use super::{
    Answer, Conversation, Cx, Handled, Refusal, User, conversation, existing_user, member_room,
};
use crate::protocol::{self, ErrorCode, HISTORY_PAGE_MAX, JOIN_REPLAY, ServerMsg};
use crate::rate_limit::Verdict;
use crate::server::wire::Outgoing;
use crate::server::writer::{Submission, Target};
use crate::validate;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// A message to a room the caller is in.
pub fn say(cx: &mut Cx, me: &User, room: &str, body: String) -> Handled {
    let room = member_room(cx.svc, room, me.id)?;
    if cx.svc.store.is_muted(room.id, me.id)? {
        return Err(Refusal::new(
            ErrorCode::Muted,
            format!("you are muted in #{}", room.name),
        ));
    }
    validate::body_within(&body, cx.svc.limits.max_message_len)?;
    flood_check(cx)?;
    let target = Target::Room {
        id: room.id,
        name: room.name,
    };
    submit(cx, me, target, body, None)
}

/// A direct message to another user (stored for them if they are offline).
pub fn dm(cx: &mut Cx, me: &User, to: &str, body: String) -> Handled {
    validate::body_within(&body, cx.svc.limits.max_message_len)?;
    let peer = existing_user(cx.svc, to)?;
    flood_check(cx)?;
    let target = Target::User {
        id: peer.id,
        name: peer.name,
    };
    submit(cx, me, target, body, None)
}

/// A page of a room's or a direct conversation's history, oldest first.
pub fn history(
    cx: &mut Cx,
    me: &User,
    room: Option<String>,
    with: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
) -> Handled {
    let limit = limit.unwrap_or(JOIN_REPLAY).clamp(1, HISTORY_PAGE_MAX);
    let store = &cx.svc.store;
    let reply = match conversation(cx.svc, me, room, with, "history", "with")? {
        Conversation::Room(room) => {
            let (messages, more) = store.room_history(room.id, before, limit)?;
            ServerMsg::History {
                room: Some(room.name),
                with: None,
                messages,
                more,
            }
        }
        Conversation::Direct(peer) => {
            let (messages, more) = store.dm_history(me.id, peer.id, before, limit)?;
            ServerMsg::History {
                room: None,
                with: Some(peer.name),
                messages,
                more,
            }
        }
    };
    Ok(Answer::Reply(reply))
}

/// Records how far the user has read a conversation; their other sessions
/// are told (`read`), so every device clears its counts.
pub fn mark_read(
    cx: &mut Cx,
    me: &User,
    room: Option<String>,
    with: Option<String>,
    id: i64,
) -> Handled {
    let (room, with) = match conversation(cx.svc, me, room, with, "mark_read", "with")? {
        Conversation::Room(room) => {
            cx.svc.store.mark_room_read(me.id, room.id, id)?;
            (Some(room.name), None)
        }
        Conversation::Direct(peer) => {
            cx.svc.store.mark_dm_read(me.id, peer.id, id)?;
            (None, Some(peer.name))
        }
    };
    let event = Outgoing::event(ServerMsg::Read { room, with, id });
    cx.svc.hub.send_to_user(me.id, &event, Some(cx.session));
    Ok(Answer::Reply(ServerMsg::Ok))
}

/// Hands a message (possibly announcing a stored file) to the writer,
/// which stores it, delivers it, and acks the request.
pub(super) fn submit(
    cx: &mut Cx,
    me: &User,
    target: Target,
    body: String,
    file: Option<protocol::FileInfo>,
) -> Handled {
    let sub = Submission {
        req: cx.req,
        session: cx.session,
        outbox: cx.outbox.clone(),
        sender: (me.id, me.name.clone()),
        target,
        body,
        file,
    };
    cx.svc
        .writer
        .submit(sub)
        .map_err(|_| Refusal::new(ErrorCode::ServerError, "the message store is not running"))?;
    Ok(Answer::Later)
}

/// Applies flood control to one message. Refuses it with `slow_down`, or
/// with `flooding` (which ends the session) if the client keeps on.
fn flood_check(cx: &mut Cx) -> Result<(), Refusal> {
    match cx.state.flood.check(Instant::now()) {
        Verdict::Allow => Ok(()),
        verdict => {
            cx.svc.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
            if verdict == Verdict::Disconnect {
                log::info!("session {}: disconnected for flooding", cx.session);
                return Err(Refusal::new(
                    ErrorCode::Flooding,
                    "too many messages after slow_down; disconnected",
                ));
            }
            Err(Refusal::new(
                ErrorCode::SlowDown,
                "slow down: too many messages; this one was not sent",
            ))
        }
    }
}
