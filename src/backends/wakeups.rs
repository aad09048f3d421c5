//! Backend-side news that a cache should be looked at now: a backend that
//! learns of a change by itself (the ElastiCache fleet poller seeing a
//! replication group become available) names the cache's backend identity
//! here, and the controller reconciles that cache at once instead of at its
//! next poll. Best effort: a missed wake-up only means the regular poll.

use tokio::sync::broadcast;

/// How many wake-ups may wait for the controller before the oldest are dropped.
const CAPACITY: usize = 4096;

/// A broadcast of backend identities whose backend state changed.
#[derive(Clone, Debug)]
pub struct Wakeups(broadcast::Sender<String>);

impl Default for Wakeups {
    fn default() -> Self {
        Self(broadcast::channel(CAPACITY).0)
    }
}

impl Wakeups {
    /// Asks for a reconcile of the cache whose backend identity is `backend_id`.
    pub fn wake(&self, backend_id: &str) {
        // No subscriber (plan, tests without a controller): nothing to do.
        let _ = self.0.send(backend_id.to_string());
    }

    /// Wake-ups from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_hear_each_wake_up() {
        let w = Wakeups::default();
        w.wake("before-anyone-listens");
        let mut rx = w.subscribe();
        w.clone().wake("k8s-shop-sessions");
        assert_eq!(rx.recv().await.expect("wake-up"), "k8s-shop-sessions");
    }
}
