//! Transactional throughput: one fe2o3-amqp client sends `--messages` durable 1 KiB messages
//! to a queue in transactions of `--batch` (post each, commit), then takes them back in
//! transactions of `--batch` (accept each, commit); with `--batch 0`, the same client without
//! transactions (each send awaits its outcome, each delivery is accepted), for comparison.
//!
//! ```sh
//! cargo run --release -- &               # the broker, default config (durable queues)
//! cargo run --release --example txbench -- --batch 10 --messages 20000
//! ```

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

use std::time::Instant;

use clap::Parser;
use fe2o3_amqp::transaction::{
    Controller, Transaction, TransactionDischarge, TransactionPosting, TransactionRetirement,
};
use fe2o3_amqp::types::messaging::{AmqpValue, Header, Message};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};

#[derive(Parser)]
struct Opts {
    /// The broker.
    #[arg(long, default_value = "amqp://127.0.0.1:5672")]
    url: String,
    /// The queue (emptied first).
    #[arg(long, default_value = "txbench")]
    queue: String,
    /// Messages per transaction; 0: no transactions.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Messages to send and receive.
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
}

fn message() -> Message<AmqpValue<String>> {
    Message::builder()
        .header(Header {
            durable: true,
            ..Header::default()
        })
        .value("x".repeat(1024))
        .build()
}

#[tokio::main]
async fn main() {
    let opts = Opts::parse();
    let mut connection = Connection::open("txbench", opts.url.as_str())
        .await
        .unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let mut sender = Sender::attach(&mut session, "txbench-s", opts.queue.as_str())
        .await
        .unwrap();
    let mut receiver = Receiver::attach(&mut session, "txbench-r", opts.queue.as_str())
        .await
        .unwrap();
    let controller = Controller::attach(&mut session, "txbench-c").await.unwrap();

    let started = Instant::now();
    if opts.batch == 0 {
        for _ in 0..opts.messages {
            sender.send(message()).await.unwrap();
        }
    } else {
        for chunk in 0..opts.messages.div_ceil(opts.batch) {
            let n = opts.batch.min(opts.messages - chunk * opts.batch);
            let txn = Transaction::declare(&controller, None).await.unwrap();
            for _ in 0..n {
                txn.post(&mut sender, message()).await.unwrap();
            }
            txn.commit().await.unwrap();
        }
    }
    let send = started.elapsed();

    let started = Instant::now();
    if opts.batch == 0 {
        for _ in 0..opts.messages {
            let d = receiver.recv::<String>().await.unwrap();
            receiver.accept(&d).await.unwrap();
        }
    } else {
        for chunk in 0..opts.messages.div_ceil(opts.batch) {
            let n = opts.batch.min(opts.messages - chunk * opts.batch);
            let txn = Transaction::declare(&controller, None).await.unwrap();
            for _ in 0..n {
                let d = receiver.recv::<String>().await.unwrap();
                txn.accept(&mut receiver, &d).await.unwrap();
            }
            txn.commit().await.unwrap();
        }
    }
    let receive = started.elapsed();
    let rate = |d: std::time::Duration| opts.messages as f64 / d.as_secs_f64();
    println!(
        "txbench: batch {}, {} messages of 1 KiB, durable: send {:.0} msg/s, receive {:.0} msg/s",
        opts.batch,
        opts.messages,
        rate(send),
        rate(receive)
    );
    controller.close().await.unwrap();
    receiver.close().await.unwrap();
    sender.close().await.unwrap();
    connection.close().await.unwrap();
}
