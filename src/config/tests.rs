//! Tests for `config.rs`: defaults, the documented default file, error messages and
//! per-queue merging.

use super::*;

fn parse(text: &str) -> Config {
    match Config::from_toml(text, "test.toml") {
        Ok(config) => config,
        Err(e) => panic!("{e}"),
    }
}

fn error(text: &str) -> String {
    match Config::from_toml(text, "broker.toml") {
        Ok(config) => panic!("accepted: {config:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn an_empty_file_means_all_defaults() {
    assert_eq!(parse(""), Config::default());
    assert_eq!(parse("# nothing\n\n"), Config::default());
    let c = Config::default();
    assert_eq!(
        c.listen,
        vec!["0.0.0.0:5672".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(c.data_dir, PathBuf::from("data"));
    assert_eq!(
        (c.max_frame_size, c.channel_max, c.handle_max),
        (65536, 255, 1023)
    );
    assert_eq!(
        (c.idle_timeout_ms, c.session_window, c.link_credit),
        (60000, 2048, 1000)
    );
    assert_eq!(c.max_connections, 0);
    assert_eq!(
        (
            c.handshake_timeout_ms,
            c.max_handshakes,
            c.max_handshakes_per_source
        ),
        (10_000, 1024, 512)
    );
    assert_eq!(c.auth.anonymous, Exposure::Loopback);
    assert_eq!(c.auth.plain_without_tls, Exposure::Loopback);
    assert_eq!(c.auth.failure_delay_ms, 1000);
    let q = c.queues.settings_for("any.queue");
    assert_eq!(
        q,
        QueueSettings {
            auto_create: true,
            durable: true,
            max_message_size: 67108864,
            ..QueueSettings::default()
        }
    );
}

#[test]
fn the_documented_default_file_is_the_default() {
    let doc = parse(include_str!("../../config/broker.toml"));
    let def = Config::default();
    assert_eq!(doc.listen, def.listen);
    assert_eq!(doc.data_dir, def.data_dir);
    assert_eq!(doc.container_id, def.container_id);
    assert_eq!(doc.max_frame_size, def.max_frame_size);
    assert_eq!(doc.channel_max, def.channel_max);
    assert_eq!(doc.handle_max, def.handle_max);
    assert_eq!(doc.idle_timeout_ms, def.idle_timeout_ms);
    assert_eq!(doc.session_window, def.session_window);
    assert_eq!(doc.link_credit, def.link_credit);
    assert_eq!(doc.max_connections, def.max_connections);
    assert_eq!(doc.auth, def.auth);
    assert_eq!(doc.users, def.users);
    assert_eq!(doc.queues, def.queues);
    assert_eq!(doc.admin, def.admin);
    // Catches a field added to Config but not compared above.
    assert_eq!(doc, def);
}

fn is_assignment(line: &str) -> bool {
    line.split_once(" = ").is_some_and(|(key, _)| {
        !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    })
}

#[test]
fn the_commented_examples_in_the_default_file_are_valid() {
    // Uncomment every "# key = ..." / "# [table]" line; nested "# # ..." lines stay comments.
    let uncommented: String = include_str!("../../config/broker.toml")
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if rest.starts_with('[') || is_assignment(rest) => rest,
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let c = parse(&uncommented);
    assert_eq!(c.users.len(), 1);
    assert!(c.authenticate("app", "secret"));
    assert!(!c.queues.settings_for("orders.eu").durable);
    assert_eq!(c.queues.settings_for("orders").max_message_size, 1048576);
    assert_eq!(c.queues.settings_for("other"), QueueSettings::default());
    // The commented dead_letter_address example stays a comment: it has no default.
    assert_eq!(c.queues.settings_for("other").dead_letter_address, None);
}

#[test]
fn every_key_can_be_set() {
    let c = parse(
        r#"
        [broker]
        listen = ["127.0.0.1:5673", "[::1]:5674"]
        data_dir = "/var/lib/sluice"
        container_id = "node-1"
        max_frame_size = 512
        channel_max = 65535
        handle_max = 7
        idle_timeout_ms = 0
        session_window = 1
        link_credit = 1
        max_connections = 10
        handshake_timeout_ms = 250
        max_handshakes = 3
        max_handshakes_per_source = 0
        [auth]
        anonymous = "never"
        plain_without_tls = "everywhere"
        failure_delay_ms = 0
        [[users]]
        name = "app"
        password = "secret"
        roles = ["admin", "ops"]
        [[users]]
        name = "reader"
        password = ""
        "#,
    );
    assert_eq!(c.listen.len(), 2);
    assert_eq!(c.listen[1], "[::1]:5674".parse::<SocketAddr>().unwrap());
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/sluice"));
    assert_eq!(c.container_id, "node-1");
    assert_eq!(
        (c.max_frame_size, c.channel_max, c.handle_max),
        (512, 65535, 7)
    );
    assert_eq!(
        (c.idle_timeout_ms, c.session_window, c.link_credit),
        (0, 1, 1)
    );
    assert_eq!(c.max_connections, 10);
    assert_eq!(
        (
            c.handshake_timeout_ms,
            c.max_handshakes,
            c.max_handshakes_per_source
        ),
        (250, 3, 0)
    );
    assert_eq!(
        c.auth,
        AuthConfig {
            anonymous: Exposure::Never,
            plain_without_tls: Exposure::Everywhere,
            failure_delay_ms: 0
        }
    );
    assert_eq!(c.users[0].roles, ["admin", "ops"]);
    assert!(c.users[1].roles.is_empty());
}

#[test]
fn listen_accepts_a_single_address() {
    let c = parse("broker.listen = \"127.0.0.1:1\"");
    assert_eq!(c.listen, vec!["127.0.0.1:1".parse::<SocketAddr>().unwrap()]);
}

#[test]
fn errors_point_at_line_and_column_and_name_the_key() {
    let cases = [
        (
            "[queues.\"orders.#\"]\nmax_message_size = -5\n",
            r#"broker.toml:2:20: queues."orders.#".max_message_size: expected a non-negative integer, found -5"#,
        ),
        (
            "[broker]\nmax_frame_size = 100\n",
            "broker.toml:2:18: broker.max_frame_size: expected an integer from 512 to 4294967295, found 100",
        ),
        (
            "[broker]\nhandshake_timeout_ms = 5\n",
            "broker.toml:2:24: broker.handshake_timeout_ms: expected an integer from 100 to 4294967295, found 5",
        ),
        (
            "[broker]\nmax_handshakes_per_source = -1\n",
            "broker.toml:2:29: broker.max_handshakes_per_source: expected an integer from 0 to 4294967295, found -1",
        ),
        (
            "[broker]\nchannel_max = 70000\n",
            "broker.toml:2:15: broker.channel_max: expected an integer from 0 to 65535, found 70000",
        ),
        (
            "[broker]\nsession_window = 0\n",
            "broker.toml:2:18: broker.session_window: expected an integer from 1 to 4294967295, found 0",
        ),
        (
            "[broker]\nhandle_max = \"lots\"\n",
            r#"broker.toml:2:14: broker.handle_max: expected an integer from 0 to 4294967295, found "lots""#,
        ),
        (
            "[broker]\nlisten = [\"0.0.0.0:5672\", \"localhost:5672\"]\n",
            r#"broker.toml:2:27: broker.listen: expected an IP address and port like "0.0.0.0:5672", found "localhost:5672""#,
        ),
        ("[broker]\nlisten = []\n", "broker.toml:2:10: broker.listen: expected at least one address"),
        ("[broker]\ncontainer_id = \"\"\n", "broker.toml:2:16: broker.container_id: must not be empty"),
        (
            "[auth]\nanonymous = \"sometimes\"\n",
            r#"broker.toml:2:13: auth.anonymous: expected "never", "loopback" or "everywhere", found "sometimes""#,
        ),
        (
            "[queues.\"a\"]\ndurable = 1\n",
            "broker.toml:2:11: queues.a.durable: expected true or false, found the integer 1",
        ),
        (
            "[[users]]\nname = \"\"\npassword = \"x\"\n",
            "broker.toml:2:8: users[0].name: must not be empty",
        ),
        ("broker = 5\n", "broker.toml:1:10: broker: expected a table, found the integer 5"),
        (
            "[broker]\nlisten = 1979-05-27\n",
            "broker.toml:2:10: broker.listen: expected a string, found the date-time 1979-05-27",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error(text), expected, "for {text:?}");
    }
}

#[test]
fn unknown_keys_are_named_with_their_table_and_the_keys_it_accepts() {
    assert_eq!(
        error("[broker]\ndata_dir = \"d\"\nlistn = \"0.0.0.0:1\"\n"),
        "broker.toml:3:1: unknown key `listn` in [broker]; expected one of listen, data_dir, \
         container_id, max_frame_size, channel_max, handle_max, idle_timeout_ms, session_window, \
         link_credit, max_connections, handshake_timeout_ms, max_handshakes, \
         max_handshakes_per_source"
    );
    assert_eq!(
        error("brokr = 1\n"),
        "broker.toml:1:1: unknown key `brokr` in the top level; expected one of broker, auth, users, queues, admin, storage, limits"
    );
    assert_eq!(
        error("[queues.\"orders.#\"]\n  durabl = true\n"),
        "broker.toml:2:3: unknown key `durabl` in [queues.\"orders.#\"]; expected one of auto_create, durable, max_message_size, \
         group_key, group_release, group_first_key, group_first_as_property, group_rebalance, \
         group_rebalance_pause_dispatch, group_buckets, default_delay, default_ttl, \
         visibility_timeout, consumer_timeout, dead_letter_address, max_delivery_attempts, rewind_seconds, \
         rewind_max_bytes"
    );
    assert!(error("[[users]]\nname = \"a\"\npassword = \"b\"\nrole = []\n")
        .starts_with("broker.toml:4:1: unknown key `role` in [[users]] entry 1; expected one of name, password, roles"));
    // The key itself is pointed at, inside the table header.
    assert!(error("[auth.extra]\nx = 1\n")
        .starts_with("broker.toml:1:7: unknown key `extra` in [auth]"));
}

#[test]
fn users_must_have_unique_non_empty_names_and_a_password() {
    let dup = "[[users]]\nname = \"app\"\npassword = \"a\"\n\n[[users]]\nname = \"app\"\npassword = \"b\"\n";
    assert_eq!(
        error(dup),
        r#"broker.toml:6:8: users[1].name: duplicate user "app" (first defined on line 2)"#
    );
    assert_eq!(
        error("[[users]]\nname = \"app\"\n"),
        "broker.toml:1:1: users[0]: missing key `password`"
    );
    assert_eq!(
        error("users = 1\n"),
        "broker.toml:1:9: users: expected [[users]] tables, found the integer 1"
    );
    assert_eq!(
        error("[[users]]\nname = \"a\"\npassword = \"b\"\nroles = [\"x\", 2]\n"),
        "broker.toml:4:15: users[0].roles: expected a string, found the integer 2"
    );
}

#[test]
fn queue_patterns_must_not_be_empty_or_have_empty_words() {
    assert_eq!(
        error("[queues.\"a..b\"]\n"),
        r#"broker.toml:1:1: queues."a..b": queue pattern "a..b" has an empty word; words are separated by single dots"#
    );
    assert_eq!(
        error("[queues.\"\"]\n"),
        r#"broker.toml:1:1: queues."": a queue pattern must not be empty"#
    );
    assert_eq!(
        error("queues = [1]\n"),
        "broker.toml:1:10: queues: expected a table, found an array"
    );
}

#[test]
fn syntax_errors_carry_a_location() {
    let e = error("[broker]\nlisten = [\n");
    assert!(
        e.starts_with("broker.toml:3:1: invalid TOML: invalid array"),
        "{e}"
    );
    let e = error("a = 1\na = 2\n");
    assert!(
        e.starts_with("broker.toml:2:1: invalid TOML: duplicate key"),
        "{e}"
    );
}

#[test]
fn an_unreadable_file_names_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broker.toml");
    let e = Config::load(&path).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("cannot read {}: No such file or directory", path.display())
    );
}

#[test]
fn load_reads_the_file_and_names_it_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broker.toml");
    std::fs::write(&path, "[broker]\ncontainer_id = \"x\"\n").unwrap();
    assert_eq!(Config::load(&path).unwrap().container_id, "x");
    std::fs::write(&path, "[broker]\nlink_credit = 0\n").unwrap();
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}:2:15: broker.link_credit:", path.display())),
        "{e}"
    );
}

#[test]
fn authenticate_accepts_only_the_exact_name_and_password() {
    let c = parse("[[users]]\nname = \"app\"\npassword = \"secret\"\n[[users]]\nname = \"b\"\npassword = \"pw\"\n");
    assert!(c.authenticate("app", "secret"));
    assert!(c.authenticate("b", "pw"));
    for (user, password) in [
        ("app", "secre"),
        ("app", "secret!"),
        ("app", "pw"),
        ("b", "secret"),
        ("", ""),
        ("ap", "secret"),
    ] {
        assert!(!c.authenticate(user, password), "{user}/{password}");
    }
    assert!(!Config::default().authenticate("", ""));
}

#[test]
fn debug_output_hides_passwords() {
    let c = parse("[[users]]\nname = \"app\"\npassword = \"hunter2\"\n");
    assert!(!format!("{c:?}").contains("hunter2"));
}

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
fn the_admin_listener_is_configured_in_its_own_table() {
    let c = parse("[admin]\nenabled = false\nlisten = \"0.0.0.0:9000\"\n");
    assert!(!c.admin.enabled);
    assert_eq!(
        c.admin.listen,
        "0.0.0.0:9000".parse::<SocketAddr>().unwrap()
    );
    let err = error("[admin]\nlisten = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n");
    assert!(err.contains("admin.listen: expected one address"), "{err}");
}
