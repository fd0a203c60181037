//! The requests one registry has in flight, under a limit that moves ([`super::adaptive`]).
//!
//! Two kinds of hold share one limit. A *request permit* is taken by every request for as long
//! as it is open (a streamed blob body keeps it to its end). A *stream reservation* is taken by
//! a blob transfer, before it opens anything, for every request it will hold open at once at
//! this registry (see `copy::blob::reserve_streams`): reserving them all up front, registry by
//! registry in name order, is what keeps transfers from waiting for each other in a circle.
//!
//! A shrinking limit must not break that. Requests already in flight are never cancelled: the
//! limit only decides who may start next. And requests are admitted up to the larger of the
//! limit and the number of reserved streams, so a transfer that reserved its streams under a
//! higher limit can always open all of them, whatever the limit fell to meanwhile; new
//! reservations follow the current limit (a transfer needing more than it may still run alone,
//! or it would wait forever), so the reserved count comes down to the limit as transfers
//! finish. This is why the limiter is a small lock-and-notify of its own rather than a
//! `tokio::sync::Semaphore` whose permits are forgotten: the admission rule reads two counts.
//! Waiters re-check on every release; at the handful of requests a registry gets at once,
//! waking them all costs nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::adaptive::{AimdPolicy, ControlState, Observation, Signal, update};

/// The request limit of one registry.
#[derive(Debug)]
pub struct Limiter {
    /// The registry, for the metric.
    registry: String,
    policy: AimdPolicy,
    state: Mutex<Counts>,
    released: Notify,
}

#[derive(Debug)]
struct Counts {
    control: ControlState,
    /// Requests holding a permit.
    in_flight: usize,
    /// Requests reserved by blob transfers.
    streams: usize,
}

/// A request's place in flight, given back when dropped.
#[derive(Debug)]
pub struct RequestPermit {
    limiter: Arc<Limiter>,
    epoch: u64,
    sent: Instant,
}

/// Requests a blob transfer will hold open at once, given back when dropped.
#[derive(Debug)]
pub struct StreamReservation {
    limiter: Arc<Limiter>,
    count: usize,
}

impl Limiter {
    /// A limiter for `registry` starting at `max_concurrency` (at least 1), which it never
    /// exceeds.
    pub fn new(registry: &str, max_concurrency: usize) -> Arc<Self> {
        let policy = AimdPolicy::for_ceiling(max_concurrency);
        let control = policy.start();
        crate::metrics::record_concurrency_limit(registry, control.current());
        Arc::new(Limiter {
            registry: registry.to_string(),
            policy,
            state: Mutex::new(Counts {
                control,
                in_flight: 0,
                streams: 0,
            }),
            released: Notify::new(),
        })
    }

    /// The configured `max_concurrency`.
    pub fn ceiling(&self) -> usize {
        self.policy.ceiling
    }

    /// Requests allowed in flight now.
    pub fn limit(&self) -> usize {
        self.lock().control.current()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.state.lock().expect("limiter lock")
    }

    /// Waits until `admit` says yes to the counts, which it may then change.
    async fn wait_until(&self, mut admit: impl FnMut(&mut Counts) -> bool) {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release between the check and the wait wakes us.
            released.as_mut().enable();
            if admit(&mut self.lock()) {
                return;
            }
            released.await;
        }
    }

    /// A permit for one request, once the limit (or the reserved streams) allows one more.
    pub async fn request(self: &Arc<Self>) -> RequestPermit {
        let mut epoch = 0;
        self.wait_until(|c| {
            let room = c.control.current().max(c.streams);
            epoch = c.control.epoch;
            if c.in_flight < room {
                c.in_flight += 1;
                true
            } else {
                false
            }
        })
        .await;
        RequestPermit {
            limiter: self.clone(),
            epoch,
            sent: Instant::now(),
        }
    }

    /// Reserves `count` requests for a blob transfer: at once if they fit under the limit with
    /// those reserved already, or when no other transfer holds any.
    pub async fn reserve(self: &Arc<Self>, count: usize) -> StreamReservation {
        self.wait_until(|c| {
            if c.streams == 0 || c.streams + count <= c.control.current() {
                c.streams += count;
                true
            } else {
                false
            }
        })
        .await;
        StreamReservation {
            limiter: self.clone(),
            count,
        }
    }

    /// Feeds the answer (`status`, `None` for no answer) to the request that held `permit` to
    /// the controller; `timed` says whether its latency means anything (no request body).
    pub fn record(&self, permit: &RequestPermit, status: Option<u16>, timed: bool) {
        let signal = Signal::of(status);
        let latency: Option<Duration> =
            (timed && signal == Signal::Healthy).then(|| permit.sent.elapsed());
        let obs = Observation {
            signal,
            latency,
            epoch: permit.epoch,
        };
        let (before, after) = {
            let mut c = self.lock();
            let before = c.control.current();
            c.control = update(&self.policy, &c.control, obs);
            (before, c.control.current())
        };
        if after != before {
            crate::metrics::record_concurrency_limit(&self.registry, after);
            if after > before {
                self.released.notify_waiters();
            } else {
                tracing::debug!(
                    registry = %self.registry,
                    limit = after,
                    ?status,
                    "fewer requests in flight"
                );
            }
        }
    }
}

impl Drop for RequestPermit {
    fn drop(&mut self) {
        self.limiter.lock().in_flight -= 1;
        self.limiter.released.notify_waiters();
    }
}

impl Drop for StreamReservation {
    fn drop(&mut self) {
        self.limiter.lock().streams -= self.count;
        self.limiter.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `fut` is still waiting after the runtime had a moment to run it.
    async fn pending<F: std::future::Future>(fut: F) -> bool {
        tokio::time::timeout(Duration::from_millis(50), fut)
            .await
            .is_err()
    }

    #[tokio::test]
    async fn requests_wait_for_the_limit_and_a_release() {
        let l = Limiter::new("limiter.test:1", 2);
        let a = l.request().await;
        let _b = l.request().await;
        assert!(pending(l.request()).await);
        let waiter = tokio::spawn({
            let l = l.clone();
            async move { l.request().await }
        });
        drop(a);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("a release admits the waiter")
            .unwrap();
    }

    #[tokio::test]
    async fn overload_shrinks_without_cancelling_and_healthy_answers_grow_it_back() {
        let l = Limiter::new("limiter.test:2", 4);
        let held: Vec<_> = futures_util::future::join_all((0..4).map(|_| l.request())).await;
        // Four 429s to requests sent at the old limit: one decrease, 4 → 2.
        for p in &held {
            l.record(p, Some(429), true);
        }
        assert_eq!(l.limit(), 2);
        drop(held);
        let p = l.request().await;
        let q = l.request().await;
        // The limit is 2 now, although 4 were in flight a moment ago.
        assert!(pending(l.request()).await);
        l.record(&p, Some(429), true);
        assert_eq!(l.limit(), 1);
        drop((p, q));
        for _ in 0..40 {
            let p = l.request().await;
            l.record(&p, Some(200), true);
        }
        assert_eq!(l.limit(), 4);
    }

    #[tokio::test]
    async fn reserved_streams_can_always_open_however_low_the_limit_fell() {
        let l = Limiter::new("limiter.test:3", 4);
        // A transfer within this registry reserved a download and an upload...
        let streams = l.reserve(2).await;
        let first = l.request().await;
        // ...then the registry refused twice: the limit is 1.
        l.record(&first, Some(503), true);
        let again = l.request().await;
        l.record(&again, Some(503), true);
        drop(again);
        assert_eq!(l.limit(), 1);
        // The transfer still opens its second request (the download holds the first).
        tokio::time::timeout(Duration::from_secs(5), l.request())
            .await
            .expect("a reserved stream opened under a shrunk limit");
        drop(first);
        // A new transfer waits for the reserved count to come down to the limit...
        assert!(pending(l.reserve(1)).await);
        drop(streams);
        // ...and one needing more than the limit runs once it is alone.
        tokio::time::timeout(Duration::from_secs(5), l.reserve(2))
            .await
            .expect("a transfer alone always gets its streams");
    }
}
