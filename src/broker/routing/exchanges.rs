//! The broker's exchanges by name: the four RabbitMQ declares by default (`amq.direct`,
//! `amq.fanout`, `amq.topic`, `amq.match`), those of broker.toml, and those declared since.

use std::sync::Arc;

use dashmap::mapref::entry::Entry as MapEntry;
use dashmap::DashMap;

use super::exchange::{Exchange, ExchangeKind, ExchangeSpec};
use crate::config::vhosts;

/// The exchanges that always exist and cannot be deleted.
pub const DEFAULT_EXCHANGES: [(&str, ExchangeKind); 4] = [
    ("amq.direct", ExchangeKind::Direct),
    ("amq.fanout", ExchangeKind::Fanout),
    ("amq.topic", ExchangeKind::Topic),
    ("amq.match", ExchangeKind::Headers),
];

/// Why an exchange could not be declared or deleted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// It exists with other properties.
    #[error("exchange '{0}' exists with other settings for: {1}")]
    Conflict(String, String),
    /// `amq.` names are the broker's.
    #[error("'{0}': exchange names starting with 'amq.' are reserved for the broker's own")]
    Reserved(String),
}

/// Exchanges by name.
#[derive(Debug)]
pub struct ExchangeTable {
    exchanges: DashMap<String, Arc<Exchange>>,
}

impl Default for ExchangeTable {
    fn default() -> ExchangeTable {
        let exchanges = DashMap::new();
        for (name, kind) in DEFAULT_EXCHANGES {
            exchanges.insert(
                name.to_owned(),
                Arc::new(Exchange::new(ExchangeSpec::new(name, kind))),
            );
        }
        ExchangeTable { exchanges }
    }
}

impl ExchangeTable {
    /// Declares the exchange `spec` describes: created if new, else it must agree with the
    /// one there. Returns it and whether it was created.
    pub fn declare(&self, spec: ExchangeSpec) -> Result<(Arc<Exchange>, bool), ExchangeError> {
        // A virtual host's own `amq.` exchanges come into being when first named.
        self.get(&spec.name);
        match self.exchanges.entry(spec.name.clone()) {
            MapEntry::Occupied(e) => {
                let differ = e.get().spec().differences(&spec);
                if differ.is_empty() {
                    Ok((e.get().clone(), false))
                } else {
                    Err(ExchangeError::Conflict(spec.name, differ.join(", ")))
                }
            }
            MapEntry::Vacant(slot) => {
                if reserved(&spec.name) {
                    return Err(ExchangeError::Reserved(spec.name));
                }
                tracing::info!(exchange = %spec.name, kind = spec.kind.name(), "exchange declared");
                Ok((slot.insert(Arc::new(Exchange::new(spec))).clone(), true))
            }
        }
    }

    /// The exchange `name`, if it exists.
    /// A virtual host has the four default exchanges too, made the first time one is named.
    pub fn get(&self, name: &str) -> Option<Arc<Exchange>> {
        if let Some(e) = self.exchanges.get(name) {
            return Some(e.clone());
        }
        let (Some(_), local) = vhosts::split(name) else {
            return None;
        };
        let (_, kind) = DEFAULT_EXCHANGES.iter().find(|(n, _)| *n == local)?;
        let made = self
            .exchanges
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(Exchange::new(ExchangeSpec::new(name, *kind))));
        Some(made.clone())
    }

    /// Deletes the exchange `name` with its bindings; whether it existed.
    pub fn delete(&self, name: &str) -> Result<bool, ExchangeError> {
        let local = vhosts::split(name).1;
        if DEFAULT_EXCHANGES.iter().any(|(n, _)| *n == local) {
            return Err(ExchangeError::Reserved(name.to_owned()));
        }
        Ok(self.exchanges.remove(name).is_some())
    }

    /// Every exchange, by name (a virtual host's default exchanges once named).
    pub fn all(&self) -> Vec<Arc<Exchange>> {
        let mut all: Vec<Arc<Exchange>> = self.exchanges.iter().map(|e| e.clone()).collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    /// Removes every binding of the queue `name`, which is being deleted.
    pub fn unbind_queue(&self, name: &str) {
        for exchange in self.exchanges.iter() {
            exchange.unbind_queue(name);
        }
    }
}

/// Whether `name` (in any virtual host) is an `amq.` name, the broker's own.
pub fn reserved(name: &str) -> bool {
    vhosts::split(name).1.starts_with("amq.")
}
