//! Queue-name patterns for `[queues."pattern"]` tables, in the wildcard syntax of
//! ActiveMQ Artemis address settings, and the specificity order that decides which
//! pattern's value wins when several match one queue.

use std::cmp::Ordering;

/// One parsed pattern. Words are separated by `.`; `*` matches exactly one word,
/// `#` matches zero or more words, and any other word (including `ab*`) matches itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pattern {
    text: String,
    words: Vec<Word>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Word {
    Literal(String),
    One,
    Any,
}

impl Word {
    /// Ranks for the specificity comparison: a literal beats `*`, which beats `#`.
    fn rank(&self) -> u8 {
        match self {
            Word::Literal(_) => 2,
            Word::One => 1,
            Word::Any => 0,
        }
    }
}

impl Pattern {
    /// Parses a pattern; the error says what is wrong, for the caller to place in the file.
    pub(super) fn parse(text: &str) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("a queue pattern must not be empty".to_owned());
        }
        let words = text
            .split('.')
            .map(|word| match word {
                "" => Err(format!(
                    "queue pattern \"{text}\" has an empty word; words are separated by single dots"
                )),
                "*" => Ok(Word::One),
                "#" => Ok(Word::Any),
                literal => Ok(Word::Literal(literal.to_owned())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Pattern {
            text: text.to_owned(),
            words,
        })
    }

    /// Whether the queue name `queue` is matched by this pattern.
    pub(super) fn matches(&self, queue: &str) -> bool {
        let names: Vec<&str> = queue.split('.').collect();
        // reachable[j]: the pattern words consumed so far can match exactly names[..j].
        // Dynamic programming keeps "#.#.#..." linear instead of exponential.
        let mut reachable = vec![false; names.len() + 1];
        reachable[0] = true;
        for word in &self.words {
            let mut next = vec![false; names.len() + 1];
            for j in 0..=names.len() {
                next[j] = match word {
                    Word::Any => reachable[j] || (j > 0 && next[j - 1]),
                    Word::One => j > 0 && reachable[j - 1],
                    Word::Literal(lit) => j > 0 && reachable[j - 1] && names[j - 1] == lit,
                };
            }
            reachable = next;
        }
        reachable[names.len()]
    }

    fn is_exact(&self) -> bool {
        self.words.iter().all(|w| matches!(w, Word::Literal(_)))
    }

    /// Orders patterns from least to most specific: an exact pattern beats any wildcard;
    /// otherwise words are compared from the left (literal > `*` > `#`) and, if one
    /// pattern is a prefix of the other in those terms, the longer wins. Remaining ties
    /// go to the pattern that sorts first by text, so the outcome never depends on the
    /// order of tables in the file.
    pub(super) fn cmp_specificity(&self, other: &Pattern) -> Ordering {
        let ranks = |p: &Pattern| p.words.iter().map(Word::rank).collect::<Vec<_>>();
        self.is_exact()
            .cmp(&other.is_exact())
            .then_with(|| ranks(self).cmp(&ranks(other)))
            .then_with(|| other.text.cmp(&self.text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> Pattern {
        match Pattern::parse(text) {
            Ok(p) => p,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn wildcards_match_as_in_artemis_address_settings() {
        let cases = [
            ("#", "anything", true),
            ("#", "a.b.c", true),
            ("#", "", true),
            ("a.*", "a.b", true),
            ("a.*", "a", false),
            ("a.*", "a.b.c", false),
            ("a.#", "a", true),
            ("a.#", "a.b", true),
            ("a.#", "a.b.c", true),
            ("a.#", "ab", false),
            ("#.c", "a.b.c", true),
            ("#.c", "c", true),
            ("a.#.c", "a.c", true),
            ("a.#.c", "a.b.b.c", true),
            ("a.#.c", "a.b.d", false),
            ("*.*", "a.b", true),
            ("*.*", "a", false),
            ("orders", "orders", true),
            ("orders", "orders.eu", false),
            ("ord*", "orders", false),
            ("ord*", "ord*", true),
            (
                "#.#.#.#.#.#.#.#.#.#.#.#.#.#.x",
                "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p",
                false,
            ),
        ];
        for (p, queue, expected) in cases {
            assert_eq!(pattern(p).matches(queue), expected, "{p:?} vs {queue:?}");
        }
    }

    #[test]
    fn empty_patterns_and_empty_words_are_rejected() {
        for bad in ["", "a..b", ".a", "a.", "."] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn more_specific_patterns_sort_higher() {
        // Each pattern is strictly more specific than the one before it.
        let ascending = [
            "#",
            "#.x",
            "*",
            "*.x",
            "orders.#",
            "orders.*",
            "orders.*.x",
            "orders.eu.#",
            "orders.eu",
        ];
        for pair in ascending.windows(2) {
            let (less, more) = (pattern(pair[0]), pattern(pair[1]));
            assert_eq!(
                less.cmp_specificity(&more),
                Ordering::Less,
                "{:?} < {:?}",
                pair[0],
                pair[1]
            );
            assert_eq!(more.cmp_specificity(&less), Ordering::Greater);
        }
    }

    #[test]
    fn ties_are_broken_by_text_not_file_order() {
        let (a, b) = (pattern("#.a.#"), pattern("#.b.#"));
        assert_eq!(a.cmp_specificity(&b), Ordering::Greater);
        assert_eq!(b.cmp_specificity(&a), Ordering::Less);
    }
}
