//! Share fetch sessions (KIP-932): which partitions a share group member fetches from this
//! broker, and the epoch its next ShareFetch or ShareAcknowledge must carry.
//!
//! Epoch 0 opens a session with the partitions the request names; each later request
//! carries the next epoch and names only partitions it adds (or acknowledges) and those it
//! forgets; epoch -1 closes the session. A wrong epoch ends the session.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::errors as ec;

/// Sessions kept at once (Kafka's `group.share.max.share.sessions`).
pub const SHARE_SESSIONS_MAX: usize = 2_000;
/// Partitions one session may hold.
pub const SESSION_PARTITIONS_MAX: usize = 10_000;
/// A session unused this long may be dropped to make room.
const IDLE: Duration = Duration::from_secs(60);

/// A partition by topic id.
pub type Tp = (u128, i32);

#[derive(Debug)]
struct Session {
    /// The connection that last used it.
    connection: u64,
    next_epoch: i32,
    partitions: Vec<Tp>,
    last_used: Instant,
}

/// What a request may do with its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Go on with `partitions` (the session's, after adds and forgets); the member's
    /// records on `released` (an older session's partitions) must be released first.
    Continue {
        /// The session's partitions.
        partitions: Vec<Tp>,
        /// Partitions of a session this request replaced.
        released: Vec<Tp>,
    },
    /// The session closed (epoch -1); these were its partitions.
    Closed(Vec<Tp>),
    /// Refused with this Kafka error code; the member's records on these partitions (of a
    /// session that ended) must be released.
    Refused(i16, Vec<Tp>),
}

/// Every share session of the broker, keyed by (group, member).
#[derive(Debug, Default)]
pub struct ShareSessions {
    sessions: Mutex<HashMap<(String, String), Session>>,
}

impl ShareSessions {
    /// Applies a request's epoch, adds and forgets to the member's session.
    /// `opens` is true for ShareFetch (epoch 0 opens a session) and false for
    /// ShareAcknowledge (epoch 0 is refused).
    pub fn step(
        &self,
        key: (&str, &str),
        epoch: i32,
        opens: bool,
        added: &[Tp],
        forgotten: &[Tp],
        connection: u64,
    ) -> Step {
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let id = (key.0.to_string(), key.1.to_string());
        match epoch {
            0 if !opens => Step::Refused(ec::INVALID_SHARE_SESSION_EPOCH, Vec::new()),
            0 => {
                let old = sessions.remove(&id).map(|s| s.partitions).unwrap_or_default();
                if sessions.len() >= SHARE_SESSIONS_MAX {
                    sessions.retain(|_, s| now.saturating_duration_since(s.last_used) < IDLE);
                }
                if sessions.len() >= SHARE_SESSIONS_MAX {
                    return Step::Refused(ec::SHARE_SESSION_LIMIT_REACHED, old);
                }
                let mut partitions = Vec::new();
                add(&mut partitions, added);
                sessions.insert(
                    id,
                    Session {
                        connection,
                        next_epoch: 1,
                        partitions: partitions.clone(),
                        last_used: now,
                    },
                );
                // A new session starts clean: what the old one held goes back.
                Step::Continue {
                    partitions,
                    released: old,
                }
            }
            -1 => match sessions.remove(&id) {
                Some(s) => Step::Closed(s.partitions),
                None => Step::Refused(ec::SHARE_SESSION_NOT_FOUND, Vec::new()),
            },
            e => {
                let Some(s) = sessions.get_mut(&id) else {
                    return Step::Refused(ec::SHARE_SESSION_NOT_FOUND, Vec::new());
                };
                if s.next_epoch != e {
                    let partitions = sessions.remove(&id).map(|s| s.partitions).unwrap_or_default();
                    return Step::Refused(ec::INVALID_SHARE_SESSION_EPOCH, partitions);
                }
                s.next_epoch = if s.next_epoch == i32::MAX {
                    1
                } else {
                    s.next_epoch + 1
                };
                s.last_used = now;
                s.connection = connection;
                s.partitions.retain(|tp| !forgotten.contains(tp));
                add(&mut s.partitions, added);
                Step::Continue {
                    partitions: s.partitions.clone(),
                    released: Vec::new(),
                }
            }
        }
    }

    /// Ends the sessions last used over `connection`; their (group, member) and partitions.
    pub fn close_connection(&self, connection: u64) -> Vec<((String, String), Vec<Tp>)> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let closed: Vec<(String, String)> = sessions
            .iter()
            .filter(|(_, s)| s.connection == connection)
            .map(|(k, _)| k.clone())
            .collect();
        closed
            .into_iter()
            .filter_map(|k| sessions.remove(&k).map(|s| (k, s.partitions)))
            .collect()
    }

    /// Drops a member's session (it left the group).
    pub fn forget(&self, group: &str, member: &str) -> Option<Vec<Tp>> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions
            .remove(&(group.to_string(), member.to_string()))
            .map(|s| s.partitions)
    }
}

fn add(partitions: &mut Vec<Tp>, added: &[Tp]) {
    for tp in added {
        if !partitions.contains(tp) && partitions.len() < SESSION_PARTITIONS_MAX {
            partitions.push(*tp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_open_advance_and_close_a_session() {
        let s = ShareSessions::default();
        let key = ("g", "m");
        assert_eq!(
            s.step(key, 3, true, &[], &[], 7),
            Step::Refused(ec::SHARE_SESSION_NOT_FOUND, vec![])
        );
        assert_eq!(
            s.step(key, 0, false, &[], &[], 7),
            Step::Refused(ec::INVALID_SHARE_SESSION_EPOCH, vec![])
        );
        let go = |partitions: Vec<Tp>, released: Vec<Tp>| Step::Continue { partitions, released };
        assert_eq!(
            s.step(key, 0, true, &[(1, 0), (1, 1)], &[], 7),
            go(vec![(1, 0), (1, 1)], vec![])
        );
        assert_eq!(
            s.step(key, 1, true, &[(2, 0)], &[(1, 0)], 7),
            go(vec![(1, 1), (2, 0)], vec![])
        );
        assert_eq!(
            s.step(key, 2, false, &[], &[], 7),
            go(vec![(1, 1), (2, 0)], vec![])
        );
        // Reopening releases the old session's partitions.
        assert_eq!(
            s.step(key, 0, true, &[(1, 1)], &[], 7),
            go(vec![(1, 1)], vec![(1, 1), (2, 0)])
        );
        assert_eq!(
            s.step(key, 1, true, &[(2, 0)], &[], 7),
            go(vec![(1, 1), (2, 0)], vec![])
        );
        // A skipped epoch ends the session and hands its partitions back for release.
        assert_eq!(
            s.step(key, 9, true, &[], &[], 7),
            Step::Refused(ec::INVALID_SHARE_SESSION_EPOCH, vec![(1, 1), (2, 0)])
        );
        assert_eq!(s.step(key, 0, true, &[(1, 0)], &[], 7), go(vec![(1, 0)], vec![]));
        assert_eq!(s.step(key, -1, false, &[], &[], 7), Step::Closed(vec![(1, 0)]));
        assert_eq!(
            s.step(key, -1, false, &[], &[], 7),
            Step::Refused(ec::SHARE_SESSION_NOT_FOUND, vec![])
        );
    }

    #[test]
    fn a_closed_connection_ends_its_sessions() {
        let s = ShareSessions::default();
        s.step(("g", "a"), 0, true, &[(1, 0)], &[], 1);
        s.step(("g", "b"), 0, true, &[(1, 1)], &[], 2);
        let closed = s.close_connection(1);
        assert_eq!(closed, vec![(("g".to_string(), "a".to_string()), vec![(1, 0)])]);
        assert_eq!(
            s.step(("g", "a"), 1, true, &[], &[], 3),
            Step::Refused(ec::SHARE_SESSION_NOT_FOUND, vec![])
        );
        assert!(matches!(
            s.step(("g", "b"), 1, true, &[], &[], 2),
            Step::Continue { .. }
        ));
    }
}
