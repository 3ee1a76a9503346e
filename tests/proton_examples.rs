//! Interop tests: the Qpid Proton Python client examples of the seed
//! (tests/proton/*.py, Python 3 ports that are otherwise unchanged) run against
//! an in-process sluice broker.
//!
//! Each test starts its own broker on an ephemeral port and uses its own queue
//! name, so the tests are independent and can run in parallel. The first test
//! to run builds the Python venv (see `support::proton::python`); that is not
//! counted against the per-script timeout.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::proton::{self, ExampleOutput};

/// Generous per-script limit: the examples finish in well under a second
/// against a working broker, so hitting this means something hangs.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Limit for broker start-up and shutdown, so a hang there fails the test too.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// Number of messages the seed's examples send by default.
const MESSAGES: usize = 100;

/// Starts a broker on an ephemeral loopback port, after making sure the Python
/// venv exists (built in a blocking task so the runtime keeps running).
async fn start_broker() -> (sluice::BrokerHandle, SocketAddr) {
    start_broker_with(sluice::Config::default()).await
}

/// Like [`start_broker`], with `config` (its listen address is replaced).
async fn start_broker_with(mut config: sluice::Config) -> (sluice::BrokerHandle, SocketAddr) {
    tokio::task::spawn_blocking(proton::python)
        .await
        .expect("building the Python venv for the Proton examples failed");
    let defaults = support::broker::test_config();
    config.listen = defaults.listen;
    config.admin.listen = defaults.admin.listen;
    config.data_dir = defaults.data_dir;
    config.storage = defaults.storage;
    let broker = tokio::time::timeout(BROKER_TIMEOUT, sluice::Broker::start(config))
        .await
        .expect("broker start timed out")
        .expect("broker starts");
    let addr = broker.local_addrs()[0];
    (broker, addr)
}

async fn stop_broker(broker: sluice::BrokerHandle) {
    tokio::time::timeout(BROKER_TIMEOUT, broker.shutdown())
        .await
        .expect("broker shutdown timed out");
}

/// Runs an example to completion on the blocking pool (the broker shares the
/// runtime, so the worker threads must stay free).
async fn run(script: &'static str, args: Vec<String>) -> ExampleOutput {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        proton::run_example(script, &args, SCRIPT_TIMEOUT)
    })
    .await
    .expect("example runner panicked")
}

/// The `-a ADDRESS -m COUNT` arguments every example here takes.
fn args(addr: SocketAddr, queue: &str) -> Vec<String> {
    vec![
        "-a".into(),
        format!("{addr}/{queue}"),
        "-m".into(),
        MESSAGES.to_string(),
    ]
}

/// What the receivers print for the senders' messages: each body is the
/// Python dict `{'sequence': n}`, in order.
fn expected_bodies() -> String {
    (1..=MESSAGES)
        .map(|n| format!("{{'sequence': {n}}}\n"))
        .collect()
}

/// Asserts that `output` is a clean exit that printed exactly `expected`.
fn assert_prints(output: &ExampleOutput, expected: &str) {
    let stdout = output.assert_success();
    assert!(
        stdout == expected,
        "unexpected stdout; expected:\n{expected}\ngot:\n{output}"
    );
}

/// Example 3.3 then 3.4: reliable send of 100 messages to a queue nobody
/// listens on yet, all accepted by the broker; then a receiver drains them in
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_reliable_send_then_receive_100_messages() {
    let (broker, addr) = start_broker().await;

    let send = run("simple_send.py", args(addr, "examples-reliable")).await;
    assert_prints(&send, "all messages confirmed\n");

    let recv = run("simple_recv.py", args(addr, "examples-reliable")).await;
    assert_prints(&recv, &expected_bodies());

    stop_broker(broker).await;
}

/// Example 3.4 started before 3.3: the receiver attaches to an empty queue
/// and must get all 100 messages, in order, as the sender produces them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_receiver_waiting_before_sender() {
    let (broker, addr) = start_broker().await;

    let recv_args = args(addr, "examples-waiting");
    let receiver = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = recv_args.iter().map(String::as_str).collect();
        let command = format!("simple_recv.py {}", args.join(" "));
        let child = proton::spawn_example("simple_recv.py", &args);
        proton::wait_example(child, &command, SCRIPT_TIMEOUT)
    });
    // Wait until the receiver is attached (the queue has a consumer), so the
    // test really exercises a receiver that is waiting when messages arrive.
    let attached = async {
        while broker
            .queue_stats("examples-waiting")
            .is_none_or(|s| s.consumers == 0)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(SCRIPT_TIMEOUT, attached)
        .await
        .expect("the receiver never attached");

    let send = run("simple_send.py", args(addr, "examples-waiting")).await;
    let recv = receiver.await.expect("receiver runner panicked");
    assert_prints(&send, "all messages confirmed\n");
    assert_prints(&recv, &expected_bodies());

    stop_broker(broker).await;
}

/// Examples 3.12 then 3.11: best-effort (pre-settled) send of 100 messages,
/// then a best-effort receiver gets them all, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_at_most_once_send_and_receive() {
    let (broker, addr) = start_broker().await;

    let send = run("send_at_most_once.py", args(addr, "examples-at-most-once")).await;
    assert_prints(&send, "all messages sent\n");

    let recv = run("recv_at_most_once.py", args(addr, "examples-at-most-once")).await;
    assert_prints(&recv, &expected_bodies());

    stop_broker(broker).await;
}

/// Examples 3.6 and 3.7: the server consumes requests from a queue and answers
/// on an anonymous-relay sender to each request's reply-to; the client receives
/// the answers on a dynamic queue the broker created for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_request_response_through_a_dynamic_queue_and_anonymous_relay() {
    let (broker, addr) = start_broker().await;

    let server_addr = format!("{addr}/examples-requests");
    let mut server = proton::spawn_example("server.py", &["-a", &server_addr]);
    let attached = async {
        while broker
            .queue_stats("examples-requests")
            .is_none_or(|s| s.consumers == 0)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(SCRIPT_TIMEOUT, attached)
        .await
        .expect("the server never attached");

    let client = run("client.py", vec!["-a".into(), server_addr.clone()]).await;
    let _ = server.kill();
    let _ = server.wait();
    assert_prints(
        &client,
        "Twas brillig, and the slithy toves => TWAS BRILLIG, AND THE SLITHY TOVES\n\
         Did gire and gymble in the wabe. => DID GIRE AND GYMBLE IN THE WABE.\n\
         All mimsy were the borogroves, => ALL MIMSY WERE THE BOROGROVES,\n\
         And the mome raths outgrabe. => AND THE MOME RATHS OUTGRABE.\n",
    );
    // The dynamic queue went with the client's link.
    assert_eq!(broker.queue_names(), vec!["examples-requests".to_string()]);

    stop_broker(broker).await;
}

/// The seed's Qpid message-groups demonstration (qpid-message-groups.txt, section
/// 6.8.7), ported to python-qpid-proton: two connections, one message of credit per
/// fetch, groups keyed by the `ourGroupID` application property. Each run must print
/// exactly the seed's transcript for its answers (tests/proton/expected/, the seed's
/// three example outputs with the prose between them removed).
async fn qpid_message_groups(grouping: &str, ack_all: &str, expected: &str) {
    let config = sluice::Config::from_toml(
        "[queues.\"test-group-queue\"]\ngroup_key = \"ourGroupID\"\n",
        "test.toml",
    )
    .expect("config");
    let (broker, addr) = start_broker_with(config).await;
    let args = vec![
        "-a".into(),
        addr.to_string(),
        grouping.into(),
        ack_all.into(),
    ];
    let output = run("message_groups.py", args).await;
    assert_prints(&output, expected);
    stop_broker(broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_qpid_message_groups_disabled() {
    let expected = include_str!("proton/expected/message_groups_disabled.txt");
    qpid_message_groups("n", "y", expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_qpid_message_groups_acknowledge_all() {
    let expected = include_str!("proton/expected/message_groups_ack_all.txt");
    qpid_message_groups("y", "y", expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_qpid_message_groups_acknowledge_only_the_last() {
    let expected = include_str!("proton/expected/message_groups_ack_last.txt");
    qpid_message_groups("y", "n", expected).await;
}

/// Proton's queue browser (distribution-mode = copy), ten rounds, two at once, over 100
/// messages: each prints the messages from the first, in order, until it has printed what
/// had arrived (see the note in queue_browser.py), and ends; browsers take nothing, so a plain
/// receiver then gets all 100.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_browser_sees_messages_in_order_and_takes_none() {
    let (broker, addr) = start_broker().await;
    let send = run("simple_send.py", args(addr, "examples-browsed")).await;
    assert_prints(&send, "all messages confirmed\n");
    let browse = || {
        run(
            "queue_browser.py",
            vec!["-a".into(), format!("{addr}/examples-browsed")],
        )
    };
    for _ in 0..10 {
        let (a, b) = tokio::join!(browse(), browse());
        for output in [a, b] {
            let printed = output.assert_success();
            assert!(!printed.is_empty(), "a browser printed nothing:\n{output}");
            assert!(
                expected_bodies().starts_with(printed),
                "not the messages in order from the first:\n{output}"
            );
        }
    }
    assert_eq!(
        broker.queue_stats("examples-browsed").unwrap().ready,
        MESSAGES
    );
    let recv = run("simple_recv.py", args(addr, "examples-browsed")).await;
    assert_prints(&recv, &expected_bodies());
    stop_broker(broker).await;
}

/// Seed rabbitmq-basics.txt as a python-qpid-proton client writes it (tests/proton/exchanges.py).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_rabbitmq_exchanges_bindings_and_temporary_queues_from_proton() {
    let (broker, addr) = start_broker().await;
    let output = run("exchanges.py", vec!["-a".into(), addr.to_string()]).await;
    assert_prints(
        &output,
        "topic log.*: log.info log.error\n\
         topic #.error: log.error mq.log.error\n\
         topic (no filter): log.info log.error mq.log.error kern.warn\n\
         direct red: red red\n\
         direct green: green\n\
         fanout one: hello all\n\
         fanout two: hello all\n\
         fair: 2 + 2 of 4, none twice: True\n\
         temporary queue: generated\n\
         temporary receives: reply\n\
         temporary consumed by another connection: amqp:resource-locked\n\
         redeclare anheng?durable=false: amqp:precondition-failed\n\
         redeclare anheng as a topic: amqp:precondition-failed\n\
         redeclare anheng with node property durable=false: amqp:precondition-failed\n\
         exclusive, second consumer: amqp:resource-locked\n\
         auto-delete, after its consumer: accepted\n",
    );
    stop_broker(broker).await;
}

/// Examples 3.6 and 3.7 again, ten rounds of two clients at once: each client's replies land
/// on its own temporary queue, which outlives the server's reply links and goes with the
/// client; nothing is lost and nothing left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_response_ten_rounds_two_clients_at_once() {
    let (broker, addr) = start_broker().await;
    let server_addr = format!("{addr}/examples-rounds");
    let mut server = proton::spawn_example("server.py", &["-a", &server_addr]);
    let attached = async {
        while broker
            .queue_stats("examples-rounds")
            .is_none_or(|s| s.consumers == 0)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(SCRIPT_TIMEOUT, attached)
        .await
        .expect("the server never attached");
    let expected = "Twas brillig, and the slithy toves => TWAS BRILLIG, AND THE SLITHY TOVES\n\
                    Did gire and gymble in the wabe. => DID GIRE AND GYMBLE IN THE WABE.\n\
                    All mimsy were the borogroves, => ALL MIMSY WERE THE BOROGROVES,\n\
                    And the mome raths outgrabe. => AND THE MOME RATHS OUTGRABE.\n";
    for _ in 0..10 {
        let client = || run("client.py", vec!["-a".into(), server_addr.clone()]);
        let (a, b) = tokio::join!(client(), client());
        assert_prints(&a, expected);
        assert_prints(&b, expected);
    }
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(broker.queue_names(), vec!["examples-rounds".to_string()]);
    stop_broker(broker).await;
}

/// Queues declared through node properties with RabbitMQ's arguments (tests/proton/declare.py).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_declared_through_node_properties_from_proton() {
    let (broker, addr) = start_broker().await;
    let output = run("declare.py", vec!["-a".into(), addr.to_string()]).await;
    assert_prints(
        &output,
        "x-max-length 5: accepted accepted accepted accepted accepted rejected\n\
         single active consumer: first one, second nothing\n\
         after the first closes: second two\n\
         exclusive = 'sometimes': amqp:invalid-field (the settings declared for queue 'other': exclusive: expected true, false or \"standby\", found \"sometimes\")\n",
    );
    stop_broker(broker).await;
}

/// Examples 3.8 and 3.9, as written: a sender commits 100 messages in transactions of 10,
/// then a receiver accepts them in transactions of 10 and commits each batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_send_and_receive() {
    let (broker, addr) = start_broker().await;
    let output = run("tx_send.py", args(addr, "examples-tx")).await;
    assert_prints(&output, "all messages committed\n");
    assert_eq!(broker.queue_stats("examples-tx").unwrap().ready, MESSAGES);
    let output = run("tx_recv.py", args(addr, "examples-tx")).await;
    assert_prints(&output, &expected_bodies());
    let stats = broker.queue_stats("examples-tx").unwrap();
    assert_eq!(
        (stats.ready, stats.unacked),
        (0, 0),
        "all consumed: {stats:?}"
    );
    stop_broker(broker).await;
}
