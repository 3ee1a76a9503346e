//! The values a selector computes with, and JMS 2.0 §3.8.1.2's rules for them: SQL's
//! three-valued logic (NULL is unknown), Java's numeric promotion, and comparisons of unlike
//! types that are false rather than errors.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::parser::{ArithOp, CmpOp};
use crate::message::FieldValue;

/// A value during evaluation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val<'a> {
    /// Unknown: an absent field, or arithmetic on one.
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    /// A present value selectors cannot compare (binary, a list, ...).
    Other,
}

impl<'a> From<FieldValue<'a>> for Val<'a> {
    fn from(v: FieldValue<'a>) -> Val<'a> {
        match v {
            FieldValue::Null => Val::Null,
            FieldValue::Bool(b) => Val::Bool(b),
            FieldValue::Int(n) => Val::Int(n),
            FieldValue::Float(f) => Val::Float(f),
            FieldValue::Str(s) => Val::Str(s),
            FieldValue::Other => Val::Other,
        }
    }
}

/// A truth value of SQL's three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tri {
    True,
    False,
    Unknown,
}

impl Tri {
    pub(crate) fn of(b: bool) -> Tri {
        if b {
            Tri::True
        } else {
            Tri::False
        }
    }

    pub(crate) fn not(self) -> Tri {
        match self {
            Tri::True => Tri::False,
            Tri::False => Tri::True,
            Tri::Unknown => Tri::Unknown,
        }
    }

    pub(crate) fn and(self, other: Tri) -> Tri {
        match (self, other) {
            (Tri::False, _) | (_, Tri::False) => Tri::False,
            (Tri::True, Tri::True) => Tri::True,
            _ => Tri::Unknown,
        }
    }

    pub(crate) fn or(self, other: Tri) -> Tri {
        match (self, other) {
            (Tri::True, _) | (_, Tri::True) => Tri::True,
            (Tri::False, Tri::False) => Tri::False,
            _ => Tri::Unknown,
        }
    }

    pub(crate) fn into_val(self) -> Val<'static> {
        match self {
            Tri::True => Val::Bool(true),
            Tri::False => Val::Bool(false),
            Tri::Unknown => Val::Null,
        }
    }
}

impl Val<'_> {
    /// As a condition: a boolean is itself; anything else (NULL, a number used as a
    /// condition) is unknown.
    pub(crate) fn truth(&self) -> Tri {
        match self {
            Val::Bool(b) => Tri::of(*b),
            _ => Tri::Unknown,
        }
    }
}

/// `left op right`: unknown when either is NULL; numbers compare across exact and approximate
/// (promoted to double); strings and booleans only with `=` and `<>`; any other pairing is
/// false.
pub(crate) fn compare(op: CmpOp, left: &Val<'_>, right: &Val<'_>) -> Tri {
    let ordering = match (left, right) {
        (Val::Null, _) | (_, Val::Null) => return Tri::Unknown,
        (Val::Int(a), Val::Int(b)) => Some(a.cmp(b)),
        (Val::Int(a), Val::Float(b)) => (*a as f64).partial_cmp(b),
        (Val::Float(a), Val::Int(b)) => a.partial_cmp(&(*b as f64)),
        (Val::Float(a), Val::Float(b)) => a.partial_cmp(b),
        (Val::Str(a), Val::Str(b)) => return equality(op, a == b),
        (Val::Bool(a), Val::Bool(b)) => return equality(op, a == b),
        _ => return Tri::False,
    };
    // NaN compares as nothing: every comparison with it is false.
    let Some(ordering) = ordering else {
        return Tri::False;
    };
    Tri::of(match op {
        CmpOp::Eq => ordering == Ordering::Equal,
        CmpOp::Ne => ordering != Ordering::Equal,
        CmpOp::Lt => ordering == Ordering::Less,
        CmpOp::Le => ordering != Ordering::Greater,
        CmpOp::Gt => ordering == Ordering::Greater,
        CmpOp::Ge => ordering != Ordering::Less,
    })
}

/// Strings and booleans have `=` and `<>` only; the ordering operators are false on them.
fn equality(op: CmpOp, equal: bool) -> Tri {
    match op {
        CmpOp::Eq => Tri::of(equal),
        CmpOp::Ne => Tri::of(!equal),
        _ => Tri::False,
    }
}

/// `left op right` on numbers: exact when both are (wrapping as Java's long does; division by
/// zero is unknown), else double; unknown when either is NULL or not a number.
pub(crate) fn arithmetic(op: ArithOp, left: &Val<'_>, right: &Val<'_>) -> Val<'static> {
    match (left, right) {
        (Val::Int(a), Val::Int(b)) => match op {
            ArithOp::Add => Val::Int(a.wrapping_add(*b)),
            ArithOp::Sub => Val::Int(a.wrapping_sub(*b)),
            ArithOp::Mul => Val::Int(a.wrapping_mul(*b)),
            ArithOp::Div if *b == 0 => Val::Null,
            ArithOp::Div => Val::Int(a.wrapping_div(*b)),
        },
        (Val::Int(_) | Val::Float(_), Val::Int(_) | Val::Float(_)) => {
            let (a, b) = (as_f64(left), as_f64(right));
            Val::Float(match op {
                ArithOp::Add => a + b,
                ArithOp::Sub => a - b,
                ArithOp::Mul => a * b,
                ArithOp::Div => a / b,
            })
        }
        _ => Val::Null,
    }
}

/// `-value`: unknown unless a number.
pub(crate) fn negate(value: &Val<'_>) -> Val<'static> {
    match value {
        Val::Int(n) => Val::Int(n.wrapping_neg()),
        Val::Float(f) => Val::Float(-f),
        _ => Val::Null,
    }
}

fn as_f64(v: &Val<'_>) -> f64 {
    match v {
        Val::Int(n) => *n as f64,
        Val::Float(f) => *f,
        _ => f64::NAN,
    }
}
