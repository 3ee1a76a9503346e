//! LIKE patterns: `_` is any one character, `%` any run of them (none included), the ESCAPE
//! character makes the one after it literal. Compiled once; matched without backtracking
//! beyond the last `%` (the classic wildcard walk), so no pattern can make a match slow.

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Char(char),
    One,
    Many,
}

/// A compiled LIKE pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Like {
    pieces: Vec<Piece>,
}

impl Like {
    /// Compiles `pattern`; an escape character at the very end stands for itself.
    pub(crate) fn new(pattern: &str, escape: Option<char>) -> Like {
        let mut pieces = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            let piece = match c {
                c if Some(c) == escape => Piece::Char(chars.next().unwrap_or(c)),
                '_' => Piece::One,
                // Runs of % are one.
                '%' if pieces.last() == Some(&Piece::Many) => continue,
                '%' => Piece::Many,
                c => Piece::Char(c),
            };
            pieces.push(piece);
        }
        Like { pieces }
    }

    /// Whether `text` matches the whole pattern.
    pub(crate) fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let (mut p, mut t) = (0, 0);
        // Where the last % was, and the text position it has covered up to.
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.pieces.get(p) {
                Some(Piece::Char(c)) if *c == text[t] => {
                    p += 1;
                    t += 1;
                }
                Some(Piece::One) => {
                    p += 1;
                    t += 1;
                }
                Some(Piece::Many) => {
                    star = Some((p, t));
                    p += 1;
                }
                _ => match star {
                    // Let the last % take one more character and try again from there.
                    Some((sp, st)) => {
                        p = sp + 1;
                        t = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        self.pieces[p..].iter().all(|piece| *piece == Piece::Many)
    }
}

#[cfg(test)]
mod tests {
    use super::Like;

    #[test]
    fn the_seed_examples() {
        let like = |p: &str, e: Option<char>, t: &str| Like::new(p, e).matches(t);
        assert!(like("12%3", None, "123"));
        assert!(like("12%3", None, "12993"));
        assert!(!like("12%3", None, "1234"));
        assert!(like("f_ll", None, "fall"));
        assert!(like("f_ll", None, "full"));
        assert!(!like("f_ll", None, "fail"));
        // The seed writes this one `'_%' ESCAPE '_'`, which makes `%` the literal; JMS's own
        // example (and what the seed's words describe) escapes the underscore.
        assert!(like("\\_%", Some('\\'), "_thing"));
        assert!(!like("\\_%", Some('\\'), "thing"));
        assert!(like("_%", Some('_'), "%"));
        assert!(!like("_%", Some('_'), "_thing"));
    }

    #[test]
    fn runs_of_wildcards_and_escapes() {
        let like = |p: &str, e: Option<char>, t: &str| Like::new(p, e).matches(t);
        assert!(like("%", None, ""));
        assert!(like("%%%", None, "abc"));
        assert!(!like("_", None, ""));
        assert!(like("a%b%c", None, "aXbYbZc"));
        assert!(!like("a%b%c", None, "aXbYbZ"));
        assert!(like("100\\%", Some('\\'), "100%"));
        assert!(!like("100\\%", Some('\\'), "1000"));
        assert!(like("a!", Some('!'), "a!"), "a trailing escape is itself");
        assert!(like("é_ü", None, "éxü"), "characters, not bytes");
        let long = "a".repeat(2000);
        assert!(!Like::new("%a%a%a%a%a%b", None).matches(&long));
    }
}
