//! The client-side token bucket every AWS call passes, so a thousand caches
//! reconciling at once cannot trip AWS's account-wide throttling. When AWS
//! throttles anyway the rate adapts (AIMD by time): it halves at most once
//! per second however many throttled answers arrive, never below 1/16 of
//! the configured rate, and once throttling stops it climbs back linearly
//! to the configured rate within [`RECOVERY`] (plus a short quiet period),
//! whether or not calls are made meanwhile.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

use super::CallGate;

/// Throttled answers within this long of a cut belong to the same burst.
const COOLDOWN: Duration = Duration::from_secs(1);
/// After the last cut the rate holds this long before climbing.
const QUIET: Duration = Duration::from_secs(2);
/// From the floor back to the configured rate takes this long.
const RECOVERY: Duration = Duration::from_secs(40);

/// A token bucket refilled at the current rate (calls per second) up to `burst`.
#[derive(Debug)]
pub struct TokenBucket {
    configured_rate: f64,
    min_rate: f64,
    burst: f64,
    state: Mutex<State>,
    /// `aws_rate_limit`: the rate in effect, when exported.
    gauge: Option<Gauge<f64, std::sync::atomic::AtomicU64>>,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    last: Instant,
    /// The last cut: when, and the rate it left.
    cut: Option<(Instant, f64)>,
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
                tokens: burst,
                last: Instant::now(),
                cut: None,
            }),
            gauge: None,
        }
    }

    /// Also publishes the rate in effect on `gauge`.
    pub fn with_gauge(mut self, gauge: Gauge<f64, std::sync::atomic::AtomicU64>) -> Self {
        gauge.set(self.configured_rate);
        self.gauge = Some(gauge);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The rate at `now`: the configured one, or climbing back from a cut.
    fn rate_at(&self, s: &State, now: Instant) -> f64 {
        let Some((at, left)) = s.cut else {
            return self.configured_rate;
        };
        let since = now.saturating_duration_since(at).saturating_sub(QUIET);
        let climb = self.configured_rate * since.as_secs_f64() / RECOVERY.as_secs_f64();
        (left + climb).min(self.configured_rate)
    }

    /// Waits for a token and takes it. Tokens are reserved before waiting,
    /// so waiters are served in arrival order at the bucket's rate.
    pub async fn acquire(&self) {
        let wait = self.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Reserves a token and returns how long until it is due.
    fn reserve(&self) -> Duration {
        let mut s = self.lock();
        let now = Instant::now();
        let rate = self.rate_at(&s, now);
        let elapsed = now.saturating_duration_since(s.last).as_secs_f64();
        s.tokens = (s.tokens + elapsed * rate).min(self.burst) - 1.0;
        s.last = now;
        if let Some(g) = &self.gauge {
            g.set(rate);
        }
        if s.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.tokens / rate)
        }
    }

    /// Whether AWS throttled within the last [`RECOVERY`]: the rate is
    /// still below the configured one.
    pub fn is_reduced(&self) -> bool {
        self.current_rate() < self.configured_rate
    }

    /// AWS throttled a call: halve the rate, once per burst of throttled
    /// answers, never below 1/16 of the configured rate.
    pub fn on_throttled(&self) {
        let mut s = self.lock();
        let now = Instant::now();
        if s.cut
            .is_some_and(|(at, _)| now.saturating_duration_since(at) < COOLDOWN)
        {
            return;
        }
        let halved = (self.rate_at(&s, now) / 2.0).max(self.min_rate);
        s.cut = Some((now, halved));
        if let Some(g) = &self.gauge {
            g.set(halved);
        }
    }

    /// The rate in effect now, in calls per second.
    pub fn current_rate(&self) -> f64 {
        let s = self.lock();
        self.rate_at(&s, Instant::now())
    }
}

/// The rate limiter and call counter of an HTTP backend's calls (Upstash,
/// Azure): the [`CallGate`] their clients pass.
pub struct LimitedGate {
    limiter: TokenBucket,
    record: Box<dyn Fn(&'static str, &'static str) + Send + Sync>,
}

impl LimitedGate {
    /// `rate` calls per second (bursts of `burst`), each outcome given to `record`.
    pub fn new(
        rate: f64,
        burst: u32,
        record: impl Fn(&'static str, &'static str) + Send + Sync + 'static,
    ) -> Self {
        Self {
            limiter: TokenBucket::new(rate, burst),
            record: Box::new(record),
        }
    }
}

#[async_trait::async_trait]
impl CallGate for LimitedGate {
    async fn acquire(&self) {
        self.limiter.acquire().await;
    }
    fn on_success(&self) {}
    fn on_throttled(&self) {
        self.limiter.on_throttled();
    }
    fn record(&self, operation: &'static str, outcome: &'static str) {
        (self.record)(operation, outcome);
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
    async fn a_burst_of_throttles_cuts_once_and_the_floor_holds() {
        let bucket = TokenBucket::new(8.0, 1);
        for _ in 0..300 {
            bucket.on_throttled();
        }
        assert_eq!(bucket.current_rate(), 4.0, "one burst, one cut");
        for _ in 0..10 {
            tokio::time::advance(COOLDOWN).await;
            bucket.on_throttled();
        }
        assert_eq!(
            bucket.current_rate(),
            0.5,
            "floor is 1/16 of the configured rate"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_recovers_within_a_minute_after_throttling_stops() {
        let bucket = TokenBucket::new(8.0, 1);
        for i in 0..10 {
            if i > 0 {
                tokio::time::advance(COOLDOWN).await;
            }
            bucket.on_throttled();
        }
        assert_eq!(bucket.current_rate(), 0.5);
        tokio::time::advance(QUIET).await;
        assert_eq!(bucket.current_rate(), 0.5, "holds during the quiet period");
        tokio::time::advance(RECOVERY / 2).await;
        let half_way = bucket.current_rate();
        assert!(
            (4.4..4.6).contains(&half_way),
            "climbs linearly: {half_way}"
        );
        tokio::time::advance(RECOVERY / 2).await;
        assert_eq!(
            bucket.current_rate(),
            8.0,
            "back within QUIET + RECOVERY (42 s)"
        );
        // And calls go at the configured rate again.
        let start = Instant::now();
        bucket.acquire().await;
        bucket.acquire().await;
        let took = start.elapsed().as_secs_f64();
        assert!((0.124..0.126).contains(&took), "{took}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_gauge_shows_the_rate_in_effect() {
        let gauge = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        let bucket = TokenBucket::new(8.0, 1).with_gauge(gauge.clone());
        assert_eq!(gauge.get(), 8.0);
        bucket.on_throttled();
        assert_eq!(gauge.get(), 4.0);
        tokio::time::advance(QUIET + RECOVERY).await;
        bucket.acquire().await;
        assert_eq!(gauge.get(), 8.0);
    }
}
