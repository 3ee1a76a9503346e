//! A naive interpreter, written apart from the compiler and evaluator: it walks the syntax
//! tree, looks identifiers up by name in the property values the message was built from,
//! and matches LIKE by recursion. The property test checks that the compiled selector, run
//! on the encoded message, agrees with it on random selectors and messages.

use std::collections::HashMap;

use fe2o3_amqp_types::messaging::{ApplicationProperties, Message as AmqpMessage};
use fe2o3_amqp_types::primitives::SimpleValue;
use proptest::prelude::*;

use super::super::parser::{ArithOp, Ast, CmpOp};
use super::super::{Dialect, Selector};
use super::{body, message};

/// A property value of the test messages.
#[derive(Debug, Clone, PartialEq)]
enum P {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

/// A result of the naive interpreter: None is NULL.
#[derive(Debug, Clone, PartialEq)]
enum N {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

fn naive(ast: &Ast, props: &HashMap<String, P>) -> N {
    let b = |v: N| match v {
        N::Bool(b) => Some(b),
        _ => None,
    };
    match ast {
        Ast::Ident(name) => match props.get(name) {
            None => N::Null,
            Some(P::Bool(x)) => N::Bool(*x),
            Some(P::Int(x)) => N::Int(*x),
            Some(P::Float(x)) => N::Float(*x),
            Some(P::Str(x)) => N::Str(x.clone()),
        },
        Ast::Str(s) => N::Str(s.clone()),
        Ast::Int(n) => N::Int(*n),
        Ast::Float(f) => N::Float(*f),
        Ast::Bool(x) => N::Bool(*x),
        Ast::Not(x) => b(naive(x, props)).map_or(N::Null, |x| N::Bool(!x)),
        Ast::And(l, r) => match (b(naive(l, props)), b(naive(r, props))) {
            (Some(false), _) | (_, Some(false)) => N::Bool(false),
            (Some(true), Some(true)) => N::Bool(true),
            _ => N::Null,
        },
        Ast::Or(l, r) => match (b(naive(l, props)), b(naive(r, props))) {
            (Some(true), _) | (_, Some(true)) => N::Bool(true),
            (Some(false), Some(false)) => N::Bool(false),
            _ => N::Null,
        },
        Ast::Cmp(op, l, r) => cmp(*op, naive(l, props), naive(r, props)),
        Ast::Arith(op, l, r) => arith(*op, naive(l, props), naive(r, props)),
        Ast::Neg(x) => match naive(x, props) {
            N::Int(n) => N::Int(n.wrapping_neg()),
            N::Float(f) => N::Float(-f),
            _ => N::Null,
        },
        Ast::Between {
            value,
            low,
            high,
            negated,
        } => {
            let v = naive(value, props);
            let both = Ast::And(
                Box::new(lit(cmp(CmpOp::Ge, v.clone(), naive(low, props)))),
                Box::new(lit(cmp(CmpOp::Le, v, naive(high, props)))),
            );
            let r = naive(&both, props);
            if *negated {
                naive(&Ast::Not(Box::new(lit(r))), props)
            } else {
                r
            }
        }
        Ast::In {
            value,
            list,
            negated,
        } => match naive(value, props) {
            N::Null => N::Null,
            v => {
                let found = list
                    .iter()
                    .any(|item| cmp(CmpOp::Eq, v.clone(), naive(item, props)) == N::Bool(true));
                N::Bool(found != *negated)
            }
        },
        Ast::Like {
            value,
            pattern,
            escape,
            negated,
        } => match naive(value, props) {
            N::Null => N::Null,
            N::Str(s) => {
                let p: Vec<char> = pattern.chars().collect();
                let t: Vec<char> = s.chars().collect();
                N::Bool(like(&p, &t, *escape) != *negated)
            }
            _ => N::Bool(*negated),
        },
        Ast::IsNull { value, negated } => N::Bool((naive(value, props) == N::Null) != *negated),
    }
}

/// A result as a literal again (for composing the rules above).
fn lit(n: N) -> Ast {
    match n {
        N::Bool(b) => Ast::Bool(b),
        _ => Ast::Ident("\u{0}null".into()),
    }
}

fn cmp(op: CmpOp, l: N, r: N) -> N {
    use std::cmp::Ordering::*;
    let ord = match (&l, &r) {
        (N::Null, _) | (_, N::Null) => return N::Null,
        (N::Int(a), N::Int(b)) => a.partial_cmp(b),
        (N::Int(a), N::Float(b)) => (*a as f64).partial_cmp(b),
        (N::Float(a), N::Int(b)) => a.partial_cmp(&(*b as f64)),
        (N::Float(a), N::Float(b)) => a.partial_cmp(b),
        (N::Str(a), N::Str(b)) => {
            return N::Bool(match op {
                CmpOp::Eq => a == b,
                CmpOp::Ne => a != b,
                _ => false,
            })
        }
        (N::Bool(a), N::Bool(b)) => {
            return N::Bool(match op {
                CmpOp::Eq => a == b,
                CmpOp::Ne => a != b,
                _ => false,
            })
        }
        _ => return N::Bool(false),
    };
    let Some(o) = ord else {
        return N::Bool(false);
    };
    N::Bool(match op {
        CmpOp::Eq => o == Equal,
        CmpOp::Ne => o != Equal,
        CmpOp::Lt => o == Less,
        CmpOp::Le => o != Greater,
        CmpOp::Gt => o == Greater,
        CmpOp::Ge => o != Less,
    })
}

fn arith(op: ArithOp, l: N, r: N) -> N {
    match (l, r) {
        (N::Int(a), N::Int(b)) => match op {
            ArithOp::Add => N::Int(a.wrapping_add(b)),
            ArithOp::Sub => N::Int(a.wrapping_sub(b)),
            ArithOp::Mul => N::Int(a.wrapping_mul(b)),
            ArithOp::Div if b == 0 => N::Null,
            ArithOp::Div => N::Int(a.wrapping_div(b)),
        },
        (a @ (N::Int(_) | N::Float(_)), b @ (N::Int(_) | N::Float(_))) => {
            let f = |n: N| match n {
                N::Int(i) => i as f64,
                N::Float(f) => f,
                _ => unreachable!(),
            };
            let (a, b) = (f(a), f(b));
            N::Float(match op {
                ArithOp::Add => a + b,
                ArithOp::Sub => a - b,
                ArithOp::Mul => a * b,
                ArithOp::Div => a / b,
            })
        }
        _ => N::Null,
    }
}

/// LIKE by recursion on the pattern.
fn like(p: &[char], t: &[char], escape: Option<char>) -> bool {
    match p.split_first() {
        None => t.is_empty(),
        Some((&c, rest)) if Some(c) == escape => {
            let (lit, rest) = rest.split_first().map_or((c, rest), |(&l, r)| (l, r));
            t.first() == Some(&lit) && like(rest, &t[1..], escape)
        }
        Some(('%', rest)) => (0..=t.len()).any(|i| like(rest, &t[i..], escape)),
        Some(('_', rest)) => !t.is_empty() && like(rest, &t[1..], escape),
        Some((&c, rest)) => t.first() == Some(&c) && like(rest, &t[1..], escape),
    }
}

// Random selectors, always well-typed, printed with every subexpression parenthesized.

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(&NAMES[..]).prop_map(str::to_owned)
}

fn text() -> impl Strategy<Value = String> {
    "[ab%_'x]{0,4}"
}

fn number() -> BoxedStrategy<(Ast, String)> {
    let leaf = prop_oneof![
        (-20i64..20).prop_map(|n| (Ast::Int(n), format!("({n})"))),
        (-20i32..20, 1u8..4).prop_map(|(n, d)| {
            let f = f64::from(n) / f64::from(d);
            (Ast::Float(f), format!("({f:?})"))
        }),
        name().prop_map(|n| (Ast::Ident(n.clone()), n)),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        (
            inner.clone(),
            prop::sample::select(vec![ArithOp::Add, ArithOp::Sub, ArithOp::Mul, ArithOp::Div]),
            inner,
        )
            .prop_map(|((l, lt), op, (r, rt))| {
                let sym = match op {
                    ArithOp::Add => "+",
                    ArithOp::Sub => "-",
                    ArithOp::Mul => "*",
                    ArithOp::Div => "/",
                };
                (
                    Ast::Arith(op, Box::new(l), Box::new(r)),
                    format!("({lt} {sym} {rt})"),
                )
            })
    })
    .boxed()
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn condition() -> BoxedStrategy<(Ast, String)> {
    let ops = vec![
        (CmpOp::Eq, "="),
        (CmpOp::Ne, "<>"),
        (CmpOp::Lt, "<"),
        (CmpOp::Le, "<="),
        (CmpOp::Gt, ">"),
        (CmpOp::Ge, ">="),
    ];
    let leaf = prop_oneof![
        (number(), prop::sample::select(ops), number()).prop_map(|((l, lt), (op, s), (r, rt))| (
            Ast::Cmp(op, Box::new(l), Box::new(r)),
            format!("({lt} {s} {rt})")
        )),
        (name(), prop::bool::ANY, text()).prop_map(|(n, eq, t)| (
            Ast::Cmp(
                if eq { CmpOp::Eq } else { CmpOp::Ne },
                Box::new(Ast::Ident(n.clone())),
                Box::new(Ast::Str(t.clone()))
            ),
            format!("({n} {} {})", if eq { "=" } else { "<>" }, quote(&t))
        )),
        name().prop_map(|n| (Ast::Ident(n.clone()), n)),
        (name(), prop::bool::ANY).prop_map(|(n, neg)| (
            Ast::IsNull {
                value: Box::new(Ast::Ident(n.clone())),
                negated: neg
            },
            format!("({n} IS {}NULL)", if neg { "NOT " } else { "" })
        )),
        (name(), prop::collection::vec(text(), 1..3), prop::bool::ANY).prop_map(
            |(n, list, neg)| (
                Ast::In {
                    value: Box::new(Ast::Ident(n.clone())),
                    list: list.iter().map(|s| Ast::Str(s.clone())).collect(),
                    negated: neg
                },
                format!(
                    "({n} {}IN ({}))",
                    if neg { "NOT " } else { "" },
                    list.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ")
                )
            )
        ),
        (name(), "[ab%_x!]{0,5}", prop::bool::ANY, prop::bool::ANY).prop_map(
            |(n, pattern, escaped, neg)| (
                Ast::Like {
                    value: Box::new(Ast::Ident(n.clone())),
                    pattern: pattern.clone(),
                    escape: escaped.then_some('!'),
                    negated: neg
                },
                format!(
                    "({n} {}LIKE {}{})",
                    if neg { "NOT " } else { "" },
                    quote(&pattern),
                    if escaped { " ESCAPE '!'" } else { "" }
                )
            )
        ),
        (number(), number(), number(), prop::bool::ANY).prop_map(
            |((v, vt), (l, lt), (h, ht), neg)| (
                Ast::Between {
                    value: Box::new(v),
                    low: Box::new(l),
                    high: Box::new(h),
                    negated: neg
                },
                format!(
                    "({vt} {}BETWEEN {lt} AND {ht})",
                    if neg { "NOT " } else { "" }
                )
            )
        ),
    ];
    leaf.prop_recursive(3, 16, 2, |inner| {
        prop_oneof![
            inner
                .clone()
                .prop_map(|(c, t)| (Ast::Not(Box::new(c)), format!("(NOT {t})"))),
            (inner.clone(), inner.clone()).prop_map(|((l, lt), (r, rt))| (
                Ast::And(Box::new(l), Box::new(r)),
                format!("({lt} AND {rt})")
            )),
            (inner.clone(), inner).prop_map(|((l, lt), (r, rt))| (
                Ast::Or(Box::new(l), Box::new(r)),
                format!("({lt} OR {rt})")
            )),
        ]
    })
    .boxed()
}

fn property() -> impl Strategy<Value = Option<P>> {
    prop_oneof![
        Just(None),
        prop::bool::ANY.prop_map(|b| Some(P::Bool(b))),
        (-20i64..20).prop_map(|n| Some(P::Int(n))),
        (-20i32..20, 1u8..4).prop_map(|(n, d)| Some(P::Float(f64::from(n) / f64::from(d)))),
        text().prop_map(|s| Some(P::Str(s))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_compiled_selector_agrees_with_the_naive_interpreter(
        (ast, text) in condition(),
        values in prop::collection::vec(property(), 4),
        delivery_count in 0u32..3,
    ) {
        let mut props = HashMap::new();
        let mut builder = ApplicationProperties::builder();
        for (name, value) in NAMES.iter().zip(values) {
            let Some(value) = value else { continue };
            builder = match &value {
                P::Bool(b) => builder.insert(*name, *b),
                P::Int(n) => builder.insert(*name, SimpleValue::Long(*n)),
                P::Float(f) => builder.insert(*name, SimpleValue::Double((*f).into())),
                P::Str(s) => builder.insert(*name, s.as_str()),
            };
            props.insert((*name).to_owned(), value);
        }
        let m = message(
            AmqpMessage::builder()
                .application_properties(builder)
                .body(body())
                .build(),
        );
        let selector = Selector::parse(&text, Dialect::Jms)
            .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let expected = naive(&ast, &props) == N::Bool(true);
        prop_assert_eq!(selector.matches(&m, delivery_count), expected, "{}", text);
    }
}
