//! Local transactions (AMQP 1.0 §4, WIRE.md §6): the coordinator link, `declare` and
//! `discharge`, transfers and dispositions that carry a `transactional-state`, and the
//! rollback of what a connection leaves open. A transaction belongs to the connection (any of
//! its sessions may work in it, and several may be open at once); its work is held in a
//! [`Transaction`] until the discharge.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use fe2o3_amqp_types::definitions::{AmqpError, ReceiverSettleMode};
use fe2o3_amqp_types::messaging::{Accepted, DeliveryState, Outcome as AmqpOutcome, Rejected};
use fe2o3_amqp_types::performatives::{Attach, Performative};
use fe2o3_amqp_types::primitives::{Array, Binary};
use fe2o3_amqp_types::transaction::{
    Coordinator, Declared, Discharge, TransactionError, TransactionalState, TxnCapability,
};
use serde_amqp::descriptor::Descriptor;
use serde_amqp::Value;

use crate::broker::transaction::{Committed, Transaction};
use crate::broker::{ConsumerId, Outcome};
use crate::engine::ids::{Channel, DeliveryId, LinkHandle, Serial};
use crate::engine::link::{Incoming, LinkKind, Producer};
use crate::engine::AmqpFailure;
use crate::message::Message;

use super::links::answer;
use super::outgoing::disposition;
use super::Connection;

/// Timed-out transaction ids remembered, so their discharge says `timeout`, not `unknown-id`.
const TIMED_OUT_KEPT: usize = 64;

/// The connection's open transactions.
#[derive(Debug, Default)]
pub(super) struct Transactions {
    /// Open transactions, each with the coordinator link that declared it.
    open: HashMap<u64, (Transaction, u64)>,
    next: u64,
    timed_out: VecDeque<u64>,
    /// Transactional consumers with messages waiting for the next declare.
    held: Vec<ConsumerId>,
}

/// A transaction id on the wire: the 8 bytes of its number.
fn txn_id(n: u64) -> Binary {
    Binary::from(n.to_be_bytes().to_vec())
}

/// The number of a transaction id we gave out (None: not one of ours).
fn txn_number(id: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(id.try_into().ok()?))
}

fn unknown(id: &[u8]) -> AmqpFailure {
    AmqpFailure::new(
        TransactionError::UnknownId,
        format!("no transaction {id:02x?} is open on this connection"),
    )
}

impl Transactions {
    /// Whether a transaction is open.
    pub(super) fn any_open(&self) -> bool {
        !self.open.is_empty()
    }

    /// Consumer `id` waits for a transaction to be declared, or its outcomes.
    pub(super) fn hold(&mut self, id: ConsumerId) {
        self.held.push(id);
    }

    /// The held consumers, to look at again.
    pub(super) fn retry_held(&mut self, into: &mut Vec<ConsumerId>) {
        into.append(&mut self.held);
    }

    /// The open transaction with wire id `id`, or why there is none.
    pub(super) fn get_mut(&mut self, id: &[u8]) -> Result<&mut Transaction, AmqpFailure> {
        let n = txn_number(id).ok_or_else(|| unknown(id))?;
        self.open
            .get_mut(&n)
            .map(|(t, _)| t)
            .ok_or_else(|| unknown(id))
    }

    /// Rolls back the transactions coordinator link `coordinator` declared (it ended).
    pub(super) fn rollback_declared_by(&mut self, coordinator: u64) {
        let ended: Vec<u64> = self
            .open
            .iter()
            .filter(|(_, (_, c))| *c == coordinator)
            .map(|(&n, _)| n)
            .collect();
        for n in ended {
            if let Some((txn, _)) = self.open.remove(&n) {
                tracing::debug!(transaction = n, "coordinator link ended: rolled back");
                txn.rollback();
            }
        }
    }

    /// Rolls back every open transaction (the connection is ending).
    pub(super) fn rollback_all(&mut self) {
        for (_, (txn, _)) in self.open.drain() {
            txn.rollback();
        }
    }

    /// Rolls back the transactions declared more than `timeout` before `now`; the earliest
    /// declare time left, if any.
    pub(super) fn expire(&mut self, now: Instant, timeout: Duration) -> Option<Instant> {
        let expired: Vec<u64> = self
            .open
            .iter()
            .filter(|(_, (t, _))| now.duration_since(t.declared_at) >= timeout)
            .map(|(&n, _)| n)
            .collect();
        for n in expired {
            if let Some((txn, _)) = self.open.remove(&n) {
                tracing::info!(transaction = n, "transaction timed out and was rolled back");
                txn.rollback();
                if self.timed_out.len() == TIMED_OUT_KEPT {
                    self.timed_out.pop_front();
                }
                self.timed_out.push_back(n);
            }
        }
        self.open.values().map(|(t, _)| t.declared_at).min()
    }
}

/// A control message on the coordinator link.
enum Control {
    Declare,
    Discharge(Discharge),
}

/// Reads a coordinator message: its amqp-value body is a `declare` or a `discharge`.
fn control(message: &Message) -> Result<Control, AmqpFailure> {
    type Decoded = fe2o3_amqp_types::messaging::Message<fe2o3_amqp_types::messaging::Body<Value>>;
    let decoded: Decoded = serde_amqp::from_slice::<
        fe2o3_amqp_types::messaging::message::__private::Deserializable<Decoded>,
    >(message.bytes())
    .map(|d| d.0)
    .map_err(|e| AmqpFailure::new(AmqpError::DecodeError, format!("coordinator message: {e}")))?;
    let fe2o3_amqp_types::messaging::Body::Value(value) = decoded.body else {
        return Err(AmqpFailure::new(
            AmqpError::DecodeError,
            "a coordinator message carries a declare or a discharge as its amqp-value",
        ));
    };
    let Value::Described(described) = &value.0 else {
        return Err(AmqpFailure::new(
            AmqpError::DecodeError,
            "a coordinator message carries a described declare or discharge",
        ));
    };
    let is = |name: &str, code: u64| match &described.descriptor {
        Descriptor::Name(n) => n.as_str() == name,
        Descriptor::Code(c) => *c == code,
    };
    if is("amqp:declare:list", 0x31) {
        // A global-id asks for a distributed transaction, which a local coordinator refuses.
        if let Value::List(fields) = &described.value {
            if fields.first().is_some_and(|v| *v != Value::Null) {
                return Err(AmqpFailure::new(
                    AmqpError::NotImplemented,
                    "distributed transactions (a declare with a global-id) are not supported: only local ones",
                ));
            }
        }
        return Ok(Control::Declare);
    }
    if is("amqp:discharge:list", 0x32) {
        // Read by hand: txn-id (binary, mandatory), fail (boolean, default false).
        let fields = match &described.value {
            Value::List(fields) => fields.as_slice(),
            _ => &[],
        };
        let txn_id = match fields.first() {
            Some(Value::Binary(b)) => b.clone(),
            _ => {
                return Err(AmqpFailure::new(
                    AmqpError::DecodeError,
                    "a discharge needs its txn-id (binary)",
                ))
            }
        };
        let fail = match fields.get(1) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                return Err(AmqpFailure::new(
                    AmqpError::DecodeError,
                    "a discharge's fail field is a boolean",
                ))
            }
        };
        return Ok(Control::Discharge(Discharge { txn_id, fail }));
    }
    Err(AmqpFailure::new(
        AmqpError::NotImplemented,
        "a coordinator message must be a declare or a discharge",
    ))
}

impl Connection {
    /// Attaches a coordinator link: the peer's transaction controller. We offer local
    /// transactions, several per session and sessions sharing one.
    pub(super) fn attach_coordinator(
        &mut self,
        channel: Channel,
        attach: &Attach,
        asked: &Coordinator,
    ) -> Result<(), AmqpFailure> {
        let wanted: Vec<&TxnCapability> =
            asked.capabilities.iter().flat_map(|a| a.0.iter()).collect();
        if wanted.iter().any(|c| {
            matches!(
                c,
                TxnCapability::DistributedTransactions | TxnCapability::PromotableTransactions
            )
        }) && !wanted
            .iter()
            .any(|c| matches!(c, TxnCapability::LocalTransactions))
        {
            return Err(AmqpFailure::new(
                AmqpError::NotImplemented,
                "only local transactions are supported (capability amqp:local-transactions)",
            ));
        }
        let offered = Coordinator {
            capabilities: Some(Array(vec![
                TxnCapability::LocalTransactions,
                TxnCapability::MultiTxnsPerSsn,
                TxnCapability::MultiSsnsPerTxn,
            ])),
        };
        let reply = Attach {
            target: Some(Box::new(offered.into())),
            ..answer(attach)
        };
        self.out
            .push_frame(channel.0, &Performative::Attach(reply), &[]);
        let producer = Producer {
            target: None,
            coordinator: Some(self.router.next_id()),
            delivery_count: Serial(attach.initial_delivery_count.unwrap_or(0)),
            credit: self.config.link_credit,
            incoming: None,
            settle_second: matches!(attach.rcv_settle_mode, ReceiverSettleMode::Second),
            max_message_size: 0,
        };
        self.add_producer(channel, attach, producer, false)
    }

    /// A declare or discharge arrived on a coordinator link: answered with `declared`, with
    /// `accepted` (once a commit's messages are on disk), or `rejected` with why.
    pub(super) fn on_control(
        &mut self,
        channel: Channel,
        incoming: Incoming,
        settle_second: bool,
        coordinator: u64,
    ) {
        let id = incoming.delivery_id;
        let settle = !settle_second;
        let bytes = super::incoming::payload(&incoming);
        let state = match Message::parse(bytes)
            .map_err(|e| AmqpFailure::new(AmqpError::DecodeError, e.to_string()))
            .and_then(|m| control(&m))
        {
            Ok(Control::Declare) => {
                let n = self.transactions.next;
                self.transactions.next += 1;
                self.transactions
                    .open
                    .insert(n, (Transaction::new(self.clock), coordinator));
                DeliveryState::Declared(Declared { txn_id: txn_id(n) })
            }
            Ok(Control::Discharge(d)) => match self.discharge(channel, id, settle, &d) {
                Ok(None) => return, // answered once on disk
                Ok(Some(state)) => state,
                Err(e) => reject(e),
            },
            Err(e) => reject(e),
        };
        if !incoming.settled {
            let reply = disposition(
                fe2o3_amqp_types::definitions::Role::Receiver,
                id,
                id,
                settle,
                state,
            );
            self.out
                .push_frame(channel.0, &Performative::Disposition(reply), &[]);
        }
    }

    /// Commits or rolls back; None when the answer comes once the commit is on disk.
    fn discharge(
        &mut self,
        channel: Channel,
        id: DeliveryId,
        settle: bool,
        d: &Discharge,
    ) -> Result<Option<DeliveryState>, AmqpFailure> {
        let n = txn_number(&d.txn_id).ok_or_else(|| unknown(&d.txn_id))?;
        let Some((txn, _)) = self.transactions.open.remove(&n) else {
            if self.transactions.timed_out.contains(&n) {
                return Err(AmqpFailure::new(
                    TransactionError::Timeout,
                    format!(
                        "the transaction was rolled back: it was not discharged within transaction_timeout ({} ms)",
                        self.config.transaction_timeout_ms
                    ),
                ));
            }
            return Err(unknown(&d.txn_id));
        };
        if d.fail.unwrap_or(false) {
            txn.rollback();
            return Ok(Some(DeliveryState::Accepted(Accepted {})));
        }
        let finish = self.waker.confirmation(channel.0, id.0, settle);
        match txn.commit(finish) {
            Ok(Committed::Done) => Ok(Some(DeliveryState::Accepted(Accepted {}))),
            Ok(Committed::Writing) => Ok(None),
            Err(why) => Err(AmqpFailure::new(
                TransactionError::Rollback,
                format!("the transaction was rolled back: {why}"),
            )),
        }
    }

    /// Consumer outcomes given under a transaction: they apply at commit (the messages stay
    /// with the consumer until then). Returns the deliveries to settle back, if the peer did
    /// not settle them.
    pub(super) fn settle_in_transaction(
        &mut self,
        channel: Channel,
        ids: Vec<(DeliveryId, LinkHandle, u64)>,
        state: &TransactionalState,
        outcome: Outcome,
    ) -> Result<(), AmqpFailure> {
        let now = self.clock;
        let Some(session) = self.sessions.get_mut(&channel) else {
            return Ok(());
        };
        let txn = self.transactions.get_mut(&state.txn_id)?;
        for (_, handle, seq) in ids {
            if let Some(LinkKind::Consumer(c)) = session.links.get_mut(&handle).map(|l| &mut l.kind)
            {
                c.unsettled = c.unsettled.saturating_sub(1);
                c.active_at = now;
                c.transactional = true;
                txn.settle(c.queue.clone(), c.id, seq, outcome.clone());
            }
        }
        Ok(())
    }
}

fn reject(e: AmqpFailure) -> DeliveryState {
    DeliveryState::Rejected(Rejected {
        error: Some(e.to_error()),
    })
}

/// The state that answers a transfer made under transaction `txn`: the outcome, provisional
/// until the discharge.
pub(super) fn transactional(txn: &[u8], outcome: DeliveryState) -> DeliveryState {
    let outcome = match outcome {
        DeliveryState::Accepted(a) => Some(AmqpOutcome::Accepted(a)),
        DeliveryState::Rejected(r) => Some(AmqpOutcome::Rejected(r)),
        DeliveryState::Released(r) => Some(AmqpOutcome::Released(r)),
        DeliveryState::Modified(m) => Some(AmqpOutcome::Modified(m)),
        _ => None,
    };
    DeliveryState::TransactionalState(TransactionalState {
        txn_id: Binary::from(txn.to_vec()),
        outcome,
    })
}
