//! Tokens into a syntax tree, checked as JMS 2.0 §3.8.1 asks: conditions where a condition
//! belongs, numbers where arithmetic is, and no comparison of literals that cannot compare.
//! Identifiers are kept as written; the compiler resolves them.

use super::error::SelectorError;
use super::lexer::{tokens, Keyword, Token};

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// A parsed selector.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ast {
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Not(Box<Ast>),
    And(Box<Ast>, Box<Ast>),
    Or(Box<Ast>, Box<Ast>),
    Cmp(CmpOp, Box<Ast>, Box<Ast>),
    Arith(ArithOp, Box<Ast>, Box<Ast>),
    Neg(Box<Ast>),
    Between {
        value: Box<Ast>,
        low: Box<Ast>,
        high: Box<Ast>,
        negated: bool,
    },
    In {
        value: Box<Ast>,
        list: Vec<Ast>,
        negated: bool,
    },
    Like {
        value: Box<Ast>,
        pattern: String,
        escape: Option<char>,
        negated: bool,
    },
    IsNull {
        value: Box<Ast>,
        negated: bool,
    },
}

/// What an expression is known to yield before any message is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Num,
    Str,
    /// An identifier (or arithmetic on one): any type, known per message.
    Any,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Bool => "a boolean",
            Kind::Num => "a number",
            Kind::Str => "a string",
            Kind::Any => "a value",
        }
    }
}

/// Parses a selector.
pub(crate) fn parse(text: &str) -> Result<Ast, SelectorError> {
    let tokens = tokens(text)?;
    if tokens.len() == 1 {
        return Err(SelectorError::at(1, "the selector is empty".to_owned()));
    }
    let mut parser = Parser {
        tokens,
        at: 0,
        nesting: 0,
    };
    let (ast, kind) = parser.or()?;
    if let (Token::End, _) = parser.peek() {
        parser.condition(kind, 1)?;
        if depth(&ast) > MAX_DEPTH {
            return Err(SelectorError::at(
                1,
                format!("the selector nests more than {MAX_DEPTH} operations deep"),
            ));
        }
        return Ok(ast);
    }
    Err(parser.unexpected("an operator or the end"))
}

struct Parser {
    tokens: Vec<(Token, usize)>,
    at: usize,
    /// Parentheses, NOTs and signs open around the token being read.
    nesting: usize,
}

/// The deepest nesting of parentheses, NOT and signs the parser follows (each is a recursion).
const MAX_NESTING: usize = 64;

/// The deepest tree a selector may compile to: compiling and evaluating walk it recursively
/// (a chain of N additions is N levels; a chain of ANDs or ORs is flattened when compiled,
/// so it counts as one).
const MAX_DEPTH: usize = 200;

/// The depth of `ast`, found without recursion (it is not yet known to be shallow).
fn depth(ast: &Ast) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(ast, 1usize)];
    while let Some((node, d)) = stack.pop() {
        deepest = deepest.max(d);
        // AND and OR chains compile to one flat node: their operands sit one level down.
        let children: Vec<&Ast> = match node {
            Ast::Not(a) | Ast::Neg(a) => vec![a],
            Ast::And(..) | Ast::Or(..) => {
                let mut operands = Vec::new();
                let mut pending = vec![node];
                while let Some(n) = pending.pop() {
                    match (node, n) {
                        (Ast::And(..), Ast::And(l, r)) | (Ast::Or(..), Ast::Or(l, r)) => {
                            pending.push(r);
                            pending.push(l);
                        }
                        (_, other) => operands.push(other),
                    }
                }
                operands
            }
            Ast::Cmp(_, l, r) | Ast::Arith(_, l, r) => vec![l, r],
            Ast::Between {
                value, low, high, ..
            } => vec![value, low, high],
            Ast::In { value, .. } | Ast::Like { value, .. } | Ast::IsNull { value, .. } => {
                vec![value]
            }
            Ast::Ident(_) | Ast::Str(_) | Ast::Int(_) | Ast::Float(_) | Ast::Bool(_) => vec![],
        };
        stack.extend(children.into_iter().map(|c| (c, d + 1)));
    }
    deepest
}

type Parsed = Result<(Ast, Kind), SelectorError>;

impl Parser {
    fn peek(&self) -> &(Token, usize) {
        // The last token is End, and nothing moves past it.
        &self.tokens[self.at.min(self.tokens.len() - 1)]
    }

    fn column(&self) -> usize {
        self.peek().1
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().0.clone();
        if self.at < self.tokens.len() - 1 {
            self.at += 1;
        }
        token
    }

    fn eat_keyword(&mut self, keyword: Keyword) -> bool {
        if self.peek().0 == Token::Keyword(keyword) {
            self.advance();
            return true;
        }
        false
    }

    fn eat_symbol(&mut self, symbol: &str) -> bool {
        if matches!(&self.peek().0, Token::Symbol(s) if *s == symbol) {
            self.advance();
            return true;
        }
        false
    }

    fn unexpected(&self, expected: &str) -> SelectorError {
        let found = match &self.peek().0 {
            Token::Ident(name) => format!("identifier '{name}'"),
            Token::Str(s) => format!("string '{s}'"),
            Token::Int(n) => format!("number {n}"),
            Token::Float(f) => format!("number {f}"),
            Token::Keyword(k) => format!("{k:?}").to_ascii_uppercase(),
            Token::Symbol(s) => format!("'{s}'"),
            Token::End => "the end of the selector".to_owned(),
        };
        SelectorError::at(self.column(), format!("expected {expected}, found {found}"))
    }

    /// `kind` must be a condition (the operand of AND, OR, NOT, or the whole selector).
    fn condition(&self, kind: Kind, column: usize) -> Result<(), SelectorError> {
        match kind {
            Kind::Bool | Kind::Any => Ok(()),
            other => Err(SelectorError::at(
                column,
                format!("expected a condition, found {}", other.name()),
            )),
        }
    }

    fn numeric(&self, kind: Kind, column: usize, what: &str) -> Result<(), SelectorError> {
        match kind {
            Kind::Num | Kind::Any => Ok(()),
            other => Err(SelectorError::at(
                column,
                format!("{what} needs a number, found {}", other.name()),
            )),
        }
    }

    fn or(&mut self) -> Parsed {
        let column = self.column();
        let (mut left, mut kind) = self.and()?;
        while self.peek().0 == Token::Keyword(Keyword::Or) {
            self.condition(kind, column)?;
            self.advance();
            let right_column = self.column();
            let (right, right_kind) = self.and()?;
            self.condition(right_kind, right_column)?;
            left = Ast::Or(Box::new(left), Box::new(right));
            kind = Kind::Bool;
        }
        Ok((left, kind))
    }

    fn and(&mut self) -> Parsed {
        let column = self.column();
        let (mut left, mut kind) = self.not()?;
        while self.peek().0 == Token::Keyword(Keyword::And) {
            self.condition(kind, column)?;
            self.advance();
            let right_column = self.column();
            let (right, right_kind) = self.not()?;
            self.condition(right_kind, right_column)?;
            left = Ast::And(Box::new(left), Box::new(right));
            kind = Kind::Bool;
        }
        Ok((left, kind))
    }

    /// Enters one level of nesting, or says why not.
    fn nest(&mut self) -> Result<(), SelectorError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(SelectorError::at(
                self.column(),
                format!("nested too deeply: more than {MAX_NESTING} levels"),
            ));
        }
        Ok(())
    }

    fn not(&mut self) -> Parsed {
        if self.eat_keyword(Keyword::Not) {
            let column = self.column();
            self.nest()?;
            let (inner, kind) = self.not()?;
            self.nesting -= 1;
            self.condition(kind, column)?;
            return Ok((Ast::Not(Box::new(inner)), Kind::Bool));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Parsed {
        let column = self.column();
        let (mut left, mut kind) = self.sum()?;
        loop {
            let op = match &self.peek().0 {
                Token::Symbol("=") => Some(CmpOp::Eq),
                Token::Symbol("<>") => Some(CmpOp::Ne),
                Token::Symbol("<") => Some(CmpOp::Lt),
                Token::Symbol("<=") => Some(CmpOp::Le),
                Token::Symbol(">") => Some(CmpOp::Gt),
                Token::Symbol(">=") => Some(CmpOp::Ge),
                _ => None,
            };
            if let Some(op) = op {
                self.advance();
                let right_column = self.column();
                let (right, right_kind) = self.sum()?;
                compatible(op, (kind, column), (right_kind, right_column))?;
                left = Ast::Cmp(op, Box::new(left), Box::new(right));
                kind = Kind::Bool;
                continue;
            }
            let negated = self.peek().0 == Token::Keyword(Keyword::Not)
                && matches!(
                    self.tokens.get(self.at + 1).map(|t| &t.0),
                    Some(Token::Keyword(
                        Keyword::Between | Keyword::In | Keyword::Like
                    ))
                );
            if negated {
                self.advance();
            }
            match self.peek().0 {
                Token::Keyword(Keyword::Between) => {
                    self.advance();
                    self.numeric(kind, column, "BETWEEN")?;
                    let low_column = self.column();
                    let (low, low_kind) = self.sum()?;
                    self.numeric(low_kind, low_column, "BETWEEN")?;
                    if !self.eat_keyword(Keyword::And) {
                        return Err(self.unexpected("AND"));
                    }
                    let high_column = self.column();
                    let (high, high_kind) = self.sum()?;
                    self.numeric(high_kind, high_column, "BETWEEN")?;
                    left = Ast::Between {
                        value: Box::new(left),
                        low: Box::new(low),
                        high: Box::new(high),
                        negated,
                    };
                }
                Token::Keyword(Keyword::In) => {
                    self.advance();
                    textual(kind, column, "IN")?;
                    left = Ast::In {
                        value: Box::new(left),
                        list: self.in_list()?,
                        negated,
                    };
                }
                Token::Keyword(Keyword::Like) => {
                    self.advance();
                    textual(kind, column, "LIKE")?;
                    let before = self.at;
                    let Token::Str(pattern) = self.advance() else {
                        self.at = before;
                        return Err(self.unexpected("a string pattern after LIKE"));
                    };
                    let escape = self.escape()?;
                    left = Ast::Like {
                        value: Box::new(left),
                        pattern,
                        escape,
                        negated,
                    };
                }
                Token::Keyword(Keyword::Is) => {
                    self.advance();
                    let negated = self.eat_keyword(Keyword::Not);
                    if !self.eat_keyword(Keyword::Null) {
                        return Err(self.unexpected("NULL"));
                    }
                    left = Ast::IsNull {
                        value: Box::new(left),
                        negated,
                    };
                }
                _ => return Ok((left, kind)),
            }
            kind = Kind::Bool;
        }
    }

    fn in_list(&mut self) -> Result<Vec<Ast>, SelectorError> {
        if !self.eat_symbol("(") {
            return Err(self.unexpected("'(' after IN"));
        }
        let mut list = Vec::new();
        loop {
            let negative = self.eat_symbol("-");
            let before = self.at;
            let item = match self.advance() {
                Token::Str(s) if !negative => Ast::Str(s),
                Token::Int(n) => Ast::Int(int_literal(n, negative, self.column())?),
                Token::Float(f) => Ast::Float(if negative { -f } else { f }),
                _ => {
                    self.at = before;
                    return Err(self.unexpected("a string or number in the IN list"));
                }
            };
            list.push(item);
            if self.eat_symbol(")") {
                return Ok(list);
            }
            if !self.eat_symbol(",") {
                return Err(self.unexpected("',' or ')'"));
            }
        }
    }

    fn escape(&mut self) -> Result<Option<char>, SelectorError> {
        if !self.eat_keyword(Keyword::Escape) {
            return Ok(None);
        }
        let column = self.column();
        let before = self.at;
        match self.advance() {
            Token::Str(s) if s.chars().count() == 1 => Ok(s.chars().next()),
            Token::Str(s) => Err(SelectorError::at(
                column,
                format!("the ESCAPE character must be one character, found '{s}'"),
            )),
            _ => {
                self.at = before;
                Err(self.unexpected("a one-character string after ESCAPE"))
            }
        }
    }

    fn sum(&mut self) -> Parsed {
        let column = self.column();
        let (mut left, mut kind) = self.product()?;
        loop {
            let op = match self.peek().0 {
                Token::Symbol("+") => ArithOp::Add,
                Token::Symbol("-") => ArithOp::Sub,
                _ => return Ok((left, kind)),
            };
            self.numeric(kind, column, "arithmetic")?;
            self.advance();
            let right_column = self.column();
            let (right, right_kind) = self.product()?;
            self.numeric(right_kind, right_column, "arithmetic")?;
            left = Ast::Arith(op, Box::new(left), Box::new(right));
            kind = Kind::Num;
        }
    }

    fn product(&mut self) -> Parsed {
        let column = self.column();
        let (mut left, mut kind) = self.unary()?;
        loop {
            let op = match self.peek().0 {
                Token::Symbol("*") => ArithOp::Mul,
                Token::Symbol("/") => ArithOp::Div,
                _ => return Ok((left, kind)),
            };
            self.numeric(kind, column, "arithmetic")?;
            self.advance();
            let right_column = self.column();
            let (right, right_kind) = self.unary()?;
            self.numeric(right_kind, right_column, "arithmetic")?;
            left = Ast::Arith(op, Box::new(left), Box::new(right));
            kind = Kind::Num;
        }
    }

    fn unary(&mut self) -> Parsed {
        let column = self.column();
        if self.eat_symbol("-") {
            // -9223372036854775808 is a literal, though its digits alone are not.
            if let Token::Int(n) = self.peek().0 {
                self.advance();
                return Ok((Ast::Int(int_literal(n, true, column)?), Kind::Num));
            }
            self.nest()?;
            let (inner, kind) = self.unary()?;
            self.nesting -= 1;
            self.numeric(kind, column, "'-'")?;
            return Ok((Ast::Neg(Box::new(inner)), Kind::Num));
        }
        if self.eat_symbol("+") {
            self.nest()?;
            let (inner, kind) = self.unary()?;
            self.nesting -= 1;
            self.numeric(kind, column, "'+'")?;
            return Ok((inner, kind));
        }
        self.primary()
    }

    fn primary(&mut self) -> Parsed {
        let column = self.column();
        let before = self.at;
        match self.advance() {
            Token::Ident(name) => Ok((Ast::Ident(name), Kind::Any)),
            Token::Str(s) => Ok((Ast::Str(s), Kind::Str)),
            Token::Int(n) => Ok((Ast::Int(int_literal(n, false, column)?), Kind::Num)),
            Token::Float(f) => Ok((Ast::Float(f), Kind::Num)),
            Token::Keyword(Keyword::True) => Ok((Ast::Bool(true), Kind::Bool)),
            Token::Keyword(Keyword::False) => Ok((Ast::Bool(false), Kind::Bool)),
            Token::Symbol("(") => {
                self.nest()?;
                let inner = self.or()?;
                self.nesting -= 1;
                if !self.eat_symbol(")") {
                    return Err(self.unexpected("')'"));
                }
                Ok(inner)
            }
            Token::Keyword(Keyword::Null) => Err(SelectorError::at(
                column,
                "NULL is only allowed in IS NULL and IS NOT NULL".to_owned(),
            )),
            _ => {
                self.at = before;
                Err(self.unexpected("an identifier, a literal or '('"))
            }
        }
    }
}

/// The operand of IN or LIKE must be text (an identifier, as JMS has it, or a string).
fn textual(kind: Kind, column: usize, what: &str) -> Result<(), SelectorError> {
    match kind {
        Kind::Str | Kind::Any => Ok(()),
        other => Err(SelectorError::at(
            column,
            format!("{what} needs a string, found {}", other.name()),
        )),
    }
}

/// Literals of different types never compare, and strings and booleans only compare with
/// `=` and `<>` (JMS 2.0 §3.8.1.2).
fn compatible(op: CmpOp, left: (Kind, usize), right: (Kind, usize)) -> Result<(), SelectorError> {
    let ordering = !matches!(op, CmpOp::Eq | CmpOp::Ne);
    for (kind, column) in [left, right] {
        if ordering && matches!(kind, Kind::Str | Kind::Bool) {
            return Err(SelectorError::at(
                column,
                format!("{} can only be compared with = and <>", kind.name()),
            ));
        }
    }
    if left.0 != Kind::Any && right.0 != Kind::Any && left.0 != right.0 {
        return Err(SelectorError::at(
            right.1,
            format!(
                "{} cannot be compared with {}",
                left.0.name(),
                right.0.name()
            ),
        ));
    }
    Ok(())
}

/// An exact literal as an i64 (its minus sign applied), or why it does not fit.
fn int_literal(n: u64, negative: bool, column: usize) -> Result<i64, SelectorError> {
    let value = if negative {
        0i64.checked_sub_unsigned(n)
    } else {
        i64::try_from(n).ok()
    };
    value.ok_or_else(|| SelectorError::at(column, "integer literal out of range".to_owned()))
}
