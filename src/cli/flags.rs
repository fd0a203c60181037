//! Argument groups shared by several verbs, each flag declared once: the configuration file
//! (positional or `--config`, the same on every verb that reads one) and the registry
//! connection flags, nested by what a verb does with registries. [`ConnectFlags`] reach and
//! authenticate (plain HTTP, Docker's config.json, `--auth HOST=KIND`, timeouts, certs.d);
//! [`ReadFlags`] add the credentials of the one registry read (`inspect`, `ls`);
//! [`DestCreds`] are the credentials of the registries written or checked (`verify` takes
//! them with [`ConnectFlags`] alone); [`RegistryFlags`] are everything a copy takes (`import`,
//! `index create`), read flags, target credentials and the upload chunk size.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use crate::registry::auth::cloud::{AuthChoice, AuthKind};
use crate::registry::auth::{Credentials, Secret};
use crate::registry::connect::Connector;
use crate::registry::http::{CertsD, HttpOptions};

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

/// How to reach and authenticate with registries, whatever the verb does with them.
#[derive(Debug, Args, Clone)]
pub struct ConnectFlags {
    /// Speak plain HTTP to this registry (HOST[:PORT]); loopback registries always do.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Docker config.json to read credentials from [default: $DOCKER_CONFIG/config.json, else
    /// ~/.docker/config.json].
    #[arg(long, value_name = "PATH", env = "CROSSDOCK_DOCKER_CONFIG")]
    pub docker_config: Option<PathBuf>,
    /// How a registry authenticates, HOST=KIND with KIND one of static, ecr, acr, gcp
    /// (repeatable). Default: credentials given or in Docker's config.json, else the cloud of
    /// the host name (*.dkr.ecr.*.amazonaws.com, *.azurecr.io, *-docker.pkg.dev, gcr.io).
    /// Cloud settings come from the environment as the cloud's own tools read them.
    #[arg(long = "auth", value_name = "HOST=KIND", value_parser = parse_auth)]
    pub auth: Vec<(String, AuthKind)>,
    /// Fail a request when the registry sends nothing (or takes none of an upload) for this
    /// many seconds; a slow transfer that keeps moving is never cut off.
    #[arg(long, value_name = "SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub read_timeout: u64,
    /// Look for client certificates and CAs in DIR/HOST[:PORT]/ (*.crt, NAME.cert + NAME.key)
    /// instead of /etc/containers/certs.d and /etc/docker/certs.d; repeat for several roots.
    /// Also CROSSDOCK_CERTS_D (colon-separated).
    #[arg(long = "certs-d", value_name = "DIR")]
    pub certs_d: Vec<PathBuf>,
}

impl ConnectFlags {
    /// A connector with these settings and no credentials given on the command line;
    /// `chunk_size` is the upload chunk size of verbs that push.
    pub(super) fn connector(&self, chunk_size: Option<u64>) -> Connector {
        let mut defaults = HttpOptions {
            chunk_size,
            ..HttpOptions::default()
        };
        defaults.read_timeout = std::time::Duration::from_secs(self.read_timeout);
        if !self.certs_d.is_empty() {
            defaults.certs_d = CertsD::Roots(self.certs_d.clone());
        }
        let mut c = Connector::new(defaults);
        for r in &self.insecure_registry {
            c.add_insecure(r);
        }
        c.set_docker_config(self.docker_config.clone());
        for (host, kind) in &self.auth {
            c.set_auth(host, AuthChoice::from_kind(*kind));
        }
        c
    }
}

/// Connection flags of commands that read from one registry, and of the source side of copies.
#[derive(Debug, Args, Clone)]
pub struct ReadFlags {
    /// Reaching and authenticating with registries.
    #[command(flatten)]
    pub connect: ConnectFlags,
    /// Credentials for the registry read from (the source), USER:PASSWORD (prefer the
    /// environment variable).
    #[arg(
        long,
        value_name = "USER:PASSWORD",
        env = "CROSSDOCK_SRC_CREDS",
        hide_env_values = true
    )]
    pub src_creds: Option<String>,
}

impl ReadFlags {
    /// A connector for reading from `registry`.
    pub fn connector(&self, registry: &str) -> anyhow::Result<Connector> {
        let mut c = self.connect.connector(None);
        self.add_source(&mut c, registry)?;
        Ok(c)
    }

    /// `--src-creds`, if given, for `registry`.
    pub(super) fn add_source(&self, c: &mut Connector, registry: &str) -> anyhow::Result<()> {
        if let Some(creds) = &self.src_creds {
            c.set_credentials(registry, parse_creds(creds).context("--src-creds")?);
        }
        Ok(())
    }
}

/// Credentials of the registries written to (or, for `verify`, checked).
#[derive(Debug, Args, Clone)]
pub struct DestCreds {
    /// Credentials for the target registries, USER:PASSWORD (prefer the environment variable).
    #[arg(
        long,
        value_name = "USER:PASSWORD",
        env = "CROSSDOCK_DEST_CREDS",
        hide_env_values = true
    )]
    pub dest_creds: Option<String>,
}

impl DestCreds {
    /// `--dest-creds`, if given, for each of `targets`.
    pub(super) fn add_targets(&self, c: &mut Connector, targets: &[&str]) -> anyhow::Result<()> {
        if let Some(creds) = &self.dest_creds {
            let creds = parse_creds(creds).context("--dest-creds")?;
            for t in targets {
                c.set_credentials(t, creds.clone());
            }
        }
        Ok(())
    }
}

/// Registry connection flags of the verbs that copy: read flags, target credentials and the
/// upload chunk size.
#[derive(Debug, Args, Clone)]
pub struct RegistryFlags {
    /// Reading the source.
    #[command(flatten)]
    pub read: ReadFlags,
    /// Credentials of the targets.
    #[command(flatten)]
    pub dest: DestCreds,
    /// Upload blobs in chunks of this many bytes instead of one request (for registries or
    /// proxies that limit request size).
    #[arg(long, value_name = "BYTES")]
    pub chunk_size: Option<u64>,
}

impl RegistryFlags {
    /// A connector for these flags; `source` and `targets` name the registries the credentials
    /// flags apply to.
    pub fn connector(&self, source: Option<&str>, targets: &[&str]) -> anyhow::Result<Connector> {
        let mut c = self.read.connect.connector(self.chunk_size);
        if let Some(src) = source {
            self.read.add_source(&mut c, src)?;
        }
        self.dest.add_targets(&mut c, targets)?;
        Ok(c)
    }
}

fn parse_auth(s: &str) -> Result<(String, AuthKind), String> {
    let (host, kind) = s
        .split_once('=')
        .filter(|(h, _)| !h.is_empty())
        .ok_or_else(|| format!("expected HOST=KIND (KIND: {})", AuthKind::NAMES))?;
    Ok((host.to_string(), kind.parse()?))
}

/// `USER:PASSWORD` as Basic credentials.
pub(super) fn parse_creds(s: &str) -> anyhow::Result<Credentials> {
    let (user, pass) = s
        .split_once(':')
        .filter(|(u, _)| !u.is_empty())
        .ok_or_else(|| anyhow::anyhow!("expected USER:PASSWORD"))?;
    Ok(Credentials::Basic {
        username: user.to_string(),
        password: Secret::new(pass),
    })
}
