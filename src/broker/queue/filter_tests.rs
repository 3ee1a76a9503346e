//! Filtered consumers with the queue's other features: priority levels (each level keeps its
//! own place for the consumer) and message groups (a filtered consumer takes a group only
//! when it passes the group's next message), and a browser with a filter.

use std::sync::Arc;

use bytes::Bytes;
use fe2o3_amqp_types::messaging::message::__private::Serializable;
use fe2o3_amqp_types::messaging::{ApplicationProperties, Header, Message as Amqp, Properties};

use crate::broker::consumer::{ConnWaker, ConsumerId, OutItem, Outbox};
use crate::broker::queue::Queue;
use crate::config::Config;
use crate::message::Message;
use crate::selector::{Dialect, Filter, Selector};

fn message(colour: &str, priority: u8, group: Option<&str>) -> Message {
    let m = Amqp::builder()
        .header(Header {
            priority: priority.into(),
            ..Header::default()
        })
        .properties(Properties {
            group_id: group.map(str::to_owned),
            ..Properties::default()
        })
        .application_properties(
            ApplicationProperties::builder()
                .insert("colour", colour)
                .build(),
        )
        .value(format!("{colour}-{priority}-{}", group.unwrap_or("none")))
        .build();
    Message::parse(Bytes::from(serde_amqp::to_vec(&Serializable(m)).unwrap())).unwrap()
}

fn queue(settings: &str) -> Arc<Queue> {
    let config = Config::from_toml(&format!("[queues.q]\n{settings}\n"), "t.toml").unwrap();
    Queue::alone("q".into(), config.queues.settings_for("q"))
}

fn green() -> Option<Arc<Filter>> {
    Some(Arc::new(Filter {
        selectors: vec![Selector::parse("colour = 'green'", Dialect::Jms).unwrap()],
        properties: Vec::new(),
    }))
}

fn attach(q: &Queue, id: ConsumerId, filter: Option<Arc<Filter>>) -> Arc<Outbox> {
    let outbox = Outbox::new(id, ConnWaker::new());
    q.add_consumer(outbox.clone(), &format!("c{id}"), filter);
    outbox
}

/// What `outbox` was sent, as the colour-priority-group of each message.
fn taken(outbox: &Outbox) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(item) = outbox.pop() {
        if let OutItem::Deliver(d) = item {
            // The amqp-value section comes last: 0x00 0x53 0x77, then a str8 (0xa1, length).
            let bytes = d.message.bytes();
            let at = bytes
                .windows(4)
                .rposition(|w| w == [0x00, 0x53, 0x77, 0xa1])
                .expect("an amqp-value string body");
            got.push(String::from_utf8_lossy(&bytes[at + 5..]).into_owned());
        }
    }
    got
}

#[test]
fn a_filtered_consumer_takes_the_highest_priority_it_passes_first() {
    let q = queue("max_priority = 9");
    q.enqueue([
        message("red", 1, None),
        message("green", 1, None),
        message("green", 9, None),
        message("red", 9, None),
    ]);
    let greens = attach(&q, 1, green());
    q.flow(1, 2, false);
    assert_eq!(taken(&greens), ["green-9-none", "green-1-none"]);
    let others = attach(&q, 2, None);
    q.flow(2, 2, false);
    assert_eq!(taken(&others), ["red-9-none", "red-1-none"]);
}

#[test]
fn a_filtered_consumer_takes_groups_whose_next_message_it_passes() {
    let q = queue("");
    q.enqueue([
        message("red", 4, Some("a")),
        message("green", 4, Some("b")),
        message("green", 4, None),
        message("green", 4, Some("b")),
    ]);
    let greens = attach(&q, 1, green());
    q.flow(1, 10, false);
    assert_eq!(
        taken(&greens),
        ["green-4-b", "green-4-none", "green-4-b"],
        "group a's red is not for it; group b is now its own"
    );
    let groups = q.groups();
    let b = groups.iter().find(|g| g.group == "b").unwrap();
    assert_eq!(b.owner, Some(1));
    let others = attach(&q, 2, None);
    q.flow(2, 10, false);
    assert_eq!(taken(&others), ["red-4-a"]);
}

#[test]
fn a_filtered_browser_is_shown_only_what_passes() {
    let q = queue("");
    q.enqueue([
        message("red", 4, None),
        message("green", 4, None),
        message("green", 4, Some("g")),
    ]);
    let browser = Outbox::new(1, ConnWaker::new());
    q.add_browser(browser.clone(), "browser", green());
    q.flow(1, 10, false);
    assert_eq!(taken(&browser), ["green-4-none", "green-4-g"]);
    assert_eq!(q.stats().ready, 3, "nothing taken");
}
