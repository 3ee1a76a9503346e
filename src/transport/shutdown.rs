//! The broker stopping, as every task sees it: the handle holds the [`Stopper`], each task a
//! [`Shutdown`] it can ask or wait on. A stopper dropped without stopping counts as stopped,
//! so no task outlives the handle that owns it.

use tokio::sync::watch;

/// Starts the shutdown; held by the broker's handle.
#[derive(Debug)]
pub struct Stopper(watch::Sender<bool>);

/// A task's view of the shutdown.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Stopper {
    /// A stopper and the first view of it.
    pub fn new() -> (Stopper, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (Stopper(tx), Shutdown(rx))
    }

    /// Tells every task to stop.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Whether the shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once the shutdown has begun (or the stopper is gone). Cancel-safe, so it can
    /// be one arm of a `select!` in a loop.
    pub async fn stopping(&mut self) {
        let _ = self.0.wait_for(|&stopping| stopping).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_view_sees_the_stop_and_a_dropped_stopper_counts_as_one() {
        let (stopper, mut a) = Stopper::new();
        let mut b = a.clone();
        assert!(!a.is_stopping());
        stopper.stop();
        a.stopping().await;
        b.stopping().await;
        assert!(b.is_stopping());

        let (stopper, mut c) = Stopper::new();
        drop(stopper);
        c.stopping().await;
    }
}
