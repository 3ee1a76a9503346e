//! `[tls]`, `[admin]`'s HTTPS keys, `[roles]` and the permission and certificate keys of
//! `[[users]]`, and `[websocket]`.

use super::*;

#[test]
fn tls_takes_its_files_and_defaults_to_port_5671() {
    let c = parse("[tls]\ncert = \"s.pem\"\nkey = \"s.key\"\n");
    let tls = c.tls.expect("[tls]");
    assert_eq!(
        tls.listen,
        vec!["0.0.0.0:5671".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(tls.cert, PathBuf::from("s.pem"));
    assert_eq!(tls.client_auth, ClientAuth::None);
    let c = parse("[tls]\ncert = \"s.pem\"\nkey = \"s.key\"\nclient_ca = \"ca.pem\"\n");
    assert_eq!(c.tls.unwrap().client_auth, ClientAuth::Optional);
}

#[test]
fn tls_mistakes_name_the_key() {
    let e = error("[tls]\ncert = \"s.pem\"\n");
    assert!(e.contains("broker.toml:1:1: tls: missing key `key`"), "{e}");
    let e = error("[tls]\ncert = \"s.pem\"\nkey = \"k\"\nclient_auth = \"required\"\n");
    assert!(
        e.contains("tls.client_auth") && e.contains("client_ca"),
        "{e}"
    );
    let e =
        error("[tls]\ncert = \"s.pem\"\nkey = \"k\"\nclient_ca = \"c\"\nclient_auth = \"maybe\"\n");
    assert!(
        e.contains(r#"expected "none", "optional" or "required""#),
        "{e}"
    );
    let e = error("[tls]\ncert = \"s.pem\"\nkey = \"k\"\nciphers = \"all\"\n");
    assert!(e.contains("ciphers"), "{e}");
}

#[test]
fn the_plain_listener_can_be_turned_off_only_with_tls_on() {
    let c = parse("[broker]\nlisten = []\n[tls]\ncert = \"s.pem\"\nkey = \"s.key\"\n");
    assert!(c.listen.is_empty());
    let e = error("[broker]\nlisten = []\n");
    assert!(
        e.contains("broker.listen") && e.contains("no listener"),
        "{e}"
    );
    let e = error("[broker]\nlisten = []\n[tls]\nlisten = []\ncert = \"s\"\nkey = \"k\"\n");
    assert!(e.contains("no listener"), "{e}");
}

#[test]
fn the_admin_listener_serves_https_with_tls_or_its_own_files() {
    let c = parse("[tls]\ncert = \"s.pem\"\nkey = \"s.key\"\n[admin]\ntls = true\n");
    assert_eq!(
        c.admin.https,
        Some((PathBuf::from("s.pem"), PathBuf::from("s.key")))
    );
    let c = parse("[admin]\ncert = \"a.pem\"\nkey = \"a.key\"\n");
    assert_eq!(
        c.admin.https,
        Some((PathBuf::from("a.pem"), PathBuf::from("a.key")))
    );
    let e = error("[admin]\ntls = true\n");
    assert!(e.contains("admin.tls") && e.contains("[tls]"), "{e}");
    let e = error("[admin]\ncert = \"a.pem\"\n");
    assert!(e.contains("admin.cert") && e.contains("`key`"), "{e}");
}

#[test]
fn permissions_come_from_the_user_and_its_roles() {
    let c = parse(
        r#"
[roles.readers]
permissions = [{ address = "reports.#", allow = ["consume", "browse"] }]

[[users]]
name = "app"
password = "x"
permissions = [{ address = "orders.*", allow = ["send"] }]
roles = ["readers"]

[[users]]
name = "legacy"
password = "y"
"#,
    );
    let app = c.users[0].permissions.as_ref().expect("permissions");
    assert!(app.allows(Action::Send, "orders.eu"));
    assert!(!app.allows(Action::Send, "orders.eu.late"));
    assert!(!app.allows(Action::Consume, "orders.eu"));
    assert!(app.allows(Action::Consume, "reports.daily.eu"));
    assert!(app.allows(Action::Browse, "reports"));
    assert!(!app.allows(Action::Manage, "reports"));
    // No permissions anywhere: everything, as before permissions existed.
    assert_eq!(c.users[1].permissions, None);
    assert!(allowed(None, Action::Manage, "anything"));
}

#[test]
fn permission_mistakes_name_the_key() {
    let e = error(
        "[[users]]\nname = \"a\"\npassword = \"x\"\npermissions = [{ address = \"q\", allow = [\"write\"] }]\n",
    );
    assert!(e.contains("users[0].permissions[0].allow"), "{e}");
    assert!(e.contains(r#"unknown permission "write""#), "{e}");
    let e = error(
        "[[users]]\nname = \"a\"\npassword = \"x\"\npermissions = [{ allow = [\"send\"] }]\n",
    );
    assert!(e.contains("missing key `address`"), "{e}");
    let e = error("[[users]]\nname = \"a\"\npassword = \"x\"\npermissions = \"all\"\n");
    assert!(e.contains("users[0].permissions"), "{e}");
    let e = error("[roles.x]\npermissions = [{ address = \"a..b\", allow = [\"send\"] }]\n[[users]]\nname = \"a\"\npassword = \"x\"\n");
    assert!(e.contains("roles.x.permissions[0].address"), "{e}");
}

#[test]
fn an_account_may_log_in_by_certificate_only() {
    let c = parse("[[users]]\nname = \"device\"\ncertificate_cn = \"device-17\"\n");
    let user = &c.users[0];
    assert!(user.certificate_only);
    assert_eq!(
        user_for_certificate(&c.users, "device-17").map(|u| &*u.name),
        Some("device")
    );
    assert_eq!(user_for_certificate(&c.users, "device"), None);
    // And never with a password, not even an empty one.
    assert!(find_user(&c.users, "device", "").is_none());
    let e = error("[[users]]\nname = \"device\"\n");
    assert!(e.contains("certificate_cn"), "{e}");
}

#[test]
fn websocket_serves_ws_on_5673_at_the_root_by_default() {
    let w = parse("[websocket]\n").websocket.expect("[websocket]");
    assert_eq!(
        w.listen,
        vec!["0.0.0.0:5673".parse::<SocketAddr>().unwrap()]
    );
    assert!(w.tls_listen.is_empty());
    assert_eq!(w.path, "/");
    assert!(w.origins.is_empty());
    assert!(!w.allows_origin("https://anything.example"));
    let toml = "[tls]\ncert = \"s.pem\"\nkey = \"s.key\"\n[websocket]\n\
                tls_listen = [\"0.0.0.0:443\"]\npath = \"/amqp\"\n\
                origins = [\"https://app.example.com/\"]\n";
    let w = parse(toml).websocket.unwrap();
    assert!(w.listen.is_empty(), "only wss was asked for");
    assert_eq!(w.path, "/amqp");
    assert!(w.allows_origin("https://APP.example.com"));
    assert!(!w.allows_origin("https://evil.example.com"));
    assert!(parse("[websocket]\norigins = [\"*\"]\n")
        .websocket
        .unwrap()
        .allows_origin("http://x"));
    // A WebSocket listener alone is a listener.
    let c = parse("[broker]\nlisten = []\n[websocket]\n");
    assert!(c.listen.is_empty());
}

#[test]
fn websocket_mistakes_name_the_key() {
    let e = error("[websocket]\ntls_listen = [\"0.0.0.0:443\"]\n");
    assert!(
        e.contains("websocket.tls_listen") && e.contains("[tls]"),
        "{e}"
    );
    let e = error("[websocket]\npath = \"amqp\"\n");
    assert!(e.contains("broker.toml:2:8: websocket.path"), "{e}");
    let e = error("[websocket]\norigins = [\"app.example.com\"]\n");
    assert!(e.contains("websocket.origins"), "{e}");
    let e = error("[websocket]\nport = 80\n");
    assert!(e.contains("port"), "{e}");
}

#[test]
fn caps_per_connection_and_per_user_are_read() {
    let c = parse(
        "[limits]\nmax_sessions_per_connection = 8\nmax_links_per_connection = 64\n\
         max_unsettled_per_link = 100\n\
         [[users]]\nname = \"app\"\npassword = \"pw\"\nmax_connections = 3\nmax_queues = 10\n",
    );
    assert_eq!(c.limits.max_sessions_per_connection, 8);
    assert_eq!(c.limits.max_links_per_connection, 64);
    assert_eq!(c.limits.max_unsettled_per_link, 100);
    assert_eq!(c.users[0].max_connections, Some(3));
    assert_eq!(c.users[0].max_queues, Some(10));
    let c = parse("[[users]]\nname = \"app\"\npassword = \"pw\"\n");
    assert_eq!(
        (c.users[0].max_connections, c.users[0].max_queues),
        (None, None)
    );
    assert_eq!(c.limits.max_links_per_connection, 0);
    let e = error("[[users]]\nname = \"app\"\npassword = \"pw\"\nmax_queues = -1\n");
    assert!(e.contains("users[0].max_queues"), "{e}");
    let e = error("[limits]\nmax_links_per_connection = \"many\"\n");
    assert!(e.contains("limits.max_links_per_connection"), "{e}");
}

#[test]
fn anonymous_user_names_an_account_and_asks_for_anonymous_access() {
    let toml =
        "[auth]\nanonymous_user = \"guest\"\n[[users]]\nname = \"guest\"\npassword = \"p\"\n";
    let c = parse(toml);
    assert_eq!(c.auth.anonymous_user.as_deref(), Some("guest"));
    assert_eq!(
        c.auth.anonymous,
        Exposure::Loopback,
        "users alone would turn it off"
    );
    let e =
        error("[auth]\nanonymous_user = \"nobody\"\n[[users]]\nname = \"a\"\npassword = \"p\"\n");
    assert!(
        e.contains("broker.toml:2:18: auth.anonymous_user") && e.contains("nobody"),
        "{e}"
    );
}

#[test]
fn virtual_hosts_and_who_may_use_them() {
    let c = parse(
        r##"
[vhosts.a]
hostnames = ["a.example.com"]
[vhosts.b]
[[users]]
name = "u"
password = "p"
vhosts = ["a", "/"]
permissions = [{ vhost = "a", address = "orders.#", allow = ["send"] }, { address = "x", allow = ["send"] }]
"##,
    );
    assert_eq!(c.vhosts.select(Some("a.example.com")), Ok(Some("a")));
    assert_eq!(c.vhosts.select(Some("vhost:b")), Ok(Some("b")));
    let u = &c.users[0];
    assert_eq!(
        u.vhosts.as_deref(),
        Some(&["a".to_owned(), "/".to_owned()][..])
    );
    let p = u.permissions.as_ref().unwrap();
    assert!(p.allows(Action::Send, "vhost:a/orders.eu"));
    assert!(!p.allows(Action::Send, "vhost:b/orders.eu"));
    assert!(!p.allows(Action::Send, "orders.eu"));
    assert!(p.allows(Action::Send, "x") && p.allows(Action::Send, "vhost:b/x"));
}

#[test]
fn virtual_host_mistakes_name_the_key() {
    let users = "[[users]]\nname = \"u\"\npassword = \"p\"\n";
    let e = error(&format!("{users}vhosts = [\"nowhere\"]\n"));
    assert!(
        e.contains("users[0].vhosts[0]") && e.contains("no virtual host \"nowhere\""),
        "{e}"
    );
    let e = error(&format!(
        "{users}permissions = [{{ vhost = \"b\", address = \"#\", allow = [\"send\"] }}]\n"
    ));
    assert!(e.contains("users[0].permissions[0].vhost"), "{e}");
    let e = error("[vhosts.\"a/b\"]\n");
    assert!(e.contains("vhosts") && e.contains("without '/'"), "{e}");
    let e = error("[vhosts.a]\nhostnames = [\"h\"]\n[vhosts.b]\nhostnames = [\"H\"]\n");
    assert!(
        e.contains("vhosts.b.hostnames") && e.contains("already selects virtual host \"a\""),
        "{e}"
    );
    let e = error("[vhosts.a]\nhostname = \"h\"\n");
    assert!(e.contains("hostname"), "{e}");
}
