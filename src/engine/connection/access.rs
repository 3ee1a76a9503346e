//! Who may do what (issue 16): the connection's user's permissions, checked where a link
//! attaches and where the anonymous relay routes a message, and how many queues the user may
//! create. A denial is `amqp:unauthorized-access` naming the permission (or
//! `amqp:resource-limit-exceeded` naming the cap), on that link or message alone.

use fe2o3_amqp_types::definitions::AmqpError;

use crate::config::Action;
use crate::engine::AmqpFailure;
use crate::logging::PeerText;

use super::Connection;

impl Connection {
    /// Whether the user may do `action` to the node called `name`.
    pub(super) fn authorize(&self, action: Action, name: &str) -> Result<(), AmqpFailure> {
        match &self.peer.permissions {
            Some(permissions) if !permissions.allows(action, name) => Err(denied(
                self.peer.user.as_deref(),
                action,
                self.client_name(name),
            )),
            _ => Ok(()),
        }
    }

    /// `action` on `name`, and `manage` too when nothing is called `name` yet, so that the
    /// attach (or message) would create it; then the user's `max_queues`. Returns whether the
    /// node is to be created (the caller then records who created it).
    pub(super) fn authorize_node(&self, action: Action, name: &str) -> Result<bool, AmqpFailure> {
        self.authorize(action, name)?;
        let creates =
            self.router.get(name).is_none() && self.router.exchanges().get(name).is_none();
        if !creates {
            return Ok(false);
        }
        if self.peer.permissions.is_some() {
            self.authorize(Action::Manage, name)?;
        }
        if let (Some(cap), Some(user)) = (self.peer.max_queues, self.peer.user.as_deref()) {
            if self.router.created_by(user) >= cap as usize {
                return Err(AmqpFailure::new(
                    AmqpError::ResourceLimitExceeded,
                    format!(
                        "user '{}' may create at most {cap} queues (max_queues), and has; \
                         '{}' was not created",
                        PeerText(user),
                        PeerText(self.client_name(name))
                    ),
                ));
            }
        }
        Ok(true)
    }

    /// Records that this connection's user created the queue `name`, for its `max_queues`.
    pub(super) fn created(&self, name: &str) {
        if let (Some(_), Some(user)) = (self.peer.max_queues, self.peer.user.as_deref()) {
            if self.router.get(name).is_some() {
                self.router.note_creator(name, user);
            }
        }
    }
}

fn denied(user: Option<&str>, action: Action, name: &str) -> AmqpFailure {
    let who = user.map_or("this connection".to_owned(), |u| {
        format!("user '{}'", PeerText(u))
    });
    let what = match action {
        Action::Manage => format!("create or delete '{}'", PeerText(name)),
        other => format!("{} '{}'", verb(other), PeerText(name)),
    };
    AmqpFailure::new(
        AmqpError::UnauthorizedAccess,
        format!(
            "{who} may not {what}: no \"{}\" permission for that address",
            action.name()
        ),
    )
}

fn verb(action: Action) -> &'static str {
    match action {
        Action::Send => "send to",
        Action::Consume => "consume from",
        Action::Browse => "browse",
        Action::Manage => "manage",
    }
}
