//! How many requests a registry gets at once: additive increase, multiplicative decrease.
//!
//! A registry's real limits are rarely published (ECR's per-action rates, Docker Hub's) and
//! differ by account and by hour, so the configured `max_concurrency` is a ceiling, not a
//! promise. Each registry starts at that ceiling; an answer that says "too much" (429, 503)
//! halves the limit, as does a latency well above what the registry showed when healthy (a
//! registry that queues instead of refusing); every healthy answer adds `1 / limit`, so a full
//! window of healthy answers grows the limit by one, back up to the ceiling. This is TCP's
//! congestion control, applied to requests in flight.
//!
//! Two details keep it from over-reacting. A burst of refusals to requests that were all sent
//! at the old limit is one signal, not eight: a decrease starts a new *epoch*, and only answers
//! to requests sent in the current epoch can decrease again (TCP's once per round trip).
//! Latency is judged against a baseline (the lowest smoothed latency seen, drifting slowly up
//! so a path that became slower for good is accepted), and only when it is both `latency_ratio`
//! times the baseline and `latency_slack` above it: on loopback a 1 ms baseline makes any
//! ratio noise, and the slack is what a real queue at a registry costs.
//!
//! Everything here is plain data and one pure function, [`update`], so the behaviour is
//! table-tested without a clock or a server; [`super::limiter`] applies it to requests.

use std::time::Duration;

/// What one answer says about the registry's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// An answer the registry gave without complaint (2xx, 3xx, 404).
    Healthy,
    /// The registry asked to slow down (429) or is unavailable (503).
    Overloaded,
    /// Anything else (401 handshakes, other errors, no answer): says nothing about load.
    Neutral,
}

impl Signal {
    /// The signal of an answer with `status`, or of no answer (`None`).
    pub fn of(status: Option<u16>) -> Signal {
        match status {
            Some(429 | 503) => Signal::Overloaded,
            Some(s) if s < 400 || s == 404 => Signal::Healthy,
            _ => Signal::Neutral,
        }
    }
}

/// One answer, as the controller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// What the answer says.
    pub signal: Signal,
    /// Time from sending the request to its answer's headers; `None` for requests with a body
    /// (whose time is the upload's) and for answers that are not healthy.
    pub latency: Option<Duration>,
    /// The epoch the request was sent in ([`ControlState::epoch`] when its permit was taken).
    pub epoch: u64,
}

/// How the limit moves (plain data; [`AimdPolicy::for_ceiling`] holds the defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AimdPolicy {
    /// The configured `max_concurrency`: where the limit starts and never goes above.
    pub ceiling: usize,
    /// The limit never goes below this.
    pub floor: usize,
    /// Factor applied on a 429 or 503.
    pub overload_factor: f64,
    /// Factor applied when latency rose.
    pub latency_factor: f64,
    /// Added to the limit over one window of `limit` healthy answers.
    pub increase: f64,
    /// Latency above `baseline × latency_ratio` (and above `baseline + latency_slack`) is a
    /// registry queueing our requests.
    pub latency_ratio: f64,
    /// See `latency_ratio`.
    pub latency_slack: Duration,
    /// Weight of a new latency sample in the smoothed latency.
    pub smoothing: f64,
    /// Fraction of the gap to the smoothed latency the baseline moves up by per sample.
    pub baseline_drift: f64,
}

impl AimdPolicy {
    /// The defaults for a registry whose `max_concurrency` is `ceiling`.
    pub fn for_ceiling(ceiling: usize) -> Self {
        AimdPolicy {
            ceiling: ceiling.max(1),
            floor: 1,
            overload_factor: 0.5,
            latency_factor: 0.75,
            increase: 1.0,
            // A second above a threefold baseline: a registry holding requests in a queue. With
            // 2x and 200 ms, a loopback registry starved of CPU on a loaded 2-core machine
            // (load 20+) tripped it a dozen times per 1,000-tag sync (issue 18 bench).
            latency_ratio: 3.0,
            latency_slack: Duration::from_secs(1),
            smoothing: 0.2,
            baseline_drift: 0.01,
        }
    }

    /// The state a registry starts in: at the ceiling, no latency seen.
    pub fn start(&self) -> ControlState {
        ControlState {
            limit: self.ceiling as f64,
            epoch: 0,
            baseline: None,
            recent: None,
        }
    }
}

/// Where the controller stands for one registry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ControlState {
    /// The limit, fractional so that additive increase can be `1 / limit` per answer.
    pub limit: f64,
    /// Bumped by every decrease.
    pub epoch: u64,
    /// The lowest smoothed latency seen (drifting up slowly), once there is one.
    pub baseline: Option<Duration>,
    /// The smoothed latency of recent healthy answers; reset by a decrease for latency.
    pub recent: Option<Duration>,
}

impl ControlState {
    /// Requests allowed in flight now.
    pub fn current(&self) -> usize {
        // The limit stays within [floor, ceiling], both at least 1.
        (self.limit.floor() as usize).max(1)
    }

    /// Whether the smoothed latency says the registry is queueing.
    fn congested(&self, policy: &AimdPolicy) -> bool {
        match (self.baseline, self.recent) {
            (Some(base), Some(recent)) => {
                recent > base.mul_f64(policy.latency_ratio) && recent > base + policy.latency_slack
            }
            _ => false,
        }
    }
}

/// The state after `obs`, under `policy`.
pub fn update(policy: &AimdPolicy, state: &ControlState, obs: Observation) -> ControlState {
    let mut s = *state;
    let ceiling = policy.ceiling.max(1) as f64;
    let floor = (policy.floor.max(1) as f64).min(ceiling);
    let current_epoch = obs.epoch == s.epoch;
    let decrease = |s: &mut ControlState, factor: f64| {
        s.limit = (s.limit * factor).max(floor);
        s.epoch += 1;
    };
    match obs.signal {
        Signal::Neutral => {}
        Signal::Overloaded => {
            if current_epoch {
                decrease(&mut s, policy.overload_factor);
            }
        }
        Signal::Healthy => {
            if let Some(sample) = obs.latency {
                let recent = match s.recent {
                    None => sample,
                    Some(r) => ewma(r, sample, policy.smoothing),
                };
                s.recent = Some(recent);
                s.baseline = Some(match s.baseline {
                    Some(b) if b <= recent => ewma(b, recent, policy.baseline_drift),
                    _ => recent,
                });
            }
            if s.congested(policy) {
                if current_epoch {
                    decrease(&mut s, policy.latency_factor);
                    // Judge the new limit on answers sent under it.
                    s.recent = None;
                }
            } else {
                s.limit = (s.limit + policy.increase / s.limit.max(1.0)).min(ceiling);
            }
        }
    }
    s
}

/// `old` moved `weight` of the way to `new`.
fn ewma(old: Duration, new: Duration, weight: f64) -> Duration {
    let secs = old.as_secs_f64() + (new.as_secs_f64() - old.as_secs_f64()) * weight;
    Duration::from_secs_f64(secs.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn state(limit: f64, epoch: u64, baseline: Option<u64>, recent: Option<u64>) -> ControlState {
        ControlState {
            limit,
            epoch,
            baseline: baseline.map(ms),
            recent: recent.map(ms),
        }
    }

    fn obs(signal: Signal, latency: Option<u64>, epoch: u64) -> Observation {
        Observation {
            signal,
            latency: latency.map(ms),
            epoch,
        }
    }

    #[test]
    fn signals_from_statuses() {
        let table = [
            (Some(200), Signal::Healthy),
            (Some(201), Signal::Healthy),
            (Some(307), Signal::Healthy),
            (Some(404), Signal::Healthy),
            (Some(429), Signal::Overloaded),
            (Some(503), Signal::Overloaded),
            (Some(401), Signal::Neutral),
            (Some(500), Signal::Neutral),
            (Some(502), Signal::Neutral),
            (None, Signal::Neutral),
        ];
        for (status, want) in table {
            assert_eq!(Signal::of(status), want, "{status:?}");
        }
    }

    /// One row of [`update_table`]: what, before, observation, limit after, epoch after.
    type UpdateCase = (&'static str, ControlState, Observation, f64, u64);

    /// The start, and 429s and 503s: halve once per epoch, never below the floor.
    fn overload_cases(p: &AimdPolicy) -> Vec<UpdateCase> {
        use Signal::*;
        vec![
            (
                "starts at the ceiling and stays there when healthy",
                p.start(),
                obs(Healthy, Some(5), 0),
                8.0,
                0,
            ),
            (
                "a 429 halves the limit and starts an epoch",
                state(8.0, 0, None, None),
                obs(Overloaded, None, 0),
                4.0,
                1,
            ),
            (
                "a 503 too",
                state(6.0, 3, None, None),
                obs(Overloaded, None, 3),
                3.0,
                4,
            ),
            (
                "a 429 to a request sent before the last decrease changes nothing",
                state(4.0, 1, None, None),
                obs(Overloaded, None, 0),
                4.0,
                1,
            ),
            (
                "never below the floor",
                state(1.0, 5, None, None),
                obs(Overloaded, None, 5),
                1.0,
                6,
            ),
        ]
    }

    /// Healthy and neutral answers: grow by 1 / limit up to the ceiling, or hold.
    fn growth_cases() -> Vec<UpdateCase> {
        use Signal::*;
        vec![
            (
                "a healthy answer adds 1 / limit",
                state(4.0, 1, None, None),
                obs(Healthy, None, 1),
                4.25,
                1,
            ),
            (
                "healthy answers from an old epoch count for growth",
                state(2.0, 7, None, None),
                obs(Healthy, None, 3),
                2.5,
                7,
            ),
            (
                "never above the ceiling",
                state(7.95, 1, None, None),
                obs(Healthy, None, 1),
                8.0,
                1,
            ),
            (
                "neutral answers change nothing",
                state(5.0, 2, Some(10), Some(10)),
                obs(Neutral, Some(900), 2),
                5.0,
                2,
            ),
        ]
    }

    /// Latency against the baseline and its slack: grow, or decrease by the latency factor once per epoch.
    fn latency_cases() -> Vec<UpdateCase> {
        use Signal::*;
        vec![
            (
                "latency twice the baseline but within the slack: loopback noise, grows",
                state(4.0, 0, Some(1), Some(1)),
                obs(Healthy, Some(150), 0),
                4.25,
                0,
            ),
            (
                "latency within 3x the baseline but not a second above it: grows",
                state(4.0, 0, Some(50), Some(400)),
                obs(Healthy, Some(400), 0),
                4.25,
                0,
            ),
            (
                "latency far above the baseline and the slack: decrease by the latency factor",
                state(8.0, 0, Some(50), Some(1500)),
                obs(Healthy, Some(1500), 0),
                6.0,
                1,
            ),
            (
                "the same from a request of an older epoch: hold, neither grow nor shrink",
                state(8.0, 2, Some(50), Some(1500)),
                obs(Healthy, Some(1500), 1),
                8.0,
                2,
            ),
        ]
    }

    #[test]
    fn update_table() {
        let p = AimdPolicy::for_ceiling(8);
        let table: Vec<UpdateCase> = [overload_cases(&p), growth_cases(), latency_cases()]
            .into_iter()
            .flatten()
            .collect();
        for (what, before, o, limit, epoch) in &table {
            let after = update(&p, before, *o);
            assert!(
                (after.limit - limit).abs() < 1e-9,
                "{what}: limit {} want {limit}",
                after.limit
            );
            assert_eq!(after.epoch, *epoch, "{what}: epoch");
        }
    }

    #[test]
    fn current_is_the_whole_part_at_least_one() {
        for (limit, want) in [(8.0, 8), (7.99, 7), (1.0, 1), (1.5, 1), (0.2, 1)] {
            assert_eq!(state(limit, 0, None, None).current(), want, "{limit}");
        }
    }

    #[test]
    fn latency_baseline_follows_the_lowest_and_drifts_up_slowly() {
        let p = AimdPolicy::for_ceiling(8);
        let mut s = p.start();
        s = update(&p, &s, obs(Signal::Healthy, Some(100), 0));
        assert_eq!((s.baseline, s.recent), (Some(ms(100)), Some(ms(100))));
        // A faster answer pulls the smoothed latency, and the baseline with it, down.
        s = update(&p, &s, obs(Signal::Healthy, Some(50), 0));
        assert_eq!(s.recent, Some(ms(90)));
        assert_eq!(s.baseline, Some(ms(90)));
        // A slower one moves the baseline only a little of the way.
        s = update(&p, &s, obs(Signal::Healthy, Some(190), 0));
        assert_eq!(s.recent, Some(ms(110)));
        let b = s.baseline.unwrap();
        assert!(b > ms(90) && b < ms(91), "{b:?}");
    }

    #[test]
    fn a_storm_shrinks_to_the_floor_and_healthy_answers_grow_back_to_the_ceiling() {
        let p = AimdPolicy::for_ceiling(8);
        let mut s = p.start();
        // Every answer of the storm refused, each sent in the epoch it was answered in.
        let mut limits = vec![];
        for _ in 0..5 {
            s = update(&p, &s, obs(Signal::Overloaded, None, s.epoch));
            limits.push(s.current());
        }
        assert_eq!(limits, [4, 2, 1, 1, 1]);
        // Back to 8 in about one window per step, 1 + 2 + … + 7 = 28 healthy answers (31: each
        // answer adds 1 / the limit as it already grew).
        let mut answers = 0;
        while s.current() < 8 {
            s = update(&p, &s, obs(Signal::Healthy, Some(5), s.epoch));
            answers += 1;
            assert!(answers <= 31, "not back at the ceiling after {answers}");
        }
        assert_eq!(answers, 31);
    }
}
