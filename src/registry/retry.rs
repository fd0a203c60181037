//! The one home of retrying in crossdock: every call that failed for a reason that may pass is
//! tried again here, with jittered exponential backoff, honouring the far side's `Retry-After`,
//! bounded in attempts and in total waiting.
//!
//! Two layers use it, each with its own [`RetryPolicy`]: the HTTP transport retries every call
//! whose request can be rebuilt from scratch (everything without a streaming body, including the
//! initial response of a blob GET); the copy engine retries what the transport cannot — a blob
//! transfer, whose upload body is consumed by the first attempt, from a fresh source stream and
//! a fresh upload session, and a manifest push refused for a child a racing writer had not yet
//! linked. What counts as "may pass" is the error's to say ([`Transient`]), so each caller keeps
//! its classification while the schedule, the jitter and the budget live here once.
//!
//! The delay is "full jitter" (a uniform draw in `[0, min(max_delay, base * 2^n)]`), which
//! spreads many clients hitting the same overloaded registry better than a fixed schedule. When
//! the registry says how long to wait (`Retry-After` on a 429 or 503), that wait is used instead;
//! if it does not fit in what is left of `max_elapsed`, we stop at once rather than sleep for
//! nothing (Docker Hub answers pull-limit 429s with waits of hours), with an error that names the
//! registry and the wait it asked for: the daemon tries again on its schedule.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use super::error::RegistryError;

/// What a failed call's error says about trying it again.
pub trait Transient: std::fmt::Display {
    /// Whether the same call may succeed if tried again.
    fn is_transient(&self) -> bool;
    /// How long the far side asked to wait before the next try, if it said.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
    /// This error, saying that the wait asked for (`asked`) was more than the `left` of the
    /// retry budget, so the call was not tried again.
    #[must_use]
    fn wait_refused(self, asked: Duration, left: Duration) -> Self;
}

impl Transient for RegistryError {
    fn is_transient(&self) -> bool {
        self.is_retryable()
    }

    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    fn wait_refused(mut self, asked: Duration, left: Duration) -> Self {
        let registry = url::Url::parse(&self.url)
            .ok()
            .and_then(|u| {
                let host = u.host_str()?.to_string();
                Some(match u.port() {
                    Some(p) => format!("{host}:{p}"),
                    None => host,
                })
            })
            .unwrap_or_else(|| self.url.clone());
        let note = format!(
            "registry {registry} asked to wait {} (Retry-After), more than the {} left to retry; \
             not waiting — try again later (the daemon does, on the rule's schedule)",
            humantime::format_duration(asked),
            humantime::format_duration(Duration::from_secs(
                left.as_secs() + u64::from(left.subsec_nanos() > 0)
            )),
        );
        self.message = if self.message.is_empty() {
            note
        } else {
            format!("{}; {note}", self.message)
        };
        // Retrying at once would be refused the same way: the caller must wait.
        self.retry_after = Some(asked);
        self
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait this long, then try again.
    Retry(Duration),
    /// Stop: the error is permanent, or the attempts or the budget are spent.
    Stop,
    /// Stop now: the far side asked for a wait (`asked`) longer than the budget `left`.
    WaitTooLong {
        /// What `Retry-After` asked for.
        asked: Duration,
        /// What was left of `max_elapsed`.
        left: Duration,
    },
}

/// How often and how long a failed call is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = never retry).
    pub max_attempts: u32,
    /// Backoff before the second attempt (upper bound of the jittered draw).
    pub base_delay: Duration,
    /// Longest backoff between two attempts (not applied to a `Retry-After` wait).
    pub max_delay: Duration,
    /// No attempt is started later than this after the first one.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn never() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The jittered backoff after failed attempt number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        let ceiling = self.base_delay.saturating_mul(exp).min(self.max_delay);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::random_range(0..=millis))
    }

    /// What to do after attempt number `attempt` (1-based) failed, `elapsed` after the first
    /// one started, with an error that is `transient` or not and asked for a wait of
    /// `retry_after` or not. Pure but for the jitter of [`RetryPolicy::backoff`].
    pub fn next(
        &self,
        attempt: u32,
        elapsed: Duration,
        transient: bool,
        retry_after: Option<Duration>,
    ) -> Next {
        if !transient || attempt >= self.max_attempts {
            return Next::Stop;
        }
        let left = self.max_elapsed.saturating_sub(elapsed);
        match retry_after {
            Some(asked) if asked > left => Next::WaitTooLong { asked, left },
            Some(asked) => Next::Retry(asked),
            None => {
                let delay = self.backoff(attempt);
                if delay > left {
                    Next::Stop
                } else {
                    Next::Retry(delay)
                }
            }
        }
    }

    /// The wait before the next attempt after `err` failed attempt `attempt` (1-based), having
    /// spent `elapsed` so far; `None` when the call must not be tried again.
    pub fn next_delay(
        &self,
        attempt: u32,
        elapsed: Duration,
        err: &RegistryError,
    ) -> Option<Duration> {
        match self.next(attempt, elapsed, err.is_retryable(), err.retry_after) {
            Next::Retry(d) => Some(d),
            Next::Stop | Next::WaitTooLong { .. } => None,
        }
    }
}

/// Runs `f` until it succeeds, fails with an error that is not [`Transient`], or `policy` is
/// spent. `op` names the call in logs. The last error is returned as is, except that a wait
/// asked for beyond the budget says so ([`Transient::wait_refused`]).
pub async fn retry<F, Fut, T, E>(policy: &RetryPolicy, op: &str, mut f: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Transient,
{
    let start = Instant::now();
    let mut attempt = 1;
    loop {
        let err = match f().await {
            Ok(v) => return Ok(v),
            Err(err) => err,
        };
        let transient = err.is_transient();
        let delay = match policy.next(attempt, start.elapsed(), transient, err.retry_after()) {
            Next::Retry(delay) => delay,
            Next::Stop => {
                if transient && attempt > 1 {
                    tracing::warn!(op, attempt, error = %err, "giving up after retries");
                }
                return Err(err);
            }
            Next::WaitTooLong { asked, left } => {
                let err = err.wait_refused(asked, left);
                tracing::warn!(op, attempt, error = %err, "not waiting");
                return Err(err);
            }
        };
        if attempt == 1 {
            tracing::debug!(op, attempt, ?delay, error = %err, "retrying");
        } else {
            tracing::warn!(op, attempt, ?delay, error = %err, "retrying");
        }
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

/// Parses a `Retry-After` value: delta-seconds or an HTTP-date (a date in the past means now).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::ErrorKind;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn err(kind: ErrorKind) -> RegistryError {
        RegistryError::new(kind, "GET manifest", "http://r/v2/")
    }

    fn fast(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            max_elapsed: Duration::from_secs(5),
        }
    }

    #[test]
    fn parses_retry_after_in_both_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn backoff_is_jittered_below_an_exponential_ceiling() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(700),
            max_elapsed: Duration::from_secs(60),
        };
        for _ in 0..200 {
            assert!(p.backoff(1) <= Duration::from_millis(100));
            assert!(p.backoff(3) <= Duration::from_millis(400));
            assert!(p.backoff(9) <= Duration::from_millis(700));
            assert!(p.backoff(u32::MAX) <= Duration::from_millis(700));
        }
        // Jitter: 200 draws in [0, 700] ms are not all the same.
        let draws: std::collections::HashSet<_> = (0..200).map(|_| p.backoff(9)).collect();
        assert!(draws.len() > 10);
    }

    #[test]
    fn next_delay_honours_retry_after_and_the_time_budget() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
            max_elapsed: Duration::from_secs(10),
        };
        let mut e = err(ErrorKind::RateLimited);
        e.retry_after = Some(Duration::from_secs(3));
        assert_eq!(
            p.next_delay(1, Duration::ZERO, &e),
            Some(Duration::from_secs(3))
        );
        // A wait that does not fit in the budget ends the retries at once.
        assert_eq!(p.next_delay(1, Duration::from_secs(8), &e), None);
        e.retry_after = Some(Duration::from_secs(3600));
        assert_eq!(p.next_delay(1, Duration::ZERO, &e), None);
        assert_eq!(
            p.next_delay(5, Duration::ZERO, &err(ErrorKind::ServerError)),
            None
        );
        assert_eq!(
            p.next_delay(1, Duration::ZERO, &err(ErrorKind::NotFound)),
            None
        );
        assert!(
            p.next_delay(1, Duration::ZERO, &err(ErrorKind::Transport))
                .is_some()
        );
    }

    #[tokio::test]
    async fn retries_retryable_errors_until_success() {
        let calls = AtomicU32::new(0);
        let out = retry(&fast(5), "test", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(err(ErrorKind::ServerError))
            } else {
                Ok(42)
            }
        })
        .await
        .unwrap();
        assert_eq!(out, 42);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn stops_on_permanent_errors_and_after_max_attempts() {
        let calls = AtomicU32::new(0);
        let e = retry(&fast(5), "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(err(ErrorKind::Denied))
        })
        .await
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Denied);
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let e = retry(&fast(3), "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(err(ErrorKind::Transport))
        })
        .await
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Transport);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn next_is_a_schedule_bounded_in_attempts_and_budget() {
        let p = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(100),
            max_elapsed: Duration::from_secs(10),
        };
        let secs = Duration::from_secs;
        assert_eq!(p.next(1, Duration::ZERO, false, None), Next::Stop);
        assert_eq!(p.next(3, Duration::ZERO, true, None), Next::Stop);
        assert!(
            matches!(p.next(2, Duration::ZERO, true, None), Next::Retry(d) if d <= Duration::from_millis(100))
        );
        assert_eq!(
            p.next(1, secs(2), true, Some(secs(8))),
            Next::Retry(secs(8))
        );
        assert_eq!(
            p.next(1, secs(3), true, Some(secs(8))),
            Next::WaitTooLong {
                asked: secs(8),
                left: secs(7)
            }
        );
        // A backoff that does not fit in what is left ends the retries too.
        let slow = RetryPolicy {
            base_delay: secs(60),
            max_delay: secs(60),
            ..p.clone()
        };
        let stops = (0..50)
            .filter(|_| slow.next(1, secs(9), true, None) == Next::Stop)
            .count();
        assert!(
            stops > 40,
            "{stops} of 50 draws in [0, 60] s stopped with 1 s left"
        );
    }

    #[tokio::test]
    async fn a_retry_after_beyond_the_budget_fails_at_once_naming_registry_and_wait() {
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let e = retry(&RetryPolicy::default(), "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            let mut e = RegistryError::new(
                ErrorKind::RateLimited,
                "GET blob",
                "https://registry.example:5000/v2/app/blobs/sha256:00",
            );
            e.retry_after = Some(Duration::from_secs(3600));
            Err::<(), _>(e)
        })
        .await
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1), "it waited");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(e.kind, ErrorKind::RateLimited);
        let text = e.to_string();
        assert!(
            text.contains("registry registry.example:5000 asked to wait 1h"),
            "{text}"
        );
        assert!(text.contains("2m left"), "{text}");
    }
}
