//! The cloud identity keys of a registry: `auth = "static" | "ecr" | "acr" | "gcp"` and the
//! `[registries."HOST".ecr]`, `.acr` and `.gcp` tables, resolved into an [`AuthChoice`].
//!
//! Kept apart from username/password credentials ([`super::credentials`]) because they are
//! another concept: nothing secret is configured, the cloud issues credentials at run time.
//! A table implies its kind when `auth` is not set; `auth` not set and no table leaves the
//! choice to the host name at connection time. Contradictions (a password beside a cloud
//! identity, an `[ecr]` table under `auth = "acr"`) are reported, each once, with their key.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::credentials::resolve_path;
use super::error::{KeyPath, Problems};
use super::raw::RawRegistry;
use crate::registry::auth::cloud::{
    AcrSettings, AuthChoice, AuthKind, CloudAuth, EcrSettings, GcpSettings, TagMutability,
};

/// `[registries."HOST".ecr]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEcr {
    /// AWS region (default: from the host name).
    pub region: Option<String>,
    /// Account id of the registry (default: from the host name).
    pub registry_id: Option<String>,
    /// Role to assume (cross-account).
    pub role_arn: Option<String>,
    /// Create missing target repositories.
    pub create_repositories: Option<bool>,
    /// `MUTABLE` or `IMMUTABLE`, for created repositories.
    pub image_tag_mutability: Option<String>,
    /// Scan-on-push for created repositories.
    pub scan_on_push: Option<bool>,
}

/// `[registries."HOST".acr]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcr {
    /// Entra tenant id (default `AZURE_TENANT_ID`).
    pub tenant_id: Option<String>,
    /// Client id of the identity (default `AZURE_CLIENT_ID`).
    pub client_id: Option<String>,
}

/// `[registries."HOST".gcp]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGcp {
    /// Service-account key or ADC file (default `GOOGLE_APPLICATION_CREDENTIALS`).
    pub credentials_file: Option<PathBuf>,
}

/// The registry's [`AuthChoice`].
pub(crate) fn resolve(
    raw: &RawRegistry,
    base: &Path,
    path: &KeyPath,
    problems: &mut Problems<'_>,
) -> AuthChoice {
    let tables: Vec<AuthKind> = [
        raw.ecr.as_ref().map(|_| AuthKind::Ecr),
        raw.acr.as_ref().map(|_| AuthKind::Acr),
        raw.gcp.as_ref().map(|_| AuthKind::Gcp),
    ]
    .into_iter()
    .flatten()
    .collect();
    let kind = match raw.auth.as_deref().map(str::parse::<AuthKind>) {
        Some(Err(e)) => {
            problems.add(&path.key("auth"), e);
            return AuthChoice::Detect;
        }
        Some(Ok(k)) => Some(k),
        None if tables.len() > 1 => {
            problems.add(
                &path.key(tables[1].name()),
                "give one cloud table (ecr, acr or gcp), or set auth to say which applies",
            );
            return AuthChoice::Detect;
        }
        None => tables.first().copied(),
    };
    let Some(kind) = kind else {
        return AuthChoice::Detect;
    };
    if let Some(other) = tables.iter().find(|t| **t != kind) {
        problems.add(
            &path.key(other.name()),
            format!(
                "this table applies to auth = \"{}\", but auth is \"{}\"",
                other.name(),
                kind.name()
            ),
        );
    }
    let has_static = raw.username.is_some()
        || raw.password.is_some()
        || raw.password_file.is_some()
        || raw.password_env.is_some()
        || raw.docker_config.is_some();
    if kind != AuthKind::Static && has_static {
        problems.add(
            &path.key("auth"),
            format!(
                "auth = \"{}\" takes credentials from the cloud identity; remove username, \
                 password* and docker_config, or set auth = \"static\"",
                kind.name()
            ),
        );
    }
    match kind {
        AuthKind::Static => AuthChoice::Static,
        AuthKind::Ecr => AuthChoice::Cloud(CloudAuth::Ecr(ecr(
            raw.ecr.as_ref(),
            &path.key("ecr"),
            problems,
        ))),
        AuthKind::Acr => {
            let r = raw.acr.as_ref();
            AuthChoice::Cloud(CloudAuth::Acr(AcrSettings {
                tenant_id: r.and_then(|r| r.tenant_id.clone()),
                client_id: r.and_then(|r| r.client_id.clone()),
            }))
        }
        AuthKind::Gcp => {
            let file = raw.gcp.as_ref().and_then(|g| g.credentials_file.as_ref());
            if let Some(f) = file {
                let full = resolve_path(base, f);
                if let Err(e) = std::fs::metadata(&full) {
                    let key = path.key("gcp").key("credentials_file");
                    problems.add(&key, format!("cannot read {}: {e}", full.display()));
                }
            }
            AuthChoice::Cloud(CloudAuth::Gcp(GcpSettings {
                credentials_file: file.map(|f| resolve_path(base, f)),
            }))
        }
    }
}

fn ecr(raw: Option<&RawEcr>, path: &KeyPath, problems: &mut Problems<'_>) -> EcrSettings {
    let Some(raw) = raw else {
        return EcrSettings::default();
    };
    if let Some(role) = &raw.role_arn
        && !(role.starts_with("arn:") && role.contains(":role/"))
    {
        problems.add(
            &path.key("role_arn"),
            format!("{role:?} is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)"),
        );
    }
    if let Some(id) = &raw.registry_id
        && (id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()))
    {
        problems.add(
            &path.key("registry_id"),
            format!("{id:?} is not a 12-digit AWS account id"),
        );
    }
    let image_tag_mutability = raw.image_tag_mutability.as_deref().and_then(|m| {
        m.parse::<TagMutability>()
            .map_err(|e| problems.add(&path.key("image_tag_mutability"), e))
            .ok()
    });
    let create = raw.create_repositories.unwrap_or(false);
    if !create && (raw.image_tag_mutability.is_some() || raw.scan_on_push.is_some()) {
        problems.add(
            &path.key("create_repositories"),
            "image_tag_mutability and scan_on_push apply to repositories crossdock creates; \
             set create_repositories = true",
        );
    }
    EcrSettings {
        region: raw.region.clone(),
        registry_id: raw.registry_id.clone(),
        role_arn: raw.role_arn.clone(),
        create_repositories: create,
        image_tag_mutability,
        scan_on_push: raw.scan_on_push.unwrap_or(false),
    }
}
