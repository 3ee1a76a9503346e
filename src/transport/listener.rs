//! The accept loop: one task per listening socket, one task per connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, watch};

use super::connection::{serve, Shared};

/// Accepts connections on `listener` until `shutdown` turns true. Each connection task holds a
/// clone of `alive`, so the broker knows when the last one has finished.
pub async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
    open_connections: Arc<AtomicUsize>,
) {
    let local = listener.local_addr().ok();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Typically EMFILE: back off briefly instead of spinning.
                tracing::warn!(?local, "accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let limit = shared.config.max_connections as usize;
        if limit > 0 && open_connections.load(Ordering::Relaxed) >= limit {
            tracing::warn!(%peer, limit, "connection refused: max_connections reached");
            drop(stream);
            continue;
        }
        open_connections.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        let alive = alive.clone();
        let open = open_connections.clone();
        tokio::spawn(async move {
            serve(stream, peer, shared, shutdown).await;
            open.fetch_sub(1, Ordering::Relaxed);
            drop(alive);
        });
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
