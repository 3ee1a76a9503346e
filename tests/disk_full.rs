//! A full disk is a state the broker leaves, not a trap (issue 12 §2), on the simulated disk
//! (`SimFs` with a size): filling the journal to the free-space floor, then consuming, makes
//! room again without a restart, and no consumed message comes back; a disk filled by someone
//! else refuses producers until it is freed, then takes them again, and nothing refused is
//! ever delivered.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fe2o3_amqp::Sender;
use sluice::testing::SimFs;
use sluice::{Broker, BrokerHandle};
use support::broker::test_config;
use support::time::{nothing_within, text, Client, QUIET, WAIT};

const SEGMENT: u64 = 64 * 1024;

async fn start_on(fs: &SimFs, min_free_bytes: u64) -> BrokerHandle {
    let mut config = test_config();
    config.data_dir = PathBuf::from("/sim/data");
    config.storage.segment_size = SEGMENT;
    config.storage.min_free_bytes = min_free_bytes;
    tokio::time::timeout(WAIT, Broker::start_on(config, Arc::new(fs.clone())))
        .await
        .expect("start timed out")
        .expect("broker starts")
}

/// A 1000-byte body that says which message it is.
fn body(name: &str) -> String {
    format!("{name:-<1000}")
}

/// Sends `name`; whether it was accepted (a refusal is any other outcome, or no answer).
async fn try_send(sender: &mut Sender, name: &str) -> bool {
    match tokio::time::timeout(WAIT, sender.send(text(&body(name)))).await {
        Ok(Ok(outcome)) => outcome.is_accepted(),
        _ => false,
    }
}

/// Sends `name` until it is accepted (the broker refuses while full: rejected today, or no
/// credit), for up to 10 s.
async fn send_once_room(sender: &mut Sender, name: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !try_send(sender, name).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} was still refused 10 s after space was freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Receives and accepts messages from `queue` until it stays quiet; their names.
async fn drain(client: &mut Client, queue: &str) -> Vec<String> {
    let mut receiver = client.receiver(queue, 200).await;
    let mut got = Vec::new();
    while let Some(d) = support::time::recv_within(&mut receiver, QUIET * 2).await {
        got.push(d.body().trim_end_matches('-').to_owned());
        receiver.accept(&d).await.expect("accept");
        if got.len() % 100 == 0 {
            receiver.set_credit(200).await.expect("credit");
        }
    }
    receiver.close().await.expect("detach");
    got
}

#[tokio::test]
async fn filling_to_the_floor_then_consuming_makes_room_without_a_restart() {
    let fs = SimFs::new();
    fs.set_disk_size(Some(1 << 20));
    let broker = start_on(&fs, 256 * 1024).await;
    let mut client = Client::connect(&broker).await;
    let mut sender = client.sender("fill").await;
    let mut accepted = Vec::new();
    for n in 0..5000 {
        let name = format!("m{n}");
        if !try_send(&mut sender, &name).await {
            break;
        }
        accepted.push(name);
    }
    assert!(
        (100..5000).contains(&accepted.len()),
        "the floor should stop a 1 MiB disk after a few hundred messages, got {}",
        accepted.len()
    );

    // Consuming everything frees the disk: settles go in the headroom, dead segments go.
    assert_eq!(drain(&mut client, "fill").await, accepted);
    send_once_room(&mut sender, "again").await;

    // A clean restart brings back what is queued and nothing that was consumed.
    client.close().await;
    broker.shutdown().await;
    let broker = start_on(&fs, 256 * 1024).await;
    let mut client = Client::connect(&broker).await;
    assert_eq!(drain(&mut client, "fill").await, ["again"]);
    client.close().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn a_disk_filled_from_outside_refuses_producers_until_it_is_freed() {
    let fs = SimFs::new();
    let disk = 4 << 20;
    fs.set_disk_size(Some(disk));
    let broker = start_on(&fs, 0).await;
    let mut client = Client::connect(&broker).await;
    let mut sender = client.sender("q").await;
    let mut accepted = Vec::new();
    for n in 0..10 {
        let name = format!("a{n}");
        assert!(try_send(&mut sender, &name).await, "{name}");
        accepted.push(name);
    }
    // Another process takes the rest of the disk: the open segment's blocks are reserved, so
    // its room is still there, but the next segment cannot be created.
    fs.set_used_from_outside(disk);
    let mut refused = None;
    for n in 0..1000 {
        let name = format!("b{n}");
        if try_send(&mut sender, &name).await {
            accepted.push(name);
        } else {
            refused = Some(n);
            break;
        }
    }
    let refused = refused.expect("a full disk refuses messages");
    assert!(!try_send(&mut sender, "still-full").await);

    fs.set_used_from_outside(0);
    send_once_room(&mut sender, "c").await;
    accepted.push("c".into());

    // After a restart exactly the accepted messages are there, none of the refused ones.
    client.close().await;
    broker.shutdown().await;
    let broker = start_on(&fs, 0).await;
    let mut client = Client::connect(&broker).await;
    let got = drain(&mut client, "q").await;
    assert_eq!(got, accepted, "refused from b{refused} on");
    let mut receiver = client.receiver("q", 10).await;
    nothing_within(&mut receiver, QUIET).await;
    client.close().await;
    broker.shutdown().await;
}
