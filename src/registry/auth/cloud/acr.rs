//! Azure Container Registry: a Microsoft Entra ID access token, exchanged for an ACR refresh
//! token, which the registry's normal token flow then turns into access tokens.
//!
//! The Entra ID token comes from the first of these that is configured, as `azure_identity`'s
//! default chain picks them:
//! 1. AKS workload identity: `AZURE_FEDERATED_TOKEN_FILE` (the projected service account
//!    token, re-read at every renewal because the kubelet rotates it), `AZURE_CLIENT_ID`,
//!    `AZURE_TENANT_ID`, `AZURE_AUTHORITY_HOST` — a client-assertion POST to
//!    `{authority}/{tenant}/oauth2/v2.0/token`;
//! 2. a service principal: `AZURE_CLIENT_SECRET` with the same client and tenant;
//! 3. the managed identity of the VM or node pool, from IMDS
//!    (`http://169.254.169.254/metadata/identity/oauth2/token`, host overridable with
//!    `AZURE_POD_IDENTITY_AUTHORITY_HOST` as Azure's libraries do; `client_id` picks a
//!    user-assigned identity).
//!
//! Then `POST /oauth2/exchange` (`grant_type=access_token`) on the host of the registry's
//! token realm — found from its Bearer challenge, as `az acr login` does — gives an ACR refresh
//! token. It is handed to [`super::super::Auth`] as an identity token, so access tokens come
//! from `/oauth2/token` with `grant_type=refresh_token` like any OAuth2 registry. Renewed after
//! three quarters of the Entra token's lifetime (ACR refresh tokens live three hours at most).

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::Deserialize;
use url::Url;

use super::http::{self, Caller};
use super::{ChallengeInfo, CloudError, Issued, Source, jwt};
use crate::registry::auth::{Credentials, Secret};

/// The audience of tokens for ACR's data plane.
const ACR_SCOPE: &str = "https://containerregistry.azure.net/.default";
const ACR_RESOURCE: &str = "https://containerregistry.azure.net";
const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com/";
const DEFAULT_IMDS: &str = "http://169.254.169.254";
/// ACR refresh tokens live three hours.
const MAX_LIFETIME: Duration = Duration::from_secs(3 * 3600);

/// `[registries."HOST".acr]`: every field optional (the environment names them otherwise).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AcrSettings {
    /// Entra tenant; default `AZURE_TENANT_ID`.
    pub tenant_id: Option<String>,
    /// Client (application) id of the identity; default `AZURE_CLIENT_ID`.
    pub client_id: Option<String>,
}

/// Where the Entra token comes from.
enum Identity {
    Workload { file: String },
    ServicePrincipal { secret: Secret },
    Managed,
}

/// The ACR credential source of one registry.
pub(crate) struct AcrSource {
    registry: String,
    settings: AcrSettings,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct EntraToken {
    access_token: Secret,
    /// A number from Entra ID, a string from IMDS.
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Exchanged {
    refresh_token: Secret,
}

impl AcrSource {
    pub(crate) fn new(registry: &str, settings: AcrSettings, client: reqwest::Client) -> Self {
        AcrSource {
            registry: registry.to_string(),
            settings,
            client,
        }
    }

    fn tenant(&self) -> Option<String> {
        self.settings
            .tenant_id
            .clone()
            .or_else(|| env("AZURE_TENANT_ID"))
    }

    fn client_id(&self) -> Option<String> {
        self.settings
            .client_id
            .clone()
            .or_else(|| env("AZURE_CLIENT_ID"))
    }

    fn identity(&self) -> Identity {
        if let Some(file) = env("AZURE_FEDERATED_TOKEN_FILE") {
            Identity::Workload { file }
        } else if let Some(secret) = env("AZURE_CLIENT_SECRET") {
            Identity::ServicePrincipal {
                secret: Secret::new(secret),
            }
        } else {
            Identity::Managed
        }
    }

    fn describe_identity(identity: &Identity) -> String {
        match identity {
            Identity::Workload { file } => {
                format!("AKS workload identity (AZURE_FEDERATED_TOKEN_FILE={file})")
            }
            Identity::ServicePrincipal { .. } => {
                "an Entra ID service principal (AZURE_CLIENT_SECRET)".to_string()
            }
            Identity::Managed => format!("the managed identity (IMDS at {})", imds_host()),
        }
    }

    /// An Entra ID access token for ACR, and its lifetime.
    async fn entra_token(
        &self,
        caller: &Caller<'_>,
        identity: &Identity,
    ) -> Result<(Secret, Duration), CloudError> {
        let token: EntraToken = match identity {
            Identity::Managed => {
                let base = format!("{}/metadata/identity/oauth2/token", imds_host());
                let mut url = Url::parse(&base)
                    .map_err(|e| caller.error(format!("bad IMDS address {base} ({e})"), false))?;
                url.query_pairs_mut()
                    .append_pair("api-version", "2018-02-01")
                    .append_pair("resource", ACR_RESOURCE);
                if let Some(id) = self.client_id() {
                    url.query_pairs_mut().append_pair("client_id", &id);
                }
                let request = self.client.get(url).header("Metadata", "true");
                caller.json(&format!("IMDS {base}"), request).await?
            }
            Identity::Workload { .. } | Identity::ServicePrincipal { .. } => {
                let (Some(tenant), Some(client_id)) = (self.tenant(), self.client_id()) else {
                    return Err(caller.error(
                        "AZURE_TENANT_ID and AZURE_CLIENT_ID (or tenant_id and client_id in the \
                         registry's [acr] table) are needed",
                        false,
                    ));
                };
                let authority =
                    env("AZURE_AUTHORITY_HOST").unwrap_or_else(|| DEFAULT_AUTHORITY.to_string());
                let url = format!(
                    "{}/{tenant}/oauth2/v2.0/token",
                    authority.trim_end_matches('/')
                );
                let mut form = vec![
                    ("grant_type", "client_credentials".to_string()),
                    ("client_id", client_id),
                    ("scope", ACR_SCOPE.to_string()),
                ];
                match identity {
                    Identity::Workload { file } => {
                        form.push((
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
                        ));
                        form.push(("client_assertion", read_assertion(caller, file)?));
                    }
                    Identity::ServicePrincipal { secret } => {
                        form.push(("client_secret", secret.expose().to_string()));
                    }
                    Identity::Managed => unreachable!(),
                }
                let request = http::form(self.client.post(&url), &form);
                caller
                    .json(&format!("the Entra ID token endpoint {url}"), request)
                    .await?
            }
        };
        let lifetime = token
            .expires_in
            .as_ref()
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .map(Duration::from_secs)
            .unwrap_or(MAX_LIFETIME / 3);
        Ok((token.access_token, lifetime))
    }
}

/// The projected token, checked for expiry before it is sent.
fn read_assertion(caller: &Caller<'_>, file: &str) -> Result<String, CloudError> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        caller.error(
            format!(
                "AZURE_FEDERATED_TOKEN_FILE {file} cannot be read ({e}); is the azure-identity \
                 token volume mounted (pod label azure.workload.identity/use: \"true\")?"
            ),
            false,
        )
    })?;
    let text = text.trim().to_string();
    if let Some(exp) = jwt::expiry(&text)
        && exp <= SystemTime::now()
    {
        let at = chrono::DateTime::<chrono::Utc>::from(exp);
        return Err(caller.error(
            format!(
                "the token in AZURE_FEDERATED_TOKEN_FILE {file} expired at {}; the kubelet \
                     renews a projected token, so the file is stale or not projected",
                at.to_rfc3339()
            ),
            false,
        ));
    }
    Ok(text)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn imds_host() -> String {
    env("AZURE_POD_IDENTITY_AUTHORITY_HOST")
        .unwrap_or_else(|| DEFAULT_IMDS.to_string())
        .trim_end_matches('/')
        .to_string()
}

#[async_trait]
impl Source for AcrSource {
    fn describe(&self) -> String {
        Self::describe_identity(&self.identity())
    }

    async fn fetch(&self, challenge: ChallengeInfo<'_>) -> Result<Issued, CloudError> {
        let identity = self.identity();
        let source_name = Self::describe_identity(&identity);
        let caller = Caller {
            registry: &self.registry,
            cloud: "ACR",
            source_name: &source_name,
        };
        let (access_token, lifetime) = self.entra_token(&caller, &identity).await?;
        // ACR serves the exchange beside its token endpoint; without a challenge (ACR always
        // sends Bearer ones) the registry host itself.
        let exchange = match challenge.realm {
            Some(realm) => {
                let mut u = realm.clone();
                u.set_path("/oauth2/exchange");
                u.set_query(None);
                u
            }
            None => Url::parse(&format!("https://{}/oauth2/exchange", self.registry))
                .map_err(|e| caller.error(format!("bad registry name ({e})"), false))?,
        };
        let service = challenge.service.unwrap_or(&self.registry);
        let mut form = vec![
            ("grant_type", "access_token".to_string()),
            ("service", service.to_string()),
            ("access_token", access_token.expose().to_string()),
        ];
        if let Some(tenant) = self.tenant() {
            form.push(("tenant", tenant));
        }
        let request = http::form(self.client.post(exchange.clone()), &form);
        let exchanged: Exchanged = caller
            .json(&format!("ACR's token exchange {exchange}"), request)
            .await?;
        Ok(Issued {
            credentials: Credentials::IdentityToken(exchanged.refresh_token),
            lifetime: lifetime.min(MAX_LIFETIME),
        })
    }
}
