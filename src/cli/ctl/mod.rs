//! `sluice ctl`: the operator's command line, in the spirit of `rabbitmqctl`, over the admin
//! HTTP API of a running broker (docs/admin-api.md).
//!
//! Blocking HTTP with `ureq`, so it needs no runtime. Exit codes: 0 done, 1 the broker could
//! not be reached or refused (the API's error is printed with its status), 2 bad usage.

mod client;
mod routing;
mod table;

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use clap::builder::NonEmptyStringValueParser;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Map, Value};

use client::{Client, Method};
use table::{
    Column, ConnectionColumn, QueueColumn, CONNECTION_DEFAULT, QUEUE_DEFAULT, SCHEDULED_COLUMNS,
};

/// Arguments of `sluice ctl`.
#[derive(Debug, Args)]
#[command(after_help = "\
Exit status: 0 done; 1 the broker was not reachable or refused (its error is printed); 2 bad usage.

Examples:
  sluice ctl list-queues --columns name,ready,unacked,deliver_rate
  sluice ctl --admin http://10.0.0.5:8672 --user ops purge orders
  sluice ctl declare orders --set group_key=JMSXGroupID --set max_message_size=1048576
  sluice ctl declare-exchange logs --type topic
  sluice ctl bind logs audit --key 'log.#'
  sluice ctl rewind orders --to 2026-11-23T17:20:00Z")]
pub struct CtlArgs {
    /// Base URL of the admin API [env: SLUICE_ADMIN] [default: http://127.0.0.1:8672].
    #[arg(long, value_name = "URL", global = true)]
    admin: Option<String>,
    /// User for HTTP basic auth, needed when the broker has [[users]] [env: SLUICE_ADMIN_USER].
    #[arg(long, value_name = "NAME", global = true)]
    user: Option<String>,
    /// Password for `--user` [env: SLUICE_ADMIN_PASSWORD, which keeps it out of `ps`].
    #[arg(long, value_name = "PW", global = true)]
    password: Option<String>,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// List the queues as a table (or JSON), sorted by name.
    ListQueues {
        /// Columns to show, comma-separated [default: name,ready,unacked,consumers].
        #[arg(long, value_name = "COLUMNS", value_delimiter = ',')]
        columns: Vec<QueueColumn>,
        /// `table`, or `json` for the API's array as it is (every field; --columns ignored).
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// List the open AMQP connections as a table (or JSON), oldest first.
    ListConnections {
        /// Columns to show, comma-separated [default: id,peer,user,container_id,sessions,links].
        #[arg(long, value_name = "COLUMNS", value_delimiter = ',')]
        columns: Vec<ConnectionColumn>,
        /// `table`, or `json` for the API's array as it is (every field; --columns ignored).
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Drop a queue's ready messages (unacknowledged ones stay).
    Purge {
        /// The queue's name.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        queue: String,
    },
    /// Delete a queue and its messages; its consumers are detached.
    Delete {
        /// The queue's name.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        queue: String,
    },
    /// Free every message group of a queue.
    ResetGroups {
        /// The queue's name.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        queue: String,
    },
    /// Create a queue, or check that it exists with these settings.
    Declare {
        /// The queue's name.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        queue: String,
        /// A per-queue setting of broker.toml, e.g. `group_key=JMSXGroupID`; repeatable.
        /// `true`/`false` are booleans, integers are numbers, anything else is a string
        /// (`key='"123"'` for a string of digits).
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_setting)]
        settings: Vec<(String, Value)>,
    },
    /// Make the consumed messages enqueued since a time ready again (needs rewind_seconds).
    ///
    /// Every message the queue still keeps for rewind that was enqueued at or after `--to`
    /// becomes ready again, in its original order, with its delivery-count + 1. A time before
    /// the queue's window (rewind_seconds, bounded by rewind_max_bytes) is refused with the
    /// earliest time that can be served.
    Rewind {
        /// The queue's name.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        queue: String,
        /// An RFC 3339 time such as `2026-11-23T17:20:00Z` (UTC when it has no offset), or seconds
        /// since the Unix epoch such as `1763918400` or `1763918400.5`.
        #[arg(long, value_name = "TIME", value_parser = parse_time, allow_hyphen_values = true)]
        to: Value,
    },
    /// List a queue's delayed messages as a table (or JSON), earliest due first.
    ListScheduled {
        /// The queue's name.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        queue: String,
        /// How many to list at most.
        #[arg(long, value_name = "N", default_value_t = 100,
              value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// `table`, or `json` for the API's array as it is.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Cancel a delayed message before it is due: it is dropped.
    CancelScheduled {
        /// The queue's name.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        queue: String,
        /// The message's id, as list-scheduled shows it.
        id: u64,
    },
    /// Close an AMQP connection (with amqp:connection:forced).
    CloseConnection {
        /// The connection's id, as list-connections shows it.
        id: u64,
    },
    /// List the exchanges as a table (or JSON), by name.
    ListExchanges {
        /// `table`, or `json` for the API's array as it is.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Create an exchange, or check that it exists with these properties.
    DeclareExchange {
        /// The exchange's name.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        exchange: String,
        /// direct, fanout, topic or headers.
        #[arg(long = "type", value_name = "TYPE")]
        kind: String,
        /// Not kept across restarts (exchanges are durable by default).
        #[arg(long)]
        transient: bool,
        /// What a message no binding matches does: release, reject or drop.
        #[arg(long, value_name = "POLICY")]
        unroutable: Option<String>,
        /// An exchange that gets the messages no binding matches.
        #[arg(long, value_name = "EXCHANGE")]
        alternate_exchange: Option<String>,
    },
    /// Delete an exchange and its bindings (the queues stay).
    DeleteExchange {
        /// The exchange's name.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        exchange: String,
    },
    /// List the bindings as a table (or JSON).
    ListBindings {
        /// `table`, or `json` for the API's array as it is (with headers arguments).
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Bind a queue to an exchange.
    Bind {
        /// The exchange.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        exchange: String,
        /// The queue (it must exist).
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        queue: String,
        /// The routing key (direct) or pattern (topic: `*` one word, `#` any).
        #[arg(long, default_value = "")]
        key: String,
        /// For a headers exchange: `x-match=all|any` and the values to match; repeatable.
        #[arg(long = "arg", value_name = "KEY=VALUE", value_parser = parse_setting)]
        arguments: Vec<(String, Value)>,
    },
    /// Remove a queue's binding to an exchange.
    Unbind {
        /// The exchange.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        exchange: String,
        /// The queue.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        queue: String,
        /// The binding's key (ignored for fanout and headers exchanges).
        #[arg(long, default_value = "")]
        key: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

/// Why a command failed.
#[derive(Debug)]
enum Failure {
    /// Bad usage that clap could not see: exit 2.
    Usage(String),
    /// Anything else: exit 1.
    Failed(String),
}

/// Runs `sluice ctl`; prints the result or the error and returns the exit status.
pub fn run(args: &CtlArgs) -> ExitCode {
    let client = Client::new(
        args.admin.as_deref(),
        args.user.as_deref(),
        args.password.as_deref(),
    );
    let result = client.and_then(|client| execute(&client, &args.verb));
    match result {
        Ok(output) => {
            // A closed pipe (`| head`) is not an error worth a message.
            let mut stdout = std::io::stdout().lock();
            let _ = stdout
                .write_all(output.as_bytes())
                .and_then(|()| stdout.flush());
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(message)) => {
            eprintln!("sluice ctl: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(message)) => {
            eprintln!("sluice ctl: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one verb; returns what to print.
fn execute(client: &Client, verb: &Verb) -> Result<String, Failure> {
    match verb {
        Verb::ListQueues { columns, format } => {
            let body = client.call(Method::Get, "/api/queues")?.body;
            list(&body, *format, columns, &QUEUE_DEFAULT)
        }
        Verb::ListConnections { columns, format } => {
            let body = client.call(Method::Get, "/api/connections")?.body;
            list(&body, *format, columns, &CONNECTION_DEFAULT)
        }
        Verb::Purge { queue } => {
            let path = format!("/api/queues/{}/purge", encode_segment(queue));
            let answer = client.call(Method::Post, &path)?.json()?;
            let purged = count(&answer, "purged");
            Ok(format!("purged {} from {queue}\n", messages(purged)))
        }
        Verb::Delete { queue } => {
            let path = format!("/api/queues/{}", encode_segment(queue));
            let answer = client.call(Method::Delete, &path)?.json()?;
            let dropped = count(&answer, "messages");
            Ok(format!("deleted {queue} and its {}\n", messages(dropped)))
        }
        Verb::ResetGroups { queue } => {
            let path = format!("/api/queues/{}/reset-groups", encode_segment(queue));
            let answer = client.call(Method::Post, &path)?.json()?;
            let reset = count(&answer, "reset");
            let groups = if reset == 1 { "group" } else { "groups" };
            Ok(format!("reset {reset} message {groups} of {queue}\n"))
        }
        Verb::Declare { queue, settings } => {
            let settings: Map<String, Value> = settings.iter().cloned().collect();
            let body = serde_json::json!({ "settings": settings }).to_string();
            let path = format!("/api/queues/{}", encode_segment(queue));
            let answer = client.call(Method::Put(body), &path)?;
            Ok(if answer.status == 201 {
                format!("declared {queue}\n")
            } else {
                format!("{queue} already exists with these settings\n")
            })
        }
        Verb::Rewind { queue, to } => {
            let body = serde_json::json!({ "to": to }).to_string();
            let path = format!("/api/queues/{}/rewind", encode_segment(queue));
            let answer = client.send(Method::PostJson(body), &path)?;
            if !(200..300).contains(&answer.status) {
                let earliest = answer.json().ok().and_then(|error| {
                    error
                        .get("earliest")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                });
                return Err(match earliest {
                    // The API's message, then the earliest time on a line of its own for scripts.
                    Some(earliest) => Failure::Failed(format!(
                        "{}\nsluice ctl: earliest: {earliest}",
                        answer.error()
                    )),
                    None => answer.failure(),
                });
            }
            let rewound = count(&answer.json()?, "rewound");
            Ok(format!("rewound {} of {queue}\n", messages(rewound)))
        }
        Verb::ListScheduled {
            queue,
            limit,
            format,
        } => {
            let path = format!(
                "/api/queues/{}/scheduled?limit={limit}",
                encode_segment(queue)
            );
            let body = client.call(Method::Get, &path)?.body;
            list(&body, *format, &[], &SCHEDULED_COLUMNS)
        }
        Verb::CancelScheduled { queue, id } => {
            let path = format!("/api/queues/{}/scheduled/{id}", encode_segment(queue));
            client.call(Method::Delete, &path)?;
            Ok(format!("cancelled scheduled message {id} of {queue}\n"))
        }
        Verb::CloseConnection { id } => {
            client.call(Method::Delete, &format!("/api/connections/{id}"))?;
            Ok(format!("closing connection {id}\n"))
        }
        routing => routing::execute(client, routing),
    }
}

/// A list verb's output: the body as it came, or a table of `columns` (else `default`).
fn list<C: Column>(
    body: &str,
    format: Format,
    columns: &[C],
    default: &[C],
) -> Result<String, Failure> {
    if format == Format::Json {
        return Ok(format!("{}\n", body.trim_end()));
    }
    let rows: Vec<Value> = serde_json::from_str(body)
        .map_err(|e| Failure::Failed(format!("the admin API answered with no JSON array: {e}")))?;
    let columns = if columns.is_empty() { default } else { columns };
    Ok(table::table(&rows, columns))
}

/// `n messages`, singular for one.
fn messages(n: u64) -> String {
    if n == 1 {
        "1 message".to_owned()
    } else {
        format!("{n} messages")
    }
}

/// A count field of an answer (0 if absent: the action happened either way).
fn count(answer: &Value, field: &str) -> u64 {
    answer.get(field).and_then(Value::as_u64).unwrap_or(0)
}

/// `KEY=VALUE` of `--set`, with the value typed as documented there.
fn parse_setting(arg: &str) -> Result<(String, Value), String> {
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, found '{arg}'"))?;
    if key.is_empty() {
        return Err(format!("expected KEY=VALUE, found '{arg}'"));
    }
    let value = match value {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => match value.parse::<i64>() {
            Ok(n) => Value::from(n),
            Err(_) => match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                Some(quoted) => Value::from(quoted),
                None => Value::from(value),
            },
        },
    };
    Ok((key.to_owned(), value))
}

/// `--to` of `rewind`: epoch seconds become a JSON number, anything else goes as a string
/// for the broker to read as RFC 3339 (one parser, the broker's, decides what is a time).
fn parse_time(arg: &str) -> Result<Value, String> {
    let arg = arg.trim();
    if arg.is_empty() {
        return Err("expected an RFC 3339 time or seconds since the Unix epoch".to_owned());
    }
    if let Ok(seconds) = arg.parse::<i64>() {
        return Ok(Value::from(seconds));
    }
    match arg.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() => Ok(Value::from(seconds)),
        _ => Ok(Value::from(arg)),
    }
}

/// Percent-encodes one path segment: unreserved characters (RFC 3986) stay, every other byte
/// of the UTF-8 becomes `%XX`.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn path_segments_keep_only_unreserved_characters() {
        assert_eq!(encode_segment("orders"), "orders");
        assert_eq!(encode_segment("a-b.c_d~e09AZ"), "a-b.c_d~e09AZ");
        assert_eq!(encode_segment("orders/eu"), "orders%2Feu");
        assert_eq!(encode_segment("a b?c#d%e"), "a%20b%3Fc%23d%25e");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }

    #[test]
    fn rewind_times_are_numbers_or_strings() {
        let parsed = |s| parse_time(s).unwrap();
        assert_eq!(parsed("1763918400"), json!(1763918400));
        assert_eq!(parsed("1763918400.5"), json!(1763918400.5));
        assert_eq!(parsed("-1"), json!(-1));
        assert_eq!(
            parsed(" 2026-11-23T17:20:00Z "),
            json!("2026-11-23T17:20:00Z")
        );
        assert_eq!(parsed("inf"), json!("inf"));
        assert!(parse_time(" ").is_err());
    }

    #[test]
    fn settings_are_typed() {
        let parsed = |s| parse_setting(s).unwrap();
        assert_eq!(parsed("durable=true"), ("durable".into(), json!(true)));
        assert_eq!(parsed("durable=false"), ("durable".into(), json!(false)));
        assert_eq!(
            parsed("group_buckets=-1"),
            ("group_buckets".into(), json!(-1))
        );
        assert_eq!(
            parsed("max_message_size=1024"),
            ("max_message_size".into(), json!(1024))
        );
        assert_eq!(
            parsed("group_key=JMSXGroupID"),
            ("group_key".into(), json!("JMSXGroupID"))
        );
        assert_eq!(parsed("group_key=a=b"), ("group_key".into(), json!("a=b")));
        assert_eq!(
            parsed("group_key=\"123\""),
            ("group_key".into(), json!("123"))
        );
        assert_eq!(parsed("group_key="), ("group_key".into(), json!("")));
        assert!(parse_setting("durable").is_err());
        assert!(parse_setting("=1").is_err());
    }
}
