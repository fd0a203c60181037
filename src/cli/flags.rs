//! Argument groups shared by several verbs that are not registry connection flags: the
//! configuration file (positional or `--config`, the same on every verb that reads one) and the
//! flags of read-only commands (`inspect`, `ls`), which take no target credentials and upload
//! nothing, so offer neither.

use std::path::PathBuf;

use clap::Args;

use super::RegistryFlags;

/// Heading of the options every verb takes (`--log-level`, `--log-format`).
pub(super) const GLOBAL_HEADING: &str = "Global options";

/// The configuration file of `run`, `sync` and `check-config`: `crossdock run FILE` and
/// `crossdock run --config FILE` both work (as does CROSSDOCK_CONFIG).
#[derive(Debug, Args, Clone)]
pub struct ConfigArg {
    /// The configuration file (TOML; CROSSDOCK_… variables override it).
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    /// The same, as an option.
    #[arg(
        long = "config",
        short = 'c',
        value_name = "FILE",
        env = "CROSSDOCK_CONFIG"
    )]
    flag: Option<PathBuf>,
}

impl ConfigArg {
    /// The file given; an error to print when none was, or two different ones.
    pub fn file(&self) -> Result<PathBuf, String> {
        match (&self.file, &self.flag) {
            (Some(a), Some(b)) if a != b => Err(format!(
                "two configuration files given, {} and --config {}: give one",
                a.display(),
                b.display()
            )),
            (Some(p), _) | (None, Some(p)) => Ok(p.clone()),
            (None, None) => Err(
                "give the configuration file: FILE or --config FILE (or CROSSDOCK_CONFIG), \
                 e.g. config.example.toml"
                    .to_string(),
            ),
        }
    }
}

/// Connection flags of commands that only read from one registry.
#[derive(Debug, Args, Clone, Default)]
pub struct ReadFlags {
    /// Speak plain HTTP to this registry (HOST[:PORT]); loopback registries always do.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Docker config.json to read credentials from [default: $DOCKER_CONFIG/config.json, else
    /// ~/.docker/config.json].
    #[arg(long, value_name = "PATH", env = "CROSSDOCK_DOCKER_CONFIG")]
    pub docker_config: Option<PathBuf>,
    /// Credentials for the registry, USER:PASSWORD (prefer the environment variable).
    #[arg(
        long,
        value_name = "USER:PASSWORD",
        env = "CROSSDOCK_SRC_CREDS",
        hide_env_values = true
    )]
    pub src_creds: Option<String>,
    /// Fail a request when the registry sends nothing for this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub read_timeout: u64,
    /// Look for client certificates and CAs in DIR/HOST[:PORT]/ (*.crt, NAME.cert + NAME.key)
    /// instead of /etc/containers/certs.d and /etc/docker/certs.d; repeat for several roots.
    /// Also CROSSDOCK_CERTS_D (colon-separated).
    #[arg(long = "certs-d", value_name = "DIR")]
    pub certs_d: Vec<PathBuf>,
}

impl ReadFlags {
    /// A connector for reading from `registry`.
    pub fn connector(&self, registry: &str) -> anyhow::Result<crate::registry::connect::Connector> {
        RegistryFlags {
            insecure_registry: self.insecure_registry.clone(),
            docker_config: self.docker_config.clone(),
            src_creds: self.src_creds.clone(),
            read_timeout: self.read_timeout,
            certs_d: self.certs_d.clone(),
            ..RegistryFlags::default()
        }
        .connector(Some(registry), &[])
    }
}
