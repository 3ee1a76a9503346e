//! The accept loop: one task per listening socket, one task per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::connection::{serve, Port, Shared};
use super::shutdown::Shutdown;

/// How long the loop pauses after a failed `accept` (typically EMFILE: out of descriptors),
/// rather than spinning on a connection it cannot take.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts connections on `listener` until `shutdown` turns true. Each connection task holds a
/// clone of `alive`, so the broker knows when the last one has finished. It never waits for a
/// place: a socket over a cap (broker.max_handshakes, broker.max_handshakes_per_source) is
/// closed at once, and the client may retry.
pub async fn accept_loop(
    listener: TcpListener,
    port: Port,
    shared: Arc<Shared>,
    mut shutdown: Shutdown,
    alive: mpsc::Sender<()>,
) {
    let local = listener.local_addr().ok();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.stopping() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                if let Some(suppressed) = shared.admission.accept_errors.allow(Instant::now()) {
                    tracing::warn!(?local, suppressed, "accept failed: {e}");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let ticket = match shared.admission.admit(peer.ip()) {
            Ok(ticket) => ticket,
            Err(refusal) => {
                if let Some(suppressed) = shared.admission.refusals.allow(Instant::now()) {
                    tracing::warn!(%peer, suppressed, "connection refused: {refusal}");
                }
                drop(stream);
                continue;
            }
        };
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        let alive = alive.clone();
        // One span per connection: every line it logs carries the peer, and the container-id
        // once the peer's `open` has named it.
        let span = tracing::info_span!(
            "connection",
            %peer,
            container_id = tracing::field::Empty
        );
        tokio::spawn(
            async move {
                serve(stream, peer, shared, shutdown, ticket, port).await;
                drop(alive);
            }
            .instrument(span),
        );
    }
    tracing::debug!(?local, "listener stopped");
}

/// Pending connections the kernel queues per listener (capped by net.core.somaxconn).
/// std's 128 drops SYNs when a few hundred clients connect at once, and they retry after 1 s.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds every address, failing with the address that could not be bound.
pub async fn bind_all(
    addrs: &[SocketAddr],
) -> Result<Vec<TcpListener>, (SocketAddr, std::io::Error)> {
    let mut listeners = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| (addr, e))?;
        socket.set_reuseaddr(true).map_err(|e| (addr, e))?;
        socket.bind(addr).map_err(|e| (addr, e))?;
        listeners.push(socket.listen(LISTEN_BACKLOG).map_err(|e| (addr, e))?);
    }
    Ok(listeners)
}
