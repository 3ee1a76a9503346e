//! A selector parsed and compiled, ready to evaluate against messages.

use super::compile::{self, Expr};
use super::error::SelectorError;
use super::fields::{Dialect, Input};
use super::parser;
use super::value::Tri;
use crate::message::Message;

/// A compiled selector.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    text: String,
    dialect: Dialect,
    expr: Expr,
}

impl Selector {
    /// Parses and compiles `text`.
    pub fn parse(text: &str, dialect: Dialect) -> Result<Selector, SelectorError> {
        let ast = parser::parse(text)?;
        let expr = compile::compile(&ast, dialect).map_err(|message| {
            // Resolution errors name the identifier; point at its first appearance.
            let column = message
                .split('\'')
                .nth(1)
                .and_then(|name| text.find(name))
                .map_or(1, |byte| text[..byte].chars().count() + 1);
            SelectorError::at(column, message)
        })?;
        Ok(Selector {
            text: text.to_owned(),
            dialect,
            expr,
        })
    }

    /// The selector as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Its dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Whether `message`, delivered `delivery_count` times before, is selected: the selector
    /// is true for it (false and unknown are not).
    pub fn matches(&self, message: &Message, delivery_count: u32) -> bool {
        self.matches_input(&Input::new(message, delivery_count))
    }

    pub(crate) fn matches_input(&self, input: &Input<'_>) -> bool {
        self.expr.eval(input).truth() == Tri::True
    }
}
