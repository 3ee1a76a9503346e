//! The exchange and binding verbs of `sluice ctl`.

use serde_json::{json, Map, Value};

use super::client::{Client, Method};
use super::table::{BINDING_COLUMNS, EXCHANGE_COLUMNS};
use super::{encode_segment, list, Failure, Verb};

/// Runs an exchange or binding verb; returns what to print.
pub(super) fn execute(client: &Client, verb: &Verb) -> Result<String, Failure> {
    match verb {
        Verb::ListExchanges { format } => {
            let body = client.call(Method::Get, "/api/exchanges")?.body;
            list(&body, *format, &[], &EXCHANGE_COLUMNS)
        }
        Verb::DeclareExchange {
            exchange,
            kind,
            transient,
            unroutable,
            alternate_exchange,
        } => {
            let body = json!({
                "type": kind,
                "durable": !transient,
                "unroutable": unroutable,
                "alternate_exchange": alternate_exchange,
            });
            let path = format!("/api/exchanges/{}", encode_segment(exchange));
            let answer = client.call(Method::Put(body.to_string()), &path)?;
            Ok(if answer.status == 201 {
                format!("declared exchange {exchange}\n")
            } else {
                format!("exchange {exchange} already exists with these properties\n")
            })
        }
        Verb::DeleteExchange { exchange } => {
            let path = format!("/api/exchanges/{}", encode_segment(exchange));
            client.call(Method::Delete, &path)?;
            Ok(format!("deleted exchange {exchange}\n"))
        }
        Verb::ListBindings { format } => {
            let body = client.call(Method::Get, "/api/bindings")?.body;
            list(&body, *format, &[], &BINDING_COLUMNS)
        }
        Verb::Bind {
            exchange,
            queue,
            key,
            arguments,
        } => {
            let arguments: Map<String, Value> = arguments.iter().cloned().collect();
            let body =
                json!({ "exchange": exchange, "queue": queue, "key": key, "arguments": arguments });
            let answer = client.call(Method::PostJson(body.to_string()), "/api/bindings")?;
            Ok(if answer.status == 201 {
                format!("bound {queue} to {exchange} with key '{key}'\n")
            } else {
                format!("{queue} is already bound to {exchange} with key '{key}'\n")
            })
        }
        Verb::Unbind {
            exchange,
            queue,
            key,
        } => {
            let path = format!(
                "/api/bindings?exchange={}&queue={}&key={}",
                encode_segment(exchange),
                encode_segment(queue),
                encode_segment(key)
            );
            client.call(Method::Delete, &path)?;
            Ok(format!("unbound {queue} from {exchange}\n"))
        }
        _ => Err(Failure::Usage("not an exchange or binding verb".to_owned())),
    }
}
