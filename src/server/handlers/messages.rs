//! Message requests: `say`, `dm`, `history`, `mark_read`.
//!
//! `say` and `dm` are checked here (membership, mutes, length, flood
//! control, the message they reply to) and handed to the message writer,
//! which stores them, delivers them and acks them: their answer is
//! [`Answer::Later`].

use super::editing::live_message;
use super::{
    Answer, Conversation, Cx, Handled, Refusal, User, conversation, existing_user, member_room,
};
use crate::protocol::{
    self, ErrorCode, HISTORY_PAGE_MAX, JOIN_REPLAY, REPLY_EXCERPT, ReplyRef, ServerMsg,
};
use crate::rate_limit::Verdict;
use crate::server::wire::Outgoing;
use crate::server::writer::{Submission, Target};
use crate::store::{Destination, Page};
use crate::validate;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// A message to a room the caller is in.
pub fn say(
    cx: &mut Cx,
    me: &User,
    room: &str,
    body: String,
    reply_to: Option<i64>,
    notice: bool,
) -> Handled {
    let room = member_room(cx.svc, room, me.id)?;
    if cx.svc.mutes.is_muted(room.id, me.id) {
        return Err(Refusal::new(
            ErrorCode::Muted,
            format!("you are muted in #{}", room.name),
        ));
    }
    validate::body_within(&body, cx.svc.limits.max_message_len)?;
    let reply = match reply_to {
        Some(id) => Some(replied(cx, me, id, |to, _| {
            to == Destination::Room(room.id)
        })?),
        None => None,
    };
    let target = Target::Room {
        id: room.id,
        name: room.name,
    };
    send(cx, me, target, body, reply, notice)
}

/// A direct message to another user (stored for them if they are offline).
pub fn dm(
    cx: &mut Cx,
    me: &User,
    to: &str,
    body: String,
    reply_to: Option<i64>,
    notice: bool,
) -> Handled {
    validate::body_within(&body, cx.svc.limits.max_message_len)?;
    let peer = existing_user(cx.svc, to)?;
    let reply = match reply_to {
        // The same conversation: between the caller and `peer`, either way.
        Some(id) => Some(replied(cx, me, id, |to, sender| {
            (to == Destination::User(peer.id) && sender == me.id)
                || (to == Destination::User(me.id) && sender == peer.id)
        })?),
        None => None,
    };
    let target = Target::User {
        id: peer.id,
        name: peer.name,
    };
    send(cx, me, target, body, reply, notice)
}

/// The end of `say` and `dm` once the message is allowed: flood control,
/// then the message goes to the writer.
fn send(
    cx: &mut Cx,
    me: &User,
    target: Target,
    body: String,
    reply: Option<ReplyRef>,
    notice: bool,
) -> Handled {
    flood_check(cx)?;
    submit_draft(
        cx,
        me,
        Draft {
            reply,
            notice,
            ..Draft::chat(target, body)
        },
    )
}

/// The message a new one replies to: visible to the caller, not deleted,
/// and in the same conversation (`same` is given its destination and
/// author).
fn replied(
    cx: &Cx,
    me: &User,
    id: i64,
    same: impl Fn(Destination, i64) -> bool,
) -> Result<ReplyRef, Refusal> {
    let rec = live_message(cx, me, id)?;
    if !same(rec.to, rec.sender) {
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            format!("message {id} is in another conversation; reply to it there"),
        ));
    }
    Ok(ReplyRef {
        id,
        from: rec.sender_name,
        excerpt: rec.body.chars().take(REPLY_EXCERPT).collect(),
        deleted: false,
    })
}

/// Which page `history` asks for.
#[derive(Debug, Clone, Copy)]
pub enum Window {
    /// The newest messages below an id (or the newest of all).
    Before(Option<i64>),
    /// The messages around an id: it and older ones, then newer ones.
    Around(i64),
    /// The oldest messages after an id (IRC's `CHATHISTORY AFTER`).
    After(i64),
}

/// A page of a room's or a direct conversation's history, oldest first.
pub fn history(
    cx: &mut Cx,
    me: &User,
    room: Option<String>,
    with: Option<String>,
    window: Window,
    limit: Option<u32>,
) -> Handled {
    let limit = limit.unwrap_or(JOIN_REPLAY).clamp(1, HISTORY_PAGE_MAX);
    let store = &cx.svc.store;
    let conv = conversation(cx.svc, me, room, with, "history", "with")?;
    let page = |page: Page, n: u32| match &conv {
        Conversation::Room(room) => store.room_history(room.id, page, n, me.id),
        Conversation::Direct(peer) => store.dm_history(me.id, peer.id, page, n),
    };
    let (messages, more, newer) = match window {
        Window::Before(before) => {
            let (messages, more) = page(Page::Before(before), limit)?;
            (messages, more, false)
        }
        Window::Around(id) => {
            // The message itself and older ones fill the larger half.
            let newer_n = limit / 2;
            let (mut messages, more) =
                page(Page::Before(Some(id.saturating_add(1))), limit - newer_n)?;
            // (With `newer_n` 0 this still says whether newer ones exist.)
            let (after, newer) = page(Page::After(id), newer_n)?;
            messages.extend(after);
            (messages, more, newer)
        }
        Window::After(id) => {
            let (messages, newer) = page(Page::After(id), limit)?;
            (messages, true, newer)
        }
    };
    let (room, with) = match conv {
        Conversation::Room(room) => (Some(room.name), None),
        Conversation::Direct(peer) => (None, Some(peer.name)),
    };
    Ok(Answer::Reply(ServerMsg::History {
        room,
        with,
        messages,
        more,
        newer,
    }))
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
    let ts = cx.svc.store.message(id)?.map(|m| m.created_at);
    let event = Outgoing::event(ServerMsg::Read { room, with, id, ts });
    cx.svc.hub.send_to_user(me.id, &event, Some(cx.session));
    Ok(Answer::Reply(ServerMsg::Ok))
}

/// A message for the writer, besides who sends it: where it goes, its
/// text, the file it announces, the message it answers, what it is.
pub(super) struct Draft {
    pub target: Target,
    pub body: String,
    pub file: Option<protocol::FileInfo>,
    pub reply: Option<ReplyRef>,
    /// Chat, or a topic change.
    pub kind: protocol::MessageKind,
    /// A notice (IRC's NOTICE).
    pub notice: bool,
}

impl Draft {
    /// A chat message: no file, no reply, not a notice.
    pub fn chat(target: Target, body: String) -> Draft {
        Draft {
            target,
            body,
            file: None,
            reply: None,
            kind: protocol::MessageKind::Chat,
            notice: false,
        }
    }
}

/// Hands a message (possibly announcing a stored file) to the writer,
/// which stores it, delivers it, and acks the request.
pub(super) fn submit(
    cx: &mut Cx,
    me: &User,
    target: Target,
    body: String,
    file: Option<protocol::FileInfo>,
    reply: Option<ReplyRef>,
) -> Handled {
    submit_draft(
        cx,
        me,
        Draft {
            file,
            reply,
            ..Draft::chat(target, body)
        },
    )
}

/// [`submit`] for a message of any kind (a topic change is one), or a
/// notice.
pub(super) fn submit_draft(cx: &mut Cx, me: &User, draft: Draft) -> Handled {
    let Draft {
        target,
        body,
        file,
        reply,
        kind,
        notice,
    } = draft;
    let sub = Submission {
        req: cx.req,
        session: cx.session,
        outbox: cx.outbox.clone(),
        sender: (me.id, me.name.clone()),
        target,
        body,
        file,
        reply,
        kind,
        notice,
        label: cx.label.clone(),
    };
    let outbox = cx.outbox.clone();
    outbox.expect_answer();
    cx.svc.writer.submit(sub).map_err(|_| {
        // Nothing will answer it.
        outbox.push_answer(&[]);
        Refusal::new(ErrorCode::ServerError, "the message store is not running")
    })?;
    Ok(Answer::Later)
}

/// Applies flood control to one message. Refuses it with `slow_down`, or
/// with `flooding` (which ends the session) if the client keeps on.
pub(super) fn flood_check(cx: &mut Cx) -> Result<(), Refusal> {
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
