//! Mutes in force, in memory: a message to a room checks here instead of
//! asking the database (one query per message was a round trip on
//! PostgreSQL's path of every message).
//!
//! The database stays the truth: loaded from it at start, changed after it
//! by the `mute` and `unmute` handlers (the only writers of `room_mutes`),
//! and, with several nodes, by the changes other nodes share
//! (`cluster::Shared::Muted` and `Unmuted`). An expired mute is simply not
//! in force; its row stays until the next mute or unmute of that pair, as
//! in the database.

use crate::store::{RoomId, Store, StoreError, UserId, now_ms};
use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

/// Who is muted where, until when (`None`: until unmuted).
#[derive(Debug, Default)]
pub struct Mutes {
    map: RwLock<HashMap<(RoomId, UserId), Option<i64>>>,
}

impl Mutes {
    /// The mutes in force in `store` now.
    pub fn load(store: &dyn Store) -> Result<Mutes, StoreError> {
        let mutes = Mutes::default();
        for (room, user, until) in store.mutes_in_force()? {
            mutes.set(room, user, until);
        }
        Ok(mutes)
    }

    /// Whether `user` is muted in `room` now.
    pub fn is_muted(&self, room: RoomId, user: UserId) -> bool {
        let now = now_ms();
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(room, user))
            .is_some_and(|until| until.is_none_or(|t| t > now))
    }

    /// Records a mute (already stored) until `until` (ms since the epoch).
    pub fn set(&self, room: RoomId, user: UserId, until: Option<i64>) {
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((room, user), until);
    }

    /// Records an unmute (already stored).
    pub fn clear(&self, room: RoomId, user: UserId) {
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(room, user));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mute_holds_until_it_expires_or_is_lifted() {
        let m = Mutes::default();
        assert!(!m.is_muted(1, 2));
        m.set(1, 2, None);
        assert!(m.is_muted(1, 2));
        assert!(!m.is_muted(1, 3) && !m.is_muted(2, 2));
        m.clear(1, 2);
        assert!(!m.is_muted(1, 2));
        m.set(1, 2, Some(now_ms() - 1));
        assert!(!m.is_muted(1, 2), "expired");
        m.set(1, 2, Some(now_ms() + 60_000));
        assert!(m.is_muted(1, 2));
    }
}
