//! `search`: the caller's rooms and direct conversations, by words and
//! filters.
//!
//! The query is parsed by [`crate::search`] (pure); names in `from:` and
//! `in:` are resolved here, so an unknown user or a room the caller is not
//! in is an error rather than an empty result. The store only ever
//! searches rooms the caller is in and their own direct messages, whatever
//! the filters say.

use super::{Answer, Cx, Handled, Refusal, User, existing_user, member_room};
use crate::protocol::{ErrorCode, MAX_QUERY_LEN, SEARCH_PAGE, SEARCH_PAGE_MAX, ServerMsg};
use crate::search::{Query, Scope};
use crate::store::{SearchSpec, UserId};

/// Most `from:` filters in one query.
const MAX_FROM: usize = 10;

/// Runs a search; results newest first.
pub fn search(
    cx: &mut Cx,
    me: &User,
    query: &str,
    before: Option<i64>,
    limit: Option<u32>,
) -> Handled {
    if query.len() > MAX_QUERY_LEN {
        return Err(invalid(format!(
            "the query is {} bytes; the limit is {MAX_QUERY_LEN}",
            query.len()
        )));
    }
    let q = Query::parse(query).map_err(|e| invalid(e.to_string()))?;
    if q.from.len() > MAX_FROM {
        return Err(invalid(format!("at most {MAX_FROM} from: filters")));
    }
    let mut from = Vec::with_capacity(q.from.len());
    for name in &q.from {
        from.push(user_id(cx, me, name)?);
    }
    let (room, peer) = match &q.scope {
        None => (None, None),
        Some(Scope::Room(name)) => (Some(member_room(cx.svc, name, me.id)?.id), None),
        Some(Scope::User(name)) => (None, Some(user_id(cx, me, name)?)),
        Some(Scope::Either(name)) => match member_room(cx.svc, name, me.id) {
            Ok(room) => (Some(room.id), None),
            Err(not_room) => match user_id(cx, me, name) {
                Ok(peer) => (None, Some(peer)),
                Err(_) => return Err(not_room),
            },
        },
    };
    let spec = SearchSpec {
        viewer: me.id,
        terms: q.terms,
        room,
        peer,
        from,
        since_ms: q.since_ms,
        until_ms: q.until_ms,
        before_id: before,
        limit: limit.unwrap_or(SEARCH_PAGE).clamp(1, SEARCH_PAGE_MAX),
    };
    let (results, more) = cx.svc.store.search(&spec)?;
    Ok(Answer::Reply(ServerMsg::SearchResults { results, more }))
}

/// A user named in a filter (`me` is the caller).
fn user_id(cx: &Cx, me: &User, name: &str) -> Result<UserId, Refusal> {
    if name == "me" {
        return Ok(me.id);
    }
    Ok(existing_user(cx.svc, name)?.id)
}

fn invalid(message: String) -> Refusal {
    Refusal::new(ErrorCode::InvalidQuery, message)
}
