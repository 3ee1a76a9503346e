//! Tests for `config.rs`: defaults, the documented default file, error messages; the
//! per-queue settings in queues.rs.

use super::*;

mod queues;
mod security;

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
    let doc = parse(include_str!("../../../config/broker.toml"));
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
    let uncommented: String = include_str!("../../../config/broker.toml")
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if rest.starts_with('[') || is_assignment(rest) => rest,
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let c = parse(&uncommented);
    assert_eq!(c.users.len(), 3);
    assert_eq!(c.auth.anonymous_user.as_deref(), Some("guest"));
    assert!(c.tls.is_some());
    assert_eq!(c.websocket.as_ref().map(|w| w.path.as_str()), Some("/"));
    assert!(c.users[1].certificate_only);
    let app = c.users[0].permissions.as_ref().expect("app's permissions");
    assert!(app.allows(Action::Browse, "reports.daily"));
    assert!(c.authenticate("app", "secret"));
    assert!(!c.queues.settings_for("orders.eu").durable);
    assert_eq!(c.queues.settings_for("orders").max_message_size, 1048576);
    assert_eq!(c.queues.settings_for("other"), QueueSettings::default());
    // The commented dead_letter_address example stays a comment: it has no default.
    assert_eq!(c.queues.settings_for("other").dead_letter_address, None);
    assert_eq!(c.exchanges.len(), 1);
    assert_eq!(
        (c.exchanges[0].name.as_str(), c.exchanges[0].kind.as_str()),
        ("logs", "topic")
    );
    assert_eq!(c.bindings.len(), 2);
    assert_eq!(c.bindings[0].key, "log.#");
    assert_eq!(
        c.bindings[1].arguments,
        [
            ("x-match".to_owned(), ArgumentValue::Str("all".into())),
            ("colour".to_owned(), ArgumentValue::Str("green".into())),
        ]
    );
}

#[test]
fn exchanges_and_bindings_are_read_and_checked() {
    let c = parse(
        r#"
        [exchanges."events"]
        type = "fanout"
        durable = false
        unroutable = "drop"
        alternate_exchange = "amq.fanout"

        [[bindings]]
        exchange = "events"
        queue = "e1"
        "#,
    );
    assert_eq!(
        c.exchanges,
        [ExchangeDecl {
            name: "events".into(),
            kind: "fanout".into(),
            durable: false,
            unroutable: "drop".into(),
            alternate_exchange: Some("amq.fanout".into()),
        }]
    );
    assert_eq!(c.bindings[0].key, "");
    for (text, expected) in [
        ("[exchanges.\"x\"]\ntype = \"weird\"\n", "exchanges.x.type: expected one of \"direct\""),
        ("[exchanges.\"x\"]\ndurable = true\n", "exchanges.x: missing key `type`"),
        ("[exchanges.\"amq.mine\"]\ntype = \"topic\"\n", "reserved"),
        ("[exchanges.\"x\"]\ntype = \"topic\"\nunroutable = \"lose\"\n", "exchanges.x.unroutable"),
        ("[[bindings]]\nexchange = \"nope\"\nqueue = \"q\"\n", "bindings[0].exchange: no exchange \"nope\""),
        ("[[bindings]]\nexchange = \"amq.topic\"\n", "bindings[0]: missing key `queue`"),
        (
            "[[bindings]]\nexchange = \"amq.match\"\nqueue = \"q\"\narguments = { \"x-match\" = \"some\" }\n",
            "bindings[0].arguments.x-match",
        ),
        ("[[bindings]]\nexchange = \"amq.topic\"\nqueue = \"q\"\nroute = 1\n", "unknown key `route`"),
    ] {
        let err = error(text);
        assert!(err.contains(expected), "{text}: {err}");
    }
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
            failure_delay_ms: 0,
            anonymous_user: None,
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
        ("[broker]\nlisten = []\n", "broker.toml:2:10: broker.listen: no listener: broker.listen is empty and neither [tls] nor [websocket] listens"),
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
         container_id, max_frame_size, channel_max, handle_max, idle_timeout_ms, transaction_timeout, session_window, \
         link_credit, max_connections, handshake_timeout_ms, max_handshakes, \
         max_handshakes_per_source"
    );
    assert_eq!(
        error("brokr = 1\n"),
        "broker.toml:1:1: unknown key `brokr` in the top level; expected one of broker, auth, users, queues, admin, storage, limits, exchanges, bindings, tls, roles, websocket, vhosts"
    );
    assert_eq!(
        error("[queues.\"orders.#\"]\n  durabl = true\n"),
        "broker.toml:2:3: unknown key `durabl` in [queues.\"orders.#\"]; expected one of auto_create, durable, max_message_size, \
         group_key, group_release, group_first_key, group_first_as_property, group_rebalance, \
         group_rebalance_pause_dispatch, group_buckets, default_delay, default_ttl, \
         visibility_timeout, consumer_timeout, dead_letter_address, max_delivery_attempts, rewind_seconds, \
         rewind_max_bytes, persist, max_length, max_length_bytes, overflow, exclusive, auto_delete, max_priority"
    );
    assert!(error("[[users]]\nname = \"a\"\npassword = \"b\"\nrole = []\n")
        .starts_with("broker.toml:4:1: unknown key `role` in [[users]] entry 1; expected one of name, password, password_hash, roles"));
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
        "broker.toml:1:1: users[0]: missing key `password_hash` (or `password`, or `certificate_cn` for an account that logs in by client certificate only)"
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

#[test]
fn the_transaction_timeout_is_a_duration() {
    assert_eq!(parse("").transaction_timeout_ms, 60_000);
    assert_eq!(
        parse("[broker]\ntransaction_timeout = \"5s\"\n").transaction_timeout_ms,
        5_000
    );
    assert_eq!(
        parse("[broker]\ntransaction_timeout = 0\n").transaction_timeout_ms,
        0
    );
    assert!(error("[broker]\ntransaction_timeout = \"soon\"\n")
        .contains("broker.transaction_timeout: expected milliseconds or a duration"));
}

#[test]
fn anonymous_access_is_off_once_users_are_configured_unless_asked_for() {
    assert_eq!(parse("").auth.anonymous, Exposure::Loopback);
    let users = "[[users]]\nname = \"app\"\npassword = \"secret\"\n";
    assert_eq!(parse(users).auth.anonymous, Exposure::Never);
    let asked = format!("[auth]\nanonymous = \"loopback\"\n{users}");
    assert_eq!(parse(&asked).auth.anonymous, Exposure::Loopback);
    let other_auth_keys = format!("[auth]\nfailure_delay_ms = 10\n{users}");
    assert_eq!(parse(&other_auth_keys).auth.anonymous, Exposure::Never);
}

#[test]
fn a_user_may_give_a_password_hash_instead_of_a_password() {
    let hash = super::password::hash_password("s3cret").unwrap();
    let c = parse(&format!(
        "[[users]]\nname = \"app\"\npassword_hash = \"{hash}\"\n"
    ));
    assert_eq!(c.users[0].password_hash.as_deref(), Some(hash.as_str()));
    assert!(c.authenticate("app", "s3cret"));
    assert!(!c.authenticate("app", "wrong"));
    assert!(!c.authenticate("other", "s3cret"));
    assert!(
        error("[[users]]\nname = \"app\"\npassword_hash = \"md5:abc\"\n")
            .contains("users[0].password_hash: not a PHC password hash")
    );
    assert!(error(&format!(
        "[[users]]\nname = \"app\"\npassword = \"x\"\npassword_hash = \"{hash}\"\n"
    ))
    .contains("not both"));
    assert!(
        error("[[users]]\nname = \"app\"\n").contains("missing key `password_hash` (or `password`")
    );
}
