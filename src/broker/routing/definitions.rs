//! The exchanges and bindings broker.toml declares, made real at start: each exchange
//! declared, each binding's queue found or created, each binding made.

use crate::config::{ArgumentValue, BindingDecl, ExchangeDecl};

use super::exchange::{ExchangeKind, ExchangeSpec, HeaderValue, HeadersMatch, Matcher, Unroutable};
use crate::broker::router::{RouteError, Router};

/// The spec of a declared exchange (its values were checked when the file was read).
pub fn spec_of(decl: &ExchangeDecl) -> ExchangeSpec {
    ExchangeSpec {
        name: decl.name.clone(),
        kind: ExchangeKind::parse(&decl.kind).unwrap_or(ExchangeKind::Direct),
        durable: decl.durable,
        unroutable: Unroutable::parse(&decl.unroutable).unwrap_or_default(),
        alternate_exchange: decl.alternate_exchange.clone(),
    }
}

/// What a binding of `kind` with `key` and `arguments` matches: everything on a fanout
/// exchange, the header values on a headers exchange, else the key.
pub fn matcher_of(kind: ExchangeKind, key: &str, arguments: &[(String, ArgumentValue)]) -> Matcher {
    match kind {
        ExchangeKind::Fanout => Matcher::All,
        ExchangeKind::Headers => {
            let any = arguments
                .iter()
                .any(|(k, v)| k == "x-match" && *v == ArgumentValue::Str("any".to_owned()));
            let values = arguments
                .iter()
                .filter(|(k, _)| k != "x-match")
                .map(|(k, v)| {
                    let value = match v {
                        ArgumentValue::Str(s) => HeaderValue::Str(s.clone()),
                        ArgumentValue::Int(n) => HeaderValue::Int(*n),
                        ArgumentValue::Bool(b) => HeaderValue::Bool(*b),
                    };
                    (k.clone(), value)
                })
                .collect();
            Matcher::Headers(HeadersMatch { any, values })
        }
        ExchangeKind::Direct | ExchangeKind::Topic => Matcher::Key(key.to_owned()),
    }
}

/// Declares `exchanges` and makes `bindings` (creating their queues as their settings say).
pub fn apply(
    router: &Router,
    exchanges: &[ExchangeDecl],
    bindings: &[BindingDecl],
) -> Result<(), RouteError> {
    for decl in exchanges {
        router.declare_exchange(spec_of(decl))?;
    }
    for b in bindings {
        let exchange = router
            .exchanges()
            .get(&b.exchange)
            .ok_or_else(|| RouteError::NoExchange(b.exchange.clone()))?;
        let queue = router.queue(&b.queue)?;
        let matcher = matcher_of(exchange.spec().kind, &b.key, &b.arguments);
        exchange.bind(queue, matcher).map_err(|why| {
            RouteError::Invalid(format!(
                "binding of '{}' to '{}': {why}",
                b.queue, b.exchange
            ))
        })?;
    }
    Ok(())
}
