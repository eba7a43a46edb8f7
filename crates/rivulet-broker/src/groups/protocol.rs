//! The Kafka consumer protocol's member metadata and assignment bytes (version 0), written
//! for members the broker assigns itself, so Kafka tools that describe a group show their
//! subscriptions and partitions.

/// Subscription bytes: version, topics, no user data.
pub(crate) fn subscription(topics: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + topics.iter().map(String::len).sum::<usize>());
    out.extend_from_slice(&0i16.to_be_bytes());
    put_strings(&mut out, topics.iter().map(String::as_str));
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out
}

/// Assignment bytes: version, partitions per topic, no user data.
pub(crate) fn assignment(partitions: &[(String, i32)]) -> Vec<u8> {
    let mut by_topic: std::collections::BTreeMap<&str, Vec<i32>> = std::collections::BTreeMap::new();
    for (topic, partition) in partitions {
        by_topic.entry(topic).or_default().push(*partition);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&(by_topic.len() as i32).to_be_bytes());
    for (topic, parts) in by_topic {
        put_string(&mut out, topic);
        out.extend_from_slice(&(parts.len() as i32).to_be_bytes());
        for p in parts {
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out
}

/// Topics of consumer-protocol subscription bytes (any version: the topics come first);
/// `None` when they do not parse.
pub(crate) fn subscribed_topics(bytes: &[u8]) -> Option<Vec<String>> {
    let mut at = 2usize; // version
    let count = i32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?);
    at += 4;
    let count = usize::try_from(count).ok()?;
    // Each topic takes at least two bytes: bounded by the input.
    if count > bytes.len() / 2 {
        return None;
    }
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        let len = i16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?);
        at += 2;
        let len = usize::try_from(len).ok()?;
        let name = std::str::from_utf8(bytes.get(at..at + len)?).ok()?;
        topics.push(name.to_string());
        at += len;
    }
    Some(topics)
}

fn put_strings<'a>(out: &mut Vec<u8>, items: impl ExactSizeIterator<Item = &'a str>) {
    out.extend_from_slice(&(items.len() as i32).to_be_bytes());
    for s in items {
        put_string(out, s);
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    // Topic names are at most 249 bytes.
    let len = s.len().min(i16::MAX as usize);
    out.extend_from_slice(&(len as i16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..len]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Member metadata comes from clients: any bytes parse or are refused, never panic,
        /// and what `subscription` writes reads back.
        #[test]
        fn subscriptions_read_back_and_garbage_is_refused(
            topics in proptest::collection::vec("[a-z.]{0,12}", 0..6),
            garbage in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            prop_assert_eq!(subscribed_topics(&subscription(&topics)), Some(topics));
            let _ = subscribed_topics(&garbage);
        }
    }

    #[test]
    fn assignment_bytes_follow_the_consumer_protocol() {
        let bytes = assignment(&[("b".into(), 2), ("a".into(), 0), ("b".into(), 1)]);
        let expected: Vec<u8> = [
            &[0, 0][..],   // version
            &[0, 0, 0, 2], // two topics
            &[0, 1, b'a'], // "a"
            &[0, 0, 0, 1, 0, 0, 0, 0],
            &[0, 1, b'b'], // "b"
            &[0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 1],
            &[0xff, 0xff, 0xff, 0xff], // no user data
        ]
        .concat();
        assert_eq!(bytes, expected);
        let sub = subscription(&["t".to_string()]);
        assert_eq!(sub, vec![0, 0, 0, 0, 0, 1, 0, 1, b't', 0xff, 0xff, 0xff, 0xff]);
        let two = subscription(&["orders".to_string(), "t".to_string()]);
        assert_eq!(
            subscribed_topics(&two),
            Some(vec!["orders".to_string(), "t".to_string()])
        );
        assert_eq!(subscribed_topics(&two[..7]), None, "truncated");
        assert_eq!(
            subscribed_topics(&[0, 0, 0x7f, 0xff, 0xff, 0xff]),
            None,
            "a huge count"
        );
    }
}
