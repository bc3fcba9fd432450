//! Fixing messages after the fact: `edit`, `delete`, `react`, `unreact`.
//!
//! Each checks that the caller can see the message (a member of its room,
//! or one of the two people of its direct conversation), changes it in the
//! store, and tells every session of everyone who can see it, the caller's
//! sessions included, with one event (`message_edited`, `message_deleted`,
//! `reaction`); the request's own reply is `ok`. History, search and the
//! login summary read the stored state, so a session that was offline sees
//! the same result.

use super::{Answer, Cx, Handled, Refusal, User, messages::flood_check};
use crate::protocol::{ErrorCode, MAX_REACTION_LEN, MAX_REACTIONS, ServerMsg};
use crate::server::wire::Outgoing;
use crate::store::{Destination, MessageRecord, Reacted, now_ms};
use crate::validate;

/// Replaces the text of the caller's own message, within the edit window.
/// Administrators may delete others' messages, never edit them.
pub fn edit(cx: &mut Cx, me: &User, id: i64, body: String) -> Handled {
    let rec = live_message(cx, me, id)?;
    if rec.kind != crate::protocol::MessageKind::Chat {
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            "a topic change cannot be edited: set the topic again",
        ));
    }
    if rec.sender != me.id {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "only its author may edit a message",
        ));
    }
    let window = cx.svc.limits.edit_window;
    let now = now_ms();
    if now - rec.created_at > window.as_millis() as i64 {
        return Err(Refusal::new(
            ErrorCode::TooLate,
            format!(
                "messages can be edited for {} minutes after sending; this one is older",
                window.as_secs() / 60
            ),
        ));
    }
    writable(cx, me, &rec)?;
    validate::body_within(&body, cx.svc.limits.max_message_len)?;
    flood_check(cx)?;
    if body == rec.body {
        return Ok(Answer::Reply(ServerMsg::Ok));
    }
    cx.svc
        .store
        .edit_message(id, &body, now, cx.svc.limits.keep_edit_history)?;
    let (room, to) = names(&rec);
    tell(
        cx,
        &rec,
        ServerMsg::MessageEdited {
            id,
            room,
            to,
            from: rec.sender_name.clone(),
            body,
            edited_at: now,
        },
    );
    Ok(Answer::Reply(ServerMsg::Ok))
}

/// Deletes a message for everyone: the author's own, or (with an audit
/// record of who and why) any room message for an administrator.
pub fn delete(cx: &mut Cx, me: &User, id: i64, reason: &str) -> Handled {
    let rec = match visible_message(cx, me, id) {
        Ok(rec) => rec,
        // An administrator moderates rooms they are not in.
        Err(refusal) => match cx.svc.store.message(id)? {
            Some(rec)
                if matches!(rec.to, Destination::Room(_)) && cx.svc.store.is_admin(me.id)? =>
            {
                rec
            }
            _ => return Err(refusal),
        },
    };
    if rec.deleted {
        return Ok(Answer::Reply(ServerMsg::Ok));
    }
    let moderating = rec.sender != me.id;
    if moderating && !cx.svc.store.is_admin(me.id)? {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "only its author or an administrator may delete a message",
        ));
    }
    if let Some(sha) = cx.svc.store.delete_message(id, now_ms())? {
        cx.svc.forget_content(&sha);
    }
    if moderating {
        let place = match rec.to {
            Destination::Room(_) => format!("#{}", rec.to_name),
            Destination::User(_) => format!("a DM to {}", rec.to_name),
        };
        cx.audit(
            Some(&me.name),
            "message_delete",
            &format!(
                "message {id} by {} in {place}: {}",
                rec.sender_name,
                crate::text::for_terminal(reason)
            ),
        );
    }
    let (room, to) = names(&rec);
    tell(
        cx,
        &rec,
        ServerMsg::MessageDeleted {
            id,
            room,
            to,
            from: rec.sender_name.clone(),
            by: me.name.clone(),
        },
    );
    Ok(Answer::Reply(ServerMsg::Ok))
}

/// Adds the caller's reaction to a message.
pub fn react(cx: &mut Cx, me: &User, id: i64, emoji: &str) -> Handled {
    let emoji = reaction(emoji)?;
    let rec = live_message(cx, me, id)?;
    writable(cx, me, &rec)?;
    flood_check(cx)?;
    match cx.svc.store.react(id, me.id, &emoji, MAX_REACTIONS)? {
        Reacted::Added(count) => tell_reaction(cx, me, &rec, emoji, true, count),
        Reacted::Already(_) => {}
        Reacted::Full => {
            return Err(Refusal::new(
                ErrorCode::TooManyReactions,
                format!("a message can carry {MAX_REACTIONS} different reactions"),
            ));
        }
    }
    Ok(Answer::Reply(ServerMsg::Ok))
}

/// Takes the caller's reaction back.
pub fn unreact(cx: &mut Cx, me: &User, id: i64, emoji: &str) -> Handled {
    let emoji = reaction(emoji)?;
    let rec = live_message(cx, me, id)?;
    flood_check(cx)?;
    if let Some(count) = cx.svc.store.unreact(id, me.id, &emoji)? {
        tell_reaction(cx, me, &rec, emoji, false, count);
    }
    Ok(Answer::Reply(ServerMsg::Ok))
}

/// A message the caller can see: in a room they are in, or a direct
/// message to or from them. Any other id, existing or not, is "no such
/// message" (ids of others' conversations are not confirmed).
pub(super) fn visible_message(cx: &Cx, me: &User, id: i64) -> Result<MessageRecord, Refusal> {
    let missing = || Refusal::new(ErrorCode::NoSuchMessage, format!("no message {id}"));
    let rec = cx.svc.store.message(id)?.ok_or_else(missing)?;
    let visible = match rec.to {
        Destination::Room(_) => cx.svc.hub.is_member(&rec.to_name, me.id),
        Destination::User(to) => to == me.id || rec.sender == me.id,
    };
    if visible { Ok(rec) } else { Err(missing()) }
}

/// A visible message that was not deleted.
pub(super) fn live_message(cx: &Cx, me: &User, id: i64) -> Result<MessageRecord, Refusal> {
    let rec = visible_message(cx, me, id)?;
    if rec.deleted {
        return Err(Refusal::new(
            ErrorCode::NoSuchMessage,
            format!("message {id} was deleted"),
        ));
    }
    Ok(rec)
}

/// Refuses a change to a room message from a user muted in that room.
fn writable(cx: &Cx, me: &User, rec: &MessageRecord) -> Result<(), Refusal> {
    if let Destination::Room(room) = rec.to
        && cx.svc.mutes.is_muted(room, me.id)
    {
        return Err(Refusal::new(
            ErrorCode::Muted,
            format!("you are muted in #{}", rec.to_name),
        ));
    }
    Ok(())
}

/// A reaction as given, checked: 1 to [`MAX_REACTION_LEN`] bytes, no
/// spaces, control or invisible formatting characters.
fn reaction(raw: &str) -> Result<String, Refusal> {
    if raw.is_empty()
        || raw.len() > MAX_REACTION_LEN
        || raw
            .chars()
            .any(|c| c.is_whitespace() || crate::text::is_unsafe_in_line(c))
    {
        return Err(Refusal::new(
            ErrorCode::InvalidReaction,
            format!(
                "a reaction is an emoji or a word of at most {MAX_REACTION_LEN} bytes, without spaces"
            ),
        ));
    }
    Ok(raw.to_owned())
}

/// The `room` and `to` fields of an event about `rec`.
fn names(rec: &MessageRecord) -> (Option<String>, Option<String>) {
    match rec.to {
        Destination::Room(_) => (Some(rec.to_name.clone()), None),
        Destination::User(_) => (None, Some(rec.to_name.clone())),
    }
}

fn tell_reaction(cx: &Cx, me: &User, rec: &MessageRecord, emoji: String, added: bool, count: u32) {
    let (room, to) = names(rec);
    tell(
        cx,
        rec,
        ServerMsg::Reaction {
            id: rec.id,
            room,
            to,
            from: rec.sender_name.clone(),
            emoji,
            user: me.name.clone(),
            added,
            count,
        },
    );
}

/// Sends an event about `rec` to every session of everyone who can see
/// it: the room's members, or both people of a direct conversation.
fn tell(cx: &Cx, rec: &MessageRecord, msg: ServerMsg) {
    let event = Outgoing::event(msg);
    match rec.to {
        Destination::Room(_) => cx.svc.hub.send_to_room(&rec.to_name, &event),
        Destination::User(to) => {
            cx.svc.hub.send_to_user(rec.sender, &event, None);
            if to != rec.sender {
                cx.svc.hub.send_to_user(to, &event, None);
            }
        }
    }
}
