//! Who may do what, black-box: users with permissions by address pattern (their own and their
//! roles'), each operation tried on a fresh connection with fe2o3-amqp — send, consume, browse,
//! create by attach, send through the anonymous relay, declare and delete through the admin
//! API — and every outcome compared with what the permissions say: zero violations. A denial
//! is `amqp:unauthorized-access` on that link or message, and the connection goes on.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::time::Duration;

use base64::Engine;
use fe2o3_amqp::types::definitions::AmqpError;
use fe2o3_amqp::types::messaging::{
    DistributionMode, Message, Outcome, Properties, Source, Target,
};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use sluice::BrokerHandle;

const STEP: Duration = Duration::from_secs(10);

const CONFIG: &str = r#"
[roles.auditors]
permissions = [{ address = "orders.#", allow = ["browse"] }]

[[users]]
name = "orders"
password = "pw"
permissions = [{ address = "orders.#", allow = ["send", "consume"] }]

[[users]]
name = "auditor"
password = "pw"
roles = ["auditors"]

[[users]]
name = "builder"
password = "pw"
roles = ["management"]
permissions = [{ address = "new.#", allow = ["send", "consume", "manage"] }]

[[users]]
name = "legacy"
password = "pw"
roles = ["admin"]
"#;

/// What each user may do to each address, as CONFIG says (legacy: no permissions at all).
fn allowed(user: &str, op: Op, address: &str) -> bool {
    let orders = address.starts_with("orders.");
    let new = address.starts_with("new.");
    match (user, op) {
        ("legacy", _) => true,
        ("orders", Op::Send | Op::Consume | Op::Relay) => orders,
        ("auditor", Op::Browse) => orders,
        // Creating needs manage and the use itself (send, for a producer's attach).
        ("builder", Op::Send | Op::Consume | Op::Relay | Op::Create | Op::Declare) => new,
        ("builder", Op::Delete) => new,
        _ => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Send,
    Consume,
    Browse,
    /// A producer's attach to a queue that does not exist yet.
    Create,
    /// A message through the anonymous relay.
    Relay,
    /// PUT /api/queues/NAME.
    Declare,
    /// DELETE /api/queues/NAME.
    Delete,
}

async fn connect(
    broker: &BrokerHandle,
    user: &str,
) -> fe2o3_amqp::connection::ConnectionHandle<()> {
    let url = format!("amqp://{user}:pw@{}", broker.local_addrs()[0]);
    Connection::open(format!("perm-{user}"), url.as_str())
        .await
        .unwrap()
}

/// Whether `err` is a refusal for want of a permission.
fn unauthorized(error: Option<&fe2o3_amqp::types::definitions::Error>) -> bool {
    error.is_some_and(|e| {
        e.condition == AmqpError::UnauthorizedAccess.into()
            && e.description
                .as_deref()
                .is_some_and(|d| d.contains("permission"))
    })
}

/// Tries `op` on `address` as `user`: Ok(true) done, Ok(false) refused as unauthorized,
/// Err(what) anything else.
async fn attempt(broker: &BrokerHandle, user: &str, op: Op, address: &str) -> Result<bool, String> {
    let admin = broker.admin_addr().unwrap();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"))
    );
    match op {
        Op::Declare | Op::Delete => {
            let (method, body) = match op {
                Op::Declare => ("PUT", Some("{}")),
                _ => ("DELETE", None),
            };
            let path = format!("/api/queues/{address}");
            let answer = support::http::request(admin, method, &path, body, Some(&basic)).await;
            return match answer.status {
                200..=299 => Ok(true),
                403 => Ok(false),
                other => Err(format!("{method} {path}: {other} {}", answer.body)),
            };
        }
        _ => {}
    }
    let mut connection = connect(broker, user).await;
    let mut session = Session::begin(&mut connection).await.unwrap();
    let result = match op {
        Op::Send | Op::Create => match Sender::attach(&mut session, "p", address).await {
            Ok(mut sender) => {
                let outcome = sender.send("hello").await.map_err(|e| format!("{e:?}"))?;
                let _ = sender.close().await;
                match outcome {
                    Outcome::Accepted(_) => Ok(true),
                    other => Err(format!("{other:?}")),
                }
            }
            Err(fe2o3_amqp::link::SenderAttachError::RemoteClosedWithError(e)) => {
                if unauthorized(Some(&e)) {
                    Ok(false)
                } else {
                    Err(format!("{e:?}"))
                }
            }
            Err(e) => Err(format!("{e:?}")),
        },
        Op::Consume | Op::Browse => {
            let mut source = Source::builder().address(address);
            if op == Op::Browse {
                source = source.distribution_mode(DistributionMode::Copy);
            }
            match Receiver::builder()
                .name("c")
                .source(source.build())
                .attach(&mut session)
                .await
            {
                Ok(receiver) => {
                    let _ = receiver.close().await;
                    Ok(true)
                }
                Err(fe2o3_amqp::link::ReceiverAttachError::RemoteClosedWithError(e)) => {
                    if unauthorized(Some(&e)) {
                        Ok(false)
                    } else {
                        Err(format!("{e:?}"))
                    }
                }
                Err(e) => Err(format!("{e:?}")),
            }
        }
        Op::Relay => {
            let mut relay = Sender::builder()
                .name("relay")
                .target(Target::builder().build())
                .attach(&mut session)
                .await
                .map_err(|e| format!("relay attach: {e:?}"))?;
            let message = Message::builder()
                .properties(Properties::builder().to(address).build())
                .value("via relay")
                .build();
            let outcome = relay.send(message).await;
            let _ = relay.close().await;
            match outcome {
                Ok(Outcome::Accepted(_)) => Ok(true),
                Ok(Outcome::Rejected(r)) if unauthorized(r.error.as_ref()) => Ok(false),
                other => Err(format!("{other:?}")),
            }
        }
        Op::Declare | Op::Delete => unreachable!("answered above"),
    };
    // Whatever was refused, the connection itself goes on.
    let mut again = Session::begin(&mut connection)
        .await
        .map_err(|e| format!("the connection did not survive: {e:?}"))?;
    again.end().await.map_err(|e| format!("{e:?}"))?;
    let _ = session.end().await;
    connection.close().await.map_err(|e| format!("{e:?}"))?;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_user_can_do_exactly_what_its_permissions_allow() {
    let broker = support::broker::start_with_toml(CONFIG).await;
    // The queues that exist, made by the user who may do anything.
    for queue in ["orders.eu", "new.box", "other"] {
        assert_eq!(attempt(&broker, "legacy", Op::Send, queue).await, Ok(true));
    }
    let mut violations = Vec::new();
    let mut checked = 0;
    for user in ["orders", "auditor", "builder", "legacy"] {
        for (op, addresses) in [
            (Op::Send, ["orders.eu", "new.box", "other"]),
            (Op::Consume, ["orders.eu", "new.box", "other"]),
            (Op::Browse, ["orders.eu", "new.box", "other"]),
            (Op::Relay, ["orders.eu", "new.box", "other"]),
            (Op::Create, ["orders.fresh", "new.fresh", "fresh"]),
            (Op::Declare, ["orders.declared", "new.declared", "declared"]),
            (Op::Delete, ["orders.declared", "new.declared", "declared"]),
        ] {
            for address in addresses {
                // Names made per user, so one user's creation is not the next one's use.
                let address = match op {
                    Op::Create | Op::Declare | Op::Delete => format!("{address}-{user}"),
                    _ => address.to_owned(),
                };
                if op == Op::Delete {
                    // There is something to delete, whoever may.
                    assert_eq!(
                        attempt(&broker, "legacy", Op::Declare, &address).await,
                        Ok(true)
                    );
                }
                let expected = allowed(user, op, &address)
                    // Declaring, then deleting, needs a role that may change the broker.
                    && (!matches!(op, Op::Declare | Op::Delete) || user != "orders");
                let got = tokio::time::timeout(STEP, attempt(&broker, user, op, &address))
                    .await
                    .unwrap_or_else(|_| Err("no answer".into()));
                checked += 1;
                if got != Ok(expected) {
                    violations.push(format!(
                        "{user} {op:?} {address}: expected {expected}, got {got:?}"
                    ));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "{} of {checked} wrong:\n{}",
        violations.len(),
        violations.join("\n")
    );
    broker.shutdown().await;
}
