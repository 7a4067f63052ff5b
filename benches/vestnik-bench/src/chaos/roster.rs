//! Presence after the faults: ghosts and missing members on every node, and whether the webhooks
//! a receiver got let it rebuild the same picture.
//!
//! Pure: the run gathers who is really connected, what each node's `users` endpoint answers and
//! what the webhook receiver recorded; this module compares them.
//!
//! What "lost" means for webhooks: a receiver that applies `member_added` / `member_removed` (and
//! `channel_occupied` / `channel_vacated`) in id order (ids are UUIDv7, so id order is creation
//! order) must end with the cluster's real state once the faults have settled. A user really in
//! the channel whose last webhook is not `member_added` (none, or a `member_removed`), or a user
//! gone whose last webhook is `member_added`, is a lost webhook; so is a channel really occupied
//! whose last occupancy webhook is not `channel_occupied`. Intermediate transitions are not owed:
//! a rejoin within `hold_ms` suppresses both the held removal and the new addition by design.
//! A duplicate is an id received twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One node's view of a presence channel against the truth.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct NodeRoster {
    /// Node index.
    pub node: usize,
    /// Members the node lists that are not connected anywhere.
    pub ghosts: Vec<String>,
    /// Members connected somewhere that the node does not list.
    pub missing: Vec<String>,
    /// The node did not answer the query.
    pub unanswered: bool,
}

/// Compares each node's answer (`None`: no answer) with the users really connected.
pub fn compare(truth: &BTreeSet<String>, answers: &[Option<BTreeSet<String>>]) -> Vec<NodeRoster> {
    answers
        .iter()
        .enumerate()
        .map(|(node, answer)| match answer {
            None => NodeRoster {
                node,
                unanswered: true,
                ..NodeRoster::default()
            },
            Some(listed) => NodeRoster {
                node,
                ghosts: listed.difference(truth).cloned().collect(),
                missing: truth.difference(listed).cloned().collect(),
                unanswered: false,
            },
        })
        .collect()
}

/// One webhook event as the receiver recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// The event's id.
    pub id: String,
    /// `member_added`, `channel_occupied`, …
    pub name: String,
    /// Its channel.
    pub channel: String,
    /// Its user, for member events.
    pub user_id: Option<String>,
}

/// The webhook figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct HookCheck {
    /// Events received (distinct ids).
    pub received: u64,
    /// Ids received more than once (extra copies).
    pub duplicates: u64,
    /// `channel/user` whose last member webhook disagrees with the real roster.
    pub lost_members: Vec<String>,
    /// Channels really occupied whose last occupancy webhook is not `channel_occupied`.
    pub lost_occupancy: Vec<String>,
}

/// Checks `hooks` (in receipt order, duplicates included) against the real final state: the members
/// of each presence channel, and the channels occupied.
pub fn check_hooks(
    hooks: &[Hook],
    members: &BTreeMap<String, BTreeSet<String>>,
    occupied: &BTreeSet<String>,
) -> HookCheck {
    let mut by_id: BTreeMap<&str, &Hook> = BTreeMap::new();
    let mut duplicates = 0;
    for h in hooks {
        if by_id.insert(h.id.as_str(), h).is_some() {
            duplicates += 1;
        }
    }
    // Last word per member and per channel, in id (creation) order.
    let mut member_last: HashMap<(&str, &str), bool> = HashMap::new();
    let mut occupancy_last: HashMap<&str, bool> = HashMap::new();
    for h in by_id.values() {
        match (h.name.as_str(), h.user_id.as_deref()) {
            ("member_added", Some(u)) => {
                member_last.insert((h.channel.as_str(), u), true);
            }
            ("member_removed", Some(u)) => {
                member_last.insert((h.channel.as_str(), u), false);
            }
            ("channel_occupied", _) => {
                occupancy_last.insert(h.channel.as_str(), true);
            }
            ("channel_vacated", _) => {
                occupancy_last.insert(h.channel.as_str(), false);
            }
            _ => {}
        }
    }
    let mut lost_members = Vec::new();
    for (channel, users) in members {
        for u in users {
            if member_last.get(&(channel.as_str(), u.as_str())) != Some(&true) {
                lost_members.push(format!("{channel}/{u}"));
            }
        }
    }
    for ((channel, u), present) in &member_last {
        let really = members.get(*channel).is_some_and(|m| m.contains(*u));
        if *present && !really {
            lost_members.push(format!("{channel}/{u}"));
        }
    }
    lost_members.sort();
    let lost_occupancy = occupied
        .iter()
        .filter(|c| occupancy_last.get(c.as_str()) != Some(&true))
        .cloned()
        .collect();
    HookCheck {
        received: by_id.len() as u64,
        duplicates,
        lost_members,
        lost_occupancy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn hook(id: &str, name: &str, user: Option<&str>) -> Hook {
        Hook {
            id: id.into(),
            name: name.into(),
            channel: "presence-x".into(),
            user_id: user.map(Into::into),
        }
    }

    #[test]
    fn ghosts_and_missing_per_node() {
        let truth = set(&["a", "b"]);
        let r = compare(
            &truth,
            &[Some(set(&["a", "b"])), Some(set(&["a", "z"])), None],
        );
        assert_eq!(
            r[0],
            NodeRoster {
                node: 0,
                ..NodeRoster::default()
            }
        );
        assert_eq!(r[1].ghosts, vec!["z".to_owned()]);
        assert_eq!(r[1].missing, vec!["b".to_owned()]);
        assert!(r[2].unanswered);
    }

    #[test]
    fn the_last_member_webhook_by_id_must_match_the_roster() {
        let hooks = vec![
            hook("01", "channel_occupied", None),
            hook("02", "member_added", Some("a")),
            hook("03", "member_added", Some("b")),
            // Received out of order: b's removal (04) and re-addition (05).
            hook("05", "member_added", Some("b")),
            hook("04", "member_removed", Some("b")),
            hook("06", "member_added", Some("c")), // c left, its removal never came
            hook("02", "member_added", Some("a")), // a retry
        ];
        let members = BTreeMap::from([("presence-x".to_owned(), set(&["a", "b", "d"]))]);
        let c = check_hooks(&hooks, &members, &set(&["presence-x"]));
        assert_eq!(c.received, 6);
        assert_eq!(c.duplicates, 1);
        assert_eq!(
            c.lost_members,
            vec!["presence-x/c".to_owned(), "presence-x/d".to_owned()]
        );
        assert!(c.lost_occupancy.is_empty());
    }

    #[test]
    fn an_occupied_channel_whose_last_word_is_vacated_lost_a_webhook() {
        let hooks = vec![
            hook("01", "channel_occupied", None),
            hook("02", "channel_vacated", None),
        ];
        let c = check_hooks(&hooks, &BTreeMap::new(), &set(&["presence-x", "other"]));
        assert_eq!(
            c.lost_occupancy,
            vec!["other".to_owned(), "presence-x".to_owned()]
        );
    }
}
