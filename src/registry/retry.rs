//! Retrying transport calls that failed for a reason that may pass: jittered exponential
//! backoff, honouring the registry's `Retry-After`, bounded in attempts and in time.
//!
//! Only calls whose request can be rebuilt from scratch go through [`retry`] (everything without
//! a streaming body, including the initial response of a blob GET). A blob upload is not retried
//! here: its body stream is consumed by the first attempt, so the copy engine retries the whole
//! blob copy from a fresh source stream and a fresh upload session instead.
//!
//! The delay is "full jitter" (a uniform draw in `[0, min(max_delay, base * 2^n)]`), which
//! spreads many clients hitting the same overloaded registry better than a fixed schedule. When
//! the registry says how long to wait (`Retry-After` on a 429 or 503), that wait is used instead;
//! if it does not fit in what is left of `max_elapsed`, we stop at once rather than sleep for
//! nothing (Docker Hub answers pull-limit 429s with waits of hours).

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use super::error::RegistryError;

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

    /// The wait before the next attempt after `err` failed attempt `attempt` (1-based), having
    /// spent `elapsed` so far; `None` when the call must not be tried again.
    pub fn next_delay(
        &self,
        attempt: u32,
        elapsed: Duration,
        err: &RegistryError,
    ) -> Option<Duration> {
        if !err.is_retryable() || attempt >= self.max_attempts {
            return None;
        }
        let delay = err.retry_after.unwrap_or_else(|| self.backoff(attempt));
        if elapsed.saturating_add(delay) > self.max_elapsed {
            return None;
        }
        Some(delay)
    }
}

/// Runs `f` until it succeeds, fails with an error that is not retryable, or `policy` is spent.
/// `op` names the call in logs. The last error is returned as is.
pub async fn retry<F, Fut, T>(policy: &RetryPolicy, op: &str, mut f: F) -> Result<T, RegistryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RegistryError>>,
{
    let start = Instant::now();
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(err) => {
                let Some(delay) = policy.next_delay(attempt, start.elapsed(), &err) else {
                    if err.is_retryable() && attempt > 1 {
                        tracing::warn!(op, attempt, error = %err, "giving up after retries");
                    }
                    return Err(err);
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
}
