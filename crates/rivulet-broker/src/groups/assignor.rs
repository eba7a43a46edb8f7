//! The server-side assignor of consumer groups (Kafka's `uniform`): every partition of the
//! subscribed topics goes to one subscribed member, members subscribed to the same topics
//! get counts within one of each other, and a partition stays with its previous owner
//! whenever balance allows (so a rebalance moves as few partitions as it can).

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Partitions per topic.
pub type Assignment = BTreeMap<String, BTreeSet<i32>>;

/// Computes the target assignment. `members` maps member ids to their subscribed topics,
/// `partitions` gives a topic's partition count (0: unknown topic), `previous` is the last
/// target. Every member of `members` gets an entry, possibly empty.
pub fn assign(
    members: &BTreeMap<String, BTreeSet<String>>,
    partitions: &dyn Fn(&str) -> usize,
    previous: &HashMap<String, Assignment>,
) -> HashMap<String, Assignment> {
    let topics: BTreeSet<&String> = members.values().flatten().collect();
    let mut owner: BTreeMap<(&str, i32), &str> = BTreeMap::new();
    let mut count: HashMap<&str, usize> = members.keys().map(|m| (m.as_str(), 0)).collect();
    let eligible = |topic: &str| -> Vec<&str> {
        members
            .iter()
            .filter(|(_, subscribed)| subscribed.contains(topic))
            .map(|(id, _)| id.as_str())
            .collect()
    };
    // Sticky first: a partition stays with its previous owner while still subscribed.
    for topic in &topics {
        let n = i32::try_from(partitions(topic)).unwrap_or(i32::MAX);
        for p in 0..n {
            let kept = previous.iter().find(|(m, a)| {
                members.get(*m).is_some_and(|s| s.contains(*topic))
                    && a.get(*topic).is_some_and(|ps| ps.contains(&p))
            });
            if let Some((m, _)) = kept {
                let m = members.get_key_value(m).map_or("", |(k, _)| k.as_str());
                owner.insert((topic.as_str(), p), m);
                *count.entry(m).or_default() += 1;
            }
        }
    }
    // Then the rest, each to the least loaded subscribed member.
    for topic in &topics {
        let candidates = eligible(topic);
        let n = i32::try_from(partitions(topic)).unwrap_or(i32::MAX);
        for p in 0..n {
            if owner.contains_key(&(topic.as_str(), p)) {
                continue;
            }
            if let Some(m) = least_loaded(&candidates, &count) {
                owner.insert((topic.as_str(), p), m);
                *count.entry(m).or_default() += 1;
            }
        }
    }
    balance(&mut owner, &mut count, &eligible);
    let mut out: HashMap<String, Assignment> =
        members.keys().map(|m| (m.clone(), Assignment::new())).collect();
    for ((topic, p), m) in owner {
        if let Some(a) = out.get_mut(m) {
            a.entry(topic.to_string()).or_default().insert(p);
        }
    }
    out
}

fn least_loaded<'a>(candidates: &[&'a str], count: &HashMap<&str, usize>) -> Option<&'a str> {
    candidates
        .iter()
        .copied()
        .min_by_key(|m| (count.get(m).copied().unwrap_or(0), *m))
}

/// Moves partitions from members holding more than one above the least loaded member
/// that could take them, until no such move exists. Each move lowers the sum of squared
/// counts, so the loop ends; a pass usually moves many partitions, and the passes are
/// capped at the partition count (hitting the cap leaves a valid, less balanced target).
fn balance<'a>(
    owner: &mut BTreeMap<(&'a str, i32), &'a str>,
    count: &mut HashMap<&'a str, usize>,
    eligible: &dyn Fn(&str) -> Vec<&'a str>,
) {
    let bound = owner.len().max(1);
    for _ in 0..bound {
        let mut moved = false;
        let keys: Vec<(&str, i32)> = owner.keys().copied().collect();
        for key in keys {
            let from = owner[&key];
            let Some(to) = least_loaded(&eligible(key.0), count) else {
                continue;
            };
            if count[from] > count[to] + 1 {
                owner.insert(key, to);
                *count.entry(from).or_default() -= 1;
                *count.entry(to).or_default() += 1;
                moved = true;
            }
        }
        if !moved {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(list: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        list.iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    fn total(a: &HashMap<String, Assignment>, m: &str) -> usize {
        a[m].values().map(BTreeSet::len).sum()
    }

    #[test]
    fn partitions_are_spread_evenly_and_each_given_once() {
        let ms = members(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let out = assign(&ms, &|_| 8, &HashMap::new());
        let counts: Vec<usize> = ["a", "b", "c"].iter().map(|m| total(&out, m)).collect();
        assert_eq!(counts.iter().sum::<usize>(), 8);
        assert!(
            counts.iter().max().unwrap_or(&0) - counts.iter().min().unwrap_or(&0) <= 1,
            "{counts:?}"
        );
        let mut seen = BTreeSet::new();
        for a in out.values() {
            for p in &a["t"] {
                assert!(seen.insert(*p), "partition {p} given twice");
            }
        }
    }

    #[test]
    fn a_new_member_takes_only_what_balance_needs() {
        let two = members(&[("a", &["t"]), ("b", &["t"])]);
        let first = assign(&two, &|_| 6, &HashMap::new());
        let three = members(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let second = assign(&three, &|_| 6, &first);
        assert_eq!(total(&second, "c"), 2);
        for m in ["a", "b"] {
            assert!(
                second[m]["t"].is_subset(&first[m]["t"]),
                "{m} kept its partitions"
            );
            assert_eq!(total(&second, m), 2);
        }
    }

    #[test]
    fn members_only_get_topics_they_subscribe_to() {
        let ms = members(&[("a", &["x"]), ("b", &["x", "y"])]);
        let out = assign(&ms, &|t| if t == "x" { 2 } else { 4 }, &HashMap::new());
        assert!(!out["a"].contains_key("y"));
        assert_eq!(out["b"]["y"].len(), 4);
        assert_eq!(total(&out, "a") + total(&out, "b"), 6);
        // An unknown topic (no partitions) gives nothing.
        let lone = members(&[("a", &["missing"])]);
        assert!(assign(&lone, &|_| 0, &HashMap::new())["a"].is_empty());
    }
}
