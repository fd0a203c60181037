//! `crossdock run` (the daemon), `crossdock sync` (every rule once) and `crossdock check-config`.

use std::path::PathBuf;

use clap::Args;
use futures_util::{StreamExt, stream};

use super::{ConfigArg, EXIT_FAILURE, EXIT_USAGE};
use crate::config::{self, Shard};
use crate::copy::{Engine, EngineOptions};
use crate::daemon::{self, DaemonError};
use crate::rule::{ImageOutcome, Rule, RunResult};

/// Shard selection shared by `run` and `sync`.
#[derive(Debug, Args, Clone)]
pub struct ShardArgs {
    /// Take only this share of the rules, INDEX/COUNT (0-based). Also from CROSSDOCK_SHARD, or
    /// CROSSDOCK_SHARD_COUNT with CROSSDOCK_SHARD_INDEX (a number or `hostname` for a
    /// StatefulSet ordinal) or JOB_COMPLETION_INDEX (a Kubernetes Indexed Job).
    #[arg(long, value_name = "INDEX/COUNT")]
    pub shard: Option<String>,
}

impl ShardArgs {
    fn resolve(&self) -> Result<Shard, String> {
        match &self.shard {
            Some(s) => Shard::parse(s).map_err(|e| format!("--shard: {e}")),
            None => Shard::from_env(|k| std::env::var(k).ok())
                .map(|s| s.unwrap_or(Shard::ALL))
                .map_err(|e| e.to_string()),
        }
    }
}

/// Arguments of `run`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crossdock run config.example.toml
  crossdock run --config /etc/crossdock/config.toml --shard 0/3
  CROSSDOCK_SERVER__LISTEN=0.0.0.0:9090 crossdock run config.toml")]
pub struct RunArgs {
    /// The configuration file.
    #[command(flatten)]
    pub config: ConfigArg,
    /// Shard selection.
    #[command(flatten)]
    pub shard: ShardArgs,
}

/// Arguments of `sync`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crossdock sync config.example.toml --rule hello
  crossdock sync --config config.toml --dry-run
  crossdock sync config.toml --prune --dry-run
  crossdock sync config.toml --json > report.json")]
pub struct SyncArgs {
    /// The configuration file.
    #[command(flatten)]
    pub config: ConfigArg,
    /// Run only this rule.
    #[arg(long, value_name = "NAME")]
    pub rule: Option<String>,
    /// Show what would be copied (and, with --prune, deleted); write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Prune every rule run: delete target tags whose source tag is gone (within each rule's
    /// prune_limit), as `prune = true` does.
    #[arg(long)]
    pub prune: bool,
    /// Print a JSON report.
    #[arg(long)]
    pub json: bool,
    /// Shard selection.
    #[command(flatten)]
    pub shard: ShardArgs,
}

/// Arguments of `check-config`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crossdock check-config config.example.toml
  crossdock check-config --config /etc/crossdock/config.toml
  CROSSDOCK_RULES__ALPINE__SCHEDULE=@hourly crossdock check-config config.toml")]
pub struct CheckArgs {
    /// The configuration file.
    #[command(flatten)]
    pub config: ConfigArg,
}

/// The configuration file given, or `None` after printing why there is none.
fn config_file(arg: &ConfigArg) -> Option<PathBuf> {
    arg.file().map_err(|e| eprintln!("error: {e}")).ok()
}

/// Runs the daemon.
pub(super) async fn run(args: RunArgs) -> anyhow::Result<u8> {
    let Some(config) = config_file(&args.config) else {
        return Ok(EXIT_USAGE);
    };
    let shard = match args.shard.resolve() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(EXIT_USAGE);
        }
    };
    match daemon::run(&config, shard).await {
        Ok(code) => Ok(code),
        Err(e @ DaemonError::Config { .. }) => {
            eprintln!("error: {e}");
            Ok(EXIT_USAGE)
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs every rule (of this shard, or one) once.
pub(super) async fn sync(args: SyncArgs) -> anyhow::Result<u8> {
    let Some(config) = config_file(&args.config) else {
        return Ok(EXIT_USAGE);
    };
    let shard = match args.shard.resolve() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(EXIT_USAGE);
        }
    };
    let plan = match config::load(&config) {
        Ok(p) => p,
        Err(errors) => {
            eprintln!(
                "error: configuration {} has problems:\n{errors}",
                config.display()
            );
            return Ok(EXIT_USAGE);
        }
    };
    // Mirror rules and index rules alike.
    let rules: Vec<Rule> = match &args.rule {
        Some(name) => match plan.rule_named(name) {
            Some(r) => vec![r],
            None => {
                eprintln!(
                    "error: no rule named {name:?} in {}; rules: {}",
                    config.display(),
                    plan.all_rules()
                        .map(|r| r.name().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                return Ok(EXIT_USAGE);
            }
        },
        None => plan.rules_in(shard),
    };
    let rules: Vec<Rule> = rules
        .into_iter()
        .map(|r| match r {
            Rule::Mirror(mut m) if args.prune => {
                m.prune.enabled = true;
                Rule::Mirror(m)
            }
            other => other,
        })
        .collect();
    if args.prune && refuse_shared_targets(&plan, &rules) {
        return Ok(EXIT_USAGE);
    }
    let engine = Engine::new(EngineOptions {
        max_concurrent_images: plan.daemon.max_concurrent_images,
        ..EngineOptions::default()
    });
    let mut ctx = daemon::context_for(&plan, engine);
    // The JSON report lists every image; the runs themselves keep only counts and failures.
    type Seen = std::sync::Mutex<std::collections::HashMap<String, Vec<ImageOutcome>>>;
    let seen: std::sync::Arc<Seen> = Default::default();
    let report = super::sync_report::SyncReport::default();
    if !args.json {
        ctx.observer = Some(report.observer());
    } else {
        let seen = seen.clone();
        ctx.observer = Some(std::sync::Arc::new(move |rule: &str, o: &ImageOutcome| {
            let mut seen = seen.lock().expect("seen lock");
            seen.entry(rule.to_string()).or_default().push(o.clone());
        }));
    }
    // Rules run side by side; the engine's limits bound the total work.
    let runs: Vec<_> = stream::iter(&rules)
        .map(|rule| rule.run(&ctx, args.dry_run))
        .buffer_unordered(4)
        .collect()
        .await;
    let ok = runs.iter().all(|r| r.result == RunResult::Ok);
    if args.json {
        let mut seen = seen.lock().expect("seen lock");
        let mut docs = Vec::new();
        for run in &runs {
            let mut doc = serde_json::to_value(run)?;
            doc["images"] = serde_json::to_value(seen.remove(&run.rule).unwrap_or_default())?;
            docs.push(doc);
        }
        println!("{}", serde_json::to_string_pretty(&docs)?);
    } else {
        for run in &runs {
            print!("{}", report.render(run));
        }
    }
    Ok(if ok { 0 } else { EXIT_FAILURE })
}

/// Checks a configuration file.
pub(super) fn check_config(args: CheckArgs) -> anyhow::Result<u8> {
    let Some(config) = config_file(&args.config) else {
        return Ok(EXIT_USAGE);
    };
    match config::check(&config) {
        Ok(summary) => {
            println!("{}: ok ({summary})", config.display());
            Ok(0)
        }
        Err(errors) => {
            eprintln!(
                "{}: {} problem(s):\n{errors}",
                config.display(),
                errors.len()
            );
            Ok(EXIT_USAGE)
        }
    }
}

/// `sync --prune` prunes every rule it runs: says, for each of them, where another rule fills
/// its target from another source (which the configuration refuses for `prune = true`, see
/// [`crate::rule::shared_targets`]); whether any did.
fn refuse_shared_targets(plan: &config::Plan, running: &[Rule]) -> bool {
    let names: std::collections::HashSet<&str> = running.iter().map(Rule::name).collect();
    let all: Vec<&crate::rule::RulePlan> = plan.rules.iter().collect();
    let found =
        crate::rule::shared_targets(&all, &plan.indexes, &|r| names.contains(r.name.as_str()));
    for shared in &found {
        eprintln!(
            "error: --prune: {}",
            shared.message("give each rule its own target repository, or leave out --prune")
        );
    }
    !found.is_empty()
}
