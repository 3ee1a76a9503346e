//! The task that serves one connection: socket bytes in, engine, socket bytes out.
//!
//! It is deliberately thin: it reads into one buffer, lets the codec cut frames out of it, feeds
//! them to the engine, and writes whatever the engine produced with vectored writes. Reading
//! stops while a large backlog of output waits, so a peer that does not read cannot make the
//! broker buffer without bound.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::shutdown::Shutdown;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::broker::memory::Charge;
use crate::broker::{ConnWaker, Router};
use crate::engine::{Connection, EngineConfig, PeerInfo};
use crate::logging::PeerText;

use super::admission::{Admission, HandshakeTicket};
use super::handshake::{self, HandshakeError, Identity, TLS_HEADER};
use super::prefixed::Prefixed;
use super::refuse;
use super::registry::{Registry, Request};
use super::settings::TransportConfig;
use super::tls::{Channel, TlsContext};
use super::websocket;
use crate::codec::frame::{decode_amqp, decode_raw, Output};

/// Stop reading while this much output waits for the socket.
const MAX_PENDING_OUTPUT: usize = 4 * 1024 * 1024;
/// How long we wait for the peer's `close` after sending ours.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Slices per vectored write.
const IOV_MAX: usize = 64;

/// What every connection task shares.
#[derive(Debug)]
pub struct Shared {
    /// The transport's part of the configuration.
    pub config: TransportConfig,
    /// The engine's view of it.
    pub engine: EngineConfig,
    /// The queues.
    pub router: Arc<Router>,
    /// The open connections, for the admin API.
    pub registry: Arc<Registry>,
    /// The caps on sockets in the handshake and on connections.
    pub admission: Admission,
    /// TLS, when `[tls]` is configured: the TLS listeners and the upgrade on the plain ones.
    pub tls: Option<Arc<TlsContext>>,
}

/// Which kind of listener accepted a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// Plain AMQP, where a client may still ask for TLS with the AMQP TLS header.
    Plain,
    /// TLS from the first byte (`amqps`).
    Tls,
    /// AMQP over WebSocket (`ws`).
    WebSocket,
    /// AMQP over WebSocket inside TLS (`wss`).
    SecureWebSocket,
}

/// Serves one accepted socket until the connection ends or the broker shuts down: first
/// whatever TLS the port and the client call for, then the AMQP connection on top of it.
/// `ticket` is its place among the sockets in the handshake, given back once the peer's `open`
/// arrives.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: Shutdown,
    ticket: HandshakeTicket,
    port: Port,
) {
    // Header, TLS, SASL and open must all arrive by then.
    let deadline = Instant::now() + shared.config.handshake_timeout;
    let _ = stream.set_nodelay(true);
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    if matches!(port, Port::WebSocket | Port::SecureWebSocket) {
        return serve_websocket(stream, peer, rbuf, shared, shutdown, ticket, port, deadline).await;
    }
    let Some(tls) = shared.tls.clone() else {
        let (rd, wr) = stream.into_split();
        let channel = Channel::plain();
        return serve_amqp(
            rd, wr, rbuf, peer, shared, shutdown, ticket, deadline, channel,
        )
        .await;
    };
    let secured = tokio::select! {
        secured = tokio::time::timeout_at(deadline, secure(stream, &mut rbuf, &tls, port == Port::Tls)) => secured,
        _ = shutdown.stopping() => return,
    };
    match secured {
        Ok(Ok(Secured::Plain(stream))) => {
            let (rd, wr) = stream.into_split();
            let channel = Channel::plain();
            serve_amqp(
                rd, wr, rbuf, peer, shared, shutdown, ticket, deadline, channel,
            )
            .await
        }
        Ok(Ok(Secured::Tls(stream))) => {
            let channel = Channel::of(&stream);
            let (rd, wr) = tokio::io::split(stream);
            serve_amqp(
                rd, wr, rbuf, peer, shared, shutdown, ticket, deadline, channel,
            )
            .await
        }
        // A port probe, or a client that gave up: nothing a person needs to act on.
        Ok(Err(why)) if why.kind() == std::io::ErrorKind::UnexpectedEof => {
            tracing::debug!(%peer, "connection closed before the TLS handshake: {why}");
        }
        Ok(Err(why)) => {
            if let Some(suppressed) = shared.admission.handshake_failures.allow(now()) {
                tracing::warn!(%peer, suppressed, "TLS handshake failed: {why}");
            }
        }
        Err(_) => {
            if port == Port::Tls {
                tls.failed();
            }
            if let Some(suppressed) = shared.admission.handshake_failures.allow(now()) {
                tracing::warn!(%peer, suppressed, "no TLS handshake within {:?} (broker.handshake_timeout_ms)", shared.config.handshake_timeout);
            }
        }
    }
}

/// Serves AMQP over WebSocket: the TLS handshake first for `wss`, then the HTTP upgrade, then
/// the AMQP connection over the WebSocket's binary messages.
#[allow(clippy::too_many_arguments)] // serve's own arguments, passed on
async fn serve_websocket(
    stream: TcpStream,
    peer: SocketAddr,
    rbuf: BytesMut,
    shared: Arc<Shared>,
    mut shutdown: Shutdown,
    ticket: HandshakeTicket,
    port: Port,
    deadline: Instant,
) {
    let plain = Channel {
        buffered: true,
        ..Channel::plain()
    };
    // Config validation gives wss listeners a [tls].
    let tls = match (port, shared.tls.clone()) {
        (Port::SecureWebSocket, Some(tls)) => tls,
        (Port::SecureWebSocket, None) => return,
        _ => {
            return upgrade_websocket(
                stream, plain, peer, rbuf, shared, shutdown, ticket, deadline,
            )
            .await
        }
    };
    let accepted = tokio::select! {
        accepted = tokio::time::timeout_at(deadline, tls.accept(Prefixed::new(BytesMut::new(), stream))) => accepted,
        _ = shutdown.stopping() => return,
    };
    let why = match accepted {
        Ok(Ok(stream)) => {
            let channel = Channel::of(&stream);
            return upgrade_websocket(
                stream, channel, peer, rbuf, shared, shutdown, ticket, deadline,
            )
            .await;
        }
        Ok(Err(why)) => format!("TLS handshake failed: {why}"),
        Err(_) => format!(
            "no TLS handshake within {:?} (broker.handshake_timeout_ms)",
            shared.config.handshake_timeout
        ),
    };
    if let Some(suppressed) = shared.admission.handshake_failures.allow(now()) {
        tracing::warn!(%peer, suppressed, "WebSocket connection refused: {why}");
    }
}

/// The WebSocket upgrade on `stream` (a socket, or a TLS stream), then AMQP inside it.
#[allow(clippy::too_many_arguments)] // serve's own arguments, passed on
async fn upgrade_websocket<S>(
    stream: S,
    channel: Channel,
    peer: SocketAddr,
    rbuf: BytesMut,
    shared: Arc<Shared>,
    mut shutdown: Shutdown,
    ticket: HandshakeTicket,
    deadline: Instant,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(config) = shared.config.websocket.clone() else {
        return;
    };
    let upgrade = websocket::upgrade(stream, &config, shared.config.max_frame_size);
    let upgraded = tokio::select! {
        upgraded = tokio::time::timeout_at(deadline, upgrade) => upgraded,
        _ = shutdown.stopping() => return,
    };
    let why = match upgraded {
        Ok(Ok(ws)) => {
            let (rd, wr) = tokio::io::split(ws);
            return serve_amqp(
                rd, wr, rbuf, peer, shared, shutdown, ticket, deadline, channel,
            )
            .await;
        }
        Ok(Err(why)) => format!("WebSocket upgrade failed: {why}"),
        Err(_) => format!(
            "no WebSocket upgrade within {:?} (broker.handshake_timeout_ms)",
            shared.config.handshake_timeout
        ),
    };
    if let Some(suppressed) = shared.admission.handshake_failures.allow(now()) {
        tracing::warn!(%peer, suppressed, "WebSocket connection refused: {why}");
    }
}

/// A socket ready for AMQP: as accepted, or inside TLS.
enum Secured {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<Prefixed<TcpStream>>>),
}

/// On the TLS port, the TLS handshake (a client speaking plain AMQP there is told, with the
/// TLS protocol header, what the port speaks, and closed); on the plain port, the TLS upgrade
/// when the client's protocol header asks for it (AMQP 1.0 part 5 §5.2), else nothing.
/// `rbuf` keeps what was read for the AMQP layer.
async fn secure(
    mut stream: TcpStream,
    rbuf: &mut BytesMut,
    tls: &TlsContext,
    tls_port: bool,
) -> std::io::Result<Secured> {
    let wanted = if tls_port { 1 } else { 8 };
    while rbuf.len() < wanted {
        if stream.read_buf(rbuf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    match tls_port {
        false if rbuf[..8] != TLS_HEADER => return Ok(Secured::Plain(stream)),
        false => {
            rbuf.advance(8);
            stream.write_all(&TLS_HEADER).await?;
        }
        // A TLS record starts with its content type (22, handshake); `A` is the start of an
        // AMQP protocol header.
        true if rbuf[0] == b'A' => {
            tls.failed();
            let _ = stream.write_all(&TLS_HEADER).await;
            let _ = stream.shutdown().await;
            return Err(std::io::Error::other(
                "the client spoke plain AMQP on the TLS port; it was told to use TLS and closed",
            ));
        }
        true => {}
    }
    let prefixed = Prefixed::new(rbuf.split(), stream);
    Ok(Secured::Tls(Box::new(tls.accept(prefixed).await?)))
}

/// Serves the AMQP connection on `rd`/`wr` (a TCP socket's halves, or a TLS stream's).
#[allow(clippy::too_many_arguments)] // one call site per transport, each passing its own halves
async fn serve_amqp<R, W>(
    mut rd: R,
    mut wr: W,
    mut rbuf: BytesMut,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: Shutdown,
    ticket: HandshakeTicket,
    handshake_deadline: Instant,
    channel: Channel,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // A peer still in the handshake has no AMQP connection to close with
    // amqp:connection:forced; at shutdown it is simply dropped, so it cannot hold the broker up.
    let negotiated = tokio::select! {
        negotiated = handshake::negotiate(
            &mut rd, &mut wr, &mut rbuf, &shared.config, peer, handshake_deadline, &channel,
        ) => {
            Some(negotiated)
        }
        _ = shutdown.stopping() => None,
    };
    let identity = match negotiated {
        Some(Ok(identity)) => identity,
        Some(Err(HandshakeError::Io(e))) => {
            // A port probe or a client that gave up: nothing a person needs to act on.
            tracing::debug!(%peer, "connection closed during handshake: {e}");
            let _ = wr.shutdown().await;
            return;
        }
        Some(Err(HandshakeError::AuthFailed(why))) => {
            // Counted for the summary line (login_summary): a guessing run must not flood the log.
            tracing::debug!(%peer, "login failed: {why}");
            let _ = wr.shutdown().await;
            return;
        }
        Some(Err(e)) => {
            if let Some(suppressed) = shared.admission.handshake_failures.allow(now()) {
                tracing::warn!(%peer, suppressed, "connection refused during handshake: {e}");
            }
            let _ = wr.shutdown().await;
            return;
        }
        None => {
            // Up to max_handshakes of these at once: a line for each would flood the log.
            if let Some(suppressed) = shared.admission.handshake_failures.allow(now()) {
                tracing::info!(%peer, suppressed, "connection dropped during handshake: the broker is shutting down");
            }
            let _ = wr.shutdown().await;
            return;
        }
    };
    // Only now does the socket take one of the max_connections places.
    let _place = match shared.admission.connection() {
        Ok(place) => place,
        Err(cap) => {
            if let Some(suppressed) = shared.admission.refusals.allow(now()) {
                tracing::warn!(%peer, cap, suppressed, "connection refused: broker.max_connections reached");
            }
            let reason = format!("the broker serves at most {cap} connections (broker.max_connections); try again later");
            refuse::refuse(&mut rd, &mut wr, &shared.config.container_id, reason).await;
            return;
        }
    };
    let mut ticket = Some(ticket);
    // An anonymous peer acts as `auth.anonymous_user` when one is configured: its permissions
    // and caps apply.
    let user = match identity {
        Identity::Anonymous => shared.config.anonymous_user.clone(),
        Identity::User(u) => Some(u),
    };
    let account = user
        .as_deref()
        .and_then(|name| shared.config.users.iter().find(|u| u.name == name));
    let waker = ConnWaker::new();
    let entry = shared.registry.register(peer, user.clone(), waker.clone());
    waker.set_connection(entry.id);
    // Counted after registering, so two logins at once cannot both take the last place.
    if let (Some(account), Some(cap)) = (account, account.and_then(|a| a.max_connections)) {
        if shared.registry.connections_of(&account.name) > cap as usize {
            shared.registry.remove(entry.id);
            if let Some(suppressed) = shared.admission.refusals.allow(now()) {
                tracing::warn!(%peer, user = %PeerText(&account.name), cap, suppressed, "connection refused: the user's max_connections reached");
            }
            let reason = format!(
                "user '{}' may have at most {cap} connections open (max_connections)",
                PeerText(&account.name)
            );
            refuse::refuse(&mut rd, &mut wr, &shared.config.container_id, reason).await;
            return;
        }
    }
    let mut engine = Connection::new(
        shared.engine.clone(),
        shared.router.clone(),
        waker.clone(),
        PeerInfo {
            addr: peer,
            permissions: account.and_then(|u| u.permissions.clone()).map(Arc::new),
            max_queues: account.and_then(|u| u.max_queues),
            vhosts: account.and_then(|u| u.vhosts.clone()),
            user,
        },
        Instant::now().into_std(),
    );
    // The producer gate: when it opens, the engine hands out the credit it withheld.
    let mut gate = shared.router.memory().subscribe();
    let mut gate_alive = true;
    let mut output_charge = Charge::new(shared.router.memory());
    let mut close_deadline: Option<Instant> = None;
    let mut shutting_down = shutdown.is_stopping();
    // Whether the writer may hold bytes back (TLS does), and holds some now.
    let buffering = channel.buffered;
    let mut unflushed = false;
    loop {
        if shutting_down {
            engine.shutdown();
        }
        for request in entry.take_requests() {
            match request {
                Request::Close => engine.close_by_admin(),
                Request::Describe(reply) => {
                    let _ = reply.send(engine.describe());
                }
            }
        }
        feed_input(&mut engine, &mut rbuf, Instant::now().into_std());
        if ticket.is_some() && (engine.container_id().is_some() || engine.is_closing()) {
            // Opened (or already failed): no longer in the handshake.
            ticket = None;
        }
        if engine.take_topology_changed() {
            let (sessions, links) = engine.counts();
            entry.set_counts(sessions, links);
            if entry.container_id().is_none() {
                if let Some(id) = engine.container_id() {
                    entry.set_container_id(id);
                    // Every later line of this connection names its peer's container.
                    tracing::Span::current()
                        .record("container_id", tracing::field::display(PeerText(id)));
                }
            }
        }
        engine.pump();
        engine.flush();
        let now = Instant::now();
        let next_tick = engine.tick(now.into_std()).map(Instant::from_std);
        if engine.is_closing() && close_deadline.is_none() {
            close_deadline = Some(now + CLOSE_GRACE);
        }
        if engine.is_closed() {
            break;
        }
        let open_deadline = ticket.is_some().then_some(handshake_deadline);
        let deadline = [next_tick, close_deadline, open_deadline]
            .into_iter()
            .flatten()
            .min();
        engine.output().prepare();
        let pending = engine.output().len();
        output_charge.set(pending as u64);
        tokio::select! {
            read = rd.read_buf(&mut rbuf), if pending < MAX_PENDING_OUTPUT => match read {
                Ok(0) | Err(_) => {
                    engine.abandon();
                    break;
                }
                Ok(n) => shared.registry.received(&entry, n),
            },
            // TLS keeps records a write could not send when the socket was full; they leave
            // only with a later write or a flush, and there may be no later write.
            written = write_or_flush(&mut wr, engine.output()), if pending > 0 || unflushed => {
                match written {
                    Ok(Some(n)) => {
                        shared.registry.sent(&entry, n);
                        engine.output().advance(n);
                        engine.note_sent(Instant::now().into_std());
                        unflushed = buffering;
                    }
                    Ok(None) => unflushed = false,
                    Err(_) => {
                        engine.abandon();
                        break;
                    }
                }
            }
            _ = waker.notified() => {}
            changed = gate.changed(), if gate_alive => gate_alive = changed.is_ok(),
            _ = sleep_until(deadline) => {
                if close_deadline.is_some_and(|d| Instant::now() >= d) {
                    engine.abandon();
                }
                // A close of the engine's own (say, an idle timeout) already says why.
                if open_deadline.is_some_and(|d| Instant::now() >= d) && !engine.is_closing() {
                    open_timed_out(&mut engine, &shared, peer);
                }
            }
            _ = shutdown.stopping(), if !shutting_down => shutting_down = true,
        }
    }
    // Say goodbye properly: whatever is left (our close, or the answer to theirs) goes out.
    let _ = tokio::time::timeout(CLOSE_GRACE, flush_all(&mut wr, engine.output())).await;
    let _ = wr.shutdown().await;
    shared.registry.remove(entry.id);
    match engine.container_id() {
        Some(id) => tracing::info!(%peer, container_id = %PeerText(id), "connection closed"),
        // Never opened, so never logged as opened either.
        None => tracing::debug!(%peer, "connection closed before open"),
    }
}

/// The peer sent no `open` within the handshake timeout: it gets our `open` and a `close`
/// saying so (the engine has sent nothing yet), and the socket ends.
fn open_timed_out(engine: &mut Connection, shared: &Shared, peer: SocketAddr) {
    let limit = shared.config.handshake_timeout;
    if let Some(suppressed) = shared.admission.handshake_failures.allow(now()) {
        tracing::warn!(%peer, suppressed, "connection closed: no open within {limit:?} (broker.handshake_timeout_ms)");
    }
    engine.abandon();
    let reason = format!("no open within {limit:?} of connecting (broker.handshake_timeout_ms)");
    refuse::push_refusal(engine.output(), &shared.config.container_id, reason);
}

fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// Feeds every complete frame in `rbuf` to the engine: the whole of what the connection task
/// does with input (public so the fuzz target drives exactly this).
pub fn feed_input(engine: &mut Connection, rbuf: &mut BytesMut, now: std::time::Instant) {
    while !engine.is_closing() {
        match decode_raw(rbuf, engine.max_frame_size_in()) {
            Ok(None) => break,
            Ok(Some(raw)) => match decode_amqp(raw) {
                Ok(frame) => engine.handle_frame(frame, now),
                Err(e) => engine.handle_frame_error(e),
            },
            Err(e) => engine.handle_frame_error(e),
        }
    }
    if engine.is_closing() {
        // Nothing after a fatal error is worth decoding; keep only a possible close.
        loop {
            match decode_raw(rbuf, engine.max_frame_size_in()) {
                Ok(Some(raw)) => {
                    if let Ok(frame) = decode_amqp(raw) {
                        engine.handle_frame(frame, now);
                    }
                }
                Ok(None) => break,
                // The stream cannot be framed any more, so no close can be found in it: drop
                // what arrives, or a peer could make us buffer as fast as it sends for the
                // whole close grace.
                Err(_) => {
                    rbuf.clear();
                    break;
                }
            }
        }
    }
}

async fn write_some<W: AsyncWrite + Unpin>(wr: &mut W, out: &Output) -> std::io::Result<usize> {
    let mut slices = [IoSlice::new(&[]); IOV_MAX];
    let n = out.io_slices(&mut slices);
    wr.write_vectored(&slices[..n]).await
}

/// Writes some of `out`, or with nothing left to write, flushes (`None`).
async fn write_or_flush<W: AsyncWrite + Unpin>(
    wr: &mut W,
    out: &Output,
) -> std::io::Result<Option<usize>> {
    if out.is_empty() {
        wr.flush().await.map(|()| None)
    } else {
        write_some(wr, out).await.map(Some)
    }
}

async fn flush_all<W: AsyncWrite + Unpin>(wr: &mut W, out: &mut Output) -> std::io::Result<()> {
    out.prepare();
    while !out.is_empty() {
        let n = write_some(wr, out).await?;
        if n == 0 {
            break;
        }
        out.advance(n);
    }
    wr.flush().await
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
