//! `[[users]]` and `[roles."NAME"]`: the accounts, how each logs in (a password, its hash, or
//! a client certificate), and what each may do, by address pattern.

use std::collections::HashMap;

use super::document::{child, get, Node, Source, Value};
use super::error::ConfigError;
use super::password;
use super::pattern::Pattern;
use super::vhosts::{self, VirtualHosts};

const USER_KEYS: &[&str] = &[
    "name",
    "password",
    "password_hash",
    "roles",
    "permissions",
    "max_connections",
    "max_queues",
    "certificate_cn",
    "vhosts",
];
const ROLE_KEYS: &[&str] = &["permissions"];
const PERMISSION_KEYS: &[&str] = &["address", "allow", "vhost"];

/// One account. `Debug` hides the password so configs can be logged.
#[derive(Clone, PartialEq, Default)]
pub struct User {
    /// Login name; unique within the configuration and never empty.
    pub name: String,
    /// Password in clear (empty when `password_hash` is set, or when the account logs in only
    /// by certificate), compared by [`find_user`].
    pub password: String,
    /// The password as an Argon2 PHC string (`password_hash` in broker.toml): checked in its
    /// stead when set.
    pub password_hash: Option<String>,
    /// Roles granted to the account, such as `"admin"`; may be empty.
    pub roles: Vec<String>,
    /// The subject CN of the client certificate that logs in as this account with SASL
    /// EXTERNAL (without it, a certificate whose CN is the account's name does).
    pub certificate_cn: Option<String>,
    /// No password at all: the account logs in by certificate only (PLAIN always fails).
    pub certificate_only: bool,
    /// What the account may do: its own `permissions` and its roles'. `None` (neither says
    /// anything) allows everything, as before permissions existed.
    pub permissions: Option<Permissions>,
    /// Connections the account may have open at once (`None`: no cap).
    pub max_connections: Option<u32>,
    /// Queues the account may create by attaching to a name nothing has (`None`: no cap).
    pub max_queues: Option<u32>,
    /// The virtual hosts the account may open a connection to (`None`: all of them); `"/"`
    /// is the default one.
    pub vhosts: Option<Vec<String>>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password", &"<hidden>")
            .field("hashed", &self.password_hash.is_some())
            .field("roles", &self.roles)
            .field("certificate_cn", &self.certificate_cn)
            .field("permissions", &self.permissions)
            .field("max_connections", &self.max_connections)
            .field("max_queues", &self.max_queues)
            .field("vhosts", &self.vhosts)
            .finish()
    }
}

/// Something a user may be allowed to do to an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Attach a producer to it, or send to it through the anonymous relay.
    Send,
    /// Attach a consumer (which takes messages) to it.
    Consume,
    /// Attach a browser (which only looks) to it.
    Browse,
    /// Create or delete it: a queue, exchange or binding, by attach, by node properties or
    /// through the admin API.
    Manage,
}

impl Action {
    /// The name used in broker.toml and in refusals.
    pub fn name(self) -> &'static str {
        match self {
            Action::Send => "send",
            Action::Consume => "consume",
            Action::Browse => "browse",
            Action::Manage => "manage",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    const ALL: [Action; 4] = [
        Action::Send,
        Action::Consume,
        Action::Browse,
        Action::Manage,
    ];
}

/// One `{ address = "PATTERN", allow = [...], vhost = "NAME" }` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    address: Pattern,
    allow: u8,
    /// The virtual host it applies in (`None`: every one).
    vhost: Option<String>,
}

/// A user's permissions: the union of its entries (there are no denials).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Permissions {
    entries: Vec<Permission>,
}

impl Permissions {
    /// Whether some entry whose pattern matches `address` allows `action`. `address` is the
    /// broker's name of the node: a virtual host's node (`vhost:NAME/orders`) is matched by
    /// its name there (`orders`), against the entries for that host and those for every host.
    pub fn allows(&self, action: Action, address: &str) -> bool {
        let (vhost, name) = vhosts::split(address);
        let vhost = vhost.unwrap_or(vhosts::DEFAULT);
        self.entries.iter().any(|p| {
            p.allow & action.bit() != 0
                && p.vhost.as_deref().is_none_or(|v| v == vhost)
                && p.address.matches(name)
        })
    }
}

/// Whether `permissions` (a user's, or `None` for an account without any, or for anonymous
/// access without users) allow `action` on `address`.
pub fn allowed(permissions: Option<&Permissions>, action: Action, address: &str) -> bool {
    permissions.is_none_or(|p| p.allows(action, address))
}

/// Reads `[roles."NAME"]`: each role's permissions, by name.
pub(super) fn read_roles(
    src: &Source,
    node: &Node,
    hosts: &VirtualHosts,
) -> Result<HashMap<String, Permissions>, ConfigError> {
    let Value::Table(roles) = &node.value else {
        let message = format!("expected [roles.NAME] tables, found {}", node.describe());
        return Err(src.invalid(node, "roles", message));
    };
    let mut out = HashMap::new();
    for (name, role) in roles {
        let path = child("roles", name);
        let table = src.table(role, &path, &format!("[roles.\"{name}\"]"), ROLE_KEYS)?;
        let permissions = match get(table, "permissions") {
            Some(p) => read_permissions(src, p, &child(&path, "permissions"), hosts)?,
            None => Permissions::default(),
        };
        out.insert(name.clone(), permissions);
    }
    Ok(out)
}

fn read_permissions(
    src: &Source,
    node: &Node,
    path: &str,
    hosts: &VirtualHosts,
) -> Result<Permissions, ConfigError> {
    let Value::Array(items) = &node.value else {
        let message = format!(
            r#"expected a list like [{{ address = "orders.#", allow = ["send"] }}], found {}"#,
            node.describe()
        );
        return Err(src.invalid(node, path, message));
    };
    let mut entries = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let path = format!("{path}[{index}]");
        let table = src.table(item, &path, &path, PERMISSION_KEYS)?;
        let missing = |key: &str| src.invalid(item, &path, format!("missing key `{key}`"));
        let address_node = get(table, "address").ok_or_else(|| missing("address"))?;
        let address_path = child(&path, "address");
        let address = Pattern::parse(src.string(address_node, &address_path)?)
            .map_err(|why| src.invalid(address_node, &address_path, why))?;
        let allow_node = get(table, "allow").ok_or_else(|| missing("allow"))?;
        let allow_path = child(&path, "allow");
        let mut allow = 0;
        for word in src.strings(allow_node, &allow_path)? {
            let Some(action) = Action::ALL.iter().find(|a| a.name() == word) else {
                let message = format!(
                    r#"unknown permission "{word}"; expected "send", "consume", "browse" or "manage""#
                );
                return Err(src.invalid(allow_node, &allow_path, message));
            };
            allow |= action.bit();
        }
        let vhost = get(table, "vhost")
            .map(|n| vhost_name(src, n, &child(&path, "vhost"), hosts))
            .transpose()?;
        entries.push(Permission {
            address,
            allow,
            vhost,
        });
    }
    Ok(Permissions { entries })
}

/// A virtual host's name where one is expected: `"/"` or one of `[vhosts]`.
fn vhost_name(
    src: &Source,
    node: &Node,
    path: &str,
    hosts: &VirtualHosts,
) -> Result<String, ConfigError> {
    let name = src.string(node, path)?;
    if !hosts.contains(name) {
        let message = format!("no virtual host {name:?}: expected \"/\" or one of [vhosts]");
        return Err(src.invalid(node, path, message));
    }
    Ok(name.to_owned())
}

pub(super) fn read_users(
    src: &Source,
    node: &Node,
    roles: &HashMap<String, Permissions>,
    hosts: &VirtualHosts,
) -> Result<Vec<User>, ConfigError> {
    let Value::Array(entries) = &node.value else {
        return Err(src.invalid(
            node,
            "users",
            format!("expected [[users]] tables, found {}", node.describe()),
        ));
    };
    let mut users: Vec<(User, &Node)> = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let path = format!("users[{index}]");
        let table = src.table(
            entry,
            &path,
            &format!("[[users]] entry {}", index + 1),
            USER_KEYS,
        )?;
        let required = |key: &str| {
            get(table, key).ok_or_else(|| src.invalid(entry, &path, format!("missing key `{key}`")))
        };
        let name_node = required("name")?;
        let name = src.non_empty(name_node, &child(&path, "name"))?;
        let certificate_cn = get(table, "certificate_cn")
            .map(|n| src.non_empty(n, &child(&path, "certificate_cn")))
            .transpose()?;
        let mut certificate_only = false;
        let (password, password_hash) = match (get(table, "password"), get(table, "password_hash"))
        {
            (Some(p), None) => (src.string(p, &child(&path, "password"))?.to_owned(), None),
            (None, Some(h)) => {
                let hash_path = child(&path, "password_hash");
                let hash = src.string(h, &hash_path)?;
                password::check_hash(hash).map_err(|why| src.invalid(h, &hash_path, why))?;
                (String::new(), Some(hash.to_owned()))
            }
            (Some(_), Some(h)) => {
                return Err(src.invalid(
                    h,
                    &child(&path, "password_hash"),
                    "give `password` or `password_hash`, not both".to_owned(),
                ))
            }
            (None, None) if certificate_cn.is_some() => {
                certificate_only = true;
                (String::new(), None)
            }
            (None, None) => {
                return Err(src.invalid(
                    entry,
                    &path,
                    "missing key `password_hash` (or `password`, or `certificate_cn` for an \
                     account that logs in by client certificate only)"
                        .to_owned(),
                ))
            }
        };
        let user_roles = match get(table, "roles") {
            Some(roles) => src.strings(roles, &child(&path, "roles"))?,
            None => Vec::new(),
        };
        let own = get(table, "permissions")
            .map(|p| read_permissions(src, p, &child(&path, "permissions"), hosts))
            .transpose()?;
        let from_roles: Vec<&Permissions> =
            user_roles.iter().filter_map(|r| roles.get(r)).collect();
        // Either source of permissions turns the check on; together they add up.
        let permissions = if own.is_none() && from_roles.is_empty() {
            None
        } else {
            let mut all = own.unwrap_or_default();
            for role in from_roles {
                all.entries.extend(role.entries.iter().cloned());
            }
            Some(all)
        };
        let cap = |key: &str| {
            get(table, key)
                .map(|n| src.count(n, &child(&path, key)))
                .transpose()
        };
        let (max_connections, max_queues) = (cap("max_connections")?, cap("max_queues")?);
        let vhosts = match get(table, "vhosts") {
            Some(n) => {
                let key = child(&path, "vhosts");
                let Value::Array(items) = &n.value else {
                    return Err(src.invalid(
                        n,
                        &key,
                        format!(
                            "expected a list of virtual host names, found {}",
                            n.describe()
                        ),
                    ));
                };
                let names = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| vhost_name(src, item, &format!("{key}[{i}]"), hosts))
                    .collect::<Result<Vec<_>, _>>()?;
                Some(names)
            }
            None => None,
        };
        if let Some((_, first)) = users.iter().find(|(u, _)| u.name == name) {
            let line = src.location(first.start()).line;
            let message = format!("duplicate user \"{name}\" (first defined on line {line})");
            return Err(src.invalid(name_node, &child(&path, "name"), message));
        }
        users.push((
            User {
                name,
                password,
                password_hash,
                roles: user_roles,
                certificate_cn,
                certificate_only,
                permissions,
                max_connections,
                max_queues,
                vhosts,
            },
            name_node,
        ));
    }
    Ok(users.into_iter().map(|(u, _)| u).collect())
}

/// The SCRAM-SHA-256 keys of the account `name`: its `password_hash` in SCRAM form, or keys
/// derived from its clear password with a fresh salt. Why not, for an account without a
/// password SCRAM can use (an Argon2 hash, a certificate-only account) or no account at all.
pub fn scram_keys_for(users: &[User], name: &str) -> Result<password::ScramKeys, String> {
    let Some(user) = users.iter().find(|u| u.name == name) else {
        // As long as a clear password's keys take to derive, so that the time taken does
        // not tell which names exist.
        if users
            .iter()
            .any(|u| u.password_hash.is_none() && !u.certificate_only)
        {
            let _ = password::ScramKeys::derive(
                "",
                b"sluice: no such user",
                password::SCRAM_ITERATIONS,
            );
        }
        // {:?}: the name is the peer's, and Debug escapes what could forge a log line.
        return Err(format!("no user {name:?} (SCRAM)"));
    };
    match &user.password_hash {
        Some(hash) if hash.starts_with("SCRAM-SHA-256$") => password::ScramKeys::parse(hash),
        Some(_) => Err(format!(
            "user {name:?} has an Argon2 password_hash, which SCRAM-SHA-256 cannot check; give it \
             SCRAM keys (sluice hash-password --scram) or log in with PLAIN"
        )),
        None if user.certificate_only => {
            Err(format!("user {name:?} logs in by client certificate only"))
        }
        None => {
            let salt = password::random_bytes(16)?;
            Ok(password::ScramKeys::derive(
                &user.password,
                &salt,
                password::SCRAM_ITERATIONS,
            ))
        }
    }
}

/// Whether SCRAM-SHA-256 is offered: some account exists, and every account with a password
/// can log in with it. Clients such as Qpid JMS pick the strongest mechanism offered, so
/// offering it while an Argon2-hashed account exists would lock that account out.
pub fn scram_offered(users: &[User]) -> bool {
    users.iter().any(|u| !u.certificate_only)
        && users.iter().all(|u| {
            u.certificate_only
                || u.password_hash
                    .as_deref()
                    .is_none_or(|h| h.starts_with("SCRAM-SHA-256$"))
        })
}

/// The account in `users` with this name and password. Every account is compared in full,
/// whatever matched, so the time taken does not tell which part was wrong.
pub fn find_user<'u>(users: &'u [User], user: &str, password: &str) -> Option<&'u User> {
    // Every name is compared in full (the time taken does not tell how much of one matched),
    // then the password of the one that matched; a hashed password costs the same whether the
    // name exists or not.
    let named = users.iter().fold(None, |found, u| {
        if bytes_equal(&u.name, user) {
            Some(u)
        } else {
            found
        }
    });
    let hashed = users.iter().any(|u| u.password_hash.is_some());
    match named {
        Some(u) => match &u.password_hash {
            Some(phc) => password::verify(phc, password),
            None => !u.certificate_only && bytes_equal(&u.password, password),
        }
        .then_some(u),
        None => {
            if hashed {
                password::verify_nobody(password);
            }
            None
        }
    }
}

/// The account a verified client certificate with subject CN `cn` logs in as (SASL
/// EXTERNAL): the one that names it in `certificate_cn`, else the one named `cn` that names no
/// other certificate.
pub fn user_for_certificate<'u>(users: &'u [User], cn: &str) -> Option<&'u User> {
    users
        .iter()
        .find(|u| u.certificate_cn.as_deref() == Some(cn))
        .or_else(|| {
            users
                .iter()
                .find(|u| u.name == cn && u.certificate_cn.is_none())
        })
}

/// Whether checking a login may take long (a hashed password): the caller does it off the
/// async threads.
pub fn has_hashed_passwords(users: &[User]) -> bool {
    users.iter().any(|u| u.password_hash.is_some())
}

/// Compares without stopping at the first difference, so timing does not reveal a
/// matching prefix.
fn bytes_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
