//! The open connections, as the admin API sees them: who is connected, how much they moved,
//! and a way to ask a connection's task to describe itself or to close.
//!
//! A connection task owns its engine, so nothing else may look inside it. The admin side
//! leaves a request in the connection's entry and wakes the task; the task answers between
//! two turns of its loop. The hot path pays one relaxed load per turn to see that nothing is
//! asked.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use dashmap::DashMap;
use tokio::sync::oneshot;

use crate::broker::consumer::{lock, ConnWaker};
use crate::engine::SessionInfo;

/// Identifies one connection for as long as the broker runs.
pub type ConnectionId = u64;

/// What an admin can ask a connection task.
#[derive(Debug)]
pub enum Request {
    /// Close with `amqp:connection:forced`.
    Close,
    /// Report the sessions and links.
    Describe(oneshot::Sender<Vec<SessionInfo>>),
}

/// One open connection.
#[derive(Debug)]
pub struct ConnectionEntry {
    /// Its id.
    pub id: ConnectionId,
    /// The peer's socket address.
    pub peer: SocketAddr,
    /// The authenticated user; None for anonymous.
    pub user: Option<String>,
    /// When the handshake completed.
    pub connected_at: SystemTime,
    container_id: OnceLock<String>,
    sessions: AtomicUsize,
    links: AtomicUsize,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    asked: AtomicBool,
    requests: Mutex<Vec<Request>>,
    waker: Arc<ConnWaker>,
}

impl ConnectionEntry {
    /// The peer's container-id, once its `open` arrived.
    pub fn container_id(&self) -> Option<&str> {
        self.container_id.get().map(String::as_str)
    }

    /// Records the peer's container-id (the first one counts).
    pub fn set_container_id(&self, id: &str) {
        let _ = self.container_id.set(id.to_owned());
    }

    /// Open sessions and attached links.
    pub fn counts(&self) -> (usize, usize) {
        (self.sessions.load(Relaxed), self.links.load(Relaxed))
    }

    /// Records how many sessions and links the connection has now.
    pub fn set_counts(&self, sessions: usize, links: usize) {
        self.sessions.store(sessions, Relaxed);
        self.links.store(links, Relaxed);
    }

    /// Bytes read from and written to the socket.
    pub fn bytes(&self) -> (u64, u64) {
        (self.bytes_in.load(Relaxed), self.bytes_out.load(Relaxed))
    }

    /// Asks the connection task for something and wakes it.
    pub fn ask(&self, request: Request) {
        lock(&self.requests).push(request);
        self.asked.store(true, Relaxed);
        self.waker.wake();
    }

    /// What was asked since the last call; cheap when nothing was.
    pub fn take_requests(&self) -> Vec<Request> {
        if !self.asked.swap(false, Relaxed) {
            return Vec::new();
        }
        std::mem::take(&mut *lock(&self.requests))
    }
}

/// Every open connection, and broker-wide traffic totals.
#[derive(Debug)]
pub struct Registry {
    connections: DashMap<ConnectionId, Arc<ConnectionEntry>>,
    next_id: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry {
            connections: DashMap::new(),
            next_id: AtomicU64::new(1),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
        }
    }
}

impl Registry {
    /// Adds a connection that has passed its handshake; it stays until [`Registry::remove`].
    pub fn register(
        &self,
        peer: SocketAddr,
        user: Option<String>,
        waker: Arc<ConnWaker>,
    ) -> Arc<ConnectionEntry> {
        let id = self.next_id.fetch_add(1, Relaxed);
        let entry = Arc::new(ConnectionEntry {
            id,
            peer,
            user,
            connected_at: SystemTime::now(),
            container_id: OnceLock::new(),
            sessions: AtomicUsize::new(0),
            links: AtomicUsize::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            asked: AtomicBool::new(false),
            requests: Mutex::new(Vec::new()),
            waker,
        });
        self.connections.insert(id, entry.clone());
        entry
    }

    /// Forgets a connection that ended.
    pub fn remove(&self, id: ConnectionId) {
        self.connections.remove(&id);
    }

    /// Counts bytes read on a connection.
    pub fn received(&self, entry: &ConnectionEntry, n: usize) {
        entry.bytes_in.fetch_add(n as u64, Relaxed);
        self.bytes_in.fetch_add(n as u64, Relaxed);
    }

    /// Counts bytes written on a connection.
    pub fn sent(&self, entry: &ConnectionEntry, n: usize) {
        entry.bytes_out.fetch_add(n as u64, Relaxed);
        self.bytes_out.fetch_add(n as u64, Relaxed);
    }

    /// Bytes read and written on every connection since the broker started.
    pub fn total_bytes(&self) -> (u64, u64) {
        (self.bytes_in.load(Relaxed), self.bytes_out.load(Relaxed))
    }

    /// The connection with this id, if it is open.
    pub fn get(&self, id: ConnectionId) -> Option<Arc<ConnectionEntry>> {
        self.connections.get(&id).map(|e| e.clone())
    }

    /// Every open connection, oldest first.
    pub fn all(&self) -> Vec<Arc<ConnectionEntry>> {
        let mut all: Vec<_> = self.connections.iter().map(|e| e.clone()).collect();
        all.sort_by_key(|e| e.id);
        all
    }

    /// Open connections logged in as `user`.
    pub fn connections_of(&self, user: &str) -> usize {
        self.connections
            .iter()
            .filter(|e| e.user.as_deref() == Some(user))
            .count()
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.connections.len()
    }
}
