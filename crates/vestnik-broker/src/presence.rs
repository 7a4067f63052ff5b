//! Presence rosters: members by user id, each with a count of the sockets that joined as that user.
//!
//! `member_added` must go out only for a user's first socket and `member_removed` only after the last,
//! so joins and leaves report [`Join`] and [`Leave`] instead of the caller counting. This module must
//! never send anything itself.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::value::RawValue;
use vestnik_protocol::message::MemberView;

/// One member of a presence channel.
#[derive(Debug, Clone)]
pub struct Member {
    /// The user's info from the first socket that joined as this user.
    pub info: Option<Box<RawValue>>,
    /// Sockets currently joined as this user.
    pub sockets: u32,
}

/// What a join did to the roster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// The user is new: announce `member_added`.
    Added,
    /// Another socket of a present user: announce nothing.
    AlreadyPresent,
}

/// What a leave did to the roster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    /// The user's last socket left: announce `member_removed`.
    Removed,
    /// The user still has sockets here: announce nothing.
    StillPresent,
    /// The user was not a member.
    NotMember,
}

/// The roster of one presence channel.
#[derive(Debug, Default, Clone)]
pub struct Members {
    users: HashMap<Arc<str>, Member>,
}

impl Members {
    /// Number of distinct users.
    pub fn count(&self) -> usize {
        self.users.len()
    }

    /// Whether `user_id` is a member.
    pub fn contains(&self, user_id: &str) -> bool {
        self.users.contains_key(user_id)
    }

    /// Adds one socket of `user_id`.
    pub fn join(&mut self, user_id: Arc<str>, info: Option<Box<RawValue>>) -> Join {
        match self.users.get_mut(&user_id) {
            Some(m) => {
                m.sockets += 1;
                Join::AlreadyPresent
            }
            None => {
                self.users.insert(user_id, Member { info, sockets: 1 });
                Join::Added
            }
        }
    }

    /// Removes one socket of `user_id`.
    pub fn leave(&mut self, user_id: &str) -> Leave {
        let Some(m) = self.users.get_mut(user_id) else {
            return Leave::NotMember;
        };
        m.sockets = m.sockets.saturating_sub(1);
        if m.sockets == 0 {
            self.users.remove(user_id);
            Leave::Removed
        } else {
            Leave::StillPresent
        }
    }

    /// The member record of `user_id`.
    pub fn get(&self, user_id: &str) -> Option<&Member> {
        self.users.get(user_id)
    }

    /// Every member, for `subscription_succeeded`.
    pub fn views(&self) -> Vec<MemberView<'_>> {
        self.users
            .iter()
            .map(|(id, m)| MemberView {
                user_id: id,
                user_info: m.info.as_deref(),
            })
            .collect()
    }

    /// Every user id, for the users API.
    pub fn user_ids(&self) -> Vec<String> {
        self.users.keys().map(|k| k.to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_last_socket_rule() {
        let mut m = Members::default();
        assert_eq!(m.join("1".into(), None), Join::Added);
        assert_eq!(m.join("1".into(), None), Join::AlreadyPresent);
        assert_eq!(m.join("2".into(), None), Join::Added);
        assert_eq!(m.count(), 2);
        assert_eq!(m.leave("1"), Leave::StillPresent);
        assert_eq!(m.leave("1"), Leave::Removed);
        assert_eq!(m.leave("1"), Leave::NotMember);
        assert_eq!(m.count(), 1);
        assert_eq!(m.user_ids(), vec!["2".to_string()]);
    }
}
