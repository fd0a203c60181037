//! The long-running service: every rule on its schedule, health and metrics served, signals obeyed.
//!
//! Life cycle, in the order Kubernetes expects it:
//! 1. the configuration is loaded and checked *before* any port is bound: a bad file exits with
//!    all its problems and code 2, and the daemon never starts half-configured;
//! 2. the server starts, each rule of this shard (mirror rules and index rules alike, see
//!    [`crate::rule`]) gets a task, and `/readyz` turns true; besides its schedule, a rule's task runs
//!    when a registry notification queues a push for it ([`events`]);
//! 3. SIGHUP loads the file again: a good file replaces the rules (a rule that is running
//!    finishes first — a per-rule lock keeps a rule from ever overlapping itself, across reloads
//!    too), and a rule the file did not have before runs at once, as at start (unless
//!    `run_on_start = false`); a bad file is refused with its errors and the old rules keep
//!    running;
//! 4. SIGTERM or SIGINT: `/readyz` turns false, no new run starts, runs in flight get the grace
//!    period to finish, then the process exits. A run cut off by the deadline leaves no tag on an
//!    incomplete image, because the engine moves tags last.

pub mod events;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Plan, Shard};
use crate::copy::{Engine, EngineOptions};
use crate::registry::connect::Connector;
use crate::rule::{self, Rule, RuleRun, RunContext, RunResult, summary_line};
use crate::server::{DaemonState, RunSummary};
use events::{Events, Queue};

/// Errors that stop the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration has problems (all of them listed).
    #[error("configuration {path} has problems:\n{errors}")]
    Config {
        /// The file.
        path: PathBuf,
        /// Every problem.
        errors: config::ConfigErrors,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("installing signal handlers: {0}")]
    Signals(#[source] std::io::Error),
}

/// Builds the transports for a plan: configured registries get their settings, others the
/// defaults (credentials then come from Docker's config.json).
pub fn connector_for(plan: &Plan) -> Connector {
    let mut c = Connector::new(config::RegistrySettings::default().http_options(""));
    for name in plan.configured_registries() {
        c.set_registry(name, plan.registry_options(name).http_options(name));
    }
    c
}

/// The context rules of `plan` run in.
pub fn context_for(plan: &Plan, engine: Engine) -> RunContext {
    let reserves: HashMap<String, u32> = plan
        .configured_registries()
        .map(|r| (r.to_string(), plan.registry_options(r).ratelimit_reserve))
        .collect();
    RunContext {
        engine,
        connector: Arc::new(connector_for(plan)),
        image_concurrency: plan.daemon.max_concurrent_images,
        ratelimit_reserve: Arc::new(move |r| reserves.get(r).copied().unwrap_or(0)),
        observer: None,
    }
}

/// Records a finished run in `/status` and the metrics.
pub fn record(state: &DaemonState, run: &RuleRun, started: chrono::DateTime<Utc>) {
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
    let summary = RunSummary {
        started,
        seconds: run.seconds,
        result: run.result.as_str().to_string(),
        images: run.counts.total(),
        images_copied: run.counts.copied + run.counts.would_copy,
        images_failed: run.counts.failed,
        errors: run.problems().take(10).collect(),
    };
    state.update(&run.rule, |st| {
        st.running = false;
        if run.result == RunResult::Ok {
            st.last_success = Some(finished);
        }
        st.last_run = Some(summary);
    });
}

/// Per-rule locks: a rule never runs twice at once, whichever task (old or reloaded) starts it.
#[derive(Default, Clone)]
struct RuleLocks(Arc<std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>>);

impl RuleLocks {
    fn get(&self, rule: &str) -> Arc<Mutex<()>> {
        self.0
            .lock()
            .expect("rule locks")
            .entry(rule.to_string())
            .or_default()
            .clone()
    }
}

/// When a rule runs next on its schedule (jitter included), from now.
fn next_scheduled(rule: &Rule, jitter: Duration) -> Option<chrono::DateTime<Utc>> {
    rule.schedule()
        .next_after(Utc::now())
        .map(|t| t + random_jitter(jitter))
}

/// What one rule's task needs.
struct RuleTask {
    rule: Rule,
    ctx: RunContext,
    state: Arc<DaemonState>,
    /// Cancelled when the configuration is replaced or the daemon stops.
    stop: CancellationToken,
    /// Run once at once (`run_on_start`, at daemon start or for a rule a reload added).
    run_now: bool,
    jitter: Duration,
    locks: RuleLocks,
    /// Pushes queued for this rule by registry notifications.
    queue: Arc<Queue>,
}

/// One rule's loop until `stop`: wait for the next scheduled time or a queued push, take the
/// rule's lock, run (the whole rule when its time has come, else the pushed images), record.
/// A push queued during a run is seen as soon as the run ends (see [`events`]).
async fn rule_loop(task: RuleTask) {
    let RuleTask {
        rule,
        ctx,
        state,
        stop,
        run_now,
        jitter,
        locks,
        queue,
    } = task;
    let name = rule.name().to_string();
    let mut wake = queue.subscribe();
    let mut next = if run_now {
        Some(Utc::now())
    } else {
        next_scheduled(&rule, jitter)
    };
    if next.is_none() {
        tracing::info!(rule = %name, "schedule has no further run; the rule runs on registry notifications only");
    }
    loop {
        state.update(&name, |st| st.next_run = next);
        // Seen before looking at the queue, so that a push queued after the look still wakes.
        wake.borrow_and_update();
        let mut due = false;
        if !queue.has_pending() {
            let wait = next.map(|t| (t - Utc::now()).to_std().unwrap_or_default());
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = async {
                    match wait {
                        Some(w) => tokio::time::sleep(w).await,
                        None => std::future::pending().await,
                    }
                } => due = true,
                // Never an error: this task holds the queue, and with it the sender.
                _ = wake.changed() => {}
            }
        }
        let lock = locks.get(&name);
        let _guard = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            g = lock.lock() => g,
        };
        if stop.is_cancelled() {
            return;
        }
        due = due || next.is_some_and(|t| t <= Utc::now());
        // A whole run reads every source afresh, so it answers every push queued before it.
        let pushed = queue.take();
        if let Some(p) = &pushed {
            rule.settle(p, &ctx).await;
        }
        let started = Utc::now();
        state.update(&name, |st| st.running = true);
        let run = if due {
            next = next_scheduled(&rule, jitter);
            tracing::info!(rule = %name, "run starting");
            rule.run(&ctx, false).await
        } else if let Some(p) = pushed {
            tracing::info!(rule = %name, pushed = %rule::pushed::describe(&p), "run starting for pushed images");
            match rule.run_pushed(p, &ctx).await {
                Some(run) => run,
                None => {
                    state.update(&name, |st| st.running = false);
                    continue;
                }
            }
        } else {
            state.update(&name, |st| st.running = false);
            continue;
        };
        tracing::info!(rule = %name, result = run.result.as_str(), "{}", summary_line(&run));
        for e in run.problems() {
            tracing::warn!(rule = %name, "{e}");
        }
        record(&state, &run, started);
    }
}

fn random_jitter(max: Duration) -> chrono::Duration {
    if max.is_zero() {
        return chrono::Duration::zero();
    }
    let ms = rand::random_range(0..=max.as_millis() as u64);
    chrono::Duration::milliseconds(ms as i64)
}

/// A running set of rule tasks for one plan.
struct Generation {
    stop: CancellationToken,
}

/// What every generation of rule tasks shares with the process.
struct Shared {
    engine: Engine,
    state: Arc<DaemonState>,
    locks: RuleLocks,
    events: Arc<Events>,
}

/// Starts a task per rule of `plan` in `shard`. With `run_on_start`, a rule runs at once when
/// the daemon starts, and after a reload when it is new (`previous`, the plan it replaces, has
/// no rule of that name): a rule added with SIGHUP does not wait for its first scheduled time.
fn start_generation(
    plan: &Plan,
    shard: Shard,
    shared: &Shared,
    tasks: &mut JoinSet<()>,
    previous: Option<&Plan>,
) -> Generation {
    let ctx = context_for(plan, shared.engine.clone());
    let rules = plan.rules_in(shard);
    shared.state.set_rules(
        rules
            .iter()
            .map(|r| (r.name().to_string(), r.schedule().to_string())),
    );
    shared
        .events
        .configure(plan.server.notifications_token.clone(), rules.clone());
    let stop = CancellationToken::new();
    for rule in rules {
        let queue = shared.events.queue(rule.name());
        let new = previous.is_none_or(|p| p.rule_named(rule.name()).is_none());
        tasks.spawn(rule_loop(RuleTask {
            rule,
            ctx: ctx.clone(),
            state: shared.state.clone(),
            stop: stop.clone(),
            run_now: new && plan.daemon.run_on_start,
            jitter: plan.daemon.jitter,
            locks: shared.locks.clone(),
            queue,
        }));
    }
    Generation { stop }
}

/// Runs the daemon until SIGTERM/SIGINT. Returns the exit code.
pub async fn run(config_path: &Path, shard: Shard) -> Result<u8, DaemonError> {
    use tokio::signal::unix::{SignalKind, signal};

    let plan = config::load(config_path).map_err(|errors| DaemonError::Config {
        path: config_path.to_path_buf(),
        errors,
    })?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    let listener = tokio::net::TcpListener::bind(plan.server.listen)
        .await
        .map_err(|source| DaemonError::Listen {
            addr: plan.server.listen,
            source,
        })?;
    let state = Arc::new(DaemonState::default());
    state.set_shard((shard.count() > 1).then(|| format!("{}/{}", shard.index(), shard.count())));
    let server_stop = CancellationToken::new();
    let events = Arc::new(Events::default());
    let server = {
        let app = crate::server::router(state.clone()).merge(events::router(events.clone()));
        let stop = server_stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        })
    };
    tracing::info!(listen = %plan.server.listen, rules = plan.rules.len(), indexes = plan.indexes.len(), notifications = plan.server.notifications_token.is_some(), shard = %format!("{}/{}", shard.index(), shard.count()), "crossdock daemon started");

    let engine = Engine::new(EngineOptions {
        max_concurrent_images: plan.daemon.max_concurrent_images,
        ..EngineOptions::default()
    });
    let shared = Shared {
        engine,
        state: state.clone(),
        locks: RuleLocks::default(),
        events,
    };
    let mut tasks = JoinSet::new();
    let mut current_plan = plan;
    let mut generation = start_generation(&current_plan, shard, &shared, &mut tasks, None);
    state.set_ready(true);

    loop {
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = sighup.recv() => {
                match config::load(config_path) {
                    Ok(new_plan) => {
                        if new_plan.server.listen != current_plan.server.listen {
                            tracing::warn!("server.listen changed: takes effect at the next restart");
                        }
                        generation.stop.cancel();
                        generation = start_generation(
                            &new_plan,
                            shard,
                            &shared,
                            &mut tasks,
                            Some(&current_plan),
                        );
                        tracing::info!(rules = new_plan.rules.len(), indexes = new_plan.indexes.len(), "configuration reloaded");
                        current_plan = new_plan;
                    }
                    Err(errors) => {
                        tracing::error!("configuration reload refused; the previous configuration keeps running:\n{errors}");
                    }
                }
            }
        }
    }

    state.set_ready(false);
    generation.stop.cancel();
    let grace = current_plan.daemon.shutdown_grace;
    let drained = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
        .await
        .is_ok();
    if !drained {
        tracing::warn!(
            "runs still in flight after the {} grace period were stopped; no tag was moved onto an incomplete image",
            humantime::format_duration(grace)
        );
        tasks.abort_all();
    }
    server_stop.cancel();
    let _ = server.await;
    Ok(0)
}
