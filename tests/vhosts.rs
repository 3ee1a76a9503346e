//! Virtual hosts (issue 16), black-box with fe2o3-amqp: the `open` hostname (`vhost:NAME` or
//! a configured host name) picks an isolated namespace of queues, exchanges, subscriptions
//! and dead letters; users may be kept to some hosts and given permissions per host; an
//! unknown host, or one the user may not use, refuses the connection; and a client of one
//! host cannot name another's nodes.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::time::Duration;

use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::{ReceiverAttachError, SenderAttachError};
use fe2o3_amqp::types::definitions::AmqpError;
use fe2o3_amqp::types::messaging::{Message, Properties};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use sluice::BrokerHandle;

const STEP: Duration = Duration::from_secs(10);

const CONFIG: &str = r##"
[auth]
anonymous = "loopback"

[vhosts.a]
hostnames = ["a.example.com"]

[vhosts.b]

[queues."work"]
dead_letter_address = "work.dead"

[[users]]
name = "tenant_a"
password = "pw"
vhosts = ["a"]

[[users]]
name = "ops"
password = "pw"
permissions = [
  { vhost = "b", address = "#", allow = ["send", "consume", "manage"] },
  { address = "shared.#", allow = ["send", "consume", "manage"] },
]
"##;

/// Opens a connection as `user` (anonymous when `None`) with this `open` hostname.
async fn open(
    broker: &BrokerHandle,
    user: Option<&str>,
    hostname: Option<&str>,
) -> Result<ConnectionHandle<()>, String> {
    let addr = broker.local_addrs()[0];
    let url = match user {
        Some(user) => format!("amqp://{user}:pw@{addr}"),
        None => format!("amqp://{addr}"),
    };
    let builder = Connection::builder().container_id("vhosts");
    let builder = match hostname {
        Some(h) => builder.hostname(h),
        None => builder,
    };
    builder
        .open(url.as_str())
        .await
        .map_err(|e| format!("{e:?}"))
}

/// The refusal of a connection the broker answers with `open` and then `close`: fe2o3 reports
/// it on the open or on the close.
async fn refusal(broker: &BrokerHandle, user: Option<&str>, hostname: &str) -> String {
    match open(broker, user, Some(hostname)).await {
        Err(e) => e,
        Ok(mut c) => format!("{:?}", c.close().await),
    }
}

async fn send(connection: &mut ConnectionHandle<()>, address: &str, body: &str) {
    let mut session = Session::begin(connection).await.unwrap();
    let mut sender = Sender::attach(&mut session, "s", address).await.unwrap();
    sender.send(body.to_owned()).await.unwrap();
    sender.close().await.unwrap();
    session.end().await.unwrap();
}

/// Every message on `address` now, accepted.
async fn take_all(connection: &mut ConnectionHandle<()>, address: &str) -> Vec<String> {
    let mut session = Session::begin(connection).await.unwrap();
    let mut receiver = Receiver::attach(&mut session, "r", address).await.unwrap();
    let got = support::broker::drain(&mut receiver).await;
    receiver.close().await.unwrap();
    session.end().await.unwrap();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_name_is_a_different_queue_in_each_virtual_host() {
    let broker = support::broker::start_with_toml(CONFIG).await;
    let mut a = open(&broker, None, Some("vhost:a")).await.unwrap();
    let mut b = open(&broker, None, Some("vhost:b")).await.unwrap();
    // No hostname, or one that names no virtual host (the DNS name), is the default host.
    let mut plain = open(&broker, None, None).await.unwrap();
    let mut by_dns = open(&broker, None, Some("localhost")).await.unwrap();
    // A configured host name selects its virtual host, whatever its case.
    let mut a_by_name = open(&broker, None, Some("A.Example.com")).await.unwrap();
    send(&mut a, "orders", "for a").await;
    send(&mut b, "orders", "for b").await;
    send(&mut plain, "orders", "for the default host").await;
    send(&mut a_by_name, "orders", "for a, by name").await;
    assert_eq!(
        take_all(&mut a, "orders").await,
        ["for a", "for a, by name"]
    );
    assert_eq!(take_all(&mut b, "orders").await, ["for b"]);
    assert_eq!(
        take_all(&mut by_dns, "orders").await,
        ["for the default host"]
    );
    let names = broker.queue_names();
    for name in ["orders", "vhost:a/orders", "vhost:b/orders"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    for c in [a, b, plain, by_dns, a_by_name].iter_mut() {
        c.close().await.unwrap();
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_virtual_host_or_one_the_user_may_not_use_is_refused() {
    let broker = support::broker::start_with_toml(CONFIG).await;
    let unknown = refusal(&broker, None, "vhost:nowhere").await;
    assert!(
        unknown.contains("NotFound") && unknown.contains(r#"no virtual host \"nowhere\""#),
        "{unknown}"
    );
    let barred = refusal(&broker, Some("tenant_a"), "vhost:b").await;
    assert!(
        barred.contains("UnauthorizedAccess") && barred.contains("virtual host 'b'"),
        "{barred}"
    );
    // The default host is a host like the others: not in tenant_a's list.
    let default = refusal(&broker, Some("tenant_a"), "vhost:/").await;
    assert!(default.contains("virtual host '/'"), "{default}");
    let mut allowed = open(&broker, Some("tenant_a"), Some("vhost:a"))
        .await
        .unwrap();
    send(&mut allowed, "mine", "ok").await;
    assert_eq!(take_all(&mut allowed, "mine").await, ["ok"]);
    allowed.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_name_another_hosts_nodes() {
    let broker = support::broker::start_with_toml(CONFIG).await;
    let mut a = open(&broker, None, Some("vhost:a")).await.unwrap();
    send(&mut a, "secret", "a's").await;
    let mut plain = open(&broker, None, None).await.unwrap();
    let mut session = Session::begin(&mut plain).await.unwrap();
    match Receiver::attach(&mut session, "r", "vhost:a/secret").await {
        Err(ReceiverAttachError::RemoteClosedWithError(e)) => {
            assert_eq!(e.condition, AmqpError::InvalidField.into(), "{e:?}");
            assert!(
                e.description.as_deref().unwrap().contains("reserved"),
                "{e:?}"
            );
        }
        other => panic!("another host's queue must not be reachable: {other:?}"),
    }
    // Nor through the anonymous relay: the message is rejected, the link goes on.
    let mut session = Session::begin(&mut plain).await.unwrap();
    let mut relay = Sender::builder()
        .name("relay")
        .target(fe2o3_amqp::types::messaging::Target::builder().build())
        .attach(&mut session)
        .await
        .unwrap();
    let message = Message::builder()
        .properties(Properties::builder().to("vhost:a/secret").build())
        .value("intruder".to_owned())
        .build();
    let outcome = relay.send(message).await;
    assert!(format!("{outcome:?}").contains("reserved"), "{outcome:?}");
    relay.close().await.unwrap();
    assert_eq!(take_all(&mut a, "secret").await, ["a's"]);
    for c in [a, plain].iter_mut() {
        c.close().await.unwrap();
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_may_name_a_virtual_host() {
    let broker = support::broker::start_with_toml(CONFIG).await;
    // In b, ops may do anything; elsewhere only shared.#.
    let mut in_b = open(&broker, Some("ops"), Some("vhost:b")).await.unwrap();
    send(&mut in_b, "anything", "ok").await;
    assert_eq!(take_all(&mut in_b, "anything").await, ["ok"]);
    let mut in_a = open(&broker, Some("ops"), Some("vhost:a")).await.unwrap();
    send(&mut in_a, "shared.news", "ok").await;
    let mut session = Session::begin(&mut in_a).await.unwrap();
    match Sender::attach(&mut session, "s", "anything").await {
        Err(SenderAttachError::RemoteClosedWithError(e)) => {
            assert_eq!(e.condition, AmqpError::UnauthorizedAccess.into(), "{e:?}");
            // The refusal names the queue as the client knows it.
            let description = e.description.unwrap();
            assert!(
                description.contains("'anything'") && !description.contains("vhost:"),
                "{description}"
            );
        }
        other => panic!("ops may not send to 'anything' in a: {other:?}"),
    }
    for c in [in_a, in_b].iter_mut() {
        c.close().await.unwrap();
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_queues_exchanges_and_dead_letters_stay_in_their_host() {
    let broker = support::broker::start_with_toml(CONFIG).await;
    let mut a = open(&broker, None, Some("vhost:a")).await.unwrap();
    let mut session = Session::begin(&mut a).await.unwrap();
    // A temporary reply queue: its address is given as the client will use it.
    let mut replies = Receiver::builder()
        .name("replies")
        .source(
            fe2o3_amqp::types::messaging::Source::builder()
                .dynamic(true)
                .build(),
        )
        .attach(&mut session)
        .await
        .unwrap();
    let reply_to = replies.source().as_ref().unwrap().address.clone().unwrap();
    assert!(!reply_to.starts_with("vhost:"), "{reply_to}");
    send(&mut a, &reply_to, "reply").await;
    let got = tokio::time::timeout(STEP, replies.recv::<String>())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.body(), "reply");
    replies.accept(&got).await.unwrap();
    // Each host has its own amq.topic.
    let mut b = open(&broker, None, Some("vhost:b")).await.unwrap();
    let mut b_session = Session::begin(&mut b).await.unwrap();
    let mut b_news = Receiver::attach(&mut b_session, "news", "/exchanges/amq.topic/news")
        .await
        .unwrap();
    let mut a_news = Receiver::attach(&mut session, "news", "/exchanges/amq.topic/news")
        .await
        .unwrap();
    send(&mut a, "/exchanges/amq.topic/news", "a's news").await;
    let got = tokio::time::timeout(STEP, a_news.recv::<String>())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.body(), "a's news");
    a_news.accept(&got).await.unwrap();
    let nothing = tokio::time::timeout(Duration::from_millis(300), b_news.recv::<String>()).await;
    assert!(nothing.is_err(), "b's subscriber got a's news");
    // A rejected message goes to the dead-letter queue of its own host.
    send(&mut a, "work", "bad").await;
    let mut work = Receiver::attach(&mut session, "work", "work")
        .await
        .unwrap();
    let bad = tokio::time::timeout(STEP, work.recv::<String>())
        .await
        .unwrap()
        .unwrap();
    work.reject(&bad, None).await.unwrap();
    assert_eq!(take_all(&mut a, "work.dead").await, ["bad"]);
    let names = broker.queue_names();
    assert!(
        names.iter().any(|n| n == "vhost:a/work.dead") && !names.iter().any(|n| n == "work.dead"),
        "{names:?}"
    );
    for c in [a, b].iter_mut() {
        c.close().await.unwrap();
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proton_picks_its_virtual_host_with_virtual_host() {
    use support::proton;
    let broker = support::broker::start_with_toml(CONFIG).await;
    let url = format!("amqp://127.0.0.1:{}", broker.local_addrs()[0].port());
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            proton::run_example("vhost.py", &args, Duration::from_secs(60))
                .assert_success()
                .to_owned()
        })
    };
    let args = |vhost: &str, rest: &[&str]| {
        let mut all = vec![url.clone(), vhost.to_owned()];
        all.extend(rest.iter().map(|s| (*s).to_owned()));
        all
    };
    run(args("vhost:a", &["send", "hello a"])).await.unwrap();
    run(args("a.example.com", &["send", "hello a by name"]))
        .await
        .unwrap();
    run(args("", &["send", "hello default"])).await.unwrap();
    let in_b = run(args("vhost:b", &["recv"])).await.unwrap();
    assert_eq!(in_b.trim(), "");
    let in_a = run(args("vhost:a", &["recv"])).await.unwrap();
    assert_eq!(
        in_a.lines().collect::<Vec<_>>(),
        ["hello a", "hello a by name"]
    );
    let in_default = run(args("", &["recv"])).await.unwrap();
    assert_eq!(in_default.trim(), "hello default");
    broker.shutdown().await;
}
