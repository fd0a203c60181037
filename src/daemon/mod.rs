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
mod task;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Plan, Shard};
use crate::copy::{Engine, EngineOptions};
use crate::registry::connect::Connector;
use crate::rule::{Rule, RunContext};
use crate::server::DaemonState;
use events::Events;
pub use task::record;
use task::{RuleTask, rule_loop};

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
        confirmed: None,
    }
}

/// Per-rule locks: a rule never runs twice at once, whichever task (old or reloaded) starts it.
#[derive(Default, Clone)]
pub(crate) struct RuleLocks(Arc<std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>>);

impl RuleLocks {
    pub(crate) fn get(&self, rule: &str) -> Arc<Mutex<()>> {
        self.0
            .lock()
            .expect("rule locks")
            .entry(rule.to_string())
            .or_default()
            .clone()
    }
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
    /// What the rules confirmed at their targets: kept across reloads, lost at a restart.
    confirmed: Arc<crate::rule::Confirmed>,
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
    let mut ctx = context_for(plan, shared.engine.clone());
    ctx.confirmed = Some(shared.confirmed.clone());
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
        // Audits (issue 17): a rule with `audit = "CRON"` re-reads its targets on that schedule.
        if let Rule::Mirror(r) = &rule
            && let Some(s) = &r.audit
        {
            let audit = crate::audit::rule::audit_loop(
                r.clone(),
                s.clone(),
                ctx.connector.clone(),
                stop.clone(),
            );
            tasks.spawn(audit);
        }
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
        confirmed: Arc::default(),
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
