//! `<data_dir>/definitions.json`: the durable exchanges and the bindings of durable queues, so
//! that those declared at run time (admin API, `sluice ctl`, durable subscriptions) come back
//! after a restart as the queues themselves do from the journal. broker.toml's are declared at
//! every start anyway; keeping them here too is harmless (declaring is idempotent).
//!
//! The file is small and changes only when an operator or a subscriber changes the topology,
//! so it is rewritten whole: to a temporary file, fsynced, renamed over the old one, and the
//! directory fsynced, so a crash leaves the old or the new version, never a torn one.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::exchange::{ExchangeKind, ExchangeSpec, HeaderValue, HeadersMatch, Matcher, Unroutable};

/// The file's contents.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Saved {
    /// Durable exchanges (not `amq.*`).
    pub exchanges: Vec<SavedExchange>,
    /// Bindings between a durable exchange and a durable queue.
    pub bindings: Vec<SavedBinding>,
    /// The selectors of durable subscriptions (what each stores).
    #[serde(default)]
    pub selectors: Vec<SavedSelector>,
}

/// A durable subscription's selector.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedSelector {
    /// The subscription queue.
    pub queue: String,
    /// `"jms"` or `"sql"`.
    pub dialect: String,
    /// The selector as the subscriber wrote it.
    pub text: String,
}

/// One exchange.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedExchange {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    unroutable: String,
    alternate_exchange: Option<String>,
}

/// One binding.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedBinding {
    /// The exchange.
    pub exchange: String,
    /// The queue.
    pub queue: String,
    /// `{"all": true}`, `{"key": K}` or `{"headers": {...}, "any": bool}`.
    matcher: Map<String, Value>,
}

impl SavedExchange {
    /// What to save of `spec`.
    pub fn of(spec: &ExchangeSpec) -> SavedExchange {
        SavedExchange {
            name: spec.name.clone(),
            kind: spec.kind.name().to_owned(),
            unroutable: spec.unroutable.name().to_owned(),
            alternate_exchange: spec.alternate_exchange.clone(),
        }
    }

    /// The spec it saved; None if the file names a type it does not know.
    pub fn spec(&self) -> Option<ExchangeSpec> {
        Some(ExchangeSpec {
            name: self.name.clone(),
            kind: ExchangeKind::parse(&self.kind)?,
            durable: true,
            unroutable: Unroutable::parse(&self.unroutable)?,
            alternate_exchange: self.alternate_exchange.clone(),
        })
    }
}

impl SavedBinding {
    /// What to save of a binding.
    pub fn of(exchange: &str, queue: &str, matcher: &Matcher) -> SavedBinding {
        let mut m = Map::new();
        match matcher {
            Matcher::All => {
                m.insert("all".into(), Value::Bool(true));
            }
            Matcher::Key(k) => {
                m.insert("key".into(), Value::String(k.clone()));
            }
            Matcher::Headers(h) => {
                let values: Map<String, Value> = h
                    .values
                    .iter()
                    .map(|(name, v)| {
                        let v = match v {
                            HeaderValue::Str(s) => Value::String(s.clone()),
                            HeaderValue::Int(n) => Value::from(*n),
                            HeaderValue::Bool(b) => Value::Bool(*b),
                        };
                        (name.clone(), v)
                    })
                    .collect();
                m.insert("headers".into(), Value::Object(values));
                m.insert("any".into(), Value::Bool(h.any));
            }
        }
        SavedBinding {
            exchange: exchange.to_owned(),
            queue: queue.to_owned(),
            matcher: m,
        }
    }

    /// The matcher it saved; None if the file holds something else.
    pub fn matcher(&self) -> Option<Matcher> {
        if self.matcher.get("all") == Some(&Value::Bool(true)) {
            return Some(Matcher::All);
        }
        if let Some(Value::String(k)) = self.matcher.get("key") {
            return Some(Matcher::Key(k.clone()));
        }
        let Value::Object(headers) = self.matcher.get("headers")? else {
            return None;
        };
        let mut values = Vec::new();
        for (name, v) in headers {
            let v = match v {
                Value::String(s) => HeaderValue::Str(s.clone()),
                Value::Bool(b) => HeaderValue::Bool(*b),
                Value::Number(n) => HeaderValue::Int(n.as_i64()?),
                _ => return None,
            };
            values.push((name.clone(), v));
        }
        let any = self.matcher.get("any") == Some(&Value::Bool(true));
        Some(Matcher::Headers(HeadersMatch { any, values }))
    }
}

/// Where the definitions of a data directory live.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join("definitions.json")
}

/// Reads the file; an absent file is empty definitions.
pub fn load(path: &Path) -> Result<Saved, String> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: not valid definitions: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Saved::default()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Replaces the file with `saved`, atomically and durably.
pub fn store(path: &Path, saved: &Saved) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(saved).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&text)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_binding_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        assert_eq!(
            load(&path).unwrap(),
            Saved::default(),
            "no file: nothing saved"
        );
        let headers = Matcher::Headers(HeadersMatch {
            any: true,
            values: vec![
                ("colour".into(), HeaderValue::Str("green".into())),
                ("size".into(), HeaderValue::Int(3)),
            ],
        });
        let matchers = [Matcher::All, Matcher::Key("log.#".into()), headers];
        let saved = Saved {
            exchanges: vec![SavedExchange::of(&ExchangeSpec::new(
                "logs",
                ExchangeKind::Topic,
            ))],
            bindings: matchers
                .iter()
                .map(|m| SavedBinding::of("logs", "audit", m))
                .collect(),
            selectors: vec![SavedSelector {
                queue: "c:sub".into(),
                dialect: "jms".into(),
                text: "colour = 'green'".into(),
            }],
        };
        store(&path, &saved).unwrap();
        let back = load(&path).unwrap();
        assert_eq!(back, saved);
        let specs: Vec<_> = back.exchanges.iter().map(|x| x.spec().unwrap()).collect();
        assert_eq!(specs, [ExchangeSpec::new("logs", ExchangeKind::Topic)]);
        let again: Vec<_> = back.bindings.iter().map(|b| b.matcher().unwrap()).collect();
        assert_eq!(again, matchers);
        // A file written before selectors were kept still loads.
        std::fs::write(&path, br#"{"exchanges": [], "bindings": []}"#).unwrap();
        assert_eq!(load(&path).unwrap(), Saved::default());
        std::fs::write(&path, b"{not json").unwrap();
        assert!(load(&path).unwrap_err().contains("not valid definitions"));
    }
}
