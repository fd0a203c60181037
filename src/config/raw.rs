//! The configuration as the user wrote it: serde types that mirror the TOML, nothing resolved.
//!
//! Every struct denies unknown keys (so a typo is an error, not a silently ignored setting),
//! and every field is optional at this layer: whether a key is required, and what its default
//! is, is decided in validation, which can then report *all* missing keys at once instead of
//! serde's first. Strings that need parsing (durations, cron lines, regexes, references) stay
//! strings here; validation parses them and reports each failure with its key path.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::rule::OnConflict;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[server]`
    pub server: Option<RawServer>,
    /// `[daemon]`
    pub daemon: Option<RawDaemon>,
    /// `[defaults]`
    pub defaults: Option<RawDefaults>,
    /// `[registries."host"]`
    pub registries: Option<BTreeMap<String, RawRegistry>>,
    /// `[[rules]]`
    pub rules: Option<Vec<RawRule>>,
    /// `[[indexes]]`
    pub indexes: Option<Vec<RawIndex>>,
}

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address for health, readiness, status and metrics.
    pub listen: Option<String>,
    /// Bearer token registries send to `/notifications`, written inline.
    pub notifications_token: Option<RawSecret>,
    /// File holding that token.
    pub notifications_token_file: Option<PathBuf>,
    /// Environment variable holding that token.
    pub notifications_token_env: Option<String>,
}

/// `[daemon]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    /// Images copied at once across all rules.
    pub max_concurrent_images: Option<u32>,
    /// Run every rule once at start.
    pub run_on_start: Option<bool>,
    /// How long work in flight may finish after SIGTERM.
    pub shutdown_grace: Option<String>,
    /// Up to this random delay before each scheduled run.
    pub jitter: Option<String>,
}

/// `[defaults]`: values for rules that do not set them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    /// `os/arch[/variant]` list; empty means all.
    pub platforms: Option<Vec<String>>,
    /// Copy referrers.
    pub referrers: Option<bool>,
    /// What to do when the target tag differs.
    pub on_conflict: Option<OnConflict>,
    /// Cron line or `@every`.
    pub schedule: Option<String>,
    /// Time limit per run.
    pub timeout: Option<String>,
    /// First wait before a failed run is retried (doubling).
    pub retry_backoff: Option<String>,
    /// Backup tag template used before moving a tag.
    pub backup_tag: Option<String>,
}

/// A password as written in the file: never printed.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct RawSecret(pub String);

impl fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A size in bytes: an integer, or a string with a unit (`16MiB`, `512 KB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size: bytes as an integer, or a string such as \"16MiB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_size(v)
                    .map(ByteSize)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses `123`, `16MiB`, `1.5 GB`, `512k` (k/M/G are decimal, Ki/Mi/Gi binary; case of the
/// unit letter ignored).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = (&s[..split], s[split..].trim());
    let n: f64 = num.parse().ok()?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "ki" | "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mi" | "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gi" | "gib" => 1 << 30,
        _ => return None,
    };
    let bytes = n * mult as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// `[registries."host"]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistry {
    /// User name for basic auth / token exchange.
    pub username: Option<String>,
    /// Password written inline.
    pub password: Option<RawSecret>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// Docker `config.json` to take this registry's credentials from.
    pub docker_config: Option<PathBuf>,
    /// Plain HTTP.
    pub insecure: Option<bool>,
    /// Extra CA certificates (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// Do not verify TLS certificates.
    pub tls_skip_verify: Option<bool>,
    /// Client certificate (PEM) for registries that require one (mTLS).
    pub client_cert: Option<PathBuf>,
    /// The private key (PEM) of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// HTTP proxy URL (may hold credentials, hence a secret), or `"none"`/`""` for a direct
    /// connection; unset: `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`.
    pub proxy: Option<RawSecret>,
    /// Requests in flight at once.
    pub max_concurrency: Option<u32>,
    /// Requests started per second.
    pub requests_per_second: Option<f64>,
    /// Upload chunk size.
    pub chunk_size: Option<ByteSize>,
    /// Pause pulls while the registry's `ratelimit-remaining` is below this.
    pub ratelimit_reserve: Option<u32>,
    /// `static`, `ecr`, `acr` or `gcp`; default: from the tables after it, else the host name.
    pub auth: Option<String>,
    /// Amazon ECR settings.
    pub ecr: Option<super::cloud::RawEcr>,
    /// Azure Container Registry settings.
    pub acr: Option<super::cloud::RawAcr>,
    /// Google Artifact Registry settings.
    pub gcp: Option<super::cloud::RawGcp>,
}

/// `source = "repo"` or `source = ["repo", …]`.
#[derive(Debug)]
pub struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a repository, or a list of repositories")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `tags = ["a", "b"]` or `[rules.tags] include = …`.
#[derive(Debug)]
pub enum RawTags {
    /// An explicit list.
    List(Vec<String>),
    /// A table of filters (and perhaps a list).
    Table(RawTagTable),
}

/// `[rules.tags]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTagTable {
    /// Tags copied as named.
    pub list: Option<Vec<String>>,
    /// Regexes; a tag is kept if one matches.
    pub include: Option<Vec<String>>,
    /// Regexes; a tag is dropped if one matches.
    pub exclude: Option<Vec<String>>,
    /// A semver range.
    pub semver: Option<String>,
    /// Keep only the N highest versions.
    pub newest: Option<u32>,
    /// Every tag (when no other filter is given).
    pub all: Option<bool>,
}

impl<'de> Deserialize<'de> for RawTags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawTags;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a list of tags, or a table with list/include/exclude/semver/newest/all",
                )
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawTags, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(RawTags::List(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawTags, A::Error> {
                RawTagTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawTags::Table)
            }
        }
        d.deserialize_any(V)
    }
}

/// `[[rules]]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Unique name.
    pub name: Option<String>,
    /// Source repository or repositories.
    pub source: Option<OneOrMany>,
    /// Target template, or several.
    pub target: Option<OneOrMany>,
    /// Tag selection.
    pub tags: Option<RawTags>,
    /// Platforms.
    pub platforms: Option<Vec<String>>,
    /// Referrers.
    pub referrers: Option<bool>,
    /// Conflict policy.
    pub on_conflict: Option<OnConflict>,
    /// Schedule.
    pub schedule: Option<String>,
    /// Time limit per run.
    pub timeout: Option<String>,
    /// First wait before a failed run is retried (doubling).
    pub retry_backoff: Option<String>,
    /// Backup tag template used before moving a tag.
    pub backup_tag: Option<String>,
    /// Public key files (relative to the configuration file): copy only images signed with one.
    pub verify_keys: Option<Vec<String>>,
    /// Keyless: the signing certificate's identity (e-mail or URI), exactly.
    pub verify_identity: Option<String>,
    /// Keyless: a regular expression the certificate's whole identity must match.
    pub verify_identity_regexp: Option<String>,
    /// Keyless: the OIDC issuer the certificate must name.
    pub verify_issuer: Option<String>,
    /// Keyless: the Sigstore TrustedRoot JSON file (relative to the configuration file).
    pub verify_trust_root: Option<String>,
    /// When to re-read this rule's targets and check every digest (cron or `@every`).
    pub audit: Option<String>,
    /// Delete target tags whose source tag is gone.
    pub prune: Option<bool>,
    /// The most tags one run prunes per target repository: a count or `"10%"`.
    pub prune_limit: Option<RawPruneLimit>,
    /// Prune backup tags older than this (by the date in the tag).
    pub prune_backups: Option<String>,
    /// Regex of tags that never change once written: done when the target lists them.
    pub immutable_tags: Option<String>,
    /// When the daemon asks the targets again what it confirmed there (cron or `@every`).
    pub full_check: Option<String>,
}

/// `prune_limit` as written: an integer or a string, checked when the rule is validated (so
/// that the error names the rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPruneLimit(pub String);

impl<'de> Deserialize<'de> for RawPruneLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawPruneLimit;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a count (10) or a percentage (\"10%\")")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawPruneLimit, E> {
                Ok(RawPruneLimit(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawPruneLimit, E> {
                Ok(RawPruneLimit(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPruneLimit, E> {
                Ok(RawPruneLimit(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `[[indexes]]`: an index kept composed from per-platform tags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIndex {
    /// Unique name (shared with `[[rules]]`).
    pub name: Option<String>,
    /// The index's repository and tag.
    pub target: Option<String>,
    /// The per-platform images, by tag.
    pub sources: Option<Vec<String>>,
    /// Annotations on the index.
    pub annotations: Option<BTreeMap<String, String>>,
    /// Always an OCI index.
    pub oci: Option<bool>,
    /// Copy referrers of the children.
    pub referrers: Option<bool>,
    /// Schedule.
    pub schedule: Option<String>,
    /// Time limit per run.
    pub timeout: Option<String>,
    /// First wait before a failed run is retried (doubling).
    pub retry_backoff: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("16MiB"), Some(16 << 20));
        assert_eq!(parse_size("16 mib"), Some(16 << 20));
        assert_eq!(parse_size("1.5GB"), Some(1_500_000_000));
        assert_eq!(parse_size("512k"), Some(512_000));
        assert_eq!(parse_size("5 parsecs"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("-1"), None);
    }

    #[test]
    fn raw_secret_debug_hides_value() {
        let r = RawRegistry {
            password: Some(RawSecret("hunter2".into())),
            ..Default::default()
        };
        assert!(!format!("{r:?}").contains("hunter2"));
        let r = RawRegistry {
            proxy: Some(RawSecret("http://u:hunter2@proxy:3128".into())),
            ..Default::default()
        };
        assert!(!format!("{r:?}").contains("hunter2"));
    }
}
