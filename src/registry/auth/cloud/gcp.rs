//! Google Artifact Registry and Container Registry: an OAuth2 access token from Application
//! Default Credentials, presented as user `oauth2accesstoken` with the token as password (what
//! `gcloud auth configure-docker` and docker-credential-gcr do).
//!
//! The token comes, as Google's client libraries find it, from:
//! 1. a credentials file: `credentials_file` in the registry's `[gcp]` table, else
//!    `GOOGLE_APPLICATION_CREDENTIALS` — a service-account key (a JWT assertion signed RS256
//!    with its key and exchanged at its `token_uri`, RFC 7523) or a `gcloud auth
//!    application-default login` file (its refresh token exchanged at Google's token endpoint);
//! 2. else the metadata server: GKE workload identity or the VM's service account,
//!    `GET http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token`
//!    with `Metadata-Flavor: Google`; `GCE_METADATA_HOST` names another host, as Google's
//!    libraries allow.
//!
//! Access tokens live about an hour and are renewed after three quarters of that.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::Deserialize;

use super::http::{self, Caller};
use super::{ChallengeInfo, CloudError, Issued, Source, jwt};
use crate::registry::auth::{Credentials, Secret};

const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";
/// The username Google's registries take an access token with.
const USERNAME: &str = "oauth2accesstoken";

/// `[registries."HOST".gcp]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcpSettings {
    /// A service-account key or ADC file; default `GOOGLE_APPLICATION_CREDENTIALS`, else the
    /// metadata server.
    pub credentials_file: Option<PathBuf>,
}

/// The Google credential source of one registry.
pub(crate) struct GcpSource {
    registry: String,
    settings: GcpSettings,
    client: reqwest::Client,
}

/// The fields of a credentials file crossdock reads (others are ignored).
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    client_email: Option<String>,
    #[serde(default)]
    private_key: Option<Secret>,
    #[serde(default)]
    token_uri: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<Secret>,
    #[serde(default)]
    refresh_token: Option<Secret>,
}

#[derive(Deserialize)]
struct AccessToken {
    access_token: Secret,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl GcpSource {
    pub(crate) fn new(registry: &str, settings: GcpSettings, client: reqwest::Client) -> Self {
        GcpSource {
            registry: registry.to_string(),
            settings,
            client,
        }
    }

    fn key_file(&self) -> Option<(PathBuf, &'static str)> {
        if let Some(p) = &self.settings.credentials_file {
            return Some((p.clone(), "credentials_file"));
        }
        std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS")
            .filter(|v| !v.is_empty())
            .map(|v| (PathBuf::from(v), "GOOGLE_APPLICATION_CREDENTIALS"))
    }

    async fn token_from_file(
        &self,
        caller: &Caller<'_>,
        path: &std::path::Path,
    ) -> Result<AccessToken, CloudError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| caller.error(format!("cannot read {} ({e})", path.display()), false))?;
        let key: KeyFile = serde_json::from_str(&text).map_err(|e| {
            caller.error(
                format!("{} is not a Google credentials file ({e})", path.display()),
                false,
            )
        })?;
        let missing = |field: &str| {
            caller.error(
                format!(
                    "{} ({} credentials) has no {field}",
                    path.display(),
                    key.kind
                ),
                false,
            )
        };
        let token_uri = key
            .token_uri
            .clone()
            .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_string());
        let form = match key.kind.as_str() {
            "service_account" => {
                let email = key
                    .client_email
                    .as_ref()
                    .ok_or_else(|| missing("client_email"))?;
                let pem = key
                    .private_key
                    .as_ref()
                    .ok_or_else(|| missing("private_key"))?;
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let claims = serde_json::json!({
                    "iss": email, "scope": SCOPE, "aud": token_uri,
                    "iat": now, "exp": now + 3600,
                });
                let assertion = jwt::sign_rs256(&claims, pem.expose())
                    .map_err(|e| caller.error(format!("{}: {e}", path.display()), false))?;
                vec![
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:jwt-bearer".to_string(),
                    ),
                    ("assertion", assertion),
                ]
            }
            "authorized_user" => {
                let id = key.client_id.as_ref().ok_or_else(|| missing("client_id"))?;
                let secret = key
                    .client_secret
                    .as_ref()
                    .ok_or_else(|| missing("client_secret"))?;
                let refresh = key
                    .refresh_token
                    .as_ref()
                    .ok_or_else(|| missing("refresh_token"))?;
                vec![
                    ("grant_type", "refresh_token".to_string()),
                    ("client_id", id.clone()),
                    ("client_secret", secret.expose().to_string()),
                    ("refresh_token", refresh.expose().to_string()),
                ]
            }
            other => {
                return Err(caller.error(
                    format!(
                        "{} holds {other:?} credentials; crossdock reads service_account and \
                         authorized_user files (for workload identity federation on GKE, leave \
                         GOOGLE_APPLICATION_CREDENTIALS unset: the metadata server serves it)",
                        path.display()
                    ),
                    false,
                ));
            }
        };
        let request = http::form(self.client.post(&token_uri), &form);
        caller
            .json(&format!("Google's token endpoint {token_uri}"), request)
            .await
    }
}

fn metadata_url() -> String {
    let host = std::env::var("GCE_METADATA_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| DEFAULT_METADATA_HOST.to_string());
    format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/token")
}

#[async_trait]
impl Source for GcpSource {
    fn describe(&self) -> String {
        match self.key_file() {
            Some((path, from)) => format!("the credentials file {} ({from})", path.display()),
            None => format!("the GCE/GKE metadata server ({})", metadata_url()),
        }
    }

    async fn fetch(&self, _: ChallengeInfo<'_>) -> Result<Issued, CloudError> {
        let source_name = self.describe();
        let caller = Caller {
            registry: &self.registry,
            cloud: "Google",
            source_name: &source_name,
        };
        let token = match self.key_file() {
            Some((path, _)) => self.token_from_file(&caller, &path).await?,
            None => {
                let url = metadata_url();
                let request = self.client.get(&url).header("Metadata-Flavor", "Google");
                caller
                    .json(&format!("the metadata server {url}"), request)
                    .await?
            }
        };
        Ok(Issued {
            credentials: Credentials::Basic {
                username: USERNAME.to_string(),
                password: token.access_token,
            },
            lifetime: Duration::from_secs(token.expires_in.unwrap_or(3600)),
        })
    }
}
