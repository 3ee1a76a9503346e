//! Virtual hosts (issue 16): the `open` hostname picks one, and every node name a client
//! gives (attach addresses, the anonymous relay's `to`, subscription names) is read in it;
//! names the broker reports back (a dynamic node's) are given as the client knows them.

use fe2o3_amqp_types::definitions::AmqpError;

use crate::config::vhosts;
use crate::engine::AmqpFailure;
use crate::logging::PeerText;

use super::Connection;

impl Connection {
    /// The virtual host `hostname` selects, if the user may open it; else why not, for the
    /// `close` (the connection is refused: it asked for a namespace it cannot have).
    pub(super) fn select_vhost(
        &self,
        hostname: Option<&str>,
    ) -> Result<Option<String>, AmqpFailure> {
        let vhost = self
            .config
            .vhosts
            .select(hostname)
            .map_err(|why| AmqpFailure::new(AmqpError::NotFound, why))?;
        let name = vhost.unwrap_or(vhosts::DEFAULT);
        if let Some(allowed) = &self.peer.vhosts {
            if !allowed.iter().any(|v| v == name) {
                let who = self
                    .peer
                    .user
                    .as_deref()
                    .map_or("this connection".to_owned(), |u| {
                        format!("user '{}'", PeerText(u))
                    });
                return Err(AmqpFailure::new(
                    AmqpError::UnauthorizedAccess,
                    format!(
                        "{who} may not use virtual host '{}' (not in its vhosts)",
                        PeerText(name)
                    ),
                ));
            }
        }
        Ok(vhost.map(str::to_owned))
    }

    /// The broker's name of the node this client calls `name`.
    pub(super) fn node_name(&self, name: &str) -> Result<String, AmqpFailure> {
        if vhosts::reserved(name) {
            return Err(AmqpFailure::new(
                AmqpError::InvalidField,
                format!(
                    "'{}': names beginning with '{}' are reserved for virtual hosts; open the \
                     connection with hostname 'vhost:NAME' to use one",
                    PeerText(name),
                    vhosts::PREFIX
                ),
            ));
        }
        Ok(vhosts::qualify(self.vhost.as_deref(), name))
    }

    /// The name this client knows the broker's node `node` by.
    pub(super) fn client_name<'n>(&self, node: &'n str) -> &'n str {
        match vhosts::split(node) {
            (Some(_), name) if self.vhost.is_some() => name,
            _ => node,
        }
    }

    /// The connection's virtual host (`None`: the default one).
    pub(super) fn vhost(&self) -> Option<&str> {
        self.vhost.as_deref()
    }
}
