//! Incremental fetch sessions (KIP-227): a consumer of many partitions names them once;
//! afterwards its requests carry only the partitions whose fetch position changed, and
//! responses only the partitions with something new. Without them every Fetch of a
//! consumer of 10,000 partitions lists, and is answered for, all 10,000.
//!
//! The cache holds at most [`SESSIONS_MAX`] sessions; creating one more evicts the least
//! recently used. A client whose session is gone gets `FETCH_SESSION_ID_NOT_FOUND` and
//! starts again with a full fetch, as the protocol intends.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::TopicName;

use crate::errors as ec;

/// Sessions kept at most (Kafka's `max.incremental.fetch.session.cache.slots` default).
pub const SESSIONS_MAX: usize = 1_000;
/// Partitions one session may hold.
pub const SESSION_PARTITIONS_MAX: usize = 100_000;
/// The epoch a client sends to close its session.
const FINAL_EPOCH: i32 = -1;

/// What a partition of a session was last fetched from and told.
#[derive(Debug, Clone)]
struct Tracked {
    index: i32,
    fetch_offset: i64,
    max_bytes: i32,
    /// High watermark and log start offset last sent; a partition whose values changed is
    /// in the next response even without records.
    sent: Option<(i64, i64)>,
}

/// A session's partitions of one topic.
#[derive(Debug)]
struct SessionTopic {
    name: TopicName,
    partitions: Vec<Tracked>,
}

#[derive(Debug)]
struct Session {
    /// The epoch the next incremental request must carry.
    epoch: i32,
    topics: Vec<SessionTopic>,
    /// Where each partition is in `topics`.
    position: HashMap<(TopicName, i32), (usize, usize)>,
    last_used: Instant,
}

/// What to fetch for one request, and how to answer.
#[derive(Debug)]
pub struct Plan {
    /// The session id for the response (0: none).
    pub session_id: i32,
    /// True when the response carries only partitions with something new; the partitions
    /// to read then come from [`FetchSessions::candidates`] on every pass.
    pub incremental: bool,
    /// The partitions to read, by topic (full fetches).
    pub partitions: Vec<(TopicName, Vec<FetchPartition>)>,
}

/// The fetch session cache of one broker.
#[derive(Debug, Default)]
pub struct FetchSessions {
    cache: Mutex<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    sessions: HashMap<i32, Session>,
    last_id: i32,
}

impl FetchSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves a Fetch request's session fields: the partitions to read and the session
    /// of the answer, or the top-level error code to answer with.
    pub fn begin(
        &self,
        version: i16,
        session_id: i32,
        epoch: i32,
        topics: Vec<FetchTopic>,
        forgotten: &[ForgottenTopic],
    ) -> Result<Plan, i16> {
        let requested = by_topic(topics);
        let mut cache = self.lock();
        if version < 7 || epoch == FINAL_EPOCH {
            // Sessionless; a final epoch also closes the session.
            if session_id != 0 {
                cache.sessions.remove(&session_id);
            }
            return Ok(full(0, requested));
        }
        if epoch == 0 {
            // A full fetch that opens a session (closing the one named, if any).
            cache.sessions.remove(&session_id);
            let count: usize = requested.iter().map(|(_, p)| p.len()).sum();
            if count > SESSION_PARTITIONS_MAX {
                return Ok(full(0, requested));
            }
            let id = cache.open(&requested);
            return Ok(full(id, requested));
        }
        let session = cache
            .sessions
            .get_mut(&session_id)
            .ok_or(ec::FETCH_SESSION_ID_NOT_FOUND)?;
        if session.epoch != epoch {
            return Err(ec::INVALID_FETCH_SESSION_EPOCH);
        }
        session.update(&requested, forgotten);
        if session.position.len() > SESSION_PARTITIONS_MAX {
            cache.sessions.remove(&session_id);
            return Err(ec::FETCH_SESSION_ID_NOT_FOUND);
        }
        Ok(Plan {
            session_id,
            incremental: true,
            partitions: Vec::new(),
        })
    }

    /// The partitions of an incremental session that may have something new: data at
    /// their position, or a high watermark or log start offset other than last sent.
    /// `offsets` gives a topic's `(log start, high watermark)` per partition (`None`: the
    /// topic is gone, which is news too). Costs a look at each partition, no more.
    pub fn candidates<F>(
        &self,
        session_id: i32,
        mut offsets: impl FnMut(&TopicName) -> Option<F>,
    ) -> Vec<(TopicName, Vec<FetchPartition>)>
    where
        F: Fn(i32) -> Option<(i64, i64)>,
    {
        let cache = self.lock();
        let Some(session) = cache.sessions.get(&session_id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for topic in &session.topics {
            let of = offsets(&topic.name);
            let mut parts = Vec::new();
            for t in &topic.partitions {
                let now = of.as_ref().and_then(|f| f(t.index));
                let news = match now {
                    Some((start, hw)) => t.fetch_offset != hw || t.sent != Some((hw, start)),
                    None => true,
                };
                if news {
                    parts.push(
                        FetchPartition::default()
                            .with_partition(t.index)
                            .with_fetch_offset(t.fetch_offset)
                            .with_partition_max_bytes(t.max_bytes),
                    );
                }
            }
            if !parts.is_empty() {
                out.push((topic.name.clone(), parts));
            }
        }
        out
    }

    /// The partitions of session `session_id`, when there are at most `limit`.
    pub fn partitions(&self, session_id: i32, limit: usize) -> Option<Vec<(TopicName, i32)>> {
        let cache = self.lock();
        let session = cache.sessions.get(&session_id)?;
        (session.position.len() <= limit).then(|| {
            session
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| (t.name.clone(), p.index)))
                .collect()
        })
    }

    /// Decides which partitions an incremental response carries: those with records or an
    /// error, and those whose high watermark or log start offset changed since last sent.
    /// Every partition of a full response is carried; either way the values sent are
    /// remembered.
    pub fn select(&self, plan: &Plan, partitions: &[(TopicName, i32, Answer)]) -> Vec<bool> {
        let mut cache = self.lock();
        let Some(session) = cache.sessions.get_mut(&plan.session_id) else {
            return vec![true; partitions.len()];
        };
        partitions
            .iter()
            .map(|(topic, p, answer)| {
                let Some(&(ti, pi)) = session.position.get(&(topic.clone(), *p)) else {
                    return true;
                };
                let tracked = &mut session.topics[ti].partitions[pi];
                let values = (answer.high_watermark, answer.log_start_offset);
                let changed = tracked.sent != Some(values);
                tracked.sent = Some(values);
                !plan.incremental || answer.has_records || answer.error_code != 0 || changed
            })
            .collect()
    }

    /// Sessions in the cache.
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    /// True when no session is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a partition's answer holds, for [`FetchSessions::select`].
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    /// The partition returns record bytes.
    pub has_records: bool,
    /// The partition's error code.
    pub error_code: i16,
    /// The high watermark in the answer.
    pub high_watermark: i64,
    /// The log start offset in the answer.
    pub log_start_offset: i64,
}

impl Cache {
    /// Opens a session holding `requested`; evicts the least recently used when full.
    fn open(&mut self, requested: &[(TopicName, Vec<FetchPartition>)]) -> i32 {
        if self.sessions.len() >= SESSIONS_MAX {
            let oldest = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| *id);
            if let Some(id) = oldest {
                self.sessions.remove(&id);
            }
        }
        // Bounded: at most SESSIONS_MAX ids are taken.
        let id = loop {
            self.last_id = if self.last_id == i32::MAX {
                1
            } else {
                self.last_id + 1
            };
            if !self.sessions.contains_key(&self.last_id) {
                break self.last_id;
            }
        };
        // The update below makes it 1: the epoch of the first incremental request.
        let mut session = Session {
            epoch: 0,
            topics: Vec::new(),
            position: HashMap::new(),
            last_used: Instant::now(),
        };
        session.update(requested, &[]);
        self.sessions.insert(id, session);
        id
    }
}

impl Session {
    /// Adds or moves the partitions of a request, drops the forgotten ones, and advances
    /// the epoch.
    fn update(&mut self, requested: &[(TopicName, Vec<FetchPartition>)], forgotten: &[ForgottenTopic]) {
        for (topic, parts) in requested {
            for p in parts {
                let key = (topic.clone(), p.partition);
                let (ti, pi) = match self.position.get(&key) {
                    Some(&at) => at,
                    None => self.add(key),
                };
                let tracked = &mut self.topics[ti].partitions[pi];
                tracked.fetch_offset = p.fetch_offset;
                tracked.max_bytes = p.partition_max_bytes;
            }
        }
        if forgotten.iter().any(|f| !f.partitions.is_empty()) {
            self.forget(forgotten);
        }
        self.epoch = if self.epoch == i32::MAX { 1 } else { self.epoch + 1 };
        self.last_used = Instant::now();
    }

    fn add(&mut self, (topic, index): (TopicName, i32)) -> (usize, usize) {
        // A request lists a topic's partitions together: the last topic is the likely one.
        let last = self
            .topics
            .len()
            .checked_sub(1)
            .filter(|&i| self.topics[i].name == topic);
        let ti = match last.or_else(|| self.topics.iter().position(|t| t.name == topic)) {
            Some(ti) => ti,
            None => {
                self.topics.push(SessionTopic {
                    name: topic.clone(),
                    partitions: Vec::new(),
                });
                self.topics.len() - 1
            }
        };
        let partitions = &mut self.topics[ti].partitions;
        partitions.push(Tracked {
            index,
            fetch_offset: 0,
            max_bytes: 0,
            sent: None,
        });
        let at = (ti, partitions.len() - 1);
        self.position.insert((topic, index), at);
        at
    }

    /// Drops forgotten partitions and rebuilds the positions (rare: a consumer losing
    /// partitions in a rebalance).
    fn forget(&mut self, forgotten: &[ForgottenTopic]) {
        for f in forgotten {
            if let Some(t) = self.topics.iter_mut().find(|t| t.name == f.topic) {
                t.partitions.retain(|p| !f.partitions.contains(&p.index));
            }
        }
        self.topics.retain(|t| !t.partitions.is_empty());
        self.position = self
            .topics
            .iter()
            .enumerate()
            .flat_map(|(ti, t)| {
                t.partitions
                    .iter()
                    .enumerate()
                    .map(move |(pi, p)| ((t.name.clone(), p.index), (ti, pi)))
            })
            .collect();
    }
}

fn full(session_id: i32, partitions: Vec<(TopicName, Vec<FetchPartition>)>) -> Plan {
    Plan {
        session_id,
        incremental: false,
        partitions,
    }
}

fn by_topic(topics: Vec<FetchTopic>) -> Vec<(TopicName, Vec<FetchPartition>)> {
    topics.into_iter().map(|t| (t.topic, t.partitions)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::StrBytes;

    fn topic(name: &str, parts: &[(i32, i64)]) -> FetchTopic {
        FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(name.to_string())))
            .with_partitions(
                parts
                    .iter()
                    .map(|&(p, o)| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(o)
                            .with_partition_max_bytes(1000)
                    })
                    .collect(),
            )
    }

    /// Every partition of session `id` with its position (all have news at a high
    /// watermark of 100).
    fn offsets(s: &FetchSessions, id: i32) -> Vec<(String, i32, i64)> {
        s.candidates(id, |_| Some(|_| Some((0, 100))))
            .iter()
            .flat_map(|(t, ps)| {
                ps.iter()
                    .map(move |p| (t.0.to_string(), p.partition, p.fetch_offset))
            })
            .collect()
    }

    fn answer(hw: i64, records: bool) -> Answer {
        Answer {
            has_records: records,
            error_code: 0,
            high_watermark: hw,
            log_start_offset: 0,
        }
    }

    #[test]
    fn a_session_remembers_partitions_and_takes_only_changes() {
        let s = FetchSessions::default();
        let full = s
            .begin(
                11,
                0,
                0,
                vec![topic("a", &[(0, 0), (1, 0)]), topic("b", &[(0, 5)])],
                &[],
            )
            .expect("open");
        assert!(full.session_id > 0 && !full.incremental);
        let id = full.session_id;
        // Epoch 1 moves a/0 and adds b/1; the others keep their positions.
        let plan = s
            .begin(11, id, 1, vec![topic("a", &[(0, 7)]), topic("b", &[(1, 0)])], &[])
            .expect("incremental");
        assert!(plan.incremental);
        assert_eq!(
            offsets(&s, id),
            vec![
                ("a".into(), 0, 7),
                ("a".into(), 1, 0),
                ("b".into(), 0, 5),
                ("b".into(), 1, 0)
            ]
        );
        // Forgetting b/0.
        let forget = ForgottenTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("b")))
            .with_partitions(vec![0]);
        s.begin(11, id, 2, Vec::new(), &[forget]).expect("incremental");
        assert_eq!(offsets(&s, id).len(), 3);
        // Once answered, a partition at its high watermark is no candidate; one whose high
        // watermark moved is.
        let plan = s.begin(11, id, 3, Vec::new(), &[]).expect("incremental");
        let a = TopicName(StrBytes::from_static_str("a"));
        let b = TopicName(StrBytes::from_static_str("b"));
        let answers = vec![
            (a.clone(), 0, answer(7, false)),
            (a, 1, answer(0, false)),
            (b, 1, answer(0, false)),
        ];
        s.select(&plan, &answers);
        let hw = |moved: i32| {
            move |p: i32| {
                Some((
                    0,
                    if p == 0 {
                        7
                    } else if p == moved {
                        3
                    } else {
                        0
                    },
                ))
            }
        };
        assert!(s.candidates(id, |_| Some(hw(-1))).is_empty());
        let news: Vec<(String, i32)> = s
            .candidates(id, |t| (t.0.as_str() == "a").then(|| hw(1)))
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |p| (t.0.to_string(), p.partition)))
            .collect();
        assert_eq!(
            news,
            vec![("a".to_string(), 1), ("b".to_string(), 1)],
            "a/1 moved; topic b is gone"
        );
    }

    #[test]
    fn wrong_epochs_unknown_sessions_and_closing() {
        let s = FetchSessions::default();
        let id = s
            .begin(11, 0, 0, vec![topic("a", &[(0, 0)])], &[])
            .expect("open")
            .session_id;
        assert_eq!(
            s.begin(11, id, 5, Vec::new(), &[])
                .expect_err("the session must be refused"),
            ec::INVALID_FETCH_SESSION_EPOCH
        );
        assert_eq!(
            s.begin(11, id + 1, 1, Vec::new(), &[])
                .expect_err("the session must be refused"),
            ec::FETCH_SESSION_ID_NOT_FOUND
        );
        let closed = s
            .begin(11, id, FINAL_EPOCH, vec![topic("a", &[(0, 0)])], &[])
            .expect("close");
        assert_eq!((closed.session_id, closed.incremental), (0, false));
        assert!(s.is_empty());
        assert_eq!(
            s.begin(11, id, 1, Vec::new(), &[])
                .expect_err("the session must be refused"),
            ec::FETCH_SESSION_ID_NOT_FOUND
        );
        // Versions before 7 have no sessions.
        assert_eq!(
            s.begin(6, 0, 0, vec![topic("a", &[(0, 0)])], &[])
                .expect("v6")
                .session_id,
            0
        );
    }

    #[test]
    fn incremental_answers_carry_only_what_changed() {
        let s = FetchSessions::default();
        let full = s
            .begin(11, 0, 0, vec![topic("a", &[(0, 0), (1, 0), (2, 0)])], &[])
            .expect("open");
        let name = TopicName(StrBytes::from_static_str("a"));
        let all = |hws: [i64; 3], records: [bool; 3]| -> Vec<(TopicName, i32, Answer)> {
            (0..3)
                .map(|i| (name.clone(), i as i32, answer(hws[i], records[i])))
                .collect()
        };
        // A full answer carries everything and remembers what it sent.
        assert_eq!(s.select(&full, &all([0, 0, 0], [false; 3])), vec![true; 3]);
        let plan = s
            .begin(11, full.session_id, 1, Vec::new(), &[])
            .expect("incremental");
        assert_eq!(s.select(&plan, &all([0, 0, 0], [false; 3])), vec![false; 3]);
        // Records on 1, a moved high watermark on 2.
        let plan = s
            .begin(11, full.session_id, 2, Vec::new(), &[])
            .expect("incremental");
        assert_eq!(
            s.select(&plan, &all([0, 3, 9], [false, true, false])),
            vec![false, true, true]
        );
    }

    #[test]
    fn a_full_cache_evicts_the_least_recently_used_session() {
        let s = FetchSessions::default();
        let first = s
            .begin(11, 0, 0, vec![topic("a", &[(0, 0)])], &[])
            .expect("open")
            .session_id;
        for _ in 1..SESSIONS_MAX {
            s.begin(11, 0, 0, vec![topic("a", &[(0, 0)])], &[]).expect("open");
        }
        assert_eq!(s.len(), SESSIONS_MAX);
        s.begin(11, 0, 0, vec![topic("a", &[(0, 0)])], &[]).expect("open");
        assert_eq!(s.len(), SESSIONS_MAX);
        assert_eq!(
            s.begin(11, first, 1, Vec::new(), &[])
                .expect_err("the session must be refused"),
            ec::FETCH_SESSION_ID_NOT_FOUND
        );
    }
}
