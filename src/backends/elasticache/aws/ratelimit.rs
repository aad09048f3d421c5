//! The client-side token bucket every AWS call passes, so a thousand caches
//! reconciling at once cannot trip AWS's account-wide throttling. When AWS
//! throttles anyway, the rate halves and then recovers step by step.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A token bucket refilled at `rate` tokens per second up to `burst`.
#[derive(Debug)]
pub struct TokenBucket {
    configured_rate: f64,
    min_rate: f64,
    burst: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate` is in calls per second; `burst` is at least 1.
    pub fn new(rate: f64, burst: u32) -> Self {
        let rate = if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            1.0
        };
        let burst = f64::from(burst.max(1));
        Self {
            configured_rate: rate,
            min_rate: (rate / 16.0).max(0.05),
            burst,
            state: Mutex::new(State {
                rate,
                tokens: burst,
                last: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a token and takes it. Tokens are reserved before waiting,
    /// so waiters are served in arrival order at the bucket's rate.
    pub async fn acquire(&self) {
        let wait = {
            let mut s = self.lock();
            let now = Instant::now();
            let elapsed = now.saturating_duration_since(s.last).as_secs_f64();
            s.tokens = (s.tokens + elapsed * s.rate).min(self.burst);
            s.last = now;
            s.tokens -= 1.0;
            if s.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-s.tokens / s.rate)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// AWS throttled a call: halve the rate (not below 1/16 of the
    /// configured one).
    pub fn on_throttled(&self) {
        let mut s = self.lock();
        s.rate = (s.rate / 2.0).max(self.min_rate);
    }

    /// A call went through: recover a twentieth of the configured rate.
    pub fn on_success(&self) {
        let mut s = self.lock();
        if s.rate < self.configured_rate {
            s.rate = (s.rate + self.configured_rate / 20.0).min(self.configured_rate);
        }
    }

    /// The rate in effect now, in calls per second.
    pub fn current_rate(&self) -> f64 {
        self.lock().rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_rate() {
        let bucket = TokenBucket::new(10.0, 5);
        let start = Instant::now();
        for _ in 0..5 {
            bucket.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst is free");
        for _ in 0..10 {
            bucket.acquire().await;
        }
        let took = start.elapsed().as_secs_f64();
        assert!(
            (0.99..1.01).contains(&took),
            "10 calls at 10/s took {took}s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_halves_and_success_recovers() {
        let bucket = TokenBucket::new(8.0, 1);
        bucket.on_throttled();
        assert_eq!(bucket.current_rate(), 4.0);
        for _ in 0..10 {
            bucket.on_throttled();
        }
        assert_eq!(
            bucket.current_rate(),
            0.5,
            "floor is 1/16 of the configured rate"
        );
        for _ in 0..40 {
            bucket.on_success();
        }
        assert_eq!(bucket.current_rate(), 8.0);
        let start = Instant::now();
        bucket.acquire().await;
        bucket.acquire().await;
        let took = start.elapsed().as_secs_f64();
        assert!((0.124..0.126).contains(&took), "{took}");
    }
}
