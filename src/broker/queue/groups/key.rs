//! Which group a message belongs to, and whether consuming it closes the group.

use std::borrow::Cow;

use crate::config::GroupKey;
use crate::message::{Message, PropertyValue};

/// The message's group id under `key`; integer ids (some clients send numbers) are used by
/// their decimal form.
pub(in crate::broker) fn group_id<'m>(
    key: &GroupKey,
    message: &'m Message,
) -> Option<Cow<'m, str>> {
    match key {
        GroupKey::GroupId => message.group_id().map(Cow::Borrowed),
        GroupKey::Property(name) => match message.application_property(name)? {
            PropertyValue::Str(s) => Some(Cow::Borrowed(s)),
            PropertyValue::Int(n) => Some(Cow::Owned(n.to_string())),
            _ => None,
        },
    }
}

/// Whether consuming `message` closes its group: a negative group sequence, as
/// `properties.group-sequence` read as a signed 32-bit number (Qpid JMS sends -1 as
/// 0xFFFFFFFF) or as the `JMSXGroupSeq` application property.
pub fn closes_group(message: &Message) -> bool {
    if message.group_sequence().is_some_and(|s| (s as i32) < 0) {
        return true;
    }
    matches!(
        message.application_property("JMSXGroupSeq"),
        Some(PropertyValue::Int(n)) if n < 0
    )
}

/// FNV-1a: a fixed hash, so an id lands in the same bucket in every run and on every machine.
pub(in crate::broker) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
