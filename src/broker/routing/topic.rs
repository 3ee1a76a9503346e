//! Topic patterns as RabbitMQ defines them — words split on `.`, `*` matches exactly one
//! word, `#` zero or more — matched through a trie of the bound patterns, so routing one key
//! costs what the key and the matching patterns cost, not a pass over every binding.
//!
//! Each node has children by literal word plus at most one `*` child and one `#` child. A key
//! is matched by walking its words: a literal or `*` child consumes one word; a `#` child
//! consumes any number, which the walk explores by trying the `#` node at every remaining
//! position. A (node, position) pair is visited at most once, which bounds the work by
//! nodes × words even for patterns such as `#.#.#`.

use std::collections::{HashMap, HashSet};

/// The bound patterns and, for each, the ids bound with it.
#[derive(Debug, Default)]
pub struct TopicTrie {
    nodes: Vec<Node>,
}

#[derive(Debug, Default)]
struct Node {
    words: HashMap<Box<str>, usize>,
    star: Option<usize>,
    hash: Option<usize>,
    /// Ids whose pattern ends here.
    ids: Vec<u64>,
}

impl TopicTrie {
    /// An empty trie.
    pub fn new() -> TopicTrie {
        TopicTrie {
            nodes: vec![Node::default()],
        }
    }

    /// Binds `id` with `pattern` (binding the same pair twice keeps one).
    pub fn insert(&mut self, pattern: &str, id: u64) {
        let mut at = 0;
        for word in pattern.split('.') {
            let next = self.nodes.len();
            let node = &mut self.nodes[at];
            let slot = match word {
                "*" => node.star.get_or_insert(next),
                "#" => node.hash.get_or_insert(next),
                _ => node.words.entry(word.into()).or_insert(next),
            };
            at = *slot;
            if at == next {
                self.nodes.push(Node::default());
            }
        }
        let ids = &mut self.nodes[at].ids;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }

    /// Unbinds `id` from `pattern`. Nodes left empty stay (they cost a little memory, not
    /// routing time: a walk only enters them when the key's words lead there).
    pub fn remove(&mut self, pattern: &str, id: u64) {
        let mut at = 0;
        for word in pattern.split('.') {
            let node = &self.nodes[at];
            let next = match word {
                "*" => node.star,
                "#" => node.hash,
                _ => node.words.get(word).copied(),
            };
            let Some(next) = next else {
                return;
            };
            at = next;
        }
        self.nodes[at].ids.retain(|&i| i != id);
    }

    /// Calls `found` with every id whose pattern matches `key` (an id bound with several
    /// matching patterns may come more than once).
    pub fn matches(&self, key: &str, mut found: impl FnMut(u64)) {
        let words: Vec<&str> = key.split('.').collect();
        // The (node, position) pairs visited: only a `#` makes a pair reachable twice. The walk
        // usually visits few, so a short list beats a hash set; many `#` patterns against a
        // long key move it to a set, so the check stays O(1).
        let mut seen: Vec<(usize, usize)> = Vec::new();
        let mut many: Option<HashSet<(usize, usize)>> = None;
        let mut stack = vec![(0usize, 0usize)];
        while let Some((at, pos)) = stack.pop() {
            let new = if seen.len() < 64 {
                !seen.contains(&(at, pos)) && {
                    seen.push((at, pos));
                    true
                }
            } else {
                many.get_or_insert_with(|| seen.iter().copied().collect())
                    .insert((at, pos))
            };
            if !new {
                continue;
            }
            let node = &self.nodes[at];
            if let Some(hash) = node.hash {
                // `#` takes zero words (here) or more (each later position).
                for p in pos..=words.len() {
                    stack.push((hash, p));
                }
            }
            if pos == words.len() {
                node.ids.iter().for_each(|&id| found(id));
                continue;
            }
            if let Some(&next) = node.words.get(words[pos]) {
                stack.push((next, pos + 1));
            }
            if let Some(star) = node.star {
                stack.push((star, pos + 1));
            }
        }
    }
}

/// Whether `pattern` is a topic pattern RabbitMQ accepts: any words, `*` and `#` standing
/// alone as words. (Empty words are legal: `a..b` has three words.)
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    for word in pattern.split('.') {
        if word.len() > 1 && (word.contains('*') || word.contains('#')) {
            return Err(format!(
                "'{word}' mixes a wildcard with other characters; `*` and `#` must be whole words"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference: a direct recursive reading of the rules on split words.
    fn reference(pattern: &[&str], key: &[&str]) -> bool {
        match (pattern.split_first(), key.split_first()) {
            (None, None) => true,
            (Some((&"#", rest)), _) => {
                reference(rest, key) || (!key.is_empty() && reference(pattern, &key[1..]))
            }
            (Some((&"*", rest)), Some((_, key_rest))) => reference(rest, key_rest),
            (Some((word, rest)), Some((k, key_rest))) => word == k && reference(rest, key_rest),
            _ => false,
        }
    }

    fn matched(trie: &TopicTrie, key: &str) -> Vec<u64> {
        let mut ids = Vec::new();
        trie.matches(key, |id| ids.push(id));
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    #[test]
    fn the_rabbitmq_examples() {
        let mut trie = TopicTrie::new();
        for (id, pattern) in ["*.orange.*", "*.*.rabbit", "lazy.#", "#", "#.log.#"]
            .iter()
            .enumerate()
        {
            trie.insert(pattern, id as u64);
        }
        assert_eq!(matched(&trie, "quick.orange.rabbit"), [0, 1, 3]);
        assert_eq!(matched(&trie, "lazy.orange.elephant"), [0, 2, 3]);
        assert_eq!(matched(&trie, "lazy"), [2, 3], "# matches zero words");
        assert_eq!(matched(&trie, "quick.orange.male.rabbit"), [3]);
        assert_eq!(matched(&trie, "mq.log.error"), [3, 4]);
        assert_eq!(matched(&trie, ""), [3], "the empty key is one empty word");
        trie.remove("#", 3);
        assert_eq!(matched(&trie, "quick.brown.fox"), Vec::<u64>::new());
    }

    #[test]
    fn many_hashes_against_a_long_key_stay_correct() {
        let mut trie = TopicTrie::new();
        trie.insert("#.#.#.#.z", 1);
        trie.insert("#.a.#", 2);
        let key = vec!["a"; 120].join(".") + ".z";
        assert_eq!(matched(&trie, &key), [1, 2]);
    }

    #[test]
    fn wildcards_must_be_whole_words() {
        assert!(check_pattern("log.#").is_ok());
        assert!(check_pattern("a..b.*").is_ok());
        assert!(check_pattern("log.err*").is_err());
        assert!(check_pattern("##").is_err());
    }

    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just("".to_owned())
        ]
    }

    fn pattern_word() -> impl Strategy<Value = String> {
        prop_oneof![word(), Just("*".to_owned()), Just("#".to_owned())]
    }

    proptest! {
        #[test]
        fn the_trie_agrees_with_the_reference(
            patterns in proptest::collection::vec(proptest::collection::vec(pattern_word(), 1..5), 1..8),
            keys in proptest::collection::vec(proptest::collection::vec(word(), 1..6), 1..8),
        ) {
            let mut trie = TopicTrie::new();
            let patterns: Vec<String> = patterns.iter().map(|p| p.join(".")).collect();
            for (id, p) in patterns.iter().enumerate() {
                trie.insert(p, id as u64);
            }
            for key in keys.iter().map(|k| k.join(".")) {
                let key_words: Vec<&str> = key.split('.').collect();
                let expected: Vec<u64> = patterns
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| reference(&p.split('.').collect::<Vec<_>>(), &key_words))
                    .map(|(id, _)| id as u64)
                    .collect();
                prop_assert_eq!(matched(&trie, &key), expected, "key {:?}", key);
            }
        }
    }
}
