//! Selector text into tokens, each with the column it starts at (characters, from 1), so a
//! parse error can say where.

use super::error::SelectorError;

/// One token.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Token {
    /// An identifier, as written (case matters), or a "delimited" one without its quotes.
    Ident(String),
    /// A string literal without its quotes, `''` read as `'`.
    Str(String),
    /// An exact numeric literal; beyond i64 only as the operand of a unary minus (i64::MIN).
    Int(u64),
    /// An approximate numeric literal.
    Float(f64),
    /// A keyword (case-insensitive in the text), in upper case.
    Keyword(Keyword),
    /// `=`, `<>`, `<`, `<=`, `>`, `>=`, `+`, `-`, `*`, `/`, `(`, `)`, `,`.
    Symbol(&'static str),
    /// The end of the text.
    End,
}

/// The reserved words of JMS 2.0 §3.8.1.1 that the grammar uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keyword {
    And,
    Or,
    Not,
    Between,
    Like,
    In,
    Is,
    Null,
    Escape,
    True,
    False,
}

const KEYWORDS: [(&str, Keyword); 11] = [
    ("AND", Keyword::And),
    ("OR", Keyword::Or),
    ("NOT", Keyword::Not),
    ("BETWEEN", Keyword::Between),
    ("LIKE", Keyword::Like),
    ("IN", Keyword::In),
    ("IS", Keyword::Is),
    ("NULL", Keyword::Null),
    ("ESCAPE", Keyword::Escape),
    ("TRUE", Keyword::True),
    ("FALSE", Keyword::False),
];

/// The most tokens a selector may have: it bounds the depth of the tree the parser builds
/// (chains of AND, OR and arithmetic nest one level per operator), which compiling and
/// evaluating walk recursively; real selectors are far shorter.
const MAX_TOKENS: usize = 2048;

/// Tokens of `text` with their columns; the last is [`Token::End`].
pub(super) fn tokens(text: &str) -> Result<Vec<(Token, usize)>, SelectorError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let (token, next) = match c {
            '\'' => quoted(&chars, i, '\'').map(|(s, n)| (Token::Str(s), n))?,
            '"' => quoted(&chars, i, '"').map(|(s, n)| (Token::Ident(s), n))?,
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                number(&chars, i)?
            }
            c if c.is_alphabetic() || c == '_' || c == '$' => {
                let mut j = i + 1;
                while chars
                    .get(j)
                    .is_some_and(|&c| c.is_alphanumeric() || matches!(c, '_' | '$' | '.'))
                {
                    j += 1;
                }
                let word: String = chars[i..j].iter().collect();
                let upper = word.to_ascii_uppercase();
                let token = match KEYWORDS.iter().find(|(k, _)| *k == upper) {
                    Some((_, k)) => Token::Keyword(*k),
                    None => Token::Ident(word),
                };
                (token, j)
            }
            _ => {
                let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                let symbol = match two.as_str() {
                    "<>" | "!=" => Some(("<>", 2)),
                    "<=" => Some(("<=", 2)),
                    ">=" => Some((">=", 2)),
                    _ => ["=", "<", ">", "+", "-", "*", "/", "(", ")", ","]
                        .into_iter()
                        .find(|s| s.starts_with(c))
                        .map(|s| (s, 1)),
                };
                match symbol {
                    Some((s, len)) => (Token::Symbol(s), i + len),
                    None => {
                        return Err(SelectorError::at(
                            column,
                            format!("unexpected character '{c}'"),
                        ))
                    }
                }
            }
        };
        out.push((token, column));
        if out.len() > MAX_TOKENS {
            return Err(SelectorError::at(
                column,
                format!("the selector is too long: more than {MAX_TOKENS} tokens"),
            ));
        }
        i = next;
    }
    out.push((Token::End, chars.len() + 1));
    Ok(out)
}

/// A literal between `quote`s starting at `start`, a doubled quote standing for one.
fn quoted(chars: &[char], start: usize, quote: char) -> Result<(String, usize), SelectorError> {
    let mut text = String::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => {
                let what = if quote == '\'' {
                    "string"
                } else {
                    "quoted identifier"
                };
                return Err(SelectorError::at(start + 1, format!("unterminated {what}")));
            }
            Some(&c) if c == quote => {
                if chars.get(i + 1) == Some(&quote) {
                    text.push(quote);
                    i += 2;
                } else {
                    return Ok((text, i + 1));
                }
            }
            Some(&c) => {
                text.push(c);
                i += 1;
            }
        }
    }
}

/// A numeric literal: decimal, `0x` hexadecimal or `0`-led octal integers with an optional
/// `L`; decimals with a point and/or an exponent, with an optional `F`/`D` (Java's forms).
fn number(chars: &[char], start: usize) -> Result<(Token, usize), SelectorError> {
    let column = start + 1;
    let bad = |why: &str| SelectorError::at(column, why.to_owned());
    let at = |j: usize| chars.get(j).copied();
    if at(start) == Some('0') && matches!(at(start + 1), Some('x' | 'X')) {
        let mut j = start + 2;
        while at(j).is_some_and(|c| c.is_ascii_hexdigit()) {
            j += 1;
        }
        let digits: String = chars[start + 2..j].iter().collect();
        let value = u64::from_str_radix(&digits, 16).map_err(|_| bad("bad hexadecimal literal"))?;
        if matches!(at(j), Some('l' | 'L')) {
            j += 1;
        }
        return Ok((Token::Int(value), end_of_number(chars, j, column)?));
    }
    let mut j = start;
    while at(j).is_some_and(|c| c.is_ascii_digit()) {
        j += 1;
    }
    let mut approximate = false;
    if at(j) == Some('.') {
        approximate = true;
        j += 1;
        while at(j).is_some_and(|c| c.is_ascii_digit()) {
            j += 1;
        }
    }
    if matches!(at(j), Some('e' | 'E')) {
        let mut k = j + 1;
        if matches!(at(k), Some('+' | '-')) {
            k += 1;
        }
        if at(k).is_some_and(|c| c.is_ascii_digit()) {
            approximate = true;
            j = k;
            while at(j).is_some_and(|c| c.is_ascii_digit()) {
                j += 1;
            }
        }
    }
    let text: String = chars[start..j].iter().collect();
    if approximate || matches!(at(j), Some('f' | 'F' | 'd' | 'D')) {
        if matches!(at(j), Some('f' | 'F' | 'd' | 'D')) {
            j += 1;
        }
        let value: f64 = text.parse().map_err(|_| bad("bad numeric literal"))?;
        return Ok((Token::Float(value), end_of_number(chars, j, column)?));
    }
    let value = if text.len() > 1 && text.starts_with('0') {
        u64::from_str_radix(&text[1..], 8).map_err(|_| bad("bad octal literal"))?
    } else {
        text.parse::<u64>()
            .map_err(|_| bad("integer literal out of range"))?
    };
    if matches!(at(j), Some('l' | 'L')) {
        j += 1;
    }
    Ok((Token::Int(value), end_of_number(chars, j, column)?))
}

/// A number must not run into a letter or digit (`12abc`).
fn end_of_number(chars: &[char], j: usize, column: usize) -> Result<usize, SelectorError> {
    match chars.get(j) {
        Some(c) if c.is_alphanumeric() || *c == '_' || *c == '.' => Err(SelectorError::at(
            column,
            "malformed numeric literal".to_owned(),
        )),
        _ => Ok(j),
    }
}
