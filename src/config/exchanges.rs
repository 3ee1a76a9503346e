//! `[exchanges."NAME"]` tables and `[[bindings]]` entries: the exchanges and bindings the
//! broker declares at start, besides the `amq.*` exchanges it always has.

use super::document::{child, get, Node, Source, Value};
use super::error::ConfigError;

/// The exchange types.
pub const EXCHANGE_TYPES: [&str; 4] = ["direct", "fanout", "topic", "headers"];
/// What an exchange may do with a message no binding matches.
pub const UNROUTABLE: [&str; 3] = ["release", "reject", "drop"];

const EXCHANGE_KEYS: &[&str] = &["type", "durable", "unroutable", "alternate_exchange"];
const BINDING_KEYS: &[&str] = &["exchange", "queue", "key", "arguments"];

/// One `[exchanges."NAME"]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeDecl {
    /// The exchange's name.
    pub name: String,
    /// One of [`EXCHANGE_TYPES`].
    pub kind: String,
    /// Kept across restarts (default true).
    pub durable: bool,
    /// One of [`UNROUTABLE`] (default "release").
    pub unroutable: String,
    /// Where messages no binding matches go first.
    pub alternate_exchange: Option<String>,
}

/// A value of a headers binding's `arguments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgumentValue {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
}

/// One `[[bindings]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingDecl {
    /// The exchange (declared in the file, or an `amq.*` one).
    pub exchange: String,
    /// The queue, created if it does not exist.
    pub queue: String,
    /// The routing key or topic pattern ("" by default; ignored by fanout and headers).
    pub key: String,
    /// For a headers exchange: `x-match` ("all" or "any") and the values to match.
    pub arguments: Vec<(String, ArgumentValue)>,
}

/// Reads the `[exchanges]` table.
pub(super) fn read_exchanges(src: &Source, node: &Node) -> Result<Vec<ExchangeDecl>, ConfigError> {
    let Value::Table(tables) = &node.value else {
        let found = node.describe();
        return Err(src.invalid(
            node,
            "exchanges",
            format!("expected a table, found {found}"),
        ));
    };
    let mut out = Vec::new();
    for (name, table) in tables {
        let path = child("exchanges", name);
        if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
            let message = "an exchange name is 1 to 255 bytes without control characters";
            return Err(src.invalid(table, &path, message.to_owned()));
        }
        if name.starts_with("amq.") {
            let message = "names starting with 'amq.' are reserved for the broker's own exchanges";
            return Err(src.invalid(table, &path, message.to_owned()));
        }
        let entries = src.table(table, &path, &format!("[{path}]"), EXCHANGE_KEYS)?;
        let Some(kind_node) = get(entries, "type") else {
            let message = format!("missing key `type` (one of {})", EXCHANGE_TYPES.join(", "));
            return Err(src.invalid(table, &path, message));
        };
        let kind = one_of(src, kind_node, &child(&path, "type"), &EXCHANGE_TYPES)?;
        let mut decl = ExchangeDecl {
            name: name.clone(),
            kind,
            durable: true,
            unroutable: "release".to_owned(),
            alternate_exchange: None,
        };
        for (key, value) in entries {
            let at = child(&path, key);
            match key.as_str() {
                "durable" => decl.durable = src.boolean(value, &at)?,
                "unroutable" => decl.unroutable = one_of(src, value, &at, &UNROUTABLE)?,
                "alternate_exchange" => decl.alternate_exchange = Some(src.non_empty(value, &at)?),
                _ => {}
            }
        }
        out.push(decl);
    }
    Ok(out)
}

/// Reads the `[[bindings]]` entries; each exchange must be declared (in `exchanges`) or be
/// one of the broker's `amq.*`.
pub(super) fn read_bindings(
    src: &Source,
    node: &Node,
    exchanges: &[ExchangeDecl],
) -> Result<Vec<BindingDecl>, ConfigError> {
    let Value::Array(entries) = &node.value else {
        let found = node.describe();
        return Err(src.invalid(
            node,
            "bindings",
            format!("expected [[bindings]] tables, found {found}"),
        ));
    };
    let mut out = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let path = format!("bindings[{index}]");
        let label = format!("[[bindings]] entry {}", index + 1);
        let table = src.table(entry, &path, &label, BINDING_KEYS)?;
        let required = |key: &str| {
            get(table, key).ok_or_else(|| src.invalid(entry, &path, format!("missing key `{key}`")))
        };
        let exchange_node = required("exchange")?;
        let exchange = src.non_empty(exchange_node, &child(&path, "exchange"))?;
        let known = ["amq.direct", "amq.fanout", "amq.topic", "amq.match"]
            .contains(&exchange.as_str())
            || exchanges.iter().any(|x| x.name == exchange);
        if !known {
            let message =
                format!("no exchange \"{exchange}\": declare it in [exchanges.\"{exchange}\"]");
            return Err(src.invalid(exchange_node, &child(&path, "exchange"), message));
        }
        let queue = src.non_empty(required("queue")?, &child(&path, "queue"))?;
        let key = match get(table, "key") {
            Some(k) => src.string(k, &child(&path, "key"))?.to_owned(),
            None => String::new(),
        };
        let arguments = match get(table, "arguments") {
            Some(args) => read_arguments(src, args, &child(&path, "arguments"))?,
            None => Vec::new(),
        };
        out.push(BindingDecl {
            exchange,
            queue,
            key,
            arguments,
        });
    }
    Ok(out)
}

fn read_arguments(
    src: &Source,
    node: &Node,
    path: &str,
) -> Result<Vec<(String, ArgumentValue)>, ConfigError> {
    let Value::Table(entries) = &node.value else {
        let found = node.describe();
        return Err(src.invalid(node, path, format!("expected a table, found {found}")));
    };
    let mut out = Vec::new();
    for (key, value) in entries {
        let at = child(path, key);
        let value = match &value.value {
            Value::String(s) if key == "x-match" && s != "all" && s != "any" => {
                return Err(src.invalid(
                    value,
                    &at,
                    format!(r#"expected "all" or "any", found "{s}""#),
                ));
            }
            Value::String(s) => ArgumentValue::Str(s.clone()),
            Value::Integer(n) => ArgumentValue::Int(*n),
            Value::Boolean(b) => ArgumentValue::Bool(*b),
            _ => {
                let found = value.describe();
                return Err(src.invalid(
                    value,
                    &at,
                    format!("expected a string, integer or boolean, found {found}"),
                ));
            }
        };
        out.push((key.clone(), value));
    }
    Ok(out)
}

/// A string that must be one of `allowed`.
fn one_of(src: &Source, node: &Node, path: &str, allowed: &[&str]) -> Result<String, ConfigError> {
    let text = src.string(node, path)?;
    if allowed.contains(&text) {
        return Ok(text.to_owned());
    }
    let expected: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
    Err(src.invalid(
        node,
        path,
        format!("expected one of {}, found \"{text}\"", expected.join(", ")),
    ))
}
