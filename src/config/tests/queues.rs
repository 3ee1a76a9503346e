//! Tests of the `[queues."pattern"]` tables: which patterns apply, how they merge, and the
//! group and time settings read per queue.

use super::super::*;
use super::{error, parse};

#[test]
fn the_most_specific_pattern_wins() {
    let c = parse(
        r##"
        [queues."#"]
        max_message_size = 1
        [queues."orders.#"]
        max_message_size = 2
        [queues."orders.*"]
        max_message_size = 3
        [queues."orders.eu"]
        max_message_size = 4
        "##,
    );
    let size = |q: &str| c.queues.settings_for(q).max_message_size;
    assert_eq!(size("orders.eu"), 4);
    assert_eq!(size("orders.us"), 3);
    assert_eq!(size("orders"), 2);
    assert_eq!(size("orders.eu.x"), 2);
    assert_eq!(size("billing"), 1);
}

#[test]
fn matching_tables_merge_key_by_key() {
    let c = parse(
        r##"
        [queues."orders"]
        max_message_size = 1024
        [queues."#"]
        durable = false
        auto_create = false
        [queues."orders.#"]
        auto_create = true
        "##,
    );
    let orders = c.queues.settings_for("orders");
    assert_eq!(
        orders,
        QueueSettings {
            auto_create: true,
            durable: false,
            max_message_size: 1024,
            ..QueueSettings::default()
        }
    );
    let other = c.queues.settings_for("billing");
    assert_eq!(
        other,
        QueueSettings {
            auto_create: false,
            durable: false,
            max_message_size: 67108864,
            ..QueueSettings::default()
        }
    );
}

#[test]
fn a_table_that_does_not_match_changes_nothing() {
    let c = parse("[queues.\"a.*\"]\ndurable = false\n");
    assert!(c.queues.settings_for("a").durable);
    assert!(c.queues.settings_for("a.b.c").durable);
    assert!(!c.queues.settings_for("a.b").durable);
}

#[test]
fn group_settings_are_read_per_queue() {
    let c = parse(
        r##"
        [queues."test-group-queue"]
        group_key = "ourGroupID"
        group_release = "on-close"
        group_first_key = "JMSXGroupFirstForConsumer"
        group_first_as_property = true
        group_rebalance = true
        group_rebalance_pause_dispatch = true
        group_buckets = 1024
        [queues."plain"]
        group_buckets = 0
        "##,
    );
    let q = c.queues.settings_for("test-group-queue");
    assert_eq!(q.group_key, GroupKey::Property("ourGroupID".into()));
    assert_eq!(q.group_release, GroupRelease::OnClose);
    assert_eq!(
        q.group_first_key.as_deref(),
        Some("JMSXGroupFirstForConsumer")
    );
    assert!(q.group_first_as_property && q.group_rebalance && q.group_rebalance_pause_dispatch);
    assert_eq!(q.group_buckets, GroupBuckets::Hashed(1024));
    assert_eq!(
        c.queues.settings_for("plain").group_buckets,
        GroupBuckets::Off
    );
    let d = c.queues.settings_for("other");
    assert_eq!(d.group_key, GroupKey::GroupId);
    assert_eq!(d.group_release, GroupRelease::OnAck);
    assert_eq!(d.group_buckets, GroupBuckets::Exact);
}

#[test]
fn bad_group_settings_name_the_key() {
    for (text, expected) in [
        (
            "group_release = \"sometimes\"",
            "expected \"on-ack\" or \"on-close\"",
        ),
        ("group_buckets = -2", "expected an integer from -1"),
        ("group_key = \"\"", "must not be empty"),
        ("group_first_key = 3", "expected a string"),
        ("group_first_key = \"première\"", "must be ASCII"),
    ] {
        let doc = format!("[queues.\"q\"]\n{text}\n");
        let err = error(&doc);
        assert!(err.contains(expected), "{text}: {err}");
        assert!(err.contains("queues.q.group_"), "{text}: {err}");
    }
}

#[test]
fn time_settings_are_read_per_queue() {
    let c = parse(
        r##"
        [queues."orders"]
        default_delay = 1500
        default_ttl = "1h 30m"
        visibility_timeout = "250ms"
        dead_letter_address = "orders.dlq"
        max_delivery_attempts = 5
        rewind_seconds = 3600
        rewind_max_bytes = 1048576
        [queues."#"]
        default_ttl = "30s"
        visibility_timeout = "5m"
        "##,
    );
    let q = c.queues.settings_for("orders");
    assert_eq!(
        q,
        QueueSettings {
            default_delay: 1_500,
            default_ttl: 5_400_000,
            visibility_timeout: 250,
            dead_letter_address: Some("orders.dlq".into()),
            max_delivery_attempts: 5,
            rewind_seconds: 3_600,
            rewind_max_bytes: 1_048_576,
            ..QueueSettings::default()
        }
    );
    let other = c.queues.settings_for("other");
    assert_eq!(
        (other.default_ttl, other.visibility_timeout),
        (30_000, 300_000)
    );
    let d = QueueSettings::default();
    assert_eq!(
        (d.default_delay, d.default_ttl, d.visibility_timeout),
        (0, 0, 0)
    );
    assert_eq!(d.dead_letter_address, None);
    assert_eq!(d.max_delivery_attempts, 0);
    assert_eq!((d.rewind_seconds, d.rewind_max_bytes), (0, 67_108_864));
}

#[test]
fn declared_settings_accept_durations_too() {
    let q = QueueRules::default()
        .settings_with(
            "q",
            "default_delay = \"2s\"\nvisibility_timeout = 10",
            "declare",
        )
        .unwrap();
    assert_eq!((q.default_delay, q.visibility_timeout), (2_000, 10));
}

#[test]
fn bad_time_settings_name_the_key() {
    assert_eq!(
        error("[queues.\"orders.#\"]\ndefault_ttl = \"soon\"\n"),
        r#"broker.toml:2:15: queues."orders.#".default_ttl: expected milliseconds or a duration such as "30s", found "soon""#
    );
    for (text, expected) in [
        (
            "default_delay = -1",
            r#"queues.q.default_delay: expected milliseconds or a duration such as "30s", found the integer -1"#,
        ),
        (
            "visibility_timeout = 1.5",
            r#"queues.q.visibility_timeout: expected milliseconds or a duration such as "30s", found the number 1.5"#,
        ),
        (
            "default_ttl = \"30\"",
            r#"queues.q.default_ttl: expected milliseconds or a duration such as "30s", found "30""#,
        ),
        (
            "default_ttl = \"1500us\"",
            r#"queues.q.default_ttl: expected a whole number of milliseconds, found "1500us""#,
        ),
        (
            "default_ttl = \"600000000y\"",
            "queues.q.default_ttl: expected a duration of at most 18446744073709551615 milliseconds",
        ),
        ("dead_letter_address = \"\"", "queues.q.dead_letter_address: must not be empty"),
        (
            "dead_letter_address = 1",
            "queues.q.dead_letter_address: expected a string, found the integer 1",
        ),
        (
            "dead_letter_address = \"a\\tb\"",
            "queues.q.dead_letter_address: a queue name must not contain control characters",
        ),
        (
            "max_delivery_attempts = -1",
            "queues.q.max_delivery_attempts: expected an integer from 0 to 4294967295, found -1",
        ),
        (
            "rewind_seconds = -1",
            "queues.q.rewind_seconds: expected a non-negative integer, found -1",
        ),
        (
            "rewind_max_bytes = \"1MiB\"",
            "queues.q.rewind_max_bytes: expected a non-negative integer, found \"1MiB\"",
        ),
    ] {
        let err = error(&format!("[queues.\"q\"]\n{text}\n"));
        assert!(err.starts_with("broker.toml:2:"), "{text}: {err}");
        assert!(err.contains(expected), "{text}: {err}");
    }
    let long = format!(
        "[queues.q]\ndead_letter_address = \"{}\"\n",
        "x".repeat(256)
    );
    assert!(error(&long).ends_with("a queue name must be at most 255 bytes long"));
    let longest = format!(
        "[queues.q]\ndead_letter_address = \"{}\"\n",
        "x".repeat(255)
    );
    assert_eq!(
        parse(&longest)
            .queues
            .settings_for("q")
            .dead_letter_address
            .map(|n| n.len()),
        Some(255)
    );
}

#[test]
fn limit_settings_are_read_per_queue() {
    let c = parse(
        "[queues.\"held\"]\nmax_length = 10\nmax_length_bytes = 4096\noverflow = \"block\"\n\
         [queues.\"rolling\"]\noverflow = \"drop-head\"\n",
    );
    let held = c.queues.settings_for("held");
    assert_eq!(
        (held.max_length, held.max_length_bytes, held.overflow),
        (10, 4096, Overflow::Block)
    );
    assert_eq!(
        c.queues.settings_for("rolling").overflow,
        Overflow::DropHead
    );
    assert_eq!(
        c.queues.settings_for("other").overflow,
        Overflow::RejectPublish
    );
    assert_eq!(
        error("[queues.\"q\"]\noverflow = \"wait\"\n"),
        r#"broker.toml:2:12: queues.q.overflow: expected "reject-publish", "drop-head" or "block", found "wait""#
    );
}
