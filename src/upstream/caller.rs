//! One call to an upstream, the same for every source: a slot of the source's budget
//! before every attempt, the request, the capped body, the retry loop and its back-off,
//! and the sorting of what came back into an answer to read or a failure worth another
//! attempt. A source gives its [`Profile`] (its name, its rate-limit window, how its error
//! bodies read) and reads the answers; it never loops or sleeps itself.
//!
//! The retry loop is ours rather than reqwest-retry's `RetryTransientMiddleware`: that
//! middleware takes every delay from its policy and cannot wait for what a 429's
//! `Retry-After` header says, nor for the source's rate-limit window when the header is
//! absent. Its pieces are reused: the exponential back-off policy, and
//! `default_on_request_failure` to tell a dropped connection from a broken request.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use http::StatusCode;
use reqwest::Url;
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::{Jitter, RetryDecision, RetryPolicy, Retryable, default_on_request_failure};

use super::budget::{BudgetMetrics, CallBudget, CallLimiter, NoSlot};
use super::redact::Redactor;
use super::wire::{MAX_BODY_BYTES, read_capped, retry_after};
use crate::domain::PriceSource;
use crate::store::upstream_requests;

/// How long to wait for a TCP/TLS connection, when the call's time-out is longer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a source tells the caller about itself, fixed for the source's life.
pub(crate) struct Profile {
    /// Whose budget, metrics and name.
    pub source: PriceSource,
    /// The source's rate-limit window: after a 429 without `Retry-After`, waiting less
    /// than this would most likely be refused again.
    pub rate_limit_window: Duration,
    /// Upper bound of one back-off delay, whatever the base and the retry count.
    pub max_backoff: Duration,
    /// Upper bound of a `Retry-After` wait: a far-off date is better answered by handing
    /// the work back to the queue than by holding the worker for hours.
    pub max_retry_after: Duration,
    /// What an answer worth retrying (a 5xx, 408 or 429) said, in words, every secret
    /// masked: for the log and for the message when the retries run out. Gets what was
    /// asked (see [`Caller::get`]).
    pub describe: fn(&Answer, Option<&str>, &Redactor) -> String,
    /// Whether an answer says the source's credits are spent (CoinGecko's refusal naming
    /// its monthly credits): read as a refusal, never retried, whatever its status, since
    /// no retry succeeds before the month turns.
    pub spent: fn(&Answer) -> bool,
}

/// How a source is called, as configured (`COINGECKO_*`, `COINBASE_*`).
#[derive(Debug, Clone, Copy)]
pub struct CallSettings {
    /// The call budget, retries included, spread evenly over the minute.
    pub calls_per_minute: NonZeroU32,
    /// HTTP-level retries of one call, on 429, 408, 5xx, time-outs and connection errors.
    pub max_retries: u32,
    /// The first back-off delay; it doubles per retry, with jitter.
    pub retry_base_delay: Duration,
    /// One attempt's time limit, from connecting to the end of the body.
    pub timeout: Duration,
}

/// How an attempt ended, counted per source and shown on `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// An answer the source could read.
    Ok,
    /// A 2xx whose body the source could not read, or too large to read.
    Unreadable,
    /// A 429.
    RateLimited,
    /// A 5xx or a 408.
    ServerError,
    /// A 404: what was asked for does not exist (an unknown coin id, a product the
    /// exchange does not list). An answer, not a sign the key or plan is wrong.
    NotFound,
    /// Another status: the source refused the request.
    Refused,
    /// No answer: the connection failed or broke, or timed out.
    TransportError,
}

impl CallOutcome {
    /// Every outcome, in the order `/metrics` lists them.
    pub const ALL: [CallOutcome; 7] = [
        Self::Ok,
        Self::Unreadable,
        Self::RateLimited,
        Self::ServerError,
        Self::NotFound,
        Self::Refused,
        Self::TransportError,
    ];

    /// The `outcome` label on `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Unreadable => "unreadable",
            Self::RateLimited => "rate_limited",
            Self::ServerError => "server_error",
            Self::NotFound => "not_found",
            Self::Refused => "refused",
            Self::TransportError => "transport_error",
        }
    }
}

/// An answer not worth another attempt: a success or a refusal, its body read whole.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

/// The longest an attempt waits for the database to count it (`upstream_requests`).
const COUNT_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a call ended without an answer for the source to read; each source turns it into
/// its own error (`From<CallError>`), with its own words and advice.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The budget gave no slot, so no request was sent.
    NoSlot {
        /// Why, every secret masked.
        message: String,
        why: NoSlot,
    },
    /// The last attempt failed, and no other was made: the retries ran out, or the
    /// failure was not worth retrying right away.
    GaveUp(GaveUp),
    /// An answer whose body was over [`MAX_BODY_BYTES`]: refused while it was read.
    TooLarge {
        status: StatusCode,
        /// What was asked, as the call named it.
        what: Option<String>,
    },
}

/// A failed attempt, described for the log and for the final error.
#[derive(Debug)]
pub(crate) struct Failure {
    /// What happened, in words, every secret masked.
    pub what: String,
    /// The HTTP status, when there was a response.
    pub status: Option<u16>,
    /// False for transport errors that are not worth retrying right away (a broken
    /// request rather than a broken connection); the job still goes back on the queue.
    pub retryable: bool,
    /// A 429: wait for the source's window rather than the usual back-off.
    pub rate_limited: bool,
    /// What the `Retry-After` header asked for, if anything.
    pub retry_after: Option<Duration>,
}

/// The attempts of a call that gave up, and how the last one failed.
#[derive(Debug)]
pub(crate) struct GaveUp {
    pub attempts: u32,
    pub last: Failure,
}

impl GaveUp {
    /// Whether the source kept answering 429: its advice is then about the rate.
    pub fn rate_limited(&self) -> bool {
        self.last.rate_limited
    }

    /// `Gave up{on} after 3 attempts; the last one failed: … {advice}`: the message a
    /// source gives, with its own name (`on`, such as " on Coinbase Exchange") and advice.
    pub fn message(&self, on: &str, advice: &str) -> String {
        let tries = match self.attempts {
            1 => "1 attempt".to_owned(),
            n => format!("{n} attempts"),
        };
        let said = self.last.what.trim_end_matches('.');
        format!("Gave up{on} after {tries}; the last one failed: {said}. {advice}")
    }
}

#[cfg(test)]
impl Failure {
    /// A 429 that said `what`, without `Retry-After`.
    pub fn rate_limited(what: &str) -> Self {
        Self {
            what: what.to_owned(),
            status: Some(429),
            retryable: true,
            rate_limited: true,
            retry_after: None,
        }
    }
}

/// The caller of one source. Cloning is cheap and shares the budget and the counters.
#[derive(Clone)]
pub struct Caller {
    inner: Arc<Inner>,
    /// Removes the source's key and whatever [`hiding`](Self::hiding) added from every
    /// body, URL and error quoted.
    redactor: Arc<Redactor>,
}

struct Inner {
    profile: Profile,
    http: reqwest::Client,
    /// Delays between attempts and the retry limit (`max_retries`).
    backoff: ExponentialBackoff,
    /// The budget every attempt takes its slot from.
    limiter: CallLimiter,
    /// Attempts sent, retries included.
    sent: AtomicU64,
    /// Attempts by how they ended, indexed by [`CallOutcome`] (as `usize`).
    outcomes: [AtomicU64; CallOutcome::ALL.len()],
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("source", &self.source())
            .field("calls_made", &self.calls_made())
            .finish()
    }
}

impl Caller {
    /// The caller of the source `profile` describes, whose attempts draw from `budget`
    /// (the key `api_key`'s, for a source that has keys). `http` adds what the source's
    /// requests all carry (a key header) to the HTTP client.
    pub(crate) fn new(
        profile: Profile,
        settings: CallSettings,
        budget: CallBudget,
        api_key: Option<&str>,
        http: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> anyhow::Result<Self> {
        let name = profile.source.display_name();
        // reqwest is built with `rustls-no-provider`: it needs a process-wide provider.
        // Another part of the program may have installed one already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = reqwest::Client::builder()
            .user_agent(concat!("price-history/", env!("CARGO_PKG_VERSION")))
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(CONNECT_TIMEOUT));
        let http = http(builder)
            .build()
            .with_context(|| format!("while building the HTTP client for {name}"))?;
        let backoff = ExponentialBackoff::builder()
            .retry_bounds(
                settings.retry_base_delay,
                settings.retry_base_delay.max(profile.max_backoff),
            )
            .jitter(Jitter::Bounded)
            .base(2)
            .build_with_max_retries(settings.max_retries);
        let limiter = CallLimiter::new(
            profile.source,
            budget,
            settings.calls_per_minute.get(),
            api_key,
        );
        Ok(Self {
            inner: Arc::new(Inner {
                profile,
                http,
                backoff,
                limiter,
                sent: AtomicU64::new(0),
                outcomes: Default::default(),
            }),
            redactor: Arc::new(Redactor::new(api_key)),
        })
    }

    /// Also keeps these secrets (`API_TOKEN`, the database password, another source's
    /// key) out of everything quoted, should the source or something in between ever
    /// echo them.
    pub fn hiding<'a>(mut self, secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut redactor = (*self.redactor).clone();
        for secret in secrets {
            redactor.add(secret);
        }
        self.redactor = Arc::new(redactor);
        self
    }

    /// Whose caller this is.
    pub fn source(&self) -> PriceSource {
        self.inner.profile.source
    }

    /// `text` with every secret this caller hides replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        self.redactor.apply(text)
    }

    /// Attempts sent so far by this caller and its clones, retries included.
    pub fn calls_made(&self) -> u64 {
        self.inner.sent.load(Ordering::Relaxed)
    }

    /// The source's budget as this process holds it: its slots, its figures.
    pub fn budget(&self) -> &CallLimiter {
        &self.inner.limiter
    }

    /// This process's figures of the source's budget: slots taken, time spent waiting.
    pub fn budget_metrics(&self) -> &BudgetMetrics {
        self.inner.limiter.metrics()
    }

    /// Attempts so far by how they ended, in the order of [`CallOutcome::ALL`].
    pub fn calls_by_outcome(&self) -> [(CallOutcome, u64); CallOutcome::ALL.len()] {
        CallOutcome::ALL.map(|outcome| {
            let count = self.inner.outcomes[outcome as usize].load(Ordering::Relaxed);
            (outcome, count)
        })
    }

    /// The back-off policy, for the sources' tests of their numbers.
    #[cfg(test)]
    pub(crate) fn backoff(&self) -> &ExponentialBackoff {
        &self.inner.backoff
    }

    /// `GET url`, retried as configured, its answer read by `read`: a success, a refusal
    /// (a status not worth retrying), or a 404 a source may take as an answer. `what` names
    /// what is asked, for messages that say it. An attempt counts as `ok` when `read`
    /// returns `Ok`, else as `unreadable` (a 2xx), `not_found` (a 404: a mistyped coin id
    /// is no reason to page anyone) or `refused`.
    pub(crate) async fn get<T, E: From<CallError>>(
        &self,
        url: &Url,
        what: Option<&str>,
        read: impl FnOnce(&Answer, &Redactor) -> Result<T, E>,
    ) -> Result<T, E> {
        let answer = self.answer(url, what).await?;
        let read = read(&answer, &self.redactor);
        self.count(match (&read, answer.status.is_success()) {
            (Ok(_), _) => CallOutcome::Ok,
            (Err(_), true) => CallOutcome::Unreadable,
            (Err(_), false) if answer.status == StatusCode::NOT_FOUND => CallOutcome::NotFound,
            (Err(_), false) => CallOutcome::Refused,
        })
        .await;
        read
    }

    /// The first answer not worth retrying, or why there was none.
    async fn answer(&self, url: &Url, what: Option<&str>) -> Result<Answer, CallError> {
        let started = SystemTime::now();
        let mut retries = 0;
        loop {
            let failure = match self.attempt(url, what).await? {
                Ok(answer) => return Ok(answer),
                Err(failure) => failure,
            };
            if failure.rate_limited {
                // Every caller of the budget waits, whether this one retries or gives up:
                // the source refuses the key (or address), not the call.
                let hold = self.inner.profile.hold(&failure);
                self.inner.limiter.hold_back(hold).await;
            }
            let Some(delay) = self.delay(&failure, started, retries) else {
                return Err(CallError::GaveUp(GaveUp {
                    attempts: retries + 1,
                    last: failure,
                }));
            };
            retries += 1;
            tracing::warn!(
                source = %self.source(),
                status = failure.status,
                error = %failure.what,
                retry = retries,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "{} call failed; retrying",
                self.source().display_name(),
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// How long to wait before retrying after `failure`; `None` when no retry is due.
    fn delay(&self, failure: &Failure, started: SystemTime, retries: u32) -> Option<Duration> {
        if !failure.retryable {
            return None;
        }
        let RetryDecision::Retry { execute_after } =
            self.inner.backoff.should_retry(started, retries)
        else {
            return None;
        };
        let backoff = execute_after
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        Some(self.inner.profile.wait(failure, backoff))
    }

    /// One attempt: a slot of the budget, the request, the capped body. An answer to
    /// read (`Ok(Ok)`), a failure another attempt may not repeat (`Ok(Err)`), or an end
    /// of the call (`Err`).
    async fn attempt(
        &self,
        url: &Url,
        what: Option<&str>,
    ) -> Result<Result<Answer, Failure>, CallError> {
        if let Err(why) = self.inner.limiter.acquire().await {
            let message = self.redact(&error_chain(&why));
            return Err(CallError::NoSlot { message, why });
        }
        self.inner.sent.fetch_add(1, Ordering::Relaxed);
        let name = self.source().display_name();
        let response = match self.inner.http.get(url.clone()).send().await {
            Ok(response) => response,
            Err(error) => {
                self.count(CallOutcome::TransportError).await;
                let error = reqwest_middleware::Error::Reqwest(error);
                let retryable = matches!(
                    default_on_request_failure(&error),
                    Some(Retryable::Transient)
                );
                let for_what = what.map(|what| format!(" for {what}")).unwrap_or_default();
                let what = format!("could not reach {name}{for_what}: {}", error_chain(&error));
                return Ok(Err(self.failure(what, None, retryable)));
            }
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = match read_capped(response, MAX_BODY_BYTES).await {
            Ok(Some(body)) => body,
            Ok(None) => {
                self.count(CallOutcome::Unreadable).await;
                let what = what.map(str::to_owned);
                return Err(CallError::TooLarge { status, what });
            }
            Err(error) => {
                self.count(CallOutcome::TransportError).await;
                let to_what = what.map(|what| format!(" to {what}")).unwrap_or_default();
                let what = format!(
                    "the body of {name}'s HTTP {} answer{to_what} did not arrive: {}",
                    status.as_u16(),
                    error_chain(&error)
                );
                return Ok(Err(self.failure(what, Some(status), true)));
            }
        };
        Ok(self.sort(Answer { status, body }, what, retry_after).await)
    }

    /// An answer to read, or the failure a 5xx, 408 or 429 is.
    async fn sort(
        &self,
        answer: Answer,
        what: Option<&str>,
        retry_after: Option<Duration>,
    ) -> Result<Answer, Failure> {
        let status = answer.status;
        let rate_limited = status == StatusCode::TOO_MANY_REQUESTS;
        let spent = (self.inner.profile.spent)(&answer);
        if spent {
            // Every process stops calling with the key until the month turns.
            self.inner.limiter.refused_for_spent_credits().await;
        }
        if !(rate_limited || status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT)
            || spent
        {
            return Ok(answer);
        }
        self.count(if rate_limited {
            CallOutcome::RateLimited
        } else {
            CallOutcome::ServerError
        })
        .await;
        Err(Failure {
            what: (self.inner.profile.describe)(&answer, what, &self.redactor),
            status: Some(status.as_u16()),
            retryable: true,
            rate_limited,
            retry_after,
        })
    }

    fn failure(&self, what: String, status: Option<StatusCode>, retryable: bool) -> Failure {
        Failure {
            what: self.redact(&what),
            status: status.map(|status| status.as_u16()),
            retryable,
            rate_limited: false,
            retry_after: None,
        }
    }

    /// Counts an attempt in this process and, on a shared budget, in the database, where
    /// `/metrics` of any process reads every process's (a `worker` serves none). The
    /// database's count is awaited (so that a command that exits right after a refused
    /// call has counted it), for [`COUNT_TIMEOUT`] at most: one it cannot take by then
    /// (the database away) is lost, not waited for.
    async fn count(&self, outcome: CallOutcome) {
        self.inner.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
        let Some(pool) = self.inner.limiter.pool() else {
            return;
        };
        let source = self.source();
        let counted = upstream_requests::count(pool, source, outcome.as_str());
        match tokio::time::timeout(COUNT_TIMEOUT, counted).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, %source, "a request not counted in the database");
            }
            Err(_) => {
                tracing::debug!(%source, "a request not counted in the database: it did not answer in time");
            }
        }
    }
}

impl Profile {
    /// The waits after a 429 whose `Retry-After` said 3 s, said an hour, and said
    /// nothing, given the policy's `backoff`: what a source's tests hold its numbers to.
    #[cfg(test)]
    pub(crate) fn waits_after_a_429(&self, backoff: Duration) -> [Duration; 3] {
        [Some(3), Some(3600), None].map(|told| {
            let failure = Failure {
                retry_after: told.map(Duration::from_secs),
                ..Failure::rate_limited("")
            };
            self.wait(&failure, backoff)
        })
    }

    /// How long every caller of the budget is held back after `failure`, a 429: what
    /// `Retry-After` asked, past the wait a caller sleeps itself ([`Profile::wait`] caps
    /// it), so that a retry after the capped sleep waits for the rest in its slot instead
    /// of meeting a sure 429; an hour at most, whatever a header says. Without the
    /// header, the source's rate-limit window.
    pub(crate) fn hold(&self, failure: &Failure) -> Duration {
        const LONGEST_HOLD: Duration = Duration::from_secs(3600);
        match (failure.retry_after, failure.rate_limited) {
            (Some(asked), true) => asked.min(LONGEST_HOLD),
            (None, true) => self.rate_limit_window,
            (_, false) => Duration::ZERO,
        }
    }

    /// How long to wait before the next attempt after `failure`, given the policy's
    /// back-off: what `Retry-After` asked (within reason), else at least the rate-limit
    /// window after a 429, else the back-off.
    pub(crate) fn wait(&self, failure: &Failure, backoff: Duration) -> Duration {
        match (failure.retry_after, failure.rate_limited) {
            (Some(asked), _) => asked.min(self.max_retry_after),
            (None, true) => backoff.max(self.rate_limit_window),
            (None, false) => backoff,
        }
    }
}

/// An error with its causes, `a: b: c`, because reqwest keeps the useful part
/// ("Connection refused") in its sources.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_is_counted_in_its_own_slot_under_its_own_label() {
        for (i, outcome) in CallOutcome::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, i, "{outcome:?}");
        }
        let mut labels = CallOutcome::ALL.map(CallOutcome::as_str).to_vec();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), CallOutcome::ALL.len());
    }

    fn profile(rate_limit_window: Duration) -> Profile {
        Profile {
            source: PriceSource::CoinGecko,
            rate_limit_window,
            max_backoff: Duration::from_secs(600),
            max_retry_after: Duration::from_secs(600),
            describe: |answer, _, _| answer.status.to_string(),
            spent: |_| false,
        }
    }

    #[test]
    fn a_429_waits_what_it_is_told_within_reason_or_a_whole_window_and_others_the_back_off() {
        let profile = profile(Duration::from_secs(60));
        let [told, told_an_hour, not_told] = profile.waits_after_a_429(Duration::from_secs(8));
        assert_eq!(
            [told, told_an_hour, not_told],
            [3, 600, 60].map(Duration::from_secs)
        );
        let longer = profile.waits_after_a_429(Duration::from_secs(90))[2];
        assert_eq!(longer, Duration::from_secs(90), "a longer back-off stands");
        let server_error = Failure {
            rate_limited: false,
            ..Failure::rate_limited("")
        };
        let backoff = Duration::from_secs(8);
        assert_eq!(profile.wait(&server_error, backoff), backoff);
    }

    #[test]
    fn a_429_holds_everyone_back_as_long_as_told_up_to_an_hour_and_other_failures_not_at_all() {
        let profile = profile(Duration::from_secs(60));
        let told = |secs: Option<u64>| Failure {
            retry_after: secs.map(Duration::from_secs),
            ..Failure::rate_limited("")
        };
        let holds = [Some(3), Some(3000), Some(86_400), None].map(|secs| profile.hold(&told(secs)));
        assert_eq!(holds, [3, 3000, 3600, 60].map(Duration::from_secs));
        let server_error = Failure {
            rate_limited: false,
            ..told(Some(30))
        };
        assert_eq!(profile.hold(&server_error), Duration::ZERO);
    }

    #[test]
    fn giving_up_counts_the_attempts_in_words_and_quotes_the_last_failure() {
        let gave_up = |attempts| GaveUp {
            attempts,
            last: Failure::rate_limited("X answered HTTP 429."),
        };
        assert_eq!(
            gave_up(1).message("", "Wait."),
            "Gave up after 1 attempt; the last one failed: X answered HTTP 429. Wait."
        );
        assert!(
            gave_up(4)
                .message(" on X", "")
                .starts_with("Gave up on X after 4 attempts;")
        );
        assert!(gave_up(4).rate_limited());
    }
}
