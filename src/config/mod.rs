//! The daemon's configuration: a TOML file, overridden by `CROSSDOCK_…` environment variables,
//! checked as a whole and turned into a [`Plan`] that the scheduler and copy engine read.
//!
//! Two layers of types, as in ripgrep and linkerd: [`raw`] is what the user wrote (serde, unknown
//! keys refused), [`Plan`] is what the program runs (defaults resolved, regexes compiled,
//! schedules parsed, credentials read). The daemon never sees a raw value, and a plan exists
//! only if *every* check passed: loading reports all problems together, each with its key path
//! and where it was written ([`ConfigErrors`]), so a daemon never starts half-configured and a
//! SIGHUP with a bad file can be refused while the old plan keeps running.
//!
//! Environment overrides: `CROSSDOCK_<KEY>__<KEY>…=value` replaces the value at that key path
//! (steps separated by a double underscore, matched ignoring case and punctuation):
//! `CROSSDOCK_SERVER__LISTEN=0.0.0.0:9090`, `CROSSDOCK_DAEMON__MAX_CONCURRENT_IMAGES=8`,
//! `CROSSDOCK_REGISTRIES__DOCKER_IO__USERNAME=me`, and one rule by name or index:
//! `CROSSDOCK_RULES__ALPINE__SCHEDULE=@hourly`, `CROSSDOCK_RULES__0__TIMEOUT=10m` (index rules
//! alike: `CROSSDOCK_INDEXES__APP_LATEST__SCHEDULE=@hourly`). Values are
//! read like TOML scalars (`true`, `8`, `["a", "b"]`); keys that take text stay text. Variables
//! without `__` (`CROSSDOCK_SHARD`, …) are not configuration keys. A registry not in the file
//! can be added only with its exact name (`CROSSDOCK_REGISTRIES__ghcr.io__USERNAME`, which
//! Kubernetes allows but most shells do not), so prefer a `[registries."host"]` table with
//! `password_env`.
//!
//! Relative paths in the file (`password_file`, `docker_config`, `ca_file`, `client_cert`,
//! `client_key`, `verify_keys`, and `oci:` layout folders in rules) are relative to the file's
//! folder.

mod anchor;
mod cloud;
mod credentials;
mod document;
mod error;
mod fields;
mod indexes;
mod network;
mod notifications;
mod plan;
mod prune;
pub mod raw;
mod shard;
mod steady;
mod tags;
mod trust;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;

pub use document::{ENV_PREFIX, ENV_SEPARATOR};
pub use error::{ConfigError, ConfigErrors, KeyPath, Origin, Segment};
pub use plan::{
    DEFAULT_LISTEN, DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_CONCURRENT_IMAGES, DEFAULT_RETRY_BACKOFF,
    DEFAULT_SCHEDULE, DEFAULT_SHUTDOWN_GRACE, DEFAULT_TIMEOUT, DaemonSettings, Plan,
    RegistrySettings, ServerSettings, Summary,
};
pub use shard::{Shard, ShardError, shard_of};

use error::{Origins, Problems};
use raw::RawConfig;

/// Loads and checks the file at `path` with overrides from the process environment.
pub fn load(path: &Path) -> Result<Plan, ConfigErrors> {
    // `std::env::vars` panics on a variable that is not Unicode; such a variable cannot be an
    // override or a password crossdock could send anyway, so it is skipped.
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    load_with_env(path, env)
}

/// Loads and checks the file at `path` with overrides (and `password_env` values) from `env`.
pub fn load_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Plan, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            origin: Some(Origin::Whole(path.to_path_buf())),
            path: KeyPath::root(),
            message: format!("cannot read the configuration file: {e}"),
        }])
    })?;
    load_str(path, &text, env)
}

/// Loads and checks configuration text as if read from `path` (which places relative paths
/// and names the file in messages).
pub fn load_str(
    path: &Path,
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Plan, ConfigErrors> {
    let env: BTreeMap<String, String> = env.into_iter().collect();
    let mut doc = document::parse(path, text)?;
    let mut env_errors = Vec::new();
    document::apply_env(&mut doc, &env, &mut env_errors);
    let origins: Origins = doc.origins.clone();
    let mut problems = Problems::new(&origins);
    let mut raw: RawConfig = document::extract(&doc, &mut problems);
    anchor::anchor_layouts(&mut raw, path.parent().unwrap_or(Path::new("")));
    let plan = validate::validate(&raw, path, &env, &mut problems);
    match (plan, env_errors.is_empty()) {
        (Some(plan), true) => Ok(plan),
        (plan, _) => {
            let mut errors = env_errors;
            if let Err(ConfigErrors(more)) = problems.into_result(()) {
                errors.extend(more);
            }
            debug_assert!(plan.is_none() || !errors.is_empty());
            // In reading order: the environment's problems, then the file's from top to bottom.
            errors.sort_by_key(|e| match &e.origin {
                Some(Origin::Whole(_)) => (0, String::new(), 0, 0),
                Some(Origin::Env(var)) => (1, var.clone(), 0, 0),
                Some(Origin::File { line, column, .. }) => (2, String::new(), *line, *column),
                None => (3, String::new(), 0, 0),
            });
            Err(ConfigErrors(errors))
        }
    }
}

/// What `crossdock check-config FILE` runs: a full load (environment included, as the daemon
/// would), reduced to a summary.
pub fn check(path: &Path) -> Result<Summary, ConfigErrors> {
    load(path).map(|p| p.summary())
}
