//! One rule's task: when it runs (its schedule, pushes queued for it, retries after a failed
//! run), the run itself under the rule's lock, and what is recorded of it.
//!
//! Retries. A failed run (an image or a source failed, or the time limit passed) is tried
//! again after the rule's `retry_backoff` (30 s by default), then twice that after another
//! failure, and so on — but never at or past the next scheduled run, which retries anyway.
//! A registry that is down for a minute therefore costs a minute of mirroring, not a schedule
//! period. `/status` shows the consecutive failures and the next retry, and the
//! `crossdock_rule_consecutive_failures` gauge counts them; both survive a reload, as the
//! rule's name does.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::RuleLocks;
use super::events::Queue;
use crate::rule::{self, Rule, RuleRun, RunContext, RunResult, summary_line};
use crate::server::{DaemonState, RunSummary};

/// Records a finished run in `/status` and the metrics.
pub fn record(state: &DaemonState, run: &RuleRun, started: DateTime<Utc>) {
    let finished = Utc::now();
    crate::metrics::record_run(
        &run.rule,
        run.result.as_str(),
        run.seconds,
        finished.timestamp(),
    );
    for (label, n) in run.counts.by_label() {
        crate::metrics::record_rule_images(&run.rule, label, n);
    }
    crate::metrics::record_rule_pruned(&run.rule, run.counts.pruned);
    let summary = RunSummary {
        started,
        seconds: run.seconds,
        result: run.result.as_str().to_string(),
        images: run.counts.total(),
        images_copied: run.counts.copied + run.counts.would_copy,
        images_failed: run.counts.failed,
        errors: run.problems().take(10).collect(),
        pruned: run.pruned.clone(),
        counts: run.counts,
    };
    state.update(&run.rule, |st| {
        st.running = false;
        if run.result == RunResult::Ok {
            st.last_success = Some(finished);
        }
        st.last_run = Some(summary);
    });
}

/// Consecutive failed runs of a rule and when it is tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Backoff {
    /// The first wait; zero: no retries.
    base: Duration,
    /// Failed runs since the last good one.
    pub(super) failures: u32,
    /// When the next retry runs, if one is due before the next scheduled run.
    pub(super) retry_at: Option<DateTime<Utc>>,
}

impl Backoff {
    /// The longest wait between retries, whatever the base and the failures.
    const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

    pub(super) fn new(base: Duration) -> Backoff {
        Backoff {
            base,
            failures: 0,
            retry_at: None,
        }
    }

    /// Takes in a run's result at `now`: a good run clears the failures; a failed one sets
    /// the next retry at `base × 2^(failures − 1)` from now, unless that is not before
    /// `next_run` (the schedule then tries again first).
    pub(super) fn after(
        &mut self,
        result: RunResult,
        now: DateTime<Utc>,
        next_run: Option<DateTime<Utc>>,
    ) {
        if result == RunResult::Ok {
            self.failures = 0;
            self.retry_at = None;
            return;
        }
        self.failures = self.failures.saturating_add(1);
        let factor = 2u32.saturating_pow(self.failures - 1);
        let wait = self.base.saturating_mul(factor).min(Self::MAX_WAIT);
        let at = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
        self.retry_at = (!self.base.is_zero() && next_run.is_none_or(|n| at < n)).then_some(at);
    }

    fn publish(&self, rule: &str, state: &DaemonState) {
        // Metrics first, as in `record`: once `/status` shows it, `/metrics` does too.
        crate::metrics::set_consecutive_failures(rule, self.failures);
        state.update(rule, |st| {
            st.consecutive_failures = self.failures;
            st.next_retry = self.retry_at;
        });
    }
}

/// When a rule runs next on its schedule (jitter included), from now.
fn next_scheduled(rule: &Rule, jitter: Duration) -> Option<DateTime<Utc>> {
    rule.schedule()
        .next_after(Utc::now())
        .map(|t| t + random_jitter(jitter))
}

fn random_jitter(max: Duration) -> chrono::Duration {
    if max.is_zero() {
        return chrono::Duration::zero();
    }
    let ms = rand::random_range(0..=max.as_millis() as u64);
    chrono::Duration::milliseconds(ms as i64)
}

/// What one rule's task needs.
pub(super) struct RuleTask {
    pub(super) rule: Rule,
    pub(super) ctx: RunContext,
    pub(super) state: Arc<DaemonState>,
    /// Cancelled when the configuration is replaced or the daemon stops.
    pub(super) stop: CancellationToken,
    /// Run once at once (`run_on_start`, at daemon start or for a rule a reload added).
    pub(super) run_now: bool,
    pub(super) jitter: Duration,
    pub(super) locks: RuleLocks,
    /// Pushes queued for this rule by registry notifications.
    pub(super) queue: Arc<Queue>,
}

/// What woke the task.
enum Wake {
    /// The scheduled time or the retry time came (or both).
    Time,
    /// A push was queued.
    Push,
    /// The task must end.
    Stop,
}

/// Waits until the earliest of `next` and `retry` or a queued push.
async fn wait(task: &RuleTask, next: Option<DateTime<Utc>>, retry: Option<DateTime<Utc>>) -> Wake {
    let mut wake = task.queue.subscribe();
    // Seen before looking at the queue, so that a push queued after the look still wakes.
    wake.borrow_and_update();
    if task.queue.has_pending() {
        return Wake::Push;
    }
    let at = match (next, retry) {
        (Some(n), Some(r)) => Some(n.min(r)),
        (n, r) => n.or(r),
    };
    let sleep = at.map(|t| (t - Utc::now()).to_std().unwrap_or_default());
    tokio::select! {
        biased;
        _ = task.stop.cancelled() => Wake::Stop,
        _ = async {
            match sleep {
                Some(w) => tokio::time::sleep(w).await,
                None => std::future::pending().await,
            }
        } => Wake::Time,
        // Never an error: this task holds the queue, and with it the sender.
        _ = wake.changed() => Wake::Push,
    }
}

/// One rule's loop until `stop`: wait for the next scheduled time, a retry or a queued push,
/// take the rule's lock, run (the whole rule when its time or its retry has come, else the
/// pushed images), record. A push queued during a run is seen as soon as the run ends (see
/// [`super::events`]).
pub(super) async fn rule_loop(task: RuleTask) {
    let name = task.rule.name().to_string();
    let mut next = if task.run_now {
        Some(Utc::now())
    } else {
        next_scheduled(&task.rule, task.jitter)
    };
    if next.is_none() {
        tracing::info!(rule = %name, "schedule has no further run; the rule runs on registry notifications only");
    }
    // Failures carried over from the task this one replaces (a reload).
    let mut backoff = Backoff::new(task.rule.retry_backoff());
    if let Some(st) = task.state.rule(&name) {
        backoff.failures = st.consecutive_failures;
        backoff.retry_at = st.next_retry.filter(|_| backoff.failures > 0);
    }
    loop {
        task.state.update(&name, |st| st.next_run = next);
        if let Wake::Stop = wait(&task, next, backoff.retry_at).await {
            return;
        }
        let lock = task.locks.get(&name);
        let _guard = tokio::select! {
            biased;
            _ = task.stop.cancelled() => return,
            g = lock.lock() => g,
        };
        if task.stop.is_cancelled() {
            return;
        }
        let now = Utc::now();
        let scheduled = next.is_some_and(|t| t <= now);
        let retry = backoff.retry_at.is_some_and(|t| t <= now);
        if scheduled {
            next = next_scheduled(&task.rule, task.jitter);
        }
        let started = Utc::now();
        task.state.update(&name, |st| st.running = true);
        let Some(run) = run_once(&task, scheduled, retry, backoff.failures).await else {
            task.state.update(&name, |st| st.running = false);
            continue;
        };
        tracing::info!(rule = %name, result = run.result.as_str(), "{}", summary_line(&run));
        // Problems outside any image are on the summary line.
        for e in run.image_problems() {
            tracing::warn!(rule = %name, "{e}");
        }
        record(&task.state, &run, started);
        backoff.after(run.result, Utc::now(), next);
        if let Some(at) = backoff.retry_at {
            tracing::info!(rule = %name, failures = backoff.failures, retry_at = %at, "run failed; retrying before the next scheduled run");
        }
        backoff.publish(&name, &task.state);
    }
}

/// The run the wake-up asks for: the whole rule when its time or its retry came, else the
/// pushed images; `None` when there is nothing to do. A whole run reads every source afresh,
/// so it answers every push queued before it.
async fn run_once(task: &RuleTask, scheduled: bool, retry: bool, failures: u32) -> Option<RuleRun> {
    let name = task.rule.name();
    let pushed = task.queue.take();
    if let Some(p) = &pushed {
        task.rule.settle(p, &task.ctx).await;
    }
    if scheduled || retry {
        if scheduled {
            tracing::info!(rule = %name, "run starting");
        } else {
            tracing::info!(rule = %name, failures, "retry starting");
        }
        return Some(task.rule.run(&task.ctx, false).await);
    }
    let p = pushed?;
    tracing::info!(rule = %name, pushed = %rule::pushed::describe(&p), "run starting for pushed images");
    task.rule.run_pushed(p, &task.ctx).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_and_stops_short_of_the_schedule() {
        let now = Utc::now();
        let s = |n: i64| now + chrono::Duration::seconds(n);
        let mut b = Backoff::new(Duration::from_secs(30));
        let hour = Some(s(3600));
        b.after(RunResult::Failed, now, hour);
        assert_eq!((b.failures, b.retry_at), (1, Some(s(30))));
        b.after(RunResult::Timeout, now, hour);
        assert_eq!((b.failures, b.retry_at), (2, Some(s(60))));
        b.after(RunResult::Failed, now, hour);
        assert_eq!(b.retry_at, Some(s(120)));
        for _ in 0..4 {
            b.after(RunResult::Failed, now, hour);
        }
        assert_eq!((b.failures, b.retry_at), (7, Some(s(30 * 64))));
        // 30 s × 2^7 = 64 min: past the next run, which retries anyway.
        b.after(RunResult::Failed, now, hour);
        assert_eq!((b.failures, b.retry_at), (8, None));
        // A rule without a further scheduled run (notifications only) still retries.
        b.after(RunResult::Failed, now, None);
        assert_eq!(b.retry_at, Some(s(30 * 256)));
        b.after(RunResult::Ok, now, hour);
        assert_eq!((b.failures, b.retry_at), (0, None));
        // A zero base turns retries off; failures are still counted.
        let mut off = Backoff::new(Duration::ZERO);
        off.after(RunResult::Failed, now, hour);
        assert_eq!((off.failures, off.retry_at), (1, None));
        // Never overflows, never waits more than a day.
        let mut long = Backoff::new(Duration::from_secs(30));
        for _ in 0..100 {
            long.after(RunResult::Failed, now, None);
        }
        assert_eq!(long.retry_at, Some(s(24 * 3600)));
    }
}
