//! Session handlers: begin, end and session flow (§2.5).

use std::collections::BTreeMap;

use crate::broker::routing::Node;
use crate::engine::ids::{Channel, DeliveryId, LinkHandle, Serial};
use crate::int_map;

use fe2o3_amqp_types::definitions::{AmqpError, ConnectionError, Handle, SessionError};
use fe2o3_amqp_types::performatives::{Begin, End, Flow, Performative};

use crate::engine::link::LinkKind;
use crate::engine::session::Session;
use crate::engine::window::{session_flow, Window, INITIAL_OUTGOING_ID, OUTGOING_WINDOW};
use crate::engine::{AmqpFailure, Failure};

use super::Connection;

impl Connection {
    pub(super) fn on_begin(&mut self, channel: Channel, begin: Begin) -> Result<(), Failure> {
        if begin.remote_channel.is_some() {
            return Err(AmqpFailure::new(
                AmqpError::NotAllowed,
                "begin with remote-channel set: the broker never begins sessions itself",
            )
            .into());
        }
        if channel.0 > self.config.channel_max {
            return Err(AmqpFailure::new(
                ConnectionError::FramingError,
                format!(
                    "channel {channel} exceeds channel-max {}",
                    self.config.channel_max
                ),
            )
            .into());
        }
        if self.sessions.contains_key(&channel) {
            return Err(AmqpFailure::new(
                AmqpError::IllegalState,
                format!("begin on channel {channel}, which already has a session"),
            )
            .into());
        }
        // We answer on the same channel number: it is ours to pick, and it is within the
        // peer's channel-max since the peer itself used it.
        let handle_max = self.config.handle_max.min(begin.handle_max.0);
        let session = Session {
            channel,
            handle_max,
            window: Window {
                next_incoming_id: Serial(begin.next_outgoing_id),
                incoming_window: self.config.session_window,
                next_outgoing_id: Serial(INITIAL_OUTGOING_ID),
                remote_incoming_window: begin.incoming_window,
                next_delivery_id: DeliveryId(0),
            },
            links: int_map::new(),
            unsettled: BTreeMap::new(),
            accepted: Vec::new(),
        };
        self.sessions.insert(channel, session);
        let reply = Begin {
            remote_channel: Some(channel.0),
            next_outgoing_id: INITIAL_OUTGOING_ID,
            incoming_window: self.config.session_window,
            outgoing_window: OUTGOING_WINDOW,
            handle_max: handle_max.into(),
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        self.out
            .push_frame(channel.0, &Performative::Begin(reply), &[]);
        // Over the cap: the session is answered (an `end` needs a begun session) and ended at
        // once; the connection and its other sessions carry on.
        let cap = self.config.max_sessions;
        if cap > 0 && self.sessions.len() > cap as usize {
            let why = format!(
                "a connection may have at most {cap} sessions (limits.max_sessions_per_connection)"
            );
            self.end_with_error(
                channel,
                AmqpFailure::new(AmqpError::ResourceLimitExceeded, why),
            );
        }
        Ok(())
    }

    pub(super) fn on_end(&mut self, channel: Channel, end: End) -> Result<(), Failure> {
        self.session_mut(channel)?;
        if let Some(e) = &end.error {
            tracing::info!(peer = %self.peer.addr, %channel, error = ?e, "peer ended a session with an error");
        }
        self.teardown_session(channel);
        self.out
            .push_frame(channel.0, &Performative::End(End { error: None }), &[]);
        Ok(())
    }

    /// Ends the session on `channel` with `error`: its links let go of what they hold and
    /// frames on the channel are discarded until the peer's `end` (§2.5.5).
    pub(super) fn end_with_error(&mut self, channel: Channel, error: AmqpFailure) {
        if !self.sessions.contains_key(&channel) {
            return;
        }
        tracing::warn!(
            peer = %self.peer.addr,
            %channel,
            condition = %crate::engine::condition_name(&error.condition),
            "ending session: {}",
            error.description
        );
        self.teardown_session(channel);
        self.topology_changed = true;
        self.ending.push(channel);
        let end = End {
            error: Some(error.to_error()),
        };
        self.out.push_frame(channel.0, &Performative::End(end), &[]);
    }

    /// Releases everything the session's links hold and forgets the session.
    pub(super) fn teardown_session(&mut self, channel: Channel) {
        let Some(mut session) = self.sessions.remove(&channel) else {
            return;
        };
        for (_, link) in session.links.drain() {
            self.teardown_link(link);
        }
    }

    pub(super) fn on_flow(&mut self, channel: Channel, flow: Flow) -> Result<(), Failure> {
        let session = self.session_mut(channel)?;
        let next_incoming_id = Serial(flow.next_incoming_id.unwrap_or(INITIAL_OUTGOING_ID));
        session.window.remote_incoming_window = next_incoming_id
            .plus(flow.incoming_window)
            .since(session.window.next_outgoing_id);
        let Some(handle) = flow.handle.clone() else {
            if flow.echo {
                let reply = session_flow(&session.window);
                self.out
                    .push_frame(channel.0, &Performative::Flow(reply), &[]);
            }
            // A wider window may unblock consumers waiting on this session.
            self.retry_blocked();
            return Ok(());
        };
        self.on_link_flow(channel, LinkHandle(handle.0), flow)
    }

    /// Counts an incoming transfer frame against the session window.
    pub(super) fn count_incoming_transfer(
        &mut self,
        channel: Channel,
    ) -> Result<&mut Session, Failure> {
        let window = self.config.session_window;
        let session = self.session_mut(channel)?;
        if session.window.incoming_window == 0 {
            return Err(Failure::Session {
                channel,
                error: AmqpFailure::new(
                    SessionError::WindowViolation,
                    format!(
                        "transfer on channel {channel} beyond the session's incoming-window of {window}"
                    ),
                ),
            });
        }
        session.window.incoming_window -= 1;
        session.window.next_incoming_id = session.window.next_incoming_id.next();
        Ok(session)
    }

    /// Sends what was batched while handling input: dispositions for queued messages, credit
    /// for producers, settlements of pre-settled deliveries, and a wider session window.
    pub fn flush(&mut self) {
        let channels: Vec<Channel> = self.sessions.keys().copied().collect();
        // Producers get credit only while memory is below the watermark and the store has
        // room (AMQP-native backpressure); the transport wakes us when that changes.
        let memory = self.router.memory();
        let admit = memory
            .admits_producers()
            .then(|| memory.credit(self.config.link_credit));
        for channel in channels {
            if let Some(mut session) = self.sessions.remove(&channel) {
                self.flush_session(&mut session, admit);
                self.sessions.insert(channel, session);
            }
        }
    }

    /// `admit`: the credit producers may be given now (None: none, the gate is shut).
    fn flush_session(&mut self, session: &mut Session, admit: Option<u32>) {
        self.send_accepts(session);
        let link_credit = self.config.link_credit;
        let channel = session.channel;
        let mut flows = Vec::new();
        for (&handle, link) in session.links.iter_mut() {
            match &mut link.kind {
                LinkKind::Producer(p) if !link.detach_sent && p.credit <= link_credit / 2 => {
                    // A full queue with `overflow = "block"` holds its producers at what
                    // fits, and wakes us when more does.
                    let room = match &p.target {
                        Some(Node::Queue(queue)) if admit.is_some() => queue.room(&self.waker),
                        _ => None,
                    };
                    let admit = match room {
                        Some(room) => admit.map(|c| c.min(room)),
                        None => admit,
                    };
                    if let Some(credit) = admit.filter(|&c| c > p.credit) {
                        p.credit = credit;
                        flows.push((handle, p.delivery_count, credit));
                    }
                }
                LinkKind::Consumer(c) => c.flush_settlements(),
                _ => {}
            }
        }
        for (handle, delivery_count, credit) in flows {
            let mut flow = session_flow(&session.window);
            flow.handle = Some(Handle(handle.0));
            flow.delivery_count = Some(delivery_count.0);
            flow.link_credit = Some(credit);
            self.out
                .push_frame(channel.0, &Performative::Flow(flow), &[]);
        }
        if session.window.incoming_window <= self.config.session_window / 2 {
            session.window.incoming_window = self.config.session_window;
            let flow = session_flow(&session.window);
            self.out
                .push_frame(channel.0, &Performative::Flow(flow), &[]);
        }
    }
}
