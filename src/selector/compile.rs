//! A syntax tree compiled for evaluation: identifiers resolved to the fields they name, LIKE
//! patterns compiled, IN lists as values, chains of AND and OR flattened so evaluation stops
//! at the first deciding operand. Evaluation reads only the fields the expression uses,
//! straight from the message's bytes.

use std::borrow::Cow;

use super::fields::{resolve, Dialect, FieldRef, Input};
use super::like::Like;
use super::parser::{ArithOp, Ast, CmpOp};
use super::value::{arithmetic, compare, negate, Tri, Val};

/// A compiled expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Field(FieldRef),
    Const(Val<'static>),
    Not(Box<Expr>),
    All(Vec<Expr>),
    Any(Vec<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    Neg(Box<Expr>),
    Between {
        value: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    In {
        value: Box<Expr>,
        list: Vec<Val<'static>>,
        negated: bool,
    },
    Like {
        value: Box<Expr>,
        like: Like,
        negated: bool,
    },
    IsNull {
        value: Box<Expr>,
        negated: bool,
    },
}

/// Compiles `ast`; an identifier that names nothing in `dialect` is an error.
pub(crate) fn compile(ast: &Ast, dialect: Dialect) -> Result<Expr, String> {
    let boxed = |a: &Ast| compile(a, dialect).map(Box::new);
    Ok(match ast {
        Ast::Ident(name) => Expr::Field(resolve(name, dialect)?),
        Ast::Str(s) => Expr::Const(Val::Str(Cow::Owned(s.clone()))),
        Ast::Int(n) => Expr::Const(Val::Int(*n)),
        Ast::Float(f) => Expr::Const(Val::Float(*f)),
        Ast::Bool(b) => Expr::Const(Val::Bool(*b)),
        Ast::Not(inner) => Expr::Not(boxed(inner)?),
        Ast::And(..) => Expr::All(flatten(ast, dialect, true)?),
        Ast::Or(..) => Expr::Any(flatten(ast, dialect, false)?),
        Ast::Cmp(op, l, r) => Expr::Cmp(*op, boxed(l)?, boxed(r)?),
        Ast::Arith(op, l, r) => Expr::Arith(*op, boxed(l)?, boxed(r)?),
        Ast::Neg(inner) => Expr::Neg(boxed(inner)?),
        Ast::Between {
            value,
            low,
            high,
            negated,
        } => Expr::Between {
            value: boxed(value)?,
            low: boxed(low)?,
            high: boxed(high)?,
            negated: *negated,
        },
        Ast::In {
            value,
            list,
            negated,
        } => Expr::In {
            value: boxed(value)?,
            list: list
                .iter()
                .map(|item| match item {
                    Ast::Str(s) => Val::Str(Cow::Owned(s.clone())),
                    Ast::Int(n) => Val::Int(*n),
                    Ast::Float(f) => Val::Float(*f),
                    _ => Val::Null,
                })
                .collect(),
            negated: *negated,
        },
        Ast::Like {
            value,
            pattern,
            escape,
            negated,
        } => Expr::Like {
            value: boxed(value)?,
            like: Like::new(pattern, *escape),
            negated: *negated,
        },
        Ast::IsNull { value, negated } => Expr::IsNull {
            value: boxed(value)?,
            negated: *negated,
        },
    })
}

/// The operands of a chain of ANDs (`all`) or ORs, left to right.
fn flatten(ast: &Ast, dialect: Dialect, all: bool) -> Result<Vec<Expr>, String> {
    match (ast, all) {
        (Ast::And(l, r), true) | (Ast::Or(l, r), false) => {
            let mut out = flatten(l, dialect, all)?;
            out.extend(flatten(r, dialect, all)?);
            Ok(out)
        }
        _ => Ok(vec![compile(ast, dialect)?]),
    }
}

/// A constant as a value borrowing from it (no copy of its text per evaluation).
fn borrowed<'r>(v: &'r Val<'static>) -> Val<'r> {
    match v {
        Val::Str(s) => Val::Str(Cow::Borrowed(s.as_ref())),
        other => other.clone(),
    }
}

impl Expr {
    /// The expression's value for `input`.
    pub(crate) fn eval<'r, 'm: 'r>(&'r self, input: &Input<'m>) -> Val<'r> {
        match self {
            Expr::Field(field) => input.get(field),
            Expr::Const(v) => borrowed(v),
            Expr::Not(inner) => inner.eval(input).truth().not().into_val(),
            Expr::All(operands) => {
                let mut result = Tri::True;
                for operand in operands {
                    result = result.and(operand.eval(input).truth());
                    if result == Tri::False {
                        break;
                    }
                }
                result.into_val()
            }
            Expr::Any(operands) => {
                let mut result = Tri::False;
                for operand in operands {
                    result = result.or(operand.eval(input).truth());
                    if result == Tri::True {
                        break;
                    }
                }
                result.into_val()
            }
            Expr::Cmp(op, l, r) => compare(*op, &l.eval(input), &r.eval(input)).into_val(),
            Expr::Arith(op, l, r) => arithmetic(*op, &l.eval(input), &r.eval(input)),
            Expr::Neg(inner) => negate(&inner.eval(input)),
            Expr::Between {
                value,
                low,
                high,
                negated,
            } => {
                let v = value.eval(input);
                let within = compare(CmpOp::Ge, &v, &low.eval(input)).and(compare(
                    CmpOp::Le,
                    &v,
                    &high.eval(input),
                ));
                negate_if(within, *negated).into_val()
            }
            Expr::In {
                value,
                list,
                negated,
            } => {
                let v = value.eval(input);
                let found = match v {
                    Val::Null => Tri::Unknown,
                    ref v => Tri::of(
                        list.iter()
                            .any(|item| compare(CmpOp::Eq, v, &borrowed(item)) == Tri::True),
                    ),
                };
                negate_if(found, *negated).into_val()
            }
            Expr::Like {
                value,
                like,
                negated,
            } => {
                let matched = match value.eval(input) {
                    Val::Null => Tri::Unknown,
                    Val::Str(s) => Tri::of(like.matches(&s)),
                    _ => Tri::False,
                };
                negate_if(matched, *negated).into_val()
            }
            Expr::IsNull { value, negated } => {
                let null = matches!(value.eval(input), Val::Null);
                Val::Bool(null != *negated)
            }
        }
    }
}

fn negate_if(t: Tri, negated: bool) -> Tri {
    if negated {
        t.not()
    } else {
        t
    }
}
