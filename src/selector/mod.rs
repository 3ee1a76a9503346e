//! Message selectors: JMS 2.0 §3.8 selectors and AMQP SQL filter expressions, parsed and
//! compiled once when a link attaches, then evaluated against each message's bytes in place;
//! and the other filters a source may carry (AMQP properties and application-properties
//! filters), combined into one [`Filter`].
//!
//! The language: comparisons (`=`, `<>`, `<`, `<=`, `>`, `>=`), `AND`/`OR`/`NOT` with SQL's
//! three-valued logic (an absent field is NULL, unknown; a message is selected only when the
//! selector is true), arithmetic (`+ - * /`, exact numbers as Java longs, approximate as
//! doubles, mixed promoted to double), `[NOT] BETWEEN`, `[NOT] IN (...)`,
//! `[NOT] LIKE '...' [ESCAPE '.']`, `IS [NOT] NULL`, string, numeric and boolean literals.
//! Values of unlike types never compare equal (the comparison is false, not an error);
//! strings and booleans compare only with `=` and `<>`. Identifiers: see [`fields`].

mod compile;
mod error;
mod expression;
mod fields;
mod filters;
mod lexer;
mod like;
mod parser;
mod value;

#[cfg(test)]
mod tests;

pub use expression::Selector;
pub use fields::Dialect;
pub use filters::{Filter, FilterValue, PropertiesFilter};
