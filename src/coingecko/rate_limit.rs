//! The call budget: `COINGECKO_CALLS_PER_MINUTE`, retries included, evenly spaced.
//!
//! CoinGecko counts every request against the per-minute limit, failed ones too, so the
//! limiter sits in the HTTP client's middleware stack where every attempt passes, rather
//! than around a whole call with its retries.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

/// The spacing is stretched by this fraction so that jitter in when requests reach
/// CoinGecko (a slower first request, a faster last one) cannot make it see N + 1 calls
/// in one minute: call N lands 0.3 s after the minute at any rate. It costs 0.5 % of a
/// long backfill's wall time.
const SPACING_MARGIN: f64 = 0.005;

/// Waits for the next slot of the budget, then sends; counts what it sends.
pub(crate) struct RateLimit {
    /// Burst 1: the first call goes at once, each next one a full period after the last.
    limiter: DefaultDirectRateLimiter,
    /// Attempts sent, retries included, shared with the client for `calls_made`.
    sent: Arc<AtomicU64>,
}

impl RateLimit {
    pub(crate) fn new(calls_per_minute: NonZeroU32, sent: Arc<AtomicU64>) -> Self {
        let period = Duration::from_secs_f64(
            60.0 / f64::from(calls_per_minute.get()) * (1.0 + SPACING_MARGIN),
        );
        let quota = Quota::with_period(period).expect("a minute over a u32 is never zero");
        Self {
            limiter: RateLimiter::direct(quota),
            sent,
        }
    }
}

#[async_trait::async_trait]
impl Middleware for RateLimit {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        self.limiter.until_ready().await;
        self.sent.fetch_add(1, Ordering::Relaxed);
        next.run(request, extensions).await
    }
}
