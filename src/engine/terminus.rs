//! Reading what a peer asks for in a source or target beyond its address: the properties of a
//! dynamic node it wants created. Pure functions of the terminus, so they are tested without a
//! connection.

use fe2o3_amqp_types::definitions::Fields;
use serde_amqp::descriptor::Descriptor;
use serde_amqp::Value;

use crate::broker::Lifetime;

/// The `lifetime-policy` of `dynamic-node-properties` (AMQP 1.0 §3.5.10), by symbolic or
/// numeric descriptor; `delete-on-close` when absent or not one of the four.
pub(super) fn lifetime_policy(properties: Option<&Fields>) -> Lifetime {
    let Some(Value::Described(policy)) = properties.and_then(|p| p.get("lifetime-policy")) else {
        return Lifetime::Close;
    };
    match &policy.descriptor {
        Descriptor::Code(0x2c) => Lifetime::NoLinks,
        Descriptor::Code(0x2d) => Lifetime::NoMessages,
        Descriptor::Code(0x2e) => Lifetime::NoLinksOrMessages,
        Descriptor::Name(name) => match name.as_str() {
            "amqp:delete-on-no-links:list" => Lifetime::NoLinks,
            "amqp:delete-on-no-messages:list" => Lifetime::NoMessages,
            "amqp:delete-on-no-links-or-messages:list" => Lifetime::NoLinksOrMessages,
            _ => Lifetime::Close,
        },
        _ => Lifetime::Close,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp_types::messaging::{
        DeleteOnClose, DeleteOnNoLinks, DeleteOnNoLinksOrMessages, LifetimePolicy,
    };
    use fe2o3_amqp_types::primitives::Symbol;
    use serde_amqp::described::Described;

    fn props(policy: impl Into<LifetimePolicy>) -> Fields {
        let mut f = Fields::new();
        f.insert(Symbol::from("lifetime-policy"), Value::from(policy.into()));
        f
    }

    #[test]
    fn every_policy_is_read_by_code_and_by_name() {
        assert_eq!(lifetime_policy(None), Lifetime::Close);
        assert_eq!(
            lifetime_policy(Some(&props(DeleteOnClose {}))),
            Lifetime::Close
        );
        assert_eq!(
            lifetime_policy(Some(&props(DeleteOnNoLinks {}))),
            Lifetime::NoLinks
        );
        assert_eq!(
            lifetime_policy(Some(&props(DeleteOnNoLinksOrMessages {}))),
            Lifetime::NoLinksOrMessages
        );
        let mut by_name = Fields::new();
        by_name.insert(
            Symbol::from("lifetime-policy"),
            Value::Described(Box::new(Described {
                descriptor: Descriptor::Name(Symbol::from("amqp:delete-on-no-messages:list")),
                value: Value::List(vec![]),
            })),
        );
        assert_eq!(lifetime_policy(Some(&by_name)), Lifetime::NoMessages);
    }
}
