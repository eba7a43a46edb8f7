//! Topic exchange patterns: dot-separated words where `*` stands for exactly one word and
//! `#` for zero or more words (`orders.*.eu`, `logs.#`, `#`).

/// Words a pattern or key may have; longer ones never match (bounds the matching work).
pub const WORDS_MAX: usize = 256;

/// True when routing key `key` matches binding pattern `pattern`.
pub fn matches(pattern: &str, key: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    if p.len() > WORDS_MAX || k.len() > WORDS_MAX {
        return false;
    }
    // reach[j]: the pattern words seen so far can match the first j key words.
    let mut reach = vec![false; k.len() + 1];
    reach[0] = true;
    for word in &p {
        let mut next = vec![false; k.len() + 1];
        match *word {
            "#" => {
                // Zero or more words: everything reachable so far, and anything after it.
                let mut any = false;
                for j in 0..=k.len() {
                    any |= reach[j];
                    next[j] = any;
                }
            }
            w => {
                for j in 0..k.len() {
                    if reach[j] && (w == "*" || w == k[j]) {
                        next[j + 1] = true;
                    }
                }
            }
        }
        reach = next;
    }
    reach[k.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stars_and_hashes() {
        assert!(matches("orders.*.eu", "orders.placed.eu"));
        assert!(!matches("orders.*.eu", "orders.placed.big.eu"));
        assert!(matches("orders.#", "orders"));
        assert!(matches("orders.#", "orders.placed.eu"));
        assert!(matches("#", "anything.at.all"));
        assert!(matches("#", ""));
        assert!(matches("#.eu", "eu"));
        assert!(matches("*.#.eu", "a.eu"));
        assert!(!matches("*.#.eu", "eu"));
        assert!(matches("kern.critical", "kern.critical"));
        assert!(!matches("kern.critical", "kern.info"));
        assert!(!matches("*", "a.b"));
        assert!(matches("*", ""), "one empty word");
    }

    /// The rule written directly as a recursion (exponential, fine for short inputs).
    fn reference(p: &[&str], k: &[&str]) -> bool {
        match p.first() {
            None => k.is_empty(),
            Some(&"#") => (0..=k.len()).any(|i| reference(&p[1..], &k[i..])),
            Some(&w) => !k.is_empty() && (w == "*" || w == k[0]) && reference(&p[1..], &k[1..]),
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_recursive_definition(
            pattern in proptest::collection::vec(prop_oneof!["a", "b", "\\*", "#"], 1..6),
            key in proptest::collection::vec(prop_oneof!["a", "b", "c"], 1..6),
        ) {
            let pattern = pattern.join(".");
            let key = key.join(".");
            let expected = reference(
                &pattern.split('.').collect::<Vec<_>>(),
                &key.split('.').collect::<Vec<_>>(),
            );
            prop_assert_eq!(matches(&pattern, &key), expected, "{} ~ {}", pattern, key);
        }
    }
}
