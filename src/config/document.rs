//! A TOML document read into values that remember where they were written, and the
//! typed readers `config.rs` validates them with. Every reader's error carries the
//! value's line, column and key path, so the schema code never has to think about it.

use std::net::SocketAddr;
use std::ops::Range;

use super::error::{ConfigError, Location};

/// Extends a key path, quoting keys that TOML would need quoted.
pub(super) fn child(path: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

pub(super) fn get<'n>(table: &'n [(String, Node)], key: &str) -> Option<&'n Node> {
    table.iter().find(|(k, _)| k == key).map(|(_, node)| node)
}

/// The text being parsed, for turning positions into locations.
pub(super) struct Source<'a> {
    pub(super) origin: &'a str,
    pub(super) text: &'a str,
}

impl Source<'_> {
    pub(super) fn location(&self, offset: usize) -> Location {
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            origin: self.origin.to_owned(),
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }

    pub(super) fn invalid(&self, node: &Node, path: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            at: self.location(node.start()),
            key: path.to_owned(),
            message,
        }
    }

    /// Checks that `node` is a table holding only `allowed` keys.
    pub(super) fn table<'n>(
        &self,
        node: &'n Node,
        path: &str,
        label: &str,
        allowed: &'static [&'static str],
    ) -> Result<&'n [(String, Node)], ConfigError> {
        let Value::Table(entries) = &node.value else {
            return Err(self.invalid(
                node,
                path,
                format!("expected a table, found {}", node.describe()),
            ));
        };
        match entries
            .iter()
            .find(|(key, _)| !allowed.contains(&key.as_str()))
        {
            Some((key, value)) => Err(ConfigError::UnknownKey {
                at: self.location(self.key_start(key, value)),
                key: key.clone(),
                table: label.to_owned(),
                expected: allowed.to_vec(),
            }),
            None => Ok(entries),
        }
    }

    /// Where `key` is written: its own span when the parser kept one, else looked for
    /// back from the value along its line, else the value itself.
    fn key_start(&self, key: &str, value: &Node) -> usize {
        if let Some(at) = value.key_at {
            return at;
        }
        let start = value.start();
        let line_start = self
            .text
            .get(..start)
            .and_then(|t| t.rfind('\n'))
            .map_or(0, |i| i + 1);
        self.text
            .get(line_start..start)
            .and_then(|line| line.rfind(key))
            .map_or(start, |i| line_start + i)
    }

    pub(super) fn string<'n>(&self, node: &'n Node, path: &str) -> Result<&'n str, ConfigError> {
        match &node.value {
            Value::String(s) => Ok(s),
            _ => Err(self.invalid(
                node,
                path,
                format!("expected a string, found {}", node.describe()),
            )),
        }
    }

    pub(super) fn non_empty(&self, node: &Node, path: &str) -> Result<String, ConfigError> {
        match self.string(node, path)? {
            "" => Err(self.invalid(node, path, "must not be empty".to_owned())),
            s => Ok(s.to_owned()),
        }
    }

    pub(super) fn strings(&self, node: &Node, path: &str) -> Result<Vec<String>, ConfigError> {
        let Value::Array(items) = &node.value else {
            return Err(self.invalid(
                node,
                path,
                format!("expected an array of strings, found {}", node.describe()),
            ));
        };
        items
            .iter()
            .map(|item| self.string(item, path).map(str::to_owned))
            .collect()
    }

    pub(super) fn boolean(&self, node: &Node, path: &str) -> Result<bool, ConfigError> {
        match node.value {
            Value::Boolean(b) => Ok(b),
            _ => Err(self.invalid(
                node,
                path,
                format!("expected true or false, found {}", node.describe()),
            )),
        }
    }

    pub(super) fn integer<T>(
        &self,
        node: &Node,
        path: &str,
        min: T,
        max: T,
    ) -> Result<T, ConfigError>
    where
        T: TryFrom<i64> + PartialOrd + std::fmt::Display,
    {
        let found = match node.value {
            Value::Integer(i) => match T::try_from(i) {
                Ok(v) if v >= min && v <= max => return Ok(v),
                _ => i.to_string(),
            },
            _ => node.describe(),
        };
        let message = format!("expected an integer from {min} to {max}, found {found}");
        Err(self.invalid(node, path, message))
    }

    /// A size in bytes.
    pub(super) fn size(&self, node: &Node, path: &str) -> Result<u64, ConfigError> {
        self.non_negative(node, path)
    }

    /// A whole number of seconds.
    pub(super) fn seconds(&self, node: &Node, path: &str) -> Result<u64, ConfigError> {
        self.non_negative(node, path)
    }

    /// A count from 0 to `u32::MAX`.
    pub(super) fn count(&self, node: &Node, path: &str) -> Result<u32, ConfigError> {
        self.integer(node, path, 0, u32::MAX)
    }

    /// A duration in milliseconds: an integer (milliseconds), or a string with units as
    /// humantime reads them (`"250ms"`, `"30s"`, `"1h 30m"`), which is easier to get right
    /// than counting zeros.
    pub(super) fn duration_ms(&self, node: &Node, path: &str) -> Result<u64, ConfigError> {
        let expected = r#"expected milliseconds or a duration such as "30s""#;
        let text = match &node.value {
            Value::Integer(i) if *i >= 0 => return Ok(i.unsigned_abs()),
            Value::String(text) => text,
            _ => {
                let message = format!("{expected}, found {}", node.describe());
                return Err(self.invalid(node, path, message));
            }
        };
        let duration = humantime::parse_duration(text).map_err(|_| {
            self.invalid(node, path, format!("{expected}, found {}", node.describe()))
        })?;
        let problem = match u64::try_from(duration.as_millis()) {
            Ok(ms) if duration.subsec_nanos() % 1_000_000 == 0 => return Ok(ms),
            Ok(_) => "expected a whole number of milliseconds",
            Err(_) => "expected a duration of at most 18446744073709551615 milliseconds",
        };
        let message = format!("{problem}, found {}", node.describe());
        Err(self.invalid(node, path, message))
    }

    /// The name of a queue (non-empty, at most 255 bytes, no control characters: the
    /// rules the router applies), for settings that are off when absent.
    pub(super) fn optional_queue_name(
        &self,
        node: &Node,
        path: &str,
    ) -> Result<Option<String>, ConfigError> {
        let name = self.non_empty(node, path)?;
        let why = if name.len() > 255 {
            "a queue name must be at most 255 bytes long"
        } else if name.chars().any(char::is_control) {
            "a queue name must not contain control characters"
        } else {
            return Ok(Some(name));
        };
        Err(self.invalid(node, path, why.to_owned()))
    }

    fn non_negative(&self, node: &Node, path: &str) -> Result<u64, ConfigError> {
        match node.value {
            Value::Integer(i) if i >= 0 => Ok(i.unsigned_abs()),
            Value::Integer(i) => Err(self.invalid(
                node,
                path,
                format!("expected a non-negative integer, found {i}"),
            )),
            _ => Err(self.invalid(
                node,
                path,
                format!("expected a non-negative integer, found {}", node.describe()),
            )),
        }
    }

    /// A non-empty ASCII name, used as an AMQP symbol (which is ASCII by definition), for
    /// settings that are off when absent.
    pub(super) fn optional_symbol(
        &self,
        node: &Node,
        path: &str,
    ) -> Result<Option<String>, ConfigError> {
        let name = self.non_empty(node, path)?;
        if !name.is_ascii() {
            let message = "must be ASCII: it is sent as an AMQP symbol".to_owned();
            return Err(self.invalid(node, path, message));
        }
        Ok(Some(name))
    }

    /// Exactly one address.
    pub(super) fn one_address(&self, node: &Node, path: &str) -> Result<SocketAddr, ConfigError> {
        match self.listen(node, path)?.as_slice() {
            [addr] => Ok(*addr),
            _ => Err(self.invalid(node, path, "expected one address, not an array".to_owned())),
        }
    }

    /// One address or a non-empty array of them.
    pub(super) fn listen(&self, node: &Node, path: &str) -> Result<Vec<SocketAddr>, ConfigError> {
        let items = match &node.value {
            Value::Array(items) if items.is_empty() => {
                return Err(self.invalid(node, path, "expected at least one address".to_owned()))
            }
            Value::Array(items) => items.iter().collect(),
            _ => vec![node],
        };
        items
            .into_iter()
            .map(|item| {
                self.string(item, path)?.parse().map_err(|_| {
                    let message = format!(
                        r#"expected an IP address and port like "0.0.0.0:5672", found {}"#,
                        item.describe()
                    );
                    self.invalid(item, path, message)
                })
            })
            .collect()
    }
}

/// A parsed TOML value that remembers where it was written: the value's span and, for a
/// table entry, where its key is. Built from `toml_edit`'s parsed document, which keeps the
/// spans of everything it read.
#[derive(Debug)]
pub(super) struct Node {
    pub(super) span: Option<Range<usize>>,
    /// Where the key naming this value starts, when it is a table's entry.
    pub(super) key_at: Option<usize>,
    pub(super) value: Value,
}

#[derive(Debug)]
pub(super) enum Value {
    Table(Vec<(String, Node)>),
    Array(Vec<Node>),
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Datetime(String),
}

impl Node {
    /// Parses `text` as a TOML document. The error is toml_edit's, with its span.
    pub(super) fn parse(text: &str) -> Result<Node, toml_edit::TomlError> {
        let doc = toml_edit::ImDocument::parse(text)?;
        Ok(Node::from_table(doc.as_table()))
    }

    fn from_table(table: &dyn toml_edit::TableLike) -> Node {
        let entries = table
            .iter()
            .map(|(key, item)| {
                let mut node = Node::from_item(item);
                node.key_at = table
                    .key(key)
                    .and_then(toml_edit::Key::span)
                    .map(|s| s.start);
                (key.to_owned(), node)
            })
            .collect();
        Node {
            span: None,
            key_at: None,
            value: Value::Table(entries),
        }
    }

    fn from_item(item: &toml_edit::Item) -> Node {
        use toml_edit::Item;
        match item {
            Item::Value(v) => Node::from_value(v),
            Item::Table(t) => Node {
                span: t.span(),
                ..Node::from_table(t)
            },
            Item::ArrayOfTables(a) => Node {
                span: a.span(),
                key_at: None,
                value: Value::Array(
                    a.iter()
                        .map(|t| Node {
                            span: t.span(),
                            ..Node::from_table(t)
                        })
                        .collect(),
                ),
            },
            Item::None => Node {
                span: None,
                key_at: None,
                value: Value::Table(Vec::new()),
            },
        }
    }

    fn from_value(v: &toml_edit::Value) -> Node {
        use toml_edit::Value as V;
        let value = match v {
            V::String(s) => Value::String(s.value().clone()),
            V::Integer(i) => Value::Integer(*i.value()),
            V::Float(f) => Value::Float(*f.value()),
            V::Boolean(b) => Value::Boolean(*b.value()),
            V::Datetime(d) => Value::Datetime(d.value().to_string()),
            V::Array(a) => Value::Array(a.iter().map(Node::from_value).collect()),
            V::InlineTable(t) => {
                return Node {
                    span: t.span(),
                    ..Node::from_table(t)
                }
            }
        };
        Node {
            span: v.span(),
            key_at: None,
            value,
        }
    }

    /// Start of the value, or of its first child for an implicit table.
    pub(super) fn start(&self) -> usize {
        match (&self.span, &self.value) {
            (Some(span), _) => span.start,
            (None, Value::Table(entries)) => {
                entries.iter().map(|(_, n)| n.start()).min().unwrap_or(0)
            }
            (None, _) => 0,
        }
    }

    /// The value as an error message shows what was found.
    pub(super) fn describe(&self) -> String {
        match &self.value {
            Value::Table(_) => "a table".to_owned(),
            Value::Array(_) => "an array".to_owned(),
            Value::String(s) => format!("{s:?}"),
            Value::Integer(i) => format!("the integer {i}"),
            Value::Float(f) => format!("the number {f}"),
            Value::Boolean(b) => format!("{b}"),
            Value::Datetime(d) => format!("the date-time {d}"),
        }
    }
}
