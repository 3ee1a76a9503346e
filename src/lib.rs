//! sluice: a standalone AMQP 1.0 message broker.
//!
//! [`Broker::start`] binds the configured listeners and serves connections until
//! [`BrokerHandle::shutdown`]. The layers follow DESIGN.md: `transport` (sockets, SASL, frame
//! codec) feeds `engine` (sans-IO AMQP state machines), which talks to `broker` (queues).

// The public API: the broker, its configuration schema and the wire codec. Everything else
// is the crate's own; benches, fuzz targets, integration tests and the binary's tools reach
// what they need through the hidden `testing` and `tools` modules below.
pub mod codec;
pub mod config;

mod admin;
mod broker;
mod engine;
mod int_map;
mod logging;
mod message;
mod selector;
mod store;
mod transport;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;

pub use broker::{GroupInfo, QueueStats};
pub use config::Config;
pub use logging::fields as log_fields;
pub use message::{Message, MessageError};
pub use transport::fd_limit::raise_to_hard_limit as raise_fd_limit;
/// AMQP over WebSocket as a byte stream, for clients too (the loadgen, tests, programs that
/// run fe2o3-amqp over a WebSocket).
pub use transport::websocket::WsStream;

/// What benches, fuzz targets and integration tests drive directly: a queue without a broker,
/// the engine without a socket, the simulated disk. Not a stable API.
#[doc(hidden)]
pub mod testing {
    pub use crate::broker::routing::exchange::{Exchange, ExchangeKind, ExchangeSpec, Matcher};
    pub use crate::broker::routing::publish::publish_all;
    pub use crate::broker::{ConnWaker, OutItem, Outbox, Outcome, Queue, Router};
    pub use crate::engine::{condition_name, Connection, EngineConfig, PeerInfo};
    pub use crate::selector::{Dialect, Filter, Selector};
    pub use crate::store::segment::MIN_SEGMENT_SIZE;
    #[cfg(feature = "testing")]
    pub use crate::store::{FaultOp, SimFs};
    pub use crate::store::{Fs, RealFs, RecordKind, RecordPos, SegmentWriter};
    pub use crate::transport::connection::feed_input;
    pub use crate::transport::scram;
}

/// The store as the binary's `repair` command reads and mends it. Not a stable API.
#[doc(hidden)]
pub mod tools {
    pub use crate::store::lock::{DataDirLock, LockError};
    pub use crate::store::recovery::check_with;
    pub use crate::store::segment::{
        list_segments, parse_segment_file_name, read_segment, segment_path, ScanEnd,
    };
    pub use crate::store::{
        recover, recover_with, repair, skip_damaged, Fs, OverlayFs, RealFs, RecoveryError,
        RecoverySummary, Skipped,
    };
}

use broker::durable::storage::{Storage, StorageError};
use broker::Router;
use engine::EngineConfig;
use transport::admission::Admission;
use transport::connection::{Port, Shared};
use transport::listener;
use transport::registry::Registry;
use transport::settings::TransportConfig;
use transport::shutdown::{Shutdown, Stopper};
use transport::tls::{TlsContext, TlsFiles};

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The admin listen address could not be bound.
    #[error("cannot listen for the admin API on {addr}: {source} (set [admin] listen, or enabled = false)")]
    AdminBind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The data directory could not be opened or its journal replayed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// An exchange or binding of the configuration could not be made.
    #[error("cannot declare the configured exchanges and bindings: {0}")]
    Definitions(String),
    /// A TLS certificate, key or CA file could not be used.
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] transport::tls::TlsError),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// The broker, as a library: what `main` and the tests start.
pub struct Broker;

impl Broker {
    /// Binds every listen address of `config` and starts serving. Port 0 picks a free port;
    /// [`BrokerHandle::local_addrs`] tells which.
    pub async fn start(config: Config) -> Result<BrokerHandle, StartError> {
        let (storage, router) =
            Storage::open(&config.data_dir, &config.storage, config.queues.clone())?;
        broker::routing::definitions::apply(&router, &config.exchanges, &config.bindings)
            .map_err(|e| StartError::Definitions(e.to_string()))?;
        // Run-time definitions live beside the journal; on a simulated disk (start_on) they
        // are not kept.
        router
            .keep_definitions(&broker::routing::saved::path_in(&config.data_dir))
            .map_err(StartError::Definitions)?;
        Broker::serve(config, storage, router).await
    }

    /// As [`Broker::start`], with the journal on the file system `fs` and no lock on the data
    /// directory: the power-loss tests run the broker on a simulated disk.
    pub async fn start_on(
        config: Config,
        fs: Arc<dyn store::Fs>,
    ) -> Result<BrokerHandle, StartError> {
        let (storage, router) =
            Storage::open_with(fs, &config.data_dir, &config.storage, config.queues.clone())?;
        broker::routing::definitions::apply(&router, &config.exchanges, &config.bindings)
            .map_err(|e| StartError::Definitions(e.to_string()))?;
        Broker::serve(config, storage, router).await
    }

    async fn serve(
        config: Config,
        storage: Storage,
        router: Arc<Router>,
    ) -> Result<BrokerHandle, StartError> {
        for user in config
            .users
            .iter()
            .filter(|u| u.password_hash.is_none() && !u.certificate_only)
        {
            tracing::warn!(
                user = %user.name,
                "the password of this user is in the configuration in clear; store its hash \
                 instead (password_hash = the output of `sluice hash-password`)"
            );
        }
        let listeners = listener::bind_all(&config.listen)
            .await
            .map_err(|(addr, source)| StartError::Bind { addr, source })?;
        let local_addrs: Vec<SocketAddr> = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        let tls = match &config.tls {
            Some(t) => Some(Arc::new(TlsContext::load(TlsFiles::from(t))?)),
            None => None,
        };
        let tls_listeners = match &config.tls {
            Some(t) => listener::bind_all(&t.listen)
                .await
                .map_err(|(addr, source)| StartError::Bind { addr, source })?,
            None => Vec::new(),
        };
        let tls_addrs: Vec<SocketAddr> = tls_listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        let (ws_listeners, wss_listeners) = match &config.websocket {
            Some(w) => (
                listener::bind_all(&w.listen)
                    .await
                    .map_err(|(addr, source)| StartError::Bind { addr, source })?,
                listener::bind_all(&w.tls_listen)
                    .await
                    .map_err(|(addr, source)| StartError::Bind { addr, source })?,
            ),
            None => (Vec::new(), Vec::new()),
        };
        let addrs_of = |ls: &[tokio::net::TcpListener]| -> Vec<SocketAddr> {
            ls.iter().filter_map(|l| l.local_addr().ok()).collect()
        };
        let websocket_addrs = (addrs_of(&ws_listeners), addrs_of(&wss_listeners));
        // Its own context even with [tls]'s files: browsers are never asked for a certificate.
        let admin_tls = match &config.admin.https {
            Some((cert, key)) => Some(Arc::new(TlsContext::load(TlsFiles::server(cert, key))?)),
            None => None,
        };
        let reloadable: Vec<Arc<TlsContext>> =
            tls.iter().chain(admin_tls.iter()).cloned().collect();
        let admin_listener = if config.admin.enabled {
            let addr = config.admin.listen;
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::AdminBind { addr, source })?;
            Some(l)
        } else {
            None
        };
        let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
        set_watermarks(&config, &router);
        let registry = Arc::new(Registry::default());
        let (stopper, shutdown) = Stopper::new();
        let transport = TransportConfig::from(&config);
        tokio::spawn(summarise_logins(
            transport.throttle.clone(),
            shutdown.clone(),
        ));
        if let Some(listener) = admin_listener {
            let state = Arc::new(admin::AdminState {
                router: router.clone(),
                registry: registry.clone(),
                config: config.clone(),
                started: std::time::Instant::now(),
                rates: Arc::default(),
                journal: Some(storage.journal().clone()),
                throttle: transport.throttle.clone(),
                tls: reloadable.clone(),
            });
            if let Some(addr) = admin_addr {
                let scheme = if admin_tls.is_some() { "https" } else { "http" };
                tracing::info!(%addr, scheme, "serving the admin API, metrics and console");
            }
            tokio::spawn(admin::serve(
                listener,
                admin_tls.clone(),
                state,
                shutdown.clone(),
            ));
        }
        let shared = Arc::new(Shared {
            engine: EngineConfig::from(&config),
            admission: Admission::new(&transport),
            config: transport,
            router: router.clone(),
            registry: registry.clone(),
            tls: tls.clone(),
        });
        tokio::spawn(compact(
            storage.journal().clone(),
            router.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(watch_store(router.clone(), shutdown.clone()));
        let (alive_tx, alive_rx) = mpsc::channel(1);
        let ports = [
            (listeners, Port::Plain, "AMQP 1.0 connections"),
            (
                tls_listeners,
                Port::Tls,
                "AMQP 1.0 connections over TLS (amqps)",
            ),
            (
                ws_listeners,
                Port::WebSocket,
                "AMQP 1.0 over WebSocket (ws)",
            ),
            (
                wss_listeners,
                Port::SecureWebSocket,
                "AMQP 1.0 over WebSocket with TLS (wss)",
            ),
        ];
        for (bound, port, what) in ports {
            for l in bound {
                if let Ok(addr) = l.local_addr() {
                    tracing::info!(%addr, "listening for {what}");
                }
                tokio::spawn(listener::accept_loop(
                    l,
                    port,
                    shared.clone(),
                    shutdown.clone(),
                    alive_tx.clone(),
                ));
            }
        }
        Ok(BrokerHandle {
            local_addrs,
            tls_addrs,
            websocket_addrs,
            tls: reloadable,
            admin_addr,
            registry,
            router,
            shutdown: stopper,
            alive_rx,
            alive_tx: Some(alive_tx),
            storage,
        })
    }
}

/// Resolves `[limits]` against the RAM available to the process and arms the memory gate.
fn set_watermarks(config: &Config, router: &Router) {
    let limits = &config.limits;
    let ram = broker::memory::available_ram();
    let (high, low) = match (ram, limits.memory_high_watermark) {
        (Some(ram), _) => limits.watermarks(ram),
        (None, config::Watermark::Bytes(_)) => limits.watermarks(0),
        (None, share) => {
            tracing::warn!(
                "cannot read the RAM size (/proc/meminfo): the memory watermark {share} is off; set [limits] memory_high_watermark to a size"
            );
            (u64::MAX, u64::MAX)
        }
    };
    router.memory().set_watermarks(high, low);
    tracing::info!(
        high_watermark = high,
        low_watermark = low,
        ram = ram.unwrap_or(0),
        "memory watermark set: above it producers get no credit"
    );
}

/// Mirrors the store's `full` state into the producer gate, so producers blocked by a full
/// store get credit again once it has room (the store has no way to call us).
async fn watch_store(router: Arc<Router>, mut shutdown: Shutdown) {
    let Some(store) = router.store().cloned() else {
        return;
    };
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.stopping() => return,
        }
        router.memory().set_store_full(store.full());
    }
}

/// Writes the failed-login summary (at most one line a minute; a lone failure after a quiet
/// spell shows within seconds).
async fn summarise_logins(
    throttle: Arc<transport::login_throttle::LoginThrottle>,
    mut shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.stopping() => return,
        }
        if let Some(line) = throttle.summary.take(std::time::Instant::now()) {
            tracing::warn!("{line}");
        }
    }
}

/// Compaction (DESIGN.md §5): once a second, if an old journal segment is mostly dead, the
/// queues write its few live records again, and the journal deletes it after the next batch.
async fn compact(journal: Arc<store::Journal>, router: Arc<Router>, mut shutdown: Shutdown) {
    use store::Store;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.stopping() => return,
        }
        let Some(segment) = journal.compaction_candidate() else {
            continue;
        };
        let router = router.clone();
        let moved = tokio::task::spawn_blocking(move || {
            router
                .queues()
                .iter()
                .map(|q| q.relocate(segment))
                .sum::<usize>()
        })
        .await
        .unwrap_or(0);
        tracing::info!(%segment, messages = moved, "journal segment compacted");
    }
}

/// A running broker.
pub struct BrokerHandle {
    local_addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    /// `[websocket]`'s `ws` and `wss` listeners.
    websocket_addrs: (Vec<SocketAddr>, Vec<SocketAddr>),
    tls: Vec<Arc<TlsContext>>,
    admin_addr: Option<SocketAddr>,
    registry: Arc<Registry>,
    router: Arc<Router>,
    shutdown: Stopper,
    alive_rx: mpsc::Receiver<()>,
    alive_tx: Option<mpsc::Sender<()>>,
    storage: Storage,
}

impl BrokerHandle {
    /// The addresses actually bound (with real port numbers when port 0 was asked for).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The TLS listeners' addresses (`[tls] listen`), with real port numbers.
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls_addrs
    }

    /// The `ws://` listeners' addresses (`[websocket] listen`), with real port numbers.
    pub fn websocket_addrs(&self) -> &[SocketAddr] {
        &self.websocket_addrs.0
    }

    /// The `wss://` listeners' addresses (`[websocket] tls_listen`), with real port numbers.
    pub fn secure_websocket_addrs(&self) -> &[SocketAddr] {
        &self.websocket_addrs.1
    }

    /// Reads the TLS certificates and keys again (what SIGHUP does): new connections use them,
    /// open ones keep theirs. On an error the old ones stay in use. Returns how many TLS
    /// configurations were reloaded (0 without TLS).
    pub fn reload_tls(&self) -> Result<usize, transport::tls::TlsError> {
        for tls in &self.tls {
            tls.reload()?;
        }
        Ok(self.tls.len())
    }

    /// The address the admin API listens on, if it is enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Open AMQP connections.
    pub fn connection_count(&self) -> usize {
        self.registry.len()
    }

    /// Counters of the queue named `name`, if it exists.
    pub fn queue_stats(&self, name: &str) -> Option<QueueStats> {
        self.router.get(name).map(|q| q.stats())
    }

    /// The message groups of the queue named `name` with their owners, if the queue exists.
    pub fn queue_groups(&self, name: &str) -> Option<Vec<GroupInfo>> {
        self.router.get(name).map(|q| q.groups())
    }

    /// Frees every message group of the queue named `name` (Artemis `resetAllGroups`); the
    /// next consumers to ask take them. Returns how many groups had an owner, or None if
    /// there is no such queue.
    pub fn reset_groups(&self, name: &str) -> Option<usize> {
        self.router.get(name).map(|q| q.reset_groups())
    }

    /// The journal of durable queues.
    pub fn journal(&self) -> &Arc<store::Journal> {
        self.storage.journal()
    }

    /// The memory account: bytes used, the watermarks, and whether producers are held back.
    pub fn memory(&self) -> broker::memory::MemoryStatus {
        self.router.memory().status()
    }

    /// Names of all queues.
    pub fn queue_names(&self) -> Vec<String> {
        self.router.queue_names()
    }

    /// Stops accepting, closes every connection with `amqp:connection:forced`, and returns once
    /// every connection task has finished.
    pub async fn shutdown(mut self) {
        self.shutdown.stop();
        self.alive_tx = None;
        // Every accept loop and connection task holds a sender; recv yields None when all are gone.
        let _ = self.alive_rx.recv().await;
        // Everything the connections did is in the journal's buffer: write and sync it.
        let journal = self.storage.journal().clone();
        let _ = tokio::task::spawn_blocking(move || journal.close()).await;
        tracing::info!("broker stopped");
    }
}
